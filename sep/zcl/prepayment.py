"""Prepayment (0x0705), SE 1.4 D.7, as a declarative table on zigpy's types.

zigpy defines Prepayment as an empty stub; this subclass carries the SE 1.4 attribute sets
the meter serves and every SE 1.4 Prepayment command, and stays out of zigpy's registry
(``_skip_registry``) so hubsim's zigpy side is changed only where it puts the table on a
cluster itself. Payload layouts follow SE 1.4 D.7.2.3/D.7.2.4 and agree field for field
with Wireshark's ``packet-zbee-zcl-se.c`` (tshark 4.0 decodes every command below).

Server-received (client→server): SelectAvailableEmergencyCredit 0x00, ChangeDebt 0x02,
EmergencyCreditSetup 0x03, ConsumerTopUp 0x04, CreditAdjustment 0x05, ChangePaymentMode
0x06, GetPrepaySnapshot 0x07, GetTopUpLog 0x08, SetLowCreditWarningLevel 0x09,
GetDebtRepaymentLog 0x0A, SetMaximumCreditLimit 0x0B, SetOverallDebtCap 0x0C.

Server-generated (server→client): PublishPrepaySnapshot 0x01, ChangePaymentModeResponse
0x02, ConsumerTopUpResponse 0x03, PublishTopUpLog 0x05, PublishDebtLog 0x06.

Money is in the currency's base unit with the Price cluster's trailing digits (SE 1.4:
"measured in a base unit of Currency with the decimal point located as indicated by the
Trailing Digits field, as defined in the Price cluster"): 0.0001 GBP with 4 digits.
"""

from __future__ import annotations

from typing import Any, Final

import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.foundation import BaseAttributeDefs, BaseCommandDefs, ZCLAttributeDef, ZCLCommandDef

# Payment Control Configuration (0x0000, D.7.2.2.1.1)
DISCONNECTION_ENABLED = 0x0001
PREPAYMENT_ENABLED = 0x0002
CREDIT_MANAGEMENT_ENABLED = 0x0004
CREDIT_DISPLAY_ENABLED = 0x0010
ACCOUNT_BASE = 0x0040  # set: the account is kept in units of energy, not money
CONTACTOR_FITTED = 0x0080
STANDING_CHARGE_CONFIGURATION = 0x0100
EMERGENCY_STANDING_CHARGE_CONFIGURATION = 0x0200
DEBT_CONFIGURATION = 0x0400
EMERGENCY_DEBT_CONFIGURATION = 0x0800
PAYMENT_CONTROL_RESERVED = 0xF028

# Credit Status (0x0003)
CREDIT_OK = 0x01
LOW_CREDIT = 0x02
EMERGENCY_CREDIT_ENABLED = 0x04
EMERGENCY_CREDIT_AVAILABLE = 0x08
EMERGENCY_CREDIT_SELECTED = 0x10
EMERGENCY_CREDIT_IN_USE = 0x20
CREDIT_EXHAUSTED = 0x40

# Prepayment Alarm Status (0x0400)
ALARM_LOW_CREDIT = 0x0001
ALARM_TOP_UP_CODE_ERROR = 0x0002
ALARM_TOP_UP_CODE_ALREADY_USED = 0x0004
ALARM_TOP_UP_CODE_INVALID = 0x0008
ALARM_FRIENDLY_CREDIT_IN_USE = 0x0010
ALARM_FRIENDLY_CREDIT_PERIOD_END_WARNING = 0x0020
ALARM_EC_AVAILABLE = 0x0040
ALARM_DISCONNECTED_CREDIT = 0x0100

# Originating Device (D.7.2.3.1)
ORIGIN_ESI = 0x00
ORIGIN_METER = 0x01
ORIGIN_IHD = 0x02  # an in-home display or a PPMID

