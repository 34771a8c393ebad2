"""Device Management: the hub's server, the meter its client; tshark reads both legs.

The change of tenancy is judged against SE 1.4 Table D-164 (Proposed Change Control),
whose words for each bit are quoted in sep/clusters/tenancy.py: before the implementation
time nothing changes; at it, the bits set are carried out and nothing else.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import zigpy.types as t
from han_node import Node
from luhn_oracle import luhn
from tshark_se import decode, malformed, needs_tshark, tshark_time
from waiting import until
from zigpy.zcl import foundation

from hubsim.hub import CommsHub
from radios.air import VirtualAir
from radios.pcap import PcapWriter
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.clusters.device_management_client import DeviceManagementClient
from sep.clusters.event_config import EventConfiguration
from sep.meter.supply import SupplyStatus
from sep.zcl import device_management as dm
from sep.zcl.frames import Request, decode_header, server_frame

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tariff.toml"
D = "zbee_zcl_se.device_management."
T0 = 1_767_225_600
ZCL = 946_684_800
COT_CAUSE = 0x00001000  # SE snapshot cause "Change of Tenancy"
SUCCESS, NOT_AUTHORIZED, MALFORMED, INVALID_FIELD, INVALID_VALUE, NOT_FOUND = (
    0x00, 0x7E, 0x80, 0x85, 0x87, 0x8B)


async def run_for(meter: MeterApp, clock: ManualClock, seconds: int, step: int = 300) -> None:
    """Let simulated time pass in steps the meter sees each of."""
    for _ in range(seconds // step):
        clock.advance(step)
        await until(lambda: meter.last_reading is not None
                    and meter.last_reading.timestamp >= clock.now())


def profile_status(node: Node, frames: list[bytes]) -> tuple[int, int]:
    """GetProfileResponse (SE 1.4 D.3.2.4.1.1): status and periods delivered."""
    f = frames[0]
    return f[3 + 4], f[3 + 6]


def get_profile() -> bytes:
    return b"\x00" + t.uint32_t(0).serialize() + b"\x18"  # channel 0, latest, 24 periods


@needs_tshark
async def test_change_of_tenancy_at_its_time_does_what_table_d164_says(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "dm.pcap"
    writer = PcapWriter(pcap).capture(air)  # and its keys
    clock = ManualClock()
    hub = CommsHub(air=air, clock=clock.now)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:d0:01", tick_seconds=0.02,
                                   supplier_search_interval=0.2, tariff=EXAMPLE,
                                   data_dir=tmp_path / "meter"), clock=clock, air=air)
    await meter.start()
    ihd = await Node.create(air, meter, clusters=(0x0700, 0x0702, 0x0703, 0x0709))
    ihd_nwk = ihd.nwk
    m = meter.metering
    try:
        await until(lambda: meter.supplier.esi is not None, timeout=10)
        await until(lambda: 2 in meter.han.device_management.passwords)
        await ihd.ask(meter.nwk, 0x0700, 0x00, b"\x01")  # a Price client (pushed to)
        await ihd.ask(meter.nwk, 0x0709, 0x00, bytes([0x10]) + bytes(2) + bytes(4)
                      + b"\xff\xff\xff\xff" + b"\x01\x00\x00")  # an Events client
        meter.messaging.display_message("from the supplier", now=clock.now(), message_id=77)
        await ihd.ask(meter.nwk, 0x0703, 0x00)  # a Messaging client
        await run_for(meter, clock, 3 * 3600)
        assert ihd_status(await ihd.ask(meter.nwk, 0x0702, 0x00, get_profile())) == (0, 6)
        snapshots, tariff = len(m.snapshots), meter.price.tariff
        summation = meter.last_reading.delivered_wh
        tiers = list(m.registers.tiers_delivered)
        control = (dm.PRE_SNAPSHOTS | dm.POST_SNAPSHOTS | dm.RESET_BILLING_PERIOD
                   | dm.CLEAR_STANDING_CHARGE | dm.BLOCK_HISTORICAL_LOAD_PROFILE
                   | dm.CLEAR_IHD_DATA_SUPPLIER | dm.CONTACTOR_OFF_ARMED << dm.CONTACTOR_SHIFT)
        at = int(clock.now()) + 600
        hub.services.change_of_tenancy(at=at, control=control)
        await until(lambda: "tenancy" in meter.han.device_management.pending)
        # before its time: nothing changed
        await run_for(meter, clock, 300)
        assert len(m.snapshots) == snapshots and meter.price.tariff == tariff
        assert m.supply.status == SupplyStatus.ON and 77 in meter.messaging.messages
        # at its time: what the bits ask, and nothing else
        await run_for(meter, clock, 300)
        await until(lambda: "tenancy" not in meter.han.device_management.pending)
        done = meter.han.device_management.done[-1]
        new = m.snapshots[snapshots:]
        assert [(s.cause, s.time) for s in new] == [(COT_CAUSE, at), (COT_CAUSE, at)]
        assert new[0].summation_delivered >= summation  # the registers are kept
        assert all(a >= b for a, b in zip(m.registers.tiers_delivered, tiers, strict=True))
        after = meter.price.tariff
        assert after.standing_charge == 0 and after.issuer_tariff_id != tariff.issuer_tariff_id
        assert after.tiers == tariff.tiers and after.schedule == tariff.schedule  # plan kept
        assert after.billing_period.start == at  # the billing period starts again
        assert m.supply.status == SupplyStatus.ARMED
        assert meter.messaging.messages == {}
        assert done["actions"][0] == f"pre snapshot {new[0].snapshot_id}"
        assert done["actions"][-1] == f"post snapshot {new[1].snapshot_id}"
        # the history before the change is blocked from the HAN, not deleted
        assert ihd_status(await ihd.ask(meter.nwk, 0x0702, 0x00, get_profile())) == (5, 0)
        assert len(meter.store.intervals(0)) >= 6
        await run_for(meter, clock, 3600)
        assert ihd_status(await ihd.ask(meter.nwk, 0x0702, 0x00, get_profile()))[0] == 0
        # a second change, now: the default tariff and the history cleared everywhere
        hub.services.change_of_tenancy(at=None, control=dm.CLEAR_TARIFF_PLAN
                                       | dm.CLEAR_HISTORICAL_LOAD_PROFILE
                                       | dm.CONTACTOR_UNCHANGED << dm.CONTACTOR_SHIFT)
        await until(lambda: meter.price.tariff.tier_count == 1)
        assert str(meter.price.tariff.tiers[0].rate) == "0.2450"  # the default tariff
        assert meter.price.tariff.provider_id == tariff.provider_id
        assert meter.store.intervals(0) == [] and m.profile.all(0) == []
        assert m.supply.status == SupplyStatus.ARMED and len(m.snapshots) == snapshots + 2
        # a change announced, then cancelled
        cancelled = hub.services.change_of_tenancy(at=int(clock.now()) + 900, control=0x1)
        await until(lambda: "tenancy" in meter.han.device_management.pending)
        hub.services.device_management.cancel_change_of_tenancy(cancelled)
        hub.services.flush()
        await until(lambda: "tenancy" not in meter.han.device_management.pending)
        kinds = [e.kind for e in meter.store.events()]
    finally:
        await meter.stop()
        await ihd.stop()
        await hub.stop()
        writer.close()
    assert kinds.count("TENANCY_CHANGE_RECEIVED") == 3
    assert kinds.count("CHANGE_OF_TENANCY") == 2 and "TENANCY_CHANGE_CANCELLED" in kinds
    assert malformed(pcap) == ""
    rows = decode(pcap, [D + "publish_change_of_tenancy.implementation_date",
                         D + "publish_change_of_tenancy.proposed_tenancy_change_control",
                         D + "publish_change_of_tenancy.provider_id"],
                  f"{D}cmd.srv_tx.id == 0x00")
    first = rows[0]
    assert first[D + "publish_change_of_tenancy.implementation_date"] == [tshark_time(at)]
    # tshark 4.0 reads this 32-bit bitmap big-endian: our little-endian bytes, reversed
    shown = int(first[D + "publish_change_of_tenancy.proposed_tenancy_change_control"][0], 16)
    assert shown == int.from_bytes(control.to_bytes(4, "little"), "big")
    assert first[D + "publish_change_of_tenancy.provider_id"] == ["0x0000abcd"]
    # the meter's PublishEvent "tenancy changed" (0x06C1) to its Events client
    pushed = decode(pcap, ["zbee_zcl_se.events.publish_event.event_id"],
                    f"zbee_zcl_se.events.cmd.srv_tx.id == 0x00 && zbee_nwk.dst == {ihd_nwk}")
    assert ["0x06c1"] in [r["zbee_zcl_se.events.publish_event.event_id"] for r in pushed]
    # the billing period starts again at the change (PublishBillingPeriod to the IHD)
    billing = decode(pcap, ["zbee_zcl_se.price.billing_period.start_time"],
                     f"zbee_zcl_se.price.cmd.srv_tx.id == 0x09 && zbee_nwk.dst == {ihd_nwk}")
    assert [tshark_time(at)] in [r["zbee_zcl_se.price.billing_period.start_time"] for r in billing]


def ihd_status(frames: list[bytes]) -> tuple[int, int]:
    return profile_status(None, frames)  # type: ignore[arg-type]


@needs_tshark
async def test_supplier_site_cin_passwords_and_event_configuration_cross_the_air(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "dm2.pcap"
    writer = PcapWriter(pcap).capture(air)  # and its keys
    clock = ManualClock()
    hub = CommsHub(air=air, clock=clock.now)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:d1:01", tick_seconds=0.02,
                                   supplier_search_interval=0.2, data_dir=tmp_path / "m"),
                     clock=clock, air=air)
    await meter.start()
    client = meter.han.device_management
    try:
        await until(lambda: 2 in client.passwords, timeout=10)
        hub.services.update_site_id("GB-SITE-0042")
        hub.services.update_cin("CIN-7788-1234")
        await until(lambda: client.site_id == b"GB-SITE-0042" and client.cin == b"CIN-7788-1234")
        hub.services.set_event_configuration(configuration=0x13, control=0x00,
                                             argument=[0x06D1, 0x06D5])
        await until(lambda: meter.han.config.get(0x06D1) == 0x13)
        assert meter.han.config.get(0x06D5) == 0x13 and meter.han.config.get(0x06CD) == 0x04
        hub.services.get_event_configuration(0xFFFF)
        reports = hub.services.device_management.reports
        await until(lambda: reports.get(meter.nwk) == meter.han.config.values)
        # the configuration is kept in the store: a restart keeps it
        assert meter.store.get_record("config", "event_configuration")["1745"] == 0x13
        at = int(clock.now()) + 120
        hub.services.change_of_supplier(at=at, new_provider_id=0xBEEF, name="New Energy",
                                        contact="0800 111 2222", control=dm.PRE_SNAPSHOTS
                                        | dm.CONTACTOR_UNCHANGED << dm.CONTACTOR_SHIFT)
        await until(lambda: "supplier" in client.pending)
        assert meter.price.tariff.provider_id == 0xABCD
        clock.advance(180)
        await until(lambda: meter.price.tariff.provider_id == 0xBEEF)
        assert meter.metering.supply.provider_id == 0xBEEF
        await until(lambda: meter.han.calendar.active(clock.now()).provider_id == 0xBEEF)
        assert client.provider_name == b"New Energy"
        assert meter.metering.snapshots[-1].cause == 0x00002000  # Change of Supplier
    finally:
        await meter.stop()
        await hub.stop()
        writer.close()
    assert malformed(pcap) == ""
    meter_nwk = f"0x{meter.nwk:04x}"

    def one(command: int, fields: list[str], src: str = "0x0000") -> dict[str, list[str]]:
        direction = "srv_tx" if src == "0x0000" else "srv_rx"
        rows = decode(pcap, fields, f"{D}cmd.{direction}.id == 0x{command:02x} && "
                                    f"zbee_nwk.src == {src}")
        assert rows, command
        return rows[-1]

    site = one(0x03, [D + "update_site_id.site_id", D + "update_site_id.provider_id"])
    assert site[D + "update_site_id.site_id"] == ["GB-SITE-0042"]
    cin = one(0x06, [D + "update_cin.customerid_number", D + "update_cin.provider_id"])
    assert cin[D + "update_cin.customerid_number"] == ["CIN-7788-1234"]
    supplier = one(0x01, [D + "publish_change_of_supplier.proposed_provider_id",
                          D + "publish_change_of_supplier.provider_change_implementation_time",
                          D + "publish_change_of_supplier.provider_proposed_provider_name",
                          D + "publish_change_of_supplier.provider_proposed_provider_contact_details"])
    assert supplier[D + "publish_change_of_supplier.proposed_provider_id"] == ["0x0000beef"]
    assert supplier[D + "publish_change_of_supplier.provider_change_implementation_time"] == [
        tshark_time(at)]
    assert supplier[D + "publish_change_of_supplier.provider_proposed_provider_name"] == [
        "New Energy"]
    setcfg = one(0x04, [D + "set_event_configuration.configuration_control",
                        D + "set_event_configuration.event_configuration.event_id",
                        D + "event_configuration.logging",
                        D + "event_configuration.push_event_to_han"])
    assert setcfg[D + "set_event_configuration.event_configuration.event_id"] == [
        str(0x06D1), str(0x06D5)]
    assert setcfg[D + "event_configuration.logging"] == ["0x03"]
    assert setcfg[D + "event_configuration.push_event_to_han"] == ["1"]
    # ReportEventConfiguration: the meter's whole configuration, over as many commands
    rows = decode(pcap, [D + "command_index", D + "total_commands", D + "event_id",
                         D + "event_configuration"],
                  f"{D}cmd.srv_rx.id == 0x04 && zbee_nwk.src == {meter_nwk}")
    got = {}
    for r in rows:
        assert int(r[D + "total_commands"][0], 16) == len(rows)
        got.update(zip((int(x, 16) for x in r[D + "event_id"]),
                       (int(x, 16) for x in r[D + "event_configuration"]), strict=True))
    assert len(rows) == 2 and got == meter.han.config.values
    # the password the meter was given is the one tshark read (the meter keeps a digest)
    pw = one(0x02, [D + "request_new_password.password", D + "password_type"])
    assert pw[D + "password_type"] == ["0x02"]
    digest = hashlib.sha256(pw[D + "request_new_password.password"][0].encode()).hexdigest()
    assert client.passwords[2].digest == digest
    asked = decode(pcap, [D + "cmd.srv_rx.id"], f"zbee_nwk.src == {meter_nwk} && "
                                               f"{D}cmd.srv_rx.id")
    assert {r[D + "cmd.srv_rx.id"][0] for r in asked} == {"0x00", "0x01", "0x02", "0x03",
                                                          "0x04", "0x05"}


# -- the client's answers to bad input (sans-IO; payloads written field by field) --------------
class Changes:
    def __init__(self) -> None:
        self.applied: list[int] = []

    def apply(self, control: int, now: float, *, cause: int) -> list[str]:
        self.applied.append(control)
        return []


def client() -> tuple[DeviceManagementClient, list[str], Changes]:
    log: list[str] = []
    changes = Changes()
    c = DeviceManagementClient(provider_id=lambda: 0xABCD, config=EventConfiguration(),
                               changes=changes, record=lambda kind, d: log.append(kind))
    return c, log, changes


def req(command: int, payload: bytes, *, src: int = 0x0000, general: bool = False) -> Request:
    frame = server_frame(9, command, payload, general=general, disable_default_response=False)
    header, body = decode_header(frame)
    return Request(src_nwk=src, src_ep=9, dst_ep=1, profile_id=0x0109, cluster_id=0x0708,
                   header=header, payload=body)


def status(frames: list[bytes]) -> int:
    assert len(frames) == 1 and frames[0][2] == 0x0B, [f.hex() for f in frames]
    return frames[0][-1]


def cot(event_id: int = 10, at: int = 0, control: int = 0x3, provider: int = 0xABCD,
        tariff_type: int = 0) -> bytes:
    return (t.uint32_t(provider).serialize() + t.uint32_t(event_id).serialize()
            + bytes([tariff_type]) + t.uint32_t(at).serialize() + t.uint32_t(control).serialize())


def test_bad_device_management_commands_get_their_status_and_change_nothing():
    c, log, changes = client()
    now = T0
    assert status(c.handle(req(0x00, cot(), src=0x5555), now)) == NOT_AUTHORIZED
    assert log == ["UNAUTHORISED_HAN_ACTION"]
    assert status(c.handle(req(0x00, cot(provider=0x1234)), now)) == NOT_AUTHORIZED
    assert status(c.handle(req(0x00, cot(tariff_type=0x05)), now)) == INVALID_FIELD
    assert status(c.handle(req(0x00, cot(control=1 << 20)), now)) == INVALID_FIELD
    assert status(c.handle(req(0x00, cot()[:-1]), now)) == MALFORMED
    assert status(c.handle(req(0x00, cot(at=0xFFFFFFFF)), now)) == NOT_FOUND  # cancel nothing
    assert changes.applied == []
    assert status(c.handle(req(0x00, cot(event_id=10)), now)) == SUCCESS  # now: applied
    assert changes.applied == [0x3]
    assert status(c.handle(req(0x00, cot(event_id=10)), now)) == SUCCESS  # again: nothing
    assert status(c.handle(req(0x00, cot(event_id=9)), now)) == INVALID_VALUE  # older
    assert changes.applied == [0x3]
    site = (t.uint32_t(20).serialize() + t.uint32_t(0).serialize()
            + t.uint32_t(0xABCD).serialize())
    assert status(c.handle(req(0x03, site + t.LVBytes(b"x" * 33).serialize()), now)) \
        == INVALID_VALUE
    assert c.site_id is None
    setcfg = t.uint32_t(30).serialize() + t.uint32_t(0).serialize()
    assert status(c.handle(req(0x04, setcfg + b"\x13\x07\x01"), now)) == INVALID_FIELD
    assert status(c.handle(req(0x04, setcfg + b"\x80\x02\x03"), now)) == INVALID_FIELD
    assert status(c.handle(req(0x04, setcfg + b"\x13\x00\x02\x01\x06"), now)) == MALFORMED
    assert status(c.handle(req(0x04, setcfg + b"\x13\x00\x01\x34\x12"), now)) == NOT_FOUND
    assert status(c.handle(req(0x05, b"\x34\x12"), now)) == NOT_FOUND
    password = (t.uint32_t(40).serialize() + t.uint32_t(0).serialize() + b"\x00\x00\x07"
                + t.LVBytes(b"1234").serialize())
    assert status(c.handle(req(0x02, password), now)) == INVALID_FIELD
    assert status(c.handle(req(0x07, b""), now)) == 0x81  # UNSUP_CLUSTER_COMMAND
    assert c.passwords == {} and c.pending == {}


def test_the_client_discovers_what_it_handles_and_sends():
    c, _, _ = client()
    received = c.handle(req(foundation.GeneralCommand.Discover_Commands_Received, b"\x00\x10",
                            general=True), T0)
    generated = c.handle(req(foundation.GeneralCommand.Discover_Commands_Generated,
                             b"\x00\x10", general=True), T0)
    assert received[0][3:] == bytes([1, 0, 1, 2, 3, 4, 5, 6])
    assert generated[0][3:] == bytes([1, 0, 1, 2, 3, 4, 5])
    attrs = c.handle(req(foundation.GeneralCommand.Discover_Attributes, b"\x00\x00\xff",
                         general=True), T0)[0]
    ids = [int.from_bytes(attrs[4 + i:6 + i], "little") for i in range(0, len(attrs) - 4, 3)]
    assert ids == sorted([0x0000, *EventConfiguration().values])
    # reading an event's configuration attribute gives the configuration byte
    read = c.handle(req(foundation.GeneralCommand.Read_Attributes, b"\xc1\x06", general=True),
                    T0)[0]
    assert read[3:] == bytes([0xC1, 0x06, 0x00, 0x18, EventConfiguration().get(0x06C1)])


@pytest.mark.parametrize("kind", [0, 5])
def test_a_password_for_another_type_or_none_at_all(kind):
    c, log, _ = client()
    password = (t.uint32_t(40).serialize() + t.uint32_t(0).serialize() + b"\x3c\x00"
                + bytes([kind]) + t.LVBytes(b"" if kind == 0 else b"12").serialize())
    assert status(c.handle(req(0x02, password), T0)) == INVALID_FIELD
    assert "PASSWORD_CHANGE" not in log



async def test_change_of_tenancy_resets_the_prepayment_side_as_table_d164_says(tmp_path):
    """Bits 2, 3, 13 and 14 of Table D-164 on a prepayment meter: "All Credit Registers
    shall be reset", "All Debt Registers shall be reset", the transaction (top-up and debt)
    logs and the prepayment data (snapshots) cleared — read back over the air by the hub's
    zigpy; the used top-up serials kept (the same code is still a duplicate); a change
    without those bits leaves the account as it was; the reset is stored, with its event."""
    from hubsim.prepay_supplier import status_of

    air = VirtualAir()
    clock = ManualClock(1_780_300_800)  # a Monday 08:00 UTC
    hub = CommsHub(air=air, clock=clock.now)
    await hub.start()
    ieee = "00:0d:6f:00:00:00:d2:01"
    meter = MeterApp(MeterSettings(ieee=ieee, tick_seconds=0.05, supplier_search_interval=0.2,
                                   data_dir=tmp_path / "meter"), clock=clock, air=air)
    await meter.start()
    gbp = 10_000
    try:
        await hub.wait_interviewed(ieee)
        await until(lambda: meter.supplier.esi is not None, timeout=10)
        out = await hub.prepay.start_prepayment(ieee, credit=5 * gbp, ec_limit=0,
                                                ec_threshold=0, low_level=gbp)
        assert all(getattr(v, "name", "SUCCESS") == "SUCCESS" for v in out.values()), out
        debt = await hub.prepay.add_debt(ieee, debt_type=1, amount=3 * gbp, label="Arrears",
                                         per_period=0, percentage=2000)  # 20 % of top-ups
        assert status_of(debt).name == "SUCCESS"
        cluster = hub.prepay.cluster(ieee)
        code = luhn("00000042" + "001000")  # £10.00: £2.00 of it to the arrears

        async def top_up() -> int:
            rsp = await cluster.consumer_top_up(originating_device=0,
                                                top_up_code=t.LVBytes(code.encode()))
            return int(rsp.result_type)

        async def read() -> tuple[int, int]:  # CreditRemaining, AccumulatedDebt
            ok, failed = await cluster.read_attributes([0x0001, 0x0005], allow_cache=False)
            assert not failed
            return int(ok[0x0001]), int(ok[0x0005])

        async def logs() -> list[str]:  # what each Get* answers
            answers = [await hub.prepay.top_up_log(ieee), await hub.prepay.debt_log(ieee),
                       await hub.prepay.snapshot(ieee)]
            return [getattr(status_of(a), "name", "published") for a in answers]

        assert await top_up() == 0x10
        assert await read() == (13 * gbp, 1 * gbp)
        assert await logs() == ["published"] * 3
        # a change of tenancy without the prepayment bits: the account stays as it was
        kept = meter.prepayment.account.state()
        hub.services.change_of_tenancy(at=None, control=dm.PRE_SNAPSHOTS
                                       | dm.CONTACTOR_UNCHANGED << dm.CONTACTOR_SHIFT)
        await until(lambda: [e.kind for e in meter.store.events()].count(
            "CHANGE_OF_TENANCY") == 1)
        assert meter.prepayment.account.state() == kept
        # with them: credit and debt registers reset, logs and snapshots cleared
        hub.services.change_of_tenancy(at=None, control=dm.RESET_CREDIT_REGISTER
                                       | dm.RESET_DEBIT_REGISTER | dm.CLEAR_TRANSACTION_LOG
                                       | dm.CLEAR_PREPAYMENT_DATA
                                       | dm.CONTACTOR_UNCHANGED << dm.CONTACTOR_SHIFT)
        await until(lambda: [e.kind for e in meter.store.events()].count(
            "CHANGE_OF_TENANCY") == 2)
        assert await read() == (0, 0)
        assert await logs() == ["NOT_FOUND"] * 3
        assert await top_up() == 0x02  # the old tenant's code: still a duplicate
        stored = meter.store.get_record("prepay", "account")
        assert (stored["credit"], stored["top_ups"], stored["debt_log"]) == (0, [], [])
        assert "PREPAY_TENANCY_RESET" in [e.kind for e in meter.store.events()]
    finally:
        await meter.stop()
        await hub.stop()
