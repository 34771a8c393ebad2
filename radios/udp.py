"""The virtual air across processes: a loopback UDP medium.

One process hosts the air (:func:`serve_udp`, e.g. ``hubsim demo --air-port``); others
mirror it (:func:`connect_udp`, a radio path ``udp://127.0.0.1:PORT``). Every frame a
client transmits goes to the host, which delivers it to its own nodes and relays it to
the other clients; frames on the host's air that no local node takes go to every
client. Clients say hello every second so the host knows where they are.

Datagram: ``b"AIR1"`` + little-endian header (see ``_HDR``) + APS payload; ``b"HELO"``
for hellos. Anything else is ignored. Only loopback is intended.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time

from radios.air import AirPort, VirtualAir
from radios.frames import AirFrame, ApsKind

LOGGER = logging.getLogger(__name__)

_MAGIC = b"AIR1"
_HELLO = b"HELO"
_HDR = struct.Struct("<BHHHQHHBBBBBBB")
PEER_TIMEOUT = 5.0


def encode(frame: AirFrame) -> bytes:
    return _MAGIC + _HDR.pack(
        int(frame.kind), frame.pan_id, frame.src_nwk, frame.dst_nwk, frame.src_ieee,
        frame.profile_id, frame.cluster_id, frame.src_ep, frame.dst_ep, frame.aps_counter,
        int(frame.ack_request), frame.radius, frame.nwk_seq, frame.mac_seq,
    ) + frame.payload


def decode(data: bytes) -> AirFrame | None:
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + _HDR.size:
        return None
    try:
        (kind, pan, src, dst, ieee, profile, cluster, sep_, dep, counter, ack, radius, nseq,
         mseq) = _HDR.unpack_from(data, len(_MAGIC))
        return AirFrame(
            kind=ApsKind(kind), pan_id=pan, src_nwk=src, dst_nwk=dst, src_ieee=ieee,
            profile_id=profile, cluster_id=cluster, src_ep=sep_, dst_ep=dep,
            aps_counter=counter, payload=data[len(_MAGIC) + _HDR.size:], ack_request=bool(ack),
            radius=radius, nwk_seq=nseq, mac_seq=mseq,
        )
    except (ValueError, struct.error):
        return None


class UdpAirServer(asyncio.DatagramProtocol):
    def __init__(self, air: VirtualAir) -> None:
        self.air = air
        self.peers: dict[tuple[str, int], float] = {}
        self.transport: asyncio.DatagramTransport | None = None
        air.uplink = self._uplink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _live_peers(self) -> list[tuple[str, int]]:
        now = time.monotonic()
        for addr, seen in list(self.peers.items()):
            if now - seen > PEER_TIMEOUT:
                del self.peers[addr]
        return list(self.peers)

    def _uplink(self, frame: AirFrame, sender: AirPort | None) -> bool:
        peers = self._live_peers()
        if self.transport is not None:
            data = encode(frame)
            for addr in peers:
                self.transport.sendto(data, addr)
        return bool(peers)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peers[addr] = time.monotonic()
        if data == _HELLO:
            return
        frame = decode(data)
        if frame is None:
            return
        self.air.inject(frame)
        if self.transport is not None:
            for peer in self._live_peers():
                if peer != addr:
                    self.transport.sendto(data, peer)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve_udp(air: VirtualAir, host: str = "127.0.0.1", port: int = 0) -> UdpAirServer:
    loop = asyncio.get_running_loop()
    _transport, protocol = await loop.create_datagram_endpoint(
        lambda: UdpAirServer(air), local_addr=(host, port)
    )
    return protocol


class UdpAirLink(asyncio.DatagramProtocol):
    def __init__(self, air: VirtualAir) -> None:
        self.air = air
        self.transport: asyncio.DatagramTransport | None = None
        self._hello: asyncio.Task[None] | None = None
        air.uplink = self._uplink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._hello = asyncio.get_running_loop().create_task(self._say_hello())

    async def _say_hello(self) -> None:
        while self.transport is not None:
            self.transport.sendto(_HELLO)
            await asyncio.sleep(1.0)

    def _uplink(self, frame: AirFrame, sender: AirPort | None) -> bool:
        if self.transport is None:
            return False
        self.transport.sendto(encode(frame))
        return True

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        frame = decode(data)
        if frame is not None:
            self.air.inject(frame)

    def error_received(self, exc: Exception) -> None:
        LOGGER.debug("air link: %s", exc)

    def close(self) -> None:
        if self._hello is not None:
            self._hello.cancel()
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def connect_udp(air: VirtualAir, host: str, port: int) -> UdpAirLink:
    loop = asyncio.get_running_loop()
    _transport, protocol = await loop.create_datagram_endpoint(
        lambda: UdpAirLink(air), remote_addr=(host, port)
    )
    return protocol
