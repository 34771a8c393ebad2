"""`hubsim demo`: hub + meter + IHD on the virtual air in one process.

The composition root of hubsim: it builds the air (optionally with a pcap tap and a UDP
port so other processes can join), starts the comms hub (with the supplier's ESI), the
meter (our sep app) and the in-home display, plays a short supplier script (messages, a
peak price event) and shows what the IHD sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from hubsim.demo_han import han_script
from hubsim.demo_se import run_se_script
from hubsim.fleet import Fleet, FleetShared, fleet_ieee, freeze_after_setup
from hubsim.gas import GAS_IEEE, GasMeter
from hubsim.hub import CommsHub
from hubsim.ihd import IhdView, InHomeDisplay
from hubsim.ke_node import DemoCa
from hubsim.ppmid import PPMID_IEEE, Ppmid, PpmidView
from hubsim.scenarios import (
    ScenarioLog,
    default_prepayment,
    prepayment_run_down,
    scenario_start,
)
from hubsim.supplier import Supplier
from radios.air import VirtualAir
from radios.crypto import make_install_code
from radios.tasks import cancel_and_wait
from sep.app import MeterApp, MeterSettings, load_identity
from sep.clock import ScaledClock
from sep.meter.tariff import Tariff, load_tariff
from sep.persistence import stored_sim_time
from sep.security.certs import Credentials
from sep.security.keyfiles import KeyFileError, load_ca

LOGGER = logging.getLogger(__name__)


def fleet_started(task: asyncio.Task[None]) -> None:
    """The fleet's start ended: say why if it failed; else its objects stay for the
    process's life, so the garbage collector stops scanning them."""
    if task.cancelled():
        return
    if task.exception() is not None:
        LOGGER.error("fleet failed: %r", task.exception())
    else:
        freeze_after_setup()


DEMO_INITIAL_WH = 4_213_377  # a meter a few years into service: 4,213.377 kWh
DEMO_TARIFF = Path(__file__).with_name("data") / "demo_tariff.toml"
DEMO_GAS_TARIFF = Path(__file__).with_name("data") / "demo_gas_tariff.toml"
IMPORTANCE = ("low", "medium", "high", "critical")


@dataclasses.dataclass
class DemoOptions:
    duration: float | None = None
    pcap: Path | None = None
    data_dir: Path | None = None
    speed: float = 60.0
    seed: int = 1
    air_port: int | None = None  # also serve the air on 127.0.0.1:PORT (UDP)
    external_meter: bool = False  # do not start a meter here: one joins over UDP
    live: bool | None = None  # None: when stdout is a terminal
    report_interval: int = 10  # seconds of simulated time between periodic reports
    mqtt: Any = None  # a sep.bridge.config.BridgeConfig: every meter publishes there
    meters: int = 1  # how many simulated meters share the air (the IHD shows the first)
    tariff: Path | None = None  # the supplier's tariff (default hubsim/data/demo_tariff.toml)
    meter_radio: str = "virtual"  # "ezsp": the meter runs on bellows on an NCP emulator and
    # joins the hub's network as a router (SMETS2)
    hub_radio: str = "virtual"  # "ezsp": the hub runs on bellows on its own NCP emulator,
    # coordinator and trust centre
    script: bool = True  # the supplier's messages and peak price event
    scenario: str = "default"  # hubsim/scenarios.py: what the prepayment side plays
    ppmid: bool = True  # a PPMID on the air (prepayment)
    gas: bool = True  # a battery gas meter behind a mirror on the hub
    top_up_codes: list[str] | None = None  # codes the PPMID enters (default: vended)
    # install codes of meters in other processes (--external-meter): IEEE -> code
    install_codes: dict[str, bytes] = dataclasses.field(default_factory=dict)
    # Key Establishment: every device gets CBKE credentials from a test CA made for this
    # run, or from the CA in ``certs`` (sep cert ca DIR); False: development keys only
    key_establishment: bool = True
    certs: Path | None = None
    cad: bool = False  # a consumer access device publishes the meters (--mqtt); theirs off


