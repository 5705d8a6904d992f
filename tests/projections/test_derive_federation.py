"""derive, federation parts: enabledServices on the remote (flat network and gateway
mode), name clashes, stale load-balancer status on NodePort gateways, pending gateways."""

from __future__ import annotations

from typing import Any

from events import types as ev
from events.types import ClusterName
from federationd.projections import derive as d
from federationd.projections.derive import derive
from federationd.projections.state import secret_of

from .helpers import MASTER, SEED_000, Log, istio

REMOTE = ClusterName("remote-eu")
EP = "v1/Endpoints/istio-system/istio-pilot"
SVC = "v1/Service/istio-system/istio-pilot"


def _remote(log: Log, spec: dict[str, Any]) -> None:
    log.add(
        ev.RemoteIstioSpecChanged(cluster=MASTER, key="RemoteIstio/istio-system/remote-eu", time=1, namespace="istio-system", name="remote-eu", uid="r", generation=1, spec=spec),
        ev.KubeconfigObserved(cluster=MASTER, key="Secret/istio-system/remote-eu", time=1, remote="remote-eu", server="https://r", fingerprint="f"),
        ev.ClusterIdentityObserved(cluster=ClusterName("remote-eu"), key="Namespace//kube-system", time=1, uid="uid-eu"),
    )


def _pilot_pods(*ips: str) -> ev.PodAddressesObserved:
    return ev.PodAddressesObserved(cluster=MASTER, key="Endpoints/istio-system/istio-pilot", time=2, namespace="istio-system", service="istio-pilot", ips=ips, ports={"grpc-xds": 15010, "http-discovery": 8080})


def _ips(o: d.DesiredObject) -> list[str]:
    return [a["ip"] for s in o.obj.get("subsets") or [] for a in s["addresses"]]


def test_enabled_services_carry_the_masters_pod_ips_and_follow_them() -> None:
    log = Log()
    log.add(istio(SEED_000))
    _remote(log, {"enabledServices": [{"name": "istio-pilot"}]})
    objs = derive(log.state).clusters["remote-eu"].objects
    assert SVC in objs and _ips(objs[EP]) == []  # visible, resolving to nothing yet
    log.add(_pilot_pods("10.100.0.2", "10.100.0.1"))
    objs = derive(log.state).clusters["remote-eu"].objects
    assert _ips(objs[EP]) == ["10.100.0.1", "10.100.0.2"]
    assert "selector" not in objs[SVC].obj["spec"]
    assert log.state.seq in objs[EP].reasons  # explain names the pod addresses
    log.add(_pilot_pods("10.100.0.1", "10.100.0.9"))
    assert _ips(derive(log.state).clusters["remote-eu"].objects[EP]) == ["10.100.0.1", "10.100.0.9"]
    # another cluster's Endpoints of that name are not the master's
    log.add(ev.PodAddressesObserved(cluster=REMOTE, key="Endpoints/istio-system/istio-pilot", time=3, namespace="istio-system", service="istio-pilot", ips=("10.200.0.1",)))
    assert _ips(derive(log.state).clusters["remote-eu"].objects[EP]) == ["10.100.0.1", "10.100.0.9"]


def test_mesh_expansion_sends_enabled_services_through_the_masters_gateway() -> None:
    log = Log()
    log.add(istio({**SEED_000, "meshExpansion": True}))
    _remote(log, {"enabledServices": [{"name": "istio-pilot", "ports": [{"name": "grpc-xds", "port": 15010}]}]})
    log.add(
        _pilot_pods("10.100.0.1"),
        ev.GatewayAddressesObserved(cluster=MASTER, key="", time=1, namespace="istio-system", name="istio-ingressgateway", service_type="LoadBalancer", ips=("192.0.2.1",)),
    )
    ep = derive(log.state).clusters["remote-eu"].objects[EP]
    assert _ips(ep) == ["192.0.2.1"]
    assert ep.obj["subsets"][0]["ports"] == [{"name": "grpc-xds", "port": 15010, "protocol": "TCP"}]


