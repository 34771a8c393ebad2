"""Zigbee PRO APS frames and APS commands (sans-IO codecs).

APS frame control (Zigbee spec 2.2.5.1.1): bits 0-1 frame type (data 0, command 1, ack
2), 2-3 delivery mode (unicast 0, broadcast 2, group 3), 4 ack format, 5 security, 6 ack
request, 7 extended header. A data frame then carries destination endpoint (or group),
cluster, profile, source endpoint and the APS counter; a command frame only the counter;
an ack the endpoints, cluster and profile (ack format 0) and the counter. When the
security bit is set the auxiliary header (``radios.nwk.AuxHeader``) follows the header
and the payload is encrypted, a 4-byte MIC at its end.

APS commands (4.4.11): Transport Key 0x05, Update Device 0x06, Remove Device 0x07,
Request Key 0x08, Switch Key 0x09, Tunnel 0x0E, Verify Key 0x0F, Confirm Key 0x10.
"""

from __future__ import annotations

import dataclasses
import enum
import struct


class ApsError(ValueError):
    """Not an APS frame (or command) this stack can read."""


class ApsType(enum.IntEnum):
    DATA = 0
    COMMAND = 1
    ACK = 2


class Delivery(enum.IntEnum):
    UNICAST = 0
    BROADCAST = 2
    GROUP = 3


class ApsCommand(enum.IntEnum):
    TRANSPORT_KEY = 0x05
    UPDATE_DEVICE = 0x06
    REMOVE_DEVICE = 0x07
    REQUEST_KEY = 0x08
    SWITCH_KEY = 0x09
    TUNNEL = 0x0E
    VERIFY_KEY = 0x0F
    CONFIRM_KEY = 0x10


class TransportKeyType(enum.IntEnum):
    NETWORK = 0x01
    APPLICATION_LINK = 0x03
    TRUST_CENTER_LINK = 0x04


class RequestKeyType(enum.IntEnum):
    NETWORK = 0x01
    APPLICATION_LINK = 0x02
    TRUST_CENTER_LINK = 0x04


class UpdateStatus(enum.IntEnum):
    SECURED_REJOIN = 0
    UNSECURED_JOIN = 1
    DEVICE_LEFT = 2
    TC_REJOIN = 3


@dataclasses.dataclass(frozen=True, slots=True)
class ApsHeader:
    frame_type: ApsType
    counter: int
    delivery: Delivery = Delivery.UNICAST
    ack_request: bool = False
    security: bool = False
    dst_ep: int | None = None
    group: int | None = None
    cluster: int | None = None
    profile: int | None = None
    src_ep: int | None = None
    ack_format: bool = False  # an ack without endpoints (for commands)

    def encode(self) -> bytes:
        fc = (int(self.frame_type) | (int(self.delivery) << 2) | (0x10 if self.ack_format else 0)
              | (0x20 if self.security else 0) | (0x40 if self.ack_request else 0))
        out = bytearray([fc])
        if self.frame_type == ApsType.DATA or (self.frame_type == ApsType.ACK
                                               and not self.ack_format):
            if self.delivery == Delivery.GROUP:
                out += struct.pack("<H", self.group or 0)
            else:
                out.append((self.dst_ep or 0) & 0xFF)
            out += struct.pack("<HHB", self.cluster or 0, self.profile or 0, self.src_ep or 0)
        out.append(self.counter & 0xFF)
        return bytes(out)


def decode_header(data: bytes, pos: int = 0) -> tuple[ApsHeader, int]:
    if pos >= len(data):
        raise ApsError("empty APS frame")
    fc = data[pos]
    ftype = fc & 3
    if ftype > 2:
        raise ApsError("inter-PAN APS frames are not used")
    delivery = (fc >> 2) & 3
    if delivery == 1:
        raise ApsError("reserved delivery mode")
    if fc & 0x80:
        raise ApsError("APS extended header (fragmentation) is not supported")
    ack_format = bool(fc & 0x10)
    pos += 1
    dst_ep = group = cluster = profile = src_ep = None
    if ftype == ApsType.DATA or (ftype == ApsType.ACK and not ack_format):
        need = (2 if delivery == Delivery.GROUP else 1) + 5
        if pos + need > len(data):
            raise ApsError("truncated APS header")
        if delivery == Delivery.GROUP:
            group = struct.unpack_from("<H", data, pos)[0]
            pos += 2
        else:
            dst_ep = data[pos]
            pos += 1
        cluster, profile, src_ep = struct.unpack_from("<HHB", data, pos)
        pos += 5
    if pos >= len(data):
        raise ApsError("no APS counter")
    counter = data[pos]
    pos += 1
    return ApsHeader(frame_type=ApsType(ftype), counter=counter, delivery=Delivery(delivery),
                     ack_request=bool(fc & 0x40), security=bool(fc & 0x20), dst_ep=dst_ep,
                     group=group, cluster=cluster, profile=profile, src_ep=src_ep,
                     ack_format=ack_format), pos


# -- APS commands (payloads start with the command id) -------------------------------------------
def _ieee(value: int) -> bytes:
    return value.to_bytes(8, "little")


def _read_ieee(data: bytes, pos: int) -> int:
    if pos + 8 > len(data):
        raise ApsError("truncated IEEE address")
    return int.from_bytes(data[pos:pos + 8], "little")


