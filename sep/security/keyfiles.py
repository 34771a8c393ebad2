"""Key material on disk: a certificate authority, and a device's CBKE credentials.

Formats only: this module encodes files (name → bytes and mode) and reads them back with
errors that name the file; the caller writes them (atomically, see ``sep cert`` and
``sep ota keygen``). JSON files are UTF-8; private keys are hex big-endian scalars. The format
names date from the OTA signer files, which share the CA files.

CA directory (``sep cert ca DIR``, also written by ``sep ota keygen``):

``ca.key``       (mode 0600) ``{"format": "sep-ota-key/1", "role": "ca", "suite": 2,
                 "curve": "sect283k1", "private_key": "<hex>"}``
``ca.pub``       ``{"format": "sep-ota-ca/1", "suite": 2, "curve": "sect283k1",
                 "issuer": "<16 hex digits, as in certificates>", "public_key": "<hex,
                 compressed point>"}``

Device credentials directory (``sep cert issue --out DIR``), one suite:

``device.cert``  the implicit certificate exactly as the device sends it: 48 bytes (suite 1)
                 or 74 bytes (suite 2), raw binary (hex text is read too)
``device.key``   (mode 0600) like ``ca.key`` with ``"role": "device"``
``ca.pub``       the issuing CA's public key (partners must share that CA)
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sep.security.certs import (
    CERTIFICATE_LENGTH,
    SUITE_CURVES,
    CertificateError,
    Credentials,
    generate_key_pair,
    issue,
    parse_certificate,
)
from sep.security.curves import point_from_bytes

CA_KEY = "ca.key"
CA_PUB = "ca.pub"
DEVICE_CERT = "device.cert"
DEVICE_KEY = "device.key"

KEY_FORMAT = "sep-ota-key/1"
CA_FORMAT = "sep-ota-ca/1"

PRIVATE = 0o600
PUBLIC = 0o644

Files = dict[str, tuple[bytes, int]]  # file name -> (content, mode)


class KeyFileError(Exception):
    """A key or certificate file is missing or malformed (the message names it)."""


@dataclass(frozen=True)
class CAKeys:
    suite: int
    issuer: bytes  # 8 bytes as they appear in certificates
    public_key: bytes  # compressed point
    private_key: int | None = None


def generate_ca(suite: int, issuer: bytes | None = None) -> CAKeys:
    if suite not in SUITE_CURVES:
        raise KeyFileError(f"unknown crypto suite {suite}")
    d, q = generate_key_pair(suite)
    issuer = secrets.token_bytes(8) if issuer is None else bytes(issuer)
    if len(issuer) != 8:
        raise KeyFileError("an issuer id is 8 bytes")
    return CAKeys(suite=suite, issuer=issuer, public_key=q, private_key=d)


def issue_credentials(ca: CAKeys, subject: int, **fields: Any) -> Credentials:
    """A device certificate for ``subject`` (64-bit IEEE) and its private key, from ``ca``
    (suite-2 ``fields`` as :func:`sep.security.certs.issue` takes them)."""
    if ca.private_key is None:
        raise KeyFileError(f"issuing a certificate needs the CA private key ({CA_KEY})")
    cert, d = issue(ca.suite, ca.private_key, ca.issuer, subject.to_bytes(8, "big"), **fields)
    return Credentials(suite=ca.suite, certificate=cert, private_key=d,
                       ca_public_key=ca.public_key)


# ------------------------------------------------------------------------------------ encoding


def json_bytes(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def scalar_hex(suite: int, d: int) -> str:
    return d.to_bytes(SUITE_CURVES[suite].scalar_len, "big").hex()


def private_key_file(role: str, suite: int, d: int) -> bytes:
    return json_bytes({"format": KEY_FORMAT, "role": role, "suite": suite,
                  "curve": SUITE_CURVES[suite].name, "private_key": scalar_hex(suite, d)})


def ca_pub_file(ca: CAKeys) -> bytes:
    return json_bytes({"format": CA_FORMAT, "suite": ca.suite, "curve": SUITE_CURVES[ca.suite].name,
                  "issuer": ca.issuer.hex(), "public_key": ca.public_key.hex()})


def ca_files(ca: CAKeys, *, private: bool = True) -> Files:
    files: Files = {CA_PUB: (ca_pub_file(ca), PUBLIC)}
    if private:
        if ca.private_key is None:
            raise KeyFileError("no CA private key to write")
        files[CA_KEY] = (private_key_file("ca", ca.suite, ca.private_key), PRIVATE)
    return files


def credential_files(creds: Credentials, ca: CAKeys) -> Files:
    return {DEVICE_CERT: (creds.certificate, PUBLIC),
            DEVICE_KEY: (private_key_file("device", creds.suite, creds.private_key), PRIVATE),
            CA_PUB: (ca_pub_file(ca), PUBLIC)}


# ------------------------------------------------------------------------------------- reading


def read_json(path: Path, fmt: str) -> dict[str, Any]:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise KeyFileError(f"{path} is not a {fmt} file")
    suite = obj.get("suite")
    if type(suite) is not int or suite not in SUITE_CURVES:  # a dict is unhashable, True == 1
        raise KeyFileError(f"{path}: unknown suite {suite!r}")
    return obj


def hex_field(path: Path, obj: dict[str, Any], name: str, length: int | None = None) -> bytes:
    try:
        value = bytes.fromhex(str(obj[name]))
    except (KeyError, ValueError):
        raise KeyFileError(f"{path}: field {name!r} missing or not hex") from None
    if length is not None and len(value) != length:
        raise KeyFileError(f"{path}: field {name!r} must be {length} bytes")
    return value


def read_private(path: Path, role: str) -> tuple[int, int]:
    """(suite, private key) from a private key file of that role."""
    obj = read_json(path, KEY_FORMAT)
    if obj.get("role") != role:
        raise KeyFileError(f"{path} is not a {role} key")
    suite = int(obj["suite"])
    curve = SUITE_CURVES[suite]
    d = int.from_bytes(hex_field(path, obj, "private_key", curve.scalar_len), "big")
    if not 1 <= d < curve.n:
        raise KeyFileError(f"{path}: private key out of range for {curve.name}")
    return suite, d


def load_ca(directory: Path, *, private: bool = False) -> CAKeys:
    directory = Path(directory)
    path = directory / CA_PUB
    obj = read_json(path, CA_FORMAT)
    suite = int(obj["suite"])
    issuer = hex_field(path, obj, "issuer", 8)
    pub = hex_field(path, obj, "public_key")
    try:
        point_from_bytes(SUITE_CURVES[suite], pub)
    except ValueError as exc:
        raise KeyFileError(f"{path}: public key is not a point on the curve: {exc}") from None
    d = None
    if private:
        key_suite, d = read_private(directory / CA_KEY, "ca")
        if key_suite != suite:
            raise KeyFileError(f"{directory / CA_KEY} and {path} disagree on the suite")
    return CAKeys(suite=suite, issuer=issuer, public_key=pub, private_key=d)


_HEX_TEXT = re.compile(r"(0x)?[0-9a-fA-F:\s]+")


def read_certificate(path: Path) -> bytes:
    """A certificate file: raw binary (48 or 74 bytes) or the same bytes as hex text."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    text = data.decode("latin-1").strip()
    if _HEX_TEXT.fullmatch(text):
        try:
            data = bytes.fromhex(re.sub(r"[\s:]", "", text.removeprefix("0x")))
        except ValueError:
            raise KeyFileError(f"{path}: odd number of hex digits") from None
    try:
        parse_certificate(data)
    except CertificateError as exc:
        raise KeyFileError(f"{path} is not a certificate: {exc}") from None
    return data


