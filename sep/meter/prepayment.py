"""The prepayment account: credit, emergency credit, debts and their logs (sans-IO).

A plain object; the Prepayment server (``sep/clusters/prepayment.py``) drives it with the
meter's readings and the HAN's commands, and the persistence layer keeps its
:meth:`~PrepaymentAccount.state` (two checked copies) after every change that moves money.

Money is kept exactly, in integers of 1/1000 of the tariff's price unit (:data:`FINE`):
with 4 price trailing digits a price unit is 0.0001 GBP, and a Wh at a rate of R price
units per kWh costs exactly R fine units. What the HAN sees (CreditRemaining ...) is in
price units, rounded down.

- **Energy** is charged from the delivered register: each rise × the unit rate in force
  when it was read (the Price server's rate, block prices included).
- **Standing charge** accrues continuously: ``rate per day × seconds / 86400``, exact
  (the remainder is carried, so the sum does not depend on how often the meter reads).
- **Charging order**: credit first; then emergency credit, if the customer selected it;
  then the credit goes negative (possible only while the supply is on in a friendly-
  credit period, and for standing charges and debt recovered while the supply is off).
- **Emergency credit** (EmergencyCreditSetup: limit and threshold) may be selected once
  the credit is at or below the threshold; a top-up first repays what was used of it.
- **Top-ups**: a code (:mod:`sep.meter.topup`) whose serial has not been used, within the
  maximum per top-up and the maximum credit. Five invalid codes within an hour lock the
  keypad for half an hour (Rejected – Keypad Lock): guessing HMAC check digits is slow. Percentage-based debts take their share of the
  top-up first; the rest pays off negative credit, then used emergency credit, then adds to
  the credit. TotalCreditAdded counts the whole top-up.
- **Debts** (three, SE Type 1..3): time-based ones are collected from the credit at every
  period (hour, day at the collection time, week, month, quarter) from their start;
  percentage-based ones from each top-up. Catch-up recovery is not supported. The sum of
  the debts (AccumulatedDebt) never exceeds the overall debt cap.
- **Supply interlock**: in prepayment mode with disconnection enabled, when the credit
  available (credit plus unused selected emergency credit) is at or below the cut-off
  value, the supply is to be interrupted — never inside a friendly-credit period — and
  may not be restored locally until credit is available again.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sep.meter.prepayment_config import FriendlyCredit, PrepaymentConfig
from sep.meter.topup import CodeRejected
from sep.zcl import prepayment as pp

FINE = 1000
LOG_SIZE = 50  # top-up and debt log entries kept
SNAPSHOTS = 16
INT32_MAX = 0x7FFFFFFF
U48_MAX = (1 << 48) - 1
ZCL_EPOCH = 946_684_800  # ZCL UTC time 0: 2000-01-01T00:00:00Z
KEYPAD_LOCK_ATTEMPTS = 5  # invalid codes within KEYPAD_LOCK_WINDOW lock the keypad ...
KEYPAD_LOCK_WINDOW = 3600
KEYPAD_LOCK_SECONDS = 1800  # ... for this long (Rejected – Keypad Lock)


class Refused(Exception):
    """A command the account does not carry out; ``status`` is the ZCL status name."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclasses.dataclass
class Debt:
    label: str = ""
    outstanding: int = 0  # fine units
    method: int = pp.RECOVERY_TIME_BASED
    start: int = 0  # unix seconds
    collection_minute: int = 0  # local minutes after midnight
    frequency: int = pp.FREQUENCY_DAY
    amount: int = 0  # price units per period (time-based)
    percentage: int = 0  # hundredths of a percent of each top-up (percentage-based)
    next_due: int | None = None  # the next time-based collection


@dataclasses.dataclass(frozen=True)
class TopUpRecord:
    time: int
    code: str
    amount: int  # price units
    origin: int


@dataclasses.dataclass(frozen=True)
class DebtRecord:
    time: int
    collected: int  # price units
    debt_type: int  # 0..2
    outstanding: int  # price units, after the collection


