"""The consumer access device (CAD): a HAN node that reads the home's meters for a dashboard.

A CAD joins the home area network with its own install code (the trust centre holds it),
runs Key Establishment with the trust centre and with each meter it reads, finds the
meters by ZDO (Match_Desc for a Metering server, then Simple_Desc: Match_Desc matches
client clusters too, so only an endpoint whose *input* clusters hold Metering counts),
tells them apart by MeteringDeviceType (0x0306: an electricity meter is read directly; a
battery gas meter only through its mirror, type 127 + 1, on the comms hub), binds the
meter's Metering to itself, configures reporting and reads the registers. Every value it
holds came over the air; it fills the same :class:`~sep.bridge.payloads.MeterState` as the
meter's own bridge (``source="cad"``), and one :class:`~sep.bridge.client.MqttBridge` per
meter publishes it with the same state JSON and Home Assistant discovery.

The module has two parts: sans-IO pieces (frames to send, frames received → values,
:class:`MeterTrack` → ``MeterState``) and :class:`ConsumerAccessDevice`, the asyncio shell on
a zigpy application (the virtual radio; a stick once it can join, issue 14).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.smartenergy import Metering

from radios.tasks import cancel_and_wait
from sep.bridge.payloads import MeterState

LOGGER = logging.getLogger(__name__)

SE_PROFILE = 0x0109
CAD_DEVICE_TYPE = 0x0507  # SE 1.4: Physical Device / Consumer Access Device... (range 0x05xx)
METERING = 0x0702
BASIC = 0x0000
KE_CLUSTER = 0x0800
ELECTRICITY = 0
MIRRORED = 127  # a mirror's MeteringDeviceType: 127 + the mirrored meter's type
GAS_MIRROR = MIRRORED + 1
SOURCE = "cad"

# Metering attributes the CAD reads (SE 1.4 D.3.2.2)
FORMATTING = [0x0300, 0x0301, 0x0302, 0x0306]  # unit, multiplier, divisor, device type
REGISTERS = [0x0000, 0x0001, 0x0400, 0x0200, 0x0014]  # summations, demand, status, supply
PERIODS = [0x0401, 0x0402, 0x0430, 0x0440]  # today, today received, this week, this month
MAX_TIERS = 15
TIER_ATTRS = [0x0100 + n for n in range(2 * MAX_TIERS)]  # CurrentTierN Summation (Del/Rec)
MIRROR_ATTRS = [0x0000, 0x0200, 0x0300, 0x0301, 0x0302, 0x0306]  # what a mirror holds
REPORTED = {0x0000: 1, 0x0400: 10}  # attribute → reportable change (Wh, W)


# -- sans-IO: frames --------------------------------------------------------------------------

def zcl_read(tsn: int, attr_ids: Sequence[int]) -> bytes:
    """A Read Attributes request (client → server)."""
    hdr = foundation.ZCLHeader.general(tsn, foundation.GeneralCommand.Read_Attributes)
    return hdr.serialize() + b"".join(t.uint16_t(a).serialize() for a in attr_ids)


def zcl_configure_reporting(tsn: int, min_interval: int, max_interval: int,
                            changes: dict[int, int] = REPORTED) -> bytes:
    """Configure Reporting for Metering attributes (their ZCL types from zigpy's table)."""
    defs = {int(a.id): a for a in Metering.attributes.values()}
    records = []
    for attr_id, change in changes.items():
        rec = foundation.AttributeReportingConfig()
        rec.direction = foundation.ReportingDirection.SendReports
        rec.attrid = t.uint16_t(attr_id)
        rec.datatype = defs[attr_id].zcl_type
        rec.min_interval = t.uint16_t(min_interval)
        rec.max_interval = t.uint16_t(max_interval)
        rec.reportable_change = defs[attr_id].type(change)
        records.append(rec)
    hdr = foundation.ZCLHeader.general(tsn, foundation.GeneralCommand.Configure_Reporting)
    return hdr.serialize() + b"".join(r.serialize() for r in records)


def zcl_values(data: bytes) -> tuple[foundation.ZCLHeader, dict[int, Any] | None]:
    """The attribute values a Read Attributes Response or a Report Attributes carries (by
    id; attributes read with an error status are left out); None for other frames.
    Raises ValueError for a frame that does not parse."""
    hdr, rest = foundation.ZCLHeader.deserialize(data)
    if not hdr.frame_control.is_general:
        return hdr, None
    values: dict[int, Any] = {}
    if hdr.command_id == foundation.GeneralCommand.Read_Attributes_rsp:
        records, _ = t.List[foundation.ReadAttributeRecord].deserialize(rest)
        for rec in records:
            if rec.status == foundation.Status.SUCCESS:
                values[int(rec.attrid)] = rec.value.value
        return hdr, values
    if hdr.command_id == foundation.GeneralCommand.Report_Attributes:
        reports, _ = t.List[foundation.Attribute].deserialize(rest)
        for rec in reports:
            values[int(rec.attrid)] = rec.value.value
        return hdr, values
    return hdr, None


def zdo_frame(tsn: int, command: zdo_t.ZDOCmd, *args: Any) -> bytes:
    schema = zdo_t.CLUSTERS[command][1]
    return bytes([tsn & 0xFF]) + b"".join(
        typ(value).serialize() for typ, value in zip(schema, args, strict=True))


def zdo_answer(command: int, data: bytes) -> tuple[int, list[Any]]:
    """(tsn, fields) of a ZDO response; ValueError when it does not parse."""
    if not data:
        raise ValueError("empty ZDO frame")
    try:
        fields, _ = t.deserialize(data[1:], zdo_t.CLUSTERS[command][1])
    except (KeyError, IndexError) as exc:
        raise ValueError(str(exc)) from None
    return data[0], list(fields)


# -- sans-IO: what the CAD knows of a meter -------------------------------------------------------

@dataclasses.dataclass
class MeterTrack:
    """One meter as read over the air: where it is and the attribute values it sent."""

    ieee: str  # the meter's (for a mirror: the node serving it)
    nwk: int
    endpoint: int
    device_type: int | None = None
    values: dict[int, int] = dataclasses.field(default_factory=dict)
    updated: float | None = None  # wall time of the last value
    changes: int = 0  # values that changed since the start
    manufacturer: str | None = None  # Basic, as the meter says
    model: str | None = None

    @property
    def mirror(self) -> bool:
        return self.device_type is not None and self.device_type >= MIRRORED

    @property
    def node(self) -> str:
        """The identity published: the meter's IEEE; a mirror's node and endpoint."""
        return self.ieee if not self.mirror else f"{self.ieee}_ep{self.endpoint}"

    def apply(self, values: dict[int, Any], now: float) -> bool:
        """Take values from a read or a report; whether one changed."""
        changed = False
        for attr_id, value in values.items():
            if isinstance(value, bytes | str):
                continue
            try:
                number = int(value)
            except (TypeError, ValueError):
                continue
            if self.values.get(attr_id) != number:
                self.values[attr_id] = number
                changed = True
        if changed:
            self.changes += 1
        self.updated = now
        if 0x0306 in values:
            self.device_type = self.values.get(0x0306)
        return changed

    def ready(self) -> bool:
        """Enough to publish: the summation and how to scale it."""
        v = self.values
        return 0x0000 in v and bool(v.get(0x0302)) and 0x0301 in v

    def tiers(self) -> tuple[list[int], list[int]]:
        delivered, received = [], []
        for n in range(MAX_TIERS):
            if 0x0100 + 2 * n not in self.values:
                break
            delivered.append(self.values[0x0100 + 2 * n])
            received.append(self.values.get(0x0101 + 2 * n, 0))
        return delivered, received

    def state(self) -> MeterState:
        """The state document's values, exactly as the meter sent them (raw registers with
        the meter's own multiplier, divisor and unit)."""
        v = self.values
        delivered, received = self.tiers()
        return MeterState(
            ieee=self.node, timestamp=self.updated or time.time(),
            summation_delivered=v.get(0x0000, 0), summation_received=v.get(0x0001, 0),
            demand=v.get(0x0400, 0), multiplier=v.get(0x0301, 1), divisor=v.get(0x0302, 1),
            unit=v.get(0x0300, 0), tiers_delivered=delivered, tiers_received=received,
            day_delivered=v.get(0x0401, 0), week_delivered=v.get(0x0430, 0),
            month_delivered=v.get(0x0440, 0), day_received=v.get(0x0402, 0),
            meter_status=v.get(0x0200, 0), supply_status=v.get(0x0014, 2), source=SOURCE)


def meter_kind(device_type: int | None) -> str | None:
    """What the CAD does with a Metering server of this MeteringDeviceType: ``"meter"``
    (read directly: electricity), ``"mirror"`` (a gas meter's mirror), None (skip: a battery
    meter is read through its mirror; an unknown type)."""
    if device_type == ELECTRICITY:
        return "meter"
    if device_type == GAS_MIRROR:
        return "mirror"
    return None


# -- the asyncio shell ----------------------------------------------------------------------------

class ConsumerAccessDevice:
    """The CAD on a zigpy application: finds, keys with, binds and reads the meters, and
    hands each meter's state to ``on_state`` (the MQTT bridges)."""

    def __init__(self, app: Any, *, ieee: str, ke: Any = None, endpoint: int = 1,
                 report_min: int = 1, report_max: int = 30, rescan: float = 30.0,
                 on_state: Callable[[MeterState], Any] | None = None,
                 note: Callable[[str], Any] | None = None) -> None:
        self.app = app
        self.ieee = ieee
        self.ke = ke
        self.endpoint = endpoint
        self.report_min, self.report_max = report_min, report_max
        self.rescan = rescan
        self.on_state = on_state
        self.note = note or (lambda text: LOGGER.info("CAD: %s", text))
        self.meters: dict[tuple[int, int], MeterTrack] = {}  # (nwk, endpoint) → meter
        self.skipped: set[tuple[int, int]] = set()
        self._answers: dict[tuple[int, int, int], asyncio.Future[bytes]] = {}
        self._matches: asyncio.Queue[tuple[int, list[int], t.EUI64 | None]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._upstream = app.packet_received
        app.packet_received = self._on_packet

    @staticmethod
    def descriptor(credentials: bool) -> zdo_t.SimpleDescriptor:
        """The CAD's SE endpoint: Basic and Identify served; Metering, Price and Time used."""
        ke = [KE_CLUSTER] if credentials else []
        return zdo_t.SimpleDescriptor(
            endpoint=1, profile=SE_PROFILE, device_type=CAD_DEVICE_TYPE, device_version=0,
            input_clusters=[0x0000, 0x0003, *ke], output_clusters=[0x000A, METERING, *ke])

    # -- packets in -------------------------------------------------------------------------
    def _on_packet(self, packet: t.ZigbeePacket) -> None:
        try:
            if self._take(packet):
                return
        except Exception:  # noqa: BLE001 - a strange frame must not stop the CAD
            LOGGER.debug("CAD could not take a frame", exc_info=True)
        self._upstream(packet)

    def _take(self, packet: t.ZigbeePacket) -> bool:
        src = packet.src
        if src is None or src.addr_mode != t.AddrMode.NWK:
            return False
        nwk = int(src.address)
        data = bytes(packet.data.serialize())
        if int(packet.profile_id) == 0:
            cluster = int(packet.cluster_id)
            if cluster == zdo_t.ZDOCmd.Match_Desc_rsp:
                _tsn, (status, of, matches) = zdo_answer(cluster, data)
                if status == zdo_t.Status.SUCCESS and matches:
                    sender = getattr(packet, "nwk_src_ieee", None)
                    self._matches.put_nowait((int(of), [int(m) for m in matches],
                                              sender if int(of) == nwk else None))
                # Key Establishment saw it first; zigpy would go and interview the sender
                # (a coordinator's interview stalls): not passed on
                return True
            fut = self._answers.get((nwk, cluster, data[0] if data else -1))
            if fut is not None and not fut.done():
                fut.set_result(data)
                return True
            return False
        cluster = int(packet.cluster_id)
        if int(packet.profile_id) != SE_PROFILE or cluster not in (METERING, BASIC):
            return False
        hdr, values = zcl_values(data)
        fut = self._answers.get((nwk, cluster, int(hdr.tsn)))
        if fut is not None and not fut.done() and \
                hdr.frame_control.direction == foundation.Direction.Server_to_Client:
            fut.set_result(data)
            return True
        meter = self.meters.get((nwk, int(packet.src_ep or 0)))
        if meter is not None and values is not None and cluster == METERING \
                and hdr.command_id == foundation.GeneralCommand.Report_Attributes:
            self._update(meter, values)
            return True
        return False

    def _update(self, meter: MeterTrack, values: dict[int, Any]) -> None:
        if meter.apply(values, time.time()) and meter.ready() and self.on_state is not None:
            self.on_state(meter.state())

    # -- requests out ------------------------------------------------------------------------
    async def _request(self, nwk: int, dst_ep: int, profile: int, cluster: int, tsn: int,
                       frame: bytes, answer_cluster: int, timeout: float) -> bytes:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        key = (nwk, answer_cluster, tsn)
        self._answers[key] = fut
        try:
            await self.app.send_packet(t.ZigbeePacket(
                src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK,
                                      address=self.app.state.node_info.nwk),
                src_ep=self.endpoint if profile else 0,
                dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(nwk)),
                dst_ep=dst_ep, tsn=tsn, profile_id=profile, cluster_id=cluster,
                data=t.SerializableBytes(frame), tx_options=t.TransmitOptions.ACK, radius=30))
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._answers.pop(key, None)

    async def zdo(self, nwk: int, command: zdo_t.ZDOCmd, *args: Any,
                  timeout: float = 5.0) -> list[Any]:
        tsn = int(self.app.get_sequence())
        data = await self._request(nwk, 0, 0, command, tsn, zdo_frame(tsn, command, *args),
                                   command | 0x8000, timeout)
        return zdo_answer(command | 0x8000, data)[1]

    async def read(self, meter: MeterTrack, attr_ids: Sequence[int], *,
                   cluster: int = METERING, timeout: float = 5.0) -> dict[int, Any]:
        """Read Attributes, a few at a time (the answer must fit a frame)."""
        got: dict[int, Any] = {}
        for start in range(0, len(attr_ids), 8):
            tsn = int(self.app.get_sequence())
            data = await self._request(meter.nwk, meter.endpoint, SE_PROFILE, cluster, tsn,
                                       zcl_read(tsn, attr_ids[start:start + 8]), cluster,
                                       timeout)
            _hdr, values = zcl_values(data)
            got.update(values or {})
        return got

    # -- finding the meters ----------------------------------------------------------------------
    async def run(self) -> None:
        """Look for meters now and every ``rescan`` seconds (mirrors come and go; a meter
        that left comes back), and keep the ones found read."""
        while True:
            try:
                await self.discover()
            except Exception:  # noqa: BLE001 - the next scan tries again
                LOGGER.exception("CAD: looking for meters failed")
            await asyncio.sleep(self.rescan if self.meters else min(self.rescan, 3.0))

    async def discover(self, window: float = 2.0) -> None:
        """Broadcast Match_Desc for a Metering server and take every new one that answers."""
        while not self._matches.empty():
            self._matches.get_nowait()
        import zigpy.zdo

        await zigpy.zdo.broadcast(
            self.app, zdo_t.ZDOCmd.Match_Desc_req, 0, 0, t.NWK(0xFFFD), SE_PROFILE,
            [METERING], [], broadcast_address=t.BroadcastAddress.RX_ON_WHEN_IDLE)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        found: list[tuple[int, int, t.EUI64 | None]] = []
        own = int(self.app.state.node_info.nwk)
        while (left := deadline - loop.time()) > 0:
            try:
                nwk, eps, sender = await asyncio.wait_for(self._matches.get(), left)
            except TimeoutError:
                break
            if nwk == own:
                continue
            found += [(nwk, ep, sender) for ep in eps
                      if (nwk, ep) not in self.meters and (nwk, ep) not in self.skipped]
        # one after the other: Key Establishment is heavy, and the trust centre first
        for nwk, ep, sender in sorted(set(found), key=lambda f: (f[0] != 0, f[0], f[1])):
            with contextlib.suppress(Exception):
                await self.take(nwk, ep, sender)

    async def take(self, nwk: int, ep: int, ieee: t.EUI64 | None = None) -> MeterTrack | None:
        """Check that (nwk, ep) serves Metering, key with it, read its type; a meter or a
        mirror is bound, subscribed to and read."""
        try:
            status, _of, desc = await self.zdo(nwk, zdo_t.ZDOCmd.Simple_Desc_req, nwk, ep)
        except (TimeoutError, ValueError):
            return None  # asked again at the next scan
        if status != zdo_t.Status.SUCCESS or desc is None \
                or METERING not in list(desc.input_clusters):
            self.skipped.add((nwk, ep))  # a Metering client (a display, a PPMID, an ESI)
            return None
        if ieee is None:
            status, ieee, *_ = await self.zdo(nwk, zdo_t.ZDOCmd.IEEE_addr_req, nwk, 0, 0)
        meter = MeterTrack(ieee=str(ieee), nwk=nwk, endpoint=ep)
        if not await self._secure(meter):
            return None
        meter.apply(await self.read(meter, FORMATTING), time.time())
        kind = meter_kind(meter.device_type)
        if kind is None:
            self.skipped.add((nwk, ep))
            self.note(f"{meter.ieee} endpoint {ep}: MeteringDeviceType {meter.device_type} "
                      "not read here (a battery meter is read through its mirror)")
            return None
        self.meters[(nwk, ep)] = meter
        what = "gas mirror" if kind == "mirror" else "electricity meter"
        self.note(f"{what} {meter.ieee} at NWK 0x{nwk:04X} endpoint {ep}")
        if kind == "meter":
            with contextlib.suppress(TimeoutError, ValueError):
                basic = await self.read(meter, [0x0004, 0x0005], cluster=BASIC)
                meter.manufacturer = _text(basic.get(0x0004))
                meter.model = _text(basic.get(0x0005))
            await self.bind(meter)
            await self.subscribe(meter)
        await self.refresh(meter)
        self._spawn(self._poll(meter))
        return meter

    async def _secure(self, meter: MeterTrack) -> bool:
        """A CBKE link key with the meter (the trust centre's is made at joining)."""
        if self.ke is None or self.ke.keyed(meter.ieee):
            return True
        started = time.monotonic()
        ok = await self.ke.establish(meter.ieee, meter.nwk, timeout=60.0)
        self.note(f"key establishment with {meter.ieee}: "
                  + (f"{time.monotonic() - started:.1f} s, link key installed" if ok
                     else "failed"))
        return bool(ok)

    async def bind(self, meter: MeterTrack) -> None:
        """ZDO Bind_req on the meter: its Metering reports come here too."""
        dst = zdo_t.MultiAddress(addrmode=0x03, ieee=self.app.state.node_info.ieee,
                                 endpoint=self.endpoint)
        try:
            status, = await self.zdo(meter.nwk, zdo_t.ZDOCmd.Bind_req,
                                     t.EUI64.convert(meter.ieee), meter.endpoint, METERING, dst)
        except (TimeoutError, ValueError) as exc:
            self.note(f"bind on {meter.ieee} failed: {exc!r}")
            return
        self.note(f"bound Metering of {meter.ieee} ({getattr(status, 'name', status)})")

    async def subscribe(self, meter: MeterTrack) -> None:
        tsn = int(self.app.get_sequence())
        try:
            await self._request(meter.nwk, meter.endpoint, SE_PROFILE, METERING, tsn,
                                zcl_configure_reporting(tsn, self.report_min, self.report_max),
                                METERING, 5.0)
        except TimeoutError:
            self.note(f"reporting not configured on {meter.ieee} (no answer)")

    async def refresh(self, meter: MeterTrack) -> None:
        """Read everything the state document shows (registers, periods, tiers)."""
        attrs = MIRROR_ATTRS if meter.mirror else REGISTERS + PERIODS + TIER_ATTRS
        self._update(meter, await self.read(meter, attrs))

    async def _poll(self, meter: MeterTrack) -> None:
        """Read again now and then: what is not reported (tiers, periods; a mirror)."""
        while True:
            await asyncio.sleep(self.report_max if not meter.mirror else 5.0)
            with contextlib.suppress(Exception):
                await self.refresh(meter)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        if await cancel_and_wait(list(self._tasks), 10):
            LOGGER.warning("CAD: a task did not stop within 10 s; abandoning it")


