"""Start-up integrity check time for a year of data, and insert throughput.

A year of 30-minute load profile on two channels (2 x 17,520 intervals) plus a year of
daily billing for 4 tiers (1,460 rows) and 2,000 events.

    .venv/bin/python bench/bench_store.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sep.store import Store


def main() -> None:
    d = Path(tempfile.mkdtemp(prefix="sep-bench-store-"))
    s = Store.open(d)
    t = time.perf_counter()
    year = 17_520
    for start in range(0, year, 48):  # a day per transaction, as the meter writes them
        s.put_intervals([(ch, (i + 1) * 1800, i % 900) for i in range(start, start + 48)
                         for ch in (0, 1)])
    t_int = time.perf_counter() - t
    t = time.perf_counter()
    for day in range(365):
        for tier in range(1, 5):
            s.put_billing(day * 86400, tier, 1000 + day, 0, 250 * tier)
    t_bill = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(2000):
        s.append_event("CONFIG_CHANGE", n=i)
    t_ev = time.perf_counter() - t
    s.close()
    s = Store.open(d)
    t = time.perf_counter()
    report = s.check()
    t_check = time.perf_counter() - t
    print(f"insert: {2 * year / t_int:,.0f} intervals/s (daily batches), "
          f"{1460 / t_bill:,.0f} billing rows/s, {2000 / t_ev:,.0f} events/s (one commit each)")
    print(f"start-up check: {report.rows_checked:,} records in {t_check:.2f} s "
          f"(goal < 2 s), clean={report.clean}")


if __name__ == "__main__":
    main()
