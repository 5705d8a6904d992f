"""``federationd run``: the daemon — watchers → log → projections → actuators.

The process wires the pieces together and owns their lifecycles; it decides nothing
itself (that is ``projections``) and writes nothing itself (that is ``actuators``):

1. **Restore.** Open the event log, fold the newest projection snapshot plus the tail
   after it (``events.replay``): restart costs O(tail), not O(log).
2. **Observe.** One ``ClusterRuntime`` per cluster — the master from the start, each
   remote when the projection says it has joined (a ``RemoteIstio`` plus a usable
   kubeconfig Secret), restarted when its kubeconfig fingerprint changes, stopped when
   it leaves. A runtime runs the fact reflectors of its cluster (``watchers.facts``:
   appended only when a fact changed), reports its connection health as
   ``ClusterConnected``/``ClusterUnreachable``, and owns the cluster's converger.
   After a restart, a reflector's first list is compared with the restored state so
   that what disappeared while the daemon was down is recorded as removed.
3. **Fold and derive.** One task tails the log and folds every record into the
   projection state (saving a snapshot every ``--snapshot-every`` events); another
   derives the desired state whenever the state moved (coalescing bursts) and hands each
   cluster's part to its converger and the CR statuses to the status writer.
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
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from events import types as ev
from events.log import EventLog, LogError
from events.replay import Snapshotter, replay
from events.types import ClusterName, Event
from federationd import config, secretref
from federationd.actuators import finalizers
from federationd.actuators import trust as trust_actuator
from federationd.actuators.client import ApiError, KubeClient
from federationd.actuators.converge import ClusterConverger, WriteLanes
from federationd.actuators.status import StatusWriter
from federationd.actuators.tasks import raise_if_cancelled, reap
from federationd.clusters import (
    ClusterClient,
    ClusterState,
    HealthSnapshot,
    KubeconfigRejected,
    SecretFormatError,
    connect,
    remotes_in_secret,
)
from federationd.http import Server, make_app, serve
from federationd.inspect import SNAPSHOTS
from federationd.leader import LeaderElector
from federationd.metrics import METRICS, Metrics
from federationd.projections.derive import ClusterDesired, Desired, derive, desired_hash
from federationd.projections.state import (
    EMPTY,
    ProjectionState,
    fold,
    secret_of,
    to_builtins,
)
from federationd.render.objects import MANAGED_BY, MANAGED_BY_LABEL
from federationd.watchers import facts
from federationd.watchers.reflector import Reflector, limit_tls_read_buffers
from federationd.watchers.resolver import HostnameResolver, hostname_key, hosts_file_resolver

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
        self.kube = KubeClient(client)
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
        self.leaving_since: float | None = None

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
        return out

    def start(self) -> None:
        self._unsubscribe = self.client.health.subscribe(self._on_health)
        for name, source in self._sources().items():
            r = facts.watch_facts(
                self.client, source, self.daemon.emitter, cluster=self.name, **self._reflector_options
            )
            self.reflectors[name] = r
            r.start()
            self._spawn(self._after_first_list(name, r), f"first-list {self.name}/{name}")
        # the same watches serve the converger's inventory of these kinds (one connection each)
        self.converger.share({
            (r.api_version, r.kind): r
            for n, r in self.reflectors.items() if n in ("namespaces", "deployments", "daemonsets")
        })

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

    async def _after_first_list(self, name: str, r: Reflector) -> None:
        """After the first list: record as removed what the restored state still holds
        but the cluster no longer has (it went while the daemon was down)."""
        await r.synced.wait()
        state = self.daemon.state
        c = self.name
        now = time.time()
        present = set(r.store)
        gone: list[Event] = []
        if name == "namespaces":
            for ns in state.namespaces.get(c, {}):
                if ("", ns) not in present:
                    gone += facts.namespace_removed(c, {"metadata": {"name": ns}}, now)
        elif name == "nodes":
            for node in state.nodes.get(c, {}):
                if ("", node) not in present:
                    gone += facts.node_removed(c, {"metadata": {"name": node}}, now)
        elif name == "gateways":
            for key in state.gateways.get(c, {}):
                ns, _, n = key.partition("/")
                if (ns, n) not in present:
                    gone += facts.gateway_service_removed(c, {"metadata": {"namespace": ns, "name": n}}, now)
        elif name in ("deployments", "daemonsets"):
            kind = "Deployment" if name == "deployments" else "DaemonSet"
            for key in state.workloads.get(c, {}):
                k, ns, n = key.split("/", 2)
                if k == kind and (ns, n) not in present:
                    gone += facts.workload_removed(c, {"kind": kind, "metadata": {"namespace": ns, "name": n}}, now)
        elif name in ("istios", "remoteistios"):
            crs = state.istios if name == "istios" else state.remote_istios
            removed = facts.istio_removed if name == "istios" else facts.remote_istio_removed
            for cr in crs.values():
                if cr.cluster == c and (cr.namespace, cr.name) not in present:
                    gone += removed(c, {"metadata": {"namespace": cr.namespace, "name": cr.name}}, now)
        elif name == "endpoints":
            for key in state.pods.get(c, {}):
                ns, _, n = key.partition("/")
                if (ns, n) not in present:
                    gone += facts.endpoints_removed(c, {"metadata": {"namespace": ns, "name": n}}, now)
        elif name == "cacerts":
            for key in state.ca_secrets.get(c, {}):
                ns, _, n = key.partition("/")
                if (ns, n) not in present:
                    gone += trust_actuator.cacerts_removed(c, {"metadata": {"namespace": ns, "name": n}}, now)
        elif name == "secrets":
            for key, kc in state.kubeconfigs.items():
                kind, ns, n = secret_of(key)
                if (ns, n) not in present:
                    gone.append(ev.KubeconfigRemoved(cluster=c, key=f"{kind}/{ns}/{n}", time=now, remote=kc.remote))
        if gone:
            await self.daemon.emitter.emit(gone)

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        r = self.reflectors.get("secrets")
        return r.store.get((namespace, name)) if r is not None else None

    #: runtimes stopped in this process (the GC loop collects fully after one stops)
    stopped_total = 0

    async def stop(self) -> None:
        ClusterRuntime.stopped_total += 1
        try:
            await self.converger.stop()
            for r in self.reflectors.values():
                await r.stop()
                raise_if_cancelled()
            await reap(list(self._tasks))
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            await self.client.close()


# --- restoring the watchers' memory ----------------------------------------------------------------


def known_facts(state: ProjectionState, *, master: str) -> list[Event]:
    """The facts the restored state holds, as the watchers would report them now, so the
    fact emitter can be primed with them: after a restart, re-listing an unchanged
    cluster appends nothing."""
    out: list[Event] = []
    for c, info in state.clusters.items():
        if info.state == "connected":
            out.append(ev.ClusterConnected(cluster=ClusterName(c), key=f"Cluster//{c}", time=0.0, server=info.server, fingerprint=info.fingerprint, version=info.version))
    for key, kc in state.kubeconfigs.items():
        out.append(ev.KubeconfigObserved(cluster=ClusterName(master), key="/".join(secret_of(key)), time=0.0, remote=kc.remote, server=kc.server, fingerprint=kc.fingerprint, problem=kc.problem))
    for crs, cls in ((state.istios, ev.IstioSpecChanged), (state.remote_istios, ev.RemoteIstioSpecChanged)):
        kind = "Istio" if cls is ev.IstioSpecChanged else "RemoteIstio"
        for cr in crs.values():
            out.append(cls(cluster=ClusterName(cr.cluster), key=f"{kind}/{cr.namespace}/{cr.name}", time=0.0, namespace=cr.namespace, name=cr.name, uid=cr.uid, generation=cr.generation, spec=cr.spec, creation_timestamp=cr.creation_timestamp, deleting=cr.deleting))
    for c, namespaces in state.namespaces.items():
        for name, n in namespaces.items():
            out.append(ev.NamespaceObserved(cluster=ClusterName(c), key=f"Namespace//{name}", time=0.0, name=name, labels=dict(n.labels), terminating=n.terminating))
    for c, nodes in state.nodes.items():
        for name, node in nodes.items():
            out.append(ev.NodeLocalityObserved(cluster=ClusterName(c), key=f"Node//{name}", time=0.0, node=name, region=node.region, zone=node.zone, subzone=node.subzone, addresses=node.addresses))
    for c, gateways in state.gateways.items():
        for gw in gateways.values():
            out.append(ev.GatewayAddressesObserved(cluster=ClusterName(c), key=f"Service/{gw.namespace}/{gw.name}", time=0.0, namespace=gw.namespace, name=gw.name, service_type=gw.service_type, ips=gw.ips, hostnames=gw.hostnames, node_ports=dict(gw.node_ports), ports=dict(gw.ports)))
    for c, resolutions in state.resolutions.items():
        for host, res in resolutions.items():
            out.append(ev.HostnameResolved(cluster=ClusterName(c), key=hostname_key(host), time=0.0, hostname=host, ips=res.ips, error=res.error))
    for c, pods in state.pods.items():
        for key, pa in pods.items():
            ns, _, svc = key.partition("/")
            out.append(ev.PodAddressesObserved(cluster=ClusterName(c), key=f"Endpoints/{ns}/{svc}", time=0.0, namespace=ns, service=svc, ips=pa.ips, ports=dict(pa.ports)))
    for c, cas in state.ca_secrets.items():
        for key, ca in cas.items():
            ns, _, name = key.partition("/")
            out.append(ev.CaSecretObserved(cluster=ClusterName(c), key=f"Secret/{ns}/{name}", time=0.0, namespace=ns, name=name, fingerprint=ca.fingerprint, managed=ca.managed, problem=ca.problem))
    for c, tr in state.trust.items():
        out.append(ev.TrustObserved(cluster=ClusterName(c), key=trust_actuator.trust_key(c), time=0.0, root_fingerprint=tr.root_fingerprint, problem=tr.problem))
    for c, workloads in state.workloads.items():
        for key, wl in workloads.items():
            kind, ns, name = key.split("/", 2)
            out.append(ev.WorkloadReadinessObserved(cluster=ClusterName(c), key=key, time=0.0, kind=kind, namespace=ns, name=name, ready=wl.ready, desired=wl.desired, available=wl.available, image=wl.image, generation=wl.generation, observed_generation=wl.observed_generation))
    return out


def _task_kind(task: asyncio.Task[Any]) -> str:
    """A task's name without its cluster or sequence part (``Task-123`` → ``unnamed``)."""
    name = task.get_name().split(" ")[0]
    return "unnamed" if name.startswith("Task-") else name


