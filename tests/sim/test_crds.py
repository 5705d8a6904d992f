"""CustomResourceDefinitions: lifecycle, discovery, custom resources, printer-column Tables."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from federationd.sim import Cluster
from tests.sim.conftest import Raw, unique, wait_for
from tests.sim.crds import GROUP, remoteistio, remoteistio_crd

pytestmark = pytest.mark.asyncio(loop_scope="module")

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
MERGE = "application/merge-patch+json"
RI = f"/apis/{GROUP}/v1beta1/namespaces/istio-system/remoteistios"


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def _crd_installed(api: client.ApiClient, raw: Raw) -> None:
    ext = client.ApiextensionsV1Api(api)
    await ext.create_custom_resource_definition(remoteistio_crd())
    await client.CoreV1Api(api).create_namespace({"metadata": {"name": "istio-system"}})


async def test_created_crd_is_established_and_discoverable(raw: Raw, api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    crd = await ext.read_custom_resource_definition(f"remoteistios.{GROUP}")
    conds = {c.type: c.status for c in crd.status.conditions}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    _, groups, _ = await raw.request("GET", "/apis")
    assert GROUP in {g["name"] for g in groups["groups"]}
    _, rl, _ = await raw.request("GET", f"/apis/{GROUP}/v1beta1")
    names = {r["name"]: r for r in rl["resources"]}
    assert names["remoteistios"]["kind"] == "RemoteIstio" and names["remoteistios"]["shortNames"] == ["ri"]
    assert "remoteistios/status" in names


async def test_custom_resources_crud_and_status(raw: Raw, api: client.ApiClient) -> None:
    co = client.CustomObjectsApi(api)
    name = unique("ri")
    obj = await co.create_namespaced_custom_object(GROUP, "v1beta1", "istio-system", "remoteistios", remoteistio(name))
    assert obj["metadata"]["generation"] == 1
    # status through the main resource is ignored; through /status it is stored
    obj = await co.patch_namespaced_custom_object(GROUP, "v1beta1", "istio-system", "remoteistios", name,
                                                  {"status": {"Status": "Available"}}, _content_type=MERGE)
    assert "status" not in obj or not obj["status"]
    obj = await co.patch_namespaced_custom_object_status(GROUP, "v1beta1", "istio-system", "remoteistios", name,
                                                         {"status": {"Status": "Available", "GatewayAddress": ["35.1.2.3"]}},
                                                         _content_type=MERGE)
    assert obj["status"]["Status"] == "Available" and obj["metadata"]["generation"] == 1
    obj = await co.patch_namespaced_custom_object(GROUP, "v1beta1", "istio-system", "remoteistios", name,
                                                  {"spec": {"version": "1.2.9"}}, _content_type=MERGE)
    assert obj["metadata"]["generation"] == 2


async def test_strategic_merge_patch_is_refused_for_custom_resources(raw: Raw) -> None:
    name = unique("ri")
    await raw.request("POST", RI, body=remoteistio(name))
    code, body, _ = await raw.request("PATCH", f"{RI}/{name}", body={"spec": {"version": "1.2.1"}},
                                      content_type="application/strategic-merge-patch+json")
    assert code == 415 and body["reason"] == "UnsupportedMediaType"
    assert "application/merge-patch+json" in body["message"]


async def test_table_output_uses_printer_columns(raw: Raw) -> None:
    name = unique("ri")
    await raw.request("POST", RI, body=remoteistio(name))
    await raw.request("PATCH", f"{RI}/{name}/status", body={"status": {"Status": "Available", "GatewayAddress": ["35.1.2.3", "35.1.2.4"]}},
                      content_type="application/merge-patch+json")
    code, tab, _ = await raw.request("GET", RI, headers={"Accept": TABLE})
    assert code == 200 and tab["kind"] == "Table" and tab["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in tab["columnDefinitions"]] == ["Name", "Status", "Error", "Gateways", "Age"]
    row = next(r for r in tab["rows"] if r["cells"][0] == name)
    assert row["cells"][1:4] == ["Available", None, "[35.1.2.3 35.1.2.4]"]
    assert row["cells"][4].endswith("s")
    assert row["object"]["kind"] == "PartialObjectMetadata"


async def test_table_output_for_builtins_has_name_and_age(raw: Raw) -> None:
    _, tab, _ = await raw.request("GET", "/api/v1/namespaces", headers={"Accept": TABLE})
    assert [c["name"] for c in tab["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert ["default", "Active"] == next(r["cells"][:2] for r in tab["rows"] if r["cells"][0] == "default")
    _code, tab, _ = await raw.request("GET", "/api/v1/nodes/node-0", headers={"Accept": TABLE})
    assert tab["rows"][0]["cells"][:2] == ["node-0", "Ready"]


async def test_deleting_a_crd_removes_its_objects_and_discovery(api: client.ApiClient, raw: Raw, master: Cluster) -> None:
    ext = client.ApiextensionsV1Api(api)
    crd = remoteistio_crd(group="tmp.example.com", plural="widgets", kind="Widget")
    await ext.create_custom_resource_definition(crd)
    path = "/apis/tmp.example.com/v1beta1/namespaces/default/widgets"
    code, _, _ = await raw.request("POST", path, body={"apiVersion": "tmp.example.com/v1beta1", "kind": "Widget",
                                                       "metadata": {"name": "w"}, "spec": {"version": "1.2"}})
    assert code == 201
    await ext.delete_custom_resource_definition("widgets.tmp.example.com")

    async def gone() -> bool:
        code, _, _ = await raw.request("GET", path)
        return code == 404

    await wait_for(gone, what="widgets no longer served")
    _, groups, _ = await raw.request("GET", "/apis")
    assert "tmp.example.com" not in {g["name"] for g in groups["groups"]}
    assert master.store.list_raw(("tmp.example.com", "widgets"), None)[0] == []


async def test_cluster_scoped_crd(raw: Raw, api: client.ApiClient) -> None:
    crd: dict[str, Any] = remoteistio_crd(group="scoped.example.com", plural="globals", kind="Global")
    crd["spec"]["scope"] = "Cluster"
    await client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    code, body, _ = await raw.request("POST", "/apis/scoped.example.com/v1beta1/globals",
                                      body={"apiVersion": "scoped.example.com/v1beta1", "kind": "Global",
                                            "metadata": {"name": "g"}, "spec": {"version": "1.2"}})
    assert code == 201 and "namespace" not in body["metadata"]


async def test_invalid_crds_are_refused(raw: Raw) -> None:
    crd = remoteistio_crd(group="bad.example.com", plural="things", kind="Thing")
    crd["metadata"]["name"] = "wrong"
    code, body, _ = await raw.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd)
    assert code == 422 and body["details"]["causes"][0]["field"] == "metadata.name"
    crd = remoteistio_crd(group="bad.example.com", plural="things", kind="Thing")
    crd["spec"]["versions"][0]["storage"] = False
    code, body, _ = await raw.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd)
    assert code == 422 and "exactly one version marked as storage version" in body["message"]


async def test_deletion_with_finalizers_bumps_generation(raw: Raw) -> None:
    name = unique("ri")
    obj = remoteistio(name)
    obj["metadata"]["finalizers"] = ["istio-operator.finalizer.banzaicloud.io"]
    code, created, _ = await raw.request("POST", RI, body=obj)
    assert code == 201 and created["metadata"]["generation"] == 1
    code, body, _ = await raw.request("DELETE", f"{RI}/{name}")
    assert code == 202 and body["metadata"]["deletionTimestamp"] and body["metadata"]["generation"] == 2
    code, body, _ = await raw.request("PATCH", f"{RI}/{name}", body={"metadata": {"finalizers": None}},
                                      content_type=MERGE)
    assert code == 200
    code, _, _ = await raw.request("GET", f"{RI}/{name}")
    assert code == 404
