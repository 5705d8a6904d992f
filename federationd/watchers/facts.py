"""From watched objects to domain facts, appended only when the fact changed.

A reflector hands over whole objects, most of whose changes do not matter to federation:
a Node's status heartbeat, a resourceVersion bump, a CR's status written by federationd
itself. The extractors here keep only what projections need — the *fact* — and the
``FactEmitter`` appends a fact only if it differs from the last one appended for the same
thing (ignoring ``time``). So a heartbeat, a status write or a relist of unchanged
objects appends nothing.

Extractors are pure functions ``(cluster, obj, now) -> list[Event]`` (usually zero or
one event); ``FactSource`` pairs an upsert and a delete extractor with what to watch, and
``watch_facts`` wires a source to a ``Reflector`` and an emitter. No secret enters a
fact: a kubeconfig Secret becomes its server URL, sha256 fingerprint and, if it cannot be
used, the sanitiser's (credential-free) reason; a credential in an Istio spec becomes a
fingerprinted placeholder (``federationd.secretref``).

Drift of managed objects needs to know what was applied, which only the actuator knows:
``DriftDetector`` takes that as a hook (``applied_hash(key) -> str | None``) plus how to
read the hash an observed object carries.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec

from events import types as ev
from events.types import ClusterName, Event
from federationd import secretref
from federationd.clusters.connection import ClusterClient
from federationd.clusters.kubeconfig import KubeconfigRejected, fingerprint, parse, sanitise
from federationd.clusters.secrets import (
    SecretFormatError,
    is_istio_remote_secret,
    kubeconfig_from_secret,
    remotes_in_secret,
)
from federationd.metrics import METRICS, Metrics
from federationd.watchers.reflector import Reflector

Obj = dict[str, Any]
Extractor = Callable[[ClusterName, Obj, float], list[Event]]
Append = Callable[[Sequence[Event]], Awaitable[object]]

ISTIO_GROUP_VERSION = "istio.banzaicloud.io/v1beta1"

# Region/zone labels, current first, then the legacy beta labels.
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
SUBZONE_LABEL = "topology.istio.io/subzone"


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _ns_name(obj: Obj) -> tuple[str, str]:
    m = _meta(obj)
    return str(m.get("namespace") or ""), str(m.get("name", ""))


def _key(kind: str, obj: Obj) -> str:
    ns, name = _ns_name(obj)
    return f"{kind}/{ns}/{name}"


def object_key(obj: Obj) -> str:
    """``<apiVersion>/<Kind>/<namespace>/<name>``, the key of managed objects."""
    ns, name = _ns_name(obj)
    return f"{obj.get('apiVersion', '')}/{obj.get('kind', '')}/{ns}/{name}"


# --- custom resources ----------------------------------------------------------------------


def istio_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    m = _meta(obj)
    ns, name = _ns_name(obj)
    spec = obj.get("spec")
    return [ev.IstioSpecChanged(
        cluster=cluster, key=_key("Istio", obj), time=now, namespace=ns, name=name,
        uid=str(m.get("uid", "")), generation=int(m.get("generation") or 0),
        # The credential in the spec is recorded as a fingerprinted placeholder (secretref).
        spec=secretref.redact_istio_spec(spec) if isinstance(spec, dict) else {},
        creation_timestamp=str(m.get("creationTimestamp") or ""),
        deleting=bool(m.get("deletionTimestamp")))]


def istio_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    ns, name = _ns_name(obj)
    return [ev.IstioRemoved(cluster=cluster, key=_key("Istio", obj), time=now,
                            namespace=ns, name=name)]


def remote_istio_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    m = _meta(obj)
    ns, name = _ns_name(obj)
    spec = obj.get("spec")
    return [ev.RemoteIstioSpecChanged(
        cluster=cluster, key=_key("RemoteIstio", obj), time=now, namespace=ns, name=name,
        uid=str(m.get("uid", "")), generation=int(m.get("generation") or 0),
        spec=spec if isinstance(spec, dict) else {},
        creation_timestamp=str(m.get("creationTimestamp") or ""),
        deleting=bool(m.get("deletionTimestamp")))]


def remote_istio_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    ns, name = _ns_name(obj)
    return [ev.RemoteIstioRemoved(cluster=cluster, key=_key("RemoteIstio", obj), time=now,
                                  namespace=ns, name=name)]


# --- namespaces and nodes ---------------------------------------------------------------------


def namespace_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    m = _meta(obj)
    _, name = _ns_name(obj)
    labels = m.get("labels") or {}
    phase = (obj.get("status") or {}).get("phase")
    return [ev.NamespaceObserved(
        cluster=cluster, key=f"Namespace//{name}", time=now, name=name,
        labels={str(k): str(v) for k, v in labels.items()},
        terminating=bool(m.get("deletionTimestamp")) or phase == "Terminating")]


def namespace_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    _, name = _ns_name(obj)
    return [ev.NamespaceRemoved(cluster=cluster, key=f"Namespace//{name}", time=now, name=name)]


def _first_label(labels: dict[str, Any], names: Iterable[str]) -> str:
    for n in names:
        if labels.get(n):
            return str(labels[n])
    return ""


def node_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    """Locality labels and reachable addresses (ExternalIP before InternalIP). Nothing
    else of a Node is looked at, so heartbeats and conditions never change the fact."""
    labels = _meta(obj).get("labels") or {}
    _, name = _ns_name(obj)
    addresses = (obj.get("status") or {}).get("addresses") or []
    ordered: list[str] = []
    for wanted in ("ExternalIP", "InternalIP"):
        for a in addresses:
            if isinstance(a, dict) and a.get("type") == wanted and a.get("address"):
                if a["address"] not in ordered:
                    ordered.append(str(a["address"]))
    return [ev.NodeLocalityObserved(
        cluster=cluster, key=f"Node//{name}", time=now, node=name,
        region=_first_label(labels, REGION_LABELS), zone=_first_label(labels, ZONE_LABELS),
        subzone=str(labels.get(SUBZONE_LABEL, "")), addresses=tuple(ordered))]


def node_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    _, name = _ns_name(obj)
    return [ev.NodeRemoved(cluster=cluster, key=f"Node//{name}", time=now, node=name)]


# --- gateway services and endpoints ------------------------------------------------------------


def gateway_service_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    spec = obj.get("spec") or {}
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ns, name = _ns_name(obj)
    ips = tuple(sorted({str(i["ip"]) for i in ingress if isinstance(i, dict) and i.get("ip")}))
    hostnames = tuple(sorted({str(i["hostname"]) for i in ingress
                              if isinstance(i, dict) and i.get("hostname")}))
    ports: dict[str, int] = {}
    node_ports: dict[str, int] = {}
    for p in spec.get("ports") or []:
        if not isinstance(p, dict) or "port" not in p:
            continue
        pname = str(p.get("name") or p["port"])
        ports[pname] = int(p["port"])
        if p.get("nodePort"):
            node_ports[pname] = int(p["nodePort"])
    return [ev.GatewayAddressesObserved(
        cluster=cluster, key=_key("Service", obj), time=now, namespace=ns, name=name,
        service_type=str(spec.get("type") or "ClusterIP"), ips=ips, hostnames=hostnames,
        node_ports=node_ports, ports=ports)]


def gateway_service_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    ns, name = _ns_name(obj)
    return [ev.GatewayRemoved(cluster=cluster, key=_key("Service", obj), time=now,
                              namespace=ns, name=name)]


def endpoints_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    """Ready pod IPs and ports behind a Service (core/v1 Endpoints), for flat networks."""
    ns, name = _ns_name(obj)
    ips: set[str] = set()
    ports: dict[str, int] = {}
    for subset in obj.get("subsets") or []:
        for a in subset.get("addresses") or []:
            if isinstance(a, dict) and a.get("ip"):
                ips.add(str(a["ip"]))
        for p in subset.get("ports") or []:
            if isinstance(p, dict) and "port" in p:
                ports[str(p.get("name") or p["port"])] = int(p["port"])
    return [ev.PodAddressesObserved(
        cluster=cluster, key=_key("Endpoints", obj), time=now, namespace=ns, service=name,
        ips=tuple(sorted(ips)), ports=ports)]


def endpoints_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    ns, name = _ns_name(obj)
    return [ev.PodAddressesObserved(cluster=cluster, key=_key("Endpoints", obj), time=now,
                                    namespace=ns, service=name)]


# --- kubeconfig secrets --------------------------------------------------------------------------

#: Secret types that can never hold a remote's kubeconfig.
_SKIP_SECRET_TYPES = frozenset({
    "kubernetes.io/service-account-token", "kubernetes.io/tls", "kubernetes.io/dockercfg",
    "kubernetes.io/dockerconfigjson", "kubernetes.io/basic-auth", "kubernetes.io/ssh-auth",
    "bootstrap.kubernetes.io/token", "helm.sh/release.v1", "istio.io/key-and-cert",
})


def _looks_like_kubeconfig(raw: bytes) -> bool:
    try:
        doc = parse(raw)
    except KubeconfigRejected:
        return False
    return "clusters" in doc or doc.get("kind") == "Config"


def _recordable_server(raw: bytes) -> str:
    """The server URL of a kubeconfig that failed sanitising, when one can be named
    without echoing anything that could be a credential."""
    try:
        doc = parse(raw)
        clusters = doc.get("clusters") or []
        servers = [c.get("cluster", {}).get("server") for c in clusters if isinstance(c, dict)]
    except (KubeconfigRejected, AttributeError):
        return ""
    for s in servers:
        if isinstance(s, str):
            parts = urlsplit(s)
            if parts.scheme in ("http", "https") and parts.hostname and not (
                    parts.username or parts.password):
                return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
    return ""


def kubeconfig_observation(cluster: ClusterName, key: str, remote: str, raw: bytes,
                           now: float) -> ev.KubeconfigObserved:
    problem = ""
    server = ""
    try:
        server = sanitise(raw).server
    except KubeconfigRejected as e:
        problem = e.reason
        server = _recordable_server(raw)
    return ev.KubeconfigObserved(cluster=cluster, key=key, time=now, remote=remote,
                                 server=server, fingerprint=fingerprint(raw), problem=problem)


def kubeconfig_secret_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    """One ``KubeconfigObserved`` per remote a Secret holds (Istio's format may hold
    several). Secrets that are not kubeconfigs produce nothing, unless they carry the
    Istio multi-cluster label (then a problem is reported)."""
    if obj.get("type") in _SKIP_SECRET_TYPES:
        return []
    key = _key("Secret", obj)
    istio = is_istio_remote_secret(obj)
    try:
        remotes = remotes_in_secret(obj)
    except SecretFormatError:
        remotes = {}
    out: list[Event] = []
    for remote, raw in remotes.items():
        if istio or _looks_like_kubeconfig(raw):
            out.append(kubeconfig_observation(cluster, key, remote, raw, now))
    if not out and not istio:
        unusable = _unusable_kubeconfig(cluster, key, obj, now)
        if unusable is not None:
            out.append(unusable)
    return out


def _unusable_kubeconfig(cluster: ClusterName, key: str, obj: Obj, now: float) -> ev.KubeconfigObserved | None:
    """A Secret shaped like the source's kubeconfig Secret (``kubectl create secret
    generic NAME --from-file=NAME=…``: no data, one key, or a key named like it) that
    holds no kubeconfig: said so, so that a RemoteIstio of that name says what is wrong
    instead of waiting for a Secret that is there. Other Secrets stay unseen. No
    fingerprint: a hash of an arbitrary secret (a password) is not ours to record."""
    _, name = _ns_name(obj)
    data = obj.get("data") or {}
    if not isinstance(data, dict) or (data and len(data) != 1 and name not in data):
        return None
    if not data:
        problem = f"secret '{name}' has no data"
    else:
        data_key = name if name in data else next(iter(data))
        try:
            raw = kubeconfig_from_secret(obj, remote_name=name)
        except SecretFormatError as e:
            problem = e.reason
        else:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                problem = f"data key '{data_key}' holds binary data, not a kubeconfig"
            else:
                try:
                    parse(raw)
                except KubeconfigRejected as e:
                    problem = f"data key '{data_key}': {e.reason}"
                else:
                    problem = f"data key '{data_key}' holds no kubeconfig (no clusters)"
    return ev.KubeconfigObserved(cluster=cluster, key=key, time=now, remote=name, server="", fingerprint="",
                                 problem=problem)


def kubeconfig_secret_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    """``KubeconfigRemoved`` for each remote the deleted Secret held; deleting a Secret
    that never held a kubeconfig says nothing. Without ``data`` (a tombstone built from
    a name) the remote is taken to be named like the Secret."""
    key = _key("Secret", obj)
    _, name = _ns_name(obj)
    if "data" not in obj:
        remotes = [name]
    else:
        remotes = [e.remote for e in kubeconfig_secret_fact(cluster, obj, now)
                   if isinstance(e, ev.KubeconfigObserved)]
    return [ev.KubeconfigRemoved(cluster=cluster, key=key, time=now, remote=r) for r in remotes]


# --- workloads ----------------------------------------------------------------------------------


def workload_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    """Readiness of a Deployment, DaemonSet or StatefulSet, judged like
    ``kubectl rollout status``: the controller has seen the latest generation and every
    desired replica is updated and available."""
    kind = str(obj.get("kind", ""))
    m = _meta(obj)
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    ns, name = _ns_name(obj)
    generation = int(m.get("generation") or 0)
    observed_generation = int(st.get("observedGeneration") or 0)
    observed = observed_generation >= generation
    if kind == "DaemonSet":
        desired = int(st.get("desiredNumberScheduled") or 0)
        available = int(st.get("numberAvailable") or 0)
        updated = int(st.get("updatedNumberScheduled") or 0)
    elif kind == "StatefulSet":
        desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        available = int(st.get("availableReplicas", st.get("readyReplicas")) or 0)
        updated = int(st.get("updatedReplicas", st.get("currentReplicas")) or 0)
    else:
        desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        available = int(st.get("availableReplicas") or 0)
        updated = int(st.get("updatedReplicas") or 0)
    # old replicas still running (a rollout that has not finished) count as not ready,
    # as `kubectl rollout status` says "old replicas are pending termination"
    pending_old = kind == "Deployment" and int(st.get("replicas") or 0) > updated
    ready = observed and available >= desired and updated >= desired and not pending_old
    containers = (((spec.get("template") or {}).get("spec") or {}).get("containers")) or []
    image = str(containers[0].get("image", "")) if containers and isinstance(containers[0], dict) else ""
    return [ev.WorkloadReadinessObserved(
        cluster=cluster, key=_key(kind, obj), time=now, kind=kind, namespace=ns, name=name,
        ready=ready, desired=desired, available=available, image=image,
        generation=generation, observed_generation=observed_generation)]


def workload_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    kind = str(obj.get("kind", ""))
    ns, name = _ns_name(obj)
    return [ev.WorkloadRemoved(cluster=cluster, key=_key(kind, obj), time=now, kind=kind,
                               namespace=ns, name=name)]


# --- managed objects: drift -------------------------------------------------------------------


class DriftDetector:
    """``ObjectDrifted`` when a managed object no longer carries what was applied.

    ``applied_hash(key)`` answers the content hash federationd last applied for an object
    key (None when it applied nothing); ``observed_hash(obj)`` reads the hash an observed
    object carries (e.g. an annotation). Both are supplied by the actuator side."""

    def __init__(self, *, applied_hash: Callable[[str], str | None],
                 observed_hash: Callable[[Obj], str]) -> None:
        self._applied = applied_hash
        self._observed = observed_hash

    def upsert(self, cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
        key = object_key(obj)
        applied = self._applied(key)
        if applied is None:
            return []
        seen = self._observed(obj)
        if seen == applied:
            return []
        return [ev.ObjectDrifted(cluster=cluster, key=key, time=now, observed_hash=seen)]

    def delete(self, cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
        key = object_key(obj)
        if self._applied(key) is None:
            return []
        return [ev.ObjectDrifted(cluster=cluster, key=key, time=now, deleted=True)]


# --- emitting ----------------------------------------------------------------------------------

Identity = tuple[str, str, str, str]

#: What a fact is *about* (cluster, family, key, sub-key); families are declared on the
#: event classes (``events.types``), so a new fact type needs no table here.
fact_identity = ev.fact_identity


def _timeless(event: Event) -> Event:
    return msgspec.structs.replace(event, time=0.0)


class FactEmitter:
    """Append facts to the log only when they changed (ignoring ``time``).

    ``append`` is ``EventLog.append`` (or anything taking a list of events). ``prime()``
    seeds the memory from facts already in the log (after a restart) so that the first
    relist does not append them again."""

    def __init__(self, append: Append, *, metrics: Metrics | None = None) -> None:
        self._append = append
        self._metrics = metrics or METRICS
        self._last: dict[Identity, Event] = {}

    def prime(self, events: Iterable[Event]) -> None:
        for e in events:
            self._last[fact_identity(e)] = _timeless(e)

    def changed(self, event: Event) -> bool:
        return self._last.get(fact_identity(event)) != _timeless(event)

    async def emit(self, events: Event | Iterable[Event] | None) -> list[Event]:
        """Append the events that changed, in one batch; returns them."""
        if events is None:
            return []
        batch = [events] if isinstance(events, Event) else list(events)
        # Check-and-remember happens without awaiting, so concurrent emitters (one per
        # reflector) cannot both append the same change; appends then run concurrently
        # (the log orders and batches them).
        fresh: list[Event] = []
        remembered: dict[Identity, tuple[Event | None, Event]] = {}
        for e in batch:
            ident = fact_identity(e)
            t = _timeless(e)
            if self._last.get(ident) == t:
                continue
            prev = remembered[ident][0] if ident in remembered else self._last.get(ident)
            remembered[ident] = (prev, t)
            self._last[ident] = t
            fresh.append(e)
        if not fresh:
            return []
        try:
            await self._append(fresh)
        except BaseException:
            # Not recorded: forget we saw them (unless a newer fact replaced them since),
            # so the next observation tries again.
            for ident, (prev, mine) in remembered.items():
                if self._last.get(ident) is not mine:
                    continue
                if prev is None:
                    self._last.pop(ident, None)
                else:
                    self._last[ident] = prev
            raise
        for e in fresh:
            self._metrics.events_appended_total.labels(type=type(e).__name__).inc()
        return fresh

    def forget_cluster(self, cluster: str) -> None:
        """Drop everything remembered about a cluster that left."""
        for ident in [i for i in self._last if i[0] == cluster]:
            del self._last[ident]


# --- wiring -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FactSource:
    """What to watch and how its objects become facts.

    ``family`` is the family of the facts it reports (``events.types``); with it the
    source answers, after a restart, what disappeared while the daemon was down
    (:func:`disappeared`). ``gone`` turns a remembered fact whose object is no longer
    listed into the facts saying so; by default the ``delete`` extractor is given a
    tombstone named by the fact's key (``Kind/namespace/name``)."""

    api_version: str
    kind: str
    upsert: Extractor
    delete: Extractor
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    family: str = ""
    gone: Callable[[Event, float], list[Event]] | None = None


