"""CCM* as Zigbee NWK/APS security level 5 uses it (ENC-MIC-32): standard AES-CCM with a
13-byte nonce and a 4-byte MIC, from ``cryptography``."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

MIC_LEN = 4


def nonce(source_ieee_le: bytes, frame_counter: int, security_control: int) -> bytes:
    """Source IEEE as on air ‖ frame counter (LE) ‖ security control (level bits = 5)."""
    return bytes(source_ieee_le) + frame_counter.to_bytes(4, "little") + bytes(
        [(security_control & ~0x07) | 0x05])


def encrypt(key: bytes, nonce_: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """ciphertext ‖ MIC"""
    return AESCCM(key, tag_length=MIC_LEN).encrypt(nonce_, plaintext, aad)


def decrypt(key: bytes, nonce_: bytes, ciphertext_and_mic: bytes, aad: bytes) -> bytes | None:
    """The plaintext, or None when the MIC does not verify."""
    try:
        return AESCCM(key, tag_length=MIC_LEN).decrypt(nonce_, ciphertext_and_mic, aad)
    except InvalidTag:
        return None
