"""EZSP, the NCP side (Silicon Labs UG100), sans-IO: frames in, frames out.

The wire layout of every command comes from bellows' own tables
(``bellows.ezsp.v13.commands.COMMANDS``: name -> (frame id, request schema, response
schema)) and types (``bellows.types``), so the emulator and bellows cannot disagree on a
field. This module adds what a real NCP's firmware does with each command.

Frame formats (UG100 ch. 3): the ``version`` command always works in the *legacy* format
``seq, control, frame_id`` (1 byte each); once version 8+ is agreed every other frame is
*extended*: ``seq, control_lo, control_hi, frame_id (2 bytes, LE)``, control_hi bits 0-1
being the frame format version (1). Responses set bit 7 of control_lo; callbacks on a UART
also set bit 4 (asynchronous callback) and carry the last command's sequence number.

What a real NCP answers to bad input, and so does this one:

- any command before a successful ``version`` -> ``invalidCommand(ERROR_VERSION_NOT_SET)``;
- ``version`` asking for another protocol version -> our version in the reply, and the
  version stays unset (the host must ask again for ours, as bellows does);
- an unknown frame id -> ``invalidCommand(ERROR_INVALID_FRAME_ID)``;
- a frame with the response bit set -> ``invalidCommand(ERROR_WRONG_DIRECTION)``;
- an unknown frame format version or secure EZSP -> ``invalidCommand(ERROR_UNSUPPORTED_CONTROL)``;
- parameters that do not parse -> ``invalidCommand(ERROR_INVALID_VALUE)``;
- a frame longer than the NCP's buffer -> ``invalidCommand(ERROR_COMMAND_TOO_LONG)``;
- a legacy-format frame other than ``version`` once v13 is agreed ->
  ``invalidCommand(ERROR_UNSUPPORTED_CONTROL)``.

Every invalid command is logged (WARNING) and counted in :attr:`EzspNcp.counters`. A
callback carries the last command's sequence number and is never sent between a command
and its response: bellows matches responses by sequence number alone.

The firmware's radio side (sending on the air, the ZDO server, joins) is behind the
:class:`Radio` protocol, implemented by :mod:`radios.ncp.node`; its events come back
through :meth:`EzspNcp.message_sent`, :meth:`EzspNcp.incoming_message` and
:meth:`EzspNcp.trust_center_join`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol

import bellows.types as bt
import zigpy.types as zt
import zigpy.zdo.types as zdo_t
from bellows.ezsp.v13 import commands as v13_commands

LOGGER = logging.getLogger(__name__)

PROTOCOL_VERSION = 13  # EmberZNet 7.4.x, what bellows 1.2.1 drives as EZSPv13
STACK_TYPE = 2  # mesh
STACK_VERSION = (7, 4, 4, 0)
STACK_BUILD = 244
MAX_FRAME_LENGTH = 220  # EZSP_MAX_FRAME_LENGTH 200 + the extended header, with headroom
MANUFACTURER_STRING = "sep NCP emulator"
BOARD_NAME = "sep-ncp-emu"

COMMANDS: dict[str, tuple[int, Any, Any]] = v13_commands.COMMANDS
BY_ID: dict[int, tuple[str, Any, Any]] = {
    cmd_id: (name, req, rsp) for name, (cmd_id, req, rsp) in COMMANDS.items()
}

FC_RESPONSE = 0x80
FC_ASYNC_CALLBACK = 0x10
FC_HI_FORMAT_MASK = 0x03
FC_HI_FORMAT_1 = 0x01
FC_HI_SECURITY = 0x80
LEGACY_EXTENDED_ID = 0xFF  # v5..v7 legacy frames: frame id 0xFF, then 0x00, then the id
VERSION_ID = 0x00
INVALID_COMMAND_ID = COMMANDS["invalidCommand"][0]

S = bt.sl_Status
Ezsp = bt.EzspStatus

# bellows' own map (EmberStatus|EzspStatus -> sl_Status), turned round
_FROM_SL: dict[tuple[type, S], Any] = {}
for (_kind, _value), _sl in bt.SL_STATUS_MAP.items():
    _FROM_SL.setdefault((_kind, _sl), _value)

# Defaults of the configuration values bellows reads back (others default to 0)
CONFIG_DEFAULTS: dict[str, int] = {
    "CONFIG_PACKET_BUFFER_COUNT": 75,
    "CONFIG_NEIGHBOR_TABLE_SIZE": 16,
    "CONFIG_APS_UNICAST_MESSAGE_COUNT": 10,
    "CONFIG_BINDING_TABLE_SIZE": 32,
    "CONFIG_ADDRESS_TABLE_SIZE": 16,
    "CONFIG_MULTICAST_TABLE_SIZE": 16,
    "CONFIG_ROUTE_TABLE_SIZE": 16,
    "CONFIG_DISCOVERY_TABLE_SIZE": 8,
    "CONFIG_STACK_PROFILE": 2,
    "CONFIG_SECURITY_LEVEL": 5,
    "CONFIG_MAX_HOPS": 30,
    "CONFIG_MAX_END_DEVICE_CHILDREN": 32,
    "CONFIG_INDIRECT_TRANSMISSION_TIMEOUT": 7680,
    "CONFIG_END_DEVICE_POLL_TIMEOUT": 8,
    "CONFIG_TRUST_CENTER_ADDRESS_CACHE_SIZE": 2,
    "CONFIG_SOURCE_ROUTE_TABLE_SIZE": 200,
    "CONFIG_FRAGMENT_WINDOW_SIZE": 1,
    "CONFIG_FRAGMENT_DELAY_MS": 50,
    "CONFIG_KEY_TABLE_SIZE": 4,
    "CONFIG_APS_ACK_TIMEOUT": 1600,
    "CONFIG_PAN_ID_CONFLICT_REPORT_THRESHOLD": 2,
    "CONFIG_REQUEST_KEY_TIMEOUT": 0,
    "CONFIG_BROADCAST_TABLE_SIZE": 15,
    "CONFIG_SUPPORTED_NETWORKS": 1,
    "CONFIG_TRANSIENT_KEY_TIMEOUT_S": 300,
    "CONFIG_TC_REJOINS_USING_WELL_KNOWN_KEY_TIMEOUT_S": 90,
    "CONFIG_APPLICATION_ZDO_FLAGS": 0,
}


def sl_to(kind: Any, status: S) -> Any:
    """An sl_Status in the status type a schema field has (EmberStatus, EzspStatus...)."""
    if kind is S or not isinstance(kind, type) or not issubclass(kind, zt.enum8 | zt.enum32):
        return status
    value = _FROM_SL.get((kind, status))
    if value is None:
        value = _FROM_SL.get((kind, S.FAIL), 0x01)
    return kind(value)


class FrameError(ValueError):
    def __init__(self, status: bt.EzspStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class EzspFrame:
    seq: int
    control: int
    frame_id: int
    params: bytes
    legacy: bool


def decode_frame(data: bytes) -> EzspFrame:
    """Split an EZSP frame into header and parameters (raises :class:`FrameError`)."""
    if len(data) < 3:
        raise FrameError(Ezsp.ERROR_INVALID_VALUE, f"EZSP frame too short: {data.hex()}")
    seq, control = data[0], data[1]
    if data[2] == LEGACY_EXTENDED_ID and len(data) >= 5 and data[3] == 0x00:
        return EzspFrame(seq, control, data[4], data[5:], legacy=True)
    if data[2] & FC_HI_FORMAT_MASK == FC_HI_FORMAT_1 and len(data) >= 5:
        if data[2] & FC_HI_SECURITY:
            raise FrameError(Ezsp.ERROR_UNSUPPORTED_CONTROL, "secure EZSP is not supported")
        return EzspFrame(seq, control, data[3] | data[4] << 8, data[5:], legacy=False)
    if data[2] == VERSION_ID:
        return EzspFrame(seq, control, VERSION_ID, data[3:], legacy=True)
    raise FrameError(Ezsp.ERROR_UNSUPPORTED_CONTROL,
                     f"frame control 0x{data[2]:02X}: unsupported frame format")


def encode_frame(seq: int, frame_id: int, params: bytes, *, legacy: bool = False,
                 callback: bool = False) -> bytes:
    control = FC_RESPONSE | (FC_ASYNC_CALLBACK if callback else 0)
    if legacy:
        return bytes([seq, control, frame_id]) + params
    return bytes([seq, control, FC_HI_FORMAT_1]) + frame_id.to_bytes(2, "little") + params


def serialize_fields(schema: Any, values: dict[str, Any] | tuple | Any) -> bytes:
    """Serialise a response with its schema (a dict of field types, or a struct)."""
    if not isinstance(schema, dict):
        return schema(values).serialize() if not isinstance(values, schema) else values.serialize()
    if isinstance(values, tuple):
        values = dict(zip(schema, values, strict=True))
    out = {}
    for name, kind in schema.items():
        value = values[name]
        if isinstance(value, _EzspAsSl):
            value = value.status if kind is Ezsp else bt.sl_Status.from_ember_status(value.status)
        if isinstance(value, S):
            value = sl_to(kind, value)
        out[name] = value
    return bt.serialize_dict([], out, schema)


# -- what the firmware needs from below ---------------------------------------------------
class Radio(Protocol):
    """The emulated stack's radio and network layers (implemented by the node)."""

    def network_up(self) -> None: ...

    def network_down(self) -> None: ...

    def send_unicast(self, nwk: int, aps: bt.EmberApsFrame, tag: int, payload: bytes) -> int:
        """Queue a unicast; return its APS counter. Report with ``message_sent``."""
        ...

    def send_broadcast(self, dst: int, aps: bt.EmberApsFrame, radius: int, tag: int,
                       payload: bytes) -> int: ...

    def permit_joining(self, seconds: int) -> None: ...

    def lookup_eui64(self, nwk: int) -> bt.EUI64 | None: ...

    def lookup_node_id(self, eui64: bt.EUI64) -> int | None: ...