#: Seconds a stop may take before the process gives up on a clean shutdown.
SHUTDOWN_GRACE = 25.0


def _abandon(loop: asyncio.AbstractEventLoop) -> None:
    """Runs in the watchdog thread: the clean shutdown is stuck."""
    print(f"federationd: shutdown took longer than {SHUTDOWN_GRACE:g}s; abandoning", file=sys.stderr)
    with contextlib.suppress(Exception):
        for task in asyncio.all_tasks(loop):
            task.print_stack(limit=8, file=sys.stderr)
    with contextlib.suppress(Exception):
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(3)


# --- the daemon -------------------------------------------------------------------------------------


def _in_cluster_kubeconfig() -> dict[str, Any]:
    """A kubeconfig for the Pod's service account (token and CA embedded, not as paths:
    the sanitiser refuses file references)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise config.ConfigError("no --kubeconfig given and not running in a cluster")
    token = (SA_DIR / "token").read_text().strip()
    ca = (SA_DIR / "ca.crt").read_bytes()
    server = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "users": [{"name": "sa", "user": {"token": token}}],
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
        #: (seq, desired-state hash) after each derivation, for replay comparisons.
        self.history: collections.deque[tuple[int, str]] = collections.deque(maxlen=100_000)
        self.runtimes: dict[str, ClusterRuntime] = {}
        #: the global cap on writes in flight, with the master's own lane
        self.write_lanes = WriteLanes()
        self.events_log: EventLog | None = None
        self.emitter = facts.FactEmitter(self.append, metrics=self.metrics)
        self.status: StatusWriter | None = None
        self.elector: LeaderElector | None = None
        self.leading = False
        self.http: Server | None = None
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._synced_head: int | None = None
        #: the last seq this process appended: until a derivation has seen it, what the
        #: converger and the status writer hold may be older than the log (``converged``)
        self._appended = 0
        self._last_fact_time = 0.0
        self._snapshotter: Snapshotter[ProjectionState] | None = None
        self._joining: set[str] = set()
        #: remote → seq of the ClusterRemoved appended when it was cleaned up
        self._removed_at: dict[str, int] = {}
        #: remote → the Warning Event message, when it was given up while leaving
        self._left_behind: dict[str, str] = {}
        #: remote → when its RemoteIstio was first seen being deleted (monotonic)
        self._finalizing_since: dict[str, float] = {}
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
        #: clusters whose gateway hostnames the resolver was last told about
        self._resolving: set[str] = set()

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
        if self.events_log is None or self.events_log.closed:
            return None
        seqs = await self.events_log.append(list(events))
        self.metrics.event_log_head.set(seqs[-1] if seqs else 0)
        if seqs:
            self._appended = max(self._appended, seqs[-1])
        return seqs

    async def _tail(self, from_seq: int) -> None:
        assert self.events_log is not None
        async for record in self.events_log.tail(from_seq):
            self.state = fold(self.state, record)
            if not isinstance(record.event, ev.ActuationApplied | ev.ActuationFailed):
                self._last_fact_time = record.event.time
            head = await self.events_log.head()
            self.metrics.projection_lag_events.set(max(0, head - self.state.seq))
            self.metrics.event_log_head.set(head)
            self._dirty.set()
            if self._snapshotter is not None:
                try:
                    await self._snapshotter.observe(record.seq, self.state)
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
            desired = derive(state)
            self.desired = desired
            self.history.append((state.seq, desired_hash(desired)))
            self._push(state, desired)
            self._gateway_metrics(desired)
            await self._reconcile_remotes(state, desired)
            if self.leading:
                await self._manage_finalizers(state)
            self._feed_resolver(state)
            self.trust.set_plan(
                trust_actuator.trust_plan(state, remotes=self._member_remotes(), leaving=self._leaving_remotes())
            )
            # Let the fold task run between derivations of a burst.
            await asyncio.sleep(0)

    def _kube_for(self, cluster: str) -> KubeClient | None:
        rt = self.runtimes.get(cluster)
        return rt.kube if rt is not None else None

    def _member_remotes(self) -> list[str]:
        """Connected remotes that are not leaving (those get the shared root of trust)."""
        return [n for n, rt in self.runtimes.items() if not rt.master and rt.leaving_since is None]

    def _leaving_remotes(self) -> list[str]:
        return [n for n, rt in self.runtimes.items() if not rt.master and rt.leaving_since is not None]

    def _feed_resolver(self, state: ProjectionState) -> None:
        hostnames = gateway_hostnames(state)
        for cluster in self._resolving - set(hostnames):
            self.resolver.set_hostnames(ClusterName(cluster), ())
        for cluster, hosts in hostnames.items():
            self.resolver.set_hostnames(ClusterName(cluster), hosts)
        self._resolving = set(hostnames)

    def _push(self, state: ProjectionState, desired: Desired) -> None:
        for name, rt in self.runtimes.items():
            cd = desired.clusters.get(name)
            if cd is None:
                # Nothing desired: on the master an uninstall (the Istio is gone); on a
                # remote, leaving the mesh — its objects are deleted, then it is dropped.
                cd = ClusterDesired()
                if not rt.master and rt.leaving_since is None:
                    rt.leaving_since = time.monotonic()
            else:
                rt.leaving_since = None
            rt.converger.set_desired(
                cd,
                state.actuations.get(name, {}),
                cause_seq=state.seq,
                cause_time=self._last_fact_time,
            )
        if self.status is not None:
            self.status.set_desired(desired.statuses)

    def _gateway_metrics(self, desired: Desired) -> None:
        for st in desired.statuses.values():
            if st.status.get("Status") == "Unmanaged":
                continue
            cluster = st.name if st.kind == "RemoteIstio" else st.cluster
            self.metrics.gateway_addresses.labels(cluster=cluster).set(len(st.status.get("GatewayAddress") or []))

    async def _master_synced(self) -> None:
        master = self.runtimes[self.settings.cluster_name]
        for r in list(master.reflectors.values()):
            await r.synced.wait()
        # Everything the first lists appended must be folded before deriving: only
        # then does the state describe the cluster as it is now.
        assert self.events_log is not None
        self._synced_head = await self.events_log.head()
        log.info("initial lists synced (log head %d)", self._synced_head)
        self._dirty.set()

    # --- remotes (per-cluster lifecycle) ------------------------------------------------------------

    def _wanted_remotes(self, state: ProjectionState) -> dict[str, tuple[str, str, bool]]:
        """remote name → (Secret key, kubeconfig fingerprint, member) of every remote to
        connect: members have a live RemoteIstio; non-members only have objects of ours
        left on them (their RemoteIstio went while the daemon was down) to clean up."""
        out: dict[str, tuple[str, str, bool]] = {}
        kubeconfigs = {kc.remote: (key, kc) for key, kc in state.kubeconfigs.items() if not kc.problem}
        members = {cr.name for cr in state.remote_istios.values() if not cr.deleting}
        for name in members | set(state.actuations):
            if name == self.settings.cluster_name:
                continue
            if name not in members and state.seq < self._removed_at.get(name, 0):
                continue  # just cleaned up; its ClusterRemoved is not folded yet
            found = kubeconfigs.get(name)
            if found is not None:
                out[name] = (found[0], found[1].fingerprint, name in members)
        return out

    async def _reconcile_remotes(self, state: ProjectionState, desired: Desired) -> None:
        wanted = self._wanted_remotes(state)
        master = self.runtimes.get(self.settings.cluster_name)
        for name, rt in list(self.runtimes.items()):
            if rt.master:
                continue
            want = wanted.get(name)
            if want is not None and want[1] == rt.fingerprint:
                if want[2]:
                    continue  # a member, connected with the current kubeconfig
            elif want is not None:
                # Rotated credentials: reconnect this cluster only.
                await self._drop_remote(name, removed=False)
                continue
            if rt.leaving_since is None:
                continue  # not told to leave yet: _push empties its desired state first
            if rt.converger.converged() and rt.converger.emptied() and not trust_actuator.holds_trust(state, name):
                await self._drop_remote(name, removed=True)
            elif time.monotonic() - rt.leaving_since > self.settings.remote_cleanup_timeout:
                self._left_behind[name] = self._left_behind_message(state, name, rt)
                log.warning("remote %s: %s", name, self._left_behind[name])
                await self._drop_remote(name, removed=True)
            else:
                # Look again shortly: the last deletion may still be in flight, and an
                # unreachable remote must still be dropped after --remote-cleanup-timeout.
                asyncio.get_running_loop().call_later(0.25, self._dirty.set)
        if master is None:
            return
        wanted = self._wanted_remotes(state)  # again: a remote dropped above stays dropped
        for name, (secret_key, fp, member) in wanted.items():
            if name in self.runtimes or name in self._joining:
                continue
            _, ns, secret_name = secret_of(secret_key)
            secret = master.secret(ns, secret_name)
            if secret is None:
                continue
            try:
                raw = remotes_in_secret(secret).get(name)
            except SecretFormatError:
                continue
            if raw is None:
                continue
            self._joining.add(name)
            try:
                client = await connect(raw, name=name, request_timeout=self.settings.request_timeout, metrics=self.metrics)
            except KubeconfigRejected as e:
                log.warning("remote %s: kubeconfig rejected: %s", name, e.reason)
                continue
            finally:
                self._joining.discard(name)
            rt = ClusterRuntime(self, name, client, master=False, fingerprint=fp)
            self.runtimes[name] = rt
            rt.start()
            if self.leading:
                rt.converger.start()
            log.info("remote %s %s", name, "joined" if member else "connected to clean up")
            self._dirty.set()  # push its desired state at the next derivation

    def _left_behind_message(self, state: ProjectionState, name: str, rt: ClusterRuntime) -> str:
        c = state.clusters.get(name)
        reason = c.reason if c is not None and c.state == "unreachable" else ""
        left = sorted(state.actuations.get(name, {}))
        return finalizers.left_behind_message(
            name, reason=reason, waited=self.settings.remote_cleanup_timeout, left=left
        )

    async def _manage_finalizers(self, state: ProjectionState) -> None:
        """Leader only: put the finalizer on every live RemoteIstio; take it off a
        deleted one once its remote has left — nothing of ours known on it (or given up
        after --remote-cleanup-timeout, with a Warning Event) and the master converged
        without its network."""
        master = self.runtimes.get(self.settings.cluster_name)
        r = master.reflectors.get("remoteistios") if master is not None else None
        if master is None or r is None:
            return
        being_deleted = {n for (_, n), cr in r.store.items() if (cr.get("metadata") or {}).get("deletionTimestamp")}
        for gone in set(self._finalizing_since) - being_deleted:
            del self._finalizing_since[gone]
        for (ns, name), cr in list(r.store.items()):
            deleting = name in being_deleted
            try:
                if not deleting:
                    await finalizers.add_finalizer(master.kube, cr)
                    continue
                if not finalizers.has_finalizer(cr):
                    continue
                since = self._finalizing_since.setdefault(name, time.monotonic())
                if name in self.runtimes or name in self._joining:
                    continue  # still leaving: its objects are being deleted
                if name in state.actuations:
                    # Objects of ours are known on a remote it cannot connect to (its
                    # kubeconfig went first): give up on them after the same bound.
                    if time.monotonic() - since <= self.settings.remote_cleanup_timeout:
                        asyncio.get_running_loop().call_later(0.5, self._dirty.set)
                        continue
                    self._left_behind.setdefault(name, finalizers.left_behind_message(
                        name, reason="no usable kubeconfig", waited=self.settings.remote_cleanup_timeout,
                        left=sorted(state.actuations[name]),
                    ))
                if not master.converger.converged():
                    asyncio.get_running_loop().call_later(0.25, self._dirty.set)
                    continue  # the master still announces its network
                message = self._left_behind.get(name)
                if message is not None:
                    await finalizers.warn_left_behind(master.kube, cr, message)
                await finalizers.remove_finalizer(master.kube, cr)
                self._left_behind.pop(name, None)
                self._finalizing_since.pop(name, None)
                log.info("remote %s: finalizer removed from RemoteIstio %s/%s", name, ns, name)
            except ApiError as e:
                # Conflicts (the CR changed meanwhile) and outages: the next derivation
                # looks again with the CR as it is then.
                log.debug("RemoteIstio %s/%s: finalizer not updated: %s", ns, name, e.message)
                asyncio.get_running_loop().call_later(0.5, self._dirty.set)

    async def _drop_remote(self, name: str, *, removed: bool) -> None:
        rt = self.runtimes.pop(name, None)
        if rt is None:
            return
        await rt.stop()
        self.emitter.forget_cluster(name)
        self.metrics.forget_cluster(name)
        if removed:
            self.resolver.forget_cluster(ClusterName(name))
            self._resolving.discard(name)
        if removed:
            seqs = await self.append([ev.ClusterRemoved(cluster=ClusterName(name), key=f"Cluster//{name}", time=time.time())])
            if isinstance(seqs, list) and seqs:
                self._removed_at[name] = int(seqs[-1])
        log.info("remote %s %s", name, "left" if removed else "disconnected for a new kubeconfig")
        self._dirty.set()

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
            rt.converger.start()
        if self.status is not None:
            self.status.start()
        self.trust.start()
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
                "clusters": {n: rt.converger.converged() for n, rt in self.runtimes.items()},
                "status": self.status.idle() if self.status else True,
                "trust": self.trust.idle(),
                "derived": self.desired.seq >= self._appended,
            },
            "actuators": lambda: {n: rt.converger.stats for n, rt in self.runtimes.items()},
            "runtime": self._runtime_stats,
        }

    def _runtime_stats(self) -> dict[str, Any]:
        """Process resources, for leak checks: tasks, open files, memory, clusters."""
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
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        self.events_log = await EventLog.open(
            s.log,
            synchronous=s.synchronous,  # type: ignore[arg-type]
            retention_window=s.retention_window or None,
        )
        try:
            restored = await replay(self.events_log, fold, EMPTY, snapshot=SNAPSHOTS)
            self.state = restored.state
            known = known_facts(self.state, master=s.cluster_name)
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
            master = ClusterRuntime(self, s.cluster_name, client, master=True)
            self.runtimes[s.cluster_name] = master
            self.status = StatusWriter(s.cluster_name, master.kube, append=self.append, metrics=self.metrics)
            self._tasks.append(asyncio.create_task(self._tail(restored.seq + 1), name="tail"))
            self._tasks.append(asyncio.create_task(self._derive_loop(), name="derive"))
            master.start()
            self._tasks.append(asyncio.create_task(self._master_synced(), name="initial-sync"))
            self._tasks.append(asyncio.create_task(self._resync_loop(), name="resync"))
            self._tasks.append(asyncio.create_task(_gc_loop(lambda: ClusterRuntime.stopped_total), name="gc"))
            await self.resolver.start()
            if s.leader_elect:
                self.elector = LeaderElector(
                    master.kube,
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
        finally:
            await self._shutdown()
        log.info("stopped")
        return 0

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_period)
            if self.leading:
                for rt in self.runtimes.values():
                    rt.converger.resync()
                self.trust.resync()
                self.resyncs += 1

    async def _shutdown(self) -> None:
        # Stop writing first (an in-flight write finishes), then watching.
        for rt in self.runtimes.values():
            rt.converger.pause()
        await self.trust.stop()
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
            await self._stop_leading()
        if self.http is not None:
            log.debug("closing the HTTP server")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.http.close(), 5.0)
        if self.events_log is not None:
            log.debug("flushing the event log")
            with contextlib.suppress(LogError):
                async for record in self.events_log.read(self.state.seq + 1):
                    self.state = fold(self.state, record)
            if self._snapshotter is not None and self.state.seq > self._snapshotter.last:
                # A clean stop leaves a snapshot of everything folded: the next start
                # folds nothing it has seen.
                with contextlib.suppress(LogError):
                    await self.events_log.save_snapshot(SNAPSHOTS.name, self.state.seq, SNAPSHOTS.encode(self.state))
            await self.events_log.close()


# --- entry point ---------------------------------------------------------------------------------------


#: How often what is alive is moved out of the garbage collector's sight, and how many
#: of those rounds between full collections (which also collect what was frozen).
GC_FREEZE_PERIOD = 15.0
GC_FULL_EVERY = 40


async def _gc_loop(stopped: Callable[[], int]) -> None:
    """Keep the cyclic garbage collector off the long-lived state.

    The projection state, the derivation's memo and the reflectors' stores are millions
    of containers that live for hours; every full collection walked all of them (at 50
    clusters that was most of a derivation's time). ``gc.freeze()`` moves what is alive
    into the permanent generation, so collections look at new objects only. Every
    ``GC_FULL_EVERY`` rounds, and after a cluster runtime stopped (its reflectors, tasks
    and stores hold cycles and were alive at a freeze), a full collection runs over
    everything (``unfreeze``), so nothing frozen leaks."""
    rounds = 0
    seen = stopped()
    while True:
        await asyncio.sleep(GC_FREEZE_PERIOD)
        rounds += 1
        now = stopped()
        if rounds % GC_FULL_EVERY == 0 or now != seen:
            seen = now
            gc.unfreeze()
            gc.collect()
        gc.freeze()


def main(argv: Sequence[str]) -> int:
    """``argv[0]`` is ``run`` (as ``federationd.cli`` dispatches it)."""
    try:
        settings = config.load(list(argv[1:]))
    except config.ConfigError as e:
        print(f"federationd run: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    limit_tls_read_buffers()
    try:
        return asyncio.run(Daemon(settings).run())
    except (LogError, KubeconfigRejected, config.ConfigError, OSError) as e:
        print(f"federationd run: {e}", file=sys.stderr)
        return 1


__all__ = ["ClusterRuntime", "Daemon", "main"]
