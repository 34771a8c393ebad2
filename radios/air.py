"""The virtual air: simulated IEEE 802.15.4 channels shared by many nodes.

What travels is bytes: the MPDU each node's stack built (``radios/node.py``), without its
FCS — encrypted as it would be on a real channel. Nodes attach an :class:`AirPort`
(their IEEE, the channel they are tuned to, and once they have joined their PAN id and
NWK address). The air reads only the MAC header to deliver: a unicast to a short
address reaches the port with that (channel, PAN, address), one to an extended address
the port with that IEEE on the channel (association responses), and broadcasts the
sender's radio neighbours (every other port on the channel, unless ports are placed in
cells: see :attr:`AirPort.cell`), so a unicast costs one delivery and a broadcast one per
neighbour, never one per node of a large fleet; a node on another channel hears nothing,
and each node's MAC drops frames for another PAN. :meth:`VirtualAir.transmit` returns whether a unicast was
taken (the MAC ACK). Taps (the pcap writer) see every frame in transmission order.

With an :class:`AirTimeModel` the channel is serialised: each frame occupies the air for
its PHY duration plus CSMA backoff and, for unicast, the MAC ACK turnaround, so a
benchmark sees what one 250 kbit/s channel allows. Without it frames move as fast as the
event loop can carry them (tests).

The medium can span processes: :func:`radios.udp.serve_udp` exposes an air on a
loopback UDP port and :func:`radios.udp.connect_udp` mirrors a remote air into a local one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import struct
import time
from collections.abc import Callable
from typing import Protocol

from radios.addressing import stochastic_address

LOGGER = logging.getLogger(__name__)

Tap = Callable[[bytes, float], None]
FCS_LEN = 2
UNSET_PAN = 0xFFFF
UNSET_NWK = 0xFFFE


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


@dataclasses.dataclass(frozen=True, slots=True)
class Destination:
    """Where a frame goes, read from its MAC header."""

    pan: int | None
    short: int | None = None
    ext: int | None = None

    @property
    def broadcast(self) -> bool:
        return self.ext is None and self.short in (None, 0xFFFF)


def destination(mpdu: bytes) -> Destination | None:
    """The MAC destination of a frame, or None when the header cannot be read."""
    if len(mpdu) < 3:
        return None
    fc = mpdu[0] | mpdu[1] << 8
    if fc & 7 == 2:  # ACK
        return None
    mode = (fc >> 10) & 3
    if mode == 0:
        return Destination(pan=None)
    if mode == 2 and len(mpdu) >= 7:
        pan, short = struct.unpack_from("<HH", mpdu, 3)
        return Destination(pan=pan, short=short)
    if mode == 3 and len(mpdu) >= 13:
        pan = struct.unpack_from("<H", mpdu, 3)[0]
        return Destination(pan=pan, ext=int.from_bytes(mpdu[5:13], "little"))
    return None


class Receiver(Protocol):
    def __call__(self, mpdu: bytes) -> None: ...


@dataclasses.dataclass(eq=False)
class AirPort:
    """A node's radio on the air."""

    air: VirtualAir
    ieee: int
    receiver: Receiver
    channel: int
    pan_id: int = UNSET_PAN
    nwk: int = UNSET_NWK
    coordinator: bool = False
    #: radio range: a port in a cell hears broadcasts from its cell and from the ports
    #: without one; a port without a cell (None: the hub, a display, a sniffer) hears
    #: every broadcast on its channel and is heard by every port there
    cell: int | None = None

    async def transmit(self, mpdu: bytes) -> bool:
        return await self.air.transmit(mpdu, self)

    def set_address(self, pan_id: int, nwk: int) -> None:
        self.air._reindex(self, pan_id=pan_id, nwk=nwk, channel=self.channel)

    def tune(self, channel: int) -> None:
        self.air._reindex(self, pan_id=self.pan_id, nwk=self.nwk, channel=channel)

    def detach(self) -> None:
        self.air.detach(self)


