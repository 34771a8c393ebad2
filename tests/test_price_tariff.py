"""The tariff file: the example loads with the values written in it; bad files say which key
is wrong and why; the TOU schedule, block and billing periods against hand-worked times."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from test_price import BLOCKS, EXAMPLE

from sep.clusters.price import PriceServer
from sep.meter.tariff import DEFAULT_TARIFF, Recurrence, TariffError, load_tariff, parse_tariff


def utc(*a: int) -> int:
    return int(dt.datetime(*a, tzinfo=dt.UTC).timestamp())


def test_the_example_loads():
    tariff = load_tariff(EXAMPLE)
    assert tariff.provider_id == 0xABCD and tariff.issuer_tariff_id == 7001
    assert tariff.label == "Economy 7" and tariff.currency == 826
    assert tariff.price_trailing_digits == 4 and tariff.unit_of_measure == 0
    assert [(x.number, x.label, x.rate) for x in tariff.tiers] == [
        (1, "Night", D("0.1545")), (2, "Day", D("0.3127"))]
    assert tariff.standing_charge == D("0.5312")
    assert tariff.conversion_factor == D("1.02264") and tariff.calorific_value == D("39.5")
    assert tariff.calorific_value_unit == 0x01 and tariff.co2 == D("0.233")
    assert tariff.co2_unit == 0x01
    assert tariff.billing_period == Recurrence(utc(2024, 1, 1), 1, "months")
    assert tariff.charging_scheme == 0 and tariff.block_thresholds_kwh == ()
    assert tariff.price_units(D("0.1545")) == 1545


def test_economy_7_times():
    tariff = load_tariff(EXAMPLE)
    assert tariff.tier_at(utc(2026, 1, 1, 0, 29, 59)) == 2  # yesterday evening's Day rate
    assert tariff.tier_at(utc(2026, 1, 1, 0, 30)) == 1
    assert tariff.tier_at(utc(2026, 1, 1, 7, 29, 59)) == 1
    assert tariff.tier_at(utc(2026, 1, 1, 7, 30)) == 2
    assert tariff.next_change(utc(2026, 1, 1, 12)) == utc(2026, 1, 2, 0, 30)
    assert tariff.tier_start(utc(2026, 1, 1, 3)) == utc(2026, 1, 1, 0, 30)
    server = PriceServer(tariff=tariff)
    server.tick(utc(2026, 1, 1, 12))
    nxt = server.next_price(utc(2026, 1, 1, 12))
    assert nxt is not None
    assert (nxt.start, nxt.tier, nxt.unit_rate, nxt.label) == (utc(2026, 1, 2, 0, 30), 1,
                                                               D("0.1545"), "Night")
    assert server.current is not None and server.current.label == "Day"
    # London time: the same switches move by an hour in summer
    london = parse_tariff(EXAMPLE.read_text().replace('timezone = "UTC"',
                                                      'timezone = "Europe/London"'))
    assert london.next_change(utc(2026, 7, 1, 12)) == utc(2026, 7, 1, 23, 30)


def test_weekday_schedules():
    text = EXAMPLE.read_text().replace(
        '[[schedule]]\nswitches = { "00:30" = 1, "07:30" = 2 }',
        '[[schedule]]\nswitches = { "00:30" = 1, "07:30" = 2 }\n'
        '[[schedule]]\ndays = ["sat", "sun"]\nswitches = { "00:00" = 1 }')
    tariff = parse_tariff(text)
    assert tariff.tier_at(utc(2026, 1, 3, 12)) == 1  # 2026-01-03 is a Saturday
    assert tariff.tier_at(utc(2026, 1, 5, 0, 10)) == 1  # Monday 00:10: Sunday's tier
    assert tariff.tier_at(utc(2026, 1, 5, 8)) == 2


def test_blocks_and_periods():
    tariff = parse_tariff(EXAMPLE.read_text() + BLOCKS)
    assert tariff.thresholds_wh == [5000, 15000]
    assert tariff.block_price(2, 3) == D("0.3500")
    assert tariff.charging_scheme == 2  # block/TOU, common thresholds
    assert tariff.block_period is not None
    assert tariff.block_period.period(utc(2026, 1, 1, 12)) == (utc(2026, 1, 1), utc(2026, 1, 2))
    monthly = Recurrence(utc(2024, 1, 15), 3, "months")
    assert monthly.period(utc(2024, 5, 1)) == (utc(2024, 4, 15), utc(2024, 7, 15))
    assert monthly.period(utc(2024, 1, 1)) == (utc(2024, 1, 15), utc(2024, 4, 15))


def test_the_default_tariff_is_one_rate():
    assert [(x.number, x.label, x.rate) for x in DEFAULT_TARIFF.tiers] == [
        (1, "Standard", D("0.2450"))]
    assert DEFAULT_TARIFF.provider_id == 0x0000ABCD and DEFAULT_TARIFF.issuer_tariff_id == 1
    assert DEFAULT_TARIFF.next_change(utc(2026, 1, 1)) is None
    server = PriceServer()
    server.tick(utc(2026, 1, 1))
    assert server.current is not None and server.current.unit_rate == D("0.2450")
    assert server.current.duration_min == 0xFFFF and server.next_price(utc(2026, 1, 1)) is None


GOOD = EXAMPLE.read_text()


@pytest.mark.parametrize(("change", "key", "problem"), [
    (lambda s: s.replace("[[tiers]]\ntier = 1", "[[tiers]]\ntier = 3", 1), "tiers",
     "numbered 1..2"),
    (lambda s: s.replace('rate = "0.1545"', 'rate = "0.15455"'), "tiers[0].rate",
     "more than 4 decimal places"),
    (lambda s: s.replace('rate = "0.1545"', 'rate = "cheap"'), "tiers[0].rate",
     "not a decimal number"),
    (lambda s: s.replace('label = "Night"', 'label = "Night-time rate"'), "tiers[0].label",
     "at most 12 bytes"),
    (lambda s: s.replace('"07:30" = 2', '"07:30" = 5'), "schedule[0].switches.07:30",
     "tier 5 is not defined"),
    (lambda s: s.replace('"07:30" = 2', '"7.30" = 2'), "schedule[0].switches.7.30",
     "HH:MM"),
    (lambda s: s.replace("provider_id = 0x0000ABCD", "provider = 1"), "provider",
     "unknown key"),
    (lambda s: s.replace('timezone = "UTC"', 'timezone = "Mars/Olympus"'), "timezone",
     "unknown IANA time zone"),
    (lambda s: s.replace("currency = 826", 'currency = "GBP"'), "currency", "integer 1..999"),
    (lambda s: s.replace('unit = "kg/kWh"', 'unit = "tonnes"'), "co2.unit", "one of"),
    (lambda s: s.replace('timebase = "months"', 'timebase = "fortnights"'),
     "billing_period.timebase", "one of"),
    (lambda s: s.replace("start = 2024-01-01T00:00:00Z", "start = 2024-01-31T00:00:00Z"),
     "billing_period.start", "day 1..28"),
    (lambda s: s.replace("[[schedule]]\nswitches", "[[schedule]]\nxswitches"),
     "schedule[0].xswitches", "unknown key"),
    (lambda s: s.replace("[[schedule]]\nswitches", '[[schedule]]\ndays = ["mon"]\nswitches'),
     "schedule", "no switches for tue"),
    (lambda s: s + BLOCKS.replace("[5, 15]", "[15, 5]"), "blocks.thresholds_kwh",
     "positive and rising"),
    (lambda s: s + BLOCKS.replace('"0.1700"]', ']'), "blocks.prices.1", "needs 3 prices"),
    (lambda s: s + BLOCKS.replace("period = {", "xperiod = {"), "blocks.xperiod",
     "unknown key"),
    (lambda s: s + "[oops", "(file)", "not valid TOML"),
])
def test_bad_files_say_what_is_wrong(tmp_path, change, key, problem):
    path = tmp_path / "tariff.toml"
    path.write_text(change(GOOD))
    with pytest.raises(TariffError) as err:
        load_tariff(path)
    assert err.value.key == key, str(err.value)
    assert problem in err.value.problem, str(err.value)
    assert str(path) in str(err.value)


def test_a_missing_file(tmp_path):
    with pytest.raises(TariffError, match="cannot read"):
        load_tariff(tmp_path / "nope.toml")


def test_more_tiers_need_a_schedule():
    text = GOOD.replace('[[schedule]]\nswitches = { "00:30" = 1, "07:30" = 2 }', "")
    with pytest.raises(TariffError) as err:
        parse_tariff(text)
    assert err.value.key == "schedule"
