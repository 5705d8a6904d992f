"""The membership projection: every decision about which remotes are in the mesh is a
pure function of the log — joining, leaving, the clean-up deadline, finalizers, refusals
of a second name for one cluster — and so is reproduced by folding the log again."""

from __future__ import annotations

from events import types as ev
from events.types import ClusterName
from federationd.projections.derive import derive
from federationd.projections.membership import Membership
from federationd.projections.state import EMPTY, fold

from .helpers import MASTER, Log, Rec, istio, namespace

NS = "istio-system"
SPEC = {"version": "1.2.8", "mtls": True, "meshExpansion": True}  # gateway federation: networks


def remote_cr(name: str, *, deleting: bool = False, uid: str = "", t: float = 2000.0) -> ev.RemoteIstioSpecChanged:
    return ev.RemoteIstioSpecChanged(
        cluster=MASTER, key=f"RemoteIstio/{NS}/{name}", time=t, namespace=NS, name=name,
        uid=uid or f"uid-{name}", generation=1, spec={"enabledServices": []},
        creation_timestamp="2026-01-01T00:00:01Z", deleting=deleting,
    )


def kubeconfig(name: str, fp: str = "fp-1") -> ev.KubeconfigObserved:
    return ev.KubeconfigObserved(
        cluster=MASTER, key=f"Secret/{NS}/{name}", time=1.0, remote=name,
        server=f"https://{name}.example:6443", fingerprint=fp,
    )


def identity(cluster: str, uid: str) -> ev.ClusterIdentityObserved:
    return ev.ClusterIdentityObserved(cluster=ClusterName(cluster), key="Namespace//kube-system", time=1.0, uid=uid)


def applied_on(cluster: str, key: str) -> ev.ActuationApplied:
    return ev.ActuationApplied(cluster=ClusterName(cluster), key=key, time=3000.0, verb="apply", content_hash="h", latency=0.01)


def deleted_on(cluster: str, key: str) -> ev.ActuationApplied:
    return ev.ActuationApplied(cluster=ClusterName(cluster), key=key, time=3001.0, verb="delete", content_hash="", latency=0.01)


def acknowledge_master(log: Log) -> None:
    """Record every desired master object as applied (the master converged)."""
    for key, obj in derive(log.state).clusters["master"].objects.items():
        log.add(ev.ActuationApplied(cluster=MASTER, key=key, time=4000.0, verb="apply", content_hash=obj.content_hash, latency=0.01))


def members(log: Log) -> Membership:
    return derive(log.state).membership


def mesh() -> Log:
    log = Log()
    log.add(istio(SPEC), namespace(NS), identity("master", "uid-master"))
    return log


CITADEL = "apps/v1/Deployment/istio-system/istio-citadel"


def test_a_remote_is_identified_then_joins() -> None:
    log = mesh()
    log.add(remote_cr("remote-a"), kubeconfig("remote-a"))
    m = members(log)
    assert m.connect["remote-a"].identify_only, "nothing but the identity read before the identity is known"
    assert m.connect["remote-a"].fingerprint == "fp-1" and m.connect["remote-a"].secret == f"Secret/{NS}/remote-a"
    log.add(identity("remote-a", "uid-a"))
    m = members(log)
    assert not m.connect["remote-a"].identify_only and m.connect["remote-a"].member
    assert m.finalize == (f"{NS}/remote-a",) and not m.release
    # new credentials: the fingerprint to connect with follows
    log.add(kubeconfig("remote-a", fp="fp-2"))
    assert members(log).connect["remote-a"].fingerprint == "fp-2"


