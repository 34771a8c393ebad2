"""Verification: signatures, certificates, trust, integrity code, manifest, and crypto failures."""

from __future__ import annotations

import struct
import sys

import pytest

from sep.firmware import crypto as fw_crypto
from sep.firmware.builder import Signer, build_image
from sep.firmware.errors import ImageError, Reason
from sep.firmware.format import HEADER_OFFSETS, SUITES, Tag, encode_element, parse_ieee, parse_image
from sep.firmware.manifest import MANIFEST_TAG, ImageKind, Manifest
from sep.firmware.policy import APPLICATION_IMAGE_TYPE, DeviceIdentity, check_policy
from sep.firmware.testing import TestKeys, fix_integrity_code, make_keys, resign
from sep.firmware.verify import TrustStore, check_image, verify_image

PAYLOAD = bytes(range(256)) * 2
MFR = 0x1234


@pytest.fixture(scope="module", params=[1, 2], ids=["suite1", "suite2"])
def keys(request: pytest.FixtureRequest) -> TestKeys:
    return make_keys(request.param)


@pytest.fixture(scope="module")
def keys1() -> TestKeys:
    return make_keys(1)


@pytest.fixture(scope="module")
def keys2() -> TestKeys:
    return make_keys(2)


def build(signer: Signer, payload: bytes = PAYLOAD, **kw: object) -> bytes:
    args: dict[str, object] = {
        "manufacturer_code": MFR,
        "image_type": APPLICATION_IMAGE_TYPE,
        "file_version": 0x00010002,
        "signer": signer,
        "notes": "test build",
    }
    args.update(kw)
    return build_image(payload, **args)  # type: ignore[arg-type]


def reasons(data: bytes, trust: TrustStore) -> list[Reason]:
    return verify_image(data, trust).reasons


def test_valid_image_both_suites(keys: TestKeys) -> None:
    data = build(keys.signer)
    result = verify_image(data, keys.trust())
    assert result.errors == [] and result.valid
    assert result.image is not None and result.image.payload == PAYLOAD
    assert result.manifest is not None and result.manifest.kind is ImageKind.APPLICATION
    image, manifest = check_image(data, keys.trust())
    assert image.suite is SUITES[keys.ca.suite]
    assert manifest == result.manifest
    sig = image.signature
    assert sig is not None and sig.signer == keys.signer.ieee


def test_optional_parts(keys1: TestKeys) -> None:
    trust = keys1.trust()
    for kw in (
        {"integrity_code": False},
        {"hardware_range": (1, 5)},
        {"destination": parse_ieee("00:0d:6f:00:00:00:00:01"), "security_credential_version": 1},
        {"picture": b"GIF89a", "extra_elements": [(0xF0AA, b"vendor")]},
        {"header_string": "SEP meter firmware", "stack_version": 0x0003},
    ):
        assert reasons(build(keys1.signer, **kw), trust) == [], kw


def test_long_image_uses_long_form_aes_mmo_padding(keys1: TestKeys) -> None:
    """Above 8192 bytes AES-MMO switches to its long length encoding; the verifier must agree."""
    for size in (8192 - 200, 8192, 70_001):
        data = build(keys1.signer, payload=bytes(i * 7 & 0xFF for i in range(size)))
        assert reasons(data, keys1.trust()) == []


def test_streamed_digests_equal_one_shot_aes_mmo(keys1: TestKeys) -> None:
    crypto = fw_crypto.load()
    data = build(keys1.signer, payload=bytes(200_000))
    image = parse_image(data)
    sig, ic = image.signature, image.integrity_code
    assert sig is not None and ic is not None
    got = fw_crypto.stream_digests(crypto, data, [ic.offset, sig.rs_offset])
    assert got[ic.offset] == bytes(crypto.aes_mmo.aes_mmo(data[: ic.offset])) == ic.data
    assert got[sig.rs_offset] == bytes(crypto.aes_mmo.aes_mmo(data[: sig.rs_offset]))


def test_progress_reports_reach_the_signed_length(keys1: TestKeys) -> None:
    data = build(keys1.signer, payload=bytes(300_000))
    seen: list[tuple[int, int]] = []
    assert verify_image(data, keys1.trust(), progress=lambda d, t: seen.append((d, t))).valid
    assert seen[-1][0] == seen[-1][1] == len(data) - 2 * 21
    assert all(a[0] < b[0] for a, b in zip(seen, seen[1:], strict=False))


# --------------------------------------------------------------------------- trust failures


def test_signer_not_on_allow_list(keys: TestKeys) -> None:
    other = issue_other_signer(keys)
    data = build(other)
    assert reasons(data, keys.trust()) == [Reason.SIGNER_NOT_ALLOWED]
    assert reasons(data, keys.trust(other.ieee)) == []


