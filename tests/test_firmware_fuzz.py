"""Fuzzing: any bytes in -> a parsed image or ImageError, never another exception.

The parser, the manifest decoder, ``inspect``'s describer and the verifier (with its cheap
pre-crypto checks, and with crypto when the mutation survives parsing) are all driven by
hypothesis with arbitrary bytes and with mutations of a valid file.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sep.cli.ota import describe
from sep.firmware.errors import ImageError
from sep.firmware.format import HEADER_OFFSETS, OtaHeader, Tag, assemble, parse_header, parse_image
from sep.firmware.manifest import MANIFEST_TAG, Manifest, decode_manifest
from sep.firmware.verify import TrustedCA, TrustStore, verify_image

PAYLOAD = b"\x7fELF firmware" * 4
VALID = assemble(
    OtaHeader.create(
        manufacturer_code=0x1234, image_type=1, file_version=2, hardware_versions=(1, 9)
    ),
    [
        (Tag.UPGRADE_IMAGE, PAYLOAD),
        (
            MANIFEST_TAG,
            Manifest.for_payload(PAYLOAD, version=2, hardware_range=(1, 9), notes="n").encode(),
        ),
        (Tag.CERTIFICATE_SUITE1, bytes(48)),
        (Tag.INTEGRITY_CODE, bytes(16)),
        (Tag.SIGNATURE_SUITE1, bytes(50)),
    ],
)
# a trust store whose CA key is not a point: verification must still only ever return errors
TRUST = TrustStore.of(
    TrustedCA(suite=1, issuer=bytes(8), public_key=b"\x02" + bytes(21)), allowed_signers=set()
)


def parse_only(data: bytes, allow_unsigned: bool = False) -> None:
    try:
        image = parse_image(data, allow_unsigned=allow_unsigned)
    except ImageError as exc:
        assert exc.reason and exc.message
        return
    # what parses is self-consistent
    assert image.header.total_image_size == len(data)
    assert image.elements[-1].end == len(data)
    assert image.header.serialize() == data[: image.header.header_length]


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append", "len"]))
        if op == "flip" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and data:
            pos = draw(st.integers(0, len(data) - 1))
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=32))
        elif op == "len":  # keep the size field honest so deeper checks are reached
            off = HEADER_OFFSETS["total_image_size"]
            if len(data) >= off + 4:
                data[off : off + 4] = struct.pack("<I", len(data))
    return bytes(data)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    parse_only(data)
    parse_only(data, allow_unsigned=True)
    try:
        parse_header(data)
    except ImageError:
        pass
    try:
        decode_manifest(data)
    except ImageError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_behind_a_valid_magic(tail: bytes) -> None:
    parse_only(VALID[:4] + tail)
    parse_only(VALID[:8] + tail, allow_unsigned=True)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutations_of_a_valid_file(data: bytes) -> None:
    parse_only(data)
    parse_only(data, allow_unsigned=True)
    try:
        describe(data)
    except ImageError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_verifier_returns_errors_never_raises(data: bytes) -> None:
    result = verify_image(data, TRUST)
    assert not result.valid
    assert result.errors
    fast = verify_image(data, TRUST, collect_all=False)
    assert len(fast.errors) == 1 and fast.errors[0].reason == result.errors[0].reason
