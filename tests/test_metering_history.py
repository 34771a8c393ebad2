"""Historical consumption (SE 1.4 D.3.2.2.5): current and previous days (2..8), weeks (2..5,
Monday-based) and months (2..13), delivered and received, read over the air.

The meter's metrology here is a ramp whose register is a closed-form sum (hour h of the
run adds ``h % 97`` Wh delivered and ``h % 13`` Wh received), read once a day at midnight
UTC for 430 days; the truth for every day, week and month is recomputed from that sum and
the calendar (``datetime``), not from the meter's period code. tshark reads the values off
the air and names every attribute.
"""

from __future__ import annotations

import datetime as dt

from han_tools import Han, RampMetrology
from tshark_tools import AGG, fields, keys_options, malformed, need_tshark

from sep.zcl.metering import history_attr_id

T0 = int(dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp())
DAYS = 430


def ramp(mod: int):
    def wh_at(t: float) -> int:
        n = int(t - T0) // 3600
        whole, part = divmod(n, mod)
        return whole * (mod * (mod - 1) // 2) + part * (part - 1) // 2
    return wh_at


DELIVERED, RECEIVED = ramp(97), ramp(13)


def between(a: dt.datetime, b: dt.datetime) -> tuple[int, int]:
    ta, tb = max(int(a.timestamp()), T0), max(int(b.timestamp()), T0)
    return DELIVERED(tb) - DELIVERED(ta), RECEIVED(tb) - RECEIVED(ta)


def truth(now: int) -> dict[int, int]:
    """Attribute id -> value, from the calendar."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0)
    out: dict[int, int] = {}
    day = dt.timedelta(days=1)
    current = between(today, today + day)
    out[0x0401], out[0x0402] = (0, 0) if now == int(today.timestamp()) else current
    out[0x0403], out[0x0404] = between(today - day, today)
    for n in range(2, 9):
        a = today - n * day
        out[history_attr_id("day", n)], out[history_attr_id("day", n, received=True)] = \
            between(a, a + day)
    monday = today - dt.timedelta(days=today.weekday())
    week = dt.timedelta(days=7)
    out[0x0432], out[0x0433] = between(monday - week, monday)
    for n in range(2, 6):
        a = monday - n * week
        out[history_attr_id("week", n)], out[history_attr_id("week", n, received=True)] = \
            between(a, a + week)

    def month_start(back: int) -> dt.datetime:
        y, m = divmod(today.month - 1 - back, 12)
        return today.replace(year=today.year + y, month=m + 1, day=1)

    out[0x0442], out[0x0443] = between(month_start(1), month_start(0))
    for n in range(2, 14):
        out[history_attr_id("month", n)], out[history_attr_id("month", n, received=True)] = \
            between(month_start(n), month_start(n - 1))
    return out


async def test_days_weeks_and_months_back_over_the_air(tmp_path):
    need_tshark()
    han = Han(tmp_path, start=T0, metrology=lambda clock: RampMetrology(clock, DELIVERED,
                                                                         RECEIVED))
    await han.start()
    try:
        await han.step(DAYS * 86400, step=86400)
        now = int(han.clock.t)
        want = truth(now)
        got = await han.read(sorted(want))
    finally:
        await han.stop()
    assert {k: int(v) for k, v in got.items()} == want
    assert all(want[history_attr_id("month", n)] > 0 for n in range(2, 14))  # all 13 in range
    assert len({want[history_attr_id("month", n)] for n in range(2, 14)}) > 6  # not constant
    assert malformed(han.pcap) == ""
    rows = fields(han.pcap, "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x01",
                  ["zbee_zcl_se.met.attr_id", "zbee_zcl.attr.uint24", "zbee_zcl.attr.uint32"])
    seen: dict[int, int] = {}
    for ids, u24, u32 in rows:
        values24, values32 = iter(u24.split(AGG)), iter(u32.split(AGG))
        for attr in (int(a, 16) for a in ids.split(AGG) if a):
            if attr in want:
                month_type = 0x0440 <= attr <= 0x045B
                seen[attr] = int(next(values32 if month_type else values24))
    assert seen == want
    names = fields(han.pcap, "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x01",
                   ["_ws.col.Info"])
    assert names  # the reads crossed the air
    verbose = __import__("subprocess").run(
        ["tshark", "-r", str(han.pcap), *keys_options(han.pcap), "-V", "-Y",
         "zbee_zcl.cmd.id == 0x01"],
        capture_output=True, text=True, check=True).stdout
    for label in ("Previous Week 5 Consumption Received", "Previous Month 13 Consumption Received",
                  "Previous Day 8 Consumption Received"):
        assert label in verbose
