"""The status writer: puts the derived status on each ``Istio`` / ``RemoteIstio`` CR.

Status is derived from the log (``projections.derive``), so this module only makes the
cluster show it: it writes the ``status`` subresource when — and only when — what the CR
shows differs from what was derived. It remembers what it wrote (or found already in
place, by reading the CR once after a restart), so a resync or a re-derivation with the
same result sends no request at all, and a restart sends reads, not writes.

A condition keeps the ``lastTransitionTime`` the CR shows while its ``status`` stays the
same (Kubernetes' rule, apimachinery's ``meta.SetStatusCondition``): the derivation dates
a status by the newest fact behind it, so without the rule a remote's ConfigMap update
would re-date — and re-write — its RemoteIstio's Available status on every gateway change.

Status writes use server-side apply on the status subresource (field manager
``federationd``), so a field federationd stops setting (an ``ErrorMessage`` once the
error is gone) disappears instead of lingering as it would with a merge patch.

Transitions of ``Status`` (``Reconciling`` → ``Available``, anything → ``ReconcileFailed``)
and failures also become Kubernetes Events on the CR, for ``kubectl describe``, recorded
beside the status writes (one CR's in order). A CR shown ``Available`` shows
``Reconciling`` only once it has been derived so for ``RECONCILING_GRACE``: a brief
reconcile (every remote's ConfigMap rewritten for a gateway change) is not news. A status
the server refuses as invalid — a CR whose stored spec breaks a CRD validation rule, on a
release (1.25 to 1.29) that refuses every write to it — is retried with the queue's
backoff only, and its ``ReconcileFailed`` message goes into a Warning Event, the one
place left to say it. Each write
is appended to the log as ``ActuationApplied``/``ActuationFailed`` with verb ``status``
(or ``event``), which the projection ignores for inventory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from events import types as ev
from events.types import ClusterName, Event
from federationd.actuators.client import ApiError, ApiInvalid, ApiNotFound, KubeClient, NotLeading
from federationd.actuators.converge import redact
from federationd.actuators.tasks import reap
from federationd.actuators.workqueue import RateLimit, WorkQueue, run_worker
from federationd.api import v1beta1
from federationd.metrics import METRICS, Metrics
from federationd.projections.derive import (
    AVAILABLE,
    CR_API_VERSION,
    RECONCILE_FAILED,
    RECONCILING,
    DesiredStatus,
)
from federationd.projections.state import EVENT, STATUS
from federationd.render.objects import content_hash

log = logging.getLogger(__name__)

Append = Callable[[Sequence[Event]], Awaitable[object]]

#: How long a CR shown ``Available`` must be derived ``Reconciling`` before the CR says so
#: (and gets its Event): a gateway change rewrites every remote's ``istio`` ConfigMap,
#: which at 100 clusters takes a few hundred milliseconds.
RECONCILING_GRACE = 1.0


def _same(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    return v1beta1.status(dict(desired)) == v1beta1.status(dict(observed or {}))


def keep_transition_times(desired: dict[str, Any], shown: Mapping[str, Any] | None) -> dict[str, Any]:
    """``desired`` with Kubernetes' rule for conditions (apimachinery's
    ``meta.SetStatusCondition``): a condition's ``lastTransitionTime`` moves only when its
    ``status`` does. A condition the CR already shows with the same status keeps the time
    shown, so a transition the CR never showed (Available, a Reconciling that was derived
    and superseded before it was written, Available again) writes nothing."""
    shown_at = {
        c.get("type"): (c.get("status"), c.get("lastTransitionTime"))
        for c in (shown or {}).get("conditions") or ()
        if isinstance(c, Mapping)
    }
    out: list[Any] | None = None
    conditions = desired.get("conditions") or []
    for i, c in enumerate(conditions):
        was = shown_at.get(c.get("type"))
        if was is None or was[0] != c.get("status") or not was[1] or was[1] == c.get("lastTransitionTime"):
            continue
        if out is None:
            out = list(conditions)
        out[i] = {**c, "lastTransitionTime": was[1]}
    return desired if out is None else {**desired, "conditions": out}


class StatusWriter:
    """One per cluster that holds CRs (the master). ``start()``, ``set_desired()``, ``stop()``."""

    def __init__(
        self,
        cluster: str,
        client: KubeClient,
        *,
        append: Append,
        clock: Callable[[], float] = time.time,
        rate_limit: RateLimit | None = None,
        metrics: Metrics | None = None,
        events: bool = True,
    ) -> None:
        self.cluster = ClusterName(cluster)
        self.client = client
        self._append = append
        self._clock = clock
        self._metrics = metrics or METRICS
        self._events = events
        self.queue: WorkQueue[str] = WorkQueue(
            f"status-{cluster}", rate_limit=rate_limit, metrics=self._metrics, order=self._order
        )
        self._desired: dict[str, DesiredStatus] = {}
        #: key → hash of the desired status the CR is known to show (transition times
        #: aside, ``keep_transition_times``)
        self._shown: dict[str, str] = {}
        #: key → the status the CR shows, as written or read
        self._showing: dict[str, dict[str, Any]] = {}
        #: key → the Status value last shown (for transition Events)
        self._value: dict[str, str] = {}
        #: key → hash of a status the server refused as invalid (a validation rule the
        #: CR's stored spec breaks): the queue retries it with backoff, a re-derivation
        #: (its own ActuationFailed is one) does not re-add it at once. Transient errors
        #: are not recorded: any re-derivation retries those.
        self._refused: dict[str, str] = {}
        self._worker: asyncio.Task[None] | None = None
        #: key → the task creating its latest transition Event: Events go out beside the
        #: status writes (a slow Event does not hold the next CR's status back), each
        #: after the CR's previous one, so ``kubectl describe`` lists them in order
        self._events_pending: dict[str, asyncio.Task[None]] = {}
        self.active = False
        self.writes = 0

    def start(self) -> None:
        self.active = True
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                run_worker(self.queue, self._handle), name=f"status {self.cluster}"
            )
        for key in self._desired:
            self.queue.add(key)

    def pause(self) -> None:
        self.active = False

    async def stop(self) -> None:
        self.active = False
        await self.queue.shutdown()
        task, self._worker = self._worker, None
        if task is not None:
            await reap([task], cancel=False, grace=10.0)
        if self._events_pending:
            # informational: a short wait, then they are cancelled (the daemon's shutdown
            # grace must cover the status writes first)
            await reap(list(self._events_pending.values()), cancel=False, grace=2.0)

    def set_desired(self, statuses: Mapping[str, DesiredStatus]) -> None:
        mine = {k: s for k, s in statuses.items() if s.cluster == self.cluster}
        before, self._desired = self._desired, mine
        for key in list(self._shown):
            if key not in mine:
                self._shown.pop(key, None)
                self._showing.pop(key, None)
        if not self.active:
            return
        for key, s in mine.items():
            # The same DesiredStatus object as last time (derivation reuses what did not
            # change) was compared then and, if it differed, queued: no need to hash it.
            if before.get(key) is s and key in self._shown:
                continue
            wanted = content_hash(s.status)
            if self._shown.get(key) != wanted and self._refused.get(key) != wanted:
                if self._value.get(key) == AVAILABLE and s.status.get("Status") == RECONCILING:
                    # a CR shown Available shows Reconciling only if it lasts: a
                    # ConfigMap update on every remote (a gateway change) is not news
                    self.queue.add_after(key, RECONCILING_GRACE)
                else:
                    self.queue.add(key)

    def _order(self, key: str) -> int:
        """A CR going to Reconciling is written after the others waiting: a gateway change
        on a joining remote briefly sets every remote Reconciling (its ConfigMap is
        rewritten), and the joining remote's Available must not queue behind those (which,
        left waiting, are often superseded by Available before they are written)."""
        s = self._desired.get(key)
        return 1 if s is not None and s.status.get("Status") == RECONCILING else 0

    def idle(self) -> bool:
        return not len(self.queue) and not self.queue.processing() and not self._events_pending and all(
            self._shown.get(k) == content_hash(s.status) for k, s in self._desired.items()
        )

    def forget(self, key: str) -> None:
        """The CR changed on the server (e.g. its status was edited): read it again."""
        self._shown.pop(key, None)
        self._showing.pop(key, None)
        self._refused.pop(key, None)

    async def _handle(self, key: str) -> None:
        shown = await self._write(key)
        # The derivation may have moved on while the write was in flight, even back to
        # what the CR showed before it (which ``set_desired`` then found already shown,
        # and did not queue): look again, or the CR keeps the older status.
        now = self._desired.get(key)
        if shown is not None and now is not None and self.active and content_hash(now.status) != shown:
            self.queue.add(key)

    async def _write(self, key: str) -> str | None:
        """Make the CR show the desired status; the hash it shows afterwards, or None when
        nothing was looked at (a failure raises)."""
        s = self._desired.get(key)
        if s is None or not self.active:
            return None
        wanted = content_hash(s.status)
        if self._shown.get(key) == wanted:
            return wanted
        cr: dict[str, Any] | None = None
        showing = self._showing.get(key)
        if key in self._shown and showing is not None:
            # This process wrote (or read) the status the CR shows: no need to read it
            # again before writing the next one.
            previous = self._value.get(key, "")
        else:
            try:
                cr = await self.client.get(CR_API_VERSION, s.kind, s.namespace, s.name)
            except ApiNotFound:
                return None  # deleted meanwhile; its removal event will drop it from desired
            showing = cr.get("status") or {}
            previous = str(showing.get("Status", ""))
        status = keep_transition_times(s.status, showing)
        if _same(status, showing):
            self._shown[key] = wanted
            self._showing[key] = showing
            self._value[key] = previous
            return wanted
        obj_key = f"{CR_API_VERSION}/{s.kind}/{s.namespace}/{s.name}"
        started = time.monotonic()
        try:
            answer = await self.client.patch_status(CR_API_VERSION, s.kind, s.namespace, s.name, status, apply=True)
        except ApiNotFound:
            self._shown.pop(key, None)
            self._showing.pop(key, None)
            return None  # deleted meanwhile; its removal event will drop it from desired
        except NotLeading:
            return None  # not sent, nothing failed: the leader writes it
        except ApiError as e:
            first = self._refused.get(key) != wanted
            if isinstance(e, ApiInvalid):
                self._refused[key] = wanted
            await self._append(
                [
                    ev.ActuationFailed(
                        cluster=self.cluster,
                        key=obj_key,
                        time=self._clock(),
                        verb=STATUS,
                        content_hash=wanted,
                        latency=time.monotonic() - started,
                        error=redact(f"{type(e).__name__}: {e.message}"),
                    )
                ]
            )
            value = str(s.status.get("Status", ""))
            if first and self._events and value == RECONCILE_FAILED and isinstance(e, ApiInvalid):
                # The server refuses every write to the CR (a validation rule its stored
                # spec breaks, on a release without ratcheting): the Event is then the
                # only place the user can read why.
                if cr is None:
                    with contextlib.suppress(ApiError):
                        cr = await self.client.get(CR_API_VERSION, s.kind, s.namespace, s.name)
                if cr is not None:
                    await self._event(cr, s, value, obj_key)
            raise
        self._refused.pop(key, None)
        self.writes += 1
        self._shown[key] = wanted
        self._showing[key] = status
        await self._append(
            [
                ev.ActuationApplied(
                    cluster=self.cluster,
                    key=obj_key,
                    time=self._clock(),
                    verb=STATUS,
                    content_hash=wanted,
                    latency=round(time.monotonic() - started, 6),
                )
            ]
        )
        value = str(s.status.get("Status", ""))
        if self._events and value != previous and value:
            self._event_after(key, cr if cr is not None else answer, s, value, obj_key)
        self._value[key] = value
        return wanted

    def _event_after(self, key: str, cr: dict[str, Any], s: DesiredStatus, value: str, obj_key: str) -> None:
        """Record a transition Event once the CR's previous one is recorded."""
        before = self._events_pending.get(key)

        async def record() -> None:
            if before is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(before)
            await self._event(cr, s, value, obj_key)

        task = asyncio.get_running_loop().create_task(record(), name=f"status event {obj_key}")
        self._events_pending[key] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._events_pending.get(key) is t:
                del self._events_pending[key]
            if not t.cancelled() and t.exception() is not None:
                log.warning("%s: could not record an Event on %s: %s", self.cluster, obj_key, t.exception())

        task.add_done_callback(done)

    async def _event(self, cr: dict[str, Any], s: DesiredStatus, value: str, obj_key: str) -> None:
        message = str(s.status.get("ErrorMessage") or f"{s.kind} {s.namespace}/{s.name} is {value}")
        try:
            await self.client.create_event(
                cr,
                reason=value,
                message=message,
                type="Warning" if value == RECONCILE_FAILED else "Normal",
            )
        except ApiError as e:
            log.warning("%s: could not record an Event on %s: %s", self.cluster, obj_key, e.message)
            return
        await self._append(
            [
                ev.ActuationApplied(
                    cluster=self.cluster,
                    key=obj_key,
                    time=self._clock(),
                    verb=EVENT,
                    content_hash=content_hash(message),
                    latency=0.0,
                )
            ]
        )
