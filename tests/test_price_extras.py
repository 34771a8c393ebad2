"""The Price server's consolidated bills, CPP events, credit payments and currency
conversion, sans-IO: every refusal gets the status ``sep/clusters/price_extras.py``
documents and changes nothing; the payloads the tests send are packed here by the SE 1.4
layouts (D.4.2.4.11-14) with ``struct``, not with the server's own tables; the answers are
read back with zigpy's parsers on sep's table and checked field by field.
"""

from __future__ import annotations

import struct
from decimal import ROUND_HALF_UP, Decimal

import pytest
from zigpy.zcl import foundation

from sep.clusters.price import PriceServer
from sep.meter.billing import ClosedBill
from sep.meter.tariff import parse_tariff
from sep.zcl.frames import MalformedFrame, Request
from sep.zcl.price import Price

S = foundation.Status
Z2000 = 946_684_800
T0 = 1_780_300_800  # 2026-06-01T08:00:00Z
PROVIDER = 0xABCD
TARIFF = parse_tariff("""
provider_id = 0xABCD
issuer_tariff_id = 77
label = "T"
standing_charge = "0.5312"
timezone = "UTC"
[[tiers]]
tier = 1
label = "Night"
rate = "0.1500"
[[tiers]]
tier = 2
label = "Day"
rate = "0.2450"
[[schedule]]
switches = { "00:00" = 1, "07:00" = 2 }
[billing_period]
start = 2026-01-01T00:00:00Z
duration = 1
timebase = "months"
[cpp]
cpp1_rate = "0.9000"
""")


def server() -> PriceServer:
    s = PriceServer(tariff=TARIFF)
    s.tick(T0)
    s.take_outbox()
    return s


def request(cmd: int, payload: bytes, src: int = 0x1234, tsn: int = 9) -> Request:
    hdr = foundation.ZCLHeader.cluster(tsn, cmd)
    return Request(src_nwk=src, src_ep=1, dst_ep=1, profile_id=0x0109, cluster_id=0x0700,
                   header=hdr, payload=payload)


def answers(s: PriceServer, cmd: int, payload: bytes, src: int = 0x1234) -> list:
    """('default', status) or (command id, fields parsed by zigpy) for each frame."""
    out = []
    for frame in s.handle(request(cmd, payload, src), T0 + 60):
        hdr, rest = foundation.ZCLHeader.deserialize(frame)
        if hdr.frame_control.is_general:
            rsp, _ = foundation.GENERAL_COMMANDS[hdr.command_id].schema.deserialize(rest)
            out.append(("default", rsp.status))
        else:
            fields, extra = Price.client_commands[hdr.command_id].schema.deserialize(rest)
            assert extra == b""
            out.append((int(hdr.command_id), fields))
    return out


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def cpp_event(event_id: int, start: int, minutes: int, tier: int, auth: int,
              provider: int = PROVIDER, tariff_type: int = 0) -> bytes:
    # provider, issuer event id, start (UTC), duration (uint16), tariff type, CPP price
    # tier, CPP auth (SE 1.4 D.4.2.4.12)
    return struct.pack("<IIIHBBB", provider, event_id, start - Z2000, minutes, tariff_type,
                       tier, auth)


def credit(event_id: int, due: int, overdue: int, status: int, paid: int, date: int,
           ref: bytes, provider: int = PROVIDER) -> bytes:
    return struct.pack("<IIIIBII", provider, event_id, due - Z2000, overdue, status, paid,
                       date - Z2000) + bytes([len(ref)]) + ref


def conversion(event_id: int, start: int, old: int, new: int, factor: int, digits: int,
               flags: int, provider: int = PROVIDER) -> bytes:
    return struct.pack("<IIIHHIBI", provider, event_id, start - Z2000, old, new, factor,
                       digits << 4, flags)


def bill(event_id: int, start: int, amount: int, currency: int = 826, tariff_type: int = 0,
         duration_type: int = 0x03, provider: int = PROVIDER) -> bytes:
    # provider, issuer event id, period start, duration (uint24), duration type, tariff
    # type, consolidated bill, currency, trailing digit (SE 1.4 D.4.2.4.11)
    return (struct.pack("<III", provider, event_id, start - Z2000) + (1).to_bytes(3, "little")
            + struct.pack("<BBIHB", duration_type, tariff_type, amount, currency, 0x40))


