"""Admission through the server: names, built-in schemas, CRD schemas, defaults, pruning."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from tests.sim.conftest import Raw, unique
from tests.sim.crds import GROUP, remoteistio, remoteistio_crd

pytestmark = pytest.mark.asyncio(loop_scope="module")

CM = "/api/v1/namespaces/default/configmaps"
DEP = "/apis/apps/v1/namespaces/default/deployments"
RI = f"/apis/{GROUP}/v1beta1/namespaces/default/remoteistios"


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def _crd(api: client.ApiClient) -> None:
    await client.ApiextensionsV1Api(api).create_custom_resource_definition(remoteistio_crd())


async def test_invalid_names_are_422_with_the_field(raw: Raw) -> None:
    code, body, _ = await raw.request("POST", CM, body={"metadata": {"name": "Bad_Name"}})
    assert code == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["details"]["causes"][0]["reason"] == "FieldValueInvalid"
    code, body, _ = await raw.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "a.b"}})
    assert code == 422  # a namespace name is a DNS-1123 label


async def test_unknown_builtin_fields_follow_field_validation(raw: Raw) -> None:
    obj: dict[str, Any] = {"metadata": {"name": unique()}, "data": {"a": "b"}, "bogus": 1}
    code, body, _ = await raw.request("POST", CM, body=obj, params={"fieldValidation": "Strict"})
    assert code == 400 and body["reason"] == "BadRequest"
    assert body["message"] == 'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "bogus"'
    code, body, resp = await raw.request("POST", CM, body=obj, params={"fieldValidation": "Warn"})
    assert code == 201 and "bogus" not in body
    assert resp.headers["Warning"] == '299 - "unknown field \\"bogus\\""'
    obj["metadata"]["name"] = unique()
    code, body, resp = await raw.request("POST", CM, body=obj, params={"fieldValidation": "Ignore"})
    assert code == 201 and "bogus" not in body and "Warning" not in resp.headers


async def test_mistyped_builtin_field_is_a_decoding_error(raw: Raw) -> None:
    code, body, _ = await raw.request("POST", CM, body={"metadata": {"name": unique()}, "data": {"a": 1}})
    assert code == 400
    assert body["message"].startswith('ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal number')


async def test_missing_required_builtin_field_is_422(raw: Raw) -> None:
    code, body, _ = await raw.request("POST", DEP, body={"metadata": {"name": unique()}, "spec": {"template": {}}})
    assert code == 422
    assert "spec.selector: Required value" in body["message"]
    assert {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"} in body["details"]["causes"]


async def test_custom_resources_are_checked_against_the_crd_schema(raw: Raw) -> None:
    name = unique("ri")
    bad = remoteistio(name, namespace="default", version="2.0", mode="mesh", replicas=9)
    del bad["spec"]["version"]
    code, body, _ = await raw.request("POST", RI, body=bad)
    assert code == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith(f'RemoteIstio.{GROUP} "{name}" is invalid: [')
    fields = {c["field"]: c["reason"] for c in body["details"]["causes"]}
    assert fields == {"spec.version": "FieldValueRequired", "spec.mode": "FieldValueNotSupported",
                      "spec.replicas": "FieldValueInvalid"}
    code, body, _ = await raw.request("POST", RI, body=remoteistio(name, namespace="default", version="2.0"))
    assert code == 422 and body["details"]["causes"][0]["field"] == "spec.version"
    code, body, _ = await raw.request("POST", RI, body=remoteistio(name, namespace="default", replicas="three"))
    assert code == 422 and "spec.replicas in body must be of type integer" in body["message"]


async def test_custom_resources_get_defaults_and_are_pruned(raw: Raw) -> None:
    name = unique("ri")
    obj = remoteistio(name, namespace="default", proxy={}, extra="dropped")
    code, body, resp = await raw.request("POST", RI, body=obj)
    assert code == 201
    assert body["spec"]["mode"] == "flat" and body["spec"]["proxy"]["image"] == "docker.io/istio/proxyv2:1.2.8"
    assert "extra" not in body["spec"] and "unknown field" in resp.headers.get("Warning", "")
    code, body, _ = await raw.request("POST", RI, body={**obj, "metadata": {"name": unique("ri")}}, params={"fieldValidation": "Strict"})
    assert code == 400 and 'unknown field "spec.extra"' in body["message"]


async def test_status_writes_are_validated_too(raw: Raw) -> None:
    name = unique("ri")
    await raw.request("POST", RI, body=remoteistio(name, namespace="default"))
    code, body, _ = await raw.request("PATCH", f"{RI}/{name}/status", body={"status": {"GatewayAddress": "not-a-list"}},
                                      content_type="application/merge-patch+json")
    assert code == 422 and "status.GatewayAddress" in body["message"]
