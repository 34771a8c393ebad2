"""Register bookkeeping on top of the metrology totals (sans-IO).

Metrology owns the legally relevant totals; this derives what the HAN is shown from
them: TOU tier registers (the active price tier decides where new energy goes, so the
tier registers always sum to the total; exported energy goes to the export tariff's
active tier, or with no export tariff to the import tier), block registers while a block
tariff is active (:mod:`sep.meter.blocks`; delivered and received each have their own),
maximum demand (:mod:`sep.meter.demand`), and consumption for the current and previous
days (up to eight back), weeks (Monday-based, five back) and months (thirteen back), in
UTC (SE 1.4 D.3.2.2.5).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from sep.meter.blocks import BlockRegisters
from sep.meter.demand import DemandTracker

MAX_TIERS = 8
DAY = 86400


def _day_start(t: int) -> int:
    return t // DAY * DAY


def _week_start(t: int) -> int:
    day = _day_start(t)
    return day - dt.datetime.fromtimestamp(day, dt.UTC).weekday() * DAY


def _month_start(t: int) -> int:
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return int(dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC).timestamp())


def _next_day(start: int) -> int:
    return start + DAY


def _next_week(start: int) -> int:
    return start + 7 * DAY


def _next_month(start: int) -> int:
    d = dt.datetime.fromtimestamp(start, dt.UTC)
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return int(dt.datetime(y, m, 1, tzinfo=dt.UTC).timestamp())


@dataclasses.dataclass
class Period:
    """One consumption period (day, week or month) and the ones before it.

    ``history[0]`` is the previous period, ``history[1]`` the one before ... A period in
    which the meter took no reading at all (it was off) is kept as zero, so "previous
    day" always means the calendar day before the current one.
    """

    start_of: Callable[[int], int]
    next_start: Callable[[int], int]
    keep: int = 1
    start: int = 0
    current: list[int] = dataclasses.field(default_factory=lambda: [0, 0])  # [delivered, received]
    history: list[list[int]] = dataclasses.field(default_factory=list)

    @property
    def previous(self) -> list[int]:
        return self.history[0] if self.history else [0, 0]

    def back(self, n: int) -> list[int]:
        """The period ``n`` before the current one (1 = previous)."""
        return self.history[n - 1] if n <= len(self.history) else [0, 0]

    def roll(self, t: int) -> None:
        start = self.start_of(t)
        if start == self.start:
            return
        if self.start and start > self.start:
            closed = [self.current]
            s = self.next_start(self.start)
            while s < start and len(closed) <= self.keep:
                closed.insert(0, [0, 0])  # a whole period with no reading
                s = self.next_start(s)
            self.history = (closed + self.history)[: self.keep]
        self.current = [0, 0]
        self.start = start


class RegisterSet:
    def __init__(self, *, demand_period_s: int = 300) -> None:
        self.tiers_delivered = [0] * MAX_TIERS
        self.tiers_received = [0] * MAX_TIERS
        self.active_tier = 1
        self.received_tier: int | None = None  # the export tariff's tier; None: follow import
        self.day = Period(_day_start, _next_day, keep=8)
        self.week = Period(_week_start, _next_week, keep=5)
        self.month = Period(_month_start, _next_month, keep=13)
        self.blocks = BlockRegisters()
        self.blocks_received = BlockRegisters()
        self.demand = DemandTracker(demand_period_s)
        self.last: tuple[int, int] | None = None  # totals (delivered, received) seen last
        #: how the last increments split over (tier index, block) (empty: no blocks)
        self.last_split: dict[tuple[int, int], int] = {}
        self.last_split_received: dict[tuple[int, int], int] = {}

    @property
    def active_received_tier(self) -> int:
        return self.active_tier if self.received_tier is None else self.received_tier

    def state(self) -> dict[str, Any]:
        """Everything derived so far, for the store (the totals themselves are metrology's)."""
        return {
            "tiers_delivered": self.tiers_delivered, "tiers_received": self.tiers_received,
            "active_tier": self.active_tier, "last": self.last, "blocks": self.blocks.state(),
            "received_tier": self.received_tier, "blocks_received": self.blocks_received.state(),
            "demand": self.demand.state(),
            "periods": {name: [p.start, p.current, p.history] for name, p in
                        (("day", self.day), ("week", self.week), ("month", self.month))},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Back after a restart: the next reading books what metrology measured meanwhile
        to the active tier, so the tiers still sum to the total."""
        self.tiers_delivered = [int(v) for v in state["tiers_delivered"]][:MAX_TIERS]
        self.tiers_received = [int(v) for v in state["tiers_received"]][:MAX_TIERS]
        self.active_tier = int(state["active_tier"])
        last = state["last"]
        self.last = None if last is None else (int(last[0]), int(last[1]))
        self.blocks.restore(state["blocks"])
        received_tier = state.get("received_tier")
        self.received_tier = None if received_tier is None else int(received_tier)
        if "blocks_received" in state:
            self.blocks_received.restore(state["blocks_received"])
        if "demand" in state:
            self.demand.restore(state["demand"])
        for name, period in (("day", self.day), ("week", self.week), ("month", self.month)):
            start, current, history = state["periods"][name]
            period.start = int(start)
            period.current = [int(v) for v in current]
            period.history = [[int(v) for v in h] for h in history][: period.keep]

    def set_tier(self, tier: int) -> None:
        if not 1 <= tier <= MAX_TIERS:
            raise ValueError(f"tier {tier} outside 1..{MAX_TIERS}")
        self.active_tier = tier

    def set_received_tier(self, tier: int | None) -> None:
        """The export tariff's tier in force (None: no export tariff)."""
        if tier is not None and not 1 <= tier <= MAX_TIERS:
            raise ValueError(f"tier {tier} outside 1..{MAX_TIERS}")
        self.received_tier = tier

    def update(self, t: float, delivered_wh: int, received_wh: int) -> tuple[int, int]:
        """Take new totals at time ``t``; returns the increments (Wh) since the last.

        The increment accrued up to ``t``: it is booked to the day (week, month) that the
        instant before ``t`` belongs to — a reading at midnight closes the day that ended,
        as a load-profile interval (end - period, end] does."""
        for period in (self.day, self.week, self.month):
            period.roll(int(t) - 1)
        if self.last is None:
            # The whole history so far is booked to tier 1 so the tiers sum to the total.
            self.tiers_delivered[0] += delivered_wh
            self.tiers_received[0] += received_wh
            self.last = (delivered_wh, received_wh)
            self.demand.add(t, 0, 0)
            for period in (self.day, self.week, self.month):
                period.roll(int(t))
            return 0, 0
        d = max(0, delivered_wh - self.last[0])
        r = max(0, received_wh - self.last[1])
        self.last = (delivered_wh, received_wh)
        self.tiers_delivered[self.active_tier - 1] += d
        self.tiers_received[self.active_received_tier - 1] += r
        for period in (self.day, self.week, self.month):
            period.current[0] += d
            period.current[1] += r
            period.roll(int(t))
        self.last_split = self.blocks.add(int(t), d, self.active_tier)
        self.last_split_received = self.blocks_received.add(int(t), r, self.active_received_tier)
        self.demand.add(t, d, r)
        return d, r
