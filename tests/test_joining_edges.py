"""Joining, rejoining, leaving and address conflicts (``radios/joining.py``) at their edges.

Sans-IO nodes on an in-process air (``tests/han_mesh.py``); what went over the air is read
by an independent decoder (``tests/zb_oracle.py``) and the byte layouts are the spec's:
beacon superframe bit 15 = association permit (802.15.4 7.2.2.1.2), Association Response
status 0x02 = PAN access denied (7.3.3.3), NWK Leave 0x04 with request bit 0x40 and rejoin
bit 0x20, Rejoin Response 0x07 with status 0x02 for "not permitted", Network Status 0x03
code 0x0D for an address conflict (Zigbee 3.4), Device_annce = ZDO cluster 0x0013 with
TSN, NWK address, IEEE, capability (2.4.3.1.11).
"""

from __future__ import annotations

import zb_oracle as zo
from han_mesh import NETWORK_KEY, TC_IEEE, Mesh, events

from radios import aps, mac, nwk
from radios.aps import TransportKeyType
from radios.crypto import make_install_code
from radios.nwk import KeyId, NwkHeader, NwkType

DEV = 0x000D6F00000000AA
DEV2 = 0x000D6F00000000AB
ROUTER = 0x000D6F00000000C1


def joined_pair(policy: str = "install_code") -> tuple[Mesh, object, object, bytes]:
    m = Mesh()
    tc = m.trust_centre(policy)
    code = make_install_code()
    tc.add_install_code(DEV, code)
    dev = m.joiner(DEV, key=zo.install_code_key(code))
    assert m.join(dev)
    return m, tc, dev, zo.install_code_key(code)


def nwk_commands(m: Mesh, start: int = 0) -> list[zo.Frame]:
    return [f for f in (zo.read(s.mpdu, network_keys=[NETWORK_KEY]) for s in m.air[start:])
            if f.nwk_command]


def mac_payloads(m: Mesh, start: int, mac_type: int) -> list[bytes]:
    out = []
    for s in m.air[start:]:
        f = zo.read(s.mpdu)
        if f.mac_type == mac_type:
            out.append(f.nwk_payload)
    return out


# -- beacons and association -----------------------------------------------------------------------
def test_the_beacon_says_whether_joining_is_permitted_and_permit_expires():
    m = Mesh()
    tc = m.trust_centre()
    scanner = m.node(DEV)
    for permit, when, expect in ((60, 0, True), (60, 61, False), (0, 0, False), (-1, 0, False)):
        tc.permit(permit)
        m.now += when
        start = len(m.air)
        scanner.status = "down"
        scanner.start_scan()
        m.pump()
        (beacon,) = mac_payloads(m, start, 0)
        assert bool(beacon[1] & 0x80) is expect, (permit, when)  # superframe bit 15
        assert bool(beacon[1] & 0x40)  # the coordinator is the PAN coordinator
        assert [b.permit_joining for b in scanner.beacons] == [expect]
    tc.always_permit = True
    assert tc.permitting
    tc.always_permit = False
    # a monotonic clock starts anywhere, also near 0: closing must not depend on its value
    for now in (0.0, 0.5, 1e9):
        m.now = now
        tc.permit(0)
        assert not tc.permitting
        tc.permit(10)
        assert tc.permitting


def test_scan_only_from_down_and_no_beacons_from_end_devices_or_unjoined_routers():
    m, tc, dev, _ = joined_pair()
    other = m.node(DEV2)
    ed = m.node(0x000D6F00000000E1, logical_type="end_device")
    ed.status = "joined"
    ed.state.joined = True
    dev.permit(60)
    tc.permit(60)
    start = len(m.air)
    other.start_scan()
    m.pump()
    assert sorted(b.source for b in other.beacons) == sorted([0x0000, dev.state.nwk])
    assert len(mac_payloads(m, start, 0)) == 2  # the end device sent none
    before = len(m.air)
    dev.start_scan()  # a joined node does not scan
    assert dev.status == "joined" and dev.take_outbox() == [] and len(m.air) == before
    assert other.status == "scanning"
    other.start_scan()  # scanning again is allowed and starts a fresh list
    assert other.beacons == [] and len(other.take_outbox()) == 1


