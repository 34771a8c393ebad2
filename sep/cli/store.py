"""`sep events` and `sep check`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DATA_HELP = "the meter's data (default: as `sep meter`, $STATE_DIRECTORY or ~/.local/state/sep)"


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("events", help="print the meter's event log",
                        description="Print the append-only, tamper-evident event log.")
    ev.add_argument("--data", type=Path, metavar="DIR", help=DATA_HELP)
    ev.add_argument("--json", action="store_true", help="one JSON array")
    ev.add_argument("--since", type=int, default=0, metavar="SEQ", help="events after SEQ")
    ev.set_defaults(func=_events)
    ck = sub.add_parser("check", help="verify every stored record",
                        description="Verify every stored record (checksums, MACs, the event "
                        "chain, the firmware update log, the identity record). Exit 0 when "
                        "clean, 1 when anything is corrupt, 2 when there is no meter data in "
                        "DIR.")
    ck.add_argument("--data", type=Path, metavar="DIR", help=DATA_HELP)
    ck.add_argument("--json", action="store_true")
    ck.set_defaults(func=_check)


def _open(data: Path | None):
    from sep.cli.config import default_data_dir
    from sep.store import Store

    data = data or default_data_dir()
    try:
        return Store.open(data, create=False)
    except FileNotFoundError as exc:
        print(f"sep: {exc}", file=sys.stderr)
        return None


def _events(args: argparse.Namespace) -> int:
    store = _open(args.data)
    if store is None:
        return 2
    events = store.events(args.since)
    if args.json:
        print(json.dumps([{"seq": e.seq, "time": e.time, "kind": e.kind, "details": e.details}
                          for e in events], indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("seq", "time (UTC)", "event", "details")
    for e in events:
        table.add_row(str(e.seq), time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.time)),
                      e.kind, ", ".join(f"{k}={v}" for k, v in e.details.items()))
    Console().print(table)
    return 0


def _check(args: argparse.Namespace) -> int:
    store = _open(args.data)
    if store is None:
        return 2
    report = store.check()
    _check_files(args.data or _default(), report)
    if args.json:
        print(json.dumps({"clean": report.clean, "rows_checked": report.rows_checked,
                          "seconds": round(report.seconds, 3),
                          "problems": [vars(p) for p in report.problems]}, indent=1))
    else:
        print(f"checked {report.rows_checked} records in {report.seconds:.2f} s: "
              + ("clean" if report.clean else f"{len(report.problems)} problem(s)"))
        for p in report.problems:
            print(f"CORRUPT {p.table} {p.key}: {p.reason}")
    return 0 if report.clean else 1


def _default() -> Path:
    from sep.cli.config import default_data_dir

    return default_data_dir()


def _check_files(data: Path, report) -> None:
    """The records kept beside the database: the MAC-chained update log, and the
    checksummed identity, boot and download records."""
    from sep.store.chainlog import ChainedLog
    from sep.store.checked import CorruptFile, unseal
    from sep.store.db import Problem

    rows, problems = ChainedLog.open(data).verify()
    report.rows_checked += rows
    report.problems += [Problem("update-log", "update-log.jsonl", why) for why in problems]
    for name in ("identity.json", "slots/boot.json", "ota/download.json"):
        path = data / name
        if path.exists():
            report.rows_checked += 1
            try:
                unseal(path.read_bytes(), name)
            except CorruptFile as exc:
                report.problems.append(Problem("file", name, str(exc)))
