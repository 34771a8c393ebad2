"""The Prepayment server's answers, judged byte by byte against the SE 1.4 layouts.

Requests are packed here with ``struct`` from the SE payload tables (not with the meter's
own schemas), the answers unpacked the same way. Who may do what is attacked from every
side: a PPMID sending the supplier's commands, a stranger topping up, broadcasts, a wrong
provider, replayed issuer event ids; malformed and reserved values get their ZCL status;
a top-up that cannot be stored is not made; random payloads never crash the server.
"""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from luhn_oracle import luhn

from sep.clusters.prepayment import PrepaymentServer
from sep.endpoint import SeEndpoint
from sep.meter.prepayment import PrepaymentAccount
from sep.meter.prepayment_config import PrepaymentConfig
from sep.meter.supply import SupplyControl, SupplyStatus
from sep.meter.topup import TopUpCodeFormat

NOW = 1_780_300_800  # 2026-06-01T08:00:00Z
Z2000 = 946_684_800
SUPPLIER, PPMID, STRANGER = 0x0000, 0x9901, 0x4444
PROVIDER = 0x0000ABCD
FMT = TopUpCodeFormat()  # 8 serial + 6 amount (pence) + a Luhn digit

# ZCL status codes (ZCL r8 Table 2-12)
SUCCESS, FAILURE, NOT_AUTHORIZED, MALFORMED = 0x00, 0x01, 0x7E, 0x80
UNSUP_CLUSTER_COMMAND, UNSUP_MANUF_CLUSTER_COMMAND = 0x81, 0x83
INVALID_FIELD, INVALID_VALUE, NOT_FOUND, ACTION_DENIED = 0x85, 0x87, 0x8B, 0x93


def code(serial: int, pence: int) -> bytes:
    return luhn(f"{serial:08d}{pence:06d}").encode()


class Rig:
    def __init__(self, *, mode: str = "prepayment", credit: str = "10.00",
                 fail_commit: bool = False) -> None:
        account = PrepaymentAccount(PrepaymentConfig(
            mode=mode, initial_credit=Decimal(credit), emergency_credit_limit=Decimal("5.00"),
            emergency_credit_threshold=Decimal("1.00"), max_credit=Decimal("250.00"),
            max_credit_per_top_up=Decimal("100.00")))
        self.supply = SupplyControl(provider_id=PROVIDER)
        self.events: list[tuple[str, dict]] = []
        self.fail_commit = fail_commit

        def commit(account, events):
            if self.fail_commit:
                raise OSError("disk full")
            self.events += list(events)

        self.server = PrepaymentServer(
            account, supply=self.supply, provider_id=lambda: PROVIDER,
            supplier=lambda nwk: nwk == SUPPLIER, consumer=lambda nwk: nwk == PPMID,
            commit=commit)
        self.ep = SeEndpoint(1, [self.server])
        self.tsn = 0

    @property
    def account(self) -> PrepaymentAccount:
        return self.server.account  # replaced by a stored copy on every change

    def send(self, src: int, cmd: int, payload: bytes, *, fc: int = 0x01,
             broadcast: bool = False, now: float = NOW) -> list[bytes]:
        self.tsn += 1
        replies = self.ep.handle(src_nwk=src, src_ep=1, dst_ep=1, profile_id=0x0109,
                                 cluster_id=0x0705, data=bytes([fc, self.tsn, cmd]) + payload,
                                 broadcast=broadcast, now=now)
        return [r.data for r in replies]

    def status(self, src: int, cmd: int, payload: bytes, **kw) -> int:
        """The status of the Default Response to a command (asserting that is what came)."""
        [data] = self.send(src, cmd, payload, **kw)
        assert data[0] & 0x03 == 0x00 and data[2] == 0x0B, data.hex()  # a Default Response
        assert data[3] == cmd
        return data[4]

    def top_up(self, src: int, raw: bytes, origin: int = 2) -> tuple[int, int, int, int]:
        [data] = self.send(src, 0x04, bytes([origin, len(raw)]) + raw)
        assert data[0] == 0x19 and data[2] == 0x03, data.hex()  # ConsumerTopUpResponse
        return struct.unpack("<BiBi", data[3:])


