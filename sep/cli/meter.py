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
from sep.cli.common import (
    hold_data_dir,
    ieee_address,
    install_code,
    link_key,
    own_install_code,
    radio_path,
    runtime_error,
    tariff_file,
)
from sep.cli.config import configurable, default_data_dir

LOGGER = logging.getLogger(__name__)
START_TIMEOUT = 60.0  # seconds a radio may take to come up when --duration is given


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "meter", help="run the meter (ESP) on a radio",
        description="Run the Smart Energy meter: Basic, Identify, Time and Metering on an "
        "SE endpoint. --radio virtual joins a virtual air (virtual://NAME in this process, "
        "or udp://127.0.0.1:PORT served by `hubsim demo --air-port PORT`); --radio ezsp "
        "drives a Silicon Labs stick through bellows: the meter forms its own network as "
        "coordinator, or with --join joins the comms hub's as a router (SMETS2).",
    )
    p.add_argument("--radio", choices=RADIO_KINDS, default="virtual")
    p.add_argument("--device", metavar="PATH", type=radio_path,
                   help="virtual://NAME, udp://HOST:PORT, /dev/ttyUSB0 or socket://HOST:PORT")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="where the meter keeps its data (default: $STATE_DIRECTORY, "
                   "i.e. /var/lib/sep under the service, else ~/.local/state/sep)")
    p.add_argument("--ephemeral", action="store_true",
                   help="keep no data at all: a new meter (new IEEE address) every run")
    p.add_argument("--ieee", type=ieee_address,
                   help="IEEE address (default: kept in DIR, else random)")
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
    p.add_argument("--supplier", metavar="IEEE", type=ieee_address,
                   help="the supplier's ESI whose prices, tariffs and messages the meter takes "
                   "and re-publishes to its HAN (default: the trust centre, NWK 0x0000)")
    p.add_argument("--ppmid", action="append", default=[], metavar="IEEE",
                   help="a PPMID of this home: it may enter top-up codes and select emergency "
                   "credit (repeatable; without it only the supplier may)")
    p.add_argument("--isolated-metrology", action="store_true",
                   help="run metrology in its own process (needs --data); the meter reads it "
                   "through the read-only socket protocol")
    n = p.add_argument_group(
        "EZSP network", "what the meter forms when its stick has no network yet (--radio ezsp; "
        "a stick that has one keeps it), and who may join; with --join, which network it joins")
    n.add_argument("--join", action="store_true",
                   help="join the comms hub's network as a router instead of forming one "
                   "(with --own-install-code or --join-link-key; --channel, --pan-id and "
                   "--extended-pan-id pick the network, else the first one heard that "
                   "permits joining). A stick that has joined keeps its network: after a "
                   "restart it comes back with a secured rejoin, not a new join")
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
                   type=install_code,
                   help="admit this device with the link key of its install code (hex, CRC "
                   "included); repeatable; opens the network for --permit-join seconds")
    n.add_argument("--permit-join", type=int, default=0, metavar="SECONDS",
                   help="open the network to joiners for this long after start (default: "
                   "closed, or 60 with --install-code)")
    h = p.add_argument_group(
        "secure HAN", "how the meter joins its HAN (--radio virtual, or ezsp --join): its own install code "
        "(SE; the hub must hold it) or a preconfigured trust-centre link key; without either "
        "it joins the development network (radios.virtual.DEVELOPMENT_KEY). Its keys and "
        "frame counters are kept in DIR/radio.json (mode 0600, checksummed) with --data")
    h.add_argument("--own-install-code", metavar="CODE", type=own_install_code,
                   help="this meter's install code (hex, CRC included), as on its label")
    h.add_argument("--join-link-key", metavar="HEX", type=link_key,
                   help="join with this preconfigured trust-centre link key (16 bytes hex)")
    h.add_argument("--cert", type=Path, metavar="DIR", action="append", default=[],
                   help="Key Establishment credentials (sep cert issue --out DIR: the "
                   "certificate, its private key, the CA's public key); repeatable, one per "
                   "suite. With them the meter runs CBKE with the trust centre and takes SE "
                   "frames only under CBKE link keys; without, development mode")
    h.add_argument("--ke-processes", type=int, default=1, metavar="N",
                   help="run Key Establishment's elliptic-curve maths in N worker processes "
                   "(default 1: the event loop keeps serving; 0: in threads)")
    h.add_argument("--ha-profile", choices=("auto", "on", "off"), default="auto",
                   help="answer Home Automation hosts (zigbee2mqtt, ZHA) that read Basic, "
                   "Identify, Time and Metering with the HA profile 0x0104, under the network "
                   "key only: auto (default) = on, unless --cert is given")
    h.add_argument("--pcap", type=Path, metavar="FILE",
                   help="write every frame on the air to FILE (encrypted, as on the air) and "
                   "the keys to FILE.keys, for Wireshark")
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
    configurable(p)  # every option above is also a --config key

    ver = sub.add_parser("version", help="what the meter runs",
                         description="Manufacturer code, image type, file version, hardware "
                         "version, IEEE address and active firmware slot.")
    ver.add_argument("--data", type=Path, metavar="DIR",
                     help="the meter's data (default: as `sep meter`)")
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
    args.data = args.data or default_data_dir()
    if args.data.exists():
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
    g.add_argument("--mqtt", "--mqtt-url", metavar="URL",
                   help="publish to a broker: mqtt://[user@]host[:port] or mqtts://...")
    g.add_argument("--mqtt-username", help="broker user name (overrides the URL's)")
    g.add_argument("--mqtt-password",
                   help="broker password (better: $SEP_MQTT_PASSWORD or mqtt-password-file "
                   "in --config, so it is not in the process list)")
    g.add_argument("--mqtt-client-id", help="MQTT client id (default sep-<eui64>)")
    g.add_argument("--mqtt-base", default="sep", help="base topic (default sep)")
    g.add_argument("--mqtt-ca", type=Path, help="CA certificate for mqtts://")
    g.add_argument("--mqtt-cert", type=Path, help="client certificate for mqtts://")
    g.add_argument("--mqtt-key", type=Path, help="client key for mqtts://")
    g.add_argument("--mqtt-token", help="commands must carry this token")
    g.add_argument("--mqtt-interval", type=float, default=10.0,
                   help="seconds between published readings (default 10)")
    g.add_argument("--mqtt-discovery-prefix", default="homeassistant",
                   help="Home Assistant discovery prefix (default homeassistant)")
    g.add_argument("--mqtt-supply-control", action="store_true",
                   help="accept the set_supply command and offer Home Assistant a supply "
                   "switch (arm/restore, as the consumer's button; never overrides a "
                   "supplier's off)")