IHD_IEEE = "00:0d:6f:00:00:00:1d:01"
CAD_IEEE = "00:0d:6f:00:00:00:ca:d1"


def provision(data_dir: Path | None, ieees: list[str]) -> dict[str, bytes]:
    """Each device's install code, as printed on its label: made once per device and, with
    a data directory, kept in DIR/install_codes.json (mode 0600) for the next run."""
    path = data_dir / "install_codes.json" if data_dir else None
    codes: dict[str, str] = {}
    if path is not None and path.exists():
        codes = json.loads(path.read_text())
    changed = False
    for ieee in ieees:
        if ieee not in codes:
            codes[ieee] = make_install_code().hex()
            changed = True
    if path is not None and changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(codes, indent=1).encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    return {ieee: bytes.fromhex(codes[ieee]) for ieee in ieees}


def demo_ca(opts: DemoOptions) -> DemoCa | None:
    """The CA that issues every simulated device's CBKE credentials, or None when the demo
    runs without Key Establishment (asked so; a meter in another process without a CA it
    can share)."""
    if not opts.key_establishment:
        return None
    if opts.certs is not None:
        try:
            return DemoCa(load_ca(opts.certs, private=True))
        except KeyFileError as exc:
            raise DemoError(f"--certs {opts.certs}: {exc}") from None
    if opts.external_meter:
        return None  # a CA made here could not issue the other process's certificate
    return DemoCa()


class DemoError(Exception):
    """The demo cannot run as asked; the message names the option (exit 1)."""


@dataclasses.dataclass
class DemoResult:
    view: IhdView
    meter_readings: list[Any]
    frames_on_air: int
    elapsed: float
    now: float = 0.0  # simulated time at the end
    confirmations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    security: dict[str, int] = dataclasses.field(default_factory=dict)  # frames dropped, why
    ppmid: PpmidView | None = None
    gas: Any = None  # the IHD's GasView
    scenario: list[str] = dataclasses.field(default_factory=list)
    gas_reports: int = 0  # reports the gas meter pushed to its mirror
    key_establishment: list[str] = dataclasses.field(default_factory=list)  # pairs keyed
    cad: dict[str, Any] = dataclasses.field(default_factory=dict)  # node → MeterState published
    fleet: str | None = None  # what the fleet meters of --meters N did


async def supplier_script(supplier: Supplier, clock: ScaledClock, *, step: float = 2.0) -> None:
    """What the supplier does in a demo run: a welcome, a peak price event ten simulated
    minutes ahead, and a message about it that asks the household to confirm."""
    await asyncio.sleep(step)
    supplier.send_message("Welcome to your smart meter", importance="low",
                          message_id=1)
    await asyncio.sleep(step)
    start = int(clock.now()) // 60 * 60 + 600
    if supplier.price is not None:
        supplier.schedule_price(tier=3, unit_rate="0.6000", label="Peak event", start=start,
                                duration_minutes=15)
    await asyncio.sleep(step)
    when = time.strftime("%H:%M", time.gmtime(start))
    supplier.send_message(f"Peak event {when} UTC for 15 min: please confirm",
                          message_id=2, importance="high", enhanced_confirmation=True)


def status_line(view: IhdView, now: float) -> str:
    """One line of what the display shows (for logs and --no-live)."""
    line = (f"IHD: energy {view.energy_text()}, power {view.power_text()}, "
            f"reports {view.reports_received}")
    prices = view.prices
    price = prices.price(now)
    if price is not None:
        line += (f"; price {price.label} {prices.money_text(price.rate)}/kWh, cost today "
                 f"{prices.money_text(prices.cost_today, 2)}")
    msg = view.message(now)
    if msg is not None:
        line += f"; message {msg.text!r}" + (" (confirmed)" if msg.confirmed else "")
    return line


def mqtt_line(mqtt: Any) -> str | None:
    """The broker as the meters' bridges see it (one line for all of them), or None."""
    if mqtt is None:
        return None
    from sep.bridge.status import broker_status

    return broker_status(mqtt.broker).summary()


