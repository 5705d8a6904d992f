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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from federationd import render
from federationd.api import v1beta1
from federationd.projections import locality
from federationd.projections import membership as fleet
from federationd.projections.membership import Membership, managed_istio
from federationd.projections.state import (
    Actuation,
    CustomResource,
    Namespace,
    ProjectionState,
    Workload,
)
from federationd.render import flat, injection
from federationd.render import objects as robj
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


def master_cluster(state: ProjectionState) -> str | None:
    cr = managed_istio(state)
    return cr.cluster if cr else None


# --- gateways ---------------------------------------------------------------------------


def gateway_addresses(state: ProjectionState, cluster: str, namespace: str) -> tuple[list[str], int, tuple[int, ...]]:
    """Addresses other networks reach ``cluster``'s ingress gateway on, its port, and the
    seqs of the facts used. LoadBalancer IPs first; hostnames through their resolutions;
    a NodePort gateway through its nodes' addresses and the node port."""
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
    port = gw.ports.get("tls", gw.ports.get("https", GATEWAY_PORT))
    if not addrs and gw.service_type == "NodePort":
        for node in sorted(state.nodes.get(cluster, {})):
            n = state.nodes[cluster][node]
            if n.addresses:
                # the node's most reachable address (ExternalIP before InternalIP)
                seqs.append(n.seq)
                addrs.append(n.addresses[0])
        port = gw.node_ports.get("tls", gw.node_ports.get("https", port))
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
    return sorted(
        (cr for cr in state.remote_istios.values() if not cr.deleting and cr.name not in refused),
        key=lambda cr: (cr.namespace, cr.name),
    )


def _mesh_networks(
    state: ProjectionState, master: str, istio: CustomResource
) -> tuple[tuple[MeshNetwork, ...], tuple[int, ...]]:
    """One network per cluster: the master's (announced with its own gateway, so remote →
    master traffic works) and one per RemoteIstio, named like it, once its cluster is
    identified (before, it may turn out to be a second name for a cluster already in
    the mesh, or never to connect at all). Single-cluster meshes have no networks."""
    remotes = [r for r in _remote_crs(state) if r.name in state.identities]
    if not remotes:
        return (), ()
    seqs: list[int] = []
    nets: list[MeshNetwork] = []
    addrs, port, s = gateway_addresses(state, master, istio.namespace)
    seqs.extend(s)
    nets.append(
        MeshNetwork(
            name=master,
            from_registry=(MASTER_REGISTRY,),
            gateways=tuple(NetworkGateway(address=a, port=port) for a in addrs),
        )
    )
    for r in remotes:
        seqs.extend((r.seq, state.identities[r.name].seq))
        addrs, port, s = gateway_addresses(state, r.name, r.namespace)
        seqs.extend(s)
        nets.append(
            MeshNetwork(
                name=r.name,
                from_registry=(r.name,),
                gateways=tuple(NetworkGateway(address=a, port=port) for a in addrs),
            )
        )
    return tuple(nets), tuple(seqs)


def _localities(state: ProjectionState) -> tuple[tuple[str, ...], tuple[int, ...]]:
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
    namespaces: Iterable[str], existing: Mapping[str, Namespace]
) -> list[dict[str, Any]]:
    """Injection labels as patches on the listed namespaces that exist (a namespace that
    does not exist yet is labelled when it appears: applying now would create it).
    A namespace labelled by hand (injection label without federationd's marker) is never
    touched."""
    out = []
    for ns in sorted(set(namespaces)):
        n = existing.get(ns)
        if n is None or n.terminating:
            continue
        if injection.INJECTION_LABEL in n.labels and injection.MARKER_LABEL not in n.labels:
            continue
        change = injection.NamespaceLabelChange(namespace=ns, labels=injection.owned_labels())
        out.append(change.apply_config())
    return out


def _render_master(
    spec: v1beta1.IstioSpec, *, namespace: str, facts: RenderFacts
) -> list[dict[str, Any]]:
    return render.render_master(spec, namespace=namespace, facts=facts)


def _render_remote(
    spec: v1beta1.IstioSpec,
    remote: v1beta1.RemoteIstioSpec,
    *,
    namespace: str,
    facts: RenderFacts,
) -> list[dict[str, Any]]:
    return render.render_remote(spec, remote, namespace=namespace, facts=facts)


