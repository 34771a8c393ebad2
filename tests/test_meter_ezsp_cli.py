"""`sep meter --radio ezsp` with the SE network options, against `sep ncp-emulator`: both
real processes; the emulator's saved state is the judge of what bellows formed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "zigbee-crypto.json"
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
