"""What the comms hub does with Calendar, Device Management and Events in a demo run.

A default ``hubsim demo`` (60 s at 60× speed: an hour) puts every command of those
clusters on the air, in both directions where a command has two legs (hub → meter and
meter → display):

- Device Management: a Site ID and a Customer ID Number; a change of tenancy five
  simulated minutes ahead (snapshots before and after, the load profile history blocked
  from the HAN, the billing period restarted); a change of supplier three hours ahead
  (still pending when the run ends); an event configuration (the Site ID and CIN updates
  pushed to the HAN) and a request for the meter's configuration (ReportEventConfiguration
  back). The meter asked at start for tenancy, supplier, Site ID, CIN and a password.
- Calendar: a "Winter peak" calendar scheduled ten minutes ahead and then cancelled
  (CancelCalendar reaches the display, which asks GetCalendarCancellation), then a
  "Weekend saver" calendar from two minutes ahead, which the meter follows and the display
  shows.
- Events: the hub (the trust centre, which may) reads the meter's log, clears its general
  log and reads again; the display is pushed the events configured for the HAN.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any

from hubsim.hub import CommsHub
from sep.clock import ScaledClock
from sep.clusters.event_config import APPLY_BY_LIST, PUSH_HAN
from sep.meter.tariff import Switch, Tariff
from sep.zcl import device_management as dm
from sep.zcl import events as ev

LOGGER = logging.getLogger(__name__)
NEW_PROVIDER = 0x0000BEEF
TENANCY_CONTROL = (dm.PRE_SNAPSHOTS | dm.POST_SNAPSHOTS | dm.RESET_BILLING_PERIOD
                   | dm.BLOCK_HISTORICAL_LOAD_PROFILE
                   | dm.CONTACTOR_UNCHANGED << dm.CONTACTOR_SHIFT)
SUPPLIER_CONTROL = dm.PRE_SNAPSHOTS | dm.CONTACTOR_UNCHANGED << dm.CONTACTOR_SHIFT


def variant(tariff: Tariff, label: str, week: tuple[tuple[Switch, ...], ...]) -> Tariff:
    """The supplier's tariff with another weekly schedule (and no seasons): a calendar."""
    return dataclasses.replace(tariff, label=label, schedule=week, seasons=())


async def han_script(hub: CommsHub, clock: ScaledClock, meter: Any, *, step: float = 2.0
                     ) -> None:
    services = hub.services
    supplier = hub.supplier
    tariff = supplier.price.tariff if supplier is not None and supplier.price else None

    async def at(seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def do(what: str, coro: Any) -> Any:
        try:
            return await coro
        except Exception as exc:  # noqa: BLE001 - the demo goes on
            LOGGER.warning("demo step %s failed: %r", what, exc)
            return None

    def now() -> float:
        return clock.now()

    await at(step)
    services.update_site_id("GB-SITE-0042")
    services.update_cin("CIN-7788-1234")
    await at(step)
    services.change_of_tenancy(at=int(now()) + 300, control=TENANCY_CONTROL)
    services.change_of_supplier(at=int(now()) + 3 * 3600, new_provider_id=NEW_PROVIDER,
                                name="New Energy", contact="0800 111 2222",
                                control=SUPPLIER_CONTROL)
    await at(step)
    services.set_event_configuration(
        configuration=ev.LOG_GENERAL | PUSH_HAN, control=APPLY_BY_LIST,
        argument=[ev.UPDATE_SITE_ID_ACTIONED, ev.UPDATE_CIN_ACTIONED])
    services.get_event_configuration(0xFFFF)
    if tariff is not None:
        await at(step)
        peak = variant(tariff, "Winter peak", ((Switch(0, 1), Switch(420, 2), Switch(960, 3),
                                                Switch(1200, 2)),) * 7)
        scheduled = services.publish_calendar(peak, start=int(now()) + 600)
        await at(2 * step)
        with contextlib.suppress(LookupError):
            services.cancel_calendar(scheduled.issuer_calendar_id)
        await at(step)
        weekend = ((Switch(0, 1), Switch(420, 2), Switch(960, 3), Switch(1140, 2)),) * 5 + (
            (Switch(0, 1), Switch(600, 2), Switch(1320, 1)),) * 2
        services.publish_calendar(variant(tariff, "Weekend saver", weekend),
                                  start=int(now()) + 120)
    if meter is None:
        return
    await at(2 * step)
    answer = await do("read event log", services.read_event_log(meter.nwk,
                                                                 meter.endpoint.endpoint_id))
    if answer is not None:
        services.note(f"meter event log: {len(answer.events)} events "
                       f"({answer.commands} PublishEventLog)")
    await at(step)
    cleared = await do("clear event log", services.clear_event_log(
        meter.nwk, meter.endpoint.endpoint_id, ev.LOG_GENERAL))
    if cleared is not None:
        services.note(f"meter general event log cleared (0x{cleared:02X})")
    await at(step)
    answer = await do("read event log", services.read_event_log(
        meter.nwk, meter.endpoint.endpoint_id, full=False, number=10))
    if answer is not None:
        services.note(f"meter event log after the clear: {answer.total_matching} events")
