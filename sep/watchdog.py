"""A software watchdog for long-running asyncio tasks, with systemd's on top.

Every long-running task is started by the watchdog and heartbeats::

    wd = Watchdog(on_event=log_event, on_escalate=lambda name: sys.exit(3))
    wd.register("poller", timeout=5.0, restart=poll_forever)   # calls wd.beat("poller")
    wd.register("reporter", 5.0, report_forever)                # gets a beat() argument

    @wd.watch("uplink", timeout=10.0)
    async def uplink() -> None:
        while True:
            wd.beat()             # no name: the calling watched task
            ...

    await wd.start()          # READY=1 to systemd

A task that goes ``timeout`` seconds without a beat (stuck awaiting something that never
comes, or busy without beating) or that ends (crash or return) is cancelled and started
again from its factory: a ``WATCHDOG_RESET`` event (``on_event(kind, details)``). Detection
is deadline-driven — the watchdog sleeps until the earliest deadline — so a hang is caught
``timeout`` + a few milliseconds after the last beat. More than ``max_restarts`` restarts of
one task within ``window`` seconds, or a task that ignores its cancellation for
``cancel_grace`` seconds, escalate: ``on_escalate(name)`` is called once and the task is left
down (the application exits non-zero so that its supervisor restarts the process).

A task that **blocks the event loop** (a synchronous call that never returns) cannot be
cancelled from inside the loop. With ``stall_timeout`` set, a monitor thread notices the
loop not turning for that long, names the task that holds it, and calls
``on_stall(task_name, seconds)`` *from that thread* (e.g. ``os._exit``); if the loop comes
back, the culprit is restarted like a hung task. In any case the systemd watchdog is the
last resort: when ``$NOTIFY_SOCKET`` is set, ``READY=1`` is sent at start and, if
``$WATCHDOG_USEC`` is set (and ``$WATCHDOG_PID``, if set, is this process), ``WATCHDOG=1``
every ``WATCHDOG_USEC / 2`` **only while every task is healthy** — a frozen loop or a failing
task stops the pings and systemd restarts the service. :func:`sd_notify` is a plain Unix
datagram (abstract ``@`` addresses supported), no dependency.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import inspect
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

LOGGER = logging.getLogger(__name__)

Beat = Callable[[], None]
Factory = Callable[[Beat], Awaitable[None]]
RestartFactory = Callable[[], Awaitable[None]]
EventSink = Callable[[str, dict[str, Any]], None]
F = TypeVar("F", bound=Callable[..., Awaitable[None]])


def notify_address(env: Mapping[str, str] | None = None) -> str | None:
    """The socket address of ``$NOTIFY_SOCKET`` ('@' → Linux abstract namespace)."""
    path = (os.environ if env is None else env).get("NOTIFY_SOCKET")
    if not path or not (path.startswith("/") or path.startswith("@")):
        return None
    return "\0" + path[1:] if path.startswith("@") else path


def sd_notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one datagram to systemd's notify socket; False when unset or it fails."""
    address = notify_address(env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.setblocking(False)
            s.sendto(message.encode(), address)
        return True
    except OSError as exc:
        LOGGER.debug("sd_notify(%r) failed: %s", message, exc)
        return False


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), None if not asked."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # the pings are meant for another process
    return int(usec) / 2e6


@dataclasses.dataclass
class Watched:
    name: str
    timeout: float
    factory: Factory | None = None  # called with a beat function
    restart: RestartFactory | None = None  # called without arguments
    task: asyncio.Task[None] | None = None
    last_beat: float = 0.0
    started: float = 0.0
    state: str = "registered"  # running / restarting / escalated / stopped
    restarts: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    total_restarts: int = 0
    generation: int = 0
    forced: str | None = None  # a reason to reset found outside the runner (loop stall)

    def deadline(self) -> float:
        return self.last_beat + self.timeout


