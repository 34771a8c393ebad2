"""Readings waiting for the broker: a bounded FIFO that survives restarts (SQLite).

A reading leaves the outbox only after the broker acknowledged it (QoS 1 PUBACK), so a
broker outage, a lost connection or a restart of the meter delivers every reading, in
order, at least once. When the outbox is full the oldest readings are dropped and counted.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


class Outbox:
    def __init__(self, path: Path | None, limit: int = 10_000) -> None:
        self.limit = limit
        self.dropped = 0
        self.db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, "
                        "topic TEXT NOT NULL, payload TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS counters (topic TEXT PRIMARY KEY, "
                        "n INTEGER NOT NULL)")

        # what put() and len() need, kept in memory: the file is read once, at start
        self._seq = self.next_seq() - 1
        self._count = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._counters: dict[str, int] = dict(
            self.db.execute("SELECT topic, n FROM counters").fetchall())

    def next_seq(self) -> int:
        row = self.db.execute("SELECT MAX(seq) FROM outbox").fetchone()
        meta = self.db.execute("PRAGMA user_version").fetchone()[0]
        return max(row[0] or 0, meta) + 1

    def put(self, topic: str, make_payload: Any) -> int:
        """Append; ``make_payload(n)`` builds the document, n counting 1, 2, ... per topic
        (a subscriber of one topic sees a gap-free sequence). Returns that n."""
        seq = self._seq + 1
        n = self._counters.get(topic, 0) + 1
        payload = json.dumps(make_payload(n))
        drop = max(0, self._count + 1 - self.limit)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", (topic, n))
            self.db.execute("INSERT INTO outbox VALUES (?, ?, ?)", (seq, topic, payload))
            self.db.execute(f"PRAGMA user_version={seq}")
            if drop:
                self.db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
                                "ORDER BY seq LIMIT ?)", (drop,))
        # committed: only now does the memory follow the file
        self._seq, self._counters[topic] = seq, n
        self._count += 1 - drop
        self.dropped += drop
        return n

    def peek(self, n: int = 50) -> list[tuple[int, str, str]]:
        return self.db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq LIMIT ?",
                               (n,)).fetchall()

    def ack(self, seq: int) -> None:
        self._count -= self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self.db.close()
