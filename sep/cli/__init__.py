"""`sep` command line: the composition of each area's sub-commands.

Each area owns its own sub-command module exposing ``register(subparsers)``; the
registered parser sets ``func`` (``args -> int`` exit code). Usage errors exit 2
(argparse's convention).
"""

from __future__ import annotations

import argparse
import importlib

from sep import __version__
from sep.cli.common import run

# Modules that contribute sub-commands. Each is imported lazily so that a broken or
# heavy area does not slow down or break the others' commands.
_SUBCOMMAND_MODULES = (
    "sep.cli.meter",
    "sep.cli.ota",
    "sep.cli.store",
    "sep.cli.ncp",
    "sep.cli.cert",
    "sep.cli.config",
    "sep.cli.cad",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sep",
        description="Zigbee Smart Energy meter application processor.",
    )
    parser.add_argument("--version", action="version", version=f"sep {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # area not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv, quiet_loggers=())

