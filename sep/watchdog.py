"""A software watchdog for the meter's long-running tasks, with systemd's on top.

Each task is started by the watchdog from a factory and must call its ``beat()`` at least
once per ``timeout``. A task that misses its deadline — stuck awaiting something that will
never come, or dead — is cancelled and started again (a WATCHDOG_RESET event). Too many
restarts of one task within a window escalate: ``on_escalate`` makes the process exit
non-zero and the supervisor restarts it (the process-level reset).

A task that blocks the whole event loop cannot be caught from inside the loop; that is what
the systemd watchdog is for: while every task is healthy the watchdog sends ``WATCHDOG=1``
to ``$NOTIFY_SOCKET`` at half of ``$WATCHDOG_USEC`` (and ``READY=1`` at start), so a
frozen loop stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

LOGGER = logging.getLogger(__name__)

Beat = Callable[[], None]
Factory = Callable[[Beat], Awaitable[None]]


def sd_notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send a datagram to systemd's notify socket (supports abstract '@' sockets)."""
    path = (env or os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(path)
            s.sendall(message.encode())
        return True
    except OSError as exc:
        LOGGER.debug("sd_notify failed: %s", exc)
        return False


@dataclasses.dataclass
class Watched:
    name: str
    timeout: float
    factory: Factory
    task: asyncio.Task[None] | None = None
    last_beat: float = 0.0
    restarts: list[float] = dataclasses.field(default_factory=list)


class Watchdog:
    def __init__(self, *, on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 on_escalate: Callable[[str], None] | None = None, max_restarts: int = 3,
                 window: float = 600.0, check_interval: float = 0.25) -> None:
        self.on_event = on_event or (lambda kind, details: None)
        self.on_escalate = on_escalate or (lambda name: None)
        self.max_restarts = max_restarts
        self.window = window
        self.check_interval = check_interval
        self.watched: dict[str, Watched] = {}
        self._runner: asyncio.Task[None] | None = None
        self.resets = 0
        interval = os.environ.get("WATCHDOG_USEC")
        self.notify_every = int(interval) / 2e6 if interval and interval.isdigit() else None

    def register(self, name: str, timeout: float, factory: Factory) -> None:
        w = Watched(name, timeout, factory)
        self.watched[name] = w
        if self._runner is not None:
            self._start(w)

    def beat(self, name: str) -> None:
        self.watched[name].last_beat = time.monotonic()

    def _start(self, w: Watched) -> None:
        w.last_beat = time.monotonic()
        w.task = asyncio.get_running_loop().create_task(w.factory(lambda: self.beat(w.name)),
                                                        name=f"watched-{w.name}")

    async def start(self) -> None:
        for w in self.watched.values():
            self._start(w)
        self._runner = asyncio.create_task(self._run(), name="watchdog")
        sd_notify("READY=1")

    async def stop(self) -> None:
        tasks = [w.task for w in self.watched.values() if w.task] + (
            [self._runner] if self._runner else [])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._runner = None

    async def _run(self) -> None:
        last_notify = 0.0
        while True:
            await asyncio.sleep(self.check_interval)
            now = time.monotonic()
            healthy = True
            for w in list(self.watched.values()):
                dead = w.task is None or w.task.done()
                if dead or now - w.last_beat > w.timeout:
                    healthy = False
                    await self._reset(w, "task ended" if dead else
                                      f"no heartbeat for {now - w.last_beat:.1f} s")
            if healthy and self.notify_every and now - last_notify >= self.notify_every:
                sd_notify("WATCHDOG=1")
                last_notify = now

    async def _reset(self, w: Watched, why: str) -> None:
        now = time.monotonic()
        LOGGER.error("watchdog: task %s %s: restarting it", w.name, why)
        if w.task is not None and not w.task.done():
            w.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(w.task, 2)
        w.restarts = [t for t in w.restarts if now - t < self.window] + [now]
        self.resets += 1
        self.on_event("WATCHDOG_RESET", {"task": w.name, "reason": why,
                                         "restarts_in_window": len(w.restarts)})
        if len(w.restarts) > self.max_restarts:
            LOGGER.critical("watchdog: %s keeps failing: escalating", w.name)
            self.on_escalate(w.name)
            return
        self._start(w)
