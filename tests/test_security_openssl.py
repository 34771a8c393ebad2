"""ECDSA, public keys and ECQV on sect163k1 and sect283k1 with OpenSSL as the oracle.

Our sign and verify share ``digest_to_int`` and the curve arithmetic, so a round trip through
them cannot see a consistent mistake (a digest read little-endian, a wrong curve constant, a
truncation off by a few bits). Here the other side of every check is the ``openssl`` command
line, which knows nothing of our code: it verifies our signatures, signs for us to verify,
derives public keys from our private scalars, and (ECQV) computes the public key an implicit
certificate must reconstruct to from the scalars behind it. The certificates' bytes and their
hash e are built here by the SE layout (Annex C) and AES-MMO (pinned by published vectors),
not by ``ecqv``'s own encoder.

An openssl without one of the curves fails these tests under CI (skips elsewhere).
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from ke_support import openssl, openssl_public_key, write_private_der, write_public_der
from required_tools import missing, require_tool

from sep.security import ecdsa, ecqv
from sep.security.aes_mmo import aes_mmo
from sep.security.curves import SECT163K1, SECT283K1, Curve, point_from_bytes, point_to_bytes

CURVES = [SECT163K1, SECT283K1]
# The group orders from SEC 2 v2 (3.2.1, 3.4.1), written here again rather than read from
# curves.py, so that a mistyped constant there is seen.
ORDERS = {
    "sect163k1": 0x04000000000000000000020108A2E0CC0D99F8A5EF,
    "sect283k1": 0x01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE9AE2ED07577265DFF7F94451E061E163C61,
}


@pytest.fixture(params=CURVES, ids=lambda c: c.name)
def curve(request) -> Curve:
    """A curve the local openssl knows (missing: fails under CI, skips elsewhere)."""
    c = request.param
    listed = subprocess.run([require_tool("openssl"), "ecparam", "-list_curves"],
                            capture_output=True, text=True, check=True).stdout
    if not any(line.strip().startswith(c.name + " ") or line.strip().startswith(c.name + ":")
               for line in listed.splitlines()):
        missing(f"an openssl that knows {c.name}")
    return c


def digests(curve: Curve, rng: random.Random) -> list[bytes]:
    """Zigbee's 16-byte AES-MMO digests (shorter than n: taken whole), the edge values, and
    digests longer than n (SEC 1 4.1.3 step 5: their leftmost bits)."""
    n_bytes = (curve.n.bit_length() + 7) // 8
    return [rng.randbytes(16), rng.randbytes(16), bytes(16), b"\xff" * 16,
            b"\x80" + bytes(15), rng.randbytes(n_bytes), rng.randbytes(n_bytes + 9),
            b"\xff" * (n_bytes + 5)]


def keys(curve: Curve, rng: random.Random) -> list[int]:
    n = ORDERS[curve.name]
    return [1, 2, n - 1, rng.randrange(1, n), rng.randrange(1, n)]


def openssl_sign(curve: Curve, d: int, digest: bytes, tmp: Path) -> tuple[int, int]:
    key = tmp / "k.der"
    write_private_der(curve.name, d, key)
    der = openssl("pkeyutl", "-sign", "-inkey", str(key), "-keyform", "DER", data=digest)
    return decode_dss_signature(der)


def openssl_verifies(curve: Curve, public: bytes, digest: bytes, r: int, s: int,
                     tmp: Path) -> bool:
    pub, sig, dg = tmp / "p.der", tmp / "sig.der", tmp / "digest"
    write_public_der(curve.name, public, pub)
    sig.write_bytes(encode_dss_signature(r, s))
    dg.write_bytes(digest)
    done = subprocess.run([require_tool("openssl"), "pkeyutl", "-verify", "-pubin", "-inkey",
                           str(pub), "-keyform", "DER", "-in", str(dg), "-sigfile", str(sig)],
                          capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr  # 1: "Signature Verification Failure"
    return done.returncode == 0


def test_the_curve_constants_are_sec2s():
    assert {c.name: c.n for c in CURVES} == ORDERS


def test_our_public_key_is_openssls(curve):
    """d·G by our López–Dahab/wNAF arithmetic and compression equals OpenSSL's."""
    rng = random.Random(f"pub-{curve.name}")
    for d in keys(curve, rng):
        ours = point_to_bytes(curve, ecdsa.public_key(curve, d))
        assert ours == openssl_public_key(curve.name, d), hex(d)


