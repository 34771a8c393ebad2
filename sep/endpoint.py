"""The SE endpoint served at packet level (sans-IO).

zigpy dispatches incoming packets to the *sender's* device object and never to the
coordinator's own endpoints, so the meter's endpoint is served here: packets addressed
to it are decoded, handed to the cluster server, and the answers come back as
:class:`~sep.zcl.frames.Reply` values for the shell to send.

Drop rules (APS/ZCL): a frame of a cluster SE protects with link keys that the radio says
arrived without APS security is dropped (counted in ``frames_unsecured``); another endpoint, or a profile other than SE (0x0109) or the
wildcard, is not for us and is dropped silently; a frame whose ZCL header cannot be
decoded has no transaction to answer and is dropped; an unknown cluster gets
UNSUPPORTED_CLUSTER (unicast only). Server-to-client frames are for the endpoint's client
side: a cluster with a :data:`ClientHandler` (the meter as a client of its supplier's
ESI, ``sep/clusters/supplier_link.py``) gets them, else they are ignored.

Home Automation hosts (zigbee2mqtt, ZHA) read meters with the HA profile (0x0104). With
``ha_profile`` on, Basic, Identify, Time and Metering frames on that profile are served too,
answered (and later reported) in the profile they came in, but only what reads: attribute
reads, reporting configuration and discovery, Identify's commands. Anything else on HA gets
NOT_AUTHORIZED; other clusters on HA are dropped. Frames for this endpoint are never left to
zigpy's generic cluster code (:func:`sep.packets.serve` drops what is not taken here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import zigpy.zdo.types as zdo_t
from zigpy.zcl import foundation

from sep.clusters.base import ClusterServer
from sep.zcl.frames import (
    SE_PROFILE,
    WILDCARD_PROFILE,
    MalformedFrame,
    Reply,
    Request,
    Status,
    decode_header,
    default_response,
    server_frame,
)
from sep.zcl.security import requires_aps_security

LOGGER = logging.getLogger(__name__)

SE_DEVICE_METERING = 0x0501  # SE 1.4 device id: Metering Device

HA_PROFILE = 0x0104
#: clusters a Home Automation host may read with its own profile
HA_CLUSTERS = frozenset({0x0000, 0x0003, 0x000A, 0x0702})
_GC = foundation.GeneralCommand
#: what a Home Automation host may send on them: reads, reporting, discovery
HA_GENERAL_COMMANDS = frozenset({
    _GC.Read_Attributes, _GC.Configure_Reporting, _GC.Read_Reporting_Configuration,
    _GC.Default_Response, _GC.Discover_Attributes, _GC.Discover_Commands_Received,
    _GC.Discover_Commands_Generated, _GC.Discover_Attribute_Extended,
})
HA_CLUSTER_COMMANDS = {0x0003: frozenset({0x00, 0x01})}  # Identify, Identify Query

#: the client side of one cluster: a decoded server-to-client frame in, frames out
ClientHandler = Callable[[Request, float], list[bytes]]


class SeEndpoint:
    def __init__(self, endpoint_id: int, servers: list[ClusterServer], *,
                 device_type: int = SE_DEVICE_METERING, output_clusters: tuple[int, ...] = ()) -> None:
        self.endpoint_id = endpoint_id
        self.device_type = device_type
        self.servers = {s.cluster_id: s for s in servers}
        self.output_clusters = list(output_clusters)
        self.client_handlers: dict[int, ClientHandler] = {}
        self._tsn = 0
        self.frames_in = 0
        self.frames_dropped = 0
        #: exceptions a cluster server or client handler raised (caught here so the meter
        #: keeps serving): each one is a bug the robustness campaigns look for
        self.internal_errors = 0
        self.frames_unsecured = 0
        #: SE's rule (5.4.6) for frames the radio says came without APS security; off only
        #: to measure what security costs (bench/)
        self.require_aps_security = True
        #: clusters served beside this table (Key Establishment, run by its own shell)
        self.extra_input_clusters: list[int] = []
        #: serve Home Automation hosts' reads (HA_CLUSTERS on profile 0x0104) too
        self.ha_profile = True
        self.frames_refused_ha = 0
        #: the profile each client talks to us in, per cluster: reports and pushes go back
        #: in it
        self.client_profiles: dict[tuple[int, int, int], int] = {}

    def descriptor(self) -> zdo_t.SimpleDescriptor:
        return zdo_t.SimpleDescriptor(
            endpoint=self.endpoint_id,
            profile=SE_PROFILE,
            device_type=self.device_type,
            device_version=0,
            input_clusters=sorted({*self.servers, *self.extra_input_clusters}),
            output_clusters=self.output_clusters,
        )

    def next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) & 0xFF
        return self._tsn

    def accepts(self, dst_ep: int, profile_id: int, cluster_id: int | None = None) -> bool:
        if dst_ep not in (self.endpoint_id, 0xFF):
            return False
        if profile_id == HA_PROFILE:
            return self.ha_profile and (cluster_id is None or cluster_id in HA_CLUSTERS)
        return profile_id in (SE_PROFILE, WILDCARD_PROFILE)

    def _profile_for(self, cluster_id: int, dst_nwk: int, dst_ep: int) -> int:
        return self.client_profiles.get((cluster_id, dst_nwk, dst_ep), SE_PROFILE)

    def handle(self, *, src_nwk: int, src_ep: int, dst_ep: int, profile_id: int,
               cluster_id: int, data: bytes, broadcast: bool, now: float,
               src_ieee: int | None = None, aps_secured: bool | None = None) -> list[Reply]:
        if not self.accepts(dst_ep, profile_id, cluster_id):
            self.frames_dropped += 1
            return []
        if aps_secured is False and self.require_aps_security \
                and requires_aps_security(HA_PROFILE if profile_id == HA_PROFILE else SE_PROFILE,
                                          cluster_id):
            # SE 5.4.6: this cluster travels under the partner's link key only
            self.frames_unsecured += 1
            LOGGER.info("dropped cluster 0x%04X frame from 0x%04X without APS security",
                        cluster_id, src_nwk)
            return []
        self.frames_in += 1
        try:
            header, payload = decode_header(data)
        except MalformedFrame as exc:
            LOGGER.info("dropped undecodable ZCL frame from 0x%04X: %s", src_nwk, exc)
            self.frames_dropped += 1
            return []
        profile = HA_PROFILE if profile_id == HA_PROFILE else SE_PROFILE
        req = Request(src_nwk=src_nwk, src_ep=src_ep, dst_ep=self.endpoint_id,
                      profile_id=profile, cluster_id=cluster_id, header=header,
                      payload=payload, broadcast=broadcast, src_ieee=src_ieee,
                      aps_secured=aps_secured)

        def reply(frame: bytes) -> Reply:
            return Reply(dst_nwk=src_nwk, dst_ep=src_ep, src_ep=self.endpoint_id,
                         profile_id=profile, cluster_id=cluster_id, data=frame)

        if profile == HA_PROFILE:
            allowed = (header.command_id in HA_GENERAL_COMMANDS if req.is_general
                       else header.command_id in HA_CLUSTER_COMMANDS.get(cluster_id, ()))
            if not allowed or req.manufacturer is not None:
                # a Home Automation host reads; it does not write, switch or publish
                self.frames_refused_ha += 1
                if broadcast or (req.is_general
                                 and req.command_id == foundation.GeneralCommand.Default_Response):
                    return []
                return [reply(default_response(req, Status.NOT_AUTHORIZED))]
        if not broadcast:
            key = (cluster_id, src_nwk, src_ep)
            if self.client_profiles.get(key, SE_PROFILE) != profile:
                self.client_profiles[key] = profile
            while len(self.client_profiles) > 256:
                del self.client_profiles[next(iter(self.client_profiles))]

        if header.frame_control.direction != foundation.Direction.Client_to_Server:
            client = self.client_handlers.get(cluster_id)
            if client is None:
                return []  # no client side of that cluster here
            try:
                return [reply(f) for f in client(req, now)]
            except Exception:  # noqa: BLE001 - the meter keeps serving whatever a frame does
                self.internal_errors += 1
                LOGGER.exception("client of cluster 0x%04X failed on %r", cluster_id, data.hex())
                return []
        server = self.servers.get(cluster_id)
        if server is None:
            if broadcast or req.is_general and req.command_id == foundation.GeneralCommand.Default_Response:
                return []
            return [reply(default_response(req, Status.UNSUPPORTED_CLUSTER))]
        try:
            frames = server.handle(req, now)
        except Exception:  # noqa: BLE001 - the meter keeps serving whatever a frame does
            self.internal_errors += 1
            LOGGER.exception("cluster 0x%04X failed on %r", cluster_id, data.hex())
            frames = [] if broadcast else [default_response(req, Status.FAILURE)]
        return [reply(f) for f in frames]

    def has_pushes(self) -> bool:
        return any(server.outbox for server in self.servers.values())

    def pushes(self) -> list[Reply]:
        """Unsolicited server commands (ClusterServer.outbox): one copy per known client, or
        one to the client a frame is addressed to (its ``dst``)."""
        out = []
        for cluster_id, server in self.servers.items():
            for frame in server.take_outbox():
                dst = getattr(frame, "dst", None)
                for dst_nwk, dst_ep in [dst] if dst is not None else sorted(server.clients):
                    out.append(Reply(dst_nwk=dst_nwk, dst_ep=dst_ep, src_ep=self.endpoint_id,
                                     profile_id=self._profile_for(cluster_id, dst_nwk, dst_ep),
                                     cluster_id=cluster_id, data=frame))
        return out

    def reports(self, now: float) -> list[Reply]:
        """Advance every server's clock; attribute reports and pushes that are due."""
        out = []
        for cluster_id, server in self.servers.items():
            server.tick(now)
            for (dst_nwk, dst_ep), payload in server.reporter.due(now).items():
                frame = server_frame(self.next_tsn(), foundation.GeneralCommand.Report_Attributes,
                                     payload, general=True)
                out.append(Reply(dst_nwk=dst_nwk, dst_ep=dst_ep, src_ep=self.endpoint_id,
                                 profile_id=self._profile_for(cluster_id, dst_nwk, dst_ep),
                                 cluster_id=cluster_id, data=frame))
        return out + self.pushes()
