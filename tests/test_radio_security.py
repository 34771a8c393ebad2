"""Zigbee PRO security in the radio: the published frame, tshark on our own frames, the state
file, frame counters across restarts, key update and switch, leave and remove, rejoin.

Independent judges: the level-5 NWK frame in ``shared/vectors`` (a captured frame, so our
parser and CCM* must open exactly it); tshark 4.0, which decrypts our captures given only
the network key and the install-code link keys (it derives the key-transport and key-load
keys itself); zigpy's backup format for what the radio reports.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import shared_vectors
import zigpy.types as t
from required_tools import require_tool
from waiting import until

from radios import aps, mac, nwk
from radios.air import VirtualAir
from radios.crypto import link_key_from_install_code, make_install_code
from radios.nwk import AuxHeader
from radios.pcap import PcapWriter, tshark_key_options
from radios.rawnode import RawNode
from radios.security.codec import open_sealed
from radios.security.keys import COUNTER_STEP
from radios.state import FALLBACK_COUNTER_JUMP, NodeState, NvFile
from radios.virtual import VirtualControllerApplication, virtual_config

VECTORS = shared_vectors.load()  # found by walking up (a worktree, mutants/)
TSHARK = shutil.which("tshark")
TC_IEEE = 0x000D6F0000000001
JOINER = 0x000D6F00000000AA


def need_tshark() -> str:
    require_tool("tshark")
    return TSHARK


def test_the_published_nwk_frame_opens_with_our_parser_and_ccm():
    v = VECTORS["ccm_star_level5_nwk_frame"]
    mpdu = bytes.fromhex(v["mac_frame_hex"])[:-2]  # without its FCS
    frame = mac.decode(mpdu)
    header, pos = nwk.decode_header(frame.payload)
    assert header.security
    aux, body = AuxHeader.decode(frame.payload, pos)
    assert aux.key_id == nwk.KeyId.NETWORK and aux.source is not None
    plain = open_sealed(frame.payload[:pos], aux, frame.payload[body:],
                        bytes.fromhex(v["network_key_hex"]), aux.source)
    assert plain is not None and plain.hex() == v["plaintext_hex"]
    # one bit anywhere in the authenticated part: no plaintext
    for i in (2, pos + 1, body, len(frame.payload) - 1):  # dst, counter, ciphertext, MIC
        bad = bytearray(frame.payload)
        bad[i] ^= 0x04
        try:
            h2, p2 = nwk.decode_header(bytes(bad))
            a2, b2 = AuxHeader.decode(bytes(bad), p2)
        except nwk.NwkError:
            continue
        assert open_sealed(bytes(bad[:p2]), a2, bytes(bad[b2:]),
                           bytes.fromhex(v["network_key_hex"]), a2.source or aux.source) is None


async def _tc_and_joiner(air: VirtualAir, code: bytes) -> tuple[RawNode, RawNode]:
    tc = RawNode(air, TC_IEEE)
    tc.node.form(pan_id=air.pan_id, extended_pan_id=TC_IEEE, channel=air.channel,
                 network_key=bytes(range(16)))
    tc.node.set_policy("install_code")
    tc.node.add_install_code(JOINER, code)
    tc.node.permit(60)
    tc.attach()
    tc.report_keys()
    joiner = RawNode(air, JOINER, install_code=code)
    await joiner.join()
    return tc, joiner


async def test_tshark_decrypts_a_join_and_our_sealed_frames(tmp_path):
    tshark = need_tshark()
    air = VirtualAir()
    pcap = tmp_path / "join.pcap"
    writer = PcapWriter(pcap).capture(air)
    code = bytes.fromhex(VECTORS["install_code"]["install_code_hex"])
    tc, joiner = await _tc_and_joiner(air, code)
    payload = bytes.fromhex("0042000000")  # ZCL Read Attributes, TSN 0x42, attribute 0x0000
    await tc.send(joiner.nwk, 0x0702, payload, aps_secure=True, ack=True)
    await joiner.send(0x0000, 0x0702, payload, aps_secure=False)
    await tc.stop()
    await joiner.stop()
    writer.close()
    # the keys file: the network key and the install code's link key, nothing derived
    lines = (Path(f"{pcap}.keys")).read_text()
    assert VECTORS["install_code"]["link_key_hex"] in lines and bytes(range(16)).hex() in lines
    assert stat.S_IMODE(os.stat(f"{pcap}.keys").st_mode) == 0o600
    keys = tshark_key_options(pcap)

    def fields(display: str, *names: str, with_keys: bool = True) -> list[list[str]]:
        cmd = [tshark, "-r", str(pcap), *(keys if with_keys else []), "-Y", display, "-T",
               "fields", "-E", "separator=;"]
        for n in names:
            cmd += ["-e", n]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return [line.split(";") for line in out.splitlines()]

    assert fields("_ws.malformed", "frame.number") == []
    # without keys tshark reads no APS command or ZCL (only the Transport Key's APS header,
    # which travels in clear at NWK); with them, the Transport Key and both frames
    assert fields("zbee_aps.cmd.id || zbee_zcl", "frame.number", with_keys=False) == []
    assert [r[0] for r in fields("zbee_aps", "frame.number", with_keys=False)] == ["5"]
    (tk,) = fields("zbee_aps.cmd.id == 0x05", "zbee_aps.cmd.key_type", "zbee_aps.cmd.key",
                   "zbee_aps.cmd.dst", "zbee_aps.cmd.src")
    assert int(tk[0], 16) == 1 and tk[1].replace(":", "") == bytes(range(16)).hex()
    assert tk[2] == "00:0d:6f:00:00:00:00:aa" and tk[3] == "00:0d:6f:00:00:00:00:01"
    rows = fields("zbee_zcl && zbee_aps.cluster == 0x0702", "zbee_nwk.src", "zbee_aps.security",
                  "zbee_zcl.cmd.tsn", "zbee.sec.src64")
    assert [(int(r[0], 16), r[1], r[2]) for r in rows] == [(0, "1", "66"),
                                                           (joiner.nwk, "0", "66")]
    assert rows[0][3].startswith("00:0d:6f:00:00:00:00:01")


async def test_joining_with_the_wrong_code_or_off_the_list_gets_no_key():
    air = VirtualAir()
    code = make_install_code()
    tc, good = await _tc_and_joiner(air, code)
    try:
        wrong = RawNode(air, JOINER + 1, install_code=make_install_code())
        tc.node.add_install_code(JOINER + 1, code)  # the hub holds another code for it
        from radios.shell import JoinFailed

        with pytest.raises(JoinFailed):
            await wrong.join(attempts=1)
        assert wrong.node.stats["aps_mic_failure"] >= 1 and not wrong.node.state.joined
        stranger = RawNode(air, JOINER + 2, install_code=make_install_code())
        with pytest.raises(JoinFailed):
            await stranger.join(attempts=1)
        assert tc.node.stats["join_refused"] >= 1
        tc.node.set_policy("closed")
        late = RawNode(air, JOINER, install_code=code)  # even a listed one, when closed
        late.node.state.ieee = JOINER + 3
        with pytest.raises(JoinFailed):
            await late.join(attempts=1)
        await wrong.stop()
        await stranger.stop()
        await late.stop()
    finally:
        await good.stop()
        await tc.stop()


def test_the_state_file_is_private_checksummed_and_never_shows_keys(tmp_path, caplog):
    path = tmp_path / "radio.json"
    nv = NvFile(path)
    state = NodeState(ieee=JOINER, joined=True, pan_id=0x1A62, network_keys={0: "ab" * 16},
                      nwk_tx_reserved=5000, aps_tx_reserved=7000)
    nv.save(state)
    nv.save(state)  # a second write keeps the first as FILE.prev
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "ab" * 16 not in repr(state) and "ab" * 16 not in repr(NvFile(path).load())
    # a byte changed in the file: that copy is refused, the previous one is used, and the
    # outgoing counters jump so that none is used twice
    doc = json.loads(path.read_text())
    doc["state"]["pan_id"] = 0x1A63
    path.write_text(json.dumps(doc))
    with caplog.at_level(logging.DEBUG):
        loaded = NvFile(path).load()
    assert loaded is not None and loaded.pan_id == 0x1A62
    assert loaded.nwk_tx_reserved == 5000 + FALLBACK_COUNTER_JUMP
    assert "checksum" in caplog.text and "ab" * 16 not in caplog.text
    # both copies bad: nothing is used (a new node), and it is said
    Path(f"{path}.prev").write_text("{}")
    nv2 = NvFile(path)
    assert nv2.load() is None and len(nv2.problems) == 2


async def test_outgoing_counters_never_repeat_across_restarts(tmp_path):
    """Counters are reserved ahead in the state file before use: a node that stops dead
    (nothing written at the end) and comes back sends only counters it never sent."""
    air = VirtualAir()
    code = make_install_code()
    tc, joiner = await _tc_and_joiner(air, code)
    path = tmp_path / "j.json"
    joiner.node.nv = NvFile(path)
    joiner.node.persist()
    used: list[int] = []
    try:
        for life in range(4):
            node = joiner.node
            for _ in range(COUNTER_STEP // 2 + 37 * life):
                used.append(node.keys.nwk_tx.next())
            # "kill -9": no persist; a new node from whatever the file holds
            restored = NvFile(path).load()
            assert restored is not None
            joiner.node = type(node)(restored, NvFile(path))
            assert joiner.node.keys.nwk_tx.value > max(used)
    finally:
        await tc.stop()
    assert len(used) == len(set(used)) and used == sorted(used)


async def test_network_key_update_then_switch():
    air = VirtualAir()
    code = make_install_code()
    tc, joiner = await _tc_and_joiner(air, code)
    try:
        old = tc.node.keys.network_key()
        seq = tc.node.update_network_key()
        tc.shell.pump()
        await until(lambda: seq in joiner.node.state.network_keys)
        # until the switch both sides still use the old key
        await tc.send(joiner.nwk, 0x0006, b"\x01\x01\x00", profile=0x0104)
        await until(lambda: any(i.cluster == 6 for i in joiner.received))
        stale = joiner.node.data_frame(dst_nwk=0x0000, profile=0x0104, cluster=6, src_ep=1,
                                       dst_ep=1, payload=b"\x01\x02\x00").mpdu  # old key
        tc.node.switch_network_key(seq)
        tc.shell.pump()
        await until(lambda: joiner.node.keys.active_seq == seq)
        assert joiner.node.keys.network_key() != old and old not in [
            bytes.fromhex(k) for k in joiner.node.state.network_keys.values()]
        before = tc.node.stats["nwk_unknown_key"]
        await joiner.transmit_raw(stale)
        await until(lambda: tc.node.stats["nwk_unknown_key"] > before)
        await joiner.send(0x0000, 0x0006, b"\x01\x03\x00", profile=0x0104)
        await until(lambda: any(i.payload == b"\x01\x03\x00" for i in tc.received))
    finally:
        await joiner.stop()
        await tc.stop()


async def test_remove_device_and_a_restarted_node_rejoins_without_a_new_key(tmp_path):
    air = VirtualAir()
    code = make_install_code()
    tc, joiner = await _tc_and_joiner(air, code)
    path = tmp_path / "j.json"
    joiner.node.nv = NvFile(path)
    joiner.node.persist()
    address = joiner.nwk
    await joiner.stop()
    transport_keys = []
    air.add_tap(lambda m, _ts: transport_keys.append(m) if len(m) > 40 and _is_transport_key(
        m) else None)
    again = RawNode(air, JOINER, state_path=str(path))
    try:
        await again.rejoin()
        assert again.nwk == address and again.node.joined
        assert transport_keys == []  # a secured rejoin: no Transport Key
        # the trust centre removes it: it is told to leave and forgets the network
        assert tc.node.remove_device(JOINER)
        tc.shell.pump()
        await until(lambda: not again.node.state.joined)
        assert not again.node.state.network_keys and JOINER not in tc.node.state.devices
    finally:
        await again.stop()
        await tc.stop()


def _is_transport_key(mpdu: bytes) -> bool:
    frame = mac.decode(mpdu)
    if frame.type != mac.MacType.DATA:
        return False
    header, pos = nwk.decode_header(frame.payload)
    if header.security:
        return False  # a Transport Key to a joiner travels without NWK security
    aps_header, _ = aps.decode_header(frame.payload, pos)
    return aps_header.frame_type == aps.ApsType.COMMAND


async def test_zigpy_holds_the_keys_the_way_real_radio_libraries_report_them(tmp_path):
    air = VirtualAir()
    code = make_install_code()
    hub = VirtualControllerApplication(virtual_config(
        "00:0d:6f:00:00:00:00:01", role="coordinator", air=air, tc_policy="install_code",
        permit_join=60, install_codes={"00:0d:6f:00:00:00:00:aa": code.hex()},
        state=str(tmp_path / "hub.json")))
    await hub.startup()
    dev = VirtualControllerApplication(virtual_config(
        "00:0d:6f:00:00:00:00:aa", role="router", air=air, install_code=code,
        state=str(tmp_path / "dev.json")))
    await dev.startup()
    try:
        info = dev.state.network_info
        assert bytes(info.network_key.key) == hub.node.keys.network_key()
        assert info.network_key.tx_counter > 0
        assert info.tc_link_key.partner_ieee == t.EUI64.convert("00:0d:6f:00:00:00:00:01")
        assert bytes(info.tc_link_key.key) == link_key_from_install_code(code)
        await dev.load_network_info()
        backup = dev.backups.from_network_state()
        assert backup.network_info.network_key == dev.state.network_info.network_key
        hub_info = hub.state.network_info
        await hub.load_network_info()
        assert t.EUI64.convert("00:0d:6f:00:00:00:00:aa") in hub.state.network_info.children
        assert hub_info.pan_id == info.pan_id
    finally:
        await dev.shutdown()
        await hub.shutdown()
    for name in ("hub.json", "dev.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
