"""client-go's rate-limiting work queue, for asyncio.

Guarantees (the ones controllers are built on):

* **Deduplicating**: an item added while already waiting is not added again.
* **Never processed twice at once**: an item added while a worker holds it is marked
  dirty and handed out again only after ``done(item)``.
* **Per-item exponential backoff** for failures: ``add_rate_limited(item)`` waits
  5 ms * 2^failures, capped at 1000 s, until ``forget(item)`` after a success.
* **Global token bucket** (default 10 qps, burst 100) on retries, like client-go's
  ``DefaultControllerRateLimiter`` (the larger of the two delays wins), so a storm of
  failures cannot hammer a cluster.
* ``shutdown()`` wakes every waiting ``get()`` with ``ShutDown``.
* **Optionally ordered**: with ``order`` (a sort key of items), ``get()`` hands out the
  waiting item that sorts first instead of the oldest (arrival order among equals).

Items must be hashable (object keys). Time comes from an injected ``Clock`` so tests can
step through backoff without sleeping. Metrics are client-go's ``workqueue_*`` family,
labelled with the queue's ``name``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from federationd.cancellation import cancel_and_wait
from federationd.clusters.clock import REAL_CLOCK, Clock
from federationd.metrics import METRICS, Metrics

T = TypeVar("T", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down; workers should return."""


@dataclasses.dataclass(frozen=True)
class RateLimit:
    base_delay: float = 0.005
    max_delay: float = 1000.0
    qps: float = 10.0
    burst: int = 100


class TokenBucket:
    """Reservation-style bucket: every call takes a token and says how long to wait for
    it (0 while the burst lasts)."""

    def __init__(self, *, qps: float, burst: int, clock: Clock) -> None:
        self._qps = qps
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock.now()

    def reserve(self) -> float:
        now = self._clock.now()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps


