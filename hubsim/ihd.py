"""The in-home display (IHD): finds the meter, reads and subscribes to its metering.

It is deliberately built on zigpy's *client* side — zigpy's ZDO, its device interview
and its Metering cluster parsers — so what it shows is an independent reading of what
the meter sends, not our own decoder agreeing with our own encoder.

Flow: broadcast Match_Desc_req (SE profile, Metering server) → the meter's endpoint;
zigpy discovers the meter's IEEE address and interviews it; then the IHD reads the
formatting set (unit, multiplier, divisor, formatting), reads the registers, and
configures reporting of summation and demand. For Price and Messaging, which zigpy
defines only as empty stubs, the IHD puts sep's declarative tables (``sep/zcl``) on its
zigpy mirror of the meter's clusters, so zigpy sends the requests and parses the
answers and pushes; it asks for the current price, tariff and last message, and confirms
the messages that ask for it, as a householder pressing the button would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import zigpy.application
import zigpy.config as conf
import zigpy.types as t
import zigpy.zdo
import zigpy.zdo.types as zdo_t
from zigpy.zcl import AttributeReportedEvent, AttributeUpdatedEvent, ReportingConfig
from zigpy.zcl.clusters.smartenergy import Metering

from hubsim import ke_node
from hubsim.ihd_gas import MIRRORED, GasDisplay
from hubsim.ihd_han import HanView, IhdHan
from hubsim.ihd_price import PriceView
from hubsim.zigpy_se import install_se_profile_shim
from radios.air import VirtualAir
from radios.virtual import VirtualControllerApplication, virtual_config
from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.security.certs import Credentials
from sep.zcl.messaging import CONFIRMATION_REQUIRED, ENHANCED_CONFIRMATION, EXT_CONFIRMED
from sep.zcl.messaging import Messaging as SeMessaging
from sep.zcl.price import Price as SePrice
from sep.zcl.security import requires_aps_security

LOGGER = logging.getLogger(__name__)

SE_PROFILE = 0x0109
IHD_DEVICE_TYPE = 0x0502  # SE: In-Premises Display
UNITS = {0x00: ("kWh", "kW"), 0x01: ("m³", "m³/h"), 0x0B: ("", "")}


def scaled(raw: int, multiplier: int, divisor: int) -> Decimal:
    """SE arithmetic: value = raw x multiplier / divisor (exact)."""
    if divisor == 0:
        raise ValueError("divisor 0 is invalid")
    return Decimal(raw) * Decimal(multiplier) / Decimal(divisor)


def format_value(raw: int, multiplier: int, divisor: int, formatting: int) -> str:
    """Render per the SE formatting byte: bits 0-2 digits right of the point,
    bits 3-6 digits left of it, bit 7 suppress leading zeros."""
    right = formatting & 0x07
    left = (formatting >> 3) & 0x0F
    suppress = bool(formatting & 0x80)
    value = scaled(raw, multiplier, divisor)
    negative = value < 0
    q = abs(value).quantize(Decimal(1).scaleb(-right)) if right else abs(value).quantize(Decimal(1))
    whole, _, frac = f"{q:f}".partition(".")
    if not suppress:
        whole = whole.zfill(left)
    elif left and len(whole) > left:
        whole = whole[-left:]  # a display shows only the digits it has
    text = whole + ("." + frac if right else "")
    return ("-" if negative else "") + text


@dataclasses.dataclass
class ShownMessage:
    message_id: int
    text: str
    importance: int
    start: int  # unix seconds
    duration_min: int
    needs_confirmation: bool
    protected: bool = False
    confirmed: bool = False

    def showing(self, now: float) -> bool:
        end = None if self.duration_min == 0xFFFF else self.start + 60 * self.duration_min
        return self.start <= now and (end is None or now < end)


@dataclasses.dataclass
class IhdView:
    """What the display shows."""

    meter_ieee: str | None = None
    meter_nwk: int | None = None
    unit: int | None = None
    multiplier: int | None = None
    divisor: int | None = None
    summation_formatting: int | None = None
    demand_formatting: int | None = None
    summation_delivered: int | None = None  # raw register values
    summation_received: int | None = None
    demand: int | None = None
    meter_status: int | None = None
    reports_received: int = 0
    last_update: float | None = None
    log: list[str] = dataclasses.field(default_factory=list)
    messages: dict[int, ShownMessage] = dataclasses.field(default_factory=dict)
    prices: PriceView = dataclasses.field(default_factory=PriceView)
    han: HanView = dataclasses.field(default_factory=HanView)  # schedule, events, tenancy

    def message(self, now: float) -> ShownMessage | None:
        """The message on screen: the newest whose time has come and not gone."""
        live = [m for m in self.messages.values() if m.showing(now)]
        return max(live, key=lambda m: (m.start, m.message_id)) if live else None

    def _ready(self) -> bool:
        return None not in (self.multiplier, self.divisor)

    def energy_kwh(self) -> Decimal | None:
        if not self._ready() or self.summation_delivered is None:
            return None
        return scaled(self.summation_delivered, self.multiplier or 0, self.divisor or 1)

    def power_kw(self) -> Decimal | None:
        if not self._ready() or self.demand is None:
            return None
        return scaled(self.demand, self.multiplier or 0, self.divisor or 1)

    def energy_text(self) -> str:
        if not self._ready() or self.summation_delivered is None:
            return "--"
        unit = UNITS.get(self.unit or 0, ("", ""))[0]
        return f"{format_value(self.summation_delivered, self.multiplier or 0, self.divisor or 1, self.summation_formatting or 0)} {unit}"

    def power_text(self) -> str:
        if not self._ready() or self.demand is None:
            return "--"
        unit = UNITS.get(self.unit or 0, ("", ""))[1]
        return f"{format_value(self.demand, self.multiplier or 0, self.divisor or 1, self.demand_formatting or 0)} {unit}"


class InHomeDisplay:
    def __init__(self, *, ieee: str = "00:0d:6f:00:00:00:1d:01", air: VirtualAir | None = None,
                 device: str | None = None, report_min: int = 1, report_max: int = 30,
                 clock: Any = None, install_code: bytes | None = None,
                 state: str | None = None, credentials: Sequence[Credentials] = ()) -> None:
        # a router on the HAN, joining with its install code (SE) — or, without one, the
        # development network's key; SE clusters travel APS-encrypted
        security: dict[str, Any] = {"aps_policy": requires_aps_security, "state": state,
                                    "install_code": install_code,
                                    **ke_node.radio_security(credentials)}
        cfg = virtual_config(ieee, role="router", air=air, path=device or "virtual://default",
                             **security)
        cfg[conf.CONF_ADDITIONAL_ENDPOINTS] = [
            zdo_t.SimpleDescriptor(
                endpoint=1, profile=SE_PROFILE, device_type=IHD_DEVICE_TYPE, device_version=0,
                input_clusters=ke_node.with_ke([0x0000, 0x0003], credentials),
                output_clusters=ke_node.with_ke(
                    [0x000A, 0x0700, 0x0702, 0x0703, 0x0707, 0x0709, 0x0025], credentials),
            ).as_dict()
        ]
        self.app: zigpy.application.ControllerApplication = VirtualControllerApplication(cfg)
        self.view = IhdView()
        self.report_min = report_min
        self.report_max = report_max
        self.metering: Any = None
        self.messaging: Any = None
        self.price: Any = None
        self._asked_after: int | None = None
        self.clock = clock or time.time  # the HAN's time (the demo runs it faster)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._matches: asyncio.Queue[tuple[int, list[int]]] = asyncio.Queue()
        self._upstream = install_se_profile_shim(self.app)
        self.app.packet_received = self._on_packet  # type: ignore[method-assign]
        self.han = IhdHan(self)  # calendar, events, keep-alive (hubsim/ihd_han.py)
        self.han.view = self.view.han
        self.gas = GasDisplay(self)  # gas, from the gas meter's mirror on the hub
        self.not_meters: set[tuple[int, int]] = set()  # mirrors answer Match_Desc too
        # Key Establishment (with credentials): with the trust centre, then the meter
        self.ke = ke_node.attach(self.app, credentials, endpoint=1, ieee=ieee)
        self.han.on_trust_centre_lost = self._trust_centre_lost

    def _trust_centre_lost(self, failures: int) -> None:
        """Search for the trust centre, rejoin and key with it again (once at a time)."""
        if any(task.get_name() == "ihd-tc-search" for task in self._tasks):
            return
        task = asyncio.get_running_loop().create_task(
            ke_node.find_trust_centre(self.ke, self.app, self._note), name="ihd-tc-search")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _note(self, text: str) -> None:
        LOGGER.info("IHD: %s", text)
        self.view.log.append(text)
        del self.view.log[:-20]

    def _on_packet(self, packet: t.ZigbeePacket) -> None:
        if self.han.on_packet(packet) or self.gas.on_packet(packet):
            return
        if packet.profile_id == 0 and packet.cluster_id == zdo_t.ZDOCmd.Match_Desc_rsp:
            try:
                _hdr, (status, nwk, matches) = self.app._device.zdo.deserialize(
                    packet.cluster_id, packet.data.serialize()
                )
            except (ValueError, KeyError):
                return
            if status == zdo_t.Status.SUCCESS and matches:
                self._matches.put_nowait((int(nwk), list(matches)))
        self._upstream(packet)

    async def start(self) -> None:
        await self.app.startup()
        await ke_node.start_keyed(self.ke, self.app, self._note)
        self.han.start()

    async def stop(self) -> None:
        await self.han.stop()
        for task in [x for x in self._tasks if x.get_name() == "ihd-tc-search"]:
            task.cancel()
        if self.ke is not None:
            await self.ke.stop()
        await self.app.shutdown()

    async def broadcast_match(self, in_clusters: list[int]) -> None:
        await zigpy.zdo.broadcast(
            self.app, zdo_t.ZDOCmd.Match_Desc_req, 0, 0,
            t.NWK(0xFFFD), SE_PROFILE, in_clusters, [],
            broadcast_address=t.BroadcastAddress.RX_ON_WHEN_IDLE,
        )

    async def find_meter(self, timeout: float = 10.0,
                         skip: set[tuple[int, int]] | None = None) -> tuple[int, int]:
        """Broadcast Match_Desc_req for a Metering server until one answers (not one of
        ``skip``)."""
        deadline = time.monotonic() + timeout
        while True:
            await self.broadcast_match([Metering.cluster_id])
            try:
                nwk, eps = await asyncio.wait_for(self._matches.get(), 1.0)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError("no meter answered Match_Desc_req") from None
                continue
            if nwk == int(self.app.state.node_info.nwk):
                continue  # our own answer: Match_Desc matches our Metering client too
            eps = [ep for ep in eps if (nwk, ep) not in self.not_meters | (skip or set())]
            if not eps:
                continue
            self._note(f"meter found at NWK 0x{nwk:04X} endpoint {eps[0]}")
            return nwk, eps[0]

    async def _meter_device(self, nwk: int, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                dev = self.app.get_device(nwk=t.NWK(nwk))
            except KeyError:
                dev = None
                # zigpy learns the IEEE from our IEEE_addr_req, then interviews
                await self.app._discover_unknown_device(t.NWK(nwk))
            if dev is not None and dev.is_initialized:
                return dev
            await asyncio.sleep(0.05)
        raise TimeoutError(f"meter 0x{nwk:04X} did not finish its interview")

    async def connect(self, timeout: float = 20.0) -> None:
        skip: set[tuple[int, int]] = set()  # said nothing of a device type: try others
        while True:
            try:
                nwk, ep = await self.find_meter(timeout if not skip else 3.0, skip)
            except TimeoutError:
                if not skip:
                    raise
                skip.clear()
                continue
            dev = None
            if self.ke is not None and nwk != 0x0000:
                # SE frames (the device type read too) need the CBKE key with that node;
                # the trust centre (mirrors) is keyed since joining
                dev = await self._meter_device(nwk, timeout)
                self.view.meter_nwk = nwk
                await self.secure_link(dev.ieee)
            kind = await self.gas.device_type(nwk, ep)
            if kind is None and nwk == 0x0000:
                # Match_Desc matches client clusters too: the hub's ESI has a Metering
                # client and no server; look for another answer before taking it
                skip.add((nwk, ep))
                continue
            if kind is None or kind < MIRRORED:
                break
            self.not_meters.add((nwk, ep))  # a gas meter's mirror: shown as gas, not here
        if dev is None:
            dev = await self._meter_device(nwk, timeout)
        self.view.meter_ieee = str(dev.ieee)
        self.view.meter_nwk = nwk
        self._note(f"interviewed {dev.manufacturer} {dev.model} ({dev.ieee})")
        await self.secure_link(dev.ieee)
        await self.bind(dev, ep)
        self.metering = dev.endpoints[ep].in_clusters[Metering.cluster_id]
        self.metering.on_event(AttributeReportedEvent.event_type, self._on_report)
        self.metering.on_event(AttributeUpdatedEvent.event_type, self._on_report)
        await self.read_formatting()
        await self.refresh()
        await self.subscribe()
        endpoint = dev.endpoints[ep]
        if SePrice.cluster_id in endpoint.in_clusters:
            self.price = endpoint.add_input_cluster(SePrice.cluster_id,
                                                    SePrice(endpoint, is_server=True))
            self.price.add_listener(_Commands(self._on_price_command))
            await self.refresh_prices()
        if SeMessaging.cluster_id in endpoint.in_clusters:
            self.messaging = endpoint.add_input_cluster(
                SeMessaging.cluster_id, SeMessaging(endpoint, is_server=True))
            self.messaging.add_listener(_Commands(self._on_message_command))
            rsp = await self.messaging.get_last_message()
            if getattr(rsp, "command_id", None) is not None:  # a Default Response
                self._note(f"no message yet ({getattr(rsp.status, 'name', rsp.status)})")
            else:
                self._on_message_command(0x00, rsp)
        await self.han.connect(endpoint)

    # -- price -----------------------------------------------------------------------------
    async def refresh_prices(self) -> None:
        """Ask for the price now (and to be pushed the next ones), the prices scheduled next,
        the tariff with its tier labels and block thresholds, and the block registers."""
        answer = self._on_price_command
        answer(0x00, await self.price.get_current_price(0x01))  # bit 0: rx on when idle
        await self.ask_next_price()
        answer(0x04, await self.price.get_tariff_information(0, 0, 1, 0x00))
        tariff = self.view.prices.tariff_id
        if tariff is not None:
            answer(0x08, await self.price.get_tier_labels(tariff))
            rsp = await self.price.get_block_thresholds(tariff)
            if getattr(rsp, "command_id", None) is None:
                answer(0x06, rsp)
        await self.read_blocks()

    async def ask_next_price(self) -> None:
        """GetScheduledPrices for one price, from the end of the current one. (One at a
        time: zigpy takes every answer with the request's TSN as the one reply.)"""
        now = self.clock()
        current = self.view.prices.price(now)
        after = current.end if current is not None and current.end != float("inf") else now
        try:
            rsp = await self.price.get_scheduled_prices(to_zcl_time(after), 1)
        except Exception as exc:  # noqa: BLE001 - asked again with the next price change
            self._note(f"next price not known: {exc!r}")
            return
        self._on_price_command(0x00, rsp)

    async def read_blocks(self) -> None:
        if not self.view.prices.block_thresholds:
            return
        ok, _failed = await self.metering.read_attributes([0x000E, 0x000C], allow_cache=False)
        for attr_id, value in ok.items():
            self._set(attr_id if isinstance(attr_id, int) else
                      self.metering.find_attribute(attr_id).id, value)

    def _on_price_command(self, command_id: int, args: Any) -> None:
        if getattr(args, "command_id", None) is not None and hasattr(args, "status"):
            return  # a Default Response (e.g. NOT_FOUND: nothing of that kind)
        now = self.clock()
        prices = self.view.prices
        line = prices.on_command(command_id, args, now)
        if line:
            self._note(line)
        current = prices.price(now)
        if (command_id == 0x00 and current is not None and prices.next_price(now) is None
                and self._asked_after != current.start and self.price is not None):
            self._asked_after = current.start  # a new price now: what comes after it?
            self._spawn(self.ask_next_price())

    # -- messaging -------------------------------------------------------------------------
    def _on_message_command(self, command_id: int, args: Any) -> None:
        if command_id in (0x00, 0x02):  # Display(Protected)Message
            start = int(args.start_time)
            control = int(args.message_control)
            ext = getattr(args, "extended_message_control", None)
            msg = ShownMessage(
                message_id=int(args.message_id),
                text=bytes(args.message).decode("utf-8", errors="replace"),
                importance=(control >> 2) & 0x03,
                start=int(self.clock()) if start == 0 else start + ZIGBEE_EPOCH,
                duration_min=int(args.duration_in_minutes),
                needs_confirmation=bool(control & (CONFIRMATION_REQUIRED | ENHANCED_CONFIRMATION)),
                protected=command_id == 0x02,
                confirmed=bool(ext is not None and int(ext) & EXT_CONFIRMED))
            old = self.view.messages.get(msg.message_id)
            if old is not None and old.confirmed:
                msg.confirmed = True
            self.view.messages[msg.message_id] = msg
            self._note(f"message {msg.message_id}: {msg.text!r}")
            if msg.needs_confirmation and not msg.confirmed:
                self._spawn(self.confirm(msg.message_id))
        elif command_id == 0x01:  # CancelMessage
            if self.view.messages.pop(int(args.message_id), None) is not None:
                self._note(f"message {int(args.message_id)} cancelled")
        elif command_id == 0x03:  # CancelAllMessages
            self.view.messages.clear()
            self._note("all messages cancelled")

    async def confirm(self, message_id: int, response: str | None = None) -> Any:
        """The householder confirms a message (enhanced confirmation answers "yes")."""
        msg = self.view.messages.get(message_id)
        kwargs: dict[str, Any] = {}
        if response is not None or (msg is not None and msg.needs_confirmation):
            kwargs = {"message_confirmation_control": 0x02,
                      "message_response": t.LVBytes((response or "").encode())}
        rsp = await self.messaging.message_confirmation(
            message_id, to_zcl_time(self.clock()), **kwargs)
        status = getattr(rsp, "status", None)
        if msg is not None and status == 0:
            msg.confirmed = True
        self._note(f"confirmed message {message_id}: {getattr(status, 'name', status)}")
        return rsp

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def secure_link(self, meter: t.EUI64) -> None:
        """An application link key with the meter: by Key Establishment with it (with
        credentials), else from the trust centre (APS Request Key). SE clusters travel
        APS-encrypted under it."""
        if str(meter) == str(ke_node.trust_centre(self.app)):
            return  # the hub (a gas mirror): keyed since joining
        if self.ke is not None:
            nwk = self.view.meter_nwk if self.view.meter_nwk is not None else \
                int(self.app.get_device(ieee=meter).nwk)
            if not await ke_node.key_with(self.ke, meter, nwk, self._note, "meter"):
                raise TimeoutError("no key with the meter: Key Establishment failed")
            return
        request = getattr(self.app, "request_link_key", None)
        if request is None or self.app.has_link_key(meter):  # type: ignore[attr-defined]
            return
        await request(meter)
        self._note("link key with the meter from the trust centre")

    async def bind(self, dev: Any, ep: int) -> None:
        """ZDO Bind_req on the meter: its Metering reports come to us."""
        dst = zdo_t.MultiAddress(addrmode=0x03, ieee=self.app.state.node_info.ieee, endpoint=1)
        rsp = await dev.zdo.Bind_req(dev.ieee, ep, Metering.cluster_id, dst)
        status = rsp[0] if isinstance(rsp, (list, tuple)) else rsp
        self._note(f"bound Metering ({getattr(status, 'name', status)})")

    async def read_formatting(self) -> None:
        names = ["unit_of_measure", "multiplier", "divisor", "summation_formatting",
                 "demand_formatting"]
        ok, failed = await self.metering.read_attributes(names, allow_cache=False)
        if failed:
            self._note(f"formatting read failed: {failed}")
        v = self.view
        v.unit = _int(ok.get("unit_of_measure"))
        v.multiplier = _int(ok.get("multiplier"))
        v.divisor = _int(ok.get("divisor"))
        v.summation_formatting = _int(ok.get("summation_formatting"))
        v.demand_formatting = _int(ok.get("demand_formatting"))

    async def refresh(self) -> None:
        names = ["current_summ_delivered", "current_summ_received", "instantaneous_demand",
                 "status"]
        ok, _failed = await self.metering.read_attributes(names, allow_cache=False)
        for name, value in ok.items():
            self._set(self.metering.find_attribute(name).id, value)

    async def subscribe(self) -> None:
        attrs = Metering.AttributeDefs
        rsp = await self.metering.configure_reporting_multiple(
            {
                attrs.current_summ_delivered: ReportingConfig(self.report_min, self.report_max, 1),
                attrs.instantaneous_demand: ReportingConfig(self.report_min, self.report_max, 10),
            }
        )
        result = ", ".join(f"{a.name}: {getattr(st, 'name', st)}" for a, st in rsp.items())
        self._note(f"reporting configured ({result})")

    # zigpy cluster events (reports, and cache updates from reads)
    def _on_report(self, event: AttributeReportedEvent | AttributeUpdatedEvent) -> None:
        if isinstance(event, AttributeReportedEvent):
            self.view.reports_received += 1
        self._set(int(event.attribute_id), event.value)

    def _set(self, attrid: int, value: Any) -> None:
        v = self.view
        if attrid == 0x0000:
            v.summation_delivered = int(value)
            if v.multiplier is not None and v.divisor:
                v.prices.on_register(int(value), self.clock(), v.multiplier, v.divisor)
        elif attrid == 0x0001:
            v.summation_received = int(value)
        elif attrid == 0x0400:
            v.demand = int(value)
        elif attrid == 0x0200:
            v.meter_status = int(value)
        elif attrid == 0x000E:
            v.prices.current_block = int(value)
        elif attrid == 0x000C:
            v.prices.block_period_consumption = int(value)
        v.last_update = time.time()


class _Commands:
    """A zigpy cluster listener that hands cluster commands (pushes) to a function."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def cluster_command(self, tsn: int, command_id: int, args: Any) -> None:
        try:
            self.handler(int(command_id), args)
        except Exception:  # noqa: BLE001 - a strange push must not break the display
            LOGGER.exception("IHD could not take command 0x%02X", command_id)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
