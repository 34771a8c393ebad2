"""The received (export) tariff of the Price server (SE 1.4 tariff type 1, "Received
Tariff"), a mixin of :class:`~sep.clusters.price.PriceServer`.

The export tariff is the tariff file's ``[export]`` table (``Tariff.export``): its own
tiers, schedule and blocks, with the import tariff's provider, currency and trailing
digits. What the HAN sees of it:

- PublishPrice carries the export price in force as Generation Price, with Generation
  Tier and Number of Generation Tiers (SE 1.1/1.2 fields); a change of export tier is a
  change of price (a new PublishPrice);
- PublishTariffInformation with tariff type 1 (pushed with the import tariff, answered to
  GetTariffInformation with tariff type 1 or 2), and PublishPriceMatrix, PublishTierLabels,
  PublishBlockThresholds asked for by the export tariff's issuer tariff id;
- its block periods (PublishBlockPeriod with tariff type 1; GetBlockPeriods with tariff
  type 1) and the Received attribute sets (0x8000 + the delivered set's ids: tier labels,
  block thresholds, block period, block prices, tariff information);
- the Metering server books exported energy to the export tier (``on_export_tier``) and its
  received block registers follow the export block periods (``on_export_block_period``).

From the supplier: PublishTariffInformation with tariff type 1 defines (or updates) the
export tariff — its tiers priced 0 until the PublishPriceMatrix for its id arrives — and a
PublishPrice whose Generation Price is set overrides the export price for that price's
time (SE carries no TOU schedule, for export as for import). Export blocks come only from a
tariff file (an ingested PublishBlockThresholds for the export tariff is INVALID_VALUE).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import zigpy.types as t

from sep.clusters.general import to_zcl_time
from sep.clusters.price_ingest import Refused
from sep.clusters.price_payloads import (
    PUBLISH_BLOCK_PERIOD,
    PUBLISH_TARIFF_INFORMATION,
    TIER_BLOCK_MODE_ACTIVE_BLOCK,
    TIER_BLOCK_MODE_UNUSED,
)
from sep.clusters.price_payloads import block_period_payload as _block_period_payload
from sep.clusters.price_payloads import tariff_information_payload as _tariff_information
from sep.meter.tariff import MAX_TIERS, Tariff, Tier
from sep.zcl.frames import Status
from sep.zcl.price import TARIFF_TYPE_RECEIVED, UNUSED_U32


@dataclasses.dataclass(frozen=True)
class ExportOverride:
    """The supplier's export price for a time (its PublishPrice's Generation Price)."""

    start: int
    end: float
    tier: int
    rate: Decimal


class PriceExport:
    """Mixin of :class:`~sep.clusters.price.PriceServer` (see the module docstring)."""

    if TYPE_CHECKING:  # provided by PriceServer and its other mixins
        tariff: Tariff
        getters: dict[int, Callable[[], Any]]
        require_ack: bool
        _now: float | None

        def push(self, command_id: int, payload: bytes, *,
                 dst: tuple[int, int] | None = None) -> bytes: ...
        def _tariff_event(self, tariff: Tariff) -> int: ...
        def _new_id(self, now: float) -> int: ...
        def _install_getters(self) -> None: ...
        def _changed(self) -> None: ...
        def _check_id(self, kind: str, event_id: int, index: int = 0) -> None: ...
        def _commit_id(self, kind: str, event_id: int, index: int = 0) -> None: ...
        def _provider(self, args: Any) -> None: ...

    def _init_export(self) -> None:
        self.on_export_tier: Callable[[int | None], None] = lambda tier: None
        self.on_export_block_period: Callable[[int, list[int]], None] = \
            lambda start, thresholds: None
        self.export_overrides: list[ExportOverride] = []
        self._export_tier: int | None = None
        self._export_block_start: int | None = None
        self._export_blocks_on = False

    @property
    def export_tariff(self) -> Tariff | None:
        return self.tariff.export

    def export_price_at(self, t: float) -> tuple[int, Decimal] | None:
        """(tier, rate) of the export tariff at ``t`` (None: no export tariff)."""
        ex = self.tariff.export
        if ex is None:
            return None
        live = [o for o in self.export_overrides if o.start <= t < o.end]
        if live:
            o = max(live, key=lambda o: o.start)
            return o.tier, o.rate
        tier = ex.tier_at(t)
        return tier, ex.tier(tier).rate

    def current_export_rate(self) -> Decimal | None:
        price = self.export_price_at(self._now) if self._now is not None else None
        return None if price is None else price[1]

    def export_generation(self, t: float) -> tuple[int, int, int] | None:
        """What PublishPrice says of export at ``t``: (tier, price on the air, tiers)."""
        price = self.export_price_at(t)
        ex = self.tariff.export
        if price is None or ex is None:
            return None
        tier, rate = price
        return tier, ex.price_units(rate), ex.tier_count

    def export_key(self, t: float) -> tuple[Any, ...]:
        price = self.export_price_at(t)
        return () if price is None else price

    def export_change_points(self, start: float, end: float) -> set[int]:
        ex = self.tariff.export
        if ex is None:
            return set()
        points = set(ex.boundaries(start, end))
        for o in self.export_overrides:
            for p in (o.start, o.end):
                if start < p <= end and p != float("inf"):
                    points.add(int(p))
        return points

    def export_tier_start(self, t: float) -> int:
        ex = self.tariff.export
        if ex is None:
            return 0
        live = [o for o in self.export_overrides if o.start <= t < o.end]
        return max(o.start for o in live) if live else ex.tier_start(t)

    def _refresh_export(self, now: float) -> None:
        """Tell the Metering server the export tier and block period in force."""
        price = self.export_price_at(now)
        tier = None if price is None else price[0]
        if tier != self._export_tier:
            self._export_tier = tier
            self.on_export_tier(tier)
        ex = self.tariff.export
        period = None if ex is None else ex.block_period
        if ex is not None and ex.block_thresholds_kwh and period is not None:
            start, _ = period.period(now)
            if start != self._export_block_start:
                self._export_block_start = start
                self._export_blocks_on = True
                self.on_export_block_period(start, ex.thresholds_wh)
                self.push(PUBLISH_BLOCK_PERIOD, self.export_block_period_payload(start))
        elif self._export_blocks_on:
            self._export_blocks_on = False
            self._export_block_start = None
            self.on_export_block_period(int(now), [])

    # -- payloads -----------------------------------------------------------------------
    def export_tariff_information_payload(self, start: int) -> bytes:
        ex = self.tariff.export
        assert ex is not None
        return _tariff_information(ex, start, self._tariff_event(ex),
                                   tariff_type=TARIFF_TYPE_RECEIVED)

    def export_block_period_payload(self, start: int) -> bytes:
        ex = self.tariff.export
        assert ex is not None
        return _block_period_payload(ex, start, require_ack=self.require_ack,
                                     tariff_type=TARIFF_TYPE_RECEIVED)

    # -- attributes: the Received sets ---------------------------------------------------
    def _install_export_getters(self) -> None:
        ex = self.tariff.export
        if ex is None:
            return
        g = self.getters

        def export() -> Tariff:
            assert self.tariff.export is not None
            return self.tariff.export

        for tier in ex.tiers:
            g[0x8000 + tier.number - 1] = (lambda n: lambda: t.LVBytes(
                export().tier(n).label.encode()))(tier.number)
        g[0x8610] = lambda: t.LVBytes(export().label.encode())
        g[0x8611] = lambda: export().tier_count
        g[0x8612] = lambda: len(export().block_thresholds_kwh)
        g[0x8613] = lambda: (TIER_BLOCK_MODE_ACTIVE_BLOCK if export().block_thresholds_kwh
                             else TIER_BLOCK_MODE_UNUSED)
        g[0x8615] = lambda: 0x00
        for i, wh in enumerate(ex.thresholds_wh):
            g[0x8100 + i] = (lambda v: lambda: v)(wh)
        if ex.block_thresholds_kwh and ex.block_period is not None:
            period = ex.block_period
            g[0x8200] = lambda: to_zcl_time(period.period(self._now or period.start)[0])
            g[0x8201] = lambda: min(0xFFFFFF, (lambda p: (p[1] - p[0]) // 60)(
                period.period(self._now or period.start)))
            g[0x8202] = lambda: 1
            g[0x8203] = lambda: 1
            single = ex.charging_scheme == 0x1
            for (tier_n, block), price in ex.block_prices:
                attr = 0x8400 + ((0 if single else tier_n) << 4) + block - 1
                g[attr] = (lambda v: lambda: v)(ex.price_units(price))

    # -- from the supplier -----------------------------------------------------------------
    def _in_export_tariff_information(self, args: Any, now: float) -> None:
        """A PublishTariffInformation with tariff type 1: the supplier's export tariff."""
        if int(args.number_of_block_thresholds_in_use):
            raise Refused(Status.INVALID_VALUE, "export blocks come from the tariff file")
        tiers = int(args.number_of_price_tiers_in_use)
        if not 1 <= tiers <= MAX_TIERS:
            raise Refused(Status.INVALID_VALUE, f"{tiers} export tiers")
        tariff_id = int(args.issuer_tariff_id)
        if tariff_id in (0, UNUSED_U32) or tariff_id == self.tariff.issuer_tariff_id:
            raise Refused(Status.INVALID_VALUE, "export issuer tariff id")
        if int(args.currency) != self.tariff.currency or \
                int(args.price_trailing_digit) >> 4 != self.tariff.price_trailing_digits:
            raise Refused(Status.INVALID_VALUE, "an export tariff in another currency")
        event_id = int(args.issuer_event_id)
        self._check_id("export_tariff", event_id)
        old = self.tariff.export
        known = {x.number: x for x in old.tiers} if old is not None else {}
        new = Tariff(
            provider_id=self.tariff.provider_id, issuer_tariff_id=tariff_id,
            label=bytes(args.tariff_label).decode("utf-8", errors="replace"),
            currency=self.tariff.currency,
            price_trailing_digits=self.tariff.price_trailing_digits,
            unit_of_measure=self.tariff.unit_of_measure, timezone=self.tariff.timezone,
            tiers=tuple(known.get(n, Tier(n, f"Export {n}", Decimal(0)))
                        for n in range(1, tiers + 1)))
        self._commit_id("export_tariff", event_id)
        self.tariff = dataclasses.replace(self.tariff, export=new)
        self._install_getters()
        self._changed()
        self.push(PUBLISH_TARIFF_INFORMATION, self.export_tariff_information_payload(int(now)))

    def _in_generation_price(self, args: Any, start: int, duration: int) -> None:
        """The export price a supplier's PublishPrice carries, if any."""
        price = getattr(args, "generation_price", None)
        ex = self.tariff.export
        if price is None or int(price) == UNUSED_U32 or ex is None:
            return
        tier = int(args.generation_tier) if args.generation_tier is not None else 1
        if not 1 <= tier <= ex.tier_count:
            raise Refused(Status.INVALID_VALUE, f"generation tier {tier}")
        digits = int(args.price_trailing_digit_and_price_tier) >> 4
        rate = Decimal(int(price)).scaleb(-digits)
        ex.price_units(rate, "generation price")
        end = float("inf") if duration == 0xFFFF else start + 60 * duration
        self.export_overrides = [o for o in self.export_overrides if o.start != start]
        self.export_overrides.append(ExportOverride(start, end, tier, rate))
        self.export_overrides.sort(key=lambda o: o.start)
        del self.export_overrides[:-16]
