"""The prepayment meter interface device (PPMID): credit on a screen, and three buttons.

A PPMID shows the prepayment account the meter keeps — credit, emergency credit, debt,
the low-credit warning — and lets the household act on it locally: enter a top-up code
(ConsumerTopUp), select emergency credit (SelectAvailableEmergencyCredit), and restore
the supply once the meter has interrupted it for want of credit and credit is back
(Metering LocalChangeSupply: the supply-control state machine allows a local restore of
an ARMED supply only).

Like the IHD it is built on zigpy's client side: it finds the meter by ZDO Match_Desc for
a Prepayment server, lets zigpy interview it, puts sep's Prepayment table on zigpy's
cluster (zigpy defines Prepayment as an empty stub) so zigpy sends the commands and parses
the answers and reports, reads the account and configures reporting of it. The meter must
know this PPMID as one of its home's (``sep meter --ppmid IEEE``), or it refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import zigpy.application
import zigpy.config as conf
import zigpy.types as t
import zigpy.zdo
import zigpy.zdo.types as zdo_t
from zigpy.zcl import AttributeReportedEvent, AttributeUpdatedEvent, ReportingConfig
from zigpy.zcl.clusters.smartenergy import Metering

from hubsim import ke_node
from hubsim.zigpy_se import install_se_profile_shim
from radios.air import VirtualAir
from radios.virtual import VirtualControllerApplication, virtual_config
from sep.clusters.general import to_zcl_time
from sep.security.certs import Credentials
from sep.zcl import prepayment as pp
from sep.zcl.prepayment import Prepayment
from sep.zcl.security import requires_aps_security

LOGGER = logging.getLogger(__name__)

SE_PROFILE = 0x0109
PPMID_DEVICE_TYPE = 0x0506  # SE 1.4 device id: Prepayment Terminal
PPMID_IEEE = "00:0d:6f:00:00:00:99:01"
RESULTS = {pp.ACCEPTED: "accepted", pp.REJECTED_INVALID: "invalid code",
           pp.REJECTED_DUPLICATE: "code already used", pp.REJECTED_ERROR: "error",
           pp.REJECTED_MAX_CREDIT: "would exceed the maximum credit",
           pp.REJECTED_KEYPAD_LOCK: "keypad locked", pp.REJECTED_TOO_LARGE: "top-up too large",
           pp.ACCEPTED_SUPPLY_ENABLED: "accepted, supply on",
           pp.ACCEPTED_SUPPLY_DISABLED: "accepted, supply off",
           pp.ACCEPTED_SUPPLY_ARMED: "accepted: restore the supply"}
SUPPLY = {0: "off", 1: "armed (restore it here)", 2: "on"}
ATTRS = {0x0000: "payment_control", 0x0001: "credit", 0x0002: "emergency_credit",
         0x0003: "credit_status", 0x0005: "debt", 0x0010: "ec_limit", 0x0011: "ec_threshold",
         0x0020: "total_added", 0x0031: "low_level"}


@dataclasses.dataclass
class PpmidView:
    """What the PPMID shows (money in price units, 4 decimals of the currency)."""

    meter_ieee: str | None = None
    payment_control: int | None = None
    credit: int | None = None
    emergency_credit: int | None = None
    credit_status: int | None = None
    debt: int | None = None
    ec_limit: int | None = None
    ec_threshold: int | None = None
    total_added: int | None = None
    low_level: int | None = None
    supply_status: int | None = None
    digits: int = 4
    reports_received: int = 0
    last_result: str | None = None
    log: list[str] = dataclasses.field(default_factory=list)

    def money(self, units: int | None) -> str:
        if units is None:
            return "--"
        sign = "-" if units < 0 else ""
        return f"{sign}£{abs(units) / 10 ** self.digits:,.2f}"

    @property
    def prepayment(self) -> bool:
        return bool(self.payment_control and self.payment_control & pp.PREPAYMENT_ENABLED)

    def status_flags(self) -> list[str]:
        s = self.credit_status or 0
        names = [(pp.LOW_CREDIT, "LOW CREDIT"), (pp.EMERGENCY_CREDIT_AVAILABLE, "EC available"),
                 (pp.EMERGENCY_CREDIT_SELECTED, "EC selected"),
                 (pp.EMERGENCY_CREDIT_IN_USE, "EC in use"), (pp.CREDIT_EXHAUSTED, "NO CREDIT")]
        return [name for bit, name in names if s & bit]

    def text(self) -> str:
        if self.credit is None:
            return "--"
        flags = ", ".join(self.status_flags())
        mode = "prepayment" if self.prepayment else "credit mode"
        line = (f"credit {self.money(self.credit)} ({mode}), emergency "
                f"{self.money(self.emergency_credit)}, debt {self.money(self.debt)}")
        if self.supply_status is not None:
            line += f", supply {SUPPLY.get(self.supply_status, self.supply_status)}"
        return line + (f" [{flags}]" if flags else "")


class Ppmid:
    def __init__(self, *, ieee: str = PPMID_IEEE, air: VirtualAir | None = None,
                 device: str | None = None, report_max: int = 30, clock: Any = None,
                 install_code: bytes | None = None, state: str | None = None,
                 credentials: Sequence[Credentials] = ()) -> None:
        # joins with its install code (the development network's key without one); SE
        # frames travel APS-encrypted under its link key with the meter
        cfg = virtual_config(ieee, role="router", air=air, path=device or "virtual://default",
                             install_code=install_code, state=state,
                             aps_policy=requires_aps_security,
                             **ke_node.radio_security(credentials))
        cfg[conf.CONF_ADDITIONAL_ENDPOINTS] = [zdo_t.SimpleDescriptor(
            endpoint=1, profile=SE_PROFILE, device_type=PPMID_DEVICE_TYPE, device_version=0,
            input_clusters=ke_node.with_ke([0x0000, 0x0003], credentials),
            output_clusters=ke_node.with_ke([0x000A, 0x0702, 0x0703, Prepayment.cluster_id],
                                            credentials)).as_dict()]
        self.ieee = ieee
        self.app: zigpy.application.ControllerApplication = VirtualControllerApplication(cfg)
        self.view = PpmidView()
        self.report_max = report_max
        self.clock = clock or time.time
        self.prepayment: Any = None
        self.metering: Any = None
        self._matches: asyncio.Queue[tuple[int, list[int]]] = asyncio.Queue()
        self._upstream = install_se_profile_shim(self.app)
        self.app.packet_received = self._on_packet  # type: ignore[method-assign]
        # Key Establishment (with credentials): with the trust centre, then the meter
        self.ke = ke_node.attach(self.app, credentials, endpoint=1, ieee=ieee)

    def _note(self, text: str) -> None:
        LOGGER.info("PPMID: %s", text)
        self.view.log.append(text)
        del self.view.log[:-20]

    def _on_packet(self, packet: t.ZigbeePacket) -> None:
        if packet.profile_id == 0 and packet.cluster_id == zdo_t.ZDOCmd.Match_Desc_rsp:
            try:
                _hdr, (status, nwk, matches) = self.app._device.zdo.deserialize(
                    packet.cluster_id, packet.data.serialize())
            except (ValueError, KeyError):
                return
            if status == zdo_t.Status.SUCCESS and matches:
                self._matches.put_nowait((int(nwk), list(matches)))
        self._upstream(packet)

    async def start(self) -> None:
        await self.app.startup()
        await ke_node.start_keyed(self.ke, self.app, self._note)

    async def stop(self) -> None:
        if self.ke is not None:
            await self.ke.stop()
        await self.app.shutdown()

    # -- finding the meter -----------------------------------------------------------------
    async def connect(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            await zigpy.zdo.broadcast(
                self.app, zdo_t.ZDOCmd.Match_Desc_req, 0, 0, t.NWK(0xFFFD), SE_PROFILE,
                [Prepayment.cluster_id], [], broadcast_address=t.BroadcastAddress.RX_ON_WHEN_IDLE)
            try:
                nwk, eps = await asyncio.wait_for(self._matches.get(), 1.0)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError("no meter with a Prepayment server answered") from None
                continue
            # Match_Desc matches client clusters too: the hub (its supplier side has a
            # Prepayment client) answers as well. The meter is the other answer, unless it
            # is the trust centre itself (an ESP on a stick).
            # And so do we ourselves (our client): never take our own answer.
            own = int(self.app.state.node_info.nwk)
            with contextlib.suppress(TimeoutError):
                while nwk in (0x0000, own):
                    nwk, eps = await asyncio.wait_for(self._matches.get(), 1.0)
            if nwk == own:
                continue
            break
        dev = None
        while time.monotonic() < deadline:
            try:
                dev = self.app.get_device(nwk=t.NWK(nwk))
            except KeyError:
                await self.app._discover_unknown_device(t.NWK(nwk))
            if dev is not None and dev.is_initialized:
                break
            await asyncio.sleep(0.05)
        if dev is None or not dev.is_initialized:
            raise TimeoutError(f"meter 0x{nwk:04X} did not finish its interview")
        endpoint = dev.endpoints[eps[0]]
        self.view.meter_ieee = str(dev.ieee)
        # a link key with the meter: Key Establishment with it (with credentials), else an
        # application link key from the trust centre (APS Request Key)
        request = getattr(self.app, "request_link_key", None)
        if self.ke is not None:
            if not await ke_node.key_with(self.ke, dev.ieee, nwk, self._note, "meter"):
                raise TimeoutError("no key with the meter: Key Establishment failed")
        elif request is not None and not self.app.has_link_key(dev.ieee):  # type: ignore[attr-defined]
            await request(dev.ieee)
        self.prepayment = endpoint.add_input_cluster(Prepayment.cluster_id,
                                                     Prepayment(endpoint, is_server=True))
        self.metering = endpoint.in_clusters.get(Metering.cluster_id)
        for c in (self.prepayment, self.metering):
            if c is not None:
                c.on_event(AttributeReportedEvent.event_type, self._on_report)
                c.on_event(AttributeUpdatedEvent.event_type, self._on_report)
        self._note(f"meter {dev.ieee} found (NWK 0x{nwk:04X} endpoint {eps[0]})")
        await self.refresh()
        await self.subscribe()

    async def refresh(self) -> None:
        ok, _failed = await self.prepayment.read_attributes(list(ATTRS), allow_cache=False)
        for key, value in ok.items():
            attr_id = key if isinstance(key, int) else self.prepayment.find_attribute(key).id
            self._set(int(attr_id), value)
        if self.metering is not None:
            ok, _failed = await self.metering.read_attributes([0x0014], allow_cache=False)
            for value in ok.values():
                self._set_supply(value)

    async def subscribe(self) -> None:
        defs = Prepayment.AttributeDefs
        rsp = await self.prepayment.configure_reporting_multiple({
            defs.credit_remaining: ReportingConfig(1, self.report_max, 1),
            defs.emergency_credit_remaining: ReportingConfig(1, self.report_max, 1),
            defs.credit_status: ReportingConfig(1, self.report_max, None),
            defs.payment_control_configuration: ReportingConfig(1, self.report_max, None),
            defs.accumulated_debt: ReportingConfig(1, self.report_max, 1),
        })
        self._note("reporting configured (" + ", ".join(
            f"{a.name}: {getattr(s, 'name', s)}" for a, s in rsp.items()) + ")")
        if self.metering is not None:
            await self.metering.configure_reporting_multiple({
                Metering.AttributeDefs.supply_status: ReportingConfig(1, self.report_max, None)})

    def _on_report(self, event: AttributeReportedEvent | AttributeUpdatedEvent) -> None:
        if isinstance(event, AttributeReportedEvent):
            self.view.reports_received += 1
        if int(event.cluster_id) == Metering.cluster_id:
            if int(event.attribute_id) == 0x0014:
                self._set_supply(event.value)
            return
        self._set(int(event.attribute_id), event.value)

    def _set_supply(self, value: Any) -> None:
        self.view.supply_status = int(value)

    def _set(self, attr_id: int, value: Any) -> None:
        name = ATTRS.get(attr_id)
        if name is not None:
            setattr(self.view, name, int(value))

    # -- the buttons --------------------------------------------------------------------------
    async def top_up(self, code: str) -> tuple[int, int, int]:
        """Enter a top-up code; (result type, top-up value, credit remaining)."""
        rsp = await self.prepayment.consumer_top_up(
            originating_device=pp.ORIGIN_IHD, top_up_code=t.LVBytes(code.encode("ascii")))
        if getattr(rsp, "result_type", None) is None:
            status = getattr(rsp, "status", rsp)
            self._note(f"top-up {code} refused: {getattr(status, 'name', status)}")
            self.view.last_result = f"refused ({getattr(status, 'name', status)})"
            raise PermissionError(self.view.last_result)
        result = int(rsp.result_type)
        self.view.last_result = RESULTS.get(result, f"0x{result:02X}")
        self.view.credit = int(rsp.credit_remaining)
        self._note(f"top-up {code}: {self.view.last_result}, value "
                   f"{self.view.money(int(rsp.top_up_value))}, credit "
                   f"{self.view.money(int(rsp.credit_remaining))}")
        return result, int(rsp.top_up_value), int(rsp.credit_remaining)

    async def select_emergency_credit(self) -> Any:
        rsp = await self.prepayment.select_available_emergency_credit(
            command_issue_date_time=to_zcl_time(self.clock()), originating_device=pp.ORIGIN_IHD)
        status = getattr(rsp, "status", rsp)
        self._note(f"emergency credit selected: {getattr(status, 'name', status)}")
        return status

    async def restore_supply(self) -> Any:
        """LocalChangeSupply(ON): restores an ARMED supply (refused while there is no
        credit, or when the supplier turned the supply off)."""
        rsp = await self.metering.local_change_supply(proposed_supply_status=2)
        status = getattr(rsp, "status", rsp)
        self._note(f"restore supply: {getattr(status, 'name', status)}")
        return status
