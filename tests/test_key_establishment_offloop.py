"""Key Establishment off the event loop: the loop keeps answering while suite-2 maths runs.

A heartbeat task ticks every millisecond; every core call goes through
:class:`OffLoopKeyEstablishment`. Had a call run on the loop, no heartbeat could happen while
it was pending -- so the test counts heartbeats during the heaviest calls (the ECMQV
derivation, two sect283k1 multiplications). Several exchanges also run at once in the
executor, each with its own partner, and must all agree on their keys.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from ke_support import IEEE_A, IEEE_B, Node, node

from sep.clusters.key_establishment import KeyEstablished
from sep.ke.executor import OffLoopKeyEstablishment, process_compute
from sep.zcl.frames import Reply, Request, decode_header

NOW = 1_800_000_000.0


class Heartbeat:
    def __init__(self) -> None:
        self.beats = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.001)
            self.beats += 1


async def exchange(init: tuple[Node, OffLoopKeyEstablishment],
                   resp: tuple[Node, OffLoopKeyEstablishment], heart: Heartbeat,
                   during: list[tuple[int, bool, int]]) -> None:
    """Run one exchange frame by frame through the executors; record, per core call, the
    command it handled, its direction (to the server?) and the heartbeats that happened
    while it was pending."""
    nodes = {init[0].nwk: init, resp[0].nwk: resp}
    queue = [(init[0], e) for e in await init[1].initiate(resp[0].nwk, 1, resp[0].ieee, NOW,
                                                           suite=2)]
    while queue:
        src, effect = queue.pop(0)
        if not isinstance(effect, Reply):
            src.effects.append(effect)
            continue
        dst, off = nodes[effect.dst_nwk]
        header, payload = decode_header(effect.data)
        req = Request(src_nwk=src.nwk, src_ep=1, dst_ep=1, profile_id=0x0109,
                      cluster_id=0x0800, header=header, payload=payload, src_ieee=src.ieee)
        before = heart.beats
        effects = await off.handle(req, NOW)
        during.append((effect.data[2], not effect.data[0] & 0x08, heart.beats - before))
        queue += [(dst, e) for e in effects]


async def test_loop_keeps_answering_while_a_suite2_exchange_runs():
    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (2,))
    offs = OffLoopKeyEstablishment(u.core), OffLoopKeyEstablishment(v.core)
    heart = Heartbeat()
    task = asyncio.create_task(heart.run())
    during: list[tuple[int, bool, int]] = []
    try:
        await exchange((u, offs[0]), (v, offs[1]), heart, during)
    finally:
        task.cancel()
        for off in offs:
            off.close()
    (ku,), (kv,) = u.established, v.established
    assert ku.link_key == kv.link_key
    # the calls that derive Z (two sect283k1 multiplications): the initiator's on
    # EphemeralDataResponse, the responder's on ConfirmKeyDataRequest. The loop beat meanwhile.
    heavy = [beats for command, to_server, beats in during
             if (command, to_server) in ((0x01, False), (0x02, True))]
    assert len(heavy) == 2 and min(heavy) >= 3, during


async def test_concurrent_exchanges_in_the_executor_agree():
    responder = node("V", IEEE_B, 0x0000, (2,), max_sessions=4)
    initiators = [node(f"U{i}", 0x000D6F0000001000 + i, 0x5000 + i, (2,)) for i in range(4)]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    off_v = OffLoopKeyEstablishment(responder.core, pool)
    heart = Heartbeat()
    task = asyncio.create_task(heart.run())
    try:
        await asyncio.gather(*(exchange((u, OffLoopKeyEstablishment(u.core, pool)),
                                        (responder, off_v), heart, []) for u in initiators))
    finally:
        task.cancel()
        pool.shutdown()
    got = {e.partner_ieee: e.link_key for e in responder.effects if isinstance(e, KeyEstablished)}
    assert got == {u.ieee: u.established[0].link_key for u in initiators}
    assert responder.core.exchanges == 0


async def test_maths_in_worker_processes_gives_the_same_protocol():
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=2)
    try:
        u = node("U", IEEE_A, 0x4A01, (2,), compute=process_compute(pool))
        v = node("V", IEEE_B, 0x0000, (2,), compute=process_compute(pool))
        offs = OffLoopKeyEstablishment(u.core), OffLoopKeyEstablishment(v.core)
        await exchange((u, offs[0]), (v, offs[1]), Heartbeat(), [])
        for off in offs:
            off.close()
    finally:
        pool.shutdown()
    assert u.established[0].link_key == v.established[0].link_key
