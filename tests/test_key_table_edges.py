"""The key table and frame counters of one node (``radios/security/keys.py``), at their edges.

Independent truth: the spec's rules (an outgoing counter never repeats and is durable
before it is used; an incoming counter must be strictly greater than the last accepted
one from that source under that key, Zigbee 4.3.1.2 / 4.4.1.2; Switch Key makes the new
key the only one), the key-transport and key-load keys recomputed with zigpy's AES-MMO and
the HMAC of Zigbee B.1.4 (``tests/zb_oracle.py``), and replayed frames on the air judged by
the receiver's delivery, not by its bookkeeping.
"""

from __future__ import annotations

import pytest
import zb_oracle as zo
from han_mesh import NETWORK_KEY, TC_IEEE, Mesh

from radios.crypto import make_install_code
from radios.node import DataIndication
from radios.nwk import KeyId
from radios.security.keys import COUNTER_MAX, COUNTER_STEP, KeyStore, OutgoingCounter
from radios.state import LinkKeyEntry, NodeState

DEV = 0x000D6F00000000AA
OTHER = 0x000D6F00000000BB


class Disk:
    """What the non-volatile file holds: a copy of the reservation at each persist."""

    def __init__(self, state: NodeState, field: str = "nwk_tx_reserved") -> None:
        self.state = state
        self.field = field
        self.saved: list[int] = []

    def persist(self) -> None:
        self.saved.append(getattr(self.state, self.field))


def store(state: NodeState | None = None) -> tuple[KeyStore, list[str]]:
    st = state or NodeState(ieee=DEV)
    calls: list[str] = []
    ks = KeyStore(st, persist_now=lambda: calls.append("persist"),
                  mark_dirty=lambda: calls.append("dirty"))
    return ks, calls


# -- outgoing counters ---------------------------------------------------------------------------
def test_every_counter_used_was_durably_reserved_before_it_went_out():
    st = NodeState(ieee=DEV, nwk_tx_reserved=0)
    disk = Disk(st)
    counter = OutgoingCounter(st, "nwk_tx_reserved", disk.persist)
    used = []
    for _ in range(3 * COUNTER_STEP + 5):
        value = counter.next()
        # the file already holds a reservation beyond the value just handed out
        assert disk.saved and value < disk.saved[-1]
        used.append(value)
    assert used == list(range(3 * COUNTER_STEP + 5))  # 0, 1, 2, ... none skipped or repeated
    # one write per step of reservation, each exactly one step ahead of the last
    assert disk.saved == [COUNTER_STEP, 2 * COUNTER_STEP, 3 * COUNTER_STEP, 4 * COUNTER_STEP]


def test_a_restart_continues_from_the_reservation_never_below_it():
    st = NodeState(ieee=DEV, aps_tx_reserved=5000)
    disk = Disk(st, "aps_tx_reserved")
    counter = OutgoingCounter(st, "aps_tx_reserved", disk.persist)
    assert counter.next() == 5000 and disk.saved == [5000 + COUNTER_STEP]
    assert counter.next() == 5001 and disk.saved == [5000 + COUNTER_STEP]


def test_the_counter_stops_at_its_32_bit_end_and_never_wraps():
    st = NodeState(ieee=DEV, nwk_tx_reserved=COUNTER_MAX - 2)
    disk = Disk(st)
    counter = OutgoingCounter(st, "nwk_tx_reserved", disk.persist)
    assert counter.next() == COUNTER_MAX - 2
    assert st.nwk_tx_reserved == COUNTER_MAX  # the reservation is capped, not wrapped
    assert counter.next() == COUNTER_MAX - 1
    with pytest.raises(OverflowError, match="network key must change"):
        counter.next()  # 0xFFFFFFFF itself is never sent (Zigbee 4.3.1.1: key must change)
    with pytest.raises(OverflowError):
        counter.next()


