"""A fleet mixing Kubernetes releases: each cluster serves its own release's APIs and schemas.

``old`` is 1.14 (what Istio 1.1/1.2 ran on: ``apiextensions.k8s.io/v1beta1``,
``extensions/v1beta1``, no ``policy/v1``), ``new`` is 1.30. Requests are made with
plain HTTP, as a client of that release would, and with kubectl v1.32.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from federationd.sim import ClusterSpec, Fleet, versions
from federationd.sim.cli import UsageError, cluster_specs
from tests.sim.conftest import Raw, unique, wait_for

#: the async tests share the module-scoped fleet and its event loop
module_loop = pytest.mark.asyncio(loop_scope="module")

KUBECTL = "/usr/bin/kubectl"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mixed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fleet]:
    specs = [ClusterSpec(name="old", kubernetes_version="1.14"), ClusterSpec(name="new", kubernetes_version="1.30.2")]
    async with Fleet(specs, directory=tmp_path_factory.mktemp("mixed"), lb_delay=0.02, ready_delay=0.02) as f:
        yield f


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clients(mixed: Fleet) -> AsyncIterator[dict[str, Raw]]:
    ctx = ssl.create_default_context(cafile=str(mixed["old"].ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        yield {c.name: Raw(c, s, c.token) for c in mixed}


@module_loop
async def test_version_is_the_cluster_release(clients: dict[str, Raw]) -> None:
    _, old, _ = await clients["old"].request("GET", "/version")
    _, new, _ = await clients["new"].request("GET", "/version")
    assert (old["gitVersion"], old["minor"]) == ("v1.14.0", "14")
    assert (new["gitVersion"], new["minor"]) == ("v1.30.2", "30")


@module_loop
async def test_discovery_serves_the_release_group_versions(clients: dict[str, Raw]) -> None:
    groups: dict[str, dict[str, list[str]]] = {}
    for name, raw in clients.items():
        _, doc, _ = await raw.request("GET", "/apis")
        groups[name] = {g["name"]: [v["version"] for v in g["versions"]] for g in doc["groups"]}
    old, new = groups["old"], groups["new"]
    assert old["apiextensions.k8s.io"] == ["v1beta1"] and new["apiextensions.k8s.io"] == ["v1"]
    assert old["admissionregistration.k8s.io"] == ["v1beta1"] and new["admissionregistration.k8s.io"] == ["v1"]
    assert old["policy"] == ["v1beta1"] and new["policy"] == ["v1"]
    assert old["autoscaling"] == ["v1", "v2beta2", "v2beta1"] and new["autoscaling"] == ["v2", "v1"]
    assert old["apps"] == ["v1", "v1beta2", "v1beta1"] and new["apps"] == ["v1"]
    assert "extensions" in old and "extensions" not in new
    _, ext, _ = await clients["old"].request("GET", "/apis/extensions/v1beta1")
    assert {r["name"] for r in ext["resources"] if "/" not in r["name"]} == {"daemonsets", "deployments", "ingresses", "networkpolicies", "replicasets"}
    # the aggregated form (kubectl's first choice) says the same where the release has it
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    _, agg, resp = await clients["new"].request("GET", "/apis", headers={"Accept": accept})
    assert resp.headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    assert {i["metadata"]["name"]: [v["version"] for v in i["versions"]] for i in agg["items"]} == new
    _, legacy, resp = await clients["old"].request("GET", "/apis", headers={"Accept": accept})
    assert resp.headers["Content-Type"] == "application/json" and legacy["kind"] == "APIGroupList"


@module_loop
@pytest.mark.parametrize(
    ("cluster", "path"),
    [
        ("old", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
        ("old", "/apis/policy/v1/namespaces/default/poddisruptionbudgets"),
        ("old", "/apis/events.k8s.io/v1/events"),
        ("new", "/apis/apiextensions.k8s.io/v1beta1/customresourcedefinitions"),
        ("new", "/apis/extensions/v1beta1/namespaces/default/deployments"),
        ("new", "/apis/policy/v1beta1/namespaces/default/poddisruptionbudgets"),
        ("new", "/apis/autoscaling/v2beta1/namespaces/default/horizontalpodautoscalers"),
    ],
)
async def test_unserved_group_versions_are_404(clients: dict[str, Raw], cluster: str, path: str) -> None:
    code, body, _ = await clients[cluster].request("GET", path)
    assert code == 404 and body["reason"] == "NotFound"
    assert body["message"] == "the server could not find the requested resource"
    gv = path.split("/")[2] + "/" + path.split("/")[3]
    code, _, _ = await clients[cluster].request("GET", f"/apis/{gv}")
    assert code == 404


def _deployment(name: str, api_version: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": api_version, "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1.15"}]}}, **spec},
    }


@module_loop
async def test_beta_versions_are_one_object_with_the_ga_version(clients: dict[str, Raw], mixed: Fleet) -> None:
    raw = clients["old"]
    name = unique("d")
    code, created, _ = await raw.request(
        "POST", "/apis/extensions/v1beta1/namespaces/default/deployments", body=_deployment(name, "extensions/v1beta1"))
    assert code == 201, created
    assert created["apiVersion"] == "extensions/v1beta1"
    for gv in ("apps/v1", "apps/v1beta2", "apps/v1beta1"):
        code, got, _ = await raw.request("GET", f"/apis/{gv}/namespaces/default/deployments/{name}")
        assert code == 200 and got["apiVersion"] == gv and got["metadata"]["uid"] == created["metadata"]["uid"]
    # stored once, as apps/v1 (what the cluster's controllers and the daemon's watchers read)
    stored = mixed["old"].store.get("apps/v1", "Deployment", name, "default")
    assert stored is not None and stored["apiVersion"] == "apps/v1"
    code, listed, _ = await raw.request("GET", "/apis/apps/v1beta2/namespaces/default/deployments")
    assert listed["apiVersion"] == "apps/v1beta2" and name in {d["metadata"]["name"] for d in listed["items"]}
    # the first betas default the selector to the template's labels; apps/v1 shows it
    other = _deployment(unique("d"), "extensions/v1beta1")
    del other["spec"]["selector"]
    code, created, _ = await raw.request("POST", "/apis/extensions/v1beta1/namespaces/default/deployments", body=other)
    assert code == 201, created
    code, got, _ = await raw.request("GET", f"/apis/apps/v1/namespaces/default/deployments/{other['metadata']['name']}")
    assert got["spec"]["selector"] == {"matchLabels": other["spec"]["template"]["metadata"]["labels"]}


@module_loop
async def test_hpa_versions_convert_their_metrics(clients: dict[str, Raw]) -> None:
    # what Istio 1.1/1.2 charts render: autoscaling/v2beta1 with targetAverageUtilization
    raw = clients["old"]
    hpa = {"apiVersion": "autoscaling/v2beta1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "istio-pilot"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "istio-pilot"},
                    "minReplicas": 1, "maxReplicas": 5,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 80}}]}}
    code, created, _ = await raw.request(
        "POST", "/apis/autoscaling/v2beta1/namespaces/default/horizontalpodautoscalers", body=hpa)
    assert code == 201, created
    assert created["spec"]["metrics"] == hpa["spec"]["metrics"]
    _, v1, _ = await raw.request("GET", "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/istio-pilot")
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 80 and "metrics" not in v1["spec"]
    _, v2beta2, _ = await raw.request(
        "GET", "/apis/autoscaling/v2beta2/namespaces/default/horizontalpodautoscalers/istio-pilot")
    assert v2beta2["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


@module_loop
async def test_validation_uses_the_release_schemas(clients: dict[str, Raw]) -> None:
    # a Pod's spec.os arrived in 1.23: a 1.14 server does not know the field, and (before
    # fieldValidation existed) drops it without a word whatever the request asks
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": unique("p")},
           "spec": {"os": {"name": "linux"}, "containers": [{"name": "c", "image": "nginx"}]}}
    code, body, resp = await clients["old"].request(
        "POST", "/api/v1/namespaces/default/pods", body=pod, params={"fieldValidation": "Strict"})
    assert code == 201 and "os" not in body["spec"] and "Warning" not in resp.headers
    code, body, _ = await clients["new"].request(
        "POST", "/api/v1/namespaces/default/pods", body=pod, params={"fieldValidation": "Strict"})
    assert code == 201 and body["spec"]["os"] == {"name": "linux"}
    pod["metadata"]["name"] = unique("p")
    pod["spec"]["bogus"] = True
    code, body, _ = await clients["new"].request(
        "POST", "/api/v1/namespaces/default/pods", body=pod, params={"fieldValidation": "Strict"})
    assert code == 400 and 'unknown field "spec.bogus"' in body["message"]
    # what both releases check: a container's name
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": unique("p")},
           "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": "http"}]}]}}
    for raw in clients.values():
        code, body, _ = await raw.request("POST", "/api/v1/namespaces/default/pods", body=pod)
        assert code == 400 and "containerPort" in body["message"], body


def _crd_v1beta1(plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.com"},
        "spec": {
            "group": "example.com", "version": "v1alpha1", "scope": "Namespaced",
            "names": {"kind": plural.capitalize()[:-1], "plural": plural},
            "subresources": {"status": {}},
            "additionalPrinterColumns": [{"name": "Phase", "type": "string", "JSONPath": ".status.phase"}],
            "validation": {"openAPIV3Schema": {"properties": {"spec": {"properties": {"size": {"type": "integer"}}}}}},
        },
    }


@module_loop
async def test_v1beta1_crds_on_an_old_release(clients: dict[str, Raw], mixed: Fleet) -> None:
    raw = clients["old"]
    code, created, _ = await raw.request(
        "POST", "/apis/apiextensions.k8s.io/v1beta1/customresourcedefinitions", body=_crd_v1beta1("widgets"))
    assert code == 201, created
    assert created["spec"]["version"] == "v1alpha1"
    assert created["spec"]["additionalPrinterColumns"] == [{"name": "Phase", "type": "string", "JSONPath": ".status.phase"}]
    # stored in the v1 form, served from it
    stored = mixed["old"].store.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com")
    assert stored is not None
    (v,) = stored["spec"]["versions"]
    assert v["name"] == "v1alpha1" and v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"]
    assert v["additionalPrinterColumns"] == [{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}]

    async def established() -> bool:
        code, _, _ = await raw.request("GET", "/apis/example.com/v1alpha1/namespaces/default/widgets")
        return code == 200

    await wait_for(established, what="the v1beta1 CRD's resource to be served")
    code, body, _ = await raw.request(
        "POST", "/apis/example.com/v1alpha1/namespaces/default/widgets",
        body={"apiVersion": "example.com/v1alpha1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "big"}})
    assert code == 422 and "spec.size" in body["message"]
    # v1beta1 defaults preserveUnknownFields to true: validated, but nothing is pruned
    code, body, _ = await raw.request(
        "POST", "/apis/example.com/v1alpha1/namespaces/default/widgets",
        body={"apiVersion": "example.com/v1alpha1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"size": 3, "color": "blue"}})
    assert code == 201 and body["spec"] == {"size": 3, "color": "blue"}
    # a v1beta1 CRD without versions is invalid on the v1 form too: the messages stay the real ones
    bad = _crd_v1beta1("gadgets")
    del bad["spec"]["version"]
    code, body, _ = await raw.request("POST", "/apis/apiextensions.k8s.io/v1beta1/customresourcedefinitions", body=bad)
    assert code == 422 and "spec.versions" in body["message"]


def test_served_table_agrees_with_each_release_definitions() -> None:
    """Every group/version the table serves at a release is one that release defines."""
    for name in versions.supported():
        minor = versions.parse(name).minor
        defined = {(g + "/" + v).lstrip("/") for (g, v, _k) in versions.gvk_index(name)}
        for group, vs in versions.served_group_versions(name).items():
            for v in vs:
                gv = f"{group}/{v}" if group else v
                assert gv in defined, f"{gv} served at 1.{minor} but not defined there"


def test_served_table_pins_the_removals_istio_cares_about() -> None:
    s = versions.served_group_versions
    assert "v1beta1" in s("1.15")["apiextensions.k8s.io"] and "v1" not in s("1.15")["apiextensions.k8s.io"]
    assert s("1.16")["apiextensions.k8s.io"] == ["v1", "v1beta1"]
    assert s("1.22")["apiextensions.k8s.io"] == ["v1"]
    assert "extensions" in s("1.21") and "extensions" not in s("1.22")
    assert s("1.25")["policy"] == ["v1"] and "v2beta2" not in s("1.26")["autoscaling"]
    assert versions.serves("1.15", "extensions/v1beta1", "Deployment")
    assert not versions.serves("1.16", "extensions/v1beta1", "Deployment")
    assert versions.serves("1.21", "extensions/v1beta1", "Ingress")


def test_supported_range_and_parsing() -> None:
    assert versions.supported()[0] == "1.13" and versions.supported()[-1] == f"1.{versions.newest_minor()}"
    assert versions.newest_minor() >= 32
    assert versions.parse("v1.14.10").git_version == "v1.14.10"
    for bad in ("1.12", "2.0", "latest", f"1.{versions.newest_minor() + 1}"):
        with pytest.raises(versions.VersionError):
            versions.parse(bad)
    # every release's definitions load (the old ones from the shipped data)
    for name in ("1.13", "1.24", "1.25", versions.supported()[-1]):
        assert ("apps", "v1", "Deployment") in versions.gvk_index(name)


def _args(*flags: str) -> argparse.Namespace:
    return argparse.Namespace(clusters="master,old", lb="", region=[], zones=[], nodes=[], kubernetes_version=list(flags))


def test_cli_kubernetes_version_default_and_overrides() -> None:
    specs = {s.name: s.kubernetes_version for s in cluster_specs(_args())}
    # a release Istio 1.1/1.2 can run on (admissionregistration.k8s.io/v1beta1) with server-side apply
    assert specs == {"master": "1.16.0", "old": "1.16.0"}
    specs = {s.name: s.kubernetes_version for s in cluster_specs(_args("1.30", "old=v1.14.3"))}
    assert specs == {"master": "1.30.0", "old": "1.14.3"}
    with pytest.raises(UsageError, match="not supported"):
        cluster_specs(_args("old=1.9"))
    with pytest.raises(UsageError, match="no cluster 'nowhere'"):
        cluster_specs(_args("nowhere=1.14"))


@module_loop
@pytest.mark.skipif(shutil.which(KUBECTL) is None, reason=f"{KUBECTL} is not installed on this machine")
async def test_kubectl_sees_each_release(mixed: Fleet, tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": ""}

    async def kubectl(context: str, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(mixed.merged_kubeconfig_path), "--context", context, *args,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    _, old, _ = await kubectl("old", "api-versions")
    _, new, _ = await kubectl("new", "api-versions")
    assert "apiextensions.k8s.io/v1beta1" in old.split() and "apiextensions.k8s.io/v1" not in old.split()
    assert "apiextensions.k8s.io/v1" in new.split() and "extensions/v1beta1" not in new.split()
    _, nodes, _ = await kubectl("old", "get", "nodes")
    assert nodes.splitlines()[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert all(line.split()[-1] == "v1.14.0" for line in nodes.splitlines()[1:])
    # a v1 CRD is not something a 1.14 server knows
    crd = tmp_path / "crd.yaml"
    crd.write_text('{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x.example.com"}}')
    rc, _, err = await kubectl("old", "apply", "-f", str(crd))
    assert rc != 0 and 'no matches for kind "CustomResourceDefinition" in version "apiextensions.k8s.io/v1"' in err


@module_loop
@pytest.mark.skipif(shutil.which(KUBECTL) is None, reason=f"{KUBECTL} is not installed on this machine")
async def test_kubectl_against_a_release_without_server_validation(mixed: Fleet, tmp_path: Path) -> None:
    """1.14 has no /openapi/v3, no fieldValidation and no server-side apply: kubectl copes as it does there."""
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": ""}

    async def kubectl(context: str, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(mixed.merged_kubeconfig_path), "--context", context, *args,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    name = unique("p")
    pod = tmp_path / "pod.json"
    pod.write_text(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                               "spec": {"os": {"name": "linux"}, "containers": [{"name": "c", "image": "nginx"}]}}))
    # client-side validation against the release's v2 document
    rc, _, err = await kubectl("old", "apply", "-f", str(pod))
    assert rc != 0 and 'ValidationError(Pod.spec): unknown field "os" in io.k8s.api.core.v1.PodSpec' in err
    # the server itself drops the field without a word, as it did
    rc, out, err = await kubectl("old", "apply", "--validate=false", "-f", str(pod))
    assert rc == 0 and "Warning" not in err
    assert "os" not in (mixed["old"].store.get("v1", "Pod", name, "default") or {"spec": {"os": 1}})["spec"]
    rc, _, err = await kubectl("old", "apply", "--server-side", "--validate=false", "-f", str(pod))
    assert rc != 0 and "Server-side apply not available on the server" in err and "apply-patch" not in err
    rc, out, _ = await kubectl("old", "explain", "deployment.spec.strategy")
    assert rc == 0 and "VERSION:  apps/v1" in out and "rollingUpdate\t<Object>" in out
    # a v1beta1 CRD keeps unknown fields, and nothing on the client refuses them either
    crd = _crd_v1beta1("gizmos")
    (tmp_path / "crd.json").write_text(json.dumps(crd))
    await kubectl("old", "apply", "-f", str(tmp_path / "crd.json"))
    await kubectl("old", "wait", "--for=condition=Established", "crd/gizmos.example.com", "--timeout=10s")
    cr = {"apiVersion": "example.com/v1alpha1", "kind": "Gizmo", "metadata": {"name": "g"}, "spec": {"size": 1, "color": "red"}}
    (tmp_path / "cr.json").write_text(json.dumps(cr))
    rc, out, err = await kubectl("old", "apply", "-f", str(tmp_path / "cr.json"))
    assert rc == 0, err
    assert (mixed["old"].store.get("example.com/v1alpha1", "Gizmo", "g", "default") or {}).get("spec") == cr["spec"]
    # 1.30 validates on the server
    rc, _, err = await kubectl("new", "apply", "-f", str(pod))
    assert rc == 0 and 'unknown field "spec.os"' not in err


def test_the_default_release_serves_every_builtin_kind() -> None:
    from federationd.sim.kinds import BUILTINS

    registry = versions.registry_for(versions.DEFAULT_VERSION)
    for k in BUILTINS:
        assert registry.by_path(k.group, k.version, k.plural) == k, f"{k.api_version} {k.kind} is not served"
