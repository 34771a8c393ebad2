"""End to end on the virtual air: hub interview, IHD reads and reports."""

from __future__ import annotations

import asyncio

from conftest import METER_IEEE, SEED

from sep.metrology.load import HouseholdLoad


def expected_wh(t0: float, t1: float) -> int:
    """Independent recomputation of the imported register from the load model."""
    imported, _ = HouseholdLoad(SEED).energy_j(t0, t1)
    return imported // 3600


async def wait_for(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_hub_interviews_meter_like_zha(han):
    air, clock, hub, meter, ihd = han
    dev = await hub.wait_interviewed(METER_IEEE)
    assert dev.manufacturer == "sep"
    assert dev.model == "SEP-ESME-1"
    assert dev.node_desc.is_router
    ep = dev.endpoints[1]
    assert ep.profile_id == 0x0109
    assert ep.device_type == 0x0501
    assert {0x0000, 0x0003, 0x000A, 0x0702} <= set(ep.in_clusters)


async def test_ihd_reads_and_receives_reports_equal_to_metrology(han):
    air, clock, hub, meter, ihd = han
    t0 = clock.now()
    clock.advance(3 * 3600)
    await meter.poll_metrology()
    await ihd.connect()
    v = ihd.view
    # What zigpy decoded from the Read Attributes response
    assert v.summation_delivered == expected_wh(t0, t0 + 3 * 3600)
    assert v.multiplier == 1 and v.divisor == 1000 and v.unit == 0
    assert v.demand == HouseholdLoad(SEED).power_w(t0 + 3 * 3600)
    assert v.energy_kwh() * 1000 == v.summation_delivered

    # Reports: move time on; the meter reports the new summation by itself.
    seen_before = v.reports_received
    for hours in (4, 5, 6):
        clock.t = t0 + hours * 3600
        want = expected_wh(t0, t0 + hours * 3600)
        await wait_for(lambda want=want: v.summation_delivered == want)
    assert v.reports_received > seen_before


async def test_meter_keeps_serving_when_a_reply_cannot_be_delivered(han):
    air, clock, hub, meter, ihd = han
    await ihd.connect()
    # The IHD leaves the air: reports to it fail, the meter carries on.
    ihd.app.shell.radio_off()
    clock.advance(600)
    await asyncio.sleep(0.3)
    ihd.app.shell.radio_on()
    before = ihd.view.summation_delivered
    clock.advance(3600)
    await wait_for(lambda: ihd.view.summation_delivered != before)