def mqtt_config(args: argparse.Namespace):
    """A BridgeConfig from the --mqtt options, or None."""
    if not args.mqtt:
        return None
    from sep.bridge.config import BridgeConfig

    return BridgeConfig.from_url(
        args.mqtt, username=args.mqtt_username, password=args.mqtt_password,
        client_id=args.mqtt_client_id, base_topic=args.mqtt_base, ca_file=args.mqtt_ca,
        cert_file=args.mqtt_cert, key_file=args.mqtt_key, command_token=args.mqtt_token,
        publish_interval=args.mqtt_interval, discovery_prefix=args.mqtt_discovery_prefix,
        supply_control=args.mqtt_supply_control,
    )


def _attach_updater(app, args: argparse.Namespace, request_exit):
    """OTA client + A/B slots + the verification gate, for a meter with a data dir."""
    import time

    from sep.app import IMAGE_TYPE_APPLICATION, MANUFACTURER_CODE
    from sep.firmware.policy import DeviceIdentity
    from sep.firmware.slots import SlotManager
    from sep.ota.gate import make_gate
    from sep.ota.updater import Updater
    from sep.store.chainlog import ChainedLog

    slots = SlotManager(args.data)
    device = DeviceIdentity(manufacturer_code=MANUFACTURER_CODE,
                            image_type=IMAGE_TYPE_APPLICATION,
                            current_file_version=app.settings.file_version,
                            hardware_version=args.hardware_version)
    verify, gate_precheck = make_gate(args.trust, device)

    def precheck(offer):  # an image that failed its trial boot here is not taken again
        if offer.file_version in slots.boot_state().failed:
            return (f"version 0x{offer.file_version:08X} failed its trial boot on this meter "
                    "(reverted): not installed again")
        return gate_precheck(offer)

    update_log = ChainedLog.open(args.data)  # update-log.jsonl, MAC-chained like the events

    def log(entry: dict) -> None:
        entry = {"time": time.time(), "slot": args.slot or "factory", **entry}
        update_log.append(entry)
        app.log_update(entry)

    updater = Updater(app, slots, verify=verify, request_exit=request_exit, log=log)
    ota = app.enable_ota(verifier=verify, on_apply=updater.apply, precheck=precheck)
    ota.on_log = log
    return updater


