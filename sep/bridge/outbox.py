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

    def next_seq(self) -> int:
        row = self.db.execute("SELECT MAX(seq) FROM outbox").fetchone()
        meta = self.db.execute("PRAGMA user_version").fetchone()[0]
        return max(row[0] or 0, meta) + 1

    def put(self, topic: str, make_payload: Any) -> int:
        """Append; ``make_payload(seq)`` builds the JSON document for the sequence number."""
        seq = self.next_seq()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT INTO outbox VALUES (?, ?, ?)",
                            (seq, topic, json.dumps(make_payload(seq))))
            self.db.execute(f"PRAGMA user_version={seq}")
            n = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            if n > self.limit:
                self.db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
                                "ORDER BY seq LIMIT ?)", (n - self.limit,))
                self.dropped += n - self.limit
        return seq

    def peek(self, n: int = 50) -> list[tuple[int, str, str]]:
        return self.db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq LIMIT ?",
                               (n,)).fetchall()

    def ack(self, seq: int) -> None:
        self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def close(self) -> None:
        self.db.close()
