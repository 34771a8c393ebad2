"""`hubsim` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from sep import __version__
from sep.cli.common import install_code, new_file, port_number, run, tariff_file


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubsim",
        description="Simulate the rest of a Smart Energy home area network "
        "(comms hub, in-home display) around a meter.",
    )
    parser.add_argument("--version", action="version", version=f"hubsim {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="hub + meter + in-home display on the virtual air",
        description="Run a whole HAN on the virtual air: a comms hub (coordinator) "
        "interviews the meter, an in-home display finds it, reads it and subscribes to "
        "reports. No hardware or broker needed. Runs until Ctrl-C unless --duration.",
    )
    demo.add_argument("--duration", type=_positive, metavar="SECONDS",
                      help="stop after this many (wall-clock) seconds and exit 0")
    demo.add_argument("--pcap", type=new_file, metavar="FILE",
                      help="write every frame on the air to FILE (open it in Wireshark)")
    demo.add_argument("--data", type=Path, metavar="DIR",
                      help="keep the demo meter's data (identity, ...) in DIR across runs")
    demo.add_argument("--speed", type=_positive, default=None, metavar="N",
                      help="simulated time runs N times faster than the wall clock (default 60; "
                      "600 in the prepayment scenario)")
    demo.add_argument("--seed", type=int, default=1,
                      help="seed of the simulated household load (default 1)")
    demo.add_argument("--air-port", type=port_number, metavar="PORT",
                      help="also serve the air on udp://127.0.0.1:PORT so `sep meter "
                      "--device udp://127.0.0.1:PORT` can join from another process")
    demo.add_argument("--external-meter", action="store_true",
                      help="start no meter here; wait for one to join over --air-port (give "
                      "the hub its install code with --install-code)")
    demo.add_argument("--install-code", action="append", default=[], metavar="IEEE=CODE",
                      type=install_code,
                      help="the hub (trust centre) admits this device by its install code "
                      "(hex, CRC included); repeatable. The demo's own devices get theirs "
                      "automatically (kept in DIR/install_codes.json with --data)")
    demo.add_argument("--meter-radio", choices=("virtual", "ezsp"), default="virtual",
                      help="how the demo meter reaches the air: virtual (default), or ezsp: "
                      "unmodified bellows on an EZSP NCP emulator, whose stick joins the "
                      "hub's network as a router with the meter's install code (SMETS2)")
    demo.add_argument("--hub-radio", choices=("virtual", "ezsp"), default="virtual",
                      help="how the comms hub reaches the air: virtual (default), or ezsp: "
                      "unmodified bellows on its own EZSP NCP emulator, coordinator and trust "
                      "centre (with --meter-radio ezsp: the SMETS2 topology on the real host "
                      "path at both ends)")
    demo.add_argument("--tariff", type=tariff_file, metavar="FILE",
                      help="the supplier's tariff (TOML, see examples/tariff.toml; default a "
                      "three-tier time-of-use tariff with a daily block)")
    demo.add_argument("--no-script", action="store_true",
                      help="the supplier sends no messages and no peak price event")
    demo.add_argument("--meters", type=int, default=1, metavar="N",
                      help="run N simulated meters on the air (default 1; the IHD shows the first)")
    demo.add_argument("--mqtt", metavar="URL",
                      help="every meter publishes to this broker (mqtt:// or mqtts://)")
    demo.add_argument("--mqtt-username", help="broker user name")
    demo.add_argument("--mqtt-password",
                      help="broker password (better: $SEP_MQTT_PASSWORD, kept out of argv)")
    demo.add_argument("--mqtt-ca", type=Path, help="CA certificate for mqtts://")
    demo.add_argument("--mqtt-base", default="sep", help="base topic (default sep)")
    demo.add_argument("--mqtt-interval", type=float, default=10.0,
                      help="seconds between published readings (default 10)")
    demo.add_argument("--ota", type=Path, metavar="FILE",
                      help="upgrade the demo meter with this OTA file (the meter then runs in "
                      "its own process under the A/B supervisor); exit 0 only when it runs "
                      "the new version, confirmed")
    demo.add_argument("--trust", type=Path, metavar="DIR",
                      help="the meter's trust directory for --ota (ca.pub, allowed_signers.txt)")
    demo.add_argument("--scenario", nargs="?", const="list", default="default", metavar="NAME",
                      help="what the prepayment side plays: default, or prepayment (credit runs "
                      "down, emergency credit, supply interrupted, top-up and restore from the "
                      "PPMID; 60 s unless --duration); --scenario alone lists them")
    demo.add_argument("--no-ppmid", action="store_true", help="no PPMID on the air")
    demo.add_argument("--no-gas", action="store_true",
                      help="no battery gas meter (and no mirror on the hub)")
    demo.add_argument("--certs", type=Path, metavar="DIR",
                      help="issue every device's Key Establishment credentials from the CA in "
                      "DIR (sep cert ca DIR); default: a test CA made for this run")
    demo.add_argument("--no-key-establishment", action="store_true",
                      help="no CBKE: devices use the link keys of joining and Request Key "
                      "(the development network's rules)")
    demo.add_argument("--cad", action="store_true",
                      help="a consumer access device joins with its install code, keys with "
                      "the hub and the meter, reads the meters (electricity; gas through "
                      "the mirror) and publishes them to --mqtt as `sep cad` does; the "
                      "demo meters' own bridges are then off")
    demo.add_argument("--no-live", action="store_true",
                      help="plain log lines instead of the live terminal view")
    demo.set_defaults(func=_demo)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from hubsim.demo import DemoOptions, run_demo
    from hubsim.scenarios import SCENARIO_DURATION, SCENARIO_SPEED, SCENARIOS

    if args.scenario == "list" or args.scenario not in SCENARIOS:
        known = "\n".join(f"  {name:<12} {text}" for name, text in SCENARIOS.items())
        if args.scenario == "list":
            print(f"scenarios:\n{known}")
            return 0
        print(f"hubsim demo: --scenario {args.scenario!r} is not known; the scenarios:\n{known}",
              file=sys.stderr)
        return 2
    if args.speed is None:
        args.speed = SCENARIO_SPEED.get(args.scenario, 60.0)
    if args.duration is None:
        args.duration = SCENARIO_DURATION.get(args.scenario)

    if args.ota is not None:
        if args.trust is None:
            print("hubsim demo: --ota needs --trust DIR", file=sys.stderr)
            return 2
        from hubsim.ota_demo import run_ota_demo

        code, why = asyncio.run(run_ota_demo(args.ota, args.trust, data_dir=args.data,
                                             timeout=args.duration or 600.0))
        print(f"hubsim demo: {'upgrade succeeded' if code == 0 else 'upgrade failed'}: {why}",
              file=sys.stdout if code == 0 else sys.stderr)
        return code
    if args.external_meter and args.air_port is None:
        print("hubsim demo: --external-meter needs --air-port", file=sys.stderr)
        return 2
    if args.meters < 1:
        print("hubsim demo: --meters must be at least 1", file=sys.stderr)
        return 2
    mqtt = None
    if args.mqtt:
        from sep.bridge.config import BridgeConfig, BridgeConfigError

        try:
            mqtt = BridgeConfig.from_url(args.mqtt, username=args.mqtt_username,
                                         password=args.mqtt_password
                                         or os.environ.get("SEP_MQTT_PASSWORD"),
                                         ca_file=args.mqtt_ca,
                                         base_topic=args.mqtt_base,
                                         publish_interval=args.mqtt_interval)
        except BridgeConfigError as exc:
            print(f"hubsim demo: {exc}", file=sys.stderr)
            return 2
    opts = DemoOptions(duration=args.duration, pcap=args.pcap, data_dir=args.data,
                       speed=args.speed, seed=args.seed, air_port=args.air_port,
                       external_meter=args.external_meter, mqtt=mqtt, meters=args.meters,
                       live=False if args.no_live else None, meter_radio=args.meter_radio,
                       hub_radio=args.hub_radio,
                       tariff=args.tariff, script=not args.no_script, scenario=args.scenario,
                       ppmid=not args.no_ppmid, gas=not args.no_gas,
                       key_establishment=not args.no_key_establishment, certs=args.certs,
                       cad=args.cad,
                       install_codes={item.partition("=")[0]: bytes.fromhex(item.partition("=")[2])
                                      for item in args.install_code})
    from hubsim.demo import DemoError

    try:
        result = asyncio.run(run_demo(opts))
    except (TimeoutError, DemoError) as exc:
        print(f"hubsim demo: {exc}", file=sys.stderr)
        return 1
    v = result.view
    print(f"IHD saw {v.energy_text()} imported, {v.power_text()} now; "
          f"{v.reports_received} reports; {result.frames_on_air} frames on the air")
    price = v.prices.price(result.now)
    if price is not None:
        print(f"IHD price {price.label} {v.prices.money_text(price.rate)}/kWh (tier "
              f"{price.tier}), tariff {v.prices.tariff_label!r}, cost today "
              f"{v.prices.money_text(v.prices.cost_today, 2)}")
    from hubsim.demo import security_text

    print(f"secure HAN: {security_text(result.security)}")
    if result.fleet:
        print(f"fleet: {result.fleet}")
    if result.key_establishment:
        print(f"key establishment: {'; '.join(result.key_establishment)}")
    print(f"IHD messages {len(v.messages)}, confirmed {sum(m.confirmed for m in v.messages.values())}"
          f"; supplier got {len(result.confirmations)} confirmation(s)")
    print(f"IHD schedule today {v.han.schedule_text(v.prices.tier_labels)} "
          f"({v.han.calendar_name or 'no calendar'}); meter events {v.han.events_text()}; "
          f"tenancy {v.han.tenancy}; keep-alive {v.han.keep_alive}")
    if result.ppmid is not None:
        print(f"PPMID {result.ppmid.text()}; last top-up: {result.ppmid.last_result or 'none'}")
    if result.gas is not None:
        print(f"IHD gas {result.gas.text()} ({result.gas_reports} reports to the mirror)")
    for line in result.scenario:
        print(f"scenario {line}")
    from hubsim.demo import cad_lines

    for line in cad_lines(result.cad):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv, quiet_loggers=("zigpy",))


if __name__ == "__main__":
    sys.exit(main())
