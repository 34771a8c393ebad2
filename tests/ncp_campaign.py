"""The NCP emulator campaign: ASH frames carrying EZSP frames, as a host writes them to a
stick's UART, into the emulator — judged by bellows' own parsers.

The generator plays a host that mostly follows the protocol and often does not: DATA
frames numbered in sequence (or not, or marked as retransmissions), acknowledging what the
NCP sent, carrying EZSP frames built from bellows' v13 command table (``version`` first,
then every command id, the implemented ones most often, parameters from the command's own
schema with the emulator's values now and then) — and RST, ACK, NAK, ERROR-looking frames,
frames with a bad CRC, cut, merged, with Cancel/Substitute/XON/XOFF bytes in them, and
plain noise. :class:`AshEzspCampaign` drives the sans-IO layers (``AshDevice`` +
``EzspNcp`` over a recording radio: what atheris drives); :class:`EmulatorCampaign` drives
the whole emulator (its byte pump ``NcpEmulator._on_bytes``, the NCP node on a virtual
air), the path a host's bytes take.

The oracle, per write:

- nothing raises, no catch-all fires (the emulator's ``errors`` counter, any log record
  with an exception — e.g. the EZSP dispatcher's "NCP: <command> failed");
- every byte the NCP writes back is ASH bellows can read (``bellows.ash.parse_frame`` after
  unstuffing, CRC included), and the EZSP frame in every DATA frame parses with bellows'
  v13 response schema for its frame id, to the last byte;
- every EZSP command delivered in sequence gets exactly one response carrying its
  sequence number (``invalidCommand`` for what the NCP refuses), unless the NCP has
  entered ASH's FAILED state;
- a frame the NCP refuses (``invalidCommand``) and a frame ASH rejects (bad CRC, out of
  sequence) change none of the NCP's state, RAM or non-volatile.
"""

from __future__ import annotations

import random
from typing import Any

import bellows.types as bt
from bellows.ash import (
    AckFrame,
    DataFrame,
    ErrorFrame,
    NakFrame,
    RStackFrame,
    RstFrame,
    parse_frame,
)
from fuzzgen import Gen

from radios.ncp.ash import (
    CANCEL,
    FLAG,
    SUBSTITUTE,
    XOFF,
    XON,
    AshDevice,
    HostReset,
    Received,
    stuff,
    unstuff,
)
from radios.ncp.ezsp import BY_ID, COMMANDS, INVALID_COMMAND_ID, EzspNcp
from radios.ncp.state import NcpState

IMPLEMENTED = sorted(n for n in COMMANDS if hasattr(EzspNcp, f"cmd_{n}"))
ALL = sorted(COMMANDS)
VERSION = 13


class RecordingRadio:
    """The node below EZSP, reduced to a recorder (the sans-IO campaign needs no air)."""

    nwk = 0x0000
    joining = False

    def __init__(self) -> None:
        self.up = False
        self.sent = 0

    def network_up(self) -> None:
        self.up = True

    def join(self, done: Any) -> None:
        done(False, "no network heard")  # no air here: nobody answers the association

    def resume(self, done: Any) -> None:
        self.up = True
        done(True, "resumed")

    def scan(self, channels: list[int], found: Any, done: Any) -> None:
        done()  # an empty air

    def leave(self) -> None:
        self.up = False

    def network_down(self) -> None:
        self.up = False

    def send_unicast(self, nwk: int, aps: Any, tag: int, payload: bytes) -> int:
        self.sent += 1
        return self.sent & 0xFF

    def send_broadcast(self, dst: int, aps: Any, radius: int, tag: int, payload: bytes) -> int:
        self.sent += 1
        return self.sent & 0xFF

    def permit_joining(self, seconds: int) -> None:
        pass

    def lookup_eui64(self, nwk: int) -> Any:
        return None

    def lookup_node_id(self, eui64: Any) -> Any:
        return None


def ncp_fingerprint(ncp: EzspNcp) -> tuple[Any, ...]:
    """Everything a command could change: NV state, RAM tables, the network."""
    return (repr(sorted(ncp.state.to_json().items())), repr(sorted(ncp.config.items())),
            repr(sorted(ncp.values.items())), repr(sorted(ncp.policies.items())),
            repr(sorted(ncp.endpoints.items())), repr(sorted(ncp.multicast.items())),
            repr(sorted(ncp.transient_keys.items())), ncp.network_up, ncp.version_set,
            ncp.manufacturer_code, ncp.radio_power, ncp.permit_until)


