"""The virtual air: one simulated IEEE 802.15.4 channel shared by many nodes.

Nodes attach a :class:`AirPort` (IEEE + NWK address + role) and transmit
:class:`~radios.frames.AirFrame` values. A unicast frame reaches the port with that NWK
address (the MAC ACK is implied: :meth:`VirtualAir.transmit` returns whether anyone
took it); a broadcast reaches every other port. Taps (the pcap writer) see every frame
in transmission order.

With an :class:`AirTimeModel` the channel is serialised: each frame occupies the air for
its PHY duration plus CSMA backoff and, for unicast, the MAC ACK turnaround, so a
benchmark sees what one 250 kbit/s channel allows. Without it frames move as fast as the
event loop can carry them (tests).

The medium can span processes: :func:`serve_udp` exposes an air on a loopback UDP port
and :func:`connect_udp` mirrors a remote air into a local one (see ``radios/udp.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Protocol

from radios.frames import AirFrame, ApsKind

LOGGER = logging.getLogger(__name__)

Tap = Callable[[AirFrame, float], None]


@dataclasses.dataclass(frozen=True)
class AirTimeModel:
    """Air time of one frame on a 2.4 GHz O-QPSK channel (IEEE 802.15.4-2006)."""

    bitrate: int = 250_000
    phy_overhead_bytes: int = 6  # preamble (4) + SFD (1) + PHR (1)
    symbol_us: float = 16.0
    mean_backoff_us: float = 3.5 * 320.0  # macMinBE=3: mean of 0..7 unit backoffs of 320 us
    cca_us: float = 128.0  # 8 symbols
    turnaround_us: float = 192.0  # aTurnaroundTime, 12 symbols
    ack_bytes: int = 5  # MAC ACK MPDU incl. FCS
    ifs_us: float = 640.0  # LIFS, 40 symbols

    def byte_us(self) -> float:
        return 8_000_000 / self.bitrate

    def frame_seconds(self, mpdu_len: int, unicast: bool) -> float:
        """Channel occupancy of one frame: backoff, CCA, frame, (turnaround + ACK), IFS."""
        us = self.mean_backoff_us + self.cca_us
        us += (mpdu_len + self.phy_overhead_bytes) * self.byte_us()
        if unicast:
            us += self.turnaround_us + (self.ack_bytes + self.phy_overhead_bytes) * self.byte_us()
        us += self.ifs_us
        return us / 1e6


def mpdu_length(frame: AirFrame) -> int:
    """Length of the MAC frame carrying ``frame`` (header + NWK + APS + payload + FCS)."""
    mac = 9 + 2  # fc, seq, dst pan, dst short, src short + FCS
    nwk = 8 + 8  # fc, dst, src, radius, seq + extended source
    aps = 8 if frame.kind == ApsKind.DATA else 8
    return mac + nwk + aps + len(frame.payload)


class Receiver(Protocol):
    def __call__(self, frame: AirFrame) -> None: ...


@dataclasses.dataclass(eq=False)
class AirPort:
    """A node's attachment to the air."""

    air: VirtualAir
    ieee: int
    nwk: int
    receiver: Receiver
    coordinator: bool = False
    rx_on_when_idle: bool = True
    mac_seq: int = 0
    nwk_seq: int = 0

    async def transmit(self, frame: AirFrame) -> bool:
        self.mac_seq = (self.mac_seq + 1) & 0xFF
        self.nwk_seq = (self.nwk_seq + 1) & 0xFF
        stamped = frame.replace(mac_seq=self.mac_seq, nwk_seq=self.nwk_seq)
        return await self.air.transmit(stamped, self)

    def detach(self) -> None:
        self.air.detach(self)


class VirtualAir:
    """One channel. Not thread-safe: all ports live on one event loop."""

    def __init__(
        self,
        *,
        pan_id: int = 0x1A62,
        channel: int = 15,
        air_time: AirTimeModel | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pan_id = pan_id
        self.channel = channel
        self.air_time = air_time
        self.clock = clock
        self._ports: dict[int, AirPort] = {}
        self._taps: list[Tap] = []
        self._channel_lock = asyncio.Lock() if air_time else None
        self.frames_sent = 0
        self.bytes_sent = 0
        # Frames for NWK addresses that no local port has go here (the UDP link).
        self.uplink: Callable[[AirFrame, AirPort | None], bool] | None = None

    # -- membership ---------------------------------------------------------------
    def attach(self, ieee: int, nwk: int, receiver: Receiver, *, coordinator: bool = False) -> AirPort:
        if nwk in self._ports:
            raise ValueError(f"NWK address 0x{nwk:04X} is already on the air")
        port = AirPort(self, ieee, nwk, receiver, coordinator=coordinator)
        self._ports[nwk] = port
        return port

    def detach(self, port: AirPort) -> None:
        if self._ports.get(port.nwk) is port:
            del self._ports[port.nwk]

    def free_nwk(self, preferred: int) -> int:
        """A NWK address not yet used on this air, starting at ``preferred``."""
        nwk = preferred & 0xFFF7 or 1
        while nwk in self._ports or nwk in (0x0000,) or nwk >= 0xFFF8:
            nwk = (nwk * 1103 + 17) % 0xFFF7 or 1
        return nwk

    def lookup_ieee(self, ieee: int) -> int | None:
        for port in self._ports.values():
            if port.ieee == ieee:
                return port.nwk
        return None

    def ports(self) -> list[AirPort]:
        return list(self._ports.values())

    # -- taps ---------------------------------------------------------------------
    def add_tap(self, tap: Tap) -> Callable[[], None]:
        self._taps.append(tap)
        return lambda: self._taps.remove(tap)

    # -- transmission ---------------------------------------------------------------
    async def transmit(self, frame: AirFrame, sender: AirPort | None) -> bool:
        """Put ``frame`` on the air. Returns True when a unicast was taken by a node
        (the MAC ACK); broadcasts always return True."""
        if self._channel_lock is not None and self.air_time is not None:
            async with self._channel_lock:
                await asyncio.sleep(
                    self.air_time.frame_seconds(mpdu_length(frame), not frame.broadcast)
                )
                return self._deliver(frame, sender)
        return self._deliver(frame, sender)

    def inject(self, frame: AirFrame) -> bool:
        """Deliver a frame that arrived from outside this process (no air time)."""
        return self._deliver(frame, None, from_outside=True)

    def _deliver(self, frame: AirFrame, sender: AirPort | None, from_outside: bool = False) -> bool:
        self.frames_sent += 1
        self.bytes_sent += mpdu_length(frame)
        now = self.clock()
        for tap in self._taps:
            try:
                tap(frame, now)
            except Exception:  # a broken tap must never take the air down
                LOGGER.exception("air tap failed")
        loop = asyncio.get_running_loop()
        if frame.broadcast:
            for port in list(self._ports.values()):
                if port is not sender:
                    loop.call_soon(port.receiver, frame)
            if self.uplink is not None and not from_outside:
                self.uplink(frame, sender)
            return True
        port = self._ports.get(frame.dst_nwk)
        if port is not None and port is not sender:
            loop.call_soon(port.receiver, frame)
            return True
        if self.uplink is not None and not from_outside:
            return self.uplink(frame, sender)
        return False


_REGISTRY: dict[str, VirtualAir] = {}


def named_air(name: str = "default") -> VirtualAir:
    """The in-process air called ``name`` (created on first use)."""
    air = _REGISTRY.get(name)
    if air is None:
        air = _REGISTRY[name] = VirtualAir()
    return air


def forget_air(name: str) -> None:
    _REGISTRY.pop(name, None)
