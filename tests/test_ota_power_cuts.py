"""Power cuts (SIGKILL) during a download: the meter resumes where it was, never from 0,
and never ends up without a bootable image."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from pathlib import Path

from hubsim.hub import CommsHub
from hubsim.ota_server import Faults, OtaServerCore, load_image
from radios.air import VirtualAir
from radios.udp import serve_udp
from sep.cli import main
from sep.firmware.slots import SlotManager

CUTS = 6


def durable_offset(data: Path) -> int:
    try:
        return int(json.loads((data / "ota" / "download.json").read_text())["offset"])
    except (OSError, ValueError, KeyError):
        return 0


async def test_sigkill_during_download_resumes_and_completes(tmp_path):
    keys = tmp_path / "keys"
    assert main(["ota", "keygen", str(keys), "--suite", "1"]) == 0
    payload = tmp_path / "p.bin"
    payload.write_bytes(os.urandom(200_000))
    image_path = tmp_path / "img.ota"
    assert main(["ota", "build", "--payload", str(payload), "--manufacturer", "0x1234",
                 "--image-type", "0x0001", "--file-version", "0x00010005", "--signer",
                 str(keys), "--out", str(image_path)]) == 0
    image = load_image(image_path)
    air = VirtualAir()
    core = OtaServerCore([image], faults=Faults(delay=0.05))
    hub = CommsHub(air=air, ota=core)
    server = await serve_udp(air, "127.0.0.1", 0)
    await hub.start()
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "sep.cli", "-v", "meter", "--data", str(data), "--trust", str(keys),
           "--device", f"udp://127.0.0.1:{server.port}", "--ota-query-interval", "1",
           "--ieee", "00:0d:6f:00:00:00:c0:75"]
    rng = random.Random(7)
    offsets: list[int] = []
    try:
        for _cut in range(CUTS):
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=open(tmp_path / "meter.log", "ab"))
            # cut once this run has made some durable progress, at a random moment after
            last = offsets[-1] if offsets else 0
            for _ in range(1200):
                if durable_offset(data) > last + 4096:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            state = json.loads((data / "ota" / "download.json").read_text())
            offsets.append(state["offset"])
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        rc = await asyncio.wait_for(proc.wait(), 120)  # exits 75 once it activated the image
    finally:
        await hub.stop()
        server.close()
    assert rc == 75
    # each restart continued from where the last one was cut, never from the beginning
    assert offsets == sorted(offsets) and offsets[-1] > offsets[0] > 0
    steps = [json.loads(x) for x in (data / "update-log.jsonl").read_text().splitlines()]
    resumed = [s for s in steps if s["step"] == "resumed"]
    assert len(resumed) >= CUTS - 1 and all(s["offset"] > 0 for s in resumed)
    assert sum(1 for s in steps if s["step"] == "download started") == 1
    state = SlotManager(data).boot_state()
    assert state.trial and SlotManager(data).info(state.active).file_version == 0x00010005
    print(f"{CUTS} power cuts during the download at offsets {offsets}")
