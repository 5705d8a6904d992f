"""Waiting for conditions with a deadline (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def wait_for(
    cond: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - the deadline of a polled condition
    what: str = "condition",
    max_interval: float = 0.1,
) -> None:
    """Poll ``cond`` (backing off from 5 ms to ``max_interval``) until it is true; an
    ``AssertionError`` naming ``what`` once ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = cond()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_interval)
