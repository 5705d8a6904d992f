"""The timer source: time enters the log as facts, never as a clock read in a decision.

The membership projection asks for deadlines (a leaving remote's clean-up is bounded by
``--remote-cleanup-timeout``); this source appends ``CleanupDeadlinePassed`` when one
passes, and the projection reads that fact. So a replay at any sequence number makes
exactly the decisions the daemon made, whatever the clock says during the replay.

A deadline is ``since + timeout`` where ``since`` is the time recorded in the event that
began the leave (seconds since the epoch, as the watchers stamp their facts), so a
daemon restarted after the deadline appends the fact at once. The fact names the
``since_seq`` it was set for: one appended for an earlier leave (or twice, by two
daemons) is ignored by the fold. One task sleeps until the earliest deadline; a new set
of deadlines wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from events import types as ev
from events.types import ClusterName, Event

log = logging.getLogger(__name__)

Append = Callable[[Sequence[Event]], Awaitable[object]]


def cleanup_key(remote: str) -> str:
    return f"Cleanup//{remote}"


class DeadlineTimer:
    """Appends ``CleanupDeadlinePassed`` for every requested deadline that passes.

    :meth:`set` takes ``remote → (since_seq, since)`` after every derivation;
    :meth:`start` / :meth:`stop` run the task (the daemon runs it while it leads, as only
    the leader acts on the decisions)."""

    def __init__(
        self, append: Append, *, timeout: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._append = append
        self._timeout = timeout
        self._clock = clock
        self._wanted: dict[str, tuple[int, float]] = {}
        self._fired: set[tuple[str, int]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def set(self, deadlines: Mapping[str, tuple[int, float]]) -> None:
        wanted = dict(deadlines)
        if wanted != self._wanted:
            self._wanted = wanted
            self._fired &= {(n, s) for n, (s, _) in wanted.items()}
            self._wake.set()

    def pending(self) -> dict[str, float]:
        """remote → when its deadline passes (for ``/debug``)."""
        return {n: since + self._timeout for n, (s, since) in self._wanted.items() if (n, s) not in self._fired}

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="deadlines")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # ``wait`` absorbs the child's cancellation, not ours (re-raised below)
        await asyncio.wait([task])
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock()
            due = [(n, s) for n, (s, since) in sorted(self._wanted.items())
                   if (n, s) not in self._fired and since + self._timeout <= now]
            if due:
                events: list[Event] = [
                    ev.CleanupDeadlinePassed(
                        cluster=ClusterName(n), key=cleanup_key(n), time=now, since_seq=s,
                        timeout=self._timeout,
                    )
                    for n, s in due
                ]
                try:
                    await self._append(events)
                except Exception as e:
                    log.warning("deadline facts not appended: %s", e)
                    await asyncio.sleep(1.0)
                    continue
                self._fired.update(due)
                for n, _ in due:
                    log.info("remote %s: clean-up deadline passed (%gs)", n, self._timeout)
                continue
            waits = [since + self._timeout - now for n, (s, since) in self._wanted.items() if (n, s) not in self._fired]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(waits) if waits else None):
                    await self._wake.wait()


__all__ = ["DeadlineTimer", "cleanup_key"]
