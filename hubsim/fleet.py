"""A fleet of lightweight simulated meters on the virtual air (issue 17).

A fleet meter is what a meter on a HAN needs and no more: a Zigbee PRO node with its
security (``radios/node.py``: NWK and APS security, joining by install code, the ZDO
server that answers the hub's interview) on a port of the air, the sans-IO SE endpoint
(``sep/endpoint.py``) with its cluster servers (Basic, Identify, Time, Metering, Price,
Messaging), simulated metrology and, with credentials, Key Establishment with the trust
centre (``sep/ke/service.py``, unchanged, through :class:`LightApp`). No zigpy
``ControllerApplication``, no store, no watchdog per meter: the single demo meter keeps
that full path (``sep/app.py``).

Shared by every meter (:class:`FleetShared`, immutable): the tariff, the clock, the SE
endpoint's simple descriptor, the attribute tables (``sep/clusters/base.py``
``attribute_table``). Per meter only what differs: addresses, keys and counters, the
registers and the load.

One task drives the whole fleet: every meter's turn comes once per report interval,
spread evenly over it, and each turn reads the metrology and sends what the Metering
server's reporting says is due (Report Attributes of CurrentSummationDelivered and
InstantaneousDemand to the hub's SE endpoint, APS-secured under the meter's link key with
the trust centre). With a broker, one MQTT connection (:class:`FleetBridge`) publishes
every meter's topics as ``sep meter --mqtt`` does (availability, state, readings and Home
Assistant discovery); commands are not taken by fleet meters.

Each meter is placed in a broadcast neighbourhood of :data:`CELL` meters
(``AirPort.cell``): its broadcasts reach its neighbours and the nodes of the home (hub,
display), not the whole fleet.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import gc
import json
import logging
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import zigpy.types as t
import zigpy.zdo.types as zdo_t

from radios.air import VirtualAir
from radios.crypto import link_key_from_install_code
from radios.node import DataIndication, NodeEvent, SecurityError, ZigbeeNode
from radios.shell import DeliveryFailed, JoinFailed, NodeShell
from radios.state import NodeState, NvFile
from radios.tasks import cancel_and_wait
from radios.virtual import SecuredPacket
from radios.zdo_server import NodeIdentity, ZdoServer
from sep import __version__
from sep.bridge.payloads import (
    MeterState,
    currency_code,
    discovery_documents,
    node_id,
    reading_payload,
    state_payload,
)
from sep.clock import Clock
from sep.clusters.general import BasicServer, IdentifyServer, TimeServer
from sep.clusters.messaging import MessagingServer
from sep.clusters.metering import MeteringServer
from sep.clusters.price import PriceServer
from sep.clusters.reporting import ReportConfig
from sep.endpoint import SeEndpoint
from sep.ke.service import LINK_KIND, KeService
from sep.meter.tariff import Tariff
from sep.metrology.api import SimulatedMetrology
from sep.security.certs import Credentials
from sep.zcl.frames import Reply
from sep.zcl.security import requires_aps_security

LOGGER = logging.getLogger(__name__)

CELL = 16  # meters per broadcast neighbourhood
FLEET_ENDPOINT = 1
HUB_SE_ENDPOINT = 9
KE_CLUSTER = 0x0800
REPORTED = (0x0000, 0x0400)  # CurrentSummationDelivered, InstantaneousDemand
MANUFACTURER_CODE = 0x1234
JOIN_BATCH = 32  # meters joining at once
JOIN_ROUNDS = 4  # passes over the meters that did not join yet
KE_PARALLEL = 4  # Key Establishments with the trust centre at once (EC maths)
KE_ATTEMPTS = 3


def fleet_ieee(n: int) -> str:
    """The IEEE address of fleet meter ``n`` (as ``hubsim demo --meters`` names them)."""
    return f"00:0d:6f:00:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}:5e:e9"


def _ieee_int(ieee: str) -> int:
    return int.from_bytes(bytes(t.EUI64.convert(ieee)), "little")


@dataclasses.dataclass(frozen=True)
class FleetShared:
    """What every meter of a fleet shares (read only)."""

    air: VirtualAir
    clock: Clock
    tariff: Tariff
    report_interval: float = 10.0  # wall seconds between two reports of one meter
    descriptor: zdo_t.SimpleDescriptor = dataclasses.field(default=None)  # type: ignore[assignment]
    key_establishment: bool = True

    def __post_init__(self) -> None:
        if self.descriptor is None:
            inputs = [0x0000, 0x0003, 0x000A, 0x0702, 0x0700, 0x0703] + (
                [KE_CLUSTER] if self.key_establishment else [])
            outputs = [KE_CLUSTER] if self.key_establishment else []
            object.__setattr__(self, "descriptor", zdo_t.SimpleDescriptor(
                endpoint=FLEET_ENDPOINT, profile=0x0109, device_type=0x0501, device_version=0,
                input_clusters=sorted(inputs), output_clusters=outputs))


class _NodeInfo:
    __slots__ = ("_node",)

    def __init__(self, node: ZigbeeNode) -> None:
        self._node = node

    @property
    def nwk(self) -> t.NWK:
        return t.NWK(self._node.state.nwk)


class _State:
    __slots__ = ("node_info",)

    def __init__(self, node: ZigbeeNode) -> None:
        self.node_info = _NodeInfo(node)


class LightApp:
    """The part of a zigpy ``ControllerApplication`` that :class:`KeService` uses, on a
    bare node: packets in (``packet_received``), packets out (``send_packet``), the link
    keys of the radio."""

    def __init__(self, node: ZigbeeNode, shell: NodeShell) -> None:
        self.node = node
        self.shell = shell
        self.state = _State(node)
        self._seq = 0
        self.packet_received: Callable[[t.ZigbeePacket], None] = lambda packet: None

    def get_sequence(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def get_device(self, *, nwk: Any) -> Any:
        raise KeyError(nwk)  # KeService then uses the packet's nwk_src_ieee

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        assert packet.dst is not None
        secure = True if packet.tx_options & t.TransmitOptions.APS_Encryption else None
        out = self.node.data_frame(
            dst_nwk=int(packet.dst.address), profile=int(packet.profile_id),
            cluster=int(packet.cluster_id), src_ep=int(packet.src_ep or 0),
            dst_ep=int(packet.dst_ep or 0), payload=bytes(packet.data.serialize()),
            ack=bool(packet.tx_options & t.TransmitOptions.ACK), aps_secure=secure)
        await self.shell.send(out)

    def has_link_key(self, partner: t.EUI64, kind: str | None = None) -> bool:
        entry = self.node.state.link_keys.get(int.from_bytes(bytes(partner), "little"))
        return entry is not None and (kind is None or entry.kind == kind)

    def install_link_key(self, partner: t.EUI64, key: bytes, kind: str = LINK_KIND) -> None:
        self.node.keys.set_link_key(int.from_bytes(bytes(partner), "little"), bytes(key), kind)


def packet_of(ind: DataIndication) -> SecuredPacket:
    """A received frame as the zigpy packet a radio library would hand up."""
    secured = ind.aps_partner is not None
    data = ind.payload
    tsn_at = 0 if ind.profile == 0 else (3 if data and data[0] & 0x04 else 1)
    return SecuredPacket(
        src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(ind.src_nwk)),
        src_ep=t.uint8_t(ind.src_ep),
        dst=t.AddrModeAddress(addr_mode=t.AddrMode.Broadcast if ind.broadcast
                              else t.AddrMode.NWK, address=t.NWK(ind.dst_nwk)),
        dst_ep=t.uint8_t(ind.dst_ep), tsn=t.uint8_t(data[tsn_at] if len(data) > tsn_at else 0),
        profile_id=t.uint16_t(ind.profile), cluster_id=t.uint16_t(ind.cluster),
        data=t.SerializableBytes(data),
        tx_options=t.TransmitOptions.APS_Encryption if secured else t.TransmitOptions.NONE,
        radius=t.uint8_t(ind.radius), lqi=255, rssi=-40,
        aps_partner=t.EUI64(ind.aps_partner.to_bytes(8, "little")) if secured else None,
        aps_key_kind=ind.aps_key_kind,
        nwk_src_ieee=t.EUI64(ind.src_ieee.to_bytes(8, "little"))
        if ind.src_ieee is not None else None)


class FleetMeter:
    """One lightweight meter: node + SE endpoint + metrology (+ Key Establishment)."""

    def __init__(self, shared: FleetShared, n: int, *, install_code: bytes | None = None,
                 link_key: bytes | None = None, keyed: bool = False,
                 seed: int = 1, initial_wh: int = 0) -> None:
        self.shared = shared
        self.n = n
        self.ieee = fleet_ieee(n)
        ieee = _ieee_int(self.ieee)
        state = NodeState(ieee=ieee, channel=shared.air.channel)
        if install_code is not None:
            state.join_key = link_key_from_install_code(install_code).hex()
            state.join_key_kind = "install_code"
        elif link_key is not None:
            state.join_key, state.join_key_kind = bytes(link_key).hex(), "preconfigured"
        identity = NodeIdentity(ieee=t.EUI64(ieee.to_bytes(8, "little")), nwk=state.nwk,
                                manufacturer_code=MANUFACTURER_CODE,
                                endpoints={FLEET_ENDPOINT: shared.descriptor})
        keyed = keyed and shared.key_establishment  # SE frames only under a CBKE key
        self.node = ZigbeeNode(state, NvFile(None), zdo=ZdoServer(identity, state.bindings),
                               aps_policy=requires_aps_security,
                               link_kind=LINK_KIND if keyed else None)
        self.shell = NodeShell(shared.air, self.node, on_data=self._on_data,
                               on_event=self._on_event)
        self.shell.cell = n // CELL
        clock = shared.clock
        self.metering = MeteringServer()
        self.metrology = SimulatedMetrology(clock, seed=seed, initial_wh=initial_wh,
                                            supply_closed=lambda: self.metering.supply.relay.closed)
        self.price = PriceServer(tariff=shared.tariff, on_tier=self.metering.set_active_tier)
        self.endpoint = SeEndpoint(FLEET_ENDPOINT, [
            BasicServer(manufacturer="sep", model="SEP-ESME-1", sw_build_id=__version__),
            IdentifyServer(clock), TimeServer(clock, master=False), self.metering, self.price,
            MessagingServer()], output_clusters=tuple(shared.descriptor.output_clusters))
        self.endpoint.ha_profile = not keyed
        if keyed:
            self.endpoint.extra_input_clusters.append(KE_CLUSTER)
        self.app = LightApp(self.node, self.shell)
        self.keyed = keyed
        self.ke: KeService | None = None  # with the credentials (key_with_trust_centre)
        self.reports_sent = 0
        self.send_failures = 0
        self._sends: set[asyncio.Task[None]] = set()
        self.last_reading: Any = None

    # -- life --------------------------------------------------------------------------------
    async def join(self, attempts: int = 3) -> None:
        """Join the HAN with our install code and announce ourselves."""
        if self.shell.port is None:
            self.shell.start()
        await self.shell.join([self.shared.air.channel], attempts=attempts)
        self.node.announce()
        self.shell.pump()

    async def key_with_trust_centre(self, credentials: Sequence[Credentials],
                                    timeout: float = 60.0,
                                    executor: concurrent.futures.Executor | None = None) -> bool:
        """Key Establishment with the trust centre (as initiator); from then on the
        meter also answers partners that start one."""
        if not self.keyed:
            return True
        if self.ke is None:
            self.ke = KeService(self.app, list(credentials), endpoint=FLEET_ENDPOINT,
                                own_ieee=self.node.state.ieee, executor=executor)
        self.ke.start()
        tc = self.node.state.tc_ieee
        assert tc is not None
        return self.ke.keyed(tc) or await self.ke.establish(tc, 0x0000, timeout=timeout)

    def start_reporting(self, dst_nwk: int = 0x0000, dst_ep: int = HUB_SE_ENDPOINT) -> None:
        """Report the register and the demand to the hub once per turn."""
        now = self.shared.clock.now()
        for attr in REPORTED:
            self.metering.reporter.configure(ReportConfig(
                attr_id=attr, min_interval=0, max_interval=1, reportable_change=0,
                dst_nwk=dst_nwk, dst_ep=dst_ep), now)

    async def stop(self) -> None:
        for task in list(self._sends):
            task.cancel()
        if self.ke is not None:
            await self.ke.stop()
        await self.shell.stop()

    @property
    def joined(self) -> bool:
        return self.node.joined

    # -- one turn ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Read the metrology; send the reports that are due."""
        now = self.shared.clock.now()
        reading = self.metrology.read_now()
        self.last_reading = reading
        self.metering.update(reading)
        if not self.node.joined:
            return
        for reply in self.endpoint.reports(now):
            self.reports_sent += 1
            self.send(reply)

    # -- frames ----------------------------------------------------------------------------------
    def send(self, reply: Reply) -> None:
        try:
            out = self.node.data_frame(
                dst_nwk=reply.dst_nwk, profile=reply.profile_id, cluster=reply.cluster_id,
                src_ep=reply.src_ep, dst_ep=reply.dst_ep, payload=reply.data, ack=True,
                aps_secure=requires_aps_security(reply.profile_id, reply.cluster_id))
        except SecurityError as exc:
            self.send_failures += 1
            LOGGER.debug("fleet meter %s: not sent: %s", self.ieee, exc)
            return
        task = asyncio.get_running_loop().create_task(self._send(out))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, out: Any) -> None:
        try:
            await self.shell.send(out)
        except DeliveryFailed:
            self.send_failures += 1

    def _on_data(self, ind: DataIndication) -> None:
        if ind.profile == 0 or ind.cluster == KE_CLUSTER:
            if self.ke is not None:  # Match_Desc_rsp and Key Establishment
                self.app.packet_received(packet_of(ind))
            return
        replies = self.endpoint.handle(
            src_nwk=ind.src_nwk, src_ep=ind.src_ep, dst_ep=ind.dst_ep, profile_id=ind.profile,
            cluster_id=ind.cluster, data=ind.payload, broadcast=ind.broadcast,
            now=self.shared.clock.now(), src_ieee=ind.aps_partner,
            aps_secured=ind.aps_partner is not None)
        for reply in replies:
            self.send(reply)

    def _on_event(self, ev: NodeEvent) -> None:
        pass

    # -- what a dashboard sees -----------------------------------------------------------------
    def meter_state(self) -> MeterState:
        m = self.metering
        r = self.last_reading
        reg = m.registers
        tiers = min(m.config.tiers_in_use, self.shared.tariff.tier_count)
        price = None
        cur = self.price.current
        if cur is not None:
            code = currency_code(self.shared.tariff.currency)
            price = {"unitrate": float(cur.unit_rate), "tier": cur.tier, "label": cur.label,
                     "units": f"{code}/kWh",
                     "standingcharge": float(self.price.standing_charge),
                     "standingcharge_units": f"{code}/day", "tariff": self.shared.tariff.label}
        return MeterState(
            ieee=self.ieee, timestamp=r.timestamp if r else self.shared.clock.now(),
            summation_delivered=r.delivered_wh if r else 0,
            summation_received=r.received_wh if r else 0, demand=r.demand_w if r else 0,
            multiplier=m.config.multiplier, divisor=m.config.divisor,
            unit=m.config.unit_of_measure, tiers_delivered=reg.tiers_delivered[:tiers],
            tiers_received=reg.tiers_received[:tiers], day_delivered=reg.day.current[0],
            week_delivered=reg.week.current[0], month_delivered=reg.month.current[0],
            day_received=reg.day.current[1], meter_status=m.read_value(0x0200),
            supply_status=int(m.supply.status), price=price,
            currency=self.shared.tariff.currency)


