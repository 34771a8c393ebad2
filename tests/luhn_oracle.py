"""The Luhn check digit, written here from its published definition (ISO/IEC 7812-1 Annex B),
independently of the meter's top-up code checker: tests make valid codes with it."""

from __future__ import annotations


def luhn(payload: str) -> str:
    """``payload`` with its Luhn check digit appended."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return payload + str((10 - total % 10) % 10)
