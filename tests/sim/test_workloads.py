"""Workloads that run, through kubernetes_asyncio: the controllers' chain from a
Deployment to Ready Pods, rollouts that stall on an unready Pod, DaemonSets,
StatefulSets, Jobs, garbage collection, Endpoints, and the write path's answers."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes_asyncio import client

from events.types import ClusterName
from federationd.sim import Cluster
from federationd.watchers.facts import workload_fact
from tests.sim.conftest import Raw, unique, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEP = "/apis/apps/v1/namespaces/default/deployments"


def _deploy(name: str, replicas: int = 1, image: str = "img:1") -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": image}]}}}}


def _pods(c: Cluster, app: str, ns: str = "default") -> list[dict[str, Any]]:
    return [p for p in c.store.list("v1", "Pod", ns) if (p["metadata"].get("labels") or {}).get("app") == app]


def _ready(p: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])


def _rollout_done(c: Cluster, name: str) -> bool:
    d = c.store.get("apps/v1", "Deployment", name, "default") or {}
    return bool(workload_fact(ClusterName(c.name), d, 0.0)[0].ready)  # type: ignore[attr-defined]


async def test_a_deployment_has_status_at_create_then_runs_pods(api: client.ApiClient, master: Cluster) -> None:
    apps = client.AppsV1Api(api)
    name = unique("d")
    d = await apps.create_namespaced_deployment("default", _deploy(name, 2))
    # the create's answer already carries what the controller writes right after
    assert d.status.observed_generation == 1 and d.status.unavailable_replicas == 2
    assert {c.type: c.reason for c in d.status.conditions} == {
        "Available": "MinimumReplicasUnavailable", "Progressing": "NewReplicaSetCreated"}
    await wait_for(lambda: _rollout_done(master, name), what="rolled out")
    d = await apps.read_namespaced_deployment(name, "default")
    assert (d.status.replicas, d.status.ready_replicas, d.status.available_replicas, d.status.updated_replicas) == (2, 2, 2, 2)
    assert {c.type: (c.status, c.reason) for c in d.status.conditions} == {
        "Available": ("True", "MinimumReplicasAvailable"), "Progressing": ("True", "NewReplicaSetAvailable")}
    rs = (await apps.list_namespaced_replica_set("default", label_selector=f"app={name}")).items
    assert len(rs) == 1
    h = rs[0].metadata.labels["pod-template-hash"]
    assert rs[0].metadata.name == f"{name}-{h}" and rs[0].spec.selector.match_labels == {"app": name, "pod-template-hash": h}
    assert rs[0].metadata.owner_references[0].uid == d.metadata.uid and rs[0].status.ready_replicas == 2
    pods = _pods(master, name)
    assert len(pods) == 2 and all(p["metadata"]["ownerReferences"][0]["uid"] == rs[0].metadata.uid for p in pods)
    for p in pods:
        st = p["status"]
        assert st["phase"] == "Running" and st["hostIP"] and st["podIP"] and p["spec"]["nodeName"]
        assert [c["type"] for c in st["conditions"]] == [
            "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        assert st["containerStatuses"][0]["ready"] and "running" in st["containerStatuses"][0]["state"]
    sts = await apps.create_namespaced_stateful_set("default", {**_deploy(unique("s")), "spec": {
        **_deploy("x")["spec"], "serviceName": "x"}})
    assert sts.status.observed_generation == 1 and sts.status.replicas == 0
    assert sts.status.current_revision == sts.status.update_revision


async def test_a_held_rollout_stalls_with_the_old_pod_serving(api: client.ApiClient, master: Cluster) -> None:
    apps = client.AppsV1Api(api)
    name = unique("roll")
    await apps.create_namespaced_deployment("default", _deploy(name, 1))
    await wait_for(lambda: _rollout_done(master, name), what="first rollout")
    old_pod = _pods(master, name)[0]["metadata"]["name"]
    master.behaviours.hold_ready("default", name)
    try:
        await apps.patch_namespaced_deployment(name, "default", {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "img:2"}]}}}})

        def stalled() -> bool:
            pods = _pods(master, name)
            return len(pods) == 2 and any(not _ready(p) and p["status"].get("phase") == "Running" for p in pods)

        await wait_for(stalled, what="a new, unready pod next to the old one")
        await wait_for(lambda: master.behaviours.pending() == 0, what="controllers idle")
        d = await apps.read_namespaced_deployment(name, "default")
        # maxUnavailable 25% of 1 is 0: the old Pod keeps serving while the new one is unready
        assert (d.status.replicas, d.status.updated_replicas, d.status.available_replicas) == (2, 1, 1)
        assert old_pod in {p["metadata"]["name"] for p in _pods(master, name)}
        assert not _rollout_done(master, name)
        # the Endpoints of a Service list the unready Pod apart
        v1 = client.CoreV1Api(api)
        await v1.create_namespaced_service("default", {"metadata": {"name": name}, "spec": {
            "selector": {"app": name}, "ports": [{"port": 80}]}})

        def subsets() -> Any:
            ep = master.store.get("v1", "Endpoints", name, "default") or {}
            s = ep.get("subsets") or []
            return s if s and s[0].get("addresses") and s[0].get("notReadyAddresses") else None

        s = await wait_for(subsets, what="ready and not-ready addresses")
        assert len(s[0]["addresses"]) == 1 and len(s[0]["notReadyAddresses"]) == 1
    finally:
        master.behaviours.release_ready("default", name)
    await wait_for(lambda: _rollout_done(master, name), what="rollout completes once released")
    await wait_for(lambda: len(_pods(master, name)) == 1, what="old pod gone")
    assert _pods(master, name)[0]["spec"]["containers"][0]["image"] == "img:2"
    rs = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r for r in master.store.list("apps/v1", "ReplicaSet", "default")
          if r["metadata"]["labels"].get("app") == name}
    assert rs["img:1"]["spec"]["replicas"] == 0 and rs["img:2"]["spec"]["replicas"] == 1
    assert rs["img:2"]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"


async def test_daemonset_follows_node_selector_and_unschedulable_pods_say_why(api: client.ApiClient, master: Cluster) -> None:
    apps, v1 = client.AppsV1Api(api), client.CoreV1Api(api)
    name = unique("ds")
    zone = master.zones[0]
    body = _deploy(name)
    del body["spec"]["replicas"]
    body["spec"]["template"]["spec"]["nodeSelector"] = {"topology.kubernetes.io/zone": zone}
    await apps.create_namespaced_daemon_set("default", body)
    in_zone = {n["metadata"]["name"] for n in master.store.list("v1", "Node")
               if n["metadata"]["labels"]["topology.kubernetes.io/zone"] == zone}

    async def ready() -> bool:
        d = await apps.read_namespaced_daemon_set(name, "default")
        return bool(d.status and d.status.number_ready == len(in_zone) == d.status.desired_number_scheduled)

    await wait_for(ready, what="one pod per matching node")
    assert {p["spec"]["nodeName"] for p in _pods(master, name)} == in_zone
    pod = unique("nowhere")
    await v1.create_namespaced_pod("default", {"metadata": {"name": pod}, "spec": {
        "nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "img"}]}})

    async def unschedulable() -> Any:
        p = await v1.read_namespaced_pod(pod, "default")
        return p if p.status.conditions else None

    p = await unschedulable_wait(unschedulable)
    cond = p.status.conditions[0]
    assert p.status.phase == "Pending" and not p.spec.node_name
    assert (cond.type, cond.status, cond.reason) == ("PodScheduled", "False", "Unschedulable")
    assert cond.message.startswith("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.")


async def unschedulable_wait(fn: Any) -> Any:
    return await wait_for(fn, what="scheduling verdict")


async def test_statefulset_pods_start_in_order(api: client.ApiClient, master: Cluster) -> None:
    apps = client.AppsV1Api(api)
    name = unique("sts")
    master.behaviours.hold_ready("default", name)
    try:
        await apps.create_namespaced_stateful_set("default", {**_deploy(name, 3), "spec": {
            **_deploy(name, 3)["spec"], "serviceName": name}})
        await wait_for(lambda: _pods(master, name) and _pods(master, name)[0]["status"].get("phase") == "Running",
                       what="first ordinal running")
        await wait_for(lambda: master.behaviours.pending() == 0, what="controllers idle")
        # OrderedReady: the next ordinal waits for an unready first one
        assert [p["metadata"]["name"] for p in _pods(master, name)] == [f"{name}-0"]
        p0 = _pods(master, name)[0]
        assert p0["spec"]["hostname"] == f"{name}-0" and p0["spec"]["subdomain"] == name
    finally:
        master.behaviours.release_ready("default", name)

    async def ready() -> bool:
        s = await apps.read_namespaced_stateful_set(name, "default")
        return bool(s.status.ready_replicas == 3 and s.status.current_revision == s.status.update_revision)

    await wait_for(ready, what="all three ready")
    assert sorted(p["metadata"]["name"] for p in _pods(master, name)) == [f"{name}-{i}" for i in range(3)]


async def test_jobs_run_to_completion(api: client.ApiClient, master: Cluster) -> None:
    batch = client.BatchV1Api(api)
    name = unique("job")
    job = await batch.create_namespaced_job("default", {"metadata": {"name": name}, "spec": {
        "completions": 3, "parallelism": 2,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "img"}]}}}})
    uid = job.metadata.uid
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert job.spec.template.metadata.labels["job-name"] == name

    async def complete() -> Any:
        j = await batch.read_namespaced_job(name, "default")
        return j if any(c.type == "Complete" and c.status == "True" for c in j.status.conditions or []) else None

    j = await wait_for(complete, what="job complete")
    assert j.status.succeeded == 3 and not j.status.active and j.status.completion_time
    pods = [p for p in master.store.list("v1", "Pod", "default") if (p["metadata"].get("labels") or {}).get("job-name") == name]
    assert len(pods) == 3 and {p["status"]["phase"] for p in pods} == {"Succeeded"}


async def test_garbage_collection_background_and_foreground(api: client.ApiClient, master: Cluster) -> None:
    apps = client.AppsV1Api(api)
    bg, fg = unique("bg"), unique("fg")
    for n in (bg, fg):
        await apps.create_namespaced_deployment("default", _deploy(n, 2))
        await wait_for(lambda n=n: _rollout_done(master, n), what=f"{n} rolled out")
    await apps.delete_namespaced_deployment(bg, "default", propagation_policy="Background")
    await wait_for(lambda: not _pods(master, bg), what="background: pods collected")
    assert not [r for r in master.store.list("apps/v1", "ReplicaSet", "default") if r["metadata"]["labels"].get("app") == bg]
    await apps.delete_namespaced_deployment(fg, "default", propagation_policy="Foreground")
    d = master.store.get("apps/v1", "Deployment", fg, "default")
    # foreground: the owner waits, with its finalizer, until its dependents are gone
    assert d is not None and "foregroundDeletion" in d["metadata"]["finalizers"]
    await wait_for(lambda: master.store.get("apps/v1", "Deployment", fg, "default") is None, what="owner gone last")
    assert not _pods(master, fg)


async def test_no_pods_run_without_the_kubelet_until_it_is_back(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    name = unique("p")
    master.behaviours.kubelet_enabled = False
    try:
        await v1.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": {
            "containers": [{"name": "c", "image": "img"}]}})
        assert master.behaviours.pending() == 0
        p = await v1.read_namespaced_pod(name, "default")
        assert p.status.phase == "Pending" and not p.spec.node_name
    finally:
        master.behaviours.kubelet_enabled = True

    async def running() -> bool:
        p = await v1.read_namespaced_pod(name, "default")
        return p.status.phase == "Running" and bool(p.status.pod_ip)

    await wait_for(running, what="the pod runs once the kubelet is back")


# --- write path -------------------------------------------------------------------------------------


async def test_secret_string_data_is_merged_and_type_defaulted(raw: Raw) -> None:
    name = unique("sec")
    code, body, _ = await raw.request("POST", "/api/v1/namespaces/default/secrets", body={
        "metadata": {"name": name}, "stringData": {"a": "x"}, "data": {"b": "eQ=="}})
    assert code == 201, body
    assert body["data"] == {"a": base64.b64encode(b"x").decode(), "b": "eQ=="}
    assert "stringData" not in body and body["type"] == "Opaque"
    code, body, _ = await raw.request("PATCH", f"/api/v1/namespaces/default/secrets/{name}",
                                      body={"stringData": {"b": "z"}}, content_type="application/merge-patch+json")
    assert code == 200 and body["data"]["b"] == base64.b64encode(b"z").decode() and "stringData" not in body


async def test_strategic_merge_patch_does_not_store_empty_maps(raw: Raw) -> None:
    name = unique("cm")
    code, _, _ = await raw.request("POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": name}})
    assert code == 201
    code, body, _ = await raw.request("PATCH", f"/api/v1/namespaces/default/configmaps/{name}",
                                      body={"metadata": {"annotations": {}, "labels": {}}},
                                      content_type="application/strategic-merge-patch+json")
    assert code == 200 and "annotations" not in body["metadata"] and "labels" not in body["metadata"]


async def test_failed_json_patch_test_answers_like_the_server(raw: Raw) -> None:
    name = unique("cm")
    await raw.request("POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": name}, "data": {"a": "1"}})
    code, body, _ = await raw.request("PATCH", f"/api/v1/namespaces/default/configmaps/{name}",
                                      body=[{"op": "test", "path": "/data/a", "value": "2"}],
                                      content_type="application/json-patch+json")
    assert code == 422 and body["reason"] == "Invalid"
    assert body["message"] == "the server rejected our request due to an error in our request"


async def test_bad_containers_and_quantities_are_refused(raw: Raw) -> None:
    name = unique("bad")
    d = _deploy(name)
    d["spec"]["template"]["spec"]["containers"] = [{"name": "nginx:1.27", "image": "nginx"}, {"name": "two"}]
    code, body, _ = await raw.request("POST", DEP, body=d)
    assert code == 422
    assert [(c["field"], c["reason"]) for c in body["details"]["causes"]] == [
        ("spec.template.spec.containers[0].name", "FieldValueInvalid"),
        ("spec.template.spec.containers[1].image", "FieldValueRequired")]
    assert body["message"].startswith(f'Deployment.apps "{name}" is invalid: [spec.template.spec.containers[0].name: '
                                      'Invalid value: "nginx:1.27": a lowercase RFC 1123 label must consist of')
    d = _deploy(name)
    d["spec"]["template"]["metadata"]["labels"] = {"app": "other", "tier": "web"}
    code, body, _ = await raw.request("POST", DEP, body=d)
    assert code == 422 and body["message"] == (
        f'Deployment.apps "{name}" is invalid: spec.template.metadata.labels: Invalid value: '
        'map[string]string{"app":"other", "tier":"web"}: `selector` does not match template `labels`')
    d = _deploy(name)
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "lots"}}
    code, body, _ = await raw.request("POST", DEP, body=d)
    assert code == 400 and body["reason"] == "BadRequest"
    assert body["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: quantities must match '
                               "the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "500m", "memory": "1Gi"},
                                                                   "requests": {"cpu": 0.5, "memory": "1e9"}}
    code, body, _ = await raw.request("POST", DEP, body=d)
    assert code == 201, body


async def test_hpa_is_served_as_v1_and_v2_from_one_storage(api: client.ApiClient) -> None:
    name = unique("hpa")
    v1 = await client.AutoscalingV1Api(api).create_namespaced_horizontal_pod_autoscaler("default", {
        "metadata": {"name": name}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                                             "maxReplicas": 4, "targetCPUUtilizationPercentage": 60}})
    assert v1.spec.target_cpu_utilization_percentage == 60
    v2 = await client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(name, "default")
    assert v2.spec.metrics[0].resource.target.average_utilization == 60 and v2.spec.max_replicas == 4
