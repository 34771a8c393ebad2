"""Price (0x0700), SE 1.4 D.4 — the current-price part: GetCurrentPrice → PublishPrice.

zigpy's Price is an empty stub; this table stays out of zigpy's registry. Tariff
information, block periods, price matrix, conversion/calorific/CO2 values and billing
periods are not defined yet (issue #3).
"""

from __future__ import annotations

from typing import Final

import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.foundation import BaseAttributeDefs, BaseCommandDefs, ZCLCommandDef

CURRENCY_GBP = 826  # ISO 4217
PRICE_TRAILING_DIGITS = 4  # prices in units of 0.0001 GBP


class Price(Cluster):
    _skip_registry = True
    cluster_id: Final = 0x0700
    ep_attribute: Final = "smartenergy_price"

    class AttributeDefs(BaseAttributeDefs):
        pass

    class ServerCommandDefs(BaseCommandDefs):
        get_current_price: Final = ZCLCommandDef(id=0x00, schema={"command_options": t.bitmap8})

    class ClientCommandDefs(BaseCommandDefs):
        publish_price: Final = ZCLCommandDef(id=0x00, schema={
            "provider_id": t.uint32_t, "rate_label": t.LVBytes, "issuer_event_id": t.uint32_t,
            "current_time": t.UTCTime, "unit_of_measure": t.enum8, "currency": t.uint16_t,
            "price_trailing_digit_and_price_tier": t.bitmap8,
            "number_of_price_tiers_and_register_tier": t.bitmap8, "start_time": t.UTCTime,
            "duration_in_minutes": t.uint16_t, "price": t.uint32_t, "price_ratio": t.uint8_t,
            "generation_price": t.uint32_t, "generation_price_ratio": t.uint8_t,
            "alternate_cost_delivered": t.uint32_t, "alternate_cost_unit": t.enum8,
            "alternate_cost_trailing_digit": t.bitmap8, "number_of_block_thresholds": t.uint8_t,
            "price_control": t.bitmap8})
