"""The freeze loop the daemon and ``federationd sim`` run: what is alive is frozen, and a
reference cycle that became garbage while frozen is collected at the next full
collection — every ``full_every`` rounds, or as soon as ``full_now()`` moves — not
leaked."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from federationd.cancellation import cancel_and_wait
from federationd.gcfreeze import freeze_loop
from tests.runtime.conftest import wait_for


class Node:
    """A container the collector tracks; ``me`` makes it a reference cycle."""

    me: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def frozen_garbage_cycle() -> weakref.ref[Node]:
    """A cycle frozen while alive, then dropped: only a full collection frees it."""
    node = Node()
    node.me = node
    ref = weakref.ref(node)
    gc.freeze()
    del node
    gc.collect()
    assert ref() is not None, "a frozen cycle is out of the collector's sight"
    return ref


async def test_what_is_alive_is_frozen() -> None:
    assert gc.get_freeze_count() == 0
    task = asyncio.create_task(freeze_loop(period=0.001))
    try:
        await wait_for(lambda: gc.get_freeze_count() > 0, what="a freeze")
    finally:
        await cancel_and_wait(task)


async def test_a_frozen_garbage_cycle_waits_for_full_now_to_move() -> None:
    ref = frozen_garbage_cycle()
    stopped = [0]
    rounds = [0]

    def full_now() -> int:
        rounds[0] += 1
        return stopped[0]

    task = asyncio.create_task(freeze_loop(full_now, period=0.001, full_every=10**9))
    try:
        await wait_for(lambda: rounds[0] > 5, what="five rounds")
        assert ref() is not None, "no full collection while nothing moved"
        stopped[0] += 1  # say, a cluster runtime stopped
        await wait_for(lambda: ref() is None, what="the cycle collected once full_now() moved")
    finally:
        await cancel_and_wait(task)


async def test_a_frozen_garbage_cycle_goes_at_the_periodic_full_collection() -> None:
    ref = frozen_garbage_cycle()
    task = asyncio.create_task(freeze_loop(period=0.001, full_every=3))
    try:
        await wait_for(lambda: ref() is None, what="the cycle collected by the third round")
    finally:
        await cancel_and_wait(task)
