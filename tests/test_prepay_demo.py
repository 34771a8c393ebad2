"""The prepayment demo, judged by tshark, and the default `hubsim demo` as a user runs it.

The scenario run enters top-up codes this test makes itself (the demo tariff's HMAC
layout, computed here with Python's hmac); tshark 4.0 must decode every Prepayment command
that crossed the air and the gas meter's RequestMirror / RequestMirrorResponse /
ConfigureMirror, with the values sent, and find nothing malformed. The default demo, run as
a command, must show the credit, a top-up from the PPMID, and gas on the IHD in m³ and
kWh (converted here from the gas tariff's conversion factor and calorific value).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import re
import struct
import subprocess
import sys
import time
import tomllib
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console

from hubsim.demo import DEMO_GAS_TARIFF, DEMO_TARIFF, IHD_IEEE, DemoOptions, render, run_demo
from radios.air import VirtualAir
from sep.clock import ScaledClock
from tests import tshark_util as ts
from tests.tou_oracle import Schedule

BIN = Path(sys.executable).parent
PP = "zbee_zcl_se.pp"
MET = "zbee_zcl_se.met"


def demo_code(serial: int, pence: int) -> str:
    """A code in hubsim/data/demo_tariff.toml's layout, made from the file's own keys."""
    layout = tomllib.loads(DEMO_TARIFF.read_text())["prepayment"]["top_up_code"]
    payload = f"{serial:0{layout['serial_digits']}d}{pence:0{layout['amount_digits']}d}"
    mac = hmac.new(bytes.fromhex(layout["key"]), payload.encode(), hashlib.sha256).digest()
    digits = layout["check_digits"]
    return payload + f"{int.from_bytes(mac[:8], 'big') % 10**digits:0{digits}d}"


def rows(pcap: Path, display: str, names: list[str]) -> list[list[str]]:
    return ts.fields(pcap, display, names)


def pp_cmd(pcap: Path, cmd: int, names: list[str], *, to_server: bool) -> list[list[str]]:
    direction = "srv_rx" if to_server else "srv_tx"
    return rows(pcap, f"zbee_aps.cluster == 0x0705 && zbee_zcl.type == 1 && "
                      f"{PP}.cmd.{direction}.id == {cmd}", names)


@ts.requires_tshark
async def test_prepayment_scenario_as_tshark_decodes_it(tmp_path):
    pcap = tmp_path / "prepay.pcap"
    code = demo_code(777, 500)  # £5.00
    result = await run_demo(DemoOptions(
        duration=20, pcap=pcap, speed=1800, scenario="prepayment", live=False,
        top_up_codes=[code], script=False))
    lines = "\n".join(result.scenario)
    # the story 16.4 tells, in its order: low credit, emergency credit selected, the supply
    # interrupted and not restorable before a top-up, a top-up, the restore, a refused replay
    story = ["low credit:", "PPMID selects emergency credit: SUCCESS",
             "credit exhausted: supply interrupted (armed)",
             "PPMID restore before topping up: ACTION_DENIED", "PPMID top-up ",
             "PPMID restores the supply: SUCCESS", "the same code again: code already used"]
    at = [next((i for i, line in enumerate(result.scenario) if step in line), -1)
          for step in story]
    assert -1 not in at and at == sorted(at), lines
    assert ts.malformed(pcap) == ""
    # the low-credit warning reached the displays as a message from the meter (Messaging)
    ihd_nwk = {int(r[0], 0) for r in rows(pcap, f"zbee_nwk.src64 == {IHD_IEEE}",
                                          ["zbee_nwk.src"])}
    shown = rows(pcap, "zbee_zcl_se.msg.cmd.srv_tx.id == 0x00",
                 ["zbee_nwk.dst", "zbee_zcl_se.msg.message.id", "zbee_zcl_se.msg.message"])
    low = [r for r in shown if int(r[1], 0) == 0x07050001]
    assert low and {int(r[0], 0) for r in low} & ihd_nwk
    assert all(r[2].startswith("Low credit: ") for r in low)
    check_live_view(result, pcap, ihd_nwk)

    # the consumer's commands: the test's code twice (accepted, then a duplicate)
    tops = pp_cmd(pcap, 4, [f"{PP}.consumer_top_up.originating_device",
                            f"{PP}.consumer_top_up.top_up_code"], to_server=True)
    assert [(int(r[0]), ts.octets(r[1]).decode()) for r in tops] == [(2, code), (2, code)]
    answers = pp_cmd(pcap, 3, [f"{PP}.consumer_top_up_response.result_type",
                               f"{PP}.consumer_top_up_response.top_up_value",
                               f"{PP}.consumer_top_up_response.source_of_top_up"],
                     to_server=False)
    # Accepted – Supply Armed (0x12) for £5.00 = 50000 units of 0.0001 GBP; then
    # Rejected – Duplicate Top Up (0x02), nothing added
    assert [tuple(int(x) for x in r) for r in answers] == [(0x12, 50_000, 2), (0x02, 0, 2)]
    [ec] = pp_cmd(pcap, 0, [f"{PP}.select_available_emc.originating_device"], to_server=True)
    assert int(ec[0]) == 2

    # the supplier's commands, with the scenario's terms (hubsim/scenarios.py)
    [mode] = pp_cmd(pcap, 6, [f"{PP}.change_payment_mode.provider_id",
                              f"{PP}.change_payment_mode.payment_control_configuration",
                              f"{PP}.attr.payment_control_configuration.prepayment_enabled",
                              f"{PP}.attr.payment_control_configuration.disconnection_enabled",
                              f"{PP}.change_payment_mode.cut_off_value"], to_server=True)
    assert int(mode[0], 0) == 0xABCD and int(mode[4]) == 0
    assert int(mode[1], 0) == 0x0001 | 0x0002 | 0x0010 | 0x0080
    [mode_rsp] = pp_cmd(pcap, 2, [f"{PP}.change_payment_mode_response.emc_limit",
                                  f"{PP}.change_payment_mode_response.emc_threshold"],
                        to_server=False)
    assert [int(x) for x in mode_rsp] == [2500, 2000]
    [setup] = pp_cmd(pcap, 3, [f"{PP}.emc_setup.emc_limit", f"{PP}.emc_setup.emc_threshold"],
                     to_server=True)
    assert [int(x) for x in setup] == [2500, 2000]
    [adjust] = pp_cmd(pcap, 5, [f"{PP}.credit_adjustment.credit_adjustment_type",
                                f"{PP}.credit_adjustment.credit_adjustment_value"], to_server=True)
    assert [int(x) for x in adjust] == [1, 4000]  # absolute, £0.40
    [debt] = pp_cmd(pcap, 2, [f"{PP}.change_debt.debt_label", f"{PP}.change_debt.debt_amount",
                              f"{PP}.change_debt.recovery_method",
                              f"{PP}.change_debt.amount_type",
                              f"{PP}.change_debt.recovery_frequency",
                              f"{PP}.change_debt.recovery_amount"], to_server=True)
    assert ts.octets(debt[0])[1:] == b"Arrears"  # tshark shows the length octet too
    assert [int(x) for x in debt[1:]] == [30_000, 0, 0, 0, 500]
    [low] = pp_cmd(pcap, 9, [f"{PP}.set_low_credit_warning_level.low_credit_warning_level"],
                   to_server=True)
    assert int(low[0]) == 3000
    [limit] = pp_cmd(pcap, 11, [f"{PP}.set_maximum_credit_limit.max_credit_level",
                                f"{PP}.set_maximum_credit_limit.max_credit_per_top_up"],
                     to_server=True)
    assert [int(x) for x in limit] == [2_500_000, 1_000_000]
    [cap] = pp_cmd(pcap, 12, [f"{PP}.set_overall_debt_cap_limit.overall_debt_cap"],
                   to_server=True)
    assert int(cap[0]) == 0x7FFFFFFF

    # the logs the supplier read back: what it asked (hubsim/prepay_supplier.py) ...
    [ask_top_ups] = pp_cmd(pcap, 8, [f"{PP}.get_top_up_log.number_of_records"], to_server=True)
    [ask_debts] = pp_cmd(pcap, 10, [f"{PP}.get_debt_repayment_log.number_of_records",
                                    f"{PP}.get_debt_repayment_log.debt_type"], to_server=True)
    [ask_snap] = pp_cmd(pcap, 7, [f"{PP}.get_prepay_snapshot.snapshot_offset",
                                  f"{PP}.get_prepay_snapshot.snapshot_cause"], to_server=True)
    assert int(ask_top_ups[0]) == 5 and [int(x, 0) for x in ask_debts] == [5, 0xFF]
    assert int(ask_snap[0]) == 0 and int(ask_snap[1], 16) == 0xFFFFFFFF
    # ... and what it got
    [log] = pp_cmd(pcap, 5, [f"{PP}.publish_top_up_log.top_up_code",
                             f"{PP}.publish_top_up_log.top_up_amount"], to_server=False)
    assert ts.octets(log[0]).decode() == code and int(log[1]) == 50_000
    debt_log = pp_cmd(pcap, 6, [f"{PP}.publish_debt_log.amount_collected",
                                f"{PP}.publish_debt_log.debt_type",
                                f"{PP}.publish_debt_log.outstanding_debt"], to_server=False)
    [[collected, kinds, outstanding]] = debt_log
    collected_n = [int(x) for x in collected.split(ts.AGG)]
    assert collected_n and set(collected_n) == {500}  # 5p an hour, newest first
    assert set(kinds.split(ts.AGG)) == {"0"}
    owed = [int(x) for x in outstanding.split(ts.AGG)]
    # what was left after each collection, newest first: 5p apart, from the £3.00 owed
    assert owed[-1] == 30_000 - 500
    assert all(older - newer == 500 for newer, older in zip(owed, owed[1:], strict=False))
    [snap] = pp_cmd(pcap, 1, [f"{PP}.publish_prepay_snapshot.snapshot_payload_type",
                              f"{PP}.publish_prepay_snapshot.snapshot_payload"], to_server=False)
    assert int(snap[0]) == 0  # Debt/Credit Status: tshark leaves it as bytes; the SE layout
    accumulated, t1, t2, t3, ec_left, credit = struct.unpack("<iIIIii", ts.octets(snap[1]))
    assert accumulated == t1 and t2 == t3 == 0 and 0 < t1 < 30_000 and ec_left == 2500

    # the gas meter and its mirror
    met = "zbee_aps.cluster == 0x0702 && zbee_zcl.type == 1"
    # the gas meter's address is its own (stochastic): found by its IEEE
    gas = {int(r[0], 0) for r in rows(pcap, "zbee_nwk.src64 == 00:0d:6f:00:00:00:6a:51",
                                      ["zbee_nwk.src"])}
    assert len(gas) == 1
    gas_nwk = gas.pop()
    asks = rows(pcap, f"{met} && {MET}.cmd.srv_tx.id == 1", ["wpan.src16", "wpan.dst16"])
    assert asks and all(int(a[0], 0) == gas_nwk and int(a[1], 0) == 0x0000 for a in asks)
    [given] = rows(pcap, f"{met} && {MET}.cmd.srv_rx.id == 1",
                   [f"{MET}.request_mirror_rsp.endpoint_id", "wpan.dst16"])
    assert int(given[0]) == 0x40 and int(given[1], 0) == gas_nwk
    [configure] = rows(pcap, f"{met} && {MET}.cmd.srv_tx.id == 8",
                       [f"{MET}.configure_mirror.reporting_interval",
                        f"{MET}.configure_mirror.mirror_notification_reporting",
                        "zbee_aps.dst"])
    assert int(configure[0]) == 1800 and configure[1] in ("0", "False")
    assert int(configure[2]) == 0x40
    assert result.gas is not None and result.gas.summation is not None


def check_live_view(result, pcap: Path, ihd: set[int]) -> None:
    """The live view (what `hubsim demo` draws on a terminal) shows today's schedule, the
    meter's events and the tenancy news as the display received them over the air (tshark);
    the schedule is one of the calendars in play — the tariff file's or those
    hubsim/demo_han.py publishes — with the file's tier labels."""
    console = Console(record=True, width=200, file=io.StringIO(), color_system=None)
    console.print(render(result.view, VirtualAir(), ScaledClock(start=result.now),
                         time.monotonic(), ppmid=result.ppmid, gas=result.gas))
    shown = {m.group(1): m.group(2).strip() for m in re.finditer(
        r"^\W*(Schedule today|Meter events|Tenancy|Keep-alive)\s+(.*?)\s*[│|]?$",
        console.export_text(), re.M)}
    to_ihd = "zbee_nwk.dst in {" + ",".join(f"0x{n:04x}" for n in ihd) + "}"
    doc = tomllib.loads(DEMO_TARIFF.read_text())
    label = {tier["tier"]: tier["label"] for tier in doc["tiers"]}
    today = dt.datetime.fromtimestamp(result.now, ZoneInfo(doc["timezone"])).date()
    weekday = today.weekday() < 5
    known = [Schedule.from_text(DEMO_TARIFF.read_text()).profile(today),
             [(0, 1), (420, 2), (960, 3), (1200, 2)],  # "Winter peak"
             [(0, 1), (420, 2), (960, 3), (1140, 2)] if weekday else  # "Weekend saver"
             [(0, 1), (600, 2), (1320, 1)]]
    texts = [" · ".join(f"{m // 60:02d}:{m % 60:02d} {label[tier]}" for m, tier in day)
             for day in known]
    names = [r[0] for r in rows(pcap, f"zbee_zcl_se.calendar.cmd.srv_tx.id == 0x00 && {to_ihd}",
                                ["zbee_zcl_se.calendar.name"])]
    schedule, _, name = shown["Schedule today"].rpartition("  (")
    # a run that ends while the last calendar's day profile is still arriving (a loaded
    # machine) shows its first entries only: they must be the file's, in order
    assert any(text == schedule or text.startswith(schedule + " · ") for text in texts) \
        and names and name == f"{names[-1]})", (shown, names)
    # the events: as many in the log as the last PublishEventLog to the display said
    logs = rows(pcap, f"zbee_zcl_se.events.cmd.srv_tx.id == 0x01 && {to_ihd}",
                ["zbee_zcl_se.events.publish_event_log.event_id",
                 "zbee_zcl_se.events.publish_event_log.event_time"])
    assert logs and re.fullmatch(rf"{int(logs[-1][0].split(ts.AGG)[0])} in log, \d+ pushed; "
                                 r"last: .+ \d\d:\d\d", shown["Meter events"]), shown
    # tenancy: the newest Device Management event the display got (SE 1.4 event ids)
    news = {0x06C0: "tenancy change announced", 0x06C1: "tenancy changed",
            0x06C2: "tenancy change cancelled", 0x06C4: "supplier change announced",
            0x06C5: "supplier changed"}
    got = [(ids.split(ts.AGG)[1:], times.split(ts.AGG)) for ids, times in logs]
    got += [([i], [w]) for i, w in rows(pcap, f"zbee_zcl_se.events.cmd.srv_tx.id == 0x00 && "
                                             f"{to_ihd}",
                                        ["zbee_zcl_se.events.publish_event.event_id",
                                         "zbee_zcl_se.events.publish_event.event_time"])]

    def when(text: str) -> dt.datetime:  # tshark's "Dec  8, 2026 16:22:00.000000000 UTC"
        month, day, year, hms = text.split()[:4]
        return dt.datetime.strptime(f"{month} {day} {year} {hms[:8]}", "%b %d, %Y %H:%M:%S")

    newest = max((when(w), int(i, 16)) for ids, times in got
                 for i, w in zip(ids, times, strict=True) if int(i, 16) in news)
    assert shown["Tenancy"] == f"{news[newest[1]]} {newest[0]:%H:%M}", shown
    assert shown["Keep-alive"].startswith("trust centre OK"), shown


