"""derive: desired objects and status from the folded log."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml

from events import types as ev
from events.types import ClusterName
from federationd.projections import derive as d
from federationd.projections.derive import derive, desired_hash, rfc3339
from federationd.projections.validate import UNSUPPORTED_VERSION

from .helpers import (
    GATEWAY_FEDERATION,
    MASTER,
    SEED_000,
    Log,
    applied,
    istio,
    namespace,
    workloads_ready,
)

CM = "v1/ConfigMap/istio-system/istio"
MP = "authentication.istio.io/v1alpha1/MeshPolicy//default"
DR = "networking.istio.io/v1alpha3/DestinationRule/istio-system/default"
NS_DEFAULT = "v1/Namespace//default"


def _converge(log: Log) -> None:
    """Record every desired master object as applied with its current hash, and its
    workloads as rolled out."""
    desired = derive(log.state).clusters["master"]
    for key, obj in desired.objects.items():
        log.add(applied(key, obj.content_hash))
    log.add(*workloads_ready(desired.objects))


def _status(log: Log, name: str = "istio") -> dict[str, object]:
    return derive(log.state).statuses[f"Istio/istio-system/{name}"].status


def test_seed_000_sample_renders_mesh_objects_and_labels_existing_namespaces() -> None:
    log = Log()
    log.add(istio(SEED_000))
    objs = derive(log.state).clusters["master"].objects
    assert CM in objs and MP in objs
    assert DR not in objs  # mTLS off
    assert NS_DEFAULT not in objs  # does not exist yet: labelled when it appears
    log.add(namespace("default"))
    objs = derive(log.state).clusters["master"].objects
    ns = objs[NS_DEFAULT]
    assert ns.patch and ns.obj["metadata"]["labels"]["istio-injection"] == "enabled"
    assert ns.reasons == (1, 2)  # the spec and the namespace
    assert objs[MP].obj["spec"] == {"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}
    assert all(
        o.obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "federationd"
        for o in objs.values()
        if not o.patch
    )


def test_mtls_toggles_the_destination_rules() -> None:
    log = Log()
    log.add(istio({**SEED_000, "mtls": True}))
    objs = derive(log.state).clusters["master"].objects
    assert DR in objs and "networking.istio.io/v1alpha3/DestinationRule/istio-system/api-server" in objs
    assert objs[MP].obj["spec"] == {"peers": [{"mtls": {}}]}
    log.add(istio(SEED_000, generation=2))
    objs = derive(log.state).clusters["master"].objects
    assert DR not in objs


def test_status_moves_created_reconciling_available_and_back() -> None:
    log = Log()
    log.add(istio(SEED_000))
    assert _status(log)["Status"] == d.CREATED
    first = next(iter(derive(log.state).clusters["master"].objects.values()))
    log.add(applied(first.key, first.content_hash))
    assert _status(log)["Status"] == d.RECONCILING
    _converge(log)
    st = _status(log)
    assert st["Status"] == d.AVAILABLE and st["observedGeneration"] == 1
    # MeshAnalyzed: the analyzer's checks on the derived mesh found nothing
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"Reconciled": "True", "Available": "True", "MeshAnalyzed": "True"}  # type: ignore[attr-defined]
    log.add(ev.ObjectDrifted(cluster=MASTER, key=CM, time=3000, deleted=True))
    assert _status(log)["Status"] == d.RECONCILING
    _converge(log)
    assert _status(log)["Status"] == d.AVAILABLE


def test_a_failed_write_of_the_current_content_is_reported() -> None:
    log = Log()
    log.add(istio(SEED_000))
    _converge(log)
    log.add(istio({**SEED_000, "mtls": True}, generation=2))
    h = derive(log.state).clusters["master"].objects[DR].content_hash
    log.add(ev.ActuationFailed(cluster=MASTER, key=DR, time=5, verb="apply", content_hash=h, latency=0.1, error="the server rejected it"))
    st = _status(log)
    assert st["Status"] == d.RECONCILE_FAILED and "rejected" in str(st["ErrorMessage"])


def test_unsupported_version_changes_nothing_and_says_why() -> None:
    log = Log()
    log.add(istio(SEED_000))
    _converge(log)
    before = derive(log.state).clusters
    log.add(istio({**SEED_000, "version": "1.0.6", "mtls": True}, generation=2))
    after = derive(log.state)
    assert after.clusters == before
    st = after.statuses["Istio/istio-system/istio"].status
    assert st["Status"] == d.RECONCILE_FAILED and st["ErrorMessage"] == UNSUPPORTED_VERSION
    assert st["observedGeneration"] == 2


def test_an_invalid_first_spec_holds_the_cluster() -> None:
    log = Log()
    log.add(istio({"version": "0.8"}))
    c = derive(log.state).clusters["master"]
    assert c.hold and c.objects == {} and c.hold_reason == UNSUPPORTED_VERSION


def test_only_the_oldest_istio_is_managed() -> None:
    log = Log()
    log.add(istio(SEED_000, name="b", created="2026-01-01T00:00:00Z", uid="b"))
    log.add(istio({**SEED_000, "mtls": True}, name="a", created="2026-01-02T00:00:00Z", uid="a"))
    out = derive(log.state)
    assert DR not in out.clusters["master"].objects  # b (mtls off) is managed
    assert out.statuses["Istio/istio-system/a"].status["Status"] == d.UNMANAGED
    assert "istio-system/b" in str(out.statuses["Istio/istio-system/a"].status["ErrorMessage"])
    log.add(ev.IstioRemoved(cluster=MASTER, key="", time=9, namespace="istio-system", name="b"))
    out = derive(log.state)
    assert DR in out.clusters["master"].objects  # a takes over


def test_removed_objects_keep_the_status_reconciling_until_deleted() -> None:
    log = Log()
    log.add(istio({**SEED_000, "mtls": True}))
    _converge(log)
    log.add(istio(SEED_000, generation=2))
    _converge(log)
    assert _status(log)["Status"] == d.RECONCILING  # the DestinationRules are still there
    log.add(applied(DR, "x", verb="delete"))
    log.add(applied("networking.istio.io/v1alpha3/DestinationRule/istio-system/api-server", "x", verb="delete"))
    assert _status(log)["Status"] == d.AVAILABLE


def _master_and_remote(spec: dict[str, object], *remote_gateway: ev.Event) -> Log:
    """The Istio of ``spec`` with a gateway address on the master, a RemoteIstio
    ``remote-eu``, and the remote's gateway facts (not yet its identity)."""
    log = Log()
    log.add(istio(spec))
    log.add(
        ev.GatewayAddressesObserved(cluster=MASTER, key="", time=1, namespace="istio-system", name="istio-ingressgateway", service_type="LoadBalancer", ips=("192.0.2.1",)),
        ev.RemoteIstioSpecChanged(cluster=MASTER, key="", time=1, namespace="istio-system", name="remote-eu", uid="r", generation=1, spec={"enabledServices": []}),
        *remote_gateway,
    )
    return log


