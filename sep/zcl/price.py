"""Price (0x0700), SE 1.4 D.4, as a declarative table on zigpy's types.

zigpy defines Price as an empty stub; this subclass carries the SE 1.4 attribute sets the
meter serves and every SE 1.4 Price command, and stays out of zigpy's registry
(``_skip_registry``). The payload layouts follow SE 1.4 D.4.2.3/D.4.2.4, and agree field
for field with Wireshark's ``packet-zbee-zcl-se.c`` (our independent judge).

Server-received (client→server): GetCurrentPrice 0x00, GetScheduledPrices 0x01,
PriceAcknowledgement 0x02, GetBlockPeriods 0x03, GetConversionFactor 0x04,
GetCalorificValue 0x05, GetTariffInformation 0x06, GetPriceMatrix 0x07,
GetBlockThresholds 0x08, GetCO2Value 0x09, GetTierLabels 0x0A, GetBillingPeriod 0x0B,
GetConsolidatedBill 0x0C, CPPEventResponse 0x0D, GetCreditPayment 0x0E,
GetCurrencyConversion 0x0F, GetTariffCancellation 0x10.

Server-generated (server→client): PublishPrice 0x00, PublishBlockPeriod 0x01,
PublishConversionFactor 0x02, PublishCalorificValue 0x03, PublishTariffInformation 0x04,
PublishPriceMatrix 0x05, PublishBlockThresholds 0x06, PublishCO2Value 0x07,
PublishTierLabels 0x08, PublishBillingPeriod 0x09, PublishConsolidatedBill 0x0A,
PublishCPPEvent 0x0B, PublishCreditPayment 0x0C, PublishCurrencyConversion 0x0D,
CancelTariff 0x0E.

Sub-payloads (PublishPriceMatrix, PublishBlockThresholds, PublishTierLabels) are record
lists; a server splits them over several commands (command index / total number of
commands) so that no ZCL payload exceeds :data:`MAX_PAYLOAD`.
"""

from __future__ import annotations

from typing import Any, Final

import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.foundation import BaseAttributeDefs, BaseCommandDefs, ZCLAttributeDef, ZCLCommandDef

CURRENCY_GBP = 826  # ISO 4217
PRICE_TRAILING_DIGITS = 4  # prices in units of 0.0001 GBP

#: the largest ZCL payload (after the 3-byte ZCL header) the server puts in one frame: an
#: unfragmented APS frame with NWK + APS security leaves about 80 bytes.
MAX_PAYLOAD = 80

MAX_RATE_LABEL = 12  # octets, SE 1.4 D.4.2.4.1.1
MAX_TARIFF_LABEL = 24  # D.4.2.2.6.1
MAX_TIER_LABEL = 12  # D.4.2.2.1
MAX_TIERS = 15  # what the 4-bit tier fields carry (extended tiers 16..48 are not used)
MAX_BLOCK_THRESHOLDS = 15

# GetCurrentPrice command options (D.4.2.3.1.1)
RX_ON_WHEN_IDLE = 0x01

# Tariff Type (low nibble) and Charging Scheme (high nibble), D.4.2.4.5.1
TARIFF_TYPE_DELIVERED = 0x0
TARIFF_TYPE_RECEIVED = 0x1
TARIFF_TYPE_DELIVERED_AND_RECEIVED = 0x2
SCHEME_TOU = 0x0
SCHEME_BLOCK = 0x1
SCHEME_BLOCK_TOU_COMMON = 0x2
SCHEME_BLOCK_TOU_PER_TIER = 0x3

# Duration timebase (low nibble) / duration control (high nibble), D.4.2.4.2.1
TIMEBASE_MINUTES = 0x0
TIMEBASE_DAYS = 0x1
TIMEBASE_WEEKS = 0x2
TIMEBASE_MONTHS = 0x3
CONTROL_START_OF_TIMEBASE = 0x0
CONTROL_END_OF_TIMEBASE = 0x1
CONTROL_NOT_SPECIFIED = 0x2

# Sub-payload control bit 0 (D.4.2.4.6.2 / D.4.2.4.7.2)
SUBPAYLOAD_BLOCK = 0x00  # price matrix: tier in the high nibble, block - 1 in the low nibble
SUBPAYLOAD_TOU = 0x01  # price matrix: the whole byte is a TOU tier; thresholds: for all tiers

