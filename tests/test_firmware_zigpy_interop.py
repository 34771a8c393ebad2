"""An independent reader agrees: zigpy's ``zigpy.ota.image`` and our parser/builder.

Files built with zigpy's own classes parse to the same header with ours, and files built by us
deserialise with zigpy to the same fields. Where zigpy is lenient, ours is strict: a survey of
mutations shows the difference.
"""

from __future__ import annotations

import random

import zigpy.types as t
from hypothesis import given, settings
from hypothesis import strategies as st
from zigpy.ota.image import (
    ElementTagId,
    FieldControl,
    HeaderString,
    OTAImage,
    OTAImageHeader,
    SubElement,
)

from sep.firmware.errors import ImageError
from sep.firmware.format import OtaHeader, Tag, assemble, implied_header_length, parse_image

ELEMENTS = [
    (Tag.UPGRADE_IMAGE, b"\x01\x02firmware" * 7),
    (0xF000, b"SEPM manufacturer data"),
    (Tag.CERTIFICATE_SUITE1, bytes(range(48))),
    (Tag.INTEGRITY_CODE, bytes(range(100, 116))),
    (Tag.SIGNATURE_SUITE1, bytes(range(50))),
]


def zigpy_file(
    *,
    manufacturer: int,
    image_type: int,
    version: int,
    stack: int,
    text: bytes,
    credential: int | None,
    destination: t.EUI64 | None,
    hw: tuple[int, int] | None,
    elements: list[tuple[int, bytes]],
) -> bytes:
    fc = FieldControl(0)
    if credential is not None:
        fc |= FieldControl.SECURITY_CREDENTIAL_VERSION_PRESENT
    if destination is not None:
        fc |= FieldControl.DEVICE_SPECIFIC_FILE_PRESENT
    if hw is not None:
        fc |= FieldControl.HARDWARE_VERSIONS_PRESENT
    hlen = 56 + (1 if credential is not None else 0) + (8 if destination else 0) + (4 if hw else 0)
    subs = [SubElement(tag_id=ElementTagId(tag), data=data) for tag, data in elements]
    size = hlen + sum(6 + len(d) for _, d in elements)
    header = OTAImageHeader(
        upgrade_file_id=OTAImageHeader.MAGIC_VALUE,
        header_version=0x0100,
        header_length=hlen,
        field_control=fc,
        manufacturer_id=manufacturer,
        image_type=image_type,
        file_version=version,
        stack_version=stack,
        header_string=HeaderString(text.ljust(32, b"\x00")),
        image_size=size,
        security_credential_version=credential,
        upgrade_file_destination=destination,
        minimum_hardware_version=None if hw is None else hw[0],
        maximum_hardware_version=None if hw is None else hw[1],
    )
    return OTAImage(header=header, subelements=subs).serialize()


def assert_same(ours: OtaHeader, theirs: OTAImageHeader) -> None:
    assert ours.magic == theirs.upgrade_file_id
    assert ours.header_version == theirs.header_version
    assert ours.header_length == theirs.header_length
    assert ours.field_control == int(theirs.field_control)
    assert ours.manufacturer_code == theirs.manufacturer_id
    assert ours.image_type == theirs.image_type
    assert ours.file_version == theirs.file_version
    assert ours.stack_version == theirs.stack_version
    assert bytes(ours.header_string) == bytes(theirs.header_string)
    assert ours.total_image_size == theirs.image_size
    assert ours.security_credential_version == theirs.security_credential_version
    assert ours.upgrade_file_destination == theirs.upgrade_file_destination
    assert ours.minimum_hardware_version == theirs.minimum_hardware_version
    assert ours.maximum_hardware_version == theirs.maximum_hardware_version


header_fields = st.fixed_dictionaries(
    {
        "manufacturer": st.integers(0, 0xFFFF),
        "image_type": st.integers(0, 0xFFFF),
        "version": st.integers(0, 0xFFFFFFFF),
        "stack": st.integers(0, 0xFFFF),
        "text": st.binary(max_size=32),
        "credential": st.none() | st.integers(0, 255),
        "destination": st.none() | st.binary(min_size=8, max_size=8).map(lambda b: t.EUI64(b)),
        "hw": st.none()
        | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)).map(lambda p: tuple(sorted(p))),
    }
)


@settings(max_examples=300, deadline=None)
@given(header_fields)
def test_zigpy_built_files_parse_to_the_same_header(f: dict) -> None:
    raw = zigpy_file(**f, elements=ELEMENTS)
    theirs, rest = OTAImage.deserialize(raw)
    assert rest == b""
    ours = parse_image(raw)
    assert_same(ours.header, theirs.header)
    assert [(e.tag, e.data) for e in ours.elements] == [
        (int(s.tag_id), s.data) for s in theirs.subelements
    ]


@settings(max_examples=300, deadline=None)
@given(header_fields)
def test_our_files_deserialise_with_zigpy_to_the_same_fields(f: dict) -> None:
    ours_header = OtaHeader.create(
        manufacturer_code=f["manufacturer"],
        image_type=f["image_type"],
        file_version=f["version"],
        stack_version=f["stack"],
        header_string=f["text"],
        security_credential_version=f["credential"],
        upgrade_file_destination=f["destination"],
        hardware_versions=f["hw"],
    )
    raw = assemble(ours_header, ELEMENTS)
    parsed = parse_image(raw)
    theirs, rest = OTAImage.deserialize(raw)
    assert rest == b""
    assert_same(parsed.header, theirs.header)
    assert theirs.serialize() == raw  # and zigpy writes back the very same bytes
    assert len(theirs.subelements) == len(ELEMENTS)
    assert parsed.header.header_length == implied_header_length(parsed.header.field_control)


def test_zigpy_is_lenient_where_we_are_strict() -> None:
    """Random byte mutations of a valid file: count what each parser accepts.

    Every file we accept zigpy accepts too (we are a strict subset), and zigpy accepts files we
    reject (wrong header lengths, trailing elements, duplicate or unknown tags ...).
    """
    base = assemble(
        OtaHeader.create(manufacturer_code=0x1234, image_type=1, file_version=2), ELEMENTS
    )
    rng = random.Random(20240501)
    ours_ok = zigpy_ok = 0
    for _ in range(4000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data))
            data[pos] = (
                rng.randrange(256) if rng.random() < 0.5 else data[pos] ^ (1 << rng.randrange(8))
            )
        data = bytes(data)
        try:
            parse_image(data)
            ours = True
        except ImageError:
            ours = False
        try:
            img, rest = OTAImage.deserialize(data)
            theirs = True
        except Exception:
            theirs = False
        ours_ok += ours
        zigpy_ok += theirs
        if ours:
            assert theirs and rest == b""
            assert_same(parse_image(data).header, img.header)
    assert zigpy_ok > ours_ok
