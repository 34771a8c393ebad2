"""Key Establishment (CBKE) through the ZCL exchange itself: what one core sends, the other decodes.

Independent truth: the published suite-1 vectors (device_2 initiates, device_1 responds:
ephemeral keys, MacKey, MACV, Z), AES-MMO/HMAC from radios.crypto (themselves checked
against the Zigbee vectors), and OpenSSL's ECDH on sect283k1 for suite 2 -- Z recomputed
from the private keys with the SEC 2 group order and the ECMQV associate value written out
here. Frames are read by the SE byte layout, not by our schema.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ke_support import (
    CBKE1,
    IEEE_A,
    IEEE_B,
    IEEE_C,
    Air,
    Node,
    Sent,
    creds,
    node,
    openssl_accepts_point,
    openssl_ecdh,
    terminate_fields,
    vector_node,
)
from zigpy.zcl import foundation

from radios.crypto import aes_mmo, hmac_aes_mmo
from sep.clusters.key_establishment import KeyEstablishment
from sep.zcl.key_establishment import KeStatus

# SEC 2 v2 section 3.2.1 / 3.4.1: group orders and cofactors
N163 = 0x04000000000000000000020108A2E0CC0D99F8A5EF
N283 = 0x01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE9AE2ED07577265DFF7F94451E061E163C61
ORDER = {1: (N163, 2), 2: (N283, 4)}
UNKNOWN, BAD_CONFIRM, BAD_MESSAGE, NO_RESOURCES, UNSUPPORTED, INVALID = range(1, 7)


def link_key(z: bytes) -> bytes:
    return aes_mmo(z + (2).to_bytes(4, "big"))


def associate(n: int, x: int) -> int:
    """ECMQV associate value (SEC 1 3.4): x mod 2^ceil(f/2), plus 2^ceil(f/2), f = bits of n."""
    half = (n.bit_length() + 1) // 2
    return (x % (1 << half)) + (1 << half)


def ecmqv_z_by_openssl(suite: int, d1u: int, d2u: int, qe_u: bytes, d1v: int, d2v: int,
                       qe_v: bytes) -> bytes:
    """Z = x(h·s_V·(s_U·G)) with s = d2 + avf(QE)·d1 mod n: OpenSSL's ECDH on scalars."""
    n, h = ORDER[suite]
    s_u = (d2u + associate(n, int.from_bytes(qe_u[1:], "big")) * d1u) % n
    s_v = (d2v + associate(n, int.from_bytes(qe_v[1:], "big")) * d1v) % n
    return openssl_ecdh({1: "sect163k1", 2: "sect283k1"}[suite], h * s_v % n, s_u)


def assert_no_key(*nodes: Node) -> None:
    for n in nodes:
        assert n.established == [], n.name


# ------------------------------------------------------------------------------------- success


def test_suite1_vectors_through_the_exchange():
    U, V = CBKE1["device_2"], CBKE1["device_1"]
    u, v = vector_node("U", U, 0x4A01), vector_node("V", V, 0x0000)
    air = Air(u, v)
    air.initiate(u, v)

    (init,) = air.cluster_commands(0x00, to_server=True)
    assert init.payload[:2] == b"\x01\x00"  # suite 1
    assert init.payload[4:].hex() == U["certificate_hex"]
    (init_rsp,) = air.cluster_commands(0x00, to_server=False)
    assert init_rsp.payload[:2] == b"\x01\x00" and init_rsp.payload[4:].hex() == V["certificate_hex"]
    (qeu,) = air.cluster_commands(0x01, to_server=True)
    (qev,) = air.cluster_commands(0x01, to_server=False)
    assert qeu.payload.hex() == U["ephemeral_public_key_hex"]
    assert qev.payload.hex() == V["ephemeral_public_key_hex"]
    (macu,) = air.cluster_commands(0x02, to_server=True)
    (macv,) = air.cluster_commands(0x02, to_server=False)
    mac_key = bytes.fromhex(CBKE1["mac_key_hex"])
    ieee_u, ieee_v = bytes.fromhex(U["ieee_hex"]), bytes.fromhex(V["ieee_hex"])
    assert macu.payload == hmac_aes_mmo(mac_key, b"\x02" + ieee_u + ieee_v + qeu.payload
                                        + qev.payload)
    assert macv.payload.hex() == CBKE1["macv_hex"]
    expected = link_key(bytes.fromhex(CBKE1["shared_secret_z_hex"]))
    assert [(e.partner_ieee, e.link_key, e.suite, e.initiator) for e in u.established] == [
        (int(V["ieee_hex"], 16), expected, 1, True)]
    assert [(e.partner_ieee, e.link_key, e.suite, e.initiator) for e in v.established] == [
        (int(U["ieee_hex"], 16), expected, 1, False)]
    assert air.terminates() == [] and u.failed == v.failed == []
    assert u.core.exchanges == v.core.exchanges == 0


