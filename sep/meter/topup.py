"""Top-up codes: the digits a customer keys into a PPMID, checked by the meter (sans-IO).

A code is ``serial | amount | check`` in decimal digits, laid out by the tariff file's
``[prepayment.top_up_code]`` table (``examples/tariff.toml``):

- ``serial_digits``: a serial number; each serial is accepted once (a code typed twice,
  replayed from a capture or printed twice is refused as a duplicate);
- ``amount_digits``: the credit, counted in ``amount_unit`` (0.01 = pence);
- the check digits, by ``check``:

  ``luhn``            one digit, ISO/IEC 7812-1 Annex B (the Luhn formula): catches every
                      single-digit typo and most swaps. Anyone can make a valid code.
  ``iso7064-mod97``   two digits, ISO/IEC 7064 MOD 97-10 (as in IBAN): the number
                      ``serial amount check`` is 1 modulo 97.
  ``hmac-sha256``     ``check_digits`` digits (4..12, default 8): the first 8 bytes of
                      HMAC-SHA256(key, the serial and amount digits as ASCII), big-endian,
                      modulo 10^check_digits. Only who holds the key (the supplier's vending
                      system and the meter) can make a code that is accepted; the others
                      check typing only.

The octet string on the air (ConsumerTopUp's TopUpCode) holds the digits as ASCII;
SE allows 1..25 characters, so a layout is at most 25 digits long.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from decimal import Decimal

CHECKS = ("luhn", "iso7064-mod97", "hmac-sha256")
MAX_DIGITS = 25  # ConsumerTopUp's TopUpCode: an octet string of at most 25 characters
HMAC_DIGITS = range(4, 13)


class CodeRejected(ValueError):
    """A code that is not a top-up code of this meter's format (``why`` says how)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def luhn_digit(payload: str) -> str:
    """The Luhn check digit for ``payload`` (decimal digits)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # every second digit from the right, starting next to the check
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def mod97_digits(payload: str) -> str:
    """ISO/IEC 7064 MOD 97-10 check digits: ``payload + check`` is 1 modulo 97."""
    return f"{98 - int(payload + '00') % 97:02d}"


def hmac_digits(key: bytes, payload: str, digits: int) -> str:
    mac = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()
    return f"{int.from_bytes(mac[:8], 'big') % 10 ** digits:0{digits}d}"


@dataclasses.dataclass(frozen=True)
class TopUpCode:
    serial: int
    amount: int  # in amount units
    text: str


@dataclasses.dataclass(frozen=True)
class TopUpCodeFormat:
    serial_digits: int = 8
    amount_digits: int = 6
    amount_unit: Decimal = Decimal("0.01")
    check: str = "luhn"
    check_digits: int = 1
    key: bytes = b""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises ValueError("key: problem") for a layout that cannot work."""
        if self.check not in CHECKS:
            raise ValueError(f"check: must be one of {', '.join(CHECKS)}, not {self.check!r}")
        want = {"luhn": 1, "iso7064-mod97": 2}.get(self.check)
        if want is not None and self.check_digits != want:
            raise ValueError(f"check_digits: {self.check} has {want}")
        if self.check == "hmac-sha256":
            if self.check_digits not in HMAC_DIGITS:
                raise ValueError("check_digits: hmac-sha256 takes 4..12")
            if len(self.key) < 16:
                raise ValueError("key: hmac-sha256 needs a key of at least 16 bytes (32 hex)")
        if not 1 <= self.serial_digits <= 18:
            raise ValueError("serial_digits: 1..18")
        if not 1 <= self.amount_digits <= 9:
            raise ValueError("amount_digits: 1..9")
        if self.length > MAX_DIGITS:
            raise ValueError(f"serial_digits: serial, amount and check digits are at most "
                             f"{MAX_DIGITS} together, not {self.length}")
        if self.amount_unit <= 0:
            raise ValueError("amount_unit: must be positive")

    @property
    def length(self) -> int:
        return self.serial_digits + self.amount_digits + self.check_digits

    def _check(self, payload: str) -> str:
        if self.check == "luhn":
            return luhn_digit(payload)
        if self.check == "iso7064-mod97":
            return mod97_digits(payload)
        return hmac_digits(self.key, payload, self.check_digits)

    def parse(self, raw: bytes) -> TopUpCode:
        """The serial and amount of a well-formed code; CodeRejected otherwise."""
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise CodeRejected("not ASCII digits") from None
        if not text.isdigit() or not text.isascii():
            raise CodeRejected("not all digits")
        if len(text) != self.length:
            raise CodeRejected(f"{len(text)} digits, the format has {self.length}")
        payload, check = text[:-self.check_digits], text[-self.check_digits:]
        if not hmac.compare_digest(self._check(payload), check):
            raise CodeRejected("check digits do not match")
        serial = int(payload[:self.serial_digits])
        amount = int(payload[self.serial_digits:])
        if amount == 0:
            raise CodeRejected("a code for no credit")
        return TopUpCode(serial=serial, amount=amount, text=text)

    def make(self, serial: int, amount: int) -> str:
        """A code (what the supplier's vending system issues; hubsim's PPMID scenarios)."""
        if not 0 <= serial < 10 ** self.serial_digits or not 0 < amount < 10 ** self.amount_digits:
            raise ValueError("serial or amount does not fit the format")
        payload = f"{serial:0{self.serial_digits}d}{amount:0{self.amount_digits}d}"
        return payload + self._check(payload)

    def money(self, amount: int) -> Decimal:
        """The credit of ``amount`` units, in the currency's major unit."""
        return self.amount_unit * amount
