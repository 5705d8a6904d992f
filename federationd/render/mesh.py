"""The mesh-wide objects: the ``istio`` ConfigMap (mesh config + meshNetworks) and mTLS.

What pilot, mixer and every sidecar read as "the mesh" lives in one ConfigMap, ``istio``,
with two YAML documents as text: ``mesh`` (Istio's ``MeshConfig``) and ``meshNetworks``
(split-horizon EDS: which endpoints belong to which network, and through which gateways
other networks reach them). Alongside it, mutual TLS is the ``default`` MeshPolicy plus,
when mTLS is on, the ``default`` (``*.local``) and ``api-server`` DestinationRules.

The content follows the source operator's release-1.2 behaviour (itself Istio 1.1/1.2's
helm chart ``configmap.yaml`` and security chart), with these deliberate choices:

* ``controlPlaneAuthPolicy`` MUTUAL_TLS and discovery on pilot's :15011 with control-plane
  security, else NONE and :15010; galley is the config source (over ISTIO_MUTUAL with
  control-plane security) when ``useMCP``.
* Mixer check/report servers only while mixer is enabled; without mixer, policy checks
  are disabled (the source pointed sidecars at a policy server that did not exist and,
  failing closed, broke traffic).
* ``ingressControllerMode`` follows ``gateways.k8singress.enabled`` (STRICT / OFF).
* ``localityLbSetting`` only when ``localityLB.enabled``, without ``enabled`` itself
  (Istio 1.1/1.2's MeshConfig has no such field and would reject the whole config);
  when both ``distribute`` and ``failover`` are given, ``failover`` is dropped as the
  source did — federationd refuses that spec earlier (``projections.locality``).
* ``dnsRefreshRate`` is a 1.2 MeshConfig field; 1.1 pilots would refuse it, so it is
  written for other version families only.
* ``defaultConfigVisibility`` ("." or "*") becomes the mesh-wide default ``exportTo`` of
  services, virtual services and destination rules; the mesh-wide DestinationRules are
  then exported to "*" so they keep applying everywhere.

``meshNetworks`` comes from the caller as data (``render.objects.MeshNetwork``, built by
projections from observed gateways): render never looks anything up.

Serialised YAML is sorted, so equal input gives byte-identical ConfigMaps (the pilot
pod-template hash depends on it). Pure: no I/O, no clock, no randomness.

Every cluster carries the same ``meshNetworks`` document, so its text is memoised on the
networks (a gateway change serialises it once, not once per cluster), built from each
network's memoised chunk (only a network that changed is dumped again; the bytes are one
dump's), and the dumping goes through LibYAML (``objects.safe_yaml``).

Upstream, compared line by line: banzaicloud/istio-operator release-1.2
``pkg/resources/common/configmap.go`` (``configMap``; ``meshNetworks()`` is
``yaml.Marshal`` of ``pkg/apis/istio/v1beta1/istio_types.go``'s ``MeshNetworks``:
``networks`` → name → ``endpoints`` (``fromCidr`` / ``fromRegistry``) and ``gateways``
(``address``, ``port``), keys sorted, empty lists left out) and Istio 1.1.14 / 1.2.8
``install/kubernetes/helm/istio/templates/configmap.yaml`` (``networks: {}`` when there
are none). Deviations: a gateway may be a ``registryServiceName`` (Istio's
``MeshNetworks`` proto has it; the operator's struct did not), and ``endpoints`` is written
even when empty (never the case for a rendered network, which always names its registry).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final

from federationd.api.v1beta1 import IstioSpec, LocalityLBConfiguration, version_family
from federationd.render.objects import (
    MeshNetwork,
    Obj,
    RenderFacts,
    moved_at,
    obj,
    safe_yaml,
)

__all__ = [
    "COMPONENT",
    "CONFIG_MAP_NAME",
    "config_map",
    "destination_rules",
    "locality_lb_setting",
    "mesh_config",
    "mesh_networks",
    "mesh_networks_text",
    "mesh_policy",
    "render",
    "render_config",
    "render_security",
]

COMPONENT: Final = "mesh"
CONFIG_MAP_NAME: Final = "istio"
CLUSTER_DOMAIN: Final = "cluster.local"


_WIDTH: Final = 1000


def _yaml(data: Any) -> str:
    return safe_yaml(data, width=_WIDTH)


# --- mesh config --------------------------------------------------------------------------


def _tracing(spec: IstioSpec) -> dict[str, Any] | None:
    t = spec.tracing
    if not t.enabled:
        return None
    if t.tracer == "zipkin":
        return {"zipkin": {"address": t.zipkin.address}}
    if t.tracer == "lightstep":
        ls: dict[str, Any] = {
            "address": t.lightstep.address,
            "accessToken": t.lightstep.access_token,
            "secure": t.lightstep.secure,
        }
        if t.lightstep.secure:
            ls["cacertPath"] = t.lightstep.cacert_path
        return {"lightstep": ls}
    return {"datadog": {"address": t.datadog.address}}


def _mixer_server(kind: str, *, namespace: str, secure: bool, remote: bool) -> str:
    if remote:
        # Remotes reach the master's mixer through the selector-less service federationd
        # keeps in sync there, on mixer's mTLS port.
        return f"istio-{kind}.{namespace}:15004"
    port = "15004" if secure else "9091"
    return f"istio-{kind}.{namespace}.svc.{CLUSTER_DOMAIN}:{port}"


def locality_lb_setting(lb: LocalityLBConfiguration | None) -> dict[str, Any] | None:
    """Istio's ``localityLbSetting`` for a spec's ``localityLB``, or ``None`` when locality
    load balancing is not enabled."""
    if lb is None or not lb.enabled:
        return None
    out: dict[str, Any] = {}
    if lb.distribute:
        out["distribute"] = [{"from": d.from_, "to": dict(d.to)} for d in lb.distribute]
    elif lb.failover:
        out["failover"] = [{"from": f.from_, "to": f.to} for f in lb.failover]
    return out


def mesh_config(spec: IstioSpec, *, namespace: str, remote: bool = False) -> dict[str, Any]:
    """Istio's ``MeshConfig`` for a defaulted spec, as data."""
    secure = spec.control_plane_security_enabled
    default_config: dict[str, Any] = {
        "connectTimeout": "10s",
        "configPath": "/etc/istio/proxy",
        "binaryPath": "/usr/local/bin/envoy",
        "serviceCluster": "istio-proxy",
        "drainDuration": "45s",
        "parentShutdownDuration": "1m0s",
        "proxyAdminPort": 15000,
        "concurrency": 0,
        "controlPlaneAuthPolicy": "MUTUAL_TLS" if secure else "NONE",
        "discoveryAddress": f"istio-pilot.{namespace}:{15011 if secure else 15010}",
    }
    tracing = _tracing(spec)
    if tracing is not None:
        default_config["tracing"] = tracing

    mesh: dict[str, Any] = {
        "disablePolicyChecks": not spec.mixer.enabled,
        "enableTracing": spec.tracing.enabled,
        "accessLogFile": "/dev/stdout",
        "accessLogFormat": "",
        "accessLogEncoding": "TEXT",
        "policyCheckFailOpen": False,
        "ingressService": "istio-ingressgateway",
        "ingressClass": "istio",
        "ingressControllerMode": "STRICT" if spec.gateways.k8singress.enabled else "OFF",
        "sdsUdsPath": spec.sds.uds_path if spec.sds.enabled else "",
        "enableSdsTokenMount": spec.sds.enabled and spec.sds.use_trustworthy_jwt,
        "sdsUseK8sSaJwt": spec.sds.enabled and spec.sds.use_normal_jwt,
        "trustDomain": "",
        "outboundTrafficPolicy": {"mode": spec.outbound_traffic_policy.mode},
        "defaultConfig": default_config,
        "rootNamespace": namespace,
        "connectTimeout": "10s",
    }
    if spec.mixer.enabled:
        mesh["mixerCheckServer"] = _mixer_server(
            "policy", namespace=namespace, secure=secure, remote=remote
        )
        mesh["mixerReportServer"] = _mixer_server(
            "telemetry", namespace=namespace, secure=secure, remote=remote
        )
    if spec.use_mcp:
        source: dict[str, Any] = {"address": f"istio-galley.{namespace}.svc:9901"}
        if secure:
            source["tlsSettings"] = {"mode": "ISTIO_MUTUAL"}
        mesh["configSources"] = [source]
    locality = locality_lb_setting(spec.locality_lb)
    if locality is not None:
        mesh["localityLbSetting"] = locality
    if version_family(spec.version) != "1.1":
        mesh["dnsRefreshRate"] = spec.proxy.dns_refresh_rate
    if spec.default_config_visibility:
        for key in (
            "defaultServiceExportTo",
            "defaultVirtualServiceExportTo",
            "defaultDestinationRuleExportTo",
        ):
            mesh[key] = [spec.default_config_visibility]
    return mesh


