"""The NCP emulator's non-volatile state (``radios.ncp.state``) on its own: what a reboot
does to it, what a factory reset keeps, and which documents it refuses.

Independent truth: the wire types bellows and zigpy give the fields the host reads back
(``EmberNetworkParameters``: panId, nwkManagerId, nwkUpdateId, channels; frame counters
and the boot counter are uint32, TX power int8, channels 0..26 of IEEE 802.15.4 page 0),
so a value the stick could never report is refused at load; EmberZNet's documented jump
of 4096 on the stored frame counters at boot; Python's json for what is on disk.
"""

from __future__ import annotations

import json

import bellows.types as bt
import pytest
import zigpy.types as zt

from radios.ncp.state import LinkKey, NcpState, random_eui64

EUI = "00:0d:6f:00:00:00:5a:01"
#: field -> (lowest, highest) the stick can hold, from the types the host reads them as
BOUNDS = {
    "pan_id": (bt.EmberPanId.min_value, bt.EmberPanId.max_value),
    "nwk_manager_id": (bt.EmberNodeId.min_value, bt.EmberNodeId.max_value),
    "nwk_update_id": (zt.uint8_t.min_value, zt.uint8_t.max_value),
    "network_key_seq": (zt.uint8_t.min_value, zt.uint8_t.max_value),
    "channels": (0, 2**32 - 1),
    "security_bitmask": (zt.uint16_t.min_value, zt.uint16_t.max_value),
    "tx_power": (zt.int8s.min_value, zt.int8s.max_value),
    "channel": (0, 26),
    "nwk_frame_counter": (zt.uint32_t.min_value, zt.uint32_t.max_value),
    "aps_frame_counter": (zt.uint32_t.min_value, zt.uint32_t.max_value),
    "boot_counter": (zt.uint32_t.min_value, zt.uint32_t.max_value),
}


def doc(**changes) -> dict:
    base = NcpState(eui64=EUI, formed=True, pan_id=0x1A62).to_json()
    base.update(changes)
    return base


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_every_bounded_field_takes_its_extremes_and_refuses_one_beyond(name):
    low, high = BOUNDS[name]
    for ok in (low, high):
        assert getattr(NcpState.from_json(doc(**{name: ok})), name) == ok
    for bad in (low - 1, high + 1):
        with pytest.raises(ValueError, match=name):
            NcpState.from_json(doc(**{name: bad}))


@pytest.mark.parametrize("name,value", [
    ("pan_id", "0x1A62"), ("pan_id", 1.0), ("pan_id", True), ("formed", 1),
    ("network_key", 5), ("tokens", []), ("link_keys", {}), ("radio", []), ("eui64", 7),
    ("restored_eui64", 5), ("node_type", "end_device"),
])
def test_a_field_of_another_type_is_refused_by_name(name, value):
    with pytest.raises(ValueError, match=name):
        NcpState.from_json(doc(**{name: value}))


@pytest.mark.parametrize("changes", [
    {"eui64": "00:0d:6f"}, {"tc_eui64": "zz:0d:6f:00:00:00:5a:01"},
    {"network_key": "00" * 15}, {"tc_link_key": "00" * 17}, {"network_key": "xy" * 16},
    {"link_keys": [{"ieee": EUI, "key": "00" * 15}]},
    {"link_keys": [{"ieee": "not an eui", "key": "00" * 16}]},
    {"link_keys": [{"ieee": EUI}]}, {"tokens": {"mfg_x": "zz"}}, {"tokens": {"a": 5}},
])
def test_keys_addresses_and_tokens_that_are_not_ones_are_refused(changes):
    with pytest.raises(ValueError):
        NcpState.from_json(doc(**changes))


@pytest.mark.parametrize("bad", [[], "x", 5, None])
def test_a_document_that_is_not_an_object_is_refused(bad):
    with pytest.raises(ValueError, match="not a JSON object"):
        NcpState.from_json(bad)


def test_what_a_document_holds_is_what_the_state_holds():
    d = doc(restored_eui64="00:0d:6f:00:00:00:5a:09", radio={"x": 1}, unknown_field=3,
            link_keys=[{"ieee": EUI, "key": "11" * 16, "tx_counter": 5, "rx_counter": 6}],
            tokens={"mfg_cbke": "ab", "0001": "cd"}, node_type="router")
    st = NcpState.from_json(d)
    assert st.link_keys == [LinkKey(EUI, "11" * 16, 5, 6)] and st.radio == {"x": 1}
    assert st.node_type == "router" and st.tokens == {"mfg_cbke": "ab", "0001": "cd"}
    assert str(st.ieee) == "00:0d:6f:00:00:00:5a:09"  # the written EUI-64 wins
    assert not hasattr(st, "unknown_field")
    assert NcpState.from_json(doc(restored_eui64=None, radio=None)).restored_eui64 is None
    assert str(NcpState.from_json(doc()).ieee) == EUI


