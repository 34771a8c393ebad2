"""The Calendar cluster's Publish* payloads, built from a :class:`TouCalendar` (pure).

Record lists (day schedule entries, seasons, special days) are split over several
commands so that no payload exceeds :data:`~sep.zcl.calendar.MAX_PAYLOAD`; every command
of one publication carries the same command count and its own index.
"""

from __future__ import annotations

import zigpy.types as t

from sep.clusters.general import to_zcl_time
from sep.meter.calendar import DayProfile, SpecialDate, TouCalendar
from sep.zcl.calendar import (
    ANY,
    DAY_PROFILE_HEAD,
    MAX_PAYLOAD,
    SEASONS_HEAD,
    SPECIAL_DAYS_HEAD,
    WEEKDAY_FIELDS,
    ScheduleEntry,
    SeasonEntry,
    SpecialDayEntry,
    schema,
)

PUBLISH_CALENDAR = 0x00
PUBLISH_DAY_PROFILE = 0x01
PUBLISH_WEEK_PROFILE = 0x02
PUBLISH_SEASONS = 0x03
PUBLISH_SPECIAL_DAYS = 0x04
CANCEL_CALENDAR = 0x05
RECORD = 3  # bytes of a schedule entry
DATED_RECORD = 5  # bytes of a season or special day entry


def zcl_date(month: int, day: int, year: int | None) -> t.Date:
    """A ZCL Date; ``year`` None (every year) and the day of week are 0xFF ("any")."""
    return t.Date(years_since_1900=ANY if year is None else year - 1900, month=month, day=day,
                  day_of_week=ANY)


def date_fields(date: t.Date) -> tuple[int, int, int | None]:
    """(month, day, year or None) of a ZCL Date."""
    years = int(date.years_since_1900)
    return int(date.month), int(date.day), None if years == ANY else 1900 + years


def chunks(items: list, size: int) -> list[list]:
    """``items`` in lists of ``size`` (one empty list when there are none)."""
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


def _ids(cal: TouCalendar) -> dict[str, int]:
    return {"provider_id": cal.provider_id, "issuer_event_id": cal.issuer_event_id,
            "issuer_calendar_id": cal.issuer_calendar_id}


def calendar_payload(cal: TouCalendar) -> bytes:
    return schema(PUBLISH_CALENDAR)(
        **_ids(cal), start_time=to_zcl_time(cal.start), calendar_type=cal.calendar_type,
        calendar_time_reference=cal.time_reference,
        calendar_name=t.LVBytes(cal.name.encode("utf-8")),
        number_of_seasons=len(cal.seasons), number_of_week_profiles=len(cal.week_profiles),
        number_of_day_profiles=len(cal.day_profiles)).serialize()


def day_profile_payloads(cal: TouCalendar, day: DayProfile) -> list[bytes]:
    per = (MAX_PAYLOAD - DAY_PROFILE_HEAD) // RECORD
    parts = chunks([ScheduleEntry(start_time=m, price_tier=tier) for m, tier in day.entries], per)
    return [schema(PUBLISH_DAY_PROFILE)(
        **_ids(cal), day_id=day.day_id, total_number_of_schedule_entries=len(day.entries),
        command_index=i, total_number_of_commands=len(parts), calendar_type=cal.calendar_type,
        day_schedule_entries=part).serialize() for i, part in enumerate(parts)]


def week_profile_payload(cal: TouCalendar, week_id: int) -> bytes:
    days = cal.week(week_id).days
    return schema(PUBLISH_WEEK_PROFILE)(
        **_ids(cal), week_id=week_id, **dict(zip(WEEKDAY_FIELDS, days, strict=True))
    ).serialize()


def seasons_payloads(cal: TouCalendar) -> list[bytes]:
    per = (MAX_PAYLOAD - SEASONS_HEAD) // DATED_RECORD
    entries = [SeasonEntry(season_start_date=zcl_date(s.month, s.day, s.year),
                           week_id_ref=s.week_id)
               for s in sorted(cal.seasons, key=lambda s: (s.month, s.day))]
    parts = chunks(entries, per)
    return [schema(PUBLISH_SEASONS)(
        **_ids(cal), command_index=i, total_number_of_commands=len(parts),
        season_entries=part).serialize() for i, part in enumerate(parts)]


def special_days_payloads(cal: TouCalendar, days: list[SpecialDate] | None = None,
                          start: int | None = None) -> list[bytes]:
    days = list(cal.special_days) if days is None else days
    per = (MAX_PAYLOAD - SPECIAL_DAYS_HEAD) // DATED_RECORD
    parts = chunks([SpecialDayEntry(special_day_date=zcl_date(d.month, d.day, d.year),
                                    day_id_ref=d.day_id) for d in days], per)
    return [schema(PUBLISH_SPECIAL_DAYS)(
        **_ids(cal), start_time=to_zcl_time(cal.start if start is None else start),
        calendar_type=cal.calendar_type, total_number_of_special_days=len(days),
        command_index=i, total_number_of_commands=len(parts),
        special_day_entries=part).serialize() for i, part in enumerate(parts)]


def cancel_payload(provider_id: int, issuer_calendar_id: int, calendar_type: int) -> bytes:
    return schema(CANCEL_CALENDAR)(provider_id=provider_id, issuer_calendar_id=issuer_calendar_id,
                                   calendar_type=calendar_type).serialize()


def publication(cal: TouCalendar) -> list[tuple[int, bytes]]:
    """Every command that publishes ``cal``: (command id, payload), in order."""
    out = [(PUBLISH_CALENDAR, calendar_payload(cal))]
    for day in cal.day_profiles:
        out += [(PUBLISH_DAY_PROFILE, p) for p in day_profile_payloads(cal, day)]
    out += [(PUBLISH_WEEK_PROFILE, week_profile_payload(cal, w.week_id))
            for w in cal.week_profiles]
    out += [(PUBLISH_SEASONS, p) for p in seasons_payloads(cal)]
    if cal.special_days:
        out += [(PUBLISH_SPECIAL_DAYS, p) for p in special_days_payloads(cal)]
    return out
