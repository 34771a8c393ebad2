"""`Store.check`, in process: exactly which problems it reports for each kind of damage.

The attacks are made with Python's sqlite3 on the file; the expected reports follow from
the attack (which row, which sequence numbers) and the row counts come from SQL, not from
the store. ``sep check`` runs the same function in a subprocess (tests/test_store_integrity);
here it runs where a planted bug in it shows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import zlib
from pathlib import Path

import pytest

from sep.store import Store


def raw(d: Path) -> sqlite3.Connection:
    return sqlite3.connect(d / "meter.db", isolation_level=None)


def report(d: Path) -> list[tuple[str, str, str]]:
    s = Store.open(d)
    try:
        return [(p.table, p.key, p.reason) for p in s.check().problems]
    finally:
        s.close()


def six_events(d: Path) -> None:
    s = Store.open(d)
    for i in range(6):
        s.append_event("CONFIG_CHANGE", n=i)
    s.close()


def event_bytes(seq: int, t: float, kind: str, details: str) -> bytes:
    return json.dumps(["events", str(seq), [t, kind, details]], separators=(",", ":"),
                      sort_keys=True).encode()


MISSING = "chain/MAC mismatch (altered, removed or reordered)"


def test_a_clean_store_counts_every_row(tmp_path):
    s = Store.open(tmp_path)
    s.append_event("POWER_UP")
    s.set_config("site", "A")
    s.put_intervals([(0, 1800 * i, i) for i in range(1, 8)])
    s.put_billing(0, 1, 5, 0, 1)
    r = s.check()
    s.close()
    db = raw(tmp_path)
    total = sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608
                for t in ("records", "intervals", "billing", "events"))
    assert r.clean and r.problems == []
    assert r.rows_checked == total == 2 + 2 + 7 + 1 + 2  # config x2, head x2, 7, 1, 2 events
    assert 0 < r.seconds < 10


def test_an_event_removed_in_the_middle(tmp_path):
    six_events(tmp_path)
    raw(tmp_path).execute("DELETE FROM events WHERE seq=3")
    assert report(tmp_path) == [("events", "3", "missing events 3..3"), ("events", "4", MISSING)]


def test_two_events_removed_in_the_middle(tmp_path):
    six_events(tmp_path)
    raw(tmp_path).execute("DELETE FROM events WHERE seq IN (2, 3)")
    assert report(tmp_path) == [("events", "2", "missing events 2..3"), ("events", "4", MISSING)]


def test_the_last_event_removed(tmp_path):
    six_events(tmp_path)
    raw(tmp_path).execute("DELETE FROM events WHERE seq=6")
    assert report(tmp_path) == [
        ("events", "6", "log ends at 5 but the chain head says 6: events removed")]


def test_every_event_removed(tmp_path):
    six_events(tmp_path)
    raw(tmp_path).execute("DELETE FROM events")
    assert report(tmp_path) == [
        ("events", "6", "log ends at 0 but the chain head says 6: events removed")]


def test_two_events_swapped(tmp_path):
    six_events(tmp_path)
    db = raw(tmp_path)
    db.execute("UPDATE events SET seq=100 WHERE seq=2")
    db.execute("UPDATE events SET seq=2 WHERE seq=3")
    db.execute("UPDATE events SET seq=3 WHERE seq=100")
    # the CRC binds the sequence number: both moved rows fail it; event 4 follows the MAC
    # that now sits at 3, which is not the one it was chained to
    assert report(tmp_path) == [("events", "2", "checksum mismatch"),
                                ("events", "3", "checksum mismatch"), ("events", "4", MISSING)]


def test_an_event_edited_with_its_crc_recomputed(tmp_path):
    six_events(tmp_path)
    db = raw(tmp_path)
    t, kind = db.execute("SELECT time, kind FROM events WHERE seq=4").fetchone()
    text = json.dumps({"n": 99}, sort_keys=True)
    db.execute("UPDATE events SET details=?, crc=? WHERE seq=4",
               (text, zlib.crc32(event_bytes(4, t, kind, text))))
    # only 4: 5 is chained to the MAC stored at 4, which the attacker left alone
    assert report(tmp_path) == [("events", "4", MISSING)]


def test_an_event_edited_with_a_forged_mac_under_the_wrong_key(tmp_path):
    six_events(tmp_path)
    db = raw(tmp_path)
    rows = db.execute("SELECT seq, time, kind, details, mac FROM events ORDER BY seq").fetchall()
    text = json.dumps({"n": 99}, sort_keys=True)
    data = event_bytes(4, rows[3][1], rows[3][2], text)
    forged = hmac.new(b"\x00" * 32, rows[2][4] + data, hashlib.sha256).digest()
    db.execute("UPDATE events SET details=?, crc=?, mac=? WHERE seq=4",
               (text, zlib.crc32(data), forged))
    assert report(tmp_path) == [("events", "4", MISSING), ("events", "5", MISSING)]


def test_an_event_whose_mac_is_null(tmp_path):
    six_events(tmp_path)
    raw(tmp_path).execute("UPDATE events SET mac=NULL WHERE seq=6")
    assert report(tmp_path) == [("events", "6", MISSING), (
        "events", "6", "log ends at 6 but the chain head says 6: events removed")]


def test_the_chain_head_with_one_copy_damaged(tmp_path):
    six_events(tmp_path)
    raw(tmp_path).execute("UPDATE records SET crc=crc+1 WHERE kind='chain' AND copy=0")
    # the damaged copy is reported; the chain is checked against the intact one
    assert report(tmp_path) == [("chain", "head#0", "checksum mismatch")]


def test_the_chain_head_with_both_copies_damaged(tmp_path):
    six_events(tmp_path)
    raw(tmp_path).execute("UPDATE records SET crc=crc+1 WHERE kind='chain'")
    assert report(tmp_path) == [("chain", "head#0", "checksum mismatch"),
                                ("chain", "head#1", "checksum mismatch"),
                                ("events", "head", "chain head corrupt")]


def test_a_damaged_last_event_then_the_whole_store_rolled_back(tmp_path):
    six_events(tmp_path)
    db = raw(tmp_path)
    # the head of this store after 6 events, kept by the attacker, is put back after a
    # seventh event and that event deleted: the log and the head agree and there are no
    # rows -- clean, the documented limit (the store rolled back as a whole)
    old_head = db.execute("SELECT * FROM records WHERE kind='chain'").fetchall()
    s = Store.open(tmp_path)
    s.append_event("STOP")
    s.close()
    db.execute("UPDATE events SET mac=? WHERE seq=7", (bytes(32),))
    assert report(tmp_path) == [("events", "7", MISSING), (
        "events", "7", "log ends at 7 but the chain head says 7: events removed")]
    for row in old_head:
        db.execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?)", row)
    db.execute("DELETE FROM events WHERE seq=7")
    assert report(tmp_path) == []


def test_rows_without_any_head(tmp_path):
    s = Store.open(tmp_path)
    s.put_billing(0, 1, 5, 0, 1)
    s.close()
    raw(tmp_path).execute("DELETE FROM records WHERE kind='chain'")
    assert report(tmp_path) == [("store", "digest",
                                 "rows without a chain head (the head and the whole log "
                                 "removed?)")]


def test_a_head_from_before_the_digest_is_not_compared_then_gains_one(tmp_path):
    """A store written by an earlier version: its head has no digest. It is not judged on
    one (it cannot be), and the first write adds it."""
    s = Store.open(tmp_path)
    s.append_event("POWER_UP")
    s.put_billing(0, 1, 5, 0, 1)
    s.close()
    db = raw(tmp_path)
    key = (tmp_path / "store.key").read_bytes()
    seq, mac = db.execute("SELECT seq, mac FROM events").fetchone()
    text = json.dumps({"mac": mac.hex(), "seq": seq}, sort_keys=True, separators=(",", ":"))
    for copy in (0, 1):
        data = json.dumps(["chain", f"head#{copy}", [text]], separators=(",", ":"),
                          sort_keys=True).encode()
        db.execute("UPDATE records SET value=?, crc=?, mac=? WHERE kind='chain' AND copy=?",
                   (text, zlib.crc32(data), hmac.new(key, data, hashlib.sha256).digest(), copy))
    kept = db.execute("SELECT * FROM billing").fetchone()
    db.execute("DELETE FROM billing")  # unseen without a digest
    assert report(tmp_path) == []
    s = Store.open(tmp_path)
    s.append_event("STOP")
    s.close()
    (value,) = db.execute("SELECT value FROM records WHERE kind='chain' AND copy=0").fetchone()
    assert json.loads(value)["rows"] == "0"  # no rows left: the XOR of nothing
    db.execute("INSERT INTO billing VALUES (?,?,?,?,?,?,?)", kept)  # valid MAC, now seen
    assert ("store", "digest") in [(t, k) for t, k, _ in report(tmp_path)]


@pytest.mark.parametrize("table,key,where", [
    ("records", "config/site#1", "kind='config' AND copy=1"),
    ("intervals", "0/1800", "end_time=1800"),
    ("billing", "0/1", "tier=1"),
])
def test_each_table_names_the_damaged_row(tmp_path, table, key, where):
    s = Store.open(tmp_path)
    s.set_config("site", "A")
    s.put_intervals([(0, 1800, 1)])
    s.put_billing(0, 1, 5, 0, 1)
    s.close()
    raw(tmp_path).execute(f"UPDATE {table} SET crc=crc+1 WHERE {where}")  # noqa: S608
    got = report(tmp_path)
    name = "config" if table == "records" else table
    short = key.split("/", 1)[1] if table == "records" else key
    assert got == [(name, short, "checksum mismatch")]


def test_quarantined_rows_stay_reported(tmp_path):
    s = Store.open(tmp_path)
    s.put_intervals([(0, 1800, 1), (0, 3600, 2)])
    s.close()
    raw(tmp_path).execute("UPDATE intervals SET value=5 WHERE end_time=3600")
    s = Store.open(tmp_path)
    assert s.intervals(0) == [(1800, 1)]
    s.close()
    assert report(tmp_path) == [("intervals", "0/3600", "quarantined earlier: checksum mismatch")]
    (raw_value,) = raw(tmp_path).execute("SELECT raw FROM quarantine").fetchone()
    assert json.loads(raw_value) == 5  # what was found is kept for the investigation
