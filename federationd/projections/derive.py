"""``derive(state) -> Desired``: the desired objects per cluster and the desired CR status.

Pure, like the fold: the same state gives the same ``Desired``, byte for byte, which is
what makes ``federationd replay`` a debugger (and ``desired_hash`` comparable between a
running daemon and a replay of its log).

Shape, and why:

* Objects are keyed ``<apiVersion>/<Kind>/<namespace>/<name>`` (the key of
  ``ObjectDrifted`` / ``ActuationApplied``), each with its content hash and the sequence
  numbers of the events it was derived from (``reasons``, shown by ``explain``).
* A *patch* object (namespace injection labels) is a partial object on something
  federationd does not own: it is applied, never deleted; when no longer desired the
  actuator releases the fields it owned.
* A cluster whose objects cannot be derived (an invalid spec that never validated, a
  render error) is *held*: the actuator changes nothing there. An invalid change to a
  valid spec keeps rendering the last valid spec (the fold kept it), so nothing already
  applied changes, and the status says why.
* Status is computed from the log — the last actuation of every desired object and the
  workloads' readiness — never stored and never used as a lock: it cannot stay stuck in
  ``Reconciling`` because the next actuation event moves it on.

Incremental, because a fleet daemon derives after every fact: each piece is memoised
(``_Memo``) on the parts of the state it reads, relying on the fold being
copy-on-write — an unchanged part of the state is the *same object* in the next state,
so "did my input change" is an identity test. Per cluster: the decoded specs, the
gateway addresses, the rendered components (``render.RenderCache``, which also tracks
which facts each component read), the injection patches, the content hash of every
object version and the cluster's whole ``ClusterDesired``; shared: the sorted remotes,
the localities and the ``meshNetworks`` networks (built once per change and handed to
every cluster, whose ConfigMap text is then dumped once too). A gateway change on one
remote thus re-renders the ConfigMap and nothing else — once for the master and once for
all the remotes that share the master's settings (the render cache hands one cluster's
build to another that read the same) —, and every cluster keeps its last objects with
that ConfigMap swapped in (the master's while no other component of it read what moved:
``RenderCache.hits``); a namespace label change renders one patch. The
memo changes how much is recomputed, never the result: ``derive`` of a state is the same
with a cold memo. ``desired_hash`` is a hash tree over the clusters' and statuses' own
hashes, so it too costs what changed.

Most facts are about one cluster (a write acknowledged, a workload's readiness, a
connection): when every shared input (the CRs, kubeconfigs, identities, departures, the
networks, the localities, the master's pods and gateway) is the same object as at the
last derivation, ``derive`` re-derives only the clusters whose own entries in the
per-cluster maps moved (``PER_CLUSTER``) and keeps the last result for the others, and
the membership is memoised on what it reads (the actuations of non-members only). So a
write acknowledged on one of a hundred clusters costs that cluster, not a walk over
the fleet.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import msgspec

from events import types as ev
from federationd import render
from federationd.api import v1beta1
from federationd.projections import analysis, clusterdns, kubeversion, locality
from federationd.projections import membership as fleet
from federationd.projections.analysis import ClusterView, Finding, MeshView
from federationd.projections.membership import Membership
from federationd.projections.state import (
    Actuation,
    CustomResource,
    Kubeconfig,
    Namespace,
    ProjectionState,
    Workload,
)
from federationd.render import flat, injection
from federationd.render import objects as robj
from federationd.render.cache import RenderCache
from federationd.render.objects import MeshNetwork, NetworkGateway, RenderFacts

ISTIO_KIND = "Istio"
REMOTE_ISTIO_KIND = "RemoteIstio"
CR_API_VERSION = "istio.banzaicloud.io/v1beta1"
INGRESS_GATEWAY = "istio-ingressgateway"
#: Network name of the master cluster in ``meshNetworks`` (the registry Istio 1.1/1.2
#: gives the local Kubernetes registry).
MASTER_REGISTRY = "Kubernetes"
GATEWAY_PORT = 443
#: Workload kinds whose readiness gates ``Available``.
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")

# Status values (the source's).
CREATED = "Created"
RECONCILING = "Reconciling"
AVAILABLE = "Available"
RECONCILE_FAILED = "ReconcileFailed"
UNMANAGED = "Unmanaged"


class DesiredObject(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    obj: dict[str, Any]
    content_hash: str
    reasons: tuple[int, ...] = ()
    patch: bool = False


class ClusterDesired(msgspec.Struct, frozen=True, kw_only=True):
    objects: dict[str, DesiredObject] = {}
    hold: bool = False
    hold_reason: str = ""


class DesiredStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The status one CR should have; ``status`` is its wire form (``Status``, …)."""

    kind: str
    cluster: str
    namespace: str
    name: str
    status: dict[str, Any]
    reasons: tuple[int, ...] = ()


class Desired(msgspec.Struct, frozen=True, kw_only=True):
    seq: int = 0
    clusters: dict[str, ClusterDesired] = {}
    statuses: dict[str, DesiredStatus] = {}
    #: which remotes to connect, which leave, finalizers, trust (``projections.membership``)
    membership: Membership = Membership()
    #: cluster → edits of its DNS ConfigMaps for multi-mesh (``projections.clusterdns``)
    dns: dict[str, tuple[clusterdns.DnsEdit, ...]] = {}


# --- memo ---------------------------------------------------------------------------------

_T = TypeVar("_T")