def test_the_openssl_oracle_reproduces_the_published_z():
    U, V = CBKE1["device_2"], CBKE1["device_1"]
    z = ecmqv_z_by_openssl(
        1, int(U["private_key_hex"], 16), int(U["ephemeral_private_key_hex"], 16),
        bytes.fromhex(U["ephemeral_public_key_hex"]), int(V["private_key_hex"], 16),
        int(V["ephemeral_private_key_hex"], 16), bytes.fromhex(V["ephemeral_public_key_hex"]))
    assert z.hex() == CBKE1["shared_secret_z_hex"]


def recording(keys: list[int]):
    from sep.security import cbke

    def source(curve):
        d = cbke.random_ephemeral(curve)
        keys.append(d)
        return d

    return source


def test_suite2_independent_key_pairs_derive_the_key_openssl_computes():
    eu: list[int] = []
    ev: list[int] = []
    u = node("U", IEEE_A, 0x4A01, ephemeral_source=recording(eu))
    v = node("V", IEEE_B, 0x0000, ephemeral_source=recording(ev))
    air = Air(u, v)
    air.initiate(u, v)
    (ku,), (kv,) = u.established, v.established
    assert ku.suite == kv.suite == 2  # both have suites 1 and 2
    assert ku.link_key == kv.link_key and len(ku.link_key) == 16
    assert ku.partner_certificate == creds(2, IEEE_B).certificate
    (init,) = air.cluster_commands(0x00, to_server=True)
    assert init.payload[:2] == b"\x02\x00" and len(init.payload) == 4 + 74
    (qeu,) = air.cluster_commands(0x01, to_server=True)
    (qev,) = air.cluster_commands(0x01, to_server=False)
    assert len(qeu.payload) == len(qev.payload) == 37
    z = ecmqv_z_by_openssl(2, creds(2, IEEE_A).private_key, eu[0], qeu.payload,
                           creds(2, IEEE_B).private_key, ev[0], qev.payload)
    assert ku.link_key == link_key(z)


@pytest.mark.parametrize(("ours", "theirs", "chosen"), [((1, 2), (1, 2), 2), ((1, 2), (1,), 1),
                                                        ((1,), (1, 2), 1), ((2,), (2,), 2)])
def test_suite_negotiation(ours, theirs, chosen):
    u, v = node("U", IEEE_A, 0x4A01, ours), node("V", IEEE_B, 0x0000, theirs)
    air = Air(u, v)
    air.initiate(u, v)
    # the initiator read the responder's KeyEstablishmentSuite first (zigpy decodes it)
    read, answer = air.sent[0], air.sent[1]
    assert read.data[0] & 0x03 == 0 and read.command == 0x00 and read.payload == b"\x00\x00"
    records, rest = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Read_Attributes_rsp] \
        .schema.deserialize(answer.payload)
    (rec,) = records.status_records
    assert rec.status == foundation.Status.SUCCESS
    assert rec.value.type == 0x31  # enum16
    assert int(rec.value.value) == sum(1 << (s - 1) for s in theirs)
    assert [e.suite for e in u.established] == [e.suite for e in v.established] == [chosen]


def test_no_common_suite_fails_before_any_initiate():
    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (1,))
    air = Air(u, v)
    air.initiate(u, v)
    assert air.cluster_commands(0x00, to_server=True) == []
    assert [(f.status, f.initiator) for f in u.failed] == [(KeStatus.UNSUPPORTED_SUITE, True)]
    assert_no_key(u, v)


