"""ECDSA's deterministic nonces are RFC 6979 section 3.2 exactly: the RFC's own vector for
NIST K-283 (= sect283k1, suite 2), SHA-256, message "sample" (RFC 6979 A.2.10), fixes the
key pair, the nonce k and the signature (r, s)."""

from __future__ import annotations

import hashlib

from sep.security import ecdsa
from sep.security.curves import SECT283K1


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


def test_a_nonce_that_gives_r_zero_moves_on_to_the_next_candidate() -> None:
    # the RFC's loop: when k is unusable, K = HMAC(K, V || 0x00), V = HMAC(K, V), again
    nonces = ecdsa._nonces(SECT283K1, X, DIGEST)
    first, second = next(nonces), next(nonces)
    assert first == K and second != K and 1 <= second < SECT283K1.n
