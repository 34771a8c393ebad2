"""The application side's only view of the metrology process (read-only).

:class:`MetrologyClient` implements :class:`~sep.metrology.api.MetrologyReader`. When the
link is down it reconnects on the next read and, meanwhile, returns the last reading it
had with ``LINK_DOWN`` set (never invented values); the meter does not serve energy from a
reading with a fault status.
"""

from __future__ import annotations

import asyncio
import json

from sep.metrology.api import MetrologyStatus, Reading


class MetrologyClient:
    def __init__(self, socket_path: str, timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.last: Reading | None = None

    async def _request(self, op: str) -> dict:
        if self._writer is None:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.socket_path), self.timeout)
        assert self._reader is not None
        self._writer.write(json.dumps({"op": op}).encode() + b"\n")
        await self._writer.drain()
        line = await asyncio.wait_for(self._reader.readline(), self.timeout)
        if not line:
            raise ConnectionError("metrology closed the link")
        return json.loads(line)

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def read(self) -> Reading:
        try:
            doc = await self._request("read")
        except (OSError, ConnectionError, TimeoutError, ValueError):
            self._drop()
            last = self.last or Reading(0.0, 0, 0, 0)
            return Reading(last.timestamp, last.delivered_wh, last.received_wh, last.demand_w,
                           MetrologyStatus(last.status | MetrologyStatus.LINK_DOWN))
        status = MetrologyStatus(int(doc.get("status", 0)))
        if "delivered_wh" not in doc:  # calibration fault: no energy values at all
            last = self.last or Reading(0.0, 0, 0, 0)
            return Reading(float(doc.get("timestamp", 0.0)), last.delivered_wh,
                           last.received_wh, 0, status)
        self.last = Reading(float(doc["timestamp"]), int(doc["delivered_wh"]),
                            int(doc["received_wh"]), int(doc["demand_w"]), status)
        return self.last

    async def status(self) -> dict:
        return await self._request("status")

    async def selftest(self) -> dict:
        return await self._request("selftest")

    def close(self) -> None:
        self._drop()
