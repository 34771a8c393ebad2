"""Price server robustness and the finer points, sans-IO.

Random payloads to every command id never crash the server and never change its tariff;
a refused ingest changes nothing; large tariffs split over several frames within the
payload limit, and tshark reads back every record the test wrote; GetCurrentPrice's
rx-on-when-idle bit decides who is pushed to.
"""

from __future__ import annotations

import shutil
from decimal import Decimal as D
from pathlib import Path

import pytest
import zigpy.types as t
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from required_tools import needs_tool
from test_price import EXAMPLE, T0, P, block_tariff, decode, malformed
from zigpy.zcl import foundation

from radios.frames import AirFrame, ApsKind
from radios.pcap import PcapWriter
from sep.clusters.price import PriceServer
from sep.meter.tariff import Recurrence, Switch, Tariff, Tier, load_tariff
from sep.zcl.frames import MalformedFrame, Request, Status

TSHARK = shutil.which("tshark")


def request(command_id: int, payload: bytes, *, src: int = 0x3B3B, general: bool = False
            ) -> Request:
    header = (foundation.ZCLHeader.general if general else foundation.ZCLHeader.cluster)(
        1, command_id)
    return Request(src_nwk=src, src_ep=1, dst_ep=1, profile_id=0x0109, cluster_id=0x0700,
                   header=header, payload=payload)


def server() -> PriceServer:
    s = PriceServer(tariff=block_tariff(7003))
    s.tick(T0)
    s.take_outbox()
    return s


def state(s: PriceServer) -> tuple[object, ...]:
    return (s.tariff, s.pending, list(s.events), dict(s._upstream))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command=st.integers(0, 0x1F), payload=st.binary(max_size=90))
def test_random_requests_never_crash_or_change_the_tariff(command, payload):
    s = server()
    before = (s.tariff, s.pending, list(s.events))
    frames = s.handle(request(command, payload), T0 + 60)
    assert (s.tariff, s.pending, list(s.events)) == before
    for f in frames:
        assert len(f) >= 3 and f[0] & 0x08  # server to client
        assert len(f) - 3 <= 80


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command=st.integers(0, 0x1F), payload=st.binary(max_size=90),
       ours=st.booleans())
def test_random_publications_are_refused_without_a_trace(command, payload, ours):
    s = server()
    if ours and command not in (0x02, 0x03):  # most Publish* begin with the provider id
        payload = t.uint32_t(0xABCD).serialize() + payload
    before = state(s)
    try:
        result = s.ingest(command, payload, T0 + 60)
    except MalformedFrame:
        result = Status.MALFORMED_COMMAND
    assert isinstance(result, Status)
    if result != Status.SUCCESS:
        assert state(s) == before


def test_statuses_for_bad_requests():
    s = server()

    def ask(command: int, payload: bytes) -> int:
        (frame,) = s.handle(request(command, payload), T0)
        assert frame[2] == 0x0B  # Default Response
        return frame[-1]

    assert ask(0x07, t.uint32_t(4242).serialize()) == Status.NOT_FOUND  # unknown tariff id
    assert ask(0x08, t.uint32_t(4242).serialize()) == Status.NOT_FOUND
    assert ask(0x0A, t.uint32_t(4242).serialize()) == Status.NOT_FOUND
    assert ask(0x07, b"\x01\x02") == Status.MALFORMED_COMMAND
    assert ask(0x01, b"\x00\x00\x00") == Status.MALFORMED_COMMAND
    since = t.uint32_t(0).serialize() + t.uint32_t(0xFFFFFFFF).serialize() + b"\x01"
    assert ask(0x06, since + b"\x07") == Status.INVALID_FIELD  # reserved tariff type
    assert ask(0x09, since + b"\x13") == Status.INVALID_FIELD
    assert ask(0x06, since + b"\x01") == Status.NOT_FOUND  # a received tariff: none here
    default = PriceServer()  # one rate: no calorific value, no CO2, no blocks
    for command, payload in ((0x05, since), (0x09, since + b"\x00"), (0x03, bytes(5)),
                             (0x0B, since + b"\x00"), (0x10, b"")):
        (frame,) = default.handle(request(command, payload), T0)
        assert frame[2] == 0x0B and frame[-1] == Status.NOT_FOUND, hex(command)
    newer = t.uint32_t(0).serialize() + t.uint32_t(0xFFFFFFFE).serialize() + b"\x01"
    assert ask(0x04, newer) == Status.NOT_FOUND  # nothing that new
    ack = t.uint32_t(0x1234).serialize() + t.uint32_t(1).serialize() + bytes(5)
    assert ask(0x02, ack) == Status.NOT_AUTHORIZED  # another provider's price
    assert ask(0x0D, bytes(4) + b"\x01") == Status.NOT_FOUND  # CPP: no such event
    assert ask(0x11, bytes(5)) == Status.UNSUP_CLUSTER_COMMAND  # no such command
    with pytest.raises(ValueError):
        s.publish(tier=16, unit_rate="0.1", label="x", now=T0)
    with pytest.raises(ValueError):
        s.publish(tier=1, unit_rate="0.1", label="thirteen char", now=T0)
    with pytest.raises(ValueError):
        s.publish(tier=1, unit_rate="0.12345", label="x", now=T0)  # 5 decimals, 4 digits
    with pytest.raises(ValueError):
        s.set_tariff(block_tariff(7003), T0)  # the same issuer tariff id
    with pytest.raises(LookupError):
        s.cancel_tariff(999, T0)


