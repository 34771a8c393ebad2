"""Commands in: JSON documents on ``<base>/<node>/command/<name>``, checked against a JSON
schema before anything happens. A rejected command changes nothing and gets an error on
``<base>/<node>/command/result``.

Documents: ``{"id": "...", "token": "...", ...fields}`` — ``id`` is echoed in the result,
``token`` is required when the bridge is configured with a command token.
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
import json
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

MAX_COMMAND_BYTES = 4096

_COMMON = {"id": {"type": ["string", "integer"]}, "token": {"type": "string"}}

SCHEMAS: dict[str, dict[str, Any]] = {
    "display_message": {
        "type": "object",
        "properties": {
            **_COMMON,
            "message_id": {"type": "integer", "minimum": 0, "maximum": 0xFFFFFFFF},
            "text": {"type": "string", "minLength": 1, "maxLength": 59},
            "duration_minutes": {"type": "integer", "minimum": 0, "maximum": 0xFFFF},
            "importance": {"enum": ["low", "medium", "high", "critical"]},
            "confirmation_required": {"type": "boolean"},
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    "cancel_message": {
        "type": "object",
        "properties": {**_COMMON,
                       "message_id": {"type": "integer", "minimum": 0, "maximum": 0xFFFFFFFF}},
        "required": ["message_id"],
        "additionalProperties": False,
    },
    "publish_price": {
        "type": "object",
        "properties": {
            **_COMMON,
            "tier": {"type": "integer", "minimum": 1, "maximum": 15},
            "unit_rate": {"type": "number", "minimum": 0, "maximum": 100},  # GBP/kWh
            "label": {"type": "string", "maxLength": 12},
            "start_time": {"type": "integer", "minimum": 0},
            "duration_minutes": {"type": "integer", "minimum": 0, "maximum": 0xFFFF},
        },
        "required": ["tier", "unit_rate"],
        "additionalProperties": False,
    },
    "set_tariff": {
        # the keys of a tariff file (examples/tariff.toml) as JSON; checked in full by
        # sep.meter.tariff, which names the key that is wrong
        "type": "object",
        "properties": {**_COMMON, "tariff": {"type": "object"}},
        "required": ["tariff"],
        "additionalProperties": False,
    },
    "set_supply": {
        # the consumer's button: "off" arms the supply (the relay opens), "on" restores an
        # armed supply; only with --mqtt-supply-control; never overrides a supplier's off
        "type": "object",
        "properties": {**_COMMON, "state": {"enum": ["on", "off"]}},
        "required": ["state"],
        "additionalProperties": False,
    },
    "remove_discovery": {
        # clear a meter's Home Assistant discovery (default: this meter, which then stays
        # unannounced until it restarts; "node": a meter that is gone)
        "type": "object",
        "properties": {**_COMMON, "node": {"type": "string", "pattern": "^[0-9a-f]{16}$"}},
        "additionalProperties": False,
    },
    "image_notify": {
        "type": "object",
        "properties": {**_COMMON, "jitter": {"type": "integer", "minimum": 1, "maximum": 100}},
        "additionalProperties": False,
    },
}


@dataclasses.dataclass
class Command:
    name: str
    request_id: Any
    params: dict[str, Any]


class CommandError(ValueError):
    def __init__(self, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@functools.cache
def _validator(name: str) -> Any:
    """The command's schema checked once and compiled once (``jsonschema.validate`` does
    both at every call: most of a command's cost)."""
    schema = SCHEMAS[name]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def parse_command(name: str, payload: bytes, token: str | None) -> Command:
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"command is {len(payload)} bytes; the limit is {MAX_COMMAND_BYTES}")
    schema = SCHEMAS.get(name)
    if schema is None:
        raise CommandError(f"unknown command {name!r}; known: {', '.join(sorted(SCHEMAS))}")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"not JSON: {exc}") from None
    except RecursionError:  # nested deeper than the parser goes (was: the bridge died)
        raise CommandError("not JSON: nested too deeply") from None
    request_id = doc.get("id") if isinstance(doc, dict) else None
    if not (type(request_id) is int or isinstance(request_id, str) and len(request_id) <= 64):
        request_id = None  # only an id of the documented kind is echoed (never NaN, a list)
    if token is not None:
        given = doc.get("token") if isinstance(doc, dict) else None
        if not isinstance(given, str) or not hmac.compare_digest(given, token):
            raise CommandError("not authorised: missing or wrong token", request_id)
    exc = best_match(_validator(name).iter_errors(doc))  # what jsonschema.validate raises
    if exc is not None:
        where = "/".join(str(p) for p in exc.absolute_path) or "document"
        raise CommandError(f"invalid {where}: {exc.message}", request_id) from None
    params = {k: v for k, v in doc.items() if k not in ("id", "token")}
    return Command(name, request_id, params)
