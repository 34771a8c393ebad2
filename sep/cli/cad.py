"""`sep cad`: a consumer access device that reads a HAN's meters and publishes them to MQTT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from sep.cli.common import (
    hold_data_dir,
    ieee_address,
    link_key,
    own_install_code,
    positive_seconds,
    radio_path,
    runtime_error,
)

LOGGER = logging.getLogger(__name__)
START_TIMEOUT = 60.0  # seconds joining and Key Establishment may take when --duration is given
EZSP_REFUSED = ("--radio ezsp: an EZSP stick can only form a network today; a CAD joins "
                "one (waits for the stick joiner, issue 14): use --radio virtual")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cad", help="a consumer access device: read a HAN's meters, publish them to MQTT",
        description="Join a Smart Energy HAN as a consumer access device (CAD) with this "
        "device's install code, run Key Establishment with the trust centre and the meters "
        "(with --cert), find the meters (electricity; gas through the comms hub's mirror), "
        "bind and read them, and publish each with the same state JSON (plus \"source\": "
        "\"cad\") and Home Assistant discovery as `sep meter --mqtt`. The trust centre must "
        "hold the install code (e.g. `hubsim demo --air-port PORT --install-code "
        "IEEE=CODE`), and the certificate must come from the HAN's CA (`hubsim demo --certs "
        "CA`, `sep cert issue --ca CA --ieee IEEE --out DIR`). On the virtual air only: an "
        "EZSP stick cannot join a network yet (issue 14).",
    )
    p.add_argument("--radio", choices=("virtual", "ezsp"), default="virtual",
                   help="virtual (default); ezsp is refused until a stick can join (issue 14)")
    p.add_argument("--device", metavar="PATH", type=radio_path, default="virtual://default",
                   help="the air: udp://HOST:PORT (another process's, e.g. hubsim demo "
                   "--air-port PORT) or virtual://NAME")
    p.add_argument("--ieee", type=ieee_address, required=True,
                   help="this CAD's IEEE address (as its install code and certificate say)")
    p.add_argument("--own-install-code", metavar="CODE", type=own_install_code,
                   help="this CAD's install code (hex, CRC included), as on its label")
    p.add_argument("--join-link-key", metavar="HEX", type=link_key,
                   help="join with this preconfigured trust-centre link key instead")
    p.add_argument("--cert", type=Path, metavar="DIR", action="append", default=[],
                   help="Key Establishment credentials (sep cert issue --out DIR); repeatable, "
                   "one per suite. Without them the CAD runs development mode")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="keep the radio's keys and frame counters in DIR/radio.json, so the "
                   "CAD rejoins as the same node (default: nothing kept)")
    p.add_argument("--duration", type=positive_seconds, metavar="SECONDS",
                   help="stop after this long (joining included) and exit 0")
    p.add_argument("--report-max", type=int, default=30, metavar="SECONDS",
                   help="the meters report at least this often (default 30)")
    g = p.add_argument_group("MQTT")
    g.add_argument("--mqtt", "--mqtt-url", metavar="URL", required=True,
                   help="the broker: mqtt://[user@]host[:port] or mqtts://...")
    g.add_argument("--mqtt-username", help="broker user name (overrides the URL's)")
    g.add_argument("--mqtt-password",
                   help="broker password (better: $SEP_MQTT_PASSWORD, kept out of argv)")
    g.add_argument("--mqtt-base", default="sep", help="base topic (default sep)")
    g.add_argument("--mqtt-ca", type=Path, help="CA certificate for mqtts://")
    g.add_argument("--mqtt-discovery-prefix", default="homeassistant",
                   help="Home Assistant discovery prefix (default homeassistant)")
    p.set_defaults(func=_run)


def _usage(text: str) -> int:
    print(f"sep cad: {text}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    if args.radio == "ezsp":
        return _usage(EZSP_REFUSED)
    if args.own_install_code and args.join_link_key:
        return _usage("give --own-install-code or --join-link-key, not both")
    if args.report_max < 1 or args.report_max > 0xFFFE:
        return _usage("--report-max must be 1..65534 seconds")
    from sep.bridge.config import BridgeConfig, BridgeConfigError

    try:
        mqtt = BridgeConfig.from_url(
            args.mqtt, username=args.mqtt_username,
            password=args.mqtt_password or os.environ.get("SEP_MQTT_PASSWORD"),
            ca_file=args.mqtt_ca, base_topic=args.mqtt_base,
            discovery_prefix=args.mqtt_discovery_prefix)
    except BridgeConfigError as exc:
        return _usage(f"--mqtt: {exc}")
    creds = []
    if args.cert:
        from sep.security.keyfiles import KeyFileError, load_credentials

        try:
            creds = [load_credentials(d) for d in args.cert]
        except KeyFileError as exc:
            return _usage(f"--cert: {exc}")
        if len({c.suite for c in creds}) != len(creds):
            return _usage("--cert: give one directory per suite")
        own = args.ieee.replace(":", "").lower()
        for folder, cred in zip(args.cert, creds, strict=True):
            if f"{cred.subject:016x}" != own:
                return _usage(f"--cert {folder}: the certificate is for "
                              f"{cred.subject:016x}, not this CAD ({args.ieee})")
    lock = None
    if args.data is not None:
        try:
            lock = hold_data_dir(args.data)  # noqa: F841 - held while the CAD runs
        except OSError as exc:
            print(f"sep cad: --data {args.data}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    try:
        return asyncio.run(_main(args, mqtt, creds))
    except Exception as exc:  # a radio or a HAN that fails is one line, not a trace
        LOGGER.debug("CAD failed", exc_info=True)
        print(f"sep cad: {runtime_error(exc, args.device)}", file=sys.stderr)
        return 1


async def _main(args: argparse.Namespace, mqtt, creds) -> int:  # noqa: ANN001
    from sep.bridge.cad import CadService, state_lines

    service = CadService(
        ieee=args.ieee, mqtt=mqtt, device=args.device,
        install_code=bytes.fromhex(args.own_install_code) if args.own_install_code else None,
        link_key=bytes.fromhex(args.join_link_key) if args.join_link_key else None,
        credentials=creds, report_max=args.report_max,
        state=str(args.data / "radio.json") if args.data is not None else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    began = loop.time()
    limit = None if args.duration is None else max(args.duration, START_TIMEOUT)
    try:
        try:
            await asyncio.wait_for(service.start(), limit)
        except TimeoutError:
            if limit is None or loop.time() - began < limit:
                raise
            print(f"sep cad: --device {args.device}: did not join and key with the HAN "
                  f"within {limit:g} s", file=sys.stderr)
            return 1
        print(f"CAD {args.ieee} on the HAN ({args.device}); publishing to {mqtt.broker} "
              "under " f"{mqtt.base_topic}/; Ctrl-C stops", flush=True)
        remaining = None if args.duration is None else max(
            0.0, args.duration - (loop.time() - began))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), remaining)
    finally:
        await service.stop()
    for line in state_lines(service.published):
        print(line, flush=True)
    return 0
