"""The MQTT command handler campaign: command documents into the meter's bridge
(``sep/bridge``: ``MqttBridge._run_command`` with the meter's own handlers), judged by a
strict JSON parser, the documented result format and what each command may change.

Documents start from a valid one per command (``display_message``, ``cancel_message``,
``publish_price``, ``set_tariff`` with a whole tariff, ``image_notify``) and are mutated
where they are valid (``tests/docgen.py``), given an id of any kind, the right token, a wrong
one or none; then, now and then, the bytes are damaged: cut, not UTF-8, not an object, nested
past Python's recursion limit, over the size limit. Unknown and odd command names too. The
bridge is configured with a command token for half the documents.

The oracle, per command:

- nothing raises and no catch-all fires (the handler's "command ... failed" log record with
  its traceback, and the "internal error" result it sends);
- the result the bridge publishes is strict JSON (no NaN/Infinity) with ``command``,
  ``ok`` and, when refused, an ``error``;
- a refused command changes nothing (messages, prices, the tariff); an accepted one only
  what it is for; and after it the meter still answers a GetCurrentPrice and its pushes
  with frames zigpy reads.

Default run: a short sample, and a sample through a real mosquitto (the topics, the
result topic, the bridge staying connected). The campaign (100,000 commands)::

    nice -n 15 .venv/bin/python -m pytest -m slow -s -p no:cacheprovider tests/test_campaign_mqtt.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import Any

import aiomqtt
import pytest
from broker import Broker
from docgen import json_safe, mutate, tariff_documents
from fuzzgen import Campaign, CatchAllObserver
from zigpy.zcl import foundation

from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.bridge.client import MqttBridge
from sep.bridge.config import BridgeConfig
from sep.clock import ManualClock
from sep.zcl.price import Price

TOKEN = "t0k"
IEEE = "00:0d:6f:00:00:00:3a:01"
NAMES = ("display_message", "cancel_message", "publish_price", "set_tariff", "image_notify")
MAY_CHANGE = {"display_message": {"messages"}, "cancel_message": {"messages"},
              "publish_price": {"prices"}, "set_tariff": {"tariff", "prices"},
              "image_notify": set()}


def strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


class MqttCampaign:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.clock = ManualClock()
        self.app = MeterApp(MeterSettings(ieee=IEEE, tick_seconds=3600), clock=self.clock,
                            air=VirtualAir())
        handlers = self.app.command_handlers()
        self.bridges = [MqttBridge(BridgeConfig(host="127.0.0.1", command_token=token),
                                   ieee=IEEE, model="m", manufacturer="sep", sw_version="0",
                                   handlers=handlers) for token in (None, TOKEN)]
        self.tariffs = [json_safe(d) for d in tariff_documents()]
        self.tariff_id = 9000
        self.good = {
            "display_message": {"text": "Hello", "message_id": 7, "duration_minutes": 30,
                                "importance": "high", "confirmation_required": True},
            "cancel_message": {"message_id": 7},
            "publish_price": {"tier": 2, "unit_rate": 0.25, "label": "Peak",
                              "duration_minutes": 60},
            "image_notify": {"jitter": 50},
        }
        # the IHD, a client of the Price server that wants pushes
        self.ask_price()

    async def start(self) -> None:
        await self.app.start()  # on a virtual air of its own: its pushes go nowhere

    async def close(self) -> None:
        for bridge in self.bridges:
            bridge.outbox.close()
        await self.app.stop()

    # -- the meter's side --------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        app = self.app
        return {"messages": tuple((k, m.text, m.start, m.duration_min, m.control)
                                  for k, m in app.messaging.messages.items()),
                "prices": tuple((e.issuer_event_id, e.tier, e.rate, e.label)
                                for e in app.price.events),
                "tariff": (app.price.tariff, app.price.pending)}

    def ask_price(self) -> list[str]:
        hdr = foundation.ZCLHeader.cluster(0x21, 0x00)
        replies = self.app.endpoint.handle(src_nwk=0x3B3B, src_ep=1, dst_ep=1, profile_id=0x0109,
                                           cluster_id=0x0700, data=hdr.serialize() + b"\x01",
                                           broadcast=False, now=self.clock.now())
        frames = [r.data for r in replies] + [r.data for r in self.app.endpoint.pushes()]
        problems = [] if replies else ["no answer to GetCurrentPrice"]
        for frame in frames:
            hdr, rest = foundation.ZCLHeader.deserialize(frame)
            schema = (foundation.GENERAL_COMMANDS[hdr.command_id].schema
                      if hdr.frame_control.is_general
                      else Price.client_commands[hdr.command_id].schema)
            try:
                _args, extra = schema.deserialize(rest)
                if extra:
                    problems.append(f"trailing bytes in {frame.hex()}")
            except Exception as exc:  # noqa: BLE001 - the oracle reports it
                problems.append(f"unparsable {frame.hex()}: {exc!r}")
        return problems

    # -- documents ----------------------------------------------------------------------
    def document(self) -> tuple[str, bytes, bool]:
        rng = self.rng
        r = rng.random()
        if r < 0.93:
            name = rng.choice(NAMES)
        else:
            name = rng.choice(("result", "", "self_destruct", "DISPLAY_MESSAGE", "set_tariff ",
                               "é", "x" * 300, "set_tariff\x00"))
        if name == "set_tariff":
            tariff = dict(rng.choice(self.tariffs))
            self.tariff_id += 1
            tariff["issuer_tariff_id"] = self.tariff_id
            doc: Any = {"tariff": tariff}
        else:
            doc = dict(self.good.get(name, {"text": "hi"}))
        if rng.random() < 0.6:
            doc, _ = mutate(doc, rng)
        token = rng.random() < 0.5
        if isinstance(doc, dict):
            r = rng.random()
            if r < 0.5:
                doc["id"] = rng.choice((1, "req-1", 2**70, -1, 1.5, None, [1], {"a": 1}, "é" * 80,
                                        float("nan")))
            if token:
                doc["token"] = TOKEN if rng.random() < 0.85 else rng.choice(("", "T0K", 1, None))
        text = json.dumps(json_safe(doc))
        payload = text.encode()
        r = rng.random()
        if r < 0.03:
            payload = payload[: rng.randrange(len(payload) + 1)]
        elif r < 0.05:
            payload = payload + b"\xff\xfe"
        elif r < 0.06:
            payload = b"[" * rng.choice((900, 1500, 2100)) + b"]" * 10
        elif r < 0.07:
            payload = b'{"text": "' + b"x" * 5000 + b'"}'
        elif r < 0.08:
            payload = rng.choice((b"", b"null", b"1", b'"text"', b"[]", b"{}", b"\x00"))
        return name, payload, token

    # -- one command --------------------------------------------------------------------
    async def step(self) -> tuple[str, bytes, list[str], dict[str, Any]]:
        name, payload, with_token = self.document()
        bridge = self.bridges[1 if with_token else 0]
        before = self.state()
        self.clock.advance(self.rng.choice((1, 60, 3600)))
        result = await bridge._run_command(name, payload)
        problems: list[str] = []
        try:
            text = json.dumps(result)
            back = strict_json(text)
        except (TypeError, ValueError) as exc:
            back = {}
            problems.append(f"result is not strict JSON: {exc}")
        if back.get("command") != name or not isinstance(back.get("ok"), bool):
            problems.append(f"result without command/ok: {result}")
        if back.get("ok") is False:
            error = back.get("error")
            if not isinstance(error, str) or not error:
                problems.append("refusal without an error text")
            elif error.startswith("internal error"):
                problems.append(f"internal error: {error}")
        changed = {k for k, v in self.state().items() if v != before[k]}
        allowed = MAY_CHANGE.get(name, set()) if back.get("ok") else set()
        if changed - allowed:
            problems.append(f"{'accepted' if back.get('ok') else 'refused'} {name} changed "
                            f"{sorted(changed - allowed)}")
        if back.get("ok"):
            problems += self.ask_price()
        return name, payload, problems, result


async def run(name: str, seed: int, count: int) -> tuple[Campaign, list[str]]:
    camp = Campaign.make(name, seed, count)
    engine = MqttCampaign(camp.rng())
    await engine.start()
    found: list[str] = []
    try:
        with CatchAllObserver() as observer:
            for i in range(camp.count):
                command, payload, problems, result = await engine.step()
                await asyncio.sleep(0)  # let the meter's sends (to nobody) finish
                caught = observer.take()
                camp.internal_exceptions += len(caught)
                problems += [CatchAllObserver.describe(r) for r in caught]
                camp.frames += 1
                camp.replies += 1
                camp.outcomes[f"{command if command in NAMES else 'other'} "
                              f"{'ok' if result.get('ok') else 'refused'}"] += 1
                if problems:
                    camp.unparsable += any("JSON" in p for p in problems)
                    camp.unentitled += any("changed" in p for p in problems)
                    found.append(f"#{i} {command!r} {payload[:160]!r}: {problems}")
                    if len(found) > 10:
                        break
    finally:
        await engine.close()
    camp.report()
    return camp, found


async def test_mqtt_commands_sample():
    camp, found = await run("mqtt-commands-sample", 20267, 1500)
    assert not found, "\n".join(found)
    for outcome in ("display_message ok", "set_tariff ok", "publish_price ok",
                    "cancel_message ok", "display_message refused", "set_tariff refused"):
        assert camp.outcomes[outcome] > 0, outcome


@pytest.mark.slow
@pytest.mark.timeout(10800)  # a campaign, not a hang
async def test_mqtt_commands_campaign():
    camp, found = await run("mqtt-commands", 7, 100_000)
    assert not found, "\n".join(found)
    assert camp.frames == camp.count and camp.internal_exceptions == 0


async def test_mqtt_commands_through_a_real_broker(tmp_path):
    """The campaign's documents on the meter's command topics of a real mosquitto: every
    one gets exactly one strict-JSON result, and the bridge stays connected."""
    broker = Broker(tmp_path).start()
    try:
        cfg = BridgeConfig(host="127.0.0.1", port=broker.port, publish_interval=0.2,
                           command_token=TOKEN)
        app = MeterApp(MeterSettings(ieee=IEEE, tick_seconds=0.05, mqtt=cfg),
                       clock=ManualClock(), air=VirtualAir())
        await app.start()
        node = IEEE.replace(":", "")
        engine = MqttCampaign(random.Random(20268))
        sent = 0
        try:
            await asyncio.wait_for(app.bridge.connected.wait(), 10)
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.subscribe(f"sep/{node}/command/result", qos=1)
                for _ in range(150):
                    name, payload, _token = engine.document()
                    if not name or any(c in name for c in "/+#\x00"):
                        continue  # not a topic level
                    await client.publish(f"sep/{node}/command/{name}", payload, qos=1)
                    sent += 1
                results = []
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(30):
                        async for msg in client.messages:
                            results.append(strict_json(msg.payload.decode()))
                            if len(results) == sent:
                                break
            assert len(results) == sent
            assert all(isinstance(r["ok"], bool) for r in results)
            assert not any(str(r.get("error", "")).startswith("internal") for r in results)
            assert app.bridge.connected.is_set() and app.bridge.connects == 1
        finally:
            await app.stop()
    finally:
        broker.stop()