def _same_inputs(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    # Identity first (copy-on-write state: unchanged parts are the same objects), then
    # equality for small values rebuilt on every call (strings, tuples of seqs).
    return len(a) == len(b) and all(x is y or x == y for x, y in zip(a, b, strict=True))


class _Last:
    """The last derivation: its state, shared inputs and result."""

    def __init__(self) -> None:
        self.state: ProjectionState | None = None
        self.shared: tuple[Any, ...] = ()
        self.desired: Desired | None = None


class _Hashes:
    """The last ``desired_hash``: per cluster and status key the value hashed (compared
    by identity: derivation hands back the same object when nothing changed) and its
    hash, and the root. A derivation that changed nothing costs identity tests only."""

    def __init__(self) -> None:
        self.clusters: dict[str, tuple[Any, str]] = {}
        self.statuses: dict[str, tuple[Any, str]] = {}
        #: the cluster DNS edits last hashed (compared by value: a few small tuples)
        self.dns: Mapping[str, Any] = {}
        self.root = ""


#: How many object versions ``_Memo.content_hash`` remembers, the least recently used
#: forgotten first: what remotes share (~60 objects per distinct RemoteIstio setting
#: while they join; each gateway change's new ``istio`` ConfigMap), kept few because
#: every version held is a ConfigMap of the whole mesh's networks (~20 KB at 100).
HASHED_KEPT = 64


class _Memo:
    """The derivation's memory: per key, the inputs last seen and the result. One entry
    per key (the latest), so it holds what the current desired state holds, plus the
    inputs; clusters that left are dropped by ``retain``."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, ...], tuple[tuple[Any, ...], Any]] = {}
        self.render = RenderCache()
        self.last = _Last()
        self.hashes = _Hashes()
        self._kept: set[str] = set()
        #: cluster → id(rendered object) → (object, reason inputs, DesiredObject)
        self.objects: dict[str, dict[int, tuple[dict[str, Any], tuple[int, ...], DesiredObject]]] = {}
        #: cluster → (desired, DNS edits, facts, its analysis) at the last ``_mesh_findings``
        self.analysis_rows: dict[str, tuple[Any, Any, Any, tuple[ClusterView, tuple[Finding, ...]]]] = {}
        #: ((master, namespace), DNS edits, cluster names, result) of the last
        #: ``_mesh_findings``
        self.findings: tuple[tuple[str, str], Mapping[str, Any], set[str], tuple[Finding, ...]] | None = None
        #: the last ``_mesh_networks_now``'s scan of the remotes (``_network_rows``)
        self.network_scan: _NetworkScan | None = None
        #: (cluster, what, objects) of the latest builds that were not memo hits.
        self.rendered = self.render.rendered
        #: id(object) → (object, content hash) of the latest objects hashed: an object
        #: the render cache shares between clusters is hashed once, not once per cluster
        self.hashed: dict[int, tuple[dict[str, Any], str]] = {}

    def content_hash(self, o: dict[str, Any]) -> str:
        e = self.hashed.pop(id(o), None)
        if e is not None and e[0] is o:
            self.hashed[id(o)] = e  # the most recently used last: the oldest go first
            return e[1]
        h = robj.content_hash(o)
        if len(self.hashed) >= HASHED_KEPT:
            del self.hashed[next(iter(self.hashed))]
        self.hashed[id(o)] = (o, h)
        return h

    def get(
        self, key: tuple[str, ...], inputs: tuple[Any, ...], compute: Callable[[], _T], *, stable: bool = False
    ) -> _T:
        """The result for ``inputs``: the last one when they are the same, else computed.
        ``stable``: a computed result equal to the last one is the last one, so that what
        is keyed on it by identity (the analysis, statuses, hashes, the converger) sees no
        change where an input moved without changing the result."""
        e = self.entries.get(key)
        if e is not None and _same_inputs(e[0], inputs):
            return e[1]  # type: ignore[no-any-return]
        out = compute()
        if stable and e is not None and (e[1] is out or e[1] == out):
            out = e[1]
        self.entries[key] = (inputs, out)
        return out

    def retain(self, clusters: Iterable[str]) -> None:
        keep = set(clusters)
        if keep == self._kept:
            return  # nobody left since the last derivation
        self._kept = keep
        # keys are ("kind", cluster, ...) for per-cluster entries; shared ones use "*"
        for k in [k for k in self.entries if len(k) > 1 and k[1] != "*" and k[1] not in keep]:
            del self.entries[k]
        self.render.retain(keep)
        for c in [c for c in self.objects if c not in keep]:
            del self.objects[c]
        for c in [c for c in self.analysis_rows if c not in keep]:
            del self.analysis_rows[c]


_memo = _Memo()


def renders() -> list[tuple[str, str, int]]:
    """``(cluster, component or patch, objects)`` of every render since ``reset_renders``
    (what the render-count tests assert on)."""
    return list(_memo.rendered)


def shared_renders() -> list[tuple[str, str]]:
    """``(cluster, component)`` of every render-cache entry since ``reset_renders`` that
    took another cluster's build of the same inputs instead of building."""
    return list(_memo.render.shared)


def reset_renders() -> None:
    _memo.rendered.clear()
    _memo.render.shared.clear()


# --- keys and small helpers -----------------------------------------------------------


def object_key(o: Mapping[str, Any]) -> str:
    meta = o.get("metadata", {})
    return f"{o['apiVersion']}/{o['kind']}/{meta.get('namespace', '')}/{meta['name']}"


def split_key(key: str) -> tuple[str, str, str, str]:
    """``apiVersion, kind, namespace, name`` of an object key (apiVersion may hold a '/')."""
    api_version, kind, namespace, name = key.rsplit("/", 3)
    return api_version, kind, namespace, name


def status_key(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


def rfc3339(t: float) -> str:
    """Seconds since the epoch → ``YYYY-MM-DDTHH:MM:SSZ`` without a clock library (pure).

    Days → civil date after Howard Hinnant's ``civil_from_days``."""
    secs = int(t)
    days, rem = divmod(secs, 86400)
    hh, rem = divmod(rem, 3600)
    mm, ss = divmod(rem, 60)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}Z"


def managed_istio(state: ProjectionState) -> CustomResource | None:
    """The one ``Istio`` federationd manages (``membership.managed_istio``), memoised on
    the Istio map: a key, so callers compare the result with this state's CRs by identity."""

    def key() -> str | None:
        cr = fleet.managed_istio(state)
        return next((k for k, v in state.istios.items() if v is cr), None)

    k = _memo.get(("istio", "*"), (state.istios,), key)
    return state.istios[k] if k is not None else None


def master_cluster(state: ProjectionState) -> str | None:
    cr = managed_istio(state)
    return cr.cluster if cr else None


# --- gateways ---------------------------------------------------------------------------


def gateway_addresses(state: ProjectionState, cluster: str, namespace: str) -> tuple[list[str], int, tuple[int, ...]]:
    """Addresses other networks reach ``cluster``'s ingress gateway on, its port, and the
    seqs of the facts used. LoadBalancer IPs first; hostnames through their resolutions;
    a NodePort gateway through its nodes' addresses and the node port. (Memoised: the
    list is shared, not to be changed by the caller.)"""
    inputs = (state.gateways.get(cluster), state.resolutions.get(cluster), state.nodes.get(cluster))
    return _memo.get(("gw", cluster, namespace), inputs, lambda: _gateway_addresses(state, cluster, namespace))


def _gateway_addresses(state: ProjectionState, cluster: str, namespace: str) -> tuple[list[str], int, tuple[int, ...]]:
    gw = state.gateways.get(cluster, {}).get(f"{namespace}/{INGRESS_GATEWAY}")
    if gw is None:
        return [], GATEWAY_PORT, ()
    seqs = [gw.seq]
    addrs: list[str] = []
    # A NodePort Service's load-balancer status is a leftover of an earlier type (the
    # cloud tears that balancer down): only a LoadBalancer's addresses are announced.
    if gw.service_type != "NodePort":
        addrs.extend(gw.ips)
        for host in gw.hostnames:
            res = state.resolutions.get(cluster, {}).get(host)
            if res is not None:
                seqs.append(res.seq)
                addrs.extend(res.ips)
    # The port of the *.local AUTO_PASSTHROUGH listener (cluster-aware-gateway, 443),
    # as the operator announces it (istio_controller.go getMeshNetworks: Port 443);
    # the gateway's 15443 "tls" port only passes *.global (multi-mesh).
    port = gw.ports.get("https", GATEWAY_PORT)
    if not addrs and gw.service_type == "NodePort":
        for node in sorted(state.nodes.get(cluster, {})):
            n = state.nodes[cluster][node]
            if n.addresses:
                # the node's most reachable address (ExternalIP before InternalIP)
                seqs.append(n.seq)
                addrs.append(n.addresses[0])
        port = gw.node_ports.get("https", port)
    return sorted(set(addrs)), port, tuple(seqs)


def gateway_pending(state: ProjectionState, cluster: str, namespace: str) -> str:
    """Why ``cluster``'s ingress gateway has no address yet (for status), or "" when it
    has one. A pending gateway is shown, never waited for: the cluster's network is
    announced without gateways meanwhile and every other cluster converges as usual."""
    addrs, _, _ = gateway_addresses(state, cluster, namespace)
    if addrs:
        return ""
    where = f"{namespace}/{INGRESS_GATEWAY}"
    gw = state.gateways.get(cluster, {}).get(where)
    if gw is None:
        return f"pending: ingress gateway Service {where} not observed yet"
    if gw.service_type == "NodePort":
        return f"pending: ingress gateway {where} is a NodePort and no node has an address yet"
    unresolved = [
        f"{h} ({r.error})" if (r := state.resolutions.get(cluster, {}).get(h)) is not None and r.error else h
        for h in gw.hostnames
    ]
    if unresolved:
        return f"pending: load balancer hostname of {where} not resolved yet: {', '.join(unresolved)}"
    return f"pending: ingress gateway {where} has no load balancer address yet"


# --- facts for render ---------------------------------------------------------------------


def _remote_crs(state: ProjectionState) -> list[CustomResource]:
    """The live RemoteIstios in the mesh (a refused duplicate is not: ``membership``)."""
    refused = fleet.refusals(state) if state.identities else {}
    return _memo.get(
        ("remotes", "*"),
        (state.remote_istios, refused),
        lambda: sorted(
            (cr for cr in state.remote_istios.values() if not cr.deleting and cr.name not in refused),
            key=lambda cr: (cr.namespace, cr.name),
        ),
    )


def _mesh_networks(
    state: ProjectionState, master: str, istio: CustomResource
) -> tuple[tuple[MeshNetwork, ...], tuple[int, ...]]:
    """One network per cluster: the master's (announced with its own gateway, so remote →
    master traffic works) and one per RemoteIstio, named like it, once its cluster is
    identified (before, it may turn out to be a second name for a cluster already in
    the mesh, or never to connect at all); each once its gateway has an address.
    Single-cluster meshes, and meshes without ``meshExpansion`` (a flat network), have
    no networks.

    Built once per change for every cluster; when equal to the previous networks the
    previous tuple itself is returned, so everything keyed on it hits by identity."""
    inputs = (*_network_facts(state), master, istio.namespace, istio.good_spec)
    return _memo.get(("networks-in", "*"), inputs, lambda: _mesh_networks_now(state, master, istio))


def _network_facts(state: ProjectionState) -> tuple[Any, ...]:
    """The parts of the state ``_mesh_networks_now`` reads besides the managed Istio."""
    return state.remote_istios, state.gateways, state.resolutions, state.nodes, state.identities


def networks_moved(old: ProjectionState, new: ProjectionState) -> bool:
    """Whether the mesh's networks may differ between two states: some part of the
    state ``_mesh_networks`` reads (``_network_facts``, and the Istios that name the
    managed one) is not the same object."""
    return old.istios is not new.istios or any(
        a is not b for a, b in zip(_network_facts(old), _network_facts(new), strict=True)
    )


def _mesh_networks_now(
    state: ProjectionState, master: str, istio: CustomResource
) -> tuple[tuple[MeshNetwork, ...], tuple[int, ...]]:
    remotes = [r for r in _remote_crs(state) if r.name in state.identities]
    # Gateway federation (split-horizon EDS through the gateways) is the mesh-expansion
    # mode, as in the source operator (``istio_controller.go``: meshNetworks only with
    # ``meshExpansion``); without it remotes share a flat network, where announcing
    # gateways would send cross-cluster traffic to listeners that are not there.
    if not remotes or istio.good_spec is None or not _istio_spec(istio).mesh_expansion:
        return (), ()
    seqs: list[int] = []
    nets: list[MeshNetwork] = []
    # A network is announced once its gateway has an address, as the operator's
    # ``getMeshNetworks`` does (a cluster without one is skipped): until then no proxy
    # could reach it anyway, and a joining remote changes every cluster's ConfigMap
    # once (network and gateway together) instead of twice.
    gw = gateway_addresses(state, master, istio.namespace)
    seqs.extend(gw[2])
    if gw[0]:
        nets.append(_network(master, (MASTER_REGISTRY,), gw))
    rows = _network_rows(state, remotes)
    # (no loop over the remotes in Python: a moved gateway's change is one row)
    seqs.extend(itertools.chain.from_iterable(map(operator.itemgetter(0), rows)))
    nets.extend(filter(None, map(operator.itemgetter(1), rows)))
    out = (tuple(nets), tuple(seqs))
    return _memo.get(("networks", "*"), out, lambda: out)


#: One remote's part of the networks: the seqs of the facts it was built from, and its
#: network (None until its gateway has an address).
_NetworkRow = tuple[tuple[int, ...], MeshNetwork | None]


class _NetworkScan(msgspec.Struct, frozen=True):
    """The remotes ``_network_rows`` last scanned, the facts it read and its rows."""

    remotes: list[CustomResource]
    identities: Any
    facts: tuple[Mapping[str, Any], ...]
    rows: list[_NetworkRow]
    index: dict[str, int]


def _network_row(state: ProjectionState, r: CustomResource) -> _NetworkRow:
    gw = gateway_addresses(state, r.name, r.namespace)
    net = _network(r.name, (r.name,), gw) if gw[0] else None
    return (r.seq, state.identities[r.name].seq, *gw[2]), net


def _network_rows(state: ProjectionState, remotes: list[CustomResource]) -> list[_NetworkRow]:
    """Each remote's row, in ``remotes``' order. When the remotes and their identities
    are those of the last scan, only the rows of clusters whose gateways, resolutions
    or nodes are no longer the same objects are built again (the fold is copy-on-write,
    so the others are shared): a moved gateway costs one row, not one per remote."""
    facts: tuple[Mapping[str, Any], ...] = (state.gateways, state.resolutions, state.nodes)
    last = _memo.network_scan
    if last is not None and last.identities is state.identities and _same_crs(last.remotes, remotes):
        rows, index = last.rows, last.index
        moved: set[str] = set()
        for old, new in zip(last.facts, facts, strict=True):
            moved |= changed_keys(old, new)
        if moved:
            rows = list(rows)
            for name in moved:
                i = index.get(name)
                if i is not None:
                    rows[i] = _network_row(state, remotes[i])
    else:
        rows = [_network_row(state, r) for r in remotes]
        index = {r.name: i for i, r in enumerate(remotes)}
    _memo.network_scan = _NetworkScan(remotes, state.identities, facts, rows, index)
    return rows


def _same_crs(a: list[CustomResource], b: list[CustomResource]) -> bool:
    return a is b or (len(a) == len(b) and not robj.moved_at(a, b))


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    """The keys whose value is not the same object in both maps (or is in one only): what
    moved between two copy-on-write maps (the tests run in C: the maps have a key per
    cluster, or per object)."""
    if old is new:
        return set()
    out = set(itertools.compress(new, map(operator.is_not, map(old.get, new), new.values())))
    out |= old.keys() - new.keys()
    return out


def _network(name: str, registry: tuple[str, ...], gw: tuple[list[str], int, tuple[int, ...]]) -> MeshNetwork:
    def build() -> MeshNetwork:
        addrs, port, _ = gw
        return MeshNetwork(
            name=name,
            from_registry=registry,
            gateways=tuple(NetworkGateway(address=a, port=port) for a in addrs),
        )

    return _memo.get(("network", name), (gw, registry), build)


def _localities(state: ProjectionState) -> tuple[tuple[str, ...], tuple[int, ...]]:
    return _memo.get(("localities", "*"), (state.nodes,), lambda: _all_localities(state))


def _all_localities(state: ProjectionState) -> tuple[tuple[str, ...], tuple[int, ...]]:
    locs: set[str] = set()
    seqs: list[int] = []
    for cluster in sorted(state.nodes):
        for name in sorted(state.nodes[cluster]):
            n = state.nodes[cluster][name]
            if n.region:
                locs.add(f"{n.region}/{n.zone}" if n.zone else n.region)
                seqs.append(n.seq)
    return tuple(sorted(locs)), tuple(seqs)


#: ``Kind/name`` of citadel's Deployment (how ``_desired_objects`` finds extra reasons).
CITADEL_KEY = "Deployment/istio-citadel"
#: The plug-in CA Secret citadel reads (Istio's name for it).
CACERTS = "cacerts"


def _ca_facts(state: ProjectionState, cluster: str, namespace: str) -> tuple[str, str, tuple[int, ...]]:
    """``(ca_secret_name, ca_fingerprint, seqs)`` for render: ``cacerts`` once federationd's
    trust manager has placed it on the cluster (observed, readable, ours). A ``cacerts``
    someone else put there is not used: the trust side reports it in status instead.
    Only the public fingerprint is known here; key material never passes through."""
    ca = state.ca_secrets.get(cluster, {}).get(f"{namespace}/{CACERTS}")
    if ca is None or not ca.managed or not ca.fingerprint:
        return "", "", ()
    return CACERTS, ca.fingerprint, (ca.seq,)


def _trust_blocker(state: ProjectionState, cluster: str) -> str:
    """Why ``cluster`` does not share the mesh's root of trust ("" when it does)."""
    tr = state.trust.get(cluster)
    return f"shared root of trust: {tr.problem}" if tr is not None and tr.problem else ""


# --- render (the one seam between projections and the object builders) -----------------------


def _injection_patches(
    namespaces: Iterable[str], existing: Mapping[str, Namespace], *, cluster: str = ""
) -> list[dict[str, Any]]:
    """Injection labels as patches on the listed namespaces that exist (a namespace that
    does not exist yet is labelled when it appears: applying now would create it).
    A namespace labelled by hand (injection label without federationd's marker) is never
    touched. (``cluster`` keys the memo: one patch is built per namespace change.)"""
    out = []
    for ns in sorted(set(namespaces)):
        n = existing.get(ns)
        if n is None or n.terminating:
            continue
        if injection.INJECTION_LABEL in n.labels and injection.MARKER_LABEL not in n.labels:
            continue
        out.append(_memo.get(("patch", cluster, ns), (n,), functools.partial(_injection_patch, cluster, ns)))
    return out


#: How pilot 1.1/1.2 finds remote registries: Secrets labelled ``istio/multiCluster:
#: "true"`` in its namespace, one data key per cluster id. The source operator labels each
#: RemoteIstio's kubeconfig Secret so (``remoteistio_controller.go`` ``labelSecret``).
MULTICLUSTER_LABEL = "istio/multiCluster"
CLUSTER_ANNOTATION = "networking.istio.io/cluster"


def _remote_secret_labels(state: ProjectionState) -> list[dict[str, Any]]:
    """The label (and Istio's cluster annotation) on each usable source-format kubeconfig
    Secret — one named like its RemoteIstio — as patches: federationd never owns the
    Secret, and an Istio-format Secret carries the label already. (Memoised on the
    Secrets and RemoteIstios: a moved gateway re-derives the master without them.)"""
    crs = _remote_crs(state)
    return _memo.get(("secret-labels", "*"), (state.kubeconfigs, crs), lambda: _remote_secret_labels_now(state, crs))


def _remote_secret_labels_now(state: ProjectionState, crs: Sequence[CustomResource]) -> list[dict[str, Any]]:
    out = []
    for r in crs:
        kc = state.kubeconfigs.get(f"Secret/{r.namespace}/{r.name}")
        if kc is None or kc.remote != r.name or kc.problem:
            continue
        out.append(_memo.get(("secret-label", r.name), (r.namespace,), functools.partial(_secret_label, r.namespace, r.name)))
    return out


def _secret_label(namespace: str, name: str) -> dict[str, Any]:
    meta = {
        "name": name,
        "namespace": namespace,
        "labels": {MULTICLUSTER_LABEL: "true"},
        "annotations": {CLUSTER_ANNOTATION: name},
    }
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta}


