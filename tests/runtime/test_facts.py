"""Fact extractors (what of an object matters) and the emitter (append only changes)."""

from __future__ import annotations

import base64
import copy
from collections.abc import Sequence
from typing import Any

import pytest
import yaml

from events import types as ev
from events.types import ClusterName, Event
from federationd.clusters import ClusterClient, fingerprint
from federationd.metrics import Metrics
from federationd.watchers import facts
from tests.runtime.conftest import wait_for
from tests.runtime.fakeapi import FakeApi

C = ClusterName("master")


class Log:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.fail = False

    async def append(self, batch: Sequence[Event]) -> list[int]:
        if self.fail:
            raise OSError("disk full")
        self.events.extend(batch)
        return list(range(len(self.events) - len(batch) + 1, len(self.events) + 1))


def node(**over: Any) -> dict[str, Any]:
    n = {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": "n1", "resourceVersion": "1", "labels": {
             "topology.kubernetes.io/region": "eu-west1", "topology.kubernetes.io/zone": "eu-west1-b",
             "topology.istio.io/subzone": "rack1"}},
         "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                                  {"type": "Hostname", "address": "n1"},
                                  {"type": "ExternalIP", "address": "35.1.1.1"}],
                    "conditions": [{"type": "Ready", "lastHeartbeatTime": "t0"}]}}
    n.update(over)
    return n


async def test_node_heartbeat_appends_nothing(metrics: Metrics) -> None:
    log = Log()
    em = facts.FactEmitter(log.append, metrics=metrics)
    first = await em.emit(facts.node_fact(C, node(), 1.0))
    assert first == [ev.NodeLocalityObserved(
        cluster=C, key="Node//n1", time=1.0, node="n1", region="eu-west1", zone="eu-west1-b",
        subzone="rack1", addresses=("35.1.1.1", "10.0.0.1"))]
    beat = node()
    beat["metadata"]["resourceVersion"] = "2"
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "t1"
    assert await em.emit(facts.node_fact(C, beat, 2.0)) == []
    relabelled = copy.deepcopy(beat)
    relabelled["metadata"]["labels"]["topology.kubernetes.io/zone"] = "eu-west1-c"
    assert len(await em.emit(facts.node_fact(C, relabelled, 3.0))) == 1
    assert len(log.events) == 2
    assert 'federationd_events_appended_total{type="NodeLocalityObserved"} 2.0' in (
        metrics.exposition().decode())


def test_legacy_locality_labels() -> None:
    n = node()
    n["metadata"]["labels"] = {"failure-domain.beta.kubernetes.io/region": "us-east1",
                               "failure-domain.beta.kubernetes.io/zone": "us-east1-a"}
    (fact,) = facts.node_fact(C, n, 0.0)
    assert isinstance(fact, ev.NodeLocalityObserved)
    assert (fact.region, fact.zone, fact.subzone) == ("us-east1", "us-east1-a", "")


async def test_removed_then_observed_again_is_a_change() -> None:
    log = Log()
    em = facts.FactEmitter(log.append)
    ns: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": "app", "labels": {"a": "b"}}}
    await em.emit(facts.namespace_fact(C, ns, 1.0))
    await em.emit(facts.namespace_removed(C, ns, 2.0))
    await em.emit(facts.namespace_removed(C, ns, 3.0))  # seen twice (relist): once only
    await em.emit(facts.namespace_fact(C, ns, 4.0))
    assert [type(e).__name__ for e in log.events] == [
        "NamespaceObserved", "NamespaceRemoved", "NamespaceObserved"]


async def test_failed_append_is_retried_next_time() -> None:
    log = Log()
    em = facts.FactEmitter(log.append)
    log.fail = True
    with pytest.raises(OSError):
        await em.emit(facts.node_fact(C, node(), 1.0))
    log.fail = False
    assert len(await em.emit(facts.node_fact(C, node(), 2.0))) == 1


async def test_prime_and_forget_cluster() -> None:
    log = Log()
    em = facts.FactEmitter(log.append)
    (known,) = facts.node_fact(C, node(), 1.0)
    em.prime([known])
    assert await em.emit(facts.node_fact(C, node(), 5.0)) == []
    em.forget_cluster(C)
    assert len(await em.emit(facts.node_fact(C, node(), 6.0))) == 1


