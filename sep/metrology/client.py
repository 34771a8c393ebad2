"""The application side's only view of the metrology process: read-only.

:class:`MetrologyClient` implements :class:`~sep.metrology.api.MetrologyReader` over the
protocol of :mod:`sep.metrology.protocol`. It has no method that writes, because the protocol
has none.

Link behaviour (the choice made): every request opens the socket if needed; when a request
fails on an open connection (the process restarted, or was killed) the client reconnects
once and retries at once. When metrology cannot be reached, :meth:`MetrologyClient.read`
returns the **last reading it received**, unchanged but for ``LINK_DOWN`` added to its
status — never invented values; if it never received one, it raises
:class:`MetrologyUnavailable` (there is nothing true to return). The next read after
metrology is back is a normal reading.

When metrology withholds energy (``CALIBRATION_FAULT``/``REGISTER_FAULT``: the reply has no
energy fields) the returned Reading carries metrology's timestamp and status, ``demand_w`` 0,
and the last energy values metrology did send (0 if it never sent any) — nothing new is
booked from it, and the status says it is not a measurement; the meter serves no energy
from a faulted reading. Under ``MEASUREMENT_FAULT`` the energy is the registers metrology
holds at its last good slot (their own timestamp), demand 0.

Events: pass ``on_event(kind, details)`` and, after each read whose ``event_seq`` moved, the
client fetches metrology's new events (``events`` request) and hands each to it (details
carry metrology's ``seq``), so the application can copy them into its own event log.
``events_since`` is where to start (persist :attr:`MetrologyClient.event_seq` to avoid
copying old events again after an application restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from sep.metrology.api import MetrologyStatus, Reading
from sep.metrology.protocol import MAX_EVENTS

LOGGER = logging.getLogger(__name__)
EventSink = Callable[[str, dict[str, Any]], None]


class MetrologyUnavailable(ConnectionError):
    """Metrology cannot be reached and no reading was ever received."""


class MetrologyProtocolError(RuntimeError):
    """Metrology answered with an error (``code`` says which)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class MetrologyClient:
    def __init__(self, socket_path: str, timeout: float = 2.0, *,
                 on_event: EventSink | None = None, events_since: int = 0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self.on_event = on_event
        self.event_seq = events_since
        self.last: Reading | None = None  # the last reading that carried energy values
        self.reconnects = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    # -- transport --------------------------------------------------------------------------
    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_unix_connection(self.socket_path, limit=1 << 20), self.timeout)

    async def _exchange(self, req: dict[str, Any]) -> dict[str, Any]:
        if not self.connected:
            await self._connect()
        assert self._reader is not None and self._writer is not None
        self._writer.write(json.dumps(req, separators=(",", ":")).encode() + b"\n")
        await asyncio.wait_for(self._writer.drain(), self.timeout)
        line = await asyncio.wait_for(self._reader.readline(), self.timeout)
        if not line.endswith(b"\n"):
            raise ConnectionError("metrology closed the link")
        doc = json.loads(line)
        if not isinstance(doc, dict) or doc.get("id") != req["id"]:
            raise ConnectionError("metrology reply out of step")
        return doc

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request; reconnects once if the link broke. Raises OSError family on failure,
        MetrologyProtocolError on an error reply."""
        async with self._lock:
            req = {"op": op, "id": next(self._ids), **fields}
            try:
                doc = await self._exchange(req)
            except (OSError, TimeoutError, ValueError):
                self._drop()
                self.reconnects += 1
                try:
                    doc = await self._exchange(req)
                except (OSError, TimeoutError, ValueError) as exc:
                    self._drop()
                    raise ConnectionError(f"metrology unreachable: {exc!r}") from exc
        if not doc.get("ok"):
            raise MetrologyProtocolError(str(doc.get("code")), str(doc.get("error")))
        return doc

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    # -- MetrologyReader ---------------------------------------------------------------------
    async def read(self) -> Reading:
        try:
            doc = await self.request("read")
        except (ConnectionError, MetrologyProtocolError) as exc:
            if self.last is None:
                raise MetrologyUnavailable(str(exc)) from exc
            last = self.last
            return Reading(last.timestamp, last.delivered_wh, last.received_wh, last.demand_w,
                           MetrologyStatus(last.status | MetrologyStatus.LINK_DOWN))
        status = MetrologyStatus(int(doc.get("status", 0)) & 0xFF)
        if "delivered_wh" in doc:
            reading = Reading(float(doc["timestamp"]), int(doc["delivered_wh"]),
                              int(doc["received_wh"]), int(doc.get("demand_w", 0)), status)
            self.last = reading
        else:  # energy withheld: nothing new to show, and say so
            last = self.last
            reading = Reading(float(doc.get("timestamp", last.timestamp if last else 0.0)),
                              last.delivered_wh if last else 0, last.received_wh if last else 0,
                              0, status)
        await self._forward_events(int(doc.get("event_seq", 0)))
        return reading

    async def _forward_events(self, seq: int) -> None:
        if self.on_event is None:
            return
        if seq < self.event_seq:  # a new metrology store: its log starts again
            self.event_seq = 0
        with contextlib.suppress(ConnectionError, MetrologyProtocolError):
            while self.event_seq < seq:
                batch = await self.events(self.event_seq, MAX_EVENTS)
                if not batch:
                    break
                for e in batch:
                    self.event_seq = max(self.event_seq, int(e["seq"]))
                    try:
                        self.on_event(str(e["kind"]), {"seq": e["seq"], "metrology_time": e["time"],
                                                       **e["details"]})
                    except Exception:  # noqa: BLE001 - the sink's trouble is not metrology's
                        LOGGER.exception("metrology event sink failed")

    # -- the other read-only requests ----------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        return await self.request("status")

    async def selftest(self) -> dict[str, Any]:
        return await self.request("selftest")

    async def events(self, since: int = 0, limit: int = MAX_EVENTS) -> list[dict[str, Any]]:
        return list((await self.request("events", since=since, limit=limit))["events"])

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        self._drop()

    async def aclose(self) -> None:
        writer = self._writer
        self._drop()
        if writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)
