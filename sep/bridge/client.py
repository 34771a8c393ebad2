"""The MQTT bridge: an asyncio shell over aiomqtt.

It keeps a connection to the broker (reconnecting with exponential backoff), announces
availability (retained ``online``, last will ``offline``), publishes Home Assistant
discovery documents (again whenever ``homeassistant/status`` says ``online``), publishes
the state document and the readings stream, and takes commands back. Whatever the broker
does, the meter is never blocked: the meter side only calls :meth:`MqttBridge.submit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt

from sep.bridge.commands import Command, CommandError, parse_command
from sep.bridge.config import BridgeConfig
from sep.bridge.outbox import Outbox
from sep.bridge.payloads import (
    MeterState,
    discovery_documents,
    node_id,
    reading_payload,
    state_payload,
)

LOGGER = logging.getLogger(__name__)

CommandHandler = Callable[[Command], Awaitable[dict[str, Any] | None]]


class MqttBridge:
    def __init__(self, config: BridgeConfig, *, ieee: str, model: str, manufacturer: str,
                 sw_version: str, handlers: dict[str, CommandHandler] | None = None,
                 data_dir: Path | None = None) -> None:
        self.config = config
        self.ieee = ieee
        self.node = node_id(ieee)
        self.model, self.manufacturer, self.sw_version = model, manufacturer, sw_version
        self.handlers = handlers or {}
        self.outbox = Outbox(data_dir / "mqtt-outbox.db" if data_dir else None,
                             limit=config.queue_limit)
        self.latest: MeterState | None = None
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self.published = 0
        self.connects = 0
        self.last_error: str | None = None

    # -- topics ---------------------------------------------------------------------------
    def topic(self, leaf: str) -> str:
        return f"{self.config.base_topic}/{self.node}/{leaf}"

    # -- meter side --------------------------------------------------------------------------
    def submit(self, state: MeterState) -> int:
        """Queue a reading (persisted) and remember the state; never blocks on the broker."""
        self.latest = state
        seq = self.outbox.put(self.topic("reading"), lambda seq: reading_payload(seq, state))
        self._wake.set()
        return seq

    def publish_event(self, kind: str, details: dict[str, Any]) -> None:
        self.outbox.put(self.topic("event"), lambda seq: {"seq": seq, "kind": kind, **details})
        self._wake.set()

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-bridge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # aiomqtt can swallow a cancellation in the middle of a (TLS) connect: never
            # let stopping the bridge hang the meter.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            if not self._task.done():
                LOGGER.warning("MQTT bridge did not stop within 5 s; abandoning it")
        self.outbox.close()

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self._session()
                delay = 1.0
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
                LOGGER.warning("MQTT broker %s:%d: %s; retrying in %.0f s", self.config.host,
                               self.config.port, exc, delay)
            except OSError as exc:
                self.last_error = str(exc)
                LOGGER.warning("MQTT connection failed: %s; retrying in %.0f s", exc, delay)
            self.connected.clear()
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, self.config.backoff_max)

    async def _session(self) -> None:
        cfg = self.config
        will = aiomqtt.Will(self.topic("availability"), "offline", qos=1, retain=True)
        async with aiomqtt.Client(
            cfg.host, cfg.port, username=cfg.username, password=cfg.password,
            identifier=cfg.client_id or f"sep-{self.node}", will=will,
            tls_context=cfg.ssl_context(), keepalive=30, timeout=10,
        ) as client:
            self._client = client
            self.connects += 1
            LOGGER.info("MQTT connected to %s:%d", cfg.host, cfg.port)
            await client.publish(self.topic("availability"), "online", qos=1, retain=True)
            await self.publish_discovery(client)
            await client.subscribe(f"{cfg.discovery_prefix}/status", qos=1)
            await client.subscribe(self.topic("command/+"), qos=1)
            self.connected.set()
            tasks = [asyncio.create_task(self._drain(client)),
                     asyncio.create_task(self._listen(client))]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # re-raise what ended the session

    async def publish_discovery(self, client: aiomqtt.Client) -> None:
        docs = discovery_documents(ieee=self.ieee, base=self.config.base_topic,
                                   prefix=self.config.discovery_prefix, model=self.model,
                                   manufacturer=self.manufacturer, sw_version=self.sw_version)
        for topic, doc in docs.items():
            await client.publish(topic, json.dumps(doc), qos=1, retain=True)

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Deliver queued readings in order; each leaves the outbox only after PUBACK."""
        while True:
            batch = self.outbox.peek()
            if not batch:
                if self.latest is not None:
                    await client.publish(self.topic("state"),
                                         json.dumps(state_payload(self.latest)), qos=1,
                                         retain=True)
                self._wake.clear()
                await self._wake.wait()
                continue
            for seq, topic, payload in batch:
                await client.publish(topic, payload, qos=1)
                self.outbox.ack(seq)
                self.published += 1

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else str(
                message.payload or "").encode()
            if topic == f"{self.config.discovery_prefix}/status":
                if payload.strip() == b"online":
                    LOGGER.info("Home Assistant is back: re-publishing discovery")
                    await self.publish_discovery(client)
                continue
            if topic.startswith(self.topic("command/")):
                name = topic.rsplit("/", 1)[-1]
                if name == "result":
                    continue
                result = await self._run_command(name, payload)
                await client.publish(self.topic("command/result"), json.dumps(result), qos=1)

    async def _run_command(self, name: str, payload: bytes) -> dict[str, Any]:
        try:
            cmd = parse_command(name, payload, self.config.command_token)
        except CommandError as exc:
            LOGGER.info("rejected MQTT command %s: %s", name, exc)
            return {"command": name, "id": exc.request_id, "ok": False, "error": str(exc)}
        handler = self.handlers.get(cmd.name)
        if handler is None:
            return {"command": name, "id": cmd.request_id, "ok": False,
                    "error": f"{name} is not available on this meter"}
        try:
            detail = await handler(cmd)
        except (ValueError, LookupError) as exc:
            return {"command": name, "id": cmd.request_id, "ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a command never takes the bridge down
            LOGGER.exception("command %s failed", name)
            return {"command": name, "id": cmd.request_id, "ok": False,
                    "error": f"internal error: {type(exc).__name__}"}
        return {"command": name, "id": cmd.request_id, "ok": True, **(detail or {})}