# Units (D.4.2.2.5 / D.3.2.2.4.1)
UNIT_KWH = 0x00
CALORIFIC_MJ_PER_M3 = 0x01
CALORIFIC_MJ_PER_KG = 0x02
CO2_KG_PER_KWH = 0x01
CO2_KG_PER_GALLON = 0x02
CO2_KG_PER_THERM = 0x03

#: the "not used" values of PublishPrice's optional fields
UNUSED_U8 = 0xFF
UNUSED_U32 = 0xFFFFFFFF


class PriceMatrixEntry(t.Struct):
    """One Price Matrix sub-payload record (D.4.2.4.6.2): Tier/Block ID and its price."""

    tier_block_id: t.uint8_t
    price: t.uint32_t


class BlockThresholdEntry(t.Struct):
    """One Block Thresholds sub-payload record (D.4.2.4.7.2).

    The first byte holds the tier (high nibble; ignored when sub-payload control bit 0 is
    set) and the number of thresholds that follow (low nibble); each threshold is a
    48-bit unsigned value in metering units.
    """

    tier_number_of_thresholds: t.uint8_t
    thresholds: t.List[t.uint48_t]

    def serialize(self) -> bytes:
        if len(self.thresholds) != int(self.tier_number_of_thresholds) & 0x0F:
            raise ValueError("the low nibble must count the thresholds")
        return t.uint8_t(self.tier_number_of_thresholds).serialize() + b"".join(
            t.uint48_t(v).serialize() for v in self.thresholds)

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[BlockThresholdEntry, bytes]:
        head, data = t.uint8_t.deserialize(data)
        values = []
        for _ in range(int(head) & 0x0F):
            value, data = t.uint48_t.deserialize(data)
            values.append(value)
        return cls(tier_number_of_thresholds=head, thresholds=values), data


class TierLabelEntry(t.Struct):
    """One Tier Labels record (D.4.2.4.9.2): tier id and its label (octet string)."""

    tier_id: t.uint8_t
    tier_label: t.LVBytes