def change_payment_mode(issuer: int, control: int = 0x0093, provider: int = PROVIDER,
                        cut_off: int = 0, when: int = 0) -> bytes:
    return struct.pack("<IIIHi", provider, issuer, when, control, cut_off)


def change_debt(issuer: int, *, kind: int = 0, amount: int = 100_000, method: int = 0,
                frequency: int = 0, per: int = 500, percent: int = 0, minute: int = 0,
                label: bytes = b"Arrears") -> bytes:
    return (struct.pack("<I", issuer) + bytes([len(label)]) + label
            + struct.pack("<iBBIHBiH", amount, method, kind, 0, minute, frequency, per, percent))


# -- top-ups ----------------------------------------------------------------------------------
def test_a_top_up_from_the_ppmid_is_credited_once():
    rig = Rig()
    result, value, source, credit = rig.top_up(PPMID, code(1, 2000))
    # Accepted – Supply Enabled, £20.00 = 200000 price units, from an IHD/PPMID (2)
    assert (result, value, source, credit) == (0x10, 200_000, 2, 300_000)
    assert rig.account.total_added == 200_000
    again = rig.top_up(PPMID, code(1, 2000))
    assert again == (0x02, 0, 2, 300_000)  # Rejected – Duplicate Top Up, nothing added
    # a different amount with the same serial is the same top-up to the meter
    assert rig.top_up(PPMID, code(1, 500))[0] == 0x02
    assert rig.account.total_added == 200_000
    results = [e[1]["result"] for e in rig.events if e[0] == "PREPAY_TOP_UP"]
    assert results == [0x00, 0x02, 0x02]  # every result is logged


def test_the_supplier_may_top_up_too():
    assert Rig().top_up(SUPPLIER, code(9, 100), origin=0)[:3] == (0x10, 10_000, 0)


@pytest.mark.parametrize("raw", [b"", b"12", code(3, 1000)[:-1] + b"0" if code(3, 1000)[-1:]
                                 != b"0" else code(3, 1000)[:-1] + b"1", b"A" * 15, b"9" * 25])
def test_invalid_codes_are_refused_and_logged(raw):
    rig = Rig()
    result, value, _source, credit = rig.top_up(PPMID, raw)
    assert (result, value, credit) == (0x01, 0, 100_000)  # Rejected – Invalid Top Up
    assert rig.events[-1][0] == "PREPAY_TOP_UP" and rig.events[-1][1]["result"] == 0x01


def test_limits_refuse_a_top_up():
    rig = Rig(credit="200.00")
    assert rig.top_up(PPMID, code(1, 10_001))[0] == 0x06  # over £100 per top-up: too large
    assert rig.top_up(PPMID, code(2, 6000))[0] == 0x04  # £260 > the £250 maximum credit
    assert rig.account.total_added == 0
    # refused codes are not used up: within the limits the same serial goes through
    assert rig.top_up(PPMID, code(2, 4000))[0] == 0x10


def test_a_top_up_that_cannot_be_stored_is_not_made():
    rig = Rig(fail_commit=True)
    result, value, _source, credit = rig.top_up(PPMID, code(5, 1000))
    assert (result, value, credit) == (0x03, 0, 100_000)  # Rejected – Error
    assert rig.account.total_added == 0 and not rig.account.used_serials
    rig.fail_commit = False
    assert rig.top_up(PPMID, code(5, 1000))[0] == 0x10  # the same code, now stored


# -- who may do what ---------------------------------------------------------------------------
SUPPLIER_COMMANDS = {
    0x02: change_debt(100), 0x03: struct.pack("<IIII", 100, 0, 50_000, 10_000),
    0x05: struct.pack("<IIBi", 100, 0, 0, 1_000_000), 0x06: change_payment_mode(100),
    0x09: struct.pack("<I", 20_000), 0x0B: struct.pack("<IIIII", PROVIDER, 100, 0, 1, 1),
    0x0C: struct.pack("<IIIi", PROVIDER, 100, 0, 0),
}


@pytest.mark.parametrize("cmd", sorted(SUPPLIER_COMMANDS))
@pytest.mark.parametrize("src", [PPMID, STRANGER])
def test_only_the_supplier_changes_the_terms(cmd, src):
    rig = Rig()
    before = rig.account.state()
    assert rig.status(src, cmd, SUPPLIER_COMMANDS[cmd]) == NOT_AUTHORIZED
    assert rig.account.state() == before
    assert rig.events[-1][0] == "PREPAY_REFUSED"


