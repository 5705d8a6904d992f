"""The trust actuator against an in-memory Secret store: what it plans, what it writes (and
does not), a user-provided issuer, renewal on a new root, isolation of a failing cluster,
and releasing a leaving cluster's key. The end-to-end view is ``test_trust_e2e``."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from cryptography import x509

from events import types as ev
from events.types import ClusterName, Event
from federationd import trust
from federationd.actuators.client import ApiConflict, ApiNotFound, ApiUnavailable, KubeClient
from federationd.actuators.trust import (
    TrustActuator,
    TrustPlan,
    TrustTarget,
    holds_trust,
    trust_plan,
)
from federationd.projections.state import EMPTY, ProjectionState, fold

NS = "istio-system"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeKube:
    """Secrets of one cluster, with the API's optimistic locking and typed errors."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[str] = []
        self.down = False
        self._rv = 0

    def _check(self) -> None:
        if self.down:
            raise ApiUnavailable("unreachable", status=503)

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        self._check()
        obj = self.objects.get((namespace or "", name))
        if obj is None:
            raise ApiNotFound(f"secrets {name!r} not found", status=404, reason="NotFound")
        return copy.deepcopy(obj)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        meta.setdefault("uid", f"uid-{meta['name']}-{self._rv}")
        self.objects[(meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._check()
        if (obj["metadata"]["namespace"], obj["metadata"]["name"]) in self.objects:
            raise ApiConflict("already exists", status=409, reason="AlreadyExists")
        self.writes.append(f"create {obj['metadata']['name']}")
        return self.put(obj)

    async def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._check()
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if self.objects[key]["metadata"]["resourceVersion"] != obj["metadata"].get("resourceVersion"):
            raise ApiConflict("stale", status=409, reason="Conflict")
        self.writes.append(f"update {obj['metadata']['name']}")
        obj = copy.deepcopy(obj)
        obj["metadata"]["uid"] = self.objects[key]["metadata"]["uid"]
        return self.put(obj)

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str, **_: Any) -> None:
        self._check()
        self.writes.append(f"delete {name}")
        del self.objects[(namespace or "", name)]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, events: Any) -> object:
        self.events.extend(events)
        return None

    def last(self, cluster: str) -> ev.TrustObserved:
        found = [e for e in self.events if isinstance(e, ev.TrustObserved) and e.cluster == cluster]
        return found[-1]


def _actuator(kubes: dict[str, FakeKube], rec: Recorder) -> TrustActuator:
    return TrustActuator(
        kube=lambda c: cast(KubeClient, kubes[c]) if c in kubes else None,
        record=rec,
        clock=lambda: NOW,
        wall=lambda: 1.0,
    )


def _plan(*remotes: str, issuer: str = "") -> TrustPlan:
    targets = () if issuer else (TrustTarget(cluster="master", namespace=NS),)
    return TrustPlan(
        master="master", namespace=NS, issuer_secret=issuer,
        targets=targets + tuple(TrustTarget(cluster=r, namespace=NS) for r in remotes),
    )


def _ca(kube: FakeKube) -> x509.Certificate:
    s = kube.objects[(NS, "cacerts")]
    return trust.cluster_ca_from_secret(s, cluster=kube.name).cert


async def test_places_a_root_and_every_cacerts_once_then_writes_nothing() -> None:
    kubes = {c: FakeKube(c) for c in ("master", "r1", "r2")}
    rec = Recorder()
    a = _actuator(kubes, rec)
    a.set_plan(_plan("r1", "r2"))
    assert await a.reconcile_once()
    assert kubes["master"].writes == ["create federationd-root-ca", "create cacerts"]
    assert kubes["r1"].writes == kubes["r2"].writes == ["create cacerts"]
    root = trust.root_from_secret(kubes["master"].objects[(NS, trust.ROOT_SECRET_NAME)])
    for k in kubes.values():
        _ca(k).verify_directly_issued_by(root.cert)
        assert rec.last(k.name).root_fingerprint == root.fingerprint and not rec.last(k.name).problem
    before = {c: list(k.writes) for c, k in kubes.items()}
    assert await a.reconcile_once()
    assert {c: k.writes for c, k in kubes.items()} == before


async def test_a_user_ca_named_in_the_spec_is_the_issuer_and_keeps_the_master_as_it_is() -> None:
    kubes = {c: FakeKube(c) for c in ("master", "r1")}
    user = trust.generate_root(common_name="corp CA", now=NOW, validity=timedelta(days=3650))
    secret = trust.root_secret(user, namespace=NS, name="corp-ca")
    del secret["metadata"]["labels"]  # the user's own, not federationd's
    kubes["master"].put(secret)
    rec = Recorder()
    a = _actuator(kubes, rec)
    a.set_plan(_plan("r1", issuer="corp-ca"))
    assert await a.reconcile_once()
    assert kubes["master"].writes == []  # no root of ours, no cacerts on the master
    _ca(kubes["r1"]).verify_directly_issued_by(user.cert)
    assert rec.last("master").root_fingerprint == user.fingerprint


async def test_a_missing_or_malformed_issuer_is_reported_and_nothing_is_written() -> None:
    kubes = {c: FakeKube(c) for c in ("master", "r1")}
    rec = Recorder()
    a = _actuator(kubes, rec)
    a.set_plan(_plan("r1", issuer="corp-ca"))
    assert await a.reconcile_once()
    assert "corp-ca named in citadel.caSecretName does not exist" in rec.last("r1").problem
    kubes["master"].put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": trust.ROOT_SECRET_NAME, "namespace": NS}, "data": {"ca-cert.pem": "bm9wZQ=="}})
    a.set_plan(_plan("r1"))
    assert await a.reconcile_once()
    problem = rec.last("master").problem
    assert trust.ROOT_SECRET_NAME in problem and "nothing was replaced" in problem
    assert rec.last("r1").problem == problem
    assert kubes["master"].writes == [] and kubes["r1"].writes == []