# ConsumerTopUpResponse Result Type (D.7.2.4.3)
ACCEPTED = 0x00
REJECTED_INVALID = 0x01
REJECTED_DUPLICATE = 0x02
REJECTED_ERROR = 0x03
REJECTED_MAX_CREDIT = 0x04
REJECTED_KEYPAD_LOCK = 0x05
REJECTED_TOO_LARGE = 0x06
ACCEPTED_SUPPLY_ENABLED = 0x10
ACCEPTED_SUPPLY_DISABLED = 0x11
ACCEPTED_SUPPLY_ARMED = 0x12

# Debt Recovery Method, Debt Amount Type, Debt Recovery Frequency (D.7.2.3.2)
RECOVERY_TIME_BASED = 0x00
RECOVERY_PERCENTAGE_BASED = 0x01
RECOVERY_CATCH_UP = 0x02
DEBT_TYPES = 3  # Type 1..3; amount type 2n absolute, 2n+1 incremental for debt n+1
FREQUENCY_HOUR, FREQUENCY_DAY, FREQUENCY_WEEK, FREQUENCY_MONTH, FREQUENCY_QUARTER = range(5)
ALL_DEBTS = 0xFF

# Credit Adjustment Type
CREDIT_INCREMENTAL = 0x00
CREDIT_ABSOLUTE = 0x01

# Snapshot causes (bitmap32) and the one payload type
SNAPSHOT_GENERAL = 0x00000001
SNAPSHOT_MANUAL = 0x00000400
SNAPSHOT_CHANGE_OF_METER_MODE = 0x00004000
SNAPSHOT_TOP_UP = 0x00040000
SNAPSHOT_DEBT_CREDIT = 0x00080000
SNAPSHOT_PAYLOAD_DEBT_CREDIT_STATUS = 0x00

FRIENDLY_CREDIT_ENABLED = 0x01  # ChangePaymentModeResponse Friendly Credit bitmap
MAX_TOP_UP_CODE = 25  # an octet string "of between 1 and 26 characters" with its length
MAX_DEBT_LABEL = 12
TOP_UP_LOG_ATTRS = 5  # the Top-up attribute set holds the five latest top-ups
INT32_MAX = 0x7FFFFFFF
NOW = 0x00000000  # a start or implementation time of 0: at once


def top_up_attr(n: int, field: int) -> int:
    """Top-up #n (1..5): 0 date/time, 1 amount, 2 originating device, 3 code."""
    return 0x0100 + 0x10 * (n - 1) + field


def debt_attr(n: int, field: int) -> int:
    """Debt #n (1..3): 0 label, 1 amount, 2 method, 3 start time, 4 collection time,
    6 frequency, 7 recovery amount, 9 top-up percentage."""
    return 0x0200 + 0x10 * n + field


