"""What the daemon does while its event log cannot be written: a full disk, a file size
limit, a failing disk, a read-only remount.

The log is the record of what federationd saw and did, so a daemon that cannot write it
must neither lose a fact nor act without one. :class:`LogGuard` stands between the
daemon and :class:`events.log.EventLog` and is shaped so:

* **Facts wait, in order, in memory.** An append that fails with
  :class:`~events.log.LogUnwritable` (nothing of it was written) is not an error for its
  caller: its events are held, with every append made after them, and the caller waits.
  One retry task appends everything held as **one** transaction — all of it or none, so
  nothing is half-written and the sequence stays dense — every ``retry`` seconds until
  it commits; the callers then get their sequence numbers, in the order they asked.
  Watchers simply pause (their watches resume or relist afterwards, as after any stall).
* **Writes wait for the log.** Every write to a cluster first awaits :meth:`writable`
  (``actuators.client.KubeClient(before_write=...)``): from the first failed append until
  the log takes appends again no write starts, so there is no new actuation whose fact
  could not be recorded. A write already in flight when the disk filled completes; its
  fact is held like any other and recorded once there is space. With ``--leader-elect``
  the Lease renewal is a write too: a leader that cannot record stops leading, and a
  standby whose log can be written takes over. The writes it held are refused once the
  log records again (``Daemon.may_write``): only the new leader writes.
* **Said once, where users look.** ``/readyz`` answers 503 naming the problem,
  ``federationd_event_log_writable`` is 0 and ``federationd_event_log_held_events``
  counts what waits; the log gets one WARNING when appends stop and one INFO when they
  resume — never a line per failed attempt.
* **It resumes by itself** once the cause is gone: no restart, no operator step.

A stop while facts are held fails their appends (``LogWriteError``): the process ends
without them, as after a SIGKILL, and the next start observes again what they said (the
watchers relist; the converger verifies what is in effect).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence

from events.log import EventLog, LogClosed, LogError, LogUnwritable, LogWriteError
from events.types import Event, Seq
from federationd.metrics import Metrics

log = logging.getLogger("federationd")

__all__ = ["LogGuard"]

#: Seconds between attempts to append what is held.
RETRY_PERIOD = 1.0

_Held = tuple[list[Event], "asyncio.Future[list[Seq]]"]


class LogGuard:
    """``append`` through it; ``await writable()`` before every write to a cluster."""

    def __init__(self, events_log: EventLog, *, metrics: Metrics, retry: float = RETRY_PERIOD) -> None:
        self._log = events_log
        self._metrics = metrics
        self._retry_period = retry
        self._held: collections.deque[_Held] = collections.deque()
        self._held_events = 0
        self._writable = asyncio.Event()
        self._writable.set()
        self._retrier: asyncio.Task[None] | None = None
        self._stopped = False
        #: why appends fail ("" while they do not)
        self.problem = ""
        self._since = 0.0
        metrics.event_log_writable.set(1)
        metrics.event_log_held_events.set(0)

    @property
    def held(self) -> int:
        """Events waiting for the log."""
        return self._held_events

    async def writable(self) -> None:
        """Returns once the log takes appends (at once while it does); raises
        ``LogWriteError`` if the daemon stops before."""
        await self._writable.wait()
        if self._stopped and self.problem:
            raise LogWriteError(self._log.path, "no write: the daemon stopped while the log could not be written")

    async def append(self, events: Sequence[Event]) -> list[Seq]:
        """Record ``events`` atomically and return their seqs — at once while the log takes
        appends, otherwise once it takes them again. Raises ``LogWriteError`` only for
        what waiting cannot cure (another writer, the daemon stopping) and ``LogError``
        for a log that is closed or damaged."""
        batch = list(events)
        if not self._held and not self.problem:
            try:
                return await self._log.append(batch)
            except LogUnwritable as e:
                self._stop_writes(e)
        if self._stopped:
            raise LogWriteError(self._log.path, "not recorded: the daemon is stopping while the log cannot be written")
        fut: asyncio.Future[list[Seq]] = asyncio.get_running_loop().create_future()
        self._held.append((batch, fut))
        self._count(len(batch))
        if self._retrier is None:
            self._retrier = asyncio.create_task(self._retry(), name="event-log-retry")
        # A cancelled caller leaves its events held: they are recorded all the same (an
        # append whose caller is cancelled "may or may not" be recorded, as the log's own).
        return await asyncio.shield(fut)

    def stop(self) -> None:
        """The daemon stops: what is held will not be recorded; fail its waiters."""
        self._stopped = True
        if self._retrier is not None:
            self._retrier.cancel()
        self._writable.set()  # wakes the writes waiting, which then refuse (writable())
        self._fail_held(LogWriteError(self._log.path, "not recorded: the daemon stopped while the log could not be written"))

    # --- the retry loop ---------------------------------------------------------------------------

    async def _retry(self) -> None:
        try:
            delay = self._retry_period
            while self._held and not self._stopped:
                await asyncio.sleep(delay)
                take = list(self._held)
                events = [e for batch, _ in take for e in batch]
                try:
                    seqs = await self._log.append(events)
                except LogUnwritable as e:
                    self._stop_writes(e)
                    delay = self._retry_period
                    continue
                except LogError as e:
                    # closed or damaged: nothing waiting can cure it
                    for _ in take:
                        self._held.popleft()
                    self._count(-len(events))
                    self._fail(take, e)
                    continue
                for _ in take:
                    self._held.popleft()
                self._count(-len(events))
                i = 0
                for batch, fut in take:
                    if not fut.done():
                        fut.set_result(seqs[i : i + len(batch)])
                    i += len(batch)
                delay = 0.0  # what arrived meanwhile goes at once: the log takes appends
            if not self._held and not self._stopped:
                self._resume()
        finally:
            self._retrier = None

    # --- state changes ----------------------------------------------------------------------------

    def _stop_writes(self, error: LogUnwritable) -> None:
        if self.problem:
            return
        self.problem = f"event log cannot be written: {error.problem}"
        self._since = time.monotonic()
        if not self._stopped:  # a stopping daemon's waiting writes refuse instead
            self._writable.clear()
        self._metrics.event_log_writable.set(0)
        log.warning(
            "%s (%s); new facts wait in memory and no write to a cluster starts until it can",
            self.problem, self._log.path,
        )

    def _resume(self) -> None:
        if not self.problem:
            return
        log.info("event log %s writable again after %.1fs; the facts that waited are recorded",
                 self._log.path, time.monotonic() - self._since)
        self.problem = ""
        self._metrics.event_log_writable.set(1)
        self._writable.set()

    def _fail_held(self, error: LogError) -> None:
        take = list(self._held)
        self._held.clear()
        self._count(-self._held_events)
        self._fail(take, error)

    def _count(self, delta: int) -> None:
        self._held_events += delta
        self._metrics.event_log_held_events.set(self._held_events)

    @staticmethod
    def _fail(take: list[_Held], error: LogError) -> None:
        # each waiter its own exception object (one raised in several tasks would
        # accumulate their tracebacks); a closed log stays LogClosed to its callers
        cls = LogClosed if isinstance(error, LogClosed) else LogWriteError
        for _, fut in take:
            if not fut.done():
                fut.set_exception(cls(error.path, error.problem))
