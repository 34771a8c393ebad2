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

The CA files (``ca.key``, ``ca.pub``) and the private-key format are those of
:mod:`sep.security.keyfiles`, shared with the CBKE device credentials of ``sep cert``.

A **trust directory** (``--trust DIR``) needs only ``ca.pub`` and ``allowed_signers.txt``; a key
directory is also a trust directory for its own signer. Copy those two files to a device or a
test bench to trust a CA without its private key. Private keys never leave ``*.key`` files.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from pathlib import Path

import zigpy.types as t

from sep.firmware import crypto as _crypto
from sep.firmware.builder import Signer
from sep.firmware.fileio import write_atomic
from sep.firmware.format import SUITES, format_ieee, ieee_from_be, ieee_to_be, parse_ieee
from sep.firmware.verify import TrustedCA, TrustStore
from sep.security import certs, keyfiles
from sep.security.keyfiles import CA_KEY, CA_PUB

SIGNER_KEY = "signer.key"
SIGNER_CERT = "signer.cert"
SIGNER_JSON = "signer.json"
ALLOWED_SIGNERS = "allowed_signers.txt"
KEY_FILES = (CA_KEY, CA_PUB, SIGNER_KEY, SIGNER_CERT, SIGNER_JSON, ALLOWED_SIGNERS)

SIGNER_FORMAT = "sep-ota-signer/1"

#: a key or trust directory is missing, malformed or would be overwritten
KeyMaterialError = keyfiles.KeyFileError


@dataclass(frozen=True)
class CAKeys(keyfiles.CAKeys):
    """The CA of :mod:`sep.security.keyfiles`, as the OTA verifier trusts it."""

    def trusted(self) -> TrustedCA:
        return TrustedCA(suite=self.suite, issuer=self.issuer, public_key=self.public_key)


# --------------------------------------------------------------------------------- generation


def generate_ca(suite: int, issuer: bytes | None = None) -> CAKeys:
    return CAKeys(**dataclasses.asdict(keyfiles.generate_ca(suite, issuer)))


def issue_signer(ca: CAKeys, ieee: t.EUI64 | None = None) -> Signer:
    """A new signer key pair with an implicit certificate issued by ``ca``."""
    if ca.private_key is None:
        raise KeyMaterialError("issuing a certificate needs the CA private key (ca.key)")
    if ieee is None:
        ieee = ieee_from_be(secrets.token_bytes(8))
    cert, d = certs.issue(ca.suite, ca.private_key, ca.issuer, ieee_to_be(ieee))
    return Signer(suite=ca.suite, ieee=ieee, private_key=d, certificate=cert)


def signer_public_key(signer: Signer, ca: CAKeys) -> bytes:
    crypto = _crypto.load()
    point = _crypto.reconstruct_public_key(crypto, signer.suite, signer.certificate, ca.public_key)
    return crypto.point_to_bytes(SUITES[signer.suite], point)


# ------------------------------------------------------------------------------------ files


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
    files = keyfiles.ca_files(ca, private=write_ca_key)
    files[SIGNER_KEY] = (keyfiles.private_key_file("signer", signer.suite, signer.private_key),
                         keyfiles.PRIVATE)
    files[SIGNER_CERT] = (bytes(signer.certificate), keyfiles.PUBLIC)
    files[SIGNER_JSON] = (
        keyfiles.json_bytes(
            {
                "format": SIGNER_FORMAT,
                "suite": signer.suite,
                "ieee": format_ieee(signer.ieee),
                "certificate": signer.certificate.hex(),
                "issuer": ca.issuer.hex(),
                "public_key": signer_public_key(signer, ca).hex(),
            }
        ),
        keyfiles.PUBLIC,
    )
    files[ALLOWED_SIGNERS] = (
        (
            "# IEEE addresses allowed to sign OTA files, one per line (MSB first)\n"
            f"{format_ieee(signer.ieee)}\n"
        ).encode(),
        keyfiles.PUBLIC,
    )
    written = []
    for name in names:
        data, mode = files[name]
        write_atomic(directory / name, data, mode)
        written.append(directory / name)
    return written


def load_ca(directory: Path, *, private: bool = False) -> CAKeys:
    return CAKeys(**dataclasses.asdict(keyfiles.load_ca(directory, private=private)))


def load_signer(directory: Path) -> Signer:
    directory = Path(directory)
    suite, d = keyfiles.read_private(directory / SIGNER_KEY, "signer")
    info = keyfiles.read_json(directory / SIGNER_JSON, SIGNER_FORMAT)
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
