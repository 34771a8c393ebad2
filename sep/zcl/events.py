"""Events (0x0709), SE 1.4 D.11, as a declarative table on zigpy's types.

Server-received: GetEventLog 0x00, ClearEventLogRequest 0x01.
Server-generated: PublishEvent 0x00, PublishEventLog 0x01, ClearEventLogResponse 0x02.

GetEventLog's first byte is Event Control (high nibble: 0 = minimal information, the
Event Data left empty; 1 = full information) and Log ID (low nibble). A PublishEventLog
carries the total number of matching events, its index and the number of commands, then
a byte with the number of events in this command (high nibble) and the log payload
control (low nibble, bit 0: an event crosses the frame boundary), then the events (Log
ID, Event ID, Event Time, Event Data). Layouts agree with Wireshark's dissector (SE 1.2+:
PublishEvent and each logged event carry the Log ID).
"""

from __future__ import annotations

from typing import Any, Final

import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.foundation import BaseCommandDefs, ZCLCommandDef

MAX_PAYLOAD = 80

# Log ID (Table D-186; 6 and 7 are the GBCS logs, which this meter does not keep)
LOG_ALL = 0x0
LOG_TAMPER = 0x1
LOG_FAULT = 0x2
LOG_GENERAL = 0x3
LOG_SECURITY = 0x4
LOG_NETWORK = 0x5
LOG_GBCS_GENERAL = 0x6
LOG_GBCS_SECURITY = 0x7
LOGS = (LOG_TAMPER, LOG_FAULT, LOG_GENERAL, LOG_SECURITY, LOG_NETWORK)
LOG_NAMES = {LOG_TAMPER: "tamper", LOG_FAULT: "fault", LOG_GENERAL: "general",
             LOG_SECURITY: "security", LOG_NETWORK: "network"}

ALL_EVENT_IDS = 0x0000  # GetEventLog: every event id
CONTROL_FULL = 0x1  # Event Control (high nibble of the first byte): with the event data
CROSSES_FRAME = 0x01  # log payload control: an event continues in the next command

# PublishEvent Event Control: who the event is reported to
REPORT_HAN = 0x01
REPORT_WAN = 0x02

#: bytes of PublishEventLog before the events, and of one event without its data
LOG_HEAD = 2 + 1 + 1 + 1
EVENT_HEAD = 1 + 2 + 4 + 1


class LoggedEvent(t.Struct):
    """One event of a PublishEventLog."""

    log_id: t.uint8_t
    event_id: t.uint16_t
    event_time: t.UTCTime
    event_data: t.LVBytes


class Events(Cluster):
    _skip_registry = True
    cluster_id: Final = 0x0709
    ep_attribute: Final = "smartenergy_events"

    class ServerCommandDefs(BaseCommandDefs):
        get_event_log: Final = ZCLCommandDef(id=0x00, schema={
            "event_control_log_id": t.uint8_t, "event_id": t.uint16_t,
            "start_time": t.UTCTime, "end_time": t.UTCTime, "number_of_events": t.uint8_t,
            "event_offset": t.uint16_t})
        clear_event_log_request: Final = ZCLCommandDef(id=0x01, schema={"log_id": t.uint8_t})

    class ClientCommandDefs(BaseCommandDefs):
        publish_event: Final = ZCLCommandDef(id=0x00, schema={
            "log_id": t.uint8_t, "event_id": t.uint16_t, "event_time": t.UTCTime,
            "event_control": t.bitmap8, "event_data": t.LVBytes})
        publish_event_log: Final = ZCLCommandDef(id=0x01, schema={
            "total_number_of_matching_events": t.uint16_t, "command_index": t.uint8_t,
            "total_commands": t.uint8_t, "number_of_events_log_payload_control": t.uint8_t,
            "events": t.List[LoggedEvent]})
        clear_event_log_response: Final = ZCLCommandDef(id=0x02, schema={
            "cleared_event_logs": t.bitmap8})


def schema(command_id: int) -> Any:
    """The payload schema of a server-generated command."""
    return Events.client_commands[command_id].schema


def request_schema(command_id: int) -> Any:
    return Events.server_commands[command_id].schema


