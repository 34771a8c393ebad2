"""Metering (0x0702) as SE 1.4 defines it: zigpy's table plus what it lacks.

zigpy's Metering attribute table stops at the daily consumption set; SE 1.4 D.3.2.2.5
adds weekly and monthly consumption, and D.3.2.2.7 the supply-limit set. This subclass
adds them and stays out of zigpy's cluster registry (``_skip_registry``) so that zigpy's
own client side, used by hubsim as an independent reader, is not changed by it.
"""

from __future__ import annotations

from typing import Final

import zigpy.types as t
from zigpy.zcl.clusters.smartenergy import Metering as ZigpyMetering
from zigpy.zcl.foundation import ZCLAttributeDef


class Metering(ZigpyMetering):
    _skip_registry = True

    class AttributeDefs(ZigpyMetering.AttributeDefs):
        current_week_consumption_delivered: Final = ZCLAttributeDef(
            id=0x0420, type=t.uint24_t, access="r")
        current_week_consumption_received: Final = ZCLAttributeDef(
            id=0x0421, type=t.uint24_t, access="r")
        previous_week_consumption_delivered: Final = ZCLAttributeDef(
            id=0x0422, type=t.uint24_t, access="r")
        previous_week_consumption_received: Final = ZCLAttributeDef(
            id=0x0423, type=t.uint24_t, access="r")
        current_month_consumption_delivered: Final = ZCLAttributeDef(
            id=0x0430, type=t.uint32_t, access="r")
        current_month_consumption_received: Final = ZCLAttributeDef(
            id=0x0431, type=t.uint32_t, access="r")
        previous_month_consumption_delivered: Final = ZCLAttributeDef(
            id=0x0432, type=t.uint32_t, access="r")
        previous_month_consumption_received: Final = ZCLAttributeDef(
            id=0x0433, type=t.uint32_t, access="r")
        load_limit_supply_state: Final = ZCLAttributeDef(id=0x0605, type=t.enum8, access="r")
        load_limit_counter: Final = ZCLAttributeDef(id=0x0606, type=t.uint8_t, access="r")
