"""Reaping child tasks never swallows the reaper's own cancellation."""

from __future__ import annotations

import asyncio

import pytest

from federationd.actuators.tasks import reap


async def test_reap_cancels_children_and_absorbs_their_cancellation() -> None:
    child = asyncio.create_task(asyncio.Event().wait())
    await reap([child])
    assert child.cancelled()


async def test_a_cancelled_reaper_stays_cancelled() -> None:
    started = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            started.set()
            await asyncio.sleep(0.05)  # takes a moment to wind down
            raise

    async def parent() -> None:
        child = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await reap([child])
        await asyncio.Event().wait()  # must never get here

    task = asyncio.create_task(parent())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_reap_with_grace_lets_children_finish_then_cancels_the_rest() -> None:
    quick = asyncio.create_task(asyncio.sleep(0))
    slow = asyncio.create_task(asyncio.Event().wait())
    await reap([quick, slow], cancel=False, grace=0.05)
    assert quick.done() and not quick.cancelled() and slow.cancelled()
