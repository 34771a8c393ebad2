"""The supplier's calendars: the hub publishes, the meter follows and re-publishes, the IHD
shows today's schedule; what the meter refuses, and with which status.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import zigpy.types as t
from tou_oracle import Schedule
from tshark_se import decode, malformed, needs_tshark
from waiting import until

from hubsim.hub import CommsHub
from hubsim.ihd import InHomeDisplay
from radios.air import VirtualAir
from radios.pcap import PcapWriter
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.clusters.calendar import CalendarServer
from sep.clusters.supplier_link import SupplierLink
from sep.meter.tariff import DEFAULT_TARIFF, Switch, load_tariff
from sep.zcl.frames import MalformedFrame, Request, Status, decode_header, server_frame

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "hubsim" / "data" / "demo_tariff.toml"
T0 = 1_767_225_600  # 2026-01-01T00:00Z (ManualClock's start), New Year's Day
ZCL = 946_684_800
C = "zbee_zcl_se.calendar."


def u32(v: int) -> bytes:
    return t.uint32_t(v).serialize()


@needs_tshark
async def test_the_hub_publishes_the_meter_follows_the_display_shows(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "cal.pcap"
    writer = PcapWriter(pcap).capture(air)  # and its keys
    clock = ManualClock()
    tariff = load_tariff(DEMO)
    oracle = Schedule.from_file(DEMO)
    # The supplier publishes no prices here (no tariff on the hub), so the meter's TOU is
    # its calendar; the meter has the demo tariff's three tiers and prices.
    hub = CommsHub(air=air, clock=clock.now)
    await hub.start()
    hub.services.publish_calendar(DEFAULT_TARIFF)  # the supplier's one-rate calendar
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:cb:01", tick_seconds=0.02,
                                   supplier_search_interval=0.2, tariff=DEMO),
                     clock=clock, air=air)
    await meter.start()
    ihd = InHomeDisplay(air=air, clock=clock.now)
    await ihd.start()
    try:
        # the hub's one-rate calendar ("Standard") replaces the meter's own
        await until(lambda: (c := meter.han.calendar.active(clock.now())) is not None
                    and c.name == "Standard", timeout=10)
        await until(lambda: meter.price.tariff.seasons == ())
        assert meter.price.current_price(T0 + 17 * 3600).tier == 1
        demo = hub.services.publish_calendar(tariff)  # in force now
        await until(lambda: meter.han.calendar.active(clock.now()).issuer_calendar_id
                    == demo.issuer_calendar_id)
        await until(lambda: len(meter.price.tariff.seasons) == 2)
        # the meter's schedule is now the supplier's: seasons and special days included
        followed = meter.price.tariff
        assert followed.tier_count == 3 and len(followed.special_days) == 2
        for n in range(0, 365, 2):
            date = dt.date(2026, 1, 1) + dt.timedelta(days=n)
            for minute in (30, 450, 990, 1200):
                local = dt.datetime(date.year, date.month, date.day, minute // 60, minute % 60,
                                    tzinfo=ZoneInfo("Europe/London"))
                assert followed.tier_at(local.timestamp()) == oracle.tier(date, minute), date
        await ihd.connect()
        await until(lambda: ihd.view.han.today, timeout=10)
        today = dt.date(2026, 1, 1)
        assert ihd.view.han.today == oracle.profile(today) == [(0, 1)]  # New Year: night
        assert ihd.view.han.calendar_name == "Demo TOU + b"
        # a calendar for ten minutes ahead, then withdrawn
        peak = dataclasses.replace(tariff, label="Winter peak", seasons=(), special_days=(),
                                   schedule=((Switch(0, 3),),) * 7)
        scheduled = hub.services.publish_calendar(peak, start=T0 + 600)
        await until(lambda: meter.han.calendar.find(scheduled.issuer_calendar_id) is not None)
        await until(lambda: ihd.view.han.next_calendar is not None)
        assert ihd.view.han.next_calendar[0] == scheduled.issuer_calendar_id
        hub.services.cancel_calendar(scheduled.issuer_calendar_id)
        await until(lambda: meter.han.calendar.find(scheduled.issuer_calendar_id) is None)
        await until(lambda: ihd.view.han.next_calendar is None)
        # one that takes over two minutes from now: all peak, all day
        weekend = dataclasses.replace(peak, label="All peak")
        taking = hub.services.publish_calendar(weekend, start=T0 + 120)
        await until(lambda: meter.han.calendar.find(taking.issuer_calendar_id) is not None)
        assert meter.price.current_price(clock.now()).tier == 1
        clock.advance(180)
        await until(lambda: meter.metering.registers.active_tier == 3)
        assert meter.price.current_price(clock.now()).tier == 3
        await ihd.han.refresh_if_due()
        await until(lambda: ihd.view.han.today == [(0, 3)])
        assert ihd.view.han.calendar_name == "All peak"
    finally:
        await ihd.stop()
        await meter.stop()
        await hub.stop()
        writer.close()
    assert malformed(pcap) == ""
    rows = decode(pcap, ["zbee_nwk.src", "zbee_nwk.dst", C + "cmd.srv_tx.id",
                         C + "issuer_calendar_id", C + "name"],
                  f"{C}cmd.srv_tx.id == 0x00 || {C}cmd.srv_tx.id == 0x05")
    meter_nwk, ihd_nwk = f"0x{meter.nwk:04x}", f"0x{int(ihd.app.state.node_info.nwk):04x}"

    def legs(cmd: str, calendar_id: int) -> set[tuple[str, str]]:
        return {(r["zbee_nwk.src"][0], r["zbee_nwk.dst"][0]) for r in rows
                if r[C + "cmd.srv_tx.id"] == [cmd]
                and r[C + "issuer_calendar_id"] == [str(calendar_id)]}

    for cal in (scheduled, taking):  # hub → meter, then meter → display
        assert legs("0x00", cal.issuer_calendar_id) >= {("0x0000", meter_nwk),
                                                         (meter_nwk, ihd_nwk)}
    assert legs("0x05", scheduled.issuer_calendar_id) >= {("0x0000", meter_nwk),
                                                           (meter_nwk, ihd_nwk)}
    names = {r[C + "name"][0] for r in rows if r[C + "name"]}
    assert {"Winter peak", "All peak", "Demo TOU + b"} <= names


# -- what the meter refuses from upstream (the payloads written field by field, SE 1.4 D.9) --
def publish_calendar(cal_id: int = 500, event_id: int = 900, *, provider: int = 0xABCD,
                     kind: int = 0, seasons: int = 1, weeks: int = 1, days: int = 1) -> bytes:
    return (u32(provider) + u32(event_id) + u32(cal_id) + u32(0) + bytes([kind, 0x00])
            + t.LVBytes(b"Test").serialize() + bytes([seasons, weeks, days]))


def day_profile(entries: list[tuple[int, int]], cal_id: int = 500, event_id: int = 900,
                day_id: int = 1) -> bytes:
    return (u32(0xABCD) + u32(event_id) + u32(cal_id)
            + bytes([day_id, len(entries), 0, 1, 0])
            + b"".join(t.uint16_t(m).serialize() + bytes([tier]) for m, tier in entries))


def week_profile(cal_id: int = 500, event_id: int = 900, day_id: int = 1) -> bytes:
    return u32(0xABCD) + u32(event_id) + u32(cal_id) + bytes([1] + [day_id] * 7)


def seasons(cal_id: int = 500, event_id: int = 900, year: int = 0xFF) -> bytes:
    return (u32(0xABCD) + u32(event_id) + u32(cal_id) + bytes([0, 1])
            + bytes([year, 1, 1, 0xFF, 1]))


def fresh() -> CalendarServer:
    three = dataclasses.replace(DEFAULT_TARIFF, tiers=load_tariff(DEMO).tiers,
                                schedule=((Switch(0, 1),),) * 7)
    server = CalendarServer(follow=lambda: three)
    server.tick(T0)
    server.take_outbox()
    return server


def test_a_whole_calendar_is_taken_and_bad_pieces_are_refused():
    s = fresh()
    assert s.ingest(0x01, day_profile([(0, 2)]), T0) == Status.NOT_FOUND  # not announced
    assert s.ingest(0x00, publish_calendar(provider=0x1234), T0) == Status.NOT_AUTHORIZED
    assert s.ingest(0x00, publish_calendar(kind=3), T0) == Status.INVALID_VALUE
    assert s.ingest(0x00, publish_calendar(days=200), T0) == Status.INVALID_VALUE
    assert s.ingest(0x00, publish_calendar(), T0) == Status.SUCCESS
    assert s.ingest(0x00, publish_calendar(), T0) == Status.SUCCESS  # the same again
    with pytest.raises(MalformedFrame):
        s.ingest(0x02, week_profile()[:-1], T0)
    assert s.ingest(0x01, day_profile([(0, 2), (420, 3)]), T0) == Status.SUCCESS
    assert s.ingest(0x02, week_profile(), T0) == Status.SUCCESS
    assert s.find(500) is None  # the seasons are still missing
    assert s.ingest(0x03, seasons(), T0) == Status.SUCCESS
    taken = s.find(500)
    assert taken is not None and taken.day(1).entries == ((0, 2), (420, 3))
    assert s.active(T0) is taken
    # an older publication is refused; a cancellation of nothing scheduled is NOT_FOUND
    assert s.ingest(0x00, publish_calendar(cal_id=501, event_id=800), T0) == Status.INVALID_VALUE
    assert s.ingest(0x05, u32(0xABCD) + u32(777) + b"\x00", T0) == Status.NOT_FOUND
    assert s.ingest(0x06, b"", T0) == Status.UNSUP_CLUSTER_COMMAND


@pytest.mark.parametrize(("day", "season_year", "why"), [
    ([(60, 2)], 0xFF, "a day profile that does not start at 00:00"),
    ([(0, 2), (0, 3)], 0xFF, "two entries at one time"),
    ([(0, 2)], 126, "a season in one year only"),
])
def test_a_calendar_the_meter_cannot_follow_changes_nothing(day, season_year, why):
    s = fresh()
    before = list(s.calendars)
    assert s.ingest(0x00, publish_calendar(), T0) == Status.SUCCESS
    assert s.ingest(0x01, day_profile(day), T0) == Status.SUCCESS
    assert s.ingest(0x02, week_profile(), T0) == Status.SUCCESS
    assert s.ingest(0x03, seasons(year=season_year), T0) == Status.INVALID_VALUE, why
    assert s.calendars == before and s.outbox == []


def test_only_the_authorised_esi_may_publish_a_calendar():
    s = fresh()
    link = SupplierLink([s], authorised=lambda nwk: nwk == 0x0000)
    frame = server_frame(7, 0x00, publish_calendar(), general=False)
    header, payload = decode_header(frame)

    def req(src: int) -> Request:
        return Request(src_nwk=src, src_ep=9, dst_ep=1, profile_id=0x0109, cluster_id=0x0707,
                       header=header, payload=payload)

    answer = link.handle(req(0x5555), T0)
    assert answer[0][2] == 0x0B and answer[0][-1] == Status.NOT_AUTHORIZED
    assert link.handle(req(0x0000), T0) == []  # accepted (disable default response set)
    assert 500 in s._staged


def test_a_newer_publication_of_a_calendar_replaces_it():
    s = fresh()
    for event_id, tier in ((900, 2), (901, 3)):
        assert s.ingest(0x00, publish_calendar(event_id=event_id), T0) == Status.SUCCESS
        assert s.ingest(0x01, day_profile([(0, tier)], event_id=event_id), T0) == Status.SUCCESS
        assert s.ingest(0x02, week_profile(event_id=event_id), T0) == Status.SUCCESS
        assert s.ingest(0x03, seasons(event_id=event_id), T0) == Status.SUCCESS
        assert s.active(T0).day(1).entries == ((0, tier),)
    assert [c.issuer_calendar_id for c in s.calendars].count(500) == 1
