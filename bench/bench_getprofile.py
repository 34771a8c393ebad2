"""Time to answer GetProfile for 24 intervals (the SE maximum per response).

(a) The sans-IO Metering server alone: ``MeteringServer.handle`` of a decoded GetProfile
    request against a year of stored 30-minute intervals (17,520 per channel).
(b) End to end over the virtual air: the comms hub's zigpy sends GetProfile with its
    Metering cluster API and waits for zigpy to parse the GetProfileResponse; the meter
    is the whole app (SE endpoint, APS ACKs, the response's own APS ACK).

    .venv/bin/python bench/bench_getprofile.py [--calls N] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

from zigpy.zcl import foundation

from hubsim.hub import CommsHub
from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.clusters.metering import MeteringServer
from sep.metrology.api import Reading
from sep.zcl.frames import Request

METER_IEEE = "00:0d:6f:00:00:00:be:24"
HALF_HOUR = 1800
YEAR = 17_520  # half-hour intervals in 365 days


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] * 1000


def sans_io(calls: int) -> tuple[list[float], int]:
    m = MeteringServer()
    t0 = 1_735_689_600  # 2025-01-01T00:00:00Z
    wh = 0
    for i in range(YEAR + 1):
        m.update(Reading(timestamp=float(t0 + i * HALF_HOUR), delivered_wh=wh,
                         received_wh=wh // 7, demand_w=500))
        wh += 150 + i % 97
    now = float(t0 + YEAR * HALF_HOUR)
    payload = bytes([0]) + (0).to_bytes(4, "little") + bytes([24])
    req = Request(src_nwk=0x1234, src_ep=1, dst_ep=1, profile_id=0x0109, cluster_id=0x0702,
                  header=foundation.ZCLHeader.cluster(1, 0x00), payload=payload)
    times = []
    size = 0
    for _ in range(calls):
        start = time.perf_counter()
        frames = m.handle(req, now)
        times.append(time.perf_counter() - start)
        size = len(frames[0])
    return times, size


async def over_the_air(requests: int) -> tuple[list[float], float]:
    logging.getLogger("zigpy").setLevel(logging.ERROR)
    air = VirtualAir()
    clock = ManualClock()
    hub = CommsHub(air=air)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee=METER_IEEE, tick_seconds=3600), clock=clock, air=air)
    await meter.start()
    try:
        dev = await hub.wait_interviewed(METER_IEEE)
        cluster = dev.endpoints[1].in_clusters[0x0702]
        for _ in range(26 * 6):  # 26 hours of readings every 10 minutes
            clock.advance(600)
            await meter.poll_metrology()
        latencies = []
        start = time.perf_counter()
        for _ in range(requests):
            t = time.perf_counter()
            rsp = await cluster.get_profile(0, 0, 24)
            latencies.append(time.perf_counter() - t)
            assert rsp.status == 0 and rsp.number_of_periods_delivered == 24
        return latencies, time.perf_counter() - start
    finally:
        await meter.stop()
        await hub.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000, help="sans-IO calls")
    ap.add_argument("--requests", type=int, default=200, help="requests over the air")
    args = ap.parse_args()
    times, size = sans_io(args.calls)
    print(f"sans-IO MeteringServer.handle(GetProfile, 24 intervals) over a year of stored "
          f"intervals: mean {statistics.fmean(times) * 1e6:.1f} us, p50 {pct(times, 50) * 1000:.1f} us, "
          f"p99 {pct(times, 99) * 1000:.1f} us ({1 / statistics.fmean(times):,.0f} answers/s, "
          f"response frame {size} B)")
    lat, elapsed = asyncio.run(over_the_air(args.requests))
    print(f"virtual air, hub zigpy -> meter app -> zigpy parse, {args.requests} requests one "
          f"at a time: {args.requests / elapsed:.0f} requests/s, latency p50 {pct(lat, 50):.2f} ms "
          f"p90 {pct(lat, 90):.2f} ms p99 {pct(lat, 99):.2f} ms (max {max(lat) * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
