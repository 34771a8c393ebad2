"""Load profile: consumption per fixed interval, per channel (sans-IO).

Intervals are aligned to the period (a 30-minute profile has intervals ending at :00 and
:30 UTC). An interval is closed when a reading arrives at or after its end; its value is
the energy (Wh) that accrued inside it. Readings arrive at arbitrary times, so energy
between two readings that straddle a boundary is attributed to the interval in which the
later reading falls — the same rule a meter with a fixed sampling tick applies.

Persistence is the caller's: ``on_closed`` is called with every closed interval so the
store can keep it, and :meth:`load` puts stored intervals back after a restart.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable

CHANNEL_DELIVERED = 0
CHANNEL_RECEIVED = 1
CHANNELS = (CHANNEL_DELIVERED, CHANNEL_RECEIVED)

# SE 1.4 ProfileIntervalPeriod enumeration → seconds
PERIOD_SECONDS = {0: 86400, 1: 3600, 2: 1800, 3: 900, 4: 600, 5: 450, 6: 300, 7: 150}
INVALID_INTERVAL = 0xFFFFFF  # "invalid intervals should be marked as 0xFFFFFF"


@dataclasses.dataclass(frozen=True)
class Interval:
    channel: int
    end: int  # unix seconds
    value_wh: int


class LoadProfile:
    def __init__(self, period_code: int = 2, *, keep: int = 17_520,
                 on_closed: Callable[[Interval], None] | None = None) -> None:
        if period_code not in PERIOD_SECONDS:
            raise ValueError(f"unknown ProfileIntervalPeriod {period_code}")
        self.period_code = period_code
        self.period = PERIOD_SECONDS[period_code]
        self.keep = keep
        self.on_closed = on_closed
        self._ends: dict[int, list[int]] = {c: [] for c in CHANNELS}
        self._values: dict[int, list[int]] = {c: [] for c in CHANNELS}
        self.current_end: int | None = None
        self.current: dict[int, int] = {c: 0 for c in CHANNELS}
        self.current_start: int | None = None
        #: intervals ending at or before this time are not given out (a change of tenancy
        #: blocked the history from the HAN); 0: none blocked
        self.blocked_until = 0

    def interval_end(self, t: float) -> int:
        """End of the interval containing ``t``: intervals are (end - period, end]."""
        return -(-int(t) // self.period) * self.period

    def add(self, t: float, delivered_wh: int, received_wh: int) -> list[Interval]:
        """Energy that accrued up to time ``t``; returns the intervals this closed."""
        closed: list[Interval] = []
        end = self.interval_end(t)
        if self.current_end is None:
            # The first reading starts the profile; a reading on a boundary belongs to the
            # interval it ends, so the first whole interval starts there.
            self.current_end = end if end > int(t) else end + self.period
            self.current_start = self.current_end - self.period
            return closed
        if end > self.current_end:
            for channel in CHANNELS:
                closed.append(self._close(channel, self.current_end, self.current[channel]))
            # Intervals that passed with no reading at all (power was off): invalid.
            gap = self.current_end + self.period
            while gap < end:
                for channel in CHANNELS:
                    closed.append(self._close(channel, gap, INVALID_INTERVAL))
                gap += self.period
            self._start(end)
        self.current[CHANNEL_DELIVERED] += delivered_wh
        self.current[CHANNEL_RECEIVED] += received_wh
        if int(t) == self.current_end:  # a reading on the boundary completes the interval
            for channel in CHANNELS:
                closed.append(self._close(channel, self.current_end, self.current[channel]))
            self._start(self.current_end + self.period)
        return closed

    def _start(self, end: int) -> None:
        self.current_end = end
        self.current_start = end - self.period
        self.current = {c: 0 for c in CHANNELS}

    def _close(self, channel: int, end: int, value: int) -> Interval:
        self._ends[channel].append(end)
        self._values[channel].append(value)
        if len(self._ends[channel]) > self.keep:
            del self._ends[channel][0]
            del self._values[channel][0]
        interval = Interval(channel, end, value)
        if self.on_closed is not None:
            self.on_closed(interval)
        return interval

    def load(self, intervals: list[Interval]) -> None:
        for iv in sorted(intervals, key=lambda i: i.end):
            ends = self._ends[iv.channel]
            if ends and iv.end <= ends[-1]:
                continue
            ends.append(iv.end)
            self._values[iv.channel].append(iv.value_wh)

    def latest_end(self, channel: int) -> int | None:
        ends = self._ends[channel]
        return ends[-1] if ends else None

    def get(self, channel: int, end_time: int, count: int) -> tuple[int, list[int]]:
        """Up to ``count`` closed intervals ending at or before ``end_time`` (0 = latest),
        most recent first (the GetProfileResponse order). Returns (end of the first, values)."""
        ends = self._ends[channel]
        if not ends:
            return 0, []
        if end_time == 0:
            i = len(ends)
        else:
            i = bisect.bisect_right(ends, end_time)
        if i == 0:
            return 0, []
        first = bisect.bisect_right(ends, self.blocked_until) if self.blocked_until else 0
        if i <= first:
            return 0, []
        start = max(first, i - count)
        values = self._values[channel][start:i]
        return ends[i - 1], list(reversed(values))

    def clear(self) -> None:
        """Forget every closed interval (the one being filled goes on)."""
        for channel in CHANNELS:
            self._ends[channel].clear()
            self._values[channel].clear()

    def all(self, channel: int) -> list[Interval]:
        return [Interval(channel, e, v) for e, v in zip(self._ends[channel],
                                                         self._values[channel], strict=True)]
