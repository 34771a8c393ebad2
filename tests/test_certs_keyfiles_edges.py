"""Certificates and key files at their edges (the mutation run of issue #20 found these cases
unchecked).

Independent truth: the certificate layouts of SE Annex C written out here byte by byte
(suite 1: P ‖ subject ‖ issuer ‖ profile data; suite 2: type ‖ serial ‖ curve ‖ hash ‖ issuer
‖ valid from ‖ valid to ‖ subject ‖ key usage ‖ P), the published suite-1 vectors, OpenSSL
(public keys from private scalars) and the file formats the ``keyfiles`` docstring promises,
read back with the standard ``json`` parser.
"""

from __future__ import annotations

import json
import random

import pytest
import shared_vectors
from ke_support import openssl_public_key

from sep.security import certs, ecqv, keyfiles
from sep.security.certs import CertificateError, Credentials
from sep.security.curves import SECT163K1, SECT283K1, point_from_bytes
from sep.security.keyfiles import KeyFileError

C1 = shared_vectors.load()["cbke_suite1"]
DEV1 = C1["device_1"]
CA1 = bytes.fromhex(C1["ca_public_key_hex"])
N = {1: SECT163K1.n, 2: SECT283K1.n}
SUBJECT = bytes.fromhex("000d6f0000000a01")
P283 = openssl_public_key("sect283k1", 0x1234567)  # a reconstruction point (37 bytes)


def suite2(*, cert_type: int = 0, serial: bytes = bytes.fromhex("0102030405060708"),
           curve: int = 0x0D, hash_id: int = 0x08, issuer: bytes = b"TESTSECA",
           valid_from: int = 1_700_000_000, valid_to: int = 0xFFFFFFFF,
           subject: bytes = SUBJECT, key_usage: int = 0x88, point: bytes = P283) -> bytes:
    """A suite-2 certificate by the SE 1.2 Annex C layout (74 bytes)."""
    return (bytes([cert_type]) + serial + bytes([curve, hash_id]) + issuer
            + valid_from.to_bytes(5, "big") + valid_to.to_bytes(4, "big") + subject
            + bytes([key_usage]) + point)


def suite1_vector() -> bytes:
    return bytes.fromhex(DEV1["certificate_hex"])


# ------------------------------------------------------------------------------ certificates


def test_suite2_fields_are_read_at_their_offsets():
    raw = suite2(valid_from=0x0102030405, valid_to=100, key_usage=0x08)
    assert len(raw) == 74
    cert = certs.parse_certificate(raw)
    assert isinstance(cert, ecqv.Suite2Certificate) and cert.to_bytes() == raw
    assert (cert.cert_type, cert.serial, cert.curve_id, cert.hash_id, cert.issuer) == \
        (0, bytes.fromhex("0102030405060708"), 0x0D, 0x08, b"TESTSECA")
    assert (cert.valid_from, cert.valid_to, cert.subject, cert.key_usage, cert.reconstruction) \
        == (bytes.fromhex("0102030405"), bytes.fromhex("00000064"), SUBJECT, 0x08, P283)
    info = certs.describe(cert)
    assert info == {
        "suite": 2, "curve": "sect283k1", "length": 74, "subject": "00:0d:6f:00:00:00:0a:01",
        "issuer": b"TESTSECA".hex(), "issuer_text": "TESTSECA", "reconstruction_point": P283.hex(),
        "type": 0, "serial": "0102030405060708", "curve_id": 0x0D, "hash_id": 0x08,
        "valid_from": 0x0102030405, "valid_to": 0x0102030405 + 100, "key_usage": 0x08,
        "key_agreement": True, "digital_signature": False}
    info = certs.describe(certs.parse_certificate(suite2(key_usage=0x80)))
    assert info["key_agreement"] is False and info["digital_signature"] is True
    assert info["valid_to"] is None  # 0xFFFFFFFF: never expires
    assert certs.suite_of(cert) == 2 and certs.subject_of(cert) == 0x000D6F0000000A01


