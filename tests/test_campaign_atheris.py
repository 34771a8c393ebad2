"""The coverage-guided campaigns (atheris, libFuzzer for Python), run as their documented
commands: ``tests/atheris_endpoint.py`` (the SE endpoint) and ``tests/atheris_ash.py`` (the
NCP emulator's ASH decoder and the EZSP dispatcher behind it). A crash — an exception or
an oracle's verdict on an input — makes libFuzzer exit non-zero and write the input to
``crash-*`` in the working directory (here the test's temporary directory, printed).

    .venv/bin/pip install -e '.[fuzz]'
    nice -n 15 .venv/bin/python -m pytest -m slow -s -p no:cacheprovider tests/test_campaign_atheris.py
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
RUNS = int(os.environ.get("SEP_ATHERIS_RUNS", 100_000))


@pytest.mark.slow
@pytest.mark.timeout(21600)  # a campaign, not a hang
@pytest.mark.parametrize("harness", ["atheris_endpoint.py", "atheris_ash.py"])
def test_atheris_campaign(harness, tmp_path):
    if importlib.util.find_spec("atheris") is None:
        if os.environ.get("CI"):
            pytest.fail("atheris is not installed (pip install -e '.[fuzz]')")
        pytest.skip("atheris is not installed (pip install -e '.[fuzz]')")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = subprocess.run([sys.executable, str(HERE / harness), f"-runs={RUNS}", "-seed=1",
                           "-print_final_stats=1", str(corpus)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=6 * 3600)
    lines = [x for x in proc.stderr.splitlines() if "DONE" in x or "stat::" in x]
    print(f"\n{harness} -runs={RUNS} -seed=1: exit {proc.returncode}\n" + "\n".join(lines))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any("DONE" in x for x in lines)