class FleetBridge:
    """One MQTT connection for every fleet meter: each meter's availability, state,
    readings (QoS 1, in order) and Home Assistant discovery, on the topics and payloads of
    ``sep meter --mqtt``. Never blocks the fleet: :meth:`submit` queues (bounded; the
    oldest readings go first when the broker is away too long, and are counted)."""

    def __init__(self, config: Any, *, queue_limit: int = 20_000) -> None:
        self.config = config
        self.queue: collections.deque[tuple[str, bytes, bool]] = collections.deque()
        self.queue_limit = queue_limit
        self.dropped = 0
        self.published = 0
        self._seq: dict[str, int] = {}
        self._states: dict[str, bytes] = {}  # node -> its newest state document, unsent
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._nodes: list[str] = []
        self._announce: list[tuple[str, bytes]] = []
        self.connected = asyncio.Event()

    def topic(self, node: str, leaf: str) -> str:
        return f"{self.config.base_topic}/{node}/{leaf}"

    def add(self, meter: FleetMeter) -> None:
        node = node_id(meter.ieee)
        self._nodes.append(node)
        self._announce.append((self.topic(node, "availability"), b"online"))
        for topic, doc in discovery_documents(
                ieee=meter.ieee, base=self.config.base_topic,
                prefix=self.config.discovery_prefix, model="SEP-ESME-1", manufacturer="sep",
                sw_version=__version__, tiers=meter.shared.tariff.tier_count,
                currency=currency_code(meter.shared.tariff.currency)).items():
            self._announce.append((topic, json.dumps(doc).encode()))

    def submit(self, meter: FleetMeter) -> None:
        state = meter.meter_state()
        node = node_id(meter.ieee)
        seq = self._seq[node] = self._seq.get(node, 0) + 1
        self._put(self.topic(node, "reading"), reading_payload(seq, state), False)
        # the retained state: only the newest counts, so a waiting one is replaced
        self._states[node] = json.dumps(state_payload(state), default=_jsonable).encode()
        self._wake.set()

    def _put(self, topic: str, doc: dict[str, Any], retain: bool) -> None:
        self.queue.append((topic, json.dumps(doc, default=_jsonable).encode(), retain))
        while len(self.queue) > self.queue_limit:
            self.queue.popleft()
            self.dropped += 1

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fleet-mqtt")

    async def stop(self) -> None:
        if self._task is not None and await cancel_and_wait([self._task], 5):
            LOGGER.warning("the fleet's MQTT connection did not stop within 5 s")
        self._task = None

    async def _run(self) -> None:
        import aiomqtt

        from sep.bridge.status import broker_status

        status = broker_status(self.config.broker)
        delay = 1.0
        while True:
            try:
                cfg = self.config
                async with aiomqtt.Client(
                        cfg.host, cfg.port, username=cfg.username, password=cfg.password,
                        identifier=f"sep-fleet-{id(self):x}",
                        tls_context=cfg.ssl_context(), keepalive=30, timeout=10,
                        ) as client:
                    client.pending_calls_threshold = 1000  # a batch is in flight by design
                    status.connected("fleet")
                    for i in range(0, len(self._announce), 64):  # 64 in flight at a time
                        await asyncio.gather(*(
                            client.publish(topic, payload, qos=1, retain=True)
                            for topic, payload in self._announce[i:i + 64]))
                    self.published += len(self._announce)
                    self.connected.set()
                    delay = 1.0
                    try:
                        await self._drain(client)
                    finally:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(asyncio.gather(*(
                                client.publish(self.topic(node, "availability"), b"offline",
                                               qos=1, retain=True)
                                for node in self._nodes)), 3)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - aiomqtt.MqttError, OSError: retry
                status.failed("fleet", exc)
                self.connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _drain(self, client: Any) -> None:
        while True:
            if not self.queue and not self._states:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = []
            while self.queue and len(batch) < 64:
                batch.append(self.queue.popleft())
            while self._states and len(batch) < 96:
                node, payload = self._states.popitem()
                batch.append((self.topic(node, "state"), payload, True))
            await asyncio.gather(*(client.publish(topic, payload, qos=1,
                                                  retain=retain)
                                   for topic, payload, retain in batch))
            self.published += len(batch)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


