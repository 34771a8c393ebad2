"""Metering server: the reading information set, formatting and status.

Registers are kept in Wh and W; with Multiplier 1 and Divisor 1000 the HAN sees kWh and
kW (SE 1.4 D.3: value x Multiplier / Divisor in the UnitOfMeasure, here kWh/kW binary).
The formatting bytes tell a display how many digits to show: bits 0-2 digits right of
the decimal point, bits 3-6 digits left of it, bit 7 suppress leading zeros.
"""

from __future__ import annotations

import dataclasses

from zigpy.zcl.clusters.smartenergy import Metering

from sep.clusters.base import ClusterServer
from sep.metrology.api import MetrologyStatus, Reading

# Metering Status (0x0200) bits for electricity meters, SE 1.4 D.3.2.2.2
STATUS_CHECK_METER = 0x01
STATUS_LOW_BATTERY = 0x02
STATUS_TAMPER_DETECT = 0x04
STATUS_POWER_FAILURE = 0x08
STATUS_POWER_QUALITY = 0x10
STATUS_LEAK_DETECT = 0x20
STATUS_SERVICE_DISCONNECT_OPEN = 0x40


def formatting(left: int, right: int, suppress_leading_zeros: bool = True) -> int:
    if not (0 <= left <= 15 and 0 <= right <= 7):
        raise ValueError("left digits 0..15, right digits 0..7")
    return (0x80 if suppress_leading_zeros else 0) | (left << 3) | right


@dataclasses.dataclass(frozen=True)
class MeteringConfig:
    multiplier: int = 1
    divisor: int = 1000
    unit_of_measure: int = 0x00  # kWh (binary)
    summation_formatting: int = formatting(7, 3)  # 0xBB: up to 9,999,999.999 kWh
    demand_formatting: int = formatting(5, 3)  # 0xAB: up to 99,999.999 kW
    device_type: int = 0x00  # electric metering


class MeteringServer(ClusterServer):
    cluster = Metering
    reportable = frozenset({0x0000, 0x0001, 0x0200, 0x0400})

    def __init__(self, config: MeteringConfig | None = None) -> None:
        super().__init__()
        cfg = config or MeteringConfig()
        self.config = cfg
        self.reading: Reading | None = None
        self.extra_status = 0  # faults reported by other parts (store integrity ...)
        self.values.update({
            0x0300: cfg.unit_of_measure,
            0x0301: cfg.multiplier,
            0x0302: cfg.divisor,
            0x0303: cfg.summation_formatting,
            0x0304: cfg.demand_formatting,
            0x0306: cfg.device_type,
        })
        self.getters[0x0000] = lambda: self._reading().delivered_wh
        self.getters[0x0001] = lambda: self._reading().received_wh
        self.getters[0x0400] = lambda: self._reading().demand_w
        self.getters[0x0200] = self._status

    def update(self, reading: Reading) -> None:
        self.reading = reading

    def _reading(self) -> Reading:
        if self.reading is None:
            raise LookupError("no reading from metrology yet")
        if self.reading.status & (
            MetrologyStatus.CALIBRATION_FAULT | MetrologyStatus.MEASUREMENT_FAULT
        ):
            # Never serve energy we do not trust (WELMEC 7.2): the read fails instead.
            raise LookupError(f"metrology fault: {self.reading.status!r}")
        return self.reading

    def _status(self) -> int:
        status = self.extra_status
        if self.reading is None or self.reading.status != MetrologyStatus.OK:
            status |= STATUS_CHECK_METER
        return status
