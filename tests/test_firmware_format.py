"""The strict OTA file parser and builder: every structural rule, one by one and exhaustively.

No cryptography here: the structural checks run before any signature check, so signature and
certificate elements are filled with placeholder bytes of the right length.
"""

from __future__ import annotations

import itertools
import struct

import pytest
import zigpy.types as t

from sep.firmware.errors import ImageError, Reason
from sep.firmware.format import (
    BASE_HEADER_LENGTH,
    FIXED_ELEMENT_LENGTHS,
    HEADER_OFFSETS,
    MAGIC,
    FieldControl,
    OtaHeader,
    Tag,
    assemble,
    encode_element,
    ieee_from_be,
    ieee_to_be,
    implied_header_length,
    parse_header,
    parse_ieee,
    parse_image,
    tag_name,
)

SIG1 = (Tag.SIGNATURE_SUITE1, bytes(range(50)))
CERT1 = (Tag.CERTIFICATE_SUITE1, bytes(48))
SIG2 = (Tag.SIGNATURE_SUITE2, bytes(80))
CERT2 = (Tag.CERTIFICATE_SUITE2, bytes(74))
IMG = (Tag.UPGRADE_IMAGE, b"firmware payload")
IC = (Tag.INTEGRITY_CODE, bytes(16))
PIC = (Tag.PICTURE, b"\x89PNG")
MFR = (0xF123, b"vendor")


def header(**kw: object) -> OtaHeader:
    args: dict[str, object] = {"manufacturer_code": 0x1234, "image_type": 1, "file_version": 7}
    args.update(kw)
    return OtaHeader.create(**args)  # type: ignore[arg-type]


def image(*elements: tuple[int, bytes], **kw: object) -> bytes:
    return assemble(header(**kw), elements)


def reason_of(data: bytes, **kw: bool) -> Reason:
    with pytest.raises(ImageError) as info:
        parse_image(data, **kw)
    return info.value.reason


GOOD = image(IMG, CERT1, IC, SIG1)


# ---------------------------------------------------------------------------------- header


@pytest.mark.parametrize("bits", range(8))
def test_header_round_trip_for_every_field_control_combination(bits: int) -> None:
    kw: dict[str, object] = {}
    if bits & 1:
        kw["security_credential_version"] = 1
    if bits & 2:
        kw["upgrade_file_destination"] = parse_ieee("00:0d:6f:00:01:02:03:04")
    if bits & 4:
        kw["hardware_versions"] = (0x0100, 0x01FF)
    h = header(header_string="SEP test image", **kw)
    assert h.field_control == bits
    assert (
        h.header_length
        == implied_header_length(bits)
        == BASE_HEADER_LENGTH
        + [
            0,
            1,
            8,
            9,
            4,
            5,
            12,
            13,
        ][bits]
    )
    raw = assemble(h, [IMG, CERT2, SIG2])
    parsed = parse_image(raw)
    assert parsed.header.serialize() == raw[: h.header_length]
    assert parsed.header.header_string.text() == "SEP test image"
    assert parsed.header.total_image_size == len(raw)
    assert parsed.payload == IMG[1]
    assert parsed.suite is not None and parsed.suite.number == 2


def test_good_image_parses_and_exposes_elements() -> None:
    parsed = parse_image(GOOD)
    assert [e.tag for e in parsed.elements] == [0, 2, 3, 1]
    assert parsed.suite is not None and parsed.suite.number == 1
    sig = parsed.signature
    assert sig is not None
    assert sig.rs_offset == len(GOOD) - 42
    assert sig.r == int.from_bytes(bytes(range(8, 29)), "big")
    assert parsed.certificate == bytes(48)
    assert parsed.integrity_code is not None
    assert parsed.elements[-1].end == len(GOOD)


def test_short_inputs() -> None:
    for n in range(0, 4):
        assert reason_of(GOOD[:n]) is Reason.TRUNCATED_HEADER
    for n in range(4, BASE_HEADER_LENGTH):
        assert reason_of(GOOD[:n]) is Reason.TRUNCATED_HEADER


def test_every_wrong_magic_byte_value() -> None:
    for i in range(4):
        for v in range(256):
            if v == GOOD[i]:
                continue
            bad = GOOD[:i] + bytes([v]) + GOOD[i + 1 :]
            assert reason_of(bad) is Reason.BAD_MAGIC


def test_header_version() -> None:
    off = HEADER_OFFSETS["header_version"]
    for v in (0x0000, 0x0001, 0x0101, 0x0200, 0xFFFF, 0x0001 << 8 | 1):
        bad = GOOD[:off] + struct.pack("<H", v) + GOOD[off + 2 :]
        assert reason_of(bad) is Reason.BAD_HEADER_VERSION


def test_reserved_field_control_bits() -> None:
    off = HEADER_OFFSETS["field_control"]
    for bit in range(3, 16):
        bad = GOOD[:off] + struct.pack("<H", 1 << bit) + GOOD[off + 2 :]
        assert reason_of(bad) is Reason.BAD_FIELD_CONTROL


