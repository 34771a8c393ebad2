"""Every error a new user met (issue 19, "Why"): one line naming the option or file, exit 2 for
a usage error and 1 at run time, no traceback, no hang. Real processes throughout."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from broker import free_port
from shared_vectors import vectors_file
from test_ota_transfer import make_image

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
VECTORS = vectors_file()  # found by walking up (a worktree, mutants/)
SPEC_CODE = "83FED3407A939723A5C639B26916D505C3B5"
LIMIT = 60  # seconds: none of these may take anywhere near this


def run(tool: str, *args: str, env: dict | None = None,
        timeout: float = LIMIT) -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    proc.elapsed = time.monotonic() - start  # type: ignore[attr-defined]
    return proc


def one_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def closed_port() -> int:
    return free_port()


# -- sep meter ---------------------------------------------------------------------------------

def test_install_code_written_as_in_the_old_readme(closed_port):
    proc = run("sep", "meter", "--radio", "ezsp", "--device", f"socket://127.0.0.1:{closed_port}",
               "--tc-policy", "install_code", "--install-code", "IEEE=CODE", "--duration", "5")
    one_line(proc, 2, "--install-code", "IEEE")
    assert proc.elapsed < 20


def test_install_code_with_a_wrong_crc(closed_port):
    code = SPEC_CODE[:-2] + "00"
    proc = run("sep", "meter", "--radio", "ezsp", "--device", f"socket://127.0.0.1:{closed_port}",
               "--install-code", f"00:0d:6f:00:0a:bc:de:f0={code}")
    one_line(proc, 2, "--install-code", "CRC")


def test_install_code_of_a_wrong_length(closed_port):
    proc = run("sep", "meter", "--radio", "ezsp", "--device", f"socket://127.0.0.1:{closed_port}",
               "--install-code", "00:0d:6f:00:0a:bc:de:f0=0011223344")
    one_line(proc, 2, "--install-code", "bytes")


@pytest.mark.parametrize("args,option", [
    (["--ieee", "nothex"], "--ieee"),
    (["--supplier", "hub"], "--supplier"),
    (["--device", "udp://127.0.0.1"], "--device"),
    (["--device", "udp://127.0.0.1:70000"], "--device"),
    (["--device", "tcp://127.0.0.1:5"], "--device"),
    (["--speed", "fast"], "--speed"),
    (["--config", "/nonexistent/sep.toml"], "/nonexistent/sep.toml"),
    (["--ephemeral", "--data", "x"], "--data"),
    (["--bogus"], "--bogus"),
])
def test_usage_errors_of_sep_meter(args, option):
    one_line(run("sep", "meter", *args, "--duration", "1"), 2, option)


def test_a_stick_that_is_not_there(closed_port):
    proc = run("sep", "meter", "--radio", "ezsp", "--device",
               f"socket://127.0.0.1:{closed_port}", "--duration", "5")
    one_line(proc, 1, f"--device socket://127.0.0.1:{closed_port}", "cannot use the radio")
    proc = run("sep", "meter", "--radio", "ezsp", "--device", "/dev/ttyNOSUCH0",
               "--duration", "5")
    one_line(proc, 1, "--device /dev/ttyNOSUCH0")


def test_a_damaged_identity_is_an_error_not_a_new_meter(tmp_path):
    data = tmp_path / "data"
    assert run("sep", "meter", "--data", str(data), "--duration", "1").returncode == 0
    ident = data / "identity.json"
    doc = json.loads(ident.read_text())
    doc["ieee"] = doc["ieee"][:-1] + ("0" if doc["ieee"][-1] != "0" else "1")  # rot
    ident.write_text(json.dumps(doc))
    damaged = ident.read_bytes()
    proc = run("sep", "meter", "--data", str(data), "--duration", "1")
    one_line(proc, 1, "identity.json", "checksum", "--ieee")
    assert ident.read_bytes() == damaged  # not replaced by a new identity


def test_sighup_with_a_changed_tariff_under_the_same_id(tmp_path):
    tariff = tmp_path / "tariff.toml"
    text = (ROOT / "examples" / "tariff.toml").read_text()
    tariff.write_text(text)
    proc = subprocess.Popen([str(BIN / "sep"), "meter", "--ephemeral", "--tariff", str(tariff)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "serving" in proc.stdout.readline()
        tariff.write_text(text.replace('rate = "0.1545"', 'rate = "0.2000"'))  # same id
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None, "the meter keeps running"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=LIMIT)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "ERROR" in lines[0] and str(tariff) in lines[0]
    assert "issuer_tariff_id is still 7001" in lines[0]


def test_no_broker_is_said_once_not_per_retry(closed_port):
    proc = run("sep", "meter", "--ephemeral", "--mqtt", f"mqtt://127.0.0.1:{closed_port}",
               "--duration", "8")
    assert proc.returncode == 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unreachable" in lines[0] and "Connection refused" in lines[0]


# -- hubsim demo ------------------------------------------------------------------------------

def test_pcap_in_a_folder_that_does_not_exist():
    one_line(run("hubsim", "demo", "--no-live", "--duration", "5", "--pcap",
                 "/nonexistent/dir/air.pcap"), 2, "--pcap", "/nonexistent/dir")


def test_air_port_invalid_and_busy():
    one_line(run("hubsim", "demo", "--no-live", "--duration", "5", "--air-port", "70000"),
             2, "--air-port")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = run("hubsim", "demo", "--no-live", "--duration", "5", "--air-port", str(port))
    one_line(proc, 1, f"--air-port {port}", "in use")


def test_ota_with_the_version_the_meter_runs_says_so_at_once(tmp_path):
    keys = tmp_path / "keys"
    assert run("sep", "ota", "keygen", str(keys)).returncode == 0
    image = tmp_path / "same.ota"
    built = run("sep", "ota", "build", "--app", "--file-version", "0x00010000", "--signer",
                str(keys), "--out", str(image))
    assert built.returncode == 0, built.stderr
    proc = run("hubsim", "demo", "--ota", str(image), "--trust", str(keys))  # no --duration
    one_line(proc, 2, "--ota", "0x00010000")
    assert proc.elapsed < 30


def test_the_ota_demo_leaves_no_temporary_folder(tmp_path):
    image = tmp_path / "unsigned.ota"
    image.write_bytes(make_image(b"x" * 3000))
    trust = tmp_path / "trust"
    trust.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = run("hubsim", "demo", "--ota", str(image), "--trust", str(trust), "--duration",
               "60", env=env, timeout=120)
    assert proc.returncode == 1 and "rejected" in proc.stderr
    assert not list(scratch.glob("sep-ota-demo-*"))


# -- sep ncp-emulator --------------------------------------------------------------------------

def test_ncp_emulator_bad_state_file_ieee_listen_and_air(tmp_path):
    state = tmp_path / "ncp.json"
    state.write_text("not json")
    one_line(run("sep", "ncp-emulator", "--listen", "127.0.0.1:0", "--state", str(state),
                 "--duration", "1"), 2, f"--state {state}")
    state.write_text('{"link_keys": [{"nonsense": 1}]}')
    one_line(run("sep", "ncp-emulator", "--listen", "127.0.0.1:0", "--state", str(state),
                 "--duration", "1"), 2, "--state")
    one_line(run("sep", "ncp-emulator", "--ieee", "nothex", "--duration", "1"), 2, "--ieee")
    one_line(run("sep", "ncp-emulator", "--listen", "127.0.0.1:0", "--air", "udp://127.0.0.1",
                 "--duration", "1"), 2, "--air")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run("sep", "ncp-emulator", "--listen", f"127.0.0.1:{port}", "--duration", "1")
    one_line(proc, 1, f"--listen 127.0.0.1:{port}")


# -- the README's own examples -------------------------------------------------------------------

def test_the_readmes_install_code_examples_are_real_codes():
    from zigpy.util import convert_install_code

    readme = (ROOT / "README.md").read_text()
    examples = re.findall(r"```sh\n(.*?)```", readme, re.S)
    assert not any("IEEE=CODE" in block for block in examples)  # a placeholder is no example
    found = re.findall(r"([0-9a-f]{2}(?::[0-9a-f]{2}){7})=([0-9A-Fa-f]{12,36})\b", readme)
    assert found
    vector = json.loads(VECTORS.read_text())["install_code"]
    for _ieee, code in found:
        key = convert_install_code(bytes.fromhex(code))  # zigpy checks the CRC itself
        assert key is not None, code
        if code.lower() == vector["install_code_hex"]:
            assert bytes(key).hex() == vector["link_key_hex"]