def security_text(stats: dict[str, int]) -> str:
    """What the radios dropped and why, in one line."""
    total = sum(v for k, v in stats.items() if not k.startswith("join_"))
    if not total:
        return "nothing dropped"
    top = sorted(stats.items(), key=lambda kv: -kv[1])[:4]
    return f"{total} frames dropped (" + ", ".join(f"{k} {v}" for k, v in top) + ")"


def radio_stats(*apps: Any) -> dict[str, int]:
    """The radios' counts of dropped frames (MIC failures, replays, unsecured...), summed."""
    out: dict[str, int] = {}
    for app in apps:
        for key, value in getattr(app, "security_stats", {}).items():
            out[key] = out.get(key, 0) + value
    return out


def ke_lines(services: dict[str, Any]) -> list[str]:
    """Who established a CBKE link key with whom in this run (the initiators' view)."""
    names = {f"{svc.core.credentials[min(svc.core.credentials)].subject:016x}": name
             for name, svc in services.items() if svc is not None}
    out = []
    for name, svc in services.items():
        if svc is None:
            continue
        for partner, done in sorted(svc.established.items()):
            if done.initiator:
                out.append(f"{name}↔{names.get(f'{partner:016x}', f'{partner:016x}')} "
                           f"suite {done.suite}")
        failed = [f for f in svc.failures if f.initiator]
        if failed:
            out.append(f"{name}: {len(failed)} failed ({failed[-1].reason})")
    return out


def prepay_lines(ppmid: Ppmid | None, gas: Any) -> list[str]:
    """What the PPMID and the IHD's gas part show (for logs and --no-live)."""
    out = []
    if ppmid is not None:
        out.append(f"PPMID: {ppmid.view.text()}")
    if gas is not None and gas.view.summation is not None:
        out.append(f"IHD gas: {gas.view.text()}")
    return out


def render(view: IhdView, air: VirtualAir, clock: ScaledClock, started: float,
           supplier: Supplier | None = None, mqtt: Any = None,
           hub_log: list[str] | None = None, security: dict[str, int] | None = None,
           ppmid: PpmidView | None = None, gas: Any = None) -> Any:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", justify="right")
    table.add_column()
    sim = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(clock.now()))
    table.add_row("Simulated time", f"{sim} UTC  (x{clock.speed:g})")
    table.add_row("Meter", f"{view.meter_ieee or 'searching...'}"
                  + (f"  NWK 0x{view.meter_nwk:04X}" if view.meter_nwk is not None else ""))
    table.add_row("Energy imported", f"[bold green]{view.energy_text()}[/]")
    table.add_row("Power now", f"[bold yellow]{view.power_text()}[/]")
    if view.summation_received:
        table.add_row("Energy exported", str(view.summation_received))
    status = "--" if view.meter_status is None else (
        "OK" if view.meter_status == 0 else f"0x{view.meter_status:02X} (check meter)")
    table.add_row("Meter status", status)
    now = clock.now()
    prices = view.prices
    price = prices.price(now)
    if price is not None:
        table.add_row("Price now", f"[bold magenta]{price.label} "
                      f"{prices.money_text(price.rate)}/kWh[/] (tier {price.tier})")
        nxt = prices.next_price(now)
        table.add_row("Next price", "--" if nxt is None else (
            f"{nxt.label} {prices.money_text(nxt.rate)}/kWh from "
            f"{time.strftime('%H:%M', time.gmtime(nxt.start))} UTC"))
        table.add_row("Tariff", f"{prices.tariff_label or '--'}, standing charge "
                      f"{prices.money_text(prices.standing_charge)}/day")
        table.add_row("Block", prices.block_text(view.multiplier or 1, view.divisor or 1))
        table.add_row("Cost today", f"[bold]{prices.money_text(prices.cost_today, 2)}[/]")
    msg = view.message(now)
    if msg is not None:
        state = "" if not msg.needs_confirmation else (
            "  [green]confirmed[/]" if msg.confirmed else "  [red]please confirm[/]")
        table.add_row("Message", f"[bold]{msg.text}[/] ({IMPORTANCE[msg.importance]}){state}")
    han = view.han
    table.add_row("Schedule today", han.schedule_text(prices.tier_labels)
                  + (f"  ({han.calendar_name})" if han.calendar_name else ""))
    if han.next_calendar is not None:
        table.add_row("Next calendar", f"{han.next_calendar[1]} from "
                      f"{time.strftime('%H:%M', time.gmtime(han.next_calendar[2]))} UTC")
    table.add_row("Meter events", han.events_text())
    table.add_row("Tenancy", han.tenancy)
    table.add_row("Keep-alive", han.keep_alive)
    table.add_row("Reports received", str(view.reports_received))
    if mqtt is not None:
        table.add_row("MQTT", mqtt_line(mqtt) or "--")
    table.add_row("Frames on the air", f"{air.frames_sent}  ({time.monotonic() - started:.0f} s)")
    if security is not None:
        table.add_row("Secure HAN", f"NWK + APS security, keys in the capture's .keys; "
                      f"{security_text(security)}")
    if gas is not None and gas.summation is not None:
        table.add_row("Gas (mirror)", f"[bold green]{gas.text()}[/]")
    log = "\n".join(view.log[-6:]) or "..."
    panels = [Panel(table, title="In-home display", border_style="cyan"),
              Panel(log, title="IHD log", border_style="dim")]
    if ppmid is not None:
        lines = [ppmid.text()] + (["last top-up: " + ppmid.last_result]
                                  if ppmid.last_result else []) + ppmid.log[-3:]
        panels.append(Panel("\n".join(lines), title="PPMID (prepayment)", border_style="magenta"))
    if supplier is not None and supplier.log:
        panels.append(Panel("\n".join(supplier.log[-4:]), title="Supplier (via the comms hub)",
                            border_style="dim"))
    if hub_log:
        panels.append(Panel("\n".join(hub_log[-4:]), title="Comms hub: calendar, device "
                            "management, events", border_style="dim"))
    return Group(*panels)


