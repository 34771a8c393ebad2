"""Stopping asyncio tasks for sure.

On Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives in the same loop
iteration as its inner future's result (CPython gh-86296, fixed in 3.12). A task cancelled
while awaiting such a call — aiomqtt's ``publish`` does — gets its result instead of
``CancelledError``, carries on, and then waits for ever on its next event: one ``cancel()``
did not stop it. ``cancel_and_wait`` cancels again until the tasks have ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Future[object]], timeout: float,
                          *, every: float = 0.2) -> set[asyncio.Future[object]]:
    """Cancel ``tasks`` and wait for them to end, cancelling again every ``every`` seconds,
    for at most ``timeout`` seconds. Returns the ones still running (empty when all ended);
    their exceptions are left on them, not raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    me = asyncio.current_task()
    pending = {t for t in tasks if not t.done() and t is not me}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(every, left))
    return pending


def checkpoint() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop: call it after an
    await that may have swallowed the cancellation (see above), before waiting again."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
