"""What the meter keeps in its integrity-checked store, and how it comes back after a restart.

- the load profile: every closed interval, both channels;
- the registers derived from metrology's totals: TOU tiers, block registers, day/week/
  month consumption (saved with the simulated metrology's registers, and at shutdown);
- billing: at each UTC day boundary the cumulative tier registers for the day that ended;
- the simulated metrology's registers and the simulated clock (so ``hubsim demo --data DIR
  --speed N`` picks up where the last run stopped, and time never runs backwards);
- the supply (relay) state: a supply the supplier turned off stays off through a power
  cut, and the last issuer event id is kept so an old ChangeSupply cannot be replayed;
- Metering snapshots (TakeSnapshot, scheduled, end of billing period), so GetSnapshot
  answers after a restart, and the snapshot schedules (ScheduleSnapshot);
- the sampling sessions (StartSampling: their samples, and the last Sample ID so none is
  reused), the bills to date of the billing period, the alarm masks (configuration);
- the tariff in force (TOU tiers, schedule, blocks; two copies, as configuration), so one
  set at run time — by the supplier or over MQTT — is still in force after a power cut
  (a ``--tariff`` file given at start wins over it);
- the rest of Price: scheduled price events and a scheduled tariff, the issuer event ids
  issued and accepted (an old supplier command cannot be replayed after a restart),
  consolidated bills, credit payments, the currency conversion, CPP events;
- Messaging: the messages, their confirmations, and the highest message id used (so an id
  is never reused after a restart);
- the prepayment account (credit, emergency credit, debts, the top-up and debt logs, the
  used top-up serials; two copies, as billing data whose loss would cost the customer
  money): every change that moves money is stored with its event in one transaction
  before it is acknowledged; consumption is saved with the registers;
- the event log: power-up, integrity faults, every supply switch and refused supply
  command, every top-up result and prepayment command, firmware update steps.

A fault found by the start-up check or on any read sets the Metering status's Check Meter
bit; the corrupt data itself is never used (the store quarantines it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sep.clusters.metering_snapshots import Snapshot
from sep.meter.load_profile import Interval
from sep.meter.supply import SupplyControl
from sep.meter.tariff import TariffError, tariff_from_dict, tariff_to_dict
from sep.store import CorruptRecord, Store
from sep.store.chainlog import ChainedLog

LOGGER = logging.getLogger(__name__)
STATUS_CHECK_METER = 0x01


def stored_sim_time(data_dir: Path | None) -> float | None:
    """Simulated time the meter last saved (for a clock that must not run backwards)."""
    if data_dir is None or not (data_dir / "meter.db").exists():
        return None
    store = Store.open(data_dir)
    try:
        state = store.get_record("sim", "registers")
        return float(state["t"]) if state else None
    except CorruptRecord:
        return None
    finally:
        store.close()


class MeterPersistence:
    def __init__(self, store: Store, app: Any) -> None:
        self.store = store
        self.app = app
        self._pending: list[tuple[int, int, int]] = []
        self._day: int | None = None
        self._ticks = 0
        self._saved_tariff: Any = None
        self._saved_prepay: Any = None
        self.on_event: Any = None  # also tell someone (the MQTT bridge)
        #: also told of every event: (seq, time, kind, details) (the Events server)
        self.listeners: list[Any] = []

    # -- start-up --------------------------------------------------------------------------
    def restore(self) -> None:
        app = self.app
        regs = getattr(app.metrology, "registers", None)
        try:
            state = self.store.get_record("sim", "registers")
        except CorruptRecord:
            state = None
            LOGGER.error("stored registers are corrupt: not used")
        if regs is not None and state:
            # The household drew nothing the meter did not measure: continue from the
            # stored totals at the current time.
            regs.delivered_j = int(state["delivered_j"])
            regs.received_j = int(state["received_j"])
        try:
            derived = self.store.get_record("meter", "registers")
        except CorruptRecord:
            derived = None  # not used: all history so far goes to tier 1 (tiers still add up)
            LOGGER.error("stored tier/block registers are corrupt: not used")
        if derived:
            app.metering.registers.restore(derived)
        profile = app.metering.profile
        rows = []
        for channel in (0, 1):
            rows += [Interval(channel, end, v) for end, v in self.store.intervals(channel)]
        profile.load(rows)
        profile.on_closed = self._on_closed
        supply: SupplyControl = app.metering.supply
        try:
            supply_state = self.store.get_record("meter", "supply")
        except CorruptRecord:
            # Not used; and the relay must not close on data nobody can trust (it may have
            # been a disconnect): armed, so it closes only when someone present restores it.
            LOGGER.error("stored supply state is corrupt: not used, supply armed")
            supply_state = {"status": 1, "last_issuer_event_id": None}
        if supply_state:
            supply.restore(supply_state)
        supply.events = self._supply_event
        try:
            snaps = self.store.get_record("meter", "snapshots")
        except CorruptRecord:
            snaps = None
            LOGGER.error("stored snapshots are corrupt: not used")
        if snaps:
            app.metering.snapshots = [Snapshot.from_state(s) for s in snaps]
        app.metering.on_snapshot = self._on_snapshot
        try:
            cost = self.store.get_record("meter", "cost")
        except CorruptRecord:
            cost = None
            LOGGER.error("stored cost today is corrupt: not used (counted again from now)")
        if cost and hasattr(app, "cost"):
            app.cost.restore(cost)
        self._restore_metering_extras()
        self._restore_tariff()
        self._restore_han_state()
        self._restore_prepayment()
        self.refresh_faults()

    def _restore_metering_extras(self) -> None:
        """Snapshot schedules, sampling sessions, bills and alarm masks."""
        metering = self.app.metering
        for key, restore in (("snapshot_schedules", metering.restore_schedules),
                             ("sampling", metering.restore_sampling),
                             ("bills", self._restore_bills)):
            try:
                state = self.store.get_record("meter", key)
            except CorruptRecord:
                LOGGER.error("stored %s are corrupt: not used", key.replace("_", " "))
                continue
            if state:
                restore(state)
        try:
            masks = self.store.get_config("alarm_masks")
        except CorruptRecord:
            LOGGER.error("stored alarm masks are corrupt (both copies): defaults used")
            masks = None
        if masks:
            metering.restore_alarm_masks({int(k): int(v) for k, v in masks.items()})
        metering.on_schedules = lambda: self.store.put_record(
            "meter", "snapshot_schedules", metering.schedules_state())
        metering.on_sessions = lambda: self.store.put_record(
            "meter", "sampling", metering.sampling_state())
        metering.on_alarm_masks = lambda masks: self.store.set_config(
            "alarm_masks", {str(k): v for k, v in masks.items()})

    def _restore_han_state(self) -> None:
        """Price's and Messaging's stored state; from then on every change is stored."""
        app = self.app
        for key, restore in (("price", app.price.restore_state),
                             ("messaging", app.messaging.restore_state)):
            try:
                state = self.store.get_record("han", key)
            except CorruptRecord:
                LOGGER.error("stored %s state is corrupt: not used", key)
                continue
            if state:
                try:
                    restore(state)
                except (KeyError, ValueError, TypeError, TariffError) as exc:
                    LOGGER.error("stored %s state not used: %s", key, exc)
        app.price.on_change = lambda: self.store.put_record(
            "han", "price", app.price.persisted_state())
        app.messaging.on_change = lambda: self.store.put_record(
            "han", "messaging", app.messaging.persisted_state())

    def _restore_bills(self, state: dict[str, Any]) -> None:
        self.app.metering.bill.restore(state["delivered"])
        self.app.metering.bill_received.restore(state["received"])

    def _save_bills(self) -> None:
        m = self.app.metering
        self.store.put_record("meter", "bills", {"delivered": m.bill.state(),
                                                 "received": m.bill_received.state()})

    def _restore_prepayment(self) -> None:
        server = getattr(self.app, "prepayment", None)
        if server is None:
            return
        account = server.account
        config = self.app.price.tariff.prepayment
        if config is not None:
            account.reconfigure(config)
        try:
            state = self.store.get_record("prepay", "account")
        except CorruptRecord:
            # Not used; nor may the meter interrupt the supply on a balance nobody can trust:
            # no disconnection until the supplier sets the payment mode again.
            LOGGER.error("stored prepayment account is corrupt (both copies): not used, "
                         "disconnection disabled")
            from sep.zcl.prepayment import DISCONNECTION_ENABLED

            account.payment_control &= ~DISCONNECTION_ENABLED
            state = None
        if state:
            account.restore(state)
            self._saved_prepay = state
            LOGGER.info("prepayment account restored: credit %d", account.credit_remaining)
        server.commit = self.commit_prepayment

    def commit_prepayment(self, account: Any, events: Any) -> None:
        """A change of the prepayment account and its events, in one transaction."""
        state = account.state()
        seqs = self.store.commit([("prepay", "account", state)], list(events))
        self._saved_prepay = state
        if self.on_event is not None:
            for seq, (kind, details) in zip(seqs, events, strict=False):
                self.on_event(kind, {"event_seq": seq, **details})

    def _save_prepayment(self) -> None:
        server = getattr(self.app, "prepayment", None)
        if server is None:
            return
        state = server.account.state()
        if state != self._saved_prepay:
            self.store.put_record("prepay", "account", state)
            self._saved_prepay = state

    def _restore_tariff(self) -> None:
        app = self.app
        if getattr(app.settings, "tariff", None) is not None:
            return  # the tariff file given at start is the configuration
        try:
            doc = self.store.get_record("config", "tariff")
        except CorruptRecord:
            LOGGER.error("stored tariff is corrupt (both copies): not used")
            return
        if doc is None:
            return
        try:
            tariff = tariff_from_dict(doc, source="stored tariff")
        except TariffError as exc:  # intact but not readable by this version: not used
            LOGGER.error("stored tariff not used: %s", exc)
            return
        app.price.restore_tariff(tariff)
        self._saved_tariff = tariff
        LOGGER.info("tariff %r (id %d) restored", tariff.label, tariff.issuer_tariff_id)

    def _save_tariff(self) -> None:
        tariff = self.app.price.tariff
        if tariff is self._saved_tariff:
            return
        if tariff != self._saved_tariff:
            self.store.put_record("config", "tariff", tariff_to_dict(tariff))
        self._saved_tariff = tariff

    def startup_check(self) -> None:
        report = self.store.check()
        for p in report.problems:
            self.store.faults.add((p.table, p.key))
        data_dir = getattr(self.app.settings, "data_dir", None)
        log_problems: list[str] = []
        if data_dir is not None:
            log_problems = ChainedLog.open(data_dir).verify()[1]
            for why in log_problems:
                LOGGER.error("update-log.jsonl: %s", why)
                self.store.faults.add(("update-log", why.split(":")[0]))
            if log_problems:
                self.event("INTEGRITY_FAILURE", table="update-log",
                           key="update-log.jsonl", reason="; ".join(log_problems))
        last = self.store.last_event()
        previous = None if last is None else "clean" if last.kind == "STOP" else "unclean"
        self.event("POWER_UP", records_checked=report.rows_checked,
                   problems=len(report.problems) + len(log_problems),
                   seconds=round(report.seconds, 3), previous_stop=previous)
        self.refresh_faults()

    def refresh_faults(self) -> None:
        metering = self.app.metering
        metering.store_fault = bool(self.store.faults)
        if self.store.faults:
            metering.extra_status |= STATUS_CHECK_METER
        else:
            metering.extra_status &= ~STATUS_CHECK_METER

    # -- running ----------------------------------------------------------------------------
    def event(self, kind: str, details: dict[str, Any] | None = None, **kw: Any) -> None:
        merged = {**(details or {}), **kw}
        clock = getattr(self.app, "clock", None)
        when = clock.now() if clock is not None else time.time()
        seq = self.store.append_event_at(kind, when, merged)
        if self.on_event is not None:
            self.on_event(kind, {"event_seq": seq, **merged})
        for listener in self.listeners:
            listener(seq, when, kind, merged)

    def _supply_event(self, kind: str, details: dict[str, Any]) -> None:
        """A relay switch or a supply command: logged, and the new state kept at once."""
        self.store.put_record("meter", "supply", self.app.metering.supply.state())
        self.event(kind, details)

    def _on_snapshot(self, snap: Snapshot) -> None:
        self.store.put_record("meter", "snapshots",
                              [s.state() for s in self.app.metering.snapshots])

    def update_step(self, entry: dict[str, Any]) -> None:
        self.event("FIRMWARE_UPDATE", {k: v for k, v in entry.items() if k != "time"})

    def _on_closed(self, interval: Interval) -> None:
        # Invalid intervals (no readings: power was off) are stored as the SE marker.
        self._pending.append((interval.channel, interval.end, interval.value_wh))

    def close(self) -> None:
        m = getattr(self.app.metrology, "registers", None)
        if self._pending:
            self.store.put_intervals(self._pending)
            self._pending = []
        if m is not None:
            self.store.put_record("sim", "registers", {"t": m.t, "delivered_j": m.delivered_j,
                                                       "received_j": m.received_j})
        self.store.put_record("meter", "registers", self.app.metering.registers.state())
        if hasattr(self.app, "cost"):
            self.store.put_record("meter", "cost", self.app.cost.state())
        self._save_bills()
        self.store.put_record("meter", "sampling", self.app.metering.sampling_state())
        self._save_prepayment()
        self.store.close()

    def tick(self, t: float) -> None:
        """After each reading: flush closed intervals, close billing days, save registers."""
        if self._pending:
            rows, self._pending = self._pending, []
            self.store.put_intervals(rows)
        day = int(t) // 86400 * 86400
        regs = self.app.metering.registers
        if self._day is not None and day != self._day:
            for tier in range(self.app.metering.config.tiers_in_use):
                self.store.put_billing(self._day, tier + 1, regs.tiers_delivered[tier],
                                       regs.tiers_received[tier], 0)
        self._day = day
        self._save_tariff()
        self._ticks += 1
        m = getattr(self.app.metrology, "registers", None)
        if self._ticks % 10 == 1:
            if m is not None:
                self.store.put_record("sim", "registers", {"t": m.t, "delivered_j": m.delivered_j,
                                                           "received_j": m.received_j})
            self.store.put_record("meter", "registers", regs.state())
            if hasattr(self.app, "cost"):
                self.store.put_record("meter", "cost", self.app.cost.state())
            self._save_bills()
            if self.app.metering.sessions:
                self.store.put_record("meter", "sampling", self.app.metering.sampling_state())
            self._save_prepayment()
        self.refresh_faults()
