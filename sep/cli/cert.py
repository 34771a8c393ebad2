"""``sep cert``: a test certificate authority and the CBKE credentials devices carry.

::

    sep cert ca DIR [--suite 1|2] [--issuer HEX] [--force]
    sep cert issue --ca DIR --ieee EUI64 --out DIR [--suite 1|2] [--valid-from WHEN]
                   [--days N] [--force]
    sep cert show FILE|DIR [--json]

``ca`` writes ``ca.key`` (mode 0600) and ``ca.pub``; the same CA files serve ``sep ota keygen
--ca``. ``issue`` writes a device's credentials for one suite: ``device.cert`` (the implicit
certificate exactly as the device sends it, 48 or 74 bytes), ``device.key`` (mode 0600) and a
copy of ``ca.pub``. ``show`` reads a certificate file (raw, or hex text such as the Certicom
test certificates), a credentials directory (and checks that its key fits the certificate) or
a CA directory.

Exit codes: 0 success, 1 failure (e.g. files exist without --force), 2 usage error or bad
input (a missing or malformed file, named in the one-line error).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from sep.security import keyfiles
from sep.security.certs import (
    NO_EXPIRY,
    SUITE_CURVES,
    CertificateError,
    describe,
    parse_certificate,
    public_key,
)
from sep.security.curves import point_to_bytes

PROG = "sep cert"


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _ieee(text: str) -> int:
    clean = text.strip().lower().removeprefix("0x").replace(":", "").replace("-", "")
    if len(clean) != 16:
        raise argparse.ArgumentTypeError(f"an EUI-64 has 16 hex digits: {text!r}")
    try:
        return int(clean, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None


def _issuer(text: str) -> bytes:
    try:
        value = bytes.fromhex(text.strip().lower().removeprefix("0x").replace(":", ""))
    except ValueError:
        value = b""
    if len(value) != 8:
        raise argparse.ArgumentTypeError("an issuer id is 8 bytes (16 hex digits)")
    return value


def _when(text: str) -> int:
    """Unix seconds, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    if text.strip().isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (Unix seconds or ISO 8601)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _write(directory: Path, files: keyfiles.Files, force: bool) -> list[Path]:
    from sep.firmware.fileio import write_atomic

    existing = [n for n in files if (directory / n).exists()]
    if existing and not force:
        raise FileExistsError(f"refusing to overwrite {', '.join(str(directory / n) for n in existing)} "
                              "(use --force)")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (data, mode) in files.items():
        write_atomic(directory / name, data, mode)
        written.append(directory / name)
    return written


# -------------------------------------------------------------------------------------- ca


def cmd_ca(args: argparse.Namespace) -> int:
    ca = keyfiles.generate_ca(args.suite, args.issuer)
    try:
        written = _write(Path(args.dir), keyfiles.ca_files(ca), args.force)
    except FileExistsError as exc:
        return _fail(1, str(exc))
    except OSError as exc:
        return _fail(1, f"cannot write {args.dir}: {exc}")
    print(f"suite {ca.suite} ({SUITE_CURVES[ca.suite].name}) CA, issuer {ca.issuer.hex()}")
    for path in written:
        print(f"  wrote {path}")
    return 0


# ----------------------------------------------------------------------------------- issue


def cmd_issue(args: argparse.Namespace) -> int:
    try:
        ca = keyfiles.load_ca(Path(args.ca), private=True)
    except keyfiles.KeyFileError as exc:
        return _fail(2, str(exc))
    if args.suite is not None and args.suite != ca.suite:
        return _fail(2, f"the CA in {args.ca} is suite {ca.suite}, not suite {args.suite}")
    fields: dict[str, Any] = {}
    if ca.suite == 2:
        fields["valid_from"] = int(time.time()) if args.valid_from is None else args.valid_from
        fields["valid_for"] = NO_EXPIRY if args.days is None else args.days * 86_400
    elif args.valid_from is not None or args.days is not None:
        return _fail(2, "suite 1 certificates carry no validity period (--valid-from, --days)")
    creds = keyfiles.issue_credentials(ca, args.ieee, **fields)
    try:
        written = _write(Path(args.out), keyfiles.credential_files(creds, ca), args.force)
    except FileExistsError as exc:
        return _fail(1, str(exc))
    except OSError as exc:
        return _fail(1, f"cannot write {args.out}: {exc}")
    print(f"suite {ca.suite} certificate for {_eui64(args.ieee)}, issuer {ca.issuer.hex()}")
    for path in written:
        print(f"  wrote {path}")
    return 0


def _eui64(ieee: int) -> str:
    return ":".join(f"{b:02x}" for b in ieee.to_bytes(8, "big"))


# ------------------------------------------------------------------------------------ show


def _load_for_show(target: Path) -> dict[str, Any]:
    """What ``show`` prints, as a dict (KeyFileError for bad input)."""
    if target.is_dir():
        if (target / keyfiles.DEVICE_CERT).exists():
            return _show_credentials(target)
        if (target / keyfiles.CA_PUB).exists():
            return _show_ca(target)
        raise keyfiles.KeyFileError(f"{target} holds neither {keyfiles.DEVICE_CERT} nor "
                                    f"{keyfiles.CA_PUB}")
    if not target.exists():
        raise keyfiles.KeyFileError(f"{target} does not exist")
    try:
        return {"file": str(target), "kind": "certificate",
                **describe(parse_certificate(keyfiles.read_certificate(target)))}
    except keyfiles.KeyFileError:
        try:  # a ca.pub file?
            return _show_ca(target.parent, target)
        except keyfiles.KeyFileError:
            pass
        raise