# -- SE event ids (the Device Management cluster's event configuration attribute ids,
#    SE 1.4 Tables D-176..D-184) that this meter logs -----------------------------------
NV_MEMORY_ERROR = 0x020F
MEASUREMENT_SYSTEM_ERROR = 0x0270
WATCHDOG_ERROR = 0x0271
COMMUNICATION_ERROR_HAN = 0x027A
COMMUNICATION_OK_HAN = 0x027B
POWER_LOSS = 0x027D
UNAUTHORISED_ACTION_FROM_HAN = 0x028F
SUPPLY_ON = 0x02E4
SUPPLY_ARMED = 0x02E5
SUPPLY_OFF = 0x02E6
CHANGE_SUPPLY_RECEIVED = 0x02EE
CHANGE_SUPPLY_CANCELLED = 0x02F0
CHANGE_SUPPLY_REJECTED = 0x02F1
MANUFACTURER_A = 0x02B0  # "Manufacturer Specific A": stored copy repaired
MANUFACTURER_B = 0x02B1  # "Manufacturer Specific B": configuration changed
MANUFACTURER_C = 0x02B2  # "Manufacturer Specific C": any other event of this meter
PUBLISH_CALENDAR_ACTIONED = 0x05C1
PUBLISH_CALENDAR_CANCELLED = 0x05C2
PUBLISH_CALENDAR_REJECTED = 0x05C3
PASSWORD_1_CHANGE = 0x0600
EVENT_LOG_CLEARED = 0x0604
PUBLISH_COT_RECEIVED = 0x06C0
PUBLISH_COT_ACTIONED = 0x06C1
PUBLISH_COT_CANCELLED = 0x06C2
PUBLISH_COT_REJECTED = 0x06C3
PUBLISH_COS_RECEIVED = 0x06C4
PUBLISH_COS_ACTIONED = 0x06C5
PUBLISH_COS_CANCELLED = 0x06C6
PUBLISH_COS_REJECTED = 0x06C7
SET_EVENT_CONFIGURATION_ACTIONED = 0x06CD
UPDATE_SITE_ID_ACTIONED = 0x06D1
UPDATE_SITE_ID_CANCELLED = 0x06D2
UPDATE_CIN_ACTIONED = 0x06D5
UPDATE_CIN_CANCELLED = 0x06D6
FIRMWARE_READY_FOR_ACTIVATION = 0x0800
FIRMWARE_ACTIVATED = 0x0801
FIRMWARE_ACTIVATION_FAILURE = 0x0802

#: short names a display shows
EVENT_NAMES = {
    NV_MEMORY_ERROR: "NV memory error", MEASUREMENT_SYSTEM_ERROR: "measurement error",
    WATCHDOG_ERROR: "watchdog", POWER_LOSS: "power loss",
    COMMUNICATION_ERROR_HAN: "trust centre lost", COMMUNICATION_OK_HAN: "trust centre back",
    UNAUTHORISED_ACTION_FROM_HAN: "unauthorised HAN action", SUPPLY_ON: "supply on",
    SUPPLY_ARMED: "supply armed", SUPPLY_OFF: "supply off",
    CHANGE_SUPPLY_RECEIVED: "change supply scheduled",
    CHANGE_SUPPLY_CANCELLED: "change supply cancelled",
    CHANGE_SUPPLY_REJECTED: "change supply rejected", MANUFACTURER_A: "store repaired",
    MANUFACTURER_B: "configuration changed", MANUFACTURER_C: "meter event",
    PUBLISH_CALENDAR_ACTIONED: "calendar in force",
    PUBLISH_CALENDAR_CANCELLED: "calendar cancelled",
    PUBLISH_CALENDAR_REJECTED: "calendar rejected", PASSWORD_1_CHANGE: "password 1 changed",
    PASSWORD_1_CHANGE + 1: "password 2 changed", PASSWORD_1_CHANGE + 2: "password 3 changed",
    PASSWORD_1_CHANGE + 3: "password 4 changed", EVENT_LOG_CLEARED: "event log cleared",
    PUBLISH_COT_RECEIVED: "tenancy change received", PUBLISH_COT_ACTIONED: "tenancy changed",
    PUBLISH_COT_CANCELLED: "tenancy change cancelled",
    PUBLISH_COT_REJECTED: "tenancy change rejected",
    PUBLISH_COS_RECEIVED: "supplier change received", PUBLISH_COS_ACTIONED: "supplier changed",
    PUBLISH_COS_CANCELLED: "supplier change cancelled",
    PUBLISH_COS_REJECTED: "supplier change rejected",
    SET_EVENT_CONFIGURATION_ACTIONED: "event configuration set",
    UPDATE_SITE_ID_ACTIONED: "site id updated", UPDATE_SITE_ID_CANCELLED: "site id cancelled",
    UPDATE_CIN_ACTIONED: "CIN updated", UPDATE_CIN_CANCELLED: "CIN cancelled",
    FIRMWARE_READY_FOR_ACTIVATION: "firmware ready", FIRMWARE_ACTIVATED: "firmware activated",
    FIRMWARE_ACTIVATION_FAILURE: "firmware failed",
}

#: every event id this meter logs
EVENT_IDS = tuple(sorted(EVENT_NAMES))
