"""What an in-home display knows about prices: the current and next price, the tariff, the
block status and the cost so far today — built only from what the meter sent (no I/O).

The IHD's zigpy mirror of the meter's Price cluster parses the frames (sep's table on
zigpy); :meth:`PriceView.on_command` takes each Publish* command, answered or pushed.
Prices are kept by start time, so a PublishPrice for later (GetScheduledPrices, or a
scheduled event) becomes "next" and then, at its start, "now". Cost today is what a
display accumulates itself: each rise of the delivered register times the price in force
when it was seen, plus the day's standing charge; it starts again at local midnight (UTC
here). Money is exact (Decimal); energy is register units × multiplier / divisor.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

from sep.clusters.general import ZIGBEE_EPOCH

CURRENCIES = {826: "£", 978: "€", 840: "$"}
UNTIL_CHANGED = 0xFFFF


@dataclasses.dataclass(frozen=True)
class ShownPrice:
    tier: int
    label: str
    rate: Decimal  # currency per kWh
    start: int  # unix seconds
    duration_min: int
    issuer_event_id: int

    @property
    def end(self) -> float:
        return float("inf") if self.duration_min == UNTIL_CHANGED else (
            self.start + 60 * self.duration_min)


def _money(raw: int, digits: int) -> Decimal:
    return Decimal(raw).scaleb(-digits)


def _unix(zcl_time: Any, now: float) -> int:
    value = int(zcl_time)
    return int(now) if value == 0 else value + ZIGBEE_EPOCH


@dataclasses.dataclass
class PriceView:
    prices: dict[int, ShownPrice] = dataclasses.field(default_factory=dict)  # by start
    currency: int | None = None
    tariff_label: str | None = None
    tariff_id: int | None = None
    standing_charge: Decimal | None = None  # per day
    tiers_in_use: int | None = None
    tier_labels: dict[int, str] = dataclasses.field(default_factory=dict)
    block_thresholds: list[int] = dataclasses.field(default_factory=list)  # register units
    threshold_scale: tuple[int, int] = (1, 1)  # the tariff's block threshold mult./divisor
    current_block: int | None = None  # 1.. (SE CurrentBlock 0x01 = block 1)
    block_period_consumption: int | None = None  # register units
    cost_day: dt.date | None = None
    cost_today: Decimal = Decimal(0)
    _last_register: int | None = None

    # -- prices ----------------------------------------------------------------------------
    def on_command(self, command_id: int, args: Any, now: float) -> str | None:
        """A Publish* command from the meter; returns a line for the display's log."""
        if command_id == 0x00:
            digits = int(args.price_trailing_digit_and_price_tier) >> 4
            price = ShownPrice(
                tier=int(args.price_trailing_digit_and_price_tier) & 0x0F,
                label=bytes(args.rate_label).decode("utf-8", errors="replace"),
                rate=_money(int(args.price), digits), start=_unix(args.start_time, now),
                duration_min=int(args.duration_in_minutes),
                issuer_event_id=int(args.issuer_event_id))
            self.currency = int(args.currency)
            known = self.prices.get(price.start) == price
            self.prices[price.start] = price
            self._forget(now)
            if known:
                return None  # the same price again (asked for, and pushed)
            return f"price from {_hhmm(price.start)}: {price.label} {self.money_text(price.rate)}/kWh"
        if command_id == 0x04:  # PublishTariffInformation
            digits = int(args.price_trailing_digit) >> 4
            self.tariff_label = bytes(args.tariff_label).decode("utf-8", errors="replace")
            self.tariff_id = int(args.issuer_tariff_id)
            self.standing_charge = _money(int(args.standing_charge), digits)
            self.tiers_in_use = int(args.number_of_price_tiers_in_use)
            self.currency = int(args.currency)
            self.threshold_scale = (int(args.block_threshold_multiplier),
                                    int(args.block_threshold_divisor) or 1)
            if not int(args.number_of_block_thresholds_in_use):
                self.block_thresholds = []
            return f"tariff {self.tariff_label!r} (id {self.tariff_id})"
        if command_id == 0x06:  # PublishBlockThresholds (one command of several, maybe)
            mult, div = self.threshold_scale
            values = [int(v) for e in args.entries for v in e.thresholds]
            if int(args.command_index) == 0:
                self.block_thresholds = []
            self.block_thresholds += [v * mult // div for v in values]
            return None
        if command_id == 0x08:  # PublishTierLabels
            for entry in args.labels:
                self.tier_labels[int(entry.tier_id)] = bytes(entry.tier_label).decode(
                    "utf-8", errors="replace")
            return None
        if command_id == 0x0E:  # CancelTariff
            return f"tariff {int(args.issuer_tariff_id)} cancelled"
        return None

    def _forget(self, now: float) -> None:
        """Drop prices that a later-starting, already-started price has replaced."""
        started = sorted(s for s in self.prices if s <= now)
        for start in started[:-1]:
            del self.prices[start]
        for start, price in list(self.prices.items()):
            if price.end <= now:
                del self.prices[start]

    def price(self, now: float) -> ShownPrice | None:
        live = [p for p in self.prices.values() if p.start <= now < p.end]
        return max(live, key=lambda p: p.start) if live else None

    def next_price(self, now: float) -> ShownPrice | None:
        later = [p for p in self.prices.values() if p.start > now]
        return min(later, key=lambda p: p.start) if later else None

    # -- cost ------------------------------------------------------------------------------
    def on_register(self, raw: int, now: float, multiplier: int, divisor: int) -> None:
        """The delivered register (raw units) as read or reported at ``now``."""
        day = dt.datetime.fromtimestamp(now, dt.UTC).date()
        if self.cost_day != day:
            self.cost_day = day
            self.cost_today = self.standing_charge or Decimal(0)
        elif self.standing_charge is not None and self.cost_today == 0:
            self.cost_today = self.standing_charge
        if self._last_register is not None and raw > self._last_register:
            price = self.price(now)
            if price is not None:
                kwh = Decimal(raw - self._last_register) * multiplier / divisor
                self.cost_today += kwh * price.rate
        self._last_register = raw

    # -- text ------------------------------------------------------------------------------
    def money_text(self, value: Decimal | None, places: int = 4) -> str:
        if value is None:
            return "--"
        symbol = CURRENCIES.get(self.currency or 0, "")
        return f"{symbol}{value.quantize(Decimal(1).scaleb(-places))}"

    def block_text(self, multiplier: int, divisor: int) -> str:
        if not self.block_thresholds or self.current_block is None:
            return "no block tariff"
        used = Decimal(self.block_period_consumption or 0) * multiplier / divisor
        blocks = len(self.block_thresholds) + 1
        text = f"block {self.current_block} of {blocks}, {used:.3f} kWh this period"
        if self.current_block <= len(self.block_thresholds):
            limit = Decimal(self.block_thresholds[self.current_block - 1]) * multiplier / divisor
            text += f", next block at {limit:.3f} kWh"
        return text


def _hhmm(unix: int) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%H:%M")
