"""The Calendar cluster across the virtual air, with tshark's SE dissector as the judge.

A raw HAN client asks the meter every Get*; the calendar is rebuilt from tshark's decode
alone (seasons → week profiles → day profiles, special days) and must give, for every
day of the year, the switches the tariff file says (tests/tou_oracle.py, from the TOML).
The meter's TOU (price tier, register tier) follows that calendar.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import zigpy.types as t
from han_node import Node, default_status, discovered, discovered_attributes
from tou_oracle import Schedule
from tshark_se import decode, malformed, needs_tshark, tshark_time
from waiting import until

from radios.air import VirtualAir
from radios.pcap import PcapWriter
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.meter.tariff import parse_tariff

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "hubsim" / "data" / "demo_tariff.toml"
CAL = 0x0707
EVENTS = 0x0709
C = "zbee_zcl_se.calendar."
NOT_USED = t.uint32_t(0xFFFFFFFF).serialize()
NOT_FOUND, MALFORMED, UNSUP_CLUSTER_COMMAND, INVALID_FIELD = 0x8B, 0x80, 0x81, 0x85


def busy_tariff() -> str:
    """The demo tariff with 14 seasons, a day of 25 switches and 15 special days, so that
    day profiles, seasons and special days each need two commands."""
    text = DEMO.read_text().split("# A summer season")[0]
    many = ", ".join(f'"{h:02d}:{m:02d}" = {1 + (h + m // 30) % 3}'
                     for h in range(0, 24) for m in (0, 30) if (h, m) <= (12, 0))
    text += f'\n[[seasons]]\nname = "Busy"\nstart = "01-02"\n[[seasons.schedule]]\n' \
            f'switches = {{ {many} }}\n'
    for month in range(2, 15):  # 13 more seasons, one a month (and one more in December)
        m, d = (month, 1) if month <= 12 else (12, 15 + month - 13)
        text += (f'\n[[seasons]]\nstart = "{m:02d}-{d:02d}"\n[[seasons.schedule]]\n'
                 f'switches = {{ "00:00" = {1 + month % 3}, "{6 + month % 5:02d}:00" = 2 }}\n')
    for day in range(1, 16):
        text += (f'\n[[special_days]]\ndate = 2026-{6 + day // 8:02d}-{1 + day:02d}\n'
                 f'switches = {{ "00:00" = {1 + day % 3} }}\n')
    return text


def calendar_from_capture(pcap: Path, client: int, tsns: list[int]) -> dict:
    """The calendar as tshark reads the meter's answers to the client's requests: the
    frames with a request's TSN between it and the client's next frame (the meter also
    pushes calendars to the client, with TSNs of its own that may equal a request's)."""
    sent = [(int(r["frame.number"][0]), int(r["zbee_zcl.cmd.tsn"][0])) for r in decode(
        pcap, ["frame.number", "zbee_zcl.cmd.tsn"], f"zbee_nwk.src == 0x{client:04x} && zbee_zcl")]
    windows = {}
    for (frame, tsn), (after, _) in zip(sent, [*sent[1:], (1 << 62, 0)], strict=True):
        if tsn in tsns:
            windows[tsn] = (frame, after)
    where = (f"zbee_aps.cluster == 0x0707 && zbee_nwk.dst == 0x{client:04x} && "
             f"zbee_zcl.cmd.tsn in {{{','.join(str(n) for n in tsns)}}}")
    rows = decode(pcap, ["frame.number", "zbee_zcl.cmd.tsn", C + "cmd.srv_tx.id", C + "issuer_calendar_id", C + "name",
                         C + "time_reference", C + "number_of_seasons",
                         C + "number_of_week_profiles", C + "number_of_day_profiles",
                         C + "day_id", C + "schedule_entry.start_time",
                         C + "schedule_entry.price_tier", C + "command_index",
                         C + "total_number_of_commands", C + "total_number_of_schedule_entries",
                         C + "week_id", *[C + f"day_id_ref_{d}" for d in (
                             "monday", "tuesday", "wednesday", "thursday", "friday",
                             "saturday", "sunday")],
                         C + "date.year", C + "date.month", C + "date.month_day",
                         C + "date.week_day", C + "week_id_ref", C + "day_id_ref",
                         C + "total_number_of_special_days"], where)
    cal: dict = {"days": {}, "weeks": {}, "seasons": [], "special": [], "frames": {}}
    for r in rows:
        first, last = windows[int(r["zbee_zcl.cmd.tsn"][0])]
        if not first < int(r["frame.number"][0]) < last:
            continue  # a push, not the answer
        cmd = int(r[C + "cmd.srv_tx.id"][0], 16)
        cal["frames"].setdefault(cmd, []).append(r)
        if cmd == 0x00:
            cal.update(id=int(r[C + "issuer_calendar_id"][0]), name=r[C + "name"][0],
                       seasons_n=int(r[C + "number_of_seasons"][0]),
                       weeks_n=int(r[C + "number_of_week_profiles"][0]),
                       days_n=int(r[C + "number_of_day_profiles"][0]),
                       reference=int(r[C + "time_reference"][0], 16))
        elif cmd == 0x01:
            day = int(r[C + "day_id"][0])
            entries = list(zip((int(x) for x in r[C + "schedule_entry.start_time"]),
                               (int(x) for x in r[C + "schedule_entry.price_tier"]), strict=True))
            cal["days"].setdefault(day, {})[int(r[C + "command_index"][0])] = entries
        elif cmd == 0x02:
            cal["weeks"][int(r[C + "week_id"][0])] = [
                int(r[C + f"day_id_ref_{d}"][0]) for d in (
                    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                    "sunday")]
        elif cmd == 0x03:
            for y, m, d, w, ref in zip(r[C + "date.year"], r[C + "date.month"],
                                       r[C + "date.month_day"], r[C + "date.week_day"],
                                       r[C + "week_id_ref"], strict=True):
                assert (y, w) == ("2155", "255")  # year and weekday "any" (0xFF)
                cal["seasons"].append((int(m), int(d), int(ref)))
        elif cmd == 0x04:
            for y, m, d, ref in zip(r[C + "date.year"], r[C + "date.month"],
                                    r[C + "date.month_day"], r[C + "day_id_ref"], strict=True):
                cal["special"].append((None if y == "2155" else int(y), int(m), int(d),
                                       int(ref)))
    cal["days"] = {d: [e for i in sorted(parts) for e in parts[i]]
                   for d, parts in cal["days"].items()}
    return cal


def profile(cal: dict, date: dt.date) -> list[tuple[int, int]]:
    """A date's schedule, looked up the way a calendar client does."""
    for year, month, day, ref in cal["special"]:
        if (month, day) == (date.month, date.day) and year in (None, date.year):
            return cal["days"][ref]
    seasons = sorted(cal["seasons"])
    current = [s for s in seasons if (s[0], s[1]) <= (date.month, date.day)] or seasons
    return cal["days"][cal["weeks"][current[-1][2]][date.weekday()]]


async def read_calendar(node: Node, meter: MeterApp) -> list[int]:
    """Every Get* for the calendar in force; returns the TSNs asked with."""
    first = node.n + 1
    got = await node.ask(meter.nwk, CAL, 0x00, t.uint32_t(0).serialize() + NOT_USED
                         + bytes([0, 0xFF]) + NOT_USED)
    ids = got[0][3:7] + got[0][11:15]  # provider id, issuer calendar id
    await node.ask(meter.nwk, CAL, 0x01, ids + bytes([0, 0]))  # every day profile
    await node.ask(meter.nwk, CAL, 0x02, ids + bytes([1, 0]))  # every week profile
    await node.ask(meter.nwk, CAL, 0x03, ids)
    await node.ask(meter.nwk, CAL, 0x04, t.uint32_t(0).serialize() + bytes([0, 0xFF]) + ids)
    return list(range(first, node.n + 1))


@needs_tshark
async def test_the_published_calendar_is_the_tariff_files(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "cal.pcap"
    writer = PcapWriter(pcap).capture(air)  # and its keys
    clock = ManualClock()  # 2026-01-01T00:00Z: New Year's Day, a special day
    tc = await Node.trust_centre(air, clusters=())
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:ca:01", tick_seconds=0.02,
                                   tariff=DEMO), clock=clock, air=air)
    await meter.start()
    node = await Node.create(air, meter, clusters=(CAL, EVENTS, 0x0700))
    client = node.nwk
    busy = busy_tariff()
    try:
        await until(lambda: meter.han.calendar.active(clock.now()) is not None)
        demo_tsns = await read_calendar(node, meter)
        # bad requests
        ids = t.uint32_t(0xABCD).serialize() + t.uint32_t(12345).serialize()
        assert default_status(await node.ask(meter.nwk, CAL, 0x01, ids + b"\x01\x01")) \
            == NOT_FOUND  # no such calendar
        assert default_status(await node.ask(meter.nwk, CAL, 0x00, t.uint32_t(0).serialize()
                                             + NOT_USED + bytes([0, 0x07]) + NOT_USED)) \
            == INVALID_FIELD  # calendar type 7 is reserved
        assert default_status(await node.ask(meter.nwk, CAL, 0x03, b"\xcd\xab\x00")) \
            == MALFORMED
        truncated = node.n  # the TSN sent short on purpose
        assert default_status(await node.ask(meter.nwk, CAL, 0x05)) == NOT_FOUND
        assert default_status(await node.ask(meter.nwk, CAL, 0x06)) == UNSUP_CLUSTER_COMMAND
        # discovery lists exactly what is implemented (ZCL 2.5.19/2.5.21/2.5.13)
        assert discovered(await node.ask(meter.nwk, CAL, 0x11, b"\x00\x10", general=True)) \
            == (True, [0, 1, 2, 3, 4, 5])
        assert discovered(await node.ask(meter.nwk, CAL, 0x13, b"\x00\x10", general=True)) \
            == (True, [0, 1, 2, 3, 4, 5])
        assert discovered_attributes(await node.ask(meter.nwk, CAL, 0x0C, b"\x00\x00\x10",
                                                    general=True)) == (True, [])
        assert discovered(await node.ask(meter.nwk, EVENTS, 0x11, b"\x00\x10", general=True)) \
            == (True, [0, 1])
        assert discovered(await node.ask(meter.nwk, EVENTS, 0x13, b"\x00\x10", general=True)) \
            == (True, [0, 1, 2])
        # the meter follows its calendar: New Year's Day is night rate all day
        for hours, tier in ((8, 1), (24, 2), (9, 3)):  # 1 Jan 08:00, 2 Jan 08:00, 17:00
            clock.advance(hours * 3600)
            assert meter.price.current_price(clock.now()).tier == tier
            await until(lambda tier=tier: meter.metering.registers.active_tier == tier)
        # a new tariff at run time: a new calendar, and the multi-command answers
        meter.set_tariff(parse_tariff(busy.replace("issuer_tariff_id = 1001",
                                                   "issuer_tariff_id = 1002")))
        await until(lambda: meter.han.calendar.active(clock.now()).name == "Demo TOU + b"
                    and len(meter.han.calendar.active(clock.now()).seasons) > 13)
        busy_tsns = await read_calendar(node, meter)
    finally:
        await meter.stop()
        await node.stop()
        await tc.stop()
        writer.close()

    assert malformed(pcap, but=f"zbee_nwk.src == 0x{client:04x} && "
                               f"zbee_zcl.cmd.tsn == {truncated}") == ""
    for text, tsns, multi in ((DEMO.read_text(), demo_tsns, False), (busy, busy_tsns, True)):
        cal = calendar_from_capture(pcap, client, tsns)
        oracle = Schedule.from_text(text)
        assert cal["reference"] == 0x02  # Europe/London: local time
        assert len(cal["days"]) == cal["days_n"] and len(cal["weeks"]) == cal["weeks_n"]
        assert len(cal["seasons"]) == cal["seasons_n"]
        first = dt.date(2026, 1, 1)
        for n in range(365):
            date = first + dt.timedelta(days=n)
            assert profile(cal, date) == oracle.profile(date), date
        # special days are sent from the requested start on (all, since 0 is "now")
        doc_specials = len(oracle.specials)
        assert len(cal["special"]) == doc_specials
        if multi:  # 25 entries, 15 seasons, 15 special days: two commands each
            for cmd in (0x01, 0x03, 0x04):
                totals = {r[C + "total_number_of_commands"][0] for r in cal["frames"][cmd]}
                assert "2" in totals, (cmd, totals)
            big = [r for r in cal["frames"][0x01]
                   if r[C + "total_number_of_schedule_entries"] == ["25"]]
            assert [r[C + "command_index"] for r in big] == [["0"], ["1"]]
    # tshark's view of the PublishCalendar start time is the compile time (the start)
    rows = decode(pcap, [C + "start_time"], f"{C}cmd.srv_tx.id == 0x00")
    assert rows[0][C + "start_time"] == [tshark_time(1_767_225_600)]
