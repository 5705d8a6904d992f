"""The ``istio`` ConfigMap (mesh config, meshNetworks) and the mTLS objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from federationd.api import v1beta1 as v
from federationd.render import mesh
from federationd.render.objects import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MeshNetwork,
    NetworkGateway,
    RenderFacts,
    canonical_json,
)

NS = "istio-system"
SAMPLES = Path(__file__).resolve().parents[1] / "api" / "samples"


def spec(raw: dict[str, Any] | None = None, *, namespace: str = NS) -> v.IstioSpec:
    return v.istio_spec(raw or {}, namespace=namespace)


def sample(name: str) -> v.IstioSpec:
    return spec(yaml.safe_load((SAMPLES / name).read_text())["spec"])


def mesh_of(s: v.IstioSpec, *, namespace: str = NS, remote: bool = False) -> dict[str, Any]:
    cm = mesh.config_map(s, namespace=namespace, remote=remote)
    parsed = yaml.safe_load(cm["data"]["mesh"])
    assert parsed == mesh.mesh_config(s, namespace=namespace, remote=remote)
    return dict(parsed)


def test_seed_000_mesh_config() -> None:
    m = mesh_of(sample("000_istio.yaml"))
    d = m["defaultConfig"]
    assert d["controlPlaneAuthPolicy"] == "NONE"
    assert d["discoveryAddress"] == "istio-pilot.istio-system:15010"
    assert d["tracing"] == {"zipkin": {"address": "zipkin.istio-system:9411"}}
    assert m["enableTracing"] is True
    assert m["outboundTrafficPolicy"] == {"mode": "ALLOW_ANY"}
    assert m["configSources"] == [{"address": "istio-galley.istio-system.svc:9901"}]
    assert m["mixerCheckServer"] == "istio-policy.istio-system.svc.cluster.local:9091"
    assert m["mixerReportServer"] == "istio-telemetry.istio-system.svc.cluster.local:9091"
    assert m["disablePolicyChecks"] is False
    assert m["rootNamespace"] == NS
    assert m["ingressControllerMode"] == "OFF"
    assert m["sdsUdsPath"] == ""
    assert m["dnsRefreshRate"] == "300s"
    assert "localityLbSetting" not in m
    assert "defaultServiceExportTo" not in m


def test_control_plane_security() -> None:
    m = mesh_of(spec({"controlPlaneSecurityEnabled": True}))
    assert m["defaultConfig"]["controlPlaneAuthPolicy"] == "MUTUAL_TLS"
    assert m["defaultConfig"]["discoveryAddress"] == "istio-pilot.istio-system:15011"
    assert m["configSources"] == [
        {"address": "istio-galley.istio-system.svc:9901", "tlsSettings": {"mode": "ISTIO_MUTUAL"}}
    ]
    assert m["mixerCheckServer"] == "istio-policy.istio-system.svc.cluster.local:15004"
    assert m["mixerReportServer"] == "istio-telemetry.istio-system.svc.cluster.local:15004"


def test_remote_copy_points_at_the_masters_mixer() -> None:
    m = mesh_of(spec(), remote=True)
    assert m["mixerCheckServer"] == "istio-policy.istio-system:15004"
    assert m["mixerReportServer"] == "istio-telemetry.istio-system:15004"


def test_namespace_follows_the_cr() -> None:
    m = mesh_of(spec(namespace="mesh"), namespace="mesh")
    assert m["defaultConfig"]["discoveryAddress"] == "istio-pilot.mesh:15010"
    assert m["defaultConfig"]["tracing"]["zipkin"]["address"] == "zipkin.mesh:9411"
    assert m["rootNamespace"] == "mesh"


def test_without_mcp_there_is_no_config_source_and_without_mixer_no_policy_checks() -> None:
    m = mesh_of(spec({"useMCP": False, "mixer": {"enabled": False}}))
    assert "configSources" not in m
    assert "mixerCheckServer" not in m and "mixerReportServer" not in m
    assert m["disablePolicyChecks"] is True


@pytest.mark.parametrize(
    ("tracing", "expected"),
    [
        (
            {"tracer": "lightstep", "lightstep": {"address": "ls:8080", "accessToken": "t"}},
            {"lightstep": {"address": "ls:8080", "accessToken": "t", "secure": False}},
        ),
        (
            {
                "tracer": "lightstep",
                "lightstep": {"address": "ls:8080", "secure": True, "cacertPath": "/c"},
            },
            {
                "lightstep": {
                    "address": "ls:8080",
                    "accessToken": "",
                    "secure": True,
                    "cacertPath": "/c",
                }
            },
        ),
        ({"tracer": "datadog"}, {"datadog": {"address": "$(HOST_IP):8126"}}),
        (
            {"zipkin": {"address": "jaeger.tracing:9411"}},
            {"zipkin": {"address": "jaeger.tracing:9411"}},
        ),
    ],
)
def test_tracers(tracing: dict[str, Any], expected: dict[str, Any]) -> None:
    assert mesh_of(spec({"tracing": tracing}))["defaultConfig"]["tracing"] == expected


def test_tracing_off() -> None:
    m = mesh_of(spec({"tracing": {"enabled": False}}))
    assert m["enableTracing"] is False
    assert "tracing" not in m["defaultConfig"]


def test_outbound_policy_sds_and_k8s_ingress() -> None:
    m = mesh_of(
        spec(
            {
                "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
                "sds": {
                    "enabled": True,
                    "udsPath": "unix:/var/run/sds/uds_path",
                    "useNormalJwt": True,
                },
                "gateways": {"k8singress": {"enabled": True}},
            }
        )
    )
    assert m["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert m["sdsUdsPath"] == "unix:/var/run/sds/uds_path"
    assert m["sdsUseK8sSaJwt"] is True and m["enableSdsTokenMount"] is False
    assert m["ingressControllerMode"] == "STRICT"


def test_sds_settings_are_ignored_while_sds_is_off() -> None:
    m = mesh_of(spec({"sds": {"udsPath": "unix:/x", "useTrustworthyJwt": True}}))
    assert m["sdsUdsPath"] == "" and m["enableSdsTokenMount"] is False


def test_1_1_mesh_config_has_no_1_2_fields() -> None:
    m = mesh_of(sample("001_istio_multicluster.yaml"))
    assert "dnsRefreshRate" not in m
    assert m["defaultConfig"]["controlPlaneAuthPolicy"] == "MUTUAL_TLS"
    assert mesh_of(spec({"proxy": {"dnsRefreshRate": "10s"}}))["dnsRefreshRate"] == "10s"


@pytest.mark.parametrize(("given", "export"), [(".", "."), ("ns1", "*")])
def test_default_config_visibility(given: str, export: str) -> None:
    s = spec({"defaultConfigVisibility": given, "mtls": True})
    m = mesh_of(s)
    assert m["defaultServiceExportTo"] == [export]
    assert m["defaultVirtualServiceExportTo"] == [export]
    assert m["defaultDestinationRuleExportTo"] == [export]
    assert all(dr["spec"]["exportTo"] == ["*"] for dr in mesh.destination_rules(s, namespace=NS))


# --- locality -------------------------------------------------------------------------------


def test_seed_002_weighted_distribution_renders_exactly() -> None:
    m = mesh_of(sample("002_locality_distribute.yaml"))
    assert m["localityLbSetting"] == {
        "distribute": [
            {"from": "europe-west2/*", "to": {"eu-north-1/*": 10, "europe-west2/*": 90}},
            {"from": "eu-north-1/*", "to": {"eu-north-1/*": 90, "europe-west2/*": 10}},
        ]
    }
    text = mesh.config_map(sample("002_locality_distribute.yaml"), namespace=NS)["data"]["mesh"]
    assert (
        "localityLbSetting:\n"
        "  distribute:\n"
        "  - from: europe-west2/*\n"
        "    to:\n"
        "      eu-north-1/*: 10\n"
        "      europe-west2/*: 90\n"
        "  - from: eu-north-1/*\n"
        "    to:\n"
        "      eu-north-1/*: 90\n"
        "      europe-west2/*: 10\n"
    ) in text


def test_seed_002_failover_mode_renders_an_empty_setting() -> None:
    # Enabled without rules: Istio's default locality fail-over.
    assert mesh_of(sample("002_locality_failover.yaml"))["localityLbSetting"] == {}


def test_explicit_failover_and_disabled_locality() -> None:
    s = spec({"localityLB": {"enabled": True, "failover": [{"from": "us", "to": "eu"}]}})
    assert mesh_of(s)["localityLbSetting"] == {"failover": [{"from": "us", "to": "eu"}]}
    s = spec({"localityLB": {"enabled": False, "failover": [{"from": "us", "to": "eu"}]}})
    assert "localityLbSetting" not in mesh_of(s)
    # Both given: failover is dropped, as the source did (validation refuses it earlier).
    both = v.LocalityLBConfiguration(
        enabled=True,
        distribute=[v.LocalityLBDistribute(from_="us/*", to={"us/*": 100})],
        failover=[v.LocalityLBFailover(from_="us", to="eu")],
    )
    assert mesh.locality_lb_setting(both) == {"distribute": [{"from": "us/*", "to": {"us/*": 100}}]}


# --- meshNetworks ---------------------------------------------------------------------------

NETWORKS = (
    MeshNetwork(
        name="network-master",
        from_registry=("Kubernetes",),
        gateways=(NetworkGateway(address="35.204.1.52", port=443),),
    ),
    MeshNetwork(
        name="istio-eks",
        from_registry=("istio-eks",),
        gateways=(
            NetworkGateway(address="35.177.214.60", port=443),
            NetworkGateway(address="3.8.50.24", port=443),
        ),
    ),
    MeshNetwork(name="local-network", from_cidr=("127.0.0.1/8",)),
    MeshNetwork(
        name="by-name",
        from_registry=("c1",),
        gateways=(
            NetworkGateway(
                registry_service_name="istio-ingressgateway.istio-system.svc.cluster.local",
                port=15443,
            ),
        ),
    ),
)


def test_mesh_networks_from_input() -> None:
    assert mesh.mesh_networks(NETWORKS) == {
        "networks": {
            "network-master": {
                "endpoints": [{"fromRegistry": "Kubernetes"}],
                "gateways": [{"address": "35.204.1.52", "port": 443}],
            },
            "istio-eks": {
                "endpoints": [{"fromRegistry": "istio-eks"}],
                "gateways": [
                    {"address": "35.177.214.60", "port": 443},
                    {"address": "3.8.50.24", "port": 443},
                ],
            },
            "local-network": {"endpoints": [{"fromCidr": "127.0.0.1/8"}]},
            "by-name": {
                "endpoints": [{"fromRegistry": "c1"}],
                "gateways": [
                    {
                        "registryServiceName": "istio-ingressgateway.istio-system.svc.cluster.local",
                        "port": 15443,
                    }
                ],
            },
        }
    }
    cm = mesh.config_map(spec(), namespace=NS, networks=NETWORKS)
    assert yaml.safe_load(cm["data"]["meshNetworks"]) == mesh.mesh_networks(NETWORKS)


def test_no_networks_is_an_empty_map() -> None:
    cm = mesh.config_map(spec(), namespace=NS)
    assert cm["data"]["meshNetworks"] == "networks: {}\n"


def test_duplicate_network_names_are_refused() -> None:
    with pytest.raises(ValueError, match="given twice"):
        mesh.mesh_networks([NETWORKS[0], NETWORKS[0]])


def test_a_gateway_without_an_address_is_refused() -> None:
    pending = MeshNetwork(name="pending", from_registry=("c2",), gateways=(NetworkGateway(),))
    with pytest.raises(ValueError, match="without an address"):
        mesh.mesh_networks([pending])


def test_mesh_networks_text_is_one_dump() -> None:
    """The text built from each network's memoised chunk is byte for byte one dump of the
    whole document (PyYAML's), and the document kept for the analysis is what parsing
    the text gives."""
    tricky = (
        *NETWORKS,
        MeshNetwork(name="yes", from_registry=("no",), gateways=(NetworkGateway(address="1.0", port=1),)),
        MeshNetwork(name="1e3", from_cidr=("10.0.0.0/8", "::1/128")),
        MeshNetwork(name="a: b", from_registry=("#x",)),
        MeshNetwork(name="Z-upper", from_registry=("r" * 300,)),
        MeshNetwork(name="empty"),
    )
    for networks in (tricky, tricky[:1], tricky[::-1], tuple(NETWORKS[1:])):
        text = mesh.mesh_networks_text(networks)
        one = yaml.safe_dump(mesh.mesh_networks(networks), sort_keys=True, default_flow_style=False, width=1000)
        assert text == one
        assert mesh.parsed_networks(text) == yaml.safe_load(text)
    assert mesh.mesh_networks_text(()) == "networks: {}\n"
    assert mesh.parsed_networks("networks: {other: {}}\n") is None  # not rendered here: parse it
    with pytest.raises(ValueError, match="given twice"):
        mesh.mesh_networks_text((NETWORKS[0], NETWORKS[0]))
    with pytest.raises(ValueError, match="without an address"):
        mesh.mesh_networks_text((MeshNetwork(name="pending", gateways=(NetworkGateway(),)),))


def test_a_moved_gateway_rebuilds_the_text_from_the_last_one() -> None:
    """A network list that differs from the last one in a gateway (the same names in the
    same places) is built from the last text, and is still byte for byte one dump."""
    networks = tuple(
        MeshNetwork(name=f"c{i}", from_registry=(f"c{i}",), gateways=(NetworkGateway(address=f"10.0.0.{i}"),))
        for i in range(12)
    )
    mesh.mesh_networks_text(networks)
    for k, i in enumerate((3, 11, 0)):
        moved = list(networks)
        moved[i] = MeshNetwork(name=f"c{i}", from_registry=(f"c{i}",), gateways=(NetworkGateway(address=f"192.0.2.{k}", port=15443),))
        networks = tuple(moved)
        text = mesh.mesh_networks_text(networks)
        assert text == yaml.safe_dump(mesh.mesh_networks(networks), sort_keys=True, default_flow_style=False, width=1000)
        assert f"address: 192.0.2.{k}" in text
        assert mesh.parsed_networks(text) == yaml.safe_load(text)
    renamed = (MeshNetwork(name="b-new", from_registry=("x",)), *networks[1:])
    text = mesh.mesh_networks_text(renamed)  # a name changed: built whole, in key order
    assert text == yaml.safe_dump(mesh.mesh_networks(renamed), sort_keys=True, default_flow_style=False, width=1000)
    with pytest.raises(ValueError, match="without an address"):
        mesh.mesh_networks_text((MeshNetwork(name="b-new", gateways=(NetworkGateway(),)), *networks[1:]))


def test_network_order_does_not_change_the_bytes() -> None:
    a = mesh.config_map(spec(), namespace=NS, networks=NETWORKS)
    b = mesh.config_map(spec(), namespace=NS, networks=tuple(reversed(NETWORKS)))
    assert canonical_json(a) == canonical_json(b)


# --- mTLS -----------------------------------------------------------------------------------


def test_strict_mtls() -> None:
    s = spec({"mtls": True})
    policy = mesh.mesh_policy(s)
    assert policy["apiVersion"] == "authentication.istio.io/v1alpha1"
    assert policy["kind"] == "MeshPolicy"
    assert policy["metadata"]["name"] == "default"
    assert "namespace" not in policy["metadata"]
    assert policy["spec"] == {"peers": [{"mtls": {}}]}
    rules = {r["metadata"]["name"]: r for r in mesh.destination_rules(s, namespace=NS)}
    assert set(rules) == {"default", "api-server"}
    assert rules["default"]["apiVersion"] == "networking.istio.io/v1alpha3"
    assert rules["default"]["metadata"]["namespace"] == NS
    assert rules["default"]["spec"] == {
        "host": "*.local",
        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
    }
    assert rules["api-server"]["spec"] == {
        "host": "kubernetes.default.svc.cluster.local",
        "trafficPolicy": {"tls": {"mode": "DISABLE"}},
    }


def test_permissive_without_mtls_and_no_destination_rules() -> None:
    s = spec({"mtls": False})
    assert mesh.mesh_policy(s)["spec"] == {"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}
    assert mesh.destination_rules(s, namespace=NS) == []


def test_render_master_and_remote() -> None:
    facts = RenderFacts(mesh_networks=NETWORKS)
    objs = mesh.render(spec({"mtls": True}), namespace=NS, facts=facts)
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("ConfigMap", "istio"),
        ("MeshPolicy", "default"),
        ("DestinationRule", "default"),
        ("DestinationRule", "api-server"),
    ]
    for o in objs:
        assert o["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    toggled = mesh.render(spec({"mtls": False}), namespace=NS, facts=facts)
    assert [o["kind"] for o in toggled] == ["ConfigMap", "MeshPolicy"]

    remote = mesh.render(
        spec({"mtls": True}), namespace=NS, facts=RenderFacts(cluster="istio-gke", role="remote")
    )
    assert [(o["kind"], o["metadata"]["name"]) for o in remote] == [("ConfigMap", "istio")]
    assert (
        yaml.safe_load(remote[0]["data"]["mesh"])["mixerCheckServer"]
        == "istio-policy.istio-system:15004"
    )


def test_rendering_is_deterministic() -> None:
    facts = RenderFacts(mesh_networks=NETWORKS)
    s = sample("002_locality_distribute.yaml")
    first = canonical_json(mesh.render(s, namespace=NS, facts=facts))
    again = canonical_json(
        mesh.render(
            v.istio_spec(
                yaml.safe_load((SAMPLES / "002_locality_distribute.yaml").read_text())["spec"],
                namespace=NS,
            ),
            namespace=NS,
            facts=facts,
        )
    )
    assert first == again
