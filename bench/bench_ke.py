"""Key Establishment figures: exchange time per suite, and event-loop lag while exchanges run.

1. One whole CBKE exchange per run, both sides in this process, sans-IO (no loop): the time
   from ``initiate`` to both ``KeyEstablished``, p50/p99 over N runs, per suite.
2. An asyncio loop serving 200 small ZCL reads a second (Read Attributes of the
   KeyEstablishmentSuite attribute, through the cluster server) while 10 suite-2 exchanges run
   beside it through :class:`~sep.ke.executor.OffLoopKeyEstablishment`. Lag = how
   late each read's timer fired; p50/p99/max. Three set-ups: no exchanges (baseline), the
   maths in executor threads (it holds the GIL), the maths in worker processes.

    .venv/bin/python bench/bench_ke.py [--runs N] [--exchanges K] [--threads T]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zigpy.zcl import foundation  # noqa: E402

from sep.clusters.key_establishment import KeyEstablished, KeyEstablishment  # noqa: E402
from sep.ke.executor import OffLoopKeyEstablishment, process_compute  # noqa: E402
from sep.security.keyfiles import generate_ca, issue_credentials  # noqa: E402
from sep.zcl.frames import Reply, Request, decode_header  # noqa: E402

NOW = 1_800_000_000.0
RESPONDER = 0x000D6F00000B0000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def request(src_nwk: int, src_ieee: int, reply: Reply) -> Request:
    header, payload = decode_header(reply.data)
    return Request(src_nwk=src_nwk, src_ep=reply.src_ep, dst_ep=reply.dst_ep,
                   profile_id=reply.profile_id, cluster_id=reply.cluster_id, header=header,
                   payload=payload, src_ieee=src_ieee)


def exchange_sync(u: KeyEstablishment, u_ieee: int, v: KeyEstablishment, v_ieee: int) -> int:
    """One exchange, frame by frame; returns the number of keys established (2)."""
    cores = {0x1000: (u, u_ieee), 0x0000: (v, v_ieee)}
    queue = [(0x1000, e) for e in u.initiate(0x0000, 1, v_ieee, NOW)]
    keys = 0
    while queue:
        src, effect = queue.pop(0)
        if isinstance(effect, KeyEstablished):
            keys += 1
        if not isinstance(effect, Reply):
            continue
        dst_core, _ = cores[effect.dst_nwk]
        queue += [(effect.dst_nwk, e)
                  for e in dst_core.handle(request(src, cores[src][1], effect), NOW)]
    return keys


def bench_exchange(runs: int) -> None:
    print(f"1. one exchange, both sides, sans-IO ({runs} runs per suite)")
    for suite in (1, 2):
        ca = generate_ca(suite, b"BENCH-CA")
        u_ieee, v_ieee = 0x000D6F0000000001, 0x000D6F0000000002
        times = []
        for _ in range(runs):
            u = KeyEstablishment([issue_credentials(ca, u_ieee)], endpoint=1)
            v = KeyEstablishment([issue_credentials(ca, v_ieee)], endpoint=1)
            t = time.perf_counter()
            assert exchange_sync(u, u_ieee, v, v_ieee) == 2
            times.append(time.perf_counter() - t)
        print(f"   suite {suite}: p50 {statistics.median(times) * 1000:6.1f} ms   "
              f"p99 {pct(times, 99) * 1000:6.1f} ms")


async def exchange_async(u: OffLoopKeyEstablishment, u_ieee: int, u_nwk: int,
                         v: OffLoopKeyEstablishment) -> None:
    nodes = {u_nwk: (u, u_ieee), 0x0000: (v, RESPONDER)}
    queue = [(u_nwk, e) for e in await u.initiate(0x0000, 1, RESPONDER, NOW, suite=2)]
    while queue:
        src, effect = queue.pop(0)
        if not isinstance(effect, Reply):
            continue
        dst, _ = nodes[effect.dst_nwk]
        queue += [(effect.dst_nwk, e)
                  for e in await dst.handle(request(src, nodes[src][1], effect), NOW)]


async def reads(server: KeyEstablishment, rate: float, stop: asyncio.Event) -> list[float]:
    """A ZCL read every 1/``rate`` s on the loop; how late each timer fired (s)."""
    loop = asyncio.get_running_loop()
    frame = foundation.ZCLHeader.general(1, foundation.GeneralCommand.Read_Attributes).serialize()
    header, _ = decode_header(frame + b"\x00\x00")
    req = Request(src_nwk=0x4242, src_ep=1, dst_ep=1, profile_id=0x0109, cluster_id=0x0800,
                  header=header, payload=b"\x00\x00", src_ieee=0x4242)
    lags = []
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(1 / rate)
        lags.append(max(0.0, loop.time() - start - 1 / rate))
        server.handle(req, NOW)
    return lags


async def lag_run(exchanges: int, mode: str, creds: dict, rate: float,
                  threads_n: int, procs_n: int = 2) -> tuple[list[float], float]:
    ca_creds, responder_creds = creds["initiators"], creds["responder"]
    threads = concurrent.futures.ThreadPoolExecutor(max_workers=threads_n)
    procs = concurrent.futures.ProcessPoolExecutor(max_workers=procs_n) \
        if mode == "processes" else None
    compute = {} if procs is None else {"compute": process_compute(procs)}
    server = KeyEstablishment([responder_creds], endpoint=1)
    stop = asyncio.Event()
    reader = asyncio.create_task(reads(server, rate, stop))
    t = time.perf_counter()
    if exchanges:
        v = OffLoopKeyEstablishment(KeyEstablishment([responder_creds], endpoint=1,
                                                     max_sessions=exchanges, **compute), threads)
        await asyncio.gather(*(
            exchange_async(OffLoopKeyEstablishment(KeyEstablishment([c], endpoint=1, **compute),
                                                   threads), c.subject, 0x1000 + i, v)
            for i, c in enumerate(ca_creds[:exchanges])))
    else:
        await asyncio.sleep(1.0)
    elapsed = time.perf_counter() - t
    stop.set()
    lags = await reader
    threads.shutdown()
    if procs is not None:
        procs.shutdown()
    return lags, elapsed


def bench_lag(exchanges: int, threads_n: int) -> None:
    rate = 200.0
    ca = generate_ca(2, b"BENCH-CA")
    creds = {"responder": issue_credentials(ca, RESPONDER),
             "initiators": [issue_credentials(ca, 0x000D6F0000010000 + i)
                            for i in range(exchanges)]}
    print(f"2. event-loop lag, {rate:.0f} ZCL reads/s on the loop, {exchanges} suite-2 "
          f"exchanges beside it ({threads_n} executor threads, GIL switch interval "
          f"{sys.getswitchinterval() * 1000:.0f} ms)")
    # one worker process leaves a core to the loop (this machine has two); two use both
    for label, n, mode, procs_n in (("no exchanges (baseline)", 0, "threads", 0),
                                    ("maths in executor threads", exchanges, "threads", 0),
                                    ("maths in 1 worker process", exchanges, "processes", 1),
                                    ("maths in 2 worker processes", exchanges, "processes", 2)):
        lags, elapsed = asyncio.run(lag_run(n, mode, creds, rate, threads_n, procs_n))
        ms = [x * 1000 for x in lags]
        print(f"   {label:<28} lag p50 {statistics.median(ms):5.2f} ms  p99 {pct(ms, 99):6.2f} ms"
              f"  max {max(ms):6.2f} ms  ({len(ms)} reads"
              + (f", exchanges done in {elapsed:.2f} s)" if n else ")"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--exchanges", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="executor threads (default 2, "
                        "as OffLoopKeyEstablishment's own pool)")
    args = parser.parse_args()
    bench_exchange(args.runs)
    bench_lag(args.exchanges, args.threads)


if __name__ == "__main__":
    main()
