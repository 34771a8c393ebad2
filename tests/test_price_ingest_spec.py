"""The meter's Price ingest (what the supplier's ESI publishes), checked against SE 1.4.

Independent judges: the payloads are written here byte by byte from the SE 1.4 D.4.2.4
layouts (``struct``, not our schema or payload builders); the statuses are zigpy's ZCL
``foundation.Status`` values (SUCCESS 0x00, NOT_AUTHORIZED 0x7E, INVALID_VALUE 0x87,
NOT_FOUND 0x8B, UNSUP_CLUSTER_COMMAND 0x81) and the command ids the spec's (PublishPrice
0x00 ... CancelTariff 0x0E); the expected tariff values are the numbers the test sent (a
price 1545 with 4 trailing digits is 0.1545), never one our code computed.
"""

from __future__ import annotations

import struct
from decimal import Decimal as D

import pytest
from test_price import EXAMPLE, T0, block_tariff
from zigpy.zcl.foundation import Status as ZS

from sep.clusters.price import PriceServer
from sep.meter.tariff import parse_tariff
from sep.zcl.frames import MalformedFrame

PROVIDER = 0x0000ABCD  # the example tariff's provider id
ZCL_EPOCH = 946_684_800  # 2000-01-01T00:00:00Z: SE UTCTime counts from here
NOW = float(T0 + 3600)


def zt(unix: float) -> int:
    return int(unix) - ZCL_EPOCH


def lv(data: bytes) -> bytes:
    return bytes([len(data)]) + data


def publish_price(*, provider: int = PROVIDER, label: bytes = b"Peak", event: int = 100,
                  uom: int = 0, currency: int = 826, digits: int = 4, tier: int = 2,
                  start: int = 0, duration: int = 60, price: int = 2000) -> bytes:
    """PublishPrice 0x00 (D.4.2.4.1), the mandatory fields."""
    return (struct.pack("<I", provider) + lv(label) + struct.pack("<II", event, zt(NOW))
            + struct.pack("<BHBB", uom, currency, (digits << 4) | tier, 0x20 | tier)
            + struct.pack("<IHI", start, duration, price))


def server(tariff_id: int = 7003) -> PriceServer:
    s = PriceServer(tariff=block_tariff(tariff_id))
    s.tick(float(T0))
    s.take_outbox()
    return s


def snapshot(s: PriceServer) -> tuple[object, ...]:
    return (s.tariff, s.pending, list(s.events), dict(s._upstream), list(s._deferred))


# -- PublishPrice 0x00 --------------------------------------------------------------------------------
def test_publish_price_refusals_by_the_spec_status():
    cases = [
        (publish_price(provider=0xABCE), ZS.NOT_AUTHORIZED),
        (publish_price(label=b"x" * 13), ZS.INVALID_VALUE),  # rate label: at most 12 octets
        (publish_price(tier=0), ZS.INVALID_VALUE),
        (publish_price(currency=978), ZS.INVALID_VALUE),  # EUR, the tariff is GBP
        (publish_price(uom=1), ZS.INVALID_VALUE),  # m3, the tariff is kWh
        (publish_price(price=0xFFFFFFFF), ZS.INVALID_VALUE),  # "not used"
        (publish_price(duration=0), ZS.INVALID_VALUE),
        (publish_price(digits=2, price=12345), ZS.SUCCESS),  # 123.45: exact at 4 digits
        (publish_price(digits=5, price=12345), ZS.INVALID_VALUE),  # 0.12345: not exact
        (publish_price(label=b"\xff" * 12), ZS.INVALID_VALUE),  # not UTF-8: longer once fixed
    ]
    for payload, want in cases:
        s = server()
        before = snapshot(s)
        got = s.ingest(0x00, payload, NOW)
        assert got == want, (payload.hex(), got)
        if want != ZS.SUCCESS:
            assert snapshot(s) == before
            assert s.log, "a refusal leaves a line in the log"


