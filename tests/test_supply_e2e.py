"""Supply control end to end (SE 1.4 D.3.2.3.1.x): the comms hub's zigpy sends
ChangeSupply / LocalChangeSupply / ResetLoadLimitCounter to the meter over the virtual
air; the relay, the registers, the attribute reports, the SupplyStatusResponses and the
store's event log are checked — energy against the load model recomputed here, frames
against tshark's SE dissector.

Authorisation as implemented (and as SE 1.4 asks of a remote supply command): the command
must come from the trust centre (the comms hub, the HAN's ESI), carry the meter's
provider id and an issuer event id newer than the last one applied; anything else is
refused with NOT_AUTHORIZED and logged. A local restore only works from ARMED.
"""

from __future__ import annotations

import asyncio

import zigpy.types as t
from required_tools import needs_tool
from secure import ZclClient
from test_metering_tshark import (
    AGG,
    MET,
    SEED,
    SOLAR_W,
    START,
    Z2000,
    Han,
    default_responses,
    malformed,
    rows_for,
    tshark,
)
from zigpy.zcl import foundation

from sep.metrology.load import HouseholdLoad
from sep.store import Store

pytestmark = needs_tool("tshark")

EVENING = START + 10 * 3600  # the house imports: stopped accrual is visible
S = foundation.Status


def wh(load: HouseholdLoad, on_spans: list[tuple[int, int]]) -> int:
    """Truth: whole Wh of the energy drawn while the relay was closed."""
    return sum(load.energy_j(a, b)[0] for a, b in on_spans) // 3600


def change_supply_payload(provider: int, event: int, impl: int, proposed: int, bits: int) -> bytes:
    return (t.uint32_t(provider).serialize() + t.uint32_t(event).serialize()
            + t.uint32_t(0).serialize() + t.uint32_t(impl).serialize()
            + t.uint8_t(proposed).serialize() + t.uint8_t(bits).serialize())


async def read(han: Han, attrs: list[int]) -> dict[int, int]:
    """Read Attributes by id (zigpy's Metering table lacks the SE 1.4 supply attributes)."""
    rsp = await han.metering._read_attributes(attrs)
    assert all(r.status == S.SUCCESS for r in rsp.status_records), rsp
    return {int(r.attrid): int(r.value.value) for r in rsp.status_records}


