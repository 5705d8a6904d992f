"""``federationd run``: the daemon — watchers → log → projections → actuators.

The process is a supervisor: it wires the pieces together and owns their lifecycles
(named tasks in one ``asyncio.TaskGroup``); it decides nothing itself (that is
``projections``, membership included) and writes nothing itself (that is ``actuators``):

1. **Restore.** Open the event log, fold the newest projection snapshot plus the tail
   after it (``events.replay``): restart costs O(tail), not O(log).
2. **Observe.** One ``ClusterRuntime`` per cluster — the master from the start, each
   remote as the derived membership says (``projections.membership``: connect with this
   kubeconfig fingerprint, first for the identity read only, then to join or to be
   emptied; stop; remove). A runtime reads its cluster's identity (the ``kube-system``
   UID), runs the fact reflectors of its cluster once joined (``watchers.facts``:
   appended only when a fact changed), reports its connection health as
   ``ClusterConnected``/``ClusterUnreachable``, and owns the cluster's converger.
   After a restart, each fact source compares its first list with the facts the log
   last reported (``watchers.facts.disappeared``), so that what disappeared while the
   daemon was down is recorded as removed. The timer source (``watchers.timers``)
   appends the deadlines the membership asks for.
3. **Fold and derive.** One task tails the log and folds every record into the
   projection state (a third saves a snapshot every ``--snapshot-every`` events, beside
   it, so neither waits for the other); another
   derives the desired state whenever the state moved (coalescing bursts) and hands each
   cluster's part to its converger — the master's first, then every cluster's, each
   before the rest is derived (``projections.derive.Derivation``) —, the CR statuses to
   the status writer, the trust plan to the trust actuator, and applies the membership
   (start/stop runtimes, append ``ClusterRemoved``, finalizers).
   Nothing is pushed before the master's initial lists are folded: an empty state must
   never look like "delete everything".
4. **Act when leader.** With ``--leader-elect`` only the holder of the Lease actuates;
   a standby keeps its inventory and projection warm and takes over on expiry.
5. **Serve** ``/healthz``, ``/readyz`` (the log is open and the initial lists are
   synced), ``/metrics`` and ``/debug/*`` — including the hash of the desired state after
   each derived sequence number, which a replay of the log must reproduce.
6. **Stop** on SIGTERM/SIGINT: stop writing (an in-flight write finishes or is
   abandoned at its timeout), stop the watchers, release the Lease, flush and close the
   log, exit 0.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from events import types as ev
from events.log import EventLog, LogError
from events.replay import Snapshotter, replay
from events.types import ClusterName, Event
from federationd import config, secretref
from federationd.actuators import clusterdns as dns_actuator
from federationd.actuators import finalizers
from federationd.actuators import trust as trust_actuator
from federationd.actuators.client import ApiError, ApiNotFound, KubeClient
from federationd.actuators.converge import ClusterConverger, WriteLanes
from federationd.actuators.status import StatusWriter
from federationd.actuators.tasks import raise_if_cancelled, reap
from federationd.clusters import (
    ApiUnavailable,
    ClusterClient,
    ClusterState,
    HealthSnapshot,
    KubeconfigRejected,
    NotLeading,
    SecretFormatError,
    connect,
    remotes_in_secret,
)
from federationd.clusters.connection import user_agent
from federationd.clusters.discovery import served_group_versions
from federationd.clusters.tlsbuffers import share_tls_read_buffers
from federationd.gcfreeze import freeze_loop
from federationd.http import Server, make_app, serve
from federationd.inspect import SNAPSHOTS
from federationd.leader import LeaderElector
from federationd.logguard import LogGuard
from federationd.metrics import METRICS, Metrics
from federationd.projections.derive import (
    AVAILABLE,
    ClusterDesired,
    Derivation,
    Desired,
    desired_hash,
    networks_moved,
)
from federationd.projections.membership import Membership
from federationd.projections.state import (
    EMPTY,
    ProjectionState,
    fold,
    secret_of,
    to_builtins,
)
from federationd.render.objects import MANAGED_BY, MANAGED_BY_LABEL
from federationd.watchers import facts
from federationd.watchers.reflector import Reflector
from federationd.watchers.resolver import HostnameResolver, hosts_file_resolver
from federationd.watchers.timers import DeadlineTimer

log = logging.getLogger("federationd")

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"


# --- gateway hostnames ----------------------------------------------------------------------------


class _ResolutionLog:
    """The log as the hostname resolver sees it: one fact per append. The resolver
    filters unchanged answers itself, so the facts bypass the fact emitter."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    async def append(self, event: Event, /) -> object:
        seqs = await self._daemon.append([event])
        self._daemon.metrics.events_appended_total.labels(type=type(event).__name__).inc()
        return seqs


def gateway_hostnames(state: ProjectionState) -> dict[str, set[str]]:
    """cluster → the load-balancer hostnames its gateways announce (to keep resolved)."""
    return {
        cluster: {h for gw in gateways.values() for h in gw.hostnames}
        for cluster, gateways in state.gateways.items()
    }


# --- one cluster ---------------------------------------------------------------------------------


#: The fact sources whose watches also serve as the converger's inventory.
_SHARED_SOURCES: Final = frozenset({"namespaces", "deployments", "daemonsets"})


