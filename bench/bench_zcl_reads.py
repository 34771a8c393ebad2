"""ZCL Read Attributes requests per second through the whole meter app on the virtual air.

A raw client node sends Read Attributes (CurrentSummationDelivered) to the meter and waits
for each response (and, in a second run, keeps a window of K requests outstanding). The
meter asks for APS ACKs on its responses, so each request costs three frames on the air:
request, response, APS ACK. Printed next to what one 802.15.4 channel can carry.

    .venv/bin/python bench/bench_zcl_reads.py [--requests N] [--window K] [--air-time]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from radios.air import AirTimeModel, VirtualAir, mpdu_length
from radios.frames import AirFrame, ApsKind
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock

CLIENT_NWK = 0x4242


def request(meter_nwk: int, tsn: int, counter: int) -> AirFrame:
    return AirFrame(kind=ApsKind.DATA, pan_id=0x1A62, src_nwk=CLIENT_NWK, dst_nwk=meter_nwk,
                    src_ieee=0x4242, profile_id=0x0109, cluster_id=0x0702, src_ep=1, dst_ep=1,
                    aps_counter=counter, payload=bytes([0x00, tsn, 0x00, 0x00, 0x00]))


async def run(n: int, window: int, air_time: bool) -> tuple[float, list[float], VirtualAir]:
    air = VirtualAir(air_time=AirTimeModel() if air_time else None)
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:be:01", tick_seconds=3600),
                     clock=ManualClock(), air=air)
    await meter.start()
    waiting: dict[int, asyncio.Future[float]] = {}

    def receive(frame: AirFrame) -> None:
        if frame.kind == ApsKind.DATA and frame.cluster_id == 0x0702 and len(frame.payload) > 2:
            fut = waiting.pop(frame.payload[1], None)
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())
            if frame.ack_request:  # the meter asked for an APS ACK: give it one
                asyncio.get_running_loop().create_task(port.transmit(frame.make_ack(0x4242)))

    port = air.attach(0x4242, CLIENT_NWK, receive)
    latencies: list[float] = []
    sem = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        async with sem:
            tsn = i & 0xFF
            fut = asyncio.get_running_loop().create_future()
            waiting[tsn] = fut
            t0 = time.perf_counter()
            await port.transmit(request(meter.nwk, tsn, i & 0xFF))
            latencies.append(await asyncio.wait_for(fut, 10) - t0)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await meter.stop()
    return elapsed, latencies, air


def channel_bound() -> tuple[float, int, int]:
    model = AirTimeModel()
    req = mpdu_length(request(0, 0, 0))
    rsp = req + 9  # + status, type and a uint48 value
    ack = mpdu_length(AirFrame(kind=ApsKind.ACK, pan_id=0, src_nwk=0, dst_nwk=1, src_ieee=0,
                               profile_id=0, cluster_id=0, src_ep=0, dst_ep=0, aps_counter=0))
    per_request = sum(model.frame_seconds(x, unicast=True) for x in (req, rsp, ack))
    frames_per_s = 3 / per_request
    return 1 / per_request, int(frames_per_s), req


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--air-time", action="store_true", help="also run with the air-time model")
    args = ap.parse_args()
    bound_rps, frames_s, req_len = channel_bound()
    raw = 250_000 / 8 / (req_len + 6)
    print(f"one 802.15.4 channel, raw PHY rate: ~{raw:.0f} frames/s of {req_len} B; with CSMA "
          f"backoff, MAC ACK and IFS: ~{frames_s} frames/s")
    print(f"one 802.15.4 channel: ~{frames_s} frames/s of these sizes "
          f"(request MPDU {req_len} B); a read costs 3 frames -> bound {bound_rps:.0f} reads/s")
    for window in (1, args.window):
        elapsed, lat, air = asyncio.run(run(args.requests, window, air_time=False))
        rps = args.requests / elapsed
        print(f"virtual air, no air time, window {window:2d}: {rps:7.0f} reads/s "
              f"({rps / bound_rps:.1f}x the channel bound), latency p50 {pct(lat, 50):.2f} ms "
              f"p95 {pct(lat, 95):.2f} ms p99 {pct(lat, 99):.2f} ms; "
              f"{air.frames_sent / elapsed:.0f} frames/s")
    if args.air_time:
        n = min(args.requests, 300)
        elapsed, lat, _ = asyncio.run(run(n, args.window, air_time=True))
        print(f"with the air-time model, window {args.window}: {n / elapsed:.0f} reads/s "
              f"({n / elapsed / bound_rps:.2f} of the bound), p50 {pct(lat, 50):.1f} ms")


if __name__ == "__main__":
    main()
