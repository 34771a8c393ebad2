"""Bad input for the Metering server: every refusal gets the status SE 1.4 / ZCL specify,
and random payloads to every command id never crash the server, never make it answer
with a frame zigpy cannot parse, and never change stored data (load profile, registers,
snapshots, supply state) unless the command is one that may change it and says so."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import zigpy.types as t
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zigpy.zcl import foundation
from zigpy.zcl.clusters.smartenergy import Metering as ZMetering

from sep.clusters.metering import MeteringServer
from sep.metrology.api import Reading
from sep.zcl.frames import Request

S = foundation.Status
Z2000 = 946_684_800
T0 = 1_780_272_000  # 2026-06-01T00:00:00Z
HUB, IHD = 0x0000, 0x3B3B


def meter_with_history(hours: int = 26) -> tuple[MeteringServer, float]:
    m = MeteringServer()
    wh = 10_000
    now = float(T0)
    for _ in range(hours * 12):  # a reading every 5 minutes
        m.update(Reading(timestamp=now, delivered_wh=wh, received_wh=wh // 10, demand_w=900))
        now += 300
        wh += 75
    m.update(Reading(timestamp=now, delivered_wh=wh, received_wh=wh // 10, demand_w=900))
    m.take_snapshot(now)
    return m, now


def request(cmd: int, payload: bytes, *, src: int = IHD, manufacturer: int | None = None,
            broadcast: bool = False, tsn: int = 7) -> Request:
    hdr = foundation.ZCLHeader.cluster(tsn, cmd)
    if manufacturer is not None:
        hdr = foundation.ZCLHeader(
            frame_control=hdr.frame_control.replace(is_manufacturer_specific=True),
            manufacturer=manufacturer, tsn=tsn, command_id=cmd)
    return Request(src_nwk=src, src_ep=1, dst_ep=1, profile_id=0x0109, cluster_id=0x0702,
                   header=hdr, payload=payload, broadcast=broadcast)


def answer(m: MeteringServer, req: Request, now: float) -> tuple[int, Any]:
    """The one frame the meter answers with, parsed by zigpy's client side (strictly):
    ('default', status) or (command id, parsed fields)."""
    frames = m.handle(req, now)
    assert len(frames) == 1, frames
    hdr, rest = foundation.ZCLHeader.deserialize(frames[0])
    assert hdr.tsn == req.tsn
    assert hdr.frame_control.direction == foundation.Direction.Server_to_Client
    if hdr.frame_control.is_general:
        assert hdr.command_id == foundation.GeneralCommand.Default_Response
        rsp, extra = foundation.GENERAL_COMMANDS[
            foundation.GeneralCommand.Default_Response].schema.deserialize(rest)
        assert extra == b"" and rsp.command_id == req.command_id
        return "default", rsp.status
    schema = ZMetering.client_commands[hdr.command_id].schema
    fields, extra = schema.deserialize(rest)
    assert extra == b""
    return hdr.command_id, fields


def get_profile(channel: int, end: int, n: int) -> bytes:
    return t.uint8_t(channel).serialize() + t.uint32_t(end).serialize() + t.uint8_t(n).serialize()


def change_supply(provider: int, event: int, impl: int, proposed: int, bits: int = 1) -> bytes:
    return b"".join([t.uint32_t(provider).serialize(), t.uint32_t(event).serialize(),
                     t.uint32_t(0).serialize(), t.uint32_t(impl).serialize(),
                     t.uint8_t(proposed).serialize(), t.uint8_t(bits).serialize()])


def get_snapshot(start: int, end: int, offset: int, cause: int) -> bytes:
    return (t.uint32_t(start).serialize() + t.uint32_t(end).serialize()
            + t.uint8_t(offset).serialize() + t.uint32_t(cause).serialize())


# -- the statuses SE specifies ---------------------------------------------------------------
def test_get_profile_statuses():
    m, now = meter_with_history()
    z_now = int(now) - Z2000

    def status(channel: int, end: int, n: int) -> tuple[int, int]:
        cmd, rsp = answer(m, request(0x00, get_profile(channel, end, n)), now)
        assert cmd == 0x00
        return rsp.status, rsp.number_of_periods_delivered

    assert status(0, 0, 24) == (0x00, 24)
    assert status(1, z_now, 3) == (0x00, 3)
    assert status(0, z_now + 1, 4) == (0x03, 0)  # one second in the future
    assert status(0, 0xFFFFFFFE, 4) == (0x03, 0)
    assert status(0, 0, 25) == (0x04, 24)  # one more than MaxNumberOfPeriodsDelivered
    assert status(0, 0, 255) == (0x04, 24)
    assert status(0, T0 - Z2000 - 1, 4) == (0x05, 0)  # before the first interval
    assert status(0, 0, 0) == (0x05, 0)  # nothing asked: no intervals
    for channel in (2, 3):  # reactive channels: defined by SE, not recorded here
        assert status(channel, 0, 4) == (0x02, 0)
    for channel in (4, 7, 8, 0xFF):
        assert status(channel, 0, 4) == (0x01, 0)
    empty = MeteringServer()
    assert answer(empty, request(0x00, get_profile(0, 0, 4)), now)[1].status == 0x05


def test_snapshots_that_do_not_exist_and_causes():
    m, now = meter_with_history()
    z = int(now) - Z2000
    assert answer(m, request(0x06, get_snapshot(0, 0xFFFFFFFF, 1, 0xFFFFFFFF)), now) == (
        "default", S.NOT_FOUND)  # only one snapshot: offset 1 does not exist
    assert answer(m, request(0x06, get_snapshot(z + 1, 0xFFFFFFFF, 0, 0xFFFFFFFF)), now) == (
        "default", S.NOT_FOUND)  # none after the window start
    assert answer(m, request(0x06, get_snapshot(0, 0xFFFFFFFF, 0, 0x00000002)), now) == (
        "default", S.NOT_FOUND)  # none with that cause
    cmd, pub = answer(m, request(0x06, get_snapshot(0, 0xFFFFFFFF, 0, 0xFFFFFFFF)), now)
    assert cmd == 0x06 and pub.snapshot_id == 1 and pub.total_snapshots_found == 1
    # TakeSnapshot: "manually triggered from client" is accepted, a cause of the meter's
    # own (end of billing period ...) or none at all is "cause not supported" (0x01)
    for cause, want in ((0x400, 0x00), (0x002, 0x01), (0x0, 0x01), (0xFFFFFFFF, 0x01)):
        cmd, rsp = answer(m, request(0x05, t.uint32_t(cause).serialize()), now)
        assert cmd == 0x05 and rsp.snapshot_confirmation == want
        assert (rsp.snapshot_id != 0) == (want == 0)


def test_fast_poll_limits():
    m, now = meter_with_history(1)
    cmd, rsp = answer(m, request(0x03, bytes([0, 255])), now)  # 0 s, 255 minutes
    assert rsp.applied_update_period == 2  # never faster than FastPollUpdatePeriod
    assert rsp.fast_poll_mode_end_time == int(now) + 15 * 60 - Z2000  # at most 15 minutes
    cmd, rsp = answer(m, request(0x03, bytes([30, 15])), now + 600)
    assert rsp.applied_update_period == 30
    assert rsp.fast_poll_mode_end_time == int(now) + 15 * 60 - Z2000  # not extended
    cmd, rsp = answer(m, request(0x03, bytes([2, 1])), now + 901)  # a new fast poll period
    assert rsp.fast_poll_mode_end_time == int(now) + 901 + 60 - Z2000


def test_supply_field_and_authority_statuses():
    m, now = meter_with_history(1)
    p = m.supply.provider_id
    cases = [  # (source, command, payload, status)
        (HUB, 0x0B, change_supply(p, 1, 0, 3), S.INVALID_VALUE),  # reserved supply status
        (HUB, 0x0B, change_supply(p, 2, 0, 0xFF), S.INVALID_VALUE),
        (HUB, 0x0B, change_supply(p + 1, 3, 0, 0), S.NOT_AUTHORIZED),  # not our provider
        (IHD, 0x0B, change_supply(p, 4, 0, 0), S.NOT_AUTHORIZED),  # not the trust centre
        (HUB, 0x0B, change_supply(p, 5, 0xFFFFFFFF, 0), S.NOT_FOUND),  # nothing to cancel
        (HUB, 0x0B, change_supply(p, 6, 0, 0)[:-3], S.MALFORMED_COMMAND),  # truncated
        (IHD, 0x0C, b"\x00", S.INVALID_VALUE),  # LocalChangeSupply: 1 and 2 only
        (IHD, 0x0C, b"\x03", S.INVALID_VALUE),
        (IHD, 0x0C, b"", S.MALFORMED_COMMAND),
        (IHD, 0x0D, t.uint32_t(1).serialize() + bytes([0, 0, 0, 1]), S.NOT_AUTHORIZED),
        (HUB, 0x0D, t.uint32_t(1).serialize() + bytes([0, 0, 3, 1]), S.INVALID_VALUE),
        (HUB, 0x0D, t.uint32_t(1).serialize() + bytes([0, 0]), S.MALFORMED_COMMAND),
        (IHD, 0x0A, t.uint32_t(p).serialize() + t.uint32_t(9).serialize(), S.NOT_AUTHORIZED),
        (HUB, 0x0A, t.uint32_t(p + 1).serialize() + t.uint32_t(9).serialize(),
         S.NOT_AUTHORIZED),
        (HUB, 0x00, b"\x00\x00", S.MALFORMED_COMMAND),  # GetProfile cut short
        (HUB, 0x03, b"\x01", S.MALFORMED_COMMAND),
        (HUB, 0x05, b"\x00\x04", S.MALFORMED_COMMAND),
        (HUB, 0x06, b"\x00" * 12, S.MALFORMED_COMMAND),
    ]
    before = m.supply.state()
    for src, cmd, payload, want in cases:
        assert answer(m, request(cmd, payload, src=src), now) == ("default", want), (cmd, payload)
    assert m.supply.state() == before and m.supply.relay.closed
    # commands zigpy knows that this meter does not serve, unknown ids, manufacturer ones
    for cmd in (0x01, 0x02, 0x09, 0x0E, 0x0F, 0x10, 0x80, 0xFF):
        assert answer(m, request(cmd, b"\x00" * 8), now) == ("default", S.UNSUP_CLUSTER_COMMAND)
    assert answer(m, request(0x00, get_profile(0, 0, 1), manufacturer=0x1234), now) == (
        "default", S.UNSUP_MANUF_CLUSTER_COMMAND)
    # broadcast supply commands are never obeyed, and never answered
    assert m.handle(request(0x0B, change_supply(p, 50, 0, 0), src=HUB, broadcast=True), now) == []
    assert m.supply.relay.closed


# -- random payloads -----------------------------------------------------------------------
def stored(m: MeteringServer) -> Any:
    r = m.registers
    return copy.deepcopy((
        m.profile.all(0), m.profile.all(1), m.profile.current, r.tiers_delivered,
        r.tiers_received, r.day.current, r.day.history, r.week.current, r.month.current,
        r.blocks.summations, r.blocks.period_delivered, r.last, m.reading))


SERVED = (0x00, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0A, 0x0B, 0x0C, 0x0D)
# command -> what it may change when (and only when) the meter says it succeeded
MAY_CHANGE = {0x05: "snapshots", 0x0B: "supply", 0x0C: "supply", 0x0D: "supply",
              0x0A: "supply", 0x03: "fast_poll", 0x04: "schedules", 0x07: "sessions"}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cmd=st.one_of(st.sampled_from(SERVED), st.integers(0, 255)),
       payload=st.one_of(st.binary(max_size=40), st.binary(min_size=1, max_size=12)),
       src=st.sampled_from([HUB, IHD, 0x1234]), broadcast=st.booleans(),
       tsn=st.integers(0, 255))
def test_random_payloads_never_crash_or_change_stored_data(cmd, payload, src, broadcast, tsn):
    m, now = BASE
    m = copy.deepcopy(m)
    before = stored(m)
    snaps, supply, fast = list(m.snapshots), m.supply.state(), m.fast_poll_until
    schedules, sessions = m.schedules_state(), m.sampling_state()
    req = request(cmd, payload, src=src, broadcast=broadcast, tsn=tsn)
    frames = m.handle(req, now)  # never raises
    if broadcast:
        assert all(not foundation.ZCLHeader.deserialize(f)[0].frame_control.is_general
                   for f in frames)  # no Default Response to a broadcast
    else:
        assert len(frames) == 1
    ok = True
    for f in frames:
        hdr, rest = foundation.ZCLHeader.deserialize(f)
        if hdr.frame_control.is_general:
            rsp, extra = foundation.GENERAL_COMMANDS[hdr.command_id].schema.deserialize(rest)
            assert extra == b"" and rsp.command_id == cmd
            ok = rsp.status == S.SUCCESS
        else:
            fields, extra = ZMetering.client_commands[hdr.command_id].schema.deserialize(rest)
            assert extra == b""
            if hdr.command_id == 0x05:
                ok = fields.snapshot_confirmation == 0
            if hdr.command_id == 0x04:
                ok = any(p.snapshot_schedule_confirmation == 0
                         for p in fields.snapshot_response_payloads)
    assert stored(m) == before  # no Metering command changes energy data
    what = MAY_CHANGE.get(cmd)
    if what != "snapshots" or not ok:
        assert m.snapshots == snaps
    if what != "supply" or not ok or broadcast:
        assert m.supply.state() == supply
    if what != "fast_poll":
        assert m.fast_poll_until == fast
    if what != "schedules" or not ok or broadcast:
        assert m.schedules_state()["schedules"] == schedules["schedules"]
    if what != "sessions" or not ok or broadcast:
        assert m.sampling_state() == sessions


BASE = meter_with_history(30)


@pytest.mark.parametrize("cmd", SERVED)
def test_every_served_command_survives_empty_and_oversized_payloads(cmd):
    m, now = meter_with_history(2)
    for payload in (b"", b"\xff" * 200):
        kind, value = answer(m, request(cmd, payload, src=IHD), now)
        if payload == b"":
            assert (kind, value) == ("default", S.MALFORMED_COMMAND)
