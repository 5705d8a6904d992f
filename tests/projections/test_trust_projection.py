"""The shared root of trust as projections see it: public fingerprints of ``cacerts``
Secrets and the trust side's verdicts, folded; citadel pointed at ``cacerts`` (and
restarted on a new CA) only for a Secret federationd placed; problems in CR status."""

from __future__ import annotations

from typing import Any

from events import types as ev
from events.types import ClusterName
from federationd.projections import derive as d
from federationd.projections.derive import derive
from federationd.render.objects import CONFIG_HASH_ANNOTATION

from .helpers import MASTER, SEED_000, Log, istio

REMOTE = ClusterName("remote-eu")
CITADEL = "apps/v1/Deployment/istio-system/istio-citadel"


def _remote(log: Log) -> None:
    log.add(
        ev.RemoteIstioSpecChanged(cluster=MASTER, key="RemoteIstio/istio-system/remote-eu", time=1, namespace="istio-system", name="remote-eu", uid="r", generation=1, spec={"enabledServices": [{"name": "istio-pilot"}]}),
        ev.KubeconfigObserved(cluster=MASTER, key="Secret/istio-system/remote-eu", time=1, remote="remote-eu", server="https://r", fingerprint="f"),
    )


def _cacerts(cluster: str, fingerprint: str, *, managed: bool = True, namespace: str = "istio-system") -> ev.CaSecretObserved:
    return ev.CaSecretObserved(
        cluster=ClusterName(cluster), key=f"Secret/{namespace}/cacerts", time=5, namespace=namespace,
        name="cacerts", fingerprint=fingerprint, managed=managed,
    )


def _citadel(log: Log, cluster: str) -> dict[str, Any]:
    obj: dict[str, Any] = derive(log.state).clusters[cluster].objects[CITADEL].obj
    return obj


def _on_cacerts(obj: dict[str, Any]) -> bool:
    volumes = obj["spec"]["template"]["spec"].get("volumes") or []
    return any((v.get("secret") or {}).get("secretName") == "cacerts" for v in volumes)


def test_fold_keeps_fingerprints_and_verdicts_and_forgets_a_cluster_that_left() -> None:
    log = Log()
    log.add(_cacerts("remote-eu", "sha256:aa"))
    seq = log.add(ev.TrustObserved(cluster=REMOTE, key="Trust//remote-eu", time=5, root_fingerprint="sha256:root"))
    assert log.state.ca_secrets["remote-eu"]["istio-system/cacerts"].fingerprint == "sha256:aa"
    assert log.state.trust["remote-eu"].root_fingerprint == "sha256:root"
    assert log.state.trust["remote-eu"].seq == seq
    log.add(ev.CaSecretRemoved(cluster=REMOTE, key="Secret/istio-system/cacerts", time=6, namespace="istio-system", name="cacerts"))
    assert "remote-eu" not in log.state.ca_secrets
    log.add(_cacerts("remote-eu", "sha256:aa"))
    log.add(ev.ClusterRemoved(cluster=REMOTE, key="Cluster//remote-eu", time=7))
    assert "remote-eu" not in log.state.ca_secrets and "remote-eu" not in log.state.trust


def test_citadel_uses_cacerts_once_placed_and_restarts_on_a_new_ca() -> None:
    log = Log()
    log.add(istio(SEED_000))
    _remote(log)
    for c in ("master", "remote-eu"):
        assert not _on_cacerts(_citadel(log, c)), c  # self-signed until the Secret exists
    log.add(_cacerts("master", "sha256:m1"), _cacerts("remote-eu", "sha256:r1"))
    seq = log.state.seq
    for c in ("master", "remote-eu"):
        obj = _citadel(log, c)
        assert _on_cacerts(obj), c
        assert "--self-signed-ca=false" in obj["spec"]["template"]["spec"]["containers"][0]["args"]
    assert seq in derive(log.state).clusters["remote-eu"].objects[CITADEL].reasons  # explain names it
    before = derive(log.state).clusters["remote-eu"].objects
    master_before = derive(log.state).clusters["master"].objects[CITADEL]
    log.add(_cacerts("remote-eu", "sha256:r2"))  # the remote's CA was renewed
    after = derive(log.state).clusters["remote-eu"].objects
    changed = {k for k in after if after[k].content_hash != before[k].content_hash}
    assert changed == {CITADEL}
    def hash_of(o: d.DesiredObject) -> str:
        return str(o.obj["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    assert hash_of(after[CITADEL]) != hash_of(before[CITADEL])
    assert "sha256:r2" not in str(after[CITADEL].obj)
    # the master is untouched by the remote's renewal
    assert derive(log.state).clusters["master"].objects[CITADEL].content_hash == master_before.content_hash


def test_a_cacerts_federationd_did_not_place_is_not_used() -> None:
    log = Log()
    log.add(istio(SEED_000))
    _remote(log)
    log.add(_cacerts("remote-eu", "sha256:theirs", managed=False))
    assert not _on_cacerts(_citadel(log, "remote-eu"))
    log.add(_cacerts("remote-eu", "sha256:ours", namespace="elsewhere"))  # not the control plane's
    assert not _on_cacerts(_citadel(log, "remote-eu"))


def test_trust_problems_fail_the_status_of_the_cluster_they_concern() -> None:
    log = Log()
    log.add(istio(SEED_000))
    _remote(log)
    problem = "Secret istio-system/cacerts on remote-eu was not created by federationd"
    log.add(ev.TrustObserved(cluster=REMOTE, key="Trust//remote-eu", time=5, problem=problem))
    statuses = derive(log.state).statuses
    remote = statuses["RemoteIstio/istio-system/remote-eu"].status
    assert remote["Status"] == d.RECONCILE_FAILED
    assert remote["ErrorMessage"] == f"shared root of trust: {problem}"
    assert "trust" not in str(statuses["Istio/istio-system/istio"].status.get("ErrorMessage"))
    # the objects are still desired: a status, not a hold
    assert not derive(log.state).clusters["remote-eu"].hold
    log.add(ev.TrustObserved(cluster=MASTER, key="Trust//master", time=6, problem="root: ca-key.pem: is missing"))
    assert "ca-key.pem" in derive(log.state).statuses["Istio/istio-system/istio"].status["ErrorMessage"]
    log.add(ev.TrustObserved(cluster=REMOTE, key="Trust//remote-eu", time=7, root_fingerprint="sha256:root"))
    assert "trust" not in str(derive(log.state).statuses["RemoteIstio/istio-system/remote-eu"].status.get("ErrorMessage"))
