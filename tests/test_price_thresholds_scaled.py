"""Block thresholds with a non-unity BlockThresholdMultiplier / Divisor, supplier → meter → IHD.

SE 1.4 D.4.2.4.5/D.4.2.4.7: a PublishBlockThresholds value times the tariff's
BlockThresholdMultiplier over its BlockThresholdDivisor is in the units of the Metering
register (Wh on this meter). Every other test uses 1/1, where swapping, ignoring or inverting
the two cannot be seen. Here the supplier says 5/2 and 2/7; the thresholds it means, the Wh
the meter must keep and re-publish, and the IHD's blocks are all worked out in this file from
the spec's rule, and the frames are read and patched by the SE layout (offsets below), not by
our schema.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from test_price import EXAMPLE, T0, block_tariff

from hubsim.ihd_price import PriceView
from sep.clusters.price import PriceServer
from sep.meter.tariff import load_tariff
from sep.zcl.price import schema

PUBLISH_TARIFF_INFORMATION, PUBLISH_BLOCK_THRESHOLDS = 0x04, 0x06
WH = [5000, 15000]  # block_tariff's thresholds (5 and 15 kWh) in register units


def u24(value: int) -> bytes:
    return value.to_bytes(3, "little")


def with_scale(tariff_information: bytes, mult: int, div: int) -> bytes:
    """PublishTariffInformation ends with BlockThresholdMultiplier (u24) ‖ Divisor (u24)."""
    return tariff_information[:-6] + u24(mult) + u24(div)


def scale_of(tariff_information: bytes) -> tuple[int, int]:
    tail = tariff_information[-6:]
    return int.from_bytes(tail[:3], "little"), int.from_bytes(tail[3:], "little")


def thresholds_of(payload: bytes) -> list[int]:
    """PublishBlockThresholds: provider, event, start, tariff (u32 each), command index,
    total commands, sub-payload control (u8 each), then records: (tier << 4 | count) (u8) and
    count thresholds (u48)."""
    values, pos = [], 19
    while pos < len(payload):
        count = payload[pos] & 0x0F
        pos += 1
        for _ in range(count):
            values.append(int.from_bytes(payload[pos:pos + 6], "little"))
            pos += 6
    assert pos == len(payload), payload.hex()
    return values


def with_thresholds(payload: bytes, raw: list[int]) -> bytes:
    assert len(thresholds_of(payload)) == len(raw) and payload[19] & 0x0F == len(raw)
    return payload[:20] + b"".join(v.to_bytes(6, "little") for v in raw)


def supplier_frames(mult: int, div: int) -> dict[int, bytes]:
    """The supplier's publications of a two-threshold block tariff, as payloads by command,
    rescaled to ``mult``/``div``: raw = Wh × div / mult (exact for the values used)."""
    upstream = PriceServer(tariff=load_tariff(EXAMPLE))  # the supplier's ESI, 0xABCD
    upstream.tick(float(T0))
    upstream.take_outbox()
    upstream.set_tariff(block_tariff(7102), float(T0))
    frames = {f[2]: f[3:] for f in upstream.take_outbox()}  # ZCL header: fc, tsn, command
    raw = [wh * div // mult for wh in WH]
    assert [r * mult / div for r in raw] == WH  # exact: the test's own arithmetic
    frames[PUBLISH_TARIFF_INFORMATION] = with_scale(frames[PUBLISH_TARIFF_INFORMATION], mult, div)
    frames[PUBLISH_BLOCK_THRESHOLDS] = with_thresholds(frames[PUBLISH_BLOCK_THRESHOLDS], raw)
    return frames


@pytest.mark.parametrize("mult, div", [(5, 2), (2, 7), (1, 1000)])
def test_the_meter_keeps_and_republishes_thresholds_in_wh(mult, div):
    frames = supplier_frames(mult, div)
    meter = PriceServer()
    now = float(T0)
    meter.tick(now)
    meter.take_outbox()
    for command, payload in frames.items():
        assert meter.ingest(command, payload, now) == 0, hex(command)  # SUCCESS
    assert list(meter.tariff.block_thresholds_kwh) == [D(5), D(15)]
    # the re-publication to the HAN: its own multiplier/divisor applied to its thresholds
    out = [(f[2], f[3:]) for f in meter.take_outbox()]
    info = [p for c, p in out if c == PUBLISH_TARIFF_INFORMATION]
    blocks = [p for c, p in out if c == PUBLISH_BLOCK_THRESHOLDS]
    assert info and blocks
    m, d = scale_of(info[-1])
    assert [D(v) * m / d for v in thresholds_of(blocks[-1])] == WH


@pytest.mark.parametrize("mult, div", [(5, 2), (2, 7)])
def test_the_ihd_shows_blocks_in_register_units(mult, div):
    frames = supplier_frames(mult, div)  # as if the meter used this scale itself
    view = PriceView()
    now = float(T0)
    for command in (PUBLISH_TARIFF_INFORMATION, PUBLISH_BLOCK_THRESHOLDS):
        args, rest = schema(command).deserialize(frames[command])
        assert rest == b""
        view.on_command(command, args, now)
    assert view.block_thresholds == WH
    # the next-block line a household reads: 5.000 kWh at register 1 Wh (multiplier 1/1000)
    view.current_block, view.block_period_consumption = 1, 1200
    assert view.block_text(1, 1000).endswith("next block at 5.000 kWh")


def test_a_zero_multiplier_or_divisor_is_refused():
    for mult, div in [(0, 1), (1, 0)]:
        frames = supplier_frames(1, 1)
        info = with_scale(frames[PUBLISH_TARIFF_INFORMATION], mult, div)
        assert PriceServer().ingest(PUBLISH_TARIFF_INFORMATION, info, float(T0)) == 0x87