class Fleet:
    """N fleet meters: joined in batches, keyed with the trust centre, reporting."""

    def __init__(self, shared: FleetShared, first: int, count: int, *,
                 install_codes: dict[str, bytes] | None = None,
                 credentials: Callable[[str], Credentials | Sequence[Credentials]] | None = None,
                 mqtt: Any = None, seed: int = 1, initial_wh: int = 4_213_377) -> None:
        # credentials(ieee) is called when the meter keys, in an executor thread (issuing
        # a certificate is EC maths); None: no Key Establishment
        self.shared = shared
        self.credentials = credentials
        codes = install_codes or {}
        self.meters = [
            FleetMeter(shared, n, install_code=codes.get(fleet_ieee(n)),
                       keyed=credentials is not None, seed=seed + n,
                       initial_wh=initial_wh + 997 * n)
            for n in range(first, first + count)]
        self.bridge = FleetBridge(mqtt) if mqtt is not None else None
        self._driver: asyncio.Task[None] | None = None
        # one pool for every meter's Key Establishment maths (not two threads per meter)
        self._ke_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=KE_PARALLEL, thread_name_prefix="fleet-ke")
        self.join_failures = 0
        self.ke_failures = 0
        self.turns = 0

    async def start_bridge(self) -> None:
        """Connect the fleet's MQTT bridge (every meter says it is online)."""
        if self.bridge is not None and self.bridge._task is None:
            for meter in self.meters:
                self.bridge.add(meter)
            await self.bridge.start()

    async def start(self, *, on_progress: Callable[[str], Any] = lambda text: None) -> None:
        """Join every meter (in batches), key each with the trust centre, then report."""
        started = time.monotonic()
        await self.start_bridge()
        self._driver = asyncio.create_task(self._drive(), name="fleet-driver")
        gate = asyncio.Semaphore(KE_PARALLEL)
        loop = asyncio.get_running_loop()

        async def keyed(meter: FleetMeter) -> None:
            async with gate:
                if meter.keyed and self.credentials is not None:
                    creds = await loop.run_in_executor(None, self.credentials, meter.ieee)
                    if isinstance(creds, Credentials):
                        creds = (creds,)
                    for _ in range(KE_ATTEMPTS):
                        if await meter.key_with_trust_centre(creds, executor=self._ke_pool):
                            break
                    else:
                        self.ke_failures += 1
            meter.start_reporting()

        # a meter keys and reports as soon as it has joined, while later batches join
        keying: list[asyncio.Task[None]] = []
        waiting = list(self.meters)
        for round_ in range(JOIN_ROUNDS):  # a meter that did not join tries again later
            failed: list[FleetMeter] = []
            for i in range(0, len(waiting), JOIN_BATCH):
                batch = waiting[i:i + JOIN_BATCH]
                results = await asyncio.gather(*(m.join() for m in batch),
                                               return_exceptions=True)
                for meter, result in zip(batch, results, strict=True):
                    if isinstance(result, JoinFailed | TimeoutError):
                        failed.append(meter)
                        if round_ == JOIN_ROUNDS - 1:
                            LOGGER.warning("fleet meter %s did not join: %s", meter.ieee,
                                           result)
                    elif isinstance(result, BaseException):
                        raise result
                    else:
                        keying.append(asyncio.create_task(keyed(meter)))
            waiting = failed
            if not waiting:
                break
        self.join_failures = len(waiting)
        on_progress(f"{sum(m.joined for m in self.meters)} fleet meters joined in "
                    f"{time.monotonic() - started:.1f} s")
        try:
            await asyncio.gather(*keying)
        finally:
            for task in keying:
                task.cancel()
        if any(m.ke is not None for m in self.meters):
            on_progress(f"fleet keyed with the trust centre in "
                        f"{time.monotonic() - started:.1f} s ({self.ke_failures} failed)")

    async def _drive(self) -> None:
        """Every meter's turn once per report interval, spread evenly over it."""
        slots = max(50, len(self.meters) // 4)  # a few meters per turn: the loop stays lively
        step = self.shared.report_interval / slots
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            for k in range(slots):
                for meter in self.meters[k::slots]:
                    try:
                        meter.tick()
                        if self.bridge is not None and meter.last_reading is not None:
                            self.bridge.submit(meter)
                    except Exception:  # noqa: BLE001 - one meter never stops the fleet
                        LOGGER.exception("fleet meter %s failed its turn", meter.ieee)
                self.turns += 1
                next_at += step
                await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def stop(self) -> None:
        if self._driver is not None:
            await cancel_and_wait([self._driver], 5)
        if self.bridge is not None:
            await self.bridge.stop()
        for meter in self.meters:
            with contextlib.suppress(Exception):
                await meter.stop()
        self._ke_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def reports_sent(self) -> int:
        return sum(m.reports_sent for m in self.meters)

    def summary(self) -> str:
        """One line: how many meters joined, keyed, and what they sent."""
        joined = sum(m.joined for m in self.meters)
        text = f"{len(self.meters)} meters, {joined} joined"
        if self.credentials is not None:
            keyed = sum(1 for m in self.meters if m.ke is not None
                        and m.node.state.tc_ieee is not None and m.ke.keyed(m.node.state.tc_ieee))
            text += f", {keyed} keyed with the trust centre"
        text += f", {self.reports_sent} reports sent"
        if self.bridge is not None:
            text += f", {self.bridge.published} MQTT messages"
        return text


def freeze_after_setup() -> None:
    """Take every object alive now (a fleet's meters, their tables and keys: they live as
    long as the process) out of the cyclic garbage collector's scans (``gc.freeze``): a
    full collection then walks only what came after, instead of a thousand meters' objects
    each time (bench_fleet's gc_ figures, with and without)."""
    gc.collect()
    gc.freeze()
