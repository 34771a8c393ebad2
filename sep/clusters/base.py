"""A ZCL cluster server: attributes with access rules, and the foundation commands.

Sans-IO: :meth:`ClusterServer.handle` takes a decoded :class:`~sep.zcl.frames.Request`
and the current time and returns response frames (bytes). Attribute definitions come
from a zigpy ``Cluster`` class (the declarative table); values are either stored or
computed by getters (live values such as the metering registers).

Statuses follow ZCL r8 2.5: UNSUPPORTED_ATTRIBUTE for unknown ids, READ_ONLY for
writes to read-only attributes, INVALID_DATA_TYPE when the written type differs from the
attribute's, INVALID_VALUE for out-of-range values, UNREPORTABLE_ATTRIBUTE, and
MALFORMED_COMMAND / UNSUP_CLUSTER_COMMAND / UNSUP_GENERAL_COMMAND as default responses.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import zigpy.types as t
from zigpy.zcl import Cluster, foundation

from sep.clusters.reporting import ReportConfig, Reporter
from sep.zcl.frames import (
    MalformedFrame,
    Request,
    Status,
    build_frame,
    decode_schema,
    default_response,
    response_header,
    server_frame,
)

LOGGER = logging.getLogger(__name__)
GC = foundation.GeneralCommand
Access = foundation.ZCLAttributeAccess

Getter = Callable[[], Any]
Validator = Callable[[Any], bool]
CommandHandler = Callable[[Request, Any, float], "list[bytes] | Status | None"]


class Push(bytes):
    """An unsolicited server frame (:meth:`ClusterServer.push`): plain bytes, and ``dst``,
    the (NWK, endpoint) of the one client it is for — None: every client of the server."""

    dst: tuple[int, int] | None = None


class SharedTable(Mapping[int, foundation.ZCLAttributeDef]):
    """A read-only attribute table shared by every server of a cluster. Copying a server
    (deepcopy: tests, snapshots) shares it too: it is immutable."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[int, foundation.ZCLAttributeDef]) -> None:
        self._data = data

    def __getitem__(self, key: int) -> foundation.ZCLAttributeDef:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __copy__(self) -> SharedTable:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedTable:
        return self


_TABLES: dict[type[Cluster], Mapping[int, foundation.ZCLAttributeDef]] = {}


def attribute_table(cluster: type[Cluster]) -> Mapping[int, foundation.ZCLAttributeDef]:
    """A cluster's attribute definitions by id: built once per cluster and shared, read
    only, by every server of it (a fleet of a thousand meters holds one copy, not 1,000)."""
    table = _TABLES.get(cluster)
    if table is None:
        table = _TABLES[cluster] = SharedTable(
            {int(a.id): a for a in cluster.attributes.values()})
    return table


