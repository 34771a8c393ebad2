"""The pieces of the metrology self-check that judge the measurement source.

A real metering chip's samples always wiggle; the simulated household does not (its power is
constant for stretches of minutes), so "the same sample for a long time" alone would flag a
healthy quiet house. The reference is the load model: a source is **stuck** when it keeps
returning one value while the model changed ``changes`` times (default 3) over that run of
samples. :func:`probe` is the test after a chip reset: it samples the source over a recent
window in which the model varies and calls it healthy only if the samples vary too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

from sep.metrology.load import SLOT
from sep.metrology.source import MeasurementError, MeasurementSource

DEFAULT_STUCK_CHANGES = 3
PROBE_SLOTS = 360  # one hour of slots at most


class StuckDetector:
    """Fed every integrated (slot time, raw sample); says when the source looks stuck."""

    def __init__(self, model: Callable[[int], int], changes: int = DEFAULT_STUCK_CHANGES) -> None:
        if changes < 1:
            raise ValueError("changes must be >= 1")
        self.model = model
        self.changes_needed = changes
        self.reset()

    def reset(self) -> None:
        self.value: int | None = None
        self.run_start = 0
        self.changes = 0
        self._model_last: int | None = None

    def feed(self, slot_t: int, sample: int) -> bool:
        if sample != self.value:
            self.value, self.run_start, self.changes, self._model_last = sample, slot_t, 0, None
            return False
        if self._model_last is None:
            self._model_last = self.model(self.run_start)
        m = self.model(slot_t)
        if m != self._model_last:
            self.changes += 1
            self._model_last = m
        return self.changes >= self.changes_needed


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    state: Literal["ok", "stuck", "failing", "inconclusive"]
    detail: str = ""


def probe(source: MeasurementSource, model: Callable[[int], int], now: int,
          slots: int = PROBE_SLOTS) -> ProbeResult:
    """Sample the source over the slots before ``now`` until the model has varied."""
    slot = int(now) // SLOT * SLOT
    samples: set[int] = set()
    models: set[int] = set()
    for i in range(slots):
        t = slot - i * SLOT
        try:
            samples.add(source.sample_w(t))
        except MeasurementError as exc:
            return ProbeResult("failing", str(exc))
        except Exception as exc:  # noqa: BLE001 - any chip error is a failing chip
            return ProbeResult("failing", f"{type(exc).__name__}: {exc}")
        models.add(model(t))
        if len(models) >= 2:
            if len(samples) >= 2:
                return ProbeResult("ok")
            if len(models) >= DEFAULT_STUCK_CHANGES:
                return ProbeResult("stuck", f"stuck at {next(iter(samples))} W while the "
                                            f"model took {len(models)} values")
    if len(models) >= 2 and len(samples) < 2:
        return ProbeResult("stuck", f"stuck at {next(iter(samples))} W")
    return ProbeResult("inconclusive", "the model did not vary in the probe window")