def test_suite1_fields_and_description():
    raw = suite1_vector()
    cert = certs.parse_certificate(raw)
    assert isinstance(cert, ecqv.Suite1Certificate) and cert.to_bytes() == raw
    assert (cert.reconstruction, cert.subject, cert.issuer, cert.profile_data) == \
        (raw[:22], raw[22:30], raw[30:38], raw[38:48])
    info = certs.describe(cert)
    assert info == {"suite": 1, "curve": "sect163k1", "length": 48,
                    "subject": ":".join(f"{b:02x}" for b in raw[22:30]),
                    "issuer": raw[30:38].hex(), "issuer_text": raw[30:38].decode(),
                    "reconstruction_point": raw[:22].hex(), "profile_data": raw[38:].hex(),
                    "valid_from": None, "valid_to": None, "key_usage": None}
    assert certs.validity(cert) is None and certs.field_problem(cert, now=0) is None
    assert certs.suite_of(cert) == 1 and certs.subject_of(cert) == int(DEV1["ieee_hex"], 16)


@pytest.mark.parametrize("issuer, text", [(b"TESTSECA", "TESTSECA"), (b" ~      ", " ~      "),
                                          (b"TESTSEC\x7f", None), (b"TESTSEC\x1f", None),
                                          (bytes(8), None)])
def test_issuer_text_only_when_printable_ascii(issuer, text):
    assert certs.describe(certs.parse_certificate(suite2(issuer=issuer)))["issuer_text"] == text


def test_lengths_and_suites():
    assert certs.suite_of_length(48) == 1 and certs.suite_of_length(74) == 2
    for n in (0, 47, 49, 73, 75):
        with pytest.raises(CertificateError):
            certs.suite_of_length(n)
        with pytest.raises(CertificateError):
            certs.parse_certificate(bytes(n))
    with pytest.raises(CertificateError):
        certs.parse_certificate(suite1_vector(), 2)
    with pytest.raises(CertificateError):
        certs.parse_certificate(suite2(), 1)
    with pytest.raises(CertificateError):
        certs.parse_certificate(suite2(), 3)
    assert isinstance(certs.parse_certificate(suite2(), 2), ecqv.Suite2Certificate)
    for kind, size in ((ecqv.Suite1Certificate, 48), (ecqv.Suite2Certificate, 74)):
        with pytest.raises(ValueError):
            kind.from_bytes(bytes(size - 1))
    with pytest.raises(ValueError):
        ecqv.Suite1Certificate(bytes(21), SUBJECT, b"TESTSECA").to_bytes()
    with pytest.raises(ValueError):
        ecqv.Suite2Certificate(P283, SUBJECT[1:], b"TESTSECA").to_bytes()


@pytest.mark.parametrize("fields, why", [
    ({"cert_type": 1}, "type"), ({"curve": 0x0C}, "curve"), ({"hash_id": 0x07}, "hash"),
    ({"key_usage": 0x80}, "key agreement"), ({"key_usage": 0x00}, "key agreement")])
def test_each_suite2_field_cbke_depends_on(fields, why):
    problem = certs.field_problem(certs.parse_certificate(suite2(**fields)))
    assert problem is not None and why in problem
    assert certs.field_problem(certs.parse_certificate(suite2(key_usage=0x08))) is None
    assert certs.field_problem(certs.parse_certificate(suite2(key_usage=0xFF))) is None


def test_the_validity_period_includes_both_ends():
    start, span = 1_700_000_000, 3600
    cert = certs.parse_certificate(suite2(valid_from=start, valid_to=span))
    assert certs.validity(cert) == (start, start + span)
    assert certs.field_problem(cert) is None  # no time given: not checked
    assert certs.field_problem(cert, now=start) is None
    assert certs.field_problem(cert, now=start + span) is None
    assert "not valid before" in certs.field_problem(cert, now=start - 1)
    assert "expired" in certs.field_problem(cert, now=start + span + 1)
    forever = certs.parse_certificate(suite2(valid_from=start))
    assert certs.validity(forever) == (start, None)
    assert certs.field_problem(forever, now=2**40) is None


@pytest.mark.parametrize("suite", [1, 2])
def test_issue_checks_its_arguments(suite):
    ca_d = random.Random(suite).randrange(1, N[suite])
    with pytest.raises(CertificateError):
        certs.issue(suite, ca_d, b"TESTSECA", SUBJECT[:7])
    with pytest.raises(CertificateError):
        certs.issue(suite, ca_d, b"TESTSEC", SUBJECT)
    with pytest.raises(CertificateError):
        certs.issue(suite, ca_d, b"TESTSECA" + b"!", SUBJECT)


