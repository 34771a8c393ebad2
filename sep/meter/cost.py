"""What today's energy has cost so far (sans-IO): the daily standing charge plus every kWh
delivered since midnight (UTC) at the unit rate in force when it was read — the same sum an
in-home display shows as "cost today" (``hubsim/ihd_price.py`` keeps it from the same
readings and prices).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

DAY = 86400


@dataclasses.dataclass
class DailyCost:
    day: int | None = None  # unix time of the UTC midnight the sum started
    cost: Decimal = Decimal(0)
    last_wh: int | None = None  # the delivered register at the last update

    def update(self, now: float, delivered_wh: int, rate: Decimal,
               standing_charge: Decimal) -> Decimal:
        """A reading of the delivered register (Wh) at ``now`` with the unit rate (per kWh)
        in force; returns the cost so far today."""
        day = int(now) // DAY * DAY
        if self.day != day:
            self.day = day
            self.cost = Decimal(standing_charge)
        if self.last_wh is not None and delivered_wh > self.last_wh:
            self.cost += Decimal(delivered_wh - self.last_wh) / 1000 * Decimal(rate)
        self.last_wh = delivered_wh
        return self.cost

    def state(self) -> dict[str, Any]:
        return {"day": self.day, "cost": str(self.cost), "last_wh": self.last_wh}

    def restore(self, state: dict[str, Any]) -> None:
        self.day = None if state.get("day") is None else int(state["day"])
        self.cost = Decimal(str(state.get("cost", "0")))
        last = state.get("last_wh")
        self.last_wh = None if last is None else int(last)
