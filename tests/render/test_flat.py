"""Flat-network federation of ``enabledServices`` (seed 000): selector-less Services and
Endpoints on the remote, their addresses, ports, determinism and schema validity."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from federationd.api import v1beta1
from federationd.render import flat
from federationd.render.flat import EnabledServiceError, ServiceAddresses, render_enabled_services
from federationd.render.objects import (
    COMPONENT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    canonical_json,
    ref,
)

NS = "istio-system"
K8S_VERSION = "1.30.0"

# The source's flat-network sample: control-plane services selected by label.
SAMPLE: dict[str, Any] = {
    "enabledServices": [
        {"name": "istio-pilot", "labelSelector": "istio=pilot"},
        {"name": "istio-policy", "labelSelector": "istio-mixer-type=policy"},
        {"name": "istio-telemetry", "labelSelector": "istio-mixer-type=telemetry"},
    ]
}

PILOT = ServiceAddresses(
    ips=("10.8.0.12", "10.8.0.9", "10.8.0.12"),
    ports={"grpc-xds": 15010, "https-xds": 15011, "http-legacy-discovery": 8080},
)
POLICY = ServiceAddresses(ips=("10.8.1.4",), ports={"grpc-mixer": 9091})


def _remote(raw: dict[str, Any]) -> v1beta1.RemoteIstioSpec:
    return v1beta1.remote_istio_spec(raw, namespace=NS)


@contextlib.contextmanager
def _no_error() -> Iterator[None]:
    yield


def _by_ref(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {ref(o): o for o in objs}


def _validate(objs: list[dict[str, Any]]) -> None:
    for o in objs:
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{ref(o)}: {e.message} at {list(e.path)}")


def test_sample_renders_service_and_endpoints_per_entry() -> None:
    objs = render_enabled_services(
        _remote(SAMPLE), namespace=NS, observed={"istio-pilot": PILOT, "istio-policy": POLICY}
    )
    by = _by_ref(objs)
    assert sorted(by) == [
        f"{kind}/{NS}/{name}"
        for kind in ("Endpoints", "Service")
        for name in ("istio-pilot", "istio-policy", "istio-telemetry")
    ]
    # Services come before Endpoints (canonical render order).
    assert [o["kind"] for o in objs] == ["Service"] * 3 + ["Endpoints"] * 3
    for o in objs:
        labels = o["metadata"]["labels"]
        assert labels[MANAGED_BY_LABEL] == MANAGED_BY
        assert labels[COMPONENT_LABEL] == flat.COMPONENT
        assert o["metadata"]["namespace"] == NS

    svc = by[f"Service/{NS}/istio-pilot"]
    # Selector-less and headless, like the source operator's.
    assert "selector" not in svc["spec"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"] == [
        {"name": "http-legacy-discovery", "port": 8080, "protocol": "TCP"},
        {"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
        {"name": "https-xds", "port": 15011, "protocol": "TCP"},
    ]
    ep = by[f"Endpoints/{NS}/istio-pilot"]
    # Numeric order, duplicates removed.
    assert ep["subsets"] == [
        {
            "addresses": [{"ip": "10.8.0.9"}, {"ip": "10.8.0.12"}],
            "ports": [
                {"name": "http-legacy-discovery", "port": 8080, "protocol": "TCP"},
                {"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
                {"name": "https-xds", "port": 15011, "protocol": "TCP"},
            ],
        }
    ]
    # A single unnamed-or-named port: no name needed, still paired.
    assert by[f"Endpoints/{NS}/istio-policy"]["subsets"][0]["ports"] == [
        {"name": "grpc-mixer", "port": 9091, "protocol": "TCP"}
    ]
    _validate(objs)


def test_entry_without_addresses_is_visible_but_empty() -> None:
    objs = render_enabled_services(_remote(SAMPLE), namespace=NS, observed={})
    by = _by_ref(objs)
    ep = by[f"Endpoints/{NS}/istio-telemetry"]
    assert "subsets" not in ep
    assert by[f"Service/{NS}/istio-telemetry"]["spec"] == {"clusterIP": "None"}
    _validate(objs)


def test_master_pod_restart_changes_only_that_endpoints() -> None:
    remote = _remote(SAMPLE)
    before = render_enabled_services(remote, namespace=NS, observed={"istio-pilot": PILOT})
    restarted = ServiceAddresses(ips=("10.8.0.9", "10.8.3.77"), ports=PILOT.ports)
    after = render_enabled_services(remote, namespace=NS, observed={"istio-pilot": restarted})
    changed = {ref(b) for b, a in zip(before, after, strict=True) if canonical_json(b) != canonical_json(a)}
    assert changed == {f"Endpoints/{NS}/istio-pilot"}
    ep = _by_ref(after)[f"Endpoints/{NS}/istio-pilot"]
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.8.0.9", "10.8.3.77"]


def test_deterministic_regardless_of_observation_order() -> None:
    remote = _remote(SAMPLE)
    a = render_enabled_services(
        remote,
        namespace=NS,
        observed={"istio-policy": POLICY, "istio-pilot": PILOT},
    )
    shuffled = ServiceAddresses(
        ips=tuple(reversed(PILOT.ips)), ports=dict(reversed(list(PILOT.ports.items())))
    )
    b = render_enabled_services(
        remote,
        namespace=NS,
        observed={"istio-pilot": shuffled, "istio-policy": POLICY},
    )
    assert canonical_json(a) == canonical_json(b)


def test_spec_ports_and_explicit_pod_ips_win() -> None:
    raw = {
        "enabledServices": [
            {
                "name": "istio-pilot",
                "podIPs": ["10.9.0.2", "", "10.9.0.1"],
                "ports": [
                    {"name": "grpc-xds", "port": 15010, "targetPort": 25010},
                    {"name": "https-xds", "port": 15011, "targetPort": "https-xds", "nodePort": 31011},
                    {"name": "http-monitoring", "port": 15014, "protocol": "TCP"},
                ],
            }
        ]
    }
    objs = render_enabled_services(
        _remote(raw),
        namespace=NS,
        observed={"istio-pilot": ServiceAddresses(ips=("10.8.0.9",), ports={"https-xds": 25011})},
        gateway_addresses=("203.0.113.10",),
        gateway_mode=True,  # pinned pod IPs are used even in gateway mode
    )
    by = _by_ref(objs)
    svc = by[f"Service/{NS}/istio-pilot"]
    assert svc["spec"]["ports"] == [
        {"name": "grpc-xds", "port": 15010, "protocol": "TCP", "targetPort": 25010},
        # nodePort is meaningless (and invalid) on a headless Service: dropped
        {"name": "https-xds", "port": 15011, "protocol": "TCP", "targetPort": "https-xds"},
        {"name": "http-monitoring", "port": 15014, "protocol": "TCP"},
    ]
    subset = by[f"Endpoints/{NS}/istio-pilot"]["subsets"][0]
    assert subset["addresses"] == [{"ip": "10.9.0.1"}, {"ip": "10.9.0.2"}]
    # The pods' ports: an integer targetPort, a named one through the observed ports,
    # else the service port.
    assert [(p["name"], p["port"]) for p in subset["ports"]] == [
        ("grpc-xds", 25010),
        ("https-xds", 25011),
        ("http-monitoring", 15014),
    ]
    _validate(objs)


def test_gateway_mode_points_at_the_master_gateway() -> None:
    raw = {
        "enabledServices": [
            {"name": "istio-pilot", "ports": [{"name": "https-xds", "port": 15011, "targetPort": 25011}]},
            {"name": "istio-policy"},
        ]
    }
    objs = render_enabled_services(
        _remote(raw),
        namespace=NS,
        observed={"istio-pilot": PILOT, "istio-policy": POLICY},
        gateway_addresses=("203.0.113.10", "198.51.100.7", "203.0.113.10"),
        gateway_mode=True,
    )
    by = _by_ref(objs)
    pilot = by[f"Endpoints/{NS}/istio-pilot"]["subsets"][0]
    assert pilot["addresses"] == [{"ip": "198.51.100.7"}, {"ip": "203.0.113.10"}]
    # The gateway listens on the service port, not the pod's.
    assert pilot["ports"] == [{"name": "https-xds", "port": 15011, "protocol": "TCP"}]
    policy = by[f"Endpoints/{NS}/istio-policy"]["subsets"][0]
    assert policy["addresses"] == [{"ip": "198.51.100.7"}, {"ip": "203.0.113.10"}]
    assert policy["ports"] == [{"name": "grpc-mixer", "port": 9091, "protocol": "TCP"}]
    _validate(objs)


def test_gateway_mode_without_gateway_address_is_empty() -> None:
    objs = render_enabled_services(
        _remote(SAMPLE), namespace=NS, observed={"istio-pilot": PILOT}, gateway_mode=True
    )
    assert all("subsets" not in o for o in objs if o["kind"] == "Endpoints")


def test_unnamed_ports_get_names_when_there_are_several() -> None:
    raw = {"enabledServices": [{"name": "echo", "ports": [{"port": 80}, {"port": 8080, "protocol": "UDP"}]}]}
    objs = render_enabled_services(
        _remote(raw),
        namespace=NS,
        observed={"echo": ServiceAddresses(ips=("10.8.0.5",), ports={"80": 80})},
    )
    svc = _by_ref(objs)[f"Service/{NS}/echo"]
    assert [p["name"] for p in svc["spec"]["ports"]] == ["tcp-80", "udp-8080"]
    _validate(objs)
    # Observed unnamed single port (keyed by its number): left unnamed.
    objs = render_enabled_services(
        _remote({"enabledServices": [{"name": "echo"}]}),
        namespace=NS,
        observed={"echo": ServiceAddresses(ips=("10.8.0.5",), ports={"80": 80})},
    )
    ep = _by_ref(objs)[f"Endpoints/{NS}/echo"]
    assert ep["subsets"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]
    _validate(objs)


def test_ipv6_pod_ips_sort_after_ipv4() -> None:
    objs = render_enabled_services(
        _remote({"enabledServices": [{"name": "echo", "podIPs": ["fd00::2", "10.0.0.1"]}]}),
        namespace=NS,
        observed={},
    )
    ep = _by_ref(objs)[f"Endpoints/{NS}/echo"]
    assert ep["subsets"][0]["addresses"] == [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}]
    _validate(objs)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"enabledServices": [{"name": "echo", "podIPs": ["10.0.0.1", "not-an-ip.example"]}]},
         "spec.enabledServices[0].podIPs[1]"),
        ({"enabledServices": [{"name": "Echo_1"}]}, "spec.enabledServices[0].name"),
        ({"enabledServices": [{"name": "echo"}, {"name": "echo"}]}, "spec.enabledServices[1].name"),
    ],
)
def test_bad_entries_are_refused_with_the_field(raw: dict[str, Any], path: str) -> None:
    # The CRD schema (and the spec decoder generated with it) refuses a bad address or
    # name first; render refuses what reaches it anyway (a spec built in code).
    with pytest.raises(v1beta1.SpecError) if path != "spec.enabledServices[1].name" else _no_error():
        _remote(raw)
    spec = v1beta1.RemoteIstioSpec(enabled_services=[  # constructors do not validate
        v1beta1.IstioService(name=e["name"], pod_ips=e.get("podIPs", [])) for e in raw["enabledServices"]])
    with pytest.raises(EnabledServiceError) as info:
        render_enabled_services(spec, namespace=NS, observed={})
    assert info.value.path == path
    # An address is never echoed back.
    assert "not-an-ip" not in str(info.value)


def test_render_does_not_mutate_its_inputs() -> None:
    observed = {"istio-pilot": PILOT}
    snapshot = copy.deepcopy(observed)
    remote = _remote(SAMPLE)
    render_enabled_services(remote, namespace=NS, observed=observed)
    assert observed == snapshot
    assert remote == _remote(SAMPLE)


def test_validator_catches_a_broken_endpoints() -> None:
    """The schema check above can fail: an unknown field is an error in strict mode."""
    objs = render_enabled_services(_remote(SAMPLE), namespace=NS, observed={"istio-pilot": PILOT})
    ep = copy.deepcopy(next(o for o in objs if o["kind"] == "Endpoints" and o["metadata"]["name"] == "istio-pilot"))
    ep["subsets"][0]["adresses"] = ep["subsets"][0].pop("addresses")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ep, K8S_VERSION, strict=True)