class Watchdog:
    def __init__(self, *, on_event: EventSink | None = None,
                 on_escalate: Callable[[str], None] | None = None, max_restarts: int = 3,
                 window: float = 600.0, check_interval: float = 0.25,
                 cancel_grace: float = 1.0, restart_delay: float = 0.0,
                 stall_timeout: float | None = None,
                 on_stall: Callable[[str | None, float], None] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.on_event = on_event or (lambda kind, details: None)
        self.on_escalate = on_escalate or (lambda name: None)
        self.max_restarts = max_restarts
        self.window = window
        self.check_interval = check_interval  # the longest the runner sleeps
        self.cancel_grace = cancel_grace
        self.restart_delay = restart_delay
        self.stall_timeout = stall_timeout
        self.on_stall = on_stall
        self._env = env
        self.notify_every = watchdog_interval(env)
        self.watched: dict[str, Watched] = {}
        self.resets = 0
        self.escalations: list[str] = []
        self.detections: list[tuple[str, float]] = []  # (task, seconds since its last beat)
        self.notifications = 0
        self._runner: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._by_task: weakref.WeakKeyDictionary[asyncio.Task[Any], tuple[str, int]] = (
            weakref.WeakKeyDictionary())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_seen = 0.0
        self._stall_thread: threading.Thread | None = None
        self._stall_stop = threading.Event()
        self._stall_handle: asyncio.TimerHandle | None = None

    # -- registration -----------------------------------------------------------------------
    def register(self, name: str, timeout: float, factory: Factory | None = None, *,
                 restart: RestartFactory | None = None) -> None:
        """Watch a task: ``factory(beat)`` or ``restart()`` makes its coroutine (again)."""
        if (factory is None) == (restart is None):
            raise TypeError("give exactly one of factory (takes beat) or restart (no args)")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if name in self.watched and self.watched[name].state not in ("stopped",):
            raise ValueError(f"task {name!r} is already watched")
        w = Watched(name, timeout, factory=factory, restart=restart)
        self.watched[name] = w
        if self._runner is not None:
            self._start(w)
            self._poke()

    def watch(self, name: str, timeout: float) -> Callable[[F], F]:
        """Decorator form of :meth:`register` (the function may take a beat argument)."""
        def deco(fn: F) -> F:
            takes_beat = bool(inspect.signature(fn).parameters)
            if takes_beat:
                self.register(name, timeout, fn)
            else:
                self.register(name, timeout, restart=fn)
            return fn
        return deco

    async def unregister(self, name: str) -> None:
        """Stop watching (and cancel) a task that is meant to end."""
        w = self.watched.pop(name, None)
        if w is not None:
            w.state = "stopped"
            await self._cancel(w)

    def beat(self, name: str | None = None) -> None:
        """Heartbeat of ``name``, or of the calling watched task when no name is given."""
        try:
            current = asyncio.current_task()
        except RuntimeError:
            current = None
        owner = self._by_task.get(current) if current is not None else None
        if name is None:
            if owner is None:
                raise RuntimeError("beat() without a name outside a watched task")
            name = owner[0]
        w = self.watched[name]
        if owner is not None and owner[0] == name and owner[1] != w.generation:
            return  # a cancelled, replaced instance still running: its beats do not count
        w.last_beat = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for w in self.watched.values():
            self._start(w)
        self._runner = asyncio.create_task(self._run(), name="watchdog")
        if self.stall_timeout:
            self._start_stall_monitor()
        sd_notify("READY=1", self._env)

    async def stop(self) -> None:
        sd_notify("STOPPING=1", self._env)
        self._stall_stop.set()
        if self._stall_handle is not None:
            self._stall_handle.cancel()
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        for w in self.watched.values():
            w.state = "stopped"
        await asyncio.gather(*(self._cancel(w) for w in self.watched.values()))
        if self._stall_thread is not None:
            self._stall_thread.join(timeout=2)
            self._stall_thread = None

    @property
    def healthy(self) -> bool:
        now = time.monotonic()
        return all(w.state == "running" and w.task is not None and not w.task.done()
                   and now - w.last_beat <= w.timeout and w.forced is None
                   for w in self.watched.values())

    def _start(self, w: Watched) -> None:
        w.generation += 1
        w.last_beat = w.started = time.monotonic()
        w.state = "running"
        w.forced = None
        gen = w.generation
        if w.factory is not None:
            coro = w.factory(lambda: self._beat_gen(w.name, gen))
        else:
            assert w.restart is not None
            coro = w.restart()
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        task.set_name(f"watched-{w.name}")
        self._by_task[task] = (w.name, gen)
        task.add_done_callback(lambda _t: self._poke())
        w.task = task

    def _beat_gen(self, name: str, gen: int) -> None:
        w = self.watched.get(name)
        if w is not None and w.generation == gen:
            w.last_beat = time.monotonic()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _cancel(self, w: Watched) -> bool:
        """Cancel the task; True if it ended within the grace period."""
        task = w.task
        if task is None or task.done():
            return True
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self.cancel_grace)
        if task in done and not task.cancelled():
            with contextlib.suppress(BaseException):
                task.result()  # retrieve it, so asyncio does not log "never retrieved"
        return task in done

    # -- the runner -----------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None
        next_notify = time.monotonic()
        while True:
            now = time.monotonic()
            for w in list(self.watched.values()):
                if w.state != "running" or w.task is None:
                    continue
                if w.forced is not None:
                    await self._reset(w, w.forced)
                elif w.task.done():
                    await self._reset(w, self._ended(w.task))
                elif now - w.last_beat > w.timeout:
                    await self._reset(w, f"no heartbeat for {now - w.last_beat:.3f} s "
                                         f"(timeout {w.timeout:g} s)")
            now = time.monotonic()
            if self.notify_every is not None and now >= next_notify and self.healthy:
                if sd_notify("WATCHDOG=1", self._env):
                    self.notifications += 1
                next_notify = now + self.notify_every
            wake_at = [now + self.check_interval]
            wake_at += [w.deadline() for w in self.watched.values() if w.state == "running"]
            if self.notify_every is not None:
                wake_at.append(next_notify)
            delay = max(0.0, min(wake_at) - now) + 0.001
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    @staticmethod
    def _ended(task: asyncio.Task[None]) -> str:
        if task.cancelled():
            return "task was cancelled"
        exc = task.exception()
        return f"task crashed: {type(exc).__name__}: {exc}" if exc else "task returned"

    async def _reset(self, w: Watched, why: str) -> None:
        now = time.monotonic()
        silent = now - w.last_beat
        w.state = "restarting"
        LOGGER.error("watchdog: task %s: %s: restarting it", w.name, why)
        stopped = await self._cancel(w)
        w.restarts.append(now)
        while w.restarts and now - w.restarts[0] > self.window:
            w.restarts.popleft()
        w.total_restarts += 1
        self.resets += 1
        self.detections.append((w.name, silent))
        escalate = len(w.restarts) > self.max_restarts or not stopped
        details = {"task": w.name, "reason": why if stopped else f"{why}; ignored cancellation",
                   "silent_s": round(silent, 3), "restarts_in_window": len(w.restarts),
                   "action": "escalate" if escalate else "restart"}
        self._emit("WATCHDOG_RESET", details)
        if escalate:
            w.state = "escalated"
            self.escalations.append(w.name)
            LOGGER.critical("watchdog: %s keeps failing: escalating", w.name)
            try:
                self.on_escalate(w.name)
            except Exception:  # noqa: BLE001
                LOGGER.exception("watchdog escalation callback failed")
            return
        if self.restart_delay:
            await asyncio.sleep(self.restart_delay)
        if w.state == "restarting":  # not stopped or unregistered meanwhile
            self._start(w)

    def _emit(self, kind: str, details: dict[str, Any]) -> None:
        try:
            self.on_event(kind, details)
        except Exception:  # noqa: BLE001 - a failing sink must not stop the watchdog
            LOGGER.exception("watchdog event sink failed")

    # -- loop stall monitor -------------------------------------------------------------------
    def _start_stall_monitor(self) -> None:
        assert self._loop is not None and self.stall_timeout
        period = self.stall_timeout / 4
        self._loop_seen = time.monotonic()

        def tick() -> None:
            self._loop_seen = time.monotonic()
            assert self._loop is not None
            self._stall_handle = self._loop.call_later(period, tick)

        tick()
        self._stall_stop.clear()
        self._stall_thread = threading.Thread(target=self._stall_watch, args=(period,),
                                              name="watchdog-stall", daemon=True)
        self._stall_thread.start()

    def _stall_watch(self, period: float) -> None:
        assert self._loop is not None and self.stall_timeout
        reported = 0.0
        while not self._stall_stop.wait(period):
            seen = self._loop_seen
            blocked = time.monotonic() - seen
            if blocked <= self.stall_timeout or reported == seen:
                continue
            reported = seen
            culprit = asyncio.current_task(self._loop)  # the task holding the loop, if any
            owner = self._by_task.get(culprit) if culprit is not None else None
            name = owner[0] if owner else (culprit.get_name() if culprit else None)
            LOGGER.critical("watchdog: event loop blocked for %.2f s by %s", blocked, name)
            if owner is not None:
                w = self.watched.get(owner[0])
                if w is not None and w.generation == owner[1]:
                    w.forced = f"blocked the event loop for more than {self.stall_timeout:g} s"
            details = {"task": name, "blocked_s": round(blocked, 3), "reason": "loop stall"}
            with contextlib.suppress(RuntimeError):  # the loop may be closed
                self._loop.call_soon_threadsafe(self._emit, "WATCHDOG_STALL", details)
            if self.on_stall is not None:
                try:
                    self.on_stall(name, blocked)
                except Exception:  # noqa: BLE001
                    LOGGER.exception("watchdog stall callback failed")
