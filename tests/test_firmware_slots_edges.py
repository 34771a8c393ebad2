"""A/B slots (sep/firmware/slots.py) at their edges, against truth the test holds itself.

Independent truth: the stored files are read back with stdlib ``json``, ``zlib.crc32`` and
``hashlib.sha256`` only, against the record format documented in ``sep/store/checked.py``
(canonical JSON of the other fields, keys sorted, no spaces, CRC-32 as 8 hex digits); OTA
files are laid out by hand after the ZCL OTA file format (header length at offset 6, then
sub-elements of tag id u16 + length u32, little-endian; tag 0x0000 is the upgrade image);
the rules are those in the module's docstring: an update is staged only into the inactive
slot and its meta is written last, a trial slot runs once and is reverted unless confirmed,
a version that failed its trial is remembered (the last 8), a corrupted slot is never run
and boot falls back to the other slot, then to the factory image.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from sep.firmware.slots import (
    FACTORY,
    BootState,
    FileOps,
    SlotError,
    SlotManager,
    extract_payload,
    looks_like_app,
)

V1, V2, V3 = 0x00010001, 0x00010002, 0x00010003
BOOT_KEYS = {"active", "previous", "pending", "trial", "trial_boots", "failed"}


# -- the oracle: the record format, written and read without sep.store.checked -------------
def sealed(doc: dict[str, Any]) -> bytes:
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({**doc, "crc32": f"{zlib.crc32(canonical):08x}"}).encode()


def opened(path: Path) -> dict[str, Any]:
    """The record in ``path``; fails the test unless its CRC-32 matches its content."""
    doc = json.loads(path.read_bytes())
    crc = doc.pop("crc32")
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert crc == f"{zlib.crc32(canonical):08x}", (path, doc)
    return doc


def boot_doc(**fields: Any) -> dict[str, Any]:
    doc = {"active": FACTORY, "previous": FACTORY, "pending": None, "trial": False,
           "trial_boots": 0, "failed": []}
    doc.update(fields)
    return doc


def ota_file(payload: bytes, *, before: list[tuple[int, bytes]] | None = None,
             after: list[tuple[int, bytes]] | None = None, optional: bool = False) -> bytes:
    """An OTA file laid out by hand: the header (``optional``: with all three optional
    fields, field control 0x0007, 69 bytes), the sub-elements ``before`` (tag, data), the
    upgrade image (tag 0x0000), the sub-elements ``after``."""
    header_len = 69 if optional else 56
    header = bytearray(header_len)
    header[0:4] = (0x0BEEF11E).to_bytes(4, "little")
    header[4:6] = (0x0100).to_bytes(2, "little")
    header[6:8] = header_len.to_bytes(2, "little")
    header[8:10] = (0x0007 if optional else 0).to_bytes(2, "little")
    body = b""
    for tag, data in [*(before or []), (0x0000, payload), *(after or [])]:
        body += tag.to_bytes(2, "little") + len(data).to_bytes(4, "little") + data
    return bytes(header) + body


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_slot(root: Path, name: str, app: bytes, image: bytes, version: int,
             meta: dict[str, Any] | None = None) -> None:
    """A slot written by the test itself: what a complete, verified slot looks like."""
    d = root / "slots" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "app.pyz").write_bytes(app)
    (d / "image.ota").write_bytes(image)
    if meta is None:
        meta = {"file_version": version, "app_sha256": sha(app), "image_sha256": sha(image)}
    (d / "meta.json").write_bytes(sealed(meta))


def put_boot(root: Path, **fields: Any) -> None:
    (root / "slots").mkdir(parents=True, exist_ok=True)
    (root / "slots" / "boot.json").write_bytes(sealed(boot_doc(**fields)))


def stored_boot(root: Path) -> dict[str, Any]:
    doc = opened(root / "slots" / "boot.json")
    assert set(doc) == BOOT_KEYS, doc
    return doc


class CountingOps(FileOps):
    """Counts what reaches the disk; ``cut_after`` names a file after whose write the
    power fails (the write itself completed)."""

    def __init__(self, cut_after: str | None = None) -> None:
        self.log: list[tuple[str, str]] = []
        self.cut_after = cut_after

    def write_atomic(self, path: Path, data: bytes) -> None:
        super().write_atomic(path, data)
        self.log.append(("write", f"{path.parent.name}/{path.name}"))
        if path.name == self.cut_after:
            raise PowerCut(path.name)

    def remove(self, path: Path) -> None:
        super().remove(path)
        self.log.append(("remove", f"{path.parent.name}/{path.name}"))


class PowerCut(Exception):
    pass


# -- files and the image -----------------------------------------------------------------------
def test_file_ops_remove_tolerates_a_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"1")
    FileOps().remove(f)
    assert not f.exists()
    FileOps().remove(f)  # gone already: a power cut after a remove, then the remove again


def test_extract_payload_walks_the_sub_elements(tmp_path: Path) -> None:
    # The upgrade image after other elements, before the signature (0x0001) and certificate
    # (0x0002) that close a signed file, after the longest header (all optional fields
    # present), and empty at the very end of the file.
    image = ota_file(b"the app", before=[(0xF000, b"m" * 30), (0x0003, b"i" * 16)])
    assert extract_payload(image) == b"the app"
    signed = ota_file(b"the app", after=[(0x0002, b"c" * 48), (0x0001, b"s" * 50)])
    assert extract_payload(signed) == b"the app"
    assert extract_payload(ota_file(b"app", optional=True)) == b"app"
    assert extract_payload(ota_file(b"")) == b""
    only_other = ota_file(b"", before=[(0x0001, b"sig")])[:-6]
    with pytest.raises(SlotError, match="no upgrade image element"):
        extract_payload(only_other)
    for short in (b"", bytes(9)):
        with pytest.raises(SlotError, match="too short"):
            extract_payload(short)


def test_looks_like_app_wants_a_zip_with_main() -> None:
    def zipped(names: list[str]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for n in names:
                z.writestr(n, "print(1)\n")
        return buf.getvalue()

    assert looks_like_app(zipped(["__main__.py", "sep/__init__.py"])) is True
    assert looks_like_app(zipped(["main.py"])) is False
    assert looks_like_app(b"not a zip at all") is False


# -- the boot record ---------------------------------------------------------------------------
def test_boot_record_as_stored(tmp_path: Path) -> None:
    state = BootState(active="B", previous="A", pending="A", trial=True, trial_boots=1,
                      failed=[V1, V2])
    doc = json.loads(state.to_json())
    crc = doc.pop("crc32")
    assert crc == f"{zlib.crc32(json.dumps(doc, sort_keys=True, separators=(',', ':')).encode()):08x}"
    assert doc == {"active": "B", "previous": "A", "pending": "A", "trial": True,
                   "trial_boots": 1, "failed": [V1, V2]}
    assert dataclass_defaults() == boot_doc()


def dataclass_defaults() -> dict[str, Any]:
    doc = json.loads(BootState().to_json())
    doc.pop("crc32")
    return doc


def test_boot_record_written_by_hand_is_read_as_written(tmp_path: Path) -> None:
    put_boot(tmp_path, active="B", previous="A", pending="A", trial=True, trial_boots=2,
             failed=[V1, V3])
    assert SlotManager(tmp_path).boot_state() == BootState("B", "A", "A", True, 2, [V1, V3])
    put_boot(tmp_path, active="A", previous=FACTORY, pending="B", trial_boots=0)
    assert SlotManager(tmp_path).boot_state() == BootState("A", FACTORY, "B", False, 0, [])
    # A record from before the failed list existed still reads.
    doc = boot_doc(active="A")
    del doc["failed"]
    (tmp_path / "slots" / "boot.json").write_bytes(sealed(doc))
    assert SlotManager(tmp_path).boot_state() == BootState(active="A")


@pytest.mark.parametrize("fields", [
    {"active": "C"}, {"active": None}, {"previous": "C"}, {"previous": None},
    {"pending": FACTORY}, {"pending": "C"},
    {"trial": 1}, {"trial": "true"}, {"trial_boots": True}, {"trial_boots": -1},
    {"trial_boots": 1.0}, {"failed": {"1": 1}}, {"failed": [V1, "2"]}, {"failed": [True]},
    {"failed": "1"}, {"unknown_field": 1},
], ids=repr)
def test_a_boot_record_out_of_its_domain_boots_factory(tmp_path: Path, fields: dict[str, Any],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    put_slot(tmp_path, "A", b"app", ota_file(b"app"), V1)
    put_boot(tmp_path, **{"active": "A", **fields})
    mgr = SlotManager(tmp_path)
    with caplog.at_level(logging.ERROR, logger="sep.firmware.slots"):
        assert mgr.boot_state() == BootState()
        assert mgr.choose_boot() == (FACTORY, None, [])
    # The log says the factory image runs, and why: the field at fault.
    key = next(iter(fields))
    why = {"active": "unknown slot", "previous": "unknown slot", "pending": "unknown slot",
           "trial": "trial", "trial_boots": "trial", "failed": "failed"}.get(key, key)
    said = [r.getMessage() for r in caplog.records]
    assert said and all(m.startswith("boot.json unreadable (") and why in m
                        and m.endswith("booting the factory image") for m in said), said


def test_a_rotten_boot_record_is_named_in_the_log(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    put_boot(tmp_path, active="A")
    f = tmp_path / "slots" / "boot.json"
    f.write_bytes(f.read_bytes().replace(b'"A"', b'"B"'))  # valid JSON, wrong checksum
    with caplog.at_level(logging.ERROR, logger="sep.firmware.slots"):
        assert SlotManager(tmp_path).boot_state() == BootState()
    assert len(caplog.records) == 1 and "slots/boot.json" in caplog.records[0].getMessage()


def test_no_boot_record_is_the_factory_image_quietly(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    mgr = SlotManager(tmp_path)
    assert (tmp_path / "slots" / "A").is_dir() and (tmp_path / "slots" / "B").is_dir()
    with caplog.at_level(logging.DEBUG, logger="sep.firmware.slots"):
        assert mgr.boot_state() == BootState()
        assert mgr.choose_boot() == (FACTORY, None, [])
    assert not caplog.records
    assert not mgr.boot_path.exists()  # booting factory writes nothing


# -- a slot's meta -------------------------------------------------------------------------------
def test_info_of_a_complete_slot(tmp_path: Path) -> None:
    app, image = b"app bytes", ota_file(b"app bytes")
    put_slot(tmp_path, "B", app, image, V2)
    info = SlotManager(tmp_path).info("B")
    assert info is not None
    assert (info.name, info.file_version, info.app_sha256, info.image_sha256) == (
        "B", V2, sha(app), sha(image))


@pytest.mark.parametrize("name", [FACTORY, "C", "", "../A"])
def test_info_only_for_the_two_slots(tmp_path: Path, name: str) -> None:
    put_slot(tmp_path, "A", b"a", ota_file(b"a"), V1)
    # A complete-looking slot under another name is still not a slot.
    if name not in ("", "../A"):
        put_slot(tmp_path, name, b"a", ota_file(b"a"), V1)
    assert SlotManager(tmp_path).info(name) is None


@pytest.mark.parametrize("damage", [
    "file_version str", "file_version float", "file_version bool", "no app hash",
    "no image hash", "no file_version", "app flipped", "image flipped", "no app", "no image",
    "no meta", "meta rot", "meta not an object",
])
def test_a_damaged_slot_has_no_info(tmp_path: Path, damage: str,
                                    caplog: pytest.LogCaptureFixture) -> None:
    app, image = b"app" * 20, ota_file(b"app" * 20)
    meta: dict[str, Any] = {"file_version": V1, "app_sha256": sha(app), "image_sha256": sha(image)}
    what, _, how = damage.partition(" ")
    if what == "file_version" and how:
        meta["file_version"] = {"str": str(V1), "float": float(V1), "bool": True}[how]
    elif damage.startswith("no ") and damage[3:] in ("app hash", "image hash", "file_version"):
        del meta[{"app hash": "app_sha256", "image hash": "image_sha256",
                  "file_version": "file_version"}[damage[3:]]]
    put_slot(tmp_path, "A", app, image, V1, meta)
    d = tmp_path / "slots" / "A"
    if damage in ("app flipped", "image flipped"):
        f = d / ("app.pyz" if damage == "app flipped" else "image.ota")
        data = bytearray(f.read_bytes())
        data[5] ^= 0x01
        f.write_bytes(bytes(data))
    elif damage in ("no app", "no image", "no meta"):
        (d / {"no app": "app.pyz", "no image": "image.ota", "no meta": "meta.json"}[damage]).unlink()
    elif damage == "meta rot":
        (d / "meta.json").write_bytes((d / "meta.json").read_bytes().replace(b"1", b"2", 1))
    elif damage == "meta not an object":
        (d / "meta.json").write_bytes(b"[1, 2]")
    put_boot(tmp_path, active="A")
    mgr = SlotManager(tmp_path)
    with caplog.at_level(logging.ERROR, logger="sep.firmware.slots"):
        assert mgr.info("A") is None
        slot, info, events = mgr.choose_boot()
    assert (slot, info) == (FACTORY, None)
    assert events == ["slot A is corrupt or empty"]
    said = [r.getMessage() for r in caplog.records if "slot A is corrupt" in r.getMessage()]
    if damage in ("no app", "no image", "no meta"):  # missing files: an empty slot, quietly
        assert said == []
        return
    # The log says what is wrong: the file, or the field, at fault.
    culprit = {"app flipped": "app.pyz", "image flipped": "image.ota",
               "meta rot": "slots/A/meta.json", "meta not an object": "slots/A/meta.json",
               "no app hash": "app_sha256", "no image hash": "image_sha256",
               "no file_version": "file_version"}.get(damage, "file_version")
    assert said and all(culprit in m for m in said), (said, culprit)


# -- staging -------------------------------------------------------------------------------------
def test_stage_writes_the_inactive_slot_and_its_meta(tmp_path: Path) -> None:
    put_slot(tmp_path, "A", b"old", ota_file(b"old"), V1)
    put_boot(tmp_path, active="A", previous=FACTORY, failed=[V3])
    image = ota_file(b"new app", before=[(0x0001, b"x" * 10)])
    seen: list[bytes] = []

    def verify(path: Path) -> tuple[bool, str | None]:
        seen.append(path.read_bytes())
        assert path == tmp_path / "slots" / "B" / "image.ota"
        return True, None

    assert SlotManager(tmp_path).stage(image, V2, verify=verify) == "B"
    assert seen == [image]  # the verifier read the stored file
    d = tmp_path / "slots" / "B"
    assert (d / "image.ota").read_bytes() == image
    assert (d / "app.pyz").read_bytes() == b"new app"
    assert opened(d / "meta.json") == {"file_version": V2, "app_sha256": sha(b"new app"),
                                      "image_sha256": sha(image)}
    assert stored_boot(tmp_path) == boot_doc(active="A", pending="B", failed=[V3])


@pytest.mark.parametrize("active, inactive", [("A", "B"), ("B", "A"), (FACTORY, "A")])
def test_inactive_is_the_other_slot(tmp_path: Path, active: str, inactive: str) -> None:
    put_boot(tmp_path, active=active)
    mgr = SlotManager(tmp_path)
    assert mgr.inactive() == inactive
    assert mgr.stage(ota_file(b"x"), V2) == inactive
    assert stored_boot(tmp_path)["pending"] == inactive


def test_meta_is_removed_first_and_written_last(tmp_path: Path) -> None:
    """The slot is empty from the first write of a staging until its meta is back: a power
    cut in between leaves no meta on disk, not the old one beside new files."""
    put_slot(tmp_path, "B", b"old b", ota_file(b"old b"), V1)
    put_boot(tmp_path, active="A")
    ops = CountingOps()
    SlotManager(tmp_path, ops).stage(ota_file(b"new b"), V2)
    assert ops.log == [("remove", "B/meta.json"), ("write", "B/image.ota"),
                       ("write", "B/app.pyz"), ("write", "B/meta.json"),
                       ("write", "slots/boot.json")]
    for cut in ("image.ota", "app.pyz"):
        put_slot(tmp_path, "B", b"old b", ota_file(b"old b"), V1)
        with pytest.raises(PowerCut):
            SlotManager(tmp_path, CountingOps(cut_after=cut)).stage(ota_file(b"new b"), V2)
        assert not (tmp_path / "slots" / "B" / "meta.json").exists(), cut


def test_a_refused_stage_leaves_an_empty_slot_and_no_pending(tmp_path: Path) -> None:
    put_slot(tmp_path, "B", b"same", ota_file(b"same"), V1)
    put_boot(tmp_path, active="A", pending="B")
    with pytest.raises(SlotError, match="stored image failed verification: BAD_SIGNATURE: x"):
        SlotManager(tmp_path).stage(ota_file(b"same"), V1,
                                    verify=lambda p: (False, "BAD_SIGNATURE: x"))
    assert not (tmp_path / "slots" / "B" / "meta.json").exists()
    assert SlotManager(tmp_path).info("B") is None
    with pytest.raises(SlotError, match="no complete pending slot"):
        SlotManager(tmp_path).activate()


# -- activate, confirm, revert -------------------------------------------------------------------
def test_activate_puts_the_pending_slot_on_trial(tmp_path: Path) -> None:
    put_slot(tmp_path, "A", b"a", ota_file(b"a"), V1)
    put_slot(tmp_path, "B", b"b", ota_file(b"b"), V2)
    put_boot(tmp_path, active="A", previous=FACTORY, pending="B", failed=[V3])
    assert SlotManager(tmp_path).activate() == "B"
    assert stored_boot(tmp_path) == boot_doc(active="B", previous="A", pending=None, trial=True,
                                             trial_boots=0, failed=[V3])


@pytest.mark.parametrize("pending", [None, "B"])
def test_activate_refuses_without_a_complete_pending_slot(tmp_path: Path,
                                                          pending: str | None) -> None:
    put_boot(tmp_path, active="A", pending=pending)  # B: pending, but its files are gone
    before = (tmp_path / "slots" / "boot.json").read_bytes()
    with pytest.raises(SlotError, match="no complete pending slot to activate"):
        SlotManager(tmp_path).activate()
    assert (tmp_path / "slots" / "boot.json").read_bytes() == before


def test_confirm_keeps_the_trial_slot_and_writes_only_then(tmp_path: Path) -> None:
    put_slot(tmp_path, "B", b"b", ota_file(b"b"), V2)
    put_boot(tmp_path, active="B", previous="A", trial=True, trial_boots=1, failed=[V3])
    SlotManager(tmp_path).confirm()
    assert stored_boot(tmp_path) == boot_doc(active="B", previous="A", failed=[V3])
    ops = CountingOps()
    SlotManager(tmp_path, ops).confirm()  # nothing on trial: nothing written
    assert ops.log == []


def test_revert_remembers_the_failed_version_once_and_the_last_eight(tmp_path: Path) -> None:
    put_slot(tmp_path, "A", b"a", ota_file(b"a"), V1)
    put_slot(tmp_path, "B", b"b", ota_file(b"b"), V2)
    old = list(range(100, 108))
    put_boot(tmp_path, active="B", previous="A", pending="A", trial=True, trial_boots=1,
             failed=old)
    new = SlotManager(tmp_path).revert("health check failed")
    want = boot_doc(active="A", previous="A", failed=old[1:] + [V2])
    assert stored_boot(tmp_path) == want
    assert new == BootState(**want)
    # Failing again with a version already listed does not list it twice.
    put_boot(tmp_path, active="B", previous="A", trial=True, trial_boots=1, failed=[V2, V3])
    SlotManager(tmp_path).revert("again")
    assert stored_boot(tmp_path)["failed"] == [V2, V3]


@pytest.mark.parametrize("trial, present", [(False, True), (True, False)])
def test_revert_lists_only_a_trial_slot_it_can_read(tmp_path: Path, trial: bool,
                                                    present: bool) -> None:
    """A confirmed slot reverted by hand did not fail a trial; a trial slot whose files are
    gone has no version to list."""
    if present:
        put_slot(tmp_path, "B", b"b", ota_file(b"b"), V2)
    put_boot(tmp_path, active="B", previous=FACTORY, trial=trial, trial_boots=1, failed=[V3])
    SlotManager(tmp_path).revert("operator")
    assert stored_boot(tmp_path) == boot_doc(failed=[V3])


# -- choose_boot ----------------------------------------------------------------------------------
def test_first_trial_boot_is_counted_on_disk(tmp_path: Path) -> None:
    put_slot(tmp_path, "B", b"b", ota_file(b"b"), V2)
    put_boot(tmp_path, active="B", previous=FACTORY, trial=True, trial_boots=0)
    slot, info, events = SlotManager(tmp_path).choose_boot()
    assert (slot, info and info.file_version, events) == ("B", V2, [])
    # Counted before the slot runs: a power cut while it runs still counts as its one try.
    assert stored_boot(tmp_path) == boot_doc(active="B", trial=True, trial_boots=1)


@pytest.mark.parametrize("boots", [1, 2, 7])
def test_a_trial_slot_booted_again_is_reverted(tmp_path: Path, boots: int,
                                              caplog: pytest.LogCaptureFixture) -> None:
    put_slot(tmp_path, "A", b"a", ota_file(b"a"), V1)
    put_slot(tmp_path, "B", b"b", ota_file(b"b"), V2)
    put_boot(tmp_path, active="B", previous="A", trial=True, trial_boots=boots)
    with caplog.at_level(logging.WARNING, logger="sep.firmware.slots"):
        slot, info, events = SlotManager(tmp_path).choose_boot()
    assert [r.getMessage() for r in caplog.records] == [
        "reverting slot B to A: trial boot not confirmed"]
    assert (slot, info and info.file_version) == ("A", V1)
    assert events == ["trial of slot B did not confirm: reverted"]
    assert stored_boot(tmp_path) == boot_doc(active="A", previous="A", failed=[V2])


def test_a_confirmed_slot_boots_without_writing(tmp_path: Path) -> None:
    put_slot(tmp_path, "A", b"a", ota_file(b"a"), V1)
    put_boot(tmp_path, active="A", previous=FACTORY)
    ops = CountingOps()
    slot, info, events = SlotManager(tmp_path, ops).choose_boot()
    assert (slot, info and info.file_version, events, ops.log) == ("A", V1, [], [])


def test_boot_falls_back_to_the_previous_slot_then_factory(tmp_path: Path) -> None:
    put_slot(tmp_path, "A", b"a", ota_file(b"a"), V1)
    put_boot(tmp_path, active="B", previous="A")  # B is empty
    slot, info, events = SlotManager(tmp_path).choose_boot()
    assert (slot, info and info.file_version) == ("A", V1)
    assert events == ["slot B is corrupt or empty", "slot B unusable: booting A"]
    put_boot(tmp_path, active="B", previous=FACTORY)
    assert SlotManager(tmp_path).choose_boot() == (FACTORY, None, ["slot B is corrupt or empty"])
    (tmp_path / "slots" / "A" / "app.pyz").write_bytes(b"rot")
    put_boot(tmp_path, active="B", previous="A")  # both unusable
    assert SlotManager(tmp_path).choose_boot() == (
        FACTORY, None, ["slot B is corrupt or empty", "slot A is corrupt or empty"])


def test_revert_is_logged_with_both_slots_and_the_reason(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    put_boot(tmp_path, active="B", previous="A", trial=True, trial_boots=1)
    with caplog.at_level(logging.WARNING, logger="sep.firmware.slots"):
        SlotManager(tmp_path).revert("trial slot exited with 9")
    assert [r.getMessage() for r in caplog.records] == [
        "reverting slot B to A: trial slot exited with 9"]
