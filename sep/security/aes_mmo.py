"""AES-MMO, the Matyas-Meyer-Oseas hash Zigbee builds on AES-128 (spec 05-3474 B.6).

H0 = 0; Hj = AES(key=Hj-1, Mj) XOR Mj over 16-byte blocks of the padded message.
Padding: 0x80, zeros, then the bit length — 16 bits big-endian when the message is
shorter than 8192 bytes (pad to 14 mod 16), else 32 bits big-endian followed by two zero
bytes (pad to 10 mod 16). Many ports get the long form wrong; OTA images always use it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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
