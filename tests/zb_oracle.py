"""An independent reader of the frames the HAN tests put on the air: IEEE 802.15.4 MAC, Zigbee
NWK and APS headers, their auxiliary security headers, and CCM* opening, written here from
the spec (Zigbee 05-3474 2.2.5, 3.3.1, 4.5.1; 802.15.4 5.2) and not from ``radios/``.

Keys are derived by zigpy (``convert_install_code``, ``aes_mmo_hash``) and the HMAC of
Zigbee B.1.4 written here; CCM* at level 5 is ``cryptography``'s AES-CCM with a 4-byte
tag. Nothing from the stack under test is imported.
"""

from __future__ import annotations

import dataclasses
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from zigpy.util import aes_mmo_hash, convert_install_code


def install_code_key(code: bytes) -> bytes:
    return bytes(convert_install_code(code))


def hmac_mmo(key: bytes, message: bytes) -> bytes:
    """Zigbee B.1.4: HMAC with AES-MMO as its hash, 16-byte blocks."""
    inner = aes_mmo_hash(bytes(b ^ 0x36 for b in key) + message)
    return bytes(aes_mmo_hash(bytes(b ^ 0x5C for b in key) + bytes(inner)))


def key_transport_key(link: bytes) -> bytes:
    return hmac_mmo(link, b"\x00")  # 4.5.3: the key-transport key


def key_load_key(link: bytes) -> bytes:
    return hmac_mmo(link, b"\x02")  # 4.5.3: the key-load key


@dataclasses.dataclass
class Frame:
    """What one MPDU says, layer by layer (None where a layer is absent or closed)."""

    mac_type: int
    mac_dst: int | None
    mac_src: int | None
    nwk_fc: int | None = None
    nwk_dst: int | None = None
    nwk_src: int | None = None
    nwk_secured: bool = False
    nwk_src64: int | None = None
    nwk_counter: int | None = None
    nwk_key_seq: int | None = None
    nwk_payload: bytes | None = None  # opened (or clear) NWK payload
    aps_fc: int | None = None
    aps_counter: int | None = None
    aps_dst_ep: int | None = None
    aps_cluster: int | None = None
    aps_profile: int | None = None
    aps_src_ep: int | None = None
    aps_secured: bool = False
    aps_key_id: int | None = None
    aps_source: int | None = None
    aps_sec_counter: int | None = None
    aps_payload: bytes | None = None  # opened (or clear) APS payload

    @property
    def nwk_command(self) -> bool:
        return self.nwk_fc is not None and self.nwk_fc & 0x3 == 1

    @property
    def aps_type(self) -> int | None:
        return None if self.aps_fc is None else self.aps_fc & 0x3


def _aux(data: bytes, pos: int) -> tuple[int, int, int | None, int | None, int]:
    """(security control, counter, source IEEE, key seq, position after the aux header)."""
    control = data[pos]
    counter = struct.unpack_from("<I", data, pos + 1)[0]
    pos += 5
    source = None
    if control & 0x20:  # extended nonce
        source = int.from_bytes(data[pos:pos + 8], "little")
        pos += 8
    key_seq = None
    if (control >> 3) & 0x3 == 1:  # a network key: its sequence number follows
        key_seq = data[pos]
        pos += 1
    return control, counter, source, key_seq, pos


def _seal_open(key: bytes, plain_header: bytes, aux_bytes: bytes, control: int, counter: int,
               source: int, body: bytes) -> bytes | None:
    level5 = (control & ~0x07) | 0x05
    aad = plain_header + bytes([level5]) + aux_bytes[1:]
    nonce = source.to_bytes(8, "little") + struct.pack("<I", counter) + bytes([level5])
    try:
        return AESCCM(key, tag_length=4).decrypt(nonce, body, aad)
    except InvalidTag:
        return None


