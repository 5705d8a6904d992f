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