def disappeared(
    source: FactSource,
    cluster: ClusterName,
    remembered: Iterable[Event],
    present: Iterable[tuple[str, str]],
    now: float,
) -> list[Event]:
    """The facts to append after ``source``'s first list on ``cluster``: for every fact
    the log last reported about an object of this source (``remembered``) that the list
    no longer holds (``present``: its (namespace, name) keys), what its removal says.
    This is each source's "what went while we were down", so that a new fact type
    needs no edit in the daemon."""
    if not source.family:
        return []
    here = set(present)
    out: list[Event] = []
    for fact in remembered:
        if fact.family != source.family or fact.removal or fact.cluster != cluster:
            continue
        kind, _, rest = fact.key.partition("/")
        ns, _, name = rest.partition("/")
        if kind != source.kind or (source.namespace is not None and ns != source.namespace):
            continue
        if not _selects_name(source.field_selector, name):
            continue  # another source's object (sources of one family watched by name)
        if (ns, name) in here:
            continue
        if source.gone is not None:
            out.extend(source.gone(fact, now))
        else:
            tomb: Obj = {"apiVersion": source.api_version, "kind": kind, "metadata": {"name": name}}
            if ns:
                tomb["metadata"]["namespace"] = ns
            out.extend(source.delete(cluster, tomb, now))
    return out