def test_istio_fact_ignores_status_and_metadata_churn() -> None:
    cr: dict[str, Any] = {"apiVersion": "istio.banzaicloud.io/v1beta1", "kind": "Istio",
          "metadata": {"name": "mesh", "namespace": "istio-system", "uid": "u1", "generation": 3,
                       "resourceVersion": "7", "creationTimestamp": "2026-01-01T00:00:00Z"},
          "spec": {"version": "1.2.2", "mtls": True}, "status": {"Status": "Available"}}
    (a,) = facts.istio_fact(C, cr, 1.0)
    churned = copy.deepcopy(cr)
    churned["status"] = {"Status": "Reconciling"}
    churned["metadata"]["resourceVersion"] = "8"
    churned["metadata"]["managedFields"] = [{"manager": "x"}]
    (b,) = facts.istio_fact(C, churned, 2.0)
    assert facts._timeless(a) == facts._timeless(b)
    assert isinstance(a, ev.IstioSpecChanged)
    assert a.key == "Istio/istio-system/mesh" and a.generation == 3 and not a.deleting
    churned["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    (c,) = facts.istio_fact(C, churned, 3.0)
    assert isinstance(c, ev.IstioSpecChanged) and c.deleting
    (r,) = facts.remote_istio_removed(C, cr, 4.0)
    assert isinstance(r, ev.RemoteIstioRemoved) and r.key == "RemoteIstio/istio-system/mesh"


def test_gateway_service_fact() -> None:
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
           "spec": {"type": "LoadBalancer", "ports": [
               {"name": "tls", "port": 15443, "nodePort": 31443},
               {"name": "http2", "port": 80, "nodePort": 31380}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "35.2.2.2"}, {"hostname": "a.elb.example"},
                                                   {"ip": "35.1.1.1"}]}}}
    (g,) = facts.gateway_service_fact(C, svc, 1.0)
    assert isinstance(g, ev.GatewayAddressesObserved)
    assert g.ips == ("35.1.1.1", "35.2.2.2") and g.hostnames == ("a.elb.example",)
    assert g.ports == {"tls": 15443, "http2": 80}
    assert g.node_ports == {"tls": 31443, "http2": 31380}
    assert g.service_type == "LoadBalancer"


def test_workload_readiness() -> None:
    dep: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "istio-pilot", "namespace": "istio-system", "generation": 2},
           "spec": {"replicas": 2, "template": {"spec": {"containers": [
               {"image": "docker.io/istio/pilot:1.2.2"}]}}},
           "status": {"observedGeneration": 2, "availableReplicas": 1, "updatedReplicas": 2}}
    (w,) = facts.workload_fact(C, dep, 1.0)
    assert isinstance(w, ev.WorkloadReadinessObserved)
    assert not w.ready and (w.desired, w.available) == (2, 1)
    assert w.image == "docker.io/istio/pilot:1.2.2"
    dep["status"]["availableReplicas"] = 2
    (w,) = facts.workload_fact(C, dep, 1.0)
    assert isinstance(w, ev.WorkloadReadinessObserved) and w.ready
    dep["metadata"]["generation"] = 3  # a new rollout the controller has not seen yet
    (w,) = facts.workload_fact(C, dep, 1.0)
    assert isinstance(w, ev.WorkloadReadinessObserved) and not w.ready
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet",
          "metadata": {"name": "istio-cni-node", "namespace": "kube-system"},
          "spec": {}, "status": {"desiredNumberScheduled": 3, "numberAvailable": 3,
                                 "updatedNumberScheduled": 3}}
    (d,) = facts.workload_fact(C, ds, 1.0)
    assert isinstance(d, ev.WorkloadReadinessObserved) and d.ready and d.key == "DaemonSet/kube-system/istio-cni-node"


TOKEN = "super-secret-bearer-token"


def _kubeconfig(**user: Any) -> bytes:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "eu",
        "clusters": [{"name": "eu", "cluster": {"server": "https://10.1.1.1:6443"}}],
        "users": [{"name": "eu", "user": user or {"token": TOKEN}}],
        "contexts": [{"name": "eu", "context": {"cluster": "eu", "user": "eu"}}]}).encode()


def _secret(name: str, data: dict[str, bytes], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "istio-system", **meta},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def test_kubeconfig_secret_fact_records_fingerprint_never_content() -> None:
    raw = _kubeconfig()
    (k,) = facts.kubeconfig_secret_fact(C, _secret("remote-eu", {"remote-eu": raw}), 1.0)
    assert k == ev.KubeconfigObserved(cluster=C, key="Secret/istio-system/remote-eu", time=1.0,
                                      remote="remote-eu", server="https://10.1.1.1:6443",
                                      fingerprint=fingerprint(raw))
    bad = _kubeconfig(exec={"command": "sh", "args": ["-c", TOKEN]})
    (p,) = facts.kubeconfig_secret_fact(C, _secret("remote-eu", {"remote-eu": bad}), 1.0)
    assert isinstance(p, ev.KubeconfigObserved)
    assert "exec" in p.problem and p.server == "https://10.1.1.1:6443"
    from events.codec import encode  # the encoded event holds no credential
    assert TOKEN.encode() not in encode(p) and TOKEN.encode() not in encode(k)


