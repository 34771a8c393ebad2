"""Coverage-guided fuzzing of the NCP emulator's ASH decoder (and the EZSP frames behind
it) with atheris (libFuzzer for Python).

    .venv/bin/pip install atheris          # or: pip install -e '.[fuzz]'
    nice -n 15 .venv/bin/python tests/atheris_ash.py -runs=200000 -seed=1 [CORPUS_DIR]

An input is bytes on the UART from the host. They go into ``radios.ncp.ash.AshDevice``
(stuffing, Flag/Cancel/Substitute/XON/XOFF, CRC, data randomisation, frame numbers,
ACK/NAK); each EZSP frame it delivers goes to ``radios.ncp.ezsp.EzspNcp`` (over a recording
radio); what comes back is read with bellows' own ASH and EZSP parsers. Only ``radios.ncp``
is instrumented. Without a corpus it starts from a session of the structure-aware host of
``tests/ncp_campaign.py`` (RST, version, commands). Any exception, any log record with an
exception, any NCP output bellows cannot read, and any refused EZSP frame that changes the
NCP, is a crash (libFuzzer writes the input to ``crash-<sha1>``).

The NCP's state carries over from input to input (as a stick's does between writes), so
an input that ends the session (RST) starts a new one.
"""

from __future__ import annotations

import logging
import random
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parent))

with atheris.instrument_imports(include=["radios.ncp"]):
    import ncp_campaign
    from fuzzgen import CatchAllObserver

engine = ncp_campaign.AshEzspCampaign(random.Random(0))
observer = CatchAllObserver()


class Found(Exception):
    """The oracle's verdict on one input (libFuzzer reports it as a crash)."""


def one_input(data: bytes) -> None:
    problems: list[str] = []
    engine.now += 0.05
    engine.feed(data, problems)
    engine.ash.poll(engine.now)
    engine.host.read(engine.ash.output(), problems)
    problems += [CatchAllObserver.describe(r) for r in observer.take()]
    if problems:
        raise Found(f"{data.hex()}: {problems}")


def seed_corpus(directory: Path, n: int = 300) -> None:
    host = ncp_campaign.Host(random.Random(1))
    for i in range(n):
        wire, _meta = host.write()
        (directory / f"seed-{i:04d}").write_bytes(wire)


def main() -> None:
    args = sys.argv[:]
    if not any(not a.startswith("-") for a in args[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="sep-atheris-ash-"))
        seed_corpus(corpus)
        args.append(str(corpus))
    for a in args[1:]:
        if not a.startswith("-") and Path(a).is_dir() and not any(Path(a).iterdir()):
            seed_corpus(Path(a))
    logging.getLogger().addHandler(observer)
    logging.getLogger().setLevel(logging.INFO)
    for name in ("bellows", "zigpy", "asyncio"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("radios.ncp.ezsp").setLevel(logging.ERROR)  # each invalid command warns
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
