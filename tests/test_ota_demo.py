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


def test_a_rerun_judges_only_its_own_run(tmp_path):
    """The data directory of a meter cut after its download, whose update log holds an
    earlier run's failures and a line a power cut tore: the demo does not read those as
    this run's outcome, and the upgrade completes from the kept download."""
    import json

    from supervised import build_app_image, make_keys

    from sep.ota.client import ImageIdent
    from sep.ota.staging import FileSink

    keys = make_keys(tmp_path / "keys")
    image = build_app_image(keys, tmp_path / "app.ota", 0x00010001, pad=16_000)
    data = tmp_path / "data"
    sink = FileSink(data / "ota")  # the earlier run: the download kept, as the meter keeps it
    sink.begin(ImageIdent(image.manufacturer, image.image_type, image.file_version,
                          len(image.data)))
    sink.write(0, image.data)
    sink.flush()
    sink.close()
    earlier = [{"step": "downloaded", "file_version": image.file_version},
               {"step": "health check failed", "detail": "an earlier run's failure"},
               {"step": "rejected", "reason": "an earlier run's image"}]
    (data / "update-log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in earlier)
                                           + '{"step": "torn by a power c')
    proc = subprocess.run([str(BIN / "hubsim"), "demo", "--ota", str(tmp_path / "app.ota"),
                           "--trust", str(keys), "--data", str(data), "--duration", "150"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "runs version 0x00010001" in proc.stdout
    version = json.loads(subprocess.run([str(BIN / "sep"), "version", "--data", str(data),
                                         "--json"], capture_output=True, text=True,
                                        check=True).stdout)
    assert version["file_version"] == 0x00010001 and not version["trial"]
    # a second run has nothing to do
    again = subprocess.run([str(BIN / "hubsim"), "demo", "--ota", str(tmp_path / "app.ota"),
                            "--trust", str(keys), "--data", str(data), "--duration", "60"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already runs" in again.stdout, again.stdout + again.stderr