def test_suite2_issue_writes_the_fields_it_is_given():
    ca_d = random.Random("ca2").randrange(1, N[2])
    for bad in ({"valid_from": 1 << 40}, {"valid_from": -1}, {"valid_for": 1 << 32},
                {"valid_for": -1}):
        with pytest.raises(CertificateError):
            certs.issue(2, ca_d, b"TESTSECA", SUBJECT, **bad)
    raw, d = certs.issue(2, ca_d, b"TESTSECA", SUBJECT, valid_from=(1 << 40) - 1,
                         valid_for=0xFFFFFFFF, key_usage=0x08, serial=b"SERIAL#1")
    assert raw[0] == 0 and raw[1:9] == b"SERIAL#1" and raw[9:11] == b"\x0d\x08"
    assert raw[11:19] == b"TESTSECA" and raw[19:24] == b"\xff" * 5 and raw[24:28] == b"\xff" * 4
    assert raw[28:36] == SUBJECT and raw[36] == 0x08
    # the private key is the one the certificate binds, as OpenSSL derives its public key
    ca_pub = openssl_public_key("sect283k1", ca_d)
    q = certs.public_key(certs.parse_certificate(raw), ca_pub)
    assert q == point_from_bytes(SECT283K1, openssl_public_key("sect283k1", d))
    raw2, _ = certs.issue(2, ca_d, b"TESTSECA", SUBJECT)  # defaults: now-less, both usages
    assert raw2[19:24] == bytes(5) and raw2[24:28] == b"\xff" * 4 and raw2[36] == 0x88
    assert raw2[1:9] != raw[1:9]  # a random serial


def test_public_key_refuses_a_reconstruction_point_that_is_not_a_point():
    raw = bytearray(suite1_vector())
    for x in range(2, 200):  # an x with no point on sect163k1
        raw[:22] = b"\x02" + x.to_bytes(21, "big")
        try:
            point_from_bytes(SECT163K1, bytes(raw[:22]))
        except ValueError:
            break
    with pytest.raises(CertificateError):
        certs.public_key(certs.parse_certificate(bytes(raw)), CA1)
    # the vector's own certificate gives the published key, from the CA key as bytes or point
    cert = certs.parse_certificate(suite1_vector())
    want = point_from_bytes(SECT163K1, bytes.fromhex(DEV1["public_key_hex"]))
    assert certs.public_key(cert, CA1) == want
    assert ecqv.reconstruct_public_key(cert, point_from_bytes(SECT163K1, CA1)) == want
    assert ecqv.reconstruct_public_key(cert, bytearray(CA1)) == want


def test_credentials_check_what_they_bind():
    cert, d = suite1_vector(), int(DEV1["private_key_hex"], 16)
    good = Credentials(1, cert, d, CA1)
    good.verify()
    assert good.issuer == cert[30:38] and good.subject == int(DEV1["ieee_hex"], 16)
    assert good.curve is SECT163K1
    with pytest.raises(CertificateError):
        Credentials(3, cert, d, CA1)
    with pytest.raises(CertificateError):
        Credentials(2, cert, d, CA1)
    for bad in (0, N[1], N[1] + 1, d + 1):
        with pytest.raises(CertificateError):
            Credentials(1, cert, bad, CA1).verify()
    with pytest.raises(CertificateError):
        Credentials(1, cert, d, b"\x02" + bytes(20) + b"\x01" + b"\x00").verify()
    other_ca = openssl_public_key("sect163k1", 5)
    with pytest.raises(CertificateError):
        Credentials(1, cert, d, other_ca).verify()
    Credentials(1, cert, N[1] - 1, CA1)  # in range: only verify() says it does not fit


def test_generated_key_pairs_are_openssls():
    for suite, name in ((1, "sect163k1"), (2, "sect283k1")):
        d, q = certs.generate_key_pair(suite)
        assert 1 <= d < N[suite] and q == openssl_public_key(name, d)


# ------------------------------------------------------------------------------- key files


def write(directory, files: keyfiles.Files) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (content, mode) in files.items():
        path = directory / name
        path.write_bytes(content)
        path.chmod(mode)


