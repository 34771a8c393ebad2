"""`sep meter --radio ezsp` with the SE network options, against `sep ncp-emulator`: both
real processes; the emulator's saved state is the judge of what bellows formed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from shared_vectors import vectors_file

VECTORS = vectors_file()  # found by walking up (a worktree, mutants/)
BIN = Path(sys.executable).parent


def test_meter_forms_the_se_network_it_is_told_and_opens_it_by_install_code(tmp_path):
    state = tmp_path / "ncp.json"
    emu = subprocess.Popen([str(BIN / "sep"), "ncp-emulator", "--listen", "127.0.0.1:0",
                            "--state", str(state), "--duration", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = emu.stdout.readline()
        url = re.search(r"(socket://127\.0\.0\.1:\d+)", first)[1]
        code = json.loads(VECTORS.read_text())["install_code"]["install_code_hex"]
        meter = subprocess.run(
            [str(BIN / "sep"), "-v", "meter", "--radio", "ezsp", "--device", url,
             "--channel", "20", "--pan-id", "0x4321",
             "--extended-pan-id", "00:11:22:33:44:55:66:77",
             "--network-key", "00112233445566778899aabbccddeeff",
             "--tc-policy", "install_code",
             "--install-code", f"00:0d:6f:00:00:00:99:01={code}", "--duration", "3"],
            capture_output=True, text=True, timeout=120)
        assert meter.returncode == 0, meter.stderr
        assert "serving SE endpoint 9 on ezsp" in meter.stdout
        assert "install-code join open for 00:0d:6f:00:00:00:99:01" in meter.stderr
        time.sleep(0.5)
    finally:
        emu.terminate()
        _, log = emu.communicate(timeout=30)
    saved = json.loads(state.read_text())
    assert saved["formed"] is True
    assert saved["channel"] == 20 and saved["pan_id"] == 0x4321
    assert saved["extended_pan_id"] == "00:11:22:33:44:55:66:77"
    assert saved["network_key"].replace(":", "").lower() == "00112233445566778899aabbccddeeff"
    assert "transient link key for 00:0d:6f:00:00:00:99:01" in log


def test_meter_refuses_bad_network_options():
    bad = subprocess.run([str(BIN / "sep"), "meter", "--radio", "ezsp", "--device",
                          "socket://127.0.0.1:1", "--network-key", "0011"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "16 bytes" in bad.stderr
    wrong = subprocess.run([str(BIN / "sep"), "meter", "--tc-policy", "install_code"],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "--radio ezsp" in wrong.stderr
    who = subprocess.run([str(BIN / "sep"), "meter", "--supplier", "hub"],
                         capture_output=True, text=True, timeout=60)
    assert who.returncode == 2 and "not an IEEE address" in who.stderr


def test_meter_on_a_stick_joins_the_demo_hub_as_a_router_and_keys(tmp_path):
    """`sep meter --radio ezsp --join --own-install-code CODE --cert DIR` against a
    `sep ncp-emulator` on the air of a `hubsim demo --external-meter`: three processes. The
    stick joins the hub's network as a router (its saved state says so), the meter keys with
    the trust centre through it (its event log says so), the demo's IHD reads it. A second
    run resumes the stick's network: no second join."""
    from test_cli_demo import (
        assert_ihd_read_the_meter,
        assert_keyed_with_the_trust_centre,
        free_udp_port,
    )

    ieee = "00:0d:6f:00:00:00:bb:13"
    code = json.loads(VECTORS.read_text())["install_code"]["install_code_hex"]
    ca, creds = tmp_path / "ca", tmp_path / "meter-cert"
    for cmd in (["cert", "ca", str(ca), "--suite", "2"],
                ["cert", "issue", "--ca", str(ca), "--ieee", ieee, "--out", str(creds)]):
        subprocess.run([str(BIN / "sep"), *cmd], check=True, capture_output=True, timeout=60)
    port = free_udp_port()
    state = tmp_path / "ncp.json"
    hub = subprocess.Popen(
        [str(BIN / "hubsim"), "demo", "--duration", "24", "--no-live", "--air-port", str(port),
         "--external-meter", "--install-code", f"{ieee}={code}", "--certs", str(ca)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    emu = subprocess.Popen([str(BIN / "sep"), "ncp-emulator", "--listen", "127.0.0.1:0",
                            "--state", str(state), "--ieee", ieee,
                            "--air", f"udp://127.0.0.1:{port}", "--duration", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = []
    try:
        url = re.search(r"(socket://127\.0\.0\.1:\d+)", emu.stdout.readline())[1]
        time.sleep(2)
        for duration in ("10", "5"):
            runs.append(subprocess.run(
                [str(BIN / "sep"), "meter", "--radio", "ezsp", "--device", url, "--join",
                 "--own-install-code", code, "--cert", str(creds), "--ieee", ieee,
                 "--data", str(tmp_path / "data"), "--no-ota", "--duration", duration,
                 "--speed", "60"], capture_output=True, text=True, timeout=120))
        out, err = hub.communicate(timeout=90)
    finally:
        hub.kill()
        emu.terminate()
        _, emu_log = emu.communicate(timeout=30)
    for run in runs:
        assert run.returncode == 0, run.stderr
    saved = json.loads(state.read_text())
    assert saved["formed"] is True and saved["node_type"] == "router"
    assert saved["tc_eui64"] == "00:0d:6f:00:00:00:00:01"  # the demo hub is the trust centre
    assert emu_log.count("as a router") == 1, emu_log  # one join; the second run resumed
    assert "secured rejoin" in emu_log
    assert_ihd_read_the_meter(out)
    assert_keyed_with_the_trust_centre(tmp_path / "data")


def test_meter_join_usage_errors():
    for args, what in ((["--join"], "--radio ezsp"),
                       (["--radio", "ezsp", "--device", "socket://127.0.0.1:1", "--join"],
                        "--own-install-code"),
                       (["--radio", "ezsp", "--device", "socket://127.0.0.1:1", "--join",
                         "--join-link-key", "00112233445566778899aabbccddeeff",
                         "--tc-policy", "install_code"], "forming"),
                       (["--radio", "ezsp", "--device", "socket://127.0.0.1:1", "--join",
                         "--join-link-key", "00112233445566778899aabbccddeeff",
                         "--extended-pan-id", "not-an-address"], "--join")):
        run = subprocess.run([str(BIN / "sep"), "meter", *args], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 2, (args, run.stderr)
        assert what in run.stderr and run.stderr.count("\n") == 1, (args, run.stderr)
