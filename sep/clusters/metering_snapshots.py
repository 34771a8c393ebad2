"""Metering snapshots: TakeSnapshot, GetSnapshot, ScheduleSnapshot, PublishSnapshot
(SE 1.4 D.3.2.3.1.5-7, D.3.2.4.1.5-7), a mixin of the Metering server.

A snapshot freezes the summations, the tier registers (delivered and received) and, when
the meter keeps bills (a tariff with a billing period), the bill to date and projected
bill with their time stamps. It is taken on request (TakeSnapshot, cause "manually
triggered from client" or "general"), by a schedule (ScheduleSnapshot: the schedule's cause
plus "scheduled snapshot"; the snapshot is published at once to the client that scheduled
it), and by the meter itself at the end of each billing period ("end of billing period").

PublishSnapshot sub-payloads (SE 1.4 D.3.2.4.1.7.x, all little-endian):

- 0x00 TOU Information Set Delivered Registers: CurrentSummationDelivered (uint48),
  BillToDateDelivered (uint32), BillToDateTimeStampDelivered (UTC), ProjectedBillDelivered
  (uint32), ProjectedBillTimeStampDelivered (UTC), BillDeliveredTrailingDigit (map8),
  NumberOfTiersInUse (uint8), CurrentTierNSummationDelivered (uint48 each);
- 0x01 the same for the Received registers;
- 0x04 / 0x05 the "No Billing" forms: summation, number of tiers, tier summations — what a
  snapshot without bills carries.

ScheduleSnapshot is a head-end command (the authorised ESI / trust centre, as supply
commands); its issuer event id must be newer than the last schedule's (the commands of
one multi-command ScheduleSnapshot share theirs). Confirmations (ZCL 8 Table 10-96,
zigpy's ``SnapshotScheduleConfirmation``): 0 accepted, 1 snapshot type not supported (only
TOU delivered/received here), 2 snapshot cause not supported, 5 insufficient space (four
schedules).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zigpy.types as t

from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.meter.snapshot_schedule import SnapshotSchedule, split_schedule
from sep.zcl.frames import Request, Status, build_frame, response_header

if TYPE_CHECKING:
    from sep.meter.registers import RegisterSet
    from sep.metrology.api import Reading

# Snapshot causes (SE 1.4a Table D-52, zigpy's ``SnapshotCause``)
CAUSE_GENERAL = 0x00000001
CAUSE_END_OF_BILLING_PERIOD = 0x00000002
CAUSE_MANUAL = 0x00000400  # "Manually triggered from client"
CAUSE_SCHEDULED = 0x00010000
CAUSES_ON_REQUEST = CAUSE_GENERAL | CAUSE_MANUAL
CAUSES_SCHEDULED = CAUSE_GENERAL | CAUSE_SCHEDULED
ALL_CAUSES = 0xFFFFFFFF

TOU_DELIVERED = 0x00
TOU_RECEIVED = 0x01
TOU_DELIVERED_NO_BILLING = 0x04
TOU_RECEIVED_NO_BILLING = 0x05
SCHEDULE_PAYLOAD_TYPES = (TOU_DELIVERED, TOU_RECEIVED)

SNAPSHOT_ACCEPTED = 0x00
SNAPSHOT_CAUSE_NOT_SUPPORTED = 0x01  # TakeSnapshotResponse confirmation (0x02.. reserved)
SCHEDULE_ACCEPTED = 0x00
SCHEDULE_TYPE_NOT_SUPPORTED = 0x01
SCHEDULE_CAUSE_NOT_SUPPORTED = 0x02
SCHEDULE_INSUFFICIENT_SPACE = 0x05
MAX_SNAPSHOTS = 64
MAX_SCHEDULES = 4
CANCEL_SCHEDULE = 0xFFFFFFFF  # a schedule's start time of 0xFFFFFFFF removes it

Bill = tuple[int, int, int, int, int]  # to date, its time, projected, its time (ZCL), digits


@dataclasses.dataclass(frozen=True)
class Snapshot:
    snapshot_id: int
    time: int  # unix seconds
    cause: int
    summation_delivered: int
    tiers_delivered: tuple[int, ...]
    summation_received: int = 0
    tiers_received: tuple[int, ...] = ()
    bill: Bill | None = None  # delivered; None: the meter kept no bill
    bill_received: Bill | None = None

    def state(self) -> list[Any]:
        return [self.snapshot_id, self.time, self.cause, self.summation_delivered,
                list(self.tiers_delivered), self.summation_received, list(self.tiers_received),
                None if self.bill is None else list(self.bill),
                None if self.bill_received is None else list(self.bill_received)]

    @classmethod
    def from_state(cls, s: list[Any]) -> Snapshot:
        def bill(v: Any) -> Bill | None:
            return None if v is None else tuple(int(x) for x in v)  # type: ignore[return-value]

        more = s[5:] + [0, [], None, None][len(s) - 5:]
        return cls(int(s[0]), int(s[1]), int(s[2]), int(s[3]), tuple(int(v) for v in s[4]),
                   int(more[0]), tuple(int(v) for v in more[1]), bill(more[2]), bill(more[3]))

    def sub_payload(self, payload_type: int) -> tuple[int, bytes]:
        """(the payload type actually sent, its bytes) for a requested TOU type."""
        received = payload_type in (TOU_RECEIVED, TOU_RECEIVED_NO_BILLING)
        summation = self.summation_received if received else self.summation_delivered
        tiers = self.tiers_received if received else self.tiers_delivered
        bill = self.bill_received if received else self.bill
        out = t.uint48_t(summation).serialize()
        if bill is None:
            sent = TOU_RECEIVED_NO_BILLING if received else TOU_DELIVERED_NO_BILLING
        else:
            sent = TOU_RECEIVED if received else TOU_DELIVERED
            to_date, stamp, projected, projected_stamp, digits = bill
            out += (t.uint32_t(to_date).serialize() + t.uint32_t(stamp).serialize()
                    + t.uint32_t(projected).serialize() + t.uint32_t(projected_stamp).serialize()
                    + t.uint8_t(digits).serialize())
        out += t.uint8_t(len(tiers)).serialize() + b"".join(
            t.uint48_t(v).serialize() for v in tiers)
        return sent, out


def publish_snapshot_payload(snap: Snapshot, found: int, payload_type: int) -> bytes:
    sent, body = snap.sub_payload(payload_type)
    return (t.uint32_t(snap.snapshot_id).serialize() + t.uint32_t(to_zcl_time(snap.time)).serialize()
            + t.uint8_t(found).serialize() + t.uint8_t(0).serialize() + t.uint8_t(1).serialize()
            + t.uint32_t(snap.cause).serialize() + t.uint8_t(sent).serialize() + body)


class SnapshotMixin:
    """Snapshots and their schedules for :class:`~sep.clusters.metering.MeteringServer`."""

    if TYPE_CHECKING:  # provided by MeteringServer
        registers: RegisterSet
        config: Any

        def _reading(self) -> Reading: ...
        def bills(self) -> tuple[Bill | None, Bill | None]: ...
        def push(self, command_id: int, payload: bytes, *,
                 dst: tuple[int, int] | None = None) -> bytes: ...
        def _head_end(self, req: Request, what: str) -> Status | None: ...

    def _init_snapshots(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.on_snapshot: Callable[[Snapshot], None] | None = None  # the store keeps them
        self.schedules: dict[int, SnapshotSchedule] = {}
        self.schedule_event_id: int | None = None
        self.on_schedules: Callable[[], None] | None = None  # the store keeps them too

    def take_snapshot(self, now: float, cause: int = CAUSE_MANUAL, *,
                      bills: tuple[Bill | None, Bill | None] | None = None) -> Snapshot:
        """A snapshot of the registers now (and of ``bills``, default the bills to date)."""
        reading = self._reading()
        n = self.config.tiers_in_use
        bill, bill_received = self.bills() if bills is None else bills
        snap = Snapshot(
            snapshot_id=(self.snapshots[-1].snapshot_id + 1) if self.snapshots else 1,
            time=int(now), cause=cause, summation_delivered=reading.delivered_wh,
            tiers_delivered=tuple(self.registers.tiers_delivered[:n]),
            summation_received=reading.received_wh,
            tiers_received=tuple(self.registers.tiers_received[:n]),
            bill=bill, bill_received=bill_received)
        self.snapshots.append(snap)
        del self.snapshots[:-MAX_SNAPSHOTS]
        if self.on_snapshot is not None:
            self.on_snapshot(snap)
        return snap

    def _take_snapshot(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        cause = int(args.snapshot_cause)
        if not cause or cause & ~CAUSES_ON_REQUEST:
            sid, confirmation = 0, SNAPSHOT_CAUSE_NOT_SUPPORTED
        else:
            try:
                snap = self.take_snapshot(now, cause)
            except LookupError:  # metrology fault: no snapshot of untrusted registers
                return Status.FAILURE
            sid, confirmation = snap.snapshot_id, SNAPSHOT_ACCEPTED
        payload = t.uint32_t(sid).serialize() + t.uint8_t(confirmation).serialize()
        return [build_frame(response_header(req, 0x05, general=False), payload)]

    def _get_snapshot(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        earliest = int(args.earliest_start_time) + ZIGBEE_EPOCH
        latest = int(args.latest_end_time) + ZIGBEE_EPOCH
        cause = int(args.snapshot_cause)
        found = [s for s in reversed(self.snapshots)
                 if earliest <= s.time <= latest and (cause == ALL_CAUSES or s.cause & cause)]
        offset = int(args.snapshot_offset)
        if offset >= len(found):
            return Status.NOT_FOUND
        payload = publish_snapshot_payload(found[offset], len(found), TOU_DELIVERED)
        return [build_frame(response_header(req, 0x06, general=False), payload)]

    # -- schedules ----------------------------------------------------------------------
    def _schedule_snapshot(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        refused = self._head_end(req, "ScheduleSnapshot")
        if refused is not None:
            return refused
        event_id = int(args.issuer_event_id)
        index, total = int(args.command_index), int(args.total_number_of_commands)
        if total == 0 or index >= total:
            return Status.INVALID_FIELD
        last = self.schedule_event_id
        if (index == 0 and last is not None and event_id <= last) or (
                index > 0 and event_id != last):
            return Status.INVALID_VALUE  # an older (or replayed) schedule
        self.schedule_event_id = event_id
        answers = []
        for p in args.snapshot_schedule_payloads:
            answers.append((int(p.snapshot_schedule_id), self._add_schedule(p, event_id, req,
                                                                            now)))
        if self.on_schedules is not None:
            self.on_schedules()
        payload = t.uint32_t(event_id).serialize() + b"".join(
            t.uint8_t(sid).serialize() + t.uint8_t(c).serialize() for sid, c in answers)
        return [build_frame(response_header(req, 0x04, general=False), payload)]

    def _add_schedule(self, p: Any, event_id: int, req: Request, now: float) -> int:
        sid, start = int(p.snapshot_schedule_id), int(p.snapshot_start_time)
        if start == CANCEL_SCHEDULE:
            self.schedules.pop(sid, None)
            return SCHEDULE_ACCEPTED
        frequency, ftype, wild = split_schedule(int(p.snapshot_schedule))
        ptype, cause = int(p.snapshot_payload_type), int(p.snapshot_cause)
        if ptype not in SCHEDULE_PAYLOAD_TYPES:
            return SCHEDULE_TYPE_NOT_SUPPORTED
        if cause & ~CAUSES_SCHEDULED:
            return SCHEDULE_CAUSE_NOT_SUPPORTED
        schedule = SnapshotSchedule(sid, int(now) if start == 0 else start + ZIGBEE_EPOCH,
                                    frequency, ftype, wild, ptype, cause | CAUSE_SCHEDULED,
                                    event_id, (req.src_nwk, req.src_ep))
        if not schedule.valid():
            return SCHEDULE_TYPE_NOT_SUPPORTED
        if sid not in self.schedules and len(self.schedules) >= MAX_SCHEDULES:
            return SCHEDULE_INSUFFICIENT_SPACE
        self.schedules[sid] = schedule
        return SCHEDULE_ACCEPTED

    def _run_schedules(self, now: float) -> None:
        changed = False
        for schedule in list(self.schedules.values()):
            when = schedule.due(now)
            if when is None:
                continue
            schedule.last = when
            changed = True
            try:
                snap = self.take_snapshot(when, schedule.cause)
            except LookupError:
                continue  # metrology fault: no snapshot of untrusted registers
            self.push(0x06, publish_snapshot_payload(snap, 1, schedule.payload_type),
                      dst=schedule.requester)
            if schedule.frequency == 0:
                del self.schedules[schedule.schedule_id]
        if changed and self.on_schedules is not None:
            self.on_schedules()

    def schedules_state(self) -> dict[str, Any]:
        return {"event_id": self.schedule_event_id,
                "schedules": [s.state() for s in self.schedules.values()]}

    def restore_schedules(self, state: dict[str, Any]) -> None:
        self.schedule_event_id = state.get("event_id")
        self.schedules = {int(s[0]): SnapshotSchedule.from_state(s) for s in state["schedules"]}
