"""Fixtures for runtime tests: a fake API server, a connected client, a controllable
clock, a condition waiter, and a check that every test leaves no task behind."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable

import pytest

from federationd.clusters import ClusterClient, connect
from federationd.metrics import Metrics
from tests.runtime.fakeapi import FakeApi


async def wait_for(cond: Callable[[], bool], within: float = 5.0, *, what: str = "") -> None:
    """Poll ``cond`` until true; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.005)


class FakeClock:
    """Monotonic time that moves only when told; ``sleep`` waits for ``advance``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def time(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def advance(self, seconds: float) -> None:
        self.t += seconds
        while self._sleepers and self._sleepers[0][0] <= self.t:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()

    def leaked() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]

    if leaked():
        # Tasks that are finishing (a cancelled handler unwinding) get a moment.
        await asyncio.wait(leaked(), timeout=2.0)
    assert not leaked(), f"tasks left behind: {leaked()}"


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    async with FakeApi() as server:
        yield server


@pytest.fixture
async def client(api: FakeApi, metrics: Metrics) -> AsyncIterator[ClusterClient]:
    c = await connect(api.kubeconfig(), name="fake", metrics=metrics, request_timeout=5.0)
    yield c
    await c.close()
