"""ZCL Read Attributes requests per second through the whole meter app on the virtual air,
with Zigbee security on (NWK + APS, as SE runs) and off (the frames in clear), next to what
one 802.15.4 channel carries; and what CCM* costs per frame.

A client node (``radios.rawnode.RawNode``, a member of the HAN with an application link
key with the meter) sends Read Attributes (CurrentSummationDelivered) to the meter and
waits for each response (then keeps a window of K requests outstanding). The meter asks
for APS ACKs on its responses, so each read costs three frames on the air: request,
response, APS ACK. The channel bound is computed for the frames as they are on the air
with security (auxiliary headers and MICs included).

    .venv/bin/python bench/bench_zcl_reads.py [--requests N] [--window K] [--air-time]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from radios import crypto
from radios.air import AirTimeModel, VirtualAir
from radios.rawnode import RawNode
from radios.virtual import DEVELOPMENT_KEY
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.zcl.security import requires_aps_security

METER_IEEE = "00:0d:6f:00:00:00:be:01"
CLIENT_IEEE = 0x000D6F0000004242


async def run(n: int, window: int, *, secure: bool, air_time: bool
              ) -> tuple[float, list[float], VirtualAir, list[int]]:
    air = VirtualAir(air_time=AirTimeModel() if air_time else None)
    tc = await RawNode.trust_centre(air)
    tc.node.nwk_security = secure
    meter = MeterApp(MeterSettings(ieee=METER_IEEE, tick_seconds=3600, link_key=None),
                     clock=ManualClock(), air=air)
    if not secure:  # the bench's "security off": frames in clear, no APS security
        meter.controller._vconf["insecure"] = True
        meter.endpoint.require_aps_security = False
    await meter.start()
    client = RawNode(air, CLIENT_IEEE, link_key=DEVELOPMENT_KEY,
                     aps_policy=requires_aps_security if secure else None)
    await client.join()
    client.node.nwk_security = secure
    meter_ieee = int(METER_IEEE.replace(":", ""), 16)
    if secure:
        await client.request_link_key(meter_ieee)
    client.know(meter.nwk, meter_ieee)
    sizes: list[int] = []
    air.add_tap(lambda mpdu, _ts: sizes.append(len(mpdu) + 2) if len(sizes) < 10_000 else None)
    waiting: dict[int, asyncio.Future[float]] = {}
    client.shell.on_data = lambda ind: _answered(ind, waiting)
    latencies: list[float] = []
    sem = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        async with sem:
            tsn = i & 0xFF
            fut = asyncio.get_running_loop().create_future()
            waiting[tsn] = fut
            t0 = time.perf_counter()
            await client.send(meter.nwk, 0x0702, bytes([0x00, tsn, 0x00, 0x00, 0x00]))
            latencies.append(await asyncio.wait_for(fut, 10) - t0)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await client.stop()
    await meter.stop()
    await tc.stop()
    return elapsed, latencies, air, sizes


def _answered(ind, waiting: dict[int, asyncio.Future[float]]) -> None:  # noqa: ANN001
    if ind.cluster == 0x0702 and len(ind.payload) > 2:
        fut = waiting.pop(ind.payload[1], None)
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())


def channel_bound(sizes: list[int]) -> float:
    """Reads per second one channel carries for frames of these sizes (three per read)."""
    model = AirTimeModel()
    per_frame = statistics.mean(model.frame_seconds(s, unicast=True) for s in sizes)
    return 1 / (3 * per_frame)


def ccm_cost(frames: int = 20_000) -> tuple[float, float]:
    """Microseconds per level-5 seal and per open of a 40-byte payload (CCM*, cryptography)."""
    key, nonce = os.urandom(16), os.urandom(13)
    aad, payload = os.urandom(20), os.urandom(40)
    t0 = time.perf_counter()
    for _ in range(frames):
        sealed = crypto.encrypt(key, nonce, payload, aad)
    t1 = time.perf_counter()
    for _ in range(frames):
        crypto.decrypt(key, nonce, sealed, aad)
    t2 = time.perf_counter()
    return (t1 - t0) / frames * 1e6, (t2 - t1) / frames * 1e6


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--air-time", action="store_true", help="also run with the air-time model")
    args = ap.parse_args()
    seal, opened = ccm_cost()
    print(f"CCM* level 5 (40-byte payload): seal {seal:.1f} us, open {opened:.1f} us; a secured "
          f"SE frame is sealed twice (APS, NWK) and opened twice")
    bound = None
    for secure in (True, False):
        label = "security on " if secure else "security off"
        for window in (1, args.window):
            elapsed, lat, air, sizes = asyncio.run(run(args.requests, window, secure=secure,
                                                       air_time=False))
            if bound is None:  # the bound for secured frames as they are on the air
                bound = channel_bound(sizes)
                print(f"one 802.15.4 channel, secured frames of {min(sizes)}..{max(sizes)} B "
                      f"(MPDU with FCS): a read costs 3 frames -> bound {bound:.0f} reads/s")
            rps = args.requests / elapsed
            print(f"{label}, window {window:2d}: {rps:7.0f} reads/s ({rps / bound:.1f}x the "
                  f"channel bound), latency p50 {pct(lat, 50):.2f} ms p95 {pct(lat, 95):.2f} ms "
                  f"p99 {pct(lat, 99):.2f} ms; {air.frames_sent / elapsed:.0f} frames/s")
    if args.air_time:
        n = min(args.requests, 300)
        elapsed, lat, _, _ = asyncio.run(run(n, args.window, secure=True, air_time=True))
        assert bound is not None
        print(f"security on, with the air-time model, window {args.window}: {n / elapsed:.0f} "
              f"reads/s ({n / elapsed / bound:.2f} of the bound), p50 {pct(lat, 50):.1f} ms")


if __name__ == "__main__":
    main()
