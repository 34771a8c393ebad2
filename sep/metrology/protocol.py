"""The read-only metrology protocol: newline-delimited JSON over a Unix stream socket.

Version 1. The application side connects to the metrology process's socket and sends
requests, one JSON object per line (UTF-8, at most :data:`MAX_LINE` bytes including the
newline); each gets exactly one reply line, in order. A connection may carry any number of
requests. Fields:

``op`` (required)  one of ``read``, ``status``, ``selftest``, ``events``.
``id``  (optional) an integer or a string of at most 64 characters, echoed in the reply.
``since``, ``limit`` (``events`` only) integers: events with ``seq > since``, at most
        ``limit`` (1..100, default 100).

Any other field is refused. Replies always have ``"ok"``, ``"v": 1`` and the echoed ``id``.

``{"op": "read"}`` → ::

    {"ok": true, "status": 0, "timestamp": 1800003600,
     "delivered_wh": 812, "received_wh": 0, "delivered_j": 2923200, "received_j": 0,
     "demand_w": 240, "event_seq": 3}

  ``timestamp`` is the simulated epoch second the registers were taken at; ``status`` the
  :class:`~sep.metrology.api.MetrologyStatus` bits. Under ``CALIBRATION_FAULT`` or
  ``REGISTER_FAULT`` there are **no energy fields at all** (only status, timestamp = now,
  event_seq); under ``MEASUREMENT_FAULT`` the registers are those held at the last good slot
  and there is no ``demand_w``. A reading is durable before it is sent.
``{"op": "status"}`` → status bits and fault names, clock, register time and origin,
  calibration state and constants, measurement state, source resets, self-check counters,
  ``event_seq``, uptime, pid.
``{"op": "selftest"}`` → runs the self-check now: ``{"ok": true, "result": "pass"|"fail",
  "status": .., "calibration": "ok"|"repaired"|"corrupt", "registers": "ok"|"repaired"|"corrupt",
  "measurement": "ok"|"stuck"|"failing", "source_resets": n, "events": [...]}``. It can
  restore a damaged stored copy from its intact twin and reset the measurement chip; it
  cannot change any value.
``{"op": "events", "since": 0}`` → ``{"ok": true, "events": [{"seq", "time", "kind",
  "details"}...], "last_seq": n}`` from metrology's own hash-chained event log.

Errors: ``{"ok": false, "error": "<text>", "code": "<code>"}`` with code ``malformed`` (not
UTF-8 JSON object), ``unknown_op`` (including every write-like operation), ``bad_field``,
``too_long`` (then the connection is closed), ``busy`` (too many connections) or
``internal``. An error never changes anything. There is deliberately **no operation that
writes**: nothing on this socket can set registers, calibration, time or configuration.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

VERSION = 1
MAX_LINE = 4096
OPS = ("read", "status", "selftest", "events")
MAX_EVENTS = 100
LOGGER = logging.getLogger("sep.metrology")
_ALLOWED = {"read": {"op", "id"}, "status": {"op", "id"}, "selftest": {"op", "id"},
            "events": {"op", "id", "since", "limit"}}


class Metrology(Protocol):
    def reading(self) -> dict[str, Any]: ...
    def describe(self) -> dict[str, Any]: ...
    def self_check(self) -> dict[str, Any]: ...
    def events(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]: ...
    @property
    def event_seq(self) -> int: ...


class RequestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def error(code: str, message: str, req_id: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": False, "v": VERSION, "error": message, "code": code}
    if req_id is not None:
        out["id"] = req_id
    return out


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise RequestError("bad_field", f"{name} must be an integer in {lo}..{hi}")
    return value


def parse_request(line: bytes) -> dict[str, Any]:
    """The validated request; RequestError otherwise."""
    if len(line) > MAX_LINE:
        raise RequestError("too_long", f"request longer than {MAX_LINE} bytes")
    try:
        req = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RequestError("malformed", "not a UTF-8 JSON object") from None
    if not isinstance(req, dict):
        raise RequestError("malformed", "not a UTF-8 JSON object")
    op = req.get("op")
    if not isinstance(op, str) or op not in OPS:
        shown = op if isinstance(op, str) and len(op) <= 32 else type(op).__name__
        raise RequestError("unknown_op", f"unknown operation {shown!r}: the protocol is "
                                         f"read-only ({', '.join(OPS)})")
    req_id = req.get("id")
    if req_id is not None and not (type(req_id) is int or (isinstance(req_id, str)
                                                            and len(req_id) <= 64)):
        raise RequestError("bad_field", "id must be an integer or a short string")
    extra = set(req) - _ALLOWED[op]
    if extra:
        name = sorted(extra)[0]
        raise RequestError("bad_field", f"unexpected field {name[:32]!r}: {op} takes no "
                                        "values and the protocol is read-only")
    if op == "events":
        _int(req.get("since", 0), "since", 0, 2**63 - 1)
        _int(req.get("limit", MAX_EVENTS), "limit", 1, MAX_EVENTS)
    return req


def _echo_id(line: bytes) -> Any:
    """The request's id for an error reply, when one can be read at all."""
    try:
        req = json.loads(line.decode("utf-8")) if len(line) <= MAX_LINE else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    req_id = req.get("id") if isinstance(req, dict) else None
    ok = type(req_id) is int or (isinstance(req_id, str) and len(req_id) <= 64)
    return req_id if ok else None


def handle_line(line: bytes, m: Metrology) -> dict[str, Any]:
    """One request line in, one reply object out. Never raises."""
    req_id = None
    try:
        try:
            req = parse_request(line)
        except RequestError:
            req_id = _echo_id(line)
            raise
        req_id = req.get("id")
        op = req["op"]
        if op == "read":
            body = {**m.reading(), "event_seq": m.event_seq}
        elif op == "status":
            body = m.describe()
        elif op == "selftest":
            body = m.self_check()
        else:
            body = {"events": m.events(req.get("since", 0), req.get("limit", MAX_EVENTS)),
                    "last_seq": m.event_seq}
    except RequestError as exc:
        return error(exc.code, str(exc), req_id)
    except Exception as exc:  # noqa: BLE001 - metrology never dies on a request
        LOGGER.exception("metrology request failed")
        return error("internal", f"internal error: {type(exc).__name__}", req_id)
    out: dict[str, Any] = {"ok": True, "v": VERSION, **body}
    if req_id is not None:
        out["id"] = req_id
    return out


def encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":"), allow_nan=False, default=str).encode() + b"\n"


def handle_request(line: bytes, m: Metrology) -> dict[str, Any]:
    """Former name of :func:`handle_line`."""
    return handle_line(line, m)