def test_publish_price_applies_the_rate_as_sent_and_orders_issuer_event_ids():
    s = server()
    assert s.ingest(0x00, publish_price(tier=2, price=2000, label=b"Peak", event=100), NOW) \
        == ZS.SUCCESS
    cur = s.current_price(NOW)
    assert cur.tier == 2 and cur.unit_rate == D("0.2000") and cur.label == "Peak"
    # the same event again: SUCCESS and nothing new; an older id for the same start: refused
    events = list(s.events)
    assert s.ingest(0x00, publish_price(event=100, price=2100), NOW) == ZS.SUCCESS
    assert list(s.events) == events
    assert s.ingest(0x00, publish_price(event=99, price=2100), NOW) == ZS.INVALID_VALUE
    assert s.ingest(0x00, publish_price(event=101, price=2100), NOW) == ZS.SUCCESS
    assert s.current_price(NOW).unit_rate == D("0.2100")


def test_unknown_and_truncated_commands():
    s = server()
    assert s.ingest(0x1F, b"", NOW) == ZS.UNSUP_CLUSTER_COMMAND
    with pytest.raises(MalformedFrame):
        s.ingest(0x00, publish_price()[:-1], NOW)


# -- PublishBlockPeriod 0x01, PublishConversionFactor 0x02, PublishCalorificValue 0x03,
# -- PublishCO2Value 0x07, PublishBillingPeriod 0x09 ---------------------------------------------
def u24(v: int) -> bytes:
    return struct.pack("<I", v)[:3]


def block_period(*, provider: int = PROVIDER, event: int = 10, start: int = 0, duration: int = 7,
                 dtype: int = 0x01, ttype: int = 0x00, resolution: int = 0) -> bytes:
    return (struct.pack("<III", provider, event, start) + u24(duration)
            + bytes([0x00, dtype, ttype, resolution]))


def conversion(*, event: int = 10, start: int = 0, value: int = 11_000_000,
               digits: int = 7) -> bytes:
    return struct.pack("<IIIB", event, start, value, digits << 4)


def calorific(*, event: int = 10, start: int = 0, value: int = 391_000, unit: int = 0x01,
              digits: int = 4) -> bytes:
    return struct.pack("<IIIBB", event, start, value, unit, digits << 4)


def co2(*, provider: int = PROVIDER, event: int = 10, start: int = 0, ttype: int = 0,
        value: int = 185, unit: int = 0x01, digits: int = 3) -> bytes:
    return struct.pack("<IIIBIBB", provider, event, start, ttype, value, unit, digits << 4)


def billing(*, provider: int = PROVIDER, event: int = 10, start: int = 0, duration: int = 1,
            dtype: int = 0x03, ttype: int = 0x00) -> bytes:
    return struct.pack("<III", provider, event, start) + u24(duration) + bytes([dtype, ttype])


def test_block_period_applies_now_or_at_its_start_and_refuses_what_se_does_not_allow():
    s = server()
    assert s.ingest(0x01, block_period(duration=7, dtype=0x01), NOW) == ZS.SUCCESS
    bp = s.tariff.block_period
    assert (bp.start, bp.duration, bp.timebase) == (int(NOW), 7, "days")  # start 0 = now
    # a later start: held until then (tick), then applied
    later = NOW + 600
    assert s.ingest(0x01, block_period(event=11, start=zt(later), duration=2, dtype=0x02),
                    NOW) == ZS.SUCCESS
    assert s.tariff.block_period == bp
    s.tick(later - 1)
    assert s.tariff.block_period == bp
    s.tick(later)
    bp2 = s.tariff.block_period
    assert (bp2.start, bp2.duration, bp2.timebase) == (int(later), 2, "weeks")
    # a start exactly now is applied now
    assert s.ingest(0x01, block_period(event=12, start=zt(later), duration=3), later) \
        == ZS.SUCCESS
    assert s.tariff.block_period.duration == 3
    for payload, want in ((block_period(event=20, provider=1), ZS.NOT_AUTHORIZED),
                          (block_period(event=20, dtype=0x04), ZS.INVALID_VALUE),  # timebase 4
                          (block_period(event=20, dtype=0x31), ZS.INVALID_VALUE),  # control 3
                          (block_period(event=20, dtype=0x21), ZS.SUCCESS),  # control 2: ok
                          (block_period(event=21, ttype=0x01), ZS.INVALID_VALUE),  # received
                          (block_period(event=21, ttype=0x10), ZS.INVALID_VALUE),
                          (block_period(event=21, resolution=3), ZS.INVALID_VALUE),
                          (block_period(event=21, resolution=2), ZS.SUCCESS),
                          (block_period(event=21), ZS.SUCCESS),  # the same again
                          (block_period(event=19), ZS.INVALID_VALUE)):  # older
        assert s.ingest(0x01, payload, later) == want, payload.hex()


