"""``sep ota``: key generation, building, inspecting and verifying OTA files.

::

    sep ota keygen DIR [--suite 1|2] [--force] [--ca CA_DIR] [--signer-ieee IEEE]
    sep ota build (--payload FILE) --manufacturer N --image-type N --file-version N
                  --signer DIR --out FILE [--notes TEXT] [--kind application|metrology]
                  [--hw-min N --hw-max N] [--stack-version N] [--header-string TEXT]
                  [--build-id TEXT] [--credential-version N] [--destination IEEE]
                  [--no-integrity-code]
    sep ota inspect FILE [--json]
    sep ota verify --trust DIR [--trust DIR ...] FILE... [--json]

Numbers take decimal or 0x-hex. Exit codes: 0 success / all files valid, 1 failure / any file
invalid, 2 usage error (argparse's convention; also unusable key or trust directories).
Files of 1 MiB or more show a progress bar on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sep.firmware import crypto as _crypto
from sep.firmware.errors import ImageError, Reason
from sep.firmware.format import SUITES, format_ieee, ieee_from_be, parse_ieee

PROGRESS_THRESHOLD = 1024 * 1024


# ------------------------------------------------------------------------------- arguments


def _number(bits: int) -> Callable[[str], int]:
    limit = (1 << bits) - 1

    def parse(text: str) -> int:
        s = text.strip().lower()
        try:
            value = int(s[2:], 16) if s.startswith("0x") else int(s, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0 <= value <= limit:
            raise argparse.ArgumentTypeError(f"{text} is outside 0..0x{limit:X}")
        return value

    parse.__name__ = f"uint{bits}"
    return parse


u8, u16, u32 = _number(8), _number(16), _number(32)


def _ieee(text: str) -> Any:
    try:
        return parse_ieee(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _issuer(text: str) -> bytes:
    try:
        value = bytes.fromhex(text.strip().lower().removeprefix("0x").replace(":", ""))
    except ValueError:
        value = b""
    if len(value) != 8:
        raise argparse.ArgumentTypeError("an issuer id is 8 bytes (16 hex digits)")
    return value


# Where the upgrade image payload comes from. Each entry is (argparse dest, provider); exactly one
# of the options is given (a required mutually exclusive group). A new source (e.g. ``--app``,
# building the payload from an application) adds an option to the group and a provider here.
PayloadProvider = Callable[[argparse.Namespace], bytes]


def _payload_from_file(args: argparse.Namespace) -> bytes:
    return Path(args.payload).read_bytes()


def _payload_from_app(args: argparse.Namespace) -> bytes:
    from sep.firmware.appimage import build_app_payload

    return build_app_payload()


PAYLOAD_PROVIDERS: dict[str, PayloadProvider] = {"payload": _payload_from_file,
                                                 "app": _payload_from_app}


def resolve_payload(args: argparse.Namespace) -> bytes:
    for dest, provider in PAYLOAD_PROVIDERS.items():
        if getattr(args, dest, None) not in (None, False):
            return provider(args)
    raise ValueError("no payload source given")


# -------------------------------------------------------------------------------- progress


@contextmanager
def _progress(total: int, label: str) -> Iterator[_crypto.Progress | None]:
    """A rich progress bar on stderr for big files when stderr is a terminal, else nothing."""
    if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, _total: int) -> None:
            bar.update(task, completed=done)

        yield update


# --------------------------------------------------------------------------------- keygen


def cmd_keygen(args: argparse.Namespace) -> int:
    from sep.firmware import keys

    directory = Path(args.dir)
    try:
        if args.ca is not None:
            ca = keys.load_ca(Path(args.ca), private=True)
            if args.suite is not None and args.suite != ca.suite:
                print(f"sep ota keygen: the CA in {args.ca} is suite {ca.suite}", file=sys.stderr)
                return 2
        else:
            ca = keys.generate_ca(args.suite or 2, issuer=args.ca_issuer)
        signer = keys.issue_signer(ca, args.signer_ieee)
        written = keys.write_key_dir(
            directory, ca, signer, force=args.force, write_ca_key=args.ca is None
        )
    except keys.KeyMaterialError as exc:
        print(f"sep ota keygen: {exc}", file=sys.stderr)
        return 1
    except _crypto.CryptoUnavailable as exc:
        print(f"sep ota keygen: crypto unavailable: {exc}", file=sys.stderr)
        return 1
    print(
        f"suite {ca.suite} ({SUITES[ca.suite].curve_name}): CA issuer {ca.issuer.hex()}, "
        f"signer {format_ieee(signer.ieee)}"
    )
    for path in written:
        print(f"  wrote {path}")
    return 0


# ---------------------------------------------------------------------------------- build


def cmd_build(args: argparse.Namespace) -> int:
    from sep.firmware import keys
    from sep.firmware.builder import build_image
    from sep.firmware.manifest import ImageKind

    if (args.hw_min is None) != (args.hw_max is None):
        print("sep ota build: give both --hw-min and --hw-max, or neither", file=sys.stderr)
        return 2
    if args.app:
        from sep.firmware.appimage import APP_MANUFACTURER_CODE
        from sep.firmware.policy import APPLICATION_IMAGE_TYPE

        if args.manufacturer is None:
            args.manufacturer = APP_MANUFACTURER_CODE
        if args.image_type is None:
            args.image_type = APPLICATION_IMAGE_TYPE
    elif args.manufacturer is None or args.image_type is None:
        print("sep ota build: --payload needs --manufacturer and --image-type", file=sys.stderr)
        return 2
    hw = None if args.hw_min is None else (args.hw_min, args.hw_max)
    if hw is not None and hw[0] > hw[1]:
        print("sep ota build: --hw-min is greater than --hw-max", file=sys.stderr)
        return 2
    try:
        payload = resolve_payload(args)
    except OSError as exc:
        print(f"sep ota build: cannot read the payload: {exc}", file=sys.stderr)
        return 1
    if not payload:
        print("sep ota build: the payload is empty", file=sys.stderr)
        return 1
    try:
        signer = keys.load_signer(Path(args.signer))
    except keys.KeyMaterialError as exc:
        print(f"sep ota build: {exc}", file=sys.stderr)
        return 2
    try:
        with _progress(len(payload), "signing") as progress:
            data = build_image(
                payload,
                manufacturer_code=args.manufacturer,
                image_type=args.image_type,
                file_version=args.file_version,
                signer=signer,
                stack_version=args.stack_version,
                header_string=args.header_string,
                security_credential_version=args.credential_version,
                destination=args.destination,
                hardware_range=hw,
                kind=ImageKind.from_name(args.kind),
                build_id=args.build_id,
                notes=args.notes,
                integrity_code=not args.no_integrity_code,
                progress=progress,
            )
    except ValueError as exc:
        print(f"sep ota build: {exc}", file=sys.stderr)
        return 1
    except _crypto.CryptoUnavailable as exc:
        print(f"sep ota build: crypto unavailable: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    try:
        keys.write_atomic(out, data, 0o644)
    except OSError as exc:
        print(f"sep ota build: cannot write {out}: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {out}: {len(data)} bytes, manufacturer 0x{args.manufacturer:04X}, image type "
        f"0x{args.image_type:04X}, file version 0x{args.file_version:08X}, suite {signer.suite}, "
        f"signer {format_ieee(signer.ieee)}"
    )
    return 0


# -------------------------------------------------------------------------------- inspect


def describe(data: bytes) -> dict[str, Any]:
    """Everything ``inspect`` shows, as a JSON-able dict. Raises ImageError for a bad file."""
    from sep.firmware.format import parse_image
    from sep.firmware.manifest import read_manifest

    image = parse_image(data, allow_unsigned=True)
    out: dict[str, Any] = {
        "size": len(data),
        "header": image.header.to_dict(),
        "elements": [
            {"tag": f"0x{e.tag:04X}", "name": e.name, "offset": e.offset, "length": e.length}
            for e in image.elements
        ],
    }
    try:
        manifest = read_manifest(image)
    except ImageError as exc:
        out["manifest"] = {"error": exc.to_dict()}
    else:
        out["manifest"] = None if manifest is None else manifest.to_dict()
    sig = image.signature
    if sig is None:
        out["signature"] = None
    else:
        n = sig.suite.scalar_length
        out["signature"] = {
            "suite": sig.suite.number,
            "curve": sig.suite.curve_name,
            "signer": format_ieee(sig.signer),
            "r": sig.r.to_bytes(n, "big").hex(),
            "s": sig.s.to_bytes(n, "big").hex(),
        }
        out["certificate"] = _describe_certificate(sig.suite.number, image.certificate or b"")
    return out


def _describe_certificate(suite: int, cert: bytes) -> dict[str, Any]:
    info: dict[str, Any] = {"hex": cert.hex()}
    try:
        crypto = _crypto.load()
        parsed = crypto.certificate_class(SUITES[suite]).from_bytes(cert)
        info["subject"] = format_ieee(ieee_from_be(bytes(parsed.subject)))
        info["issuer"] = bytes(parsed.issuer).hex()
    except Exception as exc:  # informational only: inspect does not verify
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _print_description(path: str, d: dict[str, Any]) -> None:
    print(f"{path}: {d['size']} bytes")
    print("header:")
    for key, value in d["header"].items():
        print(f"  {key:28} {value}")
    print("elements:")
    for e in d["elements"]:
        print(f"  {e['tag']} {e['name']:20} offset {e['offset']:>8}  length {e['length']:>8}")
    m = d["manifest"]
    print("manifest:" + (" none" if m is None else ""))
    for key, value in (m or {}).items():
        print(f"  {key:28} {value}")
    s = d["signature"]
    if s is None:
        print("signature: none (unsigned)")
    else:
        print(f"signature: suite {s['suite']} ({s['curve']}), signer {s['signer']}")
        c = d["certificate"]
        if "subject" in c:
            print(f"certificate: subject {c['subject']}, issuer {c['issuer']}")
        else:
            print(f"certificate: {c['hex']} ({c.get('error', '')})")


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"sep ota inspect: {exc}", file=sys.stderr)
        return 1
    try:
        d = describe(data)
    except ImageError as exc:
        if args.json:
            print(json.dumps({"file": args.file, "error": exc.to_dict()}))
        else:
            print(f"{args.file}: {exc.reason}: {exc.message}")
        return 1
    if args.json:
        print(json.dumps({"file": args.file, **d}, indent=2))
    else:
        _print_description(args.file, d)
    return 0


# --------------------------------------------------------------------------------- verify


def cmd_verify(args: argparse.Namespace) -> int:
    from sep.firmware import keys
    from sep.firmware.verify import verify_image

    try:
        trust = keys.load_trust_dirs([Path(d) for d in args.trust])
    except keys.KeyMaterialError as exc:
        print(f"sep ota verify: {exc}", file=sys.stderr)
        return 2
    results = []
    for name in args.files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            results.append(
                {"file": name, "valid": False, "errors": [ImageError(Reason.UNREADABLE, str(exc))]}
            )
            continue
        with _progress(len(data), f"verifying {name}") as progress:
            result = verify_image(data, trust, collect_all=True, progress=progress)
        entry: dict[str, Any] = {"file": name, "valid": result.valid, "errors": result.errors}
        if result.valid and result.image is not None:
            sig = result.image.signature
            assert sig is not None
            entry["summary"] = (
                f"suite {sig.suite.number}, signer {format_ieee(sig.signer)}, "
                f"file version 0x{result.image.header.file_version:08X}"
            )
        results.append(entry)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "file": r["file"],
                        "valid": r["valid"],
                        "errors": [e.to_dict() for e in r["errors"]],
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        for r in results:
            if r["valid"]:
                print(f"{r['file']}: OK ({r['summary']})")
            else:
                detail = "; ".join(f"{e.reason}: {e.message}" for e in r["errors"])
                print(f"{r['file']}: INVALID: {detail}")
    return 0 if all(r["valid"] for r in results) else 1


# ------------------------------------------------------------------------------- register


def register(subparsers: Any) -> None:
    ota = subparsers.add_parser(
        "ota",
        help="OTA firmware files: keys, build, inspect, verify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ota.add_subparsers(dest="ota_command", metavar="ACTION", required=True)

    p = sub.add_parser("keygen", help="write a test CA and a signer into DIR")
    p.add_argument("dir", metavar="DIR")
    p.add_argument(
        "--suite", type=int, choices=(1, 2), default=None, help="crypto suite (default 2: sect283k1)"
    )
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.add_argument("--ca", metavar="CA_DIR", help="issue the signer from the CA in CA_DIR")
    p.add_argument("--ca-issuer", type=_issuer, metavar="HEX", help="new CA's 8-byte issuer id")
    p.add_argument("--signer-ieee", type=_ieee, metavar="IEEE", help="signer IEEE (default random)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("build", help="build a signed OTA file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--payload", metavar="FILE", help="the upgrade image payload")
    src.add_argument("--app", action="store_true",
                     help="package this application itself (a zipapp) as the payload, with "
                     "the manufacturer code and image type the meter expects")
    p.add_argument("--manufacturer", type=u16, default=None, metavar="N",
                   help="manufacturer code (required with --payload)")
    p.add_argument("--image-type", type=u16, default=None, metavar="N",
                   help="image type (required with --payload)")
    p.add_argument("--file-version", type=u32, required=True, metavar="N")
    p.add_argument("--signer", required=True, metavar="DIR", help="key directory of the signer")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--notes", default="", metavar="TEXT", help="release notes (manifest)")
    p.add_argument("--kind", choices=("application", "metrology"), default="application")
    p.add_argument("--hw-min", type=u16, metavar="N")
    p.add_argument("--hw-max", type=u16, metavar="N")
    p.add_argument("--stack-version", type=u16, default=0x0002, metavar="N")
    p.add_argument("--header-string", default="", metavar="TEXT", help="up to 32 bytes")
    p.add_argument("--build-id", default=None, metavar="TEXT", help="default: payload SHA-256")
    p.add_argument("--credential-version", type=u8, default=None, metavar="N")
    p.add_argument("--destination", type=_ieee, default=None, metavar="IEEE")
    p.add_argument("--no-integrity-code", action="store_true")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect", help="show an OTA file's header, elements, manifest, signer")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("verify", help="verify OTA files against trusted key material")
    p.add_argument("--trust", action="append", required=True, metavar="DIR")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)
