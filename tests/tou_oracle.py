"""An independent reading of a tariff file's time-of-use schedule, from the TOML alone.

Written from the rules examples/tariff.toml states, without sep's code: the [[schedule]]
weekly switches run from 1 January until the first [[seasons]] start ("MM-DD", every
year), each season's weekly switches until the next; a [[special_days]] date (a TOML date,
or "MM-DD" every year) replaces its weekday's switches; before a day's first switch the
last switch of the days before it in the same weekly schedule is in force.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _minutes(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def _week(entries: list[dict[str, Any]]) -> list[list[tuple[int, int]]]:
    default = None
    days: dict[int, list[tuple[int, int]]] = {}
    for entry in entries:
        switches = sorted((_minutes(k), v) for k, v in entry["switches"].items())
        if "days" in entry:
            for name in entry["days"]:
                days[DAYS.index(name)] = switches
        else:
            default = switches
    return [days.get(d, default) or [] for d in range(7)]


class Schedule:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.base = _week(doc.get("schedule") or [{"switches": {"00:00": 1}}])
        self.seasons = []
        for s in doc.get("seasons", []):
            month, day = (int(x) for x in s["start"].split("-"))
            self.seasons.append(((month, day), _week(s["schedule"])))
        self.seasons.sort()
        self.specials: list[tuple[int | None, int, int, list[tuple[int, int]]]] = []
        for s in doc.get("special_days", []):
            d = s["date"]
            if isinstance(d, dt.date):
                year, month, day = d.year, d.month, d.day
            else:
                year = None
                month, day = (int(x) for x in d.split("-"))
            self.specials.append((year, month, day, sorted((_minutes(k), v)
                                                           for k, v in s["switches"].items())))

    @classmethod
    def from_file(cls, path: Path) -> Schedule:
        return cls(tomllib.loads(path.read_text()))

    @classmethod
    def from_text(cls, text: str) -> Schedule:
        return cls(tomllib.loads(text))

    def week_for(self, date: dt.date) -> list[list[tuple[int, int]]]:
        week = self.base
        for (month, day), w in self.seasons:
            if (month, day) <= (date.month, date.day):
                week = w
        return week

    def profile(self, date: dt.date) -> list[tuple[int, int]]:
        """The day's (minute, tier) from 00:00."""
        for year, month, day, switches in self.specials:
            if (month, day) == (date.month, date.day) and year == date.year:
                return switches
        for year, month, day, switches in self.specials:
            if (month, day) == (date.month, date.day) and year is None:
                return switches
        week = self.week_for(date)
        today = week[date.weekday()]
        if today and today[0][0] == 0:
            return today
        for back in range(1, 8):
            earlier = week[(date.weekday() - back) % 7]
            if earlier:
                return [(0, earlier[-1][1]), *today]
        raise AssertionError("no switch at all")

    def tier(self, date: dt.date, minute: int) -> int:
        return [tier for m, tier in self.profile(date) if m <= minute][-1]
