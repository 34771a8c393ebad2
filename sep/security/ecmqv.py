"""ECMQV key agreement and the CBKE key derivation (SEC 1 3.4; Smart Energy Annex C).

Z = x(h · s_U · (Q2V + avf(Q2V) · Q1V)), s_U = d2U + avf(Q2U) · d1U mod n, where avf
truncates x (as an integer) to ceil(f/2) bits and sets the next bit (f = bit length of
n). CBKE: MacKey = AES-MMO(Z ‖ 00000001), key data = AES-MMO(Z ‖ 00000002);
MACU = HMAC-AES-MMO(MacKey, 02 ‖ IEEE_U ‖ IEEE_V ‖ QEU ‖ QEV),
MACV = HMAC-AES-MMO(MacKey, 03 ‖ IEEE_V ‖ IEEE_U ‖ QEV ‖ QEU).
"""

from __future__ import annotations

from sep.security.aes_mmo import aes_mmo, hmac_aes_mmo
from sep.security.curves import Curve, Point


def associate_value(curve: Curve, Q: Point) -> int:
    half = (curve.n.bit_length() + 1) // 2
    return (Q.x % (1 << half)) + (1 << half)


def shared_secret(curve: Curve, d1: int, d2: int, q2_own: Point, q1_peer: Point,
                  q2_peer: Point) -> bytes:
    """Z for the party with static key d1 and ephemeral key d2 (public q2_own)."""
    for Q in (q1_peer, q2_peer):
        if Q.infinity or not curve.on_curve(Q):
            raise ValueError("peer key is not a curve point")
    s = (d2 + associate_value(curve, q2_own) * d1) % curve.n
    peer = curve.add(q2_peer, curve.mul(associate_value(curve, q2_peer), q1_peer))
    P = curve.mul(curve.h * s, peer, reduce=False)
    if P.infinity:
        raise ValueError("ECMQV produced the point at infinity")
    return curve.field.to_bytes(P.x)


def kdf(z: bytes) -> tuple[bytes, bytes]:
    """(MacKey, key data) from the shared secret."""
    return aes_mmo(z + (1).to_bytes(4, "big")), aes_mmo(z + (2).to_bytes(4, "big"))


def mac_u(mac_key: bytes, ieee_u: bytes, ieee_v: bytes, qe_u: bytes, qe_v: bytes) -> bytes:
    return hmac_aes_mmo(mac_key, b"\x02" + ieee_u + ieee_v + qe_u + qe_v)


def mac_v(mac_key: bytes, ieee_u: bytes, ieee_v: bytes, qe_u: bytes, qe_v: bytes) -> bytes:
    return hmac_aes_mmo(mac_key, b"\x03" + ieee_v + ieee_u + qe_v + qe_u)