def test_a_reboot_jumps_the_frame_counters_of_a_formed_stick_only():
    st = NcpState(eui64=EUI, formed=True, nwk_frame_counter=10, aps_frame_counter=20,
                  boot_counter=3)
    st.boot()
    assert (st.nwk_frame_counter, st.aps_frame_counter, st.boot_counter) == (4106, 4116, 4)
    fresh = NcpState(eui64=EUI, nwk_frame_counter=10, aps_frame_counter=20)
    fresh.boot()
    assert (fresh.nwk_frame_counter, fresh.aps_frame_counter, fresh.boot_counter) == (10, 20, 1)


def test_load_boots_once_save_writes_json_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "nv" / "ncp.json"
    assert str(NcpState.load(path, ieee=EUI).ieee) == EUI  # no file: a new stick
    assert NcpState.load(None).eui64 != NcpState.load(None).eui64  # random, each time
    NcpState(eui64=EUI, formed=True, nwk_frame_counter=100, boot_counter=7).save(path)
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk["nwk_frame_counter"] == 100 and on_disk["eui64"] == EUI
    assert [p.name for p in path.parent.iterdir()] == ["ncp.json"]
    st = NcpState.load(path, ieee="00:0d:6f:00:00:00:99:99")  # the file's identity wins
    assert str(st.ieee) == EUI and st.boot_counter == 8 and st.nwk_frame_counter == 4196
    NcpState().save(None)  # no file: nothing to do


@pytest.mark.parametrize("content", [b"{", b"\xff\xfe", b"[]", b'{"pan_id": -1}'])
def test_a_file_that_is_not_a_state_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "ncp.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="ncp.json: not an NCP state"):
        NcpState.load(path)


def test_factory_reset_keeps_identity_and_manufacturing_tokens_only():
    st = NcpState(eui64=EUI, restored_eui64="00:0d:6f:00:00:00:5a:09", formed=True,
                  pan_id=0x1A62, network_key="11" * 16, nwk_frame_counter=500,
                  aps_frame_counter=600, boot_counter=9, tokens={"mfg_cbke": "ab", "0001": "cd"},
                  link_keys=[LinkKey(EUI, "22" * 16)], radio={"x": 1})
    st.factory_reset()
    assert (st.eui64, st.restored_eui64, st.boot_counter) == (EUI, "00:0d:6f:00:00:00:5a:09", 9)
    assert st.tokens == {"mfg_cbke": "ab"}
    assert not st.formed and st.pan_id == 0xFFFF and st.network_key == "00" * 16
    assert st.link_keys == [] and st.radio is None
    assert (st.nwk_frame_counter, st.aps_frame_counter) == (0, 0)
    kept = NcpState(eui64=EUI, formed=True, nwk_frame_counter=500, aps_frame_counter=600)
    kept.factory_reset(keep_frame_counter=True)
    assert (kept.nwk_frame_counter, kept.aps_frame_counter, kept.formed) == (500, 600, False)


def test_a_new_stick_has_a_silicon_labs_eui64():
    seen = {random_eui64() for _ in range(20)}
    assert len(seen) == 20
    for eui in seen:
        assert eui.startswith("00:0d:6f:") and len(bytes(zt.EUI64.convert(eui))) == 8


@pytest.mark.parametrize("changes,message", [
    ({"eui64": "00:0d:6f"}, "AssertionError"),  # zigpy asserts, with no text
    ({"network_key": "00" * 15}, "network_key is not 16 bytes"),
    ({"tc_link_key": "00" * 17}, "tc_link_key is not 16 bytes"),
    ({"link_keys": [{"ieee": EUI, "key": "00" * 15}]}, "a link key is not 16 bytes"),
    ({"link_keys": [{"ieee": EUI}]}, "LinkKey.__init__() missing 1 required positional "
                                     "argument: 'key'"),
    ({"tokens": {"a": 5}}, "tokens must map names to hex"),
])
def test_the_refusal_says_what_is_wrong(changes, message):
    with pytest.raises(ValueError) as info:
        NcpState.from_json(doc(**changes))
    assert str(info.value) == message


def test_long_values_are_cut_to_200_characters_in_the_message():
    for changes in ({"node_type": "x" * 300}, {"pan_id": "x" * 300},
                    {"link_keys": [{"ieee": EUI, "key": "00" * 16, "x" * 300: 1}]}):
        with pytest.raises(ValueError) as info:
            NcpState.from_json(doc(**changes))
        assert len(str(info.value)) == 200
    with pytest.raises(ValueError, match="^not a JSON object$"):
        NcpState.from_json([])


def test_a_minimal_document_takes_the_defaults():
    st = NcpState.from_json({"eui64": EUI})
    assert st.link_keys == [] and st.tokens == {} and not st.formed and st.pan_id == 0xFFFF


def test_save_makes_the_folders_it_needs(tmp_path):
    path = tmp_path / "a" / "b" / "ncp.json"
    NcpState(eui64=EUI).save(path)
    assert json.loads(path.read_text())["eui64"] == EUI
