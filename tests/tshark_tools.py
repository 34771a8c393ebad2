"""tshark as the judge of captures: field extraction, malformed frames, SE times.

Every helper takes ``options`` (extra tshark arguments, e.g. ``-o uat:zigbee_pc_keys:...``)
and also reads the keys file the capture writes beside it (``air.pcap.keys``, Wireshark's
key-table lines: ``radios.pcap.KeyLog``), so a capture of the secured HAN decodes.

With the environment variable ``CI`` set, a missing tshark fails the test instead of
skipping it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from required_tools import require_tool

from radios.pcap import tshark_key_options

TSHARK = shutil.which("tshark")
AGG = "|"  # aggregator for repeated fields (dates contain commas)
Z2000 = 946_684_800  # 2000-01-01T00:00:00Z, the ZCL UTCTime epoch (ZCL r8 2.6.2)


def need_tshark() -> str:
    """The tshark path; skips the test without it (fails under CI)."""
    return require_tool("tshark")


def keys_options(pcap: Path) -> list[str]:
    """``-o uat:zigbee_pc_keys:...`` for every key of the capture's ``FILE.keys``."""
    return tshark_key_options(pcap)


def run(pcap: Path, args: list[str], options: Iterable[str] = ()) -> str:
    cmd = [need_tshark(), "-r", str(pcap), *keys_options(pcap), *options, *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def fields(pcap: Path, display: str, names: list[str],
           options: Iterable[str] = ()) -> list[list[str]]:
    """One row per frame matching ``display``: the values of ``names`` (repeats joined
    with :data:`AGG`)."""
    args = ["-Y", display, "-T", "fields", "-E", "separator=;", "-E", "occurrence=a",
            "-E", f"aggregator={AGG}"]
    for name in names:
        args += ["-e", name]
    return [line.split(";") for line in run(pcap, args, options).splitlines()]


def malformed(pcap: Path, options: Iterable[str] = ()) -> str:
    """What tshark finds malformed or in error (empty: nothing)."""
    return run(pcap, ["-Y", "_ws.malformed || _ws.expert.severity == error"], options)


def commands(pcap: Path, cluster: int, field_prefix: str, command: str, command_id: int,
             names: list[str], *, to_server: bool,
             options: Iterable[str] = ()) -> dict[int, list[str]]:
    """Rows of one SE cluster command keyed by ZCL sequence number. ``field_prefix`` is
    the dissector's (``zbee_zcl_se.met``, ``zbee_zcl_se.price``...), ``command`` the
    command's field group in it, ``names`` the fields within that group."""
    direction = "srv_rx" if to_server else "srv_tx"
    display = (f"zbee_aps.cluster == 0x{cluster:04x} && zbee_zcl.type == 1 && "
               f"{field_prefix}.cmd.{direction}.id == {command_id}")
    got = fields(pcap, display, ["zbee_zcl.cmd.tsn", *[
        n if n.startswith("zbee") else f"{field_prefix}.{command}.{n}" if command else
        f"{field_prefix}.{n}" for n in names]], options)
    return {int(r[0]): r[1:] for r in got}


def default_responses(pcap: Path, cluster: int,
                      options: Iterable[str] = ()) -> dict[int, tuple[int, int]]:
    """ZCL Default Responses on ``cluster``: tsn -> (command, status)."""
    rows = fields(pcap, f"zbee_aps.cluster == 0x{cluster:04x} && zbee_zcl.type == 0 && "
                  "zbee_zcl.cmd.id == 0x0b",
                  ["zbee_zcl.cmd.tsn", "zbee_zcl.cmd.id.rsp", "zbee_zcl.attr.status"], options)
    return {int(r[0]): (int(r[1], 16), int(r[2], 16)) for r in rows}


def tshark_time(text: str) -> int:
    """An FT_ABSOLUTE_TIME as tshark prints it ("Jun  1, 2026 08:30:00.000000000 UTC")."""
    head = " ".join(text.replace("UTC", "").split()).split(".")[0]
    return int(dt.datetime.strptime(head, "%b %d, %Y %H:%M:%S").replace(
        tzinfo=dt.UTC).timestamp())
