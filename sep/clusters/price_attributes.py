"""The Price server's attributes (SE 1.4 D.4.2.2), a mixin of
:class:`~sep.clusters.price.PriceServer`: getters installed from the tariff in force (and
again whenever it, the bills or the credit payments change).

Served: the tier labels, block thresholds and block period, the commodity set (commodity
type, standing charge, conversion factor, calorific value), the block prices, CPP1/CPP2
prices, the tariff information set, CO2, the billing period set with the last consolidated
bill, the credit payment set, and the Received sets of the export tariff
(:mod:`sep.clusters.price_export`). An attribute the tariff has no value for is not
served (UNSUPPORTED_ATTRIBUTE, and Discover Attributes leaves it out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zigpy.types as t

from sep.clusters.general import to_zcl_time
from sep.clusters.price_payloads import (
    THRESHOLD_DIVISOR,
    THRESHOLD_MULTIPLIER,
    TIER_BLOCK_MODE_ACTIVE_BLOCK,
    TIER_BLOCK_MODE_UNUSED,
)
from sep.meter.tariff import Recurrence, Tariff, scaled

if TYPE_CHECKING:
    from sep.clusters.price_extras import ConsolidatedBill, CreditPayment


class PriceAttributes:
    if TYPE_CHECKING:  # provided by PriceServer and its other mixins
        tariff: Tariff
        getters: dict[int, Callable[[], Any]]
        credit_payments: list[CreditPayment]
        _now: float | None

        def last_bill(self, tariff_type: int) -> ConsolidatedBill | None: ...
        def _install_export_getters(self) -> None: ...

    # -- attributes ----------------------------------------------------------------------------
    def _install_getters(self) -> None:
        tariff = self.tariff
        self.getters = {}
        g = self.getters
        for tier in tariff.tiers:
            g[tier.number - 1] = (lambda lab: lambda: t.LVBytes(lab.encode()))(tier.label)
        for i, wh in enumerate(tariff.thresholds_wh):
            g[0x0100 + i] = (lambda v: lambda: v)(wh)
        if tariff.block_thresholds_kwh:
            g[0x010F] = lambda: len(self.tariff.block_thresholds_kwh)
            g[0x0202] = lambda: THRESHOLD_MULTIPLIER
            g[0x0203] = lambda: THRESHOLD_DIVISOR
            single = tariff.charging_scheme == 0x1
            for (tier, block), price in tariff.block_prices:
                attr = 0x0400 + ((0 if single else tier) << 4) + block - 1
                g[attr] = (lambda v: lambda: v)(tariff.price_units(price))
        if tariff.block_period is not None:
            g[0x0200] = lambda: to_zcl_time(self._period_now(self.tariff.block_period)[0])
            g[0x0201] = lambda: self._period_minutes(self.tariff.block_period)
            g[0x0204] = lambda: self.tariff.block_period.duration_type  # type: ignore[union-attr]
        g[0x0300] = lambda: self.tariff.commodity_type
        g[0x0301] = lambda: self.tariff.price_units(self.tariff.standing_charge)
        g[0x0302] = lambda: scaled(self.tariff.conversion_factor)[0]
        g[0x0303] = lambda: scaled(self.tariff.conversion_factor)[1] << 4
        if tariff.calorific_value is not None:
            g[0x0304] = lambda: scaled(self.tariff.calorific_value)[0]  # type: ignore[arg-type]
            g[0x0305] = lambda: self.tariff.calorific_value_unit
            g[0x0306] = lambda: scaled(self.tariff.calorific_value)[1] << 4  # type: ignore[arg-type]
        g[0x0610] = lambda: t.LVBytes(self.tariff.label.encode())
        g[0x0611] = lambda: self.tariff.tier_count
        g[0x0612] = lambda: len(self.tariff.block_thresholds_kwh)
        g[0x0613] = lambda: (TIER_BLOCK_MODE_ACTIVE_BLOCK if self.tariff.block_thresholds_kwh
                             else TIER_BLOCK_MODE_UNUSED)
        g[0x0615] = lambda: self.tariff.unit_of_measure
        g[0x0616] = lambda: self.tariff.currency
        g[0x0617] = lambda: self.tariff.price_trailing_digits << 4
        g[0x0619] = lambda: 0x00
        if tariff.co2 is not None:
            g[0x0620] = lambda: scaled(self.tariff.co2)[0]  # type: ignore[arg-type]
            g[0x0621] = lambda: self.tariff.co2_unit
            g[0x0622] = lambda: scaled(self.tariff.co2)[1] << 4  # type: ignore[arg-type]
        if tariff.billing_period is not None:
            g[0x0700] = lambda: to_zcl_time(self._period_now(self.tariff.billing_period)[0])
            g[0x0701] = lambda: self._period_minutes(self.tariff.billing_period)
            g[0x0702] = lambda: to_zcl_time(self._last_period(self.tariff.billing_period)[0])
            g[0x0703] = lambda: self._period_minutes(self.tariff.billing_period, last=True)
        for i, rate in enumerate(tariff.cpp_rates):  # CPP1Price, CPP2Price
            g[0x05FE + i] = (lambda v: lambda: v)(tariff.price_units(rate))
        self._install_extra_getters()
        self._install_export_getters()

    def _install_extra_getters(self) -> None:
        """LastBillingPeriodConsolidatedBill (delivered, received) and the Credit Payment set:
        served once there is one."""
        g = self.getters
        for attr, ttype in ((0x0704, 0), (0x8704, 1)):
            if self.last_bill(ttype) is not None:
                g[attr] = (lambda k: lambda: self.last_bill(k).amount)(ttype)  # type: ignore[union-attr]
        if self.credit_payments:
            latest = lambda: self.credit_payments[-1]  # noqa: E731
            g[0x0800] = lambda: to_zcl_time(latest().due_date)
            g[0x0801] = lambda: latest().status
            g[0x0802] = lambda: min(latest().overdue_amount, 0x7FFFFFFF)
            for n in range(1, 6):
                def rec(n: int = n) -> Any:
                    return self.credit_payments[-n]
                if len(self.credit_payments) >= n:
                    g[0x0800 + 0x10 * n] = (lambda r: lambda: r().payment)(rec)
                    g[0x0801 + 0x10 * n] = (lambda r: lambda: to_zcl_time(r().payment_date))(rec)
                    g[0x0802 + 0x10 * n] = (lambda r: lambda: t.LVBytes(r().ref))(rec)

    def _period_now(self, period: Recurrence | None) -> tuple[int, int]:
        assert period is not None
        return period.period(self._now if self._now is not None else period.start)

    def _last_period(self, period: Recurrence | None) -> tuple[int, int]:
        start, _ = self._period_now(period)
        assert period is not None
        return period.period(start - 1)

    def _period_minutes(self, period: Recurrence | None, *, last: bool = False) -> int:
        start, end = self._last_period(period) if last else self._period_now(period)
        return min(0xFFFFFF, (end - start) // 60)

