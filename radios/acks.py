"""APS acknowledgements a node on the virtual air waits for (sans-IO bookkeeping).

A sender registers the (destination NWK, APS counter) of a data frame that asked for an
APS ACK and awaits the future; the receive path hands every APS ACK (source, counter) to
:meth:`PendingAcks.resolve`. Used by the node shell (``radios/shell.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class PendingAcks:
    def __init__(self) -> None:
        self._waiting: dict[tuple[int, int], asyncio.Future[None]] = {}

    @contextlib.contextmanager
    def expect(self, dst_nwk: int, aps_counter: int) -> Iterator[asyncio.Future[None]]:
        """A future done when the APS ACK for this frame arrives (forgotten on exit)."""
        key = (dst_nwk, aps_counter)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        try:
            yield fut
        finally:
            if self._waiting.get(key) is fut:
                del self._waiting[key]

    def resolve(self, src_nwk: int, aps_counter: int) -> None:
        """An APS ACK arrived from ``src_nwk``: wake whoever waits for it."""
        fut = self._waiting.get((src_nwk, aps_counter))
        if fut is not None and not fut.done():
            fut.set_result(None)

    def cancel_all(self) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.cancel()
        self._waiting.clear()
