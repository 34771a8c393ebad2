"""Discover Commands Received / Generated and Discover Attributes list exactly what the
meter implements (ZCL r8 2.5.18-2.5.23), on every cluster of its SE endpoint.

- Received: the advertised ids are the ids that have a handler — every advertised id,
  sent, gets an answer other than UNSUP_CLUSTER_COMMAND, and every other id of the
  cluster's table (and beyond it) gets UNSUP_CLUSTER_COMMAND.
- Generated: every advertised id must be produced by a scenario below (the test fails for
  an advertised id nobody shows being generated, and for a scenario of an id not
  advertised); each produced frame is parsed by zigpy with the cluster's table.
- Attributes: every discovered attribute reads SUCCESS with the discovered data type, and
  every attribute of the cluster's table that reads SUCCESS is discovered.

The answers to the Discover commands are parsed with zigpy's foundation schemas.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from decimal import Decimal

import pytest
from zigpy.zcl import foundation

from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.meter.billing import ClosedBill
from sep.meter.tariff import parse_tariff
from sep.metrology.api import Reading
from sep.zcl.frames import Request

GC = foundation.GeneralCommand
S = foundation.Status
T0 = 1_780_300_800
Z2000 = 946_684_800
HUB, IHD = 0x0000, 0x4242
TARIFF = """
provider_id = 0x0000ABCD
issuer_tariff_id = 31
label = "Everything"
timezone = "UTC"
standing_charge = "0.5"
[[tiers]]
tier = 1
label = "One"
rate = "0.2000"
[blocks]
thresholds_kwh = [5]
period = { start = 2026-01-01T00:00:00Z, duration = 1, timebase = "days" }
[blocks.prices]
1 = ["0.2000", "0.2500"]
[gas]
calorific_value = "39.5"
[co2]
value = "0.233"
[billing_period]
start = 2026-01-01T00:00:00Z
duration = 1
timebase = "months"
[cpp]
cpp1_rate = "0.9000"
[export]
issuer_tariff_id = 32
label = "Export"
[[export.tiers]]
tier = 1
label = "Exp"
rate = "0.0500"
"""


class Meter:
    """The meter's composed SE endpoint, driven sans-IO."""

    def __init__(self, tmp) -> None:
        tariff = tmp / "t.toml"
        tariff.write_text(TARIFF)
        self.clock = ManualClock(T0)
        self.app = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:dc:01", tariff=tariff),
                            clock=self.clock, air=VirtualAir())
        self.now = float(T0)
        for k in range(13):  # an hour of readings, five minutes apart
            self.read(T0 + 300 * k, 100_000 + 90 * k, 10 * k)
        self.tsn = 0

    def read(self, t: float, delivered: int, received: int) -> None:
        self.now = t
        self.app.metering.update(Reading(t, delivered, received, 1000))
        self.app.endpoint.reports(t)

    def request(self, cluster: int, cmd: int, payload: bytes = b"", *, general: bool = False,
                src: int = HUB) -> list[bytes]:
        self.tsn = (self.tsn + 1) & 0xFF
        hdr = (foundation.ZCLHeader.general(self.tsn, cmd) if general
               else foundation.ZCLHeader.cluster(self.tsn, cmd))
        req = Request(src_nwk=src, src_ep=1, dst_ep=1, profile_id=0x0109, cluster_id=cluster,
                      header=hdr, payload=payload)
        return self.app.endpoint.servers[cluster].handle(req, self.now)

    def pushed(self, cluster: int) -> list[bytes]:
        return self.app.endpoint.servers[cluster].take_outbox()


def general_answer(frames: list[bytes], command: int):
    (frame,) = frames
    hdr, rest = foundation.ZCLHeader.deserialize(frame)
    assert hdr.frame_control.is_general and hdr.command_id == command
    value, extra = foundation.GENERAL_COMMANDS[command].schema.deserialize(rest)
    assert extra == b""
    return value


@pytest.fixture
def meter(tmp_path) -> Meter:
    return Meter(tmp_path)