def load_credentials(directory: Path) -> Credentials:
    """A device's credentials for one suite, checked: the certificate is from the CA in
    ``ca.pub`` and the private key is the one it binds (KeyFileError naming the file)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise KeyFileError(f"{directory} is not a directory")
    ca = load_ca(directory)
    cert_path = directory / DEVICE_CERT
    cert = read_certificate(cert_path)
    suite, d = read_private(directory / DEVICE_KEY, "device")
    if len(cert) != CERTIFICATE_LENGTH[suite]:
        raise KeyFileError(f"{cert_path} is not a suite {suite} certificate, as "
                           f"{directory / DEVICE_KEY} says")
    if ca.suite != suite:
        raise KeyFileError(f"{directory / CA_PUB} is for suite {ca.suite}, "
                           f"{directory / DEVICE_KEY} for suite {suite}")
    creds = Credentials(suite=suite, certificate=cert, private_key=d,
                        ca_public_key=ca.public_key)
    if creds.issuer != ca.issuer:
        raise KeyFileError(f"{cert_path} was issued by {creds.issuer.hex()}, not by the CA "
                           f"in {directory / CA_PUB} ({ca.issuer.hex()})")
    try:
        creds.verify()
    except CertificateError as exc:
        raise KeyFileError(f"{directory / DEVICE_KEY}: {exc}") from None
    return creds
