"""The metrology socket protocol campaign: request lines into the metrology side
(``sep/metrology/protocol.py`` on a real ``MetrologyCore`` with its own store), judged by a
strict JSON parser, the protocol's documented replies, and the rule that no request writes.

Lines start from valid requests (``read``, ``status``, ``selftest``, ``events`` with
``since``/``limit``, an ``id``) mutated where they are valid (``tests/docgen.py``: fields of
another kind, at the edges, added, dropped — write-like operations and fields among them),
then, now and then, damaged: cut, not UTF-8, NaN and Infinity, nested past the parser's
recursion limit, over the line limit, empty, several objects on one line. Half the
campaign runs against a core whose measurement chip fails (another reply shape).

The oracle, per line:

- ``handle_line`` returns (never raises), no catch-all fires (the "metrology request failed"
  record, and the ``internal`` error code it answers with);
- the reply encodes as the server sends it and reads back as strict JSON; it has ``ok``,
  ``v: 1`` and the request's id when the request had a valid one; an error has a documented
  ``code``; an answer has the fields its operation documents;
- nothing stored changes (every record, the event log, the registers, the calibration):
  time does not move during the campaign, so no request may write.

A sample also goes over a real Unix socket to the asyncio server: one reply line per
request line, in order, and a line over the limit closes the connection.

Default run: a short sample. The campaign (100,000 lines)::

    nice -n 15 .venv/bin/python -m pytest -m slow -s -p no:cacheprovider tests/test_campaign_metrology.py
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from docgen import mutate
from fuzzgen import Campaign, CatchAllObserver
from test_metrology_protocol import fingerprint

from sep.clock import ManualClock
from sep.metrology.core import MetrologyCore
from sep.metrology.load import HouseholdLoad
from sep.metrology.process import MetrologyServer
from sep.metrology.protocol import MAX_LINE, encode, handle_line
from sep.metrology.source import HouseholdSource, parse_inject

START = 1_800_000_000
CODES = {"malformed", "unknown_op", "bad_field", "too_long"}
BASES = [{"op": "read", "id": 1}, {"op": "status", "id": "s"}, {"op": "selftest"},
         {"op": "events", "since": 0, "limit": 10, "id": 42}, {"op": "read"}]
FIELDS = {"read": {"status", "timestamp", "event_seq"},
          "status": {"status", "event_seq"},
          "selftest": {"result", "status", "calibration", "registers", "measurement"},
          "events": {"events", "last_seq"}}


def strict_json(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


def values(c: MetrologyCore) -> str:
    """What no request may ever change, even the failing chip's: the registers, the
    calibration and every stored record but the event log's (its hash chain head)."""
    rows = c.store.db.execute("SELECT kind, key, copy, value FROM records WHERE kind != 'chain'"
                              " ORDER BY 1, 2, 3")
    return json.dumps([list(rows), c.registers.to_record(), c.calibration.to_record()])


def make_core(directory: Path, faulty: bool) -> MetrologyCore:
    clock = ManualClock(START)
    load = HouseholdLoad(3)
    source = parse_inject("fail:0:0", HouseholdSource(load)) if faulty else None  # never cured
    core = MetrologyCore(directory, clock=clock, load=load, source=source)
    clock.advance(7200)
    core.reading()
    core.self_check()
    return core


def line(rng: random.Random) -> tuple[bytes, Any]:
    """A request line and the id a reply must echo (None: no valid id)."""
    doc: Any = dict(rng.choice(BASES))
    if rng.random() < 0.7:
        doc, _ = mutate(doc, rng)
    if isinstance(doc, dict) and rng.random() < 0.1:
        doc[rng.choice(("value", "delivered_wh", "gain_micro", "op "))] = 1
    if isinstance(doc, dict) and rng.random() < 0.05:
        doc["op"] = rng.choice(("write", "calibrate", "set_time", "reset", "READ", "read "))
    try:
        data = json.dumps(doc).encode()
    except (TypeError, ValueError):
        data = b"{}"
    r = rng.random()
    if r < 0.03:
        data = data[: rng.randrange(len(data) + 1)]
    elif r < 0.05:
        data = data + b"\xff"
    elif r < 0.06:
        data = b"[" * rng.choice((500, 1200, 2000))
    elif r < 0.065:
        data = b'{"op": "read", "x": "' + b"a" * MAX_LINE + b'"}'
    elif r < 0.08:
        data = rng.choice((b"", b" ", b"null", b"[]", b'"read"', b'{"op":"read"}{"op":"read"}',
                           b'{"op": NaN}', b'{"op": "events", "since": Infinity}'))
    want = None
    if isinstance(doc, dict) and r >= 0.08:
        rid = doc.get("id")
        if type(rid) is int or isinstance(rid, str) and len(rid) <= 64:
            want = rid
    return data + b"\n", want