@pytest.mark.parametrize("bits", range(8))
def test_header_length_every_value(bits: int) -> None:
    """All 65,536 header-length values: only the implied one parses."""
    kw: dict[str, object] = {}
    if bits & 1:
        kw["security_credential_version"] = 3
    if bits & 2:
        kw["upgrade_file_destination"] = parse_ieee("0011223344556677")
    if bits & 4:
        kw["hardware_versions"] = (1, 2)
    raw = image(IMG, CERT1, SIG1, **kw)
    off = HEADER_OFFSETS["header_length"]
    head, tail = raw[:off], raw[off + 2 :]
    accepted = []
    for v in range(0x10000):
        try:
            parse_image(head + struct.pack("<H", v) + tail)
        except ImageError as exc:
            assert exc.reason is Reason.BAD_HEADER_LENGTH
        else:
            accepted.append(v)
    assert accepted == [implied_header_length(bits)]


def test_field_control_flip_changes_implied_length() -> None:
    off = HEADER_OFFSETS["field_control"]
    for fc in range(1, 8):
        bad = GOOD[:off] + struct.pack("<H", fc) + GOOD[off + 2 :]
        assert reason_of(bad) is Reason.BAD_HEADER_LENGTH


def test_hardware_range_must_not_be_empty() -> None:
    assert reason_of(image(IMG, CERT1, SIG1, hardware_versions=(3, 2))) is Reason.BAD_HARDWARE_RANGE
    parse_image(image(IMG, CERT1, SIG1, hardware_versions=(2, 2)))


def test_total_size_every_wrong_value_near_and_far() -> None:
    off = HEADER_OFFSETS["total_image_size"]
    values = set(range(0, len(GOOD) + 300)) | {0xFFFFFFFF, 0x80000000, len(GOOD) << 8}
    values.discard(len(GOOD))
    for v in values:
        bad = GOOD[:off] + struct.pack("<I", v) + GOOD[off + 4 :]
        assert reason_of(bad) is Reason.SIZE_MISMATCH, v


def test_every_truncation_and_appended_bytes() -> None:
    for n in range(len(GOOD)):
        with pytest.raises(ImageError):
            parse_image(GOOD[:n])
    for extra in (b"\x00", b"\xff" * 5, b"\x00" * 6, encode_element(0xF001, b"")):
        assert reason_of(GOOD + extra) is Reason.SIZE_MISMATCH


def test_appended_bytes_with_total_size_fixed_up() -> None:
    """The size field alone cannot smuggle data in: the elements must fill the file exactly."""
    off = HEADER_OFFSETS["total_image_size"]
    for extra in range(1, 12):
        data = GOOD + b"\xaa" * extra
        data = data[:off] + struct.pack("<I", len(data)) + data[off + 4 :]
        assert reason_of(data) in (Reason.TRUNCATED_ELEMENT, Reason.UNKNOWN_TAG)


# ---------------------------------------------------------------------------- sub-elements


def test_element_length_claims_past_end() -> None:
    raw = bytearray(GOOD)
    first = BASE_HEADER_LENGTH
    for claim in (len(IMG[1]) + 1, 0xFFFFFFFF, len(GOOD)):
        raw[first + 2 : first + 6] = struct.pack("<I", claim)
        r = reason_of(bytes(raw))
        assert r in (Reason.TRUNCATED_ELEMENT, Reason.UNKNOWN_TAG, Reason.BAD_ELEMENT_LENGTH)
    # the last element claims one byte more than there is
    raw = bytearray(GOOD)
    sig_off = len(GOOD) - 56
    raw[sig_off + 2 : sig_off + 6] = struct.pack("<I", 51)
    assert reason_of(bytes(raw)) is Reason.TRUNCATED_ELEMENT


@pytest.mark.parametrize("tag,length", sorted(FIXED_ELEMENT_LENGTHS.items()))
def test_fixed_length_elements(tag: int, length: int) -> None:
    for wrong in (0, 1, length - 1, length + 1, 2 * length):
        elements = [IMG, (tag, bytes(wrong))]
        assert reason_of(assemble(header(), elements), allow_unsigned=True) is (
            Reason.BAD_ELEMENT_LENGTH
        )


def test_every_unknown_tag_rejected_and_every_manufacturer_tag_accepted() -> None:
    base = header()
    for tag in range(0x10000):
        raw = assemble(base, [IMG, (tag, b"xy"), CERT1, SIG1])
        if tag in (0, 1, 2):
            assert reason_of(raw) in (Reason.DUPLICATE_TAG, Reason.BAD_ELEMENT_LENGTH)
        elif tag in (3, 5, 6):
            assert reason_of(raw) is Reason.BAD_ELEMENT_LENGTH
        elif tag == 4 or tag >= 0xF000:
            parsed = parse_image(raw)
            assert parsed.elements[1].tag == tag
        else:
            assert reason_of(raw) is Reason.UNKNOWN_TAG