@dataclasses.dataclass(frozen=True, slots=True)
class TransportKey:
    key_type: TransportKeyType
    key: bytes
    dst_ieee: int = 0  # network / TC link key: the destination; app link key: the partner
    src_ieee: int = 0  # network / TC link key: the trust centre
    key_seq: int = 0  # network key only
    initiator: bool = False  # application link key only

    def encode(self) -> bytes:
        out = bytes([ApsCommand.TRANSPORT_KEY, self.key_type]) + bytes(self.key)
        if self.key_type == TransportKeyType.NETWORK:
            return out + bytes([self.key_seq & 0xFF]) + _ieee(self.dst_ieee) + _ieee(self.src_ieee)
        if self.key_type == TransportKeyType.APPLICATION_LINK:
            return out + _ieee(self.dst_ieee) + bytes([1 if self.initiator else 0])
        return out + _ieee(self.dst_ieee) + _ieee(self.src_ieee)


@dataclasses.dataclass(frozen=True, slots=True)
class UpdateDevice:
    ieee: int
    nwk: int
    status: UpdateStatus

    def encode(self) -> bytes:
        return bytes([ApsCommand.UPDATE_DEVICE]) + _ieee(self.ieee) + struct.pack(
            "<HB", self.nwk, int(self.status))


@dataclasses.dataclass(frozen=True, slots=True)
class RemoveDevice:
    target: int

    def encode(self) -> bytes:
        return bytes([ApsCommand.REMOVE_DEVICE]) + _ieee(self.target)


@dataclasses.dataclass(frozen=True, slots=True)
class RequestKey:
    key_type: RequestKeyType
    partner: int | None = None  # application link key only

    def encode(self) -> bytes:
        out = bytes([ApsCommand.REQUEST_KEY, self.key_type])
        if self.key_type == RequestKeyType.APPLICATION_LINK:
            out += _ieee(self.partner or 0)
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class SwitchKey:
    key_seq: int

    def encode(self) -> bytes:
        return bytes([ApsCommand.SWITCH_KEY, self.key_seq & 0xFF])


@dataclasses.dataclass(frozen=True, slots=True)
class Tunnel:
    dst_ieee: int
    frame: bytes  # a secured APS command frame (header, aux header, payload, MIC)

    def encode(self) -> bytes:
        return bytes([ApsCommand.TUNNEL]) + _ieee(self.dst_ieee) + self.frame


Command = TransportKey | UpdateDevice | RemoveDevice | RequestKey | SwitchKey | Tunnel


def decode_command(data: bytes) -> Command:
    """One APS command from its (decrypted) payload. Raises :class:`ApsError`."""
    if not data:
        raise ApsError("empty APS command")
    cid = data[0]
    try:
        if cid == ApsCommand.TRANSPORT_KEY:
            if len(data) < 18:
                raise ApsError("truncated Transport Key")
            kt = TransportKeyType(data[1])
            key = bytes(data[2:18])
            if kt == TransportKeyType.NETWORK:
                if len(data) != 35:
                    raise ApsError("bad network-key Transport Key length")
                return TransportKey(kt, key, key_seq=data[18], dst_ieee=_read_ieee(data, 19),
                                    src_ieee=_read_ieee(data, 27))
            if kt == TransportKeyType.APPLICATION_LINK:
                if len(data) != 27:
                    raise ApsError("bad application-key Transport Key length")
                return TransportKey(kt, key, dst_ieee=_read_ieee(data, 18), initiator=bool(data[26]))
            if len(data) != 34:
                raise ApsError("bad TC-link-key Transport Key length")
            return TransportKey(kt, key, dst_ieee=_read_ieee(data, 18),
                                src_ieee=_read_ieee(data, 26))
        if cid == ApsCommand.UPDATE_DEVICE:
            if len(data) != 12:
                raise ApsError("bad Update Device length")
            nwk, status = struct.unpack_from("<HB", data, 9)
            return UpdateDevice(_read_ieee(data, 1), nwk, UpdateStatus(status))
        if cid == ApsCommand.REMOVE_DEVICE:
            if len(data) != 9:
                raise ApsError("bad Remove Device length")
            return RemoveDevice(_read_ieee(data, 1))
        if cid == ApsCommand.REQUEST_KEY:
            if len(data) < 2:
                raise ApsError("truncated Request Key")
            rt = RequestKeyType(data[1])
            if rt == RequestKeyType.APPLICATION_LINK:
                if len(data) != 10:
                    raise ApsError("bad Request Key length")
                return RequestKey(rt, _read_ieee(data, 2))
            if len(data) != 2:
                raise ApsError("bad Request Key length")
            return RequestKey(rt)
        if cid == ApsCommand.SWITCH_KEY:
            if len(data) != 2:
                raise ApsError("bad Switch Key length")
            return SwitchKey(data[1])
        if cid == ApsCommand.TUNNEL:
            if len(data) < 12:
                raise ApsError("truncated Tunnel")
            return Tunnel(_read_ieee(data, 1), bytes(data[9:]))
    except ValueError as exc:  # an unknown enum value
        if isinstance(exc, ApsError):
            raise
        raise ApsError(str(exc)) from exc
    raise ApsError(f"unsupported APS command 0x{cid:02X}")
