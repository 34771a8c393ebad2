"""Key Establishment on a running node: the asyncio shell around the sans-IO core.

:class:`KeService` sits in front of a zigpy ``ControllerApplication``'s ``packet_received``
(as hubsim's services do): frames of cluster 0x0800 on its endpoint go to the
:class:`~sep.clusters.key_establishment.KeyEstablishment` core, run off the event loop
(:mod:`sep.ke.executor`); everything else goes on unchanged. Effects come back to
the loop: replies are sent, and a key both sides proved is installed in the radio as the APS
link key with that partner (``app.install_link_key(ieee, key, "cbke")``; the virtual radio
has it, and then takes SE frames from that partner only under it).

:meth:`KeService.establish` runs an exchange as the initiator (finding the partner's Key
Establishment endpoint with a ZDO Match_Desc_req first) and returns whether a key was
installed. The responder side needs nothing: partners initiate, the core answers.

Time: the core runs on wall-clock Unix time (certificate validity, the generate-time fields
and timeouts are real seconds), whatever the simulated clock of the node says.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import zigpy.types as t
import zigpy.zdo.types as zdo_t

from radios.tasks import cancel_and_wait
from sep.clusters.key_establishment import (
    Effect,
    KeyEstablished,
    KeyEstablishment,
    KeyEstablishmentFailed,
)
from sep.ke.executor import OffLoopKeyEstablishment
from sep.packets import to_packet
from sep.security.certs import Credentials
from sep.zcl import key_establishment as ke
from sep.zcl.frames import MalformedFrame, Reply, Request, decode_header

LOGGER = logging.getLogger(__name__)
SE_PROFILE = 0x0109
LINK_KIND = "cbke"


def eui64_int(ieee: t.EUI64 | str | int) -> int:
    """An EUI-64 as the int the KE core uses (most significant byte first)."""
    if isinstance(ieee, int):
        return ieee
    return int.from_bytes(bytes(t.EUI64.convert(str(ieee))), "little")


def int_eui64(value: int) -> t.EUI64:
    return t.EUI64(value.to_bytes(8, "little"))


class KeService:
    def __init__(self, app: Any, credentials: Sequence[Credentials], *, endpoint: int,
                 own_ieee: t.EUI64 | str | int,
                 executor: concurrent.futures.Executor | None = None,
                 clock: Callable[[], float] = time.time, **core_options: Any) -> None:
        self.app = app
        self.endpoint = endpoint
        self.clock = clock
        self.core = KeyEstablishment(credentials, endpoint=endpoint,
                                     own_ieee=eui64_int(own_ieee), **core_options)
        self.offloop = OffLoopKeyEstablishment(self.core, executor)
        #: partner IEEE (int) → the last exchange that installed a key with it
        self.established: dict[int, KeyEstablished] = {}
        self.failures: list[KeyEstablishmentFailed] = []
        self.on_established: list[Callable[[KeyEstablished], Any]] = []
        self.on_failed: list[Callable[[KeyEstablishmentFailed], Any]] = []
        self._waiters: dict[int, list[asyncio.Future[bool]]] = {}
        self._matches: dict[int, asyncio.Future[list[int]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._upstream = app.packet_received
        app.packet_received = self._on_packet

    @property
    def clusters(self) -> list[int]:
        """What to add to the endpoint's descriptor (server and client)."""
        return [ke.CLUSTER_ID]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="ke-tick")

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._ticker] if self._ticker else [])]
        if await cancel_and_wait(tasks, 10):
            LOGGER.warning("Key Establishment: a task did not stop within 10 s; abandoning it")
        self._ticker = None
        self.offloop.close()

    def keyed(self, partner: t.EUI64 | str | int) -> bool:
        """Whether the radio holds a CBKE link key with ``partner``."""
        has = getattr(self.app, "has_link_key", None)
        if has is None:
            return eui64_int(partner) in self.established
        return bool(has(int_eui64(eui64_int(partner)), LINK_KIND))

    # -- the initiator -----------------------------------------------------------------------
    async def establish(self, partner: t.EUI64 | str | int, nwk: int, *,
                        endpoint: int | None = None, timeout: float = 120.0,
                        suite: int | None = None) -> bool:
        """Run Key Establishment with ``partner`` (at ``nwk``); True once the link key is
        installed, False when the exchange failed or timed out (the reason is logged)."""
        ieee = eui64_int(partner)
        if endpoint is None:
            found = await self.find_endpoint(nwk)
            if not found:
                LOGGER.warning("key establishment with %016x: no Key Establishment endpoint "
                               "at 0x%04X", ieee, nwk)
                return False
            endpoint = found[0]
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(ieee, []).append(fut)
        await self._apply(await self.offloop.initiate(nwk, endpoint, ieee, self.clock(),
                                                      suite=suite))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            LOGGER.warning("key establishment with %016x: no result in %.0f s", ieee, timeout)
            return False
        finally:
            waiters = self._waiters.get(ieee, [])
            if fut in waiters:
                waiters.remove(fut)

    async def find_endpoint(self, nwk: int, timeout: float = 5.0) -> list[int]:
        """The endpoints of ``nwk`` that serve Key Establishment (unicast Match_Desc_req)."""
        tsn = int(self.app.get_sequence())
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._matches[tsn] = fut
        schema = zdo_t.CLUSTERS[zdo_t.ZDOCmd.Match_Desc_req][1]
        payload = bytes([tsn]) + b"".join(
            typ(value).serialize() for typ, value in zip(
                schema, [nwk, SE_PROFILE, [ke.CLUSTER_ID], []], strict=True))
        try:
            for _ in range(3):
                with contextlib.suppress(Exception):
                    await self.app.send_packet(t.ZigbeePacket(
                        src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK,
                                              address=self.app.state.node_info.nwk),
                        src_ep=0, dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK,
                                                        address=t.NWK(nwk)),
                        dst_ep=0, tsn=tsn, profile_id=0,
                        cluster_id=zdo_t.ZDOCmd.Match_Desc_req,
                        data=t.SerializableBytes(payload),
                        tx_options=t.TransmitOptions.ACK, radius=30))
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(fut), timeout)
            return []
        finally:
            self._matches.pop(tsn, None)

    # -- frames in ---------------------------------------------------------------------------
    def _on_packet(self, packet: t.ZigbeePacket) -> None:
        cluster = int(packet.cluster_id)
        if int(packet.profile_id) == 0 and int(packet.dst_ep or 0) == 0 \
                and cluster == zdo_t.ZDOCmd.Match_Desc_rsp and self._matches:
            self._match_answer(bytes(packet.data.serialize()))
        if (cluster == ke.CLUSTER_ID and int(packet.profile_id) == SE_PROFILE
                and int(packet.dst_ep or 0) in (self.endpoint, 0xFF)):
            self._spawn(self._handle(packet))
            return
        self._upstream(packet)

    def _match_answer(self, data: bytes) -> None:
        if not data:
            return
        fut = self._matches.get(data[0])
        if fut is None or fut.done():
            return
        try:
            args, _ = t.deserialize(data[1:], zdo_t.CLUSTERS[zdo_t.ZDOCmd.Match_Desc_rsp][1])
        except (ValueError, KeyError, IndexError):
            return
        status, _nwk, matches = args
        if status == zdo_t.Status.SUCCESS:
            fut.set_result([int(m) for m in matches])

    async def _handle(self, packet: t.ZigbeePacket) -> None:
        src = packet.src
        if src is None or src.addr_mode != t.AddrMode.NWK:
            return
        try:
            header, payload = decode_header(bytes(packet.data.serialize()))
        except MalformedFrame as exc:
            LOGGER.info("key establishment: undecodable frame from 0x%04X: %s",
                        int(src.address), exc)
            return
        sender = getattr(packet, "nwk_src_ieee", None)
        if sender is None:  # a radio that does not say: what the network knows of it
            with contextlib.suppress(KeyError):
                sender = self.app.get_device(nwk=src.address).ieee
        dst = packet.dst
        req = Request(src_nwk=int(src.address), src_ep=int(packet.src_ep or 0),
                      dst_ep=self.endpoint, profile_id=SE_PROFILE, cluster_id=ke.CLUSTER_ID,
                      header=header, payload=payload,
                      broadcast=dst is not None and dst.addr_mode in (t.AddrMode.Broadcast,
                                                                      t.AddrMode.Group),
                      src_ieee=eui64_int(sender) if sender is not None else None,
                      aps_secured=bool(packet.tx_options & t.TransmitOptions.APS_Encryption))
        await self._apply(await self.offloop.handle(req, self.clock()))
        self._wake.set()

    # -- effects out -------------------------------------------------------------------------
    async def _apply(self, effects: list[Effect]) -> None:
        # the key goes into the radio before the last reply leaves: the partner may use it
        # as soon as it has that reply. A radio that cannot take it (a stick's key table
        # full) ends the exchange here: no confirmation goes out for a key we do not hold
        installed = True
        for effect in effects:
            if isinstance(effect, KeyEstablished):
                installed = await self._installed(effect) and installed
        for effect in effects:
            if isinstance(effect, Reply) and installed:
                await self._send(effect)
            elif isinstance(effect, KeyEstablishmentFailed):
                self._failed(effect)
        self._wake.set()

    async def _installed(self, done: KeyEstablished) -> bool:
        install = getattr(self.app, "install_link_key", None)
        if install is not None:  # a stick's key table is set over EZSP: awaited
            try:
                result = install(int_eui64(done.partner_ieee), done.link_key, LINK_KIND)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - the radio's refusal, whatever it is
                self._failed(KeyEstablishmentFailed(
                    done.partner_ieee, done.partner_nwk, None,
                    f"the radio did not take the link key: {exc}", done.initiator))
                return False
        self.established[done.partner_ieee] = done
        LOGGER.info("key establishment with %016x (0x%04X) done: suite %d, link key installed",
                    done.partner_ieee, done.partner_nwk, done.suite)
        for fut in self._waiters.pop(done.partner_ieee, []):
            if not fut.done():
                fut.set_result(True)
        for callback in self.on_established:
            callback(done)
        return True

    def _failed(self, failed: KeyEstablishmentFailed) -> None:
        self.failures.append(failed)
        del self.failures[:-50]
        who = f"{failed.partner_ieee:016x}" if failed.partner_ieee is not None else "?"
        LOGGER.warning("key establishment with %s (0x%04X) failed: %s%s", who,
                       failed.partner_nwk, failed.reason,
                       f" ({failed.status.name})" if failed.status is not None else "")
        if failed.partner_ieee is not None and failed.initiator:
            for fut in self._waiters.pop(failed.partner_ieee, []):
                if not fut.done():
                    fut.set_result(False)
        for callback in self.on_failed:
            callback(failed)

    async def _send(self, reply: Reply) -> None:
        # network key only (SE's policy for 0x0800): the link key is what this makes
        packet = to_packet(reply, int(self.app.state.node_info.nwk))
        try:
            await self.app.send_packet(packet)
        except Exception as exc:  # noqa: BLE001 - a lost frame is the timeouts' business
            LOGGER.info("key establishment frame to 0x%04X not delivered: %s",
                        reply.dst_nwk, exc)

    async def _tick(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            delay = 3600.0 if deadline is None else max(0.0, deadline - self.clock())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(delay, 3600.0))
                continue
            await self._apply(await self.offloop.tick(self.clock()))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
