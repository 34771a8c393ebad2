"""Messaging across the virtual air, with tshark's SE dissector as the judge."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest
import zigpy.types as t
from required_tools import needs_tool
from zigpy.zcl import foundation

from radios.air import VirtualAir
from radios.pcap import PcapWriter, tshark_key_options
from radios.rawnode import RawNode
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.zcl.security import requires_aps_security

TSHARK = shutil.which("tshark")
CLIENT_IEEE = 0x000D6F0000003B3B
METER_IEEE = "00:0d:6f:00:00:00:3e:01"


def cmd(tsn: int, command_id: int, payload: bytes = b"") -> bytes:
    return foundation.ZCLHeader.cluster(tsn, command_id).serialize() + payload


@needs_tool("tshark")
async def test_messages_cross_the_air_and_tshark_reads_them(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "msg.pcap"
    writer = PcapWriter(pcap).capture(air)
    tc = await RawNode.trust_centre(air)
    clock = ManualClock()
    meter = MeterApp(MeterSettings(ieee=METER_IEEE, tick_seconds=60), clock=clock, air=air)
    await meter.start()
    client = await RawNode.joined(air, CLIENT_IEEE, aps_policy=requires_aps_security)
    await client.request_link_key(int(METER_IEEE.replace(":", ""), 16))
    client.know(meter.nwk, int(METER_IEEE.replace(":", ""), 16))

    def answers() -> list[bytes]:
        return [ind.payload for ind in client.received if ind.cluster == 0x0703]

    async def send(data: bytes, n: int) -> bytes:
        before = len(answers())
        await client.send(meter.nwk, 0x0703, data)
        for _ in range(100):
            if len(answers()) > before:
                return answers()[-1]
            await asyncio.sleep(0.01)
        raise AssertionError("no answer")

    try:
        # nothing to show yet: NOT_FOUND
        rsp = await send(cmd(1, 0x00), 1)
        assert rsp[2] == 0x0B and rsp[-1] == foundation.Status.NOT_FOUND
        # the supplier posts a message; the client (known now) gets it pushed
        msg, _push = meter.messaging.display_message("Your tariff changes on Monday",
                                                    now=clock.now(), message_id=4242,
                                                    importance="high", confirmation_required=True)
        meter.flush_pushes()
        await asyncio.sleep(0.1)
        rsp = await send(cmd(2, 0x00), 2)  # GetLastMessage → DisplayMessage
        assert rsp[2] == 0x00
        confirm = (t.uint32_t(4242).serialize() + t.uint32_t(0).serialize()
                   + t.bitmap8(0).serialize() + t.LVBytes(b"OK").serialize())
        rsp = await send(cmd(3, 0x01, confirm), 3)
        assert rsp[-1] == foundation.Status.SUCCESS
        assert msg.confirmations and msg.confirmations[0]["response"] == "OK"
        rsp = await send(cmd(4, 0x01, t.uint32_t(7).serialize() + t.uint32_t(0).serialize()), 4)
        assert rsp[-1] == foundation.Status.NOT_FOUND  # no such message
        rsp = await send(cmd(5, 0x01, b"\x01"), 5)  # truncated
        assert rsp[-1] == foundation.Status.MALFORMED_COMMAND
        meter.messaging.cancel_message(4242)
        meter.flush_pushes()
        await asyncio.sleep(0.1)
        meter.messaging.cancel_all(clock.now())
        rsp = await send(cmd(6, 0x02, t.uint32_t(0).serialize()), 6)
        assert rsp[2] == 0x03  # CancelAllMessages
        with pytest.raises(ValueError):
            meter.messaging.display_message("x" * 60, now=clock.now())
    finally:
        await meter.stop()
        await client.stop()
        await tc.stop()
        writer.close()
    keys = tshark_key_options(pcap)
    out = subprocess.run([TSHARK, "-r", str(pcap), *keys, "-Y", "zbee_aps.cluster == 0x0703",
                          "-T", "fields",
                          "-E", "separator=;", "-e", "zbee_zcl_se.msg.cmd.srv_tx.id",
                          "-e", "zbee_zcl_se.msg.message.id", "-e", "zbee_zcl_se.msg.message",
                          "-e", "zbee_zcl_se.msg.message.ctrl.importance",
                          "-e", "zbee_zcl_se.msg.message.ctrl.confirm"],
                         capture_output=True, text=True, check=True).stdout
    rows = [r.split(";") for r in out.splitlines()]
    displays = [r for r in rows if r[2] == "Your tariff changes on Monday"]
    assert len(displays) == 2  # the push and the GetLastMessage answer
    assert all(int(r[1], 0) == 4242 and int(r[3], 0) == 2 and r[4] in ("1", "True")
               for r in displays)
    # only the truncated confirmation the test sent on purpose may be malformed
    bad = subprocess.run([TSHARK, "-r", str(pcap), *keys, "-Y",
                          f"_ws.malformed && zbee_nwk.src != {client.nwk}"],
                         capture_output=True, text=True, check=True).stdout
    assert bad == ""
