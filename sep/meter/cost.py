"""What today's energy has cost so far (sans-IO): the daily standing charge of the tariff in
force plus every kWh delivered since midnight (UTC) at the unit rate in force when it was
read — the sum an in-home display shows as "cost today" (``hubsim/ihd_price.py`` keeps it
from the same readings and prices, on the other side of the air).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

DAY = 86400


@dataclasses.dataclass
class DailyCost:
    day: int | None = None  # unix time of the UTC midnight the sum started
    energy: Decimal = Decimal(0)  # the day's kWh at their rates
    standing: Decimal = Decimal(0)  # the day's standing charge (the tariff in force)
    last_wh: int | None = None  # the delivered register at the last update

    @property
    def cost(self) -> Decimal:
        return self.standing + self.energy

    def update(self, now: float, delivered_wh: int, rate: Decimal,
               standing_charge: Decimal) -> Decimal:
        """A reading of the delivered register (Wh) at ``now`` with the unit rate (per kWh)
        and standing charge (per day) in force; returns the cost so far today."""
        day = int(now) // DAY * DAY
        if self.day != day:
            self.day = day
            self.energy = Decimal(0)
        self.standing = Decimal(standing_charge)
        if self.last_wh is not None and delivered_wh > self.last_wh:
            self.energy += Decimal(delivered_wh - self.last_wh) / 1000 * Decimal(rate)
        self.last_wh = delivered_wh
        return self.cost

    def state(self) -> dict[str, Any]:
        return {"day": self.day, "energy": str(self.energy), "standing": str(self.standing),
                "last_wh": self.last_wh}

    def restore(self, state: dict[str, Any]) -> None:
        self.day = None if state.get("day") is None else int(state["day"])
        self.energy = Decimal(str(state.get("energy", "0")))
        self.standing = Decimal(str(state.get("standing", "0")))
        last = state.get("last_wh")
        self.last_wh = None if last is None else int(last)
