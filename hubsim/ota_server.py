"""hubsim's OTA Upgrade server: serves images from a directory, with fault injection.

The core (:class:`OtaServerCore`) is sans-IO: a client request in, response frames out
(each with the delay after which the shell should send it). The shell
(:class:`HubOtaServer`) hooks the hub's zigpy application so OTA requests reach the core
before zigpy's own OTA handling.

Images are read with zigpy's lenient OTA header parser on purpose: the server must also
be able to serve broken or tampered files to test that the *client* refuses them.

Faults (:class:`Faults`): drop every Nth request, delay responses, answer WAIT_FOR_DATA,
corrupt one block, abort at an offset, tamper with the image bytes, ignore page requests,
and misdeliver blocks: send some twice, out of order, or late (after the client has
already asked again and moved on), as a busy mesh does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import zigpy.application
import zigpy.types as t
from zigpy.ota.image import OTAImageHeader
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Ota

LOGGER = logging.getLogger(__name__)
Status = foundation.Status
OTA_CLUSTER = 0x0019
ZIGBEE_EPOCH = 946_684_800
SERVER_MAX_DATA = 64  # what one block response carries at most on this HAN


@dataclasses.dataclass
class Faults:
    drop_every: int = 0  # drop every Nth block/page request (0: none)
    delay: float = 0.0  # seconds before each response
    wait_for_data_times: int = 0  # answer this many block requests with WAIT_FOR_DATA
    wait_for_data_seconds: int = 1
    corrupt_offset: int | None = None  # flip a byte in the block that starts here, once
    abort_at: int | None = None  # ABORT when a request reaches this offset
    tamper: bool = False  # serve the image with one byte changed
    no_pages: bool = False  # ignore Image Page Requests (clients must fall back to blocks)
    min_block_period_ms: int = 0
    duplicate_every: int = 0  # send every Nth block twice (0: none)
    reorder: bool = False  # swap neighbouring blocks of a page; a lone block follows the next one
    late_every: int = 0  # hold every Nth block response back by late_seconds (0: none)
    late_seconds: float = 0.0


@dataclasses.dataclass
class ServedImage:
    manufacturer: int
    image_type: int
    file_version: int
    data: bytes
    path: Path | None = None


def load_image(path: Path) -> ServedImage:
    data = path.read_bytes()
    hdr, _ = OTAImageHeader.deserialize(data)
    return ServedImage(int(hdr.manufacturer_id), int(hdr.image_type), int(hdr.file_version),
                       data, path)


@dataclasses.dataclass
class Out:
    command_id: int
    payload: bytes
    delay: float = 0.0


class OtaServerCore:
    def __init__(self, images: Iterable[ServedImage] = (), *, faults: Faults | None = None,
                 upgrade_delay: int | None = 0, clock=time.time) -> None:
        self.images: dict[tuple[int, int], ServedImage] = {}
        for image in images:
            self.add(image)
        self.faults = faults or Faults()
        self.upgrade_delay = upgrade_delay  # seconds; None = 0xFFFFFFFF (wait)
        self.clock = clock
        self.requests = 0
        self.dropped = 0
        self.blocks_sent = 0
        self.bytes_sent = 0
        self.upgrade_end: list[int] = []  # statuses the clients reported
        self.highest_offset = 0  # how far into the image any client has been served
        self._waits_left = self.faults.wait_for_data_times
        self._corrupted = False
        self._blocks_out = 0  # block responses built (duplicate_every counts these)
        self._responses = 0  # block/page requests answered with data (late_every counts these)

    def add(self, image: ServedImage) -> None:
        self.images[(image.manufacturer, image.image_type)] = image

    @classmethod
    def from_directory(cls, directory: Path, **kw: Any) -> OtaServerCore:
        images = []
        for path in sorted(directory.glob("*")):
            if path.is_file():
                try:
                    images.append(load_image(path))
                except ValueError:
                    LOGGER.warning("not an OTA file, not served: %s", path)
        return cls(images, **kw)

    def _data(self, image: ServedImage) -> bytes:
        if self.faults.tamper:
            data = bytearray(image.data)
            data[len(data) // 2] ^= 0x01
            return bytes(data)
        return image.data

    def notify_payload(self, image: ServedImage | None = None, jitter: int = 100) -> bytes:
        if image is None:
            return t.uint8_t(0).serialize() + t.uint8_t(jitter).serialize()
        return (t.uint8_t(3).serialize() + t.uint8_t(jitter).serialize()
                + t.uint16_t(image.manufacturer).serialize()
                + t.uint16_t(image.image_type).serialize()
                + t.uint32_t(image.file_version).serialize())

    def handle(self, command_id: int, payload: bytes) -> list[Out]:
        schema = Ota.server_commands[command_id].schema
        args, _ = schema.deserialize(payload)
        self.requests += 1
        d = self.faults.delay
        if command_id == 0x01:
            return [Out(0x02, self._query_response(args), d)]
        if command_id in (0x03, 0x04):
            if self.faults.drop_every and self.requests % self.faults.drop_every == 0:
                self.dropped += 1
                return []
            if command_id == 0x04 and self.faults.no_pages:
                return []
            return self._blocks(command_id, args)
        if command_id == 0x06:
            self.upgrade_end.append(int(args.status))
            if args.status != Status.SUCCESS:
                return []
            now = int(self.clock()) - ZIGBEE_EPOCH
            upgrade = 0xFFFFFFFF if self.upgrade_delay is None else now + self.upgrade_delay
            payload = (t.uint16_t(args.manufacturer_code).serialize()
                       + t.uint16_t(args.image_type).serialize()
                       + t.uint32_t(args.file_version).serialize()
                       + t.uint32_t(now).serialize() + t.uint32_t(upgrade).serialize())
            return [Out(0x07, payload, d)]
        return []

    def upgrade_now_payload(self, image: ServedImage) -> bytes:
        """An unsolicited Upgrade End Response telling a waiting client to upgrade now."""
        now = int(self.clock()) - ZIGBEE_EPOCH
        return (t.uint16_t(image.manufacturer).serialize() + t.uint16_t(image.image_type).serialize()
                + t.uint32_t(image.file_version).serialize() + t.uint32_t(now).serialize()
                + t.uint32_t(now).serialize())

    def _query_response(self, args: Any) -> bytes:
        image = self.images.get((int(args.manufacturer_code), int(args.image_type)))
        if image is None or image.file_version == int(args.current_file_version):
            return t.uint8_t(Status.NO_IMAGE_AVAILABLE).serialize()
        # Offered even when older: refusing downgrades is the client's job, and tested.
        return (t.uint8_t(Status.SUCCESS).serialize()
                + t.uint16_t(image.manufacturer).serialize()
                + t.uint16_t(image.image_type).serialize()
                + t.uint32_t(image.file_version).serialize()
                + t.uint32_t(len(image.data)).serialize())

    def _blocks(self, command_id: int, args: Any) -> list[Out]:
        image = self.images.get((int(args.manufacturer_code), int(args.image_type)))
        if image is None or image.file_version != int(args.file_version):
            return [Out(0x05, t.uint8_t(Status.NO_IMAGE_AVAILABLE).serialize())]
        offset = int(args.file_offset)
        if self.faults.abort_at is not None and offset >= self.faults.abort_at:
            return [Out(0x05, t.uint8_t(Status.ABORT).serialize())]
        if self._waits_left > 0:
            self._waits_left -= 1
            now = int(self.clock()) - ZIGBEE_EPOCH
            return [Out(0x05, t.uint8_t(Status.WAIT_FOR_DATA).serialize()
                        + t.uint32_t(now).serialize()
                        + t.uint32_t(now + self.faults.wait_for_data_seconds).serialize()
                        + t.uint16_t(self.faults.min_block_period_ms).serialize())]
        data = self._data(image)
        size = min(int(args.maximum_data_size), SERVER_MAX_DATA)
        end = offset + (int(args.page_size) if command_id == 0x04 else size)
        end = min(end, len(data))
        spacing = (int(args.response_spacing) / 1000) if command_id == 0x04 else 0.0
        chunks: list[tuple[int, bytes]] = []
        while offset < end:
            chunk = bytearray(data[offset: min(offset + size, end)])
            if self.faults.corrupt_offset == offset and not self._corrupted:
                chunk[0] ^= 0xFF
                self._corrupted = True
            chunks.append((offset, bytes(chunk)))
            offset += len(chunk)
            self.highest_offset = max(self.highest_offset, offset)
        out = []
        delay = self.faults.delay
        self._responses += 1
        if self.faults.late_every and self._responses % self.faults.late_every == 0:
            delay += self.faults.late_seconds
        for at, chunk_bytes in self._misdeliver(chunks, data, size):
            out.append(Out(0x05, t.uint8_t(Status.SUCCESS).serialize()
                           + t.uint16_t(image.manufacturer).serialize()
                           + t.uint16_t(image.image_type).serialize()
                           + t.uint32_t(image.file_version).serialize()
                           + t.uint32_t(at).serialize()
                           + t.LVBytes(chunk_bytes).serialize(), delay))
            self.blocks_sent += 1
            self.bytes_sent += len(chunk_bytes)
            delay = spacing
        return out

    def _misdeliver(self, chunks: list[tuple[int, bytes]], data: bytes,
                    size: int) -> list[tuple[int, bytes]]:
        """The blocks of one response as a faulty mesh delivers them (Faults: reorder,
        duplicate_every); each block still carries its true offset and bytes."""
        chunks = list(chunks)
        if self.faults.reorder and len(chunks) == 1:
            ahead = chunks[0][0] + len(chunks[0][1])  # the next block arrives first
            if ahead < len(data):
                chunks.insert(0, (ahead, data[ahead: ahead + size]))
        elif self.faults.reorder:
            for i in range(0, len(chunks) - 1, 2):
                chunks[i], chunks[i + 1] = chunks[i + 1], chunks[i]
        if not self.faults.duplicate_every:
            return chunks
        out = []
        for chunk in chunks:
            self._blocks_out += 1
            out.append(chunk)
            if self._blocks_out % self.faults.duplicate_every == 0:
                out.append(chunk)
        return out


class HubOtaServer:
    """The core on the hub's zigpy application (endpoint 1 carries the OTA server)."""

    def __init__(self, app: zigpy.application.ControllerApplication, core: OtaServerCore,
                 endpoint: int = 1) -> None:
        self.app = app
        self.core = core
        self.endpoint = endpoint
        self._tsn = 0
        self._upstream = app.packet_received
        app.packet_received = self._on_packet  # type: ignore[method-assign]
        self._tasks: set[asyncio.Task[None]] = set()
        self.clients: dict[int, int] = {}  # nwk -> endpoint of clients seen

    def _on_packet(self, packet: t.ZigbeePacket) -> None:
        if packet.cluster_id != OTA_CLUSTER or packet.dst_ep != self.endpoint:
            self._upstream(packet)
            return
        data = bytes(packet.data.serialize())
        try:
            hdr, payload = foundation.ZCLHeader.deserialize(data)
        except (ValueError, KeyError):
            return
        if not hdr.frame_control.is_cluster or hdr.direction != foundation.Direction.Client_to_Server:
            return
        src = (int(packet.src.address), int(packet.src_ep))
        self.clients[src[0]] = src[1]
        try:
            outs = self.core.handle(int(hdr.command_id), payload)
        except (ValueError, KeyError):
            LOGGER.info("malformed OTA request from 0x%04X", src[0])
            outs = []
        task = asyncio.get_running_loop().create_task(self._send_all(src, hdr.tsn, outs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_all(self, dst: tuple[int, int], tsn: int, outs: list[Out]) -> None:
        for out in outs:
            if out.delay:
                await asyncio.sleep(out.delay)
            await self.send(dst, out.command_id, out.payload, tsn=tsn)

    async def send(self, dst: tuple[int, int], command_id: int, payload: bytes,
                   tsn: int | None = None, broadcast: bool = False) -> None:
        if tsn is None:
            self._tsn = (self._tsn + 1) & 0xFF
            tsn = self._tsn
        hdr = foundation.ZCLHeader.cluster(tsn, command_id,
                                           direction=foundation.Direction.Server_to_Client)
        if broadcast:
            dst_addr = t.AddrModeAddress(addr_mode=t.AddrMode.Broadcast,
                                         address=t.BroadcastAddress.RX_ON_WHEN_IDLE)
        else:
            dst_addr = t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(dst[0]))
        packet = t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=self.app.state.node_info.nwk),
            src_ep=self.endpoint, dst=dst_addr, dst_ep=dst[1] if not broadcast else 0xFF,
            tsn=tsn, profile_id=0x0109, cluster_id=OTA_CLUSTER,
            data=t.SerializableBytes(hdr.serialize() + payload),
            tx_options=t.TransmitOptions.NONE if broadcast else t.TransmitOptions.ACK,
        )
        try:
            await self.app.send_packet(packet)
        except Exception as exc:  # noqa: BLE001 - the server carries on
            LOGGER.info("OTA response to 0x%04X not delivered: %s", dst[0], exc)

    async def notify(self, image: ServedImage | None = None, jitter: int = 100,
                     dst: tuple[int, int] | None = None) -> None:
        payload = self.core.notify_payload(image, jitter)
        if dst is None:
            await self.send((0xFFFD, 0xFF), 0x00, payload, broadcast=True)
        else:
            await self.send(dst, 0x00, payload)
