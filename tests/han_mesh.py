"""A synchronous, in-process HAN for tests of the joining and trust-centre roles: sans-IO
:class:`radios.node.ZigbeeNode` objects whose outboxes are handed to each other until the
air is quiet (no asyncio, no timing: a mutant is judged in milliseconds).

Every frame put on the "air" is kept in :attr:`Mesh.air`, so a test can look at what was
sent with an independent decoder (``tests/zb_oracle.py``), and a test can replay or forge
frames with :meth:`Mesh.inject`.
"""

from __future__ import annotations

import dataclasses

import zb_oracle as zo

from radios.crypto import make_install_code
from radios.node import NodeEvent, ZigbeeNode
from radios.state import NodeState
from radios.trust_center import ANY_DEVICE

PAN = 0x1A62
EXT_PAN = 0x000D6F0000000001
CHANNEL = 15
TC_IEEE = 0x000D6F0000000001
NETWORK_KEY = bytes.fromhex("fb39caadd50fef910949baa89504f5d9")
GLOBAL_KEY = b"ZigBeeAlliance09"


@dataclasses.dataclass
class Sent:
    sender: int  # IEEE of the node that transmitted it
    mpdu: bytes
    dst_nwk: int | None = None  # where the node's outbox said it goes (None: injected)


class Mesh:
    def __init__(self) -> None:
        self.nodes: dict[int, ZigbeeNode] = {}
        self.air: list[Sent] = []
        self.now = 1000.0
        self._draws = 0

    # -- nodes --------------------------------------------------------------------------------
    def _random(self, n: int) -> int:
        """Deterministic 'random' draws (addresses, sequence numbers): distinct, in range."""
        self._draws += 1
        return (self._draws * 7919 + 0x1234) % n

    def node(self, ieee: int, **state: object) -> ZigbeeNode:
        st = NodeState(ieee=ieee, channel=CHANNEL, **state)  # type: ignore[arg-type]
        node = ZigbeeNode(st, random=self._random)
        node.clock = lambda: self.now
        self.nodes[ieee] = node
        return node

    def trust_centre(self, policy: str = "install_code", ieee: int = TC_IEEE) -> ZigbeeNode:
        tc = self.node(ieee)
        tc.form(pan_id=PAN, extended_pan_id=EXT_PAN, channel=CHANNEL, network_key=NETWORK_KEY)
        tc.set_policy(policy)
        if policy == "preconfigured":
            tc.admit_key(ANY_DEVICE, GLOBAL_KEY, "preconfigured")
        tc.permit(60)
        return tc

    def joiner(self, ieee: int, *, key: bytes, kind: str = "install_code") -> ZigbeeNode:
        return self.node(ieee, join_key=key.hex(), join_key_kind=kind)

    def enrolled(self, tc: ZigbeeNode, ieee: int) -> ZigbeeNode:
        """A joiner (not joined yet) with a fresh install code the trust centre was given;
        its link key derived independently (zigpy's AES-MMO, ``tests/zb_oracle.py``)."""
        code = make_install_code()
        tc.add_install_code(ieee, code)
        return self.joiner(ieee, key=zo.install_code_key(code))

    def drop(self, node: ZigbeeNode) -> None:
        """The node is switched off: it hears nothing more."""
        self.nodes.pop(node.state.ieee, None)

    # -- the air ------------------------------------------------------------------------------
    def pump(self, limit: int = 500) -> None:
        """Deliver queued frames to every other node (each node's receive filters by address,
        as its radio would) until nothing is queued."""
        for _ in range(limit):
            queued = [(n, out) for n in list(self.nodes.values()) for out in n.take_outbox()]
            if not queued:
                return
            for sender, out in queued:
                self.inject(out.mpdu, sender=sender.state.ieee, dst_nwk=out.dst_nwk)
        raise AssertionError("the air never went quiet")

    def inject(self, mpdu: bytes, *, sender: int = 0, dst_nwk: int | None = None) -> None:
        self.air.append(Sent(sender, mpdu, dst_nwk))
        for ieee, node in list(self.nodes.items()):
            if ieee != sender:
                node.receive(mpdu)

    # -- procedures ---------------------------------------------------------------------------
    def join(self, joiner: ZigbeeNode, parent_nwk: int = 0x0000) -> bool:
        """Scan, associate with ``parent_nwk``, wait for the key; whether it joined."""
        joiner.start_scan()
        self.pump()
        beacons = [b for b in joiner.beacons if b.source == parent_nwk]
        if not beacons:
            return False
        joiner.associate(beacons[0])
        self.pump()
        return joiner.joined


def events(node: ZigbeeNode, kind: str) -> list[NodeEvent]:
    return [e for e in node.events if isinstance(e, NodeEvent) and e.kind == kind]