def test_association_is_denied_when_not_permitting_and_the_joiner_goes_down():
    m = Mesh()
    tc = m.trust_centre()
    dev = m.enrolled(tc, DEV)
    dev.start_scan()
    m.pump()
    (beacon,) = dev.beacons
    tc.permit(0)
    start = len(m.air)
    dev.associate(beacon)
    m.pump()
    (rsp,) = [p for p in mac_payloads(m, start, 3) if p[0] == 0x02]
    assert rsp[1:] == bytes([0xFF, 0xFF, 0x02])  # no address, PAN access denied
    assert tc.stats["join_not_permitted"] == 1 and DEV not in tc.state.devices
    assert dev.status == "down" and dev.stats["association_refused"] == 1
    assert "status 2" in events(dev, "join_failed")[0].details["reason"]


def test_an_association_response_for_another_joiner_is_not_taken():
    m = Mesh()
    m.trust_centre()
    dev = m.node(DEV)
    dev.status = "associating"
    for dst, payload in ((DEV2, bytes([0x02, 0x34, 0x12, 0x00])),
                         (DEV, bytes([0x02, 0x34, 0x12, 0x00, 0x00]))):
        frame = mac.MacFrame(type=mac.MacType.COMMAND, seq=1, payload=payload, dst_pan=0x1A62,
                             dst=dst, dst_mode=mac.ADDR_EXT, src_pan=0x1A62, src=TC_IEEE,
                             src_mode=mac.ADDR_EXT)
        dev.receive(frame.encode())
    assert dev.status == "associating" and dev.state.nwk == 0xFFFE
    good = mac.association_response(2, 0x1A62, TC_IEEE, DEV, 0x1234,
                                    mac.AssociationStatus.SUCCESS)
    dev.receive(good.encode())
    assert dev.status == "authenticating" and dev.state.nwk == 0x1234


def test_an_association_request_to_another_address_or_pan_is_not_answered():
    m = Mesh()
    tc = m.trust_centre("preconfigured")
    for dst, pan in ((0x0001, 0x1A62), (0x0000, 0x1A63)):
        req = mac.association_request(1, pan, dst, DEV, mac.CAP_ROUTER)
        tc.receive(req.encode())
    assert tc.take_outbox() == [] and DEV not in tc.state.devices


def test_a_joining_router_relays_update_device_and_holds_the_child_until_the_tunnel():
    m = Mesh()
    tc = m.trust_centre()
    rcode, ccode = make_install_code(), make_install_code()
    tc.add_install_code(ROUTER, rcode)
    tc.add_install_code(DEV, ccode)
    router = m.joiner(ROUTER, key=zo.install_code_key(rcode))
    assert m.join(router)
    tc.permit(0)
    router.permit(30)
    child = m.joiner(DEV, key=zo.install_code_key(ccode))
    child.start_scan()
    m.pump()
    (beacon,) = [b for b in child.beacons if b.permit_joining]
    assert beacon.source == router.state.nwk
    child.associate(beacon)
    router_out = []
    tc_node = m.nodes.pop(TC_IEEE)  # hold the TC's answer back
    m.pump()
    router_out = [f for f in nwk_commands(m) if f.nwk_src == router.state.nwk]
    assert router_out == []  # Update Device is an APS command, not a NWK one
    assert list(router.children) == [DEV] and child.status == "authenticating"
    m.nodes[TC_IEEE] = tc_node
    # the parent takes an unsecured NWK frame only while its child authenticates: here the
    # child takes the relayed Transport Key only from its parent
    assert child.accepts_unsecured(NwkHeader(NwkType.DATA, 0xFFFF, router.state.nwk))
    assert not child.accepts_unsecured(NwkHeader(NwkType.DATA, 0xFFFF, 0x0000))
    assert not router.accepts_unsecured(NwkHeader(NwkType.DATA, 0xFFFF, child.state.nwk))


