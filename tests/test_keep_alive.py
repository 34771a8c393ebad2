"""Keep-Alive: the trust centre serves Base and Jitter; the meter and the IHD read them, and
after three keep-alives in a row without an answer (SE 5.4.2.2.3.4: the limit "shall be
three") — and not before — raise "trust centre lost: search and rejoin, redo KE".
"""

from __future__ import annotations

import asyncio
import random

import pytest
import zigpy.types as t
from tshark_se import decode, malformed, needs_tshark
from waiting import until
from zigpy.zcl import foundation

from hubsim.hub import CommsHub
from hubsim.ihd import InHomeDisplay
from radios.air import VirtualAir
from radios.pcap import PcapWriter
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.clusters.keep_alive import (
    Discover,
    KeepAliveClient,
    KeepAliveServer,
    Read,
    TrustCentreBack,
    TrustCentreLost,
)
from sep.zcl.frames import Request, decode_header

GC = foundation.GeneralCommand


def request_of(frame: bytes, src: int) -> Request:
    header, payload = decode_header(frame)
    return Request(src_nwk=src, src_ep=9, dst_ep=1, profile_id=0x0109, cluster_id=0x0025,
                   header=header, payload=payload)


def answer(frame: bytes, *, base: int = 1, jitter: int = 20, tsn: int | None = None,
           base_type: int = 0x20) -> bytes:
    """The trust centre's Read Attributes Response, written field by field (ZCL 2.5.2)."""
    hdr = foundation.ZCLHeader.general(frame[1] if tsn is None else tsn,
                                       GC.Read_Attributes_rsp, direction=1)
    return (hdr.serialize() + b"\x00\x00\x00" + bytes([base_type, base])
            + b"\x01\x00\x00\x21" + t.uint16_t(jitter).serialize())


def start(client: KeepAliveClient, now: float = 0.0) -> float:
    assert client.poll(now) == [Discover(0x0000)]
    client.found(0x0000, [9], now)
    return now


def test_lost_after_exactly_three_misses_and_never_before():
    c = KeepAliveClient(rng=random.Random(1), response_timeout=30)
    now = start(c)
    read = c.poll(now)[0]
    assert isinstance(read, Read) and read.endpoint == 9 and read.frame[2] == GC.Read_Attributes
    assert read.frame[3:] == bytes.fromhex("00000100")  # Base, Jitter
    c.handle(request_of(answer(read.frame, base=2, jitter=40), 0x0000), now + 1)
    assert (c.base, c.jitter, c.failures) == (2, 40, 0)
    effects: list[object] = []
    reads = 0
    t_ = now + 1
    while not any(isinstance(e, TrustCentreLost) for e in effects) and t_ < now + 3 * 3600:
        t_ += 1
        out = c.poll(t_)
        reads += sum(isinstance(a, Read) for a in out)
        effects += [a for a in out if not isinstance(a, Read)]
        if reads < 3:
            assert not effects, "lost before three misses"
    assert effects == [TrustCentreLost(3)]
    assert reads == 3 and c.failures == 3
    # every keep-alive waits Base minutes plus up to Jitter seconds after the one before
    assert 3 * 120 <= t_ - now <= 3 * (120 + 40) + 3 * 30 + 3
    # it goes on trying, and says nothing more until the trust centre answers again
    for _ in range(2 * 3600):
        t_ += 1
        assert not [a for a in c.poll(t_) if not isinstance(a, Read)]
    assert c.failures > 40 and c.lost
    while not (out := [a for a in c.poll(t_) if isinstance(a, Read)]):
        t_ += 1
    c.handle(request_of(answer(out[0].frame), 0x0000), t_)
    assert c.poll(t_) == [TrustCentreBack()] and c.failures == 0 and not c.lost


def test_answers_keep_it_quiet_and_bad_answers_are_misses():
    c = KeepAliveClient(rng=random.Random(2), response_timeout=30)
    now = start(c)
    for _ in range(200):  # answered every time: never a failure
        out = c.poll(now)
        assert all(isinstance(a, Read) for a in out)
        for a in out:
            c.handle(request_of(answer(a.frame), 0x0000), now + 0.5)
        now += 7
    assert c.failures == 0 and c.answered > 10
    # answers that are not keep-alive answers count as misses: wrong type, out of range,
    # an unsupported attribute; ones from another node or with another TSN are ignored
    bad = [dict(base_type=0x21), dict(base=0), dict(jitter=513)]
    misses = 0
    for kind in bad:
        while True:
            out = [a for a in c.poll(now) if isinstance(a, Read)]
            now += 1
            if out:
                break
        frame = out[0].frame
        c.handle(request_of(answer(frame, tsn=frame[1] ^ 1), 0x0000), now)  # another TSN
        c.handle(request_of(answer(frame), 0x1234), now)  # not the trust centre
        assert c.failures == misses
        c.handle(request_of(answer(frame, **kind), 0x0000), now)
        misses += 1
        assert c.failures == misses
    assert [a for a in c.poll(now) if isinstance(a, TrustCentreLost)] == [TrustCentreLost(3)]