async def test_disconnect_arm_and_local_restore(tmp_path):
    data = tmp_path / "data"
    han = Han(tmp_path, start=EVENING, data_dir=data)
    await han.start()
    load = HouseholdLoad(SEED, SOLAR_W)
    meter = han.meter.metering
    provider = meter.supply.provider_id
    ihd = await ZclClient.create(han.air, 0x3B3B00000000AA77, han.meter)
    m = han.metering
    try:
        await m.configure_reporting(0x0014, 0, 0, 1)  # SupplyStatus on change, not periodic
        await han.run(3600)
        t_off = int(han.clock.t)
        # -- refused: wrong provider, not the trust centre, and then a replayed event id
        rsp = await m.change_supply(provider + 1, 100, 0, 0, 0, 0x01)
        assert rsp.status == S.NOT_AUTHORIZED
        rsp = await ihd.command(0x0B, change_supply_payload(provider, 100, 0, 0, 0x01))
        assert rsp[2] == 0x0B and rsp[-1] == S.NOT_AUTHORIZED  # a Default Response
        assert meter.supply.relay.closed
        # -- the hub opens the relay (OFF), with an acknowledgement
        rsp = await m.change_supply(provider, 100, 0, 0, 0, 0x01)
        assert (rsp.provider_id, rsp.issuer_event_id, rsp.supply_status) == (provider, 100, 0)
        assert not meter.supply.relay.closed
        frozen = await read(han, [0x0000, 0x0100])
        await han.run(2 * 3600)  # metrology time advances, nothing accrues
        assert await read(han, [0x0000, 0x0100]) == frozen
        a = await read(han, [0x0014, 0x0200, 0x0400])
        assert a[0x0014] == 0 and a[0x0200] & 0x40 and a[0x0400] == 0
        stored = {iv.end: iv.value_wh for iv in meter.profile.all(0)}
        assert all(v == 0 for e, v in stored.items() if e > t_off + 1800)  # no energy booked
        rsp = await m.change_supply(provider, 100, 0, 0, 2, 0x01)  # the same id again
        assert rsp.status == S.NOT_AUTHORIZED and not meter.supply.relay.closed
        # -- the consumer cannot restore what the supplier turned off
        assert (await m.local_change_supply(2)).status == S.ACTION_DENIED
        assert (await m.local_change_supply(1)).status == S.ACTION_DENIED
        assert (await ihd.command(0x0C, b"\x02"))[-1] == S.ACTION_DENIED
        # -- the hub arms the supply: still off until the consumer restores it
        rsp = await m.change_supply(provider, 101, 0, 0, 1, 0x01)
        assert rsp.supply_status == 1 and not meter.supply.relay.closed
        await han.run(1800)
        assert await read(han, [0x0000, 0x0100]) == frozen
        assert (await read(han, [0x0014]))[0x0014] == 1
        assert (await ihd.command(0x0C, b"\x03"))[-1] == S.INVALID_VALUE  # reserved status
        rsp = await ihd.command(0x0C, b"\x02")  # LocalChangeSupply ON from an IHD: allowed
        assert rsp[-1] == S.SUCCESS and meter.supply.relay.closed
        t_on = int(han.clock.t)
        await han.run(2 * 3600)
        t_end = int(han.clock.t)
        after = await read(han, [0x0000, 0x0014])
        assert after[0x0014] == 2
        assert after[0x0000] == wh(load, [(EVENING, t_off), (t_on, t_end)])
        assert frozen[0x0000] == wh(load, [(EVENING, t_off)])
        assert after[0x0000] > frozen[0x0000]
        events = [(e.kind, e.details) for e in han.meter.store.events()]
        await asyncio.sleep(0.2)
    finally:
        await han.stop()
    # -- the event log: every switch, every refusal
    switches = [(d["from"], d["to"], d["source"]) for k, d in events if k == "SUPPLY_CHANGE"]
    assert switches == [("ON", "OFF", "remote"), ("OFF", "ARMED", "remote"),
                        ("ARMED", "ON", "local")]
    refusals = [d["status"] for k, d in events if k == "SUPPLY_REFUSED"]
    assert refusals == ["NOT_AUTHORIZED"] * 3 + ["ACTION_DENIED"] * 3 + ["INVALID_VALUE"]
    # -- the air, as tshark reads it
    pcap = han.pcap
    assert malformed(pcap) == ""
    reqs = rows_for(pcap, "change_supply", 0x0B, ["provider_id", "issuer_event_id",
                                                   "proposed_supply_status"], to_server=True)
    sent = [[int(x) for x in v] for _, v in sorted(reqs.items())]
    assert [provider + 1, 100, 0] in sent and [provider, 101, 1] in sent
    rsps = rows_for(pcap, "supply_status_response", 0x0C,
                    ["issuer_event_id", "supply_status_after_implementation"], to_server=False)
    assert sorted([int(a), int(b)] for a, b in rsps.values()) == [[100, 0], [101, 1]]
    reports = tshark(pcap, "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x0a && "
                     f"{MET}.attr_id == 0x0014", [f"{MET}.attr_id", "zbee_zcl.attr.uint8"])
    statuses = []
    for ids, vals in reports:
        statuses += [int(v) for a, v in zip(ids.split(AGG), vals.split(AGG), strict=False)
                     if int(a, 16) == 0x0014]
    assert statuses == [2, 0, 1, 2]  # ON at configuration, then every switch
    denied = [v for v in default_responses(pcap).values() if v[0] == 0x0B]
    assert denied.count((0x0B, 0x7E)) == 3  # wrong provider, not the hub, replayed id


