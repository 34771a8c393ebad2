"""The asyncio shell around the sans-IO OTA client: the meter's firmware-update service.

It finds the HAN's OTA server (ZDO Match Descriptor for an SE OTA server cluster), sends
the client's frames, feeds it server commands and time, verifies the stored image in an
executor (never on the event loop, never from a streaming hash), and hands a verified
image to ``on_apply`` at the upgrade time. Every step goes to ``on_log``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zigpy.application
import zigpy.types as t
import zigpy.zdo
import zigpy.zdo.types as zdo_t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Ota

from radios.tasks import cancel_and_wait
from sep.ota.client import Effect, Frame, OtaClient
from sep.ota.staging import FileSink

LOGGER = logging.getLogger(__name__)
OTA_CLUSTER = 0x0019
SE_PROFILE = 0x0109

Verifier = Callable[[Path], tuple[bool, str | None]]


class OtaService:
    def __init__(self, app: zigpy.application.ControllerApplication, *, endpoint: int,
                 client_factory: Callable[[FileSink], OtaClient], staging_dir: Path,
                 verifier: Verifier, on_apply: Callable[[Path, int], Any],
                 on_log: Callable[[dict[str, Any]], None] | None = None,
                 tick_seconds: float = 0.1) -> None:
        self.app = app
        self.endpoint = endpoint
        self.sink = FileSink(staging_dir)
        self.client = client_factory(self.sink)
        self.verifier = verifier
        self.on_apply = on_apply
        self.on_log = on_log or (lambda step: None)
        self.tick_seconds = tick_seconds
        self.log: list[dict[str, Any]] = []
        self._tsn = 0
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[Any]] = set()

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ota-client")

    async def stop(self) -> None:
        if await cancel_and_wait([t for t in [self._task, *self._jobs] if t is not None], 10):
            LOGGER.warning("OTA: a task did not stop within 10 s; abandoning it")
        self.sink.close()

    async def _run(self) -> None:
        while True:
            await self._do(self.client.tick(time.monotonic()))
            await asyncio.sleep(self.tick_seconds)

    # -- packets ------------------------------------------------------------------------------
    def handles(self, packet: t.ZigbeePacket) -> bool:
        return int(packet.cluster_id) == OTA_CLUSTER and int(packet.dst_ep or 0) in (
            self.endpoint, 0xFF)

    def on_packet(self, packet: t.ZigbeePacket) -> None:
        data = bytes(packet.data.serialize())
        try:
            hdr, payload = foundation.ZCLHeader.deserialize(data)
        except (ValueError, KeyError):
            return
        src = (int(packet.src.address), int(packet.src_ep or 0))
        if hdr.frame_control.is_general:
            if hdr.command_id == foundation.GeneralCommand.Read_Attributes:
                self._spawn(self._read_attributes(src, hdr, payload))
            return
        if hdr.direction != foundation.Direction.Server_to_Client:
            return
        broadcast = packet.dst is not None and packet.dst.addr_mode == t.AddrMode.Broadcast
        try:
            outs = self.client.on_command(int(hdr.command_id), payload, time.monotonic(),
                                          src=src, broadcast=broadcast)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            LOGGER.info("malformed OTA command 0x%02X from 0x%04X: %s", hdr.command_id, src[0], exc)
            if not broadcast and not hdr.frame_control.disable_default_response:
                self._spawn(self._send_default(src, hdr, foundation.Status.MALFORMED_COMMAND))
            return
        self._spawn(self._do(outs))

    async def _read_attributes(self, dst: tuple[int, int], hdr: Any, payload: bytes) -> None:
        """Serve the OTA client attributes (ZHA reads CurrentFileVersion after an update)."""
        values = self.client.attributes()
        out = b""
        for i in range(0, len(payload) - len(payload) % 2, 2):
            attr_id = int.from_bytes(payload[i:i + 2], "little")
            attr = Ota.attributes.get(attr_id)
            if attr is None or attr_id not in values:
                out += foundation.ReadAttributeRecord(
                    attr_id, foundation.Status.UNSUPPORTED_ATTRIBUTE).serialize()
                continue
            tv = foundation.TypeValue(type=attr.zcl_type, value=attr.type(values[attr_id]))
            out += foundation.ReadAttributeRecord(attr_id, foundation.Status.SUCCESS, tv).serialize()
        rsp = foundation.ZCLHeader.general(
            hdr.tsn, foundation.GeneralCommand.Read_Attributes_rsp,
            direction=foundation.Direction.Client_to_Server)
        rsp.frame_control = rsp.frame_control.replace(disable_default_response=1)
        await self._send(dst, rsp.serialize() + out)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _do(self, outs: list[Frame | Effect]) -> None:
        for out in outs:
            if isinstance(out, Frame):
                await self._send_frame(out)
            elif out.name == "log":
                entry = {"time": time.time(), "current_version": self.client.current_version,
                         **out.data}
                self.log.append(entry)
                LOGGER.info("OTA: %s", entry)
                self.on_log(entry)
            elif out.name == "discover":
                await self._discover()
            elif out.name == "verify":
                self._spawn(self._verify())
            elif out.name == "apply":
                version = int(out.data["file_version"])
                entry = {"time": time.time(), "step": "apply", "file_version": version,
                         "current_version": self.client.current_version}
                self.log.append(entry)
                self.on_log(entry)
                result = self.on_apply(self.sink.data_path, version)
                if asyncio.iscoroutine(result):
                    await result

    async def _verify(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            ok, reason = await loop.run_in_executor(None, self.verifier, self.sink.data_path)
        except Exception as exc:  # noqa: BLE001 - a verifier crash is a failed verification
            ok, reason = False, f"verifier failed: {exc}"
        await self._do(self.client.verified(ok, reason, time.monotonic()))

    async def _discover(self) -> None:
        try:
            await zigpy.zdo.broadcast(
                self.app, zdo_t.ZDOCmd.Match_Desc_req, 0, 0, t.NWK(0xFFFD), SE_PROFILE,
                [OTA_CLUSTER], [], broadcast_address=t.BroadcastAddress.RX_ON_WHEN_IDLE)
        except Exception as exc:  # noqa: BLE001
            LOGGER.info("OTA server discovery not sent: %s", exc)

    async def query_now(self) -> None:
        await self._do(self.client.query_now(time.monotonic()))

    def on_match(self, nwk: int, endpoints: list[int]) -> None:
        """A Match_Desc_rsp for our OTA query arrived."""
        if self.client.server is None and endpoints:
            self._spawn(self._do(self.client.set_server(nwk, endpoints[0], time.monotonic())))

    # -- sending -------------------------------------------------------------------------
    async def _send_frame(self, frame: Frame) -> None:
        if self.client.server is None:
            return
        self._tsn = (self._tsn + 1) & 0xFF
        hdr = foundation.ZCLHeader(
            frame_control=foundation.FrameControl(
                frame_type=foundation.FrameType.CLUSTER_COMMAND, is_manufacturer_specific=0,
                direction=foundation.Direction.Client_to_Server, disable_default_response=1,
                reserved=0),
            tsn=self._tsn, command_id=frame.command_id)
        await self._send(self.client.server, hdr.serialize() + frame.payload)

    async def _send_default(self, dst: tuple[int, int], hdr: Any, status: Any) -> None:
        rsp = foundation.ZCLHeader.general(hdr.tsn, foundation.GeneralCommand.Default_Response,
                                           direction=foundation.Direction.Client_to_Server)
        await self._send(dst, rsp.serialize() + bytes([int(hdr.command_id), int(status)]))

    async def _send(self, dst: tuple[int, int], data: bytes) -> None:
        packet = t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=self.app.state.node_info.nwk),
            src_ep=self.endpoint,
            dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(dst[0])),
            dst_ep=dst[1], tsn=data[1], profile_id=SE_PROFILE, cluster_id=OTA_CLUSTER,
            data=t.SerializableBytes(data), tx_options=t.TransmitOptions.ACK)
        try:
            await self.app.send_packet(packet)
        except Exception as exc:  # noqa: BLE001 - a lost frame is a timeout for the client
            LOGGER.info("OTA frame to 0x%04X not sent: %s", dst[0], exc)
