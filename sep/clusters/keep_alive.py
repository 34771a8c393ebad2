"""Keep-Alive (0x0025), sans-IO: the trust centre's server and a joined device's client.

:class:`KeepAliveServer` serves TC Keep-Alive Base (minutes) and Jitter (seconds).

:class:`KeepAliveClient` is the other side (SE 1.x 5.4.2.2.3.4 and the Keep-Alive
cluster): it finds the trust centre's Keep-Alive endpoint (:class:`Discover`: the shell
sends a ZDO Match_Desc to the trust centre and hands the answer to :meth:`found`), then
reads both attributes (:class:`Read`) every Base minutes plus a random 0..Jitter
seconds, taking Base and Jitter from each answer. A keep-alive fails when no valid
answer (both attributes, in range, from the trust centre, with the request's TSN) comes
within ``response_timeout`` seconds, or when the answer is not valid. After
:data:`~sep.zcl.keep_alive.FAILURE_LIMIT` failures in a row the client returns
:class:`TrustCentreLost` — once per outage: the device must search for the trust centre,
rejoin (secured) and establish its keys again, which the radio layer does (the
composition root passes the effect on). It keeps trying at the same pace; the first
valid answer after that returns :class:`TrustCentreBack`.

``poll(now)`` returns what to do now; ``handle(req, now)`` takes a frame of the Keep-Alive
cluster addressed to the client side (the endpoint's client handler).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any

import zigpy.types as t
from zigpy.zcl import foundation

from sep.clusters.base import ClusterServer
from sep.zcl.frames import MalformedFrame, Request, decode_schema
from sep.zcl.keep_alive import (
    BASE,
    BASE_MAX,
    BASE_MIN,
    DEFAULT_BASE,
    DEFAULT_JITTER,
    FAILURE_LIMIT,
    JITTER,
    JITTER_MAX,
    JITTER_MIN,
    KeepAlive,
)

LOGGER = logging.getLogger(__name__)
TRUST_CENTRE = 0x0000
GC = foundation.GeneralCommand


class KeepAliveServer(ClusterServer):
    cluster = KeepAlive

    def __init__(self, *, base_minutes: int = DEFAULT_BASE,
                 jitter_seconds: int = DEFAULT_JITTER) -> None:
        super().__init__()
        if not BASE_MIN <= base_minutes <= BASE_MAX or not JITTER_MIN <= jitter_seconds <= \
                JITTER_MAX:
            raise ValueError("Base is 1..255 minutes, Jitter 0..512 seconds")
        self.values[BASE] = base_minutes
        self.values[JITTER] = jitter_seconds
        self.answering = True  # tests and demos stop the trust centre answering

    def handle(self, req: Request, now: float) -> list[bytes]:
        return super().handle(req, now) if self.answering else []


@dataclasses.dataclass(frozen=True)
class Discover:
    """Send a ZDO Match_Desc for a Keep-Alive server to the trust centre."""

    nwk: int = TRUST_CENTRE


@dataclasses.dataclass(frozen=True)
class Read:
    """Send this Read Attributes frame to the trust centre's Keep-Alive endpoint."""

    nwk: int
    endpoint: int
    frame: bytes


@dataclasses.dataclass(frozen=True)
class TrustCentreLost:
    """The trust centre missed ``failures`` keep-alives in a row: search for it and
    rejoin (secured), then redo key establishment."""

    failures: int


@dataclasses.dataclass(frozen=True)
class TrustCentreBack:
    """The trust centre answers again."""


Action = Discover | Read | TrustCentreLost | TrustCentreBack


