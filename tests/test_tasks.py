"""radios.tasks: a cancellation that Python 3.11's asyncio.wait_for swallows still stops the
task (CPython gh-86296: the inner future's result and the cancel arrive together)."""

from __future__ import annotations

import asyncio
import sys

from radios.tasks import cancel_and_wait, checkpoint


async def swallowing_task(*, check: bool) -> tuple[asyncio.Task[None], list[str]]:
    """A task inside a real ``asyncio.wait_for`` whose future completes in the same
    loop iteration as ``cancel()``; it then waits for an event that never comes."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    seen: list[str] = []

    async def victim() -> None:
        await asyncio.wait_for(fut, 10)
        seen.append("carried on")
        if check:
            checkpoint()
        await asyncio.Event().wait()

    task = asyncio.create_task(victim())
    await asyncio.sleep(0)
    fut.set_result(1)
    task.cancel()
    return task, seen


async def test_one_cancel_may_not_stop_a_task_but_cancel_and_wait_does() -> None:
    task, seen = await swallowing_task(check=False)
    await asyncio.wait([task], timeout=0.3)
    if sys.version_info < (3, 12):  # the premise: on 3.11 the cancel is lost
        assert not task.done() and seen == ["carried on"]
    left = await cancel_and_wait([task], 2.0)
    assert not left and task.cancelled()


async def test_cancel_and_wait_reports_a_task_that_will_not_end() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], 0.5, every=0.1) == {task}
    release.set()
    assert await cancel_and_wait([task], 1.0) == set()  # a task that relents ends
    assert await cancel_and_wait([task], 0.1) == set()  # a done one is not waited for


async def test_checkpoint_ends_a_task_whose_cancel_was_swallowed() -> None:
    task, seen = await swallowing_task(check=True)
    done, _ = await asyncio.wait([task], timeout=1.0)
    assert task in done and task.cancelled() and seen == ["carried on"]


async def test_checkpoint_does_nothing_in_a_task_not_asked_to_stop() -> None:
    checkpoint()
    assert asyncio.current_task() is not None
