"""The isolated metrology process: real processes, real Unix sockets, no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sep.metrology.api import MetrologyStatus, Reading
from sep.metrology.client import MetrologyClient, MetrologyProtocolError, MetrologyUnavailable
from sep.metrology.load import HouseholdLoad
from sep.metrology.process import start_metrology_process, stop_metrology_process

SEED = 5
SOLAR = 3000  # rooftop solar: the household exports around midday, so both registers move
START = 1_800_000_000.0  # 08:00 UTC
SPEED = 3600.0  # an hour per second
LOAD = HouseholdLoad(SEED, solar_peak_w=SOLAR)


async def spawn(data: Path, *, start: float = START, check: float = 0.2, tick: float = 0.2,
                inject: str | None = None, **client_options):
    return await start_metrology_process(
        data, data / "m.sock", seed=SEED, speed=SPEED, start=start, check_interval=check,
        tick=tick, inject=inject, extra_args=["--solar-peak-w", str(SOLAR)], **client_options)


@pytest.fixture
async def metrology(tmp_path):
    proc, client = await spawn(tmp_path)
    yield tmp_path, proc, client
    await client.aclose()
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


async def origin(client: MetrologyClient) -> tuple[int, int, int]:
    o = (await client.status())["origin"]
    return o["t"], o["delivered_j"], o["received_j"]


def expected(o: tuple[int, int, int], t: float) -> tuple[int, int]:
    """Independent recomputation: origin + the household's exact joules since."""
    imp, exp = LOAD.energy_j(o[0], t)
    return o[1] + imp, o[2] + exp


