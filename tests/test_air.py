"""The virtual air: delivery by the MAC header, channels and PANs, APS ACKs, the air-time
model and the UDP medium."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest
import zigpy.exceptions
import zigpy.types as t

from radios import mac
from radios.air import AirTimeModel, VirtualAir, destination
from radios.rawnode import RawNode
from radios.udp import connect_udp, decode, encode, serve_udp
from radios.virtual import VirtualControllerApplication, virtual_config


def mpdu(src: int, dst: int, pan: int = 0x1A62, payload: bytes = b"\x00" * 20) -> bytes:
    return mac.data_frame(1, pan, src, dst, payload).encode()


async def test_unicast_reaches_only_its_node_and_broadcast_reaches_all_others():
    air = VirtualAir()
    got: dict[int, list[bytes]] = {1: [], 2: [], 3: []}
    ports = {n: air.attach(0x100 + n, got[n].append, pan_id=0x1A62, nwk=n) for n in got}
    assert await ports[1].transmit(mpdu(1, 2))
    assert not await ports[1].transmit(mpdu(1, 9))  # nobody there: no MAC ACK
    assert not await ports[1].transmit(mpdu(1, 2, pan=0x7777))  # another PAN: nobody
    assert await ports[1].transmit(mpdu(1, 0xFFFF))
    await asyncio.sleep(0)
    assert [destination(f).short for f in got[2]] == [2, 0xFFFF]
    assert [destination(f).short for f in got[3]] == [0xFFFF]
    assert got[1] == []  # a node does not hear itself


async def test_a_node_on_another_channel_hears_nothing():
    air = VirtualAir(channel=15)
    heard: list[bytes] = []
    here = air.attach(1, lambda f: None, pan_id=0x1A62, nwk=1)
    air.attach(2, heard.append, channel=20, pan_id=0x1A62, nwk=2)
    assert not await here.transmit(mpdu(1, 2))
    await here.transmit(mpdu(1, 0xFFFF))
    await asyncio.sleep(0)
    assert heard == []


async def test_association_response_reaches_the_joiner_by_its_ieee():
    air = VirtualAir()
    got: list[bytes] = []
    parent = air.attach(0xAA, lambda f: None, pan_id=0x1A62, nwk=0)
    air.attach(0x000D6F00000000BB, got.append)  # not joined: no PAN, no short address
    rsp = mac.association_response(5, 0x1A62, 0xAA, 0x000D6F00000000BB, 0x1234,
                                   mac.AssociationStatus.SUCCESS).encode()
    assert await parent.transmit(rsp)
    await asyncio.sleep(0)
    assert got == [rsp]


def test_air_time_model_uses_the_802154_numbers():
    # 2.4 GHz O-QPSK: 32 us per byte; 6 bytes PHY overhead; mean backoff 3.5 x 320 us;
    # CCA 8 symbols (128 us); turnaround 12 symbols (192 us); 5-byte ACK MPDU; LIFS 40 symbols.
    model = AirTimeModel()
    unicast = 3.5 * 320 + 128 + (50 + 6) * 32 + 192 + (5 + 6) * 32 + 640
    broadcast = 3.5 * 320 + 128 + (50 + 6) * 32 + 640
    assert model.frame_seconds(50, unicast=True) == pytest.approx(unicast / 1e6)
    assert model.frame_seconds(50, unicast=False) == pytest.approx(broadcast / 1e6)


async def test_air_time_model_serialises_the_channel():
    model = AirTimeModel()
    air = VirtualAir(air_time=model)
    a = air.attach(1, lambda f: None, pan_id=0x1A62, nwk=1)
    air.attach(2, lambda f: None, pan_id=0x1A62, nwk=2)
    n = 40
    frame = mpdu(1, 2)
    start = time.perf_counter()
    await asyncio.gather(*(a.transmit(frame) for _ in range(n)))
    elapsed = time.perf_counter() - start
    one = model.frame_seconds(len(frame) + 2, unicast=True)  # + FCS
    assert elapsed >= n * one * 0.95


async def test_zigpy_app_gets_delivery_errors_and_aps_acks():
    air = VirtualAir()
    a = VirtualControllerApplication(virtual_config("00:0d:6f:00:00:00:00:01", role="coordinator",
                                                    air=air))
    await a.startup()
    # a member of the network whose stack never answers (no APS ACKs)
    mute = await RawNode.joined(air, 0x000D6F0000002222)
    mute.shell.on_data = lambda ind: None
    mute.node.receive = lambda mpdu: None  # type: ignore[method-assign]
    pkt = t.ZigbeePacket(
        src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=0),
        src_ep=1, dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0x3333)),
        dst_ep=1, tsn=1, profile_id=0x0104, cluster_id=0x0006,
        data=t.SerializableBytes(b"\x00\x01\x00\x00\x00"), tx_options=t.TransmitOptions.ACK)
    try:
        with pytest.raises(zigpy.exceptions.DeliveryError, match="MAC"):
            await a.send_packet(pkt)  # nobody at 0x3333
        import radios.shell as shell

        old, shell.APS_ACK_TIMEOUT = shell.APS_ACK_TIMEOUT, 0.2
        try:
            with pytest.raises(zigpy.exceptions.DeliveryError, match="APS ACK"):
                await a.send_packet(pkt.replace(
                    dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(mute.nwk))))
        finally:
            shell.APS_ACK_TIMEOUT = old
    finally:
        await mute.stop()
        await a.shutdown()


def test_udp_codec_round_trip_and_rejects_garbage():
    frame = mpdu(1, 2, payload=bytes(range(40)))
    assert decode(encode(frame, 15)) == (frame, 15)
    assert decode(b"") is None and decode(b"AIR2\x00") is None and decode(b"junkjunkjunk") is None
    assert decode(b"AIR1" + struct.pack("<B", 15) + frame) is None  # the old format


async def test_udp_medium_links_two_airs():
    host_air, client_air = VirtualAir(), VirtualAir()
    server = await serve_udp(host_air, "127.0.0.1", 0)
    link = await connect_udp(client_air, "127.0.0.1", server.port)
    on_host: list[bytes] = []
    on_client: list[bytes] = []
    h = host_air.attach(1, on_host.append, pan_id=0x1A62, nwk=1)
    c = client_air.attach(2, on_client.append, pan_id=0x1A62, nwk=2)
    await asyncio.sleep(0.1)  # the client's hello
    await c.transmit(mpdu(2, 1))
    await h.transmit(mpdu(1, 2))
    for _ in range(100):
        if on_host and on_client:
            break
        await asyncio.sleep(0.01)
    assert on_host == [mpdu(2, 1)] and on_client == [mpdu(1, 2)]
    link.close()
    server.close()
