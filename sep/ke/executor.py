"""Key Establishment off the event loop: the thin asyncio side of the sans-IO core.

A suite-2 exchange costs several sect283k1 scalar multiplications (~45 ms each in pure
Python), far too long for the event loop. :class:`OffLoopKeyEstablishment` runs every call
of a :class:`~sep.clusters.key_establishment.KeyEstablishment` in an executor thread and
returns its effects to the loop; the core's per-partner locks make concurrent calls safe.

In a thread the maths still holds the GIL, so the loop competes with it for the
interpreter (see ``bench/bench_ke.py`` for the lag that causes). Give the core
``compute=process_compute(pool)`` to do the multiplications in worker processes instead:
the executor thread then waits on the process without holding the GIL.

Usage in a shell::

    core = KeyEstablishment(creds, endpoint=1, own_ieee=ieee)
    ke = OffLoopKeyEstablishment(core)
    effects = await ke.handle(request, clock.now())     # a frame of cluster 0x0800
    effects = await ke.initiate(nwk, endpoint, ieee, clock.now())
    effects = await ke.tick(clock.now())                # at core.next_deadline()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any

from sep.clusters.key_establishment import Effect, KeyEstablishment
from sep.zcl.frames import Request


def process_compute(pool: concurrent.futures.Executor) -> Callable[..., Any]:
    """A ``compute`` for the core that runs the EC maths in ``pool`` (e.g. a
    ProcessPoolExecutor) and waits for it, blocking only the calling executor thread."""

    def compute(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return pool.submit(fn, *args, **kwargs).result()

    return compute


class OffLoopKeyEstablishment:
    def __init__(self, core: KeyEstablishment,
                 executor: concurrent.futures.Executor | None = None) -> None:
        """``executor``: where the core runs (default: a small thread pool of its own)."""
        self.core = core
        self._own = executor is None
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="key-establishment")

    async def _run(self, fn: Callable[..., list[Effect]], *args: Any, **kwargs: Any) -> list[Effect]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def handle(self, req: Request, now: float) -> list[Effect]:
        return await self._run(self.core.handle, req, now)

    async def initiate(self, partner_nwk: int, partner_endpoint: int, partner_ieee: int,
                       now: float, *, suite: int | None = None) -> list[Effect]:
        return await self._run(self.core.initiate, partner_nwk, partner_endpoint,
                               partner_ieee, now, suite=suite)

    async def tick(self, now: float) -> list[Effect]:
        return await self._run(self.core.tick, now)

    def close(self) -> None:
        if self._own:
            self.executor.shutdown(wait=False, cancel_futures=True)
