"""What the supplier's Price server sends the meter: :meth:`PriceIngest.ingest`.

A mixin of :class:`~sep.clusters.price.PriceServer`. A Publish* (or CancelTariff) received
from the supplier upstream is checked — provider id (NOT_AUTHORIZED), ranges and lengths
(INVALID_VALUE: nothing changes), issuer event id newer than the last of its kind
(INVALID_VALUE), known tariff id (NOT_FOUND) — applied to the server's tariff and price
events, and re-published to the meter's own HAN clients. Truncated payloads raise
:class:`~sep.zcl.frames.MalformedFrame`.

Information with a later start time (block period, conversion factor, calorific value,
CO2) is held until then and applied by :meth:`~sep.clusters.price.PriceServer.tick`;
multi-command publications (PublishPriceMatrix, PublishBlockThresholds,
PublishTierLabels) are assembled command by command and applied with the last one; a
tariff with more tiers than the active one is held until its prices arrive.

The mixin keeps the state of what came from upstream; the rest (the tariff, the price
events, the payload builders, pushing frames) is the server's, declared below for the
type checker only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sep.clusters.price_payloads import (
    CANCEL_TARIFF,
    METERING_UNITS_PER_KWH,
    PUBLISH_BILLING_PERIOD,
    PUBLISH_BLOCK_PERIOD,
    PUBLISH_BLOCK_THRESHOLDS,
    PUBLISH_CALORIFIC_VALUE,
    PUBLISH_CO2_VALUE,
    PUBLISH_CONVERSION_FACTOR,
    PUBLISH_PRICE,
    PUBLISH_PRICE_MATRIX,
    PUBLISH_TARIFF_INFORMATION,
    PUBLISH_TIER_LABELS,
    THRESHOLD_DIVISOR,
    THRESHOLD_MULTIPLIER,
    zcl_to_unix,
)
from sep.meter.tariff import (
    MAX_THRESHOLDS,
    MAX_TIERS,
    TIMEBASES,
    Recurrence,
    Tariff,
    TariffError,
    Tier,
)
from sep.zcl.frames import Status, decode_schema
from sep.zcl.price import (
    MAX_RATE_LABEL,
    MAX_TIER_LABEL,
    TARIFF_TYPE_DELIVERED,
    UNUSED_U32,
    schema,
)

if TYPE_CHECKING:
    from sep.clusters.price import PriceEvent

#: the Price server's logger (log configuration for sep.clusters.price covers ingest too)
LOGGER = logging.getLogger("sep.clusters.price")


class Refused(Exception):
    """An ingested command is refused with a ZCL status."""

    def __init__(self, status: Status, why: str) -> None:
        super().__init__(why)
        self.status = status


class Duplicate(Refused):
    """The same command (issuer event id) again: applied already, answered SUCCESS."""


class PriceIngest:
    """Mixin of :class:`~sep.clusters.price.PriceServer`: applies the supplier's commands."""

    if TYPE_CHECKING:  # provided by PriceServer (and its ClusterServer base)
        tariff: Tariff
        tariff_since: int | None
        pending: tuple[Tariff, int] | None
        events: list[PriceEvent]
        _ids: dict[str, int]
        _block_start: int | None

        def push(self, command_id: int, payload: bytes) -> bytes: ...
        def _see(self, now: float) -> None: ...
        def _new_id(self, now: float) -> int: ...
        def _install_getters(self) -> None: ...
        def _refresh(self, now: float, *, force: bool = False) -> None: ...
        def _activate(self, tariff: Tariff, now: float) -> None: ...
        def _publish_tariff(self, tariff: Tariff, start: int, now: float) -> None: ...
        def _push_cancel(self, tariff: Tariff) -> bytes: ...
        def schedule_price(self, *, tier: int, unit_rate: float | Decimal | str, label: str,
                           now: float, start: int, duration_minutes: int = ...
                           ) -> PriceEvent: ...
        def set_tariff(self, tariff: Tariff, now: float, *, start: float | None = None
                       ) -> list[bytes]: ...
        def cancel_tariff(self, issuer_tariff_id: int, now: float) -> bytes: ...
        def tariff_information_payload(self, tariff: Tariff, start: int) -> bytes: ...
        def price_matrix_payloads(self, tariff: Tariff, start: int) -> list[bytes]: ...
        def block_threshold_payloads(self, tariff: Tariff, start: int) -> list[bytes]: ...
        def tier_label_payloads(self, tariff: Tariff) -> list[bytes]: ...
        def conversion_factor_payload(self) -> bytes: ...
        def calorific_value_payload(self) -> bytes: ...
        def co2_payload(self) -> bytes: ...
        def billing_period_payload(self, now: float) -> bytes: ...
        def ingest_extra(self, command_id: int, payload: bytes, now: float) -> Any: ...
        def _in_export_tariff_information(self, args: Any, now: float) -> None: ...
        def _in_generation_price(self, args: Any, start: int, duration: int) -> None: ...
        def _apply_conversion_if_due(self, now: float) -> None: ...

    def __init__(self) -> None:
        super().__init__()
        #: why upstream commands were refused (the last 50)
        self.log: list[str] = []
        self._upstream: dict[str, tuple[int, int]] = {}  # kind → (event id, command index)
        self._partial: dict[str, Any] = {}  # multi-command upstream data being assembled
        #: information to apply at a later start time: (start, kind, apply); run by tick
        self._deferred: list[tuple[int, str, Callable[[float], None]]] = []
        #: the supplier's block threshold multiplier and divisor (its PublishTariffInformation)
        self._threshold_scale = (THRESHOLD_MULTIPLIER, THRESHOLD_DIVISOR)
        self._expected_blocks: dict[int, int] = {}  # tariff id → thresholds announced
        self._staged_prices: dict[int, dict[tuple[int, int], Decimal]] = {}
        self._incomplete: set[int] = set()  # ingested tariffs still waiting for their prices
        #: tariffs the supplier sent: their current price is the supplier's PublishPrice
        #: (SE carries no TOU schedule), so taking one over keeps the supplier's prices
        self._from_supplier: set[int] = set()
        self._price_ids: dict[int, int] = {}  # the supplier's issuer event id per price start

    def ingest(self, command_id: int, payload: bytes, now: float) -> Status:
        """Apply a Publish* (or CancelTariff) from the supplier upstream; re-publish it to
        the HAN. Returns the ZCL status; raises MalformedFrame when truncated."""
        handler = {
            PUBLISH_PRICE: self._in_price, PUBLISH_BLOCK_PERIOD: self._in_block_period,
            PUBLISH_CONVERSION_FACTOR: self._in_conversion_factor,
            PUBLISH_CALORIFIC_VALUE: self._in_calorific_value,
            PUBLISH_TARIFF_INFORMATION: self._in_tariff_information,
            PUBLISH_PRICE_MATRIX: self._in_price_matrix,
            PUBLISH_BLOCK_THRESHOLDS: self._in_block_thresholds,
            PUBLISH_CO2_VALUE: self._in_co2, PUBLISH_TIER_LABELS: self._in_tier_labels,
            PUBLISH_BILLING_PERIOD: self._in_billing_period, CANCEL_TARIFF: self._in_cancel,
        }.get(command_id) or self.ingest_extra(command_id, payload, now)
        if handler is None:
            return Status.UNSUP_CLUSTER_COMMAND
        self._see(now)
        args = decode_schema(schema(command_id), payload, strict=False)
        try:
            handler(args, now)
        except Duplicate:
            return Status.SUCCESS  # the same command again (asked for, and pushed): no-op
        except Refused as exc:
            LOGGER.info("Price command 0x%02X from the supplier refused: %s", command_id, exc)
            self._note(f"refused 0x{command_id:02X}: {exc}")
            return exc.status
        except (TariffError, ValueError, OverflowError) as exc:
            LOGGER.info("Price command 0x%02X from the supplier refused: %s", command_id, exc)
            self._note(f"refused 0x{command_id:02X}: {exc}")
            return Status.INVALID_VALUE
        return Status.SUCCESS

    def _note(self, text: str) -> None:
        self.log.append(text)
        del self.log[:-50]

    def _provider(self, args: Any) -> None:
        if int(args.provider_id) != self.tariff.provider_id:
            raise Refused(Status.NOT_AUTHORIZED, f"provider id {int(args.provider_id)}")

    def _check_id(self, kind: str, event_id: int, index: int = 0) -> None:
        last = self._upstream.get(kind)
        if last is not None and (event_id, index) == last:
            raise Duplicate(Status.SUCCESS, f"issuer event id {event_id} again")
        if last is not None and (event_id, index) < last:
            raise Refused(Status.INVALID_VALUE, f"issuer event id {event_id} is not newer")

    def _commit_id(self, kind: str, event_id: int, index: int = 0) -> None:
        self._upstream[kind] = (event_id, index)

    def _when(self, value: int, now: float) -> int:
        return zcl_to_unix(int(value), now)

    def _at(self, start: int, now: float, kind: str, apply: Callable[[float], None]) -> None:
        """Apply now, or at ``start`` (tick) when that is later."""
        if start <= now:
            apply(now)
        else:
            self._deferred = [d for d in self._deferred if d[1] != kind]
            self._deferred.append((start, kind, apply))

    def _update(self, **changes: Any) -> None:
        self.tariff = dataclasses.replace(self.tariff, **changes)
        self._install_getters()

    def _in_price(self, args: Any, now: float) -> None:
        self._provider(args)
        self._apply_conversion_if_due(now)  # a price in the new currency may come first
        tariff = self.tariff
        label = bytes(args.rate_label)
        if len(label) > MAX_RATE_LABEL:
            raise Refused(Status.INVALID_VALUE, "rate label over 12 bytes")
        tier = int(args.price_trailing_digit_and_price_tier) & 0x0F
        digits = int(args.price_trailing_digit_and_price_tier) >> 4
        if not 1 <= tier <= MAX_TIERS:
            raise Refused(Status.INVALID_VALUE, f"price tier {tier}")
        if int(args.currency) != tariff.currency or int(args.unit_of_measure) != \
                tariff.unit_of_measure:
            raise Refused(Status.INVALID_VALUE, "currency or unit of measure differs")
        if int(args.price) == UNUSED_U32:
            raise Refused(Status.INVALID_VALUE, "no price")
        duration = int(args.duration_in_minutes)
        if duration == 0:
            raise Refused(Status.INVALID_VALUE, "zero duration")
        event_id = int(args.issuer_event_id)
        start = self._when(args.start_time, now)
        # Prices are events of their own (a scheduled one may arrive after a newer current
        # one): stale only against a known price for the same start.
        known = self._price_ids.get(start)
        if known == event_id:
            raise Duplicate(Status.SUCCESS, f"price {event_id} again")
        if known is not None and event_id < known:
            raise Refused(Status.INVALID_VALUE, f"issuer event id {event_id} is not newer")
        rate = Decimal(int(args.price)).scaleb(-digits)
        tariff.price_units(rate, "price")  # must be exact at our trailing digits
        text = label.decode("utf-8", errors="replace")
        if len(text.encode()) > MAX_RATE_LABEL:
            raise Refused(Status.INVALID_VALUE, "rate label is not UTF-8")
        self._in_generation_price(args, start, duration)  # checked before anything changes
        self.schedule_price(tier=tier, unit_rate=rate, label=text, now=now, start=start,
                            duration_minutes=duration)
        self._price_ids[start] = event_id
        for old in sorted(self._price_ids)[:-64]:  # the supplier's ids of recent prices only
            del self._price_ids[old]

    def _duration_type(self, value: int) -> str:
        timebase, control = value & 0x0F, value >> 4
        names = {code: name for name, code in TIMEBASES.items()}
        if timebase not in names or control > 0x2:
            raise Refused(Status.INVALID_VALUE, f"duration type 0x{value:02X}")
        return names[timebase]

    def _tariff_type(self, value: int) -> None:
        if int(value) & 0x0F != TARIFF_TYPE_DELIVERED or int(value) >> 4:
            raise Refused(Status.INVALID_VALUE, f"tariff type 0x{int(value):02X} (delivered only)")

    def _in_block_period(self, args: Any, now: float) -> None:
        self._provider(args)
        timebase = self._duration_type(int(args.block_period_duration_type))
        self._tariff_type(args.tariff_type)
        if int(args.tariff_resolution_period) > 0x02:
            raise Refused(Status.INVALID_VALUE, "tariff resolution period")
        start = self._when(args.block_period_start_time, now)
        period = Recurrence(start, int(args.block_period_duration), timebase)
        event_id = int(args.issuer_event_id)
        self._check_id("block", event_id)
        self._commit_id("block", event_id)

        def apply(when: float) -> None:
            self._update(block_period=period)
            self._block_start = None
            self._refresh(when)

        self._at(start, now, "block", apply)

    def _in_conversion_factor(self, args: Any, now: float) -> None:
        digits = int(args.conversion_factor_trailing_digit) >> 4
        value = Decimal(int(args.conversion_factor)).scaleb(-digits)
        if int(args.conversion_factor) in (0, UNUSED_U32):
            raise Refused(Status.INVALID_VALUE, "conversion factor")
        self._simple("conversion", args, now, {"conversion_factor": value},
                     PUBLISH_CONVERSION_FACTOR, self.conversion_factor_payload)

    def _in_calorific_value(self, args: Any, now: float) -> None:
        if int(args.calorific_value_unit) not in (0x01, 0x02):
            raise Refused(Status.INVALID_VALUE, "calorific value unit")
        if int(args.calorific_value) in (0, UNUSED_U32):
            raise Refused(Status.INVALID_VALUE, "calorific value")
        digits = int(args.calorific_value_trailing_digit) >> 4
        value = Decimal(int(args.calorific_value)).scaleb(-digits)
        self._simple("calorific", args, now, {"calorific_value": value,
                                              "calorific_value_unit": int(args.calorific_value_unit)},
                     PUBLISH_CALORIFIC_VALUE, self.calorific_value_payload)

    def _in_co2(self, args: Any, now: float) -> None:
        self._provider(args)
        self._tariff_type(args.tariff_type)
        if int(args.co2_unit) not in (0x01, 0x02, 0x03):
            raise Refused(Status.INVALID_VALUE, "CO2 unit")
        if int(args.co2_value) == UNUSED_U32:
            raise Refused(Status.INVALID_VALUE, "CO2 value")
        digits = int(args.co2_value_trailing_digit) >> 4
        value = Decimal(int(args.co2_value)).scaleb(-digits)
        self._simple("co2", args, now, {"co2": value, "co2_unit": int(args.co2_unit)},
                     PUBLISH_CO2_VALUE, self.co2_payload)

    def _simple(self, kind: str, args: Any, now: float, changes: dict[str, Any], command_id: int,
                payload: Callable[[], bytes]) -> None:
        event_id = int(args.issuer_event_id)
        self._check_id(kind, event_id)
        dataclasses.replace(self.tariff, **changes)  # validates (TariffError → INVALID_VALUE)
        self._commit_id(kind, event_id)

        def apply(when: float) -> None:
            self._update(**changes)
            self._ids[kind] = self._new_id(when)
            self.push(command_id, payload())

        self._at(self._when(args.start_time, now), now, kind, apply)

    def _in_billing_period(self, args: Any, now: float) -> None:
        self._provider(args)
        timebase = self._duration_type(int(args.billing_period_duration_type))
        self._tariff_type(args.tariff_type)
        start = self._when(args.billing_period_start_time, now)
        period = Recurrence(start, int(args.billing_period_duration), timebase)
        event_id = int(args.issuer_event_id)
        self._check_id("billing", event_id)
        self._commit_id("billing", event_id)
        self._update(billing_period=period)
        self.push(PUBLISH_BILLING_PERIOD, self.billing_period_payload(now))

    def _in_tariff_information(self, args: Any, now: float) -> None:
        self._provider(args)
        ttype = int(args.tariff_type_charging_scheme)
        if ttype & 0x0F == 0x1 and ttype >> 4 <= 0x2:  # the received (export) tariff
            self._in_export_tariff_information(args, now)
            return
        if ttype & 0x0F != TARIFF_TYPE_DELIVERED or ttype >> 4 > 0x2:
            raise Refused(Status.INVALID_VALUE, f"tariff type/charging scheme 0x{ttype:02X}")
        label = bytes(args.tariff_label).decode("utf-8", errors="replace")
        tiers = int(args.number_of_price_tiers_in_use)
        if not 1 <= tiers <= MAX_TIERS:
            raise Refused(Status.INVALID_VALUE, f"{tiers} price tiers")
        blocks = int(args.number_of_block_thresholds_in_use)
        if blocks > MAX_THRESHOLDS:
            raise Refused(Status.INVALID_VALUE, f"{blocks} block thresholds")
        if int(args.block_threshold_multiplier) == 0 or int(args.block_threshold_divisor) == 0:
            raise Refused(Status.INVALID_VALUE, "threshold multiplier/divisor 0")
        tariff_id = int(args.issuer_tariff_id)
        if tariff_id in (0, UNUSED_U32):
            raise Refused(Status.INVALID_VALUE, "issuer tariff id")
        event_id = int(args.issuer_event_id)
        self._check_id("tariff", event_id)
        digits = int(args.price_trailing_digit) >> 4
        standing = int(args.standing_charge)
        base = self.tariff
        old = {tier.number: tier for tier in base.tiers}
        new_tiers = tuple(old.get(n, Tier(n, f"Tier {n}", Decimal(0))) for n in range(1, tiers + 1))
        schedule = base.schedule
        if any(s.tier > tiers for day in schedule for s in day):
            schedule = tuple(tuple(dataclasses.replace(s, tier=1) if s.tier > tiers else s
                                   for s in day) for day in schedule)
        keep_blocks = blocks == len(base.block_thresholds_kwh)
        changes: dict[str, Any] = {
            "issuer_tariff_id": tariff_id, "label": label, "currency": int(args.currency),
            "unit_of_measure": int(args.unit_of_measure), "price_trailing_digits": digits,
            "tiers": new_tiers, "schedule": schedule,
            "standing_charge": Decimal(0) if standing == UNUSED_U32
            else Decimal(standing).scaleb(-digits)}
        if not keep_blocks or tiers != base.tier_count:
            changes.update(block_thresholds_kwh=(), block_prices=())
        new = dataclasses.replace(base, **changes)  # validates
        start = self._when(args.start_time, now)
        self._commit_id("tariff", event_id)
        self._from_supplier.add(tariff_id)
        self._threshold_scale = (int(args.block_threshold_multiplier),
                                 int(args.block_threshold_divisor))
        self._expected_blocks = {tariff_id: blocks}
        self._staged_prices = {}
        if tariff_id == self.tariff.issuer_tariff_id:
            for event in self.events:  # the price events must stay expressible
                new.price_units(event.rate, "price trailing digits")
            self.tariff = new
            self._install_getters()
            self._ids["tariff"] = self._new_id(now)
            self.push(PUBLISH_TARIFF_INFORMATION,
                      self.tariff_information_payload(new, self.tariff_since or int(now)))
            self._refresh(now)
        elif tiers > base.tier_count:
            # prices of the new tiers are unknown until its PublishPriceMatrix: hold it
            if self.pending is not None:
                self._push_cancel(self.pending[0])
            self.pending = (new, start)
            self._incomplete.add(tariff_id)
        else:
            self.set_tariff(new, now, start=start)

    def _target(self, tariff_id: int) -> str:
        if tariff_id == self.tariff.issuer_tariff_id:
            return "active"
        if self.pending is not None and self.pending[0].issuer_tariff_id == tariff_id:
            return "pending"
        if self.tariff.export is not None and self.tariff.export.issuer_tariff_id == tariff_id:
            return "export"
        raise Refused(Status.NOT_FOUND, f"unknown issuer tariff id {tariff_id}")

    def _target_tariff(self, which: str) -> Tariff:
        if which == "active":
            return self.tariff
        if which == "export":
            assert self.tariff.export is not None
            return self.tariff.export
        assert self.pending is not None
        return self.pending[0]

    def _replace_target(self, which: str, tariff: Tariff, now: float) -> None:
        if which == "export":
            self.tariff = dataclasses.replace(self.tariff, export=tariff)
            self._install_getters()
            self._refresh(now)
        elif which == "active":
            self.tariff = tariff
            self._install_getters()
            self._refresh(now)
        else:
            assert self.pending is not None
            self.pending = (tariff, self.pending[1])

    def _multi(self, kind: str, args: Any) -> tuple[int, bool]:
        """Check the command index of a multi-command publication; (event id, last?)."""
        index, total = int(args.command_index), int(args.total_number_of_commands)
        if total == 0 or index >= total:
            raise Refused(Status.INVALID_VALUE, f"command {index} of {total}")
        event_id = int(args.issuer_event_id)
        self._check_id(kind, event_id, index)
        if index > 0:
            got = self._partial.get(kind)
            if got is None or got[0] != event_id or got[1] != index - 1:
                raise Refused(Status.INVALID_VALUE, f"command {index} without {index - 1}")
        return event_id, index == total - 1

    def _in_price_matrix(self, args: Any, now: float) -> None:
        self._provider(args)
        tariff_id = int(args.issuer_tariff_id)
        which = self._target(tariff_id)
        tariff = self._target_tariff(which)
        kind = "export_matrix" if which == "export" else "matrix"  # ids of their own
        event_id, last = self._multi(kind, args)
        tou = int(args.sub_payload_control) & 0x01
        rates = {tier.number: tier.rate for tier in tariff.tiers}
        # block prices may come before the thresholds that say how many blocks there are
        expected = self._expected_blocks.get(tariff_id, len(tariff.block_thresholds_kwh))
        blocks = {**dict(tariff.block_prices), **self._staged_prices.get(tariff_id, {})}
        prev = self._partial.get(kind)
        if int(args.command_index) > 0 and prev is not None:
            rates, blocks = dict(prev[2]), dict(prev[3])
        nblocks = max(expected, len(tariff.block_thresholds_kwh)) + 1
        for entry in args.entries:
            price = Decimal(int(entry.price)).scaleb(-tariff.price_trailing_digits)
            tariff.price_units(price, "price")
            tb = int(entry.tier_block_id)
            if tou:
                if tb not in rates:
                    raise Refused(Status.INVALID_VALUE, f"tier {tb} not in the tariff")
                rates[tb] = price
            else:
                tier, block = tb >> 4, (tb & 0x0F) + 1
                if tier == 0 and tariff.tier_count == 1:
                    tier = 1  # block-only charging: "no tier"
                if tier not in rates or block > nblocks or nblocks == 1:
                    raise Refused(Status.INVALID_VALUE, f"tier/block 0x{tb:02X}")
                blocks[(tier, block)] = price
                if block == 1:
                    rates[tier] = price  # a block tariff's tier price is its first block's
        n = len(tariff.block_thresholds_kwh)
        complete = {(x, b) for x in rates for b in range(1, n + 2)} if n else set()
        usable = {k: v for k, v in blocks.items() if k in complete}
        new = dataclasses.replace(
            tariff, tiers=tuple(dataclasses.replace(x, rate=rates[x.number]) for x in tariff.tiers),
            block_prices=tuple(sorted(usable.items())) if n else ())  # validates
        self._commit_id(kind, event_id, int(args.command_index))
        self._partial[kind] = (event_id, int(args.command_index), rates, blocks)
        if last:
            self._partial.pop(kind, None)
            self._staged_prices[tariff_id] = {k: v for k, v in blocks.items()
                                              if k not in complete}
            self._replace_target(which, new, now)
            if tariff_id in self._incomplete and self.pending is not None:
                self._incomplete.discard(tariff_id)
                if self.pending[1] <= now:
                    self.pending = None
                    self._activate(new, now)
                else:
                    self._publish_tariff(new, self.pending[1], now)
                return
            start = self.pending[1] if which == "pending" \
                else (self.tariff_since or int(now))  # type: ignore[index]
            for payload in self.price_matrix_payloads(new, start):
                self.push(PUBLISH_PRICE_MATRIX, payload)

    def _in_block_thresholds(self, args: Any, now: float) -> None:
        self._provider(args)
        which = self._target(int(args.issuer_tariff_id))
        if which == "export":
            raise Refused(Status.INVALID_VALUE, "export blocks come from the tariff file")
        tariff = self._target_tariff(which)
        event_id, last = self._multi("thresholds", args)
        prev = self._partial.get("thresholds")
        per_tier: dict[int, list[int]] = {}
        if int(args.command_index) > 0 and prev is not None:
            per_tier = {k: list(v) for k, v in prev[2].items()}
        common = int(args.sub_payload_control) & 0x01
        for entry in args.entries:
            tier = 0 if common else int(entry.tier_number_of_thresholds) >> 4
            per_tier.setdefault(tier, []).extend(int(v) for v in entry.thresholds)
        lists = list(per_tier.values())
        if any(len(v) > MAX_THRESHOLDS for v in lists) or any(v != lists[0] for v in lists):
            raise Refused(Status.INVALID_VALUE, "only common thresholds (≤ 15) are supported")
        self._commit_id("thresholds", event_id, int(args.command_index))
        self._partial["thresholds"] = (event_id, int(args.command_index), per_tier)
        if not last:
            return
        self._partial.pop("thresholds", None)
        raw = lists[0] if lists else []
        mult, div = self._threshold_scale
        # x multiplier / divisor gives Metering register units (Wh here), then kWh
        kwh = tuple(Decimal(v * mult) / Decimal(div * METERING_UNITS_PER_KWH) for v in raw)
        old_prices = {**dict(tariff.block_prices),
                      **self._staged_prices.pop(int(args.issuer_tariff_id), {})}
        prices = {(x.number, b): old_prices.get((x.number, b), x.rate)
                  for x in tariff.tiers for b in range(1, len(kwh) + 2)} if kwh else {}
        period = tariff.block_period or Recurrence(946_684_800, 1, "days")
        new = dataclasses.replace(tariff, block_thresholds_kwh=kwh,
                                  block_prices=tuple(sorted(prices.items())),
                                  block_period=period if kwh else tariff.block_period)
        self._replace_target(which, new, now)
        if kwh:
            start = (self.tariff_since or int(now)) if which == "active" else self.pending[1]  # type: ignore[index]
            for payload in self.block_threshold_payloads(new, start):
                self.push(PUBLISH_BLOCK_THRESHOLDS, payload)
            for payload in self.price_matrix_payloads(new, start):  # now with its blocks
                self.push(PUBLISH_PRICE_MATRIX, payload)
            if which == "active":
                self._block_start = None
                self._refresh(now)

    def _in_tier_labels(self, args: Any, now: float) -> None:
        self._provider(args)
        which = self._target(int(args.issuer_tariff_id))
        tariff = self._target_tariff(which)
        kind = "export_labels" if which == "export" else "labels"
        event_id, last = self._multi(kind, args)
        labels = {x.number: x.label for x in tariff.tiers}
        prev = self._partial.get(kind)
        if int(args.command_index) > 0 and prev is not None:
            labels = dict(prev[2])
        for entry in args.labels:
            raw = bytes(entry.tier_label)
            if int(entry.tier_id) not in labels or len(raw) > MAX_TIER_LABEL:
                raise Refused(Status.INVALID_VALUE, f"tier {int(entry.tier_id)} label")
            text = raw.decode("utf-8", errors="replace")
            if len(text.encode()) > MAX_TIER_LABEL:
                raise Refused(Status.INVALID_VALUE, "tier label is not UTF-8")
            labels[int(entry.tier_id)] = text
        new = dataclasses.replace(tariff, tiers=tuple(dataclasses.replace(x, label=labels[x.number])
                                                      for x in tariff.tiers))
        self._commit_id(kind, event_id, int(args.command_index))
        self._partial[kind] = (event_id, int(args.command_index), labels)
        if last:
            self._partial.pop(kind, None)
            self._replace_target(which, new, now)
            for payload in self.tier_label_payloads(new):
                self.push(PUBLISH_TIER_LABELS, payload)

    def _in_cancel(self, args: Any, now: float) -> None:
        self._provider(args)
        self._tariff_type(args.tariff_type)
        which = self._target(int(args.issuer_tariff_id))
        if which in ("active", "export"):
            raise Refused(Status.INVALID_VALUE, "the active tariff cannot be cancelled")
        self.cancel_tariff(int(args.issuer_tariff_id), now)
