"""Key Establishment for hubsim's nodes (hub, IHD, PPMID, gas meter).

A node given CBKE credentials serves and uses the Key Establishment cluster (0x0800) on its
SE endpoint, takes SE frames only under a CBKE link key (the radio's ``link_kind``), and
runs KE as the initiator with the partners it talks to (the trust centre after joining; the
IHD and the PPMID also with the meter). Without credentials a node runs as on a development
network: the keys of joining and Request Key are its link keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import zigpy.types as t

from sep.ke.service import LINK_KIND, KeService
from sep.security.certs import Credentials
from sep.security.keyfiles import CAKeys, generate_ca, issue_credentials

KE_CLUSTER = 0x0800


def radio_security(credentials: Sequence[Credentials]) -> dict[str, Any]:
    """What to add to ``virtual_config`` for a node with (or without) credentials."""
    return {"link_kind": LINK_KIND} if credentials else {}


def with_ke(clusters: list[int], credentials: Sequence[Credentials]) -> list[int]:
    return [*clusters, KE_CLUSTER] if credentials and KE_CLUSTER not in clusters else clusters


def attach(app: Any, credentials: Sequence[Credentials], *, endpoint: int,
           ieee: str) -> KeService | None:
    if not credentials:
        return None
    return KeService(app, list(credentials), endpoint=endpoint, own_ieee=ieee)


def trust_centre(app: Any) -> t.EUI64:
    return app.state.network_info.tc_link_key.partner_ieee


async def key_with(ke: KeService | None, partner: t.EUI64 | str, nwk: int,
                   note: Callable[[str], Any], name: str, *, timeout: float = 120.0) -> bool:
    """A CBKE link key with ``partner`` (kept from before, or established now)."""
    if ke is None or ke.keyed(partner):
        return True
    started = time.monotonic()
    ok = await ke.establish(partner, nwk, timeout=timeout)
    if ok:
        done = ke.established.get(int.from_bytes(bytes(t.EUI64.convert(str(partner))),
                                                  "little"))
        suite = f"suite {done.suite}, " if done is not None else ""
        note(f"key establishment with the {name}: {suite}"
             f"{time.monotonic() - started:.1f} s, link key installed")
    else:
        note(f"key establishment with the {name} failed")
    return ok


async def start_keyed(ke: KeService | None, app: Any, note: Callable[[str], Any]) -> None:
    """After joining: serve Key Establishment, and key with the trust centre."""
    if ke is not None:
        ke.start()
        await key_with(ke, trust_centre(app), 0x0000, note, "trust centre")


async def find_trust_centre(ke: KeService | None, app: Any, note: Callable[[str], Any], *,
                            attempts: int = 5, delay: float = 2.0) -> bool:
    """After the missed keep-alives (SE 1.x 5.4.2.2.3.4): search for the trust centre and
    rejoin (secured) through any router of the PAN, then key with it again — the key made
    with the trust centre that went away is of no use with the one found. True when both
    were done."""
    from radios.shell import JoinFailed

    shell = getattr(app, "shell", None)
    if shell is None:
        return False  # (a stick's firmware rejoins by itself)
    for n in range(attempts):
        try:
            await shell.rejoin()
            break
        except JoinFailed as exc:
            note(f"trust centre search: {exc}")
            if n == attempts - 1:
                return False
            await asyncio.sleep(delay)
    note(f"rejoined (secured) as 0x{int(app.state.node_info.nwk):04X}")
    if ke is None:
        return True
    tc = trust_centre(app)
    app.forget_link_key(tc)
    return await key_with(ke, tc, 0x0000, note, "trust centre")


class DemoCa:
    """The demo's certificate authority: one per run (or loaded from ``--certs DIR``),
    issuing every simulated device's credentials."""

    def __init__(self, ca: CAKeys | None = None, suite: int = 2) -> None:
        self.ca = ca or generate_ca(suite)
        self._issued: dict[str, Credentials] = {}

    def credentials(self, ieee: str) -> Credentials:
        key = str(t.EUI64.convert(ieee))
        if key not in self._issued:
            subject = int.from_bytes(bytes(t.EUI64.convert(ieee)), "little")
            self._issued[key] = issue_credentials(self.ca, subject)
        return self._issued[key]
