"""A zigpy ``ControllerApplication`` whose radio is the virtual air.

The same application code runs on it and on a real stick (bellows). Below zigpy it runs
what a stick's firmware runs (``radios/node.py`` through ``radios/shell.py``): NWK and APS
security, joining, the trust centre, APS ACKs and duplicates, the ZDO server with the
binding table, and the device announce after joining.

A coordinator is the trust centre: ``form_network`` forms on the air's channel and PAN
with a random network key; it admits joiners by its policy (``install_code`` — those
given with ``permit_with_install_code`` / ``permit_with_link_key`` or the config's
``install_codes``; ``preconfigured`` — also anyone holding ``preconfigured_key``;
``closed``). A router's ``form_network`` joins instead: it scans its channels for a
network that permits joining and authenticates with its own install code or link key.
A node with a state file rejoins (secured) after a restart and keeps its address.

Incoming packets that arrived APS-encrypted are :class:`SecuredPacket` values:
``tx_options`` has ``APS_Encryption`` and ``aps_partner`` names the device whose link key
protected them (authenticated — unlike the NWK source address, which any holder of the
network key could forge). Outgoing packets are APS-encrypted when ``tx_options`` asks,
or when the host's ``aps_policy`` says their (profile, cluster) needs it.

Configuration (zigpy config dict)::

    {
        "device": {"path": "virtual://default"},      # or "udp://127.0.0.1:PORT"
        "virtual": {
            "ieee": "00:0d:6f:00:00:00:00:01",
            "role": "coordinator" | "router",
            "manufacturer_code": 0x1234,
            "default_endpoints": True,               # zigpy's own endpoints 1/2/242
            "air": <VirtualAir>,                     # optional: this object instead of path
            "state": "DIR/radio.json",               # NV state (None: RAM only)
            "channels": [15],                        # router: where to look for a network
            "pan_id": 0x1A62, "channel": 15,         # coordinator: what to form (air's)
            "network_key": "<32 hex>",               # coordinator (default random)
            "tc_policy": "install_code",             # coordinator
            "install_codes": {"<IEEE>": "<hex>"},    # coordinator: admitted joiners
            "preconfigured_key": "<32 hex>",         # coordinator: the key anyone may
                                                     #   join with (policy preconfigured);
                                                     #   router: the key it joins with
            "install_code": "<hex>",                 # router: its own install code
            "permit_join": 60,                       # coordinator: open at start (s,
                                                     #   or "always": development only)
            "aps_policy": callable(profile, cluster) -> bool,
            "on_key": callable(key: bytes, label: str),  # every key as it comes into use
        },
        "database_path": None,
    }
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from typing import Any

import zigpy.application
import zigpy.config as conf
import zigpy.device
import zigpy.endpoint
import zigpy.exceptions
import zigpy.state
import zigpy.types as t
import zigpy.zdo.types as zdo_t

from radios.air import VirtualAir, named_air
from radios.crypto import link_key_from_install_code
from radios.node import DataIndication, NodeEvent, SecurityError, ZigbeeNode
from radios.shell import DeliveryFailed, JoinFailed, NodeShell
from radios.state import NodeState, NvFile
from radios.zdo_server import NodeIdentity, ZdoServer, device_announce

LOGGER = logging.getLogger(__name__)

ZDO_PROFILE = 0x0000
#: the link key of the development network (``virtual_config``'s default): every node
#: made by ``virtual_config`` without codes joins with it. hubsim and sep use install codes.
DEVELOPMENT_KEY = bytes.fromhex("5a6967426565536570446576656c3031")  # "ZigBeeSepDevel01"


def eui64_to_int(ieee: t.EUI64) -> int:
    return int.from_bytes(bytes(ieee), "little")


def int_to_eui64(value: int) -> t.EUI64:
    return t.EUI64(value.to_bytes(8, "little"))


@dataclasses.dataclass(eq=False)  # keeps ZigbeePacket's equality and hash (zigpy hashes packets)
class SecuredPacket(t.ZigbeePacket):
    """An incoming packet that arrived APS-encrypted under ``aps_partner``'s link key."""

    aps_partner: t.EUI64 | None = dataclasses.field(default=None)
    aps_key_kind: str | None = dataclasses.field(default=None)
    #: the sender's IEEE from the NWK auxiliary header (vouched for by the network key)
    nwk_src_ieee: t.EUI64 | None = dataclasses.field(default=None)


