"""A second real host: zigbee-herdsman (zigbee2mqtt's) on the EZSP NCP emulator, a sep meter
joining its network.

Unmodified zigbee-herdsman (the version pinned in interop/herdsman/package-lock.json, installed
by ``.ci/run``) starts its ``ember`` adapter on ``sep ncp-emulator`` over TCP, forms a network,
permits joining; a ``sep meter`` on the emulator's air joins with ZigBeeAlliance09 and is
interviewed; herdsman reads Basic and Metering with its own ZCL layer
(interop/herdsman/run.mjs prints what it got as JSON lines). Then herdsman is restarted on the
same stick and resumes the network.

Independent truth: the meter's IEEE address is the one we gave it; model and manufacturer are
what the meter announces over MQTT (its Home Assistant discovery documents, the bridge's path,
not the ZCL one), its power source what its Basic server holds; the summation herdsman read
must lie between the meter's own readings published over MQTT just before and just after the
read (mosquitto in between, the meter's bridge publishing its metrology readings).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sys
import time
from decimal import Decimal
from pathlib import Path

import aiomqtt
from broker import Broker
from ncp_command_table import HERDSMAN_PATH
from required_tools import missing, require_tool

from radios.node import DUPLICATE_LIFETIME

ROOT = Path(__file__).resolve().parent.parent
HERDSMAN = ROOT / "interop" / "herdsman"
METER_IEEE = "00:0d:6f:00:0b:12:34:56"
NETWORK_KEY = "01030507090B0D0F00020406080A0C0D"
ZIGBEE_ALLIANCE_09 = "5A6967426565416C6C69616E63653039"
SPEED = 60  # the meter's simulated time: ~2.5 Wh per wall second at its ~150 W, so reads differ
MQTT_INTERVAL = 0.5
# A reading published before a read was taken before it; one that reaches us this long after
# the read's answer was taken after it (mosquitto on loopback delivers in milliseconds).
DELIVERY_MARGIN_MS = 500


def herdsman_installed() -> Path:
    """run.mjs, once node and the pinned zigbee-herdsman are there (fails under CI, else skips)."""
    require_tool("node")
    installed = HERDSMAN / "node_modules" / "zigbee-herdsman" / "package.json"
    if not installed.exists():
        missing("zigbee-herdsman (npm ci --prefix interop/herdsman)")
    pinned = json.loads((HERDSMAN / "package.json").read_text())["dependencies"]["zigbee-herdsman"]
    version = json.loads(installed.read_text())["version"]
    assert version == pinned, f"zigbee-herdsman {version} installed, {pinned} pinned: npm ci again"
    return HERDSMAN / "run.mjs"


async def lines(stream: asyncio.StreamReader, into: list[dict], seen: asyncio.Event) -> None:
    while raw := await stream.readline():
        with contextlib.suppress(ValueError):
            into.append(json.loads(raw))
            seen.set()


async def wait_for(events: list[dict], seen: asyncio.Event, name: str, timeout: float) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            for event in events:
                if event["event"] == "error":
                    raise AssertionError(f"herdsman: {event['message']}")
                if event["event"] == name:
                    return event
            seen.clear()
            await seen.wait()


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def run_herdsman(run_mjs: Path, port: int, workdir: Path) -> tuple[
        asyncio.subprocess.Process, list[dict], asyncio.Event, asyncio.Task]:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node", str(run_mjs), "--port", str(port), "--dir",
        str(workdir), "--network-key", NETWORK_KEY, "--timeout", "50", "--reads", "3",
        "--read-gap", "1", cwd=HERDSMAN, stdout=asyncio.subprocess.PIPE,
        stderr=(workdir.parent / f"{workdir.name}.log").open("ab"))
    events: list[dict] = []
    seen = asyncio.Event()
    assert proc.stdout is not None
    reader = asyncio.create_task(lines(proc.stdout, events, seen))
    return proc, events, seen, reader


async def check_reads(reads: list[dict], readings: list[tuple[float, dict]]) -> None:
    """Every summation herdsman read lies between the meter's own MQTT readings around it."""
    assert len(reads) == 3
    async with asyncio.timeout(10):  # the meter's next readings, after the last read
        while not readings or readings[-1][0] <= reads[-1]["received"] + DELIVERY_MARGIN_MS:
            await asyncio.sleep(0.1)
    for read in reads:
        kwh = Decimal(read["currentSummDelivered"]) * Decimal(read["multiplier"]) \
            / Decimal(read["divisor"])
        before = [Decimal(str(r["import_kwh"])) for at, r in readings if at < read["sent"]]
        after = [Decimal(str(r["import_kwh"])) for at, r in readings
                 if at > read["received"] + DELIVERY_MARGIN_MS]
        assert before and after, (read, readings)
        assert max(before) <= kwh <= min(after), (read, max(before), min(after))
    values = [int(r["currentSummDelivered"]) for r in reads]
    assert values[-1] > values[0], values  # live values two seconds apart, not a constant


