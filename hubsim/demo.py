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
import logging
import signal
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from hubsim.gas import GasMeter
from hubsim.hub import CommsHub
from hubsim.ihd import IhdView, InHomeDisplay
from hubsim.ppmid import PPMID_IEEE, Ppmid, PpmidView
from hubsim.scenarios import (
    ScenarioLog,
    default_prepayment,
    prepayment_run_down,
    scenario_start,
)
from hubsim.supplier import Supplier
from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ScaledClock
from sep.meter.tariff import Tariff, load_tariff
from sep.persistence import stored_sim_time

LOGGER = logging.getLogger(__name__)

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
    meter_radio: str = "virtual"  # "ezsp": the meter runs on bellows on the NCP emulator
    script: bool = True  # the supplier's messages and peak price event
    scenario: str = "default"  # hubsim/scenarios.py: what the prepayment side plays
    ppmid: bool = True  # a PPMID on the air (prepayment)
    gas: bool = True  # a battery gas meter behind a mirror on the hub
    top_up_codes: list[str] | None = None  # codes the PPMID enters (default: vended)


@dataclasses.dataclass
class DemoResult:
    view: IhdView
    meter_readings: list[Any]
    frames_on_air: int
    elapsed: float
    now: float = 0.0  # simulated time at the end
    confirmations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    ppmid: PpmidView | None = None
    gas: Any = None  # the IHD's GasView
    scenario: list[str] = dataclasses.field(default_factory=list)
    gas_reports: int = 0  # reports the gas meter pushed to its mirror


async def supplier_script(supplier: Supplier, clock: ScaledClock, *, step: float = 3.0) -> None:
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


def prepay_lines(ppmid: Ppmid | None, gas: Any) -> list[str]:
    """What the PPMID and the IHD's gas part show (for logs and --no-live)."""
    out = []
    if ppmid is not None:
        out.append(f"PPMID: {ppmid.view.text()}")
    if gas is not None and gas.view.summation is not None:
        out.append(f"IHD gas: {gas.view.text()}")
    return out


