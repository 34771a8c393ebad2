"""The ZCL foundation server (read/write attributes, reporting configuration, discovery,
default responses), sans-IO, judged by ZCL r8 and zigpy.

Requests are built and every answer parsed with zigpy's ``foundation`` types and command
schemas (an independent implementation of the ZCL frame formats); the statuses are ZCL r8's
numbers as zigpy names them; the expected values are the ones the test set on the server.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import zigpy.types as t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Basic

from sep.clusters.general import BasicServer
from sep.clusters.price import PriceServer
from sep.zcl.frames import Request

GC = foundation.GeneralCommand
S = foundation.Status
SRC, SRC_EP = 0x4A4A, 5
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def basic() -> BasicServer:
    return BasicServer(manufacturer="Acme", model="M1", sw_build_id="1.2.3", app_version=7,
                       hw_version=3, date_code="20260101")


def req(command: int, payload: bytes, *, general: bool = True, ddr: bool = False,
        broadcast: bool = False, manufacturer: int | None = None, cluster: int = 0x0000
        ) -> Request:
    make = foundation.ZCLHeader.general if general else foundation.ZCLHeader.cluster
    header = make(0x21, command, manufacturer=manufacturer)
    header.frame_control = header.frame_control.replace(disable_default_response=ddr)
    return Request(src_nwk=SRC, src_ep=SRC_EP, dst_ep=1, profile_id=0x0109, cluster_id=cluster,
                   header=header, payload=payload, broadcast=broadcast)


def answer(frames: list[bytes], command: int):
    (frame,) = frames
    hdr, rest = foundation.ZCLHeader.deserialize(frame)
    assert hdr.command_id == command and hdr.tsn == 0x21
    assert hdr.frame_control.direction == foundation.Direction.Server_to_Client
    schema = foundation.GENERAL_COMMANDS[command].schema
    value, extra = schema.deserialize(rest)
    assert extra == b""
    return value


def default_status(frames: list[bytes]) -> int:
    return int(answer(frames, GC.Default_Response).status)


def configure_then_read(p: Any, cfg: Any, pairs: Any) -> Any:
    """Configure Reporting with ``cfg`` on Price, then Read Reporting Configuration of
    ``pairs`` ((direction, attribute id), ...): the response, parsed by zigpy."""
    answer(p.handle(req(GC.Configure_Reporting, cfg.serialize(), cluster=0x0700), 0),
           GC.Configure_Reporting_rsp)
    recs = b"".join(foundation.ReadReportingConfigRecord(direction=d, attrid=a).serialize()
                    for d, a in pairs)
    return answer(p.handle(req(GC.Read_Reporting_Configuration, recs, cluster=0x0700), 0),
                  GC.Read_Reporting_Configuration_rsp)


def test_read_attributes_statuses_and_values():
    s = basic()
    rsp = answer(s.handle(req(GC.Read_Attributes, t.List[t.uint16_t](
        [0x0000, 0x0001, 0x0004, 0x4000, 0x7777]).serialize()), 0), GC.Read_Attributes_rsp)
    recs = {int(r.attrid): r for r in rsp.status_records}
    assert [int(r.attrid) for r in rsp.status_records] == [0x0000, 0x0001, 0x0004, 0x4000, 0x7777]
    assert recs[0x0000].value.value == 8 and int(recs[0x0000].value.type) == 0x20
    assert recs[0x0001].value.value == 7
    assert recs[0x0004].value.value == "Acme" and int(recs[0x0004].value.type) == 0x42
    assert recs[0x4000].value.value == "1.2.3"
    assert recs[0x7777].status == S.UNSUPPORTED_ATTRIBUTE
    # an odd number of octets is not a list of attribute ids
    assert default_status(s.handle(req(GC.Read_Attributes, b"\x00\x00\x01"), 0)) \
        == S.MALFORMED_COMMAND
    # a broadcast read is answered (the only broadcast request that is)
    assert answer(s.handle(req(GC.Read_Attributes, b"\x00\x00", broadcast=True), 0),
                  GC.Read_Attributes_rsp).status_records[0].value.value == 8


def write_rec(attr: int, type_id: int, value) -> bytes:
    return foundation.Attribute(attrid=attr, value=foundation.TypeValue(
        type=type_id, value=value)).serialize()


def test_write_attributes_the_three_ways():
    s = basic()
    loc = write_rec(0x0010, 0x42, t.CharacterString("hall"))
    bad = write_rec(0x0000, 0x20, t.uint8_t(9))  # ZCLVersion is read-only
    # Write Attributes: the good record is written, the bad one reported
    rsp = answer(s.handle(req(GC.Write_Attributes, loc + bad), 0), GC.Write_Attributes_rsp)
    assert [(int(r.attrid), r.status) for r in rsp.status_records] == [(0x0000, S.READ_ONLY)]
    assert s.read_value(0x0010) == "hall"
    # all good: one SUCCESS record
    rsp = answer(s.handle(req(GC.Write_Attributes, write_rec(
        0x0010, 0x42, t.CharacterString("loft"))), 0), GC.Write_Attributes_rsp)
    assert [r.status for r in rsp.status_records] == [S.SUCCESS]
    assert s.read_value(0x0010) == "loft"
    # undivided with a bad record: nothing written
    rsp = answer(s.handle(req(GC.Write_Attributes_Undivided, write_rec(
        0x0010, 0x42, t.CharacterString("cellar")) + bad), 0), GC.Write_Attributes_rsp)
    assert [(int(r.attrid), r.status) for r in rsp.status_records] == [(0x0000, S.READ_ONLY)]
    assert s.read_value(0x0010) == "loft"
    # no response: written, nothing sent
    assert s.handle(req(GC.Write_Attributes_No_Response, write_rec(
        0x0010, 0x42, t.CharacterString("roof"))), 0) == []
    assert s.read_value(0x0010) == "roof"
    for rec, want in ((write_rec(0x7777, 0x20, t.uint8_t(1)), S.UNSUPPORTED_ATTRIBUTE),
                      (write_rec(0x0010, 0x41, t.LVBytes(b"x")), S.INVALID_DATA_TYPE),
                      (write_rec(0x0010, 0x42, t.CharacterString("x" * 17)), S.INVALID_VALUE)):
        rsp = answer(s.handle(req(GC.Write_Attributes, rec), 0), GC.Write_Attributes_rsp)
        assert [r.status for r in rsp.status_records] == [want]
    assert s.read_value(0x0010) == "roof"


def test_default_responses_follow_zcl_2_5_12():
    s = basic()
    assert default_status(s.handle(req(0x1F, b""), 0)) == S.UNSUP_GENERAL_COMMAND
    assert default_status(s.handle(req(0x00, b"", general=False), 0)) \
        == S.UNSUP_CLUSTER_COMMAND
    assert default_status(s.handle(req(GC.Read_Attributes, b"\x00\x00",
                                       manufacturer=0x1234), 0)) \
        == S.UNSUP_MANUF_GENERAL_COMMAND
    assert default_status(s.handle(req(0x00, b"", general=False, manufacturer=0x1234), 0)) \
        == S.UNSUP_MANUF_CLUSTER_COMMAND
    # an error is reported even with "disable default response" set; a broadcast gets none
    assert default_status(s.handle(req(0x1F, b"", ddr=True), 0)) == S.UNSUP_GENERAL_COMMAND
    assert s.handle(req(0x1F, b"", broadcast=True), 0) == []
    # a default response is never answered
    assert s.handle(req(GC.Default_Response, b"\x00\x00"), 0) == []


def test_discover_attributes_and_commands():
    s = basic()
    ids = sorted(Basic.attributes)
    served = [a for a in ids if s.supported(a)]
    disc = foundation.GENERAL_COMMANDS[GC.Discover_Attributes].schema
    rsp = answer(s.handle(req(GC.Discover_Attributes, disc(
        start_attribute_id=0x0004, max_attribute_ids=2).serialize()), 0),
        GC.Discover_Attributes_rsp)
    assert [int(r.attrid) for r in rsp.attribute_info] == [a for a in served if a >= 4][:2]
    assert rsp.discovery_complete == 0
    assert int(rsp.attribute_info[0].datatype) == 0x42  # ManufacturerName: string
    rsp = answer(s.handle(req(GC.Discover_Attributes, disc(
        start_attribute_id=0x0010, max_attribute_ids=50).serialize()), 0),
        GC.Discover_Attributes_rsp)
    assert [int(r.attrid) for r in rsp.attribute_info] == [a for a in served if a >= 0x10]
    assert rsp.discovery_complete == 1
    ext = answer(s.handle(req(GC.Discover_Attribute_Extended, disc(
        start_attribute_id=0x0000, max_attribute_ids=50).serialize()), 0),
        GC.Discover_Attribute_Extended_rsp)
    acl = {int(r.attrid): int(r.acl) for r in ext.extended_attr_info}
    assert acl[0x0000] & 0x07 == 0x01  # ZCLVersion: read
    assert acl[0x0010] & 0x07 == 0x03  # LocationDescription: read and write
    # commands: Price receives 0x00..; Basic generates none
    p = PriceServer()
    dc = foundation.GENERAL_COMMANDS[GC.Discover_Commands_Received].schema
    rsp = answer(p.handle(req(GC.Discover_Commands_Received, dc(
        start_command_id=0x01, max_command_ids=3).serialize(), cluster=0x0700), 0),
        GC.Discover_Commands_Received_rsp)
    assert list(rsp.command_ids) == [1, 2, 3] and rsp.discovery_complete == 0
    rsp = answer(p.handle(req(GC.Discover_Commands_Received, dc(
        start_command_id=0x00, max_command_ids=255).serialize(), cluster=0x0700), 0),
        GC.Discover_Commands_Received_rsp)
    assert list(rsp.command_ids) == sorted(p.commands) and rsp.discovery_complete == 1
    rsp = answer(s.handle(req(GC.Discover_Commands_Generated, dc(
        start_command_id=0, max_command_ids=10).serialize()), 0),
        GC.Discover_Commands_Generated_rsp)
    assert list(rsp.command_ids) == [] and rsp.discovery_complete == 1


def test_read_reporting_configuration():
    p = PriceServer()
    cfg = foundation.AttributeReportingConfig()
    cfg.direction, cfg.attrid, cfg.datatype = 0, 0x0301, 0x23
    cfg.min_interval, cfg.max_interval, cfg.reportable_change = 30, 900, 25
    rsp = configure_then_read(p, cfg, ((0, 0x0301), (0, 0x0302), (0, 0x7777), (1, 0x0301)))
    got = {(int(r.config.direction), int(r.config.attrid)): r for r in rsp.attribute_configs}
    ok = got[(0, 0x0301)]
    assert ok.status == S.SUCCESS and int(ok.config.datatype) == 0x23
    assert (ok.config.min_interval, ok.config.max_interval, ok.config.reportable_change) \
        == (30, 900, 25)
    assert got[(0, 0x0302)].status == S.NOT_FOUND
    assert got[(0, 0x7777)].status == S.UNSUPPORTED_ATTRIBUTE
    assert got[(1, 0x0301)].status == S.UNREPORTABLE_ATTRIBUTE
    assert default_status(p.handle(req(GC.Read_Reporting_Configuration, b"",
                                       cluster=0x0700), 0)) == S.MALFORMED_COMMAND


def test_cluster_commands_record_the_client_tolerate_trailing_octets_and_answer_status():
    p = PriceServer()
    p.tick(T0)
    get_current = req(0x00, b"\x01\xee", general=False, cluster=0x0700)  # + an octet of later ZCL
    (frame,) = p.handle(get_current, T0)
    hdr, _ = foundation.ZCLHeader.deserialize(frame)
    assert hdr.command_id == 0x00  # PublishPrice (SE D.4.2.4.1)
    assert (SRC, SRC_EP) in p.clients
    other = dataclasses.replace(req(0x00, b"\x01", general=False, cluster=0x0700,
                                    broadcast=True), src_nwk=0x5555)
    p.handle(other, T0)
    assert (0x5555, SRC_EP) not in p.clients  # a broadcast request does not enrol
    # PriceAcknowledgement: the handler's status goes into the Default Response
    ack = b"\xcd\xab\x00\x00" + b"\x01\x02\x03\x04" + bytes(5)
    assert default_status(p.handle(req(0x02, ack, general=False, cluster=0x0700), T0)) \
        == S.NOT_FOUND
    assert default_status(p.handle(req(0x02, b"\x00" * 4 + ack[4:], general=False,
                                       cluster=0x0700), T0)) == S.NOT_AUTHORIZED
    # the commands SE says the Price server generates: 0x00..0x0E (D.4.2.4)
    dc = foundation.GENERAL_COMMANDS[GC.Discover_Commands_Generated].schema
    rsp = answer(p.handle(req(GC.Discover_Commands_Generated, dc(
        start_command_id=0, max_command_ids=255).serialize(), cluster=0x0700), T0),
        GC.Discover_Commands_Generated_rsp)
    assert list(rsp.command_ids) == list(range(0x00, 0x0F))


def test_pushes_carry_fresh_transaction_numbers_and_their_destination():
    p = PriceServer()
    a = p.push(0x00, b"\x00")
    b = p.push(0x00, b"\x00", dst=(0x1234, 9))
    ha, _ = foundation.ZCLHeader.deserialize(a)
    hb, _ = foundation.ZCLHeader.deserialize(b)
    assert hb.tsn == (ha.tsn + 1) % 256
    assert ha.frame_control.frame_type == foundation.FrameType.CLUSTER_COMMAND
    assert a.dst is None and b.dst == (0x1234, 9)
    for _ in range(300):  # the 8-bit number wraps, never leaves 0..255
        p.push(0x00, b"")
    assert [f for f in p.take_outbox()][-1][1] == (ha.tsn + 301) % 256


def test_reporting_configuration_edge_cases():
    p = PriceServer()
    # 0xFFFF removes, whatever the minimum says (ZCL r8 2.5.7.1.6)
    cfg = foundation.AttributeReportingConfig()
    cfg.direction, cfg.attrid, cfg.datatype = 0, 0x0301, 0x23
    cfg.min_interval, cfg.max_interval, cfg.reportable_change = 60, 0xFFFF, 0
    rsp = answer(p.handle(req(GC.Configure_Reporting, cfg.serialize(), cluster=0x0700), 0),
                 GC.Configure_Reporting_rsp)
    assert rsp.status_records[0].status == S.SUCCESS
    cfg.min_interval, cfg.max_interval = 5, 50  # reportable change 0 reads back as 0
    rsp = configure_then_read(p, cfg, ((1, 0x0301), (0, 0x7777), (0, 0x0302), (0, 0x0301)))
    assert [r.status for r in rsp.attribute_configs] == [
        S.UNREPORTABLE_ATTRIBUTE, S.UNSUPPORTED_ATTRIBUTE, S.NOT_FOUND, S.SUCCESS]
    last = rsp.attribute_configs[-1].config
    assert (last.min_interval, last.max_interval, last.reportable_change) == (5, 50, 0)
    # discover extended: StandingCharge is reportable, CommodityType (0x0300) is not
    disc = foundation.GENERAL_COMMANDS[GC.Discover_Attribute_Extended].schema
    ext = answer(p.handle(req(GC.Discover_Attribute_Extended, disc(
        start_attribute_id=0x0300, max_attribute_ids=2).serialize(), cluster=0x0700), 0),
        GC.Discover_Attribute_Extended_rsp)
    acl = {int(r.attrid): int(r.acl) for r in ext.extended_attr_info}
    assert acl[0x0301] & 0x04 and not acl[0x0300] & 0x04


def test_write_failures_list_each_record_in_order():
    s = basic()
    recs = (write_rec(0x4000, 0x42, t.CharacterString("9")) + write_rec(
        0x1234, 0x20, t.uint8_t(1)))
    rsp = answer(s.handle(req(GC.Write_Attributes, recs), 0), GC.Write_Attributes_rsp)
    assert [(int(r.attrid), r.status) for r in rsp.status_records] == [
        (0x4000, S.READ_ONLY), (0x1234, S.UNSUPPORTED_ATTRIBUTE)]
