"""The demo's Smart Energy script: the commands a `hubsim demo` run puts on the air besides
the supplier's messages and peak price (``hubsim.demo.supplier_script``).

Within the first half minute of a default run (60 s at 60x: simulated time runs a minute
per second) every one of these crosses the air, each way it has:

- the in-home display asks the meter: GetBlockPeriods → PublishBlockPeriod,
  GetBillingPeriod → PublishBillingPeriod, GetTariffInformation for the received (export)
  tariff → PublishTariffInformation, RequestFastPollMode → its response, TakeSnapshot +
  GetSnapshot → PublishSnapshot, GetProfile → its response, GetConsolidatedBill,
  GetCreditPayment, GetCurrencyConversion → their Publish*, and answers the CPP event the
  meter relays (CPPEventResponse);
- the comms hub, as head end, asks the meter: ScheduleSnapshot → its response (and the
  scheduled PublishSnapshot two simulated minutes later), StartSampling → its response,
  GetSampledData → its response, ChangeSupply off at a later time (SupplyStatusResponse
  when carried out) and back on now (SupplyStatusResponse at once);
- the supplier's ESI publishes to the meter, which answers or re-publishes to the
  display: PublishCreditPayment, PublishConsolidatedBill, PublishCPPEvent (the meter
  answers CPPEventResponse; the ESI confirms), PublishCurrencyConversion (for the first of
  next month, so the run keeps its currency), a third message and its CancelMessage.

Commands that change what a short run shows (the supply switched off for a simulated
minute or two, the CPP price, the third message) come after its first 12 seconds. Every step is logged;
a step that fails is logged and the script goes on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from zigpy.zcl.clusters.smartenergy import (
    SnapshotCause,
    SnapshotPayloadType,
    SnapshotSchedule,
    SnapshotSchedulePayload,
)

from sep.clusters.general import to_zcl_time

LOGGER = logging.getLogger(__name__)
METERING = 0x0702
# what the script sends (tests read these values back off the air)
CREDIT_PAYMENT = 4250  # in the tariff's currency with its 4 trailing digits: 0.4250
CREDIT_REF = b"DD-0042"
CONSOLIDATED_BILL = 612345
CPP_MINUTES = 5
NEW_CURRENCY, CURRENCY_FACTOR = 978, "1.17"
MESSAGE_ID, MESSAGE = 3, "Meter reading due this week"
SAMPLE_INTERVAL, SAMPLES = 60, 20
PROFILE_PERIODS = 6
FAST_POLL = (2, 1)  # seconds, minutes


class SeScript:
    def __init__(self, hub: Any, ihd: Any, clock: Callable[[], float]) -> None:
        self.hub = hub
        self.ihd = ihd
        self.clock = clock
        self.done: list[str] = []  # the steps carried out, in order
        self.failed: list[str] = []
        self._sample_id: int | None = None

    # -- plumbing -----------------------------------------------------------------------
    async def _do(self, what: str, action: Callable[[], Awaitable[Any]]) -> Any:
        try:
            result = await action()
        except Exception as exc:  # noqa: BLE001 - the demo goes on
            LOGGER.warning("demo step %s failed: %r", what, exc)
            self.failed.append(what)
            return None
        LOGGER.info("demo step %s: %s", what, result)
        self.done.append(what)
        return result

    def _hub_metering(self) -> Any:
        """The hub's zigpy client of the meter's Metering cluster (it interviewed it)."""
        ieee = self.ihd.view.meter_ieee
        for dev in self.hub.app.devices.values():
            if str(dev.ieee) == ieee:
                for ep in dev.endpoints.values():
                    clusters = getattr(ep, "in_clusters", {})
                    if METERING in clusters:
                        return clusters[METERING]
        raise LookupError("the hub has not interviewed the meter")

    def _listen_for_cpp(self) -> None:
        """The householder opts in to each pending CPP event the meter relays."""
        price = self.ihd.price
        if price is None:
            return

        def answer(tsn: int, command_id: int, args: Any) -> None:
            if command_id == 0x0B and int(args.cpp_auth) == 0:
                event_id = int(args.issuer_event_id)
                asyncio.get_running_loop().create_task(self._do(
                    f"IHD CPPEventResponse {event_id}",
                    lambda: price.cpp_event_response(event_id, 0x01)))

        price.add_listener(type("CppListener", (), {"cluster_command": staticmethod(answer)})())

    # -- the script ---------------------------------------------------------------------
    async def run(self) -> None:
        ihd, supplier = self.ihd, self.hub.supplier
        sleep = asyncio.sleep
        self._listen_for_cpp()
        await sleep(1.0)
        if ihd.price is not None:
            await self._do("IHD GetBlockPeriods", lambda: ihd.price.get_block_periods(0, 1, 0x00))
            await self._do("IHD GetBillingPeriod",
                           lambda: ihd.price.get_billing_period(0, 0xFFFFFFFF, 1, 0x00))
            await self._do("IHD GetTariffInformation (received)",
                           lambda: ihd.price.get_tariff_information(0, 0xFFFFFFFF, 1, 0x01))
        await self._do("IHD RequestFastPollMode",
                       lambda: ihd.metering.request_fast_poll_mode(*FAST_POLL))
        await sleep(1.0)
        await self._head_end_requests()
        await sleep(1.0)
        now = self.clock()
        if supplier is not None and supplier.price is not None:
            price = supplier.price
            month = dt.datetime.fromtimestamp(now, dt.UTC).replace(day=1, hour=0, minute=0,
                                                                  second=0, microsecond=0)
            last = (month - dt.timedelta(days=1)).replace(day=1)
            await self._do("ESI PublishCreditPayment", self._supplier(lambda: (
                price.publish_credit_payment(due_date=int(now) + 14 * 86400, overdue_amount=0,
                                             status=1, payment=CREDIT_PAYMENT,
                                             payment_date=int(now) - 86400, ref=CREDIT_REF,
                                             now=now))))
            await self._do("ESI PublishConsolidatedBill", self._supplier(lambda: (
                price.publish_consolidated_bill(start=int(last.timestamp()),
                                                amount=CONSOLIDATED_BILL,
                                                now=now))))
            await self._do("ESI PublishCPPEvent", self._supplier(lambda: price.publish_cpp_event(
                start=int(now) // 60 * 60 + 15 * 60, duration_minutes=CPP_MINUTES, price_tier=0,
                now=now)))
            next_month = (month + dt.timedelta(days=32)).replace(day=1)
            await self._do("ESI PublishCurrencyConversion", self._supplier(lambda: (
                price.publish_currency_conversion(new_currency=NEW_CURRENCY,
                                                  factor=CURRENCY_FACTOR,
                                                  start=int(next_month.timestamp()),
                                                  flags=0x02, now=now))))
        await sleep(9.0)  # past the first 12 seconds of the run
        if supplier is not None:
            await self._do("ESI DisplayMessage 3", self._supplier(lambda: supplier.send_message(
                MESSAGE, message_id=MESSAGE_ID, importance="low")))
        await self._do("IHD TakeSnapshot", lambda: ihd.metering.take_snapshot(0x00000400))
        await self._do("IHD GetSnapshot", lambda: ihd.metering.get_snapshot(
            0, 0xFFFFFFFF, 0, 0xFFFFFFFF))
        await self._do("IHD GetProfile", lambda: ihd.metering.get_profile(0, 0, PROFILE_PERIODS))
        if ihd.price is not None:
            await self._do("IHD GetConsolidatedBill",
                           lambda: ihd.price.get_consolidated_bill(0, 0xFFFFFFFF, 0, 0x00))
            await self._do("IHD GetCreditPayment", lambda: ihd.price.get_credit_payment(0, 5))
            await self._do("IHD GetCurrencyConversion",
                           lambda: ihd.price.get_currency_conversion())
        if supplier is not None:
            await self._do("ESI CancelMessage 3", self._supplier(
                lambda: supplier.cancel_message(MESSAGE_ID)))
        await sleep(1.0)
        await self._supply_off_and_on()
        await sleep(1.0)
        if self._sample_id is not None:
            sample_id = self._sample_id
            await self._do("hub GetSampledData", lambda: self._hub_metering().get_sampled_data(
                sample_id, 0, 0, SAMPLES))

    def _supplier(self, action: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
        async def run() -> Any:
            result = action()
            self.hub.supplier.flush()
            return result
        return run

    async def _head_end_requests(self) -> None:
        """ScheduleSnapshot (daily, the first in two simulated minutes) and StartSampling
        (the delivered register every simulated minute, 20 samples) from the hub."""
        now = self.clock()
        first = to_zcl_time(int(now) // 60 * 60 + 120)
        payload = SnapshotSchedulePayload(
            snapshot_schedule_id=1, snapshot_start_time=first,
            snapshot_schedule=SnapshotSchedule(frequency=1, frequency_type=0,
                                               wild_card_frequency=0),
            snapshot_payload_type=SnapshotPayloadType(0),
            snapshot_cause=SnapshotCause(0x00010000))
        await self._do("hub ScheduleSnapshot", lambda: self._hub_metering().schedule_snapshot(
            to_zcl_time(now), 0, 1, [payload]))
        rsp = await self._do("hub StartSampling", lambda: self._hub_metering().start_sampling(
            to_zcl_time(now), 0, 0, SAMPLE_INTERVAL, SAMPLES))
        if rsp is not None and hasattr(rsp, "sample_id"):
            self._sample_id = int(rsp.sample_id)

    async def _supply_off_and_on(self) -> None:
        """ChangeSupply: off one simulated minute from now (its SupplyStatusResponse comes
        when it is carried out), then on again at once, each acknowledged."""
        try:
            metering = self._hub_metering()
        except LookupError as exc:
            LOGGER.warning("no ChangeSupply in this demo: %s", exc)
            return
        now = self.clock()
        provider = self.hub.supplier.price.tariff.provider_id \
            if self.hub.supplier is not None and self.hub.supplier.price is not None \
            else 0x0000ABCD
        base = to_zcl_time(now)
        await self._do("hub ChangeSupply off (scheduled)", lambda: metering.change_supply(
            provider, base, base, base + 60, 0, 0x01))
        await asyncio.sleep(3.0)
        await self._do("hub ChangeSupply on", lambda: metering.change_supply(
            provider, base + 1, to_zcl_time(self.clock()), 0, 2, 0x01))


async def run_se_script(hub: Any, ihd: Any, clock: Callable[[], float]) -> SeScript:
    """Run the script (see the module docstring); returns what it did."""
    script = SeScript(hub, ihd, clock)
    await script.run()
    return script


__all__ = ["SeScript", "run_se_script"]
