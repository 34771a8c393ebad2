"""Request/response frames per second through unmodified bellows and the EZSP NCP emulator.

Two loads, each printed next to what a 115200-baud UART (8N1: 10 bits a byte) could carry
for the same bytes — every ASH frame counted as it goes on the line: stuffed, with its
Flag, DATA frames both ways and their ACKs:

- EZSP ``echo`` commands (bellows' ``EZSP`` object, command -> response), two payload sizes,
  with bellows' serial thread (its default) and without;
- ZCL Read Attributes of the meter, by the hubsim IHD on the virtual air, answered by the
  meter running on bellows on the emulator (air -> NCP -> host -> NCP -> air, plus the
  APS ACK and ``messageSentHandler``): the meter as coordinator (it formed its network),
  and the meter as a router that joined the hub's network with its install code and keyed
  with the hub and the IHD (SMETS2, ``radios.ezsp_join``), side by side; for the router
  also its join, its Key Establishment with the hub through the stick, and the time from a
  stick reset to serving again (a secured rejoin).

The emulator runs in the same process and event loop as bellows' host side (2 cores
shared), so the figures are the software's, not a UART's. Fewer than 256 reads are timed:
zigpy drops a response identical to one it had in the last few seconds (its packet
debouncer ignores the TSN field but not the ZCL TSN byte, which repeats after 256 reads
of an unchanging value), and the read is then retried after 5 s.

    .venv/bin/python bench/bench_ezsp.py [--echo N] [--reads N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import zigpy.config
from bellows.ezsp import EZSP

from hubsim.ihd import InHomeDisplay
from radios.air import VirtualAir
from radios.crypto import make_install_code
from radios.ezsp import NetworkSettings, permit_with_install_code
from radios.ncp import start_emulator
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock

UART_BAUD = 115200
BITS_PER_BYTE = 10  # start + 8 data + stop


def uart_bound(line_bytes_per_exchange: float) -> float:
    return UART_BAUD / BITS_PER_BYTE / line_bytes_per_exchange


def report(label: str, n: int, seconds: float, line_bytes: int, lat: list[float]) -> None:
    per = line_bytes / n
    rate = n / seconds
    lat_ms = sorted(x * 1000 for x in lat)
    print(f"{label:<34} {rate:8.0f}/s   p50 {statistics.median(lat_ms):6.2f} ms  "
          f"p99 {lat_ms[int(0.99 * (len(lat_ms) - 1))]:6.2f} ms  max {lat_ms[-1]:7.1f} ms  "
          f"{per:6.1f} line bytes/exchange -> 115200-baud bound {uart_bound(per):6.0f}/s "
          f"({rate / uart_bound(per):4.1f}x)")


async def bench_echo(n: int, size: int, use_thread: bool) -> None:
    emu = await start_emulator(VirtualAir())
    ezsp = EZSP(zigpy.config.SCHEMA_DEVICE({zigpy.config.CONF_DEVICE_PATH: emu.url}))
    await ezsp.connect(use_thread=use_thread)
    payload = bytes(range(size))
    try:
        for _ in range(20):  # warm up (and let ASH's ACK timer settle)
            await ezsp.echo(data=payload)
        b0 = emu.bytes_in + emu.bytes_out
        lat = []
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            (echoed,) = await ezsp.echo(data=payload)
            lat.append(time.perf_counter() - t0)
            assert echoed == payload
        seconds = time.perf_counter() - start
        await asyncio.sleep(0.05)  # the last ACK
        line = emu.bytes_in + emu.bytes_out - b0
        thread = "thread" if use_thread else "no thread"
        report(f"EZSP echo {size:3d} B ({thread})", n, seconds, line, lat)
    finally:
        await ezsp.disconnect()
        await emu.stop()


async def timed_reads(ihd: InHomeDisplay, emu: Any, n: int, label: str) -> None:
    """``n`` Metering reads by the IHD after a warm-up, reported with the bytes the
    emulator's serial line carried meanwhile."""
    for _ in range(10):
        await ihd.metering.read_attributes(["current_summ_delivered"], allow_cache=False)
    await asyncio.sleep(0.2)
    b0 = emu.bytes_in + emu.bytes_out
    lat = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        ok, failed = await ihd.metering.read_attributes(["current_summ_delivered"],
                                                        allow_cache=False)
        lat.append(time.perf_counter() - t0)
        assert ok and not failed
    seconds = time.perf_counter() - start
    await asyncio.sleep(0.2)
    report(label, n, seconds, emu.bytes_in + emu.bytes_out - b0, lat)


