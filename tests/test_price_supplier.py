"""The supplier's Price server publishes to the meter, which re-publishes to its HAN.

Three nodes on the virtual air: the supplier's ESI (NWK 0x0000, an upstream PriceServer),
the meter (a PriceServer behind the SupplierLink, as the app wires it) and an IHD. What the
ESI sends is ingested (SE statuses in Default Responses), the meter's HAN clients are sent
the result, and tshark reads both legs. Bad input gets the statuses SE/ZCL give it and
changes nothing.
"""

from __future__ import annotations

import asyncio
import shutil
from decimal import Decimal as D
from typing import Any

import pytest
import zigpy.types as t
from required_tools import needs_tool
from test_price import EXAMPLE, T0, ZCL_EPOCH, P, block_tariff, decode, malformed, tshark_time

from radios.air import VirtualAir
from radios.frames import AirFrame, ApsKind
from radios.pcap import PcapWriter, encode_mac_frame
from radios.sniffer import decode_frame
from sep.clusters.price import PriceServer
from sep.clusters.supplier_link import SupplierLink
from sep.meter.tariff import load_tariff
from sep.zcl.frames import MalformedFrame, Request, decode_header, server_frame

TSHARK = shutil.which("tshark")
ESI, METER, IHD, ROGUE = 0x0000, 0x4D4D, 0x3B3B, 0x5555
SUCCESS, NOT_AUTHORIZED, MALFORMED, INVALID_VALUE, NOT_FOUND = 0x00, 0x7E, 0x80, 0x87, 0x8B


class Node:
    """A plain port on a test air: frames without security (this test is about Price
    ingest between sans-IO servers, not about the radio), tshark reads them as they are."""

    def __init__(self, air: VirtualAir, nwk: int) -> None:
        self.nwk = nwk
        self.inbox: list[AirFrame] = []
        self.port = air.attach(0x1000 + nwk, self._rx, pan_id=0x1A62, nwk=nwk)
        self.n = 0

    def _rx(self, mpdu: bytes) -> None:
        f, _ = decode_frame(mpdu, {})
        if f is not None and f.kind == ApsKind.DATA and f.dst_nwk == self.nwk \
                and f.cluster_id == 0x0700:
            self.inbox.append(f)

    async def send(self, dst: int, data: bytes) -> None:
        self.n += 1
        await self.port.transmit(encode_mac_frame(AirFrame(
            kind=ApsKind.DATA, pan_id=0x1A62, src_nwk=self.nwk, dst_nwk=dst,
            src_ieee=0x1000 + self.nwk, profile_id=0x0109, cluster_id=0x0700, src_ep=1, dst_ep=1,
            aps_counter=self.n & 0xFF, payload=data, mac_seq=self.n & 0xFF,
            nwk_seq=self.n & 0xFF))[:-2])  # the air carries the MPDU without its FCS


class Meter(Node):
    """The meter's Price side: server for the HAN, client of the supplier (SupplierLink)."""

    def __init__(self, air: VirtualAir, now: float) -> None:
        super().__init__(air, METER)
        self.now = now
        self.price = PriceServer()
        self.link = SupplierLink([self.price])
        self.price.clients.add((IHD, 1))  # the IHD asked GetCurrentPrice (rx on when idle)

    async def process(self) -> list[int]:
        """Handle what arrived; returns the Default Response statuses sent to the ESI."""
        statuses = []
        while self.inbox:
            f = self.inbox.pop(0)
            header, payload = decode_header(f.payload)
            req = Request(src_nwk=f.src_nwk, src_ep=f.src_ep, dst_ep=f.dst_ep,
                          profile_id=f.profile_id, cluster_id=f.cluster_id, header=header,
                          payload=payload)
            for reply in self.link.handle(req, self.now):
                if reply[0] & 0x03 == 0 and reply[2] == 0x0B:  # a Default Response
                    statuses.append(reply[-1])
                await self.send(f.src_nwk, reply)  # (and the link's follow-up requests)
        self.price.tick(self.now)
        for frame in self.price.take_outbox():
            for nwk, _ep in sorted(self.price.clients):
                await self.send(nwk, frame)
        return statuses


def with_ddr_off(frame: bytes) -> bytes:
    """Ask for a Default Response even on success (clear disable-default-response)."""
    return bytes([frame[0] & ~0x10]) + frame[1:]


def price_payload(**over: Any) -> bytes:
    """A PublishPrice written field by field (SE 1.4 D.4.2.4.1), for bad-input cases."""
    f = {"provider": 0xABCD, "label": b"Peak", "event": 900_000_000, "tier": 2, "digits": 4,
         "price": 4000, **over}
    return (t.uint32_t(f["provider"]).serialize() + t.LVBytes(f["label"]).serialize()
            + t.uint32_t(f["event"]).serialize() + t.uint32_t(0).serialize() + b"\x00"
            + t.uint16_t(826).serialize() + bytes([(f["digits"] << 4) | f["tier"], 0x22])
            + t.uint32_t(0).serialize() + t.uint16_t(0xFFFF).serialize()
            + t.uint32_t(f["price"]).serialize())


