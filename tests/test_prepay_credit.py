"""Credit arithmetic, end to end: the meter's account against a recomputation from first
principles — the household load model integrated here, the tariff's rates and standing
charge and the debt terms written out here — and CreditRemaining read over the air by
the hub's zigpy (which decodes the int32 by its ZCL type, not by our table)."""

from __future__ import annotations

import datetime as dt

import pytest

from hubsim.hub import CommsHub
from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.metrology.load import HouseholdLoad
from tests.waiting import until

METER_IEEE = "00:0d:6f:00:00:00:cc:01"
SEED = 5
START = 1_780_272_000  # 2026-06-01T00:00:00Z, a Monday
STEP = 300
FINE = 1000  # the account's exactness: 1/1000 of a price unit (0.0001 GBP)
TARIFF = """
provider_id = 0x0000ABCD
label = "Test E7"
timezone = "UTC"
standing_charge = "0.5312"

[[tiers]]
tier = 1
label = "Night"
rate = "0.1500"

[[tiers]]
tier = 2
label = "Day"
rate = "0.2700"

[[schedule]]
switches = { "00:00" = 1, "07:00" = 2 }

[prepayment]
mode = "prepayment"
initial_credit = "50.00"
"""
# The same tariff, written out by hand: price units (0.0001 GBP) per kWh by UTC hour.
NIGHT, DAY, STANDING = 1500, 2700, 5312
DEBT, DEBT_PER_HOUR = 20_000, 500  # £2.00 of arrears, 5p an hour


def rate_at(t: int) -> int:
    return NIGHT if dt.datetime.fromtimestamp(t, dt.UTC).hour < 7 else DAY


def expected_credit(times: list[int], debt_start: int) -> int:
    """Fine units left: the opening credit less energy (each interval at the rate in force
    when it began), the standing charge for the time gone by and the debt collected on
    every whole hour after the debt started."""
    load = HouseholdLoad(SEED)
    joules = load.energy_j(START, times[0])[0]
    credit = 500_000 * FINE
    for a, b in zip(times, times[1:], strict=False):
        before = joules // 3600  # the register counts whole Wh since the meter started
        joules += load.energy_j(a, b)[0]
        credit -= (joules // 3600 - before) * rate_at(a)  # Wh × units per kWh = fine units
    credit -= STANDING * FINE * (times[-1] - times[0]) // 86400
    hours = [h for h in range(debt_start // 3600 + 1, times[-1] // 3600 + 1)]
    collected = min(DEBT, DEBT_PER_HOUR * len(hours))
    return credit - collected * FINE


@pytest.mark.asyncio
async def test_credit_equals_a_recomputation_from_the_load_and_the_tariff(tmp_path):
    tariff = tmp_path / "tariff.toml"
    tariff.write_text(TARIFF)
    air = VirtualAir()
    clock = ManualClock(START)
    hub = CommsHub(air=air, clock=clock.now)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee=METER_IEEE, seed=SEED, tick_seconds=3600,
                                   tariff=tariff), clock=clock, air=air)
    await meter.start()
    try:
        await hub.wait_interviewed(METER_IEEE)
        await until(lambda: meter.prepayment.account.last_t == START)
        clock.advance(1800)
        await meter.poll_metrology()
        debt_start = int(clock.now())
        status = await hub.prepay.add_debt(METER_IEEE, debt_type=1, amount=DEBT,
                                           label="Arrears", per_period=DEBT_PER_HOUR)
        assert getattr(status, "name", status) == "SUCCESS"
        times = [START, START + 1800]
        for _ in range(24 * 3600 // STEP):
            clock.advance(STEP)
            await meter.poll_metrology()
            times.append(int(clock.now()))
        want = expected_credit(times, debt_start)
        assert meter.prepayment.account.credit == want
        cluster = hub.prepay.cluster(METER_IEEE)
        ok, failed = await cluster.read_attributes([0x0001, 0x0005, 0x0020], allow_cache=False)
        assert not failed
        assert ok[0x0001] == want // FINE  # CreditRemaining, rounded down
        assert ok[0x0005] == DEBT - DEBT_PER_HOUR * 24  # AccumulatedDebt
        assert ok[0x0020] == 0  # TotalCreditAdded: no top-up yet
    finally:
        await meter.stop()
        await hub.stop()