def _injection_patch(cluster: str, ns: str) -> dict[str, Any]:
    change = injection.NamespaceLabelChange(namespace=ns, labels=injection.owned_labels())
    _memo.rendered.append((cluster, f"patch {ns}", 1))
    return change.apply_config()


def _render_master(
    spec: v1beta1.IstioSpec, *, namespace: str, facts: RenderFacts
) -> list[dict[str, Any]]:
    return render.render_master(spec, namespace=namespace, facts=facts, cache=_memo.render)


def _render_remote(
    spec: v1beta1.IstioSpec,
    remote: v1beta1.RemoteIstioSpec,
    *,
    namespace: str,
    facts: RenderFacts,
) -> list[dict[str, Any]]:
    return render.render_remote(spec, remote, namespace=namespace, facts=facts, cache=_memo.render)


# --- derive -------------------------------------------------------------------------------------------


def _desired_objects(
    rendered: Iterable[dict[str, Any]],
    patches: Iterable[dict[str, Any]],
    *,
    base: tuple[int, ...],
    extra: Mapping[str, tuple[int, ...]],
    ns_seqs: Mapping[str, int],
    cluster: str = "",
) -> dict[str, DesiredObject]:
    """The cluster's ``DesiredObject``s by key. A rendered object that is the same dict
    as last time (a render-cache hit) with the same reasons keeps its ``DesiredObject``,
    so its content hash is computed once per object version; the patches go as a block
    (``_patch_objects``)."""
    prev: dict[int, tuple[dict[str, Any], tuple[int, ...], DesiredObject]] = _memo.objects.get(cluster, {})
    seen: dict[int, tuple[dict[str, Any], tuple[int, ...], DesiredObject]] = {}
    out: dict[str, DesiredObject] = {}

    for o in rendered:
        used = base + extra.get(o["kind"] + "/" + o["metadata"]["name"], ())
        e = prev.get(id(o))
        if e is not None and e[0] is o and e[1] == used:
            d = e[2]
        else:
            h = e[2].content_hash if e is not None and e[0] is o else _memo.content_hash(o)
            d = DesiredObject(key=object_key(o), obj=o, content_hash=h, reasons=tuple(sorted(set(used))))
        seen[id(o)] = (o, used, d)
        out[d.key] = d
    out.update(_patch_objects(patches, base=base, ns_seqs=ns_seqs, cluster=cluster))
    if cluster:
        _memo.objects[cluster] = seen
    return dict(sorted(out.items()))


def _patch_objects(
    patches: Iterable[dict[str, Any]], *, base: tuple[int, ...], ns_seqs: Mapping[str, int], cluster: str
) -> dict[str, DesiredObject]:
    """The patches' ``DesiredObject``s, memoised on the patches themselves (the same
    dicts in the same order), ``base`` and the namespaces' seqs: a derivation that
    changed none of them (a moved gateway re-deriving the master, whose patches are a
    label on every remote's kubeconfig Secret) checks them as one block. A patch that
    is the same dict with the same reasons as before keeps its ``DesiredObject``."""
    key = ("patch-objects", cluster)
    listed = tuple(patches)

    def build() -> dict[str, DesiredObject]:
        last = _memo.entries.get(key)  # the previous block, not replaced yet
        before = {id(d.obj): d for d in last[1].values()} if last is not None else {}
        out: dict[str, DesiredObject] = {}
        for o in listed:
            reasons = tuple(sorted({*base, ns_seqs.get(o["metadata"]["name"], 0)} - {0}))
            d = before.get(id(o))
            if d is None or d.obj is not o or d.reasons != reasons:
                h = d.content_hash if d is not None and d.obj is o else _memo.content_hash(o)
                d = DesiredObject(key=object_key(o), obj=o, content_hash=h, reasons=reasons, patch=True)
            out[d.key] = d
        return out

    return _memo.get(key, (listed, base, ns_seqs), build)


def _istio_spec(cr: CustomResource) -> v1beta1.IstioSpec:
    """The decoded, defaulted spec of an Istio CR (decoded once per spec version)."""
    assert cr.good_spec is not None
    good = cr.good_spec
    return _memo.get(
        ("spec", "*", cr.namespace, cr.name), (good,), lambda: v1beta1.istio_spec(good, namespace=cr.namespace)
    )


def _remote_spec(cr: CustomResource) -> v1beta1.RemoteIstioSpec:
    assert cr.good_spec is not None
    good = cr.good_spec
    return _memo.get(
        ("rspec", cr.name, cr.namespace), (good,), lambda: v1beta1.remote_istio_spec(good, namespace=cr.namespace)
    )


def _master_desired(
    state: ProjectionState, istio: CustomResource
) -> ClusterDesired:
    """The master's objects, recomputed only when something it reads changed."""
    master = istio.cluster
    networks, net_seqs = _mesh_networks(state, master, istio)
    localities, loc_seqs = _localities(state)
    inputs = (
        istio.good_spec, istio.problem, istio.namespace, istio.good_seq, networks, net_seqs,
        localities, loc_seqs, state.ca_secrets.get(master), state.namespaces.get(master),
        # the kubeconfig Secrets the master labels for pilot (_remote_secret_labels)
        state.kubeconfigs, state.remote_istios,
        # its server version and served APIs (API versions rendered; refusal)
        state.kubernetes.get(master),
    )
    assert inputs[_MASTER_NETWORKS_AT] is networks and inputs[_MASTER_NETWORKS_AT + 1] is net_seqs
    key = ("desired", master)
    last = _memo.entries.get(key)

    def compute() -> ClusterDesired:
        if last is not None:
            quick = _master_with_new_networks(state, istio, last, inputs)
            if quick is not None:
                return quick
        return _master_desired_now(state, istio)

    return _memo.get(key, inputs, compute, stable=True)


