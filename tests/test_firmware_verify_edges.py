"""The verifier's edges that the mutation run (issue #20) found untested.

Independent truth: the order of r, s from SEC 1 (4.1.4 step 1: both in [1, n-1]) with n the
published order of sect163k1 from SEC 2 (not our curve object); the fail-fast contract of the
OTA client (an image from a signer that is not allowed costs no hashing and no EC work); the
trust stores a merged store is made of (it accepts what one of them accepts); the
``"REASON: message"`` contract of the OTA service's verifier hook; the IEEE addresses and
issuer ids the test chose itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sep.firmware import crypto as fw_crypto
from sep.firmware.builder import build_image
from sep.firmware.errors import ImageError, Reason
from sep.firmware.format import parse_ieee, parse_image
from sep.firmware.manifest import ImageKind
from sep.firmware.policy import APPLICATION_IMAGE_TYPE, DeviceIdentity
from sep.firmware.testing import TestKeys, make_keys
from sep.firmware.verify import (
    TrustedCA,
    TrustStore,
    accept_stored_image,
    check_image,
    make_file_verifier,
    verify_image,
)

MFR = 0x1234
PAYLOAD = bytes(range(64))
# SEC 2 v2, 3.1.1 (sect163k1): the order n of the base point
SECT163K1_N = 0x04000000000000000000020108A2E0CC0D99F8A5EF
SIGNER = parse_ieee("00:0d:6f:00:00:00:5e:01")


@pytest.fixture(scope="module")
def keys1() -> TestKeys:
    return make_keys(1, ieee=SIGNER)


@pytest.fixture(scope="module")
def keys2() -> TestKeys:
    return make_keys(2)


def build(keys: TestKeys, **kw: object) -> bytes:
    args: dict[str, object] = {
        "manufacturer_code": MFR,
        "image_type": APPLICATION_IMAGE_TYPE,
        "file_version": 0x00010002,
        "signer": keys.signer,
    }
    args.update(kw)
    return build_image(PAYLOAD, **args)  # type: ignore[arg-type]


def device(current: int = 0x00010001) -> DeviceIdentity:
    return DeviceIdentity(
        manufacturer_code=MFR, image_type=APPLICATION_IMAGE_TYPE, current_file_version=current
    )


# ------------------------------------------------------------------------------ trust stores


def test_two_different_cas_for_one_suite_are_refused(keys1: TestKeys) -> None:
    other = make_keys(1)
    with pytest.raises(ValueError):
        TrustStore.of(keys1.ca.trusted(), other.ca.trusted())
    with pytest.raises(ValueError):
        keys1.trust().merged(other.trust())
    # the same CA twice is one CA, not a conflict
    assert len(TrustStore.of(keys1.ca.trusted(), keys1.ca.trusted()).cas) == 1
    with pytest.raises(ValueError):
        TrustedCA(suite=1, issuer=bytes(7), public_key=keys1.ca.trusted().public_key)


def test_merged_store_requires_a_manifest_unless_a_part_waives_it(
    keys1: TestKeys, keys2: TestKeys
) -> None:
    """A merged store accepts a file one of its parts accepts, and only such files."""
    bare = build(keys1, manifest=False)
    strict, lenient = keys1.trust(), keys1.trust(require_manifest=False)
    strict2, lenient2 = keys2.trust(), keys2.trust(require_manifest=False)
    assert verify_image(bare, strict).reasons == [Reason.NO_MANIFEST]
    assert verify_image(bare, lenient).reasons == []
    assert verify_image(bare, strict.merged(strict2)).reasons == [Reason.NO_MANIFEST]
    assert verify_image(bare, lenient.merged(strict2)).reasons == []
    assert verify_image(bare, strict2.merged(lenient)).reasons == []
    assert verify_image(bare, lenient.merged(lenient2)).reasons == []


# --------------------------------------------------------------------------------- fail-fast


def test_fail_fast_spends_no_hashing_or_ec_work_on_an_unallowed_signer(
    keys1: TestKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    crypto = fw_crypto.load()
    calls: list[object] = []
    real_verify = crypto.ecdsa.verify
    monkeypatch.setattr(
        crypto.ecdsa, "verify", lambda *a: calls.append(a) or real_verify(*a)
    )
    seen: list[tuple[int, int]] = []
    stranger = build(make_keys(1))
    with pytest.raises(ImageError) as info:
        check_image(stranger, keys1.trust(), progress=lambda d, t: seen.append((d, t)))
    assert info.value.reason is Reason.SIGNER_NOT_ALLOWED
    assert seen == [] and calls == []
    # the good image is hashed (progress reaches r) and verified once
    good = build(keys1)
    image, manifest = check_image(good, keys1.trust(), progress=lambda d, t: seen.append((d, t)))
    assert image.payload == PAYLOAD and manifest is not None
    assert seen and seen[-1] == (len(good) - 42, len(good) - 42)
    assert len(calls) == 1


def test_r_and_s_outside_1_to_n_minus_1_never_reach_the_ec_library(
    keys1: TestKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a lenient EC library (one that reduces mod n, or says yes) cannot be handed r or s
    outside [1, n-1]: the verifier checks the range itself (SEC 1, 4.1.4 step 1)."""
    crypto = fw_crypto.load()
    calls: list[tuple[int, int]] = []

    def lenient(curve: object, key: object, digest: bytes, r: int, s: int) -> bool:
        calls.append((r, s))
        return True

    monkeypatch.setattr(crypto.ecdsa, "verify", lenient)
    data = build(keys1)
    n = SECT163K1_N
    for r, s in ((0, 1), (1, 0), (n, 1), (1, n), (n + 1, 1), (1, n + 5)):
        bad = data[:-42] + r.to_bytes(21, "big") + s.to_bytes(21, "big")
        assert verify_image(bad, keys1.trust()).reasons == [Reason.BAD_SIGNATURE], (r, s)
    assert calls == []
    for r, s in ((1, 1), (n - 1, n - 1), (1, n - 1), (n - 1, 1)):
        edge = data[:-42] + r.to_bytes(21, "big") + s.to_bytes(21, "big")
        assert verify_image(edge, keys1.trust()).reasons == [], (r, s)
    assert calls == [(1, 1), (n - 1, n - 1), (1, n - 1), (n - 1, 1)]