def virtual_config(
    ieee: str | t.EUI64,
    *,
    role: str = "router",
    air: VirtualAir | None = None,
    path: str = "virtual://default",
    manufacturer_code: int = 0x1234,
    default_endpoints: bool = False,
    state: str | None = None,
    install_code: bytes | None = None,
    link_key: bytes | None = None,
    tc_policy: str | None = None,
    permit_join: float | str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A zigpy config for a node on the virtual air, with zigpy's periodic jobs off.

    Without codes or keys the node is on the *development network*: the coordinator admits
    anyone holding :data:`DEVELOPMENT_KEY` and always permits joining, routers join
    with that key. Give ``install_code`` (router) or ``tc_policy="install_code"``
    (coordinator) for an SE network.
    """
    vconf: dict[str, Any] = {
        "ieee": str(ieee), "role": role, "manufacturer_code": manufacturer_code,
        "default_endpoints": default_endpoints, "air": air, "state": state,
    }
    if role == "coordinator":
        vconf["tc_policy"] = tc_policy or "preconfigured"
        if vconf["tc_policy"] == "preconfigured":
            vconf["preconfigured_key"] = (link_key or DEVELOPMENT_KEY).hex()
            vconf["permit_join"] = "always" if permit_join is None else permit_join
        elif permit_join is not None:
            vconf["permit_join"] = permit_join
    elif install_code is not None:
        vconf["install_code"] = bytes(install_code).hex()
    else:
        vconf["preconfigured_key"] = (link_key or DEVELOPMENT_KEY).hex()
    for key in ("channels", "pan_id", "channel", "network_key", "install_codes", "aps_policy",
                "on_key", "join_attempts", "extended_pan_id", "insecure", "link_kind"):
        if key in extra:
            vconf[key] = extra.pop(key)
    cfg: dict[str, Any] = {
        conf.CONF_DEVICE: {conf.CONF_DEVICE_PATH: path},
        conf.CONF_DATABASE: None,
        conf.CONF_NWK_BACKUP_ENABLED: False,
        conf.CONF_TOPO_SCAN_ENABLED: False,
        conf.CONF_WATCHDOG_ENABLED: False,
        conf.CONF_OTA: {conf.CONF_OTA_ENABLED: False},
        conf.CONF_STARTUP_ENERGY_SCAN: False,
        "virtual": vconf,
    }
    cfg.update(extra)
    return cfg


class VirtualControllerApplication(zigpy.application.ControllerApplication):
    """A zigpy application on the virtual air (coordinator/trust centre, or router)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._vconf: dict[str, Any] = dict(config.get("virtual") or {})
        super().__init__(config)
        self._air: VirtualAir | None = None
        self._link: Any = None
        self._endpoints: dict[int, zdo_t.SimpleDescriptor] = {}
        self._zdo_tsn = 0
        self._identity: NodeIdentity | None = None
        self.node: ZigbeeNode | None = None
        self.shell: NodeShell | None = None
        self._on_key = self._vconf.get("on_key")

    # -- identity --------------------------------------------------------------------
    @property
    def is_coordinator(self) -> bool:
        return self._vconf.get("role", "router") == "coordinator"

    def _ieee(self) -> t.EUI64:
        ieee = self._vconf.get("ieee")
        if ieee is None:
            raise zigpy.exceptions.ControllerException("virtual radio needs an IEEE address")
        return t.EUI64.convert(str(ieee))

    @property
    def air(self) -> VirtualAir:
        assert self._air is not None, "not connected"
        return self._air

    @property
    def security_stats(self) -> dict[str, int]:
        """Frames dropped and why (MIC failures, replays, unsecured frames...)."""
        return dict(self.node.stats) if self.node is not None else {}

    # -- connection ------------------------------------------------------------------
    async def connect(self) -> None:
        air = self._vconf.get("air")
        path: str = self.config[conf.CONF_DEVICE][conf.CONF_DEVICE_PATH]
        if air is None:
            if path.startswith("virtual://"):
                air = named_air(path[len("virtual://") :] or "default")
            elif path.startswith("udp://"):
                from radios.udp import connect_udp

                host, _, port = path[len("udp://") :].rpartition(":")
                air = VirtualAir()
                self._link = await connect_udp(air, host or "127.0.0.1", int(port))
            else:
                raise zigpy.exceptions.ControllerException(
                    f"virtual radio path must be virtual://NAME or udp://HOST:PORT, not {path!r}"
                )
        self._air = air
        ieee = self._ieee()
        nv = NvFile(self._vconf.get("state"))
        state = nv.load()
        if state is not None and state.ieee != eui64_to_int(ieee):
            LOGGER.warning("radio state is for another IEEE address: not used")
            state = None
        if state is None:
            state = NodeState(ieee=eui64_to_int(ieee),
                              logical_type="coordinator" if self.is_coordinator else "router",
                              channel=int(self._vconf.get("channel") or air.channel))
        self._configure_keys(state)
        self._identity = NodeIdentity(
            ieee=ieee, nwk=state.nwk,
            logical_type=(
                zdo_t.LogicalType.Coordinator if self.is_coordinator else zdo_t.LogicalType.Router
            ),
            manufacturer_code=self._vconf.get("manufacturer_code", 0x1234),
            endpoints=self._endpoints,
        )
        zdo = ZdoServer(self._identity, state.bindings)
        insecure = bool(self._vconf.get("insecure"))  # bench/ only: what security costs
        self.node = ZigbeeNode(state, nv, zdo=zdo,
                               aps_policy=None if insecure else self._vconf.get("aps_policy"),
                               nwk_security=not insecure,
                               link_kind=None if insecure else self._vconf.get("link_kind"))
        zdo.on_change = self.node._mark_dirty
        self.shell = NodeShell(air, self.node, on_data=self._on_data, on_event=self._on_event)
        self.shell.start()
        LOGGER.info("virtual radio %s on the air (channel %d)", ieee, state.channel)

    def _configure_keys(self, state: NodeState) -> None:
        """The keys of the configuration: the trust centre's admitted devices and policy,
        a router's own join key."""
        v = self._vconf
        if self.is_coordinator:
            state.tc_policy = v.get("tc_policy", state.tc_policy)
            from radios.state import LinkKeyEntry
            from radios.trust_center import ANY_DEVICE

            if v.get("preconfigured_key"):
                state.admitted[ANY_DEVICE] = LinkKeyEntry(v["preconfigured_key"], "preconfigured")
            for ieee, code in (v.get("install_codes") or {}).items():
                key = link_key_from_install_code(bytes.fromhex(str(code)))
                state.admitted[eui64_to_int(t.EUI64.convert(str(ieee)))] = LinkKeyEntry(
                    key.hex(), "install_code")
        elif v.get("install_code"):
            state.join_key = link_key_from_install_code(bytes.fromhex(v["install_code"])).hex()
            state.join_key_kind = "install_code"
        elif v.get("preconfigured_key"):
            state.join_key = v["preconfigured_key"]
            state.join_key_kind = "preconfigured"

    async def disconnect(self) -> None:
        if self.shell is not None:
            await self.shell.stop()
            self.shell = None
        if self._link is not None:
            self._link.close()
            self._link = None

    def _report_keys(self) -> None:
        """Tell the air (a capture's key log) and ``on_key`` every key in use now."""
        if self.node is None or self._air is None:
            return
        report_node_keys(self.node, self._air, self._on_key)

    # -- network state -----------------------------------------------------------------
    async def load_network_info(self, *, load_devices: bool = False) -> None:
        if self.node is None or self._identity is None:
            raise zigpy.exceptions.NetworkNotFormed("not connected")
        st = self.node.state
        if not st.joined:
            raise zigpy.exceptions.NetworkNotFormed("no network yet")
        self._identity.nwk = st.nwk
        self.state.node_info = zigpy.state.NodeInfo(
            nwk=t.NWK(st.nwk),
            ieee=self._identity.ieee,
            logical_type=self._identity.logical_type,
            model="Virtual radio",
            manufacturer="sep",
            version="1",
        )
        keys = self.node.keys
        nwk_key = keys.network_key() or bytes(16)
        tc_link = keys.link_key(st.tc_ieee)
        tc_partner = int_to_eui64(st.tc_ieee) if st.tc_ieee is not None else t.EUI64.UNKNOWN
        self.state.network_info = zigpy.state.NetworkInfo(
            extended_pan_id=t.ExtendedPanId(st.extended_pan_id.to_bytes(8, "little")),
            pan_id=t.PanId(st.pan_id),
            nwk_update_id=st.nwk_update_id,
            nwk_manager_id=t.NWK(0x0000),
            channel=st.channel,
            channel_mask=t.Channels.from_channel_list([st.channel]),
            security_level=5,
            network_key=zigpy.state.Key(key=t.KeyData(nwk_key), seq=keys.active_seq,
                                        tx_counter=keys.nwk_tx.value),
            tc_link_key=zigpy.state.Key(
                key=t.KeyData(bytes.fromhex(tc_link.key) if tc_link else bytes(16)),
                partner_ieee=tc_partner, tx_counter=keys.aps_tx.value,
                rx_counter=max(tc_link.rx, 0) if tc_link else 0),
            key_table=[
                zigpy.state.Key(key=t.KeyData(bytes.fromhex(e.key)), partner_ieee=int_to_eui64(p),
                                rx_counter=max(e.rx, 0), tx_counter=keys.aps_tx.value)
                for p, e in st.link_keys.items() if p != st.tc_ieee],
            children=[int_to_eui64(i) for i, d in st.devices.items()
                      if d.get("parent") == st.nwk],
            nwk_addresses={int_to_eui64(i): t.NWK(n) for n, i in st.address_map.items()},
            stack_specific={"sep": {"tc_policy": st.tc_policy}} if self.is_coordinator else {},
        )

    async def write_network_info(self, *, network_info, node_info) -> None:
        """Form with the given settings (zigpy's form_network and backup restore)."""
        if not self.is_coordinator:
            raise zigpy.exceptions.ControllerException("only a coordinator forms a network")
        assert self.node is not None
        self.node.form(
            pan_id=int(network_info.pan_id),
            extended_pan_id=int.from_bytes(bytes(network_info.extended_pan_id), "little"),
            channel=int(network_info.channel), network_key=bytes(network_info.network_key.key),
            key_seq=int(network_info.network_key.seq))
        self._after_address_change()

    async def form_network(self, *, fast: bool = False) -> None:
        """Coordinator: form on the air's PAN and channel. Router: join a network."""
        assert self.node is not None and self.shell is not None
        v = self._vconf
        if self.is_coordinator:
            key = bytes.fromhex(v["network_key"]) if v.get("network_key") else secrets.token_bytes(16)
            self.node.form(pan_id=int(v.get("pan_id") or self.air.pan_id),
                           extended_pan_id=int(v.get("extended_pan_id")
                                               or eui64_to_int(self._ieee())),
                           channel=int(v.get("channel") or self.air.channel), network_key=key)
            LOGGER.info("formed PAN 0x%04X on channel %d", self.node.state.pan_id,
                        self.node.state.channel)
        else:
            channels = list(v.get("channels") or [self.air.channel])
            if self.node.state.join_key is None:
                raise zigpy.exceptions.ControllerException(
                    "no install code or link key to join with")
            try:
                await self.shell.join(channels, extended_pan_id=v.get("extended_pan_id"),
                                      attempts=int(v.get("join_attempts", 3)))
            except JoinFailed as exc:
                raise zigpy.exceptions.FormationFailure(f"could not join: {exc}") from exc
        self._after_address_change()

    def _after_address_change(self) -> None:
        if self.shell is not None:
            self.shell.pump()
        if self._identity is not None and self.node is not None:
            self._identity.nwk = self.node.state.nwk
        self._report_keys()

    async def reset_network_info(self) -> None:
        if self.node is not None:
            self.node.leave()
            if self.shell is not None:
                self.shell.pump()

    async def initialize(self, *, auto_form: bool = False) -> None:
        # on the virtual air a node without a network always makes one: a coordinator
        # forms on the air's PAN and channel, a router (which never forms) joins
        await super().initialize(auto_form=True)
        # zigpy closes joining at the end of start-up ("some radios permit joins on
        # startup"); a configured opening applies after that
        permit = self._vconf.get("permit_join")
        if self.is_coordinator and permit and self.node is not None:
            if permit == "always":
                self.node.always_permit = True
            else:
                self.node.permit(float(permit))

    async def register_endpoints(self) -> None:
        if self._vconf.get("default_endpoints", False):
            await super().register_endpoints()
        else:
            for endpoint in self.config[conf.CONF_ADDITIONAL_ENDPOINTS]:
                await self.add_endpoint(endpoint)

    async def add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        self._endpoints[descriptor.endpoint] = descriptor

    async def start_network(self) -> None:
        assert self.node is not None and self.shell is not None
        await self.register_endpoints()
        if not self.node.state.joined:
            raise zigpy.exceptions.NetworkNotFormed("no network")
        if not self.is_coordinator and self.node.status != "joined":
            try:
                await self.shell.rejoin()
            except JoinFailed as exc:
                # our network is gone (a new trust centre, a new key): join anew, as the
                # key we join with allows
                LOGGER.warning("secured rejoin failed (%s): joining anew", exc)
                self.node.leave()
                self.shell.pump()
                await self.form_network()
        self.node.status = "joined"
        self._after_address_change()
        await self.load_network_info()
        node = self.state.node_info
        dev = zigpy.device.Device(self, node.ieee, node.nwk)
        self.devices[node.ieee] = dev
        for ep_id, desc in self._endpoints.items():
            ep = dev.add_endpoint(ep_id)
            ep.profile_id = desc.profile
            ep.device_type = desc.device_type
            for cid in desc.input_clusters:
                ep.add_input_cluster(cid)
            for cid in desc.output_clusters:
                ep.add_output_cluster(cid)
            ep.status = zigpy.endpoint.Status.ZDO_INIT
        dev.node_desc = self._identity.node_descriptor() if self._identity else None
        if not self.is_coordinator:
            await self.announce()

    async def announce(self) -> None:
        """Broadcast a ZDO Device_annce, as a node does after (re)joining."""
        assert self._identity is not None and self.node is not None and self.shell is not None
        self._zdo_tsn = (self._zdo_tsn + 1) & 0xFF
        out = self.node.data_frame(dst_nwk=0xFFFD, profile=ZDO_PROFILE,
                                   cluster=zdo_t.ZDOCmd.Device_annce, src_ep=0, dst_ep=0,
                                   payload=device_announce(self._identity, self._zdo_tsn),
                                   aps_secure=False)
        await self.shell.send(out)

    def _persist_coordinator_model_strings_in_db(self) -> None:
        # zigpy assumes its own endpoint 1 exists; a node without one has nothing to persist.
        if 1 in self._device.endpoints:
            super()._persist_coordinator_model_strings_in_db()

    async def force_remove(self, dev: zigpy.device.Device) -> None:
        if self.node is not None and self.node.is_trust_center:
            self.node.remove_device(eui64_to_int(dev.ieee))
            self._pump()

    async def permit(self, time_s: int = 60, node: t.EUI64 | str | None = None) -> None:
        """The coordinator opens the network (zigpy's broadcast); a router only itself."""
        if self.is_coordinator:
            await super().permit(time_s, node)
        else:
            await self.permit_ncp(time_s)

    async def permit_ncp(self, time_s: int = 60) -> None:
        if self.node is not None:
            self.node.permit(float(time_s))

    async def permit_with_link_key(self, node: t.EUI64, link_key: t.KeyData, time_s: int = 60):
        """Admit ``node`` with ``link_key`` (zigpy derives it from an install code) and
        permit joining."""
        if self.node is None or not self.node.is_trust_center:
            raise zigpy.exceptions.ControllerException("only the trust centre admits devices")
        self.node.admit_key(eui64_to_int(node), bytes(link_key), "install_code")
        self.node.permit(float(time_s))
        self._report_keys()

    # -- security management (trust centre) -------------------------------------------------
    def _pump(self) -> None:
        if self.shell is not None:
            self.shell.pump()
        self._report_keys()

    def update_network_key(self, key: bytes | None = None) -> int:
        assert self.node is not None
        seq = self.node.update_network_key(key)
        self._pump()
        return seq

    def switch_network_key(self, seq: int) -> None:
        assert self.node is not None
        self.node.switch_network_key(seq)
        self._pump()

    async def request_link_key(self, partner: t.EUI64) -> None:
        """Ask the trust centre for an application link key with ``partner`` (APS
        Request Key); returns when it is installed."""
        assert self.node is not None and self.shell is not None
        from radios import aps

        partner_int = eui64_to_int(partner)
        out = self.node.command_frame(0x0000, aps.RequestKey(
            aps.RequestKeyType.APPLICATION_LINK, partner_int).encode(),
            partner=self.node.state.tc_ieee)
        await self.shell.send(out)
        if partner_int not in self.node.state.link_keys:
            await self.shell.wait_event({"key_installed"}, 3.0)
        self._report_keys()

    def has_link_key(self, partner: t.EUI64, kind: str | None = None) -> bool:
        """Whether we hold a link key with ``partner`` (of ``kind``, when given)."""
        if self.node is None:
            return False
        entry = self.node.state.link_keys.get(eui64_to_int(partner))
        return entry is not None and (kind is None or entry.kind == kind)

    def forget_link_key(self, partner: t.EUI64) -> None:
        """No link key with ``partner`` any more (before keying with it again)."""
        assert self.node is not None
        self.node.keys.forget_link_key(eui64_to_int(partner))
        self.node.persist()

    def install_link_key(self, partner: t.EUI64, key: bytes, kind: str = "cbke") -> None:
        """Use ``key`` for APS security with ``partner`` from now on (Key Establishment's
        result: SE's `clearTemporaryDataMaybeStoreLinkKey`), kept across restarts."""
        assert self.node is not None
        if len(key) != 16:
            raise ValueError("a link key is 16 bytes")
        self.node.keys.set_link_key(eui64_to_int(partner), bytes(key), kind)
        self.node.persist()
        self._report_keys()

    def bindings_for(self, src_ep: int, cluster: int) -> list[tuple[t.EUI64, int]]:
        """(device, endpoint) bound to our (endpoint, cluster) (unicast bindings)."""
        if self.node is None or self.node.zdo is None:
            return []
        return [(int_to_eui64(b.dst_ieee), b.dst_ep or 0)
                for b in self.node.zdo.bindings_for(src_ep, cluster)
                if b.dst_ieee is not None]

    def nwk_of(self, ieee: t.EUI64) -> int | None:
        if self.node is None:
            return None
        nwk = self.node.nwk_of(eui64_to_int(ieee))
        if nwk is None:
            try:
                nwk = int(self.get_device(ieee=ieee).nwk)
            except KeyError:
                return None
        return nwk

    # -- sending -----------------------------------------------------------------------
    def _resolve_dst(self, dst: t.AddrModeAddress) -> int:
        if dst.addr_mode in (t.AddrMode.NWK, t.AddrMode.Broadcast):
            return int(dst.address)
        if dst.addr_mode == t.AddrMode.IEEE:
            nwk = self.nwk_of(dst.address)
            if nwk is None:
                raise zigpy.exceptions.DeliveryError(
                    f"no route to {dst.address}", status=t.MACStatus.MAC_NO_ACK)
            return nwk
        if dst.addr_mode == t.AddrMode.Group:
            return 0xFFFD  # groups ride on broadcasts on the virtual air
        raise zigpy.exceptions.DeliveryError(f"unsupported address {dst!r}")

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        if self.node is None or self.shell is None:
            raise zigpy.exceptions.DeliveryError("virtual radio is not connected")
        dst_nwk = self._resolve_dst(packet.dst)
        if dst_nwk == self.node.state.nwk:  # to ourselves: the stack loops it back
            for ind in self.node.loopback(profile=int(packet.profile_id),
                                          cluster=int(packet.cluster_id),
                                          src_ep=int(packet.src_ep or 0),
                                          dst_ep=int(packet.dst_ep or 0),
                                          payload=bytes(packet.data.serialize())):
                asyncio.get_running_loop().call_soon(self._on_data, ind)
            return
        want_ack = bool(packet.tx_options & t.TransmitOptions.ACK) and dst_nwk < 0xFFF8
        secure = True if packet.tx_options & t.TransmitOptions.APS_Encryption else None
        try:
            out = self.node.data_frame(
                dst_nwk=dst_nwk, profile=int(packet.profile_id), cluster=int(packet.cluster_id),
                src_ep=int(packet.src_ep or 0), dst_ep=int(packet.dst_ep or 0),
                payload=bytes(packet.data.serialize()), ack=want_ack, aps_secure=secure,
                radius=int(packet.radius or 30))
        except SecurityError as exc:
            raise zigpy.exceptions.DeliveryError(str(exc)) from exc
        try:
            await self.shell.send(out)
        except DeliveryFailed as exc:
            raise zigpy.exceptions.DeliveryError(str(exc), status=t.MACStatus.MAC_NO_ACK) \
                from None

    # -- receiving ---------------------------------------------------------------------
    def _on_event(self, ev: NodeEvent) -> None:
        d = ev.details
        if ev.kind == "device_joined" and self.is_coordinator:
            self.handle_join(t.NWK(d["nwk"]), int_to_eui64(d["ieee"]), t.NWK(d["parent"]))
        elif ev.kind in ("device_left", "device_removed") and "ieee" in d:
            self.handle_leave(t.NWK(d.get("nwk", 0xFFFE)), int_to_eui64(d["ieee"]))
        if ev.kind == "address_changed":  # an address conflict resolved (3.6.1.9)
            if self._identity is not None:
                self._identity.nwk = d["nwk"]
            if self.state.node_info.nwk is not None:
                self.state.node_info.nwk = t.NWK(d["nwk"])
                own = self.devices.get(self.state.node_info.ieee)
                if own is not None:
                    own.nwk = t.NWK(d["nwk"])
        if ev.kind in ("key_installed", "network_key_received", "device_joined", "joined"):
            self._report_keys()

    def _on_data(self, ind: DataIndication) -> None:
        if ind.broadcast:
            dst = t.AddrModeAddress(addr_mode=t.AddrMode.Broadcast,
                                    address=t.BroadcastAddress(ind.dst_nwk))
        else:
            dst = t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(ind.dst_nwk))
        secured = ind.aps_partner is not None
        packet = SecuredPacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(ind.src_nwk)),
            src_ep=t.uint8_t(ind.src_ep),
            dst=dst,
            dst_ep=t.uint8_t(ind.dst_ep),
            tsn=t.uint8_t(_tsn_of(ind)),
            profile_id=t.uint16_t(ind.profile),
            cluster_id=t.uint16_t(ind.cluster),
            data=t.SerializableBytes(ind.payload),
            tx_options=(t.TransmitOptions.APS_Encryption if secured
                        else t.TransmitOptions.NONE),
            radius=t.uint8_t(ind.radius),
            lqi=255,
            rssi=-40,
            aps_partner=int_to_eui64(ind.aps_partner) if secured else None,
            aps_key_kind=ind.aps_key_kind,
            nwk_src_ieee=int_to_eui64(ind.src_ieee) if ind.src_ieee is not None else None,
        )
        self.packet_received(packet)