def test_a_tunnel_not_from_the_trust_centre_or_for_no_pending_child_is_dropped():
    m, tc, router, _ = joined_pair()
    tunnel = aps.Tunnel(DEV2, b"\x01\x02\x03")
    header = NwkHeader(NwkType.DATA, router.state.nwk, 0x1234)
    router.on_tunnel(header, tunnel)
    assert router.stats["aps_bad_tunnel"] == 1
    router.on_tunnel(NwkHeader(NwkType.DATA, router.state.nwk, 0x0000), tunnel)
    assert router.stats["aps_bad_tunnel"] == 2 and router.take_outbox() == []


# -- the joiner's key checks ---------------------------------------------------------------------
def test_a_network_key_must_come_under_the_key_transport_key_and_name_us():
    m, tc, dev, link = joined_pair()
    header = NwkHeader(NwkType.DATA, dev.state.nwk, 0x0000)
    wrong = bytes(range(16))
    for key_id, dst in ((KeyId.DATA, DEV), (KeyId.KEY_LOAD, DEV), (KeyId.KEY_TRANSPORT, DEV2)):
        tk = aps.TransportKey(TransportKeyType.NETWORK, wrong, dst_ieee=dst, src_ieee=TC_IEEE,
                              key_seq=1)
        dev.on_transport_key(header, tk, TC_IEEE, key_id)
    assert dev.stats["aps_bad_key_transport"] == 3 and dev.keys.network_key(1) is None
    tk = aps.TransportKey(TransportKeyType.NETWORK, wrong, dst_ieee=0, src_ieee=TC_IEEE,
                          key_seq=1)  # dst all-zero: "to every device" (4.4.10.1.3)
    dev.on_transport_key(header, tk, DEV2, KeyId.KEY_TRANSPORT)  # not from the TC
    assert dev.keys.network_key(1) is None
    dev.on_transport_key(header, tk, None, KeyId.KEY_TRANSPORT)  # unsecured at APS
    assert dev.stats["aps_unsecured_dropped"] == 1 and dev.keys.network_key(1) is None
    dev.on_transport_key(header, tk, TC_IEEE, KeyId.KEY_TRANSPORT)
    assert dev.keys.network_key(1) == wrong and dev.keys.active_seq == 0  # next key, inactive
    assert events(dev, "network_key_received")[0].details == {"seq": 1}


def test_link_keys_only_from_the_trust_centre_under_the_key_load_key():
    m, tc, dev, link = joined_pair()
    header = NwkHeader(NwkType.DATA, dev.state.nwk, 0x0000)
    app = aps.TransportKey(TransportKeyType.APPLICATION_LINK, b"\x66" * 16, dst_ieee=DEV2)
    tclk = aps.TransportKey(TransportKeyType.TRUST_CENTER_LINK, b"\x67" * 16, dst_ieee=DEV)
    for key, partner, key_id in ((app, DEV2, KeyId.KEY_LOAD), (app, TC_IEEE, KeyId.DATA),
                                 (app, TC_IEEE, KeyId.KEY_TRANSPORT)):
        dev.on_transport_key(header, key, partner, key_id)
    assert dev.stats["aps_bad_key_transport"] == 3 and DEV2 not in dev.state.link_keys
    dev.on_transport_key(header, app, TC_IEEE, KeyId.KEY_LOAD)
    assert dev.state.link_keys[DEV2].key == "66" * 16
    assert dev.state.link_keys[DEV2].kind == "application"
    dev.on_transport_key(header, tclk, TC_IEEE, KeyId.KEY_LOAD)
    assert dev.state.link_keys[TC_IEEE].key == "67" * 16
    assert dev.state.link_keys[TC_IEEE].kind == "trust_center"
    assert [e.details for e in events(dev, "key_installed")] == [
        {"partner": DEV2, "key_kind": "application"},
        {"partner": TC_IEEE, "key_kind": "trust_center"}]


def test_joining_records_the_trust_centre_and_keeps_the_join_key_as_its_link_key():
    m, tc, dev, link = joined_pair()
    st = dev.state
    assert st.tc_ieee == TC_IEEE and st.joined and st.parent == 0x0000
    assert st.address_map[0x0000] == TC_IEEE
    assert st.link_keys[TC_IEEE].key == link.hex() and st.link_keys[TC_IEEE].kind == \
        "install_code"
    assert events(dev, "joined")[0].details == {"nwk": st.nwk, "parent": 0, "rejoin": False}