def issue_other_signer(keys: TestKeys) -> Signer:
    from sep.firmware.keys import issue_signer

    return issue_signer(keys.ca)


def test_key_not_issued_by_the_trusted_ca(keys: TestKeys) -> None:
    # a different CA with its own issuer id
    rogue = make_keys(keys.ca.suite, ieee=keys.signer.ieee)
    got = reasons(build(rogue.signer), keys.trust())
    assert got == [Reason.CERT_ISSUER_MISMATCH, Reason.BAD_SIGNATURE]
    # a rogue CA that copies our issuer id and the allowed signer's IEEE: only the maths catches it
    forger = make_keys(keys.ca.suite, issuer=keys.ca.issuer, ieee=keys.signer.ieee)
    assert reasons(build(forger.signer), keys.trust()) == [Reason.BAD_SIGNATURE]
    # and the rogue CA's own trust store accepts it (the failure is the trust, not the file)
    assert reasons(build(forger.signer), forger.trust()) == []


def test_certificate_subject_must_be_the_signer(keys: TestKeys) -> None:
    other = issue_other_signer(keys)
    liar = Signer(
        suite=keys.signer.suite,
        ieee=keys.signer.ieee,  # claims the allowed IEEE ...
        private_key=other.private_key,  # ... signs with another certified key
        certificate=other.certificate,
    )
    assert reasons(build(liar), keys.trust()) == [Reason.CERT_SUBJECT_MISMATCH]


def test_untrusted_suite(keys1: TestKeys, keys2: TestKeys) -> None:
    data = build(keys2.signer)
    got = reasons(data, keys1.trust(keys2.signer.ieee))
    assert got == [Reason.UNTRUSTED_SUITE]
    both = keys1.trust().merged(keys2.trust())
    assert reasons(data, both) == [] and reasons(build(keys1.signer), both) == []


def test_both_suites_rejected(keys1: TestKeys, keys2: TestKeys) -> None:
    """A suite-1 file with a (valid) suite-2 certificate added is refused before any crypto."""
    data = build(keys1.signer)
    cert_el = parse_image(data).find(Tag.CERTIFICATE_SUITE1)
    assert cert_el is not None
    extra = encode_element(Tag.CERTIFICATE_SUITE2, keys2.signer.certificate)
    mixed = data[: cert_el.offset] + extra + data[cert_el.offset :]
    off = HEADER_OFFSETS["total_image_size"]
    mixed = mixed[:off] + struct.pack("<I", len(mixed)) + mixed[off + 4 :]
    with pytest.raises(ImageError) as info:
        parse_image(mixed)
    assert info.value.reason is Reason.BOTH_SUITES
    assert reasons(mixed, keys1.trust().merged(keys2.trust())) == [Reason.BOTH_SUITES]


# ------------------------------------------------------------------- correctly signed, wrong


def test_integrity_code_checked_even_when_signature_good(keys1: TestKeys) -> None:
    data = build(keys1.signer)
    ic = parse_image(data).integrity_code
    assert ic is not None
    bad = data[: ic.data_offset] + bytes(16) + data[ic.end :]
    assert reasons(bad, keys1.trust()) == [Reason.BAD_SIGNATURE, Reason.BAD_INTEGRITY_CODE]
    assert reasons(resign(bad, keys1.signer), keys1.trust()) == [Reason.BAD_INTEGRITY_CODE]


def test_manifest_crc_checked_even_when_signature_good(keys1: TestKeys) -> None:
    wrong = Manifest.for_payload(PAYLOAD + b"!", version=0x00010002)
    wrong = Manifest(**{**wrong.__dict__, "payload_length": len(PAYLOAD)})
    data = build(keys1.signer, manifest=False, extra_elements=[(MANIFEST_TAG, wrong.encode())])
    assert reasons(data, keys1.trust()) == [Reason.BAD_CRC]
    # payload edited after signing: signature, integrity code and CRC all fail
    image = parse_image(build(keys1.signer))
    pos = image.upgrade_image.data_offset + 10
    raw = image.raw
    edited = raw[:pos] + bytes([raw[pos] ^ 0x01]) + raw[pos + 1 :]
    assert reasons(edited, keys1.trust()) == [
        Reason.BAD_SIGNATURE,
        Reason.BAD_INTEGRITY_CODE,
        Reason.BAD_CRC,
    ]
    # ... and an attacker who can fix the integrity code still lacks the signing key
    assert reasons(fix_integrity_code(edited), keys1.trust()) == [
        Reason.BAD_SIGNATURE,
        Reason.BAD_CRC,
    ]


def test_manifest_required_unless_trust_says_otherwise(keys1: TestKeys) -> None:
    data = build(keys1.signer, manifest=False)
    assert reasons(data, keys1.trust()) == [Reason.NO_MANIFEST]
    assert reasons(data, keys1.trust(require_manifest=False)) == []
    garbage = build(keys1.signer, manifest=False, extra_elements=[(MANIFEST_TAG, b"junk")])
    assert reasons(garbage, keys1.trust()) == [Reason.BAD_MANIFEST]


