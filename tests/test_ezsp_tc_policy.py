"""The trust-centre policy a host sets over EZSP is what the emulated stick enforces on the air.

bellows (unmodified, through ``radios.ezsp``) forms on the NCP emulator as coordinator and
trust centre with a policy — ``install_code``, ``preconfigured`` or ``closed`` — and opens
the network; separate nodes on the air try to join: the device whose install code the host
gave, a rogue with a code of its own, a device with the global key. What each got is judged
by the joiner itself (did it receive a network key it can use, did it come up) and by the
key it would need, never by the trust centre's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
import zigpy.exceptions
import zigpy.zdo.types as zdo_t

from radios.air import VirtualAir
from radios.crypto import make_install_code
from radios.ezsp import NetworkSettings, make_ezsp_controller, permit_with_install_code
from radios.ncp import start_emulator
from radios.virtual import VirtualControllerApplication, virtual_config

TC_IEEE = "00:0d:6f:00:00:00:7c:01"
GOOD_IEEE = "00:0d:6f:00:00:00:7c:02"
ROGUE_IEEE = "00:0d:6f:00:00:00:7c:03"
GLOBAL_KEY = b"ZigBeeAlliance09"
ENDPOINT = zdo_t.SimpleDescriptor(endpoint=9, profile=0x0109, device_type=0x0500,
                                  device_version=0, input_clusters=[0x0000], output_clusters=[])


@contextlib.asynccontextmanager
async def trust_centre(tmp_path: Path, policy: str):
    air = VirtualAir()
    emu = await start_emulator(air, state_path=tmp_path / "tc.json", ieee=TC_IEEE)
    app = make_ezsp_controller(emu.url, endpoints=[ENDPOINT], network=NetworkSettings(
        channel=air.channel, pan_id=air.pan_id, tc_policy=policy,
        tc_link_key=GLOBAL_KEY.hex()), use_thread=False)
    try:
        async with asyncio.timeout(30):
            await app.startup(auto_form=True)
        yield air, emu, app
    finally:
        await app.shutdown()
        await emu.stop()


async def try_join(air: VirtualAir, ieee: str, **key) -> VirtualControllerApplication:
    """A separate node on the air that tries to join; returns it (joined or not)."""
    node = VirtualControllerApplication(virtual_config(ieee, role="router", air=air,
                                                       join_attempts=1, **key))
    with contextlib.suppress(zigpy.exceptions.FormationFailure,
                             zigpy.exceptions.NetworkNotFormed):
        async with asyncio.timeout(20):
            await node.startup(auto_form=True)
    return node


def holds_network_key(node: VirtualControllerApplication, tc_emu) -> bool:
    assert node.node is not None
    key = node.node.keys.network_key()
    return key is not None and key.hex() == tc_emu.state.network_key


async def test_install_code_policy_admits_only_the_device_whose_code_the_host_gave(tmp_path):
    good, rogue = make_install_code(), make_install_code()
    async with trust_centre(tmp_path, "install_code") as (air, emu, app):
        await permit_with_install_code(app, GOOD_IEEE, good, time_s=60)
        joined = await try_join(air, GOOD_IEEE, install_code=good)
        spoof = await try_join(air, ROGUE_IEEE, install_code=rogue)
        glob = await try_join(air, "00:0d:6f:00:00:00:7c:04", link_key=GLOBAL_KEY)
        # a rogue claiming the admitted device's IEEE, with its own code
        thief = await try_join(air, GOOD_IEEE.replace("7c:02", "7c:05"), install_code=good)
        try:
            assert joined.node.joined and holds_network_key(joined, emu)
            for other in (spoof, glob):
                assert not other.node.joined and not holds_network_key(other, emu)
            # the code is bound to its IEEE: another address with the same code gets no key
            assert not thief.node.joined and not holds_network_key(thief, emu)
        finally:
            for node in (joined, spoof, glob, thief):
                await node.shutdown()


async def test_closed_policy_admits_nobody_even_with_joining_permitted(tmp_path):
    code = make_install_code()
    async with trust_centre(tmp_path, "closed") as (air, emu, app):
        # the host's own command to open the network: the stick permits joining, but its
        # trust centre decision (DEFAULT_CONFIGURATION: no joins) still refuses the key
        await app.permit(60)
        a = await try_join(air, GOOD_IEEE, install_code=code)
        b = await try_join(air, ROGUE_IEEE, link_key=GLOBAL_KEY)
        try:
            for node in (a, b):
                assert not node.node.joined and not holds_network_key(node, emu)
        finally:
            await a.shutdown()
            await b.shutdown()


async def test_preconfigured_policy_admits_the_global_key_holder_only(tmp_path):
    async with trust_centre(tmp_path, "preconfigured") as (air, emu, app):
        await app.permit(60)
        ok = await try_join(air, GOOD_IEEE, link_key=GLOBAL_KEY)
        bad = await try_join(air, ROGUE_IEEE, link_key=bytes(16))
        try:
            assert ok.node.joined and holds_network_key(ok, emu)
            assert not bad.node.joined and not holds_network_key(bad, emu)
        finally:
            await ok.shutdown()
            await bad.shutdown()


@pytest.mark.parametrize("policy", ["install_code", "closed"])
async def test_no_permit_no_join(tmp_path, policy):
    """Without the host opening the network (zigpy closes it at the end of start-up), not
    even the device whose code was given joins... until the host opens it."""
    code = make_install_code()
    async with trust_centre(tmp_path, policy) as (air, emu, app):
        early = await try_join(air, GOOD_IEEE, install_code=code)
        try:
            assert not early.node.joined and not holds_network_key(early, emu)
        finally:
            await early.shutdown()
