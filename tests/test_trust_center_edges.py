"""The trust centre's decisions (``radios/trust_center.py``) attacked and judged from outside.

Each test runs sans-IO nodes on an in-process air (``tests/han_mesh.py``) and judges what
went over the air with an independent reader (``tests/zb_oracle.py``: headers parsed from
the spec, keys derived with zigpy's install-code conversion and AES-MMO, CCM* by
``cryptography``), or by what the other node could do with it (open the Transport Key,
hold the network key). The rules: Zigbee 4.6.3.2 (a joiner gets the network key only
sealed under the key-transport key of a link key the trust centre holds for it), 4.4.10
(command layouts), SE 1.x 5.4 (install codes; Request Key only between known devices).
"""

from __future__ import annotations

import pytest
import zb_oracle as zo
from han_mesh import GLOBAL_KEY, NETWORK_KEY, TC_IEEE, Mesh, events

from radios import aps, nwk
from radios.aps import RequestKeyType, UpdateStatus
from radios.crypto import make_install_code
from radios.nwk import KeyId
from radios.trust_center import ANY_DEVICE

DEV = 0x000D6F00000000AA
DEV2 = 0x000D6F00000000AB
ROUTER = 0x000D6F00000000C1
CHILD = 0x000D6F00000000C2


def transport_keys(m: Mesh, link: bytes, start: int = 0) -> list[tuple[zo.Frame, zo.TransportKey]]:
    """Every Transport Key on the air since ``start`` that ``link`` opens."""
    out = []
    for sent in m.air[start:]:
        f = zo.read(sent.mpdu, network_keys=[NETWORK_KEY], link_keys=[link])
        tk = zo.transport_key(f.aps_payload or b"")
        if f.aps_type == 1 and tk is not None:
            out.append((f, tk))
    return out


def sealed_commands(m: Mesh, start: int = 0) -> list[zo.Frame]:
    return [f for f in (zo.read(s.mpdu, network_keys=[NETWORK_KEY]) for s in m.air[start:])
            if f.aps_type == 1]


def install_code_pair(policy: str = "install_code") -> tuple[Mesh, object, bytes]:
    m = Mesh()
    tc = m.trust_centre(policy)
    code = make_install_code()
    tc.add_install_code(DEV, code)
    return m, tc, code


# -- admitting -----------------------------------------------------------------------------------
def test_the_transport_key_opens_only_with_the_install_code_key_and_says_the_spec_fields():
    m, tc, code = install_code_pair()
    dev = m.joiner(DEV, key=zo.install_code_key(code))
    assert m.join(dev)
    ((frame, tk),) = transport_keys(m, zo.install_code_key(code))
    assert frame.aps_key_id == 2  # sealed with the key-transport key (4.5.1.1.1)
    assert not frame.nwk_secured  # the joiner holds no network key yet
    assert frame.aps_source == TC_IEEE
    assert (tk.key_type, tk.key, tk.key_seq, tk.dst_ieee, tk.src_ieee) == (
        0x01, NETWORK_KEY, 0, DEV, TC_IEEE)
    assert dev.keys.network_key() == NETWORK_KEY and dev.state.tc_ieee == TC_IEEE
    assert tc.state.devices[DEV] == {"nwk": dev.state.nwk, "parent": 0x0000}
    assert events(tc, "device_joined")[0].details == {"ieee": DEV, "nwk": dev.state.nwk,
                                                      "parent": 0, "rejoin": False}
    assert transport_keys(m, zo.install_code_key(make_install_code())) == []


def test_a_joiner_with_a_wrong_install_code_gets_nothing_it_can_open():
    m, tc, code = install_code_pair()
    wrong = make_install_code()
    dev = m.joiner(DEV, key=zo.install_code_key(wrong))
    assert not m.join(dev)
    assert dev.keys.network_key() is None and dev.stats["aps_mic_failure"] == 1
    assert transport_keys(m, zo.install_code_key(wrong)) == []
    assert len(transport_keys(m, zo.install_code_key(code))) == 1  # sealed for the right code


