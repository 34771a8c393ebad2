"""What every robustness campaign shares: its seed and count, the observer that makes
catch-alls visible, and structure-aware bytes for any zigpy or bellows type.

A campaign is a seeded loop (``random.Random(seed)``) over frames a generator builds with
the structure of the surface (valid headers, real ids, random bodies) and then mutates
(cut, extend, flip). Its figures are printed, so a run can be quoted and repeated:

    campaign se-endpoint: seed 1 count 1000000 ... internal exceptions 0, unparsable 0

``SEP_CAMPAIGN_SEED`` and ``SEP_CAMPAIGN_COUNT`` override every campaign's seed and count
(e.g. to repeat a failure, or to run a longer one).

A catch-all (``except Exception`` that logs and carries on) hides a bug from everyone but
the log: :class:`CatchAllObserver` records every log record that carries an exception
(``LOGGER.exception`` or ``exc_info=True``) and every record at ERROR or above, so a
campaign can fail on the first one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections import Counter
from typing import Any

import zigpy.types as t
from zigpy.types import basic as zb
from zigpy.types import struct as zs


# -- a campaign's identity and figures ------------------------------------------------------
@dataclasses.dataclass
class Campaign:
    name: str
    seed: int
    count: int
    started: float = dataclasses.field(default_factory=time.monotonic)
    frames: int = 0
    replies: int = 0
    internal_exceptions: int = 0
    unparsable: int = 0
    unentitled: int = 0
    outcomes: Counter = dataclasses.field(default_factory=Counter)

    @classmethod
    def make(cls, name: str, seed: int, count: int) -> Campaign:
        seed = int(os.environ.get("SEP_CAMPAIGN_SEED", seed))
        count = int(os.environ.get("SEP_CAMPAIGN_COUNT", count))
        camp = cls(name, seed, count)
        print(f"\ncampaign {name}: seed {seed} count {count}", flush=True)
        return camp

    def rng(self) -> random.Random:
        return random.Random(self.seed)

    def report(self) -> str:
        took = time.monotonic() - self.started
        top = ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common(40))
        line = (f"campaign {self.name}: seed {self.seed} count {self.count}: {self.frames} "
                f"frames in {took:.0f} s, {self.replies} replies; internal exceptions "
                f"{self.internal_exceptions}, unparsable replies {self.unparsable}, "
                f"unentitled state changes {self.unentitled}" + (f" [{top}]" if top else ""))
        print(line, flush=True)
        return line


class CatchAllObserver(logging.Handler):
    """Every log record carrying an exception, or at ERROR or above, from any logger."""

    def __init__(self, *, allow: tuple[str, ...] = ()) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.allow = allow  # message prefixes that are a documented refusal, not a bug

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is None and record.levelno < logging.ERROR:
            return
        if any(record.getMessage().startswith(a) for a in self.allow):
            return
        self.records.append(record)

    def __enter__(self) -> CatchAllObserver:
        root = logging.getLogger()
        self._saved = root.level
        root.addHandler(self)
        # DEBUG records with exc_info (ASH's bad-frame path logs at DEBUG) must reach us
        # without every library formatting its debug chatter: we only look at records
        # with an exception or ERROR, so lower the root level but filter early.
        root.setLevel(logging.DEBUG)
        for name in ("zigpy", "bellows", "asyncio", "aiomqtt", "hypothesis"):
            logging.getLogger(name).setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._saved)

    def take(self) -> list[logging.LogRecord]:
        out, self.records = self.records, []
        return out

    @staticmethod
    def describe(record: logging.LogRecord) -> str:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" ({type(exc).__name__}: {exc})"
        return text


# -- structure-aware bytes --------------------------------------------------------------------
def _int_size(typ: type) -> tuple[int, bool]:
    return typ._size, bool(getattr(typ, "_signed", False))


class Gen:
    """Random encodings of values of zigpy/bellows types, biased to the edges.

    ``value(typ)`` returns bytes that a correct encoder could have produced for some
    value of ``typ`` (most of the time) — lengths consistent, enum values defined — or,
    now and then, the near misses a parser must survive (an undefined enum value, a length
    prefix that runs past the end, an invalid string marker)."""

    def __init__(self, rng: random.Random, hints: Any = None) -> None:
        self.rng = rng
        #: ``hints(field_name, type)``: plausible bytes for a field of that name (an id the
        #: target knows, a time near its now), or None; used for most such fields, so
        #: frames get past the checks that random values never pass
        self.hints = hints

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def uint(self, size: int, signed: bool = False) -> int:
        r = self.rng.random()
        top = (1 << (8 * size)) - 1
        if signed:
            half = 1 << (8 * size - 1)
            if r < 0.25:
                return self.rng.choice((0, 1, -1, half - 1, -half, half - 2, -half + 1))
            return self.rng.randrange(-half, half)
        if r < 0.25:
            return self.rng.choice((0, 1, 2, top, top - 1, top >> 1, (top >> 1) + 1))
        if r < 0.5:
            return self.rng.randrange(0, min(top, 0xFF) + 1)
        return self.rng.randrange(0, top + 1)

    def int_bytes(self, size: int, signed: bool = False) -> bytes:
        return self.uint(size, signed).to_bytes(size, "little", signed=signed)

    def raw(self, lo: int = 0, hi: int = 12) -> bytes:
        return self.rng.randbytes(self.rng.randint(lo, hi))

    def text(self, lo: int = 0, hi: int = 24) -> bytes:
        n = self.rng.randint(lo, hi)
        r = self.rng.random()
        if r < 0.5:
            return bytes(self.rng.choice(b"abcdefXYZ 0123456789-_.") for _ in range(n))
        if r < 0.75:
            return ("é£€" * n).encode()[:n]  # multi-byte UTF-8, maybe cut inside a character
        return self.rng.randbytes(n)

    def length_prefixed(self, body: bytes, prefix: int) -> bytes:
        n = len(body)
        r = self.rng.random()
        if r < 0.05:
            n = (1 << (8 * prefix)) - 1  # the "invalid" marker
        elif r < 0.10:
            n = n + self.rng.randint(1, 4)  # runs past the end
        return n.to_bytes(prefix, "little") + body

    def value(self, typ: Any, depth: int = 0) -> bytes:
        rng = self.rng
        if depth > 4:
            return self.raw(0, 4)
        if isinstance(typ, type):
            if issubclass(typ, zb.FixedIntType):
                size, signed = _int_size(typ)
                if issubclass(typ, zb._EnumMixin) and not self.chance(0.1):
                    members = [int(m) for m in typ.__members__.values()]
                    if members:
                        value = rng.choice(members)
                        return value.to_bytes(size, "little", signed=signed)
                return self.int_bytes(size, signed)
            if issubclass(typ, zb.BaseFloat):
                return self.int_bytes((1 + typ._exponent_bits + typ._fraction_bits) // 8)
            if issubclass(typ, (zb.CharacterString, zb.LongCharacterString)):
                return self.length_prefixed(self.text(), typ._prefix_length)
            if issubclass(typ, zb.LVBytes):
                return self.length_prefixed(self.raw(0, 24), typ._prefix_length)
            if issubclass(typ, zb.FixedList):
                return b"".join(self.value(typ._item_type, depth + 1) for _ in range(typ._length))
            if issubclass(typ, zb.LVList):
                n = rng.choice((0, 1, 1, 2, 3, 5))
                items = b"".join(self.value(typ._item_type, depth + 1) for _ in range(n))
                size = typ._length_type._size
                if self.chance(0.05):
                    n += rng.randint(1, 3)
                return (n & ((1 << (8 * size)) - 1)).to_bytes(size, "little") + items
            if issubclass(typ, zb.List):
                n = rng.choice((0, 1, 1, 2, 3, 5))
                return b"".join(self.value(typ._item_type, depth + 1) for _ in range(n))
            if issubclass(typ, zs.Struct):
                return self.struct(typ, depth)
            if issubclass(typ, bytes):
                return self.raw()
        return self.raw(0, 8)

    def struct(self, typ: Any, depth: int = 0) -> bytes:
        out = b""
        bits = 0  # bit fields (sizes not a whole byte) packed together, as zigpy does
        for fld in typ.fields:
            if fld.optional and self.chance(0.3):
                break  # optional fields come last: leave out this one and the rest
            if fld.requires is not None and self.chance(0.5):
                continue
            kind = fld.type
            if isinstance(kind, type) and issubclass(kind, zb.FixedIntType) and \
                    kind._size is None:
                bits += kind._bits
                continue
            if bits:
                out += self.rng.getrandbits(bits).to_bytes((bits + 7) // 8, "little")
                bits = 0
            if kind is not None:
                hinted = None
                if self.hints is not None and self.chance(0.7):
                    hinted = self.hints(fld.name, kind)
                out += hinted if hinted is not None else self.value(kind, depth + 1)
        if bits:
            out += self.rng.getrandbits(bits).to_bytes((bits + 7) // 8, "little")
        return out

    def fields(self, schema: Any) -> bytes:
        """A command payload for a zigpy command schema (a Struct) or a bellows dict."""
        if isinstance(schema, dict):
            return b"".join(self.value(typ) for typ in schema.values())
        if isinstance(schema, type) and issubclass(schema, zs.Struct):
            return self.struct(schema)
        if isinstance(schema, (tuple, list)):
            return b"".join(self.value(typ) for typ in schema)
        return self.raw()

    def mutate(self, data: bytes, p: float = 0.35) -> tuple[bytes, str]:
        """Leave ``data`` as it is (most of the time) or damage it: cut, extend, flip,
        insert or drop a byte. Returns the bytes and the name of what was done."""
        rng = self.rng
        if not self.chance(p):
            return data, "intact"
        kind = rng.choice(("cut", "cut", "extend", "flip", "insert", "drop"))
        if kind == "cut":
            return data[: rng.randrange(0, len(data) + 1)], kind
        if kind == "extend":
            return data + self.raw(1, 8), kind
        if not data:
            return self.raw(1, 4), kind
        i = rng.randrange(len(data))
        if kind == "flip":
            return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:], kind
        if kind == "insert":
            return data[:i] + bytes([rng.randrange(256)]) + data[i:], kind
        return data[:i] + data[i + 1:], kind


def eui64(rng: random.Random) -> t.EUI64:
    return t.EUI64(rng.randbytes(8))
