"""The workload controllers, scheduler and kubelets of one simulated cluster.

A real cluster runs Pods because a chain of controllers reacts to objects: the
deployment controller makes ReplicaSets, the ReplicaSet controller makes Pods, the
scheduler binds them to Nodes, the kubelet starts them and reports them Running and
Ready, and every controller folds what it sees back into its owner's status. Clients
rely on each link (``kubectl rollout status`` reads the Deployment's status,
``kubectl get pods -o wide`` the Pods' node and IP, Istio the Endpoints), so each is
reproduced here as a small, idempotent *sync* of one object, as in
kube-controller-manager:

* Deployments → ReplicaSets (``pod-template-hash``, revision annotations, rolling
  update within maxSurge/maxUnavailable, Recreate) → Pods;
* DaemonSets → one Pod per matching Node; StatefulSets → ordinal Pods, one at a time
  under ``OrderedReady``; Jobs → Pods that run to ``Succeeded`` and a ``Complete``
  condition; CronJobs → Jobs on their schedule (``cronjobs``); ReplicationControllers
  like ReplicaSets;
* the scheduler (nodeSelector, required node affinity on ``metadata.name``, taints and
  tolerations, the least loaded Node) and the kubelet (Running, an IP from the Node's
  ``podCIDR``, conditions, container statuses);
* the endpoints and endpointslice controllers (ready Pods matching a Service's
  selector; removed with the Service);
* namespace defaults (the ``default`` ServiceAccount and the ``kube-root-ca.crt``
  ConfigMap) and the ``default/kubernetes`` Service.

Syncs are driven by the store's change listener and run from the event loop a moment
later (one pending timer per object, coalesced), never inside a commit; the kubelet
waits ``ready_delay`` before a Pod runs. Controllers write straight to the store, as
the real ones write through the API: they are not counted as client requests.

``hold(namespace, workload)`` keeps that workload's new Pods from passing their
readiness probe, as a Pod that never gets ready would: the rollout stalls and the
workload's status says so, until ``release``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import random
from collections.abc import Callable, Iterable
from typing import Any

from federationd.sim import cronjobs, errors, volumes
from federationd.sim.defaults import template_hash
from federationd.sim.kinds import Kind
from federationd.sim.selectors import parse_label_selector
from federationd.sim.store import Change, Obj, Store, deep_copy, rfc3339

Resource = tuple[str, str]
PODS: Resource = ("", "pods")
NODES: Resource = ("", "nodes")
SERVICES: Resource = ("", "services")
DEPLOYMENTS: Resource = ("apps", "deployments")
REPLICASETS: Resource = ("apps", "replicasets")
DAEMONSETS: Resource = ("apps", "daemonsets")
STATEFULSETS: Resource = ("apps", "statefulsets")
JOBS: Resource = ("batch", "jobs")
CRONJOBS: Resource = ("batch", "cronjobs")
RCS: Resource = ("", "replicationcontrollers")
ENDPOINTSLICES: Resource = ("discovery.k8s.io", "endpointslices")
REVISIONS: Resource = ("apps", "controllerrevisions")

#: the owner kinds whose controllers this module runs
_OWNER_KINDS: dict[str, Resource] = {
    "Deployment": DEPLOYMENTS,
    "ReplicaSet": REPLICASETS,
    "DaemonSet": DAEMONSETS,
    "StatefulSet": STATEFULSETS,
    "Job": JOBS,
    "ReplicationController": RCS,
    "CronJob": CRONJOBS,
}
WORKLOADS = frozenset(_OWNER_KINDS.values())
#: namespace defaults, recreated when deleted
_DEFAULTS = frozenset({("", "serviceaccounts"), ("", "configmaps")})
#: the resources whose changes some controller here reacts to
_WATCHED = WORKLOADS | _DEFAULTS | {PODS, SERVICES, NODES, ("", "namespaces"), volumes.PVCS, volumes.PVS, volumes.CLASSES}

REVISION = "deployment.kubernetes.io/revision"
_ALNUM = "bcdfghjklmnpqrstvwxz2456789"

#: tolerations the DaemonSet controller adds to its Pods
_DS_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)


# ---------------------------------------------------------------------------- helpers


def _meta(o: Obj) -> Obj:
    m: Obj = o["metadata"]
    return m


def _controller_ref(o: Obj) -> Obj | None:
    for r in _meta(o).get("ownerReferences") or []:
        if r.get("controller"):
            return dict(r)
    return None


def _owner_ref(o: Obj, *, api_version: str, kind: str) -> Obj:
    m = _meta(o)
    return {"apiVersion": api_version, "kind": kind, "name": m["name"], "uid": m["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _terminating(o: Obj) -> bool:
    return bool(_meta(o).get("deletionTimestamp"))


def _cond(o: Obj, type_: str) -> Obj | None:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def pod_ready(p: Obj) -> bool:
    c = _cond(p, "Ready")
    return bool(c and c.get("status") == "True")


def _phase(p: Obj) -> str:
    return str((p.get("status") or {}).get("phase") or "Pending")


def _active(p: Obj) -> bool:
    return not _terminating(p) and _phase(p) not in ("Succeeded", "Failed")


def _random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_ALNUM) for _ in range(n))


def _int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            return 0
        scaled = pct * total
        return -(-scaled // 100) if round_up else scaled // 100
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _set_condition(conditions: list[Obj], type_: str, status: str, reason: str, message: str, now: str,
                   *, update_time: bool = False) -> None:
    """Set a condition keeping its transition time when its status stays."""
    for c in conditions:
        if c.get("type") == type_:
            if c.get("status") != status:
                c["lastTransitionTime"] = now
            if update_time and (c.get("status") != status or c.get("reason") != reason or c.get("message") != message):
                c["lastUpdateTime"] = now
            c.update(status=status, reason=reason, message=message)
            return
    c = {"type": type_, "status": status}
    if update_time:
        c["lastUpdateTime"] = now
    c.update(lastTransitionTime=now, reason=reason, message=message)
    conditions.append(c)


def _omit_zero(status: Obj, *keys: str) -> Obj:
    for k in keys:
        if not status.get(k):
            status.pop(k, None)
    return status


# ---------------------------------------------------------------------------- controllers


#: The Corefile kubeadm writes (``cmd/kubeadm/app/phases/addons/dns/manifests.go``,
#: DNS domain ``cluster.local``, upstream ``/etc/resolv.conf``) in 1.14 and 1.15:
#: ``forward`` replaced ``proxy`` (which CoreDNS 1.5 removed).
KUBEADM_COREFILE = """.:53 {
    errors
    health
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       upstream
       fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
"""


def kubeadm_corefile(minor: int) -> str:
    """kubeadm's Corefile for a Kubernetes minor: ``proxy`` up to 1.13, ``forward`` from
    1.14, and from 1.16 (CoreDNS 1.6) the ``ready`` plugin, ``ttl 30`` and no
    ``upstream``. (Later releases' small additions, ``lameduck`` and
    ``max_concurrent``, are not modelled.)"""
    if minor <= 13:
        return KUBEADM_COREFILE.replace("forward . /etc/resolv.conf", "proxy . /etc/resolv.conf")
    if minor <= 15:
        return KUBEADM_COREFILE
    return (KUBEADM_COREFILE.replace("    health\n", "    health\n    ready\n")
            .replace("       upstream\n", "")
            .replace("       fallthrough in-addr.arpa ip6.arpa\n", "       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n"))


def create_kubeadm_dns(store: Store, minor: int) -> None:
    """kube-system/coredns as kubeadm leaves it. CoreDNS is kubeadm's DNS by default since
    1.11 (the only one since 1.13), so there is no kube-dns ConfigMap."""
    if store.raw(("", "configmaps"), "kube-system", "coredns") is None:
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": kubeadm_corefile(minor)}})



class KeyedTimers:
    """At most one pending call per key on the running loop (none without a loop). An
    ``ApiError`` from a call is dropped: the object changed or vanished meanwhile, and
    its next change schedules again."""

    def __init__(self) -> None:
        self._handles: dict[tuple[str, ...], asyncio.TimerHandle] = {}

    def schedule(self, key: tuple[str, ...], delay: float, fn: Callable[[], None], *, keep_due: bool = False) -> None:
        """Call ``fn`` after ``delay`` s, replacing a pending call of ``key`` (kept instead
        when ``keep_due`` and ``delay`` is 0)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        old = self._handles.get(key)
        if old is not None:
            if keep_due and delay == 0:
                return
            old.cancel()

        def run() -> None:
            self._handles.pop(key, None)
            try:
                fn()
            except errors.ApiError:
                pass

        self._handles[key] = loop.call_later(max(delay, 0.0), run)

    def cancel(self, key: tuple[str, ...]) -> None:
        t = self._handles.pop(key, None)
        if t is not None:
            t.cancel()

    def __len__(self) -> int:
        return len(self._handles)

    def close(self) -> None:
        for t in self._handles.values():
            t.cancel()
        self._handles.clear()


class Controllers:
    """kube-controller-manager, kube-scheduler and the kubelets of one cluster."""

    def __init__(self, store: Store, *, index: int, ready_delay: float, ca_pem: bytes = b"") -> None:
        self.store = store
        self.index = index
        self.ready_delay = ready_delay
        self.ca_pem = ca_pem
        #: workload controllers, scheduler and kubelets run
        self.enabled = True
        #: the endpoints and endpointslice controllers run
        self.endpoints_enabled = True
        #: (namespace, workload or Pod name) whose new Pods never become Ready
        self.held: set[tuple[str, str]] = set()
        self._timers = KeyedTimers()
        self._next_ip: dict[str, int] = {}
        self._api_endpoint = ("127.0.0.1", 6443)
        #: consecutive refused Pod creates per owner (kind, namespace, name), for backoff
        self._create_failures: dict[tuple[str, str, str], int] = {}
        #: the default StorageClass, its provisioner and the PersistentVolume controller
        self.volumes = volumes.Volumes(self)
        self._bootstrap()

    # ------------------------------------------------------------------ timers

    def schedule(self, key: tuple[str, ...], delay: float, fn: Callable[[], None]) -> None:
        # a sync already due sees every change made before it runs: keep it
        self._timers.schedule(key, delay, fn, keep_due=True)

    def pending(self) -> int:
        return len(self._timers)

    def close(self) -> None:
        self._timers.close()

    def _kind(self, resource: Resource) -> Kind:
        k = self.store.registry.any_version(*resource)
        assert k is not None, resource
        return k

    def _sync_later(self, resource: Resource, namespace: str, name: str) -> None:
        self.schedule((resource[0], resource[1], namespace, name), 0.0, lambda: self.sync(resource, namespace, name))

    def sync(self, resource: Resource, namespace: str, name: str) -> None:
        """Reconcile one workload now."""
        if not self.enabled:
            return
        fn = {
            DEPLOYMENTS: self._sync_deployment,
            REPLICASETS: self._sync_replicaset,
            RCS: self._sync_replicaset,
            DAEMONSETS: self._sync_daemonset,
            STATEFULSETS: self._sync_statefulset,
            JOBS: self._sync_job,
            CRONJOBS: self._sync_cronjob,
        }.get(resource)
        if fn is not None:
            o = self.store.raw(resource, namespace, name)
            if o is not None and not _terminating(o):
                fn(o)

    def sync_cronjobs(self) -> None:
        """Run the CronJob controller over every CronJob now, at the store's clock (what
        a test does after moving that clock)."""
        for o in self.store.list_raw(CRONJOBS, None)[0]:
            self.sync(CRONJOBS, _meta(o)["namespace"], _meta(o)["name"])

    def _sync_cronjob(self, cj: Obj) -> None:
        cronjobs.sync(self, cj, owner_ref=lambda o: _owner_ref(o, api_version="batch/v1", kind="CronJob"))

    def resync(self) -> None:
        """Look at every workload and Pod again (after the controllers were switched on)."""
        for res in WORKLOADS:
            for o in self.store.list_raw(res, None)[0]:
                self._sync_later(res, _meta(o).get("namespace", ""), _meta(o)["name"])
        for p in self.store.list_raw(PODS, None)[0]:
            self._on_pod(p)

    # ------------------------------------------------------------------ change routing

    def on_change(self, ch: Change) -> None:
        res = ch.resource
        if res not in _WATCHED or (res in _DEFAULTS and ch.type != "DELETED"):
            return  # most writes (ConfigMaps, Secrets, CRs) concern no controller here
        if res in (SERVICES, PODS) and self.endpoints_enabled:
            ns = ch.namespace
            self.schedule(("endpoints", ns), 0.0, lambda: self.sync_endpoints(ns))
        if res == SERVICES and ch.type == "DELETED" and self.endpoints_enabled:
            ns, name = ch.namespace, ch.name
            self.schedule(("endpoints-gone", ns, name), 0.0, lambda: self._service_gone(ns, name))
        if res == ("", "namespaces"):
            self._on_namespace(ch)
        elif res in (("", "serviceaccounts"), ("", "configmaps")) and ch.type == "DELETED":
            self._namespace_defaults(ch.namespace)
        if not self.enabled:
            return
        if res in (volumes.PVCS, volumes.PVS, volumes.CLASSES):
            self._on_volume(ch)
        elif res in WORKLOADS:
            if ch.type != "DELETED":
                self._sync_later(res, ch.namespace, ch.name)
            self._sync_owner(ch.obj, ch.namespace)
        elif res == PODS:
            self._sync_owner(ch.obj, ch.namespace)
            if ch.type != "DELETED":
                self._on_pod(ch.obj)
            else:
                self._cancel_pod(ch.namespace, ch.name)
        elif res == NODES:
            for ds in self.store.list_raw(DAEMONSETS, None)[0]:
                self._sync_later(DAEMONSETS, _meta(ds)["namespace"], _meta(ds)["name"])

    def _on_volume(self, ch: Change) -> None:
        vols = self.volumes
        if ch.resource == volumes.PVCS:
            ns, name = ch.namespace, ch.name
            if ch.type == "DELETED":
                self.schedule(("claim-gone", ns, name), 0.0, functools.partial(vols.claim_gone, ch.obj))
                return
            self.schedule(("claim", ns, name), 0.0, lambda: vols.sync_claim(ns, name))
            # Pods waiting for this claim: the scheduler and the kubelet look again
            for p in self.store.list_raw(PODS, ns)[0]:
                if name in volumes.claim_names(p) and _phase(p) == "Pending" and not _terminating(p):
                    if (p.get("spec") or {}).get("nodeName"):
                        self._on_pod(p)
                    else:
                        pn = _meta(p)["name"]
                        self.schedule(("bind", ns, pn), 0.0, functools.partial(self._bind, ns, pn))
            return
        for c in self.store.list_raw(volumes.PVCS, None)[0]:
            if not volumes.bound(c):
                cns, cname = _meta(c)["namespace"], _meta(c)["name"]
                self.schedule(("claim", cns, cname), 0.0, functools.partial(vols.sync_claim, cns, cname))

    def _sync_owner(self, o: Obj, namespace: str) -> None:
        ref = _controller_ref(o)
        if ref is None:
            return
        res = _OWNER_KINDS.get(str(ref.get("kind")))
        if res is not None:
            self._sync_later(res, namespace, str(ref.get("name")))

    # ------------------------------------------------------------------ pods (shared)

    def _controlled(self, owner: Obj, resource: Resource = PODS) -> list[Obj]:
        uid = _meta(owner)["uid"]
        return [o for r, o in self.store.dependents(uid)
                if r == resource and (_controller_ref(o) or {}).get("uid") == uid]

    def _new_pod(self, owner: Obj, *, kind: str, template: Obj, name: str = "", generate: str = "",
                 labels: dict[str, str] | None = None, spec: Obj | None = None) -> Obj:
        tmeta = template.get("metadata") or {}
        meta: Obj = {"namespace": _meta(owner)["namespace"],
                     "labels": {**(tmeta.get("labels") or {}), **(labels or {})},
                     "ownerReferences": [_owner_ref(owner, api_version=owner["apiVersion"], kind=kind)]}
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        if name:
            meta["name"] = name
        else:
            meta["name"] = f"{generate}{_random_suffix()}"
            meta["generateName"] = generate
        pod_spec = deep_copy(template.get("spec") or {"containers": []})
        pod_spec.update(spec or {})
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}
        owner_key = (str(owner.get("kind", kind)), _meta(owner)["namespace"], _meta(owner)["name"])
        try:
            created = self.store.create(pod, kind=self._kind(PODS), copy_result=False)
        except errors.ApiError as e:
            # as the controllers do when the API refuses a Pod (an admission webhook, a
            # quota): a FailedCreate Warning on the owner, and the owner synced again later
            # with per-owner exponential backoff, since nothing else may change to trigger it
            component = {"ReplicaSet": "replicaset-controller", "ReplicationController": "replication-controller",
                         "DaemonSet": "daemonset-controller", "StatefulSet": "statefulset-controller",
                         "Job": "job-controller"}.get(kind, "controller-manager")
            self._event(owner, "FailedCreate", f"Error creating: {e.message}", component=component, type_="Warning")
            failures = self._create_failures.get(owner_key, 0)
            self._create_failures[owner_key] = failures + 1
            res = _OWNER_KINDS.get(owner_key[0])
            if res is not None:
                ns, name_ = owner_key[1], owner_key[2]
                self.schedule(("retry", *owner_key), min(0.1 * 2 ** failures, 5.0),
                              lambda: self.sync(res, ns, name_))
            raise
        self._create_failures.pop(owner_key, None)
        return created

    def _delete(self, resource: Resource, o: Obj) -> None:
        m = _meta(o)
        try:
            self.store.delete(self._kind(resource), m.get("namespace", ""), m["name"])
        except errors.NotFound:
            pass

    def _write_status(self, resource: Resource, o: Obj, status: Obj) -> None:
        if o.get("status") == status:
            return
        cur = self.store.raw(resource, _meta(o).get("namespace", ""), _meta(o)["name"])
        if cur is None:
            return
        self.store.update({**cur, "status": status}, kind=self._kind(resource), subresource="status",
                          check_version=False, copy_result=False)

    def _write(self, resource: Resource, o: Obj) -> Obj:
        return self.store.update(o, kind=self._kind(resource), check_version=False, copy_result=False)

    def _event(self, o: Obj, reason: str, message: str, *, component: str, host: str = "", type_: str = "Normal") -> None:
        """An Event about ``o``, as the controllers and kubelets record them (what
        ``kubectl describe`` lists); never a reason for a sync to fail."""
        m = _meta(o)
        now = rfc3339(self.store.clock())
        source: Obj = {"component": component, **({"host": host} if host else {})}
        event: Obj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{m['name']}.{_random_suffix(16)}", "namespace": m.get("namespace") or "default"},
            "involvedObject": {"apiVersion": o.get("apiVersion", ""), "kind": o.get("kind", ""), "name": m["name"],
                               "namespace": m.get("namespace", ""), "uid": m.get("uid", ""),
                               "resourceVersion": m.get("resourceVersion", "")},
            "reason": reason, "message": message, "source": source, "type": type_, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "reportingComponent": component, "reportingInstance": host,
        }
        try:
            self.store.create(event, copy_result=False)
        except errors.ApiError:
            pass  # a namespace being deleted takes no new Events

    # ------------------------------------------------------------------ deployments

    def _sync_deployment(self, d: Obj) -> None:
        meta, spec = _meta(d), d.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        template = spec.get("template") or {}
        h = template_hash(template)
        strategy = spec.get("strategy") or {}
        recreate = strategy.get("type") == "Recreate"
        ru = strategy.get("rollingUpdate") or {}
        surge = 0 if recreate else _int_or_percent(ru.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = 0 if recreate else _int_or_percent(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
        if not recreate and surge == 0 and unavailable == 0:
            unavailable = 1
        rss = [r for r in self._controlled(d, REPLICASETS) if not _terminating(r)]
        new = next((r for r in rss if (_meta(r).get("labels") or {}).get("pod-template-hash") == h), None)
        olds = [r for r in rss if r is not new]
        revisions = [int((_meta(r).get("annotations") or {}).get(REVISION, "0") or 0) for r in rss]
        top = max(revisions, default=0)
        paused = bool(spec.get("paused"))

        def rs_replicas(r: Obj) -> int:
            return int((r.get("spec") or {}).get("replicas") or 0)

        def available(r: Obj) -> int:
            return int((r.get("status") or {}).get("availableReplicas") or 0)

        if new is None and not paused:
            active_old = sum(rs_replicas(r) for r in olds)
            if recreate:
                first = 0 if active_old or any(self._controlled(r) for r in olds) else replicas
            else:
                first = replicas if not active_old else max(0, min(replicas, replicas + surge - active_old))
            labels = {**((template.get("metadata") or {}).get("labels") or {}), "pod-template-hash": h}
            tpl = deep_copy(template)
            tpl.setdefault("metadata", {})["labels"] = labels
            selector = deep_copy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = h
            rs_spec: Obj = {"replicas": first, "selector": selector, "template": tpl}
            if spec.get("minReadySeconds"):
                rs_spec["minReadySeconds"] = spec["minReadySeconds"]
            new = self.store.create({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": f"{name}-{h}", "namespace": ns, "labels": labels,
                             "annotations": {"deployment.kubernetes.io/desired-replicas": str(replicas),
                                             "deployment.kubernetes.io/max-replicas": str(replicas + surge),
                                             REVISION: str(top + 1)},
                             "ownerReferences": [_owner_ref(d, api_version="apps/v1", kind="Deployment")]},
                "spec": rs_spec,
            }, kind=self._kind(REPLICASETS), copy_result=False)
            if first:
                self._event(d, "ScalingReplicaSet", f"Scaled up replica set {_meta(new)['name']} from 0 to {first}",
                            component="deployment-controller")
            top += 1
        elif new is not None and int((_meta(new).get("annotations") or {}).get(REVISION, "0") or 0) < top:
            # a rollback to an older template: its ReplicaSet becomes the newest revision
            nr = deep_copy(new)
            nr["metadata"].setdefault("annotations", {})[REVISION] = str(top + 1)
            new = self._write(REPLICASETS, nr)
            top += 1
        if new is not None and not paused:
            self._scale_deployment(d, new, olds, replicas=replicas, surge=surge, unavailable=unavailable,
                                   recreate=recreate, rs_replicas=rs_replicas, available=available)
        # the Deployment carries its newest revision
        if new is not None and (meta.get("annotations") or {}).get(REVISION) != str(top):
            nd = deep_copy(d)
            nd["metadata"].setdefault("annotations", {})[REVISION] = str(top)
            d = self._write(DEPLOYMENTS, nd)
        self._deployment_status(d, new, olds, replicas=replicas, unavailable=unavailable)
        self._prune_history(d, olds, rs_replicas)

    def _scale_deployment(self, d: Obj, new: Obj, olds: list[Obj], *, replicas: int, surge: int, unavailable: int,
                          recreate: bool, rs_replicas: Callable[[Obj], int], available: Callable[[Obj], int]) -> None:
        def scale(r: Obj, n: int) -> None:
            if rs_replicas(r) == n and (_meta(r).get("annotations") or {}).get(
                    "deployment.kubernetes.io/desired-replicas") == str(replicas):
                return
            if rs_replicas(r) != n:
                way = "up" if n > rs_replicas(r) else "down"
                self._event(d, "ScalingReplicaSet", f"Scaled {way} replica set {_meta(r)['name']} from {rs_replicas(r)} to {n}",
                            component="deployment-controller")
            nr = deep_copy(r)
            nr["spec"]["replicas"] = n
            ann = nr["metadata"].setdefault("annotations", {})
            ann["deployment.kubernetes.io/desired-replicas"] = str(replicas)
            ann["deployment.kubernetes.io/max-replicas"] = str(replicas + surge)
            self._write(REPLICASETS, nr)

        active_olds = [r for r in olds if rs_replicas(r) > 0]
        if recreate:
            if active_olds:
                for r in active_olds:
                    scale(r, 0)
            elif not any(self._controlled(r) for r in olds):
                scale(new, replicas)
            return
        if not active_olds:
            scale(new, replicas)
            return
        new_n = rs_replicas(new)
        total = new_n + sum(rs_replicas(r) for r in active_olds)
        if new_n < replicas and total < replicas + surge:
            new_n = min(replicas, new_n + replicas + surge - total)
            scale(new, new_n)
            total = new_n + sum(rs_replicas(r) for r in active_olds)
        if new_n >= replicas and available(new) >= replicas:
            for r in active_olds:
                scale(r, 0)
            return
        new_unavailable = max(0, new_n - available(new))
        budget = total - (replicas - unavailable) - new_unavailable
        # old Pods that are not available can go first (they count for nothing)
        for r in sorted(active_olds, key=lambda r: int((_meta(r).get("annotations") or {}).get(REVISION, "0") or 0)):
            if budget <= 0:
                break
            n = rs_replicas(r)
            cut = min(n, budget)
            scale(r, n - cut)
            budget -= cut

    def _deployment_status(self, d: Obj, new: Obj | None, olds: list[Obj], *, replicas: int, unavailable: int) -> None:
        now = rfc3339(self.store.clock())
        all_rs = ([new] if new is not None else []) + olds

        def st(r: Obj, key: str) -> int:
            return int((r.get("status") or {}).get(key) or 0)

        total = sum(st(r, "replicas") for r in all_rs)
        ready = sum(st(r, "readyReplicas") for r in all_rs)
        avail = sum(st(r, "availableReplicas") for r in all_rs)
        updated = st(new, "replicas") if new is not None else 0
        spec_total = sum(int((r.get("spec") or {}).get("replicas") or 0) for r in all_rs)
        status: Obj = {"observedGeneration": _meta(d).get("generation", 1), "replicas": total,
                       "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": avail,
                       "unavailableReplicas": max(0, spec_total - avail)}
        _omit_zero(status, "replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas")
        conditions = deep_copy({"c": (d.get("status") or {}).get("conditions") or []})["c"]
        if avail >= replicas - unavailable:
            _set_condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                           "Deployment has minimum availability.", now, update_time=True)
        else:
            _set_condition(conditions, "Available", "False", "MinimumReplicasUnavailable",
                           "Deployment does not have minimum availability.", now, update_time=True)
        if new is not None:
            rs_name = _meta(new)["name"]
            complete = updated == replicas and total == replicas and avail >= replicas
            if complete:
                _set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                               f'ReplicaSet "{rs_name}" has successfully progressed.', now, update_time=True)
            else:
                prog = _cond({"status": {"conditions": conditions}}, "Progressing") or {}
                if prog.get("reason") != "NewReplicaSetCreated" or rs_name not in str(prog.get("message")):
                    _set_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                                   f'ReplicaSet "{rs_name}" is progressing.', now, update_time=True)
        # the real controller lists Progressing before Available once both exist
        order = {"Progressing": 1, "Available": 0}
        conditions.sort(key=lambda c: order.get(str(c.get("type")), 2))
        status["conditions"] = conditions
        old = d.get("status") or {}
        if {**old, "conditions": None} == {**status, "conditions": None} and [
            {k: v for k, v in c.items() if k not in ("lastUpdateTime", "lastTransitionTime")} for c in old.get("conditions") or []
        ] == [{k: v for k, v in c.items() if k not in ("lastUpdateTime", "lastTransitionTime")} for c in conditions]:
            return
        self._write_status(DEPLOYMENTS, d, status)

    def _prune_history(self, d: Obj, olds: list[Obj], rs_replicas: Callable[[Obj], int]) -> None:
        limit = int((d.get("spec") or {}).get("revisionHistoryLimit", 10) or 0)
        idle = [r for r in olds if rs_replicas(r) == 0 and not self._controlled(r)]
        idle.sort(key=lambda r: int((_meta(r).get("annotations") or {}).get(REVISION, "0") or 0))
        for r in idle[: max(0, len(idle) - limit)]:
            self._delete(REPLICASETS, r)

    # ------------------------------------------------------------------ replicasets (and RCs)

    def _sync_replicaset(self, rs: Obj) -> None:
        resource = RCS if rs.get("kind") == "ReplicationController" else REPLICASETS
        meta, spec = _meta(rs), rs.get("spec") or {}
        replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        pods = [p for p in self._controlled(rs) if _active(p)]
        if len(pods) < replicas:
            component = "replicaset-controller" if resource == REPLICASETS else "replication-controller"
            for _ in range(replicas - len(pods)):
                pod = self._new_pod(rs, kind=str(rs["kind"]), template=spec.get("template") or {},
                                    generate=f"{meta['name']}-")
                pods.append(pod)
                self._event(rs, "SuccessfulCreate", f"Created pod: {_meta(pod)['name']}", component=component)
        elif len(pods) > replicas:
            # the least useful go first: unscheduled, pending, unready, newest
            def rank(p: Obj) -> tuple[int, int, int]:
                return (0 if not (p.get("spec") or {}).get("nodeName") else 1,
                        0 if _phase(p) == "Pending" else 1,
                        0 if not pod_ready(p) else 1)

            ranked = sorted(pods, key=lambda p: str(_meta(p).get("creationTimestamp", "")), reverse=True)
            ranked.sort(key=rank)
            for p in ranked[: len(pods) - replicas]:
                self._delete(PODS, p)
                self._event(rs, "SuccessfulDelete", f"Deleted pod: {_meta(p)['name']}",
                            component="replicaset-controller" if resource == REPLICASETS else "replication-controller")
            gone = {id(p) for p in ranked[: len(pods) - replicas]}
            pods = [p for p in pods if id(p) not in gone]
        ready = sum(1 for p in pods if pod_ready(p))
        status: Obj = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                       "availableReplicas": ready, "observedGeneration": meta.get("generation", 1)}
        _omit_zero(status, "fullyLabeledReplicas", "readyReplicas", "availableReplicas")
        self._write_status(resource, rs, status)

    # ------------------------------------------------------------------ daemonsets

    def _sync_daemonset(self, ds: Obj) -> None:
        meta, spec = _meta(ds), ds.get("spec") or {}
        template = spec.get("template") or {}
        h = template_hash(template)
        self._history(ds, kind="DaemonSet", revision=f"{meta['name']}-{h}", hash_=h, live_label=h)
        tspec = template.get("spec") or {}
        nodes = [n for n in self.store.list_raw(NODES, None)[0]
                 if _node_fits(n, tspec, extra_tolerations=_DS_TOLERATIONS)]
        eligible = {_meta(n)["name"] for n in nodes}
        pods = [p for p in self._controlled(ds) if _active(p)]
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            by_node.setdefault(_pod_target_node(p), []).append(p)
        ru = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        max_unavailable = max(1, _int_or_percent(ru.get("maxUnavailable", 1), len(eligible), round_up=False))
        unavailable = sum(1 for n in eligible if not any(pod_ready(p) for p in by_node.get(n, [])))
        for node, ps in list(by_node.items()):
            if node not in eligible:
                for p in ps:
                    self._delete(PODS, p)
                del by_node[node]
        for node in sorted(eligible):
            ps = by_node.get(node, [])
            current = [p for p in ps if (_meta(p).get("labels") or {}).get("controller-revision-hash") == h]
            stale = [p for p in ps if p not in current]
            if stale and rolling and not current:
                if any(pod_ready(p) for p in stale):
                    if unavailable >= max_unavailable:
                        continue
                    unavailable += 1
                for p in stale:
                    self._delete(PODS, p)
                ps = []
            if not ps:
                tolerations = list(tspec.get("tolerations") or [])
                have = {(t.get("key"), t.get("effect")) for t in tolerations}
                tolerations += [dict(t) for t in _DS_TOLERATIONS if (t["key"], t["effect"]) not in have]
                affinity = deep_copy(tspec.get("affinity") or {})
                affinity.setdefault("nodeAffinity", {})["requiredDuringSchedulingIgnoredDuringExecution"] = {
                    "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}
                by_node[node] = [self._new_pod(
                    ds, kind="DaemonSet", template=template, generate=f"{meta['name']}-",
                    labels={"controller-revision-hash": h, "pod-template-generation": str(meta.get("generation", 1))},
                    spec={"tolerations": tolerations, "affinity": affinity})]
        pods = [p for n in eligible for p in by_node.get(n, [])]
        ready = sum(1 for p in pods if pod_ready(p))
        updated = sum(1 for p in pods if (_meta(p).get("labels") or {}).get("controller-revision-hash") == h)
        status: Obj = {"currentNumberScheduled": len({_pod_target_node(p) for p in pods}),
                       "desiredNumberScheduled": len(eligible), "numberAvailable": ready,
                       "numberMisscheduled": 0, "numberReady": ready,
                       "numberUnavailable": len(eligible) - ready,
                       "observedGeneration": meta.get("generation", 1), "updatedNumberScheduled": updated}
        _omit_zero(status, "numberAvailable", "numberUnavailable", "updatedNumberScheduled")
        self._write_status(DAEMONSETS, ds, status)

    # ------------------------------------------------------------------ controller history

    def _history(self, owner: Obj, *, kind: str, revision: str, hash_: str, live_label: str) -> None:
        """The ControllerRevisions of a DaemonSet or StatefulSet (``kubectl rollout
        history|undo`` read them): one per template, named ``<owner>-<hash>``, whose
        ``data`` is the patch that puts that template back and whose ``revision`` is
        the highest when it is the current one; the oldest beyond
        ``revisionHistoryLimit`` that no Pod runs go."""
        meta, spec = _meta(owner), owner.get("spec") or {}
        ns = meta["namespace"]
        template = spec.get("template") or {}
        revs = self._controlled(owner, REVISIONS)
        top = max((int(r.get("revision") or 0) for r in revs), default=0)
        current = next((r for r in revs if _meta(r)["name"] == revision), None)
        if current is None:
            labels = {**((template.get("metadata") or {}).get("labels") or {}), "controller-revision-hash": hash_}
            cr_meta: Obj = {"name": revision, "namespace": ns, "labels": labels,
                            "ownerReferences": [_owner_ref(owner, api_version=owner["apiVersion"], kind=kind)]}
            if meta.get("annotations"):
                cr_meta["annotations"] = dict(meta["annotations"])
            current = self.store.create({
                "apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": cr_meta,
                "data": {"spec": {"template": {**deep_copy(template), "$patch": "replace"}}},
                "revision": top + 1}, kind=self._kind(REVISIONS), copy_result=False)
            revs.append(current)
        elif int(current.get("revision") or 0) < top:
            # a template seen before is current again: its revision becomes the newest
            current = self._write(REVISIONS, {**deep_copy(current), "revision": top + 1})
        limit = spec.get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        live = {(_meta(p).get("labels") or {}).get("controller-revision-hash") for p in self._controlled(owner)}
        live.add(live_label)
        old = sorted((r for r in revs if _meta(r)["name"] != revision
                      and (_meta(r).get("labels") or {}).get("controller-revision-hash") not in live
                      and _meta(r)["name"] not in live),
                     key=lambda r: int(r.get("revision") or 0))
        for r in old[:max(0, len(old) - limit)]:
            self._delete(REVISIONS, r)

    # ------------------------------------------------------------------ statefulsets

    def _sync_statefulset(self, sts: Obj) -> None:
        meta, spec = _meta(sts), sts.get("spec") or {}
        name = meta["name"]
        replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        template = spec.get("template") or {}
        revision = f"{name}-{template_hash(template)}"
        self._history(sts, kind="StatefulSet", revision=revision, hash_=template_hash(template), live_label=revision)
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        pods: dict[int, Obj] = {}
        for p in self._controlled(sts):
            if _terminating(p):
                continue
            try:
                pods[int(_meta(p)["name"].rsplit("-", 1)[1])] = p
            except (IndexError, ValueError):
                continue

        def rev(p: Obj) -> str:
            return str((_meta(p).get("labels") or {}).get("controller-revision-hash", ""))

        def healthy(i: int) -> bool:
            p = pods.get(i)
            return p is not None and _phase(p) == "Running" and pod_ready(p)

        for i in range(replicas):
            if i in pods:
                if ordered and not healthy(i):
                    break
                continue
            if ordered and not all(healthy(j) for j in range(i)):
                break
            pname = f"{name}-{i}"
            extra: Obj = {"hostname": pname, **({"subdomain": spec["serviceName"]} if spec.get("serviceName") else {})}
            claims = self._claims(sts, i)
            if claims:
                extra["volumes"] = [v for v in (template.get("spec") or {}).get("volumes") or []
                                    if v.get("name") not in claims] + [
                    {"name": t, "persistentVolumeClaim": {"claimName": c}} for t, c in claims.items()]
            pods[i] = self._new_pod(
                sts, kind="StatefulSet", template=template, name=pname,
                labels={"controller-revision-hash": revision, "statefulset.kubernetes.io/pod-name": pname,
                        "apps.kubernetes.io/pod-index": str(i)},
                spec=extra)
            if ordered:
                break
        # scale down from the highest ordinal, one at a time when ordered
        for i in sorted((i for i in pods if i >= replicas), reverse=True):
            if ordered and not all(healthy(j) for j in pods if j != i):
                break
            self._delete(PODS, pods.pop(i))
            if ordered:
                break
        # rolling update: the highest stale ordinal goes once every Pod is healthy
        strategy = spec.get("updateStrategy") or {}
        partition = int(((strategy.get("rollingUpdate") or {}).get("partition")) or 0)
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" and all(healthy(i) for i in pods):
            stale = sorted((i for i, p in pods.items() if rev(p) != revision and i >= partition), reverse=True)
            if stale:
                self._delete(PODS, pods.pop(stale[0]))
        status_old = sts.get("status") or {}
        updated = sum(1 for p in pods.values() if rev(p) == revision)
        ready = sum(1 for p in pods.values() if pod_ready(p))
        current_revision = str(status_old.get("currentRevision") or revision)
        if updated == replicas == len(pods) and ready == replicas:
            current_revision = revision
        current = sum(1 for p in pods.values() if rev(p) == current_revision)
        status: Obj = {"observedGeneration": meta.get("generation", 1), "replicas": len(pods),
                       "readyReplicas": ready, "currentReplicas": current, "updatedReplicas": updated,
                       "currentRevision": current_revision, "updateRevision": revision,
                       "collisionCount": 0, "availableReplicas": ready}
        _omit_zero(status, "readyReplicas", "currentReplicas", "updatedReplicas")
        self._write_status(STATEFULSETS, sts, status)

    def _claims(self, sts: Obj, ordinal: int) -> dict[str, str]:
        """The claims of a StatefulSet's Pod, from its ``volumeClaimTemplates``
        (``<template>-<set>-<ordinal>``), created when missing and kept when the Pod or
        the set goes (the default ``Retain`` retention policy); template name → claim."""
        meta, spec = _meta(sts), sts.get("spec") or {}
        out: dict[str, str] = {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        for tpl in spec.get("volumeClaimTemplates") or []:
            tname = str((tpl.get("metadata") or {}).get("name") or "")
            if not tname:
                continue
            claim = f"{tname}-{meta['name']}-{ordinal}"
            out[tname] = claim
            if self.store.raw(volumes.PVCS, meta["namespace"], claim) is None:
                tmeta = tpl.get("metadata") or {}
                obj: Obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {
                    "name": claim, "namespace": meta["namespace"],
                    "labels": {**(tmeta.get("labels") or {}), **selector}},
                    "spec": deep_copy(tpl.get("spec") or {})}
                if tmeta.get("annotations"):
                    obj["metadata"]["annotations"] = dict(tmeta["annotations"])
                volumes.admit_claim(self.store, obj)
                self.store.create(obj, kind=self._kind(volumes.PVCS), copy_result=False)
                self._event(sts, "SuccessfulCreate", f"create Claim {claim} Pod {meta['name']}-{ordinal} "
                            f"in StatefulSet {meta['name']} success", component="statefulset-controller")
        return out

    # ------------------------------------------------------------------ jobs

    def _sync_job(self, job: Obj) -> None:
        meta, spec = _meta(job), job.get("spec") or {}
        status_old = job.get("status") or {}
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in status_old.get("conditions") or []):
            return
        now = rfc3339(self.store.clock())
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        pods = self._controlled(job)
        succeeded = sum(1 for p in pods if _phase(p) == "Succeeded")
        failed = sum(1 for p in pods if _phase(p) == "Failed")
        active = [p for p in pods if _active(p)]
        done = succeeded >= completions if completions is not None else succeeded > 0 and not active
        if not done and not spec.get("suspend"):
            want = parallelism if completions is None else min(parallelism, int(completions) - succeeded)
            for _ in range(max(0, want - len(active))):
                pod = self._new_pod(job, kind="Job", template=spec.get("template") or {}, generate=f"{meta['name']}-")
                active.append(pod)
                self._event(job, "SuccessfulCreate", f"Created pod: {_meta(pod)['name']}", component="job-controller")
        status: Obj = {k: v for k, v in status_old.items() if k in ("startTime", "conditions")}
        status.setdefault("startTime", now)
        status["active"] = 0 if done else len(active)
        status["ready"] = 0 if done else sum(1 for p in active if pod_ready(p))
        status["succeeded"] = succeeded
        status["failed"] = failed
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        _omit_zero(status, "active", "succeeded", "failed")
        if done:
            reached = "Reached expected number of succeeded pods"
            conditions = list(status.get("conditions") or [])
            for type_ in ("SuccessCriteriaMet", "Complete"):
                conditions.append({"type": type_, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                                   "reason": "CompletionsReached", "message": reached})
            status["conditions"] = conditions
            status["completionTime"] = now
            self._event(job, "Completed", "Job completed", component="job-controller")
        self._write_status(JOBS, job, status)

    # ------------------------------------------------------------------ scheduler and kubelet

    def _on_pod(self, p: Obj) -> None:
        if _terminating(p) or not self.enabled:
            return
        m = _meta(p)
        ns, name = m["namespace"], m["name"]
        spec, phase = p.get("spec") or {}, _phase(p)
        if not spec.get("nodeName"):
            if not (_cond(p, "PodScheduled") or {}).get("status") == "False":
                self.schedule(("bind", ns, name), 0.0, lambda: self._bind(ns, name))
        elif phase == "Pending":
            self.schedule(("start", ns, name), self.ready_delay, lambda: self._run(ns, name))
        elif phase == "Running" and self._completes(p):
            self.schedule(("finish", ns, name), self.ready_delay, lambda: self._finish(ns, name))
        elif phase == "Running" and not pod_ready(p) and not self._is_held(p):
            self.schedule(("ready", ns, name), self.ready_delay, lambda: self._mark_ready(ns, name))

    def _cancel_pod(self, ns: str, name: str) -> None:
        for step in ("bind", "start", "finish", "ready"):
            self._timers.cancel((step, ns, name))

    @staticmethod
    def _completes(p: Obj) -> bool:
        ref = _controller_ref(p) or {}
        return ref.get("kind") == "Job"

    def _bind(self, ns: str, name: str) -> None:
        p = self.store.raw(PODS, ns, name)
        if p is None or _terminating(p) or (p.get("spec") or {}).get("nodeName") or not self.enabled:
            return
        nodes = self.store.list_raw(NODES, None)[0]
        unbound = self.volumes.unschedulable(p)
        fits = [] if unbound else [n for n in nodes if _node_fits(n, p.get("spec") or {})
                                   and self.volumes.node_allowed(p, n)]
        now = rfc3339(self.store.clock())
        if not fits:
            n = len(nodes)
            reason = unbound or f"{n} node(s) didn't match Pod's node affinity/selector"
            msg = (f"0/{n} nodes are available: {reason}. "
                   f"preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling.")
            status = deep_copy(p.get("status") or {})
            status["phase"] = "Pending"
            status["conditions"] = [{"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                                     "lastTransitionTime": now, "reason": "Unschedulable", "message": msg}]
            self._write_status(PODS, p, status)
            return
        load: dict[str, int] = {}
        for q in self.store.list_raw(PODS, None)[0]:
            node = (q.get("spec") or {}).get("nodeName")
            if node and _active(q):
                load[node] = load.get(node, 0) + 1
        node = min(fits, key=lambda n: (load.get(_meta(n)["name"], 0), _meta(n)["name"]))
        self.volumes.select_node(p, _meta(node)["name"])
        bound = deep_copy(p)
        bound["spec"]["nodeName"] = _meta(node)["name"]
        self._write(PODS, bound)
        self._event(p, "Scheduled", f"Successfully assigned {ns}/{name} to {_meta(node)['name']}",
                    component="default-scheduler")
        cur = self.store.raw(PODS, ns, name)
        if cur is not None:
            status = deep_copy(cur.get("status") or {})
            status["conditions"] = [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                     "lastTransitionTime": now}]
            self._write_status(PODS, cur, status)

    def _node_ip(self, node: str) -> str:
        n = self.store.raw(NODES, "", node) or {}
        for a in (n.get("status") or {}).get("addresses") or []:
            if a.get("type") == "InternalIP":
                return str(a["address"])
        return "10.0.0.1"

    def _pod_ip(self, node: str) -> str:
        n = self.store.raw(NODES, "", node) or {}
        cidr = (n.get("spec") or {}).get("podCIDR") or f"10.{self.index + 100}.0.0/16"
        net = ipaddress.ip_network(cidr, strict=False)
        used = {str((p.get("status") or {}).get("podIP")) for p in self.store.list_raw(PODS, None)[0]
                if (p.get("spec") or {}).get("nodeName") == node}
        size = net.num_addresses - 3
        nxt = self._next_ip.get(node, 0)
        for _ in range(max(size, 1)):
            ip = str(net.network_address + 2 + nxt % max(size, 1))
            nxt += 1
            if ip not in used:
                self._next_ip[node] = nxt
                return ip
        self._next_ip[node] = nxt
        return str(net.network_address + 2)

    def _is_held(self, p: Obj) -> bool:
        if not self.held:
            return False
        ns = _meta(p)["namespace"]
        return (ns, self.workload_of(p)) in self.held

    def workload_of(self, p: Obj) -> str:
        """The name of the workload a Pod belongs to (through its ReplicaSet), else its own."""
        ref = _controller_ref(p)
        if ref is None:
            return str(_meta(p)["name"])
        if ref.get("kind") == "ReplicaSet":
            rs = self.store.raw(REPLICASETS, _meta(p)["namespace"], str(ref.get("name")))
            owner = _controller_ref(rs) if rs is not None else None
            if owner is not None:
                return str(owner.get("name"))
        return str(ref.get("name"))

    def _run(self, ns: str, name: str) -> None:
        self._start(ns, name)

    def _start(self, ns: str, name: str, *, new_ip: bool = False) -> Obj | None:
        p = self.store.raw(PODS, ns, name)
        if p is None or _terminating(p) or not self.enabled:
            return None
        spec = p.get("spec") or {}
        node = str(spec.get("nodeName") or "")
        if not node:
            return None
        if not all(volumes.bound(self.store.raw(volumes.PVCS, ns, c)) for c in volumes.claim_names(p)):
            return None  # the kubelet mounts claims once they are bound; their change wakes it
        now = rfc3339(self.store.clock())
        old = p.get("status") or {}
        host_ip = self._node_ip(node)
        if spec.get("hostNetwork"):
            ip = host_ip
        elif old.get("podIP") and not new_ip:
            ip = str(old["podIP"])
        else:
            ip = self._pod_ip(node)
        ready = not self._is_held(p)
        status = self._running_status(p, ip=ip, host_ip=host_ip, ready=ready, now=now,
                                      started=str(old.get("startTime") or now))
        first_start = _phase(p) == "Pending"
        self._write_status(PODS, p, status)
        if first_start:
            for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
                cname, image = c.get("name", ""), c.get("image", "")
                self._event(p, "Pulled", f'Container image "{image}" already present on machine',
                            component="kubelet", host=node)
                self._event(p, "Created", f"Created container: {cname}", component="kubelet", host=node)
                self._event(p, "Started", f"Started container {cname}", component="kubelet", host=node)
        return self.store.raw(PODS, ns, name)

    def _running_status(self, p: Obj, *, ip: str, host_ip: str, ready: bool, now: str, started: str) -> Obj:
        spec = p.get("spec") or {}
        containers = spec.get("containers") or []
        names = [str(c.get("name", "")) for c in containers]
        ready_s = "True" if ready else "False"

        def cond(type_: str, status: str, reason: str = "", message: str = "") -> Obj:
            c: Obj = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": now}
            if reason:
                c["reason"], c["message"] = reason, message
            return c

        unready = ("ContainersNotReady", f"containers with unready status: [{' '.join(names)}]") if not ready else ("", "")
        status: Obj = {
            "phase": "Running",
            "conditions": [
                cond("PodReadyToStartContainers", "True"),
                cond("Initialized", "True"),
                cond("Ready", ready_s, *unready),
                cond("ContainersReady", ready_s, *unready),
                cond("PodScheduled", "True"),
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": started,
            "containerStatuses": [_container_status(c, ready=ready, now=now) for c in containers],
            "qosClass": _qos(spec),
        }
        inits = spec.get("initContainers") or []
        if inits:
            status["initContainerStatuses"] = [_container_status(c, ready=True, now=now, completed=True) for c in inits]
        return status

    def _mark_ready(self, ns: str, name: str) -> None:
        p = self.store.raw(PODS, ns, name)
        if p is None or _terminating(p) or _phase(p) != "Running" or self._is_held(p) or not self.enabled:
            return
        status = self._running_status(p, ip=str(p["status"].get("podIP", "")), host_ip=str(p["status"].get("hostIP", "")),
                                      ready=True, now=rfc3339(self.store.clock()),
                                      started=str(p["status"].get("startTime", "")))
        self._write_status(PODS, p, status)

    def _finish(self, ns: str, name: str) -> None:
        p = self.store.raw(PODS, ns, name)
        if p is None or _terminating(p) or _phase(p) != "Running" or not self.enabled:
            return
        now = rfc3339(self.store.clock())
        status = deep_copy(p.get("status") or {})
        status["phase"] = "Succeeded"
        for c in status.get("conditions") or []:
            if c.get("type") in ("Ready", "ContainersReady", "PodReadyToStartContainers"):
                c.update(status="False", lastTransitionTime=now)
                if c["type"] != "PodReadyToStartContainers":
                    c.update(reason="PodCompleted", message="")
        for cs in status.get("containerStatuses") or []:
            started = (cs.get("state") or {}).get("running", {}).get("startedAt", now)
            cs.update(ready=False, started=False, state={"terminated": {
                "exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now,
                "containerID": cs.get("containerID", "")}})
        self._write_status(PODS, p, status)

    def restart(self, ns: str, name: str) -> str:
        """Reschedule a Pod: it keeps its name and gets a new IP (returned)."""
        if self.store.raw(PODS, ns, name) is None:
            raise errors.not_found("pods", name)
        out = self._start(ns, name, new_ip=True)
        if out is None:
            raise errors.not_found("pods", name)
        return str(out["status"]["podIP"])

    def release(self, namespace: str, workload: str) -> None:
        self.held.discard((namespace, workload))
        for p in self.store.list_raw(PODS, namespace)[0]:
            if self.workload_of(p) == workload:
                self._on_pod(p)

    # ------------------------------------------------------------------ endpoints

    def _service_gone(self, ns: str, name: str) -> None:
        if self.store.raw(SERVICES, ns, name) is not None:
            return
        if self.store.raw(("", "endpoints"), ns, name) is not None:
            self.store.remove("v1", "Endpoints", name, ns)
        for s in self.store.list_raw(ENDPOINTSLICES, ns)[0]:
            if (_meta(s).get("labels") or {}).get("kubernetes.io/service-name") == name and \
                    (_meta(s).get("labels") or {}).get("endpointslice.kubernetes.io/managed-by") == _SLICE_MANAGER:
                self._delete(ENDPOINTSLICES, s)

    def sync_endpoints(self, namespace: str) -> None:
        """Write the Endpoints and EndpointSlices of every selector Service in ``namespace``."""
        if not self.endpoints_enabled:
            return
        pods = [p for p in self.store.list_raw(PODS, namespace)[0]
                if (p.get("status") or {}).get("podIP") and not _terminating(p) and _phase(p) == "Running"]
        for svc in self.store.list_raw(SERVICES, namespace)[0]:
            spec = svc.get("spec") or {}
            selector = spec.get("selector") or {}
            if not selector or _terminating(svc):
                continue  # Endpoints of selector-less Services belong to their users
            matching = [p for p in pods
                        if all((_meta(p).get("labels") or {}).get(k) == v for k, v in selector.items())]
            self._write_endpoints(svc, matching)
            self._write_slice(svc, matching)

    def _write_endpoints(self, svc: Obj, pods: list[Obj]) -> None:
        spec = svc.get("spec") or {}
        meta = _meta(svc)
        ns, name = meta["namespace"], meta["name"]
        ready = [p for p in pods if pod_ready(p)]
        unready = [p for p in pods if not pod_ready(p)]
        subsets: list[Obj] = []
        if pods:
            ports = []
            for sp in spec.get("ports") or []:
                entry: Obj = {"port": _target_port(sp, pods[0]), "protocol": sp.get("protocol", "TCP")}
                if sp.get("name"):
                    entry["name"] = sp["name"]
                ports.append(entry)
            subset: Obj = {}
            if ready:
                subset["addresses"] = [_address(p, ns) for p in sorted(ready, key=_ip_key)]
            if unready:
                subset["notReadyAddresses"] = [_address(p, ns) for p in sorted(unready, key=_ip_key)]
            if ports:
                subset["ports"] = ports
            subsets = [subset]
        labels = dict(meta.get("labels") or {})
        cur = self.store.raw(("", "endpoints"), ns, name)
        if cur is None:
            desired: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                            "metadata": {"name": name, "namespace": ns, "labels": labels}}
            if subsets:
                desired["subsets"] = subsets
            self.store.create(desired, copy_result=False)
        elif cur.get("subsets") != (subsets or None) or (_meta(cur).get("labels") or {}) != labels:
            new = deep_copy(cur)
            new["metadata"]["labels"] = labels
            new.pop("subsets", None)
            if subsets:
                new["subsets"] = subsets
            self.store.update(new, check_version=False, copy_result=False)

    def _write_slice(self, svc: Obj, pods: list[Obj]) -> None:
        kind = self.store.registry.any_version(*ENDPOINTSLICES)
        if kind is None:
            return
        spec = svc.get("spec") or {}
        meta = _meta(svc)
        ns, name = meta["namespace"], meta["name"]
        endpoints = []
        for p in sorted(pods, key=_ip_key):
            ready = pod_ready(p)
            ep: Obj = {"addresses": [p["status"]["podIP"]],
                       "conditions": {"ready": ready, "serving": ready, "terminating": False},
                       "targetRef": {"kind": "Pod", "namespace": ns, "name": _meta(p)["name"], "uid": _meta(p)["uid"]}}
            node = (p.get("spec") or {}).get("nodeName")
            if node:
                ep["nodeName"] = node
                zone = ((self.store.raw(NODES, "", node) or {}).get("metadata", {}).get("labels") or {}).get(
                    "topology.kubernetes.io/zone")
                if zone:
                    ep["zone"] = zone
            endpoints.append(ep)
        ports = [{"name": sp.get("name", ""), "port": _target_port(sp, pods[0]) if pods else 0,
                  "protocol": sp.get("protocol", "TCP")} for sp in spec.get("ports") or []] if pods else []
        labels = {**(meta.get("labels") or {}), "kubernetes.io/service-name": name,
                  "endpointslice.kubernetes.io/managed-by": _SLICE_MANAGER}
        slice_name = f"{name}-{_stable_suffix(meta['uid'])}"
        desired: Obj = {"apiVersion": kind.api_version, "kind": "EndpointSlice",
                        "metadata": {"name": slice_name, "namespace": ns, "labels": labels,
                                     "ownerReferences": [_owner_ref(svc, api_version="v1", kind="Service")]},
                        "addressType": "IPv4", "endpoints": endpoints or None, "ports": ports or None}
        desired = {k: v for k, v in desired.items() if v is not None}
        cur = self.store.raw(kind.resource, ns, slice_name)
        if cur is None:
            self.store.create(desired, kind=kind, copy_result=False)
            return
        if cur.get("endpoints") == desired.get("endpoints") and cur.get("ports") == desired.get("ports") and \
                (_meta(cur).get("labels") or {}) == labels:
            return
        new = deep_copy(cur)
        new["metadata"]["labels"] = labels
        for key in ("endpoints", "ports"):
            new.pop(key, None)
            if key in desired:
                new[key] = desired[key]
        self.store.update(new, kind=kind, check_version=False, copy_result=False)

    # ------------------------------------------------------------------ namespaces and bootstrap

    def _bootstrap(self) -> None:
        self.volumes.bootstrap()
        for ns in self.store.list_raw(("", "namespaces"), None)[0]:
            self._namespace_defaults(_meta(ns)["name"], now=True)
        if self.store.raw(SERVICES, "default", "kubernetes") is None:
            self.store.create({"apiVersion": "v1", "kind": "Service", "metadata": {
                "name": "kubernetes", "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                         "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
                         "sessionAffinity": "None",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}})
        self.set_api_endpoint(*self._api_endpoint)

    def set_api_endpoint(self, ip: str, port: int) -> None:
        """Where ``default/kubernetes`` points: the API server's own address."""
        self._api_endpoint = (ip, port)
        subsets = [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
        cur = self.store.raw(("", "endpoints"), "default", "kubernetes")
        if cur is None:
            self.store.create({"apiVersion": "v1", "kind": "Endpoints", "metadata": {
                "name": "kubernetes", "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}, "subsets": subsets})
        elif cur.get("subsets") != subsets:
            self.store.update({**deep_copy(cur), "subsets": subsets}, check_version=False)
        kind = self.store.registry.any_version(*ENDPOINTSLICES)
        if kind is None:
            return
        slice_: Obj = {"apiVersion": kind.api_version, "kind": "EndpointSlice", "metadata": {
            "name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
        cur = self.store.raw(kind.resource, "default", "kubernetes")
        if cur is None:
            self.store.create(slice_, kind=kind)
        elif cur.get("endpoints") != slice_["endpoints"] or cur.get("ports") != slice_["ports"]:
            self.store.update({**deep_copy(cur), "endpoints": slice_["endpoints"], "ports": slice_["ports"]},
                              kind=kind, check_version=False)

    def _on_namespace(self, ch: Change) -> None:
        if ch.type == "DELETED" or _terminating(ch.obj):
            return
        ns = ch.name
        if ch.type == "ADDED":
            self.schedule(("namespace", ns), 0.0, lambda: self._namespace_defaults(ns))

    def _namespace_defaults(self, ns: str, *, now: bool = False) -> None:
        """The ``default`` ServiceAccount and the ``kube-root-ca.crt`` ConfigMap of a
        namespace (the serviceaccounts and root-ca-cert-publisher controllers)."""
        if not now:
            self.schedule(("namespace", ns), 0.0, lambda: self._namespace_defaults(ns, now=True))
            return
        nso = self.store.raw(("", "namespaces"), "", ns)
        if nso is None or _terminating(nso):
            return
        if self.store.raw(("", "serviceaccounts"), ns, "default") is None:
            self.store.create({"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"name": "default", "namespace": ns}}, copy_result=False)
        if self.ca_pem and self.store.raw(("", "configmaps"), ns, "kube-root-ca.crt") is None:
            self.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "kube-root-ca.crt", "namespace": ns,
                "annotations": {"kubernetes.io/description": (
                    "Contains a CA bundle that can be used to verify the kube-apiserver when using "
                    "internal endpoints such as the internal service IP or kubernetes.default.svc. "
                    "No other usage is guaranteed across distributions of Kubernetes clusters.")}},
                "data": {"ca.crt": self.ca_pem.decode()}}, copy_result=False)


_SLICE_MANAGER = "endpointslice-controller.k8s.io"


def _stable_suffix(uid: str) -> str:
    digest = hashlib.sha256(uid.encode()).digest()
    return "".join(_ALNUM[b % len(_ALNUM)] for b in digest[:5])


def _ip_key(p: Obj) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(p["status"]["podIP"]).split("."))
    except ValueError:
        return (0,)


def _address(p: Obj, ns: str) -> Obj:
    a: Obj = {"ip": p["status"]["podIP"]}
    node = (p.get("spec") or {}).get("nodeName")
    if node:
        a["nodeName"] = node
    a["targetRef"] = {"kind": "Pod", "namespace": ns, "name": _meta(p)["name"], "uid": _meta(p)["uid"]}
    return a


def _target_port(service_port: Obj, pod: Obj) -> int:
    """A Service port's target on a Pod: a number, or a named container port."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target:
                return int(p.get("containerPort", 0))
    return int(service_port.get("port", 0))


def _container_status(c: Obj, *, ready: bool, now: str, completed: bool = False) -> Obj:
    name = str(c.get("name", ""))
    image = str(c.get("image", ""))
    digest = hashlib.sha256(image.encode()).hexdigest()
    cid = "containerd://" + hashlib.sha256(f"{name}/{image}/{now}".encode()).hexdigest()
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    state: Obj = ({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now,
                                  "containerID": cid}}
                  if completed else {"running": {"startedAt": now}})
    return {"name": name, "state": state, "lastState": {}, "ready": ready, "restartCount": 0,
            "image": image, "imageID": f"{repo}@sha256:{digest}", "containerID": cid, "started": not completed}


def _qos(spec: Obj) -> str:
    containers = list(spec.get("containers") or [])
    reqs = [(c.get("resources") or {}) for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in reqs):
        return "BestEffort"
    guaranteed = all(
        set(r.get("limits") or {}) >= {"cpu", "memory"}
        and all(str((r.get("requests") or {}).get(k, (r.get("limits") or {})[k])) == str((r.get("limits") or {})[k])
                for k in ("cpu", "memory"))
        for r in reqs)
    return "Guaranteed" if guaranteed else "Burstable"


def _pod_target_node(p: Obj) -> str:
    spec = p.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    terms = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    for t in terms:
        for f in t.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return ""


def _tolerates(tolerations: Iterable[Obj], taint: Obj) -> bool:
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _node_fits(node: Obj, spec: Obj, *, extra_tolerations: Iterable[Obj] = ()) -> bool:
    """The scheduler's filters that matter here: nodeSelector, required node affinity
    (labels and ``metadata.name``), taints against tolerations."""
    labels = _meta(node).get("labels") or {}
    name = _meta(node)["name"]
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    terms = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    if terms and not any(_term_matches(t, labels, name) for t in terms):
        return False
    tolerations = list(spec.get("tolerations") or []) + list(extra_tolerations)
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, taint):
            return False
    return not (node.get("spec") or {}).get("unschedulable")


def _term_matches(term: Obj, labels: dict[str, str], name: str) -> bool:
    for e in term.get("matchExpressions") or []:
        if not _requirement(e, labels.get(e.get("key", "")), e.get("key", "") in labels):
            return False
    for f in term.get("matchFields") or []:
        if f.get("key") == "metadata.name" and not _requirement(f, name, True):
            return False
    return True


def _requirement(e: Obj, value: str | None, present: bool) -> bool:
    op, values = e.get("operator"), [str(v) for v in e.get("values") or []]
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    return True


def selector_matches(selector: str) -> Callable[[Obj], bool]:
    """A predicate over objects' labels from a label selector string."""
    match = parse_label_selector(selector)
    return lambda o: match((o.get("metadata") or {}).get("labels") or {})

