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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bellows.types as bt
import zigpy.config
from bellows.ezsp import EZSP
from ke_support import creds

from radios.air import VirtualAir
from radios.ncp import start_emulator
from radios.ncp.cmd_cbke import CbkeData
from radios.ncp.server import NcpEmulator
from sep.security.cbke_engine import SepCbkeEngine
from sep.security.certs import Credentials

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