# -- CPP -----------------------------------------------------------------------------------
def test_cpp_event_answers_and_the_price_it_sets():
    s = server()
    event = s.publish_cpp_event(start=T0 + 600, duration_minutes=30, price_tier=0, now=T0)
    (push,) = s.take_outbox()
    fields, _ = Price.client_commands[0x0B].schema.deserialize(push[3:])
    assert (fields.provider_id, fields.start_time, fields.duration_in_minutes,
            fields.cpp_price_tier, fields.cpp_auth) == (PROVIDER, T0 + 600 - Z2000, 30, 0, 0)
    assert s.current_price(T0 + 700).label == "Day"  # pending: not in force
    ok = event.issuer_event_id
    assert answers(s, 0x0D, u32(ok + 1) + b"\x01") == [("default", S.NOT_FOUND)]
    assert answers(s, 0x0D, u32(ok) + b"\x00") == [("default", S.INVALID_FIELD)]  # pending
    assert answers(s, 0x0D, u32(ok) + b"\x03") == [("default", S.INVALID_FIELD)]  # forced
    assert answers(s, 0x0D, u32(ok)) == [("default", S.MALFORMED_COMMAND)]
    assert s.cpp_events[ok].responses == {} and s.take_outbox() == []
    assert answers(s, 0x0D, u32(ok) + b"\x01") == [("default", S.SUCCESS)]
    (confirm,) = s.take_outbox()
    assert confirm.dst == (0x1234, 1)  # the answer is confirmed to that client alone
    assert confirm[3:] == cpp_event(ok, T0 + 600, 30, 0, 1)
    price = s.current_price(T0 + 700)
    assert (price.label, price.unit_rate, price.tier) == ("CPP1", Decimal("0.9000"), 2)
    assert s.current_price(T0 + 600 + 1800).label == "Day"  # over at its end
    assert [p.start for p in s.timeline(T0 + 60)][:3] == [T0, T0 + 600, T0 + 2400]


def test_cpp_events_from_the_supplier():
    s = server()
    answered = []
    s.cpp_policy = lambda e: answered.append(e.issuer_event_id) or 2  # reject
    before = s.extras_state()
    bad = [  # (payload, status): nothing changes
        (cpp_event(5, T0 + 600, 30, 0, 0, provider=1), S.NOT_AUTHORIZED),
        (cpp_event(5, T0 + 600, 30, 2, 0), S.INVALID_VALUE),  # CPP price tier 2: reserved
        (cpp_event(5, T0 + 600, 30, 0, 4), S.INVALID_VALUE),  # CPP auth 4: reserved
        (cpp_event(5, T0 + 600, 0, 0, 0), S.INVALID_VALUE),  # zero duration
        (cpp_event(5, T0 + 600, 30, 0, 0, tariff_type=1), S.INVALID_VALUE),
    ]
    for payload, status in bad:
        assert s.ingest(0x0B, payload, T0) == status
    with pytest.raises(MalformedFrame):
        s.ingest(0x0B, cpp_event(5, T0 + 600, 30, 0, 0)[:-2], T0)
    assert s.extras_state() == before and s.take_outbox() == [] and answered == []
    assert s.ingest(0x0B, cpp_event(5, T0 + 600, 30, 0, 0), T0) == S.SUCCESS
    assert s.cpp_answers == [(5, 2)] and answered == [5]
    assert [f[3:] for f in s.take_outbox()] == [cpp_event(5, T0 + 600, 30, 0, 0)]  # to the HAN
    assert s.ingest(0x0B, cpp_event(5, T0 + 600, 30, 0, 0), T0) == S.SUCCESS  # again: no-op
    assert s.take_outbox() == [] and s.cpp_answers == [(5, 2)]
    assert s.ingest(0x0B, cpp_event(5, T0 + 600, 30, 0, 3), T0) == S.SUCCESS  # now forced
    assert s.current_price(T0 + 601).label == "CPP1"


# -- credit payments -------------------------------------------------------------------------
def test_credit_payments():
    s = server()
    assert answers(s, 0x0E, u32(0) + b"\x05") == [("default", S.NOT_FOUND)]
    assert answers(s, 0x0E, u32(0)) == [("default", S.MALFORMED_COMMAND)]
    before = s.extras_state()
    for payload, status in [
        (credit(3, T0, 0, 1, 100, T0 - 10, b"x" * 21), S.INVALID_VALUE),  # ref over 20 bytes
        (credit(3, T0, 0, 5, 100, T0 - 10, b"x"), S.INVALID_VALUE),  # status 5: reserved
        (credit(3, T0, 0, 1, 100, T0 - 10, b"x", provider=7), S.NOT_AUTHORIZED),
    ]:
        assert s.ingest(0x0C, payload, T0) == status
    assert s.extras_state() == before
    for n, day in enumerate((30, 20, 10), start=1):
        assert s.ingest(0x0C, credit(n, T0 + 86400, 0, 1, 1000 * n, T0 - day * 86400,
                                     f"REF{n}".encode()), T0) == S.SUCCESS
    got = answers(s, 0x0E, u32(T0 - 15 * 86400 - Z2000) + b"\x00")  # paid by 15 days ago
    assert [(c, int(f.credit_payment), bytes(f.credit_payment_ref)) for c, f in got] == [
        (0x0C, 2000, b"REF2"), (0x0C, 1000, b"REF1")]  # newest first
    assert [bytes(f.credit_payment_ref) for _, f in answers(s, 0x0E, u32(0) + b"\x01")] == \
        [b"REF3"]


