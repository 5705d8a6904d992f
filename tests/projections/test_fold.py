"""The fold: every event type, copy-on-write, snapshots."""

from __future__ import annotations

import zlib

import msgspec

from events import types as ev
from events.types import ClusterName
from federationd.projections import state as st
from federationd.projections.state import EMPTY, decode_state, encode_state, fold
from federationd.projections.validate import UNSUPPORTED_VERSION

from .helpers import MASTER, SEED_000, Log, Rec, applied, istio, namespace

R = ClusterName("remote-eu")


def test_fold_leaves_the_previous_state_intact() -> None:
    s1 = fold(EMPTY, Rec(1, namespace("default")))
    s2 = fold(s1, Rec(2, namespace("other", {"a": "b"})))
    assert set(s1.namespaces["master"]) == {"default"}
    assert set(s2.namespaces["master"]) == {"default", "other"}
    assert s2.namespaces["master"]["other"].labels == {"a": "b"}
    assert s2.seq == 2 and s1.seq == 1
    # an untouched cluster's map is shared, not copied
    s3 = fold(s2, Rec(3, namespace("x", cluster="remote-eu")))
    assert s3.namespaces["master"] is s2.namespaces["master"]


def test_every_catalogue_event_folds() -> None:
    log = Log()
    log.add(
        ev.ClusterConnected(cluster=R, key="", time=1, server="https://r", fingerprint="f", version="1.32"),
        ev.KubeconfigObserved(cluster=MASTER, key="Secret/istio-system/remote-eu", time=1, remote="remote-eu", server="https://r", fingerprint="f"),
        istio(SEED_000),
        ev.RemoteIstioSpecChanged(cluster=MASTER, key="RemoteIstio/istio-system/remote-eu", time=1, namespace="istio-system", name="remote-eu", uid="u2", generation=1, spec={"enabledServices": []}),
        namespace("default"),
        ev.NodeLocalityObserved(cluster=R, key="Node//n1", time=1, node="n1", region="eu", zone="eu-a", addresses=("10.0.0.1",)),
        ev.GatewayAddressesObserved(cluster=R, key="Service/istio-system/istio-ingressgateway", time=1, namespace="istio-system", name="istio-ingressgateway", service_type="LoadBalancer", hostnames=("lb.example",)),
        ev.HostnameResolved(cluster=R, key="lb.example", time=1, hostname="lb.example", ips=("1.2.3.4",)),
        ev.WorkloadReadinessObserved(cluster=MASTER, key="Deployment/istio-system/istio-pilot", time=1, kind="Deployment", namespace="istio-system", name="istio-pilot", ready=True, desired=1, available=1),
        ev.PodAddressesObserved(cluster=MASTER, key="Service/default/web", time=1, namespace="default", service="web", ips=("10.1.1.1",)),
        applied("v1/ConfigMap/istio-system/istio", "h1"),
        ev.ObjectDrifted(cluster=MASTER, key="v1/ConfigMap/istio-system/istio", time=3, deleted=True),
        ev.LeadershipAcquired(cluster=MASTER, key="Lease/x/federationd", time=1, identity="a"),
        ev.ClusterUnreachable(cluster=R, key="", time=5, reason="connection refused"),
    )
    s = log.state
    assert s.clusters["remote-eu"].state == st.UNREACHABLE
    assert s.clusters["remote-eu"].server == "https://r"  # last known kept
    assert s.kubeconfigs["Secret/istio-system/remote-eu"].remote == "remote-eu"
    assert s.istios["istio-system/istio"].good_spec == SEED_000
    assert s.remote_istios["istio-system/remote-eu"].problem == ""
    assert s.nodes["remote-eu"]["n1"].region == "eu"
    assert s.gateways["remote-eu"]["istio-system/istio-ingressgateway"].hostnames == ("lb.example",)
    assert s.resolutions["remote-eu"]["lb.example"].ips == ("1.2.3.4",)
    assert s.workloads["master"]["Deployment/istio-system/istio-pilot"].ready
    assert s.pods["master"]["default/web"].ips == ("10.1.1.1",)
    assert s.actuations["master"]["v1/ConfigMap/istio-system/istio"].drifted
    assert s.leader.identity == "a"

    log.add(
        ev.NodeRemoved(cluster=R, key="Node//n1", time=6, node="n1"),
        ev.GatewayRemoved(cluster=R, key="", time=6, namespace="istio-system", name="istio-ingressgateway"),
        ev.WorkloadRemoved(cluster=MASTER, key="", time=6, kind="Deployment", namespace="istio-system", name="istio-pilot"),
        ev.NamespaceRemoved(cluster=MASTER, key="", time=6, name="default"),
        applied("v1/ConfigMap/istio-system/istio", "h1", verb="delete"),
        ev.KubeconfigRemoved(cluster=MASTER, key="Secret/istio-system/remote-eu", time=6, remote="remote-eu"),
        ev.RemoteIstioRemoved(cluster=MASTER, key="", time=6, namespace="istio-system", name="remote-eu"),
        ev.IstioRemoved(cluster=MASTER, key="", time=6, namespace="istio-system", name="istio"),
        ev.LeadershipLost(cluster=MASTER, key="", time=6, identity="a"),
        ev.ClusterRemoved(cluster=R, key="", time=7),
    )
    s = log.state
    assert s.nodes == {} and s.gateways == {} and s.workloads == {} and s.namespaces == {}
    assert s.actuations == {} and s.kubeconfigs == {} and s.remote_istios == {} and s.istios == {}
    assert s.leader.identity == "" and "remote-eu" not in s.clusters
    assert s.resolutions == {}  # went with the cluster


