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

The command handlers (``cmd_<name>``, found by name when a frame arrives) are mixins by
subject, each module holding one: :mod:`radios.ncp.cmd_config` (configuration, values,
policies, endpoints, counters, manufacturing and NV3 tokens), :mod:`radios.ncp.cmd_network`
(forming, scans, tables, permit joining), :mod:`radios.ncp.cmd_security` (security state,
keys), :mod:`radios.ncp.cmd_messaging` (sends, Green Power), :mod:`radios.ncp.cmd_cbke`
(Certificate-Based Key Establishment, ECDSA) and :mod:`radios.ncp.cmd_host` (what
zigbee-herdsman's ember adapter sends beyond bellows); what they share with this
module (bellows' command table, the status conversions) is in :mod:`radios.ncp.cmd_common`.
This module keeps the frame layer and the core: RAM state, dispatch, callbacks, the
radio's events and the network up/down helpers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol

import bellows.types as bt
import zigpy.zdo.types as zdo_t

from radios.ncp.cmd_cbke import CbkeCommands
from radios.ncp.cmd_common import COMMANDS, STACK_TYPE, STACK_VERSION, Ezsp, EzspAsSl, S, sl_to
from radios.ncp.cmd_config import ConfigCommands
from radios.ncp.cmd_host import HostCommands
from radios.ncp.cmd_messaging import MessagingCommands
from radios.ncp.cmd_network import NetworkCommands
from radios.ncp.cmd_security import SecurityCommands

LOGGER = logging.getLogger(__name__)

PROTOCOL_VERSION = 13  # EmberZNet 7.4.x, what bellows 1.2.1 drives as EZSPv13
MAX_FRAME_LENGTH = 220  # EZSP_MAX_FRAME_LENGTH 200 + the extended header, with headroom

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
        if isinstance(value, EzspAsSl):
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

    # the router role: joining, resuming, scanning (each reports back when done)
    nwk: int
    joining: bool

    def join(self, done: Callable[[bool, str], None]) -> None:
        """Join the network the state names (pan, channel) with the preconfigured key."""
        ...

    def resume(self, done: Callable[[bool, str], None]) -> None:
        """A joined router back on its network after a reset (a secured rejoin)."""
        ...

    def scan(self, channels: list[int],
             found: Callable[[bt.EmberZigbeeNetwork, int, int], None],
             done: Callable[[], None]) -> None: ...

    def leave(self) -> None: ...

    def lookup_eui64(self, nwk: int) -> bt.EUI64 | None: ...

    def lookup_node_id(self, eui64: bt.EUI64) -> int | None: ...


@dataclasses.dataclass
class NcpCounters:
    commands: int = 0
    callbacks: int = 0
    invalid: int = 0
    unknown_ids: list[int] = dataclasses.field(default_factory=list)


class EzspNcp(ConfigCommands, NetworkCommands, SecurityCommands, MessagingCommands,
              CbkeCommands, HostCommands):
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
        self.cca_mode = 0  # RAIL_IEEE802154_CCA_MODE_RSSI
        self.mac_counters = [0] * len(bt.EmberCounterType)
        self.cbke_reset()

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
        params = serialize_fields(COMMANDS["invalidCommand"][2], {"status": EzspAsSl(status)})
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

    def _policy_changed(self) -> None:
        """The trust-centre policy or the transient keys changed: the radio consults them."""
        hook = getattr(self.radio, "policy_changed", None)
        if hook is not None:
            hook()

    def outbox_after(self, action: Callable[[], None]) -> None:
        """Run ``action`` after the current response is queued (callbacks follow it)."""
        self._after.append(action)

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

    def _joined(self, ok: bool, why: str) -> None:
        """The radio's answer to a join or a resume."""
        if not ok:
            self._event(f"join failed: {why}")
            self.callback("stackStatusHandler", status=bt.EmberStatus.JOIN_FAILED)
            return
        self.state.formed = True
        self.on_persist()
        self.network_up = True
        self._event(f"network {why}: PAN 0x{self.state.pan_id:04X}, extended PAN "
                    f"{self.state.extended_pan_id}, channel {self.state.channel}, "
                    f"NWK 0x{self.radio.nwk:04X}")
        self.callback("stackStatusHandler", status=S.NETWORK_UP)

    def _take_network_down(self) -> None:
        if self.network_up:
            self.network_up = False
            self.radio.network_down()
            self.callback("stackStatusHandler", status=S.NETWORK_DOWN)
