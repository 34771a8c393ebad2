"""The meter's event log over the HAN (Events cluster), judged by tshark and by `sep events`.

What tshark decodes from the PublishEventLog frames must be what ``sep events --json``
prints (the real command line on the same data directory): the same events, newest first,
with the same times, each carrying its sequence number and kind. Clearing is for the
trust centre only, logged, and never breaks the hash chain (``sep check`` stays clean).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import zigpy.types as t
from han_node import Node, default_status
from tshark_se import decode, malformed, needs_tshark, text_of, tshark_time
from waiting import until

from radios.air import VirtualAir
from radios.pcap import PcapWriter
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.meter.supply import SupplyStatus

BIN = Path(sys.executable).parent
EVENTS = 0x0709
E = "zbee_zcl_se.events."
ZCL = 946_684_800
NOT_AUTHORIZED, MALFORMED, INVALID_FIELD, NOT_FOUND = 0x7E, 0x80, 0x85, 0x8B
#: SE 1.4 event ids (the Device Management event configuration attribute ids, as
#: Wireshark names them) of what this test makes the meter log
SE_IDS = {"POWER_UP": 0x027D,  # "Power Loss" (logged when power returns)
          ("SUPPLY_CHANGE", "OFF"): 0x02E6, ("SUPPLY_CHANGE", "ON"): 0x02E4,  # Supply Off/On
          ("SUPPLY_CHANGE", "ARMED"): 0x02E5, "CALENDAR_IN_FORCE": 0x05C1,
          "EVENT_LOG_CLEARED": 0x0604, "UNAUTHORISED_HAN_ACTION": 0x028F}


def se_id(e: dict) -> int:
    if e["kind"] == "SUPPLY_CHANGE":
        return SE_IDS[("SUPPLY_CHANGE", e["details"]["to"])]
    return SE_IDS[e["kind"]]


def sep_events(data: Path) -> list[dict]:
    out = subprocess.run([str(BIN / "sep"), "events", "--data", str(data), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def get_log(log_id: int = 0, *, full: bool = True, event_id: int = 0, start: int = 0,
            end: int = 0xFFFFFFFF, number: int = 0, offset: int = 0) -> bytes:
    """GetEventLog, written field by field (SE 1.4 D.11.2.3.1)."""
    return (bytes([(0x10 if full else 0) | log_id]) + t.uint16_t(event_id).serialize()
            + t.uint32_t(start).serialize() + t.uint32_t(end).serialize() + bytes([number])
            + t.uint16_t(offset).serialize())


def read(pcap: Path, dst: int, tsn: int) -> list[tuple[int, int, str, str]]:
    """(log id, event id, time, data) of the events tshark reads in one answer."""
    rows = decode(pcap, [E + "publish_event_log.event_id", E + "publish_event_log.log_id",
                         E + "publish_event_log.event_time", E + "publish_event_log.event_data",
                         E + "publish_event_log.command_index",
                         E + "publish_event_log.total_commands"],
                  f"{E}cmd.srv_tx.id == 0x01 && zbee_nwk.dst == 0x{dst:04x} && "
                  f"zbee_zcl.cmd.tsn == {tsn}")
    rows.sort(key=lambda r: int(r[E + "publish_event_log.command_index"][0]))
    assert [int(r[E + "publish_event_log.command_index"][0]) for r in rows] == \
        list(range(len(rows)))
    assert {r[E + "publish_event_log.total_commands"][0] for r in rows} == {str(len(rows))}
    out = []
    for r in rows:
        ids = r[E + "publish_event_log.event_id"][1:]  # the first is the total matching
        out += list(zip((int(x, 16) for x in r[E + "publish_event_log.log_id"]),
                        (int(x, 16) for x in ids), r[E + "publish_event_log.event_time"],
                        (d if d == "<MISSING>" else text_of(d)
                         for d in r[E + "publish_event_log.event_data"]), strict=True))
    return out


def expected(events: list[dict], *, logs: dict[int, int]) -> list[tuple[int, int, str, str]]:
    return [(logs[se_id(e)], se_id(e), tshark_time(int(e["time"])),
             f"{e['seq']}:{e['kind']}") for e in reversed(events)]


@needs_tshark
async def test_the_event_log_over_the_han_is_sep_events(tmp_path):
    data = tmp_path / "meter"
    air = VirtualAir()
    pcap = tmp_path / "events.pcap"
    writer = PcapWriter(pcap).capture(air)  # and its keys
    clock = ManualClock()
    tc = await Node.trust_centre(air, clusters=(EVENTS,))
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:e0:01", tick_seconds=0.02,
                                   data_dir=data), clock=clock, air=air)
    await meter.start()
    ihd = await Node.create(air, meter, clusters=(EVENTS,))
    IHD = ihd.nwk  # noqa: N806
    supply = meter.metering.supply
    logs = {0x027D: 3, 0x02E6: 3, 0x02E4: 3, 0x02E5: 3, 0x05C1: 3, 0x0604: 4, 0x028F: 4}
    tsn = {}
    try:
        await until(lambda: meter.store.events())  # POWER_UP
        tsn["ihd"] = (await ihd.ask(meter.nwk, EVENTS, 0x00, get_log()), ihd.n)[1]
        for n in range(12):  # enough events for several PublishEventLog commands
            clock.advance(60)
            supply.set_status(SupplyStatus.OFF if n % 2 == 0 else SupplyStatus.ON, "test")
        meter.han.record("CALENDAR_IN_FORCE", {"issuer_calendar_id": 7, "name": "x"})
        meter.flush_pushes()
        # the IHD, a client since its GetEventLog, is pushed every event configured for the
        # HAN (the supply switches; not the calendar)
        await until(lambda: len(ihd.frames()) >= 1 + 12)
        before_clear = sep_events(data)
        await tc.ask(meter.nwk, EVENTS, 0x00, get_log())
        tsn["all"] = tc.n
        await tc.ask(meter.nwk, EVENTS, 0x00, get_log(3, event_id=0x02E6))
        tsn["off"] = tc.n
        t4 = int(before_clear[4]["time"]) - ZCL
        t8 = int(before_clear[8]["time"]) - ZCL
        await tc.ask(meter.nwk, EVENTS, 0x00, get_log(start=t4, end=t8))
        tsn["range"] = tc.n
        await tc.ask(meter.nwk, EVENTS, 0x00, get_log(number=3, offset=2, full=False))
        tsn["page"] = tc.n
        # bad requests
        assert default_status(await tc.ask(meter.nwk, EVENTS, 0x00, get_log()[:-1])) \
            == MALFORMED
        malformed_tsn = tc.n
        assert default_status(await tc.ask(meter.nwk, EVENTS, 0x00, get_log(9))) \
            == INVALID_FIELD
        assert default_status(await tc.ask(meter.nwk, EVENTS, 0x00, bytes([0x25])
                                           + get_log()[1:])) == INVALID_FIELD  # control 2
        assert default_status(await tc.ask(meter.nwk, EVENTS, 0x00, get_log(event_id=0x0800))) \
            == NOT_FOUND
        # clearing: refused to the IHD (and logged, once a minute at most) ...
        assert default_status(await ihd.ask(meter.nwk, EVENTS, 0x01, b"\x03")) == NOT_AUTHORIZED
        assert default_status(await ihd.ask(meter.nwk, EVENTS, 0x01, b"\x03")) == NOT_AUTHORIZED
        # ... done for the trust centre: the general log, then every log
        assert (await tc.ask(meter.nwk, EVENTS, 0x01, b"\x03"))[0][2:] == b"\x02\x08"
        after_general = sep_events(data)
        await tc.ask(meter.nwk, EVENTS, 0x00, get_log())
        tsn["after_general"] = tc.n
        assert default_status(await tc.ask(meter.nwk, EVENTS, 0x01, b"\x0b")) == INVALID_FIELD
        assert (await tc.ask(meter.nwk, EVENTS, 0x01, b"\x00"))[0][2:] == b"\x02\x01"
        await tc.ask(meter.nwk, EVENTS, 0x00, get_log())
        tsn["after_all"] = tc.n
        final = sep_events(data)
    finally:
        await meter.stop()
        await ihd.stop()
        await tc.stop()
        writer.close()

    assert malformed(pcap, but=f"zbee_nwk.src == 0x0000 && zbee_zcl.cmd.tsn == {malformed_tsn}"
                     ) == ""
    # the whole log, as tshark reads it, is `sep events --json` (newest first)
    assert read(pcap, 0x0000, tsn["all"]) == expected(before_clear, logs=logs)
    assert len(before_clear) == 14
    # filters: one event id; a time range [start, end); three events after skipping two,
    # without their data (minimal information)
    offs = [e for e in before_clear if e["kind"] == "SUPPLY_CHANGE" and e["details"]["to"] == "OFF"]
    assert read(pcap, 0x0000, tsn["off"]) == expected(offs, logs=logs)
    in_range = [e for e in before_clear if t4 + ZCL <= int(e["time"]) < t8 + ZCL]
    assert read(pcap, 0x0000, tsn["range"]) == expected(in_range, logs=logs)
    page = expected(before_clear, logs=logs)[2:5]
    assert read(pcap, 0x0000, tsn["page"]) == [(a, b, c, "<MISSING>") for a, b, c, _ in page]
    # the total number of matching events is in every PublishEventLog
    rows = decode(pcap, [E + "publish_event_log.event_id"],
                  f"{E}cmd.srv_tx.id == 0x01 && zbee_zcl.cmd.tsn == {tsn['page']}")
    assert rows[0][E + "publish_event_log.event_id"][0] == str(len(before_clear))
    # the refused clear is logged (once), the general log cleared over the HAN only
    kinds = [e["kind"] for e in after_general]
    assert kinds.count("UNAUTHORISED_HAN_ACTION") == 1
    assert kinds[-1] == "EVENT_LOG_CLEARED" and after_general[-1]["details"]["log_id"] == 3
    marker = after_general[-1]["seq"]
    seen = [e for e in after_general if logs[se_id(e)] != 3 or e["seq"] >= marker]
    assert read(pcap, 0x0000, tsn["after_general"]) == expected(seen, logs=logs)
    # after clearing every log only the clear itself is seen; the store keeps everything
    assert [d for *_, d in read(pcap, 0x0000, tsn["after_all"])] == [
        f"{final[-1]['seq']}:EVENT_LOG_CLEARED"]
    assert [e["seq"] for e in final] == list(range(1, len(final) + 1))
    check = subprocess.run([str(BIN / "sep"), "check", "--data", str(data)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    # PublishEvent to the IHD for each supply switch, with its id, time and data
    pushed = decode(pcap, [E + "publish_event.log_id", E + "publish_event.event_id",
                           E + "publish_event.event_time", E + "publish_event.event_control",
                           E + "publish_event.event_data"],
                    f"{E}cmd.srv_tx.id == 0x00 && zbee_nwk.dst == 0x{IHD:04x}")
    switches = [e for e in before_clear if e["kind"] == "SUPPLY_CHANGE"]
    assert [(r[E + "publish_event.event_id"][0], r[E + "publish_event.event_time"][0],
             text_of(r[E + "publish_event.event_data"][0]), r[E + "publish_event.log_id"][0],
             r[E + "publish_event.event_control"][0]) for r in pushed[:12]] == [
        (f"0x{se_id(e):04x}", tshark_time(int(e["time"])), f"{e['seq']}:SUPPLY_CHANGE", "0x03",
         "0x01") for e in switches]
