"""The trust centre (sans-IO role of the coordinator's :class:`radios.node.ZigbeeNode`).

It decides per joiner (Zigbee spec 4.6.3.2; SE 1.x 5.4): policy ``install_code`` admits
only devices whose install code was registered (the link key is AES-MMO of the code),
``preconfigured`` also admits anyone holding the network's preconfigured link key, and
``closed`` admits nobody. An admitted joiner gets the network key in a Transport Key
sealed under the key-transport key of its link key — directly when the trust centre is
its parent, else tunnelled through the parent that sent the Update Device. Refused
joiners are counted (``join_refused``) and told so (association denied, or Remove Device
to their parent).

It also hands out application link keys on Request Key (to both partners, sealed under
each one's key-load key), removes devices (NWK Leave request, or APS Remove Device to
the parent), and rolls the network key: Transport Key of the next key to every device,
then a broadcast Switch Key; the old key is accepted until the switch.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from radios import aps, nwk
from radios.aps import ApsCommand, ApsHeader, ApsType, RequestKeyType, TransportKeyType
from radios.aps import UpdateStatus as US
from radios.crypto import link_key_from_install_code
from radios.nwk import KeyId, NwkHeader
from radios.state import LinkKeyEntry

if TYPE_CHECKING:
    from radios.node import ZigbeeNode

LOGGER = logging.getLogger(__name__)

ANY_DEVICE = 0xFFFFFFFFFFFFFFFF  # admitted-table key of the preconfigured (global) link key
POLICIES = ("install_code", "preconfigured", "closed")


class TrustCenterRole:
    def __init__(self: ZigbeeNode) -> None:  # type: ignore[misc]
        pass

    # -- set-up by the host ----------------------------------------------------------------------
    def form(self: ZigbeeNode, *, pan_id: int, extended_pan_id: int, channel: int,  # type: ignore[misc]
             network_key: bytes, key_seq: int = 0) -> None:
        st = self.state
        st.logical_type = "coordinator"
        st.pan_id, st.extended_pan_id, st.channel = pan_id, extended_pan_id, channel
        self.set_nwk(0x0000)
        st.tc_ieee = st.ieee
        st.joined = True
        st.network_keys = {}
        self.keys.set_network_key(network_key, key_seq, activate=True)
        self.status = "joined"
        self.persist()

    def set_policy(self: ZigbeeNode, policy: str) -> None:  # type: ignore[misc]
        if policy not in POLICIES:
            raise ValueError(f"trust-centre policy must be one of {', '.join(POLICIES)}")
        self.state.tc_policy = policy
        self.dirty = True

    def add_install_code(self: ZigbeeNode, ieee: int, code: bytes) -> None:  # type: ignore[misc]
        """Admit ``ieee`` with the link key its install code gives (raises InstallCodeError)."""
        self.admit_key(ieee, link_key_from_install_code(code), "install_code")

    def admit_key(self: ZigbeeNode, ieee: int, key: bytes, kind: str = "preconfigured") -> None:  # type: ignore[misc]
        self.state.admitted[ieee] = LinkKeyEntry(key=bytes(key).hex(), kind=kind)
        self.persist()

    def join_decision(self: ZigbeeNode, joiner: int) -> LinkKeyEntry | None:  # type: ignore[misc]
        policy = self.state.tc_policy
        entry = None
        if policy == "install_code":
            entry = self.state.admitted.get(joiner)
            if entry is not None and entry.kind != "install_code":
                entry = None
        elif policy == "preconfigured":
            entry = self.state.admitted.get(joiner) or self.state.admitted.get(ANY_DEVICE)
        if entry is None:
            self.stats["join_refused"] += 1
            LOGGER.warning("trust centre: joiner %016x refused (policy %s)", joiner, policy)
            self.event("join_refused", ieee=joiner, policy=policy)
        return entry

    # -- admitting ---------------------------------------------------------------------------------
    def _transport_network_key(self: ZigbeeNode, joiner: int) -> bytes:  # type: ignore[misc]
        """The Transport Key (network key) APS command frame for ``joiner``, sealed."""
        key = self.keys.network_key()
        assert key is not None
        command = aps.TransportKey(TransportKeyType.NETWORK, key, dst_ieee=joiner,
                                   src_ieee=self.state.ieee, key_seq=self.keys.active_seq).encode()
        header = ApsHeader(ApsType.COMMAND, self.next_aps_counter())
        return self.aps_sealed(header, command, self.link_for(joiner), KeyId.KEY_TRANSPORT)

    def _install_joiner_key(self: ZigbeeNode, joiner: int) -> bool:  # type: ignore[misc]
        entry = self.join_decision(joiner)
        if entry is None:
            return False
        current = self.state.link_keys.get(joiner)
        if current is None or current.kind in ("install_code", "preconfigured"):
            self.keys.set_link_key(joiner, bytes.fromhex(entry.key), entry.kind)
        return True

    def admit(self: ZigbeeNode, joiner: int, short: int, *, parent: int) -> None:  # type: ignore[misc]
        """A joiner that associated with us (its parent): send it the network key."""
        if not self._install_joiner_key(joiner):
            return
        self.learn_address(short, joiner)
        frame = self._transport_network_key(joiner)
        self.send(self._outgoing(short, self.nwk_frame(short, frame, secure=False)))
        self._joined(joiner, short, parent)

    def _joined(self: ZigbeeNode, joiner: int, short: int, parent: int) -> None:  # type: ignore[misc]
        self.state.devices[joiner] = {"nwk": short, "parent": parent}
        self.keys.forget_neighbour(joiner)
        self.persist()
        LOGGER.info("trust centre: %016x joined as 0x%04X (parent 0x%04X)", joiner, short, parent)
        self.event("device_joined", ieee=joiner, nwk=short, parent=parent, rejoin=False)

    def device_rejoined(self: ZigbeeNode, ieee: int, short: int, *, parent: int) -> None:  # type: ignore[misc]
        self.state.devices[ieee] = {"nwk": short, "parent": parent}
        self.learn_address(short, ieee)
        self.dirty = True
        self.event("device_joined", ieee=ieee, nwk=short, parent=parent, rejoin=True)

    def on_device_left(self: ZigbeeNode, ieee: int, addr: int) -> None:  # type: ignore[misc]
        if self.is_trust_center and self.state.devices.pop(ieee, None) is not None:
            self.persist()
        self.event("device_left", ieee=ieee, nwk=addr)

    # -- APS commands ------------------------------------------------------------------------------
    def on_aps_command(self: ZigbeeNode, nwk_header: NwkHeader, header: ApsHeader,  # type: ignore[misc]
                       payload: bytes, partner: int | None, key_id: KeyId | None) -> None:
        try:
            command = aps.decode_command(payload)
        except aps.ApsError:
            self.stats["aps_malformed"] += 1
            return
        if header.ack_request and header.delivery == aps.Delivery.UNICAST:
            self._ack_command(nwk_header, header, partner)
        if isinstance(command, aps.TransportKey):
            self.on_transport_key(nwk_header, command, partner, key_id)
        elif isinstance(command, aps.SwitchKey):
            if self.joined and nwk_header.src == 0x0000 and not self.is_trust_center:
                if self.keys.activate(command.key_seq):
                    self.persist()
                    self.event("network_key_switched", seq=command.key_seq)
        elif isinstance(command, aps.Tunnel):
            self.on_tunnel(nwk_header, command)
        elif isinstance(command, aps.RemoveDevice):
            self.on_remove_device(partner, command)
        elif not self.is_trust_center:
            self.stats["aps_command_ignored"] += 1
        elif partner is None or partner != self.ieee_of(nwk_header.src):
            self.stats["aps_unsecured_dropped"] += 1  # TC commands need the sender's link key
        elif isinstance(command, aps.UpdateDevice):
            self._on_update_device(nwk_header.src, partner, command)
        elif isinstance(command, aps.RequestKey):
            self._on_request_key(partner, command)

    def _ack_command(self: ZigbeeNode, nwk_header: NwkHeader, header: ApsHeader,  # type: ignore[misc]
                     partner: int | None) -> None:
        ack = ApsHeader(ApsType.ACK, header.counter, ack_format=True)
        body = ack.encode() if partner is None else self.aps_sealed(ack, b"",
                                                                      self.link_for(partner))
        self.send(self._outgoing(nwk_header.src, self.nwk_frame(nwk_header.src, body)))

    def _on_update_device(self: ZigbeeNode, router_nwk: int, router: int,  # type: ignore[misc]
                          update: aps.UpdateDevice) -> None:
        if update.status == US.UNSECURED_JOIN:
            if not self._install_joiner_key(update.ieee):
                self.send(self.command_frame(router_nwk, aps.RemoveDevice(update.ieee).encode(),
                                             partner=router))
                return
            tunnel = aps.Tunnel(update.ieee, self._transport_network_key(update.ieee))
            self.send(self.command_frame(router_nwk, tunnel.encode(), partner=None))
            self.learn_address(update.nwk, update.ieee)
            self._joined(update.ieee, update.nwk, router_nwk)
        elif update.status in (US.SECURED_REJOIN, US.TC_REJOIN):
            if update.ieee in self.state.devices:
                self.device_rejoined(update.ieee, update.nwk, parent=router_nwk)
            else:
                self.stats["rejoin_refused"] += 1
                self.send(self.command_frame(router_nwk, aps.RemoveDevice(update.ieee).encode(),
                                             partner=router))
        elif update.status == US.DEVICE_LEFT:
            self.on_device_left(update.ieee, update.nwk)

    def _on_request_key(self: ZigbeeNode, requester: int, request: aps.RequestKey) -> None:  # type: ignore[misc]
        if request.key_type != RequestKeyType.APPLICATION_LINK or request.partner is None:
            self.stats["aps_command_ignored"] += 1
            return
        partner = request.partner
        if partner == requester or not self._known_device(requester) \
                or not self._known_device(partner):
            self.stats["request_key_refused"] += 1
            return
        key = secrets.token_bytes(16)
        for dst, other, initiator in ((requester, partner, True), (partner, requester, False)):
            if dst == self.state.ieee:
                self.keys.set_link_key(other, key, "application")
                continue
            addr = self.nwk_of(dst)
            if addr is None:
                continue
            command = aps.TransportKey(TransportKeyType.APPLICATION_LINK, key, dst_ieee=other,
                                       initiator=initiator).encode()
            self.send(self.command_frame(addr, command, partner=dst, key_id=KeyId.KEY_LOAD))
        self.event("application_key_issued", partners=(requester, partner))

    def _known_device(self: ZigbeeNode, ieee: int) -> bool:  # type: ignore[misc]
        return ieee == self.state.ieee or ieee in self.state.devices

    # -- management --------------------------------------------------------------------------------
    def remove_device(self: ZigbeeNode, ieee: int) -> bool:  # type: ignore[misc]
        """Ask a device to leave (directly, or through its parent)."""
        device = self.state.devices.get(ieee)
        if device is None:
            return False
        parent = device.get("parent", 0x0000)
        if parent == self.state.nwk:
            self.send(self._outgoing(device["nwk"], self.nwk_frame(
                device["nwk"], nwk.leave(request=True), command=True)))
        else:
            parent_ieee = self.ieee_of(parent)
            self.send(self.command_frame(parent, aps.RemoveDevice(ieee).encode(),
                                         partner=parent_ieee))
        self.state.devices.pop(ieee, None)
        self.keys.forget_link_key(ieee)
        self.persist()
        self.event("device_removed", ieee=ieee)
        return True

    def update_network_key(self: ZigbeeNode, key: bytes | None = None) -> int:  # type: ignore[misc]
        """Send the next network key to every device (it takes effect at Switch Key)."""
        seq = (self.keys.active_seq + 1) & 0xFF
        new = key or secrets.token_bytes(16)
        self.keys.set_network_key(new, seq, activate=False)
        self.persist()
        for ieee, device in self.state.devices.items():
            command = aps.TransportKey(TransportKeyType.NETWORK, new, dst_ieee=ieee,
                                       src_ieee=self.state.ieee, key_seq=seq).encode()
            try:
                self.send(self.command_frame(device["nwk"], command, partner=ieee,
                                             key_id=KeyId.KEY_TRANSPORT))
            except Exception:  # noqa: BLE001 - a device without a link key is skipped
                LOGGER.warning("no link key for %016x: network key not sent", ieee)
        return seq

    def switch_network_key(self: ZigbeeNode, seq: int) -> None:  # type: ignore[misc]
        """Broadcast Switch Key (under the old key), then use the new key."""
        command = bytes([ApsCommand.SWITCH_KEY, seq & 0xFF])
        self.send(self.command_frame(0xFFFD, command, partner=None))
        self.keys.activate(seq)
        self.persist()
        self.event("network_key_switched", seq=seq)
