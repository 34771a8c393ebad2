"""The event log over the HAN: how long a GetEventLog takes on a long log.

The Events server builds its HAN view from the store once, then adds new events as they
come. For logs of 1,000 to 20,000 events: the first GetEventLog (the view built from the
store), a later one (the view kept), and how many PublishEventLog frames the most recent
64 events take with full information.

    .venv/bin/python bench/bench_events_han.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import zigpy.types as t
from zigpy.zcl import foundation

from sep.clusters.events import EventsServer
from sep.store import Store
from sep.zcl.frames import Request, decode_header

KINDS = ("SUPPLY_CHANGE", "POWER_UP", "CONFIG_CHANGE", "CALENDAR_IN_FORCE")


def request(full: bool) -> Request:
    payload = (bytes([0x10 if full else 0x00]) + t.uint16_t(0).serialize()
               + t.uint32_t(0).serialize() + t.uint32_t(0xFFFFFFFF).serialize() + b"\x40"
               + t.uint16_t(0).serialize())
    header, body = decode_header(foundation.ZCLHeader.cluster(1, 0x00).serialize() + payload)
    return Request(src_nwk=0x1234, src_ep=1, dst_ep=1, profile_id=0x0109, cluster_id=0x0709,
                   header=header, payload=body)


def main() -> None:
    print(f"{'events':>7} {'fill s':>7} {'1st read ms':>12} {'next read ms':>13} {'frames':>7}")
    for n in (1_000, 5_000, 20_000):
        d = Path(tempfile.mkdtemp(prefix="sep-bench-events-"))
        store = Store.open(d)
        t0 = time.perf_counter()
        for i in range(n):
            kind = KINDS[i % len(KINDS)]
            store.append_event_at(kind, 1_767_225_600 + i,
                                  {"to": "ON" if i % 2 else "OFF"} if kind == "SUPPLY_CHANGE"
                                  else {"n": i})
        fill = time.perf_counter() - t0
        server = EventsServer(store)
        t0 = time.perf_counter()
        frames = server.handle(request(True), 1_767_225_600 + n)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        server.handle(request(True), 1_767_225_600 + n)
        again = time.perf_counter() - t0
        print(f"{n:>7} {fill:>7.1f} {first * 1000:>12.1f} {again * 1000:>13.2f} {len(frames):>7}")
        store.close()


if __name__ == "__main__":
    main()
