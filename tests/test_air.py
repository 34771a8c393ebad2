"""The virtual air: delivery, APS ACKs, the air-time model and the UDP medium."""

from __future__ import annotations

import asyncio
import time

import pytest
import zigpy.exceptions
import zigpy.types as t

from radios.air import AirTimeModel, VirtualAir
from radios.frames import AirFrame, ApsKind
from radios.udp import connect_udp, decode, encode, serve_udp
from radios.virtual import VirtualControllerApplication, virtual_config


def frame(src: int, dst: int, payload: bytes = b"\x00\x01\x00\x00\x00", **kw) -> AirFrame:
    return AirFrame(kind=ApsKind.DATA, pan_id=0x1A62, src_nwk=src, dst_nwk=dst, src_ieee=src,
                    profile_id=0x0109, cluster_id=0x0702, src_ep=1, dst_ep=1, aps_counter=1,
                    payload=payload, **kw)


async def test_unicast_reaches_only_its_node_and_broadcast_reaches_all_others():
    air = VirtualAir()
    got: dict[int, list[AirFrame]] = {1: [], 2: [], 3: []}
    ports = {n: air.attach(n, n, got[n].append) for n in got}
    assert await ports[1].transmit(frame(1, 2))
    assert not await ports[1].transmit(frame(1, 9))  # nobody there: no MAC ACK
    assert await ports[1].transmit(frame(1, 0xFFFD))
    await asyncio.sleep(0)
    assert [f.dst_nwk for f in got[2]] == [2, 0xFFFD]
    assert [f.dst_nwk for f in got[3]] == [0xFFFD]
    assert got[1] == []  # a node does not hear itself
    assert got[2][0].mac_seq == 1 and got[2][1].mac_seq == 3  # the sender stamps sequences


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
    a = air.attach(1, 1, lambda f: None)
    air.attach(2, 2, lambda f: None)
    n = 40
    start = time.perf_counter()
    await asyncio.gather(*(a.transmit(frame(1, 2)) for _ in range(n)))
    elapsed = time.perf_counter() - start
    one = model.frame_seconds(16 + 11 + 8 + 5, unicast=True)
    assert elapsed >= n * one * 0.95


async def test_zigpy_app_gets_delivery_errors_and_aps_acks():
    air = VirtualAir()
    a = VirtualControllerApplication(virtual_config("00:0d:6f:00:00:00:00:01", role="coordinator",
                                                    air=air))
    await a.startup()
    b_frames: list[AirFrame] = []
    air.attach(0x2222, 0x2222, b_frames.append)
    pkt = t.ZigbeePacket(
        src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=0),
        src_ep=1, dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0x3333)),
        dst_ep=1, tsn=1, profile_id=0x0109, cluster_id=0x0702,
        data=t.SerializableBytes(b"\x00\x01\x00\x00\x00"), tx_options=t.TransmitOptions.ACK)
    with pytest.raises(zigpy.exceptions.DeliveryError):
        await a.send_packet(pkt)  # nobody at 0x3333
    # 0x2222 is on the air but its stack never sends APS ACKs: the sender must time out.
    import radios.virtual as rv
    old, rv.APS_ACK_TIMEOUT = rv.APS_ACK_TIMEOUT, 0.2
    try:
        with pytest.raises(zigpy.exceptions.DeliveryError, match="APS ACK"):
            await a.send_packet(pkt.replace(
                dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0x2222))))
    finally:
        rv.APS_ACK_TIMEOUT = old
    assert b_frames and b_frames[0].ack_request
    await a.shutdown()


def test_udp_codec_round_trip_and_rejects_garbage():
    f = frame(1, 2, payload=bytes(range(40)), ack_request=True, radius=7)
    assert decode(encode(f)) == f
    assert decode(b"") is None and decode(b"AIR1\x00") is None and decode(b"junkjunkjunk") is None
    bad_kind = bytearray(encode(f))
    bad_kind[4] = 9
    assert decode(bytes(bad_kind)) is None


async def test_udp_medium_links_two_airs():
    host_air, client_air = VirtualAir(), VirtualAir()
    server = await serve_udp(host_air, "127.0.0.1", 0)
    link = await connect_udp(client_air, "127.0.0.1", server.port)
    on_host: list[AirFrame] = []
    on_client: list[AirFrame] = []
    h = host_air.attach(1, 1, on_host.append)
    c = client_air.attach(2, 2, on_client.append)
    await asyncio.sleep(0.1)  # the client's hello
    await c.transmit(frame(2, 1))
    await h.transmit(frame(1, 2))
    for _ in range(100):
        if on_host and on_client:
            break
        await asyncio.sleep(0.01)
    assert on_host[0].src_nwk == 2 and on_client[0].src_nwk == 1
    link.close()
    server.close()