def test_gas_values_conversion_calorific_and_co2():
    s = server()
    assert s.ingest(0x02, conversion(value=11_000_000, digits=7), NOW) == ZS.SUCCESS
    assert s.tariff.conversion_factor == D("1.1")
    assert s.ingest(0x03, calorific(value=391_000, digits=4, unit=0x02), NOW) == ZS.SUCCESS
    assert (s.tariff.calorific_value, s.tariff.calorific_value_unit) == (D("39.1"), 0x02)
    assert s.ingest(0x07, co2(value=185, digits=3, unit=0x03), NOW) == ZS.SUCCESS
    assert (s.tariff.co2, s.tariff.co2_unit) == (D("0.185"), 0x03)
    pushed = [f[2] for f in s.take_outbox()]
    assert {0x02, 0x03, 0x07} <= set(pushed)  # re-published to the HAN
    for command, payload in ((0x02, conversion(event=11, value=0)),
                             (0x02, conversion(event=11, value=0xFFFFFFFF)),
                             (0x03, calorific(event=11, unit=0x00)),
                             (0x03, calorific(event=11, unit=0x03)),
                             (0x03, calorific(event=11, value=0)),
                             (0x03, calorific(event=11, value=0xFFFFFFFF)),
                             (0x07, co2(event=11, unit=0x00)),
                             (0x07, co2(event=11, unit=0x04)),
                             (0x07, co2(event=11, value=0xFFFFFFFF)),
                             (0x07, co2(event=11, ttype=0x01)),
                             (0x02, conversion(event=9)),  # older ids
                             (0x03, calorific(event=9)), (0x07, co2(event=9))):
        before = snapshot(s)
        assert s.ingest(command, payload, NOW) == ZS.INVALID_VALUE, (hex(command), payload.hex())
        assert snapshot(s) == before
    assert s.ingest(0x07, co2(event=11, provider=7), NOW) == ZS.NOT_AUTHORIZED
    assert s.ingest(0x03, calorific(event=11, unit=0x01, value=1), NOW) == ZS.SUCCESS
    # zero CO2 is refused by the tariff's own rule (positive), the CO2 kept
    assert s.ingest(0x07, co2(event=11, unit=0x01, value=0), NOW) == ZS.INVALID_VALUE
    assert s.tariff.co2 == D("0.185")
    # a later conversion factor waits for its start
    later = NOW + 120
    assert s.ingest(0x02, conversion(event=12, start=zt(later), value=2, digits=0), NOW) \
        == ZS.SUCCESS
    assert s.tariff.conversion_factor == D("1.1")
    s.tick(later)
    assert s.tariff.conversion_factor == 2


def test_billing_period():
    s = server()
    # monthly periods start on day 1..28: the 31st is refused, the 1st taken
    assert s.ingest(0x09, billing(start=zt(T0 - 86400), duration=1, dtype=0x03), NOW) \
        == ZS.INVALID_VALUE
    assert s.ingest(0x09, billing(start=zt(T0), duration=1, dtype=0x03), NOW) == ZS.SUCCESS
    bp = s.tariff.billing_period
    assert (bp.start, bp.duration, bp.timebase) == (T0, 1, "months")
    assert 0x09 in [f[2] for f in s.take_outbox()]
    for payload, want in ((billing(event=11, provider=3), ZS.NOT_AUTHORIZED),
                          (billing(event=11, dtype=0x05), ZS.INVALID_VALUE),
                          (billing(event=11, ttype=0x02), ZS.INVALID_VALUE),
                          (billing(event=10, start=zt(T0)), ZS.SUCCESS),  # the same again
                          (billing(event=9), ZS.INVALID_VALUE)):
        assert s.ingest(0x09, payload, NOW) == want, payload.hex()
    assert s.tariff.billing_period == bp


