"""Work queue semantics: dedup, one worker per item, backoff, forget, token bucket,
shutdown, metrics. Time is a FakeClock: no test sleeps."""

from __future__ import annotations

import asyncio

import pytest

from federationd.actuators.workqueue import RateLimit, ShutDown, TokenBucket, WorkQueue, run_worker
from federationd.metrics import Metrics
from tests.runtime.conftest import FakeClock, wait_for


async def test_repeated_adds_collapse(clock: FakeClock, metrics: Metrics) -> None:
    q: WorkQueue[str] = WorkQueue("t", clock=clock, metrics=metrics)
    for item in ["a", "b", "a", "a", "c", "b"]:
        q.add(item)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert metrics.workqueue_adds_total.labels(name="t")._value.get() == 3
    await q.shutdown()


async def test_item_is_never_processed_twice_at_once(clock: FakeClock, metrics: Metrics) -> None:
    q: WorkQueue[str] = WorkQueue("t", clock=clock, metrics=metrics)
    q.add("x")
    item = await q.get()
    q.add("x")  # re-added while processing: must wait for done()
    q.add("x")
    assert len(q) == 0
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.done(item)
    assert await asyncio.wait_for(getter, 1) == "x"  # processed again afterwards, once
    q.done("x")
    assert len(q) == 0
    await q.shutdown()


async def test_concurrent_workers_see_each_item_alone(metrics: Metrics) -> None:
    q: WorkQueue[int] = WorkQueue("t", metrics=metrics)
    active: set[int] = set()
    overlaps = 0
    handled = 0

    async def handle(item: int) -> None:
        nonlocal overlaps, handled
        if item in active:
            overlaps += 1
        active.add(item)
        await asyncio.sleep(0)
        if handled < 50:
            q.add(item)  # churn: re-add while being processed
        await asyncio.sleep(0)
        active.discard(item)
        handled += 1

    workers = [asyncio.create_task(run_worker(q, handle)) for _ in range(4)]
    for i in range(5):
        q.add(i)
    await wait_for(lambda: handled >= 55 and len(q) == 0 and not q.processing())
    await q.shutdown()
    await asyncio.gather(*workers)
    assert overlaps == 0


async def test_per_item_backoff_grows_and_forget_resets(clock: FakeClock, metrics: Metrics) -> None:
    q: WorkQueue[str] = WorkQueue("t", clock=clock, metrics=metrics,
                                  rate_limit=RateLimit(qps=1e9, burst=10**9))
    delays = [q.when("x") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1000.0 and max(delays) == 1000.0
    assert q.num_requeues("x") == 20
    for _ in range(2000):  # no overflow however often an item fails
        assert q.when("x") == 1000.0
    q.forget("x")
    assert q.when("x") == 0.005
    await q.shutdown()


async def test_add_rate_limited_waits_for_the_backoff(clock: FakeClock, metrics: Metrics) -> None:
    q: WorkQueue[str] = WorkQueue("t", clock=clock, metrics=metrics)
    q.add_rate_limited("x")  # 5 ms
    q.add_rate_limited("x")  # 10 ms, but the earlier ready time is kept
    await wait_for(lambda: clock.sleepers == 1)
    assert len(q) == 0
    clock.advance(0.004)
    await asyncio.sleep(0)
    assert len(q) == 0
    clock.advance(0.002)
    await wait_for(lambda: len(q) == 1)
    assert await q.get() == "x"
    assert metrics.workqueue_retries_total.labels(name="t")._value.get() == 2
    await q.shutdown()


async def test_token_bucket_limits_retries(clock: FakeClock) -> None:
    bucket = TokenBucket(qps=10, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    clock.advance(10)
    assert bucket.reserve() == 0.0


async def test_global_limit_applies_across_items(clock: FakeClock, metrics: Metrics) -> None:
    q: WorkQueue[int] = WorkQueue("t", clock=clock, metrics=metrics,
                                  rate_limit=RateLimit(qps=10, burst=2))
    for i in range(4):
        q.add_rate_limited(i)  # two within the burst, then 0.1 s and 0.2 s
    clock.advance(0.006)
    await wait_for(lambda: len(q) == 2)
    clock.advance(0.1)
    await wait_for(lambda: len(q) == 3)
    clock.advance(0.1)
    await wait_for(lambda: len(q) == 4)
    await q.shutdown()


async def test_shutdown_wakes_getters_and_ignores_adds(clock: FakeClock, metrics: Metrics) -> None:
    q: WorkQueue[str] = WorkQueue("t", clock=clock, metrics=metrics)
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    q.add_after("later", 60)
    await asyncio.sleep(0)
    await q.shutdown()
    for g in getters:
        with pytest.raises(ShutDown):
            await g
    q.add("x")
    assert len(q) == 0


async def test_depth_and_durations_are_measured(clock: FakeClock, metrics: Metrics) -> None:
    q: WorkQueue[str] = WorkQueue("m", clock=clock, metrics=metrics)
    q.add("a")
    q.add("b")
    assert metrics.workqueue_depth.labels(name="m")._value.get() == 2
    clock.advance(2.0)
    item = await q.get()
    clock.advance(0.5)
    q.done(item)
    text = metrics.exposition().decode()
    assert 'workqueue_queue_duration_seconds_sum{name="m"} 2.0' in text
    assert 'workqueue_work_duration_seconds_sum{name="m"} 0.5' in text
    assert metrics.workqueue_depth.labels(name="m")._value.get() == 1
    await q.shutdown()


async def test_run_worker_retries_failures_with_backoff(metrics: Metrics) -> None:
    q: WorkQueue[str] = WorkQueue("w", metrics=metrics)
    attempts: list[str] = []

    async def flaky(item: str) -> None:
        attempts.append(item)
        if len(attempts) < 3:
            raise RuntimeError("boom")

    worker = asyncio.create_task(run_worker(q, flaky))
    q.add("x")
    await wait_for(lambda: len(attempts) == 3 and not q.processing())
    assert q.num_requeues("x") == 0  # forgotten after the success
    await q.shutdown()
    await worker


async def test_an_ordered_queue_hands_out_the_first_by_order_then_by_arrival() -> None:
    q: WorkQueue[str] = WorkQueue("ordered", metrics=Metrics(), order=lambda k: k[0])
    for item in ("c1", "b1", "c2", "a1", "b2"):
        q.add(item)
    assert len(q) == 5
    first = await q.get()
    q.add("a2")  # arrives late, still goes before every b and c
    got = [first] + [await q.get() for _ in range(5)]
    assert got == ["a1", "a2", "b1", "b2", "c1", "c2"]
    q.add("a1")  # re-added while processing: handed out again after done(), in order
    q.add("b3")
    q.done("a1")
    assert [await q.get(), await q.get()] == ["a1", "b3"]
    await q.shutdown()
    assert len(q) == 0