def test_join_timed_out_only_while_joining_and_back_to_what_it_was():
    m, tc, dev, _ = joined_pair()
    dev.join_timed_out("x")
    assert dev.stats["join_failed"] == 0 and dev.status == "joined"
    for status in ("scanning", "associating", "authenticating", "rejoining"):
        dev.status = status
        dev.join_timed_out("no answer")
        assert dev.status == "joined"  # it still holds its network
    assert dev.stats["join_failed"] == 4
    fresh = m.node(DEV2)
    fresh.status = "associating"
    fresh.join_timed_out("no answer")
    assert fresh.status == "down" and events(fresh, "join_failed")[0].details == {
        "reason": "no answer"}


# -- leaving -----------------------------------------------------------------------------------------
def test_leave_broadcasts_a_secured_leave_and_forgets_every_key():
    m, tc, dev, _ = joined_pair()
    start = len(m.air)
    dev.leave()
    m.pump()
    (frame,) = nwk_commands(m, start)
    assert frame.nwk_secured and frame.nwk_dst == 0xFFFD and frame.nwk_payload == b"\x04\x00"
    st = dev.state
    assert not st.joined and st.network_keys == {} and st.link_keys == {} and st.nwk_rx == {}
    assert st.tc_ieee is None and st.address_map == {} and st.nwk == 0xFFFE
    assert dev.status == "down" and events(dev, "left")[0].details == {"rejoin": False}
    assert DEV not in tc.state.devices  # the TC heard it go
    assert events(tc, "device_left")[0].details["ieee"] == DEV


def test_leave_with_rejoin_keeps_the_network():
    m, tc, dev, _ = joined_pair()
    start = len(m.air)
    dev.leave(rejoin=True)
    m.pump()
    (frame,) = nwk_commands(m, start)
    assert frame.nwk_payload == bytes([0x04, nwk.LEAVE_REJOIN])
    assert dev.state.joined and dev.keys.network_key() == NETWORK_KEY and dev.status == "down"
    assert dev.state.tc_ieee == TC_IEEE


def test_a_leave_request_is_taken_only_from_the_parent_or_the_tc_and_only_to_us():
    m = Mesh()
    tc = m.trust_centre()
    codes = {ieee: make_install_code() for ieee in (DEV, DEV2)}
    for ieee, code in codes.items():
        tc.add_install_code(ieee, code)
    dev = m.joiner(DEV, key=zo.install_code_key(codes[DEV]))
    other = m.joiner(DEV2, key=zo.install_code_key(codes[DEV2]))
    assert m.join(dev) and m.join(other)
    # another member asks dev to leave: refused
    other.send(other._outgoing(dev.state.nwk, other.nwk_frame(
        dev.state.nwk, nwk.leave(request=True), command=True)))
    m.pump()
    assert dev.state.joined
    # a broadcast leave request from the TC is not "to us"
    tc.send(tc._outgoing(0xFFFD, tc.nwk_frame(0xFFFD, nwk.leave(request=True), command=True)))
    m.pump()
    assert dev.state.joined and other.state.joined
    # an unsecured leave request is never taken
    tc.send(tc._outgoing(dev.state.nwk, tc.nwk_frame(dev.state.nwk, nwk.leave(request=True),
                                                      command=True, secure=False)))
    m.pump()
    assert dev.state.joined and dev.stats["nwk_unsecured"] >= 1
    # from the TC, to us, with rejoin: leave and keep the network
    tc.send(tc._outgoing(dev.state.nwk, tc.nwk_frame(dev.state.nwk, nwk.leave(
        request=True, rejoin=True), command=True)))
    m.pump()
    assert dev.status == "down" and dev.state.joined
    assert events(dev, "left")[0].details == {"rejoin": True}


def test_a_member_that_left_is_removed_from_everyones_address_map():
    m, tc, dev, _ = joined_pair()
    addr = dev.state.nwk
    assert tc.state.address_map[addr] == DEV
    dev.leave()
    m.pump()
    assert addr not in tc.state.address_map
    # a leave announcement naming another IEEE than the map holds changes nothing
    tc.state.address_map[0x4321] = DEV2
    tc.address_left(0x4321, DEV)
    assert tc.state.address_map[0x4321] == DEV2


