"""The virtual air across processes: a loopback UDP medium.

One process hosts the air (:func:`serve_udp`, e.g. ``hubsim demo --air-port``); others
mirror it (:func:`connect_udp`, a radio path ``udp://127.0.0.1:PORT``). Every frame a
client transmits goes to the host, which delivers it to its own nodes and relays it to
the other clients; frames on the host's air that no local node takes go to every
client. Clients say hello every second so the host knows where they are.

Datagram: ``b"AIR2"`` + the channel (one byte) + the MPDU as on the air (no FCS);
``b"HELO"`` for hellos. Anything else is ignored. Only loopback is intended.
"""

from __future__ import annotations

import asyncio
import logging
import time

from radios.air import AirPort, VirtualAir

LOGGER = logging.getLogger(__name__)

_MAGIC = b"AIR2"
_HELLO = b"HELO"
PEER_TIMEOUT = 5.0


def encode(mpdu: bytes, channel: int) -> bytes:
    return _MAGIC + bytes([channel & 0xFF]) + mpdu


def decode(data: bytes) -> tuple[bytes, int] | None:
    """(MPDU, channel) from a datagram, or None."""
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        return None
    return bytes(data[len(_MAGIC) + 1:]), data[len(_MAGIC)]


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

    def _uplink(self, mpdu: bytes, channel: int, sender: AirPort | None) -> bool:
        peers = self._live_peers()
        if self.transport is not None:
            data = encode(mpdu, channel)
            for addr in peers:
                self.transport.sendto(data, addr)
        return bool(peers)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peers[addr] = time.monotonic()
        if data == _HELLO:
            return
        decoded = decode(data)
        if decoded is None:
            return
        self.air.inject(*decoded)
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

    def _uplink(self, mpdu: bytes, channel: int, sender: AirPort | None) -> bool:
        if self.transport is None:
            return False
        self.transport.sendto(encode(mpdu, channel))
        return True

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        decoded = decode(data)
        if decoded is not None:
            self.air.inject(*decoded)

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
