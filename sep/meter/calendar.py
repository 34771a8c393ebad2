"""A time-of-use calendar in the form SE 1.4's Calendar cluster carries it (D.9), and the
way between it and the tariff's schedule.

A :class:`TouCalendar` holds numbered day profiles (schedule entries from 00:00), week
profiles (a day profile per weekday, Monday first), seasons (a start date, every year,
and its week profile) and special days (a date, or a month and day every year, and its
day profile). :func:`compile_calendar` turns a :class:`~sep.meter.tariff.Tariff`'s weekly
schedule, seasons and special days into one (the tariff's schedule runs from 1 January,
so the calendar always has a season from 1 January); :func:`schedule_of` turns a
calendar back into the tariff's fields, so a calendar the supplier publishes is the
schedule the meter follows. Both directions describe the same tier at every instant.

Dates use ``None`` for "every year" (0xFF on the air). Seasons must be yearly: a
calendar whose seasons name a year is refused (:class:`CalendarError`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sep.meter.tariff import (
    Season,
    SpecialDay,
    Switch,
    Tariff,
    TariffError,
    Week,
    effective_day,
)

TIME_REFERENCE_UTC = 0x00
TIME_REFERENCE_STANDARD = 0x01
TIME_REFERENCE_LOCAL = 0x02
CALENDAR_TYPE_DELIVERED = 0x00
MAX_NAME = 12
MAX_DAY_PROFILES = 32
MAX_WEEK_PROFILES = 16
MAX_SEASONS = 16
MAX_SPECIAL_DAYS = 50
MAX_ENTRIES = 48  # schedule entries in one day profile


class CalendarError(ValueError):
    """A calendar the meter cannot follow (what is wrong with it)."""


@dataclasses.dataclass(frozen=True)
class DayProfile:
    day_id: int
    entries: tuple[tuple[int, int], ...]  # (minutes from midnight, price tier), the first at 0


@dataclasses.dataclass(frozen=True)
class WeekProfile:
    week_id: int
    days: tuple[int, ...]  # day ids, Monday first


@dataclasses.dataclass(frozen=True)
class SeasonStart:
    month: int
    day: int
    week_id: int
    year: int | None = None  # None: every year


@dataclasses.dataclass(frozen=True)
class SpecialDate:
    month: int
    day: int
    day_id: int
    year: int | None = None  # None: every year

    def on(self, date: dt.date) -> bool:
        return (date.month, date.day) == (self.month, self.day) and self.year in (None, date.year)


@dataclasses.dataclass(frozen=True)
class TouCalendar:
    provider_id: int
    issuer_calendar_id: int
    issuer_event_id: int
    start: int  # unix seconds: when it takes over
    name: str
    time_reference: int
    day_profiles: tuple[DayProfile, ...]
    week_profiles: tuple[WeekProfile, ...]
    seasons: tuple[SeasonStart, ...]
    special_days: tuple[SpecialDate, ...] = ()
    calendar_type: int = CALENDAR_TYPE_DELIVERED

    def day(self, day_id: int) -> DayProfile:
        for d in self.day_profiles:
            if d.day_id == day_id:
                return d
        raise KeyError(day_id)

    def week(self, week_id: int) -> WeekProfile:
        for w in self.week_profiles:
            if w.week_id == week_id:
                return w
        raise KeyError(week_id)

    def profile_on(self, date: dt.date) -> DayProfile:
        """The day profile of a date: its special day, else its season's week profile."""
        special = [s for s in self.special_days if s.on(date)]
        if special:
            return self.day(min(special, key=lambda s: s.year is None).day_id)
        season = max((s for s in self.seasons if (s.month, s.day) <= (date.month, date.day)),
                     key=lambda s: (s.month, s.day), default=None)
        if season is None:  # before the first season of the year: the year's last one
            season = max(self.seasons, key=lambda s: (s.month, s.day))
        return self.day(self.week(season.week_id).days[date.weekday()])

    def with_ids(self, **changes: Any) -> TouCalendar:
        return dataclasses.replace(self, **changes)


def _name(label: str) -> str:
    raw = label.encode("utf-8")[:MAX_NAME]
    return raw.decode("utf-8", errors="ignore")


def compile_calendar(tariff: Tariff, *, issuer_calendar_id: int, issuer_event_id: int,
                     start: int) -> TouCalendar:
    """The tariff's time-of-use schedule as an SE calendar."""
    days: dict[tuple[tuple[int, int], ...], int] = {}

    def day_id(switches: tuple[Switch, ...]) -> int:
        entries = tuple((s.minute, s.tier) for s in switches)
        return days.setdefault(entries, len(days) + 1)

    weeks: dict[tuple[int, ...], int] = {}

    def week_id(week: Week) -> int:
        ids = tuple(day_id(effective_day(week, d)) for d in range(7))
        return weeks.setdefault(ids, len(weeks) + 1)

    seasons = []
    if not any((s.month, s.day) == (1, 1) for s in tariff.seasons):
        seasons.append(SeasonStart(1, 1, week_id(tariff.schedule)))
    for season in tariff.seasons:
        seasons.append(SeasonStart(season.month, season.day, week_id(season.schedule)))
    specials = tuple(SpecialDate(s.month, s.day, day_id(s.switches), s.year)
                     for s in tariff.special_days)
    reference = TIME_REFERENCE_UTC if tariff.timezone == "UTC" else TIME_REFERENCE_LOCAL
    return TouCalendar(
        provider_id=tariff.provider_id, issuer_calendar_id=issuer_calendar_id,
        issuer_event_id=issuer_event_id, start=start, name=_name(tariff.label),
        time_reference=reference,
        day_profiles=tuple(DayProfile(i, e) for e, i in days.items()),
        week_profiles=tuple(WeekProfile(i, d) for d, i in weeks.items()),
        seasons=tuple(seasons), special_days=specials)


