"""The OTA file parser's reports: where each fault is, what it is called, what describe shows.

Independent truth: the OTA header layout of the ZCL spec (11.4.2: identifier @0, header version
@4, header length @6, field control @8, manufacturer @10, image type @12, file version @14,
stack version @18, header string @20..51, total image size @52, then the optional fields; a
sub-element is a 2-byte tag and a 4-byte length), written here as literal numbers rather than
taken from our HEADER_OFFSETS table, and zigpy's ``zigpy.ota.image`` reading the same bytes.
"""

from __future__ import annotations

import struct

import pytest
import zigpy.types as t
from zigpy.ota.image import OTAImage

from sep.firmware.errors import ImageError, Reason
from sep.firmware.format import (
    OtaHeader,
    Tag,
    assemble,
    parse_header,
    parse_ieee,
    parse_image,
)

IMG = (Tag.UPGRADE_IMAGE, b"firmware payload")  # 16 bytes
CERT1 = (Tag.CERTIFICATE_SUITE1, bytes(48))
SIG1 = (Tag.SIGNATURE_SUITE1, bytes(range(50)))
IC = (Tag.INTEGRITY_CODE, bytes(16))
PIC = (Tag.PICTURE, b"\x89PNG")
# spec offsets (ZCL 11.4.2), no optional fields: the first element starts at 56
AT_VERSION, AT_HLEN, AT_FC, AT_SIZE, FIRST = 4, 6, 8, 52, 56


def head(**kw: object) -> OtaHeader:
    args: dict[str, object] = {"manufacturer_code": 0x1234, "image_type": 1, "file_version": 7}
    args.update(kw)
    return OtaHeader.create(**args)  # type: ignore[arg-type]


def fault(data: bytes, **kw: bool) -> ImageError:
    with pytest.raises(ImageError) as info:
        parse_image(data, **kw)
    assert isinstance(info.value.message, str) and info.value.message  # a human reason too
    return info.value


def put(data: bytes, at: int, fmt: str, value: int) -> bytes:
    return data[:at] + struct.pack(fmt, value) + data[at + struct.calcsize(fmt):]


GOOD = assemble(head(), [IMG, CERT1, IC, SIG1])


def test_header_faults_name_the_field_offset() -> None:
    e = fault(put(GOOD, 0, "<I", 0x0BEEF11F))
    assert (e.reason, e.offset) == (Reason.BAD_MAGIC, 0)
    e = fault(put(GOOD, AT_VERSION, "<H", 0x0200))
    assert (e.reason, e.offset) == (Reason.BAD_HEADER_VERSION, AT_VERSION)
    e = fault(put(GOOD, AT_FC, "<H", 0x0008))
    assert (e.reason, e.offset) == (Reason.BAD_FIELD_CONTROL, AT_FC)
    e = fault(put(GOOD, AT_HLEN, "<H", 57))
    assert (e.reason, e.offset) == (Reason.BAD_HEADER_LENGTH, AT_HLEN)
    e = fault(put(GOOD, AT_SIZE, "<I", len(GOOD) + 1))
    assert (e.reason, e.offset) == (Reason.SIZE_MISMATCH, AT_SIZE)
    for n in (0, 3, 4, 55):
        assert fault(GOOD[:n]).reason is Reason.TRUNCATED_HEADER
    e = fault(assemble(head(hardware_versions=(5, 4)), [IMG, CERT1, SIG1]))
    assert e.reason is Reason.BAD_HARDWARE_RANGE and "0x0005" in e.message


def test_header_that_claims_optional_fields_the_file_does_not_have() -> None:
    """Field control says 13 more bytes of header, but the file ends at byte 60."""
    data = assemble(head(), [])[:56]
    data = put(put(data, AT_FC, "<H", 0x0007), AT_HLEN, "<H", 69) + bytes(4)
    with pytest.raises(ImageError) as info:
        parse_header(data)
    assert info.value.reason is Reason.TRUNCATED_HEADER
    assert parse_header(data + bytes(9)).header_length == 69


