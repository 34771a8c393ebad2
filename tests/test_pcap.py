"""The pcap tap, judged by tshark."""

from __future__ import annotations

import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from required_tools import needs_tool

from radios.frames import AirFrame, ApsKind
from radios.pcap import PcapWriter, encode_mac_frame, fcs, tshark_key_options

TSHARK = shutil.which("tshark")
needs_tshark = needs_tool("tshark")
BIN = Path(sys.executable).parent


def tshark_fields(path: Path, fields: list[str], display: str | None = None) -> list[list[str]]:
    cmd = [TSHARK, "-r", str(path), *tshark_key_options(path), "-T", "fields", "-E",
           "separator=;", "-E", "occurrence=a"]
    if display:
        cmd += ["-Y", display]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split(";") for line in out.splitlines()]


def malformed(path: Path) -> str:
    return subprocess.run([TSHARK, "-r", str(path), *tshark_key_options(path), "-Y",
                           "_ws.malformed || _ws.expert.severity == error"],
                          capture_output=True, text=True, check=True).stdout


def test_fcs_is_crc16_kermit():
    # The published check value of CRC-16/KERMIT over "123456789" (CRC catalogue).
    assert fcs(b"123456789") == 0x2189


def frame(**kw) -> AirFrame:
    base = dict(kind=ApsKind.DATA, pan_id=0x1A62, src_nwk=0x1234, dst_nwk=0x0000,
                src_ieee=0x000D6F0000AABB01, profile_id=0x0109, cluster_id=0x0702, src_ep=1,
                dst_ep=1, aps_counter=7, payload=b"\x00\x05\x00\x00\x00\x00\x04",
                ack_request=True, nwk_seq=3, mac_seq=9)
    base.update(kw)
    return AirFrame(**base)


@needs_tshark
def test_headers_as_tshark_reads_them(tmp_path):
    path = tmp_path / "f.pcap"
    with PcapWriter(path) as w:
        w.write(frame(), 1.0)
        w.write(frame(dst_nwk=0xFFFD, ack_request=False, profile_id=0, cluster_id=0x0006,
                      src_ep=0, dst_ep=0,
                      payload=bytes([1, 0xFD, 0xFF, 0x09, 0x01, 1, 0x02, 0x07, 0])), 2.0)
        w.write(frame(kind=ApsKind.ACK, src_nwk=0x0000, dst_nwk=0x1234, payload=b""), 3.0)
    assert malformed(path) == ""
    rows = tshark_fields(path, ["wpan.src16", "wpan.dst16", "wpan.fcs_ok", "zbee_nwk.src",
                                "zbee_nwk.dst", "zbee_nwk.src64", "zbee_aps.cluster",
                                "zbee_aps.profile", "zbee_aps.src", "zbee_aps.dst",
                                "zbee_aps.counter", "zbee_aps.type"])
    assert rows[0][:2] == ["0x1234", "0x0000"]
    assert rows[0][2] == "1"  # FCS correct
    assert rows[0][3:6] == ["0x1234", "0x0000", "00:0d:6f:00:00:aa:bb:01"]
    assert rows[0][6:11] == ["0x0702", "0x0109", "1", "1", "7"]
    assert rows[1][1] == "0xffff" and rows[1][4] == "0xfffd"
    assert int(rows[2][11], 16) == 2  # APS ack


@needs_tshark
@settings(max_examples=1, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 0xFFF7), st.integers(0, 0xFFF7), st.integers(0, 2**64 - 1),
                          st.integers(0, 0xFFFF), st.integers(1, 240), st.integers(1, 240),
                          st.integers(0, 255), st.binary(max_size=40)),
                min_size=30, max_size=30))
def test_random_frames_decode_with_matching_addresses(tmp_path_factory, specs):
    """Random addresses, endpoints and payloads; a private profile keeps tshark from
    judging the (random) payload as ZCL, so only our headers are checked."""
    path = tmp_path_factory.mktemp("h") / "r.pcap"
    frames = [frame(src_nwk=s, dst_nwk=d, src_ieee=ieee, cluster_id=c, src_ep=se, dst_ep=de,
                    aps_counter=n, payload=p, profile_id=0xC0DE)
              for s, d, ieee, c, se, de, n, p in specs]
    with PcapWriter(path) as w:
        for i, f in enumerate(frames):
            w.write(f, float(i))
    assert malformed(path) == ""
    rows = tshark_fields(path, ["zbee_nwk.src", "zbee_nwk.dst", "zbee_nwk.src64",
                                "zbee_aps.cluster", "zbee_aps.counter", "wpan.fcs_ok"])
    assert len(rows) == len(frames)
    for f, row in zip(frames, rows, strict=True):
        assert int(row[0], 16) == f.src_nwk and int(row[1], 16) == f.dst_nwk
        assert row[2] == ":".join(f"{b:02x}" for b in f.src_ieee.to_bytes(8, "big"))
        assert int(row[3], 16) == f.cluster_id and int(row[4]) == f.aps_counter
        assert row[5] == "1"
    assert all(encode_mac_frame(f)[-2:] for f in frames)


@needs_tshark
def test_demo_capture_shows_the_metering_values(tmp_path):
    pcap = tmp_path / "air.pcap"
    proc = subprocess.run([str(BIN / "hubsim"), "demo", "--duration", "6", "--no-live",
                           "--pcap", str(pcap)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert malformed(pcap) == ""
    # Read Attributes Response carrying the formatting set: the SE numbers we promise.
    rows = tshark_fields(pcap, ["zbee_zcl_se.met.attr_id", "zbee_zcl.attr.uint24"],
                         "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x01")
    pairs = {}
    for attr_ids, u24 in rows:
        ids = [int(a, 16) for a in attr_ids.split(",") if a]
        vals = [int(v) for v in u24.split(",") if v]
        if 0x0301 in ids and 0x0302 in ids:
            pairs = {"multiplier": vals[0], "divisor": vals[1]}
    assert pairs == {"multiplier": 1, "divisor": 1000}
    # The last summation the meter reported equals what the IHD (zigpy) displayed. (The
    # gas meter's reports go to its mirror, hub endpoint 0x40: not the meter's.)
    reports = tshark_fields(pcap, ["zbee_zcl.attr.uint48"],
                            "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x0a "
                            "&& zbee_zcl.attr.uint48 && zbee_aps.dst != 0x40")
    values = [int(r[0].split(",")[0]) for r in reports]
    assert values == sorted(values) and values
    shown = proc.stdout.split("IHD saw ")[1].split(" kWh")[0]
    assert Decimal(values[-1]) / 1000 == Decimal(shown)