def test_gateway_address_and_mesh_networks_with_a_remote() -> None:
    log = _master_and_remote(
        GATEWAY_FEDERATION,
        ev.GatewayAddressesObserved(cluster=ClusterName("remote-eu"), key="", time=1, namespace="istio-system", name="istio-ingressgateway", service_type="LoadBalancer", hostnames=("lb.eu",)),
        ev.HostnameResolved(cluster=ClusterName("remote-eu"), key="", time=1, hostname="lb.eu", ips=("198.51.100.7",)),
    )
    # not announced before it is known which cluster the RemoteIstio reaches
    assert "remote-eu" not in str(derive(log.state).clusters["master"].objects[CM].obj["data"].get("meshNetworks"))
    log.add(ev.ClusterIdentityObserved(cluster=ClusterName("remote-eu"), key="Namespace//kube-system", time=1, uid="uid-eu"))
    out = derive(log.state)
    assert out.statuses["Istio/istio-system/istio"].status["GatewayAddress"] == ["192.0.2.1"]
    remote = out.statuses["RemoteIstio/istio-system/remote-eu"].status
    assert remote["GatewayAddress"] == ["198.51.100.7"]
    assert "kubeconfig" in str(remote["ErrorMessage"])
    cm = out.clusters["master"].objects[CM]
    nets = yaml.safe_load(cm.obj["data"]["meshNetworks"])["networks"]
    assert nets["master"]["gateways"] == [{"address": "192.0.2.1", "port": 443}]
    assert nets["remote-eu"]["gateways"] == [{"address": "198.51.100.7", "port": 443}]
    assert 5 in cm.reasons  # the resolution


