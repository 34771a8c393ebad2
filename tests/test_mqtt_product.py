"""The MQTT bridge as a product, against a real mosquitto: availability on every clean stop
(real `sep meter` processes), discovery that Home Assistant's own schema accepts, values the
discovery templates really produce, the bridge state topic, remove_discovery, set_supply,
broker errors reported once."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import aiomqtt
import pytest
from broker import Broker, free_port
from jinja2.sandbox import ImmutableSandboxedEnvironment
from waiting import until

from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.bridge.commands import SCHEMAS
from sep.bridge.config import BridgeConfig
from sep.clock import ManualClock

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
IEEE = "00:0d:6f:00:00:00:dd:04"
NODE = IEEE.replace(":", "")
E7 = ROOT / "examples" / "tariff.toml"  # two tiers, a standing charge

# --- Home Assistant's MQTT discovery schema -----------------------------------------------
# Encoded from home-assistant/core, Home Assistant 2025.10 and later (`default_entity_id` in
# the common entity schema; `object_id` deprecated, its removal announced for 2026.4), read
# in the dev branch as indexed in 2026 (the probatio-based schemas, object_id gone):
#   homeassistant/components/mqtt/config.py   MQTT_BASE_SCHEMA, MQTT_RO_SCHEMA, MQTT_RW_SCHEMA
#   homeassistant/components/mqtt/schemas.py  _MQTT_AVAILABILITY_SCHEMA,
#       MQTT_ENTITY_COMMON_SCHEMA, MQTT_ENTITY_DEVICE_INFO_SCHEMA, MQTT_ORIGIN_INFO_SCHEMA
#   homeassistant/components/mqtt/sensor.py   _PLATFORM_SCHEMA_BASE,
#       validate_sensor_state_and_device_class_config
#   homeassistant/components/mqtt/switch.py   PLATFORM_SCHEMA_MODERN
#   homeassistant/components/sensor/const.py  DEVICE_CLASS_STATE_CLASSES (the classes we use)
#   homeassistant/core.py                     VALID_ENTITY_ID
# HA's DISCOVERY_SCHEMA drops unknown keys silently (REMOVE_EXTRA), so a key outside these
# sets is a key Home Assistant never sees.
HA_BASE = {"qos", "encoding", "group"}
HA_RO = HA_BASE | {"state_topic", "value_template"}
HA_RW = HA_BASE | {"command_topic", "optimistic", "retain", "state_topic"}
HA_AVAILABILITY = {"availability_topic", "availability_template", "payload_available",
                   "payload_not_available", "availability_mode", "availability"}
HA_COMMON = HA_AVAILABILITY | {
    "device", "entity_picture", "origin", "enabled_by_default", "entity_category", "icon",
    "json_attributes_topic", "json_attributes_template", "default_entity_id",
    "message_expiry_interval", "unique_id", "visible_by_default"}
HA_SENSOR = HA_RO | HA_COMMON | {
    "device_class", "expire_after", "force_update", "last_reset_value_template", "name",
    "options", "suggested_display_precision", "state_class", "unit_of_measurement"}
HA_SWITCH = HA_RW | HA_COMMON | {
    "command_template", "name", "payload_off", "payload_on", "state_off", "state_on",
    "value_template", "device_class"}
HA_DEVICE = {"identifiers", "connections", "manufacturer", "model", "model_id", "name",
             "hw_version", "serial_number", "sw_version", "via_device", "suggested_area",
             "configuration_url"}
HA_ORIGIN = {"name", "sw_version", "support_url"}
HA_STATE_CLASSES = {"energy": {"total", "total_increasing"}, "power": {"measurement"},
                    "monetary": {"total"}, "enum": set()}
HA_UNITS = {"energy": {"Wh", "kWh", "MWh"}, "power": {"W", "kW"}}
HA_ENTITY_CATEGORIES = {"config", "diagnostic"}
VALID_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")


def check_against_ha(topic: str, doc: dict) -> None:
    _prefix, component, node, obj, leaf = topic.split("/")
    assert leaf == "config" and node == NODE
    assert "object_id" not in doc, "object_id is gone from Home Assistant"
    allowed = {"sensor": HA_SENSOR, "switch": HA_SWITCH}[component]
    assert set(doc) <= allowed, f"{topic}: keys HA drops: {set(doc) - allowed}"
    assert doc["unique_id"]
    assert VALID_ENTITY_ID.match(doc["default_entity_id"]), doc["default_entity_id"]
    assert doc["default_entity_id"].split(".")[0] == component
    assert set(doc["device"]) <= HA_DEVICE and doc["device"]["identifiers"]
    assert set(doc["origin"]) <= HA_ORIGIN and doc["origin"]["name"]
    if component == "sensor":
        assert doc["state_topic"]  # Required in MQTT_RO_SCHEMA
        dclass, sclass = doc.get("device_class"), doc.get("state_class")
        if sclass is not None and dclass in HA_STATE_CLASSES:
            assert sclass in HA_STATE_CLASSES[dclass], (topic, dclass, sclass)
        if dclass in HA_UNITS:
            assert doc["unit_of_measurement"] in HA_UNITS[dclass]
        if dclass == "monetary":  # an ISO 4217 code
            assert re.fullmatch(r"[A-Z]{3}", doc["unit_of_measurement"])
        if "last_reset_value_template" in doc:
            assert sclass == "total"
        if "options" in doc:
            assert dclass == "enum" and doc["options"]
            assert "state_class" not in doc and "unit_of_measurement" not in doc
        if "entity_category" in doc:
            assert doc["entity_category"] in HA_ENTITY_CATEGORIES
    else:
        assert doc["command_topic"]  # Required in MQTT_RW_SCHEMA


def render(template: str, state: dict) -> str:
    """A value template rendered as Home Assistant renders it (Jinja2, sandboxed)."""
    env = ImmutableSandboxedEnvironment()
    return env.from_string(template).render(value_json=state)


async def collect(client: aiomqtt.Client, into: dict) -> None:
    async for msg in client.messages:
        into.setdefault(str(msg.topic), []).append(msg.payload)


async def retained(port: int, topic: str, wait: float = 1.0) -> dict[str, bytes]:
    """The retained messages under ``topic`` right now (a fresh subscriber)."""
    got: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port) as sub:
        await sub.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(wait):
                async for msg in sub.messages:
                    if msg.retain:
                        got[str(msg.topic)] = msg.payload
        except TimeoutError:
            pass
    return {t: p for t, p in got.items() if p}


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


# -- availability on every clean stop, real processes ------------------------------------------

@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "--duration"])
async def test_a_clean_stop_leaves_offline_on_the_broker(broker, tmp_path, how):
    data = tmp_path / "data"
    cmd = [str(BIN / "sep"), "meter", "--data", str(data), "--ieee", IEEE, "--mqtt",
           f"mqtt://127.0.0.1:{broker.port}", "--mqtt-interval", "0.2"]
    if how == "--duration":
        cmd += ["--duration", "4"]
    online = asyncio.Event()
    async with aiomqtt.Client("127.0.0.1", broker.port) as sub:
        await sub.subscribe(f"sep/{NODE}/availability", qos=1)
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)

        async def listen() -> None:
            async for msg in sub.messages:
                if msg.payload == b"online":
                    online.set()

        listener = asyncio.create_task(listen())
        try:
            await asyncio.wait_for(online.wait(), 30)
            if how != "--duration":
                proc.send_signal(getattr(signal, how))
            _out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            listener.cancel()
            if proc.returncode is None:
                proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    # A clean DISCONNECT discards the last will: only the meter's own goodbye says offline.
    left = await retained(broker.port, f"sep/{NODE}/#")
    assert left[f"sep/{NODE}/availability"] == b"offline"
    assert json.loads(left[f"sep/{NODE}/bridge/state"])["state"] == "offline"
    events = json.loads(subprocess.run(
        [str(BIN / "sep"), "events", "--data", str(data), "--json"], capture_output=True,
        text=True, timeout=60, check=True).stdout)
    stop = [e for e in events if e["kind"] == "STOP"]
    assert stop and stop[-1]["details"]["reason"] == how


# -- discovery: Home Assistant's schema, and templates that produce the state values ------------

async def test_discovery_is_accepted_by_home_assistants_schema_and_its_templates_work(
        broker, tmp_path):
    cfg = BridgeConfig(host="127.0.0.1", port=broker.port, publish_interval=0.1,
                       supply_control=True)
    got: dict[str, list] = {}
    clock = ManualClock()
    async with aiomqtt.Client("127.0.0.1", broker.port) as sub:
        await sub.subscribe("homeassistant/#", qos=1)
        await sub.subscribe(f"sep/{NODE}/#", qos=1)
        task = asyncio.create_task(collect(sub, got))
        app = MeterApp(MeterSettings(ieee=IEEE, seed=3, tick_seconds=0.02, mqtt=cfg,
                                     tariff=E7, data_dir=tmp_path), clock=clock,
                       air=VirtualAir())
        await app.start()
        try:
            clock.advance(7200)
            await until(lambda: len(got.get(f"sep/{NODE}/state", [])) >= 3, 20)
            tier2 = f"homeassistant/sensor/{NODE}/energy_import_tier_2/config"
            await until(lambda: tier2 in got, 20)  # announced once the tiers are known
        finally:
            await app.stop()
        task.cancel()
    docs = {t: json.loads(p[-1]) for t, p in got.items()
            if t.startswith("homeassistant/") and p[-1]}
    objects = {t.split("/")[3] for t in docs}
    assert {"energy_import", "energy_export", "energy_import_today", "power",
            "energy_import_tier_1", "energy_import_tier_2", "unit_rate", "standing_charge",
            "cost_today", "message", "meter_status", "supply", "supply_switch"} <= objects
    for topic, doc in docs.items():
        check_against_ha(topic, doc)
    state = json.loads(got[f"sep/{NODE}/state"][-1])
    value = {t.split("/")[3]: render(d["value_template"], state) for t, d in docs.items()}
    assert Decimal(value["energy_import"]) == Decimal(str(state["energy"]["import"]["cumulative"]))
    tiers = state["energy"]["import"]["tiers"]
    assert len(tiers) == 2
    assert [Decimal(value[f"energy_import_tier_{n}"]) for n in (1, 2)] == [
        Decimal(str(v)) for v in tiers]
    # the tiers add up to the register (SE: tier registers partition the summation)
    assert sum(Decimal(str(v)) for v in tiers) == Decimal(
        str(state["energy"]["import"]["cumulative"]))
    assert Decimal(value["standing_charge"]) == Decimal("0.5312")  # examples/tariff.toml
    assert docs[f"homeassistant/sensor/{NODE}/standing_charge/config"][
        "unit_of_measurement"] == "GBP/d"
    assert Decimal(value["unit_rate"]) in (Decimal("0.1545"), Decimal("0.3127"))
    assert Decimal(value["cost_today"]) >= Decimal("0.5312")  # at least the standing charge
    cost = docs[f"homeassistant/sensor/{NODE}/cost_today/config"]
    assert render(cost["last_reset_value_template"], state).endswith("T00:00:00Z")
    assert value["supply"] == "on" and value["meter_status"] == "ok"
    switch = docs[f"homeassistant/switch/{NODE}/supply_switch/config"]
    assert render(switch["value_template"], state) == switch["state_on"]
    assert json.loads(switch["payload_off"]) == {"state": "off"}  # a valid set_supply command


async def test_no_supply_switch_unless_allowed_and_set_supply_needs_the_option(broker):
    cfg = BridgeConfig(host="127.0.0.1", port=broker.port, publish_interval=0.1)
    got: dict[str, list] = {}
    async with aiomqtt.Client("127.0.0.1", broker.port) as sub:
        await sub.subscribe("homeassistant/#", qos=1)
        await sub.subscribe(f"sep/{NODE}/command/result", qos=1)
        task = asyncio.create_task(collect(sub, got))
        app = MeterApp(MeterSettings(ieee=IEEE, tick_seconds=0.02, mqtt=cfg),
                       clock=ManualClock(), air=VirtualAir())
        await app.start()
        try:
            await asyncio.wait_for(app.bridge.connected.wait(), 10)
            await sub.publish(f"sep/{NODE}/command/set_supply", b'{"state": "off"}', qos=1)
            await until(lambda: f"sep/{NODE}/command/result" in got, 10)
        finally:
            await app.stop()
        task.cancel()
    assert not any("/switch/" in t for t in got)
    result = json.loads(got[f"sep/{NODE}/command/result"][-1])
    assert result["ok"] is False and "--mqtt-supply-control" in result["error"]
    assert app.metering.supply.relay.closed


async def test_set_supply_is_the_consumers_button_and_is_in_the_event_log(broker, tmp_path):
    cfg = BridgeConfig(host="127.0.0.1", port=broker.port, publish_interval=0.1,
                       supply_control=True)
    results: list[dict] = []
    clock = ManualClock()
    app = MeterApp(MeterSettings(ieee=IEEE, tick_seconds=0.02, mqtt=cfg, data_dir=tmp_path),
                   clock=clock, air=VirtualAir())
    await app.start()
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port) as c:
            await asyncio.wait_for(app.bridge.connected.wait(), 10)
            await c.subscribe(f"sep/{NODE}/command/result", qos=1)

            async def command(payload: dict) -> dict:
                await c.publish(f"sep/{NODE}/command/set_supply", json.dumps(payload), qos=1)
                async with asyncio.timeout(10):
                    async for msg in c.messages:
                        return json.loads(msg.payload)
                raise AssertionError("no result")

            results.append(await command({"state": "off", "id": 1}))
            off_relay = app.metering.supply.relay.closed
            results.append(await command({"state": "on", "id": 2}))
            on_relay = app.metering.supply.relay.closed
            supply = app.metering.supply  # the supplier turns it off: no local restore
            supply.remote_change(supply.provider_id, 7, 0, 0, clock.now())
            results.append(await command({"state": "on", "id": 3}))
    finally:
        await app.stop()
    assert results[0] == {"command": "set_supply", "id": 1, "ok": True, "supply": "armed"}
    assert off_relay is False and on_relay is True
    assert results[1]["ok"] and results[1]["supply"] == "on"
    assert results[2]["ok"] is False and "armed" in results[2]["error"]
    from sep.store import Store

    store = Store.open(tmp_path)
    events = store.events()
    store.close()
    changes = [e.details for e in events if e.kind == "SUPPLY_CHANGE"]
    assert [c["source"] for c in changes[:2]] == ["mqtt", "mqtt"]
    commands = [e.details for e in events if e.kind == "MQTT_COMMAND"]
    assert [(c["command"], c["id"], c["ok"]) for c in commands] == [
        ("set_supply", 1, True), ("set_supply", 2, True), ("set_supply", 3, False)]


async def test_bridge_state_and_remove_discovery_of_this_and_of_a_gone_meter(broker):
    gone = "000d6f00000099aa"
    async with aiomqtt.Client("127.0.0.1", broker.port) as old:  # a meter of last week
        await old.publish(f"homeassistant/sensor/{gone}/power/config",
                          json.dumps({"name": "Power", "state_topic": "x"}), qos=1,
                          retain=True)
        await old.publish(f"sep/{gone}/availability", "online", qos=1, retain=True)
    cfg = BridgeConfig(host="127.0.0.1", port=broker.port, publish_interval=0.1,
                       command_token="t0k")
    app = MeterApp(MeterSettings(ieee=IEEE, tick_seconds=0.02, mqtt=cfg),
                   clock=ManualClock(), air=VirtualAir())
    await app.start()
    try:
        await asyncio.wait_for(app.bridge.connected.wait(), 10)
        await until(lambda: app.bridge.latest is not None, 10)
        before = await retained(broker.port, "#")
        state = json.loads(before[f"sep/{NODE}/bridge/state"])
        assert state["state"] == "online" and state["broker"] == f"127.0.0.1:{broker.port}"
        assert "remove_discovery" in state["commands"]
        assert f"homeassistant/sensor/{NODE}/power/config" in before
        async with aiomqtt.Client("127.0.0.1", broker.port) as c:
            await c.subscribe(f"sep/{NODE}/command/result", qos=1)
            for payload in ({"node": gone, "token": "t0k"}, {"token": "t0k"}):
                await c.publish(f"sep/{NODE}/command/remove_discovery", json.dumps(payload),
                                qos=1)
                async with asyncio.timeout(15):
                    async for msg in c.messages:
                        assert json.loads(msg.payload)["ok"] is True
                        break
            # Home Assistant restarts: this meter stays unannounced
            await c.publish("homeassistant/status", "online", qos=1)
            await asyncio.sleep(1.0)
        after = await retained(broker.port, "#")
    finally:
        await app.stop()
    assert not [t for t in after if gone in t], "the gone meter left retained topics"
    assert not [t for t in after if t.startswith("homeassistant/")]
    assert after[f"sep/{NODE}/availability"] == b"online"  # this meter still runs


# -- broker errors: once per change for the whole process ------------------------------------

async def test_broker_errors_are_reported_once_not_per_meter_per_retry(tmp_path, caplog):
    port = free_port()
    cfg = BridgeConfig(host="127.0.0.1", port=port, publish_interval=0.2, backoff_max=1)
    caplog.set_level(logging.DEBUG, logger="sep.bridge")
    meters = [MeterApp(MeterSettings(ieee=f"00:0d:6f:00:00:00:ee:{n:02x}", tick_seconds=0.05,
                                     mqtt=cfg), clock=ManualClock(), air=VirtualAir())
              for n in range(3)]
    for m in meters:
        await m.start()
    broker = None
    try:
        await until(lambda: sum(m.bridge.last_error is not None for m in meters) == 3, 10)
        await asyncio.sleep(3.5)  # every bridge retries several times meanwhile
        broker = Broker(tmp_path, port=port).start()
        await until(lambda: all(m.bridge.connected.is_set() for m in meters), 30)
    finally:
        for m in meters:
            await m.stop()
        if broker is not None:
            broker.stop()
    loud = [r.getMessage() for r in caplog.records
            if r.name.startswith("sep.bridge") and r.levelno >= logging.WARNING]
    assert len(loud) == 2, loud
    assert "unreachable" in loud[0] and "Connection refused" in loud[0]
    assert "connected" in loud[1]
    assert len(meters[0].bridge.status.reports) == 2  # what a live view shows, too


def test_the_demo_with_no_broker_says_so_once(tmp_path):
    port = free_port()
    start = time.monotonic()
    proc = subprocess.run([str(BIN / "hubsim"), "demo", "--no-live", "--duration", "10",
                           "--meters", "3", "--mqtt", f"mqtt://127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 60
    # the bridges' lines (a loaded machine may add others, e.g. a missed keep-alive)
    lines = [ln for ln in proc.stderr.splitlines() if " sep.bridge" in ln]
    assert len(lines) == 1 and "unreachable" in lines[0], proc.stderr
    assert f"MQTT 127.0.0.1:{port} unreachable" in proc.stdout  # the status line shows it


# -- the reference in the README ---------------------------------------------------------------

def test_the_readme_documents_every_command_and_field():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## MQTT topics and payloads")[1].split("\n## ")[0]
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)` \| (.*) \|", section, re.M)}
    assert set(SCHEMAS) <= set(rows), set(SCHEMAS) - set(rows)
    for name, schema in SCHEMAS.items():
        for field in set(schema["properties"]) - {"id", "token"}:
            assert f"`{field}`" in rows[name], (name, field)
        for field in schema.get("required", []):
            assert f"**`{field}`**" in rows[name], (name, field)
