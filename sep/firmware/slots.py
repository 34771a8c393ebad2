"""A/B application slots on disk, power-cut safe (the MCUboot/RAUC model for a Python AP).

Layout under ``DATA/slots``::

    A/ image.ota  app.pyz  meta.json      one complete, verified image per slot
    B/ ...
    boot.json                             which slot runs, and whether it is on trial

The installed package is the *factory* image: it runs when no slot has been activated.

Rules:
- An update is staged into the *inactive* slot only; the running slot is never written.
- Every file is written whole (temp file, fsync, rename, fsync directory): a power cut
  leaves either the old or the new file, never a mix. ``meta.json`` (with the SHA-256 of
  the slot's files) is written last, so a slot without a valid meta is simply empty.
  ``boot.json`` and ``meta.json`` carry a CRC-32 of their content (``sep.store.checked``):
  a rotten boot record boots the factory image, a rotten meta empties its slot.
- The stored bytes are verified again after staging (the caller's verifier reads them from
  disk) before the slot is marked pending.
- Activation flips ``boot.json`` to the new slot *on trial*. The next boot runs it once; only
  :meth:`SlotManager.confirm` (after a real health check) makes it permanent. A trial slot
  that boots again unconfirmed — it crashed, hung or failed its health check — is reverted.
- At boot every candidate slot is checked against its meta (hashes); a corrupted slot is
  never run, and boot falls back to the other slot, then to the factory image.

File operations go through :class:`FileOps` so tests can cut power at every write, tear
writes in half and flip bits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import zipfile
from pathlib import Path
from typing import Any

from sep.firmware.fileio import write_atomic
from sep.store.checked import seal, unseal

LOGGER = logging.getLogger(__name__)

SLOTS = ("A", "B")
FACTORY = "factory"


class FileOps:
    """The only way slots touch the disk."""

    def write_atomic(self, path: Path, data: bytes) -> None:
        write_atomic(path, data)

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


@dataclasses.dataclass
class BootState:
    active: str = FACTORY
    previous: str = FACTORY
    pending: str | None = None
    trial: bool = False
    trial_boots: int = 0
    #: file versions that failed their trial here: never installed again (no boot loop of
    #: download, activate, crash, revert, download...)
    failed: list[int] = dataclasses.field(default_factory=list)

    def to_json(self) -> bytes:
        """The record as stored: with its checksum (``sep.store.checked``)."""
        return seal(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class SlotInfo:
    name: str
    file_version: int
    app_sha256: str
    image_sha256: str


class SlotError(Exception):
    pass


def extract_payload(image: bytes) -> bytes:
    """The upgrade-image element (tag 0x0000) of an OTA file: the application itself."""
    if len(image) < 10:
        raise SlotError("image too short")
    header_len = int.from_bytes(image[6:8], "little")
    pos = header_len
    while pos + 6 <= len(image):
        tag = int.from_bytes(image[pos:pos + 2], "little")
        length = int.from_bytes(image[pos + 2:pos + 6], "little")
        if tag == 0x0000:
            return image[pos + 6:pos + 6 + length]
        pos += 6 + length
    raise SlotError("no upgrade image element")


def looks_like_app(payload: bytes) -> bool:
    """A zipapp with a __main__.py: what the supervisor can start."""
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as z:
            return "__main__.py" in z.namelist()
    except zipfile.BadZipFile:
        return False


class SlotManager:
    def __init__(self, data_dir: Path, ops: FileOps | None = None) -> None:
        self.root = data_dir / "slots"
        self.ops = ops or FileOps()
        for name in SLOTS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.boot_path = self.root / "boot.json"

    # -- state ----------------------------------------------------------------------------
    def boot_state(self) -> BootState:
        try:
            doc = unseal(self.ops.read(self.boot_path), "slots/boot.json")
            state = BootState(**doc)
            if state.active not in (*SLOTS, FACTORY) or state.previous not in (*SLOTS, FACTORY) \
                    or state.pending not in (None, *SLOTS):
                raise ValueError("unknown slot")
            if type(state.trial) is not bool or type(state.trial_boots) is not int \
                    or state.trial_boots < 0:
                raise ValueError("trial fields of the wrong type")
            if type(state.failed) is not list or any(type(v) is not int for v in state.failed):
                raise ValueError("failed is not a list of file versions")
            return state
        except FileNotFoundError:
            return BootState()
        except (ValueError, TypeError) as exc:
            # A torn boot.json is impossible with atomic writes; rot is not. Run factory.
            LOGGER.error("boot.json unreadable (%s): booting the factory image", exc)
            return BootState()

    def _save(self, state: BootState) -> None:
        self.ops.write_atomic(self.boot_path, state.to_json())

    def slot_dir(self, name: str) -> Path:
        return self.root / name

    def info(self, name: str) -> SlotInfo | None:
        """The slot's meta if the slot is complete and its files match it, else None."""
        if name not in SLOTS:
            return None
        d = self.slot_dir(name)
        try:
            meta = unseal(self.ops.read(d / "meta.json"), f"slots/{name}/meta.json")
            if type(meta["file_version"]) is not int:
                raise ValueError("file_version is not an integer")
            info = SlotInfo(name=name, file_version=meta["file_version"],
                            app_sha256=meta["app_sha256"], image_sha256=meta["image_sha256"])
            if hashlib.sha256(self.ops.read(d / "app.pyz")).hexdigest() != info.app_sha256:
                raise ValueError("app.pyz does not match its hash")
            if hashlib.sha256(self.ops.read(d / "image.ota")).hexdigest() != info.image_sha256:
                raise ValueError("image.ota does not match its hash")
            return info
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            LOGGER.error("slot %s is corrupt: %s", name, exc)
            return None

    def inactive(self) -> str:
        state = self.boot_state()
        return "B" if state.active == "A" else "A"

    # -- update steps -----------------------------------------------------------------------
    def stage(self, image: bytes, file_version: int, verify: Any = None) -> str:
        """Write a verified image into the inactive slot; returns the slot name.

        ``verify(path) -> (ok, reason)`` is run on the *stored* image file."""
        payload = extract_payload(image)
        name = self.inactive()
        d = self.slot_dir(name)
        self.ops.remove(d / "meta.json")  # the slot is empty until its meta is back
        self.ops.write_atomic(d / "image.ota", image)
        self.ops.write_atomic(d / "app.pyz", payload)
        if verify is not None:
            ok, reason = verify(d / "image.ota")
            if not ok:
                self.ops.remove(d / "meta.json")
                raise SlotError(f"stored image failed verification: {reason}")
        meta = {"file_version": file_version,
                "app_sha256": hashlib.sha256(payload).hexdigest(),
                "image_sha256": hashlib.sha256(image).hexdigest()}
        self.ops.write_atomic(d / "meta.json", seal(meta))
        state = self.boot_state()
        state.pending = name
        self._save(state)
        return name

    def activate(self) -> str:
        """Switch to the pending slot, on trial. The caller then restarts the app."""
        state = self.boot_state()
        if state.pending is None or self.info(state.pending) is None:
            raise SlotError("no complete pending slot to activate")
        new = BootState(active=state.pending, previous=state.active, pending=None, trial=True,
                        trial_boots=0, failed=state.failed)
        self._save(new)
        return new.active

    def confirm(self) -> None:
        """The running trial slot passed its health check: keep it."""
        state = self.boot_state()
        if state.trial:
            state.trial = False
            state.trial_boots = 0
            self._save(state)

    def revert(self, reason: str) -> BootState:
        state = self.boot_state()
        LOGGER.warning("reverting slot %s to %s: %s", state.active, state.previous, reason)
        failed = list(state.failed)
        info = self.info(state.active) if state.trial else None
        if info is not None and info.file_version not in failed:
            failed = (failed + [info.file_version])[-8:]
        new = BootState(active=state.previous, previous=state.previous, pending=None,
                        trial=False, trial_boots=0, failed=failed)
        self._save(new)
        return new

    # -- boot ---------------------------------------------------------------------------------
    def choose_boot(self) -> tuple[str, SlotInfo | None, list[str]]:
        """What to run now. Returns (slot, its info or None for factory, events)."""
        events: list[str] = []
        state = self.boot_state()
        if state.trial:
            if state.trial_boots >= 1:
                events.append(f"trial of slot {state.active} did not confirm: reverted")
                state = self.revert("trial boot not confirmed")
            else:
                state.trial_boots += 1
                self._save(state)
        for name in (state.active, state.previous):
            if name == FACTORY:
                return FACTORY, None, events
            info = self.info(name)
            if info is not None:
                if name != state.active:
                    events.append(f"slot {state.active} unusable: booting {name}")
                return name, info, events
            events.append(f"slot {name} is corrupt or empty")
        return FACTORY, None, events
