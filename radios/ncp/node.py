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
from radios.shell import DeliveryFailed, NodeShell
from radios.state import LinkKeyEntry, NodeState
from radios.trust_center import ANY_DEVICE
from radios.virtual import eui64_to_int, int_to_eui64, report_node_keys
from radios.zdo_server import NodeIdentity, ZdoServer, encode

LOGGER = logging.getLogger(__name__)

ZDO_PROFILE = 0x0000
APS_ACK_WAIT = 0.8  # seconds per attempt; bellows gives up on messageSentHandler after 3 s
APS_ATTEMPTS = 3
COORDINATOR_NWK = 0x0000

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

    def bind(self, ncp: EzspNcp) -> None:
        self.ncp = ncp

    @property
    def port(self) -> Any:
        return self.shell.port if self.shell is not None else None

    # -- Radio: network up / down --------------------------------------------------------
    def _node_state(self) -> NodeState:
        st = self.state
        ieee = eui64_to_int(zt.EUI64(st.ieee))
        node_state = None
        if st.radio:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                node_state = NodeState.from_json(st.radio)
        if node_state is None or node_state.ieee != ieee or node_state.pan_id != st.pan_id:
            node_state = NodeState(ieee=ieee)
        node_state.logical_type = "coordinator"
        node_state.pan_id, node_state.channel = st.pan_id, st.channel
        node_state.extended_pan_id = eui64_to_int(zt.EUI64.convert(st.extended_pan_id))
        node_state.nwk, node_state.tc_ieee, node_state.joined = COORDINATOR_NWK, ieee, True
        node_state.network_keys = {st.network_key_seq: st.network_key}
        node_state.active_key_seq = st.network_key_seq
        # the boot jump of NcpState.load() applies to the node's counters too
        node_state.nwk_tx_reserved = max(node_state.nwk_tx_reserved, st.nwk_frame_counter)
        node_state.aps_tx_reserved = max(node_state.aps_tx_reserved, st.aps_frame_counter)
        return node_state

    def network_up(self) -> None:
        assert self.ncp is not None
        self.network_down()
        node_state = self._node_state()
        identity = NodeIdentity(
            ieee=zt.EUI64(self.state.ieee), nwk=COORDINATOR_NWK,
            logical_type=zdo_t.LogicalType.Coordinator,
            manufacturer_code=self.ncp.manufacturer_code, endpoints=self.ncp.endpoints)
        self.zdo = NcpZdoServer(identity, node_state.bindings)
        ncp = self.ncp
        self.zdo.zdo_flags = lambda: ncp.config.get(  # type: ignore[method-assign]
            int(bt.EzspConfigId.CONFIG_APPLICATION_ZDO_FLAGS), 0)
        self.node = ZigbeeNode(node_state, _NcpNv(self), zdo=self.zdo)  # type: ignore[arg-type]
        self.node.status = "joined"
        self.zdo.on_change = self.node._mark_dirty
        self._sync_policy()
        self.shell = NodeShell(self.air, self.node, on_data=self._on_data,
                               on_event=self._on_event)
        self.shell.start()
        self._report_keys()
        if (self.state.pan_id, self.state.channel) != (self.air.pan_id, self.air.channel):
            LOGGER.info("NCP network is PAN 0x%04X on channel %d (the air's default is PAN "
                        "0x%04X, channel %d)", self.state.pan_id, self.state.channel,
                        self.air.pan_id, self.air.channel)

    def network_down(self) -> None:
        if self.shell is not None:
            shell, self.shell = self.shell, None
            self._spawn(shell.stop())
        self.node = None

    def close(self) -> None:
        self.network_down()
        for task in list(self._tasks):
            task.cancel()

    def permit_joining(self, seconds: int) -> None:
        if self.node is not None:
            self._sync_policy()
            self.node.permit(float(seconds))

    # -- the trust centre's rules, from what the host set ------------------------------------
    def _report_keys(self) -> None:
        if self.node is not None:
            report_node_keys(self.node, self.air)

    def _sync_policy(self) -> None:
        node, ncp = self.node, self.ncp
        if node is None or ncp is None:
            return
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
            admitted.setdefault(ANY_DEVICE, LinkKeyEntry(self.state.tc_link_key,
                                                         "preconfigured"))
        else:
            policy = "closed"
        node.state.tc_policy = policy
        node.state.admitted = admitted
        self._report_keys()

    # -- Radio: lookups ---------------------------------------------------------------------
    def lookup_eui64(self, nwk: int) -> bt.EUI64 | None:
        if nwk == COORDINATOR_NWK:
            return self.state.ieee
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
        if nwk == COORDINATOR_NWK:  # to ourselves: the stack loops it back
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

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
