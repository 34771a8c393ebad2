"""IEEE 802.15.4-2006 MAC frames as the virtual air carries them (sans-IO codecs).

Every frame on the air is the MPDU without its FCS (the pcap tap adds it). Addresses are
ints: short addresses 0..0xFFFF, extended (EUI-64) addresses as the EUI-64 read most
significant byte first; on the wire both are little-endian.

Frame control (2.4.1.1 / 7.2.1.1): bits 0-2 frame type, 3 security (never set: Zigbee
secures at NWK/APS), 4 frame pending, 5 ACK request, 6 PAN ID compression, 10-11
destination addressing mode, 12-13 frame version, 14-15 source addressing mode.

Besides data frames, what joining uses: Beacon Request (MAC command 0x07, to the
broadcast address of the broadcast PAN), Beacon (superframe specification, GTS and
pending-address fields, the Zigbee beacon payload), Association Request (0x01) and
Association Response (0x02). The virtual air delivers an association response directly
(joiners keep their receiver on), where a real MAC would hold it for a data request.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

BROADCAST = 0xFFFF
ADDR_NONE, ADDR_SHORT, ADDR_EXT = 0, 2, 3


class MacError(ValueError):
    """Not a MAC frame this stack can read."""


class MacType(enum.IntEnum):
    BEACON = 0
    DATA = 1
    ACK = 2
    COMMAND = 3


class MacCommand(enum.IntEnum):
    ASSOCIATION_REQUEST = 0x01
    ASSOCIATION_RESPONSE = 0x02
    DISASSOCIATION = 0x03
    DATA_REQUEST = 0x04
    BEACON_REQUEST = 0x07


class AssociationStatus(enum.IntEnum):
    SUCCESS = 0x00
    PAN_AT_CAPACITY = 0x01
    PAN_ACCESS_DENIED = 0x02


@dataclasses.dataclass(frozen=True, slots=True)
class MacFrame:
    type: MacType
    seq: int
    payload: bytes = b""
    dst_pan: int | None = None
    dst: int | None = None
    dst_mode: int = ADDR_NONE
    src_pan: int | None = None
    src: int | None = None
    src_mode: int = ADDR_NONE
    ack_request: bool = False

    @property
    def broadcast(self) -> bool:
        return self.dst_mode == ADDR_NONE or (self.dst_mode == ADDR_SHORT and self.dst == BROADCAST)

    def encode(self) -> bytes:
        compress = (self.dst_mode != ADDR_NONE and self.src_mode != ADDR_NONE
                    and self.src_pan in (None, self.dst_pan))
        fc = (int(self.type) | (0x20 if self.ack_request else 0) | (0x40 if compress else 0)
              | (self.dst_mode << 10) | (self.src_mode << 14))
        out = bytearray(struct.pack("<HB", fc, self.seq & 0xFF))
        if self.dst_mode != ADDR_NONE:
            out += struct.pack("<H", self.dst_pan if self.dst_pan is not None else BROADCAST)
            out += _addr(self.dst_mode, self.dst)
        if self.src_mode != ADDR_NONE:
            if not compress:
                out += struct.pack("<H", self.src_pan if self.src_pan is not None else BROADCAST)
            out += _addr(self.src_mode, self.src)
        return bytes(out) + self.payload


def _addr(mode: int, value: int | None) -> bytes:
    assert value is not None
    return value.to_bytes(2 if mode == ADDR_SHORT else 8, "little")


def _read_addr(data: bytes, pos: int, mode: int) -> tuple[int | None, int]:
    if mode == ADDR_NONE:
        return None, pos
    n = 2 if mode == ADDR_SHORT else 8 if mode == ADDR_EXT else -1
    if n < 0 or pos + n > len(data):
        raise MacError("truncated or reserved address")
    return int.from_bytes(data[pos:pos + n], "little"), pos + n


def decode(data: bytes) -> MacFrame:
    """Parse an MPDU without FCS. Raises :class:`MacError`."""
    if len(data) < 3:
        raise MacError("short MAC frame")
    fc, seq = struct.unpack_from("<HB", data)
    ftype = fc & 0x7
    if ftype > 3:
        raise MacError(f"reserved frame type {ftype}")
    if fc & 0x08:
        raise MacError("MAC security is not used by Zigbee")
    dst_mode, src_mode = (fc >> 10) & 3, (fc >> 14) & 3
    compress = bool(fc & 0x40)
    pos = 3
    dst_pan = dst = src_pan = src = None
    if dst_mode != ADDR_NONE:
        if pos + 2 > len(data):
            raise MacError("truncated destination PAN")
        dst_pan = struct.unpack_from("<H", data, pos)[0]
        pos += 2
        dst, pos = _read_addr(data, pos, dst_mode)
    if src_mode != ADDR_NONE:
        if compress:
            src_pan = dst_pan
        else:
            if pos + 2 > len(data):
                raise MacError("truncated source PAN")
            src_pan = struct.unpack_from("<H", data, pos)[0]
            pos += 2
        src, pos = _read_addr(data, pos, src_mode)
    return MacFrame(type=MacType(ftype), seq=seq, payload=bytes(data[pos:]), dst_pan=dst_pan,
                    dst=dst, dst_mode=dst_mode, src_pan=src_pan, src=src, src_mode=src_mode,
                    ack_request=bool(fc & 0x20))


# -- data frames -----------------------------------------------------------------------------
def data_frame(seq: int, pan_id: int, src: int, dst: int, payload: bytes) -> MacFrame:
    unicast = dst != BROADCAST
    return MacFrame(type=MacType.DATA, seq=seq, payload=payload, dst_pan=pan_id, dst=dst,
                    dst_mode=ADDR_SHORT, src_pan=pan_id, src=src, src_mode=ADDR_SHORT,
                    ack_request=unicast)


def ack_frame(seq: int) -> bytes:
    return struct.pack("<HB", int(MacType.ACK), seq & 0xFF)


# -- joining: beacons and association ------------------------------------------------------------
def beacon_request(seq: int) -> MacFrame:
    return MacFrame(type=MacType.COMMAND, seq=seq, payload=bytes([MacCommand.BEACON_REQUEST]),
                    dst_pan=BROADCAST, dst=BROADCAST, dst_mode=ADDR_SHORT)


@dataclasses.dataclass(frozen=True, slots=True)
class Beacon:
    """A beacon's superframe fields and its Zigbee payload (Zigbee spec 3.6.7)."""

    pan_id: int
    source: int  # short address of the sender
    extended_pan_id: int
    permit_joining: bool
    pan_coordinator: bool = False
    router_capacity: bool = True
    end_device_capacity: bool = True
    depth: int = 0
    nwk_update_id: int = 0
    stack_profile: int = 2  # Zigbee PRO
    protocol_version: int = 2

    def frame(self, seq: int) -> MacFrame:
        superframe = 0x0FFF | 0x0000  # beacon order 15, superframe order 15, final CAP slot 15
        if self.pan_coordinator:
            superframe |= 1 << 14
        if self.permit_joining:
            superframe |= 1 << 15
        zigbee = bytes([
            0x00,  # protocol id
            self.stack_profile | (self.protocol_version << 4),
            (0x04 if self.router_capacity else 0) | ((self.depth & 0xF) << 3)
            | (0x80 if self.end_device_capacity else 0),
        ]) + self.extended_pan_id.to_bytes(8, "little") + b"\xff\xff\xff" + bytes(
            [self.nwk_update_id & 0xFF])
        payload = struct.pack("<HBB", superframe, 0, 0) + zigbee  # no GTS, no pending addresses
        return MacFrame(type=MacType.BEACON, seq=seq, payload=payload, src_pan=self.pan_id,
                        src=self.source, src_mode=ADDR_SHORT)

    @classmethod
    def parse(cls, frame: MacFrame) -> Beacon:
        p = frame.payload
        if frame.type != MacType.BEACON or frame.src_mode != ADDR_SHORT or len(p) < 4:
            raise MacError("not a beacon")
        superframe, gts, pending = struct.unpack_from("<HBB", p)
        pos = 4
        if gts & 0x07:
            raise MacError("GTS fields are not used in Zigbee beacons")
        pos += 2 * (pending & 0x7) + 8 * ((pending >> 4) & 0x7)
        z = p[pos:]
        if len(z) < 15 or z[0] != 0:
            raise MacError("not a Zigbee beacon payload")
        assert frame.src_pan is not None and frame.src is not None
        return cls(pan_id=frame.src_pan, source=frame.src,
                   extended_pan_id=int.from_bytes(z[3:11], "little"),
                   permit_joining=bool(superframe & 0x8000),
                   pan_coordinator=bool(superframe & 0x4000),
                   router_capacity=bool(z[2] & 0x04), end_device_capacity=bool(z[2] & 0x80),
                   depth=(z[2] >> 3) & 0xF, nwk_update_id=z[14], stack_profile=z[1] & 0xF,
                   protocol_version=z[1] >> 4)


