"""NWK address allocation that always ends, and address conflicts found and resolved.

Independent truth: the sets of taken addresses the tests build themselves, every node's
own view of its address and the trust centre's address map (which learns addresses from
the secured frames' source IEEE), frames actually delivered to the moved nodes, and
tshark's Zigbee NWK dissector for the Network Status "address conflict" command.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from radios.addressing import SPACE, AddressSpaceFull, stochastic_address
from radios.air import VirtualAir
from radios.pcap import PcapWriter
from radios.rawnode import RawNode
from radios.virtual import DEVELOPMENT_KEY
from tests.tshark_util import fields, requires_tshark

FLEET = 1024
CELL = 16  # nodes per broadcast neighbourhood


def test_allocation_ends_when_every_random_draw_hits_a_used_address():
    taken = set(range(1, 2000))
    calls = []

    def draw(n: int) -> int:  # a broken random source: always the same used address
        calls.append(n)
        return 41

    addr = stochastic_address(draw, taken.__contains__)
    assert addr not in taken and 1 <= addr <= 0xFFF7
    assert len(calls) <= 65  # the draws, then one sweep (which needs one more draw)


def test_allocation_finds_the_last_free_address_and_says_when_the_pan_is_full():
    free = 0x8123
    taken = lambda a: a != free  # noqa: E731
    assert stochastic_address(secrets.randbelow, taken) == free
    with pytest.raises(AddressSpaceFull):
        stochastic_address(secrets.randbelow, lambda a: True)
    assert SPACE == 0xFFF7  # 0x0001..0xFFF7; 0xFFF8.. are broadcast and reserved


def test_air_free_nwk_is_bounded_and_free():
    air = VirtualAir()
    ports = [air.attach(i + 1, lambda m: None) for i in range(50)]
    for i, port in enumerate(ports):
        port.set_address(air.pan_id, i + 1)

    class Stuck:
        def randrange(self, a, b=None):  # every draw hits an address in use
            return 7 if b is None else a + 6

    nwk = air.free_nwk(air.channel, air.pan_id, rng=Stuck())  # type: ignore[arg-type]
    assert nwk > 50 and not air.nwk_in_use(air.channel, air.pan_id, nwk)


async def _fleet(air: VirtualAir, tc: RawNode, count: int) -> list[RawNode]:
    nodes = []
    for i in range(count):
        node = RawNode(air, 0x000D6F0000100000 + i, link_key=DEVELOPMENT_KEY, capture=False)
        node.shell.cell = i // CELL
        nodes.append(node)
    batch = 128
    for start in range(0, count, batch):
        await asyncio.gather(*(n.join() for n in nodes[start:start + batch]))
    return nodes


async def test_a_thousand_nodes_join_with_distinct_addresses_even_with_a_stuck_random_source():
    air = VirtualAir()
    tc = await RawNode.trust_centre(air)
    # the trust centre's random source always proposes the same address: allocation must
    # still end, with a free address every time
    tc.node.random = lambda n: 0x1234 % n
    nodes = await _fleet(air, tc, FLEET)
    try:
        own = [n.node.state.nwk for n in nodes]
        assert all(n.node.joined for n in nodes)
        assert len(set(own)) == FLEET and 0x0000 not in own
        assert all(1 <= a <= 0xFFF7 for a in own)
        # the trust centre's map agrees with every node's own address
        amap = tc.node.state.address_map
        assert {amap[n.nwk] for n in nodes} == {n.ieee for n in nodes}
        assert all(amap[n.nwk] == n.ieee for n in nodes)
    finally:
        for n in nodes:
            await n.stop()
        await tc.stop()


async def _settle(seconds: float = 0.3) -> None:
    await asyncio.sleep(seconds)


@requires_tshark
async def test_a_forced_conflict_is_detected_and_resolved(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "conflict.pcap"
    writer = PcapWriter(pcap).capture(air)
    tc = await RawNode.trust_centre(air)
    a = await RawNode.joined(air, 0x000D6F00000000A1, capture=False)
    b = await RawNode.joined(air, 0x000D6F00000000B2, capture=False)
    try:
        await _settle(0.1)
        stolen = a.nwk
        assert b.nwk != stolen
        # b takes a's address (a node that was away while its address was given again)
        b.node.set_nwk(stolen)
        b.node.announce()
        b.shell.pump()
        await _settle()
        assert a.node.stats["nwk_address_conflict"] >= 1  # detected by the owner
        addresses = {tc.nwk, a.nwk, b.nwk}
        assert len(addresses) == 3, addresses  # resolved: three distinct addresses
        assert stolen not in {a.nwk, b.nwk} or [a.nwk, b.nwk].count(stolen) == 1
        assert any(ev.kind == "address_changed" for ev in a.events + b.events)
        # the trust centre follows: its map names each node at its address now
        amap = tc.node.state.address_map
        assert amap[a.nwk] == a.ieee and amap[b.nwk] == b.ieee
        # and unicasts reach both, each under its own link key
        for node in (a, b):
            before = len(node.received)
            await tc.send(node.nwk, 0x0702, b"\x00\x01\x00\x00\x00", ack=True,
                          aps_secure=True)
            await _settle(0.05)
            assert len(node.received) == before + 1
            assert node.received[-1].aps_partner == tc.ieee
        # the air indexes each address once
        for node in (a, b):
            assert air.nwk_in_use(air.channel, air.pan_id, node.nwk)
    finally:
        for n in (b, a, tc):
            await n.stop()
        writer.close()
    rows = fields(pcap, "zbee_nwk.cmd.id == 0x03", ["zbee_nwk.cmd.status",
                                                     "zbee_nwk.cmd.route.dest"])
    assert rows, "no Network Status on the air"
    assert all(int(r[0], 0) == 0x0D for r in rows)  # "Address conflict"
    assert any(int(r[1], 0) == stolen for r in rows)
    rows = fields(pcap, "zbee_zdp && zbee_zdp.ext_addr", ["zbee_zdp.nwk_addr", "zbee_zdp.ext_addr"])
    announced = {int(r[0], 0) for r in rows}
    assert {a.nwk, b.nwk} <= announced  # each moved node announced its new address
