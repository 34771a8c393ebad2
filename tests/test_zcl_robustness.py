"""Bad input to the meter's SE endpoint: the right ZCL status, or dropped; never a crash.

Requests are built and responses decoded with zigpy's foundation types (an independent
implementation of the ZCL frame format); statuses are the ZCL r8 numbers.
"""

from __future__ import annotations

import pytest
import zigpy.types as t
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zigpy.zcl import foundation

from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock

GC = foundation.GeneralCommand
S = foundation.Status
SE = 0x0109


@pytest.fixture
async def ep():
    app = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:ee:01"), clock=ManualClock(),
                   air=VirtualAir())
    await app.poll_metrology()
    return app.endpoint


def general(cmd: int, payload: bytes, tsn: int = 0x33, ddr: bool = False,
            manufacturer: int | None = None) -> bytes:
    hdr = foundation.ZCLHeader.general(tsn, cmd, manufacturer=manufacturer)
    hdr.frame_control = hdr.frame_control.replace(disable_default_response=ddr)
    return hdr.serialize() + payload


def cluster_cmd(cmd: int, payload: bytes, tsn: int = 0x34) -> bytes:
    return foundation.ZCLHeader.cluster(tsn, cmd).serialize() + payload


def send(ep, data: bytes, cluster: int = 0x0702, profile: int = SE, dst_ep: int = 1,
         broadcast: bool = False):
    return ep.handle(src_nwk=0x1234, src_ep=1, dst_ep=dst_ep, profile_id=profile,
                     cluster_id=cluster, data=data, broadcast=broadcast, now=1.8e9)


def decode(reply):
    hdr, rest = foundation.ZCLHeader.deserialize(reply.data)
    schema = foundation.GENERAL_COMMANDS[hdr.command_id].schema
    args, extra = schema.deserialize(rest)
    return hdr, args


def default_status(replies) -> int:
    assert len(replies) == 1
    hdr, args = decode(replies[0])
    assert hdr.command_id == GC.Default_Response
    return int(args.status)


def read(ep, *attrs: int, cluster: int = 0x0702):
    payload = t.List[t.uint16_t](attrs).serialize()
    (reply,) = send(ep, general(GC.Read_Attributes, payload), cluster=cluster)
    hdr, args = decode(reply)
    assert hdr.command_id == GC.Read_Attributes_rsp and hdr.tsn == 0x33
    return {int(r.attrid): r for r in args.status_records}


def write(ep, attr: int, type_id: int, value, cluster: int, cmd=GC.Write_Attributes):
    rec = foundation.Attribute(attrid=attr, value=foundation.TypeValue(type=type_id, value=value))
    return send(ep, general(cmd, rec.serialize()), cluster=cluster)


async def test_read_unknown_attribute_is_unsupported(ep):
    recs = read(ep, 0x0000, 0x7777)
    assert recs[0x0000].status == S.SUCCESS
    assert recs[0x7777].status == S.UNSUPPORTED_ATTRIBUTE


async def test_write_read_only_wrong_type_and_out_of_range(ep):
    (r,) = write(ep, 0x0000, 0x25, t.uint48_t(5), 0x0702)
    _, args = decode(r)
    assert args.status_records[0].status == S.READ_ONLY
    (r,) = write(ep, 0x0010, 0x21, t.uint16_t(5), 0x0000)  # LocationDescription is a string
    assert decode(r)[1].status_records[0].status == S.INVALID_DATA_TYPE
    (r,) = write(ep, 0x0010, 0x42, t.CharacterString("x" * 17), 0x0000)
    assert decode(r)[1].status_records[0].status == S.INVALID_VALUE
    (r,) = write(ep, 0x0010, 0x42, t.CharacterString("kitchen"), 0x0000)
    assert decode(r)[1].status_records[0].status == S.SUCCESS
    assert read(ep, 0x0010, cluster=0x0000)[0x0010].value.value == "kitchen"


async def test_undivided_write_with_one_bad_record_writes_nothing(ep):
    good = foundation.Attribute(attrid=0x0010, value=foundation.TypeValue(
        type=0x42, value=t.CharacterString("hall")))
    bad = foundation.Attribute(attrid=0x7777, value=foundation.TypeValue(
        type=0x20, value=t.uint8_t(1)))
    (r,) = send(ep, general(GC.Write_Attributes_Undivided, good.serialize() + bad.serialize()),
                cluster=0x0000)
    statuses = {int(x.attrid): x.status for x in decode(r)[1].status_records}
    assert statuses == {0x7777: S.UNSUPPORTED_ATTRIBUTE}
    assert read(ep, 0x0010, cluster=0x0000)[0x0010].value.value == ""


