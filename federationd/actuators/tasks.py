"""Stopping child tasks without swallowing our own cancellation.

``with suppress(CancelledError): await child`` after ``child.cancel()`` is the usual way to
reap a task — and it is wrong when the *awaiting* task is itself being cancelled at that
moment: its own ``CancelledError`` is swallowed too, it carries on, and whoever cancelled
it waits forever (a daemon that never finishes its shutdown). These helpers reap children
and re-raise a cancellation that was meant for the caller (``Task.cancelling()``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def raise_if_cancelled() -> None:
    """Re-raise a cancellation of the current task that something below swallowed."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def reap(tasks: Iterable[asyncio.Task[Any]], *, cancel: bool = True, grace: float | None = None) -> None:
    """Cancel (unless ``cancel=False``: let them finish) and await ``tasks``; their
    errors are logged, their cancellation absorbed, ours propagated. With ``grace``,
    tasks still running after it are cancelled."""
    pending = [t for t in tasks if t is not None]
    if not pending:
        return
    if cancel:
        for t in pending:
            t.cancel()
    done, not_done = await asyncio.wait(pending, timeout=grace)
    if not_done:
        for t in not_done:
            t.cancel()
        done2, _ = await asyncio.wait(not_done)
        done |= done2
    for t in done:
        if t.cancelled():
            continue
        exc = t.exception()
        if exc is not None:
            log.warning("task %s ended with %s: %s", t.get_name(), type(exc).__name__, exc)
    raise_if_cancelled()
