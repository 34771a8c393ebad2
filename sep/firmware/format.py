"""Zigbee OTA upgrade file format (ZCL OTA Upgrade cluster, 11.4): a strict parser and a builder.

The file is a header followed by sub-elements ``tag u16 LE, length u32 LE, data`` that fill the
rest of the file exactly. All integers are little-endian.

The parser accepts any bytes and returns an :class:`OtaImage` or raises :class:`ImageError`; it
never raises anything else. It is strict where zigpy's ``zigpy.ota.image`` is lenient. Rules, in
the order they are checked:

header
  * magic 0x0BEEF11E, header version 0x0100;
  * reserved field-control bits (3..15) clear;
  * header length equal to the length implied by the field-control bits (56 + 1 if the security
    credential version is present + 8 if the upgrade file destination is present + 4 if the
    hardware versions are present), hence within 56..69;
  * minimum hardware version <= maximum hardware version;
  * total image size equal to the file length.

sub-elements
  * each element's 6-byte header and its data lie inside the file (``TRUNCATED_ELEMENT``), so the
    elements fill the file exactly with no trailing bytes;
  * known tags only: 0x0000..0x0006 and the manufacturer-specific range 0xF000..0xFFFF;
  * fixed lengths: signature suite 1 = 50, certificate suite 1 = 48, integrity code = 16,
    signature suite 2 = 80, certificate suite 2 = 74;
  * no tag appears twice (so at most one upgrade image);
  * exactly one non-empty upgrade image element;
  * suite elements: suite-1 and suite-2 elements together -> ``BOTH_SUITES``; a signature needs
    the certificate of its suite (``NO_CERTIFICATE``) and a certificate needs its signature
    (``NO_SIGNATURE``); a file with neither is rejected (``NO_SIGNATURE``) unless the caller
    passes ``allow_unsigned=True``;
  * the signature element is the last element (its digest covers everything before r||s);
  * **integrity-code rule**: the image integrity code (0x0003) covers the file from byte 0 up to
    the first byte of its own element header. It must be the last element, or the last but one
    when it is directly followed by the signature element. So it always covers the header, the
    upgrade image and every other element except the signature.

The header layout is declarative (:data:`HEADER_LAYOUT`, on zigpy's types); the same table drives
parsing and serialisation.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, IntFlag

import zigpy.types as t

from sep.firmware.errors import ImageError, Reason

MAGIC = 0x0BEEF11E
HEADER_VERSION = 0x0100
BASE_HEADER_LENGTH = 56
MAX_HEADER_LENGTH = 69
ELEMENT_HEADER_LENGTH = 6  # tag u16 + length u32
MANUFACTURER_TAG_MIN = 0xF000
STACK_VERSION_ZIGBEE_PRO = 0x0002


class FieldControl(IntFlag):
    SECURITY_CREDENTIAL_VERSION = 0x0001
    DEVICE_SPECIFIC_FILE = 0x0002  # upgrade file destination present
    HARDWARE_VERSIONS = 0x0004


FIELD_CONTROL_KNOWN = int(
    FieldControl.SECURITY_CREDENTIAL_VERSION
    | FieldControl.DEVICE_SPECIFIC_FILE
    | FieldControl.HARDWARE_VERSIONS
)


class Tag(IntEnum):
    UPGRADE_IMAGE = 0x0000
    SIGNATURE_SUITE1 = 0x0001
    CERTIFICATE_SUITE1 = 0x0002
    INTEGRITY_CODE = 0x0003
    PICTURE = 0x0004
    SIGNATURE_SUITE2 = 0x0005
    CERTIFICATE_SUITE2 = 0x0006


FIXED_ELEMENT_LENGTHS: dict[int, int] = {
    Tag.SIGNATURE_SUITE1: 8 + 21 + 21,
    Tag.CERTIFICATE_SUITE1: 48,
    Tag.INTEGRITY_CODE: 16,
    Tag.SIGNATURE_SUITE2: 8 + 36 + 36,
    Tag.CERTIFICATE_SUITE2: 74,
}


@dataclass(frozen=True)
class Suite:
    """A Smart Energy crypto suite as it appears in an OTA file."""

    number: int
    curve_name: str
    signature_tag: Tag
    certificate_tag: Tag
    scalar_length: int  # bytes of r and of s
    certificate_length: int

    @property
    def signature_length(self) -> int:
        return 8 + 2 * self.scalar_length


SUITES: dict[int, Suite] = {
    1: Suite(1, "sect163k1", Tag.SIGNATURE_SUITE1, Tag.CERTIFICATE_SUITE1, 21, 48),
    2: Suite(2, "sect283k1", Tag.SIGNATURE_SUITE2, Tag.CERTIFICATE_SUITE2, 36, 74),
}
_SUITE_OF_TAG = {
    tag: suite for suite in SUITES.values() for tag in (suite.signature_tag, suite.certificate_tag)
}


def tag_name(tag: int) -> str:
    if tag in Tag._value2member_map_:
        return Tag(tag).name
    if tag >= MANUFACTURER_TAG_MIN:
        from sep.firmware.manifest import MANIFEST_TAG  # local: manifest imports this module

        return "MANIFEST" if tag == MANIFEST_TAG else f"MANUFACTURER_0x{tag:04X}"
    return f"UNKNOWN_0x{tag:04X}"


# --------------------------------------------------------------------------------------------
# IEEE addresses. In the OTA file (signer, destination) they are little-endian like everywhere on
# Zigbee, i.e. zigpy's EUI64 wire order; in SE certificates (subject, issuer) they are big-endian.


def ieee_from_be(data: bytes) -> t.EUI64:
    """EUI64 from the big-endian byte order used in certificates."""
    return t.EUI64(bytes(data)[::-1])


def ieee_to_be(ieee: t.EUI64) -> bytes:
    """Big-endian (certificate) bytes of an EUI64."""
    return bytes(ieee.serialize())[::-1]


def parse_ieee(text: str) -> t.EUI64:
    """Parse a human-written IEEE address, most significant byte first.

    Accepts ``00:0d:6f:00:0a:bc:de:f0``, ``00-0d-...`` or ``000d6f000abcdef0`` (optionally 0x).
    """
    clean = text.strip().lower().removeprefix("0x").replace(":", "").replace("-", "")
    if len(clean) != 16:
        raise ValueError(f"an IEEE address has 16 hex digits: {text!r}")
    return ieee_from_be(bytes.fromhex(clean))


def format_ieee(ieee: t.EUI64) -> str:
    return str(ieee)


# --------------------------------------------------------------------------------------------
# The header, declaratively.


class HeaderString(bytes):
    """The 32-byte header string (zigpy-style serialise/deserialise)."""

    SIZE = 32

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[HeaderString, bytes]:
        if len(data) < cls.SIZE:
            raise ValueError("header string truncated")
        return cls(data[: cls.SIZE]), data[cls.SIZE :]

    def serialize(self) -> bytes:
        return bytes(self)

    @classmethod
    def from_text(cls, text: str | bytes) -> HeaderString:
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if len(raw) > cls.SIZE:
            raise ValueError(f"header string longer than {cls.SIZE} bytes")
        return cls(raw.ljust(cls.SIZE, b"\x00"))

    def text(self) -> str:
        return self.rstrip(b"\x00").decode("utf-8", errors="replace")


@dataclass(frozen=True)
class HeaderField:
    name: str
    type: type
    size: int
    present_if: FieldControl | None = None  # optional field present when this bit is set


HEADER_LAYOUT: tuple[HeaderField, ...] = (
    HeaderField("magic", t.uint32_t, 4),
    HeaderField("header_version", t.uint16_t, 2),
    HeaderField("header_length", t.uint16_t, 2),
    HeaderField("field_control", t.uint16_t, 2),
    HeaderField("manufacturer_code", t.uint16_t, 2),
    HeaderField("image_type", t.uint16_t, 2),
    HeaderField("file_version", t.uint32_t, 4),
    HeaderField("stack_version", t.uint16_t, 2),
    HeaderField("header_string", HeaderString, 32),
    HeaderField("total_image_size", t.uint32_t, 4),
    HeaderField(
        "security_credential_version", t.uint8_t, 1, FieldControl.SECURITY_CREDENTIAL_VERSION
    ),
    HeaderField("upgrade_file_destination", t.EUI64, 8, FieldControl.DEVICE_SPECIFIC_FILE),
    HeaderField("minimum_hardware_version", t.uint16_t, 2, FieldControl.HARDWARE_VERSIONS),
    HeaderField("maximum_hardware_version", t.uint16_t, 2, FieldControl.HARDWARE_VERSIONS),
)
# Offsets of the fixed fields (used by tests and by the mutation tools).
HEADER_OFFSETS: dict[str, int] = {}
_off = 0
for _f in HEADER_LAYOUT:
    if _f.present_if is None:
        HEADER_OFFSETS[_f.name] = _off
        _off += _f.size
assert _off == BASE_HEADER_LENGTH
del _off, _f


def implied_header_length(field_control: int) -> int:
    """Header length implied by the field-control bits (56..69)."""
    return BASE_HEADER_LENGTH + sum(
        f.size for f in HEADER_LAYOUT if f.present_if is not None and field_control & f.present_if
    )


@dataclass(frozen=True)
class OtaHeader:
    manufacturer_code: int
    image_type: int
    file_version: int
    stack_version: int = STACK_VERSION_ZIGBEE_PRO
    header_string: HeaderString = HeaderString(bytes(32))
    total_image_size: int = 0
    security_credential_version: int | None = None
    upgrade_file_destination: t.EUI64 | None = None
    minimum_hardware_version: int | None = None
    maximum_hardware_version: int | None = None
    field_control: int = 0
    header_length: int = BASE_HEADER_LENGTH
    magic: int = MAGIC
    header_version: int = HEADER_VERSION

    @classmethod
    def create(
        cls,
        *,
        manufacturer_code: int,
        image_type: int,
        file_version: int,
        stack_version: int = STACK_VERSION_ZIGBEE_PRO,
        header_string: str | bytes = b"",
        security_credential_version: int | None = None,
        upgrade_file_destination: t.EUI64 | None = None,
        hardware_versions: tuple[int, int] | None = None,
        total_image_size: int = 0,
    ) -> OtaHeader:
        """A consistent header: field control and header length follow the optional fields."""
        fc = FieldControl(0)
        if security_credential_version is not None:
            fc |= FieldControl.SECURITY_CREDENTIAL_VERSION
        if upgrade_file_destination is not None:
            fc |= FieldControl.DEVICE_SPECIFIC_FILE
        hw_min = hw_max = None
        if hardware_versions is not None:
            fc |= FieldControl.HARDWARE_VERSIONS
            hw_min, hw_max = hardware_versions
        return cls(
            manufacturer_code=manufacturer_code,
            image_type=image_type,
            file_version=file_version,
            stack_version=stack_version,
            header_string=HeaderString.from_text(header_string),
            total_image_size=total_image_size,
            security_credential_version=security_credential_version,
            upgrade_file_destination=upgrade_file_destination,
            minimum_hardware_version=hw_min,
            maximum_hardware_version=hw_max,
            field_control=int(fc),
            header_length=implied_header_length(int(fc)),
        )

    @property
    def hardware_range(self) -> tuple[int, int] | None:
        if self.minimum_hardware_version is None or self.maximum_hardware_version is None:
            return None
        return (self.minimum_hardware_version, self.maximum_hardware_version)

    def serialize(self) -> bytes:
        out = bytearray()
        for f in HEADER_LAYOUT:
            if f.present_if is not None and not self.field_control & f.present_if:
                continue
            value = getattr(self, f.name)
            if value is None:
                raise ValueError(f"field control says {f.name} is present but it is None")
            out += f.type(value).serialize()
        return bytes(out)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "magic": f"0x{self.magic:08X}",
            "header_version": f"0x{self.header_version:04X}",
            "header_length": self.header_length,
            "field_control": f"0x{self.field_control:04X}",
            "manufacturer_code": f"0x{self.manufacturer_code:04X}",
            "image_type": f"0x{self.image_type:04X}",
            "file_version": f"0x{self.file_version:08X}",
            "stack_version": f"0x{self.stack_version:04X}",
            "header_string": self.header_string.text(),
            "total_image_size": self.total_image_size,
        }
        if self.security_credential_version is not None:
            d["security_credential_version"] = self.security_credential_version
        if self.upgrade_file_destination is not None:
            d["upgrade_file_destination"] = format_ieee(self.upgrade_file_destination)
        if self.hardware_range is not None:
            d["minimum_hardware_version"] = f"0x{self.minimum_hardware_version:04X}"
            d["maximum_hardware_version"] = f"0x{self.maximum_hardware_version:04X}"
        return d


def _read_field(f: HeaderField, data: bytes) -> tuple[object, bytes]:
    value, rest = f.type.deserialize(data)  # type: ignore[attr-defined]
    if isinstance(value, int):
        value = int(value)  # plain ints in the parsed header, not zigpy's subclasses
    return value, rest


def parse_header(data: bytes) -> OtaHeader:
    """Parse and check the header at the start of ``data`` (the file, or at least its head)."""
    data = bytes(data)
    if len(data) < 4:
        raise ImageError(Reason.TRUNCATED_HEADER, f"{len(data)} bytes is too short for a header")
    magic = int.from_bytes(data[:4], "little")
    if magic != MAGIC:
        raise ImageError(Reason.BAD_MAGIC, f"magic 0x{magic:08X}, expected 0x{MAGIC:08X}", offset=0)
    if len(data) < BASE_HEADER_LENGTH:
        raise ImageError(
            Reason.TRUNCATED_HEADER,
            f"{len(data)} bytes is too short for the {BASE_HEADER_LENGTH}-byte header",
        )
    values: dict[str, object] = {}
    rest = data
    for f in HEADER_LAYOUT:
        if f.present_if is None:
            values[f.name], rest = _read_field(f, rest)
    if values["header_version"] != HEADER_VERSION:
        raise ImageError(
            Reason.BAD_HEADER_VERSION,
            f"header version 0x{values['header_version']:04X}, expected 0x{HEADER_VERSION:04X}",
            offset=HEADER_OFFSETS["header_version"],
        )
    fc = int(values["field_control"])  # type: ignore[call-overload]
    if fc & ~FIELD_CONTROL_KNOWN:
        raise ImageError(
            Reason.BAD_FIELD_CONTROL,
            f"field control 0x{fc:04X} has reserved bits set",
            offset=HEADER_OFFSETS["field_control"],
        )
    implied = implied_header_length(fc)
    hlen = int(values["header_length"])  # type: ignore[call-overload]
    if hlen != implied or not BASE_HEADER_LENGTH <= hlen <= MAX_HEADER_LENGTH:
        raise ImageError(
            Reason.BAD_HEADER_LENGTH,
            f"header length {hlen}, field control 0x{fc:04X} implies {implied}",
            offset=HEADER_OFFSETS["header_length"],
        )
    if len(data) < hlen:
        raise ImageError(
            Reason.TRUNCATED_HEADER, f"{len(data)} bytes is too short for the {hlen}-byte header"
        )
    for f in HEADER_LAYOUT:
        if f.present_if is not None and fc & f.present_if:
            values[f.name], rest = _read_field(f, rest)
    header = OtaHeader(**values)  # type: ignore[arg-type]
    rng = header.hardware_range
    if rng is not None and rng[0] > rng[1]:
        raise ImageError(
            Reason.BAD_HARDWARE_RANGE,
            f"minimum hardware version 0x{rng[0]:04X} > maximum 0x{rng[1]:04X}",
        )
    return header


# --------------------------------------------------------------------------------------------
# Sub-elements and the parsed image.


@dataclass(frozen=True)
class SubElement:
    tag: int
    offset: int  # file offset of the element's tag
    data: bytes

    @property
    def length(self) -> int:
        return len(self.data)

    @property
    def data_offset(self) -> int:
        return self.offset + ELEMENT_HEADER_LENGTH

    @property
    def end(self) -> int:
        return self.data_offset + len(self.data)

    @property
    def name(self) -> str:
        return tag_name(self.tag)


@dataclass(frozen=True)
class Signature:
    suite: Suite
    signer: t.EUI64  # as stored in the file (little-endian on the wire)
    r: int
    s: int
    rs_offset: int  # file offset of r: the signed digest covers data[:rs_offset]


@dataclass(frozen=True)
class OtaImage:
    header: OtaHeader
    elements: tuple[SubElement, ...]
    raw: bytes = dataclasses.field(repr=False)

    def find(self, tag: int) -> SubElement | None:
        for e in self.elements:
            if e.tag == tag:
                return e
        return None

    @property
    def upgrade_image(self) -> SubElement:
        e = self.find(Tag.UPGRADE_IMAGE)
        assert e is not None  # the parser guarantees it
        return e

    @property
    def payload(self) -> bytes:
        return self.upgrade_image.data

    @property
    def suite(self) -> Suite | None:
        for e in self.elements:
            if e.tag in _SUITE_OF_TAG:
                return _SUITE_OF_TAG[e.tag]
        return None

    @property
    def certificate(self) -> bytes | None:
        suite = self.suite
        if suite is None:
            return None
        e = self.find(suite.certificate_tag)
        return None if e is None else e.data

    @property
    def signature(self) -> Signature | None:
        suite = self.suite
        if suite is None:
            return None
        e = self.find(suite.signature_tag)
        if e is None:
            return None
        n = suite.scalar_length
        signer, _ = t.EUI64.deserialize(e.data[:8])
        return Signature(
            suite=suite,
            signer=signer,
            r=int.from_bytes(e.data[8 : 8 + n], "big"),
            s=int.from_bytes(e.data[8 + n : 8 + 2 * n], "big"),
            rs_offset=e.data_offset + 8,
        )

    @property
    def integrity_code(self) -> SubElement | None:
        return self.find(Tag.INTEGRITY_CODE)


def _check_structure(elements: list[SubElement], allow_unsigned: bool) -> None:
    seen: dict[int, SubElement] = {}
    for e in elements:
        if e.tag in seen:
            raise ImageError(
                Reason.DUPLICATE_TAG,
                f"{e.name} at offset {e.offset} repeats the element at {seen[e.tag].offset}",
                offset=e.offset,
            )
        seen[e.tag] = e
    image = seen.get(Tag.UPGRADE_IMAGE)
    if image is None:
        raise ImageError(Reason.NO_UPGRADE_IMAGE, "no upgrade image element")
    if image.length == 0:
        raise ImageError(
            Reason.NO_UPGRADE_IMAGE, "the upgrade image element is empty", offset=image.offset
        )

    present = {
        s.number for s in SUITES.values() if s.signature_tag in seen or s.certificate_tag in seen
    }
    if len(present) > 1:
        raise ImageError(Reason.BOTH_SUITES, "elements of both crypto suites 1 and 2")
    if not present:
        if not allow_unsigned:
            raise ImageError(Reason.NO_SIGNATURE, "the file is not signed")
    else:
        suite = SUITES[present.pop()]
        sig = seen.get(suite.signature_tag)
        if suite.certificate_tag not in seen:
            raise ImageError(
                Reason.NO_CERTIFICATE, f"suite {suite.number} signature without its certificate"
            )
        if sig is None:
            raise ImageError(
                Reason.NO_SIGNATURE, f"suite {suite.number} certificate without a signature"
            )
        if elements[-1] is not sig:
            raise ImageError(
                Reason.SIGNATURE_NOT_LAST,
                f"the signature element at offset {sig.offset} is not the last element",
                offset=sig.offset,
            )

    ic = seen.get(Tag.INTEGRITY_CODE)
    if ic is not None:
        idx = elements.index(ic)
        after = elements[idx + 1 :]
        ok = not after or (
            len(after) == 1 and after[0].tag in (Tag.SIGNATURE_SUITE1, Tag.SIGNATURE_SUITE2)
        )
        if not ok:
            raise ImageError(
                Reason.INTEGRITY_CODE_MISPLACED,
                "the integrity code must be the last element, or be followed only by the signature",
                offset=ic.offset,
            )


def parse_elements(data: bytes, start: int) -> list[SubElement]:
    """Split ``data[start:]`` into sub-elements that must fill it exactly."""
    elements: list[SubElement] = []
    pos, end = start, len(data)
    while pos < end:
        if end - pos < ELEMENT_HEADER_LENGTH:
            raise ImageError(
                Reason.TRUNCATED_ELEMENT,
                f"{end - pos} trailing bytes at offset {pos} cannot hold an element header",
                offset=pos,
            )
        tag, length = struct.unpack_from("<HI", data, pos)
        if tag not in Tag._value2member_map_ and tag < MANUFACTURER_TAG_MIN:
            raise ImageError(
                Reason.UNKNOWN_TAG, f"unknown tag 0x{tag:04X} at offset {pos}", offset=pos
            )
        body = pos + ELEMENT_HEADER_LENGTH
        if length > end - body:
            raise ImageError(
                Reason.TRUNCATED_ELEMENT,
                f"{tag_name(tag)} at offset {pos} claims {length} bytes, {end - body} remain",
                offset=pos,
            )
        fixed = FIXED_ELEMENT_LENGTHS.get(tag)
        if fixed is not None and length != fixed:
            raise ImageError(
                Reason.BAD_ELEMENT_LENGTH,
                f"{tag_name(tag)} at offset {pos} is {length} bytes, must be {fixed}",
                offset=pos,
            )
        elements.append(SubElement(tag=tag, offset=pos, data=data[body : body + length]))
        pos = body + length
    return elements


def parse_image(data: bytes | bytearray | memoryview, *, allow_unsigned: bool = False) -> OtaImage:
    """Strictly parse a whole OTA file. Returns the image or raises :class:`ImageError`."""
    raw = bytes(data)
    header = parse_header(raw)
    if header.total_image_size != len(raw):
        raise ImageError(
            Reason.SIZE_MISMATCH,
            f"header says {header.total_image_size} bytes, the file has {len(raw)}",
            offset=HEADER_OFFSETS["total_image_size"],
        )
    elements = parse_elements(raw, header.header_length)
    _check_structure(elements, allow_unsigned)
    return OtaImage(header=header, elements=tuple(elements), raw=raw)


# --------------------------------------------------------------------------------------------
# Building.


def encode_element(tag: int, data: bytes) -> bytes:
    return struct.pack("<HI", tag, len(data)) + bytes(data)


def assemble(header: OtaHeader, elements: Iterable[tuple[int, bytes]]) -> bytes:
    """Serialise a header and raw ``(tag, data)`` elements, fixing header length and total size.

    No rule is checked: tests use this to build deliberately malformed files.
    """
    body = b"".join(encode_element(tag, data) for tag, data in elements)
    hlen = implied_header_length(header.field_control)
    header = dataclasses.replace(header, header_length=hlen, total_image_size=hlen + len(body))
    return header.serialize() + body