def test_a_second_name_for_one_cluster_and_the_master_are_refused() -> None:
    log = mesh()
    log.add(remote_cr("remote-a"), kubeconfig("remote-a"), identity("remote-a", "uid-a"))
    log.add(remote_cr("remote-b"), kubeconfig("remote-b"), identity("remote-b", "uid-a"))
    log.add(remote_cr("remote-m"), kubeconfig("remote-m"), identity("remote-m", "uid-master"))
    # gateways with addresses: a network is announced only then
    log.add(*(ev.GatewayAddressesObserved(
        cluster=ClusterName(c), key=f"Service/{NS}/istio-ingressgateway", time=3, namespace=NS,
        name="istio-ingressgateway", service_type="LoadBalancer", ips=(ip,),
    ) for c, ip in (("master", "192.0.2.1"), ("remote-a", "192.0.2.2"), ("remote-b", "192.0.2.3"), ("remote-m", "192.0.2.4"))))
    d = derive(log.state)
    m = d.membership
    assert m.refused == {
        "remote-b": 'the cluster is already in the mesh as RemoteIstio "remote-a"',
        "remote-m": 'the cluster is the master cluster "master"; a RemoteIstio must name another cluster',
    }
    assert set(m.connect) == {"remote-a"}, "a refused remote is not connected beyond its identity read"
    assert "remote-b" not in d.clusters and "remote-m" not in d.clusters, "nothing is rendered for them"
    st = d.statuses[f"RemoteIstio/{NS}/remote-b"].status
    assert st["Status"] == "ReconcileFailed" and "remote-a" in st["ErrorMessage"]
    networks = str(d.clusters["master"].objects["v1/ConfigMap/istio-system/istio"].obj)
    assert "remote-a" in networks and "remote-b" not in networks and "remote-m" not in networks
    # deleting the duplicate forgets its name, cleans nothing, releases it at once
    log.add(remote_cr("remote-b", deleting=True))
    m = members(log)
    assert m.remove.get("remote-b") == "" and "remote-b" not in m.deadlines
    log.add(ev.ClusterRemoved(cluster=ClusterName("remote-b"), key="Cluster//remote-b", time=5.0))
    acknowledge_master(log)
    m = members(log)
    assert m.release == {f"{NS}/remote-b": ""}
    assert set(m.connect) == {"remote-a"} and "remote-a" not in m.remove


def test_leaving_cleans_up_then_releases_the_finalizer() -> None:
    log = mesh()
    log.add(remote_cr("remote-a"), kubeconfig("remote-a"), identity("remote-a", "uid-a"))
    log.add(applied_on("remote-a", CITADEL))
    start = log.add(remote_cr("remote-a", deleting=True, t=2500.0))
    m = members(log)
    assert m.connect["remote-a"].member is False and m.leaving == ("remote-a",)
    assert m.deadlines["remote-a"].since_seq == start and m.deadlines["remote-a"].since == 2500.0
    acknowledge_master(log)
    assert not members(log).release, "not while objects of ours are on the remote"
    log.add(deleted_on("remote-a", CITADEL))
    m = members(log)
    assert m.remove == {"remote-a": ""} and not m.release
    log.add(ev.ClusterRemoved(cluster=ClusterName("remote-a"), key="Cluster//remote-a", time=6.0))
    m = members(log)
    assert m.release == {f"{NS}/remote-a": ""} and not m.remove and not m.connect


def test_the_cleanup_deadline_is_a_fact_and_only_for_its_own_leave() -> None:
    log = mesh()
    log.add(remote_cr("remote-a"), kubeconfig("remote-a"), identity("remote-a", "uid-a"), applied_on("remote-a", CITADEL))
    log.add(ev.ClusterUnreachable(cluster=ClusterName("remote-a"), key="Cluster//remote-a", time=7.0, reason="connection refused"))
    start = log.add(remote_cr("remote-a", deleting=True))
    # a deadline of an earlier leave changes nothing
    log.add(ev.CleanupDeadlinePassed(cluster=ClusterName("remote-a"), key="Cleanup//remote-a", time=8.0, since_seq=start - 1, timeout=30))
    assert "remote-a" in members(log).deadlines and not members(log).remove
    log.add(ev.CleanupDeadlinePassed(cluster=ClusterName("remote-a"), key="Cleanup//remote-a", time=9.0, since_seq=start, timeout=30))
    m = members(log)
    assert "remote-a" not in m.connect and "remote-a" not in m.deadlines
    message = m.remove["remote-a"]
    assert "unreachable (connection refused) for 30s" in message and "Deployment (istio-system/istio-citadel)" in message
    log.add(ev.ClusterRemoved(cluster=ClusterName("remote-a"), key="Cluster//remote-a", time=10.0, left_behind=message))
    acknowledge_master(log)
    assert members(log).release == {f"{NS}/remote-a": message}
    log.add(ev.RemoteIstioRemoved(cluster=MASTER, key=f"RemoteIstio/{NS}/remote-a", time=11.0, namespace=NS, name="remote-a"))
    assert members(log) == Membership(trust=members(log).trust) and not log.state.departures


