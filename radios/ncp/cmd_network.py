"""EZSP command handlers: the network — forming, joining it up, scanning and the tables.

``networkInit``/``formNetwork``/``leaveNetwork`` (bringing the network up and down through
the core's helpers, with ``stackStatusHandler`` after the response); ``joinNetwork`` (the
router role: the radio associates and takes the network key from the trust centre, then
``stackStatusHandler`` NETWORK_UP or JOIN_FAILED; after a reset ``networkInit`` brings a
joined router back with a secured rejoin, never a new join), the network
parameters, node id and EUI-64, radio power and channel, permit joining, energy and
active scans (the virtual air is equally quiet on every channel), source routes, the
child, address, extended-timeout and multicast tables. A mixin of
:class:`radios.ncp.ezsp.EzspNcp`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bellows.types as bt

from radios.ncp.cmd_common import COMMANDS, S

if TYPE_CHECKING:
    from radios.ncp.ezsp import Radio
    from radios.ncp.state import NcpState


class NetworkCommands:
    """``cmd_*`` handlers for the network, scans, tables and permit joining."""

    if TYPE_CHECKING:  # what these handlers use from the EzspNcp core
        state: NcpState
        radio: Radio
        on_persist: Callable[[], None]
        network_up: bool
        config: dict[int, int]
        multicast: dict[int, bt.EmberMulticastTableEntry]
        extended_timeouts: dict[str, bool]
        radio_power: int

        def _event(self, text: str) -> None: ...

        def callback(self, name: str, **fields: Any) -> None: ...

        def outbox_after(self, action: Callable[[], None]) -> None: ...

        def _network_params(self) -> bt.EmberNetworkParameters: ...

        def _bring_network_up(self, why: str) -> None: ...

        def _take_network_down(self) -> None: ...

        def _joined(self, ok: bool, why: str) -> None: ...

    def cmd_networkState(self) -> dict:
        status = bt.EmberNetworkStatus
        return {"status": status.JOINED_NETWORK if self.network_up else status.NO_NETWORK}

    def cmd_networkInit(self, networkInitBitmask: Any) -> dict:
        if self.network_up:
            return {"status": S.INVALID_STATE}
        if not self.state.formed:
            return {"status": S.NOT_JOINED}
        if self.state.node_type == "router":  # back on our network by a secured rejoin
            self.outbox_after(lambda: self.radio.resume(self._joined))
        else:
            self.outbox_after(lambda: self._bring_network_up("resumed"))
        return {"status": S.OK}

    def cmd_joinNetwork(self, nodeType: Any, parameters: bt.EmberNetworkParameters) -> dict:
        if self.network_up or self.radio.joining:
            return {"status": S.INVALID_STATE}
        if nodeType != bt.EmberNodeType.ROUTER:  # end devices are not emulated
            return {"status": S.INVALID_PARAMETER}
        if not 11 <= int(parameters.radioChannel) <= 26:
            return {"status": S.INVALID_PARAMETER}
        st = self.state
        st.formed, st.node_type = False, "router"
        st.pan_id = int(parameters.panId)
        st.extended_pan_id = str(parameters.extendedPanId)
        st.channel = int(parameters.radioChannel)
        st.tx_power = int(parameters.radioTxPower)
        st.nwk_manager_id, st.nwk_update_id = 0, 0
        self.radio_power = st.tx_power
        self.on_persist()
        self._event(f"joining PAN 0x{st.pan_id:04X} on channel {st.channel} as a router")
        self.outbox_after(lambda: self.radio.join(self._joined))
        return {"status": S.OK}

    def cmd_formNetwork(self, parameters: bt.EmberNetworkParameters) -> dict:
        if self.network_up:
            return {"status": S.INVALID_STATE}
        if not 11 <= int(parameters.radioChannel) <= 26:
            return {"status": S.INVALID_PARAMETER}  # (a channel 185 made a 186-bit mask)
        st = self.state
        st.formed = True
        st.pan_id = int(parameters.panId)
        st.extended_pan_id = str(parameters.extendedPanId)
        st.channel = int(parameters.radioChannel)
        st.tx_power = int(parameters.radioTxPower)
        st.channels = int(parameters.channels) or (1 << st.channel)
        st.nwk_manager_id = int(parameters.nwkManagerId)
        st.nwk_update_id = 0  # formNetwork ignores nwkUpdateId (bellows knows)
        st.tc_eui64 = str(st.ieee)
        self.radio_power = st.tx_power
        self.on_persist()
        self.outbox_after(lambda: self._bring_network_up("formed"))
        return {"status": S.OK}

    def cmd_leaveNetwork(self) -> dict:
        if not self.network_up:
            return {"status": S.INVALID_STATE}
        self.state.formed = False
        self.on_persist()
        if self.state.node_type == "router":
            self.radio.leave()  # a router says so on the air before it goes
        self.outbox_after(self._take_network_down)
        self._event("left the network")
        return {"status": S.OK}

    def cmd_getNetworkParameters(self) -> dict:
        if not self.network_up:
            return {"status": S.NOT_JOINED, "nodeType": bt.EmberNodeType.UNKNOWN_DEVICE,
                    "parameters": self._network_params()}
        node_type = bt.EmberNodeType.ROUTER if self.state.node_type == "router" \
            else bt.EmberNodeType.COORDINATOR
        return {"status": S.OK, "nodeType": node_type, "parameters": self._network_params()}

    def cmd_getNodeId(self) -> dict:
        return {"nodeId": self.radio.nwk if self.network_up else 0xFFFE}

    def cmd_getEui64(self) -> dict:
        return {"eui64": self.state.ieee}

    def cmd_setRadioPower(self, power: int) -> dict:
        if not -43 <= power <= 20:
            return {"status": S.INVALID_PARAMETER}
        self.radio_power = int(power)
        return {"status": S.OK}

    def cmd_setRadioChannel(self, channel: int) -> dict:
        if not 11 <= channel <= 26:
            return {"status": S.INVALID_PARAMETER}
        self.state.channel = int(channel)
        self.on_persist()
        return {"status": S.OK}

    def cmd_permitJoining(self, duration: int) -> dict:
        if not self.network_up:
            return {"status": S.NOT_JOINED}
        self.radio.permit_joining(int(duration))
        if duration:
            self._event(f"permit joining for {int(duration)} s")
        return {"status": S.OK}

    def cmd_setConcentrator(self, **_: Any) -> dict:
        return {"status": S.OK}

    def cmd_setSourceRouteDiscoveryMode(self, mode: int) -> dict:
        return {"remainingTime": 0}

    def cmd_startScan(self, scanType: Any, channelMask: Any, duration: int) -> dict:
        channels = [c for c in range(11, 27) if int(channelMask) & (1 << c)]
        if scanType != bt.EzspNetworkScanType.ENERGY_SCAN:
            # an active scan: beacon requests on the air, a networkFoundHandler per network
            if self.network_up or self.radio.joining:
                return {"status": S.INVALID_STATE}
            if not channels:
                return {"status": S.INVALID_PARAMETER}

            def found(network: bt.EmberZigbeeNetwork, lqi: int, rssi: int) -> None:
                self.callback("networkFoundHandler", networkFound=network, lastHopLqi=lqi,
                              lastHopRssi=rssi)

            def done() -> None:
                self.callback("scanCompleteHandler", channel=0xFF, status=S.OK)

            self.outbox_after(lambda: self.radio.scan(channels, found, done))
            return {"status": S.OK}
        if not channels:
            return {"status": S.INVALID_PARAMETER}

        def results() -> None:
            for channel in channels:  # every channel equally quiet: zigpy keeps its choice
                self.callback("energyScanResultHandler", channel=channel, maxRssiValue=-95)
            self.callback("scanCompleteHandler", channel=0xFF, status=S.OK)

        self.outbox_after(results)
        return {"status": S.OK}

    def cmd_stopScan(self) -> dict:
        return {"status": S.OK}

    def cmd_setSourceRoute(self, destination: int, relayList: list) -> dict:
        return {"status": S.OK}

    def cmd_getChildData(self, index: int) -> dict:
        # no end-device children on the virtual air: every slot is empty
        empty = COMMANDS["getChildData"][2]["child_data"](
            eui64=bt.EUI64.convert("00:00:00:00:00:00:00:00"),
            type=bt.EmberNodeType.UNKNOWN_DEVICE, id=0xFFFF, phy=0, power=0, timeout=0,
            timeout_remaining=0)
        return {"status": S.NOT_JOINED, "child_data": empty}

    def cmd_getAddressTableRemoteNodeId(self, addressTableIndex: int) -> dict:
        return {"nodeId": 0xFFFF}

    def cmd_lookupEui64ByNodeId(self, nodeId: int) -> dict:
        eui = self.radio.lookup_eui64(int(nodeId))
        if eui is None:
            return {"status": S.NOT_FOUND, "eui64": bt.EUI64.convert("00:00:00:00:00:00:00:00")}
        return {"status": S.OK, "eui64": eui}

    def cmd_lookupNodeIdByEui64(self, eui64: bt.EUI64) -> dict:
        nwk = self.radio.lookup_node_id(eui64)
        return {"nodeId": 0xFFFF if nwk is None else nwk}

    def cmd_getExtendedTimeout(self, remoteEui64: bt.EUI64) -> dict:
        return {"extendedTimeout": self.extended_timeouts.get(str(remoteEui64), False)}

    def cmd_setExtendedTimeout(self, remoteEui64: bt.EUI64, extendedTimeout: bool) -> dict:
        self.extended_timeouts[str(remoteEui64)] = bool(extendedTimeout)
        return {}

    def cmd_getMulticastTableEntry(self, index: int) -> dict:
        size = self.config.get(int(bt.EzspConfigId.CONFIG_MULTICAST_TABLE_SIZE), 16)
        if index >= size:
            return {"status": S.INVALID_INDEX,
                    "value": bt.EmberMulticastTableEntry(multicastId=0, endpoint=0,
                                                         networkIndex=0)}
        entry = self.multicast.get(int(index)) or bt.EmberMulticastTableEntry(
            multicastId=0, endpoint=0, networkIndex=0)
        return {"status": S.OK, "value": entry}

    def cmd_setMulticastTableEntry(self, index: int, value: Any) -> dict:
        size = self.config.get(int(bt.EzspConfigId.CONFIG_MULTICAST_TABLE_SIZE), 16)
        if index >= size:
            return {"status": S.INVALID_INDEX}
        self.multicast[int(index)] = value
        return {"status": S.OK}
