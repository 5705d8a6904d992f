"""Fault injection for one simulated cluster: what networks and API servers do to clients.

Faults are rules consulted at the start of every API request (latency, error rates per
verb, throttling with Retry-After) plus actions on the cluster (drop every open watch,
refuse connections for a while, forget the history window). Every rule can be bounded
by a count of injections and by a duration, and partitions always heal by themselves,
so a test that forgets to clear a fault cannot wedge the suite. Randomness comes from a
seeded generator per cluster so a failing run can be replayed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from federationd.sim import errors

#: longest partition or latency allowed (seconds): every fault ends on its own
MAX_FAULT_SECONDS = 600.0


@dataclass(slots=True)
class _Rule:
    kind: str  # "latency" | "error" | "throttle"
    verb: str | None
    resource: str | None
    rate: float = 1.0
    code: int = 500
    seconds: float = 0.0
    retry_after: int = 1
    remaining: int | None = None
    until: float | None = None
    hits: int = field(default=0)

    def applies(self, verb: str, resource: str, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.verb is not None and self.verb != verb:
            return False
        return self.resource is None or self.resource == resource


class Faults:
    """The fault rules and actions of one cluster (``cluster.faults``)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        drop_watches: Callable[[], int],
        compact: Callable[[], int],
        partition: Callable[[float], None],
        heal: Callable[[], None],
    ) -> None:
        self._rules: list[_Rule] = []
        self._random = random.Random(seed)
        self._drop_watches = drop_watches
        self._compact = compact
        self._partition = partition
        self._heal = heal
        #: how many requests were failed or delayed, by rule kind
        self.injected: dict[str, int] = {"latency": 0, "error": 0, "throttle": 0}

    # ------------------------------------------------------------------ rules

    def _add(self, rule: _Rule, duration: float | None) -> _Rule:
        if duration is not None:
            rule.until = time.monotonic() + min(duration, MAX_FAULT_SECONDS)
        self._rules.append(rule)
        return rule

    def latency(
        self,
        seconds: float,
        *,
        verb: str | None = None,
        resource: str | None = None,
        count: int | None = None,
        duration: float | None = None,
    ) -> None:
        """Delay matching requests by ``seconds`` ("slow cluster" when unfiltered)."""
        self._add(
            _Rule("latency", verb, resource, seconds=min(seconds, MAX_FAULT_SECONDS), remaining=count),
            duration,
        )

    def error_rate(
        self,
        *,
        rate: float,
        code: int = 500,
        verb: str | None = None,
        resource: str | None = None,
        count: int | None = None,
        duration: float | None = None,
    ) -> None:
        """Fail a fraction of matching requests with 500 or 503 (a Status body)."""
        if code not in (500, 503, 502, 504):
            raise ValueError("code must be one of 500, 502, 503, 504")
        self._add(_Rule("error", verb, resource, rate=rate, code=code, remaining=count), duration)

    def throttle(
        self,
        *,
        retry_after: int = 1,
        rate: float = 1.0,
        verb: str | None = None,
        resource: str | None = None,
        count: int | None = None,
        duration: float | None = None,
    ) -> None:
        """Answer matching requests 429 TooManyRequests with ``Retry-After``."""
        self._add(
            _Rule("throttle", verb, resource, rate=rate, retry_after=retry_after, remaining=count),
            duration,
        )

    def clear(self) -> None:
        """Remove every rule (does not end a partition: use ``heal``)."""
        self._rules.clear()

    # ------------------------------------------------------------------ actions

    def drop_watches(self) -> int:
        """End every open watch stream now (clients see a clean end of stream)."""
        return self._drop_watches()

    def compact(self) -> int:
        """Forget the history window; returns the new floor revision."""
        return self._compact()

    def partition(self, seconds: float) -> asyncio.Future[None]:
        """Refuse connections (listener closed, open connections reset) for ``seconds``.

        Takes effect before it returns; the returned (already completed) future may be
        awaited or ignored. A new partition replaces the running one's duration.
        """
        self._partition(min(max(seconds, 0.0), MAX_FAULT_SECONDS))
        return _done()

    def heal(self) -> asyncio.Future[None]:
        """End a partition now (same calling convention as ``partition``)."""
        self._heal()
        return _done()

    # ------------------------------------------------------------------ hook

    async def before(self, verb: str, resource: str) -> None:
        """Called by the server before serving a request; may sleep or raise."""
        if not self._rules:
            return
        now = time.monotonic()
        self._rules = [r for r in self._rules if r.until is None or now < r.until]
        delay = 0.0
        for r in self._rules:
            if not r.applies(verb, resource, now):
                continue
            if r.kind == "latency":
                delay += r.seconds
                r.hits += 1
                if r.remaining is not None:
                    r.remaining -= 1
                self.injected["latency"] += 1
        if delay:
            await asyncio.sleep(delay)
        for r in self._rules:
            if r.kind == "latency" or not r.applies(verb, resource, now):
                continue
            if self._random.random() >= r.rate:
                continue
            r.hits += 1
            if r.remaining is not None:
                r.remaining -= 1
            self.injected[r.kind] += 1
            if r.kind == "throttle":
                raise errors.TooManyRequests(
                    "the server has received too many requests and has asked us to try again later",
                    retry_after=r.retry_after,
                )
            if r.code == 503:
                raise errors.ServiceUnavailable("the server is currently unable to handle the request")
            raise errors.InternalError(
                "an error on the server (\"injected fault\") has prevented the request from succeeding",
                code=r.code,
                reason="InternalError",
            )


def _done() -> asyncio.Future[None]:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut
