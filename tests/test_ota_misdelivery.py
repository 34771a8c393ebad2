"""OTA over a misbehaving mesh: blocks duplicated, out of order and late.

hubsim's OTA server (``Faults.duplicate_every``, ``reorder``, ``late_every``) serves an OTA
file from disk to the meter's OTA client over the virtual air. Independent truth: the
file's own bytes and their SHA-256 computed here with hashlib, never what the client
computed. Two checks: the image the meter stages (the file handed to ``on_apply``) is
byte-identical to the file, and every write the client makes into its download sink is
the file's bytes at that very offset, in sequence (a block taken at the wrong offset is
never written, even once, even if a later write would paper over it).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from zigpy.ota.image import OTAImage, OTAImageHeader, SubElement

from hubsim.hub import CommsHub
from hubsim.ota_server import Faults, OtaServerCore, load_image
from radios.air import VirtualAir
from sep.app import (
    APP_FILE_VERSION,
    IMAGE_TYPE_APPLICATION,
    MANUFACTURER_CODE,
    MeterApp,
    MeterSettings,
)
from sep.clock import ManualClock


def write_image(path: Path, payload: bytes) -> Path:
    img = OTAImage(
        header=OTAImageHeader(
            upgrade_file_id=OTAImageHeader.MAGIC_VALUE, header_version=0x0100,
            header_length=56, field_control=0, manufacturer_id=MANUFACTURER_CODE,
            image_type=IMAGE_TYPE_APPLICATION, file_version=APP_FILE_VERSION + 1,
            stack_version=2, header_string="misdelivery".ljust(32, "\x00"),
            image_size=56 + 6 + len(payload)),
        subelements=[SubElement(tag_id=0x0000, data=payload)])
    path.write_bytes(img.serialize())
    return path


class CheckedSink:
    """The client's download sink, with every write compared to the file's bytes."""

    def __init__(self, inner: Any, truth: bytes) -> None:
        self.inner = inner
        self.truth = truth
        self.end = 0  # where the next write must start
        self.writes = 0
        self.wrong: list[tuple[int, int, str]] = []  # (offset, length, why)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def state(self) -> Any:
        saved = self.inner.state()
        self.end = saved.offset if saved is not None else 0
        return saved

    def begin(self, ident: Any) -> None:
        self.end = 0
        self.inner.begin(ident)

    def write(self, offset: int, data: bytes) -> None:
        self.writes += 1
        if offset != self.end:
            self.wrong.append((offset, len(data), f"expected offset {self.end}"))
        elif data != self.truth[offset: offset + len(data)]:
            self.wrong.append((offset, len(data), "not the file's bytes at this offset"))
        self.end = max(self.end, offset + len(data))
        self.inner.write(offset, data)


async def download(tmp_path: Path, image_path: Path, faults: Faults, *, page_size: int,
                   timeout: float = 0.15, limit: float = 90) -> tuple[OtaServerCore, CheckedSink, list[bytes]]:
    truth = image_path.read_bytes()
    air = VirtualAir()
    core = OtaServerCore([load_image(image_path)], faults=faults, upgrade_delay=0)
    hub = CommsHub(air=air, ota=core)
    await hub.start()
    staged: list[bytes] = []
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:0a:02", data_dir=tmp_path / "meter"),
                     clock=ManualClock(), air=air)
    # the verifier passes everything: the test, not the meter, judges the staged bytes
    ota = meter.enable_ota(verifier=lambda p: (True, None),
                           on_apply=lambda p, v: staged.append(p.read_bytes()),
                           timeout=timeout, page_size=page_size)
    sink = CheckedSink(ota.sink, truth)
    ota.client.sink = sink
    await meter.start()
    try:
        async with asyncio.timeout(limit):
            while not staged:
                await asyncio.sleep(0.05)
    finally:
        await meter.stop()
        await hub.stop()
    return core, sink, staged


@pytest.mark.parametrize("page_size", [1024, 0], ids=["pages", "blocks"])
async def test_duplicated_reordered_and_late_blocks_end_byte_identical(tmp_path, page_size):
    # a page that arrives out of order is taken up to the first gap, then asked for
    # again from there: one block per page round, so the paged image is kept small
    image_path = write_image(tmp_path / "app.ota", os.urandom(2000 if page_size else 5000))
    want = hashlib.sha256(image_path.read_bytes()).hexdigest()
    faults = Faults(duplicate_every=3, reorder=True, late_every=4, late_seconds=0.4)
    core, sink, staged = await download(tmp_path, image_path, faults, page_size=page_size)
    assert len(staged) == 1
    assert hashlib.sha256(staged[0]).hexdigest() == want
    assert staged[0] == image_path.read_bytes()
    assert sink.wrong == []  # no block was ever written at another offset than its own
    # the faults really happened: more blocks crossed the air than the file has
    assert core.bytes_sent > len(staged[0]) and core.blocks_sent > sink.writes


async def test_blocks_from_ahead_are_never_written_in_place_of_the_one_asked_for(tmp_path):
    """Reorder alone, block requests: every answer starts with the block *after* the one
    asked for, carrying its own offset; taking it at the asked-for offset shifts the image."""
    image_path = write_image(tmp_path / "app.ota", os.urandom(1500))
    core, sink, staged = await download(tmp_path, image_path, Faults(reorder=True), page_size=0)
    assert staged == [image_path.read_bytes()] and sink.wrong == []
    assert core.blocks_sent >= 2 * sink.writes - 1  # each block came after its successor
