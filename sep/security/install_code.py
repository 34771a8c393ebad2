"""Install codes → link keys (Zigbee 05-3474 / Base Device Behavior 10.1).

An install code is 6, 8, 12 or 16 bytes followed by its CRC-16/X-25 (little-endian);
the link key is AES-MMO of the whole code including the CRC.
"""

from __future__ import annotations

from sep.security.aes_mmo import aes_mmo

CODE_LENGTHS = (6, 8, 12, 16)


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
