"""A Zigbee PRO node below the application: MAC, NWK and APS with their security (sans-IO).

This is what a stick's firmware does for its host, for the virtual air: the zigpy radio
(``radios/virtual.py``) and the EZSP emulator's node (``radios/ncp/node.py``) both run one
through a thin asyncio shell (``radios/shell.py``). Bytes come in with :meth:`receive`;
frames to put on the air collect in :attr:`outbox`, things for the host in
:attr:`events`. No sockets, no sleeps, no clock but the one passed in.

Receiving, in order (Zigbee spec 3.6, 4.3, 4.4):
1. MAC: frames for another PAN are not ours; beacons, beacon requests and association go
   to the joining roles (``radios/joining.py``).
2. NWK: a secured frame needs a network key we hold (by key sequence number), a frame
   counter above the last one accepted from that source under that key, and a MIC that
   verifies — else it is dropped and counted. The source IEEE in the auxiliary header
   (always there: a frame without the extended nonce is dropped) must match what the
   trust centre's address (0x0000) is known to be. An unsecured NWK
   frame is taken only while joining (the Transport Key from our parent).
3. APS: a secured frame needs the link key of its source (or the key-transport /
   key-load key derived from it), a fresh APS counter and a good MIC. Data frames the
   host's policy wants secured (``aps_policy``) are dropped when they are not. Commands
   (Transport Key, Update Device, Remove Device, Request Key, Switch Key, Tunnel) go to
   the joining and trust-centre roles. Duplicates (same source and APS counter) are
   acknowledged again and not delivered twice.
Counted drops are in :attr:`stats` (a ``collections.Counter``).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from radios import aps, mac, nwk
from radios.aps import ApsCommand, ApsHeader, ApsType, Delivery
from radios.joining import ConflictRole, JoinerRole, ParentRole
from radios.nwk import AuxHeader, KeyId, NwkHeader, NwkType
from radios.security.codec import open_sealed, seal
from radios.security.keys import KeyStore
from radios.state import LinkKeyEntry, NodeState, NvFile
from radios.trust_center import TrustCenterRole
from radios.zdo_server import ZdoServer

LOGGER = logging.getLogger(__name__)

ZDO_PROFILE = 0x0000
DUPLICATE_MEMORY = 64  # (source, APS counter) pairs remembered for duplicate rejection
DUPLICATE_LIFETIME = 8.0  # seconds an entry rejects duplicates (a restarted sender's
#                           counters start again; APS retries come within ~3 s)

#: (profile, cluster) -> whether APS security is required for it (the host's policy)
ApsPolicy = Callable[[int, int], bool]


class SecurityError(Exception):
    """A frame cannot be secured (no key for that partner)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DataIndication:
    """An APS data frame delivered to the host."""

    src_nwk: int
    dst_nwk: int
    profile: int
    cluster: int
    src_ep: int
    dst_ep: int
    counter: int
    payload: bytes
    broadcast: bool
    ack_request: bool = False
    radius: int = 30
    #: the partner whose link key protected this frame (None: network key only)
    aps_partner: int | None = None
    aps_key_kind: str | None = None
    src_ieee: int | None = None  # as the NWK header says (not authenticated per device)


@dataclasses.dataclass(frozen=True, slots=True)
class AckIndication:
    src_nwk: int
    counter: int


@dataclasses.dataclass(frozen=True, slots=True)
class NodeEvent:
    """Something the host hears about: ``joined``, ``join_failed``, ``left``,
    ``device_joined``, ``device_left``, ``key_installed``, ``network_key_switched``..."""

    kind: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Outgoing:
    """A frame to transmit; for APS data the counter the ACK will carry."""

    mpdu: bytes
    dst_nwk: int
    counter: int = 0
    ack: bool = False