def _attribute_defs() -> dict[str, Any]:
    defs: dict[str, Any] = {}

    def add(name: str, attr_id: int, typ: Any, access: str = "r") -> None:
        defs[name] = ZCLAttributeDef(id=attr_id, type=typ, access=access)

    # Prepayment Information set (0x00)
    add("payment_control_configuration", 0x0000, t.bitmap16, "rp")
    add("credit_remaining", 0x0001, t.int32s, "rp")
    add("emergency_credit_remaining", 0x0002, t.int32s, "rp")
    add("credit_status", 0x0003, t.bitmap8, "rp")
    add("credit_remaining_timestamp", 0x0004, t.UTCTime)
    add("accumulated_debt", 0x0005, t.int32s, "rp")
    add("overall_debt_cap", 0x0006, t.int32s)
    add("emergency_credit_limit_allowance", 0x0010, t.uint32_t)
    add("emergency_credit_threshold", 0x0011, t.uint32_t)
    add("total_credit_added", 0x0020, t.uint48_t)
    add("max_credit_limit", 0x0021, t.uint32_t)
    add("max_credit_per_top_up", 0x0022, t.uint32_t)
    add("friendly_credit_warning", 0x0030, t.uint8_t)
    add("low_credit_warning_level", 0x0031, t.uint32_t)
    add("ihd_low_credit_warning_level", 0x0032, t.uint32_t, "rw")
    add("interrupt_suspend_time", 0x0033, t.uint8_t)
    add("remaining_friendly_credit_time", 0x0034, t.uint16_t)
    add("next_friendly_credit_period", 0x0035, t.UTCTime)
    add("cut_off_value", 0x0040, t.int32s)
    # Top-up set (0x01): the five latest top-ups, #1 the newest
    for n in range(1, TOP_UP_LOG_ATTRS + 1):
        add(f"top_up_date_time_{n}", top_up_attr(n, 0), t.UTCTime)
        add(f"top_up_amount_{n}", top_up_attr(n, 1), t.int32s)
        add(f"originating_device_{n}", top_up_attr(n, 2), t.enum8)
        add(f"top_up_code_{n}", top_up_attr(n, 3), t.LVBytes)
    # Debt set (0x02): debts 1..3
    for n in range(1, DEBT_TYPES + 1):
        add(f"debt_label_{n}", debt_attr(n, 0), t.LVBytes)
        add(f"debt_amount_{n}", debt_attr(n, 1), t.uint32_t)
        add(f"debt_recovery_method_{n}", debt_attr(n, 2), t.enum8)
        add(f"debt_recovery_start_time_{n}", debt_attr(n, 3), t.UTCTime)
        add(f"debt_recovery_collection_time_{n}", debt_attr(n, 4), t.uint16_t)
        add(f"debt_recovery_frequency_{n}", debt_attr(n, 6), t.enum8)
        add(f"debt_recovery_amount_{n}", debt_attr(n, 7), t.uint32_t)
        add(f"debt_recovery_top_up_percentage_{n}", debt_attr(n, 9), t.uint16_t)
    # Alarm set (0x04)
    add("prepayment_alarm_status", 0x0400, t.bitmap16, "rp")
    # Historical Cost Consumption set (0x05): what is shown with the money values
    add("historical_cost_consumption_formatting", 0x0500, t.bitmap8)
    add("consumption_unit_of_measurement", 0x0501, t.enum8)
    add("currency_scaling_factor", 0x0502, t.enum8)
    add("currency", 0x0503, t.uint16_t)
    add("current_day_cost_consumption_delivered", 0x051C, t.uint48_t)
    add("previous_day_cost_consumption_delivered", 0x051E, t.uint48_t)
    return defs


class TopUpEntry(t.Struct):
    """One PublishTopUpLog record (D.7.2.4.4): the code, the credit it added, when."""

    top_up_code: t.LVBytes
    top_up_amount: t.int32s
    top_up_time: t.UTCTime


class DebtEntry(t.Struct):
    """One PublishDebtLog record (D.7.2.4.5)."""

    collection_time: t.UTCTime
    amount_collected: t.int32s
    debt_type: t.enum8
    outstanding_debt: t.uint32_t


_PROVIDER_EVENT = {"provider_id": t.uint32_t, "issuer_event_id": t.uint32_t,
                   "implementation_date_time": t.UTCTime}


