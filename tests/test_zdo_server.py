"""The firmware-side ZDO server, judged by zigpy's own ZDO parsers."""

from __future__ import annotations

import zigpy.types as t
import zigpy.zdo.types as zdo_t

from radios.zdo_server import NodeIdentity, ZdoServer, device_announce

Z = zdo_t.ZDOCmd
IEEE = t.EUI64.convert("00:0d:6f:00:00:00:aa:01")
NWK = 0x1234


def node() -> NodeIdentity:
    ident = NodeIdentity(ieee=IEEE, nwk=NWK, logical_type=zdo_t.LogicalType.Router,
                         manufacturer_code=0x1234)
    ident.endpoints[1] = zdo_t.SimpleDescriptor(1, 0x0109, 0x0501, 0, [0, 3, 0x0A, 0x0702], [])
    return ident


def request(cmd: int, *args: object, tsn: int = 0x42) -> bytes:
    return bytes([tsn]) + t.serialize(args, zdo_t.CLUSTERS[cmd][1])


def parse(cluster: int, payload: bytes) -> tuple[int, list]:
    hdr, rest = zdo_t.ZDOHeader.deserialize(cluster, payload)
    args, extra = t.deserialize(rest, zdo_t.CLUSTERS[cluster][1])
    assert extra == b""
    return hdr.tsn, args


def test_node_descriptor_says_router_mains_rx_on():
    (cluster, payload), = ZdoServer(node()).handle(
        Z.Node_Desc_req, request(Z.Node_Desc_req, t.NWK(NWK)), broadcast=False)
    assert cluster == Z.Node_Desc_rsp
    tsn, (status, nwk, desc) = parse(cluster, payload)
    assert tsn == 0x42 and status == zdo_t.Status.SUCCESS and nwk == NWK
    assert desc.is_router and desc.is_mains_powered and desc.is_receiver_on_when_idle
    assert desc.manufacturer_code == 0x1234


def test_active_endpoints_and_simple_descriptor():
    server = ZdoServer(node())
    (c, p), = server.handle(Z.Active_EP_req, request(Z.Active_EP_req, t.NWK(NWK)), broadcast=False)
    _, (status, _, eps) = parse(c, p)
    assert status == 0 and list(eps) == [1]
    (c, p), = server.handle(Z.Simple_Desc_req, request(Z.Simple_Desc_req, t.NWK(NWK), t.uint8_t(1)),
                            broadcast=False)
    _, (status, _, sd) = parse(c, p)
    assert status == 0
    assert (sd.endpoint, sd.profile, sd.device_type) == (1, 0x0109, 0x0501)
    assert list(sd.input_clusters) == [0, 3, 0x0A, 0x0702]


def test_simple_descriptor_bad_endpoints():
    server = ZdoServer(node())
    for ep, want in ((0, zdo_t.Status.INVALID_EP), (0xF1, zdo_t.Status.INVALID_EP),
                     (2, zdo_t.Status.NOT_ACTIVE)):
        (c, p), = server.handle(Z.Simple_Desc_req,
                                request(Z.Simple_Desc_req, t.NWK(NWK), t.uint8_t(ep)),
                                broadcast=False)
        assert p[1] == want


def test_match_descriptor_matches_metering_server_only():
    server = ZdoServer(node())
    req = request(Z.Match_Desc_req, t.NWK(0xFFFD), t.uint16_t(0x0109),
                  t.LVList[t.uint16_t, t.uint8_t]([0x0702]), t.LVList[t.uint16_t, t.uint8_t]([]))
    (c, p), = server.handle(Z.Match_Desc_req, req, broadcast=True)
    _, (status, nwk, matches) = parse(c, p)
    assert status == 0 and nwk == NWK and list(matches) == [1]
    # A client cluster we do not have, broadcast: no answer at all (spec 2.4.4.2.7)
    req = request(Z.Match_Desc_req, t.NWK(0xFFFD), t.uint16_t(0x0109),
                  t.LVList[t.uint16_t, t.uint8_t]([0x0700]), t.LVList[t.uint16_t, t.uint8_t]([]))
    assert server.handle(Z.Match_Desc_req, req, broadcast=True) == []
    # Another profile does not match
    req = request(Z.Match_Desc_req, t.NWK(0xFFFD), t.uint16_t(0x0104),
                  t.LVList[t.uint16_t, t.uint8_t]([0x0702]), t.LVList[t.uint16_t, t.uint8_t]([]))
    assert server.handle(Z.Match_Desc_req, req, broadcast=True) == []


