"""Composition root of the meter: radio + SE endpoint + cluster servers + metrology.

Only this module knows every part. It builds the sans-IO endpoint, gives it to a zigpy
``ControllerApplication`` (virtual air or an EZSP stick), intercepts the packets
addressed to the SE endpoint, and runs the periodic loop that takes readings from
metrology and sends attribute reports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import logging
import multiprocessing
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zigpy.application
import zigpy.exceptions
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.zcl import foundation

from radios.air import VirtualAir
from radios.factory import make_controller
from radios.tasks import cancel_and_wait
from sep import __version__
from sep.bridge.config import BridgeConfig
from sep.bridge.payloads import MeterState, currency_code
from sep.clock import Clock, WallClock
from sep.clusters.general import BasicServer, IdentifyServer, TimeServer
from sep.clusters.messaging import MessagingServer
from sep.clusters.metering import MeteringServer
from sep.clusters.prepayment import PrepaymentServer
from sep.clusters.price import PriceServer
from sep.clusters.supplier_link import SupplierLink
from sep.endpoint import SeEndpoint
from sep.firmware.appimage import APP_MANUFACTURER_CODE
from sep.firmware.policy import APPLICATION_IMAGE_TYPE, METROLOGY_IMAGE_TYPE
from sep.han import HanServices
from sep.ke.executor import process_compute
from sep.ke.service import KeService
from sep.meter.cost import DailyCost
from sep.meter.prepayment import PrepaymentAccount, units_of
from sep.meter.tariff import Tariff, load_tariff, tariff_from_dict
from sep.metrology.api import UNTRUSTED, MetrologyReader, Reading, SimulatedMetrology
from sep.ota.client import OtaClient
from sep.ota.service import OtaService, Verifier
from sep.packets import serve, to_packet
from sep.persistence import MeterPersistence
from sep.security.keyfiles import load_credentials
from sep.store import Store
from sep.store.checked import CRC_FIELD, CorruptFile, seal, unseal
from sep.watchdog import Watchdog
from sep.zcl.frames import Reply, parse_read_attributes_response, read_attributes_frame
from sep.zcl.security import requires_aps_security

LOGGER = logging.getLogger(__name__)

MANUFACTURER_NAME = "sep"
MODEL = "SEP-ESME-1"
MANUFACTURER_CODE = APP_MANUFACTURER_CODE
IMAGE_TYPE_APPLICATION = APPLICATION_IMAGE_TYPE  # OTA image type of this application
IMAGE_TYPE_METROLOGY = METROLOGY_IMAGE_TYPE  # never accepted over the air
APP_FILE_VERSION = 0x00010000
OTA_CLUSTER = 0x0019
TIME_CLUSTER = 0x000A
KE_CLUSTER = 0x0800
TIME_SYNC_ATTRIBUTES = (0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005)
SUPPLIER_SEARCH_MAX = 600.0
HAN_SEARCH_FIRST = 5.0  # seconds before the meter looks for a HAN again, doubling
HAN_SEARCH_MAX = 300.0  # seconds: the slowest search for an ESI that is not there


@dataclasses.dataclass
class MeterSettings:
    radio: str = "virtual"
    device: str | None = None  # virtual://NAME, udp://HOST:PORT, /dev/ttyUSB0, socket://...
    ieee: str | None = None  # default: from DATA/identity.json, else random and saved
    endpoint: int = 1
    data_dir: Path | None = None
    seed: int = 1
    solar_peak_w: int = 0
    initial_wh: int = 0  # the simulated meter's import register at start (a meter has history)
    tick_seconds: float = 1.0  # how often (wall time) metrology is read and reports go out
    baudrate: int = 115200
    flow_control: str | None = None
    mqtt: BridgeConfig | None = None  # publish to an MQTT broker (sep/bridge)
    file_version: int = APP_FILE_VERSION  # the firmware this meter runs
    watchdog_timeout: float = 30.0  # seconds a watched task may go without a heartbeat
    ota_query_interval: float = 24 * 3600  # seconds between QueryNextImage
    supplier: str | None = None  # IEEE of the supplier's ESI (default: the trust centre)
    tariff: Path | None = None  # a tariff TOML file (examples/tariff.toml); default one rate
    network: Any = None  # EZSP: a radios.ezsp.NetworkSettings for forming (None: zigpy picks)
    join: Any = None  # EZSP: a radios.ezsp_join.JoinSettings: join the hub's network as a router
    supplier_search_interval: float = 5.0  # first wait between searches for the ESI
    supplier_refresh_interval: float = 1800.0  # then ask it again this often (seconds)
    # -- the secure HAN (virtual radio; an EZSP stick keeps its own) --
    install_code: str | None = None  # our install code (hex, CRC included): join with it
    link_key: str | None = None  # or a preconfigured trust-centre link key (32 hex digits)
    channels: list[int] | None = None  # where to look for the HAN (default: the air's)
    time_sync_interval: float = 3600.0  # seconds between reads of the trust centre's Time
    ppmids: tuple[str, ...] = ()  # IEEEs of this home's PPMIDs: they may top up, select EC
    # -- Key Establishment (CBKE): credentials directories (sep cert issue), one per suite.
    # With them the meter does KE with the trust centre and takes SE frames only under a
    # CBKE link key; without them it runs as on a development network.
    certs: tuple[Path, ...] = ()
    credentials: tuple[Any, ...] = ()  # or Credentials objects already loaded (hubsim)
    # Home Automation hosts (zigbee2mqtt, ZHA) may read Basic, Identify, Time and Metering
    # with the HA profile (network key only): None = yes, unless Key Establishment is on
    ha_profile: bool | None = None
    # Key Establishment's elliptic-curve maths in this many worker processes (0: executor
    # threads, which hold the GIL and make the event loop late; bench/bench_ke.py)
    ke_processes: int = 0


def load_identity(settings: MeterSettings) -> str:
    """The meter's IEEE: given, or kept in DATA/identity.json across runs."""
    if settings.ieee:
        return settings.ieee
    # EUI64 holds its bytes little-endian: the printed form starts 00:0d:6f (an OUI).
    ieee = str(t.EUI64(secrets.token_bytes(5) + bytes([0x6F, 0x0D, 0x00])))
    if settings.data_dir is None:
        return ieee
    path = settings.data_dir / "identity.json"
    if path.exists():
        raw = b""
        try:
            raw = path.read_bytes()
            ieee = unseal(raw, str(path))["ieee"]
            if not isinstance(ieee, str):  # zigpy reads an int or a list as garbage or raises
                raise TypeError(f"ieee is {type(ieee).__name__}")
            ieee = str(t.EUI64.convert(ieee))
        except (OSError, KeyError, TypeError, ValueError, AssertionError) as exc:  # zigpy asserts
            # never a new identity in place of a damaged one: a new meter on the HAN and on
            # every dashboard, and the old one's data under the wrong name
            why = exc if isinstance(exc, CorruptFile) else (
                f"{path} holds no IEEE address ({type(exc).__name__}: {exc})")
            raise CorruptFile(f"{why}: restore it from a backup, or give --ieee") from None
        if CRC_FIELD.encode() not in raw:
            _write_identity(path, ieee)  # written before records had checksums
        return ieee
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _write_identity(path, ieee)
    return ieee


