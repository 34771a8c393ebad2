"""``sep cert`` and the credentials loader.

Independent truth: OpenSSL derives the public key from each private key the tool writes (the
issued certificate's ECQV-reconstructed key must equal it), the Certicom test-CA certificates
and keys of the published suite-1 vectors, and the SE byte layout of the certificates read
here by offset.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ke_support import CBKE1, Air, Node, openssl_public_key

from sep.cli import main
from sep.clusters.key_establishment import KeyEstablishment
from sep.security.keyfiles import KeyFileError, load_credentials

REPO = Path(__file__).resolve().parents[1]
CURVE = {1: "sect163k1", 2: "sect283k1"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def private_scalar(path: Path) -> int:
    return int(json.loads(path.read_text())["private_key"], 16)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("suite", [1, 2])
def test_ca_issue_show_and_openssl_agrees(tmp_path, capsys, suite):
    ca, dev = tmp_path / "ca", tmp_path / "dev"
    code, out, _ = run(capsys, "cert", "ca", str(ca), "--suite", str(suite),
                       "--issuer", "53455054455354ff")
    assert code == 0 and "issuer 53455054455354ff" in out
    assert mode(ca / "ca.key") == 0o600
    ca_pub = json.loads((ca / "ca.pub").read_text())
    assert bytes.fromhex(ca_pub["public_key"]) == openssl_public_key(
        CURVE[suite], private_scalar(ca / "ca.key"))

    extra = ["--valid-from", "2026-01-01T00:00:00Z", "--days", "365"] if suite == 2 else []
    code, _, _ = run(capsys, "cert", "issue", "--ca", str(ca), "--ieee", "00:0d:6f:00:0a:bc:de:f0",
                     "--out", str(dev), *extra)
    assert code == 0
    assert mode(dev / "device.key") == 0o600
    assert (dev / "ca.pub").read_bytes() == (ca / "ca.pub").read_bytes()
    cert = (dev / "device.cert").read_bytes()
    if suite == 1:  # recon (22) | subject (8) | issuer (8) | profile data (10)
        assert len(cert) == 48
        assert cert[22:30].hex() == "000d6f000abcdef0" and cert[30:38].hex() == "53455054455354ff"
    else:  # type | serial (8) | curve | hash | issuer (8) | from (5) | to (4) | subject | usage | recon
        assert len(cert) == 74
        assert (cert[0], cert[9], cert[10]) == (0x00, 0x0D, 0x08)
        assert cert[11:19].hex() == "53455054455354ff" and cert[28:36].hex() == "000d6f000abcdef0"
        assert int.from_bytes(cert[19:24], "big") == 1_767_225_600  # 2026-01-01T00:00:00Z
        assert int.from_bytes(cert[24:28], "big") == 365 * 86_400
        assert cert[36] & 0x08  # key agreement

    code, out, _ = run(capsys, "cert", "show", str(dev), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["subject"] == "00:0d:6f:00:0a:bc:de:f0" and info["suite"] == suite
    assert info["curve"] == CURVE[suite] and info["private_key_matches"] is True
    # the ECQV reconstruction from certificate + CA key equals d·G by OpenSSL
    assert bytes.fromhex(info["public_key"]) == openssl_public_key(
        CURVE[suite], private_scalar(dev / "device.key"))
    if suite == 2:
        assert (info["valid_from"], info["valid_to"]) == (1_767_225_600,
                                                          1_767_225_600 + 365 * 86_400)
        code, out, _ = run(capsys, "cert", "show", str(dev / "device.cert"))
        assert "valid to       2027-01-01T00:00:00Z" in out
        assert "key agreement, digital signature" in out


def test_certicom_test_certificates_load_and_show(tmp_path, capsys):
    dev1 = CBKE1["device_1"]
    text = tmp_path / "device1.hex"
    text.write_text(dev1["certificate_hex"] + "\n")
    raw = tmp_path / "device1.cert"
    raw.write_bytes(bytes.fromhex(dev1["certificate_hex"]))
    for path in (text, raw):
        code, out, _ = run(capsys, "cert", "show", str(path), "--json")
        assert code == 0
        info = json.loads(out)
        assert (info["suite"], info["curve"], info["length"]) == (1, "sect163k1", 48)
        assert info["subject"] == "00:00:00:00:00:00:00:01"
        assert (info["issuer"], info["issuer_text"]) == ("5445535453454341", "TESTSECA")
        assert info["valid_from"] is None and info["key_usage"] is None
    code, out, _ = run(capsys, "cert", "show", str(raw))
    assert "suite 1 certificates carry no validity period" in out

    # a credentials directory holding the Certicom device and CA: it loads, and the key fits
    d = tmp_path / "certicom"
    d.mkdir()
    (d / "device.cert").write_text(dev1["certificate_hex"])
    (d / "device.key").write_text(json.dumps({"format": "sep-ota-key/1", "role": "device",
                                              "suite": 1, "curve": "sect163k1",
                                              "private_key": dev1["private_key_hex"]}))
    (d / "ca.pub").write_text(json.dumps({"format": "sep-ota-ca/1", "suite": 1,
                                          "curve": "sect163k1", "issuer": "5445535453454341",
                                          "public_key": CBKE1["ca_public_key_hex"]}))
    creds = load_credentials(d)
    assert creds.subject == 1 and creds.suite == 1
    code, out, _ = run(capsys, "cert", "show", str(d), "--json")
    assert json.loads(out)["public_key"] == dev1["public_key_hex"]


def test_issued_credentials_do_key_establishment(tmp_path, capsys):
    ca = tmp_path / "ca"
    assert run(capsys, "cert", "ca", str(ca))[0] == 0
    nodes = []
    for i, ieee in enumerate((0x000D6F0000000001, 0x000D6F0000000002)):
        out = tmp_path / f"d{i}"
        assert run(capsys, "cert", "issue", "--ca", str(ca), "--ieee", f"{ieee:016x}",
                   "--out", str(out), "--valid-from", "2020-01-01")[0] == 0
        core = KeyEstablishment([load_credentials(out)], endpoint=1, own_ieee=ieee)
        nodes.append(Node(f"n{i}", ieee, 0x1000 + i, core))
    air = Air(*nodes)
    air.initiate(nodes[0], nodes[1])
    assert nodes[0].established[0].link_key == nodes[1].established[0].link_key


def test_the_ca_serves_ota_signing_too(tmp_path, capsys):
    ca = tmp_path / "ca"
    assert run(capsys, "cert", "ca", str(ca), "--suite", "1")[0] == 0
    assert run(capsys, "ota", "keygen", str(tmp_path / "keys"), "--ca", str(ca))[0] == 0
    signer = json.loads((tmp_path / "keys" / "signer.json").read_text())
    assert signer["issuer"] == json.loads((ca / "ca.pub").read_text())["issuer"]


# ------------------------------------------------------------------------------------ errors


def one_line_naming(err: str, name: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in err, err


def test_usage_and_bad_input_exit_2(tmp_path, capsys):
    ca = tmp_path / "ca"
    assert run(capsys, "cert", "ca", str(ca), "--suite", "1")[0] == 0
    code, _, err = run(capsys, "cert", "issue", "--ca", str(tmp_path / "nope"), "--ieee",
                       "000d6f0000000001", "--out", str(tmp_path / "d"))
    assert code == 2
    one_line_naming(err, str(tmp_path / "nope" / "ca.pub"))
    code, _, err = run(capsys, "cert", "issue", "--ca", str(ca), "--ieee", "000d6f0000000001",
                       "--out", str(tmp_path / "d"), "--suite", "2")
    assert code == 2 and "suite 1" in err
    code, _, err = run(capsys, "cert", "issue", "--ca", str(ca), "--ieee", "000d6f0000000001",
                       "--out", str(tmp_path / "d"), "--days", "30")
    assert code == 2 and "no validity" in err
    with pytest.raises(SystemExit) as exc:
        main(["cert", "issue", "--ca", str(ca), "--ieee", "0d6f01", "--out", str(tmp_path / "d")])
    assert exc.value.code == 2 and "16 hex digits" in capsys.readouterr().err
    (ca / "ca.key").write_text("{not json")
    code, _, err = run(capsys, "cert", "issue", "--ca", str(ca), "--ieee", "000d6f0000000001",
                       "--out", str(tmp_path / "d"))
    assert code == 2
    one_line_naming(err, str(ca / "ca.key"))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(50))
    code, _, err = run(capsys, "cert", "show", str(garbage))
    assert code == 2
    one_line_naming(err, str(garbage))
    code, _, err = run(capsys, "cert", "show", str(tmp_path / "missing"))
    assert code == 2
    one_line_naming(err, str(tmp_path / "missing"))
    assert not (tmp_path / "d").exists()


def test_existing_files_are_kept_without_force(tmp_path, capsys):
    ca = tmp_path / "ca"
    assert run(capsys, "cert", "ca", str(ca))[0] == 0
    before = (ca / "ca.key").read_bytes()
    code, _, err = run(capsys, "cert", "ca", str(ca))
    assert code == 1 and "refusing to overwrite" in err and "--force" in err
    assert (ca / "ca.key").read_bytes() == before
    assert run(capsys, "cert", "ca", str(ca), "--force")[0] == 0
    assert (ca / "ca.key").read_bytes() != before and mode(ca / "ca.key") == 0o600


def test_loader_refuses_credentials_that_do_not_fit(tmp_path, capsys):
    ca, other = tmp_path / "ca", tmp_path / "other"
    for d in (ca, other):
        assert run(capsys, "cert", "ca", str(d), "--suite", "1")[0] == 0
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, ieee, issuer in ((a, "01", ca), (b, "02", ca), (c, "03", other)):
        assert run(capsys, "cert", "issue", "--ca", str(issuer), "--ieee", "000d6f00000000" + ieee,
                   "--out", str(d))[0] == 0
    assert load_credentials(a).subject == 0x000D6F0000000001

    (a / "device.key").write_bytes((b / "device.key").read_bytes())  # B's key with A's cert
    with pytest.raises(KeyFileError, match="device.key: the private key does not belong"):
        load_credentials(a)
    code, _, err = run(capsys, "cert", "show", str(a))
    assert code == 2
    one_line_naming(err, str(a / "device.key"))

    (b / "ca.pub").write_bytes((c / "ca.pub").read_bytes())  # another CA's public key
    with pytest.raises(KeyFileError, match=r"was issued by .* not by the CA in .*ca\.pub"):
        load_credentials(b)

    key = json.loads((c / "device.key").read_text())
    key["role"] = "ca"
    (c / "device.key").write_text(json.dumps(key))
    with pytest.raises(KeyFileError, match=r"device\.key is not a device key"):
        load_credentials(c)
    (c / "device.cert").unlink()
    with pytest.raises(KeyFileError, match=r"device\.cert does not exist"):
        load_credentials(c)
    with pytest.raises(KeyFileError, match="is not a directory"):
        load_credentials(tmp_path / "nowhere")


def test_sep_cert_as_a_subprocess(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sep.cli", "cert", "ca", str(tmp_path / "ca")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "sep.cli", "cert", "show", str(tmp_path / "ca")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "certificate authority" in done.stdout
