"""Integrity-checked non-volatile storage on SQLite (WAL, synchronous FULL).

Every row carries a CRC-32 of a canonical encoding of its table, key and values: that
catches rot (a flipped bit on the medium, a torn page). Every row also carries an
HMAC-SHA256 under a per-meter secret
(``DIR/store.key``, mode 0600): an attacker with plain SQL access can edit a value *and*
recompute its CRC, but cannot forge the MAC without the key. The event log is in addition
a hash chain (each MAC covers the previous one, sequence numbers are contiguous, and a
chain head is kept in two MACed copies), so deleting, reordering or editing events — even
the last ones — is detected. On a real meter the key lives in the secure element; here it
is a file the application owns (the threat model is a database edited behind the
meter's back, not an attacker with the meter's own key).

A row's MAC binds its table and key, so a row moved to another key or time slot fails. A
row put back from an older copy of the file still carries its own valid MAC; what catches
it is the store digest: the chain head also holds the XOR of the MACs of every live row
(records, intervals, billing), updated in the transaction of every write. A row rolled back,
or deleted, changes that XOR, and the head cannot be rolled back with it without cutting off
the events logged since. What cannot be detected without a monotonic counter outside the
file (a secure element's) is the whole file replaced by an older copy of itself.

Corrupt data is never used: a row that fails its checks is moved to ``quarantine``, an
INTEGRITY_FAILURE event is logged, the fault is listed in :attr:`Store.faults` (the meter
shows it in its Metering status), and reads skip it or raise :class:`CorruptRecord`.
Configuration and calibration keep two copies; one bad copy is repaired from the other
(INTEGRITY_RECOVERED).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (kind TEXT, key TEXT, copy INTEGER, value TEXT,
    crc INTEGER, mac BLOB, PRIMARY KEY (kind, key, copy));
CREATE TABLE IF NOT EXISTS intervals (channel INTEGER, end_time INTEGER, value INTEGER,
    crc INTEGER, mac BLOB, PRIMARY KEY (channel, end_time));
CREATE TABLE IF NOT EXISTS billing (period_start INTEGER, tier INTEGER, delivered_wh INTEGER,
    received_wh INTEGER, cost INTEGER, crc INTEGER, mac BLOB, PRIMARY KEY (period_start, tier));
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, time REAL, kind TEXT,
    details TEXT, crc INTEGER, mac BLOB);
CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY, time REAL, tbl TEXT, key TEXT,
    reason TEXT, raw TEXT);
"""

REDUNDANT = ("config", "calibration", "chain", "prepay")  # kinds kept in two copies
EVENT_KINDS = ("POWER_UP", "INTEGRITY_FAILURE", "INTEGRITY_RECOVERED", "WATCHDOG_RESET",
               "METROLOGY_FAULT", "CONFIG_CHANGE", "FIRMWARE_UPDATE", "SUPPLY_CHANGE",
               "STOP", "SUPERVISOR_RESTART", "MQTT_COMMAND", "TARIFF_CHANGE", "PRICE_CHANGE",
               "JOIN", "LEAVE", "KEY_ESTABLISHMENT")


class CorruptRecord(Exception):
    def __init__(self, table: str, key: str, reason: str) -> None:
        super().__init__(f"{table}[{key}]: {reason}")
        self.table, self.key, self.reason = table, key, reason


@dataclasses.dataclass(frozen=True)
class Event:
    seq: int
    time: float
    kind: str
    details: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Problem:
    table: str
    key: str
    reason: str


@dataclasses.dataclass
class CheckReport:
    rows_checked: int = 0
    problems: list[Problem] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.problems


@dataclasses.dataclass
class _Head:
    """The chain head a write transaction carries: the last event's sequence number and
    MAC, and the digest of the live rows (the XOR of their MACs)."""
    seq: int
    mac: bytes
    rows: int


def _fold(mac: bytes | None) -> int:
    """A row's MAC as a number to XOR into the digest (a missing MAC folds as 0)."""
    return int.from_bytes(mac or b"", "big")


# the rows the digest covers: every MACed row but the chain head itself
DIGESTED = ("SELECT mac FROM records WHERE kind != 'chain'", "SELECT mac FROM intervals",
            "SELECT mac FROM billing")


def canonical(table: str, key: str, values: list[Any]) -> bytes:
    return json.dumps([table, key, values], separators=(",", ":"), sort_keys=True).encode()


def crc(data: bytes) -> int:
    return zlib.crc32(data)


