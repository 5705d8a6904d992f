"""The converger against one simulated cluster: apply, resync, drift, delete, release."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from events import types as ev
from events.types import Event
from federationd import secretref
from federationd.actuators.client import KubeClient, NotLeading
from federationd.actuators.converge import CONTENT_HASH_ANNOTATION, ClusterConverger, contains
from federationd.clusters.connection import ClusterClient, connect
from federationd.metrics import Metrics
from federationd.projections.derive import ClusterDesired, DesiredObject, object_key
from federationd.render.objects import content_hash, obj
from federationd.sim import Fleet
from federationd.watchers.reflector import CompactStore

from .waiting import wait_for

Append = Callable[[Sequence[Event]], Awaitable[None]]


def _desired(objs: Sequence[dict[str, object]], patches: Sequence[dict[str, object]] = ()) -> ClusterDesired:
    out = {}
    for o in objs:
        out[object_key(o)] = DesiredObject(key=object_key(o), obj=dict(o), content_hash=content_hash(o))
    for p in patches:
        out[object_key(p)] = DesiredObject(key=object_key(p), obj=dict(p), content_hash=content_hash(p), patch=True)
    return ClusterDesired(objects=out)


def _cm(name: str, value: str) -> dict[str, object]:
    return obj("v1", "ConfigMap", name, component="mesh", namespace="istio-system", data={"v": value})


def _ns_patch(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"istio-injection": "enabled", "federationd.io/injection": "enabled"}}}


@contextlib.asynccontextmanager
async def _master(tmp_path: Path) -> AsyncIterator[tuple[Fleet, ClusterClient, list[Event], Append]]:
    """One simulated cluster with ``istio-system``, a client of it, and what the
    converger appends (the list, and the function that appends to it)."""
    async with Fleet(["master"], directory=tmp_path) as fleet:
        fleet["master"].store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
        client = await connect(fleet["master"].kubeconfig, name="master")
        appended: list[Event] = []

        async def append(events: Sequence[Event]) -> None:
            appended.extend(events)

        try:
            yield fleet, client, appended, append
        finally:
            await client.close()


class Harness:
    def __init__(self, fleet: Fleet, conv: ClusterConverger, appended: list[Event], metrics: Metrics) -> None:
        self.fleet = fleet
        self.conv = conv
        self.appended = appended
        self.metrics = metrics
        self.store = fleet["master"].store

    def cm(self, name: str) -> dict[str, object] | None:
        return self.store.get("v1", "ConfigMap", name, "istio-system")

    def verbs(self) -> list[str]:
        return [e.verb for e in self.appended if isinstance(e, ev.ActuationApplied)]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with _master(tmp_path) as (fleet, client, appended, append):
        fleet["master"].store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}})
        metrics = Metrics()
        conv = ClusterConverger("master", KubeClient(client), append=append, metrics=metrics)
        conv.start()
        try:
            yield Harness(fleet, conv, appended, metrics)
        finally:
            await conv.stop()


async def test_applies_then_a_resync_writes_nothing(h: Harness) -> None:
    desired = _desired([_cm("a", "1"), _cm("b", "2")], [_ns_patch("apps")])
    h.conv.set_desired(desired, {})
    await wait_for(h.conv.converged, what="convergence")
    a = h.cm("a")
    assert a is not None and a["data"] == {"v": "1"}
    assert a["metadata"]["annotations"][CONTENT_HASH_ANNOTATION] == desired.objects["v1/ConfigMap/istio-system/a"].content_hash
    assert any(m["manager"] == "federationd" for m in a["metadata"]["managedFields"])
    ns = h.store.get("v1", "Namespace", "apps")
    assert ns is not None and ns["metadata"]["labels"]["istio-injection"] == "enabled"
    assert sorted(h.verbs()) == ["apply", "apply", "apply"]

    before = h.fleet["master"].requests.mutating()
    h.conv.resync()
    h.conv.set_desired(desired, {})  # the same desired again: nothing changes
    await wait_for(h.conv.converged, what="resync")
    assert h.fleet["master"].requests.mutating() == before
    assert h.verbs() == ["apply", "apply", "apply"]


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The keys compact stores decode from now on, in order."""
    decoded: list[object] = []
    read = CompactStore.__getitem__

    def counting(self: CompactStore, key: tuple[str, str]) -> dict[str, object]:
        decoded.append(key)
        return read(self, key)

    monkeypatch.setattr(CompactStore, "__getitem__", counting)
    return decoded


