"""Sampling sessions (SE 1.4 D.3.2.3.1.8 StartSampling, D.3.2.3.1.9 GetSampledData),
sans-IO.

"The sampling mechanism allows a set of samples of the specified type of data to be taken,
commencing at the stipulated start time": a session samples a register every
``interval`` seconds from ``start``, ``max_samples`` times; "each sample contains the
change in the relevant data since the previous sample", oldest first. Sample k (k = 1..)
is the change between the sample points ``start + (k-1) x interval`` and
``start + k x interval``; its time is the latter.

The register at a sample point is the value of the latest reading at or before it (the
meter reads metrology at its own pace; a sample point between two readings sees the
earlier one), so with readings on the sample points the samples are exact. Sample types
served: 0 consumption delivered and 1 consumption received (Wh).
"""

from __future__ import annotations

import dataclasses
from typing import Any

CONSUMPTION_DELIVERED = 0x00
CONSUMPTION_RECEIVED = 0x01
SAMPLE_TYPES = (CONSUMPTION_DELIVERED, CONSUMPTION_RECEIVED)
MAX_SAMPLES = 1024  # per session, what this meter keeps
INVALID_SAMPLE = 0xFFFFFF


@dataclasses.dataclass
class SamplingSession:
    sample_id: int
    issuer_event_id: int
    start: int  # unix seconds of the first sample point
    sample_type: int
    interval: int  # seconds
    max_samples: int
    samples: list[int] = dataclasses.field(default_factory=list)
    base: int | None = None  # the register at the last sample point passed
    last: tuple[int, int] | None = None  # (time, register) of the last reading seen

    @property
    def complete(self) -> bool:
        return len(self.samples) >= self.max_samples

    def point(self, k: int) -> int:
        return self.start + k * self.interval

    def feed(self, t: float, register: int) -> None:
        """A reading of the sampled register at ``t``."""
        t = int(t)
        prev = self.last
        self.last = (t, register)
        if prev is None or self.complete:
            if prev is None and t == self.start:
                self.base = register
            return
        t0, r0 = prev
        # sample points in (t0, t]: the register there is r0, or ``register`` at t itself
        k = len(self.samples) + (0 if self.base is None else 1)
        while not self.complete:
            at = self.point(k)
            if at > t:
                break
            if at > t0 or (self.base is None and at == t0):
                value = register if at == t else r0
                if self.base is None:
                    self.base = value
                else:
                    delta = value - self.base
                    self.samples.append(min(max(delta, 0), INVALID_SAMPLE - 1))
                    self.base = value
            k += 1

    def select(self, earliest: int, count: int) -> tuple[int, list[int]]:
        """Up to ``count`` samples whose time is at or after ``earliest``: (time of the
        first, samples)."""
        first = max(1, -(-(earliest - self.start) // self.interval))
        chosen = self.samples[first - 1:first - 1 + count]
        return self.point(first), chosen

    def state(self) -> list[Any]:
        return [self.sample_id, self.issuer_event_id, self.start, self.sample_type,
                self.interval, self.max_samples, self.samples, self.base,
                None if self.last is None else list(self.last)]

    @classmethod
    def from_state(cls, s: list[Any]) -> SamplingSession:
        return cls(int(s[0]), int(s[1]), int(s[2]), int(s[3]), int(s[4]), int(s[5]),
                   [int(v) for v in s[6]], None if s[7] is None else int(s[7]),
                   None if s[8] is None else (int(s[8][0]), int(s[8][1])))
