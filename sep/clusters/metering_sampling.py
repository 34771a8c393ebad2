"""StartSampling / GetSampledData (SE 1.4 D.3.2.3.1.8-9, D.3.2.4.1.8 GetSampledDataResponse,
D.3.2.4.1.14 StartSamplingResponse), a mixin of the Metering server.

StartSampling is a head-end command (the authorised ESI, as supply commands): its issuer
event id must be newer than the last one's; a start time of 0 starts now, 0xFFFFFFFF
cancels the session started with the same issuer event id (NOT_FOUND if none). The meter
answers StartSamplingResponse with the new session's Sample ID (1, 2, ... never reused,
also across restarts). Refusals are Default Responses: an unsupported sample type (only 0
consumption delivered and 1 consumption received are sampled here) or a reserved value
INVALID_FIELD, a zero interval or sample count INVALID_VALUE, more than
:data:`~sep.meter.sampling.MAX_SAMPLES` samples or a fifth concurrent session
INSUFFICIENT_SPACE.

GetSampledData (any client): the samples of a session whose time is at or after the
earliest sample time, oldest first, as many as asked and as fit one frame (23); NOT_FOUND
for an unknown Sample ID or when no sample is that recent, INVALID_FIELD when the sample
type is not the session's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zigpy.types as t

from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.meter.sampling import MAX_SAMPLES, SAMPLE_TYPES, SamplingSession
from sep.zcl.frames import Request, Status, build_frame, response_header

if TYPE_CHECKING:
    from sep.metrology.api import Reading

CANCEL = 0xFFFFFFFF
MAX_SESSIONS = 4
SAMPLES_PER_FRAME = 23  # (80-byte payload - 11 bytes of header) / 3


class SamplingMixin:
    """Sampling sessions for :class:`~sep.clusters.metering.MeteringServer`."""

    if TYPE_CHECKING:  # provided by MeteringServer
        reading: Reading | None

        def _head_end(self, req: Request, what: str) -> Status | None: ...

    def _init_sampling(self) -> None:
        self.sessions: dict[int, SamplingSession] = {}
        self.last_sample_id = 0
        self.sampling_event_id: int | None = None
        self.on_sessions: Callable[[], None] | None = None  # the store keeps them

    @staticmethod
    def _sampled(reading: Reading, sample_type: int) -> int:
        return reading.received_wh if sample_type == 1 else reading.delivered_wh

    def _feed_sessions(self, reading: Reading) -> None:
        for session in self.sessions.values():
            session.feed(reading.timestamp, self._sampled(reading, session.sample_type))

    def _start_sampling(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        refused = self._head_end(req, "StartSampling")
        if refused is not None:
            return refused
        event_id, start = int(args.issuer_event_id), int(args.start_sampling_time)
        if start == CANCEL:
            found = [sid for sid, s in self.sessions.items() if s.issuer_event_id == event_id]
            if not found:
                return Status.NOT_FOUND
            for sid in found:
                del self.sessions[sid]
            self._sessions_changed()
            return Status.SUCCESS
        if self.sampling_event_id is not None and event_id <= self.sampling_event_id:
            return Status.INVALID_VALUE  # an older (or replayed) request
        sample_type = int(args.sample_type)
        interval, count = int(args.sample_request_interval), int(args.max_number_of_samples)
        if sample_type not in SAMPLE_TYPES:
            return Status.INVALID_FIELD
        if interval == 0 or count == 0:
            return Status.INVALID_VALUE
        if count > MAX_SAMPLES:
            return Status.INSUFFICIENT_SPACE
        live = {sid: s for sid, s in self.sessions.items() if not s.complete}
        if len(live) >= MAX_SESSIONS:
            return Status.INSUFFICIENT_SPACE
        # completed sessions make room (the oldest first)
        while len(self.sessions) >= MAX_SESSIONS:
            del self.sessions[min(sid for sid in self.sessions if sid not in live)]
        self.sampling_event_id = event_id
        self.last_sample_id = self.last_sample_id % 0xFFFE + 1
        session = SamplingSession(self.last_sample_id, event_id,
                                  int(now) if start == 0 else start + ZIGBEE_EPOCH,
                                  sample_type, interval, count)
        if self.reading is not None:  # the register as last read: before the first point
            session.feed(self.reading.timestamp, self._sampled(self.reading, sample_type))
        self.sessions[session.sample_id] = session
        self._sessions_changed()
        payload = t.uint16_t(session.sample_id).serialize()
        return [build_frame(response_header(req, 0x0D, general=False), payload)]

    def _get_sampled_data(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        session = self.sessions.get(int(args.sample_id))
        if session is None:
            return Status.NOT_FOUND
        if int(args.sample_type) != session.sample_type:
            return Status.INVALID_FIELD
        count = min(int(args.number_of_samples), SAMPLES_PER_FRAME)
        first, samples = session.select(int(args.earliest_sample_time) + ZIGBEE_EPOCH, count)
        if not samples:
            return Status.NOT_FOUND
        payload = (t.uint16_t(session.sample_id).serialize()
                   + t.uint32_t(to_zcl_time(first)).serialize()
                   + t.uint8_t(session.sample_type).serialize()
                   + t.uint16_t(session.interval).serialize()
                   + t.uint16_t(len(samples)).serialize()
                   + b"".join(t.uint24_t(v).serialize() for v in samples))
        return [build_frame(response_header(req, 0x07, general=False), payload)]

    def _sessions_changed(self) -> None:
        if self.on_sessions is not None:
            self.on_sessions()

    def sampling_state(self) -> dict[str, Any]:
        return {"last_sample_id": self.last_sample_id, "event_id": self.sampling_event_id,
                "sessions": [s.state() for s in self.sessions.values()]}

    def restore_sampling(self, state: dict[str, Any]) -> None:
        self.last_sample_id = int(state["last_sample_id"])
        self.sampling_event_id = state.get("event_id")
        self.sessions = {int(s[0]): SamplingSession.from_state(s) for s in state["sessions"]}
