"""The supplier's prepayment commands, sent by the comms hub's ESI to a meter.

The hub is the meter's supplier (its ESI: the trust centre, or the node the meter was told
with ``--supplier``), so the meter's Prepayment server takes the supplier's commands from
it: ChangePaymentMode, EmergencyCreditSetup, CreditAdjustment, ChangeDebt,
SetLowCreditWarningLevel, SetMaximumCreditLimit, SetOverallDebtCap, and reads the logs
(GetTopUpLog, GetDebtRepaymentLog, GetPrepaySnapshot).

Sent from zigpy's client side with sep's table (``sep/zcl/prepayment.py``) put on the hub's
zigpy mirror of the meter's Prepayment cluster, so zigpy builds the frames and parses the
answers. Issuer event ids are ZCL UTC seconds, kept strictly increasing. The "vending"
half of the supplier is :meth:`PrepaySupplier.vend`: a top-up code in the meter's format,
with a serial never used before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import zigpy.application
import zigpy.types as t

from sep.clusters.general import to_zcl_time
from sep.meter.topup import TopUpCodeFormat
from sep.zcl import prepayment as pp
from sep.zcl.prepayment import Prepayment

LOGGER = logging.getLogger(__name__)


def status_of(rsp: Any) -> Any:
    """A Default Response's status, else the response itself."""
    status = getattr(rsp, "status", None)
    return rsp if status is None else status


