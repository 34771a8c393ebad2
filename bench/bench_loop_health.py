"""Loop health under mixed load, and what the MQTT bridge costs against bare aiomqtt.

1. One event loop carrying, at the same time: an OTA download (the hub's OTA server to a
   meter, ``MeterApp`` with its OTA client, over the secured virtual air), 10 suite-2 Key
   Establishments (``OffLoopKeyEstablishment``, the maths in one worker process as
   ``sep meter`` runs it by default; ``--ke-threads`` puts it in executor threads), the
   meter's MQTT bridge publishing to a real mosquitto, and 200 ZCL Read Attributes a second
   to the meter's Metering over the air (APS-secured, from a joined node). Lag = how late a
   20 ms timer fires: p50/p99/max, next to the same loop with only the reads (baseline).
2. The same M readings published by the meter's ``MqttBridge`` (readings queue, QoS 1,
   the retained state) and by a bare aiomqtt loop publishing the same JSON documents
   (QoS 1, one after the other), and by the fleet's ``FleetBridge``; side by side in one
   run, against one broker, in alternating order, three rounds: CPU seconds of this
   process per reading, and the ratios.

    .venv/bin/python bench/bench_loop_health.py [--seconds S] [--readings M] [--mqtt URL]

A mosquitto is started on a free loopback port unless ``--mqtt`` names a broker.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiomqtt  # noqa: E402
from bench_fleet import LagProbe, local_broker, pct, print_result  # noqa: E402
from bench_ke import RESPONDER, exchange_async  # noqa: E402

from hubsim.hub import CommsHub  # noqa: E402
from hubsim.ota_server import OtaServerCore, ServedImage  # noqa: E402
from radios.air import VirtualAir  # noqa: E402
from radios.rawnode import RawNode  # noqa: E402
from sep.app import (  # noqa: E402
    APP_FILE_VERSION,
    IMAGE_TYPE_APPLICATION,
    MANUFACTURER_CODE,
    MeterApp,
    MeterSettings,
)
from sep.bridge.client import MqttBridge  # noqa: E402
from sep.bridge.config import BridgeConfig  # noqa: E402
from sep.bridge.payloads import MeterState, node_id, reading_payload, state_payload  # noqa: E402
from sep.clock import ManualClock  # noqa: E402
from sep.clusters.key_establishment import KeyEstablishment  # noqa: E402
from sep.ke.executor import OffLoopKeyEstablishment, process_compute  # noqa: E402
from sep.security.keyfiles import generate_ca, issue_credentials  # noqa: E402
from sep.zcl.frames import read_attributes_frame  # noqa: E402

METER_IEEE = "00:0d:6f:00:00:00:b0:7a"
READER_IEEE = 0x000D6F00000000D1


async def reads_over_air(reader: RawNode, meter_nwk: int, rate: float,
                         stop: asyncio.Event) -> int:
    """Read Attributes of Metering to the meter at ``rate`` a second; answers counted."""
    loop = asyncio.get_running_loop()
    sent = 0
    next_at = loop.time()
    while not stop.is_set():
        frame = read_attributes_frame(sent & 0xFF, [0x0000, 0x0400])
        with contextlib.suppress(Exception):
            out = reader.node.data_frame(dst_nwk=meter_nwk, profile=0x0109, cluster=0x0702,
                                         src_ep=1, dst_ep=1, payload=frame, aps_secure=True)
            reader.shell._queue.put_nowait((out, None))
        sent += 1
        next_at += 1 / rate
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return sent


async def mixed(seconds: float, mqtt_url: str, with_load: bool, ke_threads: bool) -> dict:
    air = VirtualAir()
    image = os.urandom(512 * 1024)
    core = OtaServerCore([ServedImage(MANUFACTURER_CODE, IMAGE_TYPE_APPLICATION,
                                      APP_FILE_VERSION + 1, image)])
    hub = CommsHub(air=air, ota=core if with_load else None)
    await hub.start()
    data = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    mqtt = BridgeConfig.from_url(mqtt_url, base_topic="loop", publish_interval=0.2) \
        if with_load else None
    meter = MeterApp(MeterSettings(ieee=METER_IEEE, tick_seconds=1.0, data_dir=data,
                                   mqtt=mqtt), clock=ManualClock(), air=air)
    downloaded = asyncio.Event()
    if with_load:
        meter.enable_ota(verifier=lambda p: (True, None), on_apply=lambda p, v: None,
                         page_size=4096, timeout=2.0)
    await meter.start()
    reader = await RawNode.joined(air, READER_IEEE, capture=False)
    meter_ieee = int(METER_IEEE.replace(":", ""), 16)
    await reader.request_link_key(meter_ieee)
    reader.know(meter.nwk, meter_ieee)  # what its NWK_addr_req would say
    answers_before = meter.replies_sent
    stop = asyncio.Event()
    probe = LagProbe()
    probe.start()
    reads = asyncio.create_task(reads_over_air(reader, meter.nwk, 200.0, stop))
    ke_task = None
    pool = None
    if with_load:
        ca = generate_ca(2, b"BENCH-CA")
        responder = issue_credentials(ca, RESPONDER)
        initiators = [issue_credentials(ca, 0x000D6F0000010000 + i) for i in range(10)]
        threads = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        compute = {}
        if not ke_threads:
            pool = concurrent.futures.ProcessPoolExecutor(max_workers=1)
            compute = {"compute": process_compute(pool)}
        v = OffLoopKeyEstablishment(KeyEstablishment([responder], endpoint=1, max_sessions=10,
                                                     **compute), threads)
        ke_task = asyncio.ensure_future(asyncio.gather(*(
            exchange_async(OffLoopKeyEstablishment(KeyEstablishment([c], endpoint=1, **compute),
                                                   threads), c.subject, 0x1000 + i, v)
            for i, c in enumerate(initiators))))
    cpu0, t0 = time.process_time(), time.monotonic()
    ke_done = None
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(0.1)
        if ke_task is not None and ke_done is None and ke_task.done():
            ke_done = time.monotonic() - t0
        if with_load and any(e["step"] == "downloaded" for e in meter.update_log):
            downloaded.set()
    cpu = time.process_time() - cpu0
    stop.set()
    sent = await reads
    await probe.stop()
    if ke_task is not None:
        ke_task.cancel()
        with contextlib.suppress(BaseException):
            await ke_task
    ota_offset = meter.ota.client.offset if meter.ota is not None else 0
    published = meter.bridge.published if meter.bridge is not None else 0
    answered = meter.replies_sent - answers_before
    if os.environ.get("BENCH_DEBUG"):
        print("meter radio drops", meter.controller.security_stats, "endpoint in",
              meter.endpoint.frames_in, "dropped", meter.endpoint.frames_dropped,
              "reader drops", dict(reader.node.stats), "failures", meter.send_failures,
              file=sys.stderr)
    await reader.stop()
    await meter.stop()
    await hub.stop()
    if pool is not None:
        pool.shutdown()
    ms = [x * 1000 for x in probe.lags]
    return {"lag_p50_ms": round(statistics.median(ms), 2), "lag_p99_ms": round(pct(ms, 99), 2),
            "lag_max_ms": round(max(ms), 2), "reads_sent": sent, "answers": answered,
            "ota_bytes": ota_offset, "ota_done": downloaded.is_set(),
            "ke_done_s": round(ke_done, 1) if ke_done else None,
            "mqtt_readings": published, "cpu_share": round(cpu / seconds, 3)}


def sample_state(i: int) -> MeterState:
    return MeterState(ieee=METER_IEEE, timestamp=1_800_000_000 + 10 * i,
                      summation_delivered=4_213_377 + i, summation_received=0, demand=412,
                      tiers_delivered=[1_520_100, 2_693_277 + i], tiers_received=[0, 0],
                      price={"unitrate": 0.1545, "tier": 1, "label": "Night",
                             "units": "GBP/kWh", "standingcharge": 0.5312,
                             "standingcharge_units": "GBP/day", "tariff": "Economy 7"})


async def bridge_round(url: str, m: int) -> float:
    """CPU seconds for the meter's MqttBridge to deliver ``m`` readings (+ its state)."""
    cfg = BridgeConfig.from_url(url, base_topic="cost-bridge")
    bridge = MqttBridge(cfg, ieee=METER_IEEE, model="SEP-ESME-1", manufacturer="sep",
                        sw_version="bench")
    await bridge.start()
    await asyncio.wait_for(bridge.connected.wait(), 10)
    await asyncio.sleep(0.2)
    cpu0 = time.process_time()
    for i in range(m):
        bridge.submit(sample_state(i))
        if i % 50 == 49:
            await asyncio.sleep(0)
    while len(bridge.outbox):
        await asyncio.sleep(0.001)
    cpu = time.process_time() - cpu0
    await bridge.stop()
    return cpu


