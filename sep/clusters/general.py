"""Basic, Identify and Time servers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from zigpy.zcl.clusters.general import Basic, Identify, Time

from sep.clock import Clock
from sep.clusters.base import ClusterServer
from sep.zcl.frames import Request, Status, build_frame, response_header

ZIGBEE_EPOCH = 946_684_800  # 2000-01-01T00:00:00Z in Unix seconds


def to_zcl_time(unix: float) -> int:
    return int(unix) - ZIGBEE_EPOCH


def _utc32(value: int) -> int:
    """A computed time as a ZCL UTCTime/uint32 can carry it (0xFFFFFFFF: invalid)."""
    return value if 0 <= value < 0xFFFFFFFF else 0xFFFFFFFF


class BasicServer(ClusterServer):
    cluster = Basic
    generated = frozenset()  # Basic generates no cluster command

    def __init__(self, *, manufacturer: str, model: str, sw_build_id: str,
                 app_version: int = 1, hw_version: int = 1, date_code: str = "") -> None:
        super().__init__()
        self.values.update({
            0x0000: 8,  # ZCLVersion (ZCL r8)
            0x0001: app_version,
            0x0002: 1,  # StackVersion
            0x0003: hw_version,
            0x0004: manufacturer,
            0x0005: model,
            0x0006: date_code,
            0x0007: 0x01,  # PowerSource: mains, single phase
            0x0010: "",  # LocationDescription (rw, 16 chars)
            0x0011: 0,  # PhysicalEnvironment
            0x0012: True,  # DeviceEnabled
            0x4000: sw_build_id,
        })
        self.validators[0x0010] = lambda v: len(v) <= 16


class IdentifyServer(ClusterServer):
    """Identify: IdentifyTime counts down in (the clock's) seconds."""

    cluster = Identify
    generated = frozenset({0x00})  # IdentifyQueryResponse

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.until = 0.0
        self.getters[0x0000] = self._remaining
        self.values[0x0000] = 0
        self.on_write[0x0000] = self._start
        self.commands[0x00] = self._identify
        self.commands[0x01] = self._identify_query

    def _remaining(self) -> int:
        return max(0, int(round(self.until - self.clock.now())))

    def _start(self, seconds: Any) -> None:
        self.until = self.clock.now() + int(seconds)

    def _identify(self, req: Request, args: Any, now: float) -> Status:
        self._start(args.identify_time)
        return Status.SUCCESS

    def _identify_query(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        remaining = self._remaining()
        if not remaining:
            return Status.SUCCESS  # not identifying: no Identify Query Response
        hdr = response_header(req, 0x00, general=False)
        return [build_frame(hdr, remaining.to_bytes(2, "little"))]


class TimeServer(ClusterServer):
    """Time (ZCL 3.12) from the meter's clock.

    As the ESP the meter is the HAN's time master: TimeStatus Master | Synchronized |
    MasterZoneDst. Time and TimeStatus are then read-only over the air, and so are
    TimeZone and the DST attributes (the master's zone and DST rule are authoritative);
    DstStart/DstEnd follow the EU rule for the current year (last Sunday of March and of
    October, 01:00 UTC — the GB meter's). StandardTime = Time + TimeZone, LocalTime =
    StandardTime + DstShift while DstStart <= Time < DstEnd. LastSetTime is when the
    clock was last set (start-up for a master, else the last write of Time);
    ValidUntilTime is LastSetTime + ``valid_for`` (0xFFFFFFFF: no limit).

    Not a master (``master=False``): Time is written over the air by the HAN's master,
    which also sets the zone and DST attributes; the Synchronized bit follows.
    """

    cluster = Time
    generated = frozenset()  # Time generates no cluster command
    MASTER = 0x01
    SYNCHRONIZED = 0x02
    MASTER_ZONE_DST = 0x04
    SUPERSEDING = 0x08

    def __init__(self, clock: Clock, *, master: bool = True, time_zone: int = 0,
                 dst_shift: int = 3600, valid_for: int | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.master = master
        self.valid_for = valid_for
        self.offset = 0.0  # set by writes of Time when not master
        status = (self.MASTER | self.MASTER_ZONE_DST | self.SYNCHRONIZED) if master else 0
        self.last_set = to_zcl_time(clock.now()) if master else 0xFFFFFFFF
        self.values.update({
            0x0001: status,
            0x0002: time_zone,
            0x0003: 0xFFFFFFFF,  # a non-master keeps what its master writes
            0x0004: 0xFFFFFFFF,
            0x0005: dst_shift,
        })
        self.getters[0x0000] = lambda: to_zcl_time(self.now())
        self.getters[0x0003] = lambda: self._dst_bounds()[0]
        self.getters[0x0004] = lambda: self._dst_bounds()[1]
        self.getters[0x0006] = lambda: _utc32(to_zcl_time(self.now()) + int(self.values[0x0002]))
        self.getters[0x0007] = self._local_time
        self.getters[0x0008] = lambda: self.last_set
        self.getters[0x0009] = self._valid_until
        self.on_write[0x0000] = self._set_time
        self.validators[0x0001] = lambda v: int(v) & ~0x0F == 0
        # ZCL r8 3.12.2.2: TimeZone and DstShift are offsets of at most a day either way
        self.validators[0x0002] = lambda v: -86400 <= int(v) <= 86400
        self.validators[0x0005] = lambda v: -86400 <= int(v) <= 86400

    def now(self) -> float:
        return self.clock.now() + self.offset

    def _zone_master(self) -> bool:
        return bool(int(self.values[0x0001]) & self.MASTER_ZONE_DST)

    def writable(self, attr_id: int) -> bool:
        status = int(self.values[0x0001])
        if attr_id in (0x0000, 0x0001) and status & self.MASTER:
            return False  # a master's time is not set over the air
        if attr_id in (0x0002, 0x0003, 0x0004, 0x0005) and status & self.MASTER_ZONE_DST:
            return False  # nor its time zone and DST
        return super().writable(attr_id)

    def _set_time(self, value: Any) -> None:
        self.offset = int(value) + ZIGBEE_EPOCH - self.clock.now()
        self.last_set = int(value)
        self.values[0x0001] = int(self.values[0x0001]) | self.SYNCHRONIZED

    @property
    def synchronised(self) -> bool:
        return bool(int(self.values[0x0001]) & (self.MASTER | self.SYNCHRONIZED))

    def synchronise(self, master: dict[int, Any]) -> bool:
        """Take the time, zone and DST read from our time master (a Time client's work):
        we then serve Time as synchronised, never as master (ZCL 3.12.2.2.2). Returns
        False when the source is neither master nor synchronised itself."""
        status = int(master.get(0x0001, 0))
        if not status & (self.MASTER | self.SYNCHRONIZED) or 0x0000 not in master:
            return False
        utc = int(master[0x0000])
        if utc in (0, 0xFFFFFFFF):
            return False
        self.offset = utc + ZIGBEE_EPOCH - self.clock.now()
        self.last_set = utc
        for attr in (0x0002, 0x0003, 0x0004, 0x0005):
            if attr in master:
                self.values[attr] = int(master[attr])
        self.values[0x0001] = self.SYNCHRONIZED
        return True

    def _valid_until(self) -> int:
        if self.valid_for is None or self.last_set == 0xFFFFFFFF:
            return 0xFFFFFFFF
        return min(self.last_set + self.valid_for, 0xFFFFFFFE)

    def _dst_bounds(self) -> tuple[int, int]:
        """EU rule (the GB meter's): last Sunday of March to last Sunday of October, 01:00 UTC."""
        if not self._zone_master():
            return int(self.values[0x0003]), int(self.values[0x0004])
        year = dt.datetime.fromtimestamp(self.now(), dt.UTC).year

        def last_sunday(month: int) -> int:
            day = dt.datetime(year, month + 1, 1, 1, tzinfo=dt.UTC) - dt.timedelta(days=1)
            day -= dt.timedelta(days=(day.weekday() + 1) % 7)
            return to_zcl_time(day.timestamp())

        return last_sunday(3), last_sunday(10)

    def _local_time(self) -> int:
        utc = to_zcl_time(self.now())
        standard = utc + int(self.values[0x0002])
        start, end = self._dst_bounds()
        in_dst = start != 0xFFFFFFFF and end != 0xFFFFFFFF and start <= utc < end
        return _utc32(standard + (int(self.values[0x0005]) if in_dst else 0))
