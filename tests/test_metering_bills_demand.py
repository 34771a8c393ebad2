"""Bills and maximum demand, over the air, against the load model and the tariff file.

SE 1.4 D.3.2.2.10: BillToDateDelivered is the cost in the current billing period,
ProjectedBillDelivered the estimate for the end of it, BillDeliveredTrailingDigit where
the decimal point is; the meter's method (``sep/meter/billing.py``): each Wh at the unit
rate in force when it was booked, plus the tariff's daily standing charge for every day of
the period begun; projection = energy cost x period / elapsed + standing charge x days.
The truth here: energy per 5-minute step from the household load model (whole Wh of the
registers), the rate of the tier the tariff file's schedule gives for that step, the
standing charge and billing period written in the file, Python's calendar.

SE 1.4 D.3.2.2.1/.5: CurrentMaxDemandDelivered (and its time), CurrentDay/PreviousDay/
CurrentMonth/CurrentYearMaxDemand over DemandIntegrationPeriod (5 minutes here): the truth
is the load model's energy per period as average power.

A manual snapshot and the meter's own end-of-billing-period snapshot carry the bills
(PublishSnapshot sub-payload read by the SE 1.4 layout, as tshark 4.0 shows it as bytes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from han_tools import Han
from tshark_tools import Z2000, commands, malformed, need_tshark, tshark_time

from sep.metrology.load import HouseholdLoad

MET = "zbee_zcl_se.met"
SEED, SOLAR = 11, 3500
START = int(dt.datetime(2026, 6, 30, 20, tzinfo=dt.UTC).timestamp())
MID = int(dt.datetime(2026, 7, 1, tzinfo=dt.UTC).timestamp())
JUNE = int(dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp())
STEP = 300
RATES = {1: Decimal("0.1500"), 2: Decimal("0.2700")}
STANDING = Decimal("0.5312")
TARIFF = """
provider_id = 0x0000ABCD
issuer_tariff_id = 42
label = "Test TOU"
currency = 826
price_trailing_digits = 4
timezone = "UTC"
standing_charge = "0.5312"
[[tiers]]
tier = 1
label = "Night"
rate = "0.1500"
[[tiers]]
tier = 2
label = "Day"
rate = "0.2700"
[[schedule]]
switches = { "00:00" = 1, "07:00" = 2, "23:00" = 1 }
[billing_period]
start = 2026-01-01T00:00:00Z
duration = 1
timebase = "months"
"""


def tier_at(t: int) -> int:
    hour = dt.datetime.fromtimestamp(t, dt.UTC).hour
    return 1 if hour < 7 or hour >= 23 else 2


class Truth:
    def __init__(self) -> None:
        self.load = HouseholdLoad(SEED, SOLAR)
        self._joules = {START: (0, 0)}

    def wh(self, t: int) -> tuple[int, int]:
        """The meter's Wh registers at ``t`` (a step time): whole Wh of the joules since START."""
        if t not in self._joules:
            imp, exp = self.wh_j(t - STEP)
            di, de = self.load.energy_j(t - STEP, t)
            self._joules[t] = (imp + di, exp + de)
        imp, exp = self._joules[t]
        return imp // 3600, exp // 3600

    def wh_j(self, t: int) -> tuple[int, int]:
        self.wh(t)
        return self._joules[t]

    def energy_cost(self, a: int, b: int) -> Decimal:
        """Each step's Wh at the rate of the tier in force when the step began."""
        cost = Decimal(0)
        for e in range(a + STEP, b + 1, STEP):
            cost += (self.wh(e)[0] - self.wh(e - STEP)[0]) * RATES[tier_at(e - STEP)] / 1000
        return cost

    def demand(self, e: int) -> tuple[int, int]:
        return tuple((self.wh(e)[k] - self.wh(e - STEP)[k]) * 3600 // STEP for k in (0, 1))


def units(x: Decimal) -> int:
    return int((x * 10_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def bill_attrs(energy: Decimal, period: tuple[int, int], now: int) -> dict[int, int]:
    start, end = period
    days_begun = (now - start) // 86400 + 1
    days = (end - start) // 86400
    projected = energy * (end - start) / (now - start) + STANDING * days
    return {0x0A00: units(energy + STANDING * days_begun), 0x0A01: now - Z2000,
            0x0A02: units(projected), 0x0A03: now - Z2000, 0x0A04: 0x40}


def sub_payload(raw: bytes) -> tuple[int, list[int], int]:
    """(summation, bill fields, tier count) of a TOU Information Set Delivered Registers."""
    summation = int.from_bytes(raw[0:6], "little")
    bill = [int.from_bytes(raw[6 + 4 * i:10 + 4 * i], "little") for i in range(4)] + [raw[22]]
    return summation, bill, raw[23]


async def test_bills_demand_and_end_of_billing_snapshot(tmp_path):
    need_tshark()
    tariff = tmp_path / "tariff.toml"
    tariff.write_text(TARIFF)
    truth = Truth()
    han = Han(tmp_path, start=START, seed=SEED, solar_peak_w=SOLAR, tariff=tariff)
    await han.start()
    m = han.metering
    got: list = []
    m.add_listener(type("L", (), {"cluster_command": staticmethod(
        lambda tsn, cid, args: got.append((cid, args)))})())
    try:
        await han.step(int(3.5 * 3600))  # 20:00 -> 23:30 (day rate, then night at 23:00)
        t1 = int(han.clock.t)
        june = (JUNE, MID)
        before = await han.read([0x0A00, 0x0A01, 0x0A02, 0x0A03, 0x0A04, 0x0602, 0x0603])
        snap = await m.take_snapshot(0x400)
        await m.get_snapshot(0, 0xFFFFFFFF, 0, 0x400, expect_reply=False)
        await han.step(int(9.5 * 3600))  # -> 09:00 on the 1st of July: a new billing period
        t2 = int(han.clock.t)
        after = await han.read([0x0A00, 0x0A01, 0x0A02, 0x0A03, 0x0A04])
        demand = await han.read([0x0002, 0x0008, 0x0003, 0x0009, 0x040D, 0x040E, 0x040F,
                                 0x0410])
        await m.get_snapshot(0, 0xFFFFFFFF, 0, 0x002, expect_reply=False)  # end of billing
        await asyncio.sleep(0.3)
    finally:
        await han.stop()
    # -- the billing set
    assert {k: int(v) for k, v in before.items()} == {
        **bill_attrs(truth.energy_cost(START, t1), june, t1), 0x0602: 5, 0x0603: 1}
    july = (MID, int(dt.datetime(2026, 8, 1, tzinfo=dt.UTC).timestamp()))
    assert {k: int(v) for k, v in after.items()} == bill_attrs(truth.energy_cost(MID, t2),
                                                              july, t2)
    assert truth.energy_cost(START, 23 * 3600 + JUNE + 29 * 86400) > 0  # energy was billed
    # -- maximum demand, the load model's 5-minute averages
    ends = list(range(START + STEP, t2 + 1, STEP))
    d = {e: truth.demand(e) for e in ends}
    best = max(ends, key=lambda e: (d[e][0], -e))
    best_rx = max(ends, key=lambda e: (d[e][1], -e))
    assert int(demand[0x0002]) == d[best][0] and int(demand[0x0008]) == best - Z2000
    assert int(demand[0x0003]) == d[best_rx][1] and int(demand[0x0009]) == best_rx - Z2000
    today = [e for e in ends if e - STEP >= MID]
    yesterday = [e for e in ends if e - STEP < MID]
    assert int(demand[0x040D]) == max(d[e][0] for e in today)
    assert int(demand[0x040E]) == max(d[e][0] for e in yesterday)
    assert int(demand[0x040F]) == max(d[e][0] for e in today)  # July began today
    assert int(demand[0x0410]) == d[best][0]
    assert d[best][0] > 0
    # -- snapshots: the manual one, and the meter's own at the end of June
    assert snap.snapshot_confirmation == 0
    published = [a for cid, a in got if cid == 0x06]
    assert len(published) == 2
    manual, closing = published
    assert int(manual.snapshot_cause) == 0x400 and int(manual.snapshot_payload_type) == 0
    summation, bill, tiers = sub_payload(bytes(manual.snapshot_payload))
    assert summation == truth.wh(t1)[0] and tiers == 4
    assert bill == [int(before[a]) for a in (0x0A00, 0x0A01, 0x0A02, 0x0A03, 0x0A04)]
    assert int(closing.snapshot_cause) == 0x002 and int(closing.snapshot_time) == MID - Z2000
    summation, bill, tiers = sub_payload(bytes(closing.snapshot_payload))
    june_total = units(truth.energy_cost(START, MID) + STANDING * 30)
    assert summation == truth.wh(MID)[0]
    assert bill == [june_total, MID - Z2000, june_total, MID - Z2000, 0x40]
    # -- tshark reads the same off the air
    assert malformed(han.pcap) == ""
    rows = commands(han.pcap, 0x0702, MET, "publish_snapshot", 6,
                    ["snapshot_id", "snapshot_time", "snapshot_cause", "payload_type",
                     "sub_payload"], to_server=False)
    assert sorted((int(r[2], 16), tshark_time(r[1]), int(r[3])) for r in rows.values()) == [
        (0x002, MID, 0), (0x400, t1, 0)]
    for r in rows.values():
        raw = bytes.fromhex(r[4].replace(":", ""))
        assert sub_payload(raw)[1][0] in (june_total, int(before[0x0A00]))