def state_lines(published: dict[str, MeterState]) -> list[str]:
    """What the CAD last published (node → state), one line per meter."""
    from sep.bridge.payloads import state_payload

    out = []
    for node, state in sorted(published.items()):
        doc = state_payload(state)
        imp = doc["energy"]["import"]
        out.append(f"CAD: {node} import {imp['cumulative']} {imp['units']}, power "
                   f"{doc['power']['value']} {doc['power']['units']}")
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.strip("\x00 ") or None


class CadService:
    """The CAD as a program: its radio on the virtual air (joining with its install code),
    Key Establishment (with credentials), the meter discovery and one MQTT bridge per meter
    (the composition ``sep cad`` and ``hubsim demo --cad`` share)."""

    def __init__(self, *, ieee: str, mqtt: Any = None, air: Any = None,
                 device: str = "virtual://default", install_code: bytes | None = None,
                 link_key: bytes | None = None, credentials: Sequence[Any] = (),
                 state: str | None = None, report_max: int = 30, rescan: float = 30.0) -> None:
        from radios.factory import make_controller
        from sep.ke.service import LINK_KIND, KeService
        from sep.zcl.security import requires_aps_security

        security: dict[str, Any] = {"aps_policy": requires_aps_security, "state": state}
        if install_code is not None:
            security["install_code"] = install_code
        elif link_key is not None:
            security["link_key"] = link_key
        if credentials:
            security["link_kind"] = LINK_KIND  # SE frames only under a CBKE link key
        self.ieee = ieee
        self.mqtt = mqtt
        self.app = make_controller("virtual", ieee=ieee, device=device, air=air,
                                   endpoints=[ConsumerAccessDevice.descriptor(bool(credentials))],
                                   security=security)
        self.log: list[str] = []
        self.cad = ConsumerAccessDevice(self.app, ieee=ieee, report_max=report_max,
                                        rescan=rescan, on_state=self._publish, note=self._note)
        # after the CAD: Key Establishment takes its frames first, passes the rest on
        self.ke = KeService(self.app, list(credentials), endpoint=1, own_ieee=ieee) \
            if credentials else None
        self.cad.ke = self.ke
        self.bridges: dict[str, Any] = {}
        self.published: dict[str, MeterState] = {}  # node → the last state handed over
        self._runner: asyncio.Task[None] | None = None
        self._starting: set[asyncio.Task[None]] = set()

    def _note(self, text: str) -> None:
        LOGGER.info("CAD: %s", text)
        self.log.append(text)
        del self.log[:-30]

    async def start(self) -> None:
        """Join (or rejoin) the HAN, key with the trust centre, then look for meters."""
        await self.app.startup()
        if self.ke is not None:
            self.ke.start()
            tc = self.app.state.network_info.tc_link_key.partner_ieee
            if not self.ke.keyed(tc):
                if not await self.ke.establish(tc, 0x0000, timeout=60.0):
                    raise TimeoutError("no key with the trust centre: Key Establishment "
                                       "failed (is the CAD's certificate from the HAN's CA?)")
                self._note("key establishment with the trust centre: link key installed")
        self._runner = asyncio.get_running_loop().create_task(self.cad.run(), name="cad")

    def _publish(self, state: MeterState) -> None:
        self.published[state.ieee] = state
        if self.mqtt is None:
            return
        bridge = self.bridges.get(state.ieee)
        if bridge is None:
            bridge = self._bridge(state.ieee)
        bridge.submit(state)

    def _bridge(self, node: str) -> Any:
        from sep import __version__
        from sep.bridge.client import MqttBridge
        from sep.bridge.payloads import node_id

        meter = next((m for m in self.cad.meters.values() if m.node == node), None)
        config = dataclasses.replace(self.mqtt, client_id=f"sep-cad-{node_id(node)}",
                                     supply_control=False)
        model = "gas mirror (read by a CAD)" if meter is not None and meter.mirror else (
            meter.model if meter is not None and meter.model else "SE meter")
        bridge = MqttBridge(config, ieee=node, model=model,
                            manufacturer=(meter.manufacturer if meter is not None
                                          and meter.manufacturer else "unknown"),
                            sw_version=__version__)
        self.bridges[node] = bridge
        task = asyncio.get_running_loop().create_task(bridge.start())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        return bridge

    async def stop(self) -> None:
        if self._runner is not None and await cancel_and_wait([self._runner], 10):
            LOGGER.warning("CAD: its runner did not stop within 10 s; abandoning it")
        await self.cad.stop()
        for task in list(self._starting):
            with contextlib.suppress(Exception):
                await task
        for bridge in self.bridges.values():
            with contextlib.suppress(Exception):
                await bridge.stop()
        if self.ke is not None:
            await self.ke.stop()
        with contextlib.suppress(Exception):
            await self.app.shutdown()