def test_a_partner_without_the_attribute_is_taken_as_suite_1():
    """SE 1.0 devices do not have KeyEstablishmentSuite: the answer UNSUPPORTED_ATTRIBUTE."""
    u, v = node("U", IEEE_A, 0x4A01), node("V", IEEE_B, 0x0000)
    v.core.attributes.values.clear()
    air = Air(u, v)
    air.initiate(u, v)
    assert air.sent[1].payload == b"\x00\x00\x86"  # attr 0x0000 UNSUPPORTED_ATTRIBUTE
    assert [e.suite for e in u.established] == [1]


# -------------------------------------------------------------------------------- failures


def only_terminate(air: Air, *, by_server: bool) -> tuple[int, int, int]:
    (term,) = air.terminates()
    assert term.to_server is not by_server
    return terminate_fields(term)


@pytest.mark.parametrize("suite", [1, 2])
def test_certificate_from_another_ca_is_unknown_issuer(suite):
    u = node("U", IEEE_A, 0x4A01, cred_list=[creds(suite, IEEE_A, issuer=b"OTHER-CA")])
    v = node("V", IEEE_B, 0x0000, (suite,))
    air = Air(u, v)
    air.initiate(u, v)
    status, wait, _ = only_terminate(air, by_server=True)
    assert status == UNKNOWN and wait > 0
    assert_no_key(u, v)
    assert [f.status for f in v.failed] == [KeStatus.UNKNOWN_ISSUER]
    assert [(f.status, f.by_partner) for f in u.failed] == [(KeStatus.UNKNOWN_ISSUER, True)]


def test_responder_certificate_from_another_ca_is_refused_by_the_initiator():
    foreign = creds(2, IEEE_B, issuer=b"OTHER-CA").certificate

    def swap(sent):  # V answers with a certificate for itself from another CA
        if sent.cluster_specific and sent.command == 0x00 and not sent.to_server:
            return sent.data[:7] + foreign
        return sent.data

    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v, tamper=swap)
    air.initiate(u, v)
    status, _, suite = only_terminate(air, by_server=False)
    assert (status, suite) == (UNKNOWN, 0x0002)
    assert_no_key(u, v)


def test_another_ca_using_our_issuer_id_fails_the_key_confirmation():
    """A CA that copies our issuer id but not our key: the reconstructed key is wrong, so
    the initiator cannot produce MACU."""
    u = node("U", IEEE_A, 0x4A01, cred_list=[creds(2, IEEE_A, other_ca=True)])
    v = node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v)
    air.initiate(u, v)
    status, _, _ = only_terminate(air, by_server=True)
    assert status == BAD_CONFIRM
    assert_no_key(u, v)


def test_a_certificate_of_another_device_is_refused():
    """An attacker at IEEE C presents B's certificate (subject B): BAD_MESSAGE."""
    u = node("U", IEEE_C, 0x4A01, cred_list=[creds(2, IEEE_B)])
    v = node("V", IEEE_A, 0x0000, (2,))
    air = Air(u, v)
    air.initiate(u, v)
    status, _, _ = only_terminate(air, by_server=True)
    assert status == BAD_MESSAGE
    assert_no_key(u, v)


def test_a_responder_that_is_not_the_partner_named_is_refused():
    u = node("U", IEEE_A, 0x4A01, (2,))
    v = node("V", IEEE_B, 0x0000, cred_list=[creds(2, IEEE_C)])  # C's certificate at B
    air = Air(u, v)
    air.initiate(u, v)
    status, _, _ = only_terminate(air, by_server=False)
    assert status == BAD_MESSAGE
    assert_no_key(u, v)


def test_unknown_sender_address_is_refused():
    u = node("U", IEEE_A, 0x4A01, (2,))
    u.radio_ieee = None  # the radio could not tell who sent it
    v = node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v)
    air.initiate(u, v, suite=2)
    assert only_terminate(air, by_server=True)[0] == BAD_MESSAGE
    assert_no_key(u, v)


def flip(command: int, *, to_server: bool, byte: int = -1):
    def tamper(sent):
        if sent.cluster_specific and sent.command == command and sent.to_server == to_server:
            data = bytearray(sent.data)
            data[byte] ^= 0x01
            return bytes(data)
        return sent.data

    return tamper


