"""Home Automation hosts reading the meter with the HA profile (0x0104), as zigbee2mqtt and
ZHA do: Basic, Identify, Time and Metering reads are answered in the profile they came in;
writes and commands are NOT_AUTHORIZED; other clusters are dropped, and zigpy's generic code
never answers for the meter. The answers are parsed with zigpy's ZCL schemas."""

from __future__ import annotations

import asyncio

import pytest
import zigpy.types as t
from secure import trust_centre
from waiting import until
from zigpy.zcl import foundation

from radios.air import VirtualAir
from radios.rawnode import RawNode
from sep.app import MeterApp, MeterSettings

HA = 0x0104
HOST = 0x000D6F00000AA104
METER_IEEE = "00:0d:6f:00:00:00:a1:04"
BASIC, METERING, PRICE = 0x0000, 0x0702, 0x0700
GC = foundation.GeneralCommand


async def _han(ha_profile: bool | None = None):
    air = VirtualAir()
    tc = await trust_centre(air)
    meter = MeterApp(MeterSettings(ieee=METER_IEEE, tick_seconds=0.05,
                                   ha_profile=ha_profile), air=air)
    await meter.start()
    host = await RawNode.joined(air, HOST)
    return air, tc, meter, host


@pytest.fixture
async def han():
    air, tc, meter, host = await _han()
    try:
        yield meter, host
    finally:
        await host.stop()
        await meter.stop()
        await tc.stop()


def general(tsn: int, command: int, payload: bytes) -> bytes:
    return foundation.ZCLHeader.general(tsn, command).serialize() + payload


async def ask(host: RawNode, meter: MeterApp, cluster: int, frame: bytes,
              timeout: float = 3.0) -> tuple[foundation.ZCLHeader, bytes, int] | None:
    """Send ``frame`` with the HA profile; the answer (header, payload, its profile)."""
    before = len(host.received)
    await host.send(meter.nwk, cluster, frame, profile=HA, dst_ep=meter.endpoint.endpoint_id)
    try:
        await until(lambda: any(i.cluster == cluster for i in host.received[before:]),
                    timeout=timeout)
    except (TimeoutError, AssertionError):
        return None
    ind = next(i for i in host.received[before:] if i.cluster == cluster)
    hdr, rest = foundation.ZCLHeader.deserialize(ind.payload)
    return hdr, rest, ind.profile


def read_rsp(payload: bytes) -> dict[int, object]:
    """Read Attributes Response, parsed with zigpy's schema."""
    schema = foundation.GENERAL_COMMANDS[GC.Read_Attributes_rsp].schema
    parsed, rest = schema.deserialize(payload)
    assert rest == b""
    return {int(r.attrid): (r.value.value if r.status == foundation.Status.SUCCESS else r.status)
            for r in parsed.status_records}


async def test_a_ha_host_reads_basic_and_metering_in_its_profile(han):
    meter, host = han
    await until(lambda: meter.last_reading is not None, timeout=5)
    got = await ask(host, meter, BASIC, general(1, GC.Read_Attributes,
                                                t.List[t.uint16_t]([0x0004, 0x0005, 0x0007])
                                                .serialize()))
    assert got is not None, "no answer to a HA-profile Basic read"
    hdr, payload, profile = got
    assert profile == HA and hdr.command_id == GC.Read_Attributes_rsp and hdr.tsn == 1
    values = read_rsp(payload)
    # what the meter says it is (its Basic server), not zigpy's generic "DC source"
    assert values[0x0004] == meter.basic.read_value(0x0004) == "sep"
    assert values[0x0005] == meter.basic.read_value(0x0005)
    assert values[0x0007] == meter.basic.read_value(0x0007)
    got = await ask(host, meter, METERING, general(2, GC.Read_Attributes,
                                                   t.List[t.uint16_t]([0x0000, 0x0301, 0x0302])
                                                   .serialize()))
    assert got is not None
    hdr, payload, profile = got
    assert profile == HA
    values = read_rsp(payload)
    kwh = values[0x0000] * values[0x0301] / values[0x0302]
    # the register as the metrology measured it (Wh), within one tick of energy
    assert abs(kwh - meter.last_reading.delivered_wh / 1000) < 0.05


async def test_a_ha_host_may_not_write_or_command(han):
    meter, host = han
    relay = meter.metering.supply.relay.closed
    multiplier = meter.metering.read_value(0x0301)
    write = general(3, GC.Write_Attributes, t.uint16_t(0x0301).serialize() + bytes([0x22])
                    + (1000).to_bytes(3, "little"))
    got = await ask(host, meter, METERING, write)
    assert got is not None
    hdr, payload, _ = got
    assert hdr.command_id == GC.Default_Response
    assert payload == bytes([GC.Write_Attributes, foundation.Status.NOT_AUTHORIZED])
    # a Metering cluster command (ChangeSupply, 0x0B: off now)
    cmd = foundation.ZCLHeader.cluster(4, 0x0B).serialize() + bytes(18)
    got = await ask(host, meter, METERING, cmd)
    assert got is not None
    assert got[1] == bytes([0x0B, foundation.Status.NOT_AUTHORIZED])
    assert meter.metering.supply.relay.closed == relay
    assert meter.metering.read_value(0x0301) == multiplier


async def test_other_clusters_on_ha_get_no_answer_from_anyone(han):
    meter, host = han
    dropped = meter.endpoint.frames_dropped
    got = await ask(host, meter, PRICE, general(5, GC.Read_Attributes,
                                                t.List[t.uint16_t]([0x0000]).serialize()),
                    timeout=1.0)
    assert got is None  # neither the meter nor zigpy's generic cluster code
    assert meter.endpoint.frames_dropped == dropped + 1


async def test_reports_configured_over_ha_come_in_ha(han):
    meter, host = han
    record = foundation.AttributeReportingConfig()
    record.direction, record.attrid = 0, 0x0400  # InstantaneousDemand
    record.datatype = foundation.DataTypeId.int24
    record.min_interval, record.max_interval, record.reportable_change = 0, 1, 1
    got = await ask(host, meter, METERING, general(
        6, GC.Configure_Reporting, t.List[foundation.AttributeReportingConfig]([record])
        .serialize()))
    assert got is not None and got[0].command_id == GC.Configure_Reporting_rsp
    before = len(host.received)
    await until(lambda: any(i.cluster == METERING and i.payload[2] == GC.Report_Attributes
                            for i in host.received[before:]), timeout=5)
    report = next(i for i in host.received[before:] if i.cluster == METERING)
    assert report.profile == HA


async def test_with_ha_off_a_ha_read_gets_nothing():
    air, tc, meter, host = await _han(ha_profile=False)
    try:
        got = await ask(host, meter, METERING, general(7, GC.Read_Attributes,
                                                       t.List[t.uint16_t]([0]).serialize()),
                        timeout=1.0)
        assert got is None
    finally:
        await host.stop()
        await meter.stop()
        await tc.stop()
    await asyncio.sleep(0)