# -- PublishTariffInformation 0x04, PublishPriceMatrix 0x05, PublishBlockThresholds 0x06,
# -- PublishTierLabels 0x08, CancelTariff 0x0E --------------------------------------------------
def tariff_info(*, provider: int = PROVIDER, event: int = 50, tariff_id: int = 7100,
                start: int = 0, ttype: int = 0x00, label: bytes = b"Three rate", tiers: int = 3,
                blocks: int = 0, uom: int = 0, currency: int = 826, digits: int = 4,
                standing: int = 6000, mult: int = 1, div: int = 1000) -> bytes:
    return (struct.pack("<IIIIB", provider, event, tariff_id, start, ttype) + lv(label)
            + struct.pack("<BBBHBIB", tiers, blocks, uom, currency, digits << 4, standing, 0)
            + u24(mult) + u24(div))


def matrix(entries: list[tuple[int, int]], *, provider: int = PROVIDER, event: int = 60,
           tariff_id: int = 7100, index: int = 0, total: int = 1, tou: bool = True) -> bytes:
    return (struct.pack("<IIIIBBB", provider, event, 0, tariff_id, index, total, int(tou))
            + b"".join(struct.pack("<BI", tb, price) for tb, price in entries))


def thresholds(values: list[int], *, event: int = 70, tariff_id: int = 7100, index: int = 0,
               total: int = 1, common: bool = True, tier: int = 0) -> bytes:
    head = struct.pack("<IIIIBBB", PROVIDER, event, 0, tariff_id, index, total, int(common))
    return head + bytes([(tier << 4) | len(values)]) + b"".join(
        v.to_bytes(6, "little") for v in values)


def tier_labels(labels: list[tuple[int, bytes]], *, provider: int = PROVIDER, event: int = 80,
                tariff_id: int = 7100, index: int = 0, total: int = 1) -> bytes:
    return (struct.pack("<IIIBBB", provider, event, tariff_id, index, total, len(labels))
            + b"".join(bytes([tier]) + lv(text) for tier, text in labels))


def cancel(tariff_id: int, *, provider: int = PROVIDER, ttype: int = 0) -> bytes:
    return struct.pack("<IIB", provider, tariff_id, ttype)