# -- network keys --------------------------------------------------------------------------------
def test_network_keys_by_sequence_and_switch_key_forgets_the_old_ones():
    ks, calls = store()
    assert ks.network_key() is None and ks.network_key(3) is None
    ks.set_network_key(b"\x01" * 16, 0, activate=True)
    ks.set_network_key(b"\x02" * 16, 0x101, activate=False)  # the sequence is one byte
    assert ks.active_seq == 0 and ks.network_key() == b"\x01" * 16
    assert ks.network_key(1) == b"\x02" * 16 and ks.network_key(0) == b"\x01" * 16
    assert "dirty" in calls
    ks.state.nwk_rx = {(0, DEV): 7, (1, DEV): 3, (1, OTHER): 9}
    assert not ks.activate(2)  # a key we do not hold: nothing changes
    assert ks.active_seq == 0 and set(ks.state.network_keys) == {0, 1}
    calls.clear()
    assert ks.activate(1)
    assert ks.active_seq == 1 and ks.network_key() == b"\x02" * 16
    assert ks.network_key(0) is None and set(ks.state.network_keys) == {1}
    assert ks.state.nwk_rx == {(1, DEV): 3, (1, OTHER): 9}  # counters under the old key go
    assert calls == ["dirty"]


def test_set_network_key_with_activate_switches_at_once():
    ks, _ = store()
    ks.set_network_key(b"\x01" * 16, 4, activate=False)
    ks.set_network_key(b"\x03" * 16, 5, activate=True)
    assert ks.active_seq == 5 and ks.state.network_keys == {5: "03" * 16}


# -- link keys -----------------------------------------------------------------------------------
def test_the_join_key_stands_for_the_trust_centre_only():
    st = NodeState(ieee=DEV, join_key="11" * 16, join_key_kind="install_code")
    ks, _ = store(st)
    for partner in (None, TC_IEEE):  # trust centre unknown yet: any partner is "the TC"
        entry = ks.link_key(partner)
        assert entry is not None and entry.key == "11" * 16 and entry.kind == "install_code"
    st.tc_ieee = TC_IEEE
    assert ks.link_key(TC_IEEE).key == "11" * 16 and ks.link_key(None).key == "11" * 16
    assert ks.link_key(OTHER) is None  # another device never gets the join key
    ks.set_link_key(OTHER, b"\x22" * 16, "application")
    assert ks.link_key(OTHER) == LinkKeyEntry("22" * 16, "application")
    ks.set_link_key(TC_IEEE, b"\x33" * 16, "trust_center")
    assert ks.link_key(TC_IEEE).kind == "trust_center"  # a table entry wins over the join key
    st.join_key = None
    st.link_keys.clear()
    assert ks.link_key(None) is None and ks.link_key(TC_IEEE) is None


def test_forget_link_key_marks_dirty_only_when_there_was_one():
    ks, calls = store()
    ks.forget_link_key(OTHER)
    assert calls == []
    ks.set_link_key(OTHER, b"\x22" * 16, "application")
    calls.clear()
    ks.forget_link_key(OTHER)
    assert calls == ["dirty"] and ks.link_key(OTHER) is None


def test_key_for_derives_transport_and_load_keys_as_the_spec_does():
    ks, _ = store()
    link = bytes.fromhex("66b6900981e1ee3ca4206b6b861c02bb")
    entry = LinkKeyEntry(link.hex(), "install_code")
    assert ks.key_for(KeyId.DATA, entry) == link
    assert ks.key_for(KeyId.KEY_TRANSPORT, entry) == zo.key_transport_key(link)
    assert ks.key_for(KeyId.KEY_LOAD, entry) == zo.key_load_key(link)
    assert zo.key_transport_key(link) != zo.key_load_key(link)


# -- replay windows ------------------------------------------------------------------------------
def test_incoming_counters_must_rise_per_key_and_per_source():
    ks, calls = store()
    assert ks.nwk_fresh(0, OTHER, 0)  # nothing heard yet: counter 0 is fresh
    ks.nwk_accept(0, OTHER, 10)
    assert calls == ["dirty"]
    assert not ks.nwk_fresh(0, OTHER, 10) and not ks.nwk_fresh(0, OTHER, 9)
    assert ks.nwk_fresh(0, OTHER, 11)
    assert ks.nwk_fresh(1, OTHER, 0) and ks.nwk_fresh(0, DEV, 0)  # other key, other source
    ks.nwk_accept(0, DEV, 4)
    ks.forget_neighbour(OTHER)  # it left: a new join starts its window again
    assert ks.nwk_fresh(0, OTHER, 0) and not ks.nwk_fresh(0, DEV, 4)


