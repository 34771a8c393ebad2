"""Metering server: reading information set, tiers, history, load profile, snapshots,
fast poll and supply control (SE 1.4 D.3).

Registers are kept in Wh and W; with Multiplier 1 and Divisor 1000 the HAN sees kWh and
kW (value x Multiplier / Divisor in the UnitOfMeasure, here kWh/kW binary). The
formatting bytes tell a display how many digits to show: bits 0-2 digits right of the
decimal point, bits 3-6 digits left of it, bit 7 suppress leading zeros.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import zigpy.types as t

from sep.clusters.base import ClusterServer
from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.meter.load_profile import CHANNELS, LoadProfile
from sep.meter.registers import MAX_TIERS, RegisterSet
from sep.meter.supply import SupplyControl, SupplyStatus
from sep.metrology.api import MetrologyStatus, Reading
from sep.zcl.frames import Request, Status, build_frame, response_header
from sep.zcl.metering import Metering

# Metering Status (0x0200) bits for electricity meters, SE 1.4 D.3.2.2.2
STATUS_CHECK_METER = 0x01
STATUS_LOW_BATTERY = 0x02
STATUS_TAMPER_DETECT = 0x04
STATUS_POWER_FAILURE = 0x08
STATUS_POWER_QUALITY = 0x10
STATUS_LEAK_DETECT = 0x20
STATUS_SERVICE_DISCONNECT_OPEN = 0x40

# GetProfileResponse status (SE 1.4 D.3.2.4.1.1)
PROFILE_SUCCESS = 0x00
PROFILE_UNDEFINED_CHANNEL = 0x01
PROFILE_CHANNEL_NOT_SUPPORTED = 0x02
PROFILE_INVALID_END_TIME = 0x03
PROFILE_TOO_MANY_PERIODS = 0x04
PROFILE_NO_INTERVALS = 0x05

MAX_PERIODS_DELIVERED = 24
FAST_POLL_PERIOD_S = 2  # the fastest update period the meter supports (attribute 0x000B)
FAST_POLL_MAX_MINUTES = 15  # SE: fast poll mode lasts at most 15 minutes

SNAPSHOT_PAYLOAD_TOU_DELIVERED = 0x00
SNAPSHOT_CAUSE_MANUAL = 0x00000400  # "Manually triggered from client"


def formatting(left: int, right: int, suppress_leading_zeros: bool = True) -> int:
    if not (0 <= left <= 15 and 0 <= right <= 7):
        raise ValueError("left digits 0..15, right digits 0..7")
    return (0x80 if suppress_leading_zeros else 0) | (left << 3) | right


def from_zcl_time(value: int) -> int:
    return int(value) + ZIGBEE_EPOCH


@dataclasses.dataclass(frozen=True)
class MeteringConfig:
    multiplier: int = 1
    divisor: int = 1000
    unit_of_measure: int = 0x00  # kWh (binary)
    summation_formatting: int = formatting(7, 3)  # 0xBB: up to 9,999,999.999 kWh
    demand_formatting: int = formatting(5, 3)  # 0xAB: up to 99,999.999 kW
    device_type: int = 0x00  # electric metering
    profile_period_code: int = 2  # 30 minutes
    tiers_in_use: int = 4


@dataclasses.dataclass(frozen=True)
class Snapshot:
    snapshot_id: int
    time: int  # unix seconds
    cause: int
    summation_delivered: int
    tiers_delivered: tuple[int, ...]


class MeteringServer(ClusterServer):
    cluster = Metering
    reportable = frozenset({0x0000, 0x0001, 0x0014, 0x0200, 0x0400})

    def __init__(self, config: MeteringConfig | None = None, *,
                 supply: SupplyControl | None = None,
                 profile: LoadProfile | None = None) -> None:
        super().__init__()
        cfg = config or MeteringConfig()
        self.config = cfg
        self.reading: Reading | None = None
        self.extra_status = 0  # faults reported by other parts (store integrity ...)
        self.registers = RegisterSet()
        self.profile = profile or LoadProfile(cfg.profile_period_code)
        self.supply = supply or SupplyControl()
        self.snapshots: list[Snapshot] = []
        self.fast_poll_until = 0
        self.values.update({
            0x000A: 30,  # DefaultUpdatePeriod (s)
            0x000B: FAST_POLL_PERIOD_S,
            0x000F: cfg.profile_period_code,
            0x0300: cfg.unit_of_measure,
            0x0301: cfg.multiplier,
            0x0302: cfg.divisor,
            0x0303: cfg.summation_formatting,
            0x0304: cfg.demand_formatting,
            0x0306: cfg.device_type,
            0x0500: MAX_PERIODS_DELIVERED,
            0x0604: self.supply.arm_duration_s,
        })
        g = self.getters
        g[0x0000] = lambda: self._reading().delivered_wh
        g[0x0001] = lambda: self._reading().received_wh
        g[0x0400] = lambda: self._reading().demand_w
        g[0x0200] = self._meter_status
        g[0x0014] = lambda: int(self.supply.status)
        g[0x0601] = lambda: self.supply.demand_limit_w or 0
        g[0x0605] = lambda: int(self._load_limit_state)
        g[0x0606] = lambda: self.supply.load_limit_counter
        for n in range(cfg.tiers_in_use):
            g[0x0100 + 2 * n] = lambda n=n: self._trusted(self.registers.tiers_delivered[n])
            g[0x0101 + 2 * n] = lambda n=n: self._trusted(self.registers.tiers_received[n])
        reg = self.registers
        g[0x0401] = lambda: self._trusted(reg.day.current[0])
        g[0x0402] = lambda: self._trusted(reg.day.current[1])
        g[0x0403] = lambda: self._trusted(reg.day.previous[0])
        g[0x0404] = lambda: self._trusted(reg.day.previous[1])
        g[0x0405] = lambda: to_zcl_time(self.profile.current_start or 0)
        g[0x0407] = lambda: self._trusted(self.profile.current[0])
        g[0x0420] = lambda: self._trusted(reg.week.current[0])
        g[0x0421] = lambda: self._trusted(reg.week.current[1])
        g[0x0422] = lambda: self._trusted(reg.week.previous[0])
        g[0x0423] = lambda: self._trusted(reg.week.previous[1])
        g[0x0430] = lambda: self._trusted(reg.month.current[0])
        g[0x0431] = lambda: self._trusted(reg.month.current[1])
        g[0x0432] = lambda: self._trusted(reg.month.previous[0])
        g[0x0433] = lambda: self._trusted(reg.month.previous[1])
        self._load_limit_state = SupplyStatus.ARMED
        self.commands.update({
            0x00: self._get_profile,
            0x03: self._request_fast_poll_mode,
            0x05: self._take_snapshot,
            0x06: self._get_snapshot,
            0x0A: self._reset_load_limit_counter,
            0x0B: self._change_supply,
            0x0C: self._local_change_supply,
            0x0D: self._set_supply_status,
        })

    # -- readings ---------------------------------------------------------------------------
    def update(self, reading: Reading) -> None:
        self.reading = reading
        if reading.status & (MetrologyStatus.CALIBRATION_FAULT | MetrologyStatus.MEASUREMENT_FAULT
                             | MetrologyStatus.LINK_DOWN):
            return  # untrusted or stale energy is not booked anywhere
        d, r = self.registers.update(reading.timestamp, reading.delivered_wh, reading.received_wh)
        self.profile.add(reading.timestamp, d, r)
        self.supply.tick(reading.timestamp, reading.demand_w)

    def set_active_tier(self, tier: int) -> None:
        """The active price tier decides which tier register accrues (Price server calls)."""
        self.registers.set_tier(min(max(tier, 1), self.config.tiers_in_use))

    def _reading(self) -> Reading:
        if self.reading is None:
            raise LookupError("no reading from metrology yet")
        if self.reading.status & (
            MetrologyStatus.CALIBRATION_FAULT | MetrologyStatus.MEASUREMENT_FAULT
            | MetrologyStatus.LINK_DOWN
        ):
            # Never serve energy we do not trust (WELMEC 7.2): the read fails instead.
            raise LookupError(f"metrology fault: {self.reading.status!r}")
        return self.reading

    def _trusted(self, value: int) -> int:
        self._reading()
        return value

    def _meter_status(self) -> int:
        status = self.extra_status
        if self.reading is None or self.reading.status != MetrologyStatus.OK:
            status |= STATUS_CHECK_METER
        if self.supply.status != SupplyStatus.ON:
            status |= STATUS_SERVICE_DISCONNECT_OPEN
        return status

    # -- responses ----------------------------------------------------------------------------
    def _respond(self, req: Request, command_id: int, **fields: Any) -> list[bytes]:
        schema = self.cluster.client_commands[command_id].schema
        payload = schema(**fields).serialize()
        return [build_frame(response_header(req, command_id, general=False), payload)]

    def _get_profile(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        channel, end_time, count = int(args.interval_channel), int(args.end_time), int(
            args.number_of_periods)
        period = self.config.profile_period_code
        status = PROFILE_SUCCESS
        intervals: list[int] = []
        first_end = 0
        if channel > 7:
            status = PROFILE_UNDEFINED_CHANNEL
        elif channel not in CHANNELS:
            status = PROFILE_CHANNEL_NOT_SUPPORTED
        elif end_time != 0 and from_zcl_time(end_time) > int(now):
            status = PROFILE_INVALID_END_TIME
        else:
            wanted = count
            if count > MAX_PERIODS_DELIVERED:
                status = PROFILE_TOO_MANY_PERIODS
                wanted = MAX_PERIODS_DELIVERED
            at = 0 if end_time == 0 else from_zcl_time(end_time)
            first_end, intervals = self.profile.get(channel, at, wanted)
            if not intervals:
                status = PROFILE_NO_INTERVALS
        return self._respond(
            req, 0x00,
            end_time=t.UTCTime(to_zcl_time(first_end) if first_end else 0),
            status=t.uint8_t(status), profile_interval_period=t.uint8_t(period),
            number_of_periods_delivered=t.uint8_t(len(intervals)),
            intervals=t.List[t.uint24_t](intervals),
        )

    def _request_fast_poll_mode(self, req: Request, args: Any, now: float) -> list[bytes]:
        applied = max(int(args.fast_poll_update_period), FAST_POLL_PERIOD_S)
        minutes = min(int(args.duration), FAST_POLL_MAX_MINUTES)
        end = int(now) + minutes * 60
        # A request during fast poll mode does not extend it beyond what was granted.
        self.fast_poll_until = max(self.fast_poll_until, end)
        payload = t.uint8_t(applied).serialize() + t.uint32_t(
            to_zcl_time(self.fast_poll_until)).serialize()
        return [build_frame(response_header(req, 0x03, general=False), payload)]

    def take_snapshot(self, now: float, cause: int = SNAPSHOT_CAUSE_MANUAL) -> Snapshot:
        reading = self._reading()
        snap = Snapshot(
            snapshot_id=(self.snapshots[-1].snapshot_id + 1) if self.snapshots else 1,
            time=int(now), cause=cause, summation_delivered=reading.delivered_wh,
            tiers_delivered=tuple(self.registers.tiers_delivered[: self.config.tiers_in_use]),
        )
        self.snapshots.append(snap)
        del self.snapshots[:-64]
        return snap

    def _take_snapshot(self, req: Request, args: Any, now: float) -> list[bytes]:
        try:
            snap = self.take_snapshot(now, int(args.snapshot_cause))
            sid, confirmation = snap.snapshot_id, 0x00  # accepted
        except LookupError:
            sid, confirmation = 0, 0x02  # "Snapshot cause not supported / cannot be taken"
        payload = t.uint32_t(sid).serialize() + t.uint8_t(confirmation).serialize()
        return [build_frame(response_header(req, 0x05, general=False), payload)]

    def _get_snapshot(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        earliest = from_zcl_time(int(args.earliest_start_time))
        latest = from_zcl_time(int(args.latest_end_time))
        cause = int(args.snapshot_cause)
        found = [s for s in reversed(self.snapshots)
                 if earliest <= s.time <= latest and (cause == 0xFFFFFFFF or s.cause & cause
                                                      or cause == s.cause)]
        offset = int(args.snapshot_offset)
        if offset >= len(found):
            return Status.NOT_FOUND
        snap = found[offset]
        body = (
            t.uint48_t(snap.summation_delivered).serialize()
            + t.uint32_t(0).serialize() + t.uint32_t(0).serialize()  # bill to date + stamp
            + t.uint32_t(0).serialize() + t.uint32_t(0).serialize()  # projected bill + stamp
            + t.uint8_t(0).serialize()  # bill trailing digit
            + t.uint8_t(len(snap.tiers_delivered)).serialize()
            + b"".join(t.uint48_t(v).serialize() for v in snap.tiers_delivered)
        )
        payload = (
            t.uint32_t(snap.snapshot_id).serialize() + t.uint32_t(to_zcl_time(snap.time)).serialize()
            + t.uint8_t(len(found)).serialize() + t.uint8_t(0).serialize() + t.uint8_t(1).serialize()
            + t.uint32_t(snap.cause).serialize()
            + t.uint8_t(SNAPSHOT_PAYLOAD_TOU_DELIVERED).serialize() + body
        )
        return [build_frame(response_header(req, 0x06, general=False), payload)]

    def _change_supply(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        implementation = int(args.implementation_date_time)
        impl_unix = 0 if implementation == 0 else (
            0xFFFFFFFF if implementation == 0xFFFFFFFF else from_zcl_time(implementation))
        why = self.supply.remote_change(int(args.provider_id), int(args.issuer_event_id),
                                        impl_unix, int(args.proposed_supply_status), now)
        if why is not None:
            return Status.INVALID_VALUE if "reserved" in why else Status.NOT_AUTHORIZED
        if int(args.supply_control_bits) & 0x01:  # acknowledge required
            payload = (t.uint32_t(int(args.provider_id)).serialize()
                       + t.uint32_t(int(args.issuer_event_id)).serialize()
                       + t.uint32_t(implementation).serialize()
                       + t.uint8_t(int(self.supply.status)).serialize())
            return [build_frame(response_header(req, 0x0C, general=False), payload)]
        return Status.SUCCESS

    def _local_change_supply(self, req: Request, args: Any, now: float) -> Status:
        why = self.supply.local_change(int(args.proposed_supply_status))
        return Status.SUCCESS if why is None else Status.ACTION_DENIED

    def _set_supply_status(self, req: Request, args: Any, now: float) -> Status:
        try:
            self._load_limit_state = SupplyStatus(int(args.load_limit_supply_state))
        except ValueError:
            return Status.INVALID_VALUE
        return Status.SUCCESS

    def _reset_load_limit_counter(self, req: Request, args: Any, now: float) -> Status:
        why = self.supply.reset_load_limit_counter(int(args.provider_id),
                                                   int(args.issuer_event_id))
        return Status.SUCCESS if why is None else Status.NOT_AUTHORIZED


__all__ = ["MAX_TIERS", "MeteringConfig", "MeteringServer", "Snapshot", "formatting"]
