"""An APS ACK completes a send only if it is the ACK of that frame: the same APS counter,
from the node the frame went to (Zigbee spec 2.2.8.4.1: the ACK echoes the APS counter
of the frame it acknowledges, and is sent by its destination).

On the air: real nodes on the virtual air, the peer's ACK built by its own stack and
NWK-secured as usual, only its counter (or its sender) wrong. The sender must report
the delivery as failed, not as done; a right ACK still completes it. And the sans-IO
bookkeeping (``radios.acks``) on its own.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from radios import aps
from radios.acks import PendingAcks
from radios.air import VirtualAir
from radios.aps import ApsHeader, ApsType, Delivery
from radios.node import Outgoing
from radios.rawnode import RawNode
from radios.shell import DeliveryFailed

SENDER, PEER, THIRD = 0x000D6F00000A0C01, 0x000D6F00000A0C02, 0x000D6F00000A0C03
READ = bytes.fromhex("0001000000")  # ZCL Read Attributes, TSN 1, attribute 0x0000


async def network(*ieees: int) -> tuple[RawNode, list[RawNode]]:
    air = VirtualAir()
    tc = await RawNode.trust_centre(air)
    nodes = [await RawNode.joined(air, ieee) for ieee in ieees]
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.know(b.nwk, b.ieee)
    return tc, nodes


async def stop(*nodes: RawNode) -> None:
    for node in nodes:
        await node.stop()


def ack_with_counter(peer: RawNode, shift: int) -> None:
    """The peer's stack answers every frame with its own APS ACK, counter moved by shift."""
    own = peer.node._ack

    def ack(nwk_header, header, partner):  # noqa: ANN001
        own(nwk_header, dataclasses.replace(header, counter=(header.counter + shift) & 0xFF),
            partner)

    peer.node._ack = ack  # type: ignore[method-assign]


def outgoing(sender: RawNode, dst: RawNode) -> Outgoing:
    return sender.node.data_frame(dst_nwk=dst.nwk, profile=0x0109, cluster=0x0702, src_ep=1,
                                  dst_ep=1, payload=READ, ack=True, aps_secure=False)


@pytest.mark.parametrize("shift", [1, -1, 128])
async def test_an_aps_ack_with_another_counter_does_not_complete_the_send(shift):
    tc, (sender, peer) = await network(SENDER, PEER)
    try:
        ack_with_counter(peer, shift)
        out = outgoing(sender, peer)
        with pytest.raises(DeliveryFailed, match="no APS ACK"):
            await sender.shell.send(out, ack_timeout=0.4)
        assert len(peer.received) == 1  # the frame did arrive; only its ACK was wrong
        ack_with_counter(peer, -shift)  # the same peer, its ACKs right again: delivered
        await sender.shell.send(outgoing(sender, peer), ack_timeout=2.0)
    finally:
        await stop(sender, peer, tc)


async def test_an_aps_ack_from_another_node_does_not_complete_the_send():
    tc, (sender, peer, third) = await network(SENDER, PEER, THIRD)
    try:
        peer.node._ack = lambda *a: None  # type: ignore[method-assign]  # the peer stays silent
        out = outgoing(sender, peer)
        # a third node of the network sends an ACK with exactly the counter the sender waits for
        ack = ApsHeader(ApsType.ACK, out.counter, Delivery.UNICAST, dst_ep=1, cluster=0x0702,
                        profile=0x0109, src_ep=1)
        forged = Outgoing(third.node.nwk_frame(sender.nwk, ack.encode()), sender.nwk)

        async def forge() -> None:
            await asyncio.sleep(0.05)
            await third.shell.transmit(forged)

        task = asyncio.create_task(forge())
        with pytest.raises(DeliveryFailed, match="no APS ACK"):
            await sender.shell.send(out, ack_timeout=0.4)
        await task
        assert aps.decode_header(ack.encode())[0].counter == out.counter  # the forgery was apt
    finally:
        await stop(sender, peer, third, tc)


async def test_pending_acks_match_source_and_counter():
    acks = PendingAcks()
    with acks.expect(0x1234, 7) as fut, acks.expect(0x1234, 8) as other:
        for src, counter in ((0x1234, 6), (0x1235, 7), (0x4321, 7), (0x0000, 7)):
            acks.resolve(src, counter)
        assert not fut.done() and not other.done()
        acks.resolve(0x1234, 7)
        assert fut.done() and not other.done()
        acks.resolve(0x1234, 7)  # a second copy of the ACK is harmless
    # forgotten on exit: a late ACK finds nothing, and a new wait is not completed by it
    with acks.expect(0x1234, 7) as again:
        assert not again.done()
    acks.resolve(0x1234, 7)
    with acks.expect(0x1234, 9) as last:
        acks.cancel_all()
        assert last.cancelled()