def test_a_tariff_with_more_tiers_waits_for_its_prices_then_takes_over():
    s = server()
    assert s.ingest(0x04, tariff_info(tiers=3, standing=6000), NOW) == ZS.SUCCESS
    assert s.tariff.issuer_tariff_id == 7003 and s.pending is not None  # held: no prices yet
    assert s.pending[0].issuer_tariff_id == 7100
    # prices of tiers 1..3 (TOU sub-payload), split over two commands
    assert s.ingest(0x05, matrix([(1, 1000), (2, 2000)], total=2), NOW) == ZS.SUCCESS
    assert s.tariff.issuer_tariff_id == 7003  # not complete yet
    assert s.ingest(0x05, matrix([(3, 3000)], index=1, total=2), NOW) == ZS.SUCCESS
    assert s.tariff.issuer_tariff_id == 7100 and s.pending is None
    assert [(x.number, x.rate) for x in s.tariff.tiers] == [
        (1, D("0.1")), (2, D("0.2")), (3, D("0.3"))]
    assert s.tariff.label == "Three rate" and s.tariff.standing_charge == D("0.6")
    # tier labels, then the same publication again (SUCCESS, no change), then an older one
    assert s.ingest(0x08, tier_labels([(1, b"Off-peak"), (3, b"Peak")]), NOW) == ZS.SUCCESS
    assert [x.label for x in s.tariff.tiers] == ["Off-peak", "Day", "Peak"]  # 2: the file's
    assert s.ingest(0x08, tier_labels([(1, b"Other")]), NOW) == ZS.SUCCESS
    assert s.tariff.tiers[0].label == "Off-peak"
    assert s.ingest(0x08, tier_labels([(1, b"Other")], event=79), NOW) == ZS.INVALID_VALUE
    for payload, want in ((tier_labels([(4, b"x")], event=81), ZS.INVALID_VALUE),  # no tier 4
                          (tier_labels([(1, b"x" * 13)], event=81), ZS.INVALID_VALUE),
                          (tier_labels([(1, b"\xff" * 12)], event=81), ZS.INVALID_VALUE),
                          (tier_labels([(1, b"x")], event=81, tariff_id=1), ZS.NOT_FOUND),
                          (tier_labels([(1, b"x")], event=81, provider=2), ZS.NOT_AUTHORIZED),
                          (tier_labels([(1, b"x")], event=81, index=1, total=2), ZS.INVALID_VALUE),
                          (tier_labels([(1, b"x")], event=81, index=1, total=1), ZS.INVALID_VALUE),
                          (tier_labels([(1, b"x")], event=81, total=0), ZS.INVALID_VALUE)):
        before = snapshot(s)
        assert s.ingest(0x08, payload, NOW) == want, payload.hex()
        assert snapshot(s) == before
    assert [f[2] for f in s.take_outbox()].count(0x08) >= 1  # the labels re-published


def test_tariff_information_refusals():
    cases = [
        (tariff_info(provider=1), ZS.NOT_AUTHORIZED),
        (tariff_info(ttype=0x03), ZS.INVALID_VALUE),  # tariff type 3: reserved
        (tariff_info(ttype=0x30), ZS.INVALID_VALUE),  # charging scheme 3: per-tier blocks
        (tariff_info(tiers=0), ZS.INVALID_VALUE),
        (tariff_info(tiers=16), ZS.INVALID_VALUE),
        (tariff_info(blocks=16), ZS.INVALID_VALUE),
        (tariff_info(mult=0), ZS.INVALID_VALUE),
        (tariff_info(div=0), ZS.INVALID_VALUE),
        (tariff_info(tariff_id=0), ZS.INVALID_VALUE),
        (tariff_info(tariff_id=0xFFFFFFFF), ZS.INVALID_VALUE),
        (tariff_info(tiers=15, blocks=15), ZS.SUCCESS),
        (tariff_info(tiers=1, ttype=0x20), ZS.SUCCESS),  # block/TOU common scheme, one tier
    ]
    for payload, want in cases:
        s = server()
        before = snapshot(s)
        assert s.ingest(0x04, payload, NOW) == want, payload.hex()
        if want != ZS.SUCCESS:
            assert snapshot(s) == before


def test_tariff_information_for_fewer_tiers_replaces_at_its_start():
    s = server()
    later = NOW + 900
    assert s.ingest(0x04, tariff_info(tiers=1, start=zt(later), standing=0xFFFFFFFF), NOW) \
        == ZS.SUCCESS
    assert s.tariff.issuer_tariff_id == 7003
    s.tick(later)
    assert s.tariff.issuer_tariff_id == 7100 and s.tariff.standing_charge == 0
    assert [x.number for x in s.tariff.tiers] == [1]
    assert s.tariff.block_thresholds_kwh == ()  # the blocks of the old one do not carry over
    # the same tariff id again: updated in place (a new label and trailing digits)
    assert s.ingest(0x04, tariff_info(event=51, tiers=1, label=b"Renamed", digits=5), later) \
        == ZS.SUCCESS
    assert s.tariff.label == "Renamed" and s.tariff.price_trailing_digits == 5
    assert s.ingest(0x04, tariff_info(event=50, tiers=1), later) == ZS.INVALID_VALUE  # older


