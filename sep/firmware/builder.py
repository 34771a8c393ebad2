"""Building signed OTA files.

Element order written: upgrade image (0x0000), manifest (0xF000), picture (0x0004, optional),
extra manufacturer elements, certificate, image integrity code (0x0003, optional), signature.
That order satisfies every rule of the strict parser: the signature is last and the integrity code
covers everything but the signature.

The header's total size is known before any byte is hashed, so the integrity code and the
signature digest are computed in one streaming AES-MMO pass over the file as it is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import zigpy.types as t

from sep.firmware import crypto as _crypto
from sep.firmware.format import (
    ELEMENT_HEADER_LENGTH,
    SUITES,
    OtaHeader,
    Tag,
    encode_element,
    implied_header_length,
)
from sep.firmware.manifest import MANIFEST_TAG, ImageKind, Manifest


@dataclass(frozen=True)
class Signer:
    """An image signer: IEEE, private key and the implicit certificate issued by our CA."""

    suite: int
    ieee: t.EUI64
    private_key: int
    certificate: bytes

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(f"unknown crypto suite {self.suite}")
        if len(self.certificate) != SUITES[self.suite].certificate_length:
            raise ValueError(
                f"a suite {self.suite} certificate is {SUITES[self.suite].certificate_length} bytes"
            )


def default_build_id(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()[:16]


def build_image(
    payload: bytes,
    *,
    manufacturer_code: int,
    image_type: int,
    file_version: int,
    signer: Signer | None,
    stack_version: int = 0x0002,
    header_string: str | bytes = b"",
    security_credential_version: int | None = None,
    destination: t.EUI64 | None = None,
    hardware_range: tuple[int, int] | None = None,
    kind: ImageKind = ImageKind.APPLICATION,
    build_id: str | None = None,
    notes: str = "",
    manifest: bool = True,
    integrity_code: bool = True,
    picture: bytes | None = None,
    extra_elements: Iterable[tuple[int, bytes]] = (),
    progress: _crypto.Progress | None = None,
) -> bytes:
    """A complete OTA file. ``signer=None`` builds an unsigned file (tests, tools)."""
    if not payload:
        raise ValueError("the payload is empty")
    header = OtaHeader.create(
        manufacturer_code=manufacturer_code,
        image_type=image_type,
        file_version=file_version,
        stack_version=stack_version,
        header_string=header_string,
        security_credential_version=security_credential_version,
        upgrade_file_destination=destination,
        hardware_versions=hardware_range,
    )
    elements: list[tuple[int, bytes]] = [(Tag.UPGRADE_IMAGE, bytes(payload))]
    if manifest:
        m = Manifest.for_payload(
            payload,
            kind=kind,
            version=file_version,
            build_id=default_build_id(payload) if build_id is None else build_id,
            notes=notes,
            hardware_range=hardware_range,
        )
        elements.append((MANIFEST_TAG, m.encode()))
    if picture is not None:
        elements.append((Tag.PICTURE, bytes(picture)))
    elements.extend((tag, bytes(data)) for tag, data in extra_elements)
    suite = None
    if signer is not None:
        suite = SUITES[signer.suite]
        elements.append((suite.certificate_tag, bytes(signer.certificate)))

    hlen = implied_header_length(header.field_control)
    total = hlen + sum(ELEMENT_HEADER_LENGTH + len(d) for _, d in elements)
    if integrity_code:
        total += ELEMENT_HEADER_LENGTH + 16
    if suite is not None:
        total += ELEMENT_HEADER_LENGTH + suite.signature_length
    header = dataclasses.replace(header, header_length=hlen, total_image_size=total)

    out = bytearray(header.serialize())
    for tag, data in elements:
        out += encode_element(tag, data)

    if integrity_code or signer is not None:
        crypto = _crypto.load()  # CryptoUnavailable propagates: we do not build unprotected files
        hasher = crypto.hasher()
        done = 0

        def feed(upto: int) -> None:
            nonlocal done
            view = memoryview(out)
            while done < upto:
                step = min(_crypto.HASH_CHUNK, upto - done)
                hasher.update(bytes(view[done : done + step]))
                done += step
                if progress is not None:
                    progress(done, total)
            view.release()

        if integrity_code:
            feed(len(out))
            out += encode_element(Tag.INTEGRITY_CODE, bytes(hasher.copy().digest()))
        if signer is not None and suite is not None:
            out += suite.signature_tag.to_bytes(2, "little")
            out += suite.signature_length.to_bytes(4, "little")
            out += bytes(signer.ieee.serialize())
            feed(len(out))
            digest = bytes(hasher.copy().digest())
            curve = crypto.curve(suite)
            r, s = crypto.ecdsa.sign(curve, signer.private_key, digest)
            n = suite.scalar_length
            out += int(r).to_bytes(n, "big") + int(s).to_bytes(n, "big")
    assert len(out) == total
    return bytes(out)