@pytest.mark.parametrize("policy", ["install_code", "preconfigured", "closed"])
def test_a_joiner_off_the_list_is_denied_association_and_counted(policy):
    m, tc, code = install_code_pair(policy)
    if policy == "preconfigured":
        tc.state.admitted.pop(ANY_DEVICE)
    stranger = m.joiner(DEV2, key=GLOBAL_KEY, kind="preconfigured")
    assert not m.join(stranger)
    assert stranger.stats["association_refused"] == 1 and stranger.status == "down"
    assert tc.stats["join_refused"] >= 1 and DEV2 not in tc.state.devices
    assert events(tc, "join_refused")[0].details == {"ieee": DEV2, "policy": policy}
    assert transport_keys(m, GLOBAL_KEY) == []


def test_install_code_policy_refuses_a_device_admitted_with_a_preconfigured_key():
    m = Mesh()
    tc = m.trust_centre("install_code")
    tc.admit_key(DEV, b"\x44" * 16, "preconfigured")
    assert tc.join_decision(DEV) is None
    tc.set_policy("preconfigured")
    entry = tc.join_decision(DEV)
    assert entry is not None and entry.key == "44" * 16
    tc.set_policy("closed")
    code = make_install_code()
    tc.add_install_code(DEV2, code)
    assert tc.join_decision(DEV2) is None and tc.join_decision(DEV) is None
    assert tc.stats["join_refused"] == 3


def test_preconfigured_policy_prefers_the_device_key_over_the_global_one():
    m = Mesh()
    tc = m.trust_centre("preconfigured")
    own = b"\x55" * 16
    tc.admit_key(DEV, own, "preconfigured")
    assert tc.join_decision(DEV).key == own.hex()
    assert tc.join_decision(DEV2).key == GLOBAL_KEY.hex()
    dev = m.joiner(DEV2, key=GLOBAL_KEY, kind="preconfigured")
    assert m.join(dev) and dev.keys.network_key() == NETWORK_KEY


def test_the_policy_must_be_one_the_trust_centre_knows_and_a_new_one_is_saved():
    m = Mesh()
    tc = m.trust_centre()
    tc.persist()
    tc.set_policy("closed")
    assert tc.state.tc_policy == "closed" and tc.dirty  # the shell writes it out soon
    tc.set_policy("install_code")
    with pytest.raises(ValueError, match="install_code, preconfigured, closed"):
        tc.set_policy("open")
    assert tc.state.tc_policy == "install_code"


def test_a_rejoining_device_keeps_its_established_link_key():
    """A device that already holds an application or TC link key with the trust centre is
    not put back on its join key when its entry is admitted again."""
    m, tc, code = install_code_pair()
    dev = m.joiner(DEV, key=zo.install_code_key(code))
    assert m.join(dev)
    tc.keys.set_link_key(DEV, b"\x77" * 16, "trust_center")
    assert tc._install_joiner_key(DEV)
    assert tc.state.link_keys[DEV].key == "77" * 16
    tc.keys.set_link_key(DEV, b"\x78" * 16, "preconfigured")
    assert tc._install_joiner_key(DEV)
    assert tc.state.link_keys[DEV].key == zo.install_code_key(code).hex()
    assert tc.state.link_keys[DEV].kind == "install_code"


# -- through a router: Update Device, Tunnel, Remove Device ---------------------------------------
def router_network() -> tuple[Mesh, object, object]:
    m = Mesh()
    tc = m.trust_centre("install_code")
    router = m.enrolled(tc, ROUTER)
    assert m.join(router)
    router.permit(60)
    tc.permit(0)  # joiners must go through the router
    return m, tc, router


def test_a_joiner_through_a_router_gets_the_key_tunnelled_and_the_router_cannot_read_it():
    m, tc, router = router_network()
    code = make_install_code()
    tc.add_install_code(CHILD, code)
    child = m.joiner(CHILD, key=zo.install_code_key(code))
    start = len(m.air)
    assert m.join(child, parent_nwk=router.state.nwk)
    assert tc.state.devices[CHILD] == {"nwk": child.state.nwk, "parent": router.state.nwk}
    assert child.state.parent == router.state.nwk
    # the Update Device went from the router to the TC, sealed under the router's link key
    frames = sealed_commands(m, start)
    assert frames[0].nwk_src == router.state.nwk and frames[0].aps_secured
    # the Transport Key (inside the Tunnel, then relayed) opens only with the child's key
    keys = transport_keys(m, zo.install_code_key(code), start)
    assert keys and all(tk.key == NETWORK_KEY and tk.dst_ieee == CHILD for _, tk in keys)
    # the router's relay: the Tunnel's frame, without NWK security, to the child's address
    relayed = [s for s in m.air[start:] if s.sender == ROUTER
               and not zo.read(s.mpdu).nwk_secured and zo.read(s.mpdu).mac_type == 1]
    assert len(relayed) == 1 and relayed[0].dst_nwk == child.state.nwk
    assert zo.read(relayed[0].mpdu).nwk_dst == child.state.nwk
    assert router.children == {}  # the pending child was relayed once and forgotten