#: Where ``_master_desired``'s inputs hold the mesh's networks (their seqs next).
_MASTER_NETWORKS_AT = 4


def _master_facts(state: ProjectionState, istio: CustomResource) -> tuple[RenderFacts, tuple[int, ...], dict[str, tuple[int, ...]]]:
    """The facts the master is rendered from, and the reasons of its objects: the
    Istio's seq for every one, and per ``Kind/name`` the seqs of the facts that object
    reads besides (``_desired_objects``' ``base`` and ``extra``)."""
    master = istio.cluster
    networks, net_seqs = _mesh_networks(state, master, istio)
    localities, loc_seqs = _localities(state)
    ca_name, ca_fingerprint, ca_seqs = _ca_facts(state, master, istio.namespace)
    facts = RenderFacts(
        cluster=master,
        role="master",
        network=master if networks else "",
        mesh_networks=networks,
        localities=localities,
        ca_secret_name=ca_name,
        ca_fingerprint=ca_fingerprint,
        kubernetes_apis=kubeversion.served(state.kubernetes.get(master)),
    )
    return facts, (istio.good_seq,), {"ConfigMap/istio": net_seqs + loc_seqs, CITADEL_KEY: ca_seqs}


def _master_with_new_networks(
    state: ProjectionState, istio: CustomResource, last: tuple[tuple[Any, ...], Any], inputs: tuple[Any, ...]
) -> ClusterDesired | None:
    """``_master_desired_now`` when only the mesh's networks moved since ``last`` and
    they change the ``istio`` ConfigMap alone (a moved gateway; not a new network,
    whose registry rebuilds pilot too): the last objects with that ConfigMap rendered
    again, or None (the full derivation then says what changed). What a moved gateway
    waits for on the master: this spares the master's other objects their render-cache
    lookups, sort and bookkeeping."""
    old_inputs, old = last
    if not isinstance(old, ClusterDesired) or old.hold or not old.objects or len(old_inputs) != len(inputs):
        return None
    for i, (a, b) in enumerate(zip(old_inputs, inputs, strict=True)):
        if i not in (_MASTER_NETWORKS_AT, _MASTER_NETWORKS_AT + 1) and not (a is b or a == b):
            return None
    facts, base, extra = _master_facts(state, istio)
    try:
        objs = render.render_master_mesh_config(
            _istio_spec(istio), namespace=istio.namespace, facts=facts, cache=_memo.render
        )
    except Exception:
        return None
    if objs is None:
        return None
    return _swap_rendered(istio.cluster, old, objs, lambda o: base + extra.get(o["kind"] + "/" + o["metadata"]["name"], ()))


def _swap_rendered(
    cluster: str,
    old: ClusterDesired,
    objs: list[dict[str, Any]],
    used: Callable[[dict[str, Any]], tuple[int, ...]] | None = None,
) -> ClusterDesired | None:
    """``old`` with ``objs``, objects it holds rendered again, in their places (None
    when one is new: what the full derivation decides on). ``used(o)`` gives an
    object's reasons before sorting (as ``_desired_objects`` takes them); without it
    each keeps its reasons."""
    objects = dict(old.objects)
    seen = _memo.objects.get(cluster, {})
    for o in objs:
        k = object_key(o)
        d = objects.get(k)
        if d is None or d.patch:
            return None
        e = seen.get(id(d.obj))
        if e is not None and e[0] is not d.obj:
            e = None
        u: tuple[int, ...] | None
        if used is not None:
            u = used(o)
            reasons = tuple(sorted(set(u)))
        else:
            u, reasons = (e[1] if e is not None else None), d.reasons
        if d.obj is o and reasons == d.reasons:
            continue
        h = d.content_hash if d.obj is o else _memo.content_hash(o)
        objects[k] = DesiredObject(key=k, obj=o, content_hash=h, reasons=reasons)
        if u is not None:  # for the next full render: this object's reasons and hash
            seen.pop(id(d.obj), None)
            seen[id(o)] = (o, u, objects[k])
    return ClusterDesired(objects=objects)


def _master_desired_now(
    state: ProjectionState, istio: CustomResource
) -> ClusterDesired:
    master = istio.cluster
    if istio.good_spec is None:
        return ClusterDesired(hold=True, hold_reason=istio.problem)
    spec = _istio_spec(istio)
    refused = kubeversion.refusal(spec, state.kubernetes.get(master), cluster=master, role="master")
    if refused:
        return ClusterDesired(hold=True, hold_reason=refused)
    facts, base, extra = _master_facts(state, istio)
    try:
        rendered = _render_master(spec, namespace=istio.namespace, facts=facts)
    except render.RenderError as e:
        return ClusterDesired(hold=True, hold_reason=str(e))
    except Exception as e:  # a render bug must hold the cluster, not wipe it
        return ClusterDesired(hold=True, hold_reason=f"render failed: {type(e).__name__}: {e}")
    existing = state.namespaces.get(master, {})
    patches = _injection_patches(spec.auto_injection_namespaces, existing, cluster=master)
    patches += _remote_secret_labels(state)
    return ClusterDesired(
        objects=_desired_objects(
            rendered,
            patches,
            base=base,
            extra=extra,
            ns_seqs={n: existing[n].seq for n in existing},
            cluster=master,
        )
    )


#: Where ``_remote_desired``'s inputs hold the mesh's networks.
_NETWORKS_AT = 9


def _remote_desired(
    state: ProjectionState, istio: CustomResource, remote: CustomResource
) -> ClusterDesired:
    """A remote's objects, recomputed only when something it reads changed."""
    networks, _ = _mesh_networks(state, istio.cluster, istio)
    localities, _ = _localities(state)
    inputs = (
        istio.good_spec, istio.problem, istio.namespace, istio.cluster, istio.good_seq,
        remote.good_spec, remote.problem, remote.namespace, remote.good_seq, networks, localities,
        state.ca_secrets.get(remote.name), state.namespaces.get(remote.name),
        # enabledServices' objects: the same objects while what they read of the master
        # (its pods' addresses, in gateway mode its gateway) renders the same
        _remote_flat(state, istio, remote),
        # its server version and served APIs (API versions rendered; refusal)
        state.kubernetes.get(remote.name),
    )
    assert inputs[_NETWORKS_AT] is networks
    key = ("desired", remote.name)
    last = _memo.entries.get(key)

    def compute() -> ClusterDesired:
        if last is not None:
            quick = _with_new_networks(state, istio, remote, last, inputs)
            if quick is not None:
                return quick
        return _remote_desired_now(state, istio, remote)

    return _memo.get(key, inputs, compute, stable=True)


def _with_new_networks(
    state: ProjectionState,
    istio: CustomResource,
    remote: CustomResource,
    last: tuple[tuple[Any, ...], Any],
    inputs: tuple[Any, ...],
) -> ClusterDesired | None:
    """``_remote_desired_now`` when only the mesh's networks moved since ``last``: the
    last objects with the ``istio`` ConfigMap (the one object that carries
    ``meshNetworks``) rendered again, or None where that does not hold (the full
    derivation then says what changed, a hold included). Every cluster's ConfigMap
    changes with each new gateway address: this spares the other ~60 objects of each
    remote their render-cache lookups, sort and bookkeeping."""
    old_inputs, old = last
    if not isinstance(old, ClusterDesired) or old.hold or not old.objects or len(old_inputs) != len(inputs):
        return None
    for i, (a, b) in enumerate(zip(old_inputs, inputs, strict=True)):
        if i != _NETWORKS_AT and not (a is b or a == b):
            return None
    assert istio.good_spec is not None and remote.good_spec is not None  # old is not a hold
    try:
        objs = render.render_remote_mesh_config(
            _istio_spec(istio), _remote_spec(remote), namespace=remote.namespace,
            facts=_remote_facts(state, istio, remote), cache=_memo.render,
        )
    except Exception:
        return None
    return _swap_rendered(remote.name, old, objs)


def _remote_facts(state: ProjectionState, istio: CustomResource, remote: CustomResource) -> RenderFacts:
    networks, _ = _mesh_networks(state, istio.cluster, istio)
    localities, _ = _localities(state)
    ca_name, ca_fingerprint, _ = _ca_facts(state, remote.name, remote.namespace)
    return RenderFacts(
        cluster=remote.name,
        role="remote",
        network=remote.name,
        mesh_networks=networks,
        localities=localities,
        ca_secret_name=ca_name,
        ca_fingerprint=ca_fingerprint,
        kubernetes_apis=kubeversion.served(state.kubernetes.get(remote.name)),
    )


def _remote_desired_now(
    state: ProjectionState, istio: CustomResource, remote: CustomResource
) -> ClusterDesired:
    if istio.good_spec is None:
        return ClusterDesired(hold=True, hold_reason=istio.problem)
    if remote.good_spec is None:
        return ClusterDesired(hold=True, hold_reason=remote.problem)
    spec = _istio_spec(istio)
    rspec = _remote_spec(remote)
    apis = state.kubernetes.get(remote.name)
    refused = kubeversion.refusal(spec, apis, cluster=remote.name, role="remote")
    if refused:
        return ClusterDesired(hold=True, hold_reason=refused)
    _, _, ca_seqs = _ca_facts(state, remote.name, remote.namespace)
    facts = _remote_facts(state, istio, remote)
    try:
        rendered = _render_remote(spec, rspec, namespace=remote.namespace, facts=facts)
    except render.RenderError as e:
        return ClusterDesired(hold=True, hold_reason=str(e))
    except Exception as e:
        return ClusterDesired(hold=True, hold_reason=f"render failed: {type(e).__name__}: {e}")
    flat_in = _remote_flat(state, istio, remote)
    if isinstance(flat_in, str):
        return ClusterDesired(hold=True, hold_reason=flat_in)
    assert flat_in is not None  # both specs are good
    flat_objs, flat_seqs = flat_in
    clash = _name_clash(rendered, flat_objs)
    if clash:
        return ClusterDesired(hold=True, hold_reason=clash)
    existing = state.namespaces.get(remote.name, {})
    patches = _injection_patches(rspec.auto_injection_namespaces, existing, cluster=remote.name)
    return ClusterDesired(
        objects=_desired_objects(
            [*rendered, *flat_objs],
            patches,
            base=(istio.good_seq, remote.good_seq),
            extra={**flat_seqs, CITADEL_KEY: ca_seqs},
            ns_seqs={n: existing[n].seq for n in existing},
            cluster=remote.name,
        )
    )