def _selects_name(field_selector: str | None, name: str) -> bool:
    """Whether a field selector's ``metadata.name`` terms (if any) admit ``name``."""
    for term in (field_selector or "").split(","):
        field, op, value = term.partition("!=") if "!=" in term else term.partition("=")
        if field.strip() != "metadata.name":
            continue
        value = value.lstrip("=").strip()
        if (op == "!=") == (name == value):
            return False
    return True


ISTIO = FactSource(ISTIO_GROUP_VERSION, "Istio", istio_fact, istio_removed, family="istio")
REMOTE_ISTIO = FactSource(ISTIO_GROUP_VERSION, "RemoteIstio", remote_istio_fact,
                          remote_istio_removed, family="remoteistio")
NAMESPACES = FactSource("v1", "Namespace", namespace_fact, namespace_removed, family="namespace")
NODES = FactSource("v1", "Node", node_fact, node_removed, family="node")


def gateway_services(namespace: str | None,
                     label_selector: str = "istio=ingressgateway") -> FactSource:
    """Ingress gateway Services (label ``istio=ingressgateway`` as Istio's charts set it)
    in ``namespace`` (None: every namespace)."""
    return FactSource("v1", "Service", gateway_service_fact, gateway_service_removed,
                      namespace=namespace, label_selector=label_selector, family="gateway")


