"""The newcomer's commands: `hubsim demo` and `sep meter` as real processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from radios.pcap import tshark_key_options

BIN = Path(sys.executable).parent


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_runs_for_its_duration_and_exits_0(tmp_path):
    start = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "hubsim"), "demo", "--duration", "12", "--no-live", "--data", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start >= 12
    assert "IHD saw" in proc.stdout
    assert "kWh" in proc.stdout
    # the supplier's script within the run: its tariff, two messages, one confirmed back
    # (rates from hubsim/data/demo_tariff.toml)
    price = [line for line in proc.stdout.splitlines() if line.startswith("IHD price")][-1]
    rate = price.split("£")[1].split("/kWh")[0]
    assert rate in ("0.1500", "0.2700", "0.4200", "0.6000"), price
    assert "tariff 'Demo TOU + block'" in price
    assert "IHD messages 2, confirmed 1; supplier got 1 confirmation(s)" in proc.stdout
    # no node keeps asking another: a 12 s run carries a few hundred frames (a loop
    # between the meter and the ESI once made it tens of thousands)
    summary = [line for line in proc.stdout.splitlines() if line.startswith("IHD saw")][-1]
    frames = int(summary.split(" frames on the air")[0].rsplit(" ", 1)[-1])
    assert frames < 2000, summary
    # the meter's identity is kept in the data directory across runs
    assert (tmp_path / "identity.json").exists()


def test_demo_usage_errors_exit_2():
    proc = subprocess.run([str(BIN / "hubsim"), "demo", "--duration", "-1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--duration" in proc.stderr


def test_meter_in_its_own_process_joins_the_demo_air(tmp_path):
    port = free_udp_port()
    code = "83fed3407a939723a5c639b26916d505c3b5"  # shared/vectors' install code (valid CRC)
    hub = subprocess.Popen(
        [str(BIN / "hubsim"), "demo", "--duration", "12", "--no-live", "--air-port", str(port),
         "--external-meter", "--install-code", f"00:0d:6f:00:00:00:bb:02={code}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(2)
        meter = subprocess.run(
            [str(BIN / "sep"), "meter", "--device", f"udp://127.0.0.1:{port}", "--duration", "9",
             "--speed", "60", "--ieee", "00:0d:6f:00:00:00:bb:02", "--own-install-code", code,
             "--pcap", str(tmp_path / "meter.pcap")],
            capture_output=True, text=True, timeout=60,
        )
        out, err = hub.communicate(timeout=60)
    finally:
        hub.kill()
    assert meter.returncode == 0, meter.stderr
    assert hub.returncode == 0, err
    assert "00:0d:6f:00:00:00:bb:02" in meter.stdout
    assert "kWh" in out
    # the IHD in the hubsim process received reports from the meter process
    last = [line for line in out.splitlines() if line.startswith("IHD saw")][-1]
    reports = int(last.split(" reports")[0].rsplit(" ", 1)[-1])
    assert reports > 0, out
    # the meter's own capture of its air, and the keys it used: tshark reads its reports
    import shutil

    tshark = shutil.which("tshark")
    assert tshark is not None, "tshark is needed (.ci/run installs it)"
    pcap = tmp_path / "meter.pcap"
    assert f"{pcap}.keys" in meter.stdout
    got = subprocess.run([tshark, "-r", str(pcap), *tshark_key_options(pcap), "-Y",
                          "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x0a && "
                          "zbee_aps.security == 1"], capture_output=True, text=True,
                         check=True).stdout
    assert got.strip(), "no secured Metering report in the meter's capture"


def test_sep_meter_ezsp_without_device_is_a_usage_error():
    proc = subprocess.run([str(BIN / "sep"), "meter", "--radio", "ezsp"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--device" in proc.stderr


def test_demo_with_the_hub_and_the_meter_on_bellows_and_ncp_emulators(tmp_path):
    """`hubsim demo --hub-radio ezsp --meter-radio ezsp`: the SMETS2 topology on the real
    host path at both ends — the hub's bellows forms on one emulator (coordinator, trust
    centre), the meter's stick joins it from a second as a router with its install code and
    keys with it. Judged by tshark with the capture's keys file: the meter's association and
    the address the hub gave it, the Transport Key to it, KE frames, Metering answered from
    that router address under APS security, nothing malformed."""
    import shutil

    pcap = tmp_path / "air.pcap"
    proc = subprocess.run(
        [str(BIN / "hubsim"), "demo", "--duration", "15", "--no-live", "--meter-radio", "ezsp",
         "--hub-radio", "ezsp", "--pcap", str(pcap), "--data", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "hub on bellows, EZSP NCP emulator at socket://127.0.0.1:" in proc.stdout
    assert "joining the hub as a router" in proc.stdout
    last = [line for line in proc.stdout.splitlines() if line.startswith("IHD saw")][-1]
    assert int(last.split(" reports")[0].rsplit(" ", 1)[-1]) > 0, proc.stdout
    tshark = shutil.which("tshark")
    assert tshark is not None, "tshark is needed (.ci/run installs it)"
    keys = tshark_key_options(pcap)

    def fields(flt: str, *names: str) -> list[list[str]]:
        out = subprocess.run([tshark, "-r", str(pcap), *keys, "-Y", flt, "-T", "fields",
                              *sum((["-e", n] for n in names), [])],
                             capture_output=True, text=True, check=True).stdout
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    assert fields("_ws.malformed", "frame.number") == []
    meter_ieee = json.loads((tmp_path / "data" / "identity.json").read_text())["ieee"]
    # the hub's Association Response gave the meter's stick a router address
    granted = {ieee: addr for ieee, addr in fields("wpan.cmd == 0x02 && wpan.assoc.status == 0",
                                                    "wpan.dst64", "wpan.asoc.addr")}
    assert meter_ieee in granted, granted
    routers = [granted[meter_ieee]]
    assert int(routers[0], 16) not in (0x0000, 0xFFFE)
    # the network key went to the meter under its install-code link key
    transported = [d for (d,) in fields("zbee_aps.cmd.id == 0x05 && zbee_aps.cmd.key_type == 1",
                                        "zbee_aps.cmd.dst")]
    assert meter_ieee in transported
    # Metering answered from the router address, APS-secured, and Key Establishment there
    served = {src for (src,) in fields("zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x01 "
                                       "&& zbee_aps.security == 1", "zbee_nwk.src")}
    assert any(int(s, 16) == int(r, 16) for s in served for r in routers), (served, routers)
    ke = {src for (src,) in fields("zbee_aps.cluster == 0x0800", "zbee_nwk.src")}
    assert any(int(s, 16) == int(r, 16) for s in ke for r in routers)


def test_a_meter_process_with_its_certificate_keys_with_the_demo_han(tmp_path):
    """`sep cert ca`, `sep cert issue`, `hubsim demo --certs` and `sep meter --cert`: the
    meter in its own process runs Key Establishment with the hub and the IHD with it; the
    IHD then reads it (SE frames pass only under CBKE keys)."""
    ieee = "00:0d:6f:00:00:00:bb:03"
    code = "83fed3407a939723a5c639b26916d505c3b5"
    ca, creds = tmp_path / "ca", tmp_path / "meter-cert"
    for cmd in (["cert", "ca", str(ca), "--suite", "2"],
                ["cert", "issue", "--ca", str(ca), "--ieee", ieee, "--out", str(creds)]):
        subprocess.run([str(BIN / "sep"), *cmd], check=True, capture_output=True, timeout=60)
    port = free_udp_port()
    hub = subprocess.Popen(
        [str(BIN / "hubsim"), "demo", "--duration", "20", "--no-live", "--air-port", str(port),
         "--external-meter", "--install-code", f"{ieee}={code}", "--certs", str(ca)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        meter = subprocess.run(
            [str(BIN / "sep"), "meter", "--device", f"udp://127.0.0.1:{port}", "--duration", "16",
             "--speed", "60", "--ieee", ieee, "--own-install-code", code, "--cert", str(creds),
             "--data", str(tmp_path / "data"), "--no-ota"],
            capture_output=True, text=True, timeout=90)
        out, err = hub.communicate(timeout=90)
    finally:
        hub.kill()
    assert meter.returncode == 0, meter.stderr
    assert hub.returncode == 0, err
    plain = ieee.replace(":", "")
    (ke,) = [line for line in out.splitlines() if line.startswith("key establishment:")]
    assert "IHD↔hub suite 2" in ke and f"IHD↔{plain} suite 2" in ke, ke
    assert_ihd_read_the_meter(out)
    assert_keyed_with_the_trust_centre(tmp_path / "data")


def assert_ihd_read_the_meter(demo_stdout: str) -> None:
    """The demo's last summary line counts the reports the IHD took from the meter."""
    last = [line for line in demo_stdout.splitlines() if line.startswith("IHD saw")][-1]
    assert int(last.split(" reports")[0].rsplit(" ", 1)[-1]) > 0, demo_stdout


