"""EZSP command handlers: messaging — unicast, broadcast and multicast sends, Green Power.

A send is handed to the :class:`radios.ncp.ezsp.Radio` (which queues it on the virtual
air and reports back through ``EzspNcp.message_sent``); the response carries the APS
sequence number. The emulated firmware has no Green Power proxy or sink tables: those
commands answer as an empty table does. A mixin of :class:`radios.ncp.ezsp.EzspNcp`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bellows.types as bt

from radios.ncp.cmd_common import S

if TYPE_CHECKING:
    from radios.ncp.ezsp import Radio


class MessagingCommands:
    """``cmd_*`` handlers for sending messages, and the Green Power stubs."""

    if TYPE_CHECKING:  # what these handlers use from the EzspNcp core
        radio: Radio
        network_up: bool

    def cmd_sendUnicast(self, type: Any, indexOrDestination: int, apsFrame: Any,
                        messageTag: int, messageContents: bytes) -> dict:
        if not self.network_up:
            return {"status": S.NETWORK_DOWN, "sequence": 0}
        if type != bt.EmberOutgoingMessageType.OUTGOING_DIRECT:
            return {"status": S.INVALID_PARAMETER, "sequence": 0}
        seq = self.radio.send_unicast(int(indexOrDestination), apsFrame, int(messageTag),
                                      bytes(messageContents))
        return {"status": S.OK, "sequence": seq}

    def cmd_sendBroadcast(self, destination: int, apsFrame: Any, radius: int,
                          messageTag: int, messageContents: bytes) -> dict:
        if not self.network_up:
            return {"status": S.NETWORK_DOWN, "sequence": 0}
        if destination < 0xFFF8:
            return {"status": S.INVALID_PARAMETER, "sequence": 0}
        seq = self.radio.send_broadcast(int(destination), apsFrame, int(radius),
                                        int(messageTag), bytes(messageContents))
        return {"status": S.OK, "sequence": seq}

    def cmd_sendMulticast(self, apsFrame: Any, hops: int, nonmemberRadius: int,
                          messageTag: int, messageContents: bytes) -> dict:
        if not self.network_up:
            return {"status": S.NETWORK_DOWN, "sequence": 0}
        seq = self.radio.send_broadcast(0xFFFD, apsFrame, int(hops), int(messageTag),
                                        bytes(messageContents))
        return {"status": S.OK, "sequence": seq}

    # -- Green Power (no proxy/sink tables in the emulated firmware) ---------------------------
    def cmd_gpSinkTableClearAll(self) -> dict:
        return {}

    def cmd_gpProxyTableProcessGpPairing(self, **_: Any) -> dict:
        return {"gpPairingAdded": False}
