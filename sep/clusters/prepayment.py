"""Prepayment server (SE 1.4 D.7), sans-IO: the meter's credit account on the HAN.

The account itself (credit, emergency credit, debts, logs) is
:class:`~sep.meter.prepayment.PrepaymentAccount`; this server serves it as attributes,
carries out the commands, and drives the supply interlock through the Metering server's
supply-control state machine (:class:`~sep.meter.supply.SupplyControl`): when the credit
is exhausted outside a friendly-credit period the supply goes to ARMED, and it may be
restored by a local action (LocalChangeSupply from the PPMID) only once credit is
available again.

**Who may do what** is decided by the composition root through two injected predicates
on the sender's NWK address (never by this module): ``supplier`` (the supplier's ESI) and
``consumer`` (a local PPMID / IHD of this home). What the specifications say:

- SE 1.4 D.7.2.3.5, ConsumerTopUp: "used by the IHD and the ESI as a method of applying
  credit top up values to the prepayment meter" — so: consumer or supplier.
- SE 1.4 D.7.2.3.1, SelectAvailableEmergencyCredit: "sent to the Metering Device to
  activate the use of any Emergency Credit available on the Metering Device", with an
  Originating Device of ESI, Meter or IHD — so: consumer or supplier. GBCS gives the same
  two local actions (enter a UTRN top-up, activate emergency credit) to the PPMID.
- ChangeDebt, EmergencyCreditSetup, CreditAdjustment, ChangePaymentMode,
  SetLowCreditWarningLevel, SetMaximumCreditLimit, SetOverallDebtCap change the supplier's
  terms (SE: commands "from the commodity provider", each with an issuer event id) — so:
  supplier only, with an issuer event id newer than the last one of its kind applied (kept
  across restarts, so a captured command cannot be replayed), and our provider id where
  the command carries one.
- Get* (snapshots, top-up log, debt log) read the account: anyone on the HAN.

A refused sender gets NOT_AUTHORIZED; a broadcast changes nothing. Reserved field values
get INVALID_FIELD, out-of-range values INVALID_VALUE, a truncated frame MALFORMED_COMMAND
(the base class), an action not possible now ACTION_DENIED.

**Money is stored before it is acknowledged**: every command that changes the account is
applied to a copy, the copy is committed (``commit``: the account's state and the event in
one transaction, two checked copies) and only then adopted and answered. A top-up that was
not stored was not made (the PPMID may send it again); one that was stored is never made
twice (its serial is in the same transaction). Every top-up result is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import zigpy.types as t

from sep.clusters.base import ClusterServer
from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.meter.prepayment import PrepaymentAccount, Refused
from sep.meter.supply import SupplyControl, SupplyStatus
from sep.zcl import prepayment as pp
from sep.zcl.frames import Request, Status, build_frame, response_header
from sep.zcl.prepayment import Prepayment, response_schema

LOGGER = logging.getLogger(__name__)

MAX_PAYLOAD = 80  # bytes of ZCL payload per frame (as the Price server)
REFUSALS_PER_MINUTE = 20  # refusals stored per minute; the rest are counted, not written
CANCEL = 0xFFFFFFFF
Event = tuple[str, dict[str, Any]]
Commit = Callable[[PrepaymentAccount, Sequence[Event]], None]
Alert = Callable[[str, str], None]

SUPPLIER_ONLY = {0x02, 0x03, 0x05, 0x06, 0x09, 0x0B, 0x0C}
CONSUMER_OR_SUPPLIER = {0x00, 0x04}


def _unix(zcl: int, now: float) -> int:
    return int(now) if zcl == 0 else int(zcl) + ZIGBEE_EPOCH


class PrepaymentServer(ClusterServer):
    cluster = Prepayment
    #: PublishPrepaySnapshot, ChangePaymentModeResponse, ConsumerTopUpResponse,
    #: PublishTopUpLog, PublishDebtLog (what Discover Commands Generated lists)
    generated = frozenset({0x01, 0x02, 0x03, 0x05, 0x06})
    reportable = frozenset({0x0000, 0x0001, 0x0002, 0x0003, 0x0005, 0x0400})

    def __init__(self, account: PrepaymentAccount, *, supply: SupplyControl,
                 provider_id: Callable[[], int], supplier: Callable[[int], bool],
                 consumer: Callable[[int], bool], commit: Commit | None = None,
                 on_alert: Alert | None = None, currency: Callable[[], int] = lambda: 826) -> None:
        super().__init__()
        self.account = account
        self.supply = supply
        self.provider_id = provider_id
        self.is_supplier = supplier
        self.is_consumer = consumer
        self.commit: Commit = commit or (lambda account, events: None)
        self.on_alert: Alert = on_alert or (lambda kind, text: None)
        self.now = 0.0
        self._refusals: list[float] = []  # when refusals were last stored
        self.suppressed = 0  # refusals not stored since (counted in the next one stored)
        self._credit_status = account.credit_status()
        supply.interlock = lambda: self.account.restore_blocked(self.now)
        self.values[0x0032] = 0  # IHDLowCreditWarningLevel: the display's own, writable
        a = lambda: self.account  # noqa: E731 - the account is replaced on every change
        g = self.getters
        g[0x0000] = lambda: a().payment_control
        g[0x0001] = lambda: a().credit_remaining
        g[0x0002] = lambda: a().ec_remaining
        g[0x0003] = lambda: a().credit_status()
        g[0x0004] = lambda: to_zcl_time(a().updated or self.now)
        g[0x0005] = lambda: a().accumulated_debt
        g[0x0006] = lambda: a().debt_cap
        g[0x0010] = lambda: a().ec_limit
        g[0x0011] = lambda: a().ec_threshold
        g[0x0020] = lambda: a().total_added
        g[0x0021] = lambda: a().max_credit
        g[0x0022] = lambda: a().max_per_top_up
        g[0x0030] = lambda: a().config.friendly_credit_warning_minutes
        g[0x0031] = lambda: a().low_level
        g[0x0034] = lambda: a().friendly_minutes_left(self.now)
        g[0x0035] = lambda: to_zcl_time(a().friendly.next_start(self.now) or ZIGBEE_EPOCH)
        g[0x0040] = lambda: a().cut_off
        g[0x0400] = lambda: a().alarm_status(self.now)
        g[0x0501] = lambda: 0x00  # kWh
        g[0x0503] = currency
        for n in range(1, pp.TOP_UP_LOG_ATTRS + 1):
            g[pp.top_up_attr(n, 0)] = lambda n=n: to_zcl_time(self._top_up(n).time)
            g[pp.top_up_attr(n, 1)] = lambda n=n: self._top_up(n).amount
            g[pp.top_up_attr(n, 2)] = lambda n=n: self._top_up(n).origin
            g[pp.top_up_attr(n, 3)] = lambda n=n: t.LVBytes(self._top_up(n).code.encode())
        for n in range(1, pp.DEBT_TYPES + 1):
            d = lambda n=n: a().debts[n - 1]  # noqa: E731
            g[pp.debt_attr(n, 0)] = lambda d=d: t.LVBytes(d().label.encode())
            g[pp.debt_attr(n, 1)] = lambda d=d: min(0xFFFFFFFF, max(0, d().outstanding // 1000))
            g[pp.debt_attr(n, 2)] = lambda d=d: d().method
            g[pp.debt_attr(n, 3)] = lambda d=d: to_zcl_time(max(d().start, ZIGBEE_EPOCH))
            g[pp.debt_attr(n, 4)] = lambda d=d: d().collection_minute
            g[pp.debt_attr(n, 6)] = lambda d=d: d().frequency
            g[pp.debt_attr(n, 7)] = lambda d=d: d().amount
            g[pp.debt_attr(n, 9)] = lambda d=d: d().percentage
        self.commands.update({
            0x00: self._select_emergency_credit, 0x02: self._change_debt,
            0x03: self._emergency_credit_setup, 0x04: self._consumer_top_up,
            0x05: self._credit_adjustment, 0x06: self._change_payment_mode,
            0x07: self._get_prepay_snapshot, 0x08: self._get_top_up_log,
            0x09: self._set_low_credit_warning_level, 0x0A: self._get_debt_repayment_log,
            0x0B: self._set_maximum_credit_limit, 0x0C: self._set_overall_debt_cap,
        })

    # -- attributes ------------------------------------------------------------------------
    def _top_up(self, n: int) -> Any:
        return self.account.top_ups[-n]

    def supported(self, attr_id: int) -> bool:
        if 0x0100 <= attr_id < 0x0100 + 0x10 * pp.TOP_UP_LOG_ATTRS:
            return (attr_id & 0x0F) <= 3 and len(self.account.top_ups) >= 1 + (
                attr_id - 0x0100) // 0x10
        return super().supported(attr_id)

    # -- time and consumption ---------------------------------------------------------------
    def book(self, now: float, delivered_wh: int, rate_units: int, standing_units: int) -> None:
        """A reading: charge it, collect debts, and apply the supply interlock."""
        self.now = now
        self.account.book(now, delivered_wh, rate_units, standing_units)
        self._after_change(now)

    def tick(self, now: float) -> None:
        self.now = now
        self._after_change(now)

    def _after_change(self, now: float) -> None:
        acct = self.account
        if acct.disconnect_due(now) and self.supply.interlock_open(
                "prepayment", credit=acct.credit_remaining, reason="credit exhausted"):
            LOGGER.info("prepayment: credit exhausted, supply interrupted (ARMED)")
            self.on_alert("disconnected", "Supply off: no credit left. Top up, then restore "
                          "the supply from your PPMID.")
        status = acct.credit_status()
        became = status & ~self._credit_status
        if became & pp.LOW_CREDIT:
            self.on_alert("low_credit", f"Low credit: {self.money(acct.credit_remaining)} "
                          f"left. Please top up.")
        if became & pp.EMERGENCY_CREDIT_AVAILABLE:
            self.on_alert("emergency_credit", "Emergency credit is available: select it on "
                          "your PPMID.")
        self._credit_status = status

    def money(self, units: int) -> str:
        digits = self.account.digits
        sign = "-" if units < 0 else ""
        return f"{sign}£{abs(units) / 10 ** digits:.2f}"

    # -- helpers -----------------------------------------------------------------------------
    def _respond(self, req: Request, command_id: int, **fields: Any) -> list[bytes]:
        payload = response_schema(command_id)(**fields).serialize()
        return [build_frame(response_header(req, command_id, general=False), payload)]

    def _authorised(self, req: Request) -> bool:
        if req.broadcast:
            return False
        if req.command_id in SUPPLIER_ONLY:
            return self.is_supplier(req.src_nwk)
        if req.command_id in CONSUMER_OR_SUPPLIER:
            return self.is_consumer(req.src_nwk) or self.is_supplier(req.src_nwk)
        return True

    def _cluster_command(self, req: Request, now: float) -> list[bytes]:
        self.now = now
        if (req.manufacturer is None and req.command_id in self.commands
                and not self._authorised(req)):
            self._log_refusal(req, "NOT_AUTHORIZED", f"0x{req.src_nwk:04X} may not")
            return self._status(req, Status.NOT_AUTHORIZED)
        return super()._cluster_command(req, now)

    def _flood(self) -> bool:
        """Too many refusals this minute: a flood (from a node trying its luck) is counted,
        not written one by one — it must not wear out the meter's storage."""
        self._refusals = [t for t in self._refusals if self.now - t < 60]
        if len(self._refusals) >= REFUSALS_PER_MINUTE:
            self.suppressed += 1
            return True
        self._refusals.append(self.now)
        return False

    def _log_refusal(self, req: Request, status: str, reason: str) -> None:
        if self._flood():
            LOGGER.debug("prepayment refusal not stored (flood): %s", reason)
            return
        LOGGER.info("prepayment command 0x%02X from 0x%04X refused: %s (%s)", req.command_id,
                    req.src_nwk, status, reason)
        details = {"command": req.command_id, "from": f"0x{req.src_nwk:04X}", "status": status,
                   "reason": reason}
        if self.suppressed:
            details["not_stored_before"] = self.suppressed
        try:
            self.commit(self.account, [("PREPAY_REFUSED", details)])
            self.suppressed = 0
        except Exception:  # noqa: BLE001 - a refusal that cannot be logged is still refused
            LOGGER.exception("refusal not logged")

    def _fresh(self, acct: PrepaymentAccount, kind: str, issuer_event_id: int) -> None:
        last = acct.issuer_ids.get(kind)
        if last is not None and issuer_event_id <= last:
            raise Refused("NOT_AUTHORIZED", f"issuer event id {issuer_event_id} is not newer "
                          f"than {last}")
        acct.issuer_ids[kind] = issuer_event_id

    def _provider(self, provider_id: int) -> None:
        if provider_id != self.provider_id():
            raise Refused("NOT_AUTHORIZED", f"provider 0x{provider_id:08X} is not ours")

    def _apply(self, req: Request, now: float, name: str, change: Callable[[PrepaymentAccount],
               Any], details: dict[str, Any]) -> tuple[Status, Any]:
        """Make a change on a copy, store it with its event, then adopt it."""
        new = self.account.copy()
        try:
            result = change(new)
        except Refused as exc:
            self._log_refusal(req, exc.status, exc.reason)
            return Status[exc.status], None
        try:
            self.commit(new, [(name, {**details, "from": f"0x{req.src_nwk:04X}"})])
        except Exception:  # noqa: BLE001 - not stored: not done
            LOGGER.exception("prepayment change %s not stored: not applied", name)
            return Status.FAILURE, None
        self.account = new
        self._after_change(now)
        return Status.SUCCESS, result

    def change_of_tenancy(self, now: float, **bits: bool) -> list[str]:
        """A change of tenancy or supplier's prepayment bits (``PrepaymentAccount.
        change_of_tenancy``), stored before it is adopted; raises when it cannot be stored."""
        new = self.account.copy()
        done = new.change_of_tenancy(now=now, **bits)
        self.commit(new, [("PREPAY_TENANCY_RESET", {"done": done})])
        self.account = new
        self._after_change(now)
        return done

    def _when(self, zcl: int, now: float) -> int:
        return _unix(zcl, now)

    # -- the consumer's commands --------------------------------------------------------------
    def _select_emergency_credit(self, req: Request, args: Any, now: float) -> Status:
        origin = int(args.originating_device)
        if origin > pp.ORIGIN_IHD:
            return Status.INVALID_FIELD
        status, _ = self._apply(req, now, "PREPAY_EMERGENCY_CREDIT",
                                lambda acct: acct.select_emergency_credit(now),
                                {"origin": origin})
        return status

    def _consumer_top_up(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        origin = int(args.originating_device)
        if origin > pp.ORIGIN_IHD:
            return Status.INVALID_FIELD
        code = bytes(args.top_up_code)
        new = self.account.copy()
        outcome = new.top_up(code, origin, now)
        text = code.decode("ascii", errors="replace")
        event = ("PREPAY_TOP_UP", {"result": outcome.result, "code": text, "why": outcome.why,
                                   "value": outcome.value, "serial": outcome.serial,
                                   "origin": origin, "from": f"0x{req.src_nwk:04X}",
                                   "credit": new.credit_remaining})
        result = outcome.result
        if result == pp.REJECTED_KEYPAD_LOCK and self._flood():
            return self._respond(req, 0x03, result_type=result, top_up_value=0,
                                 source_of_top_up=origin,
                                 credit_remaining=self.account.credit_remaining)
        if self.suppressed:
            event[1]["not_stored_before"] = self.suppressed
        try:
            self.commit(new, [event])
        except Exception:  # noqa: BLE001 - a top-up not stored is not made
            LOGGER.exception("top-up %s not stored: not applied", text)
            result, new = pp.REJECTED_ERROR, self.account
        else:
            self.suppressed = 0 if "not_stored_before" in event[1] else self.suppressed
            LOGGER.info("top-up %s from 0x%04X: result 0x%02X value %d (%s)", text, req.src_nwk,
                        outcome.result, outcome.value, outcome.why or "ok")
        accepted = result == pp.ACCEPTED
        self.account = new
        self._after_change(now)
        if accepted:
            self.on_alert("topped_up", "")  # the warnings go
            result = {SupplyStatus.ON: pp.ACCEPTED_SUPPLY_ENABLED,
                      SupplyStatus.ARMED: pp.ACCEPTED_SUPPLY_ARMED,
                      SupplyStatus.OFF: pp.ACCEPTED_SUPPLY_DISABLED}[self.supply.status]
        return self._respond(req, 0x03, result_type=result,
                             top_up_value=outcome.value if accepted else 0,
                             source_of_top_up=origin,
                             credit_remaining=self.account.credit_remaining)

    # -- the supplier's commands ----------------------------------------------------------------
    def _change_debt(self, req: Request, args: Any, now: float) -> Status:
        fields = args.as_dict()

        def change(acct: PrepaymentAccount) -> None:
            self._fresh(acct, "debt", int(args.issuer_event_id))
            acct.change_debt(fields, now)

        status, _ = self._apply(req, now, "PREPAY_DEBT_CHANGED", change, {
            "issuer_event_id": int(args.issuer_event_id), "type": int(args.debt_amount_type),
            "amount": int(args.debt_amount), "method": int(args.debt_recovery_method)})
        return status

    def _emergency_credit_setup(self, req: Request, args: Any, now: float) -> Status:
        limit, threshold = int(args.emergency_credit_limit), int(args.emergency_credit_threshold)
        when = int(args.start_time)

        def change(acct: PrepaymentAccount) -> None:
            self._fresh(acct, "emergency_credit", int(args.issuer_event_id))
            at = self._when(when, now)
            if at > now:
                acct.schedule(at, "emergency_credit", {"limit": limit, "threshold": threshold})
            else:
                acct.setup_emergency_credit(limit, threshold)

        status, _ = self._apply(req, now, "PREPAY_EMERGENCY_CREDIT_SETUP", change, {
            "issuer_event_id": int(args.issuer_event_id), "limit": limit,
            "threshold": threshold})
        return status

    def _credit_adjustment(self, req: Request, args: Any, now: float) -> Status:
        kind, value = int(args.credit_adjustment_type), int(args.credit_adjustment_value)
        when = int(args.start_time)

        def change(acct: PrepaymentAccount) -> None:
            if kind not in (pp.CREDIT_INCREMENTAL, pp.CREDIT_ABSOLUTE):
                raise Refused("INVALID_FIELD", f"credit adjustment type {kind} is reserved")
            self._fresh(acct, "credit_adjustment", int(args.issuer_event_id))
            at = self._when(when, now)
            if at > now:
                acct.schedule(at, "credit_adjustment", {"kind": kind, "value": value})
            else:
                acct.adjust_credit(kind, value, now)

        status, _ = self._apply(req, now, "PREPAY_CREDIT_ADJUSTED", change, {
            "issuer_event_id": int(args.issuer_event_id), "type": kind, "value": value})
        return status

    def _change_payment_mode(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        control, cut_off = int(args.proposed_payment_control_configuration), int(args.cut_off_value)
        when = int(args.implementation_date_time)

        def change(acct: PrepaymentAccount) -> None:
            self._provider(int(args.provider_id))
            if control & pp.PAYMENT_CONTROL_RESERVED:
                raise Refused("INVALID_FIELD", f"reserved payment control bits in 0x{control:04X}")
            self._fresh(acct, "payment_mode", int(args.issuer_event_id))
            if when == CANCEL:
                before = len(acct.scheduled)
                acct.scheduled = [s for s in acct.scheduled if s[1] != "payment_mode"]
                if len(acct.scheduled) == before:
                    raise Refused("NOT_FOUND", "no payment mode change is scheduled")
                return
            at = self._when(when, now)
            if at > now:
                acct.schedule(at, "payment_mode", {"control": control, "cut_off": cut_off})
            else:
                acct.set_payment_mode(control, cut_off, now)

        status, _ = self._apply(req, now, "PREPAY_PAYMENT_MODE", change, {
            "issuer_event_id": int(args.issuer_event_id), "control": control, "cut_off": cut_off,
            "at": when})
        if status != Status.SUCCESS:
            return status
        acct = self.account
        return self._respond(
            req, 0x02,
            friendly_credit=pp.FRIENDLY_CREDIT_ENABLED if acct.config.friendly_credit else 0,
            friendly_credit_calendar_id=0, emergency_credit_limit=acct.ec_limit,
            emergency_credit_threshold=acct.ec_threshold)

    def _set_low_credit_warning_level(self, req: Request, args: Any, now: float) -> Status:
        level = int(args.low_credit_warning_level)

        def change(acct: PrepaymentAccount) -> None:
            if level > pp.INT32_MAX:
                raise Refused("INVALID_VALUE", "warning level out of range")
            acct.low_level = level

        status, _ = self._apply(req, now, "PREPAY_LOW_CREDIT_LEVEL", change, {"level": level})
        return status

    def _set_maximum_credit_limit(self, req: Request, args: Any, now: float) -> Status:
        level, per = int(args.maximum_credit_level), int(args.maximum_credit_per_top_up)
        when = int(args.implementation_date_time)

        def change(acct: PrepaymentAccount) -> None:
            self._provider(int(args.provider_id))
            if level > pp.INT32_MAX or per > pp.INT32_MAX:
                raise Refused("INVALID_VALUE", "credit limit out of range")
            self._fresh(acct, "max_credit", int(args.issuer_event_id))
            at = self._when(when, now)
            if at > now:
                acct.schedule(at, "max_credit", {"level": level, "per_top_up": per})
            else:
                acct.set_max_credit(level, per)

        status, _ = self._apply(req, now, "PREPAY_MAX_CREDIT", change, {
            "issuer_event_id": int(args.issuer_event_id), "level": level, "per_top_up": per})
        return status

    def _set_overall_debt_cap(self, req: Request, args: Any, now: float) -> Status:
        cap = int(args.overall_debt_cap)
        when = int(args.implementation_date_time)

        def change(acct: PrepaymentAccount) -> None:
            self._provider(int(args.provider_id))
            if cap < 0:
                raise Refused("INVALID_VALUE", "a negative overall debt cap")
            self._fresh(acct, "debt_cap", int(args.issuer_event_id))
            at = self._when(when, now)
            if at > now:
                acct.schedule(at, "debt_cap", {"cap": cap})
            else:
                acct.set_debt_cap(cap)

        status, _ = self._apply(req, now, "PREPAY_DEBT_CAP", change, {
            "issuer_event_id": int(args.issuer_event_id), "cap": cap})
        return status

    # -- reads -----------------------------------------------------------------------------------
    def _get_prepay_snapshot(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        earliest = _unix(int(args.earliest_start_time), 0)
        latest_raw = int(args.latest_end_time)
        latest = now if latest_raw in (0, CANCEL) else latest_raw + ZIGBEE_EPOCH
        cause = int(args.snapshot_cause)
        found = [s for s in reversed(self.account.snapshots)
                 if earliest <= s.time <= latest and (cause == CANCEL or s.cause & cause)]
        offset = int(args.snapshot_offset)
        if offset >= len(found):
            return Status.NOT_FOUND
        s = found[offset]
        return self._respond(
            req, 0x01, snapshot_id=s.snapshot_id, snapshot_time=to_zcl_time(s.time),
            total_snapshots_found=len(found), command_index=0, total_number_of_commands=1,
            snapshot_cause=s.cause, snapshot_payload_type=pp.SNAPSHOT_PAYLOAD_DEBT_CREDIT_STATUS,
            accumulated_debt=s.accumulated_debt, type1_debt_remaining=s.debts[0],
            type2_debt_remaining=s.debts[1], type3_debt_remaining=s.debts[2],
            emergency_credit_remaining=s.emergency_credit_remaining,
            credit_remaining=s.credit_remaining)

    def _split(self, req: Request, command_id: int, entries: list[Any]) -> list[bytes]:
        """Log entries over as many frames as it takes (command index / total)."""
        chunks: list[list[Any]] = [[]]
        size = 2
        for e in entries:
            n = len(e.serialize())
            if chunks[-1] and size + n > MAX_PAYLOAD:
                chunks.append([])
                size = 2
            chunks[-1].append(e)
            size += n
        schema = response_schema(command_id)
        return [build_frame(response_header(req, command_id, general=False), schema(
            command_index=i, total_number_of_commands=len(chunks), entries=chunk).serialize())
            for i, chunk in enumerate(chunks)]

    def _get_top_up_log(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        latest_raw = int(args.latest_end_time)
        latest = now if latest_raw in (0, CANCEL) else latest_raw + ZIGBEE_EPOCH
        n = int(args.number_of_records) or len(self.account.top_ups)
        chosen = [r for r in reversed(self.account.top_ups) if r.time <= latest][:n]
        if not chosen:
            return Status.NOT_FOUND
        return self._split(req, 0x05, [pp.TopUpEntry(
            top_up_code=t.LVBytes(r.code.encode()), top_up_amount=r.amount,
            top_up_time=to_zcl_time(r.time)) for r in chosen])

    def _get_debt_repayment_log(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        kind = int(args.debt_type)
        if kind >= pp.DEBT_TYPES and kind != pp.ALL_DEBTS:
            return Status.INVALID_FIELD
        latest_raw = int(args.latest_end_time)
        latest = now if latest_raw in (0, CANCEL) else latest_raw + ZIGBEE_EPOCH
        n = int(args.number_of_debts) or len(self.account.debt_log)
        chosen = [r for r in reversed(self.account.debt_log)
                  if r.time <= latest and (kind == pp.ALL_DEBTS or r.debt_type == kind)][:n]
        if not chosen:
            return Status.NOT_FOUND
        return self._split(req, 0x06, [pp.DebtEntry(
            collection_time=to_zcl_time(r.time), amount_collected=r.collected,
            debt_type=r.debt_type, outstanding_debt=max(0, r.outstanding)) for r in chosen])
