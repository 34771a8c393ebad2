"""The isolated metrology process, through its read-only protocol."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sep.metrology.api import MetrologyStatus
from sep.metrology.client import MetrologyClient
from sep.metrology.load import HouseholdLoad

SEED = 5
START = 1_800_000_000.0
SPEED = 3600.0  # an hour per second


def spawn(data: Path, sock: Path, check: float = 0.2, start: float = START):
    proc = subprocess.Popen([sys.executable, "-m", "sep.metrology.process", "--data", str(data),
                             "--socket", str(sock), "--seed", str(SEED), "--speed", str(SPEED),
                             "--start", str(start), "--check-interval", str(check)],
                            stdout=subprocess.PIPE, text=True)
    assert "serving" in proc.stdout.readline()
    return proc


@pytest.fixture
def metrology(tmp_path):
    sock = tmp_path / "m.sock"
    proc = spawn(tmp_path, sock)
    yield tmp_path, sock, proc
    proc.kill()
    proc.wait()


async def raw(sock: Path, payload: bytes) -> bytes:
    r, w = await asyncio.open_unix_connection(str(sock))
    w.write(payload)
    await w.drain()
    try:
        line = await asyncio.wait_for(r.readline(), 3)
    finally:
        w.close()
    return line


async def test_readings_match_an_independent_recomputation(metrology):
    _, sock, _ = metrology
    client = MetrologyClient(str(sock))
    load = HouseholdLoad(SEED)
    since = (await client.status())["registers_since"]
    assert START <= since < START + 3600 * 5
    for _ in range(3):
        r = await client.read()
        assert r.status == MetrologyStatus.OK
        imported, exported = load.energy_j(since, r.timestamp)
        assert r.delivered_wh == imported // 3600 and r.received_wh == exported // 3600
        await asyncio.sleep(0.3)
    client.close()


async def test_the_protocol_refuses_everything_but_reads(metrology):
    _, sock, _ = metrology
    for payload in (b'{"op": "write", "delivered_wh": 0}\n', b'{"op": "set_calibration"}\n',
                    b"garbage\n", b"\xff\xfe\n", b"[1,2]\n", b'{"op": null}\n'):
        doc = json.loads(await raw(sock, payload))
        assert doc["ok"] is False
    assert b"too long" in await raw(sock, b"x" * 10_000 + b"\n")
    # half a request, then hang up
    r, w = await asyncio.open_unix_connection(str(sock))
    w.write(b'{"op": "re')
    w.close()
    client = MetrologyClient(str(sock))
    assert (await client.read()).status == MetrologyStatus.OK  # still serving
    client.close()


async def test_registers_survive_sigkill(metrology):
    data, sock, proc = metrology
    client = MetrologyClient(str(sock))
    await asyncio.sleep(1.5)
    before = await client.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    down = await client.read()
    assert down.status & MetrologyStatus.LINK_DOWN and down.delivered_wh == before.delivered_wh
    proc2 = spawn(data, sock, start=time.time())
    try:
        after = await client.read()
        assert after.status == MetrologyStatus.OK
        assert after.delivered_wh >= before.delivered_wh - 1000  # saved each second
        assert after.delivered_wh > 0
    finally:
        proc2.kill()
        proc2.wait()
        client.close()


def corrupt_calibration(data: Path, copies: int) -> None:
    db = sqlite3.connect(data / "metrology" / "meter.db")
    db.execute("UPDATE records SET value='{\"gain_ppm\":500000}' WHERE kind='calibration' "
               "AND copy < ?", (copies,))
    db.commit()
    db.close()


async def test_calibration_one_copy_repaired_both_means_no_readings(tmp_path):
    sock = tmp_path / "m.sock"
    proc = spawn(tmp_path, sock)
    client = MetrologyClient(str(sock))
    try:
        await client.read()
        corrupt_calibration(tmp_path, 1)
        await asyncio.sleep(0.6)
        st = await client.selftest()
        assert st["calibration"] == "ok"
        status = await client.status()
        assert any("repaired" in e.get("detail", "") for e in status["events"])
        corrupt_calibration(tmp_path, 2)
        await asyncio.sleep(0.6)
        r = await client.read()
        assert r.status & MetrologyStatus.CALIBRATION_FAULT
        assert (await client.selftest())["calibration"] == "corrupt"
    finally:
        client.close()
        proc.kill()
        proc.wait()


async def test_stuck_source_is_detected_and_recovered(metrology):
    data, sock, _ = metrology
    client = MetrologyClient(str(sock))
    (data / "metrology" / "inject-stuck").touch()
    for _ in range(50):
        status = await client.status()
        details = [e.get("detail", "") for e in status["events"]]
        if any("stuck" in d for d in details):
            break
        await asyncio.sleep(0.1)
    assert any("stuck" in d for d in details)
    assert (await client.selftest())["source_resets"] >= 1
    assert not (data / "metrology" / "inject-stuck").exists()
    client.close()