def test_rx_on_when_idle_decides_who_is_pushed_to():
    s = server()
    s.handle(request(0x00, b"\x01", src=0x1111), T0)  # rx on when idle
    s.handle(request(0x00, b"\x00", src=0x2222), T0)  # sleepy: polls
    s.handle(request(0x07, t.uint32_t(7003).serialize(), src=0x2222), T0)
    assert s.clients == {(0x1111, 1)}
    s.handle(request(0x00, b"\x01", src=0x2222), T0)  # now awake
    assert s.clients == {(0x1111, 1), (0x2222, 1)}


def test_block_periods_call_the_metering_callback():
    seen: list[tuple[int, list[int]]] = []
    tiers: list[int] = []
    s = PriceServer(tariff=block_tariff(7003), on_block_period=lambda a, b: seen.append((a, b)),
                    on_tier=tiers.append)
    s.tick(T0 + 3600)
    s.tick(T0 + 86400 + 60)  # the next day: a new block period
    assert seen == [(T0, [5000, 15000]), (T0 + 86400, [5000, 15000])]
    assert tiers[0] == 1  # 01:00 is Night
    frames = s.take_outbox()
    assert [f[2] for f in frames].count(0x01) == 2  # PublishBlockPeriod each time


def test_attributes_serve_the_tariff():
    s = server()
    ids = [0x0000, 0x0001, 0x0100, 0x0101, 0x010F, 0x0200, 0x0201, 0x0301, 0x0302, 0x0303,
           0x0411, 0x0422, 0x0610, 0x0611, 0x0612, 0x0616, 0x0617, 0x0620, 0x0700, 0x0701]
    payload = b"".join(t.uint16_t(i).serialize() for i in ids)
    (frame,) = s.handle(request(0x00, payload, general=True), T0 + 60)
    records, rest = t.List[foundation.ReadAttributeRecord].deserialize(frame[3:])
    got = {int(r.attrid): r.value.value for r in records if r.status == Status.SUCCESS}
    assert rest == b"" and len(got) == len(ids)
    assert got[0x0000] == b"Night" and got[0x0001] == b"Day"
    assert got[0x0100] == 5000 and got[0x0101] == 15000 and got[0x010F] == 2
    assert got[0x0200] == T0 - 946_684_800 and got[0x0201] == 1440  # a day, in minutes
    assert got[0x0301] == 5312 and got[0x0302] == 102264 and got[0x0303] == 0x50
    assert got[0x0411] == 1600 and got[0x0422] == 3500  # tier 1 block 2, tier 2 block 3
    assert got[0x0610] == b"Economy 7" and got[0x0611] == 2 and got[0x0612] == 2
    assert got[0x0616] == 826 and got[0x0617] == 0x40 and got[0x0620] == 233
    assert got[0x0700] == T0 - 946_684_800  # January 2026
    assert got[0x0701] == 31 * 1440


