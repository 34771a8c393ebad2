"""Zigbee PRO NWK frames and the auxiliary security header (sans-IO codecs).

NWK frame control (Zigbee spec 3.3.1.1): bits 0-1 frame type (data 0, command 1), 2-5
protocol version (2), 6-7 discover route, 8 multicast, 9 security, 10 source route, 11
destination IEEE present, 12 source IEEE present, 13 end device initiator. Then
destination, source, radius, sequence number, the optional IEEE addresses, and — when
secured — the auxiliary header (4.5.1): security control (level bits 0-2, sent as 0 and
set back to 5 for the nonce and the MIC; key identifier bits 3-4; extended nonce bit 5),
frame counter, source IEEE (extended nonce), key sequence number (network key only).

NWK commands used here (3.4): Network Status 0x03, Leave 0x04, Rejoin Request 0x06 and
Rejoin Response 0x07.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

PROTOCOL_VERSION = 2


class NwkError(ValueError):
    """Not a NWK frame (or auxiliary header) this stack can read."""


class NwkType(enum.IntEnum):
    DATA = 0
    COMMAND = 1


class KeyId(enum.IntEnum):
    """Key identifier of the auxiliary header (4.5.1.1.2)."""

    DATA = 0  # a link key
    NETWORK = 1
    KEY_TRANSPORT = 2
    KEY_LOAD = 3


class NwkCommand(enum.IntEnum):
    NETWORK_STATUS = 0x03
    LEAVE = 0x04
    REJOIN_REQUEST = 0x06
    REJOIN_RESPONSE = 0x07


LEAVE_REJOIN = 0x20
LEAVE_REQUEST = 0x40
LEAVE_REMOVE_CHILDREN = 0x80


@dataclasses.dataclass(frozen=True, slots=True)
class AuxHeader:
    """The auxiliary security header, NWK or APS (4.5.1)."""

    key_id: KeyId
    counter: int
    source: int | None = None  # IEEE (extended nonce) or None
    key_seq: int | None = None  # network key only

    def encode(self, level: int = 0) -> bytes:
        ctrl = level | (int(self.key_id) << 3) | (0x20 if self.source is not None else 0)
        out = struct.pack("<BI", ctrl, self.counter & 0xFFFFFFFF)
        if self.source is not None:
            out += self.source.to_bytes(8, "little")
        if self.key_id == KeyId.NETWORK:
            out += bytes([(self.key_seq or 0) & 0xFF])
        return out

    @property
    def control(self) -> int:
        return self.encode(5)[0]

    @classmethod
    def decode(cls, data: bytes, pos: int = 0) -> tuple[AuxHeader, int]:
        if pos + 5 > len(data):
            raise NwkError("truncated auxiliary header")
        ctrl, counter = struct.unpack_from("<BI", data, pos)
        pos += 5
        source = None
        if ctrl & 0x20:
            if pos + 8 > len(data):
                raise NwkError("truncated extended nonce")
            source = int.from_bytes(data[pos:pos + 8], "little")
            pos += 8
        key_id = KeyId((ctrl >> 3) & 3)
        key_seq = None
        if key_id == KeyId.NETWORK:
            if pos + 1 > len(data):
                raise NwkError("truncated key sequence number")
            key_seq = data[pos]
            pos += 1
        if ctrl & 0xC0:
            raise NwkError("reserved security control bits set")
        return cls(key_id=key_id, counter=counter, source=source, key_seq=key_seq), pos


@dataclasses.dataclass(frozen=True, slots=True)
class NwkHeader:
    frame_type: NwkType
    dst: int
    src: int
    radius: int = 30
    seq: int = 0
    security: bool = True
    src_ieee: int | None = None
    dst_ieee: int | None = None
    discover_route: int = 0

    def encode(self) -> bytes:
        fc = (int(self.frame_type) | (PROTOCOL_VERSION << 2) | (self.discover_route << 6)
              | (0x0200 if self.security else 0) | (0x0800 if self.dst_ieee is not None else 0)
              | (0x1000 if self.src_ieee is not None else 0))
        out = struct.pack("<HHHBB", fc, self.dst, self.src, self.radius & 0xFF, self.seq & 0xFF)
        if self.dst_ieee is not None:
            out += self.dst_ieee.to_bytes(8, "little")
        if self.src_ieee is not None:
            out += self.src_ieee.to_bytes(8, "little")
        return out


def decode_header(data: bytes) -> tuple[NwkHeader, int]:
    """The header and the offset of what follows it (aux header or payload)."""
    if len(data) < 8:
        raise NwkError("short NWK frame")
    fc, dst, src, radius, seq = struct.unpack_from("<HHHBB", data)
    ftype = fc & 3
    if ftype > 1:
        raise NwkError(f"unsupported NWK frame type {ftype}")
    if (fc >> 2) & 0xF != PROTOCOL_VERSION:
        raise NwkError(f"NWK protocol version {(fc >> 2) & 0xF}")
    if fc & 0x0500:
        raise NwkError("multicast and source routes are not used on the virtual air")
    pos = 8
    dst_ieee = src_ieee = None
    if fc & 0x0800:
        if pos + 8 > len(data):
            raise NwkError("truncated destination IEEE")
        dst_ieee = int.from_bytes(data[pos:pos + 8], "little")
        pos += 8
    if fc & 0x1000:
        if pos + 8 > len(data):
            raise NwkError("truncated source IEEE")
        src_ieee = int.from_bytes(data[pos:pos + 8], "little")
        pos += 8
    return NwkHeader(frame_type=NwkType(ftype), dst=dst, src=src, radius=radius, seq=seq,
                     security=bool(fc & 0x0200), src_ieee=src_ieee, dst_ieee=dst_ieee,
                     discover_route=(fc >> 6) & 3), pos


# -- commands -------------------------------------------------------------------------------
def leave(*, rejoin: bool = False, request: bool = False, remove_children: bool = False) -> bytes:
    opts = ((LEAVE_REJOIN if rejoin else 0) | (LEAVE_REQUEST if request else 0)
            | (LEAVE_REMOVE_CHILDREN if remove_children else 0))
    return bytes([NwkCommand.LEAVE, opts])


def rejoin_request(capability: int) -> bytes:
    return bytes([NwkCommand.REJOIN_REQUEST, capability & 0xFF])


def rejoin_response(address: int, status: int) -> bytes:
    return bytes([NwkCommand.REJOIN_RESPONSE]) + struct.pack("<HB", address, status)


#: Network Status codes (3.4.3.3.1) this stack sends
STATUS_ADDRESS_CONFLICT = 0x0D
ADDRESS_CONFLICT_QUIET = 5.0  # seconds between two Network Status for the same address


def network_status(status: int, address: int) -> bytes:
    """Network Status command (3.4.3): status code, then the NWK address it is about."""
    return bytes([NwkCommand.NETWORK_STATUS, status & 0xFF]) + struct.pack("<H", address)
