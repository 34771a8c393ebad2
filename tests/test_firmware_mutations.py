"""Mutation campaigns against small signed images: nothing but the original verifies.

Verification is the OTA client's fail-fast path (``collect_all=False``) with the real crypto.
Bit flips that break the structure are rejected by the parser in microseconds; the others reach
the elliptic-curve check (tens of milliseconds each).

* default suite: every bit of the first 10 bytes (magic, header version and length, field
  control: what the parser checks before anything else) and a deterministic stride through
  the rest, every 5th bit of the suite-1 image and every 17th of the suite-2 one (strides
  prime to 8, so every bit position of a byte is hit). Most flips there can only be caught
  by the signature, an elliptic-curve check of ~60 ms (suite 1) or ~130 ms (suite 2) each:
  the stride keeps each test near 15 s;
* ``-m slow``: every single bit of both images::

      .venv/bin/pytest -m slow tests/test_firmware_mutations.py -n 2

Plus: every truncation length, appended bytes (with and without a fixed-up size field), the
header-length field set to each value 0..0xFFFF, every swap and every duplication of
sub-elements.
"""

from __future__ import annotations

import itertools
import struct
from collections import Counter

import pytest

from sep.firmware.builder import build_image
from sep.firmware.errors import ImageError, Reason
from sep.firmware.format import ELEMENT_HEADER_LENGTH, HEADER_OFFSETS, encode_element, parse_image
from sep.firmware.testing import TestKeys, flip_bit, make_keys
from sep.firmware.verify import TrustStore, verify_image

PAYLOAD = bytes(range(0x40, 0x50))  # 16 bytes: a small image keeps the campaign affordable


def small_image(keys: TestKeys) -> bytes:
    return build_image(
        PAYLOAD,
        manufacturer_code=0x1234,
        image_type=1,
        file_version=0x00010002,
        signer=keys.signer,
        build_id="b1",
        hardware_range=(0x0100, 0x0200),
    )


@pytest.fixture(scope="module", params=[1, 2], ids=["suite1", "suite2"])
def case(request: pytest.FixtureRequest) -> tuple[TestKeys, TrustStore, bytes]:
    keys = make_keys(request.param)
    data = small_image(keys)
    trust = keys.trust()
    assert verify_image(data, trust).valid
    return keys, trust, data


def rejected(data: bytes, trust: TrustStore) -> Reason | None:
    """The first failure of the fail-fast verifier, or None if (wrongly) accepted."""
    result = verify_image(data, trust, collect_all=False)
    return result.errors[0].reason if result.errors else None


def sample_bits(data: bytes, stride: int) -> list[int]:
    """Every bit of the first 10 bytes, then every ``stride``-th bit."""
    return [bit for bit in range(len(data) * 8) if bit < 10 * 8 or bit % stride == 0]


def flip_campaign(data: bytes, trust: TrustStore, bits: list[int]) -> Counter[Reason]:
    seen: Counter[Reason] = Counter()
    for bit in bits:
        reason = rejected(flip_bit(data, bit), trust)
        assert reason is not None, f"bit {bit} (byte {bit // 8}) flipped and still accepted"
        seen[reason] += 1
    return seen


def test_single_bit_flips_sample(case: tuple[TestKeys, TrustStore, bytes]) -> None:
    keys, trust, data = case
    bits = sample_bits(data, 5 if keys.ca.suite == 1 else 17)
    seen = flip_campaign(data, trust, bits)
    print(
        f"suite {keys.ca.suite}: {len(bits)} of {len(data) * 8} bits flipped, all rejected: {dict(seen)}"
    )
    assert sum(seen.values()) == len(bits)


@pytest.mark.slow
def test_every_single_bit_flip(case: tuple[TestKeys, TrustStore, bytes]) -> None:
    keys, trust, data = case
    bits = list(range(len(data) * 8))
    seen = flip_campaign(data, trust, bits)
    print(f"suite {keys.ca.suite}: all {len(bits)} bits flipped, all rejected: {dict(seen)}")


