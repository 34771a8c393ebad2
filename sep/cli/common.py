"""What every command line of ours does around its sub-command: logging, dispatch, exit code,
and the argparse types that turn bad input into a usage error naming the option (exit 2)."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
import types
from pathlib import Path
from typing import NoReturn

LOG_FORMATS = ("text", "json")


def run(parser: argparse.ArgumentParser, argv: list[str] | None,
        quiet_loggers: tuple[str, ...] = ()) -> int:
    """Parse, apply a ``--config`` file, set up logging (-v info, -vv debug; text or JSON
    lines), run ``args.func``; 2 without a command or for a bad configuration."""
    add_logging_options(parser)
    for p in _parsers(parser):
        p.error = types.MethodType(_one_line_error, p)  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    if getattr(args, "_config_specs", None) is not None:
        from sep.cli.config import ConfigError, resolve

        try:
            resolve(args)
        except ConfigError as exc:
            for line in str(exc).splitlines():
                print(f"{parser.prog} {args.command}: {line}", file=sys.stderr)
            return 2
    setup_logging(args.verbose or 0, getattr(args, "log_format", None) or "text")
    if (args.verbose or 0) < 2:
        for name in quiet_loggers:  # chatty libraries only speak up at -vv
            logging.getLogger(name).setLevel(logging.ERROR)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def _one_line_error(self: argparse.ArgumentParser, message: str) -> NoReturn:
    """A usage error is one line naming the option (exit 2), not the whole usage."""
    self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    """``-v`` and ``--log-format`` before the sub-command and after it (``sep meter -v``).
    A sub-command's copies default to SUPPRESS, so ``sep -v meter`` is kept."""
    _add_logging(parser, top=True)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _add_logging(sub, top=False)


def _add_logging(p: argparse.ArgumentParser, *, top: bool) -> None:
    have = {s for a in p._actions for s in a.option_strings}
    default = 0 if top else argparse.SUPPRESS
    if "-v" not in have:
        p.add_argument("-v", "--verbose", action="count", default=default,
                       help="more logging (-v info, -vv debug)")
    if "--log-format" not in have:
        p.add_argument("--log-format", choices=LOG_FORMATS,
                       default=None if top else argparse.SUPPRESS,
                       help="log lines as text (default) or one JSON object per line "
                       "(for journald/log shippers)")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(verbose: int, fmt: str = "text") -> None:
    """Like ``logging.basicConfig``: nothing when someone else (a test runner, an embedding
    program) already set up logging; our own handler is replaced on a second call."""
    root = logging.getLogger()
    if any(not getattr(h, "_sep", False) for h in root.handlers):
        return
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    handler = logging.StreamHandler()
    handler._sep = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


# -- argparse types: a bad value is a usage error (exit 2) naming the option ------------------

def tariff_file(value: str) -> Path:
    """An argparse ``type``: a tariff TOML file that loads (else a usage error, exit 2,
    naming the key that is wrong)."""
    from sep.meter.tariff import TariffError, load_tariff

    try:
        load_tariff(value)
    except TariffError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return Path(value)


_IEEE = re.compile(r"^(?:[0-9a-fA-F]{2}:){7}[0-9a-fA-F]{2}$|^[0-9a-fA-F]{16}$")


def ieee_address(value: str) -> str:
    """An IEEE (EUI-64) address, ``aa:bb:cc:dd:ee:ff:00:11`` or 16 hex digits."""
    import zigpy.types as t

    if not _IEEE.match(value.strip()):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an IEEE address (8 bytes: aa:bb:cc:dd:ee:ff:00:11)")
    return str(t.EUI64.convert(value.strip()))


