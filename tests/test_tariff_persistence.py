"""The tariff in force is stored (two checked copies) and back after a restart; a corrupt
copy is repaired from the other, two corrupt copies are not used."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.meter.tariff import DEFAULT_TARIFF, load_tariff, tariff_from_dict, tariff_to_dict

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "tariff.toml"
DEMO = ROOT / "hubsim" / "data" / "demo_tariff.toml"
IEEE = "00:0d:6f:00:00:00:7b:01"


def test_every_tariff_survives_its_document_form():
    for tariff in (load_tariff(EXAMPLE), load_tariff(DEMO), DEFAULT_TARIFF):
        assert tariff_from_dict(tariff_to_dict(tariff)) == tariff


async def run_meter(data: Path, *, set_to=None, tariff_file=None) -> MeterApp:
    clock = ManualClock()
    meter = MeterApp(MeterSettings(ieee=IEEE, data_dir=data, tick_seconds=0.02,
                                   tariff=tariff_file), clock=clock, air=VirtualAir())
    await meter.start()
    try:
        if set_to is not None:
            meter.set_tariff(set_to)
            clock.advance(60)
            await meter.poll_metrology()  # a tick: the store catches up
    finally:
        await meter.stop()
    return meter


async def test_a_tariff_set_at_run_time_is_in_force_after_a_restart(tmp_path):
    economy7 = load_tariff(EXAMPLE)
    first = await run_meter(tmp_path, set_to=economy7)
    assert first.price.tariff == economy7
    again = await run_meter(tmp_path)
    assert again.price.tariff == economy7  # the file's tariff, from the store
    assert again.price.tariff.tier(2).rate == Decimal("0.3127")
    # a file given at start is the configuration: it wins over what was stored
    demo = await run_meter(tmp_path, tariff_file=DEMO)
    assert demo.price.tariff.label == "Demo TOU + block"


async def test_corrupt_tariff_copies(tmp_path):
    await run_meter(tmp_path, set_to=load_tariff(EXAMPLE))
    db = sqlite3.connect(tmp_path / "meter.db")
    rows = db.execute("SELECT copy, value FROM records WHERE kind='config' AND key='tariff'"
                      ).fetchall()
    assert sorted(c for c, _ in rows) == [0, 1]  # two copies
    # rot in one copy: repaired from the other, still in force
    db.execute("UPDATE records SET value=replace(value, '0.3127', '0.0001') "
               "WHERE kind='config' AND key='tariff' AND copy=0")
    db.commit()
    meter = await run_meter(tmp_path)
    assert meter.price.tariff.tier(2).rate == Decimal("0.3127")
    # both copies altered: detected and not used (the default tariff, Check Meter)
    db.execute("UPDATE records SET value=replace(value, '0.3127', '0.0001') "
               "WHERE kind='config' AND key='tariff'")
    db.commit()
    db.close()
    clock = ManualClock()
    meter = MeterApp(MeterSettings(ieee=IEEE, data_dir=tmp_path, tick_seconds=0.02),
                     clock=clock, air=VirtualAir())
    try:
        assert meter.price.tariff == DEFAULT_TARIFF
        assert meter.metering.read_value(0x0200) & 0x01  # Check Meter
    finally:
        meter.persistence.close()
