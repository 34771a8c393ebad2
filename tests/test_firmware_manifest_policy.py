"""The manifest element (0xF000) and the update policy."""

from __future__ import annotations

import struct
import zlib

import pytest

from sep.firmware.errors import ImageError, Reason
from sep.firmware.format import OtaHeader, Tag, assemble, parse_ieee, parse_image
from sep.firmware.manifest import (
    MANIFEST_TAG,
    MAX_BUILD_ID,
    MAX_NOTES,
    ImageKind,
    Manifest,
    check_manifest,
    decode_manifest,
    read_manifest,
)
from sep.firmware.policy import (
    APPLICATION_IMAGE_TYPE,
    METROLOGY_IMAGE_TYPE,
    DeviceIdentity,
    check_offer,
    check_policy,
    policy_errors,
)

PAYLOAD = bytes(range(256)) * 3
MFR = 0x1234
ME = parse_ieee("00:0d:6f:00:11:22:33:44")


def manifest(**kw: object) -> Manifest:
    args: dict[str, object] = {"version": 0x00010002, "build_id": "g1234abc", "notes": "Fixes ⚡"}
    args.update(kw)
    return Manifest.for_payload(PAYLOAD, **args)  # type: ignore[arg-type]


def image_with(m: Manifest | bytes, *, payload: bytes = PAYLOAD, **hkw: object) -> bytes:
    args: dict[str, object] = {
        "manufacturer_code": MFR,
        "image_type": APPLICATION_IMAGE_TYPE,
        "file_version": 0x00010002,
    }
    args.update(hkw)
    h = OtaHeader.create(**args)  # type: ignore[arg-type]
    data = m.encode() if isinstance(m, Manifest) else m
    return assemble(h, [(Tag.UPGRADE_IMAGE, payload), (MANIFEST_TAG, data)])


# ------------------------------------------------------------------------------- manifest


def test_round_trip_and_fields() -> None:
    m = manifest(kind=ImageKind.METROLOGY, hardware_range=(0x10, 0x20))
    raw = m.encode()
    assert raw[:4] == b"SEPM" and raw[4] == 1 and raw[5] == 1
    back = decode_manifest(raw)
    assert back == m
    assert back.payload_crc32 == zlib.crc32(PAYLOAD)
    assert back.payload_length == len(PAYLOAD)
    assert back.to_dict()["kind"] == "metrology"
    assert ImageKind.from_name("Application") is ImageKind.APPLICATION


def test_limits_enforced_when_encoding() -> None:
    manifest(build_id="x" * MAX_BUILD_ID, notes="n" * MAX_NOTES).encode()
    for bad in (
        {"build_id": "x" * (MAX_BUILD_ID + 1)},
        {"build_id": "tab\t"},
        {"notes": "n" * (MAX_NOTES + 1)},
    ):
        with pytest.raises(ValueError):
            manifest(**bad).encode()


def test_every_truncation_and_extension_is_bad() -> None:
    raw = manifest().encode()
    for n in range(len(raw)):
        with pytest.raises(ImageError) as info:
            decode_manifest(raw[:n])
        assert info.value.reason is Reason.BAD_MANIFEST
    for extra in (b"\x00", b"xyz"):
        with pytest.raises(ImageError):
            decode_manifest(raw + extra)


def test_field_corruptions() -> None:
    raw = manifest().encode()

    def bad(data: bytes) -> None:
        with pytest.raises(ImageError) as info:
            decode_manifest(data)
        assert info.value.reason is Reason.BAD_MANIFEST

    bad(b"SEPX" + raw[4:])
    for fmt in (0, 2, 255):
        bad(raw[:4] + bytes([fmt]) + raw[5:])
    for kind in (2, 3, 255):
        bad(raw[:5] + bytes([kind]) + raw[6:])
    bad(raw[:10] + struct.pack("<HH", 5, 4) + raw[14:])  # empty hardware range
    blen = raw[22]
    bad(raw[:22] + bytes([MAX_BUILD_ID + 1]) + raw[23:])
    bad(raw[:23] + b"\x01" + raw[24:])  # non-printable build id
    notes_off = 23 + blen + 2
    bad(raw[:notes_off] + b"\xff\xfe" + raw[notes_off + 2 :])  # invalid UTF-8


