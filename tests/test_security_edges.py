"""sep.security at its edges: the cases a mutation run (issue #20) found no test looking at.

Every expectation comes from outside our code: FIPS-197's worked products in GF(2^8) (the same
polynomial-basis arithmetic as the curves' fields), the reduction polynomials and orders of
SEC 2, SEC 1's point encodings, the published suite-1 CBKE vectors (``shared/vectors``), the
formulas of SE Annex C written out here byte by byte (KDF, MACU), and the ``openssl`` command
line, which derives public keys and signs and verifies for us.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
import shared_vectors
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from ke_support import openssl, openssl_public_key, write_private_der, write_public_der
from required_tools import require_tool

from sep.security import cbke, ecdsa, ecmqv, gf2m
from sep.security.aes_mmo import aes_mmo, hmac_aes_mmo
from sep.security.cbke_engine import SepCbkeEngine
from sep.security.curves import (
    INFINITY,
    SECT163K1,
    SECT283K1,
    Point,
    point_from_bytes,
    point_to_bytes,
    scalar_mult,
)
from sep.security.gf2m import Field

VECTORS = shared_vectors.load()
C1 = VECTORS["cbke_suite1"]
U, V = C1["device_2"], C1["device_1"]  # the vectors' notes: device_2 initiates
CA1 = bytes.fromhex(C1["ca_public_key_hex"])
CURVES = [SECT163K1, SECT283K1]
SUITE = {"sect163k1": 1, "sect283k1": 2}
# SEC 2 v2, 3.2.1 and 3.4.1: f(x) = x^163 + x^7 + x^6 + x^3 + 1, x^283 + x^12 + x^7 + x^5 + 1
POLY = {"sect163k1": (1 << 163) | 0xC9, "sect283k1": (1 << 283) | 0x10A1}
ORDER = {
    "sect163k1": 0x04000000000000000000020108A2E0CC0D99F8A5EF,
    "sect283k1": 0x01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE9AE2ED07577265DFF7F94451E061E163C61,
}
COFACTOR = {"sect163k1": 2, "sect283k1": 4}
LENGTH = {"sect163k1": 21, "sect283k1": 36}  # ceil(m / 8) = ceil(bits(n) / 8)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# ------------------------------------------------------------------------------------ GF(2^m)

def aes_field() -> Field:
    """x^8 + x^4 + x^3 + x + 1, FIPS-197 4.2 (built in the test: a Field made at import time
    would escape the mutation run)."""
    return Field(8, (4, 3, 1, 0))


def test_field_products_are_fips197s():
    """FIPS-197 4.2: {57}·{83} = {c1}; 4.2.1: {57}·{02} = {ae}, ·{04} = {47}, ·{08} = {8e},
    ·{10} = {07}, ·{13} = {fe}; 5.1.1: the inverse of {53} is {ca}."""
    f = aes_field()
    assert f.m == 8 and f.poly == 0x11B and f.mask == 0xFF and f.byte_len == 1
    for a, b, want in [(0x57, 0x83, 0xC1), (0x57, 0x02, 0xAE), (0x57, 0x04, 0x47),
                       (0x57, 0x08, 0x8E), (0x57, 0x10, 0x07), (0x57, 0x13, 0xFE),
                       (0x53, 0xCA, 0x01)]:
        assert f.mul(a, b) == want and f.mul(b, a) == want, (hex(a), hex(b))
    assert f.inv(0x53) == 0xCA and f.inv(0xCA) == 0x53 and f.inv(1) == 1
    assert f.div(0xC1, 0x83) == 0x57
    assert f.mul(0, 0x57) == f.mul(0x57, 0) == 0
    assert f.sqr(0x57) == f.mul(0x57, 0x57)
    for a in range(1, 256):  # squaring and the inverse agree with the pinned product
        assert f.sqr(a) == f.mul(a, a)
        assert f.mul(a, f.inv(a)) == 1


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_the_curve_fields_are_sec2s(curve):
    m = POLY[curve.name].bit_length() - 1
    low = tuple(k for k in range(m) if POLY[curve.name] >> k & 1)
    assert curve.field.poly == POLY[curve.name]
    f = Field(m, low)
    assert f.m == m and f.poly == POLY[curve.name] and f.byte_len == LENGTH[curve.name]
    assert f.mask == (1 << m) - 1
    assert f.reduce(1 << m) == POLY[curve.name] ^ (1 << m)  # x^m = the low terms
    assert f.mul(1 << (m - 1), 2) == POLY[curve.name] ^ (1 << m)
    assert f.sqr(1 << (m - 1)) == f.mul(1 << (m - 1), 1 << (m - 1))
    top = (1 << m) - 1
    assert f.to_bytes(top) == top.to_bytes(LENGTH[curve.name], "big")
    assert f.from_bytes(top.to_bytes(LENGTH[curve.name], "big")) == top
    with pytest.raises(ValueError):
        f.from_bytes((1 << m).to_bytes(LENGTH[curve.name], "big"))
    with pytest.raises(ZeroDivisionError):
        f.inv(0)
    with pytest.raises(ZeroDivisionError):
        f.div(1, 0)
    rng = random.Random(curve.name)
    for _ in range(20):
        z = rng.getrandbits(m)
        a = f.sqr(z) ^ z  # z^2 + z = a has the roots z and z + 1; the half-trace finds one
        assert f.half_trace(a) in (z, z ^ 1)
        assert f.mul(z | 1, f.inv(z | 1)) == 1


def test_half_trace_needs_an_odd_degree():
    with pytest.raises(ValueError):
        aes_field().half_trace(0x57)


def test_squaring_spreads_the_bits():
    """In GF(2)[x], (sum a_i x^i)^2 = sum a_i x^(2i): bit i goes to bit 2i (the table the
    squaring uses is built at import time, so it is checked here directly)."""
    for b in range(256):
        assert gf2m._spread(b) == sum(1 << (2 * i) for i in range(8) if b >> i & 1)
        assert gf2m._SPREAD[b] == gf2m._spread(b)


# ------------------------------------------------------------------------------------- curves


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_the_point_of_order_two(curve):
    """x = 0 gives y^2 = b = 1: T = (0, 1), its own negative (y = x + y), of order 2; SEC 1
    2.3.3 encodes it with y~ = 0, and it lies outside the prime-order subgroup, so it is no
    public key (the order check of ``verify``)."""
    T = Point(0, 1)
    n = ORDER[curve.name]
    assert curve.on_curve(T) and curve.neg(T) == T
    assert curve.double(T) == INFINITY and curve.add(T, T) == INFINITY
    assert curve.mul(2, T, reduce=False) == INFINITY
    assert curve.mul(3, T, reduce=False) == T and curve.mul(n, T, reduce=False) == T
    enc = point_to_bytes(curve, T)
    assert enc == b"\x02" + bytes(LENGTH[curve.name])
    assert point_from_bytes(curve, enc) == T
    assert point_from_bytes(curve, b"\x03" + bytes(LENGTH[curve.name])) == T
    digest = bytes(range(16))
    for r, s in [(1, 1), (2, 3)]:
        assert not ecdsa.verify(curve, T, digest, r, s)


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_adding_a_point_to_itself_inside_the_ladder(curve):
    """k = n ± 2 (not reduced): the last window addition meets the running sum equal to the
    point it adds (the doubling case of the mixed addition). k·G must be ±2·G as OpenSSL
    computes it."""
    n = ORDER[curve.name]
    for j in (2, -2, 4, -4, 6, 1):
        got = curve.mul(n + j, curve.G, reduce=False)
        assert point_to_bytes(curve, got) == openssl_public_key(curve.name, j % n), j
        assert scalar_mult(curve, n + j, curve.G) == got  # reduced mod n: the same point
    assert curve.mul(0, curve.G) == INFINITY and curve.mul(5, INFINITY) == INFINITY
    assert curve.mul(n, curve.G) == INFINITY  # reduced: 0


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_small_multiples_and_the_affine_law_against_openssl(curve):
    G = curve.G
    multiples = {j: point_from_bytes(curve, openssl_public_key(curve.name, j))
                 for j in (2, 3, 4, 5, 7)}
    assert curve.double(G) == multiples[2]
    assert curve.add(G, multiples[2]) == multiples[3] == curve.add(multiples[2], G)
    assert curve.add(multiples[2], multiples[3]) == multiples[5]
    assert curve.add(multiples[4], multiples[3]) == multiples[7]
    assert curve.add(G, curve.neg(G)) == INFINITY
    assert curve.add(INFINITY, G) == G == curve.add(G, INFINITY)
    assert curve.neg(INFINITY) == INFINITY
    for j, P in multiples.items():
        assert curve.mul(j, G) == P
    assert curve.mul_add(2, G, 3, G) == multiples[5]


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_coordinates_must_be_field_elements(curve):
    """x + f(x) is x in the field but not a field element: SEC 1 refuses it."""
    poly = POLY[curve.name]
    G = curve.G
    assert curve.on_curve(G)
    assert not curve.on_curve(Point(G.x ^ poly, G.y))
    assert not curve.on_curve(Point(G.x, G.y ^ poly))
    assert not curve.on_curve(Point(G.x, G.y ^ 1))
    assert curve.on_curve(INFINITY)


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_point_encodings_sec1(curve):
    n = LENGTH[curve.name]
    G = curve.G
    assert curve.m == POLY[curve.name].bit_length() - 1
    assert curve.coord_len == n and curve.scalar_len == n
    assert point_to_bytes(curve, INFINITY) == b"\x00"  # SEC 1 2.3.3 step 1
    assert point_to_bytes(curve, G, compressed=False) == \
        b"\x04" + G.x.to_bytes(n, "big") + G.y.to_bytes(n, "big")
    assert point_to_bytes(curve, G) == openssl_public_key(curve.name, 1)
    for bad in [b"", b"\x00", b"\x04" + G.x.to_bytes(n, "big"),
                b"\x02" + G.x.to_bytes(n, "big") + G.y.to_bytes(n, "big"),
                b"\x02" + G.x.to_bytes(n, "big")[1:], b"\x01" + G.x.to_bytes(n, "big"),
                b"\x02" + (1 << curve.m).to_bytes(n, "big"),
                b"\x04" + (G.x | 1 << curve.m).to_bytes(n, "big") + G.y.to_bytes(n, "big")]:
        with pytest.raises(ValueError):
            point_from_bytes(curve, bad)


# -------------------------------------------------------------------------------------- ECDSA


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_generated_keys_span_one_to_n_minus_one(curve, monkeypatch):
    """SEC 1 3.2.1: d in [1, n - 1]; with the random source at its two ends, d is 1 and n - 1."""
    import secrets

    n = ORDER[curve.name]
    monkeypatch.setattr(secrets, "randbelow", lambda bound: bound - 1)
    assert ecdsa.generate_private_key(curve) == n - 1
    monkeypatch.setattr(secrets, "randbelow", lambda bound: 0)
    assert ecdsa.generate_private_key(curve) == 1


# -------------------------------------------------------------------------------------- ECMQV


def pt(text: str) -> Point:
    return point_from_bytes(SECT163K1, h(text))


def test_kdf_and_macu_by_annex_c():
    """SE Annex C.4.2: MacKey = AES-MMO(Z ‖ 00000001), key data = AES-MMO(Z ‖ 00000002), MACU
    = MAC(MacKey, 02 ‖ IEEE_U ‖ IEEE_V ‖ QEU ‖ QEV), with Z from the published vectors."""
    z = h(C1["shared_secret_z_hex"])
    mac_key, key_data = ecmqv.kdf(z)
    assert mac_key.hex() == C1["mac_key_hex"]
    assert key_data == aes_mmo(z + b"\x00\x00\x00\x02")
    ids = h(U["ieee_hex"]), h(V["ieee_hex"])
    qe = h(U["ephemeral_public_key_hex"]), h(V["ephemeral_public_key_hex"])
    assert ecmqv.mac_u(mac_key, *ids, *qe) == \
        hmac_aes_mmo(mac_key, b"\x02" + ids[0] + ids[1] + qe[0] + qe[1])
    assert ecmqv.mac_v(mac_key, *ids, *qe).hex() == C1["macv_hex"]


def test_shared_secret_refuses_keys_that_are_not_points():
    d1, d2 = int(U["private_key_hex"], 16), int(U["ephemeral_private_key_hex"], 16)
    own = pt(U["ephemeral_public_key_hex"])
    q1, q2 = pt(V["public_key_hex"]), pt(V["ephemeral_public_key_hex"])
    off = Point(q1.x, q1.y ^ 1)
    for a, b in [(INFINITY, q2), (q1, INFINITY), (off, q2), (q1, off)]:
        with pytest.raises(ValueError):
            ecmqv.shared_secret(SECT163K1, d1, d2, own, a, b)
    # the vectors' own values give Z
    assert ecmqv.shared_secret(SECT163K1, d1, d2, own, q1, q2).hex() == \
        C1["shared_secret_z_hex"]


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_ecmqv_is_the_point_openssl_derives_from_the_combined_scalar(curve):
    """SEC 1 3.4: with static/ephemeral keys (a1, a2) and (b1, b2), Z = x(h · sU · sV · G),
    sU = a2 + avf(QE_U)·a1, sV = b2 + avf(QE_V)·b1, avf(Q) = (x mod 2^ceil(f/2)) + 2^ceil(f/2),
    f = bits(n). The public keys and the final point come from OpenSSL."""
    n = ORDER[curve.name]
    half = -(-n.bit_length() // 2)
    rng = random.Random(f"mqv-{curve.name}")
    while True:  # keys for which h·sU mod n and avf(QE_V) are odd (the cofactor check below)
        a1, a2, b1, b2 = (rng.randrange(1, n) for _ in range(4))
        pub = {k: openssl_public_key(curve.name, k) for k in (a1, a2, b1, b2)}

        def avf(enc: bytes) -> int:
            return int.from_bytes(enc[1:], "big") % (1 << half) + (1 << half)

        s_u = (a2 + avf(pub[a2]) * a1) % n
        s_v = (b2 + avf(pub[b2]) * b1) % n
        if COFACTOR[curve.name] * s_u % n % 2 and avf(pub[b2]) % 2:
            break
    want = openssl_public_key(curve.name, COFACTOR[curve.name] * s_u * s_v % n)[1:]

    def P(k: int) -> Point:
        return point_from_bytes(curve, pub[k])

    assert ecmqv.associate_value(curve, P(a2)) == avf(pub[a2])
    assert ecmqv.shared_secret(curve, a1, a2, P(a2), P(b1), P(b2)) == want
    assert ecmqv.shared_secret(curve, b1, b2, P(b2), P(a1), P(a2)) == want
    # The cofactor h clears a small-order part of the partner's static key (T = (0, 1), of
    # order 2): Z is unchanged. (Multiplying by h·sU mod n instead would not clear it.)
    assert ecmqv.shared_secret(curve, a1, a2, P(a2), curve.add(P(b1), Point(0, 1)),
                               P(b2)) == want


# ------------------------------------------------------------------------------- CBKE (suite 1)


def test_cbke_functions_reproduce_the_published_exchange():
    z = h(C1["shared_secret_z_hex"])
    assert cbke.ephemeral_public(1, int(U["ephemeral_private_key_hex"], 16)).hex() == \
        U["ephemeral_public_key_hex"]
    assert cbke.partner_static_key(1, h(V["certificate_hex"]), CA1).hex() == V["public_key_hex"]
    ids = h(U["ieee_hex"]), h(V["ieee_hex"])
    qe = h(U["ephemeral_public_key_hex"]), h(V["ephemeral_public_key_hex"])
    macu = hmac_aes_mmo(h(C1["mac_key_hex"]), b"\x02" + ids[0] + ids[1] + qe[0] + qe[1])
    for me, peer in ((U, V), (V, U)):
        keys = cbke.derive(1, own_static=int(me["private_key_hex"], 16),
                           own_ephemeral=int(me["ephemeral_private_key_hex"], 16),
                           own_ephemeral_public=h(me["ephemeral_public_key_hex"]),
                           partner_static_public=h(peer["public_key_hex"]),
                           partner_ephemeral_public=h(peer["ephemeral_public_key_hex"]),
                           ieee_u=ids[0], ieee_v=ids[1], qe_u=qe[0], qe_v=qe[1])
        assert keys.mac_v.hex() == C1["macv_hex"]
        assert keys.mac_u == macu
        assert keys.link_key == aes_mmo(z + b"\x00\x00\x00\x02")
    assert cbke.same_mac(macu, bytearray(macu))
    assert not cbke.same_mac(macu, macu[:-1] + bytes([macu[-1] ^ 1]))
    assert not cbke.same_mac(macu, macu[:-1])


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_check_ephemeral_takes_only_compressed_curve_points(curve):
    suite = SUITE[curve.name]
    n = LENGTH[curve.name]
    good = openssl_public_key(curve.name, 12345)
    assert cbke.check_ephemeral(suite, good)
    assert cbke.check_ephemeral(suite, bytes([good[0] ^ 1]) + good[1:])  # the other y
    P = point_from_bytes(curve, good)
    other = LENGTH["sect283k1" if suite == 1 else "sect163k1"]
    for bad in [point_to_bytes(curve, P, compressed=False), b"\x04" + good[1:],
                b"\x00" + good[1:], b"\x01" + good[1:], good[:-1], good + b"\x00", b"",
                b"\x00", b"\x02" + (1 << curve.m).to_bytes(n, "big"),
                b"\x02" + bytes(other)]:
        assert not cbke.check_ephemeral(suite, bad), bad.hex()
    for x in range(2, 200):  # an x with no point on the curve
        enc = b"\x02" + x.to_bytes(n, "big")
        try:
            point_from_bytes(curve, enc)
        except ValueError:
            assert not cbke.check_ephemeral(suite, enc)
            break


# ----------------------------------------------------------------- the NCP emulator's CBKE engine


def vector_engine(dev: dict) -> SepCbkeEngine:
    eph = int(dev["ephemeral_private_key_hex"], 16)
    return SepCbkeEngine(ephemeral_source=lambda curve: eph)


class Own:
    def __init__(self, dev: dict) -> None:
        self.ca_public_key = CA1
        self.certificate = h(dev["certificate_hex"])
        self.private_key = h(dev["private_key_hex"])


def test_engine_reproduces_the_published_exchange_from_either_side():
    z = h(C1["shared_secret_z_hex"])
    ids = h(U["ieee_hex"]), h(V["ieee_hex"])
    qe = h(U["ephemeral_public_key_hex"]), h(V["ephemeral_public_key_hex"])
    macu = hmac_aes_mmo(h(C1["mac_key_hex"]), b"\x02" + ids[0] + ids[1] + qe[0] + qe[1])
    for me, peer, initiator in ((U, V, True), (V, U, False)):
        eng = vector_engine(me)
        d, q = eng.generate_keys(1)
        assert d == h(me["ephemeral_private_key_hex"]) and len(d) == 21
        assert q.hex() == me["ephemeral_public_key_hex"]
        smacs = eng.calculate_smacs(1, Own(me), d, q, initiator, h(peer["certificate_hex"]),
                                    h(peer["ephemeral_public_key_hex"]))
        assert smacs.responder_smac.hex() == C1["macv_hex"]
        assert smacs.initiator_smac == macu
        assert smacs.link_key == aes_mmo(z + b"\x00\x00\x00\x02")


def test_engine_refuses_what_it_cannot_use():
    eng = vector_engine(U)
    d, q = eng.generate_keys(1)
    cert, peer_q = h(V["certificate_hex"]), h(V["ephemeral_public_key_hex"])
    with pytest.raises(ValueError):  # not a compressed point
        eng.calculate_smacs(1, Own(U), d, q, True, cert, b"\x04" + peer_q[1:])
    with pytest.raises(ValueError):  # a certificate of the wrong length
        eng.calculate_smacs(1, Own(U), d, q, True, cert[:-1], peer_q)
    n = ORDER["sect163k1"]
    for bad_key in (bytes(21), n.to_bytes(21, "big"), d[1:], b"\x00" + d):
        with pytest.raises(ValueError):
            eng.calculate_smacs(1, Own(U), bad_key, q, True, cert, peer_q)
        with pytest.raises(ValueError):
            eng.dsa_sign(1, bad_key, b"data")
    assert eng.dsa_sign(1, (n - 1).to_bytes(21, "big"), b"data")  # the top key is a key


def openssl_verifies(curve: str, public: bytes, digest: bytes, signature: bytes, size: int,
                     tmp: Path) -> bool:
    pub, sig, dg = tmp / "p.der", tmp / "sig.der", tmp / "digest"
    write_public_der(curve, public, pub)
    r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
    sig.write_bytes(encode_dss_signature(r, s))
    dg.write_bytes(digest)
    done = subprocess.run([require_tool("openssl"), "pkeyutl", "-verify", "-pubin", "-inkey",
                           str(pub), "-keyform", "DER", "-in", str(dg), "-sigfile", str(sig)],
                          capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_engine_signatures_are_ecdsa_over_the_aes_mmo_digest(curve, tmp_path):
    """SE 1.4 C.7.2: r ‖ s over AES-MMO(data); OpenSSL verifies it with the key it derives."""
    suite, size = SUITE[curve.name], LENGTH[curve.name]
    d = random.Random(curve.name).randrange(1, ORDER[curve.name])
    data = b"a message the stick signs"
    sig = SepCbkeEngine().dsa_sign(suite, d.to_bytes(size, "big"), data)
    assert len(sig) == 2 * size
    public = openssl_public_key(curve.name, d)
    assert openssl_verifies(curve.name, public, aes_mmo(data), sig, size, tmp_path)
    assert not openssl_verifies(curve.name, public, aes_mmo(data + b"!"), sig, size, tmp_path)


def test_engine_verifies_openssls_signature_by_the_certificate(tmp_path):
    """device_1's key (published) signs with OpenSSL; the engine finds the signer's key from
    its certificate and the CA key (ECQV) and accepts exactly that signature."""
    eng = SepCbkeEngine()
    key = tmp_path / "k.der"
    write_private_der("sect163k1", int(V["private_key_hex"], 16), key)
    digest = aes_mmo(b"signed by device 1")
    r, s = decode_dss_signature(openssl("pkeyutl", "-sign", "-inkey", str(key), "-keyform",
                                        "DER", data=digest))
    sig = r.to_bytes(21, "big") + s.to_bytes(21, "big")
    cert = h(V["certificate_hex"])
    assert eng.dsa_verify(1, CA1, digest, cert, sig)
    assert not eng.dsa_verify(1, CA1, bytes([digest[0] ^ 1]) + digest[1:], cert, sig)
    assert not eng.dsa_verify(1, CA1, digest, h(U["certificate_hex"]), sig)  # another signer
    assert not eng.dsa_verify(1, CA1, digest, cert, sig[:-1])
    assert not eng.dsa_verify(1, CA1, digest, cert, sig + b"\x00")
    assert not eng.dsa_verify(1, CA1, digest, cert, bytes(21) + sig[21:])
    assert not eng.dsa_verify(1, CA1, digest, cert[:-1], sig)
    for x in range(2, 200):
        no_point = b"\x02" + x.to_bytes(21, "big")
        try:
            point_from_bytes(SECT163K1, no_point)
        except ValueError:
            break
    assert not eng.dsa_verify(1, CA1, digest, no_point + cert[22:], sig)


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_a_public_key_outside_the_prime_order_subgroup_is_refused(curve, tmp_path):
    """SEC 1 3.2.2.1: a public key must satisfy n·Q = O. Q + T (T = (0, 1), of order 2) is on
    the curve but not in the subgroup; for a signature whose u2 = r/s mod n is even, u2·(Q + T)
    = u2·Q, so only that order check refuses it. The signature and Q are OpenSSL's."""
    n = ORDER[curve.name]
    rng = random.Random(f"subgroup-{curve.name}")
    d = rng.randrange(1, n)
    key = tmp_path / "k.der"
    write_private_der(curve.name, d, key)
    Q = point_from_bytes(curve, openssl_public_key(curve.name, d))
    while True:
        digest = rng.randbytes(16)
        r, s = decode_dss_signature(openssl("pkeyutl", "-sign", "-inkey", str(key),
                                            "-keyform", "DER", data=digest))
        if r * pow(s, -1, n) % n % 2 == 0:
            break
    assert ecdsa.verify(curve, Q, digest, r, s)
    twisted = curve.add(Q, Point(0, 1))
    assert curve.on_curve(twisted)
    assert not ecdsa.verify(curve, twisted, digest, r, s)
    assert not ecdsa.verify(curve, Point("x", 1), digest, r, s)  # never raises


def test_a_certificate_of_another_suite_is_refused():
    """A suite-2 certificate (74 bytes) and a suite-2 CA key do not make a suite-1 partner."""
    raw2 = (b"\x00" + bytes(8) + b"\x0d\x08" + b"TESTSECA" + bytes(5) + b"\xff" * 4
            + h(V["ieee_hex"]) + b"\x88" + openssl_public_key("sect283k1", 77))
    ca2 = openssl_public_key("sect283k1", 99)
    assert cbke.partner_static_key(2, raw2, ca2)  # good for suite 2
    with pytest.raises(ValueError):
        cbke.partner_static_key(1, raw2, ca2)
    own = Own(U)
    own.certificate = raw2
    eng = vector_engine(U)
    d, q = eng.generate_keys(1)
    with pytest.raises(ValueError):
        eng.calculate_smacs(1, own, d, q, True, h(V["certificate_hex"]),
                            h(V["ephemeral_public_key_hex"]))
