"""Messaging server (SE 1.4 D.5): messages from the supplier to the household, sans-IO.

The queue holds messages by ID (a new message with an existing ID replaces it). A message
is active from its start time (0 = now) for its duration (0xFFFF = until changed).
GetLastMessage answers with a DisplayMessage of the newest active message, or a Default
Response NOT_FOUND; MessageConfirmation records who confirmed what (with the optional
response text, at most 20 bytes); GetMessageCancellation answers CancelAllMessages when a
cancel-all happened at or after the given time, else NOT_FOUND.

The local API (``display_message``, ``cancel_message``, ``cancel_all``) is what the
supplier role and the MQTT bridge call; it queues the frames for every HAN client that has
talked to this server (``ClusterServer.push``) and returns them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import zigpy.types as t

from sep.clusters.base import ClusterServer
from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.zcl.frames import Request, Status, build_frame, response_header
from sep.zcl.messaging import (
    CONFIRMATION_REQUIRED,
    IMPORTANCE,
    IMPORTANCE_SHIFT,
    MAX_MESSAGE_BYTES,
    Messaging,
)

MAX_RESPONSE_BYTES = 20


@dataclasses.dataclass
class Message:
    message_id: int
    control: int
    start: int  # unix seconds
    duration_min: int
    text: str
    confirmations: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def active(self, now: float) -> bool:
        if now < self.start:
            return False
        return self.duration_min == 0xFFFF or now < self.start + 60 * self.duration_min

    def payload(self) -> bytes:
        schema = Messaging.client_commands[0x00].schema
        return schema(message_id=self.message_id, message_control=self.control,
                      start_time=to_zcl_time(self.start), duration_in_minutes=self.duration_min,
                      message=t.CharacterString(self.text)).serialize()


class MessagingServer(ClusterServer):
    cluster = Messaging

    def __init__(self) -> None:
        super().__init__()
        self.messages: dict[int, Message] = {}
        self.cancel_all_at: int | None = None
        self._next_id = 1
        self.commands.update({0x00: self._get_last, 0x01: self._confirm, 0x02: self._get_cancel})

    # -- local API -------------------------------------------------------------------------
    def display_message(self, text: str, *, now: float, message_id: int | None = None,
                        importance: str = "medium", confirmation_required: bool = False,
                        duration_minutes: int = 0xFFFF, start: int = 0) -> tuple[Message, bytes]:
        raw = text.encode("utf-8")
        if not raw or len(raw) > MAX_MESSAGE_BYTES:
            raise ValueError(f"a message is 1..{MAX_MESSAGE_BYTES} bytes, not {len(raw)}")
        if importance not in IMPORTANCE:
            raise ValueError(f"importance is one of {', '.join(IMPORTANCE)}")
        if message_id is None:
            message_id = self._next_id
        self._next_id = max(self._next_id, message_id + 1)
        control = IMPORTANCE[importance] << IMPORTANCE_SHIFT
        if confirmation_required:
            control |= CONFIRMATION_REQUIRED
        msg = Message(message_id, control, int(start or now), duration_minutes, text)
        self.messages[message_id] = msg  # replacement by message ID
        return msg, self.push(0x00, msg.payload())

    def cancel_message(self, message_id: int) -> bytes:
        msg = self.messages.pop(message_id, None)
        if msg is None:
            raise LookupError(f"no message with id {message_id}")
        payload = t.uint32_t(message_id).serialize() + t.bitmap8(msg.control).serialize()
        return self.push(0x01, payload)

    def cancel_all(self, now: float) -> bytes:
        self.messages.clear()
        self.cancel_all_at = int(now)
        return self.push(0x03, t.uint32_t(to_zcl_time(now)).serialize())

    def last_message(self, now: float) -> Message | None:
        active = [m for m in self.messages.values() if m.active(now)]
        return max(active, key=lambda m: (m.start, m.message_id)) if active else None

    # -- commands from clients ---------------------------------------------------------------
    def _get_last(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        msg = self.last_message(now)
        if msg is None:
            return Status.NOT_FOUND
        return [build_frame(response_header(req, 0x00, general=False), msg.payload())]

    def _confirm(self, req: Request, args: Any, now: float) -> Status:
        msg = self.messages.get(int(args.message_id))
        if msg is None:
            return Status.NOT_FOUND
        response = bytes(args.message_response) if args.message_response is not None else b""
        if len(response) > MAX_RESPONSE_BYTES:
            return Status.INVALID_VALUE
        msg.confirmations.append({"nwk": req.src_nwk, "time": int(args.confirmation_time)
                                  + ZIGBEE_EPOCH, "response": response.decode(errors="replace")})
        return Status.SUCCESS

    def _get_cancel(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        earliest = int(args.earliest_implementation_time) + ZIGBEE_EPOCH
        if self.cancel_all_at is None or self.cancel_all_at < earliest:
            return Status.NOT_FOUND
        payload = t.uint32_t(to_zcl_time(self.cancel_all_at)).serialize()
        return [build_frame(response_header(req, 0x03, general=False), payload)]