def test_check_manifest_against_file() -> None:
    img = parse_image(image_with(manifest()), allow_unsigned=True)
    m = read_manifest(img)
    assert m is not None and check_manifest(img, m) == []

    def reasons(m: Manifest, **kw: object) -> list[Reason]:
        img = parse_image(image_with(m, **kw), allow_unsigned=True)
        got = read_manifest(img)
        assert got is not None
        return [e.reason for e in check_manifest(img, got)]

    assert reasons(manifest(version=1)) == [Reason.MANIFEST_MISMATCH]
    assert reasons(manifest(hardware_range=(1, 2))) == [Reason.MANIFEST_MISMATCH]
    assert reasons(manifest(), hardware_versions=(1, 2)) == [Reason.MANIFEST_MISMATCH]
    assert reasons(manifest(hardware_range=(1, 2)), hardware_versions=(1, 2)) == []
    changed = bytearray(PAYLOAD)
    changed[100] ^= 1
    m = manifest()
    img = parse_image(image_with(m, payload=bytes(changed)), allow_unsigned=True)
    assert [e.reason for e in check_manifest(img, m)] == [Reason.BAD_CRC]
    img = parse_image(image_with(m, payload=PAYLOAD + b"x"), allow_unsigned=True)
    assert [e.reason for e in check_manifest(img, m)] == [Reason.MANIFEST_MISMATCH, Reason.BAD_CRC]