@pytest.mark.parametrize("cmd,payload", [(0x04, bytes([2, 15]) + code(1, 100)),
                                          (0x00, struct.pack("<IB", 0, 2))])
def test_a_stranger_may_not_top_up_or_select_emergency_credit(cmd, payload):
    rig = Rig(credit="0.50")
    assert rig.status(STRANGER, cmd, payload) == NOT_AUTHORIZED
    assert rig.account.total_added == 0 and not rig.account.ec_selected


def test_broadcasts_change_nothing_and_get_no_answer():
    rig = Rig(credit="0.50")
    before = rig.account.state()
    for cmd, payload in [*SUPPLIER_COMMANDS.items(), (0x04, bytes([2, 15]) + code(1, 100)),
                         (0x00, struct.pack("<IB", 0, 2))]:
        assert rig.send(SUPPLIER, cmd, payload, broadcast=True) == []
    assert rig.account.state() == before


def test_wrong_provider_and_replayed_issuer_ids_are_refused():
    rig = Rig(mode="credit")
    assert rig.status(SUPPLIER, 0x06, change_payment_mode(7, provider=0x1234)) == NOT_AUTHORIZED
    [rsp] = rig.send(SUPPLIER, 0x06, change_payment_mode(7, control=0x0003))
    # ChangePaymentModeResponse: friendly credit bitmap, calendar id, EC limit, threshold
    assert rsp[2] == 0x02 and struct.unpack("<BIII", rsp[3:]) == (0, 0, 50_000, 10_000)
    assert rig.account.prepayment
    # the same frame again (a replay) and an older issuer event id are refused
    assert rig.status(SUPPLIER, 0x06, change_payment_mode(7, control=0x0000)) == NOT_AUTHORIZED
    assert rig.status(SUPPLIER, 0x06, change_payment_mode(6, control=0x0000)) == NOT_AUTHORIZED
    assert rig.account.prepayment
    assert rig.status(SUPPLIER, 0x02, change_debt(50)) == SUCCESS
    assert rig.status(SUPPLIER, 0x02, change_debt(50, amount=0)) == NOT_AUTHORIZED
    assert rig.account.accumulated_debt == 100_000


# -- malformed and reserved values ----------------------------------------------------------------
@pytest.mark.parametrize("cmd,payload", [
    (0x04, b"\x02"), (0x04, b"\x02\x10123"), (0x00, b"\x00\x00"), (0x06, b"\x00" * 17),
    (0x02, struct.pack("<I", 1) + b"\x05ab"), (0x03, b"\x01" * 15), (0x05, b"\x00" * 12),
    (0x07, b"\x00" * 12), (0x08, b"\x00" * 4), (0x09, b"\x00" * 3), (0x0A, b"\x00" * 5),
    (0x0B, b"\x00" * 19), (0x0C, b"\x00" * 15),
])
def test_truncated_commands_are_malformed(cmd, payload):
    rig = Rig()
    before = rig.account.state()
    src = PPMID if cmd in (0x00, 0x04) else SUPPLIER
    assert rig.status(src, cmd, payload) == MALFORMED
    assert rig.account.state() == before