def test_a_remote_that_never_connected_is_released_at_once() -> None:
    log = mesh()
    log.add(remote_cr("remote-x"), kubeconfig("remote-x"))
    log.add(ev.ClusterUnreachable(cluster=ClusterName("remote-x"), key="Cluster//remote-x", time=7.0, reason="connection refused"))
    log.add(remote_cr("remote-x", deleting=True))
    m = members(log)
    assert m.remove == {"remote-x": ""} and "remote-x" not in m.deadlines and "remote-x" not in m.connect
    log.add(ev.ClusterRemoved(cluster=ClusterName("remote-x"), key="Cluster//remote-x", time=8.0))
    acknowledge_master(log)
    assert members(log).release == {f"{NS}/remote-x": ""}


def test_a_remote_removed_while_down_with_objects_left_is_connected_to_clean_up() -> None:
    log = mesh()
    log.add(remote_cr("remote-a"), kubeconfig("remote-a"), identity("remote-a", "uid-a"), applied_on("remote-a", CITADEL))
    gone = log.add(ev.RemoteIstioRemoved(cluster=MASTER, key=f"RemoteIstio/{NS}/remote-a", time=12.0, namespace=NS, name="remote-a"))
    m = members(log)
    assert m.connect["remote-a"].member is False and m.deadlines["remote-a"].since_seq == gone


def test_replay_at_every_seq_reproduces_every_decision() -> None:
    log = mesh()
    log.add(remote_cr("remote-a"), kubeconfig("remote-a"), identity("remote-a", "uid-a"), applied_on("remote-a", CITADEL))
    log.add(remote_cr("remote-b"), kubeconfig("remote-b"), identity("remote-b", "uid-a"))
    start = log.add(remote_cr("remote-a", deleting=True))
    log.add(ev.CleanupDeadlinePassed(cluster=ClusterName("remote-a"), key="Cleanup//remote-a", time=9.0, since_seq=start, timeout=5))
    live = []
    state = EMPTY
    for r in log.records:
        state = fold(state, r)
        live.append(derive(state).membership)
    again = EMPTY
    for r, m in zip(log.records, live, strict=True):
        again = fold(again, Rec(r.seq, r.event))
        assert derive(again).membership == m, f"seq {r.seq}"
    # once remote-a leaves, its duplicate is the one name of that cluster and may join
    log.add(ev.ClusterRemoved(cluster=ClusterName("remote-a"), key="Cluster//remote-a", time=10.0))
    assert members(log).connect["remote-b"].member and not members(log).refused


def test_fact_memory_forgets_removed_things_and_clusters() -> None:
    log = mesh()
    log.add(namespace("default", cluster="remote-a"), identity("remote-a", "uid-a"))
    assert set(log.state.facts["remote-a"]) == {"namespace Namespace//default", "identity Namespace//kube-system"}
    assert log.state.facts["remote-a"]["namespace Namespace//default"].time == 0.0
    log.add(ev.NamespaceRemoved(cluster=ClusterName("remote-a"), key="Namespace//default", time=2.0, name="default"))
    assert set(log.state.facts["remote-a"]) == {"identity Namespace//kube-system"}
    log.add(ev.ClusterRemoved(cluster=ClusterName("remote-a"), key="Cluster//remote-a", time=3.0))
    assert "remote-a" not in log.state.facts and "remote-a" not in log.state.identities


def test_the_master_is_never_taken_for_a_remote() -> None:
    """A master without any Istio or RemoteIstio yet, or after its Istio went with objects
    of ours still on it: known to be the master from ``MasterConfigured``."""
    log = Log()
    log.add(ev.MasterConfigured(cluster=MASTER, key="Cluster//master", time=1.0, identity="d"))
    log.add(ev.ClusterConnected(cluster=MASTER, key="Cluster//master", time=1.0, server="https://m"), identity("master", "uid-master"))
    log.add(applied_on("master", CITADEL))
    m = members(log)
    assert not m.remove and not m.connect and not m.deadlines, m
