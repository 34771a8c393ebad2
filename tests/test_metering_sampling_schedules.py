"""ScheduleSnapshot and StartSampling / GetSampledData over the air (SE 1.4 D.3.2.3.1.5,
.8, .9 and their responses), judged by tshark and parsed by zigpy's client side.

The hub (the trust centre, the head end) schedules snapshots and sampling; the values are
checked against the household load model recomputed here (the register at each sample
point and snapshot time: whole Wh of the energy since the meter started), the schedules'
times against the calendar. Refusals carry the ZCL statuses the modules document; the
schedules, the sessions and the last Sample ID survive a restart of the meter with its
real SQLite store.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import zigpy.types as t
from han_tools import Han
from secure import ZclClient
from tshark_tools import Z2000, commands, default_responses, malformed, need_tshark, tshark_time
from zigpy.zcl import foundation
from zigpy.zcl.clusters.smartenergy import (
    SnapshotCause,
    SnapshotPayloadType,
    SnapshotSchedule,
    SnapshotSchedulePayload,
)

from sep.metrology.load import HouseholdLoad

S = foundation.Status
MET = "zbee_zcl_se.met"
SEED, SOLAR = 11, 3500
START = int(dt.datetime(2026, 6, 1, 6, tzinfo=dt.UTC).timestamp())  # solar from 06:00
IHD_IEEE = 0x3B3D00000000AA79


def wh(load: HouseholdLoad, t: int) -> tuple[int, int]:
    imp, exp = load.energy_j(START, t)
    return imp // 3600, exp // 3600


def schedule(sid: int, start: int, frequency: int, ftype: int, wild: int = 0,
             ptype: int = 0, cause: int = 0x00010000) -> SnapshotSchedulePayload:
    return SnapshotSchedulePayload(
        snapshot_schedule_id=sid, snapshot_start_time=start,
        snapshot_schedule=SnapshotSchedule(frequency=frequency, frequency_type=ftype,
                                           wild_card_frequency=wild),
        snapshot_payload_type=SnapshotPayloadType(ptype), snapshot_cause=SnapshotCause(cause))


async def test_sampling_sessions_and_their_refusals(tmp_path):
    need_tshark()
    data = tmp_path / "data"
    load = HouseholdLoad(SEED, SOLAR)
    han = Han(tmp_path, start=START, seed=SEED, solar_peak_w=SOLAR, data_dir=data)
    await han.start()
    m = han.metering
    ihd = await ZclClient.create(han.air, IHD_IEEE, han.meter, tsn_base=0x60)
    try:
        await han.step(600)
        t0 = int(han.clock.t)
        r1 = await m.start_sampling(100, 0, 0, 300, 10)  # delivered, every 5 min, 10 samples
        r2 = await m.start_sampling(101, t0 + 900 - Z2000, 1, 600, 4)  # received, from +15 min
        assert (r1.sample_id, r2.sample_id) == (1, 2)
        # refusals: not the head end, an old issuer event id, an unsampled type, no interval
        raw = t.uint32_t(102).serialize() + bytes(4) + b"\x00" + t.uint16_t(60).serialize() \
            + t.uint16_t(3).serialize()
        assert (await ihd.command(0x07, raw))[-1] == S.NOT_AUTHORIZED
        assert (await m.start_sampling(101, 0, 0, 60, 3)).status == S.INVALID_VALUE
        assert (await m.start_sampling(102, 0, 2, 60, 3)).status == S.INVALID_FIELD
        assert (await m.start_sampling(102, 0, 0, 0, 3)).status == S.INVALID_VALUE
        assert (await m.start_sampling(102, 0, 0, 60, 5000)).status == S.INSUFFICIENT_SPACE
        await han.step(3600)  # an hour of 5-minute readings
        d = await m.get_sampled_data(1, t0 - Z2000, 0, 50)
        rx = await m.get_sampled_data(2, 0, 1, 2)
        late = await m.get_sampled_data(1, t0 + 1800 - Z2000, 0, 3)
        # GetSampledData from any client; unknown session, wrong type, nothing that recent
        rsp = await ihd.command(0x08, t.uint16_t(1).serialize() + bytes(4) + b"\x00"
                                + t.uint16_t(2).serialize())
        assert rsp[2] == 0x07  # GetSampledDataResponse to the IHD too
        assert (await m.get_sampled_data(9, 0, 0, 5)).status == S.NOT_FOUND
        assert (await m.get_sampled_data(1, 0, 1, 5)).status == S.INVALID_FIELD
        assert (await m.get_sampled_data(1, t0 + 86400 - Z2000, 0, 5)).status == S.NOT_FOUND
        # cancel session 2 (same issuer event id, start 0xFFFFFFFF)
        assert (await m.start_sampling(101, 0xFFFFFFFF, 1, 600, 4)).status == S.SUCCESS
        assert (await m.get_sampled_data(2, 0, 1, 2)).status == S.NOT_FOUND
    finally:
        await han.stop()
    points = [t0 + 300 * k for k in range(11)]
    truth = [wh(load, b)[0] - wh(load, a)[0] for a, b in zip(points, points[1:], strict=False)]
    assert (d.sample_id, d.sample_start_time, d.sample_type, d.sample_request_interval) == (
        1, t0 + 300 - Z2000, 0, 300)
    assert d.number_of_samples == 10 and list(d.samples) == truth  # max 10 taken
    rpoints = [t0 + 900 + 600 * k for k in range(5)]
    rtruth = [wh(load, b)[1] - wh(load, a)[1] for a, b in zip(rpoints, rpoints[1:], strict=False)]
    assert list(rx.samples) == rtruth[:2] and rx.sample_start_time == t0 + 1500 - Z2000
    assert any(rtruth)  # the sun shines: exported energy is sampled
    assert list(late.samples) == truth[5:8] and late.sample_start_time == t0 + 1800 - Z2000
    pcap = han.pcap
    assert malformed(pcap) == ""
    req = commands(pcap, 0x0702, MET, "start_sampling", 7,
                   ["issuer_event_id", "start_sampling_time", "sample_type",
                    "sample_request_interval", "max_number_of_samples"], to_server=True)
    rsp = commands(pcap, 0x0702, MET, "start_sampling_response", 0x0D, ["sample_id"],
                   to_server=False)
    first = min(req)
    assert [int(x) for x in req[first][:1] + req[first][2:]] == [100, 0, 300, 10]
    assert tshark_time(req[first][1]) == Z2000  # 0: now
    assert sorted(int(v[0]) for v in rsp.values()) == [1, 2]
    got = commands(pcap, 0x0702, MET, "get_sampled_data_rsp", 7,
                   ["sample_id", "sample_start_time", "sample_type", "sample_request_interval",
                    "number_of_samples", "samples"], to_server=False)
    row = [r for r in got.values() if int(r[4]) == 10][0]
    assert tshark_time(row[1]) == t0 + 300 and [int(v) for v in row[5].split("|")] == truth
    statuses = default_responses(pcap, 0x0702)
    assert sorted(s for c, s in statuses.values() if c == 0x07) == sorted(
        [0x00, 0x7E, 0x87, 0x85, 0x87, 0x89])
    # after a restart: Sample ID 1 and 2 are not handed out again
    again = tmp_path / "again"
    again.mkdir()
    han2 = Han(again, start=int(han.clock.t) + 60, seed=SEED, solar_peak_w=SOLAR, data_dir=data)
    await han2.start()
    try:
        kept = await han2.metering.get_sampled_data(1, 0, 0, 3)
        r3 = await han2.metering.start_sampling(103, 0, 0, 60, 2)
    finally:
        await han2.stop()
    assert list(kept.samples) == truth[:3]
    assert r3.sample_id == 3


async def test_scheduled_snapshots_are_taken_published_and_kept(tmp_path):
    need_tshark()
    data = tmp_path / "data"
    load = HouseholdLoad(SEED, SOLAR)
    han = Han(tmp_path, start=START, seed=SEED, solar_peak_w=SOLAR, data_dir=data)
    await han.start()
    m = han.metering
    ihd = await ZclClient.create(han.air, IHD_IEEE, han.meter, tsn_base=0x60)
    published: list = []
    m.add_listener(type("L", (), {"cluster_command": staticmethod(
        lambda tsn, cid, args: cid == 0x06 and published.append(args))})())
    try:
        t0 = int(han.clock.t)
        first = t0 + 1800
        # one schedule per command, as Wireshark reads them: a multi-command ScheduleSnapshot
        # (command index / total number of commands) under one issuer event id
        payloads = [
            schedule(1, first - Z2000, 1, 0),  # daily, from 30 minutes on
            schedule(2, first - Z2000, 1, 0, ptype=1),  # the received registers
            schedule(3, first - Z2000, 1, 0, ptype=2),  # block registers: not supported
            schedule(4, first - Z2000, 1, 0, cause=0x00020000),  # OTA cause: not supported
            schedule(5, first - Z2000, 1, 2, wild=1),  # monthly, at the end of the month
        ]
        answers = []
        for i, p in enumerate(payloads):
            rsp = await m.schedule_snapshot(7, i, len(payloads), [p])
            assert rsp.issuer_event_id == 7
            answers += [(p.snapshot_schedule_id, p.snapshot_schedule_confirmation)
                        for p in rsp.snapshot_response_payloads]
        assert answers == [(1, 0), (2, 0), (3, 1), (4, 2), (5, 0)]
        # a command out of sequence (index 1 of another event, or beyond the total)
        assert (await m.schedule_snapshot(99, 1, 2, [payloads[0]])).status == S.INVALID_VALUE
        assert (await m.schedule_snapshot(99, 2, 2, [payloads[0]])).status == S.INVALID_FIELD
        full = await m.schedule_snapshot(8, 0, 1, [schedule(6, first - Z2000, 1, 1),
                                                   schedule(7, first - Z2000, 1, 1)])
        assert [p.snapshot_schedule_confirmation for p in full.snapshot_response_payloads] == [
            0, 5]  # four schedules at most
        assert (await m.schedule_snapshot(8, 0, 1, [schedule(9, 0, 0, 0)])).status == \
            S.INVALID_VALUE  # the same issuer event id again
        raw = t.uint32_t(9).serialize() + b"\x00\x01" + schedule(9, 0, 0, 0).serialize()
        assert (await ihd.command(0x04, raw))[-1] == S.NOT_AUTHORIZED
        await han.step(3600)  # passes the first time of schedules 1, 2 and 6
        await asyncio.sleep(0.3)
    finally:
        await han.stop()
    assert len(published) == 3
    assert {int(p.snapshot_time) for p in published} == {first - Z2000}
    by_type = {int(p.snapshot_payload_type): p for p in published}
    assert set(by_type) == {0x04, 0x05}  # no billing period in this tariff: "No Billing" forms
    deliv = bytes(by_type[0x04].snapshot_payload)
    recv = bytes(by_type[0x05].snapshot_payload)
    assert int.from_bytes(deliv[:6], "little") == wh(load, first)[0]
    assert int.from_bytes(recv[:6], "little") == wh(load, first)[1] > 0
    assert all(int(p.snapshot_cause) & 0x00010000 for p in published)  # "scheduled snapshot"
    pcap = han.pcap
    assert malformed(pcap) == ""
    req = commands(pcap, 0x0702, MET, "schedule_snapshot", 4,
                   ["issuer_event_id", "snapshot_schedule_payload.snapshot_schedule_id",
                    "snapshot_schedule_payload.snapshot_start_time",
                    "snapshot_schedule_payload.snapshot_payload_type"], to_server=True)
    rows = [r for r in req.values() if r[0] == "7"]
    assert sorted(int(r[1]) for r in rows) == [1, 2, 3, 4, 5]
    assert {tshark_time(r[2]) for r in rows} == {first}
    assert sorted(int(r[3]) for r in rows) == [0, 0, 0, 1, 2]
    rsp_rows = commands(pcap, 0x0702, MET, "schedule_snapshot_response", 4,
                        ["issuer_event_id", "response_snapshot_schedule_id",
                         "snapshot_schedule_confirmation"], to_server=False)
    seven = sorted((int(r[1]), int(r[2], 0)) for r in rsp_rows.values() if r[0] == "7")
    assert seven == [(1, 0), (2, 0), (3, 1), (4, 2), (5, 0)]
    pub = commands(pcap, 0x0702, MET, "publish_snapshot", 6,
                   ["zbee_nwk.dst", "snapshot_time", "payload_type"], to_server=False)
    assert {(int(r[0], 16), tshark_time(r[1])) for r in pub.values()} == {(0x0000, first)}

    # after a restart the schedules go on: the next day's snapshot is taken on time
    again = tmp_path / "again"
    again.mkdir()
    han2 = Han(again, start=START + 86400 - 600, seed=SEED, solar_peak_w=SOLAR, data_dir=data)
    await han2.start()
    later: list = []
    han2.metering.add_listener(type("L", (), {"cluster_command": staticmethod(
        lambda tsn, cid, args: cid == 0x06 and later.append(args))})())
    try:
        kept = sorted(han2.meter.metering.schedules)
        await han2.step(3600)
        await asyncio.sleep(0.3)
    finally:
        await han2.stop()
    assert kept == [1, 2, 5, 6]
    # the daily schedules 1 and 2 (the weekly 6 is six days off, the monthly 5 at the end
    # of June)
    assert sorted(int(p.snapshot_time) for p in later) == [first + 86400 - Z2000] * 2