class ClusterServer:
    """Generic server side of one cluster on one endpoint."""

    cluster: type[Cluster]
    #: attribute ids served (default: every attribute of the zigpy definition that has a
    #: value or getter).
    reportable: frozenset[int] = frozenset()
    #: the cluster-specific commands this server generates (what Discover Commands
    #: Generated lists); None: the cluster table's, for servers that do not say
    generated: frozenset[int] | None = None

    def __init__(self) -> None:
        self.defs: Mapping[int, foundation.ZCLAttributeDef] = attribute_table(self.cluster)
        self.values: dict[int, Any] = {}
        self.getters: dict[int, Getter] = {}
        self.validators: dict[int, Validator] = {}
        self.on_write: dict[int, Callable[[Any], None]] = {}
        self.commands: dict[int, CommandHandler] = {}
        self.values[0xFFFD] = 2  # ClusterRevision
        self.reporter = Reporter(self)
        #: (nwk, endpoint) of every HAN client that has sent this cluster a command; the
        #: destinations of unsolicited server commands (no binding table on the HAN yet).
        self.clients: set[tuple[int, int]] = set()
        #: unsolicited server commands waiting to go to every client (drained by the endpoint)
        self.outbox: list[bytes] = []
        # Pushes have a TSN sequence of their own, started at random: a client that counts
        # its requests from 0 too would otherwise often ask with the TSN of a push it just
        # got, and zigpy drops an answer byte-identical to a frame seen in the last 10 s as a
        # duplicate (zigpy.device.PACKET_DEBOUNCE_WINDOW).
        self._push_tsn = secrets.randbelow(256)

    @property
    def cluster_id(self) -> int:
        return int(self.cluster.cluster_id)

    # -- attribute model ------------------------------------------------------------------
    def supported(self, attr_id: int) -> bool:
        return attr_id in self.defs and (attr_id in self.values or attr_id in self.getters)

    def attr_ids(self) -> list[int]:
        return sorted(a for a in self.defs if self.supported(a))

    def read_value(self, attr_id: int) -> Any:
        getter = self.getters.get(attr_id)
        return getter() if getter is not None else self.values[attr_id]

    def typed(self, attr_id: int, value: Any) -> Any:
        return self.defs[attr_id].type(value)

    def set(self, attr_id: int, value: Any) -> None:
        """Local (server-side) write, no access checks."""
        self.values[attr_id] = value

    def access(self, attr_id: int) -> Access:
        return self.defs[attr_id].access

    def writable(self, attr_id: int) -> bool:
        return bool(self.access(attr_id) & (Access.Write | Access.Write_Optional))

    def is_reportable(self, attr_id: int) -> bool:
        return attr_id in self.reportable or bool(self.access(attr_id) & Access.Report)

    def type_value(self, attr_id: int) -> foundation.TypeValue:
        d = self.defs[attr_id]
        return foundation.TypeValue(type=d.zcl_type, value=self.typed(attr_id, self.read_value(attr_id)))

    # -- unsolicited server commands -----------------------------------------------------
    def push(self, command_id: int, payload: bytes, *,
             dst: tuple[int, int] | None = None) -> bytes:
        """Queue a server-generated cluster command for every client, or only for ``dst``
        (NWK, endpoint) — say the client whose request scheduled it; returns the frame."""
        self._push_tsn = (self._push_tsn + 1) & 0xFF
        frame = Push(server_frame(self._push_tsn, command_id, payload, general=False))
        frame.dst = dst
        self.outbox.append(frame)
        return frame

    def take_outbox(self) -> list[bytes]:
        frames, self.outbox = self.outbox, []
        return frames

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, req: Request, now: float) -> list[bytes]:
        try:
            if req.is_general:
                return self._general(req, now)
            return self._cluster_command(req, now)
        except MalformedFrame as exc:
            LOGGER.info("cluster 0x%04X cmd 0x%02X malformed: %s", self.cluster_id,
                        req.command_id, exc)
            return self._status(req, Status.MALFORMED_COMMAND)

    def _status(self, req: Request, status: Status, *, success_needs_ddr: bool = True) -> list[bytes]:
        """A Default Response, under the ZCL rules for when one is sent."""
        if req.broadcast:
            return []
        if status == Status.SUCCESS and req.ddr and success_needs_ddr:
            return []
        return [default_response(req, status)]

    def _cluster_command(self, req: Request, now: float) -> list[bytes]:
        if req.manufacturer is not None:
            return self._status(req, Status.UNSUP_MANUF_CLUSTER_COMMAND)
        handler = self.commands.get(req.command_id)
        if handler is None:
            return self._status(req, Status.UNSUP_CLUSTER_COMMAND)
        if not req.broadcast:
            self.clients.add((req.src_nwk, req.src_ep))
        cmd_def = self.cluster.server_commands.get(req.command_id)
        args: Any = req.payload
        if cmd_def is not None:
            args = decode_schema(cmd_def.schema, req.payload, strict=False)
        result = handler(req, args, now)
        if isinstance(result, list):
            return result
        return self._status(req, Status(result) if result is not None else Status.SUCCESS)

    def _general(self, req: Request, now: float) -> list[bytes]:
        if req.command_id == GC.Default_Response:
            return []  # never answered, not even to refuse it (ZCL r8 2.5.12.2)
        if req.manufacturer is not None:
            return self._status(req, Status.UNSUP_MANUF_GENERAL_COMMAND)
        method = {
            GC.Read_Attributes: self._read_attributes,
            GC.Write_Attributes: self._write_attributes,
            GC.Write_Attributes_Undivided: self._write_attributes,
            GC.Write_Attributes_No_Response: self._write_attributes,
            GC.Configure_Reporting: self._configure_reporting,
            GC.Read_Reporting_Configuration: self._read_reporting_configuration,
            GC.Discover_Attributes: self._discover_attributes,
            GC.Discover_Attribute_Extended: self._discover_attributes,
            GC.Discover_Commands_Received: self._discover_commands,
            GC.Discover_Commands_Generated: self._discover_commands,
        }.get(req.command_id)
        if method is None:
            return self._status(req, Status.UNSUP_GENERAL_COMMAND)
        return method(req, now)

    def _reply(self, req: Request, command: int, payload: bytes) -> list[bytes]:
        if req.broadcast and command not in (GC.Read_Attributes_rsp,):
            return []
        return [build_frame(response_header(req, command, general=True), payload)]

    # -- foundation commands ----------------------------------------------------------------
    def _read_attributes(self, req: Request, now: float) -> list[bytes]:
        if len(req.payload) % 2:
            raise MalformedFrame("odd attribute id list")
        ids = [int.from_bytes(req.payload[i : i + 2], "little") for i in range(0, len(req.payload), 2)]
        out = b""
        for attr_id in ids:
            if not self.supported(attr_id):
                rec = foundation.ReadAttributeRecord(attr_id, Status.UNSUPPORTED_ATTRIBUTE)
            elif not self.access(attr_id) & Access.Read:
                rec = foundation.ReadAttributeRecord(attr_id, Status.WRITE_ONLY)
            else:
                try:
                    rec = foundation.ReadAttributeRecord(attr_id, Status.SUCCESS,
                                                         self.type_value(attr_id))
                except LookupError as exc:  # a live source without a trusted value now
                    LOGGER.info("attribute 0x%04X not readable: %s", attr_id, exc)
                    rec = foundation.ReadAttributeRecord(attr_id, Status.HARDWARE_FAILURE)
            out += rec.serialize()
        return self._reply(req, GC.Read_Attributes_rsp, out)

    def _check_write(self, attr_id: int, tv: foundation.TypeValue) -> tuple[Status, Any]:
        if not self.supported(attr_id):
            return Status.UNSUPPORTED_ATTRIBUTE, None
        d = self.defs[attr_id]
        if not self.writable(attr_id):
            return Status.READ_ONLY, None
        if int(tv.type) != int(d.zcl_type):
            return Status.INVALID_DATA_TYPE, None
        try:
            value = d.type(tv.value)
            # What is stored must go out again as it came in: a string cut inside a UTF-8
            # character, or one zigpy cannot encode (it counts characters, not octets),
            # would make every later Read Attributes answer unreadable.
            back, rest = d.type.deserialize(value.serialize())
        except (ValueError, TypeError, OverflowError):
            return Status.INVALID_VALUE, None
        if rest or back != value:
            return Status.INVALID_VALUE, None
        validator = self.validators.get(attr_id)
        if validator is not None and not validator(value):
            return Status.INVALID_VALUE, None
        return Status.SUCCESS, value

    def _write_attributes(self, req: Request, now: float) -> list[bytes]:
        records = decode_schema(t.List[foundation.Attribute], req.payload)
        checked = [(int(r.attrid), *self._check_write(int(r.attrid), r.value)) for r in records]
        undivided = req.command_id == GC.Write_Attributes_Undivided
        failed = [(a, s) for a, s, _ in checked if s != Status.SUCCESS]
        if not (undivided and failed):
            for attr_id, status, value in checked:
                if status == Status.SUCCESS:
                    self.values[attr_id] = value
                    hook = self.on_write.get(attr_id)
                    if hook is not None:
                        hook(value)
        if req.command_id == GC.Write_Attributes_No_Response:
            return []
        if not failed:
            payload = bytes([Status.SUCCESS])
        else:
            payload = b"".join(bytes([s]) + a.to_bytes(2, "little") for a, s in failed)
        return self._reply(req, GC.Write_Attributes_rsp, payload)

    def _configure_reporting(self, req: Request, now: float) -> list[bytes]:
        records = decode_schema(t.List[foundation.AttributeReportingConfig], req.payload)
        if not records:
            raise MalformedFrame("no attribute reporting configuration record")
        statuses: list[foundation.ConfigureReportingResponseRecord] = []
        for rec in records:
            attr_id = int(rec.attrid)
            direction = int(rec.direction)
            status = Status.SUCCESS
            if not self.supported(attr_id):
                status = Status.UNSUPPORTED_ATTRIBUTE
            elif direction == foundation.ReportingDirection.SendReports:
                if int(rec.datatype) != int(self.defs[attr_id].zcl_type):
                    status = Status.INVALID_DATA_TYPE
                elif not self.is_reportable(attr_id):
                    status = Status.UNREPORTABLE_ATTRIBUTE
                elif (
                    rec.max_interval != 0xFFFF
                    and rec.max_interval != 0
                    and rec.min_interval > rec.max_interval
                ):
                    status = Status.INVALID_VALUE
                else:
                    change = getattr(rec, "reportable_change", None)
                    self.reporter.configure(
                        ReportConfig(
                            attr_id=attr_id,
                            min_interval=int(rec.min_interval),
                            max_interval=int(rec.max_interval),
                            reportable_change=None if change is None else change,
                            dst_nwk=req.src_nwk,
                            dst_ep=req.src_ep,
                        ),
                        now,
                    )
            statuses.append(
                foundation.ConfigureReportingResponseRecord(
                    status=status, direction=direction, attrid=attr_id
                )
            )
        return self._reply(req, GC.Configure_Reporting_rsp,
                           foundation.ConfigureReportingResponse(statuses).serialize())

    def _read_reporting_configuration(self, req: Request, now: float) -> list[bytes]:
        records = decode_schema(t.List[foundation.ReadReportingConfigRecord], req.payload)
        if not records:
            raise MalformedFrame("no attribute record")
        out = b""
        for rec in records:
            attr_id, direction = int(rec.attrid), int(rec.direction)
            head = t.uint8_t(direction).serialize() + t.uint16_t(attr_id).serialize()
            if not self.supported(attr_id):
                out += bytes([Status.UNSUPPORTED_ATTRIBUTE]) + head
                continue
            if direction != 0:
                out += bytes([Status.UNREPORTABLE_ATTRIBUTE]) + head
                continue
            cfg = self.reporter.config_for(attr_id)
            if cfg is None:
                out += bytes([Status.NOT_FOUND]) + head
                continue
            d = self.defs[attr_id]
            out += bytes([Status.SUCCESS]) + head + bytes([int(d.zcl_type)])
            out += t.uint16_t(cfg.min_interval).serialize() + t.uint16_t(cfg.max_interval).serialize()
            data_type = foundation.DataType.from_type_id(d.zcl_type)
            if data_type.type_class == foundation.DataClass.Analog:
                out += data_type.python_type(cfg.reportable_change or 0).serialize()
        return self._reply(req, GC.Read_Reporting_Configuration_rsp, out)

    def _discover_attributes(self, req: Request, now: float) -> list[bytes]:
        args = decode_schema(
            foundation.GENERAL_COMMANDS[GC.Discover_Attributes].schema, req.payload
        )
        start, count = int(args.start_attribute_id), int(args.max_attribute_ids)
        ids = [a for a in self.attr_ids() if a >= start]
        chosen = ids[:count]
        complete = len(chosen) == len(ids)
        out = bytes([1 if complete else 0])
        extended = req.command_id == GC.Discover_Attribute_Extended
        for attr_id in chosen:
            out += t.uint16_t(attr_id).serialize() + bytes([int(self.defs[attr_id].zcl_type)])
            if extended:
                acc = self.access(attr_id)
                acl = (1 if acc & Access.Read else 0) | (2 if self.writable(attr_id) else 0)
                acl |= 4 if self.is_reportable(attr_id) else 0
                out += bytes([acl])
        command = GC.Discover_Attribute_Extended_rsp if extended else GC.Discover_Attributes_rsp
        return self._reply(req, command, out)

    def _discover_commands(self, req: Request, now: float) -> list[bytes]:
        args = decode_schema(
            foundation.GENERAL_COMMANDS[GC.Discover_Commands_Received].schema, req.payload
        )
        if req.command_id == GC.Discover_Commands_Received:
            ids = sorted(self.commands)
            command = GC.Discover_Commands_Received_rsp
        else:
            generated = self.cluster.client_commands if self.generated is None else self.generated
            ids = sorted(int(c) for c in generated)
            command = GC.Discover_Commands_Generated_rsp
        ids = [i for i in ids if i >= args.start_command_id]
        chosen = ids[: args.max_command_ids]
        return self._reply(req, command, bytes([int(len(chosen) == len(ids))]) + bytes(chosen))

    # -- periodic ----------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Advance time-driven state (subclasses); reports are collected by the endpoint."""
