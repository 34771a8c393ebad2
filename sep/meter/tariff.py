"""The tariff: TOU tiers, a day schedule, optional blocks, standing charge and the rest.

A :class:`Tariff` is a plain value. The Price server publishes it (SE 1.4 D.4); the meter's
registers follow its active tier. It comes from a TOML file (:func:`load_tariff`, see
``examples/tariff.toml`` for every key, explained) or is :data:`DEFAULT_TARIFF`: one rate,
tier 1 "Standard" at 0.2450 GBP/kWh all day, provider 0x0000ABCD, issuer tariff id 1.

Money values are decimals in the currency's major unit (GBP, not pence), exact to
``price_trailing_digits`` decimal places; on the air they are integers with that many
implied decimals (0.2450 GBP with 4 digits is 2450). The day schedule is evaluated in the
tariff's ``timezone`` (IANA name; UTC by default); period arithmetic (block periods,
billing periods) steps from an anchor in UTC.

The time-of-use schedule is a calendar (what SE 1.4's Calendar cluster carries): the
weekly ``schedule`` applies from 1 January until the first of the ``seasons`` (each a
weekly schedule from a month and day, every year, until the next season), and a
``special_days`` entry (a date, or a month and day every year) replaces the weekday's
switches on that day. Within a weekly schedule, before a day's first switch the tier of
the last switch of the days before it (in that weekly schedule) is in force, so every day
of a weekly schedule has a self-contained profile from 00:00 (:meth:`Tariff.day_switches`);
a special day's switches start at 00:00.

Errors in a file are :class:`TariffError`, whose message names the file, the key (dotted
path, e.g. ``tiers[1].rate``) and what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sep.meter.prepayment_config import PrepaymentConfig, prepayment_to_dict, read_prepayment

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIMEBASES = {"minutes": 0x0, "days": 0x1, "weeks": 0x2, "months": 0x3}
CALORIFIC_UNITS = {"MJ/m3": 0x01, "MJ/kg": 0x02}
CO2_UNITS = {"kg/kWh": 0x01, "kg/gallon": 0x02, "kg/therm": 0x03}
COMMODITIES = {"electricity": 0x00, "gas": 0x01, "water": 0x02}
MAX_TIERS = 15
MAX_THRESHOLDS = 15
U32_MAX = 0xFFFFFFFE  # 0xFFFFFFFF means "not used" in SE price fields
U48_MAX = (1 << 48) - 1
MAX_LABEL = 12
MAX_TARIFF_LABEL = 24
EPOCH_2000 = 946_684_800
LAST_UTC_TIME = EPOCH_2000 + 0xFFFFFFFE  # the last time a ZCL UTCTime can carry


class TariffError(ValueError):
    """A tariff file (or value) is wrong: which key, and what is wrong with it."""

    def __init__(self, key: str, problem: str, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}")


@dataclasses.dataclass(frozen=True)
class Tier:
    number: int  # 1..15
    label: str  # at most 12 bytes of UTF-8
    rate: Decimal  # currency (major unit) per unit of measure, e.g. GBP per kWh


@dataclasses.dataclass(frozen=True)
class Switch:
    minute: int  # minutes after local midnight, 0..1439
    tier: int


Week = tuple[tuple[Switch, ...], ...]  # switches per weekday, Monday first


@dataclasses.dataclass(frozen=True)
class Season:
    """A weekly schedule in force from ``month``/``day`` every year until the next season."""

    month: int
    day: int
    schedule: Week
    name: str = ""


@dataclasses.dataclass(frozen=True)
class SpecialDay:
    """A day whose switches replace its weekday's: on ``year``-``month``-``day``, or on
    ``month``-``day`` every year when ``year`` is None. The switches start at 00:00."""

    month: int
    day: int
    switches: tuple[Switch, ...]
    year: int | None = None
    name: str = ""

    def on(self, date: dt.date) -> bool:
        return (date.month, date.day) == (self.month, self.day) and self.year in (None, date.year)


def effective_day(week: Week, weekday: int) -> tuple[Switch, ...]:
    """The switches of ``weekday`` in a weekly schedule, from 00:00: before the day's first
    switch the last switch of the days before it (cyclically) is in force."""
    day = week[weekday]
    if day and day[0].minute == 0:
        return day
    for back in range(1, 8):
        before = week[(weekday - back) % 7]
        if before:
            return (Switch(0, before[-1].tier), *day)
    raise TariffError("schedule", "no switch on any day")


def _valid_month_day(month: int, day: int, year: int | None = None) -> bool:
    try:
        dt.date(2001 if year is None else year, month, day)  # 2001: no 29 February
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _add_months(d: dt.datetime, months: int) -> dt.datetime:
    y, m = divmod(d.month - 1 + months, 12)
    return d.replace(year=d.year + y, month=m + 1)


@dataclasses.dataclass(frozen=True)
class Recurrence:
    """Back-to-back periods of ``duration`` × ``timebase`` from ``start`` (unix seconds).

    Block periods (the consumption blocks reset at each start) and billing periods.
    """

    start: int
    duration: int = 1
    timebase: str = "days"

    def __post_init__(self) -> None:
        if self.timebase not in TIMEBASES:
            raise TariffError("timebase", f"must be one of {', '.join(TIMEBASES)}")
        if not 1 <= self.duration <= 0xFFFFFF:
            raise TariffError("duration", "must be 1..16777215")
        if not 0 <= self.start <= LAST_UTC_TIME:
            raise TariffError("start", "must be between 1970 and 2136 (the end of ZCL UTCTime)")
        if self.timebase == "months" and dt.datetime.fromtimestamp(self.start, dt.UTC).day > 28:
            raise TariffError("start", "a monthly period must start on day 1..28")
        try:
            end = self._step(dt.datetime.fromtimestamp(self.start, dt.UTC), 1).timestamp()
        except (OverflowError, ValueError):
            end = float("inf")
        if end > LAST_UTC_TIME:
            # A period no UTCTime can end (every later date computation would overflow).
            raise TariffError("duration", "the first period must end by 2136 (ZCL UTCTime)")

    @property
    def timebase_code(self) -> int:
        return TIMEBASES[self.timebase]

    @property
    def duration_type(self) -> int:
        """SE Duration Type: timebase in the low nibble, control 0 (start of timebase)."""
        return self.timebase_code

    def _step(self, start: dt.datetime, n: int) -> dt.datetime:
        if self.timebase == "months":
            return _add_months(start, n * self.duration)
        unit = {"minutes": 60, "days": 86400, "weeks": 7 * 86400}[self.timebase]
        return start + dt.timedelta(seconds=n * self.duration * unit)

    def period(self, t: float) -> tuple[int, int]:
        """(start, end) of the period containing ``t`` (the first one before the anchor)."""
        anchor = dt.datetime.fromtimestamp(self.start, dt.UTC)
        if t < self.start:
            return self.start, int(self._step(anchor, 1).timestamp())
        if self.timebase == "months":
            d = dt.datetime.fromtimestamp(int(t), dt.UTC)
            months = (d.year - anchor.year) * 12 + d.month - anchor.month
            n = max(0, months // self.duration)
            while n > 0 and self._step(anchor, n).timestamp() > t:
                n -= 1
            while self._step(anchor, n + 1).timestamp() <= t:
                n += 1
        else:
            length = self._step(anchor, 1).timestamp() - self.start
            n = int((t - self.start) // length)
        return int(self._step(anchor, n).timestamp()), int(self._step(anchor, n + 1).timestamp())


@dataclasses.dataclass(frozen=True)
class Tariff:
    provider_id: int = 0x0000ABCD
    issuer_tariff_id: int = 1
    label: str = "Standard"
    currency: int = 826  # ISO 4217 numeric (826 = GBP)
    price_trailing_digits: int = 4
    unit_of_measure: int = 0x00  # SE unit of measure: 0 = kWh
    commodity_type: int = 0x00  # 0 electricity, 1 gas, 2 water
    timezone: str = "UTC"
    tiers: tuple[Tier, ...] = (Tier(1, "Standard", Decimal("0.2450")),)
    #: switches per weekday (Monday first); an empty day repeats the previous day's last tier
    schedule: tuple[tuple[Switch, ...], ...] = ((Switch(0, 1),),) * 7
    block_thresholds_kwh: tuple[Decimal, ...] = ()
    #: price per (tier, block) with block 1..thresholds+1
    block_prices: tuple[tuple[tuple[int, int], Decimal], ...] = ()
    block_period: Recurrence | None = None
    standing_charge: Decimal = Decimal(0)  # per day
    conversion_factor: Decimal = Decimal(1)
    calorific_value: Decimal | None = None
    calorific_value_unit: int = 0x01
    co2: Decimal | None = None  # per unit of measure
    co2_unit: int = 0x01
    billing_period: Recurrence | None = None
    #: critical peak prices CPP1 and CPP2 (SE 1.4 Price attributes 0x05FE/0x05FF)
    cpp_rates: tuple[Decimal, ...] = ()
    #: the export (received) tariff: its own tiers, schedule and blocks, with this tariff's
    #: provider, currency, trailing digits, unit and time zone
    export: Tariff | None = None
    #: weekly schedules from a date every year (the ``schedule`` above runs from 1 January)
    seasons: tuple[Season, ...] = ()
    #: days whose switches replace their weekday's
    special_days: tuple[SpecialDay, ...] = ()
    prepayment: PrepaymentConfig | None = None  # [prepayment]: credit, top-up codes ...

    def __post_init__(self) -> None:
        self.validate()
        self._validate_extras()

    def _validate_extras(self) -> None:
        if len(self.cpp_rates) > 2:
            raise TariffError("cpp", "at most CPP1 and CPP2")
        for i, rate in enumerate(self.cpp_rates):
            self.price_units(rate, f"cpp.cpp{i + 1}_rate")
        ex = self.export
        if ex is None:
            return
        if ex.export is not None or ex.cpp_rates or ex.billing_period is not None:
            raise TariffError("export", "an export tariff has no export, CPP or billing period "
                              "of its own")
        if ex.issuer_tariff_id == self.issuer_tariff_id:
            raise TariffError("export.issuer_tariff_id", "must differ from the import tariff's")
        # the export tariff shares these with the import tariff, whatever changed them (a
        # change of supplier, a calendar in another time zone): it follows, always
        shared = {key: getattr(self, key) for key in (
            "provider_id", "currency", "price_trailing_digits", "unit_of_measure", "timezone")}
        if any(getattr(ex, key) != value for key, value in shared.items()):
            object.__setattr__(self, "export", dataclasses.replace(ex, **shared))

    # -- validation ----------------------------------------------------------------------
    def validate(self) -> None:
        _uint("provider_id", self.provider_id, 0xFFFFFFFF)
        _uint("issuer_tariff_id", self.issuer_tariff_id, 0xFFFFFFFE)
        _label("label", self.label, MAX_TARIFF_LABEL)
        _uint("currency", self.currency, 999)
        _uint("price_trailing_digits", self.price_trailing_digits, 15)
        _uint("unit_of_measure", self.unit_of_measure, 0xFF)
        _uint("commodity_type", self.commodity_type, 0xFF)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise TariffError("timezone", f"unknown time zone {self.timezone!r}") from exc
        if not self.tiers:
            raise TariffError("tiers", "at least one tier is needed")
        numbers = [tier.number for tier in self.tiers]
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            raise TariffError("tiers", f"tiers must be numbered 1..{len(numbers)} once each, "
                              f"not {numbers}")
        if len(numbers) > MAX_TIERS:
            raise TariffError("tiers", f"at most {MAX_TIERS} tiers")
        for i, tier in enumerate(self.tiers):
            _label(f"tiers[{i}].label", tier.label, MAX_LABEL)
            self.price_units(tier.rate, f"tiers[{i}].rate")
        _validate_week("schedule", self.schedule, numbers)
        starts = [(x.month, x.day) for x in self.seasons]
        for i, season in enumerate(self.seasons):
            if not _valid_month_day(season.month, season.day):
                raise TariffError(f"seasons[{i}].start", f"no such day {season.month:02d}-"
                                  f"{season.day:02d} (29 February is not allowed)")
            _label(f"seasons[{i}].name", season.name, MAX_LABEL)
            _validate_week(f"seasons[{i}].schedule", season.schedule, numbers)
        if starts != sorted(set(starts)):
            raise TariffError("seasons", "seasons must start on distinct days, in date order")
        days = [(x.year, x.month, x.day) for x in self.special_days]
        if len(set(days)) != len(days):
            raise TariffError("special_days", "a date is given twice")
        for i, special in enumerate(self.special_days):
            if not _valid_month_day(special.month, special.day, special.year):
                raise TariffError(f"special_days[{i}].date", "no such date")
            _label(f"special_days[{i}].name", special.name, MAX_LABEL)
            _validate_day(f"special_days[{i}].switches", special.switches, numbers)
            if not special.switches or special.switches[0].minute != 0:
                raise TariffError(f"special_days[{i}].switches",
                                  'a special day must say its tier from "00:00"')
        th = self.block_thresholds_kwh
        if len(th) > MAX_THRESHOLDS:
            raise TariffError("blocks.thresholds_kwh", f"at most {MAX_THRESHOLDS} thresholds")
        if any(v <= 0 for v in th) or list(th) != sorted(set(th)):
            raise TariffError("blocks.thresholds_kwh", "thresholds must be positive and rising")
        for v in th:
            if v * 1000 != int(v * 1000) or v * 1000 > U48_MAX:
                raise TariffError("blocks.thresholds_kwh", f"{v} is not a whole number of Wh")
        if th:
            keys = {key for key, _ in self.block_prices}
            need = {(tier, block) for tier in numbers for block in range(1, len(th) + 2)}
            if keys != need:
                raise TariffError("blocks.prices", f"need a price for each of {len(th) + 1} "
                                  f"blocks in each of tiers {numbers}")
            if self.block_period is None:
                raise TariffError("blocks.period", "a block tariff needs a block period")
            for (tier, block), price in self.block_prices:
                self.price_units(price, f"blocks.prices.{tier}[{block - 1}]")
        elif self.block_prices:
            raise TariffError("blocks.prices", "block prices without thresholds")
        self.price_units(self.standing_charge, "standing_charge")
        _scaled("commodity.conversion_factor", self.conversion_factor)
        if self.calorific_value is not None:
            _scaled("commodity.calorific_value", self.calorific_value)
        if self.co2 is not None:
            _scaled("commodity.co2", self.co2)
        if self.prepayment is not None:  # money the meter keeps exactly, in price units
            for key in ("initial_credit", "emergency_credit_limit", "emergency_credit_threshold",
                        "low_credit_warning", "max_credit", "max_credit_per_top_up"):
                self.price_units(getattr(self.prepayment, key), f"prepayment.{key}")
            self.price_units(self.prepayment.top_up_code.amount_unit,
                             "prepayment.top_up_code.amount_unit")

    def price_units(self, value: Decimal, key: str = "price") -> int:
        """A money value as the integer sent on the air (``price_trailing_digits`` implied)."""
        scaled = value * (Decimal(10) ** self.price_trailing_digits)
        if scaled != scaled.to_integral_value():
            raise TariffError(key, f"{value} has more than {self.price_trailing_digits} "
                              f"decimal places (price_trailing_digits)")
        if not 0 <= scaled <= U32_MAX:
            raise TariffError(key, f"{value} is out of range")
        return int(scaled)

    # -- derived values ------------------------------------------------------------------
    @property
    def tier_count(self) -> int:
        return len(self.tiers)

    def tier(self, number: int) -> Tier:
        for tier in self.tiers:
            if tier.number == number:
                return tier
        raise KeyError(number)

    @property
    def charging_scheme(self) -> int:
        """SE Charging Scheme: 0 TOU, 1 block, 2 block/TOU with common thresholds."""
        if not self.block_thresholds_kwh:
            return 0x0
        return 0x1 if self.tier_count == 1 else 0x2

    @property
    def thresholds_wh(self) -> list[int]:
        return [int(v * 1000) for v in self.block_thresholds_kwh]

    def block_price(self, tier: int, block: int) -> Decimal:
        return dict(self.block_prices)[(tier, block)]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def week_on(self, date: dt.date) -> Week:
        """The weekly schedule in force on ``date`` (the season it falls in)."""
        week = self.schedule
        for season in self.seasons:  # in date order (validated)
            if (season.month, season.day) <= (date.month, date.day):
                week = season.schedule
        return week

    def special_on(self, date: dt.date) -> SpecialDay | None:
        """The special day ``date`` is (one for that year first, then a yearly one)."""
        found = [x for x in self.special_days if x.on(date)]
        return min(found, key=lambda x: x.year is None) if found else None

    def day_switches(self, date: dt.date) -> tuple[Switch, ...]:
        """The switches of a local date, the first at 00:00."""
        special = self.special_on(date)
        if special is not None:
            return special.switches
        return effective_day(self.week_on(date), date.weekday())

    def tier_at(self, t: float) -> int:
        """The TOU tier in force at unix time ``t``."""
        local = dt.datetime.fromtimestamp(t, self.zone)
        minute = local.hour * 60 + local.minute
        current = [s for s in self.day_switches(local.date()) if s.minute <= minute]
        return current[-1].tier

    def boundaries(self, start: float, end: float) -> Iterator[int]:
        """Unix times of the schedule's switches in (start, end], in order."""
        zone = self.zone
        day = dt.datetime.fromtimestamp(start, zone).date() - dt.timedelta(days=1)
        last = dt.datetime.fromtimestamp(end, zone).date() + dt.timedelta(days=1)
        while day <= last:
            for s in self.day_switches(day):
                local = dt.datetime(day.year, day.month, day.day, s.minute // 60, s.minute % 60,
                                    tzinfo=zone)
                when = int(local.timestamp())
                if start < when <= end:
                    yield when
            day += dt.timedelta(days=1)

    def tier_start(self, t: float) -> int:
        """When the TOU period in force at ``t`` began (within the last 8 days)."""
        tier = self.tier_at(t)
        start = int(t) - 8 * 86400
        begun = start
        for when in self.boundaries(start, t):
            if self.tier_at(when) == tier and self.tier_at(when - 1) != tier:
                begun = when
        return begun

    def next_change(self, t: float, horizon: float = 8 * 86400) -> int | None:
        """The first time after ``t`` when the TOU tier changes (None if it never does)."""
        tier = self.tier_at(t)
        for when in self.boundaries(t, t + horizon):
            if self.tier_at(when) != tier:
                return when
        return None


