"""Consolidated bills, credit payments, currency conversion and CPP events: the rest of SE 1.4
Price (D.4.2.3.13-16, D.4.2.4.11-14), a mixin of :class:`~sep.clusters.price.PriceServer`.

Both sides of each exchange are here: the server answering its HAN clients, the local API
of whoever originates the information, and :meth:`PriceExtras.ingest_extra` for what the
supplier's ESI sends the meter (checked, kept, re-published to the meter's HAN).

- **Consolidated bills.** The meter's own: at the end of each billing period the Metering
  server closes its bill (:mod:`sep.meter.billing`) and :meth:`record_bill` keeps it and
  publishes PublishConsolidatedBill; the supplier's (ingested) take the place of the meter's
  for the same period and tariff type. GetConsolidatedBill(earliest start, min issuer event
  id, number of commands, tariff type) → the bills of periods that end after the earliest
  start (0: all), oldest first; NOT_FOUND when none. LastBillingPeriodConsolidatedBill
  (0x0704, received 0x8704) is the latest one.
- **Credit payments** come from the supplier (:meth:`publish_credit_payment` on the ESI,
  ingested on the meter). GetCreditPayment(latest end time, number of records) → the
  records whose payment date is at or before the latest end time (0: now), newest first.
  The Credit Payment attribute set (0x0800..) shows the latest.
- **Currency conversion.** PublishCurrencyConversion announces a new currency from a start
  time; at that time the tariff's money values (rates, standing charge, CPP prices, price
  events) are multiplied by the conversion factor and rounded half up to the price trailing
  digits, and the Currency Change Control flags decide what happens to billing information
  (bit 0 clear it, bit 1 convert it; ``on_currency_change`` tells the Metering bills).
  GetCurrencyConversion → the last one, else NOT_FOUND. The old currency must be the
  tariff's (INVALID_VALUE otherwise).
- **CPP events.** The ESI publishes PublishCPPEvent (CPP Auth pending, or forced); a client
  answers CPPEventResponse accepted (1) or rejected (2); the server records the answer and
  sends that client the event again with the answer as its CPP Auth. While an event is
  accepted (by any client) or forced, the price in force is the tariff's CPP price
  (CPP1Price/CPP2Price, 0x05FE/0x05FF), label "CPP1"/"CPP2", on the TOU tier in force at the
  event's start. The meter as a client of the ESI answers pending events itself
  (``cpp_policy``, default accept: :attr:`cpp_answers` is what the supplier link sends up)
  and re-publishes every event to its own HAN, whose clients may answer it in turn.

Refusals: unknown ids NOT_FOUND, reserved field values INVALID_FIELD (requests) or
INVALID_VALUE (ingested), a foreign provider NOT_AUTHORIZED, older issuer event ids
INVALID_VALUE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import zigpy.types as t

from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.clusters.price_ingest import Duplicate, Refused
from sep.meter.billing import ClosedBill, units
from sep.zcl.frames import Request, Status
from sep.zcl.price import schema

if TYPE_CHECKING:
    from sep.clusters.price import PriceEvent
    from sep.meter.tariff import Tariff

PUBLISH_CONSOLIDATED_BILL = 0x0A
PUBLISH_CPP_EVENT = 0x0B
PUBLISH_CREDIT_PAYMENT = 0x0C
PUBLISH_CURRENCY_CONVERSION = 0x0D

CPP_PENDING, CPP_ACCEPTED, CPP_REJECTED, CPP_FORCED = 0, 1, 2, 3
CPP_TIERS = (0, 1)  # CPP1, CPP2
NOT_SPECIFIED = 0xFFFFFFFF
MAX_BILLS = 13  # a year of monthly bills and the one before
MAX_CREDIT_PAYMENTS = 5
MAX_CPP_EVENTS = 8
CLEAR_BILLING = 0x01
CONVERT_BILLING = 0x02


@dataclasses.dataclass(frozen=True)
class ConsolidatedBill:
    provider_id: int
    issuer_event_id: int
    start: int  # unix seconds
    duration: int
    duration_type: int
    tariff_type: int  # 0 delivered, 1 received
    amount: int  # with ``digits`` implied decimals
    currency: int
    digits: int
    from_supplier: bool = False

    def payload(self) -> bytes:
        return schema(PUBLISH_CONSOLIDATED_BILL)(
            provider_id=self.provider_id, issuer_event_id=self.issuer_event_id,
            billing_period_start_time=to_zcl_time(self.start),
            billing_period_duration=self.duration,
            billing_period_duration_type=self.duration_type, tariff_type=self.tariff_type,
            consolidated_bill=self.amount, currency=self.currency,
            bill_trailing_digit=self.digits << 4).serialize()


@dataclasses.dataclass(frozen=True)
class CreditPayment:
    provider_id: int
    issuer_event_id: int
    due_date: int  # unix seconds
    overdue_amount: int
    status: int
    payment: int
    payment_date: int  # unix seconds
    ref: bytes

    def payload(self) -> bytes:
        return schema(PUBLISH_CREDIT_PAYMENT)(
            provider_id=self.provider_id, issuer_event_id=self.issuer_event_id,
            credit_payment_due_date=to_zcl_time(self.due_date),
            credit_payment_overdue_amount=self.overdue_amount,
            credit_payment_status=self.status, credit_payment=self.payment,
            credit_payment_date=to_zcl_time(self.payment_date),
            credit_payment_ref=t.LVBytes(self.ref)).serialize()


@dataclasses.dataclass(frozen=True)
class CurrencyConversion:
    provider_id: int
    issuer_event_id: int
    start: int  # unix seconds
    old_currency: int
    new_currency: int
    factor: int
    factor_digits: int
    flags: int
    applied: bool = False

    @property
    def multiplier(self) -> Decimal:
        return Decimal(self.factor).scaleb(-self.factor_digits)

    def payload(self) -> bytes:
        return schema(PUBLISH_CURRENCY_CONVERSION)(
            provider_id=self.provider_id, issuer_event_id=self.issuer_event_id,
            start_time=to_zcl_time(self.start), old_currency=self.old_currency,
            new_currency=self.new_currency, conversion_factor=self.factor,
            conversion_factor_trailing_digit=self.factor_digits << 4,
            currency_change_control_flags=self.flags).serialize()


@dataclasses.dataclass
class CppEvent:
    provider_id: int
    issuer_event_id: int
    start: int  # unix seconds
    duration_min: int
    price_tier: int  # 0 CPP1, 1 CPP2
    auth: int
    tariff_type: int = 0
    responses: dict[str, int] = dataclasses.field(default_factory=dict)  # "nwk:ep" -> auth

    @property
    def end(self) -> int:
        return self.start + 60 * self.duration_min

    @property
    def in_force(self) -> bool:
        return self.auth == CPP_FORCED or self.auth == CPP_ACCEPTED or CPP_ACCEPTED in \
            self.responses.values()

    def payload(self, auth: int | None = None) -> bytes:
        return schema(PUBLISH_CPP_EVENT)(
            provider_id=self.provider_id, issuer_event_id=self.issuer_event_id,
            start_time=to_zcl_time(self.start), duration_in_minutes=self.duration_min,
            tariff_type=self.tariff_type, cpp_price_tier=self.price_tier,
            cpp_auth=self.auth if auth is None else auth).serialize()


def _money(value: Decimal, factor: Decimal, digits: int) -> Decimal:
    return (value * factor).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


class PriceExtras:
    """Mixin of :class:`~sep.clusters.price.PriceServer` (see the module docstring)."""

    if TYPE_CHECKING:  # provided by PriceServer and its other mixins
        tariff: Tariff
        events: list[PriceEvent]
        clients: set[tuple[int, int]]

        def push(self, command_id: int, payload: bytes, *,
                 dst: tuple[int, int] | None = None) -> bytes: ...
        def _see(self, now: float) -> None: ...
        def _new_id(self, now: float) -> int: ...
        def _install_getters(self) -> None: ...
        def _refresh(self, now: float, *, force: bool = False) -> None: ...
        def _cluster_reply(self, req: Request, command_id: int, payload: bytes) -> bytes: ...
        def _provider(self, args: Any) -> None: ...
        def _tariff_type(self, value: int) -> None: ...
        def _when(self, value: int, now: float) -> int: ...
        def _changed(self) -> None: ...

    def _init_extras(self) -> None:
        self.bills: list[ConsolidatedBill] = []
        self.credit_payments: list[CreditPayment] = []
        self.currency_conversion: CurrencyConversion | None = None
        self.cpp_events: dict[int, CppEvent] = {}
        #: the meter's answer to a pending CPP event of its supplier
        self.cpp_policy: Callable[[CppEvent], int] = lambda event: CPP_ACCEPTED
        #: CPPEventResponses for the supplier's ESI: (issuer event id, auth), drained by the
        #: supplier link
        self.cpp_answers: list[tuple[int, int]] = []
        #: billing information follows a currency change: (factor, flags)
        self.on_currency_change: Callable[[Decimal, int], None] | None = None
        self.commands.update({  # type: ignore[attr-defined]
            0x0C: self._get_consolidated_bill, 0x0D: self._cpp_event_response,
            0x0E: self._get_credit_payment, 0x0F: self._get_currency_conversion})

    # -- consolidated bills -------------------------------------------------------------
    def record_bill(self, closed: ClosedBill, now: float) -> ConsolidatedBill | None:
        """A billing period closed on the meter: keep and publish its consolidated bill."""
        self._see(now)
        period = self.tariff.billing_period
        if period is None:
            return None
        tariff_type = 1 if closed.received else 0
        digits = self.tariff.price_trailing_digits
        bill = ConsolidatedBill(
            self.tariff.provider_id, self._new_id(now), closed.start, period.duration,
            period.duration_type, tariff_type, units(closed.amount, digits),
            self.tariff.currency, digits)
        if not self._keep_bill(bill):
            return None
        self.push(PUBLISH_CONSOLIDATED_BILL, bill.payload())
        return bill

    def publish_consolidated_bill(self, *, start: int, amount: int, now: float,
                                  tariff_type: int = 0) -> ConsolidatedBill:
        """The supplier's bill for the billing period beginning at ``start`` (unix seconds;
        ``amount`` in the tariff's currency with its trailing digits)."""
        self._see(now)
        period = self.tariff.billing_period
        if period is None:
            raise ValueError("the tariff has no billing period")
        bill = ConsolidatedBill(self.tariff.provider_id, self._new_id(now), int(start),
                                period.duration, period.duration_type, tariff_type,
                                int(amount), self.tariff.currency,
                                self.tariff.price_trailing_digits, from_supplier=True)
        self._keep_bill(bill)
        self.push(PUBLISH_CONSOLIDATED_BILL, bill.payload())
        return bill

    def _keep_bill(self, bill: ConsolidatedBill) -> bool:
        """Keep ``bill``; a supplier's bill replaces the meter's for the same period."""
        same = [b for b in self.bills if (b.start, b.tariff_type) == (bill.start, bill.tariff_type)]
        if any(b.from_supplier and not bill.from_supplier for b in same):
            return False  # the supplier's own bill for that period stands
        self.bills = [b for b in self.bills if b not in same] + [bill]
        self.bills.sort(key=lambda b: (b.start, b.tariff_type))
        del self.bills[:-2 * MAX_BILLS]
        self._install_getters()
        self._changed()
        return True

    def last_bill(self, tariff_type: int) -> ConsolidatedBill | None:
        found = [b for b in self.bills if b.tariff_type == tariff_type]
        return found[-1] if found else None

    def _get_consolidated_bill(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        ttype = 0 if args.tariff_type is None else int(args.tariff_type)
        if ttype & 0xF0 or ttype & 0x0F > 0x1:
            return Status.INVALID_FIELD
        earliest = int(args.earliest_start_time) + ZIGBEE_EPOCH
        wanted = int(args.min_issuer_event_id)
        found = []
        period = self.tariff.billing_period
        for bill in self.bills:
            end = bill.start if period is None else period.period(bill.start)[1]
            if bill.tariff_type != ttype & 0x0F or end <= earliest:
                continue
            if wanted != NOT_SPECIFIED and bill.issuer_event_id < wanted:
                continue
            found.append(bill)
        n = int(args.number_of_commands) or len(found)
        if not found:
            return Status.NOT_FOUND
        return [self._cluster_reply(req, PUBLISH_CONSOLIDATED_BILL, b.payload())
                for b in found[:n]]

    def _in_consolidated_bill(self, args: Any, now: float) -> None:
        self._provider(args)
        ttype = int(args.tariff_type)
        if ttype & 0xF0 or ttype & 0x0F > 0x1:
            raise Refused(Status.INVALID_VALUE, f"tariff type 0x{ttype:02X}")
        if int(args.currency) != self.tariff.currency:
            raise Refused(Status.INVALID_VALUE, "currency differs")
        duration_type = int(args.billing_period_duration_type)
        if duration_type & 0x0F > 0x3 or duration_type >> 4 > 0x2:
            raise Refused(Status.INVALID_VALUE, f"duration type 0x{duration_type:02X}")
        start = self._when(args.billing_period_start_time, now)
        event_id = int(args.issuer_event_id)
        for b in self.bills:
            if b.from_supplier and (b.start, b.tariff_type) == (start, ttype):
                if b.issuer_event_id == event_id:
                    raise Duplicate(Status.SUCCESS, "the same bill again")
                if b.issuer_event_id > event_id:
                    raise Refused(Status.INVALID_VALUE, "an older bill for the period")
        bill = ConsolidatedBill(int(args.provider_id), event_id, start,
                                int(args.billing_period_duration), duration_type, ttype,
                                int(args.consolidated_bill), int(args.currency),
                                int(args.bill_trailing_digit) >> 4, from_supplier=True)
        self._keep_bill(bill)
        self.push(PUBLISH_CONSOLIDATED_BILL, bill.payload())

    # -- credit payments ----------------------------------------------------------------
    def publish_credit_payment(self, *, due_date: int, overdue_amount: int, status: int,
                               payment: int, payment_date: int, ref: bytes,
                               now: float) -> CreditPayment:
        """The supplier records a payment (amounts in the tariff's currency units with its
        trailing digits; dates unix seconds) and publishes it."""
        self._see(now)
        if len(ref) > 20:
            raise ValueError("a credit payment reference is at most 20 bytes")
        record = CreditPayment(self.tariff.provider_id, self._new_id(now), int(due_date),
                               int(overdue_amount), int(status), int(payment),
                               int(payment_date), bytes(ref))
        self._keep_payment(record)
        self.push(PUBLISH_CREDIT_PAYMENT, record.payload())
        return record

    def _keep_payment(self, record: CreditPayment) -> None:
        self.credit_payments = [r for r in self.credit_payments
                                if r.issuer_event_id != record.issuer_event_id] + [record]
        self.credit_payments.sort(key=lambda r: (r.payment_date, r.issuer_event_id))
        del self.credit_payments[:-MAX_CREDIT_PAYMENTS]
        self._install_getters()
        self._changed()

    def _get_credit_payment(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        latest = int(now) if int(args.latest_end_time) == 0 \
            else int(args.latest_end_time) + ZIGBEE_EPOCH
        found = [r for r in reversed(self.credit_payments) if r.payment_date <= latest]
        n = int(args.number_of_records) or len(found)
        if not found:
            return Status.NOT_FOUND
        return [self._cluster_reply(req, PUBLISH_CREDIT_PAYMENT, r.payload()) for r in found[:n]]

    def _in_credit_payment(self, args: Any, now: float) -> None:
        self._provider(args)
        ref = bytes(args.credit_payment_ref)
        if len(ref) > 20:
            raise Refused(Status.INVALID_VALUE, "credit payment reference over 20 bytes")
        if int(args.credit_payment_status) > 0x04:
            raise Refused(Status.INVALID_VALUE, "credit payment status")
        event_id = int(args.issuer_event_id)
        known = {r.issuer_event_id: r for r in self.credit_payments}
        if event_id in known:
            raise Duplicate(Status.SUCCESS, "the same credit payment again")
        if known and event_id < min(known) and len(known) >= MAX_CREDIT_PAYMENTS:
            raise Refused(Status.INVALID_VALUE, "older than every payment kept")
        record = CreditPayment(int(args.provider_id), event_id,
                               int(args.credit_payment_due_date) + ZIGBEE_EPOCH,
                               int(args.credit_payment_overdue_amount),
                               int(args.credit_payment_status), int(args.credit_payment),
                               int(args.credit_payment_date) + ZIGBEE_EPOCH, ref)
        self._keep_payment(record)
        self.push(PUBLISH_CREDIT_PAYMENT, record.payload())

    # -- currency conversion ------------------------------------------------------------
    def publish_currency_conversion(self, *, new_currency: int, factor: Decimal | str,
                                    start: int, flags: int, now: float) -> CurrencyConversion:
        """The supplier changes the currency from ``start`` (unix seconds; money values
        x ``factor``); announced now, applied at ``start``."""
        self._see(now)
        value = Decimal(str(factor))
        digits = max(0, -int(value.as_tuple().exponent))  # type: ignore[operator]
        conv = CurrencyConversion(self.tariff.provider_id, self._new_id(now), int(start),
                                  self.tariff.currency, int(new_currency),
                                  int(value.scaleb(digits)), digits, int(flags))
        self._check_conversion(conv)
        self.currency_conversion = conv
        self._changed()
        self.push(PUBLISH_CURRENCY_CONVERSION, conv.payload())
        self._apply_conversion_if_due(now)
        return conv

    def _check_conversion(self, conv: CurrencyConversion) -> None:
        if conv.old_currency != self.tariff.currency:
            raise Refused(Status.INVALID_VALUE, f"old currency {conv.old_currency} is not the "
                          f"tariff's {self.tariff.currency}")
        if not 1 <= conv.new_currency <= 999 or conv.new_currency == conv.old_currency:
            raise Refused(Status.INVALID_VALUE, f"new currency {conv.new_currency}")
        if conv.factor in (0, NOT_SPECIFIED) or conv.factor_digits > 15:
            raise Refused(Status.INVALID_VALUE, "conversion factor")
        if conv.flags & ~0x0F:
            raise Refused(Status.INVALID_VALUE, "reserved currency change control flags")

    def _get_currency_conversion(self, req: Request, args: Any, now: float
                                 ) -> list[bytes] | Status:
        if self.currency_conversion is None:
            return Status.NOT_FOUND
        return [self._cluster_reply(req, PUBLISH_CURRENCY_CONVERSION,
                                    self.currency_conversion.payload())]

    def _in_currency_conversion(self, args: Any, now: float) -> None:
        self._provider(args)
        event_id = int(args.issuer_event_id)
        last = self.currency_conversion
        if last is not None and event_id == last.issuer_event_id:
            raise Duplicate(Status.SUCCESS, "the same currency conversion again")
        if last is not None and event_id < last.issuer_event_id:
            raise Refused(Status.INVALID_VALUE, "an older currency conversion")
        conv = CurrencyConversion(int(args.provider_id), event_id,
                                  self._when(args.start_time, now), int(args.old_currency),
                                  int(args.new_currency), int(args.conversion_factor),
                                  int(args.conversion_factor_trailing_digit) >> 4,
                                  int(args.currency_change_control_flags))
        self._check_conversion(conv)
        self.currency_conversion = conv
        self._changed()
        self.push(PUBLISH_CURRENCY_CONVERSION, conv.payload())
        self._apply_conversion_if_due(now)

    def _apply_conversion_if_due(self, now: float) -> None:
        conv = self.currency_conversion
        if conv is None or conv.applied or conv.start > now:
            return
        if conv.old_currency != self.tariff.currency:  # a new tariff took over meanwhile
            self.currency_conversion = dataclasses.replace(conv, applied=True)
            return
        f, digits = conv.multiplier, self.tariff.price_trailing_digits
        tariff = self.tariff
        self.tariff = dataclasses.replace(
            tariff, currency=conv.new_currency,
            tiers=tuple(dataclasses.replace(x, rate=_money(x.rate, f, digits))
                        for x in tariff.tiers),
            block_prices=tuple((k, _money(v, f, digits)) for k, v in tariff.block_prices),
            standing_charge=_money(tariff.standing_charge, f, digits),
            cpp_rates=tuple(_money(v, f, digits) for v in tariff.cpp_rates),
            export=None if tariff.export is None else dataclasses.replace(
                tariff.export, currency=conv.new_currency,
                tiers=tuple(dataclasses.replace(x, rate=_money(x.rate, f, digits))
                            for x in tariff.export.tiers)))
        for event in self.events:
            event.rate = _money(event.rate, f, digits)
        if conv.flags & CLEAR_BILLING:
            self.bills = []
        elif conv.flags & CONVERT_BILLING:
            self.bills = [dataclasses.replace(b, currency=conv.new_currency,
                                              amount=int(_money(Decimal(b.amount), f, 0)))
                          for b in self.bills]
        self.currency_conversion = dataclasses.replace(conv, applied=True)
        self._install_getters()
        self._changed()
        if self.on_currency_change is not None:
            self.on_currency_change(f, conv.flags)
        self._refresh(now, force=True)

    # -- CPP events ---------------------------------------------------------------------
    def publish_cpp_event(self, *, start: int, duration_minutes: int, price_tier: int,
                          now: float, forced: bool = False) -> CppEvent:
        """A critical peak from ``start`` (unix seconds): pending (clients answer) or forced."""
        self._see(now)
        if price_tier not in CPP_TIERS:
            raise ValueError("CPP price tier 0 (CPP1) or 1 (CPP2)")
        if not 1 <= duration_minutes <= 0xFFFE:
            raise ValueError("duration 1..65534 minutes")
        event = CppEvent(self.tariff.provider_id, self._new_id(now), int(start),
                         duration_minutes, price_tier, CPP_FORCED if forced else CPP_PENDING)
        self._keep_cpp(event)
        self.push(PUBLISH_CPP_EVENT, event.payload())
        self._refresh(now)
        return event

    def _keep_cpp(self, event: CppEvent) -> None:
        self.cpp_events[event.issuer_event_id] = event
        for old in sorted(self.cpp_events)[:-MAX_CPP_EVENTS]:
            del self.cpp_events[old]
        self._changed()

    def cpp_in_force(self, t: float) -> CppEvent | None:
        live = [e for e in self.cpp_events.values() if e.in_force and e.start <= t < e.end
                and e.price_tier < len(self.tariff.cpp_rates)]
        return max(live, key=lambda e: (e.start, e.issuer_event_id)) if live else None

    def cpp_change_points(self, start: float, end: float) -> list[int]:
        return [p for e in self.cpp_events.values() if e.in_force
                for p in (e.start, e.end) if start < p <= end]

    def _cpp_event_response(self, req: Request, args: Any, now: float) -> Status:
        event = self.cpp_events.get(int(args.issuer_event_id))
        if event is None:
            return Status.NOT_FOUND
        auth = int(args.cpp_auth)
        if auth not in (CPP_ACCEPTED, CPP_REJECTED):
            return Status.INVALID_FIELD
        if event.auth == CPP_FORCED:
            return Status.SUCCESS  # nothing to decide: the event is forced
        event.responses[f"{req.src_nwk}:{req.src_ep}"] = auth
        self._changed()
        self.push(PUBLISH_CPP_EVENT, event.payload(auth), dst=(req.src_nwk, req.src_ep))
        self._refresh(now)
        return Status.SUCCESS

    def _in_cpp_event(self, args: Any, now: float) -> None:
        self._provider(args)
        self._tariff_type(args.tariff_type)
        tier, auth = int(args.cpp_price_tier), int(args.cpp_auth)
        if tier not in CPP_TIERS:
            raise Refused(Status.INVALID_VALUE, f"CPP price tier {tier}")
        if auth > CPP_FORCED:
            raise Refused(Status.INVALID_VALUE, f"CPP auth {auth}")
        duration = int(args.duration_in_minutes)
        if duration == 0:
            raise Refused(Status.INVALID_VALUE, "zero duration")
        event_id = int(args.issuer_event_id)
        old = self.cpp_events.get(event_id)
        if old is not None and old.auth == auth:
            raise Duplicate(Status.SUCCESS, "the same CPP event again")
        if old is None and self.cpp_events and event_id < min(self.cpp_events) \
                and len(self.cpp_events) >= MAX_CPP_EVENTS:
            raise Refused(Status.INVALID_VALUE, "older than every CPP event kept")
        event = CppEvent(int(args.provider_id), event_id, self._when(args.start_time, now),
                         duration, tier, auth)
        if old is not None:
            event.responses = old.responses
        self._keep_cpp(event)
        if auth == CPP_PENDING:
            self.cpp_answers.append((event_id, self.cpp_policy(event)))
        self.push(PUBLISH_CPP_EVENT, event.payload())
        self._refresh(now)

    # -- ingest dispatch and persistence ------------------------------------------------
    def ingest_extra(self, command_id: int, payload: bytes, now: float) -> Any:
        """The handler for ``command_id`` if it is one of these (None otherwise)."""
        return {PUBLISH_CONSOLIDATED_BILL: self._in_consolidated_bill,
                PUBLISH_CPP_EVENT: self._in_cpp_event,
                PUBLISH_CREDIT_PAYMENT: self._in_credit_payment,
                PUBLISH_CURRENCY_CONVERSION: self._in_currency_conversion}.get(command_id)

    def extras_state(self) -> dict[str, Any]:
        conv = self.currency_conversion
        return {
            "bills": [dataclasses.astuple(b) for b in self.bills],
            "credit": [[*dataclasses.astuple(r)[:7], r.ref.hex()] for r in self.credit_payments],
            "currency": None if conv is None else list(dataclasses.astuple(conv)),
            "cpp": [[e.provider_id, e.issuer_event_id, e.start, e.duration_min, e.price_tier,
                     e.auth, e.tariff_type, e.responses] for e in self.cpp_events.values()],
        }

    def restore_extras(self, state: dict[str, Any]) -> None:
        self.bills = [ConsolidatedBill(*(int(v) for v in b[:9]), bool(b[9]))
                      for b in state["bills"]]
        self.credit_payments = [CreditPayment(*(int(v) for v in r[:7]), bytes.fromhex(r[7]))
                                for r in state["credit"]]
        c = state["currency"]
        self.currency_conversion = None if c is None else CurrencyConversion(
            *(int(v) for v in c[:8]), bool(c[8]))
        self.cpp_events = {int(e[1]): CppEvent(*(int(v) for v in e[:7]),
                                               {str(k): int(v) for k, v in e[7].items()})
                           for e in state["cpp"]}
        self._install_getters()


