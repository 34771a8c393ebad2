"""Kill -9 while writing: every reading reported committed survives, the DB stays clean."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sep.store import Store

WRITER = r"""
import sys
from pathlib import Path
from sep.store import Store
s = Store.open(Path(sys.argv[1]))
i = int(sys.argv[2])
while True:
    s.put_intervals([(0, i * 1800, i), (1, i * 1800, i * 7)])
    print(i, flush=True)   # printed only after the commit returned
    i += 1
"""


def campaign(d: Path, cuts: int, seed: int) -> int:
    rng = random.Random(seed)
    committed: list[int] = []
    next_id = 1
    for _ in range(cuts):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(d), str(next_id)],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.15, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        ids = [int(x) for x in out.split()]
        committed += ids
        next_id = (ids[-1] + 1) if ids else next_id
    s = Store.open(d)
    report = s.check()
    assert report.clean, report.problems
    have = {end // 1800 for end, _ in s.intervals(0)}
    missing = [i for i in committed if i not in have]
    assert not missing, f"{len(missing)} committed readings lost"
    assert all(v == (end // 1800) * 7 for end, v in s.intervals(1))
    return len(committed)


def test_kill9_loop(tmp_path):
    assert campaign(tmp_path, cuts=30, seed=1) > 30


@pytest.mark.slow
def test_kill9_loop_hundreds(tmp_path):
    assert campaign(tmp_path, cuts=300, seed=2) > 300
