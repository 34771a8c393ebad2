"""The MQTT outbox's file, read with plain sqlite3 (not through Outbox): what is on disk
after a burst, acknowledgements, a full queue and a restart."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sep.bridge.outbox import Outbox


def on_disk(path: Path) -> tuple[list[tuple[int, str, dict]], dict[str, int], int]:
    db = sqlite3.connect(path)
    try:
        rows = [(seq, topic, json.loads(payload)) for seq, topic, payload in
                db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq")]
        counters = dict(db.execute("SELECT topic, n FROM counters"))
        version = db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()
    return rows, counters, version


def test_what_is_put_and_not_acknowledged_is_on_disk_in_order(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    for i in range(5):
        box.put("m/reading", lambda n, i=i: {"seq": n, "i": i})
    box.put("m/event", lambda n: {"seq": n, "kind": "X"})
    for seq, _topic, _payload in box.peek(2):
        box.ack(seq)
    assert box.flush()
    rows, counters, version = on_disk(path)
    assert [(seq, topic, doc) for seq, topic, doc in rows] == [
        (3, "m/reading", {"seq": 3, "i": 2}), (4, "m/reading", {"seq": 4, "i": 3}),
        (5, "m/reading", {"seq": 5, "i": 4}), (6, "m/event", {"seq": 1, "kind": "X"})]
    assert counters == {"m/reading": 5, "m/event": 1} and version == 6
    box.close()


def test_a_restart_resumes_the_queue_and_the_numbering(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    for _ in range(3):
        box.put("m/reading", lambda n: {"seq": n})
    box.ack(box.peek(1)[0][0])
    box.close()
    again = Outbox(path)
    assert len(again) == 2 and [row[0] for row in again.peek()] == [2, 3]
    assert again.put("m/reading", lambda n: {"seq": n}) == 4
    for seq, *_ in again.peek():
        again.ack(seq)
    again.close()
    rows, counters, version = on_disk(path)
    assert rows == [] and counters == {"m/reading": 4} and version == 4
    third = Outbox(path)  # everything acknowledged: the numbering still goes on
    assert third.put("m/reading", lambda n: {"seq": n}) == 5 and third.peek()[0][0] == 5
    third.close()


def test_a_full_outbox_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, limit=3)
    for _ in range(5):
        box.put("m/reading", lambda n: {"seq": n})
    assert box.dropped == 2 and [row[0] for row in box.peek()] == [3, 4, 5]
    box.close()
    rows, _counters, _version = on_disk(path)
    assert [seq for seq, *_ in rows] == [3, 4, 5]


def test_a_file_that_cannot_be_written_keeps_the_queue_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    box.put("m/reading", lambda n: {"seq": n})
    assert box.flush()
    holder = sqlite3.connect(path, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    box.db.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
    box.put("m/reading", lambda n: {"seq": n})
    assert box.flush()
    assert box.write_errors == 1 and len(box) == 2  # logged, counted, not lost in memory
    holder.rollback()
    holder.close()
    box.close()
