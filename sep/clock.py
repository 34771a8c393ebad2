"""Time for the meter: wall time, or simulated time running N times faster.

Everything that needs "now" (metrology integration, Time cluster, load profile,
reporting) takes a :class:`Clock`, so a demo can run a day in a minute and a test can
step time deterministically.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (UTC), possibly simulated."""
        ...


class WallClock:
    def now(self) -> float:
        return time.time()


class ScaledClock:
    """Simulated time: starts at ``start`` (epoch seconds) and runs ``speed`` times faster
    than the monotonic clock of this process."""

    def __init__(self, start: float | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = time.time() if start is None else start
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._t0) * self.speed


class ManualClock:
    """A clock that only moves when told to (tests, benchmarks)."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
