"""Device Management (0x0708), SE 1.4 D.10, as a declarative table on zigpy's types.

The server is the supplier's (the comms hub's ESI); a meter is its client.

Server-received (client→server): GetChangeOfTenancy 0x00, GetChangeOfSupplier 0x01,
RequestNewPassword 0x02, GetSiteID 0x03, ReportEventConfiguration 0x04, GetCIN 0x05.

Server-generated (server→client): PublishChangeOfTenancy 0x00, PublishChangeOfSupplier
0x01, RequestNewPasswordResponse 0x02, UpdateSiteID 0x03, SetEventConfiguration 0x04,
GetEventConfiguration 0x05, UpdateCIN 0x06.

SetEventConfiguration's tail depends on its Configuration Control (apply by list: a count
and that many event ids; by event group: a group id; by log type: a log id; by
configuration match: a configuration value), so its table keeps the tail as raw bytes
(``selector``) and :func:`parse_selector` / :func:`selector_bytes` read and write it.

Layouts agree with Wireshark's dissector, which shows two fields byte-swapped (it reads
them big-endian): the 32-bit Proposed Tenancy Change Control and the 16-bit password
Duration in minutes. Tests read those two by the SE layout.
"""

from __future__ import annotations

from typing import Any, Final

import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.foundation import BaseAttributeDefs, BaseCommandDefs, ZCLAttributeDef, ZCLCommandDef

MAX_PAYLOAD = 80
IMMEDIATE = 0x00000000  # implementation time: now
CANCEL = 0xFFFFFFFF  # implementation time: cancel the pending one
MAX_PROVIDER_NAME = 16
MAX_CONTACT_DETAILS = 19
MAX_SITE_ID = 32
MAX_CIN = 24
MAX_PASSWORD = 10
PASSWORD_TYPES = (1, 2, 3, 4)  # 1 service menu, 2 consumer menu, 3 and 4

# Proposed Change Control bits (Table D-164), for tenancy and supplier changes
PRE_SNAPSHOTS = 1 << 0
POST_SNAPSHOTS = 1 << 1
RESET_CREDIT_REGISTER = 1 << 2
RESET_DEBIT_REGISTER = 1 << 3
RESET_BILLING_PERIOD = 1 << 4
CLEAR_TARIFF_PLAN = 1 << 5
CLEAR_STANDING_CHARGE = 1 << 6
BLOCK_HISTORICAL_LOAD_PROFILE = 1 << 7
CLEAR_HISTORICAL_LOAD_PROFILE = 1 << 8
CLEAR_IHD_DATA_CONSUMER = 1 << 9
CLEAR_IHD_DATA_SUPPLIER = 1 << 10
CONTACTOR_SHIFT = 11  # bits 11-12 (Table D-165)
CONTACTOR_MASK = 0b11 << CONTACTOR_SHIFT
CLEAR_TRANSACTION_LOG = 1 << 13
CLEAR_PREPAYMENT_DATA = 1 << 14
CONTROL_RESERVED = ~((1 << 15) - 1) & 0xFFFFFFFF
CONTACTOR_OFF, CONTACTOR_OFF_ARMED, CONTACTOR_ON, CONTACTOR_UNCHANGED = 0, 1, 2, 3


def _attribute_defs() -> dict[str, Any]:
    """Server attributes (D.10.2.2): Supplier Control and Tenancy Control sets."""
    defs: dict[str, Any] = {}

    def add(name: str, attr_id: int, typ: Any) -> None:
        defs[name] = ZCLAttributeDef(id=attr_id, type=typ, access="r")

    add("provider_id", 0x0100, t.uint32_t)
    add("provider_name", 0x0101, t.LVBytes)
    add("provider_contact_details", 0x0102, t.LVBytes)
    add("proposed_provider_id", 0x0110, t.uint32_t)
    add("proposed_provider_name", 0x0111, t.LVBytes)
    add("proposed_provider_change_date_time", 0x0112, t.UTCTime)
    add("proposed_provider_change_control", 0x0113, t.bitmap32)
    add("proposed_provider_contact_details", 0x0114, t.LVBytes)
    add("change_of_tenancy_update_date_time", 0x0200, t.UTCTime)
    add("proposed_tenancy_change_control", 0x0201, t.bitmap32)
    add("wan_status", 0x0300, t.enum8)
    add("low_medium_threshold", 0x0400, t.uint32_t)
    add("medium_high_threshold", 0x0401, t.uint32_t)
    return defs


class Rest(bytes):
    """The rest of a payload, as it is (SetEventConfiguration's selector)."""

    def serialize(self) -> bytes:
        return bytes(self)

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[Rest, bytes]:
        return cls(data), b""


class EventConfigurationRecord(t.Struct):
    event_id: t.uint16_t
    event_configuration: t.bitmap8


