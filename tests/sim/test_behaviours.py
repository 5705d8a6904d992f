"""Live-cluster behaviours: load balancers, kubelet-lite readiness, pods with IPs, nodes."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client, config

from federationd.sim import Cluster, Fleet
from tests.sim.conftest import unique, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _client(c: Cluster) -> client.ApiClient:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(c.kubeconfig_path), client_configuration=cfg)
    return client.ApiClient(cfg)


def _lb_service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"type": "LoadBalancer", "selector": {"app": name},
                                                   "ports": [{"name": "tls", "port": 15443}]}}


def _ingress(c: Cluster, name: str) -> list[dict[str, str]]:
    svc = c.store.get("v1", "Service", name, "default") or {}
    return list(((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])


async def test_load_balancer_gets_an_ip(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    name = unique("lb")
    svc = await v1.create_namespaced_service("default", _lb_service(name))
    assert svc.spec.cluster_ip and svc.spec.ports[0].node_port >= 30000
    ing = await wait_for(lambda: _ingress(master, name), what="LB address")
    assert set(ing[0]) == {"ip"}
    got = await v1.read_namespaced_service_status(name, "default")
    assert got.status.load_balancer.ingress[0].ip == ing[0]["ip"]


async def test_aws_like_cluster_gets_a_hostname(fleet: Fleet) -> None:
    us = fleet["remote-us"]
    async with await _client(us) as a:
        name = unique("lb")
        await client.CoreV1Api(a).create_namespaced_service("default", _lb_service(name))
        ing = await wait_for(lambda: _ingress(us, name), what="LB hostname")
        assert set(ing[0]) == {"hostname"} and ing[0]["hostname"].endswith(".elb.amazonaws.com")


async def test_no_address_without_the_lb_behaviour_and_tests_can_set_one(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    master.behaviours.lb_enabled = False
    try:
        name = unique("lb")
        await v1.create_namespaced_service("default", _lb_service(name))
        # a ClusterIP service never gets one either way; here the behaviour is off
        other = unique("lb")
        await v1.create_namespaced_service("default", _lb_service(other))
        assert master.behaviours.pending() == 0 and _ingress(master, name) == []
        master.behaviours.set_load_balancer("default", name, [{"ip": "203.0.113.7"}])
        assert _ingress(master, name) == [{"ip": "203.0.113.7"}]
        master.behaviours.set_load_balancer("default", name, [])
        assert _ingress(master, name) == []
    finally:
        master.behaviours.lb_enabled = True


def _deploy(name: str, replicas: int) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name, "version": "v1"}},
                         "spec": {"containers": [{"name": "c", "image": "img"}]}}}}


async def test_workloads_become_ready(api: client.ApiClient, master: Cluster) -> None:
    apps = client.AppsV1Api(api)
    name = unique("d")
    await apps.create_namespaced_deployment("default", _deploy(name, 2))

    async def ready() -> Any:
        d = await apps.read_namespaced_deployment(name, "default")
        return d if d.status and d.status.ready_replicas == 2 else None

    d = await wait_for(ready, what="deployment ready")
    assert d.status.observed_generation == 1 and d.status.available_replicas == 2 and d.status.updated_replicas == 2
    assert {c.type: c.status for c in d.status.conditions}["Available"] == "True"
    await apps.patch_namespaced_deployment(name, "default", {"spec": {"replicas": 3}})

    async def scaled() -> Any:
        d = await apps.read_namespaced_deployment(name, "default")
        return d.status.ready_replicas == 3 and d.status.observed_generation == 2

    await wait_for(scaled, what="scaled")
    sts = unique("s")
    await apps.create_namespaced_stateful_set("default", {**_deploy(sts, 1), "spec": {**_deploy(sts, 1)["spec"], "serviceName": sts}})
    ds = unique("ds")
    body = _deploy(ds, 1)
    del body["spec"]["replicas"]
    await apps.create_namespaced_daemon_set("default", body)

    async def others() -> bool:
        s = await apps.read_namespaced_stateful_set(sts, "default")
        d = await apps.read_namespaced_daemon_set(ds, "default")
        return bool(s.status and s.status.ready_replicas == 1 and d.status and d.status.number_ready == 3)

    await wait_for(others, what="statefulset and daemonset ready")


async def test_no_readiness_without_kubelet(api: client.ApiClient, master: Cluster) -> None:
    apps = client.AppsV1Api(api)
    master.behaviours.kubelet_enabled = False
    try:
        name = unique("d")
        await apps.create_namespaced_deployment("default", _deploy(name, 1))
        assert master.behaviours.pending() == 0
        d = await apps.read_namespaced_deployment(name, "default")
        assert d.status is None or not d.status.ready_replicas
    finally:
        master.behaviours.kubelet_enabled = True


async def test_a_held_workload_stays_unready_until_released(api: client.ApiClient, master: Cluster) -> None:
    apps = client.AppsV1Api(api)
    held, other = unique("held"), unique("other")
    master.behaviours.hold_ready("default", held)
    await apps.create_namespaced_deployment("default", _deploy(held, 1))
    await apps.create_namespaced_deployment("default", _deploy(other, 1))

    async def ready(name: str) -> bool:
        d = await apps.read_namespaced_deployment(name, "default")
        return bool(d.status and d.status.ready_replicas == 1)

    await wait_for(lambda: ready(other), what="the other workload ready")
    assert master.behaviours.pending() == 0 and not await ready(held)
    master.behaviours.release_ready("default", held)
    await wait_for(lambda: ready(held), what="released workload ready")


async def test_workloads_run_pods_with_ips_and_restarts_change_them(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    name = unique("web")
    await client.AppsV1Api(api).create_namespaced_deployment("default", _deploy(name, 2))

    async def pods() -> Any:
        r = await v1.list_namespaced_pod("default", label_selector=f"app={name}")
        return r.items if len(r.items) == 2 and all(p.status.pod_ip for p in r.items) else None

    items = await wait_for(pods, what="pods with IPs")
    p = items[0]
    assert {k: v for k, v in p.metadata.labels.items() if k != "pod-template-hash"} == {"app": name, "version": "v1"}
    assert p.status.phase == "Running" and {c.type: c.status for c in p.status.conditions}["Ready"] == "True"
    rs = p.metadata.owner_references[0]
    assert rs.kind == "ReplicaSet" and rs.name == f"{name}-{p.metadata.labels['pod-template-hash']}"
    old_ip = p.status.pod_ip
    new_ip = master.behaviours.restart_pod("default", p.metadata.name)
    assert new_ip != old_ip
    assert (await v1.read_namespaced_pod(p.metadata.name, "default")).status.pod_ip == new_ip


async def test_nodes_carry_region_zone_and_addresses(fleet: Fleet) -> None:
    for c in fleet:
        nodes = c.store.list("v1", "Node")
        assert len(nodes) == 3
        regions = {n["metadata"]["labels"]["topology.kubernetes.io/region"] for n in nodes}
        zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes}
        assert regions == {c.region} and zones == set(c.zones)
        types = {a["type"] for a in nodes[0]["status"]["addresses"]}
        assert {"InternalIP", "ExternalIP"} <= types
    assert fleet["master"].zones == ("europe-west1-b", "europe-west1-c")


async def test_endpoints_follow_ready_pods(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    name = unique("ep")
    dep = _deploy(name, 2)
    dep["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8080}]
    await client.AppsV1Api(api).create_namespaced_deployment("default", dep)
    await v1.create_namespaced_service("default", {"metadata": {"name": name}, "spec": {
        "selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})

    async def endpoints() -> Any:
        ep = master.store.get("v1", "Endpoints", name, "default")
        subsets = (ep or {}).get("subsets") or []
        return subsets if subsets and len(subsets[0]["addresses"]) == 2 else None

    subsets = await wait_for(endpoints, what="endpoints with both pods")
    assert subsets[0]["ports"] == [{"port": 8080, "protocol": "TCP", "name": "http"}]
    pods = master.store.list("v1", "Pod", "default")
    ips = {p["status"]["podIP"] for p in pods if p["metadata"]["labels"].get("app") == name}
    assert {a["ip"] for a in subsets[0]["addresses"]} == ips
    # a restarted pod's new IP shows up
    pod = next(p for p in pods if p["metadata"]["labels"].get("app") == name)
    new_ip = master.behaviours.restart_pod("default", pod["metadata"]["name"])

    async def moved() -> bool:
        subsets = await endpoints()
        return bool(subsets) and new_ip in {a["ip"] for a in subsets[0]["addresses"]}

    await wait_for(moved, what="endpoints follow the restart")


async def test_no_endpoints_without_the_controller(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    master.behaviours.endpoints_enabled = False
    try:
        name = unique("noep")
        await v1.create_namespaced_service("default", {"metadata": {"name": name}, "spec": {
            "selector": {"app": name}, "ports": [{"port": 80}]}})
        master.behaviours.sync_endpoints("default")
        assert master.store.get("v1", "Endpoints", name, "default") is None
    finally:
        master.behaviours.endpoints_enabled = True
    master.behaviours.sync_endpoints("default")
    ep = master.store.get("v1", "Endpoints", name, "default")
    assert ep is not None and "subsets" not in ep  # no pods match yet
