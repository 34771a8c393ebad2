"""ECDSA over the Zigbee Koblitz curves (SEC 1 4.1), on an already computed digest.

Zigbee signs the AES-MMO digest itself (16 bytes), so ``sign``/``verify`` take the digest
and convert it to an integer per SEC 1 4.1.3 step 5 (leftmost bits when longer than n).
Nonces are deterministic, RFC 6979 section 3.2 exactly with HMAC-SHA-256 (checked against
the RFC's K-283 vectors), unless one is given. Zigbee's digest is AES-MMO, which has no
HMAC of its own: the derivation keeps SHA-256 whatever the digest (RFC 6979 3.6 allows it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator

from sep.security.curves import Curve, Point


def digest_to_int(curve: Curve, digest: bytes) -> int:
    e = int.from_bytes(digest, "big")
    excess = 8 * len(digest) - curve.n.bit_length()
    return e >> excess if excess > 0 else e


def generate_private_key(curve: Curve) -> int:
    return secrets.randbelow(curve.n - 1) + 1


def public_key(curve: Curve, d: int) -> Point:
    if not 1 <= d < curve.n:
        raise ValueError("private key out of range")
    return curve.mul(d, curve.G)


def _nonces(curve: Curve, d: int, digest: bytes) -> Iterator[int]:
    """RFC 6979 3.2: the candidate nonces k for key ``d`` and message hash ``digest``, in
    order (the next one is used when one gives r = 0 or s = 0)."""
    n = curve.n
    qlen = n.bit_length()
    rlen = (qlen + 7) // 8

    def bits2int(data: bytes) -> int:
        value = int.from_bytes(data, "big")
        excess = 8 * len(data) - qlen
        return value >> excess if excess > 0 else value

    def mac(key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, hashlib.sha256).digest()

    seed = d.to_bytes(rlen, "big") + (bits2int(digest) % n).to_bytes(rlen, "big")
    v, k = b"\x01" * 32, b"\x00" * 32
    k = mac(k, v + b"\x00" + seed)
    v = mac(k, v)
    k = mac(k, v + b"\x01" + seed)
    v = mac(k, v)
    while True:
        t = b""
        while len(t) < rlen:
            v = mac(k, v)
            t += v
        candidate = bits2int(t[:rlen])
        if 1 <= candidate < n:
            yield candidate
        k = mac(k, v + b"\x00")
        v = mac(k, v)


def sign(curve: Curve, d: int, digest: bytes, k: int | None = None) -> tuple[int, int]:
    n = curve.n
    e = digest_to_int(curve, digest)
    for kk in [k] if k is not None else _nonces(curve, d, digest):
        R = curve.mul(kk, curve.G)
        r = R.x % n
        s = pow(kk, -1, n) * (e + d * r) % n if r else 0
        if r and s:
            return r, s
    raise ValueError("the given nonce gives r = 0 or s = 0")


def verify(curve: Curve, Q: Point, digest: bytes, r: int, s: int) -> bool:
    """True only for a valid signature; never raises on bad values."""
    n = curve.n
    try:
        if not (1 <= r < n and 1 <= s < n) or Q.infinity or not curve.on_curve(Q):
            return False
        if not curve.mul(n, Q, reduce=False).infinity:
            return False  # not in the prime-order subgroup
        e = digest_to_int(curve, digest)
        w = pow(s, -1, n)
        X = curve.mul_add(e * w % n, curve.G, r * w % n, Q)
        return not X.infinity and X.x % n == r
    except (ValueError, ZeroDivisionError, TypeError):
        return False