def test_every_truncation(case: tuple[TestKeys, TrustStore, bytes]) -> None:
    _, trust, data = case
    for n in range(len(data)):
        assert rejected(data[:n], trust) is not None


def test_every_truncation_with_size_field_fixed(case: tuple[TestKeys, TrustStore, bytes]) -> None:
    _, trust, data = case
    off = HEADER_OFFSETS["total_image_size"]
    for n in range(off + 4, len(data)):
        cut = data[:n]
        cut = cut[:off] + struct.pack("<I", n) + cut[off + 4 :]
        assert rejected(cut, trust) is not None


def test_appended_bytes(case: tuple[TestKeys, TrustStore, bytes]) -> None:
    _, trust, data = case
    off = HEADER_OFFSETS["total_image_size"]
    for n in range(1, 70):
        for fill in (b"\x00", b"\xff"):
            longer = data + fill * n
            assert rejected(longer, trust) is Reason.SIZE_MISMATCH
            fixed = longer[:off] + struct.pack("<I", len(longer)) + longer[off + 4 :]
            assert rejected(fixed, trust) is not None
    # a well-formed manufacturer element appended after the signature
    extra = data + encode_element(0xF00F, b"smuggled")
    extra = extra[:off] + struct.pack("<I", len(extra)) + extra[off + 4 :]
    assert rejected(extra, trust) is Reason.SIGNATURE_NOT_LAST


def test_header_length_every_value(case: tuple[TestKeys, TrustStore, bytes]) -> None:
    _, trust, data = case
    off = HEADER_OFFSETS["header_length"]
    original = struct.unpack_from("<H", data, off)[0]
    accepted = []
    for v in range(0x10000):
        if v == original:
            continue
        mutated = data[:off] + struct.pack("<H", v) + data[off + 2 :]
        if rejected(mutated, trust) is None:
            accepted.append(v)
    assert accepted == []


def elements_of(data: bytes) -> tuple[bytes, list[bytes]]:
    image = parse_image(data)
    hlen = image.header.header_length
    return data[:hlen], [data[e.offset : e.end] for e in image.elements]


def test_every_permutation_of_sub_elements(case: tuple[TestKeys, TrustStore, bytes]) -> None:
    _, trust, data = case
    head, els = elements_of(data)
    assert len(els) == 5
    tested = 0
    for perm in itertools.permutations(range(len(els))):
        if list(perm) == list(range(len(els))):
            continue
        mutated = head + b"".join(els[i] for i in perm)
        assert rejected(mutated, trust) is not None, perm
        tested += 1
    assert tested == 119


def test_every_duplication_of_a_sub_element(case: tuple[TestKeys, TrustStore, bytes]) -> None:
    _, trust, data = case
    head, els = elements_of(data)
    off = HEADER_OFFSETS["total_image_size"]
    for i, el in enumerate(els):
        for pos in range(len(els) + 1):
            body = els[:pos] + [el] + els[pos:]
            mutated = head + b"".join(body)
            mutated = mutated[:off] + struct.pack("<I", len(mutated)) + mutated[off + 4 :]
            assert rejected(mutated, trust) is Reason.DUPLICATE_TAG, (i, pos)


def test_element_length_fields_every_small_value(case: tuple[TestKeys, TrustStore, bytes]) -> None:
    """Each element's length field set to every value 0..len+64: only the true one verifies."""
    _, trust, data = case
    image = parse_image(data)
    for e in image.elements:
        for v in range(0, e.length + 65):
            if v == e.length:
                continue
            mutated = (
                data[: e.offset + 2]
                + struct.pack("<I", v)
                + data[e.offset + ELEMENT_HEADER_LENGTH :]
            )
            assert rejected(mutated, trust) is not None, (e.name, v)


def test_parse_errors_are_image_errors_only(case: tuple[TestKeys, TrustStore, bytes]) -> None:
    _, _, data = case
    for n in range(0, len(data), 7):
        try:
            parse_image(data[:n])
        except ImageError:
            pass
