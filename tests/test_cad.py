"""The consumer access device (issue 19.3): `hubsim demo --cad` publishes the meters' values
as the meter put them on the air, and `sep cad` says what is wrong with its options.

The oracle is the air itself: tshark decodes the capture with the keys the radios wrote
beside it (the CAD's CBKE key with the meter included) and gives the summation, demand,
multiplier and divisor the meter sent to the CAD; the published kWh and W are recomputed
from those with the SE rule (raw x multiplier / divisor), not with our bridge's code. A real
mosquitto holds the retained state and discovery documents the CAD published.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.broker import Broker
from tests.required_tools import needs_tool
from tests.tshark_util import TSHARK, key_options

CAD_IEEE = "00:0d:6f:00:00:00:ca:d1"  # hubsim demo's CAD
HUB_IEEE = "00:0d:6f:00:00:00:00:01"
UINT48 = {0x0000, 0x0001} | set(range(0x0100, 0x0200))  # SE 1.4 D.3.2.2: summation registers


def retained(port: int, topics: list[str], quiet: float = 1.0) -> dict[str, bytes]:
    """Every retained message under ``topics`` on the broker (topic → payload)."""
    import aiomqtt

    async def collect() -> dict[str, bytes]:
        got: dict[str, bytes] = {}
        async with aiomqtt.Client("127.0.0.1", port, identifier="test-cad-reader") as client:
            for topic in topics:
                await client.subscribe(topic, qos=1)
            try:
                async with asyncio.timeout(quiet):
                    async for msg in client.messages:
                        if msg.retain:
                            got[str(msg.topic)] = bytes(msg.payload)
            except TimeoutError:
                pass
        return got

    return asyncio.run(collect())


def frames_from(pcap: Path, sender: str, receiver_nwk: str) -> list[dict[str, list[str]]]:
    """Metering Read Attributes Responses and Reports from ``sender`` (by the IEEE address
    in the NWK security header) to ``receiver_nwk``, in air order, as tshark decodes them."""
    names = ["zbee_zcl.cmd.id", "zbee_zcl_se.met.attr_id", "zbee_zcl.attr.uint48",
             "zbee_zcl.attr.int24", "zbee_zcl.attr.uint24"]
    cmd = [TSHARK, "-r", str(pcap), *key_options(pcap), "-Y",
           f"zbee.sec.src64 == {sender} && zbee_nwk.dst == {receiver_nwk} && "
           "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id in {0x01,0x0a}",
           "-T", "fields", "-E", "separator=;", "-E", "occurrence=a", "-E", "aggregator=|"]
    for name in names:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [{n: (v.split("|") if v else []) for n, v in zip(names, line.split(";"), strict=True)}
            for line in out.splitlines()]


def nwk_of(pcap: Path, ieee: str) -> str:
    """The NWK address a node sends from (tshark: NWK source of its secured frames)."""
    out = subprocess.run([TSHARK, "-r", str(pcap), *key_options(pcap), "-Y",
                          f"zbee.sec.src64 == {ieee} && zbee_nwk.src != 0xfffd", "-T",
                          "fields", "-e", "zbee_nwk.src"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out, f"no frame from {ieee} in the capture"
    return max(set(out), key=out.count)


def values(row: dict[str, list[str]]) -> dict[int, int]:
    """attribute id → value for the summation (uint48), demand (int24) and the
    multiplier/divisor (uint24) attributes a frame carries, matched by type in order."""
    ids = [int(a, 0) for a in row["zbee_zcl_se.met.attr_id"]]
    out: dict[int, int] = {}
    by_type = {"zbee_zcl.attr.uint48": [i for i in ids if i in UINT48],
               "zbee_zcl.attr.int24": [i for i in ids if i == 0x0400],
               "zbee_zcl.attr.uint24": [i for i in ids if i in (0x0301, 0x0302)]}
    for field, wanted in by_type.items():
        got = row[field]
        if len(got) == len(wanted):  # (an attribute read with an error carries no value)
            out.update({i: int(v, 0) for i, v in zip(wanted, got, strict=True)})
    return out


@needs_tool("tshark")
def test_demo_cad_publishes_what_the_meter_sent(tmp_path):
    broker = Broker(tmp_path).start()
    pcap = tmp_path / "air.pcap"
    try:
        run = subprocess.run(
            [sys.executable, "-m", "hubsim.cli", "demo", "--cad", "--duration", "30",
             "--no-live", "--no-ppmid", "--pcap", str(pcap), "--mqtt",
             f"mqtt://127.0.0.1:{broker.port}", "--mqtt-interval", "1"],
            capture_output=True, text=True, timeout=150, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "CAD↔meter" in run.stdout and "CAD↔hub" in run.stdout, run.stdout
        got = retained(broker.port, ["sep/#", "homeassistant/#"])
    finally:
        broker.stop()
    states = {topic.split("/")[1]: json.loads(payload) for topic, payload in got.items()
              if topic.endswith("/state") and not topic.endswith("bridge/state") and payload}
    meters = [node for node in states if "_" not in node]
    assert len(meters) == 1, states.keys()
    node = meters[0]
    meter_ieee = ":".join(node[i:i + 2] for i in range(0, 16, 2))
    doc = states[node]
    assert doc["source"] == "cad"
    # the same state document as sep meter --mqtt: its keys and units
    assert set(doc) >= {"timestamp", "energy", "power", "meter", "source"}
    assert doc["energy"]["import"]["units"] == "kWh" and doc["power"]["units"] == "W"
    # Home Assistant discovery for the meter's entities, pointing at that state
    for obj in ("energy_import", "energy_export", "power", "meter_status", "supply"):
        topic = f"homeassistant/sensor/{node}/{obj}/config"
        assert topic in got, sorted(got)
        config = json.loads(got[topic])
        assert config["state_topic"] == f"sep/{node}/state"
        assert config["unique_id"] == f"sep_{node}_{obj}"
    assert got[f"sep/{node}/availability"] == b"offline"  # a clean stop said so

    # the oracle: what the meter sent to the CAD, decoded by tshark
    cad_nwk = nwk_of(pcap, CAD_IEEE)
    rows = [values(r) for r in frames_from(pcap, meter_ieee, cad_nwk)]
    scale = next(v for v in rows if 0x0301 in v and 0x0302 in v)
    mult, div = Decimal(scale[0x0301]), Decimal(scale[0x0302])
    summations = [v[0x0000] for v in rows if 0x0000 in v]
    demands = [v[0x0400] for v in rows if 0x0400 in v]
    assert len(summations) >= 3, rows  # read, then reports
    published_kwh = Decimal(str(doc["energy"]["import"]["cumulative"]))
    published_w = Decimal(str(doc["power"]["value"]))
    kwh_on_air = [Decimal(raw) * mult / div for raw in summations]
    w_on_air = [Decimal(raw) * mult / div * 1000 for raw in demands]
    # equal to one of the last two values the meter sent (within one reporting step)
    assert published_kwh in kwh_on_air[-2:], (published_kwh, kwh_on_air[-5:])
    assert published_w in w_on_air[-2:], (published_w, w_on_air[-5:])
    print(f"published {published_kwh} kWh / {published_w} W; meter sent "
          f"{kwh_on_air[-2:]} kWh, {w_on_air[-2:]} W")

    # gas, through the mirror on the hub: the mirror's summation as the hub sent it
    gas_nodes = [n for n in states if n.startswith(HUB_IEEE.replace(":", ""))]
    assert len(gas_nodes) == 1, states.keys()
    gas = states[gas_nodes[0]]
    assert gas["source"] == "cad" and gas["energy"]["import"]["units"] == "m³"
    mirror = [values(r) for r in frames_from(pcap, HUB_IEEE, cad_nwk)]
    gscale = next(v for v in mirror if 0x0301 in v and 0x0302 in v)
    gas_on_air = [Decimal(v[0x0000]) * gscale[0x0301] / gscale[0x0302]
                  for v in mirror if 0x0000 in v]
    assert Decimal(str(gas["energy"]["import"]["cumulative"])) in gas_on_air[-2:]


def sep(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sep.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, names", [
    ([], "--ieee"),
    (["--ieee", "nothex", "--mqtt", "mqtt://127.0.0.1:1"], "--ieee"),
    (["--ieee", CAD_IEEE, "--mqtt", "http://127.0.0.1"], "--mqtt"),
    (["--ieee", CAD_IEEE, "--mqtt", "mqtt://127.0.0.1:1", "--radio", "ezsp"], "--radio ezsp"),
    (["--ieee", CAD_IEEE, "--mqtt", "mqtt://127.0.0.1:1", "--own-install-code", "12AB"],
     "--own-install-code"),
    (["--ieee", CAD_IEEE, "--mqtt", "mqtt://127.0.0.1:1", "--device", "udp://127.0.0.1"],
     "--device"),
    (["--ieee", CAD_IEEE, "--mqtt", "mqtt://127.0.0.1:1", "--cert", "no-such-folder"],
     "--cert"),
])
def test_sep_cad_usage_errors(args, names):
    run = sep("cad", *args)
    assert run.returncode == 2, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in run.stderr, run.stderr
    assert run.stdout == ""


def test_sep_cad_refuses_a_certificate_for_another_device(tmp_path):
    assert sep("cert", "ca", str(tmp_path / "ca")).returncode == 0
    assert sep("cert", "issue", "--ca", str(tmp_path / "ca"), "--ieee",
               "00:0d:6f:00:00:00:00:99", "--out", str(tmp_path / "dev")).returncode == 0
    run = sep("cad", "--ieee", CAD_IEEE, "--mqtt", "mqtt://127.0.0.1:1", "--cert",
              str(tmp_path / "dev"))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "000d6f0000000099" in run.stderr, run.stderr


@pytest.mark.slow
def test_sep_cad_process_reads_a_demo_meter_over_udp(tmp_path):
    """`sep cad` in its own process, on a demo's air over UDP, with its install code and a
    certificate from the demo's CA. Run: .venv/bin/python -m pytest -m slow -k sep_cad_process
    """
    from tests.broker import free_port

    code = "83FED3407A939723A5C639B26916D505C3B5"  # the Zigbee specification's test vector
    ieee = "00:0d:6f:00:00:00:ca:d2"
    assert sep("cert", "ca", str(tmp_path / "ca")).returncode == 0
    assert sep("cert", "issue", "--ca", str(tmp_path / "ca"), "--ieee", ieee, "--out",
               str(tmp_path / "cad")).returncode == 0
    broker = Broker(tmp_path).start()
    air = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "hubsim.cli", "demo", "--air-port", str(air), "--certs",
         str(tmp_path / "ca"), "--install-code", f"{ieee}={code}", "--duration", "50",
         "--no-live", "--no-ppmid"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path)
    try:
        assert demo.stdout is not None
        demo.stdout.readline()  # "air open ..."
        run = sep("cad", "--device", f"udp://127.0.0.1:{air}", "--ieee", ieee,
                  "--own-install-code", code, "--cert", str(tmp_path / "cad"), "--mqtt",
                  f"mqtt://127.0.0.1:{broker.port}", "--duration", "30", timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        out, _err = demo.communicate(timeout=120)
        got = retained(broker.port, ["sep/+/state"])
    finally:
        if demo.poll() is None:
            demo.kill()
        broker.stop()
    states = {t.split("/")[1]: json.loads(p) for t, p in got.items() if p}
    meters = [s for n, s in states.items() if "_" not in n]
    assert len(meters) == 1 and meters[0]["source"] == "cad", states
    # the IHD of the demo read the same meter: the CAD's last value is near the IHD's
    ihd = next(line for line in out.splitlines() if line.startswith("IHD saw"))
    ihd_kwh = Decimal(ihd.split()[2])
    cad_kwh = Decimal(str(meters[0]["energy"]["import"]["cumulative"]))
    assert abs(ihd_kwh - cad_kwh) < Decimal("0.2"), (ihd_kwh, cad_kwh)
