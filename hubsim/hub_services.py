"""The comms hub's Calendar, Device Management and Keep-Alive servers, and its Events client.

Served at packet level on the hub's SE endpoint, next to the supplier's Price and
Messaging (``hubsim/supplier.py``), with sep's own sans-IO servers:

- Calendar: the supplier's time-of-use calendar, compiled from its tariff (seasons and
  special days included); :meth:`HubServices.publish_calendar` publishes another one
  (now or from a start time) and :meth:`HubServices.cancel_calendar` withdraws a scheduled
  one. The meter is a client: it asks for the calendar and is pushed new ones.
- Device Management: the supplier's side; the local API publishes a change of tenancy or
  supplier, Site ID, CIN, an event configuration, and asks a meter for its event
  configuration. At a change of supplier's implementation time the hub speaks for the
  new supplier (its tariff's provider id changes with the meter's).
- Keep-Alive: the trust centre's TC Keep-Alive Base and Jitter (:attr:`keep_alive`;
  ``answering = False`` makes it go quiet).
- Events client: :meth:`HubServices.read_event_log` (GetEventLog → every PublishEventLog
  of the answer) and :meth:`HubServices.clear_event_log` (ClearEventLogRequest →
  ClearEventLogResponse) — the hub is the trust centre, the partner the meter lets clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import zigpy.application
import zigpy.types as t
from zigpy.zcl import foundation

from radios.tasks import cancel_and_wait
from sep.clusters.calendar import CalendarServer
from sep.clusters.device_management import DeviceManagementServer
from sep.clusters.keep_alive import KeepAliveServer
from sep.endpoint import SeEndpoint
from sep.meter.calendar import TouCalendar, compile_calendar
from sep.meter.tariff import DEFAULT_TARIFF, Tariff
from sep.packets import serve, to_packet
from sep.zcl import events as ev
from sep.zcl.frames import SE_PROFILE, MalformedFrame, Reply, decode_header, decode_schema

LOGGER = logging.getLogger(__name__)
EVENTS = 0x0709
HUB_SERVICE_CLUSTERS = (0x0707, 0x0708, 0x0025)
ESI_DEVICE_TYPE = 0x0500


@dataclasses.dataclass
class EventLogAnswer:
    """What a GetEventLog brought back: the events (most recent first) and the counts, or
    the status of a Default Response."""

    events: list[Any]
    total_matching: int = 0
    commands: int = 0
    status: int | None = None


class HubServices:
    def __init__(self, app: zigpy.application.ControllerApplication, *, endpoint: int,
                 clock: Callable[[], float] = time.time,
                 tariff: Callable[[], Tariff | None] = lambda: None,
                 keep_alive_base: int = 10, keep_alive_jitter: int = 300,
                 provider_name: str = "Demo Energy", contact: str = "0800 000 0000",
                 tick_seconds: float = 0.5) -> None:
        self.app = app
        self.clock = clock
        self.tariff = tariff
        self.tick_seconds = tick_seconds
        # a supplier without a tariff publishes no calendar (as it publishes no prices)
        self.calendar = CalendarServer(follow=self.tariff)
        self.device_management = DeviceManagementServer(
            provider_id=(tariff() or DEFAULT_TARIFF).provider_id, provider_name=provider_name,
            contact_details=contact)
        self.keep_alive = KeepAliveServer(base_minutes=keep_alive_base,
                                          jitter_seconds=keep_alive_jitter)
        self.endpoint = SeEndpoint(endpoint, [self.calendar, self.device_management,
                                              self.keep_alive], device_type=ESI_DEVICE_TYPE)
        self.log: list[str] = []
        self.on_supplier_changed: Callable[[int], None] = lambda provider_id: None
        self._supplier_change: tuple[float, int, str, str] | None = None
        self._answers: dict[int, list[bytes]] = {}
        self._waiters: dict[int, asyncio.Event] = {}
        self._tsn = 0x10
        self._upstream = app.packet_received
        app.packet_received = self._on_packet  # type: ignore[method-assign]
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._sends: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.calendar.tick(self.clock())
        self._task = asyncio.create_task(self._run(), name="hub-services")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait([self._task], 10)
        for task in list(self._sends):
            task.cancel()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                now = self.clock()
                change = self._supplier_change
                if change is not None and change[0] <= now:
                    self._supplier_change = None
                    _, provider, name, contact = change
                    self.device_management.supplier_changed(provider, name, contact)
                    self.on_supplier_changed(provider)
                    self.note(f"supplier is now provider 0x{provider:08X}")
                for reply in self.endpoint.reports(now):
                    self._send(reply)
            except Exception:  # noqa: BLE001 - the hub keeps running
                LOGGER.exception("hub services tick failed")
            await asyncio.sleep(self.tick_seconds)

    def note(self, text: str) -> None:
        LOGGER.info("hub: %s", text)
        self.log.append(text)
        del self.log[:-50]

    def flush(self) -> None:
        for reply in self.endpoint.pushes():
            self._send(reply)

    # -- Calendar ---------------------------------------------------------------------------
    def publish_calendar(self, tariff: Tariff, *, start: float | None = None) -> TouCalendar:
        """Publish ``tariff``'s schedule as a calendar, taking over at ``start`` (now)."""
        now = self.clock()
        issued = self.calendar.new_id(now)
        cal = compile_calendar(tariff, issuer_calendar_id=issued, issuer_event_id=issued,
                               start=int(now if start is None else start))
        self.calendar.publish(cal, now)
        self.note(f"calendar {issued} {cal.name!r} published")
        self.flush()
        return cal

    def cancel_calendar(self, issuer_calendar_id: int) -> None:
        self.calendar.cancel(issuer_calendar_id, self.clock())
        self.note(f"calendar {issuer_calendar_id} cancelled")
        self.flush()

    # -- Device Management ------------------------------------------------------------------
    def change_of_tenancy(self, *, at: float | None, control: int) -> int:
        event_id = self.device_management.change_of_tenancy(self.clock(), at=at, control=control)
        self.note(f"change of tenancy {event_id} published")
        self.flush()
        return event_id

    def change_of_supplier(self, *, at: float, new_provider_id: int, name: str, contact: str,
                           control: int = 0) -> int:
        event_id = self.device_management.change_of_supplier(
            self.clock(), at=at, new_provider_id=new_provider_id, name=name, contact=contact,
            control=control)
        self._supplier_change = (at, new_provider_id, name, contact)
        self.note(f"change of supplier {event_id} published")
        self.flush()
        return event_id

    def update_site_id(self, site_id: str) -> None:
        self.device_management.update_site_id(self.clock(), site_id)
        self.flush()

    def update_cin(self, cin: str) -> None:
        self.device_management.update_cin(self.clock(), cin)
        self.flush()

    def set_event_configuration(self, *, configuration: int, control: int, argument: Any) -> None:
        self.device_management.set_event_configuration(
            self.clock(), configuration=configuration, control=control, argument=argument)
        self.flush()

    def get_event_configuration(self, event_id: int) -> None:
        self.device_management.get_event_configuration(event_id)
        self.flush()

    # -- Events client -------------------------------------------------------------------------
    def _next_tsn(self) -> int:
        self._tsn = 0x10 | ((self._tsn + 1) & 0x0F)
        return self._tsn

    async def _ask(self, nwk: int, endpoint: int, command_id: int, payload: bytes,
                   done: Callable[[list[bytes]], bool], timeout: float) -> list[bytes]:
        tsn = self._next_tsn()
        self._answers[tsn] = []
        self._waiters[tsn] = asyncio.Event()
        frame = foundation.ZCLHeader.cluster(tsn, command_id).serialize() + payload
        try:
            await self.app.send_packet(to_packet(Reply(
                dst_nwk=nwk, dst_ep=endpoint, src_ep=self.endpoint.endpoint_id,
                profile_id=SE_PROFILE, cluster_id=EVENTS, data=frame),
                int(self.app.state.node_info.nwk)))
            deadline = asyncio.get_running_loop().time() + timeout
            while not done(self._answers[tsn]):
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError(f"no complete answer to Events command {command_id}")
                self._waiters[tsn].clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._waiters[tsn].wait(), left)
            return self._answers[tsn]
        finally:
            self._answers.pop(tsn, None)
            self._waiters.pop(tsn, None)

    async def read_event_log(self, nwk: int, endpoint: int, *, log_id: int = ev.LOG_ALL,
                             full: bool = True, event_id: int = 0, start: int = 0,
                             end: int = 0xFFFFFFFF, number: int = 0, offset: int = 0,
                             timeout: float = 10.0) -> EventLogAnswer:
        """GetEventLog to a meter; ``start``/``end`` are ZCL UTC times."""
        payload = ev.request_schema(0x00)(
            event_control_log_id=(ev.CONTROL_FULL << 4 if full else 0) | log_id,
            event_id=event_id, start_time=start, end_time=end, number_of_events=number,
            event_offset=offset).serialize()

        def complete(frames: list[bytes]) -> bool:
            logs = [f for f in frames if (f[0] & 0x03) == 0x01 and f[2] == 0x01]
            if any(_is_default_response(f) for f in frames):
                return True
            return bool(logs) and len(logs) == logs[0][3 + 3]

        frames = await self._ask(nwk, endpoint, 0x00, payload, complete, timeout)
        for f in frames:
            if _is_default_response(f):
                return EventLogAnswer([], status=f[-1])
        answer = EventLogAnswer([])
        for f in sorted(frames, key=lambda f: f[3 + 2]):  # by command index
            args = decode_schema(ev.schema(0x01), f[3:])
            answer.total_matching = int(args.total_number_of_matching_events)
            answer.commands = int(args.total_commands)
            answer.events.extend(args.events)
        return answer

    async def clear_event_log(self, nwk: int, endpoint: int, log_id: int,
                              timeout: float = 10.0) -> int:
        """ClearEventLogRequest; returns the Cleared Event Logs bitmap, or raises
        PermissionError with the Default Response's status."""
        frames = await self._ask(nwk, endpoint, 0x01, bytes([log_id]), bool, timeout)
        f = frames[0]
        if _is_default_response(f) or f[2] != 0x02:
            raise PermissionError(f"ClearEventLogRequest refused: status 0x{f[-1]:02X}")
        return f[3]

    # -- packets --------------------------------------------------------------------------------
    def _on_packet(self, packet: t.ZigbeePacket) -> None:
        cluster = int(packet.cluster_id)
        data = bytes(packet.data.serialize())
        if cluster == EVENTS and len(data) >= 3:
            self._events_answer(data)
            return
        if cluster not in self.endpoint.servers:
            self._upstream(packet)
            return
        replies = serve(self.endpoint, packet, self.clock())
        if replies is None:
            self._upstream(packet)
            return
        for reply in replies:
            self._send(reply)
        self.flush()

    def _events_answer(self, data: bytes) -> None:
        try:
            header, _ = decode_header(data)
        except MalformedFrame:
            return
        tsn = int(header.tsn)
        if tsn in self._answers:
            self._answers[tsn].append(data)
            self._waiters[tsn].set()

    def _send(self, reply: Reply) -> None:
        task = asyncio.get_running_loop().create_task(self._send_now(reply))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send_now(self, reply: Reply) -> None:
        try:
            await self.app.send_packet(to_packet(reply, int(self.app.state.node_info.nwk)))
        except Exception as exc:  # noqa: BLE001 - an unreachable node hears it next time
            LOGGER.info("hub frame to 0x%04X not delivered: %s", reply.dst_nwk, exc)


def _is_default_response(frame: bytes) -> bool:
    return frame[0] & 0x03 == 0 and len(frame) >= 5 and frame[2] == 0x0B
