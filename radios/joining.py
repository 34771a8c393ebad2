"""Joining, rejoining and leaving: the joiner's side and the parent's side (sans-IO roles
of :class:`radios.node.ZigbeeNode`).

Joiner (Zigbee spec 3.6.1.4, 4.6.3): Beacon Request on a channel → beacons from routers
and the coordinator → Association Request to one that permits joining → Association
Response with our NWK address → the trust centre's Transport Key (network key), sealed
under the key-transport key of our install-code or preconfigured link key and delivered
by our parent without NWK security → joined. A node that has the network key rejoins
with a NWK-secured Rejoin Request and keeps its address; no new Transport Key.

Parent (router or coordinator): answers beacon requests (the association-permit bit says
whether it permits joining), allocates a stochastic address that nobody uses, and either
is the trust centre itself (``radios/trust_center.py``) or tells it with an APS Update
Device and relays the Tunnel it sends back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from radios import aps, mac, nwk
from radios.addressing import stochastic_address
from radios.aps import TransportKeyType, UpdateStatus
from radios.nwk import KeyId, NwkCommand, NwkHeader

if TYPE_CHECKING:
    from radios.node import ZigbeeNode

LOGGER = logging.getLogger(__name__)

REJOIN_SUCCESS = 0x00


class JoinerRole:
    """Scan, associate, authenticate; rejoin; leave."""

    def __init__(self: ZigbeeNode) -> None:  # type: ignore[misc]
        self.beacons: list[mac.Beacon] = []
        self._parent: int | None = None
        self.capability = mac.CAP_ROUTER

    def joining_parent(self: ZigbeeNode) -> int | None:  # type: ignore[misc]
        return self._parent

    def accepts_unsecured(self: ZigbeeNode, header: NwkHeader) -> bool:  # type: ignore[misc]
        if not self.nwk_security:
            return True  # a bench's "security off" network
        return self.status == "authenticating" and header.src == self._parent

    # -- commands from the host ------------------------------------------------------------------
    def start_scan(self: ZigbeeNode) -> None:  # type: ignore[misc]
        """Send a Beacon Request on the current channel; beacons collect in ``beacons``."""
        if self.status not in ("down", "scanning"):
            return
        self.status = "scanning"
        self.beacons = []
        self.outbox.append(self._raw(mac.beacon_request(self._next_mac_seq())))

    def associate(self: ZigbeeNode, beacon: mac.Beacon) -> None:  # type: ignore[misc]
        self.status = "associating"
        self.state.pan_id = beacon.pan_id
        self.state.extended_pan_id = beacon.extended_pan_id
        self._parent = beacon.source
        self.outbox.append(self._raw(mac.association_request(
            self._next_mac_seq(), beacon.pan_id, beacon.source, self.state.ieee, self.capability)))

    def join_timed_out(self: ZigbeeNode, reason: str) -> None:  # type: ignore[misc]
        if self.status in ("scanning", "associating", "authenticating", "rejoining"):
            LOGGER.info("join failed: %s", reason)
            self.status = "down" if not self.state.joined else "joined"
            self.stats["join_failed"] += 1
            self.event("join_failed", reason=reason)

    def start_rejoin(self: ZigbeeNode, parent: int) -> None:  # type: ignore[misc]
        """A NWK-secured Rejoin Request to ``parent`` (we hold the network key)."""
        self.status = "rejoining"
        self._parent = parent
        self.send(self._outgoing(parent, self.nwk_frame(parent, nwk.rejoin_request(
            self.capability), command=True)))

    def leave(self: ZigbeeNode, *, rejoin: bool = False) -> None:  # type: ignore[misc]
        """Announce our leaving (NWK Leave, broadcast) and forget the network."""
        if self.joined:
            self.send(self._outgoing(0xFFFD, self.nwk_frame(0xFFFD, nwk.leave(rejoin=rejoin),
                                                            command=True)))
        self._forget_network(rejoin=rejoin)

    def _forget_network(self: ZigbeeNode, *, rejoin: bool) -> None:  # type: ignore[misc]
        if not rejoin:
            self.state.joined = False
            self.state.network_keys.clear()
            self.state.nwk_rx.clear()
            self.state.link_keys.clear()
            self.state.tc_ieee = None
            self.state.address_map.clear()
            self.state.nwk = 0xFFFE
        self.status = "down"
        self.persist()
        self.event("left", rejoin=rejoin)

    # -- frames ------------------------------------------------------------------------------------
    def _raw(self: ZigbeeNode, frame: mac.MacFrame) -> object:  # type: ignore[misc]
        from radios.node import Outgoing

        dst = frame.dst if frame.dst_mode == mac.ADDR_SHORT and frame.dst is not None else 0xFFFF
        return Outgoing(frame.encode(), dst)

    def _outgoing(self: ZigbeeNode, dst: int, mpdu: bytes) -> object:  # type: ignore[misc]
        from radios.node import Outgoing

        return Outgoing(mpdu, dst)

    def on_mac_join_frame(self: ZigbeeNode, frame: mac.MacFrame) -> None:  # type: ignore[misc]
        if frame.type == mac.MacType.BEACON:
            if self.status == "scanning":
                try:
                    self.beacons.append(mac.Beacon.parse(frame))
                except mac.MacError:
                    self.stats["mac_malformed"] += 1
            return
        cid = mac.command_id(frame)
        if cid == mac.MacCommand.BEACON_REQUEST:
            self.on_beacon_request()
        elif cid == mac.MacCommand.ASSOCIATION_REQUEST:
            self.on_association_request(frame)
        elif cid == mac.MacCommand.ASSOCIATION_RESPONSE:
            self._on_association_response(frame)

    def _on_association_response(self: ZigbeeNode, frame: mac.MacFrame) -> None:  # type: ignore[misc]
        if (self.status != "associating" or frame.dst_mode != mac.ADDR_EXT
                or frame.dst != self.state.ieee or len(frame.payload) != 4):
            return
        short = int.from_bytes(frame.payload[1:3], "little")
        status = frame.payload[3]
        if status != mac.AssociationStatus.SUCCESS:
            self.status = "down"
            self.stats["association_refused"] += 1
            self.event("join_failed", reason=f"association refused (status {status})")
            return
        self.set_nwk(short)
        self.status = "authenticating"

    def on_transport_key(self: ZigbeeNode, nwk_header: NwkHeader, key: aps.TransportKey,  # type: ignore[misc]
                         partner: int | None, key_id: KeyId | None) -> None:
        if partner is None:
            self.stats["aps_unsecured_dropped"] += 1
            return
        if key.key_type == TransportKeyType.NETWORK:
            if key_id != KeyId.KEY_TRANSPORT or key.dst_ieee not in (self.state.ieee, 0):
                self.stats["aps_bad_key_transport"] += 1
                return
            if self.status == "authenticating":
                self._authenticated(key, partner)
            elif self.joined and partner == self.state.tc_ieee:
                self.keys.set_network_key(key.key, key.key_seq, activate=False)
                self.event("network_key_received", seq=key.key_seq)
            return
        if not self.joined or partner != self.state.tc_ieee or key_id != KeyId.KEY_LOAD:
            self.stats["aps_bad_key_transport"] += 1
            return
        if key.key_type == TransportKeyType.APPLICATION_LINK:
            self.keys.set_link_key(key.dst_ieee, key.key, "application")
            self.persist()
            self.event("key_installed", partner=key.dst_ieee, key_kind="application")
        elif key.key_type == TransportKeyType.TRUST_CENTER_LINK:
            self.keys.set_link_key(partner, key.key, "trust_center")
            self.persist()
            self.event("key_installed", partner=partner, key_kind="trust_center")

    def _authenticated(self: ZigbeeNode, key: aps.TransportKey, tc: int) -> None:  # type: ignore[misc]
        st = self.state
        st.tc_ieee = tc
        assert st.join_key is not None
        st.link_keys[tc] = st.link_keys.get(tc) or _entry(st.join_key, st.join_key_kind,
                                                           self.keys.join_rx)
        self.keys.set_network_key(key.key, key.key_seq, activate=True)
        st.joined = True
        st.parent = self._parent
        st.address_map[0x0000] = tc
        self.status = "joined"
        self.persist()
        LOGGER.info("joined PAN 0x%04X as 0x%04X", st.pan_id, st.nwk)
        self.event("joined", nwk=st.nwk, parent=self._parent, rejoin=False)

    def on_nwk_command(self: ZigbeeNode, header: NwkHeader, source: int | None,  # type: ignore[misc]
                       payload: bytes, secured: bool) -> None:
        if not payload or not (secured or not self.nwk_security):
            self.stats["nwk_unsecured"] += 1
            return
        cid = payload[0]
        if cid == NwkCommand.LEAVE and len(payload) == 2:
            self._on_leave(header, source, payload[1])
        elif cid == NwkCommand.REJOIN_REQUEST and len(payload) == 2:
            self.on_rejoin_request(header, source)
        elif cid == NwkCommand.REJOIN_RESPONSE and len(payload) == 4:
            if self.status == "rejoining" and header.src == self._parent:
                address = int.from_bytes(payload[1:3], "little")
                if payload[3] != REJOIN_SUCCESS:
                    self.join_timed_out(f"rejoin refused (status {payload[3]})")
                    return
                self.set_nwk(address)
                self.state.parent = header.src
                self.status = "joined"
                self.persist()
                self.event("joined", nwk=address, parent=header.src, rejoin=True)
        elif cid == NwkCommand.NETWORK_STATUS and len(payload) == 4:
            address = int.from_bytes(payload[2:4], "little")
            if payload[1] == nwk.STATUS_ADDRESS_CONFLICT and address == self.state.nwk \
                    and self.joined:
                self.stats["nwk_address_conflict"] += 1
                self.change_address(f"network status from 0x{header.src:04X}")
        else:
            self.stats["nwk_command_ignored"] += 1

    def _on_leave(self: ZigbeeNode, header: NwkHeader, source: int | None,  # type: ignore[misc]
                  options: int) -> None:
        if options & nwk.LEAVE_REQUEST:
            # a request to leave: only from our parent or the trust centre, to us
            if header.dst == self.state.nwk and header.src in (self.state.parent, 0x0000):
                LOGGER.info("asked to leave by 0x%04X", header.src)
                self._forget_network(rejoin=bool(options & nwk.LEAVE_REJOIN))
            return
        if source is None:
            return
        self.address_left(header.src, source)

    def address_left(self: ZigbeeNode, addr: int, ieee: int) -> None:  # type: ignore[misc]
        if self.state.address_map.get(addr) == ieee:
            del self.state.address_map[addr]
            self.dirty = True
        self.on_device_left(ieee, addr)


def _entry(key: str, kind: str, rx: int):  # noqa: ANN202
    from radios.state import LinkKeyEntry

    return LinkKeyEntry(key=key, kind=kind, rx=rx)


@dataclasses.dataclass
class PendingChild:
    ieee: int
    nwk: int


class ConflictRole:
    """Address conflict detection and resolution (3.6.1.9).

    A node that hears another device (by the IEEE address in the secured NWK header, or a
    Device_annce) use its own NWK address tells the network with a broadcast Network
    Status "address conflict" for that address and takes a new stochastic address; every
    other node using that address does the same when the status reaches it. Each takes
    the new address at once and announces it (Device_annce), which updates every address
    map. The coordinator (0x0000) keeps its address; the other device moves."""

    def __init__(self: ZigbeeNode) -> None:  # type: ignore[misc]
        self._conflict_said: dict[int, float] = {}

    def address_conflict(self: ZigbeeNode, address: int, other: int) -> None:  # type: ignore[misc]
        self.stats["nwk_address_conflict"] += 1
        now = self.clock()
        said = self._conflict_said.get(address)
        if said is not None and now - said < nwk.ADDRESS_CONFLICT_QUIET:
            return  # told already: the other device is moving
        self._conflict_said[address] = now
        LOGGER.warning("NWK address 0x%04X is also used by %016x: resolving", address, other)
        self.send(self._outgoing(0xFFFD, self.nwk_frame(0xFFFD, nwk.network_status(
            nwk.STATUS_ADDRESS_CONFLICT, address), command=True)))
        if not self.is_coordinator:
            self.change_address(f"{other:016x} uses it too")

    def change_address(self: ZigbeeNode, why: str) -> None:  # type: ignore[misc]
        """Take a new stochastic address and announce it (a router or end device)."""
        if self.is_coordinator:
            return
        old = self.state.nwk
        amap = self.state.address_map
        new = stochastic_address(self.random, lambda a: a in amap or a == old
                                 or not self.address_free(a))
        self.set_nwk(new)
        self.forget_duplicates(old)
        self.persist()
        LOGGER.info("NWK address 0x%04X -> 0x%04X (%s)", old, new, why)
        self.event("address_changed", old=old, nwk=new, reason=why)
        self.announce()

    def announce(self: ZigbeeNode, tsn: int | None = None) -> None:  # type: ignore[misc]
        """Broadcast a ZDO Device_annce with our address (NWK security only)."""
        caps = (self.zdo.node.node_descriptor().mac_capability_flags if self.zdo is not None
                else self.capability)
        tsn = self.next_aps_counter() if tsn is None else tsn
        payload = bytes([tsn & 0xFF]) + self.state.nwk.to_bytes(2, "little") \
            + self.state.ieee.to_bytes(8, "little") + bytes([int(caps) & 0xFF])
        self.send(self.data_frame(dst_nwk=0xFFFD, profile=0x0000, cluster=0x0013, src_ep=0,
                                  dst_ep=0, payload=payload, aps_secure=False))


class ParentRole:
    """Permit joining, answer beacons and association, relay for the trust centre."""

    def __init__(self: ZigbeeNode) -> None:  # type: ignore[misc]
        self.permit_until = 0.0
        self.always_permit = False  # a development network: joining never closes
        self.clock: Callable[[], float] = time.monotonic
        self.children: dict[int, PendingChild] = {}  # joiners relayed to the TC, by IEEE

    def permit(self: ZigbeeNode, seconds: float) -> None:  # type: ignore[misc]
        self.permit_until = self.clock() + seconds if seconds > 0 else 0.0

    @property
    def permitting(self: ZigbeeNode) -> bool:  # type: ignore[misc]
        return self.joined and (self.always_permit or self.clock() < self.permit_until)

    def on_beacon_request(self: ZigbeeNode) -> None:  # type: ignore[misc]
        if not self.joined or self.state.logical_type == "end_device":
            return
        beacon = mac.Beacon(pan_id=self.state.pan_id, source=self.state.nwk,
                            extended_pan_id=self.state.extended_pan_id,
                            permit_joining=self.permitting, pan_coordinator=self.is_coordinator,
                            depth=0 if self.is_coordinator else 1,
                            nwk_update_id=self.state.nwk_update_id)
        self.outbox.append(self._raw(beacon.frame(self._next_mac_seq())))

    def allocate_address(self: ZigbeeNode, ieee: int) -> int:  # type: ignore[misc]
        """Stochastic addressing (3.6.1.7): random addresses until one is free, a bounded
        search (``radios/addressing.py``)."""
        known = self.nwk_of(ieee)
        if known is not None:
            return known
        amap = self.state.address_map
        own = self.state.nwk
        return stochastic_address(
            self.random, lambda addr: addr in amap or addr == own or not self.address_free(addr))

    def on_association_request(self: ZigbeeNode, frame: mac.MacFrame) -> None:  # type: ignore[misc]
        if (frame.dst_mode != mac.ADDR_SHORT or frame.dst != self.state.nwk
                or frame.dst_pan != self.state.pan_id or frame.src_mode != mac.ADDR_EXT
                or frame.src is None or not self.joined):
            return
        joiner = frame.src

        def respond(short: int, status: mac.AssociationStatus) -> None:
            self.outbox.append(self._raw(mac.association_response(
                self._next_mac_seq(), self.state.pan_id, self.state.ieee, joiner, short, status)))

        if not self.permitting:
            self.stats["join_not_permitted"] += 1
            respond(0xFFFF, mac.AssociationStatus.PAN_ACCESS_DENIED)
            return
        if self.is_trust_center and self.join_decision(joiner) is None:
            respond(0xFFFF, mac.AssociationStatus.PAN_ACCESS_DENIED)
            return
        short = self.allocate_address(joiner)
        respond(short, mac.AssociationStatus.SUCCESS)
        self.forget_duplicates(short)
        if self.is_trust_center:
            self.admit(joiner, short, parent=self.state.nwk)
        else:
            self.children[joiner] = PendingChild(joiner, short)
            self.send(self.command_frame(0x0000, aps.UpdateDevice(
                joiner, short, UpdateStatus.UNSECURED_JOIN).encode(), partner=self.state.tc_ieee))

    def on_rejoin_request(self: ZigbeeNode, header: NwkHeader, source: int | None) -> None:  # type: ignore[misc]
        if source is None or not self.joined or self.state.logical_type == "end_device":
            return
        if header.dst != self.state.nwk:
            return
        if self.is_trust_center and source not in self.state.devices:
            self.stats["rejoin_refused"] += 1
            self.send(self._outgoing(header.src, self.nwk_frame(
                header.src, nwk.rejoin_response(0xFFFF, 0x02), command=True)))
            return
        known = self.state.address_map.get(header.src)
        address = header.src if known in (None, source) else self.allocate_address(source)
        self.learn_address(address, source)
        self.forget_duplicates(address)
        self.send(self._outgoing(address, self.nwk_frame(
            address, nwk.rejoin_response(address, REJOIN_SUCCESS), command=True)))
        if self.is_trust_center:
            self.device_rejoined(source, address, parent=self.state.nwk)
        else:
            self.send(self.command_frame(0x0000, aps.UpdateDevice(
                source, address, UpdateStatus.SECURED_REJOIN).encode(), partner=self.state.tc_ieee))

    def on_tunnel(self: ZigbeeNode, nwk_header: NwkHeader, tunnel: aps.Tunnel) -> None:  # type: ignore[misc]
        if nwk_header.src != 0x0000:
            self.stats["aps_bad_tunnel"] += 1
            return
        child = self.children.pop(tunnel.dst_ieee, None)
        if child is None:
            self.stats["aps_bad_tunnel"] += 1
            return
        self.learn_address(child.nwk, child.ieee)
        self.send(self._outgoing(child.nwk, self.nwk_frame(child.nwk, tunnel.frame, secure=False)))

    def on_remove_device(self: ZigbeeNode, partner: int | None, remove: aps.RemoveDevice) -> None:  # type: ignore[misc]
        if partner is None or partner != self.state.tc_ieee:
            self.stats["aps_bad_remove"] += 1
            return
        self.children.pop(remove.target, None)
        addr = self.nwk_of(remove.target)
        if addr is not None:
            self.send(self._outgoing(addr, self.nwk_frame(addr, nwk.leave(request=True),
                                                          command=True)))
