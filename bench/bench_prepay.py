"""Prepayment: how long a top-up takes to be stored and answered, and the cost of booking.

A top-up is answered only once the account (two copies) and its event are committed to
SQLite with synchronous=FULL, so its latency is mostly fsync; booking a reading (charging
energy and standing charge, collecting debts, the interlock check) runs on every reading.

    .venv/bin/python bench/bench_prepay.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.meter.topup import TopUpCodeFormat

NOW = 1_780_300_800
TARIFF = """
[[tiers]]
tier = 1
label = "Standard"
rate = "0.2450"
[prepayment]
mode = "prepayment"
initial_credit = "10.00"
"""


def main() -> None:
    d = Path(tempfile.mkdtemp(prefix="sep-bench-prepay-"))
    (d / "tariff.toml").write_text(TARIFF)
    app = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:be:01", data_dir=d / "data",
                                 tariff=d / "tariff.toml"), clock=ManualClock(NOW))
    app.prepayment.is_consumer = lambda nwk: True
    fmt = TopUpCodeFormat()
    latencies = []
    n = 200
    for i in range(n):
        raw = fmt.make(i + 1, 100).encode()
        t = time.perf_counter()
        app.endpoint.handle(src_nwk=0x9901, src_ep=1, dst_ep=1, profile_id=0x0109,
                            cluster_id=0x0705, data=bytes([0x01, i & 0xFF, 0x04, 2, len(raw)])
                            + raw, broadcast=False, now=NOW + i)
        latencies.append(time.perf_counter() - t)
    ms = sorted(x * 1000 for x in latencies)
    print(f"top-up stored and answered: median {statistics.median(ms):.1f} ms, "
          f"p95 {ms[int(0.95 * n)]:.1f} ms, max {ms[-1]:.1f} ms ({n} top-ups, two copies + "
          f"event per commit)")
    account = app.prepayment
    t = time.perf_counter()
    readings = 20_000
    for i in range(readings):
        account.book(NOW + 60 * i, i * 5, 2450, 5312)
    dt = time.perf_counter() - t
    print(f"booking a reading: {dt / readings * 1e6:.1f} µs each ({readings:,} readings)")
    app.persistence.close()


if __name__ == "__main__":
    main()