@pytest.mark.parametrize("cmd,payload,status", [
    (0x04, bytes([3, 15]) + code(1, 100), INVALID_FIELD),  # originating device 3 is reserved
    (0x00, struct.pack("<IB", 0, 9), INVALID_FIELD),
    (0x06, change_payment_mode(9, control=0x1003), INVALID_FIELD),  # reserved control bit
    (0x02, change_debt(9, kind=6), INVALID_FIELD),  # debt amount type 6 is reserved
    (0x02, change_debt(9, method=2), INVALID_FIELD),  # catch-up: not supported
    (0x02, change_debt(9, method=3), INVALID_FIELD),
    (0x02, change_debt(9, frequency=5), INVALID_FIELD),
    (0x02, change_debt(9, percent=10_001, method=1), INVALID_FIELD),
    (0x02, change_debt(9, minute=1440), INVALID_FIELD),
    (0x02, change_debt(9, label=b"far too long a label"), INVALID_FIELD),
    (0x02, change_debt(9, amount=-1), INVALID_VALUE),
    (0x05, struct.pack("<IIBi", 9, 0, 2, 5), INVALID_FIELD),  # credit adjustment type 2
    (0x0C, struct.pack("<IIIi", PROVIDER, 9, 0, -5), INVALID_VALUE),
    (0x0A, struct.pack("<IBB", 0, 5, 4), INVALID_FIELD),  # debt type 4 is reserved
    (0x01, b"", UNSUP_CLUSTER_COMMAND), (0x0D, b"", UNSUP_CLUSTER_COMMAND),
    (0x08, struct.pack("<IB", 0, 5), NOT_FOUND),  # no top-up yet
    (0x0A, struct.pack("<IBB", 0, 5, 0xFF), NOT_FOUND),
    (0x07, struct.pack("<IIBI", 0, 0, 0, 0xFFFFFFFF), NOT_FOUND),
])
def test_reserved_values_get_their_status(cmd, payload, status):
    rig = Rig()
    before = rig.account.state()
    src = PPMID if cmd in (0x00, 0x04) else SUPPLIER
    assert rig.status(src, cmd, payload) == status
    assert rig.account.state() == before


def test_manufacturer_specific_commands_are_not_ours():
    rig = Rig()
    [data] = rig.send(PPMID, 0x04, b"\x34\x12" + b"", fc=0x05)  # mfr code follows the fc
    assert data[-1] == UNSUP_MANUF_CLUSTER_COMMAND


def test_overall_debt_cap_bounds_the_debts():
    rig = Rig()
    assert rig.status(SUPPLIER, 0x0C, struct.pack("<IIIi", PROVIDER, 1, 0, 150_000)) == SUCCESS
    assert rig.status(SUPPLIER, 0x02, change_debt(2, amount=100_000)) == SUCCESS
    # debt 2 (type 2 absolute) of £6 would make £16 > the £15 cap
    assert rig.status(SUPPLIER, 0x02, change_debt(3, kind=2, amount=60_000)) == INVALID_VALUE
    assert rig.status(SUPPLIER, 0x02, change_debt(4, kind=2, amount=50_000)) == SUCCESS
    assert rig.account.accumulated_debt == 150_000


# -- emergency credit and the interlock ---------------------------------------------------------------
def test_emergency_credit_only_below_its_threshold():
    rig = Rig(credit="3.00")
    assert rig.status(PPMID, 0x00, struct.pack("<IB", 0, 2)) == ACTION_DENIED
    rig.server.book(NOW, 0, 0, 0)
    rig.server.book(NOW + 60, 8000, 2500, 0)  # 8 kWh at 25p: £2.00 spent, £1.00 left
    assert rig.account.credit_remaining == 10_000
    assert rig.status(PPMID, 0x00, struct.pack("<IB", NOW - Z2000, 2)) == SUCCESS
    assert rig.account.ec_selected


def test_exhausted_credit_arms_the_supply_and_blocks_a_local_restore():
    rig = Rig(credit="1.00")
    rig.server.book(NOW, 0, 0, 0)
    rig.server.book(NOW + 60, 4001, 2500, 0)  # £1.00025 drawn: nothing left
    assert rig.supply.status == SupplyStatus.ARMED
    with pytest.raises(Exception, match="no credit"):
        rig.supply.local_change(2)
    result, *_ = rig.top_up(PPMID, code(1, 500))
    assert result == 0x12  # Accepted – Supply Armed: the household restores it
    rig.supply.local_change(2)
    assert rig.supply.status == SupplyStatus.ON


def test_a_supplier_off_is_not_touched_by_prepayment():
    rig = Rig(credit="0.00")
    rig.supply.remote_change(PROVIDER, 1, 0, 0, NOW)  # the supplier turned it OFF
    rig.server.book(NOW, 0, 0, 0)
    rig.server.book(NOW + 60, 10, 2500, 0)
    assert rig.supply.status == SupplyStatus.OFF
    assert rig.top_up(PPMID, code(1, 500))[0] == 0x11  # Accepted – Supply Disabled


