"""Small JSON records in files that carry their own checksum (identity, download, boot).

A record is a JSON object plus the field ``crc32``: the CRC-32 (ISO-HDLC, as zlib) of the
canonical JSON of the other fields (keys sorted, no spaces), as 8 hex digits. Rot in the
file — a flipped bit, a torn write that still parses — is detected and the record is
not used. A file without the field was written by a version before checksums: it is
accepted as it is and gets its checksum the next time it is written.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

CRC_FIELD = "crc32"


class CorruptFile(ValueError):
    """A record that fails its checksum or does not parse; the message names the file."""


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def seal(doc: dict[str, Any]) -> bytes:
    """The file's bytes: ``doc`` with its checksum."""
    body = {k: v for k, v in doc.items() if k != CRC_FIELD}
    return json.dumps({**body, CRC_FIELD: f"{zlib.crc32(canonical(body)):08x}"},
                      sort_keys=True).encode()


def unseal(data: bytes | str, name: str = "record") -> dict[str, Any]:
    """The record without its checksum field; CorruptFile when it does not parse or the
    checksum does not match."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptFile(f"{name} is not readable JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CorruptFile(f"{name} is not a JSON object")
    stored = doc.pop(CRC_FIELD, None)
    if stored is None:
        return doc  # written before records had checksums
    want = f"{zlib.crc32(canonical(doc)):08x}"
    if not isinstance(stored, str) or stored.lower() != want:
        raise CorruptFile(f"{name} fails its checksum (crc32 {stored}, content {want})")
    return doc
