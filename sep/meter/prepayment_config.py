"""The prepayment part of a tariff file (``[prepayment]``, see ``examples/tariff.toml``).

A :class:`PrepaymentConfig` is a plain value the meter starts its prepayment account from:
the payment mode, the opening credit, emergency credit, warning and limit levels, the
friendly-credit periods (local times in the tariff's time zone in which the supply is never
interrupted for want of credit) and the top-up code layout (:mod:`sep.meter.topup`).
Money is in the tariff currency's major unit (GBP), exact decimals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sep.meter.topup import CHECKS, TopUpCodeFormat

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MODES = ("credit", "prepayment")


@dataclasses.dataclass(frozen=True)
class FriendlyPeriod:
    """Local ``start``..``end`` (minutes after midnight) on each of ``days`` (0 = Monday);
    an ``end`` at or before ``start`` runs into the next day."""

    days: tuple[int, ...]
    start: int
    end: int

    def spans(self, zone: ZoneInfo, around: float) -> Iterator[tuple[int, int]]:
        """(start, end) unix times of this period's occurrences near ``around``."""
        base = dt.datetime.fromtimestamp(around, zone).date()
        for back in range(-8, 9):
            day = base + dt.timedelta(days=back)
            if day.weekday() not in self.days:
                continue
            begin = dt.datetime(day.year, day.month, day.day, self.start // 60, self.start % 60,
                                tzinfo=zone)
            total = self.end if self.end > self.start else self.end + 1440
            end_day = day + dt.timedelta(days=total // 1440)
            finish = dt.datetime(end_day.year, end_day.month, end_day.day, total % 1440 // 60,
                                 total % 60, tzinfo=zone)
            yield int(begin.timestamp()), int(finish.timestamp())


@dataclasses.dataclass(frozen=True)
class FriendlyCredit:
    periods: tuple[FriendlyPeriod, ...] = ()
    timezone: str = "UTC"

    def _spans(self, t: float) -> list[tuple[int, int]]:
        zone = ZoneInfo(self.timezone)
        spans = sorted(s for p in self.periods for s in p.spans(zone, t))
        merged: list[tuple[int, int]] = []
        for s, e in spans:  # back-to-back or overlapping periods are one period
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        return merged

    def period_at(self, t: float) -> tuple[int, int] | None:
        """The friendly-credit period in force at ``t`` (start, end), if any."""
        for s, e in self._spans(t):
            if s <= t < e:
                return s, e
        return None

    def next_start(self, t: float) -> int | None:
        """The start of the next friendly-credit period after ``t`` (within a week)."""
        later = [s for s, _e in self._spans(t) if s > t]
        return min(later) if later else None


@dataclasses.dataclass(frozen=True)
class PrepaymentConfig:
    mode: str = "credit"
    initial_credit: Decimal = Decimal(0)
    emergency_credit_limit: Decimal = Decimal(0)
    emergency_credit_threshold: Decimal = Decimal(0)
    low_credit_warning: Decimal = Decimal(0)
    max_credit: Decimal = Decimal(0)  # 0: no limit
    max_credit_per_top_up: Decimal = Decimal(0)  # 0: no limit
    disconnection: bool = True
    friendly_credit_warning_minutes: int = 10
    friendly_credit: tuple[FriendlyPeriod, ...] = ()
    top_up_code: TopUpCodeFormat = TopUpCodeFormat()


_KEYS = {"mode", "initial_credit", "emergency_credit_limit", "emergency_credit_threshold",
         "low_credit_warning", "max_credit", "max_credit_per_top_up", "disconnection",
         "friendly_credit_warning_minutes", "friendly_credit", "top_up_code"}
_CODE_KEYS = {"serial_digits", "amount_digits", "amount_unit", "check", "check_digits", "key"}


def read_prepayment(reader: Any, doc: Any) -> PrepaymentConfig:
    """``[prepayment]`` with the tariff file's reader (its ``fail`` names file and key)."""
    doc = reader.table(doc, "prepayment", _KEYS)
    fields: dict[str, Any] = {}
    if "mode" in doc:
        if doc["mode"] not in MODES:
            raise reader.fail("prepayment.mode", f"must be one of {', '.join(MODES)}, "
                              f"not {doc['mode']!r}")
        fields["mode"] = doc["mode"]
    for key in ("initial_credit", "emergency_credit_limit", "emergency_credit_threshold",
                "low_credit_warning", "max_credit", "max_credit_per_top_up"):
        if key in doc:
            fields[key] = reader.decimal(f"prepayment.{key}", doc[key])
    if "disconnection" in doc:
        if not isinstance(doc["disconnection"], bool):
            raise reader.fail("prepayment.disconnection", "must be true or false")
        fields["disconnection"] = doc["disconnection"]
    if "friendly_credit_warning_minutes" in doc:
        fields["friendly_credit_warning_minutes"] = reader.integer(
            "prepayment.friendly_credit_warning_minutes", doc["friendly_credit_warning_minutes"],
            255)
    if "friendly_credit" in doc:
        periods = doc["friendly_credit"]
        if not isinstance(periods, list):
            raise reader.fail("prepayment.friendly_credit",
                              "must be an array of tables ([[prepayment.friendly_credit]])")
        out = []
        for i, pdoc in enumerate(periods):
            key = f"prepayment.friendly_credit[{i}]"
            pdoc = reader.table(pdoc, key, {"days", "from", "to"})
            for need in ("days", "from", "to"):
                if need not in pdoc:
                    raise reader.fail(f"{key}.{need}", "missing")
            names = pdoc["days"]
            if not isinstance(names, list) or not names or any(n not in WEEKDAYS for n in names):
                raise reader.fail(f"{key}.days", f"must be a list of {', '.join(WEEKDAYS)}")
            start = reader.minute(f"{key}.from", pdoc["from"])
            end = 1440 if pdoc["to"] == "24:00" else reader.minute(f"{key}.to", pdoc["to"])
            out.append(FriendlyPeriod(tuple(sorted({WEEKDAYS.index(n) for n in names})),
                                      start, end))
        fields["friendly_credit"] = tuple(out)
    if "top_up_code" in doc:
        fields["top_up_code"] = _read_code(reader, doc["top_up_code"])
    return PrepaymentConfig(**fields)


def _read_code(reader: Any, doc: Any) -> TopUpCodeFormat:
    key = "prepayment.top_up_code"
    doc = reader.table(doc, key, _CODE_KEYS)
    fields: dict[str, Any] = {}
    for name, top in (("serial_digits", 18), ("amount_digits", 9), ("check_digits", 12)):
        if name in doc:
            fields[name] = reader.integer(f"{key}.{name}", doc[name], top, 1)
    if "amount_unit" in doc:
        fields["amount_unit"] = reader.decimal(f"{key}.amount_unit", doc["amount_unit"])
    if "check" in doc:
        if doc["check"] not in CHECKS:
            raise reader.fail(f"{key}.check", f"must be one of {', '.join(CHECKS)}, "
                              f"not {doc['check']!r}")
        fields["check"] = doc["check"]
        fields.setdefault("check_digits", {"luhn": 1, "iso7064-mod97": 2}.get(doc["check"], 8))
    if "key" in doc:
        try:
            fields["key"] = bytes.fromhex(str(doc["key"]))
        except ValueError:
            raise reader.fail(f"{key}.key", "must be hex") from None
    try:
        return TopUpCodeFormat(**fields)
    except ValueError as exc:
        sub, _, problem = str(exc).partition(": ")
        raise reader.fail(f"{key}.{sub}", problem or str(exc)) from None


def prepayment_to_dict(config: PrepaymentConfig) -> dict[str, Any]:
    """The ``[prepayment]`` table (JSON-safe); :func:`read_prepayment` reads it back."""
    code = config.top_up_code
    return {
        "mode": config.mode, "initial_credit": str(config.initial_credit),
        "emergency_credit_limit": str(config.emergency_credit_limit),
        "emergency_credit_threshold": str(config.emergency_credit_threshold),
        "low_credit_warning": str(config.low_credit_warning),
        "max_credit": str(config.max_credit),
        "max_credit_per_top_up": str(config.max_credit_per_top_up),
        "disconnection": config.disconnection,
        "friendly_credit_warning_minutes": config.friendly_credit_warning_minutes,
        "friendly_credit": [
            {"days": [WEEKDAYS[d] for d in p.days],
             "from": f"{p.start // 60:02d}:{p.start % 60:02d}",
             "to": "24:00" if p.end == 1440 else f"{p.end // 60:02d}:{p.end % 60:02d}"}
            for p in config.friendly_credit],
        "top_up_code": {"serial_digits": code.serial_digits,
                        "amount_digits": code.amount_digits,
                        "amount_unit": str(code.amount_unit), "check": code.check,
                        "check_digits": code.check_digits,
                        **({"key": code.key.hex()} if code.key else {})},
    }

