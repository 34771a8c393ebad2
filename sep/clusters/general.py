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


class BasicServer(ClusterServer):
    cluster = Basic

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
    """Time (ZCL 3.12) from the meter's clock. As the ESP, the meter is the HAN's time
    master: TimeStatus Master|Synchronized, and Time is then read-only over the air."""

    cluster = Time
    MASTER = 0x01
    SYNCHRONIZED = 0x02
    MASTER_ZONE_DST = 0x04

    def __init__(self, clock: Clock, *, master: bool = True, time_zone: int = 0,
                 dst_shift: int = 3600) -> None:
        super().__init__()
        self.clock = clock
        self.offset = 0.0  # set by writes of Time when not master
        status = (self.MASTER | self.MASTER_ZONE_DST | self.SYNCHRONIZED) if master else 0
        self.values.update({
            0x0001: status,
            0x0002: time_zone,
            0x0005: dst_shift,
            0x0008: 0,
            0x0009: 0xFFFFFFFF,
        })
        self.getters[0x0000] = lambda: to_zcl_time(self.now())
        self.getters[0x0003] = lambda: self._dst_bounds()[0]
        self.getters[0x0004] = lambda: self._dst_bounds()[1]
        self.getters[0x0006] = lambda: to_zcl_time(self.now()) + int(self.values[0x0002])
        self.getters[0x0007] = self._local_time
        self.on_write[0x0000] = self._set_time

    def now(self) -> float:
        return self.clock.now() + self.offset

    def writable(self, attr_id: int) -> bool:
        if attr_id in (0x0000, 0x0001) and int(self.values[0x0001]) & self.MASTER:
            return False  # a master's time is not set over the air
        return super().writable(attr_id)

    def _set_time(self, value: Any) -> None:
        self.offset = int(value) + ZIGBEE_EPOCH - self.clock.now()
        self.values[0x0008] = int(value)

    def _dst_bounds(self) -> tuple[int, int]:
        """EU rule (the GB meter's): last Sunday of March to last Sunday of October, 01:00 UTC."""
        year = dt.datetime.fromtimestamp(self.now(), dt.UTC).year

        def last_sunday(month: int) -> int:
            day = dt.datetime(year, month + 1, 1, 1, tzinfo=dt.UTC) - dt.timedelta(days=1)
            day -= dt.timedelta(days=(day.weekday() + 1) % 7)
            return to_zcl_time(day.timestamp())

        return last_sunday(3), last_sunday(10)

    def _local_time(self) -> int:
        standard = to_zcl_time(self.now()) + int(self.values[0x0002])
        start, end = self._dst_bounds()
        utc = to_zcl_time(self.now())
        return standard + (int(self.values[0x0005]) if start <= utc < end else 0)
