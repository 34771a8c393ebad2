"""Metering commands across the virtual air, decoded by zigpy's client-side schemas."""

from __future__ import annotations

import asyncio

import pytest
from conftest import METER_IEEE, SEED
from zigpy.zcl.clusters.smartenergy import Metering as ZMetering

from sep.metrology.load import HouseholdLoad

Z2000 = 946_684_800
HALF_HOUR = 1800


def independent_intervals(origin: float, ends: list[int]) -> list[int]:
    """Energy per 30-minute interval recomputed from the load model: the change of the
    Wh register (whole Wh of the energy since the meter started at ``origin``)."""
    load = HouseholdLoad(SEED)
    out = []
    for end in ends:
        before, _ = load.energy_j(origin, end - HALF_HOUR)
        to_end, _ = load.energy_j(origin, end)
        out.append(to_end // 3600 - before // 3600)
    return out


async def step_clock(meter, clock, seconds: int, step: int = 300) -> None:
    for _ in range(seconds // step):
        clock.advance(step)
        await meter.poll_metrology()


async def metering_client(han):
    air, clock, hub, meter, ihd = han
    dev = await hub.wait_interviewed(METER_IEEE)
    return dev.endpoints[1].in_clusters[ZMetering.cluster_id]


async def test_get_profile_returns_the_stored_intervals(han):
    air, clock, hub, meter, ihd = han
    cluster = await metering_client(han)
    # Start on an interval boundary so every interval is whole.
    origin = clock.t  # the meter's metrology started here
    clock.t = (int(clock.t) // HALF_HOUR + 1) * HALF_HOUR
    t0 = clock.t
    await meter.poll_metrology()
    await step_clock(meter, clock, 13 * HALF_HOUR)
    rsp = await cluster.get_profile(0, 0, 12)
    assert rsp.status == 0
    assert rsp.profile_interval_period == 2  # 30 minutes
    assert rsp.number_of_periods_delivered == 12
    latest_end = int(t0 + 13 * HALF_HOUR)
    assert rsp.end_time == latest_end - Z2000
    stored = [iv.value_wh for iv in meter.metering.profile.all(0)][::-1][:12]
    assert list(rsp.intervals) == stored
    ends = [latest_end - i * HALF_HOUR for i in range(12)]
    assert list(rsp.intervals) == independent_intervals(origin, ends)

    # The next block: end time = previous end - 12 periods
    rsp2 = await cluster.get_profile(0, rsp.end_time - 12 * HALF_HOUR, 12)
    # 13 whole intervals were closed, and the partial one the meter started in.
    assert rsp2.status == 0 and rsp2.number_of_periods_delivered == 2
    ends2 = [latest_end - 12 * HALF_HOUR, latest_end - 13 * HALF_HOUR]
    assert list(rsp2.intervals) == independent_intervals(origin, ends2)


async def test_get_profile_statuses(han):
    air, clock, hub, meter, ihd = han
    cluster = await metering_client(han)
    rsp = await cluster.get_profile(0, 0, 4)
    assert rsp.status == 0x05 and rsp.number_of_periods_delivered == 0  # nothing stored yet
    await step_clock(meter, clock, 30 * HALF_HOUR, step=HALF_HOUR)
    future = int(clock.t) + 3600 - Z2000
    assert (await cluster.get_profile(0, future, 4)).status == 0x03
    rsp = await cluster.get_profile(0, 0, 200)
    assert rsp.status == 0x04 and rsp.number_of_periods_delivered == 24
    assert (await cluster.get_profile(2, 0, 4)).status == 0x02
    assert (await cluster.get_profile(9, 0, 4)).status == 0x01


async def test_tiers_sum_to_total_and_follow_the_active_tier(han):
    air, clock, hub, meter, ihd = han
    cluster = await metering_client(han)
    await step_clock(meter, clock, 7200)
    meter.metering.set_active_tier(2)
    before = await cluster.read_attributes([0x0100, 0x0102], allow_cache=False)
    await step_clock(meter, clock, 7200)
    after, _ = await cluster.read_attributes([0x0000, 0x0100, 0x0102, 0x0104, 0x0106],
                                             allow_cache=False)
    assert after[0x0100] == before[0][0x0100]  # tier 1 frozen while tier 2 active
    assert after[0x0102] > before[0][0x0102]
    assert after[0x0100] + after[0x0102] + after[0x0104] + after[0x0106] == after[0x0000]


async def test_snapshot_take_and_get(han):
    air, clock, hub, meter, ihd = han
    cluster = await metering_client(han)
    await step_clock(meter, clock, 3600)
    rsp = await cluster.take_snapshot(0x00000400)
    assert rsp.snapshot_confirmation == 0 and rsp.snapshot_id == 1
    summation = meter.last_reading.delivered_wh
    # PublishSnapshot arrives as a command from the server; decode it with zigpy's schema
    got: asyncio.Future = asyncio.get_running_loop().create_future()
    def on_cmd(tsn, command_id, args):
        if command_id == 0x06 and not got.done():
            got.set_result(args)

    cluster.add_listener(type("L", (), {"cluster_command": staticmethod(on_cmd)})())
    await cluster.get_snapshot(0, 0xFFFFFFFF, 0, 0xFFFFFFFF, expect_reply=False)
    args = await asyncio.wait_for(got, 5)
    assert args.snapshot_id == 1 and args.total_snapshots_found == 1
    payload = bytes(args.snapshot_payload)
    assert int.from_bytes(payload[:6], "little") == summation


async def test_fast_poll_is_granted_at_most_15_minutes(han):
    air, clock, hub, meter, ihd = han
    cluster = await metering_client(han)
    await meter.poll_metrology()
    rsp = await cluster.request_fast_poll_mode(1, 60)
    assert rsp.applied_update_period == 2  # the meter's FastPollUpdatePeriod
    assert rsp.fast_poll_mode_end_time == int(clock.t) + 15 * 60 - Z2000


async def test_supply_control_end_to_end(han):
    air, clock, hub, meter, ihd = han
    cluster = await metering_client(han)
    provider = meter.metering.supply.provider_id
    await step_clock(meter, clock, 3600)
    # Unauthorised: wrong provider
    rsp = await cluster.change_supply(provider + 1, 1, 0, 0, 0, 0x01)
    assert rsp.status == 0x7E  # NOT_AUTHORIZED
    assert meter.metering.supply.relay.closed
    # Open the relay; consumption stops accruing
    rsp = await cluster.change_supply(provider, 10, 0, 0, 0, 0x01)
    assert rsp.supply_status == 0
    assert not meter.metering.supply.relay.closed
    stopped_at = meter.last_reading.delivered_wh
    await step_clock(meter, clock, 7200)
    assert meter.last_reading.delivered_wh == stopped_at
    attrs, _ = await cluster.read_attributes([0x0014, 0x0200, 0x0400], allow_cache=False)
    assert attrs[0x0014] == 0 and attrs[0x0200] & 0x40 and attrs[0x0400] == 0
    # A replayed (not newer) issuer event id is refused
    rsp = await cluster.change_supply(provider, 10, 0, 0, 2, 0x01)
    assert rsp.status == 0x7E
    # Local restore only from ARMED
    rsp = await cluster.local_change_supply(2)
    assert rsp.status == 0x93  # ACTION_DENIED: not armed
    rsp = await cluster.change_supply(provider, 11, 0, 0, 1, 0x01)
    assert rsp.supply_status == 1 and not meter.metering.supply.relay.closed
    rsp = await cluster.local_change_supply(2)
    assert rsp.status == 0
    assert meter.metering.supply.relay.closed
    await step_clock(meter, clock, 3600)
    assert meter.last_reading.delivered_wh > stopped_at


@pytest.mark.parametrize("proposed", [3, 0xFF])
async def test_change_supply_reserved_status_is_invalid(han, proposed):
    air, clock, hub, meter, ihd = han
    cluster = await metering_client(han)
    provider = meter.metering.supply.provider_id
    rsp = await cluster.change_supply(provider, 5, 0, 0, proposed, 0x01)
    assert rsp.status == 0x87
    assert meter.metering.supply.relay.closed
