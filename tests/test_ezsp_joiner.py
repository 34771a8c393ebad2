"""The SMETS2 topology on the real host path: the meter on an EZSP stick joins the hub.

The comms hub is coordinator and trust centre (hubsim, on the virtual air); the meter is
``sep.app.MeterApp`` on unmodified bellows (``radios.ezsp_join.EzspJoinerController``)
driving the NCP emulator, which joins the hub's network as a router with the meter's
install code, then runs Key Establishment with the hub through the stick (the key goes
into the stick's key table). An IHD joins the hub too, keys with the meter and reads it.

Judged from outside the code under test: tshark decodes the capture with the keys file
(Association, the Transport Key to the meter, the KE exchange, Metering answered from the
meter's router address under APS security), and the IHD reads the meter with zigpy's ZCL.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from pathlib import Path

import bellows.types as bt
import pytest
from required_tools import require_tool
from waiting import until

from hubsim.hub import CommsHub
from hubsim.ihd import InHomeDisplay
from hubsim.ke_node import DemoCa
from radios.air import VirtualAir
from radios.crypto import make_install_code
from radios.ezsp_join import JoinSettings
from radios.ncp import start_emulator
from radios.pcap import PcapWriter, tshark_key_options
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock

METER_IEEE = "00:0d:6f:00:00:00:a7:11"
HUB_IEEE = "00:0d:6f:00:00:00:00:01"
IHD_IEEE = "00:0d:6f:00:00:00:1d:11"
TSHARK = shutil.which("tshark")


def tshark(pcap: Path, flt: str, *fields: str) -> list[str]:
    require_tool("tshark")
    assert TSHARK is not None
    args = [TSHARK, "-r", str(pcap), *tshark_key_options(pcap), "-Y", flt]
    if fields:
        args += ["-T", "fields", *sum((["-e", f] for f in fields), [])]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


@contextlib.asynccontextmanager
async def smets2(tmp_path: Path, *, meter_code: bytes | None = None, ke: bool = True,
                 proxy=None):
    air = VirtualAir()
    pcap = tmp_path / "air.pcap"
    writer = PcapWriter(pcap).capture(air)
    clock = ManualClock()
    ca = DemoCa()
    codes = {METER_IEEE: make_install_code(), IHD_IEEE: make_install_code()}
    creds = (lambda ieee: (ca.credentials(ieee),)) if ke else (lambda ieee: ())
    hub = CommsHub(air=air, clock=clock.now, ieee=HUB_IEEE, install_codes=codes,
                   credentials=creds(HUB_IEEE))
    emu = await start_emulator(air, state_path=tmp_path / "ncp.json", ieee=METER_IEEE)
    join = JoinSettings.from_install_code(meter_code or codes[METER_IEEE])
    url = emu.url if proxy is None else await proxy.start(emu.port)
    meter = MeterApp(MeterSettings(radio="ezsp", device=url, endpoint=9, ieee=METER_IEEE,
                                   tick_seconds=0.05, supplier_search_interval=0.2,
                                   initial_wh=4_213_496, join=join, data_dir=tmp_path / "meter",
                                   credentials=creds(METER_IEEE), ke_processes=0),
                     clock=clock, air=air)
    ihd = InHomeDisplay(air=air, ieee=IHD_IEEE, install_code=codes[IHD_IEEE],
                        credentials=creds(IHD_IEEE))
    try:
        await hub.start()
        yield air, pcap, hub, emu, meter, ihd
    finally:
        with contextlib.suppress(Exception):
            await ihd.stop()
        with contextlib.suppress(Exception):
            await meter.stop()
        await emu.stop()
        await hub.stop()
        if proxy is not None:
            await proxy.stop()
        writer.close()


async def test_the_meter_joins_the_hub_as_a_router_keys_and_serves(tmp_path):
    async with smets2(tmp_path) as (_air, pcap, hub, emu, meter, ihd):
        async with asyncio.timeout(60):
            await meter.start()
            await meter.tc_keyed.wait()
            await until(lambda: meter.supplier.esi is not None, timeout=20)
            await ihd.start()
            await ihd.connect(timeout=30)
            ok, failed = await ihd.metering.read_attributes(["current_summ_delivered"],
                                                            allow_cache=False)
        assert not failed
        nwk = int(meter.controller.state.node_info.nwk)
        # the trust centre (the hub's own table, not the meter's) admitted it as a router
        tc_state = hub.app.node.state  # type: ignore[attr-defined]
        assert tc_state.address_map.get(nwk) == int(METER_IEEE.replace(":", ""), 16)
        assert nwk not in (0x0000, 0xFFFE)
        # what the IHD read (zigpy's ZCL parser) is the register the meter was given (Wh;
        # the manual clock stands still, so nothing was consumed since)
        assert int(ok["current_summ_delivered"]) == 4_213_496
        assert emu.node.rejoins_or_joins == ["join"]  # type: ignore[union-attr]
    meter_hex = f"0x{nwk:04x}"
    # the join on the air: an Association from the meter's IEEE, the network key to it
    assoc = tshark(pcap, "wpan.cmd == 0x01", "wpan.src64")
    assert METER_IEEE in assoc
    transport = tshark(pcap, "zbee_aps.cmd.id == 0x05 && zbee_aps.cmd.key_type == 1",
                       "zbee_aps.cmd.dst")
    assert METER_IEEE in transport, transport
    # Key Establishment between the meter's router address and the hub
    ke = tshark(pcap, f"zbee_aps.cluster == 0x0800 && zbee_nwk.src == {meter_hex}",
                "zbee_zcl.cmd.id")
    assert ke, "no Key Establishment frame from the meter"
    # Metering answered from the router address, APS-secured, opened by tshark with the
    # CBKE keys the capture's keys file lists
    served = tshark(pcap, f"zbee_nwk.src == {meter_hex} && zbee_aps.cluster == 0x0702 && "
                    "zbee_zcl.cmd.id == 0x01 && zbee_aps.security == 1")
    assert served
    assert tshark(pcap, "_ws.malformed") == []


async def test_an_emulator_restart_under_a_joined_meter_is_a_secured_rejoin(tmp_path):
    async with smets2(tmp_path) as (_air, pcap, hub, emu, meter, ihd):
        async with asyncio.timeout(90):
            await meter.start()
            await meter.tc_keyed.wait()
            nwk = int(meter.controller.state.node_info.nwk)
            ke_before = len(tshark(pcap, "zbee_aps.cluster == 0x0800"))
            await emu.restart(down_for=0.5)  # the stick power-cycles under the host
            await until(lambda: meter.controller.reconnects >= 1, timeout=60)
            await meter.controller.wait_reconnected()
            await ihd.start()
            await ihd.connect(timeout=30)
            ok, failed = await ihd.metering.read_attributes(["current_summ_delivered"],
                                                            allow_cache=False)
        assert not failed and int(ok["current_summ_delivered"]) > 0
        assert emu.node.rejoins_or_joins[-1:] == ["rejoin"]  # type: ignore[union-attr]
        assert int(meter.controller.state.node_info.nwk) == nwk
    meter_hex = f"0x{nwk:04x}"
    # on the air: one association and one network key for the meter, ever; a NWK Rejoin
    # Request (secured) from its address after the restart; no second Key Establishment
    assert tshark(pcap, "wpan.cmd == 0x01", "wpan.src64").count(METER_IEEE) == 1
    assert tshark(pcap, "zbee_aps.cmd.id == 0x05 && zbee_aps.cmd.key_type == 1",
                  "zbee_aps.cmd.dst").count(METER_IEEE) == 1
    rejoin = tshark(pcap, f"zbee_nwk.cmd.id == 0x06 && zbee_nwk.src == {meter_hex}",
                    "zbee_nwk.security")
    assert rejoin and all(s in ("1", "True") for s in rejoin), rejoin
    with_hub = tshark(pcap, f"zbee_aps.cluster == 0x0800 && ((zbee_nwk.src == {meter_hex} && "
                      f"zbee_nwk.dst == 0x0000) || (zbee_nwk.src == 0x0000 && "
                      f"zbee_nwk.dst == {meter_hex}))")
    assert len(with_hub) == ke_before, "the meter keyed with the hub again after the restart"


async def test_a_meter_with_the_wrong_install_code_is_not_admitted(tmp_path, caplog):
    wrong = make_install_code()
    async with smets2(tmp_path, meter_code=wrong, ke=False) as (_air, pcap, hub, emu, meter,
                                                                  _ihd):
        async with asyncio.timeout(60):
            await meter.start()  # a meter meters with or without its HAN: it keeps looking
        assert not emu.ncp.network_up  # type: ignore[union-attr]
        assert "could not join" in caplog.text
        # the trust centre sent the network key under the meter's real install-code key,
        # which the meter (holding another) could not open: it never had the network key
        hub_key = hub.app.node.keys.network_key()  # type: ignore[attr-defined]
        assert hub_key is not None and emu.state.network_key != hub_key.hex()
    # and it never sent a frame secured with it
    assert tshark(pcap, "zbee.sec.src64 == " + METER_IEEE) == []


async def test_the_router_survives_lost_and_damaged_ash_frames(tmp_path):
    """Wave 1's ASH fault test, for the joined role: with every 13th frame lost and every
    5th DATA frame damaged between bellows and the stick, the IHD's reads of the router
    meter still come back, in order, with no reconnection."""
    from test_ncp_bellows import LossyProxy

    proxy = LossyProxy(drop_every=13, corrupt_every=5)
    async with smets2(tmp_path, proxy=proxy) as (_air, _pcap, _hub, emu, meter, ihd):
        async with asyncio.timeout(90):
            await meter.start()
            await meter.tc_keyed.wait()
            await ihd.start()
            await ihd.connect(timeout=30)
            proxy.lossy = True
            values = []
            for _ in range(6):
                ok, failed = await ihd.metering.read_attributes(["current_summ_delivered"],
                                                                allow_cache=False)
                assert not failed
                values.append(int(ok["current_summ_delivered"]))
            proxy.lossy = False
        assert values == [4_213_496] * 6  # the register the meter was given (clock still)
        assert proxy.dropped and proxy.corrupted
        assert emu.ash.stats.bad_frames > 0 and emu.ash.stats.retransmissions > 0
        assert meter.controller.reconnects == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("node_type", "status"), [
    (bt.EmberNodeType.END_DEVICE, bt.sl_Status.INVALID_PARAMETER),
    (bt.EmberNodeType.COORDINATOR, bt.sl_Status.INVALID_PARAMETER),
])
async def test_join_network_refuses_what_the_emulator_cannot_be(tmp_path, node_type, status):
    """joinNetwork as anything but a router, or on channel 0, is refused in its reply (as a
    stick answers), through bellows' own EZSP client."""
    import bellows.ezsp
    import zigpy.config as conf

    air = VirtualAir()
    emu = await start_emulator(air, state_path=tmp_path / "ncp.json")
    ezsp = bellows.ezsp.EZSP(conf.SCHEMA_DEVICE({conf.CONF_DEVICE_PATH: emu.url}))
    try:
        async with asyncio.timeout(30):
            await ezsp.connect(use_thread=False)
            params = bt.EmberNetworkParameters(
                extendedPanId=bt.ExtendedPanId.convert("00:00:00:00:00:00:00:00"), panId=0x1234,
                radioTxPower=8, radioChannel=15, joinMethod=bt.EmberJoinMethod.USE_MAC_ASSOCIATION,
                nwkManagerId=0, nwkUpdateId=0, channels=bt.Channels.from_channel_list([15]))
            (got,) = await ezsp.joinNetwork(nodeType=node_type, parameters=params)
            assert bt.sl_Status.from_ember_status(got) == status
            (got,) = await ezsp.joinNetwork(nodeType=bt.EmberNodeType.ROUTER,
                                            parameters=params.replace(radioChannel=0))
            assert bt.sl_Status.from_ember_status(got) == bt.sl_Status.INVALID_PARAMETER
            (state,) = await ezsp.networkState()
            assert state == bt.EmberNetworkStatus.NO_NETWORK
    finally:
        await ezsp.disconnect()
        await emu.stop()


