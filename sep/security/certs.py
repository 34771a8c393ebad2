"""Smart Energy implicit certificates as devices carry them, and the credentials of one suite.

The byte layouts are those of :mod:`sep.security.ecqv` (suite 1: 48 bytes, suite 2: 74
bytes). This module reads them (:func:`parse_certificate`, :func:`describe`), judges the
suite-2 fields CBKE depends on (:func:`field_problem`, :func:`validity`), issues new ones
from a CA key (:func:`issue`: the ECQV requester and CA in one step, as a test CA does) and
bundles what a device needs for one suite (:class:`Credentials`).

Suite-2 fields (SE 1.2 Annex C, as Wireshark's key-establishment dissector reads them):
type 0x00 (no extensions), curve 0x0D (sect283k1), hash 0x08 (AES-MMO), valid from = 40-bit
Unix time, valid to = 32-bit seconds after valid from (0xFFFFFFFF: never expires), key usage
bits 0x08 key agreement and 0x80 digital signature. Suite 1 certificates carry none of these:
no validity, no key usage; their last 10 bytes are opaque profile attribute data.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from sep.security import ecdsa, ecqv
from sep.security.curves import (
    INFINITY,
    SECT163K1,
    SECT283K1,
    Curve,
    Point,
    point_from_bytes,
    point_to_bytes,
)

SUITE_CURVES: dict[int, Curve] = {1: SECT163K1, 2: SECT283K1}
CERTIFICATE_LENGTH = {1: 48, 2: 74}
_CLASSES: dict[int, Any] = {1: ecqv.Suite1Certificate, 2: ecqv.Suite2Certificate}

CERT_TYPE_NO_EXTENSIONS = 0x00
CURVE_SECT283K1 = 0x0D
HASH_AES_MMO = 0x08
KEY_AGREEMENT = 0x08
DIGITAL_SIGNATURE = 0x80
NO_EXPIRY = 0xFFFFFFFF

Certificate = ecqv.Certificate


class CertificateError(ValueError):
    """Bytes that are not a usable certificate, or credentials that do not fit together."""


def suite_of_length(length: int) -> int:
    for suite, n in CERTIFICATE_LENGTH.items():
        if n == length:
            return suite
    raise CertificateError(f"a certificate is 48 (suite 1) or 74 (suite 2) bytes, not {length}")


def suite_of(cert: Certificate) -> int:
    return 1 if isinstance(cert, ecqv.Suite1Certificate) else 2


def parse_certificate(data: bytes, suite: int | None = None) -> Certificate:
    """The certificate in ``data`` (its suite from its length unless given)."""
    data = bytes(data)
    if suite is None:
        suite = suite_of_length(len(data))
    if suite not in _CLASSES:
        raise CertificateError(f"unknown crypto suite {suite}")
    if len(data) != CERTIFICATE_LENGTH[suite]:
        raise CertificateError(f"a suite {suite} certificate is {CERTIFICATE_LENGTH[suite]} "
                               f"bytes, not {len(data)}")
    return _CLASSES[suite].from_bytes(data)


def subject_of(cert: Certificate) -> int:
    """The subject IEEE as a 64-bit int (the EUI-64 read most significant byte first)."""
    return int.from_bytes(cert.subject, "big")


def validity(cert: Certificate) -> tuple[int, int | None] | None:
    """(valid from, valid to or None = never expires) in Unix seconds; None for suite 1."""
    if not isinstance(cert, ecqv.Suite2Certificate):
        return None
    start = int.from_bytes(cert.valid_from, "big")
    span = int.from_bytes(cert.valid_to, "big")
    return start, None if span == NO_EXPIRY else start + span


def field_problem(cert: Certificate, now: float | None = None) -> str | None:
    """Why a certificate's own fields make it unusable for CBKE (None when they do not):
    suite 2 type, curve, hash, key usage without key agreement, and -- when ``now`` is given
    -- the validity period."""
    if not isinstance(cert, ecqv.Suite2Certificate):
        return None
    if cert.cert_type != CERT_TYPE_NO_EXTENSIONS:
        return f"certificate type 0x{cert.cert_type:02X} is not 0x00 (no extensions)"
    if cert.curve_id != CURVE_SECT283K1:
        return f"curve 0x{cert.curve_id:02X} is not sect283k1 (0x0D)"
    if cert.hash_id != HASH_AES_MMO:
        return f"hash 0x{cert.hash_id:02X} is not AES-MMO (0x08)"
    if not cert.key_usage & KEY_AGREEMENT:
        return f"key usage 0x{cert.key_usage:02X} does not allow key agreement"
    if now is not None:
        period = validity(cert)
        assert period is not None
        start, end = period
        if now < start:
            return f"not valid before {start} (Unix time)"
        if end is not None and now > end:
            return f"expired at {end} (Unix time)"
    return None


def public_key(cert: Certificate, ca_public_key: bytes | Point) -> Point:
    """The subject's public key, reconstructed by ECQV (CertificateError for a certificate
    whose reconstruction point is not a curve point, or that gives the point at infinity)."""
    curve = cert.curve
    try:
        q = ecqv.reconstruct_public_key(cert, ca_public_key)
    except ValueError as exc:
        raise CertificateError(f"public-key reconstruction failed: {exc}") from None
    if q == INFINITY or not curve.on_curve(q):
        raise CertificateError("public-key reconstruction gives no valid point")
    return q


def describe(cert: Certificate) -> dict[str, Any]:
    """Every field, for people (``sep cert show``): hex strings and numbers, JSON-ready."""
    suite = suite_of(cert)
    info: dict[str, Any] = {
        "suite": suite,
        "curve": cert.curve.name,
        "length": CERTIFICATE_LENGTH[suite],
        "subject": _eui64(cert.subject),
        "issuer": cert.issuer.hex(),
        "issuer_text": _printable(cert.issuer),
        "reconstruction_point": cert.reconstruction.hex(),
    }
    if isinstance(cert, ecqv.Suite2Certificate):
        period = validity(cert)
        assert period is not None
        info.update({
            "type": cert.cert_type,
            "serial": cert.serial.hex(),
            "curve_id": cert.curve_id,
            "hash_id": cert.hash_id,
            "valid_from": period[0],
            "valid_to": period[1],
            "key_usage": cert.key_usage,
            "key_agreement": bool(cert.key_usage & KEY_AGREEMENT),
            "digital_signature": bool(cert.key_usage & DIGITAL_SIGNATURE),
        })
    else:
        info.update({"profile_data": cert.profile_data.hex(), "valid_from": None,
                     "valid_to": None, "key_usage": None})
    return info


def _eui64(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def _printable(data: bytes) -> str | None:
    return data.decode("ascii") if all(0x20 <= b < 0x7F for b in data) else None


# ------------------------------------------------------------------------------------ issuing


def generate_key_pair(suite: int) -> tuple[int, bytes]:
    """A new private key and its compressed public key."""
    curve = SUITE_CURVES[suite]
    d = ecdsa.generate_private_key(curve)
    return d, point_to_bytes(curve, ecdsa.public_key(curve, d))


def issue(suite: int, ca_private_key: int, issuer: bytes, subject: bytes, *,
          valid_from: int = 0, valid_for: int = NO_EXPIRY,
          key_usage: int = KEY_AGREEMENT | DIGITAL_SIGNATURE,
          serial: bytes | None = None) -> tuple[bytes, int]:
    """ECQV issuance with a fresh request key: (certificate bytes, the subject's private key).

    ``subject`` and ``issuer`` are 8 bytes as they appear in the certificate; the suite-2
    fields (``valid_from`` Unix seconds, ``valid_for`` seconds or :data:`NO_EXPIRY`,
    ``key_usage``, ``serial``) are ignored for suite 1, which has none."""
    curve = SUITE_CURVES[suite]
    if len(subject) != 8 or len(issuer) != 8:
        raise CertificateError("subject and issuer are 8 bytes each")
    fields: dict[str, Any] = {}
    if suite == 2:
        if not 0 <= valid_from < 1 << 40 or not 0 <= valid_for <= NO_EXPIRY:
            raise CertificateError("validity out of range")
        fields = {"serial": secrets.token_bytes(8) if serial is None else bytes(serial),
                  "valid_from": valid_from.to_bytes(5, "big"),
                  "valid_to": valid_for.to_bytes(4, "big"), "key_usage": key_usage}
    k = ecdsa.generate_private_key(curve)  # the requester's ephemeral key
    cert, r = ecqv.issue_certificate(curve, ca_private_key, ecdsa.public_key(curve, k),
                                     subject=bytes(subject), issuer=bytes(issuer), **fields)
    return cert.to_bytes(), ecqv.private_key_from_reconstruction(cert, r, k)


# -------------------------------------------------------------------------------- credentials


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a device holds for one CBKE suite: its certificate, the private key that goes
    with it, and the public key of the CA that issued it (and that partners must share)."""

    suite: int
    certificate: bytes
    private_key: int
    ca_public_key: bytes  # compressed point

    def __post_init__(self) -> None:
        if self.suite not in SUITE_CURVES:
            raise CertificateError(f"unknown crypto suite {self.suite}")
        parse_certificate(self.certificate, self.suite)

    @property
    def curve(self) -> Curve:
        return SUITE_CURVES[self.suite]

    @property
    def cert(self) -> Certificate:
        return parse_certificate(self.certificate, self.suite)

    @property
    def issuer(self) -> bytes:
        return self.cert.issuer

    @property
    def subject(self) -> int:
        return subject_of(self.cert)

    def verify(self) -> None:
        """CertificateError unless the private key is the one the certificate binds (ECQV:
        the reconstructed public key equals d·G) and the CA key is a curve point."""
        curve = self.curve
        if not 1 <= self.private_key < curve.n:
            raise CertificateError("private key out of range")
        try:
            ca = point_from_bytes(curve, self.ca_public_key)
        except ValueError as exc:
            raise CertificateError(f"CA public key: {exc}") from None
        if public_key(self.cert, ca) != curve.mul(self.private_key, curve.G):
            raise CertificateError("the private key does not belong to the certificate "
                                   "(or the certificate is not from this CA)")