def test_failed_actuation_keeps_the_hash_in_effect() -> None:
    log = Log()
    key = "v1/ConfigMap/istio-system/istio"
    log.add(applied(key, "old"))
    log.add(ev.ActuationFailed(cluster=MASTER, key=key, time=3, verb="apply", content_hash="new", latency=0.1, error="forbidden"))
    a = log.state.actuations["master"][key]
    assert (a.content_hash, a.ok, a.failed_hash, a.error) == ("old", False, "new", "forbidden")


def test_status_and_event_writes_are_not_inventory() -> None:
    log = Log()
    log.add(applied("istio.banzaicloud.io/v1beta1/Istio/istio-system/istio", "s", verb="status"))
    assert log.state.actuations == {}


def test_invalid_spec_keeps_the_last_valid_one() -> None:
    log = Log()
    log.add(istio(SEED_000))
    log.add(istio({**SEED_000, "version": "1.0.5"}, generation=2))
    cr = log.state.istios["istio-system/istio"]
    assert cr.problem == UNSUPPORTED_VERSION
    assert cr.good_spec == SEED_000 and cr.good_generation == 1 and cr.good_seq == 1
    assert cr.generation == 2
    log.add(istio({**SEED_000, "mtls": "yes"}, generation=3))
    assert "spec.mtls" in log.state.istios["istio-system/istio"].problem
    log.add(istio({**SEED_000, "mtls": True}, generation=4))
    cr = log.state.istios["istio-system/istio"]
    assert cr.problem == "" and cr.good_generation == 4


def test_recreated_cr_forgets_the_old_good_spec() -> None:
    log = Log()
    log.add(istio(SEED_000))
    log.add(istio({"version": "0.9"}, uid="uid-2"))
    assert log.state.istios["istio-system/istio"].good_spec is None


def test_snapshot_round_trip() -> None:
    log = Log()
    log.add(istio(SEED_000), namespace("default", {"x": "y"}), applied("k/K/ns/n", "h"))
    blob = encode_state(log.state)
    assert decode_state(blob) == log.state
    assert st.to_builtins(log.state)["istios"]["istio-system/istio"]["name"] == "istio"
    # stored compressed: a tenth of the MessagePack at fleet size, less here
    raw = msgspec.msgpack.encode(log.state)
    assert zlib.decompress(blob) == raw and len(blob) < len(raw)


def test_a_fact_observed_again_unchanged_keeps_its_seq_and_time() -> None:
    log = Log()
    log.add(istio(SEED_000, t=100.0), namespace("default"))
    before = log.state
    log.add(istio(SEED_000, t=999.0), namespace("default"))  # a re-list after a restart
    assert log.state.istios is before.istios and log.state.namespaces is before.namespaces
    assert log.state.istios["istio-system/istio"].time == 100.0
    log.add(istio({**SEED_000, "mtls": True}, generation=2, t=1000.0))
    assert log.state.istios["istio-system/istio"].seq == 5