def test_the_server_serves_base_and_jitter_and_nothing_else():
    s = KeepAliveServer(base_minutes=5, jitter_seconds=60)
    assert s.attr_ids() == [0x0000, 0x0001]
    with pytest.raises(ValueError):
        KeepAliveServer(base_minutes=0)
    with pytest.raises(ValueError):
        KeepAliveServer(jitter_seconds=513)


@needs_tshark
async def test_meter_and_display_keep_the_trust_centre_alive_then_miss_it(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "ka.pcap"
    writer = PcapWriter(pcap).capture(air)  # and its keys
    clock = ManualClock()
    hub = CommsHub(air=air, clock=clock.now, keep_alive_base=1, keep_alive_jitter=5)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:ab:01", tick_seconds=0.02),
                     clock=clock, air=air)
    await meter.start()
    ihd = InHomeDisplay(air=air, clock=clock.now)
    await ihd.start()
    lost: list[tuple[str, int]] = []
    meter.han.on_trust_centre_lost = lambda n: lost.append(("meter", n))
    ihd.han.on_trust_centre_lost = lambda n: lost.append(("ihd", n))
    try:
        for _ in range(120):  # 20 simulated minutes with the hub answering
            clock.advance(10)
            await asyncio.sleep(0.05)
        await until(lambda: meter.han.keep_alive.answered >= 8
                    and ihd.han.keep_alive.answered >= 8, timeout=10)
        assert meter.han.keep_alive.failures == 0 and ihd.han.keep_alive.failures == 0
        assert lost == []
        assert (meter.han.keep_alive.base, meter.han.keep_alive.jitter) == (1, 5)
        # the trust centre goes quiet: a miss takes at least a minute and the 30 s wait, so
        # 150 s after it stopped there have been two misses at most
        hub.services.keep_alive.answering = False
        for _ in range(150):
            clock.advance(1)
            await asyncio.sleep(0.01)
        assert lost == []
        assert meter.han.keep_alive.failures <= 2 and ihd.han.keep_alive.failures <= 2
        for _ in range(400):
            clock.advance(1)
            await asyncio.sleep(0.01)
            if len(lost) == 2:
                break
        await until(lambda: len(lost) == 2, timeout=10)
        assert sorted(lost) == [("ihd", 3), ("meter", 3)]
    finally:
        await ihd.stop()
        await meter.stop()
        await hub.stop()
        writer.close()
    assert malformed(pcap) == ""
    rows = decode(pcap, ["zbee_nwk.src", "zbee_zcl_se.keep_alive.attr.base",
                         "zbee_zcl_se.keep_alive.attr.jitter"],
                  "zbee_aps.cluster == 0x0025 && zbee_zcl.cmd.id == 0x01")
    assert rows and all(r["zbee_nwk.src"] == ["0x0000"] for r in rows)
    assert {(r["zbee_zcl_se.keep_alive.attr.base"][0], r["zbee_zcl_se.keep_alive.attr.jitter"][0])
            for r in rows} == {("1", "5")}


