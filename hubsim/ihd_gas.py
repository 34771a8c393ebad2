"""Gas on the in-home display: read from the gas meter's mirror on the comms hub.

The gas meter sleeps, so a display never reads it: it finds the mirror (ZDO Match_Desc for
a Metering server whose MeteringDeviceType is a mirrored one, 127 + the meter's type),
reads its formatting set and summation, and has the mirror report the summation when the
gas meter pushes a new one. Next to the mirror the hub's Gas Proxy Function serves the gas
Price cluster, whose ConversionFactor (0x0302, trailing digits in 0x0303's high nibble) and
CalorificValue (0x0304, unit 0x0305, trailing digits in 0x0306's high nibble) turn the
register's m³ into the kWh the gas is sold by (GB practice, SE 1.4 D.4.2.2.5):

    kWh = m³ × ConversionFactor × CalorificValue [MJ/m³] / 3.6
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from decimal import Decimal
from typing import Any

import zigpy.exceptions
import zigpy.types as t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.smartenergy import Metering

from sep.zcl.price import Price as SePrice

LOGGER = logging.getLogger(__name__)

SE_PROFILE = 0x0109
MIRRORED = 127  # MeteringDeviceType of a mirror: 127 + the mirrored meter's type
GAS = 1
CALORIFIC_MJ_PER_M3 = 0x01
MJ_PER_KWH = Decimal("3.6")


def _digits(value: Decimal, trailing: int) -> Decimal:
    return value.scaleb(-(int(trailing) >> 4))


@dataclasses.dataclass
class GasView:
    nwk: int | None = None
    endpoint: int | None = None
    device_type: int | None = None
    unit: int | None = None
    multiplier: int | None = None
    divisor: int | None = None
    formatting: int | None = None
    summation: int | None = None  # raw register
    conversion_factor: Decimal | None = None
    calorific_value: Decimal | None = None
    calorific_unit: int | None = None
    updates: int = 0  # new summations seen (the gas meter woke and pushed)

    def volume_m3(self) -> Decimal | None:
        if None in (self.summation, self.multiplier, self.divisor) or not self.divisor:
            return None
        return Decimal(self.summation) * Decimal(self.multiplier) / Decimal(self.divisor)

    def energy_kwh(self) -> Decimal | None:
        m3 = self.volume_m3()
        if (m3 is None or self.conversion_factor is None or self.calorific_value is None
                or self.calorific_unit != CALORIFIC_MJ_PER_M3):
            return None
        return m3 * self.conversion_factor * self.calorific_value / MJ_PER_KWH

    def text(self) -> str:
        m3 = self.volume_m3()
        if m3 is None:
            return "--"
        line = f"{m3:,.3f} m³"
        kwh = self.energy_kwh()
        if kwh is not None:
            line += f" = {kwh:,.1f} kWh"
        return line


class GasDisplay:
    """The gas part of an :class:`~hubsim.ihd.InHomeDisplay`, on its zigpy application.

    The mirror lives on the comms hub, which a display does not interview (zigpy's
    interview of a coordinator needs answers a hub's stack does not give), so the reads go
    out as plain ZCL Read Attributes frames and the answers are parsed with zigpy's own
    foundation types — an independent reading of what the mirror serves."""

    def __init__(self, ihd: Any) -> None:
        self.ihd = ihd
        self.view = GasView()
        self.has_price = False
        self._waiting: dict[tuple[int, int], asyncio.Future[bytes]] = {}

    # -- raw ZCL reads --------------------------------------------------------------------
    def on_packet(self, packet: t.ZigbeePacket) -> bool:
        """An answer to one of our reads (the IHD hands every packet here first)."""
        if not self._waiting or packet.src is None or packet.src.addr_mode != t.AddrMode.NWK:
            return False
        data = bytes(packet.data.serialize())
        if len(data) < 3 or data[0] & 0x04:
            return False
        fut = self._waiting.get((int(packet.src.address), data[1]))
        if fut is None or fut.done():
            return False
        fut.set_result(data)
        return True

    async def read_raw(self, nwk: int, ep: int, cluster: int, attr_ids: list[int],
                       timeout: float = 3.0) -> dict[int, Any]:
        """Read Attributes; the attributes that were read, by id."""
        app = self.ihd.app
        tsn = app.get_sequence()
        hdr = foundation.ZCLHeader.general(tsn, foundation.GeneralCommand.Read_Attributes)
        payload = b"".join(t.uint16_t(a).serialize() for a in attr_ids)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[(nwk, tsn)] = fut
        try:
            await app.send_packet(t.ZigbeePacket(
                src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK,
                                      address=app.state.node_info.nwk),
                src_ep=1, dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(nwk)),
                dst_ep=ep, tsn=tsn, profile_id=SE_PROFILE, cluster_id=cluster,
                data=t.SerializableBytes(hdr.serialize() + payload),
                tx_options=t.TransmitOptions.ACK, radius=30))
            data = await asyncio.wait_for(fut, timeout)
        finally:
            self._waiting.pop((nwk, tsn), None)
        rsp_hdr, rest = foundation.ZCLHeader.deserialize(data)
        if rsp_hdr.command_id != foundation.GeneralCommand.Read_Attributes_rsp:
            return {}
        records, _ = t.List[foundation.ReadAttributeRecord].deserialize(rest)
        return {int(r.attrid): r.value.value for r in records
                if r.status == foundation.Status.SUCCESS}

    async def device_type(self, nwk: int, ep: int) -> int | None:
        """The MeteringDeviceType a Metering server at (nwk, ep) says it is."""
        try:
            got = await self.read_raw(nwk, ep, Metering.cluster_id, [0x0306])
        except (TimeoutError, zigpy.exceptions.DeliveryError, ValueError):
            return None
        value = got.get(0x0306)
        return None if value is None else int(value)

    # -- finding and reading the mirror --------------------------------------------------------
    async def find(self, timeout: float = 5.0) -> bool:
        """Look for a gas mirror once (Match_Desc answers for ``timeout`` seconds)."""
        ihd = self.ihd
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                ihd._matches.get_nowait()
        await ihd.broadcast_match([Metering.cluster_id])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                nwk, eps = await asyncio.wait_for(ihd._matches.get(), deadline - loop.time())
            except TimeoutError:
                break
            for ep in eps:
                if await self.device_type(nwk, ep) == MIRRORED + GAS:
                    v = self.view
                    v.nwk, v.endpoint, v.device_type = nwk, ep, MIRRORED + GAS
                    ihd._note(f"gas mirror found at NWK 0x{nwk:04X} endpoint {ep}")
                    await self.read()
                    return True
        return False

    async def read(self) -> None:
        """Read the mirror (formatting and summation) and the gas price's conversion."""
        v = self.view
        if v.nwk is None or v.endpoint is None:
            return
        got = await self.read_raw(v.nwk, v.endpoint, Metering.cluster_id,
                                  [0x0000, 0x0300, 0x0301, 0x0302, 0x0303])
        if 0x0000 in got:
            if v.summation is not None and int(got[0x0000]) != v.summation:
                v.updates += 1
            v.summation = int(got[0x0000])
        v.unit = _int(got.get(0x0300), v.unit)
        v.multiplier = _int(got.get(0x0301), v.multiplier)
        v.divisor = _int(got.get(0x0302), v.divisor)
        v.formatting = _int(got.get(0x0303), v.formatting)
        price = await self.read_raw(v.nwk, v.endpoint, SePrice.cluster_id,
                                    [0x0302, 0x0303, 0x0304, 0x0305, 0x0306])
        if 0x0302 in price:
            v.conversion_factor = _digits(Decimal(int(price[0x0302])), int(price.get(0x0303, 0)))
        if 0x0304 in price:
            v.calorific_value = _digits(Decimal(int(price[0x0304])), int(price.get(0x0306, 0)))
            v.calorific_unit = _int(price.get(0x0305), None)


def _int(value: Any, default: int | None) -> int | None:
    return default if value is None else int(value)