def discover_commands(m: Meter, cluster: int, generated: bool) -> list[int]:
    cmd = GC.Discover_Commands_Generated if generated else GC.Discover_Commands_Received
    rsp_cmd = cmd + 1  # the _rsp ids follow their requests
    got: list[int] = []
    start = 0
    while True:
        rsp = general_answer(m.request(cluster, cmd, bytes([start, 4]), general=True), rsp_cmd)
        got += [int(c) for c in rsp.command_ids]
        if rsp.discovery_complete:
            return got
        start = got[-1] + 1


CLUSTERS = (0x0000, 0x0003, 0x000A, 0x0702, 0x0700, 0x0703, 0x0705)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_commands_received_are_exactly_the_handled_ones(meter, cluster):
    server = meter.app.endpoint.servers[cluster]
    advertised = discover_commands(meter, cluster, generated=False)
    assert advertised == sorted(server.commands)
    table = {int(c) for c in server.cluster.server_commands}
    for cmd in sorted(table | set(range(0x20))):
        frames = meter.request(cluster, cmd, bytes(24))
        statuses = [general_answer([f], GC.Default_Response).status for f in frames
                    if foundation.ZCLHeader.deserialize(f)[0].frame_control.is_general]
        if cmd in advertised:
            assert S.UNSUP_CLUSTER_COMMAND not in statuses, hex(cmd)
        else:
            assert statuses == [S.UNSUP_CLUSTER_COMMAND], hex(cmd)


def u32(v: int) -> bytes:
    return v.to_bytes(4, "little")


def _metering(m: Meter) -> dict[int, Callable[[], list[bytes]]]:
    c = 0x0702
    sample = m.request(c, 0x07, u32(1) + bytes(4) + b"\x00" + (60).to_bytes(2, "little")
                       + (5).to_bytes(2, "little"))

    def sampled() -> list[bytes]:
        for k in range(1, 4):
            m.read(m.now + 60, 200_000 + k, 20)
        return m.request(c, 0x08, (1).to_bytes(2, "little") + bytes(4) + b"\x00"
                         + (5).to_bytes(2, "little"))

    def supply_ack() -> list[bytes]:
        p = m.app.metering.supply.provider_id
        return m.request(c, 0x0B, u32(p) + u32(9) + bytes(8) + b"\x00\x01")

    def schedule() -> list[bytes]:
        return m.request(c, 0x04, u32(1) + b"\x00\x01" + b"\x01" + bytes(4)
                         + (1).to_bytes(3, "little") + b"\x00" + u32(0x00010000))

    return {
        0x00: lambda: m.request(c, 0x00, b"\x00" + bytes(4) + b"\x02"),
        0x03: lambda: m.request(c, 0x03, b"\x02\x05", src=IHD),
        0x04: schedule,
        0x05: lambda: m.request(c, 0x05, u32(0x400), src=IHD),
        0x06: lambda: m.request(c, 0x06, bytes(4) + u32(0xFFFFFFFF) + b"\x00"
                                + u32(0xFFFFFFFF), src=IHD),
        0x07: sampled,
        0x0C: supply_ack,
        0x0D: lambda: sample,
    }


def _price(m: Meter) -> dict[int, Callable[[], list[bytes]]]:
    c, p = 0x0700, m.app.price
    since = bytes(4) + u32(0xFFFFFFFF) + b"\x01"

    def pushed(action: Callable[[], object]) -> Callable[[], list[bytes]]:
        def run() -> list[bytes]:
            m.pushed(c)
            action()
            return m.pushed(c)
        return run

    p.record_bill(ClosedBill(1_777_593_600, 1_780_272_000, Decimal("12.5")), m.now)
    p.publish_credit_payment(due_date=T0 + 86400, overdue_amount=0, status=1, payment=10,
                             payment_date=T0 - 60, ref=b"r", now=m.now)
    p.publish_currency_conversion(new_currency=978, factor="1.1", start=T0 + 86400 * 30,
                                  flags=0, now=m.now)
    m.pushed(c)
    return {
        0x00: lambda: m.request(c, 0x00, b"\x01"),
        0x01: lambda: m.request(c, 0x03, bytes(4) + b"\x01\x00"),
        0x02: lambda: m.request(c, 0x04, since),
        0x03: lambda: m.request(c, 0x05, since),
        0x04: lambda: m.request(c, 0x06, since + b"\x00"),
        0x05: lambda: m.request(c, 0x07, u32(31)),
        0x06: lambda: m.request(c, 0x08, u32(31)),
        0x07: lambda: m.request(c, 0x09, since + b"\x00"),
        0x08: lambda: m.request(c, 0x0A, u32(31)),
        0x09: lambda: m.request(c, 0x0B, bytes(4) + u32(0xFFFFFFFF) + b"\x01\x00"),
        0x0A: lambda: m.request(c, 0x0C, since + b"\x00"),
        0x0B: pushed(lambda: p.publish_cpp_event(start=T0 + 7200, duration_minutes=30,
                                                 price_tier=0, now=m.now)),
        0x0C: lambda: m.request(c, 0x0E, bytes(4) + b"\x01"),
        0x0D: lambda: m.request(c, 0x0F),
        0x0E: pushed(lambda: (p.set_tariff(parse_tariff(TARIFF.replace(
            "issuer_tariff_id = 31", "issuer_tariff_id = 33")), m.now, start=T0 + 86400),
            p.cancel_tariff(33, m.now))),
    }