@needs_tshark
async def test_after_the_trust_centre_is_lost_they_rejoin_and_key_with_it_again(tmp_path):
    """Not a callback in a test: the meter and the display themselves search for the trust
    centre, rejoin (a secured NWK Rejoin, as tshark reads it) and run Key Establishment with
    it again; the new keys open the keep-alives that follow (tshark, with the key file)."""
    from hubsim.ke_node import DemoCa
    from radios.crypto import make_install_code

    hub_ieee, meter_ieee = "00:0d:6f:00:00:00:00:01", "00:0d:6f:00:00:00:ab:02"
    ihd_ieee = "00:0d:6f:00:00:00:1d:02"
    air = VirtualAir()
    pcap = tmp_path / "ka-rejoin.pcap"
    writer = PcapWriter(pcap).capture(air)  # and its keys, the new ones too
    clock = ManualClock()
    ca = DemoCa()
    codes = {ieee: make_install_code() for ieee in (meter_ieee, ihd_ieee)}
    hub = CommsHub(air=air, clock=clock.now, ieee=hub_ieee, install_codes=codes,
                   credentials=[ca.credentials(hub_ieee)], keep_alive_base=1,
                   keep_alive_jitter=5)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee=meter_ieee, tick_seconds=0.02,
                                   install_code=codes[meter_ieee].hex(),
                                   credentials=(ca.credentials(meter_ieee),)),
                     clock=clock, air=air)
    await meter.start()
    ihd = InHomeDisplay(air=air, clock=clock.now, ieee=ihd_ieee, install_code=codes[ihd_ieee],
                        credentials=[ca.credentials(ihd_ieee)])
    await ihd.start()
    hub_eui = t.EUI64.convert(hub_ieee)

    def key_of(app) -> bytes:
        return app.node.state.link_keys[int.from_bytes(bytes(hub_eui), "little")].key

    try:
        await until(meter.tc_keyed.is_set, timeout=60)
        await until(lambda: ihd.ke.keyed(hub_eui), timeout=60)
        old = key_of(meter.controller), key_of(ihd.app)
        for _ in range(60):  # keep-alives answered under the first keys
            clock.advance(10)
            await asyncio.sleep(0.02)
        await until(lambda: meter.han.keep_alive.answered >= 2
                    and ihd.han.keep_alive.answered >= 2, timeout=10)
        hub.services.keep_alive.answering = False
        while not (meter.han.keep_alive.lost and ihd.han.keep_alive.lost):
            clock.advance(2)
            await asyncio.sleep(0.01)
        lost_at = air.frames_sent
        # both rejoin and key again by themselves; the hub holds the same new keys
        await until(lambda: meter.tc_keyed.is_set() and ihd.ke.keyed(hub_eui)
                    and key_of(meter.controller) != old[0] and key_of(ihd.app) != old[1],
                    timeout=60)
        meter_node = int.from_bytes(bytes(t.EUI64.convert(meter_ieee)), "little")
        ihd_node = int.from_bytes(bytes(t.EUI64.convert(ihd_ieee)), "little")
        hub_keys = hub.app.node.state.link_keys
        assert hub_keys[meter_node].key == key_of(meter.controller)
        assert hub_keys[ihd_node].key == key_of(ihd.app)
        hub.services.keep_alive.answering = True  # the trust centre answers again
        answered = meter.han.keep_alive.answered, ihd.han.keep_alive.answered
        for _ in range(200):
            clock.advance(2)
            await asyncio.sleep(0.01)
            if not meter.han.keep_alive.lost and not ihd.han.keep_alive.lost:
                break
        await until(lambda: meter.han.keep_alive.answered > answered[0]
                    and ihd.han.keep_alive.answered > answered[1], timeout=10)
        assert not meter.han.keep_alive.lost and not ihd.han.keep_alive.lost
    finally:
        await ihd.stop()
        await meter.stop()
        await hub.stop()
        writer.close()
    assert lost_at > 0
    assert malformed(pcap) == ""
    # tshark: a secured NWK Rejoin Request from each (command 0x06) and the answers (0x07)
    rejoins = decode(pcap, ["zbee_nwk.src64", "zbee_nwk.security"], "zbee_nwk.cmd.id == 0x06")
    assert {r["zbee_nwk.src64"][0] for r in rejoins} >= {meter_ieee, ihd_ieee}
    assert all(r["zbee_nwk.security"] == ["1"] for r in rejoins)
    assert decode(pcap, ["zbee_nwk.dst"], "zbee_nwk.cmd.id == 0x07")
    # two Key Establishment exchanges each with the trust centre: before and after
    for ieee in (meter_ieee, ihd_ieee):
        starts = decode(pcap, ["frame.number"], f"zbee_zcl_se.ke.cmd.srv_rx.id == 0 && "
                        f"zbee_nwk.src64 == {ieee} && zbee_nwk.dst == 0x0000")
        assert len(starts) == 2, (ieee, starts)
    last_ke = max(int(r["frame.number"][0]) for r in decode(
        pcap, ["frame.number"], "zbee_zcl_se.ke.macv"))
    # the keep-alives after the second exchange: opened with the new keys, with their values
    after = decode(pcap, ["zbee_nwk.dst", "zbee_zcl_se.keep_alive.attr.base"],
                   f"frame.number > {last_ke} && zbee_aps.cluster == 0x0025 && "
                   "zbee_zcl.cmd.id == 0x01")
    ihd_nwk = int(ihd.app.state.node_info.nwk)
    assert {r["zbee_nwk.dst"][0] for r in after} == {f"0x{meter.nwk:04x}", f"0x{ihd_nwk:04x}"}
    assert {r["zbee_zcl_se.keep_alive.attr.base"][0] for r in after} == {"1"}
