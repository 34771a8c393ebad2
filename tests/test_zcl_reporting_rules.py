"""Attribute reporting of the ZCL foundation server, judged by ZCL r8 2.5.7 and zigpy.

Configure Reporting requests are built, and Report Attributes payloads read, with zigpy's
``foundation`` types (an independent implementation of the ZCL frame formats). The rules
checked are the spec's: the first report follows the configuration; a report waits for the
minimum interval; an analog attribute reports a change of at least its reportable change, a
discrete one any change; the maximum interval forces a report, 0 means none; 0xFFFF removes
the configuration; reports go to whoever configured them. The values are the ones the test
set (the standing charge of a tariff it wrote), never one our code computed.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D

from test_price import T0, block_tariff
from zigpy.zcl import foundation

from sep.clusters.price import PriceServer
from sep.zcl.frames import Request

GC = foundation.GeneralCommand
S = foundation.Status
STANDING = 0x0301  # StandingCharge, uint32 (analog), reportable
LABEL_1 = 0x0000  # Tier1PriceLabel, octet string (discrete), reportable
IHD, IHD_EP = 0x3B3B, 7


def configure(s: PriceServer, attr: int, type_id: int, min_i: int, max_i: int,
              change: int | None = None, *, src: int = IHD, now: float = T0) -> int:
    rec = foundation.AttributeReportingConfig()
    rec.direction = foundation.ReportingDirection.SendReports
    rec.attrid = attr
    rec.datatype = type_id
    rec.min_interval = min_i
    rec.max_interval = max_i
    if change is not None:
        rec.reportable_change = change
    header = foundation.ZCLHeader.general(1, GC.Configure_Reporting)
    req = Request(src_nwk=src, src_ep=IHD_EP, dst_ep=1, profile_id=0x0109, cluster_id=0x0700,
                  header=header, payload=rec.serialize())
    (frame,) = s.handle(req, now)
    hdr, rest = foundation.ZCLHeader.deserialize(frame)
    assert hdr.command_id == GC.Configure_Reporting_rsp
    rsp, _ = foundation.ConfigureReportingResponse.deserialize(rest)
    return int(rsp[0].status)


def reports(s: PriceServer, now: float) -> dict[tuple[int, int], list[tuple[int, object]]]:
    """What is due at ``now``, by destination, as zigpy reads the Report Attributes."""
    out = {}
    schema = foundation.GENERAL_COMMANDS[GC.Report_Attributes].schema
    for dst, payload in s.reporter.due(now).items():
        value, rest = schema.deserialize(payload)
        assert rest == b""
        out[dst] = [(int(r.attrid), r.value.value) for r in value.attribute_reports]
    return out


def server() -> PriceServer:
    s = PriceServer(tariff=block_tariff(7003))
    s.tick(float(T0))
    s.take_outbox()
    return s


def set_standing(s: PriceServer, value: str, now: float) -> None:
    s.tariff = dataclasses.replace(s.tariff, standing_charge=D(value))
    s._install_getters()


def test_analog_reports_follow_min_max_and_reportable_change():
    s = server()
    assert configure(s, STANDING, 0x23, 10, 100, 500) == S.SUCCESS  # 0.05 GBP a day
    assert reports(s, T0) == {(IHD, IHD_EP): [(STANDING, 5312)]}  # first: at once
    assert reports(s, T0 + 1) == {}
    set_standing(s, "0.5400", T0 + 2)  # +88: under the reportable change
    assert reports(s, T0 + 20) == {}
    set_standing(s, "0.5812", T0 + 21)  # +500 from the last reported: exactly the change
    assert reports(s, T0 + 21) == {(IHD, IHD_EP): [(STANDING, 5812)]}
    set_standing(s, "0.7000", T0 + 22)  # a big change, but within the minimum interval
    assert reports(s, T0 + 30) == {}
    assert reports(s, T0 + 31) == {(IHD, IHD_EP): [(STANDING, 7000)]}  # 10 s after the last
    # the maximum interval: a report without a change, 100 s after the last
    assert reports(s, T0 + 130) == {}
    assert reports(s, T0 + 131) == {(IHD, IHD_EP): [(STANDING, 7000)]}
    set_standing(s, "0.6999", T0 + 140)  # -1: under the change, yet reported at the maximum
    assert reports(s, T0 + 200) == {}
    assert reports(s, T0 + 231) == {(IHD, IHD_EP): [(STANDING, 6999)]}


def test_a_zero_reportable_change_reports_any_change_and_max_zero_means_no_periodic_report():
    s = server()
    assert configure(s, STANDING, 0x23, 0, 0, 0) == S.SUCCESS
    assert reports(s, T0) == {(IHD, IHD_EP): [(STANDING, 5312)]}
    assert reports(s, T0 + 100_000) == {}  # no maximum interval: nothing without a change
    set_standing(s, "0.5313", T0 + 100_001)  # the smallest change
    assert reports(s, T0 + 100_001) == {(IHD, IHD_EP): [(STANDING, 5313)]}


def test_discrete_attributes_report_any_change_and_0xffff_removes_the_configuration():
    s = server()
    assert configure(s, LABEL_1, 0x41, 0, 3600) == S.SUCCESS
    (first,) = reports(s, T0).values()
    assert first[0][0] == LABEL_1 and bytes(first[0][1]) == b"Night"
    assert reports(s, T0 + 5) == {}
    tiers = list(s.tariff.tiers)
    tiers[0] = dataclasses.replace(tiers[0], label="Nuit")
    s.tariff = dataclasses.replace(s.tariff, tiers=tuple(tiers))
    s._install_getters()
    (second,) = reports(s, T0 + 6).values()
    assert bytes(second[0][1]) == b"Nuit"
    assert configure(s, LABEL_1, 0x41, 0, 0xFFFF, now=T0 + 7) == S.SUCCESS
    assert s.reporter.config_for(LABEL_1) is None
    assert reports(s, T0 + 10_000) == {}


def test_two_displays_get_their_own_reports_in_one_frame_each():
    s = server()
    assert configure(s, STANDING, 0x23, 0, 60, 1, src=0x1111) == S.SUCCESS
    assert configure(s, LABEL_1, 0x41, 0, 60, src=0x1111) == S.SUCCESS
    assert configure(s, STANDING, 0x23, 0, 60, 1, src=0x2222) == S.SUCCESS
    got = reports(s, T0)
    assert sorted(got) == [(0x1111, IHD_EP), (0x2222, IHD_EP)]
    assert sorted(a for a, _ in got[(0x1111, IHD_EP)]) == [LABEL_1, STANDING]
    assert got[(0x2222, IHD_EP)] == [(STANDING, 5312)]
    assert s.reporter.config_for(STANDING).dst_nwk in (0x1111, 0x2222)
    assert s.reporter.config_for(0x0302) is None


def test_one_attribute_not_due_does_not_hold_back_another():
    s = server()
    assert configure(s, STANDING, 0x23, 100, 0, 1) == S.SUCCESS  # configured first
    assert configure(s, LABEL_1, 0x41, 0, 0) == S.SUCCESS
    assert sorted(a for a, _ in reports(s, T0)[(IHD, IHD_EP)]) == [LABEL_1, STANDING]
    # both change; the standing charge is inside its minimum interval, the label is not
    set_standing(s, "0.6000", T0 + 5)
    tiers = list(s.tariff.tiers)
    tiers[0] = dataclasses.replace(tiers[0], label="Nuit")
    s.tariff = dataclasses.replace(s.tariff, tiers=tuple(tiers))
    s._install_getters()
    (got,) = reports(s, T0 + 5).values()
    assert [a for a, _ in got] == [LABEL_1]
    # the standing charge unchanged past its minimum: nothing from it, the label changes again
    assert reports(s, T0 + 100) == {(IHD, IHD_EP): [(STANDING, 6000)]}
    tiers[0] = dataclasses.replace(tiers[0], label="Night")
    s.tariff = dataclasses.replace(s.tariff, tiers=tuple(tiers))
    s._install_getters()
    (got,) = reports(s, T0 + 300).values()
    assert [a for a, _ in got] == [LABEL_1]


def test_removing_a_configuration_that_does_not_exist_is_success():
    s = server()
    assert configure(s, STANDING, 0x23, 0, 0xFFFF, 1) == S.SUCCESS
    assert s.reporter.config_for(STANDING) is None and reports(s, T0) == {}
