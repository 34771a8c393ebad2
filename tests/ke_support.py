"""Helpers for the Key Establishment tests: nodes exchanging frames, and OpenSSL as an oracle.

The frames one core produces are decoded (ZCL header) and handed to the other core, as the
endpoint does on a real radio; every frame is kept so tests can read it byte by byte (by
the SE layout, not by our schema) or hand it to tshark. OpenSSL (its command line supports
sect163k1 and sect283k1) derives public keys from private scalars and computes ECDH; it
knows nothing of our code.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import shared_vectors
from required_tools import require_tool

from radios.frames import AirFrame, ApsKind
from radios.pcap import PcapWriter, encode_mac_frame
from sep.clusters.key_establishment import (
    Effect,
    KeyEstablished,
    KeyEstablishment,
    KeyEstablishmentFailed,
)
from sep.security.certs import Credentials
from sep.security.keyfiles import CAKeys, generate_ca, issue_credentials
from sep.zcl.frames import Reply, Request, decode_header

VECTORS = shared_vectors.load()
CBKE1 = VECTORS["cbke_suite1"]
CURVE_NAMES = {1: "sect163k1", 2: "sect283k1"}
PAN_ID = 0x1A62
IEEE_A = 0x000D6F0000000A01
IEEE_B = 0x000D6F0000000B02
IEEE_C = 0x000D6F0000000C03


def need(tool: str) -> str:
    """The tool's path; a missing tool fails the test under CI and skips it elsewhere."""
    return require_tool(tool)


# ------------------------------------------------------------------------------ credentials


@functools.cache
def the_ca(suite: int, issuer: bytes = b"SEPTEST1") -> CAKeys:
    return generate_ca(suite, issuer)


@functools.cache
def creds(suite: int, ieee: int, issuer: bytes = b"SEPTEST1", other_ca: bool = False,
          **fields: int) -> Credentials:
    ca = generate_ca(suite, issuer) if other_ca else the_ca(suite, issuer)
    return issue_credentials(ca, ieee, **fields)


def node(name: str, ieee: int, nwk: int, suites=(1, 2), *, cred_list=None, **kwargs) -> Node:
    cl = cred_list if cred_list is not None else [creds(s, ieee) for s in suites]
    return Node(name, ieee, nwk, KeyEstablishment(cl, endpoint=1, **kwargs))


def vector_node(name: str, dev: dict, nwk: int) -> Node:
    cred = Credentials(1, bytes.fromhex(dev["certificate_hex"]), int(dev["private_key_hex"], 16),
                       bytes.fromhex(CBKE1["ca_public_key_hex"]))
    eph = int(dev["ephemeral_private_key_hex"], 16)
    return Node(name, int(dev["ieee_hex"], 16), nwk,
                KeyEstablishment([cred], endpoint=1, ephemeral_source=lambda curve: eph))


# ------------------------------------------------------------------------------ the exchange


@dataclasses.dataclass
class Node:
    name: str
    ieee: int
    nwk: int
    core: KeyEstablishment
    endpoint: int = 1
    radio_ieee: int | None = None  # what the radio reports as this node's address
    effects: list[Effect] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.radio_ieee is None:
            self.radio_ieee = self.ieee

    @property
    def established(self) -> list[KeyEstablished]:
        return [e for e in self.effects if isinstance(e, KeyEstablished)]

    @property
    def failed(self) -> list[KeyEstablishmentFailed]:
        return [e for e in self.effects if isinstance(e, KeyEstablishmentFailed)]


@dataclasses.dataclass(frozen=True)
class Sent:
    src: Node
    reply: Reply

    @property
    def data(self) -> bytes:
        return self.reply.data

    @property
    def to_server(self) -> bool:
        return not self.data[0] & 0x08

    @property
    def cluster_specific(self) -> bool:
        return self.data[0] & 0x03 == 0x01

    @property
    def command(self) -> int:
        return self.data[2]

    @property
    def payload(self) -> bytes:
        return self.data[3:]


Tamper = Callable[[Sent], bytes | None]


