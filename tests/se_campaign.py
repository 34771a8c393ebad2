"""The SE endpoint campaign: structure-aware ZCL frames into the meter's endpoint, judged
by zigpy's parsers, the ZCL r8 status rules and a model of who may change what.

A frame is built the way a HAN device would build it — a valid ZCL header (general or
cluster command, either direction, manufacturer-specific now and then, any TSN, disable
default response or not) on a served or unserved cluster, from the trust centre, an IHD or
a stranger, unicast or broadcast — with a body made from the command's own schema (real
attribute ids with random types and lengths, record lists of every size), then maybe
damaged (cut, extended, a byte flipped, inserted or dropped). It goes in through
:func:`sep.packets.serve`, the path every packet from the air takes.

The oracle, per frame:

- nothing raises, and no catch-all fires (the endpoint's ``internal_errors`` counter and
  every log record carrying an exception);
- every reply parses with zigpy: the ZCL header, then the general command's schema or the
  cluster command's (zigpy's own Basic/Identify/Time/Metering tables; for Price and
  Messaging, which zigpy leaves empty, the tables hubsim's zigpy IHD reads them with), to
  the last byte; same TSN, the other direction;
- ZCL r8 2.5.12 rules: no Default Response to a broadcast or to a Default Response, SUCCESS
  only when the request asked for one, and the status the spec names where the generator
  knows the truth (UNSUPPORTED_CLUSTER, UNSUP_GENERAL_COMMAND, UNSUP_CLUSTER_COMMAND,
  UNSUP_MANUF_*, MALFORMED_COMMAND for a cut fixed-size command or an empty record list);
  FAILURE never (it is what a catch-all answers);
- entitlement: the meter's state is fingerprinted before and after; a frame may change
  only what its command is for (a Write Attributes the cluster's attributes, ChangeSupply
  from the supply authority the supply, an ESI frame from the authorised supplier the
  tariff ...), and a refused frame changes nothing.

Every ``check_every`` frames the periodic work runs (reports, pushes) and must produce
frames zigpy reads, and the meter must still answer a Read Attributes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import zigpy.types as t
from fuzzgen import CatchAllObserver, Gen
from zigpy.zcl import Cluster, foundation
from zigpy.zcl.clusters.general import Basic, Identify, Time
from zigpy.zcl.clusters.smartenergy import Metering as ZigpyMetering

from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.clusters.general import ZIGBEE_EPOCH
from sep.packets import serve
from sep.zcl.calendar import Calendar
from sep.zcl.events import Events
from sep.zcl.messaging import Messaging
from sep.zcl.prepayment import Prepayment
from sep.zcl.price import Price

GC = foundation.GeneralCommand
S = foundation.Status
SE_PROFILE = 0x0109
TC, IHD = 0x0000, 0x3B3B
ENDPOINT = 1
#: a Home Automation host (zigbee2mqtt, ZHA) may read these with its own profile (issue 14)
HA_PROFILE = 0x0104
HA_CLUSTERS = frozenset({0x0000, 0x0003, 0x000A, 0x0702})

#: the tables a HAN client parses the meter's answers with (zigpy's own where zigpy has
#: them; Price, Messaging, Prepayment, Calendar and Events are empty stubs in zigpy 2.4,
#: hubsim's IHD and PPMID use these)
CLIENT_TABLES: dict[int, type[Cluster]] = {
    0x0000: Basic, 0x0003: Identify, 0x000A: Time, 0x0700: Price, 0x0702: ZigpyMetering,
    0x0703: Messaging, 0x0705: Prepayment, 0x0707: Calendar, 0x0709: Events,
}
UNSERVED = (0x0001, 0x0006, 0x0019, 0x0020, 0x0101, 0x0704, 0x0800, 0x0B04, 0xFC00)
#: general commands a server implements (ZCL r8 2.5): everything else is
#: UNSUP_GENERAL_COMMAND, and a Default Response is never answered
GENERAL_SERVED = {GC.Read_Attributes, GC.Write_Attributes, GC.Write_Attributes_Undivided,
                  GC.Write_Attributes_No_Response, GC.Configure_Reporting,
                  GC.Read_Reporting_Configuration, GC.Discover_Attributes,
                  GC.Discover_Commands_Received, GC.Discover_Commands_Generated,
                  GC.Discover_Attribute_Extended, GC.Default_Response}
#: Prepayment commands only the supplier (and, for the first two, a PPMID of the home) may
#: send, SE 1.4 D.7.2.3: SelectAvailableEmergencyCredit 0x00, ConsumerTopUp 0x04; ChangeDebt
#: 0x02, EmergencyCreditSetup 0x03, CreditAdjustment 0x05, ChangePaymentMode 0x06,
#: SetLowCreditWarningLevel 0x09, SetMaximumCreditLimit 0x0B, SetOverallDebtCap 0x0C
PREPAY_RESTRICTED = {0x00, 0x04, 0x02, 0x03, 0x05, 0x06, 0x09, 0x0B, 0x0C}
WRITES = {GC.Write_Attributes, GC.Write_Attributes_Undivided, GC.Write_Attributes_No_Response}
DATA_TYPES = [int(d.type_id) for d in foundation.DataType]


@dataclasses.dataclass
class Frame:
    cluster: int
    src: int
    dst_ep: int
    profile: int
    broadcast: bool
    general: bool
    to_server: bool
    command: int
    manufacturer: int | None
    ddr: bool
    tsn: int
    payload: bytes
    damage: str
    #: what the generator knows the answer must be (a Default Response status), if anything
    expect: int | None = None

    def data(self) -> bytes:
        fc = foundation.FrameControl(
            frame_type=(foundation.FrameType.GLOBAL_COMMAND if self.general
                        else foundation.FrameType.CLUSTER_COMMAND),
            is_manufacturer_specific=self.manufacturer is not None,
            direction=(foundation.Direction.Client_to_Server if self.to_server
                       else foundation.Direction.Server_to_Client),
            disable_default_response=self.ddr, reserved=0)
        hdr = foundation.ZCLHeader(frame_control=fc, manufacturer=self.manufacturer,
                                   tsn=self.tsn, command_id=self.command)
        return hdr.serialize() + self.payload


def is_ha(f: Frame) -> bool:
    """A frame of a Home Automation host to the meter on a cluster it may read."""
    return f.dst_ep in (ENDPOINT, 0xFF) and f.profile == HA_PROFILE and f.cluster in HA_CLUSTERS


def fixed_size(schema: Any) -> int | None:
    """The encoded size of a schema of fixed-size fields, none optional (else None)."""
    size = 0
    for fld in getattr(schema, "fields", ()):
        typ = fld.type
        if fld.optional or fld.requires is not None or not isinstance(typ, type) or not (
                issubclass(typ, t.FixedIntType)):
            return None
        size += typ._size
    return size


class Meter:
    """The meter under test: the real composition (``MeterApp``), not started on a radio;
    frames go in at packet level, as from the air."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.app = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:f2:01", seed=3),
                            clock=self.clock, air=VirtualAir())
        asyncio.run(self.app.poll_metrology())
        self.ep = self.app.endpoint
        self.servers = self.ep.servers

    def packet(self, f: Frame, data: bytes) -> t.ZigbeePacket:
        if f.broadcast:
            dst = t.AddrModeAddress(addr_mode=t.AddrMode.Broadcast, address=t.NWK(0xFFFD))
        else:
            dst = t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0xFFFE))
        return t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(f.src)), src_ep=1,
            dst=dst, dst_ep=f.dst_ep, tsn=f.tsn, profile_id=f.profile, cluster_id=f.cluster,
            data=t.SerializableBytes(data),
            # as the radio marks a frame its partner's APS link key opened (SE 5.4.6): the
            # campaign is about what is inside; unsecured frames are the secure HAN's tests'
            tx_options=t.TransmitOptions.APS_Encryption)

    # -- what a frame may change -------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        app, m = self.app, self.app.metering
        out: dict[str, Any] = {
            "supply": (tuple(sorted(m.supply.state().items(), key=str)),
                       int(m.supply.tamper_state), int(m.supply.depletion_state),
                       int(m.supply.uncontrolled_flow_state),
                       int(m.supply.load_limit_state)),
            "registers": (tuple(m.registers.tiers_delivered), tuple(m.registers.tiers_received),
                          tuple(m.registers.day.current)),
            "snapshots": tuple(s.snapshot_id for s in m.snapshots),
            "fast_poll": m.fast_poll_until,
            "identify": app.identify.until,
            "time": (app.time.offset, app.time.last_set),
            "tariff": (app.price.tariff, app.price.pending, tuple(
                (e.issuer_event_id, e.start, e.duration_min, e.tier, e.rate)
                for e in app.price.events), app.price._cancelled,
                       m.registers.active_tier, m.registers.blocks.active),
            "messages": (tuple((k, v.text, v.start, v.duration_min, v.control)
                               for k, v in app.messaging.messages.items()),
                         app.messaging.cancel_all_at),
            "confirmations": tuple(len(v.confirmations) for v in app.messaging.messages.values()),
            "acks": (len(app.price.acks), tuple(app.price.acks[-1].items())
                     if app.price.acks else ()),
            # the credit account, less what the clock and the metrology move
            "prepay": repr(sorted((k, v) for k, v in app.prepayment.account.state().items()
                                  if k not in ("last_t", "last_wh", "sc_carry", "updated"))),
        }
        for cid, server in self.servers.items():
            out[f"attrs:{cid:04x}"] = tuple(sorted(server.values.items()))
            out[f"reporting:{cid:04x}"] = tuple(sorted(
                (k, c.min_interval, c.max_interval, repr(c.reportable_change))
                for k, c in server.reporter.configs.items()))
        return out

    def entitled(self, f: Frame) -> set[str]:
        """What frame ``f`` may change (when the meter accepts it). A Home Automation host
        (HA profile, on the clusters it may read) may configure reporting and Identify."""
        if is_ha(f):
            return {k for k in self._entitled_se(f)
                    if k.startswith("reporting:") or f.cluster == 0x0003}
        return self._entitled_se(f)

    def _entitled_se(self, f: Frame) -> set[str]:
        if f.dst_ep not in (ENDPOINT, 0xFF) or f.profile not in (SE_PROFILE, 0xFFFF, HA_PROFILE):
            return set()
        c = f.cluster
        if f.cluster not in self.servers or f.manufacturer is not None:
            return set()
        if not f.to_server:
            if f.general or f.src != TC:  # only the authorised ESI (the trust centre here)
                return set()
            if c == 0x0700:
                return {"tariff"}
            return {"messages", "confirmations"} if c == 0x0703 else set()
        if f.general:
            if f.command in WRITES:
                extra = {"identify"} if c == 0x0003 else {"time"} if c == 0x000A else set()
                return {f"attrs:{c:04x}"} | extra
            if f.command == GC.Configure_Reporting:
                return {f"reporting:{c:04x}"}
            return set()
        may = {
            (0x0003, 0x00): {"identify"},
            (0x0702, 0x03): {"fast_poll"},
            (0x0702, 0x05): {"snapshots"},
            (0x0700, 0x02): {"acks"},
            (0x0703, 0x01): {"confirmations"},
        }.get((c, f.command), set())
        if c == 0x0702 and f.command in (0x0A, 0x0B, 0x0D) and not f.broadcast and f.src == TC:
            may = {"supply", "attrs:0702"}  # the supply authority (the trust centre)
        if c == 0x0702 and f.command == 0x0C and not f.broadcast:
            may = {"supply"}  # LocalChangeSupply: restores an ARMED supply, from anyone
        if c == 0x0705 and f.command in PREPAY_RESTRICTED and not f.broadcast and f.src == TC:
            # the supplier's terms and top-ups move the account, its attributes and the
            # supply interlock (no PPMID is configured: the consumer's two are the ESI's too)
            # and the meter tells the home on its displays (low credit, emergency credit,
            # disconnected: Messaging messages; a top-up cancels them)
            may = {"prepay", "attrs:0705", "supply", "attrs:0702", "messages", "confirmations"}
        return may