class Prepayment(Cluster):
    _skip_registry = True
    cluster_id: Final = 0x0705
    ep_attribute: Final = "smartenergy_prepayment"

    AttributeDefs = type("AttributeDefs", (BaseAttributeDefs,), _attribute_defs())

    class ServerCommandDefs(BaseCommandDefs):
        select_available_emergency_credit: Final = ZCLCommandDef(id=0x00, schema={
            "command_issue_date_time": t.UTCTime, "originating_device": t.enum8})
        change_debt: Final = ZCLCommandDef(id=0x02, schema={
            "issuer_event_id": t.uint32_t, "debt_label": t.LVBytes, "debt_amount": t.int32s,
            "debt_recovery_method": t.enum8, "debt_amount_type": t.enum8,
            "debt_recovery_start_time": t.UTCTime, "debt_recovery_collection_time": t.uint16_t,
            "debt_recovery_frequency": t.enum8, "debt_recovery_amount": t.int32s,
            "debt_recovery_balance_percentage": t.uint16_t})
        emergency_credit_setup: Final = ZCLCommandDef(id=0x03, schema={
            "issuer_event_id": t.uint32_t, "start_time": t.UTCTime,
            "emergency_credit_limit": t.uint32_t, "emergency_credit_threshold": t.uint32_t})
        consumer_top_up: Final = ZCLCommandDef(id=0x04, schema={
            "originating_device": t.enum8, "top_up_code": t.LVBytes})
        credit_adjustment: Final = ZCLCommandDef(id=0x05, schema={
            "issuer_event_id": t.uint32_t, "start_time": t.UTCTime,
            "credit_adjustment_type": t.enum8, "credit_adjustment_value": t.int32s})
        change_payment_mode: Final = ZCLCommandDef(id=0x06, schema={
            **_PROVIDER_EVENT, "proposed_payment_control_configuration": t.bitmap16,
            "cut_off_value": t.int32s})
        get_prepay_snapshot: Final = ZCLCommandDef(id=0x07, schema={
            "earliest_start_time": t.UTCTime, "latest_end_time": t.UTCTime,
            "snapshot_offset": t.uint8_t, "snapshot_cause": t.bitmap32})
        get_top_up_log: Final = ZCLCommandDef(id=0x08, schema={
            "latest_end_time": t.UTCTime, "number_of_records": t.uint8_t})
        set_low_credit_warning_level: Final = ZCLCommandDef(id=0x09, schema={
            "low_credit_warning_level": t.uint32_t})
        get_debt_repayment_log: Final = ZCLCommandDef(id=0x0A, schema={
            "latest_end_time": t.UTCTime, "number_of_debts": t.uint8_t, "debt_type": t.enum8})
        set_maximum_credit_limit: Final = ZCLCommandDef(id=0x0B, schema={
            **_PROVIDER_EVENT, "maximum_credit_level": t.uint32_t,
            "maximum_credit_per_top_up": t.uint32_t})
        set_overall_debt_cap: Final = ZCLCommandDef(id=0x0C, schema={
            **_PROVIDER_EVENT, "overall_debt_cap": t.int32s})

    class ClientCommandDefs(BaseCommandDefs):
        publish_prepay_snapshot: Final = ZCLCommandDef(id=0x01, schema={
            "snapshot_id": t.uint32_t, "snapshot_time": t.UTCTime,
            "total_snapshots_found": t.uint8_t, "command_index": t.uint8_t,
            "total_number_of_commands": t.uint8_t, "snapshot_cause": t.bitmap32,
            "snapshot_payload_type": t.enum8,
            # the Debt/Credit Status payload (type 0x00, the only one SE 1.4 defines)
            "accumulated_debt": t.int32s, "type1_debt_remaining": t.uint32_t,
            "type2_debt_remaining": t.uint32_t, "type3_debt_remaining": t.uint32_t,
            "emergency_credit_remaining": t.int32s, "credit_remaining": t.int32s})
        change_payment_mode_response: Final = ZCLCommandDef(id=0x02, schema={
            "friendly_credit": t.bitmap8, "friendly_credit_calendar_id": t.uint32_t,
            "emergency_credit_limit": t.uint32_t, "emergency_credit_threshold": t.uint32_t})
        consumer_top_up_response: Final = ZCLCommandDef(id=0x03, schema={
            "result_type": t.enum8, "top_up_value": t.int32s, "source_of_top_up": t.enum8,
            "credit_remaining": t.int32s})
        publish_top_up_log: Final = ZCLCommandDef(id=0x05, schema={
            "command_index": t.uint8_t, "total_number_of_commands": t.uint8_t,
            "entries": t.List[TopUpEntry]})
        publish_debt_log: Final = ZCLCommandDef(id=0x06, schema={
            "command_index": t.uint8_t, "total_number_of_commands": t.uint8_t,
            "entries": t.List[DebtEntry]})


def request_schema(command_id: int) -> Any:
    """The payload schema of a client→server Prepayment command."""
    return Prepayment.server_commands[command_id].schema


def response_schema(command_id: int) -> Any:
    """The payload schema of a server-generated Prepayment command."""
    return Prepayment.client_commands[command_id].schema
