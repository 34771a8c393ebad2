"""A raw node on the virtual air that sends ZCL frames and keeps what comes back."""

from __future__ import annotations

import asyncio

from zigpy.zcl import foundation

from radios.air import VirtualAir
from radios.frames import AirFrame, ApsKind


class Node:
    def __init__(self, air: VirtualAir, nwk: int, *, clusters: tuple[int, ...]) -> None:
        self.nwk = nwk
        self.clusters = clusters
        self.got: list[AirFrame] = []
        self.n = 0  # the last TSN asked with
        self.aps = 0
        self.port = air.attach(0x1000 + nwk, nwk, self._rx)

    def _rx(self, f: AirFrame) -> None:
        if f.kind == ApsKind.DATA and f.dst_nwk == self.nwk and f.cluster_id in self.clusters:
            self.got.append(f)

    def frames(self, cluster: int | None = None) -> list[bytes]:
        return [f.payload for f in self.got if cluster is None or f.cluster_id == cluster]

    async def send(self, dst: int, cluster: int, data: bytes, *, dst_ep: int = 1) -> None:
        self.aps += 1
        await self.port.transmit(AirFrame(
            kind=ApsKind.DATA, pan_id=0x1A62, src_nwk=self.nwk, dst_nwk=dst,
            src_ieee=0x1000 + self.nwk, profile_id=0x0109, cluster_id=cluster, src_ep=1,
            dst_ep=dst_ep, aps_counter=self.aps & 0xFF, payload=data))

    async def ask(self, dst: int, cluster: int, command_id: int, payload: bytes = b"", *,
                  general: bool = False, direction: int = 0, manufacturer: int | None = None,
                  quiet: float = 0.15, timeout: float = 5.0) -> list[bytes]:
        """Send a command; return every frame answering its TSN (waits until ``quiet``
        seconds pass without one)."""
        self.n += 1
        tsn = self.n & 0xFF
        if general:
            hdr = foundation.ZCLHeader.general(tsn, command_id, manufacturer=manufacturer,
                                               direction=direction)
        else:
            hdr = foundation.ZCLHeader.cluster(tsn, command_id, manufacturer=manufacturer,
                                               direction=direction)
        before = len(self.got)
        await self.send(dst, cluster, hdr.serialize() + payload)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = loop.time()
        count = 0
        while loop.time() < deadline:
            answers = [f.payload for f in self.got[before:]
                       if f.cluster_id == cluster and f.payload[1] == tsn]
            if len(answers) != count:
                count, last = len(answers), loop.time()
            if count and loop.time() - last >= quiet:
                return answers
            await asyncio.sleep(0.01)
        raise AssertionError(f"no answer to command 0x{command_id:02X} on 0x{cluster:04X}")


def default_status(frames: list[bytes]) -> int:
    """The status of a single Default Response (ZCL 2.5.12)."""
    assert len(frames) == 1, [f.hex() for f in frames]
    f = frames[0]
    assert f[0] & 0x03 == 0 and f[2] == 0x0B, f.hex()
    return f[-1]


def discovered(frames: list[bytes]) -> tuple[bool, list[int]]:
    """A Discover Commands Received/Generated Response: (complete, command ids)."""
    assert len(frames) == 1
    return bool(frames[0][3]), list(frames[0][4:])


def discovered_attributes(frames: list[bytes]) -> tuple[bool, list[int]]:
    """A Discover Attributes Response: (complete, attribute ids)."""
    assert len(frames) == 1
    body = frames[0][4:]
    return bool(frames[0][3]), [int.from_bytes(body[i:i + 2], "little")
                                for i in range(0, len(body), 3)]
