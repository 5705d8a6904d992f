"""LIST (selectors, paging, resourceVersion semantics) and WATCH (resume, 410, bookmarks).

The objects listed are Secrets: a fresh namespace holds none, while its ConfigMaps
already include the ``kube-root-ca.crt`` bundle every namespace gets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch

from federationd.sim import Cluster
from tests.sim.conftest import Raw, unique, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _ns(api: client.ApiClient) -> str:
    name = unique("ns")
    await client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


async def _cm(v1: client.CoreV1Api, ns: str, name: str, labels: dict[str, str] | None = None) -> Any:
    return await v1.create_namespaced_secret(ns, {"metadata": {"name": name, "labels": labels or {}}})


async def test_label_selectors_full_syntax(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    await _cm(v1, ns, "a", {"app": "web", "tier": "front"})
    await _cm(v1, ns, "b", {"app": "web", "tier": "back"})
    await _cm(v1, ns, "c", {"app": "db"})
    await _cm(v1, ns, "d")

    async def names(sel: str) -> list[str]:
        r = await v1.list_namespaced_secret(ns, label_selector=sel)
        return [i.metadata.name for i in r.items]

    assert await names("app=web") == ["a", "b"]
    assert await names("app==web,tier=back") == ["b"]
    assert await names("app!=web") == ["c", "d"]
    assert await names("tier in (front, back)") == ["a", "b"]
    assert await names("app notin (web)") == ["c", "d"]
    assert await names("tier") == ["a", "b"]
    assert await names("!tier") == ["c", "d"]
    assert await names("app in (web,db),!tier") == ["c"]
    with pytest.raises(client.ApiException) as e:
        await names("app in web")
    assert e.value.status == 400


async def test_field_selectors(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    await _cm(v1, ns, "one")
    await _cm(v1, ns, "two")
    r = await v1.list_secret_for_all_namespaces(field_selector=f"metadata.namespace={ns},metadata.name!=one")
    assert [i.metadata.name for i in r.items] == ["two"]
    with pytest.raises(client.ApiException) as e:
        await v1.list_namespaced_secret(ns, field_selector="data.x=y")
    assert e.value.status == 400 and "field label not supported: data.x" in json.loads(e.value.body)["message"]


async def test_paging_with_limit_and_continue_is_consistent(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    for i in range(7):
        await _cm(v1, ns, f"p{i}")
    first = await v1.list_namespaced_secret(ns, limit=3)
    assert [i.metadata.name for i in first.items] == ["p0", "p1", "p2"]
    assert first.metadata.remaining_item_count == 4 and first.metadata._continue
    # a change between pages is not visible: the list is served at the first page's revision
    await _cm(v1, ns, "p3a")
    second = await v1.list_namespaced_secret(ns, limit=3, _continue=first.metadata._continue)
    assert [i.metadata.name for i in second.items] == ["p3", "p4", "p5"]
    third = await v1.list_namespaced_secret(ns, limit=3, _continue=second.metadata._continue)
    assert [i.metadata.name for i in third.items] == ["p6"] and not third.metadata._continue
    assert third.metadata.resource_version == first.metadata.resource_version


async def test_continue_token_expires_after_compaction(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    for i in range(3):
        await _cm(v1, ns, f"q{i}")
    first = await v1.list_namespaced_secret(ns, limit=1)
    await _cm(v1, ns, "later")
    master.faults.compact()
    with pytest.raises(client.ApiException) as e:
        await v1.list_namespaced_secret(ns, limit=1, _continue=first.metadata._continue)
    assert e.value.status == 410 and json.loads(e.value.body)["reason"] == "Expired"


async def test_list_resource_version_semantics(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    a = await _cm(v1, ns, "a")
    rv_a = a.metadata.resource_version
    await _cm(v1, ns, "b")
    latest = await v1.list_namespaced_secret(ns)
    assert int(latest.metadata.resource_version) == master.store.revision
    any_ = await v1.list_namespaced_secret(ns, resource_version="0")
    assert len(any_.items) == 2
    exact = await v1.list_namespaced_secret(ns, resource_version=rv_a, resource_version_match="Exact")
    assert [i.metadata.name for i in exact.items] == ["a"] and exact.metadata.resource_version == rv_a
    not_older = await v1.list_namespaced_secret(ns, resource_version=rv_a)
    assert len(not_older.items) == 2
    with pytest.raises(client.ApiException) as e:
        await v1.list_namespaced_secret(ns, resource_version=str(master.store.revision + 1000))
    assert e.value.status == 504


async def _collect(raw: Raw, path: str, params: dict[str, str], until: int, limit: float = 5) -> list[dict[str, Any]]:
    """Read a watch stream line by line until ``until`` events arrived."""
    events: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {raw.token}"}
    async with raw.session.get(raw.cluster.url + path, params={"watch": "true", **params}, headers=headers) as resp:
        assert resp.status == 200
        async with asyncio.timeout(limit):
            async for line in resp.content:
                if line.strip():
                    events.append(json.loads(line))
                if len(events) >= until:
                    break
    return events


async def test_watch_resumes_from_any_revision_in_the_window(api: client.ApiClient, raw: Raw) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    a = await _cm(v1, ns, "a")
    await _cm(v1, ns, "b")
    await v1.patch_namespaced_secret("a", ns, {"data": {"x": "MQ=="}})
    await v1.delete_namespaced_secret("b", ns)
    evs = await _collect(raw, f"/api/v1/namespaces/{ns}/secrets", {"resourceVersion": a.metadata.resource_version}, 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs == sorted(rvs) and rvs[0] > int(a.metadata.resource_version)


async def test_watch_without_version_starts_with_synthetic_adds(api: client.ApiClient, raw: Raw) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    await _cm(v1, ns, "x")
    await _cm(v1, ns, "y")
    evs = await _collect(raw, f"/api/v1/namespaces/{ns}/secrets", {}, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("ADDED", "x"), ("ADDED", "y")]


async def test_watch_from_a_compacted_revision_gets_410_error_event(api: client.ApiClient, raw: Raw, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    a = await _cm(v1, ns, "a")
    await _cm(v1, ns, "b")
    floor = master.faults.compact()
    evs = await _collect(raw, f"/api/v1/namespaces/{ns}/secrets", {"resourceVersion": a.metadata.resource_version}, 1)
    assert evs[0]["type"] == "ERROR"
    status = evs[0]["object"]
    assert status["code"] == 410 and status["reason"] == "Expired" and status["kind"] == "Status"
    assert status["message"] == f"too old resource version: {a.metadata.resource_version} ({floor})"


async def test_history_window_is_bounded(master: Cluster, api: client.ApiClient, raw: Raw) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    first = await _cm(v1, ns, "w0")
    master.store.set_history(5)
    try:
        for i in range(1, 8):
            await _cm(v1, ns, f"w{i}")
        evs = await _collect(raw, f"/api/v1/namespaces/{ns}/secrets", {"resourceVersion": first.metadata.resource_version}, 1)
        assert evs[0]["type"] == "ERROR" and evs[0]["object"]["code"] == 410
    finally:
        master.store.set_history(20_000)


async def test_watch_sends_periodic_bookmarks_when_allowed(api: client.ApiClient, raw: Raw, master: Cluster) -> None:
    ns = await _ns(api)
    evs = await _collect(raw, f"/api/v1/namespaces/{ns}/secrets",
                         {"resourceVersion": str(master.store.revision), "allowWatchBookmarks": "true"}, 2)
    assert [e["type"] for e in evs] == ["BOOKMARK", "BOOKMARK"]
    assert evs[0]["object"]["kind"] == "Secret"
    assert int(evs[0]["object"]["metadata"]["resourceVersion"]) >= 1


async def test_watch_gets_a_bookmark_just_before_its_deadline(raw: Raw, master: Cluster) -> None:
    """As kube-apiserver's cacher: besides the periodic one (a minute there), a BOOKMARK
    2 s before the watch's ``timeoutSeconds`` runs out, so the client resumes from there."""
    saved = master.server.bookmark_interval
    master.server.bookmark_interval = 60.0
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        headers = {"Authorization": f"Bearer {raw.token}"}
        async with raw.session.get(raw.cluster.url + "/api/v1/namespaces/default/secrets", headers=headers, params={
            "watch": "1", "timeoutSeconds": "3", "allowWatchBookmarks": "true", "resourceVersion": str(master.store.revision),
        }) as resp:
            async with asyncio.timeout(10):
                body = await resp.read()
        ended = loop.time() - t0
    finally:
        master.server.bookmark_interval = saved
    events = [json.loads(line) for line in body.splitlines() if line.strip()]
    assert [e["type"] for e in events] == ["BOOKMARK"]
    assert 2.9 <= ended < 6


