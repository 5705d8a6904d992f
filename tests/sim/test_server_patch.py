"""PATCH through the server: merge, JSON, strategic merge, server-side apply, managedFields."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from federationd.sim import Cluster
from tests.sim.conftest import Raw, unique

pytestmark = pytest.mark.asyncio(loop_scope="module")

CM = "/api/v1/namespaces/default/configmaps"
DEP = "/apis/apps/v1/namespaces/default/deployments"


async def _create_cm(raw: Raw, data: dict[str, str]) -> str:
    name = unique("p")
    code, _, _ = await raw.request("POST", CM, body={"metadata": {"name": name}, "data": data})
    assert code == 201
    return name


async def test_merge_patch(raw: Raw) -> None:
    name = await _create_cm(raw, {"a": "1", "b": "2"})
    code, body, _ = await raw.request("PATCH", f"{CM}/{name}", body={"data": {"a": None, "c": "3"}},
                                      content_type="application/merge-patch+json")
    assert code == 200 and body["data"] == {"b": "2", "c": "3"}


async def test_json_patch(raw: Raw) -> None:
    name = await _create_cm(raw, {"a": "1"})
    ops = [{"op": "add", "path": "/data/b", "value": "2"}, {"op": "remove", "path": "/data/a"}]
    code, body, _ = await raw.request("PATCH", f"{CM}/{name}", body=ops, content_type="application/json-patch+json")
    assert code == 200 and body["data"] == {"b": "2"}
    code, body, _ = await raw.request("PATCH", f"{CM}/{name}", body=[{"op": "test", "path": "/data/b", "value": "9"}],
                                      content_type="application/json-patch+json")
    assert code == 422 and body["kind"] == "Status"


async def test_patch_with_stale_resource_version_conflicts(raw: Raw) -> None:
    name = await _create_cm(raw, {"a": "1"})
    code, body, _ = await raw.request("PATCH", f"{CM}/{name}", body={"metadata": {"resourceVersion": "1"}, "data": {"a": "2"}},
                                      content_type="application/merge-patch+json")
    assert code == 409 and body["reason"] == "Conflict"


async def test_strategic_merge_patch_merges_containers_by_name(raw: Raw) -> None:
    name = unique("smp")
    dep = {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
        "metadata": {"labels": {"a": "b"}},
        "spec": {"containers": [{"name": "one", "image": "i1", "env": [{"name": "X", "value": "1"}]},
                                {"name": "two", "image": "i2"}]}}}}
    code, _, _ = await raw.request("POST", DEP, body=dep)
    assert code == 201
    p = {"spec": {"template": {"spec": {"containers": [{"name": "two", "image": "i2b", "env": [{"name": "Y", "value": "2"}]}]}}}}
    code, body, _ = await raw.request("PATCH", f"{DEP}/{name}", body=p, content_type="application/strategic-merge-patch+json")
    assert code == 200
    cs = body["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in cs] == [("one", "i1"), ("two", "i2b")]
    assert cs[0]["env"] == [{"name": "X", "value": "1"}]
    # the same patch as a JSON merge patch replaces the whole list
    code, body, _ = await raw.request("PATCH", f"{DEP}/{name}", body=p, content_type="application/merge-patch+json")
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["two"]


async def test_unknown_patch_type_is_415(raw: Raw) -> None:
    name = await _create_cm(raw, {})
    code, body, _ = await raw.request("PATCH", f"{CM}/{name}", body={}, content_type="text/csv")
    assert code == 415 and body["reason"] == "UnsupportedMediaType"


def _apply_body(name: str, data: dict[str, str]) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": data})


async def _apply(raw: Raw, name: str, data: dict[str, str], manager: str, force: bool = False) -> tuple[int, Any]:
    params = {"fieldManager": manager}
    if force:
        params["force"] = "true"
    code, body, _ = await raw.request("PATCH", f"{CM}/{name}", data=_apply_body(name, data),
                                      content_type="application/apply-patch+yaml", params=params)
    return code, body


async def test_server_side_apply_creates_tracks_ownership_and_prunes(raw: Raw) -> None:
    name = unique("ssa")
    code, body = await _apply(raw, name, {"a": "1", "b": "2"}, "alice")
    assert code == 201
    mf = body["metadata"]["managedFields"]
    assert mf[0]["manager"] == "alice" and mf[0]["operation"] == "Apply"
    assert set(mf[0]["fieldsV1"]["f:data"]) == {"f:a", "f:b"}
    # alice stops applying b: it is removed
    code, body = await _apply(raw, name, {"a": "1"}, "alice")
    assert code == 200 and body["data"] == {"a": "1"}
    # bob applies a different value for a field alice owns: 409 naming alice and the field
    code, body = await _apply(raw, name, {"a": "2"}, "bob")
    assert code == 409 and body["reason"] == "Conflict"
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "alice": .data.a'
    assert body["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "alice"', "field": ".data.a"}]
    # forced, bob takes it over
    code, body = await _apply(raw, name, {"a": "2"}, "bob", force=True)
    assert code == 200 and body["data"] == {"a": "2"}
    owners = {m["manager"]: m for m in body["metadata"]["managedFields"]}
    assert "f:a" in owners["bob"]["fieldsV1"]["f:data"]
    assert "alice" not in owners or "f:a" not in owners["alice"]["fieldsV1"].get("f:data", {})


async def test_an_apply_body_in_json_or_in_yaml_is_the_same_object(raw: Raw) -> None:
    """``apply-patch+yaml`` bodies are YAML, and JSON is YAML: a JSON body (what
    controllers send), the same object in block YAML, and in flow YAML that is not JSON
    all apply alike; a body that is neither is refused."""
    bodies = {
        "json": lambda n: json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n},
                                      "data": {"a": "1", "t": "true"}}),
        "block": lambda n: yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n},
                                           "data": {"a": "1", "t": "true"}}),
        "flow": lambda n: "{apiVersion: v1, kind: ConfigMap, metadata: {name: " + n + '}, data: {a: "1", t: "true"}}',
    }
    for how, body in bodies.items():
        name = unique("ssa")
        code, out, _ = await raw.request("PATCH", f"{CM}/{name}", data=body(name),
                                         content_type="application/apply-patch+yaml", params={"fieldManager": "m"})
        assert code == 201, (how, out)
        assert out["data"] == {"a": "1", "t": "true"}, how
    name = unique("ssa")
    code, out, _ = await raw.request("PATCH", f"{CM}/{name}", data='{"metadata": {"name": ',
                                     content_type="application/apply-patch+yaml", params={"fieldManager": "m"})
    assert code == 400 and "unrecognized" in out["message"]


async def test_apply_requires_a_field_manager(raw: Raw) -> None:
    name = unique("ssa")
    code, body, _ = await raw.request("PATCH", f"{CM}/{name}", data=_apply_body(name, {}),
                                      content_type="application/apply-patch+yaml")
    assert code == 400 and "fieldManager" in body["message"]


async def test_identical_apply_does_not_write(raw: Raw, master: Cluster) -> None:
    name = unique("ssa")
    _, first = await _apply(raw, name, {"a": "1"}, "alice")
    code, again = await _apply(raw, name, {"a": "1"}, "alice")
    # the object's own version is the test: other objects may be written meanwhile
    assert code == 200 and again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    live = master.store.get("v1", "ConfigMap", name, "default")
    assert live is not None and live["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_updates_record_managed_fields_for_their_manager(raw: Raw) -> None:
    name = await _create_cm(raw, {"a": "1"})
    _code, body, _ = await raw.request("PATCH", f"{CM}/{name}", body={"data": {"b": "2"}},
                                      content_type="application/merge-patch+json", params={"fieldManager": "editor"})
    owners = {m["manager"]: m for m in body["metadata"]["managedFields"]}
    assert owners["editor"]["operation"] == "Update" and "f:b" in owners["editor"]["fieldsV1"]["f:data"]
    _ = json


async def test_defaulted_fields_belong_to_update_managers_not_appliers(raw: Raw) -> None:
    def dep(name: str) -> dict[str, Any]:
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"a": name}}, "template": {"metadata": {"labels": {"a": name}},
                         "spec": {"containers": [{"name": "c", "image": "img:1"}]}}}}

    created = unique("upd")
    code, body, _ = await raw.request("POST", DEP, body=dep(created), params={"fieldManager": "creator"})
    assert code == 201
    owned = body["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]
    assert "f:replicas" in owned and "f:revisionHistoryLimit" in owned
    applied = unique("app")
    code, body, _ = await raw.request("PATCH", f"{DEP}/{applied}", data=yaml.safe_dump(dep(applied)),
                                      content_type="application/apply-patch+yaml", params={"fieldManager": "applier"})
    assert code == 201 and body["spec"]["replicas"] == 1
    owned = body["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in owned and "f:selector" in owned
