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
