"""Calendar (0x0707), SE 1.4 D.9, as a declarative table on zigpy's types.

zigpy defines Calendar as an empty stub; this subclass carries the SE 1.4 commands and
stays out of zigpy's registry (``_skip_registry``). The layouts agree field for field with
Wireshark's ``packet-zbee-zcl-se.c`` (our independent judge).

Server-received (client→server): GetCalendar 0x00, GetDayProfiles 0x01,
GetWeekProfiles 0x02, GetSeasons 0x03, GetSpecialDays 0x04, GetCalendarCancellation 0x05.

Server-generated (server→client): PublishCalendar 0x00, PublishDayProfile 0x01,
PublishWeekProfile 0x02, PublishSeasons 0x03, PublishSpecialDays 0x04, CancelCalendar 0x05.

A calendar is a set of day profiles (schedule entries: minutes from midnight and, for a
delivered/received calendar, the price tier), week profiles (a day profile per weekday,
Monday first), seasons (a start date and the week profile from then on) and special days
(a date and the day profile that replaces its weekday's). Dates are ZCL Date values:
year − 1900, month, day of month, day of week (1 = Monday); 0xFF in a field means "any"
(a season starting on 0xFF-10-01 starts on 1 October every year). Day profiles, seasons
and special days are record lists a server splits over several commands (command index /
total number of commands) so that no ZCL payload exceeds :data:`MAX_PAYLOAD`.
"""

from __future__ import annotations

from typing import Any, Final

import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.foundation import BaseAttributeDefs, BaseCommandDefs, ZCLAttributeDef, ZCLCommandDef

#: the largest ZCL payload (after the 3-byte ZCL header) the server puts in one frame
MAX_PAYLOAD = 80

# Calendar Type (D.9.2.3.1.1.5)
TYPE_DELIVERED = 0x00
TYPE_RECEIVED = 0x01
TYPE_DELIVERED_AND_RECEIVED = 0x02
TYPE_FRIENDLY_CREDIT = 0x03
TYPE_AUXILIARY_LOAD_SWITCH = 0x04
ALL_TYPES = 0xFF  # in a Get*: any calendar type

# Calendar Time Reference (D.9.2.3.1.1.6)
TIME_REFERENCE_UTC = 0x00
TIME_REFERENCE_STANDARD = 0x01
TIME_REFERENCE_LOCAL = 0x02

ANY = 0xFF  # a Date field that matches any value (year, month, day, day of week)
NOT_USED_U32 = 0xFFFFFFFF  # provider id / issuer ids "not used" in a Get*
MAX_CALENDAR_NAME = 12  # octets

#: bytes of the fixed fields before the record list
DAY_PROFILE_HEAD = 4 + 4 + 4 + 1 + 1 + 1 + 1 + 1
SEASONS_HEAD = 4 + 4 + 4 + 1 + 1
SPECIAL_DAYS_HEAD = 4 + 4 + 4 + 4 + 1 + 1 + 1 + 1


class ScheduleEntry(t.Struct):
    """A day schedule entry of a delivered/received calendar (D.9.2.4.2.2): start time in
    minutes from midnight, and the price tier from then on."""

    start_time: t.uint16_t
    price_tier: t.uint8_t


class SeasonEntry(t.Struct):
    """A season (D.9.2.4.4.2): its start date and the week profile from then on."""

    season_start_date: t.Date
    week_id_ref: t.uint8_t


class SpecialDayEntry(t.Struct):
    """A special day (D.9.2.4.5.2): its date and the day profile used on it."""

    special_day_date: t.Date
    day_id_ref: t.uint8_t


def _attribute_defs() -> dict[str, Any]:
    # Auxiliary Switch Label set (D.9.2.2): defined for completeness; a meter without
    # auxiliary load switches serves none of them.
    return {f"aux_switch_{i + 1}_label": ZCLAttributeDef(id=i, type=t.LVBytes, access="r")
            for i in range(8)}


_CALENDAR_REF = {"provider_id": t.uint32_t, "issuer_calendar_id": t.uint32_t}
_PUBLISHED = {"provider_id": t.uint32_t, "issuer_event_id": t.uint32_t,
              "issuer_calendar_id": t.uint32_t}


