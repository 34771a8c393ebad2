"""The Price cluster's server-generated commands (SE 1.4 D.4.2.4): their ids and payloads.

Pure functions: each builds the payload of one Publish* command (or CancelTariff) from a
:class:`~sep.meter.tariff.Tariff` — and, for PublishPrice, the :class:`CurrentPrice` it
announces — plus the issuer event id and start time the caller chose. They keep no state;
:class:`~sep.clusters.price.PriceServer` supplies the ids and times it keeps, and records
what it has issued.

PublishPriceMatrix, PublishBlockThresholds and PublishTierLabels carry a record list and
are split over as many commands as it takes to keep each within
:data:`~sep.zcl.price.MAX_PAYLOAD` (command index / total number of commands).
"""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import Any

import zigpy.types as t

from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.meter.tariff import Tariff, scaled
from sep.zcl.price import (
    MAX_PAYLOAD,
    SUBPAYLOAD_BLOCK,
    SUBPAYLOAD_TOU,
    TARIFF_TYPE_DELIVERED,
    UNUSED_U8,
    UNUSED_U32,
    BlockThresholdEntry,
    PriceMatrixEntry,
    TierLabelEntry,
    schema,
)

# command ids, server-generated
PUBLISH_PRICE = 0x00
PUBLISH_BLOCK_PERIOD = 0x01
PUBLISH_CONVERSION_FACTOR = 0x02
PUBLISH_CALORIFIC_VALUE = 0x03
PUBLISH_TARIFF_INFORMATION = 0x04
PUBLISH_PRICE_MATRIX = 0x05
PUBLISH_BLOCK_THRESHOLDS = 0x06
PUBLISH_CO2_VALUE = 0x07
PUBLISH_TIER_LABELS = 0x08
PUBLISH_BILLING_PERIOD = 0x09
CANCEL_TARIFF = 0x0E

UNTIL_CHANGED = 0xFFFF
#: the metering units block thresholds are sent in: Wh, shown as kWh (multiplier/divisor)
# SE 1.4 D.4.2.2.3.3: thresholds x ThresholdMultiplier / ThresholdDivisor "can be compared
# against the CurrentBlockPeriodConsumptionDelivered attribute within the Metering cluster",
# i.e. they are in Metering register units — Wh on this meter (multiplier 1, divisor 1000).
THRESHOLD_MULTIPLIER = 1
THRESHOLD_DIVISOR = 1
METERING_UNITS_PER_KWH = 1000
TIER_BLOCK_MODE_ACTIVE_BLOCK = 0x00
TIER_BLOCK_MODE_UNUSED = 0xFF


@dataclasses.dataclass
class CurrentPrice:
    """A price in force over an interval (what one PublishPrice says)."""

    tier: int
    unit_rate: Decimal  # currency per unit of measure (GBP/kWh)
    label: str
    issuer_event_id: int
    start: int  # unix seconds
    duration_min: int = UNTIL_CHANGED

    @property
    def end(self) -> float:
        return math.inf if self.duration_min == UNTIL_CHANGED else self.start + 60 * self.duration_min

    def key(self) -> tuple[Any, ...]:
        return (self.issuer_event_id, self.tier, self.unit_rate, self.label)


def zcl_to_unix(value: int, now: float) -> int:
    """A ZCL UTC time field as unix seconds (0 means now)."""
    return int(now) if value == 0 else int(value) + ZIGBEE_EPOCH


def _chunks(head_len: int, records: list[bytes]) -> list[list[bytes]]:
    """Records grouped so that head + records fit MAX_PAYLOAD (at least one group)."""
    groups: list[list[bytes]] = [[]]
    size = head_len
    for rec in records:
        if groups[-1] and size + len(rec) > MAX_PAYLOAD:
            groups.append([])
            size = head_len
        groups[-1].append(rec)
        size += len(rec)
    return groups


def _split(command_id: int, fields: dict[str, Any], records: list[Any],
           list_key: str) -> list[bytes]:
    """A Publish* with a record list, over as many commands as it takes."""
    s = schema(command_id)
    head = len(s(**fields, command_index=0, total_number_of_commands=1,
                 **{list_key: []}).serialize())
    groups = _chunks(head, [r.serialize() for r in records])
    by_bytes = dict(zip([r.serialize() for r in records], records, strict=False))
    out = []
    for i, group in enumerate(groups):
        out.append(s(**fields, command_index=i, total_number_of_commands=len(groups),
                     **{list_key: [by_bytes[b] for b in group]}).serialize())
    return out


