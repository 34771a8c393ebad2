"""Block tariff registers (SE 1.4 D.3.2.2.1 block period attributes, D.3.2.2.8 block
information set), sans-IO.

A block period starts at a time with a list of thresholds (Wh, cumulative from the start
of the period, strictly increasing, at most 15): consumption in the period up to the
first threshold is block 1, from there to the second block 2, ..., above the last one
block ``len(thresholds) + 1``. Energy that crosses a threshold between two readings is
split at the threshold. Each (tier, block) keeps a summation that only grows, like the
tier registers: tier 0 ("no tier") for a block-only tariff, else the active TOU tier.

An empty threshold list ends the block tariff: the summations are kept but not served.
"""

from __future__ import annotations

from typing import Any

MAX_THRESHOLDS = 15  # SE: up to 15 block thresholds, 16 blocks
MAX_BLOCK_TIER = 15


class BlockRegisters:
    def __init__(self) -> None:
        self.thresholds: list[int] = []
        self.tiered = False
        self.period_start: int | None = None
        self.period_delivered = 0  # CurrentBlockPeriodConsumptionDelivered
        self.previous_period_delivered = 0  # PreviousBlockPeriodConsumptionDelivered
        self.summations: dict[tuple[int, int], int] = {}  # (tier 0..15, block 1..16) -> Wh
        self.last_switch: int | None = None  # LastBlockSwitchTime

    @property
    def active(self) -> bool:
        return bool(self.thresholds)

    @property
    def blocks_in_use(self) -> int:
        return len(self.thresholds) + 1 if self.thresholds else 0

    def start_period(self, start: int, thresholds: list[int], *, tiered: bool = False) -> None:
        th = [int(x) for x in thresholds]
        if len(th) > MAX_THRESHOLDS:
            raise ValueError(f"at most {MAX_THRESHOLDS} block thresholds")
        if any(x <= 0 for x in th) or any(b <= a for a, b in zip(th, th[1:], strict=False)):
            raise ValueError("block thresholds must be positive and strictly increasing")
        if th and self.period_start == int(start) and self.tiered == tiered:
            self.thresholds = th  # the same period told again (a restart, a re-publish)
            return
        if self.period_start is not None:
            self.previous_period_delivered = self.period_delivered
        self.period_delivered = 0
        self.thresholds = th
        self.tiered = tiered
        self.period_start = int(start) if th else None
        self.last_switch = int(start) if th else None

    def state(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds, "tiered": self.tiered, "start": self.period_start,
                "period": self.period_delivered, "previous": self.previous_period_delivered,
                "switch": self.last_switch,
                "summations": [[k[0], k[1], v] for k, v in sorted(self.summations.items())]}

    def restore(self, state: dict[str, Any]) -> None:
        self.thresholds = [int(x) for x in state["thresholds"]]
        self.tiered = bool(state["tiered"])
        self.period_start = None if state["start"] is None else int(state["start"])
        self.period_delivered = int(state["period"])
        self.previous_period_delivered = int(state["previous"])
        self.last_switch = None if state["switch"] is None else int(state["switch"])
        self.summations = {(int(a), int(b)): int(v) for a, b, v in state["summations"]}

    def current_block(self) -> int:
        """1-based block the next Wh falls in (0: no block tariff)."""
        if not self.thresholds:
            return 0
        return 1 + sum(1 for x in self.thresholds if self.period_delivered >= x)

    def tier_index(self, active_tier: int) -> int:
        return min(max(active_tier, 1), MAX_BLOCK_TIER) if self.tiered else 0

    def add(self, t: int, delivered_wh: int, active_tier: int) -> dict[tuple[int, int], int]:
        """Book energy; returns how it split over (tier, block)."""
        split: dict[tuple[int, int], int] = {}
        if not self.thresholds or delivered_wh <= 0:
            return split
        if self.period_start is not None and t < self.period_start:
            return split  # energy from before the block period started belongs to no block
        tier = self.tier_index(active_tier)
        left = delivered_wh
        while left > 0:
            block = self.current_block()
            room = (self.thresholds[block - 1] - self.period_delivered
                    if block <= len(self.thresholds) else left)
            take = min(left, room)
            key = (tier, block)
            self.summations[key] = self.summations.get(key, 0) + take
            split[key] = split.get(key, 0) + take
            self.period_delivered += take
            left -= take
            if self.current_block() != block:
                self.last_switch = t
        return split

    def summation(self, tier: int, block: int) -> int:
        return self.summations.get((tier, block), 0)

    def served(self, tier: int, block: int, tiers_in_use: int) -> bool:
        """Whether CurrentTier<tier>Block<block>SummationDelivered is served now."""
        if not self.thresholds or not 1 <= block <= self.blocks_in_use:
            return False
        return (1 <= tier <= min(tiers_in_use, MAX_BLOCK_TIER)) if self.tiered else tier == 0
