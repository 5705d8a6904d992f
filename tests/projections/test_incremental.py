"""Incremental derivation: a change renders what it changes, and the memo never changes
the result (a warm derivation equals a cold one, in any order of states)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from events import types as ev
from events.types import ClusterName
from federationd.projections import derive as d
from federationd.projections.derive import derive, desired_hash
from federationd.projections.state import ProjectionState
from federationd.render import objects as robj

from .helpers import (
    GATEWAY_FEDERATION,
    MASTER,
    SEED_000,
    Log,
    apis,
    fleet,
    gateway,
    istio,
    namespace,
)

NS = "istio-system"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _warm_equals_cold(states: list[ProjectionState]) -> list[d.Desired]:
    """Derives ``states`` in order with one memo (warm), and asserts each equals a
    derivation with an empty memo (cold); returns the warm ones."""
    d._memo = d._Memo()
    warm = [derive(s) for s in states]
    for i, s in enumerate(states):
        d._memo = d._Memo()
        cold = derive(s)
        assert d.to_builtins(warm[i]) == d.to_builtins(cold), i
        assert desired_hash(warm[i]) == desired_hash(cold), i
    return warm


def _changed(a: d.Desired, b: d.Desired) -> set[tuple[str, str]]:
    out = set()
    for c, cd in b.clusters.items():
        old = a.clusters[c].objects
        out |= {(c, k) for k, o in cd.objects.items() if k not in old or old[k].content_hash != o.content_hash}
    return out


def test_a_gateway_change_renders_only_what_depends_on_gateway_addresses(monkeypatch: Any) -> None:
    log = fleet(5)
    before = derive(log.state)
    d.reset_renders()
    log.add(gateway("remote-3", "35.9.9.9"))
    full: list[str] = []
    real, real_master = d._remote_desired_now, d._master_desired_now
    monkeypatch.setattr(d, "_remote_desired_now", lambda s, i, r: full.append(r.name) or real(s, i, r))
    monkeypatch.setattr(d, "_master_desired_now", lambda s, i: full.append(i.cluster) or real_master(s, i))
    after = derive(log.state)
    # only the networks moved for every cluster (a remote's own gateway is read through
    # them): its ConfigMap alone is rendered and swapped into its last objects, on the
    # master too, and the result is a cold derivation's
    assert full == []
    assert d.to_builtins(after) == d.to_builtins(_cold(log.state))
    rendered = [(c, what) for c, what, _ in d.renders()]
    shared = d.shared_renders()
    # the istio ConfigMap (meshNetworks) on every cluster — nothing else: pilot's pod
    # template hashes which registry is which network, not the gateways (pilot reloads
    # those), and it reads the networks without their gateways, so a gateway that moves
    # neither restarts nor rebuilds it.
    assert set(rendered) | set(shared) == {(c, "mesh") for c in after.clusters}
    # The remotes' ConfigMap is built once, for the first of them, and is the very same
    # object on the others (they read the same spec, namespace and networks); it is
    # hashed once too.
    remotes = sorted(c for c in after.clusters if c != "master")
    assert sorted(rendered) == [("master", "mesh"), (remotes[0], "mesh")]
    assert sorted(shared) == [(r, "mesh") for r in remotes[1:]]
    cms = {id(after.clusters[r].objects[f"v1/ConfigMap/{NS}/istio"].obj) for r in remotes}
    assert len(cms) == 1
    changed = _changed(before, after)
    assert changed == {(c, f"v1/ConfigMap/{NS}/istio") for c in after.clusters}
    assert "35.9.9.9" in after.clusters["remote-0"].objects[f"v1/ConfigMap/{NS}/istio"].obj["data"]["meshNetworks"]
    # the unchanged objects are the same objects (hashed once per version)
    for c, cd in after.clusters.items():
        for k, o in cd.objects.items():
            if (c, k) not in changed:
                assert before.clusters[c].objects[k].obj is o.obj
    # the master's patches (a label on each remote's kubeconfig Secret) went as one
    # block: the very same DesiredObjects
    patches = {k: o for k, o in after.clusters["master"].objects.items() if o.patch}
    assert len([k for k in patches if "/Secret/" in k]) == 5
    assert all(before.clusters["master"].objects[k] is o for k, o in patches.items())
    # the master's ConfigMap carries the gateway's fact among its reasons, as a full
    # derivation gives it
    cm = after.clusters["master"].objects[f"v1/ConfigMap/{NS}/istio"]
    assert cm.reasons != before.clusters["master"].objects[f"v1/ConfigMap/{NS}/istio"].reasons
    assert log.state.seq in cm.reasons
    # A new network (a remote's first gateway) also moves the registries pilot reads:
    # the master is derived in full (pilot rebuilt), again equal to a cold derivation.
    log.add(
        ev.RemoteIstioSpecChanged(
            cluster=MASTER, key=f"RemoteIstio/{NS}/remote-9", time=1, namespace=NS, name="remote-9", uid="remote-9",
            generation=1, spec={"autoInjectionNamespaces": ["default"]},
        ),
        ev.KubeconfigObserved(cluster=MASTER, key=f"Secret/{NS}/remote-9", time=1, remote="remote-9", server="https://r", fingerprint="f"),
        ev.ClusterIdentityObserved(cluster=ClusterName("remote-9"), key="Namespace//kube-system", time=1, uid="uid-remote-9"),
    )
    derive(log.state)
    d.reset_renders()
    full.clear()
    log.add(gateway("remote-9", "35.9.9.10"))
    joined = derive(log.state)
    assert "master" in full
    assert ("master", "pilot") in {(c, what) for c, what, _ in d.renders()}
    assert d.to_builtins(joined) == d.to_builtins(_cold(log.state))


def test_the_masters_configmap_is_swapped_alone_after_a_component_was_turned_off(monkeypatch: Any) -> None:
    """What the swap checks is the master's components as its spec has them now: one the
    spec turned off (and the render cache still holds) does not stop it."""
    log = fleet(2)
    derive(log.state)
    log.add(istio({**GATEWAY_FEDERATION, "gateways": {"egress": {"enabled": False}}}, generation=2))
    before = derive(log.state)
    assert not any("istio-egressgateway" in k for k in before.clusters["master"].objects)
    full: list[str] = []
    real = d._master_desired_now
    monkeypatch.setattr(d, "_master_desired_now", lambda s, i: full.append(i.cluster) or real(s, i))
    log.add(gateway("remote-1", "35.9.9.9"))
    after = derive(log.state)
    assert full == []
    assert d.to_builtins(after) == d.to_builtins(_cold(log.state))


def test_a_namespace_label_change_renders_one_object() -> None:
    log = fleet(3)
    before = derive(log.state)
    d.reset_renders()
    log.add(namespace("default", {"team": "a"}, cluster="remote-1"))
    after = derive(log.state)
    assert d.renders() == [("remote-1", "patch default", 1)]
    assert _changed(before, after) == set()  # the patch's content is the same labels
    d.reset_renders()
    log.add(namespace("other", {"x": "y"}, cluster="remote-2"))  # not an injection namespace
    derive(log.state)
    assert d.renders() == []


def test_nothing_changed_renders_nothing_and_hashes_the_same() -> None:
    log = fleet(3)
    first = derive(log.state)
    d.reset_renders()
    again = derive(log.state)
    assert d.renders() == []
    assert desired_hash(first) == desired_hash(again)
    assert all(again.clusters[c] is first.clusters[c] for c in first.clusters)


def _states(log: Log) -> list[ProjectionState]:
    out = []
    from federationd.projections.state import EMPTY, fold

    s = EMPTY
    for r in log.records:
        s = fold(s, r)
        out.append(s)
    return out


def test_a_warm_derivation_equals_a_cold_one_in_any_order() -> None:
    log = fleet(3)
    log.add(gateway("remote-1", "35.7.7.7"), namespace("default", {"l": "1"}, cluster="remote-2"))
    log.add(istio({**SEED_000, "mtls": True}, generation=2))
    log.add(ev.RemoteIstioRemoved(cluster=MASTER, key=f"RemoteIstio/{NS}/remote-0", time=3, namespace=NS, name="remote-0"))
    states = _states(log)
    cold = []
    for s in states:
        d._memo = d._Memo()
        cold.append(derive(s))
    d._memo = d._Memo()
    # forwards, backwards, and jumping about: the memo must never leak a previous answer
    order = list(range(len(states))) + list(reversed(range(len(states)))) + [0, len(states) - 1, 3, 9, 2]
    for i in order:
        warm = derive(states[i])
        assert d.to_builtins(warm) == d.to_builtins(cold[i]), i
        assert desired_hash(warm) == desired_hash(cold[i]), i


def test_each_remotes_network_follows_the_facts_it_reads_warm_as_cold() -> None:
    """The meshNetworks are rebuilt per remote from what that remote's network reads (its
    CR, identity, gateway, nodes): a NodePort gateway whose node moves, a gateway that
    goes and comes back, a new identity, a removed remote — after each, every cluster's
    networks equal a cold derivation's, and the untouched remotes' networks are the
    previous ones, the same objects."""
    log = fleet(4)
    r2 = ClusterName("remote-2")
    nodeport = ev.GatewayAddressesObserved(
        cluster=r2, key=f"Service/{NS}/istio-ingressgateway", time=3, namespace=NS, name="istio-ingressgateway",
        service_type="NodePort", node_ports={"tls": 31443}, ports={"tls": 15443},
    )

    def node(addr: str, t: float) -> ev.NodeLocalityObserved:
        return ev.NodeLocalityObserved(cluster=r2, key="Node//n1", time=t, node="n1", region="eu", addresses=(addr,))

    log.add(nodeport)
    log.add(node("10.2.0.1", 4))
    log.add(node("10.2.0.9", 5))
    log.add(ev.GatewayRemoved(cluster=ClusterName("remote-1"), key=f"Service/{NS}/istio-ingressgateway", time=6,
                              namespace=NS, name="istio-ingressgateway"))
    log.add(gateway("remote-1", "35.9.9.9"))
    log.add(ev.ClusterIdentityObserved(cluster=ClusterName("remote-3"), key="Namespace//kube-system", time=7, uid="uid-new"))
    log.add(ev.RemoteIstioRemoved(cluster=MASTER, key=f"RemoteIstio/{NS}/remote-0", time=8, namespace=NS, name="remote-0"))
    # a load balancer known by hostname: announced once resolved, and follows the resolution
    r3 = ClusterName("remote-3")
    log.add(ev.GatewayAddressesObserved(
        cluster=r3, key=f"Service/{NS}/istio-ingressgateway", time=9, namespace=NS, name="istio-ingressgateway",
        service_type="LoadBalancer", hostnames=("lb.r3",), ports={"https": 443},
    ))
    log.add(ev.HostnameResolved(cluster=r3, key="", time=10, hostname="lb.r3", ips=("198.51.100.3",)))
    log.add(ev.HostnameResolved(cluster=r3, key="", time=11, hostname="lb.r3", ips=("198.51.100.4",)))
    states = _states(log)
    _warm_equals_cold(states)
    d._memo = d._Memo()
    networks = []
    for s in states[-11:]:
        istio_cr = d.managed_istio(s)
        assert istio_cr is not None
        networks.append({n.name: n for n in d._mesh_networks(s, istio_cr.cluster, istio_cr)[0]})
    # the NodePort gateway is announced on its node's address, and follows it
    assert [g.address for g in networks[2]["remote-2"].gateways] == ["10.2.0.1"]
    assert [g.address for g in networks[3]["remote-2"].gateways] == ["10.2.0.9"]
    assert networks[3]["remote-1"] is networks[2]["remote-1"]  # untouched: the same network
    assert "remote-1" not in networks[4] and [g.address for g in networks[5]["remote-1"].gateways] == ["35.9.9.9"]
    assert "remote-0" not in networks[7] and networks[7]["remote-2"] is networks[6]["remote-2"]
    assert "remote-3" not in networks[8]  # its hostname not resolved yet
    assert [g.address for g in networks[9]["remote-3"].gateways] == ["198.51.100.3"]
    assert [g.address for g in networks[10]["remote-3"].gateways] == ["198.51.100.4"]
    assert networks[10]["remote-2"] is networks[9]["remote-2"]


def test_canonical_json_is_json_dumps_byte_for_byte() -> None:
    docs = [o for p in sorted(GOLDEN.glob("*.yaml")) for o in yaml.load_all(p.read_text(), Loader=yaml.CSafeLoader) if o]
    docs += [{"f": 1.5e16, "g": [1e-7, 0.1], "u": "é\u2028\x01\"\\", "t": (1, "x"), "n": None, "b": False}]
    assert len(docs) > 50
    for o in docs:
        assert robj.canonical_json(o) == json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_a_change_to_some_clusters_derives_those_alone_and_equals_a_cold_derivation() -> None:
    """Facts about one cluster (its writes, workloads, connection, trust, cacerts, served
    APIs), and the master's pods (every remote's enabledServices): after each, the derivation that
    re-derives only the touched clusters equals a cold one."""
    log = fleet(4)
    d._memo = d._Memo()
    first = derive(log.state)
    r1 = ClusterName("remote-1")
    # every object of remote-1 applied at its content
    for key, o in first.clusters["remote-1"].objects.items():
        log.add(ev.ActuationApplied(cluster=r1, key=key, time=5, verb="apply", content_hash=o.content_hash, latency=0.0))
    log.add(
        ev.WorkloadReadinessObserved(
            cluster=r1, key=f"Deployment/{NS}/istio-citadel", time=6, kind="Deployment", namespace=NS,
            name="istio-citadel", ready=True, desired=1, available=1,
        ),
        ev.ClusterUnreachable(cluster=ClusterName("remote-2"), key="Cluster//remote-2", time=7, reason="connection refused"),
        ev.TrustObserved(cluster=ClusterName("remote-3"), key="Trust//remote-3", time=7, problem="not ours"),
        ev.CaSecretObserved(
            cluster=r1, key=f"Secret/{NS}/cacerts", time=8, namespace=NS, name="cacerts", fingerprint="fp", managed=True,
        ),
        ev.PodAddressesObserved(
            cluster=MASTER, key=f"Endpoints/{NS}/istio-pilot", time=9, namespace=NS, service="istio-pilot",
            ips=("10.0.0.9",), ports={"grpc-xds": 15010},
        ),
        ev.ClusterConnected(cluster=ClusterName("remote-2"), key="Cluster//remote-2", time=10, server="https://r"),
        # discovery: a remote on 1.22 (the v1 webhook), then the master on 1.16
        apis("remote-3", "1.22"),
        apis(MASTER, "1.16"),
    )
    states = _states(log)
    warm = _warm_equals_cold(states)
    # an actuation on remote-1 re-derived remote-1's status only: every other cluster's
    # objects and statuses are the previous derivation's own objects
    n = len(states) - 9  # the last ActuationApplied
    before, after = warm[n - 1], warm[n]
    assert all(after.clusters[c] is before.clusters[c] for c in before.clusters)
    # a remote's discovery re-derived that remote alone
    ahead, behind = warm[-2], warm[-3]
    assert ahead.clusters["remote-3"] is not behind.clusters["remote-3"]
    assert all(ahead.clusters[c] is behind.clusters[c] for c in behind.clusters if c != "remote-3")
    moved = {k for k in after.statuses if after.statuses[k] is not before.statuses[k]}
    assert moved <= {f"RemoteIstio/{NS}/remote-1"}


def _pilot_pods(*ips: str, time: float) -> ev.PodAddressesObserved:
    return ev.PodAddressesObserved(
        cluster=MASTER, key=f"Endpoints/{NS}/istio-pilot", time=time, namespace=NS, service="istio-pilot",
        ips=ips, ports={"grpc-xds": 15010},
    )


def test_a_restarted_master_pod_that_renders_the_same_is_not_analysed_again(monkeypatch: Any) -> None:
    """Gateway mode: a remote's enabledServices reach the master through its gateway, so
    of the master's pilot pods only the ports are read. A pilot restart (new pod IPs, the
    same ports) renders nothing and changes nothing anywhere: no content,
    and no reason either — the objects name the pod fact since which the ports are these,
    as a cold derivation's (replay) do — so every remote's desired state is the very same
    and the mesh analysis does not run again."""
    from federationd.projections import analysis

    log = fleet(3)
    log.add(_pilot_pods("10.0.0.1", time=3))
    ports_from = log.records[-1].seq
    d._memo = d._Memo()
    before = derive(log.state)
    checked: list[str] = []
    real = analysis.cluster_findings
    monkeypatch.setattr(analysis, "cluster_findings", lambda view, c: checked.append(c.name) or real(view, c))
    d.reset_renders()
    log.add(_pilot_pods("10.0.0.1", "10.0.0.2", time=4), _pilot_pods("10.0.0.2", time=5))
    after = derive(log.state)
    remotes = ("remote-0", "remote-1", "remote-2")
    assert d.renders() == []
    assert _changed(before, after) == set()
    assert checked == []
    endpoints = f"v1/Endpoints/{NS}/istio-pilot"
    assert after.clusters["remote-0"].objects[endpoints].reasons[-1] == ports_from
    assert all(after.clusters[r] is before.clusters[r] for r in remotes)
    assert desired_hash(after) == desired_hash(_cold(log.state))
    # new ports are new content: every remote's Service and Endpoints change, and each
    # remote is analysed again
    log.add(ev.PodAddressesObserved(
        cluster=MASTER, key=f"Endpoints/{NS}/istio-pilot", time=6, namespace=NS, service="istio-pilot",
        ips=("10.0.0.2",), ports={"grpc-xds": 15010, "https-xds": 15011},
    ))
    checked.clear()
    d.reset_renders()
    moved = derive(log.state)
    assert {(c, what) for c, what, _ in d.renders()} == {(r, "enabledServices") for r in remotes}
    assert _changed(after, moved) == {(r, k) for r in remotes for k in (f"v1/Service/{NS}/istio-pilot", endpoints)}
    assert sorted(checked) == list(remotes)
    assert moved.clusters["remote-0"].objects[endpoints].reasons[-1] == log.records[-1].seq
    assert desired_hash(moved) == desired_hash(_cold(log.state))


def _cold(state: ProjectionState) -> d.Desired:
    """A derivation with an empty memo (as a replay's first), the warm memo kept."""
    warm, d._memo = d._memo, d._Memo()
    try:
        return derive(state)
    finally:
        d._memo = warm