class Calendar(Cluster):
    _skip_registry = True
    cluster_id: Final = 0x0707
    ep_attribute: Final = "smartenergy_calendar"

    AttributeDefs = type("AttributeDefs", (BaseAttributeDefs,), _attribute_defs())

    class ServerCommandDefs(BaseCommandDefs):
        get_calendar: Final = ZCLCommandDef(id=0x00, schema={
            "earliest_start_time": t.UTCTime, "min_issuer_event_id": t.uint32_t,
            "number_of_calendars": t.uint8_t, "calendar_type": t.enum8,
            "provider_id": t.uint32_t})
        get_day_profiles: Final = ZCLCommandDef(id=0x01, schema={
            **_CALENDAR_REF, "start_day_id": t.uint8_t, "number_of_days": t.uint8_t})
        get_week_profiles: Final = ZCLCommandDef(id=0x02, schema={
            **_CALENDAR_REF, "start_week_id": t.uint8_t, "number_of_weeks": t.uint8_t})
        get_seasons: Final = ZCLCommandDef(id=0x03, schema=dict(_CALENDAR_REF))
        get_special_days: Final = ZCLCommandDef(id=0x04, schema={
            "start_time": t.UTCTime, "number_of_events": t.uint8_t, "calendar_type": t.enum8,
            **_CALENDAR_REF})
        get_calendar_cancellation: Final = ZCLCommandDef(id=0x05, schema={})

    class ClientCommandDefs(BaseCommandDefs):
        publish_calendar: Final = ZCLCommandDef(id=0x00, schema={
            **_PUBLISHED, "start_time": t.UTCTime, "calendar_type": t.enum8,
            "calendar_time_reference": t.enum8, "calendar_name": t.LVBytes,
            "number_of_seasons": t.uint8_t, "number_of_week_profiles": t.uint8_t,
            "number_of_day_profiles": t.uint8_t})
        publish_day_profile: Final = ZCLCommandDef(id=0x01, schema={
            **_PUBLISHED, "day_id": t.uint8_t, "total_number_of_schedule_entries": t.uint8_t,
            "command_index": t.uint8_t, "total_number_of_commands": t.uint8_t,
            "calendar_type": t.enum8, "day_schedule_entries": t.List[ScheduleEntry]})
        publish_week_profile: Final = ZCLCommandDef(id=0x02, schema={
            **_PUBLISHED, "week_id": t.uint8_t, "day_id_ref_monday": t.uint8_t,
            "day_id_ref_tuesday": t.uint8_t, "day_id_ref_wednesday": t.uint8_t,
            "day_id_ref_thursday": t.uint8_t, "day_id_ref_friday": t.uint8_t,
            "day_id_ref_saturday": t.uint8_t, "day_id_ref_sunday": t.uint8_t})
        publish_seasons: Final = ZCLCommandDef(id=0x03, schema={
            **_PUBLISHED, "command_index": t.uint8_t, "total_number_of_commands": t.uint8_t,
            "season_entries": t.List[SeasonEntry]})
        publish_special_days: Final = ZCLCommandDef(id=0x04, schema={
            **_PUBLISHED, "start_time": t.UTCTime, "calendar_type": t.enum8,
            "total_number_of_special_days": t.uint8_t, "command_index": t.uint8_t,
            "total_number_of_commands": t.uint8_t,
            "special_day_entries": t.List[SpecialDayEntry]})
        cancel_calendar: Final = ZCLCommandDef(id=0x05, schema={
            **_CALENDAR_REF, "calendar_type": t.enum8})


WEEKDAY_FIELDS = ("day_id_ref_monday", "day_id_ref_tuesday", "day_id_ref_wednesday",
                  "day_id_ref_thursday", "day_id_ref_friday", "day_id_ref_saturday",
                  "day_id_ref_sunday")


def schema(command_id: int) -> Any:
    """The payload schema of a server-generated (Publish*/Cancel) command."""
    return Calendar.client_commands[command_id].schema


def request_schema(command_id: int) -> Any:
    """The payload schema of a client request (Get*)."""
    return Calendar.server_commands[command_id].schema
