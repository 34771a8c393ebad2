"""The battery gas meter, its mirror on the hub, and gas on the IHD.

The mirror must hold what the gas meter reported — checked against the gas flow written
out here and integrated independently — and show itself as a mirrored gas meter; the gas
meter must be unreachable while it sleeps; only it may configure or report to its mirror;
a BOMD asking again gets the same mirror; the IHD converts m³ to kWh with the gas price's
conversion factor and calorific value (the GB formula, computed here).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import zigpy.exceptions
import zigpy.types as t
from zigpy.zcl import foundation

from hubsim.gas import GasMeter
from hubsim.hub import CommsHub
from hubsim.ihd import InHomeDisplay
from radios.air import VirtualAir
from radios.sniffer import Sniffer
from radios.virtual import VirtualControllerApplication, virtual_config
from sep.clock import ManualClock
from sep.meter.tariff import parse_tariff
from sep.zcl.security import requires_aps_security
from tests.waiting import until

START = 1_780_272_000  # 2026-06-01T00:00:00Z
GAS_TARIFF = """
commodity = "gas"
[[tiers]]
tier = 1
label = "Gas"
rate = "0.0700"
[gas]
conversion_factor = "1.02264"
calorific_value = "39.5"
calorific_value_unit = "MJ/m3"
"""


def litres_between(t0: int, t1: int) -> int:
    """The gas flow as hubsim/gas.py documents it, integrated here second by second."""
    total = 0
    for s in range(t0, t1):
        hour = s % 86400 // 3600
        flow = 12 + (900 if hour in (6, 7, 8) else 650 if 17 <= hour <= 21 else
                     150 if hour == 12 else 0)
        total += flow
    return total // 3600


class Han:
    def __init__(self) -> None:
        self.air = VirtualAir()
        self.frames: list = []  # what crosses the air, decrypted (the keys its nodes use)
        Sniffer(self.air).add_tap(lambda frame, when: self.frames.append(frame))
        self.clock = ManualClock(START)
        self.hub = CommsHub(air=self.air, clock=self.clock.now, mirrors=True,
                            gas_tariff=parse_tariff(GAS_TARIFF))
        self.gas = GasMeter(air=self.air, clock=self.clock.now, initial_litres=500_000)

    async def __aenter__(self) -> Han:
        await self.hub.start()
        await self.gas.start()
        await until(lambda: self.gas.reports_sent >= 1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.gas.stop()
        await self.hub.stop()

    @property
    def mirror(self):
        [mirror] = self.hub.mirrors.mirrors.values()
        return mirror


async def test_the_mirror_holds_what_the_gas_meter_drew():
    async with Han() as han:
        m = han.mirror
        assert m.endpoint == 0x40 and m.owner == "00:0d:6f:00:00:00:6a:51"
        assert m.metering.read_value(0x0306) == 128  # Mirrored Gas Metering (SE 1.4)
        assert m.metering.read_value(0x0300) == 0x01  # m³
        assert m.reporting_interval == 1800
        assert m.metering.read_value(0x0000) == 500_000
        for wake in range(1, 7):  # three hours, through the 06:00 heating
            han.clock.advance(1800 if wake < 4 else 1800 + 4 * 3600 // 3)
            await until(lambda w=wake: han.gas.reports_sent >= w + 1)
            want = 500_000 + litres_between(START, int(han.clock.now()))
            await until(lambda w=want: m.metering.read_value(0x0000) == w)
        assert han.gas.wakes == 7


async def test_a_sleeping_gas_meter_cannot_be_reached():
    async with Han() as han:
        await until(lambda: not han.gas._awake)
        with pytest.raises(zigpy.exceptions.DeliveryError):
            await han.hub.app.send_packet(t.ZigbeePacket(
                src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0)), src_ep=9,
                dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(han.gas.app.state.node_info.nwk)),
                dst_ep=1, tsn=1, profile_id=0x0109, cluster_id=0x0702,
                data=t.SerializableBytes(b"\x00\x01\x00\x00\x00"),
                tx_options=t.TransmitOptions.ACK, radius=30))


async def test_asking_again_gives_the_same_mirror():
    async with Han() as han:
        han.gas.mirror = None
        han.gas.configured = False
        han.clock.advance(1800)
        await until(lambda: han.gas.reports_sent >= 2)
        assert han.gas.mirror == 0x40 and len(han.hub.mirrors.mirrors) == 1
        assert any("asked again" in line for line in han.hub.mirrors.log)


async def test_only_its_gas_meter_reports_to_a_mirror():
    async with Han() as han:
        # a member of the HAN (its frames secured like the gas meter's), not the gas meter
        intruder = VirtualControllerApplication(virtual_config(
            "00:0d:6f:00:00:00:66:67", air=han.air, aps_policy=requires_aps_security))
        await intruder.startup()
        try:
            record = foundation.Attribute(attrid=0x0000, value=foundation.TypeValue(
                type=foundation.DataTypeId.uint48, value=t.uint48_t(1))).serialize()
            for cmd, general, payload in ((0x0A, True, record),
                                          (0x08, False, b"\x01\x00\x00\x00\x08\x07\x00\x00\x00")):
                fc = 0x08 | (0x00 if general else 0x01)  # server→client, default response on
                seen = len(han.frames)
                await intruder.send_packet(t.ZigbeePacket(
                    src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK,
                                          address=intruder.state.node_info.nwk), src_ep=1,
                    dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0)),
                    dst_ep=0x40, tsn=0x55, profile_id=0x0109, cluster_id=0x0702,
                    data=t.SerializableBytes(bytes([fc, 0x55, cmd]) + payload),
                    tx_options=t.TransmitOptions.ACK, radius=30))

                def refusal(since=seen):
                    return [f for f in han.frames[since:] if f.src_nwk == 0 and
                            f.cluster_id == 0x0702 and len(f.payload) == 5 and f.payload[1] == 0x55]

                await until(refusal)
                [frame] = refusal()
                assert frame.payload[2] == 0x0B and frame.payload[4] == 0x7E  # NOT_AUTHORIZED
            assert han.mirror.metering.read_value(0x0000) == 500_000
            assert han.mirror.reporting_interval == 1800
        finally:
            await intruder.shutdown()


async def test_the_ihd_shows_gas_in_m3_and_kwh():
    async with Han() as han:
        ihd = InHomeDisplay(air=han.air, clock=han.clock.now)
        await ihd.start()
        try:
            assert await ihd.gas.find(timeout=3.0)
            v = ihd.gas.view
            assert v.volume_m3() == Decimal("500.000")
            assert v.energy_kwh() == Decimal("500.000") * Decimal("1.02264") * Decimal("39.5") \
                / Decimal("3.6")
            assert v.text() == "500.000 m³ = 5,610.3 kWh"  # 511.32 m³·39.5 MJ/m³ / 3.6
            han.clock.advance(7 * 3600)  # into the morning heating
            await until(lambda: han.gas.reports_sent >= 2)
            await asyncio.sleep(0.1)
            await ihd.gas.read()
            assert v.summation == 500_000 + litres_between(START, START + 7 * 3600)
        finally:
            await ihd.stop()