def test_ca_and_credential_files_have_the_documented_format(tmp_path):
    with pytest.raises(KeyFileError):
        keyfiles.generate_ca(3)
    with pytest.raises(KeyFileError):
        keyfiles.generate_ca(1, b"SHORT")
    assert len(keyfiles.generate_ca(1).issuer) == 8
    ca = keyfiles.generate_ca(1, b"TESTSECA")
    files = keyfiles.ca_files(ca)
    assert set(files) == {"ca.key", "ca.pub"}
    assert files["ca.key"][1] == 0o600 and files["ca.pub"][1] == 0o644
    key = json.loads(files["ca.key"][0])
    assert key == {"format": "sep-ota-key/1", "role": "ca", "suite": 1, "curve": "sect163k1",
                   "private_key": ca.private_key.to_bytes(21, "big").hex()}
    pub = json.loads(files["ca.pub"][0])
    assert pub == {"format": "sep-ota-ca/1", "suite": 1, "curve": "sect163k1",
                   "issuer": b"TESTSECA".hex(), "public_key": ca.public_key.hex()}
    assert ca.public_key == openssl_public_key("sect163k1", ca.private_key)
    assert files["ca.key"][0].endswith(b"}\n") and b"\n  " in files["ca.key"][0]
    assert set(keyfiles.ca_files(ca, private=False)) == {"ca.pub"}
    public_only = keyfiles.CAKeys(1, b"TESTSECA", ca.public_key)
    with pytest.raises(KeyFileError):
        keyfiles.ca_files(public_only)
    with pytest.raises(KeyFileError, match="ca.key"):
        keyfiles.issue_credentials(public_only, 0x000D6F0000000A01)

    creds = keyfiles.issue_credentials(ca, 0x000D6F0000000A01)
    assert creds.subject == 0x000D6F0000000A01 and creds.certificate[22:30] == SUBJECT
    dev = keyfiles.credential_files(creds, ca)
    assert {k: v[1] for k, v in dev.items()} == {"device.cert": 0o644, "device.key": 0o600,
                                                 "ca.pub": 0o644}
    assert dev["device.cert"][0] == creds.certificate
    assert json.loads(dev["device.key"][0])["role"] == "device"
    write(tmp_path / "ca", files)
    write(tmp_path / "dev", dev)
    loaded = keyfiles.load_ca(tmp_path / "ca", private=True)
    assert loaded == ca
    assert keyfiles.load_ca(tmp_path / "ca").private_key is None
    assert keyfiles.load_credentials(tmp_path / "dev") == creds


def test_suite2_scalars_are_36_bytes():
    ca = keyfiles.generate_ca(2, b"TESTSECA")
    key = json.loads(keyfiles.private_key_file("ca", 2, 1))
    assert key["private_key"] == "00" * 35 + "01" and key["curve"] == "sect283k1"
    assert keyfiles.scalar_hex(2, ca.private_key) == ca.private_key.to_bytes(36, "big").hex()


def ca_dir(tmp_path, suite=1, issuer=b"TESTSECA"):
    ca = keyfiles.generate_ca(suite, issuer)
    write(tmp_path, keyfiles.ca_files(ca))
    return ca


@pytest.mark.parametrize("content", [
    b"not json", b"[1, 2]", b'{"format": "sep-ota-ca/2", "suite": 1}',
    b'{"format": "sep-ota-ca/1", "suite": true}', b'{"format": "sep-ota-ca/1", "suite": "1"}',
    b'{"format": "sep-ota-ca/1", "suite": 3}', b'{"format": "sep-ota-ca/1"}',
    b'{"format": "sep-ota-ca/1", "suite": 1, "issuer": "5445535453454341"}',
    b'{"format": "sep-ota-ca/1", "suite": 1, "issuer": "54455354534543", "public_key": "'
    + C1["ca_public_key_hex"].encode() + b'"}',  # a good key, a 7-byte issuer
    b'{"format": "sep-ota-ca/1", "suite": 1, "issuer": "zz", "public_key": "02"}',
    b'{"format": "sep-ota-ca/1", "suite": 1, "issuer": "5445535453454341", "public_key": "02"}',
    b"\xff\xfe"])
def test_a_bad_ca_pub_is_refused_naming_the_file(tmp_path, content):
    (tmp_path / "ca.pub").write_bytes(content)
    with pytest.raises(KeyFileError, match=str(tmp_path / "ca.pub")):
        keyfiles.load_ca(tmp_path)


