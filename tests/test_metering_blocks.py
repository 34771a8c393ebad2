"""Block information (SE 1.4 D.3.2.2.8): per-tier, per-block summations while a block
tariff is active, read over the virtual air and judged by tshark (which names every
CurrentTierNBlockMSummationDelivered id) against the load model split at the thresholds
by an independent interval computation."""

from __future__ import annotations

from pathlib import Path

import pytest
from required_tools import needs_tool
from test_metering_tshark import (
    AGG,
    MET,
    SEED,
    SOLAR_W,
    START,
    Han,
    malformed,
    tshark,
    tshark_time,
    wh_at,
)

from sep.meter.blocks import BlockRegisters
from sep.metrology.load import HouseholdLoad

pytestmark = needs_tool("tshark")

EVENING = START + 10 * 3600  # 18:00 UTC, no solar: the house imports
HOUR = 3600
U48 = {0x0000, 0x000C, 0x001C} | set(range(0x0700, 0x0800))


def block_split(ranges: dict[int, tuple[int, int]], thresholds: list[int]) -> dict[tuple[int, int], int]:
    """Truth: each tier's stretch [a, b) of the period's cumulative consumption cut by
    the block boundaries [0, th1), [th1, th2), ..., [thN, inf)."""
    edges = [0, *thresholds, 10**12]
    out = {}
    for tier, (a, b) in ranges.items():
        for k in range(len(edges) - 1):
            lo, hi = max(a, edges[k]), min(b, edges[k + 1])
            if hi > lo:
                out[(tier, k + 1)] = hi - lo
    return out


def reads(pcap: Path) -> list[dict[int, tuple[int, int | None]]]:
    """Metering Read Attributes Responses: {attr: (status, value)} per frame (uint48,
    enum8 and UTC values)."""
    rows = tshark(pcap, "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x01",
                  [f"{MET}.attr_id", "zbee_zcl.attr.status", "zbee_zcl.attr.uint48",
                   "zbee_zcl.attr.uint8", "zbee_zcl.attr.utc"])
    out = []
    for ids, statuses, u48, u8, utc in rows:
        it48, it8 = iter(u48.split(AGG)), iter(u8.split(AGG))
        ituc = iter(utc.split(AGG))
        rec = {}
        for attr_s, status_s in zip(ids.split(AGG), statuses.split(AGG), strict=True):
            attr, status = int(attr_s, 16), int(status_s, 16)
            value: int | None = None
            if status == 0:
                if attr in U48:
                    value = int(next(it48))
                elif attr == 0x0022:
                    value = tshark_time(next(ituc))
                else:
                    value = int(next(it8))
            rec[attr] = (status, value)
        out.append(rec)
    return out


async def read(han: Han, attrs: list[int]) -> None:
    # zigpy's Metering table has no block attributes: a plain Read Attributes by id
    await han.metering._read_attributes(attrs)


