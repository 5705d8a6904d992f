"""Jittered exponential backoff, client-go's ``ExponentialBackoffManager`` shape.

Delays start at ``initial`` (0.8 s), double up to ``cap`` (30 s), each stretched by up to
``jitter`` (10 %) so that many reflectors or clusters that failed together do not retry
together. After ``reset_after`` seconds without a failure the next delay starts from
``initial`` again ("reset after a healthy period").

Clock and randomness are injected so tests control time and assert exact delays.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class BackoffPolicy:
    initial: float = 0.8
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.1
    reset_after: float = 120.0


class Backoff:
    """Stateful delay generator: ``next()`` after each failure, ``reset()`` on success
    that proves health (or let ``reset_after`` do it)."""

    def __init__(
        self,
        policy: BackoffPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy or BackoffPolicy()
        self._clock = clock
        self._rand = rand
        self._steps = 0
        self._last: float | None = None

    @property
    def steps(self) -> int:
        """Failures counted since the last reset."""
        return self._steps

    def next(self) -> float:
        """The delay before the next attempt (seconds)."""
        p = self.policy
        now = self._clock()
        if self._last is not None and now - self._last > p.reset_after:
            self._steps = 0
        base = min(p.initial * p.factor ** self._steps, p.cap)
        self._steps = min(self._steps + 1, 64)  # long outages must not overflow a float
        self._last = now
        return base * (1.0 + p.jitter * self._rand())

    def reset(self) -> None:
        self._steps = 0
        self._last = None
