"""No disconnection inside a friendly-credit period.

The periods are given in the tariff file in local time (Europe/London: the test crosses
the change to summer time); whether a moment is friendly is computed here independently
with zoneinfo. The supply-control state machine is the judge of disconnection: its
events record every switch with the time it happened.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from sep.clusters.prepayment import PrepaymentServer
from sep.meter.prepayment import PrepaymentAccount
from sep.meter.supply import SupplyControl, SupplyStatus
from sep.meter.tariff import parse_tariff

LONDON = ZoneInfo("Europe/London")
TARIFF = """
timezone = "Europe/London"
[[tiers]]
tier = 1
label = "Standard"
rate = "0.2500"

[prepayment]
mode = "prepayment"
initial_credit = "1.00"

[[prepayment.friendly_credit]]
days = ["mon", "tue", "wed", "thu", "fri"]
from = "18:00"
to = "08:00"

[[prepayment.friendly_credit]]
days = ["sun"]
from = "10:00"
to = "16:00"
"""


def friendly(t: float) -> bool:
    """Written out from the tariff above: weekday evenings to the next morning, and
    Sunday 10:00-16:00, London time."""
    local = dt.datetime.fromtimestamp(t, LONDON)
    minutes = local.hour * 60 + local.minute
    if minutes >= 18 * 60:
        return local.weekday() < 5
    if minutes < 8 * 60:
        return (local.weekday() - 1) % 7 < 5  # the period began the evening before
    return local.weekday() == 6 and 10 * 60 <= minutes < 16 * 60


class Home:
    """The account, its server and the relay; a constant load of ``watts``."""

    def __init__(self, credit: str = "1.00") -> None:
        tariff = parse_tariff(TARIFF.replace('"1.00"', f'"{credit}"'))
        self.switches: list[tuple[float, str]] = []
        self.now = 0.0
        self.supply = SupplyControl(events=lambda kind, d: self.switches.append(
            (self.now, d.get("to", ""))) if kind == "SUPPLY_CHANGE" else None)
        self.server = PrepaymentServer(
            PrepaymentAccount(tariff.prepayment, timezone=tariff.timezone),
            supply=self.supply, provider_id=lambda: 0xABCD, supplier=lambda n: False,
            consumer=lambda n: False)
        self.wh = 0

    def run(self, start: float, end: float, step: int, watts: int, rate: int = 2500,
            standing: int = 5000) -> None:
        t = start
        while t <= end:
            self.now = t
            self.server.book(t, self.wh, rate, standing)
            if self.supply.status == SupplyStatus.ON:
                self.wh += watts * step // 3600
            t += step


def test_credit_runs_out_in_the_evening_and_the_supply_waits_for_the_morning():
    home = Home("1.00")
    # Monday 1 June 2026 15:00 UTC = 16:00 BST; 1 kW at 25p/kWh spends £1 in four hours,
    # at 20:00 BST, two hours into the friendly period.
    start = dt.datetime(2026, 6, 1, 15, 0, tzinfo=dt.UTC).timestamp()
    home.run(start, start + 24 * 3600, 60, 1000)
    assert home.switches, "the supply was never interrupted"
    when, to = home.switches[0]
    assert to == "ARMED"
    assert not friendly(when)
    # the first moment after the credit ran out that is not friendly: Tuesday 08:00 BST
    assert dt.datetime.fromtimestamp(when, LONDON).replace(tzinfo=None) == dt.datetime(
        2026, 6, 2, 8, 0)
    # friendly credit ran the account into debt: energy was drawn with no credit left
    assert home.server.account.credit < 0
    # and the alarm warned in the last 10 minutes of the period (FriendlyCreditWarning)
    end = dt.datetime(2026, 6, 2, 8, 0, tzinfo=LONDON).timestamp()
    account = Home("0.00").server.account
    account.credit = -1
    assert account.alarm_status(end - 600) & 0x0020 and account.alarm_status(end - 600) & 0x0010
    assert not account.alarm_status(end - 601) & 0x0020


def test_the_clocks_going_forward_in_a_friendly_period():
    home = Home("0.05")
    # Saturday 28 March 2026 22:00 UTC; the clocks go forward at 01:00 UTC on Sunday.
    # Weekend nights are not friendly here, Sunday 10:00-16:00 BST (09:00-15:00 UTC) is.
    start = dt.datetime(2026, 3, 28, 22, 0, tzinfo=dt.UTC).timestamp()
    home.run(start, start + 30 * 3600, 60, 500)
    first = home.switches[0][0]
    assert not friendly(first) and first < start + 3600  # at once: no credit, not friendly
    # restored locally inside Sunday's period (allowed: no disconnection is due)
    sunday = dt.datetime(2026, 3, 29, 9, 30, tzinfo=dt.UTC).timestamp()
    home.now = sunday
    home.server.tick(sunday)
    home.supply.local_change(2)
    assert home.supply.status == SupplyStatus.ON
    home.run(sunday, sunday + 10 * 3600, 60, 500)
    for when, to in home.switches[1:]:
        if to == "ARMED":
            assert not friendly(when), dt.datetime.fromtimestamp(when, LONDON)
    assert home.switches[-1][1] == "ARMED"
    assert dt.datetime.fromtimestamp(home.switches[-1][0], LONDON).hour == 16


@settings(max_examples=40, deadline=None)
@given(start=st.integers(1_767_225_600, 1_798_761_600),  # any time in 2026
       credit=st.decimals(Decimal("0"), Decimal("3"), places=2),
       watts=st.integers(0, 4000))
def test_never_interrupted_inside_a_friendly_period(start, credit, watts):
    home = Home(str(credit))
    home.run(start, start + 4 * 24 * 3600, 900, watts)
    for when, to in home.switches:
        if to == "ARMED":
            assert not friendly(when), dt.datetime.fromtimestamp(when, LONDON)