@dataclasses.dataclass
class NcpCounters:
    commands: int = 0
    callbacks: int = 0
    invalid: int = 0
    unknown_ids: list[int] = dataclasses.field(default_factory=list)


class EzspNcp:
    """The command dispatcher and RAM state of one emulated NCP.

    ``handle`` takes one EZSP frame from the host; replies and callbacks accumulate in
    ``outbox`` (drain with :meth:`take`). ``on_persist`` is called when non-volatile state
    changed and should be written out.
    """

    def __init__(self, state: Any, radio: Radio, *, version: int = PROTOCOL_VERSION,
                 on_persist: Callable[[], None] = lambda: None) -> None:
        from radios.ncp.state import NcpState

        self.state: NcpState = state
        self.radio = radio
        self.version = version
        self.on_persist = on_persist
        self.outbox: list[bytes] = []
        self._after: list[Callable[[], None]] = []
        self._handling = False
        self.counters = NcpCounters()
        self.events: list[str] = []  # human-readable milestones (the CLI logs them)
        self.reset()

    # -- RAM state (lost on reset) -----------------------------------------------------
    def reset(self) -> None:
        """The NCP rebooted: RAM is gone, the network is down until networkInit."""
        self.version_set = False
        self.last_seq = 0
        self.network_up = False
        self.config: dict[int, int] = {
            int(bt.EzspConfigId[name]): v for name, v in CONFIG_DEFAULTS.items()
            if name in bt.EzspConfigId.__members__
        }
        self.values: dict[int, bytes] = {}
        self.policies: dict[int, int] = {}
        self.endpoints: dict[int, zdo_t.SimpleDescriptor] = {}
        self.multicast: dict[int, bt.EmberMulticastTableEntry] = {}
        self.transient_keys: dict[str, bytes] = {}
        self.extended_timeouts: dict[str, bool] = {}
        self.permit_until = 0.0
        self.manufacturer_code = 0x1002
        self.radio_power = self.state.tx_power
        self.mac_counters = [0] * len(bt.EmberCounterType)

    def take(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def _event(self, text: str) -> None:
        self.events.append(text)
        LOGGER.info("NCP: %s", text)

    # -- frames --------------------------------------------------------------------------
    def handle(self, data: bytes) -> None:
        """One EZSP frame from the host."""
        self.counters.commands += 1
        seq = data[0] if data else 0
        legacy = True
        try:
            if len(data) > MAX_FRAME_LENGTH:
                raise FrameError(Ezsp.ERROR_COMMAND_TOO_LONG, f"{len(data)}-byte frame")
            frame = decode_frame(data)
            legacy = frame.legacy
            self.last_seq = frame.seq
            if frame.control & FC_RESPONSE:
                raise FrameError(Ezsp.ERROR_WRONG_DIRECTION, "a response sent to the NCP")
            if frame.frame_id == VERSION_ID:
                self._version(frame)
                return
            if not self.version_set:
                raise FrameError(Ezsp.ERROR_VERSION_NOT_SET,
                                 f"frame 0x{frame.frame_id:04X} before version")
            if frame.legacy:
                raise FrameError(Ezsp.ERROR_UNSUPPORTED_CONTROL,
                                 "legacy frame format after version 8+ was agreed")
            self._dispatch(frame)
        except FrameError as exc:
            self._invalid(seq, exc.status, str(exc), legacy=legacy)

    def _invalid(self, seq: int, status: bt.EzspStatus, why: str, *, legacy: bool) -> None:
        self.counters.invalid += 1
        LOGGER.warning("NCP: invalid command (%s): %s", status.name, why)
        params = serialize_fields(COMMANDS["invalidCommand"][2], {"status": _EzspAsSl(status)})
        self.outbox.append(encode_frame(seq, INVALID_COMMAND_ID, params, legacy=legacy))

    def _version(self, frame: EzspFrame) -> None:
        desired = frame.params[0] if frame.params else 0
        if desired == self.version:
            if not self.version_set:
                self._event(f"EZSP version {self.version} agreed")
            self.version_set = True
        else:
            LOGGER.info("NCP: host asked for EZSP version %d, we speak %d", desired,
                        self.version)
        major, minor, patch, special = STACK_VERSION
        stack = major << 12 | minor << 8 | patch << 4 | special
        params = bytes([self.version, STACK_TYPE]) + stack.to_bytes(2, "little")
        self.outbox.append(encode_frame(frame.seq, VERSION_ID, params, legacy=frame.legacy))

    def _dispatch(self, frame: EzspFrame) -> None:
        entry = BY_ID.get(frame.frame_id)
        handler = getattr(self, f"cmd_{entry[0]}", None) if entry else None
        if entry is None or handler is None:
            self.counters.unknown_ids.append(frame.frame_id)
            name = entry[0] if entry else "unknown"
            raise FrameError(Ezsp.ERROR_INVALID_FRAME_ID,
                             f"frame id 0x{frame.frame_id:04X} ({name}) not implemented")
        name, req_schema, rsp_schema = entry
        try:
            if isinstance(req_schema, dict):
                args, rest = bt.deserialize_dict(frame.params, req_schema)
            else:
                parsed, rest = req_schema.deserialize(frame.params)
                args = {"request": parsed}
        except Exception as exc:  # noqa: BLE001 - bad parameters are the host's problem
            raise FrameError(Ezsp.ERROR_INVALID_VALUE, f"{name}: {exc}") from None
        LOGGER.debug("NCP <- %s %s", name, args)
        self._handling = True
        try:
            result = handler(**args)
            params = serialize_fields(rsp_schema, result if result is not None else {})
        except Exception as exc:  # noqa: BLE001 - an emulator bug must not hang the host
            LOGGER.exception("NCP: %s failed", name)
            self._after.clear()
            raise FrameError(Ezsp.ERROR_INVALID_CALL, f"{name}: {exc}") from None
        finally:
            self._handling = False
        LOGGER.debug("NCP -> %s %s", name, result)
        self.outbox.append(encode_frame(frame.seq, frame.frame_id, params))
        after, self._after = self._after, []
        for action in after:
            action()

    def callback(self, name: str, **fields: Any) -> None:
        """Queue an asynchronous callback frame to the host.

        A callback carries the sequence number of the last command, and bellows takes
        any frame with a pending command's sequence number for its response: so a
        callback raised while a command is handled goes out after that command's response.
        """
        if self._handling:
            self.outbox_after(lambda: self.callback(name, **fields))
            return
        cmd_id, _req, rsp_schema = COMMANDS[name]
        self.counters.callbacks += 1
        LOGGER.debug("NCP => %s %s", name, fields)
        self.outbox.append(encode_frame(self.last_seq, cmd_id,
                                        serialize_fields(rsp_schema, fields), callback=True))

    # -- events from the radio --------------------------------------------------------------
    def message_sent(self, kind: bt.EmberOutgoingMessageType, dst: int, aps: bt.EmberApsFrame,
                     tag: int, status: S, payload: bytes) -> None:
        self.callback("messageSentHandler", type=kind, indexOrDestination=dst, apsFrame=aps,
                      messageTag=tag, status=status, messageContents=payload)

    def incoming_message(self, kind: bt.EmberIncomingMessageType, aps: bt.EmberApsFrame,
                         lqi: int, rssi: int, sender: int, payload: bytes) -> None:
        self.callback("incomingMessageHandler", type=kind, apsFrame=aps, lastHopLqi=lqi,
                      lastHopRssi=rssi, sender=sender, bindingIndex=0xFF, addressIndex=0xFF,
                      messageContents=payload)

    def trust_center_join(self, nwk: int, ieee: bt.EUI64, status: bt.EmberDeviceUpdate,
                          decision: bt.EmberJoinDecision, parent: int) -> None:
        self.callback("trustCenterJoinHandler", newNodeId=nwk, newNodeEui64=ieee,
                      status=status, policyDecision=decision, parentOfNewNodeId=parent)

    # -- helpers ----------------------------------------------------------------------------
    def _network_params(self) -> bt.EmberNetworkParameters:
        st = self.state
        return bt.EmberNetworkParameters(
            extendedPanId=bt.ExtendedPanId.convert(st.extended_pan_id),
            panId=bt.EmberPanId(st.pan_id),
            radioTxPower=bt.uint8_t(self.radio_power & 0xFF),
            radioChannel=bt.uint8_t(st.channel),
            joinMethod=bt.EmberJoinMethod.USE_MAC_ASSOCIATION,
            nwkManagerId=bt.EmberNodeId(st.nwk_manager_id),
            nwkUpdateId=bt.uint8_t(st.nwk_update_id),
            channels=bt.Channels(st.channels),
        )

    def _bring_network_up(self, why: str) -> None:
        self.network_up = True
        self.radio.network_up()
        self._event(f"network {why}: PAN 0x{self.state.pan_id:04X}, extended PAN "
                    f"{self.state.extended_pan_id}, channel {self.state.channel}")
        self.callback("stackStatusHandler", status=S.NETWORK_UP)

    def _take_network_down(self) -> None:
        if self.network_up:
            self.network_up = False
            self.radio.network_down()
            self.callback("stackStatusHandler", status=S.NETWORK_DOWN)

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
            value = bt.uint16_t(0x0000 if self.network_up else 0xFFFE).serialize()
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

    # -- networking -------------------------------------------------------------------------
    def cmd_networkState(self) -> dict:
        status = bt.EmberNetworkStatus
        return {"status": status.JOINED_NETWORK if self.network_up else status.NO_NETWORK}

    def cmd_networkInit(self, networkInitBitmask: Any) -> dict:
        if self.network_up:
            return {"status": S.INVALID_STATE}
        if not self.state.formed:
            return {"status": S.NOT_JOINED}
        self.outbox_after(lambda: self._bring_network_up("resumed"))
        return {"status": S.OK}

    def outbox_after(self, action: Callable[[], None]) -> None:
        """Run ``action`` after the current response is queued (callbacks follow it)."""
        self._after.append(action)

    def cmd_formNetwork(self, parameters: bt.EmberNetworkParameters) -> dict:
        if self.network_up:
            return {"status": S.INVALID_STATE}
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
        self.outbox_after(self._take_network_down)
        self._event("left the network")
        return {"status": S.OK}

    def cmd_getNetworkParameters(self) -> dict:
        if not self.network_up:
            return {"status": S.NOT_JOINED, "nodeType": bt.EmberNodeType.UNKNOWN_DEVICE,
                    "parameters": self._network_params()}
        return {"status": S.OK, "nodeType": bt.EmberNodeType.COORDINATOR,
                "parameters": self._network_params()}

    def cmd_getNodeId(self) -> dict:
        return {"nodeId": 0x0000 if self.network_up else 0xFFFE}

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
        if scanType != bt.EzspNetworkScanType.ENERGY_SCAN:
            # an active scan for beacons: the virtual air has no other PAN to find
            channels = [c for c in range(11, 27) if int(channelMask) & (1 << c)]
            self.outbox_after(lambda: self.callback(
                "scanCompleteHandler", channel=channels[-1] if channels else 0xFF,
                status=S.OK))
            return {"status": S.OK}
        channels = [c for c in range(11, 27) if int(channelMask) & (1 << c)]
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

    # -- messaging ----------------------------------------------------------------------------
    def cmd_sendUnicast(self, type: Any, indexOrDestination: int, apsFrame: Any,
                        messageTag: int, messageContents: bytes) -> dict:
        if not self.network_up:
            return {"status": S.NETWORK_DOWN, "sequence": 0}
        if type != bt.EmberOutgoingMessageType.OUTGOING_DIRECT:
            return {"status": S.INVALID_PARAMETER, "sequence": 0}
        seq = self.radio.send_unicast(int(indexOrDestination), apsFrame, int(messageTag),
                                      bytes(messageContents))
        return {"status": S.OK, "sequence": seq}

    def cmd_sendBroadcast(self, destination: int, apsFrame: Any, radius: int,
                          messageTag: int, messageContents: bytes) -> dict:
        if not self.network_up:
            return {"status": S.NETWORK_DOWN, "sequence": 0}
        if destination < 0xFFF8:
            return {"status": S.INVALID_PARAMETER, "sequence": 0}
        seq = self.radio.send_broadcast(int(destination), apsFrame, int(radius),
                                        int(messageTag), bytes(messageContents))
        return {"status": S.OK, "sequence": seq}

    def cmd_sendMulticast(self, apsFrame: Any, hops: int, nonmemberRadius: int,
                          messageTag: int, messageContents: bytes) -> dict:
        if not self.network_up:
            return {"status": S.NETWORK_DOWN, "sequence": 0}
        seq = self.radio.send_broadcast(0xFFFD, apsFrame, int(hops), int(messageTag),
                                        bytes(messageContents))
        return {"status": S.OK, "sequence": seq}

    # -- security -----------------------------------------------------------------------------
    def cmd_setInitialSecurityState(self, state: bt.EmberInitialSecurityState) -> dict:
        if self.network_up:
            return {"status": S.INVALID_STATE}
        st = self.state
        bits = bt.EmberInitialSecurityBitmask
        st.security_bitmask = int(state.bitmask)
        if bits.HAVE_PRECONFIGURED_KEY in state.bitmask:
            st.tc_link_key = bytes(state.preconfiguredKey).hex()
        if bits.HAVE_NETWORK_KEY in state.bitmask:
            st.network_key = bytes(state.networkKey).hex()
            st.network_key_seq = int(state.networkKeySequenceNumber)
        if bits.HAVE_TRUST_CENTER_EUI64 in state.bitmask:
            st.tc_eui64 = str(state.preconfiguredTrustCenterEui64)
        else:
            st.tc_eui64 = str(st.ieee)
        self.on_persist()
        return {"status": S.OK}

    def _current_security_bitmask(self) -> bt.EmberCurrentSecurityBitmask:
        cur = bt.EmberCurrentSecurityBitmask
        init = bt.EmberInitialSecurityBitmask(self.state.security_bitmask)
        bitmask = cur.STANDARD_SECURITY_MODE
        if bt.EmberInitialSecurityBitmask.TRUST_CENTER_GLOBAL_LINK_KEY in init:
            bitmask |= cur.GLOBAL_LINK_KEY
        if bt.EmberInitialSecurityBitmask.TRUST_CENTER_USES_HASHED_LINK_KEY in init:
            bitmask |= cur.TRUST_CENTER_USES_HASHED_LINK_KEY
        bitmask |= cur.HAVE_TRUST_CENTER_LINK_KEY
        return cur(bitmask)

    def cmd_getCurrentSecurityState(self) -> dict:
        if not self.network_up:
            return {"status": S.NOT_JOINED, "state": bt.EmberCurrentSecurityState(
                bitmask=0, trustCenterLongAddress=bt.EUI64.convert(self.state.tc_eui64))}
        return {"status": S.OK, "state": bt.EmberCurrentSecurityState(
            bitmask=self._current_security_bitmask(),
            trustCenterLongAddress=bt.EUI64.convert(self.state.tc_eui64))}

    def cmd_exportKey(self, context: bt.SecurityManagerContextV13) -> dict:
        kind = bt.SecurityManagerKeyType
        if context.core_key_type == kind.NETWORK:
            return {"key": bt.KeyData.convert(self.state.network_key), "status": S.OK}
        if context.core_key_type == kind.TC_LINK:
            return {"key": bt.KeyData.convert(self.state.tc_link_key), "status": S.OK}
        if context.core_key_type == kind.APP_LINK:
            for k in self.state.link_keys:
                if k.ieee == str(context.eui64):
                    return {"key": bt.KeyData.convert(k.key), "status": S.OK}
        return {"key": bt.KeyData(b"\x00" * 16), "status": S.NOT_FOUND}

    def cmd_getNetworkKeyInfo(self) -> dict:
        st = self.state
        return {"status": S.OK, "network_key_info": bt.SecurityManagerNetworkKeyInfo(
            network_key_set=st.formed, alternate_network_key_set=False,
            network_key_sequence_number=st.network_key_seq, alt_network_key_sequence_number=0,
            network_key_frame_counter=st.nwk_frame_counter)}

    def cmd_clearKeyTable(self) -> dict:
        self.state.link_keys.clear()
        self.on_persist()
        return {"status": S.OK}

    def cmd_importLinkKey(self, index: int, address: bt.EUI64, key: bt.KeyData) -> dict:
        from radios.ncp.state import LinkKey

        size = self.config.get(int(bt.EzspConfigId.CONFIG_KEY_TABLE_SIZE), 4)
        if index >= size:
            return {"status": S.INVALID_INDEX}
        keys = [k for k in self.state.link_keys if k.ieee != str(address)]
        keys.insert(min(index, len(keys)), LinkKey(ieee=str(address), key=bytes(key).hex()))
        self.state.link_keys = keys
        self.on_persist()
        return {"status": S.OK}

    def cmd_exportLinkKeyByIndex(self, index: int) -> dict:
        meta = bt.SecurityManagerAPSKeyMetadata(bitmask=0, outgoing_frame_counter=0,
                                                incoming_frame_counter=0, ttl_in_seconds=0)
        if index < len(self.state.link_keys):
            k = self.state.link_keys[index]
            return {"eui64": bt.EUI64.convert(k.ieee), "plaintext_key": bt.KeyData.convert(k.key),
                    "key_data": meta, "status": S.OK}
        return {"eui64": bt.EUI64.convert("00:00:00:00:00:00:00:00"),
                "plaintext_key": bt.KeyData(b"\x00" * 16), "key_data": meta,
                "status": S.NOT_FOUND}

    def cmd_findKeyTableEntry(self, address: bt.EUI64, linkKey: bool) -> dict:
        for i, k in enumerate(self.state.link_keys):
            if k.ieee == str(address):
                return {"index": i}
        return {"index": 0xFF}

    def cmd_eraseKeyTableEntry(self, index: int) -> dict:
        if index < len(self.state.link_keys):
            del self.state.link_keys[index]
            self.on_persist()
            return {"status": S.OK}
        return {"status": S.INVALID_INDEX}

    def cmd_importTransientKey(self, eui64: bt.EUI64, plaintext_key: bt.KeyData,
                               flags: Any) -> dict:
        self.transient_keys[str(eui64)] = bytes(plaintext_key)
        LOGGER.info("NCP: transient link key for %s", eui64)
        return {"status": S.OK}

    def cmd_clearTransientLinkKeys(self) -> dict:
        self.transient_keys.clear()
        return {}

    # -- Green Power (no proxy/sink tables in the emulated firmware) ---------------------------
    def cmd_gpSinkTableClearAll(self) -> dict:
        return {}

    def cmd_gpProxyTableProcessGpPairing(self, **_: Any) -> dict:
        return {"gpPairingAdded": False}


def sl_or_ezsp(status: bt.EzspStatus) -> Any:
    """An EzspStatus where a schema says sl_Status/EzspStatus (v13 mixes them)."""
    return _EzspAsSl(status)


class _EzspAsSl:
    """Marks an EzspStatus; :func:`serialize_fields` writes it as the field's type wants."""

    def __init__(self, status: bt.EzspStatus) -> None:
        self.status = status

    def __repr__(self) -> str:
        return f"<{self.status!r}>"
