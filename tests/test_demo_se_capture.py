"""A default `hubsim demo` run (60 s) puts the SE commands of ``hubsim/demo_se.py`` on the
air, each way it has — judged from its capture by tshark: nothing malformed, every
command between the nodes it belongs to, with the field values the script sent.

The capture is read with ``tests/tshark_tools.py``, which also passes tshark the keys of a
secured HAN when the demo writes them beside the capture (``FILE.keys``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from tshark_tools import fields, malformed, need_tshark

from hubsim import demo_se
from hubsim.demo import DEMO_TARIFF

# its session/module fixture runs a whole demo once: its tests stay on one xdist worker
pytestmark = pytest.mark.xdist_group("default_demo")

HUB = 0x0000
MET, PRI, MSG = "zbee_zcl_se.met", "zbee_zcl_se.price", "zbee_zcl_se.msg"


@pytest.fixture(scope="module")
def capture(default_demo) -> tuple[Path, int, int]:
    need_tshark()
    pcap, _stdout = default_demo  # tests/conftest.py: one run shared with test_demo_han.py
    # the meter answers GetProfile, the IHD asked it
    (row,) = fields(pcap, f"{MET}.cmd.srv_tx.id == 0x00", ["zbee_nwk.src", "zbee_nwk.dst"])
    return pcap, int(row[0], 16), int(row[1], 16)


_NAMES = [  # every field the tests read: one tshark pass over the capture
    f"{MET}.request_fast_poll_mode.fast_poll_update_period",
    f"{MET}.request_fast_poll_mode.duration", f"{MET}.start_sampling.sample_type",
    f"{MET}.start_sampling.sample_request_interval", f"{MET}.start_sampling.max_number_of_samples",
    f"{MET}.get_profile.interval_channel", f"{MET}.get_profile.number_of_periods",
    f"{MET}.change_supply.proposed_supply_status", f"{MET}.change_supply.supply_control_bits",
    f"{MET}.supply_status_response.supply_status_after_implementation",
    f"{MET}.get_sampled_data_rsp.samples", f"{MET}.publish_snapshot.snapshot_cause",
    f"{PRI}.credit_payment", f"{PRI}.credit_payment.ref", f"{PRI}.consolidated_bill",
    f"{PRI}.duration_in_minutes", f"{PRI}.cpp_price_tier", f"{PRI}.cpp_auth",
    f"{PRI}.new_currency", f"{PRI}.conversion_factor", f"{PRI}.tariff_information.type",
    f"{PRI}.tariff_information.tariff_label", f"{PRI}.rate_label", f"{PRI}.price",
    f"{MSG}.message.id", f"{MSG}.message",
]
_HEAD = ["zbee_nwk.src", "zbee_nwk.dst", "zbee_aps.cluster", f"{MET}.cmd.srv_rx.id",
         f"{MET}.cmd.srv_tx.id", f"{PRI}.cmd.srv_rx.id", f"{PRI}.cmd.srv_tx.id",
         f"{MSG}.cmd.srv_rx.id", f"{MSG}.cmd.srv_tx.id"]
_ROWS: dict[Path, list[list[str]]] = {}


def frames(pcap: Path, prefix: str, cluster: int, cmd: int, to_server: bool,
           names: list[str]) -> list[tuple[int, int, list[str]]]:
    """(src, dst, field values) of every frame of one cluster command, in air order."""
    if pcap not in _ROWS:
        _ROWS[pcap] = fields(pcap, "zbee_zcl.type == 1", _HEAD + _NAMES)
    column = _HEAD.index(f"{prefix}.cmd.{'srv_rx' if to_server else 'srv_tx'}.id")
    out = []
    for row in _ROWS[pcap]:
        if int(row[2], 16) != cluster or not row[column] or int(row[column], 0) != cmd:
            continue
        values = [row[len(_HEAD) + _NAMES.index(n)] for n in names]
        out.append((int(row[0], 16), int(row[1], 16), values))
    return out


def test_nothing_malformed(capture):
    pcap, _, _ = capture
    assert malformed(pcap) == ""


def test_metering_commands_both_ways(capture):
    pcap, meter, ihd = capture
    pairs = {  # (command to the meter, its answer): who asks
        (0x04, 0x04): HUB,  # ScheduleSnapshot
        (0x07, 0x0D): HUB,  # StartSampling
        (0x08, 0x07): HUB,  # GetSampledData
        (0x05, 0x05): ihd,  # TakeSnapshot
        (0x06, 0x06): ihd,  # GetSnapshot -> PublishSnapshot
        (0x00, 0x00): ihd,  # GetProfile
        (0x03, 0x03): ihd,  # RequestFastPollMode
        (0x0B, 0x0C): HUB,  # ChangeSupply -> SupplyStatusResponse
    }
    for (ask, answer), who in pairs.items():
        asked = frames(pcap, MET, 0x0702, ask, True, [])
        answered = frames(pcap, MET, 0x0702, answer, False, [])
        assert asked and all((s, d) == (who, meter) for s, d, _ in asked), hex(ask)
        assert {(s, d) for s, d, _ in answered} >= {(meter, who)}, hex(answer)
    # the scheduled snapshot went to the hub that scheduled it; the supply responses too
    published = frames(pcap, MET, 0x0702, 0x06, False, ["zbee_zcl_se.met.publish_snapshot"
                                                        ".snapshot_cause"])
    assert {(s, d) for s, d, _ in published} == {(meter, HUB), (meter, ihd)}
    assert {(s, d) for s, d, _ in frames(pcap, MET, 0x0702, 0x0C, False, [])} == {(meter, HUB)}
    # the values the script sent
    (_, _, fp), = frames(pcap, MET, 0x0702, 0x03, True, [
        f"{MET}.request_fast_poll_mode.fast_poll_update_period",
        f"{MET}.request_fast_poll_mode.duration"])
    assert tuple(int(v) for v in fp) == demo_se.FAST_POLL
    (_, _, ss), = frames(pcap, MET, 0x0702, 0x07, True, [
        f"{MET}.start_sampling.sample_type", f"{MET}.start_sampling.sample_request_interval",
        f"{MET}.start_sampling.max_number_of_samples"])
    assert [int(v) for v in ss] == [0, demo_se.SAMPLE_INTERVAL, demo_se.SAMPLES]
    (_, _, gp), = frames(pcap, MET, 0x0702, 0x00, True, [
        f"{MET}.get_profile.interval_channel", f"{MET}.get_profile.number_of_periods"])
    assert [int(v) for v in gp] == [0, demo_se.PROFILE_PERIODS]
    supply = frames(pcap, MET, 0x0702, 0x0B, True, [
        f"{MET}.change_supply.proposed_supply_status", f"{MET}.change_supply.supply_control_bits"])
    assert [[int(v, 0) for v in f] for _, _, f in supply] == [[0, 1], [2, 1]]
    after = frames(pcap, MET, 0x0702, 0x0C, False, [
        f"{MET}.supply_status_response.supply_status_after_implementation"])
    assert sorted(int(f[0]) for _, _, f in after) == [0, 2]
    sampled = frames(pcap, MET, 0x0702, 0x07, False, [f"{MET}.get_sampled_data_rsp.samples"])
    assert sampled and sampled[0][2][0]  # the samples crossed the air


def test_price_commands_both_ways(capture):
    pcap, meter, ihd = capture
    relayed = {  # Publish* that the ESI sends the meter and the meter sends the display
        0x04: "Publish Tariff Information", 0x09: "Publish Billing Period",
        0x0A: "Publish Consolidated Bill", 0x0B: "Publish CPP Event",
        0x0C: "Publish Credit Payment", 0x0D: "Publish Currency Conversion",
    }
    for cmd, name in relayed.items():
        hops = {(s, d) for s, d, _ in frames(pcap, PRI, 0x0700, cmd, False, [])}
        assert {(HUB, meter), (meter, ihd)} <= hops, name
    asks = {0x03: 0x01, 0x0B: 0x09, 0x0C: 0x0A, 0x0E: 0x0C, 0x0F: 0x0D}  # Get* -> Publish*
    for ask in asks:
        assert {(s, d) for s, d, _ in frames(pcap, PRI, 0x0700, ask, True, [])} >= {(ihd, meter)}
    cpp_answers = {(s, d) for s, d, _ in frames(pcap, PRI, 0x0700, 0x0D, True, [])}
    assert cpp_answers == {(meter, HUB), (ihd, meter)}  # CPPEventResponse, both hops
    # values as sent
    credit = frames(pcap, PRI, 0x0700, 0x0C, False, [f"{PRI}.credit_payment",
                                                      f"{PRI}.credit_payment.ref"])
    assert {(int(f[0]), f[1]) for _, _, f in credit} == {(demo_se.CREDIT_PAYMENT,
                                                          demo_se.CREDIT_REF.decode())}
    bills = frames(pcap, PRI, 0x0700, 0x0A, False, [f"{PRI}.consolidated_bill"])
    assert {int(f[0]) for _, _, f in bills} == {demo_se.CONSOLIDATED_BILL}
    cpp = frames(pcap, PRI, 0x0700, 0x0B, False, [f"{PRI}.duration_in_minutes",
                                                   f"{PRI}.cpp_price_tier", f"{PRI}.cpp_auth"])
    assert {(int(f[0]), int(f[1])) for _, _, f in cpp} == {(demo_se.CPP_MINUTES, 0)}
    assert {int(f[2]) for _, _, f in cpp} == {0, 1}  # pending, then accepted
    conv = frames(pcap, PRI, 0x0700, 0x0D, False, [f"{PRI}.new_currency",
                                                    f"{PRI}.conversion_factor"])
    assert {(int(f[0], 16), int(f[1])) for _, _, f in conv} == {(demo_se.NEW_CURRENCY, 117)}
    received = frames(pcap, PRI, 0x0700, 0x04, False, [f"{PRI}.tariff_information.type",
                                                        f"{PRI}.tariff_information.tariff_label"])
    assert (1, "Demo export") in {(int(f[0], 0), f[1]) for _, _, f in received}
    # the CPP price went from the ESI to the meter and on to the display
    cpp_prices = frames(pcap, PRI, 0x0700, 0x00, False, [f"{PRI}.rate_label", f"{PRI}.price"])
    assert {(s, d) for s, d, f in cpp_prices if f[0] == "CPP1"} >= {(HUB, meter), (meter, ihd)}
    assert {int(f[1]) for _, _, f in cpp_prices if f[0] == "CPP1"} == {9000}  # 0.9000/kWh


def test_messaging_cancel_both_hops(capture):
    pcap, meter, ihd = capture
    cancels = frames(pcap, MSG, 0x0703, 0x01, False, [f"{MSG}.message.id"])
    assert {(s, d, int(f[0], 0)) for s, d, f in cancels} == {
        (HUB, meter, demo_se.MESSAGE_ID), (meter, ihd, demo_se.MESSAGE_ID)}
    shown = frames(pcap, MSG, 0x0703, 0x00, False, [f"{MSG}.message.id", f"{MSG}.message"])
    assert (meter, ihd, demo_se.MESSAGE_ID, demo_se.MESSAGE) in {
        (s, d, int(f[0], 0), f[1]) for s, d, f in shown}


def test_publish_block_period_answers_the_display(capture):
    """GetBlockPeriods → PublishBlockPeriod (a wave-1 command 15 asked to see on the air):
    the meter answers the display with the tariff file's block period — daily from a UTC
    midnight (SE 1.4 D.4.2.4.2: duration 1, timebase 1 = days)."""
    pcap, meter, ihd = capture
    asked = frames(pcap, PRI, 0x0700, 0x03, True, [])
    assert {(s, d) for s, d, _ in asked} == {(ihd, meter)}
    rows = fields(pcap, f"{PRI}.cmd.srv_tx.id == 0x01", [
        "zbee_nwk.src", "zbee_nwk.dst", f"{PRI}.block_period.start_time",
        f"{PRI}.block_period.duration", f"{PRI}.block_period.duration.timebase",
        f"{PRI}.tariff_type"])
    period = tomllib.loads(DEMO_TARIFF.read_text())["blocks"]["period"]
    timebase = {"minutes": 0, "days": 1, "weeks": 2, "months": 3}[period["timebase"]]
    assert rows and {(int(r[0], 16), int(r[1], 16)) for r in rows} == {(meter, ihd)}
    for _src, _dst, start, duration, base, tariff_type in rows:
        assert start.endswith(" 00:00:00.000000000 UTC"), start
        assert (int(duration), int(base, 0), int(tariff_type, 0)) == (
            period["duration"], timebase, 0)
