"""Metering state the store keeps across a restart: snapshots and the supply (relay)
state, and what happens when the stored supply state is corrupt."""

from __future__ import annotations

import sqlite3

from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock

IEEE = "00:0d:6f:00:00:00:dd:05"


async def meter(data, clock) -> MeterApp:
    app = MeterApp(MeterSettings(ieee=IEEE, data_dir=data, initial_wh=1000, tick_seconds=60),
                   clock=clock, air=VirtualAir())
    await app.start()
    return app


async def test_snapshots_and_a_disconnect_survive_a_restart(tmp_path):
    clock = ManualClock()
    app = await meter(tmp_path, clock)
    try:
        clock.advance(3600)
        await app.poll_metrology()
        snap = app.metering.take_snapshot(clock.now())
        supply = app.metering.supply
        supply.remote_change(supply.provider_id, 77, 0, 0, clock.now())  # OFF
    finally:
        await app.stop()
    clock.advance(600)
    again = await meter(tmp_path, clock)
    try:
        assert again.metering.snapshots == [snap]
        assert again.metering.read_value(0x0014) == 0 and not again.metering.supply.relay.closed
        assert again.metering.supply.last_issuer_event_id == 77
        assert again.metering.take_snapshot(clock.now()).snapshot_id == 2  # ids continue
        kinds = [e.kind for e in again.store.events()]
    finally:
        await again.stop()
    assert kinds.count("SUPPLY_CHANGE") == 1 and kinds.count("POWER_UP") == 2


async def test_corrupt_supply_state_is_not_used(tmp_path):
    clock = ManualClock()
    app = await meter(tmp_path, clock)
    supply = app.metering.supply
    supply.remote_change(supply.provider_id, 5, 0, 0, clock.now())  # OFF
    await app.stop()
    db = sqlite3.connect(tmp_path / "meter.db")
    n = db.execute("UPDATE records SET value=replace(value, '\"status\":0', '\"status\":2') "
                   "WHERE kind='meter' AND key='supply'").rowcount
    db.commit()
    db.close()
    assert n >= 1  # every stored copy edited
    again = await meter(tmp_path, clock)
    try:
        # the edited record fails its MAC: it is quarantined, never used, and flagged
        assert again.metering.read_value(0x0200) & 0x01  # Check Meter
        assert [e for e in again.store.events() if e.kind == "INTEGRITY_FAILURE"]
        # and the relay does not close on it: armed, for a local restore
        assert again.metering.read_value(0x0014) == 1 and not again.metering.supply.relay.closed
    finally:
        await again.stop()


async def test_tier_and_block_registers_survive_a_restart(tmp_path):
    clock = ManualClock()
    app = await meter(tmp_path, clock)
    try:
        for tier in (1, 2, 3):
            app.metering.set_active_tier(tier)
            if tier == 2:
                app.metering.set_block_period(int(clock.now()), [50, 120])
            for _ in range(12):
                clock.advance(300)
                await app.poll_metrology()
        tiers = app.metering.registers.tiers_delivered[:4]
        blocks = dict(app.metering.registers.blocks.summations)
        day = list(app.metering.registers.day.current)
    finally:
        await app.stop()
    assert all(tiers[:3]) and blocks
    again = await meter(tmp_path, clock)
    try:
        regs = again.metering.registers
        assert regs.tiers_delivered[:4] == tiers and regs.blocks.summations == blocks
        assert regs.day.current == day  # (the active tier is the Price server's to say)
        clock.advance(300)
        await again.poll_metrology()
        total = again.metering.read_value(0x0000)
        assert sum(regs.tiers_delivered) == total  # still adds up after the restart
        i = regs.active_tier - 1
        assert regs.tiers_delivered[i] > tiers[i]  # and the active tier carries on
    finally:
        await again.stop()
