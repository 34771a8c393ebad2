"""Metering and Time across the virtual air, with tshark's SE dissector as the judge.

Every Metering command the meter serves crosses the air from the hub's zigpy (the client)
to the meter and back; a pcap tap writes the air, and ``tshark -T fields`` reads the
request fields the test sent and the meter's answers. Those are compared with truth that
is independent of the meter's code: the household load model recomputed here (energy per
interval, the summation at a reading), the SE numbers, Python's zoneinfo for the UK DST
dates and the Zigbee epoch 2000-01-01. No frame may be malformed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import subprocess
import zoneinfo
from pathlib import Path

import pytest
from required_tools import needs_tool
from zigpy.zcl import foundation

from hubsim.hub import CommsHub
from radios.air import VirtualAir
from radios.pcap import PcapWriter, tshark_key_options
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.metrology.load import HouseholdLoad

TSHARK = shutil.which("tshark")
pytestmark = needs_tool("tshark")

METER_IEEE = "00:0d:6f:00:00:00:ab:01"
SEED = 11
SOLAR_W = 3500
Z2000 = 946_684_800  # 2000-01-01T00:00:00Z: the Zigbee epoch, from the ZCL spec
HALF_HOUR = 1800
START = 1_780_300_800  # 2026-06-01T08:00:00Z: a summer morning, on a profile boundary
MET = "zbee_zcl_se.met"
AGG = "|"  # tshark aggregator (dates contain commas)


# -- tshark --------------------------------------------------------------------------------
def tshark(pcap: Path, display: str, fields: list[str]) -> list[list[str]]:
    cmd = [TSHARK, "-r", str(pcap), *tshark_key_options(pcap), "-Y", display, "-T", "fields",
           "-E", "separator=;",
           "-E", "occurrence=a", "-E", f"aggregator={AGG}"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split(";") for line in out.splitlines()]


def malformed(pcap: Path) -> str:
    return subprocess.run([TSHARK, "-r", str(pcap), *tshark_key_options(pcap), "-Y",
                           "_ws.malformed || _ws.expert.severity == error"],
                          capture_output=True, text=True, check=True).stdout


def tshark_time(text: str) -> int:
    """An FT_ABSOLUTE_TIME as tshark prints it ("Jun  1, 2026 08:30:00.000000000 UTC")."""
    head = " ".join(text.replace("UTC", "").split())
    head = head.split(".")[0]
    return int(dt.datetime.strptime(head, "%b %d, %Y %H:%M:%S").replace(
        tzinfo=dt.UTC).timestamp())


def rows_for(pcap: Path, command: str, cmd_id: int, fields: list[str],
             *, to_server: bool) -> dict[int, list[str]]:
    """Rows of one Metering command keyed by ZCL sequence number."""
    direction = "srv_rx" if to_server else "srv_tx"
    display = f"zbee_aps.cluster == 0x0702 && zbee_zcl.type == 1 && {MET}.cmd.{direction}.id == {cmd_id}"
    got = tshark(pcap, display, ["zbee_zcl.cmd.tsn", *[f"{MET}.{command}.{f}" for f in fields]])
    return {int(r[0]): r[1:] for r in got}


# -- independent truth ------------------------------------------------------------------
def wh_at(load: HouseholdLoad, t: int, origin: int = START) -> tuple[int, int]:
    """The meter's Wh registers at ``t``: whole Wh of the energy since it started."""
    imp, exp = load.energy_j(origin, t)
    return imp // 3600, exp // 3600


def interval_truth(ends: list[int], channel: int) -> list[int]:
    load = HouseholdLoad(SEED, SOLAR_W)
    return [wh_at(load, e)[channel] - wh_at(load, e - HALF_HOUR)[channel] for e in ends]


