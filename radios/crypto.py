"""Zigbee PRO cryptographic primitives: AES-MMO, HMAC-AES-MMO, CCM* (security level 5),
install codes and the derived keys (Zigbee spec 05-3474 B.1, B.6, 4.5.3; BDB 10.1).

The lower layer of the stack: the radio's NWK/APS security (``radios/security``) and
the Smart Energy maths above it (``sep/security``: ECQV, ECMQV) both use these.

AES-MMO (the Matyas-Meyer-Oseas hash on AES-128): H0 = 0; Hj = AES(key=Hj-1, Mj) XOR Mj
over 16-byte blocks of the padded message. Padding: 0x80, zeros, then the bit length --
16 bits big-endian when the message is shorter than 8192 bytes (pad to 14 mod 16), else
32 bits big-endian followed by two zero bytes (pad to 10 mod 16). Many ports get the long
form wrong; OTA images always use it.

CCM* at level 5 (ENC-MIC-32) is standard AES-CCM with a 13-byte nonce and a 4-byte MIC,
from ``cryptography``; the nonce is source IEEE (as on air) || frame counter (LE) ||
security control with the level bits set back to 5.

An install code is 6, 8, 12 or 16 bytes followed by its CRC-16/X-25 (little-endian); the
link key is AES-MMO of the whole code including the CRC.
"""

from __future__ import annotations

import functools

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

MIC_LEN = 4
CODE_LENGTHS = (6, 8, 12, 16)

BLOCK = 16
_LONG = 8192  # bytes; from here on the 32-bit length form


def _aes(key: bytes, block: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(block)


def _compress(h: bytes, block: bytes) -> bytes:
    e = _aes(h, block)
    return (int.from_bytes(e, "big") ^ int.from_bytes(block, "big")).to_bytes(16, "big")


def padding(length: int) -> bytes:
    """The padding appended to a message of ``length`` bytes."""
    bits = 8 * length
    if length < _LONG:
        zeros = (14 - (length + 1)) % 16
        return b"\x80" + bytes(zeros) + bits.to_bytes(2, "big")
    zeros = (10 - (length + 1)) % 16
    return b"\x80" + bytes(zeros) + bits.to_bytes(4, "big") + b"\x00\x00"


class AesMmo:
    """Incremental AES-MMO (``update``/``digest``/``copy``), for images of any size."""

    digest_size = 16

    def __init__(self, data: bytes = b"") -> None:
        self._h = bytes(16)
        self._buf = b""
        self._length = 0
        if data:
            self.update(data)

    def update(self, data: bytes) -> None:
        data = bytes(data)
        self._length += len(data)
        buf = self._buf + data
        full = len(buf) - len(buf) % BLOCK
        h = self._h
        for i in range(0, full, BLOCK):
            h = _compress(h, buf[i:i + BLOCK])
        self._h = h
        self._buf = buf[full:]

    def copy(self) -> AesMmo:
        other = AesMmo()
        other._h, other._buf, other._length = self._h, self._buf, self._length
        return other

    def digest(self) -> bytes:
        tail = self._buf + padding(self._length)
        h = self._h
        for i in range(0, len(tail), BLOCK):
            h = _compress(h, tail[i:i + BLOCK])
        return h

    def hexdigest(self) -> str:
        return self.digest().hex()


def aes_mmo(data: bytes) -> bytes:
    return AesMmo(data).digest()


def hmac_aes_mmo(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) with AES-MMO and a 16-byte block, as Zigbee's CBKE uses it."""
    if len(key) > BLOCK:
        key = aes_mmo(key)
    key = key.ljust(BLOCK, b"\x00")
    ipad = bytes(b ^ 0x36 for b in key)
    opad = bytes(b ^ 0x5C for b in key)
    return aes_mmo(opad + aes_mmo(ipad + data))


# -- CCM* ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _ccm(key: bytes) -> AESCCM:
    return AESCCM(key, tag_length=MIC_LEN)


def nonce(source_ieee_le: bytes, frame_counter: int, security_control: int) -> bytes:
    """Source IEEE as on air ‖ frame counter (LE) ‖ security control (level bits = 5)."""
    return bytes(source_ieee_le) + frame_counter.to_bytes(4, "little") + bytes(
        [(security_control & ~0x07) | 0x05])


def encrypt(key: bytes, nonce_: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """ciphertext ‖ MIC"""
    return _ccm(bytes(key)).encrypt(nonce_, plaintext, aad)


def decrypt(key: bytes, nonce_: bytes, ciphertext_and_mic: bytes, aad: bytes) -> bytes | None:
    """The plaintext, or None when the MIC does not verify."""
    try:
        return _ccm(bytes(key)).decrypt(nonce_, ciphertext_and_mic, aad)
    except InvalidTag:
        return None


# -- install codes ---------------------------------------------------------------------------


class InstallCodeError(ValueError):
    pass


def crc16_x25(data: bytes) -> int:
    """CRC-16/X-25: reflected 0x1021 (0x8408), init 0xFFFF, final XOR 0xFFFF."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def link_key_from_install_code(code: bytes) -> bytes:
    code = bytes(code)
    if len(code) - 2 not in CODE_LENGTHS:
        raise InstallCodeError(
            f"install code must be 6, 8, 12 or 16 bytes plus a 2-byte CRC, got {len(code)} bytes")
    want = crc16_x25(code[:-2])
    got = int.from_bytes(code[-2:], "little")
    if want != got:
        raise InstallCodeError(f"install code CRC is 0x{got:04X}, expected 0x{want:04X}")
    return aes_mmo(code)


def make_install_code(length: int = 16) -> bytes:
    """A random install code of ``length`` bytes with its CRC appended."""
    import secrets

    if length not in CODE_LENGTHS:
        raise InstallCodeError(f"install codes have 6, 8, 12 or 16 bytes, not {length}")
    code = secrets.token_bytes(length)
    return code + crc16_x25(code).to_bytes(2, "little")


# -- keys derived from a link key (Zigbee spec 4.5.3) ------------------------------------------
def key_transport_key(link_key: bytes) -> bytes:
    """The key that protects Transport Key commands: HMAC-AES-MMO(link key, 0x00)."""
    return hmac_aes_mmo(bytes(link_key), b"\x00")


def key_load_key(link_key: bytes) -> bytes:
    """The key that protects a key-load (application link key) transport: HMAC(.., 0x02)."""
    return hmac_aes_mmo(bytes(link_key), b"\x02")