def test_openssl_verifies_our_signatures(curve, tmp_path):
    rng = random.Random(f"sign-{curve.name}")
    for d in keys(curve, rng)[2:]:
        public = openssl_public_key(curve.name, d)  # OpenSSL's own idea of our key
        for digest in digests(curve, rng):
            r, s = ecdsa.sign(curve, d, digest)
            assert openssl_verifies(curve, public, digest, r, s, tmp_path), (hex(d), digest.hex())
        # and the oracle is not blind: a signature for another digest is refused
        digest = rng.randbytes(16)
        r, s = ecdsa.sign(curve, d, digest)
        assert not openssl_verifies(curve, public, bytes([digest[0] ^ 1]) + digest[1:], r, s,
                                    tmp_path)


def test_we_verify_openssls_signatures(curve, tmp_path):
    rng = random.Random(f"verify-{curve.name}")
    for d in keys(curve, rng)[2:]:
        Q = point_from_bytes(curve, openssl_public_key(curve.name, d))
        for digest in digests(curve, rng):
            r, s = openssl_sign(curve, d, digest, tmp_path)
            assert ecdsa.verify(curve, Q, digest, r, s), (hex(d), digest.hex())
            assert not ecdsa.verify(curve, Q, bytes([digest[0] ^ 0x01]) + digest[1:], r, s)


# ------------------------------------------------------------------------------------ ECQV


def cert_bytes(curve: Curve, reconstruction: bytes, subject: bytes, issuer: bytes) -> bytes:
    """An implicit certificate by the SE layout (SE 1.x / 1.2 Annex C)."""
    if curve is SECT163K1:  # P (22) ‖ subject (8) ‖ issuer (8) ‖ profile data (10)
        return reconstruction + subject + issuer + bytes(10)
    # type ‖ serial (8) ‖ curve 0x0D ‖ hash 0x08 ‖ issuer (8) ‖ valid from (5) ‖ valid to (4)
    # ‖ subject (8) ‖ key usage ‖ P (37)
    return (b"\x00" + bytes.fromhex("0102030405060708") + b"\x0d\x08" + issuer
            + bytes.fromhex("0000000001") + b"\xff" * 4 + subject + b"\x88" + reconstruction)


def test_ecqv_reconstructs_the_key_openssl_derives_from_the_scalars(curve):
    """Q = e·P + Q_CA. With P = p·G and Q_CA = c·G, that is (e·p + c)·G, which OpenSSL derives
    from the scalar alone; e = AES-MMO(certificate) as a big-endian integer mod n."""
    n = ORDERS[curve.name]
    rng = random.Random(f"ecqv-{curve.name}")
    for _ in range(3):
        p, c = rng.randrange(1, n), rng.randrange(1, n)
        recon = openssl_public_key(curve.name, p)
        q_ca = openssl_public_key(curve.name, c)
        raw = cert_bytes(curve, recon, rng.randbytes(8), b"TESTCA01")
        kind = ecqv.Suite1Certificate if curve is SECT163K1 else ecqv.Suite2Certificate
        cert = kind.from_bytes(raw)
        e = int.from_bytes(aes_mmo(raw), "big") % n
        want = openssl_public_key(curve.name, (e * p + c) % n)
        assert point_to_bytes(curve, ecqv.reconstruct_public_key(cert, q_ca)) == want


def test_ecqv_issued_private_key_matches_the_reconstructed_public_key(curve):
    """The CA side and the device side: d = e·k + r must be the private key of the public key
    anyone reconstructs from the certificate; OpenSSL derives d·G."""
    n = ORDERS[curve.name]
    rng = random.Random(f"issue-{curve.name}")
    ca_d, k = rng.randrange(1, n), rng.randrange(1, n)
    q_ca = openssl_public_key(curve.name, ca_d)
    request = point_from_bytes(curve, openssl_public_key(curve.name, k))
    cert, r = ecqv.issue_certificate(curve, ca_d, request, subject=rng.randbytes(8),
                                     issuer=b"TESTCA01")
    raw = cert.to_bytes()
    if curve is SECT163K1:  # (suite 2's serial and validity are the CA's to choose)
        assert raw == cert_bytes(curve, cert.reconstruction, cert.subject, b"TESTCA01")
    e = int.from_bytes(aes_mmo(raw), "big") % n
    d = ecqv.private_key_from_reconstruction(cert, r, k)
    assert d == (e * k + r) % n
    assert point_to_bytes(curve, ecqv.reconstruct_public_key(cert, q_ca)) == \
        openssl_public_key(curve.name, d)