async def test_watch_ends_after_timeout_seconds(raw: Raw, master: Cluster) -> None:
    headers = {"Authorization": f"Bearer {raw.token}"}
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with raw.session.get(raw.cluster.url + "/api/v1/namespaces/default/secrets",
                               params={"watch": "1", "timeoutSeconds": "1", "resourceVersion": str(master.store.revision)},
                               headers=headers) as resp:
        async with asyncio.timeout(5):
            body = await resp.read()
    assert body == b"" and 0.9 <= loop.time() - t0 < 3


async def test_label_selector_watch_sees_objects_enter_and_leave(api: client.ApiClient, raw: Raw, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    cm = await _cm(v1, ns, "m")
    start = cm.metadata.resource_version
    await v1.patch_namespaced_secret("m", ns, {"metadata": {"labels": {"sel": "yes"}}})
    await v1.patch_namespaced_secret("m", ns, {"data": {"k": "dg=="}})
    await v1.patch_namespaced_secret("m", ns, {"metadata": {"labels": {"sel": "no"}}})
    evs = await _collect(raw, f"/api/v1/namespaces/{ns}/secrets", {"resourceVersion": start, "labelSelector": "sel=yes"}, 3)
    assert [e["type"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"]


async def test_kubernetes_asyncio_watch_sees_live_changes(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    cm = await _cm(v1, ns, "live")
    seen: list[tuple[str, str]] = []

    async def writer() -> None:
        await v1.patch_namespaced_secret("live", ns, {"data": {"a": "Yg=="}})
        await v1.delete_namespaced_secret("live", ns)

    task = asyncio.create_task(writer())
    async with watch.Watch() as w, asyncio.timeout(5):
        async for ev in w.stream(v1.list_namespaced_secret, ns, resource_version=cm.metadata.resource_version, timeout_seconds=5):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                break
    await task
    assert seen == [("MODIFIED", "live"), ("DELETED", "live")]


async def test_drop_watches_ends_open_streams(api: client.ApiClient, raw: Raw, master: Cluster) -> None:
    headers = {"Authorization": f"Bearer {raw.token}"}
    async with raw.session.get(raw.cluster.url + "/api/v1/namespaces/default/secrets",
                               params={"watch": "1", "resourceVersion": str(master.store.revision)}, headers=headers) as resp:
        await wait_for(lambda: master.store.watcher_count() > 0, what="watch registered")
        assert master.faults.drop_watches() >= 1
        async with asyncio.timeout(5):
            assert await resp.read() == b""


async def test_a_watch_ends_when_its_client_goes_away(api: client.ApiClient, raw: Raw, master: Cluster) -> None:
    # no event reaches this namespace's watch: only the lost connection can end it
    ns = await _ns(api)
    headers = {"Authorization": f"Bearer {raw.token}"}
    resp = await raw.session.get(raw.cluster.url + f"/api/v1/namespaces/{ns}/secrets",
                                 params={"watch": "1", "timeoutSeconds": "600"}, headers=headers)
    await wait_for(lambda: master.store.watcher_count(("", "secrets"), ns) == 1, what="watch registered")
    resp.close()
    await wait_for(lambda: master.store.watcher_count(("", "secrets"), ns) == 0, what="watch ended", within=5)


async def test_watch_list_protocol_marks_the_end_of_initial_events(api: client.ApiClient, raw: Raw) -> None:
    v1 = client.CoreV1Api(api)
    ns = await _ns(api)
    await _cm(v1, ns, "one")
    evs = await _collect(raw, f"/api/v1/namespaces/{ns}/secrets",
                         {"sendInitialEvents": "true", "allowWatchBookmarks": "true",
                          "resourceVersionMatch": "NotOlderThan", "resourceVersion": ""}, 2)
    assert evs[0]["type"] == "ADDED" and evs[0]["object"]["metadata"]["name"] == "one"
    assert evs[1]["type"] == "BOOKMARK"
    assert evs[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_deleting_a_crd_ends_its_watches(api: client.ApiClient, raw: Raw, master: Cluster) -> None:
    from tests.sim.crds import remoteistio_crd

    ext = client.ApiextensionsV1Api(api)
    await ext.create_custom_resource_definition(remoteistio_crd(group="gone.example.com", plural="gizmos", kind="Gizmo"))
    headers = {"Authorization": f"Bearer {raw.token}"}
    async with raw.session.get(raw.cluster.url + "/apis/gone.example.com/v1beta1/gizmos",
                               params={"watch": "1", "resourceVersion": str(master.store.revision)}, headers=headers) as resp:
        await wait_for(lambda: master.store.watcher_count() > 0, what="watching gizmos")
        await ext.delete_custom_resource_definition("gizmos.gone.example.com")
        async with asyncio.timeout(5):
            assert await resp.read() == b""
