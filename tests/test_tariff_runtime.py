"""The tariff at run time: from a file, over MQTT (and refused with the key that is wrong)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import aiomqtt
from broker import Broker

from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.bridge.config import BridgeConfig
from sep.clock import ManualClock

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tariff.toml"
BIN = Path(sys.executable).parent
IEEE = "00:0d:6f:00:00:00:7a:01"
NODE = IEEE.replace(":", "")


async def test_set_tariff_over_mqtt_and_a_bad_one_is_refused(tmp_path):
    # the example file as JSON: its dates become ISO 8601 text
    doc = json.loads(json.dumps(tomllib.loads(EXAMPLE.read_text()), default=str))
    broker = Broker(tmp_path).start()
    try:
        cfg = BridgeConfig(host="127.0.0.1", port=broker.port, publish_interval=0.05)
        clock = ManualClock()
        clock.t = 1_767_268_800  # 2026-01-01 12:00 UTC: the Day rate of Economy 7
        meter = MeterApp(MeterSettings(ieee=IEEE, tick_seconds=0.02, mqtt=cfg), clock=clock,
                         air=VirtualAir())
        await meter.start()
        try:
            async with aiomqtt.Client("127.0.0.1", broker.port) as c:
                await asyncio.wait_for(meter.bridge.connected.wait(), 10)
                await c.subscribe(f"sep/{NODE}/command/result", qos=1)
                await c.subscribe(f"sep/{NODE}/state", qos=1)
                bad = json.loads(json.dumps(doc))
                bad["tiers"][1]["rate"] = "0.31275"  # five decimals: more than the 4 digits
                await c.publish(f"sep/{NODE}/command/set_tariff",
                                json.dumps({"id": 1, "tariff": bad}).encode(), qos=1)
                await c.publish(f"sep/{NODE}/command/set_tariff",
                                json.dumps({"id": 2, "tariff": doc}).encode(), qos=1)
                results, state = {}, None
                async with asyncio.timeout(10):
                    async for msg in c.messages:
                        body = json.loads(msg.payload)
                        if str(msg.topic).endswith("result"):
                            results[body["id"]] = body
                        elif 2 in results and body["energy"]["import"]["price"].get(
                                "tariff") == "Economy 7":
                            state = body
                            break
        finally:
            await meter.stop()
    finally:
        broker.stop()
    assert results[1]["ok"] is False and "tiers[1].rate" in results[1]["error"]
    assert results[2] == {"command": "set_tariff", "id": 2, "ok": True,
                          "issuer_tariff_id": 7001, "label": "Economy 7"}
    price = state["energy"]["import"]["price"]
    # the file's own numbers: Day 0.3127 at noon, next the Night rate from 00:30
    assert price["unitrate"] == 0.3127 and price["label"] == "Day"
    assert price["standingcharge"] == 0.5312
    assert price["next"] == {"unitrate": 0.1545, "tier": 1, "label": "Night",
                             "start": "2026-01-02T00:30:00Z"}


def test_sep_meter_refuses_a_bad_tariff_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace('currency = 826', 'currency = "GBP"'))
    proc = subprocess.run([str(BIN / "sep"), "meter", "--tariff", str(bad), "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "currency" in proc.stderr and str(bad) in proc.stderr
