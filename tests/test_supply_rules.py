"""Supply commands: one issuer-event-id sequence for ChangeSupply, SetSupplyStatus and
ResetLoadLimitCounter (SE 1.4 D.3.2.3.1: "Commands should be ignored if the value of the
Issuer Event ID is equal to or less than the previous value"), so a SetSupplyStatus frame
taken off the air and sent again is refused — also after a restart — and a scheduled
ChangeSupply's SupplyStatusResponse goes to the node that asked for it, not to every
client of the Metering cluster.

Frames are judged by tshark; the replay is the captured air frame itself, re-injected
(with a fresh APS counter, as a replaying attacker would send it).
"""

from __future__ import annotations

import asyncio

import zigpy.types as t
from secure import se_client
from test_metering_tshark import START, Han
from tshark_tools import commands, fields, malformed, need_tshark
from waiting import until
from zigpy.zcl import foundation

from radios.frames import AirFrame, ApsKind
from radios.sniffer import Sniffer
from sep.store import Store

S = foundation.Status
MET = "zbee_zcl_se.met"
HUB_NWK = 0x0000
EVENING = START + 10 * 3600


async def read(han: Han, attrs: list[int]) -> dict[int, int]:
    rsp = await han.metering._read_attributes(attrs)
    assert all(r.status == S.SUCCESS for r in rsp.status_records), rsp
    return {int(r.attrid): int(r.value.value) for r in rsp.status_records}


class Recorder:
    """An air tap keeping the frames the hub sends the meter's Metering cluster: the bytes
    as they were on the air, and what they carry (decrypted with the capture's keys)."""

    def __init__(self, han: Han) -> None:
        self.frames: list[tuple[bytes, AirFrame]] = []
        self.sniffer = Sniffer(han.air)
        han.air.add_tap(self._tap)

    def _tap(self, mpdu: bytes, now: float) -> None:
        frame = self.sniffer.decode(mpdu)
        if frame is not None and frame.kind == ApsKind.DATA and frame.cluster_id == 0x0702 \
                and frame.src_nwk == HUB_NWK:
            self.frames.append((mpdu, frame))

    def last(self, command_id: int) -> tuple[bytes, AirFrame]:
        return [(m, f) for m, f in self.frames if f.payload[2] == command_id][-1]


async def replay_from_hub(han: Han, payload: bytes) -> None:
    """The hub sends an old command again, as a new frame (an application-level replay:
    the radio's counters are fresh, only the issuer event id is old)."""
    await han.hub.app.send_packet(t.ZigbeePacket(
        src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=HUB_NWK), src_ep=1,
        dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(han.meter.nwk)),
        dst_ep=1, tsn=payload[1], profile_id=0x0109, cluster_id=0x0702,
        data=t.SerializableBytes(payload), tx_options=t.TransmitOptions.ACK))


