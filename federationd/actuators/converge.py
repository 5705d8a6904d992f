"""The converger: make one cluster's managed objects equal to the desired ones.

One ``ClusterConverger`` per cluster. It holds the cluster's latest ``ClusterDesired``
(from ``projections.derive``) and an *observed inventory*: one reflector per kind it
manages, listing and watching the objects labelled ``app.kubernetes.io/managed-by=
federationd`` (and every Namespace, because injection labels are patches on namespaces
federationd does not own). Each object key goes through a per-cluster deduplicating
``WorkQueue``; the handler compares desired with observed and writes only the difference:

* **In effect** means the observed object carries the content-hash annotation of the
  desired content *and* every field federationd sets has its value (a hand edit of a
  field, or a deletion, is drift). Server-side normalisation (a quantity written as
  ``1000m`` read back as ``1``) is compared by value; anything else the server changes
  on its own is learnt from the response of our apply, so it never causes a second write.
* Not in effect → server-side apply (field manager ``federationd``, forced; fields of
  other managers — a user's extra label — are left alone by the server).
* Owned and no longer desired → delete — except what holds other people's data
  (``actuators.keep``): a CRD is left exactly as it is, a Namespace someone else wrote or
  that holds foreign objects is kept with federationd's fields released. A *patch* no longer desired (injection labels on
  a namespace) → apply an empty patch, which releases the fields federationd owned.
* A held cluster (invalid spec, render error) is left exactly as it is.
* Credentials are in the desired state only as ``federationd.secretref`` placeholders:
  the body is completed with the values from ``lookup`` right before the apply, and the
  in-effect comparison uses the completed body (the content hash stays the placeholder
  one). A value that is not available fails that object with a secret-free error.

Every outcome is appended to the log — ``ActuationApplied`` / ``ActuationFailed`` with the
cluster, object key, content hash, latency and (redacted) error — and failures are retried
with the queue's per-item backoff. A resync (``resync()``) re-checks every key against the
reflectors' stores: with nothing changed it sends **zero** mutating requests.

Writes go in ``render.objects.sort_key`` order (CRDs and Namespaces first): a cluster's
``WORKERS`` workers write objects of one kind in parallel, and a kind starts only once
no write of another kind is in flight, so a custom resource is not tried before its CRD
(nor a joining remote's sixty objects written one round trip after the other); a kind
that is not served yet fails and is retried with backoff. The order is for creates (and
deletions): an update changes an object that exists, and a key the inventory already
shows in effect (the watch event of our own write) writes nothing, so neither waits for
its kind's turn nor holds back later kinds. The queue hands keys out in the same order.
Across clusters, writes run in parallel under one global cap
(``WriteLanes``) with lanes of their own for the master, so a hundred remotes joining at
once neither queue behind each other nor starve the master. In a lane, the writes of a
cluster that is joining (some desired object never applied there) and of objects a
cluster never had go before updates: a remote joining a converged fleet writes its
control plane first, not after the new network's ConfigMap update on every other cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import heapq
import itertools
import logging
import re
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from events import types as ev
from events.types import ClusterName, Event
from federationd import secretref
from federationd.actuators import keep
from federationd.actuators.client import ApiError, ApiNotFound, KubeClient, NotLeading
from federationd.actuators.tasks import raise_if_cancelled, reap
from federationd.actuators.workqueue import RateLimit, WorkQueue, run_worker
from federationd.metrics import METRICS, Metrics
from federationd.projections.derive import ClusterDesired, DesiredObject, changed_keys, split_key
from federationd.projections.state import APPLY, DELETE, RELEASE, VERIFY, Actuation
from federationd.render.objects import MANAGED_BY, MANAGED_BY_LABEL, content_hash, sort_key
from federationd.watchers.reflector import CompactStore, Reflector

log = logging.getLogger(__name__)

#: Annotation carrying the content hash of what federationd applied.
CONTENT_HASH_ANNOTATION = "federationd.io/content-hash"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

Append = Callable[[Sequence[Event]], Awaitable[object]]
Obj = dict[str, Any]
Kind = tuple[str, str]  # (apiVersion, kind)

_SECRETISH = re.compile(r"[A-Za-z0-9+/=_\-.]{48,}")


def redact(message: str) -> str:
    """Errors go to the log and status: cut them short and blank anything token-like."""
    return _SECRETISH.sub("<redacted>", message)[:500]


# --- comparison -----------------------------------------------------------------------------

_MISSING = object()


def _quantity(v: Any) -> Decimal | None:
    suffixes = {
        "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
        "T": Decimal(10) ** 12, "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20,
        "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    }
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return Decimal(str(v))
    if not isinstance(v, str) or not v:
        return None
    for suffix in ("Ki", "Mi", "Gi", "Ti", "m", "k", "M", "G", "T"):
        if v.endswith(suffix):
            try:
                return Decimal(v[: -len(suffix)]) * suffixes[suffix]
            except InvalidOperation:
                return None
    try:
        return Decimal(v)
    except InvalidOperation:
        return None


def _scalar_equal(desired: Any, observed: Any) -> bool:
    if desired == observed and type(desired) is type(observed):
        return True
    if isinstance(desired, str) and isinstance(observed, str):
        return False if desired == observed else _quantity_equal(desired, observed)
    return _quantity_equal(desired, observed)


def _quantity_equal(a: Any, b: Any) -> bool:
    qa, qb = _quantity(a), _quantity(b)
    return qa is not None and qb is not None and qa == qb


def contains(desired: Any, observed: Any) -> bool:
    """Does ``observed`` hold every field and value of ``desired``? (Extra fields — server
    defaults, other managers' fields — are fine.)"""
    if isinstance(desired, dict):
        if not isinstance(observed, dict):
            return False
        return all(k in observed and contains(v, observed[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(observed) != len(desired):
            return False
        return all(contains(d, o) for d, o in zip(desired, observed, strict=True))
    return _scalar_equal(desired, observed)


def project(desired: Any, observed: Any) -> Any:
    """The part of ``observed`` at the paths ``desired`` sets (for learning normalisation)."""
    if isinstance(desired, dict) and isinstance(observed, dict):
        return {k: project(v, observed.get(k)) for k, v in desired.items()}
    if (
        isinstance(desired, list)
        and isinstance(observed, list)
        and len(desired) == len(observed)
    ):
        return [project(d, o) for d, o in zip(desired, observed, strict=True)]
    return observed


#: Kinds federationd only patches, reflected by what its patch sets: every Namespace
#: (injection labels), and kubeconfig Secrets labelled for pilot's remote registries.
_INVENTORY_SELECTORS: dict[str, str | None] = {
    "Namespace": None,
    "Secret": "istio/multiCluster=true",
}


def with_hash(obj: Obj, h: str) -> Obj:
    """The body to apply: the desired object plus the content-hash annotation."""
    body = dict(obj)
    meta = dict(body.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), CONTENT_HASH_ANNOTATION: h}
    body["metadata"] = meta
    return body


def generation_of(obj: Obj | None) -> int:
    """``metadata.generation`` of an object as the server returned it (0 if absent)."""
    try:
        return int(((obj or {}).get("metadata") or {}).get("generation") or 0)
    except (TypeError, ValueError):
        return 0


class _Unread:
    """The default of ``_in_effect``'s ``observed``: read it from the inventory."""


UNREAD = _Unread()


def observed_hash(obj: Obj | None) -> str:
    if obj is None:
        return ""
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(CONTENT_HASH_ANNOTATION, ""))


_SHAPE_ENCODER = msgspec.json.Encoder()


def shape_hash(obj: Obj) -> bytes:
    """A digest of ``obj`` but its ``status`` and ``metadata.resourceVersion``: equal for
    two stored versions that differ in those alone (a load balancer's address, a
    Deployment's readiness), so a check that found the first in effect holds for the
    second. Conservative: any other difference, a field order included, makes them
    differ (and the object is compared again)."""
    meta = obj.get("metadata")
    rest = {k: v for k, v in obj.items() if k != "status"}
    if isinstance(meta, dict) and "resourceVersion" in meta:
        rest["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
    return hashlib.blake2b(_SHAPE_ENCODER.encode(rest), digest_size=16).digest()


def _message(error: ApiError | secretref.SecretUnavailable) -> str:
    return error.message if isinstance(error, ApiError) else str(error)


#: Seconds an object's inventory may lag our own apply of it before the converger
#: takes the difference for drift (and writes again).
APPLIED_LAG = 2.0


def _version(obj: Obj | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


#: Workers per cluster: writes of one kind (``sort_key`` rank) to a cluster go in
#: parallel, under the global cap of ``WriteLanes``.
WORKERS = 4


# --- global write concurrency ------------------------------------------------------------------


class Lane:
    """A bounded number of write slots, handed out urgent first, then in arrival order
    (``asyncio.Semaphore`` wakes strictly in arrival order).

    While urgent writes hold or wait for slots, at most ``background`` others are in
    flight: a remote joining a converged fleet writes its control plane while the new
    network's ConfigMap update on every other cluster trickles, instead of sharing both
    processes' CPU with a hundred of them. Once no urgent write is about, the others
    take every slot again."""

    def __init__(self, slots: int, *, background: int | None = None) -> None:
        self._free = slots
        self._background = slots if background is None else max(1, min(background, slots))
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        #: slots held by urgent writes and by the others; urgent writes waiting
        self._held = [0, 0]
        self._urgent_waiting = 0

    def locked(self) -> bool:
        return self._free == 0

    def _may_take(self, urgent: bool) -> bool:
        return urgent or not (self._held[0] or self._urgent_waiting) or self._held[1] < self._background

    async def acquire(self, *, urgent: bool = False) -> None:
        if self._free > 0 and not self._waiting and self._may_take(urgent):
            self._take(urgent)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (0 if urgent else 1, next(self._arrivals), fut))
        if urgent:
            self._urgent_waiting += 1
        self._dispatch()  # a slot may be free for it (the waiters before it held back)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(urgent=urgent)  # the slot was handed over as we were cancelled: pass it on
            elif urgent:
                self._urgent_waiting -= 1
                self._dispatch()  # the others may be held back for it no longer
            raise

    def _take(self, urgent: bool) -> None:
        self._free -= 1
        self._held[0 if urgent else 1] += 1

    def release(self, *, urgent: bool = False) -> None:
        self._held[0 if urgent else 1] -= 1
        self._free += 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to the waiters, urgent first, the others while allowed."""
        while self._free > 0 and self._waiting:
            prio, _, fut = self._waiting[0]
            if fut.done():  # a cancelled waiter (counted out when it was cancelled)
                heapq.heappop(self._waiting)
                continue
            urgent = prio == 0
            if urgent:
                self._urgent_waiting -= 1
            elif not self._may_take(False):
                return
            heapq.heappop(self._waiting)
            self._take(urgent)
            fut.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    @contextlib.asynccontextmanager
    async def slot(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release(urgent=urgent)


class WriteLanes:
    """How many writes may be in flight at once across every cluster of the daemon.

    Remotes share ``total - master`` slots (of which at most ``background`` go to
    updates of clusters in place while a remote's urgent writes are about); the master
    has ``master`` slots of its own, so however many remotes are busy, a master write
    waits only for other master writes.
    """

    def __init__(self, *, total: int = 128, master: int = 4, background: int = 2) -> None:
        if not 0 < master < total:
            raise ValueError("need 0 < master < total")
        self.total = total
        self._remote = Lane(total - master, background=background)
        self._master = Lane(master)

    def lane(self, *, master: bool) -> Lane:
        return self._master if master else self._remote


# --- the converger -----------------------------------------------------------------------------


class ClusterConverger:
    """See the module docstring. ``start()``, feed ``set_desired()``, ``stop()``."""

    def __init__(
        self,
        cluster: str,
        client: KubeClient,
        *,
        append: Append,
        clock: Callable[[], float] = time.time,
        rate_limit: RateLimit | None = None,
        metrics: Metrics | None = None,
        reflector_options: Mapping[str, Any] | None = None,
        lookup: secretref.Lookup | None = None,
        lanes: WriteLanes | None = None,
        master: bool = False,
    ) -> None:
        self.cluster = ClusterName(cluster)
        self._lane = lanes.lane(master=master) if lanes is not None else None
        self.client = client
        self._append = append
        self._clock = clock
        self._metrics = metrics or METRICS
        # handed out in ``sort_key`` order, as the kinds are written: a key of an early kind
        # queued late (a namespace's injection label, once the injector is ready) goes
        # before the later kinds waiting for it, not after them
        self.queue: WorkQueue[str] = WorkQueue(
            f"actuator-{cluster}", rate_limit=rate_limit, metrics=self._metrics, order=self._order
        )
        controller = f"converge-{cluster}"
        self._metrics.init_controller(controller)
        # the series every reconcile moves, looked up once (a label lookup per write
        # was a visible part of a fleet's resync)
        self._reconcile_metrics = (
            self._metrics.reconcile_total.labels(controller=controller, result="success"),
            self._metrics.reconcile_total.labels(controller=controller, result="error"),
            self._metrics.reconcile_errors_total.labels(controller=controller),
            self._metrics.reconcile_time_seconds.labels(controller=controller),
        )
        self._metrics.init_actuations(cluster)
        self._reflector_options = dict(reflector_options or {})
        self._lookup: secretref.Lookup = lookup or (lambda ref: None)
        self._reflectors: dict[Kind, Reflector] = {}
        #: kinds whose reflector belongs to someone else (``share``)
        self._shared: set[Kind] = set()
        #: no desired state yet: nothing is applied, deleted or released before one
        self._has_desired = False
        #: the seq of the state the current desired state was derived from
        self._desired_seq = 0
        self._desired = ClusterDesired()
        self._acts: Mapping[str, Actuation] = {}
        # What this process recorded (apply/verify) per key, so a verify is logged once
        # even before the projection has folded it back.
        self._recorded: dict[str, str] = {}
        # key → (content hash, projection of the server's answer to our apply): how the
        # server normalises what we wrote, so it is not mistaken for drift.
        self._normalised: dict[str, tuple[str, str]] = {}
        #: key → (seq of the newest fact that changed it, time of the oldest fact not yet
        #: in effect): a key re-dirtied faster than it can be written counts its
        #: convergence time from the first change it has not caught up with, so a
        #: starved key shows a growing latency instead of a fresh one per change.
        self._cause: dict[str, tuple[int, float]] = {}
        #: the causes of the keys being handled now; a change arriving meanwhile starts a
        #: new entry in ``_cause`` (the write in flight does not carry it)
        self._taking: dict[str, tuple[int, float]] = {}
        #: some desired object was never applied on this cluster (it is joining)
        self._joining = False
        self._settling = False
        #: keys whose handling ended without the desired state in effect (they are
        #: looked at again): their cause keeps waiting
        self._unsettled: set[str] = set()
        #: key → (desired, observed version) last found in effect, both compared by
        #: identity: a resync or a re-derivation that changed neither costs no
        #: comparison. The observed version is ``Reflector.token``: the stored bytes of
        #: the converger's compact inventory, or the dict a shared reflector stores per
        #: version. An object with a credential placeholder is never remembered: its
        #: value can change under the same objects.
        #: The third item is the stored version's ``shape_hash`` (None when its store
        #: keeps no summary): a later version with the same shape (a status update) is
        #: in effect too, without a decode.
        self._effect: dict[str, tuple[DesiredObject, object, bytes | None]] = {}
        #: key → (content hash applied, resourceVersion the inventory showed before, until
        #: when to wait for the inventory to show the write) — see ``_handle``
        self._applied: dict[str, tuple[str, str, float]] = {}
        # (key map, the kinds of its keys) for the desired objects and the actuations
        self._kinds_of: list[tuple[Mapping[str, Any] | None, set[Kind]]] = [(None, set()), (None, set())]
        self._workers: list[asyncio.Task[None]] = []
        #: kind rank → writes of that rank in flight (``_admit``)
        self._inflight: dict[int, int] = {}
        #: kind rank → workers waiting to write one of that rank
        self._waiting: dict[int, int] = {}
        self._turn = asyncio.Event()
        self.active = False
        self.stats = {"apply": 0, "delete": 0, "release": 0, "verify": 0, "failed": 0, "drift": 0}

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start (or resume) actuating: the leader calls this; a standby only keeps its
        inventory warm (reflectors run either way) and derives nothing onto the cluster."""
        if self.queue.shutting_down:
            raise RuntimeError("converger was stopped")
        self.active = True
        if not self._workers:
            loop = asyncio.get_running_loop()
            self._workers = [
                loop.create_task(
                    run_worker(self.queue, self._reconcile, on_error=self._on_error),
                    name=f"converger {self.cluster} {i}",
                )
                for i in range(WORKERS)
            ]
        self.resync()

    def pause(self) -> None:
        """Stop actuating (leadership lost). A write in flight completes; nothing new
        starts until ``start()`` again."""
        self.active = False

    async def stop(self) -> None:
        """Stop for good: let an in-flight write finish (bounded by the client's timeout), drop the
        rest, stop the reflectors."""
        self.active = False
        await self.queue.shutdown()
        tasks, self._workers = self._workers, []
        if tasks:
            await reap(tasks, cancel=False, grace=10.0)
        for kind, r in self._reflectors.items():
            if kind in self._shared:
                continue
            await r.stop()
            raise_if_cancelled()
        self._reflectors.clear()

    # --- inputs -------------------------------------------------------------------------------

    def set_desired(
        self,
        desired: ClusterDesired,
        actuations: Mapping[str, Actuation],
        *,
        cause_seq: int = 0,
        cause_time: float = 0.0,
        settling: bool = False,
    ) -> bool:
        """A new desired state for this cluster: enqueue exactly the keys that changed
        (True when there was one).
        ``settling``: the cluster has not been Available since it joined, so its writes
        (a restart its new ``cacerts`` brings, say) go before updates of clusters in place.

        Called after every derivation for every cluster: what did not change is the same
        object (derivation is incremental), so an unchanged cluster costs two identity
        tests, not a walk over its objects.

        A desired state derived from an older state of the log (``cause_seq``) than the
        one already given is refused (False): the daemon hands the master's objects over
        from the fold too, ahead of a derivation that may still be handing over an older
        state's."""
        if cause_seq < self._desired_seq:
            return False
        self._desired_seq = cause_seq
        old = self._desired
        self._settling = settling
        if desired is old and actuations is self._acts:
            return False
        first = not self._has_desired
        self._has_desired = True
        self._desired = desired
        self._acts = actuations
        # still joining while some desired object was never applied here
        self._joining = not desired.objects.keys() <= actuations.keys()
        for kind in sorted(self._kinds() - self._reflectors.keys()):
            self._ensure_reflector(kind)
        if desired.hold or desired is old:
            return False
        objects, before = desired.objects, old.objects
        # (the tests of whole key sets and of identity run in C: a moved gateway's new
        # desired state shares all its objects but one with the last)
        if not self._effect.keys() <= objects.keys():
            for key in [k for k in self._effect if k not in objects]:
                del self._effect[key]
        if not self._applied.keys() <= objects.keys():
            for key in [k for k in self._applied if k not in objects]:
                del self._applied[key]
        moved = objects.keys() | before.keys() if old.hold else changed_keys(before, objects)
        changed = [
            k for k in moved
            if old.hold or k not in objects or k not in before or before[k].content_hash != objects[k].content_hash
        ]
        for key in changed:
            if cause_seq:
                pending = self._cause.get(key)
                self._cause[key] = (cause_seq, pending[1] if pending else cause_time)
        self._enqueue(changed)
        if first:
            # what the inventory held before anything was desired (shared reflectors
            # list before the first derivation) is looked at now, not released then
            self.resync()
        return bool(changed) or first

    def resync(self) -> None:
        """Re-check every key (desired, observed, or recorded as applied)."""
        keys = set(self._desired.objects) | set(self._acts)
        keys.update(self._inventory_keys())
        self._enqueue(keys)

    def _inventory_keys(self) -> Iterator[str]:
        """Keys of the observed objects that are federationd's (``_inventory_object``);
        its own compact inventories answer from their summaries, without decoding."""
        for r in self._reflectors.values():
            store = r.store
            if isinstance(store, CompactStore):
                yield from (summary[0] for _, summary in store.summaries() if summary is not None)
            else:
                yield from (self._key_of(obj) for obj in store.values() if self._inventory_object(obj))

    def inventory_summary(self, obj: Obj) -> tuple[str, str, bytes] | None:
        """What a compact inventory store keeps of ``obj``: when it is federationd's, its
        key, the content hash it carries (``observed_hash``), so that a changed object
        is known to differ without decoding it, and its ``shape_hash``, so that a version
        that changed only its status is known to be in effect as the last one was."""
        return (self._key_of(obj), observed_hash(obj), shape_hash(obj)) if self._inventory_object(obj) else None

    def converged(self) -> bool:
        """No work queued or in flight and every desired object in effect (tests, /debug)."""
        if len(self.queue) or self.queue.processing():
            return False
        if self._desired.hold:
            return True
        for key, d in self._desired.objects.items():
            if not self._in_effect(key, d):
                return False
        return all(self._observed(k) is None or not self._owned(self._observed(k)) for k in self._stale_keys())

    def emptied(self) -> bool:
        """Nothing is desired and nothing federationd applied is left (a leaving cluster)."""
        if self._desired.objects or self._desired.hold or not self.synced():
            return False
        return not any(self._token(k) is not None for k in self._stale_keys())

    def synced(self) -> bool:
        return all(r.synced.is_set() for r in self._reflectors.values())

    # --- inventory ------------------------------------------------------------------------------

    def _kinds(self) -> set[Kind]:
        kinds: set[Kind] = {("v1", "Namespace")}
        for slot, keys in ((0, self._desired.objects), (1, self._acts)):
            cached = self._kinds_of[slot]
            if cached[0] is not keys:  # derived once per key set (a new map of the same keys: C-speed test)
                same = cached[0] is not None and cached[0].keys() == keys.keys()
                cached = (keys, cached[1] if same else {tuple(split_key(k)[:2]) for k in keys})  # type: ignore[misc]
                self._kinds_of[slot] = cached
            kinds |= cached[1]
        return kinds

    def share(self, reflectors: Mapping[Kind, Reflector]) -> None:
        """Use these reflectors (the fact watchers' own, with the same query: every
        Namespace, the managed Deployments and DaemonSets) as this converger's
        inventory of their kinds instead of watching them a second time. A compact store
        must summarise with ``inventory_summary``. Call before the first
        ``set_desired``; they stay their owner's to start and stop."""
        for kind, r in reflectors.items():
            if kind in self._reflectors:
                continue
            expected = None if kind[1] == "Namespace" else MANAGED_SELECTOR
            if r.label_selector != expected or r.namespace is not None or r.field_selector is not None:
                continue  # another query: not the same inventory
            if isinstance(r.store, CompactStore) and r.store.summarise != self.inventory_summary:
                continue  # compact, but its summaries are not this inventory's keys
            r.add_listener(on_upsert=self._on_observed, on_delete=self._on_observed)
            self._reflectors[kind] = r
            self._shared.add(kind)

    def _ensure_reflector(self, kind: Kind) -> None:
        if kind in self._reflectors:
            return
        api_version, k = kind
        r = Reflector(
            self.client.cluster,
            api_version=api_version,
            kind=k,
            label_selector=_INVENTORY_SELECTORS.get(k, MANAGED_SELECTOR),
            on_upsert=self._on_observed,
            on_delete=self._on_observed,
            # read when a key is checked, not kept decoded: a fifth of the memory
            compact=True,
            summarise=self.inventory_summary,
            **self._reflector_options,
        )
        self._reflectors[kind] = r
        r.start()

    @staticmethod
    def _key_of(obj: Obj) -> str:
        meta = obj.get("metadata") or {}
        return f"{obj.get('apiVersion', '')}/{obj.get('kind', '')}/{meta.get('namespace', '') or ''}/{meta.get('name', '')}"

    @staticmethod
    def _owned(obj: Obj | None) -> bool:
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            return False
        # The endpoints controllers copy a Service's labels onto its Endpoints and
        # EndpointSlices: those carry our label but are the cluster's (deleting them
        # leaves the Service without endpoints). Ours carry our content hash.
        return (obj or {}).get("kind") not in ("Endpoints", "EndpointSlice") or bool(observed_hash(obj or {}))

    def _inventory_object(self, obj: Obj) -> bool:
        return self._owned(obj) or bool(observed_hash(obj))

    def _on_observed(self, obj: Obj) -> None:
        key = self._key_of(obj)
        d = self._desired.objects.get(key)
        if d is not None and self._known_in_effect(key, d):
            return  # a new status of an object in effect: nothing to check or write
        if d is not None or key in self._acts or self._inventory_object(obj):
            self._enqueue([key])

    def _observed(self, key: str) -> Obj | None:
        api_version, kind, namespace, name = split_key(key)
        r = self._reflectors.get((api_version, kind))
        if r is None:
            return None
        return r.store.get((namespace, name))

    def _stale_keys(self) -> Iterable[str]:
        """Keys federationd applied (per log or inventory) that are no longer desired."""
        keys = set(self._acts)
        keys.update(self._inventory_keys())
        # a CRD no longer desired is left as it is: nothing to wait for
        return sorted(k for k in keys if k not in self._desired.objects and split_key(k)[1] not in keep.NEVER_DELETED)

    def _enqueue(self, keys: Iterable[str]) -> None:
        if not self.active:
            return
        for key in sorted(set(keys), key=self._order):
            self.queue.add(key)

    @staticmethod
    @functools.lru_cache(maxsize=8192)
    def _order(key: str) -> tuple[int, str, str, str, str]:
        api_version, kind, namespace, name = split_key(key)
        meta: dict[str, str] = {"name": name}
        if namespace:
            meta["namespace"] = namespace
        return sort_key({"apiVersion": api_version, "kind": kind, "metadata": meta})

    # --- the handler ------------------------------------------------------------------------------

    def _token(self, key: str) -> object | None:
        api_version, kind, namespace, name = split_key(key)
        r = self._reflectors.get((api_version, kind))
        return None if r is None else r.token((namespace, name))

    def _in_effect(self, key: str, d: DesiredObject, observed: Obj | _Unread | None = UNREAD) -> bool:
        """Whether ``observed`` (by default: the inventory's) carries ``d``. A check that
        passed is remembered for this ``d`` and this stored version of the object
        (``Reflector.token``), so it is not decoded and compared again."""
        if self._known_in_effect(key, d):
            return True
        token = self._token(key)
        carried = self._summary(key)
        if isinstance(observed, _Unread):
            if token is None:
                return False
            if carried is not None and carried[1] != d.content_hash:
                return False  # its summary says it carries other content: not decoded
            observed = self._observed(key)
        if observed is None or observed_hash(observed) != d.content_hash:
            return False
        plain = with_hash(d.obj, d.content_hash)
        try:
            body = secretref.substitute(plain, self._lookup)
        except secretref.SecretUnavailable:
            return False
        ok = contains(body, observed)
        if not ok:
            learnt = self._normalised.get(key)
            ok = learnt is not None and learnt == (d.content_hash, content_hash(project(body, observed)))
        if ok and body is plain and token is not None and self._token(key) is token:
            self._effect[key] = (d, token, carried[2] if carried is not None else None)
        else:
            self._effect.pop(key, None)
        return ok

    def _known_in_effect(self, key: str, d: DesiredObject) -> bool:
        """Whether the stored version of ``key`` is known to carry ``d`` without looking
        at it: the very version last found in effect, or one of the same shape (only its
        status moved)."""
        seen = self._effect.get(key)
        if seen is None or seen[0] is not d:
            return False
        token = self._token(key)
        if token is None:
            return False
        if seen[1] is token:
            return True
        if seen[2] is None:
            return False
        carried = self._summary(key)
        if carried is None or carried[2] != seen[2]:
            return False
        self._effect[key] = (d, token, seen[2])
        return True

    async def _reconcile(self, key: str) -> None:
        """One reconcile of one object, counted and timed the way controller-runtime counts
        its reconciles (``controller_runtime_reconcile_*``; one controller per cluster, so
        the label stays bounded)."""
        m = self._reconcile_metrics
        d = self._desired.objects.get(key)
        listed = self._listed(key)
        # Kinds go in order so that what a later kind needs exists first: only creates
        # (and deletions) take their turn. A key the inventory shows in effect (the watch
        # event of our own write, a resync) writes nothing, and an update changes an object
        # that exists: neither waits for a turn nor holds back the kinds after it.
        # (A joining remote's webhook and Gateway waited behind the echoes of its CRDs,
        # then behind the update of its mesh ConfigMap.)
        in_effect = d is not None and listed and self.active and not self._desired.hold and self._in_effect(key, d)
        ordered = not in_effect and (d is None or not listed)
        rank = self._order(key)[0]
        if ordered:
            await self._admit(rank)
        started = time.monotonic()
        try:
            if self._lane is None or in_effect:
                await self._handle(key)
            else:
                # a joining cluster's writes (its control plane, and the updates it
                # needs before it is Available) and objects a cluster never had go
                # before updates on clusters that are in place
                async with self._lane.slot(urgent=self._joining or self._settling or key not in self._acts):
                    await self._handle(key)
        except Exception:
            m[1].inc()
            m[2].inc()
            raise
        else:
            m[0].inc()
        finally:
            if ordered:
                self._leave(rank)
            m[3].observe(time.monotonic() - started)

    def _listed(self, key: str) -> bool:
        """Whether its kind's listed inventory shows the object (False: absent, or the kind
        is not listed yet); nothing is decoded."""
        api_version, kind, namespace, name = split_key(key)
        r = self._reflectors.get((api_version, kind))
        return r is not None and r.synced.is_set() and r.token((namespace, name)) is not None

    def _summary(self, key: str) -> tuple[str, str, bytes] | None:
        """The inventory summary of the stored object (None: not federationd's, or its
        store keeps none). Every compact store here summarises with
        ``inventory_summary`` (``share`` takes no other)."""
        api_version, kind, namespace, name = split_key(key)
        r = self._reflectors.get((api_version, kind))
        store = None if r is None else r.store
        if not isinstance(store, CompactStore):
            return None
        return store.summary((namespace, name))  # type: ignore[no-any-return]

    async def _admit(self, rank: int) -> None:
        """Wait until every write in flight is of this kind rank (``sort_key``) and no
        worker waits with a lower one: writes of one kind go in parallel, and the kinds
        go in ``sort_key`` order (CRDs and Namespaces before what needs them)."""
        self._waiting[rank] = self._waiting.get(rank, 0) + 1
        try:
            while any(n and r != rank for r, n in self._inflight.items()) or any(
                n and r < rank for r, n in self._waiting.items()
            ):
                await self._turn.wait()
        finally:
            self._waiting[rank] -= 1
            self._wake()
        self._inflight[rank] = self._inflight.get(rank, 0) + 1

    def _leave(self, rank: int) -> None:
        self._inflight[rank] -= 1
        self._wake()

    def _wake(self) -> None:
        turn, self._turn = self._turn, asyncio.Event()
        turn.set()

    async def _handle(self, key: str) -> None:
        taken = self._cause.pop(key, None)
        if taken is not None:
            self._taking[key] = taken
        settled = False
        try:
            await self._handle_now(key)
            settled = key not in self._unsettled
        except NotLeading:
            # Not sent, and nothing failed: this process stopped leading while the write
            # waited. Nothing to retry here (unsettled: its cause still waits);
            # ``start()`` checks every key again.
            pass
        finally:
            self._unsettled.discard(key)
            left = self._taking.pop(key, None)
            if left is not None and not settled:
                # not in effect yet (a failure, a look again later, actuation paused):
                # the cause still waits, from its first time
                pending = self._cause.get(key)
                self._cause[key] = (pending[0], left[1]) if pending else left

    async def _handle_now(self, key: str) -> None:
        if not self.active or self._desired.hold or not self._has_desired:
            self._unsettled.add(key)
            return
        api_version, kind, namespace, name = split_key(key)
        r = self._reflectors.get((api_version, kind))
        d = self._desired.objects.get(key)
        if r is not None and not r.synced.is_set():
            if d is None:
                # Deleting needs the listed inventory: look again shortly.
                self.queue.add_after(key, 0.2)
                self._unsettled.add(key)
                return
            # The inventory of this kind is not listed yet (its CRD was just created,
            # or the first list is in flight): read the one object instead of waiting.
            try:
                got: Obj | None = await self.client.get(api_version, kind, namespace or None, name)
            except ApiNotFound:
                got = None
            observed: Obj | _Unread | None = got
        else:
            # decoded only when needed: a check the inventory's summary or an earlier
            # check answers reads nothing
            observed = UNREAD
        if d is not None:
            if self._in_effect(key, d, observed):
                self._applied.pop(key, None)
                await self._note_in_effect(key, d, observed)
                return
            if isinstance(observed, _Unread):
                observed = self._observed(key)
            lag = self._applied.get(key)
            if lag is not None and lag[:2] == (d.content_hash, _version(observed)) and time.monotonic() < lag[2]:
                # The inventory still shows the object as it was before our apply of this
                # very content (its watch event is on the way): look again shortly
                # rather than write the same content twice.
                self.queue.add_after(key, 0.05)
                self._unsettled.add(key)
                return
            await self._apply(key, d, observed)
            return
        if isinstance(observed, _Unread):
            observed = self._observed(key)
        if observed is not None and self._owned(observed) and kind in keep.NEVER_DELETED:
            await self._leave_as_is(key, observed)
        elif observed is not None and self._owned(observed):
            why = await keep.keep_reason(self.client, observed)
            if why:
                await self._keep(key, observed, why)
            else:
                await self._delete(key, observed)
        elif observed is not None and observed_hash(observed):
            await self._release(key, observed)
        elif key in self._acts and self._acts[key].ok:
            # Gone already (deleted by hand while no longer desired): record it so the
            # projection stops waiting for the deletion.
            await self._record(ev.ActuationApplied, key, verb=DELETE, content_hash="", latency=0.0)

    async def _note_in_effect(self, key: str, d: DesiredObject, observed: Obj | _Unread | None) -> None:
        prev = self._acts.get(key)
        if prev is not None and prev.ok and prev.content_hash == d.content_hash and not prev.drifted:
            return
        if self._recorded.get(key) == d.content_hash:
            return
        self._recorded[key] = d.content_hash
        self.stats["verify"] += 1
        if isinstance(observed, _Unread):
            observed = self._observed(key)
        await self._record(
            ev.ActuationApplied, key, verb=VERIFY, content_hash=d.content_hash, latency=0.0,
            generation=generation_of(observed),
        )

    async def _apply(self, key: str, d: DesiredObject, observed: Obj | None) -> None:
        used: list[str] = []

        def lookup(ref: str) -> str | None:
            value = self._lookup(ref)
            if value is not None:
                used.append(value)
            return value

        started = time.monotonic()
        try:
            body = secretref.substitute(with_hash(d.obj, d.content_hash), lookup)
        except secretref.SecretUnavailable as e:
            # Not drift: the value to compare with is what is missing.
            await self._failed(key, verb=APPLY, content_hash=d.content_hash, started=started, error=e)
            raise
        prev = self._acts.get(key)
        if prev is not None and prev.ok and prev.content_hash == d.content_hash and not prev.drifted:
            # We had this content in effect and it is gone or different: drift.
            self.stats["drift"] += 1
            await self._append_events(
                [
                    ev.ObjectDrifted(
                        cluster=self.cluster,
                        key=key,
                        time=self._clock(),
                        observed_hash=observed_hash(observed),
                        deleted=observed is None,
                    )
                ]
            )
        started = time.monotonic()
        try:
            answer = await self.client.apply(body)
        except ApiError as e:
            await self._failed(key, verb=APPLY, content_hash=d.content_hash, started=started, error=e, secrets=used)
            raise
        latency = time.monotonic() - started
        self._applied[key] = (d.content_hash, _version(observed), time.monotonic() + APPLIED_LAG)
        if not contains(body, answer):
            self._normalised[key] = (d.content_hash, content_hash(project(body, answer)))
            self._effect.pop(key, None)
        self._recorded[key] = d.content_hash
        self.stats["apply"] += 1
        await self._record(
            ev.ActuationApplied, key, verb=APPLY, content_hash=d.content_hash, latency=latency,
            generation=generation_of(answer),
        )

    async def _delete(self, key: str, observed: Obj) -> None:
        api_version, kind, namespace, name = split_key(key)
        started = time.monotonic()
        try:
            await self.client.delete(api_version, kind, namespace or None, name)
        except ApiNotFound:
            pass
        except ApiError as e:
            await self._failed(key, verb=DELETE, content_hash=observed_hash(observed), started=started, error=e)
            raise
        self.stats["delete"] += 1
        self._recorded.pop(key, None)
        await self._record(
            ev.ActuationApplied, key, verb=DELETE, content_hash=observed_hash(observed),
            latency=time.monotonic() - started,
        )

    async def _keep(self, key: str, observed: Obj, why: str) -> None:
        """A Namespace of ours no longer desired that holds other people's data
        (``actuators.keep``): release every field federationd owned, leave the rest."""
        _, kind, namespace, name = split_key(key)
        await self._release(key, observed)
        log.info("%s: kept %s/%s%s: %s", self.cluster, kind, f"{namespace}/" if namespace else "", name, why)

    async def _leave_as_is(self, key: str, observed: Obj) -> None:
        """A CRD no longer desired is left exactly as it is (as Helm leaves CRDs): no
        request. The projection is told once that federationd no longer counts it, so
        an uninstall or a leaving remote does not wait for it."""
        if key not in self._acts:
            return
        self._recorded.pop(key, None)
        self.stats["release"] += 1
        await self._record(ev.ActuationApplied, key, verb=RELEASE, content_hash=observed_hash(observed), latency=0.0)
        _, kind, _, name = split_key(key)
        log.info("%s: kept %s/%s: %s", self.cluster, kind, name, keep.NEVER_DELETED_REASON)

    async def _release(self, key: str, observed: Obj) -> None:
        """Give back the fields of a patch: applying an object with nothing but its name
        makes the server drop every field federationd owned (and only those)."""
        api_version, kind, namespace, name = split_key(key)
        meta: Obj = {"name": name}
        if namespace:
            meta["namespace"] = namespace
        started = time.monotonic()
        try:
            await self.client.apply({"apiVersion": api_version, "kind": kind, "metadata": meta})
        except ApiNotFound:
            pass
        except ApiError as e:
            await self._failed(key, verb=RELEASE, content_hash=observed_hash(observed), started=started, error=e)
            raise
        self.stats["release"] += 1
        self._recorded.pop(key, None)
        await self._record(
            ev.ActuationApplied, key, verb=RELEASE, content_hash=observed_hash(observed),
            latency=time.monotonic() - started,
        )

    # --- recording ---------------------------------------------------------------------------------

    async def _failed(
        self,
        key: str,
        *,
        verb: str,
        content_hash: str,
        started: float,
        error: ApiError | secretref.SecretUnavailable,
        secrets: Sequence[str] = (),
    ) -> None:
        self._unsettled.add(key)
        if isinstance(error, NotLeading):
            return  # not sent, and nothing failed (``_handle``)
        self.stats["failed"] += 1
        # The log's last word on this key is now this failure: an earlier success must
        # not keep the next in-effect check from recording that the content is in place
        # (else the status stays ReconcileFailed on an object that is applied).
        self._recorded.pop(key, None)
        self._metrics.actuations_total.labels(cluster=self.cluster, result="error").inc()
        # The backoff run_worker is about to apply (the queue counts the failure itself).
        retry_in = min(0.005 * 2.0 ** self.queue.num_requeues(key), 1000.0)
        cause_seq, _ = self._taking.get(key, (0, 0.0))
        await self._append_events(
            [
                ev.ActuationFailed(
                    cluster=self.cluster,
                    key=key,
                    time=self._clock(),
                    verb=verb,
                    content_hash=content_hash,
                    latency=time.monotonic() - started,
                    # A server's error may echo the body we sent, credentials included.
                    error=redact(secretref.scrub(f"{type(error).__name__}: {_message(error)}", secrets)),
                    retry_in=max(0.0, float(retry_in)),
                    cause_seq=cause_seq,
                )
            ]
        )

    async def _record(
        self,
        cls: type[ev.ActuationApplied],
        key: str,
        *,
        verb: str,
        content_hash: str,
        latency: float,
        generation: int = 0,
    ) -> None:
        cause_seq, cause_time = self._taking.pop(key, (0, 0.0))
        now = self._clock()
        if verb != VERIFY:
            self._metrics.actuations_total.labels(cluster=self.cluster, result="success").inc()
            if cause_time:
                self._metrics.convergence_seconds.observe(max(0.0, now - cause_time))
        await self._append_events(
            [
                cls(
                    cluster=self.cluster,
                    key=key,
                    time=now,
                    verb=verb,
                    content_hash=content_hash,
                    latency=round(latency, 6),
                    cause_seq=cause_seq,
                    generation=generation,
                )
            ]
        )

    async def _append_events(self, events: Sequence[Event]) -> None:
        await self._append(events)

    def _on_error(self, key: str, error: Exception) -> None:
        if isinstance(error, secretref.SecretUnavailable):
            log.warning("%s: converging %s failed: %s", self.cluster, key, error)
        elif not isinstance(error, ApiError):
            log.exception("%s: converging %s failed", self.cluster, key, exc_info=error)
