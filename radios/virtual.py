"""A zigpy ``ControllerApplication`` whose radio is the virtual air.

The same application code runs on it and on a real stick (bellows). It plays the part
of a stick's firmware too: APS ACKs, the ZDO server (descriptors and address requests
are answered here, as an EZSP NCP answers them), and the device announce after joining.

Configuration (zigpy config dict)::

    {
        "device": {"path": "virtual://default"},      # or "udp://127.0.0.1:PORT"
        "virtual": {
            "ieee": "00:0d:6f:00:00:00:00:01",
            "role": "coordinator" | "router",
            "nwk": 0x1234,                           # optional (router); coordinator is 0
            "manufacturer_code": 0x1234,
            "default_endpoints": True,               # zigpy's own endpoints 1/2/242
            "air": <VirtualAir>,                     # optional: this object instead of path
        },
        "database_path": None,
    }
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import zigpy.application
import zigpy.config as conf
import zigpy.device
import zigpy.endpoint
import zigpy.exceptions
import zigpy.state
import zigpy.types as t
import zigpy.zdo.types as zdo_t

from radios.air import AirPort, VirtualAir, named_air
from radios.aps import PendingAcks
from radios.frames import AirFrame, ApsKind, is_broadcast
from radios.zdo_server import NodeIdentity, ZdoServer, device_announce

LOGGER = logging.getLogger(__name__)

APS_ACK_TIMEOUT = 3.0
ZDO_PROFILE = 0x0000


def eui64_to_int(ieee: t.EUI64) -> int:
    return int.from_bytes(bytes(ieee), "little")


def int_to_eui64(value: int) -> t.EUI64:
    return t.EUI64(value.to_bytes(8, "little"))


def _tsn_of(frame: AirFrame) -> int:
    """The transaction sequence number: ZDO byte 0, ZCL after the (manufacturer) header."""
    data = frame.payload
    if frame.profile_id == ZDO_PROFILE:
        return data[0] if data else 0
    index = 3 if data and data[0] & 0x04 else 1
    return data[index] if len(data) > index else 0


def virtual_config(
    ieee: str | t.EUI64,
    *,
    role: str = "router",
    air: VirtualAir | None = None,
    path: str = "virtual://default",
    nwk: int | None = None,
    manufacturer_code: int = 0x1234,
    default_endpoints: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A zigpy config for a node on the virtual air, with zigpy's periodic jobs off."""
    cfg: dict[str, Any] = {
        conf.CONF_DEVICE: {conf.CONF_DEVICE_PATH: path},
        conf.CONF_DATABASE: None,
        conf.CONF_NWK_BACKUP_ENABLED: False,
        conf.CONF_TOPO_SCAN_ENABLED: False,
        conf.CONF_WATCHDOG_ENABLED: False,
        conf.CONF_OTA: {conf.CONF_OTA_ENABLED: False},
        conf.CONF_STARTUP_ENERGY_SCAN: False,
        "virtual": {
            "ieee": str(ieee),
            "role": role,
            "nwk": nwk,
            "manufacturer_code": manufacturer_code,
            "default_endpoints": default_endpoints,
            "air": air,
        },
    }
    cfg.update(extra)
    return cfg