def store_key(data_dir: Path) -> bytes:
    """The meter's secret for MACs (``DIR/store.key``, mode 0600), made on first use."""
    data_dir = Path(data_dir)
    key_path = data_dir / "store.key"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not key_path.exists():
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
    return key_path.read_bytes()


class Store:
    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.faults: set[tuple[str, str]] = set()
        # one writer at a time on this connection (the start-up check's thread logs events
        # while the loop may write); other processes are kept out by BEGIN IMMEDIATE
        self._write_lock = threading.RLock()

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, data_dir: Path, *, create: bool = True) -> Store:
        data_dir = Path(data_dir)
        db_path = data_dir / "meter.db"
        if not create and not db_path.exists():
            raise FileNotFoundError(f"no meter data in {data_dir}")
        return cls(db_path, store_key(data_dir))

    def close(self) -> None:
        self.db.close()

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    # -- quarantine and faults -----------------------------------------------------------------
    def _quarantine(self, table: str, key: str, reason: str, raw: Any, where: str,
                    params: tuple) -> None:
        with self._writing() as head:
            self._quarantine_row(table, key, reason, json.dumps(raw, default=str))
            self.db.execute(f"DELETE FROM {table} WHERE {where}", params)  # noqa: S608
            # the row's true MAC is unknown (this one is not it): the digest starts again
            # from the rows that are left, and the quarantine keeps the fault on record
            head.rows = self._fold_rows()
            if table != "events":
                self._insert_event(head, "INTEGRITY_FAILURE", time.time(),
                                   {"table": table, "key": key, "reason": reason})
        self.faults.add((table, key))

    # -- write transactions and the chain head --------------------------------------------------
    @contextlib.contextmanager
    def _writing(self) -> Iterator[_Head]:
        """One write transaction. The chain head is read inside it (another process, the
        isolated metrology, may write the same file), updated by the rows and events
        written, and saved with them: all of it is stored, or none."""
        with self._write_lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            head = self._head_for_write()
            yield head
            text = json.dumps({"mac": head.mac.hex(), "rows": format(head.rows, "x"),
                               "seq": head.seq}, sort_keys=True, separators=(",", ":"))
            for copy in range(2):
                data = canonical("chain", f"head#{copy}", [text])
                self.db.execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?)",
                                ("chain", "head", copy, text, crc(data), self._mac(data)))

    def _head_for_write(self) -> _Head:
        try:
            head = self._head()
        except CorruptRecord:
            head, reason = None, "no intact copy"
        else:
            if head is not None:
                if head.rows < 0:  # written before the digest: it starts now
                    head.rows = self._fold_rows()
                return head
            reason = "missing while the log has events"
        last = self.db.execute("SELECT seq, mac FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        if last is None and reason.startswith("missing"):  # a new store
            return _Head(0, bytes(32), self._fold_rows())
        # No intact head: rebuilt from the rows and the log as they are, and the loss
        # recorded (quarantine, fault, event), so the meter keeps working and says so.
        copies = self.db.execute("SELECT copy, value FROM records WHERE kind='chain' AND "
                                 "key='head' ORDER BY copy").fetchall() or [(None, "null")]
        for copy, text in copies:
            self._quarantine_row("records", "chain/head" + ("" if copy is None else f"#{copy}"),
                                 reason, text)
        self.db.execute("DELETE FROM records WHERE kind='chain' AND key='head'")
        self.faults.add(("chain", "head"))
        head = _Head(int(last[0]), bytes(last[1]), self._fold_rows()) if last else \
            _Head(0, bytes(32), self._fold_rows())
        self._insert_event(head, "INTEGRITY_FAILURE", time.time(),
                           {"table": "chain", "key": "head", "reason": reason})
        return head

    def _quarantine_row(self, table: str, key: str, reason: str, raw: str) -> None:
        self.db.execute("INSERT INTO quarantine (time, tbl, key, reason, raw) VALUES (?,?,?,?,?)",
                        (time.time(), table, key, reason, raw))

    def _insert_event(self, head: _Head, kind: str, when: float,
                      details: dict[str, Any]) -> int:
        head.seq += 1
        t = float(when)
        text = json.dumps(details, sort_keys=True, default=str)
        data = canonical("events", str(head.seq), [t, kind, text])
        head.mac = self._mac(head.mac + data)
        self.db.execute("INSERT INTO events VALUES (?,?,?,?,?,?)",
                        (head.seq, t, kind, text, crc(data), head.mac))
        return head.seq

    def _fold_rows(self) -> int:
        digest = 0
        for sql in DIGESTED:
            for (mac,) in self.db.execute(sql):
                digest ^= _fold(mac)
        return digest

    def _write_record(self, head: _Head, kind: str, key: str, value: Any) -> None:
        if kind == "chain":
            raise ValueError("the chain head is the store's own record")
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        for copy in range(2 if kind in REDUNDANT else 1):
            data = canonical(kind, f"{key}#{copy}", [text])
            mac = self._mac(data)
            old = self.db.execute("SELECT mac FROM records WHERE kind=? AND key=? AND copy=?",
                                  (kind, key, copy)).fetchone()
            head.rows ^= _fold(old[0] if old else None) ^ _fold(mac)
            self.db.execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?)",
                            (kind, key, copy, text, crc(data), mac))

    # -- generic records (config, calibration, tariff, ota) ----------------------------------
    def _put_record(self, kind: str, key: str, value: Any) -> None:
        with self._writing() as head:
            self._write_record(head, kind, key, value)
        self.faults.discard((kind, key))

    def _check_record(self, kind: str, key: str, copy: int, text: str, c: int,
                      mac: bytes | None) -> str | None:
        data = canonical(kind, f"{key}#{copy}", [text])
        if crc(data) != c:
            return "checksum mismatch"
        if mac is None or not hmac.compare_digest(self._mac(data), mac):
            return "MAC mismatch (altered)"
        return None

    def _get_record(self, kind: str, key: str) -> Any:
        rows = self.db.execute("SELECT copy, value, crc, mac FROM records WHERE kind=? AND key=? "
                               "ORDER BY copy", (kind, key)).fetchall()
        expected = 2 if kind in REDUNDANT else 1
        good: list[str] = []
        bad: list[int] = []
        for copy, text, c, mac in rows:
            why = self._check_record(kind, key, copy, text, c, mac)
            if why is None:
                good.append(text)
            else:
                bad.append(copy)
                self._quarantine("records", f"{kind}/{key}#{copy}", why, text,
                                 "kind=? AND key=? AND copy=?", (kind, key, copy))
        if not rows:
            raise KeyError(f"{kind}/{key}")
        if not good:
            self.faults.add((kind, key))
            raise CorruptRecord(kind, key, "no intact copy")
        if len(good) < expected:
            self._put_record(kind, key, json.loads(good[0]))
            self.append_event("INTEGRITY_RECOVERED", table=kind, key=key,
                              copies_repaired=expected - len(good))
        return json.loads(good[0])

    def put_record(self, kind: str, key: str, value: Any) -> None:
        """A checked record of any other kind (e.g. saved register state)."""
        self._put_record(kind, key, value)

    def commit(self, records: Sequence[tuple[str, str, Any]],
               events: Sequence[tuple[str, dict[str, Any]]] = ()) -> list[int]:
        """Records and events in one transaction: all of them are stored, or none (a power
        cut in between leaves the store as it was). Returns the events' sequence numbers."""
        with self._writing() as head:
            for kind, key, value in records:
                self._write_record(head, kind, key, value)
            seqs = [self._insert_event(head, kind, time.time(), details)
                    for kind, details in events]
        for kind, key, _value in records:
            self.faults.discard((kind, key))
        return seqs

    def get_record(self, kind: str, key: str) -> Any:
        """The record, None when absent; CorruptRecord when no intact copy exists."""
        try:
            return self._get_record(kind, key)
        except KeyError:
            return None

    def set_config(self, key: str, value: Any) -> None:
        self._put_record("config", key, value)
        self.append_event("CONFIG_CHANGE", key=key)

    def get_config(self, key: str, default: Any = None) -> Any:
        try:
            return self._get_record("config", key)
        except KeyError:
            return default

    def set_calibration(self, values: dict[str, Any]) -> None:
        self._put_record("calibration", "main", values)

    def get_calibration(self) -> dict[str, Any]:
        return self._get_record("calibration", "main")

    def set_tariff(self, doc: dict[str, Any]) -> None:
        self._put_record("tariff", "current", doc)

    def get_tariff(self) -> dict[str, Any] | None:
        try:
            return self._get_record("tariff", "current")
        except KeyError:
            return None

    def set_ota_state(self, state: dict[str, Any]) -> None:
        self._put_record("ota", "download", state)

    def ota_state(self) -> dict[str, Any] | None:
        try:
            return self._get_record("ota", "download")
        except KeyError:
            return None

    # -- load profile ---------------------------------------------------------------------------
    def put_intervals(self, rows: list[tuple[int, int, int]]) -> None:
        """(channel, end_time, value) rows, in one transaction."""
        with self._writing() as head:
            for ch, end, v in rows:
                data = canonical("intervals", f"{ch}/{end}", [v])
                mac = self._mac(data)
                old = self.db.execute("SELECT mac FROM intervals WHERE channel=? AND end_time=?",
                                      (ch, end)).fetchone()
                head.rows ^= _fold(old[0] if old else None) ^ _fold(mac)
                self.db.execute("INSERT OR REPLACE INTO intervals VALUES (?,?,?,?,?)",
                                (ch, end, v, crc(data), mac))

    def clear_intervals(self) -> int:
        """Delete the whole load profile (a change of tenancy that clears it); returns the
        rows deleted."""
        with self._writing() as head:
            for (mac,) in self.db.execute("SELECT mac FROM intervals"):
                head.rows ^= _fold(mac)
            cur = self.db.execute("DELETE FROM intervals")
        return cur.rowcount

    def put_interval(self, channel: int, end_time: int, value: int) -> None:
        self.put_intervals([(channel, end_time, value)])

    def intervals(self, channel: int, start: int = 0, end: int = 2**62) -> list[tuple[int, int]]:
        """Intact (end_time, value) rows of a channel; corrupt ones are quarantined."""
        out = []
        for ch, e, v, c, mac in self.db.execute(
                "SELECT channel, end_time, value, crc, mac FROM intervals WHERE channel=? AND "
                "end_time BETWEEN ? AND ? ORDER BY end_time", (channel, start, end)).fetchall():
            why = self._check_interval(ch, e, v, c, mac)
            if why:
                self._quarantine("intervals", f"{ch}/{e}", why, v,
                                 "channel=? AND end_time=?", (ch, e))
                continue
            out.append((e, v))
        return out

    def _check_interval(self, ch, e, v, c, mac) -> str | None:
        data = canonical("intervals", f"{ch}/{e}", [v])
        if crc(data) != c:
            return "checksum mismatch"
        if mac is None or not hmac.compare_digest(self._mac(data), mac):
            return "MAC mismatch (altered)"
        return None

    # -- billing ------------------------------------------------------------------------------
    def put_billing(self, period_start: int, tier: int, delivered_wh: int, received_wh: int,
                    cost: int) -> None:
        data = canonical("billing", f"{period_start}/{tier}", [delivered_wh, received_wh, cost])
        mac = self._mac(data)
        with self._writing() as head:
            old = self.db.execute("SELECT mac FROM billing WHERE period_start=? AND tier=?",
                                  (period_start, tier)).fetchone()
            head.rows ^= _fold(old[0] if old else None) ^ _fold(mac)
            self.db.execute("INSERT OR REPLACE INTO billing VALUES (?,?,?,?,?,?,?)",
                            (period_start, tier, delivered_wh, received_wh, cost, crc(data),
                             mac))

    def billing(self, period_start: int | None = None) -> list[tuple[int, int, int, int, int]]:
        sql = "SELECT period_start, tier, delivered_wh, received_wh, cost, crc, mac FROM billing"
        params: tuple = ()
        if period_start is not None:
            sql += " WHERE period_start=?"
            params = (period_start,)
        out = []
        for p, tier, d, r, cost, c, mac in self.db.execute(sql + " ORDER BY period_start, tier",
                                                          params).fetchall():
            why = self._check_billing(p, tier, d, r, cost, c, mac)
            if why:
                self._quarantine("billing", f"{p}/{tier}", why, [d, r, cost],
                                 "period_start=? AND tier=?", (p, tier))
                continue
            out.append((p, tier, d, r, cost))
        return out

    def _check_billing(self, p, tier, d, r, cost, c, mac) -> str | None:
        data = canonical("billing", f"{p}/{tier}", [d, r, cost])
        if crc(data) != c:
            return "checksum mismatch"
        if mac is None or not hmac.compare_digest(self._mac(data), mac):
            return "MAC mismatch (altered)"
        return None

    # -- event log ---------------------------------------------------------------------------------
    def _head(self, db: sqlite3.Connection | None = None) -> _Head | None:
        """The chain head as stored (read only); None when there is none yet.
        CorruptRecord when no copy is intact."""
        rows = (db or self.db).execute("SELECT copy, value, crc, mac FROM records WHERE "
                                       "kind='chain' AND key='head' ORDER BY copy").fetchall()
        for copy, text, c, mac in rows:
            if self._check_record("chain", "head", copy, text, c, mac) is None:
                doc = json.loads(text)
                digest = int(doc["rows"], 16) if "rows" in doc else -1  # -1: from before
                return _Head(int(doc["seq"]), bytes.fromhex(doc["mac"]), digest)  # digests
        if rows:
            raise CorruptRecord("chain", "head", "no intact copy")
        return None

    def append_event(self, kind: str, **details: Any) -> int:
        return self.append_event_at(kind, time.time(), details)

    def append_event_at(self, kind: str, when: float, details: dict[str, Any]) -> int:
        """An event at ``when`` (the meter's clock, which a simulation may run faster)."""
        with self._writing() as head:
            return self._insert_event(head, kind, when, details)

    def events(self, since: int = 0) -> list[Event]:
        rows = self.db.execute("SELECT seq, time, kind, details FROM events WHERE seq > ? "
                               "ORDER BY seq", (since,)).fetchall()
        return [Event(s, t, k, json.loads(d)) for s, t, k, d in rows]

    def last_event(self) -> Event | None:
        row = self.db.execute("SELECT seq, time, kind, details FROM events ORDER BY seq DESC "
                              "LIMIT 1").fetchone()
        return None if row is None else Event(row[0], row[1], row[2], json.loads(row[3]))

    def _check_events(self, report: CheckReport, db: sqlite3.Connection) -> _Head | None:
        """The hash chain of the event log against the chain head; returns the head."""
        prev = bytes(32)
        expected = 1
        rows = db.execute("SELECT seq, time, kind, details, crc, mac FROM events "
                               "ORDER BY seq").fetchall()
        for seq, t, kind, text, c, mac in rows:
            report.rows_checked += 1
            data = canonical("events", str(seq), [t, kind, text])
            if seq != expected:
                report.problems.append(Problem("events", str(expected),
                                               f"missing events {expected}..{seq - 1}"))
            if crc(data) != c:
                report.problems.append(Problem("events", str(seq), "checksum mismatch"))
            elif mac is None or not hmac.compare_digest(self._mac(prev + data), mac):
                report.problems.append(Problem("events", str(seq),
                                               "chain/MAC mismatch (altered, removed or reordered)"))
            prev = mac or bytes(32)
            expected = seq + 1
        try:
            head = self._head(db)
        except CorruptRecord:
            report.problems.append(Problem("events", "head", "chain head corrupt"))
            return None
        head_seq = 0 if head is None else head.seq
        if head_seq != expected - 1 or (rows and (head is None or head.mac != prev)):
            report.problems.append(Problem("events", str(head_seq),
                                           f"log ends at {expected - 1} but the chain head says "
                                           f"{head_seq}: events removed"))
        return head

    # -- full check ------------------------------------------------------------------------------
    def check(self) -> CheckReport:
        """Verify every stored record (start-up, `sep check`). Reports; changes nothing.

        One read transaction on a connection of its own: a snapshot, so a write meanwhile
        (another process, or this store's own connection from another thread) cannot make
        the rows and the digest disagree, nor find a transaction open under it."""
        start = time.perf_counter()
        report = CheckReport()
        digest = 0
        db = sqlite3.connect(str(self.path), isolation_level=None)
        try:
            db.execute("BEGIN")
            for kind, key, copy, text, c, mac in db.execute(
                    "SELECT kind, key, copy, value, crc, mac FROM records").fetchall():
                report.rows_checked += 1
                if kind != "chain":
                    digest ^= _fold(mac)
                why = self._check_record(kind, key, copy, text, c, mac)
                if why:
                    report.problems.append(Problem(kind, f"{key}#{copy}", why))
            for row in db.execute("SELECT channel, end_time, value, crc, mac FROM intervals"):
                report.rows_checked += 1
                digest ^= _fold(row[4])
                why = self._check_interval(*row)
                if why:
                    report.problems.append(Problem("intervals", f"{row[0]}/{row[1]}", why))
            for row in db.execute("SELECT period_start, tier, delivered_wh, received_wh, "
                                  "cost, crc, mac FROM billing"):
                report.rows_checked += 1
                digest ^= _fold(row[6])
                why = self._check_billing(*row)
                if why:
                    report.problems.append(Problem("billing", f"{row[0]}/{row[1]}", why))
            head = self._check_events(report, db)
            if head is None and digest:
                report.problems.append(Problem("store", "digest", "rows without a chain head "
                                               "(the head and the whole log removed?)"))
            elif head is not None and head.rows >= 0 and head.rows != digest:
                report.problems.append(Problem(
                    "store", "digest", "the live rows differ from the store digest: a row was "
                    "put back from an older copy, or removed, behind the meter's back"))
            for tbl, key, reason in db.execute("SELECT tbl, key, reason FROM quarantine"):
                report.problems.append(Problem(tbl, key, f"quarantined earlier: {reason}"))
        finally:
            db.close()
        report.seconds = time.perf_counter() - start
        return report