async def test_block_only_tariff_over_the_air(tmp_path):
    han = Han(tmp_path, start=EVENING)
    await han.start()
    load = HouseholdLoad(SEED, SOLAR_W)
    th = [300, 800]
    block_ids = [0x0700, 0x0701, 0x0702, 0x0703]
    period_ids = [0x000C, 0x000E, 0x001C, 0x0022]
    try:
        await han.run(HOUR)
        await read(han, [0x0700, 0x000C])  # no block tariff yet: not served
        t1 = int(han.clock.t)
        han.meter.metering.set_block_period(t1, th)
        await han.run(3 * HOUR)
        t2 = int(han.clock.t)
        await read(han, block_ids + period_ids)
        han.meter.metering.set_block_period(t2, th)  # the next block period
        await han.run(HOUR)
        t3 = int(han.clock.t)
        await read(han, block_ids + period_ids)
        han.meter.metering.set_block_period(t3, [])  # the block tariff ends
        await read(han, [0x0700, 0x000C, 0x000E])
    finally:
        await han.stop()
    assert malformed(han.pcap) == ""

    def used(a: int, b: int) -> int:
        return wh_at(load, b, EVENING)[0] - wh_at(load, a, EVENING)[0]

    r = reads(han.pcap)[-4:]
    assert r[0] == {0x0700: (0x86, None), 0x000C: (0x86, None)}  # UNSUPPORTED_ATTRIBUTE
    c1 = used(t1, t2)
    assert c1 > th[-1]  # the period reached the third block
    want = block_split({0: (0, c1)}, th)
    assert {a: r[1][a][1] for a in block_ids[:3]} == {0x0700 + k - 1: want[(0, k)]
                                                     for k in (1, 2, 3)}
    assert r[1][0x0703] == (0x86, None)  # only three blocks in this tariff
    assert r[1][0x000C] == (0, c1)  # CurrentBlockPeriodConsumptionDelivered
    assert r[1][0x000E] == (0, 3)  # CurrentBlock: Block3
    assert r[1][0x001C] == (0, 0)
    assert t1 < r[1][0x0022][1] <= t2  # LastBlockSwitchTime: when block 3 began
    # second period: the summations keep growing, the period consumption restarts
    c2 = used(t2, t3)
    want2 = block_split({0: (0, c2)}, th)
    for k in (1, 2, 3):
        assert r[2][0x0700 + k - 1] == (0, want.get((0, k), 0) + want2.get((0, k), 0))
    assert r[2][0x000C] == (0, c2) and r[2][0x001C] == (0, c1)
    assert r[2][0x000E] == (0, 1 + sum(c2 >= x for x in th))
    assert r[3] == {0x0700: (0x86, None), 0x000C: (0x86, None), 0x000E: (0x86, None)}


async def test_tou_and_block_tariff_counts_per_tier(tmp_path):
    han = Han(tmp_path, start=EVENING)
    await han.start()
    load = HouseholdLoad(SEED, SOLAR_W)
    th = [400, 1000]
    ids = [0x0700, 0x0710, 0x0711, 0x0712, 0x0720, 0x0721, 0x0722, 0x0723, 0x0730, 0x0000]
    try:
        t0 = int(han.clock.t)
        han.meter.metering.set_active_tier(1)
        han.meter.metering.set_block_period(t0, th, tiered=True)
        await han.run(90 * 60)
        t1 = int(han.clock.t)
        han.meter.metering.set_active_tier(2)
        await han.run(2 * HOUR)
        t2 = int(han.clock.t)
        await read(han, ids)
    finally:
        await han.stop()
    assert malformed(han.pcap) == ""
    c1 = wh_at(load, t1, EVENING)[0] - wh_at(load, t0, EVENING)[0]
    c2 = wh_at(load, t2, EVENING)[0] - wh_at(load, t0, EVENING)[0]
    want = block_split({1: (0, c1), 2: (c1, c2)}, th)
    r = reads(han.pcap)[-1]
    assert r[0x0700] == (0x86, None)  # a tiered tariff has no "no tier" blocks
    for tier in (1, 2):
        for block in (1, 2, 3):
            assert r[0x0700 + 16 * tier + block - 1] == (0, want.get((tier, block), 0))
    assert r[0x0723] == (0x86, None) and r[0x0730] == (0, 0)  # tier 3 exists, took nothing
    assert sum(want.values()) == c2 and len({k[0] for k in want}) == 2


def test_energy_crossing_a_threshold_is_split_at_it():
    b = BlockRegisters()
    b.start_period(1000, [100, 250])
    b.add(1010, 90, 1)
    b.add(1020, 200, 1)  # 10 to block 1, 150 to block 2, 40 to block 3
    assert [b.summation(0, k) for k in (1, 2, 3)] == [100, 150, 40]
    assert b.current_block() == 3 and b.period_delivered == 290
    b.add(999, 50, 1)  # before the period began: no block
    assert b.period_delivered == 290
    for bad in ([0, 10], [10, 10], [20, 10], list(range(1, 17))):
        with pytest.raises(ValueError):
            b.start_period(2000, bad)
