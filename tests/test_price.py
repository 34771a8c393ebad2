"""The Price cluster across the virtual air, with tshark's SE dissector as the judge.

A HAN client asks the meter every Get* command and gets the Publish* back; tariff changes,
TOU boundaries and scheduled prices arrive as unsolicited pushes; the MQTT bridge sets a
price. Expected values are the numbers written in examples/tariff.toml and in this file
(the SE encodings worked by hand), never values the server computed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiomqtt
import zigpy.types as t
from broker import Broker
from required_tools import needs_tool
from secure import se_client, trust_centre
from test_messaging import CLIENT_IEEE, cmd

from radios.air import VirtualAir
from radios.pcap import PcapWriter, tshark_key_options
from sep.app import MeterApp, MeterSettings
from sep.bridge.config import BridgeConfig
from sep.clock import ManualClock
from sep.meter.tariff import load_tariff, parse_tariff

TSHARK = shutil.which("tshark")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tariff.toml"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, ManualClock's start
ZCL_EPOCH = 946_684_800
P = "zbee_zcl_se.price."
NOT_FOUND, MALFORMED, UNSUP_CLUSTER_COMMAND, INVALID_FIELD, SUCCESS = 0x8B, 0x80, 0x81, 0x85, 0x00

BLOCKS = """
[blocks]
thresholds_kwh = [5, 15]
period = { start = 2024-01-01T00:00:00Z, duration = 1, timebase = "days" }
[blocks.prices]
1 = ["0.1545", "0.1600", "0.1700"]
2 = ["0.3127", "0.3300", "0.3500"]
"""


def block_tariff(issuer_tariff_id: int):  # the example with blocks, under another id
    text = EXAMPLE.read_text().replace("issuer_tariff_id = 7001",
                                       f"issuer_tariff_id = {issuer_tariff_id}")
    return parse_tariff(text + BLOCKS)


def tshark_time(unix: int) -> str:
    """How tshark 4.0 prints an SE UTCTime field (FT_ABSOLUTE_TIME, UTC)."""
    d = dt.datetime.fromtimestamp(unix, dt.UTC)
    return f"{d:%b} {d.day:2d}, {d.year} {d:%H:%M:%S}.000000000 UTC"


def decode(pcap: Path, fields: list[str], where: str = "zbee_aps.cluster == 0x0700") -> list[dict[str, list[str]]]:
    """One dict per frame: field → every occurrence (tshark -T fields)."""
    where = f"({where}) && zbee_zcl"  # ZCL frames only (not the APS ACKs of that cluster)
    args = [TSHARK, "-r", str(pcap), *tshark_key_options(pcap), "-Y", where, "-T", "fields",
            "-E", "separator=|",
            "-E", "occurrence=a", "-E", "aggregator=;"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        values = line.split("|")
        rows.append({f: (v.split(";") if v else []) for f, v in zip(fields, values, strict=True)})
    return rows


def malformed(pcap: Path, *, but: str = "") -> str:
    """Frames tshark finds malformed or flags (but those matching ``but``, sent bad on purpose)."""
    where = "(_ws.malformed || _ws.expert)" + (f" && !({but})" if but else "")
    return subprocess.run([TSHARK, "-r", str(pcap), *tshark_key_options(pcap), "-Y", where],
                          capture_output=True, text=True, check=True).stdout


class HanClient:
    """A raw node on the air that talks Price to the meter and keeps what comes back."""

    def __init__(self, node: Any, meter: MeterApp) -> None:
        self.meter = meter
        self.node = node
        self.n = 0

    @classmethod
    async def connect(cls, air: VirtualAir, meter: MeterApp, ieee: int = CLIENT_IEEE) -> HanClient:
        return cls(await se_client(air, ieee, meter), meter)

    @property
    def nwk(self) -> int:
        return self.node.nwk

    @property
    def got(self) -> list[bytes]:
        return [ind.payload for ind in self.node.received
                if ind.cluster == 0x0700 and ind.dst_nwk == self.node.nwk]

    async def wait(self, before: int, expect: int) -> list[bytes]:
        for _ in range(200):
            if len(self.got) >= before + expect:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        out = self.got[before:]
        assert len(out) >= expect, f"expected {expect} frames, got {len(out)}"
        return out

    async def ask(self, command_id: int, payload: bytes = b"", expect: int = 1) -> list[bytes]:
        self.n += 1
        before = len(self.got)
        await self.node.send(self.meter.nwk, 0x0700, cmd(self.n, command_id, payload))
        return await self.wait(before, expect)

    async def pushed(self, expect: int) -> list[bytes]:
        before = len(self.got)
        self.meter.flush_pushes()
        return await self.wait(before, expect)


def u32(v: int) -> bytes:
    return t.uint32_t(v).serialize()


def since(start: int = 0, min_id: int = 0xFFFFFFFF, n: int = 1) -> bytes:
    """Earliest start time, min issuer event id, number of commands."""
    return u32(start) + u32(min_id) + bytes([n])


def cmds(frames: list[bytes]) -> list[int]:
    return [f[2] for f in frames]


def status(frames: list[bytes]) -> int:
    assert frames[-1][0] & 0x03 == 0 and frames[-1][2] == 0x0B, frames[-1].hex()  # default rsp
    return frames[-1][-1]


@needs_tool("tshark")
async def test_every_price_command_crosses_the_air(tmp_path):
    air = VirtualAir()
    pcap = tmp_path / "price.pcap"
    writer = PcapWriter(pcap).capture(air)
    tc = await trust_centre(air)
    clock = ManualClock()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:9e:01", tick_seconds=0.05),
                     clock=clock, air=air)
    await meter.start()
    han = await HanClient.connect(air, meter)
    e7 = load_tariff(EXAMPLE)
    try:
        # the default tariff: one rate, "Standard" at 0.2450 GBP/kWh
        got = await han.ask(0x00, b"\x01")
        assert cmds(got) == [0x00]
        # a price from the local API (the MQTT bridge's publish_price); tiers follow it
        meter.price.publish(tier=2, unit_rate="0.2450", label="Day", now=clock.now())
        assert cmds(await han.pushed(1)) == [0x00]
        assert meter.metering.registers.active_tier == 2
        # the Economy 7 tariff from the example file, at run time
        meter.price.set_tariff(e7, clock.now())
        got = await han.pushed(5)
        # info, matrix, labels, the billing period (E7 has one), the new price
        assert cmds(got) == [0x04, 0x05, 0x08, 0x09, 0x00]
        # at 00:00 the Day rate of the previous evening is in force (switches 00:30, 07:30)
        assert meter.metering.registers.active_tier == 2
        got = await han.ask(0x01, u32(0) + b"\x00", expect=5)  # all scheduled prices, 48 h
        assert cmds(got) == [0x00] * 5
        # acknowledge the current price (its id is its start time in ZCL seconds)
        ack = u32(0xABCD) + u32(T0 - ZCL_EPOCH) + u32(T0 + 5 - ZCL_EPOCH) + b"\x00"
        assert status(await han.ask(0x02, ack)) == SUCCESS
        assert meter.price.acks[-1]["issuer_event_id"] == T0 - ZCL_EPOCH
        assert status(await han.ask(0x02, u32(0xABCD) + u32(12345) + u32(0) + b"\x00")) \
            == NOT_FOUND
        assert cmds(await han.ask(0x04, since())) == [0x02]  # conversion factor
        assert cmds(await han.ask(0x05, since())) == [0x03]  # calorific value
        assert cmds(await han.ask(0x09, since() + b"\x00")) == [0x07]  # CO2
        assert cmds(await han.ask(0x0B, since() + b"\x00")) == [0x09]  # billing period
        assert cmds(await han.ask(0x06, since() + b"\x00")) == [0x04]  # tariff information
        assert cmds(await han.ask(0x07, u32(7001))) == [0x05]  # price matrix
        assert cmds(await han.ask(0x0A, u32(7001))) == [0x08]  # tier labels
        assert status(await han.ask(0x07, u32(999))) == NOT_FOUND  # unknown tariff id
        assert status(await han.ask(0x0A, u32(999))) == NOT_FOUND
        assert status(await han.ask(0x08, u32(7001))) == NOT_FOUND  # no blocks in E7
        assert status(await han.ask(0x03, u32(0) + b"\x01")) == NOT_FOUND
        assert status(await han.ask(0x10)) == NOT_FOUND  # nothing cancelled yet
        # bad input
        assert status(await han.ask(0x00)) == MALFORMED  # truncated
        assert status(await han.ask(0x03, u32(0) + b"\x01\x05")) == INVALID_FIELD  # tariff type 5
        assert status(await han.ask(0x0C, since())) == NOT_FOUND  # no consolidated bill yet
        assert status(await han.ask(0x11)) == UNSUP_CLUSTER_COMMAND  # no such command

        # the TOU boundary at 00:30: Night, pushed unsolicited, and the registers follow
        clock.advance(30 * 60)
        got = await han.wait(len(han.got), 1)
        assert cmds(got) == [0x00]
        assert meter.metering.registers.active_tier == 1

        # a block tariff scheduled for tomorrow, then withdrawn: CancelTariff
        meter.price.set_tariff(block_tariff(7002), clock.now(), start=T0 + 86400)
        assert cmds(await han.pushed(4)) == [0x04, 0x05, 0x06, 0x08]
        meter.price.cancel_tariff(7002, clock.now())
        assert cmds(await han.pushed(1)) == [0x0E]
        assert cmds(await han.ask(0x10)) == [0x0E]  # GetTariffCancellation
        # a block tariff now: the block period starts, and the block commands answer
        meter.price.set_tariff(block_tariff(7003), clock.now())
        assert sorted(cmds(await han.pushed(7))) == [0x00, 0x01, 0x04, 0x05, 0x06, 0x08, 0x09]
        assert cmds(await han.ask(0x08, u32(7003))) == [0x06]
        assert cmds(await han.ask(0x03, u32(0) + b"\x01")) == [0x01]
        assert cmds(await han.ask(0x07, u32(7003))) == [0x05]

        # a scheduled price: announced now, pushed again when it becomes current
        meter.price.schedule_price(tier=1, unit_rate="0.1000", label="Promo", now=clock.now(),
                                   start=int(clock.now()) + 120, duration_minutes=30)
        assert cmds(await han.pushed(1)) == [0x00]
        clock.advance(180)
        got = await han.wait(len(han.got), 1)
        assert cmds(got) == [0x00]
        assert meter.price.current is not None and meter.price.current.label == "Promo"
    finally:
        await meter.stop()
        await han.node.stop()
        await tc.stop()
        writer.close()

    assert malformed(pcap) == ""
    meter_nwk = f"0x{meter.nwk:04x}"
    rows = decode(pcap, ["zbee_nwk.src", "zbee_zcl_se.price.cmd.srv_tx.id", P + "provider_id",
                         P + "rate_label", P + "issuer_event_id", P + "currency", P + "tier",
                         P + "trailing_digit", P + "number_of_price_tiers", P + "register_tier",
                         P + "price", P + "start_time", P + "duration_in_minutes",
                         P + "issuer_tariff_id", P + "tariff_information.tariff_label",
                         P + "tariff_information.number_of_price_tiers_in_use",
                         P + "tariff_information.number_of_block_thresholds_in_use",
                         P + "tariff_information.standing_charge",
                         P + "tariff_information.charging_scheme",
                         P + "tariff_information.block_threshold_divisor",
                         P + "price_matrix.sub_payload_control", P + "price_matrix.tier",
                         P + "price_matrix.block", P + "price_matrix.price",
                         P + "tier_labels.tier_id", P + "tier_labels.tier_label",
                         P + "conversion_factor", P + "conversion_factor.trailing_digit",
                         P + "calorific_value", P + "calorific_value.unit",
                         P + "co2.value", P + "co2.unit", P + "billing_period.start_time",
                         P + "billing_period.duration", P + "billing_period.duration.timebase",
                         P + "block_period.start_time", P + "block_period.duration",
                         P + "block_period.duration.timebase", P + "block_threshold",
                         P + "block_thresholds.sub_payload_control",
                         P + "tariff_information.number_of_block_thresholds",
                         P + "command_index", P + "total_number_of_commands",
                         P + "number_of_block_thresholds", "zbee_zcl.cmd.tsn"],
                  where=f"zbee_aps.cluster == 0x0700 && zbee_nwk.src == {meter_nwk}")

    def of(command: int) -> list[dict[str, list[str]]]:
        return [r for r in rows if r["zbee_zcl_se.price.cmd.srv_tx.id"] == [f"0x{command:02x}"]]

    def one(r: dict[str, list[str]], field: str) -> str:
        assert len(r[P + field]) == 1, (field, r[P + field])
        return r[P + field][0]

    prices = [(one(r, "rate_label"), int(one(r, "price")), int(one(r, "tier"), 0),
               int(one(r, "register_tier"), 0)) for r in of(0x00)]
    assert prices[0] == ("Standard", 2450, 1, 1)
    assert prices[1] == ("Day", 2450, 2, 2)
    # E7: Day now, then Night 00:30–07:30, Day, ... (GetScheduledPrices over 48 h)
    assert prices[2] == ("Day", 3127, 2, 2)
    assert prices[3:8] == [("Day", 3127, 2, 2), ("Night", 1545, 1, 1), ("Day", 3127, 2, 2),
                           ("Night", 1545, 1, 1), ("Day", 3127, 2, 2)]
    sched = of(0x00)[3:8]
    assert [one(r, "start_time") for r in sched] == [tshark_time(x) for x in (
        T0, T0 + 1800, T0 + 7 * 3600 + 1800, T0 + 86400 + 1800, T0 + 86400 + 7 * 3600 + 1800)]
    assert [int(one(r, "duration_in_minutes")) for r in sched] == [30, 420, 1020, 420, 1020]
    for r in of(0x00):
        assert int(one(r, "provider_id")) == 0xABCD and int(one(r, "currency"), 0) == 826
        assert int(one(r, "trailing_digit"), 0) == 4
    assert [int(one(r, "number_of_price_tiers"), 0) for r in of(0x00)][2:4] == [2, 2]
    assert ("Night", 1545, 1, 1) in prices[8:]  # the 00:30 push
    assert prices[-2:] == [("Promo", 1000, 1, 1), ("Promo", 1000, 1, 1)]
    assert one(of(0x00)[-1], "start_time") == tshark_time(T0 + 1800 + 120)
    assert int(one(of(0x00)[-1], "duration_in_minutes")) == 30
    assert [int(one(r, "issuer_event_id")) for r in of(0x00)][3] == T0 - ZCL_EPOCH

    infos = of(0x04)
    assert [(int(one(r, "issuer_tariff_id")), one(r, "tariff_information.tariff_label"))
            for r in infos] == [(7001, "Economy 7"), (7001, "Economy 7"), (7002, "Economy 7"),
                                (7003, "Economy 7")]
    for r in infos:
        assert int(one(r, "tariff_information.number_of_price_tiers_in_use")) == 2
        assert int(one(r, "tariff_information.standing_charge")) == 5312
        # SE 1.4 D.4.2.2.3.3: scaled thresholds compare with Metering's register (Wh)
        assert int(one(r, "tariff_information.block_threshold_divisor")) == 1
    assert [int(one(r, "tariff_information.number_of_block_thresholds_in_use"))
            for r in infos] == [0, 0, 2, 2]
    assert [int(one(r, "tariff_information.charging_scheme"), 0) for r in infos] == [0, 0, 2, 2]
    assert one(infos[2], "start_time") == tshark_time(T0 + 86400)

    matrices = of(0x05)
    tou = matrices[0]
    assert tou[P + "price_matrix.sub_payload_control"] == ["1"]
    assert tou[P + "price_matrix.tier"] == ["1", "2"]
    assert tou[P + "price_matrix.price"] == ["1545", "3127"]
    blocks = matrices[-1]
    assert blocks[P + "price_matrix.sub_payload_control"] == ["0"]
    assert blocks[P + "price_matrix.tier"] == ["1", "1", "1", "2", "2", "2"]
    assert blocks[P + "price_matrix.block"] == ["0", "1", "2", "0", "1", "2"]  # block - 1
    assert blocks[P + "price_matrix.price"] == ["1545", "1600", "1700", "3127", "3300", "3500"]
    for r in matrices:
        assert one(r, "command_index") == "0" and one(r, "total_number_of_commands") == "1"

    labels = of(0x08)
    assert all(r[P + "tier_labels.tier_label"] == ["Night", "Day"] for r in labels)
    assert all(r[P + "tier_labels.tier_id"] == ["1", "2"] for r in labels)
    thresholds = of(0x06)
    assert len(thresholds) == 3
    for r in thresholds:  # 5 and 15 kWh in Wh, the Metering register's units
        assert r[P + "block_threshold"] == ["5000", "15000"]
        assert r[P + "block_thresholds.sub_payload_control"] == ["1"]
        assert r[P + "tariff_information.number_of_block_thresholds"] == ["2"]
    (cf,) = of(0x02)
    assert (int(one(cf, "conversion_factor")), int(one(cf, "conversion_factor.trailing_digit")))\
        == (102264, 5)
    (cv,) = of(0x03)
    assert (int(one(cv, "calorific_value")), int(one(cv, "calorific_value.unit"), 0)) == (395, 1)
    (co2,) = of(0x07)
    assert (int(one(co2, "co2.value")), int(one(co2, "co2.unit"), 0)) == (233, 1)
    # monthly from 2024-01-01: the period of 2026-01-01 — pushed with each tariff that
    # took over (E7 and the block tariff), and answered to GetBillingPeriod
    billing = of(0x09)
    assert len(billing) == 3
    for bp in billing:
        assert one(bp, "billing_period.start_time") == tshark_time(T0)
        assert int(one(bp, "billing_period.duration")) == 1
        assert int(one(bp, "billing_period.duration.timebase"), 0) == 3  # months
    periods = of(0x01)
    assert len(periods) == 2  # the push when the block tariff began, and GetBlockPeriods
    for r in periods:  # daily from 2024-01-01: the day that began at T0
        assert one(r, "block_period.start_time") == tshark_time(T0)
        assert int(one(r, "block_period.duration")) == 1
        assert int(one(r, "block_period.duration.timebase"), 0) == 1  # days
    (cancel,) = [r for r in of(0x0E)][:1]
    assert len(of(0x0E)) == 2  # pushed, and the GetTariffCancellation answer
    for r in of(0x0E):
        assert int(one(r, "provider_id")) == 0xABCD
        # Wireshark labels CancelTariff's second field "Issuer Event ID"; SE 1.4 D.4.2.4.15
        # defines it as the Issuer Tariff ID.
        assert int(one(r, "issuer_event_id")) == 7002

    # what the client sent, as tshark reads it
    asked = decode(pcap, ["zbee_zcl_se.price.cmd.srv_rx.id", P + "command_options",
                          P + "number_of_events", P + "issuer_tariff_id", P + "tariff_type",
                          P + "min_issuer_event_id", P + "price_ack_time"],
                   where=f"zbee_aps.cluster == 0x0700 && zbee_nwk.src == 0x{han.nwk:04x}")
    ids = [r["zbee_zcl_se.price.cmd.srv_rx.id"][0] for r in asked]
    for command in range(0x00, 0x0C):
        assert f"0x{command:02x}" in ids
    assert "0x10" in ids
    assert [r[P + "issuer_tariff_id"] for r in asked if r["zbee_zcl_se.price.cmd.srv_rx.id"]
            == ["0x07"]] == [["7001"], ["999"], ["7003"]]
    acks = [r for r in asked if r["zbee_zcl_se.price.cmd.srv_rx.id"] == ["0x02"]]
    assert acks[0][P + "price_ack_time"] == [tshark_time(T0 + 5)]


async def test_publish_price_over_mqtt(tmp_path):
    broker = Broker(tmp_path).start()
    try:
        cfg = BridgeConfig(host="127.0.0.1", port=broker.port, publish_interval=0.1)
        meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:9e:02", tick_seconds=0.05,
                                       mqtt=cfg), clock=ManualClock(), air=VirtualAir())
        await meter.start()
        node = "000d6f0000009e02"
        try:
            async with aiomqtt.Client("127.0.0.1", broker.port) as c:
                await asyncio.wait_for(meter.bridge.connected.wait(), 10)
                await c.subscribe(f"sep/{node}/command/result", qos=1)
                await c.subscribe(f"sep/{node}/state", qos=1)
                await c.publish(f"sep/{node}/command/publish_price",
                                b'{"tier": 3, "unit_rate": 0.31, "label": "Peak", "id": 7}', qos=1)
                result = state = None
                async with asyncio.timeout(10):
                    async for msg in c.messages:
                        doc = json.loads(msg.payload)
                        if str(msg.topic).endswith("result"):
                            result = doc
                        elif result and doc["energy"]["import"].get("price", {}).get(
                                "unitrate") == 0.31:
                            state = doc
                            break
        finally:
            await meter.stop()
    finally:
        broker.stop()
    assert result == {"command": "publish_price", "id": 7, "ok": True, "tier": 3}
    assert state["energy"]["import"]["price"]["unitrate"] == 0.31
    assert meter.metering.registers.active_tier == 3