class Host:
    """The host end: builds what it writes, reads what the NCP writes back."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.gen = Gen(rng, hints=self.hint)
        self.tx_seq = 0  # frmNum of our next DATA frame
        self.ncp_next = 0  # frmNum we expect from the NCP next (our ackNum)
        self.ezsp_seq = 0
        self.version_agreed = False
        self.rx = bytearray()
        #: EZSP seq -> (write number, command name, frame): delivered, not yet answered
        self.pending: dict[int, tuple[int, str, bytes]] = {}
        self.node_ids: list[int] = [0x0000]
        self.dirty = False  # the last write left a frame without its Flag on the line
        self.writes = 0
        self.unacked = 0  # NCP DATA frames read and not yet acknowledged

    def ack(self) -> bytes | None:
        """What a host writes after reading DATA frames (bellows ACKs each at once); now
        and then it does not, and the NCP's retransmission timer has to act."""
        if not self.unacked or self.rng.random() < 0.1:
            return None
        self.unacked = 0
        return ash_encode_raw(AckFrame(res=0, ncp_ready=0, ack_num=self.ncp_next).to_bytes())

    # -- EZSP frames ---------------------------------------------------------------------
    def hint(self, name: str, typ: Any) -> bytes | None:
        rng = self.rng
        if name in ("valueId", "configId", "policyId") and isinstance(typ, type) and \
                issubclass(typ, bt.enum8):
            members = list(typ.__members__.values())
            return bytes([int(rng.choice(members))])
        if name in ("destination", "indexOrDestination", "nodeId", "target") and \
                isinstance(typ, type) and issubclass(typ, bt.uint16_t):
            return int(rng.choice(self.node_ids + [0xFFFD, 0xFFFC])).to_bytes(2, "little")
        return None

    def ezsp(self) -> tuple[bytes, str]:
        """One EZSP frame from the host and the command's name."""
        rng, gen = self.rng, self.gen
        self.ezsp_seq = (self.ezsp_seq + 1) & 0xFF
        seq = self.ezsp_seq
        if not self.version_agreed and rng.random() < 0.8 or rng.random() < 0.02:
            want = VERSION if rng.random() < 0.9 else rng.choice((4, 8, 12, 14, 0xFF))
            return bytes([seq, 0x00, 0x00, want]), "version"
        r = rng.random()
        name = rng.choice(IMPLEMENTED) if r < 0.7 else rng.choice(ALL)
        frame_id, schema, _rsp = COMMANDS[name]
        if rng.random() < 0.03:
            frame_id = rng.randrange(0x10000)
            name = BY_ID.get(frame_id, ("unknown",))[0]
        control_lo = 0x00 if rng.random() < 0.95 else rng.randrange(256)
        control_hi = 0x01 if rng.random() < 0.95 else rng.randrange(256)
        params = gen.fields(schema)
        if rng.random() < 0.02:
            params += gen.raw(200, 240)  # past the NCP's buffer (ASH carries up to 256)
        params = params[:250]
        if rng.random() < 0.02:  # the legacy frame layout after version 8+
            return bytes([seq, control_lo, 0xFF, 0x00, frame_id & 0xFF]) + params, name
        return bytes([seq, control_lo, control_hi]) + frame_id.to_bytes(2, "little") + params, name

    # -- ASH frames ----------------------------------------------------------------------
    def write(self) -> tuple[bytes, dict[str, Any]]:
        """The bytes of one write to the UART and what the generator meant by them."""
        rng, gen = self.rng, self.gen
        self.writes += 1
        clear, self.dirty = self.dirty, False
        meta: dict[str, Any] = {"kind": "data", "damage": "intact", "ezsp": None,
                                "in_sequence": False}
        r = rng.random()
        if r < 0.01:
            meta["kind"] = "rst"
            raw = RstFrame().to_bytes()
        elif r < 0.06:
            meta["kind"] = "ack"
            frame = AckFrame(res=0, ncp_ready=0, ack_num=self.ncp_next if rng.random() < 0.8
                             else rng.randrange(8))
            raw = frame.to_bytes()
        elif r < 0.08:
            meta["kind"] = "nak"
            raw = NakFrame(res=0, ncp_ready=0, ack_num=rng.randrange(8)).to_bytes()
        elif r < 0.09:
            meta["kind"] = "rstack"  # an NCP-to-host frame sent the wrong way
            raw = RStackFrame(version=2, reset_code=bt.NcpResetCode.RESET_SOFTWARE).to_bytes()
        elif r < 0.12:
            meta["kind"] = "noise"
            self.dirty = True
            return gen.raw(1, 40), meta
        else:
            ezsp, name = self.ezsp()
            in_sequence = rng.random() < 0.92
            frm = self.tx_seq if in_sequence else rng.randrange(8)
            in_sequence = frm == self.tx_seq
            re_tx = rng.random() < 0.04
            ack = self.ncp_next if rng.random() < 0.9 else rng.randrange(8)
            raw = DataFrame(frm_num=frm, re_tx=re_tx, ack_num=ack, ezsp_frame=ezsp).to_bytes()
            meta.update(ezsp=ezsp, name=name, in_sequence=in_sequence, frm=frm)
        wire = ash_encode_raw(raw)
        r = rng.random()
        if r < 0.08:  # a damaged frame: one bit, a cut, a stray control byte
            body = bytearray(wire[:-1])
            kind = rng.choice(("flip", "cut", "cancel", "substitute", "xonxoff", "no flag"))
            if kind == "flip" and body:
                i = rng.randrange(len(body))
                first = rng.randrange(8)
                for bit in range(first, first + 8):  # one bit, not turning it into a control byte
                    flipped = body[i] ^ (1 << (bit % 8))
                    if flipped not in (FLAG, 0x7D, XON, XOFF, SUBSTITUTE, CANCEL):
                        break
                body[i] = flipped
                wire = bytes(body) + bytes([FLAG])
            elif kind == "cut":
                wire = bytes(body[: rng.randrange(len(body))]) + bytes([FLAG])
            elif kind == "cancel":  # half a frame, Cancel, then the whole frame: it arrives
                wire = bytes(body[: rng.randrange(len(body) + 1)]) + bytes([CANCEL]) + wire
                kind = "intact"
            elif kind == "substitute":
                wire = bytes([SUBSTITUTE]) + wire  # the frame after it is thrown away
            elif kind == "xonxoff":  # flow control bytes are not data: frame intact
                i = rng.randrange(len(body) + 1)
                wire = bytes(body[:i]) + bytes([rng.choice((XON, XOFF))]) + bytes(body[i:]) \
                    + bytes([FLAG])
                kind = "intact"
            else:
                wire = bytes(body)  # no Flag: runs into the next frame
                self.dirty = True
            meta["damage"] = kind
            if kind in ("flip", "cut"):
                self.collision(wire, meta)
        if clear:  # what came before ended without a Flag: clear the line first
            wire = bytes([CANCEL]) + wire
        if meta["damage"] == "intact" and meta["kind"] == "data" and meta["in_sequence"]:
            self.tx_seq = (self.tx_seq + 1) % 8
            meta["delivered"] = True
            self.pending[meta["ezsp"][0]] = (self.writes, meta["name"], meta["ezsp"])
        elif meta["kind"] == "rst" and meta["damage"] == "intact":
            self.reset()
        return wire, meta

    def collision(self, wire: bytes, meta: dict[str, Any]) -> None:
        """A cut or a flipped bit can, once in 65536, leave a frame whose CRC still holds:
        it is then another valid frame (bellows' parser says so), not damage."""
        try:
            frame = parse_frame(unstuff(wire[:-1]))
        except Exception:  # noqa: BLE001 - damaged, as meant
            return
        meta["damage"] = "intact"
        meta["collision"] = True
        if isinstance(frame, DataFrame):
            meta.update(kind="data", ezsp=frame.ezsp_frame, name="(CRC collision)",
                         in_sequence=frame.frm_num == self.tx_seq, frm=frame.frm_num)
        else:
            kinds = {RstFrame: "rst", AckFrame: "ack", NakFrame: "nak", RStackFrame: "rstack",
                     ErrorFrame: "error"}
            meta.update(kind=kinds.get(type(frame), "other"), ezsp=None, in_sequence=False)

    def reset(self) -> None:
        self.tx_seq = 0
        self.ncp_next = 0
        self.version_agreed = False
        self.pending.clear()

    # -- what the NCP wrote --------------------------------------------------------------
    def read(self, data: bytes, problems: list[str]) -> list[tuple[int, int, bytes]]:
        """Parse the NCP's bytes; returns (seq, frame id, params) of the EZSP frames."""
        out = []
        self.rx += data
        while FLAG in self.rx:
            i = self.rx.index(FLAG)
            stuffed, self.rx = bytes(self.rx[:i]), self.rx[i + 1:]
            if not stuffed:
                continue
            try:
                frame = parse_frame(unstuff(stuffed))
            except Exception as exc:  # noqa: BLE001 - the oracle reports, never hides
                problems.append(f"NCP wrote an unreadable ASH frame {stuffed.hex()}: {exc!r}")
                continue
            if isinstance(frame, RStackFrame | ErrorFrame):
                self.reset()  # the NCP restarted (or gave up): nothing pending is answered
            elif isinstance(frame, DataFrame):
                if frame.frm_num == self.ncp_next:
                    self.ncp_next = (self.ncp_next + 1) % 8
                    self.unacked += 1
                    out.append(self.ezsp_reply(frame.ezsp_frame, problems))
        return [x for x in out if x is not None]

    def ezsp_reply(self, data: bytes, problems: list[str]) -> tuple[int, int, bytes] | None:
        reply = self._ezsp_reply(data, problems)
        if reply is not None and not (len(data) > 1 and data[1] & 0x10):  # not a callback
            self.pending.pop(reply[0], None)
        return reply

    def overdue(self, writes: int = 40) -> list[str]:
        """Commands delivered ``writes`` writes ago and still not answered."""
        late = [(seq, v) for seq, v in self.pending.items() if self.writes - v[0] > writes]
        for seq, _v in late:
            del self.pending[seq]
        return [f"no EZSP response to {name} {frame.hex()}" for _s, (_w, name, frame) in late]

    def _ezsp_reply(self, data: bytes, problems: list[str]) -> tuple[int, int, bytes] | None:
        if len(data) >= 3 and data[2] == 0x00:  # legacy: version (or its invalidCommand)
            seq, frame_id, params = data[0], data[2], data[3:]
            if len(params) != 4 and not (len(params) == 1 and frame_id == INVALID_COMMAND_ID):
                problems.append(f"version response {data.hex()}")
            elif len(params) == 4 and params[0] == VERSION:
                self.version_agreed = True
            return seq, frame_id, params
        if len(data) < 5 or data[2] != 0x01:
            if len(data) >= 4 and data[2] == INVALID_COMMAND_ID:
                return data[0], INVALID_COMMAND_ID, data[3:]  # legacy invalidCommand
            problems.append(f"NCP wrote an unreadable EZSP frame {data.hex()}")
            return None
        seq, frame_id, params = data[0], int.from_bytes(data[3:5], "little"), data[5:]
        if not data[1] & 0x80:
            problems.append(f"NCP frame without the response bit {data.hex()}")
        entry = BY_ID.get(frame_id)
        if entry is None:
            problems.append(f"NCP answered with an unknown frame id {data.hex()}")
            return None
        name, _req, rsp = entry
        try:
            if isinstance(rsp, dict):
                _values, rest = bt.deserialize_dict(params, rsp)
            else:
                _value, rest = rsp.deserialize(params)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"unparsable {name} response {data.hex()}: {exc!r}")
            return None
        if rest:
            problems.append(f"{name} response with {len(rest)} trailing bytes")
        return seq, frame_id, params