async def test_a_cacerts_from_another_root_is_replaced_and_a_foreign_one_is_not() -> None:
    kubes = {c: FakeKube(c) for c in ("master", "r1", "r2")}
    old = trust.generate_root(common_name="old", now=NOW, validity=timedelta(days=3650))
    stale = trust.cacerts_secret(trust.issue_cluster_ca(old, cluster="r1", now=NOW, validity=timedelta(days=365)), namespace=NS)
    kubes["r1"].put(stale)
    kubes["r2"].put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS}, "data": {}})
    rec = Recorder()
    a = _actuator(kubes, rec)
    a.set_plan(_plan("r1", "r2"))
    assert await a.reconcile_once()
    assert kubes["r1"].writes == ["update cacerts"]
    root = trust.root_from_secret(kubes["master"].objects[(NS, trust.ROOT_SECRET_NAME)])
    _ca(kubes["r1"]).verify_directly_issued_by(root.cert)
    assert kubes["r2"].writes == [] and kubes["r2"].objects[(NS, "cacerts")]["data"] == {}
    assert "not created by federationd" in rec.last("r2").problem


async def test_an_unreachable_remote_does_not_hold_up_the_others() -> None:
    kubes = {c: FakeKube(c) for c in ("master", "r1", "r2")}
    kubes["r1"].down = True
    rec = Recorder()
    a = _actuator(kubes, rec)
    a.set_plan(_plan("r1", "r2"))
    assert not await a.reconcile_once()  # to be retried
    assert kubes["r2"].writes == ["create cacerts"]
    assert not [e for e in rec.events if isinstance(e, ev.TrustObserved) and e.cluster == "r1"]
    kubes["r1"].down = False
    assert await a.reconcile_once()
    assert kubes["r1"].writes == ["create cacerts"]


def _state(*events: Event) -> ProjectionState:
    class R:
        def __init__(self, seq: int, event: Event) -> None:
            self.seq, self.event = seq, event

    s = EMPTY
    for i, e in enumerate(events, start=1):
        s = fold(s, R(i, e))
    return s


def _ns(cluster: str, name: str = NS) -> ev.NamespaceObserved:
    return ev.NamespaceObserved(cluster=ClusterName(cluster), key=f"Namespace//{name}", time=1, name=name)


def _cacerts(cluster: str, fingerprint: str = "sha256:x", *, managed: bool = True) -> ev.CaSecretObserved:
    return ev.CaSecretObserved(cluster=ClusterName(cluster), key=f"Secret/{NS}/cacerts", time=1, namespace=NS, name="cacerts", fingerprint=fingerprint, managed=managed)


def _istio(spec: dict[str, Any]) -> ev.IstioSpecChanged:
    return ev.IstioSpecChanged(cluster=ClusterName("master"), key=f"Istio/{NS}/istio", time=1, namespace=NS, name="istio", uid="u", generation=1, spec=spec)


def _remote(name: str, spec: dict[str, Any] | None = None) -> ev.RemoteIstioSpecChanged:
    return ev.RemoteIstioSpecChanged(
        cluster=ClusterName("master"), key=f"RemoteIstio/{NS}/{name}", time=1, namespace=NS, name=name, uid=name,
        generation=1, spec=spec or {"enabledServices": [{"name": "istio-pilot"}]},
    )


def test_the_plan_waits_for_namespaces_and_respects_own_cas() -> None:
    s = _state(_istio({}), _ns("master"), _remote("r1"), _remote("r2"), _remote("r3", {"enabledServices": [{"name": "istio-pilot"}], "citadel": {"caSecretName": "mine"}}), _ns("r1"), _ns("r3"), _cacerts("r1", "sha256:r1"))
    plan = trust_plan(s, remotes=["r1", "r2", "r3"])
    assert plan is not None
    assert [(t.cluster, t.observed) for t in plan.targets] == [("master", ""), ("r1", "sha256:r1")]  # r2: no namespace yet; r3: its own CA
    s = _state(_istio({"citadel": {"caSecretName": "corp-ca"}}), _ns("master"))
    plan = trust_plan(s, remotes=[])
    assert plan is not None and plan.issuer_secret == "corp-ca" and plan.targets == ()
    assert trust_plan(EMPTY, remotes=["r1"]) is None


async def test_a_leaving_cluster_loses_its_cacerts() -> None:
    s = _state(_istio({}), _ns("master"), _cacerts("r1"), _cacerts("r2", managed=False))
    assert holds_trust(s, "r1") and not holds_trust(s, "r2")
    plan = trust_plan(s, remotes=[], leaving=["r1", "r2"])
    assert plan is not None and [t.cluster for t in plan.release] == ["r1"]
    kubes = {c: FakeKube(c) for c in ("master", "r1")}
    kubes["r1"].put(trust.cacerts_secret(trust.issue_cluster_ca(trust.generate_root(common_name="x", now=NOW, validity=timedelta(days=30)), cluster="r1", now=NOW, validity=timedelta(days=10)), namespace=NS))
    a = _actuator(kubes, Recorder())
    a.set_plan(plan)
    assert await a.reconcile_once()
    assert kubes["r1"].writes == ["delete cacerts"] and not kubes["r1"].objects
