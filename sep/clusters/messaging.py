"""Messaging server (SE 1.4 D.5): messages from the supplier to the household, sans-IO.

The queue holds messages by ID: a new message with an existing ID replaces it. A message
is active from its start time (0 = when it arrives) for its duration in minutes (0xFFFF =
until changed or cancelled); expired messages leave the queue on :meth:`tick`. Protected
messages (DisplayProtectedMessage) are kept apart only in how they are sent back.

From HAN clients: GetLastMessage answers with a Display(Protected)Message of the newest
active message (extended control "confirmed" when that client confirmed it), or a Default
Response NOT_FOUND; MessageConfirmation records who confirmed what, with the optional
confirmation control (enhanced confirmation: yes/no) and response text (≤ 20 bytes);
GetMessageCancellation answers CancelAllMessages when a cancel-all happened at or after the
given time, else NOT_FOUND. Bad fields get INVALID_FIELD (ZCL r8 2.6.3), unknown message
IDs NOT_FOUND, truncated payloads MALFORMED_COMMAND.

The local API (``display_message``, ``cancel_message``, ``cancel_all``) is what the MQTT
bridge calls; :meth:`ingest` takes the same commands from the upstream supplier (the
ESI). Both queue the frames for every HAN client that has talked to this server
(``ClusterServer.push``) and return them.

What the store keeps (:meth:`persisted_state`, written through ``on_change`` after every
change and before the frame that announces it leaves): the messages, their confirmations,
the last cancel-all, and the next message id — so an id the meter gave a message is never
given to another one after a restart.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import zigpy.types as t

from sep.clusters.base import ClusterServer
from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.zcl.frames import Request, Status, build_frame, decode_schema, response_header
from sep.zcl.messaging import (
    CONFIRM_NO,
    CONFIRM_YES,
    CONFIRMATION_REQUIRED,
    ENHANCED_CONFIRMATION,
    EXT_CONFIRMED,
    IMPORTANCE,
    IMPORTANCE_SHIFT,
    MAX_MESSAGE_BYTES,
    MAX_RESPONSE_BYTES,
    START_NOW,
    TRANSMISSION,
    TRANSMISSION_MASK,
    UNTIL_CHANGED,
    Messaging,
)

LOGGER = logging.getLogger(__name__)

DISPLAY = 0x00
CANCEL = 0x01
DISPLAY_PROTECTED = 0x02
CANCEL_ALL = 0x03


class MessageError(ValueError):
    """A message the meter will not take; ``status`` is the ZCL answer to give."""

    def __init__(self, why: str, status: Status = Status.INVALID_FIELD) -> None:
        super().__init__(why)
        self.status = status


def check_text(raw: bytes) -> str:
    """The message text: 1..59 bytes of UTF-8."""
    if not raw or len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError(f"a message is 1..{MAX_MESSAGE_BYTES} bytes, not {len(raw)}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageError("a message is UTF-8 text") from None


def message_control(*, importance: str = "medium", confirmation_required: bool = False,
                    enhanced_confirmation: bool = False, transmission: str = "normal") -> int:
    if importance not in IMPORTANCE:
        raise MessageError(f"importance is one of {', '.join(IMPORTANCE)}")
    if transmission not in TRANSMISSION:
        raise MessageError(f"transmission is one of {', '.join(TRANSMISSION)}")
    control = TRANSMISSION[transmission] | IMPORTANCE[importance] << IMPORTANCE_SHIFT
    if enhanced_confirmation:
        control |= ENHANCED_CONFIRMATION | CONFIRMATION_REQUIRED
    elif confirmation_required:
        control |= CONFIRMATION_REQUIRED
    return control


@dataclasses.dataclass
class Message:
    message_id: int
    control: int
    start: int  # unix seconds (a start time of "now" is resolved on arrival)
    duration_min: int
    text: str
    protected: bool = False
    confirmations: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def importance(self) -> str:
        level = (self.control >> IMPORTANCE_SHIFT) & 0x03
        return next(name for name, value in IMPORTANCE.items() if value == level)

    @property
    def confirmation_required(self) -> bool:
        return bool(self.control & CONFIRMATION_REQUIRED)

    @property
    def enhanced_confirmation(self) -> bool:
        return bool(self.control & ENHANCED_CONFIRMATION)

    @property
    def end(self) -> float | None:
        return None if self.duration_min == UNTIL_CHANGED else self.start + 60 * self.duration_min

    def active(self, now: float) -> bool:
        end = self.end
        return self.start <= now and (end is None or now < end)

    def expired(self, now: float) -> bool:
        end = self.end
        return end is not None and now >= end

    def same_as(self, other: Message, start_now: bool = False) -> bool:
        """The same message (a start of "now" matches whenever it started)."""
        return (self.message_id, self.control, self.duration_min, self.text, self.protected) \
            == (other.message_id, other.control, other.duration_min, other.text,
                other.protected) and (start_now or self.start == other.start)

    def confirmed_by(self, nwk: int) -> bool:
        return any(c["nwk"] == nwk for c in self.confirmations)

    @property
    def command_id(self) -> int:
        return DISPLAY_PROTECTED if self.protected else DISPLAY

    def payload(self, *, confirmed: bool | None = None) -> bytes:
        schema = Messaging.client_commands[self.command_id].schema
        fields: dict[str, Any] = dict(
            message_id=self.message_id, message_control=self.control,
            start_time=to_zcl_time(self.start), duration_in_minutes=self.duration_min,
            message=t.LVBytes(self.text.encode("utf-8")))
        if confirmed is not None:
            fields["extended_message_control"] = EXT_CONFIRMED if confirmed else 0
        return schema(**fields).serialize()


class MessagingServer(ClusterServer):
    cluster = Messaging

    def __init__(self, *, on_confirm: Callable[[Message, dict[str, Any]], None] | None = None
                 ) -> None:
        super().__init__()
        self.messages: dict[int, Message] = {}
        self.cancel_all_at: int | None = None
        self.on_confirm = on_confirm or (lambda msg, confirmation: None)
        self.on_change: Callable[[], None] | None = None  # the store keeps the messages
        self._next_id = 1
        self.commands.update({0x00: self._get_last, 0x01: self._confirm, 0x02: self._get_cancel})

    generated = frozenset({DISPLAY, CANCEL, DISPLAY_PROTECTED, CANCEL_ALL})

    # -- persistence -------------------------------------------------------------------------
    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def persisted_state(self) -> dict[str, Any]:
        return {"next_id": self._next_id, "cancel_all_at": self.cancel_all_at,
                "messages": [[m.message_id, m.control, m.start, m.duration_min, m.text,
                              m.protected, m.confirmations] for m in self.messages.values()]}

    def restore_state(self, state: dict[str, Any]) -> None:
        self._next_id = int(state["next_id"])
        at = state["cancel_all_at"]
        self.cancel_all_at = None if at is None else int(at)
        self.messages = {int(m[0]): Message(int(m[0]), int(m[1]), int(m[2]), int(m[3]), str(m[4]),
                                            bool(m[5]), list(m[6])) for m in state["messages"]}

    # -- local API -------------------------------------------------------------------------
    def display_message(self, text: str, *, now: float, message_id: int | None = None,
                        importance: str = "medium", confirmation_required: bool = False,
                        enhanced_confirmation: bool = False, duration_minutes: int = UNTIL_CHANGED,
                        start: int = 0, protected: bool = False,
                        transmission: str = "normal") -> tuple[Message, bytes]:
        """Queue a message and push it; raises :class:`MessageError` (a ValueError)."""
        check_text(text.encode("utf-8"))
        control = message_control(importance=importance,
                                  confirmation_required=confirmation_required,
                                  enhanced_confirmation=enhanced_confirmation,
                                  transmission=transmission)
        if not 0 <= duration_minutes <= 0xFFFF:
            raise MessageError("duration is 0..65535 minutes")
        if message_id is None:
            message_id = self._next_id
        if not 0 <= message_id <= 0xFFFFFFFF:
            raise MessageError("a message id is 32 bits")
        msg = Message(message_id, control, int(start or now), duration_minutes, text, protected)
        return msg, self._queue(msg)

    def cancel_message(self, message_id: int) -> bytes:
        if self.messages.pop(message_id, None) is None:
            raise LookupError(f"no message with id {message_id}")
        self._changed()
        # SE 1.4: the Message Control field of CancelMessage is deprecated and sent as 0x00.
        return self.push(CANCEL, t.uint32_t(message_id).serialize() + t.bitmap8(0).serialize())

    def cancel_all(self, now: float, implementation_time: int | None = None) -> bytes:
        """Cancel every message (at ``implementation_time``, unix seconds; default now)."""
        when = int(implementation_time or now)
        self.messages.clear()
        self.cancel_all_at = when
        self._changed()
        return self.push(CANCEL_ALL, t.uint32_t(to_zcl_time(when)).serialize())

    def last_message(self, now: float) -> Message | None:
        active = [m for m in self.messages.values() if m.active(now)]
        return max(active, key=lambda m: (m.start, m.message_id)) if active else None

    def queue(self, now: float) -> list[Message]:
        """Every message not yet expired, in start order (future ones included)."""
        return sorted((m for m in self.messages.values() if not m.expired(now)),
                      key=lambda m: (m.start, m.message_id))

    def tick(self, now: float) -> None:
        expired = [m.message_id for m in self.messages.values() if m.expired(now)]
        for message_id in expired:
            LOGGER.info("message %d expired", message_id)
            del self.messages[message_id]
        if expired:
            self._changed()

    def _queue(self, msg: Message) -> bytes:
        old = self.messages.get(msg.message_id)
        if old is not None:
            LOGGER.info("message %d replaced", msg.message_id)
        self.messages[msg.message_id] = msg  # replacement by message ID
        self._next_id = max(self._next_id, msg.message_id + 1) & 0xFFFFFFFF or 1
        self._changed()
        return self.push(msg.command_id, msg.payload())

    # -- from the upstream supplier (the ESI) -----------------------------------------------
    def ingest(self, command_id: int, payload: bytes, now: float) -> Status:
        """Apply a Messaging command the supplier's server sent this meter (a client of it);
        the meter then shows it to its own HAN. Raises MalformedFrame when truncated."""
        schema = Messaging.client_commands.get(command_id)
        if schema is None:
            return Status.UNSUP_CLUSTER_COMMAND
        args = decode_schema(schema.schema, payload, strict=False)
        try:
            if command_id in (DISPLAY, DISPLAY_PROTECTED):
                text = check_text(bytes(args.message))
                control = int(args.message_control)
                if control & TRANSMISSION_MASK not in TRANSMISSION.values():
                    raise MessageError("reserved transmission value")
                start = int(args.start_time)
                msg = Message(int(args.message_id), control,
                              int(now) if start == START_NOW else start + ZIGBEE_EPOCH,
                              int(args.duration_in_minutes), text,
                              protected=command_id == DISPLAY_PROTECTED)
                old = self.messages.get(msg.message_id)
                if old is not None and old.same_as(msg, start == START_NOW):
                    return Status.SUCCESS  # the same message again (asked for anew): kept
                self._queue(msg)
            elif command_id == CANCEL:
                self.cancel_message(int(args.message_id))
            else:
                when = int(args.implementation_date_time)
                self.cancel_all(now, None if when == START_NOW else when + ZIGBEE_EPOCH)
        except MessageError as exc:
            LOGGER.info("message from the supplier refused: %s", exc)
            return exc.status
        except LookupError:
            return Status.NOT_FOUND
        return Status.SUCCESS

    # -- commands from clients ---------------------------------------------------------------
    def _get_last(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        msg = self.last_message(now)
        if msg is None:
            return Status.NOT_FOUND
        payload = msg.payload(confirmed=msg.confirmed_by(req.src_nwk))
        return [build_frame(response_header(req, msg.command_id, general=False), payload)]

    def _confirm(self, req: Request, args: Any, now: float) -> Status:
        msg = self.messages.get(int(args.message_id))
        if msg is None:
            return Status.NOT_FOUND
        control = 0 if args.message_confirmation_control is None else int(
            args.message_confirmation_control)
        if control & ~(CONFIRM_NO | CONFIRM_YES) or control == CONFIRM_NO | CONFIRM_YES:
            return Status.INVALID_FIELD  # reserved bits, or "yes" and "no" at once
        response = b"" if args.message_response is None else bytes(args.message_response)
        if len(response) > MAX_RESPONSE_BYTES:
            return Status.INVALID_FIELD
        try:
            text = response.decode("utf-8")
        except UnicodeDecodeError:
            return Status.INVALID_FIELD
        answer = {CONFIRM_YES: "yes", CONFIRM_NO: "no"}.get(control)
        confirmation = {"nwk": req.src_nwk, "time": int(args.confirmation_time) + ZIGBEE_EPOCH,
                        "answer": answer, "response": text}
        msg.confirmations.append(confirmation)
        self._changed()
        LOGGER.info("message %d confirmed by 0x%04X%s", msg.message_id, req.src_nwk,
                    f" ({answer})" if answer else "")
        self.on_confirm(msg, confirmation)
        return Status.SUCCESS

    def _get_cancel(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        earliest = int(args.earliest_implementation_time) + ZIGBEE_EPOCH
        if self.cancel_all_at is None or self.cancel_all_at < earliest:
            return Status.NOT_FOUND
        payload = t.uint32_t(to_zcl_time(self.cancel_all_at)).serialize()
        return [build_frame(response_header(req, CANCEL_ALL, general=False), payload)]