async def test_the_inventory_is_kept_compact_and_a_known_check_decodes_nothing(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    desired = _desired([_cm("a", "1"), _cm("b", "2")])
    h.conv.set_desired(desired, {})
    await wait_for(h.conv.converged, what="convergence")
    inventory = h.conv._reflectors[("v1", "ConfigMap")].store
    assert isinstance(inventory, CompactStore) and len(inventory) == 2
    decoded = _count_decodes(monkeypatch)
    for _ in range(50):
        assert h.conv.converged()
    assert decoded == []  # each object was checked once, against the bytes now stored
    # an edit by hand is a new stored version: checked (decoded) again, and repaired
    live = h.cm("a")
    assert live is not None
    live["data"] = {"v": "hand-edited"}
    h.store.update(live)
    await wait_for(lambda: (h.cm("a") or {}).get("data") == {"v": "1"}, what="repair")
    assert ("istio-system", "a") in decoded and ("istio-system", "b") not in decoded


async def test_a_status_update_of_an_object_in_effect_is_neither_decoded_nor_queued(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new status (a load balancer's address) is a new stored version whose shape, its
    status aside, is the one found in effect: nothing to check again. An edit by hand
    of the same object is checked and repaired."""
    svc = obj("v1", "Service", "gw", component="mesh", namespace="istio-system",
              spec={"type": "ClusterIP", "ports": [{"name": "tls", "port": 15443}], "selector": {"app": "gw"}})
    h.conv.set_desired(_desired([svc]), {})
    await wait_for(h.conv.converged, what="convergence")
    key = "v1/Service/istio-system/gw"
    queued: list[str] = []
    add = h.conv.queue.add
    monkeypatch.setattr(h.conv.queue, "add", lambda k: queued.append(k) or add(k))
    decoded = _count_decodes(monkeypatch)
    reflector = h.conv._reflectors[("v1", "Service")]
    for i in range(3):
        live = h.store.get("v1", "Service", "gw", "istio-system")
        assert live is not None
        before = reflector.token(("istio-system", "gw"))
        live["status"] = {"loadBalancer": {"ingress": [{"ip": f"198.51.100.{i + 1}"}]}}
        h.store.update(live, subresource="status")
        await wait_for(lambda b=before: reflector.token(("istio-system", "gw")) is not b, what="the new status stored")
        assert h.conv.converged()
    assert decoded == [] and queued == []
    live = h.store.get("v1", "Service", "gw", "istio-system")
    assert live is not None
    live["spec"]["selector"] = {"app": "hand-edited"}
    h.store.update(live)
    await wait_for(lambda: (h.store.get("v1", "Service", "gw", "istio-system") or {})["spec"]["selector"] == {"app": "gw"},
                   what="repair")
    assert key in queued and ("istio-system", "gw") in decoded


async def test_content_found_in_effect_after_a_failed_write_is_recorded(h: Harness) -> None:
    """Applied, then a change whose write fails, then the change undone: the object on
    the cluster is what is desired again, and the log must say so (its last word on the
    key would otherwise stay the failure, and the CR ReconcileFailed or Reconciling)."""
    first = _desired([_cm("a", "1")])
    h.conv.set_desired(first, {})
    await wait_for(h.conv.converged, what="convergence")
    h.fleet["master"].faults.error_rate(rate=1.0, code=503, verb="patch", resource="configmaps")
    h.conv.set_desired(_desired([_cm("a", "2")]), {})
    await wait_for(lambda: any(isinstance(e, ev.ActuationFailed) for e in h.appended), what="the failed write")
    h.conv.set_desired(first, {})  # nothing to write: the cluster has it
    key = "v1/ConfigMap/istio-system/a"

    def last() -> Event:
        return [e for e in h.appended if isinstance(e, ev.ActuationApplied | ev.ActuationFailed) and e.key == key][-1]

    await wait_for(lambda: isinstance(last(), ev.ActuationApplied), what="the content recorded in effect again")
    e = last()
    assert isinstance(e, ev.ActuationApplied)
    assert (e.verb, e.content_hash) == ("verify", first.objects[key].content_hash)
    h.fleet["master"].faults.clear()


async def test_reconciles_are_counted_like_controller_runtime(h: Harness) -> None:
    def sample(name: str, **labels: str) -> float:
        return h.metrics.registry.get_sample_value(name, {"controller": "converge-master", **labels}) or 0.0

    h.conv.set_desired(_desired([_cm("a", "1"), _cm("b", "2")]), {})
    await wait_for(h.conv.converged, what="convergence")
    assert sample("controller_runtime_reconcile_total", result="success") >= 2
    assert sample("controller_runtime_reconcile_time_seconds_count") >= 2
    assert sample("controller_runtime_reconcile_errors_total") == 0
    # An object whose namespace does not exist fails: counted as an error, then retried.
    broken = obj("v1", "ConfigMap", "c", component="mesh", namespace="nowhere", data={"v": "1"})
    h.conv.set_desired(_desired([_cm("a", "1"), _cm("b", "2"), broken]), {})
    await wait_for(lambda: sample("controller_runtime_reconcile_errors_total") >= 1, what="a counted reconcile error")
    assert sample("controller_runtime_reconcile_total", result="error") >= 1


async def test_an_update_decodes_the_stored_object_once(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key whose desired content changed is known to differ from the stored object by
    its summary (the content hash it carries): the update decodes that object once, for
    the write, and the new version once, to find it in effect; no check decodes twice."""
    first = _desired([_cm("a", "1"), _cm("b", "2")])
    h.conv.set_desired(first, {})
    await wait_for(h.conv.converged, what="convergence")
    decoded = _count_decodes(monkeypatch)
    changed = _desired([_cm("a", "1"), _cm("b", "3")])
    a = "v1/ConfigMap/istio-system/a"
    changed.objects[a] = first.objects[a]  # unchanged: the same desired object, as derived
    h.conv.set_desired(changed, {})
    await wait_for(lambda: (h.cm("b") or {}).get("data") == {"v": "3"} and h.conv.converged(), what="the update")
    # once for the write, once when its watch event shows it in effect
    assert decoded == [("istio-system", "b")] * 2


async def test_an_older_states_desired_objects_are_refused_after_a_newer_ones(h: Harness) -> None:
    """The daemon hands the master's objects over from the fold too, ahead of a
    derivation that may still hand over an older state's: those never replace them."""
    newer, older = _desired([_cm("a", "2")]), _desired([_cm("a", "1")])
    assert h.conv.set_desired(newer, {}, cause_seq=7)
    assert not h.conv.set_desired(older, {}, cause_seq=6)
    assert not h.conv.set_desired(newer, {}, cause_seq=7)  # the same, again: nothing new
    await wait_for(lambda: (h.cm("a") or {}).get("data") == {"v": "2"} and h.conv.converged(), what="the newer state")
    assert h.conv.set_desired(older, {}, cause_seq=8)  # derived from a later state: taken
    await wait_for(lambda: (h.cm("a") or {}).get("data") == {"v": "1"}, what="the later state")


async def test_one_changed_object_is_one_write(h: Harness) -> None:
    h.conv.set_desired(_desired([_cm("a", "1"), _cm("b", "2")]), {})
    await wait_for(h.conv.converged)
    before = h.fleet["master"].requests.mutating()
    h.conv.set_desired(_desired([_cm("a", "1"), _cm("b", "3")]), {})
    await wait_for(lambda: (h.cm("b") or {}).get("data") == {"v": "3"} and h.conv.converged())
    assert h.fleet["master"].requests.mutating() == before + 1


async def test_drift_is_repaired_and_foreign_fields_stay(h: Harness) -> None:
    h.conv.set_desired(_desired([_cm("a", "1")]), {})
    await wait_for(h.conv.converged)
    # a user edits our value and adds a label of their own (another field manager)
    live = h.cm("a")
    assert live is not None
    live["data"] = {"v": "hand-edited"}
    live["metadata"]["labels"]["team"] = "payments"
    h.store.update(live)
    await wait_for(lambda: (h.cm("a") or {}).get("data") == {"v": "1"}, what="repair")
    restored = h.cm("a")
    assert restored is not None and restored["metadata"]["labels"]["team"] == "payments"
    # and a hand deletion
    h.store.remove("v1", "ConfigMap", "a", "istio-system")
    await wait_for(lambda: h.cm("a") is not None, what="re-creation")
    await wait_for(h.conv.converged)
    assert h.verbs().count("apply") == 3


async def test_no_longer_desired_objects_are_deleted_and_patches_released(h: Harness) -> None:
    h.conv.set_desired(_desired([_cm("a", "1"), _cm("b", "2")], [_ns_patch("apps")]), {})
    await wait_for(h.conv.converged)
    ns = h.store.get("v1", "Namespace", "apps")
    assert ns is not None
    h.conv.set_desired(_desired([_cm("a", "1")]), {})
    await wait_for(lambda: h.cm("b") is None, what="deletion")
    await wait_for(lambda: "istio-injection" not in ((h.store.get("v1", "Namespace", "apps") or {})["metadata"].get("labels") or {}), what="release")
    assert h.store.get("v1", "Namespace", "apps") is not None  # never deleted
    await wait_for(h.conv.converged)
    assert sorted(h.verbs()).count("delete") == 1 and "release" in h.verbs()


async def test_endpoints_the_cluster_labels_like_our_service_are_not_ours(h: Harness) -> None:
    """The endpoints controller copies a Service's labels onto its Endpoints, ours
    included; only Endpoints federationd applied (selector-less Services of a flat
    network) are federationd's to delete."""
    svc = obj("v1", "Service", "injector", component="sidecar-injector", namespace="istio-system",
              spec={"selector": {"app": "injector"}, "ports": [{"name": "https", "port": 443}]})
    flat = obj("v1", "Endpoints", "flat", component="flat", namespace="istio-system",
               subsets=[{"addresses": [{"ip": "10.9.0.1"}], "ports": [{"port": 80}]}])
    h.conv.set_desired(_desired([svc, flat]), {})
    await wait_for(h.conv.converged)
    # what the endpoints controller writes for the Service: its labels, no content hash
    h.store.create({"apiVersion": "v1", "kind": "Endpoints", "metadata": {
        "name": "copied", "namespace": "istio-system", "labels": dict(svc["metadata"]["labels"])}})  # type: ignore[index]
    h.conv.set_desired(_desired([svc]), {})
    await wait_for(lambda: h.store.get("v1", "Endpoints", "flat", "istio-system") is None, what="ours deleted")
    h.conv.resync()
    await wait_for(h.conv.converged)
    assert h.store.get("v1", "Endpoints", "copied", "istio-system") is not None
    assert h.verbs().count("delete") == 1


async def test_hold_changes_nothing(h: Harness) -> None:
    h.conv.set_desired(_desired([_cm("a", "1")]), {})
    await wait_for(h.conv.converged)
    before = h.fleet["master"].requests.mutating()
    h.conv.set_desired(ClusterDesired(hold=True, hold_reason="bad spec"), {})
    h.conv.resync()
    await wait_for(h.conv.converged)
    assert h.cm("a") is not None and h.fleet["master"].requests.mutating() == before


def test_contains_compares_quantities_by_value() -> None:
    assert contains({"cpu": "1000m"}, {"cpu": "1", "memory": "1Gi"})
    assert contains({"m": "1Gi"}, {"m": "1024Mi"})
    assert not contains({"cpu": "100m"}, {"cpu": "1"})
    assert not contains({"a": [1, 2]}, {"a": [1]})
    assert not contains({"a": "x"}, {})


async def test_secret_placeholders_are_completed_only_on_the_wire(tmp_path: Path) -> None:
    token = "tok-SECRET-123"
    ref = secretref.placeholder(secretref.LIGHTSTEP_ACCESS_TOKEN, token)
    values: dict[str, str] = {}
    async with _master(tmp_path) as (fleet, client, appended, append):
        master = fleet["master"]
        conv = ClusterConverger("master", KubeClient(client), append=append, metrics=Metrics(), lookup=values.get)
        conv.start()
        try:
            # the value is not available: that object fails, with an error naming the reference only
            conv.set_desired(_desired([_cm("traced", f"token: {ref}"), _cm("plain", "1")]), {})
            await wait_for(lambda: any(isinstance(e, ev.ActuationFailed) for e in appended), what="failure")
            failed = next(e for e in appended if isinstance(e, ev.ActuationFailed))
            assert failed.key.endswith("/traced") and "SecretUnavailable" in failed.error and ref in failed.error
            await wait_for(lambda: master.store.get("v1", "ConfigMap", "plain", "istio-system") is not None)
            assert master.store.get("v1", "ConfigMap", "traced", "istio-system") is None
            # available: applied with the value, then in effect (a resync writes nothing)
            values[ref] = token
            conv.resync()
            await wait_for(conv.converged, what="convergence")
            cm = master.store.get("v1", "ConfigMap", "traced", "istio-system")
            assert cm is not None and cm["data"] == {"v": f"token: {token}"}
            before = master.requests.mutating()
            conv.resync()
            await wait_for(conv.converged, what="quiet resync")
            assert master.requests.mutating() == before
            assert all(token not in str(e) for e in appended)
        finally:
            await conv.stop()


async def test_kinds_are_written_in_order_while_one_kind_goes_in_parallel(h: Harness) -> None:
    """A namespace and what lives in it, desired at once: the parallel workers write the
    Namespace first (no write fails for want of it), then the ConfigMaps, several in
    flight together."""
    ns = obj("v1", "Namespace", "fresh", component="mesh")
    cms = [obj("v1", "ConfigMap", f"c{i:02d}", component="mesh", namespace="fresh", data={"v": str(i)}) for i in range(12)]
    h.conv.set_desired(_desired([*cms, ns]), {})
    await wait_for(h.conv.converged, what="convergence")
    applied = [e.key for e in h.appended if isinstance(e, ev.ActuationApplied)]
    assert not [e for e in h.appended if isinstance(e, ev.ActuationFailed)]
    assert applied[0] == "v1/Namespace//fresh"
    assert sorted(applied[1:]) == sorted(object_key(c) for c in cms)
    assert all(h.store.get("v1", "ConfigMap", f"c{i:02d}", "fresh") is not None for i in range(12))


async def test_a_check_of_an_object_in_effect_waits_for_no_write_of_another_kind(h: Harness) -> None:
    """Kinds are written in order, but a key whose object the inventory shows in effect
    (the watch event of our own write, a resync) writes nothing: it is checked while a
    write of another kind is in flight, and so never holds back the kinds after it. (A
    joining remote's webhook and Gateway waited behind the echoes of its CRDs.)"""
    ns = obj("v1", "Namespace", "fresh", component="mesh")
    h.conv.set_desired(_desired([ns, _cm("a", "1")]), {})
    await wait_for(h.conv.converged, what="convergence")
    h.fleet["master"].faults.latency(2.0, verb="patch", resource="configmaps", count=1)
    h.conv.set_desired(_desired([ns, _cm("a", "2")]), {})
    cm_key = "v1/ConfigMap/istio-system/a"
    await wait_for(lambda: cm_key in h.conv.queue.processing(), what="the slow ConfigMap write under way")
    h.conv.resync()  # every key again, the Namespace among them
    await wait_for(
        lambda: not len(h.conv.queue) and h.conv.queue.processing() == {cm_key},
        what="the Namespace checked while the ConfigMap write is in flight", timeout=1.5,
    )
    await wait_for(h.conv.converged, what="convergence again")
    assert h.cm("a")["data"] == {"v": "2"}  # type: ignore[index]


async def test_an_update_holds_back_no_create_of_a_later_kind(h: Harness) -> None:
    """Kinds go in order so that what a later kind needs exists first; an update changes
    an object that exists, so a slow update of a ConfigMap does not hold back the create
    of a Service (a later kind), and a create still waits for the creates before it."""
    h.conv.set_desired(_desired([_cm("a", "1")]), {})
    await wait_for(h.conv.converged, what="convergence")
    h.fleet["master"].faults.latency(2.0, verb="patch", resource="configmaps", count=1)
    svc = obj("v1", "Service", "s", component="mesh", namespace="istio-system",
              spec={"ports": [{"name": "http", "port": 80}], "selector": {"app": "s"}})
    fresh = obj("v1", "Namespace", "fresh", component="mesh")
    in_fresh = obj("v1", "ConfigMap", "b", component="mesh", namespace="fresh", data={"v": "1"})
    h.conv.set_desired(_desired([_cm("a", "2"), svc, fresh, in_fresh]), {})
    await wait_for(lambda: h.store.get("v1", "Service", "s", "istio-system") is not None,
                   what="the Service created while the ConfigMap update is in flight", timeout=1.5)
    assert h.cm("a")["data"] == {"v": "1"}  # type: ignore[index]  # still in flight
    await wait_for(h.conv.converged, what="convergence again")
    applied = [e.key for e in h.appended if isinstance(e, ev.ActuationApplied)]
    assert applied.index("v1/Namespace//fresh") < applied.index("v1/ConfigMap/fresh/b")
    assert h.cm("a")["data"] == {"v": "2"}  # type: ignore[index]


def _observed_convergence(metrics: Metrics) -> tuple[float, float]:
    """(count, sum) of ``federationd_convergence_seconds``."""
    samples = {s.name: s.value for m in metrics.convergence_seconds.collect() for s in m.samples}
    return samples["federationd_convergence_seconds_count"], samples["federationd_convergence_seconds_sum"]


async def test_a_key_changed_again_before_its_write_counts_from_its_first_change(tmp_path: Path) -> None:
    """The convergence histogram measures how long an object has been behind: a key
    re-dirtied before it was written (here: while writes fail, then once more) is
    measured from the first change not yet in effect, not from the newest — otherwise a
    key starved by changes faster than its writes would look fresh at every write, and
    FederationdConvergenceSlow could never see it."""
    now = [1000.0]
    async with _master(tmp_path) as (fleet, client, appended, append):
        metrics = Metrics()
        conv = ClusterConverger("master", KubeClient(client), append=append, metrics=metrics, clock=lambda: now[0])
        conv.start()
        try:
            fleet["master"].faults.error_rate(rate=1.0, code=503, verb="patch", resource="configmaps")
            conv.set_desired(_desired([_cm("a", "1")]), {}, cause_seq=7, cause_time=1000.0)
            await wait_for(lambda: any(isinstance(e, ev.ActuationFailed) for e in appended), what="the failed write")
            failed = next(e for e in appended if isinstance(e, ev.ActuationFailed))
            assert failed.cause_seq == 7
            # no retry of the first content may be in flight when the writes start to
            # succeed (it would land first): pause, and wait for the worker to be idle
            conv.pause()
            await wait_for(lambda: not conv.queue.processing(), what="no write in flight")
            now[0] = 1004.0
            conv.set_desired(_desired([_cm("a", "2")]), {}, cause_seq=9, cause_time=1004.0)
            fleet["master"].faults.clear()
            conv.start()
            await wait_for(conv.converged, what="convergence")
            now[0] = 1010.0  # no write is measured after this
            applied = [e for e in appended if isinstance(e, ev.ActuationApplied)]
            assert [(e.verb, e.cause_seq) for e in applied] == [("apply", 9)], applied
            count, total = _observed_convergence(metrics)
            assert count == 1
            assert total == pytest.approx(4.0), "measured from the first change (t=1000), written at t=1004"
            # the key is in effect: the next change is measured from its own time
            now[0] = 1020.0
            conv.set_desired(_desired([_cm("a", "3")]), {}, cause_seq=11, cause_time=1018.0)
            await wait_for(conv.converged, what="convergence of the third change")
            count, total = _observed_convergence(metrics)
            assert (count, total) == (2, pytest.approx(4.0 + 2.0))
            # changed and changed back while actuation is paused: found in effect, nothing
            # written, and nothing left waiting — the next change counts from its own time
            conv.pause()
            conv.set_desired(_desired([_cm("a", "4")]), {}, cause_seq=12, cause_time=1030.0)
            conv.set_desired(_desired([_cm("a", "3")]), {}, cause_seq=13, cause_time=1031.0)
            conv.start()
            await wait_for(conv.converged, what="the undone change found in effect")
            now[0] = 1103.0
            conv.set_desired(_desired([_cm("a", "5")]), {}, cause_seq=14, cause_time=1100.0)
            await wait_for(conv.converged, what="convergence of the last change")
            count, total = _observed_convergence(metrics)
            assert (count, total) == (3, pytest.approx(4.0 + 2.0 + 3.0)), "no stale cause from t=1030"
        finally:
            await conv.stop()


async def test_a_write_refused_once_leadership_is_lost_is_neither_sent_nor_a_failure(tmp_path: Path) -> None:
    """A write held at ``before_write`` (the daemon's: a full event log) while this process
    stopped leading is refused there (``NotLeading``): nothing reaches the cluster, no
    failure is recorded, counted or retried, and the write is made once it leads again."""
    async with _master(tmp_path) as (fleet, client, appended, append):
        master = fleet["master"]
        gate, leading, held = asyncio.Event(), [True], [0]

        async def before_write() -> None:
            held[0] += 1
            await gate.wait()
            if not leading[0]:
                raise NotLeading("not sent: this process no longer leads")

        metrics = Metrics()
        conv = ClusterConverger("master", KubeClient(client, before_write=before_write), append=append, metrics=metrics)
        conv.start()
        try:
            conv.set_desired(_desired([_cm("a", "1")]), {})
            await wait_for(lambda: held[0] == 1, what="the write held")
            sent = master.requests.mutating()
            conv.pause()
            leading[0] = False
            gate.set()
            await wait_for(lambda: not conv.queue.processing() and not len(conv.queue), what="the refusal handled")
            assert master.requests.mutating() == sent and master.store.get("v1", "ConfigMap", "a", "istio-system") is None
            assert not [e for e in appended if isinstance(e, ev.ActuationFailed)] and conv.stats["failed"] == 0
            assert metrics.registry.get_sample_value(
                "federationd_actuations_total", {"cluster": "master", "result": "error"}) == 0
            assert metrics.registry.get_sample_value(
                "controller_runtime_reconcile_errors_total", {"controller": "converge-master"}) == 0
            assert held[0] == 1  # not retried while paused
            leading[0] = True
            conv.start()
            await wait_for(conv.converged, what="the write made by the leader again")
            cm = master.store.get("v1", "ConfigMap", "a", "istio-system")
            assert cm is not None and cm["data"] == {"v": "1"}
        finally:
            await conv.stop()