def snapshot(server: PriceServer) -> tuple[Any, ...]:
    return (server.tariff, server.pending, list(server.events))


@needs_tool("tshark")
async def test_supplier_prices_reach_the_han_through_the_meter(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "supplier.pcap"
    writer = PcapWriter(pcap)
    air.add_tap(writer.write)
    now = float(T0)
    esi, meter, _ihd, rogue = Node(air, ESI), Meter(air, now), Node(air, IHD), Node(air, ROGUE)
    upstream = PriceServer(tariff=load_tariff(EXAMPLE))  # the supplier's ESI, provider 0xABCD
    upstream.tick(now)
    upstream.take_outbox()

    async def publish(frames: list[bytes], *, by: Node = esi) -> list[int]:
        for f in frames:
            await by.send(METER, with_ddr_off(f))
        await asyncio.sleep(0)
        return await meter.process()

    try:
        # a block tariff effective now: info, matrix (before the thresholds), thresholds,
        # labels, the billing period, the current price, the block period
        upstream.set_tariff(block_tariff(7102), now)
        frames = upstream.take_outbox()
        assert [f[2] for f in frames] == [0x04, 0x05, 0x06, 0x08, 0x09, 0x00, 0x01]
        assert await publish(frames) == [SUCCESS] * 7
        tariff = meter.price.tariff
        assert tariff.issuer_tariff_id == 7102 and tariff.label == "Economy 7"
        assert [(x.label, x.rate) for x in tariff.tiers] == [("Night", D("0.1545")),
                                                            ("Day", D("0.3127"))]
        assert list(tariff.block_thresholds_kwh) == [5, 15]
        assert tariff.block_price(2, 3) == D("0.35")
        assert meter.price.standing_charge == D("0.5312")
        assert meter.price.current is not None and meter.price.current.unit_rate == \
            upstream.tariff.tier(2).rate  # 00:00: the Day rate, as the ESI said
        # conversion factor, calorific value, CO2, billing period
        frames = [upstream.push(0x02, upstream.conversion_factor_payload()),
                  upstream.push(0x03, upstream.calorific_value_payload()),
                  upstream.push(0x07, upstream.co2_payload()),
                  upstream.push(0x09, upstream.billing_period_payload(now))]
        upstream.take_outbox()
        assert await publish(frames) == [SUCCESS] * 4
        assert meter.price.tariff.conversion_factor == D("1.02264")
        assert meter.price.tariff.calorific_value == D("39.5")
        assert meter.price.tariff.co2 == D("0.233")
        # tomorrow's tariff, then withdrawn
        upstream.set_tariff(block_tariff(7103), now, start=now + 86400)
        assert await publish(upstream.take_outbox()) == [SUCCESS] * 4
        assert meter.price.pending is not None and meter.price.pending[0].issuer_tariff_id == 7103
        upstream.cancel_tariff(7103, now)
        assert await publish(upstream.take_outbox()) == [SUCCESS]
        assert meter.price.pending is None

        # bad input: each refused with its status, and nothing changes
        before = snapshot(meter.price)
        replay = [upstream.push(0x00, upstream.price_payload(upstream.current_price(now), now))]
        upstream.take_outbox()
        # the same price again (its issuer event id is known): ignored as a duplicate
        assert await publish(replay) == [SUCCESS]
        assert snapshot(meter.price) == before
        # an older issuer event id for a price starting at the same time: stale
        stale = upstream.price_payload(upstream.current_price(now), now)
        stale = stale[:4 + 1 + stale[4]] + t.uint32_t(1).serialize() + stale[9 + stale[4]:]
        stale_frame = server_frame(0x33, 0x00, stale, general=False)
        assert await publish([stale_frame]) == [INVALID_VALUE]  # its event id is not newer
        bad = [
            (price_payload(provider=0x1111), NOT_AUTHORIZED),  # another supplier
            (price_payload(tier=0), INVALID_VALUE),  # tier 0
            (price_payload(label=b"13 bytes long"), INVALID_VALUE),  # rate label > 12
            (price_payload(digits=6, price=123457), INVALID_VALUE),  # not exact at 4 digits
            (price_payload()[:20], MALFORMED),  # truncated
        ]
        for payload, expected in bad:
            frame = bytes([0x19, 0x40, 0x00]) + payload
            assert await publish([frame]) == [expected], payload.hex()
        cancel_active = t.uint32_t(0xABCD).serialize() + t.uint32_t(7102).serialize() + b"\x00"
        cancel_unknown = t.uint32_t(0xABCD).serialize() + t.uint32_t(4242).serialize() + b"\x00"
        matrix_unknown = (t.uint32_t(0xABCD).serialize() + t.uint32_t(950_000_000).serialize()
                          + t.uint32_t(0).serialize() + t.uint32_t(4242).serialize()
                          + bytes([0, 1, 1, 1]) + t.uint32_t(1000).serialize())
        labels_long = (t.uint32_t(0xABCD).serialize() + t.uint32_t(950_000_000).serialize()
                       + t.uint32_t(7102).serialize() + bytes([0, 1, 1, 1])
                       + t.LVBytes(b"thirteen char").serialize())
        for command, payload, expected in [(0x0E, cancel_active, INVALID_VALUE),
                                           (0x0E, cancel_unknown, NOT_FOUND),
                                           (0x05, matrix_unknown, NOT_FOUND),
                                           (0x08, labels_long, INVALID_VALUE)]:
            frame = bytes([0x19, 0x41, command]) + payload
            assert await publish([frame]) == [expected], hex(command)
        # a node that is not the supplier's ESI
        assert await publish([with_ddr_off(bytes([0x19, 0x42, 0x00]) + price_payload(
            event=990_000_000))], by=rogue) == [NOT_AUTHORIZED]
        assert snapshot(meter.price) == before
        with pytest.raises(MalformedFrame):
            meter.price.ingest(0x04, b"\xcd\xab\x00\x00", now)
    finally:
        writer.close()

    # only the truncated PublishPrice sent on purpose (TSN 0x40, from the ESI) is malformed
    assert malformed(pcap, but=f"zbee_nwk.src == 0x{ESI:04x} && zbee_zcl.cmd.tsn == 0x40") == ""
    # the meter's re-publication to the IHD, as tshark reads it
    rows = decode(pcap, ["zbee_zcl_se.price.cmd.srv_tx.id", P + "issuer_tariff_id",
                         P + "issuer_event_id", P + "tariff_information.tariff_label",
                         P + "price_matrix.price", P + "block_threshold",
                         P + "tier_labels.tier_label", P + "conversion_factor",
                         P + "calorific_value", P + "co2.value", P + "price", P + "rate_label",
                         P + "billing_period.start_time", P + "start_time",
                         P + "block_period.start_time"],
                  where=f"zbee_aps.cluster == 0x0700 && zbee_nwk.src == 0x{METER:04x} "
                        f"&& zbee_nwk.dst == 0x{IHD:04x}")
    by: dict[str, list[dict[str, list[str]]]] = {}
    for r in rows:
        by.setdefault(r["zbee_zcl_se.price.cmd.srv_tx.id"][0], []).append(r)
    assert [r[P + "issuer_tariff_id"] for r in by["0x04"]] == [["7102"], ["7103"]]
    assert by["0x04"][0][P + "tariff_information.tariff_label"] == ["Economy 7"]
    assert by["0x04"][1][P + "start_time"] == [tshark_time(T0 + 86400)]
    matrix = [r for r in by["0x05"] if r[P + "issuer_tariff_id"] == ["7102"]][-1]
    assert matrix[P + "price_matrix.price"] == ["1545", "1600", "1700", "3127", "3300", "3500"]
    assert all(r[P + "block_threshold"] == ["5000", "15000"] for r in by["0x06"])
    assert [r for r in by["0x08"] if r[P + "issuer_tariff_id"] == ["7102"]][-1][
        P + "tier_labels.tier_label"] == ["Night", "Day"]
    assert by["0x02"][-1][P + "conversion_factor"] == ["102264"]
    assert by["0x03"][-1][P + "calorific_value"] == ["395"]
    assert by["0x07"][-1][P + "co2.value"] == ["233"]
    assert by["0x09"][-1][P + "billing_period.start_time"] == [tshark_time(T0)]
    assert by["0x01"][-1][P + "block_period.start_time"] == [tshark_time(T0)]
    assert [r[P + "issuer_event_id"] for r in by["0x0e"]] == [["7103"]]  # CancelTariff
    assert ["3127"] in [r[P + "price"] for r in by["0x00"]]
    # the ESI's leg: every good publication got SUCCESS back, the bad ones their statuses
    acks = decode(pcap, ["zbee_zcl.cmd.id.rsp", "zbee_zcl.attr.status"],
                  where=f"zbee_nwk.src == 0x{METER:04x} && zbee_zcl.cmd.id == 0x0b")
    statuses = [int(r["zbee_zcl.attr.status"][0], 0) for r in acks]
    assert statuses[:17] == [SUCCESS] * 17  # (the 17th: the duplicate price, ignored)
    assert statuses[17:] == [INVALID_VALUE, NOT_AUTHORIZED, INVALID_VALUE, INVALID_VALUE,
                             INVALID_VALUE, MALFORMED, INVALID_VALUE, NOT_FOUND, NOT_FOUND,
                             INVALID_VALUE, NOT_AUTHORIZED]
    assert ZCL_EPOCH  # (imported for symmetry with test_price)
