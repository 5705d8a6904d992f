"""What ``kubectl get`` shows in the ERROR column of an Available CR: the warnings a user
must not miss (a version remapped to other images, a pending gateway, a locality rule
naming no observed locality), in one line; ``describe`` (the conditions) has each in full.
And a RemoteIstio that never connected has no network in ``meshNetworks``."""

from __future__ import annotations

import yaml

from events import types as ev
from events.types import ClusterName
from federationd.projections import derive as d
from federationd.projections.derive import derive

from .helpers import GATEWAY_FEDERATION, MASTER, SEED_000, Log, istio
from .test_derive import _converge, _status

REMOTE = ClusterName("remote-eu")


def _conditions(st: dict[str, object]) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in st["conditions"]}  # type: ignore[attr-defined,index]


def test_a_remapped_version_is_said_in_the_error_column() -> None:
    log = Log()
    log.add(istio({**SEED_000, "version": "1.2.2"}))
    _converge(log)
    st = _status(log)
    assert st["Status"] == d.AVAILABLE
    assert st["ErrorMessage"] == "warning: spec.version 1.2.2 runs the 1.2.8 images (the supported release of 1.2)"
    assert _conditions(st)["VersionAsRequested"]["reason"] == "Remapped"
    log.add(istio({**SEED_000, "version": "1.2.8"}, generation=2))
    _converge(log)
    st = _status(log)
    assert st["Status"] == d.AVAILABLE and st["ErrorMessage"] == ""
    assert "VersionAsRequested" not in _conditions(st)


def test_an_unobserved_locality_is_said_in_the_error_column() -> None:
    log = Log()
    lb = {"enabled": True, "failover": [{"from": "europe-west1", "to": "us-central1"}]}
    log.add(istio({**SEED_000, "localityLB": lb}))
    log.add(ev.NodeLocalityObserved(cluster=MASTER, key="Node//n", time=1, node="n", region="europe-west1", zone="europe-west1-b"))
    _converge(log)
    st = _status(log)
    assert st["Status"] == d.AVAILABLE
    assert str(st["ErrorMessage"]).startswith("warning: ") and "us-central1" in str(st["ErrorMessage"])
    assert "\n" not in str(st["ErrorMessage"])


def test_a_pending_gateway_is_said_in_the_error_column_and_a_network_needs_an_identity_and_a_gateway() -> None:
    """A RemoteIstio's network is announced once its cluster is identified (it may be a
    second name for a cluster in the mesh) and its gateway has an address (the operator's
    ``getMeshNetworks`` skips a cluster without one); a remote that becomes unreachable
    keeps its last known network."""
    log = Log()
    log.add(istio(GATEWAY_FEDERATION))
    log.add(
        ev.RemoteIstioSpecChanged(cluster=MASTER, key="", time=1, namespace="istio-system", name="remote-eu", uid="r", generation=1, spec={"enabledServices": []}),
        ev.KubeconfigObserved(cluster=MASTER, key="Secret/istio-system/remote-eu", time=1, remote="remote-eu", server="https://r", fingerprint="f"),
    )
    _converge(log)
    st = _status(log)
    assert st["Status"] == d.AVAILABLE
    assert str(st["ErrorMessage"]).startswith("warning: ") and "istio-ingressgateway" in str(st["ErrorMessage"])
    assert "GatewayAddressAssigned" in _conditions(st)

    def networks() -> dict[str, object]:
        cm = derive(log.state).clusters["master"].objects["v1/ConfigMap/istio-system/istio"].obj
        return dict((yaml.safe_load(cm["data"]["meshNetworks"]) or {}).get("networks") or {})

    assert "remote-eu" not in networks()  # never connected
    log.add(ev.ClusterConnected(cluster=REMOTE, key="", time=2, server="https://r"))
    assert "remote-eu" not in networks()  # connected, not identified yet (it may be a duplicate)
    log.add(ev.ClusterIdentityObserved(cluster=REMOTE, key="Namespace//kube-system", time=2, uid="uid-r"))
    assert networks() == {}  # identified, but no gateway address anywhere yet
    log.add(ev.GatewayAddressesObserved(cluster=REMOTE, key="", time=2, namespace="istio-system", name="istio-ingressgateway", service_type="LoadBalancer", ips=("198.51.100.7",)))
    assert set(networks()) == {"remote-eu"}  # the master's gateway has no address yet
    log.add(ev.ClusterUnreachable(cluster=REMOTE, key="", time=3, reason="connection refused by r:443"))
    assert "remote-eu" in networks()  # known, unreachable now: kept as last known
    log.add(ev.GatewayAddressesObserved(cluster=MASTER, key="", time=4, namespace="istio-system", name="istio-ingressgateway", service_type="LoadBalancer", ips=("192.0.2.1",)))
    assert set(networks()) == {"master", "remote-eu"}
    _converge(log)
    st = _status(log)
    assert st["ErrorMessage"] == "" and st["GatewayAddress"] == ["192.0.2.1"]