# -- robustness ------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(cmd=st.integers(0, 0x10), payload=st.binary(max_size=60),
       src=st.sampled_from([SUPPLIER, PPMID, STRANGER]), fc=st.sampled_from([0x01, 0x11]))
def test_any_payload_gets_an_answer_and_never_crashes(cmd, payload, src, fc):
    rig = Rig()
    replies = rig.send(src, cmd, payload, fc=fc)
    assert len(replies) <= 8
    for data in replies:
        assert data[0] & 0x08  # server→client (direction bit set)
        if data[2] == 0x0B and data[0] & 0x03 == 0:
            assert data[4] != FAILURE, (cmd, payload.hex())  # no handler blew up


def test_five_invalid_codes_lock_the_keypad_for_half_an_hour():
    rig = Rig()
    for n in range(5):  # guessing check digits
        assert rig.top_up(PPMID, code(10 + n, 9999)[:-1] + b"X")[0] == 0x01
    good = code(20, 1000)
    assert rig.top_up(PPMID, good)[0] == 0x05  # Rejected – Keypad Lock, even a good code
    [data] = rig.send(PPMID, 0x04, bytes([2, len(good)]) + good, now=NOW + 1799)
    assert data[3] == 0x05
    [data] = rig.send(PPMID, 0x04, bytes([2, len(good)]) + good, now=NOW + 1800)
    assert data[3] == 0x10  # unlocked after 30 minutes
    # the lock is part of the stored account (a restart does not lift it)
    assert "keypad_locked_until" in rig.account.state()


def test_a_flood_of_refusals_is_counted_not_written_one_by_one():
    rig = Rig()
    for _ in range(100):
        assert rig.status(STRANGER, 0x06, change_payment_mode(1)) == NOT_AUTHORIZED
    stored = [e for e in rig.events if e[0] == "PREPAY_REFUSED"]
    assert len(stored) == 20  # a minute's worth
    rig.send(STRANGER, 0x06, change_payment_mode(1), now=NOW + 61)
    last = [e for e in rig.events if e[0] == "PREPAY_REFUSED"][-1][1]
    assert last["not_stored_before"] == 80  # every refusal is accounted for