def test_element_faults_name_the_element_offset() -> None:
    second = FIRST + 6 + len(IMG[1])  # the element after the upgrade image
    e = fault(assemble(head(), [IMG, IMG, CERT1, SIG1]))
    assert (e.reason, e.offset) == (Reason.DUPLICATE_TAG, second)
    assert str(FIRST) in e.message and str(second) in e.message
    e = fault(assemble(head(), [IMG, (0x0100, b"??"), CERT1, SIG1]))
    assert (e.reason, e.offset) == (Reason.UNKNOWN_TAG, second) and "0x0100" in e.message
    e = fault(assemble(head(), [IMG, (Tag.INTEGRITY_CODE, bytes(15)), CERT1, SIG1]))
    assert (e.reason, e.offset) == (Reason.BAD_ELEMENT_LENGTH, second)
    e = fault(assemble(head(), [IMG, PIC, SIG1, CERT1]))
    sig_at = second + 6 + len(PIC[1])
    assert (e.reason, e.offset) == (Reason.SIGNATURE_NOT_LAST, sig_at)
    e = fault(assemble(head(), [IMG, IC, PIC, CERT1, SIG1]))
    assert (e.reason, e.offset) == (Reason.INTEGRITY_CODE_MISPLACED, second)
    e = fault(assemble(head(), [(Tag.UPGRADE_IMAGE, b""), CERT1, SIG1]))
    assert (e.reason, e.offset) == (Reason.NO_UPGRADE_IMAGE, FIRST)
    # the last element claims one byte more than the file has
    truncated = put(GOOD, len(GOOD) - 56 + 2, "<I", 51)
    e = fault(truncated)
    assert (e.reason, e.offset) == (Reason.TRUNCATED_ELEMENT, len(GOOD) - 56)
    # 1..5 bytes after the last element cannot hold an element header
    for extra in range(1, 6):
        data = put(GOOD + bytes(extra), AT_SIZE, "<I", len(GOOD) + extra)
        e = fault(data)
        assert (e.reason, e.offset) == (Reason.TRUNCATED_ELEMENT, len(GOOD)), extra


def test_an_element_that_exactly_fills_the_file_is_not_truncated() -> None:
    for size in (1, 2, 255, 4096):
        parsed = parse_image(assemble(head(), [(Tag.UPGRADE_IMAGE, bytes(size)), CERT1, SIG1]))
        assert parsed.payload == bytes(size)
    with pytest.raises(ImageError):
        parse_image(assemble(head(), [(Tag.UPGRADE_IMAGE, bytes(10))])[:-1])


def test_suite_faults_say_why() -> None:
    assert fault(assemble(head(), [IMG])).reason is Reason.NO_SIGNATURE
    assert fault(assemble(head(), [IMG, SIG1])).reason is Reason.NO_CERTIFICATE
    assert fault(assemble(head(), [IMG, CERT1])).reason is Reason.NO_SIGNATURE
    assert fault(assemble(head(), [IMG, CERT1, (Tag.SIGNATURE_SUITE2, bytes(80))])).reason is (
        Reason.BOTH_SUITES
    )