async def test_unknown_commands(ep):
    assert default_status(send(ep, cluster_cmd(0x42, b""))) == S.UNSUP_CLUSTER_COMMAND
    assert default_status(send(ep, general(0x1F, b""))) == S.UNSUP_GENERAL_COMMAND
    assert default_status(send(ep, general(GC.Read_Attributes, b"\x00\x00",
                                           manufacturer=0x1234))) == S.UNSUP_MANUF_GENERAL_COMMAND


async def test_unknown_cluster_wrong_profile_wrong_endpoint(ep):
    assert default_status(send(ep, general(GC.Read_Attributes, b"\x00\x00"),
                               cluster=0x0300)) == S.UNSUPPORTED_CLUSTER
    assert send(ep, general(GC.Read_Attributes, b"\x00\x00"), profile=0xC05E) == []
    assert send(ep, general(GC.Read_Attributes, b"\x00\x00"), dst_ep=7) == []
    # broadcast errors get no default response
    assert send(ep, general(0x1F, b""), broadcast=True) == []


async def test_truncated_frames(ep):
    good = general(GC.Read_Attributes, b"\x00\x00\x00\x04")
    for cut in range(len(good)):
        replies = send(ep, good[:cut])
        if cut < 3:  # no complete ZCL header: no transaction to answer
            assert replies == []
        elif cut == 3:  # an empty attribute list: an empty (valid) response
            hdr, args = decode(replies[0])
            assert list(args.status_records) == []
        elif (cut - 3) % 2:  # half an attribute id
            assert default_status(replies) == S.MALFORMED_COMMAND
    cfg = foundation.AttributeReportingConfig()
    cfg.direction, cfg.attrid, cfg.datatype = 0, 0x0000, 0x25
    cfg.min_interval, cfg.max_interval, cfg.reportable_change = 1, 60, 1
    full = general(GC.Configure_Reporting, cfg.serialize())
    for cut in range(4, len(full)):
        assert default_status(send(ep, full[:cut])) == S.MALFORMED_COMMAND
    # a truncated GetProfile (cluster command) is malformed too
    assert default_status(send(ep, cluster_cmd(0x00, b"\x00\x00"))) == S.MALFORMED_COMMAND


async def test_configure_reporting_errors(ep):
    def cfg(attr, dtype):
        c = foundation.AttributeReportingConfig()
        c.direction, c.attrid, c.datatype = 0, attr, dtype
        c.min_interval, c.max_interval, c.reportable_change = 1, 60, 1
        return c.serialize()

    for attr, dtype, want in ((0x7777, 0x20, S.UNSUPPORTED_ATTRIBUTE),
                              (0x0000, 0x21, S.INVALID_DATA_TYPE)):
        (r,) = send(ep, general(GC.Configure_Reporting, cfg(attr, dtype)))
        _, args = decode(r)
        assert args.status_records[0].status == want


# One meter takes every generated frame in turn, on purpose: state left by one bad frame
# must not break the next.
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cluster=st.sampled_from([0x0000, 0x0003, 0x000A, 0x0702, 0x0019, 0x0B04]),
       data=st.binary(max_size=64), broadcast=st.booleans())
async def test_random_frames_never_crash(ep, cluster, data, broadcast):
    replies = send(ep, data, cluster=cluster, broadcast=broadcast)
    for reply in replies:
        hdr, _ = foundation.ZCLHeader.deserialize(reply.data)
        assert hdr.tsn == data[1 if not data[0] & 0x04 else 3]
        assert hdr.direction == foundation.Direction.Server_to_Client
    assert read(ep, 0x0000)[0x0000].status == S.SUCCESS  # still serving


# -- what the endpoint campaign found (tests/se_campaign.py), kept as regressions ----------
async def test_configure_reporting_without_records_is_malformed(ep):
    # was: ValueError("Cannot serialize empty list") caught into FAILURE
    for cluster in (0x0000, 0x0003, 0x000A, 0x0700, 0x0702):
        assert default_status(send(ep, general(GC.Configure_Reporting, b""),
                                   cluster=cluster)) == S.MALFORMED_COMMAND
        assert default_status(send(ep, general(GC.Read_Reporting_Configuration, b""),
                                   cluster=cluster)) == S.MALFORMED_COMMAND
    assert ep.internal_errors == 0


