"""Price server, current price only (SE 1.4 D.4.2.3.1 / D.4.2.4.1), sans-IO.

The supplier (or the MQTT bridge) sets the price; GetCurrentPrice answers PublishPrice,
and clients that asked are sent the new price unsolicited. The active price tier is also
the Metering register tier, so tier registers follow the tariff.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import zigpy.types as t

from sep.clusters.base import ClusterServer
from sep.clusters.general import to_zcl_time
from sep.zcl.frames import Request, build_frame, response_header
from sep.zcl.price import CURRENCY_GBP, PRICE_TRAILING_DIGITS, Price


@dataclasses.dataclass
class CurrentPrice:
    tier: int
    unit_rate: Decimal  # GBP per kWh
    label: str
    issuer_event_id: int
    start: int
    duration_min: int = 0xFFFF


class PriceServer(ClusterServer):
    cluster = Price

    def __init__(self, *, provider_id: int = 0x0000ABCD, tiers: int = 4,
                 on_tier: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.provider_id = provider_id
        self.tiers = tiers
        self.on_tier = on_tier or (lambda tier: None)
        self.current: CurrentPrice | None = None
        self._event = 0
        self.commands[0x00] = self._get_current_price

    def publish(self, *, tier: int, unit_rate: float | Decimal, label: str, now: float,
                duration_minutes: int = 0xFFFF) -> bytes:
        if not 1 <= tier <= min(self.tiers, 15):
            raise ValueError(f"tier must be 1..{self.tiers}")
        if len(label.encode()) > 12:
            raise ValueError("a rate label is at most 12 bytes")
        self._event += 1
        self.current = CurrentPrice(tier, Decimal(str(unit_rate)), label, self._event, int(now),
                                    duration_minutes)
        self.on_tier(tier)
        return self.push(0x00, self.payload(now))

    def payload(self, now: float) -> bytes:
        cur = self.current
        assert cur is not None
        price = int(cur.unit_rate * 10 ** PRICE_TRAILING_DIGITS)
        return Price.client_commands[0x00].schema(
            provider_id=self.provider_id, rate_label=t.LVBytes(cur.label.encode()),
            issuer_event_id=cur.issuer_event_id, current_time=to_zcl_time(now),
            unit_of_measure=0x00, currency=CURRENCY_GBP,
            price_trailing_digit_and_price_tier=(PRICE_TRAILING_DIGITS << 4) | cur.tier,
            number_of_price_tiers_and_register_tier=(self.tiers << 4) | cur.tier,
            start_time=to_zcl_time(cur.start), duration_in_minutes=cur.duration_min,
            price=price, price_ratio=0xFF, generation_price=0xFFFFFFFF,
            generation_price_ratio=0xFF, alternate_cost_delivered=0xFFFFFFFF,
            alternate_cost_unit=0xFF, alternate_cost_trailing_digit=0xFF,
            number_of_block_thresholds=0, price_control=0).serialize()

    def _get_current_price(self, req: Request, args: Any, now: float) -> list[bytes] | Any:
        if self.current is None:
            from sep.zcl.frames import Status

            return Status.NOT_FOUND
        return [build_frame(response_header(req, 0x00, general=False), self.payload(now))]
