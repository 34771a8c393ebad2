"""The read-only metrology protocol: newline-delimited JSON over a Unix socket.

Requests (one JSON object per line, at most ``MAX_LINE`` bytes):
    {"op": "read"}      -> {"ok": true, "status": 0, "timestamp": 1.8e9,
                            "delivered_wh": 123, "received_wh": 0, "demand_w": 240}
                           (no energy fields at all when the status has CALIBRATION_FAULT)
    {"op": "status"}    -> {"ok": true, "status": 0, "events": [...recent metrology events]}
    {"op": "selftest"}  -> {"ok": true, "status": 0, "calibration": "ok"|"corrupt",
                            "source_resets": 0}
Anything else — unknown or write-like operations, malformed JSON, over-long lines — gets
{"ok": false, "error": "..."} and changes nothing. There is deliberately no operation
that writes.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE = 4096
OPS = ("read", "status", "selftest")


def handle_request(line: bytes, m: Any) -> dict[str, Any]:
    try:
        req = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"ok": False, "error": "malformed request"}
    op = req.get("op") if isinstance(req, dict) else None
    if op not in OPS:
        return {"ok": False, "error": f"unknown operation {op!r}: the protocol is read-only"}
    if op == "read":
        return {"ok": True, **m.reading()}
    if op == "status":
        return {"ok": True, "status": int(m.status), "events": m.events[-20:],
                "registers_since": m.since}
    m.check_calibration()
    return {"ok": True, "status": int(m.status),
            "calibration": "corrupt" if m.calibration is None else "ok",
            "source_resets": m.source.resets}
