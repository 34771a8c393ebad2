"""Maximum demand (sans-IO): the average power over each demand integration period.

SE 1.4 D.3.2.2.1 CurrentMaxDemandDelivered / CurrentMaxDemandReceived (and their times,
0x0008/0x0009) and D.3.2.2.5 CurrentDayMaxDemand, PreviousDayMaxDemand,
CurrentMonthMaxDemand, CurrentYearMaxDemand are "demand": energy per integration period
expressed as power (DemandIntegrationPeriod minutes, NumberOfDemandSubintervals 1 here).

Periods are aligned to their length (a 5-minute period ends at :00, :05, ...). Energy
between two readings is booked to the period in which the later reading falls, as the
load profile does (:mod:`sep.meter.load_profile`); a period closes when a reading arrives
at or after its end, and its demand is ``Wh * 3600 // period seconds`` (W). A period in
which no reading arrived has no demand, and a period whose first reading came after a gap
longer than itself (the meter was off: the energy of the gap would be booked to it) gives
none either; both are skipped. A period
belongs to the UTC day, month and year in which it started. The maxima since the meter
started counting are CurrentMaxDemand{Delivered,Received}, with the end of the period
that set them as their time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def _day(t: int) -> int:
    return t // 86400 * 86400


def _month(t: int) -> tuple[int, int]:
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return d.year, d.month


def _year(t: int) -> int:
    return dt.datetime.fromtimestamp(t, dt.UTC).year


class DemandTracker:
    def __init__(self, period_s: int = 300) -> None:
        if period_s <= 0 or 3600 % period_s and period_s % 3600:
            raise ValueError("a demand integration period divides an hour (or is whole hours)")
        self.period = period_s
        self.current_end: int | None = None
        self.accrued = [0, 0]  # Wh delivered, received in the open period
        self.valid = True  # the open period's energy all accrued within it
        self.last_t: int | None = None
        self.max_delivered: tuple[int, int] | None = None  # (W, period end)
        self.max_received: tuple[int, int] | None = None
        self.day: tuple[int, int] | None = None  # (day start, max W)
        self.previous_day: tuple[int, int] | None = None
        self.month: tuple[tuple[int, int], int] | None = None  # ((year, month), max W)
        self.year: tuple[int, int] | None = None  # (year, max W)

    def _end_of(self, t: float) -> int:
        return -(-int(t) // self.period) * self.period

    def add(self, t: float, delivered_wh: int, received_wh: int) -> list[tuple[int, int, int]]:
        """Energy that accrued up to ``t``; returns the periods this closed as
        (end, delivered W, received W)."""
        closed: list[tuple[int, int, int]] = []
        end = self._end_of(t)
        last, self.last_t = self.last_t, int(t)
        if self.current_end is None:
            # the first reading starts the count: a period it starts inside is partial
            self.current_end = end if end > int(t) else end + self.period
            self.valid = int(t) == self.current_end - self.period
            return closed
        if end > self.current_end:
            closed += self._close()
            self.current_end = end
            self.accrued = [0, 0]
            self.valid = last is not None and last >= end - self.period
        self.accrued[0] += delivered_wh
        self.accrued[1] += received_wh
        if int(t) == self.current_end:
            closed += self._close()
            self.current_end += self.period
            self.accrued = [0, 0]
            self.valid = True
        return closed

    def _close(self) -> list[tuple[int, int, int]]:
        assert self.current_end is not None
        end = self.current_end
        d, r = (wh * 3600 // self.period for wh in self.accrued)
        self.accrued = [0, 0]
        if not self.valid:
            return []
        if self.max_delivered is None or d > self.max_delivered[0]:
            self.max_delivered = (d, end)
        if self.max_received is None or r > self.max_received[0]:
            self.max_received = (r, end)
        begun = end - self.period
        day = _day(begun)
        if self.day is None or self.day[0] != day:
            if self.day is not None:
                self.previous_day = self.day if self.day[0] == day - 86400 else (day - 86400, 0)
            self.day = (day, d)
        else:
            self.day = (day, max(self.day[1], d))
        month = _month(begun)
        self.month = (month, d) if self.month is None or self.month[0] != month \
            else (month, max(self.month[1], d))
        year = _year(begun)
        self.year = (year, d) if self.year is None or self.year[0] != year \
            else (year, max(self.year[1], d))
        return [(end, d, r)]

    # -- what the attributes show at ``now`` (a maximum of a period not current is 0) -----
    def day_max(self, now: float) -> int:
        return self.day[1] if self.day is not None and self.day[0] == _day(int(now)) else 0

    def previous_day_max(self, now: float) -> int:
        today = _day(int(now))
        if self.day is not None and self.day[0] == today - 86400:
            return self.day[1]
        if self.day is not None and self.day[0] == today and self.previous_day is not None \
                and self.previous_day[0] == today - 86400:
            return self.previous_day[1]
        return 0

    def month_max(self, now: float) -> int:
        return self.month[1] if self.month is not None and self.month[0] == _month(int(now)) \
            else 0

    def year_max(self, now: float) -> int:
        return self.year[1] if self.year is not None and self.year[0] == _year(int(now)) else 0

    # -- persistence -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"period": self.period, "end": self.current_end, "accrued": self.accrued,
                "valid": self.valid, "last": self.last_t,
                "max_delivered": self.max_delivered, "max_received": self.max_received,
                "day": self.day, "previous_day": self.previous_day,
                "month": None if self.month is None else [list(self.month[0]), self.month[1]],
                "year": self.year}

    def restore(self, state: dict[str, Any]) -> None:
        if int(state["period"]) != self.period:
            return  # another integration period: the maxima do not compare; start again

        def pair(v: Any) -> tuple[int, int] | None:
            return None if v is None else (int(v[0]), int(v[1]))

        self.current_end = None if state["end"] is None else int(state["end"])
        self.accrued = [int(v) for v in state["accrued"]]
        self.valid = bool(state["valid"])
        self.last_t = None if state["last"] is None else int(state["last"])
        self.max_delivered = pair(state["max_delivered"])
        self.max_received = pair(state["max_received"])
        self.day = pair(state["day"])
        self.previous_day = pair(state["previous_day"])
        m = state["month"]
        self.month = None if m is None else ((int(m[0][0]), int(m[0][1])), int(m[1]))
        self.year = pair(state["year"])
