"""What a change of tenancy or of supplier does to the meter (SE 1.4 D.10, Table D-164).

PublishChangeOfTenancy and PublishChangeOfSupplier carry a Proposed (Tenancy / Provider)
Change Control bitmap; at the implementation time the meter carries out what its bits
ask. SE 1.4 Table D-164 (Proposed Change Control), bit by bit, and what this meter does:

- bit 0 Pre Snapshots, "A snapshot shall be triggered": a Metering snapshot before
  anything changes (cause Change of Tenancy 0x00001000 / Change of Supplier 0x00002000).
- bit 1 Post Snapshots, "A snapshot shall be triggered": another one when all is done.
- bit 2 Reset Credit Register, "All Credit Registers shall be reset to their default
  value": the prepayment account's credit and emergency credit used go to 0 (emergency
  credit no longer selected); bit 3 Reset Debit Register, "All Debt Registers shall be
  reset to their default value": the three debts are removed (AccumulatedDebt 0).
- bit 4 Reset Billing Period, "All Billing periods shall be reset to their default value":
  the billing period starts again at the change (PublishBillingPeriod to the HAN).
- bit 5 Clear Tariff Plan, "The tariff shall be reset to its default value": the default
  tariff (one rate) takes over, for the same provider, under a new issuer tariff id.
- bit 6 Clear Standing Charge, "The Standing Charge shall be reset to its default value":
  standing charge 0.
- bit 7 Block Historical Load Profile Information, "Historical LP information shall no
  longer be available to be published to the HAN": GetProfile gives no interval that
  ended before the change (the data is kept).
- bit 8 Clear Historical Load Profile Information, "Historical LP information shall be
  cleared from all devices": the load profile is deleted, in memory and in the store.
- bit 9 Clear IHD Data - Consumer, "All consumer data shall be removed": the meter holds
  no consumer data (not applicable).
- bit 10 Clear IHD Data - Supplier, "All supplier data shall be removed": the supplier's
  messages are cancelled (CancelAllMessages to the HAN).
- bits 11-12 Meter Contactor State (Table D-165: 0 supply off, 1 off/armed, 2 on,
  3 unchanged), "The required status of the meter contactor post action": with SE's note
  that "in certain markets, this value cannot trigger automatic reconnection of the
  supply, only maintain the current status of, disconnect or ARM the supply" — GB is such
  a market, so "on" keeps a supply that is on and arms one that is not.
- bit 13 Clear Transaction Log: the prepayment top-up and debt repayment logs are cleared;
  bit 14 Clear Prepayment Data: the prepayment snapshots are cleared. The used top-up
  serials are kept: a code is never credited twice. The prepayment changes are stored (two
  copies, with their event) like every change of money.

What is kept: the cumulative registers (total and tier summations — a meter never winds
them back), snapshots and the event log (both are the evidence of the change).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from sep.meter.supply import SupplyStatus
from sep.meter.tariff import DEFAULT_TARIFF, Recurrence
from sep.zcl import device_management as dm

LOGGER = logging.getLogger(__name__)

SNAPSHOT_CAUSE_CHANGE_OF_TENANCY = 0x00001000
SNAPSHOT_CAUSE_CHANGE_OF_SUPPLIER = 0x00002000
PUBLISH_BILLING_PERIOD = 0x09  # Price cluster, server-generated


class MeterChanges:
    """Carries out a Proposed Change Control on the meter's servers."""

    def __init__(self, *, metering: Any, price: Any, messaging: Any,
                 clear_stored_profile: Callable[[], None] = lambda: None,
                 profile_blocked: Callable[[int], None] = lambda until: None,
                 prepayment: Callable[[], Any] = lambda: None) -> None:
        self.metering = metering
        self.prepayment = prepayment  # the Prepayment server (built after this object)
        self.price = price
        self.messaging = messaging
        self.clear_stored_profile = clear_stored_profile
        self.profile_blocked = profile_blocked

    def apply(self, control: int, now: float, *, cause: int) -> list[str]:
        """Do what ``control`` asks; returns what was done, in order."""
        done: list[str] = []
        if control & dm.PRE_SNAPSHOTS:
            done.append(f"pre snapshot {self._snapshot(now, cause)}")
        prepay = control & (dm.RESET_CREDIT_REGISTER | dm.RESET_DEBIT_REGISTER
                            | dm.CLEAR_TRANSACTION_LOG | dm.CLEAR_PREPAYMENT_DATA)
        server = self.prepayment() if prepay else None
        if server is not None:
            try:
                done += server.change_of_tenancy(
                    now, credit=bool(control & dm.RESET_CREDIT_REGISTER),
                    debts=bool(control & dm.RESET_DEBIT_REGISTER),
                    logs=bool(control & dm.CLEAR_TRANSACTION_LOG),
                    data=bool(control & dm.CLEAR_PREPAYMENT_DATA))
            except Exception as exc:  # noqa: BLE001 - not stored: not done, the rest goes on
                LOGGER.error("prepayment reset not stored: %r", exc)
                done.append("prepayment reset NOT done (not stored)")
        if control & dm.RESET_BILLING_PERIOD:
            done.append(self._reset_billing_period(now))
        if control & (dm.CLEAR_TARIFF_PLAN | dm.CLEAR_STANDING_CHARGE):
            done.append(self._clear_tariff(control, now))
        if control & dm.BLOCK_HISTORICAL_LOAD_PROFILE:
            self.metering.profile.blocked_until = int(now)
            self.profile_blocked(int(now))
            done.append("load profile history blocked")
        if control & dm.CLEAR_HISTORICAL_LOAD_PROFILE:
            self.metering.profile.clear()
            self.clear_stored_profile()
            done.append("load profile cleared")
        if control & dm.CLEAR_IHD_DATA_SUPPLIER:
            self.messaging.cancel_all(now)
            done.append("supplier messages cancelled")
        contactor = (control & dm.CONTACTOR_MASK) >> dm.CONTACTOR_SHIFT
        if contactor != dm.CONTACTOR_UNCHANGED:
            done.append(self._contactor(contactor))
        if control & dm.POST_SNAPSHOTS:
            done.append(f"post snapshot {self._snapshot(now, cause)}")
        LOGGER.info("change control 0x%08X carried out: %s", control, "; ".join(done))
        return done

    def _snapshot(self, now: float, cause: int) -> int:
        return int(self.metering.take_snapshot(now, cause).snapshot_id)

    def _reset_billing_period(self, now: float) -> str:
        tariff = self.price.tariff
        period = tariff.billing_period
        if period is None:
            return "no billing period to reset"
        again = Recurrence(int(now), period.duration, period.timebase)
        self.price.tariff = dataclasses.replace(tariff, billing_period=again)
        self.price.push(PUBLISH_BILLING_PERIOD, self.price.billing_period_payload(now))
        return "billing period restarted"

    def _clear_tariff(self, control: int, now: float) -> str:
        tariff = self.price.tariff
        new_id = tariff.issuer_tariff_id % 0xFFFFFFFE + 1
        if control & dm.CLEAR_TARIFF_PLAN:
            new = dataclasses.replace(DEFAULT_TARIFF, provider_id=tariff.provider_id,
                                      issuer_tariff_id=new_id)
            what = "default tariff"
        else:
            new = dataclasses.replace(tariff, standing_charge=DEFAULT_TARIFF.standing_charge,
                                      issuer_tariff_id=new_id)
            what = "standing charge cleared"
        self.price.set_tariff(new, now)
        return f"{what} (tariff id {new_id})"

    def _contactor(self, state: int) -> str:
        supply = self.metering.supply
        wanted = {dm.CONTACTOR_OFF: SupplyStatus.OFF, dm.CONTACTOR_OFF_ARMED: SupplyStatus.ARMED,
                  dm.CONTACTOR_ON: SupplyStatus.ON}[state]
        if wanted == SupplyStatus.ON and supply.status != SupplyStatus.ON:
            wanted = SupplyStatus.ARMED  # no automatic reconnection in this market
        supply.set_status(wanted, "change of tenancy/supplier")
        return f"supply {wanted.name}"
