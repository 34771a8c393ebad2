"""Metering mirrors on the comms hub: where a sleepy gas meter's readings live for the HAN.

SE 1.4 D.3 (mirroring): a battery-operated metering device (BOMD) asks a mirror-capable
device for a mirror with RequestMirror; the answer (RequestMirrorResponse) names a new
endpoint whose Metering server stands for the BOMD; the BOMD configures it
(ConfigureMirror) and pushes its attributes to it with Report Attributes whenever it is
awake. Displays read the mirror as they would read a meter, at any time.

:class:`MirrorHost` serves this at packet level on the hub's zigpy application (zigpy does
not dispatch to a node's own endpoints): RequestMirror / RemoveMirror arriving at the
hub's SE endpoint, and everything addressed to a mirror endpoint. A mirror is sep's own
sans-IO endpoint: a :class:`MirrorMetering` server holding what the BOMD reported (its
MeteringDeviceType shown as the mirrored type, 127 + the BOMD's), and, when the hub has
one, the gas Price server of the Gas Proxy Function (the conversion factor and calorific
value a display needs to show gas in kWh). Only the BOMD that owns a mirror may configure
it or report to it (NOT_AUTHORIZED otherwise); a BOMD asking again gets the same mirror.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

import zigpy.application
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.zcl import foundation

from radios.tasks import cancel_and_wait
from sep.clusters.base import ClusterServer
from sep.endpoint import SeEndpoint
from sep.packets import serve, to_packet
from sep.zcl.frames import (
    MalformedFrame,
    Reply,
    Request,
    Status,
    build_frame,
    decode_header,
    decode_schema,
    default_response,
    response_header,
)
from sep.zcl.metering import Metering

LOGGER = logging.getLogger(__name__)

SE_PROFILE = 0x0109
METERING = 0x0702
REQUEST_MIRROR = 0x01
REMOVE_MIRROR = 0x02
CONFIGURE_MIRROR = 0x08
NO_MIRROR = 0xFFFF
FIRST_MIRROR_ENDPOINT = 0x40  # after the hub's own endpoints (the ESI's stays first)
MIRRORED = 127  # MeteringDeviceType of a mirror: 127 + the BOMD's type (128 mirrored gas)


class MirrorMetering(ClusterServer):
    """The Metering server of a mirror: the BOMD's reported attributes, read-only."""

    cluster = Metering
    reportable = frozenset({0x0000, 0x0200})

    def __init__(self) -> None:
        super().__init__()
        self.updated: float | None = None

    def take_report(self, records: list[foundation.Attribute], now: float) -> int:
        """Keep the reported values (of known attributes, in their own types)."""
        taken = 0
        for rec in records:
            attr_id = int(rec.attrid)
            d = self.defs.get(attr_id)
            if d is None or int(rec.value.type) != int(d.zcl_type):
                continue
            value = int(rec.value.value) if not isinstance(rec.value.value, bytes) else (
                rec.value.value)
            if attr_id == 0x0306 and isinstance(value, int) and value < MIRRORED:
                value = MIRRORED + value  # a mirror says it is one
            self.values[attr_id] = value
            taken += 1
        self.updated = now
        return taken


@dataclasses.dataclass
class Mirror:
    endpoint: int
    owner_nwk: int
    owner: str  # the BOMD's IEEE (or NWK when the hub does not know it yet)
    metering: MirrorMetering
    se: SeEndpoint
    reporting_interval: int | None = None
    reports: int = 0


def mirror_descriptors(max_mirrors: int = 4, *, price: bool = False
                       ) -> list[zdo_t.SimpleDescriptor]:
    """Every mirror endpoint a hub may serve, for a radio that takes endpoints only before
    its network is up (an EZSP stick: ``addEndpoint``): registered at start, served once a
    battery meter asks for its mirror."""
    clusters = [METERING] + ([0x0700] if price else [])
    return [zdo_t.SimpleDescriptor(endpoint=e, profile=0x0109, device_type=0x0501,
                                   device_version=0, input_clusters=clusters, output_clusters=[])
            for e in range(FIRST_MIRROR_ENDPOINT, FIRST_MIRROR_ENDPOINT + max_mirrors)]


