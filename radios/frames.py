"""The unit that travels on the virtual air: one APS frame inside one NWK/MAC frame.

The virtual air is single-hop: the MAC source/destination equal the NWK source/
destination, and broadcasts go to MAC 0xFFFF. Frames are immutable values; the air
stamps sequence numbers (MAC, NWK) when a frame is transmitted.
"""

from __future__ import annotations

import dataclasses
import enum

BROADCAST_ALL = 0xFFFF  # all devices
BROADCAST_RX_ON = 0xFFFD  # rx-on-when-idle devices
BROADCAST_ROUTERS = 0xFFFC  # routers and coordinator


class ApsKind(enum.IntEnum):
    """APS frame type (Zigbee spec 2.2.5.1.1.1)."""

    DATA = 0
    COMMAND = 1
    ACK = 2


def is_broadcast(nwk: int) -> bool:
    return nwk >= 0xFFF8


@dataclasses.dataclass(frozen=True, slots=True)
class AirFrame:
    """One APS data or APS ack frame as carried on the air.

    IEEE addresses are 64-bit integers (the EUI-64 read as a big-endian number, i.e.
    ``int(str(eui64).replace(':', ''), 16)``); on the wire they are little-endian.
    """

    kind: ApsKind
    pan_id: int
    src_nwk: int
    dst_nwk: int
    src_ieee: int
    profile_id: int
    cluster_id: int
    src_ep: int
    dst_ep: int
    aps_counter: int
    payload: bytes = b""
    ack_request: bool = False
    radius: int = 30
    nwk_seq: int = 0
    mac_seq: int = 0

    @property
    def broadcast(self) -> bool:
        return is_broadcast(self.dst_nwk)

    def replace(self, **changes: object) -> AirFrame:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def make_ack(self, ack_src_ieee: int) -> AirFrame:
        """The APS ACK a receiver returns for this data frame."""
        return AirFrame(
            kind=ApsKind.ACK,
            pan_id=self.pan_id,
            src_nwk=self.dst_nwk,
            dst_nwk=self.src_nwk,
            src_ieee=ack_src_ieee,
            profile_id=self.profile_id,
            cluster_id=self.cluster_id,
            src_ep=self.dst_ep,
            dst_ep=self.src_ep,
            aps_counter=self.aps_counter,
        )
