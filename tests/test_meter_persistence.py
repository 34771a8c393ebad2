"""The meter's data across restarts, and what it does with corrupt data."""

from __future__ import annotations

import sqlite3

from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock

IEEE = "00:0d:6f:00:00:00:dd:04"


async def run_meter(data, clock, hours: int) -> MeterApp:
    app = MeterApp(MeterSettings(ieee=IEEE, data_dir=data, initial_wh=500_000, tick_seconds=60),
                   clock=clock, air=VirtualAir())
    await app.start()
    for _ in range(hours * 12):
        clock.advance(300)
        await app.poll_metrology()
    await app.stop()
    return app


async def test_registers_and_profile_survive_a_restart(tmp_path):
    clock = ManualClock()
    first = await run_meter(tmp_path, clock, 5)
    total = first.last_reading.delivered_wh
    stored = first.metering.profile.all(0)
    second = await run_meter(tmp_path, clock, 1)
    assert second.last_reading.delivered_wh >= total  # continues, never restarts at initial
    assert second.metering.profile.all(0)[: len(stored)] == stored


async def test_corrupt_interval_sets_check_meter_and_is_not_served(tmp_path):
    clock = ManualClock()
    first = await run_meter(tmp_path, clock, 5)
    victim = first.metering.profile.all(0)[2]
    db = sqlite3.connect(tmp_path / "meter.db")
    db.execute("UPDATE intervals SET value=value+1 WHERE channel=0 AND end_time=?", (victim.end,))
    db.commit()
    db.close()
    app = MeterApp(MeterSettings(ieee=IEEE, data_dir=tmp_path), clock=clock, air=VirtualAir())
    await app.start()
    try:
        assert app.metering.read_value(0x0200) & 0x01  # Check Meter
        assert victim.end not in [iv.end for iv in app.metering.profile.all(0)]
        assert [e for e in app.store.events() if e.kind == "INTEGRITY_FAILURE"]
        assert app.metering.read_value(0x0000) > 0  # still serving what is intact
    finally:
        await app.stop()