class WorkQueue(Generic[T]):
    """See the module docstring. One queue per cluster (``name`` labels the metrics)."""

    def __init__(
        self,
        name: str,
        *,
        rate_limit: RateLimit | None = None,
        clock: Clock = REAL_CLOCK,
        metrics: Metrics | None = None,
        order: Callable[[T], Any] | None = None,
    ) -> None:
        self.name = name
        self._order = order
        self._limit = rate_limit or RateLimit()
        self._clock = clock
        m = metrics or METRICS
        self._m_depth = m.workqueue_depth.labels(name=name)
        self._m_adds = m.workqueue_adds_total.labels(name=name)
        self._m_retries = m.workqueue_retries_total.labels(name=name)
        self._m_queue_duration = m.workqueue_queue_duration_seconds.labels(name=name)
        self._m_work_duration = m.workqueue_work_duration_seconds.labels(name=name)
        #: waiting items, a heap of (rank, arrival, item): the rank is ``order(item)``,
        #: or the same for all (arrival order) without ``order``
        self._queue: list[tuple[Any, int, T]] = []
        self._arrivals = itertools.count()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}
        self._failures: dict[T, int] = {}
        self._bucket = TokenBucket(qps=self._limit.qps, burst=self._limit.burst, clock=clock)
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        # Delayed adds: item → ready time, plus a heap of (ready, seq, item) entries that
        # may be stale (a later add_after with an earlier time supersedes).
        self._waiting: dict[T, float] = {}
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()
        self._delay_changed = asyncio.Event()
        self._delay_task: asyncio.Task[None] | None = None

    # --- the basic queue --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._queue)

    def _push(self, item: T) -> None:
        rank = 0 if self._order is None else self._order(item)
        heapq.heappush(self._queue, (rank, next(self._arrivals), item))
        self._m_depth.set(len(self))

    def _pop(self) -> T:
        item = heapq.heappop(self._queue)[2]
        self._m_depth.set(len(self))
        return item

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, item: T) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._m_adds.inc()
        self._dirty.add(item)
        self._added_at.setdefault(item, self._clock.now())
        if item in self._processing:
            return  # handed out again by done()
        self._push(item)
        self._notify()

    def _notify(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def get(self) -> T:
        """The next item; the caller owns it until ``done(item)``. Raises ``ShutDown``."""
        while not len(self):
            if self._shutting_down:
                raise ShutDown(self.name)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Pass a wake-up we consumed on to the next getter before leaving.
                if waiter.done() and not waiter.cancelled():
                    self._notify()
                raise
        item = self._pop()
        now = self._clock.now()
        added = self._added_at.pop(item, now)
        self._m_queue_duration.observe(max(0.0, now - added))
        self._processing.add(item)
        self._started_at[item] = now
        self._dirty.discard(item)
        if len(self):
            self._notify()
        return item

    def done(self, item: T) -> None:
        """Processing of ``item`` finished; if it was re-added meanwhile, queue it again."""
        self._processing.discard(item)
        started = self._started_at.pop(item, None)
        if started is not None:
            self._m_work_duration.observe(max(0.0, self._clock.now() - started))
        if item in self._dirty and not self._shutting_down:
            self._push(item)
            self._notify()

    def processing(self) -> frozenset[T]:
        return frozenset(self._processing)

    # --- delays and rate limiting ------------------------------------------------------

    def add_after(self, item: T, delay: float) -> None:
        """Add ``item`` once ``delay`` seconds have passed (immediately if ≤ 0). An item
        already waiting keeps the earlier of the two times."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        ready = self._clock.now() + delay
        current = self._waiting.get(item)
        if current is not None and current <= ready:
            return
        self._waiting[item] = ready
        heapq.heappush(self._heap, (ready, next(self._seq), item))
        self._delay_changed.set()
        if self._delay_task is None or self._delay_task.done():
            self._delay_task = asyncio.get_running_loop().create_task(
                self._delay_loop(), name=f"workqueue-{self.name}-delays")

    def when(self, item: T) -> float:
        """The per-item backoff delay for the next failure of ``item`` (and count it)."""
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        # The exponent is capped so that thousands of failures cannot overflow a float.
        return min(self._limit.base_delay * 2.0 ** min(failures, 64), self._limit.max_delay)

    def add_rate_limited(self, item: T) -> None:
        """Retry ``item`` after its backoff (or the global bucket's delay, if longer)."""
        self._m_retries.inc()
        self.add_after(item, max(self.when(item), self._bucket.reserve()))

    def forget(self, item: T) -> None:
        """``item`` succeeded: its next failure starts from the base delay again."""
        self._failures.pop(item, None)

    def num_requeues(self, item: T) -> int:
        return self._failures.get(item, 0)

    async def _delay_loop(self) -> None:
        while not self._shutting_down:
            now = self._clock.now()
            while self._heap and self._heap[0][0] <= now:
                ready, _, item = heapq.heappop(self._heap)
                if self._waiting.get(item) == ready:
                    del self._waiting[item]
                    self.add(item)
            if not self._heap:
                self._delay_task = None
                return
            self._delay_changed.clear()
            sleeper = asyncio.ensure_future(self._clock.sleep(self._heap[0][0] - now))
            changed = asyncio.ensure_future(self._delay_changed.wait())
            try:
                await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait(sleeper, changed)

    # --- lifecycle --------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop accepting items, drop pending ones, wake every ``get()`` (they raise
        ``ShutDown``) and stop the delay timer. Items being processed may still be
        ``done()``."""
        self._shutting_down = True
        self._queue.clear()
        self._waiting.clear()
        self._heap.clear()
        self._m_depth.set(0)
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        task, self._delay_task = self._delay_task, None
        if task is not None:
            await cancel_and_wait(task)


async def run_worker(
    queue: WorkQueue[T],
    handler: Callable[[T], Awaitable[None]],
    *,
    on_error: Callable[[T, Exception], None] | None = None,
) -> None:
    """The standard worker loop: get → handle → forget on success, ``add_rate_limited``
    on failure → done. Returns when the queue shuts down."""
    while True:
        try:
            item = await queue.get()
        except ShutDown:
            return
        try:
            await handler(item)
        except Exception as e:  # every failure is retried with backoff
            if on_error is not None:
                on_error(item, e)
            queue.add_rate_limited(item)
        else:
            queue.forget(item)
        finally:
            queue.done(item)
