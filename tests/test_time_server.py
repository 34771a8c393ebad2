"""Time server write rules and non-master behaviour (ZCL r8 3.12), sans-IO; the values a
master serves are judged over the air by tshark in tests/test_metering_tshark.py."""

from __future__ import annotations

import zigpy.types as t
from zigpy.zcl import foundation

from sep.clock import ManualClock
from sep.clusters.general import ZIGBEE_EPOCH, TimeServer
from sep.zcl.frames import Request

S = foundation.Status
GC = foundation.GeneralCommand
T0 = 1_780_300_800  # 2026-06-01T08:00:00Z


def write(server: TimeServer, attr: int, zcl_type: int, value: object) -> list[tuple[int, int]]:
    """Write Attributes; returns [(status, attr)] for the failed records ([] = all ok)."""
    python_type = foundation.DataType.from_type_id(zcl_type).python_type
    rec = foundation.Attribute(attrid=attr, value=foundation.TypeValue(
        type=zcl_type, value=python_type(value)))
    req = Request(src_nwk=0x1234, src_ep=1, dst_ep=1, profile_id=0x0109, cluster_id=0x000A,
                  header=foundation.ZCLHeader.general(1, GC.Write_Attributes),
                  payload=t.List[foundation.Attribute]([rec]).serialize())
    frame = server.handle(req, T0)[0]
    _, rest = foundation.ZCLHeader.deserialize(frame)
    if rest == b"\x00":
        return []
    return [(rest[i], int.from_bytes(rest[i + 1:i + 3], "little")) for i in range(0, len(rest), 3)]


UTC, INT32, UINT32, BITMAP8 = 0xE2, 0x2B, 0x23, 0x18


def test_a_master_refuses_time_zone_and_dst_writes():
    ts = TimeServer(ManualClock(T0))
    assert write(ts, 0x0000, UTC, 0) == [(S.READ_ONLY, 0x0000)]
    assert write(ts, 0x0001, BITMAP8, 0) == [(S.READ_ONLY, 0x0001)]
    assert write(ts, 0x0002, INT32, 3600) == [(S.READ_ONLY, 0x0002)]
    assert write(ts, 0x0005, INT32, 0) == [(S.READ_ONLY, 0x0005)]
    assert write(ts, 0x0006, UINT32, 0) == [(S.READ_ONLY, 0x0006)]  # StandardTime: read only
    assert ts.read_value(0x0000) == T0 - ZIGBEE_EPOCH
    assert ts.read_value(0x0008) == T0 - ZIGBEE_EPOCH  # LastSetTime: start-up


def test_a_non_master_takes_time_zone_and_dst_from_its_master():
    clock = ManualClock(T0)
    ts = TimeServer(clock, master=False, valid_for=86400)
    assert ts.read_value(0x0001) == 0  # neither master nor synchronised yet
    assert ts.read_value(0x0008) == 0xFFFFFFFF and ts.read_value(0x0009) == 0xFFFFFFFF
    master_time = T0 + 3600 - ZIGBEE_EPOCH  # the master is an hour ahead of our clock
    assert write(ts, 0x0000, UTC, master_time) == []
    assert ts.read_value(0x0000) == master_time
    assert ts.read_value(0x0001) & TimeServer.SYNCHRONIZED
    assert ts.read_value(0x0008) == master_time
    assert ts.read_value(0x0009) == master_time + 86400
    # zone and DST as the master writes them: CET (+1 h) with a 1 h shift this summer
    assert write(ts, 0x0002, INT32, 3600) == []
    assert write(ts, 0x0003, UINT32, master_time - 86400) == []
    assert write(ts, 0x0004, UINT32, master_time + 86400) == []
    assert write(ts, 0x0005, INT32, 3600) == []
    assert ts.read_value(0x0006) == master_time + 3600
    assert ts.read_value(0x0007) == master_time + 7200
    assert write(ts, 0x0004, UINT32, master_time - 1) == []  # DST over
    assert ts.read_value(0x0007) == master_time + 3600
    assert write(ts, 0x0001, BITMAP8, 0xF0) == [(S.INVALID_VALUE, 0x0001)]  # reserved bits
    clock.advance(10)
    assert ts.read_value(0x0000) == master_time + 10
