"""tshark as the judge of captures: fields of the frames a test sent, and malformed ones.

Every helper takes extra tshark options (``options``: e.g. ``["-o",
'uat:zigbee_pc_keys:"<32 hex>","Normal","label"']``), and :func:`key_options` turns the
keys file the radio layer writes next to an encrypted capture (``FILE.pcap.keys``,
Wireshark key-table lines,
``#`` comments) into those options, so decoding keeps working once frames on the air are
encrypted. A missing tshark skips these tests, except under CI (``CI`` set), where it is
a failure.
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
AGG = "|"
requires_tshark = needs_tool("tshark")


def key_options(pcap: Path) -> list[str]:
    """tshark options for the keys the capture wrote beside it (``FILE.keys``)."""
    return tshark_key_options(pcap)


def _base(pcap: Path, options: Sequence[str]) -> list[str]:
    if TSHARK is None:
        raise AssertionError("tshark is needed to judge the capture")
    return [TSHARK, "-r", str(pcap), *key_options(pcap), *options]


def fields(pcap: Path, display: str, names: list[str], *,
           options: Sequence[str] = ()) -> list[list[str]]:
    """One row per frame matching ``display``: the named fields (``|`` joins repeats)."""
    cmd = _base(pcap, options) + ["-Y", display, "-T", "fields", "-E", "separator=;",
                                  "-E", "occurrence=a", "-E", f"aggregator={AGG}"]
    for name in names:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split(";") for line in out.splitlines()]


def malformed(pcap: Path, *, options: Sequence[str] = ()) -> str:
    """The frames tshark finds malformed or in error (empty: none)."""
    cmd = _base(pcap, options) + ["-Y", "_ws.malformed || _ws.expert.severity == error"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def octets(text: str) -> bytes:
    """An FT_BYTES / FT_UINT_BYTES field as tshark prints it ("30:31:32")."""
    return bytes.fromhex(text.replace(":", "")) if text else b""


def abs_time(text: str) -> int:
    """An FT_ABSOLUTE_TIME as tshark prints it ("Jun  1, 2026 08:30:00.000000000 UTC")."""
    head = " ".join(text.replace("UTC", "").split()).split(".")[0]
    return int(dt.datetime.strptime(head, "%b %d, %Y %H:%M:%S").replace(
        tzinfo=dt.UTC).timestamp())