def test_r_and_s_out_of_range(keys1: TestKeys) -> None:
    data = build(keys1.signer)
    n = fw_crypto.load().curve(SUITES[1]).n
    for r, s in ((0, 1), (1, 0), (n, 1), (1, n), (2**168 - 1, 1)):
        bad = data[:-42] + r.to_bytes(21, "big") + s.to_bytes(21, "big")
        assert reasons(bad, keys1.trust()) == [Reason.BAD_SIGNATURE]


def test_collect_all_versus_fail_fast(keys1: TestKeys) -> None:
    rogue = make_keys(1)
    data = build(rogue.signer)
    full = verify_image(data, keys1.trust())
    assert full.reasons == [
        Reason.SIGNER_NOT_ALLOWED,
        Reason.CERT_SUBJECT_MISMATCH,
        Reason.CERT_ISSUER_MISMATCH,
        Reason.BAD_SIGNATURE,
    ] or full.reasons == [
        Reason.SIGNER_NOT_ALLOWED,
        Reason.CERT_ISSUER_MISMATCH,
        Reason.BAD_SIGNATURE,
    ]
    fast = verify_image(data, keys1.trust(), collect_all=False)
    assert fast.reasons == [Reason.SIGNER_NOT_ALLOWED]
    with pytest.raises(ImageError) as info:
        check_image(data, keys1.trust())
    assert info.value.reason is Reason.SIGNER_NOT_ALLOWED


# ---------------------------------------------------------------------- crypto unavailable


def test_missing_crypto_module_rejects(keys1: TestKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    data = build(keys1.signer)
    fw_crypto.load.cache_clear()
    fw_crypto.reconstruct_public_key.cache_clear()
    monkeypatch.setitem(sys.modules, "sep.security.ecdsa", None)  # import now fails
    try:
        got = reasons(data, keys1.trust())
        assert got == [Reason.CRYPTO_UNAVAILABLE]
        with pytest.raises(ImageError) as info:
            check_image(data, keys1.trust())
        assert info.value.reason is Reason.CRYPTO_UNAVAILABLE
    finally:
        fw_crypto.load.cache_clear()


def test_broken_crypto_rejects(keys1: TestKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    data = build(keys1.signer)
    crypto = fw_crypto.load()
    fw_crypto.reconstruct_public_key.cache_clear()

    def explode(*a: object, **k: object) -> bool:
        raise RuntimeError("hardware fault")

    monkeypatch.setattr(crypto.ecdsa, "verify", explode)
    assert reasons(data, keys1.trust()) == [Reason.BAD_SIGNATURE]
    monkeypatch.setattr(crypto.ecqv, "reconstruct_public_key", explode)
    fw_crypto.reconstruct_public_key.cache_clear()
    assert reasons(data, keys1.trust()) == [Reason.BAD_CERTIFICATE]
    fw_crypto.reconstruct_public_key.cache_clear()


def test_missing_attribute_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import sep.security.aes_mmo as aes_mmo_mod

    fw_crypto.load.cache_clear()
    monkeypatch.delattr(aes_mmo_mod, "AesMmo")
    try:
        with pytest.raises(fw_crypto.CryptoUnavailable):
            fw_crypto.load()
    finally:
        monkeypatch.undo()
        fw_crypto.load.cache_clear()


# ------------------------------------------------------------------------- with the policy


def test_metrology_image_verifies_but_policy_refuses(keys1: TestKeys) -> None:
    data = build(keys1.signer, kind=ImageKind.METROLOGY)
    image, manifest = check_image(data, keys1.trust())
    device = DeviceIdentity(
        manufacturer_code=MFR, image_type=APPLICATION_IMAGE_TYPE, current_file_version=1
    )
    with pytest.raises(ImageError) as info:
        check_policy(image, device, manifest)
    assert info.value.reason is Reason.METROLOGY_REFUSED


def test_downgrade_refused_after_verification(keys1: TestKeys) -> None:
    image, manifest = check_image(build(keys1.signer, file_version=5), keys1.trust())
    for current in (5, 6, 0xFFFFFFFF):
        device = DeviceIdentity(
            manufacturer_code=MFR, image_type=APPLICATION_IMAGE_TYPE, current_file_version=current
        )
        with pytest.raises(ImageError) as info:
            check_policy(image, device, manifest)
        assert info.value.reason is Reason.DOWNGRADE
    check_policy(
        image,
        DeviceIdentity(
            manufacturer_code=MFR, image_type=APPLICATION_IMAGE_TYPE, current_file_version=4
        ),
        manifest,
    )