def test_a_refused_joiner_through_a_router_is_removed_by_it():
    m, tc, router = router_network()
    stranger = m.joiner(CHILD, key=zo.install_code_key(make_install_code()))
    assert not m.join(stranger, parent_nwk=router.state.nwk)
    assert CHILD not in tc.state.devices and tc.stats["join_refused"] == 1
    assert router.children == {}  # the TC's Remove Device made the router drop it
    assert router.stats["aps_bad_remove"] == 0  # it came from the TC, under its link key


def test_update_device_secured_rejoin_of_an_unknown_device_is_refused():
    m, tc, router = router_network()
    start = len(m.air)
    router.send(router.command_frame(0x0000, aps.UpdateDevice(
        DEV2, 0x4444, UpdateStatus.SECURED_REJOIN).encode(), partner=TC_IEEE))
    m.pump()
    assert tc.stats["rejoin_refused"] == 1 and DEV2 not in tc.state.devices
    removes = [f for f in sealed_commands(m, start) if f.nwk_src == 0x0000]
    assert removes and removes[0].nwk_dst == router.state.nwk
    router.send(router.command_frame(0x0000, aps.UpdateDevice(
        DEV2, 0x4444, UpdateStatus.SECURED_REJOIN).encode(), partner=TC_IEEE))
    m.pump()
    assert tc.stats["rejoin_refused"] == 2  # each refusal is counted
    # a known device rejoining through the router is recorded with its new parent
    router.send(router.command_frame(0x0000, aps.UpdateDevice(
        ROUTER, 0x5555, UpdateStatus.TC_REJOIN).encode(), partner=TC_IEEE))
    m.pump()
    assert tc.state.devices[ROUTER] == {"nwk": 0x5555, "parent": router.state.nwk}
    assert events(tc, "device_joined")[-1].details["rejoin"] is True
    assert tc.nwk_of(ROUTER) == 0x5555
    # and Device Left removes it from the table
    router.send(router.command_frame(0x0000, aps.UpdateDevice(
        ROUTER, 0x5555, UpdateStatus.DEVICE_LEFT).encode(), partner=TC_IEEE))
    m.pump()
    assert ROUTER not in tc.state.devices
    assert events(tc, "device_left")[-1].details == {"ieee": ROUTER, "nwk": 0x5555}


def test_an_update_device_without_aps_security_or_from_someone_else_is_dropped():
    m, tc, router = router_network()
    before = len(tc.state.devices)
    # unsecured at APS (anyone with the network key could send it)
    router.send(router.command_frame(0x0000, aps.UpdateDevice(
        DEV2, 0x4444, UpdateStatus.UNSECURED_JOIN).encode(), partner=None))
    m.pump()
    assert tc.stats["aps_unsecured_dropped"] == 1 and len(tc.state.devices) == before
    assert transport_keys(m, zo.install_code_key(make_install_code())) == []


# -- Request Key ---------------------------------------------------------------------------------
def two_devices() -> tuple[Mesh, object, object, object, bytes, bytes]:
    m = Mesh()
    tc = m.trust_centre("install_code")
    c1, c2 = make_install_code(), make_install_code()
    tc.add_install_code(DEV, c1)
    tc.add_install_code(DEV2, c2)
    d1 = m.joiner(DEV, key=zo.install_code_key(c1))
    d2 = m.joiner(DEV2, key=zo.install_code_key(c2))
    assert m.join(d1) and m.join(d2)
    return m, tc, d1, d2, zo.install_code_key(c1), zo.install_code_key(c2)


