"""The in-home display's Calendar, Events and Keep-Alive: today's schedule, the meter's
events, tenancy news, and whether the trust centre is there.

Calendar and Events go through zigpy's client side with sep's tables (``sep/zcl``) on
the IHD's mirror of the meter's clusters, as Price does (``hubsim/ihd.py``), so what the
display shows is zigpy's reading of the meter's frames. zigpy takes every answer with a
request's TSN as its one reply, so the display asks for one thing at a time: the calendar
in force, its seasons, today's week profile, a special day for today, today's day
profile — each answer one frame. Pushes (a calendar the supplier sent, a cancellation,
a new event) come as cluster commands.

Local time for a local-time calendar is the meter's (its Time cluster: LocalTime − Time).
Keep-Alive is the sans-IO client of ``sep/clusters/keep_alive.py`` on raw packets to the
trust centre; after the missed keep-alives SE allows it calls ``on_trust_centre_lost``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
import time
from typing import Any

import zigpy.types as t
import zigpy.zdo.types as zdo_t

from radios.tasks import cancel_and_wait
from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.clusters.keep_alive import (
    Discover,
    KeepAliveClient,
    Read,
    TrustCentreBack,
    TrustCentreLost,
)
from sep.zcl import events as ev
from sep.zcl.calendar import ANY, TIME_REFERENCE_UTC, WEEKDAY_FIELDS
from sep.zcl.calendar import Calendar as SeCalendar
from sep.zcl.events import Events as SeEvents
from sep.zcl.frames import MalformedFrame, Request, decode_header

LOGGER = logging.getLogger(__name__)
NOT_USED = 0xFFFFFFFF
KEEP_ALIVE = 0x0025
LAST_EVENTS = 5


@dataclasses.dataclass
class HanView:
    """What the display shows of calendars, events and tenancy."""

    calendar_name: str | None = None
    calendar_id: int | None = None
    today: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (minute, tier)
    today_date: dt.date | None = None
    next_calendar: tuple[int, str, int] | None = None  # (id, name, start) of a scheduled one
    events: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)  # id, log, t
    events_in_log: int = 0
    events_pushed: int = 0
    tenancy: str = "--"
    keep_alive: str = "--"

    def schedule_text(self, labels: dict[int, str]) -> str:
        if not self.today:
            return "--"
        return " · ".join(f"{m // 60:02d}:{m % 60:02d} {labels.get(tier, f'tier {tier}')}"
                          for m, tier in self.today)

    def events_text(self) -> str:
        if not self.events:
            return f"{self.events_in_log} in log" if self.events_in_log else "--"
        event_id, _log, when = self.events[0]
        name = ev.EVENT_NAMES.get(event_id, f"0x{event_id:04X}")
        return (f"{self.events_in_log} in log, {self.events_pushed} pushed; last: {name} "
                f"{time.strftime('%H:%M', time.gmtime(when))}")


class IhdHan:
    def __init__(self, ihd: Any, *, seed: int = 2) -> None:
        self.ihd = ihd
        self.view = HanView()
        self.calendar: Any = None
        self.events: Any = None
        self.local_offset = 0  # seconds from UTC to the meter's local time
        self.keep_alive = KeepAliveClient(rng=random.Random(seed))
        self.on_trust_centre_lost: Any = lambda failures: None
        self._match_tsn: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._time_reference = TIME_REFERENCE_UTC
        self._refreshing = False
        self._again = False

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._keep_alive_loop())

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait([self._task], 10)

    async def connect(self, endpoint: Any) -> None:
        """After the interview: the meter's Calendar and Events, if it serves them."""
        await self._read_local_offset(endpoint)
        if SeCalendar.cluster_id in endpoint.in_clusters:
            self.calendar = endpoint.add_input_cluster(SeCalendar.cluster_id,
                                                       SeCalendar(endpoint, is_server=True))
            self.calendar.add_listener(_Commands(self._on_calendar_command))
            await self.refresh_calendar()
            rsp = await self.calendar.get_calendar_cancellation()
            self._on_calendar_command(0x05, rsp, asked=True)
        if SeEvents.cluster_id in endpoint.in_clusters:
            self.events = endpoint.add_input_cluster(SeEvents.cluster_id,
                                                     SeEvents(endpoint, is_server=True))
            self.events.add_listener(_Commands(self._on_events_command))
            await self.refresh_events()

    async def _read_local_offset(self, endpoint: Any) -> None:
        time_cluster = endpoint.in_clusters.get(0x000A)
        if time_cluster is None:
            return
        try:
            ok, _ = await time_cluster.read_attributes([0x0000, 0x0007], allow_cache=False)
        except Exception as exc:  # noqa: BLE001 - a display without local time shows UTC
            LOGGER.info("IHD: no local time (%r)", exc)
            return
        utc, local = ok.get(0x0000, ok.get("time")), ok.get(0x0007, ok.get("local_time"))
        if utc is not None and local is not None:
            self.local_offset = int(local) - int(utc)

    # -- calendar -----------------------------------------------------------------------------
    def _day(self, now: float) -> dt.date:
        offset = 0 if self._time_reference == TIME_REFERENCE_UTC else self.local_offset
        return dt.datetime.fromtimestamp(now + offset, dt.UTC).date()

    async def refresh_calendar(self) -> None:
        """Ask for the calendar in force and today's profile, one answer at a time."""
        if self.calendar is None:
            return
        if self._refreshing:
            self._again = True  # news came while reading: read again when done
            return
        self._refreshing = True
        try:
            self._again = True
            while self._again:
                self._again = False
                await self._refresh_calendar()
        except Exception as exc:  # noqa: BLE001 - shown as "--" and asked again later
            LOGGER.info("IHD: calendar not read: %r", exc)
        finally:
            self._refreshing = False

    async def _refresh_calendar(self) -> None:
        c, v, now = self.calendar, self.view, self.ihd.clock()
        cal = await c.get_calendar(0, NOT_USED, 1, 0xFF, NOT_USED)
        if _is_status(cal):
            return
        ids = (int(cal.provider_id), int(cal.issuer_calendar_id))
        self._time_reference = int(cal.calendar_time_reference)
        v.calendar_name = bytes(cal.calendar_name).decode("utf-8", errors="replace")
        v.calendar_id = ids[1]
        today = self._day(now)
        seasons = await c.get_seasons(*ids)
        if _is_status(seasons):
            return
        entries = sorted((int(s.season_start_date.month), int(s.season_start_date.day),
                           int(s.week_id_ref)) for s in seasons.season_entries)
        current = [e for e in entries if (e[0], e[1]) <= (today.month, today.day)]
        week_id = (current or entries)[-1][2]
        week = await c.get_week_profiles(*ids, week_id, 1)
        if _is_status(week):
            return
        day_id = int(getattr(week, WEEKDAY_FIELDS[today.weekday()]))
        start = to_zcl_time(dt.datetime(today.year, today.month, today.day,
                                        tzinfo=dt.UTC).timestamp() - (
            0 if self._time_reference == TIME_REFERENCE_UTC else self.local_offset))
        special = await c.get_special_days(max(start, 1), 1, 0xFF, *ids)
        if not _is_status(special):
            for entry in special.special_day_entries:
                d = entry.special_day_date
                if (int(d.month), int(d.day)) == (today.month, today.day) and \
                        int(d.years_since_1900) in (ANY, today.year - 1900):
                    day_id = int(entry.day_id_ref)
        day = await c.get_day_profiles(*ids, day_id, 1)
        if _is_status(day):
            return
        v.today = [(int(e.start_time), int(e.price_tier)) for e in day.day_schedule_entries]
        v.today_date = today
        self.ihd._note(f"schedule today ({v.calendar_name}): "
                       f"{v.schedule_text(self.ihd.view.prices.tier_labels)}")

    def _on_calendar_command(self, command_id: int, args: Any, *, asked: bool = False) -> None:
        if _is_status(args):
            return
        now = self.ihd.clock()
        if command_id == 0x00:
            start = int(args.start_time)
            start = int(now) if start == 0 else start + ZIGBEE_EPOCH
            name = bytes(args.calendar_name).decode("utf-8", errors="replace")
            if start > now:
                self.view.next_calendar = (int(args.issuer_calendar_id), name, start)
                self.ihd._note(f"calendar {name!r} from {_hhmm(start)}")
            else:
                self._spawn(self.refresh_calendar())
        elif command_id == 0x05:
            cancelled = int(args.issuer_calendar_id)
            if self.view.next_calendar is not None and self.view.next_calendar[0] == cancelled:
                self.view.next_calendar = None
            if not asked:
                self.ihd._note(f"calendar {cancelled} cancelled")
                self._spawn(self._ask_cancellation())

    async def _ask_cancellation(self) -> None:
        try:
            self._on_calendar_command(0x05, await self.calendar.get_calendar_cancellation(),
                                      asked=True)
        except Exception as exc:  # noqa: BLE001
            LOGGER.info("IHD: GetCalendarCancellation failed: %r", exc)

    async def refresh_if_due(self) -> None:
        """A scheduled calendar whose start has come, or a new day: read today again."""
        now = self.ihd.clock()
        nxt = self.view.next_calendar
        if nxt is not None and nxt[2] <= now:
            self.view.next_calendar = None
            await self.refresh_calendar()
        elif self.view.today_date is not None and self._day(now) != self.view.today_date:
            await self.refresh_calendar()

    # -- events --------------------------------------------------------------------------------
    async def refresh_events(self) -> None:
        """The last few events (minimal information: they fit one frame)."""
        if self.events is None:
            return
        try:
            rsp = await self.events.get_event_log(ev.LOG_ALL, ev.ALL_EVENT_IDS, 0, NOT_USED,
                                                  LAST_EVENTS, 0)
        except Exception as exc:  # noqa: BLE001
            LOGGER.info("IHD: event log not read: %r", exc)
            return
        if _is_status(rsp):
            return
        self.view.events_in_log = int(rsp.total_number_of_matching_events)
        self.view.events = [(int(e.event_id), int(e.log_id), int(e.event_time) + ZIGBEE_EPOCH)
                            for e in rsp.events]
        for event_id, _log, when in reversed(self.view.events):
            self._tenancy(event_id, when)

    def _on_events_command(self, command_id: int, args: Any) -> None:
        if command_id != 0x00 or _is_status(args):
            return
        self.view.events_pushed += 1
        event_id, when = int(args.event_id), int(args.event_time) + ZIGBEE_EPOCH
        name = ev.EVENT_NAMES.get(event_id, f"0x{event_id:04X}")
        self.ihd._note(f"meter event: {name}")
        self._tenancy(event_id, when)
        self._spawn(self.refresh_events())

    def _tenancy(self, event_id: int, when: int) -> None:
        text = {ev.PUBLISH_COT_RECEIVED: "tenancy change announced",
                ev.PUBLISH_COT_ACTIONED: "tenancy changed",
                ev.PUBLISH_COT_CANCELLED: "tenancy change cancelled",
                ev.PUBLISH_COS_RECEIVED: "supplier change announced",
                ev.PUBLISH_COS_ACTIONED: "supplier changed"}.get(event_id)
        if text is not None:
            self.view.tenancy = f"{text} {_hhmm(when)}"

    # -- keep-alive ------------------------------------------------------------------------------
    async def _keep_alive_loop(self) -> None:
        # (a stop flag as well as the cancellation: a radio that turns a cancelled send into
        # a delivery error must not keep this loop going)
        while not self._stopping:
            try:
                await self._keep_alive_step()
            except Exception as exc:  # noqa: BLE001 - the display keeps going
                LOGGER.info("IHD keep-alive step failed: %r", exc)
            await asyncio.sleep(0.1)

    async def _keep_alive_step(self) -> None:
        app, now = self.ihd.app, self.ihd.clock()
        ka = self.keep_alive
        for action in ka.poll(now):
            if isinstance(action, Discover):
                await self._match_keep_alive(action.nwk)
            elif isinstance(action, Read):
                await app.send_packet(t.ZigbeePacket(
                    src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK,
                                          address=app.state.node_info.nwk), src_ep=1,
                    dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(action.nwk)),
                    dst_ep=action.endpoint, tsn=action.frame[1], profile_id=0x0109,
                    cluster_id=KEEP_ALIVE, data=t.SerializableBytes(action.frame),
                    tx_options=t.TransmitOptions.ACK, radius=30))
            elif isinstance(action, TrustCentreLost):
                self.ihd._note("trust centre lost: search and rejoin, redo KE")
                self.on_trust_centre_lost(action.failures)
            elif isinstance(action, TrustCentreBack):
                self.ihd._note("trust centre answers again")
        if ka.lost:
            self.view.keep_alive = f"trust centre lost ({ka.failures} missed)"
        elif ka.answered:
            self.view.keep_alive = (f"trust centre OK ({ka.answered} answered, every "
                                    f"{ka.base} min + ≤{ka.jitter} s)")

    async def _match_keep_alive(self, nwk: int) -> None:
        app = self.ihd.app
        tsn = app.get_sequence()
        self._match_tsn = tsn
        schema = zdo_t.CLUSTERS[zdo_t.ZDOCmd.Match_Desc_req][1]
        payload = bytes([tsn]) + b"".join(typ(value).serialize() for typ, value in zip(
            schema, [nwk, 0x0109, [KEEP_ALIVE], []], strict=True))
        await app.send_packet(t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=app.state.node_info.nwk),
            src_ep=0, dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(nwk)),
            dst_ep=0, tsn=tsn, profile_id=0, cluster_id=zdo_t.ZDOCmd.Match_Desc_req,
            data=t.SerializableBytes(payload), tx_options=t.TransmitOptions.ACK, radius=30))

    def on_packet(self, packet: t.ZigbeePacket) -> bool:
        """Keep-alive answers (ZDO and ZCL) from the trust centre; True when consumed."""
        src = packet.src
        if src is None or src.addr_mode != t.AddrMode.NWK:
            return False
        data = bytes(packet.data.serialize())
        now = self.ihd.clock()
        if packet.profile_id == 0 and packet.cluster_id == zdo_t.ZDOCmd.Match_Desc_rsp:
            if not data or data[0] != self._match_tsn:
                return False
            try:
                (status, nwk, matches), _ = t.deserialize(
                    data[1:], zdo_t.CLUSTERS[zdo_t.ZDOCmd.Match_Desc_rsp][1])
            except (ValueError, KeyError, IndexError):
                return True
            if status == zdo_t.Status.SUCCESS:
                self.keep_alive.found(int(nwk), [int(m) for m in matches], now)
            return True
        if packet.cluster_id != KEEP_ALIVE:
            return False
        try:
            header, payload = decode_header(data)
        except MalformedFrame:
            return True
        self.keep_alive.handle(Request(
            src_nwk=int(src.address), src_ep=int(packet.src_ep or 0), dst_ep=1,
            profile_id=int(packet.profile_id), cluster_id=KEEP_ALIVE, header=header,
            payload=payload), now)
        return True

    def _spawn(self, coro: Any) -> None:
        self.ihd._spawn(coro)


class _Commands:
    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def cluster_command(self, tsn: int, command_id: int, args: Any) -> None:
        try:
            self.handler(int(command_id), args)
        except Exception:  # noqa: BLE001 - a strange push must not break the display
            LOGGER.exception("IHD could not take command 0x%02X", command_id)


def _is_status(args: Any) -> bool:
    """A Default Response (e.g. NOT_FOUND) instead of the asked-for command."""
    return getattr(args, "command_id", None) is not None and hasattr(args, "status")


def _hhmm(unix: float) -> str:
    return time.strftime("%H:%M", time.gmtime(unix))