# ------------------------------------------------------------------ crypto that fails inside


def test_certificate_the_library_cannot_decode_is_bad_certificate(
    keys1: TestKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    crypto = fw_crypto.load()
    cls = crypto.certificate_class(parse_image(build(keys1)).suite)

    def refuse(_cls: type, data: bytes) -> object:
        raise ValueError("unsupported certificate profile")

    monkeypatch.setattr(cls, "from_bytes", classmethod(refuse))
    fw_crypto.reconstruct_public_key.cache_clear()
    try:
        result = verify_image(build(keys1), keys1.trust())
        assert result.reasons == [Reason.BAD_CERTIFICATE] and not result.valid
        assert "unsupported certificate profile" in result.errors[0].message
    finally:
        fw_crypto.reconstruct_public_key.cache_clear()


def test_aes_mmo_failure_is_crypto_unavailable_never_valid(
    keys1: TestKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    crypto = fw_crypto.load()
    data = build(keys1)

    class Broken:
        def update(self, data: bytes) -> None:
            raise OSError("AES engine fault")

    monkeypatch.setattr(crypto.aes_mmo, "AesMmo", Broken)
    result = verify_image(data, keys1.trust())
    assert result.reasons == [Reason.CRYPTO_UNAVAILABLE] and not result.valid
    assert "AES engine fault" in result.errors[0].message
    with pytest.raises(ImageError) as info:
        check_image(data, keys1.trust())
    assert info.value.reason is Reason.CRYPTO_UNAVAILABLE


# ---------------------------------------------------------------------- what a user is told


def test_every_failure_names_its_evidence(keys1: TestKeys) -> None:
    """The CLI prints each failure's message: it says which signer / issuer is at fault."""
    stranger = make_keys(1, issuer=bytes.fromhex("5e5e5e5e5e5e5e01"))
    result = verify_image(build(stranger), keys1.trust())
    assert result.reasons[:1] == [Reason.SIGNER_NOT_ALLOWED]
    for e in result.errors:
        assert isinstance(e.message, str) and e.message, e
    by_reason = {e.reason: e.message for e in result.errors}
    signer_text = str(stranger.signer.ieee)  # zigpy's own EUI64 text, MSB first
    assert signer_text in by_reason[Reason.SIGNER_NOT_ALLOWED]
    assert "5e5e5e5e5e5e5e01" in by_reason[Reason.CERT_ISSUER_MISMATCH]
    assert keys1.ca.trusted().issuer.hex() in by_reason[Reason.CERT_ISSUER_MISMATCH]
    if Reason.CERT_SUBJECT_MISMATCH in by_reason:
        assert signer_text in by_reason[Reason.CERT_SUBJECT_MISMATCH]
    # missing manifest, out-of-range r, a signature that does not verify: all say something
    for data in (
        build(keys1, manifest=False),
        build(keys1)[:-42] + bytes(42),
        build(keys1)[:-1] + bytes([build(keys1)[-1] ^ 1]),
    ):
        errors = verify_image(data, keys1.trust()).errors
        assert errors and all(isinstance(e.message, str) and e.message for e in errors)


# ------------------------------------------------------------ the apply path, from a stored file


def test_stored_file_verdicts_for_the_ota_service(keys1: TestKeys, tmp_path: Path) -> None:
    verifier = make_file_verifier(keys1.trust(), device())
    good = tmp_path / "good.ota"
    good.write_bytes(build(keys1))
    assert verifier(good) == (True, None)
    assert accept_stored_image(good, keys1.trust(), device()).payload == PAYLOAD

    cases = {
        "UNREADABLE": tmp_path / "missing.ota",
        "SIGNER_NOT_ALLOWED": tmp_path / "stranger.ota",
        "DOWNGRADE": tmp_path / "old.ota",
        "METROLOGY_REFUSED": tmp_path / "metrology.ota",
    }
    cases["SIGNER_NOT_ALLOWED"].write_bytes(build(make_keys(1)))
    cases["DOWNGRADE"].write_bytes(build(keys1, file_version=0x00010001))
    cases["METROLOGY_REFUSED"].write_bytes(build(keys1, kind=ImageKind.METROLOGY))
    for reason, path in cases.items():
        ok, why = verifier(path)
        assert ok is False and why is not None and why.startswith(f"{reason}: "), (reason, why)
        assert len(why) > len(reason) + 2  # a message follows the reason
        with pytest.raises(ImageError) as info:
            accept_stored_image(path, keys1.trust(), device())
        assert info.value.reason == reason and info.value.message
    assert str(cases["UNREADABLE"]) in verifier(cases["UNREADABLE"])[1]  # type: ignore[operator]
