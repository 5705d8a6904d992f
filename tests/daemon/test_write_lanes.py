"""The global write cap: remotes share a bounded number of slots, the master has its own."""

from __future__ import annotations

import asyncio

import pytest

from federationd.actuators.converge import WriteLanes


async def test_busy_remotes_are_capped_and_never_block_the_master() -> None:
    lanes = WriteLanes(total=4, master=1)
    remote = lanes.lane(master=False)
    held = 0
    for _ in range(3):
        await remote.acquire()
        held += 1
    assert remote.locked()  # a fourth remote write has to wait
    waiting = asyncio.ensure_future(remote.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()
    # the master's lane is free although every remote slot is taken
    async with asyncio.timeout(1):
        async with lanes.lane(master=True):
            pass
    remote.release()
    async with asyncio.timeout(1):
        await waiting
    for _ in range(held):
        remote.release()


def test_the_master_lane_is_a_part_of_the_total() -> None:
    with pytest.raises(ValueError):
        WriteLanes(total=4, master=4)
    with pytest.raises(ValueError):
        WriteLanes(total=4, master=0)


async def test_urgent_writes_take_the_next_free_slot_before_earlier_updates() -> None:
    """A joining remote's first writes (objects it never had) go before the updates queued
    earlier on clusters that are in place; among equals, arrival order."""
    lane = WriteLanes(total=2, master=1).lane(master=False)
    await lane.acquire()
    order: list[str] = []

    async def write(name: str, *, urgent: bool) -> None:
        async with lane.slot(urgent=urgent):
            order.append(name)

    tasks = [asyncio.create_task(write(n, urgent=u)) for n, u in
             (("update-1", False), ("update-2", False), ("create-1", True), ("create-2", True))]
    await asyncio.sleep(0)  # every write is waiting for the one slot
    cancelled = asyncio.create_task(write("create-cancelled", urgent=True))
    await asyncio.sleep(0)
    cancelled.cancel()
    lane.release()
    async with asyncio.timeout(1):
        await asyncio.gather(*tasks)
    assert order == ["create-1", "create-2", "update-1", "update-2"]
    assert not lane.locked()
    # every slot came back: the lane's one slot can be taken again at once
    async with asyncio.timeout(1):
        await lane.acquire()
    lane.release()