@pytest.mark.parametrize("suite", [1, 2])
def test_bad_macu_is_bad_key_confirm(suite):
    u, v = node("U", IEEE_A, 0x4A01, (suite,)), node("V", IEEE_B, 0x0000, (suite,))
    air = Air(u, v, tamper=flip(0x02, to_server=True))
    air.initiate(u, v)
    status, _, s = only_terminate(air, by_server=True)
    assert (status, s) == (BAD_CONFIRM, suite)
    assert air.cluster_commands(0x02, to_server=False) == []  # no MACV sent
    assert_no_key(u, v)
    assert [f.status for f in v.failed] == [KeStatus.BAD_KEY_CONFIRM]


def test_bad_macv_is_bad_key_confirm_at_the_initiator():
    """The initiator installs nothing. (The responder had MACU's proof and has already
    installed its key: a Terminate that follows is not trusted to withdraw it, since
    Key Establishment frames are not APS-secured and anyone could send one.)"""
    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v, tamper=flip(0x02, to_server=False))
    air.initiate(u, v)
    status, _, _ = only_terminate(air, by_server=False)
    assert status == BAD_CONFIRM
    assert u.established == [] and [f.status for f in u.failed] == [KeStatus.BAD_KEY_CONFIRM]
    assert len(v.established) == 1


def truncate(command: int, *, to_server: bool, keep: int):
    def tamper(sent):
        if sent.cluster_specific and sent.command == command and sent.to_server == to_server:
            return sent.data[:3 + keep]
        return sent.data

    return tamper


@pytest.mark.parametrize(("suite", "keep"), [(1, 4 + 47), (2, 4 + 73), (2, 4 + 48), (1, 4), (2, 3)])
def test_truncated_certificate_is_bad_message(suite, keep):
    u, v = node("U", IEEE_A, 0x4A01, (suite,)), node("V", IEEE_B, 0x0000, (suite,))
    air = Air(u, v, tamper=truncate(0x00, to_server=True, keep=keep))
    air.initiate(u, v)
    assert only_terminate(air, by_server=True)[0] == BAD_MESSAGE
    assert_no_key(u, v)


def test_truncated_responder_certificate_is_bad_message():
    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v, tamper=truncate(0x00, to_server=False, keep=4 + 70))
    air.initiate(u, v)
    assert only_terminate(air, by_server=False)[0] == BAD_MESSAGE
    assert_no_key(u, v)


def test_unsupported_suite_is_refused_with_what_we_have():
    u, v = node("U", IEEE_A, 0x4A01, (1, 2)), node("V", IEEE_B, 0x0000, (1,))
    air = Air(u, v)
    air.initiate(u, v, suite=2)  # skip the read: ask for suite 2 regardless
    status, _, suites = only_terminate(air, by_server=True)
    assert (status, suites) == (UNSUPPORTED, 0x0001)
    assert_no_key(u, v)


def first_x_openssl_rejects(curve: str, length: int) -> bytes:
    for x in range(2, 200):
        point = b"\x02" + x.to_bytes(length - 1, "big")
        if not openssl_accepts_point(curve, point):
            return point
    raise AssertionError("no invalid x found")


@pytest.mark.parametrize("suite", [1, 2])
@pytest.mark.parametrize("kind", ["off-curve", "wrong-length", "uncompressed-prefix"])
def test_bad_ephemeral_point_is_bad_message(suite, kind):
    length = {1: 22, 2: 37}[suite]
    curve = {1: "sect163k1", 2: "sect283k1"}[suite]
    bad = {"off-curve": lambda: first_x_openssl_rejects(curve, length),
           "wrong-length": lambda: b"\x02" + bytes(length - 2),
           "uncompressed-prefix": lambda: b"\x04" + bytes(length - 1)}[kind]()

    def tamper(sent):
        if sent.cluster_specific and sent.command == 0x01 and sent.to_server:
            return sent.data[:3] + bad
        return sent.data

    u, v = node("U", IEEE_A, 0x4A01, (suite,)), node("V", IEEE_B, 0x0000, (suite,))
    air = Air(u, v, tamper=tamper)
    air.initiate(u, v)
    assert only_terminate(air, by_server=True)[0] == BAD_MESSAGE
    assert air.cluster_commands(0x01, to_server=False) == []
    assert_no_key(u, v)