# --- derive -------------------------------------------------------------------------------------------


def _desired_objects(
    rendered: Iterable[dict[str, Any]],
    patches: Iterable[dict[str, Any]],
    *,
    base: tuple[int, ...],
    extra: Mapping[str, tuple[int, ...]],
    ns_seqs: Mapping[str, int],
) -> dict[str, DesiredObject]:
    out: dict[str, DesiredObject] = {}
    for o in rendered:
        key = object_key(o)
        reasons = tuple(sorted(set(base + extra.get(o["kind"] + "/" + o["metadata"]["name"], ()))))
        out[key] = DesiredObject(key=key, obj=o, content_hash=robj.content_hash(o), reasons=reasons)
    for o in patches:
        key = object_key(o)
        name = o["metadata"]["name"]
        reasons = tuple(sorted({*base, ns_seqs.get(name, 0)} - {0}))
        out[key] = DesiredObject(
            key=key, obj=o, content_hash=robj.content_hash(o), reasons=reasons, patch=True
        )
    return dict(sorted(out.items()))


def _master_desired(
    state: ProjectionState, istio: CustomResource
) -> ClusterDesired:
    master = istio.cluster
    if istio.good_spec is None:
        return ClusterDesired(hold=True, hold_reason=istio.problem)
    spec = v1beta1.istio_spec(istio.good_spec, namespace=istio.namespace)
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
    )
    try:
        rendered = _render_master(spec, namespace=istio.namespace, facts=facts)
    except render.RenderError as e:
        return ClusterDesired(hold=True, hold_reason=str(e))
    except Exception as e:  # a render bug must hold the cluster, not wipe it
        return ClusterDesired(hold=True, hold_reason=f"render failed: {type(e).__name__}: {e}")
    existing = state.namespaces.get(master, {})
    patches = _injection_patches(spec.auto_injection_namespaces, existing)
    return ClusterDesired(
        objects=_desired_objects(
            rendered,
            patches,
            base=(istio.good_seq,),
            extra={"ConfigMap/istio": net_seqs + loc_seqs, CITADEL_KEY: ca_seqs},
            ns_seqs={n: existing[n].seq for n in existing},
        )
    )


def _remote_desired(
    state: ProjectionState, istio: CustomResource, remote: CustomResource
) -> ClusterDesired:
    if istio.good_spec is None:
        return ClusterDesired(hold=True, hold_reason=istio.problem)
    if remote.good_spec is None:
        return ClusterDesired(hold=True, hold_reason=remote.problem)
    spec = v1beta1.istio_spec(istio.good_spec, namespace=istio.namespace)
    rspec = v1beta1.remote_istio_spec(remote.good_spec, namespace=remote.namespace)
    networks, _ = _mesh_networks(state, istio.cluster, istio)
    localities, _ = _localities(state)
    ca_name, ca_fingerprint, ca_seqs = _ca_facts(state, remote.name, remote.namespace)
    facts = RenderFacts(
        cluster=remote.name,
        role="remote",
        network=remote.name,
        mesh_networks=networks,
        localities=localities,
        ca_secret_name=ca_name,
        ca_fingerprint=ca_fingerprint,
    )
    try:
        rendered = _render_remote(spec, rspec, namespace=remote.namespace, facts=facts)
    except render.RenderError as e:
        return ClusterDesired(hold=True, hold_reason=str(e))
    except Exception as e:
        return ClusterDesired(hold=True, hold_reason=f"render failed: {type(e).__name__}: {e}")
    try:
        flat_objs, flat_seqs = _enabled_services(state, istio, spec, rspec, namespace=remote.namespace)
    except flat.EnabledServiceError as e:
        return ClusterDesired(hold=True, hold_reason=f"enabledServices: {e}")
    clash = _name_clash(rendered, flat_objs)
    if clash:
        return ClusterDesired(hold=True, hold_reason=clash)
    existing = state.namespaces.get(remote.name, {})
    patches = _injection_patches(rspec.auto_injection_namespaces, existing)
    return ClusterDesired(
        objects=_desired_objects(
            [*rendered, *flat_objs],
            patches,
            base=(istio.good_seq, remote.good_seq),
            extra={**flat_seqs, CITADEL_KEY: ca_seqs},
            ns_seqs={n: existing[n].seq for n in existing},
        )
    )


