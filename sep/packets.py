"""zigpy packets to and from the sans-IO SE endpoint (no I/O here either).

The meter and hubsim's nodes serve their SE endpoints at packet level (zigpy never
dispatches to a node's own endpoints): :func:`serve` hands a ``ZigbeePacket`` to an
:class:`~sep.endpoint.SeEndpoint` and :func:`to_packet` turns each :class:`Reply` into the
packet to send with ``app.send_packet``.
"""

from __future__ import annotations

import zigpy.types as t

from sep.endpoint import SeEndpoint
from sep.zcl.frames import Reply
from sep.zcl.security import requires_aps_security


def is_broadcast(packet: t.ZigbeePacket) -> bool:
    return packet.dst is not None and packet.dst.addr_mode in (
        t.AddrMode.Broadcast, t.AddrMode.Group)


def serve(endpoint: SeEndpoint, packet: t.ZigbeePacket, now: float) -> list[Reply] | None:
    """The replies to ``packet``, or None when it is not for ``endpoint``."""
    dst_ep = int(packet.dst_ep or 0)
    if dst_ep == 0 or not endpoint.accepts(dst_ep, int(packet.profile_id)):
        return None
    src = packet.src
    if src is None or src.addr_mode != t.AddrMode.NWK:
        return []
    src_ieee, secured = aps_security(packet)
    return endpoint.handle(
        src_nwk=int(src.address), src_ep=int(packet.src_ep or 0), dst_ep=dst_ep,
        profile_id=int(packet.profile_id), cluster_id=int(packet.cluster_id),
        data=bytes(packet.data.serialize()), broadcast=is_broadcast(packet), now=now,
        src_ieee=src_ieee, aps_secured=secured,
    )


def aps_security(packet: t.ZigbeePacket) -> tuple[int | None, bool]:
    """(the sender's IEEE as its link key authenticates it, APS-secured?).

    Radio libraries mark an incoming packet that arrived APS-encrypted with
    ``TransmitOptions.APS_Encryption`` (bellows does, from EZSP's APS_OPTION_ENCRYPTION;
    so does the virtual radio). The virtual radio also names the partner whose link key
    opened it (``SecuredPacket.aps_partner``); with bellows the IEEE is not passed up."""
    secured = bool(packet.tx_options & t.TransmitOptions.APS_Encryption)
    partner = getattr(packet, "aps_partner", None)
    if not secured or partner is None:
        return None, secured
    return int.from_bytes(bytes(partner), "little"), True


def to_packet(reply: Reply, src_nwk: int) -> t.ZigbeePacket:
    return t.ZigbeePacket(
        src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(src_nwk)),
        src_ep=t.uint8_t(reply.src_ep),
        dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(reply.dst_nwk)),
        dst_ep=t.uint8_t(reply.dst_ep),
        tsn=t.uint8_t(reply.data[1] if len(reply.data) > 1 else 0),
        profile_id=t.uint16_t(reply.profile_id),
        cluster_id=t.uint16_t(reply.cluster_id),
        data=t.SerializableBytes(reply.data),
        tx_options=t.TransmitOptions.ACK | (
            t.TransmitOptions.APS_Encryption
            if requires_aps_security(reply.profile_id, reply.cluster_id)
            else t.TransmitOptions.NONE),
        radius=t.uint8_t(30),
    )
