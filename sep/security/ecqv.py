"""Zigbee implicit certificates (ECQV, SEC 4) for CBKE crypto suites 1 and 2.

Suite 1 (sect163k1), 48 bytes (Smart Energy 1.x Annex C):
    public-key reconstruction point (22, compressed) ‖ subject IEEE (8) ‖ issuer (8) ‖
    profile attribute data (10)
Suite 2 (sect283k1), 74 bytes (Smart Energy 1.2 Annex C, as Wireshark's key-establishment
dissector reads it):
    type (1) ‖ serial (8) ‖ curve (1) ‖ hash (1) ‖ issuer (8) ‖ valid from (5) ‖
    valid to (4) ‖ subject (8) ‖ key usage (1) ‖ reconstruction point (37, compressed)

ECQV with AES-MMO: e = AES-MMO(certificate) read as a big-endian integer;
public key Q = e·P + Q_CA with P the reconstruction point; private key d = e·k + r mod n
with k the requester's ephemeral key and r the CA's private-key reconstruction data.
"""

from __future__ import annotations

import dataclasses
import secrets

from sep.security.aes_mmo import aes_mmo
from sep.security.curves import SECT163K1, SECT283K1, Curve, Point, point_from_bytes, point_to_bytes


@dataclasses.dataclass(frozen=True)
class Suite1Certificate:
    reconstruction: bytes  # 22-byte compressed point
    subject: bytes  # 8-byte IEEE (big-endian, as in the certificate)
    issuer: bytes  # 8 bytes
    profile_data: bytes = bytes(10)

    SIZE = 48
    curve = SECT163K1

    def to_bytes(self) -> bytes:
        out = self.reconstruction + self.subject + self.issuer + self.profile_data
        if len(out) != self.SIZE:
            raise ValueError("suite 1 certificate fields have the wrong sizes")
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Suite1Certificate:
        data = bytes(data)
        if len(data) != cls.SIZE:
            raise ValueError(f"suite 1 certificate is 48 bytes, not {len(data)}")
        return cls(data[:22], data[22:30], data[30:38], data[38:48])


@dataclasses.dataclass(frozen=True)
class Suite2Certificate:
    reconstruction: bytes  # 37-byte compressed point
    subject: bytes
    issuer: bytes
    serial: bytes = bytes(8)
    valid_from: bytes = bytes(5)
    valid_to: bytes = b"\xff" * 4
    key_usage: int = 0x88  # key agreement + digital signature
    cert_type: int = 0x00
    curve_id: int = 0x0D  # sect283k1
    hash_id: int = 0x08  # AES-MMO

    SIZE = 74
    curve = SECT283K1

    def to_bytes(self) -> bytes:
        out = (bytes([self.cert_type]) + self.serial + bytes([self.curve_id, self.hash_id])
               + self.issuer + self.valid_from + self.valid_to + self.subject
               + bytes([self.key_usage]) + self.reconstruction)
        if len(out) != self.SIZE:
            raise ValueError("suite 2 certificate fields have the wrong sizes")
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Suite2Certificate:
        data = bytes(data)
        if len(data) != cls.SIZE:
            raise ValueError(f"suite 2 certificate is 74 bytes, not {len(data)}")
        return cls(reconstruction=data[37:74], subject=data[28:36], issuer=data[11:19],
                   serial=data[1:9], valid_from=data[19:24], valid_to=data[24:28],
                   key_usage=data[36], cert_type=data[0], curve_id=data[9], hash_id=data[10])


Certificate = Suite1Certificate | Suite2Certificate


def cert_hash(cert: Certificate) -> int:
    return int.from_bytes(aes_mmo(cert.to_bytes()), "big")


def reconstruct_public_key(cert: Certificate, ca_public_key: Point | bytes) -> Point:
    curve = cert.curve
    q_ca = (point_from_bytes(curve, ca_public_key) if isinstance(ca_public_key, bytes | bytearray)
            else ca_public_key)
    P = point_from_bytes(curve, cert.reconstruction)
    e = cert_hash(cert) % curve.n
    return curve.add(curve.mul(e, P), q_ca)


def issue_certificate(curve: Curve, ca_private_key: int, request: Point, *, subject: bytes,
                      issuer: bytes, **fields: object) -> tuple[Certificate, int]:
    """The CA side: returns the certificate and the private-key reconstruction value r."""
    while True:
        k = secrets.randbelow(curve.n - 1) + 1
        P = curve.add(request, curve.mul(k, curve.G))
        if P.infinity:
            continue
        recon = point_to_bytes(curve, P, compressed=True)
        if curve is SECT163K1:
            cert: Certificate = Suite1Certificate(recon, subject, issuer, **fields)  # type: ignore[arg-type]
        else:
            cert = Suite2Certificate(recon, subject, issuer, **fields)  # type: ignore[arg-type]
        e = cert_hash(cert) % curve.n
        r = (e * k + ca_private_key) % curve.n
        return cert, r


def private_key_from_reconstruction(cert: Certificate, r: int, request_private_key: int) -> int:
    curve = cert.curve
    e = cert_hash(cert) % curve.n
    return (e * request_private_key + r) % curve.n