def test_address_requests():
    server = ZdoServer(node())
    (c, p), = server.handle(Z.IEEE_addr_req,
                            request(Z.IEEE_addr_req, t.NWK(NWK), t.uint8_t(0), t.uint8_t(0)),
                            broadcast=False)
    _, (status, ieee, nwk, *_rest) = parse(c, p)
    assert (status, ieee, nwk) == (0, IEEE, NWK)
    (c, p), = server.handle(Z.NWK_addr_req,
                            request(Z.NWK_addr_req, IEEE, t.uint8_t(0), t.uint8_t(0)),
                            broadcast=True)
    _, (status, ieee, nwk, *_rest) = parse(c, p)
    assert (status, ieee, nwk) == (0, IEEE, NWK)
    # Somebody else's IEEE: stay silent
    other = t.EUI64.convert("11:22:33:44:55:66:77:88")
    assert server.handle(Z.NWK_addr_req, request(Z.NWK_addr_req, other, t.uint8_t(0),
                                                 t.uint8_t(0)), broadcast=True) == []


def test_unsupported_and_malformed_requests():
    server = ZdoServer(node())
    # Mgmt_Leave_req: well formed, not served by this firmware
    (c, p), = server.handle(Z.Mgmt_Leave_req, request(Z.Mgmt_Leave_req, IEEE, t.bitmap8(0)),
                            broadcast=False)
    assert c == Z.Mgmt_Leave_rsp and p == bytes([0x42, zdo_t.Status.NOT_SUPPORTED])
    # User_Desc_req: not served either; zigpy reads the refusal (a bare status would not
    # parse as User_Desc_rsp, whose address and descriptor are there whatever the status)
    (c, p), = server.handle(Z.User_Desc_req, request(Z.User_Desc_req, t.NWK(NWK)),
                            broadcast=False)
    assert c == Z.User_Desc_rsp and parse(c, p) == (0x42, [zdo_t.Status.NOT_SUPPORTED, NWK, ""])
    (c, p), = server.handle(Z.Simple_Desc_req, b"\x42\x34", broadcast=False)  # truncated
    assert parse(c, p) == (0x42, [zdo_t.Status.INV_REQUESTTYPE, NWK, None])
    (c, p), = server.handle(0x0077, b"\x42", broadcast=False)  # a request nobody defined
    assert (c, p) == (0x8077, bytes([0x42, zdo_t.Status.NOT_SUPPORTED]))
    (c, p), = server.handle(Z.Active_EP_req, request(Z.Active_EP_req, t.NWK(0x4444)),
                            broadcast=False)
    assert parse(c, p) == (0x42, [zdo_t.Status.DEVICE_NOT_FOUND, 0x4444, []])
    # a descriptor request for another node, broadcast: silence, not a flood of refusals
    assert server.handle(Z.Node_Desc_req, request(Z.Node_Desc_req, t.NWK(0x4444)),
                         broadcast=True) == []
    assert server.handle(Z.Simple_Desc_req, b"\x42\x34", broadcast=True) == []
    assert server.handle(Z.Node_Desc_rsp, b"\x00\x00", broadcast=False) == []  # a response