def test_block_thresholds_and_block_prices_of_the_active_tariff():
    s = server(7100)  # the active tariff is 7100: two tiers, thresholds 5 and 15 kWh
    assert s.ingest(0x04, tariff_info(tiers=2, blocks=2, mult=2, div=1), NOW) == ZS.SUCCESS
    # x multiplier / divisor = the Metering register's unit (Wh here): 3 and 9 kWh
    assert s.ingest(0x06, thresholds([1500, 4500], event=70), NOW) == ZS.SUCCESS
    assert s.tariff.block_thresholds_kwh == (D(3), D(9))
    out = [f[2] for f in s.take_outbox()]
    assert 0x06 in out and 0x05 in out  # re-published, and the matrix with its blocks
    # block prices (sub-payload 0: tier in the high nibble, block - 1 in the low)
    assert s.ingest(0x05, matrix([(0x10, 1000), (0x11, 1100), (0x12, 1200), (0x20, 2000),
                                  (0x21, 2100), (0x22, 2200)], event=61, tou=False),
                    NOW) == ZS.SUCCESS
    assert dict(s.tariff.block_prices)[(1, 3)] == D("0.12")
    assert dict(s.tariff.block_prices)[(2, 1)] == D("0.2")
    assert s.tariff.tiers[1].rate == D("0.2")  # a block tariff's tier price is its first block
    for command, payload, want in (
            (0x05, matrix([(0x13, 1)], event=62, tou=False), ZS.INVALID_VALUE),  # block 4 of 3
            (0x05, matrix([(0x30, 1)], event=62, tou=False), ZS.INVALID_VALUE),  # no tier 3
            (0x05, matrix([(3, 1)], event=62), ZS.INVALID_VALUE),  # TOU: no tier 3
            (0x05, matrix([(1, 1)], event=62, tariff_id=999), ZS.NOT_FOUND),
            (0x05, matrix([(1, 1)], event=62, provider=5), ZS.NOT_AUTHORIZED),
            (0x05, matrix([(1, 1)], event=60), ZS.INVALID_VALUE),  # older than 61
            (0x06, thresholds([1, 2], event=71, common=False, tier=1)  # tier 2: other values
             + bytes([0x22]) + (1).to_bytes(6, "little") + (3).to_bytes(6, "little"),
             ZS.INVALID_VALUE),
            (0x06, thresholds(list(range(1, 16)), event=71)  # 15, then a 16th in a 2nd record
             + bytes([0x01]) + (16).to_bytes(6, "little"), ZS.INVALID_VALUE),
            (0x06, thresholds([1], event=69), ZS.INVALID_VALUE),  # older
            (0x0E, cancel(7100), ZS.INVALID_VALUE),  # the active tariff cannot be cancelled
            (0x0E, cancel(7100, ttype=0x01), ZS.INVALID_VALUE),
            (0x0E, cancel(4242), ZS.NOT_FOUND),
            (0x0E, cancel(7100, provider=9), ZS.NOT_AUTHORIZED)):
        before = snapshot(s)
        assert s.ingest(command, payload, NOW) == want, (hex(command), payload.hex())
        assert snapshot(s) == before


def _republished_event_ids(s: PriceServer, command: int, offset: int) -> list[int]:
    """Issuer event ids of the frames re-published to the HAN (ZCL header: 3 bytes)."""
    return [struct.unpack_from("<I", f, 3 + offset)[0] for f in s.take_outbox() if f[2] == command]


def test_each_new_gas_value_reaches_the_han_with_a_larger_issuer_event_id():
    """SE D.4.2.4: new information carries a new, larger issuer event id, or HAN clients
    (which keep the last) ignore it."""
    for command, offset, first, second in (
            (0x02, 0, conversion(event=10, value=2, digits=0),
             conversion(event=11, value=3, digits=0)),
            (0x03, 0, calorific(event=10, value=390_000), calorific(event=11, value=391_000)),
            (0x07, 4, co2(event=10, value=185), co2(event=11, value=190))):
        s = server()
        assert s.ingest(command, first, NOW) == ZS.SUCCESS
        (a,) = _republished_event_ids(s, command, offset)
        assert s.ingest(command, second, NOW + 60) == ZS.SUCCESS
        (b,) = _republished_event_ids(s, command, offset)
        assert b > a > 0, hex(command)