async def test_set_supply_status_replayed_is_refused_before_and_after_a_restart(tmp_path):
    need_tshark()
    data = tmp_path / "data"
    han = Han(tmp_path, start=EVENING, data_dir=data)
    await han.start()
    rec = Recorder(han)
    meter = han.meter.metering
    provider = meter.supply.provider_id
    m = han.metering
    try:
        await han.run(600)
        # tamper → OFF (0), depletion → ARMED (1), flow → ARMED (1), load limit → OFF (0)
        assert (await m.set_supply_status(10, 0, 1, 1, 0)).status == S.SUCCESS
        assert await read(han, [0x0605, 0x0607, 0x0608, 0x0609]) == {
            0x0605: 0, 0x0607: 0, 0x0608: 1, 0x0609: 1}
        original_mpdu, original = rec.last(0x0D)
        # a later command sets other states ...
        assert (await m.set_supply_status(11, 2, 2, 2, 1)).status == S.SUCCESS
        # ... and the first frame, replayed off the air as it was: the meter's radio drops
        # it (a frame counter it has seen) ...
        replays = han.meter.controller.security_stats.get("nwk_replay", 0)
        han.air.inject(original_mpdu, han.air.channel)
        await until(lambda: han.meter.controller.security_stats.get("nwk_replay", 0) > replays)
        # ... and sent again by the hub itself, the meter refuses its old issuer event id
        await replay_from_hub(han, original.payload)
        await asyncio.sleep(0.2)
        assert await read(han, [0x0605, 0x0607, 0x0608, 0x0609]) == {
            0x0605: 1, 0x0607: 2, 0x0608: 2, 0x0609: 2}
        # an older id, and ids shared with ChangeSupply: one sequence for all of them
        assert (await m.set_supply_status(9, 0, 0, 0, 0)).status == S.NOT_AUTHORIZED
        assert (await m.change_supply(provider, 11, 0, 0, 0, 0)).status == S.NOT_AUTHORIZED
        assert (await m.change_supply(provider, 12, 0, 0, 2, 0)).status == S.SUCCESS
        assert (await m.set_supply_status(12, 0, 0, 0, 0)).status == S.NOT_AUTHORIZED
        # a reserved state value changes nothing and does not use the id up
        assert (await m.set_supply_status(13, 0, 3, 0, 0)).status == S.INVALID_VALUE
        assert (await m.set_supply_status(13, 1, 1, 1, 1)).status == S.SUCCESS
        last_mpdu, last = rec.last(0x0D)
    finally:
        await han.stop()
    pcap = han.pcap
    assert malformed(pcap) == ""
    sent = fields(pcap, f"zbee_aps.cluster == 0x0702 && {MET}.cmd.srv_rx.id == 0x0d",
                  [f"{MET}.set_supply_status.{f}" for f in (
                      "issuer_event_id", "supply_tamper_state", "supply_depletion_state",
                      "supply_uncontrolled_flow_state", "load_limit_supply_state")])
    assert [[int(x) for x in row] for row in sent] == [  # both replays crossed the air too
        [10, 0, 1, 1, 0], [11, 2, 2, 2, 1], [10, 0, 1, 1, 0], [10, 0, 1, 1, 0], [9, 0, 0, 0, 0],
        [12, 0, 0, 0, 0], [13, 0, 3, 0, 0], [13, 1, 1, 1, 1]]
    # the meter's answers, in air order: none to the radio replay, NOT_AUTHORIZED (0x7E) to
    # the hub's
    rows = [r for r in _answers(pcap) if r[0] == 0x0D]
    assert [s for _, s in rows] == [0x00, 0x00, 0x7E, 0x7E, 0x7E, 0x87, 0x00]

    # after a power cut: the states and the replay protection are still there
    again = tmp_path / "again"
    again.mkdir()
    han2 = Han(again, start=int(han.clock.t) + 60, data_dir=data)
    await han2.start()
    try:
        assert await read(han2, [0x0605, 0x0607, 0x0608, 0x0609]) == {
            0x0605: 1, 0x0607: 1, 0x0608: 1, 0x0609: 1}
        # the last frame replayed as it was: the restarted meter kept its frame counters
        han2.air.inject(last_mpdu, han2.air.channel)
        await until(lambda: han2.meter.controller.security_stats.get("nwk_replay", 0) > 0)
        await replay_from_hub(han2, last.payload)
        await asyncio.sleep(0.3)
        assert (await han2.metering.set_supply_status(13, 0, 0, 0, 0)).status == S.NOT_AUTHORIZED
        assert (await han2.metering.set_supply_status(14, 0, 0, 0, 0)).status == S.SUCCESS
    finally:
        await han2.stop()
    rows = [r for r in _answers(han2.pcap) if r[0] == 0x0D]
    assert [s for _, s in rows] == [0x7E, 0x7E, 0x00]  # the hub's replay, 13, 14
    store = Store.open(data)
    try:
        applied = [e.details["issuer_event_id"] for e in store.events()
                   if e.kind == "SUPPLY_STATUS_SET"]
    finally:
        store.close()
    assert applied == [10, 11, 13, 14]


def _answers(pcap) -> list[tuple[int, int]]:
    """The meter's Default Responses on Metering in air order: (command, status)."""
    rows = fields(pcap, "zbee_aps.cluster == 0x0702 && zbee_zcl.type == 0 && "
                  "zbee_zcl.cmd.id == 0x0b", ["zbee_zcl.cmd.id.rsp", "zbee_zcl.attr.status"])
    return [(int(a, 16), int(b, 16)) for a, b in rows]


async def test_scheduled_supply_status_response_goes_to_the_node_that_asked(tmp_path):
    """Two clients of the meter's Metering cluster: the hub (trust centre) schedules a
    ChangeSupply asking for acknowledgement; an IHD reads the meter meanwhile. When the
    change is carried out, the SupplyStatusResponse goes to the hub alone."""
    need_tshark()
    han = Han(tmp_path, start=EVENING)
    await han.start()
    provider = han.meter.metering.supply.provider_id
    ihd = await se_client(han.air, 0x3B3C00000000AA78, han.meter)
    ihd_nwk = ihd.nwk

    def got() -> list[bytes]:
        return [ind.payload for ind in ihd.received if ind.cluster == 0x0702]

    try:
        await han.run(600)
        # the IHD is a client of Metering: it sent a cluster command (a TakeSnapshot)
        hdr = foundation.ZCLHeader.cluster(0x51, 0x05).serialize()
        await ihd.send(han.meter.nwk, 0x0702, hdr + t.uint32_t(0x400).serialize())
        await until(got, 2)
        assert (ihd_nwk, 1) in han.meter.metering.clients
        now = int(han.clock.t)
        rsp = await han.metering.change_supply(provider, 300, 0, now + 600 - 946_684_800, 0, 0x01)
        assert rsp.status == S.SUCCESS  # scheduled
        seen = len(got())
        await han.run(600)
        await until(lambda: not han.meter.metering.supply.relay.closed, 2)
        await asyncio.sleep(0.3)
    finally:
        await ihd.stop()
        await han.stop()
    assert not [p for p in got()[seen:] if p[2] == 0x0C]  # the IHD got no SupplyStatusResponse
    pcap = han.pcap
    assert malformed(pcap) == ""
    rows = commands(pcap, 0x0702, MET, "supply_status_response", 0x0C,
                    ["zbee_nwk.dst", "issuer_event_id", "supply_status_after_implementation"],
                    to_server=False)
    assert [[int(v[0], 16), int(v[1]), int(v[2])] for v in rows.values()] == [[HUB_NWK, 300, 0]]
