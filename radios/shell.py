"""The asyncio shell around a :class:`radios.node.ZigbeeNode`: its radio on the air.

It attaches the node to a :class:`radios.air.VirtualAir`, feeds it every frame heard,
transmits what it queues (one at a time, in order, as one radio does), waits for APS
ACKs, runs the joining procedure (scan the channels, pick a parent that permits joining,
associate, wait for the trust centre's key; or a secured rejoin), keeps the port's
address in step with the node's, and writes the node's state within
:data:`FLUSH_DELAY` of any change (frame-counter reservations are written at once by
the node itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from radios.acks import PendingAcks
from radios.air import AirPort, VirtualAir
from radios.node import AckIndication, DataIndication, NodeEvent, Outgoing, ZigbeeNode
from radios.tasks import cancel_and_wait

LOGGER = logging.getLogger(__name__)

FLUSH_DELAY = 0.05  # seconds: incoming counters and tables reach the disk this soon
SCAN_WINDOW = 0.15  # seconds a channel is listened to for beacons
ASSOCIATION_WAIT = 1.0
KEY_WAIT = 3.0
APS_ACK_TIMEOUT = 3.0


class DeliveryFailed(Exception):
    """No MAC ACK or no APS ACK for a unicast."""


class JoinFailed(Exception):
    pass


class NodeShell:
    def __init__(self, air: VirtualAir, node: ZigbeeNode, *,
                 on_data: Callable[[DataIndication], None] = lambda ind: None,
                 on_event: Callable[[NodeEvent], None] = lambda ev: None) -> None:
        self.air = air
        self.node = node
        self.on_data = on_data
        self.on_event = on_event
        self.port: AirPort | None = None
        self.acks = PendingAcks()
        self._queue: asyncio.Queue[tuple[Outgoing, asyncio.Future[bool] | None]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._flush: asyncio.TimerHandle | None = None
        self._waiters: list[tuple[set[str], asyncio.Future[NodeEvent]]] = []
        node.address_free = self._address_free
        #: the port's broadcast neighbourhood on the air (``AirPort.cell``; None: everyone)
        self.cell: int | None = None
        self.frames_sent = 0
        self.frames_received = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        st = self.node.state
        self.port = self.air.attach(st.ieee, self._on_mpdu, channel=st.channel,
                                    coordinator=self.node.is_coordinator, cell=self.cell)
        self._sync_port()
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    async def stop(self) -> None:
        """Leave the air at once (before the first await: a stop that is itself cancelled,
        or that runs while the caller goes on, never leaves the node attached), then let
        the send loop end."""
        sender, self._sender = self._sender, None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self.node.dirty:
            self.node.persist()
        if self.port is not None:
            self.port.detach()
            self.port = None
        self.acks.cancel_all()
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        if sender is not None:
            await cancel_and_wait([sender], 10)

    def radio_off(self) -> None:
        """The radio leaves the air (a fault, an unplugged stick); the node remembers all."""
        if self.port is not None:
            self.port.detach()

    def radio_on(self) -> None:
        if self.port is not None and self.port not in self.air.ports():
            st = self.node.state
            self.port = self.air.attach(st.ieee, self._on_mpdu, channel=st.channel,
                                        coordinator=self.node.is_coordinator, cell=self.cell)
            self._sync_port()

    def _address_free(self, nwk: int) -> bool:
        st = self.node.state
        return not self.air.nwk_in_use(st.channel, st.pan_id, nwk)

    def _sync_port(self) -> None:
        port = self.port
        if port is None:
            return
        st = self.node.state
        if port.channel != st.channel:
            port.tune(st.channel)
        nwk = st.nwk if self.node.status in ("joined", "authenticating", "rejoining") else 0xFFFE
        if (port.pan_id, port.nwk) != (st.pan_id, nwk):
            port.set_address(st.pan_id, nwk)

    # -- the pump ------------------------------------------------------------------------------
    def _on_mpdu(self, mpdu: bytes) -> None:
        self.frames_received += 1
        try:
            self.node.receive(mpdu)
        except Exception:  # noqa: BLE001 - a frame must never take the node down
            self.node.stats["internal_error"] += 1
            LOGGER.exception("node failed on a received frame")
        self.pump()

    def pump(self) -> None:
        """Act on what the node queued: frames to send, events for the host."""
        self._sync_port()
        for out in self.node.take_outbox():
            self._queue.put_nowait((out, None))
        for ev in self.node.take_events():
            if isinstance(ev, AckIndication):
                self.acks.resolve(ev.src_nwk, ev.counter)
            elif isinstance(ev, DataIndication):
                try:
                    self.on_data(ev)
                except Exception:  # noqa: BLE001
                    LOGGER.exception("host failed on a data indication")
            else:
                for kinds, fut in list(self._waiters):
                    if ev.kind in kinds and not fut.done():
                        fut.set_result(ev)
                try:
                    self.on_event(ev)
                except Exception:  # noqa: BLE001
                    LOGGER.exception("host failed on a node event")
        self._sync_port()
        if self.node.dirty and self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush_now)

    def _flush_now(self) -> None:
        self._flush = None
        if self.node.dirty:
            try:
                self.node.persist()
            except OSError:
                LOGGER.exception("radio state not written")

    async def _send_loop(self) -> None:
        while True:
            out, fut = await self._queue.get()
            ok = False
            try:
                if self.port is not None:
                    ok = await self.port.transmit(out.mpdu)
                    self.frames_sent += 1
            except Exception:  # noqa: BLE001
                LOGGER.exception("transmit failed")
            if fut is not None and not fut.done():
                fut.set_result(ok)
            await asyncio.sleep(0)  # the receivers take this frame before the next one

    async def transmit(self, out: Outgoing) -> bool:
        """Queue one frame; the MAC ACK (unicast) or True (broadcast)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((out, fut))
        return await fut

    async def send(self, out: Outgoing, *, ack_timeout: float = APS_ACK_TIMEOUT) -> None:
        """Transmit a data frame; raise :class:`DeliveryFailed` without MAC/APS ACK."""
        self.pump()  # frames the node queued while building this one go first
        with contextlib.ExitStack() as stack:
            fut = stack.enter_context(self.acks.expect(out.dst_nwk, out.counter)) if out.ack \
                else None
            if not await self.transmit(out):
                raise DeliveryFailed(f"no MAC ACK from 0x{out.dst_nwk:04X}")
            if fut is not None:
                try:
                    await asyncio.wait_for(fut, ack_timeout)
                except TimeoutError:
                    raise DeliveryFailed(f"no APS ACK from 0x{out.dst_nwk:04X}") from None

    # -- waiting for the node ---------------------------------------------------------------------
    async def wait_event(self, kinds: set[str], timeout: float) -> NodeEvent:
        fut: asyncio.Future[NodeEvent] = asyncio.get_running_loop().create_future()
        entry = (kinds, fut)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.remove(entry)

    # -- joining ---------------------------------------------------------------------------------
    async def scan(self, channels: list[int]) -> list[Any]:
        """Beacons heard on ``channels`` (the node returns to ``down`` afterwards)."""
        found = []
        for channel in channels:
            self.node.status = "down"
            self.node.state.channel = channel
            self._sync_port()
            self.node.start_scan()
            self.pump()
            await asyncio.sleep(SCAN_WINDOW)
            found += [(channel, b) for b in self.node.beacons]
        self.node.status = "down"
        return found

    async def join(self, channels: list[int], *, extended_pan_id: int | None = None,
                   attempts: int = 3) -> None:
        """Join a network that permits joining; raise :class:`JoinFailed`."""
        reasons: list[str] = []
        for _ in range(attempts):
            beacons = await self.scan(channels)
            candidates = [(ch, b) for ch, b in beacons if b.permit_joining and b.router_capacity
                          and (extended_pan_id is None or b.extended_pan_id == extended_pan_id)]
            if not candidates:
                reasons.append("no network permits joining" if beacons else "no network heard")
                await asyncio.sleep(0.5)
                continue
            candidates.sort(key=lambda cb: (not cb[1].pan_coordinator, cb[1].depth))
            for channel, beacon in candidates:
                self.node.state.channel = channel
                self.node.associate(beacon)
                self._sync_port()
                self.pump()
                try:
                    ev = await self.wait_event({"joined", "join_failed"},
                                               ASSOCIATION_WAIT + KEY_WAIT)
                except TimeoutError:
                    self.node.join_timed_out("no network key from the trust centre")
                    self.pump()
                    reasons.append(f"no key via 0x{beacon.source:04X} on PAN 0x{beacon.pan_id:04X}")
                    continue
                if ev.kind == "joined":
                    return
                reasons.append(str(ev.details.get("reason")))
        raise JoinFailed("; ".join(dict.fromkeys(reasons)) or "join failed")

    async def rejoin(self, *, timeout: float = 2.0) -> None:
        """A secured rejoin through any router or the coordinator of our PAN."""
        st = self.node.state
        beacons = await self.scan([st.channel])
        parents = [b for _, b in beacons if b.pan_id == st.pan_id
                   and b.extended_pan_id == st.extended_pan_id]
        parents.sort(key=lambda b: (b.source != st.parent, not b.pan_coordinator))
        for beacon in parents:
            self.node.start_rejoin(beacon.source)
            self._sync_port()
            self.pump()
            try:
                ev = await self.wait_event({"joined", "join_failed"}, timeout)
            except TimeoutError:
                self.node.join_timed_out("no rejoin response")
                self.pump()
                continue
            if ev.kind == "joined":
                return
        raise JoinFailed(f"no parent answered a rejoin on PAN 0x{st.pan_id:04X}")
