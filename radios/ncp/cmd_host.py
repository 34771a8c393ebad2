"""EZSP command handlers other hosts than bellows need: zigbee-herdsman's ``ember`` adapter.

zigbee-herdsman (the zigbee2mqtt host, ``src/adapter/ember/``) drives a v13+ stick with
commands bellows never sends: it asks ``getExtendedValue(ENDPOINT_FLAGS)`` before adding
each endpoint (a stick that kept its endpoints since the last reset needs no second
``addEndpoint``), sets the 802.15.4 CCA mode from its stack configuration, and moves the
radio with ``setLogicalAndRadioChannel``. Each answer is what EmberZNet 7.4's NCP answers
(UG100 and the SDK's ``ezsp`` NCP code): an unknown value or an endpoint that was never
added is an error status, never a made-up value.

A mixin of :class:`radios.ncp.ezsp.EzspNcp`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bellows.types as bt
import zigpy.zdo.types as zdo_t

from radios.ncp.cmd_common import Ezsp, sl_or_ezsp

if TYPE_CHECKING:
    from radios.ncp.ezsp import Radio
    from radios.ncp.state import NcpState

XV = bt.EzspExtendedValueId


class HostCommands:
    """``cmd_*`` handlers for the commands herdsman's ember adapter adds to bellows' set."""

    if TYPE_CHECKING:  # what these handlers use from the EzspNcp core
        state: NcpState
        radio: Radio
        network_up: bool
        endpoints: dict[int, zdo_t.SimpleDescriptor]

        def _event(self, text: str) -> None: ...

    def cmd_getExtendedValue(self, valueId: Any, characteristics: int) -> dict:
        """A value that needs a parameter (``characteristics``) to name it (UG100 3.3)."""
        if valueId == XV.EXTENDED_VALUE_ENDPOINT_FLAGS:
            # characteristics = the endpoint; EZSP_ENDPOINT_ENABLED (uint16) for one the
            # host added since the last reset. For any other the NCP's handler has already
            # sized the value (2 bytes) when the lookup fails: an error status with the flags
            # of no endpoint (DISABLED), still 2 bytes long (herdsman refuses a shorter value,
            # then adds the endpoint because the status is not SUCCESS)
            endpoint = int(characteristics)
            if endpoint > 0xFF or endpoint not in self.endpoints:
                flags = bt.EzspEndpointFlags.ENDPOINT_DISABLED
                return {"status": sl_or_ezsp(Ezsp.ERROR_INVALID_VALUE),
                        "value": bt.uint16_t(flags).serialize()}
            flags = bt.EzspEndpointFlags.ENDPOINT_ENABLED
            return {"status": sl_or_ezsp(Ezsp.SUCCESS), "value": bt.uint16_t(flags).serialize()}
        if valueId == XV.EXTENDED_VALUE_LAST_LEAVE_REASON:
            # EmberLeaveReason (1 byte) and the node id that asked (2 bytes): a coordinator
            # that never left its network has no reason (0) from no one (0xFFFF)
            return {"status": sl_or_ezsp(Ezsp.SUCCESS), "value": b"\x00\xff\xff"}
        if valueId == XV.EXTENDED_VALUE_GET_SOURCE_ROUTE_OVERHEAD:
            # characteristics = the destination; the bytes a source route to it adds. The
            # virtual air is one hop: no source route, no overhead
            return {"status": sl_or_ezsp(Ezsp.SUCCESS), "value": b"\x00"}
        return {"status": sl_or_ezsp(Ezsp.ERROR_INVALID_ID), "value": b""}
