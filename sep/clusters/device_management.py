"""Device Management server (SE 1.4 D.10), sans-IO: the supplier's side, on the comms hub.

The local API publishes to the clients (the meters): a change of tenancy or of supplier
with its implementation time and change control, a Site ID or Customer ID Number update,
an event configuration (:meth:`set_event_configuration`) and a request for it
(:meth:`get_event_configuration`). The clients ask for what they missed:
GetChangeOfTenancy / GetChangeOfSupplier / GetSiteID / GetCIN → the last publication of
that kind (NOT_FOUND when there is none, or it was cancelled); RequestNewPassword
(password type 1..4, else INVALID_FIELD) → RequestNewPasswordResponse with a new random
password, only for the nodes ``password_for`` allows (else NOT_AUTHORIZED);
ReportEventConfiguration (a client's answer to GetEventConfiguration) is kept in
:attr:`reports`. Attributes: the Supplier Control and Tenancy Control sets.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

import zigpy.types as t

from sep.clusters.base import ClusterServer
from sep.clusters.general import to_zcl_time
from sep.zcl import device_management as dm
from sep.zcl.frames import Request, Status, build_frame, response_header

LOGGER = logging.getLogger(__name__)

PUBLISH_CHANGE_OF_TENANCY = 0x00
PUBLISH_CHANGE_OF_SUPPLIER = 0x01
REQUEST_NEW_PASSWORD_RESPONSE = 0x02
UPDATE_SITE_ID = 0x03
SET_EVENT_CONFIGURATION = 0x04
GET_EVENT_CONFIGURATION = 0x05
UPDATE_CIN = 0x06
PASSWORD_MINUTES = 24 * 60


class DeviceManagementServer(ClusterServer):
    cluster = dm.DeviceManagement

    def __init__(self, *, provider_id: int, provider_name: str = "",
                 contact_details: str = "",
                 password_for: Callable[[int], bool] = lambda nwk: True) -> None:
        super().__init__()
        self.provider_id = provider_id
        self.password_for = password_for
        self.last: dict[int, bytes] = {}  # command id → the last payload published
        self.reports: dict[int, dict[int, int]] = {}  # client nwk → event id → configuration
        self.passwords: list[dict[str, Any]] = []  # what was issued (for the demo's view)
        self._last_id = 0
        self.values.update({
            0x0100: provider_id,
            0x0101: t.LVBytes(provider_name.encode()),
            0x0102: t.LVBytes(contact_details.encode()),
        })
        self.commands.update({
            0x00: self._get(PUBLISH_CHANGE_OF_TENANCY), 0x01: self._get(PUBLISH_CHANGE_OF_SUPPLIER),
            0x02: self._request_new_password, 0x03: self._get(UPDATE_SITE_ID),
            0x04: self._report_event_configuration, 0x05: self._get(UPDATE_CIN),
        })

    def new_id(self, now: float) -> int:
        self._last_id = max(self._last_id + 1, to_zcl_time(now))
        return self._last_id

    @staticmethod
    def _time(at: float | None) -> int:
        return dm.IMMEDIATE if at is None else to_zcl_time(at)

    def _publish(self, command_id: int, payload: bytes) -> bytes:
        self.last[command_id] = payload
        return self.push(command_id, payload)

    # -- local API --------------------------------------------------------------------------
    def change_of_tenancy(self, now: float, *, at: float | None, control: int,
                          tariff_type: int = 0x00) -> int:
        """Publish a change of tenancy (``at`` None: now); returns its issuer event id."""
        event_id = self.new_id(now)
        self._publish(PUBLISH_CHANGE_OF_TENANCY, dm.schema(PUBLISH_CHANGE_OF_TENANCY)(
            provider_id=self.provider_id, issuer_event_id=event_id, tariff_type=tariff_type,
            implementation_date_time=self._time(at),
            proposed_tenancy_change_control=control).serialize())
        self.values[0x0200] = self._time(at)
        self.values[0x0201] = control
        return event_id

    def cancel_change_of_tenancy(self, event_id: int) -> bytes:
        frame = self.push(PUBLISH_CHANGE_OF_TENANCY, dm.schema(PUBLISH_CHANGE_OF_TENANCY)(
            provider_id=self.provider_id, issuer_event_id=event_id, tariff_type=0,
            implementation_date_time=dm.CANCEL, proposed_tenancy_change_control=0).serialize())
        self.last.pop(PUBLISH_CHANGE_OF_TENANCY, None)
        self.values.pop(0x0200, None)
        self.values.pop(0x0201, None)
        return frame

    def change_of_supplier(self, now: float, *, at: float | None, new_provider_id: int,
                           name: str, contact: str, control: int = 0,
                           tariff_type: int = 0x00) -> int:
        event_id = self.new_id(now)
        self._publish(PUBLISH_CHANGE_OF_SUPPLIER, dm.schema(PUBLISH_CHANGE_OF_SUPPLIER)(
            current_provider_id=self.provider_id, issuer_event_id=event_id,
            tariff_type=tariff_type, proposed_provider_id=new_provider_id,
            provider_change_implementation_time=self._time(at), provider_change_control=control,
            proposed_provider_name=t.LVBytes(name.encode()),
            proposed_provider_contact_details=t.LVBytes(contact.encode())).serialize())
        self.values.update({0x0110: new_provider_id, 0x0111: t.LVBytes(name.encode()),
                            0x0112: self._time(at), 0x0113: control,
                            0x0114: t.LVBytes(contact.encode())})
        return event_id

    def supplier_changed(self, new_provider_id: int, name: str, contact: str) -> None:
        """At the implementation time: this server now speaks for the new supplier."""
        self.provider_id = new_provider_id
        self.values.update({0x0100: new_provider_id, 0x0101: t.LVBytes(name.encode()),
                            0x0102: t.LVBytes(contact.encode())})
        for attr in (0x0110, 0x0111, 0x0112, 0x0113, 0x0114):
            self.values.pop(attr, None)

    def update_site_id(self, now: float, site_id: str, *, at: float | None = None) -> int:
        event_id = self.new_id(now)
        self._publish(UPDATE_SITE_ID, dm.schema(UPDATE_SITE_ID)(
            issuer_event_id=event_id, site_id_time=self._time(at), provider_id=self.provider_id,
            site_id=t.LVBytes(site_id.encode())).serialize())
        return event_id

    def update_cin(self, now: float, cin: str, *, at: float | None = None) -> int:
        event_id = self.new_id(now)
        self._publish(UPDATE_CIN, dm.schema(UPDATE_CIN)(
            issuer_event_id=event_id, implementation_time=self._time(at),
            provider_id=self.provider_id,
            customer_id_number=t.LVBytes(cin.encode())).serialize())
        return event_id

    def set_event_configuration(self, now: float, *, configuration: int, control: int,
                                argument: Any, start: float | None = None) -> int:
        event_id = self.new_id(now)
        self.push(SET_EVENT_CONFIGURATION, dm.schema(SET_EVENT_CONFIGURATION)(
            issuer_event_id=event_id, start_date_time=self._time(start),
            event_configuration=configuration, configuration_control=control,
            selector=dm.Rest(dm.selector_bytes(control, argument))).serialize())
        return event_id

    def get_event_configuration(self, event_id: int) -> bytes:
        return self.push(GET_EVENT_CONFIGURATION, dm.schema(GET_EVENT_CONFIGURATION)(
            event_id=event_id).serialize())

    # -- requests from clients -------------------------------------------------------------
    def _get(self, command_id: int) -> Callable[[Request, Any, float], list[bytes] | Status]:
        def answer(req: Request, args: Any, now: float) -> list[bytes] | Status:
            payload = self.last.get(command_id)
            if payload is None:
                return Status.NOT_FOUND
            return [build_frame(response_header(req, command_id, general=False), payload)]
        return answer

    def _request_new_password(self, req: Request, args: Any, now: float
                              ) -> list[bytes] | Status:
        kind = int(args.password_type)
        if kind not in dm.PASSWORD_TYPES:
            return Status.INVALID_FIELD
        if not self.password_for(req.src_nwk):
            return Status.NOT_AUTHORIZED
        password = "".join(secrets.choice("0123456789") for _ in range(8))
        event_id = self.new_id(now)
        self.passwords.append({"nwk": req.src_nwk, "type": kind, "issuer_event_id": event_id})
        del self.passwords[:-20]
        payload = dm.schema(REQUEST_NEW_PASSWORD_RESPONSE)(
            issuer_event_id=event_id, implementation_date_time=dm.IMMEDIATE,
            duration_in_minutes=PASSWORD_MINUTES, password_type=kind,
            password=t.LVBytes(password.encode())).serialize()
        return [build_frame(response_header(req, REQUEST_NEW_PASSWORD_RESPONSE, general=False),
                            payload)]

    def _report_event_configuration(self, req: Request, args: Any, now: float) -> Status:
        if int(args.command_index) >= int(args.total_commands):
            return Status.INVALID_FIELD
        got = self.reports.setdefault(req.src_nwk, {})
        for record in args.event_configurations:
            got[int(record.event_id)] = int(record.event_configuration)
        return Status.SUCCESS