def request_key(node: object, partner: int | None, key_type=RequestKeyType.APPLICATION_LINK,
                secured: bool = True) -> None:
    node.send(node.command_frame(0x0000, aps.RequestKey(key_type, partner).encode(),  # type: ignore[attr-defined]
                                 partner=TC_IEEE if secured else None))


def test_request_key_gives_both_partners_one_fresh_key_each_sealed_for_its_owner():
    m, tc, d1, d2, k1, k2 = two_devices()
    start = len(m.air)
    request_key(d1, DEV2)
    m.pump()
    (f1, t1), = transport_keys(m, k1, start)
    (f2, t2), = transport_keys(m, k2, start)
    assert f1.aps_key_id == f2.aps_key_id == 3  # the key-load key (4.5.3)
    assert t1.key_type == t2.key_type == 0x03 and t1.key == t2.key
    assert t1.dst_ieee == DEV2 and t2.dst_ieee == DEV  # each names its partner
    initiator = {f1.aps_payload[-1], f2.aps_payload[-1]}
    assert f1.aps_payload[-1] == 1 and f2.aps_payload[-1] == 0 and initiator == {0, 1}
    assert d1.state.link_keys[DEV2].key == t1.key.hex() == d2.state.link_keys[DEV].key
    assert d1.state.link_keys[DEV2].kind == "application"
    assert events(tc, "application_key_issued")[0].details == {"partners": (DEV, DEV2)}
    # a second request gives a new key
    request_key(d1, DEV2)
    m.pump()
    assert d1.state.link_keys[DEV2].key != t1.key.hex()


def test_request_key_with_the_trust_centre_as_partner_keeps_the_key_in_the_tc():
    m, tc, d1, d2, k1, k2 = two_devices()
    start = len(m.air)
    request_key(d1, TC_IEEE)
    m.pump()
    ((_, tk),) = transport_keys(m, k1, start)
    assert tc.state.link_keys[DEV].key == tk.key.hex() and tc.state.link_keys[DEV].kind == \
        "application"


@pytest.mark.parametrize("case", ["unknown_partner", "self", "unknown_requester",
                                  "network_key", "tc_link_key", "unsecured"])
def test_request_key_attacks_get_no_key(case):
    m, tc, d1, d2, k1, k2 = two_devices()
    start = len(m.air)
    stats = {"unknown_partner": "request_key_refused", "self": "request_key_refused",
             "unknown_requester": "request_key_refused", "network_key": "aps_command_ignored",
             "tc_link_key": "aps_command_ignored", "unsecured": "aps_unsecured_dropped"}[case]
    if case == "unknown_partner":
        request_key(d1, 0x000D6F00DEADBEEF)
    elif case == "self":
        request_key(d1, DEV)
    elif case == "unknown_requester":
        tc.state.devices.pop(DEV)  # removed from the TC's table but still holding keys
        request_key(d1, DEV2)
    elif case == "network_key":
        request_key(d1, None, RequestKeyType.NETWORK)
    elif case == "tc_link_key":
        request_key(d1, None, RequestKeyType.TRUST_CENTER_LINK)
    else:
        request_key(d1, DEV2, secured=False)
    m.pump()
    assert tc.stats[stats] == 1
    assert transport_keys(m, k1, start) == [] and transport_keys(m, k2, start) == []
    assert DEV2 not in d1.state.link_keys and DEV not in d2.state.link_keys


# -- removing and rolling keys ---------------------------------------------------------------------
def test_remove_device_a_direct_child_is_told_to_leave_and_forgotten():
    m, tc, d1, d2, k1, k2 = two_devices()
    assert not tc.remove_device(0x000D6F00DEADBEEF)
    start = len(m.air)
    assert tc.remove_device(DEV)
    m.pump()
    (leave,) = [f for f in (zo.read(s.mpdu, network_keys=[NETWORK_KEY]) for s in m.air[start:])
                if f.nwk_command]
    assert leave.nwk_dst == d1.state.nwk or not d1.state.joined
    assert leave.nwk_payload == bytes([0x04, nwk.LEAVE_REQUEST])
    assert not d1.state.joined and d1.keys.network_key() is None
    assert DEV not in tc.state.devices and DEV not in tc.state.link_keys
    assert d2.state.joined  # only the one named
    assert events(tc, "device_removed")[0].details == {"ieee": DEV}


