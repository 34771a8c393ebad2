"""The secure HAN with real processes, judged by tshark.

- ``hubsim demo --pcap``: without the keys tshark reads no ZCL at all; with ``FILE.keys``
  every frame decodes, none malformed, every SE cluster frame carries APS security, the
  meter and the IHD each got a Transport Key, the IHD's Bind_req is there, and Metering is
  served from the meter's router address.
- A kill -9 loop of a `sep meter` process on the hub's air never reuses an outgoing NWK
  frame counter: read back from the capture, the meter's counters only ever rise.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from required_tools import require_tool
from waiting import until

from hubsim.hub import CommsHub
from radios.air import VirtualAir
from radios.crypto import make_install_code
from radios.pcap import PcapWriter, tshark_key_options
from radios.udp import serve_udp

# its session/module fixture runs a whole demo once: its tests stay on one xdist worker
pytestmark = pytest.mark.xdist_group("secure_han_demo")

BIN = Path(sys.executable).parent
TSHARK = shutil.which("tshark")
IHD_IEEE = "00:0d:6f:00:00:00:1d:01"
#: clusters SE runs under the network key only (SE 5.4.6); everything else on 0x0109 is APS
NETWORK_KEY_CLUSTERS = "{0x0000,0x0001,0x0003,0x000a,0x0015,0x0019,0x0025,0x0800}"


def tshark(pcap: Path, *args: str, keys: bool = True) -> str:
    require_tool("tshark")
    return subprocess.run([TSHARK, "-r", str(pcap), *(tshark_key_options(pcap) if keys else []),
                           *args], capture_output=True, text=True, check=True).stdout


def fields(pcap: Path, display: str, *names: str, keys: bool = True) -> list[list[str]]:
    args = ["-Y", display, "-T", "fields", "-E", "separator=;", "-E", "occurrence=f"]
    for n in names:
        args += ["-e", n]
    return [line.split(";") for line in tshark(pcap, *args, keys=keys).splitlines()]


@pytest.fixture(scope="module")
def demo_capture(tmp_path_factory) -> tuple[Path, str]:
    """One default demo run with its capture (shared by the tests below)."""
    pcap = tmp_path_factory.mktemp("demo") / "air.pcap"
    proc = subprocess.run([str(BIN / "hubsim"), "demo", "--duration", "12", "--no-live",
                           "--pcap", str(pcap)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return pcap, proc.stdout


def test_the_demo_capture_is_secured_and_decodes_with_its_keys(demo_capture):
    pcap, stdout = demo_capture
    assert f"{pcap}.keys" in stdout  # the demo says where the keys are
    total = len(tshark(pcap, keys=False).splitlines())
    assert total > 100
    # without keys: no ZCL, no APS command, no ZDO
    assert fields(pcap, "zbee_zcl || zbee_aps.cmd.id || zbee_zdp", "frame.number",
                  keys=False) == []
    # with them: every NWK data frame opens down to its APS payload (tshark's "could not
    # decrypt" leaves a NWK frame without the APS layer), nothing malformed
    assert tshark(pcap, "-Y", "_ws.malformed || _ws.expert.severity == error") == ""
    assert fields(pcap, "zbee_nwk && zbee_nwk.frame_type == 0 && !zbee_aps", "frame.number") == []
    assert fields(pcap, "zbee_nwk.frame_type == 1 && !zbee_nwk.cmd.id", "frame.number") == []
    # every SE cluster frame (but those SE keeps on the network key) is APS-secured
    se = f"zbee_aps.profile == 0x0109 && zbee_aps.type == 0 && " \
         f"!(zbee_aps.cluster in {NETWORK_KEY_CLUSTERS})"
    assert fields(pcap, se + " && zbee_aps.security == 0", "frame.number") == []
    assert len(fields(pcap, se, "frame.number")) > 50
    # the meter and the IHD each got the network key in a Transport Key from the hub
    got = {row[0] for row in fields(pcap, "zbee_aps.cmd.id == 0x05 && zbee_aps.cmd.key_type == 1",
                                    "zbee_aps.cmd.dst")}
    # the IHD, the meter and the rest of the HAN (PPMID, gas meter), each its own
    assert IHD_IEEE in got and len(got) >= 2, got
    # the IHD bound the meter's Metering to itself
    (bind,) = fields(pcap, "zbee_aps.zdp_cluster == 0x0021",
                     "zbee_zdp.cluster", "zbee_zdp.bind.dst64", "zbee_zdp.bind.src64")
    assert int(bind[0], 16) == 0x0702 and bind[1] == IHD_IEEE and bind[2] in got
    meter = bind[2]
    # Metering is served (read answers, reports) from the meter's router address
    sources = {int(r[0], 16) for r in fields(
        pcap, f"zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id in {{0x01,0x0a}} && "
              f"zbee_nwk.src64 == {meter}", "zbee_nwk.src")}
    assert len(sources) == 1 and 0x0000 not in sources


def test_the_demo_runs_suite2_key_establishment_and_se_frames_use_its_keys(demo_capture):
    """Complete suite-2 exchanges meter↔hub and IHD↔meter as tshark decodes them, and every
    later SE frame APS-secured under a CBKE key that the capture's key file lists."""
    pcap, stdout = demo_capture
    hub = "00:0d:6f:00:00:00:00:01"
    (bind,) = fields(pcap, "zbee_aps.zdp_cluster == 0x0021", "zbee_zdp.bind.src64")
    meter = bind[0]
    # InitiateKeyEstablishmentRequest: (initiator, suite, the certificate's subject)
    inits = fields(pcap, "zbee_zcl_se.ke.cmd.srv_rx.id == 0", "zbee_nwk.src64",
                   "zbee_zcl_se.ke.attr.suite", "zbee_zcl_se.ke.cert.subject")
    for initiator, suite, subject in inits:
        assert int(suite, 16) == 2 and subject == initiator.replace(":", "")
    # ConfirmKeyDataResponse (MACV): the responder, and to whom (NWK address → IEEE)
    nwk_of = {row[0]: row[1] for row in fields(pcap, "zbee_nwk.src64", "zbee_nwk.src",
                                               "zbee_nwk.src64")}
    done = {(row[0], nwk_of.get(row[1])) for row in fields(
        pcap, "zbee_zcl_se.ke.macv", "zbee_nwk.src64", "zbee_nwk.dst")}
    assert (hub, meter) in done and (meter, IHD_IEEE) in done, done
    assert fields(pcap, "zbee_zcl_se.ke.terminate.status", "frame.number") == []
    # the key file lists a CBKE key for each pair, and tshark opened every SE frame after
    # the exchanges with one of them (the label names the key that worked)
    keys = (pcap.parent / (pcap.name + ".keys")).read_text()
    plain = {ieee: ieee.replace(":", "") for ieee in (hub, meter, IHD_IEEE)}
    for a, b in ((hub, meter), (meter, IHD_IEEE)):
        assert f"cbke_{plain[a]}-{plain[b]}" in keys or f"cbke_{plain[b]}-{plain[a]}" in keys
    last = max(int(r[0]) for r in fields(pcap, "zbee_zcl_se.ke.macv", "frame.number"))
    se = (f"frame.number > {last} && zbee_aps.profile == 0x0109 && zbee_aps.type == 0 && "
          f"!(zbee_aps.cluster in {NETWORK_KEY_CLUSTERS})")
    args = ["-Y", se, "-T", "fields", "-E", "separator=;", "-E", "occurrence=l",
            "-e", "frame.number", "-e", "zbee_aps.security", "-e", "zbee.sec.decryption_key"]
    rows = [line.split(";") for line in tshark(pcap, *args).splitlines()]
    assert len(rows) > 20
    for number, secured, label in rows:
        assert secured == "1" and label.startswith("cbke_"), (number, label)
    assert "key establishment: meter↔hub suite 2" in stdout