async def bench_reads(n: int) -> None:
    n = min(n, 240)
    air = VirtualAir()
    with tempfile.TemporaryDirectory() as tmp:
        emu = await start_emulator(air, state_path=Path(tmp) / "ncp.json",
                                   ieee="00:0d:6f:00:00:00:be:02")
        meter = MeterApp(MeterSettings(radio="ezsp", device=emu.url, endpoint=9,
                                       ieee="00:0d:6f:00:00:00:be:02", tick_seconds=3600,
                                       network=NetworkSettings(channel=air.channel,
                                                               pan_id=air.pan_id,
                                                               tc_policy="install_code")),
                         clock=ManualClock(), air=air)
        code = make_install_code()
        ihd = InHomeDisplay(air=air, install_code=code)
        t_start = time.perf_counter()
        await meter.start()
        startup = time.perf_counter() - t_start
        await permit_with_install_code(meter.controller, "00:0d:6f:00:00:00:1d:01", code)
        await ihd.start()
        await ihd.connect()
        try:
            await timed_reads(ihd, emu, n, "ZCL read via meter on bellows")
            print(f"  ASH: {emu.ash.stats}")
            print(f"  (bellows start-up against the emulator, forming a new network: "
                  f"{startup:.1f} s — mostly bellows' 2 s waits for the NCP after each reset)")
        finally:
            await ihd.stop()
            await meter.stop()
            await emu.stop()


async def bench_reads_joiner(n: int) -> None:
    from hubsim.hub import CommsHub
    from hubsim.ke_node import DemoCa
    from radios.ezsp_join import JoinSettings

    n = min(n, 240)
    meter_ieee, ihd_ieee = "00:0d:6f:00:00:00:be:12", "00:0d:6f:00:00:00:1d:12"
    air, clock, ca = VirtualAir(), ManualClock(), DemoCa()
    codes = {meter_ieee: make_install_code(), ihd_ieee: make_install_code()}
    hub = CommsHub(air=air, clock=clock.now, install_codes=codes,
                   credentials=[ca.credentials("00:0d:6f:00:00:00:00:01")])
    await hub.start()
    with tempfile.TemporaryDirectory() as tmp:
        emu = await start_emulator(air, state_path=Path(tmp) / "ncp.json", ieee=meter_ieee)
        meter = MeterApp(MeterSettings(
            radio="ezsp", device=emu.url, endpoint=9, ieee=meter_ieee, tick_seconds=3600,
            join=JoinSettings.from_install_code(codes[meter_ieee], channel=air.channel),
            credentials=(ca.credentials(meter_ieee),)), clock=clock, air=air)
        ihd = InHomeDisplay(air=air, ieee=ihd_ieee, install_code=codes[ihd_ieee],
                            credentials=(ca.credentials(ihd_ieee),))
        t_start = time.perf_counter()
        await meter.start()
        joined = time.perf_counter() - t_start
        await meter.tc_keyed.wait()
        keyed = time.perf_counter() - t_start - joined
        await ihd.start()
        await ihd.connect()
        try:
            await timed_reads(ihd, emu, n, "ZCL read via router meter (joined)")
            t0 = time.perf_counter()
            await emu.restart()
            while meter.controller.reconnects < 1:  # type: ignore[attr-defined]
                await asyncio.sleep(0.01)
            await meter.controller.wait_reconnected()  # type: ignore[attr-defined]
            ok, failed = await ihd.metering.read_attributes(["current_summ_delivered"],
                                                            allow_cache=False)
            assert ok and not failed
            back = time.perf_counter() - t0
            print(f"  router: joined the hub in {joined:.1f} s (bellows start-up included), "
                  f"Key Establishment with the hub through the stick {keyed:.2f} s; stick "
                  f"reset -> secured rejoin -> a read answered again {back:.1f} s; "
                  f"{emu.node.rejoins_or_joins}")  # type: ignore[union-attr]
        finally:
            await ihd.stop()
            await meter.stop()
            await emu.stop()
            await hub.stop()


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    print(f"request/response exchanges through bellows + the NCP emulator "
          f"(UART bound: {UART_BAUD} baud, {BITS_PER_BYTE} bits/byte, ASH as on the line)")
    for size in (8, 64):
        for use_thread in (True, False):
            await bench_echo(args.echo, size, use_thread)
    await bench_reads(args.reads)
    await bench_reads_joiner(args.reads)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--echo", type=int, default=2000, help="echo commands per run")
    p.add_argument("--reads", type=int, default=200, help="ZCL reads (at most 240)")
    asyncio.run(main(p.parse_args()))