def test_remove_device_through_its_parent_goes_sealed_to_the_parent():
    m, tc, router = router_network()
    child = m.enrolled(tc, CHILD)
    assert m.join(child, parent_nwk=router.state.nwk)
    start = len(m.air)
    assert tc.remove_device(CHILD)
    m.pump()
    first = sealed_commands(m, start)[0]
    assert first.nwk_src == 0x0000 and first.nwk_dst == router.state.nwk and first.aps_secured
    assert not child.state.joined and CHILD not in tc.state.devices


def test_a_remove_device_from_a_node_that_is_not_the_trust_centre_is_ignored():
    m, tc, router = router_network()
    child = m.enrolled(tc, CHILD)
    assert m.join(child, parent_nwk=router.state.nwk)
    c2 = make_install_code()
    tc.add_install_code(DEV, c2)
    tc.permit(60)
    rogue = m.joiner(DEV, key=zo.install_code_key(c2))
    assert m.join(rogue)
    request_key(rogue, ROUTER)  # the rogue gets a real link key with the router
    m.pump()
    assert ROUTER in rogue.state.link_keys
    rogue.send(rogue.command_frame(router.state.nwk, aps.RemoveDevice(CHILD).encode(),
                                   partner=ROUTER))
    m.pump()
    assert router.stats["aps_bad_remove"] == 1 and child.state.joined
    rogue.send(rogue.command_frame(router.state.nwk, aps.RemoveDevice(CHILD).encode(),
                                   partner=None))
    m.pump()
    assert router.stats["aps_bad_remove"] == 2 and child.state.joined


def test_network_key_update_goes_to_every_device_sealed_for_it_then_switch():
    m, tc, d1, d2, k1, k2 = two_devices()
    tc.keys.set_network_key(NETWORK_KEY, 0xFF, activate=True)  # the sequence wraps to 0
    for d in (d1, d2):
        d.keys.set_network_key(NETWORK_KEY, 0xFF, activate=True)
    new = bytes(range(16))
    start = len(m.air)
    seq = tc.update_network_key(new)
    assert seq == 0
    m.pump()
    for link, dev in ((k1, DEV), (k2, DEV2)):
        (frame, tk), = transport_keys(m, link, start)
        assert frame.aps_key_id == 2 and (tk.key, tk.key_seq, tk.dst_ieee, tk.src_ieee) == (
            new, 0, dev, TC_IEEE)
    assert tc.keys.active_seq == 0xFF and d1.keys.active_seq == 0xFF  # not before the switch
    assert d1.keys.network_key(0) == new
    start = len(m.air)
    tc.switch_network_key(seq)
    m.pump()
    (switch,) = sealed_commands(m, start)
    assert switch.nwk_dst == 0xFFFD and not switch.aps_secured
    assert switch.aps_payload == bytes([0x09, 0x00])
    assert d1.keys.active_seq == d2.keys.active_seq == tc.keys.active_seq == 0
    assert d1.keys.network_key() == new and d1.keys.network_key(0xFF) is None
    assert events(d1, "network_key_switched")[0].details == {"seq": 0}


def test_a_device_without_a_link_key_is_skipped_not_fatal_on_key_update():
    m, tc, d1, d2, k1, k2 = two_devices()
    tc.state.link_keys.pop(DEV2)
    start = len(m.air)
    seq = tc.update_network_key(bytes(range(16)))
    m.pump()
    assert seq == 1 and len(transport_keys(m, k1, start)) == 1
    assert d2.keys.network_key(1) is None and d1.keys.network_key(1) == bytes(range(16))


def test_a_switch_key_not_from_the_trust_centre_is_ignored():
    m, tc, d1, d2, k1, k2 = two_devices()
    tc.update_network_key(bytes(range(16)))
    m.pump()
    d2.send(d2.command_frame(0xFFFD, bytes([aps.ApsCommand.SWITCH_KEY, 1]), partner=None))
    m.pump()
    assert d1.keys.active_seq == 0 and d1.keys.network_key(1) == bytes(range(16))