class SeCampaign:
    def __init__(self, rng: random.Random, *, check_every: int = 200) -> None:
        self.rng = rng
        self.gen = Gen(rng, hints=self.hint)
        self.meter = Meter()
        self.check_every = check_every
        self.n = 0
        self.last_event_id = 0
        self.last_outcome: list[str] = []
        self.last_replies = 0
        self.replies_seen: list[tuple[Frame, bytes]] = []  # a sample, for tshark
        self.keep_sample = 0
        self.attr_ids = {cid: sorted(set(s.defs) | set(s.getters) | set(s.values))
                         for cid, s in self.meter.servers.items()}
        self.reportable = {cid: [a for a in s.attr_ids() if s.is_reportable(a)]
                           for cid, s in self.meter.servers.items()}

    # -- generation ---------------------------------------------------------------------
    def hint(self, name: str, typ: Any) -> bytes | None:
        """Plausible values for SE fields, from what the meter knows now: the provider id,
        tariff and message ids it holds, times near its now, the tariff's currency and unit
        (random values almost never pass the checks behind which state changes)."""
        rng, app = self.rng, self.meter.app
        tariff = app.price.tariff
        if isinstance(typ, type) and issubclass(typ, t.LVBytes):
            if "label" in name or name in ("message", "message_response"):
                text = self.gen.text(0, 14 if "label" in name else 40)
                return bytes([len(text)]) + text
            return None
        if not (isinstance(typ, type) and issubclass(typ, t.FixedIntType)) or typ._size is None:
            return None
        now = int(self.meter.clock.now()) - ZIGBEE_EPOCH
        value: int | None = None
        if "provider_id" in name:
            value = tariff.provider_id if rng.random() < 0.8 else rng.randrange(4)
        elif "issuer_tariff_id" in name:
            value = tariff.issuer_tariff_id + rng.choice((0, 0, 1, -1, 7))
        elif "issuer_event_id" in name:
            value = rng.choice((now, now + rng.randrange(1, 1000), 0, 0xFFFFFFFF,
                                self.last_event_id + 1))
            if value != 0xFFFFFFFF:
                self.last_event_id = max(self.last_event_id, value)
        elif "message_id" in name:
            ids = list(app.messaging.messages)
            value = rng.choice(ids) if ids and rng.random() < 0.6 else rng.randrange(1, 20)
        elif name == "message_control":
            value = rng.choice((0x00, 0x04, 0x08, 0x0C, 0x80, 0x84, 0xA4, 0x01, 0x02))
        elif name.endswith("time") or "date_time" in name:
            value = rng.choice((0, 0, now, now - rng.randrange(1, 90000),
                                now + rng.randrange(1, 90000), 0xFFFFFFFF))
        elif "duration_type" in name:
            value = rng.choice((0x00, 0x01, 0x02, 0x03, 0x10, 0x21, 0x33))
        elif "duration" in name:
            value = rng.choice((0, 1, 30, 60, 0xFFFF, 0xFFFFFF))
        elif name == "currency":
            value = tariff.currency
        elif name == "unit_of_measure":
            value = tariff.unit_of_measure
        elif name == "price_trailing_digit_and_price_tier":
            value = (tariff.price_trailing_digits << 4) | rng.randrange(0, 6)
        elif "trailing_digit" in name:
            value = rng.randrange(0, 5) << 4
        elif name in ("price", "conversion_factor", "calorific_value", "co2_value"):
            value = rng.choice((1, 100, 2450, 12345, 0xFFFFFFFF))
        elif "tariff_type" in name:
            value = rng.choice((0x00, 0x01, 0x10, 0x20, 0x02))
        elif name in ("calorific_value_unit", "co2_unit"):
            value = rng.randrange(0, 4)
        elif name in ("tier", "price_tier", "number_of_price_tiers_in_use",
                      "number_of_block_thresholds_in_use", "block_number"):
            value = rng.randrange(0, 6)
        elif "supply" in name and "state" in name or name == "proposed_supply_status":
            value = rng.randrange(0, 4)
        elif name.startswith("number_of") or name.startswith("command_index") or name in (
                "interval_channel", "snapshot_offset", "total_number_of_commands"):
            value = rng.randrange(0, 30)
        if value is None:
            return None
        return (value % (1 << (8 * typ._size))).to_bytes(typ._size, "little")

    def frame(self) -> Frame:
        rng, gen = self.rng, self.gen
        r = rng.random()
        if r < 0.88:
            cluster = rng.choice(sorted(self.meter.servers))
        elif r < 0.97:
            cluster = rng.choice(UNSERVED)
        else:
            cluster = rng.randrange(0x10000)
        to_server = rng.random() < 0.85
        r = rng.random()
        if not to_server:  # mostly the supplier's ESI (the trust centre), as in a HAN
            r = r * 0.5
        src = TC if r < 0.35 else IHD if r < 0.75 else rng.randrange(1, 0xFFF8)
        dst_ep = ENDPOINT if rng.random() < 0.95 else rng.choice((0xFF, 2, 9, 0xF2, 0))
        profile = SE_PROFILE if rng.random() < 0.95 else rng.choice((0xFFFF, 0x0104, 0xC05E))
        broadcast = rng.random() < 0.15
        general = rng.random() < 0.5
        manufacturer = rng.randrange(0x10000) if rng.random() < 0.05 else None
        ddr = rng.random() < 0.5
        tsn = rng.randrange(256)
        table = CLIENT_TABLES.get(cluster)
        if general:
            if rng.random() < 0.85:
                command = rng.randrange(0x17)
            else:
                command = rng.randrange(0x17, 0x100)
            payload = self.general_payload(cluster, command)
        else:
            defs = None if table is None else (table.server_commands if to_server
                                               else table.client_commands)
            if defs and rng.random() < 0.85:
                command = rng.choice(sorted(defs))
                payload = gen.fields(defs[command].schema)
            else:
                command = rng.randrange(0x100)
                payload = gen.raw(0, 16)
        intact = payload
        payload, damage = gen.mutate(payload)
        f = Frame(cluster, src, dst_ep, profile, broadcast, general, to_server, command,
                  manufacturer, ddr, tsn, payload, damage)
        f.expect = self.expected_status(f, intact)
        return f

    def real_attr(self, cluster: int) -> int:
        ids = self.attr_ids.get(cluster)
        if ids and self.rng.random() < 0.85:
            return self.rng.choice(ids)
        return self.rng.randrange(0x10000)

    def attr_type(self, cluster: int, attr_id: int) -> tuple[int, Any]:
        """(type id, python type): the attribute's own type mostly, else any ZCL type."""
        server = self.meter.servers.get(cluster)
        d = server.defs.get(attr_id) if server is not None else None
        if d is not None and self.rng.random() < 0.65:
            type_id = int(d.zcl_type)
        else:
            type_id = self.rng.choice(DATA_TYPES) if self.rng.random() < 0.95 else \
                self.rng.randrange(256)
        try:
            python_type = foundation.DataType.from_type_id(type_id).python_type
        except (KeyError, ValueError):
            python_type = None
        return type_id, python_type

    def general_payload(self, cluster: int, command: int) -> bytes:
        rng, gen = self.rng, self.gen
        n = rng.choice((0, 1, 1, 2, 3, 5))
        if command == GC.Read_Attributes:
            return b"".join(t.uint16_t(self.real_attr(cluster)).serialize() for _ in range(n))
        if command in WRITES or command == GC.Report_Attributes:
            out = b""
            for _ in range(n):
                attr = self.real_attr(cluster)
                type_id, python_type = self.attr_type(cluster, attr)
                out += t.uint16_t(attr).serialize() + bytes([type_id])
                out += gen.value(python_type) if python_type is not None else gen.raw(0, 4)
            return out
        if command == GC.Configure_Reporting:
            out = b""
            for _ in range(n):
                direction = 0 if rng.random() < 0.9 else 1 if rng.random() < 0.8 else \
                    rng.randrange(2, 256)
                reportable = self.reportable.get(cluster)
                attr = rng.choice(reportable) if reportable and rng.random() < 0.5 else \
                    self.real_attr(cluster)
                out += bytes([direction]) + t.uint16_t(attr).serialize()
                if direction == 1:
                    out += gen.int_bytes(2)  # timeout period
                    continue
                type_id, python_type = self.attr_type(cluster, attr)
                out += bytes([type_id]) + gen.int_bytes(2) + gen.int_bytes(2)
                data_type = foundation.DataType.from_type_id(type_id) if \
                    type_id in DATA_TYPES else None
                if data_type is not None and data_type.type_class == foundation.DataClass.Analog:
                    out += gen.value(python_type)
            return out
        if command == GC.Read_Reporting_Configuration:
            return b"".join(bytes([rng.choice((0, 0, 1, rng.randrange(256)))])
                            + t.uint16_t(self.real_attr(cluster)).serialize() for _ in range(n))
        if command == GC.Default_Response:
            return bytes([rng.randrange(256), rng.choice((0, 0x80, 0x81, 0x85, rng.randrange(256)))])
        if command in foundation.GENERAL_COMMANDS:
            return gen.fields(foundation.GENERAL_COMMANDS[command].schema)
        return gen.raw(0, 16)

    def expected_status(self, f: Frame, intact: bytes) -> int | None:
        """The Default Response status ZCL r8 names for this frame, where that is certain."""
        servers = self.meter.servers
        if f.broadcast or not f.to_server or f.dst_ep not in (ENDPOINT, 0xFF) or \
                f.profile not in (SE_PROFILE, 0xFFFF):
            return None
        if f.general and f.command == GC.Default_Response:
            return None
        if f.cluster not in servers:
            return S.UNSUPPORTED_CLUSTER
        if f.manufacturer is not None:
            return S.UNSUP_MANUF_GENERAL_COMMAND if f.general else S.UNSUP_MANUF_CLUSTER_COMMAND
        if f.general:
            if f.command not in GENERAL_SERVED:
                return S.UNSUP_GENERAL_COMMAND
            if f.command == GC.Read_Attributes and len(f.payload) % 2:
                return S.MALFORMED_COMMAND
            if f.command in (GC.Configure_Reporting, GC.Read_Reporting_Configuration) \
                    and not f.payload:
                return S.MALFORMED_COMMAND  # a record list with no record
            schema = foundation.GENERAL_COMMANDS[f.command].schema
            size = fixed_size(schema)
            if size is not None and len(f.payload) < size:
                return S.MALFORMED_COMMAND
            return None
        server = servers[f.cluster]
        if f.command not in server.commands:
            return S.UNSUP_CLUSTER_COMMAND
        if f.cluster == 0x0705 and f.command in PREPAY_RESTRICTED and f.src != TC:
            return S.NOT_AUTHORIZED  # who, before what: the sender learns nothing of parsing
        cmd = server.cluster.server_commands.get(f.command)
        size = fixed_size(cmd.schema) if cmd is not None else None
        if size is not None and len(f.payload) < size:
            return S.MALFORMED_COMMAND
        return None

    # -- one frame ----------------------------------------------------------------------
    def step(self) -> tuple[Frame, list[str]]:
        self.n += 1
        meter = self.meter
        if self.rng.random() < 0.02:
            meter.clock.advance(self.rng.choice((60, 900, 3600, 86400)))
        else:
            meter.clock.advance(self.rng.random())
        f = self.frame()
        return f, self.check(f, f.data())

    def frame_of(self, cluster: int, src: int, broadcast: bool, data: bytes) -> Frame | None:
        """The :class:`Frame` raw bytes make (atheris feeds raw frames), or None when they
        have no ZCL header to answer."""
        try:
            hdr, payload = foundation.ZCLHeader.deserialize(data)
        except Exception:  # noqa: BLE001 - not a frame: nothing to build
            return None
        fc = hdr.frame_control
        if fc.frame_type not in (foundation.FrameType.GLOBAL_COMMAND,
                                 foundation.FrameType.CLUSTER_COMMAND):
            return None
        return Frame(cluster, src, ENDPOINT, SE_PROFILE, broadcast, bool(fc.is_general),
                     fc.direction == foundation.Direction.Client_to_Server,
                     int(hdr.command_id), None if hdr.manufacturer is None
                     else int(hdr.manufacturer), bool(fc.disable_default_response),
                     int(hdr.tsn), payload, "raw")

    def check_raw(self, cluster: int, src: int, broadcast: bool, data: bytes) -> list[str]:
        """The oracle for raw bytes (atheris): a frame without a ZCL header is dropped
        and changes nothing."""
        self.n += 1
        f = self.frame_of(cluster, src, broadcast, data)
        if f is not None:
            return self.check(f, data)
        meter = self.meter
        before = meter.fingerprint()
        probe = Frame(cluster, src, ENDPOINT, SE_PROFILE, broadcast, True, True, 0, None,
                      False, 0, b"", "raw")
        replies = serve(meter.ep, meter.packet(probe, data), meter.clock.now())
        problems = [] if not replies else [f"answered a frame without a ZCL header: {replies}"]
        if meter.fingerprint() != before:
            problems.append("a frame without a ZCL header changed the meter")
        return problems

    def check(self, f: Frame, data: bytes) -> list[str]:
        """Serve one frame and judge what the meter did."""
        meter = self.meter
        before = meter.fingerprint()
        errors_before = meter.ep.internal_errors
        replies = serve(meter.ep, meter.packet(f, data), meter.clock.now())
        problems: list[str] = []
        if meter.ep.internal_errors != errors_before:
            problems.append("internal error (catch-all)")
        ours = f.dst_ep in (ENDPOINT, 0xFF) and (f.profile in (SE_PROFILE, 0xFFFF) or is_ha(f))
        if replies is None:
            if ours:
                problems.append("a frame for the endpoint was not served")
            elif f.dst_ep == ENDPOINT:  # zigpy's generic code would answer for the meter
                problems.append("a frame to the endpoint left to zigpy")
            replies = []
        elif not ours and (replies or f.dst_ep != ENDPOINT):
            problems.append("served a frame not for the endpoint")
        statuses = []
        self.last_replies = len(replies)
        for reply in replies:
            got = self.judge_reply(f, reply, problems)
            if got is not None:
                statuses.append(got)
            if self.keep_sample and (got is None or self.rng.random() < 0.2):
                self.replies_seen.append((f, reply.data))  # mostly other than Default Responses
                self.keep_sample -= 1
        refused = any(s != S.SUCCESS for s in statuses)
        if f.expect is not None:
            if statuses != [f.expect] or len(replies) != 1:
                problems.append(f"expected exactly a Default Response {S(f.expect).name}, "
                                f"got {[S(s).name for s in statuses]} in {len(replies)} replies")
        after = meter.fingerprint()
        changed = {k for k in before if before[k] != after[k]}
        self.last_outcome = [f"status {S(x).name}" for x in statuses] + [
            f"changed {k.split(':')[0]}" for k in changed]
        allowed = set() if refused else meter.entitled(f)
        if changed - allowed:
            problems.append(f"unentitled change of {sorted(changed - allowed)}")
        if self.n % self.check_every == 0:
            self.periodic(problems)
        return problems

    def judge_reply(self, f: Frame, reply: Any, problems: list[str]) -> int | None:
        """Parse a reply as a HAN client would; returns its Default Response status."""
        try:
            hdr, rest = foundation.ZCLHeader.deserialize(reply.data)
        except Exception as exc:  # noqa: BLE001 - the oracle reports, never hides
            problems.append(f"unparsable reply header {reply.data.hex()}: {exc!r}")
            return None
        if reply.dst_nwk != f.src or reply.cluster_id != f.cluster:
            problems.append("reply to the wrong node or cluster")
        follow_up = not f.to_server and not hdr.frame_control.is_general and \
            hdr.direction == foundation.Direction.Client_to_Server
        if not follow_up and hdr.tsn != f.tsn:
            problems.append(f"reply TSN {hdr.tsn} for request TSN {f.tsn}")
        want_dir = (foundation.Direction.Server_to_Client if f.to_server
                    else foundation.Direction.Client_to_Server)
        if hdr.direction != want_dir:
            problems.append("reply in the request's direction")
        if hdr.frame_control.is_general:
            cmd = foundation.GENERAL_COMMANDS.get(hdr.command_id)
            if cmd is None:
                problems.append(f"reply with unknown general command {hdr.command_id}")
                return None
            try:
                args, extra = cmd.schema.deserialize(rest)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"unparsable {cmd.name} {reply.data.hex()}: {exc!r}")
                return None
            if extra:
                problems.append(f"{cmd.name} with {len(extra)} trailing bytes: {reply.data.hex()}")
            if hdr.command_id != GC.Default_Response:
                if f.broadcast and hdr.command_id != GC.Read_Attributes_rsp:
                    problems.append(f"{cmd.name} answered to a broadcast")
                return None
            status = int(args.status)
            if f.broadcast:
                problems.append("Default Response to a broadcast")
            if f.general and f.command == GC.Default_Response:
                problems.append("Default Response to a Default Response")
            if int(args.command_id) != f.command:
                problems.append("Default Response names another command")
            if status == S.SUCCESS and f.ddr:
                problems.append("SUCCESS Default Response though the request disabled it")
            if status == S.FAILURE:
                problems.append(f"FAILURE for {f.data().hex()} on 0x{f.cluster:04X}")
            return status
        table = CLIENT_TABLES.get(f.cluster)
        defs = None if table is None else (
            table.client_commands if hdr.direction == foundation.Direction.Server_to_Client
            else table.server_commands)
        cmd = defs.get(hdr.command_id) if defs else None
        if cmd is None:
            problems.append(f"reply with a command zigpy does not know: 0x{f.cluster:04X} "
                            f"0x{hdr.command_id:02X}")
            return None
        try:
            _args, extra = cmd.schema.deserialize(rest)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"unparsable {cmd.name} {reply.data.hex()}: {exc!r}")
            return None
        if extra:
            problems.append(f"{cmd.name} with {len(extra)} trailing bytes")
        return None

    def periodic(self, problems: list[str]) -> None:
        """The meter's periodic work, then a Read Attributes: still serving."""
        meter = self.meter
        now = meter.clock.now()
        for reply in meter.ep.reports(now):
            hdr, rest = foundation.ZCLHeader.deserialize(reply.data)
            table = CLIENT_TABLES[reply.cluster_id]
            try:
                if hdr.frame_control.is_general:
                    _a, extra = foundation.GENERAL_COMMANDS[hdr.command_id].schema.deserialize(rest)
                else:
                    _a, extra = table.client_commands[hdr.command_id].schema.deserialize(rest)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"unparsable report/push {reply.data.hex()}: {exc!r}")
                continue
            if extra:
                problems.append(f"report/push with trailing bytes {reply.data.hex()}")
        probe = Frame(0x0000, IHD, ENDPOINT, SE_PROFILE, False, True, True, GC.Read_Attributes,
                      None, False, 0x5A, b"\x00\x00", "intact")
        replies = serve(meter.ep, meter.packet(probe, probe.data()), now) or []
        ok = False
        for reply in replies:
            hdr, rest = foundation.ZCLHeader.deserialize(reply.data)
            if hdr.command_id == GC.Read_Attributes_rsp:
                (recs,), _ = t.deserialize(rest, (t.List[foundation.ReadAttributeRecord],))
                ok = recs[0].status == S.SUCCESS and recs[0].value.value == 8
        if not ok:
            problems.append("the meter no longer answers a Read Attributes of ZCLVersion")


def run(campaign: Any, observer: CatchAllObserver, *, stop_at_first: bool = True,
        sample_replies: int = 0) -> tuple[SeCampaign, list[str]]:
    """Run ``campaign.count`` frames; returns the engine and the problems found."""
    engine = SeCampaign(campaign.rng())
    engine.keep_sample = sample_replies
    found: list[str] = []
    for _ in range(campaign.count):
        f, problems = engine.step()
        campaign.frames += 1
        campaign.replies += engine.last_replies
        caught = observer.take()
        if caught:
            campaign.internal_exceptions += len(caught)
            problems += [f"catch-all: {CatchAllObserver.describe(r)}" for r in caught]
        if problems:
            if any("unparsable" in p or "trailing" in p or "does not know" in p
                   for p in problems):
                campaign.unparsable += 1
            if any("unentitled" in p for p in problems):
                campaign.unentitled += 1
            found.append(f"frame {engine.n} (cluster 0x{f.cluster:04X} {f.data().hex()} "
                         f"src 0x{f.src:04X} bcast {f.broadcast}): {problems}")
            if stop_at_first:
                break
        campaign.outcomes[f.damage] += 1
        for outcome in engine.last_outcome:
            campaign.outcomes[outcome] += 1
    return engine, found