def _attribute_defs() -> dict[str, Any]:
    """The served SE 1.4 Price server attribute sets (D.4.2.2), as zigpy attribute defs."""
    defs: dict[str, Any] = {}

    def add(name: str, attr_id: int, typ: Any) -> None:
        defs[name] = ZCLAttributeDef(id=attr_id, type=typ, access="r")

    # Tier Label set (0x0000..0x002F)
    for i in range(48):
        add(f"tier{i + 1}_price_label", 0x0000 + i, t.LVBytes)
    # Block Threshold set (0x0100..0x010F; tier-specific 0x0110..0x01FF)
    for i in range(15):
        add(f"block{i + 1}_threshold", 0x0100 + i, t.uint48_t)
    add("block_threshold_count", 0x010F, t.uint8_t)
    for tier in range(1, 16):
        for i in range(15):
            add(f"tier{tier}_block{i + 1}_threshold", 0x0100 + (tier << 4) + i, t.uint48_t)
        add(f"tier{tier}_block_threshold_count", 0x010F + (tier << 4), t.uint8_t)
    # Block Period set (0x0200..)
    add("start_of_block_period", 0x0200, t.UTCTime)
    add("block_period_duration", 0x0201, t.uint24_t)
    add("threshold_multiplier", 0x0202, t.uint24_t)
    add("threshold_divisor", 0x0203, t.uint24_t)
    add("block_period_duration_type", 0x0204, t.bitmap8)
    # Commodity set (0x0300..)
    add("commodity_type", 0x0300, t.enum8)
    add("standing_charge", 0x0301, t.uint32_t)
    add("conversion_factor", 0x0302, t.uint32_t)
    add("conversion_factor_trailing_digit", 0x0303, t.bitmap8)
    add("calorific_value", 0x0304, t.uint32_t)
    add("calorific_value_unit", 0x0305, t.enum8)
    add("calorific_value_trailing_digit", 0x0306, t.bitmap8)
    # Block Price Information set (0x0400..0x04FF): 0x04TB, T = tier (0 none), B = block-1
    for tier in range(16):
        for block in range(16):
            name = (f"no_tier_block{block + 1}_price" if tier == 0
                    else f"tier{tier}_block{block + 1}_price")
            add(name, 0x0400 + (tier << 4) + block, t.uint32_t)
    # Extended Price Information set: tiers 16..48 (0x050F..0x052F), CPP1/CPP2 prices
    for tier in range(16, 49):
        add(f"price_tier{tier}", 0x0500 + tier - 1, t.uint32_t)
    add("cpp1_price", 0x05FE, t.uint32_t)
    add("cpp2_price", 0x05FF, t.uint32_t)
    # Tariff Information set (0x0610..)
    add("tariff_label", 0x0610, t.LVBytes)
    add("number_of_price_tiers_in_use", 0x0611, t.uint8_t)
    add("number_of_block_thresholds_in_use", 0x0612, t.uint8_t)
    add("tier_block_mode", 0x0613, t.uint8_t)
    add("unit_of_measure", 0x0615, t.enum8)
    add("currency", 0x0616, t.uint16_t)
    add("price_trailing_digit", 0x0617, t.bitmap8)
    add("tariff_resolution_period", 0x0619, t.enum8)
    add("co2", 0x0620, t.uint32_t)
    add("co2_unit", 0x0621, t.enum8)
    add("co2_trailing_digit", 0x0622, t.bitmap8)
    # Billing Information set (0x0700..)
    add("current_billing_period_start", 0x0700, t.UTCTime)
    add("current_billing_period_duration", 0x0701, t.uint24_t)
    add("last_billing_period_start", 0x0702, t.UTCTime)
    add("last_billing_period_duration", 0x0703, t.uint24_t)
    add("last_billing_period_consolidated_bill", 0x0704, t.uint32_t)
    # Credit Payment set (0x0800..): the latest payment, and records #1..#5
    add("credit_payment_due_date", 0x0800, t.UTCTime)
    add("credit_payment_status", 0x0801, t.enum8)
    add("credit_payment_overdue_amount", 0x0802, t.int32s)
    for n in range(1, 6):
        add(f"credit_payment_{n}", 0x0800 + 0x10 * n, t.uint32_t)
        add(f"credit_payment_date_{n}", 0x0801 + 0x10 * n, t.UTCTime)
        add(f"credit_payment_ref_{n}", 0x0802 + 0x10 * n, t.LVBytes)
    # The Received (export) sets: 0x8000 + the delivered set's id
    for i in range(48):
        add(f"received_tier{i + 1}_price_label", 0x8000 + i, t.LVBytes)
    for i in range(15):
        add(f"received_block{i + 1}_threshold", 0x8100 + i, t.uint48_t)
    add("received_start_of_block_period", 0x8200, t.UTCTime)
    add("received_block_period_duration", 0x8201, t.uint24_t)
    add("received_threshold_multiplier", 0x8202, t.uint24_t)
    add("received_threshold_divisor", 0x8203, t.uint24_t)
    for tier in range(16):
        for block in range(16):
            name = (f"rx_no_tier_block{block + 1}_price" if tier == 0
                    else f"rx_tier{tier}_block{block + 1}_price")
            add(name, 0x8400 + (tier << 4) + block, t.uint32_t)
    add("received_tariff_label", 0x8610, t.LVBytes)
    add("received_number_of_price_tiers_in_use", 0x8611, t.uint8_t)
    add("received_number_of_block_thresholds_in_use", 0x8612, t.uint8_t)
    add("received_tier_block_mode", 0x8613, t.uint8_t)
    add("received_tariff_resolution_period", 0x8615, t.enum8)
    add("received_last_billing_period_consolidated_bill", 0x8704, t.uint32_t)
    return defs


_GET_SINCE = {"earliest_start_time": t.UTCTime, "min_issuer_event_id": t.uint32_t,
              "number_of_commands": t.uint8_t}


