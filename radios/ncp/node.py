"""The emulated NCP's radio: the coordinator and trust centre on the virtual air.

This is the part of the "firmware" below EZSP: it implements
:class:`radios.ncp.ezsp.Radio` on the same Zigbee PRO stack the zigpy radio uses
(``radios/node.py``: NWK and APS security, joining, the trust centre). The network,
keys and policies come from what the host set over EZSP (``NcpState``, the transient
keys of ``importTransientKey``, the ``TRUST_CENTER_POLICY`` decision): ``install_code``
when the decision says ``JOINS_USE_INSTALL_CODE_KEY``, ``preconfigured`` (the TC link
key the network was formed with) when it says ``ALLOW_JOINS``, else closed.

Sending: ``sendUnicast``/``sendBroadcast`` become APS data frames (APS-encrypted when the
host's ``APS_OPTION_ENCRYPTION`` asks); a unicast with APS retries waits for the APS
ACK (three attempts), then ``messageSentHandler`` reports success or
``DELIVERY_FAILED``. Receiving: data frames become ``incomingMessageHandler`` (with
``APS_OPTION_ENCRYPTION`` set when they arrived APS-encrypted); ZDO requests are answered
here from the endpoints the host registered and, as ``CONFIG_APPLICATION_ZDO_FLAGS``
asks, passed up too; a device the trust centre admits is reported with
``trustCenterJoinHandler``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import bellows.types as bt
import zigpy.types as zt
import zigpy.zdo.types as zdo_t

from radios.air import VirtualAir
from radios.ncp.ezsp import EzspNcp
from radios.ncp.state import NcpState
from radios.node import DataIndication, NodeEvent, SecurityError, ZigbeeNode
from radios.shell import DeliveryFailed, JoinFailed, NodeShell
from radios.state import LinkKeyEntry, NodeState
from radios.trust_center import ANY_DEVICE
from radios.virtual import eui64_to_int, int_to_eui64, report_node_keys
from radios.zdo_server import NodeIdentity, ZdoServer, encode

LOGGER = logging.getLogger(__name__)

ZDO_PROFILE = 0x0000
APS_ACK_WAIT = 0.8  # seconds per attempt; bellows gives up on messageSentHandler after 3 s
APS_ATTEMPTS = 3
COORDINATOR_NWK = 0x0000
GLOBAL_LINK_KEY = b"ZigBeeAlliance09"  # the well-known key joins use under a global TC policy

S = bt.sl_Status
Counter = bt.EmberCounterType
Decision = bt.EzspDecisionBitmask


class NcpZdoServer(ZdoServer):
    """The ZDO server of the NCP firmware: also describes endpoints above 0xF0, and passes
    requests up to the host as ``CONFIG_APPLICATION_ZDO_FLAGS`` asks."""

    zdo_flags: Callable[[], int] = staticmethod(lambda: 0)  # type: ignore[assignment]

    SUPPORTED = (
        zdo_t.ZDOCmd.NWK_addr_req, zdo_t.ZDOCmd.IEEE_addr_req, zdo_t.ZDOCmd.Node_Desc_req,
        zdo_t.ZDOCmd.Power_Desc_req, zdo_t.ZDOCmd.Simple_Desc_req, zdo_t.ZDOCmd.Active_EP_req,
        zdo_t.ZDOCmd.Match_Desc_req, zdo_t.ZDOCmd.Mgmt_Lqi_req, zdo_t.ZDOCmd.Mgmt_Rtg_req,
        zdo_t.ZDOCmd.Mgmt_Permit_Joining_req, zdo_t.ZDOCmd.Bind_req, zdo_t.ZDOCmd.Unbind_req,
        zdo_t.ZDOCmd.Mgmt_Bind_req,
    )

    def handle(self, cluster_id: int, data: bytes, *, broadcast: bool) -> list[tuple[int, bytes]]:
        flags = bt.EmberZdoConfigurationFlags(self.zdo_flags())
        if cluster_id not in self.SUPPORTED and \
                flags & bt.EmberZdoConfigurationFlags.APP_HANDLES_UNSUPPORTED_ZDO_REQUESTS:
            return []  # the host answers what the firmware does not
        return super().handle(cluster_id, data, broadcast=broadcast)

    def passes_up(self, cluster_id: int) -> bool:
        flags = bt.EmberZdoConfigurationFlags(self.zdo_flags())
        if cluster_id in self.SUPPORTED:
            return bool(flags & bt.EmberZdoConfigurationFlags.APP_RECEIVES_SUPPORTED_ZDO_REQUESTS)
        return bool(flags & bt.EmberZdoConfigurationFlags.APP_HANDLES_UNSUPPORTED_ZDO_REQUESTS)

    def _on_Simple_Desc_req(self, tsn, nwk, endpoint, *, broadcast):  # noqa: N802
        desc = self.node.endpoints.get(endpoint)
        if nwk == self.node.nwk and desc is not None and endpoint > 0xF0:
            sized = zdo_t.SizePrefixedSimpleDescriptor(*desc.as_tuple())
            return encode(zdo_t.ZDOCmd.Simple_Desc_rsp, tsn, zdo_t.Status.SUCCESS, zt.NWK(nwk),
                          sized)
        return super()._on_Simple_Desc_req(tsn, nwk, endpoint, broadcast=broadcast)


class _NcpNv:
    """The node's NV state lives in the NCP's state file (``NcpState.radio``)."""

    def __init__(self, owner: NcpNode) -> None:
        self.owner = owner
        self.writes = 0

    def save(self, state: NodeState) -> None:
        ncp_state = self.owner.state
        ncp_state.radio = state.to_json()
        ncp_state.nwk_frame_counter = state.nwk_tx_reserved
        ncp_state.aps_frame_counter = state.aps_tx_reserved
        self.writes += 1
        if self.owner.ncp is not None:
            self.owner.ncp.on_persist()


class NcpNode:
    """The NCP's stack below EZSP, attached to ``air`` while the network is up."""

    def __init__(self, air: VirtualAir, state: NcpState, *,
                 on_output: Callable[[], None] = lambda: None,
                 aps_ack_wait: float = APS_ACK_WAIT) -> None:
        self.air = air
        self.state = state
        self.on_output = on_output
        self.aps_ack_wait = aps_ack_wait
        self.ncp: EzspNcp | None = None
        self.node: ZigbeeNode | None = None
        self.shell: NodeShell | None = None
        self.zdo: NcpZdoServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.frames_sent = 0
        self.frames_received = 0
        self.identity: NodeIdentity | None = None
        self._joining: asyncio.Task[Any] | None = None
        self._imported: set[int] = set()
        self.rejoins_or_joins: list[str] = []  # "join" / "rejoin", in order (tests, logs)

    def bind(self, ncp: EzspNcp) -> None:
        self.ncp = ncp

    @property
    def port(self) -> Any:
        return self.shell.port if self.shell is not None else None

    # -- Radio: network up / down --------------------------------------------------------
    @property
    def is_router(self) -> bool:
        return self.state.node_type == "router"

    @property
    def nwk(self) -> int:
        if self.node is not None and self.is_router:
            return self.node.state.nwk
        return COORDINATOR_NWK

    @property
    def joining(self) -> bool:
        return self._joining is not None and not self._joining.done()

    def _stored_state(self) -> NodeState | None:
        st = self.state
        node_state = None
        if st.radio:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                node_state = NodeState.from_json(st.radio)
        if node_state is None or node_state.ieee != eui64_to_int(zt.EUI64(st.ieee)):
            return None
        return node_state

    def _node_state(self) -> NodeState:
        st = self.state
        ieee = eui64_to_int(zt.EUI64(st.ieee))
        node_state = self._stored_state()
        if node_state is None or node_state.pan_id != st.pan_id:
            node_state = NodeState(ieee=ieee)
        node_state.logical_type = "coordinator"
        node_state.pan_id, node_state.channel = st.pan_id, st.channel
        node_state.extended_pan_id = eui64_to_int(zt.EUI64.convert(st.extended_pan_id))
        node_state.nwk, node_state.tc_ieee, node_state.joined = COORDINATOR_NWK, ieee, True
        node_state.network_keys = {st.network_key_seq: st.network_key}
        node_state.active_key_seq = st.network_key_seq
        self._counters_ahead(node_state)
        return node_state

    def _counters_ahead(self, node_state: NodeState) -> None:
        # the boot jump of NcpState.load() applies to the node's counters too
        st = self.state
        node_state.nwk_tx_reserved = max(node_state.nwk_tx_reserved, st.nwk_frame_counter)
        node_state.aps_tx_reserved = max(node_state.aps_tx_reserved, st.aps_frame_counter)

    def _router_state(self, *, fresh: bool) -> NodeState:
        """The router's stack state: a new one to join with (the preconfigured key the host
        set with setInitialSecurityState), or the joined one kept in NV."""
        st = self.state
        node_state = None if fresh else self._stored_state()
        if node_state is None:
            node_state = NodeState(ieee=eui64_to_int(zt.EUI64(st.ieee)), logical_type="router",
                                   channel=st.channel)
        node_state.logical_type = "router"
        node_state.join_key = st.tc_link_key
        node_state.join_key_kind = "preconfigured"  # the key the host gave (install code's)
        self._counters_ahead(node_state)
        return node_state

    def _start_node(self, node_state: NodeState, status: str = "down") -> None:
        """The stack on the air with ``node_state``, in ``status``."""
        assert self.ncp is not None
        self.network_down()
        router = node_state.logical_type == "router"
        identity = NodeIdentity(
            ieee=zt.EUI64(self.state.ieee), nwk=node_state.nwk,
            logical_type=zdo_t.LogicalType.Router if router else zdo_t.LogicalType.Coordinator,
            manufacturer_code=self.ncp.manufacturer_code, endpoints=self.ncp.endpoints)
        self.identity = identity
        self.zdo = NcpZdoServer(identity, node_state.bindings)
        ncp = self.ncp
        self.zdo.zdo_flags = lambda: ncp.config.get(  # type: ignore[method-assign]
            int(bt.EzspConfigId.CONFIG_APPLICATION_ZDO_FLAGS), 0)
        self.node = ZigbeeNode(node_state, _NcpNv(self), zdo=self.zdo)  # type: ignore[arg-type]
        self.node.status = status
        self.zdo.on_change = self.node._mark_dirty
        self._imported = set()
        self.link_keys_changed()
        self._sync_policy()
        self.shell = NodeShell(self.air, self.node, on_data=self._on_data,
                               on_event=self._on_event)
        self.shell.start()

    def network_up(self) -> None:
        """The coordinator's network (formed, or resumed after a reset) on the air."""
        self._start_node(self._node_state(), "joined")
        self._report_keys()
        if (self.state.pan_id, self.state.channel) != (self.air.pan_id, self.air.channel):
            LOGGER.info("NCP network is PAN 0x%04X on channel %d (the air's default is PAN "
                        "0x%04X, channel %d)", self.state.pan_id, self.state.channel,
                        self.air.pan_id, self.air.channel)

    # -- the router role ----------------------------------------------------------------------
    def join(self, done: Callable[[bool, str], None]) -> None:
        """joinNetwork: associate on the state's channel with the PAN it names (an extended
        PAN id of zeros: any that permits joining), take the network key from the trust
        centre under the preconfigured key; ``done(ok, why)``."""
        st = self.state
        self._start_node(self._router_state(fresh=True))
        xpan = eui64_to_int(zt.EUI64.convert(st.extended_pan_id))
        self._joining = self._spawn(self._join(done, [st.channel], xpan or None, st.pan_id))

    async def _join(self, done: Callable[[bool, str], None], channels: list[int],
                    xpan: int | None, pan_id: int) -> None:
        shell, node = self.shell, self.node
        assert shell is not None and node is not None
        try:
            await shell.join(channels, extended_pan_id=xpan, attempts=2)
        except JoinFailed as exc:
            self.network_down()
            done(False, str(exc))
            self.on_output()
            return
        if pan_id not in (0xFFFF, node.state.pan_id):
            LOGGER.info("NCP: joined PAN 0x%04X (the host named 0x%04X)", node.state.pan_id,
                        pan_id)
        self._took_network(node)
        self.rejoins_or_joins.append("join")
        done(True, "joined")
        self.on_output()

    def _took_network(self, node: ZigbeeNode) -> None:
        """What the router learned by joining goes into the NCP's tokens."""
        st, ns = self.state, node.state
        st.pan_id, st.channel = ns.pan_id, ns.channel
        st.extended_pan_id = str(int_to_eui64(ns.extended_pan_id))
        st.network_key_seq = ns.active_key_seq
        st.network_key = ns.network_keys.get(ns.active_key_seq, st.network_key)
        if ns.tc_ieee is not None:
            st.tc_eui64 = str(int_to_eui64(ns.tc_ieee))
        if self.identity is not None:
            self.identity.nwk = ns.nwk
        node.persist()
        self._report_keys()

    def resume(self, done: Callable[[bool, str], None]) -> None:
        """networkInit of a joined router: back with the stored keys and a secured rejoin
        (NWK Rejoin under the network key), never a new join. A router whose parent does
        not answer resumes on its stored network all the same, as EmberZNet's does."""
        self._start_node(self._router_state(fresh=False))
        self._joining = self._spawn(self._resume(done))

    async def _resume(self, done: Callable[[bool, str], None]) -> None:
        shell, node = self.shell, self.node
        assert shell is not None and node is not None
        if not node.state.joined:
            self.network_down()
            done(False, "no network in NV")
            self.on_output()
            return
        try:
            await shell.rejoin()
            self.rejoins_or_joins.append("rejoin")
            why = "resumed (secured rejoin)"
        except JoinFailed as exc:
            LOGGER.warning("NCP: secured rejoin failed (%s): resuming on the stored network",
                           exc)
            why = "resumed (no parent answered the rejoin)"
        node.status = "joined"
        shell.pump()
        self._took_network(node)
        done(True, why)
        self.on_output()

    def scan(self, channels: list[int],
             found: Callable[[bt.EmberZigbeeNetwork, int, int], None],
             done: Callable[[], None]) -> None:
        """An active scan: a Beacon Request on each channel; each network heard once."""
        node_state = NodeState(ieee=eui64_to_int(zt.EUI64(self.state.ieee)), logical_type="router")
        self._start_node(node_state)
        self._joining = self._spawn(self._scan(channels, found, done))

    async def _scan(self, channels: list[int],
                    found: Callable[[bt.EmberZigbeeNetwork, int, int], None],
                    done: Callable[[], None]) -> None:
        shell = self.shell
        assert shell is not None
        try:
            beacons = await shell.scan(channels)
        finally:
            self.network_down()
        seen: set[tuple[int, int, int]] = set()
        for channel, beacon in beacons:
            key = (channel, beacon.pan_id, beacon.extended_pan_id)
            if key in seen:
                continue
            seen.add(key)
            found(bt.EmberZigbeeNetwork(
                channel=channel, panId=bt.EmberPanId(beacon.pan_id),
                extendedPanId=bt.ExtendedPanId(int_to_eui64(beacon.extended_pan_id)),
                allowingJoin=bt.Bool(bool(beacon.permit_joining)), stackProfile=2,
                nwkUpdateId=0), 255, -40)
        done()
        self.on_output()

    def leave(self) -> None:
        if self.node is not None and self.node.joined:
            self.node.leave()
            if self.shell is not None:
                self.shell.pump()

    def link_keys_changed(self) -> None:
        """The host's key table (importLinkKey, Key Establishment's result) is what the
        stack uses for APS security with each partner; an erased entry is forgotten."""
        node = self.node
        if node is None:
            return
        table = {eui64_to_int(zt.EUI64.convert(k.ieee)): bytes.fromhex(k.key)
                 for k in self.state.link_keys}
        changed = False
        for partner in self._imported - set(table):
            node.keys.forget_link_key(partner)
            changed = True
        for partner, key in table.items():
            entry = node.state.link_keys.get(partner)
            if entry is None or entry.key != key.hex():
                node.keys.set_link_key(partner, key, "cbke")
                changed = True
        self._imported = set(table)
        if changed:  # a key is kept at once, not at the next flush (a power cut between)
            node.persist()
            self._report_keys()

    def link_key_imported(self, ieee: str, key: bytes) -> None:
        self.link_keys_changed()

    def network_down(self) -> None:
        if self.shell is not None:
            shell, self.shell = self.shell, None
            self._spawn(shell.stop())
        self.node = None

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.network_down()  # after: a task cancelled before it ran never runs at all

    def permit_joining(self, seconds: int) -> None:
        if self.node is not None:
            self._sync_policy()
            self.node.permit(float(seconds))

    # -- the trust centre's rules, from what the host set ------------------------------------
    def _report_keys(self) -> None:
        if self.node is not None:
            report_node_keys(self.node, self.air)

    def _join_key(self) -> str:
        """The link key joiners hold under the preconfigured policy. A trust centre that
        uses hashed link keys (bellows forms so) keeps only a seed as its preconfigured key,
        from which it derives each device's key after the join; the join itself is under
        the well-known global key (TRUST_CENTER_GLOBAL_LINK_KEY)."""
        bits = bt.EmberInitialSecurityBitmask(self.state.security_bitmask)
        if bt.EmberInitialSecurityBitmask.TRUST_CENTER_USES_HASHED_LINK_KEY in bits:
            return GLOBAL_LINK_KEY.hex()
        return self.state.tc_link_key

    def _sync_policy(self) -> None:
        node, ncp = self.node, self.ncp
        if node is None or ncp is None or node.state.logical_type != "coordinator":
            return  # a router admits nobody: the trust centre does
        decision = Decision(ncp.policies.get(int(bt.EzspPolicyId.TRUST_CENTER_POLICY),
                                             int(Decision.ALLOW_JOINS)))
        admitted: dict[int, LinkKeyEntry] = {}
        for ieee, key in ncp.transient_keys.items():
            who = eui64_to_int(zt.EUI64.convert(ieee))
            admitted[who] = LinkKeyEntry(key.hex(), "preconfigured" if who == ANY_DEVICE
                                         else "install_code")
        if Decision.JOINS_USE_INSTALL_CODE_KEY in decision:
            policy = "install_code"
        elif Decision.ALLOW_JOINS in decision:
            policy = "preconfigured"
            # a transient key for every device (EUI-64 all 0xFF: herdsman's permitJoin imports
            # ZigBeeAlliance09 so) comes before the stack's preconfigured key, as on a stick
            admitted.setdefault(ANY_DEVICE, LinkKeyEntry(self._join_key(), "preconfigured"))
        else:
            policy = "closed"
        node.state.tc_policy = policy
        node.state.admitted = admitted
        self._report_keys()

    # -- Radio: lookups ---------------------------------------------------------------------
    def lookup_eui64(self, nwk: int) -> bt.EUI64 | None:
        if nwk == self.nwk:
            return self.state.ieee
        if nwk == COORDINATOR_NWK and self.is_router and self.node is not None \
                and self.node.state.tc_ieee is not None:
            return bt.EUI64(int_to_eui64(self.node.state.tc_ieee))
        ieee = self.node.ieee_of(nwk) if self.node is not None else None
        return None if ieee is None else bt.EUI64(int_to_eui64(ieee))

    def lookup_node_id(self, eui64: bt.EUI64) -> int | None:
        if self.node is None:
            return None
        return self.node.nwk_of(eui64_to_int(zt.EUI64(eui64)))

    # -- Radio: sending -----------------------------------------------------------------------
    def _out(self, dst: int, aps: bt.EmberApsFrame, payload: bytes, *, ack: bool,
             radius: int = 30) -> Any:
        assert self.node is not None
        secure = True if bt.EmberApsOption.APS_OPTION_ENCRYPTION in aps.options else None
        return self.node.data_frame(
            dst_nwk=dst, profile=int(aps.profileId), cluster=int(aps.clusterId),
            src_ep=int(aps.sourceEndpoint), dst_ep=int(aps.destinationEndpoint),
            payload=payload, ack=ack, aps_secure=secure, radius=radius or 30)

    def send_unicast(self, nwk: int, aps: bt.EmberApsFrame, tag: int, payload: bytes) -> int:
        if self.node is None:
            return 0
        want_ack = bt.EmberApsOption.APS_OPTION_RETRY in aps.options
        if nwk == self.nwk:  # to ourselves: the stack loops it back
            looped = self.node.loopback(profile=int(aps.profileId), cluster=int(aps.clusterId),
                                        src_ep=int(aps.sourceEndpoint),
                                        dst_ep=int(aps.destinationEndpoint), payload=payload)
            counter = self.node.next_aps_counter()
            aps = aps.replace(sequence=counter)
            for ind in looped:
                asyncio.get_running_loop().call_soon(self._on_data, ind)
            self._spawn(self._report(bt.EmberOutgoingMessageType.OUTGOING_DIRECT, nwk, aps, tag,
                                     True, payload))
            return counter
        try:
            out = self._out(nwk, aps, payload, ack=want_ack)
            counter = out.counter
        except SecurityError as exc:
            LOGGER.info("NCP: unicast to 0x%04X not secured: %s", nwk, exc)
            counter = self.node.next_aps_counter()
            self._spawn(self._report(bt.EmberOutgoingMessageType.OUTGOING_DIRECT, nwk,
                                     aps.replace(sequence=counter), tag, False, payload))
            return counter
        aps = aps.replace(sequence=counter)

        def build() -> Any:  # each APS retry is a new frame (fresh frame counters)
            assert self.node is not None
            return self.node.data_frame(
                dst_nwk=nwk, profile=int(aps.profileId), cluster=int(aps.clusterId),
                src_ep=int(aps.sourceEndpoint), dst_ep=int(aps.destinationEndpoint),
                payload=payload, ack=want_ack, counter=counter,
                aps_secure=True if bt.EmberApsOption.APS_OPTION_ENCRYPTION in aps.options
                else None)

        self._spawn(self._unicast(out, build, aps, tag, payload, want_ack))
        return counter

    async def _report(self, kind: Any, dst: int, aps: bt.EmberApsFrame, tag: int, ok: bool,
                      payload: bytes) -> None:
        if self.ncp is not None:
            self.ncp.message_sent(kind, dst, aps, tag, S.OK if ok else S.ZIGBEE_DELIVERY_FAILED,
                                  payload)
            self.on_output()

    async def _unicast(self, out: Any, build: Callable[[], Any], aps: bt.EmberApsFrame, tag: int,
                       payload: bytes, want_ack: bool) -> None:
        ok = False
        for attempt in range(APS_ATTEMPTS if want_ack else 1):
            shell = self.shell
            if shell is None or self.node is None:
                break
            if attempt:
                out = build()
            try:
                await shell.send(out, ack_timeout=self.aps_ack_wait)
                self._count(Counter.COUNTER_MAC_TX_UNICAST_SUCCESS)
                ok = True
                self.frames_sent += 1
                break
            except DeliveryFailed as exc:
                self._count(Counter.COUNTER_MAC_TX_UNICAST_FAILED
                            if "MAC" in str(exc) else Counter.COUNTER_APS_DATA_TX_UNICAST_RETRY)
            except asyncio.CancelledError:
                break
            if attempt:
                self._count(Counter.COUNTER_APS_DATA_TX_UNICAST_RETRY)
        self._count(Counter.COUNTER_APS_DATA_TX_UNICAST_SUCCESS if ok
                    else Counter.COUNTER_APS_DATA_TX_UNICAST_FAILED)
        await self._report(bt.EmberOutgoingMessageType.OUTGOING_DIRECT, out.dst_nwk, aps, tag,
                           ok, payload)

    def send_broadcast(self, dst: int, aps: bt.EmberApsFrame, radius: int, tag: int,
                       payload: bytes) -> int:
        if self.node is None:
            return 0
        out = self._out(dst, aps, payload, ack=False, radius=radius)
        aps = aps.replace(sequence=out.counter)
        self._spawn(self._broadcast(out, aps, tag, payload))
        return out.counter

    async def _broadcast(self, out: Any, aps: bt.EmberApsFrame, tag: int, payload: bytes) -> None:
        if self.shell is not None:
            await self.shell.transmit(out)
            self.frames_sent += 1
        self._count(Counter.COUNTER_MAC_TX_BROADCAST)
        self._count(Counter.COUNTER_APS_DATA_TX_BROADCAST)
        await self._report(bt.EmberOutgoingMessageType.OUTGOING_BROADCAST, out.dst_nwk, aps, tag,
                           True, payload)

    def _pump(self) -> None:
        if self.shell is not None:
            self.shell.pump()

    # -- receiving --------------------------------------------------------------------------
    def _on_data(self, ind: DataIndication) -> None:
        ncp = self.ncp
        if ncp is None:
            return
        self.frames_received += 1
        self._count(Counter.COUNTER_MAC_RX_BROADCAST if ind.broadcast
                    else Counter.COUNTER_MAC_RX_UNICAST)
        self._count(Counter.COUNTER_APS_DATA_RX_BROADCAST if ind.broadcast
                    else Counter.COUNTER_APS_DATA_RX_UNICAST)
        options = bt.EmberApsOption.APS_OPTION_NONE
        if ind.ack_request:
            options |= bt.EmberApsOption.APS_OPTION_RETRY
        if ind.aps_partner is not None:
            options |= bt.EmberApsOption.APS_OPTION_ENCRYPTION
        aps = bt.EmberApsFrame(
            profileId=ind.profile, clusterId=ind.cluster, sourceEndpoint=ind.src_ep,
            destinationEndpoint=ind.dst_ep, options=options, groupId=0, sequence=ind.counter)
        kind = bt.EmberIncomingMessageType
        ncp.incoming_message(kind.INCOMING_BROADCAST if ind.broadcast else kind.INCOMING_UNICAST,
                             aps, 255, -40, ind.src_nwk, ind.payload)
        self.on_output()

    def _on_event(self, ev: NodeEvent) -> None:
        ncp = self.ncp
        if ncp is None:
            return
        update = bt.EmberDeviceUpdate
        decision = bt.EmberJoinDecision
        d = ev.details
        if ev.kind == "device_joined":
            if d.get("rejoin"):
                status, verdict = update.STANDARD_SECURITY_SECURED_REJOIN, decision.NO_ACTION
            else:  # admitted with its install-code or preconfigured key
                status = update.STANDARD_SECURITY_UNSECURED_JOIN
                verdict = decision.USE_PRECONFIGURED_KEY
            ncp.trust_center_join(int(d["nwk"]), bt.EUI64(int_to_eui64(d["ieee"])), status,
                                  verdict, int(d.get("parent", 0)))
        elif ev.kind in ("device_left", "device_removed") and "ieee" in d:
            ncp.trust_center_join(int(d.get("nwk", 0xFFFE)), bt.EUI64(int_to_eui64(d["ieee"])),
                                  update.DEVICE_LEFT, decision.NO_ACTION, COORDINATOR_NWK)
        if ev.kind in ("device_joined", "key_installed"):
            self._report_keys()
        if ev.kind == "join_refused":
            ncp.trust_center_join(0xFFFE, bt.EUI64(int_to_eui64(d["ieee"])),
                                  update.STANDARD_SECURITY_UNSECURED_JOIN, decision.DENY_JOIN,
                                  COORDINATOR_NWK)
        self.on_output()

    def policy_changed(self) -> None:
        """The host changed the trust-centre policy or the transient keys."""
        self._sync_policy()

    # -- plumbing -----------------------------------------------------------------------------
    def _count(self, counter: bt.EmberCounterType) -> None:
        if self.ncp is not None:
            values = self.ncp.mac_counters
            values[int(counter)] = min(values[int(counter)] + 1, 0xFFFF)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            return None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
