"""Messaging through the whole HAN: supplier (hub ESI) → meter → IHD, confirmations back.

Every command crosses the virtual air; tshark's SE dissector reads the pcap and must show
the field values the test sent, with no malformed frames.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest
import zigpy.types as t
from required_tools import needs_tool
from secure import se_client
from test_pcap import malformed, tshark_fields
from waiting import until
from zigpy.zcl import foundation

from hubsim.hub import CommsHub
from hubsim.ihd import InHomeDisplay
from radios.air import VirtualAir
from radios.frames import ApsKind
from radios.pcap import PcapWriter, tshark_key_options
from radios.sniffer import Sniffer
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock

TSHARK = shutil.which("tshark")
pytestmark = needs_tool("tshark")
Z2000 = 946_684_800


@pytest.fixture
async def han_pcap(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "han.pcap"
    writer = PcapWriter(pcap).capture(air)
    clock = ManualClock()
    hub = CommsHub(air=air, clock=clock.now)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:4e:01", tick_seconds=0.05,
                                   supplier_search_interval=0.2), clock=clock, air=air)
    await meter.start()
    ihd = InHomeDisplay(air=air, clock=clock.now)
    await ihd.start()
    await ihd.connect()
    await until(lambda: meter.supplier.esi is not None and hub.supplier.clients)
    try:
        yield air, clock, hub, meter, ihd, pcap, writer
    finally:
        await ihd.stop()
        await meter.stop()
        await hub.stop()
        writer.close()


def msg_rows(pcap, display: str = "zbee_aps.cluster == 0x0703") -> list[dict[str, str]]:
    fields = ["zbee_nwk.src", "zbee_nwk.dst", "zbee_zcl.cmd.tsn", "zbee_zcl_se.msg.cmd.srv_tx.id",
              "zbee_zcl_se.msg.cmd.srv_rx.id", "zbee_zcl_se.msg.message.id",
              "zbee_zcl_se.msg.message", "zbee_zcl_se.msg.message.ctrl.importance",
              "zbee_zcl_se.msg.message.ctrl.confirm", "zbee_zcl_se.msg.message.ctrl.enhconfirm",
              "zbee_zcl_se.msg.message.duration", "zbee_zcl_se.msg.message.start_time",
              "zbee_zcl_se.msg.message.confirm.ctrl", "zbee_zcl_se.msg.message.ctrl",
              "zbee_zcl.cmd.id", "zbee_zcl.attr.status", "zbee_zcl_se.msg.message.ext.ctrl.status"]
    return [dict(zip(fields, row, strict=True)) for row in tshark_fields(pcap, fields, display)]


async def test_supplier_message_reaches_the_ihd_and_the_confirmation_returns(han_pcap):
    air, clock, hub, meter, ihd, pcap, writer = han_pcap
    start = int(clock.now()) + 600  # in ten minutes, for half an hour
    hub.supplier.send_message("Peak price 4-7pm today", message_id=0x01020304,
                              importance="critical", enhanced_confirmation=True,
                              start=start, duration_minutes=30)
    await until(lambda: 0x01020304 in ihd.view.messages)
    shown = ihd.view.messages[0x01020304]
    assert shown.start == start and not shown.showing(clock.now())  # not yet
    assert ihd.view.message(clock.now()) is None
    clock.advance(601)
    assert ihd.view.message(clock.now()).text == "Peak price 4-7pm today"
    await until(lambda: hub.supplier.confirmations)
    assert hub.supplier.confirmations[0]["answer"] == "yes"
    assert hub.supplier.confirmations[0]["nwk"] == meter.nwk  # the meter passed it up
    ihd_nwk = int(ihd.app.state.node_info.nwk)
    assert meter.messaging.messages[0x01020304].confirmations[0]["nwk"] == ihd_nwk
    # after its half hour the message is gone from the meter's queue
    clock.advance(30 * 60)
    await until(lambda: 0x01020304 not in meter.messaging.messages)
    writer.close()
    assert malformed(pcap) == ""
    rows = msg_rows(pcap)
    displays = [r for r in rows if r["zbee_zcl_se.msg.cmd.srv_tx.id"] == "0x00"
                and r["zbee_zcl_se.msg.message"] == "Peak price 4-7pm today"]
    hops = {(int(r["zbee_nwk.src"], 16), int(r["zbee_nwk.dst"], 16)) for r in displays}
    assert hops == {(0x0000, meter.nwk), (meter.nwk, ihd_nwk)}  # supplier→meter, meter→IHD
    for r in displays:
        assert int(r["zbee_zcl_se.msg.message.id"], 16) == 0x01020304
        assert int(r["zbee_zcl_se.msg.message.ctrl.importance"], 16) == 3
        assert r["zbee_zcl_se.msg.message.ctrl.enhconfirm"] in ("1", "True")
        assert r["zbee_zcl_se.msg.message.ctrl.confirm"] in ("1", "True")
        assert int(r["zbee_zcl_se.msg.message.duration"]) == 30
        assert int(r["zbee_zcl_se.msg.message.start_time"]) == start - Z2000
    confirms = [r for r in rows if r["zbee_zcl_se.msg.cmd.srv_rx.id"] == "0x01"]
    hops = {(int(r["zbee_nwk.src"], 16), int(r["zbee_nwk.dst"], 16)) for r in confirms}
    assert hops == {(ihd_nwk, meter.nwk), (meter.nwk, 0x0000)}  # IHD→meter, meter→supplier
    assert all(int(r["zbee_zcl_se.msg.message.id"], 16) == 0x01020304 for r in confirms)


async def test_protected_message_replacement_cancel_and_cancel_all(han_pcap):
    air, clock, hub, meter, ihd, pcap, writer = han_pcap
    hub.supplier.send_message("Your PIN is needed", message_id=77, protected=True)
    await until(lambda: 77 in ihd.view.messages)
    assert ihd.view.messages[77].protected
    hub.supplier.send_message("Your PIN is needed today", message_id=77, protected=True)
    await until(lambda: ihd.view.messages[77].text.endswith("today"))
    assert len(meter.messaging.messages) == 1  # replaced by message ID, not queued twice
    # GetLastMessage from the IHD answers the protected form (command 0x02)
    rsp = await ihd.messaging.get_last_message()
    assert bytes(rsp.message) == b"Your PIN is needed today"
    hub.supplier.cancel_message(77)
    await until(lambda: 77 not in ihd.view.messages)
    assert 77 not in meter.messaging.messages
    hub.supplier.send_message("one", message_id=1)
    hub.supplier.send_message("two", message_id=2)
    await until(lambda: 2 in ihd.view.messages)
    hub.supplier.messaging.cancel_all(clock.now())
    hub.supplier.flush()
    await until(lambda: not ihd.view.messages and not meter.messaging.messages)
    # GetMessageCancellation: the meter remembers the cancel-all
    rsp = await ihd.messaging.get_message_cancellation(t.UTCTime(int(clock.now()) - 60 - Z2000))
    assert int(rsp.implementation_date_time) == int(clock.now()) - Z2000
    rsp = await ihd.messaging.get_message_cancellation(t.UTCTime(int(clock.now()) + 60 - Z2000))
    assert rsp.status == foundation.Status.NOT_FOUND
    writer.close()
    assert malformed(pcap) == ""
    rows = msg_rows(pcap)
    sent = {int(r["zbee_zcl_se.msg.cmd.srv_tx.id"], 16) for r in rows
            if r["zbee_zcl_se.msg.cmd.srv_tx.id"] and int(r["zbee_nwk.src"], 16) == meter.nwk}
    assert {0x00, 0x01, 0x02, 0x03} <= sent  # display, cancel, protected, cancel-all to the IHD
    cancels = [r for r in rows if r["zbee_zcl_se.msg.cmd.srv_tx.id"] == "0x01"]
    assert cancels and all(int(r["zbee_zcl_se.msg.message.id"], 16) == 77
                           and int(r["zbee_zcl_se.msg.message.ctrl"], 16) == 0 for r in cancels)
    protected = [r for r in rows if r["zbee_zcl_se.msg.cmd.srv_tx.id"] == "0x02"]
    assert {r["zbee_zcl_se.msg.message"] for r in protected} == {
        "Your PIN is needed", "Your PIN is needed today"}


async def test_a_restarted_esi_knows_the_meter_again_and_nothing_is_shown_twice(tmp_path):
    air = VirtualAir()
    clock = ManualClock()
    hub = CommsHub(air=air, clock=clock.now)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:4e:02", tick_seconds=0.05,
                                   supplier_search_interval=0.2, supplier_refresh_interval=0.3),
                     clock=clock, air=air)
    await meter.start()
    ihd = InHomeDisplay(air=air, clock=clock.now)
    await ihd.start()
    try:
        await ihd.connect()
        await until(lambda: hub.supplier.clients)
        hub.supplier.send_message("Meter read tomorrow", message_id=31,
                                  confirmation_required=True)
        await until(lambda: 31 in ihd.view.messages and ihd.view.messages[31].confirmed)
        assert len(meter.messaging.messages[31].confirmations) == 1
        pushed: list[bytes] = []
        Sniffer(air).add_tap(lambda f, _t: pushed.append(f.payload) if f.cluster_id == 0x0703
                             and f.kind == ApsKind.DATA and f.src_nwk == meter.nwk
                             and f.dst_nwk != 0 else None)
        hub.supplier.messaging.clients.clear()  # the ESI restarted: it knows no client
        await until(lambda: hub.supplier.clients, timeout=5)  # the meter asked again
        await asyncio.sleep(0.7)  # two more refreshes
        assert len(meter.messaging.messages[31].confirmations) == 1  # kept
        assert pushed == []  # the same message again is not shown to the IHD again
        assert len(hub.supplier.confirmations) == 1
    finally:
        await ihd.stop()
        await meter.stop()
        await hub.stop()


async def test_confirmation_with_response_text_and_bad_confirmations(han_pcap):
    air, clock, hub, meter, ihd, pcap, writer = han_pcap
    meter.messaging.display_message("Rate this service", now=clock.now(), message_id=9,
                                    confirmation_required=True)
    meter.flush_pushes()
    await until(lambda: 9 in ihd.view.messages and ihd.view.messages[9].confirmed)
    rsp = await ihd.confirm(9, response="Great")
    assert rsp.status == foundation.Status.SUCCESS
    assert [c["response"] for c in meter.messaging.messages[9].confirmations] == ["", "Great"]
    assert not hub.supplier.confirmations  # the meter's own message is not the supplier's
    # 21 bytes of response text: over the limit of 20
    rsp = await ihd.messaging.message_confirmation(9, 0, message_confirmation_control=0,
                                                   message_response=t.LVBytes(b"x" * 21))
    assert rsp.status == foundation.Status.INVALID_FIELD
    # "yes" and "no" at once
    rsp = await ihd.messaging.message_confirmation(9, 0, message_confirmation_control=0x03,
                                                   message_response=t.LVBytes(b""))
    assert rsp.status == foundation.Status.INVALID_FIELD
    rsp = await ihd.messaging.message_confirmation(1234, 0)
    assert rsp.status == foundation.Status.NOT_FOUND
    assert len(meter.messaging.messages[9].confirmations) == 2  # the bad ones changed nothing
    writer.close()
    rows = msg_rows(pcap, "zbee_aps.cluster == 0x0703 && zbee_zcl_se.msg.cmd.srv_rx.id == 0x01")
    assert {int(r["zbee_zcl_se.msg.message.id"], 16) for r in rows} == {9, 1234}
    # tshark 4.0 decodes the confirmation control but not the response text; its hex dump
    # of the confirmations carries the text the IHD sent, length-prefixed after the control.
    dump = subprocess.run([TSHARK, "-r", str(pcap), *tshark_key_options(pcap), "-x", "-Y",
                           "zbee_aps.cluster == 0x0703 && zbee_zcl_se.msg.cmd.srv_rx.id == 0x01"],
                          capture_output=True, text=True, check=True).stdout
    hexes = "".join(line[6:53].replace(" ", "") for line in dump.splitlines() if line[:4].isalnum())
    assert (b"\x02\x05Great").hex() in hexes


async def test_what_the_meter_refuses_from_the_air(han_pcap):
    air, clock, hub, meter, ihd, pcap, writer = han_pcap
    # a joined node with its own link key with the meter, that is not the supplier's ESI
    rogue = await se_client(air, 0x000D6F0000005E5E, meter)

    def got() -> list[bytes]:
        return [ind.payload for ind in rogue.received if ind.cluster == 0x0703]

    def to_client(tsn: int, command_id: int, payload: bytes) -> bytes:
        hdr = foundation.ZCLHeader.cluster(tsn, command_id,
                                           direction=foundation.Direction.Server_to_Client)
        hdr.frame_control = hdr.frame_control.replace(disable_default_response=0)
        return hdr.serialize() + payload

    display = (t.uint32_t(5).serialize() + b"\x00" + t.uint32_t(0).serialize()
               + t.uint16_t(0xFFFF).serialize() + t.LVBytes(b"Pay now").serialize())
    # Not the supplier's ESI: another node pretending to be one
    await rogue.send(meter.nwk, 0x0703, to_client(1, 0x00, display))
    await until(got)
    assert got()[-1][2] == 0x0B and got()[-1][-1] == foundation.Status.NOT_AUTHORIZED
    assert 5 not in meter.messaging.messages
    await rogue.stop()
    writer.close()
    assert malformed(pcap) == ""


async def test_what_the_meter_refuses_from_its_supplier(han_pcap):
    """Over-length and malformed commands from the ESI get SE statuses back over the air."""
    air, clock, hub, meter, ihd, pcap, writer = han_pcap
    answers: list[bytes] = []

    def watch(f, _when):  # the meter's Default Responses to the hub, as they cross the air
        if (f.cluster_id == 0x0703 and f.kind == ApsKind.DATA and f.dst_nwk == 0x0000
                and f.payload[2:3] == b"\x0b"):
            answers.append(f.payload)

    Sniffer(air).add_tap(watch)

    def esi_frame(tsn: int, command_id: int, payload: bytes) -> bytes:
        hdr = foundation.ZCLHeader.cluster(tsn, command_id,
                                           direction=foundation.Direction.Server_to_Client)
        return hdr.serialize() + payload

    async def from_esi(data: bytes) -> bytes:
        before = len(answers)
        await hub.app.send_packet(t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=0x0000), src_ep=9,
            dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(meter.nwk)),
            dst_ep=1, tsn=data[1], profile_id=0x0109, cluster_id=0x0703,
            data=t.SerializableBytes(data), tx_options=t.TransmitOptions.ACK))
        await until(lambda: len(answers) > before)
        return answers[-1]

    long_text = "x" * 60
    display = (t.uint32_t(6).serialize() + b"\x00" + t.uint32_t(0).serialize()
               + t.uint16_t(0xFFFF).serialize() + t.LVBytes(long_text.encode()).serialize())
    assert (await from_esi(esi_frame(0x41, 0x00, display)))[-1] == foundation.Status.INVALID_FIELD
    bad_utf8 = display[:11] + t.LVBytes(b"\xff\xfe").serialize()
    assert (await from_esi(esi_frame(0x42, 0x00, bad_utf8)))[-1] == foundation.Status.INVALID_FIELD
    assert (await from_esi(esi_frame(0x43, 0x00, display[:6])))[-1] == \
        foundation.Status.MALFORMED_COMMAND
    assert (await from_esi(esi_frame(0x44, 0x01, t.uint32_t(999).serialize() + b"\x00")))[-1] == \
        foundation.Status.NOT_FOUND
    assert (await from_esi(esi_frame(0x45, 0x07, b"")))[-1] == \
        foundation.Status.UNSUP_CLUSTER_COMMAND
    assert not meter.messaging.messages and not ihd.view.messages
    writer.close()
    rows = msg_rows(pcap, "zbee_aps.cluster == 0x0703 && zbee_zcl.cmd.id == 0x0b")
    statuses = {int(r["zbee_zcl.attr.status"], 16) for r in rows if int(r["zbee_nwk.src"], 16) ==
                meter.nwk}
    assert {0x85, 0x80, 0x8B, 0x81} <= statuses
    # only the truncated DisplayMessage the test sent on purpose may be malformed
    assert malformed(pcap).count("\n") == 1
