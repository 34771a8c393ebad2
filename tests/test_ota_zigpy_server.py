"""The meter's OTA client against zigpy's own OTA server code (what ZHA runs)."""

from __future__ import annotations

import asyncio
import os

import zigpy.ota
import zigpy.ota.providers
from zigpy.ota.image import parse_ota_image
from zigpy.zcl import foundation

from hubsim.hub import CommsHub
from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.cli import main
from sep.clock import ManualClock
from sep.firmware.policy import DeviceIdentity
from sep.ota.gate import make_gate

IEEE = "00:0d:6f:00:00:00:2a:b0"


async def test_zigpy_update_firmware_upgrades_the_meter(tmp_path):
    keys = tmp_path / "keys"
    assert main(["ota", "keygen", str(keys), "--suite", "1"]) == 0
    payload = tmp_path / "p.bin"
    payload.write_bytes(os.urandom(3000))
    out = tmp_path / "img.ota"
    assert main(["ota", "build", "--payload", str(payload), "--manufacturer", "0x1234",
                 "--image-type", "0x0001", "--file-version", "0x00010002", "--signer",
                 str(keys), "--out", str(out)]) == 0
    data = out.read_bytes()
    firmware, _ = parse_ota_image(data)  # zigpy's own parser accepts our file

    air = VirtualAir()
    hub = CommsHub(air=air)  # no hubsim OTA server: zigpy serves
    await hub.start()
    meter = MeterApp(MeterSettings(ieee=IEEE, data_dir=tmp_path / "meter"), clock=ManualClock(),
                     air=air)
    verify, precheck = make_gate(keys, DeviceIdentity(0x1234, 0x0001, 0x00010000))
    applied: list[tuple[bytes, int]] = []
    meter.enable_ota(verifier=verify, on_apply=lambda p, v: applied.append((p.read_bytes(), v)),
                     precheck=precheck, timeout=0.5)
    await meter.start()
    try:
        dev = await hub.wait_interviewed(IEEE)
        image = zigpy.ota.OtaImageWithMetadata(
            metadata=zigpy.ota.providers.BaseOtaImageMetadata(
                file_version=0x00010002, manufacturer_id=0x1234, image_type=0x0001,
                source="test"),
            firmware=firmware)
        status = await asyncio.wait_for(dev.update_firmware(image), 120)
        assert status == foundation.Status.SUCCESS
        for _ in range(100):
            if applied:
                break
            await asyncio.sleep(0.05)
    finally:
        await meter.stop()
        await hub.stop()
    assert applied == [(data, 0x00010002)]
    steps = [e["step"] for e in meter.update_log]
    assert "verified" in steps
