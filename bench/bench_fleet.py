"""Fleet figures: N lightweight meters on one core (issue 17).

A comms hub (zigpy coordinator and trust centre, admitting by install code) and N fleet
meters (``hubsim/fleet.py``) on one virtual air, in this process. The meters join with
their install codes (NWK and APS security as in the demo), run Key Establishment with the
trust centre (unless ``--no-key-establishment``), then each reports its register and
demand to the hub every ``--interval`` seconds (10), and with ``--mqtt URL`` publishes its
state and readings through the fleet's MQTT connection. Measured over ``--duration``
seconds once every meter is up (set-up is reported apart):

    meters, cpu_seconds, wall_seconds, cpu_share (cpu/wall), rss_bytes_per_meter (RSS
    growth from before the fleet was built, per meter), loop_lag_p99_ms (how late a 20 ms
    timer fires), frames_per_second (on the air), reports_per_second, mqtt_messages_per_second

    .venv/bin/python bench/bench_fleet.py --meters N --duration S [--mqtt URL] [--json]

With ``--json`` the last line is one JSON object. ``--mqtt local`` starts a mosquitto on a
free loopback port for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hubsim.fleet import Fleet, FleetShared, fleet_ieee, freeze_after_setup  # noqa: E402
from hubsim.hub import CommsHub  # noqa: E402
from hubsim.ke_node import DemoCa  # noqa: E402
from radios.air import VirtualAir  # noqa: E402
from radios.crypto import make_install_code  # noqa: E402
from sep.clock import ScaledClock  # noqa: E402
from sep.meter.tariff import load_tariff  # noqa: E402

TARIFF = Path(__file__).resolve().parents[1] / "hubsim" / "data" / "demo_tariff.toml"
HUB_IEEE = "00:0d:6f:00:00:00:00:01"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class LagProbe:
    """How late a periodic timer fires: the event loop's responsiveness."""

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.lags.append(max(0.0, loop.time() - due))

    def start(self) -> None:
        self.lags.clear()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class GcProbe:
    """How long the cyclic garbage collector stops the loop: each collection's duration
    and generation, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._t0))

    def start(self) -> None:
        self.pauses.clear()
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)

    def figures(self) -> dict[str, float | int]:
        full = [d for g, d in self.pauses if g == 2]
        return {"gc_collections": len(self.pauses), "gc_full_collections": len(full),
                "gc_pause_max_ms": round(1000 * max((d for _, d in self.pauses), default=0), 2),
                "gc_full_pause_max_ms": round(1000 * max(full, default=0), 2),
                "gc_seconds": round(sum(d for _, d in self.pauses), 3)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_broker():
    """A mosquitto of our own on a free loopback port (as tests/broker.py starts one)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        port = free_port()
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        + ("user root\n" if os.geteuid() == 0 else ""))
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", port), 0.2):
                    break
                time.sleep(0.05)
            yield f"mqtt://127.0.0.1:{port}", proc.pid
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