class Price(Cluster):
    _skip_registry = True
    cluster_id: Final = 0x0700
    ep_attribute: Final = "smartenergy_price"

    AttributeDefs = type("AttributeDefs", (BaseAttributeDefs,), _attribute_defs())

    class ServerCommandDefs(BaseCommandDefs):
        get_current_price: Final = ZCLCommandDef(id=0x00, schema={"command_options": t.bitmap8})
        get_scheduled_prices: Final = ZCLCommandDef(id=0x01, schema={
            "start_time": t.UTCTime, "number_of_events": t.uint8_t})
        price_acknowledgement: Final = ZCLCommandDef(id=0x02, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t,
            "price_ack_time": t.UTCTime, "control": t.bitmap8})
        get_block_periods: Final = ZCLCommandDef(id=0x03, schema={
            "start_time": t.UTCTime, "number_of_events": t.uint8_t, "tariff_type?": t.bitmap8})
        get_conversion_factor: Final = ZCLCommandDef(id=0x04, schema=dict(_GET_SINCE))
        get_calorific_value: Final = ZCLCommandDef(id=0x05, schema=dict(_GET_SINCE))
        get_tariff_information: Final = ZCLCommandDef(id=0x06, schema={
            **_GET_SINCE, "tariff_type": t.bitmap8})
        get_price_matrix: Final = ZCLCommandDef(id=0x07, schema={"issuer_tariff_id": t.uint32_t})
        get_block_thresholds: Final = ZCLCommandDef(id=0x08, schema={
            "issuer_tariff_id": t.uint32_t})
        get_co2_value: Final = ZCLCommandDef(id=0x09, schema={
            **_GET_SINCE, "tariff_type?": t.bitmap8})
        get_tier_labels: Final = ZCLCommandDef(id=0x0A, schema={"issuer_tariff_id": t.uint32_t})
        get_billing_period: Final = ZCLCommandDef(id=0x0B, schema={
            **_GET_SINCE, "tariff_type?": t.bitmap8})
        get_consolidated_bill: Final = ZCLCommandDef(id=0x0C, schema={
            **_GET_SINCE, "tariff_type?": t.bitmap8})
        cpp_event_response: Final = ZCLCommandDef(id=0x0D, schema={
            "issuer_event_id": t.uint32_t, "cpp_auth": t.enum8})
        get_credit_payment: Final = ZCLCommandDef(id=0x0E, schema={
            "latest_end_time": t.UTCTime, "number_of_records": t.uint8_t})
        get_currency_conversion: Final = ZCLCommandDef(id=0x0F, schema={})
        get_tariff_cancellation: Final = ZCLCommandDef(id=0x10, schema={})

    class ClientCommandDefs(BaseCommandDefs):
        publish_price: Final = ZCLCommandDef(id=0x00, schema={
            "provider_id": t.uint32_t, "rate_label": t.LVBytes, "issuer_event_id": t.uint32_t,
            "current_time": t.UTCTime, "unit_of_measure": t.enum8, "currency": t.uint16_t,
            "price_trailing_digit_and_price_tier": t.bitmap8,
            "number_of_price_tiers_and_register_tier": t.bitmap8, "start_time": t.UTCTime,
            "duration_in_minutes": t.uint16_t, "price": t.uint32_t,
            # optional since SE 1.0; SE 1.1 added the next two, SE 1.2 the last five
            "price_ratio?": t.uint8_t, "generation_price?": t.uint32_t,
            "generation_price_ratio?": t.uint8_t, "alternate_cost_delivered?": t.uint32_t,
            "alternate_cost_unit?": t.enum8, "alternate_cost_trailing_digit?": t.bitmap8,
            "number_of_block_thresholds?": t.uint8_t, "price_control?": t.bitmap8,
            "number_of_generation_tiers?": t.uint8_t, "generation_tier?": t.enum8,
            "extended_number_of_price_tiers?": t.enum8, "extended_price_tier?": t.enum8,
            "extended_register_tier?": t.enum8})
        publish_block_period: Final = ZCLCommandDef(id=0x01, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t,
            "block_period_start_time": t.UTCTime, "block_period_duration": t.uint24_t,
            "block_period_control": t.bitmap8, "block_period_duration_type": t.bitmap8,
            "tariff_type": t.bitmap8, "tariff_resolution_period": t.enum8})
        publish_conversion_factor: Final = ZCLCommandDef(id=0x02, schema={
            "issuer_event_id": t.uint32_t, "start_time": t.UTCTime,
            "conversion_factor": t.uint32_t, "conversion_factor_trailing_digit": t.bitmap8})
        publish_calorific_value: Final = ZCLCommandDef(id=0x03, schema={
            "issuer_event_id": t.uint32_t, "start_time": t.UTCTime,
            "calorific_value": t.uint32_t, "calorific_value_unit": t.enum8,
            "calorific_value_trailing_digit": t.bitmap8})
        publish_tariff_information: Final = ZCLCommandDef(id=0x04, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t,
            "issuer_tariff_id": t.uint32_t, "start_time": t.UTCTime,
            "tariff_type_charging_scheme": t.bitmap8, "tariff_label": t.LVBytes,
            "number_of_price_tiers_in_use": t.uint8_t,
            "number_of_block_thresholds_in_use": t.uint8_t, "unit_of_measure": t.enum8,
            "currency": t.uint16_t, "price_trailing_digit": t.bitmap8,
            "standing_charge": t.uint32_t, "tier_block_mode": t.uint8_t,
            "block_threshold_multiplier": t.uint24_t, "block_threshold_divisor": t.uint24_t})
        publish_price_matrix: Final = ZCLCommandDef(id=0x05, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t, "start_time": t.UTCTime,
            "issuer_tariff_id": t.uint32_t, "command_index": t.uint8_t,
            "total_number_of_commands": t.uint8_t, "sub_payload_control": t.bitmap8,
            "entries": t.List[PriceMatrixEntry]})
        publish_block_thresholds: Final = ZCLCommandDef(id=0x06, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t, "start_time": t.UTCTime,
            "issuer_tariff_id": t.uint32_t, "command_index": t.uint8_t,
            "total_number_of_commands": t.uint8_t, "sub_payload_control": t.bitmap8,
            "entries": t.List[BlockThresholdEntry]})
        publish_co2_value: Final = ZCLCommandDef(id=0x07, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t, "start_time": t.UTCTime,
            "tariff_type": t.bitmap8, "co2_value": t.uint32_t, "co2_unit": t.enum8,
            "co2_value_trailing_digit": t.bitmap8})
        publish_tier_labels: Final = ZCLCommandDef(id=0x08, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t,
            "issuer_tariff_id": t.uint32_t, "command_index": t.uint8_t,
            "total_number_of_commands": t.uint8_t,
            "labels": t.LVList[TierLabelEntry, t.uint8_t]})
        publish_billing_period: Final = ZCLCommandDef(id=0x09, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t,
            "billing_period_start_time": t.UTCTime, "billing_period_duration": t.uint24_t,
            "billing_period_duration_type": t.bitmap8, "tariff_type": t.bitmap8})
        publish_consolidated_bill: Final = ZCLCommandDef(id=0x0A, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t,
            "billing_period_start_time": t.UTCTime, "billing_period_duration": t.uint24_t,
            "billing_period_duration_type": t.bitmap8, "tariff_type": t.bitmap8,
            "consolidated_bill": t.uint32_t, "currency": t.uint16_t,
            "bill_trailing_digit": t.bitmap8})
        publish_cpp_event: Final = ZCLCommandDef(id=0x0B, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t, "start_time": t.UTCTime,
            "duration_in_minutes": t.uint16_t, "tariff_type": t.bitmap8,
            "cpp_price_tier": t.enum8, "cpp_auth": t.enum8})
        publish_credit_payment: Final = ZCLCommandDef(id=0x0C, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t,
            "credit_payment_due_date": t.UTCTime, "credit_payment_overdue_amount": t.uint32_t,
            "credit_payment_status": t.bitmap8, "credit_payment": t.uint32_t,
            "credit_payment_date": t.UTCTime, "credit_payment_ref": t.LVBytes})
        publish_currency_conversion: Final = ZCLCommandDef(id=0x0D, schema={
            "provider_id": t.uint32_t, "issuer_event_id": t.uint32_t, "start_time": t.UTCTime,
            "old_currency": t.uint16_t, "new_currency": t.uint16_t,
            "conversion_factor": t.uint32_t, "conversion_factor_trailing_digit": t.bitmap8,
            "currency_change_control_flags": t.bitmap32})
        cancel_tariff: Final = ZCLCommandDef(id=0x0E, schema={
            "provider_id": t.uint32_t, "issuer_tariff_id": t.uint32_t, "tariff_type": t.bitmap8})


def schema(command_id: int) -> Any:
    """The payload schema of a server-generated (Publish*) command."""
    return Price.client_commands[command_id].schema