# --- mesh networks ------------------------------------------------------------------------


def _network_entry(net: MeshNetwork) -> dict[str, Any]:
    endpoints = [{"fromRegistry": r} for r in net.from_registry]
    endpoints += [{"fromCidr": c} for c in net.from_cidr]
    gateways: list[dict[str, Any]] = []
    for g in net.gateways:
        if g.address:
            gateways.append({"address": g.address, "port": g.port})
        elif g.registry_service_name:
            gateways.append({"registryServiceName": g.registry_service_name, "port": g.port})
        else:
            # A pending gateway has no address yet; it must be left out, not guessed.
            raise ValueError(f"network {net.name!r} has a gateway without an address")
    entry: dict[str, Any] = {"endpoints": endpoints}
    if gateways:
        entry["gateways"] = gateways
    return entry


def mesh_networks(networks: Sequence[MeshNetwork]) -> dict[str, Any]:
    """Istio's ``MeshNetworks`` for the given networks (``{"networks": {}}`` when none)."""
    out: dict[str, Any] = {}
    for net in networks:
        if net.name in out:
            raise ValueError(f"network {net.name!r} given twice")
        out[net.name] = _network_entry(net)
    return {"networks": out}


def mesh_networks_text(networks: Sequence[MeshNetwork]) -> str:
    """The ``meshNetworks`` ConfigMap value (sorted YAML)."""
    return _networks_text(tuple(networks))


