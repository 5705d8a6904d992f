"""/openapi/v2 and /openapi/v3: upstream schemas of the cluster's release, CRD schemas, caching."""

from __future__ import annotations

from typing import Any

import pytest

from federationd.sim import Cluster
from federationd.sim.openapi import V2_PROTOBUF
from tests.sim.conftest import Raw, wait_for
from tests.sim.crds import remoteistio_crd

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _refs(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            out.add(node["$ref"])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


async def test_v3_documents_carry_closed_component_schemas(raw: Raw) -> None:
    code, root, _ = await raw.request("GET", "/openapi/v3")
    assert code == 200 and "apis/apps/v1" in root["paths"] and "api/v1" in root["paths"]
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    code, doc, _ = await raw.request("GET", url)
    assert code == 200 and doc["openapi"] == "3.0.0"
    schemas = doc["components"]["schemas"]
    dep = schemas["io.k8s.api.apps.v1.Deployment"]
    assert dep["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    # a reference with a description is wrapped in allOf, as upstream publishes it
    assert dep["properties"]["spec"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]
    # every reference resolves inside the document; no JSON-schema leftovers
    for ref in _refs(doc, set()):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    spec = schemas["io.k8s.api.apps.v1.DeploymentSpec"]
    assert spec["properties"]["replicas"]["type"] == "integer" and "additionalProperties" not in spec
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    # what kubectl reads to leave field validation to the server
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}


async def test_v3_publishes_crd_schemas_and_follows_crd_changes(raw: Raw, master: Cluster) -> None:
    crd = remoteistio_crd(group="openapi.example.com", plural="widgets", kind="Widget")
    code, _, _ = await raw.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd)
    assert code == 201

    async def listed() -> bool:
        _, root, _ = await raw.request("GET", "/openapi/v3")
        return "apis/openapi.example.com/v1beta1" in root["paths"]

    await wait_for(listed, what="the CRD's group/version in /openapi/v3")
    _, doc, _ = await raw.request("GET", "/openapi/v3/apis/openapi.example.com/v1beta1")
    schemas = doc["components"]["schemas"]
    widget = schemas["com.example.openapi.v1beta1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [{"group": "openapi.example.com", "kind": "Widget", "version": "v1beta1"}]
    assert widget["properties"]["spec"]["properties"]["replicas"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert widget["properties"]["metadata"] == {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]}
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in schemas
    code, _, _ = await raw.request("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.openapi.example.com")
    assert code == 200

    async def gone() -> bool:
        code, _, _ = await raw.request("GET", "/openapi/v3/apis/openapi.example.com/v1beta1")
        return code == 404

    await wait_for(gone, what="the CRD's document to go")


async def test_v2_as_json_and_as_protobuf(raw: Raw) -> None:
    code, doc, resp = await raw.request("GET", "/openapi/v2", headers={"Accept": "application/json"})
    assert code == 200 and resp.content_type == "application/json"
    assert doc["swagger"] == "2.0" and doc["info"]["version"] == "v1.32.0"
    svc = doc["definitions"]["io.k8s.api.core.v1.ServiceSpec"]
    assert svc["properties"]["ports"]["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.ServicePort"}
    async with raw.session.get(raw.cluster.url + "/openapi/v2",
                               headers={"Authorization": f"Bearer {raw.token}", "Accept": V2_PROTOBUF}) as r:
        body = await r.read()
        assert r.status == 200 and r.headers["Content-Type"] == "application/octet-stream"
    # field 1 (swagger) first, then the title and the definitions' names
    assert body.startswith(b"\x0a\x032.0") and b"io.k8s.api.core.v1.ServiceSpec" in body
    code, body, _ = await raw.request("GET", "/openapi/v2", headers={"Accept": "application/yaml"})
    assert code == 406 and body["reason"] == "NotAcceptable"
