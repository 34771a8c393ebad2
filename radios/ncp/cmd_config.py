"""EZSP command handlers: the NCP's configuration, and its tokens.

Configuration values, EZSP values, policies, endpoints, the manufacturer code, custom
frames, MAC counters and manufacturing tokens (the RAM-side setup bellows does after
each reset), then the NV3 tokens bellows reads and writes for backup and restore
(kept in :class:`radios.ncp.state.NcpState`). A mixin of :class:`radios.ncp.ezsp.EzspNcp`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bellows.types as bt
import zigpy.zdo.types as zdo_t

from radios.ncp.cmd_common import COMMANDS, STACK_BUILD, STACK_VERSION, Ezsp, S, sl_or_ezsp, sl_to

if TYPE_CHECKING:
    from radios.ncp.ezsp import Radio
    from radios.ncp.state import NcpState

MANUFACTURER_STRING = "sep NCP emulator"
BOARD_NAME = "sep-ncp-emu"


class ConfigCommands:
    """``cmd_*`` handlers for configuration, values, policies, endpoints and tokens."""

    if TYPE_CHECKING:  # what these handlers use from the EzspNcp core
        state: NcpState
        radio: Radio
        on_persist: Callable[[], None]
        network_up: bool
        config: dict[int, int]
        values: dict[int, bytes]
        policies: dict[int, int]
        endpoints: dict[int, zdo_t.SimpleDescriptor]
        manufacturer_code: int
        radio_power: int
        mac_counters: list[int]

        def _policy_changed(self) -> None: ...

        def _event(self, text: str) -> None: ...

        def _take_network_down(self) -> None: ...

    # -- configuration frames -----------------------------------------------------------------
    def cmd_nop(self) -> dict:
        return {}

    def cmd_echo(self, data: bytes) -> dict:
        return {"echo": data}

    def cmd_getConfigurationValue(self, configId: Any) -> dict:
        value = self.config.get(int(configId))
        if value is None:
            if configId.name.startswith("undefined"):
                return {"status": S.INVALID_PARAMETER, "value": 0}
            value = 0
        return {"status": S.OK, "value": value}

    def cmd_setConfigurationValue(self, configId: Any, value: int) -> dict:
        if self.network_up:  # the stack has allocated its tables
            return {"status": sl_or_ezsp(Ezsp.ERROR_INVALID_CALL)}
        if configId.name.startswith("undefined"):
            return {"status": sl_or_ezsp(Ezsp.ERROR_INVALID_ID)}
        self.config[int(configId)] = int(value)
        return {"status": S.OK}

    def cmd_getValue(self, valueId: Any) -> dict:
        vid = bt.EzspValueId
        if valueId == vid.VALUE_VERSION_INFO:
            major, minor, patch, special = STACK_VERSION
            value = bt.uint16_t(STACK_BUILD).serialize() + bytes([major, minor, patch, special,
                                                                  0xAA])
        elif valueId == vid.VALUE_FREE_BUFFERS:
            value = bytes([min(self.config.get(int(bt.EzspConfigId.CONFIG_PACKET_BUFFER_COUNT),
                                               75), 255)])
        elif valueId == vid.VALUE_NWK_FRAME_COUNTER:
            value = bt.uint32_t(self.state.nwk_frame_counter).serialize()
        elif valueId == vid.VALUE_APS_FRAME_COUNTER:
            value = bt.uint32_t(self.state.aps_frame_counter).serialize()
        elif valueId == vid.VALUE_NODE_SHORT_ID:
            value = bt.uint16_t(self.radio.nwk if self.network_up else 0xFFFE).serialize()
        elif int(valueId) in self.values:
            value = self.values[int(valueId)]
        else:
            return {"status": sl_or_ezsp(Ezsp.ERROR_INVALID_ID), "value": b""}
        return {"status": S.OK, "value": value}

    def cmd_setValue(self, valueId: Any, value: bytes) -> dict:
        vid = bt.EzspValueId
        if valueId.name.startswith("undefined"):
            return {"status": sl_or_ezsp(Ezsp.ERROR_INVALID_ID)}
        if valueId == vid.VALUE_NWK_FRAME_COUNTER:
            self.state.nwk_frame_counter = int.from_bytes(value[:4], "little")
            self.on_persist()
        elif valueId == vid.VALUE_APS_FRAME_COUNTER:
            self.state.aps_frame_counter = int.from_bytes(value[:4], "little")
            self.on_persist()
        else:
            self.values[int(valueId)] = bytes(value)
        return {"status": S.OK}

    def cmd_getPolicy(self, policyId: Any) -> dict:
        return {"status": S.OK, "decisionId": self.policies.get(int(policyId), 0)}

    def cmd_setPolicy(self, policyId: Any, decisionId: Any) -> dict:
        self.policies[int(policyId)] = int(decisionId)
        self._policy_changed()
        return {"status": S.OK}

    def cmd_addEndpoint(self, endpoint: int, profileId: int, deviceId: int,
                        deviceVersion: int, inputClusterCount: int,
                        outputClusterCount: int, inputClusterList: list,
                        outputClusterList: list) -> dict:
        if self.network_up or endpoint in self.endpoints or endpoint in (0, 0xFF):
            return {"status": sl_or_ezsp(Ezsp.ERROR_INVALID_CALL)}
        # the two lists are anonymous: bellows' schema reads both into the first one
        clusters = [int(c) for c in [*inputClusterList, *outputClusterList]]
        if len(clusters) != inputClusterCount + outputClusterCount:
            return {"status": sl_or_ezsp(Ezsp.ERROR_INVALID_VALUE)}
        self.endpoints[endpoint] = zdo_t.SimpleDescriptor(
            endpoint=endpoint, profile=profileId, device_type=deviceId,
            device_version=deviceVersion, input_clusters=clusters[:inputClusterCount],
            output_clusters=clusters[inputClusterCount:])
        return {"status": S.OK}

    def cmd_setManufacturerCode(self, code: int) -> dict:
        self.manufacturer_code = int(code)
        return {}

    def cmd_customFrame(self, payload: bytes) -> dict:
        # A stock NCP has no custom (XNCP) frame handler
        return {"status": S.INVALID_STATE, "reply": b""}

    def cmd_readCounters(self) -> dict:
        return {"values": list(self.mac_counters)}

    def cmd_readAndClearCounters(self) -> dict:
        values = list(self.mac_counters)
        self.mac_counters = [0] * len(self.mac_counters)
        return {"values": values}

    def cmd_getMfgToken(self, tokenId: Any) -> dict:
        tid = bt.EzspMfgTokenId
        if tokenId == tid.MFG_STRING:
            data = MANUFACTURER_STRING.encode().ljust(16, b"\xff")
        elif tokenId == tid.MFG_BOARD_NAME:
            data = BOARD_NAME.encode().ljust(16, b"\xff")
        elif tokenId == tid.MFG_CUSTOM_EUI_64:
            data = b"\xff" * 8
        elif tokenId == tid.MFG_MANUF_ID:
            data = bt.uint16_t(self.manufacturer_code).serialize()
        else:
            data = b"\xff" * 8
        return {"tokenData": data}

    # -- tokens (NV3) -------------------------------------------------------------------------
    def _token_value(self, token: int) -> bytes | None:
        nv3 = bt.NV3KeyId
        st = self.state
        if token in (nv3.CREATOR_STACK_RESTORED_EUI64, nv3.NVM3KEY_STACK_RESTORED_EUI64):
            return bt.EUI64.convert(st.restored_eui64 or "ff:ff:ff:ff:ff:ff:ff:ff").serialize()
        if token == nv3.NVM3KEY_STACK_NODE_DATA:
            return bt.NV3StackNodeData(
                panId=st.pan_id, radioTxPower=self.radio_power, radioFreqChannel=st.channel,
                stackProfile=2,
                nodeType=bt.EmberNodeType.COORDINATOR if st.formed
                else bt.EmberNodeType.UNKNOWN_DEVICE,
                zigbeeNodeId=0x0000 if st.formed else 0xFFFF,
                extendedPanId=bt.ExtendedPanId.convert(st.extended_pan_id),
            ).serialize()
        if token == nv3.NVM3KEY_STACK_TRUST_CENTER:
            return bt.NV3StackTrustCenterToken(
                mode=st.security_bitmask & 0xFFFF, eui64=bt.EUI64.convert(st.tc_eui64),
                key=bt.KeyData.convert(st.tc_link_key)).serialize()
        if token == nv3.NVM3KEY_STACK_NETWORK_MANAGEMENT:
            return bt.NV3StackNetworkManagementToken(
                active_channels=bt.Channels(st.channels), manager_node_id=st.nwk_manager_id,
                update_id=st.nwk_update_id, padding=0).serialize()
        stored = st.tokens.get(f"{token:08x}")
        return bytes.fromhex(stored) if stored is not None else None

    def cmd_getTokenData(self, token: int, index: int) -> Any:
        rsp = COMMANDS["getTokenData"][2]
        value = self._token_value(int(token)) if index == 0 else None
        if value is None:
            return rsp(status=sl_to(rsp.fields.status.type, S.NOT_FOUND))
        return rsp(status=sl_to(rsp.fields.status.type, S.OK), value=bt.LVBytes32(value))

    def cmd_setTokenData(self, token: int, index: int, token_data: bytes) -> dict:
        nv3 = bt.NV3KeyId
        st = self.state
        data = bytes(token_data)
        try:
            if token in (nv3.CREATOR_STACK_RESTORED_EUI64, nv3.NVM3KEY_STACK_RESTORED_EUI64):
                eui, _ = bt.EUI64.deserialize(data)
                st.restored_eui64 = None if str(eui) == "ff:ff:ff:ff:ff:ff:ff:ff" else str(eui)
            elif token == nv3.NVM3KEY_STACK_NODE_DATA:
                node, _ = bt.NV3StackNodeData.deserialize(data)
                st.tx_power = int(node.radioTxPower)
            elif token == nv3.NVM3KEY_STACK_TRUST_CENTER:
                tc, _ = bt.NV3StackTrustCenterToken.deserialize(data)
                st.tc_eui64 = str(tc.eui64)
            elif token == nv3.NVM3KEY_STACK_NETWORK_MANAGEMENT:
                mgmt, _ = bt.NV3StackNetworkManagementToken.deserialize(data)
                st.nwk_update_id = int(mgmt.update_id)
                st.nwk_manager_id = int(mgmt.manager_node_id)
            else:
                st.tokens[f"{int(token):08x}"] = data.hex()
        except (ValueError, KeyError):
            return {"status": S.INVALID_PARAMETER}
        self.on_persist()
        return {"status": S.OK}

    def cmd_tokenFactoryReset(self, excludeOutgoingFC: bool, excludeBootCounter: bool) -> dict:
        self._take_network_down()
        self.state.factory_reset(keep_frame_counter=bool(excludeOutgoingFC))
        self.on_persist()
        self._event("factory reset of the NCP tokens")
        return {}
