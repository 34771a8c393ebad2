"""Structure-aware mutation of documents (JSON objects, TOML tables): the config loaders'
and the MQTT command handler's campaigns share it.

A document is mutated at a random place in its tree: a key dropped or added, a value
replaced by one of another kind or at the edge of its own (0, -1, 2**32, 2**64, NaN,
infinity, a very long or non-ASCII string, a date, an empty list, a nested table), an
array entry duplicated or removed. Most mutations keep the document mostly right, so a
loader's checks are met one at a time rather than all failing at the first key.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARIFF_FILES = (ROOT / "examples" / "tariff.toml", ROOT / "hubsim" / "data" / "demo_tariff.toml")


def odd_value(rng: random.Random, like: Any = None) -> Any:
    """A value a loader must refuse or take: another kind, or the edge of this one."""
    r = rng.random()
    if isinstance(like, bool) and r < 0.3:
        return not like
    if isinstance(like, int) and not isinstance(like, bool) and r < 0.5:
        return rng.choice((0, -1, 1, like + 1, like - 1, 2**31, 2**32 - 1, 2**32, 2**48,
                           2**63 - 1, 2**64, -(2**63), 255, 256, 65535, 65536))
    if isinstance(like, str) and r < 0.5:
        return rng.choice(("", " ", like * 3, like[:1], "x" * 300, "é£€" * 10, "\x00",
                           "0.1", "-0.5", "1e400", "NaN", "Infinity", "0x10", "１２",
                           like.upper(), like + "\n", "99:99", "24:00", "2024-02-30",
                           "Europe/Nowhere", "../../etc/passwd"))
    if isinstance(like, float) and r < 0.5:
        return rng.choice((0.0, -0.0, -1.5, 1e300, float("nan"), float("inf"), 1e-30))
    return rng.choice((
        None, True, False, 0, -1, 2**64, 1.5, float("nan"), float("inf"), "", "x" * 100,
        [], [1, 2], ["a"], {}, {"k": 1}, dt.date(2024, 2, 29),
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(1969, 12, 31, 23, 59),
        dt.datetime(9999, 12, 31), dt.time(7, 30), "12:00", "2024-01-01T00:00:00Z",
    ))


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


def _at(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def mutate(doc: Any, rng: random.Random, rounds: int | None = None) -> tuple[Any, str]:
    """A mutated deep copy of ``doc`` and what was done."""
    doc = copy.deepcopy(doc)
    done = []
    for _ in range(rounds or rng.choice((1, 1, 1, 2, 3))):
        where = rng.choice(paths(doc))
        if not where:
            if isinstance(doc, dict) and rng.random() < 0.5:
                doc[rng.choice(("extra", "Label", "tiers ", "0", ""))] = odd_value(rng)
                done.append("add top key")
                continue
            if rng.random() < 0.05:
                return odd_value(rng), "not a table"
            continue
        parent, key = _at(doc, where[:-1]), where[-1]
        value = parent[key]
        r = rng.random()
        if r < 0.2 and isinstance(parent, dict):
            del parent[key]
            done.append(f"drop {'.'.join(map(str, where))}")
        elif r < 0.3 and isinstance(parent, list):
            if rng.random() < 0.5:
                parent.insert(key, copy.deepcopy(value))
                done.append(f"duplicate {'.'.join(map(str, where))}")
            else:
                del parent[key]
                done.append(f"remove {'.'.join(map(str, where))}")
        elif r < 0.35 and isinstance(value, dict):
            value[rng.choice(("bogus", "tier", "Rate", "days"))] = odd_value(rng)
            done.append(f"add key in {'.'.join(map(str, where))}")
        else:
            parent[key] = odd_value(rng, value)
            done.append(f"set {'.'.join(map(str, where))}")
    return doc, ", ".join(done) or "intact"


def json_safe(doc: Any) -> Any:
    """What a JSON document can carry: dates and times as ISO text."""
    if isinstance(doc, dict):
        return {str(k): json_safe(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [json_safe(v) for v in doc]
    if isinstance(doc, (dt.date, dt.datetime, dt.time)):
        return doc.isoformat()
    return doc


def tariff_documents() -> list[dict[str, Any]]:
    """Valid tariff documents: the shipped files, one with blocks and the rest, and the
    default tariff's document."""
    import tomllib

    from sep.meter.tariff import DEFAULT_TARIFF, tariff_to_dict

    docs = [tomllib.loads(p.read_text()) for p in TARIFF_FILES]
    full = copy.deepcopy(docs[0])
    full["blocks"] = {"thresholds_kwh": [5, 15],
                      "period": {"start": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                                 "duration": 1, "timebase": "days"},
                      "prices": {"1": ["0.1545", "0.1600", "0.1700"],
                                 "2": ["0.3127", "0.3300", "0.3500"]}}
    full["co2"] = {"value": "0.233", "unit": "kg/kWh"}
    full["billing_period"] = {"start": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                              "duration": 1, "timebase": "months"}
    docs.append(full)
    docs.append(tariff_to_dict(DEFAULT_TARIFF))
    return docs