async def _meter_counters(pcap: Path, ieee: str) -> list[int]:
    rows = fields(pcap, f"zbee_nwk.src64 == {ieee} && zbee.sec.counter", "zbee.sec.counter")
    return [int(r[0]) for r in rows]


async def test_a_kill9_loop_of_the_meter_never_reuses_a_frame_counter(tmp_path):
    await _kill_loop(tmp_path, kills=3)


@pytest.mark.slow
async def test_a_long_kill9_loop_never_reuses_a_frame_counter(tmp_path):
    await _kill_loop(tmp_path, kills=25)


async def _kill_loop(tmp_path: Path, *, kills: int) -> None:
    ieee = "00:0d:6f:00:00:00:c1:11"
    code = make_install_code()
    air = VirtualAir()
    pcap = tmp_path / "air.pcap"
    writer = PcapWriter(pcap).capture(air)
    hub = CommsHub(air=air, install_codes={ieee: code})
    server = await serve_udp(air, "127.0.0.1", 0)
    await hub.start()
    data = tmp_path / "meter"
    cmd = [sys.executable, "-m", "sep.cli", "meter", "--data", str(data), "--no-ota",
           "--device", f"udp://127.0.0.1:{server.port}", "--ieee", ieee,
           "--own-install-code", code.hex()]
    log = open(tmp_path / "meter.log", "ab")  # noqa: SIM115
    try:
        for n in range(kills + 1):
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=log)
            # until the meter is back on the HAN and talking (its ESI search, reads...)
            await until(lambda n=n: _frames_from(air, ieee) > 8 * (n + 1), timeout=60)
            await asyncio.sleep(0.3 + 0.1 * (n % 3))
            proc.send_signal(signal.SIGKILL if n < kills else signal.SIGTERM)
            await proc.wait()
    finally:
        log.close()
        await hub.stop()
        server.close()
        writer.close()
    counters = await _meter_counters(pcap, ieee)
    assert len(counters) > 8 * (kills + 1)
    repeats = len(counters) - len(set(counters))
    assert repeats == 0 and counters == sorted(counters), \
        f"{repeats} reused counters in {len(counters)} frames"


_COUNTS: dict[tuple[int, str], int] = {}


def _frames_from(air: VirtualAir, ieee: str) -> int:
    """How many frames carried the meter's IEEE in their NWK header so far."""
    key = (id(air), ieee)
    if key not in _COUNTS:
        _COUNTS[key] = 0
        raw = bytes.fromhex(ieee.replace(":", ""))[::-1]

        def tap(mpdu: bytes, _ts: float) -> None:
            if raw in mpdu:
                _COUNTS[key] += 1

        air.add_tap(tap)
    return _COUNTS[key]