class PrepaySupplier:
    def __init__(self, app: zigpy.application.ControllerApplication, *, provider_id: int,
                 clock: Callable[[], float] = time.time,
                 code_format: TopUpCodeFormat | None = None,
                 first_serial: int | None = None) -> None:
        self.app = app
        self.provider_id = provider_id
        self.clock = clock
        self.code_format = code_format or TopUpCodeFormat()
        # A vending system never sells a serial twice; this one starts from the clock (ten
        # codes a simulated minute), so a later run against the same meter sells new ones.
        if first_serial is None:
            first_serial = int(clock()) // 60 * 10 % 10 ** self.code_format.serial_digits
        self.next_serial = first_serial
        self.log: list[str] = []
        self._last_id = 0

    def _note(self, text: str) -> None:
        LOGGER.info("supplier (prepayment): %s", text)
        self.log.append(text)
        del self.log[:-30]

    def issuer_event_id(self) -> int:
        self._last_id = max(self._last_id + 1, to_zcl_time(self.clock()))
        return self._last_id

    def cluster(self, meter_ieee: str) -> Any:
        """The hub's zigpy Prepayment client for the meter (sep's table on it)."""
        try:
            dev = self.app.get_device(ieee=t.EUI64.convert(meter_ieee))
        except KeyError:
            raise LookupError(f"the hub has not interviewed meter {meter_ieee}") from None
        for endpoint in dev.endpoints.values():
            if not hasattr(endpoint, "in_clusters"):
                continue
            current = endpoint.in_clusters.get(Prepayment.cluster_id)
            if current is None:
                continue
            if not isinstance(current, Prepayment):
                current = endpoint.add_input_cluster(Prepayment.cluster_id,
                                                     Prepayment(endpoint, is_server=True))
            return current
        raise LookupError(f"meter {meter_ieee} has no Prepayment server")

    def vend(self, amount: int) -> str:
        """A top-up code for ``amount`` (in the format's amount units, e.g. pence)."""
        code = self.code_format.make(self.next_serial, amount)
        self.next_serial += 1
        self._note(f"sold a top-up of {self.code_format.money(amount)}: {code}")
        return code

    # -- the supplier's terms --------------------------------------------------------------
    async def start_prepayment(self, meter_ieee: str, *, credit: int, ec_limit: int,
                               ec_threshold: int, low_level: int, max_credit: int = 0,
                               max_per_top_up: int = 0, debt_cap: int = 0x7FFFFFFF,
                               disconnection: bool = True) -> dict[str, Any]:
        """Put a meter into prepayment mode with an opening credit (price units)."""
        c = self.cluster(meter_ieee)
        out: dict[str, Any] = {}
        control = (pp.PREPAYMENT_ENABLED | pp.CREDIT_DISPLAY_ENABLED | pp.CONTACTOR_FITTED
                   | (pp.DISCONNECTION_ENABLED if disconnection else 0))
        # The terms and the opening credit first, the mode last: a meter switched to
        # prepayment with no credit yet would interrupt the supply at once.
        out["credit"] = status_of(await c.credit_adjustment(
            issuer_event_id=self.issuer_event_id(), start_time=pp.NOW,
            credit_adjustment_type=pp.CREDIT_ABSOLUTE, credit_adjustment_value=credit))
        out["emergency_credit"] = status_of(await c.emergency_credit_setup(
            issuer_event_id=self.issuer_event_id(), start_time=pp.NOW,
            emergency_credit_limit=ec_limit, emergency_credit_threshold=ec_threshold))
        out["low_credit"] = status_of(await c.set_low_credit_warning_level(
            low_credit_warning_level=low_level))
        out["max_credit"] = status_of(await c.set_maximum_credit_limit(
            provider_id=self.provider_id, issuer_event_id=self.issuer_event_id(),
            implementation_date_time=pp.NOW, maximum_credit_level=max_credit,
            maximum_credit_per_top_up=max_per_top_up))
        out["debt_cap"] = status_of(await c.set_overall_debt_cap(
            provider_id=self.provider_id, issuer_event_id=self.issuer_event_id(),
            implementation_date_time=pp.NOW, overall_debt_cap=debt_cap))
        out["payment_mode"] = await c.change_payment_mode(
            provider_id=self.provider_id, issuer_event_id=self.issuer_event_id(),
            implementation_date_time=pp.NOW, proposed_payment_control_configuration=control,
            cut_off_value=0)
        self._note(f"meter {meter_ieee} in prepayment mode, credit {credit}: "
                   + ", ".join(f"{k} {getattr(v, 'name', 'ok')}" for k, v in out.items()))
        return out

    async def add_debt(self, meter_ieee: str, *, debt_type: int, amount: int, label: str,
                       per_period: int, frequency: int = pp.FREQUENCY_HOUR,
                       percentage: int = 0) -> Any:
        """A time-based (``per_period``) or percentage-based debt (absolute amount)."""
        c = self.cluster(meter_ieee)
        rsp = status_of(await c.change_debt(
            issuer_event_id=self.issuer_event_id(), debt_label=t.LVBytes(label.encode()),
            debt_amount=amount, debt_recovery_method=(
                pp.RECOVERY_PERCENTAGE_BASED if percentage else pp.RECOVERY_TIME_BASED),
            debt_amount_type=2 * (debt_type - 1), debt_recovery_start_time=pp.NOW,
            debt_recovery_collection_time=0, debt_recovery_frequency=frequency,
            debt_recovery_amount=per_period, debt_recovery_balance_percentage=percentage))
        self._note(f"debt {debt_type} {label!r} of {amount}: {getattr(rsp, 'name', rsp)}")
        return rsp

    async def adjust_credit(self, meter_ieee: str, value: int, *, absolute: bool = False) -> Any:
        rsp = status_of(await self.cluster(meter_ieee).credit_adjustment(
            issuer_event_id=self.issuer_event_id(), start_time=pp.NOW,
            credit_adjustment_type=pp.CREDIT_ABSOLUTE if absolute else pp.CREDIT_INCREMENTAL,
            credit_adjustment_value=value))
        self._note(f"credit adjusted by {value}: {getattr(rsp, 'name', rsp)}")
        return rsp

    # -- reading the account -------------------------------------------------------------------
    async def top_up_log(self, meter_ieee: str, records: int = 5) -> Any:
        return await self.cluster(meter_ieee).get_top_up_log(
            latest_end_time=to_zcl_time(self.clock()), number_of_records=records)

    async def debt_log(self, meter_ieee: str, records: int = 5) -> Any:
        return await self.cluster(meter_ieee).get_debt_repayment_log(
            latest_end_time=to_zcl_time(self.clock()), number_of_debts=records,
            debt_type=pp.ALL_DEBTS)

    async def snapshot(self, meter_ieee: str) -> Any:
        return await self.cluster(meter_ieee).get_prepay_snapshot(
            earliest_start_time=0, latest_end_time=to_zcl_time(self.clock()), snapshot_offset=0,
            snapshot_cause=0xFFFFFFFF)