def install_code(value: str) -> str:
    """``IEEE=CODE``: a device and its install code (hex, CRC-16 included; spaces, colons
    and dashes between the digits are allowed). The code's length and CRC are checked."""
    from radios.crypto import InstallCodeError, link_key_from_install_code

    ieee, sep_, code = value.partition("=")
    if not sep_:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give IEEE=CODE, e.g. 00:0d:6f:00:0a:bc:de:f0="
            "83FED3407A939723A5C639B26916D505C3B5")
    ieee = ieee_address(ieee)
    digits = re.sub(r"[\s:\-]", "", code)
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise argparse.ArgumentTypeError(f"install code {code!r} is not hex") from None
    try:
        link_key_from_install_code(raw)
    except InstallCodeError as exc:
        raise argparse.ArgumentTypeError(f"{ieee}: {exc}") from None
    return f"{ieee}={digits.upper()}"


def own_install_code(value: str) -> str:
    """This device's own install code (hex, CRC-16 included), checked; as plain hex."""
    from radios.crypto import InstallCodeError, link_key_from_install_code

    digits = re.sub(r"[\s:\-]", "", value)
    try:
        link_key_from_install_code(bytes.fromhex(digits))
    except InstallCodeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except ValueError:
        raise argparse.ArgumentTypeError(f"install code {value!r} is not hex") from None
    return digits.lower()


def link_key(value: str) -> str:
    """A 16-byte key in hex (colons allowed); as plain hex."""
    try:
        key = bytes.fromhex(value.replace(":", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"key {value!r} is not hex") from None
    if len(key) != 16:
        raise argparse.ArgumentTypeError(f"a key has 16 bytes, not {len(key)}")
    return key.hex()


def host_port(value: str, *, what: str = "HOST:PORT") -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r}: want {what} with a port 1..65535")
    return host, int(port)


def radio_path(value: str) -> str:
    """``--device``: virtual://NAME, udp://HOST:PORT, socket://HOST:PORT or a serial port."""
    for scheme in ("udp://", "socket://"):
        if value.startswith(scheme):
            host_port(value[len(scheme):], what=f"{scheme}HOST:PORT")
            return value
    if value.startswith("virtual://"):
        if len(value) == len("virtual://"):
            raise argparse.ArgumentTypeError(f"{value!r}: want virtual://NAME")
        return value
    if "://" in value:
        raise argparse.ArgumentTypeError(
            f"{value!r}: want virtual://NAME, udp://HOST:PORT, socket://HOST:PORT or a "
            "serial port such as /dev/ttyUSB0")
    return value


def port_number(value: str) -> int:
    """A TCP/UDP port, 1..65535 (0: the system picks one)."""
    try:
        port = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0..65535)")
    return port


def new_file(value: str) -> Path:
    """A file to be written: its folder must exist (checked before anything starts)."""
    path = Path(value)
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{value}: folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a folder, not a file")
    return path


def positive_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


# -- runtime ---------------------------------------------------------------------------------

def hold_data_dir(path: Path):
    """Create the data folder and lock it for this process (a second meter on the same
    data would corrupt it): OSError naming the other meter when it is taken. Keep the
    returned file open for as long as the data is in use."""
    import fcntl
    import os

    path.mkdir(parents=True, exist_ok=True)
    lock = open(path / ".lock", "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise OSError(f"in use by {holder}; give each meter its own --data") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}\n")
    lock.flush()
    return lock


def runtime_error(exc: BaseException, device: str | None = None) -> str:
    """One line for a failure at run time, naming the option when we know it."""
    text = str(exc).strip() or type(exc).__name__
    module = type(exc).__module__ or ""
    if device and (isinstance(exc, OSError | ConnectionError)
                   or module.startswith(("zigpy", "bellows", "serial"))):
        if type(exc).__name__ not in text:
            text = f"{type(exc).__name__}: {text}" if not isinstance(exc, OSError) else text
        return f"--device {device}: cannot use the radio: {text}"
    from sep.store.checked import CorruptFile

    if isinstance(exc, CorruptFile):
        return text  # it names the file and what to do
    return f"{type(exc).__name__}: {text}"
