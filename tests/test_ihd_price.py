"""What the in-home display shows of prices, checked against the tariff files' own numbers
and the household load model: the supplier (hub ESI) → meter → IHD path end to end."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from waiting import until

from hubsim.hub import CommsHub
from hubsim.ihd import InHomeDisplay
from radios.air import VirtualAir
from radios.sniffer import Sniffer
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.meter.tariff import load_tariff
from sep.metrology.load import HouseholdLoad

ROOT = Path(__file__).resolve().parent.parent
ECONOMY7 = ROOT / "examples" / "tariff.toml"
DEMO = ROOT / "hubsim" / "data" / "demo_tariff.toml"
NOON = 1_767_614_400  # Monday 2026-01-05 12:00 UTC (GMT: Europe/London = UTC)
SEED = 5


@pytest.fixture
async def han_with(request):
    air = VirtualAir()
    clock = ManualClock()
    clock.t = NOON
    hub = CommsHub(air=air, clock=clock.now, tariff=load_tariff(request.param))
    await hub.start()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:1c:01", seed=SEED, tick_seconds=0.02,
                                   supplier_search_interval=0.2), clock=clock, air=air)
    await meter.start()
    await until(lambda: meter.supplier.esi is not None)
    ihd = InHomeDisplay(air=air, clock=clock.now, report_min=1, report_max=60)
    await ihd.start()
    await ihd.connect()
    try:
        yield clock, hub, meter, ihd
    finally:
        await ihd.stop()
        await meter.stop()
        await hub.stop()


async def step(clock: ManualClock, meter: MeterApp, seconds: int, every: int = 60) -> None:
    for _ in range(seconds // every):
        clock.advance(every)
        await meter.poll_metrology()
        await asyncio.sleep(0.03)  # reports and pushes cross the air


@pytest.mark.parametrize("han_with", [DEMO], indirect=True)
async def test_price_now_next_tariff_and_the_switch_to_peak(han_with):
    clock, hub, meter, ihd = han_with
    prices = ihd.view.prices
    await until(lambda: prices.price(clock.now()) is not None and prices.tier_labels
                and prices.next_price(clock.now()) is not None)
    # demo_tariff.toml: Day (tier 2) 0.2700 from 07:00, Peak (tier 3) 0.4200 from 16:00
    now = prices.price(clock.now())
    assert (now.label, now.tier, now.rate) == ("Day", 2, Decimal("0.2700"))
    nxt = prices.next_price(clock.now())
    assert (nxt.label, nxt.tier, nxt.rate, nxt.start) == ("Peak", 3, Decimal("0.4200"),
                                                          NOON + 4 * 3600)
    assert prices.tariff_label == "Demo TOU + block" and prices.tariff_id == 1001
    assert prices.standing_charge == Decimal("0.5312") and prices.tiers_in_use == 3
    assert prices.tier_labels == {1: "Night", 2: "Day", 3: "Peak"}
    assert prices.block_thresholds == [6000]  # 6 kWh, in the meter's register units (Wh)
    # with the clock standing still, nobody asks anything again: the HAN is quiet
    price_frames: list[int] = []
    Sniffer(meter.controller.air).add_tap(lambda f, _t: price_frames.append(f.cluster_id)
                                          if f.cluster_id in (0x0700, 0x0703) else None)
    await asyncio.sleep(1.5)
    assert price_frames == []
    await step(clock, meter, 4 * 3600 + 60, every=600)
    await until(lambda: prices.price(clock.now()).label == "Peak")
    assert prices.price(clock.now()).rate == Decimal("0.4200")
    assert meter.metering.registers.active_tier == 3  # the meter's registers follow too
    # block status: the consumption since the meter started (at noon, within the day's
    # block period) against the 6 kWh threshold, from the load model
    await ihd.read_blocks()
    used_wh = HouseholdLoad(SEED).energy_j(NOON, meter.last_reading.timestamp)[0] // 3600
    assert prices.current_block == (2 if used_wh > 6000 else 1)
    assert prices.block_period_consumption == used_wh


@pytest.mark.parametrize("han_with", [ECONOMY7], indirect=True)
async def test_cost_today_is_standing_charge_plus_energy_at_the_rate(han_with):
    clock, hub, meter, ihd = han_with
    prices = ihd.view.prices
    await until(lambda: prices.standing_charge is not None and prices.price(clock.now()))
    start = ihd.view.summation_delivered
    await step(clock, meter, 2 * 3600)  # 12:00-14:00: all at the Day rate
    end_time = meter.last_reading.timestamp
    await until(lambda: ihd.view.summation_delivered == meter.last_reading.delivered_wh)
    # the register the IHD shows is the load model's, independently recomputed
    assert ihd.view.summation_delivered - start == (
        HouseholdLoad(SEED).energy_j(NOON, end_time)[0] // 3600
        - HouseholdLoad(SEED).energy_j(NOON, NOON)[0] // 3600)
    # examples/tariff.toml: standing charge 0.5312 a day, Day rate 0.3127 GBP/kWh
    kwh = Decimal(ihd.view.summation_delivered - start) / 1000
    assert prices.cost_today == Decimal("0.5312") + kwh * Decimal("0.3127")
    assert prices.money_text(prices.cost_today, 2) == \
        f"£{(Decimal('0.5312') + kwh * Decimal('0.3127')).quantize(Decimal('0.01'))}"
