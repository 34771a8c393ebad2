"""Register bookkeeping on top of the metrology totals (sans-IO).

Metrology owns the legally relevant totals; this derives what the HAN is shown from
them: TOU tier registers (the active price tier decides where new energy goes, so the
tier registers always sum to the total), and consumption for the current and previous
day, week (Monday-based) and month, in UTC.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

MAX_TIERS = 8


def _period_starts(t: float) -> tuple[int, int, int]:
    d = dt.datetime.fromtimestamp(int(t), dt.UTC)
    day = dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
    week = day - dt.timedelta(days=day.weekday())
    month = dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC)
    return int(day.timestamp()), int(week.timestamp()), int(month.timestamp())


@dataclasses.dataclass
class Period:
    start: int = 0
    current: list[int] = dataclasses.field(default_factory=lambda: [0, 0])  # [delivered, received]
    previous: list[int] = dataclasses.field(default_factory=lambda: [0, 0])

    def roll(self, start: int) -> None:
        if start != self.start:
            # A gap of more than one period leaves nothing for the previous one.
            self.previous = self.current if self.start else [0, 0]
            self.current = [0, 0]
            self.start = start


class RegisterSet:
    def __init__(self) -> None:
        self.tiers_delivered = [0] * MAX_TIERS
        self.tiers_received = [0] * MAX_TIERS
        self.active_tier = 1
        self.day = Period()
        self.week = Period()
        self.month = Period()
        self.last: tuple[int, int] | None = None  # totals (delivered, received) seen last

    def set_tier(self, tier: int) -> None:
        if not 1 <= tier <= MAX_TIERS:
            raise ValueError(f"tier {tier} outside 1..{MAX_TIERS}")
        self.active_tier = tier

    def update(self, t: float, delivered_wh: int, received_wh: int) -> tuple[int, int]:
        """Take new totals at time ``t``; returns the increments (Wh) since the last."""
        day, week, month = _period_starts(t)
        for period, start in ((self.day, day), (self.week, week), (self.month, month)):
            period.roll(start)
        if self.last is None:
            # The whole history so far is booked to tier 1 so the tiers sum to the total.
            self.tiers_delivered[0] += delivered_wh
            self.tiers_received[0] += received_wh
            self.last = (delivered_wh, received_wh)
            return 0, 0
        d = max(0, delivered_wh - self.last[0])
        r = max(0, received_wh - self.last[1])
        self.last = (delivered_wh, received_wh)
        i = self.active_tier - 1
        self.tiers_delivered[i] += d
        self.tiers_received[i] += r
        for period in (self.day, self.week, self.month):
            period.current[0] += d
            period.current[1] += r
        return d, r