def ash_encode_raw(raw: bytes) -> bytes:
    """A frame's bytes (CRC included) stuffed and flagged, as the wire has them."""
    return stuff(raw) + bytes([FLAG])


class AshEzspCampaign:
    """The sans-IO layers: ASH device end + EZSP dispatcher, over a recording radio."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.host = Host(rng)
        self.radio = RecordingRadio()
        self.ash = AshDevice()
        self.ncp = EzspNcp(NcpState(eui64="00:0d:6f:00:00:00:a5:01"), self.radio)
        self.now = 0.0
        self.ash.power_on()
        self.host.read(self.ash.output(), [])
        self.last_outcome = ""

    def feed(self, wire: bytes, problems: list[str]) -> list[str]:
        """Bytes into ASH, EZSP frames into the dispatcher; returns the commands handled."""
        handled = []
        for event in self.ash.receive(wire, self.now):
            if isinstance(event, HostReset):
                self.ncp.reset()
                self.ncp.take()
            elif isinstance(event, Received):
                before = ncp_fingerprint(self.ncp)
                invalid = self.ncp.counters.invalid
                self.ncp.handle(event.frame)
                if self.ncp.counters.invalid != invalid and ncp_fingerprint(self.ncp) != before:
                    problems.append(f"refused EZSP frame changed the NCP: {event.frame.hex()}")
                handled.append(event.frame)
                for frame in self.ncp.take():
                    self.ash.send(frame, self.now)
        return handled

    def step(self) -> tuple[dict[str, Any], list[str]]:
        problems: list[str] = []
        self.now += self.rng.random() * 0.2
        wire, meta = self.host.write()
        commands_before = self.ncp.counters.commands
        failed = self.ash.failed
        handled = self.feed(wire, problems)
        self.ash.poll(self.now)
        replies = self.host.read(self.ash.output(), problems)
        for _ in range(64):  # the host acknowledges what it read; the NCP sends the next
            ack = self.host.ack()
            if ack is None:
                break
            self.feed(ack, problems)
            replies += self.host.read(self.ash.output(), problems)
        del replies
        if self.ash.failed:
            self.host.pending.clear()  # FAILED: the NCP answers nothing until RST
        if meta.get("delivered") and not failed and not self.ash.failed:
            if handled != [meta["ezsp"]]:
                problems.append(f"an intact in-sequence DATA frame was not delivered once "
                                f"({len(handled)} EZSP frames handled)")
        problems += self.host.overdue()
        if meta["damage"] not in ("intact",) and meta["kind"] == "data" and \
                self.ncp.counters.commands != commands_before and meta["damage"] != "no flag":
            problems.append(f"a damaged frame ({meta['damage']}) reached EZSP")
        self.last_outcome = meta["kind"] + ("" if meta["damage"] == "intact"
                                            else f" {meta['damage']}")
        return meta, problems


class EmulatorCampaign:
    """The whole emulator, as bellows meets it: a TCP connection to ``NcpEmulator`` (its
    byte pump, the ASH/EZSP layers, the coordinator node on a virtual air)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.host = Host(rng)
        self.emu: Any = None
        self.reader: Any = None
        self.writer: Any = None
        self.last_outcome = ""

    async def start(self) -> None:
        from radios.air import VirtualAir
        from radios.ncp.server import NcpEmulator

        self.emu = await NcpEmulator(VirtualAir(), ieee="00:0d:6f:00:00:00:a5:02").start()
        self.reader, self.writer = await __import__("asyncio").open_connection(
            self.emu.host, self.emu.port)
        self.writer.write(bytes([CANCEL]) + RstFrame().to_bytes() + bytes([FLAG]))
        await self.settle([])

    async def stop(self) -> None:
        self.writer.close()
        await self.emu.stop()

    async def settle(self, problems: list[str]) -> None:
        """Let the emulator answer; read until the line is quiet."""
        import asyncio

        quiet = 0
        while quiet < 2:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), 0.001)
            except TimeoutError:
                quiet += 1
                continue
            if not data:
                problems.append("the emulator hung up")
                return
            quiet = 0
            self.host.read(data, problems)

    async def step(self) -> tuple[dict[str, Any], list[str]]:
        problems: list[str] = []
        wire, meta = self.host.write()
        errors = self.emu.errors
        self.writer.write(wire)
        await self.writer.drain()
        await self.settle(problems)
        for _ in range(64):  # the host acknowledges what it read; the NCP sends the next
            ack = self.host.ack()
            if ack is None:
                break
            self.writer.write(ack)
            await self.settle(problems)
        if self.emu.errors != errors:
            problems.append("the emulator's byte pump caught an exception")
        if self.emu.ash.failed:
            self.host.pending.clear()
        problems += self.host.overdue(60)
        self.last_outcome = meta["kind"] + ("" if meta["damage"] == "intact"
                                            else f" {meta['damage']}")
        return meta, problems
