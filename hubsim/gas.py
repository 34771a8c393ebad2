"""A battery gas meter (GSME): a sleepy Metering server that reaches the HAN through a mirror.

It sleeps (radio off: detached from the air) and wakes every :data:`WAKE_INTERVAL`
seconds of simulated time. Awake, it finds the comms hub's Metering client (ZDO Match_Desc
sent to the trust centre), asks it for a mirror (RequestMirror, Metering command 0x01
server→client) until a RequestMirrorResponse names the mirror's endpoint, configures it
once (ConfigureMirror: reporting interval, no notification scheme), and pushes its
attributes to it with Report Attributes — the formatting set and device type the first
time, then the summation and status — then sleeps again. The hub serves the mirror to the
HAN (``hubsim/mirror.py``), so displays read gas without ever waking the meter.

The gas drawn is a pure function of time (:class:`GasLoad`, litres per 10-minute slot), so
a test can recompute the register independently. On the virtual air the node is a zigpy
node like the IHD; its sleepiness is modelled here (the radio is off between wakes), as
the air's end-device roles belong to the radio layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import zigpy.application
import zigpy.config as conf
import zigpy.exceptions
import zigpy.types as t
import zigpy.zdo
import zigpy.zdo.types as zdo_t
from zigpy.zcl import foundation

from hubsim import ke_node
from radios.air import VirtualAir
from radios.tasks import cancel_and_wait
from radios.virtual import VirtualControllerApplication, virtual_config
from sep.packets import to_packet
from sep.security.certs import Credentials
from sep.zcl.frames import MalformedFrame, Reply, decode_header, server_frame
from sep.zcl.metering import Metering
from sep.zcl.security import requires_aps_security

LOGGER = logging.getLogger(__name__)
GAS_IEEE = "00:0d:6f:00:00:00:6a:51"

SE_PROFILE = 0x0109
METERING = 0x0702
GAS_ENDPOINT = 1
WAKE_INTERVAL = 1800  # seconds of simulated time between wakes (SMETS2 gas: half-hourly)
SLOT = 600  # the gas flow is constant within each 10-minute slot
REQUEST_MIRROR = 0x01  # server→client; RequestMirrorResponse is client→server 0x01
CONFIGURE_MIRROR = 0x08
NO_MIRROR = 0xFFFF  # RequestMirrorResponse: the hub has no mirror to give
GAS_METERING_DEVICE_TYPE = 0x01
UNIT_M3 = 0x01
DIVISOR = 1000  # the register counts litres: m³ with three decimals
SUMMATION_FORMATTING = 0x80 | (5 << 3) | 3  # up to 99,999.999 m³


class GasLoad:
    """Litres of gas per hour as a pure function of time: a pilot, morning and evening
    heating, and cooking at noon (UTC hours)."""

    def litres_per_hour(self, t: float) -> int:
        hour = int(t) % 86400 // 3600
        flow = 12  # the boiler's pilot and hot water standby
        if hour in (6, 7, 8):
            flow += 900  # heating up in the morning
        elif hour in (17, 18, 19, 20, 21):
            flow += 650
        elif hour == 12:
            flow += 150
        return flow

    def litres(self, t0: float, t1: float) -> int:
        """Whole litres drawn between ``t0`` and ``t1`` (exact: a sum over whole slots and
        the parts of slots, in litre-seconds / 3600, rounded down at the end)."""
        total = 0  # litre-seconds per hour
        t = int(t0)
        end = int(t1)
        while t < end:
            nxt = min(end, (t // SLOT + 1) * SLOT)
            total += self.litres_per_hour(t) * (nxt - t)
            t = nxt
        return total // 3600


class GasMeter:
    def __init__(self, *, ieee: str = GAS_IEEE, air: VirtualAir | None = None,
                 device: str | None = None, clock: Callable[[], float] = time.time,
                 initial_litres: int = 1_234_567, wake_interval: int = WAKE_INTERVAL,
                 awake_timeout: float = 2.0, install_code: bytes | None = None,
                 state: str | None = None, credentials: Sequence[Credentials] = ()) -> None:
        # joins with its install code (the development network's key without one); its
        # Metering frames travel APS-encrypted as SE requires
        cfg = virtual_config(ieee, role="router", air=air, path=device or "virtual://default",
                             install_code=install_code, state=state,
                             aps_policy=requires_aps_security,
                             **ke_node.radio_security(credentials))
        cfg[conf.CONF_ADDITIONAL_ENDPOINTS] = [zdo_t.SimpleDescriptor(
            endpoint=GAS_ENDPOINT, profile=SE_PROFILE, device_type=0x0501, device_version=0,
            input_clusters=ke_node.with_ke([0x0000, METERING], credentials),
            output_clusters=ke_node.with_ke([0x000A], credentials)).as_dict()]
        self.app: zigpy.application.ControllerApplication = VirtualControllerApplication(cfg)
        self.clock = clock
        self.load = GasLoad()
        self.wake_interval = wake_interval
        self.awake_timeout = awake_timeout
        self.start_t: int | None = None
        self.initial_litres = initial_litres
        self.hub: tuple[int, int] | None = None  # the hub's Metering client (nwk, endpoint)
        self.mirror: int | None = None  # the mirror's endpoint on the hub
        self.configured = False
        self.full_report_sent = False
        self.wakes = 0
        self.reports_sent = 0
        self.log: list[str] = []
        self._tsn = 0
        self._awake = False
        self._answers: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self._matches: asyncio.Queue[tuple[int, list[int]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._upstream = self.app.packet_received
        self.app.packet_received = self._on_packet  # type: ignore[method-assign]
        # Key Establishment with the trust centre (with credentials), on its first wake
        self.ke = ke_node.attach(self.app, credentials, endpoint=GAS_ENDPOINT, ieee=ieee)

    # -- the register --------------------------------------------------------------------
    def litres(self, now: float | None = None) -> int:
        """CurrentSummationDelivered at ``now``: litres since the meter started, plus its
        register at start."""
        t = self.clock() if now is None else now
        start = self.start_t if self.start_t is not None else int(t)
        return self.initial_litres + self.load.litres(start, t)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await self.app.startup()
        if self.ke is not None:
            self.ke.start()
        self._awake = True
        self.start_t = int(self.clock())
        self._task = asyncio.create_task(self._run(), name="gas-meter")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], 10)
        await self._wake_radio()
        if self.ke is not None:
            await self.ke.stop()
        await self.app.shutdown()

    async def _sleep_radio(self) -> None:
        """Radio off: off the air, the network and keys kept (a battery device's sleep)."""
        if self._awake:
            self.app.shell.radio_off()  # type: ignore[attr-defined]
            self._awake = False

    async def _wake_radio(self) -> None:
        if not self._awake:
            self.app.shell.radio_on()  # type: ignore[attr-defined]
            self._awake = True

    async def _run(self) -> None:
        next_wake = self.clock()
        while True:
            while self.clock() < next_wake:
                await asyncio.sleep(0.1)
            try:
                await self._wake_radio()
                await self.wake()
            except Exception as exc:  # noqa: BLE001 - a battery meter tries again next wake
                LOGGER.info("gas meter: wake failed: %r", exc)
            finally:
                with contextlib.suppress(Exception):
                    await self._sleep_radio()
            next_wake += self.wake_interval
            if next_wake < self.clock():  # slept through several (a slow machine)
                next_wake = self.clock() + self.wake_interval

    async def wake(self) -> None:
        """One wake: find the hub, have a mirror, configure it, push the registers."""
        self.wakes += 1
        if not await ke_node.key_with(self.ke, ke_node.trust_centre(self.app), 0x0000,
                                      self._note, "hub", timeout=30.0):
            return  # SE frames need the key: next wake
        if self.hub is None:
            self.hub = await self._find_hub()
        if self.mirror is None:
            self.mirror = await self._request_mirror()
            if self.mirror is None:
                return
        if not self.configured:
            self.configured = await self._configure_mirror()
        await self._report()

    def _note(self, text: str) -> None:
        LOGGER.info("gas meter: %s", text)
        self.log.append(text)
        del self.log[:-30]

    # -- frames ---------------------------------------------------------------------------------
    def _next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) & 0xFF
        return self._tsn

    async def _send(self, dst: tuple[int, int], frame: bytes) -> None:
        reply = Reply(dst_nwk=dst[0], dst_ep=dst[1], src_ep=GAS_ENDPOINT, profile_id=SE_PROFILE,
                      cluster_id=METERING, data=frame)
        await self.app.send_packet(to_packet(reply, int(self.app.state.node_info.nwk)))

    def _on_packet(self, packet: t.ZigbeePacket) -> None:
        if packet.profile_id == 0 and packet.cluster_id == zdo_t.ZDOCmd.Match_Desc_rsp:
            with contextlib.suppress(ValueError, KeyError, IndexError):
                data = packet.data.serialize()
                args, _ = t.deserialize(data[1:], zdo_t.CLUSTERS[zdo_t.ZDOCmd.Match_Desc_rsp][1])
                status, nwk, matches = args
                if status == zdo_t.Status.SUCCESS and matches:
                    self._matches.put_nowait((int(nwk), [int(m) for m in matches]))
            return
        if int(packet.cluster_id) == METERING and int(packet.dst_ep or 0) == GAS_ENDPOINT:
            data = bytes(packet.data.serialize())
            try:
                hdr, payload = decode_header(data)
            except MalformedFrame:
                return
            if hdr.frame_control.direction == foundation.Direction.Client_to_Server:
                self._answers.put_nowait((int(hdr.command_id) | (
                    0x100 if hdr.frame_control.is_general else 0), payload))
            return
        self._upstream(packet)

    async def _find_hub(self) -> tuple[int, int]:
        """ZDO Match_Desc to the trust centre for a Metering client (the hub's ESI)."""
        while not self._matches.empty():
            self._matches.get_nowait()
        await zigpy.zdo.broadcast(
            self.app, zdo_t.ZDOCmd.Match_Desc_req, 0, 0, t.NWK(0x0000), SE_PROFILE, [],
            [METERING], broadcast_address=t.BroadcastAddress.RX_ON_WHEN_IDLE)
        nwk, eps = await asyncio.wait_for(self._matches.get(), self.awake_timeout)
        self._note(f"hub's Metering client at 0x{nwk:04X} endpoint {eps[0]}")
        return nwk, eps[0]

    async def _request_mirror(self) -> int | None:
        assert self.hub is not None
        while not self._answers.empty():
            self._answers.get_nowait()
        await self._send(self.hub, server_frame(self._next_tsn(), REQUEST_MIRROR, b"",
                                                general=False))
        deadline = asyncio.get_running_loop().time() + self.awake_timeout
        while True:
            timeout = deadline - asyncio.get_running_loop().time()
            command, payload = await asyncio.wait_for(self._answers.get(), max(0.0, timeout))
            if command == REQUEST_MIRROR and len(payload) >= 2:
                endpoint = int.from_bytes(payload[:2], "little")
                if endpoint == NO_MIRROR or not 1 <= endpoint <= 240:
                    self._note("the hub has no mirror for us")
                    return None
                self._note(f"mirror at hub endpoint {endpoint}")
                return endpoint

    async def _configure_mirror(self) -> bool:
        assert self.hub is not None and self.mirror is not None
        schema = Metering.client_commands[CONFIGURE_MIRROR].schema
        payload = schema(issuer_event_id=int(self.clock()) - 946_684_800,
                         reporting_interval=self.wake_interval,
                         mirror_notification_reporting=t.Bool.false,
                         notification_scheme=0).serialize()
        await self._send((self.hub[0], self.mirror),
                         server_frame(self._next_tsn(), CONFIGURE_MIRROR, payload, general=False))
        self._note(f"mirror configured: reports every {self.wake_interval} s")
        return True

    def attributes(self, now: float, *, full: bool) -> list[tuple[int, Any]]:
        """The attributes pushed to the mirror (all of them the first time)."""
        out: list[tuple[int, Any]] = [(0x0000, self.litres(now)), (0x0200, 0)]
        if full:
            out += [(0x0300, UNIT_M3), (0x0301, 1), (0x0302, DIVISOR),
                    (0x0303, SUMMATION_FORMATTING), (0x0306, GAS_METERING_DEVICE_TYPE)]
        return out

    async def _report(self) -> None:
        assert self.hub is not None and self.mirror is not None
        defs = Metering.attributes
        records = b""
        for attr_id, value in self.attributes(self.clock(), full=not self.full_report_sent):
            d = defs[attr_id]
            records += foundation.Attribute(attrid=attr_id, value=foundation.TypeValue(
                type=d.zcl_type, value=d.type(value))).serialize()
        frame = server_frame(self._next_tsn(), foundation.GeneralCommand.Report_Attributes,
                             records, general=True)
        try:
            await self._send((self.hub[0], self.mirror), frame)
        except zigpy.exceptions.DeliveryError as exc:
            self._note(f"report not delivered: {exc}")
            return
        self.full_report_sent = True
        self.reports_sent += 1
        self._note(f"reported {self.litres() / DIVISOR:.3f} m³ to the mirror")