def test_private_key_files_are_checked(tmp_path):
    ca = ca_dir(tmp_path)
    path = tmp_path / "ca.key"
    good = json.loads(path.read_text())
    assert keyfiles.read_private(path, "ca") == (1, ca.private_key)
    with pytest.raises(KeyFileError, match="not a device key"):
        keyfiles.read_private(path, "device")
    for value in ("00" * 21, N[1].to_bytes(21, "big").hex(), "00" * 20 + "01" + "00",
                  "01", "xyz"):
        path.write_text(json.dumps(dict(good, private_key=value)))
        with pytest.raises(KeyFileError, match=str(path)):
            keyfiles.read_private(path, "ca")
    path.write_text(json.dumps(dict(good, private_key=(N[1] - 1).to_bytes(21, "big").hex())))
    assert keyfiles.read_private(path, "ca") == (1, N[1] - 1)
    path.write_text(json.dumps(dict(good, suite=2, curve="sect283k1",
                                    private_key=(5).to_bytes(36, "big").hex())))
    with pytest.raises(KeyFileError, match="disagree on the suite"):
        keyfiles.load_ca(tmp_path, private=True)
    path.unlink()
    with pytest.raises(KeyFileError, match="does not exist"):
        keyfiles.load_ca(tmp_path, private=True)


def test_certificate_files_binary_or_hex_text(tmp_path):
    raw = suite1_vector()
    path = tmp_path / "device.cert"
    for content in (raw, raw.hex().encode(), b"0x" + raw.hex().upper().encode() + b"\n",
                    ":".join(f"{b:02x}" for b in raw).encode(),
                    b"  " + raw[:24].hex().encode() + b"\n " + raw[24:].hex().encode()):
        path.write_bytes(content)
        assert keyfiles.read_certificate(path) == raw, content
    for content in (raw.hex()[:-1].encode(), raw[:-1], raw.hex().encode() + b"00"):
        path.write_bytes(content)
        with pytest.raises(KeyFileError, match=str(path)):
            keyfiles.read_certificate(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        keyfiles.read_certificate(tmp_path / "nothing")
    with pytest.raises(KeyFileError):
        keyfiles.read_certificate(tmp_path)  # a directory: an OSError


def test_credentials_directory_must_agree_with_itself(tmp_path):
    ca1 = keyfiles.generate_ca(1, b"TESTSECA")
    ca2 = keyfiles.generate_ca(2, b"TESTSECA")
    c1 = keyfiles.issue_credentials(ca1, 0x000D6F0000000A01)
    c2 = keyfiles.issue_credentials(ca2, 0x000D6F0000000A01)
    d = tmp_path / "dev"
    write(d, keyfiles.credential_files(c1, ca1))
    assert keyfiles.load_credentials(d).certificate == c1.certificate
    (d / "device.cert").write_bytes(c2.certificate)  # a suite-2 certificate, suite-1 key
    with pytest.raises(KeyFileError, match="not a suite 1 certificate"):
        keyfiles.load_credentials(d)
    write(d, keyfiles.credential_files(c2, ca2))
    write(d, keyfiles.ca_files(ca1, private=False))  # a suite-1 CA beside suite-2 credentials
    with pytest.raises(KeyFileError, match="is for suite 1"):
        keyfiles.load_credentials(d)
    other = keyfiles.CAKeys(2, b"OTHERCA!", ca2.public_key)
    write(d, keyfiles.ca_files(other, private=False))
    with pytest.raises(KeyFileError, match="was issued by"):
        keyfiles.load_credentials(d)


@pytest.mark.parametrize("suite, name", [(1, "sect163k1"), (2, "sect283k1")])
def test_the_cas_ephemeral_key_is_in_one_to_n_minus_one(suite, name, monkeypatch):
    """SEC 4 2.4 (ECQV): the CA's ephemeral k lies in [1, n - 1]. With the random source at its
    top, P = request + (n - 1)·G (OpenSSL derives it from the scalar); k = n would give
    P = request and r = the CA's private key itself."""
    import secrets

    n = N[suite]
    rng = random.Random(f"k-{suite}")
    ca_d, req = rng.randrange(1, n), rng.randrange(1, n)
    curve = certs.SUITE_CURVES[suite]
    request = point_from_bytes(curve, openssl_public_key(name, req))
    monkeypatch.setattr(secrets, "randbelow", lambda bound: bound - 1)
    cert, r = ecqv.issue_certificate(curve, ca_d, request, subject=SUBJECT, issuer=b"TESTSECA")
    assert cert.reconstruction == openssl_public_key(name, (req + n - 1) % n)
    assert r != ca_d
    monkeypatch.setattr(secrets, "randbelow", lambda bound: 0)
    cert, r = ecqv.issue_certificate(curve, ca_d, request, subject=SUBJECT, issuer=b"TESTSECA")
    assert cert.reconstruction == openssl_public_key(name, (req + 1) % n)