def judge(data: bytes, want_id: Any, reply: dict[str, Any]) -> list[str]:
    problems = []
    try:
        back = strict_json(encode(reply))
    except (TypeError, ValueError) as exc:
        return [f"reply is not strict JSON: {exc}"]
    if back.get("v") != 1 or not isinstance(back.get("ok"), bool):
        problems.append(f"reply without v/ok: {back}")
    if want_id is not None and back.get("ok") is not None and "id" in back \
            and back["id"] != want_id:
        problems.append(f"id {want_id!r} echoed as {back.get('id')!r}")
    if back.get("ok"):
        if want_id is not None and back.get("id") != want_id:
            problems.append(f"id {want_id!r} not echoed")
        op = json.loads(data)["op"]
        missing = FIELDS[op] - set(back)
        if missing:
            problems.append(f"{op} reply without {sorted(missing)}")
    elif back.get("code") not in CODES:
        problems.append(f"error code {back.get('code')!r}: {back.get('error')}")
    return problems


def run(name: str, seed: int, count: int, tmp: Path) -> tuple[Campaign, list[str]]:
    camp = Campaign.make(name, seed, count)
    rng = camp.rng()
    cores = [make_core(tmp / "good", False), make_core(tmp / "faulty", True)]
    prints = [fingerprint(c) for c in cores]
    kept_values = [values(c) for c in cores]
    found: list[str] = []
    try:
        with CatchAllObserver() as observer:
            for i in range(camp.count):
                which = i % 2
                core = cores[which]
                data, want_id = line(rng)
                problems: list[str] = []
                try:
                    reply = handle_line(data, core)
                    problems += judge(data, want_id, reply)
                    camp.outcomes["ok" if reply.get("ok") else reply.get("code", "?")] += 1
                except Exception as exc:  # noqa: BLE001 - counted as an internal exception
                    camp.internal_exceptions += 1
                    problems.append(f"raised {type(exc).__name__}: {exc}")
                now = fingerprint(core)
                if now != prints[which]:
                    kept = values(core) == kept_values[which]
                    op = reply.get("ok") and json.loads(data)["op"]
                    if not (kept and op in ("selftest", "read")):
                        camp.unentitled += 1
                        problems.append("a request changed what metrology stores")
                    else:
                        camp.outcomes["fault logged"] += 1  # a failing or (time frozen) stuck chip
                    prints[which] = now
                caught = observer.take()
                camp.internal_exceptions += len(caught)
                problems += [CatchAllObserver.describe(r) for r in caught]
                camp.frames += 1
                camp.replies += 1
                if problems:
                    camp.unparsable += any("JSON" in p for p in problems)
                    found.append(f"#{i} {data[:120]!r}: {problems}")
                    if len(found) > 10:
                        break
    finally:
        for core in cores:
            core.close()
    camp.report()
    return camp, found


def test_metrology_protocol_sample(tmp_path):
    camp, found = run("metrology-sample", 20269, 3000, tmp_path)
    assert not found, "\n".join(found)
    for outcome in ("ok", "malformed", "unknown_op", "bad_field", "too_long"):
        assert camp.outcomes[outcome] > 0, outcome


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a campaign, not a hang
def test_metrology_protocol_campaign(tmp_path):
    camp, found = run("metrology", 8, 100_000, tmp_path)
    assert not found, "\n".join(found)
    assert camp.frames == camp.count and camp.internal_exceptions == 0


async def test_metrology_campaign_over_the_real_socket(tmp_path):
    core = make_core(tmp_path / "m", False)
    server = MetrologyServer(core, tmp_path / "m.sock", idle_timeout=5)
    await server.start()
    rng = random.Random(20270)
    try:
        before = fingerprint(core)
        sent = replies = 0
        for _round in range(6):
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "m.sock"),
                                                                limit=2 * MAX_LINE)
            lines = [line(rng)[0] for _ in range(60)]
            closes = next((i for i, x in enumerate(lines) if len(x) > MAX_LINE), None)
            writer.write(b"".join(lines))
            await writer.drain()
            expected = len(lines) if closes is None else closes + 1
            for i in range(expected):
                reply = strict_json(await asyncio.wait_for(reader.readline(), 10))
                assert reply["v"] == 1
                if i == closes:
                    assert reply["code"] == "too_long"
            sent += len(lines)
            replies += expected
            if closes is not None:  # the server hangs up after a line it cannot frame
                assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
        assert replies >= sent // 2
        assert fingerprint(core) == before
    finally:
        await server.stop()
        core.close()
