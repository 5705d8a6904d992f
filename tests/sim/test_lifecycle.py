"""Object lifecycle: generation, status subresource, finalizers, namespaces, GC cascade."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio import client

from federationd.sim import Cluster
from tests.sim.conftest import Raw, unique, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _deploy(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }


async def test_generation_moves_with_spec_only(api: client.ApiClient, master: Cluster) -> None:
    master.behaviours.kubelet_enabled = False
    try:
        apps = client.AppsV1Api(api)
        name = unique("gen")
        d = await apps.create_namespaced_deployment("default", _deploy(name))
        assert d.metadata.generation == 1
        d = await apps.patch_namespaced_deployment(name, "default", {"metadata": {"labels": {"x": "y"}}})
        assert d.metadata.generation == 1
        d = await apps.patch_namespaced_deployment_status(name, "default", {"status": {"replicas": 5}})
        assert d.metadata.generation == 1 and d.status.replicas == 5
        d = await apps.patch_namespaced_deployment(name, "default", {"spec": {"replicas": 3}})
        assert d.metadata.generation == 2
    finally:
        master.behaviours.kubelet_enabled = True


async def test_status_subresource_separates_spec_and_status(api: client.ApiClient, master: Cluster) -> None:
    master.behaviours.kubelet_enabled = False
    try:
        apps = client.AppsV1Api(api)
        name = unique("st")
        await apps.create_namespaced_deployment("default", _deploy(name))
        # status written through the main resource is ignored
        d = await apps.patch_namespaced_deployment(name, "default", {"status": {"replicas": 9}})
        assert d.status is None or d.status.replicas is None
        # spec written through /status is ignored
        d = await apps.patch_namespaced_deployment_status(name, "default", {"spec": {"replicas": 7}, "status": {"replicas": 2}})
        assert d.spec.replicas == 1 and d.status.replicas == 2
        got = await apps.read_namespaced_deployment_status(name, "default")
        assert got.status.replicas == 2
        got.status.replicas = 4
        got = await apps.replace_namespaced_deployment_status(name, "default", got)
        assert got.status.replicas == 4
    finally:
        master.behaviours.kubelet_enabled = True


async def test_finalizers_hold_deletion_until_removed(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    name = unique("fin")
    await v1.create_namespaced_config_map("default", {"metadata": {"name": name, "finalizers": ["example.com/x"]}})
    await v1.delete_namespaced_config_map(name, "default")
    cm = await v1.read_namespaced_config_map(name, "default")
    assert cm.metadata.deletion_timestamp is not None and cm.metadata.finalizers == ["example.com/x"]
    # a second delete changes nothing
    await v1.delete_namespaced_config_map(name, "default")
    await v1.patch_namespaced_config_map(name, "default", {"metadata": {"finalizers": None}})
    with pytest.raises(client.ApiException) as e:
        await v1.read_namespaced_config_map(name, "default")
    assert e.value.status == 404


async def test_namespace_deletion_removes_its_contents(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    ns = unique("nsdel")
    await v1.create_namespace({"metadata": {"name": ns}})
    for i in range(3):
        await v1.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}"}})
    await v1.create_namespaced_secret(ns, {"metadata": {"name": "s"}})
    await v1.delete_namespace(ns)

    async def gone() -> bool:
        try:
            await v1.read_namespace(ns)
        except client.ApiException as e:
            return e.status == 404
        return False

    await wait_for(gone, what="namespace removed")
    assert master.store.list("v1", "ConfigMap", ns) == [] and master.store.list("v1", "Secret", ns) == []


async def test_terminating_namespace_refuses_new_content(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    ns = unique("term")
    await v1.create_namespace({"metadata": {"name": ns}})
    await v1.create_namespaced_config_map(ns, {"metadata": {"name": "held", "finalizers": ["example.com/x"]}})
    await v1.delete_namespace(ns)
    n = await v1.read_namespace(ns)
    assert n.status.phase == "Terminating"
    with pytest.raises(client.ApiException) as e:
        await v1.create_namespaced_config_map(ns, {"metadata": {"name": "new"}})
    assert e.value.status == 403
    await v1.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})

    async def gone() -> bool:
        try:
            await v1.read_namespace(ns)
        except client.ApiException as e:
            return e.status == 404
        return False

    await wait_for(gone, what="namespace removed after the last finalizer")


async def _owner_and_children(v1: client.CoreV1Api, n: int = 2) -> tuple[Any, list[str]]:
    owner = await v1.create_namespaced_config_map("default", {"metadata": {"name": unique("owner")}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid}
    names = []
    for _ in range(n):
        c = await v1.create_namespaced_config_map("default", {"metadata": {"name": unique("child"), "ownerReferences": [ref]}})
        names.append(c.metadata.name)
    return owner, names


async def test_owner_deletion_cascades_in_the_background(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    owner, children = await _owner_and_children(v1)
    await v1.delete_namespaced_config_map(owner.metadata.name, "default")
    await wait_for(lambda: all(master.store.get("v1", "ConfigMap", c, "default") is None for c in children), what="children gone")


async def test_orphan_propagation_keeps_dependents(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    owner, children = await _owner_and_children(v1)
    await v1.delete_namespaced_config_map(owner.metadata.name, "default", propagation_policy="Orphan")
    await wait_for(lambda: master.store.get("v1", "ConfigMap", owner.metadata.name, "default") is None, what="owner gone")
    for c in children:
        o = master.store.get("v1", "ConfigMap", c, "default")
        assert o is not None and not o["metadata"].get("ownerReferences")


async def test_foreground_propagation_deletes_dependents_first(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    owner, children = await _owner_and_children(v1)
    # hold one child with a finalizer: the owner must wait for it
    await v1.patch_namespaced_config_map(children[0], "default", {"metadata": {"finalizers": ["example.com/x"]}})
    await v1.delete_namespaced_config_map(owner.metadata.name, "default", propagation_policy="Foreground")
    await wait_for(lambda: master.store.get("v1", "ConfigMap", children[1], "default") is None, what="free child gone")
    o = master.store.get("v1", "ConfigMap", owner.metadata.name, "default")
    assert o is not None and "foregroundDeletion" in o["metadata"]["finalizers"]
    await v1.patch_namespaced_config_map(children[0], "default", {"metadata": {"finalizers": None}})
    await wait_for(lambda: master.store.get("v1", "ConfigMap", owner.metadata.name, "default") is None, what="owner gone")


async def test_delete_preconditions(raw: Raw) -> None:
    name = unique()
    await raw.request("POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": name}})
    code, body, _ = await raw.request("DELETE", f"/api/v1/namespaces/default/configmaps/{name}",
                                      body={"preconditions": {"uid": "not-the-uid"}})
    assert code == 409 and "Precondition failed" in body["message"]


async def test_generate_name(raw: Raw) -> None:
    code, body, _ = await raw.request("POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"generateName": "gen-"}})
    assert code == 201 and body["metadata"]["name"].startswith("gen-") and len(body["metadata"]["name"]) == 9
    _ = json


async def test_scale_subresource(raw: Raw, master: Cluster) -> None:
    name = unique("sc")
    dep = _deploy(name, 2)
    code, _, _ = await raw.request("POST", "/apis/apps/v1/namespaces/default/deployments", body=dep)
    assert code == 201
    path = f"/apis/apps/v1/namespaces/default/deployments/{name}/scale"
    code, scale, _ = await raw.request("GET", path)
    assert code == 200 and scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"]["selector"] == f"app={name}"
    code, scale, _ = await raw.request("PATCH", path, body={"spec": {"replicas": 4}}, content_type="application/merge-patch+json")
    assert code == 200 and scale["spec"]["replicas"] == 4
    live = master.store.get("apps/v1", "Deployment", name, "default")
    assert live is not None and live["spec"]["replicas"] == 4 and live["metadata"]["generation"] == 2
    code, body, _ = await raw.request("PATCH", path, body={"spec": {"replicas": -1}}, content_type="application/merge-patch+json")
    assert code == 422 and body["details"]["causes"][0]["field"] == "spec.replicas"


async def test_builtin_workloads_get_server_defaults(raw: Raw) -> None:
    name = unique("def")
    dep = _deploy(name)
    del dep["spec"]["replicas"]
    code, body, _ = await raw.request("POST", "/apis/apps/v1/namespaces/default/deployments", body=dep)
    assert code == 201
    assert body["spec"]["replicas"] == 1
    assert body["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    pod_spec = body["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always" and pod_spec["dnsPolicy"] == "ClusterFirst"
    assert pod_spec["containers"][0]["imagePullPolicy"] == "Always"  # "busybox" has no tag


async def test_no_new_finalizers_once_deleting(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    name = unique("fin")
    await v1.create_namespaced_config_map("default", {"metadata": {"name": name, "finalizers": ["example.com/a"]}})
    await v1.delete_namespaced_config_map(name, "default")
    with pytest.raises(client.ApiException) as e:
        await v1.patch_namespaced_config_map(name, "default", {"metadata": {"finalizers": ["example.com/a", "example.com/b"]}})
    assert e.value.status == 422 and "no new finalizers can be added" in json.loads(e.value.body)["message"]
    await v1.patch_namespaced_config_map(name, "default", {"metadata": {"finalizers": None}})
