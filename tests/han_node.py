"""A HAN node that sends ZCL frames to the meter and keeps what comes back: a member of the
development network (``secure.se_client``) with an application link key with the meter,
so its SE frames travel APS-encrypted as SE requires."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from secure import se_client
from zigpy.zcl import foundation

from radios.air import VirtualAir
from radios.rawnode import RawNode
from sep.zcl.security import requires_aps_security


@dataclasses.dataclass(frozen=True)
class Got:
    cluster_id: int
    payload: bytes


class Node:
    def __init__(self, raw: RawNode, clusters: tuple[int, ...]) -> None:
        self.raw = raw
        self.clusters = clusters
        self.n = 0  # the last TSN asked with

    @classmethod
    async def create(cls, air: VirtualAir, meter: Any, *, clusters: tuple[int, ...],
                     ieee: int = 0x000D6F0000003B3B) -> Node:
        return cls(await se_client(air, ieee, meter), clusters)

    @classmethod
    async def trust_centre(cls, air: VirtualAir, *, clusters: tuple[int, ...]) -> Node:
        """The coordinator and trust centre (NWK 0x0000) of the development network, as a
        node that talks ZCL too: start it before the meter, which joins it."""
        return cls(await RawNode.trust_centre(air, aps_policy=requires_aps_security), clusters)

    @property
    def nwk(self) -> int:
        return self.raw.nwk

    @property
    def got(self) -> list[Got]:
        return [Got(i.cluster, i.payload) for i in self.raw.received
                if i.dst_nwk == self.raw.nwk and i.cluster in self.clusters]

    def frames(self, cluster: int | None = None) -> list[bytes]:
        return [f.payload for f in self.got if cluster is None or f.cluster_id == cluster]

    async def send(self, dst: int, cluster: int, data: bytes, *, dst_ep: int = 1) -> None:
        await self.raw.send(dst, cluster, data, dst_ep=dst_ep)

    async def stop(self) -> None:
        await self.raw.stop()

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