def _kubeconfig_gone(fact: Event, now: float) -> list[Event]:
    # one fact per remote of a Secret: the remote is the fact's, not the Secret's name
    remote = fact.remote if isinstance(fact, ev.KubeconfigObserved) else ""
    return [ev.KubeconfigRemoved(cluster=fact.cluster, key=fact.key, time=now, remote=remote)]


def kubeconfig_secrets(namespace: str | None) -> FactSource:
    return FactSource("v1", "Secret", kubeconfig_secret_fact, kubeconfig_secret_removed,
                      namespace=namespace, family="kubeconfig", gone=_kubeconfig_gone)


def workloads(kind: str, *, namespace: str | None = None,
              label_selector: str | None = None) -> FactSource:
    return FactSource("apps/v1", kind, workload_fact, workload_removed,
                      namespace=namespace, label_selector=label_selector, family="workload")


def endpoints(namespace: str | None = None, label_selector: str | None = None) -> FactSource:
    return FactSource("v1", "Endpoints", endpoints_fact, endpoints_removed,
                      namespace=namespace, label_selector=label_selector, family="endpoints")


# --- cluster DNS (multi-mesh) ---------------------------------------------------------------

#: The ConfigMaps a cluster's DNS reads, and the data key federationd edits in each
#: (what the source operator's ``pkg/resources/istiocoredns/{coredns,kubedns}.go`` edit).
CLUSTER_DNS_CONFIGMAPS: dict[str, str] = {"coredns": "Corefile", "kube-dns": "stubDomains"}
DNS_NAMESPACE = "kube-system"


