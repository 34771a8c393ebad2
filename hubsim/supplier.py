"""The supplier role: prices and messages from the energy supplier, carried by the comms hub.

In a SMETS2 HAN the supplier's head end reaches the home through the comms hub. Here the
hub carries an Energy Service Interface (ESI) on its SE endpoint: a Price server and a
Messaging server — sep's own sans-IO servers, the same code the meter runs — served at
packet level on the hub's zigpy application. The meter finds the ESI (ZDO Match_Desc for
a Price server), asks it for the current price and last message, and is pushed to from
then on; it re-publishes what it gets to its own HAN (the IHD), and sends back the
confirmations the household gives.

The local API (``set_tariff``, ``schedule_price``, ``send_message``, ``cancel_message``)
is what hubsim's scenarios and the demo call. A supplier given no tariff publishes no
prices (its ESI has no Price server) and the meter keeps its own tariff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import zigpy.application
import zigpy.types as t

from radios.tasks import cancel_and_wait
from sep.clusters.base import ClusterServer
from sep.clusters.general import TimeServer
from sep.clusters.messaging import Message, MessagingServer
from sep.clusters.price import PriceServer
from sep.endpoint import SeEndpoint
from sep.meter.tariff import Tariff
from sep.packets import serve, to_packet
from sep.zcl.frames import Reply

LOGGER = logging.getLogger(__name__)

ESI_DEVICE_TYPE = 0x0500  # SE 1.4 device id: Energy Service Interface


class _CallableClock:
    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now


class Supplier:
    def __init__(self, app: zigpy.application.ControllerApplication, *, endpoint: int,
                 clock: Callable[[], float] = time.time, tariff: Tariff | None = None,
                 tick_seconds: float = 0.5) -> None:
        self.app = app
        self.clock = clock
        self.tick_seconds = tick_seconds
        # Without a tariff the supplier publishes no prices (the meter keeps its own).
        self.price = PriceServer(tariff=tariff) if tariff is not None else None
        self.messaging = MessagingServer(on_confirm=self._confirmed)
        # the HAN's time master: the comms hub serves Time (meters synchronise to it)
        self.time = TimeServer(_CallableClock(clock), master=True)
        servers: list[ClusterServer] = [self.time, self.messaging]
        if self.price is not None:
            servers.insert(1, self.price)
        self.endpoint = SeEndpoint(endpoint, servers, device_type=ESI_DEVICE_TYPE)
        self.confirmations: list[dict[str, Any]] = []
        self.log: list[str] = []
        self.frames_sent = 0
        self._upstream = app.packet_received
        app.packet_received = self._on_packet  # type: ignore[method-assign]
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="supplier")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], 10)
        for task in list(self._sends):
            task.cancel()

    async def _run(self) -> None:
        while True:
            try:
                for reply in self.endpoint.reports(self.clock()):  # scheduled prices go out
                    self._send(reply)
            except Exception:  # noqa: BLE001 - the hub keeps running
                LOGGER.exception("supplier tick failed")
            await asyncio.sleep(self.tick_seconds)

    @property
    def clients(self) -> set[tuple[int, int]]:
        """The nodes (meters) the ESI publishes to."""
        return set().union(*(s.clients for s in self.endpoint.servers.values()))

    def _prices(self) -> PriceServer:
        if self.price is None:
            raise LookupError("this supplier has no tariff (CommsHub(tariff=...))")
        return self.price

    def set_tariff(self, tariff: Tariff, *, start: float | None = None) -> None:
        """A new tariff, now or from ``start``; the meters are told at once."""
        self._prices().set_tariff(tariff, self.clock(), start=start)
        self._note(f"tariff {tariff.label!r} (id {tariff.issuer_tariff_id}) published")
        self.flush()

    def schedule_price(self, *, tier: int, unit_rate: str, label: str, start: int,
                       duration_minutes: int) -> None:
        """A price event (e.g. a peak) from ``start`` for ``duration_minutes``."""
        self._prices().schedule_price(tier=tier, unit_rate=unit_rate, label=label,
                                      now=self.clock(), start=start,
                                      duration_minutes=duration_minutes)
        self._note(f"price {label} {unit_rate}/kWh scheduled")
        self.flush()

    # -- the supplier's actions ---------------------------------------------------------------
    def send_message(self, text: str, **options: Any) -> Message:
        msg, _frame = self.messaging.display_message(text, now=self.clock(), **options)
        self._note(f"message {msg.message_id} sent: {text!r}")
        self.flush()
        return msg

    def cancel_message(self, message_id: int) -> None:
        self.messaging.cancel_message(message_id)
        self._note(f"message {message_id} cancelled")
        self.flush()

    def flush(self) -> None:
        for reply in self.endpoint.pushes():
            self._send(reply)

    def _confirmed(self, msg: Message, confirmation: dict[str, Any]) -> None:
        entry = {"message_id": msg.message_id, **confirmation}
        self.confirmations.append(entry)
        answer = f" ({confirmation['answer']})" if confirmation.get("answer") else ""
        self._note(f"message {msg.message_id} confirmed{answer}")

    def _note(self, text: str) -> None:
        LOGGER.info("supplier: %s", text)
        self.log.append(text)
        del self.log[:-50]

    # -- packets ------------------------------------------------------------------------------
    def _on_packet(self, packet: t.ZigbeePacket) -> None:
        if int(packet.cluster_id) not in self.endpoint.servers:
            self._upstream(packet)  # the hub's endpoint has more (OTA, Time): not ours
            return
        replies = serve(self.endpoint, packet, self.clock())
        if replies is None:
            self._upstream(packet)
            return
        for reply in replies:
            self._send(reply)
        self.flush()

    def _send(self, reply: Reply) -> None:
        task = asyncio.get_running_loop().create_task(self._send_now(reply))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send_now(self, reply: Reply) -> None:
        try:
            await self.app.send_packet(to_packet(reply, int(self.app.state.node_info.nwk)))
            self.frames_sent += 1
        except Exception as exc:  # noqa: BLE001 - an unreachable meter hears it next time
            LOGGER.info("supplier frame to 0x%04X not delivered: %s", reply.dst_nwk, exc)