# capability information (7.3.1.2): alternate PAN coordinator, device type (FFD), power
# source (mains), receiver on when idle, security, allocate address
CAP_ROUTER = 0x02 | 0x04 | 0x08 | 0x80
CAP_END_DEVICE = 0x80


def association_request(seq: int, pan_id: int, parent: int, joiner_ieee: int,
                        capability: int) -> MacFrame:
    return MacFrame(type=MacType.COMMAND, seq=seq,
                    payload=bytes([MacCommand.ASSOCIATION_REQUEST, capability & 0xFF]),
                    dst_pan=pan_id, dst=parent, dst_mode=ADDR_SHORT, src_pan=BROADCAST,
                    src=joiner_ieee, src_mode=ADDR_EXT, ack_request=True)


def association_response(seq: int, pan_id: int, parent_ieee: int, joiner_ieee: int,
                         short: int, status: AssociationStatus) -> MacFrame:
    return MacFrame(type=MacType.COMMAND, seq=seq,
                    payload=bytes([MacCommand.ASSOCIATION_RESPONSE]) + struct.pack(
                        "<HB", short, int(status)),
                    dst_pan=pan_id, dst=joiner_ieee, dst_mode=ADDR_EXT, src_pan=pan_id,
                    src=parent_ieee, src_mode=ADDR_EXT, ack_request=True)


def command_id(frame: MacFrame) -> int | None:
    if frame.type != MacType.COMMAND or not frame.payload:
        return None
    return frame.payload[0]