class Air:
    """Delivers frames between nodes in order; ``tamper`` may change or drop one."""

    def __init__(self, *nodes: Node, tamper: Tamper | None = None) -> None:
        self.nodes = {n.nwk: n for n in nodes}
        self.tamper = tamper
        self.sent: list[Sent] = []
        self.now = 1_800_000_000.0

    def run(self, src: Node, effects: list[Effect]) -> None:
        queue = [(src, e) for e in effects]
        while queue:
            node, effect = queue.pop(0)
            if not isinstance(effect, Reply):
                node.effects.append(effect)
                continue
            sent = Sent(node, effect)
            data = effect.data if self.tamper is None else self.tamper(sent)
            if data is None:
                continue
            sent = Sent(node, dataclasses.replace(effect, data=data))
            self.sent.append(sent)
            dst = self.nodes.get(effect.dst_nwk)
            if dst is None:
                continue
            header, payload = decode_header(data)
            req = Request(src_nwk=node.nwk, src_ep=effect.src_ep, dst_ep=effect.dst_ep,
                          profile_id=effect.profile_id, cluster_id=effect.cluster_id,
                          header=header, payload=payload, src_ieee=node.radio_ieee)
            queue += [(dst, e) for e in dst.core.handle(req, self.now)]

    def initiate(self, initiator: Node, responder: Node, **kwargs: object) -> None:
        self.run(initiator, initiator.core.initiate(responder.nwk, responder.endpoint,
                                                    responder.ieee, self.now, **kwargs))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for node in self.nodes.values():
            self.run(node, node.core.tick(self.now))

    def cluster_commands(self, command: int, *, to_server: bool) -> list[Sent]:
        return [s for s in self.sent if s.cluster_specific and s.command == command
                and s.to_server == to_server]

    def terminates(self) -> list[Sent]:
        return [s for s in self.sent if s.cluster_specific and s.command == 0x03]

    def write_pcap(self, path: Path) -> None:
        with PcapWriter(path) as pcap:
            for i, s in enumerate(self.sent):
                r = s.reply
                pcap.write_raw(encode_mac_frame(AirFrame(
                    kind=ApsKind.DATA, pan_id=PAN_ID, src_nwk=s.src.nwk, dst_nwk=r.dst_nwk,
                    src_ieee=s.src.ieee, profile_id=r.profile_id, cluster_id=r.cluster_id,
                    src_ep=r.src_ep, dst_ep=r.dst_ep, aps_counter=i & 0xFF, payload=r.data,
                    ack_request=True, nwk_seq=i, mac_seq=i)), timestamp=1_800_000_000 + i)


def terminate_fields(sent: Sent) -> tuple[int, int, int]:
    """(status, wait time, suite) read by the SE layout: u8, u8, u16 little-endian."""
    p = sent.payload
    assert len(p) == 4, p.hex()
    return p[0], p[1], int.from_bytes(p[2:4], "little")


# ------------------------------------------------------------------------------------ openssl


def _run(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run([need("openssl"), *args], input=data, capture_output=True,
                          check=True).stdout


def _genconf(text: str, out: Path) -> None:
    conf = out.with_suffix(".cnf")
    conf.write_text(text)
    _run("asn1parse", "-genconf", str(conf), "-out", str(out), "-noout")


def _private_der(curve: str, d: int, out: Path) -> None:
    size = 21 if curve == "sect163k1" else 36
    _genconf("asn1=SEQUENCE:ec\n[ec]\nversion=INTEGER:1\n"
             f"key=FORMAT:HEX,OCTETSTRING:{d.to_bytes(size, 'big').hex()}\n"
             f"params=EXPLICIT:0,OID:{curve}\n", out)


def _compressed_from_text(text: str) -> bytes:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("pub:")) + 1
    hexdigits = ""
    for line in lines[start:]:
        if not line.startswith(" "):
            break
        hexdigits += line.strip().replace(":", "")
    return bytes.fromhex(hexdigits)


def openssl_public_key(curve: str, d: int) -> bytes:
    """d·G, compressed, as OpenSSL computes it from the private scalar alone."""
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "k.der"
        _private_der(curve, d, key)
        text = _run("ec", "-inform", "DER", "-in", str(key), "-text", "-noout",
                    "-conv_form", "compressed").decode()
    return _compressed_from_text(text)


def openssl_ecdh(curve: str, d: int, peer_d: int) -> bytes:
    """x(d · (peer_d·G)) by OpenSSL's ECDH (the peer's public key derived by OpenSSL)."""
    with tempfile.TemporaryDirectory() as tmp:
        key, peer, peer_pub = (Path(tmp) / n for n in ("k.der", "p.der", "p.pub.der"))
        _private_der(curve, d, key)
        _private_der(curve, peer_d, peer)
        _run("ec", "-inform", "DER", "-in", str(peer), "-pubout", "-outform", "DER",
             "-out", str(peer_pub))
        return _run("pkeyutl", "-derive", "-inkey", str(key), "-keyform", "DER",
                    "-peerkey", str(peer_pub), "-peerform", "DER")


def write_private_der(curve: str, d: int, out: Path) -> None:
    """An EC private key file (SEC 1 ECPrivateKey, DER) for ``d`` on ``curve``, for openssl."""
    _private_der(curve, d, out)


def write_public_der(curve: str, point: bytes, out: Path) -> None:
    """A SubjectPublicKeyInfo file (DER) holding ``point`` (SEC 1 encoding) on ``curve``."""
    _genconf("asn1=SEQUENCE:spki\n[spki]\nalg=SEQUENCE:alg\n"
             f"pub=FORMAT:HEX,BITSTRING:{point.hex()}\n"
             f"[alg]\noid=OID:id-ecPublicKey\ncurve=OID:{curve}\n", out)


def openssl(*args: str, data: bytes | None = None) -> bytes:
    """Run the openssl command line (stdout; raises on a non-zero exit)."""
    return _run(*args, data=data)


def openssl_accepts_point(curve: str, point: bytes) -> bool:
    """Whether OpenSSL takes ``point`` (SEC 1 encoding) as a public key on ``curve``."""
    with tempfile.TemporaryDirectory() as tmp:
        spki = Path(tmp) / "pub.der"
        write_public_der(curve, point, spki)
        done = subprocess.run([need("openssl"), "pkey", "-pubin", "-inform", "DER", "-in",
                               str(spki), "-noout"], capture_output=True)
        return done.returncode == 0