# -- rejoining -----------------------------------------------------------------------------------------
def test_a_secured_rejoin_keeps_the_address_and_gets_no_new_key():
    m, tc, dev, link = joined_pair()
    addr = dev.state.nwk
    dev.status = "down"
    start = len(m.air)
    dev.start_rejoin(0x0000)
    assert dev.status == "rejoining"
    m.pump()
    frames = nwk_commands(m, start)
    assert frames[0].nwk_secured and frames[0].nwk_payload[0] == 0x06
    rsp = [f for f in frames if f.nwk_payload[0] == 0x07]
    assert rsp and rsp[0].nwk_payload == bytes([0x07]) + addr.to_bytes(2, "little") + b"\x00"
    assert dev.status == "joined" and dev.state.nwk == addr and dev.state.parent == 0
    assert events(dev, "joined")[-1].details == {"nwk": addr, "parent": 0, "rejoin": True}
    assert events(tc, "device_joined")[-1].details["rejoin"] is True
    assert [tk for f in (zo.read(s.mpdu, network_keys=[NETWORK_KEY], link_keys=[link])
                         for s in m.air[start:]) for tk in [zo.transport_key(f.aps_payload or b"")]
            if tk is not None] == []


def test_the_tc_refuses_the_rejoin_of_a_device_it_does_not_know():
    m, tc, dev, _ = joined_pair()
    tc.state.devices.pop(DEV)  # removed while it was away
    dev.status = "down"
    start = len(m.air)
    dev.start_rejoin(0x0000)
    m.pump()
    rsp = [f for f in nwk_commands(m, start) if f.nwk_payload[0] == 0x07]
    assert rsp[0].nwk_payload == bytes([0x07, 0xFF, 0xFF, 0x02])
    assert tc.stats["rejoin_refused"] == 1 and DEV not in tc.state.devices
    assert dev.status == "joined"  # join_timed_out: back to its (old) network state
    assert dev.stats["join_failed"] == 1
    assert "status 2" in events(dev, "join_failed")[0].details["reason"]


def test_a_rejoin_response_not_from_the_chosen_parent_is_ignored():
    m, tc, dev, _ = joined_pair()
    dev.status = "rejoining"
    dev._parent = 0x7777
    header = NwkHeader(NwkType.COMMAND, dev.state.nwk, 0x0000)
    dev.on_nwk_command(header, TC_IEEE, nwk.rejoin_response(0x2222, 0), True)
    assert dev.status == "rejoining" and dev.state.nwk != 0x2222
    dev.on_nwk_command(header, TC_IEEE, nwk.rejoin_response(0x2222, 0), False)
    assert dev.stats["nwk_unsecured"] == 1


def test_a_rejoin_on_a_taken_address_gets_a_new_one():
    """The parent's rule (3.6.1.4.2): an address another device holds is not handed back."""
    m, tc, dev, _ = joined_pair()
    old = dev.state.nwk
    tc.state.address_map[old] = DEV2  # someone else holds dev's old address now
    tc.on_rejoin_request(NwkHeader(NwkType.COMMAND, 0x0000, old), DEV)
    (out,) = tc.take_outbox()
    frame = zo.read(out.mpdu, network_keys=[NETWORK_KEY])
    new = int.from_bytes(frame.nwk_payload[1:3], "little")
    assert frame.nwk_payload[0] == 0x07 and frame.nwk_payload[3] == 0x00
    assert new != old and frame.nwk_dst == new and out.dst_nwk == new
    assert tc.state.address_map[new] == DEV and tc.state.address_map[old] == DEV2
    assert tc.state.devices[DEV]["nwk"] == new


def test_a_rejoin_request_to_another_address_or_to_an_end_device_is_ignored():
    m, tc, dev, _ = joined_pair()
    header = NwkHeader(NwkType.COMMAND, 0x5555, 0x6666)
    tc.on_rejoin_request(header, DEV2)
    tc.on_rejoin_request(NwkHeader(NwkType.COMMAND, 0x0000, 0x6666), None)
    assert tc.take_outbox() == [] and tc.stats["rejoin_refused"] == 0


