"""Calibration constants of the metrology side: checksummed, kept in two copies.

A :class:`Calibration` is a gain (in millionths: ``gain_micro = 1_000_000`` is unity) and a
zero offset (milliwatts) applied to every raw power sample of the measurement source::

    measured power [µW] = raw power [W] × gain_micro + offset_mw × 1000

so unity gain and zero offset reproduce :class:`~sep.metrology.load.HouseholdLoad` exactly
(the integration stays in integer micro-joules, nothing is rounded).

The constants carry their own CRC-32 over a canonical encoding, independent of the storage
underneath, so the copy in RAM can be re-verified periodically too (a flipped bit in memory
is caught the same way as one on the medium). Two copies are stored (``a`` and ``b``, each a
separate record of the metrology's own integrity-checked :class:`~sep.store.Store`, which adds
a CRC and an HMAC per row). :meth:`CalibrationCopies.verify` checks both:

- both intact and equal → OK;
- one damaged or missing → rewritten from the other (``repaired``);
- both damaged, or both intact but different (which one is right cannot be told) → ``corrupt``:
  metrology refuses to produce energy values (``CALIBRATION_FAULT``) until service.

Calibration is written once, at commissioning (the first start on an empty data directory);
nothing in the read-only protocol can change it.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from typing import Any, Literal

from sep.store import CorruptRecord, Store

KIND = "metrology-calibration"
COPIES = ("a", "b")
UNITY = 1_000_000
MAX_GAIN_MICRO = 2_000_000  # a plausible metering chip trims within ±100 %; beyond is nonsense
MAX_OFFSET_MW = 1_000_000


class CalibrationError(ValueError):
    """A calibration record that fails its checksum or its plausibility limits."""


@dataclasses.dataclass(frozen=True, slots=True)
class Calibration:
    gain_micro: int = UNITY
    offset_mw: int = 0
    ident: str = "factory"  # who/what calibrated it (free text, covered by the checksum)

    def __post_init__(self) -> None:
        if type(self.gain_micro) is not int or type(self.offset_mw) is not int:  # not bool
            raise CalibrationError("calibration constants must be integers")
        if not 0 < self.gain_micro <= MAX_GAIN_MICRO:
            raise CalibrationError(f"gain {self.gain_micro} µ out of range")
        if abs(self.offset_mw) > MAX_OFFSET_MW:
            raise CalibrationError(f"offset {self.offset_mw} mW out of range")

    def _canonical(self) -> bytes:
        return json.dumps([self.gain_micro, self.offset_mw, self.ident],
                          separators=(",", ":")).encode()

    def checksum(self) -> int:
        return zlib.crc32(self._canonical())

    def apply_uw(self, raw_w: int) -> int:
        """Calibrated power in micro-watts for a raw sample in watts (exact)."""
        return raw_w * self.gain_micro + self.offset_mw * 1000

    def to_record(self) -> dict[str, Any]:
        return {"gain_micro": self.gain_micro, "offset_mw": self.offset_mw, "ident": self.ident,
                "crc32": self.checksum()}

    @classmethod
    def from_record(cls, doc: Any) -> Calibration:
        if not isinstance(doc, dict) or set(doc) != {"gain_micro", "offset_mw", "ident", "crc32"}:
            raise CalibrationError("not a calibration record")
        if not isinstance(doc["ident"], str):
            raise CalibrationError("calibration ident must be text")
        cal = cls(doc["gain_micro"], doc["offset_mw"], doc["ident"])
        if cal.checksum() != doc["crc32"]:
            raise CalibrationError("calibration checksum mismatch")
        return cal


def verify_in_memory(cal: Calibration, expected_crc: int) -> bool:
    """The RAM copy still matches the checksum taken when it was loaded."""
    return cal.checksum() == expected_crc


@dataclasses.dataclass(frozen=True)
class CalibrationCheck:
    state: Literal["ok", "repaired", "corrupt"]
    calibration: Calibration | None
    detail: str = ""
    repaired: tuple[str, ...] = ()


class CalibrationCopies:
    """The two stored copies of the calibration."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, cal: Calibration) -> None:
        """Commissioning only: both copies, one after the other."""
        for copy in COPIES:
            self.store.put_record(KIND, copy, cal.to_record())

    def exists(self) -> bool:
        """Any copy present (intact or not) — used to tell a fresh store from a damaged one."""
        for copy in COPIES:
            try:
                if self.store.get_record(KIND, copy) is not None:
                    return True
            except CorruptRecord:
                return True
        return False

    def _read(self, copy: str) -> tuple[Calibration | None, str]:
        try:
            doc = self.store.get_record(KIND, copy)
        except CorruptRecord as exc:  # CRC/MAC failure: the store quarantined the row
            return None, f"copy {copy}: {exc.reason}"
        if doc is None:
            return None, f"copy {copy}: missing"
        try:
            return Calibration.from_record(doc), ""
        except (CalibrationError, TypeError) as exc:
            return None, f"copy {copy}: {exc}"

    def verify(self) -> CalibrationCheck:
        (a, why_a), (b, why_b) = (self._read(c) for c in COPIES)
        if a is not None and b is not None:
            if a == b:
                return CalibrationCheck("ok", a)
            return CalibrationCheck("corrupt", None, "the two copies differ")
        if a is None and b is None:
            return CalibrationCheck("corrupt", None, f"{why_a}; {why_b}")
        good = a or b
        assert good is not None
        bad = "b" if a is not None else "a"
        self.store.put_record(KIND, bad, good.to_record())
        return CalibrationCheck("repaired", good, why_a or why_b, (bad,))