def test_without_mesh_expansion_remotes_share_a_flat_network() -> None:
    """The source operator sets meshNetworks only with ``meshExpansion``
    (``istio_controller.go``); without it the remotes are on the master's flat network,
    and announcing their gateways would route cross-cluster traffic to gateways that
    have no ``*.local`` passthrough listener."""
    log = _master_and_remote(
        SEED_000,
        ev.GatewayAddressesObserved(cluster=ClusterName("remote-eu"), key="", time=1, namespace="istio-system", name="istio-ingressgateway", service_type="LoadBalancer", ips=("198.51.100.7",)),
        ev.ClusterIdentityObserved(cluster=ClusterName("remote-eu"), key="Namespace//kube-system", time=1, uid="uid-eu"),
    )
    cm = derive(log.state).clusters["master"].objects[CM]
    assert (yaml.safe_load(cm.obj["data"]["meshNetworks"]) or {}).get("networks") in (None, {})


def test_derive_is_deterministic() -> None:
    a, b = Log(), Log()
    for log in (a, b):
        log.add(istio(SEED_000), namespace("default"))
    assert desired_hash(derive(a.state)) == desired_hash(derive(b.state))
    a.add(namespace("other"))
    assert desired_hash(derive(a.state)) == desired_hash(derive(b.state))  # not in the list
    a.add(istio({**SEED_000, "mtls": True}, generation=2))
    assert desired_hash(derive(a.state)) != desired_hash(derive(b.state))


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(951782400) == "2000-02-29T00:00:00Z"
    for t in (1795449600.7, 4102444799, 1709164800):
        expected = datetime.fromtimestamp(int(t), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert rfc3339(t) == expected


def test_invalid_locality_weights_change_nothing_and_say_why() -> None:
    log = Log()
    good = {"from": "eu/*", "to": {"eu/*": 90, "us/*": 10}}
    log.add(istio({**SEED_000, "localityLB": {"enabled": True, "distribute": [good]}}))
    _converge(log)
    before = derive(log.state).clusters
    mesh = yaml.safe_load(before["master"].objects[CM].obj["data"]["mesh"])
    assert mesh["localityLbSetting"]["distribute"][0]["to"] == {"eu/*": 90, "us/*": 10}
    bad = {"from": "eu/*", "to": {"eu/*": 90, "us/*": 20}}
    log.add(istio({**SEED_000, "localityLB": {"enabled": True, "distribute": [bad]}}, generation=2))
    after = derive(log.state)
    assert after.clusters == before
    st = after.statuses["Istio/istio-system/istio"].status
    assert st["Status"] == d.RECONCILE_FAILED
    assert "total locality weight 110 != 100" in str(st["ErrorMessage"])


def _remote(log: Log, spec: dict[str, object] | None = None) -> None:
    log.add(
        ev.RemoteIstioSpecChanged(cluster=MASTER, key="RemoteIstio/istio-system/remote-eu", time=1, namespace="istio-system", name="remote-eu", uid="r", generation=1, spec=spec or {"enabledServices": [{"name": "istio-pilot"}]}),
        ev.KubeconfigObserved(cluster=MASTER, key="Secret/istio-system/remote-eu", time=1, remote="remote-eu", server="https://r", fingerprint="f"),
        ev.ClusterIdentityObserved(cluster=ClusterName("remote-eu"), key="Namespace//kube-system", time=1, uid="uid-eu"),
    )


def _images(objs: dict[str, d.DesiredObject]) -> set[str]:
    out: set[str] = set()
    for o in objs.values():
        if o.obj["kind"] == "Deployment":
            out.update(c["image"] for c in o.obj["spec"]["template"]["spec"]["containers"])
    return out


def test_an_upgrade_propagates_to_remotes_and_an_unsupported_one_nowhere() -> None:
    log = Log()
    log.add(istio({**SEED_000, "version": "1.1.14"}))
    _remote(log)
    remote = derive(log.state).clusters["remote-eu"]
    assert remote.objects and all(i.endswith(":1.1.14") for i in _images(remote.objects))
    log.add(istio({**SEED_000, "version": "1.2.8"}, generation=2))
    out = derive(log.state)
    assert all(i.endswith(":1.2.8") for i in _images(out.clusters["remote-eu"].objects))
    assert all(i.endswith(":1.2.8") for i in _images(out.clusters["master"].objects))
    log.add(istio({**SEED_000, "version": "1.3.0"}, generation=3))
    assert derive(log.state).clusters == out.clusters


def test_remote_status_says_what_it_waits_for() -> None:
    log = Log()
    log.add(istio(SEED_000))
    log.add(ev.RemoteIstioSpecChanged(cluster=MASTER, key="", time=1, namespace="istio-system", name="remote-eu", uid="r", generation=1, spec={"enabledServices": []}))
    st = derive(log.state).statuses["RemoteIstio/istio-system/remote-eu"].status
    assert st["Status"] == d.RECONCILE_FAILED and "kubeconfig Secret istio-system/remote-eu" in str(st["ErrorMessage"])
    log.add(ev.KubeconfigObserved(cluster=MASTER, key="Secret/istio-system/remote-eu", time=1, remote="remote-eu", server="", fingerprint="f", problem="uses exec"))
    st = derive(log.state).statuses["RemoteIstio/istio-system/remote-eu"].status
    assert "kubeconfig rejected: uses exec" in str(st["ErrorMessage"])
    log.add(ev.KubeconfigObserved(cluster=MASTER, key="Secret/istio-system/remote-eu", time=1, remote="remote-eu", server="https://r", fingerprint="g"))
    log.add(ev.ClusterUnreachable(cluster=ClusterName("remote-eu"), key="", time=5, reason="connection refused or host unreachable"))
    st = derive(log.state).statuses["RemoteIstio/istio-system/remote-eu"].status
    assert st["ErrorMessage"] == "cluster unreachable: connection refused or host unreachable"
    log.add(ev.ClusterConnected(cluster=ClusterName("remote-eu"), key="", time=6, server="https://r"))
    st = derive(log.state).statuses["RemoteIstio/istio-system/remote-eu"].status
    assert st["Status"] == d.CREATED


def test_a_rule_naming_an_unobserved_locality_is_a_warning() -> None:
    log = Log()
    lb = {"enabled": True, "failover": [{"from": "europe-west1", "to": "us-central1"}]}
    log.add(istio({**SEED_000, "localityLB": lb}))
    log.add(ev.NodeLocalityObserved(cluster=MASTER, key="Node//n", time=1, node="n", region="europe-west1", zone="europe-west1-b"))
    _converge(log)
    st = _status(log)
    assert st["Status"] == d.AVAILABLE
    (warning,) = [c for c in st["conditions"] if c["type"] == "LocalitiesObserved"]  # type: ignore[attr-defined]
    assert "us-central1" in warning["message"] and warning["status"] == "False"
    # the analyzer's locality check says it too
    (analyzed,) = [c for c in st["conditions"] if c["type"] == "MeshAnalyzed"]  # type: ignore[attr-defined]
    assert analyzed["status"] == "False" and analyzed["reason"] == "WarningsFound" and "us-central1" in analyzed["message"]
    log.add(ev.NodeLocalityObserved(cluster=ClusterName("remote-us"), key="Node//m", time=1, node="m", region="us-central1", zone="us-central1-a"))
    assert [c["type"] for c in _status(log)["conditions"]] == ["Reconciled", "Available", "MeshAnalyzed"]  # type: ignore[attr-defined]


def test_a_nodeport_gateway_is_reached_through_its_nodes() -> None:
    log = Log()
    log.add(istio(SEED_000))
    log.add(
        ev.NodeLocalityObserved(cluster=MASTER, key="Node//n1", time=1, node="n1", region="r", addresses=("192.0.2.10", "10.0.0.10")),
        ev.GatewayAddressesObserved(cluster=MASTER, key="", time=1, namespace="istio-system", name="istio-ingressgateway", service_type="NodePort", node_ports={"tls": 31450, "https": 31390}, ports={"tls": 15443, "https": 443}),
    )
    addrs, port, seqs = d.gateway_addresses(log.state, "master", "istio-system")
    # the node port of "https" (443, the *.local AUTO_PASSTHROUGH listener), not of "tls"
    assert addrs == ["192.0.2.10"] and port == 31390 and seqs == (3, 2)
    assert derive(log.state).statuses["Istio/istio-system/istio"].status["GatewayAddress"] == addrs
