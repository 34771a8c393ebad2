"""ZCL frames as plain values, on zigpy's foundation types (no I/O).

An incoming frame is decoded into a :class:`Request`; servers answer with
:class:`Reply` values that carry a complete ZCL frame. Decoding never raises anything
but :class:`MalformedFrame`.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import zigpy.types as t
from zigpy.zcl import foundation

Status = foundation.Status
Direction = foundation.Direction
GeneralCommand = foundation.GeneralCommand

SE_PROFILE = 0x0109
WILDCARD_PROFILE = 0xFFFF


class MalformedFrame(ValueError):
    """The bytes are not a well-formed ZCL frame (or command payload)."""


# Everything zigpy's deserialisers are known to raise on bad input.
DECODE_ERRORS = (ValueError, KeyError, IndexError, TypeError, struct.error, AssertionError,
                 OverflowError)


@dataclasses.dataclass(frozen=True)
class Request:
    src_nwk: int
    src_ep: int
    dst_ep: int
    profile_id: int
    cluster_id: int
    header: foundation.ZCLHeader
    payload: bytes
    broadcast: bool = False
    #: the sender as its APS link key authenticates it (EUI-64 as an int, most significant
    #: byte first), or None when the frame had network-key security only / the radio
    #: does not say
    src_ieee: int | None = None
    #: True: APS-encrypted under the sender's link key; False: not; None: the radio
    #: does not say (bellows)
    aps_secured: bool | None = None

    @property
    def tsn(self) -> int:
        return int(self.header.tsn)

    @property
    def command_id(self) -> int:
        return int(self.header.command_id)

    @property
    def is_general(self) -> bool:
        return bool(self.header.frame_control.is_general)

    @property
    def manufacturer(self) -> int | None:
        return None if self.header.manufacturer is None else int(self.header.manufacturer)

    @property
    def ddr(self) -> bool:
        """Disable default response bit."""
        return bool(self.header.frame_control.disable_default_response)


@dataclasses.dataclass(frozen=True)
class Reply:
    dst_nwk: int
    dst_ep: int
    src_ep: int
    profile_id: int
    cluster_id: int
    data: bytes


def decode_header(data: bytes) -> tuple[foundation.ZCLHeader, bytes]:
    try:
        hdr, rest = foundation.ZCLHeader.deserialize(data)
    except DECODE_ERRORS as exc:
        raise MalformedFrame(f"bad ZCL header: {exc}") from exc
    if hdr.frame_control.frame_type not in (
        foundation.FrameType.GLOBAL_COMMAND,
        foundation.FrameType.CLUSTER_COMMAND,
    ):
        raise MalformedFrame("reserved ZCL frame type")
    return hdr, rest


def decode_schema(schema: Any, payload: bytes, *, strict: bool = True) -> Any:
    """Deserialise a zigpy command schema; trailing bytes are malformed when strict."""
    try:
        value, rest = schema.deserialize(payload)
    except DECODE_ERRORS as exc:
        raise MalformedFrame(str(exc) or type(exc).__name__) from exc
    if strict and rest:
        raise MalformedFrame(f"{len(rest)} trailing bytes")
    return value


def response_header(
    req: Request, command_id: int, *, general: bool, disable_default_response: bool = True
) -> foundation.ZCLHeader:
    direction = (
        Direction.Server_to_Client
        if req.header.frame_control.direction == Direction.Client_to_Server
        else Direction.Client_to_Server
    )
    fc = foundation.FrameControl(
        frame_type=(
            foundation.FrameType.GLOBAL_COMMAND if general else foundation.FrameType.CLUSTER_COMMAND
        ),
        is_manufacturer_specific=req.manufacturer is not None,
        direction=direction,
        disable_default_response=disable_default_response,
        reserved=0,
    )
    return foundation.ZCLHeader(
        frame_control=fc, manufacturer=req.manufacturer, tsn=req.tsn, command_id=command_id
    )


def build_frame(header: foundation.ZCLHeader, payload: bytes) -> bytes:
    return header.serialize() + payload


def default_response(req: Request, status: int) -> bytes:
    hdr = response_header(req, GeneralCommand.Default_Response, general=True)
    return build_frame(hdr, bytes([req.command_id, int(status)]))


def server_frame(tsn: int, command_id: int, payload: bytes, *, general: bool,
                 manufacturer: int | None = None, disable_default_response: bool = True) -> bytes:
    """A frame the server originates (reports, unsolicited cluster commands)."""
    fc = foundation.FrameControl(
        frame_type=(
            foundation.FrameType.GLOBAL_COMMAND if general else foundation.FrameType.CLUSTER_COMMAND
        ),
        is_manufacturer_specific=manufacturer is not None,
        direction=Direction.Server_to_Client,
        disable_default_response=disable_default_response,
        reserved=0,
    )
    hdr = foundation.ZCLHeader(
        frame_control=fc, manufacturer=manufacturer, tsn=t.uint8_t(tsn & 0xFF),
        command_id=command_id,
    )
    return build_frame(hdr, payload)


def read_attributes_frame(tsn: int, attr_ids: tuple[int, ...] | list[int]) -> bytes:
    """A client's Read Attributes request (general command 0x00, client to server)."""
    fc = foundation.FrameControl(
        frame_type=foundation.FrameType.GLOBAL_COMMAND, is_manufacturer_specific=False,
        direction=Direction.Client_to_Server, disable_default_response=True, reserved=0)
    hdr = foundation.ZCLHeader(frame_control=fc, manufacturer=None, tsn=t.uint8_t(tsn & 0xFF),
                               command_id=GeneralCommand.Read_Attributes)
    return build_frame(hdr, b"".join(t.uint16_t(a).serialize() for a in attr_ids))


def parse_read_attributes_response(req: Request) -> dict[int, Any] | None:
    """The values of a Read Attributes Response (records with SUCCESS only), or None when
    ``req`` is not one or does not parse."""
    if not req.is_general or req.command_id != GeneralCommand.Read_Attributes_rsp:
        return None
    schema = foundation.GENERAL_COMMANDS[GeneralCommand.Read_Attributes_rsp].schema
    try:
        records = schema.deserialize(req.payload)[0].status_records
    except DECODE_ERRORS:
        return None
    return {int(r.attrid): r.value.value for r in records
            if r.status == Status.SUCCESS and r.value is not None}
