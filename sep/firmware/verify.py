"""Verification of a signed OTA file, in the order certified Smart Energy stacks use.

1. strict parse (:func:`sep.firmware.format.parse_image`): structure, exactly one crypto suite;
2. a CA of the image's suite is trusted (``UNTRUSTED_SUITE``);
3. the signer IEEE (signature element) is on the allow-list (``SIGNER_NOT_ALLOWED``);
4. the certificate decodes (``BAD_CERTIFICATE``), its subject is the signer
   (``CERT_SUBJECT_MISMATCH``) and its issuer is our CA (``CERT_ISSUER_MISMATCH``);
5. digest = AES-MMO of the file from byte 0 up to just before r||s, streamed with ``AesMmo``;
6. ECDSA verification of (r, s) over the digest with the public key reconstructed (ECQV) from
   the certificate and the CA public key (``BAD_SIGNATURE``);
7. the image integrity code (0x0003), when present, = AES-MMO of the file before that element
   (``BAD_INTEGRITY_CODE``) -- computed in the same streaming pass as the digest;
8. our manifest (0xF000): present (``NO_MANIFEST``, when required), decodes (``BAD_MANIFEST``),
   agrees with the header and payload (``MANIFEST_MISMATCH``) and the payload CRC-32 matches
   (``BAD_CRC``).

``collect_all=True`` (the CLI) runs every check it can and reports every failure;
``collect_all=False`` (the OTA client) stops at the first one, so an image from a signer that is
not allowed costs no elliptic-curve work. Either way an image with any failure is not valid and
must never be applied. A missing or broken ``sep.security`` is a failure
(``CRYPTO_UNAVAILABLE``), never a skipped check.

The verifier is synchronous and CPU-bound (hashing, EC maths): run it in an executor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zigpy.types as t

from sep.firmware import crypto as _crypto
from sep.firmware.errors import ImageError, Reason
from sep.firmware.format import SUITES, OtaImage, format_ieee, ieee_to_be, parse_image
from sep.firmware.manifest import Manifest, check_manifest, read_manifest
from sep.firmware.policy import DeviceIdentity, check_policy


@dataclass(frozen=True)
class TrustedCA:
    """A certificate authority whose certificates we accept, for one crypto suite."""

    suite: int
    issuer: bytes  # 8 bytes, as in the certificates' issuer field
    public_key: bytes  # compressed point

    def __post_init__(self) -> None:
        if len(self.issuer) != 8:
            raise ValueError("a CA issuer id is 8 bytes")


@dataclass(frozen=True)
class TrustStore:
    """What the verifier trusts: CAs (one per suite at most) and the signer allow-list."""

    cas: Mapping[int, TrustedCA]
    allowed_signers: frozenset[t.EUI64]
    require_manifest: bool = True

    @classmethod
    def of(
        cls, *cas: TrustedCA, allowed_signers: set[t.EUI64] | frozenset[t.EUI64] = frozenset()
    ) -> TrustStore:
        by_suite: dict[int, TrustedCA] = {}
        for ca in cas:
            if ca.suite in by_suite and by_suite[ca.suite] != ca:
                raise ValueError(f"two different CAs for suite {ca.suite}")
            by_suite[ca.suite] = ca
        return cls(cas=by_suite, allowed_signers=frozenset(allowed_signers))

    def merged(self, other: TrustStore) -> TrustStore:
        merged = TrustStore.of(*self.cas.values(), *other.cas.values())
        return TrustStore(
            cas=merged.cas,
            allowed_signers=self.allowed_signers | other.allowed_signers,
            require_manifest=self.require_manifest and other.require_manifest,
        )


@dataclass
class VerifyResult:
    errors: list[ImageError] = field(default_factory=list)
    image: OtaImage | None = None
    manifest: Manifest | None = None

    @property
    def valid(self) -> bool:
        return self.image is not None and not self.errors

    @property
    def reasons(self) -> list[Reason]:
        return [e.reason for e in self.errors]

    def raise_first(self) -> OtaImage:
        """The verified image, or the first failure raised."""
        if self.errors:
            raise self.errors[0]
        assert self.image is not None
        return self.image


class _Stop(Exception):
    pass


class _Collector:
    def __init__(self, result: VerifyResult, collect_all: bool) -> None:
        self.result = result
        self.collect_all = collect_all

    def fail(self, reason: Reason, message: str) -> None:
        self.add(ImageError(reason, message))

    def add(self, error: ImageError) -> None:
        self.result.errors.append(error)
        if not self.collect_all:
            raise _Stop


def verify_image(
    data: bytes | bytearray | memoryview,
    trust: TrustStore,
    *,
    collect_all: bool = True,
    progress: _crypto.Progress | None = None,
) -> VerifyResult:
    """Verify an OTA file against ``trust``. Never raises for bad input; see the module doc."""
    result = VerifyResult()
    out = _Collector(result, collect_all)
    try:
        _verify(bytes(data), trust, out, progress)
    except _Stop:
        pass
    return result


def check_image(
    data: bytes | bytearray | memoryview,
    trust: TrustStore,
    *,
    progress: _crypto.Progress | None = None,
) -> tuple[OtaImage, Manifest | None]:
    """Fail-fast verification for the apply path: the image, or the first failure raised."""
    result = verify_image(data, trust, collect_all=False, progress=progress)
    return result.raise_first(), result.manifest


def _verify(
    raw: bytes, trust: TrustStore, out: _Collector, progress: _crypto.Progress | None
) -> None:
    try:
        image = parse_image(raw)
    except ImageError as exc:
        out.add(exc)
        raise _Stop from None
    out.result.image = image
    sig = image.signature
    cert_bytes = image.certificate
    assert sig is not None and cert_bytes is not None  # parse_image without allow_unsigned
    suite = sig.suite

    ca = trust.cas.get(suite.number)
    if ca is None:
        out.fail(Reason.UNTRUSTED_SUITE, f"no trusted CA for crypto suite {suite.number}")
    if sig.signer not in trust.allowed_signers:
        out.fail(Reason.SIGNER_NOT_ALLOWED, f"signer {format_ieee(sig.signer)} is not allowed")

    try:
        crypto = _crypto.load()
    except _crypto.CryptoUnavailable as exc:
        out.fail(Reason.CRYPTO_UNAVAILABLE, f"cannot verify without sep.security: {exc}")
        crypto = None

    cert = None
    if crypto is not None:
        try:
            cert = crypto.certificate_class(suite).from_bytes(cert_bytes)
        except Exception as exc:
            out.fail(Reason.BAD_CERTIFICATE, f"certificate does not decode: {exc}")
    if cert is not None:
        subject = bytes(cert.subject)
        if subject != ieee_to_be(sig.signer):
            out.fail(
                Reason.CERT_SUBJECT_MISMATCH,
                f"certificate subject {subject.hex()} is not the signer {format_ieee(sig.signer)}",
            )
        issuer = bytes(cert.issuer)
        if ca is not None and issuer != ca.issuer:
            out.fail(
                Reason.CERT_ISSUER_MISMATCH,
                f"certificate issuer {issuer.hex()} is not our CA {ca.issuer.hex()}",
            )

    digests: dict[int, bytes] = {}
    ic = image.integrity_code
    if crypto is not None:
        marks = [sig.rs_offset] + ([ic.offset] if ic is not None else [])
        try:
            digests = _crypto.stream_digests(crypto, raw, marks, progress=progress)
        except Exception as exc:
            out.fail(Reason.CRYPTO_UNAVAILABLE, f"AES-MMO failed: {type(exc).__name__}: {exc}")

    if crypto is not None and cert is not None and ca is not None and sig.rs_offset in digests:
        _check_signature(
            crypto, out, suite.number, cert_bytes, ca, digests[sig.rs_offset], sig.r, sig.s
        )

    if ic is not None and ic.offset in digests and digests[ic.offset] != ic.data:
        out.fail(
            Reason.BAD_INTEGRITY_CODE,
            f"integrity code {ic.data.hex()} != AES-MMO {digests[ic.offset].hex()}",
        )

    try:
        manifest = read_manifest(image)
    except ImageError as exc:
        out.add(exc)
        manifest = None
    else:
        if manifest is None:
            if trust.require_manifest:
                out.fail(Reason.NO_MANIFEST, "the file has no manifest element (0xF000)")
        else:
            out.result.manifest = manifest
            for error in check_manifest(image, manifest):
                out.add(error)


def _check_signature(
    crypto: _crypto.Crypto,
    out: _Collector,
    suite_number: int,
    cert_bytes: bytes,
    ca: TrustedCA,
    digest: bytes,
    r: int,
    s: int,
) -> None:
    curve = crypto.curve(SUITES[suite_number])
    if not (0 < r < curve.n and 0 < s < curve.n):
        out.fail(Reason.BAD_SIGNATURE, "signature r or s out of range")
        return
    try:
        key = _crypto.reconstruct_public_key(crypto, suite_number, bytes(cert_bytes), ca.public_key)
    except Exception as exc:
        out.fail(Reason.BAD_CERTIFICATE, f"public key reconstruction failed: {exc}")
        return
    try:
        ok = bool(crypto.ecdsa.verify(curve, key, digest, r, s))
    except Exception as exc:
        out.fail(Reason.BAD_SIGNATURE, f"ECDSA verification failed: {type(exc).__name__}: {exc}")
        return
    if not ok:
        out.fail(Reason.BAD_SIGNATURE, "ECDSA signature does not verify")


def accept_stored_image(path: Path, trust: TrustStore, device: DeviceIdentity) -> OtaImage:
    """The apply-path decision for a downloaded file: verification, then policy.

    Re-reads and re-hashes the **stored** bytes (never a streaming hash from the download).
    Returns the image, or raises the first :class:`ImageError` (``UNREADABLE`` if the file
    cannot be read).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(Reason.UNREADABLE, f"{path}: {exc}") from None
    image, manifest = check_image(data, trust)
    check_policy(image, device, manifest)
    return image


def make_file_verifier(
    trust: TrustStore, device: DeviceIdentity
) -> Callable[[Path], tuple[bool, str | None]]:
    """Adapter for the OTA service's verifier hook: ``path -> (ok, reason or None)``.

    ``reason`` is ``"REASON: message"`` with the machine-readable reason first.
    """

    def verifier(path: Path) -> tuple[bool, str | None]:
        try:
            accept_stored_image(path, trust, device)
        except ImageError as exc:
            return False, f"{exc.reason}: {exc.message}"
        return True, None

    return verifier
