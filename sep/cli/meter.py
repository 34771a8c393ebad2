"""`sep meter`: run the meter alone on a radio."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

from radios.factory import RADIO_KINDS
from sep.cli.common import tariff_file

LOGGER = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "meter", help="run the meter (ESP) on a radio",
        description="Run the Smart Energy meter: Basic, Identify, Time and Metering on an "
        "SE endpoint. --radio virtual joins a virtual air (virtual://NAME in this process, "
        "or udp://127.0.0.1:PORT served by `hubsim demo --air-port PORT`); --radio ezsp "
        "drives a Silicon Labs stick through bellows (the meter is then coordinator).",
    )
    p.add_argument("--radio", choices=RADIO_KINDS, default="virtual")
    p.add_argument("--device", metavar="PATH",
                   help="virtual://NAME, udp://HOST:PORT, /dev/ttyUSB0 or socket://HOST:PORT")
    p.add_argument("--data", type=Path, metavar="DIR", help="where the meter keeps its data")
    p.add_argument("--ieee", help="IEEE address (default: kept in DIR, else random)")
    p.add_argument("--endpoint", type=int, default=None,
                   help="SE endpoint number (default 1; 9 on EZSP, as bellows owns 1, 2, 242)")
    p.add_argument("--seed", type=int, default=1, help="seed of the simulated household load")
    p.add_argument("--speed", type=float, default=1.0,
                   help="simulated time runs N times faster (default 1: real time)")
    p.add_argument("--baudrate", type=int, default=115200, help="EZSP serial speed")
    p.add_argument("--flow-control", choices=("hardware", "software"), default=None)
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--tariff", type=tariff_file, metavar="FILE",
                   help="the tariff (TOML, see examples/tariff.toml; default one rate of "
                   "0.2450 GBP/kWh); re-read on SIGHUP, and the HAN is told at once")
    p.add_argument("--supplier", metavar="IEEE",
                   help="the supplier's ESI whose prices, tariffs and messages the meter takes "
                   "and re-publishes to its HAN (default: the trust centre, NWK 0x0000)")
    p.add_argument("--isolated-metrology", action="store_true",
                   help="run metrology in its own process (needs --data); the meter reads it "
                   "through the read-only socket protocol")
    n = p.add_argument_group(
        "EZSP network", "what the meter forms when its stick has no network yet (--radio ezsp; "
        "a stick that has one keeps it), and who may join")
    n.add_argument("--channel", type=int, choices=range(11, 27), metavar="11..26",
                   help="802.15.4 channel (default: zigpy picks)")
    n.add_argument("--pan-id", type=lambda v: int(v, 0), metavar="0xPPPP")
    n.add_argument("--extended-pan-id", metavar="AA:BB:CC:DD:EE:FF:00:11")
    n.add_argument("--network-key", metavar="HEX", help="16-byte network key (default random)")
    n.add_argument("--tc-link-key", metavar="HEX",
                   help="the trust centre link key (default ZigBeeAlliance09)")
    n.add_argument("--tc-policy", choices=("preconfigured", "install_code", "closed"),
                   help="who the trust centre admits; SE: install_code (only devices whose "
                   "install-code key was given with --install-code)")
    n.add_argument("--install-code", action="append", default=[], metavar="IEEE=CODE",
                   help="admit this device with the link key of its install code (hex, CRC "
                   "included); repeatable; opens the network for --permit-join seconds")
    n.add_argument("--permit-join", type=int, default=0, metavar="SECONDS",
                   help="open the network to joiners for this long after start (default: "
                   "closed, or 60 with --install-code)")
    g = p.add_argument_group("firmware update")
    g.add_argument("--trust", type=Path, metavar="DIR",
                   help="trust directory (ca.pub, allowed_signers.txt) for OTA images; "
                   "without it every image is refused")
    g.add_argument("--no-ota", action="store_true", help="do not look for firmware updates")
    g.add_argument("--ota-query-interval", type=float, default=24 * 3600, metavar="SECONDS",
                   help="how often to ask the OTA server for a new image (default one day)")
    g.add_argument("--file-version", type=lambda v: int(v, 0), default=None,
                   help="the firmware version this process is (set by the supervisor)")
    g.add_argument("--slot", default=None, help=argparse.SUPPRESS)
    g.add_argument("--hardware-version", type=lambda v: int(v, 0), default=1)
    add_mqtt_options(p)
    p.set_defaults(func=_run)

    ver = sub.add_parser("version", help="what the meter runs",
                         description="Manufacturer code, image type, file version, hardware "
                         "version, IEEE address and active firmware slot.")
    ver.add_argument("--data", type=Path, metavar="DIR")
    ver.add_argument("--json", action="store_true")
    ver.add_argument("--hardware-version", type=lambda v: int(v, 0), default=1)
    ver.set_defaults(func=_version)

    sv = sub.add_parser(
        "supervise", help="run `sep meter` under the A/B slot supervisor",
        description="Start the active firmware slot's meter with the given meter options, "
        "boot a newly activated slot on trial, and revert it unless it confirms after its "
        "health check. Example: sep supervise --data DIR -- --device udp://127.0.0.1:47000",
    )
    sv.add_argument("--data", type=Path, required=True, metavar="DIR")
    sv.add_argument("--trial-timeout", type=float, default=120.0,
                    help="seconds a trial slot has to confirm (default 120)")
    sv.add_argument("meter_args", nargs=argparse.REMAINDER,
                    help="options passed to `sep meter` (after --)")
    sv.set_defaults(func=_supervise)


def _version(args: argparse.Namespace) -> int:
    import json

    from sep import __version__
    from sep.app import APP_FILE_VERSION, IMAGE_TYPE_APPLICATION, MANUFACTURER_CODE
    from sep.firmware.slots import FACTORY, SlotManager

    info = {"manufacturer": MANUFACTURER_CODE, "image_type": IMAGE_TYPE_APPLICATION,
            "file_version": APP_FILE_VERSION, "hardware_version": args.hardware_version,
            "ieee": None, "active_slot": FACTORY, "trial": False, "software": __version__}
    if args.data is not None and args.data.exists():
        with contextlib.suppress(OSError, ValueError, KeyError):
            info["ieee"] = json.loads((args.data / "identity.json").read_text())["ieee"]
        if (args.data / "slots").exists():
            slots = SlotManager(args.data)
            state = slots.boot_state()
            slot_info = slots.info(state.active)
            info["active_slot"] = state.active if slot_info else FACTORY
            info["trial"] = state.trial
            if slot_info:
                info["file_version"] = slot_info.file_version
    if args.json:
        print(json.dumps(info))
    else:
        print(f"manufacturer 0x{info['manufacturer']:04X}, image type 0x{info['image_type']:04X}, "
              f"file version 0x{info['file_version']:08X}, hardware {info['hardware_version']}, "
              f"IEEE {info['ieee'] or 'not yet assigned'}, slot {info['active_slot']}"
              + (" (on trial)" if info["trial"] else ""))
    return 0


def _supervise(args: argparse.Namespace) -> int:
    from sep.ota.supervisor import supervise

    meter_args = args.meter_args[1:] if args.meter_args[:1] == ["--"] else args.meter_args
    return supervise(args.data, meter_args, trial_timeout=args.trial_timeout)


def add_mqtt_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MQTT bridge")
    g.add_argument("--mqtt", metavar="URL",
                   help="publish to a broker: mqtt://[user[:pass]@]host[:port] or mqtts://...")
    g.add_argument("--mqtt-username", help="broker user name (overrides the URL's)")
    g.add_argument("--mqtt-password", help="broker password (overrides the URL's)")
    g.add_argument("--mqtt-client-id", help="MQTT client id (default sep-<eui64>)")
    g.add_argument("--mqtt-base", default="sep", help="base topic (default sep)")
    g.add_argument("--mqtt-ca", type=Path, help="CA certificate for mqtts://")
    g.add_argument("--mqtt-cert", type=Path, help="client certificate for mqtts://")
    g.add_argument("--mqtt-key", type=Path, help="client key for mqtts://")
    g.add_argument("--mqtt-token", help="commands must carry this token")
    g.add_argument("--mqtt-interval", type=float, default=10.0,
                   help="seconds between published readings (default 10)")


def mqtt_config(args: argparse.Namespace):
    """A BridgeConfig from the --mqtt options, or None."""
    if not args.mqtt:
        return None
    from sep.bridge.config import BridgeConfig

    return BridgeConfig.from_url(
        args.mqtt, username=args.mqtt_username, password=args.mqtt_password,
        client_id=args.mqtt_client_id, base_topic=args.mqtt_base, ca_file=args.mqtt_ca,
        cert_file=args.mqtt_cert, key_file=args.mqtt_key, command_token=args.mqtt_token,
        publish_interval=args.mqtt_interval,
    )


def _attach_updater(app, args: argparse.Namespace, request_exit):
    """OTA client + A/B slots + the verification gate, for a meter with a data dir."""
    import json
    import time

    from sep.app import IMAGE_TYPE_APPLICATION, MANUFACTURER_CODE
    from sep.firmware.policy import DeviceIdentity
    from sep.firmware.slots import SlotManager
    from sep.ota.gate import make_gate
    from sep.ota.updater import Updater

    slots = SlotManager(args.data)
    device = DeviceIdentity(manufacturer_code=MANUFACTURER_CODE,
                            image_type=IMAGE_TYPE_APPLICATION,
                            current_file_version=app.settings.file_version,
                            hardware_version=args.hardware_version)
    verify, precheck = make_gate(args.trust, device)
    log_path = args.data / "update-log.jsonl"

    def log(entry: dict) -> None:
        entry = {"time": time.time(), "slot": args.slot or "factory", **entry}
        with open(log_path, "a+b") as f:
            if f.seek(0, 2) and (f.seek(-1, 2), f.read(1))[1] != b"\n":
                f.write(b"\n")  # the last line was torn by a power cut: start a new one
            f.write((json.dumps(entry) + "\n").encode())
        app.log_update(entry)

    updater = Updater(app, slots, verify=verify, request_exit=request_exit, log=log)
    ota = app.enable_ota(verifier=verify, on_apply=updater.apply, precheck=precheck)
    ota.on_log = log
    return updater


def _run(args: argparse.Namespace) -> int:
    from radios.ezsp import EZSP_SE_ENDPOINT
    from sep.app import MeterApp, MeterSettings
    from sep.clock import ScaledClock

    if args.radio == "ezsp" and not args.device:
        print("sep meter: --radio ezsp needs --device", file=sys.stderr)
        return 2
    endpoint = args.endpoint or (EZSP_SE_ENDPOINT if args.radio == "ezsp" else 1)
    device = args.device
    if args.radio == "virtual" and device is None:
        device = "virtual://default"
    from sep.bridge.config import BridgeConfigError

    try:
        mqtt = mqtt_config(args)
    except BridgeConfigError as exc:
        print(f"sep meter: {exc}", file=sys.stderr)
        return 2
    from sep.app import APP_FILE_VERSION
    from sep.meter.tariff import TariffError, load_tariff
    if args.supplier is not None:
        import zigpy.types as t

        try:
            t.EUI64.convert(args.supplier)
        except ValueError:
            print(f"sep meter: --supplier {args.supplier!r} is not an IEEE address "
                  "(aa:bb:cc:dd:ee:ff:00:11)", file=sys.stderr)
            return 2
    network = None
    installs: list[tuple[str, str]] = []
    if args.radio == "ezsp":
        from radios.ezsp import NetworkSettings

        network = NetworkSettings(channel=args.channel, pan_id=args.pan_id,
                                  extended_pan_id=args.extended_pan_id,
                                  network_key=args.network_key, tc_link_key=args.tc_link_key,
                                  tc_policy=args.tc_policy)
        try:
            network.zigpy_nwk()
            network.ezsp_policies()
            for item in args.install_code:
                ieee, sep_, code = item.partition("=")
                if not sep_:
                    raise ValueError(f"--install-code {item!r}: give IEEE=CODE")
                installs.append((ieee, code))
        except ValueError as exc:
            print(f"sep meter: {exc}", file=sys.stderr)
            return 2
    elif args.install_code or args.tc_policy or args.network_key:
        print("sep meter: the EZSP network options need --radio ezsp", file=sys.stderr)
        return 2
    settings = MeterSettings(radio=args.radio, device=device, ieee=args.ieee,
                             tariff=args.tariff, network=network, supplier=args.supplier,
                             endpoint=endpoint, data_dir=args.data, seed=args.seed,
                             baudrate=args.baudrate, flow_control=args.flow_control, mqtt=mqtt,
                             file_version=args.file_version or APP_FILE_VERSION,
                             ota_query_interval=args.ota_query_interval)

    async def main() -> int:
        from sep.persistence import stored_sim_time

        saved = stored_sim_time(args.data) if args.speed != 1.0 else None
        start = max(time.time(), saved) if saved else None
        clock = ScaledClock(start=start, speed=args.speed)
        metrology = None
        metro_proc = None
        if args.isolated_metrology:
            if args.data is None:
                print("sep meter: --isolated-metrology needs --data", file=sys.stderr)
                return 2
            from sep.metrology.client import MetrologyClient

            sock = args.data / "metrology.sock"
            metro_proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sep.metrology.process", "--data", str(args.data),
                "--socket", str(sock), "--seed", str(args.seed), "--speed", str(args.speed),
                "--start", str(clock.now()), stdout=asyncio.subprocess.PIPE)
            assert metro_proc.stdout is not None
            await metro_proc.stdout.readline()  # "metrology serving on ..."
            metrology = MetrologyClient(str(sock))
        app = MeterApp(settings, clock=clock, metrology=metrology)
        stop = asyncio.Event()
        exit_code = 0
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)

        def reload_tariff() -> None:
            try:
                app.set_tariff(load_tariff(args.tariff))
            except TariffError as exc:
                LOGGER.error("tariff not changed: %s", exc)

        if args.tariff is not None:
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signal.SIGHUP, reload_tariff)

        def request_exit(code: int) -> None:
            nonlocal exit_code
            exit_code = code
            stop.set()

        app.on_fatal = lambda why: request_exit(3)  # the supervisor restarts the process
        updater = None
        if args.data is not None and not args.no_ota:
            updater = _attach_updater(app, args, request_exit)
        await app.start()
        if installs:
            from radios.ezsp import permit_with_install_code

            for ieee, code in installs:
                await permit_with_install_code(app.controller, ieee, code,
                                               time_s=args.permit_join or 60)
                LOGGER.info("install-code join open for %s", ieee)
        elif args.permit_join:
            await app.controller.permit(args.permit_join)
        print(f"meter {app.ieee} version 0x{settings.file_version:08X} serving SE endpoint "
              f"{endpoint} on {args.radio} ({device}); Ctrl-C stops", flush=True)
        try:
            if updater is not None and not await updater.confirm_if_healthy():
                return 1  # a trial slot that is not healthy: the supervisor reverts
            await asyncio.wait_for(stop.wait(), args.duration)
        except TimeoutError:
            pass
        finally:
            await app.stop()
            if metro_proc is not None:
                metrology.close()  # hang up first, so the process stops cleanly
                await asyncio.sleep(0.05)
                metro_proc.terminate()
                await metro_proc.wait()
        return exit_code

    try:
        return asyncio.run(main())
    except Exception as exc:  # a radio that cannot start is a clear error, not a trace
        LOGGER.debug("meter failed", exc_info=True)
        print(f"sep meter: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