# -- payment-based debt recovery ------------------------------------------------------------------
def test_a_percentage_based_debt_takes_its_share_of_each_top_up():
    """SE 1.4 D.7.2.3.3 Debt Recovery Method 1 (percentage based): the share of each top-up
    set by Debt Recovery Balance Percentage (hundredths of a percent) goes to the debt until
    it is paid; the rest is credit; TotalCreditAdded counts the whole top-up. Worked by hand:
    £3.00 owed at 25 %: a £10 top-up pays £2.50 of it, the next £10 the last £0.50."""
    rig = Rig(credit="10.00")
    assert rig.status(SUPPLIER, 0x02, change_debt(1, kind=0, amount=30_000, method=1,
                                                   percent=2500, per=0)) == SUCCESS
    result, value, _source, credit = rig.top_up(PPMID, code(1, 1000))
    assert (result, value, credit) == (0x10, 100_000, 100_000 + 100_000 - 25_000)
    assert rig.account.accumulated_debt == 5_000
    result, value, _source, credit = rig.top_up(PPMID, code(2, 1000))
    assert (result, value, credit) == (0x10, 100_000, 175_000 + 100_000 - 5_000)
    assert rig.account.accumulated_debt == 0 and rig.account.total_added == 200_000
    # a third top-up owes nothing: all of it is credit
    assert rig.top_up(PPMID, code(3, 500))[3] == 270_000 + 50_000
    # the debt log read over the cluster: PublishDebtLog (SE 1.4 D.7.2.4.6), newest first:
    # collection time, amount collected, debt type, outstanding debt
    [log] = rig.send(SUPPLIER, 0x0A, struct.pack("<IBB", 0, 0, 0xFF))
    assert log[2] == 0x06 and log[3:5] == b"\x00\x01"  # command 0 of 1
    entries = [struct.unpack_from("<IIBI", log, 5 + 13 * i) for i in range((len(log) - 5) // 13)]
    assert [(collected, kind, left) for _t, collected, kind, left in entries] == [
        (5_000, 0, 0), (25_000, 0, 5_000)]


def read_attrs(rig: Rig, *ids: int) -> dict[int, int]:
    """Read Attributes (ZCL r8 2.5.1), the answer parsed with zigpy's foundation schema."""
    from zigpy.zcl import foundation

    [data] = rig.send(SUPPLIER, 0x00, b"".join(struct.pack("<H", i) for i in ids), fc=0x00)
    hdr, rest = foundation.ZCLHeader.deserialize(data)
    assert hdr.command_id == foundation.GeneralCommand.Read_Attributes_rsp
    rsp, _ = foundation.GENERAL_COMMANDS[hdr.command_id].schema.deserialize(rest)
    return {int(r.attrid): int(r.value.value) for r in rsp.status_records}


def test_the_low_credit_level_and_the_credit_limits_the_supplier_sets_are_kept_to():
    """SetLowCreditWarningLevel (D.7.2.3.10): Credit Status bit 1 "Low Credit" once the
    credit is below it; SetMaximumCreditLimit (D.7.2.3.12): a top-up above the maximum per
    top-up is Rejected – Too Large (0x06), one that would take the credit above the
    maximum credit is Rejected – Max Credit Reached (0x04)."""
    rig = Rig(credit="10.00")
    assert rig.status(SUPPLIER, 0x09, struct.pack("<I", 80_000)) == SUCCESS  # £8.00
    assert read_attrs(rig, 0x0031)[0x0031] == 80_000
    rig.server.book(NOW, 0, 0, 0)
    rig.server.book(NOW + 60, 7_000, 2_500, 0)  # 7 kWh at 25p: £1.75 drawn, £8.25 left
    assert not read_attrs(rig, 0x0003)[0x0003] & 0x02
    rig.server.book(NOW + 120, 8_200, 2_500, 0)  # 1.2 kWh more: £7.95 left
    assert read_attrs(rig, 0x0003)[0x0003] & 0x02
    assert rig.status(SUPPLIER, 0x0B, struct.pack("<IIIII", PROVIDER, 101, 0, 200_000,
                                                  50_000)) == SUCCESS  # £20, £5 a time
    assert read_attrs(rig, 0x0021, 0x0022) == {0x0021: 200_000, 0x0022: 50_000}
    assert rig.top_up(PPMID, code(1, 501))[0] == 0x06  # £5.01: too large
    assert rig.top_up(PPMID, code(1, 500))[0] == 0x10  # £5.00: £12.95
    assert rig.top_up(PPMID, code(2, 500))[0] == 0x10  # £17.95
    assert rig.top_up(PPMID, code(3, 500))[0] == 0x04  # £22.95 > £20: max credit reached
    assert rig.account.total_added == 100_000


def test_credit_mode_never_interrupts_and_changing_the_payment_mode_takes_effect():
    """Credit and prepayment payment modes (SE 1.4 D.7.2.2.1.1 Payment Control
    Configuration: bit 0 Disconnection Enabled, bit 1 Prepayment Enabled) and
    ChangePaymentMode between them: in credit mode a meter never cuts the supply for want of
    credit; switched to prepayment with nothing left it interrupts it (ARMED); switched back
    to credit mode, the household may restore it."""
    rig = Rig(mode="credit", credit="0.00")
    rig.server.book(NOW, 0, 0, 0)
    rig.server.book(NOW + 60, 10_000, 2_500, 0)  # 10 kWh at 25p drawn, nothing paid
    assert rig.supply.status == SupplyStatus.ON
    [rsp] = rig.send(SUPPLIER, 0x06, change_payment_mode(7, control=0x0003), now=NOW + 120)
    assert rsp[2] == 0x02  # ChangePaymentModeResponse
    assert rig.supply.status == SupplyStatus.ARMED
    with pytest.raises(Exception, match="no credit"):
        rig.supply.local_change(2)
    [rsp] = rig.send(SUPPLIER, 0x06, change_payment_mode(8, control=0x0000), now=NOW + 150)
    assert rsp[2] == 0x02
    assert read_attrs(rig, 0x0000)[0x0000] == 0x0000
    rig.supply.local_change(2)  # credit mode: nothing holds the supply off
    assert rig.supply.status == SupplyStatus.ON
    rig.server.book(NOW + 180, 20_000, 2_500, 0)
    assert rig.supply.status == SupplyStatus.ON
