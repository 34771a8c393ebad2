"""Current price across the virtual air (tshark judges), tiers follow it, MQTT sets it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import aiomqtt
import pytest
from broker import Broker
from test_messaging import CLIENT, cmd, frame

from radios.air import VirtualAir
from radios.frames import ApsKind
from radios.pcap import PcapWriter
from sep.app import MeterApp, MeterSettings
from sep.bridge.config import BridgeConfig
from sep.clock import ManualClock

TSHARK = shutil.which("tshark")


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
async def test_get_current_price_and_tiers_follow_the_price(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "price.pcap"
    writer = PcapWriter(pcap)
    air.add_tap(writer.write)
    clock = ManualClock()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:9e:01", tick_seconds=60),
                     clock=clock, air=air)
    await meter.start()
    got: list[bytes] = []
    port = air.attach(0x3B3B, CLIENT, lambda f: got.append(f.payload)
                      if f.cluster_id == 0x0700 and f.kind == ApsKind.DATA else None)

    async def send(data: bytes, n: int) -> bytes:
        before = len(got)
        await port.transmit(frame(meter.nwk, data, n, cluster=0x0700))
        for _ in range(100):
            if len(got) > before:
                return got[-1]
            await asyncio.sleep(0.01)
        raise AssertionError("no answer")

    try:
        assert (await send(cmd(1, 0x00, b"\x01"), 1))[-1] == 0x8B  # NOT_FOUND: no price yet
        meter.price.publish(tier=2, unit_rate="0.2450", label="Day", now=clock.now())
        meter.flush_pushes()
        await asyncio.sleep(0.1)
        rsp = await send(cmd(2, 0x00, b"\x01"), 2)
        assert rsp[2] == 0x00  # PublishPrice
        assert meter.metering.registers.active_tier == 2
    finally:
        await meter.stop()
        writer.close()
    out = subprocess.run([TSHARK, "-r", str(pcap), "-Y", "zbee_aps.cluster == 0x0700 && "
                          "zbee_zcl_se.price.cmd.srv_tx.id == 0", "-T", "fields", "-E",
                          "separator=;", "-e", "zbee_zcl_se.price.provider_id", "-e",
                          "zbee_zcl_se.price.rate_label", "-e", "zbee_zcl_se.price.currency",
                          "-e", "zbee_zcl_se.price.tier", "-e", "zbee_zcl_se.price.price"],
                         capture_output=True, text=True, check=True).stdout
    rows = [r.split(";") for r in out.splitlines()]
    assert len(rows) == 2
    for provider, label, currency, tier, price in rows:
        assert int(provider, 0) == 0xABCD and label == "Day" and int(currency, 0) == 826
        assert int(tier, 0) == 2 and int(price, 0) == 2450
    bad = subprocess.run([TSHARK, "-r", str(pcap), "-Y", "_ws.malformed"], capture_output=True,
                         text=True, check=True).stdout
    assert bad == ""


async def test_publish_price_over_mqtt(tmp_path):
    broker = Broker(tmp_path).start()
    try:
        cfg = BridgeConfig(host="127.0.0.1", port=broker.port, publish_interval=0.1)
        meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:9e:02", tick_seconds=0.05,
                                       mqtt=cfg), clock=ManualClock(), air=VirtualAir())
        await meter.start()
        node = "000d6f0000009e02"
        try:
            async with aiomqtt.Client("127.0.0.1", broker.port) as c:
                await asyncio.wait_for(meter.bridge.connected.wait(), 10)
                await c.subscribe(f"sep/{node}/command/result", qos=1)
                await c.subscribe(f"sep/{node}/state", qos=1)
                await c.publish(f"sep/{node}/command/publish_price",
                                b'{"tier": 3, "unit_rate": 0.31, "label": "Peak", "id": 7}', qos=1)
                result = state = None
                async with asyncio.timeout(10):
                    async for msg in c.messages:
                        doc = json.loads(msg.payload)
                        if str(msg.topic).endswith("result"):
                            result = doc
                        elif result and doc["energy"]["import"].get("price"):
                            state = doc
                            break
        finally:
            await meter.stop()
    finally:
        broker.stop()
    assert result == {"command": "publish_price", "id": 7, "ok": True, "tier": 3}
    assert state["energy"]["import"]["price"]["unitrate"] == 0.31
    assert meter.metering.registers.active_tier == 3
