"""A small HAN for tests: hub (zigpy, the head end / ESI) + meter on one virtual air with a
pcap tap, time stepped by hand.

:meth:`Han.step` moves the clock, takes a reading and then runs the meter's periodic
work for that moment (Price and Metering ticks, reports and pushes sent), the order the
meter's own loop follows — so a TOU switch at a reading's time applies from the next
reading on, deterministically, without waiting for the background loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from zigpy.zcl import foundation

from hubsim.hub import CommsHub
from radios.air import VirtualAir
from radios.pcap import PcapWriter
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.metrology.api import Reading

S = foundation.Status
METER_IEEE = "00:0d:6f:00:00:00:ab:77"


class RampMetrology:
    """A deterministic metrology: ``wh(t)`` Wh delivered and received (pure functions)."""

    def __init__(self, clock: ManualClock, delivered: Any, received: Any) -> None:
        self.clock = clock
        self.delivered = delivered
        self.received = received

    async def read(self) -> Reading:
        t = self.clock.now()
        return Reading(timestamp=t, delivered_wh=self.delivered(t), received_wh=self.received(t),
                       demand_w=0)


class Han:
    def __init__(self, tmp: Path, *, start: int, name: str = "air", seed: int = 11,
                 solar_peak_w: int = 3500, tariff: Path | None = None,
                 data_dir: Path | None = None, metrology: Any = None,
                 clock: ManualClock | None = None, hub_tariff: Any = None) -> None:
        self.pcap = tmp / f"{name}.pcap"
        self.air = VirtualAir()
        self.writer = PcapWriter(self.pcap).capture(self.air)  # and its keys
        self.clock = clock or ManualClock(start)
        # with the meter's data kept, the hub keeps its network too (a restart rejoins)
        self.hub = CommsHub(air=self.air, clock=self.clock.now, tariff=hub_tariff,
                            state=None if data_dir is None
                            else str(data_dir.with_name(data_dir.name + "-hub-radio.json")))
        self.meter = MeterApp(MeterSettings(ieee=METER_IEEE, seed=seed, solar_peak_w=solar_peak_w,
                                            tick_seconds=3600, data_dir=data_dir, tariff=tariff,
                                            supplier_search_interval=3600),
                              clock=self.clock, air=self.air,
                              metrology=metrology(self.clock) if metrology else None)
        self.stopped = False

    async def start(self) -> None:
        await self.hub.start()
        await self.meter.start()
        dev = await self.hub.wait_interviewed(METER_IEEE)
        self.device = dev
        self.metering = dev.endpoints[1].in_clusters[0x0702]
        await self.tick()

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await asyncio.sleep(0.1)  # frames in flight reach the air (and the capture)
        await self.meter.stop()
        await self.hub.stop()
        self.writer.close()

    async def tick(self) -> None:
        """The meter's periodic work at the clock's time (what its loop does)."""
        for reply in self.meter.endpoint.reports(self.clock.now()):
            self.meter._send(reply)

    async def step(self, seconds: int, step: int = 300) -> None:
        for _ in range(seconds // step):
            self.clock.advance(step)
            await self.meter.poll_metrology()
            await self.tick()
        await asyncio.sleep(0)

    async def read(self, attrs: list[int]) -> dict[int, Any]:
        """Read Attributes by id over the air (zigpy's parsers); every one must succeed."""
        out: dict[int, Any] = {}
        for i in range(0, len(attrs), 8):
            rsp = await self.metering._read_attributes(attrs[i:i + 8])
            for r in rsp.status_records:
                assert r.status == S.SUCCESS, (hex(int(r.attrid)), r.status)
                out[int(r.attrid)] = r.value.value
        return out
