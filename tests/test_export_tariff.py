"""The export (received) tariff on the meter's own Price server and what it does to the
Metering registers, over the air (SE 1.4: received tariff type 1; Metering received tier
and block registers, D.3.2.2.1 and D.3.2.2.9; the Billing set's received half).

Rooftop solar exports at midday; the tariff file's [export] table has two tiers (12:00
switches to the second) and a daily block threshold of 1 kWh. The truth: the household
load model's exported Wh per 5-minute step, the tier the file's export schedule gives for
the step, split at the threshold as SE's block definition says, priced by the file's block
prices; tshark names and reads the Received attributes and PublishBlockPeriod's tariff type.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from han_tools import Han
from tshark_tools import commands, malformed, need_tshark
from zigpy.zcl import foundation

from sep.metrology.load import HouseholdLoad
from sep.zcl.price import Price as SePrice

PRI = "zbee_zcl_se.price"
SEED, SOLAR = 5, 4000
START = int(dt.datetime(2026, 6, 1, 10, tzinfo=dt.UTC).timestamp())
DAY0 = int(dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp())
STEP = 300
THRESHOLD = 1000  # Wh
PRICES = {(1, 1): Decimal("0.0500"), (1, 2): Decimal("0.0400"),
          (2, 1): Decimal("0.1500"), (2, 2): Decimal("0.1200")}
TARIFF = """
provider_id = 0x0000ABCD
issuer_tariff_id = 61
label = "Import"
timezone = "UTC"
standing_charge = "0.4000"
[[tiers]]
tier = 1
label = "Std"
rate = "0.2500"
[billing_period]
start = 2026-01-01T00:00:00Z
duration = 1
timebase = "months"
[export]
issuer_tariff_id = 62
label = "Solar export"
[[export.tiers]]
tier = 1
label = "Export"
rate = "0.0500"
[[export.tiers]]
tier = 2
label = "Export pk"
rate = "0.1500"
[[export.schedule]]
switches = { "00:00" = 1, "12:00" = 2 }
[export.blocks]
thresholds_kwh = [1]
period = { start = 2026-01-01T00:00:00Z, duration = 1, timebase = "days" }
[export.blocks.prices]
1 = ["0.0500", "0.0400"]
2 = ["0.1500", "0.1200"]
"""


def export_tier(t: int) -> int:
    return 2 if dt.datetime.fromtimestamp(t, dt.UTC).hour >= 12 else 1


def truth(end: int) -> tuple[dict[tuple[int, int], int], Decimal, int]:
    """Received Wh per (export tier, block), their value, and the day's received Wh."""
    load = HouseholdLoad(SEED, SOLAR)
    joules = 0
    prev = 0
    blocks: dict[tuple[int, int], int] = {}
    money = Decimal(0)
    day = 0
    for e in range(START + STEP, end + 1, STEP):
        joules += load.energy_j(e - STEP, e)[1]
        wh, prev = joules // 3600 - prev, joules // 3600
        tier = export_tier(e - STEP)
        while wh:
            block = 1 if day < THRESHOLD else 2
            take = min(wh, THRESHOLD - day) if block == 1 else wh
            blocks[(tier, block)] = blocks.get((tier, block), 0) + take
            money += take * PRICES[(tier, block)] / 1000
            day += take
            wh -= take
    return blocks, money, day


async def test_export_tariff_registers_blocks_and_credit(tmp_path):
    need_tshark()
    tariff = tmp_path / "t.toml"
    tariff.write_text(TARIFF)
    han = Han(tmp_path, start=START, seed=SEED, solar_peak_w=SOLAR, tariff=tariff)
    await han.start()
    endpoint = han.device.endpoints[1]
    price = endpoint.add_input_cluster(SePrice.cluster_id, SePrice(endpoint, is_server=True))
    try:
        await han.step(4 * 3600)  # 10:00 -> 14:00
        end = int(han.clock.t)
        rx = await han.read([0x0021, 0x001D, 0x001E, 0x0910, 0x0911, 0x0920, 0x0921,
                             0x0A10, 0x0A11, 0x0A12, 0x0A13, 0x0A14])
        attrs, _ = await price.read_attributes([0x8000, 0x8001, 0x8100, 0x8610, 0x8611, 0x8612,
                                                0x8410, 0x8411, 0x8420], allow_cache=False)
        period = await price.get_block_periods(0, 1, 0x01)
        info = await price.get_tariff_information(0, 0xFFFFFFFF, 1, 0x01)
        matrix = await price.get_price_matrix(62)
        unreportable = await price.configure_reporting(0x0300, 0, 600, 1)  # CommodityType
        reportable = await price.configure_reporting(0x0301, 0, 600, 1)  # StandingCharge
    finally:
        await han.stop()
    blocks, money, day = truth(end)
    assert day > THRESHOLD and blocks[(2, 2)] > 0  # the sun crossed the threshold by 14:00
    assert int(rx[0x0021]) == 2  # ActiveRegisterTierReceived after 12:00
    assert int(rx[0x001D]) == day  # CurrentBlockPeriodConsumptionReceived
    assert int(rx[0x001E]) == 2  # CurrentBlockReceived
    # CurrentTier<N>Block<M>SummationReceived at 0x0900 + 16 N + M - 1
    assert [int(rx[a]) for a in (0x0910, 0x0911, 0x0920, 0x0921)] == [
        blocks.get(k, 0) for k in ((1, 1), (1, 2), (2, 1), (2, 2))]
    credit = int((money * 10_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert int(rx[0x0A10]) == credit and int(rx[0x0A14]) == 0x40  # export credit to date
    assert int(rx[0x0A11]) == end - 946_684_800
    # the Received Price attributes, and the export tariff's answers
    assert bytes(attrs[0x8000]) == b"Export" and bytes(attrs[0x8001]) == b"Export pk"
    assert (attrs[0x8100], bytes(attrs[0x8610]), attrs[0x8611], attrs[0x8612]) == (
        THRESHOLD, b"Solar export", 2, 1)
    assert (attrs[0x8410], attrs[0x8411], attrs[0x8420]) == (500, 400, 1500)
    assert int(period.tariff_type) == 0x01 and int(period.block_period_start_time) == \
        DAY0 - 946_684_800
    assert int(info.issuer_tariff_id) == 62
    assert [(int(e.tier_block_id), int(e.price)) for e in matrix.entries] == [
        (0x10, 500), (0x11, 400), (0x20, 1500), (0x21, 1200)]
    assert list(unreportable.values()) == [foundation.Status.UNREPORTABLE_ATTRIBUTE]
    assert list(reportable.values()) == [foundation.Status.SUCCESS]
    assert malformed(han.pcap) == ""
    periods = commands(han.pcap, 0x0700, PRI, "", 0x01, ["tariff_type", "block_period.start_time"],
                       to_server=False)
    assert {int(r[0], 0) for r in periods.values()} >= {0x01}
    prices = commands(han.pcap, 0x0700, PRI, "", 0x00, ["generation_price", "generation_tier"],
                      to_server=False)
    assert {(int(a), int(b, 0)) for a, b in prices.values()} <= {(500, 1), (1500, 2)}
