"""The mesh analyzer's checks: does this multi-cluster mesh carry traffic on real clusters?

The simulated fleet cannot answer that (it does not run Istio), and a manifest a cluster
accepts can still leave a mesh dead: an injector without the file its version reads, a
mixer dialling galley without TLS, a gateway port nobody listens on. These checks look at
the objects of every cluster of a mesh against the facts of Istio 1.1/1.2 and the source
operator (the same facts ``tests/render/test_upstream_facts.py`` pins), and name the
objects and the fix for each finding.

They are pure functions of a :class:`MeshView` — each cluster's objects (as derived,
replayed from an event log, or listed from live clusters) plus the facts the objects do
not carry (served API versions, node localities) — and live here, among the
projections, so that one implementation serves two readers: ``federationd analyze``
(:mod:`federationd.analyze`, which builds the view from a log or from live clusters and
prints it) and the running daemon, whose derivation reports the same findings as the
``MeshAnalyzed`` condition of the Istio CR (``projections.derive``; no API call: the
view is the derived state). The checks are split into those of one cluster
(``cluster_findings``) and those across clusters (``mesh_findings``) so that a
derivation re-runs only the checks whose cluster changed.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec
import yaml

from federationd.projections.clusterdns import forward_plugin
from federationd.render import mesh as mesh_render

Obj = dict[str, Any]
Severity = Literal["error", "warning", "info"]

__all__ = [
    "ClusterView",
    "Finding",
    "MeshView",
    "analyze",
    "cluster_findings",
    "condition",
    "mesh_findings",
    "ordered",
    "ref",
]


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One problem: which check, where, what is wrong and how to fix it."""

    severity: Severity
    check: str
    clusters: tuple[str, ...]
    objects: tuple[str, ...]
    message: str
    fix: str


class ClusterView(msgspec.Struct, frozen=True, kw_only=True):
    """One cluster's objects and the facts about it the objects do not carry.

    ``kubernetes_apis`` are the ``group/version`` strings the cluster serves; ``None``
    means not known (then the API checks say so instead of guessing). ``localities`` are
    its nodes' ``region/zone`` pairs."""

    name: str
    role: Literal["master", "remote"]
    objects: tuple[Obj, ...] = ()
    kubernetes_apis: tuple[str, ...] | None = None
    localities: tuple[str, ...] = ()


class MeshView(msgspec.Struct, frozen=True, kw_only=True):
    master: str
    namespace: str = "istio-system"
    clusters: tuple[ClusterView, ...] = ()

    def cluster(self, name: str) -> ClusterView | None:
        return next((c for c in self.clusters if c.name == name), None)


# --- object helpers -------------------------------------------------------------------------