_HEAD = "networks:\n"


@functools.lru_cache(maxsize=4096)
def _network_chunk(net: MeshNetwork) -> tuple[str, dict[str, Any]]:
    """One network's lines of the document (its entry's YAML under ``networks:``) and
    its entry. A block mapping's entries are emitted one after the other, each at the
    same indentation whatever its neighbours, so the document is the concatenation of
    its entries' chunks in key order (``test_mesh_networks_text_is_one_dump`` checks
    the bytes against a single dump)."""
    entry = _network_entry(net)
    text = safe_yaml({"networks": {net.name: entry}}, width=_WIDTH, memo=False)
    assert text.startswith(_HEAD)
    return text[len(_HEAD):], entry


class _Text:
    """One built ``meshNetworks`` text: its networks, each network's chunk by name, the
    names in key order, and the document it says (built when first asked for)."""

    __slots__ = ("chunks", "doc", "networks", "order", "text")

    def __init__(self, networks: tuple[MeshNetwork, ...], chunks: dict[str, str], order: list[str], text: str) -> None:
        self.networks = networks
        self.chunks = chunks
        self.order = order
        self.text = text
        self.doc: dict[str, Any] | None = None


#: The last few texts built, by the id of their networks tuple (one tuple serves every
#: cluster's facts in a derivation), and by text (``parsed_networks``).
_BY_NETWORKS: dict[int, _Text] = {}
_BY_TEXT: dict[str, _Text] = {}
_KEPT = 8


def _networks_text(networks: tuple[MeshNetwork, ...]) -> str:
    # One text per distinct network list, however many clusters carry it, built from
    # each network's memoised chunk. Built from the last text when the networks are
    # the same objects but a few, in the same places under the same names (a moved
    # gateway): a change re-dumps and re-joins what changed, and no loop over the
    # mesh's networks runs in Python.
    hit = _BY_NETWORKS.get(id(networks))
    if hit is not None and hit.networks is networks:
        return hit.text
    if not networks:
        return _remember(_Text(networks, {}, [], _yaml({"networks": {}}))).text
    last = next(reversed(_BY_NETWORKS.values()), None)
    built = _moved(last, networks) if last is not None else None
    if built is None:
        chunks = {n.name: _network_chunk(n)[0] for n in networks}
        if len(chunks) != len(networks):
            mesh_networks(networks)  # raises: a network given twice
        order = sorted(chunks)
        built = _Text(networks, chunks, order, _HEAD + "".join(map(chunks.__getitem__, order)))
    return _remember(built).text


def _moved(last: _Text, networks: tuple[MeshNetwork, ...]) -> _Text | None:
    """``last`` with the networks that are not the same objects re-chunked, when they are
    few and keep their places and names; else None."""
    old = last.networks
    if len(old) != len(networks):
        return None
    at = moved_at(old, networks)
    if len(at) > 4 or any(old[i].name != networks[i].name for i in at):
        return None
    chunks = dict(last.chunks)
    for i in at:
        chunks[networks[i].name] = _network_chunk(networks[i])[0]
    return _Text(networks, chunks, last.order, _HEAD + "".join(map(chunks.__getitem__, last.order)))