def big_tariff() -> Tariff:
    """15 tiers × 16 blocks, 12-byte labels: nothing of it fits one frame."""
    tiers = tuple(Tier(n, f"Tier {n:02d} name"[:12], D(n) / 100) for n in range(1, 16))
    thresholds = tuple(D(10 * i) for i in range(1, 16))
    prices = tuple(((n, b), D(n * 100 + b) / 10000) for n in range(1, 16) for b in range(1, 17))
    day = tuple(Switch(60 * n, n + 1) for n in range(15))
    return Tariff(issuer_tariff_id=8000, label="Big", tiers=tiers, schedule=(day,) * 7,
                  block_thresholds_kwh=thresholds, block_prices=prices,
                  block_period=Recurrence(T0, 1, "months"))


@needs_tool("tshark")
def test_large_tariffs_split_and_come_back_whole(tmp_path: Path):
    upstream = PriceServer(tariff=load_tariff(EXAMPLE))
    upstream.tick(T0)
    upstream.take_outbox()
    upstream.set_tariff(big_tariff(), T0)
    frames = upstream.take_outbox()
    kinds = [f[2] for f in frames]
    assert kinds.count(0x05) == 20  # 240 matrix records, 12 a frame
    assert kinds.count(0x06) == 2  # 15 thresholds: 10 + 5
    assert kinds.count(0x08) == 4  # 15 labels of 14 bytes: 4 a frame
    assert all(len(f) - 3 <= 80 for f in frames)
    # the meter takes it all in, frame by frame
    meter = PriceServer()
    meter.tick(T0)
    for f in frames:
        assert meter.ingest(f[2], f[3:], T0) == Status.SUCCESS, hex(f[2])
    assert meter.tariff.issuer_tariff_id == 8000
    assert [x.label for x in meter.tariff.tiers] == [f"Tier {n:02d} name" for n in range(1, 16)]
    assert meter.tariff.block_thresholds_kwh == tuple(D(10 * i) for i in range(1, 16))
    assert all(meter.tariff.block_price(n, b) == D(n * 100 + b) / 10000
               for n in range(1, 16) for b in range(1, 17))
    # and tshark reads every record of the split frames
    pcap = tmp_path / "big.pcap"
    writer = PcapWriter(pcap)
    for i, f in enumerate(frames):
        writer.write(AirFrame(kind=ApsKind.DATA, pan_id=0x1A62, src_nwk=0, dst_nwk=0x4D4D,
                              src_ieee=1, profile_id=0x0109, cluster_id=0x0700, src_ep=1,
                              dst_ep=1, aps_counter=i & 0xFF, payload=f))
    writer.close()
    assert malformed(pcap) == ""
    rows = decode(pcap, ["zbee_zcl_se.price.cmd.srv_tx.id", P + "command_index",
                         P + "total_number_of_commands", P + "price_matrix.tier",
                         P + "price_matrix.block", P + "price_matrix.price",
                         P + "block_threshold", P + "tier_labels.tier_id"])
    matrix = [r for r in rows if r["zbee_zcl_se.price.cmd.srv_tx.id"] == ["0x05"]]
    assert [r[P + "command_index"] for r in matrix] == [[str(i)] for i in range(20)]
    assert all(r[P + "total_number_of_commands"] == ["20"] for r in matrix)
    records = {(int(tier), int(block) + 1, int(price)) for r in matrix for tier, block, price in
               zip(r[P + "price_matrix.tier"], r[P + "price_matrix.block"],
                   r[P + "price_matrix.price"], strict=True)}
    assert records == {(n, b, n * 100 + b) for n in range(1, 16) for b in range(1, 17)}
    thresholds = [v for r in rows if r["zbee_zcl_se.price.cmd.srv_tx.id"] == ["0x06"]
                  for v in r[P + "block_threshold"]]
    assert thresholds == [str(10_000 * i) for i in range(1, 16)]
    labels = [v for r in rows if r["zbee_zcl_se.price.cmd.srv_tx.id"] == ["0x08"]
              for v in r[P + "tier_labels.tier_id"]]
    assert labels == [str(n) for n in range(1, 16)]
