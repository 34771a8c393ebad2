"""Configuration files: every option of a sub-command from TOML, with one table of options.

The table *is* the sub-command's argparse parser: :func:`configurable` reads its actions
(flags, types, choices, defaults, help, argument groups), so an option added with
``p.add_argument(...)`` has a config key at once, checked by the same ``type`` and
``choices`` as on the command line. Nothing is listed twice.

- Key = the long option without its dashes: ``--flow-control`` is ``flow-control``
  (``flow_control`` works too). A TOML table is a prefix: ``[mqtt] password-file`` is
  ``mqtt-password-file``. Repeatable options take an array. Relative paths are relative
  to the file's folder.
- The command line wins over the environment, which wins over the file, which wins over
  systemd credentials and then the built-in default.
- Secrets (:data:`SECRET_OPTIONS`: broker password and command token, network and link
  keys, install codes) are never needed in argv: ``KEY-file = "PATH"`` in the file (the
  file holds the value; one per line for repeatable ones), the environment variable
  ``SEP_<OPTION>`` (``SEP_MQTT_PASSWORD``), or a systemd credential named KEY
  (``LoadCredential=mqtt-password:/etc/sep/mqtt-password``).

``sep config example`` prints a commented example built from the same table;
``sep config check FILE`` exits 0, or 2 with one line per bad key or value.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
import textwrap
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "SEP_"

#: options whose values are secrets (argparse dests): taken from KEY-file, $SEP_<DEST> or
#: a systemd credential as well. An option added later that holds a secret goes here.
SECRET_OPTIONS = frozenset({
    "mqtt_password", "mqtt_token", "network_key", "tc_link_key", "install_code",
})

#: values shown uncommented in ``sep config example`` (everything else is commented out,
#: with its default)
EXAMPLE_VALUES: dict[str, Any] = {
    "radio": "ezsp",
    "device": "/dev/serial/by-id/usb-Nabu_Casa_SkyConnect_v1.0_0123456789-if00-port0",
    "flow-control": "software",
    "channel": 15,
    "tc-policy": "install_code",
    "mqtt": "mqtt://homeassistant.local:1883",
    "mqtt-username": "sep",
}
EXAMPLE_SECRET_FILES = {"mqtt_password": "/etc/sep/mqtt-password",
                        "network_key": "/etc/sep/network-key"}


class ConfigError(ValueError):
    """Bad configuration: the message has one line per problem, naming the key or file."""


class _Unset:
    def __repr__(self) -> str:
        return "<not given>"


UNSET: Any = _Unset()


@dataclasses.dataclass(frozen=True)
class Spec:
    """One option as the configuration sees it (built from its argparse action)."""

    dest: str
    key: str  # the (first) long option without "--"
    aliases: tuple[str, ...]  # its other long options, also keys
    kind: str  # value / list / flag / count
    type: Callable[[str], Any] | None
    choices: Any
    default: Any
    help: str | None
    group: str | None
    hidden: bool
    secret: bool

    @property
    def flag(self) -> str:
        return f"--{self.key}"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()

    def is_unset(self, value: Any) -> bool:
        if value is UNSET or value is None:
            return True
        return self.kind == "count" and value == 0


def configurable(p: argparse.ArgumentParser) -> None:
    """Give every option of ``p`` a config key, and ``p`` a ``--config FILE`` option.
    Call it after the last ``add_argument`` of the sub-command."""
    from sep.cli.common import _add_logging

    if "--config" not in {s for a in p._actions for s in a.option_strings}:
        p.add_argument("--config", type=Path, metavar="FILE",
                       help="read options from this TOML file (`sep config example` shows "
                       "every key; the command line wins over it)")
    _add_logging(p, top=False)
    groups = {id(a): g.title for g in p._action_groups for a in g._group_actions}
    specs = []
    for action in p._actions:
        kind = _kind(action)
        if kind is None or action.dest in ("config", "help"):
            continue
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs:
            continue
        default = None if action.default is argparse.SUPPRESS else action.default
        specs.append(Spec(
            dest=action.dest, key=longs[0][2:], aliases=tuple(s[2:] for s in longs[1:]),
            kind=kind, type=action.type,
            choices=action.choices, default=default, help=action.help,
            group=groups.get(id(action)), hidden=action.help is argparse.SUPPRESS,
            secret=action.dest in SECRET_OPTIONS))
        if action.default is not argparse.SUPPRESS:
            # "not given on the command line" must be told apart from a default
            action.default = None if kind in ("list", "count") else UNSET
    p.set_defaults(_config_specs=tuple(specs))


def _kind(action: argparse.Action) -> str | None:
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return "flag"
    if isinstance(action, argparse._AppendAction):
        return "list"
    if isinstance(action, argparse._CountAction):
        return "count"
    if type(action) is argparse._StoreAction:
        return "list" if action.nargs in ("+", "*") else "value" if action.nargs is None else None
    return None


# -- resolution: command line > environment > file > credentials > default -----------------

_MISSING: Any = object()


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> None:
    """Fill every option not given on the command line, in place."""
    env = os.environ if env is None else env
    specs: tuple[Spec, ...] = args._config_specs
    config = getattr(args, "config", None)
    config = None if config is UNSET else config
    values = load(config, specs) if config is not None else {}
    problems = []
    creds = env.get("CREDENTIALS_DIRECTORY")
    for spec in specs:
        if not spec.is_unset(getattr(args, spec.dest, UNSET)):
            continue
        value = _MISSING
        try:
            if spec.secret and env.get(spec.env):
                value = _convert_text(spec, env[spec.env], split=True)
            if value is _MISSING:
                value = values.get(spec.dest, _MISSING)
            if value is _MISSING and spec.secret and creds:
                path = Path(creds) / spec.key
                if path.is_file():
                    value = _read_secret(spec, path)
        except _Problem as exc:
            where = f"environment {spec.env}" if spec.secret and env.get(spec.env) else \
                f"credential {spec.key}"
            problems.append(f"{where}: {exc}")
            continue
        if value is _MISSING:
            value = spec.default
            if isinstance(value, str) and spec.type is not None:
                value = spec.type(value)  # as argparse treats a string default
            if spec.kind == "list" and value is None:
                value = []
        setattr(args, spec.dest, value)
    if problems:
        raise ConfigError("\n".join(problems))
    args.config = config


def load(path: Path | str, specs: tuple[Spec, ...]) -> dict[str, Any]:
    """dest → value from a TOML file; ConfigError naming every bad key or value."""
    doc, base, name = _read_toml(path)
    values, problems = check(doc, specs, base=base)
    if problems:
        raise ConfigError("\n".join(f"{name}: {p}" for p in problems))
    return values


def _read_toml(path: Path | str) -> tuple[dict[str, Any], Path, str]:
    name = str(path)
    try:
        if name == "-":
            text, base = sys.stdin.read(), Path.cwd()
        else:
            text, base = Path(path).read_text(encoding="utf-8"), Path(path).resolve().parent
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{name}: cannot read the configuration file: {why}") from None
    try:
        return tomllib.loads(text), base, name
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None


class _Problem(Exception):
    pass


def check(doc: dict[str, Any], specs: tuple[Spec, ...], *,
          base: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """(dest → value, problems) for a parsed TOML document."""
    by_key: dict[str, tuple[Spec, bool]] = {}
    for spec in specs:
        for key in (spec.key, *spec.aliases):
            by_key[key] = (spec, False)
            if spec.secret:
                by_key[f"{key}-file"] = (spec, True)
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}
    problems: list[str] = []
    for where, raw in _flatten(doc):
        key = where.replace(".", "-").replace("_", "-")
        entry = by_key.get(key)
        if entry is None:
            near = difflib.get_close_matches(key, list(by_key), n=1)
            problems.append(f"unknown key {where!r}"
                            + (f" (did you mean {near[0]!r}?)" if near else ""))
            continue
        spec, from_file = entry
        if spec.dest in seen:
            problems.append(f"key {where!r}: {spec.key!r} is already given as "
                            f"{seen[spec.dest]!r}")
            continue
        seen[spec.dest] = where
        try:
            if from_file:
                if not isinstance(raw, str):
                    raise _Problem("want the path of a file holding the secret")
                path = Path(raw)
                if base is not None and not path.is_absolute():
                    path = base / path
                values[spec.dest] = _read_secret(spec, path)
            else:
                values[spec.dest] = _convert(spec, raw, base)
        except _Problem as exc:
            problems.append(f"key {where!r}: {exc}")
    return values, problems


def _flatten(doc: dict[str, Any], prefix: str = ""):
    for key, value in doc.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, where + ".")
        else:
            yield where, value


def _read_secret(spec: Spec, path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _Problem(f"cannot read {path}: {why}") from None
    if spec.kind == "list":
        lines = [ln.strip() for ln in text.splitlines()]
        return [_scalar(spec, ln, None) for ln in lines if ln and not ln.startswith("#")]
    value = text.strip()
    if not value:
        raise _Problem(f"{path} is empty")
    return _scalar(spec, value, None)


def _convert_text(spec: Spec, text: str, *, split: bool) -> Any:
    if spec.kind == "list":
        return [_scalar(spec, part, None) for part in (text.split() if split else [text])]
    return _convert(spec, text, None)


def _convert(spec: Spec, raw: Any, base: Path | None) -> Any:
    if spec.kind == "flag":
        if not isinstance(raw, bool):
            raise _Problem(f"want true or false, not {_show(raw)}")
        return raw
    if spec.kind == "count":
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise _Problem(f"want a whole number 0, 1, 2..., not {_show(raw)}")
        return raw
    if spec.kind == "list":
        items = raw if isinstance(raw, list) else [raw]
        return [_scalar(spec, item, base) for item in items]
    if isinstance(raw, list):
        raise _Problem(f"takes one value, not a list ({spec.flag} is not repeatable)")
    return _scalar(spec, raw, base)


def _scalar(spec: Spec, raw: Any, base: Path | None) -> Any:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise _Problem(f"not a valid value: {_show(raw)}")
    if spec.type is None and not isinstance(raw, str):
        raise _Problem(f"want a string (in quotes), not {_show(raw)}")
    text = raw if isinstance(raw, str) else str(raw)
    if base is not None and _is_path_type(spec.type) and not Path(text).is_absolute():
        text = str(base / text)
    value: Any = text
    if spec.type is not None:
        try:
            value = spec.type(text)
        except argparse.ArgumentTypeError as exc:
            raise _Problem(str(exc)) from None
        except (ValueError, TypeError):
            name = getattr(spec.type, "__name__", "")
            kind = name if name in ("int", "float") else "value"
            raise _Problem(f"invalid {kind} {_show(raw)}") from None
    if spec.choices is not None and value not in spec.choices:
        raise _Problem(f"{_show(raw)} is not one of {_choices(spec.choices)}")
    return value


def _is_path_type(fn: Any) -> bool:
    from sep.cli.common import new_file, tariff_file

    return fn in (Path, tariff_file, new_file)


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | bool | int | float) else type(
        value).__name__


def _choices(choices: Any) -> str:
    if isinstance(choices, range):
        return f"{choices.start}..{choices.stop - 1}"
    return ", ".join(str(c) for c in choices)


# -- the default data directory ----------------------------------------------------------

def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where a meter keeps its data when no --data is given: systemd's StateDirectory
    (``/var/lib/sep`` in the service unit), else ``$XDG_STATE_HOME/sep``
    (``~/.local/state/sep``)."""
    env = os.environ if env is None else env
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sep"