async def test_a_default_response_is_never_answered(ep):
    # ZCL r8 2.5.12.2, manufacturer-specific or not, on a served cluster or not
    for manufacturer in (None, 0x1234):
        for cluster in (0x0702, 0x0300):
            assert send(ep, general(GC.Default_Response, b"\x00\x00", manufacturer=manufacturer),
                        cluster=cluster) == []


async def test_a_string_zigpy_cannot_send_back_is_not_stored(ep):
    # a UTF-8 character cut in two (the stored text would be longer than its length octet)
    raw = "é£".encode() + "€".encode()[:2]
    payload = t.uint16_t(0x0010).serialize() + bytes([0x42, len(raw)]) + raw
    (r,) = send(ep, general(GC.Write_Attributes, payload), cluster=0x0000)
    assert decode(r)[1].status_records[0].status == S.INVALID_VALUE
    assert read(ep, 0x0010, cluster=0x0000)[0x0010].value.value == ""  # still readable


async def test_a_billing_period_no_utc_time_can_end_is_refused():
    from sep.app import MeterApp, MeterSettings

    app = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:ee:02"), clock=ManualClock(),
                   air=VirtualAir())
    before = app.price.tariff
    # PublishBillingPeriod from the trust centre: provider, event, start now, 0xFFFFFF months
    payload = (t.uint32_t(before.provider_id).serialize() + t.uint32_t(1).serialize()
               + t.uint32_t(0).serialize() + bytes([0xFF, 0xFF, 0xFF, 0x03, 0x00]))
    hdr = foundation.ZCLHeader.cluster(9, 0x09, direction=foundation.Direction.Server_to_Client)
    (r,) = app.endpoint.handle(src_nwk=0x0000, src_ep=1, dst_ep=1, profile_id=SE,
                               cluster_id=0x0700, data=hdr.serialize() + payload,
                               broadcast=False, now=1.8e9)
    assert default_status([r]) == S.INVALID_VALUE
    assert app.price.tariff is before  # refused: nothing changed
    # and a client asking for the billing period still gets a readable answer
    ask = foundation.ZCLHeader.cluster(10, 0x0B).serialize() + t.uint32_t(0).serialize() \
        + t.uint32_t(0xFFFFFFFF).serialize() + t.uint8_t(1).serialize() + b"\x00"
    replies = app.endpoint.handle(src_nwk=0x3B3B, src_ep=1, dst_ep=1, profile_id=SE,
                                  cluster_id=0x0700, data=ask, broadcast=False, now=1.8e9)
    assert app.endpoint.internal_errors == 0 and len(replies) == 1


def reporting_of(ep, attr: int):
    """Read Reporting Configuration of ``attr``, parsed by zigpy's response schema."""
    rec = foundation.ReadReportingConfigRecord()
    rec.direction, rec.attrid = 0, attr
    (r,) = send(ep, general(GC.Read_Reporting_Configuration, rec.serialize()))
    hdr, args = decode(r)
    assert hdr.command_id == GC.Read_Reporting_Configuration_rsp
    (got,) = args.attribute_configs
    return got


async def test_configure_reporting_min_above_max_is_invalid_value_and_changes_nothing(ep):
    """ZCL r8 2.5.7.3: a minimum reporting interval above the maximum (the maximum neither
    0x0000, no periodic reports, nor 0xFFFF, stop reporting) is INVALID_VALUE."""
    def configure(lo: int, hi: int) -> int:
        c = foundation.AttributeReportingConfig()
        c.direction, c.attrid, c.datatype = 0, 0x0000, 0x25
        c.min_interval, c.max_interval, c.reportable_change = lo, hi, 1
        (r,) = send(ep, general(GC.Configure_Reporting, c.serialize()))
        _, args = decode(r)
        return args.status_records[0].status

    assert configure(10, 60) == S.SUCCESS
    for lo, hi in [(61, 60), (0xFFFE, 1), (2, 1)]:
        assert configure(lo, hi) == S.INVALID_VALUE, (lo, hi)
        got = reporting_of(ep, 0x0000)
        assert got.status == S.SUCCESS
        assert (got.config.min_interval, got.config.max_interval) == (10, 60)  # kept
    for lo, hi in [(60, 60), (120, 0)]:  # equal is fine; max 0: no periodic reports
        assert configure(lo, hi) == S.SUCCESS, (lo, hi)
        got = reporting_of(ep, 0x0000)
        assert (got.config.min_interval, got.config.max_interval) == (lo, hi)
