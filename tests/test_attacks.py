"""Attacks on the meter from separate nodes on the air.

A secure HAN as SMETS2 has it: the comms hub is coordinator and trust centre and admits
devices by install code; the meter joined with its code. The attackers are bare nodes
(``radios.rawnode.RawNode``) sending frames through the air: one that never joined, one
that joined legitimately (an "insider": it holds the network key and its own link keys),
and joiners with a wrong install code or none on the hub's list. For every attack the
meter's relay, price, messages and attributes stay as they were, and the radio counts
why it dropped the frame.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import secrets

import pytest
import zigpy.types as t
from secure import ieee_int
from waiting import until
from zigpy.zcl import foundation

from hubsim.hub import CommsHub
from radios import aps, mac, nwk
from radios.air import VirtualAir
from radios.crypto import make_install_code
from radios.nwk import AuxHeader, KeyId
from radios.rawnode import RawNode
from radios.security.codec import seal
from radios.shell import JoinFailed
from radios.sniffer import Sniffer
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.zcl.security import requires_aps_security

METER_IEEE = "00:0d:6f:00:00:00:a7:01"
HUB_IEEE = "00:0d:6f:00:00:00:00:01"
INSIDER_IEEE = "00:0d:6f:00:00:00:ba:d1"
INSIDER = ieee_int(INSIDER_IEEE)
METERING, PRICE, MESSAGING = 0x0702, 0x0700, 0x0703


def zcl(tsn: int, command: int, payload: bytes, *, to_client: bool = False) -> bytes:
    hdr = foundation.ZCLHeader.cluster(
        tsn, command, direction=foundation.Direction.Server_to_Client if to_client
        else foundation.Direction.Client_to_Server)
    return hdr.serialize() + payload


def change_supply(provider: int, event: int, proposed: int = 0) -> bytes:
    """ChangeSupply (SE 1.4 D.3.2.3.1.7): provider, issuer event, request time,
    implementation time (0 = now), proposed status (0 = off), control."""
    return zcl(0x71, 0x0B, t.uint32_t(provider).serialize() + t.uint32_t(event).serialize()
               + t.uint32_t(0).serialize() + t.uint32_t(0).serialize() + bytes([proposed, 0]))


def publish_price(provider: int) -> bytes:
    """PublishPrice (SE 1.4 D.4.2.4.1), written field by field: "EVIL" at 99.9999/kWh."""
    payload = (t.uint32_t(provider).serialize() + t.LVBytes(b"EVIL").serialize()
               + t.uint32_t(0x7FFFFFF0).serialize() + t.uint32_t(0).serialize() + b"\x00"
               + t.uint16_t(826).serialize() + bytes([0x41, 0x11])
               + t.uint32_t(0).serialize() + t.uint16_t(0xFFFF).serialize()
               + t.uint32_t(999_999).serialize())
    return zcl(0x72, 0x00, payload, to_client=True)


def display_message() -> bytes:
    return zcl(0x73, 0x00, t.uint32_t(666).serialize() + b"\x00" + t.uint32_t(0).serialize()
               + t.uint16_t(0xFFFF).serialize() + t.LVBytes(b"Pay here").serialize(),
               to_client=True)


def write_multiplier() -> bytes:
    """Write Attributes: Metering Multiplier (0x0301, uint24) = 1000."""
    hdr = foundation.ZCLHeader.general(0x74, foundation.GeneralCommand.Write_Attributes)
    return hdr.serialize() + t.uint16_t(0x0301).serialize() + bytes([0x22]) + (1000).to_bytes(
        3, "little")


@dataclasses.dataclass
class Han:
    air: VirtualAir
    hub: CommsHub
    meter: MeterApp
    clock: ManualClock
    codes: dict[str, bytes]

    @property
    def provider(self) -> int:
        return self.meter.metering.supply.provider_id

    def what_matters(self) -> tuple:
        """The relay, the price, the messages and every attribute value."""
        m = self.meter
        price = m.price.current
        return (m.metering.supply.relay.closed, int(m.metering.supply.status),
                None if price is None else (price.label, price.unit_rate),
                sorted(m.messaging.messages), copy.deepcopy(m.metering.values),
                m.metering.read_value(0x0301))

    def stats(self) -> dict[str, int]:
        return dict(self.meter.controller.security_stats)


@pytest.fixture
async def han():
    air = VirtualAir()
    clock = ManualClock()
    # the installer registered the meter's and one more device's install codes
    codes = {METER_IEEE: make_install_code(), INSIDER_IEEE: make_install_code()}
    hub = CommsHub(air=air, clock=clock.now, ieee=HUB_IEEE, install_codes=codes)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee=METER_IEEE, tick_seconds=0.05,
                                   supplier_search_interval=0.2,
                                   install_code=codes[METER_IEEE].hex()), clock=clock, air=air)
    await meter.start()
    await until(lambda: meter.supplier.esi is not None, timeout=10)
    try:
        yield Han(air, hub, meter, clock, codes)
    finally:
        await meter.stop()
        await hub.stop()


async def insider(h: Han) -> RawNode:
    """A legitimate member of the HAN (admitted by its install code) with its own
    application link key with the meter — a compromised IHD, say."""
    node = RawNode(h.air, INSIDER, install_code=h.codes[INSIDER_IEEE],
                   aps_policy=requires_aps_security)
    await node.join()
    await node.request_link_key(ieee_int(METER_IEEE))
    node.know(h.meter.nwk, ieee_int(METER_IEEE))
    return node


async def dropped(h: Han, counter: str, before: dict[str, int]) -> None:
    await until(lambda: h.stats().get(counter, 0) > before.get(counter, 0), timeout=3)
    await asyncio.sleep(0.1)  # nothing else follows from it


def forged_from(node: RawNode, src_nwk: int, dst_nwk: int, cluster: int, payload: bytes, *,
                aps_link: bytes | None, aps_source: int | None = None,
                aps_counter: int | None = None, dst_ep: int = 1) -> bytes:
    """A data frame as ``node`` would send it but claiming NWK source ``src_nwk``; APS-
    secured under ``aps_link`` (naming ``aps_source`` in the auxiliary header) or not."""
    n = node.node
    header = aps.ApsHeader(aps.ApsType.DATA, n.next_aps_counter(), dst_ep=dst_ep,
                           cluster=cluster, profile=0x0109, src_ep=9, ack_request=False)
    if aps_link is None:
        body = header.encode() + payload
    else:
        source = n.ieee if aps_source is None else aps_source
        counter = n.keys.aps_tx.next() if aps_counter is None else aps_counter
        aux = AuxHeader(KeyId.DATA, counter, source=source)
        body = seal(dataclasses.replace(header, security=True).encode(), aux, payload, aps_link,
                    source)
    real = n.state.nwk
    n.state.nwk = src_nwk
    try:
        return n.nwk_frame(dst_nwk, body)
    finally:
        n.state.nwk = real


# -- nodes that never joined -----------------------------------------------------------------
async def test_a_node_that_never_joined_can_neither_inject_nor_read(han: Han):
    before_state, before = han.what_matters(), han.stats()
    outsider = RawNode(han.air, 0x000D6F000000BAD0)
    outsider.node.state.pan_id = han.air.pan_id
    outsider.attach()
    try:
        # in clear, claiming to be the trust centre
        outsider.node.nwk_security = False
        for cluster, payload in ((METERING, change_supply(han.provider, 10**9)),
                                 (PRICE, publish_price(han.provider)),
                                 (MESSAGING, display_message()), (METERING, write_multiplier())):
            mpdu = forged_from(outsider, 0x0000, han.meter.nwk, cluster, payload, aps_link=None)
            await outsider.transmit_raw(mpdu)
        await dropped(han, "nwk_unsecured", before)
        # sealed under a key it guessed
        outsider.node.nwk_security = True
        outsider.node.keys.set_network_key(secrets.token_bytes(16), 0, activate=True)
        mpdu = forged_from(outsider, 0x0000, han.meter.nwk, METERING,
                           change_supply(han.provider, 10**9), aps_link=None)
        await outsider.transmit_raw(mpdu)
        await dropped(han, "nwk_mic_failure", before)
        assert han.what_matters() == before_state
        # and what it hears it cannot read: every frame on the air is sealed
        others = [m for m in outsider.heard if m not in outsider.sent]
        assert others and all(_sealed_or_join_only(m) for m in others)
        assert not outsider.received
    finally:
        await outsider.stop()
    assert han.stats().get("nwk_unsecured", 0) - before.get("nwk_unsecured", 0) == 4


def _sealed_or_join_only(mpdu: bytes) -> bool:
    """A frame a node without keys learns nothing from: NWK-secured, or MAC commands and
    beacons (joining), or the Transport Key (APS-sealed) a joiner gets in clear at NWK."""
    frame = mac.decode(mpdu)
    if frame.type != mac.MacType.DATA:
        return True
    header, pos = nwk.decode_header(frame.payload)
    if header.security:
        return True
    aps_header, _ = aps.decode_header(frame.payload, pos)
    return aps_header.security


# -- an insider -----------------------------------------------------------------------------
async def test_an_insider_spoofing_the_trust_centre_address_is_refused(han: Han):
    before_state, before = han.what_matters(), han.stats()
    node = await insider(han)
    try:
        link = bytes.fromhex(node.node.state.link_keys[ieee_int(METER_IEEE)].key)
        # NWK source 0x0000 (the trust centre), APS-sealed under its own key with the meter,
        # or not APS-secured at all: the NWK header names the insider's IEEE (it has no other
        # key to seal with), which is not the trust centre's
        for cluster, payload in ((METERING, change_supply(han.provider, 10**9)),
                                 (PRICE, publish_price(han.provider)),
                                 (MESSAGING, display_message())):
            for aps_link in (link, None):
                await node.transmit_raw(forged_from(node, 0x0000, han.meter.nwk, cluster,
                                                    payload, aps_link=aps_link))
        await dropped(han, "nwk_spoofed_source", before)
        assert han.stats()["nwk_spoofed_source"] - before.get("nwk_spoofed_source", 0) == 6
        # its own address, SE frames without APS security (a write among them)
        await node.transmit_raw(forged_from(node, node.nwk, han.meter.nwk, METERING,
                                            change_supply(han.provider, 10**9), aps_link=None))
        await node.transmit_raw(forged_from(node, node.nwk, han.meter.nwk, METERING,
                                            write_multiplier(), aps_link=None))
        await dropped(han, "aps_unsecured_dropped", before)
        assert han.what_matters() == before_state
    finally:
        await node.stop()


async def test_an_insider_naming_the_esi_in_the_aps_header_fails_the_mic(han: Han):
    before_state, before = han.what_matters(), han.stats()
    node = await insider(han)
    try:
        link = bytes.fromhex(node.node.state.link_keys[ieee_int(METER_IEEE)].key)
        await node.transmit_raw(forged_from(
            node, node.nwk, han.meter.nwk, PRICE, publish_price(han.provider), aps_link=link,
            aps_source=ieee_int(HUB_IEEE), aps_counter=0xFFFFFF00))  # fresh for the hub's key
        await dropped(han, "aps_mic_failure", before)  # opened with the hub's key: no
        assert han.what_matters() == before_state
    finally:
        await node.stop()


async def test_an_insider_under_its_own_name_is_not_the_supplier(han: Han):
    """Properly secured frames from a member that is not the trust centre / ESI: taken by
    the radio, refused by the meter (NOT_AUTHORIZED), nothing changes."""
    before_state = han.what_matters()
    node = await insider(han)
    try:
        await node.send(han.meter.nwk, METERING, change_supply(han.provider, 10**9))
        await node.send(han.meter.nwk, PRICE, publish_price(han.provider))
        await node.send(han.meter.nwk, MESSAGING, display_message())
        answers = await _answers(node, 3)
        assert all(a[2] == 0x0B and a[-1] == foundation.Status.NOT_AUTHORIZED for a in answers)
        assert han.what_matters() == before_state
    finally:
        await node.stop()


async def _answers(node: RawNode, n: int) -> list[bytes]:
    await until(lambda: len([i for i in node.received if i.profile == 0x0109]) >= n, timeout=3)
    return [i.payload for i in node.received if i.profile == 0x0109]


async def test_a_frame_with_a_bad_mic_is_dropped(han: Han):
    before_state, before = han.what_matters(), han.stats()
    node = await insider(han)
    try:
        good = node.node.data_frame(dst_nwk=han.meter.nwk, profile=0x0109, cluster=METERING,
                                    src_ep=1, dst_ep=1, payload=change_supply(han.provider, 1))
        bad = bytearray(good.mpdu)
        bad[-1] ^= 0x01  # the last MIC byte
        await node.transmit_raw(bytes(bad))
        await dropped(han, "nwk_mic_failure", before)
        assert han.what_matters() == before_state
    finally:
        await node.stop()


# -- replays -----------------------------------------------------------------------------------
async def _captured_change_supply(han: Han) -> bytes:
    """The hub turns the supply off (a real ChangeSupply from the trust centre) and on again;
    the OFF frame, as it was on the air."""
    frames: list[bytes] = []
    sniffer = Sniffer(han.air)
    han.air.add_tap(lambda mpdu, _ts: frames.append(mpdu))
    dev = await han.hub.wait_interviewed(METER_IEEE)
    metering = dev.endpoints[1].in_clusters[METERING]
    rsp = await metering.change_supply(han.provider, 5000, 0, 0, 0, 0)
    assert rsp.status == foundation.Status.SUCCESS and not han.meter.metering.supply.relay.closed
    rsp = await metering.change_supply(han.provider, 5001, 0, 0, 2, 0)
    assert han.meter.metering.supply.relay.closed
    off = [m for m in frames if (f := sniffer.decode(m)) is not None
           and f.cluster_id == METERING and f.src_nwk == 0 and f.payload[2:3] == b"\x0b"
           and f.payload[-2] == 0]
    assert len(off) == 1
    return off[0]


async def test_a_replayed_change_supply_is_dropped(han: Han):
    off = await _captured_change_supply(han)
    before_state, before = han.what_matters(), han.stats()
    attacker = RawNode(han.air, 0x000D6F000000BAD2)
    attacker.attach()
    try:
        assert await attacker.transmit_raw(off)
        await dropped(han, "nwk_replay", before)
        assert han.what_matters() == before_state and han.meter.metering.supply.relay.closed
    finally:
        await attacker.stop()


async def test_a_replay_after_the_meter_restarts_is_still_dropped(han: Han, tmp_path):
    """The meter's incoming frame counters survive its restart (frame-counter rollback)."""
    data = tmp_path / "meter"
    # the hub knows the meter before it restarts (the fixture does not wait for the hub's
    # interview; a restart in the middle of it left the hub without the meter's model once
    # in CI, on a loaded machine)
    await han.hub.wait_interviewed(METER_IEEE)
    # a meter that keeps its radio state: restart it on the same HAN
    await han.meter.stop()
    han.meter = MeterApp(MeterSettings(ieee=METER_IEEE, tick_seconds=0.05, data_dir=data,
                                       supplier_search_interval=0.2,
                                       install_code=han.codes[METER_IEEE].hex()),
                         clock=han.clock, air=han.air)
    await han.meter.start()
    await until(lambda: han.meter.supplier.esi is not None, timeout=10)
    off = await _captured_change_supply(han)
    await han.meter.stop()
    han.meter = MeterApp(MeterSettings(ieee=METER_IEEE, tick_seconds=0.05, data_dir=data,
                                       supplier_search_interval=0.2), clock=han.clock, air=han.air)
    await han.meter.start()  # a secured rejoin from its stored state
    await until(lambda: han.meter.supplier.esi is not None and han.meter.price.current
                is not None, timeout=10)
    await asyncio.sleep(0.3)  # the ESI's answers are in
    before_state, before = han.what_matters(), han.stats()
    assert before_state[0]  # the relay is closed
    attacker = RawNode(han.air, 0x000D6F000000BAD3)
    attacker.attach()
    try:
        await attacker.transmit_raw(off)
        await dropped(han, "nwk_replay", before)
        assert han.what_matters() == before_state
    finally:
        await attacker.stop()