EXPORT = """
[export]
issuer_tariff_id = 7002
label = "Export"
[[export.tiers]]
tier = 1
label = "Export"
rate = "0.1500"
"""


def export_server() -> PriceServer:
    s = PriceServer(tariff=parse_tariff(EXAMPLE.read_text() + EXPORT))
    s.tick(float(T0))
    s.take_outbox()
    return s


def test_the_export_tariff_takes_prices_and_labels_but_not_blocks():
    s = export_server()
    assert s.ingest(0x05, matrix([(1, 1700)], tariff_id=7002), NOW) == ZS.SUCCESS
    assert s.tariff.export.tiers[0].rate == D("0.17")
    assert s.tariff.tiers[0].rate == D("0.1545")  # the import tariff untouched
    # the import matrix has ids of its own: an older id than the export's is still new there
    assert s.ingest(0x05, matrix([(1, 1600)], tariff_id=7001, event=59), NOW) == ZS.SUCCESS
    assert s.tariff.tiers[0].rate == D("0.16")
    assert s.ingest(0x08, tier_labels([(1, b"Solar")], tariff_id=7002), NOW) == ZS.SUCCESS
    assert s.tariff.export.tiers[0].label == "Solar"
    assert s.ingest(0x06, thresholds([1000], tariff_id=7002), NOW) == ZS.INVALID_VALUE
    assert s.ingest(0x0E, cancel(7002), NOW) == ZS.INVALID_VALUE


def test_multi_command_publications_start_afresh_at_index_0():
    s = server(7100)
    assert s.ingest(0x04, tariff_info(tiers=2, blocks=2, mult=1, div=1), NOW) == ZS.SUCCESS
    # an abandoned publication (1 of 2 sent), then a new one of one command
    assert s.ingest(0x06, thresholds([1000, 2000], event=70, total=2), NOW) == ZS.SUCCESS
    assert s.ingest(0x06, thresholds([4000], event=71), NOW) == ZS.SUCCESS
    assert s.tariff.block_thresholds_kwh == (D(4),)
    # common thresholds over two records whose tier nibbles differ (ignored when common)
    payload = thresholds([1000, 2000], event=72, tier=1) + bytes([0x21]) + (3000).to_bytes(
        6, "little")
    assert s.ingest(0x06, payload, NOW) == ZS.SUCCESS
    assert s.tariff.block_thresholds_kwh == (D(1), D(2), D(3))
    # the same for labels: index 1 must follow index 0 of the same event
    assert s.ingest(0x08, tier_labels([(1, b"A")], event=80, total=2, tariff_id=7100), NOW) \
        == ZS.SUCCESS
    assert s.ingest(0x08, tier_labels([(2, b"B")], event=81, index=1, total=2,
                                      tariff_id=7100), NOW) == ZS.INVALID_VALUE
    assert s.ingest(0x08, tier_labels([(2, b"B")], event=80, index=1, total=2,
                                      tariff_id=7100), NOW) == ZS.SUCCESS
    assert [x.label for x in s.tariff.tiers] == ["A", "B"]


def test_a_second_held_tariff_replaces_the_first_and_cancels_it_on_the_han():
    s = server()
    assert s.ingest(0x04, tariff_info(tiers=3, tariff_id=7100, event=50), NOW) == ZS.SUCCESS
    s.take_outbox()
    assert s.ingest(0x04, tariff_info(tiers=4, tariff_id=7200, event=51), NOW) == ZS.SUCCESS
    assert s.pending[0].issuer_tariff_id == 7200
    cancels = [f for f in s.take_outbox() if f[2] == 0x0E]  # CancelTariff to the HAN
    assert [struct.unpack_from("<I", f, 3 + 4)[0] for f in cancels] == [7100]
    # the held one can be cancelled by the supplier; then it is unknown
    assert s.ingest(0x0E, cancel(7200), NOW) == ZS.SUCCESS
    assert s.pending is None
    assert s.ingest(0x05, matrix([(1, 1)], tariff_id=7200, event=61), NOW) == ZS.NOT_FOUND


