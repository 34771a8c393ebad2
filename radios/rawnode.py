"""A bare node on the virtual air, without zigpy: for tests, benchmarks, fuzzing and attacks.

It runs the same stack as every other node (``radios/node.py``), so once it has joined it
is a legitimate member of the network with its own link key with the trust centre; it can
also stay outside (never joined: no keys at all), send any APS data frame with or
without APS security, ask the trust centre for a link key with a partner, put arbitrary
bytes on the air (a forged or replayed frame), and keeps everything it heard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from radios import aps
from radios.air import VirtualAir
from radios.crypto import link_key_from_install_code
from radios.node import DataIndication, NodeEvent, ZigbeeNode
from radios.shell import NodeShell
from radios.state import NodeState, NvFile


class RawNode:
    def __init__(self, air: VirtualAir, ieee: int, *, install_code: bytes | None = None,
                 link_key: bytes | None = None, state_path: str | None = None,
                 channel: int | None = None, capture: bool = True,
                 aps_policy: Callable[[int, int], bool] | None = None) -> None:
        nv = NvFile(state_path)
        state = nv.load() or NodeState(ieee=ieee, channel=air.channel if channel is None
                                       else channel)
        if install_code is not None:
            state.join_key = link_key_from_install_code(install_code).hex()
            state.join_key_kind = "install_code"
        elif link_key is not None:
            state.join_key = bytes(link_key).hex()
            state.join_key_kind = "preconfigured"
        self.air = air
        self.node = ZigbeeNode(state, nv, aps_policy=aps_policy)
        self.received: list[DataIndication] = []
        self.events: list[NodeEvent] = []
        self.heard: list[bytes] = []  # every frame on our channel (a sniffer's view)
        self.sent: list[bytes] = []  # what transmit_raw put on the air
        self.shell = NodeShell(air, self.node, on_data=self.received.append,
                               on_event=self.events.append)
        self._capture = capture
        self._untap: Callable[[], None] | None = None

    @classmethod
    async def trust_centre(cls, air: VirtualAir, ieee: int = 0x000D6F00000000C0, *,
                           link_key: bytes | None = None, network_key: bytes | None = None,
                           policy: str = "preconfigured",
                           aps_policy: Callable[[int, int], bool] | None = None) -> RawNode:
        """A coordinator and trust centre formed on the air's PAN and channel. With policy
        ``preconfigured`` it admits anyone holding ``link_key`` (default: the development
        network's key) and always permits joining."""
        import secrets

        from radios.trust_center import ANY_DEVICE
        from radios.virtual import DEVELOPMENT_KEY

        tc = cls(air, ieee, aps_policy=aps_policy)
        tc.node.form(pan_id=air.pan_id, extended_pan_id=ieee, channel=air.channel,
                     network_key=network_key or secrets.token_bytes(16))
        tc.node.set_policy(policy)
        if policy == "preconfigured":
            tc.node.admit_key(ANY_DEVICE, link_key or DEVELOPMENT_KEY, "preconfigured")
            tc.node.always_permit = True
        tc.attach()
        tc.report_keys()
        return tc

    # -- lifecycle -------------------------------------------------------------------------
    def attach(self) -> None:
        if self.shell.port is not None:
            return
        self.shell.start()
        if self._capture:
            self._untap = self.air.add_tap(lambda mpdu, _ts: self.heard.append(mpdu))

    async def join(self, channels: list[int] | None = None, *, attempts: int = 2) -> None:
        self.attach()
        await self.shell.join(channels or [self.node.state.channel], attempts=attempts)
        self.report_keys()

    @classmethod
    async def joined(cls, air: VirtualAir, ieee: int, **kwargs: object) -> RawNode:
        """A member of the development network (joined with its key), SE frames secured."""
        from radios.virtual import DEVELOPMENT_KEY

        kwargs.setdefault("link_key", DEVELOPMENT_KEY)
        node = cls(air, ieee, **kwargs)  # type: ignore[arg-type]
        await node.join()
        return node

    async def rejoin(self) -> None:
        self.attach()
        await self.shell.rejoin()

    async def stop(self) -> None:
        if self._untap is not None:
            self._untap()
            self._untap = None
        await self.shell.stop()

    @property
    def nwk(self) -> int:
        return self.node.state.nwk

    @property
    def ieee(self) -> int:
        return self.node.state.ieee

    def know(self, nwk: int, ieee: int) -> None:
        """What a NWK_addr_req would tell us: ``nwk`` is ``ieee``."""
        self.node.learn_address(nwk, ieee)

    # -- sending ---------------------------------------------------------------------------
    async def send(self, dst_nwk: int, cluster: int, payload: bytes, *, profile: int = 0x0109,
                   src_ep: int = 1, dst_ep: int = 1, aps_secure: bool | None = None,
                   ack: bool = False) -> None:
        out = self.node.data_frame(dst_nwk=dst_nwk, profile=profile, cluster=cluster,
                                   src_ep=src_ep, dst_ep=dst_ep, payload=payload, ack=ack,
                                   aps_secure=aps_secure)
        await self.shell.send(out)

    async def transmit_raw(self, mpdu: bytes) -> bool:
        """Put bytes on the air as they are (a replay, a forgery)."""
        assert self.shell.port is not None, "attach() first"
        self.sent.append(mpdu)
        return await self.shell.port.transmit(mpdu)

    async def request_link_key(self, partner: int, timeout: float = 3.0) -> None:
        out = self.node.command_frame(0x0000, aps.RequestKey(
            aps.RequestKeyType.APPLICATION_LINK, partner).encode(), partner=self.node.state.tc_ieee)
        await self.shell.send(out)
        if partner not in self.node.state.link_keys:
            await self.shell.wait_event({"key_installed"}, timeout)
        self.report_keys()

    def report_keys(self) -> None:
        """Our keys to the air's registry (so captures of our frames can be read)."""
        from radios.virtual import report_node_keys

        report_node_keys(self.node, self.air)

    # -- waiting ---------------------------------------------------------------------------
    async def wait_for(self, pred: Callable[[DataIndication], bool],
                       timeout: float = 3.0) -> DataIndication:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            for ind in self.received[seen:]:
                if pred(ind):
                    return ind
            seen = len(self.received)
            if loop.time() > deadline:
                raise TimeoutError("no such frame arrived")
            await asyncio.sleep(0.005)
