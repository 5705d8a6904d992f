"""Reflector semantics against the fake API server: list → watch from the list's RV,
bookmarks, resume without relist, 410 → relist emitting only differences, watchdog,
backoff and Retry-After, clean cancellation."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from federationd.clusters import BackoffPolicy, ClusterClient
from federationd.clusters.backoff import Backoff
from federationd.watchers.reflector import (
    CompactStore,
    Reflector,
    default_transform,
    strip_managed_fields,
)
from tests.runtime.conftest import FakeClock, wait_for
from tests.runtime.fakeapi import FakeApi, Fault

FAST = BackoffPolicy(initial=0.01, cap=0.05, jitter=0.0)


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def upsert(self, obj: dict[str, Any]) -> None:
        self.events.append(("upsert", obj["metadata"]["name"]))

    def delete(self, obj: dict[str, Any]) -> None:  # sync callbacks work too
        self.events.append(("delete", obj["metadata"]["name"]))


def reflector(client: ClusterClient, rec: Recorder, **kw: Any) -> Reflector:
    kw.setdefault("backoff", FAST)
    return Reflector(client, api_version="v1", kind="Namespace", on_upsert=rec.upsert,
                     on_delete=rec.delete, **kw)


async def test_list_then_watch_from_the_list_resource_version(client: ClusterClient,
                                                              api: FakeApi) -> None:
    for name in ("a", "b", "c"):
        api.put("namespaces", ns(name))
    rec = Recorder()
    r = reflector(client, rec, page_size=2)
    r.start()
    await wait_for(r.synced.is_set)
    assert sorted(rec.events) == [("upsert", "a"), ("upsert", "b"), ("upsert", "c")]
    await wait_for(lambda: api.open_watches == 1)
    q = api.watch_queries[0]
    assert q["resourceVersion"] == "3" and q["allowWatchBookmarks"] == "true"
    assert 300 <= int(q["timeoutSeconds"]) < 600
    api.put("namespaces", ns("b", team="x"))
    api.remove("namespaces", "", "a")
    await wait_for(lambda: len(rec.events) == 5)
    assert rec.events[3:] == [("upsert", "b"), ("delete", "a")]
    assert set(r.store) == {("", "b"), ("", "c")}
    assert r.store[("", "b")]["metadata"]["labels"] == {"team": "x"}
    assert r.resource_version == "5"
    await r.stop()
    await wait_for(lambda: api.open_watches == 0)


async def test_bookmarks_advance_the_resource_version(client: ClusterClient, api: FakeApi) -> None:
    rec = Recorder()
    r = reflector(client, rec)
    r.start()
    await wait_for(lambda: api.open_watches == 1)
    api.put("configmaps", {"metadata": {"name": "x", "namespace": "d"}})  # another type
    api.bookmark()
    await wait_for(lambda: r.stats["bookmarks"] == 1)
    assert r.resource_version == str(api.rv) and rec.events == []
    # After a drop, the watch resumes from the bookmark, not from the list's RV.
    api.drop_watches()
    await wait_for(lambda: len(api.watch_queries) == 2)
    assert api.watch_queries[1]["resourceVersion"] == str(api.rv)
    await r.stop()


async def test_dropped_watch_resumes_without_relisting(client: ClusterClient, api: FakeApi) -> None:
    api.put("namespaces", ns("a"))
    rec = Recorder()
    r = reflector(client, rec)
    r.start()
    await wait_for(lambda: api.open_watches == 1)
    api.put("namespaces", ns("b"))
    await wait_for(lambda: len(rec.events) == 2)
    for i in range(3):
        api.drop_watches()
        api.put("namespaces", ns(f"n{i}"))
        expected = ("upsert", f"n{i}")
        await wait_for(lambda: expected in rec.events)  # noqa: B023 - awaited at once
    assert r.stats["lists"] == 1 and api.requests["list"] == 1
    assert rec.events.count(("upsert", "a")) == 1
    await r.stop()


async def _relist_differences(client: ClusterClient, api: FakeApi, clock: FakeClock,
                              **kw: Any) -> Reflector:
    for name in ("a", "b", "c"):
        api.put("namespaces", ns(name))
    rec = Recorder()
    r = reflector(client, rec, clock=clock, rand=lambda: 0.0, **kw)
    r.start()
    await wait_for(lambda: api.open_watches == 1)
    # Take the watch away (it fails once, then the reflector waits on the fake clock),
    # change things, and compact history so that resuming is impossible.
    fault = Fault(503, 1, verb="watch")
    api.faults.append(fault)
    api.drop_watches()
    await wait_for(lambda: fault.count == 0 and clock.sleepers == 1)
    api.put("namespaces", ns("b", changed="yes"))
    api.remove("namespaces", "", "c")
    api.put("namespaces", ns("d"))
    api.compact()
    rec.events.clear()
    clock.advance(10)
    await wait_for(lambda: r.stats["gone"] == 1 and api.open_watches == 1)
    assert sorted(rec.events) == [("delete", "c"), ("upsert", "b"), ("upsert", "d")]
    assert r.stats["lists"] == 2
    assert set(r.store) == {("", "a"), ("", "b"), ("", "d")}
    await r.stop()
    return r


async def test_gone_event_relists_and_emits_only_differences(
        client: ClusterClient, api: FakeApi, clock: FakeClock) -> None:
    await _relist_differences(client, api, clock)


async def test_gone_http_status_relists_too(client: ClusterClient, api: FakeApi,
                                           clock: FakeClock) -> None:
    api.gone_as_http = True
    await _relist_differences(client, api, clock)


async def test_a_compact_store_keeps_json_decodes_copies_and_summarises(
        client: ClusterClient, api: FakeApi, clock: FakeClock) -> None:
    r = await _relist_differences(client, api, clock, compact=True,
                                  summarise=lambda o: o["metadata"]["name"].upper())
    store = r.store
    assert isinstance(store, CompactStore)  # a relist keeps it compact
    assert all(isinstance(raw, bytes) for raw in store._raw.values())
    assert sorted(s for _, s in store.summaries()) == ["A", "B", "D"]
    b = store[("", "b")]
    assert b["metadata"]["labels"] == {"changed": "yes"}
    # every read is a copy: a reader changing it changes nothing stored
    b["metadata"]["labels"]["changed"] = "no"
    assert store[("", "b")]["metadata"]["labels"] == {"changed": "yes"}
    # the token stands for the stored version until the key is written again
    token = r.token(("", "b"))
    assert token is not None and r.token(("", "b")) is token
    store[("", "b")] = b
    assert r.token(("", "b")) is not token and r.token(("", "zz")) is None
    del store[("", "b")]
    assert ("", "b") not in store and sorted(s for _, s in store.summaries()) == ["A", "D"]


async def test_compaction_during_a_watch_relists(client: ClusterClient, api: FakeApi) -> None:
    api.put("namespaces", ns("a"))
    rec = Recorder()
    r = reflector(client, rec)
    r.start()
    await wait_for(lambda: api.open_watches == 1)
    api.compact()  # the server ends the open watch with ERROR 410
    await wait_for(lambda: r.stats["gone"] == 1 and r.stats["lists"] == 2)
    assert rec.events == [("upsert", "a")]  # unchanged objects are not re-emitted
    await r.stop()


async def test_inactivity_watchdog_restarts_a_silent_watch(client: ClusterClient,
                                                           api: FakeApi) -> None:
    api.hang_watches = True
    rec = Recorder()
    r = reflector(client, rec, inactivity_timeout=0.2)
    r.start()
    await wait_for(lambda: r.stats["watchdog"] >= 2)
    assert r.stats["watches"] >= 3 and r.stats["lists"] == 1
    api.hang_watches = False
    api.put("namespaces", ns("late"))
    await wait_for(lambda: ("upsert", "late") in rec.events)
    await r.stop()


async def test_backoff_doubles_and_retry_after_is_honoured(client: ClusterClient, api: FakeApi,
                                                           clock: FakeClock) -> None:
    api.faults.append(Fault(503, 4, verb="list"))
    rec = Recorder()
    r = reflector(client, rec, clock=clock, rand=lambda: 0.0, backoff=BackoffPolicy())
    r.start()
    for expected in (0.8, 1.6, 3.2, 6.4):
        await wait_for(lambda: clock.sleepers == 1)
        assert clock.slept[-1] == expected
        clock.advance(expected)
    await wait_for(r.synced.is_set)
    api.faults.append(Fault(429, 1, retry_after=7, verb="watch"))
    api.drop_watches()
    await wait_for(lambda: clock.sleepers == 1)
    assert clock.slept[-1] == 7.0 and r.stats["throttled"] == 1
    clock.advance(7)
    await wait_for(lambda: api.open_watches == 1)
    assert r.stats["lists"] == 1  # a throttled watch resumes, no relist
    await r.stop()


async def test_partition_then_recovery_delivers_what_happened(
        client: ClusterClient, api: FakeApi) -> None:
    api.put("namespaces", ns("a"))
    rec = Recorder()
    r = reflector(client, rec)
    r.start()
    await wait_for(lambda: api.open_watches == 1)
    api.faults.append(Fault(503, 5, verb="watch"))
    api.drop_watches()
    api.put("namespaces", ns("during"))
    await wait_for(lambda: api.faults[-1].count == 0)
    await wait_for(lambda: ("upsert", "during") in rec.events)
    assert r.stats["errors"] == 5 and r.stats["lists"] == 1
    assert "503" in r.last_error
    await r.stop()


def test_backoff_jitter_cap_and_reset_after_a_healthy_period() -> None:
    t = [0.0]
    b = Backoff(BackoffPolicy(), clock=lambda: t[0], rand=lambda: 1.0)
    delays = [b.next() for _ in range(8)]
    assert delays[0] == 0.8 * 1.1 and delays[-1] == 30.0 * 1.1
    t[0] += 121.0  # healthy for longer than reset_after
    assert b.next() == 0.8 * 1.1
    rng = random.Random(1)
    jittered = Backoff(BackoffPolicy(), clock=lambda: t[0], rand=rng.random)
    assert 0.8 <= jittered.next() <= 0.88


def test_backoff_survives_a_long_outage() -> None:
    b = Backoff(BackoffPolicy(jitter=0.0), clock=lambda: 0.0, rand=lambda: 0.0)
    assert max(b.next() for _ in range(5000)) == 30.0


async def test_reflector_waits_for_a_kind_that_is_not_served_yet(client: ClusterClient,
                                                                 api: FakeApi) -> None:
    rec = Recorder()
    r = Reflector(client, api_version="example.com/v1", kind="Widget", on_upsert=rec.upsert,
                  on_delete=rec.delete, backoff=FAST)
    r.start()
    await wait_for(lambda: r.stats["errors"] >= 2)
    assert not r.synced.is_set()
    api.resources["example.com/v1"] = [{"name": "widgets", "kind": "Widget", "namespaced": True}]
    api.put("widgets", {"apiVersion": "example.com/v1", "kind": "Widget",
                        "metadata": {"name": "w", "namespace": "d"}})
    await wait_for(lambda: rec.events == [("upsert", "w")])
    await r.stop()


async def test_many_watches_do_not_starve_other_requests(client: ClusterClient,
                                                         api: FakeApi) -> None:
    reflectors = [reflector(client, Recorder()) for _ in range(40)]
    for r in reflectors:
        r.start()
    await wait_for(lambda: api.open_watches == 40)
    assert await client.request("GET", "/api/v1", request_timeout=2.0) is not None
    for r in reflectors:
        await r.stop()
    await wait_for(lambda: api.open_watches == 0)


async def test_stop_propagates_the_callers_own_cancellation(client: ClusterClient, api: FakeApi) -> None:
    """``stop()`` absorbs the reflector task's cancellation, never its caller's."""
    api.put("namespaces", ns("a"))
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow_upsert(obj: dict[str, Any]) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # a clean-up that takes a while
            raise

    r = Reflector(client, api_version="v1", kind="Namespace", on_upsert=slow_upsert,
                  on_delete=lambda obj: None, backoff=FAST)
    r.start()
    await entered.wait()
    reached: list[bool] = []

    async def caller() -> None:
        await r.stop()
        reached.append(True)  # must not run: the caller was cancelled

    stopper = asyncio.create_task(caller())
    await wait_for(lambda: r._task is None)  # stop() has begun and awaits the task
    stopper.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert reached == []
    # and a plain stop() of a reflector still returns normally
    r2 = reflector(client, Recorder())
    r2.start()
    await wait_for(r2.synced.is_set)
    await r2.stop()


async def test_the_store_keeps_namespaces_with_their_writers_only(client: ClusterClient, api: FakeApi) -> None:
    mf = [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:metadata": {}}}]
    api.put("namespaces", {**ns("a", team="x"), "metadata": {"name": "a", "labels": {"team": "x"}, "managedFields": mf}})
    seen: list[dict[str, Any]] = []
    r = Reflector(client, api_version="v1", kind="Namespace", on_upsert=seen.append, backoff=FAST)
    r.start()
    await wait_for(r.synced.is_set)
    await wait_for(lambda: api.open_watches == 1)
    api.put("namespaces", {**ns("b"), "metadata": {"name": "b", "managedFields": mf}})
    await wait_for(lambda: len(seen) == 2)
    # a Namespace keeps only who wrote it (what the converger checks before deleting one)
    for key in (("", "a"), ("", "b")):
        assert r.store[key]["metadata"]["managedFields"] == [{"manager": "kubectl"}]
    assert r.store[("", "a")]["metadata"]["labels"] == {"team": "x"}
    assert all(o["metadata"]["managedFields"] == [{"manager": "kubectl"}] for o in seen)  # callbacks see the same
    await r.stop()


def test_other_kinds_keep_no_managed_fields() -> None:
    mf = [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:metadata": {}}}]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}, "managedFields": mf}}
    assert default_transform("ConfigMap")(cm) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}}}
    assert cm["metadata"]["managedFields"] == mf, "the transform copies, it does not change what it was given"


def test_a_node_keeps_its_labels_and_addresses_only() -> None:
    node = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n", "labels": {"topology.kubernetes.io/zone": "a"}, "managedFields": [{}]},
        "status": {"addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}], "images": [{"names": ["x"] * 50}],
                   "conditions": [{"type": "Ready"}]},
    }
    out = default_transform("Node")(node)
    assert out == {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "labels": {"topology.kubernetes.io/zone": "a"}},
                   "status": {"addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}]}}
    assert "images" in node["status"]  # the input is not changed
    plain = {"metadata": {"name": "x"}}
    assert strip_managed_fields(plain) is plain


async def test_stop_ends_a_reflector_whose_first_cancellation_is_lost(
        client: ClusterClient, api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancellation swallowed inside the loop (as Python 3.11's ``wait_for`` does when
    a watch line arrives with it) must not make ``stop()`` wait forever: it cancels again."""
    api.put("namespaces", ns("a"))
    rec = Recorder()
    r = reflector(client, rec)
    lost: list[bool] = []
    real_watch = r._watch

    async def watch_losing_one_cancel() -> int:
        try:
            return await real_watch()
        except asyncio.CancelledError:
            if lost:
                raise
            lost.append(True)
            return 0  # the cancellation is dropped; the loop starts another watch

    monkeypatch.setattr(r, "_watch", watch_losing_one_cancel)
    r.start()
    await wait_for(lambda: api.open_watches == 1)
    async with asyncio.timeout(10):
        await r.stop()
    assert lost == [True], "the first cancellation was lost and the stop still ended the task"
    await wait_for(lambda: api.open_watches == 0)
