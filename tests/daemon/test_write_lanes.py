"""The global write cap: remotes share a bounded number of slots, the master has its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from events import types as ev
from events.types import Event
from federationd.actuators.client import KubeClient
from federationd.actuators.converge import ClusterConverger, WriteLanes
from federationd.clusters.connection import connect
from federationd.metrics import Metrics
from federationd.projections.state import Actuation
from federationd.sim import Fleet

from .test_converge import _cm, _desired
from .waiting import wait_for


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


async def test_while_urgent_writes_are_about_the_others_are_held_to_the_background_share() -> None:
    """Four slots, one for background updates while urgent writes hold or wait for slots:
    updates queued behind an urgent write take one slot between them, and every slot
    again once no urgent write is left — a cancelled urgent waiter included."""
    lane = WriteLanes(total=5, master=1, background=1).lane(master=False)
    await lane.acquire(urgent=True)
    in_flight: list[str] = []
    done = asyncio.Event()

    async def update(name: str) -> None:
        async with lane.slot():
            in_flight.append(name)
            await done.wait()

    updates = [asyncio.create_task(update(f"u{i}")) for i in range(4)]
    await wait_for(lambda: len(in_flight) == 1, what="one background update")
    for _ in range(5):
        await asyncio.sleep(0)
    assert in_flight == ["u0"]  # three slots are free, but an urgent write is about
    # another urgent write takes a free slot at once, although updates are queued
    waiter = asyncio.create_task(lane.acquire(urgent=True))
    async with asyncio.timeout(1):
        await waiter
    lane.release(urgent=True)  # the first one ends; the second still holds the others back
    for _ in range(5):
        await asyncio.sleep(0)
    assert in_flight == ["u0"]
    blocked = [asyncio.create_task(lane.acquire(urgent=True)) for _ in range(2)]
    await asyncio.sleep(0)
    assert all(t.done() for t in blocked) and lane.locked()
    # an urgent waiter that gives up counts no more
    cancelled = asyncio.create_task(lane.acquire(urgent=True))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    for _ in range(3):
        lane.release(urgent=True)  # the urgent writes end: the updates take every slot
    await wait_for(lambda: len(in_flight) == 4, what="every update in flight")
    done.set()
    async with asyncio.timeout(1):
        await asyncio.gather(*updates)
    assert not lane.locked()
    for _ in range(4):
        await lane.acquire()  # every slot came back
    assert lane.locked()


async def _share_one_slot(tmp_path: Path, *, applied_before: bool, settling: bool) -> list[tuple[str, str]]:
    """Two clusters share one remote write slot. One is in place (every object applied
    before) and gets five updates; a moment later the other gets three objects: new to
    it, or (``applied_before``) updates of objects it has. The order of the eight writes."""
    async with Fleet(["master", "in-place", "joining"], directory=tmp_path) as fleet:
        for c in ("in-place", "joining"):
            fleet[c].store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
        lanes = WriteLanes(total=2, master=1)
        order: list[tuple[str, str]] = []
        clients = []
        convs: dict[str, ClusterConverger] = {}
        for c in ("in-place", "joining"):
            client = await connect(fleet[c].kubeconfig, name=c)
            clients.append(client)

            async def append(events: Sequence[Event], c: str = c) -> None:
                order.extend((c, e.key.rsplit("/", 1)[-1]) for e in events if isinstance(e, ev.ActuationApplied))

            convs[c] = ClusterConverger(c, KubeClient(client), append=append, metrics=Metrics(), lanes=lanes)
        try:
            # every write to the cluster in place takes 0.3 s: the slot stays busy while
            # the other cluster's writes queue behind its other updates
            fleet["in-place"].faults.latency(0.3, verb="patch", duration=30)
            updates = _desired([_cm(f"u{i}", "2") for i in range(5)])
            in_place = {k: Actuation(verb="apply", content_hash="earlier", ok=True) for k in updates.objects}
            for conv in convs.values():
                conv.start()
            convs["in-place"].set_desired(updates, in_place)
            await wait_for(lanes.lane(master=False).locked, what="the first update holding the slot")
            joining = _desired([_cm(f"j{i}", "1") for i in range(3)])
            if applied_before:
                for i in range(3):
                    fleet["joining"].store.create(_cm(f"j{i}", "0"))
            acts = {k: Actuation(verb="apply", content_hash="earlier", ok=True) for k in joining.objects} if applied_before else {}
            convs["joining"].set_desired(joining, acts, settling=settling)
            await wait_for(lambda: len(order) == 8, timeout=30, what="every write")
            assert order[0][0] == "in-place"
            return order
        finally:
            for conv in convs.values():
                await conv.stop()
            for client in clients:
                await client.close()


async def test_a_joining_cluster_writes_before_updates_on_a_cluster_in_place(tmp_path: Path) -> None:
    """Nothing applied on the joining cluster yet: once the slot frees, its writes go first."""
    order = await _share_one_slot(tmp_path, applied_before=False, settling=False)
    assert [c for c, _ in order[1:4]] == ["joining"] * 3, order


@pytest.mark.parametrize("settling", [True, False])
async def test_a_cluster_not_yet_available_writes_its_updates_first(tmp_path: Path, settling: bool) -> None:
    """Every object applied once, but the cluster has not been Available since it joined
    (a restart its new cacerts brings): its updates go before those of a cluster in
    place; once it has been Available, they wait their turn."""
    order = await _share_one_slot(tmp_path, applied_before=True, settling=settling)
    assert [c for c, _ in order[1:4]] == (["joining"] * 3 if settling else ["in-place"] * 3), order
