"""The MQTT bridge: an asyncio shell over aiomqtt.

It keeps a connection to the broker (reconnecting with exponential backoff), announces
availability (retained ``online``, last will ``offline``, and ``offline`` published before
every clean stop), keeps a retained bridge state document (``<base>/<node>/bridge/state``),
publishes Home Assistant discovery documents (again whenever ``homeassistant/status`` says
``online``, and when the number of tariff tiers changes), publishes the state document and
the readings stream, and takes commands back. Whatever the broker does, the meter is never
blocked: the meter side only calls :meth:`MqttBridge.submit`. Broker errors are reported
once per change for the whole process (:mod:`sep.bridge.status`), not per retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt

from radios.tasks import cancel_and_wait, checkpoint
from sep.bridge.commands import Command, CommandError, parse_command
from sep.bridge.config import BridgeConfig
from sep.bridge.outbox import Outbox
from sep.bridge.payloads import (
    MeterState,
    currency_code,
    discovery_documents,
    node_id,
    reading_payload,
    state_payload,
)
from sep.bridge.status import broker_status, clean_error

LOGGER = logging.getLogger(__name__)

CommandHandler = Callable[[Command], Awaitable[dict[str, Any] | None]]
GOODBYE_TIMEOUT = 3.0  # seconds a clean stop waits for the broker to take "offline"
SWEEP_SECONDS = 1.0  # how long remove_discovery collects retained topics


class MqttBridge:
    def __init__(self, config: BridgeConfig, *, ieee: str, model: str, manufacturer: str,
                 sw_version: str, handlers: dict[str, CommandHandler] | None = None,
                 data_dir: Path | None = None) -> None:
        self.config = config
        self.ieee = ieee
        self.node = node_id(ieee)
        self.model, self.manufacturer, self.sw_version = model, manufacturer, sw_version
        self.handlers = dict(handlers or {})
        self.handlers.setdefault("remove_discovery", self._remove_discovery)
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
        self.status = broker_status(config.broker)
        self.discovery = True  # off after remove_discovery for this node, until restart
        self._announced: dict[str, dict[str, Any]] = {}  # discovery topic → document
        self.started = time.time()
        self.commands_run = 0
        #: told of every command and its result (the meter's event log)
        self.on_command: Callable[[str, dict[str, Any]], None] | None = None
        if config.supply_control and config.command_token is not None:
            LOGGER.warning("MQTT: no supply switch for Home Assistant: commands need the "
                           "token, which a retained discovery document would reveal "
                           "(set_supply with the token still works)")

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
        """Say ``offline`` (availability and bridge state, retained) if connected, then
        disconnect cleanly — so a stopped meter never stays ``online`` on the broker."""
        client = self._client  # set while a session is up (even before it is announced)
        if client is not None:
            try:
                await asyncio.wait_for(self._goodbye(client), GOODBYE_TIMEOUT)
            except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
                LOGGER.info("MQTT: could not say offline before stopping: %s", exc)
        if self._task is not None:
            # aiomqtt can swallow a cancellation (Python 3.11's wait_for inside publish and
            # connect): cancel until it ends, and never let stopping the bridge hang the meter
            if await cancel_and_wait([self._task], 5):
                LOGGER.warning("MQTT bridge did not stop within 5 s; abandoning it")
        self.status.stopped(self.node)
        self.outbox.close()

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        await self._publish(client, self.topic("bridge/state"),
                            json.dumps(self.bridge_state("offline")), qos=1, retain=True)
        await self._publish(client, self.topic("availability"), "offline", qos=1, retain=True)

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self._session()
                delay = 1.0
            except (aiomqtt.MqttError, OSError) as exc:
                self.last_error = clean_error(exc)
                self.status.failed(self.node, exc)
                LOGGER.debug("MQTT broker %s: %s; retrying in %.0f s", self.config.broker,
                             exc, delay)
            self.connected.clear()
            self._client = None
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
            await self._publish(client, self.topic("availability"), "online", qos=1, retain=True)
            await self._publish(client, self.topic("bridge/state"),
                                json.dumps(self.bridge_state("online")), qos=1, retain=True)
            await self.publish_discovery(client)
            await client.subscribe(f"{cfg.discovery_prefix}/status", qos=1)
            await client.subscribe(self.topic("command/+"), qos=1)
            self.connected.set()
            self.last_error = None
            self.status.connected(self.node)
            tasks = [asyncio.create_task(self._drain(client)),
                     asyncio.create_task(self._listen(client))]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                await cancel_and_wait(tasks, 5)
            for task in done:
                task.result()  # re-raise what ended the session

    def bridge_state(self, state: str) -> dict[str, Any]:
        """The retained ``bridge/state`` document."""
        return {
            "state": state, "version": self.sw_version, "broker": self.config.broker,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "connects": self.connects, "published": self.published,
            "queued": len(self.outbox) if state == "online" else None,
            "dropped": self.outbox.dropped, "commands_run": self.commands_run,
            "commands": sorted(self.handlers), "discovery": self.discovery,
            "supply_control": self.config.supply_control,
        }

    # -- discovery ------------------------------------------------------------------------
    def discovery_documents(self) -> dict[str, dict[str, Any]]:
        s = self.latest
        return discovery_documents(
            ieee=self.ieee, base=self.config.base_topic, prefix=self.config.discovery_prefix,
            model=self.model, manufacturer=self.manufacturer, sw_version=self.sw_version,
            tiers=len(s.tiers_delivered) if s else 0,
            currency=currency_code(s.currency) if s else "GBP",
            supply_control=self.config.supply_control and "set_supply" in self.handlers
            and self.config.command_token is None)

    async def publish_discovery(self, client: aiomqtt.Client) -> None:
        if not self.discovery:
            return
        docs = self.discovery_documents()
        for topic in set(self._announced) - set(docs):  # an entity that is gone (a tier)
            await self._publish(client, topic, b"", qos=1, retain=True)
        for topic, doc in docs.items():
            await self._publish(client, topic, json.dumps(doc), qos=1, retain=True)
        self._announced = docs

    @staticmethod
    async def _publish(client: aiomqtt.Client, topic: str, payload: str | bytes, *,
                       qos: int = 1, retain: bool = False) -> None:
        await client.publish(topic, payload, qos=qos, retain=retain)
        checkpoint()  # a stop that aiomqtt's wait_for swallowed still stops this task

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Deliver queued readings in order; each leaves the outbox only after PUBACK."""
        while True:
            batch = self.outbox.peek()
            if not batch:
                if self.latest is not None:
                    if self.discovery and self.discovery_documents() != self._announced:
                        await self.publish_discovery(client)  # tiers or currency changed
                    await self._publish(client, self.topic("state"),
                                        json.dumps(state_payload(self.latest)), qos=1,
                                        retain=True)
                self._wake.clear()
                await self._wake.wait()
                continue
            for seq, topic, payload in batch:
                await self._publish(client, topic, payload, qos=1)
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
                await self._publish(client, self.topic("command/result"),
                                    json.dumps(result), qos=1)
                await self._publish(client, self.topic("bridge/state"),
                                    json.dumps(self.bridge_state("online")), qos=1,
                                    retain=True)

    async def _run_command(self, name: str, payload: bytes) -> dict[str, Any]:
        result = await self._carry_out(name, payload)
        self.commands_run += 1
        if self.on_command is not None:
            try:
                self.on_command(name, result)
            except Exception:  # noqa: BLE001 - the audit trail must not take the bridge down
                LOGGER.exception("recording command %s failed", name)
        return result

    async def _carry_out(self, name: str, payload: bytes) -> dict[str, Any]:
        try:
            cmd = parse_command(name, payload, self.config.command_token)
        except CommandError as exc:
            LOGGER.info("rejected MQTT command %s: %s", name, exc)
            return {"command": name, "id": exc.request_id, "ok": False, "error": str(exc)}
        handler = self.handlers.get(cmd.name)
        if handler is None:
            return {"command": name, "id": cmd.request_id, "ok": False,
                    "error": f"{name} is not available on this meter"
                    + (" (start it with --mqtt-supply-control)" if name == "set_supply"
                       else "")}
        try:
            detail = await handler(cmd)
        except (ValueError, LookupError) as exc:
            return {"command": name, "id": cmd.request_id, "ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a command never takes the bridge down
            LOGGER.exception("command %s failed", name)
            return {"command": name, "id": cmd.request_id, "ok": False,
                    "error": f"internal error: {type(exc).__name__}"}
        return {"command": name, "id": cmd.request_id, "ok": True, **(detail or {})}

    # -- remove_discovery -------------------------------------------------------------------
    async def _remove_discovery(self, cmd: Command) -> dict[str, Any]:
        """Clear the retained discovery documents of a meter (this one by default, or
        ``node``: a meter that is gone) and its retained availability, state and bridge
        state, so Home Assistant drops the device. This meter does not announce itself
        again until it restarts."""
        node = cmd.params.get("node", self.node)
        cfg = self.config
        patterns = [f"{cfg.discovery_prefix}/+/{node}/+/config"]
        if node == self.node:
            self.discovery = False
        else:  # a meter that is gone: its last retained words go too
            patterns += [f"{cfg.base_topic}/{node}/{leaf}"
                         for leaf in ("availability", "state", "bridge/state")]
        found: set[str] = set(self._announced) if node == self.node else set()
        # a client of its own: the session's client delivers messages to this very loop
        async with aiomqtt.Client(
            cfg.host, cfg.port, username=cfg.username, password=cfg.password,
            identifier=f"sep-{self.node}-sweep-{random.getrandbits(24):06x}",
            tls_context=cfg.ssl_context(), timeout=10,
        ) as sweeper:
            for pattern in patterns:
                await sweeper.subscribe(pattern, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SWEEP_SECONDS):
                    async for message in sweeper.messages:
                        if message.retain and message.payload:
                            found.add(str(message.topic))
            for topic in sorted(found):
                await sweeper.publish(topic, b"", qos=1, retain=True)
        if node == self.node:
            self._announced = {}
        removed = sorted(t for t in found if t.endswith("/config"))
        LOGGER.warning("MQTT: removed the discovery of meter %s (%d entities)", node,
                       len(removed))
        return {"node": node, "removed": len(removed)}
