"""The read-only protocol: nothing but the four reads is accepted, and nothing changes state.

Hypothesis throws arbitrary bytes and arbitrary JSON at the handler and, over a real Unix
socket, arbitrary byte streams at the server; the stored state (every record and the event
log) must be byte-for-byte what it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sep.clock import ManualClock
from sep.metrology.core import MetrologyCore
from sep.metrology.load import HouseholdLoad
from sep.metrology.process import MetrologyServer
from sep.metrology.protocol import MAX_LINE, OPS, handle_line, parse_request

START = 1_800_000_000


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    clock = ManualClock(START)
    c = MetrologyCore(tmp_path_factory.mktemp("proto") / "metrology", clock=clock,
                      load=HouseholdLoad(3))
    clock.advance(7200)
    c.reading()
    yield c
    c.close()


def fingerprint(c: MetrologyCore) -> str:
    """Everything metrology keeps: registers, calibration, marks, and the event log."""
    rows = c.store.db.execute("SELECT kind, key, copy, value FROM records ORDER BY 1, 2, 3")
    events = c.store.db.execute("SELECT seq, kind, details FROM events ORDER BY seq")
    return hashlib.sha256(json.dumps([list(rows), list(events), c.registers.to_record(),
                                      c.calibration.to_record(), int(c.status)]).encode()
                          ).hexdigest()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12)
requests = st.dictionaries(
    st.sampled_from(["op", "id", "since", "limit", "value", "delivered_wh", "gain_micro", "t"])
    | st.text(max_size=12),
    st.sampled_from([*OPS, "write", "set", "calibrate", "reset", "read "]) | json_values,
    max_size=5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.binary(max_size=300) | requests.map(lambda d: json.dumps(d).encode()))
def test_anything_in_nothing_changes(core, line):
    before = fingerprint(core)
    reply = handle_line(line + b"\n", core)
    assert isinstance(reply, dict) and reply["v"] == 1
    json.dumps(reply, allow_nan=False)  # always encodable
    if reply["ok"]:
        req = json.loads(line)
        assert req["op"] in OPS and set(req) <= {"op", "id", "since", "limit"}
    else:
        assert reply["code"] in ("malformed", "unknown_op", "bad_field", "too_long")
    assert fingerprint(core) == before  # time does not move: no read may change anything


def test_write_like_requests_are_named_as_refused(core):
    for op in ("write", "set_registers", "calibrate", "set_time", "reset", "update"):
        reply = handle_line(json.dumps({"op": op, "value": 1}).encode(), core)
        assert reply["code"] == "unknown_op" and "read-only" in reply["error"]
    reply = handle_line(b'{"op": "read", "delivered_wh": 0, "id": 9}', core)
    assert (reply["code"], reply["id"]) == ("bad_field", 9)
    assert parse_request(b'{"op": "events", "since": 3, "limit": 5}')["limit"] == 5
    too_long = b'{"op": "read", "x": "' + b"a" * MAX_LINE + b'"}'
    assert handle_line(too_long, core)["code"] == "too_long"


def test_replies_carry_what_the_docstring_promises(core):
    read = handle_line(b'{"op": "read", "id": "r"}', core)
    assert {"ok", "v", "id", "status", "timestamp", "delivered_wh", "received_wh",
            "delivered_j", "received_j", "demand_w", "event_seq"} == set(read)
    events = handle_line(b'{"op": "events", "since": 0, "limit": 1}', core)
    assert len(events["events"]) == 1 and events["last_seq"] >= 2
    st_ = handle_line(b'{"op": "status"}', core)
    assert st_["calibration"]["state"] == "ok" and st_["registers_t"] == read["timestamp"]
    test = handle_line(b'{"op": "selftest"}', core)
    assert test["result"] == "pass" and test["events"] == []


class Exploding:
    event_seq = 0

    def reading(self):
        raise ZeroDivisionError("inside metrology")


def test_an_internal_failure_is_an_error_reply_not_a_crash():
    reply = handle_line(b'{"op": "read", "id": 1}', Exploding())  # type: ignore[arg-type]
    assert reply == {"ok": False, "v": 1, "error": "internal error: ZeroDivisionError",
                     "code": "internal", "id": 1}


def _stream(path: str, chunks: list[bytes]) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(path)
    try:
        for c in chunks:
            s.sendall(c)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out
    except OSError:
        return b""
    finally:
        s.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.binary(max_size=200) | st.sampled_from(
    [b"\n", b'{"op":"read"}\n', b'{"op":"write"}\n', b"\xff\n", b"{" * 50]), max_size=12))
def test_a_real_socket_survives_arbitrary_streams(core, tmp_path_factory, chunks):
    async def main() -> None:
        path = Path(tmp_path_factory.mktemp("sock")) / "m.sock"
        server = MetrologyServer(core, path, idle_timeout=1.0)
        await server.start()
        try:
            before = fingerprint(core)
            out = await asyncio.to_thread(_stream, str(path), chunks)
            for line in out.splitlines():
                json.loads(line)  # every reply is a whole JSON line
            assert fingerprint(core) == before
            ok = await asyncio.to_thread(_stream, str(path), [b'{"op":"read"}\n'])
            assert json.loads(ok)["ok"] is True  # and it still serves
        finally:
            await server.stop()
    asyncio.run(main())


async def test_connection_limits_and_idle_hangup(core, tmp_path):
    server = MetrologyServer(core, tmp_path / "m.sock", max_connections=2, idle_timeout=0.3)
    await server.start()
    try:
        held = [await asyncio.open_unix_connection(str(tmp_path / "m.sock")) for _ in range(2)]
        await asyncio.sleep(0.05)
        r, w = await asyncio.open_unix_connection(str(tmp_path / "m.sock"))
        assert json.loads(await r.readline())["code"] == "busy"
        w.close()
        # the idle ones are dropped after the idle timeout, so nobody can hog the slots
        for hr, _ in held:
            assert await asyncio.wait_for(hr.read(), 2) == b""
        for _, hw in held:
            hw.close()
        r, w = await asyncio.open_unix_connection(str(tmp_path / "m.sock"))
        w.write(b'{"op":"read"}\n')
        assert json.loads(await r.readline())["ok"] is True
        w.close()
    finally:
        await server.stop()
