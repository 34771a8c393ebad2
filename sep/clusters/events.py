"""Events server (SE 1.4 D.11), sans-IO: the meter's event log over the HAN.

The log is the store's append-only, hash-chained event log (``sep events``); each entry
shows on the HAN as an SE event (:func:`~sep.clusters.event_config.se_event`) in the log
its configuration names (:class:`~sep.clusters.event_config.EventConfiguration`; not
logged: not shown). The Event Data is ``"<seq>:<KIND>"`` (ASCII, the store's sequence
number and kind), so a HAN reader can match what it reads with ``sep events``.

- GetEventLog (Event Control / Log ID, Event ID, start and end time, number of events,
  offset) → PublishEventLog, most recent first: events of that log (0 = all logs), that
  event id (0 = all), with start ≤ time < end; the first ``offset`` matches skipped, at
  most ``number`` sent (0 = all, up to :data:`MAX_EVENTS_PER_REQUEST`), over as many
  commands as 80-byte payloads need (an event never crosses a frame). Each command says
  the total number of matching events. Nothing → NOT_FOUND; a reserved log id or event
  control → INVALID_FIELD.
- ClearEventLogRequest (Log ID) → ClearEventLogResponse, only from an authorised partner
  (the injected ``authorised`` predicate; the composition root decides who: the trust
  centre, on APS link keys). Anyone else gets NOT_AUTHORIZED, and the attempt is logged
  (``UNAUTHORISED_HAN_ACTION``, at most once a minute per sender).
- A new event whose configuration says "push to the HAN" → PublishEvent to the clients.

Clearing an append-only log. The store never deletes an event: the chain of MACs would
break, and WELMEC 7.2 wants the audit trail kept. A clear is itself an event,
``EVENT_LOG_CLEARED`` with the log id (SE event 0x0604, in the security log); the HAN
view hides every earlier event of that log (all logs for log id 0), as a meter's HAN
interface does after a clear, while ``sep events`` and ``sep check`` still see, and
verify, the whole chain. The clear marker itself stays visible, so the clearing is
logged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol

from sep.clusters.base import ClusterServer
from sep.clusters.event_config import PUSH_WAN, EventConfiguration, se_event
from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.zcl import events as ev
from sep.zcl.frames import Request, Status, build_frame, response_header

LOGGER = logging.getLogger(__name__)

PUBLISH_EVENT = 0x00
PUBLISH_EVENT_LOG = 0x01
CLEAR_EVENT_LOG_RESPONSE = 0x02
MAX_EVENT_DATA = 32
MAX_EVENTS_PER_REQUEST = 64
MAX_EVENTS_PER_COMMAND = 15  # the 4-bit count
UNAUTHORISED_LOG_INTERVAL = 60.0
CLEARED_KIND = "EVENT_LOG_CLEARED"


class StoredEvent(Protocol):
    seq: int
    time: float
    kind: str
    details: dict[str, Any]


class EventSource(Protocol):
    def events(self, since: int = 0) -> list[Any]: ...


@dataclasses.dataclass(frozen=True)
class HanEvent:
    seq: int
    log_id: int
    event_id: int
    time: int  # unix seconds
    data: bytes


def event_data(seq: int, kind: str) -> bytes:
    return f"{seq}:{kind}".encode("ascii", errors="replace")[:MAX_EVENT_DATA]


class EventsServer(ClusterServer):
    cluster = ev.Events

    def __init__(self, log: EventSource | None, *, config: EventConfiguration | None = None,
                 authorised: Callable[[int], bool] = lambda nwk: False,
                 record: Callable[[str, dict[str, Any]], None] = lambda kind, details: None
                 ) -> None:
        super().__init__()
        self.log = log
        self.config = config or EventConfiguration()
        self.authorised = authorised
        self.record = record
        self.cleared = 0  # clears carried out
        self._view: list[HanEvent] = []
        self._seen = 0
        self._config_seen: dict[int, int] = {}
        self._refused_at: dict[int, float] = {}
        self.commands.update({0x00: self._get_event_log, 0x01: self._clear_event_log})

    # -- the HAN view -------------------------------------------------------------------------
    def view(self) -> list[HanEvent]:
        """The events the HAN sees, oldest first."""
        if self.log is None:
            return []
        if self.config.values != self._config_seen:  # logs changed: read it all again
            self._view, self._seen = [], 0
            self._config_seen = dict(self.config.values)
        for e in self.log.events(self._seen):
            self._seen = max(self._seen, int(e.seq))
            self._add(e)
        return list(self._view)

    def _add(self, e: Any) -> None:
        if e.kind == CLEARED_KIND:
            log_id = int(e.details.get("log_id", ev.LOG_ALL))
            self._view = [x for x in self._view if log_id not in (ev.LOG_ALL, x.log_id)]
        event_id = se_event(e.kind, e.details)
        log_id = self.config.log_of(event_id)
        if log_id:
            self._view.append(HanEvent(int(e.seq), log_id, event_id, int(e.time),
                                       event_data(int(e.seq), e.kind)))

    # -- new events ---------------------------------------------------------------------------
    def on_event(self, seq: int, when: float, kind: str, details: dict[str, Any]) -> None:
        """A new event in the store: PublishEvent when it is configured to go to the HAN."""
        event_id = se_event(kind, details)
        if not self.config.pushed_to_han(event_id) or not self.config.log_of(event_id):
            return
        control = ev.REPORT_HAN | (ev.REPORT_WAN if self.config.get(event_id) & PUSH_WAN else 0)
        payload = ev.schema(PUBLISH_EVENT)(
            log_id=self.config.log_of(event_id), event_id=event_id,
            event_time=to_zcl_time(when), event_control=control,
            event_data=event_data(seq, kind)).serialize()
        self.push(PUBLISH_EVENT, payload)

    # -- commands ------------------------------------------------------------------------------
    def _answer(self, req: Request, command_id: int, payload: bytes) -> bytes:
        return build_frame(response_header(req, command_id, general=False), payload)

    def _get_event_log(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        log_id = int(args.event_control_log_id) & 0x0F
        control = int(args.event_control_log_id) >> 4
        if log_id > ev.LOG_GBCS_SECURITY or control > ev.CONTROL_FULL:
            return Status.INVALID_FIELD
        event_id = int(args.event_id)
        start = int(args.start_time) + ZIGBEE_EPOCH
        end = int(args.end_time) + ZIGBEE_EPOCH
        matches = [e for e in reversed(self.view())
                   if log_id in (ev.LOG_ALL, e.log_id)
                   and event_id in (ev.ALL_EVENT_IDS, e.event_id) and start <= e.time < end]
        offset = int(args.event_offset)
        wanted = int(args.number_of_events) or MAX_EVENTS_PER_REQUEST
        chosen = matches[offset:offset + min(wanted, MAX_EVENTS_PER_REQUEST)]
        if not chosen:
            return Status.NOT_FOUND
        full = control == ev.CONTROL_FULL
        frames = self._split(chosen, full)
        out = []
        for index, part in enumerate(frames):
            payload = ev.schema(PUBLISH_EVENT_LOG)(
                total_number_of_matching_events=min(len(matches), 0xFFFF), command_index=index,
                total_commands=len(frames), number_of_events_log_payload_control=len(part) << 4,
                events=[ev.LoggedEvent(log_id=e.log_id, event_id=e.event_id,
                                       event_time=to_zcl_time(e.time),
                                       event_data=e.data if full else b"") for e in part]
            ).serialize()
            out.append(self._answer(req, PUBLISH_EVENT_LOG, payload))
        return out

    @staticmethod
    def _split(events: list[HanEvent], full: bool) -> list[list[HanEvent]]:
        room = ev.MAX_PAYLOAD - ev.LOG_HEAD
        frames: list[list[HanEvent]] = [[]]
        used = 0
        for e in events:
            size = ev.EVENT_HEAD + (len(e.data) if full else 0)
            if frames[-1] and (used + size > room or len(frames[-1]) == MAX_EVENTS_PER_COMMAND):
                frames.append([])
                used = 0
            frames[-1].append(e)
            used += size
        return frames

    def _clear_event_log(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        log_id = int(args.log_id)
        if not self.authorised(req.src_nwk):
            last = self._refused_at.get(req.src_nwk)
            if last is None or now - last >= UNAUTHORISED_LOG_INTERVAL:
                self._refused_at[req.src_nwk] = now
                self.record("UNAUTHORISED_HAN_ACTION", {"command": "ClearEventLogRequest",
                                                        "nwk": f"0x{req.src_nwk:04X}",
                                                        "log_id": log_id})
            LOGGER.warning("ClearEventLogRequest from 0x%04X refused: not authorised",
                           req.src_nwk)
            return Status.NOT_AUTHORIZED
        if log_id > ev.LOG_GBCS_SECURITY:
            return Status.INVALID_FIELD
        cleared = 0
        if self.log is not None and (log_id == ev.LOG_ALL or log_id in ev.LOGS):
            self.record(CLEARED_KIND, {"log_id": log_id, "by": f"0x{req.src_nwk:04X}"})
            self.cleared += 1
            cleared = 1 << log_id  # bit 0: all logs
            LOGGER.info("event log %d cleared for the HAN by 0x%04X", log_id, req.src_nwk)
        payload = ev.schema(CLEAR_EVENT_LOG_RESPONSE)(cleared_event_logs=cleared).serialize()
        return [self._answer(req, CLEAR_EVENT_LOG_RESPONSE, payload)]