def test_bad_ephemeral_point_from_the_responder_is_bad_message():
    def tamper(sent):
        if sent.cluster_specific and sent.command == 0x01 and not sent.to_server:
            return sent.data[:3] + first_x_openssl_rejects("sect283k1", 37)
        return sent.data

    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v, tamper=tamper)
    air.initiate(u, v)
    assert only_terminate(air, by_server=False)[0] == BAD_MESSAGE
    assert_no_key(u, v)


@pytest.mark.parametrize(("fields", "why"), [
    ({"key_usage": 0x80}, "signature only"),
    ({"valid_from": 1_900_000_000}, "not yet valid"),
    ({"valid_from": 1_700_000_000, "valid_for": 86_400}, "expired"),
])
def test_invalid_suite2_certificate(fields, why):
    u = node("U", IEEE_A, 0x4A01, cred_list=[creds(2, IEEE_A, **fields)])
    v = node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v)
    air.initiate(u, v)
    assert only_terminate(air, by_server=True)[0] == INVALID, why
    assert_no_key(u, v)


def test_validity_unchecked_when_the_shell_says_so():
    u = node("U", IEEE_A, 0x4A01, cred_list=[creds(2, IEEE_A, valid_from=1_900_000_000)])
    v = node("V", IEEE_B, 0x0000, (2,), check_validity=False)
    Air(u, v).initiate(u, v)
    assert len(u.established) == len(v.established) == 1


# ------------------------------------------------------------------------- sequence and resources


def test_out_of_sequence_command_ends_the_exchange():
    def tamper(sent):  # the initiator sends its MAC where its ephemeral key belongs
        if sent.cluster_specific and sent.command == 0x01 and sent.to_server:
            return sent.data[:2] + b"\x02" + bytes(16)
        return sent.data

    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v, tamper=tamper)
    air.initiate(u, v)
    assert only_terminate(air, by_server=True)[0] == BAD_MESSAGE
    assert_no_key(u, v)
    assert v.core.exchanges == 0 and u.core.exchanges == 0


def test_stray_commands_get_bad_message_and_no_state():
    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v)
    from sep.zcl.frames import Reply

    frame = bytes([0x01, 0x42, 0x02]) + bytes(16)  # ConfirmKeyDataRequest out of the blue
    air.run(u, [Reply(v.nwk, 1, 1, 0x0109, 0x0800, frame)])
    (term,) = air.terminates()
    assert term.data[1] == 0x42 and terminate_fields(term)[0] == BAD_MESSAGE
    assert v.core.exchanges == 0 and v.failed == []


def test_unknown_and_manufacturer_commands_get_default_responses():
    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v)
    from sep.zcl.frames import Reply

    air.run(u, [Reply(v.nwk, 1, 1, 0x0109, 0x0800, bytes([0x01, 0x10, 0x07]))])
    air.run(u, [Reply(v.nwk, 1, 1, 0x0109, 0x0800, bytes([0x05, 0x34, 0x12, 0x11, 0x00]))])
    answers = [s.data for s in air.sent if s.src is v]
    assert answers == [bytes([0x18, 0x10, 0x0B, 0x07, 0x81]),  # UNSUP_CLUSTER_COMMAND
                       bytes([0x1C, 0x34, 0x12, 0x11, 0x0B, 0x00, 0x83])]  # UNSUP_MANUF_CLUSTER


def test_second_initiate_from_the_same_partner_gets_no_resources():
    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (2,))
    initiate_frame: list[bytes] = []

    def hold_ephemeral(sent):  # pause the first exchange after the certificates
        if sent.cluster_specific and sent.command == 0x00 and sent.to_server:
            initiate_frame.append(sent.data)
        if sent.cluster_specific and sent.command == 0x01 and sent.to_server:
            return None
        return sent.data

    air = Air(u, v, tamper=hold_ephemeral)
    air.initiate(u, v)
    assert v.core.busy(IEEE_A)
    from sep.zcl.frames import Reply

    air.tamper = None
    air.run(u, [Reply(v.nwk, 1, 1, 0x0109, 0x0800, initiate_frame[0])])
    status, wait, _ = only_terminate(air, by_server=True)
    assert status == NO_RESOURCES and 1 <= wait <= 10 + 10  # margin + U's generate time
    assert v.core.busy(IEEE_A) and v.failed == []  # the first exchange goes on


