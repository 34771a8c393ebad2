"""What the wave-2 Metering/Price/Messaging features cost the meter (prints figures).

- a reading through the Metering server (registers, demand, load profile, bills, sampling
  sessions, snapshot schedules), without and with a price source, a block tariff and four
  sampling sessions;
- storing the Price state (16 price events, 13 bills, 5 credit payments, 8 CPP events)
  and the Messaging state (20 messages with confirmations) in the integrity-checked store:
  one write each, as after every change.

    .venv/bin/python bench/bench_han_state.py
"""

from __future__ import annotations

import json
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from sep.clusters.messaging import MessagingServer
from sep.clusters.metering import MeteringServer
from sep.clusters.price import PriceServer
from sep.meter.billing import ClosedBill
from sep.meter.sampling import SamplingSession
from sep.meter.tariff import parse_tariff
from sep.metrology.api import Reading
from sep.store import Store

T0 = 1_780_300_800
TARIFF = parse_tariff("""
issuer_tariff_id = 5
label = "Bench"
timezone = "UTC"
standing_charge = "0.5"
[[tiers]]
tier = 1
label = "A"
rate = "0.2000"
[blocks]
thresholds_kwh = [5, 10]
period = { start = 2026-01-01T00:00:00Z, duration = 1, timebase = "days" }
[blocks.prices]
1 = ["0.2000", "0.2500", "0.3000"]
[billing_period]
start = 2026-01-01T00:00:00Z
duration = 1
timebase = "months"
""")


def per_reading(metering: MeteringServer, price: PriceServer | None, n: int = 20_000) -> float:
    wh = 100_000
    t = float(T0)
    start = time.perf_counter()
    for _ in range(n):
        t += 10
        wh += 1
        metering.update(Reading(t, wh, wh // 20, 360))
        if price is not None and int(t) % 300 == 0:
            price.tick(t)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    plain = MeteringServer()
    print(f"reading, no prices:                         {per_reading(plain, None):7.1f} µs")
    full = MeteringServer()
    price = PriceServer(tariff=TARIFF, on_tier=full.set_active_tier,
                        on_block_period=lambda s, th: full.set_block_period(s, th))
    full.price_source = price
    price.tick(T0)
    for k in range(4):
        full.sessions[k + 1] = SamplingSession(k + 1, k, T0, k % 2, 60, 1024)
    print(f"reading, block tariff + bills + 4 sessions: {per_reading(full, price):7.1f} µs")

    for k in range(16):
        price.schedule_price(tier=1, unit_rate="0.3000", label=f"E{k}", now=T0,
                             start=T0 + 3600 * (k + 1), duration_minutes=30)
    for k in range(13):
        price.record_bill(ClosedBill(T0 - 86400 * 31 * (k + 1), T0, Decimal("61.2345")), T0)
    for k in range(5):
        price.publish_credit_payment(due_date=T0, overdue_amount=0, status=1, payment=100 * k,
                                     payment_date=T0 - k, ref=b"REF", now=T0)
    for k in range(8):
        price.publish_cpp_event(start=T0 + 7200 * k, duration_minutes=30, price_tier=0, now=T0)
    msgs = MessagingServer()
    for k in range(20):
        msgs.display_message(f"message {k}", now=T0, message_id=k + 1)
        msgs.messages[k + 1].confirmations.append({"nwk": 1, "time": T0, "answer": "yes",
                                                   "response": ""})
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp))
        for name, state in (("price", price.persisted_state),
                            ("messaging", msgs.persisted_state)):
            size = len(json.dumps(state()))
            n = 200
            start = time.perf_counter()
            for _ in range(n):
                store.put_record("han", name, state())
            ms = (time.perf_counter() - start) / n * 1e3
            print(f"store the {name} state ({size} bytes of JSON):{' ' * (9 - len(name))}"
                  f"{ms:7.2f} ms per write (SQLite WAL, synchronous FULL)")
        store.close()


if __name__ == "__main__":
    main()
