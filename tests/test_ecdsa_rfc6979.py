"""ECDSA's deterministic nonces are RFC 6979 section 3.2 exactly: the RFC's own vector for
NIST K-283 (= sect283k1, suite 2), SHA-256, message "sample" (RFC 6979 A.2.10), fixes the
key pair, the nonce k and the signature (r, s)."""

from __future__ import annotations

import hashlib
import random

import pytest
from ecdsa.rfc6979 import generate_k

from sep.security import ecdsa
from sep.security.curves import SECT163K1, SECT283K1


def h(text: str) -> int:
    return int(text.replace(" ", ""), 16)


# RFC 6979 A.2.10, "With SHA-256, message = "sample""
X = h("06A0777356E87B89BA1ED3A3D845357BE332173C8F7A65BDC7DB4FAB3C4CC79A CC8194E")
UX = h("25330D0A651D5A20DC6389BC02345117725640AEC3C126612CE444EDD19649BD ECC03D6")
UY = h("505BD60A4B67182474EC4D1C668A73140F70504A68F39EFCD972487E9530E050 8A76193")
K = h("1CEB9E8E0DFF53CE687DEB81339ACA3C98E7A657D5A9499EF779F887A934408E CBE5A38")
R = h("19E90AA3DE5FB20AED22879F92C6FED278D9C9B9293CC5E94922CD952C9DBF20 DF1753A")
S = h("135AA7443B6A25D11BB64AC482E04D47902D017752882BD72527114F46CF8BB5 6C5A8C3")
DIGEST = hashlib.sha256(b"sample").digest()


def test_the_key_pair_is_the_rfcs() -> None:
    q = ecdsa.public_key(SECT283K1, X)
    assert (q.x, q.y) == (UX, UY)


def test_the_first_nonce_is_the_rfcs_k() -> None:
    assert next(ecdsa._nonces(SECT283K1, X, DIGEST)) == K


def test_the_signature_is_the_rfcs_and_verifies() -> None:
    assert ecdsa.sign(SECT283K1, X, DIGEST) == (R, S)
    assert ecdsa.verify(SECT283K1, ecdsa.public_key(SECT283K1, X), DIGEST, R, S)


# -- every curve, any digest, the retry loop: python-ecdsa's RFC 6979 generate_k ----------------

@pytest.mark.parametrize("curve", [SECT163K1, SECT283K1], ids=["sect163k1", "sect283k1"])
def test_nonces_match_python_ecdsas_rfc6979_including_its_retries(curve) -> None:
    """python-ecdsa's ``generate_k`` (an independent RFC 6979 implementation) gives the same
    nonces, the retries too (``retry_gen``), for 16-byte AES-MMO digests as Zigbee signs and
    SHA-256 ones. On sect163k1 about half the first candidates are >= n (qlen = 163 bits,
    n just above 2^162), so the RFC's inner loop runs as well."""
    rng = random.Random(6979)
    for _ in range(12):
        d = rng.randrange(1, curve.n)
        digest = rng.randbytes(rng.choice((16, 32)))
        ours = ecdsa._nonces(curve, d, digest)
        for retry in range(3):
            assert next(ours) == generate_k(curve.n, d, hashlib.sha256, digest,
                                            retry_gen=retry), (hex(d), digest.hex(), retry)
