"""kubectl against running workloads and the write path: what a user types on day one.

Pods that run (``get pods -o wide``, ``rollout status``, ``scale``, ``wait
--for=delete``), namespace defaults, and the write-path answers of a real server
(Secret ``stringData``, ``apply --prune``, ``diff`` of an unchanged object, refusals of
bad containers and quantities, a failed JSON-patch ``test``). Same harness as
``test_kubectl``.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
from typing import Any

import pytest
import yaml

from federationd.sim import Fleet
from tests.sim.conftest import unique, wait_for
from tests.sim.test_kubectl import KUBECTL, Kubectl, kubectl

__all__ = ["kubectl"]

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(shutil.which(KUBECTL) is None, reason=f"{KUBECTL} is not installed on this machine"),
]


def _deployment(name: str, *, replicas: int = 2, image: str = "nginx:1.27", ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": image,
                                                           "ports": [{"containerPort": 80}]}]}}}}


def _rows(out: str) -> list[list[str]]:
    return [ln.split() for ln in out.splitlines()[1:] if ln.strip()]


def _table(out: str) -> list[dict[str, str]]:
    """Rows of kubectl's table output by column name, cut at the header's column starts
    (names may hold a space: NOMINATED NODE, READINESS GATES)."""
    import re

    lines = [ln for ln in out.splitlines() if ln.strip()]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", lines[0])]
    names = [lines[0][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {n: ln[a:b].strip() for n, a, b in zip(names, starts, [*starts[1:], None], strict=True)}
        for ln in lines[1:]
    ]


async def test_get_pods_wide_after_applying_a_deployment(kubectl: Kubectl, fleet: Fleet) -> None:
    name = unique("web")
    await kubectl.run("master", "apply", "-f", kubectl.write(name, _deployment(name)))
    _, out, _ = await kubectl.run("master", "rollout", "status", f"deployment/{name}", "--timeout=20s")
    assert out.strip().endswith(f'deployment "{name}" successfully rolled out'), out
    _, out, _ = await kubectl.run("master", "get", "pods", "-o", "wide", "-l", f"app={name}")
    rows = _table(out)
    assert len(rows) == 2 and all(r["READY"] == "1/1" and r["STATUS"] == "Running" for r in rows), out
    nodes = {n["metadata"]["name"]: n for n in fleet["master"].store.list("v1", "Node")}
    for r in rows:
        assert r["NAME"].startswith(f"{name}-") and r["NODE"] in nodes, r
        # the Pod's IP comes from its Node's pod CIDR
        assert ipaddress.ip_address(r["IP"]) in ipaddress.ip_network(nodes[r["NODE"]]["spec"]["podCIDR"]), r
    # two replicas land on two different nodes (the least loaded first)
    assert len({r["NODE"] for r in rows}) == 2
    # the controllers and kubelets record what they did, as `kubectl describe` shows
    _, out, _ = await kubectl.run("master", "describe", "deployment", name)
    assert "ScalingReplicaSet" in out and "Scaled up replica set" in out and "to 2" in out, out
    _, out, _ = await kubectl.run("master", "describe", "pod", rows[0]["NAME"])
    assert f"Successfully assigned default/{rows[0]['NAME']} to {rows[0]['NODE']}" in out, out
    assert "Started container web" in out, out
    _, out, _ = await kubectl.run("master", "get", "replicasets", "-l", f"app={name}", "-o", "json")
    rs = json.loads(out)["items"]
    assert len(rs) == 1 and rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"


async def test_rollout_on_template_change_and_scale(kubectl: Kubectl, fleet: Fleet) -> None:
    name = unique("roll")
    await kubectl.run("remote-eu", "apply", "-f", kubectl.write(name, _deployment(name)))
    await kubectl.run("remote-eu", "rollout", "status", f"deployment/{name}", "--timeout=20s")
    await kubectl.run("remote-eu", "apply", "-f", kubectl.write(name, _deployment(name, image="nginx:1.28")))
    _, out, _ = await kubectl.run("remote-eu", "rollout", "status", f"deployment/{name}", "--timeout=20s")
    assert out.strip().endswith("successfully rolled out"), out
    c = fleet["remote-eu"]

    def replica_sets() -> dict[str, int]:
        return {r["spec"]["template"]["spec"]["containers"][0]["image"]: r["spec"]["replicas"]
                for r in c.store.list("apps/v1", "ReplicaSet", "default")
                if r["metadata"]["labels"].get("app") == name}

    assert replica_sets() == {"nginx:1.27": 0, "nginx:1.28": 2}

    def images() -> set[str]:
        return {p["spec"]["containers"][0]["image"] for p in c.store.list("v1", "Pod", "default")
                if p["metadata"]["labels"].get("app") == name}

    await wait_for(lambda: images() == {"nginx:1.28"}, what="old pods gone")
    d = c.store.get("apps/v1", "Deployment", name, "default") or {}
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    _, out, _ = await kubectl.run("remote-eu", "scale", f"deployment/{name}", "--replicas=4")
    assert out.strip() == f"deployment.apps/{name} scaled"
    await kubectl.run("remote-eu", "rollout", "status", f"deployment/{name}", "--timeout=20s")
    _, out, _ = await kubectl.run("remote-eu", "get", "deployment", name)
    assert _rows(out)[0][1:4] == ["4/4", "4", "4"], out


async def test_wait_for_delete_after_the_owner_goes(kubectl: Kubectl, fleet: Fleet) -> None:
    name = unique("gone")
    await kubectl.run("remote-us", "apply", "-f", kubectl.write(name, _deployment(name)))
    await kubectl.run("remote-us", "rollout", "status", f"deployment/{name}", "--timeout=20s")
    _, out, _ = await kubectl.run("remote-us", "delete", "deployment", name, "--wait=false")
    assert out.strip() == f'deployment.apps "{name}" deleted'
    # the garbage collector takes the ReplicaSet, then its Pods
    _, out, _ = await kubectl.run("remote-us", "wait", "--for=delete", "pod", "-l", f"app={name}", "--timeout=20s")
    assert "condition met" in out or out.strip() == "", out
    c = fleet["remote-us"]
    assert not [p for p in c.store.list("v1", "Pod", "default") if p["metadata"]["labels"].get("app") == name]
    assert not [r for r in c.store.list("apps/v1", "ReplicaSet", "default") if r["metadata"]["labels"].get("app") == name]
    # foreground: kubectl waits until the dependents and then the owner are gone
    other = unique("fg")
    await kubectl.run("remote-us", "apply", "-f", kubectl.write(other, _deployment(other, replicas=1)))
    await kubectl.run("remote-us", "rollout", "status", f"deployment/{other}", "--timeout=20s")
    await kubectl.run("remote-us", "delete", "deployment", other, "--cascade=foreground", "--timeout=20s")
    assert c.store.get("apps/v1", "Deployment", other, "default") is None
    assert not [p for p in c.store.list("v1", "Pod", "default") if p["metadata"]["labels"].get("app") == other]


async def test_daemonsets_statefulsets_and_jobs(kubectl: Kubectl, fleet: Fleet) -> None:
    c = fleet["master"]
    ds, sts, job = unique("ds"), unique("sts"), unique("job")
    pod_tpl = {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    objs = [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": ds, "namespace": "default"},
         "spec": {"selector": {"matchLabels": {"app": ds}},
                  "template": {"metadata": {"labels": {"app": ds}}, "spec": pod_tpl}}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": sts, "namespace": "default"},
         "spec": {"replicas": 3, "serviceName": sts, "selector": {"matchLabels": {"app": sts}},
                  "template": {"metadata": {"labels": {"app": sts}}, "spec": pod_tpl}}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job, "namespace": "default"},
         "spec": {"completions": 2, "template": {"spec": {**pod_tpl, "restartPolicy": "Never"}}}},
    ]
    await kubectl.run("master", "apply", "-f", kubectl.write("mixed", *objs))
    await kubectl.run("master", "rollout", "status", f"daemonset/{ds}", "--timeout=20s")
    await kubectl.run("master", "rollout", "status", f"statefulset/{sts}", "--timeout=20s")
    _, out, _ = await kubectl.run("master", "wait", "--for=condition=complete", f"job/{job}", "--timeout=20s")
    assert out.strip() == f"job.batch/{job} condition met"
    _, out, _ = await kubectl.run("master", "get", "pods", "-o", "wide", "-l", f"app={ds}")
    assert sorted(r["NODE"] for r in _table(out)) == ["node-0", "node-1", "node-2"], out
    _, out, _ = await kubectl.run("master", "get", "pods", "-l", f"app={sts}")
    assert sorted(r[0] for r in _rows(out)) == [f"{sts}-0", f"{sts}-1", f"{sts}-2"], out
    _, out, _ = await kubectl.run("master", "get", "pods", "-l", f"job-name={job}", "-o",
                                  "jsonpath={.items[*].status.phase} {.items[*].status.containerStatuses[0].state.terminated.reason}")
    assert out.split() == ["Succeeded", "Succeeded", "Completed", "Completed"], out
    j = c.store.get("batch/v1", "Job", job, "default") or {}
    assert j["status"]["succeeded"] == 2 and j["status"].get("completionTime")


async def test_endpoints_follow_the_service_and_go_with_it(kubectl: Kubectl, fleet: Fleet) -> None:
    name = unique("svc")
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 80}]}}
    await kubectl.run("master", "apply", "-f", kubectl.write(name, _deployment(name), svc))
    await kubectl.run("master", "rollout", "status", f"deployment/{name}", "--timeout=20s")

    async def endpoints() -> list[str]:
        _, out, _ = await kubectl.run("master", "get", "endpoints", name, "-o", "jsonpath={.subsets[*].addresses[*].ip}")
        return out.split()

    await wait_for(lambda: _len_is(endpoints, 2), what="two endpoints")
    _, out, _ = await kubectl.run("master", "get", "endpointslices", "-l", f"kubernetes.io/service-name={name}", "-o", "json")
    slices = json.loads(out)["items"]
    assert len(slices) == 1 and slices[0]["addressType"] == "IPv4"
    assert sorted(a for e in slices[0]["endpoints"] for a in e["addresses"]) == sorted(await endpoints())
    assert all(e["conditions"]["ready"] for e in slices[0]["endpoints"])
    await kubectl.run("master", "delete", "service", name)
    await kubectl.run("master", "wait", "--for=delete", f"endpoints/{name}", "--timeout=20s")
    c = fleet["master"]
    await wait_for(lambda: not [s for s in c.store.list("discovery.k8s.io/v1", "EndpointSlice", "default")
                                if s["metadata"]["labels"].get("kubernetes.io/service-name") == name],
                   what="endpointslice gone")


async def _len_is(fn: Any, n: int) -> bool:
    return len(await fn()) == n


async def test_namespace_defaults_and_the_kubernetes_service(kubectl: Kubectl, fleet: Fleet) -> None:
    ns = unique("ns")
    await kubectl.run("master", "create", "namespace", ns)

    async def has(kind: str, name: str) -> bool:
        rc, _, _ = await kubectl.run("master", "get", kind, name, "-n", ns, check=False)
        return rc == 0

    await wait_for(lambda: has("serviceaccount", "default"), what="default ServiceAccount")
    await wait_for(lambda: has("configmap", "kube-root-ca.crt"), what="root CA ConfigMap")
    _, out, _ = await kubectl.run("master", "get", "configmap", "kube-root-ca.crt", "-n", ns, "-o", "json")
    assert json.loads(out)["data"]["ca.crt"] == fleet.ca_path.read_text()
    _, out, _ = await kubectl.run("master", "get", "service", "kubernetes", "-n", "default", "-o", "json")
    svc = json.loads(out)
    assert svc["spec"]["clusterIP"] == "10.96.0.1" and svc["spec"]["ports"][0]["port"] == 443
    _, out, _ = await kubectl.run("master", "get", "endpoints", "kubernetes", "-n", "default", "-o", "json")
    assert json.loads(out)["subsets"][0]["ports"][0]["port"] == fleet["master"].port
    # a Pod gets the default tolerations and service account at admission
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    await kubectl.run("master", "apply", "-f", kubectl.write("pod", pod))
    await kubectl.run("master", "wait", "--for=condition=Ready", "pod/p", "-n", ns, "--timeout=20s")
    _, out, _ = await kubectl.run("master", "get", "pod", "p", "-n", ns, "-o", "json")
    got = json.loads(out)
    assert {(t["key"], t["effect"], t["tolerationSeconds"]) for t in got["spec"]["tolerations"]} == {
        ("node.kubernetes.io/not-ready", "NoExecute", 300), ("node.kubernetes.io/unreachable", "NoExecute", 300)}
    assert got["spec"]["serviceAccountName"] == "default" and got["spec"]["nodeName"].startswith("node-")
    assert got["status"]["phase"] == "Running" and got["status"]["hostIP"].startswith("10.")


async def test_create_configmap_and_secret_with_string_data(kubectl: Kubectl, fleet: Fleet) -> None:
    ns = unique("cs")
    await kubectl.run("remote-eu", "create", "namespace", ns)
    _, out, _ = await kubectl.run("remote-eu", "create", "configmap", "cfg", "-n", ns, "--from-literal=a=b")
    assert out.strip() == "configmap/cfg created"
    _, out, _ = await kubectl.run("remote-eu", "create", "secret", "generic", "gen", "-n", ns, "--from-literal=k=v")
    assert out.strip() == "secret/gen created"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sd", "namespace": ns},
              "stringData": {"token": "s3cr3t"}, "data": {"other": "eA=="}}
    await kubectl.run("remote-eu", "apply", "-f", kubectl.write("sd", secret))
    _, out, _ = await kubectl.run("remote-eu", "get", "secret", "sd", "-n", ns, "-o", "json")
    got = json.loads(out)
    assert got["data"] == {"other": "eA==", "token": "czNjcjN0"} and "stringData" not in got
    assert got["type"] == "Opaque"
    # applying the same manifest again changes nothing (kubectl still says "configured":
    # its patch carries stringData again, which the server merges into the same data)
    rv = got["metadata"]["resourceVersion"]
    await kubectl.run("remote-eu", "apply", "-f", kubectl.write("sd", secret))
    assert (fleet["remote-eu"].store.get("v1", "Secret", "sd", ns) or {})["metadata"]["resourceVersion"] == rv


async def test_apply_prune_and_diff(kubectl: Kubectl, fleet: Fleet) -> None:
    ns = unique("pr")
    await kubectl.run("remote-us", "create", "namespace", ns)

    def cm(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns, "labels": {"set": ns}}, "data": {"k": name}}

    dep = _deployment("d", replicas=1, ns=ns)
    dep["metadata"]["labels"] = {"set": ns}
    f = kubectl.write("prune", cm("a"), cm("b"), dep)
    await kubectl.run("remote-us", "apply", "-f", f, "--prune", "-l", f"set={ns}")
    rc, out, err = await kubectl.run("remote-us", "diff", "-f", f, check=False)
    assert rc == 0 and out == "", (out, err)
    # an object made by `kubectl create`: diff's patch carries `annotations: {}`, which
    # a real server does not store, so nothing differs
    await kubectl.run("remote-us", "create", "configmap", "made", "-n", ns, "--from-literal=k=v")
    made = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made", "namespace": ns}, "data": {"k": "v"}}
    rc, out, err = await kubectl.run("remote-us", "diff", "-f", kubectl.write("made", made), check=False)
    assert rc == 0 and out == "", (out, err)
    changed = cm("a")
    changed["data"]["k"] = "new"
    rc, out, _ = await kubectl.run("remote-us", "diff", "-f", kubectl.write("changed", changed), check=False)
    assert rc == 1 and "+  k: new" in out, out
    f = kubectl.write("prune", cm("a"), dep)
    _, out, _ = await kubectl.run("remote-us", "apply", "-f", f, "--prune", "-l", f"set={ns}")
    assert "configmap/b pruned" in out and "configmap/a unchanged" in out, out
    assert fleet["remote-us"].store.get("v1", "ConfigMap", "b", ns) is None


async def test_refusals_worded_like_the_server(kubectl: Kubectl) -> None:
    name = unique("bad")
    d = _deployment(name)
    d["spec"]["template"]["spec"]["containers"][0]["name"] = "nginx:1.27"
    rc, _, err = await kubectl.run("master", "apply", "-f", kubectl.write(name, d), check=False)
    assert rc != 0
    assert (f'The Deployment "{name}" is invalid: spec.template.spec.containers[0].name: Invalid value: '
            '"nginx:1.27": a lowercase RFC 1123 label must consist of') in err, err
    d = _deployment(name)
    del d["spec"]["template"]["spec"]["containers"][0]["image"]
    rc, _, err = await kubectl.run("master", "apply", "-f", kubectl.write(name, d), check=False)
    assert rc != 0 and f'The Deployment "{name}" is invalid: spec.template.spec.containers[0].image: Required value' in err, err
    d = _deployment(name)
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "lots"}}
    rc, _, err = await kubectl.run("master", "apply", "-f", kubectl.write(name, d), check=False)
    assert rc != 0
    assert ('Deployment in version "v1" cannot be handled as a Deployment: quantities must match the regular '
            "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'") in err, err
    cm = unique("cm")
    await kubectl.run("master", "create", "configmap", cm, "--from-literal=a=1")
    patch = json.dumps([{"op": "test", "path": "/data/a", "value": "2"}])
    rc, _, err = await kubectl.run("master", "patch", "configmap", cm, "--type=json", "-p", patch, check=False)
    assert rc != 0 and "the server rejected our request due to an error in our request" in err, err


async def test_discovery_serves_the_kinds_prune_and_get_all_need(kubectl: Kubectl) -> None:
    _, out, _ = await kubectl.run("master", "api-resources", "-o", "wide")
    rows = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
    for resource, short in (("persistentvolumeclaims", "pvc"), ("persistentvolumes", "pv"),
                            ("replicationcontrollers", "rc"), ("cronjobs", "cj"), ("ingresses", "ing"),
                            ("networkpolicies", "netpol"), ("storageclasses", "sc"),
                            ("certificatesigningrequests", "csr"), ("horizontalpodautoscalers", "hpa")):
        assert resource in rows and short in rows[resource].split(), resource
    for resource in ("jobs", "endpointslices", "ingressclasses"):
        assert resource in rows, resource
    name = unique("all")
    await kubectl.run("master", "apply", "-f", kubectl.write(name, _deployment(name, replicas=1)))
    await kubectl.run("master", "rollout", "status", f"deployment/{name}", "--timeout=20s")
    _, out, _ = await kubectl.run("master", "get", "all", "-n", "default", "-o", "name")
    names = set(out.split())
    assert {"service/kubernetes", f"deployment.apps/{name}"} <= names, out
    assert any(n.startswith(f"pod/{name}-") for n in names) and any(n.startswith(f"replicaset.apps/{name}-") for n in names)
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    _, out, _ = await kubectl.run("master", "apply", "-f", kubectl.write("pvc", pvc))
    assert out.strip() == "persistentvolumeclaim/data created"
    hpa = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "h", "namespace": "default"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                    "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70}}
    await kubectl.run("master", "apply", "-f", kubectl.write("hpa", hpa))
    _, out, _ = await kubectl.run("master", "get", "horizontalpodautoscalers.v2.autoscaling", "h", "-o", "yaml")
    got = yaml.safe_load(out)
    assert got["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 70}}}]
    _, out, _ = await kubectl.run("master", "get", "horizontalpodautoscalers.v1.autoscaling", "h", "-o", "yaml")
    assert yaml.safe_load(out)["spec"]["targetCPUUtilizationPercentage"] == 70
