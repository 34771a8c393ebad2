"""tshark as the judge of captures: decode fields, find malformed frames.

Every helper takes ``options``: extra tshark arguments, e.g. the Zigbee keys of a secured
capture (``-o uat:zigbee_pc_keys:"<32 hex>","Normal","label"``, one per key; see
:func:`key_options` for a keys file). A test that needs tshark fails instead of skipping
when the environment variable ``CI`` is set.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None and not os.environ.get("CI"),
                                  reason="tshark not installed (.ci/run installs it)")


def key_options(keys: Path | None) -> list[str]:
    """tshark options for the keys in ``keys`` (one 32-hex-digit key a line, an optional
    label after it, # comments); none when there is no such file."""
    if keys is None or not keys.exists():
        return []
    out = []
    for n, line in enumerate(keys.read_text().splitlines()):
        words = line.split("#", 1)[0].split()
        if words:
            label = words[1] if len(words) > 1 else f"key{n}"
            out += ["-o", f'uat:zigbee_pc_keys:"{words[0]}","Normal","{label}"']
    return out


def run(args: list[str]) -> str:
    assert TSHARK is not None, "tshark is needed"
    return subprocess.run([TSHARK, *args], capture_output=True, text=True, check=True).stdout


def decode(pcap: Path, fields: list[str], where: str, *,
           options: Sequence[str] = ()) -> list[dict[str, list[str]]]:
    """One dict per frame matching ``where``: field → every occurrence."""
    args = ["-r", str(pcap), *options, "-Y", where, "-T", "fields", "-E", "separator=|",
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
    return run(["-r", str(pcap), *options, "-Y", where])


def tshark_time(unix: int) -> str:
    """How tshark 4.0 prints an SE UTCTime field (FT_ABSOLUTE_TIME, UTC)."""
    d = dt.datetime.fromtimestamp(unix, dt.UTC)
    return f"{d:%b} {d.day:2d}, {d.year} {d:%H:%M:%S}.000000000 UTC"


def text_of(hex_bytes: str) -> str:
    """An FT_UINT_BYTES field (colon-separated hex) as text."""
    return bytes.fromhex(hex_bytes.replace(":", "")).decode("ascii")