def render(view: IhdView, air: VirtualAir, clock: ScaledClock, started: float,
           supplier: Supplier | None = None, ppmid: PpmidView | None = None,
           gas: Any = None) -> Any:
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
    table.add_row("Reports received", str(view.reports_received))
    table.add_row("Frames on the air", f"{air.frames_sent}  ({time.monotonic() - started:.0f} s)")
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

        writer = PcapWriter(opts.pcap)
        air.add_tap(writer.write)
    server = None
    if opts.air_port is not None:
        from radios.udp import serve_udp

        server = await serve_udp(air, "127.0.0.1", opts.air_port)
        console.print(f"air open for other processes at udp://127.0.0.1:{server.port}")

    tariff: Tariff = load_tariff(opts.tariff or DEMO_TARIFF)
    ezsp = opts.meter_radio == "ezsp" and not opts.external_meter
    # With the meter on an EZSP stick the meter is coordinator and trust centre (bellows
    # runs only so), and the hub joins its network as a router.
    hub = CommsHub(air=air, clock=clock.now, tariff=tariff,
                   role="router" if ezsp else "coordinator", mirrors=opts.gas,
                   gas_tariff=load_tariff(DEMO_GAS_TARIFF) if opts.gas else None)
    emulator = None
    meter: MeterApp | None = None
    extra_meters: list[MeterApp] = []
    ihd = InHomeDisplay(air=air, report_max=opts.report_interval, clock=clock.now)
    ppmid = Ppmid(air=air, clock=clock.now, report_max=opts.report_interval) if opts.ppmid \
        else None
    gas = GasMeter(air=air, clock=clock.now) if opts.gas and not ezsp else None
    scenario_log = ScenarioLog(clock.now)
    readings: list[Any] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        if not ezsp:
            await hub.start()
        if not opts.external_meter:
            settings = MeterSettings(data_dir=opts.data_dir, seed=opts.seed, tick_seconds=0.5,
                                     initial_wh=DEMO_INITIAL_WH, mqtt=opts.mqtt,
                                     supplier_search_interval=1.0,
                                     ppmids=(PPMID_IEEE,) if ppmid is not None else ())
            if ezsp:
                from radios.ezsp import EZSP_SE_ENDPOINT
                from radios.ncp import start_emulator
                from sep.app import load_identity

                settings.ieee = load_identity(settings)
                state = opts.data_dir / "ncp.json" if opts.data_dir else None
                emulator = await start_emulator(air, state_path=state, ieee=settings.ieee)
                settings.radio, settings.device = "ezsp", emulator.url
                settings.endpoint = EZSP_SE_ENDPOINT
                settings.supplier = str(hub.app.config["virtual"]["ieee"])
                console.print(f"meter on bellows, EZSP NCP emulator at {emulator.url}")
            meter = MeterApp(settings, clock=clock, air=air)
            if tariff.prepayment is not None:  # the meter's top-up codes and friendly credit
                meter.prepayment.account.reconfigure(tariff.prepayment)
            await meter.start()
            if ezsp:
                await hub.start()  # joins the meter's network; the meter sees it join
            else:
                await hub.wait_interviewed(meter.ieee)
                ihd._note(f"hub interviewed meter {meter.ieee}")
            for n in range(1, opts.meters):
                # Fleet members: deterministic identities and seeds, data kept apart.
                extra = MeterApp(
                    MeterSettings(ieee=f"00:0d:6f:00:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}:5e:e9",
                                  seed=opts.seed + n, tick_seconds=2.0,
                                  initial_wh=DEMO_INITIAL_WH + 997 * n, mqtt=opts.mqtt,
                                  data_dir=(opts.data_dir / f"meter-{n}")
                                  if opts.data_dir else None),
                    clock=clock, air=air,
                )
                await extra.start()
                extra_meters.append(extra)
            if extra_meters:
                ihd._note(f"{len(extra_meters)} more meters on the air")
        await ihd.start()
        await ihd.connect(timeout=60 if opts.external_meter else 20)
        prepay_task = None
        if ppmid is not None and meter is not None:
            await ppmid.start()
            await ppmid.connect()
            play = prepayment_run_down if opts.scenario == "prepayment" else default_prepayment
            if opts.top_up_codes is not None:
                hub.prepay.vend = _codes(opts.top_up_codes)  # type: ignore[method-assign]
            prepay_task = asyncio.create_task(play(hub, meter.ieee, ppmid, scenario_log))
        if gas is not None:
            await gas.start()

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
                    if gas is not None and ihd.gas.view.nwk is None:
                        await ihd.gas.find(timeout=1.5)
                    else:
                        await ihd.gas.read()

        sampler = asyncio.create_task(sample())
        refresher = asyncio.create_task(display_refresh())
        script = None
        if opts.script and hub.supplier is not None:
            script = asyncio.create_task(supplier_script(hub.supplier, clock))
        deadline = None if opts.duration is None else started + opts.duration
        shown = (ppmid.view if ppmid is not None else None,
                 ihd.gas.view if gas is not None else None)
        live_cm = (Live(render(ihd.view, air, clock, started, hub.supplier, *shown), console=console,
                        refresh_per_second=4, transient=False)
                   if live_view else contextlib.nullcontext())
        with live_cm as live:
            last_line = 0.0
            while not stop.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if live is not None:
                    live.update(render(ihd.view, air, clock, started, hub.supplier, *shown))
                elif now - last_line >= 5:
                    last_line = now
                    console.print(status_line(ihd.view, clock.now()), soft_wrap=True)
                    for line in prepay_lines(ppmid, ihd.gas if gas is not None else None):
                        console.print(line, soft_wrap=True)
                timeout = 0.25 if deadline is None else max(0.0, min(0.25, deadline - now))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout)
        for task in (sampler, refresher, script, prepay_task):
            if task is not None:
                task.cancel()
        if prepay_task is not None and prepay_task.done() and not prepay_task.cancelled() \
                and prepay_task.exception() is not None:
            LOGGER.error("prepayment scenario failed: %r", prepay_task.exception())
    finally:
        if gas is not None:
            with contextlib.suppress(Exception):
                await gas.stop()
        if ppmid is not None:
            with contextlib.suppress(Exception):
                await ppmid.stop()
        with contextlib.suppress(Exception):
            await ihd.stop()
        for m in [*extra_meters, *([meter] if meter is not None else [])]:
            with contextlib.suppress(Exception):
                await m.stop()
        with contextlib.suppress(Exception):
            await hub.stop()
        if emulator is not None:
            with contextlib.suppress(Exception):
                await emulator.stop()
        if server is not None:
            server.close()
        if writer is not None:
            writer.close()
            console.print(f"capture written to {opts.pcap}")
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
    return DemoResult(view=ihd.view, meter_readings=readings, frames_on_air=air.frames_sent,
                      elapsed=time.monotonic() - started, now=clock.now(),
                      confirmations=list(hub.supplier.confirmations) if hub.supplier else [],
                      ppmid=ppmid.view if ppmid is not None else None,
                      gas=ihd.gas.view if gas is not None else None,
                      scenario=list(scenario_log.lines),
                      gas_reports=gas.reports_sent if gas is not None else 0)


def _codes(codes: list[str]) -> Any:
    """A vending function that hands out the given codes (a test's own), in order."""
    queue = list(codes)

    def vend(amount: int) -> str:
        return queue.pop(0)

    return vend
