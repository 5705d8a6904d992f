"""Cancel a child task and wait for it, without swallowing the caller's own cancellation.

``task.cancel(); with suppress(CancelledError): await task`` is the usual way to stop a
child — and it is wrong when the *caller* is cancelled while it waits: ``await task``
raises the caller's ``CancelledError``, the ``suppress`` swallows it, the caller carries
on, and whoever cancelled it waits forever (a shutdown that never ends).
:func:`cancel_and_wait` waits with ``asyncio.wait`` (which never raises the child's
cancellation, only the caller's) and re-raises a cancellation of the caller that anything
below absorbed.

Low in the package on purpose (it imports nothing of federationd): watchers, the leader
elector and the actuators all stop children this way. ``actuators.tasks`` reaps groups
of tasks on the same principle.
"""

from __future__ import annotations

import asyncio
from typing import Any


def raise_if_cancelled() -> None:
    """Re-raise a cancellation of the current task that something below swallowed."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and wait until every one has ended. Their cancellation is
    absorbed, another exception of theirs re-raised (as ``await task`` would), the
    caller's cancellation always propagated."""
    if not tasks:
        return
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks)
    raise_if_cancelled()
    for t in tasks:
        if not t.cancelled():
            exc = t.exception()
            if exc is not None:
                raise exc