class MirrorHost:
    def __init__(self, app: zigpy.application.ControllerApplication, *, endpoint: int,
                 clock: Callable[[], float] = time.time, price: ClusterServer | None = None,
                 max_mirrors: int = 4, tick_seconds: float = 0.5,
                 preregistered: bool = False) -> None:
        self.app = app
        self.preregistered = preregistered  # the radio has every mirror_descriptors() already
        self.endpoint = endpoint
        self.clock = clock
        self.price = price
        self.max_mirrors = max_mirrors
        self.tick_seconds = tick_seconds
        self.mirrors: dict[str, Mirror] = {}
        self.log: list[str] = []
        self._upstream = app.packet_received
        app.packet_received = self._on_packet  # type: ignore[method-assign]
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mirrors")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], 10)
        for task in list(self._sends):
            task.cancel()

    async def _run(self) -> None:
        while True:
            try:
                for mirror in list(self.mirrors.values()):
                    for reply in mirror.se.reports(self.clock()):
                        self._send(reply)
            except Exception:  # noqa: BLE001 - the hub keeps running
                LOGGER.exception("mirror tick failed")
            await asyncio.sleep(self.tick_seconds)

    def _note(self, text: str) -> None:
        LOGGER.info("mirror: %s", text)
        self.log.append(text)
        del self.log[:-30]

    def by_endpoint(self, endpoint: int) -> Mirror | None:
        return next((m for m in self.mirrors.values() if m.endpoint == endpoint), None)

    # -- packets --------------------------------------------------------------------------------
    def _on_packet(self, packet: t.ZigbeePacket) -> None:
        dst_ep = int(packet.dst_ep or 0)
        mirror = self.by_endpoint(dst_ep)
        if mirror is not None:
            replies = serve(mirror.se, packet, self.clock())
            for reply in replies or []:
                self._send(reply)
            return
        if (dst_ep == self.endpoint and int(packet.cluster_id) == METERING
                and int(packet.profile_id) == SE_PROFILE and packet.src is not None
                and packet.src.addr_mode == t.AddrMode.NWK):
            data = bytes(packet.data.serialize())
            try:
                hdr, _payload = decode_header(data)
            except MalformedFrame:
                return
            fc = hdr.frame_control
            if fc.direction == foundation.Direction.Server_to_Client and not fc.is_general:
                self._bomd_command(int(packet.src.address), int(packet.src_ep or 0), hdr, data)
                return
        self._upstream(packet)

    def _bomd_command(self, nwk: int, src_ep: int, hdr: foundation.ZCLHeader,
                      data: bytes) -> None:
        req = Request(src_nwk=nwk, src_ep=src_ep, dst_ep=self.endpoint, profile_id=SE_PROFILE,
                      cluster_id=METERING, header=hdr, payload=data[len(hdr.serialize()):])
        command = int(hdr.command_id)
        if command == REQUEST_MIRROR:
            endpoint = self._allocate(nwk)
            payload = t.uint16_t(endpoint).serialize()
            self._reply(nwk, src_ep, build_frame(
                response_header(req, REQUEST_MIRROR, general=False), payload))
        elif command == REMOVE_MIRROR:
            removed = self._remove(nwk)
            self._reply(nwk, src_ep, build_frame(
                response_header(req, REMOVE_MIRROR, general=False),
                t.uint16_t(removed).serialize()))
        elif not req.ddr:
            self._reply(nwk, src_ep, default_response(req, Status.UNSUP_CLUSTER_COMMAND))

    def _owner_of(self, nwk: int) -> str:
        try:
            return str(self.app.get_device(nwk=t.NWK(nwk)).ieee)
        except KeyError:
            return f"0x{nwk:04X}"

    def _allocate(self, nwk: int) -> int:
        owner = self._owner_of(nwk)
        mirror = self.mirrors.get(owner)
        if mirror is not None:
            mirror.owner_nwk = nwk
            self._note(f"{owner} asked again: mirror at endpoint {mirror.endpoint}")
            return mirror.endpoint
        if len(self.mirrors) >= self.max_mirrors:
            self._note(f"no mirror left for {owner}")
            return NO_MIRROR
        used = {m.endpoint for m in self.mirrors.values()}
        endpoint = next(e for e in range(FIRST_MIRROR_ENDPOINT, 241) if e not in used)
        metering = MirrorMetering()
        servers: list[ClusterServer] = [metering]
        if self.price is not None:
            servers.append(self.price)
        se = SeEndpoint(endpoint, servers, device_type=0x0501)
        mirror = Mirror(endpoint, nwk, owner, metering, se)
        se.client_handlers[METERING] = lambda req, now, m=mirror: self._from_bomd(m, req, now)
        self.mirrors[owner] = mirror
        self._add_endpoint(se.descriptor())
        self._note(f"mirror for {owner} at endpoint {endpoint}")
        return endpoint

    def _add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        # The hub's radio answers ZDO (Simple_Desc, Match_Desc) from its endpoint list.
        if self.preregistered:
            return
        task = asyncio.get_running_loop().create_task(self.app.add_endpoint(descriptor))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def _remove(self, nwk: int) -> int:
        owner = self._owner_of(nwk)
        mirror = self.mirrors.pop(owner, None)
        if mirror is None:
            return NO_MIRROR
        self._note(f"mirror of {owner} at endpoint {mirror.endpoint} removed")
        return mirror.endpoint

    def _from_bomd(self, mirror: Mirror, req: Request, now: float) -> list[bytes]:
        """A server→client frame at a mirror: only its BOMD configures and reports."""
        if req.src_nwk != mirror.owner_nwk:
            return [] if req.ddr else [default_response(req, Status.NOT_AUTHORIZED)]
        if req.is_general:
            if req.command_id != foundation.GeneralCommand.Report_Attributes:
                return [] if req.ddr else [default_response(req, Status.UNSUP_GENERAL_COMMAND)]
            try:
                records = decode_schema(t.List[foundation.Attribute], req.payload)
            except MalformedFrame:
                return [default_response(req, Status.MALFORMED_COMMAND)]
            mirror.metering.take_report(records, now)
            mirror.reports += 1
            return []
        if req.command_id == CONFIGURE_MIRROR:
            try:
                args = decode_schema(Metering.client_commands[CONFIGURE_MIRROR].schema,
                                     req.payload)
            except MalformedFrame:
                return [default_response(req, Status.MALFORMED_COMMAND)]
            mirror.reporting_interval = int(args.reporting_interval)
            self._note(f"mirror {mirror.endpoint} configured: every "
                       f"{mirror.reporting_interval} s")
            return [] if req.ddr else [default_response(req, Status.SUCCESS)]
        return [] if req.ddr else [default_response(req, Status.UNSUP_CLUSTER_COMMAND)]

    # -- sending -------------------------------------------------------------------------------
    def _reply(self, nwk: int, ep: int, frame: bytes) -> None:
        self._send(Reply(dst_nwk=nwk, dst_ep=ep, src_ep=self.endpoint, profile_id=SE_PROFILE,
                         cluster_id=METERING, data=frame))

    def _send(self, reply: Reply) -> None:
        task = asyncio.get_running_loop().create_task(self._send_now(reply))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send_now(self, reply: Reply) -> None:
        try:
            await self.app.send_packet(to_packet(reply, int(self.app.state.node_info.nwk)))
        except Exception as exc:  # noqa: BLE001 - a sleeping BOMD hears it next time
            LOGGER.info("mirror frame to 0x%04X not delivered: %s", reply.dst_nwk, exc)

