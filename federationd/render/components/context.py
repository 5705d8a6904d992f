"""What every component builder receives, and the pieces they all share.

A builder is a pure function ``(ctx) -> list[obj]``. :class:`Profile` is the data of one
Istio version family (which CRDs exist, which flags a binary understands, which
components a master or a remote gets); :class:`Ctx` bundles the decoded spec (remote
overrides already folded in), the profile, the target namespace and the facts. Builders
branch on profile *features*, never on version strings, so a new family is new data.

The helpers below (pod templates, deployments, autoscalers, disruption budgets, RBAC,
proxy arguments) exist so that every component applies the spec's scheduling and sizing
knobs the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from federationd.api.v1beta1 import IstioSpec, ResourceRequirements
from federationd.render.objects import Obj, RenderFacts, obj


@dataclass(frozen=True)
class CrdDef:
    """One of Istio's own CustomResourceDefinitions, as the release charts list it."""

    group: str
    version: str
    kind: str
    plural: str
    scope: str = "Namespaced"
    categories: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"


@dataclass(frozen=True)
class Component:
    """A unit that is rendered as a whole or not at all. ``name`` is the value of the
    component label on each of its objects."""

    name: str
    enabled: Callable[[IstioSpec], bool]
    build: Callable[[Ctx], list[Obj]]


@dataclass(frozen=True)
class Profile:
    """One Istio version family: data only."""

    family: str
    crds: tuple[CrdDef, ...]
    #: Behaviour switches the family's binaries and charts differ on (see each builder).
    features: frozenset[str]
    master: tuple[Component, ...] = ()
    remote: tuple[Component, ...] = ()
    #: Extra environment for pilot's discovery container.
    pilot_env: Mapping[str, str] = field(default_factory=dict)

    def has(self, feature: str) -> bool:
        return feature in self.features


@dataclass(frozen=True)
class Ctx:
    spec: IstioSpec
    profile: Profile
    namespace: str
    facts: RenderFacts

    @property
    def ns(self) -> str:
        return self.namespace

    def svc(self, name: str) -> str:
        return f"{name}.{self.namespace}.svc.cluster.local"

    @property
    def pull_policy(self) -> str:
        return self.spec.image_pull_policy

    @property
    def discovery_address(self) -> str:
        port = 15011 if self.spec.control_plane_security_enabled else 15010
        return f"istio-pilot.{self.namespace}:{port}"

    @property
    def control_plane_auth_policy(self) -> str:
        return "MUTUAL_TLS" if self.spec.control_plane_security_enabled else "NONE"


# --- Kubernetes API versions ---------------------------------------------------------------

#: For each kind whose API version changed since Istio 1.1/1.2: the version those
#: releases' charts render (and, for webhooks, the one their binaries patch the
#: ``caBundle`` through), then its GA successor.
API_VERSIONS: Mapping[str, tuple[str, str]] = {
    # helm istio/charts/*/templates/autoscale.yaml (1.1.14, 1.2.8)
    "HorizontalPodAutoscaler": ("autoscaling/v2beta1", "autoscaling/v2"),
    # helm istio/charts/*/templates/poddisruptionbudget.yaml
    "PodDisruptionBudget": ("policy/v1beta1", "policy/v1"),
    # helm sidecarInjectorWebhook/templates/mutatingwebhook.yaml
    "MutatingWebhookConfiguration": (
        "admissionregistration.k8s.io/v1beta1",
        "admissionregistration.k8s.io/v1",
    ),
    # helm istio-init/files/crd-*.yaml
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1beta1", "apiextensions.k8s.io/v1"),
}


def api_version(ctx: Ctx, kind: str) -> str:
    """The API version to render ``kind`` in on the target cluster.

    The upstream version when the cluster serves it (every Kubernetes release Istio
    1.1/1.2 supports does); otherwise, or while the cluster's served APIs are not known,
    the GA successor. A cluster without the upstream webhook API cannot run these Istio
    releases at all (their binaries patch ``caBundle`` through v1beta1); that is
    reported by ``federationd analyze``, not hidden here.
    """
    upstream, successor = API_VERSIONS[kind]
    return upstream if upstream in ctx.facts.kubernetes_apis else successor


def is_upstream_api(ctx: Ctx, kind: str) -> bool:
    return api_version(ctx, kind) == API_VERSIONS[kind][0]


# --- small helpers ------------------------------------------------------------------------


def resources(r: ResourceRequirements | None) -> Obj:
    if r is None:
        return {}
    out: Obj = {}
    if r.limits:
        out["limits"] = {k: v for k, v in sorted(r.limits.items())}
    if r.requests:
        out["requests"] = {k: v for k, v in sorted(r.requests.items())}
    return out