def test_form_makes_a_coordinator_that_is_its_own_trust_centre():
    m = Mesh()
    tc = m.trust_centre()
    st = tc.state
    assert (st.logical_type, st.nwk, st.tc_ieee, st.joined, st.pan_id, st.channel) == (
        "coordinator", 0x0000, TC_IEEE, True, 0x1A62, 15)
    assert tc.keys.network_key() == NETWORK_KEY and tc.keys.active_seq == 0
    assert tc.status == "joined" and tc.is_trust_center


def test_key_id_of_a_transport_key_command_frame_is_the_key_transport_key():
    """The APS security header the TC writes says key-transport (0x02) for network keys
    and key-load (0x03) for application keys; the receiver derives by this field."""
    assert int(KeyId.KEY_TRANSPORT) == 2 and int(KeyId.KEY_LOAD) == 3


@pytest.mark.parametrize("secured", [True, False])
def test_an_aps_command_asking_for_an_ack_gets_a_command_ack(secured):
    """2.2.5.1.1: the ACK of a command has the ACK-format bit set and no endpoint, cluster
    or profile; it is secured under the sender's link key when the command was."""
    m, tc, d1, d2, k1, k2 = two_devices()
    out = d1.command_frame(0x0000, aps.RequestKey(RequestKeyType.APPLICATION_LINK,
                                                  DEV2).encode(),
                           partner=TC_IEEE if secured else None, ack=True)
    start = len(m.air)
    m.inject(out.mpdu, sender=DEV)
    acks = [zo.read(s.mpdu, network_keys=[NETWORK_KEY], link_keys=[k1])
            for s in m.air[start:]] + [
        zo.read(o.mpdu, network_keys=[NETWORK_KEY], link_keys=[k1]) for o in tc.outbox]
    acks = [f for f in acks if f.aps_type == 2]
    assert len(acks) == 1
    # the outbox entry names the same destination as the frame (the shell routes by it)
    assert [o.dst_nwk for o in tc.outbox if zo.read(o.mpdu, network_keys=[NETWORK_KEY]
                                                     ).aps_type == 2] == [d1.state.nwk]
    ack = acks[0]
    assert ack.aps_fc & 0x10 and ack.aps_cluster is None and ack.aps_counter == out.counter
    assert ack.nwk_dst == d1.state.nwk and ack.aps_secured is secured
    if secured:
        assert ack.aps_payload == b"" and ack.aps_source == TC_IEEE


def test_a_device_that_joins_again_after_a_factory_reset_is_heard_from_counter_zero():
    """Its new state sends NWK counters from 0 again: the trust centre forgets the old
    window at the new join (else every frame would be a 'replay' until the old count)."""
    m, tc, code = install_code_pair()
    dev = m.joiner(DEV, key=zo.install_code_key(code))
    assert m.join(dev)
    for _ in range(5):
        dev.send(dev.data_frame(dst_nwk=0x0000, profile=0x0104, cluster=6, src_ep=1,
                                dst_ep=1, payload=b"\x01\x01\x00"))
    m.pump()
    m.drop(dev)
    tc.state.devices.pop(DEV)  # it left; the installer lets it in again with its code
    tc.state.link_keys.pop(DEV)
    reset = m.joiner(DEV, key=zo.install_code_key(code))
    assert m.join(reset)
    out = reset.data_frame(dst_nwk=0x0000, profile=0x0104, cluster=6, src_ep=1, dst_ep=1,
                           payload=b"\x01\x09\x00")
    assert zo.read(out.mpdu, network_keys=[NETWORK_KEY]).nwk_counter < 5
    m.inject(out.mpdu, sender=DEV)
    got = [e.payload for e in tc.events if getattr(e, "payload", None) == b"\x01\x09\x00"]
    assert got == [b"\x01\x09\x00"] and tc.stats["nwk_replay"] == 0


def test_a_network_key_update_without_a_key_draws_a_fresh_random_one():
    m, tc, d1, d2, k1, k2 = two_devices()
    start = len(m.air)
    seq = tc.update_network_key()
    m.pump()
    ((_, tk),) = transport_keys(m, k1, start)
    assert len(tk.key) == 16 and tk.key != NETWORK_KEY and tk.key_seq == seq == 1
    assert tc.keys.network_key(1) == tk.key == d1.keys.network_key(1)
    assert tc.update_network_key() == 1 and tc.keys.network_key(1) != tk.key  # drawn anew
