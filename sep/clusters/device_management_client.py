"""The meter as a client of the supplier's Device Management server (SE 1.4 D.10), sans-IO.

What the server (the comms hub's ESI) sends, and what the meter does:

- PublishChangeOfTenancy (provider id, issuer event id, tariff type, implementation time,
  proposed tenancy change control): at the implementation time (0 = now) the control is
  carried out (:class:`~sep.clusters.tenancy.MeterChanges`, Table D-164);
  0xFFFFFFFF cancels the pending change with that issuer event id.
- PublishChangeOfSupplier (current and proposed provider ids, implementation time,
  provider change control, the new provider's name and contact details): at the time the
  meter's provider becomes the proposed one (``on_provider``: the tariff, the supply
  control and this client take it), after the control is carried out.
- UpdateSiteID / UpdateCIN: the Site ID / Customer ID Number, now or at a time;
  0xFFFFFFFF cancels a pending update.
- SetEventConfiguration: the event configuration of the events it selects (by list,
  event group, log or configuration match), now or from its start time;
  GetEventConfiguration → ReportEventConfiguration (several commands when the
  configuration does not fit one 80-byte payload).
- RequestNewPasswordResponse: a password the meter asked for (RequestNewPassword); kept
  for its duration, never logged.

Every change is logged (``record(kind, details)``): received, carried out, cancelled or
refused. Statuses: from anyone but the authorised server (the injected ``authorised``
predicate) NOT_AUTHORIZED; another provider id NOT_AUTHORIZED; an issuer event id older
than the last of its kind INVALID_VALUE (the same one again: SUCCESS, nothing done);
a cancellation of nothing pending NOT_FOUND; reserved values (tariff type, control bits,
configuration control, log, password type) INVALID_FIELD; strings over their SE length
INVALID_VALUE; a GetEventConfiguration for events the meter does not have NOT_FOUND;
truncated payloads MALFORMED_COMMAND.

The requests the meter makes (:meth:`DeviceManagementClient.hello`): GetChangeOfTenancy,
GetChangeOfSupplier, GetSiteID, GetCIN, and RequestNewPassword while it has no consumer
password. The client attributes (Provider ID, and the configuration of every event id,
whose attribute id is the event id) answer Read Attributes from the server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from zigpy.zcl import foundation

from sep.clusters.base import ClusterServer
from sep.clusters.event_config import EventConfiguration, valid_configuration
from sep.clusters.general import ZIGBEE_EPOCH
from sep.clusters.tenancy import SNAPSHOT_CAUSE_CHANGE_OF_SUPPLIER, SNAPSHOT_CAUSE_CHANGE_OF_TENANCY
from sep.zcl import device_management as dm
from sep.zcl.frames import (
    MalformedFrame,
    Request,
    Status,
    build_frame,
    decode_schema,
    response_header,
)

LOGGER = logging.getLogger(__name__)

REPORT_EVENT_CONFIGURATION = 0x04
CONSUMER_PASSWORD = 0x02
REPORT_RECORD = 3


class Refused(Exception):
    def __init__(self, status: Status, why: str, kind: str | None = None) -> None:
        super().__init__(why)
        self.status = status
        self.kind = kind  # the event to log, if any


@dataclasses.dataclass
class Pending:
    kind: str  # tenancy, supplier, site_id, cin, event_configuration
    issuer_event_id: int
    at: int  # unix seconds
    args: Any


@dataclasses.dataclass
class Password:
    password_type: int
    digest: str  # SHA-256 of the password (the password itself is not kept in the log)
    valid_from: int
    valid_until: int | None


class DeviceManagementClient(ClusterServer):
    cluster = dm.DeviceManagementClientAttributes

    def __init__(self, *, provider_id: Callable[[], int], config: EventConfiguration,
                 changes: Any,
                 authorised: Callable[[int], bool] = lambda nwk: nwk == 0x0000,
                 record: Callable[[str, dict[str, Any]], None] = lambda kind, details: None,
                 on_provider: Callable[[int, float], None] = lambda provider, now: None,
                 on_configuration: Callable[[dict[int, int]], None] = lambda values: None
                 ) -> None:
        super().__init__()
        self.provider_id = provider_id
        self.config = config
        self.changes = changes
        self.authorised = authorised
        self.record = record
        self.on_provider = on_provider
        self.on_configuration = on_configuration
        self.site_id: bytes | None = None
        self.cin: bytes | None = None
        self.provider_name = b""
        self.provider_contact = b""
        self.pending: dict[str, Pending] = {}
        self.done: list[dict[str, Any]] = []  # changes carried out (the last 20)
        self.passwords: dict[int, Password] = {}
        self.reports_sent = 0
        self._last_ids: dict[str, int] = {}
        self._tsn = 0xC0
        self.getters[0x0000] = lambda: self.provider_id()
        for event_id in self.config.values:
            if event_id in self.defs:
                self.getters[event_id] = (lambda e: lambda: self.config.get(e))(event_id)
        self._handlers = {
            0x00: self._change_of_tenancy, 0x01: self._change_of_supplier,
            0x02: self._password, 0x03: self._site_id, 0x04: self._set_event_configuration,
            0x05: self._get_event_configuration, 0x06: self._cin,
        }

    # -- requests of ours ----------------------------------------------------------------------
    def request(self, command_id: int, payload: bytes = b"") -> bytes:
        self._tsn = 0xC0 | ((self._tsn + 1) & 0x3F)
        return build_frame(foundation.ZCLHeader.cluster(self._tsn, command_id), payload)

    def hello(self) -> list[bytes]:
        """What the meter asks the server when it finds it."""
        out = [self.request(c) for c in (0x00, 0x01, 0x03, 0x05)]
        if CONSUMER_PASSWORD not in self.passwords:
            out.append(self.request(0x02, bytes([CONSUMER_PASSWORD])))
        return out

    # -- dispatch -------------------------------------------------------------------------------
    def handle(self, req: Request, now: float) -> list[bytes]:
        """A server-to-client frame on Device Management."""
        if not self.authorised(req.src_nwk):
            if req.is_general or req.broadcast:
                return []
            self.record("UNAUTHORISED_HAN_ACTION", {"cluster": "0x0708",
                                                    "command": req.command_id,
                                                    "nwk": f"0x{req.src_nwk:04X}"})
            return self._status(req, Status.NOT_AUTHORIZED)
        return super().handle(req, now)

    def _cluster_command(self, req: Request, now: float) -> list[bytes]:
        if req.manufacturer is not None:
            return self._status(req, Status.UNSUP_MANUF_CLUSTER_COMMAND)
        handler = self._handlers.get(req.command_id)
        if handler is None:
            return self._status(req, Status.UNSUP_CLUSTER_COMMAND)
        args = decode_schema(dm.schema(req.command_id), req.payload)
        try:
            result = handler(req, args, now)
        except Refused as exc:
            LOGGER.info("Device Management 0x%02X refused: %s", req.command_id, exc)
            if exc.kind is not None:
                self.record(exc.kind, {"status": exc.status.name, "reason": str(exc)})
            return self._status(req, exc.status)
        if isinstance(result, list):
            return result
        return self._status(req, Status.SUCCESS)

    def _discover_commands(self, req: Request, now: float) -> list[bytes]:
        args = decode_schema(
            foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Discover_Commands_Received]
            .schema, req.payload)
        if req.command_id == foundation.GeneralCommand.Discover_Commands_Received:
            ids, command = sorted(self._handlers), \
                foundation.GeneralCommand.Discover_Commands_Received_rsp
        else:
            ids, command = sorted(int(c) for c in dm.DeviceManagement.server_commands), \
                foundation.GeneralCommand.Discover_Commands_Generated_rsp
        ids = [i for i in ids if i >= args.start_command_id]
        chosen = ids[: args.max_command_ids]
        return self._reply(req, command, bytes([int(len(chosen) == len(ids))]) + bytes(chosen))

    # -- checks --------------------------------------------------------------------------------
    def _provider(self, provider_id: int, refused_kind: str | None = None) -> None:
        if provider_id != self.provider_id():
            raise Refused(Status.NOT_AUTHORIZED, f"provider id {provider_id}", refused_kind)

    def _fresh(self, kind: str, event_id: int) -> bool:
        """False when it is the same command again; Refused when older."""
        last = self._last_ids.get(kind)
        if last is not None and event_id == last:
            return False
        if last is not None and event_id < last:
            raise Refused(Status.INVALID_VALUE, f"issuer event id {event_id} is not newer")
        return True

    @staticmethod
    def _when(value: int, now: float) -> int:
        return int(now) if value == dm.IMMEDIATE else value + ZIGBEE_EPOCH

    def _cancel(self, kind: str, event_id: int, cancelled_kind: str) -> None:
        p = self.pending.get(kind)
        if p is None or p.issuer_event_id != event_id:
            raise Refused(Status.NOT_FOUND, f"no pending {kind} change {event_id}")
        del self.pending[kind]
        self.record(cancelled_kind, {"issuer_event_id": event_id})

    def _schedule(self, kind: str, event_id: int, at: int, args: Any, now: float) -> None:
        self._last_ids[kind] = event_id
        self.pending[kind] = Pending(kind, event_id, at, args)
        self.tick(now)

    # -- commands --------------------------------------------------------------------------
    def _change_of_tenancy(self, req: Request, args: Any, now: float) -> None:
        self._provider(int(args.provider_id), "TENANCY_CHANGE_REFUSED")
        event_id, when = int(args.issuer_event_id), int(args.implementation_date_time)
        if int(args.tariff_type) & 0x0F > 0x2 or int(args.tariff_type) >> 4:
            raise Refused(Status.INVALID_FIELD, "tariff type", "TENANCY_CHANGE_REFUSED")
        if when == dm.CANCEL:
            self._cancel("tenancy", event_id, "TENANCY_CHANGE_CANCELLED")
            return
        control = int(args.proposed_tenancy_change_control)
        if control & dm.CONTROL_RESERVED:
            raise Refused(Status.INVALID_FIELD, f"control 0x{control:08X}",
                          "TENANCY_CHANGE_REFUSED")
        if not self._fresh("tenancy", event_id):
            return
        at = self._when(when, now)
        self.record("TENANCY_CHANGE_RECEIVED", {"issuer_event_id": event_id, "at": at,
                                                "control": f"0x{control:08X}"})
        self._schedule("tenancy", event_id, at, args, now)

    def _change_of_supplier(self, req: Request, args: Any, now: float) -> None:
        self._provider(int(args.current_provider_id), "SUPPLIER_CHANGE_REFUSED")
        event_id = int(args.issuer_event_id)
        when = int(args.provider_change_implementation_time)
        if int(args.tariff_type) & 0x0F > 0x2 or int(args.tariff_type) >> 4:
            raise Refused(Status.INVALID_FIELD, "tariff type", "SUPPLIER_CHANGE_REFUSED")
        if when == dm.CANCEL:
            self._cancel("supplier", event_id, "SUPPLIER_CHANGE_CANCELLED")
            return
        control = int(args.provider_change_control)
        if control & dm.CONTROL_RESERVED:
            raise Refused(Status.INVALID_FIELD, f"control 0x{control:08X}",
                          "SUPPLIER_CHANGE_REFUSED")
        new = int(args.proposed_provider_id)
        if new in (0, 0xFFFFFFFF) or new == self.provider_id():
            raise Refused(Status.INVALID_VALUE, f"proposed provider {new}",
                          "SUPPLIER_CHANGE_REFUSED")
        if len(bytes(args.proposed_provider_name)) > dm.MAX_PROVIDER_NAME or \
                len(bytes(args.proposed_provider_contact_details)) > dm.MAX_CONTACT_DETAILS:
            raise Refused(Status.INVALID_VALUE, "name or contact details too long",
                          "SUPPLIER_CHANGE_REFUSED")
        if not self._fresh("supplier", event_id):
            return
        at = self._when(when, now)
        self.record("SUPPLIER_CHANGE_RECEIVED", {"issuer_event_id": event_id, "at": at,
                                                 "proposed_provider_id": new,
                                                 "control": f"0x{control:08X}"})
        self._schedule("supplier", event_id, at, args, now)

    def _password(self, req: Request, args: Any, now: float) -> None:
        kind = int(args.password_type)
        if kind not in dm.PASSWORD_TYPES:
            raise Refused(Status.INVALID_FIELD, f"password type {kind}")
        secret = bytes(args.password)
        if not secret or len(secret) > dm.MAX_PASSWORD:
            raise Refused(Status.INVALID_VALUE, "password length")
        if not self._fresh(f"password{kind}", int(args.issuer_event_id)):
            return
        self._last_ids[f"password{kind}"] = int(args.issuer_event_id)
        start = self._when(int(args.implementation_date_time), now)
        minutes = int(args.duration_in_minutes)
        self.passwords[kind] = Password(kind, hashlib.sha256(secret).hexdigest(), start,
                                        None if minutes == 0 else start + 60 * minutes)
        self.record("PASSWORD_CHANGE", {"password_type": kind, "from": start,
                                        "minutes": minutes})

    def _site_id(self, req: Request, args: Any, now: float) -> None:
        self._provider(int(args.provider_id))
        event_id, when = int(args.issuer_event_id), int(args.site_id_time)
        if when == dm.CANCEL:
            self._cancel("site_id", event_id, "SITE_ID_CANCELLED")
            return
        if len(bytes(args.site_id)) > dm.MAX_SITE_ID:
            raise Refused(Status.INVALID_VALUE, "site id over 32 bytes")
        if self._fresh("site_id", event_id):
            self._schedule("site_id", event_id, self._when(when, now), args, now)

    def _cin(self, req: Request, args: Any, now: float) -> None:
        self._provider(int(args.provider_id))
        event_id, when = int(args.issuer_event_id), int(args.implementation_time)
        if when == dm.CANCEL:
            self._cancel("cin", event_id, "CIN_CANCELLED")
            return
        if len(bytes(args.customer_id_number)) > dm.MAX_CIN:
            raise Refused(Status.INVALID_VALUE, "CIN over 24 bytes")
        if self._fresh("cin", event_id):
            self._schedule("cin", event_id, self._when(when, now), args, now)

    def _set_event_configuration(self, req: Request, args: Any, now: float) -> None:
        value = int(args.event_configuration)
        control = int(args.configuration_control)
        if not valid_configuration(value):
            raise Refused(Status.INVALID_FIELD, f"event configuration 0x{value:02X}")
        try:
            argument = dm.parse_selector(control, bytes(args.selector))
        except LookupError as exc:
            raise Refused(Status.INVALID_FIELD, str(exc)) from None
        except ValueError as exc:
            raise MalformedFrame(str(exc)) from None
        if control == 0x02 and not 1 <= int(argument) <= 5:
            raise Refused(Status.INVALID_FIELD, f"log {argument}")
        if not self.config.select(control, argument):
            raise Refused(Status.NOT_FOUND, "no event of this meter is selected")
        event_id = int(args.issuer_event_id)
        if self._fresh("event_configuration", event_id):
            self._schedule("event_configuration", event_id,
                           self._when(int(args.start_date_time), now),
                           (value, control, argument), now)

    def _get_event_configuration(self, req: Request, args: Any, now: float) -> list[bytes]:
        records = self.config.report(int(args.event_id))
        if not records:
            raise Refused(Status.NOT_FOUND, f"event {int(args.event_id):#06x}")
        per = (dm.MAX_PAYLOAD - 2) // REPORT_RECORD
        parts = [records[i:i + per] for i in range(0, len(records), per)]
        out = []
        for index, part in enumerate(parts):
            payload = dm.request_schema(REPORT_EVENT_CONFIGURATION)(
                command_index=index, total_commands=len(parts),
                event_configurations=[dm.EventConfigurationRecord(event_id=e,
                                                                  event_configuration=c)
                                      for e, c in part]).serialize()
            # the answer is a client→server command with the request's TSN
            hdr = response_header(req, REPORT_EVENT_CONFIGURATION, general=False)
            out.append(build_frame(hdr, payload))
        self.reports_sent += len(out)
        return out

    # -- time -------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        for kind, p in sorted(self.pending.items(), key=lambda kv: kv[1].at):
            if p.at <= now:
                del self.pending[kind]
                self._carry_out(p, now)

    def _carry_out(self, p: Pending, now: float) -> None:
        a = p.args
        entry: dict[str, Any] = {"kind": p.kind, "issuer_event_id": p.issuer_event_id,
                                 "at": int(now)}
        if p.kind == "tenancy":
            control = int(a.proposed_tenancy_change_control)
            entry["actions"] = self.changes.apply(control, now,
                                                  cause=SNAPSHOT_CAUSE_CHANGE_OF_TENANCY)
            self.record("CHANGE_OF_TENANCY", {"issuer_event_id": p.issuer_event_id,
                                              "control": f"0x{control:08X}",
                                              "actions": entry["actions"]})
        elif p.kind == "supplier":
            control = int(a.provider_change_control)
            old, new = self.provider_id(), int(a.proposed_provider_id)
            entry["actions"] = self.changes.apply(control, now,
                                                  cause=SNAPSHOT_CAUSE_CHANGE_OF_SUPPLIER)
            self.provider_name = bytes(a.proposed_provider_name)
            self.provider_contact = bytes(a.proposed_provider_contact_details)
            self.on_provider(new, now)
            self.record("CHANGE_OF_SUPPLIER", {"issuer_event_id": p.issuer_event_id,
                                               "from": old, "to": new,
                                               "control": f"0x{control:08X}",
                                               "actions": entry["actions"]})
        elif p.kind == "site_id":
            self.site_id = bytes(a.site_id)
            self.record("SITE_ID_UPDATED", {"issuer_event_id": p.issuer_event_id,
                                            "site_id": self.site_id.decode(errors="replace")})
        elif p.kind == "cin":
            self.cin = bytes(a.customer_id_number)
            self.record("CIN_UPDATED", {"issuer_event_id": p.issuer_event_id,
                                        "cin": self.cin.decode(errors="replace")})
        elif p.kind == "event_configuration":
            value, control, argument = a
            ids = self.config.select(control, argument)
            self.config.apply(ids, value)
            self.on_configuration(dict(self.config.values))
            self.record("EVENT_CONFIGURATION_SET", {"issuer_event_id": p.issuer_event_id,
                                                    "configuration": f"0x{value:02X}",
                                                    "events": len(ids)})
        self.done.append(entry)
        del self.done[:-20]

    # -- what a display or dashboard shows --------------------------------------------------
    def summary(self, now: float) -> str:
        parts = []
        for kind, label in (("tenancy", "tenancy change"), ("supplier", "supplier change")):
            p = self.pending.get(kind)
            if p is not None:
                parts.append(f"{label} at {_hhmm(p.at)}")
        for entry in reversed(self.done):
            if entry["kind"] in ("tenancy", "supplier"):
                parts.append(f"{entry['kind']} changed {_hhmm(entry['at'])}")
                break
        return ", ".join(parts) or "no change"


def _hhmm(unix: int) -> str:
    return time.strftime("%H:%M", time.gmtime(unix))