def assert_keyed_with_the_trust_centre(data: Path) -> None:
    """The meter's event log (read by `sep events`) holds its Key Establishment with the
    demo hub, the trust centre, and the key installed."""
    events = subprocess.run([str(BIN / "sep"), "events", "--data", str(data), "--json"],
                            capture_output=True, text=True, timeout=60)
    keyed = [e for e in json.loads(events.stdout) if e["kind"] == "KEY_ESTABLISHMENT"]
    assert any("000d6f0000000001" in json.dumps(e) and "installed" in json.dumps(e)
               for e in keyed), events.stdout


def test_sep_meter_refuses_a_certificate_for_another_ieee(tmp_path):
    ca, creds = tmp_path / "ca", tmp_path / "cert"
    for cmd in (["cert", "ca", str(ca), "--suite", "1"],
                ["cert", "issue", "--ca", str(ca), "--ieee", "00:0d:6f:00:00:00:bb:04", "--out",
                 str(creds), "--suite", "1"]):
        subprocess.run([str(BIN / "sep"), *cmd], check=True, capture_output=True, timeout=60)
    proc = subprocess.run([str(BIN / "sep"), "meter", "--device", "virtual://alone", "--ieee",
                           "00:0d:6f:00:00:00:bb:05", "--cert", str(creds), "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "000d6f000000bb04" in proc.stderr, proc.stderr
    proc = subprocess.run([str(BIN / "sep"), "meter", "--device", "virtual://alone",
                           "--cert", str(tmp_path / "nowhere"), "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--cert" in proc.stderr, proc.stderr