def test_a_bad_entry_or_a_name_clash_holds_the_remote_and_says_why() -> None:
    log = Log()
    log.add(istio(SEED_000))
    _remote(log, {"enabledServices": [{"name": "istio-pilot", "podIPs": ["nope"]}]})
    out = derive(log.state)
    assert out.clusters["remote-eu"].hold
    msg = out.statuses["RemoteIstio/istio-system/remote-eu"].status["ErrorMessage"]
    assert "spec.enabledServices[0].podIPs[0]" in msg
    _remote(log, {"enabledServices": [{"name": "istio-ingressgateway"}]})
    out = derive(log.state)
    assert out.clusters["remote-eu"].hold
    assert "istio-system/istio-ingressgateway clashes" in out.clusters["remote-eu"].hold_reason


def test_a_nodeport_gateway_ignores_a_leftover_load_balancer_status() -> None:
    log = Log()
    log.add(istio(SEED_000))
    log.add(
        ev.NodeLocalityObserved(cluster=MASTER, key="Node//n1", time=1, node="n1", region="r", addresses=("192.0.2.10",)),
        ev.GatewayAddressesObserved(cluster=MASTER, key="", time=1, namespace="istio-system", name="istio-ingressgateway", service_type="NodePort", ips=("203.0.113.1",), node_ports={"tls": 31450, "https": 31390}, ports={"tls": 15443, "https": 443}),
    )
    assert d.gateway_addresses(log.state, "master", "istio-system")[:2] == (["192.0.2.10"], 31390)


def _conditions(log: Log, key: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in derive(log.state).statuses[key].status["conditions"]}


def test_a_gateway_without_an_address_is_pending_in_status() -> None:
    log = Log()
    log.add(istio(SEED_000))
    _remote(log, {"enabledServices": []})
    key = "RemoteIstio/istio-system/remote-eu"
    assert "not observed yet" in _conditions(log, key)["GatewayAddressAssigned"]["message"]
    log.add(ev.GatewayAddressesObserved(cluster=REMOTE, key="", time=1, namespace="istio-system", name="istio-ingressgateway", service_type="LoadBalancer", hostnames=("lb.eu",)))
    log.add(ev.HostnameResolved(cluster=REMOTE, key="", time=1, hostname="lb.eu", error="cannot resolve: gaierror"))
    cond = _conditions(log, key)["GatewayAddressAssigned"]
    assert cond["reason"] == "Pending" and "lb.eu (cannot resolve: gaierror)" in cond["message"]
    log.add(ev.HostnameResolved(cluster=REMOTE, key="", time=1, hostname="lb.eu", ips=("198.51.100.7",)))
    assert "GatewayAddressAssigned" not in _conditions(log, key)


def test_one_istio_remote_secret_may_hold_several_remotes() -> None:
    log = Log()
    key = "Secret/istio-system/istio-remote-secrets"
    log.add(
        ev.KubeconfigObserved(cluster=MASTER, key=key, time=1, remote="remote-eu", server="https://eu", fingerprint="e"),
        ev.KubeconfigObserved(cluster=MASTER, key=key, time=1, remote="remote-us", server="https://us", fingerprint="u"),
        ev.KubeconfigObserved(cluster=MASTER, key="Secret/istio-system/remote-ap", time=1, remote="remote-ap", server="https://ap", fingerprint="a"),
    )
    assert sorted(kc.remote for kc in log.state.kubeconfigs.values()) == ["remote-ap", "remote-eu", "remote-us"]
    assert "Secret/istio-system/remote-ap" in log.state.kubeconfigs  # the source format keeps the Secret's key
    assert {secret_of(k) for k in log.state.kubeconfigs} == {
        ("Secret", "istio-system", "istio-remote-secrets"), ("Secret", "istio-system", "remote-ap"),
    }
    log.add(ev.KubeconfigRemoved(cluster=MASTER, key=key, time=2, remote="remote-eu"))
    assert sorted(kc.remote for kc in log.state.kubeconfigs.values()) == ["remote-ap", "remote-us"]