# --- flat network (seed 000) ------------------------------------------------------------------


def _enabled_services(
    state: ProjectionState,
    istio: CustomResource,
    spec: v1beta1.IstioSpec,
    rspec: v1beta1.RemoteIstioSpec,
    *,
    namespace: str,
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, ...]]]:
    """The remote's selector-less Services + Endpoints for ``enabledServices``, and the
    seqs each was derived from (keyed ``Kind/name``, as ``_desired_objects`` reads them).

    The addresses are the master's ready pod IPs of the service of that name in the
    master Istio's namespace (its Endpoints, observed as ``PodAddressesObserved``), or in
    gateway mode — the master Istio has ``meshExpansion``, the source's rule: the master
    is reached only through its ingress gateway — the master's gateway addresses."""
    if not rspec.enabled_services:
        return [], {}
    master_pods = state.pods.get(istio.cluster, {})
    observed: dict[str, flat.ServiceAddresses] = {}
    seqs: dict[str, tuple[int, ...]] = {}
    gw_addrs, _, gw_seqs = gateway_addresses(state, istio.cluster, istio.namespace)
    for svc in rspec.enabled_services:
        pa = master_pods.get(f"{istio.namespace}/{svc.name}")
        used: tuple[int, ...] = gw_seqs if spec.mesh_expansion else ()
        if pa is not None:
            observed[svc.name] = flat.ServiceAddresses(ips=pa.ips, ports=dict(pa.ports))
            used = (*used, pa.seq)
        seqs[f"Service/{svc.name}"] = seqs[f"Endpoints/{svc.name}"] = used
    objs = flat.render_enabled_services(
        rspec,
        namespace=namespace,
        observed=observed,
        gateway_addresses=gw_addrs,
        gateway_mode=spec.mesh_expansion,
    )
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
        ),
        reasons=tuple(sorted(set(reasons) - {0})),
    )


def _remote_blocker(state: ProjectionState, remote: CustomResource) -> str:
    kc = next(
        (k for k in state.kubeconfigs.values() if k.remote == remote.name),
        None,
    )
    if kc is None:
        return f"waiting for the kubeconfig Secret {remote.namespace}/{remote.name}"
    if kc.problem:
        return f"kubeconfig rejected: {kc.problem}"
    c = state.clusters.get(remote.name)
    if c is not None and c.state == "unreachable":
        return f"cluster unreachable: {c.reason}"
    return ""


def derive(state: ProjectionState) -> Desired:
    """The desired objects per cluster and the desired status of every CR."""
    clusters: dict[str, ClusterDesired] = {}
    statuses: dict[str, DesiredStatus] = {}
    istio = managed_istio(state)
    if istio is not None:
        clusters[istio.cluster] = _master_desired(state, istio)
        for r in _remote_crs(state):
            if r.name == istio.cluster:
                continue
            clusters[r.name] = _remote_desired(state, istio, r)
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
        )
    for cr in _remote_crs(state):
        blocker = "" if istio is not None else "no Istio resource to federate with"
        blocker = blocker or _remote_blocker(state, cr) or _trust_blocker(state, cr.name)
        statuses[status_key(REMOTE_ISTIO_KIND, cr.namespace, cr.name)] = _cr_status(
            state, cr, cr.name, clusters.get(cr.name), blocker=blocker, kind=REMOTE_ISTIO_KIND
        )
    members = fleet.membership(state, istio=istio, desired=clusters)
    for _, cr in sorted(state.remote_istios.items()):
        why = members.refused.get(cr.name)
        if why is not None and not cr.deleting:
            statuses[status_key(REMOTE_ISTIO_KIND, cr.namespace, cr.name)] = _cr_status(
                state, cr, cr.name, None, blocker=why, kind=REMOTE_ISTIO_KIND
            )
    return Desired(
        seq=state.seq, clusters=dict(sorted(clusters.items())), statuses=statuses, membership=members
    )


def desired_hash(desired: Desired) -> str:
    """A stable hash of a ``Desired`` (objects, holds and statuses; not the seq)."""
    body = msgspec.to_builtins(msgspec.structs.replace(desired, seq=0))
    return robj.content_hash(body)


def to_builtins(desired: Desired) -> dict[str, Any]:
    out = msgspec.to_builtins(desired)
    assert isinstance(out, dict)
    return out
