"""What each Store write puts in the file, read back with plain sqlite3 (not the store).

The meter's records, load profile, billing and events are read here as SQL rows and
compared with what was written; faults, filters and the quarantine's bookkeeping are
checked against the damage the test made.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import zlib
from pathlib import Path

import pytest

from sep.store import CorruptRecord, Store


def raw(d: Path) -> sqlite3.Connection:
    return sqlite3.connect(d / "meter.db", isolation_level=None)


def test_commit_writes_records_and_events_as_given(tmp_path):
    s = Store.open(tmp_path)
    s.append_event("POWER_UP")
    seqs = s.commit([("prepay", "account", {"credit": 5}), ("meter", "registers", {"wh": 7})],
                    [("CONFIG_CHANGE", {"n": 1}), ("SUPPLY_CHANGE", {"state": "on"})])
    db = raw(tmp_path)
    rows = db.execute("SELECT kind, key, copy, value FROM records WHERE kind != 'chain' "
                      "ORDER BY kind, key, copy").fetchall()
    assert rows == [("meter", "registers", 0, '{"wh":7}'), ("prepay", "account", 0,
                    '{"credit":5}'), ("prepay", "account", 1, '{"credit":5}')]
    events = db.execute("SELECT seq, kind, details FROM events ORDER BY seq").fetchall()
    assert events[1:] == [(2, "CONFIG_CHANGE", '{"n": 1}'), (3, "SUPPLY_CHANGE",
                                                             '{"state": "on"}')]
    assert seqs == [2, 3]
    assert s.commit([("meter", "registers", {"wh": 8})]) == []
    assert s.check().clean


def test_commit_clears_the_fault_of_a_record_it_rewrites(tmp_path):
    s = Store.open(tmp_path)
    s.put_record("meter", "registers", {"wh": 1})
    s.put_record("meter", "other", {"wh": 2})
    raw(tmp_path).execute("UPDATE records SET crc=crc+1 WHERE kind='meter'")
    for key in ("registers", "other"):
        with pytest.raises(CorruptRecord):
            s.get_record("meter", key)
    assert {("meter", "registers"), ("meter", "other")} <= s.faults
    s.commit([("meter", "registers", {"wh": 3})])
    assert ("meter", "registers") not in s.faults and ("meter", "other") in s.faults
    s.put_record("meter", "other", {"wh": 4})
    assert ("meter", "other") not in s.faults


def test_the_chain_head_cannot_be_written_as_a_record(tmp_path):
    s = Store.open(tmp_path)
    s.append_event("POWER_UP")
    for write in (lambda: s.put_record("chain", "head", {"seq": 0}),
                  lambda: s.commit([("chain", "head", {"seq": 0})])):
        with pytest.raises(ValueError):
            write()
    assert s.check().clean


def test_clear_intervals_deletes_them_all_and_says_how_many(tmp_path):
    s = Store.open(tmp_path)
    s.put_intervals([(ch, 1800 * i, i) for i in range(1, 11) for ch in (0, 1)])
    s.put_billing(0, 1, 5, 0, 1)
    assert s.clear_intervals() == 20
    db = raw(tmp_path)
    assert db.execute("SELECT COUNT(*) FROM intervals").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM billing").fetchone() == (1,)
    assert s.clear_intervals() == 0
    assert s.check().clean


def test_billing_by_period(tmp_path):
    s = Store.open(tmp_path)
    s.put_billing(86_400, 2, 20, 1, 4)
    s.put_billing(86_400, 1, 10, 0, 2)
    s.put_billing(0, 1, 5, 0, 1)
    assert s.billing(86_400) == [(86_400, 1, 10, 0, 2), (86_400, 2, 20, 1, 4)]
    assert s.billing(0) == [(0, 1, 5, 0, 1)]
    assert s.billing(1) == []
    assert s.billing() == [(0, 1, 5, 0, 1), (86_400, 1, 10, 0, 2), (86_400, 2, 20, 1, 4)]
    assert raw(tmp_path).execute("SELECT delivered_wh, received_wh, cost FROM billing WHERE "
                                 "period_start=86400 AND tier=2").fetchone() == (20, 1, 4)


def test_intervals_by_channel_and_range(tmp_path):
    s = Store.open(tmp_path)
    s.put_intervals([(ch, 1800 * i, 10 * ch + i) for i in range(1, 6) for ch in (0, 1)])
    assert s.intervals(1) == [(1800 * i, 10 + i) for i in range(1, 6)]
    assert s.intervals(0, 3600, 7200) == [(3600, 2), (5400, 3), (7200, 4)]


@pytest.mark.parametrize("table,where,read,key", [
    ("billing", "tier=2", lambda s: s.billing(), "0/2"),
    ("intervals", "end_time=3600", lambda s: s.intervals(0), "0/3600"),
    ("records", "kind='meter'", lambda s: s.get_record("meter", "registers"),
     "meter/registers#0"),
])
def test_the_quarantine_names_the_row_and_keeps_what_was_found(tmp_path, table, where, read,
                                                                key):
    s = Store.open(tmp_path)
    s.put_record("meter", "registers", {"wh": 1})
    s.put_intervals([(0, 1800, 1), (0, 3600, 2)])
    s.put_billing(0, 1, 5, 0, 1)
    s.put_billing(0, 2, 6, 0, 2)
    raw(tmp_path).execute(f"UPDATE {table} SET crc=crc+1 WHERE {where}")  # noqa: S608
    with pytest.raises(CorruptRecord) if table == "records" else contextlib.nullcontext():
        read(s)
    rows = raw(tmp_path).execute("SELECT tbl, key, reason, raw FROM quarantine").fetchall()
    assert [r[:3] for r in rows] == [(table, key, "checksum mismatch")]
    found = json.loads(rows[0][3])
    assert found == {"billing": [6, 0, 2], "intervals": 2, "records": '{"wh":1}'}[table]
    failure = [e.details for e in s.events() if e.kind == "INTEGRITY_FAILURE"]
    assert failure == [{"table": table, "key": key, "reason": "checksum mismatch"}]
    assert s.check().problems[0].reason == "quarantined earlier: checksum mismatch"



def test_a_store_in_a_new_nested_directory(tmp_path):
    d = tmp_path / "var" / "lib" / "sep"
    s = Store.open(d)
    s.append_event("POWER_UP")
    assert (d / "meter.db").exists() and len((d / "store.key").read_bytes()) == 32
    assert (d / "store.key").stat().st_mode & 0o777 == 0o600


def test_record_text_is_canonical_json(tmp_path):
    s = Store.open(tmp_path)
    s.put_record("meter", "registers", {"b": 1, "a": [2, {"d": 3, "c": 4}]})
    (value,) = raw(tmp_path).execute("SELECT value FROM records WHERE kind='meter'").fetchone()
    assert value == '{"a":[2,{"c":4,"d":3}],"b":1}'


def test_a_record_edited_without_the_key_is_a_mac_mismatch(tmp_path):
    s = Store.open(tmp_path)
    s.put_record("meter", "registers", {"wh": 1})
    text = '{"wh":2}'
    c = zlib.crc32(json.dumps(["meter", "registers#0", [text]], separators=(",", ":")).encode())
    raw(tmp_path).execute("UPDATE records SET value=?, crc=? WHERE kind='meter'", (text, c))
    assert [(p.table, p.key, p.reason) for p in s.check().problems][0] == (
        "meter", "registers#0", "MAC mismatch (altered)")


def test_reading_a_single_copy_record_repairs_nothing(tmp_path):
    s = Store.open(tmp_path)
    s.put_record("meter", "registers", {"wh": 1})
    for _ in range(3):
        assert s.get_record("meter", "registers") == {"wh": 1}
    assert [e.kind for e in s.events()] == []
    assert raw(tmp_path).execute("SELECT COUNT(*) FROM records WHERE kind='meter'"
                                 ).fetchone() == (1,)


def test_a_repaired_copy_is_logged_with_what_was_repaired(tmp_path):
    s = Store.open(tmp_path)
    s.set_calibration({"gain": 7})
    raw(tmp_path).execute("UPDATE records SET crc=crc+1 WHERE kind='calibration' AND copy=1")
    assert s.get_calibration() == {"gain": 7}
    recovered = [e.details for e in s.events() if e.kind == "INTEGRITY_RECOVERED"]
    assert recovered == [{"table": "calibration", "key": "main", "copies_repaired": 1}]
    assert raw(tmp_path).execute("SELECT COUNT(*) FROM records WHERE kind='calibration'"
                                 ).fetchone() == (2,)


def test_events_keep_their_time_and_the_last_one_is_found(tmp_path):
    s = Store.open(tmp_path)
    assert s.last_event() is None
    s.append_event_at("POWER_UP", 1_700_000_000.25, {"a": 1})
    s.append_event_at("STOP", 1_700_000_100.5, {"b": 2})
    assert [(e.seq, e.time, e.kind, e.details) for e in s.events()] == [
        (1, 1_700_000_000.25, "POWER_UP", {"a": 1}), (2, 1_700_000_100.5, "STOP", {"b": 2})]
    last = s.last_event()
    assert (last.seq, last.time, last.kind, last.details) == (2, 1_700_000_100.5, "STOP",
                                                              {"b": 2})
    assert [e.seq for e in s.events(since=1)] == [2]


def test_a_lost_head_before_any_event_is_rebuilt(tmp_path):
    s = Store.open(tmp_path)
    s.put_record("meter", "registers", {"wh": 1})  # rows and a head, no events yet
    raw(tmp_path).execute("UPDATE records SET crc=crc+1 WHERE kind='chain'")
    s.put_record("meter", "registers", {"wh": 2})
    assert [(e.seq, e.kind) for e in s.events()] == [(1, "INTEGRITY_FAILURE")]
    assert [p.reason for p in s.check().problems] == [
        "quarantined earlier: no intact copy", "quarantined earlier: no intact copy"]