class ZigbeeNode(JoinerRole, ParentRole, ConflictRole, TrustCenterRole):
    def __init__(self, state: NodeState, nv: NvFile | None = None, *,
                 zdo: ZdoServer | None = None, aps_policy: ApsPolicy | None = None,
                 address_free: Callable[[int], bool] = lambda nwk: True,
                 random: Callable[[int], int] = secrets.randbelow,
                 nwk_security: bool = True, link_kind: str | None = None) -> None:
        self.state = state
        #: SE with Key Establishment: frames the APS policy secures are taken only under a
        #: link key of this kind ("cbke"); None takes any link key (development networks)
        self.link_kind = link_kind
        #: False only for measuring what security costs (bench/): frames go and are taken
        #: without NWK security. Never for a network anyone uses.
        self.nwk_security = nwk_security
        self.nv = nv or NvFile(None)
        self.zdo = zdo
        self.aps_policy: ApsPolicy = aps_policy or (lambda profile, cluster: False)
        self.address_free = address_free
        self.random = random
        self.dirty = False
        self.keys = KeyStore(state, persist_now=self.persist, mark_dirty=self._mark_dirty)
        self.stats: collections.Counter[str] = self.keys.stats
        self.outbox: list[Outgoing] = []
        self.events: list[DataIndication | AckIndication | NodeEvent] = []
        # a coordinator is up as soon as it has its network; others rejoin first
        self.status = "joined" if state.joined and state.logical_type == "coordinator" \
            else "down"
        # sequence numbers start anywhere after a boot, as on real stacks
        self._mac_seq = random(256)
        self._nwk_seq = random(256)
        self._aps_counter = random(256)
        self._recent: collections.OrderedDict[tuple[int, int], float] = collections.OrderedDict()
        self.clock: Callable[[], float] = time.monotonic
        JoinerRole.__init__(self)
        ParentRole.__init__(self)
        ConflictRole.__init__(self)
        TrustCenterRole.__init__(self)

    # -- persistence ---------------------------------------------------------------------------
    def _mark_dirty(self) -> None:
        self.dirty = True

    def persist(self) -> None:
        """Write the state now (frame-counter reservations, joins, keys)."""
        self.nv.save(self.state)
        self.dirty = False

    # -- identity ------------------------------------------------------------------------------
    @property
    def ieee(self) -> int:
        return self.state.ieee

    @property
    def nwk_address(self) -> int:
        return self.state.nwk

    @property
    def is_coordinator(self) -> bool:
        return self.state.logical_type == "coordinator"

    @property
    def is_trust_center(self) -> bool:
        return self.is_coordinator

    @property
    def joined(self) -> bool:
        return self.status == "joined"

    def ieee_of(self, nwk_addr: int) -> int | None:
        if nwk_addr == self.state.nwk:
            return self.state.ieee
        if nwk_addr == 0x0000 and self.state.tc_ieee is not None:
            return self.state.tc_ieee
        return self.state.address_map.get(nwk_addr)

    def nwk_of(self, ieee: int) -> int | None:
        if ieee == self.state.ieee:
            return self.state.nwk
        for addr, value in self.state.address_map.items():
            if value == ieee:
                return addr
        return None

    def set_nwk(self, nwk_addr: int) -> None:
        """Our own NWK address (association, rejoin, forming): the ZDO server says it too."""
        self.state.nwk = nwk_addr
        if self.zdo is not None:
            self.zdo.node.nwk = nwk_addr

    def learn_address(self, nwk_addr: int, ieee: int) -> None:
        if nwk_addr >= 0xFFF8 or ieee == self.state.ieee:
            return
        if nwk_addr == 0x0000 and self.state.tc_ieee is not None and ieee != self.state.tc_ieee:
            return  # the trust centre's address is pinned
        if self.state.address_map.get(nwk_addr) != ieee:
            for addr in [a for a, v in self.state.address_map.items() if v == ieee]:
                del self.state.address_map[addr]  # the device moved
            self.state.address_map[nwk_addr] = ieee
            self.dirty = True

    # -- building frames ------------------------------------------------------------------------
    def _next_mac_seq(self) -> int:
        self._mac_seq = (self._mac_seq + 1) & 0xFF
        return self._mac_seq

    def next_aps_counter(self) -> int:
        self._aps_counter = (self._aps_counter + 1) & 0xFF
        return self._aps_counter

    def _mac_data(self, dst_nwk: int, nwk_bytes: bytes) -> bytes:
        mac_dst = mac.BROADCAST if dst_nwk >= 0xFFF8 else dst_nwk
        return mac.data_frame(self._next_mac_seq(), self.state.pan_id, self.state.nwk, mac_dst,
                              nwk_bytes).encode()

    def nwk_frame(self, dst_nwk: int, payload: bytes, *, command: bool = False,
                  secure: bool = True, radius: int = 30) -> bytes:
        """A whole MPDU: NWK header (with our IEEE), sealed under the active network key."""
        secure = secure and self.nwk_security
        self._nwk_seq = (self._nwk_seq + 1) & 0xFF
        header = NwkHeader(NwkType.COMMAND if command else NwkType.DATA, dst_nwk, self.state.nwk,
                           radius=radius, seq=self._nwk_seq, security=secure,
                           src_ieee=self.state.ieee,
                           discover_route=0 if dst_nwk >= 0xFFF8 or command else 1).encode()
        if not secure:
            return self._mac_data(dst_nwk, header + payload)
        key = self.keys.network_key()
        if key is None:
            raise SecurityError("no network key")
        aux = AuxHeader(KeyId.NETWORK, self.keys.nwk_tx.next(), source=self.state.ieee,
                        key_seq=self.keys.active_seq)
        return self._mac_data(dst_nwk, seal(header, aux, payload, key, self.state.ieee))

    def aps_sealed(self, header: ApsHeader, payload: bytes, link: LinkKeyEntry,
                   key_id: KeyId = KeyId.DATA) -> bytes:
        header = dataclasses.replace(header, security=True)
        aux = AuxHeader(key_id, self.keys.aps_tx.next(), source=self.state.ieee)
        return seal(header.encode(), aux, payload, self.keys.key_for(key_id, link),
                    self.state.ieee)

    def link_for(self, partner: int | None) -> LinkKeyEntry:
        entry = self.keys.link_key(partner)
        if entry is None:
            raise SecurityError(f"no link key with {partner:016x}" if partner is not None
                                else "no link key")
        return entry

    def data_frame(self, *, dst_nwk: int, profile: int, cluster: int, src_ep: int, dst_ep: int,
                   payload: bytes, ack: bool = False, aps_secure: bool | None = None,
                   radius: int = 30, counter: int | None = None) -> Outgoing:
        """An APS data frame ready for the air. ``aps_secure`` None follows the policy.
        Broadcasts carry network-key security only."""
        broadcast = dst_nwk >= 0xFFF8
        if aps_secure is None:
            aps_secure = self.aps_policy(profile, cluster)
        if not self.nwk_security:
            aps_secure = False  # a bench's "security off": everything in clear
        counter = self.next_aps_counter() if counter is None else counter
        header = ApsHeader(ApsType.DATA, counter,
                           Delivery.BROADCAST if broadcast else Delivery.UNICAST,
                           ack_request=ack and not broadcast, dst_ep=dst_ep, cluster=cluster,
                           profile=profile, src_ep=src_ep)
        if aps_secure and not broadcast:
            partner = self.ieee_of(dst_nwk)
            if partner is None:
                raise SecurityError(f"IEEE of 0x{dst_nwk:04X} unknown: cannot secure")
            body = self.aps_sealed(header, payload, self.link_for(partner))
        else:
            body = header.encode() + payload
        return Outgoing(self.nwk_frame(dst_nwk, body, radius=radius), dst_nwk, counter,
                        ack and not broadcast)

    def command_frame(self, dst_nwk: int, command: bytes, *, partner: int | None,
                      key_id: KeyId = KeyId.DATA, nwk_secure: bool = True,
                      ack: bool = False) -> Outgoing:
        """An APS command, APS-secured under the link key with ``partner`` (None: unsecured
        at APS, as the Tunnel command is)."""
        counter = self.next_aps_counter()
        header = ApsHeader(ApsType.COMMAND, counter,
                           Delivery.BROADCAST if dst_nwk >= 0xFFF8 else Delivery.UNICAST,
                           ack_request=ack)
        if partner is None:
            body = header.encode() + command
        else:
            body = self.aps_sealed(header, command, self.link_for(partner), key_id)
        return Outgoing(self.nwk_frame(dst_nwk, body, secure=nwk_secure), dst_nwk, counter, ack)

    def loopback(self, *, profile: int, cluster: int, src_ep: int, dst_ep: int,
                 payload: bytes) -> list[DataIndication]:
        """A frame to ourselves: the stack hands it back without the air (or security); a
        ZDO request is answered by the firmware, as one from the air would be."""

        def local(cluster_: int, payload_: bytes, src: int, dst: int) -> DataIndication:
            return DataIndication(src_nwk=self.state.nwk, dst_nwk=self.state.nwk,
                                  profile=profile, cluster=cluster_, src_ep=src, dst_ep=dst,
                                  counter=self.next_aps_counter(), payload=payload_,
                                  broadcast=False, aps_partner=self.state.ieee,
                                  aps_key_kind="local", src_ieee=self.state.ieee)

        request = local(cluster, payload, src_ep, dst_ep)
        if profile != ZDO_PROFILE or dst_ep != 0 or cluster & 0x8000 or self.zdo is None:
            return [request]
        replies = [local(c, p, 0, 0) for c, p in self.zdo.handle(cluster, payload,
                                                                  broadcast=False)]
        return ([request] if self.zdo.passes_up(cluster) else []) + replies

    def send(self, out: Outgoing) -> None:
        self.outbox.append(out)

    def take_outbox(self) -> list[Outgoing]:
        out, self.outbox = self.outbox, []
        return out

    def take_events(self) -> list[DataIndication | AckIndication | NodeEvent]:
        out, self.events = self.events, []
        return out

    def event(self, event_kind: str, /, **details: Any) -> None:
        self.events.append(NodeEvent(event_kind, details))

    # -- receiving --------------------------------------------------------------------------------
    def receive(self, mpdu: bytes) -> None:
        try:
            frame = mac.decode(mpdu)
        except mac.MacError:
            self.stats["mac_malformed"] += 1
            return
        if frame.type == mac.MacType.DATA:
            if frame.dst_pan not in (self.state.pan_id, mac.BROADCAST):
                return  # another network
            if frame.dst_mode != mac.ADDR_SHORT or frame.dst not in (self.state.nwk, mac.BROADCAST):
                return
            self._on_nwk(frame)
        elif frame.type in (mac.MacType.BEACON, mac.MacType.COMMAND):
            self.on_mac_join_frame(frame)

    def _for_us(self, dst: int) -> bool:
        if dst == self.state.nwk:
            return True
        if dst == 0xFFFF or dst == 0xFFFD:
            return True
        return dst == 0xFFFC and self.state.logical_type != "end_device"

    def _on_nwk(self, frame: mac.MacFrame) -> None:
        data = frame.payload
        try:
            header, pos = nwk.decode_header(data)
        except nwk.NwkError:
            self.stats["nwk_malformed"] += 1
            return
        if not self._for_us(header.dst):
            return
        from_our_address = header.src == self.state.nwk and self.joined
        if from_our_address and not header.security:
            return
        if header.security:
            try:
                aux, body_pos = AuxHeader.decode(data, pos)
            except nwk.NwkError:
                self.stats["nwk_malformed"] += 1
                return
            if aux.key_id != KeyId.NETWORK or aux.key_seq is None:
                self.stats["nwk_malformed"] += 1
                return
            key = self.keys.network_key(aux.key_seq)
            if key is None:
                self.stats["nwk_unknown_key"] += 1
                return
            if aux.source is None:
                # NWK frames carry the sender's IEEE (extended nonce, 4.3.1.1). One without
                # was opened with the IEEE our address map gives its NWK source: for 0x0000
                # the trust centre's, which a member with another IEEE could seal for, and
                # so pass the pin below, which only looks at the IEEE the frame names
                self.stats["nwk_malformed"] += 1
                return
            source = aux.source
            if not self.keys.nwk_fresh(aux.key_seq, source, aux.counter):
                self.stats["nwk_replay"] += 1
                return
            plain = open_sealed(data[:pos], aux, data[body_pos:], key, source)
            if plain is None:
                self.stats["nwk_mic_failure"] += 1
                return
            self.keys.nwk_accept(aux.key_seq, source, aux.counter)
            if header.src == 0x0000 and self.state.tc_ieee is not None \
                    and source != self.state.tc_ieee and not self.is_trust_center:
                self.stats["nwk_spoofed_source"] += 1
                return
            if from_our_address:
                if source == self.state.ieee:
                    return  # our own frame, heard back
                # another device (the network key vouches for its IEEE) uses our address
                self.address_conflict(header.src, source)
            else:
                self.learn_address(header.src, source)
            secured = True
        else:
            if not self.accepts_unsecured(header):
                self.stats["nwk_unsecured"] += 1
                return
            plain = data[pos:]
            source = header.src_ieee
            secured = False
        if header.frame_type == NwkType.COMMAND:
            self.on_nwk_command(header, source, plain, secured)
        else:
            self._on_aps(header, source, plain)

    def _on_aps(self, nwk_header: NwkHeader, source: int | None, data: bytes) -> None:
        try:
            header, pos = aps.decode_header(data)
        except aps.ApsError:
            self.stats["aps_malformed"] += 1
            return
        partner = None
        kind = None
        payload = data[pos:]
        if header.security:
            opened = self._open_aps(nwk_header, header, data, pos, source)
            if opened is None:
                return
            payload, partner, kind, key_id = opened
        else:
            key_id = None
        if header.frame_type == ApsType.ACK:
            self.events.append(AckIndication(nwk_header.src, header.counter))
            return
        if header.frame_type == ApsType.COMMAND:
            self.on_aps_command(nwk_header, header, payload, partner, key_id)
            return
        assert header.profile is not None and header.cluster is not None
        if partner is None and self.aps_policy(header.profile, header.cluster):
            self.stats["aps_unsecured_dropped"] += 1  # unicast or broadcast alike
            return
        if (self.link_kind is not None and partner is not None and kind != self.link_kind
                and self.aps_policy(header.profile, header.cluster)):
            self.stats["aps_key_not_established"] += 1  # e.g. SE frames before CBKE
            return
        if header.ack_request and header.delivery == Delivery.UNICAST:
            self._ack(nwk_header, header, partner)
        key = (nwk_header.src, header.counter)
        now = self.clock()
        while self._recent and (len(self._recent) > DUPLICATE_MEMORY
                                or next(iter(self._recent.values())) < now - DUPLICATE_LIFETIME):
            self._recent.popitem(last=False)
        if key in self._recent:
            self.stats["aps_duplicate"] += 1
            return
        self._recent[key] = now
        if header.profile == ZDO_PROFILE and header.dst_ep == 0:
            if not self.on_zdo(nwk_header, header, payload):
                return
        self.events.append(DataIndication(
            src_nwk=nwk_header.src, dst_nwk=nwk_header.dst, profile=header.profile,
            cluster=header.cluster, src_ep=header.src_ep or 0, dst_ep=header.dst_ep or 0,
            counter=header.counter, payload=payload,
            broadcast=header.delivery != Delivery.UNICAST, ack_request=header.ack_request,
            radius=nwk_header.radius, aps_partner=partner, aps_key_kind=kind,
            src_ieee=source))

    def _open_aps(self, nwk_header: NwkHeader, header: ApsHeader, data: bytes, pos: int,
                  source: int | None) -> tuple[bytes, int, str, KeyId] | None:
        try:
            aux, body_pos = AuxHeader.decode(data, pos)
        except nwk.NwkError:
            self.stats["aps_malformed"] += 1
            return None
        partner = aux.source if aux.source is not None else source
        if partner is None:
            self.stats["aps_unknown_source"] += 1
            return None
        if aux.key_id == KeyId.NETWORK:
            self.stats["aps_unsupported_key"] += 1
            return None
        entry = self.keys.link_key(partner)
        if entry is None:
            self.stats["aps_no_link_key"] += 1
            return None
        if not self.keys.aps_fresh(partner, aux.counter):
            self.stats["aps_replay"] += 1
            return None
        plain = open_sealed(data[:pos], aux, data[body_pos:], self.keys.key_for(aux.key_id, entry),
                            partner)
        if plain is None:
            self.stats["aps_mic_failure"] += 1
            return None
        if partner != self.state.ieee:
            known = self.ieee_of(nwk_header.src)
            if known is not None and known != partner and not self.tunnelled_from(nwk_header):
                self.stats["aps_source_mismatch"] += 1
                return None
        self.keys.aps_accept(partner, aux.counter)
        return plain, partner, entry.kind, aux.key_id

    def forget_duplicates(self, src_nwk: int) -> None:
        """A node that (re)joined starts its APS counters anew (they start anywhere after
        a boot): what it sent before must not make its new frames look like duplicates."""
        for key in [k for k in self._recent if k[0] == src_nwk]:
            del self._recent[key]

    def tunnelled_from(self, nwk_header: NwkHeader) -> bool:
        """A joiner takes its Transport Key from its parent, sealed by the trust centre."""
        return self.status == "authenticating" and nwk_header.src == self.joining_parent()

    def _ack(self, nwk_header: NwkHeader, header: ApsHeader, partner: int | None) -> None:
        ack = ApsHeader(ApsType.ACK, header.counter, Delivery.UNICAST, dst_ep=header.src_ep,
                        cluster=header.cluster, profile=header.profile, src_ep=header.dst_ep)
        try:
            body = (self.aps_sealed(ack, b"", self.link_for(partner)) if partner is not None
                    else ack.encode())
            self.send(Outgoing(self.nwk_frame(nwk_header.src, body), nwk_header.src))
        except SecurityError:
            self.stats["aps_ack_unsent"] += 1

    # -- ZDO: the firmware answers ---------------------------------------------------------------------
    def on_zdo(self, nwk_header: NwkHeader, header: ApsHeader, payload: bytes) -> bool:
        """Answer a ZDO request; returns whether the frame also goes up to the host."""
        cluster = header.cluster or 0
        if cluster == 0x0013 and len(payload) >= 12:  # Device_annce: nwk, ieee, caps
            announced = int.from_bytes(payload[1:3], "little")
            ieee = int.from_bytes(payload[3:11], "little")
            if announced == self.state.nwk and ieee != self.state.ieee and self.joined:
                self.address_conflict(announced, ieee)
                return True
            self.learn_address(announced, ieee)
            self.forget_duplicates(announced)
            return True
        if cluster & 0x8000 or self.zdo is None:
            return True
        if cluster == 0x0036 and len(payload) >= 2 and nwk_header.src == 0x0000 \
                and not self.is_trust_center:
            # Mgmt_Permit_Joining_req from the trust centre: routers open or close; the
            # trust centre itself opens only when its host says so
            self.permit(float(payload[1]) if payload[1] != 0xFF else 254.0)
        broadcast = header.delivery != Delivery.UNICAST
        for rsp_cluster, rsp in self.zdo.handle(cluster, payload, broadcast=broadcast):
            try:
                self.send(self.data_frame(dst_nwk=nwk_header.src, profile=ZDO_PROFILE,
                                          cluster=rsp_cluster, src_ep=0, dst_ep=0, payload=rsp,
                                          aps_secure=False))
            except SecurityError:
                self.stats["zdo_unsent"] += 1
        return self.zdo.passes_up(cluster)

    # -- plumbing for the roles ---------------------------------------------------------------------------
    def command_payload(self, command: aps.Command) -> bytes:
        return command.encode()

    def is_command(self, payload: bytes, command: ApsCommand) -> bool:
        return bool(payload) and payload[0] == command
