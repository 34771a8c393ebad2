"""The meter's Calendar, Events, Device Management and Keep-Alive, wired (composition).

Part of the composition root (``sep/app.py`` builds one :class:`HanServices` and hands it
its packets and its periodic tick): it knows the meter's servers and its store, and
connects the sans-IO cluster objects to them.

- Calendar server (input cluster; also the client of the supplier's Calendar server,
  through the SupplierLink): follows the tariff's schedule; a calendar the supplier
  publishes becomes the tariff's schedule when it takes over, so the Price server's TOU
  prices and the tier registers follow it (when no supplier price event overrides them).
- Events server (input cluster) on the store's event log; the event configuration is kept
  in the store (config ``event_configuration``).
- Device Management client (output cluster) of the supplier's server: a change of tenancy
  or supplier carries out its change control on the meter (``sep/clusters/tenancy.py``).
- Keep-Alive client (output cluster) of the trust centre: after the missed keep-alives SE
  allows, ``on_trust_centre_lost(failures)`` (the radio layer searches, rejoins and
  redoes key establishment; by default the loss is logged and recorded as an event).
  On an EZSP stick the meter is the trust centre itself: it serves Keep-Alive instead.

Who may clear the event log, publish a calendar or manage the device: the ``authorised``
predicate the app passes (its supplier/trust-centre rule).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable
from typing import Any

import zigpy.exceptions

from sep.clusters.calendar import CalendarServer
from sep.clusters.device_management_client import DeviceManagementClient
from sep.clusters.event_config import EventConfiguration
from sep.clusters.events import EventsServer
from sep.clusters.keep_alive import (
    Discover,
    KeepAliveClient,
    KeepAliveServer,
    Read,
    TrustCentreBack,
    TrustCentreLost,
)
from sep.clusters.tenancy import MeterChanges
from sep.meter.calendar import CalendarError, TouCalendar, schedule_of
from sep.store import CorruptRecord
from sep.zcl.frames import SE_PROFILE, Reply

LOGGER = logging.getLogger(__name__)

DEVICE_MANAGEMENT = 0x0708
KEEP_ALIVE = 0x0025
#: the meter's local time (its Time server: GMT with EU summer time): local-time calendars
LOCAL_ZONE = "Europe/London"


class HanServices:
    def __init__(self, app: Any, *, authorised: Callable[[int], bool], seed: int = 1) -> None:
        self.app = app
        self.config = EventConfiguration()
        self.calendar = CalendarServer(follow=lambda: app.price.tariff,
                                       on_activate=self._calendar_in_force)
        self.events = EventsServer(None, config=self.config, authorised=authorised,
                                   record=self.record)
        self.changes = MeterChanges(metering=app.metering, price=app.price,
                                    messaging=app.messaging,
                                    clear_stored_profile=self._clear_stored_profile,
                                    profile_blocked=self._profile_blocked,
                                    prepayment=lambda: getattr(app, "prepayment", None))
        self.device_management = DeviceManagementClient(
            provider_id=lambda: app.price.tariff.provider_id, config=self.config,
            changes=self.changes, authorised=authorised, record=self.record,
            on_provider=self._provider_changed, on_configuration=self._save_configuration)
        self.keep_alive = KeepAliveClient(rng=random.Random(seed))
        self.keep_alive_server = KeepAliveServer()
        #: the radio layer's search, rejoin and key establishment plug in here
        self.on_trust_centre_lost: Callable[[int], Any] = lambda failures: None
        self.on_trust_centre_back: Callable[[], Any] = lambda: None
        self.store: Any = None
        self.persistence: Any = None
        self._waiting: TouCalendar | None = None  # in force, but not yet followable

    # -- composition ----------------------------------------------------------------------
    @property
    def servers(self) -> list[Any]:
        # On an EZSP stick the meter is the coordinator and trust centre (the SE 1.x ESP
        # model): then it serves Keep-Alive to the devices that joined it.
        trust_centre = getattr(self.app.settings, "radio", "virtual") == "ezsp"
        return [self.calendar, self.events, *([self.keep_alive_server] if trust_centre else [])]

    output_clusters = (DEVICE_MANAGEMENT, KEEP_ALIVE)

    def client_handlers(self) -> dict[int, Callable[[Any, float], list[bytes]]]:
        return {DEVICE_MANAGEMENT: self.device_management.handle,
                KEEP_ALIVE: self.keep_alive.handle}

    def attach(self, store: Any, persistence: Any) -> None:
        """The store is open: the event log, the saved event configuration, listeners."""
        self.store, self.persistence = store, persistence
        self.events.log = store
        persistence.listeners.append(self.events.on_event)
        try:
            saved = store.get_record("config", "event_configuration")
        except CorruptRecord:
            saved = None
            LOGGER.error("stored event configuration is corrupt: factory configuration used")
        if saved:
            self.config.values.update(EventConfiguration(
                {int(k): int(v) for k, v in saved.items()}).values)
        try:
            block = store.get_record("meter", "profile_block")
        except CorruptRecord:
            block = None
        if block:
            self.app.metering.profile.blocked_until = int(block["until"])

    def record(self, kind: str, details: dict[str, Any]) -> None:
        """An event for the log (and, as configured, for the HAN)."""
        if self.persistence is not None:
            self.persistence.event(kind, details)
        else:
            self.events.on_event(0, self.app.clock.now(), kind, details)

    def hello(self) -> list[bytes]:
        """Device Management requests for the supplier's ESI when it is found."""
        return self.device_management.hello()

    # -- periodic ---------------------------------------------------------------------------
    async def tick(self, now: float) -> None:
        self.device_management.tick(now)
        waiting = self._waiting
        if waiting is not None:
            if self.calendar.active(now) is waiting:
                self.calendar.reactivate(waiting)
            else:
                self._waiting = None  # another calendar took over
        app = self.app
        if app.nwk == 0x0000:
            return  # the meter is the trust centre itself (EZSP): no keep-alive
        for action in self.keep_alive.poll(now):
            if isinstance(action, Discover):
                # sent from its own task, like every frame: the periodic loop never waits on
                # the radio (a stop cancels the send, not the loop in the middle of it)
                task = asyncio.get_running_loop().create_task(self._discover())
                app._send_tasks.add(task)
                task.add_done_callback(app._send_tasks.discard)
            elif isinstance(action, Read):
                app._send(Reply(dst_nwk=action.nwk, dst_ep=action.endpoint,
                                src_ep=app.endpoint.endpoint_id, profile_id=SE_PROFILE,
                                cluster_id=KEEP_ALIVE, data=action.frame))
            elif isinstance(action, TrustCentreLost):
                LOGGER.error("trust centre lost: search and rejoin, redo key establishment")
                self.record("TRUST_CENTRE_LOST", {"failures": action.failures})
                self.on_trust_centre_lost(action.failures)
            elif isinstance(action, TrustCentreBack):
                self.record("TRUST_CENTRE_BACK", {})
                self.on_trust_centre_back()

    async def _discover(self) -> None:
        try:
            await self.app.match_descriptor([KEEP_ALIVE], self._keep_alive_found)
        except (zigpy.exceptions.DeliveryError, OSError) as exc:
            LOGGER.debug("keep-alive discovery not sent: %s", exc)

    def _keep_alive_found(self, nwk: int, endpoints: list[int]) -> None:
        self.keep_alive.found(nwk, endpoints, self.app.clock.now())

    # -- effects on the meter -----------------------------------------------------------------
    def _calendar_in_force(self, calendar: TouCalendar) -> None:
        price = self.app.price
        try:
            price.tariff = schedule_of(calendar, price.tariff, local_zone=LOCAL_ZONE)
        except CalendarError as exc:
            if self._waiting is not calendar:
                LOGGER.info("calendar %d waits for the tariff: %s", calendar.issuer_calendar_id,
                            exc)
            self._waiting = calendar  # tried again each tick (the tariff's tiers may come)
            return
        self._waiting = None
        self.record("CALENDAR_IN_FORCE", {"issuer_calendar_id": calendar.issuer_calendar_id,
                                          "name": calendar.name})

    def _provider_changed(self, provider_id: int, now: float) -> None:
        app = self.app
        app.price.tariff = dataclasses.replace(app.price.tariff, provider_id=provider_id)
        app.metering.supply.provider_id = provider_id

    def _save_configuration(self, values: dict[int, int]) -> None:
        if self.store is not None:
            self.store.put_record("config", "event_configuration",
                                  {str(k): v for k, v in values.items()})

    def _clear_stored_profile(self) -> None:
        if self.store is not None:
            self.store.clear_intervals()

    def _profile_blocked(self, until: int) -> None:
        if self.store is not None:
            self.store.put_record("meter", "profile_block", {"until": until})

    # -- what a dashboard shows -------------------------------------------------------------
    def state(self, now: float) -> dict[str, Any]:
        cal = self.calendar.active(now)
        return {"calendar": None if cal is None else cal.name,
                "tenancy": self.device_management.summary(now),
                "keep_alive_failures": self.keep_alive.failures}