def _uint(key: str, value: Any, top: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise TariffError(key, f"must be an integer 0..{top}, not {value!r}")


def _label(key: str, value: Any, top: int) -> None:
    if not isinstance(value, str):
        raise TariffError(key, f"must be a string, not {value!r}")
    if len(value.encode("utf-8")) > top:
        raise TariffError(key, f"at most {top} bytes of UTF-8, not {len(value.encode())}")


def _validate_day(key: str, day: tuple[Switch, ...], numbers: list[int]) -> None:
    minutes = [s.minute for s in day]
    if minutes != sorted(set(minutes)):
        raise TariffError(key, "switch times must be distinct")
    for s in day:
        if not 0 <= s.minute < 1440:
            raise TariffError(key, f"bad time {s.minute}")
        if s.tier not in numbers:
            raise TariffError(key, f"tier {s.tier} is not defined")


def _validate_week(key: str, week: Week, numbers: list[int]) -> None:
    if len(week) != 7:
        raise TariffError(key, "one entry per weekday")
    if not any(week):
        raise TariffError(key, "no switch on any day")
    for d, day in enumerate(week):
        _validate_day(f"{key}.{WEEKDAYS[d]}", day, numbers)


def digits_of(value: Decimal) -> int:
    """The number of decimal places a value is written with (its trailing digits)."""
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def scaled(value: Decimal) -> tuple[int, int]:
    """(integer, trailing digits) for conversion factor, calorific value and CO2."""
    digits = digits_of(value)
    return int(value * (Decimal(10) ** digits)), digits


def _scaled(key: str, value: Decimal) -> None:
    if value <= 0:
        raise TariffError(key, f"must be positive, not {value}")
    number, digits = scaled(value)
    if digits > 15:
        raise TariffError(key, "at most 15 decimal places")
    if number > U32_MAX:
        raise TariffError(key, f"{value} is out of range")


DEFAULT_TARIFF = Tariff()


# -- the TOML file -------------------------------------------------------------------------
_TOP_KEYS = {"provider_id", "issuer_tariff_id", "label", "currency", "price_trailing_digits",
             "unit_of_measure", "commodity", "timezone", "standing_charge", "tiers", "schedule",
             "blocks", "gas", "co2", "billing_period", "seasons", "special_days", "prepayment"}
_TOP_KEYS |= {"cpp", "export"}
#: what an [export] table may say; the rest it takes from the import tariff
_EXPORT_KEYS = {"issuer_tariff_id", "label", "tiers", "schedule", "blocks"}
_INHERITED = ("provider_id", "currency", "price_trailing_digits", "unit_of_measure",
              "commodity", "timezone")


class _Reader:
    def __init__(self, source: str | None) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> TariffError:
        return TariffError(key, problem, self.source)

    def table(self, doc: Any, key: str, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(doc, dict):
            raise self.fail(key or "(document)", "must be a table")
        unknown = sorted(set(doc) - allowed)
        if unknown:
            name = unknown[0] if unknown[0].strip() else repr(unknown[0])
            raise self.fail(f"{key}.{name}" if key else name,
                            f"unknown key (known: {', '.join(sorted(allowed))})")
        return doc

    def decimal(self, key: str, value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.fail(key, f"must be a number or a decimal string, not {value!r}")
        try:
            out = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(key, f"{value!r} is not a decimal number") from None
        if not out.is_finite() or out < 0:
            raise self.fail(key, f"{value!r} must be a finite number ≥ 0")
        return out

    def integer(self, key: str, value: Any, top: int, bottom: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not bottom <= value <= top:
            raise self.fail(key, f"must be an integer {bottom}..{top}, not {value!r}")
        return value

    def string(self, key: str, value: Any, top: int) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {value!r}")
        if len(value.encode("utf-8")) > top:
            raise self.fail(key, f"at most {top} bytes of UTF-8 ({value!r} has "
                            f"{len(value.encode('utf-8'))})")
        return value

    def when(self, key: str, value: Any) -> int:
        if isinstance(value, str):  # JSON documents (MQTT) carry ISO 8601 text
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                raise self.fail(key, f"{value!r} is not an ISO 8601 date-time") from None
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return int(value.timestamp())
        if isinstance(value, dt.date):
            return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp())
        raise self.fail(key, f"must be a date or date-time, not {value!r}")

    def minute(self, key: str, value: Any) -> int:
        if isinstance(value, dt.time):
            return value.hour * 60 + value.minute
        if isinstance(value, str):
            parts = value.split(":")
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                h, m = int(parts[0]), int(parts[1])
                if h < 24 and m < 60:
                    return h * 60 + m
        raise self.fail(key, f"must be a time of day HH:MM, not {value!r}")

    def recurrence(self, key: str, doc: Any, default_start: int) -> Recurrence:
        doc = self.table(doc, key, {"start", "duration", "timebase"})
        start = self.when(f"{key}.start", doc["start"]) if "start" in doc else default_start
        timebase = doc.get("timebase", "days")
        if not isinstance(timebase, str) or timebase not in TIMEBASES:
            raise self.fail(f"{key}.timebase", f"must be one of {', '.join(TIMEBASES)}, "
                            f"not {timebase!r}")
        duration = self.integer(f"{key}.duration", doc.get("duration", 1), 0xFFFFFF, 1)
        try:
            return Recurrence(start, duration, timebase)
        except TariffError as exc:
            raise self.fail(f"{key}.{exc.key}", exc.problem) from None

    def enum(self, key: str, value: Any, names: Mapping[str, int]) -> int:
        if isinstance(value, str) and value in names:
            return names[value]
        if isinstance(value, int) and not isinstance(value, bool) and value in names.values():
            return value
        raise self.fail(key, f"must be one of {', '.join(names)}, not {value!r}")

    def tariff(self, doc: Mapping[str, Any]) -> Tariff:
        doc = self.table(doc, "", _TOP_KEYS)
        fields: dict[str, Any] = {}
        if "provider_id" in doc:
            fields["provider_id"] = self.integer("provider_id", doc["provider_id"], 0xFFFFFFFF)
        if "issuer_tariff_id" in doc:
            fields["issuer_tariff_id"] = self.integer("issuer_tariff_id", doc["issuer_tariff_id"],
                                                      0xFFFFFFFE, 1)
        if "label" in doc:
            fields["label"] = self.string("label", doc["label"], MAX_TARIFF_LABEL)
        if "currency" in doc:
            fields["currency"] = self.integer("currency", doc["currency"], 999, 1)
        digits = 4
        if "price_trailing_digits" in doc:
            digits = self.integer("price_trailing_digits", doc["price_trailing_digits"], 15)
            fields["price_trailing_digits"] = digits
        if "unit_of_measure" in doc:
            fields["unit_of_measure"] = self.integer("unit_of_measure", doc["unit_of_measure"],
                                                     0xFF)
        if "commodity" in doc:
            fields["commodity_type"] = self.enum("commodity", doc["commodity"], COMMODITIES)
        if "timezone" in doc:
            zone = doc["timezone"]
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError, TypeError):
                raise self.fail("timezone", f"unknown IANA time zone {zone!r}") from None
            fields["timezone"] = zone
        if "standing_charge" in doc:
            fields["standing_charge"] = self.decimal("standing_charge", doc["standing_charge"])

        tiers_doc = doc.get("tiers")
        if tiers_doc is None:
            raise self.fail("tiers", "missing: list each tier as [[tiers]] with tier, label, rate")
        if not isinstance(tiers_doc, list) or not tiers_doc:
            raise self.fail("tiers", "must be a non-empty array of tables ([[tiers]])")
        tiers = []
        for i, tdoc in enumerate(tiers_doc):
            key = f"tiers[{i}]"
            tdoc = self.table(tdoc, key, {"tier", "label", "rate"})
            for need in ("tier", "label", "rate"):
                if need not in tdoc:
                    raise self.fail(f"{key}.{need}", "missing")
            number = self.integer(f"{key}.tier", tdoc["tier"], MAX_TIERS, 1)
            tiers.append(Tier(number, self.string(f"{key}.label", tdoc["label"], MAX_LABEL),
                              self.decimal(f"{key}.rate", tdoc["rate"])))
        fields["tiers"] = tuple(sorted(tiers, key=lambda x: x.number))
        numbers = {tier.number for tier in tiers}
        if len(numbers) != len(tiers):
            raise self.fail("tiers", "a tier number appears twice")
        if numbers != set(range(1, len(tiers) + 1)):
            raise self.fail("tiers", f"tiers must be numbered 1..{len(tiers)}, "
                            f"not {sorted(numbers)}")

        fields["schedule"] = self.schedule(doc.get("schedule"), numbers)
        if "seasons" in doc:
            fields["seasons"] = self.seasons(doc["seasons"], numbers)
        if "special_days" in doc:
            fields["special_days"] = self.special_days(doc["special_days"], numbers)

        if "blocks" in doc:
            bdoc = self.table(doc["blocks"], "blocks", {"thresholds_kwh", "prices", "period"})
            if "thresholds_kwh" not in bdoc:
                raise self.fail("blocks.thresholds_kwh", "missing")
            raw = bdoc["thresholds_kwh"]
            if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_THRESHOLDS:
                raise self.fail("blocks.thresholds_kwh",
                                f"must be a list of 1..{MAX_THRESHOLDS} numbers")
            th = tuple(self.decimal(f"blocks.thresholds_kwh[{i}]", v) for i, v in enumerate(raw))
            fields["block_thresholds_kwh"] = th
            pdoc = bdoc.get("prices")
            if not isinstance(pdoc, dict):
                raise self.fail("blocks.prices", "missing: a table tier → list of block prices")
            prices = []
            for tier_key, row in pdoc.items():
                key = f"blocks.prices.{tier_key}"
                if not tier_key.isdigit() or int(tier_key) not in numbers:
                    raise self.fail(key, f"not a defined tier (tiers are {sorted(numbers)})")
                if not isinstance(row, list) or len(row) != len(th) + 1:
                    raise self.fail(key, f"needs {len(th) + 1} prices (one per block: "
                                    f"{len(th)} thresholds make {len(th) + 1} blocks)")
                for b, v in enumerate(row):
                    prices.append(((int(tier_key), b + 1), self.decimal(f"{key}[{b}]", v)))
            missing = sorted(numbers - {tier for (tier, _), _ in prices})
            if missing:
                raise self.fail(f"blocks.prices.{missing[0]}", "missing")
            fields["block_prices"] = tuple(sorted(prices))
            if "period" not in bdoc:
                raise self.fail("blocks.period", "missing: when the blocks reset")
            fields["block_period"] = self.recurrence("blocks.period", bdoc["period"], EPOCH_2000)

        if "gas" in doc:
            gdoc = self.table(doc["gas"], "gas", {"conversion_factor", "calorific_value",
                                                  "calorific_value_unit"})
            if "conversion_factor" in gdoc:
                fields["conversion_factor"] = self.decimal("gas.conversion_factor",
                                                           gdoc["conversion_factor"])
            if "calorific_value" in gdoc:
                fields["calorific_value"] = self.decimal("gas.calorific_value",
                                                         gdoc["calorific_value"])
            if "calorific_value_unit" in gdoc:
                fields["calorific_value_unit"] = self.enum(
                    "gas.calorific_value_unit", gdoc["calorific_value_unit"], CALORIFIC_UNITS)
        if "co2" in doc:
            cdoc = self.table(doc["co2"], "co2", {"value", "unit"})
            if "value" not in cdoc:
                raise self.fail("co2.value", "missing")
            fields["co2"] = self.decimal("co2.value", cdoc["value"])
            if "unit" in cdoc:
                fields["co2_unit"] = self.enum("co2.unit", cdoc["unit"], CO2_UNITS)
        if "billing_period" in doc:
            fields["billing_period"] = self.recurrence("billing_period", doc["billing_period"],
                                                       EPOCH_2000)
        fields.update(self.extras(doc))
        if "prepayment" in doc:
            fields["prepayment"] = read_prepayment(self, doc["prepayment"])
        try:
            return Tariff(**fields)
        except TariffError as exc:
            raise self.fail(exc.key, exc.problem) from None

    def extras(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """The [cpp] and [export] tables."""
        fields: dict[str, Any] = {}
        if "cpp" in doc:
            cdoc = self.table(doc["cpp"], "cpp", {"cpp1_rate", "cpp2_rate"})
            if "cpp1_rate" not in cdoc:
                raise self.fail("cpp.cpp1_rate", "missing")
            rates = [self.decimal("cpp.cpp1_rate", cdoc["cpp1_rate"])]
            if "cpp2_rate" in cdoc:
                rates.append(self.decimal("cpp.cpp2_rate", cdoc["cpp2_rate"]))
            fields["cpp_rates"] = tuple(rates)
        if "export" in doc:
            edoc = self.table(doc["export"], "export", _EXPORT_KEYS)
            for need in ("issuer_tariff_id", "tiers"):
                if need not in edoc:
                    raise self.fail(f"export.{need}", "missing")
            inherited = {k: doc[k] for k in _INHERITED if k in doc}
            try:
                fields["export"] = self.tariff({**inherited, **edoc})
            except TariffError as exc:
                raise self.fail(f"export.{exc.key}", exc.problem) from None
        return fields

    def switches(self, key: str, doc: Any, numbers: set[int]) -> tuple[Switch, ...]:
        """A table "HH:MM" = tier, as switches in time order."""
        if not isinstance(doc, dict) or not doc:
            raise self.fail(key, 'missing: a table "HH:MM" = tier')
        out = []
        for when, tier in doc.items():
            minute = self.minute(f"{key}.{when}", when)
            if isinstance(tier, bool) or not isinstance(tier, int) or tier not in numbers:
                raise self.fail(f"{key}.{when}",
                                f"tier {tier!r} is not defined (tiers are {sorted(numbers)})")
            out.append(Switch(minute, tier))
        out.sort(key=lambda s: s.minute)
        if len({s.minute for s in out}) != len(out):
            raise self.fail(key, "two switches at the same time")
        return tuple(out)

    def schedule(self, doc: Any, numbers: set[int], where: str = "schedule"
                 ) -> tuple[tuple[Switch, ...], ...]:
        if doc is None:
            if numbers != {1}:
                raise self.fail(where, "missing: with more than one tier, say when each "
                                f"applies ([[{where}]] with days and switches)")
            return ((Switch(0, 1),),) * 7
        if not isinstance(doc, list) or not doc:
            raise self.fail(where, f"must be an array of tables ([[{where}]])")
        days: dict[int, tuple[Switch, ...]] = {}
        default: tuple[Switch, ...] | None = None
        for i, sdoc in enumerate(doc):
            key = f"{where}[{i}]"
            sdoc = self.table(sdoc, key, {"days", "switches"})
            switches = list(self.switches(f"{key}.switches", sdoc.get("switches"), numbers))
            if "days" not in sdoc:
                if default is not None:
                    raise self.fail(f"{key}.days", "only one schedule may leave out days")
                default = tuple(switches)
                continue
            names = sdoc["days"]
            if not isinstance(names, list) or not names:
                raise self.fail(f"{key}.days", f"must be a list of {', '.join(WEEKDAYS)}")
            for name in names:
                if name not in WEEKDAYS:
                    raise self.fail(f"{key}.days", f"{name!r} is not one of {', '.join(WEEKDAYS)}")
                d = WEEKDAYS.index(name)
                if d in days:
                    raise self.fail(f"{key}.days", f"{name} is given twice")
                days[d] = tuple(switches)
        out = []
        for d in range(7):
            if d in days:
                out.append(days[d])
            elif default is not None:
                out.append(default)
            else:
                raise self.fail(where, f"no switches for {WEEKDAYS[d]} (give it in days, "
                                "or add a schedule without days as the default)")
        return tuple(out)

    def month_day(self, key: str, value: Any) -> tuple[int, int, int | None]:
        """A TOML date (that day only) or "MM-DD" (every year): (month, day, year)."""
        if isinstance(value, dt.datetime):
            raise self.fail(key, f"must be a date or \"MM-DD\", not a date-time {value!r}")
        if isinstance(value, dt.date):
            return value.month, value.day, value.year
        if isinstance(value, str):
            try:
                if len(value) == 10:  # JSON documents carry dates as ISO text
                    d = dt.date.fromisoformat(value)
                    return d.month, d.day, d.year
                month, day = (int(x) for x in value.split("-"))
            except ValueError:
                raise self.fail(key, f'{value!r} is not "MM-DD" or a date') from None
            if len(value) == 5 and _valid_month_day(month, day):
                return month, day, None
        raise self.fail(key, f'must be "MM-DD" (every year) or a date, not {value!r}')

    def seasons(self, doc: Any, numbers: set[int]) -> tuple[Season, ...]:
        if not isinstance(doc, list):
            raise self.fail("seasons", "must be an array of tables ([[seasons]])")
        out = []
        for i, sdoc in enumerate(doc):
            key = f"seasons[{i}]"
            sdoc = self.table(sdoc, key, {"name", "start", "schedule"})
            if "start" not in sdoc:
                raise self.fail(f"{key}.start", 'missing: "MM-DD", the day it starts each year')
            month, day, year = self.month_day(f"{key}.start", sdoc["start"])
            if year is not None:
                raise self.fail(f"{key}.start", 'a season starts on "MM-DD" every year')
            if "schedule" not in sdoc:
                raise self.fail(f"{key}.schedule", f"missing: [[{key}.schedule]] entries")
            name = self.string(f"{key}.name", sdoc.get("name", ""), MAX_LABEL)
            out.append(Season(month, day, self.schedule(sdoc["schedule"], numbers,
                                                        f"{key}.schedule"), name))
        out.sort(key=lambda x: (x.month, x.day))
        for a, b in zip(out, out[1:], strict=False):
            if (a.month, a.day) == (b.month, b.day):
                raise self.fail("seasons", f"two seasons start on {a.month:02d}-{a.day:02d}")
        return tuple(out)

    def special_days(self, doc: Any, numbers: set[int]) -> tuple[SpecialDay, ...]:
        if not isinstance(doc, list):
            raise self.fail("special_days", "must be an array of tables ([[special_days]])")
        out = []
        for i, sdoc in enumerate(doc):
            key = f"special_days[{i}]"
            sdoc = self.table(sdoc, key, {"name", "date", "switches"})
            if "date" not in sdoc:
                raise self.fail(f"{key}.date", 'missing: a date, or "MM-DD" for every year')
            month, day, year = self.month_day(f"{key}.date", sdoc["date"])
            switches = self.switches(f"{key}.switches", sdoc.get("switches"), numbers)
            if switches[0].minute != 0:
                raise self.fail(f"{key}.switches", 'a special day must say its tier from "00:00"')
            name = self.string(f"{key}.name", sdoc.get("name", ""), MAX_LABEL)
            out.append(SpecialDay(month, day, switches, year, name))
        return tuple(out)


def tariff_to_dict(tariff: Tariff) -> dict[str, Any]:
    """The tariff as a document with the TOML file's keys (JSON-safe: decimals and dates as
    text); :func:`tariff_from_dict` reads it back to an equal tariff. The meter stores the
    tariff in force this way, so a tariff set at run time survives a restart."""
    def names(table: Mapping[str, int], code: int) -> str:
        return next(name for name, value in table.items() if value == code)

    def period(r: Recurrence) -> dict[str, Any]:
        return {"start": dt.datetime.fromtimestamp(r.start, dt.UTC).isoformat(),
                "duration": r.duration, "timebase": r.timebase}

    def switches(day: tuple[Switch, ...]) -> dict[str, int]:
        return {f"{s.minute // 60:02d}:{s.minute % 60:02d}": s.tier for s in day}

    def week(schedule: Week) -> list[dict[str, Any]]:
        return [{"days": [WEEKDAYS[d]], "switches": switches(day or effective_day(schedule, d))}
                for d, day in enumerate(schedule)]

    doc: dict[str, Any] = {
        "provider_id": tariff.provider_id, "issuer_tariff_id": tariff.issuer_tariff_id,
        "label": tariff.label, "currency": tariff.currency,
        "price_trailing_digits": tariff.price_trailing_digits,
        "unit_of_measure": tariff.unit_of_measure,
        "commodity": names(COMMODITIES, tariff.commodity_type), "timezone": tariff.timezone,
        "standing_charge": str(tariff.standing_charge),
        "tiers": [{"tier": x.number, "label": x.label, "rate": str(x.rate)}
                  for x in tariff.tiers],
        "schedule": week(tariff.schedule),
        "gas": {"conversion_factor": str(tariff.conversion_factor),
                "calorific_value_unit": names(CALORIFIC_UNITS, tariff.calorific_value_unit)},
    }
    if tariff.calorific_value is not None:
        doc["gas"]["calorific_value"] = str(tariff.calorific_value)
    if tariff.block_thresholds_kwh and tariff.block_period is not None:
        prices: dict[str, list[str]] = {}
        for (tier, _block), price in tariff.block_prices:
            prices.setdefault(str(tier), []).append(str(price))
        doc["blocks"] = {"thresholds_kwh": [str(v) for v in tariff.block_thresholds_kwh],
                         "prices": prices, "period": period(tariff.block_period)}
    if tariff.co2 is not None:
        doc["co2"] = {"value": str(tariff.co2), "unit": names(CO2_UNITS, tariff.co2_unit)}
    if tariff.billing_period is not None:
        doc["billing_period"] = period(tariff.billing_period)
    if tariff.cpp_rates:
        doc["cpp"] = {f"cpp{i + 1}_rate": str(v) for i, v in enumerate(tariff.cpp_rates)}
    if tariff.export is not None:
        export = tariff_to_dict(tariff.export)
        doc["export"] = {k: v for k, v in export.items() if k in _EXPORT_KEYS}
    if tariff.seasons:
        doc["seasons"] = [{"name": x.name, "start": f"{x.month:02d}-{x.day:02d}",
                           "schedule": week(x.schedule)} for x in tariff.seasons]
    if tariff.special_days:
        doc["special_days"] = [
            {"name": x.name, "switches": switches(x.switches),
             "date": f"{x.month:02d}-{x.day:02d}" if x.year is None
             else dt.date(x.year, x.month, x.day).isoformat()} for x in tariff.special_days]
    if tariff.prepayment is not None:
        doc["prepayment"] = prepayment_to_dict(tariff.prepayment)
    return doc


def tariff_from_dict(doc: Any, *, source: str | None = None) -> Tariff:
    """A tariff from a document with the TOML file's keys (e.g. JSON from MQTT)."""
    return _Reader(source).tariff(doc)


def parse_tariff(text: str, *, source: str | None = None) -> Tariff:
    """A tariff from TOML text."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TariffError("(file)", f"not valid TOML: {exc}", source) from None
    return _Reader(source).tariff(doc)


def load_tariff(path: str | Path) -> Tariff:
    """A tariff from a TOML file (see ``examples/tariff.toml``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TariffError("(file)", f"cannot read: {exc}", str(p)) from None
    return parse_tariff(text, source=str(p))
