"""The metrology core: registers, calibration, self-check and persistence (no sockets).

:class:`MetrologyCore` owns everything the metrology side keeps, in its own integrity-checked
store (``sep.store``: SQLite in WAL with synchronous FULL, CRC-32 + HMAC per row, hash-chained
event log) in a directory of its own, with its own key:

- **registers** — imported and exported energy in integer micro-joules and the (simulated)
  time they were taken at, in two records (``a`` then ``b``). The raw samples of the
  :class:`~sep.metrology.source.MeasurementSource` are integrated slot by slot after
  calibration; with unity calibration the totals equal
  ``HouseholdLoad.energy_j`` exactly.
- **calibration** — :mod:`sep.metrology.calibration`, two checksummed copies.

Persistence (why it cannot lose or double-count energy): the registers are written — both
copies, each a synchronous SQLite commit — *before* any reading that shows them is answered,
and once per tick. After a restart (SIGKILL included) the integrator resumes at the stored
timestamp and integrates up to the new "now" from the deterministic household model: the
household kept drawing while metrology was down, and the model says exactly what it drew. So
for a healthy source, at every timestamp ``T`` ever reported::

    delivered_j(T) = origin_delivered_j + HouseholdLoad.energy_j(origin_t, T)[0]

whatever restarts happened in between. If the clock is behind the stored timestamp (a
restart asked for an earlier start), the registers wait for it: never counted twice. No
reading is ever shown that is not already durable, so a reading after a restart is never
below one shown before it. A long catch-up goes one simulated day (~40 ms) per step so the
event loop keeps serving; readings meanwhile show the registers at their own, earlier,
timestamp — true, just not yet "now".

Self-check (:meth:`MetrologyCore.self_check`, run periodically by the process and on demand
by the ``selftest`` request): calibration in RAM against its checksum, both stored copies
(one bad → repaired from the other; both bad → ``CALIBRATION_FAULT``: no energy values and
the registers stop), both register copies (rewritten from RAM when damaged), and the source.
A stuck source (:class:`~sep.metrology.selfcheck.StuckDetector`, fed by the integrator) or a
failing one (it raises) sets ``MEASUREMENT_FAULT``: the registers hold at the last good slot,
the source is re-initialised at once and then at every check until a
:func:`~sep.metrology.selfcheck.probe` finds it measuring again; integration then resumes
from where it held (the simulated chip can be re-read for the held slots, like a chip's own
energy accumulator, so nothing is lost). Energy integrated while a source was stuck but not
yet detected is kept as measured; the event gives that window for the head end.

Events go to the store's event log (the ``events`` request returns them), to the optional
``on_event(kind, details)`` sink, and to the log. ``kind`` is one of the store's event kinds
(POWER_UP, METROLOGY_FAULT, INTEGRITY_RECOVERED); ``details["code"]`` says what exactly.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sep.clock import Clock
from sep.metrology.api import ENERGY_WITHHELD, MetrologyStatus
from sep.metrology.calibration import Calibration, CalibrationCopies, verify_in_memory
from sep.metrology.load import SLOT, HouseholdLoad
from sep.metrology.selfcheck import DEFAULT_STUCK_CHANGES, StuckDetector, probe
from sep.metrology.source import HouseholdSource, MeasurementSource
from sep.store import CorruptRecord, Store

LOGGER = logging.getLogger("sep.metrology")

REG_KIND = "metrology-registers"
MARK_KIND = "metrology-commissioned"
COPIES = ("a", "b")
UJ_PER_J = 1_000_000
UJ_PER_WH = 3600 * UJ_PER_J
MAX_SLOTS = 8640  # one simulated day per step: ~40 ms of integration
EventSink = Callable[[str, dict[str, Any]], None]


class MetrologyLocked(RuntimeError):
    """Another metrology instance owns this data directory."""


@dataclasses.dataclass(frozen=True, slots=True)
class RegisterState:
    t: int  # simulated epoch second the totals were taken at
    delivered_uj: int
    received_uj: int
    origin_t: int  # commissioning: where the totals started
    origin_delivered_uj: int = 0
    origin_received_uj: int = 0
    seq: int = 0  # write counter: the newer of two intact copies wins

    FIELDS = ("t", "delivered_uj", "received_uj", "origin_t", "origin_delivered_uj",
              "origin_received_uj", "seq")

    def to_record(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in self.FIELDS}

    @classmethod
    def from_record(cls, doc: Any) -> RegisterState:
        if not isinstance(doc, dict) or set(doc) != set(cls.FIELDS):
            raise ValueError("not a register record")
        if any(type(doc[f]) is not int or doc[f] < 0 for f in cls.FIELDS):
            raise ValueError("register values must be non-negative integers")
        state = cls(**doc)
        if (state.t < state.origin_t or state.delivered_uj < state.origin_delivered_uj
                or state.received_uj < state.origin_received_uj):
            raise ValueError("registers below their origin")
        return state


def _to_w(uw: int) -> int:
    """Micro-watts to watts, truncating toward zero."""
    return uw // 1_000_000 if uw >= 0 else -((-uw) // 1_000_000)


class MetrologyCore:
    def __init__(self, store_dir: Path, *, clock: Clock, load: HouseholdLoad,
                 source: MeasurementSource | None = None,
                 factory_calibration: Calibration | None = None,
                 initial_delivered_wh: int = 0,
                 on_event: EventSink | None = None,
                 stuck_changes: int = DEFAULT_STUCK_CHANGES) -> None:
        self.dir = Path(store_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise MetrologyLocked(f"another metrology instance uses {self.dir}") from None
        fresh = not (self.dir / "meter.db").exists()
        try:
            self.store = Store.open(self.dir)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.clock = clock
        self.load = load
        self.source: MeasurementSource = source or HouseholdSource(load)
        self.on_event = on_event
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        self._seq = 0
        self.status = MetrologyStatus.OK
        self.detector = StuckDetector(load.power_w, stuck_changes)
        self.calibration_copies = CalibrationCopies(self.store)
        self.calibration: Calibration | None = None
        self._cal_crc = 0
        self.calibration_state = "unknown"
        self.measurement_state = "ok"
        self.reinit_attempts = 0
        self.checks = 0
        self.last_check: float | None = None
        self.started = time.time()
        self.held_since: int | None = None
        self._persisted: RegisterState | None = None
        self.registers: RegisterState | None = None

        if fresh or not self._any_state():
            self._commission(factory_calibration or Calibration(), initial_delivered_wh)
        self._load_registers()
        self._check_calibration()
        self.run_since = self.registers.t if self.registers else None
        self._event("POWER_UP", "STARTED", "metrology started",
                    registers_t=self.run_since, source=self.source.name,
                    status=int(self.status))

    # -- commissioning and loading ----------------------------------------------------------
    def _any_state(self) -> bool:
        """Anything of a previous commissioning left (intact or not): a damaged meter is
        never silently re-commissioned. The marker is looked at first, so the normal start
        does not touch (and quarantine) the copies the self-check is about to judge."""
        for kind in (MARK_KIND, REG_KIND):
            for copy in COPIES:
                try:
                    if self.store.get_record(kind, copy) is not None:
                        return True
                except CorruptRecord:
                    return True
        return self.calibration_copies.exists()

    def _commission(self, cal: Calibration, initial_delivered_wh: int) -> None:
        t = int(self.clock.now())
        d = initial_delivered_wh * UJ_PER_WH
        self.calibration_copies.write(cal)
        state = RegisterState(t, d, 0, t, d, 0, 0)
        self._write_registers(state)
        for copy in COPIES:
            self.store.put_record(MARK_KIND, copy, {"t": t, "calibration_crc32": cal.checksum()})
        self._event("POWER_UP", "COMMISSIONED", "metrology commissioned", origin_t=t,
                    calibration=cal.to_record())

    def _read_register_copy(self, copy: str) -> tuple[RegisterState | None, str]:
        try:
            doc = self.store.get_record(REG_KIND, copy)
        except CorruptRecord as exc:
            return None, f"copy {copy}: {exc.reason}"
        if doc is None:
            return None, f"copy {copy}: missing"
        try:
            return RegisterState.from_record(doc), ""
        except ValueError as exc:
            return None, f"copy {copy}: {exc}"

    def _load_registers(self) -> None:
        (a, why_a), (b, why_b) = (self._read_register_copy(c) for c in COPIES)
        if a is None and b is None:
            self.status |= MetrologyStatus.REGISTER_FAULT
            self._event("METROLOGY_FAULT", "REGISTERS_CORRUPT",
                        f"registers lost in both copies ({why_a}; {why_b}): no readings")
            return
        best = max((s for s in (a, b) if s is not None), key=lambda s: s.seq)
        self.registers = best
        if a != b:  # one damaged, or a crash between the two writes
            self._write_registers(best)
            if a is None or b is None:
                self._event("INTEGRITY_RECOVERED", "REGISTERS_REPAIRED",
                            f"register copy rewritten from the other ({why_a or why_b})")
        self._persisted = best

    def _write_registers(self, state: RegisterState) -> None:
        for copy in COPIES:
            self.store.put_record(REG_KIND, copy, state.to_record())
        self._persisted = state

    # -- events ------------------------------------------------------------------------------
    def _event(self, kind: str, code: str, detail: str, **extra: Any) -> dict[str, Any]:
        details = {"code": code, "detail": detail, "sim_time": int(self.clock.now()), **extra}
        seq = self.store.append_event(kind, **details)
        self._seq = max(self._seq, seq)
        entry = {"seq": seq, "time": time.time(), "kind": kind, "details": details}
        self.recent.append(entry)
        log = LOGGER.info if kind == "POWER_UP" else LOGGER.warning
        log("metrology event %s %s: %s", kind, code, detail)
        if self.on_event is not None:
            try:
                self.on_event(kind, {"seq": seq, **details})
            except Exception:  # noqa: BLE001 - a faulty sink must not stop metrology
                LOGGER.exception("metrology event sink failed")
        return entry

    def record(self, kind: str, code: str, detail: str, **extra: Any) -> dict[str, Any]:
        """Add an event of the process around the core (e.g. a watchdog reset)."""
        return self._event(kind, code, detail, **extra)

    @property
    def event_seq(self) -> int:
        """The last sequence number in the event log (the store adds events of its own)."""
        newer = self.store.events(self._seq)
        if newer:
            self._seq = newer[-1].seq
        return self._seq

    def events(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        out = []
        for e in self.store.events(since)[:limit]:
            out.append({"seq": e.seq, "time": e.time, "kind": e.kind, "details": e.details})
        return out

    # -- integration -------------------------------------------------------------------------
    @property
    def integrating(self) -> bool:
        return not self.status & (ENERGY_WITHHELD | MetrologyStatus.MEASUREMENT_FAULT)

    def advance(self, now: float | None = None, max_slots: int | None = MAX_SLOTS) -> bool:
        """Integrate the source up to ``now`` (whole seconds), unless a fault holds it.

        At most ``max_slots`` slots per call (a long catch-up after a restart would
        otherwise hold the event loop for seconds); True when nothing is left to do.
        """
        end = int(self.clock.now() if now is None else now)
        if not self.integrating or self.registers is None or self.calibration is None:
            return True
        # A fault stops the integrator; the chip is reset at once and, if that cures it,
        # integration goes on from the held slot (a second fault waits for the self-check).
        outcome = self._integrate(end, max_slots)
        if outcome == "fault" and self._recover():
            outcome = self._integrate(end, max_slots)
        return outcome != "budget"

    def _integrate(self, end: int, max_slots: int | None) -> str:
        """"end" when it reached ``end``, "budget" when it ran out of slots, "fault"."""
        assert self.registers is not None and self.calibration is not None
        reg = self.registers
        t, d, r = reg.t, reg.delivered_uj, reg.received_uj
        cal = self.calibration
        outcome = "end"
        budget = -1 if max_slots is None else max_slots
        while t < end:
            if budget == 0:
                outcome = "budget"
                break
            budget -= 1
            nxt = min(end, (t // SLOT + 1) * SLOT)
            try:
                raw = self.source.sample_w(t)
            except Exception as exc:  # noqa: BLE001 - any chip error is a measurement fault
                self._measurement_fault("failing", "MEASUREMENT_FAILING",
                                        f"source failed: {type(exc).__name__}: {exc}", t)
                outcome = "fault"
                break
            if self.detector.feed(t, raw):
                self._measurement_fault(
                    "stuck", "MEASUREMENT_STUCK",
                    f"source stuck at {raw} W since {self.detector.run_start} while the model "
                    f"changed {self.detector.changes} times", t,
                    value_w=raw, suspect_from=self.detector.run_start, suspect_to=t)
                outcome = "fault"
                break
            uw = cal.apply_uw(raw)
            if uw >= 0:
                d += uw * (nxt - t)
            else:
                r += -uw * (nxt - t)
            t = nxt
        if t != reg.t:
            self.registers = dataclasses.replace(reg, t=t, delivered_uj=d, received_uj=r)
        return outcome

    def _measurement_fault(self, state: str, code: str, detail: str, t: int,
                           **extra: Any) -> None:
        self.status |= MetrologyStatus.MEASUREMENT_FAULT
        self.measurement_state = state
        self.held_since = t
        self._event("METROLOGY_FAULT", code, detail, held_at=t, **extra)

    def _recover(self) -> bool:
        """Re-initialise the source and probe it; clears the fault when it measures again."""
        self.reinit_attempts += 1
        try:
            self.source.reinitialise()
            err = ""
        except Exception as exc:  # noqa: BLE001
            err = f"{type(exc).__name__}: {exc}"
        n = self.reinit_attempts
        if n <= 3 or n & (n - 1) == 0:  # 1, 2, 3, 4, 8, 16...: a dead chip must not flood the log
            self._event("METROLOGY_FAULT", "SOURCE_REINITIALISED",
                        f"measurement source re-initialised (attempt {n})"
                        + (f": reset failed: {err}" if err else ""), attempt=n)
        if err:
            return False
        result = probe(self.source, self.load.power_w, int(self.clock.now()))
        if result.state in ("stuck", "failing"):
            self.measurement_state = result.state
            return False
        held = self.held_since
        self.status &= ~MetrologyStatus.MEASUREMENT_FAULT
        self.measurement_state = "ok"
        self.detector.reset()
        self.held_since = None
        self.reinit_attempts = 0
        self._event("METROLOGY_FAULT", "MEASUREMENT_RECOVERED",
                    f"measurement source working again after {n} re-initialisation(s)"
                    + ("" if result.state == "ok" else f" ({result.detail})"),
                    held_at=held, attempts=n)
        return True

    # -- persistence ---------------------------------------------------------------------------
    def persist(self) -> bool:
        """Write the registers (both copies) if they moved since the last write."""
        reg = self.registers
        if reg is None or self.status & MetrologyStatus.REGISTER_FAULT:
            return False
        last = self._persisted
        if last is not None and (last.t, last.delivered_uj, last.received_uj) == (
                reg.t, reg.delivered_uj, reg.received_uj):
            return False
        reg = dataclasses.replace(reg, seq=(last.seq if last else reg.seq) + 1)
        self.registers = reg
        self._write_registers(reg)
        return True

    def tick(self) -> bool:
        """Periodic work: integrate towards now and make it durable; True when caught up."""
        done = self.advance()
        self.persist()
        return done

    # -- self-check ----------------------------------------------------------------------------
    def _check_calibration(self) -> None:
        if self.calibration is not None and not verify_in_memory(self.calibration, self._cal_crc):
            self._event("METROLOGY_FAULT", "CALIBRATION_RAM_CORRUPT",
                        "calibration in memory failed its checksum: reloading the stored copies")
            self.calibration = None
        check = self.calibration_copies.verify()
        cal = check.calibration
        if cal is not None and self.calibration is not None and cal != self.calibration:
            check = dataclasses.replace(check, state="corrupt", calibration=None,
                                        detail="stored calibration changed behind metrology")
        was_faulty = bool(self.status & MetrologyStatus.CALIBRATION_FAULT)
        if check.state == "corrupt":
            self.calibration = None
            self.calibration_state = "corrupt"
            self.status |= MetrologyStatus.CALIBRATION_FAULT
            if not was_faulty:
                self._event("METROLOGY_FAULT", "CALIBRATION_CORRUPT",
                            f"calibration unusable ({check.detail}): no readings produced")
            return
        assert cal is not None
        self.calibration = cal
        self._cal_crc = cal.checksum()
        self.calibration_state = check.state
        self.status &= ~MetrologyStatus.CALIBRATION_FAULT
        if check.state == "repaired":
            self._event("INTEGRITY_RECOVERED", "CALIBRATION_REPAIRED",
                        f"calibration copy {'/'.join(check.repaired)} rewritten from the other "
                        f"({check.detail})", copies=list(check.repaired))
        if was_faulty:
            self._event("METROLOGY_FAULT", "CALIBRATION_OK", "calibration verified again")

    def _check_register_copies(self) -> str:
        if self.registers is None or self._persisted is None:
            return "corrupt"
        damaged = []
        for copy in COPIES:
            state, why = self._read_register_copy(copy)
            if state != self._persisted:
                damaged.append(why or f"copy {copy}: differs from the last write")
        if damaged:
            self._write_registers(self._persisted)
            self._event("INTEGRITY_RECOVERED", "REGISTERS_REPAIRED",
                        "register copies rewritten from memory: " + "; ".join(damaged))
            return "repaired"
        return "ok"

    def self_check(self) -> dict[str, Any]:
        """One full self-check; returns its verdict (the ``selftest`` reply)."""
        first = self.recent[-1]["seq"] if self.recent else 0
        self.checks += 1
        self.last_check = time.time()
        self._check_calibration()
        registers = self._check_register_copies()
        if self.status & MetrologyStatus.MEASUREMENT_FAULT:
            if self._recover():
                self.advance()
        elif self.integrating:
            self.advance()
            if self.integrating:  # the integrator found nothing: look at the source anyway
                result = probe(self.source, self.load.power_w, int(self.clock.now()))
                if result.state in ("stuck", "failing"):
                    assert self.registers is not None
                    code = "MEASUREMENT_STUCK" if result.state == "stuck" else "MEASUREMENT_FAILING"
                    self._measurement_fault(result.state, code, result.detail, self.registers.t)
                    self._recover()
        self.persist()
        fail = self.status & (ENERGY_WITHHELD | MetrologyStatus.MEASUREMENT_FAULT)
        return {
            "result": "fail" if fail else "pass",
            "status": int(self.status),
            "calibration": self.calibration_state,
            "registers": "corrupt" if self.status & MetrologyStatus.REGISTER_FAULT else registers,
            "measurement": self.measurement_state,
            "source_resets": self.source.resets,
            "events": [e for e in self.recent if e["seq"] > first],
        }

    # -- what the protocol shows ---------------------------------------------------------------
    def reading(self) -> dict[str, Any]:
        """Integrate to now, make it durable, then show it."""
        now = int(self.clock.now())
        self.advance(now)
        self.persist()
        out: dict[str, Any] = {"status": int(self.status)}
        reg = self.registers
        if self.status & ENERGY_WITHHELD or reg is None:
            out["timestamp"] = now
            return out
        out.update(timestamp=reg.t,
                   delivered_wh=reg.delivered_uj // UJ_PER_WH,
                   received_wh=reg.received_uj // UJ_PER_WH,
                   delivered_j=reg.delivered_uj // UJ_PER_J,
                   received_j=reg.received_uj // UJ_PER_J)
        if not self.status & MetrologyStatus.MEASUREMENT_FAULT:
            try:
                assert self.calibration is not None
                out["demand_w"] = _to_w(self.calibration.apply_uw(self.source.sample_w(reg.t)))
            except Exception as exc:  # noqa: BLE001
                self._measurement_fault("failing", "MEASUREMENT_FAILING",
                                        f"source failed: {type(exc).__name__}: {exc}", reg.t)
                out["status"] = int(self.status)
        return out

    def describe(self) -> dict[str, Any]:
        """The ``status`` reply."""
        reg = self.registers
        cal = self.calibration
        return {
            "status": int(self.status),
            "faults": [f.name for f in MetrologyStatus if f and self.status & f],
            "now": self.clock.now(),
            "registers_t": reg.t if reg else None,
            "origin": None if reg is None else {
                "t": reg.origin_t, "delivered_j": reg.origin_delivered_uj // UJ_PER_J,
                "received_j": reg.origin_received_uj // UJ_PER_J},
            "run_since": self.run_since,
            "calibration": {"state": self.calibration_state,
                            **({"gain_micro": cal.gain_micro, "offset_mw": cal.offset_mw,
                                "ident": cal.ident, "crc32": cal.checksum()} if cal else {})},
            "measurement": {"state": self.measurement_state, "source": self.source.name,
                            "resets": self.source.resets, "held_at": self.held_since},
            "checks": self.checks,
            "last_check": self.last_check,
            "uptime_s": round(time.time() - self.started, 3),
            "event_seq": self.event_seq,
            "pid": os.getpid(),
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.persist()
        self.store.close()
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