async def test_a_full_key_table_ends_the_exchange_without_a_confirmation(tmp_path):
    """A stick whose key table is full refuses the next link key (importLinkKey answers
    INVALID_INDEX, as a stick does). KeService then ends that exchange as failed and sends
    no confirmation for a key the radio does not hold; the key it had is still served."""
    from radios.ezsp import NetworkSettings, make_ezsp_controller
    from sep.clusters.key_establishment import KeyEstablished
    from sep.ke.service import KeService
    from sep.zcl.frames import Reply

    air = VirtualAir()
    ca = DemoCa()
    emu = await start_emulator(air, state_path=tmp_path / "ncp.json", ieee=HUB_IEEE)
    app = make_ezsp_controller(emu.url, endpoints=[], network=NetworkSettings(
        channel=air.channel, pan_id=air.pan_id), use_thread=False, key_table_size=1)
    try:
        async with asyncio.timeout(30):
            await app.startup(auto_form=True)
            ke = KeService(app, [ca.credentials(HUB_IEEE)], endpoint=9, own_ieee=HUB_IEEE)
            first, second = 0x000D6F000000A001, 0x000D6F000000A002

            def done(partner: int) -> KeyEstablished:
                return KeyEstablished(partner_ieee=partner, partner_nwk=0x1234,
                                      link_key=bytes(range(16)), suite=2, initiator=False,
                                      partner_certificate=b"")

            confirm = Reply(dst_nwk=0x1234, dst_ep=9, src_ep=9, profile_id=0x0109,
                            cluster_id=0x0800, data=bytes([0x19, 0x07, 0x02]) + bytes(16))
            sent: list = []  # what KeService hands the radio (recorded, then sent)
            send = app.send_packet

            async def recording(packet):  # noqa: ANN001, ANN202
                sent.append(packet)
                await send(packet)

            app.send_packet = recording  # type: ignore[method-assign]
            await ke._apply([done(first), confirm])
            await ke._apply([done(second), confirm])
            await asyncio.sleep(0.3)
        assert ke.keyed(t_eui(first)) and not ke.keyed(t_eui(second))
        assert [f.partner_ieee for f in ke.failures] == [second]
        assert "did not take the link key" in ke.failures[0].reason
        # the first exchange's confirmation went out; the second's did not
        assert len(sent) == 1 and int(sent[0].cluster_id) == 0x0800
        # the stick's own table (bellows reads it back): the first key only
        keys = [k async for k in app._ezsp.read_link_keys()]  # type: ignore[union-attr]
        assert [int.from_bytes(bytes(k.partner_ieee), "little") for k in keys] == [first]
    finally:
        await app.shutdown()
        await emu.stop()


def t_eui(value: int):
    import zigpy.types as zt

    return zt.EUI64(value.to_bytes(8, "little"))