def test_a_router_relays_a_rejoin_to_the_tc_as_update_device():
    m = Mesh()
    tc = m.trust_centre()
    router = m.enrolled(tc, ROUTER)
    dev = m.enrolled(tc, DEV)
    assert m.join(router) and m.join(dev)
    dev.status = "down"
    dev.start_rejoin(router.state.nwk)
    m.pump()
    assert dev.status == "joined" and dev.state.parent == router.state.nwk
    assert tc.state.devices[DEV] == {"nwk": dev.state.nwk, "parent": router.state.nwk}


# -- address conflicts ---------------------------------------------------------------------------------
def test_a_conflict_makes_the_other_device_move_and_announce_and_the_coordinator_stays():
    m, tc, dev, _ = joined_pair()
    start = len(m.air)
    tc.address_conflict(dev.state.nwk, DEV)
    assert [o.dst_nwk for o in tc.outbox] == [0xFFFD]  # a broadcast to all routers
    old = dev.state.nwk
    m.pump()
    frames = [zo.read(s.mpdu, network_keys=[NETWORK_KEY]) for s in m.air[start:]]
    status = [f for f in frames if f.nwk_command and f.nwk_payload[0] == 0x03]
    assert status[0].nwk_payload == bytes([0x03, 0x0D]) + old.to_bytes(2, "little")
    assert status[0].nwk_dst == 0xFFFD
    assert dev.state.nwk != old and tc.state.nwk == 0x0000
    annce = [f for f in frames if f.aps_type == 0 and f.nwk_src == dev.state.nwk]
    assert annce, "no Device_annce"
    assert (annce[0].aps_profile, annce[0].aps_cluster, annce[0].aps_dst_ep,
            annce[0].aps_src_ep, annce[0].nwk_dst) == (0x0000, 0x0013, 0, 0, 0xFFFD)
    body = annce[0].aps_payload
    assert body[1:3] == dev.state.nwk.to_bytes(2, "little")
    assert body[3:11] == DEV.to_bytes(8, "little") and body[11] == mac.CAP_ROUTER
    assert tc.state.address_map[dev.state.nwk] == DEV
    assert events(dev, "address_changed")[0].details["old"] == old
    # the same conflict again within the quiet time: not said again
    before = len(m.air)
    tc.address_conflict(old, DEV)
    m.pump()
    assert len(m.air) == before and tc.stats["nwk_address_conflict"] == 2
    m.now += nwk.ADDRESS_CONFLICT_QUIET + 0.1
    tc.address_conflict(old, DEV)
    m.pump()
    assert len(m.air) > before
    tc.change_address("never")
    assert tc.state.nwk == 0x0000


def test_a_network_status_for_an_address_not_ours_changes_nothing():
    m, tc, dev, _ = joined_pair()
    addr = dev.state.nwk
    header = NwkHeader(NwkType.COMMAND, 0xFFFD, 0x0000)
    dev.on_nwk_command(header, TC_IEEE, nwk.network_status(0x0D, addr ^ 1), True)
    dev.on_nwk_command(header, TC_IEEE, nwk.network_status(0x0C, addr), True)
    assert dev.state.nwk == addr
    dev.on_nwk_command(header, TC_IEEE, nwk.network_status(0x0D, addr), True)
    assert dev.state.nwk != addr and dev.stats["nwk_address_conflict"] == 1
    dev.on_nwk_command(header, TC_IEEE, b"\x04", True)  # a leave with no options byte
    dev.on_nwk_command(header, TC_IEEE, b"", True)
    dev.on_nwk_command(header, TC_IEEE, nwk.leave(request=True), False)
    assert dev.stats["nwk_command_ignored"] == 1 and dev.stats["nwk_unsecured"] == 2


def test_a_known_device_keeps_its_address_when_it_associates_again():
    m, tc, dev, _ = joined_pair()
    assert tc.allocate_address(DEV) == dev.state.nwk
    fresh = tc.allocate_address(DEV2)
    assert fresh not in tc.state.address_map and fresh not in (0x0000, dev.state.nwk)
    assert fresh < 0xFFF8
