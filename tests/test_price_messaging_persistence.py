"""What Price and Messaging keep across a real restart of the meter (its SQLite store,
integrity-checked): scheduled price events and a scheduled currency conversion (carried out
on time after the restart), CPP events, consolidated bills, credit payments, the issuer
event ids of the supplier's commands (an old one replayed after the restart is refused);
the messages with their confirmations, and message ids, never given twice — also when the
message that used the highest id was cancelled before the restart. A stored record edited
behind the meter's back is not used.
"""

from __future__ import annotations

import sqlite3
import struct
from decimal import Decimal

from han_tools import Han
from zigpy.zcl import foundation

from sep.meter.billing import ClosedBill
from sep.zcl.messaging import Messaging as SeMessaging
from sep.zcl.price import Price as SePrice

S = foundation.Status
Z2000 = 946_684_800
START = 1_780_300_800  # 2026-06-01T08:00:00Z
TARIFF = """
provider_id = 0x0000ABCD
issuer_tariff_id = 88
label = "Keep"
timezone = "UTC"
standing_charge = "0.5000"
[[tiers]]
tier = 1
label = "Std"
rate = "0.2000"
[billing_period]
start = 2026-01-01T00:00:00Z
duration = 1
timebase = "months"
[cpp]
cpp1_rate = "0.8000"
"""


def se_cluster(han: Han, cls):
    """The hub's zigpy mirror of a meter cluster, with sep's SE table on it (zigpy's own
    Price and Messaging are empty stubs)."""
    endpoint = han.device.endpoints[1]
    return endpoint.add_input_cluster(cls.cluster_id, cls(endpoint, is_server=True))


def supplier_price(event_id: int, start: int, minutes: int, price: int) -> bytes:
    """A PublishPrice from the supplier (SE 1.4 D.4.2.4.1 mandatory fields)."""
    return (struct.pack("<I", 0xABCD) + b"\x03ESI" + struct.pack(
        "<IIBHBBIHI", event_id, START - Z2000, 0, 826, 0x41, 0x11, start - Z2000, minutes,
        price))


async def test_price_and_messages_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    tariff = tmp_path / "tariff.toml"
    tariff.write_text(TARIFF)
    han = Han(tmp_path, start=START, data_dir=data, tariff=tariff)
    await han.start()
    price, msgs = han.meter.price, han.meter.messaging
    try:
        now = han.clock.now()
        # the supplier's price for 10:00-11:00 and a CPP event at 12:00 (forced)
        assert price.ingest(0x00, supplier_price(7001, START + 7200, 60, 3300), now) == S.SUCCESS
        cpp = price.publish_cpp_event(start=START + 4 * 3600, duration_minutes=30,
                                      price_tier=0, now=now, forced=True)
        price.record_bill(ClosedBill(1_777_593_600, 1_780_272_000, Decimal("42.1234")), now)
        price.publish_credit_payment(due_date=START + 86400, overdue_amount=5, status=2,
                                     payment=1200, payment_date=START - 3600, ref=b"R1",
                                     now=now)
        conv = price.publish_currency_conversion(new_currency=978, factor="1.1",
                                                 start=START + 5 * 3600, flags=0x02, now=now)
        # messages: one confirmed by a client, the one with the highest id cancelled
        m1, _ = msgs.display_message("Hello", now=now, confirmation_required=True)
        m2, _ = msgs.display_message("Going", now=now)
        await han.tick()
        rsp = await se_cluster(han, SeMessaging).message_confirmation(m1.message_id,
                                                                       int(now) - Z2000)
        msgs.cancel_message(m2.message_id)
        before = {"events": [(e.issuer_event_id, e.start, e.rate) for e in price.events],
                  "bills": list(price.bills), "credit": list(price.credit_payments),
                  "cpp": cpp.issuer_event_id}
    finally:
        await han.stop()
    assert rsp.status == S.SUCCESS

    again = tmp_path / "again"
    again.mkdir()
    han2 = Han(again, start=START + 600, data_dir=data, tariff=tariff)
    await han2.start()
    price2, msgs2 = han2.meter.price, han2.meter.messaging
    try:
        assert [(e.issuer_event_id, e.start, e.rate) for e in price2.events] == before["events"]
        assert list(price2.bills) == before["bills"]
        assert list(price2.credit_payments) == before["credit"]
        assert price2.cpp_events[before["cpp"]].auth == 3
        assert price2.currency_conversion == conv
        # the supplier's price, replayed after the restart: known, not taken again
        assert price2.ingest(0x00, supplier_price(7000, START + 7200, 60, 3400),
                             han2.clock.now()) == S.INVALID_VALUE  # an older id for that start
        # over the air: the scheduled price is still announced to a client that asks
        scheduled = await se_cluster(han2, SePrice).get_scheduled_prices(START + 7200 - Z2000, 1)
        # messages: the confirmed one kept its confirmation; a new message gets a new id
        kept = dict(msgs2.messages)
        new, _ = msgs2.display_message("After", now=han2.clock.now())
        # the CPP price at 12:00, the conversion at 13:00 — carried out after the restart
        await han2.step(4 * 3600 + 300, step=300)
        cpp_price = price2.current_price(START + 4 * 3600 + 60)
        await han2.step(3600, step=300)
        currency = price2.tariff.currency
    finally:
        await han2.stop()
    assert (int(scheduled.start_time), int(scheduled.price), bytes(scheduled.rate_label)) == (
        START + 7200 - Z2000, 3300, b"ESI")
    assert list(kept) == [m1.message_id]
    assert [c["nwk"] for c in kept[m1.message_id].confirmations] == [0x0000]
    assert new.message_id > m2.message_id  # the cancelled message's id is not given again
    assert (cpp_price.label, cpp_price.unit_rate) == ("CPP1", Decimal("0.8000"))
    assert currency == 978

    # an edited record is not used: the price state is dropped, and flagged
    db = sqlite3.connect(data / "meter.db")
    n = db.execute("UPDATE records SET value=replace(value, '7001', '7002') "
                   "WHERE kind='han' AND key='price'").rowcount
    db.commit()
    db.close()
    assert n == 1
    third = tmp_path / "third"
    third.mkdir()
    han3 = Han(third, start=START + 9 * 3600, data_dir=data, tariff=tariff)
    await han3.start()
    try:
        assert han3.meter.price.events == [] and han3.meter.price.bills == []
        assert ("han", "price") in han3.meter.store.faults
        status = await han3.read([0x0200])
    finally:
        await han3.stop()
    assert int(status[0x0200]) & 0x01  # Check Meter