def _remember(t: _Text) -> _Text:
    _BY_NETWORKS.pop(id(t.networks), None)
    _BY_TEXT.pop(t.text, None)
    if len(_BY_NETWORKS) >= _KEPT:
        del _BY_NETWORKS[next(iter(_BY_NETWORKS))]
    if len(_BY_TEXT) >= _KEPT:
        del _BY_TEXT[next(iter(_BY_TEXT))]
    _BY_NETWORKS[id(t.networks)] = t
    _BY_TEXT[t.text] = t
    return t


def parsed_networks(text: str) -> dict[str, Any] | None:
    """The document a recent ``meshNetworks`` text was rendered from (what
    ``yaml.safe_load(text)`` returns), or None: shared, read only."""
    t = _BY_TEXT.get(text)
    if t is None:
        return None
    if t.doc is None:
        entries = {n.name: _network_chunk(n)[1] for n in t.networks}
        t.doc = {"networks": {k: entries[k] for k in t.order}}
    return t.doc


# --- objects ------------------------------------------------------------------------------


def config_map(
    spec: IstioSpec,
    *,
    namespace: str,
    networks: Sequence[MeshNetwork] = (),
    remote: bool = False,
) -> Obj:
    """The ``istio`` ConfigMap in the control-plane namespace."""
    return obj(
        "v1",
        "ConfigMap",
        CONFIG_MAP_NAME,
        component=COMPONENT,
        namespace=namespace,
        extra_labels={"app": "istio"},
        data={
            "mesh": _yaml(mesh_config(spec, namespace=namespace, remote=remote)),
            "meshNetworks": mesh_networks_text(networks),
        },
    )


def mesh_policy(spec: IstioSpec) -> Obj:
    """The mesh-wide authentication policy: STRICT mTLS with ``mtls``, else PERMISSIVE."""
    peer: dict[str, Any] = {"mtls": {}} if spec.mtls else {"mtls": {"mode": "PERMISSIVE"}}
    return obj(
        "authentication.istio.io/v1alpha1",
        "MeshPolicy",
        "default",
        component=COMPONENT,
        extra_labels={"app": "security"},
        spec={"peers": [peer]},
    )


def destination_rules(spec: IstioSpec, *, namespace: str) -> list[Obj]:
    """With ``mtls``: every ``*.local`` host over ISTIO_MUTUAL, except the API server
    (which has no sidecar) over plain TLS. Without ``mtls``: none."""
    if not spec.mtls:
        return []

    def rule(name: str, host: str, mode: str) -> Obj:
        body: dict[str, Any] = {"host": host, "trafficPolicy": {"tls": {"mode": mode}}}
        if spec.default_config_visibility:
            body["exportTo"] = ["*"]
        return obj(
            "networking.istio.io/v1alpha3",
            "DestinationRule",
            name,
            component=COMPONENT,
            namespace=namespace,
            extra_labels={"app": "security"},
            spec=body,
        )

    return [
        rule("default", "*.local", "ISTIO_MUTUAL"),
        rule("api-server", f"kubernetes.default.svc.{CLUSTER_DOMAIN}", "DISABLE"),
    ]


def render(spec: IstioSpec, *, namespace: str, facts: RenderFacts) -> list[Obj]:
    """The mesh objects of one cluster. The master gets the ConfigMap, the MeshPolicy and
    (with mTLS) the DestinationRules; a remote — whose sidecars are configured by the
    master's pilot — gets its own copy of the ConfigMap only."""
    return render_config(spec, namespace=namespace, facts=facts) + render_security(
        spec, namespace=namespace, facts=facts
    )


def render_config(spec: IstioSpec, *, namespace: str, facts: RenderFacts) -> list[Obj]:
    """The ``istio`` ConfigMap alone: the one mesh object that depends on the gateways
    (rendered apart so that a gateway change re-renders nothing else here)."""
    remote = facts.role == "remote"
    return [config_map(spec, namespace=namespace, networks=facts.mesh_networks, remote=remote)]


def render_security(spec: IstioSpec, *, namespace: str, facts: RenderFacts) -> list[Obj]:
    """The MeshPolicy and mTLS DestinationRules (master only)."""
    if facts.role == "remote":
        return []
    return [mesh_policy(spec), *destination_rules(spec, namespace=namespace)]