async def run_demo(opts: DemoOptions, console: Console | None = None) -> DemoResult:
    console = console or Console(stderr=False)
    live_view = console.is_terminal if opts.live is None else opts.live
    air = VirtualAir()
    saved = stored_sim_time(opts.data_dir)  # simulated time never runs backwards
    start = scenario_start(opts.scenario, max(time.time(), saved or 0))
    clock = ScaledClock(start=start or (max(time.time(), saved) if saved else None),
                        speed=opts.speed)
    started = time.monotonic()
    writer = None
    if opts.pcap is not None:
        from radios.pcap import PcapWriter

        try:
            writer = PcapWriter(opts.pcap).capture(air)  # and FILE.keys
        except OSError as exc:
            raise DemoError(f"--pcap {opts.pcap}: {exc.strerror or exc}") from None
    server = None
    if opts.air_port is not None:
        from radios.udp import serve_udp

        try:
            server = await serve_udp(air, "127.0.0.1", opts.air_port)
        except (OSError, OverflowError) as exc:
            if writer is not None:
                writer.close()
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise DemoError(f"--air-port {opts.air_port}: {why}") from None
        console.print(f"air open for other processes at udp://127.0.0.1:{server.port}",
                      soft_wrap=True)

    tariff: Tariff = load_tariff(opts.tariff or DEMO_TARIFF)
    ezsp = opts.meter_radio == "ezsp" and not opts.external_meter
    # Without --data the meter still keeps an event log (Events over the HAN), in a
    # directory removed at the end.
    scratch: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
        prefix="hubsim-meter-") if opts.data_dir is None and not opts.external_meter else None
    settings = MeterSettings(data_dir=opts.data_dir or (Path(scratch.name) if scratch else None),
                             seed=opts.seed, tick_seconds=0.5, initial_wh=DEMO_INITIAL_WH,
                             mqtt=None if opts.cad else opts.mqtt,
                             supplier_search_interval=1.0,
                             ppmids=(PPMID_IEEE,) if opts.ppmid else ())
    settings.ieee = load_identity(settings)
    hub_ieee = "00:0d:6f:00:00:00:00:01"
    # Every device's install code, as the installer registers it with the comms hub.
    devices = [IHD_IEEE, hub_ieee, PPMID_IEEE, GAS_IEEE] + (
        [] if opts.external_meter else [settings.ieee]) + [
        fleet_ieee(n) for n in range(1, opts.meters)] + ([CAD_IEEE] if opts.cad else [])
    codes = provision(opts.data_dir, devices)
    codes.update(opts.install_codes)
    data = opts.data_dir
    ca = demo_ca(opts)

    def creds(ieee: str) -> tuple[Credentials, ...]:
        return (ca.credentials(ieee),) if ca is not None else ()

    settings.credentials = creds(settings.ieee)
    # SMETS2: the hub is coordinator and trust centre and admits only devices whose
    # install code it holds; a meter on an EZSP stick joins it as a router.
    hub_codes = {k: v for k, v in codes.items() if k != hub_ieee}
    hub_emulator = None
    hub_radio: dict[str, Any] = {}
    if opts.hub_radio == "ezsp":
        from radios.ezsp import NetworkSettings
        from radios.ncp import start_emulator

        hub_emulator = await start_emulator(
            air, state_path=data / "hub-ncp.json" if data else None, ieee=hub_ieee)
        hub_radio = {"radio": "ezsp", "device": hub_emulator.url,
                     "network": NetworkSettings(channel=air.channel, pan_id=air.pan_id,
                                                tc_policy="install_code")}
        console.print(f"hub on bellows, EZSP NCP emulator at {hub_emulator.url}",
                      soft_wrap=True)
    hub = CommsHub(air=air, clock=clock.now, tariff=tariff, ieee=hub_ieee,
                   install_codes=hub_codes,
                   state=str(data / "hub-radio.json") if data else None,
                   keep_alive_base=1, keep_alive_jitter=5,  # a keep-alive a simulated minute
                   mirrors=opts.gas,
                   gas_tariff=load_tariff(DEMO_GAS_TARIFF) if opts.gas else None,
                   credentials=creds(hub_ieee), **hub_radio)
    emulator = None
    meter: MeterApp | None = None
    # the other meters of --meters N: lightweight fleet meters (hubsim/fleet.py), joined
    # and keyed in the background once the display has found the demo meter
    fleet = Fleet(FleetShared(air=air, clock=clock, tariff=tariff,
                              report_interval=opts.report_interval,
                              key_establishment=ca is not None),
                  1, opts.meters - 1, install_codes=codes, seed=opts.seed,
                  initial_wh=DEMO_INITIAL_WH,
                  credentials=ca.credentials if ca is not None else None,
                  mqtt=None if opts.cad else opts.mqtt) if opts.meters > 1 else None
    fleet_task: asyncio.Task[None] | None = None
    ihd = InHomeDisplay(air=air, report_max=opts.report_interval, clock=clock.now,
                        ieee=IHD_IEEE, install_code=codes[IHD_IEEE],
                        state=str(data / "ihd-radio.json") if data else None,
                        credentials=creds(IHD_IEEE))
    ppmid = Ppmid(air=air, clock=clock.now, report_max=opts.report_interval,
                  install_code=codes[PPMID_IEEE],
                  state=str(data / "ppmid-radio.json") if data else None,
                  credentials=creds(PPMID_IEEE)) if opts.ppmid else None
    gas = GasMeter(air=air, clock=clock.now, install_code=codes[GAS_IEEE],
                   state=str(data / "gas-radio.json") if data else None,
                   credentials=creds(GAS_IEEE)) if opts.gas else None
    cad = None
    if opts.cad:
        from sep.bridge.cad import CadService

        cad = CadService(ieee=CAD_IEEE, mqtt=opts.mqtt, air=air, install_code=codes[CAD_IEEE],
                         credentials=creds(CAD_IEEE), report_max=opts.report_interval,
                         state=str(data / "cad-radio.json") if data else None)
    scenario_log = ScenarioLog(clock.now)
    readings: list[Any] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await hub.start()
        if not opts.external_meter:
            if ezsp:
                from radios.ezsp import EZSP_SE_ENDPOINT
                from radios.ezsp_join import JoinSettings
                from radios.ncp import start_emulator

                state = opts.data_dir / "ncp.json" if opts.data_dir else None
                emulator = await start_emulator(air, state_path=state, ieee=settings.ieee)
                settings.radio, settings.device = "ezsp", emulator.url
                settings.endpoint = EZSP_SE_ENDPOINT
                # the meter's stick joins the hub's network with the meter's install code
                settings.join = JoinSettings.from_install_code(codes[settings.ieee],
                                                               channel=air.channel)
                console.print(f"meter on bellows, EZSP NCP emulator at {emulator.url}, "
                              "joining the hub as a router", soft_wrap=True)
            else:
                settings.install_code = codes[settings.ieee].hex()
            meter = MeterApp(settings, clock=clock, air=air)
            if tariff.prepayment is not None:  # the meter's top-up codes and friendly credit
                meter.prepayment.account.reconfigure(tariff.prepayment)
            await meter.start()
            await hub.wait_interviewed(meter.ieee, timeout=30)
            ihd._note(f"hub interviewed meter {meter.ieee}"
                      + (f" (a router at 0x{meter.nwk:04X})" if ezsp else ""))
            if fleet is not None:
                await fleet.start_bridge()  # each fleet meter says it is online at once
        # one after the other (each runs Key Establishment with the hub, the IHD and the
        # PPMID also with the meter): the PPMID has a Metering client and the gas meter a
        # Metering server, and the IHD looking for the meter (Match_Desc_req matches
        # clients too) must not find them first
        await ihd.start()
        await ihd.connect(timeout=60 if opts.external_meter else 20)
        if ppmid is not None and meter is not None:
            await ppmid.start()
            await ppmid.connect()
        if gas is not None:
            await gas.start()
        if fleet is not None:  # after the display found the demo meter, in the background
            fleet_task = asyncio.create_task(fleet.start(on_progress=ihd._note), name="fleet")
            fleet_task.add_done_callback(fleet_started)
        if cad is not None:  # last: its Metering client must not be found as a meter
            await cad.start()
        prepay_task = None
        if ppmid is not None and meter is not None:
            play = prepayment_run_down if opts.scenario == "prepayment" else default_prepayment
            if opts.top_up_codes is not None:
                hub.prepay.vend = _codes(opts.top_up_codes)  # type: ignore[method-assign]
            prepay_task = asyncio.create_task(play(hub, meter.ieee, ppmid, scenario_log))

        async def sample() -> None:
            while True:
                if meter is not None and meter.last_reading is not None:
                    readings.append(meter.last_reading)
                await asyncio.sleep(0.5)

        async def display_refresh() -> None:
            while True:  # what a display polls now and then: the block status, gas
                await asyncio.sleep(5 if ihd.gas.view.nwk is not None or gas is None else 2)
                with contextlib.suppress(Exception):
                    await ihd.read_blocks()
                with contextlib.suppress(Exception):
                    await ihd.han.refresh_if_due()
                    if gas is not None and ihd.gas.view.nwk is None:
                        await ihd.gas.find(timeout=1.5)
                    else:
                        await ihd.gas.read()

        sampler = asyncio.create_task(sample())
        refresher = asyncio.create_task(display_refresh())
        script = han = None
        if opts.script and hub.supplier is not None:
            script = asyncio.create_task(supplier_script(hub.supplier, clock))
        se_script = asyncio.create_task(run_se_script(hub, ihd, clock.now)) \
            if opts.script else None  # the rest of SE on the air (hubsim/demo_se.py)
        deadline = None if opts.duration is None else started + opts.duration
        han = asyncio.create_task(han_script(hub, clock, meter)) if meter is not None else None
        apps = [hub.app, ihd.app] + ([meter.controller] if meter is not None else [])
        shown = (ppmid.view if ppmid is not None else None,
                 ihd.gas.view if gas is not None else None)
        live_cm = (Live(render(ihd.view, air, clock, started, hub.supplier, opts.mqtt,
                               hub.services.log, radio_stats(*apps), *shown),
                        console=console, refresh_per_second=4, transient=False)
                   if live_view else contextlib.nullcontext())
        with live_cm as live:
            last_line = 0.0
            while not stop.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if live is not None:
                    live.update(render(ihd.view, air, clock, started, hub.supplier,
                                       opts.mqtt, hub.services.log, radio_stats(*apps), *shown))
                elif now - last_line >= 5:
                    last_line = now
                    line = status_line(ihd.view, clock.now())
                    if opts.mqtt is not None:
                        line += f"; MQTT {mqtt_line(opts.mqtt)}"
                    console.print(line, soft_wrap=True)
                    for line in prepay_lines(ppmid, ihd.gas if gas is not None else None):
                        console.print(line, soft_wrap=True)
                    for line in cad_lines(cad.published if cad is not None else {}):
                        console.print(line, soft_wrap=True)
                timeout = 0.25 if deadline is None else max(0.0, min(0.25, deadline - now))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout)
        for task in (sampler, refresher, script, se_script, han, prepay_task):
            if task is not None:
                task.cancel()
        if prepay_task is not None and prepay_task.done() and not prepay_task.cancelled() \
                and prepay_task.exception() is not None:
            LOGGER.error("prepayment scenario failed: %r", prepay_task.exception())
    finally:
        if cad is not None:
            with contextlib.suppress(Exception):
                await cad.stop()
        if gas is not None:
            with contextlib.suppress(Exception):
                await gas.stop()
        if ppmid is not None:
            with contextlib.suppress(Exception):
                await ppmid.stop()
        with contextlib.suppress(Exception):
            await ihd.stop()
        if fleet_task is not None and await cancel_and_wait([fleet_task], 10):
            LOGGER.warning("the fleet's start did not stop within 10 s; abandoning it")
        if fleet is not None:
            with contextlib.suppress(Exception):
                await fleet.stop()
        if meter is not None:
            with contextlib.suppress(Exception):
                await meter.stop()
        with contextlib.suppress(Exception):
            await hub.stop()
        for emu in (emulator, hub_emulator):
            if emu is not None:
                with contextlib.suppress(Exception):
                    await emu.stop()
        if server is not None:
            server.close()
        if writer is not None:
            writer.close()
            console.print(f"capture written to {opts.pcap}, its keys to {opts.pcap}.keys "
                          f"(tshark -o uat:zigbee_pc_keys:LINE for each line decrypts it)",
                          soft_wrap=True)
        if scratch is not None:
            scratch.cleanup()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
    return DemoResult(view=ihd.view, meter_readings=readings, frames_on_air=air.frames_sent,
                      elapsed=time.monotonic() - started, now=clock.now(),
                      confirmations=list(hub.supplier.confirmations) if hub.supplier else [],
                      security=radio_stats(hub.app, ihd.app,
                                           *([meter.controller] if meter is not None else [])),
                      ppmid=ppmid.view if ppmid is not None else None,
                      gas=ihd.gas.view if gas is not None else None,
                      scenario=list(scenario_log.lines),
                      gas_reports=gas.reports_sent if gas is not None else 0,
                      key_establishment=ke_lines(
                          {"hub": hub.ke, "meter": meter.ke if meter is not None else None,
                           "IHD": ihd.ke, "PPMID": ppmid.ke if ppmid is not None else None,
                           "gas meter": gas.ke if gas is not None else None,
                           **({"CAD": cad.ke} if cad is not None else {})}),
                      cad=dict(cad.published) if cad is not None else {},
                      fleet=fleet.summary() if fleet is not None else None)


def cad_lines(published: dict[str, Any]) -> list[str]:
    """What the consumer access device last published (node → MeterState), one line each."""
    from sep.bridge.cad import state_lines

    return state_lines(published)


def _codes(codes: list[str]) -> Any:
    """A vending function that hands out the given codes (a test's own), in order."""
    queue = list(codes)

    def vend(amount: int) -> str:
        return queue.pop(0)

    return vend
