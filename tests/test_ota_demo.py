"""`hubsim demo --ota`: the meter in its own process, under the supervisor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_ota_transfer import make_image

BIN = Path(sys.executable).parent


def test_image_without_trust_is_rejected_and_the_demo_says_why(tmp_path):
    image = tmp_path / "unsigned.ota"
    image.write_bytes(make_image(b"x" * 3000))
    trust = tmp_path / "trust"
    trust.mkdir()
    data = tmp_path / "data"
    proc = subprocess.run([str(BIN / "hubsim"), "demo", "--ota", str(image), "--trust", str(trust),
                           "--data", str(data), "--duration", "60"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "rejected" in proc.stderr and "every image is refused" in proc.stderr
    # nothing was staged or activated
    assert not (data / "slots" / "boot.json").exists()


def test_ota_without_trust_is_a_usage_error(tmp_path):
    proc = subprocess.run([str(BIN / "hubsim"), "demo", "--ota", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--trust" in proc.stderr