# --- flat network (seed 000) ------------------------------------------------------------------


def _remote_flat(
    state: ProjectionState, istio: CustomResource, remote: CustomResource
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, ...]]] | str | None:
    """A remote's ``enabledServices`` objects and their seqs (``_enabled_services``), why
    they cannot be rendered, or None while a spec is not good."""
    if istio.good_spec is None or remote.good_spec is None:
        return None
    try:
        return _enabled_services(
            state, istio, _istio_spec(istio), _remote_spec(remote), namespace=remote.namespace, cluster=remote.name
        )
    except flat.EnabledServiceError as e:
        return f"enabledServices: {e}"


def _enabled_pods(
    state: ProjectionState, istio: CustomResource, spec: v1beta1.IstioSpec, rspec: v1beta1.RemoteIstioSpec
) -> tuple[Any, ...]:
    """What ``enabledServices`` reads of the master's pods: of each enabled service (not
    of every service on the master) the addresses observed, or, for an entry reached
    through the gateway or at pinned IPs, their ports alone (and the fact they are
    from): a restarted pod does not render the remote's entries again."""
    pods = state.pods.get(istio.cluster, {})
    out: list[Any] = []
    for svc in rspec.enabled_services:
        pa = pods.get(f"{istio.namespace}/{svc.name}")
        if pa is not None and not flat.reads_pod_addresses(svc, gateway_mode=spec.mesh_expansion):
            out.append((pa.ports_seq, pa.ports))
        else:
            out.append(pa)
    return tuple(out)


def _enabled_services(
    state: ProjectionState,
    istio: CustomResource,
    spec: v1beta1.IstioSpec,
    rspec: v1beta1.RemoteIstioSpec,
    *,
    namespace: str,
    cluster: str = "",
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, ...]]]:
    """The remote's selector-less Services + Endpoints for ``enabledServices``, and the
    seqs each was derived from (keyed ``Kind/name``, as ``_desired_objects`` reads them).

    The addresses are the master's ready pod IPs of the service of that name in the
    master Istio's namespace (its Endpoints, observed as ``PodAddressesObserved``), or in
    gateway mode — the master Istio has ``meshExpansion``, the source's rule: the master
    is reached only through its ingress gateway — the master's gateway addresses."""
    if not rspec.enabled_services:
        return [], {}
    gw = gateway_addresses(state, istio.cluster, istio.namespace) if spec.mesh_expansion else None
    inputs = (rspec.enabled_services, _enabled_pods(state, istio, spec, rspec), gw, namespace, istio.cluster, istio.namespace)
    return _memo.get(
        ("flat", cluster), inputs,
        lambda: _enabled_services_now(state, istio, spec, rspec, namespace=namespace, cluster=cluster),
        stable=True,
    )


def _enabled_services_now(
    state: ProjectionState,
    istio: CustomResource,
    spec: v1beta1.IstioSpec,
    rspec: v1beta1.RemoteIstioSpec,
    *,
    namespace: str,
    cluster: str,
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, ...]]]:
    master_pods = state.pods.get(istio.cluster, {})
    observed: dict[str, flat.ServiceAddresses] = {}
    seqs: dict[str, tuple[int, ...]] = {}
    gw_addrs, _, gw_seqs = gateway_addresses(state, istio.cluster, istio.namespace)
    for svc in rspec.enabled_services:
        pa = master_pods.get(f"{istio.namespace}/{svc.name}")
        used: tuple[int, ...] = gw_seqs if spec.mesh_expansion else ()
        if pa is not None:
            observed[svc.name] = flat.ServiceAddresses(ips=pa.ips, ports=dict(pa.ports))
            # Reached through the gateway or at pinned IPs, the entry reads the pods'
            # ports, not their addresses: a restarted master pod changes neither its
            # objects nor what they were derived from.
            used = (*used, pa.seq if flat.reads_pod_addresses(svc, gateway_mode=spec.mesh_expansion) else pa.ports_seq)
        seqs[f"Service/{svc.name}"] = seqs[f"Endpoints/{svc.name}"] = used
    objs = flat.render_enabled_services(
        rspec,
        namespace=namespace,
        observed=observed,
        gateway_addresses=gw_addrs,
        gateway_mode=spec.mesh_expansion,
    )
    _memo.rendered.append((cluster, "enabledServices", len(objs)))
    return objs, seqs


def _name_clash(rendered: Iterable[Mapping[str, Any]], flat_objs: Iterable[Mapping[str, Any]]) -> str:
    """Why ``enabledServices`` cannot be applied next to the remote's own components: an
    entry named like a Service (or Endpoints) federationd already renders there would
    make two desired objects of one name fight."""
    own = {object_key(o) for o in rendered}
    clashes = sorted(
        f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
        for o in flat_objs
        if o["kind"] == "Service" and object_key(o) in own
    )
    if not clashes:
        return ""
    return (
        "enabledServices: " + ", ".join(clashes)
        + " clashes with a Service of the remote's own components; rename or remove the entry"
    )


# --- mesh analysis (the MeshAnalyzed condition) ------------------------------------------------------


def _node_localities(state: ProjectionState, cluster: str) -> tuple[str, ...]:
    """A cluster's nodes' ``region/zone`` pairs, sorted."""
    nodes = state.nodes.get(cluster) or {}
    return _memo.get(
        ("analysis-nodes", cluster), (nodes,),
        lambda: tuple(sorted({f"{n.region}/{n.zone}" if n.zone else n.region for n in nodes.values() if n.region})),
    )


def _cluster_view(
    state: ProjectionState, name: str, role: str, cd: ClusterDesired, *, namespace: str,
    dns: tuple[clusterdns.DnsEdit, ...] = (),
) -> ClusterView:
    apis = state.kubernetes.get(name)
    localities = _node_localities(state, name)
    observed = _dns_inputs(state, name, namespace)

    def build() -> ClusterView:
        return ClusterView(
            name=name, role="master" if role == "master" else "remote",
            objects=_with_cluster_dns(tuple(o.obj for o in cd.objects.values()), observed, dns),
            kubernetes_apis=apis.group_versions if apis is not None else None,
            localities=localities,
        )

    return _memo.get(("analysis-view", name), (cd, role, apis, localities, namespace, observed, dns), build)


def _dns_inputs(state: ProjectionState, cluster: str, namespace: str) -> tuple[Any, ...]:
    """What the log knows of ``cluster``'s DNS for multi-mesh: the observed kube-system
    DNS ConfigMaps and istiocoredns' address (facts, compared by identity in the memo)."""
    facts = state.facts.get(cluster, {})
    return (
        facts.get(f"serviceaddress Service/{namespace}/{ISTIOCOREDNS_SERVICE}"),
        *(facts.get(f"clusterdns ConfigMap/{clusterdns.DNS_NAMESPACE}/{n}") for n in clusterdns.DATA_KEYS),
    )


def _with_cluster_dns(
    objs: tuple[dict[str, Any], ...], observed: tuple[Any, ...], edits: tuple[clusterdns.DnsEdit, ...],
) -> tuple[dict[str, Any], ...]:
    """``objs`` plus the observed kube-system DNS ConfigMaps with the derived edits applied,
    and the observed ClusterIP on the desired istiocoredns Service (the desired one has
    none: the cluster allocates it) — what the analyzer's cluster-DNS check reads."""
    svc, *maps = observed
    by_name = {e.name: e for e in edits}
    out: list[dict[str, Any]] = []
    for o in objs:
        meta = o.get("metadata") or {}
        if (isinstance(svc, ev.ServiceAddressObserved) and svc.cluster_ip and o.get("kind") == "Service"
                and meta.get("name") == ISTIOCOREDNS_SERVICE):
            o = {**o, "spec": {**(o.get("spec") or {}), "clusterIP": svc.cluster_ip}}
        out.append(o)
    for f in maps:
        if isinstance(f, ev.ClusterDnsObserved):
            text = by_name[f.name].text if f.name in by_name else f.text
            data = {f.data_key: text} if f.present or f.name in by_name else {}
            out.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": f.name, "namespace": f.namespace}, "data": data})
    return tuple(out)


def mesh_view(state: ProjectionState, desired: Desired) -> MeshView:
    """The derived mesh as the analyzer sees it: every cluster's desired objects, its
    served API versions (``KubernetesApisObserved``; unknown until observed) and its
    nodes' localities. What ``federationd analyze --log`` and ``MeshAnalyzed`` check."""
    istio = managed_istio(state)
    master = istio.cluster if istio else "master"
    namespace = istio.namespace if istio else "istio-system"
    return MeshView(
        master=master, namespace=namespace,
        clusters=tuple(
            _cluster_view(state, name, "master" if name == master else "remote", desired.clusters[name],
                          namespace=namespace, dns=desired.dns.get(name, ()))
            for name in sorted(desired.clusters)
        ),
    )


_NO_DNS: Mapping[str, tuple[clusterdns.DnsEdit, ...]] = MappingProxyType({})