def test_every_single_payload_bit_flip_breaks_the_crc() -> None:
    m = manifest()
    for bit in range(len(PAYLOAD) * 8):
        changed = bytearray(PAYLOAD)
        changed[bit // 8] ^= 1 << (bit % 8)
        img = parse_image(image_with(m, payload=bytes(changed)), allow_unsigned=True)
        assert [e.reason for e in check_manifest(img, m)] == [Reason.BAD_CRC]


def test_no_manifest_reads_none() -> None:
    h = OtaHeader.create(manufacturer_code=1, image_type=1, file_version=1)
    img = parse_image(assemble(h, [(Tag.UPGRADE_IMAGE, b"x")]), allow_unsigned=True)
    assert read_manifest(img) is None


# --------------------------------------------------------------------------------- policy


DEVICE = DeviceIdentity(
    manufacturer_code=MFR,
    image_type=APPLICATION_IMAGE_TYPE,
    current_file_version=0x00010001,
    hardware_version=0x0105,
    ieee=ME,
)


def header(**kw: object) -> OtaHeader:
    args: dict[str, object] = {
        "manufacturer_code": MFR,
        "image_type": APPLICATION_IMAGE_TYPE,
        "file_version": 0x00010002,
    }
    args.update(kw)
    return OtaHeader.create(**args)  # type: ignore[arg-type]


def reasons(
    h: OtaHeader, device: DeviceIdentity = DEVICE, m: Manifest | None = None
) -> list[Reason]:
    return [e.reason for e in policy_errors(h, device, m)]


def test_acceptable_image() -> None:
    assert reasons(header()) == []
    check_policy(header(), DEVICE, manifest())
    check_policy(header(hardware_versions=(0x0100, 0x01FF), upgrade_file_destination=ME), DEVICE)


def test_downgrade_and_reinstall_refused_for_every_older_version() -> None:
    for v in list(range(0, 0x00010002))[::997] + [0x00010000, 0x00010001]:
        assert reasons(header(file_version=v)) == [Reason.DOWNGRADE]
    with pytest.raises(ImageError) as info:
        check_policy(header(file_version=DEVICE.current_file_version), DEVICE)
    assert info.value.reason is Reason.DOWNGRADE
    assert reasons(header(file_version=0xFFFFFFFF)) == []


def test_metrology_always_refused() -> None:
    metrology_device = DeviceIdentity(
        manufacturer_code=MFR, image_type=METROLOGY_IMAGE_TYPE, current_file_version=0
    )
    # by image type, even on a device whose own image type it is
    assert reasons(header(image_type=METROLOGY_IMAGE_TYPE), metrology_device) == [
        Reason.METROLOGY_REFUSED
    ]
    assert Reason.METROLOGY_REFUSED in reasons(header(image_type=METROLOGY_IMAGE_TYPE))
    # by manifest kind, whatever the image type says
    assert reasons(header(), m=manifest(kind=ImageKind.METROLOGY)) == [Reason.METROLOGY_REFUSED]
    with pytest.raises(ImageError) as info:
        check_policy(header(), DEVICE, manifest(kind=ImageKind.METROLOGY))
    assert info.value.reason is Reason.METROLOGY_REFUSED


def test_manufacturer_and_image_type() -> None:
    assert reasons(header(manufacturer_code=MFR + 1)) == [Reason.WRONG_MANUFACTURER]
    assert reasons(header(image_type=0x0042)) == [Reason.WRONG_IMAGE_TYPE]


def test_hardware_range() -> None:
    for lo, hi, ok in [
        (0x0105, 0x0105, True),
        (0x0000, 0xFFFF, True),
        (0x0106, 0x0200, False),
        (0x0000, 0x0104, False),
    ]:
        got = reasons(header(hardware_versions=(lo, hi)))
        assert got == ([] if ok else [Reason.HARDWARE_MISMATCH])
    unknown = DeviceIdentity(manufacturer_code=MFR, image_type=1, current_file_version=0)
    assert reasons(header(hardware_versions=(0, 0xFFFF)), unknown) == [Reason.HARDWARE_MISMATCH]
    assert reasons(header(), unknown) == []
    assert reasons(header(), m=manifest(hardware_range=(0x0200, 0x0300))) == [
        Reason.HARDWARE_MISMATCH
    ]


def test_destination() -> None:
    other = parse_ieee("00:0d:6f:00:11:22:33:45")
    assert reasons(header(upgrade_file_destination=other)) == [Reason.WRONG_DESTINATION]
    anonymous = DeviceIdentity(manufacturer_code=MFR, image_type=1, current_file_version=0)
    assert reasons(header(upgrade_file_destination=ME), anonymous) == [Reason.WRONG_DESTINATION]


def test_all_failures_collected_and_first_raised() -> None:
    h = header(
        manufacturer_code=1,
        image_type=METROLOGY_IMAGE_TYPE,
        file_version=0,
        hardware_versions=(0, 1),
        upgrade_file_destination=parse_ieee("0000000000000001"),
    )
    assert reasons(h) == [
        Reason.METROLOGY_REFUSED,
        Reason.WRONG_MANUFACTURER,
        Reason.WRONG_IMAGE_TYPE,
        Reason.HARDWARE_MISMATCH,
        Reason.WRONG_DESTINATION,
        Reason.DOWNGRADE,
    ]
    with pytest.raises(ImageError) as info:
        check_policy(h, DEVICE)
    assert info.value.reason is Reason.METROLOGY_REFUSED


def test_offer_check_before_download() -> None:
    check_offer(
        DEVICE, manufacturer_code=MFR, image_type=APPLICATION_IMAGE_TYPE, file_version=0x00020000
    )
    with pytest.raises(ImageError) as info:
        check_offer(
            DEVICE, manufacturer_code=MFR, image_type=APPLICATION_IMAGE_TYPE, file_version=1
        )
    assert info.value.reason is Reason.DOWNGRADE
    with pytest.raises(ImageError) as info:
        check_offer(
            DEVICE, manufacturer_code=MFR, image_type=METROLOGY_IMAGE_TYPE, file_version=0xFFFF0000
        )
    assert info.value.reason is Reason.METROLOGY_REFUSED
