"""Messaging (0x0703), SE 1.4 D.5, as a declarative table on zigpy's types.

zigpy defines Messaging as an empty stub; this subclass carries the commands and stays out
of zigpy's registry (``_skip_registry``), so hubsim's zigpy side is unchanged by it.
Server-received (client→server): GetLastMessage 0x00, MessageConfirmation 0x01,
GetMessageCancellation 0x02. Server-generated: DisplayMessage 0x00, CancelMessage 0x01,
DisplayProtectedMessage 0x02, CancelAllMessages 0x03. Messaging has no attributes.
"""

from __future__ import annotations

from typing import Final

import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.foundation import BaseAttributeDefs, BaseCommandDefs, ZCLCommandDef

# MessageControl (SE 1.4 D.5.2.3.1.1.1): bits 0-1 transmission, 2-3 importance,
# bit 5 enhanced confirmation required, bit 7 message confirmation required.
TRANSMISSION_MASK = 0x03
TRANSMISSION = {"normal": 0, "normal_and_interpan": 1, "interpan": 2}
IMPORTANCE_SHIFT = 2
IMPORTANCE_MASK = 0x0C
IMPORTANCE = {"low": 0, "medium": 1, "high": 2, "critical": 3}
ENHANCED_CONFIRMATION = 0x20
CONFIRMATION_REQUIRED = 0x80
RESERVED_CONTROL_BITS = 0x50
# ExtendedMessageControl bit 0: the message has been confirmed.
EXT_CONFIRMED = 0x01
# MessageConfirmationControl (D.5.2.4.2.1): bit 0 "NO" returned, bit 1 "YES" returned.
CONFIRM_NO = 0x01
CONFIRM_YES = 0x02

START_NOW = 0x00000000
UNTIL_CHANGED = 0xFFFF
# D.5.2.3.1.1: 59 bytes of message fit a non-fragmented, non-source-routed DisplayMessage.
MAX_MESSAGE_BYTES = 59
MAX_RESPONSE_BYTES = 20  # D.5.2.4.2.1: the optional response text


class Messaging(Cluster):
    _skip_registry = True
    cluster_id: Final = 0x0703
    ep_attribute: Final = "smartenergy_messaging"

    class AttributeDefs(BaseAttributeDefs):
        pass

    class ServerCommandDefs(BaseCommandDefs):
        get_last_message: Final = ZCLCommandDef(id=0x00, schema={})
        message_confirmation: Final = ZCLCommandDef(
            id=0x01,
            schema={"message_id": t.uint32_t, "confirmation_time": t.UTCTime,
                    "message_confirmation_control?": t.bitmap8, "message_response?": t.LVBytes})
        get_message_cancellation: Final = ZCLCommandDef(
            id=0x02, schema={"earliest_implementation_time": t.UTCTime})

    class ClientCommandDefs(BaseCommandDefs):
        display_message: Final = ZCLCommandDef(
            id=0x00,
            schema={"message_id": t.uint32_t, "message_control": t.bitmap8,
                    "start_time": t.UTCTime, "duration_in_minutes": t.uint16_t,
                    "message": t.LVBytes, "extended_message_control?": t.bitmap8})
        cancel_message: Final = ZCLCommandDef(
            id=0x01, schema={"message_id": t.uint32_t, "message_control": t.bitmap8})
        display_protected_message: Final = ZCLCommandDef(
            id=0x02,
            schema={"message_id": t.uint32_t, "message_control": t.bitmap8,
                    "start_time": t.UTCTime, "duration_in_minutes": t.uint16_t,
                    "message": t.LVBytes, "extended_message_control?": t.bitmap8})
        cancel_all_messages: Final = ZCLCommandDef(
            id=0x03, schema={"implementation_date_time": t.UTCTime})