def _mesh_findings(
    state: ProjectionState, clusters: Mapping[str, ClusterDesired],
    dns: Mapping[str, tuple[clusterdns.DnsEdit, ...]] | None = None,
    touched: set[str] | None = None,
) -> tuple[Finding, ...]:
    """``analysis.analyze`` of the derived mesh, memoised so that a change re-runs what
    it can affect: one cluster's checks run again only when one of its objects other
    than the ``istio`` ConfigMap changed (``cluster_findings`` reads no meshNetworks,
    which every gateway change rewrites on every cluster); the checks across clusters
    run once per change. A cluster none of whose inputs moved costs a few identity
    tests (``_cluster_analysis``), so a change that touched one cluster does not walk
    every cluster's objects; in a derivation of the ``touched`` clusters only (the
    shared inputs the last derivation's), the others' rows are the last call's when
    their desired objects, DNS edits and facts are the same objects."""
    istio = managed_istio(state)
    master = istio.cluster if istio else "master"
    namespace = istio.namespace if istio else "istio-system"
    dns = dns or _NO_DNS
    rows = _memo.analysis_rows
    last = _memo.findings
    if touched is not None and last is not None and last[0] == (master, namespace) and last[1] is dns and (
        last[2] == clusters.keys()
    ):
        # When every cluster's row is the very row of the last call — a touched one's
        # analysis asked again (a memo hit when its objects did not change), the others'
        # inputs compared by identity —, so is every input of the result: a write
        # acknowledged on one of a hundred clusters costs identity tests, not a walk, a
        # sort and the checks across clusters.
        facts = state.facts
        for name, cd in clusters.items():
            d, f = dns.get(name, ()), facts.get(name)
            row = rows.get(name)
            if row is not None and row[0] is cd and row[1] is d and row[2] is f and name not in touched:
                continue
            if row is None or name not in touched:
                break
            got = _cluster_analysis(state, name, cd, master=master, namespace=namespace, dns=d)
            rows[name] = (cd, d, f, got)
            if got is not row[3]:
                break
        else:
            return last[3]
    per_cluster = []
    for name in sorted(clusters):
        cd, d, f = clusters[name], dns.get(name, ()), state.facts.get(name)
        row = rows.get(name)
        if touched is not None and name not in touched and row is not None and row[0] is cd and row[1] is d and row[2] is f:
            per_cluster.append(row[3])  # nothing of this cluster moved since the last call
            continue
        got = _cluster_analysis(state, name, cd, master=master, namespace=namespace, dns=d)
        rows[name] = (cd, d, f, got)
        per_cluster.append(got)
    view = MeshView(master=master, namespace=namespace, clusters=tuple(v for v, _ in per_cluster))
    found = [f for _, fs in per_cluster for f in fs]
    found += _memo.get(
        ("analysis-mesh", "*"), (view.master, view.namespace, *view.clusters),
        lambda: tuple(analysis.mesh_findings(view)),
    )
    result = tuple(analysis.ordered(found))
    _memo.findings = ((master, namespace), dns, set(clusters), result)
    return result


def _cluster_analysis(
    state: ProjectionState, name: str, cd: ClusterDesired, *, master: str, namespace: str,
    dns: tuple[clusterdns.DnsEdit, ...],
) -> tuple[ClusterView, tuple[Finding, ...]]:
    """One cluster's view and its own findings. Keyed first on what it reads, by
    identity (its desired objects, API versions, nodes and facts are shared with the
    last state when the change did not touch it); only when one of those moved are the
    finer inputs compared (``_cluster_findings`` ignores the ``istio`` ConfigMap)."""
    role = "master" if name == master else "remote"
    quick = (cd, role, master, namespace, dns, state.kubernetes.get(name), state.nodes.get(name), state.facts.get(name))

    def build() -> tuple[ClusterView, tuple[Finding, ...]]:
        c = _cluster_view(state, name, role, cd, namespace=namespace, dns=dns)
        cm_key = f"v1/ConfigMap/{namespace}/istio"
        # the objects' contents, not the objects: the same content derived from a newer
        # fact (a restarted pod the remote reaches through the gateway) is not re-checked
        keys = tuple(k for k in cd.objects if k != cm_key)
        inputs = (namespace, c.role, c.kubernetes_apis, _dns_inputs(state, name, namespace), dns,
                  keys, tuple(cd.objects[k].content_hash for k in keys))
        return c, _cluster_findings(MeshView(master=master, namespace=namespace, clusters=()), c, inputs)

    return _memo.get(("analysis-quick", name), quick, build)


def _cluster_findings(view: MeshView, c: ClusterView, inputs: tuple[Any, ...]) -> tuple[Finding, ...]:
    return _memo.get(("analysis", c.name), inputs, lambda: tuple(analysis.cluster_findings(view, c)))


def _mesh_analyzed(
    state: ProjectionState, istio: CustomResource, clusters: Mapping[str, ClusterDesired],
    dns: Mapping[str, tuple[clusterdns.DnsEdit, ...]], touched: set[str] | None = None,
) -> tuple[str, str, str]:
    """``(status, reason, message)`` of the managed Istio's ``MeshAnalyzed`` condition."""
    master = clusters.get(istio.cluster)
    if master is None or master.hold:
        return "Unknown", "NotDerived", "nothing is derived for the master cluster, so there is nothing to analyze"
    return analysis.condition(_mesh_findings(state, clusters, dns, touched))


# --- status -----------------------------------------------------------------------------------------


def _progress(
    state: ProjectionState, cluster: str, desired: ClusterDesired
) -> tuple[str, str, float, tuple[int, ...]]:
    """(status, message, time of the last contributing actuation, seqs) of one cluster's
    convergence, from the actuations and readiness in the log."""
    acts: Mapping[str, Actuation] = state.actuations.get(cluster, {})
    failed: list[str] = []
    pending: list[str] = []
    latest = 0.0
    seqs: list[int] = []
    any_applied = False
    for key, d in desired.objects.items():
        a = acts.get(key)
        if a is None:
            pending.append(key)
            continue
        any_applied = True
        seqs.append(a.seq)
        latest = max(latest, a.time)
        if not a.ok and a.failed_hash == d.content_hash:
            failed.append(f"{key}: {a.error}")
        elif a.content_hash != d.content_hash or a.drifted:
            pending.append(key)
    # applied once and no longer desired: its deletion (or release) is pending
    pending.extend(key for key in acts if key not in desired.objects)
    not_ready = []
    for key, d in desired.objects.items():
        kind = d.obj["kind"]
        if kind in WORKLOAD_KINDS:
            meta = d.obj["metadata"]
            wl = state.workloads.get(cluster, {}).get(f"{kind}/{meta.get('namespace', '')}/{meta['name']}")
            if wl is not None:
                seqs.append(wl.seq)
            waiting = _workload_waiting(kind, meta["name"], wl, acts.get(key))
            if waiting:
                not_ready.append(waiting)
    if failed:
        return RECONCILE_FAILED, "; ".join(sorted(failed))[:1000], latest, tuple(seqs)
    if pending:
        return (RECONCILING if any_applied else CREATED), "", latest, tuple(seqs)
    if not_ready:
        return RECONCILING, _waiting_message(not_ready), latest, tuple(seqs)
    return AVAILABLE, "", latest, tuple(seqs)


#: How many unready workloads a Reconciling message names before it counts the rest.
WAITING_NAMED = 5


def _workload_waiting(kind: str, name: str, wl: Workload | None, act: Actuation | None) -> str:
    """Why one desired workload is not ready yet ("" when it is).

    Readiness observed before the write that changed the workload says nothing about that
    write: the workload counts only once its controller has observed the generation our
    last write produced (``Actuation.generation``; 0 when unknown, e.g. a log written
    before generations were recorded). A write that did not change the spec keeps the
    generation, so the fact already in the state still satisfies it and status cannot be
    held in Reconciling by it. No fact at all means nobody has seen it ready."""
    if wl is None:
        return f"{kind} {name} (not observed yet)"
    needed = act.generation if act is not None else 0
    if wl.observed_generation < needed:
        return f"{kind} {name} (update not observed yet, {wl.available}/{wl.desired} ready)"
    if not wl.ready or wl.available < wl.desired:
        return f"{kind} {name} ({wl.available}/{wl.desired} ready)"
    return ""


def _waiting_message(not_ready: Sequence[str]) -> str:
    """``waiting for: A, B`` — sorted, and short: at most ``WAITING_NAMED`` names."""
    names = sorted(not_ready)
    shown = ", ".join(names[:WAITING_NAMED])
    rest = len(names) - WAITING_NAMED
    return f"waiting for: {shown}" + (f" and {rest} more" if rest > 0 else "")