def _messaging(m: Meter) -> dict[int, Callable[[], list[bytes]]]:
    c, s = 0x0703, m.app.messaging

    def pushed(action: Callable[[], object]) -> Callable[[], list[bytes]]:
        def run() -> list[bytes]:
            m.pushed(c)
            action()
            return m.pushed(c)
        return run

    return {
        0x00: pushed(lambda: s.display_message("Hi", now=m.now, message_id=5)),
        0x01: pushed(lambda: (s.display_message("Bye", now=m.now, message_id=6),
                              s.cancel_message(6))),
        0x02: pushed(lambda: s.display_message("Secret", now=m.now, protected=True)),
        0x03: pushed(lambda: s.cancel_all(m.now)),
    }


def _identify(m: Meter) -> dict[int, Callable[[], list[bytes]]]:
    return {0x00: lambda: (m.request(0x0003, 0x00, b"\x0a\x00"),
                           m.request(0x0003, 0x01))[1]}


def _luhn(payload: str) -> bytes:
    """A top-up code in the default layout: the payload and its Luhn digit (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (payload + str((10 - total % 10) % 10)).encode()


def _prepayment(m: Meter) -> dict[int, Callable[[], list[bytes]]]:
    """Requests packed from the SE 1.4 D.7 payload tables (the supplier is the hub)."""
    def top_up(serial: int) -> list[bytes]:
        code = _luhn(f"{serial:08d}{1000:06d}")  # £10.00
        return m.request(0x0705, 0x04, bytes([0, len(code)]) + code)

    def debt_log() -> list[bytes]:
        label = b"Arrears"
        m.request(0x0705, 0x02, u32(2) + bytes([len(label)]) + label + struct.pack(
            "<iBBIHBiH", 5_000, 1, 0, 0, 0, 0, 0, 5_000))  # 50 % of each top-up
        top_up(12)
        return m.request(0x0705, 0x0A, u32(0) + bytes([5, 0xFF]))

    def snapshot() -> list[bytes]:
        top_up(11)
        return m.request(0x0705, 0x07, u32(0) + u32(0) + bytes([0]) + u32(0xFFFFFFFF))

    def top_up_log() -> list[bytes]:
        top_up(13)
        return m.request(0x0705, 0x08, u32(0) + bytes([5]))

    return {
        0x01: snapshot,  # GetPrepaySnapshot → PublishPrepaySnapshot
        0x02: lambda: m.request(0x0705, 0x06, struct.pack(  # ChangePaymentMode → its response
            "<IIIHi", 0xABCD, 1, 0, 0x0093, 0)),
        0x03: lambda: top_up(10),  # ConsumerTopUp → ConsumerTopUpResponse
        0x05: top_up_log,  # GetTopUpLog → PublishTopUpLog
        0x06: debt_log,  # GetDebtRepaymentLog → PublishDebtLog
    }


SCENARIOS = {0x0702: _metering, 0x0700: _price, 0x0703: _messaging, 0x0003: _identify,
             0x0000: lambda m: {}, 0x000A: lambda m: {}, 0x0705: _prepayment}


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_commands_generated_are_exactly_the_ones_produced(meter, cluster):
    server = meter.app.endpoint.servers[cluster]
    advertised = discover_commands(meter, cluster, generated=True)
    assert server.generated is not None and advertised == sorted(server.generated)
    scenarios = SCENARIOS[cluster](meter)
    assert sorted(scenarios) == advertised, "every advertised command needs a scenario"
    table = server.cluster.client_commands
    for cmd, scenario in scenarios.items():
        frames = [f for f in scenario()
                  if not foundation.ZCLHeader.deserialize(f)[0].frame_control.is_general]
        produced = {int(foundation.ZCLHeader.deserialize(f)[0].command_id) for f in frames}
        assert cmd in produced, f"command 0x{cmd:02X} not produced"
        assert produced <= set(advertised)
        for f in frames:
            hdr, rest = foundation.ZCLHeader.deserialize(f)
            if int(hdr.command_id) == cmd:
                _value, extra = table[cmd].schema.deserialize(rest)
                assert extra == b"" or cmd in (0x06,) and cluster == 0x0702  # opaque payload


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_discover_attributes_lists_exactly_what_reads(meter, cluster):
    server = meter.app.endpoint.servers[cluster]
    found: dict[int, int] = {}
    start = 0
    while True:
        rsp = general_answer(meter.request(cluster, GC.Discover_Attributes,
                                           start.to_bytes(2, "little") + b"\x10",
                                           general=True), GC.Discover_Attributes_rsp)
        for info in rsp.attribute_info:
            found[int(info.attrid)] = int(info.datatype)
        if rsp.discovery_complete:
            break
        start = max(found) + 1
    readable = set()
    ids = sorted(set(server.cluster.attributes) | set(found))
    for i in range(0, len(ids), 20):
        chunk = ids[i:i + 20]
        rsp = general_answer(meter.request(cluster, GC.Read_Attributes,
                                           b"".join(a.to_bytes(2, "little") for a in chunk),
                                           general=True), GC.Read_Attributes_rsp)
        for rec in rsp.status_records:
            if rec.status == S.SUCCESS:
                readable.add(int(rec.attrid))
                assert int(rec.value.type) == found.get(int(rec.attrid)), hex(int(rec.attrid))
    assert set(found) == readable


def test_a_reportable_price_attribute_is_reported_when_it_changes(meter):
    """Price attributes are reportable where they change while the meter runs (15.6): a
    display configures reporting of StandingCharge (0x0301, uint32) and gets a report with
    the new tariff's value — the file's £0.75 a day with 4 price trailing digits — while
    CommodityType (0x0300), fixed, is UNREPORTABLE_ATTRIBUTE (ZCL r8 2.5.7.3)."""
    def configure(attr: int, type_id: int) -> int:
        record = struct.pack("<BHBHH", 0, attr, type_id, 0, 3600) + (
            struct.pack("<I", 1) if type_id == 0x23 else b"")
        rsp = general_answer(meter.request(0x0700, GC.Configure_Reporting, record,
                                           general=True, src=IHD), GC.Configure_Reporting_rsp)
        return int(rsp.status_records[0].status)

    assert configure(0x0300, 0x30) == S.UNREPORTABLE_ATTRIBUTE
    assert configure(0x0301, 0x23) == S.SUCCESS

    def reported(t: float) -> list[tuple[int, int]]:
        out = []
        for reply in meter.app.endpoint.reports(t):
            hdr, rest = foundation.ZCLHeader.deserialize(reply.data)
            if reply.cluster_id == 0x0700 and reply.dst_nwk == IHD and \
                    hdr.command_id == GC.Report_Attributes:
                value, _ = foundation.GENERAL_COMMANDS[GC.Report_Attributes].schema.deserialize(
                    rest)
                out += [(int(r.attrid), r.value.value) for r in value.attribute_reports]
        return out

    reported(meter.now + 1)  # the first report, of the value configured against
    assert reported(meter.now + 2) == []  # nothing changed: nothing said
    changed = parse_tariff(TARIFF.replace('standing_charge = "0.5"', 'standing_charge = "0.75"')
                           .replace("issuer_tariff_id = 31", "issuer_tariff_id = 33"))
    meter.app.price.set_tariff(changed, meter.now + 3)
    assert reported(meter.now + 4) == [(0x0301, 7500)]