def test_max_sessions_no_resources_then_retry_after_the_wait_time():
    v = node("V", IEEE_B, 0x0000, (2,), max_sessions=1)
    a = node("A", IEEE_A, 0x4A01, (2,))
    c = node("C", IEEE_C, 0x4C03, (2,))

    def stall_a(sent):  # A's exchange stalls after its Initiate
        if sent.src is a and sent.cluster_specific and sent.command == 0x01:
            return None
        return sent.data

    air = Air(v, a, c, tamper=stall_a)
    air.initiate(a, v, suite=2)
    air.initiate(c, v, suite=2)
    status, wait, _ = terminate_fields(air.terminates()[0])
    assert status == NO_RESOURCES and wait >= 1
    assert c.failed == [] and c.core.busy(IEEE_B)  # C backs off, it has not given up
    air.advance(wait - 0.5)
    assert len(air.cluster_commands(0x00, to_server=True)) == 2  # not yet
    air.advance(1)  # V's exchange with A has timed out and C's wait is over
    assert [f.reason for f in v.failed] == ["timed out waiting for EphemeralDataRequest"]
    assert len(c.established) == 1 and len(v.established) == 1
    assert v.established[0].partner_ieee == IEEE_C


def test_initiator_waits_the_advertised_generate_time_then_retries():
    v = node("V", IEEE_B, 0x0000, (2,), ephemeral_data_generate_time=40)
    u = node("U", IEEE_A, 0x4A01, (2,), margin=10, retries=1, retry_delay=3)
    dropped: list[Sent] = []

    def drop_first_qev(sent):
        if sent.src is v and sent.cluster_specific and sent.command == 0x01 and not dropped:
            dropped.append(sent)
            return None
        return sent.data

    air = Air(u, v, tamper=drop_first_qev)
    air.initiate(u, v, suite=2)
    (init_rsp,) = air.cluster_commands(0x00, to_server=False)
    assert init_rsp.payload[2] == 40  # V's ephemeral data generate time, on the air
    sent_before = len(air.sent)
    air.advance(49)  # 10 s margin + 40 s advertised: U still waits
    assert len(air.sent) == sent_before and u.failed == [] and u.core.busy(IEEE_B)
    air.advance(2)  # past it: U gives this attempt up, tries again retry_delay later
    assert len(air.sent) == sent_before
    air.advance(3)
    assert len(air.cluster_commands(0x00, to_server=True)) == 2  # a new Initiate
    assert len(u.established) == len(v.established) == 1 and u.failed == []
    assert [f.reason for f in v.failed] == ["timed out waiting for ConfirmKeyDataRequest"]


def test_retries_exhausted_ends_in_failure():
    v = node("V", IEEE_B, 0x0000, (2,))
    u = node("U", IEEE_A, 0x4A01, (2,), margin=5, retries=2, retry_delay=1)
    air = Air(u, v, tamper=lambda sent: None if sent.src is v else sent.data)  # V is mute
    air.initiate(u, v)
    for _ in range(3):
        air.advance(6)
        air.advance(1)
    reads = [s for s in air.sent if s.src is u and not s.cluster_specific]
    assert len(reads) == 3  # the first try and two retries
    assert [(f.status, f.reason) for f in u.failed] == [
        (None, "timed out reading the partner's suites")]
    assert u.core.exchanges == 0 and u.core.next_deadline() is None


def test_responder_forgets_a_silent_initiator():
    v = node("V", IEEE_B, 0x0000, (2,), margin=10)
    u = node("U", IEEE_A, 0x4A01, (2,), confirm_key_generate_time=20)

    def stop_after_ephemeral(sent):
        if sent.src is u and sent.cluster_specific and sent.command == 0x02:
            return None
        return sent.data

    air = Air(u, v, tamper=stop_after_ephemeral)
    air.initiate(u, v, suite=2)
    assert v.core.busy(IEEE_A)
    assert v.core.next_deadline() == pytest.approx(air.now + 30)  # margin + U's confirm time
    air.advance(29)
    assert v.core.busy(IEEE_A)
    air.advance(2)
    assert not v.core.busy(IEEE_A)
    assert [(f.status, f.initiator) for f in v.failed] == [(None, False)]
    assert_no_key(u, v)


