"""A/B slots: power cut at every write, torn writes, bit flips, trial and revert."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from sep.firmware.slots import FACTORY, FileOps, SlotError, SlotManager, extract_payload


class PowerCut(Exception):
    pass


class CuttingOps(FileOps):
    """Cuts the power before write number ``cut_at`` completes; ``torn`` leaves half of the
    temporary file on disk (a torn write), as a real power cut can."""

    def __init__(self, cut_at: int, torn: bool = False) -> None:
        self.cut_at = cut_at
        self.torn = torn
        self.writes = 0

    def write_atomic(self, path: Path, data: bytes) -> None:
        self.writes += 1
        if self.writes == self.cut_at:
            if self.torn:
                path.with_name(path.name + ".tmp").write_bytes(data[: len(data) // 2])
            raise PowerCut(path.name)
        super().write_atomic(path, data)

    def remove(self, path: Path) -> None:
        self.writes += 1
        if self.writes == self.cut_at:
            raise PowerCut(f"rm {path.name}")
        super().remove(path)


def ota_file(payload: bytes) -> bytes:
    """A minimal OTA layout: 56-byte header then one upgrade-image element."""
    header = bytearray(56)
    header[0:4] = (0x0BEEF11E).to_bytes(4, "little")
    header[4:6] = (0x0100).to_bytes(2, "little")
    header[6:8] = (56).to_bytes(2, "little")
    body = (0).to_bytes(2, "little") + len(payload).to_bytes(4, "little") + payload
    header[52:56] = (56 + len(body)).to_bytes(4, "little")
    return bytes(header) + body


V1, V2 = 0x00010001, 0x00010002


def full_update(mgr: SlotManager, image: bytes, version: int) -> None:
    mgr.stage(image, version)
    mgr.activate()
    slot, _info, _ = mgr.choose_boot()
    assert slot != FACTORY
    mgr.confirm()


def runnable(mgr: SlotManager) -> tuple[str, int | None]:
    slot, info, _ = mgr.choose_boot()
    if slot == FACTORY:
        return slot, None
    d = mgr.slot_dir(slot)
    assert hashlib.sha256((d / "app.pyz").read_bytes()).hexdigest() == info.app_sha256
    return slot, info.file_version


def count_writes(tmp: Path) -> int:
    ops = CuttingOps(cut_at=10**9)
    mgr = SlotManager(tmp, ops)
    full_update(mgr, ota_file(b"app one"), V1)
    start = ops.writes
    full_update(mgr, ota_file(b"app two"), V2)
    return ops.writes - start


@pytest.mark.parametrize("torn", [False, True])
def test_power_cut_at_every_write_of_an_update(tmp_path, torn):
    n = count_writes(tmp_path / "count")
    assert n >= 6
    tested = 0
    for cut in range(1, n + 1):
        d = tmp_path / f"cut{cut}"
        mgr = SlotManager(d)
        full_update(mgr, ota_file(b"app one"), V1)
        ops = CuttingOps(cut_at=cut, torn=torn)
        mgr = SlotManager(d, ops)
        with pytest.raises(PowerCut):
            full_update(mgr, ota_file(b"app two"), V2)
        # Power returns: a fresh manager boots something valid, old or new, never nothing.
        after = SlotManager(d)
        slot, version = runnable(after)
        assert version in (V1, V2), (cut, slot)
        # And a second boot after an unconfirmed trial is back on a valid image too.
        slot2, version2 = runnable(after)
        assert version2 in (V1, V2)
        tested += 1
    assert tested == n


def test_unconfirmed_trial_is_reverted(tmp_path):
    mgr = SlotManager(tmp_path)
    full_update(mgr, ota_file(b"one"), V1)
    mgr.stage(ota_file(b"two"), V2)
    mgr.activate()
    slot, info, _ = mgr.choose_boot()  # the trial boot
    assert info.file_version == V2 and mgr.boot_state().trial
    slot, info, events = mgr.choose_boot()  # booted again without confirming: it failed
    assert info.file_version == V1
    assert any("reverted" in e for e in events)
    assert not mgr.boot_state().trial


def test_flipped_bit_in_a_slot_falls_back(tmp_path):
    mgr = SlotManager(tmp_path)
    full_update(mgr, ota_file(b"one" * 100), V1)
    full_update(mgr, ota_file(b"two" * 100), V2)
    active = mgr.boot_state().active
    app = mgr.slot_dir(active) / "app.pyz"
    data = bytearray(app.read_bytes())
    data[7] ^= 0x10
    app.write_bytes(bytes(data))
    slot, info, events = mgr.choose_boot()
    assert slot != active and info.file_version == V1
    assert any("corrupt" in e for e in events)


def test_corrupt_boot_record_boots_factory(tmp_path):
    mgr = SlotManager(tmp_path)
    full_update(mgr, ota_file(b"one"), V1)
    (tmp_path / "slots" / "boot.json").write_bytes(b"\x00garbage")
    assert mgr.choose_boot()[0] == FACTORY


def test_staging_never_touches_the_running_slot(tmp_path):
    mgr = SlotManager(tmp_path)
    full_update(mgr, ota_file(b"one"), V1)
    active = mgr.boot_state().active
    before = {p.name: p.read_bytes() for p in mgr.slot_dir(active).iterdir()}
    mgr.stage(ota_file(os.urandom(100)), V2)
    after = {p.name: p.read_bytes() for p in mgr.slot_dir(active).iterdir()}
    assert before == after


def test_stage_rejects_what_fails_verification_of_stored_bytes(tmp_path):
    mgr = SlotManager(tmp_path)
    with pytest.raises(SlotError):
        mgr.stage(ota_file(b"x"), V1, verify=lambda p: (False, "bad signature"))
    assert mgr.boot_state().pending is None
    assert mgr.info(mgr.inactive()) is None


def test_extract_payload():
    assert extract_payload(ota_file(b"hello")) == b"hello"
    with pytest.raises(SlotError):
        extract_payload(b"\x1e\xf1\xee\x0b\x00\x01\x38\x00" + bytes(48))


def test_a_version_that_failed_its_trial_is_remembered(tmp_path):
    """Else the meter downloads it again, activates, crashes, reverts... for ever."""
    mgr = SlotManager(tmp_path)
    mgr.stage(ota_file(b"two"), V2)
    mgr.activate()
    assert mgr.choose_boot()[0] in ("A", "B")  # the trial boot
    mgr.revert("trial slot exited with 9")
    assert mgr.boot_state().failed == [V2]
    assert SlotManager(tmp_path).boot_state().failed == [V2]  # kept in boot.json
    mgr.stage(ota_file(b"one"), V1)  # another version still goes through
    mgr.activate()
    assert mgr.boot_state().trial and mgr.boot_state().failed == [V2]
