"""The pcap tap: every frame on the virtual air, as it is on the air (encrypted).

Frames are written as pcap linktype 195 (LINKTYPE_IEEE802_15_4_WITHFCS) with a correct
FCS, so Wireshark/tshark decode them down to ZCL — given the keys. :class:`KeyLog` keeps
``FILE.keys`` beside a capture: one line per key in Wireshark's Zigbee key table form,
``"<32 hex digits>","Normal","<label>"``, so that
``tshark -r FILE -o 'uat:zigbee_pc_keys:<line>' ...`` decrypts everything (tshark derives
the key-transport and key-load keys from a link key itself). The file has mode 0600.

:func:`encode_mac_frame` builds an *unsecured* frame from an :class:`AirFrame` value, for
tests and tools that want to show tshark a frame without a network.

Layouts (little-endian fields):
- MAC data frame: frame control, sequence, destination PAN, destination short, source
  short (PAN ID compression), payload, FCS (CRC-16/KERMIT).
- NWK header: frame control (data, protocol version 2, extended source), destination,
  source, radius, sequence, extended source IEEE.
- APS data: frame control (data, unicast/broadcast delivery, ack request), destination
  endpoint, cluster, profile, source endpoint, counter; APS ack: the same without payload.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Any, BinaryIO

from radios.frames import AirFrame, ApsKind

LINKTYPE_IEEE802_15_4_WITHFCS = 195


def _kermit_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _kermit_table()


def fcs(data: bytes) -> int:
    """IEEE 802.15.4 FCS: CRC-16/KERMIT (ITU-T polynomial, reflected, init 0). Twenty
    lines of table code; no maintained library offers this CRC."""
    crc = 0
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def encode_aps(frame: AirFrame) -> bytes:
    if frame.kind == ApsKind.ACK:
        fc = 0x02  # frame type ack, unicast, ack format 0 (endpoints present)
        return struct.pack("<BBHHBB", fc, frame.dst_ep, frame.cluster_id, frame.profile_id,
                           frame.src_ep, frame.aps_counter)
    delivery = 0x2 if frame.broadcast else 0x0
    fc = 0x00 | (delivery << 2) | (0x40 if frame.ack_request and not frame.broadcast else 0)
    return struct.pack("<BBHHBB", fc, frame.dst_ep, frame.cluster_id, frame.profile_id,
                       frame.src_ep, frame.aps_counter) + frame.payload


def encode_nwk(frame: AirFrame) -> bytes:
    fc = 0x0000 | (2 << 2) | (1 << 12)  # data, protocol version 2, extended source present
    return struct.pack("<HHHBB", fc, frame.dst_nwk, frame.src_nwk, frame.radius,
                       frame.nwk_seq & 0xFF) + frame.src_ieee.to_bytes(8, "little") + encode_aps(frame)


def encode_mac_frame(frame: AirFrame) -> bytes:
    """The whole MPDU, FCS included."""
    unicast = not frame.broadcast
    fc = 0x0001 | (0x20 if unicast else 0) | 0x40 | (2 << 10) | (2 << 14)
    dst = frame.dst_nwk if unicast else 0xFFFF
    mpdu = struct.pack("<HBHHH", fc, frame.mac_seq & 0xFF, frame.pan_id, dst, frame.src_nwk)
    mpdu += encode_nwk(frame)
    return mpdu + struct.pack("<H", fcs(mpdu))


def encode_mac_ack(seq: int) -> bytes:
    mpdu = struct.pack("<HB", 0x0002, seq & 0xFF)
    return mpdu + struct.pack("<H", fcs(mpdu))


class PcapWriter:
    """A classic pcap file; every record is flushed, so a crash loses at most one frame."""

    def __init__(self, path: Path | str, *, snaplen: int = 256) -> None:
        self.path = Path(path)
        self._f: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115
        self._f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen,
                                  LINKTYPE_IEEE802_15_4_WITHFCS))
        self._f.flush()
        self.frames = 0
        self.keylog: KeyLog | None = None

    def write_raw(self, mpdu: bytes, timestamp: float | None = None) -> None:
        if self._f is None:
            return
        ts = time.time() if timestamp is None else timestamp
        sec = int(ts)
        usec = int(round((ts - sec) * 1e6))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        self._f.write(struct.pack("<IIII", sec, usec, len(mpdu), len(mpdu)) + mpdu)
        self._f.flush()
        self.frames += 1

    def write(self, frame: bytes | AirFrame, timestamp: float | None = None) -> None:
        """Usable directly as a :meth:`VirtualAir.add_tap` tap: an MPDU as on the air (its
        FCS is added here), or an :class:`AirFrame` value (written unsecured)."""
        if isinstance(frame, AirFrame):
            self.write_raw(encode_mac_frame(frame), timestamp)
        else:
            mpdu = bytes(frame)
            self.write_raw(mpdu + struct.pack("<H", fcs(mpdu)), timestamp)

    def capture(self, air: Any) -> PcapWriter:
        """Write every frame on ``air`` and keep ``FILE.keys`` with the keys its nodes use."""
        air.add_tap(self.write)
        self.keylog = KeyLog(f"{self.path}.keys")
        air.on_key(self.keylog.add)
        return self

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KeyLog:
    """``FILE.keys`` for a capture: every key in use, one Wireshark key-table line each."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._keys: dict[bytes, str] = {}
        self._write()

    @staticmethod
    def line(key: bytes, label: str) -> str:
        # no spaces, quotes or commas: a line stays one shell word (tshark -o $(...))
        safe = "".join(c if c.isalnum() or c in "-_.:" else "_" for c in label)
        return f'"{bytes(key).hex()}","Normal","{safe}"'

    def add(self, key: bytes, label: str) -> None:
        key = bytes(key)
        if key in self._keys:
            return
        self._keys[key] = label
        self._write()

    def lines(self) -> list[str]:
        return [self.line(k, v) for k, v in self._keys.items()]

    def tshark_options(self) -> list[str]:
        """``-o uat:zigbee_pc_keys:...`` for every key, for a tshark command line."""
        return [arg for line in self.lines() for arg in ("-o", f"uat:zigbee_pc_keys:{line}")]

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, "".join(line + "\n" for line in self.lines()).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


def read_key_lines(path: Path | str) -> list[str]:
    """The key-table lines of a ``FILE.keys``."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def tshark_key_options(pcap: Path | str) -> list[str]:
    """``-o uat:zigbee_pc_keys:...`` for each line of ``PCAP.keys`` (none if absent)."""
    keys = Path(f"{pcap}.keys")
    if not keys.exists():
        return []
    return [arg for line in read_key_lines(keys) for arg in ("-o", f"uat:zigbee_pc_keys:{line}")]
