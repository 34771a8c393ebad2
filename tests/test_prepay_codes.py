"""Top-up codes: the check digits against published vectors and an independent HMAC, the
layout from the tariff file, and every way a code is refused."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sep.meter.tariff import TariffError, parse_tariff
from sep.meter.topup import CodeRejected, TopUpCodeFormat, luhn_digit, mod97_digits

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
BASE = """
[[tiers]]
tier = 1
label = "Standard"
rate = "0.2450"
"""


def luhn_valid(number: str) -> bool:
    """The Luhn test as ISO/IEC 7812-1 Annex B states it, written out here."""
    digits = [int(c) for c in number][::-1]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def test_luhn_published_vector():
    # the worked example of the Luhn formula: 7992739871 has check digit 3
    assert luhn_digit("7992739871") == "3"
    assert luhn_valid("79927398713")


@given(st.text(alphabet="0123456789", min_size=1, max_size=24))
def test_luhn_digit_makes_numbers_that_pass_the_luhn_test(payload):
    assert luhn_valid(payload + luhn_digit(payload))


def test_mod97_published_vector():
    # The UK example IBAN GB82 WEST 1234 5698 7654 32 (ISO 13616): the BBAN, then GB00 as
    # digits (G=16, B=11), gives check digits 82 by ISO/IEC 7064 MOD 97-10.
    bban = "WEST12345698765432"
    numeric = "".join(str(int(c, 36)) for c in bban + "GB")
    assert mod97_digits(numeric) == "82"
    assert int(numeric + "82") % 97 == 1


def test_hmac_check_digits_equal_an_independent_hmac():
    fmt = TopUpCodeFormat(serial_digits=8, amount_digits=5, check="hmac-sha256",
                          check_digits=7, key=KEY)
    code = fmt.make(1234, 2500)
    payload = "00001234" + "02500"
    mac = hmac.new(KEY, payload.encode(), hashlib.sha256).digest()
    assert code == payload + f"{int.from_bytes(mac[:8], 'big') % 10**7:07d}"
    parsed = fmt.parse(code.encode())
    assert (parsed.serial, parsed.amount) == (1234, 2500)
    assert fmt.money(parsed.amount) == Decimal("25.00")


@pytest.mark.parametrize("check,extra", [("luhn", {}), ("iso7064-mod97", {"check_digits": 2}),
                                         ("hmac-sha256", {"check_digits": 8, "key": KEY})])
def test_every_single_digit_change_is_refused(check, extra):
    fmt = TopUpCodeFormat(check=check, **extra) if check != "luhn" else TopUpCodeFormat()
    code = fmt.make(42, 1000)
    for i in range(len(code)):
        for d in "0123456789":
            if d == code[i]:
                continue
            bad = code[:i] + d + code[i + 1:]
            with pytest.raises(CodeRejected):
                fmt.parse(bad.encode())


def test_a_code_made_with_another_key_is_refused():
    mine = TopUpCodeFormat(check="hmac-sha256", check_digits=8, key=KEY)
    theirs = TopUpCodeFormat(check="hmac-sha256", check_digits=8, key=bytes(16))
    with pytest.raises(CodeRejected, match="check digits"):
        mine.parse(theirs.make(7, 500).encode())


@pytest.mark.parametrize("raw,why", [
    (b"", "digits"), (b"1234", "digits"), (b"12345678901234A", "not all digits"),
    ("١٢٣٤٥٦٧٨٩٠١٢٣٤٥".encode(), "ASCII"),  # Arabic-Indic digits are digits, not ours
    (b"\xff" * 15, "ASCII"), (b"000000010000000", "check digits"),
])
def test_malformed_codes_are_refused(raw, why):
    with pytest.raises(CodeRejected, match=why):
        TopUpCodeFormat().parse(raw)


def test_a_code_for_no_credit_is_refused():
    fmt = TopUpCodeFormat()
    payload = "00000005" + "000000"
    with pytest.raises(CodeRejected, match="no credit"):
        fmt.parse((payload + luhn_digit(payload)).encode())


def test_the_tariff_file_defines_the_layout():
    tariff = parse_tariff(BASE + """
[prepayment.top_up_code]
serial_digits = 10
amount_digits = 4
amount_unit = "0.10"
check = "iso7064-mod97"
""")
    fmt = tariff.prepayment.top_up_code
    assert (fmt.length, fmt.check_digits, fmt.amount_unit) == (16, 2, Decimal("0.10"))
    payload = "0000000099" + "0150"
    code = payload + f"{98 - int(payload + '00') % 97:02d}"
    assert fmt.money(fmt.parse(code.encode()).amount) == Decimal("15.00")


@pytest.mark.parametrize("table,key", [
    ('check = "crc32"', "prepayment.top_up_code.check"),
    ('check = "hmac-sha256"', "prepayment.top_up_code.key"),
    ('check = "hmac-sha256"\nkey = "zz"', "prepayment.top_up_code.key"),
    ('serial_digits = 18\namount_digits = 9', "prepayment.top_up_code.serial_digits"),
    ('amount_unit = "0.00001"', "prepayment.top_up_code.amount_unit"),
    ('colour = "red"', "prepayment.top_up_code.colour"),
])
def test_a_bad_code_layout_names_its_key(table, key):
    with pytest.raises(TariffError) as err:
        parse_tariff(BASE + "[prepayment.top_up_code]\n" + table, source="t.toml")
    assert key in str(err.value) and "t.toml" in str(err.value)