def _write_identity(path: Path, ieee: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(seal({"ieee": ieee}))
    os.replace(tmp, path)


class MeterApp:
    """A running meter."""

    def __init__(self, settings: MeterSettings, *, clock: Clock | None = None,
                 metrology: MetrologyReader | None = None, air: VirtualAir | None = None) -> None:
        self.settings = settings
        self.clock = clock or WallClock()
        self.metering = MeteringServer()
        self.metrology = metrology or SimulatedMetrology(
            self.clock, seed=settings.seed, solar_peak_w=settings.solar_peak_w,
            initial_wh=settings.initial_wh,
            supply_closed=lambda: self.metering.supply.relay.closed,
        )
        settle = getattr(self.metrology, "read_now", None)  # in-process metrology only
        if settle is not None:
            self.metering.supply.before_switch = settle
        self.ieee = load_identity(settings)
        self.basic = BasicServer(manufacturer=MANUFACTURER_NAME, model=MODEL,
                                 sw_build_id=__version__)
        self.identify = IdentifyServer(self.clock)
        # a Time client of the trust centre / ESI; serves Time as synchronised once set
        self.time = TimeServer(self.clock, master=False)
        self.messaging = MessagingServer(on_confirm=self._message_confirmed)
        self.price = PriceServer(
            tariff=load_tariff(settings.tariff) if settings.tariff else None,
            on_tier=self.metering.set_active_tier, on_block_period=self._block_period)
        self.metering.price_source = self.price  # bills to date follow the prices in force
        self._wire_billing()
        # Calendar, Events, Device Management, Keep-Alive (sep/han.py)
        self.han = HanServices(self, authorised=self._is_supplier, seed=settings.seed)
        self.han.on_trust_centre_lost = self._trust_centre_lost
        self.supplier = SupplierLink([self.price, self.messaging, self.han.calendar],
                                     authorised=self._is_supplier)
        tariff = self.price.tariff
        self.prepayment = PrepaymentServer(
            PrepaymentAccount(tariff.prepayment, digits=tariff.price_trailing_digits,
                              timezone=tariff.timezone),
            supply=self.metering.supply, provider_id=lambda: self.price.provider_id,
            supplier=self._is_supplier, consumer=self._is_ppmid, on_alert=self._prepay_alert,
            currency=lambda: self.price.tariff.currency)
        self.endpoint = SeEndpoint(settings.endpoint,
                                   [self.basic, self.identify, self.time, self.metering,
                                    self.price, self.messaging, self.prepayment,
                                    *self.han.servers],
                                   output_clusters=(OTA_CLUSTER, *self.supplier.clusters,
                                                    *self.han.output_clusters))
        for cluster_id in self.supplier.clusters:
            self.endpoint.client_handlers[cluster_id] = self.supplier.handle
        self.endpoint.client_handlers.update(self.han.client_handlers())
        self.endpoint.client_handlers[TIME_CLUSTER] = self._time_answer
        self.credentials = list(settings.credentials) + [
            load_credentials(Path(d)) for d in settings.certs]
        self.endpoint.ha_profile = (settings.ha_profile if settings.ha_profile is not None
                                    else not self.credentials)
        if self.credentials:  # Key Establishment: server and client of 0x0800
            self.endpoint.extra_input_clusters.append(KE_CLUSTER)
            self.endpoint.output_clusters.append(KE_CLUSTER)
        self.controller: zigpy.application.ControllerApplication = make_controller(
            settings.radio,
            ieee=self.ieee,
            endpoints=[self.endpoint.descriptor()],
            device=settings.device,
            air=air,
            baudrate=settings.baudrate,
            flow_control=settings.flow_control,
            manufacturer_code=MANUFACTURER_CODE,
            network=settings.network,
            security=self._radio_security(settings),
            join=settings.join if settings.radio == "ezsp" else None,
        )
        self.ota: OtaService | None = None
        self._tmp_dirs: list[Path] = []
        self.update_log: list[dict[str, Any]] = []
        self.cost = DailyCost()  # cost so far today (restored from the store)
        self.on_fatal: Callable[[str], None] = lambda why: LOGGER.critical("fatal: %s", why)
        self.watchdog = Watchdog(on_event=self._watchdog_event,
                                 on_escalate=lambda name: self.on_fatal(f"task {name} keeps hanging"))
        self.store: Store | None = None
        self.persistence: MeterPersistence | None = None
        if settings.data_dir is not None:
            self.store = Store.open(settings.data_dir)
            self.persistence = MeterPersistence(self.store, self)
            self.persistence.restore()
            self.han.attach(self.store, self.persistence)
        if hasattr(self.controller, "aps_policy"):  # a stick: the host marks SE frames
            self.controller.aps_policy = requires_aps_security
        self._upstream_packet_received = self.controller.packet_received
        self.controller.packet_received = self._on_packet  # type: ignore[method-assign]
        self.ke: KeService | None = None
        self.tc_keyed = asyncio.Event()  # Key Establishment with the trust centre done
        if self.credentials:
            self._ke_pool: concurrent.futures.ProcessPoolExecutor | None = None
            options: dict[str, Any] = {}
            if settings.ke_processes > 0:
                self._ke_pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=settings.ke_processes,
                    mp_context=multiprocessing.get_context("spawn"))
                options["compute"] = process_compute(self._ke_pool)
            self.ke = KeService(self.controller, self.credentials,
                                endpoint=settings.endpoint, own_ieee=self.ieee, **options)
            self.ke.on_established.append(lambda done: self.audit(
                "KEY_ESTABLISHMENT", partner=f"{done.partner_ieee:016x}", suite=done.suite,
                initiator=done.initiator, result="link key installed"))
            self.ke.on_failed.append(lambda failed: self.audit(
                "KEY_ESTABLISHMENT", partner=f"{failed.partner_ieee or 0:016x}",
                result=f"failed: {failed.reason}",
                status=failed.status.name if failed.status is not None else None))
        else:
            self.tc_keyed.set()  # development mode: the joining key is the link key
        self._ke_task: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._supplier_task: asyncio.Task[None] | None = None
        self._time_task: asyncio.Task[None] | None = None
        self._han_task: asyncio.Task[None] | None = None
        self._tc_search_task: asyncio.Task[None] | None = None
        self._match_purposes: dict[int, Callable[[int, list[int]], Any]] = {}
        self._send_tasks: set[asyncio.Task[Any]] = set()
        self.last_reading: Reading | None = None
        self.replies_sent = 0
        self.send_failures = 0
        self.bridge: Any = None
        self._bridge_task: asyncio.Task[None] | None = None
        if settings.mqtt is not None:
            from sep.bridge.client import MqttBridge

            self.bridge = MqttBridge(settings.mqtt, ieee=self.ieee, model=MODEL,
                                     manufacturer=MANUFACTURER_NAME, sw_version=__version__,
                                     handlers=self.command_handlers(),
                                     data_dir=settings.data_dir)
            self.bridge.on_command = lambda name, result: self.audit(
                "MQTT_COMMAND", command=name, **{k: v for k, v in result.items()
                                                 if k in ("id", "ok", "error")})
        self._price_seen = self._price_snapshot()


    @staticmethod
    def _radio_security(settings: MeterSettings) -> dict[str, Any]:
        """What the virtual radio needs to join the HAN securely and keep its keys."""
        # one quick look for the HAN at start; the meter keeps searching in the background
        sec: dict[str, Any] = {"aps_policy": requires_aps_security, "join_attempts": 1}
        if settings.data_dir is not None:
            sec["state"] = str(settings.data_dir / "radio.json")
        if settings.install_code:
            sec["install_code"] = bytes.fromhex(settings.install_code)
        elif settings.link_key:
            sec["link_key"] = bytes.fromhex(settings.link_key)
        if settings.channels:
            sec["channels"] = list(settings.channels)
        if settings.certs or settings.credentials:
            sec["link_kind"] = "cbke"  # SE frames only under a Key Establishment link key
        return sec if settings.radio == "virtual" else {}

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        if self.persistence is not None and self.bridge is not None:
            loop = asyncio.get_running_loop()
            bridge = self.bridge
            # events can be raised from executor threads (the start-up check)
            self.persistence.on_event = lambda kind, details: loop.call_soon_threadsafe(
                bridge.publish_event, kind, details)
        if self.persistence is not None:
            # the full integrity check of everything stored, before serving anything
            await asyncio.get_running_loop().run_in_executor(None, self.persistence.startup_check)
        await self.poll_metrology()
        if self.ke is not None:
            self.ke.start()
        if not await self._join_han():
            # a meter meters with or without its HAN: it keeps looking for one
            self._han_task = asyncio.create_task(self._keep_joining(), name="meter-han")
        # the loop beats once per tick: allow three missed ticks before calling it hung
        timeout = max(self.settings.watchdog_timeout, 3 * self.settings.tick_seconds)
        self.watchdog.register("meter-periodic", timeout, self._periodic)
        await self.watchdog.start()
        self._supplier_task = asyncio.create_task(self._find_supplier(), name="meter-supplier")
        self._time_task = asyncio.create_task(self._sync_time(), name="meter-time")
        if self.ota is not None:
            await self.ota.start()
        if self.bridge is not None:
            await self.bridge.start()
            self._bridge_task = asyncio.create_task(self._feed_bridge(), name="meter-bridge")

    async def _join_han(self, *, first: bool = True) -> bool:
        try:
            await self.controller.startup(auto_form=True)
        except zigpy.exceptions.FormationFailure as exc:
            # said once; the background search is quiet until it finds one. A meter on an
            # air of its own process (virtual://NAME, nobody else there) is alone by design.
            alone = (self.settings.device or "virtual://").startswith("virtual://")
            level = logging.DEBUG if not first else logging.INFO if alone else logging.WARNING
            LOGGER.log(level, "no HAN to join (%s); the meter keeps looking in the background",
                       exc)
            return False
        ni = self.controller.state.node_info
        LOGGER.info("meter %s up as NWK 0x%04X, SE endpoint %d", ni.ieee, int(ni.nwk),
                    self.endpoint.endpoint_id)
        if self.ke is not None and self._ke_task is None:
            self._ke_task = asyncio.create_task(self._key_with_trust_centre(), name="meter-ke")
        return True

    async def _key_with_trust_centre(self) -> None:
        """Key Establishment with the trust centre (the hub's ESI) after joining, until it
        succeeds; a key kept from an earlier run is used as it is."""
        assert self.ke is not None
        if self.nwk == 0x0000:
            self.tc_keyed.set()  # we are the trust centre
            return
        tc = self.controller.state.network_info.tc_link_key.partner_ieee
        ours = self._certificates_fingerprint()
        if self._keyed_with() not in (None, ours) and self.ke.keyed(tc):
            LOGGER.info("our certificates changed since the key with the trust centre was "
                        "made: keying again")
            self.controller.forget_link_key(tc)  # type: ignore[attr-defined]
        delay = 5.0
        while not self.ke.keyed(tc):
            if await self.ke.establish(tc, 0x0000):
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, HAN_SEARCH_MAX)
        self._keyed_with(ours)
        self.tc_keyed.set()

    def _trust_centre_lost(self, failures: int) -> None:
        """Keep-Alive's verdict (SE 1.x 5.4.2.2.3.4): search for the trust centre, rejoin
        (secured) and establish the key with it again (``_find_trust_centre``)."""
        if self._tc_search_task is None or self._tc_search_task.done():
            self._tc_search_task = asyncio.create_task(self._find_trust_centre(),
                                                       name="meter-tc-search")

    async def _find_trust_centre(self) -> None:
        from radios.shell import JoinFailed

        shell = getattr(self.controller, "shell", None)  # the virtual radio's node
        delay = HAN_SEARCH_FIRST
        while shell is not None:  # (a stick's firmware rejoins by itself)
            try:
                await shell.rejoin()
            except JoinFailed as exc:
                LOGGER.warning("trust centre search: %s; again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, HAN_SEARCH_MAX)
                continue
            self.audit("JOIN", nwk=f"0x{self.nwk:04X}", method="secured rejoin",
                       why="trust centre lost")
            break
        if self.ke is None or shell is None or self.nwk == 0x0000:
            return
        if self._ke_task is not None and not self._ke_task.done():
            await self._ke_task  # the first key is still being made
        # the key made with the trust centre that went away is of no use with the one found:
        # key again (the same path as after a change of certificates)
        self.controller.forget_link_key(  # type: ignore[attr-defined]
            self.controller.state.network_info.tc_link_key.partner_ieee)
        self.tc_keyed.clear()
        self._ke_task = asyncio.create_task(self._key_with_trust_centre(), name="meter-ke")

    def _certificates_fingerprint(self) -> str:
        certs = b"".join(c.certificate for c in sorted(self.credentials, key=lambda c: c.suite))
        return hashlib.sha256(certs).hexdigest()

    def _keyed_with(self, fingerprint: str | None = None) -> str | None:
        """The certificates the trust centre's key was made with (DATA/ke.json), or record
        ``fingerprint`` as them."""
        if self.settings.data_dir is None:
            return None
        path = self.settings.data_dir / "ke.json"
        if fingerprint is not None:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(seal({"certificates": fingerprint}))
            os.replace(tmp, path)
            return fingerprint
        try:
            return str(unseal(path.read_bytes(), str(path))["certificates"])
        except FileNotFoundError:
            return None
        except (OSError, CorruptFile, KeyError) as exc:
            LOGGER.warning("%s: %s; keying with the trust centre again", path, exc)
            return ""  # unknown: not to be trusted, key again

    async def _keep_joining(self) -> None:
        delay = HAN_SEARCH_FIRST
        while True:
            await asyncio.sleep(delay)
            if await self._join_han(first=False):
                return
            delay = min(delay * 2, HAN_SEARCH_MAX)

    @property
    def on_han(self) -> bool:
        node = getattr(self.controller, "node", None)
        return node.joined if node is not None else True

    async def stop(self, reason: str = "stop") -> None:
        """Stop serving; a clean stop is in the event log (``reason``: what asked for it)."""
        self.audit("STOP", reason=reason)
        await self.watchdog.stop()
        tasks = [task for task in (self._loop_task, self._bridge_task, self._supplier_task,
                                   self._time_task, self._han_task, self._ke_task,
                                   self._tc_search_task) if task is not None]
        for task in await cancel_and_wait(tasks, 10):
            LOGGER.warning("task %s did not stop within 10 s; abandoning it", task.get_name())
        if self.ke is not None:
            await self.ke.stop()
            if self._ke_pool is not None:
                self._ke_pool.shutdown(wait=False, cancel_futures=True)
        if self.bridge is not None:
            await self.bridge.stop()
        if self.ota is not None:
            await self.ota.stop()
        for task in list(self._send_tasks):
            task.cancel()
        await self.controller.shutdown()
        if self.persistence is not None:
            self.persistence.close()
            self.persistence = None
        for tmp in self._tmp_dirs:
            shutil.rmtree(tmp, ignore_errors=True)
        self._tmp_dirs.clear()

    async def __aenter__(self) -> MeterApp:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def nwk(self) -> int:
        """Our NWK address (0xFFFE while not on a HAN)."""
        nwk = self.controller.state.node_info.nwk
        return 0xFFFE if nwk is None else int(nwk)

    # -- periodic work -----------------------------------------------------------------
    async def poll_metrology(self) -> Reading:
        reading = await self.metrology.read()
        self.last_reading = reading
        self.metering.update(reading)
        self.cost.update(reading.timestamp, reading.delivered_wh,
                         self.price.current_price(reading.timestamp).unit_rate,
                         self.price.standing_charge)
        if not reading.status & UNTRUSTED:  # prepayment: charge what was drawn since the
            since = self.prepayment.account.last_t  # last reading, at the price then in force
            self.prepayment.book(reading.timestamp, reading.delivered_wh,
                                 *self._prepay_rates(reading.timestamp if since is None else since))
        if self.persistence is not None:
            self.persistence.tick(reading.timestamp)
        return reading

    async def _periodic(self, beat: Callable[[], None] = lambda: None) -> None:
        while True:
            beat()
            try:
                await self.poll_metrology()
                await self.han.tick(self.clock.now())
                for reply in self._to_bound(self.endpoint.reports(self.clock.now())):
                    self._send(reply)
            except Exception:  # noqa: BLE001 - keep serving; the watchdog sees repeats
                LOGGER.exception("periodic meter work failed")
            await asyncio.sleep(self.settings.tick_seconds)

    def _to_bound(self, replies: list[Reply]) -> list[Reply]:
        """Attribute reports also go to every device bound to the cluster (ZDO Bind_req,
        kept by the radio's binding table), once per destination."""
        bindings_for = getattr(self.controller, "bindings_for", None)
        if bindings_for is None:
            return replies
        out = list(replies)
        sent = {(r.cluster_id, r.dst_nwk, r.dst_ep, r.data) for r in replies}
        for reply in replies:
            if reply.data[2:3] != bytes([foundation.GeneralCommand.Report_Attributes]):
                continue
            for ieee, ep in bindings_for(self.endpoint.endpoint_id, reply.cluster_id):
                nwk = self.controller.nwk_of(ieee)
                key = (reply.cluster_id, nwk, ep, reply.data)
                if nwk is None or key in sent:
                    continue
                sent.add(key)
                out.append(dataclasses.replace(reply, dst_nwk=nwk, dst_ep=ep))
        return out

    # -- Time: a client of the trust centre ----------------------------------------------------
    async def _sync_time(self) -> None:
        """Read Time from the ESI (the comms hub: the HAN's time master) now and then; the
        answer sets our Time server (``_time_answer``)."""
        while True:
            esi = self.supplier.esi
            if esi is not None:
                dst_nwk, dst_ep = esi
                frame = read_attributes_frame(self.endpoint.next_tsn(), TIME_SYNC_ATTRIBUTES)
                self._send(Reply(dst_nwk=dst_nwk, dst_ep=dst_ep, src_ep=self.endpoint.endpoint_id,
                                 profile_id=0x0109, cluster_id=TIME_CLUSTER, data=frame))
            await asyncio.sleep(self.settings.time_sync_interval if self.time.synchronised
                                else min(5.0, self.settings.time_sync_interval))

    def _time_answer(self, req: Any, now: float) -> list[bytes]:
        """Read Attributes Response of the trust centre's Time server."""
        if self.supplier.esi is None or req.src_nwk != self.supplier.esi[0]:
            return []
        values = parse_read_attributes_response(req)
        if values is not None:
            self.time.synchronise(values)
        return []

    # -- MQTT bridge -------------------------------------------------------------------
    def meter_state(self) -> MeterState:
        """The values a dashboard sees, taken from the Metering server's registers."""
        m = self.metering
        r = self.last_reading
        reg = m.registers
        tiers = min(m.config.tiers_in_use, self.price.tariff.tier_count)  # the tariff's tiers
        return MeterState(
            ieee=self.ieee,
            timestamp=r.timestamp if r else self.clock.now(),
            summation_delivered=r.delivered_wh if r else 0,
            summation_received=r.received_wh if r else 0,
            demand=r.demand_w if r else 0,
            multiplier=m.config.multiplier, divisor=m.config.divisor,
            unit=m.config.unit_of_measure,
            tiers_delivered=reg.tiers_delivered[:tiers],
            tiers_received=reg.tiers_received[:tiers],
            day_delivered=reg.day.current[0], week_delivered=reg.week.current[0],
            month_delivered=reg.month.current[0], day_received=reg.day.current[1],
            meter_status=m.read_value(0x0200), supply_status=int(m.supply.status),
            ota=self._ota_state(),
            message=self._message_state(),
            price=self._price_state(),
            faults=sorted(f"{table}/{key}" for table, key in (
                self.store.faults if self.store is not None else ())),
            cost_today=self.cost.cost if self.cost.day is not None else None,
            cost_day=self.cost.day, currency=self.price.tariff.currency,
        )

    def _price_state(self) -> dict[str, Any] | None:
        cur = self.price.current
        if cur is None:
            return None
        tariff = self.price.tariff
        currency = currency_code(tariff.currency)
        state: dict[str, Any] = {
            "unitrate": float(cur.unit_rate), "tier": cur.tier, "label": cur.label,
            "units": f"{currency}/kWh", "standingcharge": float(self.price.standing_charge),
            "standingcharge_units": f"{currency}/day", "tariff": tariff.label}
        nxt = self.price.next_price(self.clock.now())
        if nxt is not None:
            state["next"] = {"unitrate": float(nxt.unit_rate), "tier": nxt.tier,
                             "label": nxt.label, "start": time.strftime(
                                 "%Y-%m-%dT%H:%M:%SZ", time.gmtime(nxt.start))}
        return state

    def _wire_billing(self) -> None:
        """Metering's bills and registers follow Price: closed billing periods become
        consolidated bills, the export tariff's tier and blocks book exported energy, a
        currency change converts the bills to date."""
        m, p = self.metering, self.price
        m.on_bill = lambda bill: p.record_bill(bill, self.clock.now())
        p.on_export_tier = m.set_received_tier
        p.on_export_block_period = lambda start, thresholds: m.set_received_block_period(
            start, thresholds, tiered=p.tariff.export is not None
            and p.tariff.export.tier_count > 1)
        p.on_currency_change = m.convert_bills

    def _block_period(self, start: int, thresholds_wh: list[int]) -> None:
        """A block period begins (Price server): the Metering block registers follow it."""
        self.metering.set_block_period(start, thresholds_wh,
                                       tiered=self.price.tariff.tier_count > 1)

    def set_tariff(self, tariff: Tariff, source: str = "local") -> None:
        """Change the tariff at run time; the HAN is told at once."""
        self.price.set_tariff(tariff, self.clock.now())
        if tariff.prepayment is not None:
            self.prepayment.account.reconfigure(tariff.prepayment)
        self.flush_pushes()
        LOGGER.info("tariff %r (id %d) in force", tariff.label, tariff.issuer_tariff_id)
        self.note_price_changes(source)

    # -- the audit trail -----------------------------------------------------------------
    def audit(self, kind: str, **details: Any) -> None:
        """Record ``kind`` with ``details`` in the tamper-evident event log (with a data
        dir) and on MQTT's event topic: one call for any part of the meter, e.g.
        ``app.audit("JOIN", ieee=str(ieee), nwk=f"0x{nwk:04X}", method="install code")``."""
        LOGGER.info("event %s %s", kind, details)
        if self.persistence is not None:
            self.persistence.event(kind, details)
        elif self.bridge is not None:
            self.bridge.publish_event(kind, details)

    def _price_snapshot(self) -> tuple[int, frozenset[tuple[Any, ...]]]:
        return (self.price.tariff.issuer_tariff_id,
                frozenset((e.issuer_event_id, e.tier, str(e.rate), e.start, e.duration_min,
                           e.label) for e in self.price.events))

    def note_price_changes(self, source: str) -> None:
        """Put a changed tariff and every new price event in the event log."""
        tariff_id, events = self._price_snapshot()
        old_id, old_events = self._price_seen
        self._price_seen = (tariff_id, events)
        if tariff_id != old_id:
            t_ = self.price.tariff
            self.audit("TARIFF_CHANGE", issuer_tariff_id=tariff_id, label=t_.label,
                       tiers=t_.tier_count, standing_charge=str(t_.standing_charge),
                       source=source)
        for ev in sorted(events - old_events):
            issuer_event_id, tier, rate, start, duration, label = ev
            self.audit("PRICE_CHANGE", issuer_event_id=issuer_event_id, tier=tier,
                       rate=rate, label=label, start=start, duration_minutes=duration,
                       source=source)

    def _message_state(self) -> dict[str, Any] | None:
        msg = self.messaging.last_message(self.clock.now())
        if msg is None:
            return None
        return {"id": msg.message_id, "text": msg.text, "confirmations": len(msg.confirmations)}

    def _ota_state(self) -> dict[str, Any] | None:
        if self.ota is None:
            return None
        c = self.ota.client
        size = c.ident.size if c.ident else None
        return {"status": c.status.name.lower(), "current_version": c.current_version,
                "downloading_version": c.ident.file_version if c.ident else None,
                "offset": c.offset if c.ident else None, "size": size,
                "progress": round(100 * c.offset / size, 1) if size else None,
                "refused": c.refused}

    def command_handlers(self) -> dict[str, Any]:
        """MQTT commands this meter can carry out (more arrive with their clusters)."""

        async def image_notify(cmd: Any) -> dict[str, Any]:
            # The meter-side meaning of an image notify: ask the OTA server now.
            if self.ota is None:
                raise LookupError("firmware update is not enabled on this meter")
            await self.ota.query_now()
            return {"queried": self.ota.client.server is not None}

        async def display_message(cmd: Any) -> dict[str, Any]:
            p = cmd.params
            msg, frame = self.messaging.display_message(
                p["text"], now=self.clock.now(), message_id=p.get("message_id"),
                importance=p.get("importance", "medium"),
                confirmation_required=p.get("confirmation_required", False),
                duration_minutes=p.get("duration_minutes", 0xFFFF))
            self.flush_pushes()
            return {"message_id": msg.message_id}

        async def cancel_message(cmd: Any) -> dict[str, Any]:
            self.messaging.cancel_message(cmd.params["message_id"])
            self.flush_pushes()
            return {"message_id": cmd.params["message_id"]}

        async def publish_price(cmd: Any) -> dict[str, Any]:
            p = cmd.params
            self.price.publish(tier=p["tier"], unit_rate=p["unit_rate"],
                                       label=p.get("label", f"Tier {p['tier']}"),
                                       now=self.clock.now(),
                                       duration_minutes=p.get("duration_minutes", 0xFFFF))
            self.flush_pushes()
            self.note_price_changes("mqtt")
            return {"tier": p["tier"]}

        async def set_tariff(cmd: Any) -> dict[str, Any]:
            tariff = tariff_from_dict(cmd.params["tariff"], source="set_tariff")
            self.set_tariff(tariff, source="mqtt")
            return {"issuer_tariff_id": tariff.issuer_tariff_id, "label": tariff.label}

        async def set_supply(cmd: Any) -> dict[str, Any]:
            # the consumer's button (LocalChangeSupply): "off" arms (the relay opens and
            # a local "on" restores it); a supply the supplier turned off stays off
            from sep.meter.supply import Refused, SupplyStatus

            supply = self.metering.supply
            want = SupplyStatus.ON if cmd.params["state"] == "on" else SupplyStatus.ARMED
            try:
                supply.local_change(int(want), source="mqtt")
            except Refused as exc:
                raise ValueError(exc.reason) from None
            return {"supply": supply.status.name.lower()}

        handlers = {"image_notify": image_notify, "display_message": display_message,
                    "cancel_message": cancel_message, "publish_price": publish_price,
                    "set_tariff": set_tariff}
        if self.settings.mqtt is not None and self.settings.mqtt.supply_control:
            handlers["set_supply"] = set_supply
        return handlers

    def flush_pushes(self) -> None:
        """Send the servers' queued unsolicited commands now (the periodic loop also does)."""
        for reply in self.endpoint.pushes():
            self._send(reply)

    async def _feed_bridge(self) -> None:
        assert self.bridge is not None
        while True:
            try:
                if self.last_reading is not None:
                    self.bridge.submit(self.meter_state())
            except Exception:  # noqa: BLE001 - the HAN side must not suffer from the bridge
                LOGGER.exception("bridge feed failed")
            await asyncio.sleep(self.bridge.config.publish_interval)

    # -- packets ----------------------------------------------------------------------
    # -- firmware update ---------------------------------------------------------------
    def enable_ota(self, *, verifier: Verifier, on_apply: Callable[[Path, int], Any],
                   staging_dir: Path | None = None, **client_options: Any) -> OtaService:
        """Attach the OTA client (before :meth:`start`)."""
        if staging_dir is None and self.settings.data_dir is None:
            self._tmp_dirs.append(Path(tempfile.mkdtemp(prefix="sep-ota-")))  # gone at stop
        staging = staging_dir or (self.settings.data_dir or self._tmp_dirs[-1]) / "ota"

        def client(sink: Any) -> OtaClient:
            return OtaClient(manufacturer=MANUFACTURER_CODE, image_type=IMAGE_TYPE_APPLICATION,
                             current_version=self.settings.file_version, sink=sink,
                             query_interval=self.settings.ota_query_interval, **client_options)

        self.ota = OtaService(self.controller, endpoint=self.endpoint.endpoint_id,
                              client_factory=client, staging_dir=staging, verifier=verifier,
                              on_apply=on_apply, on_log=self.log_update)
        return self.ota

    def _watchdog_event(self, kind: str, details: dict[str, Any]) -> None:
        if self.persistence is not None:
            self.persistence.event(kind, details)

    def log_update(self, entry: dict[str, Any]) -> None:
        """A firmware update step: kept in memory and, with a data dir, in the event log."""
        self.update_log.append(entry)
        if self.persistence is not None:
            self.persistence.update_step(entry)

    def _on_zdo(self, packet: t.ZigbeePacket) -> None:
        if int(packet.cluster_id) != zdo_t.ZDOCmd.Match_Desc_rsp:
            return
        data = bytes(packet.data.serialize())
        try:
            args, _ = t.deserialize(data[1:], zdo_t.CLUSTERS[zdo_t.ZDOCmd.Match_Desc_rsp][1])
        except (ValueError, KeyError, IndexError):
            return
        status, nwk, matches = args
        if status != zdo_t.Status.SUCCESS or not matches:
            return
        purpose = self._match_purposes.get(data[0])  # our own searches, by ZDO TSN
        if purpose is not None:
            purpose(int(nwk), [int(m) for m in matches])
        elif self.ota is not None:
            self.ota.on_match(int(nwk), [int(m) for m in matches])

    async def match_descriptor(self, in_clusters: list[int],
                               on_match: Callable[[int, list[int]], Any]) -> None:
        """Broadcast a ZDO Match_Desc_req (SE profile); answers go to ``on_match``."""
        tsn = self.controller.get_sequence()
        self._match_purposes[tsn] = on_match
        while len(self._match_purposes) > 16:
            del self._match_purposes[next(iter(self._match_purposes))]
        schema = zdo_t.CLUSTERS[zdo_t.ZDOCmd.Match_Desc_req][1]
        payload = bytes([tsn]) + b"".join(
            typ(value).serialize() for typ, value in zip(
                schema, [0xFFFD, 0x0109, in_clusters, []], strict=True))
        await self.controller.send_packet(t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=self.nwk), src_ep=0,
            dst=t.AddrModeAddress(addr_mode=t.AddrMode.Broadcast,
                                  address=t.BroadcastAddress.RX_ON_WHEN_IDLE),
            dst_ep=0, tsn=tsn, profile_id=0, cluster_id=zdo_t.ZDOCmd.Match_Desc_req,
            data=t.SerializableBytes(payload), tx_options=t.TransmitOptions.NONE, radius=30))

    # -- the supplier's ESI --------------------------------------------------------------
    def _is_supplier(self, nwk: int) -> bool:
        if self.settings.supplier is None:
            return nwk == 0x0000 and self.nwk != 0x0000  # the trust centre (not ourselves)
        try:
            dev = self.controller.get_device(nwk=t.NWK(nwk))
        except KeyError:
            return False
        return str(dev.ieee) == str(t.EUI64.convert(self.settings.supplier))

    def _is_ppmid(self, nwk: int) -> bool:
        """A PPMID of this home (``MeterSettings.ppmids``): it may top up and select
        emergency credit (the Prepayment server's consumer predicate)."""
        if not self.settings.ppmids:
            return False
        try:
            dev = self.controller.get_device(nwk=t.NWK(nwk))
        except KeyError:
            return False
        return str(dev.ieee) in {str(t.EUI64.convert(x)) for x in self.settings.ppmids}

    # -- prepayment ---------------------------------------------------------------------
    PREPAY_MESSAGES = {"low_credit": 0x07050001, "emergency_credit": 0x07050002,
                       "disconnected": 0x07050003}

    def _prepay_rates(self, t: float) -> tuple[int, int]:
        """(unit rate, standing charge) in force at ``t``, in the account's price units:
        the price in force (a price event, or the tariff's TOU tier — at the price of the
        block the register is in, for a block tariff) and the tariff's daily charge. The
        energy of a reading is charged at the price in force when the interval began, as
        the Metering tier registers book it."""
        tariff = self.price.tariff
        digits = self.prepayment.account.digits
        price = self.price.current_price(t)
        rate = price.unit_rate
        blocks = self.metering.registers.blocks
        if (tariff.block_thresholds_kwh and blocks.active and price.tier <= tariff.tier_count
                and tariff.tier(price.tier).rate == rate):
            rate = tariff.block_price(price.tier, max(1, blocks.current_block()))
        return units_of(rate, digits), units_of(tariff.standing_charge, digits)

    def _prepay_alert(self, kind: str, text: str) -> None:
        """Tell the home (a message to the HAN's displays); a top-up takes the warnings back."""
        ids = self.PREPAY_MESSAGES
        try:
            if kind == "topped_up":
                for old in ("low_credit", "emergency_credit", "disconnected"):
                    if ids[old] in self.messaging.messages:
                        self.messaging.cancel_message(ids[old])
            else:
                self.messaging.display_message(text, now=self.clock.now(), message_id=ids[kind],
                                               importance="high", duration_minutes=24 * 60)
        except (ValueError, LookupError, KeyError) as exc:
            LOGGER.info("prepayment message %s not shown: %s", kind, exc)
            return
        with contextlib.suppress(RuntimeError):  # no event loop: a test drives it sans-IO
            self.flush_pushes()

    def _esi_found(self, nwk: int, endpoints: list[int]) -> None:
        if self.supplier.esi is None and self.supplier.on_match(nwk, endpoints):
            for cluster_id, frame in self.supplier.hello():
                self._send_to_esi(cluster_id, frame)
            for frame in self.han.hello():
                self._send_to_esi(0x0708, frame)

    def _send_to_esi(self, cluster_id: int, frame: bytes) -> None:
        esi = self.supplier.esi
        if esi is not None:
            self._send(Reply(dst_nwk=esi[0], dst_ep=esi[1], src_ep=self.endpoint.endpoint_id,
                             profile_id=0x0109, cluster_id=cluster_id, data=frame))

    async def _find_supplier(self) -> None:
        """Look for the ESI (a Price or Messaging server) until the authorised one answers
        (the search backs off to once in ten minutes on a HAN without one), then ask it
        again now and then, so a restarted ESI knows the meter as a client again."""
        delay = self.settings.supplier_search_interval
        await self.tc_keyed.wait()  # SE frames need the CBKE link key first
        while True:
            if self.supplier.esi is None:
                try:
                    await self.match_descriptor(self.supplier.clusters, self._esi_found)
                except (zigpy.exceptions.DeliveryError, OSError) as exc:
                    LOGGER.debug("ESI search not sent: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, SUPPLIER_SEARCH_MAX)
                continue
            await asyncio.sleep(self.settings.supplier_refresh_interval)
            for cluster_id, frame in self.supplier.hello():
                self._send_to_esi(cluster_id, frame)

    def _message_confirmed(self, msg: Any, confirmation: dict[str, Any]) -> None:
        up = self.supplier.confirmation(msg.message_id, self.clock.now(),
                                        answer=confirmation.get("answer"),
                                        response=confirmation.get("response", ""))
        if up is not None:
            self._send_to_esi(*up)

    def _on_packet(self, packet: t.ZigbeePacket) -> None:
        dst_ep = int(packet.dst_ep or 0)
        if dst_ep == 0 and int(packet.profile_id) == 0:
            self._on_zdo(packet)
        if self.ota is not None and self.ota.handles(packet):
            self.ota.on_packet(packet)
            return
        replies = serve(self.endpoint, packet, self.clock.now())
        if replies is None:
            self._upstream_packet_received(packet)
            return
        for reply in replies:
            self._send(reply)
        if self.endpoint.has_pushes():
            self.flush_pushes()  # what the ESI just published goes on to the HAN now
        self.note_price_changes("supplier")

    def _send(self, reply: Reply) -> None:
        task = asyncio.get_running_loop().create_task(self._send_now(reply))
        self._send_tasks.add(task)
        task.add_done_callback(self._send_tasks.discard)

    async def _send_now(self, reply: Reply) -> None:
        packet = to_packet(reply, self.nwk)
        try:
            await self.controller.send_packet(packet)
            self.replies_sent += 1
        except (zigpy.exceptions.DeliveryError, OSError) as exc:
            self.send_failures += 1
            LOGGER.info("reply to 0x%04X not delivered: %s", reply.dst_nwk, exc)
