"""Leader election on a ``coordination.k8s.io/v1`` Lease, client-go's algorithm.

Only the leader actuates; standbys keep watching so they can take over warm.

* **Acquire**: every ``retry_period`` (jittered) read the Lease. It can be taken when it
  does not exist, has no holder, or its holder has not renewed for ``lease_duration`` —
  measured on *our* monotonic clock from when we last saw the record change, not from the
  timestamps in it, so clock skew between machines does not matter (as in client-go).
  Writes carry the observed ``resourceVersion``: two candidates racing get one 409.
* **Renew**: the leader updates ``renewTime`` every ``retry_period``; if it cannot renew
  for ``renew_deadline`` it stops leading (``on_stopped_leading``) *before* the lease can
  expire for others (renew_deadline < lease_duration), so two leaders never overlap.
* **Release**: on ``stop()`` the leader writes an empty holder with a 1 s duration so a
  standby takes over at its next retry instead of waiting out the lease.

Defaults 15 s / 10 s / 2 s as in client-go. Metric: ``leader_election_master_status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from federationd import config
from federationd.actuators.client import ApiConflict, ApiError, ApiNotFound, KubeClient
from federationd.cancellation import cancel_and_wait
from federationd.clusters.clock import REAL_CLOCK, Clock
from federationd.metrics import METRICS, Metrics

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None] | None]
LEASE_API = "coordination.k8s.io/v1"


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _micro_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaign for one Lease. ``start()`` / ``stop()``; watch ``is_leader``."""

    def __init__(
        self,
        client: KubeClient,
        *,
        name: str,
        namespace: str,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        clock: Clock = REAL_CLOCK,
        wall: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
    ) -> None:
        problem = config.lease_timing_problem(
            lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period
        )
        if problem:
            raise config.ConfigError(problem)
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock = clock
        self._wall = wall
        self._rand = rand
        self._gauge = (metrics or METRICS).leader_election_master_status.labels(name=name)
        self._gauge.set(0)
        self._observed: dict[str, Any] | None = None  # the Lease spec we last saw
        self._observed_rv = ""
        self._observed_at = 0.0
        self._leading = False
        self._task: asyncio.Task[None] | None = None
        self.transitions = 0  # times this elector became leader

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def holder(self) -> str:
        """The holder as last observed ("" if none)."""
        return str((self._observed or {}).get("holderIdentity") or "")

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name=f"leader-election {self.name}")
        return self._task

    async def stop(self, *, release: bool = True) -> None:
        """Stop campaigning; a leader releases the lease (unless ``release=False``, which
        simulates a crash: the lease then has to expire)."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        if self._leading:
            if release:
                # Best effort, bounded: a shutdown must not hang on an unreachable API
                # server (the lease then simply expires).
                with contextlib.suppress(ApiError, TimeoutError):
                    async with asyncio.timeout(self.renew_deadline):
                        await self._release()
            await self._set_leading(False)

    async def run(self) -> None:
        """Acquire, lead until the lease is lost, and campaign again; forever."""
        while True:
            await self._acquire()
            await self._set_leading(True)
            await self._renew_until_lost()
            await self._set_leading(False)

    # --- the algorithm -----------------------------------------------------------------------

    def _jittered(self) -> float:
        return self.retry_period * (1.0 + 0.2 * self._rand())

    async def _attempt(self, budget: float) -> bool:
        """One acquire-or-renew bounded by ``budget`` seconds: a hung API server must not
        keep a leader believing it leads after its lease could have expired."""
        try:
            async with asyncio.timeout(max(0.001, budget)):
                return await self._try_acquire_or_renew()
        except TimeoutError:
            log.debug("lease request timed out after %.2fs", budget)
            return False

    async def _acquire(self) -> None:
        while True:
            if await self._attempt(self.renew_deadline):
                log.info("%s became leader of %s/%s", self.identity, self.namespace, self.name)
                return
            await self._clock.sleep(self._jittered())

    async def _renew_until_lost(self) -> None:
        last_renew = self._clock.now()
        while True:
            await self._clock.sleep(self.retry_period)
            budget = self.renew_deadline - (self._clock.now() - last_renew)
            if await self._attempt(budget):
                last_renew = self._clock.now()
                continue
            if self._clock.now() - last_renew >= self.renew_deadline or (
                    self.holder and self.holder != self.identity):
                log.warning("%s lost the lease %s/%s", self.identity, self.namespace, self.name)
                return

    async def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        self._gauge.set(1 if leading else 0)
        if leading:
            self.transitions += 1
        callback = self._on_started if leading else self._on_stopped
        if callback is not None:
            result = callback()
            if inspect.isawaitable(result):
                await result

    def _spec(self, *, acquire_time: str, transitions: int) -> dict[str, Any]:
        now = _micro_time(self._wall())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = dict(lease.get("spec") or {})
        rv = str((lease.get("metadata") or {}).get("resourceVersion", ""))
        # The record "changes" when anything but our own view of it moves; the expiry
        # clock restarts from our own observation time.
        if self._observed is None or spec != self._observed:
            self._observed_at = self._clock.now()
        self._observed = spec
        self._observed_rv = rv

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.client.get(LEASE_API, "Lease", self.namespace, self.name)
        except ApiNotFound:
            body = {"apiVersion": LEASE_API, "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(acquire_time="", transitions=0)}
            try:
                self._observe(await self.client.create(body))
            except ApiError as e:
                log.debug("creating lease failed: %s", e.message)
                return False
            return True
        except ApiError as e:
            log.debug("reading lease failed: %s", e.message)
            return False
        self._observe(lease)
        spec = self._observed or {}
        holder = str(spec.get("holderIdentity") or "")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and (
                self._observed_at + duration > self._clock.now()):
            return False  # held by someone else and not expired
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder != self.identity:
            transitions += 1
            acquire_time = ""
        else:
            acquire_time = str(spec.get("acquireTime") or "")
        lease = dict(lease)
        lease["spec"] = self._spec(acquire_time=acquire_time, transitions=transitions)
        try:
            self._observe(await self.client.update(lease))
        except ApiConflict:
            return False  # someone else wrote first; re-read next time
        except ApiError as e:
            log.debug("updating lease failed: %s", e.message)
            return False
        return True

    async def _release(self) -> None:
        lease = await self.client.get(LEASE_API, "Lease", self.namespace, self.name)
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return
        spec.update(holderIdentity="", leaseDurationSeconds=1,
                    renewTime=_micro_time(self._wall()))
        lease = dict(lease, spec=spec)
        self._observe(await self.client.update(lease))
        log.info("%s released the lease %s/%s", self.identity, self.namespace, self.name)
