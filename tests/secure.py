"""Helpers for tests on the secure HAN: a trust centre, members of the development network,
and SE clients that hold an application link key with the meter."""

from __future__ import annotations

from typing import Any

from radios.air import VirtualAir
from radios.rawnode import RawNode
from sep.zcl.security import requires_aps_security


def ieee_int(ieee: str) -> int:
    """The radio layer's integer form of a printed EUI-64 (most significant byte first)."""
    return int(ieee.replace(":", ""), 16)


async def trust_centre(air: VirtualAir) -> RawNode:
    """A coordinator/trust centre of the development network on ``air``."""
    return await RawNode.trust_centre(air)


async def se_client(air: VirtualAir, ieee: int, meter: Any) -> RawNode:
    """A joined node with an application link key with ``meter`` (a MeterApp): its SE frames
    travel APS-encrypted as SE requires."""
    node = await RawNode.joined(air, ieee, aps_policy=requires_aps_security)
    meter_ieee = ieee_int(meter.ieee)
    await node.request_link_key(meter_ieee)
    node.know(meter.nwk, meter_ieee)
    return node


class ZclClient:
    """A HAN node that is not the trust centre (say an IHD) sending raw ZCL cluster commands
    to the meter, APS-secured under its own link key with it, and keeping the answers."""

    def __init__(self, node: RawNode, meter: Any, cluster: int, tsn_base: int = 0x40) -> None:
        self.node = node
        self.meter = meter
        self.cluster = cluster
        self.tsn_base = tsn_base
        self.n = 0

    @classmethod
    async def create(cls, air: VirtualAir, ieee: int, meter: Any, cluster: int = 0x0702,
                     tsn_base: int = 0x40) -> ZclClient:
        return cls(await se_client(air, ieee, meter), meter, cluster, tsn_base)

    @property
    def nwk(self) -> int:
        return self.node.nwk

    @property
    def got(self) -> list[bytes]:
        return [ind.payload for ind in self.node.received if ind.cluster == self.cluster]

    async def command(self, command_id: int, payload: bytes) -> bytes:
        """Send one cluster command; the meter's answer (ZCL frame)."""
        import asyncio

        from zigpy.zcl import foundation

        self.n += 1
        before = len(self.got)
        data = foundation.ZCLHeader.cluster((self.tsn_base + self.n) & 0xFF,
                                            command_id).serialize() + payload
        await self.node.send(self.meter.nwk, self.cluster, data)
        for _ in range(300):
            if len(self.got) > before:
                return self.got[-1]
            await asyncio.sleep(0.01)
        raise AssertionError("no answer from the meter")

    async def stop(self) -> None:
        await self.node.stop()