def _show_ca(directory: Path, path: Path | None = None) -> dict[str, Any]:
    if path is not None and path.name != keyfiles.CA_PUB:
        keyfiles.read_json(path, keyfiles.CA_FORMAT)  # raises unless it is one
    ca = keyfiles.load_ca(directory)
    return {"file": str(directory / keyfiles.CA_PUB), "kind": "ca", "suite": ca.suite,
            "curve": SUITE_CURVES[ca.suite].name, "issuer": ca.issuer.hex(),
            "issuer_text": _printable(ca.issuer), "public_key": ca.public_key.hex(),
            "private_key_present": (directory / keyfiles.CA_KEY).exists()}


def _show_credentials(directory: Path) -> dict[str, Any]:
    cert_path = directory / keyfiles.DEVICE_CERT
    cert = parse_certificate(keyfiles.read_certificate(cert_path))
    info: dict[str, Any] = {"file": str(cert_path), "kind": "credentials", **describe(cert)}
    creds = keyfiles.load_credentials(directory)  # checks the key against the certificate
    q = public_key(cert, creds.ca_public_key)
    info.update({"public_key": point_to_bytes(creds.curve, q).hex(),
                 "ca_public_key": creds.ca_public_key.hex(), "private_key_matches": True})
    return info


def _printable(data: bytes) -> str | None:
    return data.decode("ascii") if all(0x20 <= b < 0x7F for b in data) else None


def _utc(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print(info: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    if info["kind"] == "ca":
        print(f"{info['file']}: suite {info['suite']} ({info['curve']}) certificate authority")
        issuer = info["issuer"] + (f' ("{info["issuer_text"]}")' if info["issuer_text"] else "")
        rows = [("issuer", issuer), ("public key", info["public_key"]),
                ("private key", "present (ca.key)" if info["private_key_present"] else "absent")]
    else:
        print(f"{info['file']}: suite {info['suite']} ({info['curve']}) implicit certificate, "
              f"{info['length']} bytes")
        issuer = info["issuer"] + (f' ("{info["issuer_text"]}")' if info["issuer_text"] else "")
        rows = [("subject", info["subject"]), ("issuer", issuer)]
        if info["suite"] == 1:
            rows += [("validity", "none (suite 1 certificates carry no validity period)"),
                     ("key usage", "none (suite 1 certificates carry no key usage)"),
                     ("profile data", info["profile_data"])]
        else:
            usage = [n for n, on in (("key agreement", info["key_agreement"]),
                                     ("digital signature", info["digital_signature"])) if on]
            rows += [("type", f"0x{info['type']:02x}" + (" (no extensions)" if info["type"] == 0
                                                          else "")),
                     ("serial", info["serial"]),
                     ("curve id", f"0x{info['curve_id']:02x}" + (" (sect283k1)"
                                                                 if info["curve_id"] == 0x0D
                                                                 else "")),
                     ("hash id", f"0x{info['hash_id']:02x}" + (" (AES-MMO)" if info["hash_id"] == 8
                                                               else "")),
                     ("valid from", _utc(info["valid_from"])),
                     ("valid to", "never expires" if info["valid_to"] is None
                      else _utc(info["valid_to"])),
                     ("key usage", f"0x{info['key_usage']:02x}"
                      + (f" ({', '.join(usage)})" if usage else " (none)"))]
        rows.append(("reconstruction", info["reconstruction_point"]))
        if info["kind"] == "credentials":
            rows += [("public key", info["public_key"] + " (ECQV, with ca.pub)"),
                     ("private key", "matches the certificate")]
    for name, value in rows:
        print(f"  {name:<15}{value}")


def cmd_show(args: argparse.Namespace) -> int:
    try:
        info = _load_for_show(Path(args.target))
    except (keyfiles.KeyFileError, CertificateError) as exc:
        return _fail(2, str(exc))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print(info)
    return 0


# -------------------------------------------------------------------------------- register


def register(subparsers: Any) -> None:
    cert = subparsers.add_parser(
        "cert", help="a test CA and CBKE device certificates: ca, issue, show",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = cert.add_subparsers(dest="cert_command", metavar="ACTION", required=True)

    p = sub.add_parser("ca", help="create a certificate authority in DIR (ca.key, ca.pub)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--suite", type=int, choices=(1, 2), default=2,
                   help="crypto suite: 1 sect163k1, 2 sect283k1 (default 2)")
    p.add_argument("--issuer", type=_issuer, metavar="HEX",
                   help="the CA's 8-byte issuer id as in certificates (default random)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_ca)

    p = sub.add_parser("issue", help="issue a device certificate and key into --out DIR")
    p.add_argument("--ca", required=True, metavar="DIR", help="CA directory (with ca.key)")
    p.add_argument("--ieee", required=True, type=_ieee, metavar="EUI64",
                   help="the device's IEEE address, most significant byte first "
                   "(00:0d:6f:00:00:00:00:01 or 000d6f0000000001)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--suite", type=int, choices=(1, 2), default=None,
                   help="must be the CA's suite (default: the CA's)")
    p.add_argument("--valid-from", type=_when, default=None, metavar="WHEN",
                   help="suite 2: start of validity, Unix seconds or ISO 8601 (default now)")
    p.add_argument("--days", type=_positive, default=None, metavar="N",
                   help="suite 2: valid for N days (default: never expires)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_issue)

    p = sub.add_parser("show", help="describe a certificate, a credentials or a CA directory")
    p.add_argument("target", metavar="FILE|DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)
