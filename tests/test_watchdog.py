"""The watchdog: hung tasks are detected and restarted in time; systemd is told."""

from __future__ import annotations

import asyncio
import socket
import time

from sep.watchdog import Watchdog, sd_notify


async def test_a_hung_task_is_restarted_within_its_period():
    events: list[tuple[str, dict]] = []
    starts: list[float] = []
    hang = asyncio.Event()

    async def worker(beat):
        starts.append(time.monotonic())
        while True:
            beat()
            if hang.is_set() and len(starts) == 1:
                await asyncio.Event().wait()  # stuck forever, no more heartbeats
            await asyncio.sleep(0.02)

    wd = Watchdog(on_event=lambda k, d: events.append((k, d)), check_interval=0.05)
    wd.register("worker", 0.5, worker)
    await wd.start()
    await asyncio.sleep(0.2)
    hung_at = time.monotonic()
    hang.set()
    while len(starts) < 2:
        await asyncio.sleep(0.02)
        assert time.monotonic() - hung_at < 2.0
    detected = starts[1] - hung_at
    assert 0.4 <= detected <= 0.5 + 0.05 + 0.3  # timeout + check interval + tolerance
    assert events[0][0] == "WATCHDOG_RESET" and events[0][1]["task"] == "worker"
    await wd.stop()


async def test_a_task_that_keeps_dying_escalates():
    escalated: list[str] = []

    async def crasher(beat):
        beat()
        raise RuntimeError("boom")

    wd = Watchdog(on_escalate=escalated.append, max_restarts=2, check_interval=0.02)
    wd.register("crasher", 5, crasher)
    await wd.start()
    for _ in range(100):
        if escalated:
            break
        await asyncio.sleep(0.02)
    assert escalated == ["crasher"] and wd.resets == 3
    await wd.stop()


async def test_sd_notify_ready_and_watchdog(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(3)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s

    async def worker(beat):
        while True:
            beat()
            await asyncio.sleep(0.02)

    wd = Watchdog(check_interval=0.02)
    wd.register("worker", 1, worker)
    await wd.start()
    got = []
    loop = asyncio.get_running_loop()
    for _ in range(3):
        got.append(await loop.run_in_executor(None, sock.recv, 100))
    await wd.stop()
    sock.close()
    assert got[0] == b"READY=1" and got[1:] == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_sd_notify_without_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False
