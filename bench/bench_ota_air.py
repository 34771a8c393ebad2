"""Time to move an OTA image over one 802.15.4 channel (air-time model on), next to the
analytic bound for that image and block size.

The bound counts every frame the transfer needs at the channel's pace (CSMA backoff, PHY,
MAC ACK, IFS): per page one Image Page Request and its APS ACK, per block one Image Block
Response and its APS ACK. The goal is within 1.25x of it.

    .venv/bin/python bench/bench_ota_air.py [--size BYTES] [--page-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time
from pathlib import Path

from hubsim.hub import CommsHub
from hubsim.ota_server import SERVER_MAX_DATA, OtaServerCore, ServedImage
from radios.air import AirTimeModel, VirtualAir
from sep.app import (
    APP_FILE_VERSION,
    IMAGE_TYPE_APPLICATION,
    MANUFACTURER_CODE,
    MeterApp,
    MeterSettings,
)
from sep.clock import ManualClock

MAC_NWK = 11 + 16  # MAC header + FCS, NWK header + extended source
APS = 8


def bound(size: int, block: int, page: int, model: AirTimeModel) -> float:
    blocks = math.ceil(size / block)
    pages = math.ceil(size / page)
    block_rsp = MAC_NWK + APS + 3 + 14 + block
    page_req = MAC_NWK + APS + 3 + 18
    ack = MAC_NWK + APS
    return (blocks * (model.frame_seconds(block_rsp, True) + model.frame_seconds(ack, True))
            + pages * (model.frame_seconds(page_req, True) + model.frame_seconds(ack, True)))


async def run(size: int, page: int) -> tuple[float, int]:
    model = AirTimeModel()
    air = VirtualAir(air_time=model)
    image = os.urandom(size)
    core = OtaServerCore([ServedImage(MANUFACTURER_CODE, IMAGE_TYPE_APPLICATION,
                                      APP_FILE_VERSION + 1, image)])
    hub = CommsHub(air=air, ota=core)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:b0:7a", tick_seconds=60,
                                   data_dir=Path(tempfile.mkdtemp())), clock=ManualClock(), air=air)
    done = asyncio.Event()
    meter.enable_ota(verifier=lambda p: (True, None), on_apply=lambda p, v: done.set(),
                     page_size=page, timeout=2.0)
    await meter.start()
    while not any(e["step"] == "download started" for e in meter.update_log):
        await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    while not any(e["step"] == "downloaded" for e in meter.update_log):
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    await meter.stop()
    await hub.stop()
    return elapsed, core.blocks_sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256 * 1024)
    ap.add_argument("--page-size", type=int, default=4096)
    args = ap.parse_args()
    elapsed, blocks = asyncio.run(run(args.size, args.page_size))
    b = bound(args.size, SERVER_MAX_DATA, args.page_size, AirTimeModel())
    print(f"{args.size // 1024} KiB in {SERVER_MAX_DATA}-byte blocks, {args.page_size}-byte pages "
          f"({blocks} blocks sent): {elapsed:.1f} s on the modelled air; analytic bound "
          f"{b:.1f} s; ratio {elapsed / b:.2f}x (goal <= 1.25x); "
          f"{args.size / elapsed / 1024:.1f} KiB/s")


if __name__ == "__main__":
    main()
