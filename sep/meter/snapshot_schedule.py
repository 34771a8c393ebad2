"""When scheduled snapshots fall due (SE 1.4 D.3.2.3.1.5 ScheduleSnapshot), sans-IO.

A schedule (Snapshot Schedule Payload) has a start time and a 24-bit Snapshot Schedule:
bits 0-19 the frequency, bits 20-21 the frequency type (0 day, 1 week, 2 month), bits
22-23 the wild card (0 start of, 1 end of, 2 not used) — the layout zigpy's
``SnapshotSchedule`` and Wireshark's dissector agree on. Daily and weekly schedules take
their first snapshot at the start time, then every ``frequency`` days or weeks. For months the
wild card picks the day: "start of" the first day of the month, "end of" its last day,
"not used" the start's day of the month (the month's last day when it is shorter); the
time of day is the start's, and the first snapshot is the first such day at or after the
start. A frequency of 0 takes one snapshot only, at the start time.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

DAY, WEEK, MONTH = 0, 1, 2
START_OF, END_OF, WILD_CARD_NOT_USED = 0, 1, 2


def split_schedule(raw: int) -> tuple[int, int, int]:
    """(frequency, frequency type, wild card) of a 24-bit Snapshot Schedule."""
    return raw & 0xFFFFF, (raw >> 20) & 0x3, (raw >> 22) & 0x3


@dataclasses.dataclass
class SnapshotSchedule:
    schedule_id: int
    start: int  # unix seconds of the first snapshot
    frequency: int
    frequency_type: int
    wild_card: int
    payload_type: int
    cause: int
    issuer_event_id: int
    requester: tuple[int, int] | None = None  # who gets the PublishSnapshot
    last: int | None = None  # when the last snapshot of it was taken

    def valid(self) -> bool:
        return self.frequency_type in (DAY, WEEK, MONTH) and self.wild_card in (
            START_OF, END_OF, WILD_CARD_NOT_USED)

    def times(self) -> Iterator[int]:
        """Every time a snapshot of this schedule falls due, in order."""
        if self.frequency_type in (DAY, WEEK) or self.frequency == 0:
            yield self.start
            if self.frequency == 0:
                return
            step = self.frequency * (7 if self.frequency_type == WEEK else 1) * 86400
            t = self.start
            while True:
                t += step
                yield t
        first = dt.datetime.fromtimestamp(self.start, dt.UTC)
        k = 0
        while True:
            y, m = divmod(first.month - 1 + k, 12)
            year, month = first.year + y, m + 1
            last_day = calendar.monthrange(year, month)[1]
            day = {START_OF: 1, END_OF: last_day}.get(self.wild_card, min(first.day, last_day))
            when = int(first.replace(year=year, month=month, day=day).timestamp())
            if when >= self.start:
                yield when
            k += self.frequency

    def due(self, now: float) -> int | None:
        """The latest time due at ``now`` not yet taken (None: nothing due). Times missed
        while the meter was off are not made up: one snapshot, at the latest of them."""
        if now < self.start:
            return None
        latest: int | None = None
        if self.frequency and self.frequency_type in (DAY, WEEK):
            step = self.frequency * (7 if self.frequency_type == WEEK else 1) * 86400
            latest = self.start + int(now - self.start) // step * step
            return latest if self.last is None or latest > self.last else None
        for when in self.times():
            if when > now:
                break
            if self.last is None or when > self.last:
                latest = when
        return latest

    def next_time(self, now: float) -> int | None:
        for when in self.times():
            if when > now and (self.last is None or when > self.last):
                return when
        return None

    def state(self) -> list[Any]:
        return [self.schedule_id, self.start, self.frequency, self.frequency_type,
                self.wild_card, self.payload_type, self.cause, self.issuer_event_id,
                None if self.requester is None else list(self.requester), self.last]

    @classmethod
    def from_state(cls, s: list[Any]) -> SnapshotSchedule:
        return cls(int(s[0]), int(s[1]), int(s[2]), int(s[3]), int(s[4]), int(s[5]), int(s[6]),
                   int(s[7]), None if s[8] is None else (int(s[8][0]), int(s[8][1])),
                   None if s[9] is None else int(s[9]))