def test_duplicates_of_every_tag() -> None:
    for el in (IMG, PIC, MFR, IC, CERT1):
        raw = assemble(
            header(), [IMG, el, el, CERT1, SIG1] if el is not IMG else [IMG, IMG, CERT1, SIG1]
        )
        assert reason_of(raw) is Reason.DUPLICATE_TAG
    assert reason_of(assemble(header(), [IMG, CERT1, SIG1, SIG1])) is Reason.DUPLICATE_TAG


def test_upgrade_image_required_and_non_empty() -> None:
    assert reason_of(assemble(header(), [CERT1, SIG1])) is Reason.NO_UPGRADE_IMAGE
    assert reason_of(assemble(header(), [(0, b""), CERT1, SIG1])) is Reason.NO_UPGRADE_IMAGE
    assert reason_of(assemble(header(), []), allow_unsigned=True) is Reason.NO_UPGRADE_IMAGE


def test_suite_rules() -> None:
    assert reason_of(image(IMG)) is Reason.NO_SIGNATURE
    assert parse_image(image(IMG), allow_unsigned=True).suite is None
    assert reason_of(image(IMG, SIG1), allow_unsigned=True) is Reason.NO_CERTIFICATE
    assert reason_of(image(IMG, CERT1), allow_unsigned=True) is Reason.NO_SIGNATURE
    assert reason_of(image(IMG, SIG2), allow_unsigned=True) is Reason.NO_CERTIFICATE
    assert reason_of(image(IMG, CERT2), allow_unsigned=True) is Reason.NO_SIGNATURE
    # a signature with the other suite's certificate is "both suites"
    assert reason_of(image(IMG, CERT2, SIG1)) is Reason.BOTH_SUITES
    # any mixture of the two suites, in any order
    for combo in itertools.permutations([CERT1, SIG1, CERT2, SIG2], 3):
        if {e[0] for e in combo} & {1, 2} and {e[0] for e in combo} & {5, 6}:
            assert reason_of(image(IMG, *combo), allow_unsigned=True) is Reason.BOTH_SUITES
    assert reason_of(image(IMG, CERT1, CERT2, SIG1, SIG2)) is Reason.BOTH_SUITES


def test_signature_must_be_last() -> None:
    for tail in (PIC, MFR, CERT1, IC, IMG):
        elements = [e for e in (IMG, CERT1) if e is not tail]
        raw = image(*elements, SIG1, tail)
        assert reason_of(raw) is Reason.SIGNATURE_NOT_LAST


def test_integrity_code_rule() -> None:
    parse_image(image(IMG, CERT1, IC, SIG1))
    parse_image(image(IMG, IC), allow_unsigned=True)
    parse_image(image(IMG, MFR, PIC, IC), allow_unsigned=True)
    assert reason_of(image(IC, IMG), allow_unsigned=True) is Reason.INTEGRITY_CODE_MISPLACED
    assert reason_of(image(IMG, IC, CERT1, SIG1)) is Reason.INTEGRITY_CODE_MISPLACED
    assert reason_of(image(IMG, IC, MFR, CERT1, SIG1)) is Reason.INTEGRITY_CODE_MISPLACED
    assert reason_of(image(IC, IMG, CERT1, SIG1)) is Reason.INTEGRITY_CODE_MISPLACED


def test_every_permutation_of_a_full_element_set() -> None:
    """Exactly the permutations that obey the rules parse."""
    els = [IMG, MFR, CERT1, IC, SIG1]
    accepted = 0
    for perm in itertools.permutations(els):
        raw = image(*perm)
        ok = perm[-1] is SIG1 and perm[-2] is IC
        if ok:
            parse_image(raw)
            accepted += 1
        else:
            assert reason_of(raw) in (Reason.SIGNATURE_NOT_LAST, Reason.INTEGRITY_CODE_MISPLACED)
    assert accepted == 6  # 3! orders of IMG, MFR, CERT1


# ------------------------------------------------------------------------------- helpers


def test_ieee_byte_orders() -> None:
    ieee = parse_ieee("00:0d:6f:00:0a:bc:de:f0")
    assert ieee == parse_ieee("000D6F000ABCDEF0") == parse_ieee("0x000d6f000abcdef0")
    assert ieee.serialize() == bytes.fromhex("f0debc0a006f0d00")  # little-endian on the wire
    assert ieee_to_be(ieee) == bytes.fromhex("000d6f000abcdef0")
    assert ieee_from_be(ieee_to_be(ieee)) == ieee
    assert isinstance(ieee, t.EUI64)
    with pytest.raises(ValueError):
        parse_ieee("00:11")


def test_tag_names() -> None:
    assert tag_name(0) == "UPGRADE_IMAGE"
    assert tag_name(0xF000) == "MANIFEST"
    assert tag_name(0xF001) == "MANUFACTURER_0xF001"
    assert tag_name(0x0100) == "UNKNOWN_0x0100"


def test_parse_header_alone_and_field_control_enum() -> None:
    h = parse_header(GOOD)
    assert h.magic == MAGIC and h.field_control == 0
    assert FieldControl.HARDWARE_VERSIONS == 4
    assert h.to_dict()["manufacturer_code"] == "0x1234"