@dataclasses.dataclass(frozen=True)
class PrepaySnapshot:
    snapshot_id: int
    time: int
    cause: int
    accumulated_debt: int
    debts: tuple[int, int, int]
    emergency_credit_remaining: int
    credit_remaining: int


@dataclasses.dataclass(frozen=True)
class TopUpResult:
    result: int  # ConsumerTopUpResponse Result Type (ACCEPTED or REJECTED_*)
    value: int  # price units (0 when refused)
    why: str = ""
    serial: int | None = None


def units_of(value: Decimal, digits: int) -> int:
    """A money value as price units (rounded down)."""
    return int((value.scaleb(digits)).to_integral_value(ROUND_FLOOR))


class PrepaymentAccount:
    def __init__(self, config: PrepaymentConfig | None = None, *, digits: int = 4,
                 timezone: str = "UTC") -> None:
        self.config = config or PrepaymentConfig()
        self.digits = digits
        self.timezone = timezone
        c = self.config
        self.payment_control = pp.CREDIT_DISPLAY_ENABLED | pp.CONTACTOR_FITTED
        if c.mode == "prepayment":
            self.payment_control |= pp.PREPAYMENT_ENABLED | (
                pp.DISCONNECTION_ENABLED if c.disconnection else 0)
        self.credit = units_of(c.initial_credit, digits) * FINE
        self.ec_limit = units_of(c.emergency_credit_limit, digits)
        self.ec_threshold = units_of(c.emergency_credit_threshold, digits)
        self.ec_selected = False
        self.ec_used = 0  # fine units
        self.total_added = 0  # price units
        self.low_level = units_of(c.low_credit_warning, digits)
        self.max_credit = units_of(c.max_credit, digits)
        self.max_per_top_up = units_of(c.max_credit_per_top_up, digits)
        self.cut_off = 0  # price units
        self.debt_cap = INT32_MAX
        self.debts = [Debt() for _ in range(pp.DEBT_TYPES)]
        self.last_t: int | None = None
        self.last_wh: int | None = None
        self.sc_carry = 0  # standing charge numerator not yet a whole fine unit (/86400)
        self.top_ups: list[TopUpRecord] = []
        self.debt_log: list[DebtRecord] = []
        self.snapshots: list[PrepaySnapshot] = []
        self.used_serials: set[int] = set()
        self.issuer_ids: dict[str, int] = {}
        self.scheduled: list[list[Any]] = []  # [when, action, fields]
        self.updated = 0  # unix time of the last change of the credit
        self.alarms = 0
        self.invalid_codes: list[int] = []  # times of recent invalid codes
        self.keypad_locked_until = 0

    # -- configuration (a new tariff file) -----------------------------------------------
    def reconfigure(self, config: PrepaymentConfig) -> None:
        """Take a new tariff file's code format, friendly credit and limits (balances and
        the supplier's settings over the HAN since are kept)."""
        self.config = config

    @property
    def friendly(self) -> FriendlyCredit:
        return FriendlyCredit(self.config.friendly_credit, self.timezone)

    # -- what the HAN sees ------------------------------------------------------------------
    @property
    def prepayment(self) -> bool:
        return bool(self.payment_control & pp.PREPAYMENT_ENABLED)

    @property
    def disconnection(self) -> bool:
        return self.prepayment and bool(self.payment_control & pp.DISCONNECTION_ENABLED)

    @property
    def credit_remaining(self) -> int:
        return _clamp32(self.credit // FINE)

    @property
    def ec_remaining(self) -> int:
        return max(0, self.ec_limit * FINE - self.ec_used) // FINE if self.ec_limit else 0

    @property
    def available(self) -> int:
        """Credit that can still be drawn, fine units (unused selected EC included)."""
        ec = max(0, self.ec_limit * FINE - self.ec_used) if self.ec_selected else 0
        return self.credit + ec

    @property
    def exhausted(self) -> bool:
        return self.available <= self.cut_off * FINE

    @property
    def accumulated_debt(self) -> int:
        return _clamp32(sum(d.outstanding for d in self.debts) // FINE)

    def ec_available(self) -> bool:
        return (self.ec_limit > 0 and not self.ec_selected
                and self.credit <= self.ec_threshold * FINE)

    def credit_status(self) -> int:
        s = 0
        if not self.prepayment:
            return pp.CREDIT_OK  # credit mode: the account does not limit the supply
        if not self.exhausted:
            s |= pp.CREDIT_OK
        if self.credit < self.low_level * FINE:
            s |= pp.LOW_CREDIT
        if self.ec_limit:
            s |= pp.EMERGENCY_CREDIT_ENABLED
        if self.ec_available():
            s |= pp.EMERGENCY_CREDIT_AVAILABLE
        if self.ec_selected:
            s |= pp.EMERGENCY_CREDIT_SELECTED
            if self.ec_used:
                s |= pp.EMERGENCY_CREDIT_IN_USE
        if self.exhausted:
            s |= pp.CREDIT_EXHAUSTED
        return s

    def alarm_status(self, now: float) -> int:
        a = self.alarms
        if self.credit < self.low_level * FINE:
            a |= pp.ALARM_LOW_CREDIT
        if self.ec_available():
            a |= pp.ALARM_EC_AVAILABLE
        period = self.friendly.period_at(now)
        if period is not None and self.credit < 0:
            a |= pp.ALARM_FRIENDLY_CREDIT_IN_USE
        if (period is not None and self.disconnection and self.exhausted
                and period[1] - now <= 60 * self.config.friendly_credit_warning_minutes):
            a |= pp.ALARM_FRIENDLY_CREDIT_PERIOD_END_WARNING  # the supply goes off soon
        return a

    def friendly_minutes_left(self, now: float) -> int:
        period = self.friendly.period_at(now)
        return 0 if period is None else min(0xFFFF, int(period[1] - now) // 60)

    # -- the supply interlock ----------------------------------------------------------------
    def disconnect_due(self, now: float) -> bool:
        """The supply must be interrupted now for want of credit."""
        return self.disconnection and self.exhausted and self.friendly.period_at(now) is None

    def restore_blocked(self, now: float) -> str | None:
        """Why a local restore of the supply is refused now (None: it may be restored)."""
        if self.disconnect_due(now):
            return "no credit: top up (or select emergency credit) first"
        return None

    # -- consumption ---------------------------------------------------------------------
    def book(self, now: float, delivered_wh: int, rate_units: int, standing_units: int) -> None:
        """Charge what was drawn since the last reading at ``rate_units`` (price units per
        kWh) and the standing charge (price units per day) for the time gone by; collect
        the time-based debts that fell due; carry out scheduled supplier commands."""
        t = int(now)
        self._run_scheduled(t)
        if self.last_t is None or self.last_wh is None:
            self.last_t, self.last_wh = t, delivered_wh
            return
        energy = max(0, delivered_wh - self.last_wh)
        seconds = max(0, t - self.last_t)
        if self.prepayment:
            self.sc_carry += max(0, standing_units) * FINE * seconds
            standing, self.sc_carry = divmod(self.sc_carry, 86400)
            cost = energy * max(0, rate_units) + standing
            if cost:
                self._charge(cost)
                self.updated = t
            self._collect_debts(t)
        self.last_t, self.last_wh = t, delivered_wh

    def _charge(self, x: int) -> None:
        if self.credit > 0:
            take = min(self.credit, x)
            self.credit -= take
            x -= take
        if x and self.ec_selected:
            take = min(max(0, self.ec_limit * FINE - self.ec_used), x)
            self.ec_used += take
            x -= take
        self.credit -= x

    # -- debts -------------------------------------------------------------------------------
    def _period_step(self, when: dt.datetime, frequency: int) -> dt.datetime:
        if frequency == pp.FREQUENCY_HOUR:
            return when + dt.timedelta(hours=1)
        if frequency == pp.FREQUENCY_DAY:
            return when + dt.timedelta(days=1)
        if frequency == pp.FREQUENCY_WEEK:
            return when + dt.timedelta(days=7)
        months = 1 if frequency == pp.FREQUENCY_MONTH else 3
        y, m = divmod(when.month - 1 + months, 12)
        day = min(when.day, calendar.monthrange(when.year + y, m + 1)[1])
        return when.replace(year=when.year + y, month=m + 1, day=day)

    def _first_due(self, debt: Debt, after: int) -> int:
        zone = ZoneInfo(self.timezone)
        start = max(debt.start, after)
        local = dt.datetime.fromtimestamp(start, zone)
        if debt.frequency == pp.FREQUENCY_HOUR:
            first = local.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
        else:
            first = local.replace(hour=debt.collection_minute // 60,
                                  minute=debt.collection_minute % 60, second=0, microsecond=0)
            if first.timestamp() <= start:
                first = self._period_step(first, pp.FREQUENCY_DAY)
        return int(first.timestamp())

    def _collect_debts(self, t: int) -> None:
        zone = ZoneInfo(self.timezone)
        for i, debt in enumerate(self.debts):
            if debt.method != pp.RECOVERY_TIME_BASED or debt.outstanding <= 0 or not debt.amount:
                continue
            if debt.next_due is None:
                debt.next_due = self._first_due(debt, debt.start)
            for _ in range(10_000):  # a meter off for years collects at most this many
                if debt.next_due is None or debt.next_due > t or debt.outstanding <= 0:
                    break
                take = min(debt.amount * FINE, debt.outstanding)
                debt.outstanding -= take
                self._charge(take)
                self._log_debt(debt.next_due, take, i)
                nxt = self._period_step(dt.datetime.fromtimestamp(debt.next_due, zone),
                                        debt.frequency)
                debt.next_due = int(nxt.timestamp())

    def _log_debt(self, when: int, collected_fine: int, index: int) -> None:
        self.debt_log.append(DebtRecord(int(when), collected_fine // FINE, index,
                                        self.debts[index].outstanding // FINE))
        del self.debt_log[:-LOG_SIZE]
        self.updated = int(when)

    def change_debt(self, fields: dict[str, Any], now: float) -> None:
        """ChangeDebt (already authorised and with a newer issuer event id)."""
        kind = int(fields["debt_amount_type"])
        if kind > 5:
            raise Refused("INVALID_FIELD", f"debt amount type {kind} is reserved")
        method = int(fields["debt_recovery_method"])
        if method == pp.RECOVERY_CATCH_UP:
            raise Refused("INVALID_FIELD", "catch-up debt recovery is not supported")
        if method > pp.RECOVERY_CATCH_UP:
            raise Refused("INVALID_FIELD", f"debt recovery method {method} is reserved")
        frequency = int(fields["debt_recovery_frequency"])
        if frequency > pp.FREQUENCY_QUARTER:
            raise Refused("INVALID_FIELD", f"debt recovery frequency {frequency} is reserved")
        minute = int(fields["debt_recovery_collection_time"])
        if minute >= 1440:
            raise Refused("INVALID_FIELD", f"collection time {minute} is not a minute of a day")
        percentage = int(fields["debt_recovery_balance_percentage"])
        if percentage > 10000:
            raise Refused("INVALID_FIELD", "balance percentage above 100 %")
        label = bytes(fields["debt_label"])
        if len(label) > pp.MAX_DEBT_LABEL:
            raise Refused("INVALID_FIELD", "debt label longer than 12 octets")
        amount = int(fields["debt_amount"])
        recovery = int(fields["debt_recovery_amount"])
        if recovery < 0:
            raise Refused("INVALID_VALUE", "negative recovery amount")
        index = kind // 2
        debt = self.debts[index]
        new = amount * FINE if kind % 2 == 0 else debt.outstanding + amount * FINE
        if new < 0:
            raise Refused("INVALID_VALUE", "the debt would be negative")
        others = sum(d.outstanding for j, d in enumerate(self.debts) if j != index)
        if (others + new) // FINE > self.debt_cap:
            raise Refused("INVALID_VALUE", f"the debts would exceed the overall debt cap "
                          f"{self.debt_cap}")
        start = int(fields["debt_recovery_start_time"])
        self.debts[index] = Debt(
            label=label.decode("utf-8", errors="replace"), outstanding=new, method=method,
            start=int(now) if start == 0 else start + ZCL_EPOCH, collection_minute=minute,
            frequency=frequency, amount=recovery, percentage=percentage)
        self.take_snapshot(now, pp.SNAPSHOT_DEBT_CREDIT)

    def set_debt_cap(self, cap: int) -> None:
        if cap < 0:
            raise Refused("INVALID_VALUE", "a negative overall debt cap")
        self.debt_cap = cap

    # -- top-ups -------------------------------------------------------------------------------
    def top_up(self, raw: bytes, origin: int, now: float) -> TopUpResult:
        """ConsumerTopUp: apply the code once, or say why not (nothing changes then)."""
        fmt = self.config.top_up_code
        t = int(now)
        if t < self.keypad_locked_until:
            return TopUpResult(pp.REJECTED_KEYPAD_LOCK, 0, f"keypad locked until "
                               f"{self.keypad_locked_until} after {KEYPAD_LOCK_ATTEMPTS} "
                               f"invalid codes")
        try:
            code = fmt.parse(raw)
        except CodeRejected as exc:
            self.alarms |= pp.ALARM_TOP_UP_CODE_INVALID
            self.invalid_codes = [x for x in self.invalid_codes
                                  if t - x < KEYPAD_LOCK_WINDOW] + [t]
            if len(self.invalid_codes) >= KEYPAD_LOCK_ATTEMPTS:
                self.keypad_locked_until = t + KEYPAD_LOCK_SECONDS
                self.invalid_codes = []
            return TopUpResult(pp.REJECTED_INVALID, 0, exc.why)
        if code.serial in self.used_serials:
            self.alarms |= pp.ALARM_TOP_UP_CODE_ALREADY_USED
            return TopUpResult(pp.REJECTED_DUPLICATE, 0, f"serial {code.serial} already used",
                               code.serial)
        value = units_of(fmt.money(code.amount), self.digits)
        if self.max_per_top_up and value > self.max_per_top_up:
            return TopUpResult(pp.REJECTED_TOO_LARGE, 0, f"{value} above the maximum per "
                               f"top-up {self.max_per_top_up}", code.serial)
        if self.max_credit and self.credit // FINE + value > self.max_credit:
            return TopUpResult(pp.REJECTED_MAX_CREDIT, 0, f"credit would exceed the maximum "
                               f"{self.max_credit}", code.serial)
        if self.total_added + value > U48_MAX or self.credit // FINE + value > INT32_MAX:
            return TopUpResult(pp.REJECTED_ERROR, 0, "credit out of range", code.serial)
        self.used_serials.add(code.serial)
        self.alarms &= ~(pp.ALARM_TOP_UP_CODE_INVALID | pp.ALARM_TOP_UP_CODE_ALREADY_USED)
        rest = value * FINE
        for i, debt in enumerate(self.debts):
            if debt.method == pp.RECOVERY_PERCENTAGE_BASED and debt.outstanding > 0:
                take = min(debt.outstanding, value * FINE * debt.percentage // 10000, rest)
                if take:
                    debt.outstanding -= take
                    rest -= take
                    self._log_debt(t, take, i)
        self.credit += rest
        if self.ec_used and self.credit > 0:
            repay = min(self.ec_used, self.credit)
            self.ec_used -= repay
            self.credit -= repay
        if self.ec_selected and not self.ec_used:
            self.ec_selected = False  # repaid: available again next time the credit is low
        self.total_added += value
        self.top_ups.append(TopUpRecord(t, code.text, value, origin))
        del self.top_ups[:-LOG_SIZE]
        self.updated = t
        self.take_snapshot(now, pp.SNAPSHOT_TOP_UP)
        return TopUpResult(pp.ACCEPTED, value, "", code.serial)

    def select_emergency_credit(self, now: float) -> None:
        if not self.ec_limit:
            raise Refused("ACTION_DENIED", "this meter has no emergency credit")
        if self.ec_selected:
            return  # pressed twice: it is selected
        if self.credit > self.ec_threshold * FINE:
            raise Refused("ACTION_DENIED", "credit is above the emergency credit threshold")
        self.ec_selected = True
        self.updated = int(now)

    # -- the supplier's settings ---------------------------------------------------------
    def adjust_credit(self, kind: int, value: int, now: float) -> None:
        if kind == pp.CREDIT_INCREMENTAL:
            new = self.credit + value * FINE
        elif kind == pp.CREDIT_ABSOLUTE:
            new = value * FINE
        else:
            raise Refused("INVALID_FIELD", f"credit adjustment type {kind} is reserved")
        if abs(new // FINE) > INT32_MAX:
            raise Refused("INVALID_VALUE", "credit out of range")
        self.credit = new
        self.updated = int(now)
        self.take_snapshot(now, pp.SNAPSHOT_DEBT_CREDIT)

    def set_payment_mode(self, control: int, cut_off: int, now: float) -> None:
        if control & pp.PAYMENT_CONTROL_RESERVED:
            raise Refused("INVALID_FIELD", f"reserved payment control bits 0x{control:04X}")
        self.payment_control = control
        self.cut_off = cut_off
        self.last_t = int(now) if self.last_t is None else self.last_t
        self.take_snapshot(now, pp.SNAPSHOT_CHANGE_OF_METER_MODE)

    def setup_emergency_credit(self, limit: int, threshold: int) -> None:
        if limit > INT32_MAX or threshold > INT32_MAX:
            raise Refused("INVALID_VALUE", "emergency credit out of range")
        self.ec_limit, self.ec_threshold = limit, threshold
        self.ec_used = min(self.ec_used, limit * FINE)

    def set_max_credit(self, level: int, per_top_up: int) -> None:
        self.max_credit, self.max_per_top_up = level, per_top_up

    def schedule(self, when: int, action: str, fields: dict[str, Any]) -> None:
        self.scheduled.append([int(when), action, fields])
        self.scheduled.sort(key=lambda s: s[0])

    def _run_scheduled(self, t: int) -> None:
        while self.scheduled and self.scheduled[0][0] <= t:
            when, action, f = self.scheduled.pop(0)
            try:
                if action == "payment_mode":
                    self.set_payment_mode(f["control"], f["cut_off"], when)
                elif action == "emergency_credit":
                    self.setup_emergency_credit(f["limit"], f["threshold"])
                elif action == "max_credit":
                    self.set_max_credit(f["level"], f["per_top_up"])
                elif action == "debt_cap":
                    self.set_debt_cap(f["cap"])
                elif action == "credit_adjustment":
                    self.adjust_credit(f["kind"], f["value"], when)
            except Refused:
                pass  # checked when it was accepted; a later change made it moot

    # -- snapshots ------------------------------------------------------------------------
    def take_snapshot(self, now: float, cause: int) -> PrepaySnapshot:
        snap = PrepaySnapshot(
            snapshot_id=(self.snapshots[-1].snapshot_id + 1) if self.snapshots else 1,
            time=int(now), cause=cause, accumulated_debt=self.accumulated_debt,
            debts=tuple(min(0xFFFFFFFF, max(0, d.outstanding // FINE))
                        for d in self.debts),  # type: ignore[arg-type]
            emergency_credit_remaining=self.ec_remaining,
            credit_remaining=self.credit_remaining)
        self.snapshots.append(snap)
        del self.snapshots[:-SNAPSHOTS]
        return snap

    # -- persistence -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "payment_control": self.payment_control, "credit": self.credit,
            "ec_limit": self.ec_limit, "ec_threshold": self.ec_threshold,
            "ec_selected": self.ec_selected, "ec_used": self.ec_used,
            "total_added": self.total_added, "low_level": self.low_level,
            "max_credit": self.max_credit, "max_per_top_up": self.max_per_top_up,
            "cut_off": self.cut_off, "debt_cap": self.debt_cap,
            "debts": [dataclasses.asdict(d) for d in self.debts],
            "last_t": self.last_t, "last_wh": self.last_wh, "sc_carry": self.sc_carry,
            "top_ups": [dataclasses.astuple(r) for r in self.top_ups],
            "debt_log": [dataclasses.astuple(r) for r in self.debt_log],
            "snapshots": [[s.snapshot_id, s.time, s.cause, s.accumulated_debt, list(s.debts),
                           s.emergency_credit_remaining, s.credit_remaining]
                          for s in self.snapshots],
            "used_serials": sorted(self.used_serials), "issuer_ids": dict(self.issuer_ids),
            "scheduled": [list(s) for s in self.scheduled], "updated": self.updated,
            "alarms": self.alarms, "invalid_codes": list(self.invalid_codes),
            "keypad_locked_until": self.keypad_locked_until,
        }

    def restore(self, s: dict[str, Any]) -> None:
        self.payment_control = int(s["payment_control"])
        self.credit = int(s["credit"])
        self.ec_limit, self.ec_threshold = int(s["ec_limit"]), int(s["ec_threshold"])
        self.ec_selected, self.ec_used = bool(s["ec_selected"]), int(s["ec_used"])
        self.total_added, self.low_level = int(s["total_added"]), int(s["low_level"])
        self.max_credit, self.max_per_top_up = int(s["max_credit"]), int(s["max_per_top_up"])
        self.cut_off, self.debt_cap = int(s["cut_off"]), int(s["debt_cap"])
        self.debts = [Debt(**d) for d in s["debts"]]
        self.last_t = None if s["last_t"] is None else int(s["last_t"])
        self.last_wh = None if s["last_wh"] is None else int(s["last_wh"])
        self.sc_carry = int(s["sc_carry"])
        self.top_ups = [TopUpRecord(*r) for r in s["top_ups"]]
        self.debt_log = [DebtRecord(*r) for r in s["debt_log"]]
        self.snapshots = [PrepaySnapshot(a, b, c, d, tuple(e), f, g)  # type: ignore[arg-type]
                          for a, b, c, d, e, f, g in s["snapshots"]]
        self.used_serials = {int(x) for x in s["used_serials"]}
        self.issuer_ids = {k: int(v) for k, v in s["issuer_ids"].items()}
        self.scheduled = [list(x) for x in s["scheduled"]]
        self.updated, self.alarms = int(s["updated"]), int(s["alarms"])
        self.invalid_codes = [int(x) for x in s.get("invalid_codes", [])]
        self.keypad_locked_until = int(s.get("keypad_locked_until", 0))

    def change_of_tenancy(self, *, credit: bool, debts: bool, logs: bool, data: bool,
                          now: float) -> list[str]:
        """What SE 1.4 Table D-164 asks of the prepayment side at a change of tenancy or
        supplier (bits 2, 3, 13, 14); returns what was done. The used top-up serials are
        kept whatever is cleared: a code is never credited twice, to any tenant."""
        done = []
        if credit:  # "All Credit Registers shall be reset to their default value"
            self.credit, self.ec_used, self.ec_selected = 0, 0, False
            done.append("credit registers reset")
        if debts:  # "All Debt Registers shall be reset to their default value"
            self.debts = [Debt() for _ in range(pp.DEBT_TYPES)]
            done.append("debt registers reset")
        if logs:  # Clear Transaction Log: the top-up and debt repayment logs
            self.top_ups, self.debt_log = [], []
            done.append("top-up and debt logs cleared")
        if data:  # Clear Prepayment Data: the prepayment snapshots
            self.snapshots = []
            done.append("prepayment snapshots cleared")
        self.updated = int(now)
        return done

    def copy(self) -> PrepaymentAccount:
        """An independent copy (a change is made on it and adopted once stored)."""
        other = PrepaymentAccount(self.config, digits=self.digits, timezone=self.timezone)
        other.restore(self.state())
        return other


def _clamp32(value: int) -> int:
    return max(-INT32_MAX, min(INT32_MAX, value))
