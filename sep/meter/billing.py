"""Bill to date and projected bill over billing periods (sans-IO).

SE 1.4 D.3.2.2.10 (Metering, Billing attribute set): BillToDateDelivered "provides a value
for the costs in the current billing period", ProjectedBillDelivered "provides a value
indicating what the estimated state of the account will be at the end of the billing
period based on past consumption", each with a time stamp, and BillDeliveredTrailingDigit
says where the decimal point is (the Price cluster's convention); the Received set is the
same for exported energy. The billing periods are the Price cluster's (PublishBillingPeriod,
D.4.2.4.10: start, duration and duration type — here the tariff's ``billing_period``).

How this meter computes them (SE leaves the method to the meter):

- energy cost: each increment of the register (Wh) at the unit rate in force when it was
  booked, ``Wh x rate / 1000`` — under a block tariff each part of it at the price of the
  block it fell in (the block registers' split) — the increment a reading brings is
  booked to the period that was open before that reading (as the tier registers book it
  to the tier that was active), then a reading at or after the period's end closes it;
- standing charge: the daily standing charge in force when each day of the period begins
  (UTC days from the period's start), counted from the first day, also before the meter
  started counting energy — the standing charge is owed for every day of the period;
- bill to date = energy cost + standing charges;
- projected bill = energy cost x period length / time elapsed in the period + standing
  charge now x days in the period;
- amounts are exact decimals in the currency's major unit; the attributes round them half
  up to the price trailing digits.

A closed period's bill (:class:`ClosedBill`) goes to ``on_closed`` — the Price server
publishes it as a consolidated bill.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from sep.meter.tariff import Recurrence

DAY = 86400


class PriceSource(Protocol):
    """What billing needs to know of prices (the Price server provides it)."""

    def current_rate(self) -> Decimal | None: ...  # import rate in force (per kWh)

    def current_export_rate(self) -> Decimal | None: ...  # export rate, None: no export tariff

    def block_rate(self, tier: int, block: int, received: bool = False) -> Decimal | None:
        """The price of ``block`` of ``tier`` (tier index 0: no tier) in force, None when a
        price event overrides the block prices."""
        ...

    @property
    def standing_charge(self) -> Decimal: ...  # per day

    @property
    def billing_period(self) -> Recurrence | None: ...

    @property
    def price_trailing_digits(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class ClosedBill:
    start: int  # unix seconds
    end: int
    amount: Decimal  # currency, major unit, exact
    received: bool = False  # a bill for exported energy (a credit)


def units(amount: Decimal, digits: int) -> int:
    """An amount as the integer sent on the air with ``digits`` implied decimals."""
    return int((amount * (Decimal(10) ** digits)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class BillAccumulator:
    def __init__(self, *, received: bool = False) -> None:
        self.received = received
        self.start: int | None = None
        self.end: int | None = None
        self.energy = Decimal(0)
        self.standing = Decimal(0)
        self.days = 0  # days of the period whose standing charge is counted
        self.stamp: int | None = None  # when the bill was last brought up to date
        self.standing_now = Decimal(0)
        self.on_closed: Callable[[ClosedBill], None] | None = None

    @property
    def active(self) -> bool:
        return self.start is not None

    def _charge_days(self, t: int, per_day: Decimal) -> None:
        assert self.start is not None and self.end is not None
        in_period = -(-(self.end - self.start) // DAY)
        begun = min(in_period, (min(t, self.end - 1) - self.start) // DAY + 1)
        while self.days < begun:
            self.days += 1
            self.standing += per_day

    def update(self, t: float, wh: int, rate: Decimal | None, standing_per_day: Decimal,
               period: Recurrence | None, *, cost: Decimal | None = None) -> list[ClosedBill]:
        """A reading at ``t`` brought ``wh`` more energy at ``rate`` (per kWh), or at
        ``cost`` in all when given (a block tariff's). Returns the bills of periods this
        closed."""
        t = int(t)
        self.standing_now = standing_per_day
        if period is None:
            self.start = self.end = None
            return []
        closed = []
        if self.start is None:
            self.start, self.end = period.period(t)
        if cost is not None:
            self.energy += cost
        elif rate is not None and wh:
            self.energy += Decimal(wh) * rate / 1000
        assert self.end is not None
        if t >= self.end:
            self._charge_days(self.end - 1, standing_per_day)
            bill = ClosedBill(self.start, self.end, self.energy + self.standing, self.received)
            closed.append(bill)
            if self.on_closed is not None:
                self.on_closed(bill)
            self.start, self.end = period.period(t)
            self.energy, self.standing, self.days = Decimal(0), Decimal(0), 0
        self._charge_days(t, standing_per_day)
        self.stamp = t
        return closed

    # -- the attribute values ----------------------------------------------------------
    def to_date(self) -> Decimal:
        return self.energy + self.standing

    def projected(self) -> Decimal:
        assert self.start is not None and self.end is not None
        days = -(-(self.end - self.start) // DAY)
        elapsed = (self.stamp or self.start) - self.start
        energy = self.energy * (self.end - self.start) / elapsed if elapsed > 0 else Decimal(0)
        return energy + self.standing_now * days

    # -- persistence -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "energy": str(self.energy),
                "standing": str(self.standing), "days": self.days, "stamp": self.stamp,
                "standing_now": str(self.standing_now)}

    def restore(self, state: dict[str, Any]) -> None:
        self.start = None if state["start"] is None else int(state["start"])
        self.end = None if state["end"] is None else int(state["end"])
        self.energy = Decimal(state["energy"])
        self.standing = Decimal(state["standing"])
        self.days = int(state["days"])
        self.stamp = None if state["stamp"] is None else int(state["stamp"])
        self.standing_now = Decimal(state["standing_now"])
