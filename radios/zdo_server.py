"""The ZDO server a Zigbee stack's firmware runs for its node (sans-IO).

A real EZSP stick answers Node/Power/Active-endpoint/Simple/Match descriptor and
address requests itself, from the endpoints the host registered; the virtual radio does
the same with this object. Frames are encoded with zigpy's ZDO schemas.

Rules followed (Zigbee spec 2.4.3/2.4.4):
- unicast requests always get a response (NOT_SUPPORTED for requests we do not serve or
  do not know, INVALID_EP / NOT_ACTIVE for bad endpoints, DEVICE_NOT_FOUND for another
  NWKAddrOfInterest);
- broadcast requests (Match_Desc, NWK_addr) are answered only on a match, never with an
  error;
- a request that cannot be parsed is answered with INV_REQUESTTYPE when unicast and
  dropped when broadcast;
- an error response keeps the fields its layout has whatever the status (:func:`refusal`),
  so the requester's parser (zigpy's) can read it.

The binding table (2.4.3.2.2, 2.4.3.3.4) lives here too, as it does in a stick's
firmware: Bind_req / Unbind_req for our own IEEE and endpoints, Mgmt_Bind_req reads it.
The host sends reports to the bound destinations (``bindings_for``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import zigpy.types as t
import zigpy.zdo.types as zdo_t

LOGGER = logging.getLogger(__name__)

ZDOCmd = zdo_t.ZDOCmd
Status = zdo_t.Status


@dataclasses.dataclass
class NodeIdentity:
    ieee: t.EUI64
    nwk: int
    logical_type: zdo_t.LogicalType = zdo_t.LogicalType.Router
    manufacturer_code: int = 0x1234
    endpoints: dict[int, zdo_t.SimpleDescriptor] = dataclasses.field(default_factory=dict)

    def node_descriptor(self) -> zdo_t.NodeDescriptor:
        caps = (
            zdo_t.MACCapabilityFlags.FullFunctionDevice
            | zdo_t.MACCapabilityFlags.MainsPowered
            | zdo_t.MACCapabilityFlags.RxOnWhenIdle
            | zdo_t.MACCapabilityFlags.AllocateAddress
        )
        if self.logical_type == zdo_t.LogicalType.Coordinator:
            caps |= zdo_t.MACCapabilityFlags.AlternatePanCoordinator
            server_mask = 0x2C00 | 0x0001 | 0x0040  # R22 stack; primary TC; network manager
        else:
            server_mask = 0x2C00
        return zdo_t.NodeDescriptor(
            logical_type=self.logical_type,
            complex_descriptor_available=0,
            user_descriptor_available=0,
            reserved=0,
            aps_flags=0,
            frequency_band=zdo_t.FrequencyBand.Freq2400MHz,
            mac_capability_flags=caps,
            manufacturer_code=self.manufacturer_code,
            maximum_buffer_size=82,
            maximum_incoming_transfer_size=82,
            server_mask=server_mask,
            maximum_outgoing_transfer_size=82,
            descriptor_capability_field=zdo_t.DescriptorCapability.NONE,
        )

    def power_descriptor(self) -> zdo_t.PowerDescriptor:
        return zdo_t.PowerDescriptor(
            current_power_mode=zdo_t.PowerDescriptor.CurrentPowerMode.RxOnSyncedWithNodeDesc,
            available_power_sources=zdo_t.PowerDescriptor.PowerSources.MainsPower,
            current_power_source=zdo_t.PowerDescriptor.PowerSources.MainsPower,
            current_power_source_level=zdo_t.PowerDescriptor.PowerSourceLevel.Percent100,
        )


def encode(cmd: int, tsn: int, *args: object) -> bytes:
    _names, schema = zdo_t.CLUSTERS[cmd]
    return bytes([tsn & 0xFF]) + t.serialize(args, schema)


def refusal(cmd: int, tsn: int, status: int, node: NodeIdentity, nwk: int | None = None
            ) -> bytes | None:
    """A response carrying an error status, laid out as the response is (zigpy's schema,
    the spec's table): the fields present whatever the status follow it — ``nwk`` (the
    address asked about) or this node's addresses, zero counts, empty lists — and the ones
    present only on SUCCESS (zigpy's ``Optional``) are left out. A bare ``[tsn, status]``
    is readable only where the response has nothing else. None: the response has no
    status field at all (the request is not answered)."""
    entry = zdo_t.CLUSTERS.get(cmd)
    if entry is None:
        return bytes([tsn, status])  # a response nobody defined: the status alone
    fields = list(entry[1])
    if not fields or fields[0] is not Status:
        return None
    out = bytes([tsn, status])
    for typ in fields[1:]:
        if getattr(typ, "optional", False):
            break
        if typ is t.EUI64:
            out += node.ieee.serialize()
        elif typ is t.NWK:
            out += t.NWK(node.nwk if nwk is None else nwk).serialize()
        else:  # a count, a list, a bitmap: its zero value
            out += typ.deserialize(bytes(64))[0].serialize()
    return out


def device_announce(node: NodeIdentity, tsn: int) -> bytes:
    caps = node.node_descriptor().mac_capability_flags
    return encode(ZDOCmd.Device_annce, tsn, t.NWK(node.nwk), node.ieee, t.uint8_t(caps))


BINDING_TABLE_SIZE = 32
MGMT_BIND_PER_FRAME = 3  # 21-byte entries: three fit in one frame with headroom


@dataclasses.dataclass(frozen=True)
class BindingEntry:
    """One binding: our (endpoint, cluster) to a device's endpoint (unicast) or a group."""

    src_ep: int
    cluster: int
    dst_ieee: int | None = None
    dst_ep: int | None = None
    group: int | None = None

    def to_json(self) -> dict[str, int]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> BindingEntry:
        return cls(**data)


class ZdoServer:
    """Answers ZDO requests for one node. ``handle`` returns (cluster, payload) replies."""

    def __init__(self, node: NodeIdentity, bindings: list[dict[str, int]] | None = None,
                 *, on_change: Callable[[], None] = lambda: None) -> None:
        self.node = node
        self._bindings = bindings if bindings is not None else []
        self.on_change = on_change

    def passes_up(self, cluster_id: int) -> bool:
        """Whether a request the firmware answered also goes up to the host (no: the
        host only hears announcements and responses)."""
        return False

    # -- the binding table --------------------------------------------------------------
    @property
    def bindings(self) -> list[BindingEntry]:
        return [BindingEntry.from_json(b) for b in self._bindings]

    def bindings_for(self, src_ep: int, cluster: int) -> list[BindingEntry]:
        return [b for b in self.bindings if b.src_ep == src_ep and b.cluster == cluster]

    def _bind_entry(self, src, src_ep, cluster, dst) -> BindingEntry | int:
        if src != self.node.ieee:
            return Status.NOT_SUPPORTED
        if src_ep not in self.node.endpoints:
            return Status.INVALID_EP
        if dst.addrmode == 0x01:
            return BindingEntry(int(src_ep), int(cluster), group=int(dst.nwk))
        return BindingEntry(int(src_ep), int(cluster), dst_ieee=int.from_bytes(bytes(dst.ieee),
                                                                                "little"),
                            dst_ep=int(dst.endpoint))

    def _on_Bind_req(self, tsn, src, src_ep, cluster, dst, *, broadcast):  # noqa: N802
        if broadcast:
            return None
        entry = self._bind_entry(src, src_ep, cluster, dst)
        if not isinstance(entry, BindingEntry):
            return bytes([tsn, entry])
        if entry.to_json() not in self._bindings:
            if len(self._bindings) >= BINDING_TABLE_SIZE:
                return bytes([tsn, Status.TABLE_FULL])
            self._bindings.append(entry.to_json())
            self.on_change()
        return bytes([tsn, Status.SUCCESS])

    def _on_Unbind_req(self, tsn, src, src_ep, cluster, dst, *, broadcast):  # noqa: N802
        if broadcast:
            return None
        entry = self._bind_entry(src, src_ep, cluster, dst)
        if not isinstance(entry, BindingEntry):
            return bytes([tsn, entry])
        if entry.to_json() not in self._bindings:
            return bytes([tsn, Status.NO_ENTRY])
        self._bindings.remove(entry.to_json())
        self.on_change()
        return bytes([tsn, Status.SUCCESS])

    def _on_Mgmt_Bind_req(self, tsn, start, *, broadcast):  # noqa: N802
        if broadcast:
            return None
        table = self.bindings
        chunk = table[start:start + MGMT_BIND_PER_FRAME]
        entries = []
        for b in chunk:
            if b.group is not None:
                dst = zdo_t.MultiAddress(addrmode=0x01, nwk=b.group)
            else:
                dst = zdo_t.MultiAddress(addrmode=0x03, ieee=t.EUI64(
                    (b.dst_ieee or 0).to_bytes(8, "little")), endpoint=b.dst_ep or 0)
            entries.append(zdo_t.Binding(SrcAddress=self.node.ieee, SrcEndpoint=b.src_ep,
                                         ClusterId=b.cluster, DstAddress=dst))
        return bytes([tsn, Status.SUCCESS, len(table), start, len(entries)]) + b"".join(
            e.serialize() for e in entries)

    def handle(self, cluster_id: int, data: bytes, *, broadcast: bool) -> list[tuple[int, bytes]]:
        if cluster_id & 0x8000 or cluster_id == ZDOCmd.Device_annce:
            return []  # responses and announcements are not for the server
        if not data:
            return []
        tsn = data[0]
        rsp_cluster = cluster_id | 0x8000

        def refuse(status: int) -> list[tuple[int, bytes]]:
            payload = None if broadcast else refusal(rsp_cluster, tsn, status, self.node)
            return [] if payload is None else [(rsp_cluster, payload)]

        try:
            cmd = zdo_t.ZDOCmd(cluster_id)
            schema = zdo_t.CLUSTERS[cmd][1]
        except (ValueError, KeyError):
            return refuse(Status.NOT_SUPPORTED)  # a request we do not know
        try:
            args, rest = t.deserialize(data[1:], schema)
        except (ValueError, KeyError):
            return refuse(Status.INV_REQUESTTYPE)
        handler = getattr(self, f"_on_{cmd.name}", None)
        if handler is None:
            return refuse(Status.NOT_SUPPORTED)
        payload = handler(tsn, *args, broadcast=broadcast)
        return [] if payload is None else [(rsp_cluster, payload)]

    # -- address requests -------------------------------------------------------
    def _addr_rsp(self, cmd: int, tsn: int, request_type: int) -> bytes:
        if request_type not in (0, 1):
            return encode(cmd, tsn, Status.INV_REQUESTTYPE, self.node.ieee, t.NWK(self.node.nwk))
        if request_type == 1:  # extended: no associated devices on the virtual air
            return encode(
                cmd, tsn, Status.SUCCESS, self.node.ieee, t.NWK(self.node.nwk),
                t.uint8_t(0), t.uint8_t(0), t.List[t.NWK]([]),
            )
        return encode(cmd, tsn, Status.SUCCESS, self.node.ieee, t.NWK(self.node.nwk))

    def _on_NWK_addr_req(self, tsn, ieee, request_type, _start, *, broadcast):  # noqa: N802
        if ieee != self.node.ieee:
            return None  # only the node with that IEEE answers
        return self._addr_rsp(ZDOCmd.NWK_addr_rsp, tsn, request_type)

    def _on_IEEE_addr_req(self, tsn, nwk, request_type, _start, *, broadcast):  # noqa: N802
        if nwk != self.node.nwk:
            if broadcast:
                return None
            return encode(
                ZDOCmd.IEEE_addr_rsp, tsn, Status.DEVICE_NOT_FOUND, self.node.ieee, t.NWK(nwk)
            )
        return self._addr_rsp(ZDOCmd.IEEE_addr_rsp, tsn, request_type)

    # -- descriptors ------------------------------------------------------------------
    def _wrong_node(self, cmd: int, tsn: int, nwk: int, broadcast: bool = False
                    ) -> bytes | None:
        if broadcast:
            return None  # every other node would answer "not me" too
        return refusal(cmd, tsn, Status.DEVICE_NOT_FOUND, self.node, nwk)

    def _on_Node_Desc_req(self, tsn, nwk, *, broadcast):  # noqa: N802
        if nwk != self.node.nwk:
            return self._wrong_node(ZDOCmd.Node_Desc_rsp, tsn, nwk, broadcast)
        return encode(ZDOCmd.Node_Desc_rsp, tsn, Status.SUCCESS, t.NWK(nwk),
                      self.node.node_descriptor())

    def _on_Power_Desc_req(self, tsn, nwk, *, broadcast):  # noqa: N802
        if nwk != self.node.nwk:
            return self._wrong_node(ZDOCmd.Power_Desc_rsp, tsn, nwk, broadcast)
        return encode(ZDOCmd.Power_Desc_rsp, tsn, Status.SUCCESS, t.NWK(nwk),
                      self.node.power_descriptor())

    def _on_Active_EP_req(self, tsn, nwk, *, broadcast):  # noqa: N802
        if nwk != self.node.nwk:
            return self._wrong_node(ZDOCmd.Active_EP_rsp, tsn, nwk, broadcast)
        eps = t.LVList[t.uint8_t, t.uint8_t](sorted(self.node.endpoints))
        return encode(ZDOCmd.Active_EP_rsp, tsn, Status.SUCCESS, t.NWK(nwk), eps)

    def _on_Simple_Desc_req(self, tsn, nwk, endpoint, *, broadcast):  # noqa: N802
        if nwk != self.node.nwk:
            return self._wrong_node(ZDOCmd.Simple_Desc_rsp, tsn, nwk, broadcast)
        if endpoint == 0 or endpoint > 0xF0:
            return bytes([tsn, Status.INVALID_EP]) + t.NWK(nwk).serialize() + b"\x00"
        desc = self.node.endpoints.get(endpoint)
        if desc is None:
            return bytes([tsn, Status.NOT_ACTIVE]) + t.NWK(nwk).serialize() + b"\x00"
        sized = zdo_t.SizePrefixedSimpleDescriptor(*desc.as_tuple())
        return encode(ZDOCmd.Simple_Desc_rsp, tsn, Status.SUCCESS, t.NWK(nwk), sized)

    def _on_Match_Desc_req(self, tsn, nwk, profile, in_clusters, out_clusters, *, broadcast):  # noqa: N802
        if nwk not in (self.node.nwk, 0xFFFF, 0xFFFD, 0xFFFC):
            return None if broadcast else self._wrong_node(ZDOCmd.Match_Desc_rsp, tsn, nwk)
        matches = []
        for ep, desc in sorted(self.node.endpoints.items()):
            if desc.profile != profile and profile != 0xFFFF:
                continue
            # The requester's input clusters match our output clusters and vice versa.
            if set(in_clusters) & set(desc.input_clusters) or set(out_clusters) & set(
                desc.output_clusters
            ):
                matches.append(ep)
        if not matches and broadcast:
            return None
        return encode(
            ZDOCmd.Match_Desc_rsp, tsn, Status.SUCCESS, t.NWK(self.node.nwk),
            t.LVList[t.uint8_t, t.uint8_t](matches),
        )

    def _on_Mgmt_Permit_Joining_req(self, tsn, duration, tc_significance, *, broadcast):  # noqa: N802
        return None if broadcast else bytes([tsn, Status.SUCCESS])

    def _on_Mgmt_Lqi_req(self, tsn, start_index, *, broadcast):  # noqa: N802
        # No neighbours are tracked on the virtual air: an empty table.
        return None if broadcast else bytes([tsn, Status.SUCCESS, 0, start_index, 0])

    def _on_Mgmt_Rtg_req(self, tsn, start_index, *, broadcast):  # noqa: N802
        return None if broadcast else bytes([tsn, Status.SUCCESS, 0, start_index, 0])
