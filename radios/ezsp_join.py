"""The SMETS2 topology on an EZSP stick: the meter joins the comms hub's network as a router.

bellows drives forming only; its ``load_network_info`` refuses a stick that is not the
coordinator. :class:`EzspJoinerController` is bellows' application (its code and its EZSP
layer unchanged, no patches) with three methods of zigpy's ``ControllerApplication``
contract given a router's meaning, as zigpy lets a radio library do:

- ``form_network`` — what zigpy calls when the stick has no network — *joins* one, with
  bellows' EZSP commands: ``setInitialSecurityState`` (the preconfigured link key: the
  meter's install-code key, or a trust-centre link key; ``REQUIRE_ENCRYPTED_KEY``, so the
  network key only ever arrives encrypted), an active scan (``startScan`` →
  ``networkFoundHandler``) when the channel or the PAN are not given, ``joinNetwork`` as a
  router, and ``stackStatusHandler`` NETWORK_UP or JOIN_FAILED;
- ``load_network_info`` reads a router's network (bellows' own reads, minus the
  coordinator-only ones) and names the trust centre from ``getCurrentSecurityState``;
- ``permit`` opens only the stick itself (a router does not open the whole network).

After a restart the stick still holds its network: zigpy's start-up finds it
(``networkInit``, a secured rejoin on the NCP) and nothing is joined again.

Key Establishment runs on the host (the meter's ``KeService``); its link key goes into the
stick's key table with ``importLinkKey`` (:meth:`EzspController.install_link_key`). A
router's key table holds nothing else (the key it joined with is the TC link key, not a
key-table entry), so at start-up every entry is taken for a Key Establishment key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import bellows.types as bt
import zigpy.config as conf
import zigpy.device
import zigpy.exceptions
import zigpy.state
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from bellows.zigbee.device import EZSPEndpoint

from radios.crypto import link_key_from_install_code
from radios.ezsp import EzspController, ezsp_config

LOGGER = logging.getLogger(__name__)

JOIN_TIMEOUT = 30.0  # seconds from joinNetwork to NETWORK_UP or JOIN_FAILED
SCAN_DURATION_EXP = 3  # 802.15.4 scan duration exponent per channel
ALL_CHANNELS = tuple(range(11, 27))


class JoinError(zigpy.exceptions.FormationFailure):
    """No network could be joined (zigpy's start-up reports it as a formation failure)."""


@dataclasses.dataclass(frozen=True)
class JoinSettings:
    """What the router joins with. Unset channel/PAN: scanned (the first network that
    permits joining and matches what is given)."""

    link_key: bytes  # the preconfigured TC link key (from the install code, or given)
    channel: int | None = None
    pan_id: int | None = None
    extended_pan_id: str | None = None  # "aa:bb:..:hh"

    @classmethod
    def from_install_code(cls, code: bytes | str, **kw: Any) -> JoinSettings:
        raw = bytes.fromhex(code) if isinstance(code, str) else bytes(code)
        return cls(link_key=link_key_from_install_code(raw), **kw)  # InstallCodeError: a ValueError

    def __post_init__(self) -> None:
        if len(self.link_key) != 16:
            raise ValueError("a link key has 16 bytes")
        if self.channel is not None and not 11 <= self.channel <= 26:
            raise ValueError("the channel must be 11..26")
        if self.extended_pan_id is not None:
            t.EUI64.convert(self.extended_pan_id)


class EzspJoinerController(EzspController):
    """bellows' application (unchanged) as a router that joins an SE network."""

    def __init__(self, config: dict, join: JoinSettings) -> None:
        super().__init__(config)
        self.join_settings = join
        self.joins = 0  # networks joined by this process (a restart resumes, never joins)

    @property
    def is_router(self) -> bool:
        node = self.state.node_info
        return node is not None and node.logical_type == zdo_t.LogicalType.Router

    async def register_endpoints(self) -> None:
        """Only the meter's endpoints: zigpy's coordinator endpoints (1: an IAS control
        panel, 2: ZLL, 242: Green Power) are not a meter's, and a hub interviewing them
        would wait for Basic answers nobody gives."""
        for endpoint in self.config[conf.CONF_ADDITIONAL_ENDPOINTS]:
            await self.add_endpoint(endpoint)

    def _persist_coordinator_model_strings_in_db(self) -> None:
        # zigpy assumes its own endpoint 1 exists; a meter's stick has none
        if 1 in self._device.endpoints:
            super()._persist_coordinator_model_strings_in_db()

    # -- joining (zigpy's "form" when the stick has no network) ------------------------
    async def form_network(self, *, fast: bool = False) -> None:
        js = self.join_settings
        ezsp = self._ezsp
        assert ezsp is not None
        bits = bt.EmberInitialSecurityBitmask
        await self._check(ezsp.setInitialSecurityState(bt.EmberInitialSecurityState(
            bitmask=bits.HAVE_PRECONFIGURED_KEY | bits.REQUIRE_ENCRYPTED_KEY,
            preconfiguredKey=bt.KeyData(js.link_key),
            networkKey=bt.KeyData(bytes(16)), networkKeySequenceNumber=0,
            preconfiguredTrustCenterEui64=bt.EUI64(bytes(8)))), "setInitialSecurityState")
        target = await self._target()
        params = bt.EmberNetworkParameters(
            extendedPanId=t.ExtendedPanId.convert(str(target.extended_pan_id)),
            panId=t.PanId(target.pan_id), radioTxPower=8, radioChannel=target.channel,
            joinMethod=bt.EmberJoinMethod.USE_MAC_ASSOCIATION, nwkManagerId=t.NWK(0),
            nwkUpdateId=0, channels=t.Channels.from_channel_list([target.channel]))
        LOGGER.info("joining PAN 0x%04X (%s) on channel %d as a router", target.pan_id,
                    target.extended_pan_id, target.channel)
        with ezsp.wait_for_stack_status(bt.sl_Status.NETWORK_UP) as up, \
                ezsp.wait_for_stack_status(bt.sl_Status.NOT_JOINED) as failed:
            await self._check(ezsp.joinNetwork(nodeType=bt.EmberNodeType.ROUTER,
                                               parameters=params), "joinNetwork")
            done, _ = await asyncio.wait({up, failed}, timeout=JOIN_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
        if up not in done:
            why = "the trust centre refused us or sent no key" if failed in done \
                else f"no answer in {JOIN_TIMEOUT:.0f} s"
            raise JoinError(f"could not join PAN 0x{target.pan_id:04X}: {why}")
        self.joins += 1
        LOGGER.info("joined PAN 0x%04X as a router", target.pan_id)

    async def _target(self) -> zigpy.types.NetworkBeacon:
        """The network to join: as given, else the first heard that permits joining."""
        js = self.join_settings
        if js.channel is not None and js.pan_id is not None and js.extended_pan_id is not None:
            return t.NetworkBeacon(pan_id=t.PanId(js.pan_id),
                                   extended_pan_id=t.ExtendedPanId.convert(js.extended_pan_id),
                                   channel=js.channel, permit_joining=True, nwk_update_id=0,
                                   stack_profile=2, lqi=0, rssi=0)
        channels = [js.channel] if js.channel is not None else list(ALL_CHANNELS)
        heard = []
        async for beacon in self.network_scan(t.Channels.from_channel_list(channels),
                                              duration_exp=SCAN_DURATION_EXP):
            heard.append(beacon)
            if not beacon.permit_joining:
                continue
            if js.pan_id is not None and int(beacon.pan_id) != js.pan_id:
                continue
            if js.extended_pan_id is not None and \
                    beacon.extended_pan_id != t.ExtendedPanId.convert(js.extended_pan_id):
                continue
            return beacon
        what = "no network" if not heard else \
            f"{len(heard)} network(s), none permitting joining that matches"
        raise JoinError(f"scan of channel(s) {','.join(map(str, channels))}: {what}")

    @staticmethod
    async def _check(call: Any, name: str) -> None:
        (status, *_) = await call
        if bt.sl_Status.from_ember_status(status) != bt.sl_Status.OK:
            raise JoinError(f"{name}: {status!r}")

    # -- a router's network --------------------------------------------------------------
    async def load_network_info(self, *, load_devices: bool = False) -> None:
        ezsp = self._ezsp
        assert ezsp is not None
        await self._ensure_network_running()
        status, node_type, nwk_params = await ezsp.getNetworkParameters()
        if node_type == bt.EmberNodeType.COORDINATOR:
            raise JoinError("the stick is the coordinator of its own network; a joining "
                            "meter needs a stick that has left it (or a new one)")
        if node_type != bt.EmberNodeType.ROUTER:
            raise zigpy.exceptions.NetworkNotFormed(f"the stick is a {node_type.name}")
        (nwk,) = await ezsp.getNodeId()
        (ieee,) = await ezsp.getEui64()
        (status, security) = await ezsp.getCurrentSecurityState()
        tc_ieee = t.EUI64(security.trustCenterLongAddress)
        network_key = await ezsp.get_network_key()
        tc_link_key = await ezsp.get_tc_link_key()
        tc_link_key.partner_ieee = tc_ieee
        self.state.node_info = zigpy.state.NodeInfo(
            nwk=t.NWK(nwk), ieee=t.EUI64(ieee), logical_type=zdo_t.LogicalType.Router,
            manufacturer="Silicon Labs", model="EZSP router", version=None)
        self._cbke_keys = {}
        async for key in ezsp.read_link_keys():
            self._cbke_keys[t.EUI64(key.partner_ieee)] = bytes(key.key)
        self.state.network_info = zigpy.state.NetworkInfo(
            source="sep-ezsp-joiner",
            extended_pan_id=t.ExtendedPanId(nwk_params.extendedPanId),
            pan_id=t.PanId(nwk_params.panId), nwk_update_id=int(nwk_params.nwkUpdateId),
            nwk_manager_id=t.NWK(nwk_params.nwkManagerId),
            channel=int(nwk_params.radioChannel), channel_mask=t.Channels(nwk_params.channels),
            security_level=5, network_key=network_key, tc_link_key=tc_link_key,
            key_table=[zigpy.state.Key(key=t.KeyData(k), partner_ieee=p)
                       for p, k in self._cbke_keys.items()],
            children=[], nwk_addresses={}, tx_power=nwk_params.radioTxPower,
            stack_specific={}, metadata={"ezsp": {"stack_version": ezsp.ezsp_version}})

    async def start_network(self) -> None:
        """bellows' start-up, less what only a coordinator does: its TCLK "repair" would
        write the router's own IEEE over the trust centre's in the stick's token (and
        reset it), source routing is a concentrator's, the TC policies are the TC's."""
        ezsp = self._ezsp
        assert ezsp is not None
        await self._ensure_network_running()
        await self.load_network_info(load_devices=False)
        for counters in self.state.counters:
            counters.reset()
        ezsp.add_callback(self.ezsp_callback_handler)
        self.controller_event.set()
        node = self.state.node_info
        own = zigpy.device.Device(application=self, ieee=node.ieee, nwk=node.nwk)
        self.devices[node.ieee] = own
        for desc in self._created_device_endpoints:
            ep = EZSPEndpoint.from_descriptor(own, desc.endpoint, desc)
            own.endpoints[desc.endpoint] = ep
            own.model, own.manufacturer = ep.model, ep.manufacturer
        await own.schedule_initialize()
        self._concurrent_requests_semaphore.max_concurrency = \
            await ezsp.get_default_adapter_concurrency()
        # the trust centre is a device we talk to (Key Establishment, the ESI): zigpy
        # learns it from no announcement of ours
        tc = self.state.network_info.tc_link_key.partner_ieee
        if tc not in self.devices:
            self.add_device(tc, t.NWK(0x0000))

    async def permit(self, time_s: int = 60, node: t.EUI64 | str | None = None) -> None:
        """A router opens itself only; the trust centre decides who joins the network."""
        await self.permit_ncp(time_s)

def make_joiner_controller(device: str, *, endpoints: list[zdo_t.SimpleDescriptor],
                           join: JoinSettings, baudrate: int = 115200,
                           flow_control: str | None = None, database_path: str | None = None,
                           use_thread: bool = True) -> EzspJoinerController:
    cfg = ezsp_config(device, endpoints=endpoints, baudrate=baudrate, flow_control=flow_control,
                      database_path=database_path, use_thread=use_thread)
    return EzspJoinerController(cfg, join)