class ClusterRuntime:
    """Everything the daemon runs for one cluster: its client, fact reflectors and
    converger. The master's also watches the CRs and kubeconfig Secrets."""

    def __init__(
        self,
        daemon: Daemon,
        name: str,
        client: ClusterClient,
        *,
        master: bool,
        fingerprint: str = "",
    ) -> None:
        self.daemon = daemon
        self.name = ClusterName(name)
        self.client = client
        self.master = master
        self.fingerprint = fingerprint
        s = daemon.settings
        self._reflector_options: dict[str, Any] = {
            "watch_timeout": s.watch_timeout,
            "inactivity_timeout": s.inactivity_timeout,
        }
        # every write waits while the log cannot record what it would do (logguard),
        # and none is sent once this process no longer leads (the Lease's has its own client)
        self.kube = KubeClient(client, before_write=daemon.may_write)
        self.converger = ClusterConverger(
            name,
            self.kube,
            append=daemon.append,
            metrics=daemon.metrics,
            reflector_options=self._reflector_options,
            lookup=daemon.secret_lookup,
            lanes=daemon.write_lanes,
            master=master,
        )
        self.reflectors: dict[str, Reflector] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        #: its reflectors (and, when leading, converger) run: the membership said join
        self.joined = False
        #: set once its server version and served APIs were read (or could not be:
        #: a refusal other than unavailability); the master's initial sync waits for it
        self.apis_read = asyncio.Event()

    def _sources(self) -> dict[str, facts.FactSource]:
        out = {
            "namespaces": facts.NAMESPACES,
            "nodes": facts.NODES,
            "gateways": facts.gateway_services(None),
            "deployments": facts.workloads("Deployment", label_selector=MANAGED_SELECTOR),
            "daemonsets": facts.workloads("DaemonSet", label_selector=MANAGED_SELECTOR),
            # public fingerprints of the plug-in CA Secrets (the shared root of trust)
            "cacerts": trust_actuator.CACERTS,
        }
        if self.master:
            out["istios"] = facts.ISTIO
            out["remoteistios"] = facts.REMOTE_ISTIO
            out["secrets"] = facts.kubeconfig_secrets(self.daemon.settings.namespace)
            # the master's ready pod IPs per Service, for remotes' enabledServices
            out["endpoints"] = facts.endpoints(self.daemon.settings.namespace)
            # multi-mesh: the cluster DNS ConfigMaps and istiocoredns' ClusterIP, by name
            for cm in facts.CLUSTER_DNS_CONFIGMAPS:
                out[f"dns-{cm}"] = facts.cluster_dns(cm)
            # (in every namespace: the Istio resource's namespace is the one that counts)
            out["istiocoredns"] = facts.service_address(None, "istiocoredns")
        return out

    def open(self) -> None:
        """Report health and read the cluster's identity; nothing else yet."""
        self._unsubscribe = self.client.health.subscribe(self._on_health)
        self._spawn(self._identify(), f"identify {self.name}")

    def join(self) -> None:
        """Start the fact reflectors (the converger follows leadership)."""
        if self.joined:
            return
        self.joined = True
        for name, source in self._sources().items():
            # Kept as their JSON bytes (``CompactStore``): the facts come from each event
            # as it arrives, the stores are only looked into by key; those the converger
            # shares keep its inventory summary beside them.
            r = facts.watch_facts(
                self.client, source, self.daemon.emitter, cluster=self.name, compact=True,
                summarise=self.converger.inventory_summary if name in _SHARED_SOURCES else None,
                **self._reflector_options,
            )
            self.reflectors[name] = r
            r.start()
            self._spawn(self._after_first_list(source, r), f"first-list {self.name}/{name}")
        if "remoteistios" in self.reflectors:
            # a RemoteIstio that lost federationd's finalizer (taken off by hand) changes no
            # fact: the next derivation's membership puts it back
            self.reflectors["remoteistios"].add_listener(on_upsert=self.daemon.finalizer_missing)
        # the same watches serve the converger's inventory of these kinds (one connection each)
        self.converger.share({
            (r.api_version, r.kind): r for n, r in self.reflectors.items() if n in _SHARED_SOURCES
        })

    def start(self) -> None:
        self.open()
        self.join()

    async def _identify(self) -> None:
        """The UID of the cluster's ``kube-system`` namespace, as a fact: which cluster
        this name reaches. Retried with backoff while the cluster cannot be read (its
        health says why)."""
        delay = 0.5
        # Discovery first: a remote joins only once its identity is known, so its first
        # render already knows which API versions the cluster serves.
        while not await self._observe_apis():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        delay = 0.5
        while True:
            try:
                ns = await self.kube.get("v1", "Namespace", None, "kube-system")
            except ApiNotFound:
                log.warning("cluster %s has no kube-system namespace; its identity is unknown", self.name)
                return
            except ApiError as e:
                log.debug("cluster %s: identity not read yet: %s", self.name, e.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            uid = str((ns.get("metadata") or {}).get("uid") or "")
            if uid:
                await self.daemon.emitter.emit(
                    ev.ClusterIdentityObserved(cluster=self.name, key="Namespace//kube-system", time=time.time(), uid=uid)
                )
            return

    async def _observe_apis(self) -> bool:
        """The server's version and built-in group/versions, as a fact (appended only
        when changed). False when the cluster could not be reached (retry); a refusal
        (e.g. forbidden) is logged and leaves the fact unknown: rendering then uses the
        GA API versions, as without the fact."""
        what = f"discovery of {self.name}"
        try:
            version = await self.client.server_version()
            core = await self.client.request("GET", "/api", what=what)
            groups = await self.client.request("GET", "/apis", what=what)
        except ApiUnavailable as e:
            log.debug("cluster %s: %s", self.name, e.message)
            return False
        except ApiError as e:
            log.warning("cluster %s: server version and APIs not readable: %s", self.name, e.message)
            self.apis_read.set()
            return True
        await self.daemon.emitter.emit(ev.KubernetesApisObserved(
            cluster=self.name, key=f"Discovery//{self.name}", time=time.time(),
            version=version, group_versions=served_group_versions(core, groups),
        ))
        self.apis_read.set()
        return True

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def synced(self) -> bool:
        return all(r.synced.is_set() for r in self.reflectors.values())

    def _on_health(self, snap: HealthSnapshot) -> None:
        now = time.time()
        e: Event
        if snap.state == ClusterState.CONNECTED:
            if self.apis_read.is_set():
                # reconnected: the server may have been upgraded meanwhile
                self._spawn(self._observe_apis(), f"discovery {self.name}")
            e = ev.ClusterConnected(
                cluster=self.name,
                key=f"Cluster//{self.name}",
                time=now,
                server=self.client.server,
                fingerprint=self.client.fingerprint,
            )
        elif snap.state in (ClusterState.UNREACHABLE, ClusterState.UNAUTHORIZED, ClusterState.REJECTED):
            e = ev.ClusterUnreachable(
                cluster=self.name,
                key=f"Cluster//{self.name}",
                time=now,
                reason=snap.reason or snap.state.value,
                since=snap.since,
            )
        else:
            return
        self._spawn(self.daemon.emitter.emit(e), f"health {self.name}")

    async def _after_first_list(self, source: facts.FactSource, r: Reflector) -> None:
        """After the first list: record as removed what the log last reported but the
        cluster no longer has (it went while the daemon was down). Each fact source
        knows how (``facts.disappeared``)."""
        await r.synced.wait()
        remembered = self.daemon.state.facts.get(self.name, {}).values()
        gone = facts.disappeared(source, self.name, remembered, r.store, time.time())
        if gone:
            await self.daemon.emitter.emit(gone)

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        r = self.reflectors.get("secrets")
        return r.store.get((namespace, name)) if r is not None else None

    #: runtimes stopped in this process (the GC loop collects fully after one stops)
    stopped_total = 0

    async def stop(self) -> None:
        ClusterRuntime.stopped_total += 1
        # Health first: the watches and requests that fail as they are stopped must not
        # report the cluster unreachable after it was removed.
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        try:
            await self.converger.stop()
            for r in self.reflectors.values():
                await r.stop()
                raise_if_cancelled()
            await reap(list(self._tasks))
        finally:
            await self.client.close()


# --- restoring the watchers' memory ----------------------------------------------------------------


def known_facts(state: ProjectionState) -> list[Event]:
    """The facts the restored state holds, as the watchers last reported them, so the
    fact emitter can be primed with them: after a restart, re-listing an unchanged
    cluster appends nothing. Generic: the state remembers the last fact of every
    identity (``ProjectionState.facts``), whatever its type."""
    return [e for by_key in state.facts.values() for e in by_key.values()]


def _task_kind(task: asyncio.Task[Any]) -> str:
    """A task's name without its cluster or sequence part (``Task-123`` → ``unnamed``)."""
    name = task.get_name().split(" ")[0]
    return "unnamed" if name.startswith("Task-") else name


def _task_stacks(loop: asyncio.AbstractEventLoop | None = None) -> list[dict[str, Any]]:
    """Every asyncio task and where it waits (file:line function, innermost last): what a
    stuck daemon is stuck on, without a debugger (like Go's goroutine dump)."""
    out = []
    for t in asyncio.all_tasks(loop):
        # Task.get_stack() stops at the task's own coroutine; the await chain goes deeper.
        frames: list[str] = []
        coro: Any = t.get_coro()
        while coro is not None and len(frames) < 50:
            f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
            if f is not None:
                frames.append(f"{f.f_code.co_filename.rsplit('/site-packages/', 1)[-1]}:{f.f_lineno} {f.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
        out.append({"name": t.get_name(), "waiting_at": frames})
    return sorted(out, key=lambda d: str(d["name"]))


def _memory_top(limit: int = 40) -> dict[str, Any]:
    """Where the live Python memory was allocated (file:line, largest first), when the
    process runs with ``PYTHONTRACEMALLOC=1`` (tracing costs time and memory, so it is
    never on by default): what grows with the fleet, without attaching a profiler."""
    if not tracemalloc.is_tracing():
        return {"tracing": False, "hint": "start the daemon with PYTHONTRACEMALLOC=1 (or =N frames) to see this"}
    snapshot = tracemalloc.take_snapshot().filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
    by_file = collections.Counter[str]()
    for stat in snapshot.statistics("filename"):
        by_file[stat.traceback[0].filename.rsplit("/site-packages/", 1)[-1]] += stat.size
    traced, peak = tracemalloc.get_traced_memory()
    return {
        "tracing": True,
        "traced_bytes": traced,
        "peak_bytes": peak,
        "by_line": [
            {"at": f"{s.traceback[0].filename.rsplit('/site-packages/', 1)[-1]}:{s.traceback[0].lineno}",
             "bytes": s.size, "blocks": s.count}
            for s in snapshot.statistics("lineno")[:limit]
        ],
        "by_file": [{"file": f, "bytes": n} for f, n in by_file.most_common(limit)],
    }


#: Seconds a stop may take before the process gives up on a clean shutdown.
SHUTDOWN_GRACE = 25.0


#: The name of the task that runs the daemon (and its stop).
MAIN_TASK = "federationd"


def _abandon(loop: asyncio.AbstractEventLoop) -> None:
    """Runs in the watchdog thread: the clean shutdown is stuck. Every task's await
    chain, then the threads, and last the stop's own chain: the end of the output is what
    a truncated log (a test's assertion message, ``kubectl logs --tail``) keeps."""
    print(f"federationd: shutdown took longer than {SHUTDOWN_GRACE:g}s; abandoning", file=sys.stderr)
    stacks: list[dict[str, Any]] = []
    with contextlib.suppress(Exception):  # another thread's loop: best effort
        stacks = _task_stacks(loop)
        for t in stacks:
            print(f"  task {t['name']}: {' <- '.join(reversed(t['waiting_at']))}", file=sys.stderr)
    with contextlib.suppress(Exception):
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    for t in stacks:
        if t["name"] == MAIN_TASK:
            print(f"federationd: the stop is waiting at {' <- '.join(reversed(t['waiting_at']))}", file=sys.stderr)
    sys.stderr.flush()
    os._exit(3)


# --- the daemon -------------------------------------------------------------------------------------


def _in_cluster_kubeconfig() -> dict[str, Any]:
    """A kubeconfig for the Pod's service account: the CA embedded, the token as its file
    — bound service-account tokens rotate, and the client re-reads the file (as
    kubernetes_asyncio's in-cluster loader does) instead of using the first one forever."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise config.ConfigError("no --kubeconfig given and not running in a cluster")
    ca = (SA_DIR / "ca.crt").read_bytes()
    server = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "users": [{"name": "sa", "user": {"tokenFile": str(SA_DIR / "token")}}],
        "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "sa"}}],
        "current-context": "in-cluster",
    }


class Daemon:
    """See the module docstring. ``await Daemon(settings).run()`` returns the exit code."""

    def __init__(self, settings: config.Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or METRICS
        self.identity = settings.effective_identity()
        self.state: ProjectionState = EMPTY
        self.desired: Desired = Desired()
        #: (seq, desired-state hash) after each of the latest derivations, for replay
        #: comparisons (~200 bytes each; a gateway change at 100 clusters is ~100 of them)
        self.history: collections.deque[tuple[int, str]] = collections.deque(maxlen=10_000)
        #: (seq, membership) each time the derived membership changed: the decisions this
        #: process applied, which a replay of the log at the same seq must reproduce
        self.decisions: collections.deque[tuple[int, Membership]] = collections.deque(maxlen=10_000)
        self.runtimes: dict[str, ClusterRuntime] = {}
        #: the global cap on writes in flight, with the master's own lane
        self.write_lanes = WriteLanes()
        self.events_log: EventLog | None = None
        #: appends go through it: while the log cannot be written, facts wait and writes hold
        self.guard: LogGuard | None = None
        self.emitter = facts.FactEmitter(self.append, metrics=self.metrics)
        self.status: StatusWriter | None = None
        self.elector: LeaderElector | None = None
        self.leading = False
        self.http: Server | None = None
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()
        self._snapshot_due = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._synced_head: int | None = None
        #: the last seq this process appended: until a derivation has seen it, what the
        #: converger and the status writer hold may be older than the log (``converged``)
        self._appended = 0
        self._last_fact_time = 0.0
        self._snapshotter: Snapshotter[ProjectionState] | None = None
        self._joining: set[str] = set()
        #: remote → seq of the ClusterRemoved appended when it was removed: until that is
        #: folded, the membership derived from older state still lists it for removal
        self._removed_at: dict[str, int] = {}
        #: clusters derived Available since they were connected: the others' writes are
        #: urgent (``ClusterConverger.set_desired(settling=)``)
        self._available_once: set[str] = set()
        #: RemoteIstio key → the stored version (``Reflector.token``) last found to need
        #: no finalizer write: a derivation checks only the CRs that changed since
        self._finalized: dict[str, object] = {}
        #: RemoteIstio (key, uid) whose left-behind Warning Event was recorded
        self._warned: set[tuple[str, str]] = set()
        #: the deadlines the membership asks for, appended as facts when they pass
        self.timers = DeadlineTimer(self.append, timeout=settings.remote_cleanup_timeout)
        self.resyncs = 0
        # Re-read at every lookup (not loaded once): a demo or a test rewrites the file
        # while the daemon runs, as new load balancers appear and their IPs move.
        self.resolver = HostnameResolver(
            _ResolutionLog(self),
            resolve=hosts_file_resolver(settings.hosts_file) if settings.hosts_file else None,
            interval=settings.resolve_period,
        )
        # The shared root of trust: leader-only, outside derive (keys never enter the
        # desired state or the log); its facts go through the change-filtering emitter.
        self.trust = trust_actuator.TrustActuator(kube=self._kube_for, record=self.emitter.emit)
        # multi-mesh: `global` in the cluster's DNS (ConfigMaps federationd does not own)
        self.cluster_dns = dns_actuator.ClusterDnsActuator(kube=self._kube_for)
        #: clusters whose gateway hostnames the resolver was last told about
        self._resolving: set[str] = set()
        #: the gateways map (and runtimes) the resolver was last fed from
        self._resolved_from: object = None
        self._resolved_runtimes: set[str] = set()
        #: the statuses whose gateway gauges are set
        self._metered: dict[str, Any] = {}
        #: what the rejected-cluster series were last computed from
        self._credentials_from: tuple[Any, ...] | None = None

    def secret_lookup(self, ref: str) -> str | None:
        """The value behind a ``secretref`` placeholder, from the live Istio CRs the master's
        reflector holds in memory (the log holds only the placeholder; remotes too are
        rendered from the master's CR)."""
        for rt in self.runtimes.values():
            r = rt.reflectors.get("istios") if rt.master else None
            if r is not None:
                specs = (cr.get("spec") for cr in r.store.values())
                return secretref.resolve(ref, (s for s in specs if isinstance(s, dict)))
        return None

    # --- the log ------------------------------------------------------------------------------

    async def append(self, events: Sequence[Event]) -> object:
        if self.events_log is None or self.events_log.closed or self.guard is None:
            return None
        seqs = await self.guard.append(events)
        self.metrics.event_log_head.set(seqs[-1] if seqs else 0)
        if seqs:
            self._appended = max(self._appended, seqs[-1])
            # Here too, not only when a record is folded: a fold loop that is stuck
            # (a slow fold, an overloaded process) folds nothing, and its lag
            # must grow with the log rather than stay at the last value it folded.
            head = await self.events_log.head()
            self.metrics.projection_lag_events.set(max(0, head - self.state.seq))
        return seqs

    async def writable(self) -> None:
        """Returns when a write to a cluster may start: its fact can be recorded."""
        if self.guard is not None:
            await self.guard.writable()

    async def may_write(self) -> None:
        """``writable``, for the actuators' writes (every one but the Lease's): returns
        when the write may start, and raises ``NotLeading`` if this process no longer
        leads by then. A write can wait there for longer than a lease (a full disk), and
        a leader that stepped down meanwhile must not send it after the new leader's."""
        await self.writable()
        if not self.leading:
            raise NotLeading("not sent: this process no longer leads")

    async def _tail(self, from_seq: int) -> None:
        assert self.events_log is not None
        delay = self.settings.debug_fold_delay
        async for record in self.events_log.tail(from_seq):
            if delay:
                # --debug-fold-delay: the fire drill for the projection-lag alert
                await asyncio.sleep(delay)
            before = self.state
            self.state = fold(before, record)
            if not isinstance(record.event, ev.ActuationApplied | ev.ActuationFailed):
                self._last_fact_time = record.event.time
            head = await self.events_log.head()
            self.metrics.projection_lag_events.set(max(0, head - self.state.seq))
            self.metrics.event_log_head.set(head)
            if head == record.seq and networks_moved(before, self.state):
                # before the derive task is woken: the master's write goes first
                self._master_lane()
            self._dirty.set()
            if self._snapshotter is not None and self._snapshotter.due(record.seq):
                self._snapshot_due.set()

    async def _snapshot_loop(self) -> None:
        """Saves the newest folded state when a snapshot is due, beside the fold loop:
        a change's facts are folded and derived while the state is encoded (on a worker
        thread) and stored, instead of waiting behind them."""
        while True:
            await self._snapshot_due.wait()
            self._snapshot_due.clear()
            state, snapshotter = self.state, self._snapshotter
            if snapshotter is None or not snapshotter.due(state.seq):
                continue
            try:
                await snapshotter.save(state.seq, state)
            except LogError as e:
                log.warning("snapshot not saved: %s", e)

    # --- deriving and pushing ------------------------------------------------------------------

    def initial_sync_done(self) -> bool:
        return self._synced_head is not None and self.state.seq >= self._synced_head

    async def _derive_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not self.initial_sync_done():
                continue
            state = self.state
            run = Derivation(state)
            # Each step's writes start (the workers run in the next turn, before this
            # task) while the next step is derived: the master's first, then every
            # cluster's, then statuses and the rest.
            early = run.master()
            if early is not None and self._push_early(state, *early):
                await asyncio.sleep(0)
            if self._push_objects(state, run.clusters()):
                await asyncio.sleep(0)
            desired = run.desired()
            self.desired = desired
            self.history.append((state.seq, desired_hash(desired)))
            if not self.decisions or (
                self.decisions[-1][1] is not desired.membership and self.decisions[-1][1] != desired.membership
            ):
                self.decisions.append((state.seq, desired.membership))
            self._push(state, desired)
            self._credential_metrics(state)
            self._gateway_metrics(desired)
            await self._apply_membership(state, desired.membership)
            self._feed_resolver(state)
            self.trust.set_plan(desired.membership.trust)
            self.cluster_dns.set_edits(desired.dns)
            self.timers.set({n: (d.since_seq, d.since) for n, d in desired.membership.deadlines.items()})
            # Let the fold task run between derivations of a burst.
            await asyncio.sleep(0)

    def _master_lane(self) -> None:
        """The master's objects of the state just folded, handed to its converger now,
        in the fold's own turn, when the fact may have moved the mesh's networks and
        nothing more is waiting to be folded: a moved gateway's ``meshNetworks`` is what
        the mesh waits for, and it need not wait for the derive task's turn (behind the
        other work the same change wakes, such as the echo of the gateway's Service on
        its cluster). The same derivation the derive task takes next (its ``master()``
        is then a memo hit); it pushes what that step would, a turn earlier. (A
        converger refuses an older state's objects after a newer one's:
        ``ClusterConverger.set_desired``.)"""
        if not self.initial_sync_done():
            return
        state = self.state
        early = Derivation(state).master()
        if early is not None:
            self._push_early(state, *early)

    def _kube_for(self, cluster: str) -> KubeClient | None:
        rt = self.runtimes.get(cluster)
        return rt.kube if rt is not None else None

    def _feed_resolver(self, state: ProjectionState) -> None:
        if state.gateways is self._resolved_from and set(self.runtimes) == self._resolved_runtimes:
            return  # no gateway moved since the resolver was last told
        self._resolved_from, self._resolved_runtimes = state.gateways, set(self.runtimes)
        hostnames = gateway_hostnames(state)
        for cluster in self._resolving - set(hostnames):
            self.resolver.set_hostnames(ClusterName(cluster), ())
        for cluster, hosts in hostnames.items():
            self.resolver.set_hostnames(ClusterName(cluster), hosts)
        self._resolving = set(hostnames)

    def _push(self, state: ProjectionState, desired: Desired) -> None:
        if not self._available_once.issuperset(self.runtimes):
            for st in desired.statuses.values():
                if st.status.get("Status") == AVAILABLE:
                    self._available_once.add(st.name if st.kind == "RemoteIstio" else st.cluster)
        self._push_objects(state, desired.clusters)
        if self.status is not None:
            self.status.set_desired(desired.statuses)

    def _push_objects(self, state: ProjectionState, clusters: Mapping[str, ClusterDesired]) -> bool:
        """Every joined cluster's objects to its converger; True when some key was queued."""
        queued = False
        for name, rt in self.runtimes.items():
            if not rt.joined:
                continue  # connected for its identity only: nothing is written there
            # Nothing desired: on the master an uninstall (the Istio is gone); on a
            # remote, leaving the mesh — its objects are deleted, then it is removed.
            queued = self._push_cluster(state, name, rt, clusters.get(name) or ClusterDesired()) or queued
        return queued

    def _push_cluster(self, state: ProjectionState, name: str, rt: ClusterRuntime, cd: ClusterDesired) -> bool:
        return rt.converger.set_desired(
            cd,
            state.actuations.get(name, {}),
            cause_seq=state.seq,
            cause_time=self._last_fact_time,
            settling=name not in self._available_once,
        )

    def _push_early(self, state: ProjectionState, name: str, cd: ClusterDesired) -> bool:
        """The master's objects, ahead of ``_push`` (which then finds them in place); True
        when some key was queued for a write."""
        rt = self.runtimes.get(name)
        if rt is None or not rt.joined or cd.hold:
            return False
        return self._push_cluster(state, name, rt, cd)

    def _gateway_metrics(self, desired: Desired) -> None:
        last, self._metered = self._metered, desired.statuses
        for key, st in desired.statuses.items():
            if last.get(key) is st:
                continue  # the same status as last time: its gauge is set
            if st.status.get("Status") == "Unmanaged":
                continue
            cluster = st.name if st.kind == "RemoteIstio" else st.cluster
            self.metrics.gateway_addresses.labels(cluster=cluster).set(len(st.status.get("GatewayAddress") or []))

    def _credential_metrics(self, state: ProjectionState) -> None:
        """A remote whose kubeconfig is refused is never connected, so no connection
        reports its ``federationd_cluster_state``: it is ``rejected`` from here."""
        inputs = (state.kubeconfigs, state.remote_istios, set(self.runtimes))
        if self._credentials_from is not None and all(
            a is b or a == b for a, b in zip(self._credentials_from, inputs, strict=True)
        ):
            return  # nothing it reads moved
        self._credentials_from = inputs
        self._metered = {}  # a cluster no longer rejected loses its series: set the gauges again
        good = {kc.remote for kc in state.kubeconfigs.values() if not kc.problem}
        refused = {kc.remote for kc in state.kubeconfigs.values() if kc.problem} - good
        members = {cr.name for cr in state.remote_istios.values() if not cr.deleting}
        self.metrics.set_rejected((refused & members) - set(self.runtimes), connected=self.runtimes)

    async def _master_synced(self) -> None:
        master = self.runtimes[self.settings.cluster_name]
        for r in list(master.reflectors.values()):
            await r.synced.wait()
        # and its API versions: the first render must not pick versions it then changes
        await master.apis_read.wait()
        # Everything the first lists appended must be folded before deriving: only
        # then does the state describe the cluster as it is now.
        assert self.events_log is not None
        self._synced_head = await self.events_log.head()
        log.info("initial lists synced (log head %d)", self._synced_head)
        self._dirty.set()

    # --- remotes (applying the derived membership) ------------------------------------------------

    async def _apply_membership(self, state: ProjectionState, m: Membership) -> None:
        """Start, join, stop and remove cluster runtimes as ``m`` says; nothing here is a
        decision (``projections.membership`` made them all)."""
        for name, rt in list(self.runtimes.items()):
            if rt.master or name in m.remove:
                continue
            want = m.connect.get(name)
            if want is None or want.fingerprint != rt.fingerprint:
                # refused after its identity read, no longer wanted, or new credentials
                # (reconnected below, with the new kubeconfig)
                await self._stop_remote(name)
                log.info("remote %s disconnected%s", name, " for a new kubeconfig" if want else "")
            elif not want.identify_only and not rt.joined:
                self._join(rt, member=want.member)
        for name, left_behind in m.remove.items():
            if name == self.settings.cluster_name:
                continue  # never the master (a log from before MasterConfigured)
            if state.seq < self._removed_at.get(name, 0):
                continue  # its ClusterRemoved is appended, not folded yet
            await self._remove_remote(name, left_behind)
        master = self.runtimes.get(self.settings.cluster_name)
        if master is None:
            return
        for name, want in m.connect.items():
            if name in self.runtimes or name in self._joining or state.seq < self._removed_at.get(name, 0):
                continue
            await self._connect_remote(master, name, want.secret, want.fingerprint)
            joining = self.runtimes.get(name)
            if joining is not None and not want.identify_only:
                self._join(joining, member=want.member)
        if self.leading:
            await self._apply_finalizers(m)

    def _join(self, rt: ClusterRuntime, *, member: bool) -> None:
        rt.join()
        if self.leading:
            rt.converger.start()
        log.info("remote %s %s", rt.name, "joined" if member else "connected to clean up")
        self._dirty.set()  # push its desired state at the next derivation

    async def _connect_remote(self, master: ClusterRuntime, name: str, secret_key: str, fingerprint: str) -> None:
        _, ns, secret_name = secret_of(secret_key)
        secret = master.secret(ns, secret_name)
        if secret is None:
            return
        try:
            raw = remotes_in_secret(secret).get(name)
        except SecretFormatError:
            return
        if raw is None:
            return
        self._joining.add(name)
        try:
            client = await connect(
                raw, name=name, request_timeout=self.settings.request_timeout, metrics=self.metrics,
                user_agent=user_agent(self.identity), http2=self.settings.http2,
            )
        except KubeconfigRejected as e:
            log.warning("remote %s: kubeconfig rejected: %s", name, e.reason)
            return
        finally:
            self._joining.discard(name)
        rt = ClusterRuntime(self, name, client, master=False, fingerprint=fingerprint)
        self.runtimes[name] = rt
        rt.open()

    async def _stop_remote(self, name: str) -> None:
        rt = self.runtimes.pop(name, None)
        if rt is None:
            return
        await rt.stop()
        self._available_once.discard(name)
        self.emitter.forget_cluster(name)
        self.metrics.forget_cluster(name)
        self._metered = {}  # its gauges went with it: set every one again
        self._dirty.set()

    async def _remove_remote(self, name: str, left_behind: str) -> None:
        had_runtime = name in self.runtimes
        await self._stop_remote(name)
        self.resolver.forget_cluster(ClusterName(name))
        self._resolving.discard(name)
        seqs = await self.append(
            [ev.ClusterRemoved(cluster=ClusterName(name), key=f"Cluster//{name}", time=time.time(), left_behind=left_behind)]
        )
        if isinstance(seqs, list) and seqs:
            self._removed_at[name] = int(seqs[-1])
        if left_behind:
            log.warning("remote %s: %s", name, left_behind)
        if had_runtime or left_behind:
            log.info("remote %s left", name)
        else:
            log.debug("remote %s forgotten", name)
        self._dirty.set()

    def finalizer_missing(self, cr: dict[str, Any]) -> None:
        """A RemoteIstio was written: derive again if it is live and lacks our finalizer."""
        if not finalizers.has_finalizer(cr) and not (cr.get("metadata") or {}).get("deletionTimestamp"):
            self._dirty.set()

    async def _apply_finalizers(self, m: Membership) -> None:
        """Leader only: the finalizer on every RemoteIstio the membership keeps, off every
        one it releases (with the left-behind Warning Event first, once)."""
        master = self.runtimes.get(self.settings.cluster_name)
        r = master.reflectors.get("remoteistios") if master is not None else None
        if master is None or r is None:
            return
        checked = self._finalized
        if len(checked) > len(m.finalize):
            for gone in set(checked).difference(m.finalize):
                del checked[gone]
        for key in (*m.finalize, *m.release):
            ns, _, name = key.partition("/")
            token = r.token((ns, name))
            if token is None or (checked.get(key) is token and key not in m.release):
                continue  # this very version was found to carry the finalizer
            cr = r.store.get((ns, name))
            if cr is None:
                continue
            try:
                if key not in m.release:
                    if not await finalizers.add_finalizer(master.kube, cr):
                        checked[key] = token
                    continue
                if not finalizers.has_finalizer(cr):
                    continue
                message = m.release[key]
                uid = str((cr.get("metadata") or {}).get("uid") or "")
                if message and (key, uid) not in self._warned:
                    await finalizers.warn_left_behind(master.kube, cr, message)
                    self._warned.add((key, uid))
                await finalizers.remove_finalizer(master.kube, cr)
                log.info("remote %s: finalizer removed from RemoteIstio %s", name, key)
            except ApiError as e:
                # Conflicts (the CR changed meanwhile) and outages: written again with the
                # CR as it is then (a failed write is retried, the decision stands).
                log.debug("RemoteIstio %s: finalizer not updated: %s", key, e.message)
                asyncio.get_running_loop().call_later(0.5, self._dirty.set)

    # --- leadership ---------------------------------------------------------------------------------

    async def _start_leading(self) -> None:
        self.leading = True
        log.info("%s is the leader", self.identity)
        await self.append(
            [
                ev.LeadershipAcquired(
                    cluster=ClusterName(self.settings.cluster_name),
                    key=f"Lease/{self.settings.namespace}/{self.settings.lease_name}",
                    time=time.time(),
                    identity=self.identity,
                )
            ]
        )
        for rt in self.runtimes.values():
            if rt.joined:
                rt.converger.start()
        if self.status is not None:
            self.status.start()
        self.trust.start()
        self.cluster_dns.start()
        self.timers.start()
        self._dirty.set()

    async def _stop_leading(self) -> None:
        if not self.leading:
            return
        self.leading = False
        log.info("%s stopped leading", self.identity)
        for rt in self.runtimes.values():
            rt.converger.pause()
        if self.status is not None:
            self.status.pause()
        await self.trust.pause()
        await self.cluster_dns.pause()
        await self.timers.stop()
        await self.append(
            [
                ev.LeadershipLost(
                    cluster=ClusterName(self.settings.cluster_name),
                    key=f"Lease/{self.settings.namespace}/{self.settings.lease_name}",
                    time=time.time(),
                    identity=self.identity,
                )
            ]
        )

    # --- HTTP ----------------------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        if self.events_log is None or self.events_log.closed:
            return False, "event log not open"
        if self.guard is not None and self.guard.problem:
            return False, self.guard.problem
        master = self.runtimes.get(self.settings.cluster_name)
        if master is None or not master.synced():
            return False, "initial lists not synced"
        if not self.initial_sync_done():
            return False, "initial lists not folded yet"
        return True, ""

    def _debug_hooks(self) -> dict[str, Callable[[], Any]]:
        return {
            "desired": lambda: {
                "seq": self.desired.seq,
                "hash": desired_hash(self.desired),
                "history": list(self.history),
            },
            "state": lambda: to_builtins(self.state),
            "converged": lambda: {
                "leader": self.leading,
                "seq": self.state.seq,
                "resyncs": self.resyncs,
                "clusters": {n: rt.converger.converged() for n, rt in self.runtimes.items() if rt.joined},
                "status": self.status.idle() if self.status else True,
                "trust": self.trust.idle(),
                "dns": self.cluster_dns.idle() and not self.desired.dns,
                "derived": self.desired.seq >= self._appended,
            },
            "actuators": lambda: {n: rt.converger.stats for n, rt in self.runtimes.items()},
            "membership": lambda: {
                "seq": self.desired.seq,
                "membership": msgspec.to_builtins(self.desired.membership),
                "history": [[seq, msgspec.to_builtins(m)] for seq, m in self.decisions],
                "runtimes": {n: {"joined": rt.joined, "fingerprint": rt.fingerprint} for n, rt in self.runtimes.items()},
                "deadlines": self.timers.pending(),
            },
            "runtime": self._runtime_stats,
            "tasks": _task_stacks,
            "memory": _memory_top,
        }

    def _runtime_stats(self) -> dict[str, Any]:
        """Process resources, for leak checks: tasks, open files, memory, clusters and
        how each is reached."""
        try:
            fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            fds = -1
        rss = 0
        with contextlib.suppress(OSError, ValueError, IndexError):
            rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return {
            "tasks": len(asyncio.all_tasks()),
            # by name prefix (before a cluster name), so a leak says what leaks
            "task_kinds": dict(sorted(collections.Counter(_task_kind(t) for t in asyncio.all_tasks()).items())),
            "open_files": fds,
            "rss_bytes": rss,
            "clusters": sorted(self.runtimes),
            "connections": {n: rt.client.connection_info() for n, rt in sorted(self.runtimes.items())},
        }

    # --- run -------------------------------------------------------------------------------------------

    async def _master_client(self) -> ClusterClient:
        s = self.settings
        kubeconfig: bytes | dict[str, Any]
        if s.kubeconfig:
            kubeconfig = await asyncio.to_thread(Path(s.kubeconfig).read_bytes)
        else:
            kubeconfig = await asyncio.to_thread(_in_cluster_kubeconfig)
        return await connect(
            kubeconfig,
            name=s.cluster_name,
            context=s.context or None,
            request_timeout=s.request_timeout,
            metrics=self.metrics,
            allow_files=not s.kubeconfig,  # the in-cluster one, built above: the token file
            user_agent=user_agent(self.identity),
            http2=s.http2,
        )

    def request_stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        # A stop must end the process even if some cleanup step hangs (a cluster that
        # never answers, a bug): after the grace period, report where it was stuck and
        # leave with a non-zero code rather than linger until SIGKILL.
        loop = asyncio.get_running_loop()
        timer = threading.Timer(SHUTDOWN_GRACE, _abandon, args=(loop,))
        timer.daemon = True
        timer.start()

    async def run(self) -> int:
        s = self.settings
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        if me is not None:
            me.set_name(MAIN_TASK)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        self.events_log = await EventLog.open(
            s.log,
            synchronous=s.synchronous,  # type: ignore[arg-type]
            retention_window=s.retention_window or None,
        )
        self.guard = LogGuard(self.events_log, metrics=self.metrics)
        try:
            restored = await replay(self.events_log, fold, EMPTY, snapshot=SNAPSHOTS)
            self.state = restored.state
            known = known_facts(self.state)
            self.emitter.prime(known)
            self.resolver.prime(known)
            self._snapshotter = Snapshotter(self.events_log, SNAPSHOTS, every=s.snapshot_every, last=restored.seq)
            log.info(
                "restored seq %d (snapshot %s, %d events folded)",
                restored.seq,
                restored.snapshot_seq,
                restored.folded,
            )
            self.http = await serve(
                make_app(metrics=self.metrics, ready=self.ready, debug=self._debug_hooks()),
                s.http_host,
                s.http_port,
            )
            print(f"federationd: serving on {self.http.url}", flush=True)
            client = await self._master_client()
            if self.state.master != s.cluster_name:
                # before any fact about it: the master is never taken for a remote
                await self.append([ev.MasterConfigured(
                    cluster=ClusterName(s.cluster_name), key=f"Cluster//{s.cluster_name}", time=time.time(),
                    identity=self.identity,
                )])
            master = ClusterRuntime(self, s.cluster_name, client, master=True)
            self.runtimes[s.cluster_name] = master
            self.status = StatusWriter(s.cluster_name, master.kube, append=self.append, metrics=self.metrics)
            # The supervisor's own tasks, by name; one that fails stops the daemon (a
            # daemon whose fold or derive loop died must not pretend to be healthy).
            async with asyncio.TaskGroup() as group:
                for name, coro in (
                    ("tail", self._tail(restored.seq + 1)),
                    ("derive", self._derive_loop()),
                    ("snapshot", self._snapshot_loop()),
                    ("initial-sync", self._master_synced()),
                    ("resync", self._resync_loop()),
                    ("gc", freeze_loop(lambda: ClusterRuntime.stopped_total)),
                ):
                    if name == "initial-sync":
                        master.start()
                    self._tasks.append(group.create_task(self._supervised(name, coro), name=name))
                await self.resolver.start()
                if s.leader_elect:
                    self.elector = LeaderElector(
                        # its own client: the Lease is written by a candidate too
                        KubeClient(master.client, before_write=self.writable),
                        name=s.lease_name,
                        namespace=s.namespace,
                        identity=self.identity,
                        lease_duration=s.lease_duration,
                        renew_deadline=s.renew_deadline,
                        retry_period=s.retry_period,
                        on_started_leading=self._start_leading,
                        on_stopped_leading=self._stop_leading,
                        metrics=self.metrics,
                    )
                    self.elector.start()
                else:
                    await self._start_leading()
                await self._stop.wait()
                log.info("stopping")
                for task in self._tasks:
                    task.cancel()
        finally:
            await self._shutdown()
        log.info("stopped")
        return 0

    async def _supervised(self, name: str, coro: Awaitable[None]) -> None:
        try:
            await coro
        except Exception:
            log.exception("task %s failed; stopping", name)
            self.request_stop()

    async def _resync_loop(self) -> None:
        """Every ``resync_period``, every cluster re-checked, one at a time spread over
        the period: a fleet-wide resync at one instant is a burst of work (every key of
        every cluster) that delays whatever change arrives with it."""
        while True:
            names = sorted(self.runtimes)
            step = self.settings.resync_period / (len(names) + 1)
            for name in names:
                await asyncio.sleep(step)
                rt = self.runtimes.get(name)
                if self.leading and rt is not None:
                    rt.converger.resync()
            await asyncio.sleep(step)
            if self.leading:
                self.trust.resync()
                self.cluster_dns.resync()
                self.resyncs += 1

    async def _shutdown(self) -> None:
        if self.guard is not None:
            # facts still waiting for a full log are not recorded; writes waiting for it
            # do not start
            self.guard.stop()
        # Stop writing first (an in-flight write finishes), then watching.
        for rt in self.runtimes.values():
            rt.converger.pause()
        await self.trust.stop()
        await self.cluster_dns.stop()
        if self.status is not None:
            await self.status.stop()
        await reap(self._tasks)
        await self.resolver.stop()
        for rt in list(self.runtimes.values()):
            if rt.master and self.elector is not None:
                continue  # the Lease is released through the master's client below
            await rt.stop()
        if self.elector is not None:
            await self.elector.stop(release=True)
            master = self.runtimes.get(self.settings.cluster_name)
            if master is not None:
                await master.stop()
        if self.leading:
            with contextlib.suppress(LogError):
                await self._stop_leading()
        if self.http is not None:
            log.debug("closing the HTTP server")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self.http.close()
        if self.events_log is not None:
            log.debug("flushing the event log")
            with contextlib.suppress(LogError):
                async for record in self.events_log.read(self.state.seq + 1):
                    self.state = fold(self.state, record)
            if self._snapshotter is not None and self.state.seq > self._snapshotter.last:
                # A clean stop leaves a snapshot of everything folded: the next start
                # folds nothing it has seen.
                with contextlib.suppress(LogError):
                    await self._snapshotter.save(self.state.seq, self.state)
            await self.events_log.close()


# --- entry point ---------------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    """``argv[0]`` is ``run`` (as ``federationd.cli`` dispatches it)."""
    try:
        settings = config.load(list(argv[1:]))
    except config.ConfigError as e:
        print(f"federationd run: {e}", file=sys.stderr)
        return 2
    if hasattr(signal, "SIGXFSZ"):
        # A file size limit (``ulimit -f``) must end in a write error the event log
        # reports and the daemon survives, not in the signal's default: death.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    share_tls_read_buffers()
    try:
        return asyncio.run(Daemon(settings).run())
    except (LogError, KubeconfigRejected, config.ConfigError, OSError) as e:
        print(f"federationd run: {e}", file=sys.stderr)
        return 1


__all__ = ["ClusterRuntime", "Daemon", "main"]
