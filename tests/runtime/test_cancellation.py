"""Stopping a child never swallows the caller's own cancellation: one test per place
that stops a child task (trust actuator, hostname resolver, leader elector, work queue
shutdown and its delay timer).

Each child here is *stubborn*: cancelled, it takes its time to end (as a task finishing
a request does). The caller is cancelled while it waits for the child; with
``suppress(CancelledError): await child`` that cancellation was swallowed and the caller
carried on. It must end cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from federationd.actuators.trust import TrustActuator
from federationd.actuators.workqueue import WorkQueue
from federationd.cancellation import cancel_and_wait
from federationd.leader import LeaderElector
from federationd.metrics import Metrics
from federationd.watchers.resolver import HostnameResolver
from tests.runtime.conftest import wait_for


class Stubborn:
    """A child that, once cancelled, ends only when released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.cancel_seen = False

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancel_seen = True
            await self.release.wait()
            raise


async def _caller_stays_cancelled(stop: Callable[[], Awaitable[Any]], child: Stubborn) -> None:
    stopper = asyncio.ensure_future(stop())
    try:
        await wait_for(lambda: child.cancel_seen)  # the stopper waits for the child now
        stopper.cancel()
        await wait_for(stopper.done, within=2.0, what="the cancelled caller to end")  # not held by the child
        assert stopper.cancelled()
    finally:
        child.release.set()
        await asyncio.wait([stopper])


async def test_cancel_and_wait_reraises_the_childs_error_and_absorbs_its_cancellation() -> None:
    async def boom() -> None:
        raise ValueError("x")

    t = asyncio.ensure_future(boom())
    await asyncio.wait([t])
    try:
        await cancel_and_wait(t)
    except ValueError:
        pass
    else:
        raise AssertionError("the child's error is re-raised")
    child = Stubborn()
    c = asyncio.ensure_future(child.run())
    await wait_for(lambda: not c.done())
    stopper = asyncio.ensure_future(cancel_and_wait(c))
    await wait_for(lambda: child.cancel_seen)
    child.release.set()
    await stopper  # the child's own cancellation is absorbed
    assert c.cancelled()


async def test_trust_actuator_pause() -> None:
    child = Stubborn()
    t = TrustActuator(kube=lambda _: None, record=_record)
    t._task = asyncio.ensure_future(child.run())
    await _caller_stays_cancelled(t.pause, child)


async def test_hostname_resolver_stop() -> None:
    child = Stubborn()
    r = HostnameResolver(_record)
    r._task = asyncio.ensure_future(child.run())
    await _caller_stays_cancelled(r.stop, child)


async def test_leader_elector_stop() -> None:
    child = Stubborn()
    e = LeaderElector(None, name="l", namespace="ns", metrics=Metrics())  # type: ignore[arg-type]
    e._task = asyncio.ensure_future(child.run())
    await _caller_stays_cancelled(e.stop, child)


async def test_work_queue_shutdown() -> None:
    child = Stubborn()
    q: WorkQueue[str] = WorkQueue("q", metrics=Metrics())
    q._delay_task = asyncio.ensure_future(child.run())
    await _caller_stays_cancelled(q.shutdown, child)


class _StubbornEvent:
    """Stands in for the queue's "delay changed" event: its ``wait()`` is stubborn."""

    def __init__(self, child: Stubborn) -> None:
        self.child = child
        self.waiting = False

    def clear(self) -> None: ...

    def set(self) -> None: ...

    async def wait(self) -> None:
        self.waiting = True
        await self.child.run()


class _TickClock:
    def __init__(self) -> None:
        self.tick = asyncio.Event()

    def now(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        await self.tick.wait()


async def test_work_queue_delay_timer() -> None:
    child, clock = Stubborn(), _TickClock()
    q: WorkQueue[str] = WorkQueue("q", clock=clock, metrics=Metrics())
    changed = _StubbornEvent(child)
    q._delay_changed = changed  # type: ignore[assignment]
    q.add_after("x", 10.0)
    await wait_for(lambda: changed.waiting)
    timer = q._delay_task
    assert timer is not None
    clock.tick.set()  # the timer fires; the timer loop now stops its "changed" waiter
    await wait_for(lambda: child.cancel_seen)
    timer.cancel()  # … and is cancelled meanwhile: it must end, not loop on
    try:
        await wait_for(timer.done, within=2.0, what="the cancelled timer to end")
        assert timer.cancelled()
    finally:
        child.release.set()
        q._shutting_down = True
        await asyncio.wait([timer])
        q._delay_task = None
        await q.shutdown()


async def _record(*_: Any, **__: Any) -> None:
    return None
