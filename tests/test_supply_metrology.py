"""The relay and metrology: energy drawn up to the moment the relay opens is booked."""

from __future__ import annotations

from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.meter.supply import SupplyStatus
from sep.metrology.load import HouseholdLoad


async def test_energy_up_to_a_disconnect_between_polls_is_kept():
    clock = ManualClock()
    t0 = clock.t
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:aa:09", seed=3, tick_seconds=3600),
                     clock=clock, air=VirtualAir())
    await meter.start()
    try:
        start_wh = meter.last_reading.delivered_wh
        clock.advance(1000)  # no metrology poll between here and the switch
        meter.metering.supply.remote_change(meter.metering.supply.provider_id, 1, 0,
                                            int(SupplyStatus.OFF), clock.now())
        clock.advance(5000)  # the relay is open: nothing more may accrue
        reading = await meter.poll_metrology()
    finally:
        await meter.stop()
    drawn, _ = HouseholdLoad(3).energy_j(t0, t0 + 1000)  # the load model, independently
    assert drawn > 0
    assert reading.delivered_wh - start_wh == drawn // 3600
    assert reading.demand_w == 0
