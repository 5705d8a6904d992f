"""Decoding ``Istio`` / ``RemoteIstio`` specs: wire names, the source's defaults, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
import yaml

from federationd.api import v1beta1 as v

SAMPLES = Path(__file__).parent / "samples"
NS = "istio-system"


def sample(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((SAMPLES / name).read_text())
    assert isinstance(doc, dict)
    return doc


def test_seed_000_sample_gets_newest_1_2_release_and_source_defaults() -> None:
    s = v.istio_spec(sample("000_istio.yaml")["spec"], namespace=NS)
    assert s.version == v.DEFAULT_VERSION == "1.2.8"
    assert s.mtls is False
    assert s.auto_injection_namespaces == ["default"]
    assert s.include_ip_ranges == "*"
    for component, image in [
        (s.pilot.image, "pilot"),
        (s.citadel.image, "citadel"),
        (s.galley.image, "galley"),
        (s.mixer.image, "mixer"),
        (s.sidecar_injector.image, "sidecar_injector"),
        (s.node_agent.image, "node-agent-k8s"),
        (s.proxy.image, "proxyv2"),
        (s.proxy_init.image, "proxy_init"),
        (s.sidecar_injector.init_cni_configuration.image, "install-cni"),
        (s.gateways.ingress.sds.image, "node-agent-k8s"),
    ]:
        assert component == f"docker.io/istio/{image}:1.2.8"
    assert (s.pilot.replica_count, s.pilot.min_replicas, s.pilot.max_replicas) == (1, 1, 5)
    assert s.pilot.trace_sampling == 1.0
    assert s.pilot.enabled and s.citadel.enabled and s.galley.enabled and s.mixer.enabled
    assert s.gateways.enabled and s.gateways.ingress.enabled and s.gateways.egress.enabled
    assert not s.gateways.k8singress.enabled
    assert not s.node_agent.enabled and not s.istio_core_dns.enabled and not s.sds.enabled
    assert s.gateways.ingress.service_type == "LoadBalancer"
    assert s.gateways.egress.service_type == "ClusterIP"
    assert [(p.name, p.port, p.node_port) for p in s.gateways.ingress.ports] == [
        ("status-port", 15020, 31460),
        ("http2", 80, 31380),
        ("https", 443, 31390),
        ("tls", 15443, 31450),
    ]
    assert [p.port for p in s.gateways.egress.ports] == [80, 443, 15443]
    assert s.tracing.enabled and s.tracing.tracer == "zipkin"
    assert s.tracing.zipkin.address == "zipkin.istio-system:9411"
    assert s.tracing.datadog.address == "$(HOST_IP):8126"
    assert s.use_mcp is True
    assert s.outbound_traffic_policy.mode == "ALLOW_ANY"
    assert s.image_pull_policy == "IfNotPresent"
    assert s.proxy.log_level == "warning"
    assert s.proxy.component_log_level == "misc:error"
    assert s.proxy.dns_refresh_rate == "300s"
    cni = s.sidecar_injector.init_cni_configuration
    assert (cni.enabled, cni.bin_dir, cni.conf_dir, cni.log_level) == (
        False,
        "/opt/cni/bin",
        "/etc/cni/net.d",
        "info",
    )
    assert cni.exclude_namespaces == [NS]
    assert s.sidecar_injector.auto_injection_policy_enabled is True
    assert s.locality_lb is None
    assert s.istio_core_dns.image == "coredns/coredns:1.1.2"


def test_resources_default_to_default_resources_and_proxy_gets_its_own() -> None:
    s = v.istio_spec({}, namespace=NS)
    assert s.default_resources == v.ResourceRequirements(requests={"cpu": "10m"})
    assert s.pilot.resources == s.default_resources
    assert s.gateways.ingress.resources == s.default_resources
    assert s.proxy.resources == v.ResourceRequirements(
        requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "2000m", "memory": "1024Mi"}
    )
    assert s.sidecar_injector.init.resources == v.ResourceRequirements(
        requests={"cpu": "10m", "memory": "10Mi"}, limits={"cpu": "100m", "memory": "50Mi"}
    )

    own = {"requests": {"cpu": "50m", "memory": "64Mi"}}
    s = v.istio_spec(
        {"defaultResources": own, "galley": {"resources": {"limits": {"cpu": 2}}}}, namespace=NS
    )
    assert s.proxy.resources == v.ResourceRequirements(requests={"cpu": "50m", "memory": "64Mi"})
    assert s.pilot.resources == s.proxy.resources
    assert s.galley.resources == v.ResourceRequirements(limits={"cpu": 2})


def test_1_1_family_gets_1_1_images() -> None:
    s = v.istio_spec(sample("001_istio_multicluster.yaml")["spec"], namespace=NS)
    assert s.version == "1.1.14"
    assert s.pilot.image == "docker.io/istio/pilot:1.1.14"
    assert s.proxy.image == "docker.io/istio/proxyv2:1.1.14"
    assert s.pilot.max_replicas == 1 and s.pilot.min_replicas == 1
    assert s.gateways.egress.enabled is False
    assert s.mesh_expansion and s.control_plane_security_enabled and s.mtls
    assert s.image_pull_policy == "Always"


def test_explicit_values_win_and_zero_values_mean_default_like_the_source() -> None:
    s = v.istio_spec(
        {
            "version": "1.2.2",
            "includeIPRanges": "",
            "pilot": {"image": "my/pilot:x", "replicaCount": 0, "maxReplicas": 3},
            "sidecarInjector": {"initCNIConfiguration": {"excludeNamespaces": []}},
            "tracing": {"zipkin": {"address": "jaeger.tracing:9411"}},
            "gateways": {"ingress": {"serviceType": "NodePort", "ports": []}},
            "useMCP": False,
        },
        namespace="mesh",
    )
    assert s.include_ip_ranges == "*"
    assert (s.pilot.image, s.pilot.replica_count, s.pilot.max_replicas) == ("my/pilot:x", 1, 3)
    # An explicit empty list is a choice (exclude nothing); only an unset one defaults.
    assert s.sidecar_injector.init_cni_configuration.exclude_namespaces == []
    assert s.tracing.zipkin.address == "jaeger.tracing:9411"
    assert s.gateways.ingress.service_type == "NodePort"
    assert len(s.gateways.ingress.ports) == 4
    assert s.use_mcp is False


@pytest.mark.parametrize(("given", "kept"), [("", ""), (".", "."), ("*", "*"), ("ns1", "*")])
def test_default_config_visibility_is_normalised_like_the_source(given: str, kept: str) -> None:
    assert (
        v.istio_spec({"defaultConfigVisibility": given}, namespace=NS).default_config_visibility
        == kept
    )


def test_1_2_knobs_decode() -> None:
    s = v.istio_spec(sample("002_istio_1_2_knobs.yaml")["spec"], namespace=NS)
    assert s.citadel.health_check is True
    assert s.citadel.workload_cert_ttl == "2160h"
    assert s.sidecar_injector.rewrite_app_http_probe is True
    assert (
        s.sidecar_injector.never_inject_selector[0]["matchExpressions"][0]["operator"] == "Exists"
    )
    assert s.sidecar_injector.always_inject_selector == [{"matchLabels": {"inject": "always"}}]
    assert s.proxy.log_level == "info"


def _wire_fields(cls: type[msgspec.Struct]) -> dict[str, set[str]]:
    """Encoded field names per struct class, over the whole type tree."""
    out: dict[str, set[str]] = {}

    def walk(t: mi.Type) -> None:
        if isinstance(t, mi.StructType):
            if t.cls.__name__ in out:
                return
            out[t.cls.__name__] = {f.encode_name for f in t.fields}
            for f in t.fields:
                walk(f.type)
        elif isinstance(t, mi.UnionType):
            for x in t.types:
                walk(x)
        elif isinstance(t, mi.ListType):
            walk(t.item_type)
        elif isinstance(t, mi.DictType):
            walk(t.value_type)

    walk(mi.type_info(cls))
    return out


def test_wire_names_are_the_sources() -> None:
    names = _wire_fields(v.IstioSpec)
    assert {
        "version",
        "mtls",
        "includeIPRanges",
        "excludeIPRanges",
        "autoInjectionNamespaces",
        "controlPlaneSecurityEnabled",
        "defaultResources",
        "sds",
        "pilot",
        "citadel",
        "galley",
        "gateways",
        "mixer",
        "sidecarInjector",
        "nodeAgent",
        "proxy",
        "proxyInit",
        "watchOneNamespace",
        "useMCP",
        "defaultConfigVisibility",
        "watchAdapterCRDs",
        "defaultPodDisruptionBudget",
        "outboundTrafficPolicy",
        "tracing",
        "imagePullPolicy",
        "meshExpansion",
        "multiMesh",
        "istioCoreDNS",
        "localityLB",
    } == names["IstioSpec"]
    assert {"enabled", "ingress", "egress", "k8singress"} == names["GatewaysConfiguration"]
    assert {
        "enabled",
        "replicaCount",
        "minReplicas",
        "maxReplicas",
        "serviceType",
        "loadBalancerIP",
        "serviceAnnotations",
        "serviceLabels",
        "sds",
        "ports",
        "applicationPorts",
        "requestedNetworkView",
        "resources",
        "nodeSelector",
        "affinity",
        "tolerations",
    } == names["GatewayConfiguration"]
    assert {"caSecretName", "healthCheck", "workloadCertTTL", "maxWorkloadCertTTL"} <= names[
        "CitadelConfiguration"
    ]
    assert {
        "init",
        "initCNIConfiguration",
        "rewriteAppHTTPProbe",
        "autoInjectionPolicyEnabled",
        "enableNamespacesByDefault",
        "neverInjectSelector",
        "alwaysInjectSelector",
    } <= names["SidecarInjectorConfiguration"]
    assert {
        "enabled",
        "image",
        "binDir",
        "confDir",
        "excludeNamespaces",
        "logLevel",
        "affinity",
    } == names["InitCNIConfiguration"]
    assert {
        "image",
        "privileged",
        "enableCoreDump",
        "logLevel",
        "componentLogLevel",
        "dnsRefreshRate",
        "resources",
    } == names["ProxyConfiguration"]
    assert {"enabled", "udsPath", "useTrustworthyJwt", "useNormalJwt", "customTokenDirectory"} == (
        names["SDSConfiguration"]
    )
    assert {"enabled", "tracer", "zipkin", "lightstep", "datadog"} == names["TracingConfiguration"]
    assert {"address", "accessToken", "secure", "cacertPath"} == names["LightstepConfiguration"]
    assert {"enabled", "image", "pluginImage", "replicaCount"} <= names["IstioCoreDNSConfiguration"]
    assert {"enabled", "distribute", "failover"} == names["LocalityLBConfiguration"]
    assert {"from", "to"} == names["LocalityLBDistribute"] == names["LocalityLBFailover"]
    remote = _wire_fields(v.RemoteIstioSpec)
    assert {
        "includeIPRanges",
        "excludeIPRanges",
        "enabledServices",
        "autoInjectionNamespaces",
        "defaultResources",
        "citadel",
        "sidecarInjector",
        "proxy",
        "proxyInit",
    } == remote["RemoteIstioSpec"]
    assert {"name", "labelSelector", "podIPs", "ports"} == remote["IstioService"]


def test_wire_form_omits_unset_fields_and_round_trips() -> None:
    spec = v.istio_spec({}, namespace=NS)
    wire = v.to_builtins(spec)
    # Like Go's omitempty: an unset pattern-constrained string is not written out.
    assert "lightstep" not in wire.get("tracing", {})
    assert wire["tracing"]["zipkin"]["address"] == "zipkin.istio-system:9411"
    assert v.istio_spec(wire, namespace=NS) == spec


def test_locality_lb_decodes_from_keyword() -> None:
    s = v.istio_spec(sample("002_locality_distribute.yaml")["spec"], namespace=NS)
    assert s.locality_lb is not None
    assert s.locality_lb.enabled is True
    assert s.locality_lb.distribute[0].from_ == "europe-west2/*"
    assert s.locality_lb.distribute[0].to == {"eu-north-1/*": 10, "europe-west2/*": 90}


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        ({"pilot": {"replicaCount": "two"}}, "spec.pilot.replicaCount", "Expected `int`"),
        ({"pilot": {"replicaCount": -1}}, "spec.pilot.replicaCount", ">= 0"),
        ({"mtls": "yes"}, "spec.mtls", "Expected `bool`"),
        ({"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy", "Invalid enum value"),
        ({"proxy": {"logLevel": "loud"}}, "spec.proxy.logLevel", "Invalid enum value"),
        ({"proxy": {"dnsRefreshRate": "5m"}}, "spec.proxy.dnsRefreshRate", '"5m" is not a number of seconds'),
        ({"tracing": {"zipkin": {"address": "zipkin"}}}, "spec.tracing.zipkin.address", "the value is not host:port"),
        ({"tracing": {"tracer": "jaeger"}}, "spec.tracing.tracer", "Invalid enum value"),
        ({"version": "latest"}, "spec.version", '"latest" is not an Istio version'),
        (
            {"gateways": {"ingress": {"serviceType": "External"}}},
            "spec.gateways.ingress.serviceType",
            "Invalid enum value",
        ),
        (
            {"gateways": {"egress": {"ports": [{"name": "x"}]}}},
            "spec.gateways.egress.ports[0]",
            "missing required field `port`",
        ),
        (
            {"outboundTrafficPolicy": {"mode": "DENY"}},
            "spec.outboundTrafficPolicy.mode",
            "Invalid enum value",
        ),
        (
            {"localityLB": {"distribute": [{"from": "a/*", "to": {"b/*": "ten"}}]}},
            "spec.localityLB.distribute[0].to[...]",
            "Expected `int`",
        ),
    ],
)
def test_bad_input_raises_spec_error_with_path(
    raw: dict[str, Any], path: str, fragment: str
) -> None:
    with pytest.raises(v.SpecError) as info:
        v.istio_spec(raw, namespace=NS)
    assert info.value.path == path
    assert fragment in info.value.message
    assert str(info.value).startswith(path + ": ")


def test_spec_error_never_echoes_the_value() -> None:
    with pytest.raises(v.SpecError) as info:
        v.istio_spec({"tracing": {"lightstep": {"accessToken": 12345678}}}, namespace=NS)
    assert info.value.path == "spec.tracing.lightstep.accessToken"
    assert "12345678" not in str(info.value)
    with pytest.raises(v.SpecError) as info:
        v.istio_spec({"tracing": {"lightstep": {"address": "tok-s3cr3t"}}}, namespace=NS)
    assert info.value.path == "spec.tracing.lightstep.address"
    assert "s3cr3t" not in str(info.value)


def test_non_object_spec_is_rejected() -> None:
    with pytest.raises(v.SpecError) as info:
        v.istio_spec(["not", "a", "spec"], namespace=NS)  # type: ignore[arg-type]
    assert info.value.path == "spec"
    assert v.istio_spec(None, namespace=NS).version == v.DEFAULT_VERSION


def test_unknown_fields_are_ignored_like_the_api_server_prunes_them() -> None:
    assert v.istio_spec({"meshPolicy": {"mtlsMode": "STRICT"}}, namespace=NS) == v.istio_spec(
        {}, namespace=NS
    )


def test_remote_istio_samples_decode_with_defaults() -> None:
    for name in ("001_remoteistio_gke.yaml", "001_remoteistio_eks.yaml"):
        r = v.remote_istio_spec(sample(name)["spec"], namespace=NS)
        assert [svc.name for svc in r.enabled_services] == [
            "istio-pilot",
            "istio-policy",
            "istio-telemetry",
        ]
        assert r.include_ip_ranges == "*"
        assert r.citadel.enabled and r.citadel.replica_count == 1
        assert r.sidecar_injector.replica_count == 1
        assert r.auto_injection_namespaces == ["default"]
        # Images follow the master Istio: left empty for render to fill.
        assert r.sidecar_injector.image == "" and r.proxy.image == ""
        assert r.sidecar_injector.init_cni_configuration.exclude_namespaces == [NS]
        assert r.proxy.resources == v.DEFAULT_PROXY_RESOURCES


def test_remote_istio_requires_enabled_services() -> None:
    with pytest.raises(v.SpecError) as info:
        v.remote_istio_spec({"autoInjectionNamespaces": ["default"]}, namespace=NS)
    assert info.value.path == "spec"
    assert "enabledServices" in info.value.message
    with pytest.raises(v.SpecError) as info:
        v.remote_istio_spec({"enabledServices": [{"labelSelector": "a=b"}]}, namespace=NS)
    assert info.value.path == "spec.enabledServices[0]"


def test_remote_istio_service_fields() -> None:
    r = v.remote_istio_spec(
        {
            "enabledServices": [
                {
                    "name": "istio-pilot",
                    "labelSelector": "istio=pilot",
                    "podIPs": ["10.0.0.1"],
                    "ports": [{"name": "grpc", "port": 15010, "targetPort": "grpc"}],
                }
            ]
        },
        namespace=NS,
    )
    svc = r.enabled_services[0]
    assert svc.pod_ips == ["10.0.0.1"]
    assert svc.ports[0].target_port == "grpc"
    assert v.to_builtins(r)["enabledServices"][0]["podIPs"] == ["10.0.0.1"]


def test_status_uses_the_sources_capitalised_keys() -> None:
    st = v.Status(
        status="Available",
        gateway_address=["35.204.1.52"],
        conditions=[v.Condition(type="Ready", status="True", reason="Available")],
        observed_generation=3,
    )
    wire = v.to_builtins(st)
    assert wire["Status"] == "Available"
    assert wire["GatewayAddress"] == ["35.204.1.52"]
    assert wire["ErrorMessage"] == ""
    assert wire["observedGeneration"] == 3
    assert wire["conditions"][0]["type"] == "Ready"
    assert v.status(wire) == st
    assert v.status({"Status": "Bogus"}) == v.Status()


def test_specs_are_immutable() -> None:
    s = v.istio_spec({}, namespace=NS)
    with pytest.raises(AttributeError):
        s.mtls = True  # type: ignore[misc]
    assert msgspec.structs.replace(s, mtls=True).mtls is True


def test_version_helpers() -> None:
    assert v.version_family("1.2.8") == "1.2"
    assert v.version_family("1.10.0") == "1.10"
    assert v.version_family("x") == ""
    assert v.image_tag_for("1.1.3") == "1.1.14"
    assert v.image_tag_for("1.2.0") == "1.2.8"
    assert v.image_tag_for("1.0.0") == "1.2.8"
