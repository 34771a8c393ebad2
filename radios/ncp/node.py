"""The emulated NCP's radio: a coordinator node (NWK 0x0000) on the virtual air.

This is the part of the "firmware" below EZSP: it implements
:class:`radios.ncp.ezsp.Radio`. Sending: ``sendUnicast``/``sendBroadcast`` become
:class:`~radios.frames.AirFrame` values; a unicast with APS retries waits for the APS ACK
(three attempts), then ``messageSentHandler`` reports success or ``DELIVERY_FAILED``.
Receiving: data frames for NWK 0x0000 or broadcast become ``incomingMessageHandler``;
APS ACKs are returned like :mod:`radios.virtual` does; ZDO requests are answered here by
:class:`radios.zdo_server.ZdoServer` from the endpoints the host registered with
``addEndpoint`` and, as the host asked with ``CONFIG_APPLICATION_ZDO_FLAGS``, passed up
too; a ``Device_annce`` is reported as ``trustCenterJoinHandler`` and passed up.
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

from radios.air import AirPort, VirtualAir
from radios.aps import PendingAcks
from radios.frames import AirFrame, ApsKind
from radios.ncp.ezsp import EzspNcp
from radios.ncp.state import NcpState
from radios.virtual import eui64_to_int, int_to_eui64
from radios.zdo_server import NodeIdentity, ZdoServer, encode

LOGGER = logging.getLogger(__name__)

ZDO_PROFILE = 0x0000
APS_ACK_WAIT = 0.8  # seconds per attempt; bellows gives up on messageSentHandler after 3 s
APS_ATTEMPTS = 3
COORDINATOR_NWK = 0x0000

S = bt.sl_Status
Counter = bt.EmberCounterType


class NcpZdoServer(ZdoServer):
    """The ZDO server of the NCP firmware: also describes endpoints above 0xF0.

    bellows registers the Green Power endpoint 242 with ``addEndpoint``; Active_EP_rsp
    lists it, so Simple_Desc_req for it is answered like for any other active endpoint.
    """

    def _on_Simple_Desc_req(self, tsn, nwk, endpoint, *, broadcast):  # noqa: N802
        desc = self.node.endpoints.get(endpoint)
        if nwk == self.node.nwk and desc is not None and endpoint > 0xF0:
            sized = zdo_t.SizePrefixedSimpleDescriptor(*desc.as_tuple())
            return encode(zdo_t.ZDOCmd.Simple_Desc_rsp, tsn, zdo_t.Status.SUCCESS, zt.NWK(nwk),
                          sized)
        return super()._on_Simple_Desc_req(tsn, nwk, endpoint, broadcast=broadcast)


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
        self.port: AirPort | None = None
        self.zdo: ZdoServer | None = None
        self._aps_counter = 0
        self._acks = PendingAcks()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._known: dict[int, int] = {}  # nwk -> ieee (int) of nodes heard announcing
        self.permit_until = 0.0
        self.frames_sent = 0
        self.frames_received = 0

    def bind(self, ncp: EzspNcp) -> None:
        self.ncp = ncp

    # -- Radio: network up / down --------------------------------------------------------
    def network_up(self) -> None:
        assert self.ncp is not None
        if self.port is not None:
            self.port.detach()
        identity = NodeIdentity(
            ieee=zt.EUI64(self.state.ieee), nwk=COORDINATOR_NWK,
            logical_type=zdo_t.LogicalType.Coordinator,
            manufacturer_code=self.ncp.manufacturer_code, endpoints=self.ncp.endpoints)
        self.zdo = NcpZdoServer(identity)
        self.port = self.air.attach(eui64_to_int(identity.ieee), COORDINATOR_NWK, self._on_frame,
                                    coordinator=True)
        if (self.state.pan_id, self.state.channel) != (self.air.pan_id, self.air.channel):
            LOGGER.warning(
                "NCP network is PAN 0x%04X on channel %d but the virtual air is PAN 0x%04X "
                "on channel %d: the other nodes on it will not hear this network (form it "
                "with the air's PAN id and channel)", self.state.pan_id, self.state.channel,
                self.air.pan_id, self.air.channel)

    def network_down(self) -> None:
        if self.port is not None:
            self.port.detach()
            self.port = None
        self._acks.cancel_all()

    def close(self) -> None:
        self.network_down()
        for task in list(self._tasks):
            task.cancel()

    def permit_joining(self, seconds: int) -> None:
        loop = asyncio.get_running_loop()
        self.permit_until = loop.time() + seconds if seconds else 0.0

    def _permitting(self) -> bool:
        return bool(self.permit_until) and asyncio.get_running_loop().time() < self.permit_until

    # -- Radio: lookups ---------------------------------------------------------------------
    def lookup_eui64(self, nwk: int) -> bt.EUI64 | None:
        if nwk == COORDINATOR_NWK:
            return self.state.ieee
        ieee = self._known.get(nwk)
        if ieee is None:
            for port in self.air.ports():
                if port.nwk == nwk:
                    ieee = port.ieee
        return None if ieee is None else bt.EUI64(int_to_eui64(ieee))

    def lookup_node_id(self, eui64: bt.EUI64) -> int | None:
        value = eui64_to_int(zt.EUI64(eui64))
        for nwk, ieee in self._known.items():
            if ieee == value:
                return nwk
        return self.air.lookup_ieee(value)

    # -- Radio: sending -----------------------------------------------------------------------
    def _next_counter(self) -> int:
        self._aps_counter = (self._aps_counter + 1) & 0xFF
        return self._aps_counter

    def _frame(self, dst: int, aps: bt.EmberApsFrame, counter: int, payload: bytes, *,
               ack: bool, radius: int = 30) -> AirFrame:
        return AirFrame(
            kind=ApsKind.DATA, pan_id=self.state.pan_id, src_nwk=COORDINATOR_NWK, dst_nwk=dst,
            src_ieee=eui64_to_int(zt.EUI64(self.state.ieee)), profile_id=int(aps.profileId),
            cluster_id=int(aps.clusterId), src_ep=int(aps.sourceEndpoint),
            dst_ep=int(aps.destinationEndpoint), aps_counter=counter, payload=payload,
            ack_request=ack, radius=radius or 30)

    def send_unicast(self, nwk: int, aps: bt.EmberApsFrame, tag: int, payload: bytes) -> int:
        counter = self._next_counter()
        aps = aps.replace(sequence=counter)
        want_ack = bt.EmberApsOption.APS_OPTION_RETRY in aps.options
        frame = self._frame(nwk, aps, counter, payload, ack=want_ack)
        self._spawn(self._unicast(frame, aps, tag, want_ack))
        return counter

    async def _unicast(self, frame: AirFrame, aps: bt.EmberApsFrame, tag: int,
                       want_ack: bool) -> None:
        ok = False
        if frame.dst_nwk == COORDINATOR_NWK:  # to ourselves: no air, no APS ACK
            ok = await self._transmit(frame.replace(ack_request=False))
        else:
            for attempt in range(APS_ATTEMPTS if want_ack else 1):
                with contextlib.ExitStack() as stack:
                    fut = stack.enter_context(
                        self._acks.expect(frame.dst_nwk, frame.aps_counter)) if want_ack else None
                    try:
                        mac_ok = await self._transmit(frame)
                        self._count(Counter.COUNTER_MAC_TX_UNICAST_SUCCESS if mac_ok
                                    else Counter.COUNTER_MAC_TX_UNICAST_FAILED)
                        if mac_ok and fut is not None:
                            await asyncio.wait_for(asyncio.shield(fut), self.aps_ack_wait)
                        ok = mac_ok
                    except (TimeoutError, asyncio.CancelledError):
                        ok = False
                        if self.port is None:
                            break
                if ok:
                    break
                if attempt:
                    self._count(Counter.COUNTER_APS_DATA_TX_UNICAST_RETRY)
        self._count(Counter.COUNTER_APS_DATA_TX_UNICAST_SUCCESS if ok
                    else Counter.COUNTER_APS_DATA_TX_UNICAST_FAILED)
        if self.ncp is not None:
            self.ncp.message_sent(bt.EmberOutgoingMessageType.OUTGOING_DIRECT, frame.dst_nwk, aps,
                                  tag, S.OK if ok else S.ZIGBEE_DELIVERY_FAILED, frame.payload)
            self.on_output()

    def send_broadcast(self, dst: int, aps: bt.EmberApsFrame, radius: int, tag: int,
                       payload: bytes) -> int:
        counter = self._next_counter()
        aps = aps.replace(sequence=counter)
        frame = self._frame(dst, aps, counter, payload, ack=False, radius=radius)
        self._spawn(self._broadcast(frame, aps, tag))
        return counter

    async def _broadcast(self, frame: AirFrame, aps: bt.EmberApsFrame, tag: int) -> None:
        await self._transmit(frame)
        self._count(Counter.COUNTER_MAC_TX_BROADCAST)
        self._count(Counter.COUNTER_APS_DATA_TX_BROADCAST)
        if self.ncp is not None:
            self.ncp.message_sent(bt.EmberOutgoingMessageType.OUTGOING_BROADCAST, frame.dst_nwk,
                                  aps, tag, S.OK, frame.payload)
            self.on_output()

    async def _transmit(self, frame: AirFrame) -> bool:
        if self.port is None:
            return False
        if frame.dst_nwk == COORDINATOR_NWK:  # the stack loops its own frames back
            asyncio.get_running_loop().call_soon(self._on_frame, frame)
            return True
        self.state.nwk_frame_counter += 1
        self.frames_sent += 1
        return await self.port.transmit(frame)

    # -- receiving --------------------------------------------------------------------------
    def _on_frame(self, frame: AirFrame) -> None:
        ncp = self.ncp
        if ncp is None or self.port is None or frame.pan_id != self.state.pan_id:
            return
        if frame.kind == ApsKind.ACK:
            self._acks.resolve(frame)
            return
        if frame.kind != ApsKind.DATA:
            return
        self.frames_received += 1
        broadcast = frame.broadcast
        self._count(Counter.COUNTER_MAC_RX_BROADCAST if broadcast
                    else Counter.COUNTER_MAC_RX_UNICAST)
        self._count(Counter.COUNTER_APS_DATA_RX_BROADCAST if broadcast
                    else Counter.COUNTER_APS_DATA_RX_UNICAST)
        if frame.ack_request and not broadcast and frame.src_nwk != COORDINATOR_NWK:
            self._spawn(self._transmit(frame.make_ack(eui64_to_int(zt.EUI64(self.state.ieee)))))
        pass_up = True
        if frame.profile_id == ZDO_PROFILE and frame.dst_ep == 0:
            pass_up = self._on_zdo(frame)
        if pass_up:
            aps = bt.EmberApsFrame(
                profileId=frame.profile_id, clusterId=frame.cluster_id,
                sourceEndpoint=frame.src_ep, destinationEndpoint=frame.dst_ep,
                options=(bt.EmberApsOption.APS_OPTION_RETRY if frame.ack_request
                         else bt.EmberApsOption.APS_OPTION_NONE),
                groupId=0, sequence=frame.aps_counter)
            kind = bt.EmberIncomingMessageType
            ncp.incoming_message(kind.INCOMING_BROADCAST if broadcast else kind.INCOMING_UNICAST,
                                 aps, 255, -40, frame.src_nwk, frame.payload)
        self.on_output()

    def _on_zdo(self, frame: AirFrame) -> bool:
        """Firmware ZDO. Returns whether the frame also goes up to the host."""
        assert self.ncp is not None and self.zdo is not None
        cluster = frame.cluster_id
        if cluster == zdo_t.ZDOCmd.Device_annce:
            self._on_announce(frame)
            return True
        if cluster & 0x8000:
            return True  # responses to the host's requests
        flags = bt.EmberZdoConfigurationFlags(
            self.ncp.config.get(int(bt.EzspConfigId.CONFIG_APPLICATION_ZDO_FLAGS), 0))
        supported = self._zdo_supported(cluster)
        if supported or not flags & bt.EmberZdoConfigurationFlags.APP_HANDLES_UNSUPPORTED_ZDO_REQUESTS:
            for rsp_cluster, payload in self.zdo.handle(cluster, frame.payload,
                                                        broadcast=frame.broadcast):
                self._spawn(self._zdo_reply(frame, rsp_cluster, payload))
        if supported:
            return bool(flags & bt.EmberZdoConfigurationFlags.APP_RECEIVES_SUPPORTED_ZDO_REQUESTS)
        return bool(flags & bt.EmberZdoConfigurationFlags.APP_HANDLES_UNSUPPORTED_ZDO_REQUESTS)

    @staticmethod
    def _zdo_supported(cluster: int) -> bool:
        return cluster in (
            zdo_t.ZDOCmd.NWK_addr_req, zdo_t.ZDOCmd.IEEE_addr_req, zdo_t.ZDOCmd.Node_Desc_req,
            zdo_t.ZDOCmd.Power_Desc_req, zdo_t.ZDOCmd.Simple_Desc_req,
            zdo_t.ZDOCmd.Active_EP_req, zdo_t.ZDOCmd.Match_Desc_req,
            zdo_t.ZDOCmd.Mgmt_Lqi_req, zdo_t.ZDOCmd.Mgmt_Rtg_req,
            zdo_t.ZDOCmd.Mgmt_Permit_Joining_req,
        )

    def _on_announce(self, frame: AirFrame) -> None:
        assert self.ncp is not None
        try:
            (nwk, ieee, _caps), _ = zt.deserialize(
                frame.payload[1:], zdo_t.CLUSTERS[zdo_t.ZDOCmd.Device_annce][1])
        except (ValueError, KeyError):
            return
        ieee_int = eui64_to_int(ieee)
        update = bt.EmberDeviceUpdate
        decision = bt.EmberJoinDecision
        if self._known.get(int(nwk)) == ieee_int:
            status, verdict = update.STANDARD_SECURITY_SECURED_REJOIN, decision.NO_ACTION
        elif self._permitting():
            status, verdict = update.STANDARD_SECURITY_UNSECURED_JOIN, decision.USE_PRECONFIGURED_KEY
        else:
            # already in the network (it has the key) and announcing itself
            status, verdict = update.STANDARD_SECURITY_SECURED_REJOIN, decision.NO_ACTION
        self._known[int(nwk)] = ieee_int
        self.ncp.trust_center_join(int(nwk), bt.EUI64(ieee), status, verdict, COORDINATOR_NWK)

    async def _zdo_reply(self, request: AirFrame, cluster: int, payload: bytes) -> None:
        aps = bt.EmberApsFrame(profileId=ZDO_PROFILE, clusterId=cluster, sourceEndpoint=0,
                               destinationEndpoint=0, options=bt.EmberApsOption.APS_OPTION_NONE,
                               groupId=0, sequence=0)
        await self._transmit(self._frame(request.src_nwk, aps, self._next_counter(), payload,
                                         ack=False))

    # -- plumbing -----------------------------------------------------------------------------
    def _count(self, counter: bt.EmberCounterType) -> None:
        if self.ncp is not None:
            values = self.ncp.mac_counters
            values[int(counter)] = min(values[int(counter)] + 1, 0xFFFF)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
