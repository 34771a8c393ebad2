"""PublishPrice fan-out: one new price from the meter to N in-home displays on the virtual air.

N display nodes (raw ports that APS-ACK like a stick's firmware) each send GetCurrentPrice
so the meter knows them; then the meter publishes a new price and the time until the
last display has its PublishPrice is measured. SE pushes prices by unicast (each display
has its own APS link key), so the fan-out costs N frames plus N APS ACKs on one channel;
the bound printed next to it is that air time under the model of radios/air.py. Runs
without air time (what the software costs) and with it (what the channel allows).

    .venv/bin/python bench/bench_price_fanout.py [--displays 50] [--rounds 20]
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


def get_current_price(src: int, dst: int, counter: int) -> AirFrame:
    return AirFrame(kind=ApsKind.DATA, pan_id=0x1A62, src_nwk=src, dst_nwk=dst, src_ieee=src,
                    profile_id=0x0109, cluster_id=0x0700, src_ep=1, dst_ep=1,
                    aps_counter=counter, payload=bytes([0x01, counter, 0x00, 0x01]))


async def run(displays: int, rounds: int, air_time: bool) -> tuple[list[float], list[float], int]:
    air = VirtualAir(air_time=AirTimeModel() if air_time else None)
    clock = ManualClock()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:fa:01", tick_seconds=3600),
                     clock=clock, air=air)
    await meter.start()
    meter.price.publish(tier=1, unit_rate="0.2000", label="Start", now=clock.now())
    arrivals: dict[int, float] = {}
    frame_len = 0

    def make_receiver(nwk: int):
        def receive(frame: AirFrame) -> None:
            nonlocal frame_len
            if frame.kind != ApsKind.DATA or frame.cluster_id != 0x0700:
                return
            if frame.ack_request:
                asyncio.get_running_loop().create_task(ports[nwk].transmit(frame.make_ack(nwk)))
            if frame.payload[2:3] == b"\x00":  # PublishPrice
                arrivals.setdefault(nwk, time.perf_counter())
                frame_len = mpdu_length(frame)
        return receive

    ports = {}
    for i in range(displays):
        nwk = 0x2000 + i
        ports[nwk] = air.attach(nwk, nwk, make_receiver(nwk))
    for nwk, port in ports.items():  # each display asks once, so the meter knows it
        await port.transmit(get_current_price(nwk, meter.nwk, 1))
    while len(arrivals) < displays:
        await asyncio.sleep(0.01)
    last, mean = [], []
    for r in range(rounds):
        arrivals.clear()
        t0 = time.perf_counter()
        meter.price.publish(tier=1 + r % 2, unit_rate=f"0.{20 + r % 10:02d}00",
                            label=f"Round {r}", now=clock.now())
        meter.flush_pushes()
        while len(arrivals) < displays:
            await asyncio.sleep(0.0005)
        times = [a - t0 for a in arrivals.values()]
        last.append(max(times))
        mean.append(statistics.mean(times))
    await meter.stop()
    return last, mean, frame_len


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--displays", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    last, mean, frame_len = asyncio.run(run(args.displays, args.rounds, air_time=False))
    model = AirTimeModel()
    ack_len = mpdu_length(AirFrame(kind=ApsKind.ACK, pan_id=0, src_nwk=0, dst_nwk=1, src_ieee=0,
                                   profile_id=0, cluster_id=0, src_ep=0, dst_ep=0, aps_counter=0))
    bound = args.displays * (model.frame_seconds(frame_len, True)
                             + model.frame_seconds(ack_len, True))
    print(f"PublishPrice MPDU {frame_len} B, APS ACK {ack_len} B; {args.displays} displays by "
          f"unicast: channel bound {bound * 1000:.0f} ms per fan-out")
    print(f"virtual air, no air time: last display after median "
          f"{statistics.median(last) * 1000:.1f} ms (max {max(last) * 1000:.1f}), mean display "
          f"{statistics.median(mean) * 1000:.1f} ms; {args.rounds} rounds "
          f"({bound / statistics.median(last):.0f}x faster than the channel)")
    rounds = max(3, args.rounds // 4)
    last, mean, _ = asyncio.run(run(args.displays, rounds, air_time=True))
    print(f"with the air-time model: last display after median "
          f"{statistics.median(last) * 1000:.0f} ms ({statistics.median(last) / bound:.2f}x the "
          f"bound), mean display {statistics.median(mean) * 1000:.0f} ms; {rounds} rounds")


if __name__ == "__main__":
    main()
