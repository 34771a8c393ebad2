"""Coverage-guided fuzzing of the meter's SE endpoint with atheris (libFuzzer for Python).

    .venv/bin/pip install atheris          # or: pip install -e '.[fuzz]'
    nice -n 15 .venv/bin/python tests/atheris_endpoint.py -runs=200000 -seed=1 [CORPUS_DIR]

An input is one frame from the air: byte 0 picks the cluster (a served one, or not), byte 1
the source (trust centre, IHD, a stranger) and unicast/broadcast, the rest is the ZCL frame,
header included. libFuzzer mutates inputs towards new coverage of ``sep`` (only our code is
instrumented). Without a corpus directory it starts from a few hundred frames of the
structure-aware generator (``tests/se_campaign.py``). Each input is judged by the same oracle
as the seeded campaign — zigpy parses every reply, the ZCL r8 rules, what the frame may
change — and any problem, like any exception, is a crash: libFuzzer stops and writes the
input to ``crash-<sha1>``.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parent))

with atheris.instrument_imports(include=["sep"]):
    import se_campaign
    from fuzzgen import CatchAllObserver

CLUSTERS = (0x0000, 0x0003, 0x000A, 0x0700, 0x0702, 0x0703, 0x0019, 0x0B04)
SOURCES = (se_campaign.TC, se_campaign.IHD, 0x7A7A, 0x0001)

engine = se_campaign.SeCampaign(random.Random(0))
observer = CatchAllObserver()


class Found(Exception):
    """The oracle's verdict on one input (libFuzzer reports it as a crash)."""


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    cluster = CLUSTERS[data[0] % len(CLUSTERS)]
    src = SOURCES[data[1] & 0x03]
    broadcast = bool(data[1] & 0x80)
    problems = engine.check_raw(cluster, src, broadcast, data[2:])
    problems += [CatchAllObserver.describe(r) for r in observer.take()]
    if problems:
        raise Found(f"0x{cluster:04X} from 0x{src:04X} bcast {broadcast} "
                    f"{data[2:].hex()}: {problems}")


def seed_corpus(directory: Path, n: int = 400) -> None:
    gen = se_campaign.SeCampaign(random.Random(1))
    for i in range(n):
        f = gen.frame()
        head = bytes([CLUSTERS.index(f.cluster) if f.cluster in CLUSTERS else 7,
                      (0x80 if f.broadcast else 0) | (0 if f.src == se_campaign.TC else 1)])
        (directory / f"seed-{i:04d}").write_bytes(head + f.data())


def main() -> None:
    args = sys.argv[:]
    if not any(not a.startswith("-") for a in args[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="sep-atheris-endpoint-"))
        seed_corpus(corpus)
        args.append(str(corpus))
    for a in args[1:]:
        if not a.startswith("-") and Path(a).is_dir() and not any(Path(a).iterdir()):
            seed_corpus(Path(a))
    logging.getLogger().addHandler(observer)
    logging.getLogger().setLevel(logging.INFO)
    for name in ("zigpy", "asyncio"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
