"""Measurement sources: where the metrology side gets its raw power samples.

A source is the metering chip as the metrology firmware sees it: asked for the raw power
(whole watts, negative = export) of the :data:`~sep.metrology.load.SLOT` containing a time,
it answers or raises :class:`MeasurementError`; :meth:`MeasurementSource.reinitialise` is the
chip reset the self-check uses to recover a source that is stuck or failing.

:class:`HouseholdSource` is the healthy simulated chip (the seeded household load).
:class:`FaultySource` wraps another source and, from a chosen moment, freezes on one sample
(``stuck``) or raises (``fail``) until it has been re-initialised a given number of times —
the fault injection the tests and ``--inject`` use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, Protocol

from sep.metrology.load import HouseholdLoad


class MeasurementError(Exception):
    """The source did not produce a sample."""


class MeasurementSource(Protocol):
    name: str
    resets: int

    def sample_w(self, t: int) -> int:
        """Raw power (W) of the slot containing ``t``; MeasurementError if none."""
        ...

    def reinitialise(self) -> None:
        """Reset the source (the chip reset)."""
        ...


class HouseholdSource:
    name = "household"

    def __init__(self, load: HouseholdLoad) -> None:
        self.load = load
        self.resets = 0

    def sample_w(self, t: int) -> int:
        return self.load.power_w(t)

    def reinitialise(self) -> None:
        self.resets += 1


FaultMode = Literal["stuck", "fail"]


class FaultySource:
    """``inner`` with an injected fault.

    The fault becomes active ``after`` seconds (of ``now``, monotonic by default) from
    construction, or when :meth:`trigger` is called. It clears after ``resets_to_cure``
    re-initialisations made while it is active (0: never clears).
    """

    def __init__(self, inner: MeasurementSource, mode: FaultMode, *, after: float | None = 0.0,
                 resets_to_cure: int = 1, now: Callable[[], float] = time.monotonic) -> None:
        if mode not in ("stuck", "fail"):
            raise ValueError(f"unknown fault mode {mode!r}")
        self.inner = inner
        self.mode = mode
        self.name = f"{inner.name}+{mode}"
        self.resets_to_cure = resets_to_cure
        self._now = now
        self._armed_at = None if after is None else now() + after
        self._frozen: int | None = None
        self.resets = 0
        self.resets_while_active = 0
        self.cured = False

    def trigger(self) -> None:
        self._armed_at = self._now()

    @property
    def active(self) -> bool:
        return (not self.cured and self._armed_at is not None
                and self._now() >= self._armed_at)

    def sample_w(self, t: int) -> int:
        if not self.active:
            return self.inner.sample_w(t)
        if self.mode == "fail":
            raise MeasurementError("measurement chip not responding (injected)")
        if self._frozen is None:
            self._frozen = self.inner.sample_w(t)
        return self._frozen

    def reinitialise(self) -> None:
        self.resets += 1
        self.inner.reinitialise()
        if self.active:
            self.resets_while_active += 1
            if self.resets_to_cure and self.resets_while_active >= self.resets_to_cure:
                self.cured = True
                self._frozen = None


def parse_inject(spec: str, inner: MeasurementSource) -> FaultySource:
    """``MODE[:AFTER_SECONDS[:RESETS_TO_CURE]]``, e.g. ``stuck:0.5:1`` or ``fail:2:0``."""
    parts = spec.split(":")
    if not 1 <= len(parts) <= 3 or parts[0] not in ("stuck", "fail"):
        raise ValueError(f"bad --inject {spec!r}: MODE[:AFTER[:RESETS]], MODE stuck or fail")
    after = float(parts[1]) if len(parts) > 1 else 0.0
    resets = int(parts[2]) if len(parts) > 2 else 1
    if after < 0 or resets < 0:
        raise ValueError(f"bad --inject {spec!r}: negative values")
    mode: FaultMode = "stuck" if parts[0] == "stuck" else "fail"
    return FaultySource(inner, mode, after=after, resets_to_cure=resets)
