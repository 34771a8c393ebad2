"""Key Establishment on the air, and authorisation by its link keys.

A HAN whose devices carry CBKE credentials (suite 2, from one test CA): the hub is
coordinator and trust centre; the meter joins with its install code, runs KE with the hub,
and from then on takes SE frames only under a CBKE link key. Judged from outside the code
under test: tshark decodes the KE exchange and opens the later SE frames with the keys the
capture's key file lists; the attackers are separate nodes on the air.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import zigpy.types as t
from required_tools import require_tool
from secure import ieee_int
from test_attacks import change_supply, publish_price, write_multiplier
from waiting import until

from hubsim.hub import CommsHub
from hubsim.ihd import InHomeDisplay
from hubsim.ke_node import DemoCa
from radios.air import VirtualAir
from radios.crypto import make_install_code
from radios.pcap import PcapWriter, tshark_key_options
from radios.rawnode import RawNode
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.packets import to_packet
from sep.zcl.frames import Reply
from sep.zcl.security import requires_aps_security

METER_IEEE = "00:0d:6f:00:00:00:a7:01"
HUB_IEEE = "00:0d:6f:00:00:00:00:01"
IHD_IEEE = "00:0d:6f:00:00:00:1d:07"
ROGUE_IEEE = "00:0d:6f:00:00:00:ba:d7"
METERING, PRICE = 0x0702, 0x0700
NOT_AUTHORIZED = 0x7E
TSHARK = shutil.which("tshark")


@dataclasses.dataclass
class Han:
    air: VirtualAir
    ca: DemoCa
    hub: CommsHub
    meter: MeterApp
    clock: ManualClock
    codes: dict[str, bytes]
    pcap: Path

    def what_matters(self) -> tuple:
        m = self.meter
        price = m.price.current
        return (m.metering.supply.relay.closed, int(m.metering.supply.status),
                None if price is None else (price.label, price.unit_rate),
                sorted(m.messaging.messages), copy.deepcopy(m.metering.values))

    def stats(self) -> dict[str, int]:
        return dict(self.meter.controller.security_stats)


@pytest.fixture
async def han(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "air.pcap"
    writer = PcapWriter(pcap).capture(air)
    clock = ManualClock()
    ca = DemoCa()
    codes = {ieee: make_install_code() for ieee in (METER_IEEE, IHD_IEEE, ROGUE_IEEE)}
    hub = CommsHub(air=air, clock=clock.now, ieee=HUB_IEEE, install_codes=codes,
                   credentials=[ca.credentials(HUB_IEEE)])
    await hub.start()
    meter = MeterApp(MeterSettings(ieee=METER_IEEE, tick_seconds=0.05,
                                   supplier_search_interval=0.2,
                                   install_code=codes[METER_IEEE].hex(),
                                   credentials=(ca.credentials(METER_IEEE),)),
                     clock=clock, air=air)
    await meter.start()
    await until(lambda: meter.supplier.esi is not None, timeout=30)
    try:
        yield Han(air, ca, hub, meter, clock, codes, pcap)
    finally:
        await meter.stop()
        await hub.stop()
        writer.close()


def tshark_fields(pcap: Path, display: str, *names: str, occurrence: str = "f") -> list[list[str]]:
    require_tool("tshark")
    args = [TSHARK, "-r", str(pcap), *tshark_key_options(pcap), "-Y", display, "-T", "fields",
            "-E", "separator=;", "-E", f"occurrence={occurrence}"]
    for name in names:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split(";") for line in out.splitlines()]


async def ke_ihd(h: Han, *, credentials=None) -> InHomeDisplay:
    ihd = InHomeDisplay(air=h.air, ieee=IHD_IEEE, install_code=h.codes[IHD_IEEE],
                        credentials=[credentials or h.ca.credentials(IHD_IEEE)])
    await ihd.start()
    return ihd


def recorder(app) -> list[t.ZigbeePacket]:
    got: list[t.ZigbeePacket] = []
    inner = app.packet_received

    def record(packet: t.ZigbeePacket) -> None:
        got.append(packet)
        inner(packet)

    app.packet_received = record
    return got


async def send_from(app, dst_nwk: int, cluster: int, frame: bytes) -> None:
    reply = Reply(dst_nwk=dst_nwk, dst_ep=1, src_ep=1, profile_id=0x0109, cluster_id=cluster,
                  data=frame)
    await app.send_packet(to_packet(reply, int(app.state.node_info.nwk)))


# -- the exchange on the air ---------------------------------------------------------------------
async def test_meter_and_hub_establish_a_suite2_key_that_opens_their_se_frames(han: Han):
    # the key is in both radios, the same, and of the CBKE kind
    meter_node, hub_node = han.meter.controller.node, han.hub.app.node
    mine = meter_node.state.link_keys[ieee_int(HUB_IEEE)]
    theirs = hub_node.state.link_keys[ieee_int(METER_IEEE)]
    assert mine.kind == theirs.kind == "cbke" and mine.key == theirs.key
    await asyncio.sleep(0.5)  # some SE traffic under the key (the ESI's prices)
    pcap = han.pcap
    # tshark's decode of the exchange: InitiateKeyEstablishmentRequest from the meter with
    # suite 2 and a certificate whose subject is the meter, issued by the hub's CA
    (init,) = tshark_fields(pcap, "zbee_zcl_se.ke.cmd.srv_rx.id == 0", "zbee_nwk.src64",
                            "zbee_zcl_se.ke.attr.suite", "zbee_zcl_se.ke.cert.subject",
                            "zbee_zcl_se.ke.cert.issuer")
    assert init[0] == METER_IEEE and int(init[1], 16) == 2
    assert init[2] == METER_IEEE.replace(":", "")
    assert bytes.fromhex(init[3]) == han.ca.ca.issuer
    # the responder's certificate names the hub; both confirm MACs went; nobody terminated
    (resp,) = tshark_fields(pcap, "zbee_zcl_se.ke.cmd.srv_tx.id == 0", "zbee_nwk.src64",
                            "zbee_zcl_se.ke.cert.subject")
    assert resp == [HUB_IEEE, HUB_IEEE.replace(":", "")]
    assert len(tshark_fields(pcap, "zbee_zcl_se.ke.macu", "frame.number")) == 1
    assert len(tshark_fields(pcap, "zbee_zcl_se.ke.macv", "frame.number")) == 1
    assert tshark_fields(pcap, "zbee_zcl_se.ke.terminate.status", "frame.number") == []
    # every SE frame between them after the exchange opens with the CBKE key of the pair
    # (tshark tried every key in the file: the label names the one that worked)
    last_ke = int(tshark_fields(pcap, "zbee_zcl_se.ke.macv", "frame.number")[0][0])
    rows = tshark_fields(pcap, f"frame.number > {last_ke} && zbee_aps.profile == 0x0109 && "
                         "zbee_aps.type == 0 && zbee_aps.cluster in {0x0700,0x0702,0x0703,"
                         "0x0707,0x0708,0x0709}",
                         "frame.number", "zbee_aps.security", "zbee.sec.decryption_key",
                         occurrence="l")
    assert rows, "no SE frames after the exchange"
    pair = f"{ieee_int(HUB_IEEE):016x}-{ieee_int(METER_IEEE):016x}"
    for number, secured, label in rows:
        assert secured == "1", number
        assert label.startswith("cbke") and label.endswith(pair), (number, label)


async def test_an_ihd_keys_with_the_meter_and_reads_it(han: Han):
    ihd = await ke_ihd(han)
    try:
        await ihd.connect(timeout=30)
        assert ihd.app.has_link_key(t.EUI64.convert(METER_IEEE), "cbke")
        assert han.meter.controller.has_link_key(t.EUI64.convert(IHD_IEEE), "cbke")
        await until(lambda: ihd.view.reports_received > 0, timeout=10)
        assert han.meter.ke.established[ieee_int(IHD_IEEE)].initiator is False
    finally:
        await ihd.stop()


# -- attacks ------------------------------------------------------------------------------------
async def test_a_joined_node_that_never_did_ke_is_not_heard(han: Han):
    """An insider admitted by its install code, with an application link key with the meter
    from the trust centre, but no Key Establishment: its SE frames are dropped."""
    node = RawNode(han.air, ieee_int(ROGUE_IEEE), install_code=han.codes[ROGUE_IEEE],
                   aps_policy=requires_aps_security)
    await node.join()
    try:
        await node.request_link_key(ieee_int(METER_IEEE))
        node.know(han.meter.nwk, ieee_int(METER_IEEE))
        before_state, before = han.what_matters(), han.stats()
        provider = han.meter.metering.supply.provider_id
        for cluster, frame in ((METERING, change_supply(provider, 7)),
                               (PRICE, publish_price(han.meter.price.provider_id)),
                               (METERING, write_multiplier())):
            await node.send(han.meter.nwk, cluster, frame)
        await until(lambda: han.stats().get("aps_key_not_established", 0)
                    >= before.get("aps_key_not_established", 0) + 3, timeout=5)
        await asyncio.sleep(0.2)
        assert han.what_matters() == before_state
        assert not any(ind.cluster in (METERING, PRICE) for ind in node.received)
    finally:
        await node.stop()


async def test_a_keyed_ihd_may_not_switch_the_supply_or_publish_prices(han: Han):
    ihd = await ke_ihd(han)
    try:
        meter_nwk = han.meter.nwk
        assert await ihd.ke.establish(METER_IEEE, meter_nwk)
        got = recorder(ihd.app)
        before_state, before = han.what_matters(), han.stats()
        provider = han.meter.metering.supply.provider_id
        await send_from(ihd.app, meter_nwk, METERING, change_supply(provider, 9))
        await until(lambda: any(int(p.cluster_id) == METERING for p in got), timeout=5)
        answer = bytes(next(p for p in got if int(p.cluster_id) == METERING).data.serialize())
        # ZCL Default Response (general, command 0x0B) for ChangeSupply: NOT_AUTHORIZED
        assert answer[0] & 0x03 == 0 and answer[2] == 0x0B
        assert answer[3:5] == bytes([0x0B, NOT_AUTHORIZED])
        await send_from(ihd.app, meter_nwk, PRICE, publish_price(han.meter.price.provider_id))
        await asyncio.sleep(0.5)
        assert han.what_matters() == before_state
        assert han.stats() == before  # taken by the radio (a CBKE key), refused above it
    finally:
        await ihd.stop()


async def test_a_certificate_from_another_ca_gets_no_key(han: Han):
    stranger = DemoCa()  # a CA the meter does not trust
    ihd = await ke_ihd(han, credentials=stranger.credentials(IHD_IEEE))
    try:
        assert not await ihd.ke.establish(METER_IEEE, han.meter.nwk, timeout=30)
        assert not ihd.app.has_link_key(t.EUI64.convert(METER_IEEE), "cbke")
        assert not han.meter.controller.has_link_key(t.EUI64.convert(IHD_IEEE), "cbke")
        assert ieee_int(IHD_IEEE) not in han.meter.ke.established
        # the meter said why, on the air: TerminateKeyEstablishment UNKNOWN_ISSUER (0x01),
        # as tshark reads it
        rows = tshark_fields(han.pcap, "zbee_zcl_se.ke.terminate.status", "zbee_nwk.src64",
                             "zbee_zcl_se.ke.terminate.status")
        assert [METER_IEEE, "1"] in [[r[0], str(int(r[1], 0))] for r in rows], rows
    finally:
        await ihd.stop()


async def test_a_meter_keys_again_when_its_certificate_changes(tmp_path):
    air = VirtualAir()
    ca = DemoCa()
    code = make_install_code()
    hub = CommsHub(air=air, ieee=HUB_IEEE, install_codes={METER_IEEE: code},
                   credentials=[ca.credentials(HUB_IEEE)])
    await hub.start()
    first = ca.credentials(METER_IEEE)
    second = DemoCa(ca.ca).credentials(METER_IEEE)  # a new certificate, same CA and subject
    assert first.certificate != second.certificate
    keys = []
    try:
        for creds in (first, first, second):
            meter = MeterApp(MeterSettings(ieee=METER_IEEE, data_dir=tmp_path / "meter",
                                           install_code=code.hex(), credentials=(creds,)),
                             air=air)
            await meter.start()
            try:
                await asyncio.wait_for(meter.tc_keyed.wait(), 30)
                keys.append(meter.controller.node.state.link_keys[ieee_int(HUB_IEEE)].key)
            finally:
                await meter.stop()
        # kept across a restart with the same certificate, made anew with a new one; the
        # hub holds the new key too
        assert keys[0] == keys[1] != keys[2]
        assert hub.app.node.state.link_keys[ieee_int(METER_IEEE)].key == keys[2]
    finally:
        await hub.stop()
