"""A simulated household: net power as a pure, seeded function of time.

Power is constant within each :data:`SLOT` seconds, so the energy between two times is
an exact integer number of joules — tests can recompute it independently of the meter.
The shape: a base load, a cycling fridge, morning and evening peaks, and seeded random
appliance events (kettle, oven, washing machine); optionally rooftop solar that exports
at midday.
"""

from __future__ import annotations

import math
import random

SLOT = 10  # seconds per constant-power slot
_BLOCK = 900  # appliance events are drawn per 15-minute block

_APPLIANCES = (  # (name, watts, minutes, probability per block weighting)
    ("kettle", 2800, 3, 0.10),
    ("oven", 2000, 40, 0.03),
    ("washing machine", 1800, 60, 0.02),
    ("tv", 120, 90, 0.05),
)


class HouseholdLoad:
    def __init__(self, seed: int = 1, solar_peak_w: int = 0) -> None:
        self.seed = seed
        self.solar_peak_w = solar_peak_w
        self._events: dict[int, list[tuple[int, int, int]]] = {}

    def _block_events(self, block: int) -> list[tuple[int, int, int]]:
        """Appliance runs starting in ``block``: (start_s, watts, duration_s)."""
        cached = self._events.get(block)
        if cached is not None:
            return cached
        if len(self._events) > 4096:
            self._events.clear()
        rng = random.Random(self.seed * 1_000_003 + block)
        hour = (block * _BLOCK // 3600) % 24
        activity = 0.2 if hour < 6 else 1.6 if hour in (7, 8, 17, 18, 19, 20) else 0.8
        events = []
        for _name, watts, minutes, p in _APPLIANCES:
            if rng.random() < p * activity:
                start = block * _BLOCK + rng.randrange(_BLOCK)
                events.append((start, watts, minutes * 60))
        self._events[block] = events
        return events

    def power_w(self, t: float) -> int:
        """Net power in watts during the slot containing ``t`` (negative = export)."""
        slot_start = int(t // SLOT) * SLOT
        load = 150  # standby and base load
        if (slot_start // 60) % 45 < 20:  # fridge compressor
            load += 90
        # Events that may still be running: look back far enough for the longest run.
        block = slot_start // _BLOCK
        longest = max(m for _, _, m, _ in _APPLIANCES) * 60
        for b in range(block - longest // _BLOCK - 1, block + 1):
            for start, watts, duration in self._block_events(b):
                if start <= slot_start < start + duration:
                    load += watts
        solar = 0
        if self.solar_peak_w:
            day_s = slot_start % 86400
            if 6 * 3600 <= day_s < 18 * 3600:
                solar = int(self.solar_peak_w * math.sin(math.pi * (day_s - 6 * 3600) / 43200))
        return load - solar

    def energy_j(self, t0: float, t1: float) -> tuple[int, int]:
        """(imported J, exported J) between whole-second times ``t0`` <= ``t1``."""
        imported = exported = 0
        t = int(t0)
        end = int(t1)
        while t < end:
            nxt = min(end, (t // SLOT + 1) * SLOT)
            p = self.power_w(t)
            if p >= 0:
                imported += p * (nxt - t)
            else:
                exported += -p * (nxt - t)
            t = nxt
        return imported, exported
