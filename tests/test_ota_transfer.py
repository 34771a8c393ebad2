"""OTA download across the virtual air: hubsim's server, the meter's client, faults."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from zigpy.ota.image import OTAImage, OTAImageHeader, SubElement

from hubsim.hub import CommsHub
from hubsim.ota_server import Faults, OtaServerCore, ServedImage
from radios.air import VirtualAir
from sep.app import (
    APP_FILE_VERSION,
    IMAGE_TYPE_APPLICATION,
    MANUFACTURER_CODE,
    MeterApp,
    MeterSettings,
)
from sep.clock import ManualClock

NEW_VERSION = APP_FILE_VERSION + 1


def make_image(payload: bytes, version: int = NEW_VERSION) -> bytes:
    """An OTA file built by zigpy's own classes (the transport does not judge content)."""
    img = OTAImage(
        header=OTAImageHeader(
            upgrade_file_id=OTAImageHeader.MAGIC_VALUE, header_version=0x0100,
            header_length=56, field_control=0, manufacturer_id=MANUFACTURER_CODE,
            image_type=IMAGE_TYPE_APPLICATION, file_version=version, stack_version=2,
            header_string="sep test image".ljust(32, "\x00"),
            image_size=56 + 6 + len(payload)),
        subelements=[SubElement(tag_id=0x0000, data=payload)])
    return img.serialize()


async def run_upgrade(tmp_path: Path, image: bytes, faults: Faults | None = None,
                      upgrade_delay: int | None = 0, timeout: float = 0.25,
                      page_size: int = 1024, expect_apply: bool = True, limit: float = 60):
    air = VirtualAir()
    core = OtaServerCore([ServedImage(MANUFACTURER_CODE, IMAGE_TYPE_APPLICATION, NEW_VERSION,
                                      image)], faults=faults, upgrade_delay=upgrade_delay)
    hub = CommsHub(air=air, ota=core)
    await hub.start()
    applied: list[tuple[bytes, int]] = []
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:0a:01", data_dir=tmp_path / "meter"),
                     clock=ManualClock(), air=air)
    ota = meter.enable_ota(verifier=lambda p: (p.read_bytes() == image, "bytes differ"),
                           on_apply=lambda p, v: applied.append((p.read_bytes(), v)),
                           timeout=timeout, page_size=page_size)
    await meter.start()
    try:
        async with asyncio.timeout(limit):
            while not applied and not core.upgrade_end and not any(
                    e["step"] in ("aborted", "rejected") for e in meter.update_log):
                await asyncio.sleep(0.05)
            if expect_apply:
                while not applied:
                    await asyncio.sleep(0.05)
    finally:
        await meter.stop()
        await hub.stop()
    return core, ota, applied, meter


@pytest.mark.parametrize("page_size", [1024, 0])
async def test_upgrade_completes_with_pages_and_blocks(tmp_path, page_size):
    image = make_image(os.urandom(6000))
    core, ota, applied, meter = await run_upgrade(tmp_path, image, page_size=page_size)
    assert applied == [(image, NEW_VERSION)]
    assert core.upgrade_end == [0x00]  # SUCCESS
    steps = [e["step"] for e in meter.update_log]
    assert steps[:1] == ["download started"] and "verified" in steps and steps[-1] == "apply"


async def test_corrupted_block_is_invalid_image_and_never_applied(tmp_path):
    image = make_image(os.urandom(3000))
    core, ota, applied, meter = await run_upgrade(tmp_path, image, Faults(corrupt_offset=640),
                                                  expect_apply=False)
    assert applied == []
    assert core.upgrade_end == [0x96]  # INVALID_IMAGE
    assert not (tmp_path / "meter" / "ota" / "download.bin").exists()


async def test_lossy_server_never_restarts_from_zero(tmp_path):
    image = make_image(os.urandom(2500))
    faults = Faults(drop_every=3, wait_for_data_times=2, no_pages=True)
    core, ota, applied, meter = await run_upgrade(tmp_path, image, faults)
    assert applied == [(image, NEW_VERSION)]
    assert core.dropped > 0 and ota.client.timeouts > 0
    assert ota.client.restarts_from_zero == 0


async def test_page_requests_ignored_falls_back_to_blocks(tmp_path):
    image = make_image(os.urandom(2000))
    core, ota, applied, meter = await run_upgrade(tmp_path, image, Faults(no_pages=True))
    assert applied == [(image, NEW_VERSION)]
    assert not ota.client.use_pages


async def test_abort_midway_leaves_nothing_applied(tmp_path):
    image = make_image(os.urandom(4000))
    core, ota, applied, meter = await run_upgrade(tmp_path, image, Faults(abort_at=2048),
                                                  expect_apply=False, limit=5)
    assert applied == []
    assert any(e["step"] == "aborted" for e in meter.update_log)
