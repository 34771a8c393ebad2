"""The metrology side, in its own process: registers, calibration, self-check.

    python -m sep.metrology.process --data DIR --socket PATH [--seed N] [--speed N]

It owns the energy registers and the calibration (two checksummed, MACed copies in its
own store, ``DIR/metrology/`` — a different database and key from the application's), and
answers the read-only protocol of :mod:`sep.metrology.protocol` on a Unix socket. Nothing
in that protocol writes: the application side cannot change metrology, and the firmware
path refuses metrology images, so no update can touch it.

Registers are saved every second and on exit; after a restart they continue from the
saved totals at the current time (the household drew nothing the meter did not measure).

The self-check runs every ``--check-interval`` seconds: both calibration copies are
verified (one bad copy is repaired from the other; both bad → CALIBRATION_FAULT and no
readings at all), and the measurement source is checked for a stuck value; a stuck source
is re-initialised (the chip reset) and the fault is flagged until it measures again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

from sep.clock import ScaledClock
from sep.metrology.api import MetrologyStatus, Registers
from sep.metrology.load import HouseholdLoad
from sep.metrology.protocol import MAX_LINE, handle_request
from sep.store import CorruptRecord, Store

LOGGER = logging.getLogger("sep.metrology")
DEFAULT_CALIBRATION = {"gain_ppm": 0, "offset_w": 0}


class MeasurementSource:
    """The measurement chip: a calibrated view of the household load. ``stuck`` models a
    chip that keeps returning its last sample (set by a fault-injection file for tests)."""

    def __init__(self, load: HouseholdLoad, stuck_flag: Path) -> None:
        self.load = load
        self.stuck_flag = stuck_flag
        self._frozen: int | None = None
        self.resets = 0

    def sample_w(self, t: float) -> int:
        if self.stuck_flag.exists():
            if self._frozen is None:
                self._frozen = self.load.power_w(t)
            return self._frozen
        self._frozen = None
        return self.load.power_w(t)

    def reinitialise(self) -> None:
        self.resets += 1
        self._frozen = None
        with contextlib.suppress(FileNotFoundError):
            self.stuck_flag.unlink()  # the chip reset clears the fault


class Metrology:
    def __init__(self, data: Path, *, seed: int, clock: ScaledClock) -> None:
        self.dir = data / "metrology"
        self.store = Store.open(self.dir)
        self.clock = clock
        self.load = HouseholdLoad(seed)
        self.source = MeasurementSource(self.load, self.dir / "inject-stuck")
        saved = self.store.get_record("registers", "main")
        self.registers = Registers(self.load, clock.now(),
                                   delivered_j=int(saved["delivered_j"]) if saved else 0,
                                   received_j=int(saved["received_j"]) if saved else 0)
        self.since = self.registers.t  # registers integrate from here in this run
        self.status = MetrologyStatus.OK
        self.events: list[dict[str, Any]] = []
        self.calibration: dict[str, Any] | None = None
        self._same_since: float | None = None
        self._last_sample: int | None = None
        if self.store.get_record("calibration", "main") is None:
            self.store.set_calibration(DEFAULT_CALIBRATION)
        self.check_calibration()

    def event(self, kind: str, **details: Any) -> None:
        entry = {"time": time.time(), "kind": kind, **details}
        self.events.append(entry)
        del self.events[:-100]
        self.store.append_event(kind, **details)
        LOGGER.warning("metrology event %s %s", kind, details)

    def check_calibration(self) -> None:
        before = {e.seq for e in self.store.events() if e.kind == "INTEGRITY_RECOVERED"}
        try:
            self.calibration = self.store.get_calibration()
            self.status &= ~MetrologyStatus.CALIBRATION_FAULT
            after = {e.seq for e in self.store.events() if e.kind == "INTEGRITY_RECOVERED"}
            if after - before:
                self.event("METROLOGY_FAULT", detail="calibration copy repaired")
        except (CorruptRecord, KeyError):  # KeyError: both copies already quarantined
            if not self.status & MetrologyStatus.CALIBRATION_FAULT:
                self.event("METROLOGY_FAULT", detail="calibration corrupt in both copies")
            self.calibration = None
            self.status |= MetrologyStatus.CALIBRATION_FAULT

    def check_source(self, now: float) -> None:
        sample = self.source.sample_w(now)
        model_moves = self.load.power_w(now) != self._last_sample
        if sample == self._last_sample and model_moves:
            self._same_since = self._same_since or now
        else:
            self._same_since = None
            if self.status & MetrologyStatus.MEASUREMENT_FAULT:
                self.status &= ~MetrologyStatus.MEASUREMENT_FAULT
                self.event("METROLOGY_FAULT", detail="measurement recovered")
        self._last_sample = sample
        if self._same_since is not None and not self.status & MetrologyStatus.MEASUREMENT_FAULT:
            self.status |= MetrologyStatus.MEASUREMENT_FAULT
            self.event("METROLOGY_FAULT", detail="measurement source stuck: re-initialising")
            self.source.reinitialise()

    def reading(self) -> dict[str, Any]:
        now = self.clock.now()
        if self.status & MetrologyStatus.CALIBRATION_FAULT:
            return {"status": int(self.status), "timestamp": now}
        self.registers.advance(now)
        gain = 1 + int(self.calibration["gain_ppm"]) / 1e6 if self.calibration else 1
        return {
            "status": int(self.status), "timestamp": self.registers.t,
            "delivered_wh": int(self.registers.delivered_j * gain) // 3600,
            "received_wh": int(self.registers.received_j * gain) // 3600,
            "demand_w": int(self.source.sample_w(now) * gain),
        }

    def save(self) -> None:
        self.store.put_record("registers", "main", {"delivered_j": self.registers.delivered_j,
                                                    "received_j": self.registers.received_j})


async def serve(args: argparse.Namespace) -> None:
    clock = ScaledClock(start=args.start, speed=args.speed)
    m = Metrology(args.data, seed=args.seed, clock=clock)
    sock_path = Path(args.socket)
    with contextlib.suppress(FileNotFoundError):
        sock_path.unlink()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.LimitOverrunError:
                    writer.write(b'{"ok": false, "error": "request too long"}\n')
                    break
                except asyncio.IncompleteReadError:
                    break
                try:
                    answer = handle_request(line, m)
                except Exception as exc:  # noqa: BLE001 - metrology never dies on a request
                    LOGGER.exception("request failed")
                    answer = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
                writer.write((json.dumps(answer) + "\n").encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(client, path=str(sock_path), limit=MAX_LINE)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"metrology serving on {sock_path}", flush=True)
    last_check = 0.0
    async with server:
        while not stop.is_set():
            now = time.monotonic()
            m.reading()
            m.save()
            if now - last_check >= args.check_interval:
                last_check = now
                m.check_calibration()
                m.check_source(clock.now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    m.save()
    m.store.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sep.metrology.process",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--start", type=float, default=None)
    ap.add_argument("--check-interval", type=float, default=5.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
