"""Which SE event each entry of the meter's event log is, and how each event is configured.

The store's event log (``sep/store``) names events by kind (``SUPPLY_CHANGE``,
``POWER_UP`` ...). Over the HAN an event is a Log ID and an SE Event ID (the Device
Management cluster's event configuration attribute ids, SE 1.4 Tables D-176..D-184):
:func:`se_event` maps one to the other. Events SE has no id for are "Manufacturer
Specific" ids (0x02B0..0x02B2), with the kind in the event data.

:class:`EventConfiguration` is the meter's event configuration (SE 1.4 D.10.2.2.1,
Table D-177): per event id, bits 0-2 the log it goes to (0 = not logged), bit 3 push to
the WAN, bit 4 push to the HAN (the Events server sends PublishEvent), bits 5-6 raise an
alarm. SetEventConfiguration changes it by list, by event group (0xnnFF: every event of
attribute set nn), by log or by configuration match; GetEventConfiguration reads it.
The store keeps every event whatever its configuration; the configuration decides the
log an event shows in over the HAN and whether it is pushed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sep.zcl import events as ev

LOGGING_MASK = 0x07
PUSH_WAN = 0x08
PUSH_HAN = 0x10
RAISE_ALARM_ZIGBEE = 0x20
RAISE_ALARM_PHYSICAL = 0x40
RESERVED = 0x80
ALL_EVENTS = 0xFFFF  # GetEventConfiguration: every event

# SetEventConfiguration Configuration Control (Table D-173)
APPLY_BY_LIST = 0x00
APPLY_BY_EVENT_GROUP = 0x01
APPLY_BY_LOG_TYPE = 0x02
APPLY_BY_CONFIGURATION_MATCH = 0x03

_KINDS: dict[str, tuple[int, int]] = {  # kind → (event id, default configuration)
    "POWER_UP": (ev.POWER_LOSS, ev.LOG_GENERAL),
    "INTEGRITY_FAILURE": (ev.NV_MEMORY_ERROR, ev.LOG_FAULT | PUSH_HAN),
    "INTEGRITY_RECOVERED": (ev.MANUFACTURER_A, ev.LOG_FAULT),
    "WATCHDOG_RESET": (ev.WATCHDOG_ERROR, ev.LOG_FAULT),
    "METROLOGY_FAULT": (ev.MEASUREMENT_SYSTEM_ERROR, ev.LOG_FAULT | PUSH_HAN),
    "CONFIG_CHANGE": (ev.MANUFACTURER_B, ev.LOG_GENERAL),
    "SUPPLY_REFUSED": (ev.CHANGE_SUPPLY_REJECTED, ev.LOG_SECURITY),
    "SUPPLY_CHANGE_SCHEDULED": (ev.CHANGE_SUPPLY_RECEIVED, ev.LOG_GENERAL),
    "SUPPLY_CHANGE_CANCELLED": (ev.CHANGE_SUPPLY_CANCELLED, ev.LOG_GENERAL),
    "EVENT_LOG_CLEARED": (ev.EVENT_LOG_CLEARED, ev.LOG_SECURITY | PUSH_HAN),
    "UNAUTHORISED_HAN_ACTION": (ev.UNAUTHORISED_ACTION_FROM_HAN, ev.LOG_SECURITY),
    "TRUST_CENTRE_LOST": (ev.COMMUNICATION_ERROR_HAN, ev.LOG_NETWORK),
    "TRUST_CENTRE_BACK": (ev.COMMUNICATION_OK_HAN, ev.LOG_NETWORK),
    "CALENDAR_IN_FORCE": (ev.PUBLISH_CALENDAR_ACTIONED, ev.LOG_GENERAL),
    "CALENDAR_CANCELLED": (ev.PUBLISH_CALENDAR_CANCELLED, ev.LOG_GENERAL),
    "CALENDAR_REFUSED": (ev.PUBLISH_CALENDAR_REJECTED, ev.LOG_GENERAL),
    "TENANCY_CHANGE_RECEIVED": (ev.PUBLISH_COT_RECEIVED, ev.LOG_GENERAL | PUSH_HAN),
    "CHANGE_OF_TENANCY": (ev.PUBLISH_COT_ACTIONED, ev.LOG_GENERAL | PUSH_HAN),
    "TENANCY_CHANGE_CANCELLED": (ev.PUBLISH_COT_CANCELLED, ev.LOG_GENERAL),
    "TENANCY_CHANGE_REFUSED": (ev.PUBLISH_COT_REJECTED, ev.LOG_SECURITY),
    "SUPPLIER_CHANGE_RECEIVED": (ev.PUBLISH_COS_RECEIVED, ev.LOG_GENERAL | PUSH_HAN),
    "CHANGE_OF_SUPPLIER": (ev.PUBLISH_COS_ACTIONED, ev.LOG_GENERAL | PUSH_HAN),
    "SUPPLIER_CHANGE_CANCELLED": (ev.PUBLISH_COS_CANCELLED, ev.LOG_GENERAL),
    "SUPPLIER_CHANGE_REFUSED": (ev.PUBLISH_COS_REJECTED, ev.LOG_SECURITY),
    "EVENT_CONFIGURATION_SET": (ev.SET_EVENT_CONFIGURATION_ACTIONED, ev.LOG_SECURITY),
    "SITE_ID_UPDATED": (ev.UPDATE_SITE_ID_ACTIONED, ev.LOG_GENERAL),
    "SITE_ID_CANCELLED": (ev.UPDATE_SITE_ID_CANCELLED, ev.LOG_GENERAL),
    "CIN_UPDATED": (ev.UPDATE_CIN_ACTIONED, ev.LOG_GENERAL),
    "CIN_CANCELLED": (ev.UPDATE_CIN_CANCELLED, ev.LOG_GENERAL),
}
_SUPPLY = {"ON": ev.SUPPLY_ON, "ARMED": ev.SUPPLY_ARMED, "OFF": ev.SUPPLY_OFF}
_FIRMWARE_DONE = {"apply", "confirmed", "activated"}
_FIRMWARE_FAILED = {"apply failed", "rejected", "aborted", "refused", "reverted"}


def se_event(kind: str, details: Mapping[str, Any]) -> int:
    """The SE event id of a stored event."""
    if kind == "SUPPLY_CHANGE":
        return _SUPPLY.get(str(details.get("to")), ev.MANUFACTURER_C)
    if kind == "PASSWORD_CHANGE":
        kind_no = int(details.get("password_type", 1))
        return ev.PASSWORD_1_CHANGE + kind_no - 1 if 1 <= kind_no <= 4 else ev.MANUFACTURER_C
    if kind == "FIRMWARE_UPDATE":
        step = str(details.get("step", ""))
        if step in _FIRMWARE_DONE:
            return ev.FIRMWARE_ACTIVATED
        if step in _FIRMWARE_FAILED:
            return ev.FIRMWARE_ACTIVATION_FAILURE
        return ev.FIRMWARE_READY_FOR_ACTIVATION
    return _KINDS.get(kind, (ev.MANUFACTURER_C, 0))[0]


def default_configuration() -> dict[int, int]:
    """The configuration of every event id this meter logs, as it leaves the factory."""
    config = {event_id: cfg for event_id, cfg in _KINDS.values()}
    config.update({event_id: ev.LOG_GENERAL | PUSH_HAN for event_id in _SUPPLY.values()})
    config.update({ev.PASSWORD_1_CHANGE + i: ev.LOG_SECURITY for i in range(4)})
    config.update({ev.FIRMWARE_READY_FOR_ACTIVATION: ev.LOG_GENERAL,
                   ev.FIRMWARE_ACTIVATED: ev.LOG_GENERAL | PUSH_HAN,
                   ev.FIRMWARE_ACTIVATION_FAILURE: ev.LOG_FAULT | PUSH_HAN,
                   ev.MANUFACTURER_C: ev.LOG_GENERAL})
    return dict(sorted(config.items()))


def valid_configuration(value: int) -> bool:
    """Bits 0-2 name a log 0..5; bit 7 is reserved."""
    return not value & RESERVED and (value & LOGGING_MASK) <= ev.LOG_NETWORK


class EventConfiguration:
    """The configuration byte of each event id the meter knows (Table D-177)."""

    def __init__(self, values: Mapping[int, int] | None = None) -> None:
        self.values: dict[int, int] = default_configuration()
        if values:
            self.values.update({int(k): int(v) for k, v in values.items()
                                if int(k) in self.values and valid_configuration(int(v))})

    def get(self, event_id: int) -> int:
        return self.values.get(event_id, ev.LOG_GENERAL)

    def log_of(self, event_id: int) -> int:
        """The log an event goes to (0: not logged)."""
        return self.get(event_id) & LOGGING_MASK

    def pushed_to_han(self, event_id: int) -> bool:
        return bool(self.get(event_id) & PUSH_HAN)

    def select(self, control: int, argument: Any) -> list[int]:
        """The event ids a SetEventConfiguration selects (ValueError: bad control)."""
        if control == APPLY_BY_LIST:
            wanted = {int(x) for x in argument}
            return [e for e in self.values if e in wanted]
        if control == APPLY_BY_EVENT_GROUP:
            return [e for e in self.values if e | 0x00FF == int(argument)]
        if control == APPLY_BY_LOG_TYPE:
            return [e for e, c in self.values.items() if c & LOGGING_MASK == int(argument)]
        if control == APPLY_BY_CONFIGURATION_MATCH:
            return [e for e, c in self.values.items() if c == int(argument)]
        raise ValueError(f"configuration control {control}")

    def apply(self, event_ids: Iterable[int], value: int) -> int:
        n = 0
        for e in event_ids:
            if e in self.values:
                self.values[e] = value
                n += 1
        return n

    def report(self, event_id: int) -> list[tuple[int, int]]:
        """(event id, configuration) pairs a GetEventConfiguration asks for: one event, an
        event group (0xnnFF) or every event (0xFFFF)."""
        return [(e, c) for e, c in self.values.items()
                if event_id in (ALL_EVENTS, e) or (event_id & 0xFF == 0xFF and e | 0xFF == event_id)]
