"""Rows put back from an older copy of the store, or removed, are detected.

The attacker here has the database file and plain SQL, but not the meter's key: they can
keep an old row (its own MAC is valid) and copy it back over a newer one later, or delete
rows. Each attack is done with Python's sqlite3 directly, then ``Store.check`` (what the
meter runs at start-up) must report it. Legitimate operations (updates, quarantine of a
rotten row, clearing the load profile, a lost chain head, two writers at once) must leave
the store clean.

The independent oracle: the MACs and the store digest are recomputed here from the key
file with the standard library's ``hmac`` and this file's own encoding of the rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
import zlib
from pathlib import Path

from sep.store import Store


def raw(d: Path) -> sqlite3.Connection:
    return sqlite3.connect(d / "meter.db", isolation_level=None)


def reasons(store: Store) -> list[str]:
    return [f"{p.table} {p.key}: {p.reason}" for p in store.check().problems]


def fill(d: Path) -> Store:
    s = Store.open(d)
    s.append_event("POWER_UP")
    s.put_record("prepay", "account", {"credit": 1000, "total_added": 0})
    s.put_record("meter", "registers", {"delivered_wh": 5000})
    s.put_billing(1_000_000, 1, 10_000, 0, 245)
    s.put_intervals([(0, 1800 * i, 100 + i) for i in range(1, 20)])
    return s


def test_the_digest_is_the_xor_of_every_live_row_mac_recomputed_here(tmp_path):
    s = fill(tmp_path)
    s.set_config("site", "X")
    s.put_billing(1_000_000, 1, 10_500, 0, 257)  # an update in place
    s.close()
    key = (tmp_path / "store.key").read_bytes()

    def mac(table: str, key_text: str, values: list) -> bytes:
        data = json.dumps([table, key_text, values], separators=(",", ":"),
                          sort_keys=True).encode()
        return hmac.new(key, data, hashlib.sha256).digest()

    db = raw(tmp_path)
    digest = 0
    rows = 0
    for kind, k, copy, value, _c, m in db.execute("SELECT * FROM records WHERE kind != 'chain'"):
        assert m == mac(kind, f"{k}#{copy}", [value])
        digest ^= int.from_bytes(m, "big")
        rows += 1
    for ch, end, v, c, m in db.execute("SELECT * FROM intervals"):
        assert m == mac("intervals", f"{ch}/{end}", [v])
        assert c == zlib.crc32(json.dumps(["intervals", f"{ch}/{end}", [v]],
                                          separators=(",", ":")).encode())
        digest ^= int.from_bytes(m, "big")
        rows += 1
    for p, tier, dwh, rwh, cost, _c, m in db.execute("SELECT * FROM billing"):
        assert m == mac("billing", f"{p}/{tier}", [dwh, rwh, cost])
        digest ^= int.from_bytes(m, "big")
        rows += 1
    # the head: two copies, each MACed under its own key, naming the last event and the digest
    prev = bytes(32)
    last = 0
    for seq, t, kind, details, _c, m in db.execute("SELECT * FROM events ORDER BY seq"):
        prev = hmac.new(key, prev + json.dumps(["events", str(seq), [t, kind, details]],
                                               separators=(",", ":"), sort_keys=True).encode(),
                        hashlib.sha256).digest()
        assert m == prev
        last = seq
    heads = db.execute("SELECT copy, value, mac FROM records WHERE kind='chain' AND key='head' "
                       "ORDER BY copy").fetchall()
    assert [h[0] for h in heads] == [0, 1]
    for copy, value, m in heads:
        assert m == mac("chain", f"head#{copy}", [value])
        doc = json.loads(value)
        assert doc == {"seq": last, "mac": prev.hex(), "rows": format(digest, "x")}
    assert rows == 1 + 2 + 2 + 19 + 1  # registers, account x2, config x2, intervals, billing


def test_a_record_rolled_back_in_place_is_detected(tmp_path):
    s = fill(tmp_path)
    db = raw(tmp_path)
    old = db.execute("SELECT * FROM records WHERE kind='prepay' AND key='account'").fetchall()
    s.put_record("prepay", "account", {"credit": 0, "total_added": 0})  # credit spent
    s.append_event("SUPPLY_CHANGE", state="off")
    assert s.check().clean
    # the attacker puts back both copies of the old account, each with its valid MAC
    for row in old:
        db.execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?)", row)
    assert s.get_record("prepay", "account")["credit"] == 1000  # the rows alone look fine
    problems = reasons(s)
    assert any(p.startswith("store digest: the live rows differ") for p in problems), problems


def test_a_billing_row_rolled_back_is_detected(tmp_path):
    s = fill(tmp_path)
    db = raw(tmp_path)
    old = db.execute("SELECT * FROM billing").fetchone()
    s.put_billing(1_000_000, 1, 20_000, 0, 490)
    assert s.check().clean
    db.execute("INSERT OR REPLACE INTO billing VALUES (?,?,?,?,?,?,?)", old)
    assert s.billing() == [(1_000_000, 1, 10_000, 0, 245)]  # its MAC is valid
    assert any(p.startswith("store digest") for p in reasons(s))


def test_an_interval_rolled_back_or_removed_is_detected(tmp_path):
    s = fill(tmp_path)
    db = raw(tmp_path)
    old = db.execute("SELECT * FROM intervals WHERE end_time=1800").fetchone()
    s.put_interval(0, 1800, 999)  # a corrected reading
    assert s.check().clean
    db.execute("INSERT OR REPLACE INTO intervals VALUES (?,?,?,?,?)", old)
    assert any(p.startswith("store digest") for p in reasons(s))
    s.put_interval(0, 1800, 999)  # a later write of the row does not wipe the evidence
    assert any(p.startswith("store digest") for p in reasons(s))


def test_an_interval_removed_is_detected(tmp_path):
    s = fill(tmp_path)
    raw(tmp_path).execute("DELETE FROM intervals WHERE end_time=3600")
    assert any(p.startswith("store digest") for p in reasons(s))


def test_a_record_removed_is_detected(tmp_path):
    s = fill(tmp_path)
    raw(tmp_path).execute("DELETE FROM records WHERE kind='meter'")
    assert s.get_record("meter", "registers") is None
    assert any(p.startswith("store digest") for p in reasons(s))


def test_a_row_moved_to_another_slot_fails_its_mac(tmp_path):
    s = fill(tmp_path)
    db = raw(tmp_path)
    db.execute("DELETE FROM intervals WHERE end_time=5400")
    # moved, with the CRC recomputed for its new slot (the CRC is no secret)
    (v,) = db.execute("SELECT value FROM intervals WHERE end_time=3600").fetchone()
    c = zlib.crc32(json.dumps(["intervals", "0/5400", [v]], separators=(",", ":")).encode())
    db.execute("UPDATE intervals SET end_time=5400, crc=? WHERE end_time=3600", (c,))
    problems = reasons(s)
    assert "intervals 0/5400: MAC mismatch (altered)" in problems


def test_the_head_rolled_back_with_the_row_cuts_off_the_later_events(tmp_path):
    s = fill(tmp_path)
    db = raw(tmp_path)
    old = db.execute("SELECT * FROM records WHERE kind IN ('prepay', 'chain')").fetchall()
    s.put_record("prepay", "account", {"credit": 0, "total_added": 0})
    s.append_event("SUPPLY_CHANGE", state="off")
    for row in old:
        db.execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?)", row)
    problems = reasons(s)
    assert any("but the chain head says" in p for p in problems), problems
    # ... and removing those events as well breaks nothing the attacker can repair: the
    # head now matches the log and the rows, which is the whole store rolled back, the one
    # thing only a counter outside the file could catch (README, "Stored data")


def test_legitimate_life_keeps_the_store_clean(tmp_path):
    s = fill(tmp_path)
    for i in range(30):
        s.put_record("prepay", "account", {"credit": 1000 - i, "total_added": i})
        s.commit([("meter", "registers", {"delivered_wh": 5000 + i})],
                 [("CONFIG_CHANGE", {"n": i})])
        s.put_billing(1_000_000, 1 + i % 3, 10_000 + i, 0, 245)
    s.set_calibration({"gain": 1})
    assert s.check().clean
    assert s.clear_intervals() == 19
    assert s.check().clean
    s.close()
    s = Store.open(tmp_path)
    assert s.check().clean


def test_a_quarantined_row_leaves_only_its_own_fault(tmp_path):
    s = fill(tmp_path)
    db = raw(tmp_path)
    db.execute("UPDATE intervals SET value=7 WHERE end_time=1800")  # rot, or an edit
    assert reasons(s) == ["intervals 0/1800: checksum mismatch"]
    assert len(s.intervals(0)) == 18  # read: the row is quarantined, the digest restarts
    assert reasons(s) == ["intervals 0/1800: quarantined earlier: checksum mismatch"]
    kinds = [e.kind for e in s.events()]
    assert kinds.count("INTEGRITY_FAILURE") == 1


def test_a_lost_chain_head_is_rebuilt_and_recorded(tmp_path):
    s = fill(tmp_path)
    db = raw(tmp_path)
    db.execute("UPDATE records SET value='{}' WHERE kind='chain'")  # both copies destroyed
    assert "events head: chain head corrupt" in reasons(s)
    s.put_record("meter", "registers", {"delivered_wh": 6000})  # the meter keeps working
    s.append_event("STOP")
    assert ("chain", "head") in s.faults
    events = s.events()
    assert [e.kind for e in events][-2:] == ["INTEGRITY_FAILURE", "STOP"]
    assert events[-2].details == {"table": "chain", "key": "head", "reason": "no intact copy"}
    problems = reasons(s)
    assert problems == ["records chain/head#0: quarantined earlier: no intact copy",
                        "records chain/head#1: quarantined earlier: no intact copy"]


def test_a_head_deleted_with_events_left_is_rebuilt_and_recorded(tmp_path):
    s = fill(tmp_path)
    raw(tmp_path).execute("DELETE FROM records WHERE kind='chain'")
    assert any("but the chain head says 0" in p for p in reasons(s))
    seq = s.append_event("STOP")
    assert seq == 3  # after POWER_UP and the recorded loss, never a second event 1
    assert reasons(s) == ["records chain/head: quarantined earlier: missing while the log "
                          "has events"]


def test_two_writers_on_one_file_keep_one_chain(tmp_path):
    """The meter and its isolated metrology process both write the file: the head is read
    inside each write transaction, so neither forks the chain nor loses a digest update."""
    Store.open(tmp_path).close()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        s = Store.open(tmp_path)
        try:
            for i in range(60):
                s.append_event("CONFIG_CHANGE", writer=n, i=i)
                s.put_record("meter", f"w{n}", {"i": i})
                s.put_intervals([(n, 1800 * (i + 1), i)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    s = Store.open(tmp_path)
    assert s.check().clean
    assert [e.seq for e in s.events()] == list(range(1, 121))


def test_a_check_while_this_store_writes_from_another_thread(tmp_path):
    """The meter runs its start-up check in a worker thread while the loop may write
    through the same Store: the check reads a snapshot of its own and never meets the
    writer's transaction."""
    s = fill(tmp_path)
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        i = 0
        try:
            while not stop.is_set():
                i += 1
                s.commit([("meter", "registers", {"delivered_wh": 5000 + i})],
                         [("CONFIG_CHANGE", {"i": i})])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(40):
            report = s.check()
            assert report.clean, report.problems
    finally:
        stop.set()
        writer.join()
    assert not errors, errors
    assert s.check().clean


def test_two_threads_writing_through_one_store(tmp_path):
    s = fill(tmp_path)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(80):
                s.append_event("CONFIG_CHANGE", writer=n, i=i)
                s.put_record("meter", f"w{n}", {"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    assert s.check().clean
    assert len(s.events()) == 1 + 160
