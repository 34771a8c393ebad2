"""The metrology side, in its own process, behind the read-only socket protocol.

    python -m sep.metrology.process --data DIR --socket PATH [--seed N] [--speed N]
        [--start EPOCH] [--check-interval S] [--tick S] [--inject MODE[:AFTER[:RESETS]]]
        [--factory-gain-micro G] [--factory-offset-mw O]

It keeps everything in ``DIR/metrology/`` — a store of its own (a different database and
key from the application's; see :mod:`sep.metrology.core` for what is kept and why nothing is
lost across restarts) — and answers :mod:`sep.metrology.protocol` on the Unix socket
``PATH``. When listening it prints one line, ``metrology serving on PATH``, to stdout. One
instance per data directory (a lock); SIGTERM/SIGINT persist and exit 0.

Time: simulated time runs ``--speed`` times faster than wall time from ``--start`` (default:
now), but never starts before the stored registers' timestamp. The periodic work (integrate
and persist every ``--tick`` wall seconds, the self-check every ``--check-interval``) runs
under :class:`sep.watchdog.Watchdog`: a hang there makes the process exit 3 so that its
supervisor restarts it.

Calibration is written only at commissioning (first start on an empty directory), from
``--factory-gain-micro``/``--factory-offset-mw``; later values of those options are ignored.
``--inject`` wraps the measurement source in a fault (tests, demos).

:func:`start_metrology_process` spawns it from asyncio and returns the process and a
connected :class:`~sep.metrology.client.MetrologyClient`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sep.clock import ScaledClock
from sep.metrology.calibration import UNITY, Calibration
from sep.metrology.client import MetrologyClient
from sep.metrology.core import MetrologyCore, MetrologyLocked
from sep.metrology.load import HouseholdLoad
from sep.metrology.protocol import MAX_LINE, encode, error, handle_line
from sep.metrology.source import HouseholdSource, MeasurementSource, parse_inject
from sep.watchdog import Watchdog

LOGGER = logging.getLogger("sep.metrology")
MAX_CONNECTIONS = 16
IDLE_TIMEOUT = 60.0  # a connection that sends no complete request for this long is dropped
WRITE_TIMEOUT = 5.0
EXIT_LOCKED = 2
EXIT_WATCHDOG = 3


class MetrologyServer:
    """The asyncio socket server around a :class:`MetrologyCore`."""

    def __init__(self, core: MetrologyCore, socket_path: str | Path, *,
                 max_connections: int = MAX_CONNECTIONS,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.core = core
        self.path = Path(socket_path)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connections = 0
        self.requests = 0
        self._server: asyncio.AbstractServer | None = None
        self._handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()  # a stale socket of a killed instance (we hold the lock)
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path),
                                                       limit=MAX_LINE)
        os.chmod(self.path, 0o660)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._handlers.values():  # hang up: each handler ends by itself
                writer.close()
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(encode(reply))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        try:
            if self.connections > self.max_connections:
                await self._send(writer, error("busy", "too many connections"))
                return
            while True:
                try:
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), self.idle_timeout)
                except asyncio.LimitOverrunError:
                    await self._send(writer, error("too_long",
                                                   f"request longer than {MAX_LINE} bytes"))
                    return  # cannot find the next request boundary safely: hang up
                except (asyncio.IncompleteReadError, TimeoutError):
                    return  # half a request then EOF, or idle: just hang up
                self.requests += 1
                await self._send(writer, handle_line(line, self.core))
        except (ConnectionError, OSError, TimeoutError):
            pass
        finally:
            self.connections -= 1
            self._handlers.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)


async def run(args: argparse.Namespace) -> int:
    """The process body; returns the exit status."""
    store_dir = Path(args.data) / "metrology"
    requested = time.time() if args.start is None else args.start
    load = HouseholdLoad(args.seed, args.solar_peak_w)
    source: MeasurementSource = HouseholdSource(load)
    if args.inject:
        source = parse_inject(args.inject, source)
    try:
        core = MetrologyCore(
            store_dir, clock=ScaledClock(start=requested, speed=args.speed), load=load,
            source=source,
            factory_calibration=Calibration(args.factory_gain_micro, args.factory_offset_mw),
            stuck_changes=args.stuck_changes)
    except MetrologyLocked as exc:
        print(f"metrology: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    if core.registers is not None and core.registers.t > requested:
        LOGGER.info("simulated time resumes at the stored registers' time %d", core.registers.t)
    # time never runs backwards across a restart: start no earlier than the stored registers
    core.clock = ScaledClock(start=max(requested, core.registers.t if core.registers else 0),
                             speed=args.speed)
    server = MetrologyServer(core, args.socket)
    stop = asyncio.Event()
    exit_code = 0
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def escalate(name: str) -> None:
        nonlocal exit_code
        exit_code = EXIT_WATCHDOG
        stop.set()

    async def periodic(beat: Any) -> None:
        last_check = time.monotonic()
        while True:
            beat()
            while not core.tick():  # a long catch-up, one simulated day per step
                beat()
                await asyncio.sleep(0)
            if time.monotonic() - last_check >= args.check_interval:
                last_check = time.monotonic()
                core.self_check()
            await asyncio.sleep(args.tick)

    def watchdog_event(kind: str, details: dict[str, Any]) -> None:
        core.record(kind, kind, f"watchdog: task {details.get('task')}: "
                                f"{details.get('reason')}", **details)

    wd = Watchdog(on_event=watchdog_event,
                  on_escalate=escalate, max_restarts=3, window=600.0)
    wd.register("metrology-periodic", max(10.0, 5 * args.tick), periodic)
    await server.start()
    try:
        await wd.start()
        print(f"metrology serving on {server.path}", flush=True)
        await stop.wait()
    finally:
        await wd.stop()
        await server.stop()
        core.close()
    return exit_code


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m sep.metrology.process",
                                 description="The isolated metrology process (read-only socket).")
    ap.add_argument("--data", type=Path, required=True, help="data directory (uses DIR/metrology)")
    ap.add_argument("--socket", required=True, help="Unix socket path to serve on")
    ap.add_argument("--seed", type=int, default=1, help="household load seed")
    ap.add_argument("--solar-peak-w", type=int, default=0, help="rooftop solar peak (export)")
    ap.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    ap.add_argument("--start", type=float, default=None, help="simulated start, epoch seconds")
    ap.add_argument("--tick", type=float, default=1.0, help="integrate+persist period, s")
    ap.add_argument("--check-interval", type=float, default=5.0, help="self-check period, s")
    ap.add_argument("--stuck-changes", type=int, default=3,
                    help="model changes under one constant sample that mean 'stuck'")
    ap.add_argument("--inject", default=None, help="fault injection: MODE[:AFTER[:RESETS]]")
    ap.add_argument("--factory-gain-micro", type=int, default=UNITY,
                    help="commissioning only: gain in millionths (1000000 = unity)")
    ap.add_argument("--factory-offset-mw", type=int, default=0,
                    help="commissioning only: offset in milliwatts")
    ap.add_argument("--log-level", default="WARNING")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.speed <= 0 or args.tick <= 0 or args.check_interval <= 0:
        print("metrology: --speed, --tick and --check-interval must be positive",
              file=sys.stderr)
        return 2
    if args.inject:
        try:
            parse_inject(args.inject, HouseholdSource(HouseholdLoad()))
        except ValueError as exc:
            print(f"metrology: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s metrology %(levelname)s %(message)s")
    return asyncio.run(run(args))


async def start_metrology_process(
        data: str | Path, socket_path: str | Path, *, seed: int = 1, speed: float = 1.0,
        start: float | None = None, check_interval: float = 5.0, tick: float = 1.0,
        inject: str | None = None, extra_args: Sequence[str] = (),
        ready_timeout: float = 10.0, client_timeout: float = 2.0,
        **client_options: Any) -> tuple[asyncio.subprocess.Process, MetrologyClient]:
    """Spawn ``python -m sep.metrology.process`` and wait until it serves.

    Returns the process and a :class:`MetrologyClient` on its socket. Raises RuntimeError
    (after reaping the process) when it exits or does not become ready in time.
    """
    cmd = [sys.executable, "-m", "sep.metrology.process", "--data", str(data),
           "--socket", str(socket_path), "--seed", str(seed), "--speed", repr(float(speed)),
           "--check-interval", repr(float(check_interval)), "--tick", repr(float(tick))]
    if start is not None:
        cmd += ["--start", repr(float(start))]
    if inject:
        cmd += ["--inject", inject]
    cmd += list(extra_args)
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), ready_timeout)
    except TimeoutError:
        line = b""
    if not line.startswith(b"metrology serving on "):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        code = await proc.wait()
        raise RuntimeError(f"metrology process did not start (exit {code})")
    return proc, MetrologyClient(str(socket_path), timeout=client_timeout, **client_options)


async def stop_metrology_process(proc: asyncio.subprocess.Process,
                                 client: MetrologyClient | None = None,
                                 timeout: float = 5.0) -> int:
    """Hang up, SIGTERM (it persists and exits 0), SIGKILL if it does not go in time."""
    if client is not None:
        await client.aclose()
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    return await proc.wait()


if __name__ == "__main__":
    sys.exit(main())