async def bare_round(url: str, m: int) -> float:
    """CPU seconds for a bare aiomqtt loop to publish the same ``m`` readings (QoS 1, one
    after the other) and the state once."""
    cfg = BridgeConfig.from_url(url)
    node = node_id(METER_IEEE)
    async with aiomqtt.Client(cfg.host, cfg.port, identifier="bench-bare") as client:
        await asyncio.sleep(0.2)
        cpu0 = time.process_time()
        for i in range(m):
            await client.publish(f"cost-bare/{node}/reading",
                                 json.dumps(reading_payload(i + 1, sample_state(i))), qos=1)
        await client.publish(f"cost-bare/{node}/state",
                             json.dumps(state_payload(sample_state(m - 1))), qos=1, retain=True)
        return time.process_time() - cpu0


async def publish_cost(url: str, m: int, rounds: int = 3) -> dict:
    bridge, bare = [], []
    for r in range(rounds):
        order = (bridge_round, bare_round) if r % 2 == 0 else (bare_round, bridge_round)
        for fn in order:
            (bridge if fn is bridge_round else bare).append(await fn(url, m))
    b, a = statistics.median(bridge), statistics.median(bare)
    return {"readings": m, "bridge_cpu_ms_per_reading": round(1000 * b / m, 3),
            "bare_cpu_ms_per_reading": round(1000 * a / m, 3), "ratio": round(b / a, 2),
            "rounds": rounds}


def run_quick(coro: object, limit: float = 5.0) -> dict:
    """Run ``coro`` on a new loop; then give leftover tasks ``limit`` seconds to end
    (asyncio.run would wait for ever on one that ignores its cancellation)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)  # type: ignore[arg-type]
    finally:
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=limit))
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--readings", type=int, default=2000)
    parser.add_argument("--mqtt", metavar="URL")
    parser.add_argument("--ke-threads", action="store_true",
                        help="Key Establishment's maths in executor threads, not a process")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    with contextlib.ExitStack() as stack:
        url = args.mqtt or stack.enter_context(local_broker())[0]
        base = run_quick(mixed(min(args.seconds, 10.0), url, False, args.ke_threads))
        load = run_quick(mixed(args.seconds, url, True, args.ke_threads))
        cost = run_quick(publish_cost(url, args.readings))
    result = {"baseline_reads_only": base, "mixed_load": load, "mqtt_publish_cost": cost,
              "load_average_1min": os.getloadavg()[0]}
    print_result(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