def env(name: str, value: str) -> Obj:
    return {"name": name, "value": value}


def env_field(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def pod_env() -> list[Obj]:
    """The downward-API variables every Istio binary reads."""
    return [
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
    ]


@dataclass(frozen=True)
class Scheduling:
    node_selector: Mapping[str, str]
    affinity: Obj | None
    tolerations: Sequence[Obj]


class _Schedulable(Protocol):
    """Any component config with the scheduling knobs (pilot, citadel, gateways, …)."""

    @property
    def node_selector(self) -> dict[str, str]: ...
    @property
    def affinity(self) -> dict[str, Any] | None: ...
    @property
    def tolerations(self) -> list[dict[str, Any]]: ...


def scheduling_of(c: _Schedulable) -> Scheduling:
    """``nodeSelector``/``affinity``/``tolerations`` of a component config."""
    return Scheduling(
        node_selector=dict(c.node_selector),
        affinity=c.affinity,
        tolerations=list(c.tolerations),
    )


def pod_template(
    *,
    app_labels: Mapping[str, str],
    containers: Sequence[Obj],
    service_account: str,
    scheduling: Scheduling | None = None,
    volumes: Sequence[Obj] = (),
    init_containers: Sequence[Obj] = (),
    annotations: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Obj:
    ann = {"sidecar.istio.io/inject": "false"}
    ann.update(annotations or {})
    spec: Obj = {"serviceAccountName": service_account, "containers": list(containers)}
    if init_containers:
        spec["initContainers"] = list(init_containers)
    if volumes:
        spec["volumes"] = list(volumes)
    if scheduling is not None:
        if scheduling.node_selector:
            spec["nodeSelector"] = dict(scheduling.node_selector)
        if scheduling.affinity:
            spec["affinity"] = scheduling.affinity
        if scheduling.tolerations:
            spec["tolerations"] = list(scheduling.tolerations)
    spec.update(extra or {})
    return {"metadata": {"labels": dict(app_labels), "annotations": ann}, "spec": spec}


def deployment(
    name: str,
    *,
    ctx: Ctx,
    component: str,
    app_labels: Mapping[str, str],
    template: Obj,
    replicas: int | None,
) -> Obj:
    """A Deployment; ``replicas`` None leaves the count to an autoscaler."""
    spec: Obj = {
        "selector": {"matchLabels": dict(app_labels)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": template,
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return obj(
        "apps/v1",
        "Deployment",
        name,
        component=component,
        namespace=ctx.ns,
        extra_labels=app_labels,
        spec=spec,
    )


def autoscaled(
    name: str,
    *,
    ctx: Ctx,
    component: str,
    app_labels: Mapping[str, str],
    template: Obj,
    replica_count: int,
    min_replicas: int,
    max_replicas: int,
) -> list[Obj]:
    """A Deployment plus, when its bounds allow scaling, an HPA on 80 % CPU.

    With an HPA the Deployment leaves ``replicas`` unset: server-side apply would
    otherwise reset what the autoscaler decided on every resync. ``replicaCount`` then
    only matters through the autoscaler's bounds (as in Istio's charts).
    """
    lo = max(min_replicas, 1)
    hi = max(max_replicas, lo)
    if hi > lo:
        cpu: Obj = (
            {"name": "cpu", "targetAverageUtilization": 80}
            if is_upstream_api(ctx, "HorizontalPodAutoscaler")
            else {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
        )
        return [
            deployment(
                name,
                ctx=ctx,
                component=component,
                app_labels=app_labels,
                template=template,
                replicas=None,
            ),
            obj(
                api_version(ctx, "HorizontalPodAutoscaler"),
                "HorizontalPodAutoscaler",
                name,
                component=component,
                namespace=ctx.ns,
                extra_labels=app_labels,
                spec={
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": lo,
                    "maxReplicas": hi,
                    "metrics": [{"type": "Resource", "resource": cpu}],
                },
            ),
        ]
    return [
        deployment(
            name,
            ctx=ctx,
            component=component,
            app_labels=app_labels,
            template=template,
            replicas=max(replica_count, 1),
        )
    ]


def pdb(name: str, *, ctx: Ctx, component: str, app_labels: Mapping[str, str]) -> list[Obj]:
    """A PodDisruptionBudget (minAvailable 1) when the spec asks for them."""
    if not ctx.spec.default_pod_disruption_budget.enabled:
        return []
    return [
        obj(
            api_version(ctx, "PodDisruptionBudget"),
            "PodDisruptionBudget",
            name,
            component=component,
            namespace=ctx.ns,
            extra_labels=app_labels,
            spec={"minAvailable": 1, "selector": {"matchLabels": dict(app_labels)}},
        )
    ]


def service(
    name: str,
    *,
    ctx: Ctx,
    component: str,
    app_labels: Mapping[str, str],
    ports: Iterable[Obj],
    selector: Mapping[str, str] | None = None,
    extra_spec: Mapping[str, Any] | None = None,
    extra_labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    spec: Obj = {"selector": dict(selector or app_labels), "ports": list(ports)}
    spec.update(extra_spec or {})
    lbl = dict(app_labels)
    lbl.update(extra_labels or {})
    return obj(
        "v1",
        "Service",
        name,
        component=component,
        namespace=ctx.ns,
        extra_labels=lbl,
        annotations=annotations,
        spec=spec,
    )


def port(name: str, number: int, *, target: int | str | None = None, protocol: str = "TCP") -> Obj:
    p: Obj = {"name": name, "port": number, "protocol": protocol}
    if target is not None:
        p["targetPort"] = target
    return p


def service_account(name: str, *, ctx: Ctx, component: str, app_labels: Mapping[str, str]) -> Obj:
    return obj(
        "v1", "ServiceAccount", name, component=component, namespace=ctx.ns, extra_labels=app_labels
    )


def rule(groups: Sequence[str], resources_: Sequence[str], verbs: Sequence[str], **extra: Any) -> Obj:
    r: Obj = {"apiGroups": list(groups), "resources": list(resources_), "verbs": list(verbs)}
    r.update(extra)
    return r


def cluster_rbac(
    name: str,
    *,
    ctx: Ctx,
    component: str,
    app_labels: Mapping[str, str],
    service_account_name: str,
    rules: Sequence[Obj],
) -> list[Obj]:
    """ClusterRole + ClusterRoleBinding, named per namespace as Istio's charts do, so two
    control planes in one cluster do not fight over them."""
    full = f"{name}-{ctx.ns}"
    return [
        obj(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            full,
            component=component,
            extra_labels=app_labels,
            rules=list(rules),
        ),
        obj(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            full,
            component=component,
            extra_labels=app_labels,
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": full},
            subjects=[{"kind": "ServiceAccount", "name": service_account_name, "namespace": ctx.ns}],
        ),
    ]


def probe_http(path: str, port_: int, **extra: Any) -> Obj:
    p: Obj = {"httpGet": {"path": path, "port": port_}}
    p.update(extra)
    return p


def probe_exec(command: Sequence[str], **extra: Any) -> Obj:
    p: Obj = {"exec": {"command": list(command)}}
    p.update(extra)
    return p


def secret_volume(name: str, secret: str, *, optional: bool = True) -> Obj:
    return {"name": name, "secret": {"secretName": secret, "optional": optional}}


def configmap_volume(name: str, configmap: str, **extra: Any) -> Obj:
    cm: Obj = {"name": configmap}
    cm.update(extra)
    return {"name": name, "configMap": cm}


def mount(name: str, path: str, *, read_only: bool = False) -> Obj:
    m: Obj = {"name": name, "mountPath": path}
    if read_only:
        m["readOnly"] = True
    return m


# --- the proxy as it runs inside control-plane pods ----------------------------------------


def tracing_args(ctx: Ctx) -> list[str]:
    """Proxy flags selecting the tracer (none when tracing is off)."""
    t = ctx.spec.tracing
    if not t.enabled:
        return []
    if t.tracer == "lightstep":
        args = ["--lightstepAddress", t.lightstep.address, "--lightstepAccessToken", t.lightstep.access_token]
        if t.lightstep.secure:
            args.append("--lightstepSecure")
        if t.lightstep.cacert_path:
            args += ["--lightstepCacertPath", t.lightstep.cacert_path]
        return args
    if t.tracer == "datadog":
        return ["--datadogAgentAddress", t.datadog.address]
    return ["--zipkinAddress", t.zipkin.address]


def tracing_env(ctx: Ctx) -> list[Obj]:
    """Datadog's address names the node (``$(HOST_IP)``), so the proxy needs it."""
    t = ctx.spec.tracing
    if t.enabled and t.tracer == "datadog":
        return [env_field("HOST_IP", "status.hostIP")]
    return []


def network_env(ctx: Ctx) -> list[Obj]:
    return [env("ISTIO_META_NETWORK", ctx.facts.network)] if ctx.facts.network else []


def proxy_sidecar(
    ctx: Ctx,
    *,
    service_cluster: str,
    template_file: str,
    ports: Sequence[Obj] = (),
    extra_mounts: Sequence[Obj] = (),
) -> Obj:
    """The istio-proxy container that fronts pilot or mixer inside their own pods."""
    p = ctx.spec.proxy
    args = [
        "proxy",
        "--domain",
        "$(POD_NAMESPACE).svc.cluster.local",
        "--serviceCluster",
        service_cluster,
        "--templateFile",
        template_file,
        "--controlPlaneAuthPolicy",
        ctx.control_plane_auth_policy,
    ]
    if ctx.profile.has("proxy_log_level"):
        args.append(f"--proxyLogLevel={p.log_level}")
    args += tracing_args(ctx)
    return {
        "name": "istio-proxy",
        "image": p.image,
        "imagePullPolicy": ctx.pull_policy,
        "args": args,
        "ports": list(ports),
        "env": [*pod_env(), env_field("INSTANCE_IP", "status.podIP"), *tracing_env(ctx)],
        "resources": resources(p.resources),
        "volumeMounts": [
            mount("istio-certs", "/etc/certs", read_only=True),
            *extra_mounts,
            # 1.2's pilot and mixer sidecars reach the node agent too (helm 1.2.8
            # pilot/mixer templates/deployment.yaml ``sds-uds-path``); 1.1's do not.
            *(sds_mounts(ctx) if ctx.profile.has("control_plane_sds") else []),
        ],
    }


def certs_volume(service_account_name: str) -> Obj:
    """Citadel writes each service account's workload certificate to ``istio.<sa>``."""
    return secret_volume("istio-certs", f"istio.{service_account_name}")


# --- SDS and core dumps, shared by gateways and the injection template -----------------------

DEFAULT_SDS_UDS_PATH = "unix:/var/run/sds/uds_path"


def sds_socket_path(ctx: Ctx) -> str:
    """The node agent's socket on the host (``sds.udsPath`` without its ``unix:`` scheme)."""
    path = ctx.spec.sds.uds_path or DEFAULT_SDS_UDS_PATH
    return path.removeprefix("unix:")


def sds_socket_dir(ctx: Ctx) -> str:
    """The directory holding the node agent's socket (``/var/run/sds`` by default).

    Proxies mount the directory, not the socket file: the node agent re-creates the
    socket when it restarts, and a file mount would keep pointing at the deleted inode
    (helm ``files/injection-template.yaml`` 1.2.8, ``sds-uds-path`` hostPath
    ``/var/run/sds`` mounted at ``/var/run/sds``)."""
    return sds_socket_path(ctx).rsplit("/", 1)[0] or "/"


#: Istio's default trust domain: the audience of the projected token the node agent
#: validates (helm ``audience: {{ .Values.global.trustDomain }}``, the operator sets
#: ``trustDomain: cluster.local``).
TRUST_DOMAIN = "cluster.local"


def sds_volumes(ctx: Ctx, *, name: str = "sds-uds-path") -> list[Obj]:
    """With SDS, proxies reach the node agent's socket directory on the host and, with
    trustworthy JWTs, present a projected service-account token to it. ``name`` is the
    volume's name in the chart being mirrored (gateways say ``sdsudspath``)."""
    if not ctx.spec.sds.enabled:
        return []
    out: list[Obj] = [{"name": name, "hostPath": {"path": sds_socket_dir(ctx)}}]
    if ctx.spec.sds.use_trustworthy_jwt:
        out.append(
            {
                "name": "istio-token",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "path": "istio-token",
                                "expirationSeconds": 43200,
                                "audience": TRUST_DOMAIN,
                            }
                        }
                    ]
                },
            }
        )
    return out


def sds_mounts(ctx: Ctx, *, name: str = "sds-uds-path") -> list[Obj]:
    if not ctx.spec.sds.enabled:
        return []
    out = [mount(name, sds_socket_dir(ctx), read_only=True)]
    if ctx.spec.sds.use_trustworthy_jwt:
        out.append(mount("istio-token", "/var/run/secrets/tokens"))
    return out


def core_dump_init(ctx: Ctx) -> list[Obj]:
    """The privileged init container that lets Envoy write core dumps, when asked for."""
    if not ctx.spec.proxy.enable_core_dump:
        return []
    return [
        {
            "name": "enable-core-dump",
            "image": ctx.spec.proxy_init.image,
            "imagePullPolicy": ctx.pull_policy,
            "command": ["/bin/sh"],
            "args": [
                "-c",
                "sysctl -w kernel.core_pattern=/var/lib/istio/core.proxy && ulimit -c unlimited",
            ],
            "securityContext": {"privileged": True},
        }
    ]