async def test_scheduled_change_cancel_and_restart(tmp_path):
    """A ChangeSupply for later is carried out at its implementation time, and its
    SupplyStatusResponse goes out then; a cancel needs the same issuer event id; a
    disconnect survives a restart of the meter, and so does the replay protection."""
    data = tmp_path / "data"
    han = Han(tmp_path, start=EVENING, data_dir=data)
    await han.start()
    provider = han.meter.metering.supply.provider_id
    m = han.metering
    try:
        await han.run(600)
        now = int(han.clock.t)
        rsp = await m.change_supply(provider, 200, 0, now + 1800 - Z2000, 0, 0x00)
        assert rsp.status == S.SUCCESS  # scheduled; no acknowledgement asked
        a = await read(han, [0x0B00, 0x0B01])
        assert a == {0x0B00: now + 1800 - Z2000, 0x0B01: 0}  # ProposedChangeSupply...
        rsp = await m.change_supply(provider, 199, 0, 0xFFFFFFFF, 0, 0x00)
        assert rsp.status == S.NOT_FOUND  # cancel must name the pending change
        rsp = await m.change_supply(provider, 200, 0, 0xFFFFFFFF, 0, 0x00)
        assert rsp.status == S.SUCCESS
        assert (await read(han, [0x0B00]))[0x0B00] == 0xFFFFFFFF
        rsp = await m.change_supply(provider, 201, 0, now + 1800 - Z2000, 0, 0x01)
        assert rsp.status == S.SUCCESS
        await han.run(1500)
        assert han.meter.metering.supply.relay.closed  # not yet
        await han.run(300)
        await asyncio.sleep(0.2)
        assert not han.meter.metering.supply.relay.closed
    finally:
        await han.stop()
    rsps = rows_for(han.pcap, "supply_status_response", 0x0C,
                    ["issuer_event_id", "implementation_date_time",
                     "supply_status_after_implementation"], to_server=False)
    assert [v[0] for v in rsps.values()] == ["201"] and list(rsps.values())[0][2] == "0"
    assert malformed(han.pcap) == ""
    # the meter restarts (power cut): still off, and event id 201 cannot be replayed
    again = tmp_path / "again"
    again.mkdir()
    han2 = Han(again, start=int(han.clock.t) + 60, data_dir=data)
    await han2.start()
    try:
        assert not han2.meter.metering.supply.relay.closed
        assert (await read(han2, [0x0014]))[0x0014] == 0
        rsp = await han2.metering.change_supply(provider, 201, 0, 0, 2, 0x01)
        assert rsp.status == S.NOT_AUTHORIZED
        rsp = await han2.metering.change_supply(provider, 202, 0, 0, 2, 0x01)
        assert rsp.supply_status == 2 and han2.meter.metering.supply.relay.closed
    finally:
        await han2.stop()
    store = Store.open(data)
    try:
        kinds = [e.kind for e in store.events()]
    finally:
        store.close()
    assert kinds.count("SUPPLY_CHANGE_SCHEDULED") == 2
    assert "SUPPLY_CHANGE_CANCELLED" in kinds and kinds.count("SUPPLY_CHANGE") == 2


async def test_load_limit_then_reset_counter(tmp_path):
    han = Han(tmp_path, start=EVENING, data_dir=tmp_path / "data")
    await han.start()
    load = HouseholdLoad(SEED, SOLAR_W)
    supply = han.meter.metering.supply
    provider = supply.provider_id
    m = han.metering
    ihd = await ZclClient.create(han.air, 0x3B3B00000000AA77, han.meter)
    try:
        await han.run(300)
        # a demand limit under the house's base load: exceeded from now on
        supply.demand_limit_w = load.power_w(han.clock.t) // 2
        supply.arm_duration_s = 600
        await han.run(300, step=300)
        assert supply.relay.closed  # over the limit for 300 s only
        await han.run(600, step=300)
        assert not supply.relay.closed  # 600 s over the limit: load limiting armed it
        a = await read(han, [0x0014, 0x0601, 0x0604, 0x0605, 0x0606])
        assert a == {0x0014: 1, 0x0601: supply.demand_limit_w, 0x0604: 600, 0x0605: 1,
                     0x0606: 1}
        assert (await m.local_change_supply(2)).status == S.SUCCESS  # the consumer restores
        supply.demand_limit_w = None
        # only the trust centre may reset the counter, with our provider id
        r = await ihd.command(0x0A, t.uint32_t(provider).serialize() + t.uint32_t(9).serialize())
        assert r[-1] == S.NOT_AUTHORIZED
        assert (await m.reset_load_limit_counter(provider + 1, 300)).status == S.NOT_AUTHORIZED
        assert (await read(han, [0x0606]))[0x0606] == 1
        assert (await m.reset_load_limit_counter(provider, 300)).status == S.SUCCESS
        assert (await read(han, [0x0606]))[0x0606] == 0
        events = [(e.kind, e.details) for e in han.meter.store.events()]
    finally:
        await han.stop()
    limit = [d for k, d in events if k == "SUPPLY_CHANGE" and d["source"] == "load limit"]
    assert len(limit) == 1 and limit[0]["to"] == "ARMED" and limit[0]["counter"] == 1
    assert [d["was"] for k, d in events if k == "LOAD_LIMIT_COUNTER_RESET"] == [1]
    assert malformed(han.pcap) == ""
    rl = rows_for(han.pcap, "reset_load_limit_counter", 0x0A, ["provider_id", "issuer_event_id"],
                  to_server=True)
    assert sorted([int(a), int(b)] for a, b in rl.values()) == [
        [provider, 9], [provider, 300], [provider + 1, 300]]
