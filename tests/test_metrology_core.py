"""The metrology core in-process: exact integration, calibration, persistence, self-check.

The same core runs inside the metrology process (tests/test_metrology_process.py drives it
through real processes and sockets); here a ManualClock makes every step deterministic.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sep.clock import ManualClock
from sep.metrology.api import MetrologyStatus
from sep.metrology.calibration import Calibration, CalibrationError
from sep.metrology.core import UJ_PER_J, MetrologyCore, MetrologyLocked
from sep.metrology.load import SLOT, HouseholdLoad
from sep.metrology.selfcheck import StuckDetector, probe
from sep.metrology.source import FaultySource, HouseholdSource, MeasurementError, parse_inject

SEED = 5
START = 1_800_000_000


def make(tmp: Path, clock: ManualClock, **kw) -> MetrologyCore:
    load = kw.pop("load", HouseholdLoad(SEED))
    return MetrologyCore(tmp / "metrology", clock=clock, load=load, **kw)


def tamper(tmp: Path, kind: str, key: str, value: str = '{"junk":1}') -> None:
    db = sqlite3.connect(tmp / "metrology" / "meter.db")
    n = db.execute("UPDATE records SET value=? WHERE kind=? AND key=?", (value, kind, key)).rowcount
    db.commit()
    db.close()
    assert n == 1


def codes(core: MetrologyCore) -> list[str]:
    return [e["details"].get("code", "") for e in core.events()]


def test_unity_calibration_reproduces_the_household_exactly(tmp_path):
    clock = ManualClock(START)
    core = make(tmp_path, clock)
    load = HouseholdLoad(SEED)
    for step in (1, 7, 10, 3599, 13, 600):
        clock.advance(step)
        doc = core.reading()
        imp, exp = load.energy_j(START, clock.now())
        assert doc["timestamp"] == int(clock.now())
        assert (doc["delivered_j"], doc["received_j"]) == (imp, exp)
        assert core.registers.delivered_uj == imp * UJ_PER_J  # not a joule rounded away
        assert doc["delivered_wh"] == imp // 3600
        assert doc["demand_w"] == load.power_w(clock.now())
    core.close()


def test_a_long_catch_up_goes_a_day_per_step_and_every_reading_is_true(tmp_path):
    clock = ManualClock(START)
    core = make(tmp_path, clock)
    load = HouseholdLoad(SEED)
    clock.advance(30 * 86400 + 5)  # e.g. a restart after a month
    stamps = [START]
    expected = 0
    while True:
        doc = core.reading()
        expected += load.energy_j(stamps[-1], doc["timestamp"])[0]  # recomputed piecewise
        assert doc["delivered_j"] == expected
        stamps.append(doc["timestamp"])
        if doc["timestamp"] == int(clock.now()):
            break
    assert len(stamps) == 32 and stamps == sorted(stamps)
    assert stamps[2] - stamps[1] == 86400
    core.close()


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(st.integers(1, 5000), min_size=1, max_size=12),
       gain=st.integers(500_000, 1_500_000), offset=st.integers(-50_000, 50_000))
def test_calibration_scales_the_measured_power(tmp_path_factory, steps, gain, offset):
    tmp = tmp_path_factory.mktemp("cal")
    clock = ManualClock(START)
    load = HouseholdLoad(SEED, solar_peak_w=3000)  # exports too
    core = make(tmp, clock, load=load, factory_calibration=Calibration(gain, offset))
    for s in steps:
        clock.advance(s)
        core.advance()
    # independent: per-second calibrated power, split by sign, in micro-joules
    d = r = 0
    for t in range(START, int(clock.now())):
        uw = load.power_w(t) * gain + offset * 1000
        d, r = (d + uw, r) if uw >= 0 else (d, r - uw)
    assert (core.registers.delivered_uj, core.registers.received_uj) == (d, r)
    core.close()


def test_calibration_constants_are_checked():
    with pytest.raises(CalibrationError):
        Calibration(0)
    with pytest.raises(CalibrationError):
        Calibration(True)  # type: ignore[arg-type]
    rec = Calibration(1_010_000, 5).to_record()
    assert Calibration.from_record(rec) == Calibration(1_010_000, 5)
    with pytest.raises(CalibrationError, match="checksum"):
        Calibration.from_record({**rec, "gain_micro": 1_020_000})


def test_registers_continue_after_a_restart_and_never_count_twice(tmp_path):
    clock = ManualClock(START)
    load = HouseholdLoad(SEED)
    core = make(tmp_path, clock)
    clock.advance(4000)
    first = core.reading()
    core.close()
    # down for an hour of the household's time: it kept drawing, the model says how much
    clock.advance(3600)
    core = make(tmp_path, clock)
    assert core.run_since == first["timestamp"]
    doc = core.reading()
    assert doc["delivered_j"] == load.energy_j(START, clock.now())[0] > first["delivered_j"]
    core.close()
    # a restart whose clock is behind the stored registers: they wait, nothing twice
    clock2 = ManualClock(START + 100)
    core = make(tmp_path, clock2)
    again = core.reading()
    assert again["timestamp"] == doc["timestamp"] and again["delivered_j"] == doc["delivered_j"]
    core.close()


def test_one_instance_per_directory(tmp_path):
    core = make(tmp_path, ManualClock(START))
    with pytest.raises(MetrologyLocked):
        make(tmp_path, ManualClock(START))
    core.close()
    make(tmp_path, ManualClock(START)).close()


def test_calibration_one_copy_repaired_both_means_no_energy(tmp_path):
    clock = ManualClock(START)
    seen: list[tuple[str, dict]] = []
    core = make(tmp_path, clock, on_event=lambda k, d: seen.append((k, d)))
    clock.advance(600)
    good = core.reading()
    tamper(tmp_path, "metrology-calibration", "a")
    verdict = core.self_check()
    assert verdict["calibration"] == "repaired" and verdict["result"] == "pass"
    assert ("INTEGRITY_RECOVERED", "CALIBRATION_REPAIRED") in [
        (k, d["code"]) for k, d in seen]
    assert core.self_check()["calibration"] == "ok"  # the copy really was rewritten
    # both copies: refuse to produce energy, and the registers stop
    tamper(tmp_path, "metrology-calibration", "a", '{"gain_micro":1500000}')
    tamper(tmp_path, "metrology-calibration", "b", '{"gain_micro":1500000}')
    verdict = core.self_check()
    assert verdict["result"] == "fail" and verdict["calibration"] == "corrupt"
    clock.advance(600)
    doc = core.reading()
    assert doc["status"] & MetrologyStatus.CALIBRATION_FAULT
    assert not {"delivered_wh", "received_wh", "delivered_j", "demand_w"} & set(doc)
    assert core.registers.t == good["timestamp"]
    assert codes(core).count("CALIBRATION_CORRUPT") == 1  # reported once, not every check
    core.close()
    # still a fault after a restart: the good copies are gone, nothing re-commissions
    core = make(tmp_path, clock)
    assert core.status & MetrologyStatus.CALIBRATION_FAULT and "delivered_wh" not in core.reading()
    core.close()


def test_copies_that_disagree_or_ram_that_rots(tmp_path):
    clock = ManualClock(START)
    core = make(tmp_path, clock)
    # RAM: a flipped constant is caught by the checksum and reloaded from the copies
    object.__setattr__(core.calibration, "gain_micro", 1_000_001)
    assert core.self_check()["result"] == "pass"
    assert core.calibration == Calibration() and "CALIBRATION_RAM_CORRUPT" in codes(core)
    # two intact copies (valid checksum and MAC) that differ: which is right is unknowable
    core.store.put_record("metrology-calibration", "b", Calibration(1_100_000).to_record())
    assert core.self_check()["calibration"] == "corrupt"
    assert core.status & MetrologyStatus.CALIBRATION_FAULT
    core.close()


def test_register_copies_repaired_and_both_lost_is_a_fault(tmp_path):
    clock = ManualClock(START)
    core = make(tmp_path, clock)
    clock.advance(900)
    doc = core.reading()
    tamper(tmp_path, "metrology-registers", "b")
    assert core.self_check()["registers"] == "repaired"
    core.close()
    tamper(tmp_path, "metrology-registers", "a")
    core = make(tmp_path, clock)  # repaired from b at start-up
    assert core.registers.t == doc["timestamp"] and "REGISTERS_REPAIRED" in codes(core)
    core.close()
    tamper(tmp_path, "metrology-registers", "a")
    tamper(tmp_path, "metrology-registers", "b")
    core = make(tmp_path, clock)
    out = core.reading()
    assert out["status"] & MetrologyStatus.REGISTER_FAULT and "delivered_wh" not in out
    assert core.persist() is False  # lost registers are never overwritten with a guess
    core.close()


def test_stuck_source_detected_held_reinitialised_and_caught_up(tmp_path):
    clock = ManualClock(START)
    load = HouseholdLoad(SEED)
    src = FaultySource(HouseholdSource(load), "stuck", after=None, resets_to_cure=1)
    core = make(tmp_path, clock, load=load, source=src)
    clock.advance(3600)
    core.reading()
    src.trigger()
    clock.advance(6 * 3600)
    doc = core.reading()
    assert src.resets == 1 and src.cured
    c = codes(core)
    i = c.index("MEASUREMENT_STUCK")
    assert c[i:i + 3] == ["MEASUREMENT_STUCK", "SOURCE_REINITIALISED", "MEASUREMENT_RECOVERED"]
    stuck = next(e["details"] for e in core.events() if e["details"]["code"] == "MEASUREMENT_STUCK")
    assert stuck["suspect_from"] >= START + 3600 - SLOT and stuck["suspect_to"] > stuck["suspect_from"]
    assert doc["status"] == 0 and doc["timestamp"] == int(clock.now())
    # energy after detection is measured again (the suspect window is what the event says)
    held = stuck["held_at"]
    before = load.energy_j(START, stuck["suspect_from"])[0]
    assert doc["delivered_j"] >= before
    core.close()
    assert held <= doc["timestamp"]


def test_failing_source_needs_two_resets_and_the_registers_hold_meanwhile(tmp_path):
    clock = ManualClock(START)
    load = HouseholdLoad(SEED)
    src = FaultySource(HouseholdSource(load), "fail", after=None, resets_to_cure=2)
    core = make(tmp_path, clock, load=load, source=src)
    clock.advance(1000)
    core.reading()
    src.trigger()
    clock.advance(1000)
    doc = core.reading()
    assert doc["status"] & MetrologyStatus.MEASUREMENT_FAULT and "demand_w" not in doc
    held = doc["timestamp"]
    assert held == START + 1000  # no energy invented for the failed slots
    clock.advance(1000)
    assert core.reading()["timestamp"] == held
    verdict = core.self_check()  # the second reset cures it; integration catches up
    assert verdict["result"] == "pass" and verdict["measurement"] == "ok"
    doc = core.reading()
    assert doc["status"] == 0
    assert doc["delivered_j"] == load.energy_j(START, clock.now())[0]
    assert codes(core).count("SOURCE_REINITIALISED") == 2
    core.close()


def test_a_healthy_household_never_looks_stuck(tmp_path):
    for seed in (1, 2, 3, 4):
        load = HouseholdLoad(seed, solar_peak_w=2500 if seed % 2 else 0)
        det = StuckDetector(load.power_w)
        assert not any(det.feed(t, load.power_w(t)) for t in range(START, START + 3 * 86400, SLOT))


def test_detector_and_probe():
    load = HouseholdLoad(SEED)
    det = StuckDetector(load.power_w, changes=3)
    t = START
    hits = []
    for t in range(START, START + 86400, SLOT):
        if det.feed(t, 999):
            hits.append(t)
            break
    assert hits and det.changes == 3
    assert probe(HouseholdSource(load), load.power_w, START + 86400).state == "ok"
    stuck = FaultySource(HouseholdSource(load), "stuck")
    assert probe(stuck, load.power_w, START + 86400).state == "stuck"
    failing = FaultySource(HouseholdSource(load), "fail")
    assert probe(failing, load.power_w, START).state == "failing"
    with pytest.raises(MeasurementError):
        failing.sample_w(START)


def test_inject_specs():
    inner = HouseholdSource(HouseholdLoad())
    s = parse_inject("stuck:0:2", inner)
    assert (s.mode, s.resets_to_cure) == ("stuck", 2)
    for bad in ("melt", "stuck:-1", "fail:1:2:3", "stuck:x"):
        with pytest.raises(ValueError):
            parse_inject(bad, inner)


def test_events_are_chained_in_metrology_s_own_store(tmp_path):
    core = make(tmp_path, ManualClock(START))
    assert core.store.check().clean
    assert [e["kind"] for e in core.events()] == ["POWER_UP", "POWER_UP"]
    assert json.dumps(core.describe())  # the status reply is plain JSON
    core.close()


def test_metrology_imports_nothing_of_the_application():
    """The metrology side stands alone: no cluster, firmware, bridge or app code in it."""
    import ast

    allowed = ("sep.metrology", "sep.clock", "sep.store", "sep.watchdog")
    for path in (Path(__file__).parent.parent / "sep" / "metrology").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name == "sep" or name.startswith("sep."):
                    assert name.startswith(allowed), f"{path.name} imports {name}"