class VirtualControllerApplication(zigpy.application.ControllerApplication):
    """A zigpy application on the virtual air (coordinator or router)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._vconf: dict[str, Any] = dict(config.get("virtual") or {})
        super().__init__(config)
        self._air: VirtualAir | None = None
        self._port: AirPort | None = None
        self._link: Any = None
        self._endpoints: dict[int, zdo_t.SimpleDescriptor] = {}
        self._acks = PendingAcks()
        self._aps_counter = 0
        self._zdo_tsn = 0
        self._identity: NodeIdentity | None = None
        self._zdo_server: ZdoServer | None = None

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
        if self.is_coordinator:
            nwk = 0x0000
        else:
            nwk = self._vconf.get("nwk") or air.free_nwk(eui64_to_int(ieee) & 0xFFF7)
        self._identity = NodeIdentity(
            ieee=ieee,
            nwk=nwk,
            logical_type=(
                zdo_t.LogicalType.Coordinator if self.is_coordinator else zdo_t.LogicalType.Router
            ),
            manufacturer_code=self._vconf.get("manufacturer_code", 0x1234),
            endpoints=self._endpoints,
        )
        self._zdo_server = ZdoServer(self._identity)
        self._port = air.attach(
            eui64_to_int(ieee), nwk, self._on_frame, coordinator=self.is_coordinator
        )
        LOGGER.info("virtual radio %s attached as NWK 0x%04X", ieee, nwk)

    async def disconnect(self) -> None:
        if self._port is not None:
            self._port.detach()
            self._port = None
        if self._link is not None:
            self._link.close()
            self._link = None
        self._acks.cancel_all()

    # -- network state -----------------------------------------------------------------
    async def load_network_info(self, *, load_devices: bool = False) -> None:
        if self._identity is None:
            raise zigpy.exceptions.NetworkNotFormed("not connected")
        air = self.air
        self.state.node_info = zigpy.state.NodeInfo(
            nwk=t.NWK(self._identity.nwk),
            ieee=self._identity.ieee,
            logical_type=self._identity.logical_type,
            model="Virtual radio",
            manufacturer="sep",
            version="1",
        )
        self.state.network_info = zigpy.state.NetworkInfo(
            extended_pan_id=t.ExtendedPanId((air.pan_id).to_bytes(8, "little")),
            pan_id=t.PanId(air.pan_id),
            nwk_update_id=0,
            nwk_manager_id=t.NWK(0x0000),
            channel=air.channel,
            channel_mask=t.Channels.from_channel_list([air.channel]),
            security_level=5,
            network_key=zigpy.state.Key(),
            tc_link_key=zigpy.state.Key(),
            stack_specific={},
        )

    async def write_network_info(self, *, network_info, node_info) -> None:
        # The virtual air has a fixed PAN; forming "writes" nothing.
        return None

    async def reset_network_info(self) -> None:
        return None

    async def register_endpoints(self) -> None:
        if self._vconf.get("default_endpoints", False):
            await super().register_endpoints()
        else:
            for endpoint in self.config[conf.CONF_ADDITIONAL_ENDPOINTS]:
                await self.add_endpoint(endpoint)

    async def add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        self._endpoints[descriptor.endpoint] = descriptor

    async def start_network(self) -> None:
        await self.register_endpoints()
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
        assert self._identity is not None
        self._zdo_tsn = (self._zdo_tsn + 1) & 0xFF
        await self._transmit(
            AirFrame(
                kind=ApsKind.DATA,
                pan_id=self.air.pan_id,
                src_nwk=self._identity.nwk,
                dst_nwk=0xFFFD,
                src_ieee=eui64_to_int(self._identity.ieee),
                profile_id=ZDO_PROFILE,
                cluster_id=zdo_t.ZDOCmd.Device_annce,
                src_ep=0,
                dst_ep=0,
                aps_counter=self._next_aps_counter(),
                payload=device_announce(self._identity, self._zdo_tsn),
            )
        )

    def _persist_coordinator_model_strings_in_db(self) -> None:
        # zigpy assumes its own endpoint 1 exists; a node without one has nothing to persist.
        if 1 in self._device.endpoints:
            super()._persist_coordinator_model_strings_in_db()

    async def force_remove(self, dev: zigpy.device.Device) -> None:
        return None

    async def permit_ncp(self, time_s: int = 60) -> None:
        return None

    async def permit_with_link_key(self, node: t.EUI64, link_key: t.KeyData, time_s: int = 60):
        return None

    # -- sending -----------------------------------------------------------------------
    def _next_aps_counter(self) -> int:
        self._aps_counter = (self._aps_counter + 1) & 0xFF
        return self._aps_counter

    async def _transmit(self, frame: AirFrame) -> bool:
        if self._port is None:
            raise zigpy.exceptions.DeliveryError("virtual radio is not connected")
        return await self._port.transmit(frame)

    def _resolve_dst(self, dst: t.AddrModeAddress) -> int:
        if dst.addr_mode in (t.AddrMode.NWK, t.AddrMode.Broadcast):
            return int(dst.address)
        if dst.addr_mode == t.AddrMode.IEEE:
            nwk = self.air.lookup_ieee(eui64_to_int(dst.address))
            if nwk is None:
                try:
                    return int(self.get_device(ieee=dst.address).nwk)
                except KeyError:
                    raise zigpy.exceptions.DeliveryError(
                        f"no route to {dst.address}", status=t.MACStatus.MAC_NO_ACK
                    ) from None
            return nwk
        if dst.addr_mode == t.AddrMode.Group:
            return 0xFFFD  # groups ride on broadcasts on the virtual air
        raise zigpy.exceptions.DeliveryError(f"unsupported address {dst!r}")

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        assert self._identity is not None
        dst_nwk = self._resolve_dst(packet.dst)
        want_ack = bool(packet.tx_options & t.TransmitOptions.ACK) and not is_broadcast(dst_nwk)
        counter = self._next_aps_counter()
        frame = AirFrame(
            kind=ApsKind.DATA,
            pan_id=self.air.pan_id,
            src_nwk=self._identity.nwk,
            dst_nwk=dst_nwk,
            src_ieee=eui64_to_int(self._identity.ieee),
            profile_id=int(packet.profile_id),
            cluster_id=int(packet.cluster_id),
            src_ep=int(packet.src_ep or 0),
            dst_ep=int(packet.dst_ep or 0),
            aps_counter=counter,
            payload=bytes(packet.data.serialize()),
            ack_request=want_ack,
            radius=int(packet.radius or 30),
        )
        if dst_nwk == self._identity.nwk:  # to ourselves: loop back without the air
            asyncio.get_running_loop().call_soon(self._on_frame, frame)
            return
        with contextlib.ExitStack() as stack:
            fut = stack.enter_context(self._acks.expect(dst_nwk, counter)) if want_ack else None
            if not await self._transmit(frame):
                raise zigpy.exceptions.DeliveryError(
                    f"no MAC ACK from 0x{dst_nwk:04X}", status=t.MACStatus.MAC_NO_ACK
                )
            if fut is not None:
                try:
                    await asyncio.wait_for(fut, APS_ACK_TIMEOUT)
                except TimeoutError:
                    raise zigpy.exceptions.DeliveryError(
                        f"no APS ACK from 0x{dst_nwk:04X}", status=t.MACStatus.MAC_NO_ACK
                    ) from None

    # -- receiving ---------------------------------------------------------------------
    def _on_frame(self, frame: AirFrame) -> None:
        if self._identity is None:
            return
        if frame.kind == ApsKind.ACK:
            self._acks.resolve(frame)
            return
        if frame.kind != ApsKind.DATA:
            return
        if frame.pan_id != self.air.pan_id:
            return
        if frame.ack_request and not frame.broadcast and self._port is not None:
            self._spawn(self._transmit(frame.make_ack(eui64_to_int(self._identity.ieee))))
        if frame.profile_id == ZDO_PROFILE and frame.dst_ep == 0 and not frame.cluster_id & 0x8000:
            # ZDO requests are the firmware's business; announcements also go up.
            assert self._zdo_server is not None
            replies = self._zdo_server.handle(
                frame.cluster_id, frame.payload, broadcast=frame.broadcast
            )
            for cluster, payload in replies:
                self._spawn(self._send_zdo_reply(frame, cluster, payload))
            if frame.cluster_id != zdo_t.ZDOCmd.Device_annce:
                return
        self.packet_received(self._to_packet(frame))

    def _to_packet(self, frame: AirFrame) -> t.ZigbeePacket:
        if frame.broadcast:
            dst = t.AddrModeAddress(
                addr_mode=t.AddrMode.Broadcast, address=t.BroadcastAddress(frame.dst_nwk)
            )
        else:
            dst = t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(frame.dst_nwk))
        return t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(frame.src_nwk)),
            src_ep=t.uint8_t(frame.src_ep),
            dst=dst,
            dst_ep=t.uint8_t(frame.dst_ep),
            tsn=t.uint8_t(_tsn_of(frame)),
            profile_id=t.uint16_t(frame.profile_id),
            cluster_id=t.uint16_t(frame.cluster_id),
            data=t.SerializableBytes(frame.payload),
            radius=t.uint8_t(frame.radius),
            lqi=255,
            rssi=-40,
        )

    async def _send_zdo_reply(self, request: AirFrame, cluster: int, payload: bytes) -> None:
        assert self._identity is not None
        try:
            await self._transmit(
                AirFrame(
                    kind=ApsKind.DATA,
                    pan_id=self.air.pan_id,
                    src_nwk=self._identity.nwk,
                    dst_nwk=request.src_nwk,
                    src_ieee=eui64_to_int(self._identity.ieee),
                    profile_id=ZDO_PROFILE,
                    cluster_id=cluster,
                    src_ep=0,
                    dst_ep=0,
                    aps_counter=self._next_aps_counter(),
                    payload=payload,
                )
            )
        except zigpy.exceptions.DeliveryError:
            LOGGER.debug("ZDO reply to 0x%04X not delivered", request.src_nwk)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