def report_node_keys(node: ZigbeeNode, air: VirtualAir,
                     extra: Any = None) -> None:
    """Every key ``node`` holds, to the air's key registry (and ``extra``)."""
    st = node.state
    name = f"{st.ieee:016x}"

    def report(key: str, label: str) -> None:
        air.report_key(bytes.fromhex(key), label)
        if extra is not None:
            extra(bytes.fromhex(key), label)

    for seq, key in st.network_keys.items():
        report(key, f"network key {seq}")
    for partner, entry in st.link_keys.items():
        report(entry.key, f"{entry.kind} {name}-{partner:016x}")
    if st.join_key:
        report(st.join_key, f"{st.join_key_kind} key of {name}")
    for ieee, entry in st.admitted.items():
        report(entry.key, f"{entry.kind} key of {ieee:016x}")


def _tsn_of(ind: DataIndication) -> int:
    """The transaction sequence number: ZDO byte 0, ZCL after the (manufacturer) header."""
    data = ind.payload
    if ind.profile == ZDO_PROFILE:
        return data[0] if data else 0
    index = 3 if data and data[0] & 0x04 else 1
    return data[index] if len(data) > index else 0


async def wait_joined(app: VirtualControllerApplication, timeout: float = 5.0) -> None:
    """Until the node is up (used by hosts that start many nodes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while app.node is None or not app.node.joined:
        if loop.time() > deadline:
            raise TimeoutError("node did not join")
        await asyncio.sleep(0.01)
