"""What every command line of ours does around its sub-command: logging, dispatch, exit code."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def run(parser: argparse.ArgumentParser, argv: list[str] | None,
        quiet_loggers: tuple[str, ...] = ()) -> int:
    """Parse, set up logging (-v info, -vv debug), run ``args.func``; 2 without a command."""
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        for name in quiet_loggers:  # chatty libraries only speak up at -vv
            logging.getLogger(name).setLevel(max(level, logging.ERROR))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def tariff_file(value: str) -> Path:
    """An argparse ``type``: a tariff TOML file that loads (else a usage error, exit 2,
    naming the key that is wrong)."""
    from sep.meter.tariff import TariffError, load_tariff

    try:
        load_tariff(value)
    except TariffError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return Path(value)