def check(calendar: TouCalendar, tiers: int) -> None:
    """Raise :class:`CalendarError` unless the meter can follow ``calendar`` with a tariff of
    ``tiers`` tiers."""
    if calendar.calendar_type != CALENDAR_TYPE_DELIVERED:
        raise CalendarError(f"calendar type {calendar.calendar_type} (only delivered)")
    if calendar.time_reference not in (TIME_REFERENCE_UTC, TIME_REFERENCE_LOCAL):
        raise CalendarError(f"time reference {calendar.time_reference} (UTC or local time)")
    if not calendar.seasons:
        raise CalendarError("no season")
    if len(calendar.day_profiles) > MAX_DAY_PROFILES or len(calendar.week_profiles) > \
            MAX_WEEK_PROFILES or len(calendar.seasons) > MAX_SEASONS or \
            len(calendar.special_days) > MAX_SPECIAL_DAYS:
        raise CalendarError("more profiles, seasons or special days than the meter keeps")
    ids = {d.day_id for d in calendar.day_profiles}
    if len(ids) != len(calendar.day_profiles):
        raise CalendarError("a day id twice")
    for d in calendar.day_profiles:
        minutes = [m for m, _ in d.entries]
        if not d.entries or minutes[0] != 0:
            raise CalendarError(f"day profile {d.day_id} does not start at 00:00")
        if minutes != sorted(set(minutes)) or minutes[-1] >= 1440 or len(minutes) > MAX_ENTRIES:
            raise CalendarError(f"day profile {d.day_id}: bad start times")
        if any(not 1 <= tier <= tiers for _, tier in d.entries):
            raise CalendarError(f"day profile {d.day_id}: tier outside 1..{tiers}")
    weeks = {w.week_id for w in calendar.week_profiles}
    if len(weeks) != len(calendar.week_profiles):
        raise CalendarError("a week id twice")
    for w in calendar.week_profiles:
        if len(w.days) != 7 or any(d not in ids for d in w.days):
            raise CalendarError(f"week profile {w.week_id} names an unknown day profile")
    starts = set()
    for s in calendar.seasons:
        if s.year is not None:
            raise CalendarError("a season with a year (seasons start on a day every year)")
        if s.week_id not in weeks or not _valid(s.month, s.day, None):
            raise CalendarError(f"season {s.month:02d}-{s.day:02d}: bad date or week profile")
        if (s.month, s.day) in starts:
            raise CalendarError("two seasons start on the same day")
        starts.add((s.month, s.day))
    for sd in calendar.special_days:
        if sd.day_id not in ids or not _valid(sd.month, sd.day, sd.year):
            raise CalendarError(f"special day {sd.month:02d}-{sd.day:02d}: bad date or profile")


def _valid(month: int, day: int, year: int | None) -> bool:
    try:
        dt.date(2001 if year is None else year, month, day)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def schedule_of(calendar: TouCalendar, tariff: Tariff, *, local_zone: str | None = None
                ) -> Tariff:
    """``tariff`` with the calendar as its schedule (seasons, special days, time zone: UTC,
    or for a local-time calendar ``local_zone``, default the tariff's).

    Raises :class:`CalendarError` when the meter cannot follow it."""
    check(calendar, tariff.tier_count)

    def switches(day_id: int) -> tuple[Switch, ...]:
        return tuple(Switch(m, tier) for m, tier in calendar.day(day_id).entries)

    def week(week_id: int) -> Week:
        return tuple(switches(d) for d in calendar.week(week_id).days)

    ordered = sorted(calendar.seasons, key=lambda s: (s.month, s.day))
    base = ordered[0] if (ordered[0].month, ordered[0].day) == (1, 1) else ordered[-1]
    seasons = tuple(Season(s.month, s.day, week(s.week_id)) for s in ordered
                    if (s.month, s.day) != (1, 1))
    specials = tuple(SpecialDay(s.month, s.day, switches(s.day_id), s.year)
                     for s in calendar.special_days)
    zone = "UTC" if calendar.time_reference == TIME_REFERENCE_UTC else (
        local_zone or tariff.timezone)
    try:
        return dataclasses.replace(tariff, schedule=week(base.week_id), seasons=seasons,
                                   special_days=specials, timezone=zone)
    except TariffError as exc:
        raise CalendarError(str(exc)) from None


def schedule_key(tariff: Tariff) -> tuple[Any, ...]:
    """What of a tariff its calendar depends on."""
    return (tariff.schedule, tariff.seasons, tariff.special_days, tariff.timezone,
            tariff.provider_id)