def test_power_descriptor_parses_in_zigpy():
    # was: AttributeError (zigpy has no CurrentPowerMode.RxOnWhenIdle), found by the campaign
    (c, p), = ZdoServer(node()).handle(Z.Power_Desc_req, request(Z.Power_Desc_req, t.NWK(NWK)),
                                       broadcast=False)
    _, (status, nwk, desc) = parse(c, p)
    assert (status, nwk) == (zdo_t.Status.SUCCESS, NWK)
    assert desc.current_power_mode == 0  # receiver synchronised with the node descriptor's
    assert desc.available_power_sources == zdo_t.PowerDescriptor.PowerSources.MainsPower


def test_device_announce_parses_in_zigpy():
    payload = device_announce(node(), tsn=7)
    tsn, (nwk, ieee, caps) = parse(Z.Device_annce, payload)
    assert (tsn, nwk, ieee) == (7, NWK, IEEE)
    assert caps & zdo_t.MACCapabilityFlags.RxOnWhenIdle


def _bind_args(ieee: t.EUI64, ep: int, cluster: int, dst_ieee: t.EUI64, dst_ep: int) -> tuple:
    return (ieee, t.uint8_t(ep), t.uint16_t(cluster),
            zdo_t.MultiAddress(addrmode=3, ieee=dst_ieee, endpoint=dst_ep))


def test_binding_table_bind_unbind_and_mgmt_bind_read_by_zigpy():
    changes = []
    server = ZdoServer(node(), on_change=lambda: changes.append(1))
    ihd = t.EUI64.convert("00:0d:6f:00:00:00:1d:01")
    ok = server.handle(Z.Bind_req, request(Z.Bind_req, *_bind_args(IEEE, 1, 0x0702, ihd, 1)),
                       broadcast=False)
    assert parse(*ok[0])[1] == [zdo_t.Status.SUCCESS]
    # the same binding again: success, no second entry
    server.handle(Z.Bind_req, request(Z.Bind_req, *_bind_args(IEEE, 1, 0x0702, ihd, 1)),
                  broadcast=False)
    # another node's IEEE as source: not supported; an endpoint we do not have: invalid
    other = t.EUI64.convert("11:22:33:44:55:66:77:88")
    (c, p), = server.handle(Z.Bind_req, request(Z.Bind_req, *_bind_args(other, 1, 0x0702, ihd, 1)),
                            broadcast=False)
    assert parse(c, p)[1] == [zdo_t.Status.NOT_SUPPORTED]
    (c, p), = server.handle(Z.Bind_req, request(Z.Bind_req, *_bind_args(IEEE, 7, 0x0702, ihd, 1)),
                            broadcast=False)
    assert parse(c, p)[1] == [zdo_t.Status.INVALID_EP]
    assert len(changes) == 1
    (c, p), = server.handle(Z.Mgmt_Bind_req, request(Z.Mgmt_Bind_req, t.uint8_t(0)),
                            broadcast=False)
    tsn, (status, total, start, entries) = parse(c, p)
    assert (status, total, start, len(entries)) == (zdo_t.Status.SUCCESS, 1, 0, 1)
    entry = entries[0]
    assert (entry.SrcAddress, entry.SrcEndpoint, entry.ClusterId) == (IEEE, 1, 0x0702)
    assert (entry.DstAddress.ieee, entry.DstAddress.endpoint) == (ihd, 1)
    assert [(b.dst_ieee, b.dst_ep) for b in server.bindings_for(1, 0x0702)] == [
        (0x000D6F0000001D01, 1)]
    (c, p), = server.handle(Z.Unbind_req, request(Z.Unbind_req, *_bind_args(IEEE, 1, 0x0702, ihd, 1)),
                            broadcast=False)
    assert parse(c, p)[1] == [zdo_t.Status.SUCCESS]
    (c, p), = server.handle(Z.Unbind_req, request(Z.Unbind_req, *_bind_args(IEEE, 1, 0x0702, ihd, 1)),
                            broadcast=False)
    assert parse(c, p)[1] == [zdo_t.Status.NO_ENTRY]
    assert server.bindings == []
