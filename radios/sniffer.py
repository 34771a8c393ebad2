"""A sniffer with the keys: every frame on an air, decrypted, as an :class:`AirFrame` value.

What Wireshark does with ``FILE.keys``, in-process, for tests and tools that want to
watch which frames cross the air (cluster, payload) without running tshark. It takes
its keys from the air's registry (``VirtualAir.keys``: what the nodes reported), tries
every network key, then every link key and the key-transport and key-load keys derived
from it. Frames it cannot open are skipped (``undecrypted`` counts them). It is no judge
of our own security code — tshark is; it only spares a test from parsing captures.
"""

from __future__ import annotations

from collections.abc import Callable

from radios import aps, mac, nwk
from radios.air import VirtualAir
from radios.crypto import key_load_key, key_transport_key
from radios.frames import AirFrame, ApsKind
from radios.nwk import AuxHeader, KeyId
from radios.security.codec import open_sealed

FrameTap = Callable[[AirFrame, float], None]


class Sniffer:
    def __init__(self, air: VirtualAir) -> None:
        self.air = air
        self.undecrypted = 0
        self._taps: list[FrameTap] = []
        air.add_tap(self._on_mpdu)

    def add_tap(self, tap: FrameTap) -> None:
        self._taps.append(tap)

    def _on_mpdu(self, mpdu: bytes, ts: float) -> None:
        frame = self.decode(mpdu)
        if frame is not None:
            for tap in self._taps:
                tap(frame, ts)

    def decode(self, mpdu: bytes) -> AirFrame | None:
        frame, opened = decode_frame(mpdu, self.air.keys)
        if not opened:
            self.undecrypted += 1
        return frame


def decode_frame(mpdu: bytes, keys: dict[bytes, str]) -> tuple[AirFrame | None, bool]:
    """(the frame as a value, or None; False when it could not be decrypted). ``keys``:
    key -> label; labels starting with "network" are network keys, the rest link keys."""
    try:
        m = mac.decode(mpdu)
        if m.type != mac.MacType.DATA:
            return None, True
        data = m.payload
        header, pos = nwk.decode_header(data)
        source = header.src_ieee or 0
        if header.security:
            aux, body = AuxHeader.decode(data, pos)
            plain = None
            for key in [k for k, label in keys.items() if label.startswith("network")]:
                plain = open_sealed(data[:pos], aux, data[body:], key, aux.source or source)
                if plain is not None:
                    break
            if plain is None:
                return None, False
            source = aux.source or source
        else:
            plain = data[pos:]
        if header.frame_type != nwk.NwkType.DATA:
            return None, True
        aps_header, apos = aps.decode_header(plain)
        payload = plain[apos:]
        if aps_header.security:
            aux, body = AuxHeader.decode(plain, apos)
            opened = None
            for key in keys:
                derived = (key_transport_key(key) if aux.key_id == KeyId.KEY_TRANSPORT
                           else key_load_key(key) if aux.key_id == KeyId.KEY_LOAD else key)
                opened = open_sealed(plain[:apos], aux, plain[body:], derived,
                                     aux.source or source)
                if opened is not None:
                    break
            if opened is None:
                return None, False
            payload = opened
    except (mac.MacError, nwk.NwkError, aps.ApsError):
        return None, True
    kind = {aps.ApsType.DATA: ApsKind.DATA, aps.ApsType.COMMAND: ApsKind.COMMAND,
            aps.ApsType.ACK: ApsKind.ACK}[aps_header.frame_type]
    return AirFrame(kind=kind, pan_id=m.dst_pan or 0, src_nwk=header.src, dst_nwk=header.dst,
                    src_ieee=source, profile_id=aps_header.profile or 0,
                    cluster_id=aps_header.cluster or 0, src_ep=aps_header.src_ep or 0,
                    dst_ep=aps_header.dst_ep or 0, aps_counter=aps_header.counter,
                    payload=payload, ack_request=aps_header.ack_request, radius=header.radius,
                    nwk_seq=header.seq, mac_seq=m.seq), True
