"""Calendar server (SE 1.4 D.9), sans-IO: the time-of-use schedule as calendars.

The server holds the calendar in force and the ones scheduled to take over (a start time
in the future). Where they come from:

- the tariff (``follow``): the server compiles the tariff's weekly schedule, seasons and
  special days into a calendar (:func:`~sep.meter.calendar.compile_calendar`) and
  publishes a new one whenever the tariff's schedule changes;
- the local API (:meth:`CalendarServer.publish`, :meth:`CalendarServer.cancel`): hubsim's
  supplier publishes and withdraws calendars this way;
- the supplier upstream (:meth:`CalendarServer.ingest`, see
  :mod:`sep.clusters.calendar_ingest`): the meter, a client of the supplier's Calendar
  server, assembles what it is sent and publishes it as its own.

A calendar from the last two is the schedule the meter follows when it takes over:
``on_activate(calendar)`` (the app makes it the tariff's schedule, so the Price server's
TOU prices and the tier registers follow it). Every publication goes to the HAN clients
(PublishCalendar, PublishDayProfile, PublishWeekProfile, PublishSeasons,
PublishSpecialDays); a withdrawn scheduled calendar is sent a CancelCalendar.

Client requests: GetCalendar (the calendar in force at the earliest start time asked for,
or now, then the scheduled ones; by minimum issuer event id, calendar type and provider),
GetDayProfiles / GetWeekProfiles (from a start id, a number of them; 0 = all),
GetSeasons, GetSpecialDays (from a start time, a number of them) and
GetCalendarCancellation; multi-record answers are split over frames of at most 80
payload bytes. Nothing matching → NOT_FOUND; a reserved calendar type → INVALID_FIELD;
a truncated payload → MALFORMED_COMMAND (the base class).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Any

from sep.clusters import calendar_payloads as payloads
from sep.clusters.base import ClusterServer
from sep.clusters.calendar_ingest import CalendarIngest
from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.meter.calendar import SpecialDate, TouCalendar, compile_calendar, schedule_key
from sep.meter.tariff import Tariff
from sep.zcl.calendar import ALL_TYPES, NOT_USED_U32, TYPE_AUXILIARY_LOAD_SWITCH, Calendar
from sep.zcl.frames import Request, Status, build_frame, response_header

LOGGER = logging.getLogger(__name__)
MAX_CALENDARS = 4  # the calendar in force and those scheduled after it


def zcl_to_unix(value: int, now: float) -> int:
    """A ZCL UTCTime field as unix seconds (0 = now)."""
    return int(now) if value == 0 else value + ZIGBEE_EPOCH


class CalendarServer(CalendarIngest, ClusterServer):
    cluster = Calendar

    def __init__(self, *, follow: Callable[[], Tariff | None] | None = None,
                 on_activate: Callable[[TouCalendar], None] | None = None) -> None:
        super().__init__()
        self.follow = follow
        self.on_activate = on_activate or (lambda calendar: None)
        self.calendars: list[TouCalendar] = []  # in force (first) and scheduled, by start
        self.cancelled: bytes | None = None  # the last CancelCalendar payload
        self._source_key: tuple[Any, ...] | None = None
        self._in_force: TouCalendar | None = None
        self._compiled: set[int] = set()  # calendars made from the tariff (no on_activate)
        self._last_id = 0
        self._now: float | None = None
        self.commands.update({
            0x00: self._get_calendar, 0x01: self._get_day_profiles,
            0x02: self._get_week_profiles, 0x03: self._get_seasons,
            0x04: self._get_special_days, 0x05: self._get_calendar_cancellation,
        })

    # -- state -----------------------------------------------------------------------------
    def active(self, now: float) -> TouCalendar | None:
        """The calendar in force at ``now``."""
        live = [c for c in self.calendars if c.start <= now]
        return live[-1] if live else None

    def scheduled(self, now: float) -> list[TouCalendar]:
        return [c for c in self.calendars if c.start > now]

    def find(self, issuer_calendar_id: int) -> TouCalendar | None:
        for c in self.calendars:
            if c.issuer_calendar_id == issuer_calendar_id:
                return c
        return None

    def new_id(self, now: float) -> int:
        """A fresh issuer id (ZCL seconds, strictly increasing)."""
        self._last_id = max(self._last_id + 1, to_zcl_time(now))
        return self._last_id

    def today(self, now: float, zone: Any = dt.UTC) -> list[tuple[int, int]]:
        """(minute, tier) entries of the day profile in force on ``now``'s date."""
        cal = self.active(now)
        if cal is None:
            return []
        return list(cal.profile_on(dt.datetime.fromtimestamp(now, zone).date()).entries)

    # -- local API ---------------------------------------------------------------------------
    def publish(self, calendar: TouCalendar, now: float) -> list[bytes]:
        """Publish a calendar to the HAN clients; it takes over at its start time (now when
        that has passed). Returns the frames pushed."""
        self._now = now
        known = self.find(calendar.issuer_calendar_id)
        if known is not None and (calendar.issuer_calendar_id in self._compiled
                                  or calendar.issuer_event_id > known.issuer_event_id):
            # ours, made from the tariff (a supplier's id wins), or a newer publication of
            # the same calendar: it replaces the one known
            self.calendars.remove(known)
            self._compiled.discard(calendar.issuer_calendar_id)
            if self._in_force is known:
                self._in_force = None
        elif known is not None:
            raise ValueError(f"calendar {calendar.issuer_calendar_id} is published already")
        self._last_id = max(self._last_id, calendar.issuer_event_id,
                            calendar.issuer_calendar_id)
        before = len(self.outbox)
        for command_id, payload in payloads.publication(calendar):
            self.push(command_id, payload)
        self._add(calendar, now, notify=True)
        return self.outbox[before:]

    def cancel(self, issuer_calendar_id: int, now: float) -> bytes:
        """Withdraw a scheduled calendar: CancelCalendar to the HAN clients."""
        cal = self.find(issuer_calendar_id)
        if cal is None or cal.start <= now:
            raise LookupError(f"no scheduled calendar {issuer_calendar_id}")
        self.calendars.remove(cal)
        self.cancelled = payloads.cancel_payload(cal.provider_id, cal.issuer_calendar_id,
                                                 cal.calendar_type)
        LOGGER.info("calendar %d cancelled", issuer_calendar_id)
        return self.push(payloads.CANCEL_CALENDAR, self.cancelled)

    def _add(self, calendar: TouCalendar, now: float, *, notify: bool) -> None:
        self.calendars.append(calendar)
        self.calendars.sort(key=lambda c: c.start)  # stable: of equal starts the last wins
        if not notify:
            self._compiled.add(calendar.issuer_calendar_id)
        self.tick(now)

    def reactivate(self, calendar: TouCalendar) -> None:
        """Tell ``on_activate`` of the calendar in force again (it could not follow it yet)."""
        self._activated(calendar)

    def _activated(self, calendar: TouCalendar) -> None:
        LOGGER.info("calendar %d %r in force", calendar.issuer_calendar_id, calendar.name)
        self.on_activate(calendar)
        followed = self.follow() if self.follow is not None else None
        if followed is not None:  # the tariff now has the calendar's schedule
            self._source_key = schedule_key(followed)

    # -- time --------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """A scheduled calendar whose start has come takes over (``on_activate``); a change
        of the tariff's schedule makes a new calendar."""
        self._now = now
        active = self.active(now)
        if active is not None and active is not self._in_force:
            self.calendars = self.calendars[self.calendars.index(active):][:MAX_CALENDARS]
            self._in_force = active
            if active.issuer_calendar_id not in self._compiled:
                self._activated(active)
        self._follow_tariff(now)

    def _follow_tariff(self, now: float) -> None:
        if self.follow is None:
            return
        tariff = self.follow()
        if tariff is None:  # nothing to follow (a supplier without a tariff)
            return
        key = schedule_key(tariff)
        if key == self._source_key:
            return
        self._source_key = key
        issued = self.new_id(now)
        calendar = compile_calendar(tariff, issuer_calendar_id=issued, issuer_event_id=issued,
                                    start=int(now))
        for command_id, payload in payloads.publication(calendar):
            self.push(command_id, payload)
        self.calendars = [calendar, *(c for c in self.calendars if c.start > now)]
        self._compiled = {calendar.issuer_calendar_id}
        self._in_force = calendar
        LOGGER.info("calendar %d compiled from tariff %r", issued, tariff.label)

    # -- answers to HAN clients ----------------------------------------------------------
    def _replies(self, req: Request, items: Iterable[tuple[int, bytes]]) -> list[bytes]:
        return [build_frame(response_header(req, command_id, general=False), payload)
                for command_id, payload in items]

    @staticmethod
    def _type_ok(value: int) -> bool:
        return value == ALL_TYPES or value <= TYPE_AUXILIARY_LOAD_SWITCH

    @staticmethod
    def _type_matches(calendar: TouCalendar, value: int) -> bool:
        return value in (ALL_TYPES, calendar.calendar_type)

    @staticmethod
    def _provider_matches(calendar: TouCalendar, provider_id: int) -> bool:
        return provider_id in (NOT_USED_U32, calendar.provider_id)

    def _calendar(self, args: Any) -> TouCalendar | None:
        cal = self.find(int(args.issuer_calendar_id))
        if cal is None or not self._provider_matches(cal, int(args.provider_id)):
            return None
        return cal

    def _get_calendar(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        self.tick(now)
        if not self._type_ok(int(args.calendar_type)):
            return Status.INVALID_FIELD
        since = max(zcl_to_unix(int(args.earliest_start_time), now), int(now))
        first = self.active(since)
        chosen = [c for c in self.calendars if c is first or c.start > since]
        min_id = int(args.min_issuer_event_id)
        chosen = [c for c in chosen
                  if (min_id == NOT_USED_U32 or c.issuer_event_id >= min_id)
                  and self._type_matches(c, int(args.calendar_type))
                  and self._provider_matches(c, int(args.provider_id))]
        n = int(args.number_of_calendars) or len(chosen)
        if not chosen:
            return Status.NOT_FOUND
        return self._replies(req, ((payloads.PUBLISH_CALENDAR, payloads.calendar_payload(c))
                                   for c in chosen[:n]))

    def _get_day_profiles(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        cal = self._calendar(args)
        if cal is None:
            return Status.NOT_FOUND
        start = max(1, int(args.start_day_id))
        days = [d for d in sorted(cal.day_profiles, key=lambda d: d.day_id) if d.day_id >= start]
        days = days[:int(args.number_of_days) or len(days)]
        if not days:
            return Status.NOT_FOUND
        return self._replies(req, ((payloads.PUBLISH_DAY_PROFILE, p) for d in days
                                   for p in payloads.day_profile_payloads(cal, d)))

    def _get_week_profiles(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        cal = self._calendar(args)
        if cal is None:
            return Status.NOT_FOUND
        start = max(1, int(args.start_week_id))
        weeks = [w.week_id for w in sorted(cal.week_profiles, key=lambda w: w.week_id)
                 if w.week_id >= start]
        weeks = weeks[:int(args.number_of_weeks) or len(weeks)]
        if not weeks:
            return Status.NOT_FOUND
        return self._replies(req, ((payloads.PUBLISH_WEEK_PROFILE,
                                    payloads.week_profile_payload(cal, w)) for w in weeks))

    def _get_seasons(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        cal = self._calendar(args)
        if cal is None or not cal.seasons:
            return Status.NOT_FOUND
        return self._replies(req, ((payloads.PUBLISH_SEASONS, p)
                                   for p in payloads.seasons_payloads(cal)))

    def _get_special_days(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        if not self._type_ok(int(args.calendar_type)):
            return Status.INVALID_FIELD
        self.tick(now)
        wanted = int(args.issuer_calendar_id)
        if wanted == NOT_USED_U32:
            cal = self.active(now)
            if cal is not None and not self._provider_matches(cal, int(args.provider_id)):
                cal = None
        else:
            cal = self._calendar(args)
        if cal is None or not self._type_matches(cal, int(args.calendar_type)):
            return Status.NOT_FOUND
        since = dt.datetime.fromtimestamp(zcl_to_unix(int(args.start_time), now), dt.UTC).date()
        dated = sorted((d for d in ((_next(s, since), s) for s in cal.special_days)
                        if d[0] is not None), key=lambda d: d[0])
        days = [s for _, s in dated][:int(args.number_of_events) or len(dated)]
        if not days:
            return Status.NOT_FOUND
        return self._replies(req, ((payloads.PUBLISH_SPECIAL_DAYS, p)
                                   for p in payloads.special_days_payloads(cal, days)))

    def _get_calendar_cancellation(self, req: Request, args: Any, now: float
                                   ) -> list[bytes] | Status:
        if self.cancelled is None:
            return Status.NOT_FOUND
        return self._replies(req, [(payloads.CANCEL_CALENDAR, self.cancelled)])


def _next(special: SpecialDate, since: dt.date) -> dt.date | None:
    """The first date on or after ``since`` that ``special`` falls on (None: never)."""
    if special.year is not None:
        day = dt.date(special.year, special.month, special.day)
        return day if day >= since else None
    for year in (since.year, since.year + 1):
        try:
            day = dt.date(year, special.month, special.day)
        except ValueError:
            continue
        if day >= since:
            return day
    return None
