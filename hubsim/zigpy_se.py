"""Let zigpy's client side read Smart Energy devices.

zigpy 2.4.0 parses ZCL only for the HA (0x0104) and ZLL profiles; a packet with the SE
profile (0x0109) goes to ``custom_profile_packet_received`` and is dropped, so a stock
zigpy (and ZHA) cannot read an SE meter. The ZCL inside is the same, so hubsim's nodes
present SE packets to zigpy as HA-profile packets. Outgoing requests keep the SE
profile (zigpy takes it from the meter's simple descriptor).
"""

from __future__ import annotations

from collections.abc import Callable

import zigpy.application
import zigpy.types as t

SE_PROFILE = 0x0109
HA_PROFILE = 0x0104


def install_se_profile_shim(
    app: zigpy.application.ControllerApplication,
    inner: Callable[[t.ZigbeePacket], None] | None = None,
) -> Callable[[t.ZigbeePacket], None]:
    """Wrap ``app.packet_received`` (or ``inner``); returns the wrapper."""
    upstream = inner or app.packet_received

    def packet_received(packet: t.ZigbeePacket) -> None:
        if packet.profile_id == SE_PROFILE:
            packet = packet.replace(profile_id=t.uint16_t(HA_PROFILE))
        upstream(packet)

    app.packet_received = packet_received  # type: ignore[method-assign]
    return packet_received
