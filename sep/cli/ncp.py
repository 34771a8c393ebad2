"""`sep ncp-emulator`: an emulated Silicon Labs EZSP stick for bellows, on a virtual air."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from sep.cli.common import host_port, ieee_address, port_number

LOGGER = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ncp-emulator", help="emulate an EZSP NCP (Silicon Labs stick) for bellows",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Emulate a Silicon Labs EmberZNet NCP (EZSP v13 over ASH) well enough "
        "for unmodified bellows/zigpy to start, form a network, send and receive. The "
        "NCP's radio is a virtual air: an in-process one, or the air of `hubsim demo "
        "--air-port PORT` with --air udp://127.0.0.1:PORT; with --air-port PORT it serves "
        "its own air there, for `sep meter --device udp://127.0.0.1:PORT` to join the "
        "network the host forms. bellows reaches the emulator "
        "as socket://HOST:PORT (or the printed pty path). Network state (keys, PAN, "
        "counters, tokens) is kept in --state, so a restarted emulator resumes the same "
        "network.",
        epilog="examples:\n"
        "  sep ncp-emulator --listen 127.0.0.1:9999 --state ncp.json\n"
        "  sep meter --radio ezsp --device socket://127.0.0.1:9999\n"
        "  sep ncp-emulator --pty --air udp://127.0.0.1:47000\n"
        "  sep ncp-emulator --cert creds/suite1 --cert creds/suite2 --state ncp.json\n"
        "  sep ncp-emulator --listen 127.0.0.1:9999 --air-port 47001   # zigbee2mqtt: "
        "tcp://127.0.0.1:9999\n"
        "  sep meter --device udp://127.0.0.1:47001 --join-link-key "
        "5A6967426565416C6C69616E63653039\n"
        "  bellows -d socket://127.0.0.1:9999 info     # bellows' own CLI, if installed",
    )
    p.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:9999",
                   help="TCP address to listen on (default 127.0.0.1:9999; port 0 picks one)")
    p.add_argument("--no-tcp", action="store_true", help="do not listen on TCP (use --pty)")
    p.add_argument("--pty", action="store_true",
                   help="also open a pseudo-terminal and print its path (a serial port)")
    p.add_argument("--state", type=Path, metavar="FILE",
                   help="JSON file with the NCP's non-volatile state (default: none, "
                   "every start is a factory-new stick)")
    p.add_argument("--ieee", type=ieee_address,
                   help="the stick's EUI-64 (default: kept in --state, else random)")
    p.add_argument("--air", metavar="URL",
                   help="udp://HOST:PORT of a virtual air served by `hubsim demo "
                   "--air-port` (default: an air of its own in this process)")
    p.add_argument("--cert", type=Path, metavar="DIR", action="append", default=[],
                   help="CBKE credentials to program into the stick's manufacturing token "
                   "(sep cert issue --out DIR: the certificate, its private key, the CA's "
                   "public key); repeatable, one per suite. The certificate's subject is the "
                   "stick's EUI-64. Without it the stick has no CBKE data until the host "
                   "sends setPreinstalledCbkeData (kept in --state)")
    p.add_argument("--air-port", type=port_number, metavar="PORT",
                   help="serve this emulator's own air on udp://127.0.0.1:PORT (0 picks one; "
                   "the banner says which), so `sep meter --device udp://127.0.0.1:PORT` "
                   "joins the network the host forms")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.set_defaults(func=_run)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port} out of range")
    return host or "127.0.0.1", int(port)


def _credentials(dirs: list[Path], ieee: str | None) -> tuple[dict[int, Any], str | None]:
    """(suite -> the token's CBKE data, the stick's EUI-64) from ``--cert`` directories
    (ValueError saying what is wrong: a file, two for one suite, subjects that differ)."""
    from radios.ncp.cmd_cbke import CbkeData, eui64_text
    from sep.security.keyfiles import KeyFileError, load_credentials

    data: dict[int, Any] = {}
    for directory in dirs:
        try:
            creds = load_credentials(directory)
        except KeyFileError as exc:
            raise ValueError(str(exc)) from None
        if creds.suite in data:
            raise ValueError(f"two directories for suite {creds.suite}: give one per suite")
        size = creds.curve.scalar_len
        data[creds.suite] = CbkeData(creds.ca_public_key, creds.certificate,
                                     creds.private_key.to_bytes(size, "big"))
        subject = eui64_text(data[creds.suite].subject)
        if ieee is not None and subject != ieee:
            raise ValueError(f"{directory}: the certificate is for {subject}, not {ieee}")
        ieee = subject
    return data, ieee


def _run(args: argparse.Namespace) -> int:
    from radios.air import VirtualAir
    from radios.ncp import start_emulator
    from sep.security.cbke_engine import SepCbkeEngine

    if args.air and args.air_port is not None:
        print("sep ncp-emulator: --air joins another process's air, --air-port serves this "
              "one's: give one of them", file=sys.stderr)
        return 2
    if args.no_tcp and not args.pty:
        print("sep ncp-emulator: --no-tcp needs --pty", file=sys.stderr)
        return 2
    try:
        host, port = _host_port(args.listen)
    except ValueError:
        print(f"sep ncp-emulator: --listen wants HOST:PORT, not {args.listen!r}",
              file=sys.stderr)
        return 2
    try:
        if not args.air.startswith("udp://") if args.air else False:
            raise argparse.ArgumentTypeError(f"{args.air!r}: want udp://HOST:PORT")
        air_at = host_port(args.air[len("udp://"):], what="udp://HOST:PORT") if args.air \
            else None
    except argparse.ArgumentTypeError as exc:
        print(f"sep ncp-emulator: --air {exc}", file=sys.stderr)
        return 2
    try:
        cbke_data, ieee = _credentials(args.cert, args.ieee)
    except ValueError as exc:
        print(f"sep ncp-emulator: --cert: {exc}", file=sys.stderr)
        return 2
    if args.state is not None and args.state.exists():
        from radios.ncp.state import NcpState

        try:  # a state file that is not one: say so now, not as a traceback later
            stored = NcpState.load(args.state)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            print(f"sep ncp-emulator: --state {args.state}: not an NCP state file "
                  f"({type(exc).__name__}: {exc})", file=sys.stderr)
            return 2
        if cbke_data and str(stored.ieee) != ieee:
            print(f"sep ncp-emulator: --cert: the certificate is for {ieee}, the stick in "
                  f"--state {args.state} is {stored.ieee}", file=sys.stderr)
            return 2
    if args.verbose == 0:  # what the NCP does is the point of this command
        logging.getLogger("radios.ncp").setLevel(logging.INFO)

    async def main() -> int:
        air = VirtualAir()
        link = None
        if args.air:
            from radios.udp import connect_udp

            assert air_at is not None
            link = await connect_udp(air, *air_at)
        served = None
        if args.air_port is not None:
            from radios.udp import serve_udp

            try:
                served = await serve_udp(air, "127.0.0.1", args.air_port)
            except (OSError, OverflowError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                print(f"sep ncp-emulator: --air-port {args.air_port}: {why}", file=sys.stderr)
                return 1
        emu = await start_emulator(air, host=host, port=port, state_path=args.state,
                                   ieee=ieee, pty=args.pty, tcp=not args.no_tcp,
                                   cbke_engine=SepCbkeEngine(), cbke_data=cbke_data)
        cbke = ", ".join(str(n) for n in (1, 2) if emu.ncp.cbke_data(n) is not None)
        where = [emu.url] if not args.no_tcp else []
        if emu.pty_path:
            where.append(emu.pty_path)
        print(f"NCP emulator {emu.state.ieee} (EZSP v{emu.version}) on {' and '.join(where)}"
              f"; network {'formed' if emu.state.formed else 'not formed'}"
              f"; CBKE suites {cbke or 'none'}"
              f"{' on ' + args.air if args.air else ''}"
              f"{f'; air open at udp://127.0.0.1:{served.port}' if served else ''}"
              "; Ctrl-C stops", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await asyncio.wait_for(stop.wait(), args.duration)
        except TimeoutError:
            pass
        finally:
            await emu.stop()
            if link is not None:
                link.close()
            if served is not None:
                served.close()
        print(f"NCP emulator stopped: {emu.connections} connection(s), "
              f"{emu.ncp.counters.commands} command(s), {emu.ncp.counters.invalid} invalid",
              flush=True)
        return 0

    try:
        return asyncio.run(main())
    except ValueError as exc:  # an unreadable --state file: the message names it and the field
        print(f"sep ncp-emulator: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sep ncp-emulator: --listen {args.listen}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
