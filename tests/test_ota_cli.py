"""``sep ota``: keygen, build, inspect, verify -- in-process via ``sep.cli.main`` and once as a
subprocess."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sep.cli import main
from sep.cli import ota as ota_cli
from sep.firmware.format import parse_image
from sep.firmware.keys import (
    ALLOWED_SIGNERS,
    CA_KEY,
    CA_PUB,
    KEY_FILES,
    SIGNER_CERT,
    SIGNER_JSON,
    SIGNER_KEY,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key directory (suite 1), a payload and a built image, shared by the module."""
    d = tmp_path_factory.mktemp("ota")
    assert main(["ota", "keygen", str(d / "keys"), "--suite", "1"]) == 0
    (d / "payload.bin").write_bytes(bytes(range(256)) * 40)
    assert (
        main(
            [
                "ota", "build",
                "--payload", str(d / "payload.bin"),
                "--manufacturer", "0x1234",
                "--image-type", "1",
                "--file-version", "0x00010203",
                "--signer", str(d / "keys"),
                "--out", str(d / "good.ota"),
                "--notes", "Release 1.2.3: tariff fixes",
                "--hw-min", "0x0100",
                "--hw-max", "0x01ff",
                "--header-string", "SEP meter app",
                "--build-id", "g0123456",
            ]
        )
        == 0
    )  # fmt: skip
    return d


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------- keygen


@pytest.mark.parametrize("suite", ["1", "2"])
def test_keygen_layout_and_modes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suite: str
) -> None:
    d = tmp_path / "k"
    code, out, _ = run(capsys, "ota", "keygen", str(d), "--suite", suite)
    assert code == 0 and "signer" in out
    assert sorted(p.name for p in d.iterdir()) == sorted(KEY_FILES)
    for name in (CA_KEY, SIGNER_KEY):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
    for name in (CA_PUB, SIGNER_CERT, SIGNER_JSON, ALLOWED_SIGNERS):
        assert stat.S_IMODE((d / name).stat().st_mode) & 0o077 != 0o077
    info = json.loads((d / SIGNER_JSON).read_text())
    assert info["suite"] == int(suite)
    assert len((d / SIGNER_CERT).read_bytes()) == (48 if suite == "1" else 74)
    assert bytes.fromhex(info["certificate"]) == (d / SIGNER_CERT).read_bytes()
    ca = json.loads((d / CA_PUB).read_text())
    assert ca["suite"] == int(suite) and len(bytes.fromhex(ca["issuer"])) == 8
    assert info["ieee"] in (d / ALLOWED_SIGNERS).read_text()
    assert "private_key" not in (d / CA_PUB).read_text() + (d / SIGNER_JSON).read_text()


def test_keygen_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "k"
    assert run(capsys, "ota", "keygen", str(d))[0] == 0
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    code, _, err = run(capsys, "ota", "keygen", str(d))
    assert code == 1 and "refusing to overwrite" in err
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    # a single existing key file is enough to refuse
    d2 = tmp_path / "k2"
    d2.mkdir()
    (d2 / SIGNER_KEY).write_text("precious")
    assert run(capsys, "ota", "keygen", str(d2))[0] == 1
    assert (d2 / SIGNER_KEY).read_text() == "precious"
    code, _, _ = run(capsys, "ota", "keygen", str(d), "--force", "--suite", "2")
    assert code == 0
    assert {p.name: p.read_bytes() for p in d.iterdir()} != before
    assert stat.S_IMODE((d / CA_KEY).stat().st_mode) == 0o600


