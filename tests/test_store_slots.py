"""Stored rows bound to their place: a row moved to another time slot, or copied whole
(value, CRC and MAC together, as someone with SQL access but no key can do) over a newer
row, another channel, tier, billing period or record copy, is refused.

This is the attack a per-row MAC over the value alone lets through: every copied row is
genuine, only its place is wrong. Independent judges: ``sep check`` run as a process (its
exit status and report), and what the Store API serves afterwards; the tampering is plain
SQL on the file with Python's sqlite3.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sep.store import CorruptRecord, Store

BIN = Path(sys.executable).parent
SLOT = 1800


def fill(d: Path) -> None:
    s = Store.open(d)
    # half-hour intervals on two channels; older slots hold more (so a copy is visible)
    s.put_intervals([(ch, SLOT * i, 1000 * (ch + 1) - i) for ch in (0, 1) for i in range(1, 11)])
    s.put_billing(86400, 1, 5000, 0, 10)
    s.put_billing(86400, 2, 7000, 0, 20)
    s.put_billing(2 * 86400, 1, 5100, 0, 11)
    s.set_config("site", "A")
    s.set_config("other", "B")
    s.close()


def sql(d: Path, *statements: tuple[str, tuple]) -> None:
    db = sqlite3.connect(d / "meter.db")
    for text, params in statements:
        assert db.execute(text, params).rowcount == 1, text
    db.commit()
    db.close()


def row(d: Path, text: str, params: tuple) -> tuple:
    db = sqlite3.connect(d / "meter.db")
    try:
        return db.execute(text, params).fetchone()
    finally:
        db.close()


def sep_check(d: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "sep"), "check", "--data", str(d)], capture_output=True,
                          text=True, timeout=60)


def copy_interval(d: Path, src: tuple[int, int], dst: tuple[int, int]) -> None:
    value, c, mac = row(d, "SELECT value, crc, mac FROM intervals WHERE channel=? AND end_time=?",
                        src)
    sql(d, ("UPDATE intervals SET value=?, crc=?, mac=? WHERE channel=? AND end_time=?",
            (value, c, mac, *dst)))


def test_an_interval_moved_to_another_time_slot_is_refused(tmp_path):
    fill(tmp_path)
    moved_to = SLOT * 40  # an empty slot: the row now claims a half-hour it was not read in
    sql(tmp_path, ("UPDATE intervals SET end_time=? WHERE channel=0 AND end_time=?",
                   (moved_to, SLOT * 3)))
    proc = sep_check(tmp_path)
    assert proc.returncode == 1 and f"intervals 0/{moved_to}" in proc.stdout, proc.stdout
    s = Store.open(tmp_path)
    assert moved_to not in dict(s.intervals(0)) and len(s.intervals(0)) == 9
    assert ("intervals", f"0/{moved_to}") in s.faults


def test_an_older_interval_copied_over_a_newer_one_is_refused(tmp_path):
    fill(tmp_path)
    copy_interval(tmp_path, (0, SLOT * 2), (0, SLOT * 9))  # slot 2's row, whole, over slot 9
    proc = sep_check(tmp_path)
    assert proc.returncode == 1 and f"intervals 0/{SLOT * 9}" in proc.stdout, proc.stdout
    assert f"intervals 0/{SLOT * 2}" not in proc.stdout  # the original is intact
    s = Store.open(tmp_path)
    served = dict(s.intervals(0))
    assert SLOT * 9 not in served and served[SLOT * 2] == 998


def test_an_interval_copied_to_another_channel_is_refused(tmp_path):
    fill(tmp_path)
    copy_interval(tmp_path, (1, SLOT * 5), (0, SLOT * 5))  # same half-hour, other register
    proc = sep_check(tmp_path)
    assert proc.returncode == 1 and f"intervals 0/{SLOT * 5}" in proc.stdout, proc.stdout
    s = Store.open(tmp_path)
    assert SLOT * 5 not in dict(s.intervals(0)) and dict(s.intervals(1))[SLOT * 5] == 1995


@pytest.mark.parametrize("src,dst", [((86400, 1), (2 * 86400, 1)), ((86400, 2), (86400, 1))],
                         ids=["older-period-over-newer", "tier-over-tier"])
def test_a_billing_row_copied_over_another_is_refused(tmp_path, src, dst):
    fill(tmp_path)
    d, r, cost, c, mac = row(tmp_path, "SELECT delivered_wh, received_wh, cost, crc, mac "
                             "FROM billing WHERE period_start=? AND tier=?", src)
    sql(tmp_path, ("UPDATE billing SET delivered_wh=?, received_wh=?, cost=?, crc=?, mac=? "
                   "WHERE period_start=? AND tier=?", (d, r, cost, c, mac, *dst)))
    proc = sep_check(tmp_path)
    assert proc.returncode == 1 and f"billing {dst[0]}/{dst[1]}" in proc.stdout, proc.stdout
    s = Store.open(tmp_path)
    assert dst not in [(p, t) for p, t, *_ in s.billing()]
    assert src in [(p, t) for p, t, *_ in s.billing()]


def test_a_config_record_copied_over_another_key_is_refused(tmp_path):
    fill(tmp_path)
    db = sqlite3.connect(tmp_path / "meter.db")
    rows = db.execute("SELECT copy, value, crc, mac FROM records WHERE kind='config' AND "
                      "key='other' ORDER BY copy").fetchall()
    for copy, value, c, mac in rows:  # both copies, so no intact copy of 'site' is left
        db.execute("UPDATE records SET value=?, crc=?, mac=? WHERE kind='config' AND "
                   "key='site' AND copy=?", (value, c, mac, copy))
    db.commit()
    db.close()
    proc = sep_check(tmp_path)
    assert proc.returncode == 1 and "config site#0" in proc.stdout, proc.stdout
    s = Store.open(tmp_path)
    with pytest.raises(CorruptRecord):
        s.get_config("site")
    assert s.get_config("other") == "B"
