"""ECDSA over the Zigbee Koblitz curves (SEC 1 4.1), on an already computed digest.

Zigbee signs the AES-MMO digest itself (16 bytes), so ``sign``/``verify`` take the digest
and convert it to an integer per SEC 1 4.1.3 step 5 (leftmost bits when longer than n).
Nonces are deterministic (RFC 6979 style HMAC-SHA256 derivation from key and digest)
unless one is given.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

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


def _nonce(curve: Curve, d: int, digest: bytes, attempt: int) -> int:
    size = curve.scalar_len
    key = d.to_bytes(size, "big")
    v, k = b"\x01" * 32, b"\x00" * 32
    seed = key + digest + attempt.to_bytes(4, "big")
    k = hmac.new(k, v + b"\x00" + seed, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    k = hmac.new(k, v + b"\x01" + seed, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    while True:
        out = b""
        while len(out) < size:
            v = hmac.new(k, v, hashlib.sha256).digest()
            out += v
        cand = int.from_bytes(out[:size], "big") >> max(0, 8 * size - curve.n.bit_length())
        if 1 <= cand < curve.n:
            return cand
        k = hmac.new(k, v + b"\x00", hashlib.sha256).digest()
        v = hmac.new(k, v, hashlib.sha256).digest()


def sign(curve: Curve, d: int, digest: bytes, k: int | None = None) -> tuple[int, int]:
    n = curve.n
    e = digest_to_int(curve, digest)
    attempt = 0
    while True:
        kk = k if k is not None else _nonce(curve, d, digest, attempt)
        R = curve.mul(kk, curve.G)
        r = R.x % n
        s = pow(kk, -1, n) * (e + d * r) % n if r else 0
        if r and s:
            return r, s
        if k is not None:
            raise ValueError("the given nonce gives r = 0 or s = 0")
        attempt += 1


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
