"""The computations of one CBKE exchange (SE 1.4 Annex C.4), as pure functions of bytes and ints.

Each function takes and returns plain values (picklable), so a shell may run them in a
worker thread or process. The heavy ones are the scalar multiplications: reconstructing the
partner's static key (:func:`partner_static_key`, one), a new ephemeral key pair
(:func:`ephemeral_public`, one) and the ECMQV shared secret (:func:`derive`, two).

Roles: U is the initiator, V the responder. MacKey ‖ key data come from the KDF of the
ECMQV secret Z; the key data is the APS link key both sides install.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable

from sep.security import ecdsa, ecmqv
from sep.security.certs import SUITE_CURVES, parse_certificate, public_key
from sep.security.curves import Curve, point_from_bytes, point_to_bytes

#: source of ephemeral private keys (tests inject the published vectors' keys)
EphemeralSource = Callable[[Curve], int]


def random_ephemeral(curve: Curve) -> int:
    return ecdsa.generate_private_key(curve)


def ephemeral_public(suite: int, d: int) -> bytes:
    """The compressed public key of ephemeral private key ``d``."""
    curve = SUITE_CURVES[suite]
    return point_to_bytes(curve, ecdsa.public_key(curve, d))


def partner_static_key(suite: int, certificate: bytes, ca_public_key: bytes) -> bytes:
    """The partner's static public key from its certificate (compressed; CertificateError)."""
    cert = parse_certificate(certificate, suite)
    return point_to_bytes(SUITE_CURVES[suite], public_key(cert, ca_public_key))


def check_ephemeral(suite: int, data: bytes) -> bool:
    """A compressed point of the suite's curve (not the point at infinity)."""
    curve = SUITE_CURVES[suite]
    if len(data) != 1 + curve.coord_len or data[0] not in (2, 3):
        return False
    try:
        point_from_bytes(curve, data)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class ExchangeKeys:
    mac_u: bytes
    mac_v: bytes
    link_key: bytes


def derive(suite: int, *, own_static: int, own_ephemeral: int, own_ephemeral_public: bytes,
           partner_static_public: bytes, partner_ephemeral_public: bytes,
           ieee_u: bytes, ieee_v: bytes, qe_u: bytes, qe_v: bytes) -> ExchangeKeys:
    """Z by ECMQV, then MacKey and the link key (KDF), then MACU and MACV.

    IEEE addresses are 8 bytes, most significant first (as in certificates); ``qe_u`` and
    ``qe_v`` are the ephemeral public keys exactly as they travelled. ValueError when the
    partner's points are not usable."""
    curve = SUITE_CURVES[suite]
    z = ecmqv.shared_secret(curve, own_static, own_ephemeral,
                            point_from_bytes(curve, own_ephemeral_public),
                            point_from_bytes(curve, partner_static_public),
                            point_from_bytes(curve, partner_ephemeral_public))
    mac_key, link_key = ecmqv.kdf(z)
    return ExchangeKeys(mac_u=ecmqv.mac_u(mac_key, ieee_u, ieee_v, qe_u, qe_v),
                        mac_v=ecmqv.mac_v(mac_key, ieee_u, ieee_v, qe_u, qe_v),
                        link_key=link_key)


def same_mac(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(bytes(a), bytes(b))
