"""Our manifest: a manufacturer-specific sub-element describing the payload.

Tag **0xF000** (the first manufacturer-specific tag). A small, versioned, little-endian binary
structure, decoded strictly (no trailing bytes, bounded strings):

====== ====== =====================================================================
offset size   field
====== ====== =====================================================================
0      4      magic ``b"SEPM"``
4      1      manifest format version, 1
5      1      image kind: 0 = application, 1 = metrology
6      4      version (u32), equal to the header's file version
10     2      target hardware version, minimum (u16)
12     2      target hardware version, maximum (u16); 0x0000..0xFFFF means "any"
14     4      payload length (u32): length of the upgrade image element data
18     4      payload CRC-32 (u32, ``zlib.crc32``) of the upgrade image element data
22     1      build id length B (0..64)
23     B      build id, printable ASCII (e.g. a git revision)
23+B   2      release notes length N (0..4096)
25+B   N      release notes, UTF-8
====== ====== =====================================================================

Consistency with the rest of the file (:func:`check_manifest`): version = header file version;
hardware range = the header's hardware range when the header has one, else 0x0000..0xFFFF;
payload length and CRC-32 match the upgrade image element.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from sep.firmware.errors import ImageError, Reason
from sep.firmware.format import OtaImage

MANIFEST_TAG = 0xF000
MANIFEST_MAGIC = b"SEPM"
MANIFEST_FORMAT_VERSION = 1
MAX_BUILD_ID = 64
MAX_NOTES = 4096
ANY_HARDWARE = (0x0000, 0xFFFF)

_FIXED = struct.Struct("<4sBBIHHII")  # through the payload CRC (22 bytes)


class ImageKind(IntEnum):
    APPLICATION = 0
    METROLOGY = 1

    @classmethod
    def from_name(cls, name: str) -> ImageKind:
        return cls[name.upper()]

    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Manifest:
    kind: ImageKind
    version: int
    payload_length: int
    payload_crc32: int
    build_id: str = ""
    notes: str = ""
    hardware_min: int = ANY_HARDWARE[0]
    hardware_max: int = ANY_HARDWARE[1]

    @classmethod
    def for_payload(
        cls,
        payload: bytes,
        *,
        kind: ImageKind = ImageKind.APPLICATION,
        version: int,
        build_id: str = "",
        notes: str = "",
        hardware_range: tuple[int, int] | None = None,
    ) -> Manifest:
        hw = hardware_range or ANY_HARDWARE
        return cls(
            kind=ImageKind(kind),
            version=version,
            payload_length=len(payload),
            payload_crc32=zlib.crc32(payload),
            build_id=build_id,
            notes=notes,
            hardware_min=hw[0],
            hardware_max=hw[1],
        )

    @property
    def hardware_range(self) -> tuple[int, int]:
        return (self.hardware_min, self.hardware_max)

    def encode(self) -> bytes:
        build = self.build_id.encode("ascii")
        notes = self.notes.encode("utf-8")
        if len(build) > MAX_BUILD_ID or not _printable(build):
            raise ValueError(f"build id must be at most {MAX_BUILD_ID} printable ASCII characters")
        if len(notes) > MAX_NOTES:
            raise ValueError(f"release notes must be at most {MAX_NOTES} bytes of UTF-8")
        return (
            _FIXED.pack(
                MANIFEST_MAGIC,
                MANIFEST_FORMAT_VERSION,
                int(self.kind),
                self.version,
                self.hardware_min,
                self.hardware_max,
                self.payload_length,
                self.payload_crc32,
            )
            + bytes([len(build)])
            + build
            + struct.pack("<H", len(notes))
            + notes
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.label(),
            "version": f"0x{self.version:08X}",
            "build_id": self.build_id,
            "notes": self.notes,
            "hardware_min": f"0x{self.hardware_min:04X}",
            "hardware_max": f"0x{self.hardware_max:04X}",
            "payload_length": self.payload_length,
            "payload_crc32": f"0x{self.payload_crc32:08X}",
        }


def _printable(data: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in data)


def _bad(message: str) -> ImageError:
    return ImageError(Reason.BAD_MANIFEST, message)


def decode_manifest(data: bytes) -> Manifest:
    """Strictly decode a manifest element's data. Raises ``ImageError(BAD_MANIFEST)``."""
    data = bytes(data)
    if len(data) < _FIXED.size + 1 + 2:
        raise _bad(f"{len(data)} bytes is too short for a manifest")
    magic, fmt, kind, version, hw_min, hw_max, plen, crc = _FIXED.unpack_from(data)
    if magic != MANIFEST_MAGIC:
        raise _bad(f"magic {magic!r}, expected {MANIFEST_MAGIC!r}")
    if fmt != MANIFEST_FORMAT_VERSION:
        raise _bad(f"manifest format {fmt}, this reader knows {MANIFEST_FORMAT_VERSION}")
    if kind not in ImageKind._value2member_map_:
        raise _bad(f"unknown image kind {kind}")
    if hw_min > hw_max:
        raise _bad(f"hardware range 0x{hw_min:04X}..0x{hw_max:04X} is empty")
    pos = _FIXED.size
    blen = data[pos]
    pos += 1
    if blen > MAX_BUILD_ID or pos + blen + 2 > len(data):
        raise _bad("build id length out of range")
    build = data[pos : pos + blen]
    pos += blen
    if not _printable(build):
        raise _bad("build id is not printable ASCII")
    (nlen,) = struct.unpack_from("<H", data, pos)
    pos += 2
    if nlen > MAX_NOTES or pos + nlen != len(data):
        raise _bad(f"release notes length {nlen} does not fill the manifest exactly")
    try:
        notes = data[pos : pos + nlen].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(f"release notes are not UTF-8: {exc}") from None
    return Manifest(
        kind=ImageKind(kind),
        version=version,
        payload_length=plen,
        payload_crc32=crc,
        build_id=build.decode("ascii"),
        notes=notes,
        hardware_min=hw_min,
        hardware_max=hw_max,
    )


def read_manifest(image: OtaImage) -> Manifest | None:
    """The image's manifest, ``None`` if it has none; ``ImageError`` if it does not decode."""
    element = image.find(MANIFEST_TAG)
    return None if element is None else decode_manifest(element.data)


def check_manifest(image: OtaImage, manifest: Manifest) -> list[ImageError]:
    """Every disagreement between the manifest and the file (empty list: consistent)."""
    errors: list[ImageError] = []
    header = image.header
    if manifest.version != header.file_version:
        errors.append(
            ImageError(
                Reason.MANIFEST_MISMATCH,
                f"manifest version 0x{manifest.version:08X} != file version 0x{header.file_version:08X}",
            )
        )
    expected_hw = header.hardware_range or ANY_HARDWARE
    if manifest.hardware_range != expected_hw:
        errors.append(
            ImageError(
                Reason.MANIFEST_MISMATCH,
                "manifest hardware range 0x{:04X}..0x{:04X} != header 0x{:04X}..0x{:04X}".format(
                    *manifest.hardware_range, *expected_hw
                ),
            )
        )
    payload = image.payload
    if manifest.payload_length != len(payload):
        errors.append(
            ImageError(
                Reason.MANIFEST_MISMATCH,
                f"manifest payload length {manifest.payload_length} != {len(payload)}",
            )
        )
    crc = zlib.crc32(payload)
    if crc != manifest.payload_crc32:
        errors.append(
            ImageError(
                Reason.BAD_CRC,
                f"payload CRC-32 0x{crc:08X} != manifest 0x{manifest.payload_crc32:08X}",
            )
        )
    return errors