class DeviceManagement(Cluster):
    _skip_registry = True
    cluster_id: Final = 0x0708
    ep_attribute: Final = "smartenergy_device_management"

    AttributeDefs = type("AttributeDefs", (BaseAttributeDefs,), _attribute_defs())

    class ServerCommandDefs(BaseCommandDefs):
        get_change_of_tenancy: Final = ZCLCommandDef(id=0x00, schema={})
        get_change_of_supplier: Final = ZCLCommandDef(id=0x01, schema={})
        request_new_password: Final = ZCLCommandDef(id=0x02, schema={"password_type": t.uint8_t})
        get_site_id: Final = ZCLCommandDef(id=0x03, schema={})
        report_event_configuration: Final = ZCLCommandDef(id=0x04, schema={
            "command_index": t.uint8_t, "total_commands": t.uint8_t,
            "event_configurations": t.List[EventConfigurationRecord]})
        get_cin: Final = ZCLCommandDef(id=0x05, schema={})

    class ClientCommandDefs(BaseCommandDefs):
        publish_change_of_tenancy: Final = ZCLCommandDef(id=0x00, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t, "tariff_type": t.bitmap8,
            "implementation_date_time": t.UTCTime,
            "proposed_tenancy_change_control": t.bitmap32})
        publish_change_of_supplier: Final = ZCLCommandDef(id=0x01, schema={
            "current_provider_id": t.uint32_t, "issuer_event_id": t.uint32_t,
            "tariff_type": t.bitmap8, "proposed_provider_id": t.uint32_t,
            "provider_change_implementation_time": t.UTCTime,
            "provider_change_control": t.bitmap32, "proposed_provider_name": t.LVBytes,
            "proposed_provider_contact_details": t.LVBytes})
        request_new_password_response: Final = ZCLCommandDef(id=0x02, schema={
            "issuer_event_id": t.uint32_t, "implementation_date_time": t.UTCTime,
            "duration_in_minutes": t.uint16_t, "password_type": t.uint8_t,
            "password": t.LVBytes})
        update_site_id: Final = ZCLCommandDef(id=0x03, schema={
            "issuer_event_id": t.uint32_t, "site_id_time": t.UTCTime,
            "provider_id": t.uint32_t, "site_id": t.LVBytes})
        set_event_configuration: Final = ZCLCommandDef(id=0x04, schema={
            "issuer_event_id": t.uint32_t, "start_date_time": t.UTCTime,
            "event_configuration": t.bitmap8, "configuration_control": t.uint8_t,
            "selector": Rest})
        get_event_configuration: Final = ZCLCommandDef(id=0x05, schema={"event_id": t.uint16_t})
        update_cin: Final = ZCLCommandDef(id=0x06, schema={
            "issuer_event_id": t.uint32_t, "implementation_time": t.UTCTime,
            "provider_id": t.uint32_t, "customer_id_number": t.LVBytes})


def schema(command_id: int) -> Any:
    """The payload schema of a server-generated command."""
    return DeviceManagement.client_commands[command_id].schema


def request_schema(command_id: int) -> Any:
    return DeviceManagement.server_commands[command_id].schema


def selector_bytes(control: int, argument: Any) -> bytes:
    """SetEventConfiguration's tail for a Configuration Control."""
    if control == 0x00:
        ids = list(argument)
        return bytes([len(ids)]) + b"".join(t.uint16_t(i).serialize() for i in ids)
    if control == 0x01:
        return t.uint16_t(argument).serialize()
    if control in (0x02, 0x03):
        return bytes([int(argument)])
    raise ValueError(f"configuration control {control}")


def parse_selector(control: int, data: bytes) -> Any:
    """The argument of SetEventConfiguration's tail (ValueError: malformed, LookupError:
    reserved control)."""
    if control == 0x00:
        if not data or len(data) != 1 + 2 * data[0]:
            raise ValueError("event id list length")
        return [int.from_bytes(data[1 + 2 * i:3 + 2 * i], "little") for i in range(data[0])]
    if control == 0x01:
        if len(data) != 2:
            raise ValueError("event group id length")
        return int.from_bytes(data, "little")
    if control in (0x02, 0x03):
        if len(data) != 1:
            raise ValueError("one byte expected")
        return data[0]
    raise LookupError(f"configuration control {control}")


def _client_attribute_defs() -> dict[str, Any]:
    """Client attributes (D.10.3.2): Provider ID and an event configuration (bitmap8) per
    event id the meter logs (the attribute id is the event id)."""
    from sep.zcl.events import EVENT_IDS

    defs: dict[str, Any] = {"provider_id": ZCLAttributeDef(id=0x0000, type=t.uint32_t,
                                                           access="r")}
    for event_id in EVENT_IDS:
        defs[f"event_0x{event_id:04x}_configuration"] = ZCLAttributeDef(
            id=event_id, type=t.bitmap8, access="r")
    return defs


class DeviceManagementClientAttributes(Cluster):
    """The client side's attributes (what a server reads from a meter)."""

    _skip_registry = True
    cluster_id: Final = 0x0708
    ep_attribute: Final = "smartenergy_device_management_client"

    AttributeDefs = type("AttributeDefs", (BaseAttributeDefs,), _client_attribute_defs())
    ServerCommandDefs = DeviceManagement.ServerCommandDefs
    ClientCommandDefs = DeviceManagement.ClientCommandDefs