def test_describe_shows_every_header_field_as_zigpy_reads_it() -> None:
    dest = parse_ieee("00:0d:6f:00:0a:bc:de:f0")
    data = assemble(
        head(
            stack_version=0x0003, header_string="SEP \u00e9t\u00e9 image",
            security_credential_version=2, upgrade_file_destination=dest,
            hardware_versions=(0x0102, 0x0304),
        ),
        [IMG, CERT1, IC, SIG1],
    )
    theirs, rest = OTAImage.deserialize(data)
    assert rest == b""
    z = theirs.header
    d = parse_image(data).header.to_dict()
    assert d == {
        "magic": f"0x{z.upgrade_file_id:08X}",
        "header_version": f"0x{z.header_version:04X}",
        "header_length": z.header_length,
        "field_control": f"0x{int(z.field_control):04X}",
        "manufacturer_code": f"0x{z.manufacturer_id:04X}",
        "image_type": f"0x{z.image_type:04X}",
        "file_version": f"0x{z.file_version:08X}",
        "stack_version": f"0x{z.stack_version:04X}",
        "header_string": bytes(z.header_string).rstrip(b"\x00").decode("utf-8"),
        "total_image_size": z.image_size,
        "security_credential_version": z.security_credential_version,
        "upgrade_file_destination": str(z.upgrade_file_destination),
        "minimum_hardware_version": f"0x{z.minimum_hardware_version:04X}",
        "maximum_hardware_version": f"0x{z.maximum_hardware_version:04X}",
    }
    assert d["header_string"] == "SEP \u00e9t\u00e9 image"
    assert d["upgrade_file_destination"] == "00:0d:6f:00:0a:bc:de:f0"
    plain = parse_image(GOOD).header.to_dict()
    assert not {"security_credential_version", "upgrade_file_destination",
                "minimum_hardware_version", "maximum_hardware_version"} & set(plain)


def test_a_header_string_that_is_not_utf8_is_shown_not_fatal() -> None:
    data = assemble(head(header_string=b"\xff\xfeimage"), [IMG, CERT1, SIG1])
    h = parse_image(data).header
    assert h.to_dict()["header_string"] == "\ufffd\ufffdimage"
    with pytest.raises(ValueError):
        head(header_string="x" * 33)
    assert bytes(head(header_string="x" * 32).header_string) == b"x" * 32


def test_header_create_sets_field_control_per_optional_field() -> None:
    # (kwargs, spec field-control bits, spec header length)
    for kw, bits, length in (
        ({}, 0, 56),
        ({"security_credential_version": 0}, 1, 57),
        ({"upgrade_file_destination": t.EUI64(bytes(8))}, 2, 64),
        ({"hardware_versions": (0, 0)}, 4, 60),
        ({"security_credential_version": 1, "hardware_versions": (1, 1)}, 5, 61),
    ):
        h = head(**kw)
        assert (h.field_control, h.header_length) == (bits, length), kw
        raw = h.serialize()
        assert len(raw) == length and struct.unpack_from("<HH", raw, AT_HLEN) == (length, bits)
    with pytest.raises(ValueError):  # says the field is there but has no value
        OtaHeader(manufacturer_code=1, image_type=1, file_version=1, field_control=1,
                  header_length=57).serialize()


def test_ieee_spellings() -> None:
    want = t.EUI64.convert("00:0d:6f:00:0a:bc:de:f0")  # zigpy's own parser
    for text in ("00:0d:6f:00:0a:bc:de:f0", "00-0D-6F-00-0A-BC-DE-F0", " 000d6f000abcdef0 ",
                 "0x000D6F000ABCDEF0"):
        assert parse_ieee(text) == want, text
    for bad in ("00:0d:6f:00:0a:bc:de", "00:0d:6f:00:0a:bc:de:f0:11", "zz" * 8, ""):
        with pytest.raises(ValueError):
            parse_ieee(bad)


def test_assemble_fixes_the_header_length_and_total_size() -> None:
    """A header whose length field disagrees with its field control is written consistently
    (zigpy reads the result with the header length the spec implies)."""
    stale = OtaHeader(manufacturer_code=0x1234, image_type=1, file_version=7,
                      security_credential_version=3, field_control=1, header_length=56,
                      total_image_size=5)
    data = assemble(stale, [IMG, CERT1, SIG1])
    theirs, rest = OTAImage.deserialize(data)
    assert rest == b"" and theirs.header.header_length == 57
    assert theirs.header.image_size == len(data) == 57 + 6 + 16 + 6 + 48 + 6 + 50
    assert parse_image(data).header.security_credential_version == 3