def test_a_matrix_for_a_tariff_held_until_its_start_is_republished_with_that_start():
    s = server()
    later = NOW + 3600
    assert s.ingest(0x04, tariff_info(tiers=2, tariff_id=7100, start=zt(later)), NOW) \
        == ZS.SUCCESS
    assert s.pending is not None and s.pending[1] == int(later)
    s.take_outbox()
    assert s.ingest(0x05, matrix([(1, 1100), (2, 2200)]), NOW) == ZS.SUCCESS
    assert s.pending[0].tiers[1].rate == D("0.22") and s.tariff.issuer_tariff_id == 7003
    frames = [f for f in s.take_outbox() if f[2] == 0x05]
    assert frames and all(struct.unpack_from("<I", f, 3 + 8)[0] == zt(later) for f in frames)


def test_thresholds_before_any_tariff_information_and_none_at_all():
    # no PublishTariffInformation yet: the SE default scale (multiplier and divisor 1)
    s = server(7100)
    assert s.ingest(0x06, thresholds([2000, 6000], event=70), NOW) == ZS.SUCCESS
    assert s.tariff.block_thresholds_kwh == (D(2), D(6))
    # the re-published thresholds carry the active tariff's start, not the time they came
    frames = [f for f in s.take_outbox() if f[2] == 0x06]
    assert frames and all(struct.unpack_from("<I", f, 3 + 8)[0] == zt(T0) for f in frames)
    # a publication without thresholds: the tariff has no blocks (and no block prices)
    assert s.ingest(0x06, thresholds([], event=71), NOW) == ZS.SUCCESS
    assert s.tariff.block_thresholds_kwh == () and s.tariff.block_prices == ()
    # a one-rate tariff without a block period gets none from an empty publication
    plain = PriceServer()
    plain.tick(float(T0))
    assert plain.tariff.block_period is None
    assert plain.ingest(0x06, thresholds([], tariff_id=plain.tariff.issuer_tariff_id), NOW) \
        == ZS.SUCCESS
    assert plain.tariff.block_period is None


def test_co2_units_and_export_tariff_information():
    for unit in (0x01, 0x02, 0x03):  # kg/kWh, kg/gallon, kg/therm (D.4.2.4.8)
        s = server()
        assert s.ingest(0x07, co2(unit=unit), NOW) == ZS.SUCCESS, unit
        assert s.tariff.co2_unit == unit
    # tariff type 1 (received) with charging schemes 0..2 is the export tariff
    for ttype in (0x01, 0x11, 0x21):
        s = server()
        assert s.ingest(0x04, tariff_info(ttype=ttype, tariff_id=7002, tiers=1,
                                          label=b"Export"), NOW) == ZS.SUCCESS, hex(ttype)
        assert s.tariff.export is not None and s.tariff.export.issuer_tariff_id == 7002
        assert s.tariff.issuer_tariff_id == 7003  # the import tariff stays


def test_a_supplier_tariff_that_takes_over_keeps_the_supplier_price_and_billing_period():
    """SE carries no TOU schedule: the current price of a tariff the supplier sent is the
    supplier's last PublishPrice, which the take-over must not drop."""
    s = server()
    assert s.ingest(0x09, billing(start=zt(T0), duration=1, dtype=0x03), NOW) == ZS.SUCCESS
    period = s.tariff.billing_period
    assert s.ingest(0x00, publish_price(tier=2, price=2750, duration=600), NOW) == ZS.SUCCESS
    assert s.ingest(0x04, tariff_info(tiers=2, tariff_id=7100), NOW) == ZS.SUCCESS
    assert s.tariff.issuer_tariff_id == 7100
    assert s.tariff.billing_period == period
    cur = s.current_price(NOW + 60)
    assert (cur.tier, cur.unit_rate) == (2, D("0.2750"))