def test_keygen_from_existing_ca(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "second"
    code, _, _ = run(
        capsys,
        "ota",
        "keygen",
        str(d),
        "--ca",
        str(work / "keys"),
        "--signer-ieee",
        "00:0d:6f:00:00:00:00:02",
    )
    assert code == 0
    assert not (d / CA_KEY).exists()  # the CA private key stays where it was
    assert (d / CA_PUB).read_text() == (work / "keys" / CA_PUB).read_text()
    assert json.loads((d / SIGNER_JSON).read_text())["ieee"] == "00:0d:6f:00:00:00:00:02"
    # a CA directory without ca.key cannot issue
    code, _, err = run(capsys, "ota", "keygen", str(tmp_path / "third"), "--ca", str(d))
    assert code == 1 and "ca.key" in err


# ----------------------------------------------------------------------- build and verify


def test_built_image_verifies(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "ota", "verify", "--trust", str(work / "keys"), str(work / "good.ota")
    )
    assert code == 0
    assert out.startswith(f"{work / 'good.ota'}: OK")
    code, out, _ = run(
        capsys, "ota", "verify", "--trust", str(work / "keys"), str(work / "good.ota"), "--json"
    )
    assert code == 0
    assert json.loads(out) == [{"file": str(work / "good.ota"), "valid": True, "errors": []}]


def test_inspect_shows_the_fields(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signer = json.loads((work / "keys" / SIGNER_JSON).read_text())
    code, out, _ = run(capsys, "ota", "inspect", str(work / "good.ota"))
    assert code == 0
    for text in (
        "0x1234",
        "0x00010203",
        "SEP meter app",
        "UPGRADE_IMAGE",
        "MANIFEST",
        "CERTIFICATE_SUITE1",
        "INTEGRITY_CODE",
        "SIGNATURE_SUITE1",
        "Release 1.2.3: tariff fixes",
        "g0123456",
        "application",
        signer["ieee"],
        signer["issuer"],
    ):
        assert text in out, text
    code, out, _ = run(capsys, "ota", "inspect", str(work / "good.ota"), "--json")
    assert code == 0
    d = json.loads(out)
    assert d["header"]["manufacturer_code"] == "0x1234"
    assert d["header"]["image_type"] == "0x0001"
    assert d["header"]["file_version"] == "0x00010203"
    assert d["header"]["minimum_hardware_version"] == "0x0100"
    assert d["header"]["maximum_hardware_version"] == "0x01FF"
    assert d["header"]["total_image_size"] == (work / "good.ota").stat().st_size
    assert [e["name"] for e in d["elements"]] == [
        "UPGRADE_IMAGE",
        "MANIFEST",
        "CERTIFICATE_SUITE1",
        "INTEGRITY_CODE",
        "SIGNATURE_SUITE1",
    ]
    assert d["manifest"]["notes"] == "Release 1.2.3: tariff fixes"
    assert d["manifest"]["payload_length"] == 256 * 40
    assert d["signature"]["signer"] == signer["ieee"]
    assert d["certificate"]["subject"] == signer["ieee"]
    assert d["certificate"]["issuer"] == signer["issuer"]


def test_inspect_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "junk.ota"
    f.write_bytes(b"not an ota file")
    code, out, _ = run(capsys, "ota", "inspect", str(f))
    assert code == 1 and "BAD_MAGIC" in out
    code, out, _ = run(capsys, "ota", "inspect", str(f), "--json")
    assert code == 1 and json.loads(out)["error"]["reason"] == "BAD_MAGIC"
    assert run(capsys, "ota", "inspect", str(tmp_path / "missing.ota"))[0] == 1


def test_verify_many_files_lists_every_failure(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = work / "good.ota"
    data = good.read_bytes()
    image = parse_image(data)
    pos = image.upgrade_image.data_offset + 5
    tampered = tmp_path / "tampered.ota"
    tampered.write_bytes(data[:pos] + bytes([data[pos] ^ 0x80]) + data[pos + 1 :])
    truncated = tmp_path / "truncated.ota"
    truncated.write_bytes(data[:-1])
    missing = tmp_path / "missing.ota"
    files = [str(good), str(tampered), str(truncated), str(missing)]
    code, out, _ = run(capsys, "ota", "verify", "--trust", str(work / "keys"), *files)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{good}: OK")
    assert lines[1].startswith(f"{tampered}: INVALID")
    for reason in ("BAD_SIGNATURE", "BAD_INTEGRITY_CODE", "BAD_CRC"):
        assert reason in lines[1]
    assert "SIZE_MISMATCH" in lines[2]
    assert "UNREADABLE" in lines[3]
    code, out, _ = run(capsys, "ota", "verify", "--json", "--trust", str(work / "keys"), *files)
    assert code == 1
    got = json.loads(out)
    assert [r["file"] for r in got] == files
    assert [r["valid"] for r in got] == [True, False, False, False]
    assert [e["reason"] for e in got[1]["errors"]] == [
        "BAD_SIGNATURE",
        "BAD_INTEGRITY_CODE",
        "BAD_CRC",
    ]
    assert all(set(r) == {"file", "valid", "errors"} for r in got)


def test_verify_with_a_trust_dir_of_just_the_public_parts(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = tmp_path / "trust"
    trust.mkdir()
    shutil.copy(work / "keys" / CA_PUB, trust / CA_PUB)
    (trust / ALLOWED_SIGNERS).write_text("# nobody yet\n\n")
    code, out, _ = run(capsys, "ota", "verify", "--trust", str(trust), str(work / "good.ota"))
    assert code == 1 and "SIGNER_NOT_ALLOWED" in out
    signer = json.loads((work / "keys" / SIGNER_JSON).read_text())["ieee"]
    (trust / ALLOWED_SIGNERS).write_text(
        f"# the release signer\n{signer.replace(':', '').upper()}  # ok\n"
    )
    code, out, _ = run(capsys, "ota", "verify", "--trust", str(trust), str(work / "good.ota"))
    assert code == 0, out


def test_image_from_another_ca_is_rejected(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rogue = tmp_path / "rogue"
    signer = json.loads((work / "keys" / SIGNER_JSON).read_text())["ieee"]
    assert run(capsys, "ota", "keygen", str(rogue), "--signer-ieee", signer, "--suite", "1")[0] == 0
    out_file = tmp_path / "rogue.ota"
    code, _, _ = run(
        capsys, "ota", "build", "--payload", str(work / "payload.bin"), "--manufacturer", "0x1234",
        "--image-type", "1", "--file-version", "9", "--signer", str(rogue), "--out", str(out_file),
    )  # fmt: skip
    assert code == 0
    code, out, _ = run(capsys, "ota", "verify", "--trust", str(work / "keys"), str(out_file))
    assert code == 1 and "CERT_ISSUER_MISMATCH" in out and "BAD_SIGNATURE" in out
    # it is the trust that fails, not the file
    assert run(capsys, "ota", "verify", "--trust", str(rogue), str(out_file))[0] == 0


def test_build_options(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "m.ota"
    code, out, _ = run(
        capsys, "ota", "build", "--payload", str(work / "payload.bin"), "--manufacturer", "4660",
        "--image-type", "0x0002", "--file-version", "16", "--signer", str(work / "keys"),
        "--out", str(out_file), "--kind", "metrology", "--no-integrity-code",
        "--destination", "00:0d:6f:00:00:00:00:09", "--credential-version", "1",
        "--stack-version", "0x0002",
    )  # fmt: skip
    assert code == 0 and "wrote" in out
    image = parse_image(out_file.read_bytes())
    assert image.integrity_code is None
    assert image.header.manufacturer_code == 0x1234 and image.header.image_type == 2
    assert image.header.security_credential_version == 1
    assert str(image.header.upgrade_file_destination) == "00:0d:6f:00:00:00:00:09"
    code, out, _ = run(capsys, "ota", "inspect", str(out_file), "--json")
    assert json.loads(out)["manifest"]["kind"] == "metrology"
    assert run(capsys, "ota", "verify", "--trust", str(work / "keys"), str(out_file))[0] == 0


# ---------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "argv",
    [
        ["ota"],
        ["ota", "verify", "x.ota"],  # no --trust
        ["ota", "verify", "--trust", "d"],  # no file
        ["ota", "keygen", "d", "--suite", "3"],
        ["ota", "build", "--manufacturer", "1", "--image-type", "1", "--file-version", "1",
         "--signer", "d", "--out", "o"],  # no payload source
        ["ota", "build", "--payload", "p", "--manufacturer", "0x10000", "--image-type", "1",
         "--file-version", "1", "--signer", "d", "--out", "o"],
        ["ota", "build", "--payload", "p", "--manufacturer", "12ab", "--image-type", "1",
         "--file-version", "1", "--signer", "d", "--out", "o"],
        ["ota", "build", "--payload", "p", "--manufacturer", "1", "--image-type", "1",
         "--file-version", "0x100000000", "--signer", "d", "--out", "o"],
        ["ota", "build", "--payload", "p", "--manufacturer", "1", "--image-type", "1",
         "--file-version", "1", "--signer", "d", "--out", "o", "--kind", "bootloader"],
        ["ota", "inspect"],
    ],
)  # fmt: skip
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    capsys.readouterr()


def test_semantic_usage_errors_exit_2(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "ota", "build", "--payload", str(work / "payload.bin"), "--manufacturer", "1",
        "--image-type", "1", "--file-version", "1", "--out", str(tmp_path / "o.ota"),
    ]  # fmt: skip
    assert run(capsys, *base, "--signer", str(work / "keys"), "--hw-min", "1")[0] == 2
    assert (
        run(capsys, *base, "--signer", str(work / "keys"), "--hw-min", "5", "--hw-max", "4")[0] == 2
    )
    assert run(capsys, *base, "--signer", str(tmp_path / "nokeys"))[0] == 2
    # a trust directory without an allow-list, or that does not exist
    trust = tmp_path / "trust"
    trust.mkdir()
    shutil.copy(work / "keys" / CA_PUB, trust / CA_PUB)
    code, _, err = run(capsys, "ota", "verify", "--trust", str(trust), str(work / "good.ota"))
    assert code == 2 and ALLOWED_SIGNERS in err
    assert (
        run(capsys, "ota", "verify", "--trust", str(tmp_path / "none"), str(work / "good.ota"))[0]
        == 2
    )
    (trust / ALLOWED_SIGNERS).write_text("not-an-address\n")
    code, _, err = run(capsys, "ota", "verify", "--trust", str(trust), str(work / "good.ota"))
    assert code == 2 and ":1:" in err


def test_payload_sources_are_pluggable() -> None:
    """--payload and --app are entries of one provider table."""
    assert set(ota_cli.PAYLOAD_PROVIDERS) == {"payload", "app"}
    import argparse

    ns = argparse.Namespace(payload=None, app=False)
    with pytest.raises(ValueError):
        ota_cli.resolve_payload(ns)


def test_progress_only_for_big_files_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    with ota_cli._progress(10, "x") as cb:
        assert cb is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with ota_cli._progress(2 << 20, "x") as cb:
        assert cb is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with ota_cli._progress(2 << 20, "x") as cb:
        assert cb is not None
        cb(1 << 20, 2 << 20)


def test_big_image_end_to_end(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20))
    out_file = tmp_path / "big.ota"
    code, _, _ = run(
        capsys, "ota", "build", "--payload", str(big), "--manufacturer", "0x1234", "--image-type", "1",
        "--file-version", "2", "--signer", str(work / "keys"), "--out", str(out_file),
    )  # fmt: skip
    assert code == 0
    assert run(capsys, "ota", "verify", "--trust", str(work / "keys"), str(out_file))[0] == 0


# ------------------------------------------------------------------------------ subprocess


def test_as_a_subprocess(work: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out_file = tmp_path / "sub.ota"

    def sep(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sep.cli", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=120,
        )

    built = sep(
        "ota", "build", "--payload", str(work / "payload.bin"), "--manufacturer", "0x1234",
        "--image-type", "1", "--file-version", "0x10", "--signer", str(work / "keys"), "--out", str(out_file),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    verified = sep("ota", "verify", "--trust", str(work / "keys"), str(out_file), "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)[0]["valid"] is True
    bad = sep("ota", "verify", "--trust", str(work / "keys"), str(work / "payload.bin"))
    assert bad.returncode == 1 and "BAD_MAGIC" in bad.stdout
    usage = sep("ota", "verify", str(out_file))
    assert usage.returncode == 2


def test_keygen_defaults_to_suite_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ota", "keygen", str(tmp_path / "k"))
    assert code == 0 and "suite 2" in out
    assert len((tmp_path / "k" / "signer.cert").read_bytes()) == 74