def test_nonces_are_deterministic_and_never_repeat_across_digests_or_keys(curve):
    """Two signatures with one nonce give the private key away (d = (s1 e2 - s2 e1) /
    (r (s2 - s1))), so r must differ for every (key, digest); one (key, digest) signs the same
    way twice (the nonce is derived, not drawn)."""
    n = ORDERS[curve.name]
    rng = random.Random(f"nonce-{curve.name}")
    d1, d2 = rng.randrange(1, n), rng.randrange(1, n)
    digest = rng.randbytes(16)
    assert ecdsa.sign(curve, d1, digest) == ecdsa.sign(curve, d1, digest)
    rs = [ecdsa.sign(curve, d, g)[0] for d in (d1, d2) for g in
          [digest, bytes(16), *(rng.randbytes(16) for _ in range(6))]]
    assert len(set(rs)) == len(rs)


def test_r_is_the_x_of_the_nonce_point_openssl_computes(curve):
    """sign() with a given nonce k: r = x(k·G) mod n, s = k⁻¹(e + d·r) mod n (SEC 1 4.1.3),
    with k·G from OpenSSL and e the digest's big-endian integer."""
    n = ORDERS[curve.name]
    rng = random.Random(f"given-k-{curve.name}")
    d, k, digest = rng.randrange(1, n), rng.randrange(1, n), rng.randbytes(16)
    kg = openssl_public_key(curve.name, k)
    x = int.from_bytes(kg[1:], "big")
    r, s = ecdsa.sign(curve, d, digest, k=k)
    assert r == x % n
    assert s == pow(k, -1, n) * (int.from_bytes(digest, "big") + d * r) % n


def test_boundary_signatures(curve, tmp_path):
    """A signature with s = 1 or s = n - 1 is valid when the key fits it (built here:
    d = (k·s - e) / r mod n) and OpenSSL agrees; r or s of 0 or n never is."""
    n = ORDERS[curve.name]
    rng = random.Random(f"edge-{curve.name}")
    digest = rng.randbytes(16)
    e = int.from_bytes(digest, "big")
    for s in (1, n - 1):
        k = rng.randrange(1, n)
        r = int.from_bytes(openssl_public_key(curve.name, k)[1:], "big") % n
        d = (k * s - e) * pow(r, -1, n) % n
        public = openssl_public_key(curve.name, d)
        assert openssl_verifies(curve, public, digest, r, s, tmp_path)
        Q = point_from_bytes(curve, public)
        assert ecdsa.verify(curve, Q, digest, r, s)
        for bad_r, bad_s in [(r, 0), (r, n), (r, n + s), (0, s), (n, s), (r + n, s)]:
            assert not ecdsa.verify(curve, Q, digest, bad_r, bad_s), (bad_r, bad_s)


def test_a_given_nonce_that_makes_s_zero_is_refused_and_keys_stay_in_range(curve):
    """s = k⁻¹(e + d·r) is 0 for the key d = -e/r: sign() must refuse that nonce rather than
    return a signature no verifier takes; and d must lie in [1, n - 1] (d = n is the point at
    infinity)."""
    n = ORDERS[curve.name]
    rng = random.Random(f"s-zero-{curve.name}")
    k, digest = rng.randrange(1, n), rng.randbytes(16)
    r = int.from_bytes(openssl_public_key(curve.name, k)[1:], "big") % n
    d = -int.from_bytes(digest, "big") * pow(r, -1, n) % n
    with pytest.raises(ValueError, match="nonce"):
        ecdsa.sign(curve, d, digest, k=k)
    for bad in (0, n, n + 1):
        with pytest.raises(ValueError, match="private key"):
            ecdsa.public_key(curve, bad)


def test_nonces_span_the_whole_range(curve):
    """A nonce with its top bits stuck (a biased nonce) leaks the key over many signatures
    (lattice attacks). Each k is recovered as s⁻¹(e + d·r) mod n: over 48 signatures some
    lie in the upper half of [1, n) and some in the lower."""
    n = ORDERS[curve.name]
    rng = random.Random(f"spread-{curve.name}")
    d = rng.randrange(1, n)
    ks = []
    for _ in range(48):
        digest = rng.randbytes(16)
        r, s = ecdsa.sign(curve, d, digest)
        ks.append(pow(s, -1, n) * (int.from_bytes(digest, "big") + d * r) % n)
    assert max(ks) > n // 2 > min(ks)


def test_a_signature_forged_for_the_point_at_infinity_is_refused(curve):
    """With Q = O, u1·G + u2·Q is u1·G: anyone can make (r, s) = (x(e·G) mod n, 1) "verify".
    The public key at infinity must be refused before that (x(e·G) from OpenSSL)."""
    from sep.security.curves import INFINITY

    n = ORDERS[curve.name]
    digest = random.Random(f"inf-{curve.name}").randbytes(16)
    e = int.from_bytes(digest, "big")
    r = int.from_bytes(openssl_public_key(curve.name, e)[1:], "big") % n
    assert not ecdsa.verify(curve, INFINITY, digest, r, 1)