# -- joiners -----------------------------------------------------------------------------------
async def test_a_joiner_with_a_wrong_install_code_gets_no_key(han: Han):
    before_state = han.what_matters()
    # on the hub's list, but the code it holds is not the one the hub has
    joiner = RawNode(han.air, INSIDER, install_code=make_install_code())
    try:
        with pytest.raises(JoinFailed):
            await joiner.join(attempts=1)
        assert joiner.node.stats["aps_mic_failure"] >= 1  # it cannot open the Transport Key
        assert not joiner.node.state.network_keys and not joiner.node.state.joined
        # so whatever it sends is in clear at NWK, and dropped
        before = han.stats()
        joiner.node.state.pan_id = han.air.pan_id
        joiner.node.nwk_security = False
        await joiner.transmit_raw(forged_from(joiner, 0x0000, han.meter.nwk, METERING,
                                              change_supply(han.provider, 10**9), aps_link=None))
        await dropped(han, "nwk_unsecured", before)
        assert han.what_matters() == before_state
    finally:
        await joiner.stop()


async def test_a_joiner_not_on_the_list_is_refused(han: Han):
    refused = han.hub.app.security_stats.get("join_refused", 0)
    joiner = RawNode(han.air, 0x000D6F000000BAD4, install_code=make_install_code())
    try:
        with pytest.raises(JoinFailed):
            await joiner.join(attempts=1)
        assert han.hub.app.security_stats["join_refused"] > refused
        assert joiner.node.stats["association_refused"] >= 1
        assert not joiner.node.state.network_keys
    finally:
        await joiner.stop()
