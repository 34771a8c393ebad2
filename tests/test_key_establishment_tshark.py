"""Key Establishment frames as tshark's SE dissector reads them.

Complete exchanges (suite 2 between two of our devices, suite 1 with the published vectors)
and the Terminate frames of failed ones go into a pcap through the radio layer's encoder;
tshark must decode every field to the values we know independently (the published
certificates, ephemeral keys and MACV; the IEEE addresses, issuer and validity we issued
with), and find nothing malformed.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from ke_support import (
    CBKE1,
    IEEE_A,
    IEEE_B,
    IEEE_C,
    Air,
    creds,
    need,
    node,
    vector_node,
)

KE = "zbee_zcl_se.ke"
VALID_FROM = 1_767_225_600  # 2026-01-01T00:00:00Z


def tshark(pcap: Path, fields: list[str]) -> list[list[str]]:
    cmd = [need("tshark"), "-r", str(pcap), "-Y", "zbee_aps.cluster == 0x0800 && zbee_zcl.type == 1",
           "-T", "fields", "-E", "separator=;", "-E", "occurrence=a"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split(";") for line in out.splitlines()]


def malformed(pcap: Path) -> str:
    return subprocess.run([need("tshark"), "-r", str(pcap), "-Y",
                           "_ws.malformed || _ws.expert.severity == error"],
                          capture_output=True, text=True, check=True).stdout


def tshark_time(text: str) -> int:
    head = " ".join(text.replace("UTC", "").split()).split(".")[0]
    return int(dt.datetime.strptime(head, "%b %d, %Y %H:%M:%S").replace(tzinfo=dt.UTC).timestamp())


def test_tshark_reads_complete_exchanges_and_terminates(tmp_path):
    # suite 2 between two devices we issued certificates to (valid from 2026-01-01)
    a = node("A", IEEE_A, 0x4A01, cred_list=[creds(2, IEEE_A, valid_from=VALID_FROM)])
    b = node("B", IEEE_B, 0x0000, cred_list=[creds(2, IEEE_B, valid_from=VALID_FROM)])
    air = Air(a, b)
    air.initiate(a, b)
    assert len(a.established) == 1
    # suite 1 with the published vectors: device_2 initiates
    u, v = vector_node("U", CBKE1["device_2"], 0x4A02), vector_node("V", CBKE1["device_1"], 0x0001)
    air1 = Air(u, v)
    air1.initiate(u, v)
    # failures: a foreign CA (UNKNOWN_ISSUER), suite 2 asked of a suite-1 device
    c = node("C", IEEE_C, 0x4C03, cred_list=[creds(2, IEEE_C, issuer=b"OTHER-CA")])
    s1 = node("S1", IEEE_B, 0x0002, (1,))
    air2 = Air(c, b, s1)
    air2.initiate(c, b, suite=2)
    air2.nodes[0x4C03] = node("C1", IEEE_C, 0x4C03, (1, 2))
    air2.initiate(air2.nodes[0x4C03], s1, suite=2)
    pcap = tmp_path / "ke.pcap"
    air.sent += air1.sent + air2.sent
    air.write_pcap(pcap)

    rows = tshark(pcap, ["frame.number", f"{KE}.cmd.srv_rx.id", f"{KE}.cmd.srv_tx.id",
                         f"{KE}.attr.suite", f"{KE}.init.ephemeral.time",
                         f"{KE}.init.confirm.time", f"{KE}.cert.subject", f"{KE}.cert.issuer",
                         f"{KE}.cert.type", f"{KE}.cert.curve", f"{KE}.cert.hash",
                         f"{KE}.cert.key.usage.agreement", f"{KE}.cert.valid.from",
                         f"{KE}.cert.profile", f"{KE}.cert.reconst", f"{KE}.qeu", f"{KE}.qev",
                         f"{KE}.macu", f"{KE}.macv", f"{KE}.terminate.status",
                         f"{KE}.terminate.wait.time"])
    assert len(rows) == len([s for s in air.sent if s.cluster_specific])
    by = {}
    for r in rows:
        (num, rx, tx, suite, eph_t, conf_t, subject, issuer, ctype, curve, hsh, agree, vfrom,
         profile, recon, qeu, qev, macu, macv, status, wait) = r
        by.setdefault((rx or "-", tx or "-"), []).append(dict(
            suite=suite, eph_t=eph_t, conf_t=conf_t, subject=subject, issuer=issuer, ctype=ctype,
            curve=curve, hash=hsh, agree=agree, vfrom=vfrom, profile=profile, recon=recon,
            qeu=qeu, qev=qev, macu=macu, macv=macv, status=status, wait=wait))

    # Initiate request / response: suite 2 pair, then the suite-1 vectors
    req2, req1 = by[("0x00", "-")][0], by[("0x00", "-")][1]
    rsp2, rsp1 = by[("-", "0x00")][0], by[("-", "0x00")][1]
    for frame, ieee in ((req2, IEEE_A), (rsp2, IEEE_B)):
        assert frame["suite"] == "0x0002" and frame["eph_t"] == frame["conf_t"] == "10"
        assert frame["subject"] == f"{ieee:016x}" and frame["issuer"] == b"SEPTEST1".hex()
        assert (frame["ctype"], frame["curve"], frame["hash"], frame["agree"]) == (
            "0x00", "0x0d", "0x08", "1")
        assert tshark_time(frame["vfrom"]) == VALID_FROM
    for frame, dev in ((req1, CBKE1["device_2"]), (rsp1, CBKE1["device_1"])):
        cert = bytes.fromhex(dev["certificate_hex"])
        assert frame["suite"] == "0x0001" and frame["subject"] == dev["ieee_hex"]
        assert frame["issuer"] == cert[30:38].hex() == b"TESTSECA".hex()
        assert frame["recon"] == cert[:22].hex() and frame["profile"] == cert[38:].hex()

    # ephemeral keys and MACs: the published ones for suite 1, the right sizes for suite 2
    qeus = [f["qeu"] for f in by[("0x01", "-")]]
    qevs = [f["qev"] for f in by[("-", "0x01")]]
    assert [len(q) for q in qeus] == [74, 44] and [len(q) for q in qevs] == [74, 44]
    assert qeus[1] == CBKE1["device_2"]["ephemeral_public_key_hex"]
    assert qevs[1] == CBKE1["device_1"]["ephemeral_public_key_hex"]
    macvs = [f["macv"] for f in by[("-", "0x02")]]
    assert macvs[1] == CBKE1["macv_hex"] and len(macvs[0]) == 32
    assert [len(f["macu"]) for f in by[("0x02", "-")]] == [32, 32]

    # Terminates: UNKNOWN_ISSUER (suite 2), UNSUPPORTED_SUITE (naming suite 1), from servers
    terms = by[("-", "0x03")]
    assert [(f["status"], f["wait"], f["suite"]) for f in terms] == [
        ("0x01", "10", "0x0002"), ("0x05", "10", "0x0001")]
    assert malformed(pcap) == ""