# -- the HAN ------------------------------------------------------------------------------
class Han:
    """Hub (zigpy, the client) + meter on one virtual air, with the pcap tap on it."""

    def __init__(self, tmp: Path, *, start: int = START, initial_wh: int = 0,
                 data_dir: Path | None = None) -> None:
        self.pcap = tmp / "metering.pcap"
        self.air = VirtualAir()
        self.writer = PcapWriter(self.pcap).capture(self.air)
        self.clock = ManualClock(start)
        # the HAN's time master; with the meter's data kept, the hub keeps its network too
        self.hub = CommsHub(air=self.air, clock=self.clock.now, state=None if data_dir is None
                            else str(data_dir.with_name(data_dir.name + "-hub-radio.json")))
        self.meter = MeterApp(MeterSettings(ieee=METER_IEEE, seed=SEED, solar_peak_w=SOLAR_W,
                                            initial_wh=initial_wh, tick_seconds=0.02,
                                            data_dir=data_dir),
                              clock=self.clock, air=self.air)
        self.stopped = False

    async def start(self) -> None:
        await self.hub.start()
        await self.meter.start()
        dev = await self.hub.wait_interviewed(METER_IEEE)
        self.metering = dev.endpoints[1].in_clusters[0x0702]
        self.time = dev.endpoints[1].in_clusters[0x000A]
        for _ in range(500):  # the meter sets its time from the hub's (its ESI's) Time
            if self.meter.time.synchronised:
                break
            await asyncio.sleep(0.01)
        assert self.meter.time.synchronised

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await self.meter.stop()
        await self.hub.stop()
        self.writer.close()

    async def run(self, seconds: int, step: int = 300) -> None:
        for _ in range(seconds // step):
            self.clock.advance(step)
            await self.meter.poll_metrology()


@pytest.fixture
async def han(tmp_path):
    h = Han(tmp_path)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


# -- GetProfile ---------------------------------------------------------------------------
async def test_get_profile_over_the_air_matches_the_load_model(han):
    await han.run(30 * HALF_HOUR)  # 08:00 -> 23:00, sunny from 06:00 to 18:00
    latest = START + 30 * HALF_HOUR
    requests = [  # (channel, end time unix or 0, periods)
        (0, 0, 24),
        (1, START + 12 * HALF_HOUR, 10),  # export around noon, explicit end time
        (0, START + 5 * HALF_HOUR + 600, 3),  # an end time inside an interval
    ]
    for channel, end, n in requests:
        rsp = await han.metering.get_profile(channel, end - Z2000 if end else 0, n)
        assert rsp.status == 0
    await han.stop()
    assert malformed(han.pcap) == ""
    sent = rows_for(han.pcap, "get_profile", 0, ["interval_channel", "end_time",
                                                  "number_of_periods"], to_server=True)
    answers = rows_for(han.pcap, "get_profile_response", 0,
                       ["end_time", "status", "profile_interval_period",
                        "number_of_periods_delivered", "intervals"], to_server=False)
    assert len(sent) == len(requests) and sent.keys() == answers.keys()
    for (channel, end, n), tsn in zip(requests, sorted(sent), strict=True):
        ch, req_end, req_n = sent[tsn]
        assert int(ch) == channel and int(req_n) == n
        assert tshark_time(req_end) == (end if end else Z2000)  # 0 shows as the epoch
        rsp_end, status, period, delivered, intervals = answers[tsn]
        # the most recent interval ending at or before the requested end time
        first_end = latest if end == 0 else end // HALF_HOUR * HALF_HOUR
        assert tshark_time(rsp_end) == first_end
        assert int(status, 0) == 0 and int(period) == 2  # 2 = 30 minutes
        ends = [first_end - i * HALF_HOUR for i in range(min(n, (first_end - START) // HALF_HOUR))]
        assert int(delivered) == len(ends)
        values = [int(v) for v in intervals.split(AGG) if v]
        assert values == interval_truth(ends, channel)
        # and the meter's stored load profile says the same
        stored = {iv.end: iv.value_wh for iv in han.meter.metering.profile.all(channel)}
        assert values == [stored[e] for e in ends]
    assert any(interval_truth([START + 9 * HALF_HOUR], 1))  # the export channel is not all zero


async def test_get_profile_statuses_over_the_air(han):
    """Each refusal carries the GetProfileResponse status SE 1.4 specifies."""
    await han.run(30 * HALF_HOUR, step=HALF_HOUR)
    now = START + 30 * HALF_HOUR
    cases = [  # (channel, end time unix or 0, periods, status SE specifies)
        (0, now + 3600, 4, 0x03),  # end time in the future: invalid end time
        (0, 0, 200, 0x04),  # more periods than MaxNumberOfPeriodsDelivered (24)
        (0, START - 86400, 4, 0x05),  # before the profile began: no intervals
        (2, 0, 4, 0x02),  # reactive consumption delivered: defined, not recorded here
        (9, 0, 4, 0x01),  # an undefined interval channel
    ]
    for channel, end, n, want in cases:
        rsp = await han.metering.get_profile(channel, end - Z2000 if end else 0, n)
        assert rsp.status == want
    await han.stop()
    assert malformed(han.pcap) == ""
    sent = rows_for(han.pcap, "get_profile", 0, ["interval_channel", "number_of_periods"],
                    to_server=True)
    answers = rows_for(han.pcap, "get_profile_response", 0,
                       ["status", "number_of_periods_delivered", "intervals"], to_server=False)
    for (channel, _end, n, want), tsn in zip(cases, sorted(sent), strict=True):
        assert [int(x) for x in sent[tsn]] == [channel, n]
        status, delivered, intervals = answers[tsn]
        assert int(status, 0) == want
        if want == 0x04:  # the meter still returns the 24 most recent intervals
            ends = [now - i * HALF_HOUR for i in range(24)]
            assert int(delivered) == 24
            assert [int(v) for v in intervals.split(AGG)] == interval_truth(ends, 0)
        else:
            assert int(delivered) == 0 and intervals == ""


def default_responses(pcap: Path) -> dict[int, tuple[int, int]]:
    """ZCL Default Responses from the meter on Metering: tsn -> (command, status)."""
    rows = tshark(pcap, "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x0b",
                  ["zbee_zcl.cmd.tsn", "zbee_zcl.cmd.id.rsp", "zbee_zcl.attr.status"])
    return {int(r[0]): (int(r[1], 16), int(r[2], 16)) for r in rows}


async def test_snapshot_fast_poll_and_supply_commands_over_the_air(han):
    provider = han.meter.metering.supply.provider_id
    load = HouseholdLoad(SEED, SOLAR_W)
    await han.run(4 * HALF_HOUR)
    t_snap = START + 4 * HALF_HOUR
    m = han.metering
    # RequestFastPollMode: 1 s asked, the meter's FastPollUpdatePeriod (2 s) applies; 60
    # minutes asked, SE caps fast poll mode at 15 minutes; a second request inside fast
    # poll mode does not extend it.
    r1 = await m.request_fast_poll_mode(1, 60)
    han.clock.advance(120)
    r2 = await m.request_fast_poll_mode(5, 10)
    assert (r1.applied_update_period, r2.applied_update_period) == (2, 5)
    assert r1.fast_poll_mode_end_time == r2.fast_poll_mode_end_time == t_snap + 900 - Z2000
    han.clock.t = t_snap
    # TakeSnapshot (manual) → TakeSnapshotResponse; an unsupported cause is refused
    s1 = await m.take_snapshot(0x00000400)
    s2 = await m.take_snapshot(0x00000002)  # "end of billing period" is the meter's own
    assert (s1.snapshot_id, s1.snapshot_confirmation) == (1, 0)
    assert s2.snapshot_confirmation == 0x01  # snapshot cause not supported
    # GetSnapshot → PublishSnapshot; an offset beyond what was found → NOT_FOUND
    got: asyncio.Future = asyncio.get_running_loop().create_future()
    m.add_listener(type("L", (), {"cluster_command": staticmethod(
        lambda tsn, cid, args: cid == 0x06 and not got.done() and got.set_result(args))})())
    await m.get_snapshot(0, 0xFFFFFFFF, 0, 0xFFFFFFFF, expect_reply=False)
    await asyncio.wait_for(got, 5)
    nf = await m.get_snapshot(0, 0xFFFFFFFF, 5, 0xFFFFFFFF)
    assert nf.status == foundation.Status.NOT_FOUND
    # ChangeSupply (off, acknowledge required) → SupplyStatusResponse
    cs = await m.change_supply(provider, 0x1001, t_snap - Z2000, 0, 0, 0x01)
    assert cs.supply_status == 0
    # LocalChangeSupply ON from OFF: the consumer cannot undo the supplier's disconnect
    lc = await m.local_change_supply(2)
    assert lc.status == foundation.Status.ACTION_DENIED
    # SetSupplyStatus and ResetLoadLimitCounter from the hub (the trust centre)
    ss = await m.set_supply_status(0x1002, 0, 0, 0, 0)
    assert ss.status == foundation.Status.SUCCESS
    rl = await m.reset_load_limit_counter(provider, 0x1003)
    assert rl.status == foundation.Status.SUCCESS
    await han.stop()
    pcap = han.pcap
    assert malformed(pcap) == ""

    fp_req = rows_for(pcap, "request_fast_poll_mode", 3, ["fast_poll_update_period", "duration"],
                      to_server=True)
    fp_rsp = rows_for(pcap, "request_fast_poll_mode_response", 3,
                      ["applied_update_period", "fast_poll_mode_end_time"], to_server=False)
    assert [[int(x) for x in fp_req[k]] for k in sorted(fp_req)] == [[1, 60], [5, 10]]
    for k in sorted(fp_rsp):
        # Wireshark 4.0 shows this UTCTime without adding the Zigbee epoch (it prints
        # 1996 for 2026); the value on the air is right: decoded + 2000-01-01.
        assert tshark_time(fp_rsp[k][1]) + Z2000 == t_snap + 900
    assert [int(fp_rsp[k][0]) for k in sorted(fp_rsp)] == [2, 5]

    ts_req = rows_for(pcap, "take_snapshot", 5, ["snapshot_cause"], to_server=True)
    ts_rsp = rows_for(pcap, "take_snapshot_response", 5, ["snapshot_id", "snapshot_confirmation"],
                      to_server=False)
    assert [int(ts_req[k][0], 16) for k in sorted(ts_req)] == [0x400, 0x002]
    assert [[int(x, 0) for x in ts_rsp[k]] for k in sorted(ts_rsp)] == [[1, 0], [0, 1]]
    manual = tshark(pcap, f"{MET}.cmd.srv_rx.id == 5",
                    [f"{MET}.snapshot_cause.manually_triggered_from_client"])
    assert [r[0] for r in manual] in (["1", "0"], ["True", "False"])

    gs_req = rows_for(pcap, "get_snapshot", 6, ["start_time", "end_time", "snapshot_offset",
                                                 "snapshot_cause"], to_server=True)
    assert [int(gs_req[k][2]) for k in sorted(gs_req)] == [0, 5]
    assert tshark_time(gs_req[min(gs_req)][0]) == Z2000
    pub = rows_for(pcap, "publish_snapshot", 6,
                   ["snapshot_id", "snapshot_time", "snapshots_found", "command_index",
                    "total_commands", "snapshot_cause", "payload_type", "sub_payload"],
                   to_server=False)
    assert len(pub) == 1
    sid, stime, found, index, total, cause, ptype, sub = next(iter(pub.values()))
    assert (int(sid), int(found), int(index), int(total)) == (1, 1, 0, 1)
    # the default tariff has no billing period, so the meter keeps no bill: the snapshot is
    # a "TOU Information Set Delivered Registers - No Billing" (payload type 0x04)
    assert tshark_time(stime) == t_snap and int(cause, 16) == 0x400 and int(ptype) == 4
    # tshark 4.0 shows the snapshot sub-payload as bytes only; read it by the SE 1.4
    # layout of that payload type: summation (uint48), number of tiers (uint8), then a
    # uint48 per tier.
    raw = bytes.fromhex(sub.replace(":", ""))
    summation = int.from_bytes(raw[0:6], "little")
    tiers = raw[6]
    tier_values = [int.from_bytes(raw[7 + 6 * i: 13 + 6 * i], "little") for i in range(tiers)]
    assert len(raw) == 7 + 6 * tiers
    assert summation == wh_at(load, t_snap)[0]
    assert tiers == 4 and sum(tier_values) == summation  # all of it in tier 1 so far
    assert default_responses(pcap)[max(gs_req)] == (0x06, 0x8B)  # NOT_FOUND

    cs_req = rows_for(pcap, "change_supply", 0x0B,
                      ["provider_id", "issuer_event_id", "request_date_time",
                       "implementation_date_time", "proposed_supply_status",
                       "supply_control_bits"], to_server=True)
    cs_rsp = rows_for(pcap, "supply_status_response", 0x0C,
                      ["provider_id", "issuer_event_id", "implementation_date_time",
                       "supply_status_after_implementation"], to_server=False)
    (k, req), = cs_req.items()
    assert int(req[0]) == provider and int(req[1]) == 0x1001
    assert tshark_time(req[2]) == t_snap and tshark_time(req[3]) == Z2000  # 0: now
    assert int(req[4]) == 0 and int(req[5], 16) == 0x01
    assert int(cs_rsp[k][0]) == provider and int(cs_rsp[k][1]) == 0x1001
    assert int(cs_rsp[k][3]) == 0  # Supply OFF

    lc_req = rows_for(pcap, "local_change_supply", 0x0C, ["proposed_supply_status"],
                      to_server=True)
    (k_lc, (proposed,)), = lc_req.items()
    assert int(proposed) == 2 and default_responses(pcap)[k_lc] == (0x0C, 0x93)
    ss_req = rows_for(pcap, "set_supply_status", 0x0D,
                      ["issuer_event_id", "supply_tamper_state", "supply_depletion_state",
                       "supply_uncontrolled_flow_state", "load_limit_supply_state"],
                      to_server=True)
    (k_ss, ss_fields), = ss_req.items()
    assert [int(x) for x in ss_fields] == [0x1002, 0, 0, 0, 0]
    assert default_responses(pcap)[k_ss] == (0x0D, 0x00)
    rl_req = rows_for(pcap, "reset_load_limit_counter", 0x0A, ["provider_id", "issuer_event_id"],
                      to_server=True)
    (k_rl, rl_fields), = rl_req.items()
    assert [int(x) for x in rl_fields] == [provider, 0x1003]
    assert default_responses(pcap)[k_rl] == (0x0A, 0x00)


async def test_attribute_reports_carry_the_load_model_summation(han):
    m = han.metering
    await m.configure_reporting(0x0000, 1, 3600, 1)
    await m.configure_reporting(0x0014, 0, 3600, 1)
    times = []
    for _ in range(6):
        await han.run(600)
        times.append(int(han.clock.t))
        await asyncio.sleep(0.1)  # the meter's loop sends what is due
    await m.change_supply(han.meter.metering.supply.provider_id, 7, 0, 0, 1, 0)  # ARMED
    await asyncio.sleep(0.2)
    await han.stop()
    assert malformed(han.pcap) == ""
    rows = tshark(han.pcap, "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x0a",
                  [f"{MET}.attr_id", "zbee_zcl.attr.uint48", "zbee_zcl.attr.uint8"])
    load = HouseholdLoad(SEED, SOLAR_W)
    truth = {wh_at(load, t)[0] for t in [START, *times]}
    summations, supply = [], []
    for ids, u48, u8 in rows:  # one frame may report both: pair ids with values by type
        u48s, u8s = iter(u48.split(AGG)), iter(u8.split(AGG))
        for attr in ids.split(AGG):
            if int(attr, 16) == 0x0000:
                summations.append(int(next(u48s)))
            elif int(attr, 16) == 0x0014:
                supply.append(int(next(u8s)))
    assert summations and set(summations) <= truth
    assert summations == sorted(summations) and summations[-1] == wh_at(load, times[-1])[0]
    assert supply[0] == 2 and supply[-1] == 1  # ON, then OFF/ARMED after the ChangeSupply


async def test_summation_formatting_as_the_se_example(tmp_path):
    """SE 1.4 D.3.2.2.4 arithmetic: CurrentSummationDelivered 0x000000000123 with
    Multiplier 1, Divisor 1000, UnitOfMeasure kWh and SummationFormatting 0xBB (7 digits
    left of the point, 3 right, leading zeros suppressed) reads 0.291 kWh."""
    from hubsim.ihd import format_value

    h = Han(tmp_path, initial_wh=0x123)
    await h.start()
    try:
        for attr in (0x0000, 0x0300, 0x0301, 0x0302, 0x0303, 0x0304):
            await h.metering.read_attributes([attr], allow_cache=False)
    finally:
        await h.stop()
    assert malformed(h.pcap) == ""
    rows = tshark(h.pcap, "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x01",
                  [f"{MET}.attr_id", "zbee_zcl.attr.uint48", "zbee_zcl.attr.uint24",
                   "zbee_zcl.attr.uint8", "zbee_zcl.attr.bitmap8"])
    by_id = {int(r[0], 16): next(v for v in r[1:] if v) for r in rows}
    assert int(by_id[0x0000]) == 0x123
    assert int(by_id[0x0300]) == 0  # kWh, binary
    assert (int(by_id[0x0301]), int(by_id[0x0302])) == (1, 1000)
    assert int(by_id[0x0303], 16) == 0xBB and int(by_id[0x0304], 16) == 0xAB
    right, left, suppress = 0xBB & 7, (0xBB >> 3) & 0xF, bool(0xBB & 0x80)
    assert (left, right, suppress) == (7, 3, True)
    assert format_value(0x123, 1, 1000, 0xBB) == "0.291"  # what a display shows, in kWh
    assert format_value(0x123, 1, 1000, 0x3B) == "0000000.291"  # without suppression
    assert format_value(0x123, 1, 1000, 0xB9) == "0.3"  # one decimal: rounded


@pytest.mark.parametrize("when", [
    "2026-06-01T08:00:00Z",  # British Summer Time
    "2026-12-01T08:00:00Z",  # winter: GMT
    "2026-03-29T00:59:59Z",  # one second before the clocks go forward
    "2026-03-29T01:00:00Z",  # the moment they do
    "2026-10-25T00:59:59Z",  # last second of BST
])
async def test_time_server_attributes_against_zoneinfo(tmp_path, when):
    t0 = int(dt.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp())
    h = Han(tmp_path, start=t0)
    await h.start()
    try:
        for attr in range(10):
            await h.time.read_attributes([attr], allow_cache=False)
    finally:
        await h.stop()
    assert malformed(h.pcap) == ""
    T = "zbee_zcl_general.time"
    rows = tshark(h.pcap, f"zbee_aps.cluster == 0x000a && zbee_zcl.cmd.id == 0x01 && "
                  f"zbee_nwk.src == {h.meter.nwk}",  # the meter's answers (not the hub's)
                  [f"{T}.attr_id", "zbee_zcl.attr.utc", "zbee_zcl.attr.uint32",
                   "zbee_zcl.attr.int32", f"{T}.attr.time_status",
                   f"{T}.attr.time_status.master", f"{T}.attr.time_status.synchronized"])
    got = {int(r[0], 16): r[1:] for r in rows}
    assert sorted(got) == list(range(10))
    london = zoneinfo.ZoneInfo("Europe/London")
    year = dt.datetime.fromtimestamp(t0, dt.UTC).year
    # the UK's DST changes this year, found by zoneinfo (hour by hour, then to the second)
    changes = []
    t = int(dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp())
    end = int(dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC).timestamp())

    def off(x: int) -> int:
        return int(dt.datetime.fromtimestamp(x, london).utcoffset().total_seconds())

    while t < end:
        if off(t) != off(t + 3600):
            lo = t
            while off(lo) == off(t):
                lo += 1
            changes.append(lo)
        t += 3600
    dst_start, dst_end = changes
    assert tshark_time(got[0][0]) == t0  # Time (UTC), from the Zigbee epoch
    status = int(got[1][3], 16)
    # synchronised to the hub (the HAN's time master), not a master itself
    assert status == 0x02 and got[1][4] in ("0", "False") and got[1][5] in ("1", "True")
    assert int(got[2][2]) == 0  # TimeZone: GMT, seconds east of UTC
    assert int(got[3][1]) == dst_start - Z2000 and int(got[4][1]) == dst_end - Z2000
    assert int(got[5][2]) == 3600  # DstShift
    standard = int(got[6][1])
    local = int(got[7][1])
    assert standard == t0 - Z2000  # StandardTime = Time + TimeZone
    assert local == t0 + off(t0) - Z2000  # what a clock in London shows
    assert tshark_time(got[8][0]) == t0  # LastSetTime: when it took the hub's time
    assert int(dt.datetime.fromisoformat("2000-01-01T00:00:00+00:00").timestamp()) == Z2000
    assert got[9][0].startswith("Feb  7, 2136")  # ValidUntilTime 0xFFFFFFFF: no limit


def read_values(pcap: Path, attrs: list[int]) -> list[dict[int, int]]:
    """Every Metering Read Attributes Response for uint48 attributes, as {id: value}."""
    rows = tshark(pcap, "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x01",
                  [f"{MET}.attr_id", "zbee_zcl.attr.uint48"])
    out = []
    for ids, values in rows:
        pairs = dict(zip((int(a, 16) for a in ids.split(AGG)),
                         (int(v) for v in values.split(AGG) if v), strict=False))
        if set(attrs) <= set(pairs):
            out.append(pairs)
    return out


async def test_tier_registers_follow_the_active_tier_and_sum_to_the_total(tmp_path):
    """The active price tier decides where energy goes: each tier register grows by the
    load model's energy while its tier is active, and the tiers always sum to the total."""
    evening = START + 10 * 3600  # 18:00 UTC: the sun is down, the house imports
    han = Han(tmp_path, start=evening)
    await han.start()
    load = HouseholdLoad(SEED, SOLAR_W)
    attrs = [0x0000, 0x0100, 0x0102, 0x0104, 0x0106]
    plan = [(1, 6 * HALF_HOUR), (3, 4 * HALF_HOUR), (2, 10 * HALF_HOUR), (4, 2 * HALF_HOUR),
            (1, 2 * HALF_HOUR)]
    t = evening
    expected = [0, 0, 0, 0]
    try:
        for tier, seconds in plan:
            han.meter.metering.set_active_tier(tier)
            await han.run(seconds)
            expected[tier - 1] += (wh_at(load, t + seconds, evening)[0]
                                   - wh_at(load, t, evening)[0])
            t += seconds
            await han.metering.read_attributes(attrs, allow_cache=False)
    finally:
        await han.stop()
    assert malformed(han.pcap) == ""
    reads = read_values(han.pcap, attrs)
    assert len(reads) == len(plan)
    last = reads[-1]
    assert [last[a] for a in attrs[1:]] == expected
    assert last[0x0000] == wh_at(load, t, evening)[0] == sum(expected)
    for r in reads:
        assert sum(r[a] for a in attrs[1:]) == r[0x0000]
    assert all(expected)  # every tier took some energy: the test can tell them apart
