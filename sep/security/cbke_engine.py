"""The EC maths of an emulated EZSP stick's CBKE commands, on :mod:`sep.security.cbke`.

:class:`SepCbkeEngine` is what the NCP emulator (:mod:`radios.ncp.cmd_cbke`, its
``CbkeEngine`` protocol) calls to generate ephemeral keys, compute the SMACs and the link
key, and sign and verify with ECDSA, for suites 1 (sect163k1) and 2 (sect283k1). It is wired
in by ``sep ncp-emulator``. The functions are the ones the host-side Key Establishment core
(:mod:`sep.clusters.key_establishment`) uses -- ECQV reconstruction of the partner's static
key, ECMQV, the KDF and MACU/MACV of SE 1.4 C.4.2 -- so an emulated stick and the host agree
by construction on everything but the Ember API around them.

Values are bytes as they travel in EZSP frames: private keys as big-endian scalars
(21 / 36 bytes), public keys as compressed points (22 / 37 bytes), signatures as r ‖ s
(42 / 72 bytes), certificates raw (48 / 74 bytes). Every method is plain CPU work and keeps
no state (a worker thread or process may run it); input it cannot use raises ValueError.

Test seam: ``ephemeral_source`` chooses the ephemeral private keys (default random), as in
the KE core, so a test can make an emulated stick reproduce a published worked example.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from sep.security import cbke, ecdsa
from sep.security.aes_mmo import aes_mmo
from sep.security.certs import SUITE_CURVES, CertificateError, parse_certificate, public_key


class OwnData(Protocol):
    """A suite's preinstalled data (what the stick's token holds)."""

    ca_public_key: bytes
    certificate: bytes
    private_key: bytes


@dataclasses.dataclass(frozen=True)
class Smacs:
    initiator_smac: bytes  # MACU
    responder_smac: bytes  # MACV
    link_key: bytes


def _scalar(suite: int, data: bytes) -> int:
    curve = SUITE_CURVES[suite]
    d = int.from_bytes(data, "big")
    if len(data) != curve.scalar_len or not 1 <= d < curve.n:
        raise ValueError(f"not a {curve.name} private key")
    return d


class SepCbkeEngine:
    """CBKE and ECDSA for the NCP emulator (see the module docstring)."""

    def __init__(self, ephemeral_source: cbke.EphemeralSource = cbke.random_ephemeral) -> None:
        self.ephemeral_source = ephemeral_source

    def generate_keys(self, suite: int) -> tuple[bytes, bytes]:
        curve = SUITE_CURVES[suite]
        d = self.ephemeral_source(curve)
        return d.to_bytes(curve.scalar_len, "big"), cbke.ephemeral_public(suite, d)

    def calculate_smacs(self, suite: int, own: OwnData, ephemeral_private: bytes,
                        ephemeral_public: bytes, am_initiator: bool, partner_certificate: bytes,
                        partner_ephemeral_public: bytes) -> Smacs:
        """MACU and MACV (SE 1.4 C.4.2) and the link key, U being the initiator."""
        partner = parse_certificate(partner_certificate, suite)  # CertificateError: ValueError
        if not cbke.check_ephemeral(suite, partner_ephemeral_public):
            raise ValueError("the partner's ephemeral key is not a compressed curve point")
        partner_static = cbke.partner_static_key(suite, partner_certificate, own.ca_public_key)
        own_ieee = parse_certificate(own.certificate, suite).subject
        if am_initiator:
            ieee_u, ieee_v = own_ieee, partner.subject
            qe_u, qe_v = ephemeral_public, partner_ephemeral_public
        else:
            ieee_u, ieee_v = partner.subject, own_ieee
            qe_u, qe_v = partner_ephemeral_public, ephemeral_public
        keys = cbke.derive(suite, own_static=_scalar(suite, own.private_key),
                           own_ephemeral=_scalar(suite, ephemeral_private),
                           own_ephemeral_public=ephemeral_public,
                           partner_static_public=partner_static,
                           partner_ephemeral_public=partner_ephemeral_public,
                           ieee_u=ieee_u, ieee_v=ieee_v, qe_u=qe_u, qe_v=qe_v)
        return Smacs(initiator_smac=keys.mac_u, responder_smac=keys.mac_v,
                     link_key=keys.link_key)

    def dsa_verify(self, suite: int, ca_public_key: bytes, digest: bytes,
                   signer_certificate: bytes, signature: bytes) -> bool:
        """False for a bad signature and for a certificate that gives no key."""
        curve = SUITE_CURVES[suite]
        size = curve.scalar_len
        if len(signature) != 2 * size:
            return False
        try:
            q = public_key(parse_certificate(signer_certificate, suite), ca_public_key)
        except (CertificateError, ValueError):
            return False
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        return ecdsa.verify(curve, q, bytes(digest), r, s)

    def dsa_sign(self, suite: int, private_key: bytes, data: bytes) -> bytes:
        """r ‖ s over AES-MMO(data), as Zigbee signs (SE 1.4 C.7.2)."""
        curve = SUITE_CURVES[suite]
        r, s = ecdsa.sign(curve, _scalar(suite, private_key), aes_mmo(bytes(data)))
        return r.to_bytes(curve.scalar_len, "big") + s.to_bytes(curve.scalar_len, "big")