def ref(o: Mapping[str, Any]) -> str:
    meta = o.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{o.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


def _find(c: ClusterView, kind: str, name: str, namespace: str | None = None) -> Obj | None:
    for o in c.objects:
        meta = o.get("metadata") or {}
        if o.get("kind") == kind and meta.get("name") == name and (namespace is None or meta.get("namespace", "") == namespace):
            return o
    return None


def _containers(o: Obj | None) -> list[Obj]:
    if o is None:
        return []
    spec = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
    return list(spec.get("containers") or [])


def _volumes(o: Obj | None) -> list[Obj]:
    if o is None:
        return []
    return list((((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or [])


def _args(o: Obj | None, container: str | None = None) -> list[str]:
    out: list[str] = []
    for ct in _containers(o):
        if container is None or ct.get("name") == container:
            out += [str(a) for a in (ct.get("args") or []) + (ct.get("command") or [])]
    return out


_TAG = re.compile(r":(\d+)\.(\d+)(?:\.\d+)?")


def _family(c: ClusterView, ns: str) -> str:
    """The Istio family a cluster runs, from its injector's (else citadel's) image tag."""
    for name in ("istio-sidecar-injector", "istio-citadel", "istio-pilot"):
        for ct in _containers(_find(c, "Deployment", name, ns)):
            m = _TAG.search(str(ct.get("image", "")))
            if m:
                return f"{m.group(1)}.{m.group(2)}"
    return ""


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=16)
def _load(text: str) -> Any:
    """``yaml.safe_load`` through LibYAML when present, once per text: a derivation
    reads the master's mesh config in three checks after each gateway change, and every
    cluster of one release carries the same injector config. The result is shared:
    callers only read it."""
    return yaml.load(text, Loader=_LOADER)  # a safe loader: plain data only


def _mesh_config(c: ClusterView, ns: str) -> tuple[Obj, Obj]:
    cm = _find(c, "ConfigMap", "istio", ns)
    data = (cm or {}).get("data") or {}
    mesh = _load(data.get("mesh") or "") or {}
    text = data.get("meshNetworks") or ""
    # the document federationd rendered that text from, when it did (not parsed again)
    networks = mesh_render.parsed_networks(text) or _load(text) or {}
    return (mesh if isinstance(mesh, dict) else {}), (networks if isinstance(networks, dict) else {})


def _cps(mesh: Obj) -> bool:
    return str(mesh.get("controlPlaneAuthPolicy") or (mesh.get("defaultConfig") or {}).get("controlPlaneAuthPolicy")) == "MUTUAL_TLS"


# --- checks -------------------------------------------------------------------------------------


def _injector(view: MeshView, c: ClusterView) -> list[Finding]:
    """Defects 1, 2, 8 (the template's SDS mount) and 9 (dnsConfig)."""
    ns = view.namespace
    cm = _find(c, "ConfigMap", "istio-sidecar-injector", ns)
    dep = _find(c, "Deployment", "istio-sidecar-injector", ns)
    if cm is None or dep is None:
        return []
    out: list[Finding] = []
    family = _family(c, ns)
    data = cm.get("data") or {}
    objs = (ref(cm), ref(dep))
    if family == "1.2":
        vol = next((v for v in _volumes(dep) if v.get("name") == "inject-config"), {})
        items = (vol.get("configMap") or {}).get("items")
        mounted = {i.get("key") for i in items} if items is not None else set(data)
        missing = [k for k in ("config", "values") if k not in data or k not in mounted]
        if missing:
            out.append(Finding(
                severity="error", check="injector-configmap-keys", clusters=(c.name,), objects=objs,
                message=f"the 1.2 sidecar injector reads /etc/istio/inject/{{config,values}} and exits without "
                        f"{', '.join(missing)}; with failurePolicy Fail every pod in an injection-enabled namespace is rejected",
                fix="add the `values` key (the Helm values JSON) to the ConfigMap and mount both keys in the inject-config volume",
            ))
    text = _load(data.get("config") or "") or {}
    template = str(text.get("template", "")) if isinstance(text, dict) else ""
    if family == "1.1" and "{{" in template:
        out.append(Finding(
            severity="error", check="injection-template-delimiters", clusters=(c.name,), objects=(ref(cm),),
            message="the 1.1 injector parses its template with [[ ]] delimiters; {{ }} actions are never evaluated and pods are denied",
            fix="write the template's actions as [[ ... ]] for Istio 1.1",
        ))
    if family == "1.2" and "[[" in template and "{{" not in template:
        out.append(Finding(
            severity="error", check="injection-template-delimiters", clusters=(c.name,), objects=(ref(cm),),
            message="the 1.2 injector parses its template with {{ }}; [[ ]] actions are copied into pods verbatim",
            fix="write the template's actions as {{ ... }} for Istio 1.2",
        ))
    if "sds-uds-path" in template or "sdsudspath" in template:
        if "type: Socket" in template or "/var/run/sds/uds_path" in template.replace("unix:/var/run/sds/uds_path", ""):
            out.append(Finding(
                severity="error", check="sds-mount", clusters=(c.name,), objects=(ref(cm),),
                message="injected proxies mount the node agent's socket file; it is re-created when the node agent restarts "
                        "and the pod keeps the deleted one",
                fix="mount the directory /var/run/sds (hostPath /var/run/sds) instead of the socket",
            ))
    multimesh = _find(c, "Gateway", "istio-multicluster-ingressgateway", ns) is not None or _find(
        c, "Gateway", "istio-multicluster-egressgateway", ns) is not None
    if multimesh and not re.search(r"dnsConfig:\s*\n\s*searches:[^\n]*\n\s*- \"?global", template):
        out.append(Finding(
            severity="error", check="multimesh-dns-search", clusters=(c.name,), objects=(ref(cm),),
            message="multi-mesh is on but injected pods get no `global` DNS search domains; NAME.NS.global does not resolve",
            fix="add dnsConfig.searches [global, <namespace>.global] to the injection template",
        ))
    return out


def _mixer_galley(view: MeshView, c: ClusterView) -> list[Finding]:
    """Defect 3: the config-store scheme must match galley's MCP transport."""
    ns = view.namespace
    galley = _find(c, "Deployment", "istio-galley", ns)
    out: list[Finding] = []
    if galley is None:
        return out
    gargs = _args(galley)
    insecure = "--insecure=true" in gargs
    for name in ("istio-policy", "istio-telemetry"):
        dep = _find(c, "Deployment", name, ns)
        url = next((a.split("=", 1)[1] for a in _args(dep, "mixer") if a.startswith("--configStoreURL=")), "")
        if dep is None or not url.startswith(("mcp://", "mcps://")):
            continue
        if url.startswith("mcp://") and not insecure:
            out.append(Finding(
                severity="error", check="mixer-config-store", clusters=(c.name,), objects=(ref(dep), ref(galley)),
                message=f"{name} dials galley with plain {url} but galley serves MCP over TLS (control-plane security); "
                        "mixer cannot read its configuration and crash-loops",
                fix="use --configStoreURL=mcps://istio-galley.<ns>.svc:9901 (telemetry also with --certFile/--keyFile/--caCertFile)",
            ))
        if url.startswith("mcps://") and insecure:
            out.append(Finding(
                severity="error", check="mixer-config-store", clusters=(c.name,), objects=(ref(dep), ref(galley)),
                message=f"{name} dials galley over TLS ({url}) but galley runs with --insecure=true",
                fix="use mcp:// without control-plane security, or turn galley's --insecure off",
            ))
    return out


_UPSTREAM_API = {
    "HorizontalPodAutoscaler": "autoscaling/v2beta1",
    "PodDisruptionBudget": "policy/v1beta1",
    "MutatingWebhookConfiguration": "admissionregistration.k8s.io/v1beta1",
    "CustomResourceDefinition": "apiextensions.k8s.io/v1beta1",
}


def _apis(view: MeshView, c: ClusterView) -> list[Finding]:
    """Defect 4: objects in API versions the cluster does not serve, and webhooks whose
    caBundle the 1.1/1.2 binaries cannot patch."""
    hooks = [o for o in c.objects if o.get("kind") == "MutatingWebhookConfiguration"]
    if not c.objects:
        return []
    if c.kubernetes_apis is None:
        return [Finding(
            severity="info", check="kubernetes-api-versions", clusters=(c.name,), objects=(),
            message="the cluster's served API versions are not known here; webhook caBundle patching was not verified",
            fix="analyze the live cluster to check its discovery",
        )]
    served = set(c.kubernetes_apis)
    out: list[Finding] = []
    # Built-in groups only: Istio's own kinds are served by the CRDs federationd installs.
    unserved = sorted(
        ref(o) for o in c.objects
        if not str(o.get("apiVersion", "")).split("/")[0].endswith("istio.io")
        and "banzaicloud" not in str(o.get("apiVersion", ""))
        and o.get("apiVersion") not in served
    )
    if unserved:
        out.append(Finding(
            severity="error", check="kubernetes-api-versions", clusters=(c.name,), objects=tuple(unserved),
            message="objects in API versions this cluster does not serve",
            fix="render them in the version the cluster serves (the upstream v1beta1 versions on Kubernetes ≤ 1.15)",
        ))
    if "admissionregistration.k8s.io/v1beta1" not in served and hooks:
        out.append(Finding(
            severity="error", check="webhook-cabundle", clusters=(c.name,), objects=tuple(ref(h) for h in hooks),
            message="Istio 1.1/1.2's injector and galley patch their webhook caBundle through admissionregistration.k8s.io/v1beta1, "
                    "which this cluster does not serve (removed in Kubernetes 1.22)",
            fix="run this Istio release on a Kubernetes version that serves admissionregistration.k8s.io/v1beta1 (≤ 1.21)",
        ))
    return out


def _ingress_ports(svc: Obj | None) -> set[int]:
    """The ports (and node ports) the ingress gateway Service ``svc`` exposes."""
    ports: set[int] = set()
    for p in ((svc or {}).get("spec") or {}).get("ports") or []:
        ports.add(int(p.get("port", 0)))
        if p.get("nodePort"):
            ports.add(int(p["nodePort"]))
    return ports


def _target_port(svc: Obj | None, announced: int) -> int:
    """The gateway listener behind an announced (service or node) port of ``svc``."""
    for p in ((svc or {}).get("spec") or {}).get("ports") or []:
        if announced in (p.get("port"), p.get("nodePort")):
            tp = p.get("targetPort", p.get("port"))
            return int(tp) if isinstance(tp, int) else int(p.get("port", 0))
    return announced


def _passthrough_local(c: ClusterView, ns: str) -> dict[int, str]:
    """Gateway ports whose server passes ``*.local`` through by SNI → the Gateway's ref."""
    out: dict[int, str] = {}
    for o in c.objects:
        if o.get("kind") != "Gateway" or (o.get("metadata") or {}).get("namespace", "") != ns:
            continue
        for s in (o.get("spec") or {}).get("servers") or []:
            if (s.get("tls") or {}).get("mode") == "AUTO_PASSTHROUGH" and "*.local" in (s.get("hosts") or []):
                out[int((s.get("port") or {}).get("number", 0))] = ref(o)
    return out


def _labelled_registries(view: MeshView) -> set[str]:
    """The registries a Secret labelled ``istio/multiCluster: "true"`` on the master
    names (its data keys), listed once per analysis rather than once per network."""
    master = view.cluster(view.master)
    if master is None:
        return set()
    out: set[str] = set()
    for o in master.objects:
        if o.get("kind") != "Secret":
            continue
        labels = (o.get("metadata") or {}).get("labels") or {}
        if str(labels.get("istio/multiCluster", "")).lower() != "true":
            continue
        keys = set((o.get("data") or {}).keys())
        # A desired-state patch carries no data: the source format's key is its name.
        out |= keys or {str((o.get("metadata") or {}).get("name"))}
    return out


def _cross_network(view: MeshView) -> list[Finding]:
    """Defects 5 and 7: announced gateway address:port → a *.local pass-through listener
    on that network's cluster; each remote registry → a labelled kubeconfig Secret."""
    master = view.cluster(view.master)
    if master is None:
        return []
    ns = view.namespace
    cm = _find(master, "ConfigMap", "istio", ns)
    _, networks = _mesh_config(master, ns)
    out: list[Finding] = []
    labelled = _labelled_registries(view)
    by_name = {c.name: c for c in view.clusters}
    #: cluster → (its *.local pass-through listeners, its ingress gateway Service), read once
    gateways: dict[str, tuple[dict[int, str], Obj | None]] = {}
    for net_name, net in sorted((networks.get("networks") or {}).items()):
        cluster = by_name.get(net_name) or (master if any(
            e.get("fromRegistry") == "Kubernetes" for e in net.get("endpoints") or []) else None)
        registries = [e.get("fromRegistry") for e in net.get("endpoints") or [] if e.get("fromRegistry")]
        for reg in registries:
            if reg == "Kubernetes" or reg == view.master:
                continue
            if reg not in labelled:
                out.append(Finding(
                    severity="error", check="remote-registry-secret", clusters=(view.master, str(reg)),
                    objects=(ref(cm) if cm else "ConfigMap/istio",),
                    message=f"meshNetworks names registry {reg!r} but no Secret labelled istio/multiCluster=\"true\" "
                            f"with data key {reg!r} exists in {ns}: pilot never reads that cluster's endpoints",
                    fix=f"label the kubeconfig Secret of {reg}: kubectl -n {ns} label secret {reg} istio/multiCluster=true",
                ))
        if cluster is None:
            continue
        if cluster.name not in gateways:
            gateways[cluster.name] = (_passthrough_local(cluster, ns), _find(cluster, "Service", "istio-ingressgateway", ns))
        listeners, svc = gateways[cluster.name]
        for gw in net.get("gateways") or []:
            port = int(gw.get("port", 0))
            target = _target_port(svc, port)
            if port not in _ingress_ports(svc):
                out.append(Finding(
                    severity="error", check="cross-network-port", clusters=(view.master, cluster.name),
                    objects=(ref(cm) if cm else "ConfigMap/istio", f"Service/{ns}/istio-ingressgateway"),
                    message=f"network {net_name} announces {gw.get('address')}:{port}, a port its ingress gateway Service does not expose",
                    fix="announce the gateway's https port (443, or its node port for a NodePort gateway)",
                ))
            elif target not in listeners:
                out.append(Finding(
                    severity="error", check="cross-network-port", clusters=(view.master, cluster.name),
                    objects=(ref(cm) if cm else "ConfigMap/istio", *sorted(set(listeners.values()))),
                    message=f"network {net_name} announces port {port} (listener {target}) but the only *.local AUTO_PASSTHROUGH "
                            f"listeners on {cluster.name} are on {sorted(listeners) or 'no port'}: cross-network traffic is dropped",
                    fix="announce the port of cluster-aware-gateway's *.local AUTO_PASSTHROUGH server (443), as the operator does",
                ))
    return out


def _control_plane_reach(view: MeshView) -> list[Finding]:
    """Defect 6: remote proxies reach pilot (15011) and mixer (15004) through the
    master's mesh-expansion gateway under the security settings in force."""
    master = view.cluster(view.master)
    if master is None or not any(c.role == "remote" for c in view.clusters):
        return []
    ns = view.namespace
    gw = _find(master, "Gateway", "meshexpansion-gateway", ns)
    if gw is None:
        return []
    mesh, _ = _mesh_config(master, ns)
    out: list[Finding] = []
    servers = {int((s.get("port") or {}).get("number", 0)): s for s in (gw.get("spec") or {}).get("servers") or []}
    mixer = servers.get(15004)
    has_mixer = _find(master, "Deployment", "istio-policy", ns) is not None or _find(master, "Deployment", "istio-telemetry", ns) is not None
    if has_mixer and (mixer is None or (mixer.get("tls") or {}).get("mode") != "AUTO_PASSTHROUGH"):
        out.append(Finding(
            severity="error", check="mixer-through-gateway", clusters=(view.master,), objects=(ref(gw),),
            message="port 15004 of the mesh-expansion gateway does not pass mixer's SNI through (tls-mixer AUTO_PASSTHROUGH): "
                    "remote sidecars' policy checks and reports fail",
            fix="make the 15004 server `name: tls-mixer, protocol: TLS, tls.mode: AUTO_PASSTHROUGH`",
        ))
    if _cps(mesh):
        dr = _find(master, "DestinationRule", "meshexpansion-dr-pilot", ns)
        ok = dr is not None and any(
            (p.get("port") or {}).get("number") == 15011 and (p.get("tls") or {}).get("mode") == "DISABLE"
            for p in ((dr.get("spec") or {}).get("trafficPolicy") or {}).get("portLevelSettings") or [])
        if not ok:
            out.append(Finding(
                severity="error", check="pilot-through-gateway", clusters=(view.master,),
                objects=(ref(gw), f"DestinationRule/{ns}/meshexpansion-dr-pilot"),
                message="with control-plane security the gateway wraps remote proxies' mTLS to pilot:15011 in its own; "
                        "remote proxies get no xDS",
                fix="add DestinationRule meshexpansion-dr-pilot (host istio-pilot, port 15011 tls.mode DISABLE)",
            ))
    return out


#: What each component's binary reads: (ClusterRole name prefix, group, resource, verb).
_RBAC_NEEDS = (
    ("istio-nodeagent", "", "configmaps", "get"),
    ("istio-sidecar-injector", "", "configmaps", "get"),
    ("istio-sidecar-injector", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch"),
    ("istio-galley", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "update"),
    ("istio-pilot", "", "endpoints", "watch"),
    ("istio-pilot", "", "secrets", "watch"),
    ("istio-citadel", "", "secrets", "create"),
    ("istio-mixer", "", "pods", "watch"),
)


def _allows(rules: Iterable[Obj], group: str, resource: str, verb: str) -> bool:
    for r in rules:
        groups = r.get("apiGroups") or []
        res = r.get("resources") or []
        verbs = r.get("verbs") or []
        if (group in groups or "*" in groups) and (resource in res or "*" in res) and (verb in verbs or "*" in verbs):
            return True
    return False


def _rbac(view: MeshView, c: ClusterView) -> list[Finding]:
    """Defect 8 (and its kin): each component's ClusterRole covers what it reads."""
    out: list[Finding] = []
    for prefix, group, resource, verb in _RBAC_NEEDS:
        role = _find(c, "ClusterRole", f"{prefix}-{view.namespace}")
        if role is None:
            continue
        if not _allows(role.get("rules") or [], group, resource, verb):
            out.append(Finding(
                severity="error", check="component-rbac", clusters=(c.name,), objects=(ref(role),),
                message=f"{prefix} needs {verb} on {resource}{'.' + group if group else ''} and its ClusterRole does not grant it",
                fix=f"add apiGroups [{group!r}] resources [{resource}] verbs [{verb}] to {ref(role)}",
            ))
    return out


def _multimesh(view: MeshView, c: ClusterView) -> list[Finding]:
    """Defect 9: the .global rewrite on the ingress gateway and cluster DNS for .global."""
    ns = view.namespace
    gw = _find(c, "Gateway", "istio-multicluster-ingressgateway", ns)
    if gw is None:
        return []
    out: list[Finding] = []
    if _find(c, "EnvoyFilter", "istio-multicluster-ingressgateway", ns) is None:
        out.append(Finding(
            severity="error", check="multimesh-sni-rewrite", clusters=(c.name,), objects=(ref(gw),),
            message="the ingress gateway passes *.global through on 15443 but nothing rewrites the .global SNI cluster to "
                    ".svc.cluster.local: no cluster matches and connections are reset",
            fix="add EnvoyFilter istio-multicluster-ingressgateway (tcp_cluster_rewrite \\.global$ → .svc.cluster.local)",
        ))
    coredns = _find(c, "ConfigMap", "coredns", "kube-system")
    kubedns = _find(c, "ConfigMap", "kube-dns", "kube-system")
    svc = _find(c, "Service", "istiocoredns", ns)
    ip = str(((svc or {}).get("spec") or {}).get("clusterIP") or "")
    target = ip or "<istiocoredns ClusterIP>"
    # What the source operator writes (pkg/resources/istiocoredns, release-1.2): a
    # `global:53` server block in the CoreDNS Corefile and `global` in kube-dns's
    # stubDomains, both pointing at the istiocoredns Service's ClusterIP.
    # (forwarding with the plugin the cluster's Corefile uses: CoreDNS >= 1.5 has no `proxy`)
    plugin = forward_plugin(str(((coredns or {}).get("data") or {}).get("Corefile", "")))
    block = f"global:53 {{ errors; cache 30; {plugin} . {target} }}"
    stub = f'stubDomains {{"global": ["{target}"]}}'
    if coredns is None and kubedns is None:
        out.append(Finding(
            # Not checkable is a note, not a warning (as unknown API versions are): the
            # derived state (``MeshAnalyzed``) never holds kube-system's DNS config.
            severity="info", check="multimesh-cluster-dns", clusters=(c.name,), objects=(ref(gw),),
            message="the cluster DNS configuration (kube-system/coredns or kube-dns) was not available to check that "
                    "`global` is forwarded to istiocoredns",
            fix=f"verify: the CoreDNS Corefile has `{block}`, or kube-dns has {stub}",
        ))
        return out
    forwards: list[tuple[Obj, list[str]]] = []
    if coredns is not None:
        forwards.append((coredns, corefile_global_upstreams(str((coredns.get("data") or {}).get("Corefile", "")))))
    if kubedns is not None:
        forwards.append((kubedns, stub_domain_upstreams(str((kubedns.get("data") or {}).get("stubDomains", "")))))
    if not any(ups for _, ups in forwards):
        out.append(Finding(
            severity="error", check="multimesh-cluster-dns", clusters=(c.name,),
            objects=tuple(ref(o) for o, _ in forwards),
            message="cluster DNS does not forward `global` to istiocoredns: NAME.NS.global does not resolve",
            fix=("enable istioCoreDNS: federationd then writes " if svc is None else
                 "federationd writes this while istioCoreDNS is enabled (see its log if it has not): ")
                + f"`{block}` in the kube-system/coredns Corefile, or {stub} in kube-system/kube-dns "
                "(what the source operator writes)",
        ))
    elif ip:
        for o, ups in forwards:
            if ups and ip not in ups:
                out.append(Finding(
                    severity="error", check="multimesh-cluster-dns", clusters=(c.name,), objects=(ref(o), ref(svc or {})),
                    message=f"cluster DNS forwards `global` to {', '.join(ups)}, not to istiocoredns ({ip})",
                    fix=f"point it at istiocoredns: `{block}`" if o is coredns else f"set {stub}",
                ))
    return out


def corefile_global_upstreams(corefile: str) -> list[str]:
    """The upstreams of the Corefile's ``global`` server block (``global:53 { proxy . IP }``
    or ``forward . IP``), empty when there is no such block."""
    out: list[str] = []
    for m in re.finditer(r"(?m)^\s*((?:dns://)?global\.?(?::53)?)\s*\{(?P<body>[^}]*)\}", corefile):
        for line in m.group("body").splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] in ("proxy", "forward") and words[1] == ".":
                out += [w for w in words[2:] if w != "{"]
    return out


def stub_domain_upstreams(stub_domains: str) -> list[str]:
    """The name servers kube-dns's ``stubDomains`` gives ``global``."""
    try:
        doc = json.loads(stub_domains) if stub_domains.strip() else {}
    except ValueError:
        return []
    servers = doc.get("global") if isinstance(doc, dict) else None
    return [str(x).split(":")[0] for x in servers] if isinstance(servers, list) else []


def _loc_matches(pattern: str, observed: str) -> bool:
    p = pattern.split("/")
    o = observed.split("/")
    for i, seg in enumerate(p):
        if seg == "*":
            return True
        if i >= len(o):
            return True  # a subzone or zone we do not observe
        if seg != o[i]:
            return False
    return True


def _locality(view: MeshView) -> list[Finding]:
    """Locality rules name localities some node has."""
    master = view.cluster(view.master)
    if master is None:
        return []
    mesh, _ = _mesh_config(master, view.namespace)
    lb = mesh.get("localityLbSetting") or {}
    observed = sorted({loc for c in view.clusters for loc in c.localities})
    if not lb or not observed:
        return []
    named: list[str] = []
    for rule in lb.get("distribute") or []:
        named.append(str(rule.get("from", "")))
        named += [str(k) for k in (rule.get("to") or {})]
    for rule in lb.get("failover") or []:
        named += [str(rule.get("from", "")), str(rule.get("to", ""))]
    unknown = sorted({n for n in named if n and not any(_loc_matches(n, o) for o in observed)})
    if not unknown:
        return []
    return [Finding(
        severity="warning", check="locality-rules", clusters=(view.master,), objects=(f"ConfigMap/{view.namespace}/istio",),
        message=f"localityLbSetting names {', '.join(unknown)}, which no node has (observed: {', '.join(observed)})",
        fix="correct the region/zone names in spec.localityLB",
    )]


def cluster_findings(view: MeshView, c: ClusterView) -> list[Finding]:
    """The checks that read one cluster's objects only — and not its ``istio``
    ConfigMap: a derivation re-runs them only when another of the cluster's objects
    changed, since every gateway change rewrites that ConfigMap's meshNetworks on every
    cluster (``projections.derive._mesh_findings``). Checks of the mesh config belong in
    ``mesh_findings``."""
    return [
        *_injector(view, c), *_mixer_galley(view, c), *_apis(view, c), *_rbac(view, c), *_multimesh(view, c),
    ]


def mesh_findings(view: MeshView) -> list[Finding]:
    """The checks across clusters: cross-network paths, the control plane through the
    gateway, locality rules."""
    return [*_cross_network(view), *_control_plane_reach(view), *_locality(view)]


_ORDER = {"error": 0, "warning": 1, "info": 2}


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings and notes, in a stable order; a finding made twice
    (one per address of a network's gateway) once."""
    return sorted(dict.fromkeys(findings), key=lambda f: (_ORDER[f.severity], f.check, f.clusters, f.objects))


def analyze(view: MeshView) -> list[Finding]:
    """Every finding for the mesh, errors first, in a stable order."""
    out: list[Finding] = []
    for c in view.clusters:
        out += cluster_findings(view, c)
    out += mesh_findings(view)
    return ordered(out)


# --- the MeshAnalyzed condition ------------------------------------------------------------------

#: The longest condition message (the status stays small; ``federationd analyze`` has all).
CONDITION_MESSAGE_LIMIT = 4000


def condition(findings: Sequence[Finding]) -> tuple[Literal["True", "False"], str, str]:
    """``(status, reason, message)`` of the ``MeshAnalyzed`` condition for ``findings``.

    ``True`` / ``NoFindings`` when no check found an error or a warning (notes — e.g. a
    cluster whose served APIs are unknown — are still listed); otherwise ``False`` with
    reason ``ErrorsFound`` or ``WarningsFound``. The message lists every finding as
    ``severity check [clusters]: message (fix: …)`` — the message and fix exactly as
    ``federationd analyze`` prints them — one a line (messages contain ``;``), cut at
    ``CONDITION_MESSAGE_LIMIT`` with a count of what was left out."""
    severities = {f.severity for f in findings}
    if "error" in severities:
        status: Literal["True", "False"] = "False"
        reason = "ErrorsFound"
    elif "warning" in severities:
        status, reason = "False", "WarningsFound"
    else:
        status, reason = "True", "NoFindings"
    if not findings:
        return status, reason, "every check passed"
    parts = [f"{f.severity} {f.check} [{','.join(f.clusters)}]: {f.message} (fix: {f.fix})" for f in ordered(findings)]
    message = "\n".join(parts)
    if len(message) <= CONDITION_MESSAGE_LIMIT:
        return status, reason, message
    kept: list[str] = []
    for p in parts:
        rest = len(parts) - len(kept) - 1
        tail = f"\nand {rest} more (federationd analyze lists them)" if rest else ""
        if kept and len("\n".join([*kept, p])) + len(tail) > CONDITION_MESSAGE_LIMIT:
            break
        kept.append(p)
    rest = len(parts) - len(kept)
    more = f"\nand {rest} more (federationd analyze lists them)" if rest else ""
    return status, reason, ("\n".join(kept) + more)[:CONDITION_MESSAGE_LIMIT]
