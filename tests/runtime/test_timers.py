"""The timer source appends a deadline fact when a requested deadline passes, once per
leave, and at once for a deadline that passed while the daemon was down."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from events import types as ev
from events.types import Event
from federationd.watchers.timers import DeadlineTimer


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_deadlines_become_facts_once_each() -> None:
    appended: list[Event] = []
    grew = asyncio.Event()

    async def append(events: Sequence[Event]) -> None:
        appended.extend(events)
        grew.set()

    async def _until(count: int) -> None:
        async with asyncio.timeout(5.0):
            while len(appended) < count:
                grew.clear()
                await grew.wait()
        assert len(appended) == count

    clock = Clock(1000.0)
    timer = DeadlineTimer(append, timeout=30.0, clock=clock)
    # one long past (the daemon was down), one in the future
    timer.set({"a": (7, 900.0), "b": (9, 995.0)})
    timer.start()
    try:
        await _until(1)
        first = appended[0]
        assert isinstance(first, ev.CleanupDeadlinePassed)
        assert (first.cluster, first.key, first.since_seq, first.timeout) == ("a", "Cleanup//a", 7, 30.0)
        assert timer.pending() == {"b": 1025.0}
        clock.now = 1026.0
        timer.set({"a": (7, 900.0), "b": (9, 995.0), "c": (12, 1020.0)})  # a change wakes it
        await _until(2)
        assert [e.cluster for e in appended] == ["a", "b"]
        # a new leave of "a" (another since_seq) gets its own deadline
        timer.set({"a": (20, 990.0), "c": (12, 1020.0)})
        await _until(3)
        third = appended[2]
        assert isinstance(third, ev.CleanupDeadlinePassed) and (third.cluster, third.since_seq) == ("a", 20)
        assert timer.pending() == {"c": 1050.0}
    finally:
        await timer.stop()
    assert len(appended) == 3
