"""Data shared by the 1.x profiles: CRD families and the standard component tables.

A family module composes these with its own differences; nothing here is version
specific by itself.
"""

from __future__ import annotations

from federationd.api.v1beta1 import IstioSpec
from federationd.render.components import (
    citadel,
    cni,
    coredns,
    crds,
    galley,
    gateways,
    injector,
    mixer,
    nodeagent,
    pilot,
)
from federationd.render.components.context import Component, CrdDef, Ctx
from federationd.render.objects import Obj, obj


def _crds(group: str, version: str, categories: tuple[str, ...], *kinds: tuple[str, str, str]) -> tuple[CrdDef, ...]:
    return tuple(
        CrdDef(group=group, version=version, kind=k, plural=p, scope=s, categories=categories)
        for k, p, s in kinds
    )


N, C = "Namespaced", "Cluster"

NETWORKING = _crds(
    "networking.istio.io",
    "v1alpha3",
    ("istio-io", "networking-istio-io"),
    ("VirtualService", "virtualservices", N),
    ("DestinationRule", "destinationrules", N),
    ("ServiceEntry", "serviceentries", N),
    ("Gateway", "gateways", N),
    ("EnvoyFilter", "envoyfilters", N),
    ("Sidecar", "sidecars", N),
)
AUTHENTICATION = _crds(
    "authentication.istio.io",
    "v1alpha1",
    ("istio-io", "authentication-istio-io"),
    ("Policy", "policies", N),
    ("MeshPolicy", "meshpolicies", C),
)
RBAC = _crds(
    "rbac.istio.io",
    "v1alpha1",
    ("istio-io", "rbac-istio-io"),
    ("ClusterRbacConfig", "clusterrbacconfigs", C),
    ("RbacConfig", "rbacconfigs", N),
    ("ServiceRole", "serviceroles", N),
    ("ServiceRoleBinding", "servicerolebindings", N),
)
RBAC_AUTHORIZATION_POLICY = _crds(
    "rbac.istio.io",
    "v1alpha1",
    ("istio-io", "rbac-istio-io"),
    ("AuthorizationPolicy", "authorizationpolicies", N),
)
CONFIG_APIM = _crds(
    "config.istio.io",
    "v1alpha2",
    ("istio-io", "apim-istio-io"),
    ("HTTPAPISpecBinding", "httpapispecbindings", N),
    ("HTTPAPISpec", "httpapispecs", N),
    ("QuotaSpecBinding", "quotaspecbindings", N),
    ("QuotaSpec", "quotaspecs", N),
)
CONFIG_POLICY = _crds(
    "config.istio.io",
    "v1alpha2",
    ("istio-io", "policy-istio-io"),
    ("rule", "rules", N),
    ("attributemanifest", "attributemanifests", N),
    ("adapter", "adapters", N),
    ("instance", "instances", N),
    ("template", "templates", N),
    ("handler", "handlers", N),
)


def mixer_kinds(*plurals: tuple[str, str]) -> tuple[CrdDef, ...]:
    """Adapter- and template-specific mixer kinds (served until 1.1)."""
    return _crds(
        "config.istio.io",
        "v1alpha2",
        ("istio-io", "policy-istio-io"),
        *((k, p, N) for k, p in plurals),
    )


# --- components ---------------------------------------------------------------------------------


def _namespace(ctx: Ctx) -> list[Obj]:
    # A remote may be a fresh cluster: its control-plane namespace is ours to create.
    return [obj("v1", "Namespace", ctx.ns, component="namespace", extra_labels={"istio-injection": "disabled"})]


def _always(_: IstioSpec) -> bool:
    return True


def _multimesh_enabled(s: IstioSpec) -> bool:
    return s.multi_mesh and (gateways.ingress_enabled(s) or gateways.egress_enabled(s))


CRDS = Component("crds", _always, crds.build)
NAMESPACE = Component("namespace", _always, _namespace)
CITADEL = Component("citadel", lambda s: s.citadel.enabled, citadel.build)
GALLEY = Component("galley", lambda s: s.galley.enabled, galley.build)
PILOT = Component("pilot", lambda s: s.pilot.enabled, pilot.build)
INGRESS = Component("ingressgateway", gateways.ingress_enabled, gateways.build_ingress)
EGRESS = Component("egressgateway", gateways.egress_enabled, gateways.build_egress)
K8SINGRESS = Component(
    "k8singress",
    lambda s: gateways.ingress_enabled(s) and s.gateways.k8singress.enabled,
    gateways.build_k8singress,
)
MESHEXPANSION = Component(
    "meshexpansion",
    lambda s: s.mesh_expansion and gateways.ingress_enabled(s),
    gateways.build_meshexpansion,
)
MULTIMESH = Component("multimesh", _multimesh_enabled, gateways.build_multimesh)
MIXER = Component("mixer", lambda s: s.mixer.enabled, mixer.build)
SIDECAR_INJECTOR = Component(
    "sidecar-injector", lambda s: s.sidecar_injector.enabled, injector.build
)
NODEAGENT = Component("nodeagent", lambda s: s.node_agent.enabled, nodeagent.build)
CNI = Component(
    "cni", lambda s: s.sidecar_injector.init_cni_configuration.enabled, cni.build
)
ISTIOCOREDNS = Component("istiocoredns", lambda s: s.istio_core_dns.enabled, coredns.build)

#: Everything a master gets, in build order (output is sorted afterwards anyway).
MASTER = (
    CRDS,
    CITADEL,
    GALLEY,
    PILOT,
    INGRESS,
    EGRESS,
    K8SINGRESS,
    MESHEXPANSION,
    MULTIMESH,
    MIXER,
    SIDECAR_INJECTOR,
    NODEAGENT,
    CNI,
    ISTIOCOREDNS,
)
#: A remote: its namespace, the CRDs its gateways' resources need, citadel, the sidecar
#: injector, gateways (+ the split-horizon pass-through gateway, the k8s-ingress and
#: multi-mesh gateway resources), CNI and node agent — the operator's remote install
#: (``remoteclusters/reconcile_remote_istio.go``: common, citadel without mesh policy,
#: nodeagent, cni, sidecarinjector, gateways) and what istio-remote's values leave on
#: (``values-istio-remote.yaml``: security + sidecar injector; no pilot, galley, mixer).
REMOTE = (
    NAMESPACE,
    CRDS,
    CITADEL,
    INGRESS,
    EGRESS,
    K8SINGRESS,
    MESHEXPANSION,
    MULTIMESH,
    SIDECAR_INJECTOR,
    NODEAGENT,
    CNI,
)