class VirtualAir:
    """The 2.4 GHz band. Not thread-safe: all ports live on one event loop.

    ``pan_id`` and ``channel`` are the defaults a coordinator forms with on this air.
    """

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
        # channel -> its ports (a dict as an ordered set: attach and detach are O(1))
        self._by_channel: dict[int, dict[AirPort, None]] = {}
        # broadcast neighbourhoods: channel -> ports without a cell; (channel, cell) -> ports
        self._open: dict[int, dict[AirPort, None]] = {}
        self._cells: dict[tuple[int, int], dict[AirPort, None]] = {}
        self._by_short: dict[tuple[int, int, int], AirPort] = {}
        # ports whose (channel, PAN, address) another port holds (an address conflict
        # until it is resolved): one of them takes the address when the holder leaves it
        self._shadowed: dict[tuple[int, int, int], list[AirPort]] = {}
        self._by_ieee: dict[tuple[int, int], AirPort] = {}
        self._taps: list[Tap] = []
        self._channel_lock = asyncio.Lock() if air_time else None
        self.frames_sent = 0
        self.bytes_sent = 0
        # Keys in use on this air, as the nodes here report them: what a test lab's sniffer
        # is configured with (the pcap tap writes them to FILE.keys). key -> label
        self.keys: dict[bytes, str] = {}
        self._key_listeners: list[Callable[[bytes, str], None]] = []
        # Frames that no local port takes go here (the UDP link): (mpdu, channel, sender)
        self.uplink: Callable[[bytes, int, AirPort | None], bool] | None = None

    # -- membership ---------------------------------------------------------------------
    def attach(self, ieee: int, receiver: Receiver, *, channel: int | None = None,
               pan_id: int = UNSET_PAN, nwk: int = UNSET_NWK,
               coordinator: bool = False, cell: int | None = None) -> AirPort:
        channel = self.channel if channel is None else channel
        if (channel, ieee) in self._by_ieee:
            raise ValueError(f"a node with IEEE {ieee:016x} is already on channel {channel}")
        port = AirPort(self, ieee, receiver, channel, coordinator=coordinator, cell=cell)
        self._index(port)
        if nwk != UNSET_NWK:
            self._reindex(port, pan_id=pan_id, nwk=nwk, channel=channel)
        return port

    def _index(self, port: AirPort) -> None:
        channel = port.channel
        self._by_channel.setdefault(channel, {})[port] = None
        if port.cell is None:
            self._open.setdefault(channel, {})[port] = None
        else:
            self._cells.setdefault((channel, port.cell), {})[port] = None
        self._by_ieee[(channel, port.ieee)] = port
        if port.nwk < 0xFFF8 and port.pan_id != UNSET_PAN:
            key = (channel, port.pan_id, port.nwk)
            holder = self._by_short.get(key)
            if holder is None or holder is port:
                self._by_short[key] = port
            else:
                self._shadowed.setdefault(key, []).append(port)

    def detach(self, port: AirPort) -> None:
        self._by_channel.get(port.channel, {}).pop(port, None)
        if port.cell is None:
            self._open.get(port.channel, {}).pop(port, None)
        else:
            cell = self._cells.get((port.channel, port.cell))
            if cell is not None:
                cell.pop(port, None)
                if not cell:
                    del self._cells[(port.channel, port.cell)]
        if self._by_ieee.get((port.channel, port.ieee)) is port:
            del self._by_ieee[(port.channel, port.ieee)]
        key = (port.channel, port.pan_id, port.nwk)
        shadowed = self._shadowed.get(key)
        if self._by_short.get(key) is port:
            del self._by_short[key]
            if shadowed:
                self._by_short[key] = shadowed.pop(0)
        elif shadowed and port in shadowed:
            shadowed.remove(port)
        if shadowed is not None and not shadowed:
            del self._shadowed[key]

    def _reindex(self, port: AirPort, *, pan_id: int, nwk: int, channel: int) -> None:
        self.detach(port)
        port.channel, port.pan_id, port.nwk = channel, pan_id, nwk
        self._index(port)

    def nwk_in_use(self, channel: int, pan_id: int, nwk: int) -> bool:
        return (channel, pan_id, nwk) in self._by_short

    def free_nwk(self, channel: int, pan_id: int, *, rng: random.Random | None = None) -> int:
        """A random NWK address nobody on (channel, PAN) uses (a bounded search:
        :func:`radios.addressing.stochastic_address`)."""
        rng = rng or random.Random()
        return stochastic_address(rng.randrange,
                                  lambda nwk: self.nwk_in_use(channel, pan_id, nwk))

    def lookup_ieee(self, ieee: int) -> int | None:
        for (_, value), port in self._by_ieee.items():
            if value == ieee and port.nwk < 0xFFF8:
                return port.nwk
        return None

    def ports(self) -> list[AirPort]:
        return [p for ports in self._by_channel.values() for p in ports]

    def hearers(self, channel: int, sender: AirPort | None) -> list[AirPort]:
        """Who hears a broadcast from ``sender`` on ``channel``: its cell and the ports
        without one, or everyone when the sender has no cell (or is outside the process)."""
        if sender is None or sender.cell is None:
            return list(self._by_channel.get(channel, ()))
        return [*self._open.get(channel, ()), *self._cells.get((channel, sender.cell), ())]

    # -- keys -----------------------------------------------------------------------------
    def report_key(self, key: bytes, label: str) -> None:
        key = bytes(key)
        if key in self.keys:
            return
        self.keys[key] = label
        for listener in list(self._key_listeners):
            listener(key, label)

    def on_key(self, listener: Callable[[bytes, str], None]) -> Callable[[], None]:
        """Call ``listener`` for every key reported so far and from now on."""
        for key, label in list(self.keys.items()):
            listener(key, label)
        self._key_listeners.append(listener)
        return lambda: self._key_listeners.remove(listener)

    # -- taps ---------------------------------------------------------------------------
    def add_tap(self, tap: Tap) -> Callable[[], None]:
        self._taps.append(tap)
        return lambda: self._taps.remove(tap)

    # -- transmission ---------------------------------------------------------------------
    async def transmit(self, mpdu: bytes, sender: AirPort) -> bool:
        """Put a frame on the sender's channel. Returns True when a unicast was taken (the
        MAC ACK); broadcasts always return True."""
        if self._channel_lock is not None and self.air_time is not None:
            dst = destination(mpdu)
            async with self._channel_lock:
                await asyncio.sleep(self.air_time.frame_seconds(
                    len(mpdu) + FCS_LEN, dst is not None and not dst.broadcast))
                return self._deliver(mpdu, sender.channel, sender)
        return self._deliver(mpdu, sender.channel, sender)

    def inject(self, mpdu: bytes, channel: int) -> bool:
        """Deliver a frame that arrived from outside this process (no air time)."""
        return self._deliver(mpdu, channel, None, from_outside=True)

    def _deliver(self, mpdu: bytes, channel: int, sender: AirPort | None,
                 from_outside: bool = False) -> bool:
        self.frames_sent += 1
        self.bytes_sent += len(mpdu) + FCS_LEN
        now = self.clock()
        for tap in self._taps:
            try:
                tap(mpdu, now)
            except Exception:  # a broken tap must never take the air down
                LOGGER.exception("air tap failed")
        dst = destination(mpdu)
        if dst is None:
            return False
        loop = asyncio.get_running_loop()
        if dst.broadcast:
            for port in self.hearers(channel, sender):
                if port is not sender:
                    loop.call_soon(port.receiver, mpdu)
            if self.uplink is not None and not from_outside:
                self.uplink(mpdu, channel, sender)
            return True
        if dst.ext is not None:
            port = self._by_ieee.get((channel, dst.ext))
        else:
            assert dst.short is not None and dst.pan is not None
            port = self._by_short.get((channel, dst.pan, dst.short))
        if port is not None and port is not sender:
            loop.call_soon(port.receiver, mpdu)
            return True
        if self.uplink is not None and not from_outside:
            return self.uplink(mpdu, channel, sender)
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
