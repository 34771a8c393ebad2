"""Price server (SE 1.4 D.4), sans-IO: the tariff, its TOU prices, blocks and the rest.

The current price comes from the tariff's TOU schedule, unless a price event (from the
local API — :meth:`PriceServer.publish`, :meth:`PriceServer.schedule_price` — or from the
supplier upstream, :meth:`PriceServer.ingest`) is in force. :meth:`PriceServer.tick` turns
every change of price (a schedule boundary, a scheduled event starting or ending) into a
PublishPrice push and an ``on_tier`` call, and every new block period into an
``on_block_period(start_unix, thresholds_wh)`` call and a PublishBlockPeriod push.

Issuer event ids are ZCL UTC seconds: a TOU period's id is the time it began, a price
event's id the time it was issued (bumped to stay strictly increasing), so a HAN client
always sees newer ids for newer information.

Client requests and what they get:

- GetCurrentPrice → PublishPrice. Command options bit 0 (rx-on-when-idle) set: the client is
  sent unsolicited pushes; clear: it is not (a sleepy client polls).
- GetScheduledPrices(start, n) → a PublishPrice for each price in force at or after start
  (the current one included; n = 0 means all, within the next 48 hours), else NOT_FOUND.
- PriceAcknowledgement → recorded in :attr:`PriceServer.acks`; NOT_FOUND for an event id this
  server never published.
- GetBlockPeriods → PublishBlockPeriod (NOT_FOUND without blocks); GetConversionFactor,
  GetCalorificValue, GetCO2Value, GetBillingPeriod, GetTariffInformation → their Publish*
  (NOT_FOUND when the tariff has no such value or nothing is as new as asked for).
- GetPriceMatrix / GetBlockThresholds / GetTierLabels(issuer tariff id) → the Publish*,
  split over several frames when it does not fit :data:`~sep.zcl.price.MAX_PAYLOAD`;
  NOT_FOUND for a tariff id that is neither the active nor the scheduled tariff.
- GetTariffCancellation → the last CancelTariff sent, else NOT_FOUND.
- A reserved value in a request field (tariff type) → INVALID_FIELD (ZCL r8 2.5.3);
  a truncated payload → MALFORMED_COMMAND (the base class).

What the supplier's Price server sends the meter (:meth:`PriceServer.ingest`) is checked
(provider id, ranges, issuer event ids, tariff ids), applied, and re-published to the
meter's own HAN clients; see :mod:`sep.clusters.price_ingest`.

Run-time tariff change (:meth:`PriceServer.set_tariff`): a tariff effective now replaces
the active one, and PublishTariffInformation, PublishPriceMatrix, PublishBlockThresholds,
PublishTierLabels and PublishPrice go out (SE 1.4 recommends superseding a tariff over
cancelling it); a tariff with a later start is scheduled, and a scheduled tariff that is
replaced or withdrawn (:meth:`PriceServer.cancel_tariff`) is sent a CancelTariff.

This module holds the server's state, its local API and its answers to the HAN clients'
commands. The Publish* payloads are built by the pure functions of
:mod:`sep.clusters.price_payloads` (which also defines the command ids and
:class:`CurrentPrice`, re-exported here); the attributes are in
:mod:`sep.clusters.price_attributes`; consolidated bills, CPP events, credit payments and
currency conversion in :mod:`sep.clusters.price_extras`; the received (export) tariff in
:mod:`sep.clusters.price_export`; :meth:`PriceServer.ingest` comes from the
:class:`~sep.clusters.price_ingest.PriceIngest` mixin. What the store keeps:
:meth:`PriceServer.persisted_state`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from sep.clusters import price_payloads as payloads
from sep.clusters.base import ClusterServer
from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.clusters.price_attributes import PriceAttributes
from sep.clusters.price_export import ExportOverride, PriceExport
from sep.clusters.price_extras import PriceExtras
from sep.clusters.price_ingest import PriceIngest
from sep.clusters.price_ingest import Refused as Refused  # re-exported
from sep.clusters.price_payloads import (
    CANCEL_TARIFF,
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
    UNTIL_CHANGED,
    CurrentPrice,
    zcl_to_unix,
)
from sep.meter.tariff import (
    DEFAULT_TARIFF,
    MAX_TIERS,
    Recurrence,
    Tariff,
    tariff_from_dict,
    tariff_to_dict,
)
from sep.zcl.frames import MalformedFrame, Request, Status, build_frame, response_header
from sep.zcl.price import (
    MAX_RATE_LABEL,
    RX_ON_WHEN_IDLE,
    TARIFF_TYPE_DELIVERED,
    TARIFF_TYPE_RECEIVED,
    Price,
)

HORIZON = 48 * 3600  # how far ahead GetScheduledPrices and next_price look
MAX_SCHEDULED = 16  # PublishPrice frames for one GetScheduledPrices
MAX_EVENTS = 16  # price events kept (SE asks for at least 5)
NOT_SPECIFIED_ID = 0xFFFFFFFF


@dataclasses.dataclass
class PriceEvent:
    """A price that overrides the TOU schedule from ``start`` for ``duration_min``."""

    issuer_event_id: int
    start: int
    duration_min: int
    tier: int
    rate: Decimal
    label: str

    @property
    def end(self) -> float:
        return math.inf if self.duration_min == UNTIL_CHANGED else self.start + 60 * self.duration_min

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


class PriceServer(PriceAttributes, PriceExport, PriceExtras, PriceIngest, ClusterServer):
    cluster = Price
    #: every Publish* and CancelTariff (0x00..0x0E)
    generated = frozenset(range(0x0F))
    #: Configure Reporting is accepted for the attributes that change while the meter runs
    #: (SE 1.4 gives the Price attributes read-only access and leaves reporting to the
    #: server; ZCL r8 2.5.7): tier labels, the block period, standing charge, conversion
    #: factor and calorific value, CPP prices, CO2, the billing period and its consolidated
    #: bill, the credit payment status, and the received tariff's label and tiers in use.
    reportable = frozenset({*range(0x0000, 0x000F), 0x0200, 0x0201, 0x0301, 0x0302, 0x0304,
                            0x05FE, 0x05FF, 0x0610, 0x0611, 0x0620, 0x0700, 0x0701, 0x0702,
                            0x0704, 0x0800, 0x0801, 0x0802, 0x8610, 0x8611, 0x8704})

    def __init__(self, *, tariff: Tariff | None = None, provider_id: int | None = None,
                 tiers: int | None = None, on_tier: Callable[[int], None] | None = None,
                 on_block_period: Callable[[int, list[int]], None] | None = None,
                 require_ack: bool = False) -> None:
        """``tiers`` is accepted for compatibility and ignored: the tariff says how many."""
        super().__init__()
        tariff = tariff or DEFAULT_TARIFF
        if provider_id is not None:
            tariff = dataclasses.replace(tariff, provider_id=provider_id)
        self.tariff = tariff
        self.on_tier = on_tier or (lambda tier: None)
        self.on_block_period = on_block_period or (lambda start, thresholds: None)
        self.require_ack = require_ack
        self.tariff_since: int | None = None  # when the active tariff took over (first tick)
        self.pending: tuple[Tariff, int] | None = None  # a scheduled tariff and its start
        self.events: list[PriceEvent] = []
        self.acks: list[dict[str, Any]] = []
        self._current: CurrentPrice | None = None
        self._now: float | None = None
        self._last_id = 0
        self._resume = 0  # the end of the latest price event dropped from the list
        self._ids: dict[str, int] = {}  # issuer event ids of the tariff's other information
        self._issued: collections.deque[int] = collections.deque(maxlen=64)
        self._block_start: int | None = None
        self._blocks_on = False  # the Metering block registers were told of a period
        self._cancelled: bytes | None = None  # the last CancelTariff payload
        self._sleepy: set[tuple[int, int]] = set()
        self._tariff_events: dict[int, int] = {}  # issuer tariff id → its publication's id
        self.commands.update({
            0x00: self._get_current_price, 0x01: self._get_scheduled_prices,
            0x02: self._price_acknowledgement, 0x03: self._get_block_periods,
            0x04: self._get_conversion_factor, 0x05: self._get_calorific_value,
            0x06: self._get_tariff_information, 0x07: self._get_price_matrix,
            0x08: self._get_block_thresholds, 0x09: self._get_co2_value,
            0x0A: self._get_tier_labels, 0x0B: self._get_billing_period,
            0x10: self._get_tariff_cancellation,
        })
        #: told after every change of what the store keeps (events, bills, CPP ...)
        self.on_change: Callable[[], None] | None = None
        self._init_extras()
        self._init_export()
        self._install_getters()

    # -- state ---------------------------------------------------------------------------------
    @property
    def current(self) -> CurrentPrice | None:
        """The price last made current (None until the server has seen the time)."""
        return self._current

    @property
    def provider_id(self) -> int:
        return self.tariff.provider_id

    @property
    def standing_charge(self) -> Decimal:
        """The active tariff's daily standing charge (currency per day)."""
        return self.tariff.standing_charge

    # -- what billing needs (sep.meter.billing.PriceSource) ------------------------------------
    def current_rate(self) -> Decimal | None:
        """The unit rate of the price last made current (None before the first tick)."""
        return None if self._current is None else self._current.unit_rate

    def block_rate(self, tier: int, block: int, received: bool = False) -> Decimal | None:
        """The price of a block (tier index 0: the block-only "no tier") while the tariff's
        own prices are in force; None while a price event or CPP overrides them."""
        tariff = self.tariff.export if received else self.tariff
        if tariff is None or not tariff.block_prices:
            return None
        if not received:
            now = self._now if self._now is not None else 0
            if self.cpp_in_force(now) is not None or self._event_at(now) is not None:
                return None
        elif self._now is not None and any(o.start <= self._now < o.end
                                           for o in self.export_overrides):
            return None
        try:
            return tariff.block_price(tier or 1, block)
        except KeyError:
            return None

    @property
    def billing_period(self) -> Recurrence | None:
        return self.tariff.billing_period

    @property
    def price_trailing_digits(self) -> int:
        return self.tariff.price_trailing_digits

    def _see(self, now: float) -> None:
        self._now = now
        if self.tariff_since is None:
            self.tariff_since = int(now)
            self._fresh_ids(now)

    def _new_id(self, now: float) -> int:
        self._last_id = max(self._last_id + 1, to_zcl_time(now))
        return self._last_id

    def _tariff_event(self, tariff: Tariff) -> int:
        """The issuer event id of the publication of this tariff instance."""
        return self._tariff_events.get(tariff.issuer_tariff_id, self._ids.get("tariff", 0))

    def _fresh_ids(self, now: float) -> None:
        for kind in ("tariff", "conversion", "calorific", "co2"):
            self._ids[kind] = self._new_id(now)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def current_price(self, now: float) -> CurrentPrice:
        """The price in force at ``now``."""
        since = self.tariff_since if self.tariff_since is not None else int(now)
        cpp = self.cpp_in_force(now)
        if cpp is not None:  # a critical peak overrides every other price
            tier = self.tariff.tier_at(cpp.start)
            return CurrentPrice(tier, self.tariff.cpp_rates[cpp.price_tier],
                                f"CPP{cpp.price_tier + 1}", cpp.issuer_event_id, cpp.start,
                                cpp.duration_min)
        event = self._event_at(now)
        if event is not None:
            return CurrentPrice(event.tier, event.rate, event.label, event.issuer_event_id,
                                event.start, event.duration_min)
        tariff = self.tariff
        tier = tariff.tier_at(now)
        ended = [e.end for e in self.events if e.end <= now]
        ended += [e.end for e in self.cpp_events.values() if e.in_force and e.end <= now]
        start = max(tariff.tier_start(now), self.export_tier_start(now), since, self._resume,
                    *(int(e) for e in ended))
        nxt = self._next_change(now)
        duration = UNTIL_CHANGED if nxt is None else min(0xFFFE, math.ceil((nxt - start) / 60))
        rate = tariff.tier(tier).rate
        return CurrentPrice(tier, rate, tariff.tier(tier).label, to_zcl_time(start), start,
                            duration)

    def _event_at(self, t: float) -> PriceEvent | None:
        live = [e for e in self.events if e.active(t)]
        return max(live, key=lambda e: (e.start, e.issuer_event_id)) if live else None

    def _next_change(self, t: float) -> int | None:
        points = [p for p in self._change_points(t, t + HORIZON)]
        current = self._price_key(t)
        for p in points:
            if self._price_key(p) != current:
                return p
        return None

    def _change_points(self, start: float, end: float) -> list[int]:
        points = set(self.tariff.boundaries(start, end))
        for e in self.events:
            for p in (e.start, e.end):
                if start < p <= end:
                    points.add(int(p))
        points.update(self.cpp_change_points(start, end))
        points.update(self.export_change_points(start, end))
        return sorted(points)

    def _price_key(self, t: float) -> tuple[Any, ...]:
        cpp = self.cpp_in_force(t)
        if cpp is not None:
            return ("cpp", cpp.issuer_event_id, *self.export_key(t))
        event = self._event_at(t)
        if event is not None:
            return ("event", event.issuer_event_id, *self.export_key(t))
        return ("tou", self.tariff.tier_at(t), *self.export_key(t))

    def timeline(self, now: float, horizon: float = HORIZON) -> list[CurrentPrice]:
        """The current price and every price change within ``horizon`` seconds."""
        out = [self.current_price(now)]
        for p in self._change_points(now, now + horizon):
            price = self.current_price(p)
            if price.key() != out[-1].key():
                out.append(price)
        return out

    def next_price(self, now: float) -> CurrentPrice | None:
        """The next price change (start, tier, rate, label), if one is known."""
        line = self.timeline(now)
        return line[1] if len(line) > 1 else None

    # -- local API -----------------------------------------------------------------------------
    def publish(self, *, tier: int, unit_rate: float | Decimal | str, label: str, now: float,
                duration_minutes: int = UNTIL_CHANGED) -> bytes:
        """A price in force from now (for ``duration_minutes``, 0xFFFF = until changed);
        returns the PublishPrice frame pushed to the HAN clients."""
        before = len(self.outbox)
        event = self.schedule_price(tier=tier, unit_rate=unit_rate, label=label, now=now,
                                    start=int(now), duration_minutes=duration_minutes)
        pushed = [f for f in self.outbox[before:] if f[2] == PUBLISH_PRICE]
        if pushed:
            return pushed[-1]
        return self.push(PUBLISH_PRICE, self.price_payload(self._as_price(event), now))

    def schedule_price(self, *, tier: int, unit_rate: float | Decimal | str, label: str,
                       now: float, start: int, duration_minutes: int = UNTIL_CHANGED
                       ) -> PriceEvent:
        """A price event from ``start`` (unix seconds). A future event is announced now
        (PublishPrice with its start time) and pushed again when it becomes current."""
        self._see(now)
        if not 1 <= tier <= MAX_TIERS:
            raise ValueError(f"tier must be 1..{MAX_TIERS}")
        if len(label.encode()) > MAX_RATE_LABEL:
            raise ValueError(f"a rate label is at most {MAX_RATE_LABEL} bytes")
        if not 1 <= duration_minutes <= UNTIL_CHANGED:
            raise ValueError("duration is 1..65535 minutes (65535 = until changed)")
        rate = Decimal(str(unit_rate))
        self.tariff.price_units(rate, "unit_rate")  # raises TariffError (a ValueError)
        event = PriceEvent(self._new_id(now), int(start), duration_minutes, tier, rate, label)
        self._add_event(event)
        if event.start > now:
            self.push(PUBLISH_PRICE, self.price_payload(self._as_price(event), now))
        self._refresh(now)
        return event

    def _add_event(self, event: PriceEvent) -> None:
        self.events.append(event)
        while len(self.events) > MAX_EVENTS:
            dropped = min(self.events, key=lambda e: (e.end, e.start))
            self.events.remove(dropped)
            if dropped.end != math.inf:
                self._resume = max(self._resume, int(dropped.end))
        self._changed()

    # -- what the store keeps (sep/persistence.py) ------------------------------------------
    def persisted_state(self) -> dict[str, Any]:
        """Price events, the scheduled tariff, the ids the server issued and accepted, and
        the rest (bills, credit payments, currency conversion, CPP events)."""
        return {
            "events": [[e.issuer_event_id, e.start, e.duration_min, e.tier, str(e.rate), e.label]
                       for e in self.events],
            "pending": None if self.pending is None else [tariff_to_dict(self.pending[0]),
                                                          self.pending[1]],
            "last_id": self._last_id, "resume": self._resume,
            "upstream": {k: list(v) for k, v in self._upstream.items()},
            "price_ids": [[k, v] for k, v in self._price_ids.items()],
            "export_overrides": [[o.start, None if o.end == math.inf else o.end, o.tier,
                                  str(o.rate)] for o in self.export_overrides],
            **self.extras_state(),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        """At start-up, before the first tick (after :meth:`restore_tariff`)."""
        if self.tariff_since is not None:
            raise RuntimeError("restore_state is for start-up, before the first tick")
        self.events = [PriceEvent(int(e[0]), int(e[1]), int(e[2]), int(e[3]), Decimal(e[4]),
                                  str(e[5])) for e in state["events"]]
        pending = state.get("pending")
        if pending is not None:
            self.pending = (tariff_from_dict(pending[0], source="stored scheduled tariff"),
                            int(pending[1]))
        self._last_id = int(state["last_id"])
        self._resume = int(state["resume"])
        self._upstream = {k: (int(v[0]), int(v[1])) for k, v in state["upstream"].items()}
        self._price_ids = {int(k): int(v) for k, v in state["price_ids"]}
        self.export_overrides = [ExportOverride(int(o[0]), math.inf if o[1] is None
                                                else float(o[1]), int(o[2]), Decimal(o[3]))
                                 for o in state["export_overrides"]]
        self.restore_extras(state)

    @staticmethod
    def _as_price(event: PriceEvent) -> CurrentPrice:
        return CurrentPrice(event.tier, event.rate, event.label, event.issuer_event_id,
                            event.start, event.duration_min)

    def restore_tariff(self, tariff: Tariff) -> None:
        """At start-up, before the server has seen the time: the tariff that was in force
        (from the store). Published to the HAN as the server starts, like any tariff."""
        if self.tariff_since is not None:
            raise RuntimeError("restore_tariff is for start-up, before the first tick")
        self.tariff = tariff
        self._install_getters()

    def set_tariff(self, tariff: Tariff, now: float, *, start: float | None = None
                   ) -> list[bytes]:
        """Replace the tariff now (``start`` None or not later than now), or schedule it.

        Returns the frames pushed to the HAN clients.
        """
        self._see(now)
        if tariff.issuer_tariff_id == self.tariff.issuer_tariff_id:
            raise ValueError("a new tariff needs a new issuer tariff id")
        before = len(self.outbox)
        if self.pending is not None:
            old, _ = self.pending
            self.pending = None
            if old.issuer_tariff_id != tariff.issuer_tariff_id:  # else it is an update
                self._push_cancel(old)
        self._tariff_events = {tariff.issuer_tariff_id: self._new_id(now)}
        if start is not None and start > now:
            self.pending = (tariff, int(start))
            self._publish_tariff(tariff, int(start), now)
        else:
            self._activate(tariff, now)
        self._changed()
        return self.outbox[before:]

    def cancel_tariff(self, issuer_tariff_id: int, now: float) -> bytes:
        """Withdraw the scheduled tariff (CancelTariff to the HAN)."""
        self._see(now)
        if self.pending is None or self.pending[0].issuer_tariff_id != issuer_tariff_id:
            if issuer_tariff_id == self.tariff.issuer_tariff_id:
                raise ValueError("the active tariff is superseded by a new one, not cancelled")
            raise LookupError(f"no scheduled tariff {issuer_tariff_id}")
        old, _ = self.pending
        self.pending = None
        self._incomplete.discard(issuer_tariff_id)
        self._changed()
        return self._push_cancel(old)

    def _push_cancel(self, tariff: Tariff) -> bytes:
        payload = payloads.cancel_tariff_payload(tariff)
        self._cancelled = payload
        return self.push(CANCEL_TARIFF, payload)

    def _activate(self, tariff: Tariff, now: float) -> None:
        if tariff.issuer_tariff_id in self._from_supplier:
            # the supplier's export tariff and billing periods are information of their
            # own: a new import tariff from the supplier does not withdraw them
            keep = {k: getattr(self.tariff, k) for k in ("export", "billing_period")
                    if getattr(tariff, k) is None and getattr(self.tariff, k) is not None}
            if keep:
                tariff = dataclasses.replace(tariff, **keep)
        self.tariff = tariff
        self.tariff_since = int(now)
        if tariff.issuer_tariff_id not in self._from_supplier:
            self.events.clear()
            self._resume = 0
        self._fresh_ids(now)
        self._tariff_events[tariff.issuer_tariff_id] = self._ids["tariff"]
        if tariff.export is not None:  # the export tariff's publication has an id of its own
            self._tariff_events[tariff.export.issuer_tariff_id] = self._new_id(now)
        self._block_start = None
        self._install_getters()
        self._publish_tariff(tariff, int(now), now)
        if tariff.billing_period is not None:  # the billing periods come with the tariff
            self.push(PUBLISH_BILLING_PERIOD, self.billing_period_payload(now))
        self._refresh(now, force=True)

    def _publish_tariff(self, tariff: Tariff, start: int, now: float) -> None:
        self.push(PUBLISH_TARIFF_INFORMATION, self.tariff_information_payload(tariff, start))
        for payload in self.price_matrix_payloads(tariff, start):
            self.push(PUBLISH_PRICE_MATRIX, payload)
        if tariff.block_thresholds_kwh:
            for payload in self.block_threshold_payloads(tariff, start):
                self.push(PUBLISH_BLOCK_THRESHOLDS, payload)
        for payload in self.tier_label_payloads(tariff):
            self.push(PUBLISH_TIER_LABELS, payload)
        if tariff.export is not None:  # the export tariff goes with it
            self.push(PUBLISH_TARIFF_INFORMATION, self.tariff_information_payload(
                tariff.export, start, tariff_type=TARIFF_TYPE_RECEIVED))
            for payload in self.price_matrix_payloads(tariff.export, start):
                self.push(PUBLISH_PRICE_MATRIX, payload)
            for payload in self.tier_label_payloads(tariff.export):
                self.push(PUBLISH_TIER_LABELS, payload)

    # -- time ------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._see(now)
        if self.pending is not None and self.pending[1] <= now \
                and self.pending[0].issuer_tariff_id not in self._incomplete:
            tariff, _ = self.pending
            self.pending = None
            self._activate(tariff, now)
        due = [d for d in self._deferred if d[0] <= now]
        for item in due:
            self._deferred.remove(item)
            item[2](now)
        self._apply_conversion_if_due(now)
        self._refresh(now)

    def _refresh(self, now: float, *, force: bool = False) -> None:
        """Make the price at ``now`` current: push it and move the tier if it changed."""
        price = self.current_price(now)
        if force or self._current is None or price.key() != self._current.key():
            self._current = price
            self.on_tier(price.tier)
            self.push(PUBLISH_PRICE, self.price_payload(price, now))
        self._refresh_export(now)
        period = self.tariff.block_period
        if self.tariff.block_thresholds_kwh and period is not None:
            start, _ = period.period(now)
            if start != self._block_start:
                self._block_start = start
                self._blocks_on = True
                self.on_block_period(start, self.tariff.thresholds_wh)
                self.push(PUBLISH_BLOCK_PERIOD, self.block_period_payload(start))
        elif self._blocks_on:  # a tariff without blocks took over: the block registers stop
            self._blocks_on = False
            self.on_block_period(int(now), [])

    # -- payloads (built by sep.clusters.price_payloads from the server's ids and times) ----
    def price_payload(self, price: CurrentPrice, now: float) -> bytes:
        self._issued.append(price.issuer_event_id)
        return payloads.price_payload(self.tariff, price, now, require_ack=self.require_ack,
                                      generation=self.export_generation(max(price.start, now)))

    def tariff_information_payload(self, tariff: Tariff, start: int, *,
                                   tariff_type: int = TARIFF_TYPE_DELIVERED) -> bytes:
        return payloads.tariff_information_payload(tariff, start, self._tariff_event(tariff),
                                                   tariff_type=tariff_type)

    def price_matrix_payloads(self, tariff: Tariff, start: int) -> list[bytes]:
        return payloads.price_matrix_payloads(tariff, start, self._tariff_event(tariff))

    def block_threshold_payloads(self, tariff: Tariff, start: int) -> list[bytes]:
        return payloads.block_threshold_payloads(tariff, start, self._tariff_event(tariff))

    def tier_label_payloads(self, tariff: Tariff) -> list[bytes]:
        return payloads.tier_label_payloads(tariff, self._tariff_event(tariff))

    def block_period_payload(self, start: int) -> bytes:
        return payloads.block_period_payload(self.tariff, start, require_ack=self.require_ack)

    def conversion_factor_payload(self) -> bytes:
        return payloads.conversion_factor_payload(self.tariff, self._ids.get("conversion", 0),
                                                  self.tariff_since or 0)

    def calorific_value_payload(self) -> bytes:
        return payloads.calorific_value_payload(self.tariff, self._ids.get("calorific", 0),
                                                self.tariff_since or 0)

    def co2_payload(self) -> bytes:
        return payloads.co2_payload(self.tariff, self._ids.get("co2", 0), self.tariff_since or 0)

    def billing_period_payload(self, now: float) -> bytes:
        return payloads.billing_period_payload(self.tariff, now)

    # -- commands from HAN clients -------------------------------------------------------------
    def _cluster_command(self, req: Request, now: float) -> list[bytes]:
        self._see(now)
        out = super()._cluster_command(req, now)
        if (req.src_nwk, req.src_ep) in self._sleepy:
            self.clients.discard((req.src_nwk, req.src_ep))
        return out

    def _cluster_reply(self, req: Request, command_id: int, payload: bytes) -> bytes:
        return build_frame(response_header(req, command_id, general=False), payload)

    def _replies(self, req: Request, command_id: int, payloads: Iterable[bytes]) -> list[bytes]:
        return [self._cluster_reply(req, command_id, p) for p in payloads]

    @staticmethod
    def _tariff_type_ok(value: Any) -> bool:
        return value is None or (int(value) & 0x0F) <= 0x2 and int(value) >> 4 == 0

    def _get_current_price(self, req: Request, args: Any, now: float) -> list[bytes]:
        who = (req.src_nwk, req.src_ep)
        if int(args.command_options) & RX_ON_WHEN_IDLE:
            self._sleepy.discard(who)
        else:
            self._sleepy.add(who)
        price = self.current_price(now)
        return [self._cluster_reply(req, PUBLISH_PRICE, self.price_payload(price, now))]

    def _get_scheduled_prices(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        since = max(zcl_to_unix(int(args.start_time), now), int(now))
        n = int(args.number_of_events) or MAX_SCHEDULED
        chosen = [p for p in self.timeline(now) if p.end > since][:min(n, MAX_SCHEDULED)]
        if not chosen:
            return Status.NOT_FOUND
        return self._replies(req, PUBLISH_PRICE, (self.price_payload(p, now) for p in chosen))

    def _price_acknowledgement(self, req: Request, args: Any, now: float) -> Status:
        if int(args.provider_id) != self.tariff.provider_id:
            return Status.NOT_AUTHORIZED
        event_id = int(args.issuer_event_id)
        if event_id not in self._issued:
            return Status.NOT_FOUND
        self.acks.append({"nwk": req.src_nwk, "endpoint": req.src_ep, "issuer_event_id": event_id,
                          "time": int(args.price_ack_time) + ZIGBEE_EPOCH,
                          "control": int(args.control)})
        del self.acks[:-100]
        return Status.SUCCESS

    def _newer(self, args: Any, event_id: int) -> bool:
        wanted = int(args.min_issuer_event_id)
        return wanted == NOT_SPECIFIED_ID or event_id >= wanted

    def _get_block_periods(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        if not self._tariff_type_ok(args.tariff_type):
            return Status.INVALID_FIELD
        received = args.tariff_type is not None and \
            int(args.tariff_type) & 0x0F == TARIFF_TYPE_RECEIVED
        tariff = self.tariff.export if received else self.tariff
        if args.tariff_type is not None and int(args.tariff_type) & 0x0F == 0x2:
            tariff = self.tariff  # "delivered and received": the delivered block periods
        period = None if tariff is None else tariff.block_period
        if tariff is None or not tariff.block_thresholds_kwh or period is None:
            return Status.NOT_FOUND
        since = max(zcl_to_unix(int(args.start_time), now), int(now))
        n = min(int(args.number_of_events) or 1, 4)
        starts = []
        start, end = period.period(since)
        for _ in range(n):
            starts.append(start)
            start, end = period.period(end)
        if received:
            return self._replies(req, PUBLISH_BLOCK_PERIOD, (self.export_block_period_payload(s)
                                                             for s in starts))
        return self._replies(req, PUBLISH_BLOCK_PERIOD, (self.block_period_payload(s)
                                                         for s in starts))

    def _get_conversion_factor(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        if not self._newer(args, self._ids.get("conversion", 0)):
            return Status.NOT_FOUND
        return [self._cluster_reply(req, PUBLISH_CONVERSION_FACTOR, self.conversion_factor_payload())]

    def _get_calorific_value(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        if self.tariff.calorific_value is None or not self._newer(args, self._ids["calorific"]):
            return Status.NOT_FOUND
        return [self._cluster_reply(req, PUBLISH_CALORIFIC_VALUE, self.calorific_value_payload())]

    def _get_co2_value(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        if not self._tariff_type_ok(args.tariff_type):
            return Status.INVALID_FIELD
        if self.tariff.co2 is None or not self._newer(args, self._ids["co2"]):
            return Status.NOT_FOUND
        return [self._cluster_reply(req, PUBLISH_CO2_VALUE, self.co2_payload())]

    def _get_billing_period(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        if not self._tariff_type_ok(args.tariff_type):
            return Status.INVALID_FIELD
        period = self.tariff.billing_period
        if period is None or not self._newer(args, to_zcl_time(period.period(now)[0])):
            return Status.NOT_FOUND
        return [self._cluster_reply(req, PUBLISH_BILLING_PERIOD, self.billing_period_payload(now))]

    def _get_tariff_information(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        if not self._tariff_type_ok(args.tariff_type):
            return Status.INVALID_FIELD
        ttype = int(args.tariff_type) & 0x0F
        out = []
        if ttype in (TARIFF_TYPE_DELIVERED, 0x2):
            if self._newer(args, self._ids["tariff"]):
                out.append(self.tariff_information_payload(self.tariff,
                                                           self.tariff_since or int(now)))
            if self.pending is not None:
                out.append(self.tariff_information_payload(*self.pending))
        if ttype in (TARIFF_TYPE_RECEIVED, 0x2) and self.tariff.export is not None \
                and self._newer(args, self._tariff_event(self.tariff.export)):
            out.append(self.tariff_information_payload(
                self.tariff.export, self.tariff_since or int(now), tariff_type=TARIFF_TYPE_RECEIVED))
        n = int(args.number_of_commands) or len(out)
        if not out:
            return Status.NOT_FOUND
        return self._replies(req, PUBLISH_TARIFF_INFORMATION, out[:n])

    def _tariff_by_id(self, issuer_tariff_id: int) -> tuple[Tariff, int] | None:
        if issuer_tariff_id == self.tariff.issuer_tariff_id:
            return self.tariff, self.tariff_since or 0
        if self.pending is not None and self.pending[0].issuer_tariff_id == issuer_tariff_id:
            return self.pending
        ex = self.tariff.export
        if ex is not None and ex.issuer_tariff_id == issuer_tariff_id:
            return ex, self.tariff_since or 0
        return None

    def _get_price_matrix(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        found = self._tariff_by_id(int(args.issuer_tariff_id))
        if found is None:
            return Status.NOT_FOUND
        return self._replies(req, PUBLISH_PRICE_MATRIX, self.price_matrix_payloads(*found))

    def _get_block_thresholds(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        found = self._tariff_by_id(int(args.issuer_tariff_id))
        if found is None or not found[0].block_thresholds_kwh:
            return Status.NOT_FOUND
        return self._replies(req, PUBLISH_BLOCK_THRESHOLDS, self.block_threshold_payloads(*found))

    def _get_tier_labels(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        found = self._tariff_by_id(int(args.issuer_tariff_id))
        if found is None:
            return Status.NOT_FOUND
        return self._replies(req, PUBLISH_TIER_LABELS, self.tier_label_payloads(found[0]))

    def _get_tariff_cancellation(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        if self._cancelled is None:
            return Status.NOT_FOUND
        return [self._cluster_reply(req, CANCEL_TARIFF, self._cancelled)]


__all__ = ["CurrentPrice", "MalformedFrame", "PriceEvent", "PriceServer"]
