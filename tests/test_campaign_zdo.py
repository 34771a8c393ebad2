"""The ZDO server campaign: structure-aware ZDO requests into the node's firmware-side ZDO
server (``radios/zdo_server.py``, and the NCP's variant), judged by zigpy's ZDO parsers.

Requests are built from zigpy's own ZDO schemas (``zigpy.zdo.types.CLUSTERS``) with the
node's own addresses, endpoints, profiles and clusters most of the time, then maybe
damaged; every request cluster zigpy knows, responses, announcements and unknown
clusters, unicast and broadcast. The oracle, per request:

- nothing raises and nothing is logged with an exception;
- every answer is on the request's response cluster (request | 0x8000), carries the
  request's TSN and parses with zigpy's schema for that response to the last byte (zigpy
  drops a response it cannot parse: the requester would wait for nothing); a response
  cluster zigpy does not know is answered with NOT_SUPPORTED alone;
- the rules of Zigbee 2.4.3/2.4.4: never an answer to a response or an announcement;
  a broadcast is answered only with SUCCESS (a match, our own address);
- a request changes nothing about the node (its addresses, descriptors, endpoints).

Default run: a short sample. The campaign (100,000 requests)::

    nice -n 15 .venv/bin/python -m pytest -m slow -s -p no:cacheprovider tests/test_campaign_zdo.py
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from fuzzgen import Campaign, CatchAllObserver, Gen

from radios.ncp.node import NcpZdoServer
from radios.zdo_server import NodeIdentity, ZdoServer

Z = zdo_t.ZDOCmd
REQUESTS = sorted(c for c in zdo_t.CLUSTERS if not c & 0x8000)
RESPONSES = sorted(c for c in zdo_t.CLUSTERS if c & 0x8000)
PROFILES = (0x0109, 0x0104, 0xFFFF, 0x0000, 0xC05E)


def node(coordinator: bool) -> NodeIdentity:
    ident = NodeIdentity(ieee=t.EUI64.convert("00:0d:6f:00:00:00:2d:01"),
                         nwk=0x0000 if coordinator else 0x2D01,
                         logical_type=(zdo_t.LogicalType.Coordinator if coordinator
                                       else zdo_t.LogicalType.Router))
    ident.endpoints[1] = zdo_t.SimpleDescriptor(1, 0x0109, 0x0501, 0,
                                                [0x0000, 0x0003, 0x000A, 0x0700, 0x0702,
                                                 0x0703], [0x0019, 0x0700, 0x0703])
    if coordinator:  # bellows registers the Green Power endpoint with the NCP
        ident.endpoints[242] = zdo_t.SimpleDescriptor(242, 0xA1E0, 0x0061, 0, [], [0x0021])
    return ident


class ZdoCampaign:
    def __init__(self, rng: random.Random, server: ZdoServer) -> None:
        self.rng = rng
        self.server = server
        self.node = server.node
        self.gen = Gen(rng, hints=self.hint)
        self.clusters = sorted({c for d in self.node.endpoints.values()
                                for c in (*d.input_clusters, *d.output_clusters)})

    def hint(self, name: str, typ: Any) -> bytes | None:
        return None

    def field(self, typ: Any) -> bytes:
        """One field of a request, the node's own values more often than not."""
        rng, ident = self.rng, self.node
        r = rng.random()
        if typ is t.NWK and r < 0.6:
            return t.NWK(rng.choice((ident.nwk, ident.nwk, 0xFFFD, 0xFFFF, 0xFFFC))).serialize()
        if typ is t.EUI64 and r < 0.6:
            return ident.ieee.serialize()
        if typ is t.uint8_t and r < 0.3:  # an endpoint, a request type, a start index
            return bytes([rng.choice((0, 1, 2, 0xF0, 0xF1, 242, 0xFF))])
        if typ is t.uint16_t and r < 0.5:
            return t.uint16_t(rng.choice(PROFILES)).serialize()
        if isinstance(typ, type) and issubclass(typ, t.LVList) and r < 0.6:
            chosen = rng.sample(self.clusters, rng.randrange(0, 4))
            return bytes([len(chosen)]) + b"".join(t.uint16_t(c).serialize() for c in chosen)
        return self.gen.value(typ)

    def request(self) -> tuple[int, bytes, bool, str]:
        rng = self.rng
        r = rng.random()
        if r < 0.8:
            cluster = rng.choice(REQUESTS)
        elif r < 0.9:
            cluster = rng.choice(RESPONSES + [Z.Device_annce])
        else:
            cluster = rng.randrange(0x10000)
        tsn = rng.randrange(256)
        schema = zdo_t.CLUSTERS.get(cluster, (None, ()))[1]
        body = b"".join(self.field(typ) for typ in schema) if schema else self.gen.raw(0, 12)
        body, damage = self.gen.mutate(body, 0.3)
        data = bytes([tsn]) + body if rng.random() > 0.01 else b""
        return cluster, data, rng.random() < 0.3, damage

    def names_us(self, cluster: int, data: bytes) -> bool:
        """Whether a request's address of interest is this node (then even a broadcast
        one is ours to answer, with an error if need be: Zigbee 2.4.3.1)."""
        try:
            args, _ = t.deserialize(data[1:], zdo_t.CLUSTERS[cluster][1])
        except Exception:  # noqa: BLE001 - unparseable: it names nobody
            return False
        return bool(args) and args[0] in (self.node.nwk, self.node.ieee)

    def judge(self, cluster: int, data: bytes, broadcast: bool,
              replies: list[tuple[int, bytes]]) -> list[str]:
        problems = []
        if (cluster & 0x8000 or cluster == Z.Device_annce or not data) and replies:
            problems.append("answered a response, an announcement or an empty frame")
        if len(replies) > 1:
            problems.append(f"{len(replies)} answers")
        for rsp_cluster, payload in replies:
            if rsp_cluster != cluster | 0x8000:
                problems.append(f"answer on 0x{rsp_cluster:04X} to 0x{cluster:04X}")
            if not payload or payload[0] != data[0]:
                problems.append("answer without the request's TSN")
                continue
            if rsp_cluster not in zdo_t.CLUSTERS:
                if payload[1:] != bytes([zdo_t.Status.NOT_SUPPORTED]):
                    problems.append(f"answer on unknown cluster 0x{rsp_cluster:04X}: "
                                    f"{payload.hex()}")
                continue
            try:
                args, extra = t.deserialize(payload[1:], zdo_t.CLUSTERS[rsp_cluster][1])
            except Exception as exc:  # noqa: BLE001 - the oracle reports, never hides
                problems.append(f"unparsable 0x{rsp_cluster:04X} {payload.hex()}: {exc!r}")
                continue
            if extra:
                problems.append(f"0x{rsp_cluster:04X} with trailing bytes {payload.hex()}")
            status = args[0]
            if broadcast and status != zdo_t.Status.SUCCESS and not self.names_us(cluster, data):
                problems.append(f"broadcast answered with {status!r}")
        return problems


