"""Stored data that rots or is edited is detected, reported and never used."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from sep.store import CorruptRecord, Store
from sep.store.db import canonical

BIN = Path(sys.executable).parent


def fill(d: Path) -> Store:
    s = Store.open(d)
    s.append_event("POWER_UP", note="distinctive-event-text")
    s.set_config("site", "DISTINCTIVE-CONFIG-VALUE")
    s.set_config("other", "intact-config")
    s.set_calibration({"gain_ppm": "DISTINCTIVE-CALIBRATION"})
    s.set_tariff({"name": "DISTINCTIVE-TARIFF"})
    s.set_ota_state({"file": "DISTINCTIVE-OTA-STATE"})
    s.put_intervals([(0, 1800 * i, 100 + i) for i in range(1, 50)] + [(0, 1800 * 60, 0x5EA5EA)])
    s.put_billing(1_000_000, 1, 0x5EB1B1, 0, 1234)
    s.put_billing(1_000_000, 2, 777, 0, 99)
    s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return s


def flip_in_file(path: Path, needle: bytes, occurrences: int = 1) -> None:
    data = bytearray(path.read_bytes())
    start = 0
    for _ in range(occurrences):
        i = data.index(needle, start)
        data[i + len(needle) - 1] ^= 0x01  # a bit in the stored value
        start = i + len(needle)
    path.write_bytes(bytes(data))


def sep_check(d: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "sep"), "check", "--data", str(d)], capture_output=True,
                          text=True, timeout=60)


CASES = [
    # needle in the file, occurrences (both copies for redundant kinds), how to read, table name
    (b"DISTINCTIVE-TARIFF", 1, lambda s: s.get_tariff(), "tariff"),
    (b"DISTINCTIVE-OTA-STATE", 1, lambda s: s.ota_state(), "ota"),
    (b"DISTINCTIVE-CONFIG-VALUE", 2, lambda s: s.get_config("site"), "config"),
    (b"DISTINCTIVE-CALIBRATION", 2, lambda s: s.get_calibration(), "calibration"),
]


@pytest.mark.parametrize("needle,n,read,name", CASES, ids=[c[3] for c in CASES])
def test_bit_flip_in_the_file_is_found_and_the_record_refused(tmp_path, needle, n, read, name):
    fill(tmp_path).close()
    flip_in_file(tmp_path / "meter.db", needle, n)
    proc = sep_check(tmp_path)
    assert proc.returncode == 1 and name in proc.stdout
    s = Store.open(tmp_path)
    with pytest.raises(CorruptRecord):
        read(s)
    assert (name, {"tariff": "current", "ota": "download", "config": "site",
                   "calibration": "main"}[name]) in s.faults
    assert any(e.kind == "INTEGRITY_FAILURE" for e in s.events())
    assert s.get_config("other") == "intact-config"  # what is intact is still served


def test_bit_flip_in_intervals_and_billing(tmp_path):
    fill(tmp_path).close()
    flip_in_file(tmp_path / "meter.db", bytes.fromhex("5ea5ea"))
    flip_in_file(tmp_path / "meter.db", bytes.fromhex("5eb1b1"))
    proc = sep_check(tmp_path)
    assert proc.returncode == 1
    assert "intervals 0/108000" in proc.stdout and "billing 1000000/1" in proc.stdout
    s = Store.open(tmp_path)
    rows = s.intervals(0)
    assert len(rows) == 49 and all(v != 0x5EA5EA and v != 0x5EA5EB for _, v in rows)
    assert [r[1] for r in s.billing()] == [2]


def test_sql_edit_with_recomputed_crc_is_caught_by_the_mac(tmp_path):
    fill(tmp_path).close()
    db = sqlite3.connect(tmp_path / "meter.db")
    # The attacker knows the row format and recomputes the CRC, but has no key.
    data = canonical("billing", "1000000/2", [1, 0, 99])
    db.execute("UPDATE billing SET delivered_wh=1, crc=? WHERE period_start=1000000 AND tier=2",
               (zlib.crc32(data),))
    data = canonical("intervals", "0/1800", [1])
    db.execute("UPDATE intervals SET value=1, crc=? WHERE channel=0 AND end_time=1800",
               (zlib.crc32(data),))
    text = json.dumps({"name": "cheap"}, sort_keys=True, separators=(",", ":"))
    data = canonical("tariff", "current#0", [text])
    db.execute("UPDATE records SET value=?, crc=? WHERE kind='tariff'", (text, zlib.crc32(data)))
    db.commit()
    db.close()
    proc = sep_check(tmp_path)
    assert proc.returncode == 1
    for what in ("billing 1000000/2", "intervals 0/1800", "tariff current#0"):
        assert what in proc.stdout and "MAC mismatch" in proc.stdout
    s = Store.open(tmp_path)
    assert all(v != 1 for _, v in s.intervals(0))


def test_one_bad_config_copy_is_recovered_both_is_a_fault(tmp_path):
    fill(tmp_path).close()
    flip_in_file(tmp_path / "meter.db", b"DISTINCTIVE-CONFIG-VALUE", 1)
    s = Store.open(tmp_path)
    assert s.get_config("site") == "DISTINCTIVE-CONFIG-VALUE"
    assert any(e.kind == "INTEGRITY_RECOVERED" for e in s.events())
    s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()
    # Both copies are intact again after the repair (the quarantine keeps the record)
    s = Store.open(tmp_path)
    rows = s.db.execute("SELECT COUNT(*) FROM records WHERE kind='config' AND key='site'").fetchone()
    assert rows[0] == 2


@pytest.mark.parametrize("attack", ["delete_middle", "delete_last", "reorder", "edit"])
def test_event_log_tampering_is_detected(tmp_path, attack):
    s = Store.open(tmp_path)
    for i in range(6):
        s.append_event("CONFIG_CHANGE", n=i)
    assert s.check().clean
    s.close()
    db = sqlite3.connect(tmp_path / "meter.db")
    if attack == "delete_middle":
        db.execute("DELETE FROM events WHERE seq=3")
    elif attack == "delete_last":
        db.execute("DELETE FROM events WHERE seq=6")
    elif attack == "reorder":
        db.execute("UPDATE events SET seq=100 WHERE seq=2")
        db.execute("UPDATE events SET seq=2 WHERE seq=3")
        db.execute("UPDATE events SET seq=3 WHERE seq=100")
    else:
        db.execute("UPDATE events SET details='{\"n\": 99}' WHERE seq=4")
    db.commit()
    db.close()
    assert not Store.open(tmp_path).check().clean
    assert sep_check(tmp_path).returncode == 1


def test_cli_clean_and_events(tmp_path):
    fill(tmp_path).close()
    assert sep_check(tmp_path).returncode == 0
    out = subprocess.run([str(BIN / "sep"), "events", "--data", str(tmp_path), "--json"],
                         capture_output=True, text=True, timeout=60)
    events = json.loads(out.stdout)
    assert events[0]["kind"] == "POWER_UP" and [e["seq"] for e in events] == list(
        range(1, len(events) + 1))
