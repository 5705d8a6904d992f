"""A leader-only writer that works in passes over a small plan: the trust writer
(``cacerts``) and the cluster DNS writer share this loop.

Each wake-up (a new plan, a resync, leadership) runs one ``reconcile_once()``; a pass that
reports something unsettled (a request failed) is retried with a doubling delay, from
0.5 s up to ``max_retry``, unless a new wake-up comes first. An exception from a pass is
a bug, not a reason to stop writing: it is logged by class only (never the data) and the
pass is retried. ``pause()`` abandons an in-flight request (leadership lost, shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from federationd.cancellation import cancel_and_wait

log = logging.getLogger(__name__)


class PassLoop:
    """Subclasses implement :meth:`reconcile_once`; ``label`` names the task and the log
    lines; ``_settled`` is the last pass's verdict (its initial value is the subclass's)."""

    label = "passes"

    def __init__(self, *, max_retry: float, settled: bool) -> None:
        self._max_retry = max_retry
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._settled = settled

    async def reconcile_once(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def resync(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._wake.set()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.label)

    async def pause(self) -> None:
        """Stop writing (leadership lost, or shutting down); an in-flight request is
        abandoned. :meth:`start` resumes."""
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_wait(task)

    async def stop(self) -> None:
        await self.pause()

    async def _run(self) -> None:
        retry = 0.5
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._settled = False
            try:
                settled = await self.reconcile_once()
            except Exception as e:  # a bug must not end the loop; say what, not the data
                log.warning("%s: pass failed: %s", self.label, type(e).__name__)
                settled = False
            self._settled = settled
            if settled:
                retry = 0.5
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(retry):
                    await self._wake.wait()
            self._wake.set()
            retry = min(retry * 2, self._max_retry)