def price_payload(tariff: Tariff, price: CurrentPrice, now: float, *,
                  require_ack: bool, generation: tuple[int, int, int] | None = None) -> bytes:
    """PublishPrice; ``generation`` (tier, price on the air, number of tiers) is the export
    tariff's price in force, sent as Generation Price / Tier (SE 1.1, 1.2 fields)."""
    tiers = max(tariff.tier_count, price.tier)
    gen_tier, gen_price, gen_tiers = generation if generation is not None else (0, UNUSED_U32, 0)
    alt, alt_unit, alt_digits = UNUSED_U32, UNUSED_U8, UNUSED_U8
    if tariff.co2 is not None and tariff.co2_unit == 0x01:
        value, digits = scaled(tariff.co2)
        alt, alt_unit, alt_digits = value, 0x01, digits << 4
    return schema(PUBLISH_PRICE)(
        provider_id=tariff.provider_id, rate_label=t.LVBytes(price.label.encode()),
        issuer_event_id=price.issuer_event_id, current_time=to_zcl_time(now),
        unit_of_measure=tariff.unit_of_measure, currency=tariff.currency,
        price_trailing_digit_and_price_tier=(tariff.price_trailing_digits << 4) | price.tier,
        number_of_price_tiers_and_register_tier=(tiers << 4) | price.tier,
        start_time=to_zcl_time(price.start), duration_in_minutes=price.duration_min,
        price=tariff.price_units(price.unit_rate), price_ratio=UNUSED_U8,
        generation_price=gen_price, generation_price_ratio=UNUSED_U8,
        alternate_cost_delivered=alt, alternate_cost_unit=alt_unit,
        alternate_cost_trailing_digit=alt_digits,
        number_of_block_thresholds=len(tariff.block_thresholds_kwh),
        price_control=0x01 if require_ack else 0x00, number_of_generation_tiers=gen_tiers,
        generation_tier=gen_tier, extended_number_of_price_tiers=0, extended_price_tier=0,
        extended_register_tier=0).serialize()


def tariff_information_payload(tariff: Tariff, start: int, issuer_event_id: int, *,
                               tariff_type: int = TARIFF_TYPE_DELIVERED) -> bytes:
    blocks = len(tariff.block_thresholds_kwh)
    return schema(PUBLISH_TARIFF_INFORMATION)(
        provider_id=tariff.provider_id, issuer_event_id=issuer_event_id,
        issuer_tariff_id=tariff.issuer_tariff_id, start_time=to_zcl_time(start),
        tariff_type_charging_scheme=(tariff.charging_scheme << 4) | tariff_type,
        tariff_label=t.LVBytes(tariff.label.encode()),
        number_of_price_tiers_in_use=tariff.tier_count,
        number_of_block_thresholds_in_use=blocks, unit_of_measure=tariff.unit_of_measure,
        currency=tariff.currency, price_trailing_digit=tariff.price_trailing_digits << 4,
        standing_charge=tariff.price_units(tariff.standing_charge),
        tier_block_mode=TIER_BLOCK_MODE_ACTIVE_BLOCK if blocks else TIER_BLOCK_MODE_UNUSED,
        block_threshold_multiplier=THRESHOLD_MULTIPLIER,
        block_threshold_divisor=THRESHOLD_DIVISOR).serialize()


def price_matrix_payloads(tariff: Tariff, start: int, issuer_event_id: int) -> list[bytes]:
    if tariff.block_thresholds_kwh:
        single = tariff.charging_scheme == 0x1
        records = [PriceMatrixEntry(tier_block_id=((0 if single else tier) << 4)
                                    | (block - 1), price=tariff.price_units(price))
                   for (tier, block), price in tariff.block_prices]
        control = SUBPAYLOAD_BLOCK
    else:
        records = [PriceMatrixEntry(tier_block_id=tier.number,
                                    price=tariff.price_units(tier.rate))
                   for tier in tariff.tiers]
        control = SUBPAYLOAD_TOU
    fields = {"provider_id": tariff.provider_id, "issuer_event_id": issuer_event_id,
              "start_time": to_zcl_time(start), "issuer_tariff_id": tariff.issuer_tariff_id,
              "sub_payload_control": control}
    return _split(PUBLISH_PRICE_MATRIX, fields, records, "entries")