# -- consolidated bills ------------------------------------------------------------------------
def test_consolidated_bills_the_meters_and_the_suppliers():
    s = server()
    may = 1_777_593_600  # 2026-05-01
    june = 1_780_272_000
    assert answers(s, 0x0C, u32(0) + u32(0xFFFFFFFF) + b"\x00\x00") == [
        ("default", S.NOT_FOUND)]
    assert answers(s, 0x0C, u32(0) + u32(0xFFFFFFFF) + b"\x00\x05") == [
        ("default", S.INVALID_FIELD)]  # tariff type 5: reserved
    # the meter closes May: 123.45675 GBP is sent as 1234568 (4 digits, half up)
    s.record_bill(ClosedBill(may, june, Decimal("123.45675")), T0)
    (push,) = s.take_outbox()
    fields, _ = Price.client_commands[0x0A].schema.deserialize(push[3:])
    assert (fields.consolidated_bill, fields.billing_period_start_time,
            fields.billing_period_duration, fields.billing_period_duration_type,
            fields.currency) == (1234568, may - Z2000, 1, 0x03, 826)
    before = s.extras_state()
    assert s.ingest(0x0A, bill(9, may, 99, currency=978), T0) == S.INVALID_VALUE
    assert s.ingest(0x0A, bill(9, may, 99, tariff_type=2), T0) == S.INVALID_VALUE
    assert s.ingest(0x0A, bill(9, may, 99, duration_type=0x07), T0) == S.INVALID_VALUE
    assert s.extras_state() == before
    # the supplier's bill for May takes the meter's place; the meter's cannot return
    assert s.ingest(0x0A, bill(9, may, 120000), T0) == S.SUCCESS
    assert s.record_bill(ClosedBill(may, june, Decimal("1")), T0) is None
    got = answers(s, 0x0C, u32(0) + u32(0xFFFFFFFF) + b"\x00\x00")
    assert [int(f.consolidated_bill) for _, f in got] == [120000]
    assert s.read_value(0x0704) == 120000  # LastBillingPeriodConsolidatedBill
    # earliest start after the end of May: nothing
    assert answers(s, 0x0C, u32(june - Z2000) + u32(0xFFFFFFFF) + b"\x00\x00") == [
        ("default", S.NOT_FOUND)]


# -- currency conversion -------------------------------------------------------------------------
def test_currency_conversion_at_its_start_time():
    s = server()
    s.record_bill(ClosedBill(1_777_593_600, 1_780_272_000, Decimal("10.00005")), T0)
    s.take_outbox()
    assert answers(s, 0x0F, b"") == [("default", S.NOT_FOUND)]
    before = s.extras_state()
    for payload in [conversion(5, T0 + 600, 978, 840, 117, 2, 2),  # not our currency
                    conversion(5, T0 + 600, 826, 826, 117, 2, 2),  # to itself
                    conversion(5, T0 + 600, 826, 978, 0, 2, 2),  # no factor
                    conversion(5, T0 + 600, 826, 978, 117, 2, 0x10)]:  # reserved flag
        assert s.ingest(0x0D, payload, T0) == S.INVALID_VALUE
    assert s.extras_state() == before
    assert s.ingest(0x0D, conversion(5, T0 + 600, 826, 978, 117, 2, 0x02), T0) == S.SUCCESS
    assert s.ingest(0x0D, conversion(4, T0 + 600, 826, 978, 117, 2, 0x02), T0) == \
        S.INVALID_VALUE  # an older one
    got = answers(s, 0x0F, b"")
    assert [(c, int(f.new_currency), int(f.conversion_factor)) for c, f in got] == [
        (0x0D, 978, 117)]
    s.tick(T0 + 599)
    assert s.tariff.currency == 826  # not yet
    s.tick(T0 + 600)
    half_up = lambda v: (Decimal(v) * Decimal("1.17")).quantize(  # noqa: E731
        Decimal("0.0001"), rounding=ROUND_HALF_UP)
    assert s.tariff.currency == 978
    assert [x.rate for x in s.tariff.tiers] == [half_up("0.1500"), half_up("0.2450")]
    assert s.tariff.standing_charge == half_up("0.5312")
    assert s.tariff.cpp_rates == (half_up("0.9000"),)
    assert [b.amount for b in s.bills] == [int(Decimal(100001) * Decimal("1.17") + Decimal("0.5"))]
    price = [f for f in s.take_outbox() if f[2] == 0x00][-1]
    fields, _ = Price.client_commands[0x00].schema.deserialize(price[3:])
    assert int(fields.currency) == 978 and int(fields.price) == int(half_up("0.2450") * 10_000)