def proc_cpu(pid: int) -> float:
    """CPU seconds of another process (the broker), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace, mqtt_url: str | None, broker_pid: int | None) -> dict:
    import logging

    logging.basicConfig(level=logging.WARNING)
    air = VirtualAir()
    clock = ScaledClock(speed=60.0)
    tariff = load_tariff(TARIFF)
    ieees = [fleet_ieee(n) for n in range(1, args.meters + 1)]
    codes = {ieee: make_install_code() for ieee in ieees}
    ca = DemoCa() if args.key_establishment else None
    t0 = time.monotonic()
    creds = {ieee: (ca.credentials(ieee),) for ieee in ieees} if ca else {}
    issue_s = time.monotonic() - t0
    hub = CommsHub(air=air, clock=clock.now, tariff=tariff, ieee=HUB_IEEE, install_codes=codes,
                   keep_alive_base=1, keep_alive_jitter=5,
                   credentials=(ca.credentials(HUB_IEEE),) if ca else ())
    await hub.start()
    mqtt = None
    if mqtt_url is not None:
        from sep.bridge.config import BridgeConfig

        mqtt = BridgeConfig.from_url(mqtt_url, base_topic="bench")
    rss0 = rss_bytes()
    cpu0 = cpu_seconds()
    started = time.monotonic()
    shared = FleetShared(air=air, clock=clock, tariff=tariff, report_interval=args.interval,
                         key_establishment=args.key_establishment)
    fleet = Fleet(shared, 1, args.meters, install_codes=codes,
                  credentials=creds.__getitem__ if ca else None, mqtt=mqtt)
    built_rss = rss_bytes()
    await fleet.start(on_progress=lambda text: print(text, file=sys.stderr, flush=True))
    setup_wall = time.monotonic() - started
    setup_cpu = cpu_seconds() - cpu0
    if args.gc_freeze:
        freeze_after_setup()
    await asyncio.sleep(args.interval)  # one whole interval before measuring: steady state
    probe = LagProbe()
    probe.start()
    gc_probe = GcProbe()
    gc_probe.start()
    frames0, reports0 = air.frames_sent, fleet.reports_sent
    mqtt0 = fleet.bridge.published if fleet.bridge else 0
    broker0 = proc_cpu(broker_pid) if broker_pid else 0.0
    failures0 = sum(m.send_failures for m in fleet.meters)
    cpu1, wall1 = cpu_seconds(), time.monotonic()
    await asyncio.sleep(args.duration)
    cpu = cpu_seconds() - cpu1
    wall = time.monotonic() - wall1
    await probe.stop()
    gc_probe.stop()
    rss = rss_bytes()
    frames = air.frames_sent - frames0
    reports = fleet.reports_sent - reports0
    published = (fleet.bridge.published if fleet.bridge else 0) - mqtt0
    broker_cpu = proc_cpu(broker_pid) - broker0 if broker_pid else None
    joined = sum(m.joined for m in fleet.meters)
    keyed = sum(1 for m in fleet.meters if m.ke is not None
                and m.ke.keyed(m.node.state.tc_ieee or 0))
    hub_reports = hub_seen(hub, fleet)
    await fleet.stop()
    await hub.stop()
    return {
        "meters": args.meters, "joined": joined, "keyed": keyed if ca else None,
        "key_establishment": args.key_establishment, "mqtt": mqtt_url is not None,
        "interval_s": args.interval,
        "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 3),
        "cpu_share": round(cpu / wall, 4),
        "rss_bytes_per_meter": int((rss - rss0) / args.meters),
        "rss_bytes_per_meter_built": int((built_rss - rss0) / args.meters),
        "loop_lag_p50_ms": round(1000 * pct(probe.lags, 50), 2),
        "loop_lag_p99_ms": round(1000 * pct(probe.lags, 99), 2),
        "loop_lag_max_ms": round(1000 * max(probe.lags, default=0.0), 2),
        **gc_probe.figures(), "gc_freeze": args.gc_freeze,
        "frames_per_second": round(frames / wall, 1),
        "reports_per_second": round(reports / wall, 1),
        "mqtt_messages_per_second": round(published / wall, 1),
        "broker_cpu_seconds": round(broker_cpu, 3) if broker_cpu is not None else None,
        "hub_meters_heard": hub_reports,
        "setup_wall_seconds": round(setup_wall, 1), "setup_cpu_seconds": round(setup_cpu, 1),
        "certificates_seconds": round(issue_s, 1),
        "send_failures_setup": failures0,
        "send_failures": sum(m.send_failures for m in fleet.meters) - failures0,
        "load_average_1min": os.getloadavg()[0],
    }


def hub_seen(hub: CommsHub, fleet: Fleet) -> int:
    """How many fleet meters the hub's zigpy holds a reported summation from."""
    import zigpy.types as t

    seen = 0
    for meter in fleet.meters:
        dev = hub.app.devices.get(t.EUI64.convert(meter.ieee))
        if dev is None:
            continue
        for ep_id, ep in dev.endpoints.items():
            if ep_id == 0:
                continue
            cluster = ep.in_clusters.get(0x0702)
            if cluster is not None and cluster._attr_cache.get(0x0000) is not None:
                seen += 1
                break
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=10.0,
                        help="seconds between two reports of one meter (default 10)")
    parser.add_argument("--mqtt", metavar="URL", help="publish to this broker ('local': start "
                        "a mosquitto for the run)")
    parser.add_argument("--no-key-establishment", dest="key_establishment",
                        action="store_false",
                        help="fleet meters keep the install-code link keys (no CBKE): a "
                        "bench option to see what CBKE costs at set-up")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="leave the set-up's objects to the garbage collector (what "
                        "hubsim demo did before it froze them): compare the gc_ figures")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args()
    if args.meters < 1 or args.duration <= 0:
        parser.error("--meters >= 1 and --duration > 0")
    with contextlib.ExitStack() as stack:
        url, pid = args.mqtt, None
        if url == "local":
            url, pid = stack.enter_context(local_broker())
        result = asyncio.run(run(args, url, pid))
    print_result(result, as_json=args.json)
    return 0


def print_result(result: dict, *, as_json: bool) -> None:
    """A bench's figures: one JSON object on the last line, or a line per figure."""
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")


if __name__ == "__main__":
    sys.exit(main())