def identity_of(ident: NodeIdentity) -> tuple[Any, ...]:
    return (ident.ieee, ident.nwk, ident.logical_type, ident.manufacturer_code,
            repr(ident.endpoints), ident.node_descriptor().serialize(),
            ident.power_descriptor().serialize())


def run(name: str, seed: int, count: int) -> tuple[Campaign, list[str]]:
    camp = Campaign.make(name, seed, count)
    rng = camp.rng()
    servers = [ZdoServer(node(False)), NcpZdoServer(node(True))]
    engines = [ZdoCampaign(rng, s) for s in servers]
    frozen = [copy.deepcopy(identity_of(s.node)) for s in servers]
    found: list[str] = []
    with CatchAllObserver() as observer:
        for i in range(camp.count):
            engine = engines[i % 2]
            cluster, data, broadcast, damage = engine.request()
            try:
                replies = engine.server.handle(cluster, data, broadcast=broadcast)
                problems = engine.judge(cluster, data, broadcast, replies)
            except Exception as exc:  # noqa: BLE001 - counted: an internal exception
                replies, problems = [], [f"raised {exc!r}"]
                camp.internal_exceptions += 1
            caught = observer.take()
            camp.internal_exceptions += len(caught)
            problems += [f"catch-all: {CatchAllObserver.describe(r)}" for r in caught]
            if identity_of(engine.server.node) != frozen[i % 2]:
                problems.append("a request changed the node")
                camp.unentitled += 1
            camp.frames += 1
            camp.replies += len(replies)
            camp.outcomes[damage] += 1
            for _c, payload in replies:
                camp.outcomes[f"status {zdo_t.Status(payload[1]).name}" if len(payload) > 1
                              else "no status"] += 1
            if problems:
                camp.unparsable += any("unparsable" in p or "trailing" in p for p in problems)
                found.append(f"#{i} cluster 0x{cluster:04X} {data.hex()} bcast {broadcast}: "
                             f"{problems}")
                if len(found) > 20:
                    break
    camp.report()
    return camp, found


def test_zdo_server_sample():
    camp, found = run("zdo-sample", 20262, 6000)
    assert not found, "\n".join(found)
    for outcome in ("status SUCCESS", "status NOT_SUPPORTED", "status DEVICE_NOT_FOUND",
                    "status INV_REQUESTTYPE"):
        assert camp.outcomes[outcome] > 0, outcome


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a campaign, not a hang
def test_zdo_server_campaign():
    camp, found = run("zdo", 2, 100_000)
    assert not found, "\n".join(found)
    assert camp.frames == camp.count and camp.internal_exceptions == 0 and camp.unparsable == 0