class KeepAliveClient:
    def __init__(self, *, trust_centre: int = TRUST_CENTRE, response_timeout: float = 30.0,
                 rng: random.Random | None = None, tsn_base: int = 0x40) -> None:
        self.trust_centre = trust_centre
        self.response_timeout = response_timeout
        self.rng = rng or random.Random()
        self.base = DEFAULT_BASE
        self.jitter = DEFAULT_JITTER
        self.endpoint: int | None = None
        self.failures = 0
        self.lost = False
        self.sent = 0  # keep-alives (and discoveries) sent
        self.answered = 0  # valid answers
        self.next_at: float | None = None  # None: now
        self._waiting: str | int | None = None  # "discover", or the TSN of a read
        self._since = 0.0
        self._tsn = tsn_base
        self._tsn_base = tsn_base
        self._effects: list[Action] = []

    @property
    def interval(self) -> float:
        """Base, and a random part of Jitter, in seconds."""
        return self.base * 60 + self.rng.randint(0, self.jitter)

    def poll(self, now: float) -> list[Action]:
        out, self._effects = self._effects, []
        if self._waiting is not None and now - self._since >= self.response_timeout:
            self._waiting = None
            out += self._failed(now, "no answer")
        if self._waiting is None and (self.next_at is None or now >= self.next_at):
            self._since = now
            self.sent += 1
            if self.endpoint is None:
                self._waiting = "discover"
                out.append(Discover(self.trust_centre))
            else:
                self._tsn = self._tsn_base | ((self._tsn + 1) & 0x3F)
                self._waiting = self._tsn
                hdr = foundation.ZCLHeader.general(self._tsn, GC.Read_Attributes)
                payload = t.uint16_t(BASE).serialize() + t.uint16_t(JITTER).serialize()
                out.append(Read(self.trust_centre, self.endpoint, hdr.serialize() + payload))
        return out

    def _failed(self, now: float, why: str) -> list[Action]:
        self.failures += 1
        self.next_at = now + self.interval
        LOGGER.warning("trust centre keep-alive failed (%s): %d in a row", why, self.failures)
        if self.failures >= FAILURE_LIMIT and not self.lost:
            self.lost = True
            LOGGER.error("trust centre lost after %d keep-alives: search and rejoin, redo KE",
                         self.failures)
            return [TrustCentreLost(self.failures)]
        return []

    def found(self, nwk: int, endpoints: list[int], now: float) -> None:
        """The trust centre's Match_Desc_rsp: its Keep-Alive endpoint."""
        if nwk != self.trust_centre or not endpoints or self._waiting != "discover":
            return
        self.endpoint = int(endpoints[0])
        self._waiting = None
        self.next_at = now  # read at once

    def handle(self, req: Request, now: float) -> list[bytes]:
        """A server-to-client frame on the Keep-Alive cluster."""
        if (req.src_nwk != self.trust_centre or not req.is_general
                or req.command_id != GC.Read_Attributes_rsp or req.tsn != self._waiting):
            return []
        self._waiting = None
        values = self._values(req.payload)
        if values is None:
            self._effects += self._failed(now, "invalid answer")
            return []
        self.base, self.jitter = values
        self.answered += 1
        self.failures = 0
        self.next_at = now + self.interval
        if self.lost:
            self.lost = False
            LOGGER.info("trust centre answers again")
            self._effects.append(TrustCentreBack())
        return []

    @staticmethod
    def _values(payload: bytes) -> tuple[int, int] | None:
        try:
            records = decode_schema(t.List[foundation.ReadAttributeRecord], payload)
        except MalformedFrame:
            return None
        got: dict[int, Any] = {}
        for r in records:
            if r.status != foundation.Status.SUCCESS or r.value is None:
                return None
            got[int(r.attrid)] = r.value
        base, jitter = got.get(BASE), got.get(JITTER)
        if base is None or jitter is None:
            return None
        if int(base.type) != foundation.DataTypeId.uint8 or \
                int(jitter.type) != foundation.DataTypeId.uint16:
            return None
        b, j = int(base.value), int(jitter.value)
        if not BASE_MIN <= b <= BASE_MAX or not JITTER_MIN <= j <= JITTER_MAX:
            return None
        return b, j
