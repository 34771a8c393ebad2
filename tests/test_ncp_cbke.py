"""CBKE on the NCP emulator, driven through unmodified bellows (ASH + EZSP over TCP).

The emulator answers the v13 CBKE commands and callbacks of an EmberZNet 7.x stick (see
``radios.ncp.cmd_cbke``); its EC maths is ``sep.security.cbke_engine``. The oracles:

- two emulated sticks, each only knowing its own credentials and what the other sends,
  must agree on both SMACs and on the link key each stores (read back through bellows);
- the published suite-1 worked example (shared/vectors: SE Annex C, Certicom test CA):
  the ephemeral public keys and MACV come out of the sticks as printed there;
- the host-side Key Establishment core (``sep.clusters.key_establishment``) as the partner
  of a stick derives the same link key;
- OpenSSL's command line signs digests (dsaVerify must accept them, and refuse them with a
  bit flipped) and verifies what dsaSign signs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bellows.types as bt
import pytest
import zigpy.config
from bellows.ezsp import EZSP
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from ke_support import (
    CBKE1,
    CURVE_NAMES,
    creds,
    need,
    openssl,
    openssl_public_key,
    the_ca,
    write_private_der,
    write_public_der,
)

from radios.air import VirtualAir
from radios.ncp import start_emulator
from radios.ncp.cmd_cbke import CbkeData
from radios.ncp.cmd_common import COMMANDS
from radios.ncp.server import NcpEmulator
from sep.clusters.key_establishment import KeyEstablished, KeyEstablishment
from sep.security.aes_mmo import aes_mmo
from sep.security.cbke_engine import SepCbkeEngine
from sep.security.certs import Credentials
from sep.security.keyfiles import credential_files
from sep.zcl.frames import Reply, Request, decode_header

E = bt.EmberStatus
IEEE_A = 0x000D6F00000CB0A1
IEEE_B = 0x000D6F00000CB0B2

# per suite: the v13 frame names and bellows' types
FRAMES = {
    1: {"generate": "generateCbkeKeys", "generated": "generateCbkeKeysHandler",
        "smacs": "calculateSmacs", "smacs_done": "calculateSmacsHandler",
        "clear": "clearTemporaryDataMaybeStoreLinkKey", "cert": "getCertificate",
        "verify": "dsaVerify", "Cert": bt.EmberCertificateData, "Key": bt.EmberPublicKeyData,
        "Sig": bt.EmberSignatureData},
    2: {"generate": "generateCbkeKeys283k1", "generated": "generateCbkeKeysHandler283k1",
        "smacs": "calculateSmacs283k1", "smacs_done": "calculateSmacsHandler283k1",
        "clear": "clearTemporaryDataMaybeStoreLinkKey283k1", "cert": "getCertificate283k1",
        "verify": "dsaVerify283k1", "Cert": bt.EmberCertificate283k1Data,
        "Key": bt.EmberPublicKey283k1Data, "Sig": bt.EmberSignature283k1Data},
}


def eui64(ieee: int) -> str:
    return str(bt.EUI64(ieee.to_bytes(8, "little")))


def token(cred: Credentials) -> CbkeData:
    return CbkeData(cred.ca_public_key, cred.certificate,
                    cred.private_key.to_bytes(cred.curve.scalar_len, "big"))


class Host:
    """bellows' EZSP object on one emulator, with its callbacks in a queue."""

    def __init__(self, emu: NcpEmulator) -> None:
        self.emu = emu
        self.ezsp = EZSP(zigpy.config.SCHEMA_DEVICE({zigpy.config.CONF_DEVICE_PATH: emu.url}))
        self.callbacks: asyncio.Queue[tuple[str, list[Any]]] = asyncio.Queue()

    async def __aenter__(self) -> Host:
        await self.ezsp.connect(use_thread=False)
        self.ezsp.add_callback(lambda name, args: self.callbacks.put_nowait((name, args)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ezsp.disconnect()

    async def call(self, name: str, **kwargs: Any) -> list[Any]:
        return await getattr(self.ezsp, name)(**kwargs)

    async def callback(self, name: str, timeout: float = 20.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while True:
                got, args = await self.callbacks.get()
                if got == name:
                    return args

    async def operation(self, command: str, handler: str, **kwargs: Any) -> list[Any]:
        """A CBKE command answered OPERATION_IN_PROGRESS, then its handler's fields."""
        (status,) = await self.call(command, **kwargs)
        assert status == E.OPERATION_IN_PROGRESS, (command, status)
        return await self.callback(handler)

    async def generate(self, suite: int) -> bytes:
        f = FRAMES[suite]
        status, public = await self.operation(f["generate"], f["generated"])
        assert status == E.SUCCESS
        return bytes(public)

    async def smacs(self, suite: int, initiator: bool, certificate: bytes,
                    ephemeral: bytes) -> tuple[Any, bytes, bytes]:
        f = FRAMES[suite]
        status, mac_u, mac_v = await self.operation(
            f["smacs"], f["smacs_done"], amInitiator=initiator,
            partnerCertificate=f["Cert"](certificate), partnerEphemeralPublicKey=f["Key"](ephemeral))
        return status, bytes(mac_u), bytes(mac_v)

    async def certificate(self, suite: int) -> tuple[Any, bytes]:
        status, cert = await self.call(FRAMES[suite]["cert"])
        return status, bytes(cert)

    async def link_key(self, ieee: int) -> bytes:
        """The key the stick holds for ``ieee``, read as bellows reads app link keys."""
        ctx = bt.SecurityManagerContextV13(
            core_key_type=bt.SecurityManagerKeyType.APP_LINK, key_index=0,
            derived_type=bt.SecurityManagerDerivedKeyTypeV13.NONE,
            eui64=bt.EUI64.convert(eui64(ieee)),
            multi_network_index=0, flags=bt.SecurityManagerContextFlags.NONE,
            psa_key_alg_permission=0)
        key, status = await self.call("exportKey", context=ctx)
        assert status == bt.sl_Status.OK, status
        return bytes(key)

    async def key_table(self) -> dict[str, bytes]:
        table = {}
        for index in range(4):
            eui, key, _meta, status = await self.call("exportLinkKeyByIndex", index=index)
            if status == bt.sl_Status.OK:
                table[str(eui)] = bytes(key)
        return table


@contextlib.asynccontextmanager
async def sticks(tmp_path: Path, *specs: tuple[str, int, dict[int, Credentials]],
                 engine: Any = None) -> AsyncIterator[list[Host]]:
    """Emulators (name, EUI-64, credentials per suite) on one air, bellows on each."""
    air = VirtualAir()
    emus: list[NcpEmulator] = []
    try:
        for name, ieee, cred in specs:
            eng = engine(name) if callable(engine) else SepCbkeEngine()
            emus.append(await start_emulator(
                air, state_path=tmp_path / f"{name}.json", ieee=eui64(ieee), cbke_engine=eng,
                cbke_data={suite: token(c) for suite, c in cred.items()}))
        async with contextlib.AsyncExitStack() as stack:
            hosts = [await stack.enter_async_context(Host(emu)) for emu in emus]
            yield hosts
    finally:
        for emu in emus:
            await emu.stop()


def both(ieee: int) -> dict[int, Credentials]:
    return {1: creds(1, ieee), 2: creds(2, ieee)}


# ----------------------------------------------------------------- two sticks, both suites


async def test_two_sticks_agree_on_smacs_and_store_the_same_link_key(tmp_path):
    async with sticks(tmp_path, ("a", IEEE_A, both(IEEE_A)), ("b", IEEE_B, both(IEEE_B))) as (
            a, b):
        keys = {}
        for suite in (1, 2):
            status, cert_a = await a.certificate(suite)
            assert status == E.SUCCESS and cert_a == creds(suite, IEEE_A).certificate
            status, cert_b = await b.certificate(suite)
            assert status == E.SUCCESS and cert_b == creds(suite, IEEE_B).certificate
            # A initiates, B responds: each computes with what the other sent
            qe_a, qe_b = await asyncio.gather(a.generate(suite), b.generate(suite))
            assert len(qe_a) == len(qe_b) == {1: 22, 2: 37}[suite] and qe_a != qe_b
            (st_a, u_a, v_a), (st_b, u_b, v_b) = await asyncio.gather(
                a.smacs(suite, True, cert_b, qe_b), b.smacs(suite, False, cert_a, qe_a))
            assert st_a == st_b == E.SUCCESS
            assert (u_a, v_a) == (u_b, v_b) and u_a != v_a and len(u_a) == 16
            # the SMACs agree: both store the key
            assert await a.call(FRAMES[suite]["clear"], storeLinkKey=True) == [E.SUCCESS]
            assert await b.call(FRAMES[suite]["clear"], storeLinkKey=True) == [E.SUCCESS]
            key_ab, key_ba = await a.link_key(IEEE_B), await b.link_key(IEEE_A)
            assert key_ab == key_ba and key_ab != bytes(16)
            assert (await a.key_table())[eui64(IEEE_B)] == key_ab
            assert (await b.key_table())[eui64(IEEE_A)] == key_ab
            keys[suite] = key_ab
        assert keys[1] != keys[2]  # suite 2's key replaced suite 1's for the same partner
        assert len(await a.key_table()) == 1
        assert a.emu.ncp.counters.invalid == b.emu.ncp.counters.invalid == 0


# ------------------------------------------------- the published worked example (suite 1)


def vector_engine(name: str) -> SepCbkeEngine:
    """The test seam: the sticks draw the worked example's ephemeral keys."""
    eph = int(CBKE1[name]["ephemeral_private_key_hex"], 16)
    return SepCbkeEngine(ephemeral_source=lambda curve: eph)


async def test_sticks_reproduce_the_published_suite1_example(tmp_path):
    """SE Annex C: device_2 initiates (U), device_1 responds (V). Both sticks are
    provisioned by the host (setPreinstalledCbkeData), not by the emulator's options."""
    dev1, dev2 = CBKE1["device_1"], CBKE1["device_2"]
    ca = bytes.fromhex(CBKE1["ca_public_key_hex"])
    async with sticks(tmp_path, ("device_1", IEEE_A, {}), ("device_2", IEEE_B, {}),
                      engine=vector_engine) as (v, u):
        for host, dev in ((v, dev1), (u, dev2)):
            assert await host.certificate(1) == (E.ERR_FATAL, b"\xff" * 48)  # no token yet
            status = await host.call(
                "setPreinstalledCbkeData", caPublic=bt.EmberPublicKeyData(ca),
                myCert=bt.EmberCertificateData(bytes.fromhex(dev["certificate_hex"])),
                myKey=bt.EmberPrivateKeyData(bytes.fromhex(dev["private_key_hex"])))
            assert status == [E.SUCCESS]
            # the stick took the certificate's subject as its EUI-64
            (eui,) = await host.call("getEui64")
            assert bytes(eui)[::-1].hex() == dev["ieee_hex"]
        qe_v, qe_u = await v.generate(1), await u.generate(1)
        assert qe_v.hex() == dev1["ephemeral_public_key_hex"]
        assert qe_u.hex() == dev2["ephemeral_public_key_hex"]
        st_u, mac_u_u, mac_v_u = await u.smacs(1, True, bytes.fromhex(dev1["certificate_hex"]),
                                               qe_v)
        st_v, mac_u_v, mac_v_v = await v.smacs(1, False, bytes.fromhex(dev2["certificate_hex"]),
                                               qe_u)
        assert st_u == st_v == E.SUCCESS
        assert mac_v_u.hex() == mac_v_v.hex() == CBKE1["macv_hex"]
        assert mac_u_u == mac_u_v
        assert await u.call("clearTemporaryDataMaybeStoreLinkKey", storeLinkKey=True) == [
            E.SUCCESS]
        assert await v.call("clearTemporaryDataMaybeStoreLinkKey", storeLinkKey=True) == [
            E.SUCCESS]
        assert (await u.link_key(1)) == (await v.link_key(2))


# ------------------------------------------------------- the host-side KE core as partner


def ke_request(command: int, payload: bytes, tsn: int, sender: int) -> Request:
    header, rest = decode_header(bytes([0x01, tsn, command]) + payload)  # cluster, to server
    return Request(src_nwk=0x4A11, src_ep=1, dst_ep=1, profile_id=0x0109,
                   cluster_id=0x0800, header=header, payload=rest, src_ieee=sender)


@pytest.mark.parametrize("suite", [1, 2])
async def test_the_host_ke_core_as_responder_derives_the_sticks_key(tmp_path, suite):
    """The stick initiates; ``sep.clusters.key_establishment`` answers as the partner would
    over the air. The core accepts the stick's MACU, and its MACV and link key are the
    stick's."""
    core = KeyEstablishment([creds(suite, IEEE_B)], endpoint=1, own_ieee=IEEE_B)
    now = 1_800_000_000.0
    async with sticks(tmp_path, ("a", IEEE_A, {suite: creds(suite, IEEE_A)})) as (a,):
        _status, cert_a = await a.certificate(suite)
        (reply,) = core.handle(ke_request(0x00, suite.to_bytes(2, "little") + bytes([5, 5])
                                          + cert_a, 1, IEEE_A), now)
        cert_b = reply.data[3 + 4:]
        assert cert_b == creds(suite, IEEE_B).certificate
        qe_u = await a.generate(suite)
        (reply,) = core.handle(ke_request(0x01, qe_u, 2, IEEE_A), now)
        qe_v = reply.data[3:]
        status, mac_u, mac_v = await a.smacs(suite, True, cert_b, qe_v)
        assert status == E.SUCCESS
        effects = core.handle(ke_request(0x02, mac_u, 3, IEEE_A), now)
        (done,) = [e for e in effects if isinstance(e, KeyEstablished)]
        (reply,) = [e for e in effects if isinstance(e, Reply)]
        assert reply.data[2] == 0x02 and reply.data[3:] == mac_v  # ConfirmKeyDataResponse
        assert await a.call(FRAMES[suite]["clear"], storeLinkKey=True) == [E.SUCCESS]
        assert await a.link_key(IEEE_B) == done.link_key


# ------------------------------------------------------------ ECDSA against OpenSSL


def openssl_signature(suite: int, d: int, digest: bytes, tmp: Path) -> bytes:
    """r ‖ s as OpenSSL signs the 16-byte digest with private key d."""
    key = tmp / "signer.der"
    write_private_der(CURVE_NAMES[suite], d, key)
    r, s = decode_dss_signature(openssl("pkeyutl", "-sign", "-inkey", str(key),
                                        "-keyform", "DER", data=digest))
    size = {1: 21, 2: 36}[suite]
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


@pytest.mark.parametrize("suite", [1, 2])
async def test_dsa_verify_takes_openssls_signatures_and_refuses_a_flipped_bit(tmp_path, suite):
    need("openssl")
    signer = creds(suite, IEEE_B)
    stranger = creds(suite, IEEE_B, issuer=b"OTHERCA1", other_ca=True)
    rng = random.Random(suite)
    digest = rng.randbytes(16)
    good = openssl_signature(suite, signer.private_key, digest, tmp_path)
    f = FRAMES[suite]

    async with sticks(tmp_path, ("a", IEEE_A, {suite: creds(suite, IEEE_A)})) as (a,):
        async def verify(dg: bytes, cert: bytes, sig: bytes) -> Any:
            (status,) = await a.operation(
                f["verify"], "dsaVerifyHandler", digest=bt.EmberMessageDigest(dg),
                signerCertificate=f["Cert"](cert), receivedSig=f["Sig"](sig))
            return status

        assert await verify(digest, signer.certificate, good) == E.SUCCESS
        bit = rng.randrange(8 * len(good))
        flipped = bytearray(good)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert await verify(digest, signer.certificate, bytes(flipped)) == \
            E.SIGNATURE_VERIFY_FAILURE
        assert await verify(bytes([digest[0] ^ 0x80]) + digest[1:], signer.certificate,
                            good) == E.SIGNATURE_VERIFY_FAILURE
        # the same subject's key, signed right, but certified by another CA
        other = openssl_signature(suite, stranger.private_key, digest, tmp_path)
        assert await verify(digest, stranger.certificate, other) == E.SIGNATURE_VERIFY_FAILURE


async def test_dsa_sign_is_verified_by_openssl(tmp_path):
    need("openssl")
    own = creds(1, IEEE_A)
    header, signed = b"\x19\x07\x04", b"report event status payload"
    async with sticks(tmp_path, ("a", IEEE_A, {1: own})) as (a,):
        status, out = await a.operation("dsaSign", "dsaSignHandler",
                                        messageContents=header + signed + bytes([len(header)]))
    out = bytes(out)
    assert status == E.SUCCESS
    assert out[:len(header + signed)] == header + signed and out[len(header + signed)] == 0x01
    sig = out[len(header + signed) + 1:]
    assert len(sig) == 42
    pub, sig_der, dg = tmp_path / "p.der", tmp_path / "s.der", tmp_path / "dg"
    write_public_der("sect163k1", openssl_public_key("sect163k1", own.private_key), pub)
    sig_der.write_bytes(encode_dss_signature(int.from_bytes(sig[:21], "big"),
                                             int.from_bytes(sig[21:], "big")))
    dg.write_bytes(aes_mmo(signed))  # the header is not signed
    done = subprocess.run([need("openssl"), "pkeyutl", "-verify", "-pubin", "-inkey", str(pub),
                           "-keyform", "DER", "-in", str(dg), "-sigfile", str(sig_der)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------- bad input


class GatedEngine(SepCbkeEngine):
    """Our engine, holding each operation until the test opens the gate (to catch the stick
    in the middle of one, whatever the machine's load)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def generate_keys(self, suite: int) -> tuple[bytes, bytes]:
        self.gate.wait(20)
        return super().generate_keys(suite)


async def test_operations_out_of_order_or_without_data_get_the_sticks_statuses(tmp_path):
    async with sticks(tmp_path, ("a", IEEE_A, {2: creds(2, IEEE_A)})) as (a,):
        # suite 1: no token on this stick
        assert await a.certificate(1) == (E.ERR_FATAL, b"\xff" * 48)
        assert await a.call("generateCbkeKeys") == [E.ERR_FATAL]
        assert await a.call("dsaSign", messageContents=b"\x00") == [E.ERR_FATAL]
        # suite 2: SMACs before keys, storing before SMACs
        cert_b = creds(2, IEEE_B).certificate
        assert await a.call("calculateSmacs283k1", amInitiator=True,
                            partnerCertificate=bt.EmberCertificate283k1Data(cert_b),
                            partnerEphemeralPublicKey=bt.EmberPublicKey283k1Data(
                                bytes(37))) == [E.INVALID_CALL]
        assert await a.call("clearTemporaryDataMaybeStoreLinkKey283k1",
                            storeLinkKey=True) == [E.INVALID_CALL]
        assert await a.call("clearTemporaryDataMaybeStoreLinkKey283k1",
                            storeLinkKey=False) == [E.ERR_FATAL]  # always, says UG100
        # a partner ephemeral key that is no curve point: the operation fails, not the stick
        await a.generate(2)
        status, mac_u, mac_v = await a.smacs(2, True, cert_b, b"\x05" + bytes(36))
        assert status == E.ERR_FATAL and mac_u == mac_v == bytes(16)
        assert await a.call("clearTemporaryDataMaybeStoreLinkKey283k1",
                            storeLinkKey=True) == [E.INVALID_CALL]
        assert a.callbacks.empty()
        assert await a.key_table() == {}
        assert a.emu.errors == 0 and a.emu.ncp.counters.invalid == 0

    async with sticks(tmp_path, ("x", IEEE_A, {1: creds(1, IEEE_A)}),
                      engine=lambda name: None) as (x,):  # a stick without the EC library
        assert await x.certificate(1) == (E.SUCCESS, creds(1, IEEE_A).certificate)
        assert await x.call("generateCbkeKeys") == [E.LIBRARY_NOT_PRESENT]
        assert await x.call("dsaSign", messageContents=b"ab\x00") == [E.LIBRARY_NOT_PRESENT]


async def test_one_ecc_operation_at_a_time_and_a_reset_drops_the_running_one(tmp_path):
    engine = GatedEngine()
    async with sticks(tmp_path, ("a", IEEE_A, both(IEEE_A)), engine=lambda name: engine) as (a,):
        assert await a.call("generateCbkeKeys283k1") == [E.OPERATION_IN_PROGRESS]
        # busy: every other ECC operation is refused, as is clearing the temporary data
        assert await a.call("generateCbkeKeys") == [E.INVALID_CALL]
        assert await a.call("dsaSign", messageContents=b"ab\x00") == [E.INVALID_CALL]
        assert await a.call("clearTemporaryDataMaybeStoreLinkKey283k1",
                            storeLinkKey=True) == [E.INVALID_CALL]
        assert await a.call("echo", data=b"still serving") == [b"still serving"]
        engine.gate.set()
        status, key = await a.callback("generateCbkeKeysHandler283k1")
        assert status == E.SUCCESS and len(bytes(key)) == 37
        assert await a.generate(1)  # free again
        engine.gate.clear()
        assert await a.call("generateCbkeKeys283k1") == [E.OPERATION_IN_PROGRESS]
    # the host went away mid-operation: a power-on, RAM lost; the late result is dropped
    emu = a.emu
    await emu.start()
    try:
        async with Host(emu) as again:
            engine.gate.set()
            await asyncio.sleep(0.3)
            assert again.callbacks.empty()
            assert await again.generate(2)  # not busy: the reset freed the engine
    finally:
        await emu.stop()


async def test_a_certificate_from_another_ca_gives_smacs_the_partner_cannot_match(tmp_path):
    """The stick cannot tell a foreign CA's certificate from ours (ECQV reconstructs some
    point either way): its SMACs differ from the partner's, the host sees the mismatch and
    discards the key (ERR_FATAL, nothing stored)."""
    stranger = creds(2, IEEE_B, issuer=b"OTHERCA1", other_ca=True)
    async with sticks(tmp_path, ("a", IEEE_A, {2: creds(2, IEEE_A)}),
                      ("b", IEEE_B, {2: stranger})) as (a, b):
        qe_a, qe_b = await a.generate(2), await b.generate(2)
        st_a, u_a, v_a = await a.smacs(2, True, stranger.certificate, qe_b)
        st_b, u_b, v_b = await b.smacs(2, False, creds(2, IEEE_A).certificate, qe_a)
        assert st_a == st_b == E.SUCCESS
        assert u_a != u_b and v_a != v_b
        for host in (a, b):
            assert await host.call("clearTemporaryDataMaybeStoreLinkKey283k1",
                                   storeLinkKey=False) == [E.ERR_FATAL]
            assert await host.key_table() == {}


async def test_truncated_cbke_frames_are_invalid_commands_and_the_stick_serves_on(tmp_path):
    from test_ncp_ezsp import RawHost, cmd

    from radios.ncp.ezsp import decode_frame

    async with contextlib.AsyncExitStack() as stack:
        air = VirtualAir()
        emu = await start_emulator(air, ieee=eui64(IEEE_A), cbke_engine=SepCbkeEngine(),
                                   cbke_data={2: token(creds(2, IEEE_A))})
        stack.push_async_callback(emu.stop)
        reader, writer = await asyncio.open_connection(emu.host, emu.port)
        host = RawHost(reader, writer)
        await host.frame()  # RSTACK
        host.send(cmd(1, "version", desiredProtocolVersion=13))
        await host.data()
        whole = cmd(2, "calculateSmacs283k1", amInitiator=True,
                    partnerCertificate=bt.EmberCertificate283k1Data(bytes(74)),
                    partnerEphemeralPublicKey=bt.EmberPublicKey283k1Data(bytes(37)))
        for seq, frame in enumerate((whole[:-1], whole[:20], cmd(0, "setPreinstalledCbkeData",
                                     caPublic=bt.EmberPublicKeyData(bytes(22)),
                                     myCert=bt.EmberCertificateData(bytes(48)),
                                     myKey=bt.EmberPrivateKeyData(bytes(21)))[:-3]), 3):
            host.send(bytes([seq]) + frame[1:])
            rsp = decode_frame(await host.data())
            assert rsp.frame_id == COMMANDS["invalidCommand"][0]
            assert rsp.params == bytes([bt.EzspStatus.ERROR_INVALID_VALUE])
        writer.close()
        await asyncio.sleep(0.05)
        async with Host(emu) as a:
            assert await a.generate(2)
            assert await a.certificate(2) == (E.SUCCESS, creds(2, IEEE_A).certificate)
        assert emu.errors == 0 and emu.ncp.counters.invalid == 3


def test_preinstalling_for_another_eui64_follows_the_api_reference():
    """setPreinstalledCbkeData for another EUI-64: INVALID_CALL while the network is up,
    BAD_ARGUMENT once a custom EUI-64 is written; a second write is inhibited."""
    from test_ncp_ezsp import Radio, answer, cmd

    from radios.ncp.ezsp import EzspNcp
    from radios.ncp.state import NcpState

    def preinstall(ncp: EzspNcp, seq: int, cred: Credentials) -> Any:
        ncp.handle(cmd(seq, "setPreinstalledCbkeData",
                       caPublic=bt.EmberPublicKeyData(cred.ca_public_key),
                       myCert=bt.EmberCertificateData(cred.certificate),
                       myKey=bt.EmberPrivateKeyData(cred.private_key.to_bytes(21, "big"))))
        return answer(ncp)[2]["status"]

    ncp = EzspNcp(NcpState(eui64=eui64(IEEE_A)), Radio(), on_persist=lambda: None)
    ncp.handle(cmd(1, "version", desiredProtocolVersion=13))
    ncp.take()
    ncp.network_up = True
    assert preinstall(ncp, 2, creds(1, IEEE_B)) == E.INVALID_CALL
    assert preinstall(ncp, 3, creds(1, IEEE_A)) == E.SUCCESS  # our own EUI-64: any time
    assert preinstall(ncp, 4, creds(1, IEEE_A)) == E.ERR_FLASH_WRITE_INHIBITED
    ncp.network_up = False
    ncp.state.restored_eui64 = eui64(0x000D6F0000000C03)
    ncp.handle(cmd(5, "setValue", valueId=bt.EzspValueId.VALUE_CERTIFICATE_283K1,
                   value=creds(2, IEEE_B).certificate))
    assert answer(ncp)[2]["status"] == bt.sl_Status.OK
    ncp.handle(cmd(6, "savePreinstalledCbkeData283k1"))
    assert answer(ncp)[2]["status"] == E.ERR_FATAL  # the CA key and private key are missing
    for seq, (vid, value) in enumerate(((bt.EzspValueId.VALUE_PUBLIC_KEY_283K1,
                                         creds(2, IEEE_B).ca_public_key),
                                        (bt.EzspValueId.VALUE_PRIVATE_KEY_283K1, bytes(35))), 7):
        ncp.handle(cmd(seq, "setValue", valueId=vid, value=value))
        answer(ncp)
    ncp.handle(cmd(9, "savePreinstalledCbkeData283k1"))
    assert answer(ncp)[2]["status"] == E.BAD_ARGUMENT  # a 35-byte private key
    ncp.handle(cmd(10, "setValue", valueId=bt.EzspValueId.VALUE_PRIVATE_KEY_283K1,
                   value=bytes(36)))
    answer(ncp)
    ncp.handle(cmd(11, "savePreinstalledCbkeData283k1"))
    assert answer(ncp)[2]["status"] == E.BAD_ARGUMENT  # a custom EUI-64 is already written
    assert "mfg_cbke_283k1_data" not in ncp.state.tokens


# --------------------------------------------------------------------------- persistence


async def test_preinstalled_data_survives_a_restart_and_a_factory_reset(tmp_path):
    one, two = creds(1, IEEE_A), creds(2, IEEE_A)
    state = tmp_path / "a.json"
    air = VirtualAir()
    emu = await start_emulator(air, state_path=state, cbke_engine=SepCbkeEngine())
    try:
        async with Host(emu) as a:
            assert await a.call(
                "setPreinstalledCbkeData", caPublic=bt.EmberPublicKeyData(one.ca_public_key),
                myCert=bt.EmberCertificateData(one.certificate),
                myKey=bt.EmberPrivateKeyData(one.private_key.to_bytes(21, "big"))) == [
                    E.SUCCESS]
            vid = bt.EzspValueId
            for value_id, value in ((vid.VALUE_CERTIFICATE_283K1, two.certificate),
                                    (vid.VALUE_PUBLIC_KEY_283K1, two.ca_public_key),
                                    (vid.VALUE_PRIVATE_KEY_283K1,
                                     two.private_key.to_bytes(36, "big"))):
                assert await a.call("setValue", valueId=value_id, value=value) == [
                    bt.sl_Status.OK]
            assert await a.call("savePreinstalledCbkeData283k1") == [E.SUCCESS]
    finally:
        await emu.stop()

    # another emulator process: only the state file carries the stick's tokens over
    emu = await start_emulator(air, state_path=state, cbke_engine=SepCbkeEngine())
    try:
        async with Host(emu) as a:
            (eui,) = await a.call("getEui64")
            assert str(eui) == eui64(IEEE_A)  # the certificates' subject
            assert await a.certificate(1) == (E.SUCCESS, one.certificate)
            assert await a.certificate(2) == (E.SUCCESS, two.certificate)
            assert await a.call("savePreinstalledCbkeData283k1") == [E.ERR_FATAL]  # RAM gone
            await a.call("tokenFactoryReset", excludeOutgoingFC=False, excludeBootCounter=False)
            assert await a.certificate(2) == (E.SUCCESS, two.certificate)
            # and the restored private key works: the host-side KE core accepts the stick
            core = KeyEstablishment([creds(2, IEEE_B)], endpoint=1)
            core.handle(ke_request(0x00, (2).to_bytes(2, "little") + bytes([5, 5])
                                   + two.certificate, 1, IEEE_A), 0.0)
            qe_u = await a.generate(2)
            (reply,) = core.handle(ke_request(0x01, qe_u, 2, IEEE_A), 0.0)
            _st, mac_u, _mac_v = await a.smacs(2, True, creds(2, IEEE_B).certificate,
                                               reply.data[3:])
            effects = core.handle(ke_request(0x02, mac_u, 3, IEEE_A), 0.0)
            assert any(isinstance(e, KeyEstablished) for e in effects), effects
    finally:
        await emu.stop()


# ---------------------------------------------------------------------- the command line


async def test_sep_ncp_emulator_cert_provisions_both_suites(tmp_path):
    dirs = []
    for suite in (1, 2):
        files = credential_files(creds(suite, IEEE_A), the_ca(suite, b"SEPTEST1"))
        directory = tmp_path / f"suite{suite}"
        directory.mkdir()
        for name, (content, _mode) in files.items():
            (directory / name).write_bytes(content)
        dirs += ["--cert", str(directory)]
    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sep.cli", "ncp-emulator", "--listen", "127.0.0.1:0", *dirs,
        "--ieee", eui64(IEEE_B), "--duration", "5", stderr=asyncio.subprocess.PIPE)
    _out, err = await bad.communicate()
    assert bad.returncode == 2 and b"the certificate is for" in err, err

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sep.cli", "ncp-emulator", "--listen", "127.0.0.1:0", *dirs,
        "--state", str(tmp_path / "ncp.json"), "--duration", "30",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(10):
            first = (await proc.stdout.readline()).decode()
        match = re.search(r"NCP emulator (\S+) .* on (socket://127\.0\.0\.1:\d+)", first)
        assert match and match[1] == eui64(IEEE_A), first
        ezsp = EZSP(zigpy.config.SCHEMA_DEVICE({zigpy.config.CONF_DEVICE_PATH: match[2]}))
        await ezsp.connect(use_thread=False)
        try:
            assert await ezsp.getCertificate() == [E.SUCCESS, bt.EmberCertificateData(
                creds(1, IEEE_A).certificate)]
            assert await ezsp.getCertificate283k1() == [E.SUCCESS,
                                                        bt.EmberCertificate283k1Data(
                                                            creds(2, IEEE_A).certificate)]
            assert await ezsp.generateCbkeKeys283k1() == [E.OPERATION_IN_PROGRESS]
        finally:
            await ezsp.disconnect()
        proc.terminate()
        async with asyncio.timeout(15):
            await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0


def test_sans_io_exchange_tells_the_radio_of_the_stored_key():
    """The EZSP layer alone (no loop: the maths runs inline): the handler follows the
    response, and storing the key calls the radio's ``link_key_imported(ieee, key)`` hook,
    by which the node secures its APS frames with that partner."""
    from test_ncp_ezsp import Radio, cmd

    from radios.ncp.ezsp import EzspNcp, decode_frame
    from radios.ncp.state import NcpState

    class KeyedRadio(Radio):
        def __init__(self) -> None:
            super().__init__()
            self.imported: list[tuple[str, bytes]] = []

        def link_key_imported(self, ieee: str, key: bytes) -> None:
            self.imported.append((ieee, key))

    def stick(ieee: int) -> EzspNcp:
        ncp = EzspNcp(NcpState(eui64=eui64(ieee)), KeyedRadio(), on_persist=lambda: None)
        ncp.cbke_attach(SepCbkeEngine())
        ncp.cbke_provision(1, token(creds(1, ieee)))
        ncp.handle(cmd(1, "version", desiredProtocolVersion=13))
        ncp.take()
        return ncp

    def run(ncp: EzspNcp, seq: int, name: str, **kwargs: Any) -> dict[str, Any]:
        """The command's response (OPERATION_IN_PROGRESS), then its callback's fields."""
        ncp.handle(cmd(seq, name, **kwargs))
        response, callback = (decode_frame(f) for f in ncp.take())
        assert response.frame_id == COMMANDS[name][0] and response.params == bytes(
            [E.OPERATION_IN_PROGRESS])
        assert callback.control & 0x10 and callback.seq == seq  # an asynchronous callback
        handler = {"generateCbkeKeys": "generateCbkeKeysHandler",
                   "calculateSmacs": "calculateSmacsHandler"}[name]
        assert callback.frame_id == COMMANDS[handler][0]
        fields, _ = bt.deserialize_dict(callback.params, COMMANDS[handler][2])
        assert fields["status"] == E.SUCCESS
        return fields

    a, b = stick(IEEE_A), stick(IEEE_B)
    qe_a = run(a, 2, "generateCbkeKeys")["ephemeralPublicKey"]
    qe_b = run(b, 2, "generateCbkeKeys")["ephemeralPublicKey"]
    got_a = run(a, 3, "calculateSmacs", amInitiator=True,
                partnerCertificate=bt.EmberCertificateData(creds(1, IEEE_B).certificate),
                partnerEphemeralPublicKey=qe_b)
    got_b = run(b, 3, "calculateSmacs", amInitiator=False,
                partnerCertificate=bt.EmberCertificateData(creds(1, IEEE_A).certificate),
                partnerEphemeralPublicKey=qe_a)
    assert got_a["initiatorSmac"] == got_b["initiatorSmac"]
    for ncp in (a, b):
        ncp.handle(cmd(4, "clearTemporaryDataMaybeStoreLinkKey", storeLinkKey=True))
        assert decode_frame(ncp.take()[0]).params == bytes([E.SUCCESS])
    ((ieee_b, key_ab),), ((ieee_a, key_ba),) = a.radio.imported, b.radio.imported
    assert (ieee_b, ieee_a) == (eui64(IEEE_B), eui64(IEEE_A)) and key_ab == key_ba
    assert a.state.link_keys[0].ieee == eui64(IEEE_B) and a.state.link_keys[0].key == key_ab.hex()
