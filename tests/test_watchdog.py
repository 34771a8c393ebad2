"""The watchdog: hung tasks are detected and restarted in time, repeated failure escalates,
systemd hears READY=1 and WATCHDOG=1 on a real datagram socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
from waiting import until as _until

from sep.watchdog import Watchdog, notify_address, sd_notify, watchdog_interval

TOL = 0.15  # scheduling tolerance on a loaded 2-core CI machine


def until(cond, timeout: float = 5.0):
    return _until(cond, timeout, step=0.005)  # fine steps: these tests time detections


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.escalated: list[str] = []

    def event(self, kind: str, details: dict) -> None:
        self.events.append((kind, details))


@pytest.mark.parametrize("how", ["awaits forever", "busy without beating"])
async def test_a_hung_task_is_restarted_within_its_period(how):
    rec = Recorder()
    starts: list[float] = []
    last_beat: list[float] = []
    timeout = 0.4

    async def worker(beat):
        starts.append(time.monotonic())
        while True:
            beat()
            last_beat.append(time.monotonic())
            if len(starts) == 1 and len(last_beat) == 10:  # the first instance hangs
                if how == "awaits forever":
                    await asyncio.Event().wait()
                while True:  # keeps the loop turning, never beats
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.02)

    wd = Watchdog(on_event=rec.event)
    wd.register("worker", timeout, worker)
    await wd.start()
    try:
        await until(lambda: len(starts) >= 2)
        hung_at = last_beat[9]
        detected = starts[1] - hung_at
        print(f"{how}: restarted {detected * 1e3:.1f} ms after the last beat "
              f"(timeout {timeout * 1e3:.0f} ms)")
        assert timeout <= detected <= timeout + TOL
        kind, details = rec.events[0]
        assert kind == "WATCHDOG_RESET" and details["task"] == "worker"
        assert details["action"] == "restart" and timeout <= details["silent_s"] <= timeout + TOL
        await until(lambda: len(last_beat) > 12)  # the new instance beats
        assert wd.healthy and wd.resets == 1
    finally:
        await wd.stop()


async def test_restart_factory_with_named_and_implicit_beats_and_the_decorator():
    wd = Watchdog()
    runs = {"named": 0, "implicit": 0, "decorated": 0}

    async def named():
        runs["named"] += 1
        while True:
            wd.beat("named")
            await asyncio.sleep(0.02)

    async def implicit():
        runs["implicit"] += 1
        while True:
            wd.beat()  # the calling watched task
            await asyncio.sleep(0.02)

    wd.register("named", 0.3, restart=named)
    wd.register("implicit", 0.3, restart=implicit)

    @wd.watch("decorated", timeout=0.3)
    async def decorated(beat):
        runs["decorated"] += 1
        if runs["decorated"] == 1:
            raise RuntimeError("first run crashes")
        while True:
            beat()
            await asyncio.sleep(0.02)

    await wd.start()
    try:
        await asyncio.sleep(0.8)
        assert runs == {"named": 1, "implicit": 1, "decorated": 2}  # only the crash restarted
        assert wd.healthy
        with pytest.raises(RuntimeError):
            wd.beat()  # outside a watched task there is nobody to beat for
        with pytest.raises(ValueError):
            wd.register("named", 1, restart=named)
        with pytest.raises(TypeError):
            wd.register("neither", 1)
    finally:
        await wd.stop()


async def test_repeated_failure_escalates_once_and_the_task_stays_down():
    rec = Recorder()
    runs: list[float] = []

    async def hangs(beat):
        runs.append(time.monotonic())
        beat()
        await asyncio.Event().wait()

    wd = Watchdog(on_event=rec.event, on_escalate=rec.escalated.append, max_restarts=2,
                  window=60)
    wd.register("hangs", 0.1, hangs)
    await wd.start()
    try:
        await until(lambda: rec.escalated)
        await asyncio.sleep(0.3)
        assert rec.escalated == ["hangs"] and len(runs) == 3  # started, restarted twice, gave up
        actions = [d["action"] for _, d in rec.events]
        assert actions == ["restart", "restart", "escalate"]
        assert [d["restarts_in_window"] for _, d in rec.events] == [1, 2, 3]
        assert not wd.healthy
    finally:
        await wd.stop()


async def test_restarts_spread_beyond_the_window_do_not_escalate():
    rec = Recorder()

    async def crashes(beat):
        beat()
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")

    wd = Watchdog(on_event=rec.event, on_escalate=rec.escalated.append, max_restarts=1,
                  window=0.04)
    wd.register("crashes", 5, crashes)
    await wd.start()
    try:
        await until(lambda: len(rec.events) >= 4)
        assert not rec.escalated
        assert all("RuntimeError: boom" in d["reason"] for _, d in rec.events)
    finally:
        await wd.stop()


async def test_a_task_that_ignores_cancellation_escalates():
    rec = Recorder()
    refusing = True

    async def stubborn(beat):
        beat()
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if not refusing:
                    raise

    wd = Watchdog(on_event=rec.event, on_escalate=rec.escalated.append, cancel_grace=0.1)
    wd.register("stubborn", 0.1, stubborn)
    await wd.start()
    await until(lambda: rec.escalated)
    assert "ignored cancellation" in rec.events[-1][1]["reason"]
    assert rec.events[-1][1]["action"] == "escalate"
    refusing = False
    await wd.stop()
    assert wd.watched["stubborn"].task.cancelled()


async def test_beats_of_a_replaced_instance_do_not_count():
    rec = Recorder()
    old_beats: list = []
    runs = 0

    async def worker(beat):
        nonlocal runs
        runs += 1
        beat()
        if runs == 1:
            old_beats.append(beat)
            await asyncio.Event().wait()
        await asyncio.Event().wait()  # the second instance hangs too

    wd = Watchdog(on_event=rec.event, max_restarts=5)
    wd.register("worker", 0.2, worker)
    await wd.start()
    try:
        await until(lambda: runs == 2)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:  # the stale beat function keeps beating
            old_beats[0]()
            await asyncio.sleep(0.01)
        assert runs == 3  # the second instance was still detected as hung
    finally:
        await wd.stop()


async def test_a_task_blocking_the_loop_is_reported_from_a_thread_then_restarted():
    rec = Recorder()
    stalls: list[tuple[str | None, float, bool]] = []
    blocked_at: list[float] = []
    runs = 0

    async def blocker(beat):
        nonlocal runs
        runs += 1
        while True:
            beat()
            if runs == 1 and not blocked_at:
                await asyncio.sleep(0.05)
                blocked_at.append(time.monotonic())
                time.sleep(0.6)  # a synchronous call that holds the whole loop
                beat()  # it even beats afterwards: the stall is still held against it
            await asyncio.sleep(0.02)

    def on_stall(name, seconds):
        stalls.append((name, time.monotonic() - blocked_at[0],
                       threading.current_thread() is not threading.main_thread()))

    wd = Watchdog(on_event=rec.event, stall_timeout=0.2, on_stall=on_stall)
    wd.register("blocker", 5.0, blocker)
    await wd.start()
    try:
        await until(lambda: runs == 2)
        name, after, in_thread = stalls[0]
        print(f"loop stall reported {after * 1e3:.0f} ms after it began (stall timeout 200 ms)")
        # the loop was last seen up to one monitor period (50 ms) before the block began
        assert name == "blocker" and in_thread and 0.15 <= after <= 0.2 + 0.05 + TOL, after
        kinds = [k for k, _ in rec.events]
        assert "WATCHDOG_STALL" in kinds and "WATCHDOG_RESET" in kinds
        reset = next(d for k, d in rec.events if k == "WATCHDOG_RESET")
        assert "blocked the event loop" in reset["reason"]
    finally:
        await wd.stop()


def bind_notify_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock


async def receive(sock: socket.socket, n: int) -> list[tuple[float, bytes]]:
    out = []
    for _ in range(n):
        data = await asyncio.to_thread(sock.recv, 4096)
        out.append((time.monotonic(), data))
    return out


@pytest.mark.parametrize("abstract", [False, True])
async def test_sd_notify_ready_and_watchdog_pings_while_healthy(tmp_path, abstract):
    if abstract:
        name = f"sep-test-{uuid.uuid4().hex}"
        sock = bind_notify_socket("\0" + name)
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "200000"}
    else:
        path = str(tmp_path / "notify.sock")
        sock = bind_notify_socket(path)
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
    hang = asyncio.Event()

    async def worker(beat):
        while not hang.is_set():
            beat()
            await asyncio.sleep(0.02)
        await asyncio.Event().wait()

    wd = Watchdog(env=env, max_restarts=0)  # any failure escalates: no more pings after
    wd.register("worker", 0.3, worker)
    try:
        await wd.start()
        got = await receive(sock, 4)
        assert [m for _, m in got] == [b"READY=1", b"WATCHDOG=1", b"WATCHDOG=1", b"WATCHDOG=1"]
        gaps = [b[0] - a[0] for a, b in zip(got[1:], got[2:], strict=False)]
        assert all(0.1 - 0.03 <= g <= 0.1 + TOL for g in gaps), gaps
        hang.set()  # now unhealthy: the pings stop, so systemd would restart us
        hung_at = time.monotonic()
        late: list[tuple[float, bytes]] = []

        def drain(until: float) -> None:  # in a thread: the loop must keep running the watchdog
            while (left := until - time.monotonic()) > 0:
                sock.settimeout(left)
                with contextlib.suppress(TimeoutError):
                    late.append((time.monotonic(), sock.recv(100)))

        await asyncio.to_thread(drain, hung_at + 1.2)
        pings = [t - hung_at for t, m in late if m == b"WATCHDOG=1"]
        # pings go on until the 0.3 s heartbeat timeout says the task hangs, then stop
        assert len(pings) <= 4 and all(t <= 0.3 + TOL for t in pings), pings
        assert wd.escalations == ["worker"]
    finally:
        await wd.stop()
        sock.close()


def test_sd_notify_edge_cases(tmp_path):
    assert sd_notify("READY=1", {}) is False
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": "relative/path"}) is False
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody")}) is False
    assert notify_address({"NOTIFY_SOCKET": "@abc"}) == "\0abc"
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "3000000",
                              "WATCHDOG_PID": str(os.getpid())}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_the_metrology_process_tells_systemd_it_is_ready_and_alive(tmp_path):
    """A real process: python -m sep.metrology.process runs its loop under the watchdog."""
    path = str(tmp_path / "notify.sock")
    sock = bind_notify_socket(path)
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen([sys.executable, "-m", "sep.metrology.process", "--data",
                             str(tmp_path), "--socket", str(tmp_path / "m.sock"), "--tick", "0.1"],
                            env=env, stdout=subprocess.DEVNULL)
    try:
        got = [sock.recv(100) for _ in range(3)]
        assert got == [b"READY=1", b"WATCHDOG=1", b"WATCHDOG=1"]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        assert sock.recv(100) == b"STOPPING=1"
        sock.close()
