"""EZSP command handlers other hosts than bellows need: zigbee-herdsman's ``ember`` adapter.

zigbee-herdsman (the zigbee2mqtt host, ``src/adapter/ember/``) drives a v13+ stick with
commands bellows never sends: it asks ``getExtendedValue(ENDPOINT_FLAGS)`` before adding
each endpoint (a stick that kept its endpoints since the last reset needs no second
``addEndpoint``), sets the 802.15.4 CCA mode from its stack configuration, and moves the
radio with ``setLogicalAndRadioChannel`` for touchlink (not emulated: the virtual air has no
InterPAN). Each answer follows UG100 (EZSP reference) and what herdsman, written against
real EmberZNet 7.x sticks, parses: an unknown value or an endpoint that was never added is an
error status, never a made-up value.

A mixin of :class:`radios.ncp.ezsp.EzspNcp`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bellows.types as bt
import zigpy.zdo.types as zdo_t

from radios.ncp.cmd_common import Ezsp, S, sl_or_ezsp

if TYPE_CHECKING:
    from radios.ncp.ezsp import Radio
    from radios.ncp.state import NcpState

XV = bt.EzspExtendedValueId
# RAIL_IEEE802154_CcaMode_t: RSSI (the default), SIGNAL, SIGNAL_OR_RSSI, SIGNAL_AND_RSSI,
# ALWAYS_TRANSMIT
CCA_MODES = range(5)


class HostCommands:
    """``cmd_*`` handlers for the commands herdsman's ember adapter adds to bellows' set."""

    if TYPE_CHECKING:  # what these handlers use from the EzspNcp core
        state: NcpState
        radio: Radio
        network_up: bool
        endpoints: dict[int, zdo_t.SimpleDescriptor]
        cca_mode: int

        def _event(self, text: str) -> None: ...

    def cmd_getExtendedValue(self, valueId: Any, characteristics: int) -> dict:
        """A value that needs a parameter (``characteristics``) to name it (UG100 3.3)."""
        if valueId == XV.EXTENDED_VALUE_ENDPOINT_FLAGS:
            # characteristics = the endpoint; EZSP_ENDPOINT_ENABLED (uint16) for one the
            # host added since the last reset. For any other: an error status, and still the
            # 2 bytes of flags (DISABLED) - herdsman, written against real sticks, refuses a
            # shorter value whatever the status, and adds the endpoint when it is not SUCCESS
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

    def cmd_setRadioIeee802154CcaMode(self, cca_mode: int) -> dict:
        """The 802.15.4 clear-channel assessment mode (RAM: a reset brings back RSSI).

        Herdsman sends it at start-up when its stack_config.json sets CCA_MODE. The virtual
        air has no energy to assess, so the mode is only kept, not acted on.
        """
        if int(cca_mode) not in CCA_MODES:
            return {"status": S.INVALID_PARAMETER}
        self.cca_mode = int(cca_mode)
        self._event(f"802.15.4 CCA mode {self.cca_mode}")
        return {"status": S.OK}
