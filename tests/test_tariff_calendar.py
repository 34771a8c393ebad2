"""The tariff file's seasons and special days, and the tariff as an SE calendar.

The oracle is tests/tou_oracle.py: the schedule read from the TOML text by the rules
examples/tariff.toml states, without sep's code.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from tou_oracle import Schedule

from sep.meter.calendar import compile_calendar, schedule_of
from sep.meter.tariff import (
    TariffError,
    load_tariff,
    parse_tariff,
    tariff_from_dict,
    tariff_to_dict,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tariff.toml"
DEMO = ROOT / "hubsim" / "data" / "demo_tariff.toml"


def uncommented_example() -> str:
    """examples/tariff.toml with its seasons and special days switched on."""
    text = EXAMPLE.read_text()
    return re.sub(r"(?m)^# (\[\[seasons|\[\[special_days|name =|start =|switches =|date =)",
                  r"\1", text)


def days_of(year: int) -> list[dt.date]:
    first = dt.date(year, 1, 1)
    return [first + dt.timedelta(days=n) for n in range((dt.date(year + 1, 1, 1) - first).days)]


def utc(date: dt.date, minute: int, zone: str) -> float:
    from zoneinfo import ZoneInfo

    local = dt.datetime(date.year, date.month, date.day, minute // 60, minute % 60,
                        tzinfo=ZoneInfo(zone))
    return local.timestamp()


@pytest.mark.parametrize("source", ["example", "example+seasons", "demo"])
def test_tier_at_every_quarter_hour_of_a_year_matches_the_file(source):
    text = {"example": EXAMPLE.read_text(), "example+seasons": uncommented_example(),
            "demo": DEMO.read_text()}[source]
    tariff = parse_tariff(text)
    oracle = Schedule.from_text(text)
    if source != "example":
        assert tariff.seasons and tariff.special_days
    wrong = []
    for date in days_of(2026):
        for minute in range(0, 1440, 15):
            if tariff.tier_at(utc(date, minute, tariff.timezone)) != oracle.tier(date, minute):
                wrong.append((date, minute))
    # 2026-03-29 01:00-02:00 does not exist in Europe/London (the clocks go forward)
    wrong = [w for w in wrong if not (w[0] == dt.date(2026, 3, 29) and 60 <= w[1] < 120)]
    assert wrong == []


def test_switch_times_are_the_files():
    tariff = parse_tariff(uncommented_example())
    oracle = Schedule.from_text(uncommented_example())
    start = utc(dt.date(2026, 3, 30), 0, "UTC")
    got = list(tariff.boundaries(start, start + 7 * 86400))
    want = []
    for n in range(8):
        date = dt.date(2026, 3, 30) + dt.timedelta(days=n)
        want += [utc(date, m, "UTC") for m, _ in oracle.profile(date)]
    assert got == [int(w) for w in want if start < w <= start + 7 * 86400]


def test_seasons_and_special_days_survive_storage_as_a_document():
    tariff = load_tariff(DEMO)
    again = tariff_from_dict(json.loads(json.dumps(tariff_to_dict(tariff))))
    oracle = Schedule.from_file(DEMO)
    for date in (dt.date(2026, 1, 1), dt.date(2026, 4, 4), dt.date(2026, 12, 25)):
        for minute in (0, 500, 1000, 1300):
            assert again.tier_at(utc(date, minute, "Europe/London")) == oracle.tier(date, minute)


@pytest.mark.parametrize(("extra", "key", "words"), [
    ('[[seasons]]\nstart = "02-30"\n[[seasons.schedule]]\nswitches = { "00:00" = 1 }\n',
     "seasons[0].start", "MM-DD"),
    ('[[seasons]]\nstart = 2026-04-01\n[[seasons.schedule]]\nswitches = { "00:00" = 1 }\n',
     "seasons[0].start", "every year"),
    ('[[seasons]]\nstart = "04-01"\n', "seasons[0].schedule", "missing"),
    ('[[seasons]]\nstart = "04-01"\n[[seasons.schedule]]\nswitches = { "07:00" = 9 }\n',
     "seasons[0].schedule[0].switches.07:00", "tier 9"),
    ('[[seasons]]\nstart = "04-01"\n[[seasons.schedule]]\nswitches = { "00:00" = 1 }\n'
     '[[seasons]]\nstart = "04-01"\n[[seasons.schedule]]\nswitches = { "00:00" = 2 }\n',
     "seasons", "two seasons"),
    ('[[special_days]]\ndate = "12-25"\nswitches = { "07:00" = 1 }\n',
     "special_days[0].switches", "00:00"),
    ('[[special_days]]\ndate = "13-01"\nswitches = { "00:00" = 1 }\n',
     "special_days[0].date", "MM-DD"),
    ('[[special_days]]\ndate = "12-25"\nswitches = { "00:00" = 1 }\n'
     '[[special_days]]\ndate = "12-25"\nswitches = { "00:00" = 2 }\n',
     "special_days", "twice"),
    ('[[special_days]]\ndate = "12-25"\nwhen = 1\nswitches = { "00:00" = 1 }\n',
     "special_days[0].when", "unknown key"),
])
def test_a_bad_season_or_special_day_names_its_key(extra, key, words):
    with pytest.raises(TariffError) as err:
        parse_tariff(EXAMPLE.read_text() + "\n" + extra, source="t.toml")
    assert err.value.key == key
    assert words in str(err.value)
    assert str(err.value).startswith("t.toml: ")


def test_the_calendar_form_describes_the_same_schedule():
    """compile_calendar → schedule_of → the same tier as the file, every half hour."""
    tariff = parse_tariff(uncommented_example())
    cal = compile_calendar(tariff, issuer_calendar_id=5, issuer_event_id=6, start=0)
    # the weekly schedule runs from 1 January: a season from 01-01 besides the file's two
    assert [(s.month, s.day) for s in cal.seasons] == [(1, 1), (4, 1), (10, 1)]
    assert len(cal.special_days) == 2
    back = schedule_of(cal, parse_tariff(EXAMPLE.read_text()))
    oracle = Schedule.from_text(uncommented_example())
    for date in days_of(2026)[::3]:
        assert list(cal.profile_on(date).entries) == oracle.profile(date), date
        for minute in range(0, 1440, 30):
            assert back.tier_at(utc(date, minute, "UTC")) == oracle.tier(date, minute)