def cluster_dns_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    ns, name = _ns_name(obj)
    data_key = CLUSTER_DNS_CONFIGMAPS.get(name)
    if ns != DNS_NAMESPACE or data_key is None:
        return []
    data = obj.get("data") or {}
    return [ev.ClusterDnsObserved(
        cluster=cluster, key=f"ConfigMap/{ns}/{name}", time=now, namespace=ns, name=name,
        data_key=data_key, text=str(data.get(data_key) or ""), present=data_key in data)]


def cluster_dns_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    ns, name = _ns_name(obj)
    return [ev.ClusterDnsRemoved(cluster=cluster, key=f"ConfigMap/{ns}/{name}", time=now, namespace=ns, name=name)]


def cluster_dns(name: str) -> FactSource:
    """One cluster DNS ConfigMap (``coredns`` or ``kube-dns`` in kube-system), watched by
    name: federationd reads no other ConfigMap of kube-system."""
    return FactSource("v1", "ConfigMap", cluster_dns_fact, cluster_dns_removed, namespace=DNS_NAMESPACE,
                      field_selector=f"metadata.name={name}", family="clusterdns")


def service_address_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    ns, name = _ns_name(obj)
    ip = str((obj.get("spec") or {}).get("clusterIP") or "")
    return [ev.ServiceAddressObserved(cluster=cluster, key=f"Service/{ns}/{name}", time=now,
                                      namespace=ns, name=name, cluster_ip="" if ip == "None" else ip)]


