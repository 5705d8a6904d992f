"""The runtime against the simulated fleet (the same wire protocol a real API server
speaks): reflector list/watch/resume/bookmarks/410/watchdog/throttling/partitions,
the typed client including a CRD installed at run time, and leader election."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from federationd.actuators.client import (
    ApiBadRequest,
    ApiConflict,
    ApiInvalid,
    ApiNotFound,
    KubeClient,
)
from federationd.clusters import BackoffPolicy, ClusterClient, ClusterState, connect
from federationd.leader import LeaderElector
from federationd.metrics import Metrics
from federationd.sim import Fleet
from federationd.watchers.reflector import Reflector
from tests.runtime.conftest import FakeClock, wait_for

FAST = BackoffPolicy(initial=0.02, cap=0.1, jitter=0.0)
NS = "work"


async def _fleet(tmp_path: Path, *, bookmark_interval: float) -> AsyncIterator[Fleet]:
    async with Fleet(["master"], directory=tmp_path, bookmark_interval=bookmark_interval,
                     lb_delay=0.02, ready_delay=0.02) as fleet:
        fleet["master"].store.create({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": NS}})
        yield fleet


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    async for f in _fleet(tmp_path, bookmark_interval=0.1):
        yield f


@pytest.fixture
async def quiet_fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """Bookmarks only every 30 s: a watch with no changes is silent."""
    async for f in _fleet(tmp_path, bookmark_interval=30.0):
        yield f


async def _client(fleet: Fleet, metrics: Metrics) -> ClusterClient:
    return await connect(fleet["master"].kubeconfig, name="master", metrics=metrics,
                         request_timeout=5.0)


@pytest.fixture
async def sim(fleet: Fleet, metrics: Metrics) -> AsyncIterator[ClusterClient]:
    c = await _client(fleet, metrics)
    yield c
    await c.close()


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS}, "data": data}


#: the CA bundle every namespace holds, as on a real cluster: not one of the tests' own
ROOT_CA = "kube-root-ca.crt"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def upsert(self, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] != ROOT_CA:
            self.events.append(("upsert", obj["metadata"]["name"]))

    def delete(self, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] != ROOT_CA:
            self.events.append(("delete", obj["metadata"]["name"]))


def configmaps(client: ClusterClient, rec: Recorder, **kw: Any) -> Reflector:
    kw.setdefault("backoff", FAST)
    return Reflector(client, api_version="v1", kind="ConfigMap", namespace=NS,
                     on_upsert=rec.upsert, on_delete=rec.delete, **kw)


async def test_list_watch_bookmarks_and_resume(fleet: Fleet, sim: ClusterClient) -> None:
    store = fleet["master"].store
    store.create(cm("a"))
    rec = Recorder()
    r = configmaps(sim, rec, page_size=1)
    r.start()
    await wait_for(r.synced.is_set)
    store.create(cm("b"))
    await wait_for(lambda: ("upsert", "b") in rec.events)
    rv = int(r.resource_version)
    store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS}})
    await wait_for(lambda: r.stats["bookmarks"] >= 2 and int(r.resource_version) > rv)
    for i in range(3):
        fleet["master"].faults.drop_watches()
        store.create(cm(f"n{i}"))
        expected = ("upsert", f"n{i}")
        await wait_for(lambda: expected in rec.events)  # noqa: B023 - awaited at once
    assert r.stats["lists"] == 1 and r.stats["gone"] == 0
    assert rec.events.count(("upsert", "a")) == 1
    await r.stop()


async def test_partition_with_compaction_relists_only_differences(
        fleet: Fleet, sim: ClusterClient) -> None:
    c = fleet["master"]
    for name in ("a", "b", "c"):
        c.store.create(cm(name))
    rec = Recorder()
    r = configmaps(sim, rec)
    r.start()
    await wait_for(lambda: len(rec.events) == 3 and c.store.watcher_count() >= 1)
    await c.faults.partition(60)
    await wait_for(lambda: sim.health.state is ClusterState.UNREACHABLE)
    b = c.store.get("v1", "ConfigMap", "b", NS)
    assert b is not None
    b["data"] = {"changed": "yes"}
    c.store.update(b)
    kind = c.store.kind_for("v1", "ConfigMap")
    c.store.delete(kind, NS, "c")
    c.store.create(cm("d"))
    c.faults.compact()
    rec.events.clear()
    await c.faults.heal()
    await wait_for(lambda: r.stats["gone"] >= 1 and len(rec.events) == 3, within=10)
    assert sorted(rec.events) == [("delete", "c"), ("upsert", "b"), ("upsert", "d")]
    assert sorted(n for _, n in r.store if n != ROOT_CA) == ["a", "b", "d"]
    assert sim.health.state is ClusterState.CONNECTED
    await r.stop()


async def test_bookmarks_keep_a_quiet_watch_alive(fleet: Fleet, sim: ClusterClient) -> None:
    rec = Recorder()
    r = configmaps(sim, rec, inactivity_timeout=0.6)
    r.start()
    await wait_for(lambda: r.stats["bookmarks"] >= 8)
    assert r.stats["watchdog"] == 0 and r.stats["watches"] == 1
    await r.stop()


async def test_watchdog_restarts_a_silent_watch(quiet_fleet: Fleet, metrics: Metrics) -> None:
    client = await _client(quiet_fleet, metrics)
    try:
        rec = Recorder()
        r = configmaps(client, rec, inactivity_timeout=0.3)
        r.start()
        await wait_for(lambda: r.stats["watchdog"] >= 2)
        assert r.stats["lists"] == 1 and r.stats["watches"] >= 3
        quiet_fleet["master"].store.create(cm("late"))
        await wait_for(lambda: ("upsert", "late") in rec.events)
        await r.stop()
    finally:
        await client.close()


async def test_throttled_list_waits_retry_after(fleet: Fleet, sim: ClusterClient,
                                                clock: FakeClock) -> None:
    fleet["master"].faults.throttle(retry_after=3, verb="list", count=1)
    rec = Recorder()
    r = configmaps(sim, rec, clock=clock, backoff=BackoffPolicy())
    r.start()
    await wait_for(lambda: clock.sleepers == 1)
    assert clock.slept == [3.0] and r.stats["throttled"] == 1 and not r.synced.is_set()
    clock.advance(3)
    await wait_for(r.synced.is_set)
    await r.stop()


async def test_server_errors_back_off_exponentially(fleet: Fleet, sim: ClusterClient,
                                                   clock: FakeClock) -> None:
    fleet["master"].faults.error_rate(rate=1.0, code=503, verb="list", count=3)
    r = configmaps(sim, Recorder(), clock=clock, rand=lambda: 0.0, backoff=BackoffPolicy())
    r.start()
    for delay in (0.8, 1.6, 3.2):
        await wait_for(lambda: clock.sleepers == 1)
        assert clock.slept[-1] == delay
        clock.advance(delay)
    await wait_for(r.synced.is_set)
    await r.stop()


async def test_typed_client_on_the_emulator(fleet: Fleet, sim: ClusterClient) -> None:
    assert (await sim.server_version()).startswith("v1.")
    kc = KubeClient(sim)
    applied = await kc.apply(cm("istio", mesh="x"))
    assert any(f.get("manager") == "federationd" for f in applied["metadata"]["managedFields"])
    # Steady state: re-applying the same content changes nothing.
    again = await kc.apply(cm("istio", mesh="x"))
    assert again["metadata"]["resourceVersion"] == applied["metadata"]["resourceVersion"]
    with pytest.raises(ApiNotFound):
        await kc.get("v1", "ConfigMap", NS, "missing")
    await kc.create(cm("dup"))
    with pytest.raises(ApiConflict):
        await kc.create(cm("dup"))
    with pytest.raises(ApiBadRequest):
        await kc.apply({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "bad", "namespace": NS},
                        "spec": {"ports": [{"port": "not-a-number"}]}})
    with pytest.raises(ApiInvalid) as invalid:
        await kc.apply(cm("Not_A_DNS_Name"))
    assert invalid.value.status == 422 and "metadata.name" in invalid.value.message
    event = await kc.create_event(applied, reason="Applied", message="mesh config applied")
    assert event["involvedObject"]["uid"] == applied["metadata"]["uid"]
    await kc.delete("v1", "ConfigMap", NS, "istio")
    with pytest.raises(ApiNotFound):
        await kc.get("v1", "ConfigMap", NS, "istio")


async def test_crd_installed_at_run_time_becomes_usable(sim: ClusterClient) -> None:
    kc = KubeClient(sim)
    widget = {"apiVersion": "example.com/v1", "kind": "Widget",
              "metadata": {"name": "w", "namespace": NS}, "spec": {"size": 2}}
    with pytest.raises(ApiNotFound):
        await kc.apply(widget)
    await kc.apply({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                           "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                         "type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}})

    async def usable() -> bool:
        try:
            await kc.apply(widget)
        except ApiNotFound:
            return False
        return True

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not await usable():
        assert loop.time() < deadline, "CRD never became usable"
        await asyncio.sleep(0.02)
    assert (await kc.get("example.com/v1", "Widget", NS, "w"))["spec"] == {"size": 2}


async def test_leader_failover_on_the_emulator(fleet: Fleet, metrics: Metrics) -> None:
    clients = [await _client(fleet, metrics) for _ in range(2)]
    try:
        opts: dict[str, Any] = {"lease_duration": 0.8, "renew_deadline": 0.5,
                                "retry_period": 0.1, "name": "federationd", "namespace": NS}
        a = LeaderElector(KubeClient(clients[0]), identity="a", metrics=Metrics(), **opts)
        b = LeaderElector(KubeClient(clients[1]), identity="b", metrics=Metrics(), **opts)
        a.start()
        await wait_for(lambda: a.is_leader)
        b.start()
        await wait_for(lambda: b.holder == "a")
        assert not b.is_leader
        died = time.monotonic()
        await a.stop(release=False)
        await wait_for(lambda: b.is_leader, within=5)
        assert time.monotonic() - died >= 0.6
        lease = fleet["master"].store.get("coordination.k8s.io/v1", "Lease", "federationd", NS)
        assert lease is not None and lease["spec"]["holderIdentity"] == "b"
        await b.stop()
        lease = fleet["master"].store.get("coordination.k8s.io/v1", "Lease", "federationd", NS)
        assert lease is not None and lease["spec"]["holderIdentity"] == ""
    finally:
        for c in clients:
            await c.close()
