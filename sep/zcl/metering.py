"""Metering (0x0702) as SE 1.4 defines it: zigpy's table plus what it lacks.

zigpy's Metering attribute table stops at the daily consumption set; SE 1.4 adds the
rest of the historical consumption set (D.3.2.2.5: previous days 2..8 at 0x0420..0x042D,
weeks at 0x0430.. with previous weeks 2..5 at 0x0434..0x043B, months at 0x0440.. with
previous months 2..13 at 0x0444..0x045B), the rest of the supply-limit set (D.3.2.2.7),
the block information sets (D.3.2.2.8/.9: CurrentTierNBlockMSummationDelivered at
0x0700 + 16 x N + (M - 1), N = 0 for "no tier", 1..15; received at 0x0900..), the
billing set's trailing digits and received half (D.3.2.2.10: 0x0A04, 0x0A10..0x0A14) and
the supply control set (0x0B00/0x0B01). The ids are the ones Wireshark's SE dissector
(``packet-zbee-zcl-se.c``) names, so tshark can judge what the meter serves.

This subclass stays out of zigpy's cluster registry (``_skip_registry``) so that zigpy's
own client side, used by hubsim as an independent reader, is not changed by it.
"""

from __future__ import annotations

from typing import Final

import zigpy.types as t
from zigpy.zcl.clusters.smartenergy import Metering as ZigpyMetering
from zigpy.zcl.foundation import ZCLAttributeDef

BLOCK_DELIVERED_BASE = 0x0700
BLOCK_RECEIVED_BASE = 0x0900
MAX_BLOCK_TIERS = 15  # tiers 1..15 have block registers; tier 0 is "no tier"
MAX_BLOCKS = 16


def block_attr_id(tier: int, block: int, *, received: bool = False) -> int:
    """CurrentTier<tier>Block<block>Summation{Delivered,Received}; tier 0 = no tier."""
    if not (0 <= tier <= MAX_BLOCK_TIERS and 1 <= block <= MAX_BLOCKS):
        raise ValueError(f"tier 0..{MAX_BLOCK_TIERS}, block 1..{MAX_BLOCKS}")
    base = BLOCK_RECEIVED_BASE if received else BLOCK_DELIVERED_BASE
    return base + 16 * tier + block - 1


def _block_defs() -> dict[str, ZCLAttributeDef]:
    out = {}
    for received in (False, True):
        for tier in range(MAX_BLOCK_TIERS + 1):
            for block in range(1, MAX_BLOCKS + 1):
                who = "no_tier" if tier == 0 else f"tier{tier}"
                name = f"current_{who}_block{block}_summation_{'received' if received else 'delivered'}"
                out[name] = ZCLAttributeDef(id=block_attr_id(tier, block, received=received),
                                            type=t.uint48_t, access="r")
    return out


def history_attr_id(period: str, n: int, *, received: bool = False) -> int:
    """PreviousDay<n> (2..8), PreviousWeek<n> (2..5), PreviousMonth<n> (2..13)
    Consumption{Delivered,Received}."""
    base, top = {"day": (0x0420, 8), "week": (0x0434, 5), "month": (0x0444, 13)}[period]
    if not 2 <= n <= top:
        raise ValueError(f"previous {period} 2..{top}")
    return base + 2 * (n - 2) + int(received)


def _history_defs() -> dict[str, ZCLAttributeDef]:
    out = {}
    for period, top, typ in (("day", 8, t.uint24_t), ("week", 5, t.uint24_t),
                             ("month", 13, t.uint32_t)):
        for n in range(2, top + 1):
            for received in (False, True):
                what = "received" if received else "delivered"
                out[f"previous_{period}{n}_consumption_{what}"] = ZCLAttributeDef(
                    id=history_attr_id(period, n, received=received), type=typ, access="r")
    return out


class Metering(ZigpyMetering):
    _skip_registry = True

    class AttributeDefs(ZigpyMetering.AttributeDefs):
        current_week_consumption_delivered: Final = ZCLAttributeDef(
            id=0x0430, type=t.uint24_t, access="r")
        current_week_consumption_received: Final = ZCLAttributeDef(
            id=0x0431, type=t.uint24_t, access="r")
        previous_week_consumption_delivered: Final = ZCLAttributeDef(
            id=0x0432, type=t.uint24_t, access="r")
        previous_week_consumption_received: Final = ZCLAttributeDef(
            id=0x0433, type=t.uint24_t, access="r")
        current_month_consumption_delivered: Final = ZCLAttributeDef(
            id=0x0440, type=t.uint32_t, access="r")
        current_month_consumption_received: Final = ZCLAttributeDef(
            id=0x0441, type=t.uint32_t, access="r")
        previous_month_consumption_delivered: Final = ZCLAttributeDef(
            id=0x0442, type=t.uint32_t, access="r")
        previous_month_consumption_received: Final = ZCLAttributeDef(
            id=0x0443, type=t.uint32_t, access="r")
        load_limit_supply_state: Final = ZCLAttributeDef(id=0x0605, type=t.enum8, access="r")
        load_limit_counter: Final = ZCLAttributeDef(id=0x0606, type=t.uint8_t, access="r")
        supply_tamper_state: Final = ZCLAttributeDef(id=0x0607, type=t.enum8, access="r")
        supply_depletion_state: Final = ZCLAttributeDef(id=0x0608, type=t.enum8, access="r")
        supply_uncontrolled_flow_state: Final = ZCLAttributeDef(id=0x0609, type=t.enum8,
                                                                access="r")
        bill_delivered_trailing_digit: Final = ZCLAttributeDef(id=0x0A04, type=t.bitmap8,
                                                               access="r")
        bill_to_date_received: Final = ZCLAttributeDef(id=0x0A10, type=t.uint32_t, access="r")
        bill_to_date_time_stamp_received: Final = ZCLAttributeDef(id=0x0A11, type=t.UTCTime,
                                                                  access="r")
        projected_bill_received: Final = ZCLAttributeDef(id=0x0A12, type=t.uint32_t, access="r")
        projected_bill_time_stamp_received: Final = ZCLAttributeDef(id=0x0A13, type=t.UTCTime,
                                                                    access="r")
        bill_received_trailing_digit: Final = ZCLAttributeDef(id=0x0A14, type=t.bitmap8,
                                                              access="r")
        proposed_change_supply_implementation_time: Final = ZCLAttributeDef(
            id=0x0B00, type=t.UTCTime, access="r")
        proposed_change_supply_status: Final = ZCLAttributeDef(id=0x0B01, type=t.enum8,
                                                               access="r")
        vars().update(_history_defs())
        vars().update(_block_defs())