def service_address_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    ns, name = _ns_name(obj)
    return [ev.ServiceAddressRemoved(cluster=cluster, key=f"Service/{ns}/{name}", time=now, namespace=ns, name=name)]


def service_address(namespace: str | None, name: str) -> FactSource:
    """The ClusterIP of the Services called ``name`` (in ``namespace``; None: any), watched by name."""
    return FactSource("v1", "Service", service_address_fact, service_address_removed, namespace=namespace,
                      field_selector=f"metadata.name={name}", family="serviceaddress")


def watch_facts(
    client: ClusterClient,
    source: FactSource,
    emitter: FactEmitter,
    *,
    cluster: ClusterName | None = None,
    now: Callable[[], float] = time.time,
    **reflector_options: Any,
) -> Reflector:
    """A (not yet started) ``Reflector`` that turns ``source``'s objects on ``client``
    into facts appended through ``emitter``. ``now`` stamps the facts' ``time``."""
    name = cluster or client.name

    async def upsert(obj: Obj) -> None:
        await emitter.emit(source.upsert(name, obj, now()))

    async def delete(obj: Obj) -> None:
        await emitter.emit(source.delete(name, obj, now()))

    return Reflector(
        client, api_version=source.api_version, kind=source.kind, on_upsert=upsert,
        on_delete=delete, namespace=source.namespace, label_selector=source.label_selector,
        field_selector=source.field_selector, **reflector_options)
