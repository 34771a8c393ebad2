"""A default `hubsim demo` (60 s) carries every Calendar, Device Management, Events and
Keep-Alive command, in both directions where a command has two legs; tshark decodes each
one from the capture, none malformed, with the values the demo script sent.

When the demo writes a keys file next to the capture (``air.keys``, a secured HAN), its
keys are given to tshark.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tshark_se import decode, malformed, needs_tshark, nwk_of

# its session/module fixture runs a whole demo once: its tests stay on one xdist worker
pytestmark = pytest.mark.xdist_group("default_demo")

HUB = "0x0000"
IHD_IEEE = "00:0d:6f:00:00:00:1d:01"
CAL, DM, EV = "zbee_zcl_se.calendar.", "zbee_zcl_se.device_management.", "zbee_zcl_se.events."


@needs_tshark
def test_the_default_demo_carries_every_command_both_ways(default_demo):
    pcap, stdout = default_demo  # tests/conftest.py: one run shared with its other judges
    options: list[str] = []  # the helpers read air.pcap.keys themselves
    assert malformed(pcap, options=options) == ""
    check_capture(pcap, stdout, options)


def check_capture(pcap: Path, stdout: str, options: list[str]) -> None:
    IHD = nwk_of(pcap, IHD_IEEE)  # noqa: N806
    ids = [f"{prefix}cmd.{side}.id" for prefix in (CAL, DM, EV) for side in ("srv_rx", "srv_tx")]
    rows = decode(pcap, ["zbee_nwk.src", "zbee_nwk.dst", "zbee_aps.cluster", "zbee_zcl.cmd.id",
                         "zbee_zcl.type", "zbee_zcl.dir", *ids],
                  "zbee_aps.cluster in {0x0707,0x0708,0x0709,0x0025} && zbee_zcl",
                  options=options)
    meter = next(r["zbee_nwk.src"][0] for r in rows
                 if r["zbee_nwk.src"][0] not in (HUB, IHD))
    legs: set[tuple[str, str, int, int, int]] = set()
    for r in rows:
        specific = int(r["zbee_zcl.type"][0], 16) == 1
        command = next((r[f][0] for f in ids if r[f]), None) if specific \
            else r["zbee_zcl.cmd.id"][0]
        legs.add((r["zbee_nwk.src"][0], r["zbee_nwk.dst"][0], int(r["zbee_aps.cluster"][0], 16),
                  (0x100 if specific else 0) + int(command, 16), int(r["zbee_zcl.dir"][0])))
    cluster_cmd = 0x100  # zbee_zcl.type 1: a cluster-specific command

    def carried(src: str, dst: str, cluster: int, command: int, to_client: bool) -> bool:
        return (src, dst, cluster, cluster_cmd + command, int(to_client)) in legs

    missing = []
    for command in range(6):  # Calendar: Publish*/Cancel and Get*, both legs each
        for src, dst in ((HUB, meter), (meter, IHD)):
            if not carried(src, dst, 0x0707, command, True):
                missing.append(f"Calendar srv_tx 0x{command:02x} {src}->{dst}")
        for src, dst in ((meter, HUB), (IHD, meter)):
            if not carried(src, dst, 0x0707, command, False):
                missing.append(f"Calendar srv_rx 0x{command:02x} {src}->{dst}")
    for command in range(7):  # Device Management: the hub's commands to the meter
        if not carried(HUB, meter, 0x0708, command, True):
            missing.append(f"DM srv_tx 0x{command:02x}")
    for command in range(6):  # and the meter's to the hub
        if not carried(meter, HUB, 0x0708, command, False):
            missing.append(f"DM srv_rx 0x{command:02x}")
    for src, dst, command, to_client in (
            (HUB, meter, 0x00, False), (IHD, meter, 0x00, False),  # GetEventLog
            (HUB, meter, 0x01, False),  # ClearEventLogRequest
            (meter, IHD, 0x00, True),  # PublishEvent
            (meter, HUB, 0x01, True), (meter, IHD, 0x01, True),  # PublishEventLog
            (meter, HUB, 0x02, True)):  # ClearEventLogResponse
        if not carried(src, dst, 0x0709, command, to_client):
            missing.append(f"Events 0x{command:02x} {src}->{dst}")
    for client in (meter, IHD):  # Keep-Alive: Read Attributes and the response
        if (client, HUB, 0x0025, 0x00, 0) not in legs or (HUB, client, 0x0025, 0x01, 1) not in legs:
            missing.append(f"Keep-Alive {client}")
    assert missing == []

    def values(where: str, fields: list[str]) -> list[dict[str, list[str]]]:
        return decode(pcap, fields, where, options=options)

    # the values the demo script sent (hubsim/demo_han.py)
    site = values(f"{DM}cmd.srv_tx.id == 0x03", [DM + "update_site_id.site_id"])
    assert site[0][DM + "update_site_id.site_id"] == ["GB-SITE-0042"]
    cin = values(f"{DM}cmd.srv_tx.id == 0x06", [DM + "update_cin.customerid_number"])
    assert cin[0][DM + "update_cin.customerid_number"] == ["CIN-7788-1234"]
    cos = values(f"{DM}cmd.srv_tx.id == 0x01",
                 [DM + "publish_change_of_supplier.proposed_provider_id",
                  DM + "publish_change_of_supplier.provider_proposed_provider_name"])
    assert cos[0][DM + "publish_change_of_supplier.proposed_provider_id"] == ["0x0000beef"]
    assert cos[0][DM + "publish_change_of_supplier.provider_proposed_provider_name"] == [
        "New Energy"]
    calendars = values(f"{CAL}cmd.srv_tx.id == 0x00 && {CAL}name == \"Winter peak\"",
                       ["zbee_nwk.src", CAL + "issuer_calendar_id"])
    peak = {r[CAL + "issuer_calendar_id"][0] for r in calendars}
    assert len(peak) == 1 and {r["zbee_nwk.src"][0] for r in calendars} == {HUB, meter}
    cancels = values(f"{CAL}cmd.srv_tx.id == 0x05", ["zbee_nwk.src", CAL + "issuer_calendar_id"])
    assert {(r["zbee_nwk.src"][0], r[CAL + "issuer_calendar_id"][0]) for r in cancels} >= {
        (HUB, *peak), (meter, *peak)}
    cleared = values(f"{EV}cmd.srv_tx.id == 0x02",
                     [EV + "clear_event_log_response.cleared_event_logs"])
    assert cleared[0][EV + "clear_event_log_response.cleared_event_logs"] == ["0x08"]
    kept = values("zbee_aps.cluster == 0x0025 && zbee_zcl.cmd.id == 0x01",
                  ["zbee_zcl_se.keep_alive.attr.base", "zbee_zcl_se.keep_alive.attr.jitter"])
    assert {(r["zbee_zcl_se.keep_alive.attr.base"][0],
             r["zbee_zcl_se.keep_alive.attr.jitter"][0]) for r in kept} == {("1", "5")}
    # what the display showed
    summary = [line for line in stdout.splitlines() if line.startswith("IHD schedule")]
    assert summary and "keep-alive trust centre OK" in summary[-1]
    assert "tenancy changed" in summary[-1]