def _status(
    *,
    state_value: str,
    message: str,
    gateways: list[str],
    generation: int,
    time: float,
    warnings: Sequence[str] = (),
    gateway_pending: str = "",
    version_remapped: str = "",
    mesh_analyzed: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    when = rfc3339(time)
    reconciled = v1beta1.Condition(
        type="Reconciled",
        status="True" if state_value == AVAILABLE else "False",
        reason=state_value,
        message=message,
        last_transition_time=when,
        observed_generation=generation,
    )
    available = v1beta1.Condition(
        type="Available",
        status="True" if state_value == AVAILABLE else "False",
        reason=state_value,
        message=message,
        last_transition_time=when,
        observed_generation=generation,
    )
    conditions = [reconciled, available]
    if warnings:
        # Legal but probably a typo: a rule naming a locality no node has. A warning,
        # not an error — the status stays Available.
        conditions.append(
            v1beta1.Condition(
                type="LocalitiesObserved",
                status="False",
                reason="UnknownLocality",
                message="; ".join(warnings)[:1000],
                last_transition_time=when,
                observed_generation=generation,
            )
        )
    if version_remapped:
        conditions.append(
            v1beta1.Condition(
                type="VersionAsRequested",
                status="False",
                reason="Remapped",
                message=version_remapped,
                last_transition_time=when,
                observed_generation=generation,
            )
        )
    if gateway_pending:
        # Shown, not waited for: the status value does not depend on it.
        conditions.append(
            v1beta1.Condition(
                type="GatewayAddressAssigned",
                status="False",
                reason="Pending",
                message=gateway_pending[:1000],
                last_transition_time=when,
                observed_generation=generation,
            )
        )
    if mesh_analyzed is not None:
        # What ``federationd analyze`` finds in the derived mesh (``projections.analysis``).
        analyzed, why, findings = mesh_analyzed
        conditions.append(
            v1beta1.Condition(
                type="MeshAnalyzed",
                status=analyzed,  # type: ignore[arg-type]
                reason=why,
                message=findings,
                last_transition_time=when,
                observed_generation=generation,
            )
        )
    st = v1beta1.Status(
        status=state_value,  # type: ignore[arg-type]
        gateway_address=gateways,
        error_message=message,
        conditions=conditions,
        observed_generation=generation,
    )
    out = v1beta1.to_builtins(st)
    assert isinstance(out, dict)
    return out


def _cr_status(
    state: ProjectionState,
    cr: CustomResource,
    cluster: str,
    desired: ClusterDesired | None,
    *,
    blocker: str = "",
    kind: str,
    mesh_analyzed: tuple[str, str, str] | None = None,
) -> DesiredStatus:
    """One CR's status, recomputed only when something it reads changed: the CR, its
    cluster's desired objects, actuations, workloads and gateway, the blocker, (an
    Istio with locality rules) the observed localities and (the managed Istio) the mesh
    analysis."""
    inputs = (
        cr, desired, blocker, state.actuations.get(cluster), state.workloads.get(cluster),
        gateway_addresses(state, cluster, cr.namespace), state.gateways.get(cluster),
        state.resolutions.get(cluster), bool(_remote_crs(state)),
        _localities(state) if kind == ISTIO_KIND else None, mesh_analyzed,
    )
    return _memo.get(
        ("status", cluster, kind, cr.namespace, cr.name), inputs,
        lambda: _cr_status_now(
            state, cr, cluster, desired, blocker=blocker, kind=kind, mesh_analyzed=mesh_analyzed
        ),
    )


def _cr_status_now(
    state: ProjectionState,
    cr: CustomResource,
    cluster: str,
    desired: ClusterDesired | None,
    *,
    blocker: str,
    kind: str,
    mesh_analyzed: tuple[str, str, str] | None = None,
) -> DesiredStatus:
    gateways, _, gw_seqs = gateway_addresses(state, cluster, cr.namespace)
    reasons: list[int] = [cr.seq, *gw_seqs]
    if cr.problem:
        value, message, when = RECONCILE_FAILED, cr.problem, cr.time
    elif blocker:
        value, message, when = RECONCILE_FAILED, blocker, cr.time
    elif desired is None or desired.hold:
        value = RECONCILE_FAILED
        message = desired.hold_reason if desired else "nothing to reconcile"
        when = cr.time
    else:
        value, message, latest, seqs = _progress(state, cluster, desired)
        reasons.extend(seqs)
        when = max(latest, cr.time)
    warnings: list[str] = []
    if kind == ISTIO_KIND and cr.good_spec is not None and cr.good_spec.get("localityLB"):
        spec = v1beta1.istio_spec(cr.good_spec, namespace=cr.namespace)
        observed, loc_seqs = _localities(state)
        issues = locality.unknown_localities(spec.locality_lb, observed)
        if issues:
            warnings = [str(i) for i in issues]
            reasons.extend(loc_seqs)
    pending = ""
    ingress = f"v1/Service/{cr.namespace}/{INGRESS_GATEWAY}"
    # Only a federated mesh announces gateways (single-cluster meshes have no networks).
    if not gateways and desired is not None and ingress in desired.objects and _remote_crs(state):
        pending = gateway_pending(state, cluster, cr.namespace)
    remapped = _version_remapped(cr) if kind == ISTIO_KIND else ""
    if value == AVAILABLE and not message:
        # Available, yet something the user should know: the ERROR column says so in
        # one line (``kubectl get``); the conditions carry each in full (``describe``).
        notes = [*([remapped] if remapped else []), *([pending] if pending else []), *warnings]
        if notes:
            message = ("warning: " + "; ".join(notes))[:300]
    return DesiredStatus(
        kind=kind,
        cluster=cr.cluster,
        namespace=cr.namespace,
        name=cr.name,
        status=_status(
            state_value=value,
            message=message,
            gateways=gateways,
            generation=cr.generation,
            time=when,
            warnings=warnings,
            gateway_pending=pending,
            version_remapped=remapped,
            mesh_analyzed=mesh_analyzed,
        ),
        reasons=tuple(sorted(set(reasons) - {0})),
    )


def _version_remapped(cr: CustomResource) -> str:
    """A ``spec.version`` whose images are another release's (``1.2.2`` runs the
    supported ``1.2.8``): said, since the user asked for something else."""
    if cr.good_spec is None:
        return ""
    asked = str(cr.good_spec.get("version") or "")
    if not asked:
        return ""
    runs = v1beta1.image_tag_for(asked)
    if runs == asked:
        return ""
    return f"spec.version {asked} runs the {runs} images (the supported release of {v1beta1.version_family(asked)})"


def _kubeconfig_of(state: ProjectionState) -> dict[str, Kubeconfig]:
    """remote → its kubeconfig (the first in key order, as a scan would find it)."""

    def index() -> dict[str, Kubeconfig]:
        out: dict[str, Kubeconfig] = {}
        for k in state.kubeconfigs.values():
            out.setdefault(k.remote, k)
        return out

    return _memo.get(("kubeconfigs", "*"), (state.kubeconfigs,), index)


def _remote_blocker(state: ProjectionState, remote: CustomResource) -> str:
    kc = _kubeconfig_of(state).get(remote.name)
    if kc is None:
        return (
            f"waiting for the kubeconfig Secret {remote.namespace}/{remote.name} "
            f"(or an Istio remote secret with data key {remote.name})"
        )
    if kc.problem:
        return f"kubeconfig rejected: {kc.problem}"
    c = state.clusters.get(remote.name)
    if c is not None and c.state == "unreachable":
        if c.reason.startswith("credential refused"):
            # it answered: reachable, but it does not let this kubeconfig in
            return f"cluster refused the kubeconfig's credential{c.reason.removeprefix('credential refused')}"
        return f"cluster unreachable: {c.reason}"
    return ""


#: ``ProjectionState`` maps keyed by cluster whose entry for one cluster is read only
#: for that cluster's objects and statuses — apart from the master's pods and gateway
#: (every remote's ``enabledServices``), the networks and the localities, which are
#: shared inputs of their own (``_shared_inputs``). ``seq``, ``leader`` and ``facts``
#: are not read by derive; every other field is a shared input.
PER_CLUSTER = (
    "clusters", "namespaces", "nodes", "gateways", "resolutions", "workloads", "pods", "actuations",
    "ca_secrets", "trust",
    # read only by the cluster's own render and analysis (a remote's discovery as it joins
    # derives that remote, not the fleet)
    "kubernetes",
)
_SHARED_FIELDS = tuple(
    f for f in ProjectionState.__struct_fields__ if f not in PER_CLUSTER and f not in ("seq", "leader", "facts")
)


def _shared_inputs(state: ProjectionState, istio: CustomResource | None) -> tuple[Any, ...]:
    """What more than one cluster's objects or statuses read."""
    out: list[Any] = [getattr(state, f) for f in _SHARED_FIELDS]
    out.append(istio)
    out.append(_localities(state))
    if istio is not None:
        out.append(_mesh_networks(state, istio.cluster, istio))
        out.append(gateway_addresses(state, istio.cluster, istio.namespace))
        out.append(state.pods.get(istio.cluster))
    return tuple(out)


def _touched(old: ProjectionState, new: ProjectionState) -> set[str]:
    """Clusters whose entry in a per-cluster map is not the same object in both states
    (the fold is copy-on-write: an untouched cluster's entry is shared)."""
    touched: set[str] = set()
    for f in PER_CLUSTER:
        touched |= changed_keys(getattr(old, f), getattr(new, f))
    return touched


def derive(state: ProjectionState) -> Desired:
    """The desired objects per cluster and the desired status of every CR.

    After a change that touched only some clusters' own facts (a gateway, a workload,
    an actuation) — every shared input the same objects as at the last derivation —
    only those clusters' objects and statuses are derived again; the others are the
    last derivation's, which the memo would have returned for them anyway. The result
    is the same as a full derivation's (tests compare with a cold memo)."""
    return Derivation(state).desired()


class Derivation:
    """``derive(state)`` in three steps, each taken once and reused by the next:
    ``master()`` the managed master's objects, ``clusters()`` every cluster's objects,
    ``desired()`` all of ``Desired`` (statuses, membership, DNS edits). The daemon hands
    each step's objects to the convergers before taking the next, so that a change's
    writes start while the rest is derived (the master's first: its ``meshNetworks`` is
    what a moved gateway waits for). Each step returns what ``desired()`` holds, the
    same objects."""

    def __init__(self, state: ProjectionState) -> None:
        self.state = state
        self.istio = managed_istio(state)
        self._shared = _shared_inputs(state, self.istio)
        last = _memo.last
        self._prev: Desired | None = None
        self._touched: set[str] = set()
        if last.desired is not None and last.state is not None and _same_inputs(last.shared, self._shared):
            self._prev, self._touched = last.desired, _touched(last.state, state)
        self._clusters: dict[str, ClusterDesired] | None = None
        self._desired: Desired | None = None

    def master(self) -> tuple[str, ClusterDesired] | None:
        """The managed master's name and objects (None: no managed Istio)."""
        istio = self.istio
        if istio is None:
            return None
        if self._clusters is not None:
            return istio.cluster, self._clusters[istio.cluster]
        if self._prev is not None and istio.cluster not in self._touched:
            return istio.cluster, self._prev.clusters[istio.cluster]
        return istio.cluster, _master_desired(self.state, istio)

    def clusters(self) -> Mapping[str, ClusterDesired]:
        return self._cluster_map()

    def _cluster_map(self) -> dict[str, ClusterDesired]:
        if self._clusters is None:
            if self._prev is not None:
                self._clusters = _clusters_touched(self.state, self.istio, self._prev, self._touched)
            else:
                self._clusters = _clusters_all(self.state, self.istio)
        return self._clusters

    def desired(self) -> Desired:
        if self._desired is None:
            clusters = self._cluster_map()
            if self._prev is not None:
                desired = _derive_touched(self.state, self.istio, self._prev, self._touched, clusters)
            else:
                desired = _derive_all(self.state, self.istio, clusters)
            last = _memo.last
            last.state, last.shared, last.desired = self.state, self._shared, desired
            self._desired = desired
        return self._desired


def _remotes_named(state: ProjectionState) -> dict[str, list[CustomResource]]:
    """name → the rendered RemoteIstios of that name, in ``_remote_crs`` order."""

    def index() -> dict[str, list[CustomResource]]:
        out: dict[str, list[CustomResource]] = {}
        for cr in _remote_crs(state):
            out.setdefault(cr.name, []).append(cr)
        return out

    return _memo.get(("remotes-named", "*"), (_remote_crs(state),), index)


def _all_remotes_named(state: ProjectionState) -> dict[str, list[CustomResource]]:
    """name → every RemoteIstio of that name, in key order."""

    def index() -> dict[str, list[CustomResource]]:
        out: dict[str, list[CustomResource]] = {}
        for _, cr in sorted(state.remote_istios.items()):
            out.setdefault(cr.name, []).append(cr)
        return out

    return _memo.get(("all-remotes-named", "*"), (state.remote_istios,), index)


def _clusters_touched(
    state: ProjectionState, istio: CustomResource | None, prev: Desired, touched: set[str]
) -> dict[str, ClusterDesired]:
    """``_clusters_all`` for a state whose shared inputs are ``prev``'s: the ``touched``
    clusters again, in the same order of precedence; the rest as in ``prev``."""
    clusters = dict(prev.clusters)
    if istio is not None:
        if istio.cluster in touched:
            clusters[istio.cluster] = _master_desired(state, istio)
        named = _remotes_named(state)
        for name in touched:
            for r in named.get(name, ()):
                if r.name != istio.cluster:
                    clusters[r.name] = _remote_desired(state, istio, r)
    return clusters


def _derive_touched(
    state: ProjectionState, istio: CustomResource | None, prev: Desired, touched: set[str],
    clusters: dict[str, ClusterDesired],
) -> Desired:
    """``_derive_all`` for a state whose shared inputs are ``prev``'s: the statuses of the
    ``touched`` clusters again; the rest as in ``prev``."""
    statuses = dict(prev.statuses)
    dns = _cluster_dns(state, istio)
    for _, cr in sorted(state.istios.items()):
        # An unmanaged Istio's status reads nothing per cluster; the managed one's
        # MeshAnalyzed condition reads every cluster (its checks across clusters).
        if cr.deleting or istio is None or cr is not istio:
            continue
        statuses[status_key(ISTIO_KIND, cr.namespace, cr.name)] = _cr_status(
            state, cr, cr.cluster, clusters.get(cr.cluster), kind=ISTIO_KIND,
            blocker=_trust_blocker(state, cr.cluster),
            mesh_analyzed=_mesh_analyzed(state, cr, clusters, dns, touched),
        )
    named = _remotes_named(state)
    for name in touched:
        for cr in named.get(name, ()):
            blocker = "" if istio is not None else "no Istio resource to federate with"
            blocker = blocker or _remote_blocker(state, cr) or _trust_blocker(state, cr.name)
            statuses[status_key(REMOTE_ISTIO_KIND, cr.namespace, cr.name)] = _cr_status(
                state, cr, cr.name, clusters.get(cr.name), blocker=blocker, kind=REMOTE_ISTIO_KIND
            )
    members = _membership(state, istio, clusters)
    every = _all_remotes_named(state)
    for name in touched:
        why = members.refused.get(name)
        if why is None:
            continue
        for cr in every.get(name, ()):
            if not cr.deleting:
                statuses[status_key(REMOTE_ISTIO_KIND, cr.namespace, cr.name)] = _cr_status(
                    state, cr, cr.name, None, blocker=why, kind=REMOTE_ISTIO_KIND
                )
    return Desired(seq=state.seq, clusters=clusters, statuses=statuses, membership=members, dns=dns)


def _clusters_all(state: ProjectionState, istio: CustomResource | None) -> dict[str, ClusterDesired]:
    clusters: dict[str, ClusterDesired] = {}
    if istio is not None:
        clusters[istio.cluster] = _master_desired(state, istio)
        for r in _remote_crs(state):
            if r.name == istio.cluster:
                continue
            clusters[r.name] = _remote_desired(state, istio, r)
    return dict(sorted(clusters.items()))


def _derive_all(state: ProjectionState, istio: CustomResource | None, clusters: dict[str, ClusterDesired]) -> Desired:
    statuses: dict[str, DesiredStatus] = {}
    dns = _cluster_dns(state, istio)
    for _, cr in sorted(state.istios.items()):
        if cr.deleting:
            continue
        if istio is not None and cr is not istio:
            msg = (
                f"only one Istio resource is managed; {istio.namespace}/{istio.name} is, "
                "this one is ignored"
            )
            statuses[status_key(ISTIO_KIND, cr.namespace, cr.name)] = DesiredStatus(
                kind=ISTIO_KIND,
                cluster=cr.cluster,
                namespace=cr.namespace,
                name=cr.name,
                status=_status(
                    state_value=UNMANAGED,
                    message=msg,
                    gateways=[],
                    generation=cr.generation,
                    time=cr.time,
                ),
                reasons=(cr.seq,),
            )
            continue
        statuses[status_key(ISTIO_KIND, cr.namespace, cr.name)] = _cr_status(
            state, cr, cr.cluster, clusters.get(cr.cluster), kind=ISTIO_KIND,
            blocker=_trust_blocker(state, cr.cluster),
            mesh_analyzed=_mesh_analyzed(state, cr, clusters, dns) if cr is istio else None,
        )
    for cr in _remote_crs(state):
        blocker = "" if istio is not None else "no Istio resource to federate with"
        blocker = blocker or _remote_blocker(state, cr) or _trust_blocker(state, cr.name)
        statuses[status_key(REMOTE_ISTIO_KIND, cr.namespace, cr.name)] = _cr_status(
            state, cr, cr.name, clusters.get(cr.name), blocker=blocker, kind=REMOTE_ISTIO_KIND
        )
    members = _membership(state, istio, clusters)
    for _, cr in sorted(state.remote_istios.items()):
        why = members.refused.get(cr.name)
        if why is not None and not cr.deleting:
            statuses[status_key(REMOTE_ISTIO_KIND, cr.namespace, cr.name)] = _cr_status(
                state, cr, cr.name, None, blocker=why, kind=REMOTE_ISTIO_KIND
            )
    _memo.retain(clusters.keys() | {st.cluster for st in statuses.values()} | {st.name for st in statuses.values()})
    return Desired(seq=state.seq, clusters=clusters, statuses=statuses, membership=members, dns=dns)


#: istiocoredns' Service (the operator's ``istiocoredns/service.go``)
ISTIOCOREDNS_SERVICE = "istiocoredns"


def _cluster_dns(state: ProjectionState, istio: CustomResource | None) -> dict[str, tuple[clusterdns.DnsEdit, ...]]:
    """The master's cluster DNS edits (the operator edits the DNS of the cluster that
    runs istiocoredns, and remotes run none): ``global`` forwarded to istiocoredns'
    ClusterIP while ``istioCoreDNS`` is enabled; federationd's entry removed when it is
    disabled or the Istio resource is gone (its Service, and so the address, go too)."""
    master = istio.cluster if istio is not None else state.master
    if not master:
        return {}
    facts = state.facts.get(master, {})
    namespace = istio.namespace if istio is not None else ""
    svc = facts.get(f"serviceaddress Service/{namespace}/{ISTIOCOREDNS_SERVICE}") if namespace else None
    observed_facts = tuple(facts.get(f"clusterdns ConfigMap/{clusterdns.DNS_NAMESPACE}/{n}") for n in clusterdns.DATA_KEYS)
    spec_in = (istio.good_spec, istio.namespace, istio.good_seq) if istio is not None else None

    def compute() -> dict[str, tuple[clusterdns.DnsEdit, ...]]:
        wanted = False
        if istio is not None and istio.good_spec is not None and not istio.deleting:
            wanted = bool(_istio_spec(istio).istio_core_dns.enabled)
        ip = svc.cluster_ip if isinstance(svc, ev.ServiceAddressObserved) else ""
        observed = {
            f.name: (f.text, f.present, 0)
            for f in observed_facts if isinstance(f, ev.ClusterDnsObserved)
        }
        edits = clusterdns.desired_edits(
            observed, cluster_ip=ip, wanted=wanted,
            reasons=(istio.good_seq,) if istio is not None else (),
        )
        return {master: edits} if edits else {}

    return _memo.get(("dns", "*"), (master, spec_in, svc, observed_facts), compute)


def _membership(state: ProjectionState, istio: CustomResource | None, clusters: Mapping[str, ClusterDesired]) -> Membership:
    """``membership.membership``, recomputed only when something it reads changed.

    Every actuation moves ``state.actuations``, but the membership reads the actuations
    of non-members only (is a leaving cluster still dirty, what is left on it) and — once
    a RemoteIstio is being deleted — the master's, against its desired objects. Those
    are the inputs, so a write on a member costs identity tests, not a recomputation."""
    live = _live_remote_names(state)
    master = istio.cluster if istio is not None else None
    acts = tuple(
        (c, a) for c, a in state.actuations.items() if c not in live and c != master and c != state.master
    )
    deleting = _any_deleting(state)
    inputs = (
        state.identities, state.remote_istios, state.istios, state.master, istio, state.kubeconfigs,
        state.clusters, state.departures, state.ca_secrets, state.namespaces, acts, deleting,
        # master_converged, read only for a RemoteIstio being deleted
        (state.actuations.get(master), clusters.get(master)) if deleting and master is not None else None,
    )
    return _memo.get(("membership", "*"), inputs, lambda: fleet.membership(state, istio=istio, desired=clusters))


def _live_remote_names(state: ProjectionState) -> frozenset[str]:
    return _memo.get(
        ("live-remotes", "*"), (state.remote_istios,),
        lambda: frozenset(cr.name for cr in state.remote_istios.values() if not cr.deleting),
    )


def _any_deleting(state: ProjectionState) -> bool:
    return _memo.get(
        ("deleting", "*"), (state.remote_istios,), lambda: any(cr.deleting for cr in state.remote_istios.values())
    )


def desired_hash(desired: Desired) -> str:
    """A stable hash of a ``Desired`` (objects, holds and statuses; not the seq).

    A hash tree: the hash of {cluster: hash of its ``ClusterDesired``, status key: hash
    of its ``DesiredStatus``}, each of those memoised on the value, and an object's
    content enters through its ``content_hash``. Equal desired states hash equal; a
    change costs the hashes of what changed."""
    last = _memo.hashes
    clusters, c_moved = _hash_each(desired.clusters, last.clusters, _cluster_hash)
    statuses, s_moved = _hash_each(desired.statuses, last.statuses, _status_hash)
    if c_moved or s_moved or not last.root or last.dns != desired.dns:
        body: dict[str, Any] = {
            "clusters": {k: v[1] for k, v in clusters.items()}, "statuses": {k: v[1] for k, v in statuses.items()}
        }
        if desired.dns:  # absent from the hash when empty
            body["dns"] = desired.dns
        last.root = robj.json_hash(body)
    last.clusters, last.statuses, last.dns = clusters, statuses, desired.dns
    return last.root


_V = TypeVar("_V")


def _hash_each(
    values: Mapping[str, _V], last: dict[str, tuple[Any, str]], fn: Callable[[_V], str]
) -> tuple[dict[str, tuple[Any, str]], bool]:
    moved = len(values) != len(last)
    out: dict[str, tuple[Any, str]] = {}
    for k, v in values.items():
        e = last.get(k)
        if e is None or e[0] is not v:
            e = (v, fn(v))
            moved = True
        out[k] = e
    return out, moved


def _cluster_hash(cd: ClusterDesired) -> str:
    h = hashlib.sha256(robj.canonical_json([cd.hold, cd.hold_reason]))
    for k, d in cd.objects.items():
        h.update(f"\n{k} {d.content_hash} {d.patch} {d.reasons}".encode())
    return h.hexdigest()


def _status_hash(st: DesiredStatus) -> str:
    return robj.json_hash(st)


def to_builtins(desired: Desired) -> dict[str, Any]:
    out = msgspec.to_builtins(desired)
    assert isinstance(out, dict)
    return out
