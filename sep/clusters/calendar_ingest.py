"""What the supplier's Calendar server sends the meter: :meth:`CalendarIngest.ingest`.

A mixin of :class:`~sep.clusters.calendar.CalendarServer`. The meter is a client of the
supplier's Calendar server (through :class:`~sep.clusters.supplier_link.SupplierLink`).
A calendar arrives in pieces: PublishCalendar announces it (how many seasons, week and day
profiles), then PublishDayProfile (one or more commands per day), PublishWeekProfile,
PublishSeasons (one or more commands) and, any time, PublishSpecialDays. The pieces are
kept by issuer calendar id until the calendar is whole; then it is checked
(:func:`~sep.meter.calendar.check`: day profiles from 00:00, known references, tiers the
tariff has, yearly seasons) and published to the meter's own HAN as its calendar, taking
over at its start time. Special days for a calendar already published replace its
special days. CancelCalendar withdraws a scheduled (or unfinished) calendar.

Statuses: another provider id → NOT_AUTHORIZED; a piece of a calendar never announced,
or a cancellation of an unknown one → NOT_FOUND; an issuer event id older than the last
calendar's, a calendar type other than delivered, counts or indices out of range, or a
whole calendar the meter cannot follow → INVALID_VALUE (and nothing changes); the same
publication again → SUCCESS. Truncated payloads raise MalformedFrame.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sep.clusters import calendar_payloads as payloads
from sep.clusters.general import ZIGBEE_EPOCH
from sep.meter.calendar import (
    MAX_DAY_PROFILES,
    MAX_ENTRIES,
    MAX_SEASONS,
    MAX_SPECIAL_DAYS,
    MAX_WEEK_PROFILES,
    CalendarError,
    DayProfile,
    SeasonStart,
    SpecialDate,
    TouCalendar,
    WeekProfile,
    check,
)
from sep.meter.tariff import MAX_TIERS
from sep.zcl.calendar import MAX_CALENDAR_NAME, TYPE_DELIVERED, WEEKDAY_FIELDS, schema
from sep.zcl.frames import Status, decode_schema

if TYPE_CHECKING:
    from collections.abc import Callable

    from sep.meter.tariff import Tariff

LOGGER = logging.getLogger("sep.clusters.calendar")
MAX_STAGED = 2  # calendars being assembled at once
MAX_COMMANDS = 16  # commands of one multi-command publication


class Refused(Exception):
    def __init__(self, status: Status, why: str) -> None:
        super().__init__(why)
        self.status = status


class _Staged:
    """The pieces of one calendar received so far."""

    def __init__(self, head: Any) -> None:
        self.head = head
        self.days: dict[int, dict[int, list[tuple[int, int]]]] = {}  # day id → index → entries
        self.day_totals: dict[int, tuple[int, int]] = {}  # day id → (commands, entries)
        self.weeks: dict[int, tuple[int, ...]] = {}
        self.seasons: dict[int, list[SeasonStart]] = {}
        self.season_commands = 0
        self.specials: list[SpecialDate] = []

    def complete_days(self) -> dict[int, tuple[tuple[int, int], ...]]:
        out = {}
        for day_id, (commands, entries) in self.day_totals.items():
            parts = self.days.get(day_id, {})
            if len(parts) == commands:
                flat = [e for i in range(commands) for e in parts[i]]
                if len(flat) == entries:
                    out[day_id] = tuple(flat)
        return out

    def whole(self) -> bool:
        h = self.head
        seasons_done = int(h.number_of_seasons) == 0 or (
            self.season_commands and len(self.seasons) == self.season_commands)
        return (len(self.complete_days()) == int(h.number_of_day_profiles)
                and len(self.weeks) == int(h.number_of_week_profiles) and bool(seasons_done))


class CalendarIngest:
    """Mixin of :class:`~sep.clusters.calendar.CalendarServer`: applies the supplier's
    calendars."""

    if TYPE_CHECKING:  # provided by CalendarServer
        follow: Callable[[], Tariff] | None
        calendars: list[TouCalendar]
        _compiled: set[int]

        def publish(self, calendar: TouCalendar, now: float) -> list[bytes]: ...
        def cancel(self, issuer_calendar_id: int, now: float) -> bytes: ...
        def find(self, issuer_calendar_id: int) -> TouCalendar | None: ...
        def push(self, command_id: int, payload: bytes) -> bytes: ...
        def tick(self, now: float) -> None: ...

    def __init__(self) -> None:
        super().__init__()
        self._staged: dict[int, _Staged] = {}
        self._last_event_id = 0  # of the last calendar publication taken from upstream
        self._specials: dict[int, dict[int, list[SpecialDate]]] = {}  # calendar → index → days
        self.ingest_log: list[str] = []

    def ingest(self, command_id: int, payload: bytes, now: float) -> Status:
        handler = {
            payloads.PUBLISH_CALENDAR: self._in_calendar,
            payloads.PUBLISH_DAY_PROFILE: self._in_day_profile,
            payloads.PUBLISH_WEEK_PROFILE: self._in_week_profile,
            payloads.PUBLISH_SEASONS: self._in_seasons,
            payloads.PUBLISH_SPECIAL_DAYS: self._in_special_days,
            payloads.CANCEL_CALENDAR: self._in_cancel,
        }.get(command_id)
        if handler is None:
            return Status.UNSUP_CLUSTER_COMMAND
        args = decode_schema(schema(command_id), payload)
        try:
            handler(args, now)
        except Refused as exc:
            LOGGER.info("Calendar command 0x%02X from the supplier refused: %s", command_id, exc)
            self.ingest_log.append(f"refused 0x{command_id:02X}: {exc}")
            del self.ingest_log[:-50]
            return exc.status
        return Status.SUCCESS

    # -- checks -----------------------------------------------------------------------------
    def _provider(self, args: Any) -> None:
        ours = self.follow().provider_id if self.follow is not None else None
        if ours is not None and int(args.provider_id) != ours:
            raise Refused(Status.NOT_AUTHORIZED, f"provider id {int(args.provider_id)}")

    def _staged_for(self, args: Any) -> _Staged:
        staged = self._staged.get(int(args.issuer_calendar_id))
        if staged is None or int(args.issuer_event_id) != int(staged.head.issuer_event_id):
            raise Refused(Status.NOT_FOUND, f"calendar {int(args.issuer_calendar_id)} "
                          "was not announced (PublishCalendar first)")
        return staged

    @staticmethod
    def _index(args: Any) -> tuple[int, int]:
        index, total = int(args.command_index), int(args.total_number_of_commands)
        if not 1 <= total <= MAX_COMMANDS or index >= total:
            raise Refused(Status.INVALID_VALUE, f"command {index} of {total}")
        return index, total

    # -- pieces -----------------------------------------------------------------------------
    def _in_calendar(self, args: Any, now: float) -> None:
        self._provider(args)
        calendar_id, event_id = int(args.issuer_calendar_id), int(args.issuer_event_id)
        known = self.find(calendar_id)
        if known is not None and calendar_id not in self._compiled \
                and known.issuer_event_id == event_id:
            return  # the same publication again
        staged = self._staged.get(calendar_id)
        if staged is not None and int(staged.head.issuer_event_id) == event_id:
            return
        if event_id < self._last_event_id:
            raise Refused(Status.INVALID_VALUE, f"issuer event id {event_id} is not newer")
        if int(args.calendar_type) != TYPE_DELIVERED:
            raise Refused(Status.INVALID_VALUE, f"calendar type {int(args.calendar_type)}")
        if int(args.number_of_day_profiles) > MAX_DAY_PROFILES or \
                int(args.number_of_week_profiles) > MAX_WEEK_PROFILES or \
                not 1 <= int(args.number_of_seasons) <= MAX_SEASONS or \
                len(bytes(args.calendar_name)) > MAX_CALENDAR_NAME:
            raise Refused(Status.INVALID_VALUE, "profile, season counts or name out of range")
        self._staged[calendar_id] = _Staged(args)
        while len(self._staged) > MAX_STAGED:
            del self._staged[next(iter(self._staged))]

    def _in_day_profile(self, args: Any, now: float) -> None:
        self._provider(args)
        staged = self._staged_for(args)
        index, total = self._index(args)
        entries = [(int(e.start_time), int(e.price_tier)) for e in args.day_schedule_entries]
        count = int(args.total_number_of_schedule_entries)
        if not 1 <= count <= MAX_ENTRIES or len(entries) > count:
            raise Refused(Status.INVALID_VALUE, f"{count} schedule entries")
        day_id = int(args.day_id)
        if day_id == 0 or (day_id not in staged.day_totals
                           and len(staged.day_totals) >= int(staged.head.number_of_day_profiles)):
            raise Refused(Status.INVALID_VALUE, f"day id {day_id}")
        staged.day_totals[day_id] = (total, count)
        staged.days.setdefault(day_id, {})[index] = entries
        self._try_whole(int(args.issuer_calendar_id), now)

    def _in_week_profile(self, args: Any, now: float) -> None:
        self._provider(args)
        staged = self._staged_for(args)
        week_id = int(args.week_id)
        if week_id == 0 or (week_id not in staged.weeks
                            and len(staged.weeks) >= int(staged.head.number_of_week_profiles)):
            raise Refused(Status.INVALID_VALUE, f"week id {week_id}")
        staged.weeks[week_id] = tuple(int(getattr(args, f)) for f in WEEKDAY_FIELDS)
        self._try_whole(int(args.issuer_calendar_id), now)

    def _in_seasons(self, args: Any, now: float) -> None:
        self._provider(args)
        staged = self._staged_for(args)
        index, total = self._index(args)
        staged.season_commands = total
        staged.seasons[index] = [SeasonStart(*_dated(e.season_start_date)[:2],
                                             week_id=int(e.week_id_ref),
                                             year=_dated(e.season_start_date)[2])
                                 for e in args.season_entries]
        self._try_whole(int(args.issuer_calendar_id), now)

    def _in_special_days(self, args: Any, now: float) -> None:
        self._provider(args)
        calendar_id = int(args.issuer_calendar_id)
        if self.find(calendar_id) is None or calendar_id in self._compiled:
            self._staged_for(args)  # NOT_FOUND unless announced
        index, total = self._index(args)
        count = int(args.total_number_of_special_days)
        if count > MAX_SPECIAL_DAYS:
            raise Refused(Status.INVALID_VALUE, f"{count} special days")
        parts = self._specials.setdefault(calendar_id, {})
        if index == 0:
            parts.clear()
        parts[index] = [SpecialDate(*_dated(e.special_day_date)[:2], day_id=int(e.day_id_ref),
                                    year=_dated(e.special_day_date)[2])
                        for e in args.special_day_entries]
        if len(parts) != total:
            return
        days = [d for i in range(total) for d in parts.get(i, [])]
        if len(days) != count:
            raise Refused(Status.INVALID_VALUE, f"{len(days)} special days, {count} announced")
        del self._specials[calendar_id]
        known = self.find(calendar_id)
        if known is None or calendar_id in self._compiled:
            self._staged[calendar_id].specials = days
            self._try_whole(calendar_id, now)
            return
        updated = known.with_ids(special_days=tuple(days))
        self._check(updated)
        self.calendars[self.calendars.index(known)] = updated
        for payload in payloads.special_days_payloads(updated):
            self.push(payloads.PUBLISH_SPECIAL_DAYS, payload)
        if self._is_in_force(updated, now):
            self._reactivate(updated)

    def _in_cancel(self, args: Any, now: float) -> None:
        self._provider(args)
        calendar_id = int(args.issuer_calendar_id)
        if self._staged.pop(calendar_id, None) is not None:
            return
        try:
            self.cancel(calendar_id, now)
        except LookupError:
            raise Refused(Status.NOT_FOUND, f"no scheduled calendar {calendar_id}") from None

    # -- the whole calendar -------------------------------------------------------------------
    def _check(self, calendar: TouCalendar) -> None:
        # Its tiers are checked when it takes over (the tariff's prices for more tiers may
        # still be on their way now): here, what any tariff could follow.
        tiers = MAX_TIERS
        try:
            check(calendar, tiers)
        except CalendarError as exc:
            raise Refused(Status.INVALID_VALUE, str(exc)) from None

    def _try_whole(self, calendar_id: int, now: float) -> None:
        staged = self._staged[calendar_id]
        if not staged.whole():
            return
        h = staged.head
        start = int(h.start_time)
        calendar = TouCalendar(
            provider_id=int(h.provider_id), issuer_calendar_id=calendar_id,
            issuer_event_id=int(h.issuer_event_id),
            start=int(now) if start == 0 else start + ZIGBEE_EPOCH,
            name=bytes(h.calendar_name).decode("utf-8", errors="replace"),
            time_reference=int(h.calendar_time_reference),
            day_profiles=tuple(DayProfile(i, e) for i, e in sorted(staged.complete_days().items())),
            week_profiles=tuple(WeekProfile(i, d) for i, d in sorted(staged.weeks.items())),
            seasons=tuple(s for i in range(staged.season_commands)
                          for s in staged.seasons.get(i, [])),
            special_days=tuple(staged.specials),
            calendar_type=int(h.calendar_type))
        del self._staged[calendar_id]
        self._check(calendar)
        self._last_event_id = calendar.issuer_event_id
        self.publish(calendar, now)

    def _is_in_force(self, calendar: TouCalendar, now: float) -> bool:
        live = [c for c in self.calendars if c.start <= now]
        return bool(live) and live[-1] is calendar

    def _reactivate(self, calendar: TouCalendar) -> None:
        self._in_force = calendar  # type: ignore[attr-defined]
        self._activated(calendar)  # type: ignore[attr-defined]


def _dated(date: Any) -> tuple[int, int, int | None]:
    return payloads.date_fields(date)
