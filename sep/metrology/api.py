"""The one read-only interface between the application side and metrology.

The application side sees metrology only through :class:`MetrologyReader`: it can read,
never write. The in-process :class:`SimulatedMetrology` is the default for tests and
the demo; the isolated out-of-process implementation offers the same interface.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Protocol

from sep.clock import Clock
from sep.metrology.load import HouseholdLoad


class MetrologyStatus(enum.IntFlag):
    OK = 0
    CALIBRATION_FAULT = 0x01  # calibration data corrupt: no readings produced
    MEASUREMENT_FAULT = 0x02  # measurement source stuck or failing
    LINK_DOWN = 0x04  # application side lost the metrology link
    REGISTER_FAULT = 0x08  # stored registers corrupt in both copies: no readings produced


# Faults under which metrology sends no energy values at all (the client's Reading then
# carries the last good values it had, which must not be booked as new energy).
ENERGY_WITHHELD = MetrologyStatus.CALIBRATION_FAULT | MetrologyStatus.REGISTER_FAULT
# Any of these: the reading's energy is not to be trusted or served.
UNTRUSTED = ENERGY_WITHHELD | MetrologyStatus.MEASUREMENT_FAULT | MetrologyStatus.LINK_DOWN


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    timestamp: float  # epoch seconds (metrology's clock) the registers were taken at
    delivered_wh: int  # cumulative imported energy, Wh
    received_wh: int  # cumulative exported energy, Wh
    demand_w: int  # instantaneous net power, W (negative = export)
    status: MetrologyStatus = MetrologyStatus.OK


class MetrologyReader(Protocol):
    async def read(self) -> Reading: ...


class Registers:
    """Energy registers integrated exactly in joules.

    ``supply_closed`` tells whether the meter's relay lets the household draw power: it
    is physics (the load behind an open relay draws nothing), not a command to metrology.
    """

    def __init__(self, load: HouseholdLoad, start: float, delivered_j: int = 0,
                 received_j: int = 0, supply_closed: Callable[[], bool] | None = None) -> None:
        self.load = load
        self.t = int(start)
        self.delivered_j = delivered_j
        self.received_j = received_j
        self.supply_closed = supply_closed or (lambda: True)

    def advance(self, now: float) -> None:
        end = int(now)
        if end > self.t and not self.supply_closed():
            self.t = end
        if end > self.t:
            imp, exp = self.load.energy_j(self.t, end)
            self.delivered_j += imp
            self.received_j += exp
            self.t = end

    def reading(self) -> Reading:
        return Reading(
            timestamp=float(self.t),
            delivered_wh=self.delivered_j // 3600,
            received_wh=self.received_j // 3600,
            demand_w=self.load.power_w(self.t) if self.supply_closed() else 0,
        )


class SimulatedMetrology:
    """In-process metrology over a simulated household load."""

    def __init__(self, clock: Clock, seed: int = 1, solar_peak_w: int = 0,
                 start: float | None = None, initial_wh: int = 0,
                 supply_closed: Callable[[], bool] | None = None) -> None:
        self.clock = clock
        self.registers = Registers(HouseholdLoad(seed, solar_peak_w),
                                   clock.now() if start is None else start,
                                   delivered_j=initial_wh * 3600, supply_closed=supply_closed)

    async def read(self) -> Reading:
        return self.read_now()

    def read_now(self) -> Reading:
        self.registers.advance(self.clock.now())
        return self.registers.reading()
