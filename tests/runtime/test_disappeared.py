"""Each fact source says what went while the daemon was down: after a restart, the
first list is compared with the facts the log last reported (``facts.disappeared``),
with no per-type code in the daemon."""

from __future__ import annotations

from events import types as ev
from events.types import ClusterName
from federationd.actuators.trust import CACERTS
from federationd.watchers import facts

C = ClusterName("remote-a")
M = ClusterName("master")


def test_a_namespace_gone_while_down_is_removed_and_present_ones_are_not() -> None:
    remembered = [
        ev.NamespaceObserved(cluster=C, key="Namespace//a", time=0.0, name="a"),
        ev.NamespaceObserved(cluster=C, key="Namespace//b", time=0.0, name="b"),
        ev.NodeLocalityObserved(cluster=C, key="Node//n1", time=0.0, node="n1"),  # another source's
    ]
    out = facts.disappeared(facts.NAMESPACES, C, remembered, {("", "a")}, 5.0)
    assert out == [ev.NamespaceRemoved(cluster=C, key="Namespace//b", time=5.0, name="b")]


def test_workload_sources_sweep_only_their_own_kind() -> None:
    remembered = [
        ev.WorkloadReadinessObserved(cluster=C, key="Deployment/ns/x", time=0.0, kind="Deployment", namespace="ns", name="x", ready=True),
        ev.WorkloadReadinessObserved(cluster=C, key="DaemonSet/ns/y", time=0.0, kind="DaemonSet", namespace="ns", name="y", ready=True),
    ]
    out = facts.disappeared(facts.workloads("Deployment"), C, remembered, set(), 5.0)
    assert out == [ev.WorkloadRemoved(cluster=C, key="Deployment/ns/x", time=5.0, kind="Deployment", namespace="ns", name="x")]


def test_a_kubeconfig_secret_gone_names_each_remote_it_held() -> None:
    remembered = [
        ev.KubeconfigObserved(cluster=M, key="Secret/istio-system/multi", time=0.0, remote="r1", server="https://r1", fingerprint="f1"),
        ev.KubeconfigObserved(cluster=M, key="Secret/istio-system/multi", time=0.0, remote="r2", server="https://r2", fingerprint="f2"),
        ev.KubeconfigObserved(cluster=M, key="Secret/other/x", time=0.0, remote="x", server="https://x", fingerprint="f3"),
    ]
    out = facts.disappeared(facts.kubeconfig_secrets("istio-system"), M, remembered, set(), 5.0)
    assert sorted(e.remote for e in out if isinstance(e, ev.KubeconfigRemoved)) == ["r1", "r2"], out


def test_cacerts_and_endpoints_use_their_own_removal() -> None:
    remembered = [
        ev.CaSecretObserved(cluster=C, key="Secret/istio-system/cacerts", time=0.0, namespace="istio-system", name="cacerts", fingerprint="x", managed=True),
        ev.PodAddressesObserved(cluster=C, key="Endpoints/istio-system/pilot", time=0.0, namespace="istio-system", service="pilot", ips=("10.0.0.1",)),
    ]
    assert facts.disappeared(CACERTS, C, remembered, set(), 5.0) == [
        ev.CaSecretRemoved(cluster=C, key="Secret/istio-system/cacerts", time=5.0, namespace="istio-system", name="cacerts")
    ]
    out = facts.disappeared(facts.endpoints("istio-system"), C, remembered, set(), 5.0)
    assert out == [ev.PodAddressesObserved(cluster=C, key="Endpoints/istio-system/pilot", time=5.0, namespace="istio-system", service="pilot")]
