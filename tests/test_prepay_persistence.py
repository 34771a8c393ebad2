"""The prepayment account as billing data: restored after a restart, in two checked copies.

A used code stays used and a supplier's issuer event id stays spent across a restart; one
damaged copy is repaired from the other; with both damaged the balance is not used and the
meter does not interrupt the supply on it (disconnection off, Check Meter on) — the
SQLite file is edited behind the meter's back, as an attacker or a failing medium would.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path

from luhn_oracle import luhn

from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.store import Store

NOW = 1_780_300_800
TARIFF = """
[[tiers]]
tier = 1
label = "Standard"
rate = "0.2450"

[prepayment]
mode = "prepayment"
initial_credit = "5.00"
"""


def meter(tmp: Path) -> MeterApp:
    (tmp / "tariff.toml").write_text(TARIFF)
    app = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:cc:05", data_dir=tmp / "data",
                                 tariff=tmp / "tariff.toml"), clock=ManualClock(NOW))
    app.prepayment.is_consumer = lambda nwk: nwk == 0x9901
    app.prepayment.is_supplier = lambda nwk: nwk == 0x0000
    return app


def send(app: MeterApp, src: int, cmd: int, payload: bytes) -> bytes:
    [reply] = app.endpoint.handle(src_nwk=src, src_ep=1, dst_ep=1, profile_id=0x0109,
                                  cluster_id=0x0705, data=bytes([0x01, 7, cmd]) + payload,
                                  broadcast=False, now=NOW)
    return reply.data


def top_up(app: MeterApp, raw: str) -> int:
    return send(app, 0x9901, 0x04, bytes([2, len(raw)]) + raw.encode())[3]


def mode(issuer: int) -> bytes:
    return struct.pack("<IIIHi", 0x0000ABCD, issuer, 0, 0x0093, 0)


def test_restart_keeps_the_credit_the_used_codes_and_the_issuer_ids(tmp_path):
    app = meter(tmp_path)
    assert top_up(app, luhn("00000001000700")) == 0x10  # £7.00
    assert send(app, 0x0000, 0x06, mode(50))[2] == 0x02  # ChangePaymentModeResponse
    app.persistence.close()
    again = meter(tmp_path)
    acct = again.prepayment.account
    assert acct.credit_remaining == 120_000 and acct.total_added == 70_000
    assert top_up(again, luhn("00000001000700")) == 0x02  # still used
    assert send(again, 0x0000, 0x06, mode(50))[4] == 0x7E  # replayed id: NOT_AUTHORIZED
    again.persistence.close()


def test_one_damaged_copy_is_repaired(tmp_path):
    app = meter(tmp_path)
    assert top_up(app, luhn("00000002000300")) == 0x10
    app.persistence.close()
    db = sqlite3.connect(tmp_path / "data" / "meter.db")
    text = db.execute("SELECT value FROM records WHERE kind='prepay' AND copy=0").fetchone()[0]
    state = json.loads(text)
    state["credit"] = 10**12  # a fortune, without the key to MAC it
    db.execute("UPDATE records SET value=? WHERE kind='prepay' AND copy=0",
               (json.dumps(state, sort_keys=True, separators=(",", ":")),))
    db.commit()
    db.close()
    again = meter(tmp_path)
    assert again.prepayment.account.credit_remaining == 80_000
    again.persistence.close()
    store = Store.open(tmp_path / "data")
    try:
        kinds = [e.kind for e in store.events()]
        assert "INTEGRITY_FAILURE" in kinds and "INTEGRITY_RECOVERED" in kinds
        assert store.check().clean is False  # the quarantined copy stays on record
        assert store.get_record("prepay", "account")["credit"] == 80_000 * 1000
    finally:
        store.close()


def test_both_copies_damaged_the_balance_is_not_used_nor_acted_on(tmp_path):
    app = meter(tmp_path)
    assert top_up(app, luhn("00000003000300")) == 0x10
    app.persistence.close()
    db = sqlite3.connect(tmp_path / "data" / "meter.db")
    db.execute("UPDATE records SET value=replace(value, '\"credit\"', '\"credjt\"') "
               "WHERE kind='prepay'")
    db.commit()
    db.close()
    again = meter(tmp_path)
    acct = again.prepayment.account
    assert acct.total_added == 0  # the damaged balance is not used ...
    assert not acct.disconnection  # ... and the supply is not interrupted on a guess
    assert not acct.disconnect_due(NOW)
    assert ("prepay", "account") in again.store.faults
    assert again.metering.extra_status & 0x01  # Check Meter in the Metering status
    again.persistence.close()
