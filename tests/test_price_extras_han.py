"""CPP events, credit payments, consolidated bills, currency conversion and the export
(received) tariff across the whole HAN: the supplier's ESI on the comms hub → the meter
(a client of the ESI, answering its CPP event) → the in-home display (a client of the
meter, answering and asking in turn).

Judged by tshark (every command decoded with the field values sent, nothing malformed);
the IHD reads the answers with zigpy; numbers are the tariff file's (CPP price, export
rates, the currency factor applied as SE 1.4 D.4.2.4.14 says: money x factor, here rounded
half up to the price trailing digits).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from tshark_tools import Z2000, commands, malformed, need_tshark, tshark_time
from waiting import until

from hubsim.hub import CommsHub
from hubsim.ihd import InHomeDisplay
from radios.air import VirtualAir
from radios.pcap import PcapWriter
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.meter.tariff import parse_tariff

PRI = "zbee_zcl_se.price"
START = int(dt.datetime(2026, 6, 1, 15, 30, tzinfo=dt.UTC).timestamp())
METER_IEEE = "00:0d:6f:00:00:00:ab:88"
TARIFF = """
provider_id = 0x0000ABCD
issuer_tariff_id = 5001
label = "Wave2 TOU"
currency = 826
price_trailing_digits = 4
timezone = "UTC"
standing_charge = "0.5312"
[[tiers]]
tier = 1
label = "Night"
rate = "0.1500"
[[tiers]]
tier = 2
label = "Day"
rate = "0.2700"
[[schedule]]
switches = { "00:00" = 1, "07:00" = 2 }
[billing_period]
start = 2026-01-01T00:00:00Z
duration = 1
timebase = "months"
[cpp]
cpp1_rate = "0.9000"
cpp2_rate = "1.2000"
[export]
issuer_tariff_id = 5002
label = "Export"
[[export.tiers]]
tier = 1
label = "Export"
rate = "0.0500"
[[export.tiers]]
tier = 2
label = "Export pk"
rate = "0.1500"
[[export.schedule]]
switches = { "00:00" = 1, "16:00" = 2 }
"""


class Han:
    def __init__(self, tmp) -> None:
        self.pcap = tmp / "air.pcap"
        self.air = VirtualAir()
        self.writer = PcapWriter(self.pcap).capture(self.air)  # and its keys
        self.clock = ManualClock(START)
        self.tariff = parse_tariff(TARIFF)
        self.hub = CommsHub(air=self.air, clock=self.clock.now, tariff=self.tariff)
        self.meter = MeterApp(MeterSettings(ieee=METER_IEEE, seed=3, solar_peak_w=3000,
                                            tick_seconds=3600, supplier_search_interval=0.5),
                              clock=self.clock, air=self.air)
        self.ihd = InHomeDisplay(air=self.air, clock=self.clock.now, report_max=3600)
        self.esi = self.hub.supplier

    async def start(self) -> None:
        await self.hub.start()
        self.hub.supplier.tick_seconds = 3600  # the test ticks it
        await self.meter.start()
        await self.hub.wait_interviewed(METER_IEEE)
        await until(lambda: self.meter.price.tariff.export is not None
                    and self.meter.price.tariff.export.tier(2).rate == Decimal("0.1500"), 10)
        await self.ihd.start()
        await self.ihd.connect()

    async def stop(self) -> None:
        await asyncio.sleep(0.2)
        await self.ihd.stop()
        await self.meter.stop()
        await self.hub.stop()
        self.writer.close()

    async def tick(self) -> None:
        now = self.clock.now()
        for reply in self.meter.endpoint.reports(now):
            self.meter._send(reply)
        self.esi.price.tick(now)
        self.esi.flush()
        for _ in range(5):
            await asyncio.sleep(0.02)

    async def step(self, seconds: int, step: int = 60) -> None:
        for _ in range(seconds // step):
            self.clock.advance(step)
            await self.meter.poll_metrology()
            await self.tick()


def money(x: str, factor: str) -> Decimal:
    return (Decimal(x) * Decimal(factor)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


async def test_cpp_credit_bills_currency_and_export_across_the_han(tmp_path):
    need_tshark()
    han = Han(tmp_path)
    await han.start()
    esi, meter, ihd = han.esi.price, han.meter.price, han.ihd
    ihd_answers: list = []

    def on_ihd_price(tsn, cid, args):  # the householder opts in to a pending CPP event
        if cid == 0x0B and int(args.cpp_auth) == 0:
            ihd_answers.append(int(args.issuer_event_id))
            asyncio.get_running_loop().create_task(
                ihd.price.cpp_event_response(int(args.issuer_event_id), 1))

    ihd.price.add_listener(type("L", (), {"cluster_command": staticmethod(on_ihd_price)})())
    try:
        t0 = int(han.clock.t)
        # -- the export tariff reached the meter; the IHD asks the meter for it
        info = await ihd.price.get_tariff_information(0, 0xFFFFFFFF, 1, 0x01)
        assert (int(info.issuer_tariff_id), bytes(info.tariff_label)) == (5002, b"Export")
        assert int(info.tariff_type_charging_scheme) & 0x0F == 1
        price = await ihd.price.get_current_price(0x01)
        assert (int(price.generation_price), int(price.generation_tier)) == (500, 1)
        # -- a CPP event: pending at the ESI, answered by the meter, confirmed to it
        cpp = esi.publish_cpp_event(start=t0 + 600, duration_minutes=30, price_tier=0, now=t0)
        han.esi.flush()
        await until(lambda: meter.cpp_events.get(cpp.issuer_event_id) is not None
                    and meter.cpp_events[cpp.issuer_event_id].auth == 1, 5)
        await until(lambda: ihd_answers and meter.cpp_events[cpp.issuer_event_id].responses, 5)
        assert list(esi.cpp_events[cpp.issuer_event_id].responses.values()) == [1]
        # -- a credit payment and a consolidated bill from the supplier, asked by the IHD
        may = int(dt.datetime(2026, 5, 1, tzinfo=dt.UTC).timestamp())
        esi.publish_credit_payment(due_date=t0 + 14 * 86400, overdue_amount=0, status=1,
                                   payment=4250, payment_date=t0 - 86400, ref=b"DD-0042",
                                   now=t0)
        esi.publish_consolidated_bill(start=may, amount=612345, now=t0)
        han.esi.flush()
        await until(lambda: meter.credit_payments and meter.bills, 5)
        pay = await ihd.price.get_credit_payment(0, 5)
        bill = await ihd.price.get_consolidated_bill(0, 0xFFFFFFFF, 0, 0x00)
        last_bill = await ihd.price.read_attributes([0x0704], allow_cache=False)
        # -- the CPP event starts: the ESI's price is CPP1, the meter's and the IHD's follow
        await han.step(11 * 60)
        await until(lambda: meter.current is not None and meter.current.label == "CPP1", 5)
        assert meter.current.unit_rate == Decimal("0.9000")
        await until(lambda: getattr(ihd.view.prices.price(han.clock.now()), "label", "")
                    == "CPP1", 5)
        assert ihd.view.prices.price(han.clock.now()).rate == Decimal("0.9000")
        # -- the export tier changed at 16:00, the CPP event ended at 16:10: the ESI's price
        # from then on carries export tier 2, and the meter books export to it
        await han.step(21 * 60)
        await until(lambda: han.meter.price.export_price_at(han.clock.now())[0] == 2, 5)
        await han.step(60)  # the next reading's tick moves the received register tier
        assert han.meter.metering.registers.active_received_tier == 2
        rx_tier = await han.ihd.metering.read_attributes([0x0021], allow_cache=False)
        # -- a currency conversion (x1.17, billing information converted)
        t1 = int(han.clock.t)
        conv = esi.publish_currency_conversion(new_currency=978, factor="1.17", start=t1 + 300,
                                               flags=0x02, now=t1)
        han.esi.flush()
        await until(lambda: meter.currency_conversion is not None, 5)
        asked = await ihd.price.get_currency_conversion()
        await han.step(6 * 60)
        await until(lambda: meter.tariff.currency == 978, 5)
        converted = meter.tariff
        after = await ihd.price.get_tariff_information(0, 0xFFFFFFFF, 1, 0x00)
        bills_after = list(meter.bills)
    finally:
        await han.stop()
    # -- values as the IHD (zigpy) parsed them
    assert (int(pay.credit_payment), bytes(pay.credit_payment_ref), int(pay.credit_payment_status)
            ) == (4250, b"DD-0042", 1)
    assert int(pay.credit_payment_date) == t0 - 86400 - Z2000
    assert (int(bill.consolidated_bill), int(bill.billing_period_start_time),
            int(bill.bill_trailing_digit) >> 4) == (612345, may - Z2000, 4)
    assert last_bill[0][0x0704] == 612345
    assert int(rx_tier[0][0x0021]) == 2
    assert (int(asked.old_currency), int(asked.new_currency), int(asked.conversion_factor),
            int(asked.conversion_factor_trailing_digit) >> 4) == (826, 978, 117, 2)
    assert converted.currency == 978
    assert converted.standing_charge == money("0.5312", "1.17")
    assert [x.rate for x in converted.tiers] == [money("0.1500", "1.17"), money("0.2700", "1.17")]
    assert converted.cpp_rates == ()  # a supplier-fed meter knows no CPP prices of its own
    assert int(after.currency) == 978
    assert int(after.standing_charge) == int(money("0.5312", "1.17") * 10_000)
    assert [b.amount for b in bills_after] == [int((Decimal(612345) * Decimal("1.17")).quantize(
        Decimal(1), rounding=ROUND_HALF_UP))]
    assert conv.issuer_event_id == int(asked.issuer_event_id)
    # -- the air, as tshark reads it
    pcap = han.pcap
    assert malformed(pcap) == ""
    meter_nwk, ihd_nwk = han.meter.nwk, int(han.ihd.app.state.node_info.nwk)
    cpps = commands(pcap, 0x0700, PRI, "", 0x0B, ["zbee_nwk.src", "zbee_nwk.dst",
                                                   "issuer_event_id", "start_time",
                                                   "duration_in_minutes", "cpp_price_tier",
                                                   "cpp_auth"], to_server=False)
    seen = {(int(r[0], 16), int(r[1], 16), int(r[6])) for r in cpps.values()}
    assert {(0x0000, meter_nwk, 0), (0x0000, meter_nwk, 1), (meter_nwk, ihd_nwk, 0),
            (meter_nwk, ihd_nwk, 1)} <= seen
    assert all(int(r[2]) == cpp.issuer_event_id and tshark_time(r[3]) == t0 + 600
               and int(r[4]) == 30 and int(r[5]) == 0 for r in cpps.values())
    answers = commands(pcap, 0x0700, PRI, "", 0x0D, ["zbee_nwk.src", "zbee_nwk.dst",
                                                      "issuer_event_id", "cpp_auth"],
                       to_server=True)
    assert {(int(r[0], 16), int(r[1], 16), int(r[2]), int(r[3])) for r in answers.values()} == {
        (meter_nwk, 0x0000, cpp.issuer_event_id, 1), (ihd_nwk, meter_nwk, cpp.issuer_event_id, 1)}
    credit = commands(pcap, 0x0700, PRI, "", 0x0C, ["zbee_nwk.dst", "credit_payment",
                                                     "credit_payment.ref",
                                                     "credit_payment.date"], to_server=False)
    assert {(int(r[0], 16), int(r[1]), r[2]) for r in credit.values()} == {
        (meter_nwk, 4250, "DD-0042"), (ihd_nwk, 4250, "DD-0042")}
    assert {tshark_time(r[3]) for r in credit.values()} == {t0 - 86400}
    asks = commands(pcap, 0x0700, PRI, "", 0x0E, ["latest_end_time", "number_of_records"],
                    to_server=True)
    assert [int(r[1]) for r in asks.values()] == [5]
    bills = commands(pcap, 0x0700, PRI, "", 0x0A, ["consolidated_bill", "start_time",
                                                    "consolidated_bill.trailing_digit"],
                     to_server=False)
    assert {int(r[0]) for r in bills.values()} >= {612345}
    assert {tshark_time(r[1]) for r in bills.values()} == {may}
    convs = commands(pcap, 0x0700, PRI, "", 0x0D, ["old_currency", "new_currency",
                                                    "conversion_factor",
                                                    "currency_change_control_flags"],
                     to_server=False)
    assert {(int(r[0], 16), int(r[1], 16), int(r[2]), int(r[3], 16)) for r in convs.values()} \
        == {(826, 978, 117, 2)}
    infos = commands(pcap, 0x0700, PRI, "", 0x04, ["issuer_tariff_id",
                                                    "tariff_information.type"], to_server=False)
    assert (5002, 1) in {(int(r[0]), int(r[1], 0)) for r in infos.values()}
    gens = commands(pcap, 0x0700, PRI, "", 0x00, ["generation_price", "generation_tier"],
                    to_server=False)
    assert {(int(a), int(b, 0)) for a, b in gens.values() if a} >= {(500, 1), (1500, 2)}