def test_default_demo_shows_credit_a_top_up_and_gas(tmp_path):
    proc = subprocess.run(
        [str(BIN / "hubsim"), "demo", "--duration", "20", "--no-live", "--data", str(tmp_path)],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    [ppmid] = [line for line in out.splitlines() if line.startswith("PPMID credit")]
    assert "(prepayment)" in ppmid and "last top-up: accepted, supply on" in ppmid
    credit = Decimal(ppmid.split("credit £")[1].split(" ")[0].replace(",", ""))
    # £5.00 opening credit + a £10.00 top-up, less what was drawn and collected in 20 min
    assert Decimal("12") < credit < Decimal("15")
    [gas] = [line for line in out.splitlines() if line.startswith("IHD gas ")]
    m3 = Decimal(gas.split("IHD gas ")[1].split(" m³")[0].replace(",", ""))
    kwh = Decimal(gas.split("= ")[1].split(" kWh")[0].replace(",", ""))
    tariff = tomllib.loads(DEMO_GAS_TARIFF.read_text())["gas"]
    want = m3 * Decimal(tariff["conversion_factor"]) * Decimal(tariff["calorific_value"]) / \
        Decimal("3.6")
    assert abs(kwh - want) <= Decimal("0.05"), (kwh, want)
    assert m3 >= Decimal("1234.567")  # the gas meter's register at start, or later


def test_scenario_listing_and_unknown_scenario():
    listing = subprocess.run([str(BIN / "hubsim"), "demo", "--scenario"], capture_output=True,
                             text=True, timeout=60)
    assert listing.returncode == 0 and "prepayment" in listing.stdout
    unknown = subprocess.run([str(BIN / "hubsim"), "demo", "--scenario", "picnic"],
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "picnic" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_sep_meter_ppmid_must_be_an_ieee_address():
    proc = subprocess.run([str(BIN / "sep"), "meter", "--ppmid", "nonsense", "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--ppmid" in proc.stderr and "Traceback" not in proc.stderr