async def _open_air(device: str):  # noqa: ANN202 - (VirtualAir, UDP link or None)
    """The air a --pcap tap listens on: the named in-process air or a mirror of a UDP one."""
    from radios.air import VirtualAir, named_air

    if device.startswith("udp://"):
        from radios.udp import connect_udp

        host, _, port = device[len("udp://"):].rpartition(":")
        air = VirtualAir()
        return air, await connect_udp(air, host or "127.0.0.1", int(port))
    return named_air(device[len("virtual://"):] or "default"), None


def _run(args: argparse.Namespace) -> int:
    from radios.ezsp import EZSP_SE_ENDPOINT
    from radios.pcap import PcapWriter
    from sep.app import MeterApp, MeterSettings
    from sep.clock import ScaledClock

    if args.radio == "ezsp" and not args.device:
        print("sep meter: --radio ezsp needs --device", file=sys.stderr)
        return 2
    if args.ephemeral and args.data is not None:
        print("sep meter: --ephemeral keeps no data; it cannot go with --data", file=sys.stderr)
        return 2
    if args.data is None and not args.ephemeral:
        args.data = default_data_dir()  # the meter keeps its identity without --data
    try:
        data_lock = hold_data_dir(args.data) if args.data is not None else None  # noqa: F841
    except OSError as exc:
        print(f"sep meter: --data {args.data}: {exc.strerror or exc}", file=sys.stderr)
        return 1
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
    for ppmid in args.ppmid:
        import zigpy.types as t

        try:
            t.EUI64.convert(ppmid)
        except ValueError:
            print(f"sep meter: --ppmid {ppmid!r} is not an IEEE address "
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
    elif args.install_code or args.tc_policy or args.network_key or args.join:
        print("sep meter: the EZSP network options need --radio ezsp", file=sys.stderr)
        return 2
    join = None
    if args.join:
        from radios.ezsp_join import JoinSettings

        if args.install_code or args.tc_policy or args.network_key or args.tc_link_key \
                or args.permit_join:
            print("sep meter: --join joins the hub's network: --install-code, --tc-policy, "
                  "--network-key, --tc-link-key and --permit-join are for forming one",
                  file=sys.stderr)
            return 2
        if not (args.own_install_code or args.join_link_key):
            print("sep meter: --join needs the key to join with: --own-install-code CODE (SE) "
                  "or --join-link-key HEX", file=sys.stderr)
            return 2
        try:
            where = dict(channel=args.channel, pan_id=args.pan_id,
                         extended_pan_id=args.extended_pan_id)
            join = JoinSettings.from_install_code(args.own_install_code, **where) \
                if args.own_install_code else \
                JoinSettings(link_key=bytes.fromhex(args.join_link_key), **where)
        except ValueError as exc:
            print(f"sep meter: --join: {exc}", file=sys.stderr)
            return 2
    settings = MeterSettings(radio=args.radio, device=device, ieee=args.ieee,
                             tariff=args.tariff, network=network, supplier=args.supplier,
                             endpoint=endpoint, data_dir=args.data, seed=args.seed,
                             baudrate=args.baudrate, flow_control=args.flow_control, mqtt=mqtt,
                             file_version=args.file_version or APP_FILE_VERSION,
                             ota_query_interval=args.ota_query_interval,
                             install_code=args.own_install_code, link_key=args.join_link_key,
                             ppmids=tuple(args.ppmid),
                             ha_profile={"on": True, "off": False}.get(args.ha_profile),
                             ke_processes=max(0, args.ke_processes or 0), join=join)
    if args.radio != "virtual" and not args.join and (args.own_install_code or args.join_link_key
                                                      or args.cert):
        print("sep meter: --own-install-code, --join-link-key and --cert need --radio virtual "
              "or --radio ezsp --join (a coordinator stick keeps its own keys)", file=sys.stderr)
        return 2
    if args.radio != "virtual" and args.pcap:
        print("sep meter: --pcap needs --radio virtual (the air of an EZSP stick is not in this "
              "process)", file=sys.stderr)
        return 2
    if args.cert:
        from sep.security.keyfiles import KeyFileError, load_credentials

        try:
            creds = [load_credentials(d) for d in args.cert]
        except KeyFileError as exc:
            print(f"sep meter: --cert: {exc}", file=sys.stderr)
            return 2
        suites = [c.suite for c in creds]
        if len(set(suites)) != len(suites):
            print("sep meter: --cert: give one directory per suite", file=sys.stderr)
            return 2
        settings.credentials = tuple(creds)

    async def main() -> int:
        from sep.persistence import stored_sim_time
        from sep.store.checked import CorruptFile

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
        air, writer, link = None, None, None
        if args.pcap is not None:
            air, link = await _open_air(device)
            writer = PcapWriter(args.pcap).capture(air)
        try:
            app = MeterApp(settings, clock=clock, metrology=metrology, air=air)
        except ValueError as exc:  # e.g. a certificate for another IEEE than this meter's
            if metro_proc is not None:
                metro_proc.terminate()
                await metro_proc.wait()
            if writer is not None:
                writer.close()
            if isinstance(exc, CorruptFile):
                raise  # a damaged file of the meter's (identity.json): runtime failure, exit 1
            print(f"sep meter: {exc}", file=sys.stderr)
            return 2
        stop = asyncio.Event()
        exit_code = 0
        why = "stopped"  # what ended the run (the event log's STOP)
        loop = asyncio.get_running_loop()

        def stop_for(reason: str) -> None:
            nonlocal why
            why = reason
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop_for, sig.name)

        def reload_tariff() -> None:
            try:
                tariff = load_tariff(args.tariff)
                if tariff == app.price.tariff:
                    LOGGER.warning("--tariff %s re-read on SIGHUP: unchanged", args.tariff)
                    return
                app.set_tariff(tariff, source="SIGHUP")
            except TariffError as exc:
                LOGGER.error("--tariff %s not re-read on SIGHUP: %s", args.tariff, exc)
            except ValueError as exc:  # the Price server's rules (a changed tariff, same id)
                LOGGER.error("--tariff %s not re-read on SIGHUP: %s (issuer_tariff_id is "
                             "still %d)", args.tariff, exc, tariff.issuer_tariff_id)

        if args.tariff is not None:
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signal.SIGHUP, reload_tariff)

        def request_exit(code: int) -> None:
            nonlocal exit_code
            exit_code = code
            stop_for(f"exit {code}")

        app.on_fatal = lambda why: request_exit(3)  # the supervisor restarts the process
        updater = None
        if args.data is not None and not args.no_ota:
            updater = _attach_updater(app, args, request_exit)
        # --duration is how long the meter serves; with it, starting is bounded too
        start_limit = None if args.duration is None else max(args.duration, START_TIMEOUT)
        try:  # whatever happens from here on, the meter stops cleanly (no hang)
            began = loop.time()
            try:
                await asyncio.wait_for(app.start(), start_limit)
            except TimeoutError:
                if start_limit is None or loop.time() - began < start_limit:
                    raise
                print(f"sep meter: --device {device}: the radio did not come up within "
                      f"{start_limit:g} s", file=sys.stderr)
                return 1
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
            if updater is not None and not await updater.confirm_if_healthy():
                return 1  # a trial slot that is not healthy: the supervisor reverts
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
            if not stop.is_set():
                why = "--duration"
        except Exception as exc:
            why = f"failed: {type(exc).__name__}"
            raise
        finally:
            try:
                await app.stop(reason=why)
            except Exception:  # noqa: BLE001 - what stopped the run is the error to show
                LOGGER.debug("stopping the meter failed", exc_info=True)
            if link is not None:
                link.close()
            if writer is not None:
                writer.close()
                print(f"capture written to {args.pcap}, its keys to {args.pcap}.keys",
                      flush=True)
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
        print(f"sep meter: {runtime_error(exc, device)}", file=sys.stderr)
        return 1