async def test_herdsman_forms_admits_interviews_and_reads_a_sep_meter(tmp_path):
    run_mjs = herdsman_installed()
    broker = Broker(tmp_path).start()
    procs: list[asyncio.subprocess.Process] = []
    tasks: list[asyncio.Task] = []
    readings: list[tuple[float, dict]] = []  # (arrival in ms since the epoch, payload)
    discovery: dict[str, dict] = {}
    t0 = time.monotonic()
    try:
        emu = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sep.cli", "ncp-emulator", "--listen", "127.0.0.1:0",
            "--air-port", "0", "-vv", "--state", str(tmp_path / "ncp.json"), "--duration", "120",
            stdout=asyncio.subprocess.PIPE, stderr=(tmp_path / "ncp.log").open("wb"))
        procs.append(emu)
        assert emu.stdout is not None
        async with asyncio.timeout(15):
            banner = (await emu.stdout.readline()).decode()
        match = re.search(r"socket://127\.0\.0\.1:(\d+).*air open at udp://127\.0\.0\.1:(\d+)",
                          banner)
        assert match, banner
        ncp_port, air_port = int(match[1]), int(match[2])

        async def subscribe() -> None:
            async with aiomqtt.Client("127.0.0.1", broker.port) as sub:
                await sub.subscribe("sep/#", qos=1)
                await sub.subscribe("homeassistant/#", qos=1)
                subscribed.set()
                async for msg in sub.messages:
                    with contextlib.suppress(ValueError):
                        doc = json.loads(msg.payload)
                        if str(msg.topic).endswith("/reading"):
                            readings.append((time.time() * 1000, doc))
                        elif str(msg.topic).startswith("homeassistant/"):
                            discovery[str(msg.topic)] = doc

        subscribed = asyncio.Event()
        tasks.append(asyncio.create_task(subscribe()))
        async with asyncio.timeout(10):
            await subscribed.wait()

        herdsman, events, seen, reader = await run_herdsman(run_mjs, ncp_port, tmp_path / "h")
        procs.append(herdsman)
        tasks.append(reader)
        started = await wait_for(events, seen, "started", 30)
        assert started["result"] == "reset"  # a factory-new stick: herdsman formed its network
        network = await wait_for(events, seen, "network", 10)
        assert (network["panID"], network["channel"]) == (0x1A62, 15)
        assert network["coordinator"]["meta"]["ezsp"] == 13
        await wait_for(events, seen, "permitJoin", 10)

        meter = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sep.cli", "meter", "--device", f"udp://127.0.0.1:{air_port}",
            "--data", str(tmp_path / "meter"), "--ieee", METER_IEEE,
            "--join-link-key", ZIGBEE_ALLIANCE_09, "--speed", str(SPEED),
            "--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--mqtt-interval", str(MQTT_INTERVAL),
            "--duration", "90", stdout=asyncio.subprocess.DEVNULL,
            stderr=(tmp_path / "meter.log").open("wb"))
        procs.append(meter)

        ieee = "0x" + METER_IEEE.replace(":", "")
        joined = await wait_for(events, seen, "deviceJoined", 30)
        assert joined["ieee"] == ieee
        interview = await wait_for(events, seen, "deviceInterview", 5)
        assert interview["status"] == "started"
        done = await wait_for(events, seen, "done", 40)
        assert done["joined"] == ieee
        interviews = [e for e in events if e["event"] == "deviceInterview"]
        assert interviews[-1]["status"] == "successful", interviews

        # What the meter says about itself, not through ZCL: its discovery documents...
        devices = {json.dumps(d["device"], sort_keys=True) for d in discovery.values()
                   if "device" in d}
        assert len(devices) == 1, discovery.keys()
        device = json.loads(devices.pop())
        assert device["serial_number"] == METER_IEEE
        # ... and its Basic server's PowerSource (ZCL 3.2.2.2.8: 0x01 mains, single phase),
        # which herdsman names "Mains (single phase)" after its interview
        from sep.clusters.general import BasicServer
        power = BasicServer(manufacturer="", model="", sw_build_id="").read_value(0x0007)
        basic = next(e for e in events if e["event"] == "basic")
        assert basic["ieee"] == ieee
        assert basic["modelId"] == interviews[-1]["modelID"] == device["model"]
        assert basic["manufacturerName"] == interviews[-1]["manufacturerName"] \
            == device["manufacturer"]
        assert basic["powerSource"] == power == 0x01
        assert interviews[-1]["powerSource"] == "Mains (single phase)"
        assert interviews[-1]["type"] == "Router"  # its node descriptor: a mains router
        se = [ep for ep in interviews[-1]["endpoints"] if 0x0702 in ep["inputClusters"]]
        assert len(se) == 1 and se[0]["profileID"] == 0x0109  # the SE endpoint, read over HA

        await check_reads([e for e in events if e["event"] == "read"], readings)
        async with asyncio.timeout(20):
            assert await herdsman.wait() == 0
        first_done = time.monotonic()

        # herdsman again on the same stick, database and key: it resumes the network and
        # reads the device it knows without opening the network. Not at once: the reset stick
        # starts its APS counter afresh (random, as EmberZNet's), and for DUPLICATE_LIFETIME
        # the meter takes a counter it saw from 0x0000 for a duplicate and drops the frame
        await asyncio.sleep(max(0.0, first_done + DUPLICATE_LIFETIME + 0.5 - time.monotonic()))
        # and with a stack config (beside its backup) that sets the radio's CCA mode
        (tmp_path / "h" / "stack_config.json").write_text(json.dumps({"CCA_MODE": "SIGNAL_OR_RSSI"}))
        herdsman, events, seen, reader = await run_herdsman(run_mjs, ncp_port, tmp_path / "h")
        procs.append(herdsman)
        tasks.append(reader)
        assert (await wait_for(events, seen, "started", 30))["result"] == "resumed"
        assert (await wait_for(events, seen, "known", 10))["ieee"] == ieee
        await wait_for(events, seen, "done", 30)
        assert not [e for e in events if e["event"] == "permitJoin"]
        await check_reads([e for e in events if e["event"] == "read"], readings)
        async with asyncio.timeout(20):
            assert await herdsman.wait() == 0
    finally:
        for proc in reversed(procs):
            await stop(proc)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        broker.stop()
    ncp_log = (tmp_path / "ncp.log").read_text()
    assert "not implemented" not in ncp_log, ncp_log  # no command herdsman sent was unknown
    assert "invalid command" not in ncp_log, ncp_log
    assert "802.15.4 CCA mode 2" in ncp_log  # RAIL's SIGNAL_OR_RSSI
    # herdsman read Metering with the Home Assistant profile (0x0104), as zigbee2mqtt does
    metering_reads = re.findall(r"NCP <- sendUnicast .*?profileId=(\d+), clusterId=1794,", ncp_log)
    assert metering_reads and set(metering_reads) == {"260"}, metering_reads
    # what herdsman sent and took is what the README's table says it does on this path
    seen = set(re.findall(r"NCP (?:<-|=>) (\w+)", ncp_log)) | {"version"}
    assert seen == HERDSMAN_PATH, (seen - HERDSMAN_PATH, HERDSMAN_PATH - seen)
    assert time.monotonic() - t0 < 120
