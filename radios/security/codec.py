"""Sealing and opening NWK and APS frames with CCM* at security level 5 (sans-IO).

The header is authenticated, the payload encrypted; the auxiliary header goes on the air
with its level bits 0 and is authenticated with them set back to 5 (Zigbee spec 4.3.1.1
and 4.4.1.1; the frame in ``shared/vectors`` shows both). The nonce is the source IEEE
as on air, the frame counter and the security control byte (``radios.crypto.nonce``).
"""

from __future__ import annotations

from radios import crypto
from radios.nwk import AuxHeader

LEVEL = 5
MIC_LEN = crypto.MIC_LEN


def seal(header: bytes, aux: AuxHeader, payload: bytes, key: bytes, source_ieee: int) -> bytes:
    """header ‖ aux (level 0) ‖ encrypted payload ‖ MIC."""
    aad = header + aux.encode(LEVEL)
    nonce = crypto.nonce(source_ieee.to_bytes(8, "little"), aux.counter, aux.control)
    return header + aux.encode(0) + crypto.encrypt(key, nonce, payload, aad)


def open_sealed(header: bytes, aux: AuxHeader, body: bytes, key: bytes,
                source_ieee: int) -> bytes | None:
    """The payload of a sealed frame (``body`` = ciphertext ‖ MIC), or None when the MIC
    does not verify."""
    if len(body) < MIC_LEN:
        return None
    aad = header + aux.encode(LEVEL)
    nonce = crypto.nonce(source_ieee.to_bytes(8, "little"), aux.counter, aux.control)
    return crypto.decrypt(key, nonce, body, aad)