def block_threshold_payloads(tariff: Tariff, start: int, issuer_event_id: int) -> list[bytes]:
    thresholds = tariff.thresholds_wh
    per_record = (MAX_PAYLOAD - 19 - 1) // 6  # a record split over frames if need be
    records = [BlockThresholdEntry(tier_number_of_thresholds=len(part), thresholds=part)
               for part in (thresholds[i:i + per_record]
                            for i in range(0, len(thresholds), per_record))]
    fields = {"provider_id": tariff.provider_id, "issuer_event_id": issuer_event_id,
              "start_time": to_zcl_time(start), "issuer_tariff_id": tariff.issuer_tariff_id,
              "sub_payload_control": SUBPAYLOAD_TOU}  # the thresholds apply to every tier
    return _split(PUBLISH_BLOCK_THRESHOLDS, fields, records, "entries")


def tier_label_payloads(tariff: Tariff, issuer_event_id: int) -> list[bytes]:
    records = [TierLabelEntry(tier_id=tier.number, tier_label=t.LVBytes(tier.label.encode()))
               for tier in tariff.tiers]
    s = schema(PUBLISH_TIER_LABELS)
    fields = {"provider_id": tariff.provider_id, "issuer_event_id": issuer_event_id,
              "issuer_tariff_id": tariff.issuer_tariff_id}
    head = len(s(**fields, command_index=0, total_number_of_commands=1,
                 labels=[]).serialize())
    groups = _chunks(head, [r.serialize() for r in records])
    out, i = [], 0
    for n, group in enumerate(groups):
        part = records[i:i + len(group)]
        i += len(group)
        out.append(s(**fields, command_index=n, total_number_of_commands=len(groups),
                     labels=part).serialize())
    return out


def block_period_payload(tariff: Tariff, start: int, *, require_ack: bool,
                         tariff_type: int = TARIFF_TYPE_DELIVERED) -> bytes:
    period = tariff.block_period
    assert period is not None
    return schema(PUBLISH_BLOCK_PERIOD)(
        provider_id=tariff.provider_id, issuer_event_id=to_zcl_time(start),
        block_period_start_time=to_zcl_time(start), block_period_duration=period.duration,
        block_period_control=0x01 if require_ack else 0x00,
        block_period_duration_type=period.duration_type, tariff_type=tariff_type,
        tariff_resolution_period=0x00).serialize()


def conversion_factor_payload(tariff: Tariff, issuer_event_id: int, start: int) -> bytes:
    value, digits = scaled(tariff.conversion_factor)
    return schema(PUBLISH_CONVERSION_FACTOR)(
        issuer_event_id=issuer_event_id, start_time=to_zcl_time(start),
        conversion_factor=value, conversion_factor_trailing_digit=digits << 4).serialize()


def calorific_value_payload(tariff: Tariff, issuer_event_id: int, start: int) -> bytes:
    assert tariff.calorific_value is not None
    value, digits = scaled(tariff.calorific_value)
    return schema(PUBLISH_CALORIFIC_VALUE)(
        issuer_event_id=issuer_event_id, start_time=to_zcl_time(start),
        calorific_value=value, calorific_value_unit=tariff.calorific_value_unit,
        calorific_value_trailing_digit=digits << 4).serialize()


def co2_payload(tariff: Tariff, issuer_event_id: int, start: int) -> bytes:
    assert tariff.co2 is not None
    value, digits = scaled(tariff.co2)
    return schema(PUBLISH_CO2_VALUE)(
        provider_id=tariff.provider_id, issuer_event_id=issuer_event_id,
        start_time=to_zcl_time(start), tariff_type=TARIFF_TYPE_DELIVERED,
        co2_value=value, co2_unit=tariff.co2_unit,
        co2_value_trailing_digit=digits << 4).serialize()


def billing_period_payload(tariff: Tariff, now: float) -> bytes:
    period = tariff.billing_period
    assert period is not None
    start, _ = period.period(now)
    return schema(PUBLISH_BILLING_PERIOD)(
        provider_id=tariff.provider_id, issuer_event_id=to_zcl_time(start),
        billing_period_start_time=to_zcl_time(start),
        billing_period_duration=period.duration,
        billing_period_duration_type=period.duration_type,
        tariff_type=TARIFF_TYPE_DELIVERED).serialize()


def cancel_tariff_payload(tariff: Tariff) -> bytes:
    return schema(CANCEL_TARIFF)(provider_id=tariff.provider_id,
                                 issuer_tariff_id=tariff.issuer_tariff_id,
                                 tariff_type=TARIFF_TYPE_DELIVERED).serialize()
