"""tshark as the judge of captures: decode fields, find malformed frames.

Every helper takes ``options``: extra tshark arguments, e.g. the Zigbee keys of a secured
capture beyond the ``FILE.keys`` the capture wrote, which every helper reads itself. A test that needs tshark fails instead of skipping
when the environment variable ``CI`` is set.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from required_tools import needs_tool

from radios.pcap import tshark_key_options

TSHARK = shutil.which("tshark")
needs_tshark = needs_tool("tshark")


def key_options(pcap: Path) -> list[str]:
    """tshark options for the keys the capture wrote beside it (``FILE.keys``)."""
    return tshark_key_options(pcap)


def run(args: list[str]) -> str:
    assert TSHARK is not None, "tshark is needed"
    return subprocess.run([TSHARK, *args], capture_output=True, text=True, check=True).stdout


def decode(pcap: Path, fields: list[str], where: str, *,
           options: Sequence[str] = ()) -> list[dict[str, list[str]]]:
    """One dict per frame matching ``where``: field → every occurrence."""
    args = ["-r", str(pcap), *key_options(pcap), *options, "-Y", where, "-T", "fields",
            "-E", "separator=|",
            "-E", "occurrence=a", "-E", "aggregator=;"]
    for f in fields:
        args += ["-e", f]
    rows = []
    for line in run(args).splitlines():
        values = line.split("|")
        rows.append({f: (v.split(";") if v else []) for f, v in zip(fields, values, strict=True)})
    return rows


def malformed(pcap: Path, *, options: Sequence[str] = (), but: str = "") -> str:
    """Frames tshark finds malformed (or flags), except those matching ``but``."""
    where = "(_ws.malformed || _ws.expert)" + (f" && !({but})" if but else "")
    return run(["-r", str(pcap), *key_options(pcap), *options, "-Y", where])


def tshark_time(unix: int) -> str:
    """How tshark 4.0 prints an SE UTCTime field (FT_ABSOLUTE_TIME, UTC)."""
    d = dt.datetime.fromtimestamp(unix, dt.UTC)
    return f"{d:%b} {d.day:2d}, {d.year} {d:%H:%M:%S}.000000000 UTC"


def text_of(hex_bytes: str) -> str:
    """An FT_UINT_BYTES field (colon-separated hex) as text."""
    return bytes.fromhex(hex_bytes.replace(":", "")).decode("ascii")


def nwk_of(pcap: Path, ieee: str) -> str:
    """The NWK address (as tshark prints it, "0x1a2b") of the node with this IEEE, from the
    extended source of its NWK frames (addresses are stochastic on the secure HAN)."""
    rows = decode(pcap, ["zbee_nwk.src"], f"zbee_nwk.src64 == {ieee} && zbee_nwk.src != 0xfffe")
    found = {r["zbee_nwk.src"][0] for r in rows if r["zbee_nwk.src"]}
    assert len(found) == 1, found
    return found.pop()