async def assert_model(client: MetrologyClient, r: Reading, o: tuple[int, int, int]) -> None:
    d, x = expected(o, r.timestamp)
    assert (r.delivered_wh, r.received_wh) == (d // 3600, x // 3600)
    raw = await client.request("read")  # joules too, for an exact comparison
    d, x = expected(o, raw["timestamp"])
    assert (raw["delivered_j"], raw["received_j"]) == (d, x)
    assert raw["demand_w"] == LOAD.power_w(raw["timestamp"])


def _raw_sync(path: str, payload: bytes, timeout: float) -> list[dict]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    with contextlib.suppress(ConnectionError):  # the server may hang up on an over-long line
        s.sendall(payload)
    buf = b""
    try:
        while buf.count(b"\n") < max(1, payload.count(b"\n")):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        s.close()
    return [json.loads(line) for line in buf.splitlines()]


async def raw(sock: Path, payload: bytes, *, timeout: float = 3.0) -> list[dict]:
    """Send bytes on a fresh connection; the reply lines until enough came or it hung up."""
    return await asyncio.to_thread(_raw_sync, str(sock), payload, timeout)


async def wait_for_code(client: MetrologyClient, code: str, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = await client.events()
        if any(e["details"].get("code") == code for e in events):
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {code} event; got {[e['details'].get('code') for e in events]}")


async def test_readings_equal_an_independent_recomputation(metrology):
    _, _, client = metrology
    o = await origin(client)
    seen = []
    for _ in range(5):
        r = await client.read()
        assert r.status == MetrologyStatus.OK
        await assert_model(client, r, o)
        seen.append(r)
        await asyncio.sleep(0.15)
    assert seen[-1].timestamp - seen[0].timestamp > 1800  # time really moved (an hour/s)
    assert seen[-1].delivered_wh > seen[0].delivered_wh and seen[-1].received_wh > 0


async def test_read_round_trip_is_fast(metrology):
    _, _, client = metrology
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        await client.read()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(f"read round trip: median {median * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms "
          "(includes integrating ~{:.0f} simulated s and two synchronous commits)".format(
              median * SPEED))
    assert median < 0.05


async def test_the_protocol_refuses_everything_but_reads(metrology):
    data, proc, client = metrology
    sock = data / "m.sock"
    o = await origin(client)
    cal_before = (await client.status())["calibration"]
    refused = [
        b'{"op": "write", "delivered_wh": 0}\n',
        b'{"op": "set_calibration", "gain_micro": 2000000}\n',
        b'{"op": "reset_registers"}\n',
        b'{"op": "set_time", "t": 0}\n',
        b'{"op": "read", "delivered_wh": 0}\n',  # a read smuggling a value
        b'{"op": "events", "since": -1}\n',
        b'{"op": "events", "limit": 1000000}\n',
        b'{"op": "read", "id": {"x": 1}}\n',
        b"garbage\n", b"\xff\xfe\n", b"[1,2]\n", b'{"op": null}\n', b"\x00" * 100 + b"\n",
        b"[" * 3000 + b"\n", b'{"op": "READ"}\n', b"{}\n", b'"read"\n', b"NaN\n",
    ]
    for payload in refused:
        replies = await raw(sock, payload)
        assert len(replies) == 1 and replies[0]["ok"] is False, payload[:40]
        assert replies[0]["code"] in ("malformed", "unknown_op", "bad_field")
    for huge in (b"x" * 10_000 + b"\n", b'{"op": "read", "pad": "' + b"y" * 1_000_000):
        replies = await raw(sock, huge)
        assert [r["code"] for r in replies] == ["too_long"]
    # half a request, then hang up; and a half request left idle
    r, w = await asyncio.open_unix_connection(str(sock))
    w.write(b'{"op": "re')
    await w.drain()
    w.close()
    idle_r, idle_w = await asyncio.open_unix_connection(str(sock))
    idle_w.write(b'{"op": "rea')
    # pipelined requests on one connection come back in order, ids echoed
    replies = await raw(sock, b'{"op":"read","id":1}\n{"op":"bogus","id":2}\n'
                              b'{"op":"status","id":"three"}\n')
    assert [(x["ok"], x["id"]) for x in replies] == [(True, 1), (False, 2), (True, "three")]
    # too many connections at once: the excess is told so; the server lives on
    conns = [await asyncio.open_unix_connection(str(sock)) for _ in range(20)]
    for _, cw in conns:
        cw.close()
    idle_w.close()
    # the client has no write operation; a forged one through the generic request is refused
    with pytest.raises(MetrologyProtocolError, match="unknown_op"):
        await client.request("set_registers", delivered_wh=0)
    assert not [m for m in dir(client) if m.startswith(("set", "write", "reset", "calib"))]
    # and nothing changed: still serving, still the model, same calibration, same process
    r = await client.read()
    assert r.status == MetrologyStatus.OK and proc.returncode is None
    await assert_model(client, r, o)
    assert (await client.status())["calibration"] == cal_before


async def test_registers_survive_sigkill_and_restart(tmp_path):
    proc, client = await spawn(tmp_path)
    try:
        o = await origin(client)
        for _ in range(4):
            last = await client.read()
            await asyncio.sleep(0.1)
        last = await client.read()  # shown, so already durable
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        down = await client.read()
        assert down.status == MetrologyStatus.LINK_DOWN
        assert (down.timestamp, down.delivered_wh, down.received_wh) == (
            last.timestamp, last.delivered_wh, last.received_wh)  # last known, not invented
        # restart asking for the same start: time resumes at the stored registers
        proc, _ = await spawn(tmp_path)
        after = await client.read()  # the same client object reconnects by itself
        assert after.status == MetrologyStatus.OK and client.reconnects >= 1
        assert after.timestamp >= last.timestamp and after.delivered_wh >= last.delivered_wh
        assert after.received_wh >= last.received_wh
        await assert_model(client, after, o)
        # killed again, restarted ten (simulated) days later: that time is integrated too
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        proc, _ = await spawn(tmp_path, start=START + 10 * 86400)
        later = await client.read()
        while later.timestamp < START + 10 * 86400:  # catching up, a simulated day per step
            await assert_model(client, later, o)
            nxt = await client.read()
            assert nxt.timestamp >= later.timestamp and nxt.delivered_wh >= later.delivered_wh
            later = nxt
        assert later.delivered_wh > after.delivered_wh + 10 * 12 * 150  # ten nights at least
        await assert_model(client, later, o)
        assert (await client.status())["origin"]["t"] == o[0]  # never re-commissioned
    finally:
        await stop_metrology_process(proc, client)


CLIENT_SCRIPT = """
import asyncio, json, sys
from sep.metrology.client import MetrologyClient
async def main():
    c = MetrologyClient(sys.argv[1])
    r = await c.read()
    print(json.dumps([r.timestamp, r.delivered_wh, r.received_wh, int(r.status)]))
    await c.aclose()
asyncio.run(main())
"""


async def test_registers_survive_a_restart_of_the_client_side(metrology):
    data, _, client = metrology
    o = await origin(client)
    first = await client.read()
    await client.aclose()
    results = []
    for _ in range(2):  # an application process that comes and goes
        out = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT, str(data / "m.sock")],
                             capture_output=True, text=True, timeout=30, check=True)
        results.append(json.loads(out.stdout))
        await asyncio.sleep(0.1)
    assert all(status == 0 for *_, status in results)
    ts = [first.timestamp] + [t for t, *_ in results]
    wh = [first.delivered_wh] + [d for _, d, *_ in results]
    assert ts == sorted(ts) and wh == sorted(wh)
    for t, d, x, _ in results:
        ed, ex = expected(o, t)
        assert (d, x) == (ed // 3600, ex // 3600)
    fresh = MetrologyClient(str(data / "m.sock"))
    again = await fresh.read()
    assert again.delivered_wh >= results[-1][1]
    await fresh.aclose()


def tamper_calibration(data: Path, keys: tuple[str, ...]) -> None:
    """Damage stored calibration copies behind metrology's back (one transaction)."""
    db = sqlite3.connect(data / "metrology" / "meter.db")
    marks = ",".join("?" * len(keys))
    n = db.execute(f"UPDATE records SET value='{{\"gain_micro\":1500000}}' "
                   f"WHERE kind='metrology-calibration' AND key IN ({marks})", keys).rowcount
    db.commit()
    db.close()
    assert n == len(keys)


async def test_calibration_one_copy_recovered_both_means_no_readings(tmp_path):
    forwarded: list[tuple[str, dict]] = []
    proc, client = await spawn(tmp_path, on_event=lambda k, d: forwarded.append((k, d)))
    try:
        good = await client.read()
        tamper_calibration(tmp_path, ("a",))
        await wait_for_code(client, "CALIBRATION_REPAIRED")
        st = await client.selftest()
        assert st["calibration"] == "ok" and st["result"] == "pass"
        good = await client.read()
        assert good.status == MetrologyStatus.OK
        # the events reached the application's sink through the client
        kinds = {(k, d.get("code")) for k, d in forwarded}
        assert ("INTEGRITY_RECOVERED", "CALIBRATION_REPAIRED") in kinds
        assert any(k == "INTEGRITY_FAILURE" for k, _ in forwarded)  # the store's own finding

        tamper_calibration(tmp_path, ("a", "b"))
        await wait_for_code(client, "CALIBRATION_CORRUPT")
        reply = await client.request("read")
        assert reply["status"] & MetrologyStatus.CALIBRATION_FAULT
        assert not {"delivered_wh", "delivered_j", "received_wh", "demand_w"} & set(reply)
        faulted = await client.read()
        assert faulted.status & MetrologyStatus.CALIBRATION_FAULT
        # no wrong energy: only the last good values, flagged, and no demand
        assert client.last is not None and client.last.status == MetrologyStatus.OK
        assert faulted.delivered_wh == client.last.delivered_wh and faulted.demand_w == 0
        assert (await client.selftest())["result"] == "fail"
        # it stays refused across a restart: nothing re-commissions a damaged meter
        await stop_metrology_process(proc, None)
        proc, client2 = await spawn(tmp_path)
        assert (await client2.read()).status & MetrologyStatus.CALIBRATION_FAULT
        await client2.aclose()
    finally:
        await stop_metrology_process(proc, client)


async def test_a_stuck_source_is_detected_and_recovered(tmp_path):
    proc, client = await spawn(tmp_path, inject="stuck:0.3:2")  # needs two chip resets
    try:
        o = await origin(client)
        statuses = set()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            r = await client.read()
            statuses.add(r.status)
            events = await client.events()
            if any(e["details"]["code"] == "MEASUREMENT_RECOVERED" for e in events):
                break
            await asyncio.sleep(0.05)
        codes = [e["details"]["code"] for e in events]
        i = codes.index("MEASUREMENT_STUCK")
        assert codes[i:] == ["MEASUREMENT_STUCK", "SOURCE_REINITIALISED", "SOURCE_REINITIALISED",
                             "MEASUREMENT_RECOVERED"]
        assert MetrologyStatus.MEASUREMENT_FAULT in statuses  # the app saw the fault meanwhile
        stuck = events[i]["details"]
        r = await client.read()
        assert r.status == MetrologyStatus.OK
        st = await client.status()
        assert st["measurement"]["resets"] == 2 and st["measurement"]["state"] == "ok"
        # before the stuck run the registers were the model's; after, they move again
        d_before, _ = expected(o, stuck["suspect_from"])
        assert r.delivered_wh >= d_before // 3600
        later = await client.read()
        assert later.timestamp > stuck["held_at"]
    finally:
        await stop_metrology_process(proc, client)


async def test_a_failing_source_holds_the_registers_and_keeps_trying(tmp_path):
    proc, client = await spawn(tmp_path, inject="fail:0.2:0")  # never recovers
    try:
        await wait_for_code(client, "MEASUREMENT_FAILING")
        a = await client.read()
        await asyncio.sleep(0.5)
        b = await client.read()
        assert a.status & MetrologyStatus.MEASUREMENT_FAULT and b.status == a.status
        assert (b.timestamp, b.delivered_wh) == (a.timestamp, a.delivered_wh)  # held, not invented
        assert b.demand_w == 0
        st = await client.status()
        assert st["measurement"]["resets"] >= 2 and st["measurement"]["held_at"] == a.timestamp
        codes = [e["details"]["code"] for e in await client.events()]
        assert codes.count("SOURCE_REINITIALISED") <= 4  # attempts 1, 2, 3, 4, 8... are logged
    finally:
        await stop_metrology_process(proc, client)


async def test_one_process_per_data_dir_and_a_clean_stop(tmp_path):
    proc, client = await spawn(tmp_path)
    try:
        with pytest.raises(RuntimeError, match="did not start"):
            await start_metrology_process(tmp_path, tmp_path / "other.sock", seed=SEED)
        first = await client.read()
        assert first.status == MetrologyStatus.OK
    finally:
        code = await stop_metrology_process(proc, client)
    assert code == 0 and not (tmp_path / "m.sock").exists()
    with pytest.raises(MetrologyUnavailable):  # never had a reading: nothing true to return
        await MetrologyClient(str(tmp_path / "m.sock"), timeout=0.5).read()
    proc, client = await spawn(tmp_path)
    try:
        again = await client.read()
        assert again.delivered_wh >= first.delivered_wh
    finally:
        await stop_metrology_process(proc, client)
