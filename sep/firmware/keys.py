"""Key material for signing and verifying OTA files: a test CA, signers, trust directories.

Key directory (written by ``sep ota keygen DIR``; all text files are UTF-8 JSON unless said):

``ca.key``               (mode 0600) ``{"format": "sep-ota-key/1", "role": "ca", "suite": 1,
                         "curve": "sect163k1", "private_key": "<hex, big-endian scalar>"}``
                         -- only when the CA was created here (not with ``--ca``)
``ca.pub``               ``{"format": "sep-ota-ca/1", "suite": 1, "curve": "sect163k1",
                         "issuer": "<16 hex digits, as in certificates>",
                         "public_key": "<hex, compressed point>"}``
``signer.key``           (mode 0600) like ``ca.key`` with ``"role": "signer"``
``signer.cert``          the signer's implicit (ECQV) certificate, raw binary: 48 bytes
                         (suite 1) or 74 bytes (suite 2), issued by the CA
``signer.json``          ``{"format": "sep-ota-signer/1", "suite": 1, "ieee": "00:11:...",
                         "certificate": "<hex>", "issuer": "<hex>", "public_key": "<hex>"}``
``allowed_signers.txt``  the allow-list: one IEEE address per line, most significant byte
                         first (``00:0d:6f:00:00:00:00:01`` or ``000d6f0000000001``); ``#``
                         starts a comment; blank lines are ignored

A **trust directory** (``--trust DIR``) needs only ``ca.pub`` and ``allowed_signers.txt``; a key
directory is also a trust directory for its own signer. Copy those two files to a device or a
test bench to trust a CA without its private key. Private keys never leave ``*.key`` files.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zigpy.types as t

from sep.firmware import crypto as _crypto
from sep.firmware.builder import Signer
from sep.firmware.fileio import write_atomic
from sep.firmware.format import SUITES, format_ieee, ieee_from_be, ieee_to_be, parse_ieee
from sep.firmware.verify import TrustedCA, TrustStore

CA_KEY = "ca.key"
CA_PUB = "ca.pub"
SIGNER_KEY = "signer.key"
SIGNER_CERT = "signer.cert"
SIGNER_JSON = "signer.json"
ALLOWED_SIGNERS = "allowed_signers.txt"
KEY_FILES = (CA_KEY, CA_PUB, SIGNER_KEY, SIGNER_CERT, SIGNER_JSON, ALLOWED_SIGNERS)

KEY_FORMAT = "sep-ota-key/1"
CA_FORMAT = "sep-ota-ca/1"
SIGNER_FORMAT = "sep-ota-signer/1"


class KeyMaterialError(Exception):
    """A key or trust directory is missing, malformed or would be overwritten."""


@dataclass(frozen=True)
class CAKeys:
    suite: int
    issuer: bytes  # 8 bytes as they appear in certificates
    public_key: bytes  # compressed point
    private_key: int | None = None

    def trusted(self) -> TrustedCA:
        return TrustedCA(suite=self.suite, issuer=self.issuer, public_key=self.public_key)


# --------------------------------------------------------------------------------- generation


def generate_ca(suite: int, issuer: bytes | None = None) -> CAKeys:
    crypto = _crypto.load()
    s = SUITES[suite]
    curve = crypto.curve(s)
    d = crypto.ecdsa.generate_private_key(curve)
    q = crypto.ecdsa.public_key(curve, d)
    return CAKeys(
        suite=suite,
        issuer=secrets.token_bytes(8) if issuer is None else bytes(issuer),
        public_key=crypto.point_to_bytes(s, q),
        private_key=d,
    )


def issue_signer(ca: CAKeys, ieee: t.EUI64 | None = None) -> Signer:
    """A new signer key pair with an implicit certificate issued by ``ca``."""
    if ca.private_key is None:
        raise KeyMaterialError("issuing a certificate needs the CA private key (ca.key)")
    crypto = _crypto.load()
    if ieee is None:
        ieee = ieee_from_be(secrets.token_bytes(8))
    cert, d = _issue(crypto, ca, ieee_to_be(ieee))
    return Signer(suite=ca.suite, ieee=ieee, private_key=d, certificate=cert)


def _issue(crypto: _crypto.Crypto, ca: CAKeys, subject: bytes) -> tuple[bytes, int]:
    """ECQV issuance: (certificate bytes, the subject's private key)."""
    assert ca.private_key is not None
    curve = crypto.curve(SUITES[ca.suite])
    k = crypto.ecdsa.generate_private_key(curve)  # the subject's request key
    request = crypto.ecdsa.public_key(curve, k)
    cert, r = crypto.ecqv.issue_certificate(curve, ca.private_key, request, subject=subject,
                                            issuer=ca.issuer)
    return cert.to_bytes(), crypto.ecqv.private_key_from_reconstruction(cert, r, k)


def signer_public_key(signer: Signer, ca: CAKeys) -> bytes:
    crypto = _crypto.load()
    point = _crypto.reconstruct_public_key(crypto, signer.suite, signer.certificate, ca.public_key)
    return crypto.point_to_bytes(SUITES[signer.suite], point)


# ------------------------------------------------------------------------------------ files


def _json(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def write_key_dir(
    directory: Path,
    ca: CAKeys,
    signer: Signer,
    *,
    force: bool = False,
    write_ca_key: bool = True,
) -> list[Path]:
    """Write a CA and a signer into ``directory``; refuse to overwrite unless ``force``."""
    directory = Path(directory)
    names = [n for n in KEY_FILES if write_ca_key or n != CA_KEY]
    existing = [directory / n for n in names if (directory / n).exists()]
    if existing and not force:
        raise KeyMaterialError(
            "refusing to overwrite " + ", ".join(str(p.name) for p in existing) + " (use --force)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    curve = SUITES[ca.suite].curve_name
    files: dict[str, tuple[bytes, int]] = {
        CA_PUB: (
            _json(
                {
                    "format": CA_FORMAT,
                    "suite": ca.suite,
                    "curve": curve,
                    "issuer": ca.issuer.hex(),
                    "public_key": ca.public_key.hex(),
                }
            ),
            0o644,
        ),
        SIGNER_KEY: (
            _json(
                {
                    "format": KEY_FORMAT,
                    "role": "signer",
                    "suite": signer.suite,
                    "curve": curve,
                    "private_key": _scalar_hex(signer.suite, signer.private_key),
                }
            ),
            0o600,
        ),
        SIGNER_CERT: (bytes(signer.certificate), 0o644),
        SIGNER_JSON: (
            _json(
                {
                    "format": SIGNER_FORMAT,
                    "suite": signer.suite,
                    "ieee": format_ieee(signer.ieee),
                    "certificate": signer.certificate.hex(),
                    "issuer": ca.issuer.hex(),
                    "public_key": signer_public_key(signer, ca).hex(),
                }
            ),
            0o644,
        ),
        ALLOWED_SIGNERS: (
            (
                "# IEEE addresses allowed to sign OTA files, one per line (MSB first)\n"
                f"{format_ieee(signer.ieee)}\n"
            ).encode(),
            0o644,
        ),
    }
    if write_ca_key:
        if ca.private_key is None:
            raise KeyMaterialError("no CA private key to write")
        files[CA_KEY] = (
            _json(
                {
                    "format": KEY_FORMAT,
                    "role": "ca",
                    "suite": ca.suite,
                    "curve": curve,
                    "private_key": _scalar_hex(ca.suite, ca.private_key),
                }
            ),
            0o600,
        )
    written = []
    for name in names:
        data, mode = files[name]
        write_atomic(directory / name, data, mode)
        written.append(directory / name)
    return written


def _scalar_hex(suite: int, d: int) -> str:
    return d.to_bytes(SUITES[suite].scalar_length, "big").hex()


def _read_json(path: Path, fmt: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyMaterialError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise KeyMaterialError(f"{path}: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise KeyMaterialError(f"{path} is not a {fmt} file")
    suite = obj.get("suite")
    if type(suite) is not int or suite not in SUITES:
        raise KeyMaterialError(f"{path}: unknown suite {suite!r}")
    return obj


def _hex_field(path: Path, obj: dict[str, Any], name: str, length: int | None = None) -> bytes:
    try:
        value = bytes.fromhex(str(obj[name]))
    except (KeyError, ValueError):
        raise KeyMaterialError(f"{path}: field {name!r} missing or not hex") from None
    if length is not None and len(value) != length:
        raise KeyMaterialError(f"{path}: field {name!r} must be {length} bytes")
    return value


def _read_private(path: Path, role: str) -> tuple[int, int]:
    obj = _read_json(path, KEY_FORMAT)
    if obj.get("role") != role:
        raise KeyMaterialError(f"{path} is not a {role} key")
    suite = int(obj["suite"])
    d = int.from_bytes(_hex_field(path, obj, "private_key", SUITES[suite].scalar_length), "big")
    return suite, d


def load_ca(directory: Path, *, private: bool = False) -> CAKeys:
    directory = Path(directory)
    path = directory / CA_PUB
    obj = _read_json(path, CA_FORMAT)
    suite = int(obj["suite"])
    issuer = _hex_field(path, obj, "issuer", 8)
    pub = _hex_field(path, obj, "public_key")
    try:
        crypto = _crypto.load()
        crypto.point_from_bytes(SUITES[suite], pub)
    except _crypto.CryptoUnavailable:
        pass  # checked again, and rejected, at verification time
    except Exception as exc:
        raise KeyMaterialError(f"{path}: public key is not a point on the curve: {exc}") from None
    d = None
    if private:
        key_suite, d = _read_private(directory / CA_KEY, "ca")
        if key_suite != suite:
            raise KeyMaterialError(f"{directory / CA_KEY} and {path} disagree on the suite")
    return CAKeys(suite=suite, issuer=issuer, public_key=pub, private_key=d)


def load_signer(directory: Path) -> Signer:
    directory = Path(directory)
    suite, d = _read_private(directory / SIGNER_KEY, "signer")
    info = _read_json(directory / SIGNER_JSON, SIGNER_FORMAT)
    try:
        cert = (directory / SIGNER_CERT).read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"{directory / SIGNER_CERT}: {exc}") from None
    try:
        ieee = parse_ieee(str(info["ieee"]))
    except (KeyError, ValueError):
        raise KeyMaterialError(f"{directory / SIGNER_JSON}: bad or missing 'ieee'") from None
    if int(info["suite"]) != suite:
        raise KeyMaterialError(f"{directory}: signer.key and signer.json disagree on the suite")
    try:
        return Signer(suite=suite, ieee=ieee, private_key=d, certificate=cert)
    except ValueError as exc:
        raise KeyMaterialError(f"{directory / SIGNER_CERT}: {exc}") from None


def read_allow_list(path: Path) -> frozenset[t.EUI64]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyMaterialError(f"{path} does not exist (the signer allow-list)") from None
    except OSError as exc:
        raise KeyMaterialError(f"{path}: {exc}") from None
    out = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            out.add(parse_ieee(line))
        except ValueError as exc:
            raise KeyMaterialError(f"{path}:{number}: {exc}") from None
    return frozenset(out)


def load_trust(directory: Path) -> TrustStore:
    """A trust store from a trust directory (``ca.pub`` + ``allowed_signers.txt``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise KeyMaterialError(f"{directory} is not a directory")
    ca = load_ca(directory)
    return TrustStore.of(ca.trusted(), allowed_signers=read_allow_list(directory / ALLOWED_SIGNERS))


def load_trust_dirs(directories: list[Path]) -> TrustStore:
    stores = [load_trust(d) for d in directories]
    store = stores[0]
    for other in stores[1:]:
        try:
            store = store.merged(other)
        except ValueError as exc:
            raise KeyMaterialError(str(exc)) from None
    return store