# -- sep config example / check ---------------------------------------------------------------

def example(specs: tuple[Spec, ...], command: str = "meter") -> str:
    """A commented TOML file with every key of ``specs``."""
    lines = [f"# sep {command} configuration: `sep {command} --config FILE`.",
             "# Every key is a long option of `sep meter --help` without its dashes; the",
             "# command line wins. A [table] is a prefix: [mqtt] password-file is the same",
             "# as mqtt-password-file. Relative paths are relative to this file's folder.",
             "# Secrets never need the command line: KEY-file = \"PATH\" (the file holds the",
             f"# value), the environment ({ENV_PREFIX}MQTT_PASSWORD...), or a systemd credential",
             "# named KEY (LoadCredential=mqtt-password:/etc/sep/mqtt-password).",
             "# Check a file with `sep config check FILE`.", ""]
    group = object()
    for spec in specs:
        if spec.hidden:
            continue
        if spec.group != group:
            group = spec.group
            title = {None: "general", "options": "general"}.get(spec.group, spec.group)
            lines += ["", f"# ---- {title} " + "-" * max(4, 60 - len(str(title)))]
        text = (spec.help or "").replace("%%", "%")
        if spec.choices is not None and "one of" not in text:
            text = f"{text} (one of {_choices(spec.choices)})".strip()
        lines += [""] + [f"# {ln}" for ln in textwrap.wrap(text, 86)]
        if spec.secret:
            lines.append(f"# secret: also {spec.key}-file = \"PATH\", ${spec.env}, or the "
                         f"systemd credential {spec.key}")
            path = EXAMPLE_SECRET_FILES.get(spec.dest)
            if path is not None:
                lines.append(f"# {spec.key}-file = {json.dumps(path)}")
                continue
        if spec.key in EXAMPLE_VALUES:
            lines.append(f"{spec.key} = {_toml(EXAMPLE_VALUES[spec.key])}")
        elif spec.default in (None, [], False) or spec.kind == "count":
            sample = {"flag": "true", "list": "[]", "count": "1"}.get(spec.kind, "...")
            lines.append(f"# {spec.key} = {sample}")
        else:
            lines.append(f"# {spec.key} = {_toml(spec.default)}")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def _command_specs(command: str) -> tuple[Spec, ...]:
    from sep.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            specs = action.choices[command].get_default("_config_specs")
            if specs is not None:
                return specs
    raise ConfigError(f"`sep {command}` takes no configuration file")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="configuration files: an example, a check",
                       description="`sep config example` prints a commented configuration "
                       "file with every key of `sep meter`; `sep config check FILE` checks "
                       "one (exit 0 when good, 2 with one line per bad key or value).")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    ex = csub.add_parser("example", help="print a commented example configuration")
    ex.add_argument("--command", default="meter", help=argparse.SUPPRESS)
    ex.set_defaults(func=_example)
    ck = csub.add_parser("check", help="check a configuration file (exit 0 or 2)")
    ck.add_argument("file", metavar="FILE", help="the TOML file ('-' reads stdin)")
    ck.add_argument("--command", default="meter", help=argparse.SUPPRESS)
    ck.set_defaults(func=_check)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _example(args: argparse.Namespace) -> int:
    print(example(_command_specs(args.command), args.command), end="")
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        values = load(args.file, _command_specs(args.command))
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"sep config check: {line}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK ({len(values)} setting{'s' if len(values) != 1 else ''})")
    return 0