def test_partner_terminate_ends_the_exchange():
    from sep.zcl.frames import Reply

    u, v = node("U", IEEE_A, 0x4A01, (2,)), node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v, tamper=lambda s: None if s.cluster_specific and s.command == 0x01 else s.data)
    air.initiate(u, v)
    assert v.core.busy(IEEE_A)
    # U gives up: Terminate BAD_MESSAGE (client to server, default response wanted)
    air.tamper = None
    air.run(u, [Reply(v.nwk, 1, 1, 0x0109, 0x0800, bytes([0x01, 0x77, 0x03, 0x03, 0x05, 0x02, 0x00]))])
    assert not v.core.busy(IEEE_A)
    assert [(f.status, f.by_partner) for f in v.failed] == [(KeStatus.BAD_MESSAGE, True)]
    assert air.sent[-1].data == bytes([0x18, 0x77, 0x0B, 0x03, 0x00])  # Default Response SUCCESS


def test_credentials_must_name_this_node():
    with pytest.raises(ValueError, match="not this node"):
        KeyEstablishment([creds(2, IEEE_A)], endpoint=1, own_ieee=IEEE_B)
    with pytest.raises(ValueError, match="two sets"):
        KeyEstablishment([creds(2, IEEE_A), creds(2, IEEE_A)], endpoint=1)
    with pytest.raises(ValueError, match="at least one"):
        KeyEstablishment([], endpoint=1)


def test_an_internal_error_ends_the_exchange_with_no_resources():
    def broken(fn, *args, **kwargs):
        if fn.__name__ == "derive":
            raise RuntimeError("maths backend gone")
        return fn(*args, **kwargs)

    u = node("U", IEEE_A, 0x4A01, (2,))
    v = node("V", IEEE_B, 0x0000, (2,), compute=broken)
    air = Air(u, v)
    air.initiate(u, v)
    assert only_terminate(air, by_server=True)[0] == NO_RESOURCES
    assert [f.reason for f in v.failed] == ["internal error"]
    assert v.core.exchanges == 0
    assert_no_key(u, v)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.tuples(
    st.integers(0, 3),  # source node
    st.sampled_from([0x01, 0x09, 0x19, 0x11, 0x05, 0x00, 0x08, 0x18]),  # frame control
    st.integers(0, 5),  # command id
    st.one_of(st.binary(max_size=90),
              st.builds(lambda n, b: n.to_bytes(2, "little") + b, st.integers(0, 3),
                        st.binary(min_size=50, max_size=80))),
), max_size=12))
def test_arbitrary_frames_never_raise_and_state_stays_bounded(frames):
    from sep.zcl.frames import Reply

    v = node("V", IEEE_B, 0x0000, (1,), max_sessions=2)
    senders = [node(f"S{i}", 0x000D6F0000000100 + i, 0x0100 + i, (1,)) for i in range(4)]
    air = Air(v, *senders)
    for src, fc, cmd, payload in frames:
        head = bytes([fc, 0x33]) + (b"\x34\x12" if fc & 0x04 else b"") + bytes([cmd])
        air.run(senders[src], [Reply(v.nwk, 1, 1, 0x0109, 0x0800, head + payload)])
        assert v.core.exchanges <= 2
    assert v.established == [] and all(s.established == [] for s in senders)
    for sent in air.sent:
        if sent.src is v and sent.cluster_specific and sent.command == 0x03:
            assert 1 <= terminate_fields(sent)[0] <= 6


def test_the_client_side_attribute_answers_a_server_read():
    from sep.zcl.frames import Reply

    u, v = node("U", IEEE_A, 0x4A01, (1, 2)), node("V", IEEE_B, 0x0000, (2,))
    air = Air(u, v)
    # V (a server) reads U's client KeyEstablishmentSuite: a server-to-client Read Attributes
    air.run(v, [Reply(u.nwk, 1, 1, 0x0109, 0x0800, bytes([0x18, 0x21, 0x00, 0x00, 0x00]))])
    answer = air.sent[-1]
    assert answer.src is u and answer.data[:3] == bytes([0x10, 0x21, 0x01])  # client to server
    assert answer.payload == bytes([0x00, 0x00, 0x00, 0x31, 0x03, 0x00])  # enum16 0x0003