def test_aps_counters_per_link_key_and_for_the_join_key():
    st = NodeState(ieee=DEV, join_key="11" * 16)
    ks, _ = store(st)
    assert ks.aps_fresh(TC_IEEE, 0)
    ks.aps_accept(TC_IEEE, 5)  # no table entry: the join key's window
    assert not ks.aps_fresh(TC_IEEE, 5) and ks.aps_fresh(TC_IEEE, 6)
    assert ks.link_key(TC_IEEE).rx == 5
    ks.set_link_key(OTHER, b"\x22" * 16, "application")
    assert ks.aps_fresh(OTHER, 0)
    ks.aps_accept(OTHER, 7)
    assert st.link_keys[OTHER].rx == 7 and not ks.aps_fresh(OTHER, 7)
    assert ks.aps_fresh(OTHER, 8) and not ks.aps_fresh(TC_IEEE, 5)


# -- replays on the air --------------------------------------------------------------------------
def _joined_pair() -> tuple[Mesh, object, object]:
    m = Mesh()
    tc = m.trust_centre()
    code = make_install_code()
    tc.add_install_code(DEV, code)
    dev = m.joiner(DEV, key=zo.install_code_key(code))
    assert m.join(dev)
    return m, tc, dev


def _delivered(node: object) -> list[DataIndication]:
    return [e for e in node.events if isinstance(e, DataIndication)]  # type: ignore[attr-defined]


def test_a_replayed_nwk_frame_is_dropped_and_a_fresh_one_is_taken():
    m, tc, dev = _joined_pair()
    out = dev.data_frame(dst_nwk=0x0000, profile=0x0104, cluster=6, src_ep=1, dst_ep=1,
                         payload=b"\x01\x01\x00")
    m.inject(out.mpdu, sender=DEV)
    assert [i.payload for i in _delivered(tc)] == [b"\x01\x01\x00"]
    frame = zo.read(out.mpdu, network_keys=[NETWORK_KEY])
    assert frame.nwk_secured and frame.nwk_src64 == DEV
    for _ in range(2):
        m.inject(out.mpdu, sender=DEV)  # the same bytes again: same NWK counter
    assert len(_delivered(tc)) == 1 and tc.stats["nwk_replay"] == 2
    fresh = dev.data_frame(dst_nwk=0x0000, profile=0x0104, cluster=6, src_ep=1, dst_ep=1,
                           payload=b"\x01\x02\x00")
    assert zo.read(fresh.mpdu, network_keys=[NETWORK_KEY]).nwk_counter == frame.nwk_counter + 1
    m.inject(fresh.mpdu, sender=DEV)
    assert [i.payload for i in _delivered(tc)] == [b"\x01\x01\x00", b"\x01\x02\x00"]


def test_a_garbage_frame_does_not_move_the_window_forward():
    m, tc, dev = _joined_pair()
    first = dev.data_frame(dst_nwk=0x0000, profile=0x0104, cluster=6, src_ep=1, dst_ep=1,
                           payload=b"\x01\x01\x00")
    second = dev.data_frame(dst_nwk=0x0000, profile=0x0104, cluster=6, src_ep=1, dst_ep=1,
                            payload=b"\x01\x02\x00")
    bad = bytearray(second.mpdu)
    bad[-1] ^= 0x01  # MIC broken: counter must not be recorded
    m.inject(bytes(bad), sender=DEV)
    assert tc.stats["nwk_mic_failure"] == 1
    m.inject(first.mpdu, sender=DEV)  # lower counter than the garbage claimed: still fresh
    m.inject(second.mpdu, sender=DEV)
    assert [i.payload for i in _delivered(tc)] == [b"\x01\x01\x00", b"\x01\x02\x00"]


def test_a_replayed_aps_secured_frame_is_dropped_under_its_link_key():
    m, tc, dev = _joined_pair()
    out = dev.data_frame(dst_nwk=0x0000, profile=0x0109, cluster=0x0702, src_ep=1, dst_ep=1,
                         payload=b"\x00\x42\x00\x00\x00", aps_secure=True)
    m.inject(out.mpdu, sender=DEV)
    assert [i.aps_partner for i in _delivered(tc)] == [DEV]
    # the same APS frame (same APS counter) inside a new NWK frame: the APS window drops it
    frame = zo.read(out.mpdu, network_keys=[NETWORK_KEY])
    again = dev.nwk_frame(0x0000, frame.nwk_payload)
    m.inject(again, sender=DEV)
    assert len(_delivered(tc)) == 1 and tc.stats["aps_replay"] == 1