def read(mpdu: bytes, *, network_keys: list[bytes] = (), link_keys: list[bytes] = ()) -> Frame:
    """Decode ``mpdu`` (no FCS). NWK-secured frames are opened with the first network key
    that verifies; APS-secured ones with the link keys given, as data keys, key-transport
    keys or key-load keys by the key identifier in their auxiliary header."""
    fc, _seq = struct.unpack_from("<HB", mpdu)
    ftype, dst_mode, src_mode = fc & 0x7, (fc >> 10) & 3, (fc >> 14) & 3
    pos = 3
    dst = src = None
    if dst_mode:
        pos += 2  # destination PAN
        n = 2 if dst_mode == 2 else 8
        dst = int.from_bytes(mpdu[pos:pos + n], "little")
        pos += n
    if src_mode:
        if not fc & 0x40:
            pos += 2
        n = 2 if src_mode == 2 else 8
        src = int.from_bytes(mpdu[pos:pos + n], "little")
        pos += n
    frame = Frame(ftype, dst, src)
    if ftype != 1:  # not a data frame: no NWK
        frame.nwk_payload = mpdu[pos:]
        return frame
    nwk = mpdu[pos:]
    nfc, ndst, nsrc, _radius, _nseq = struct.unpack_from("<HHHBB", nwk)
    p = 8
    if nfc & 0x0800:  # destination IEEE
        p += 8
    src64 = None
    if nfc & 0x1000:  # source IEEE
        src64 = int.from_bytes(nwk[p:p + 8], "little")
        p += 8
    frame.nwk_fc, frame.nwk_dst, frame.nwk_src, frame.nwk_src64 = nfc, ndst, nsrc, src64
    if nfc & 0x0200:
        frame.nwk_secured = True
        control, counter, source, key_seq, q = _aux(nwk, p)
        frame.nwk_counter, frame.nwk_key_seq = counter, key_seq
        for key in network_keys:
            plain = _seal_open(key, nwk[:p], nwk[p:q], control, counter, source, nwk[q:])
            if plain is not None:
                frame.nwk_payload = plain
                break
    else:
        frame.nwk_payload = nwk[p:]
    if frame.nwk_payload is None or frame.nwk_command:
        return frame
    aps = frame.nwk_payload
    afc = aps[0]
    frame.aps_fc = afc
    atype, delivery = afc & 0x3, (afc >> 2) & 0x3
    p = 1
    if atype == 0 or (atype == 2 and not afc & 0x10):
        # data (and a data frame's ACK): destination endpoint (or group), cluster, profile,
        # source endpoint
        if delivery == 3:
            p += 2
        else:
            frame.aps_dst_ep = aps[p]
            p += 1
        frame.aps_cluster, frame.aps_profile, frame.aps_src_ep = struct.unpack_from(
            "<HHB", aps, p)
        p += 5
    frame.aps_counter = aps[p]
    p += 1
    if afc & 0x20:
        frame.aps_secured = True
        control, counter, source, _ks, q = _aux(aps, p)
        frame.aps_key_id = (control >> 3) & 0x3
        frame.aps_source = source if source is not None else src64
        frame.aps_sec_counter = counter
        for link in link_keys:
            key = {0: link, 2: key_transport_key(link), 3: key_load_key(link)}.get(
                frame.aps_key_id)
            if key is None:
                continue
            plain = _seal_open(key, aps[:p], aps[p:q], control, counter, frame.aps_source,
                               aps[q:])
            if plain is not None:
                frame.aps_payload = plain
                break
    else:
        frame.aps_payload = aps[p:]
    return frame


@dataclasses.dataclass
class TransportKey:
    """An APS Transport Key command (4.4.10.1) as its bytes say."""

    key_type: int
    key: bytes
    key_seq: int | None
    dst_ieee: int
    src_ieee: int | None


def transport_key(payload: bytes) -> TransportKey | None:
    if not payload or payload[0] != 0x05:
        return None
    key_type, key = payload[1], payload[2:18]
    rest = payload[18:]
    if key_type == 0x01:  # network key: seq, dst, src
        return TransportKey(key_type, key, rest[0], int.from_bytes(rest[1:9], "little"),
                            int.from_bytes(rest[9:17], "little"))
    return TransportKey(key_type, key, None, int.from_bytes(rest[0:8], "little"), None)
