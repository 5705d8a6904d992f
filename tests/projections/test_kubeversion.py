"""derive and each cluster's Kubernetes: the discovery fact (``KubernetesApisObserved``)
picks the API versions rendered, and a cluster that cannot run the requested Istio —
1.1/1.2 patch their webhook ``caBundle`` through ``admissionregistration.k8s.io/v1beta1``,
removed in Kubernetes 1.22 — is held with a status naming its version."""

from __future__ import annotations

from events import types as ev
from events.types import ClusterName
from federationd.projections import derive as d
from federationd.projections.derive import derive
from federationd.projections.state import decode_state, encode_state

from .helpers import MASTER, SEED_000, Log, apis, istio

REMOTE = ClusterName("remote-eu")
HOOK_V1BETA1 = "admissionregistration.k8s.io/v1beta1/MutatingWebhookConfiguration//istio-sidecar-injector"
HOOK_V1 = "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration//istio-sidecar-injector"


def _remote(log: Log) -> None:
    log.add(
        ev.RemoteIstioSpecChanged(cluster=MASTER, key="RemoteIstio/istio-system/remote-eu", time=1, namespace="istio-system", name="remote-eu", uid="r", generation=1, spec={"enabledServices": [{"name": "istio-pilot"}]}),
        ev.KubeconfigObserved(cluster=MASTER, key="Secret/istio-system/remote-eu", time=1, remote="remote-eu", server="https://r", fingerprint="f"),
    )


def _status(out: d.Desired, kind: str, name: str) -> dict[str, object]:
    return out.statuses[d.status_key(kind, "istio-system", name)].status


def test_the_served_versions_pick_the_upstream_api_versions() -> None:
    log = Log()
    log.add(istio(SEED_000), apis("master", "1.16"))
    objs = derive(log.state).clusters["master"].objects
    # Istio 1.2's chart renders these in v1beta1, and 1.16 serves them
    assert HOOK_V1BETA1 in objs and HOOK_V1 not in objs
    kinds = {(o.obj["apiVersion"], o.obj["kind"]) for o in objs.values()}
    assert ("autoscaling/v2beta1", "HorizontalPodAutoscaler") in kinds
    assert ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition") in kinds
    assert not {v for v, _ in kinds} & {"autoscaling/v2", "apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1"}


def test_until_discovery_is_known_the_ga_versions_are_rendered() -> None:
    log = Log()
    log.add(istio(SEED_000))
    out = derive(log.state).clusters["master"]
    assert not out.hold and HOOK_V1 in out.objects


def test_a_remote_without_the_v1beta1_webhook_api_is_held_and_says_why() -> None:
    log = Log()
    log.add(istio(SEED_000), apis("master", "1.16"))
    _remote(log)
    log.add(apis("remote-eu", "1.30"))
    out = derive(log.state)
    remote = out.clusters["remote-eu"]
    assert remote.hold and remote.objects == {}
    message = (
        "Kubernetes v1.30.0 on remote-eu does not serve admissionregistration.k8s.io/v1beta1, "
        "which Istio 1.2's sidecar injector needs; use a cluster of Kubernetes 1.21 or older"
    )
    assert remote.hold_reason == message
    st = _status(out, d.REMOTE_ISTIO_KIND, "remote-eu")
    assert st["Status"] == d.RECONCILE_FAILED and st["ErrorMessage"] == message
    # the master is unaffected
    assert not out.clusters["master"].hold and HOOK_V1BETA1 in out.clusters["master"].objects


def test_a_master_on_1_22_is_held_for_istio_1_1_too() -> None:
    log = Log()
    log.add(istio({**SEED_000, "version": "1.1.14"}), apis("master", "1.22"))
    out = derive(log.state)
    assert out.clusters["master"].hold and out.clusters["master"].objects == {}
    assert out.clusters["master"].hold_reason == (
        "Kubernetes v1.22.0 on master does not serve admissionregistration.k8s.io/v1beta1, "
        "which Istio 1.1's sidecar injector and galley need; use a cluster of Kubernetes 1.21 or older"
    )
    st = _status(out, d.ISTIO_KIND, "istio")
    assert st["Status"] == d.RECONCILE_FAILED and "v1.22.0 on master" in str(st["ErrorMessage"])


def test_an_upgrade_observed_on_reconnect_moves_the_cluster_to_held_and_back() -> None:
    log = Log()
    log.add(istio(SEED_000), apis("master", "1.16"))
    _remote(log)
    log.add(apis("remote-eu", "1.21"))
    before = derive(log.state).clusters["remote-eu"]
    assert not before.hold and any(k.startswith("admissionregistration.k8s.io/v1beta1/") for k in before.objects)
    log.add(apis("remote-eu", "1.22"))
    assert derive(log.state).clusters["remote-eu"].hold  # memo keyed on the fact
    log.add(apis("remote-eu", "1.21"))
    again = derive(log.state).clusters["remote-eu"]
    assert not again.hold and again.objects.keys() == before.objects.keys()


def test_the_fact_is_folded_kept_in_snapshots_and_dropped_with_the_cluster() -> None:
    log = Log()
    log.add(apis("remote-eu", "1.16"))
    k = log.state.kubernetes["remote-eu"]
    assert k.version == "v1.16.0" and "admissionregistration.k8s.io/v1beta1" in k.group_versions
    assert decode_state(encode_state(log.state)).kubernetes == log.state.kubernetes
    log.add(ev.ClusterRemoved(cluster=REMOTE, key="Cluster//remote-eu", time=2))
    assert "remote-eu" not in log.state.kubernetes