def test_non_kubeconfig_secrets_are_ignored_and_istio_format_is_read() -> None:
    assert facts.kubeconfig_secret_fact(C, _secret("tls", {"tls.crt": b"PEM", "tls.key": b"K"}), 1.0) == []
    # shaped like a kubeconfig Secret (one key): said to be unusable, nothing of it recorded
    (pw,) = facts.kubeconfig_secret_fact(C, _secret("opaque", {"password": b"hunter2"}), 1.0)
    assert isinstance(pw, ev.KubeconfigObserved)
    assert (pw.remote, pw.server, pw.fingerprint) == ("opaque", "", "")
    assert pw.problem == "data key 'password': kubeconfig is not a mapping"
    s = _secret("istio-remote-secret-x", {"c1": _kubeconfig(), "c2": b"not yaml: ["},
                labels={"istio/multiCluster": "true"})
    got = facts.kubeconfig_secret_fact(C, s, 1.0)
    assert [(e.remote, e.problem) for e in got if isinstance(e, ev.KubeconfigObserved)] == [
        ("c1", ""), ("c2", "kubeconfig is not valid YAML")]
    removed = facts.kubeconfig_secret_removed(C, s, 2.0)
    assert [e.remote for e in removed if isinstance(e, ev.KubeconfigRemoved)] == ["c1", "c2"]
    assert facts.kubeconfig_secret_removed(C, _secret("opaque", {"a": b"x", "b": b"y"}), 1.0) == []
    (tomb,) = facts.kubeconfig_secret_removed(C, {"metadata": {"name": "r", "namespace": "n"}}, 1.0)
    assert isinstance(tomb, ev.KubeconfigRemoved) and tomb.remote == "r"


async def test_two_remotes_in_one_secret_are_deduplicated_separately() -> None:
    log = Log()
    em = facts.FactEmitter(log.append)
    s = _secret("istio-remote-secret-x", {"c1": _kubeconfig(), "c2": _kubeconfig()},
                labels={"istio/multiCluster": "true"})
    assert len(await em.emit(facts.kubeconfig_secret_fact(C, s, 1.0))) == 2
    assert await em.emit(facts.kubeconfig_secret_fact(C, s, 2.0)) == []


def test_drift_detector_hook() -> None:
    applied = {"v1/ConfigMap/istio-system/istio": "h1"}
    d = facts.DriftDetector(
        applied_hash=applied.get,
        observed_hash=lambda o: o["metadata"].get("annotations", {}).get("hash", ""))
    cm: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "istio", "namespace": "istio-system", "annotations": {"hash": "h1"}}}
    assert d.upsert(C, cm, 1.0) == []
    cm["metadata"]["annotations"]["hash"] = "edited"
    assert d.upsert(C, cm, 1.0) == [ev.ObjectDrifted(
        cluster=C, key="v1/ConfigMap/istio-system/istio", time=1.0, observed_hash="edited")]
    (gone,) = d.delete(C, cm, 2.0)
    assert isinstance(gone, ev.ObjectDrifted) and gone.deleted
    other = copy.deepcopy(cm)
    other["metadata"]["name"] = "not-managed"
    assert d.upsert(C, other, 1.0) == [] and d.delete(C, other, 1.0) == []


async def test_watch_facts_end_to_end(client: ClusterClient, api: FakeApi) -> None:
    log = Log()
    em = facts.FactEmitter(log.append)
    api.put("nodes", node())
    r = facts.watch_facts(client, facts.NODES, em, now=lambda: 42.0)
    r.start()
    await wait_for(lambda: len(log.events) == 1)
    for beat in range(3):  # heartbeats: new resourceVersions, same fact
        n = node()
        n["status"]["conditions"][0]["lastHeartbeatTime"] = f"t{beat}"
        api.put("nodes", n)
    n = node()
    n["metadata"]["labels"]["topology.kubernetes.io/zone"] = "eu-west1-d"
    api.put("nodes", n)
    await wait_for(lambda: len(log.events) == 2)
    api.remove("nodes", "", "n1")
    await wait_for(lambda: len(log.events) == 3)
    assert [type(e).__name__ for e in log.events] == [
        "NodeLocalityObserved", "NodeLocalityObserved", "NodeRemoved"]
    assert all(e.cluster == "fake" and e.time == 42.0 for e in log.events)
    await r.stop()


async def test_concurrent_duplicates_are_appended_once() -> None:
    import asyncio

    release = asyncio.Event()
    appended: list[Event] = []

    async def slow_append(batch: Sequence[Event]) -> None:
        await release.wait()
        appended.extend(batch)

    em = facts.FactEmitter(slow_append)
    tasks = [asyncio.create_task(em.emit(facts.node_fact(C, node(), float(t)))) for t in range(3)]
    await wait_for(lambda: sum(t.done() for t in tasks) == 2)  # the duplicates return at once
    release.set()
    results = await asyncio.gather(*tasks)
    assert sorted(len(r) for r in results) == [0, 0, 1] and len(appended) == 1
