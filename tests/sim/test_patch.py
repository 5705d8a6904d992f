"""Patch semantics: JSON merge patch, JSON patch, strategic merge patch."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from federationd.sim.patch import (
    MalformedPatch,
    PatchError,
    Schema,
    builtin_schema,
    json_patch,
    merge_patch,
    strategic_merge_patch,
    supports_strategic,
)


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:1",
                            "env": [{"name": "A", "value": "1"}],
                            "ports": [{"containerPort": 80}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        },
                        {"name": "sidecar", "image": "proxy:1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                    "imagePullSecrets": [{"name": "reg"}],
                }
            },
        },
    }


def smp(target: dict[str, Any], patch: dict[str, Any], kind: str = "Deployment") -> dict[str, Any]:
    api_version = {"Deployment": "apps/v1"}.get(kind, "v1")
    return strategic_merge_patch(target, patch, api_version=api_version, kind=kind)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


# ---------------------------------------------------------------- merge patch


def test_merge_patch_rfc7386_examples() -> None:
    # The example of RFC 7386 section 3.
    target = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


def test_merge_patch_does_not_mutate_inputs_and_replaces_non_objects() -> None:
    target = {"a": {"b": [1, 2]}, "c": "x"}
    patch = {"a": {"b": None, "d": {"e": None, "f": 1}}, "c": {"g": 1}}
    before_t, before_p = copy.deepcopy(target), copy.deepcopy(patch)
    result = merge_patch(target, patch)
    assert result == {"a": {"d": {"f": 1}}, "c": {"g": 1}}
    assert target == before_t and patch == before_p
    result["a"]["d"]["f"] = 2
    assert patch["a"]["d"]["f"] == 1  # type: ignore[index]


def test_merge_patch_rejects_non_object_patch() -> None:
    with pytest.raises(MalformedPatch):
        merge_patch({}, [1])  # type: ignore[arg-type]


# ----------------------------------------------------------------- JSON patch


def test_json_patch_operations() -> None:
    target = {"metadata": {"labels": {"a": "1"}}, "spec": {"items": [1, 2]}}
    result = json_patch(
        target,
        [
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "replace", "path": "/spec/items/0", "value": 9},
            {"op": "add", "path": "/spec/items/-", "value": 3},
            {"op": "test", "path": "/spec/items/1", "value": 2},
        ],
    )
    assert result == {"metadata": {"labels": {"b": "2"}}, "spec": {"items": [9, 2, 3]}}
    assert target == {"metadata": {"labels": {"a": "1"}}, "spec": {"items": [1, 2]}}


def test_json_patch_errors_are_patch_errors() -> None:
    with pytest.raises(PatchError):
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    with pytest.raises(PatchError):
        json_patch({"a": 1}, [{"op": "remove", "path": "/missing"}])
    with pytest.raises(MalformedPatch):
        json_patch({"a": 1}, [{"op": "frobnicate", "path": "/a"}])
    with pytest.raises(MalformedPatch):
        json_patch({"a": 1}, [{"path": "/a"}])
    with pytest.raises(MalformedPatch):
        json_patch({"a": 1}, {"op": "add"})  # type: ignore[arg-type]


# ------------------------------------------------------- strategic merge patch


def test_schema_knowledge_comes_from_upstream_definitions() -> None:
    dep = builtin_schema("apps/v1", "Deployment")
    assert dep is not None
    pod = dep.field("spec").field("template").field("spec")  # type: ignore[union-attr]
    assert pod is not None
    containers = pod.field("containers")
    assert containers is not None and containers.patch_merge_key == "name"
    assert containers.list_type == "map" and containers.list_keys == ("name",)
    ports = containers.items().field("ports")
    assert ports is not None and ports.patch_merge_key == "containerPort"
    assert ports.list_keys == ("containerPort", "protocol")
    tolerations = pod.field("tolerations")
    assert tolerations is not None and tolerations.list_type == "atomic"
    svc = builtin_schema("v1", "Service")
    assert svc is not None
    svc_ports = svc.field("spec").field("ports")  # type: ignore[union-attr]
    assert svc_ports is not None and svc_ports.patch_merge_key == "port"
    assert builtin_schema("istio.banzaicloud.io/v1beta1", "Istio") is None


def test_supports_strategic_only_for_builtin_kinds() -> None:
    assert supports_strategic("apps/v1", "Deployment")
    assert supports_strategic("v1", "ConfigMap")
    assert supports_strategic("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    assert not supports_strategic("istio.banzaicloud.io/v1beta1", "RemoteIstio")


def test_smp_merges_containers_by_name_and_env_by_name() -> None:
    live = deployment()
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]}
                    ]
                }
            }
        }
    }
    result = smp(live, patch)
    containers = pod_spec(result)["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[0]["image"] == "app:2"
    assert containers[0]["ports"] == [{"containerPort": 80}]
    assert {e["name"] for e in containers[0]["env"]} == {"A", "B"}
    assert live == deployment()  # input untouched


def test_smp_new_list_items_come_first_like_the_server() -> None:
    # apimachinery's normalizeElementOrder puts patch items not in the live list
    # before the server-only ones.
    result = smp(
        deployment(),
        {"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "n"}]}}}},
    )
    assert [c["name"] for c in pod_spec(result)["containers"]] == ["new", "app", "sidecar"]


def test_smp_merges_ports_volumes_mounts_and_pull_secrets_by_key() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "ports": [
                                {"containerPort": 80, "name": "http"},
                                {"containerPort": 443},
                            ],
                            "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
                        }
                    ],
                    "volumes": [{"name": "cache", "emptyDir": {}}],
                    "imagePullSecrets": [{"name": "other"}],
                }
            }
        }
    }
    spec = pod_spec(smp(deployment(), patch))
    app = spec["containers"][0]
    assert app["ports"] == [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]
    assert app["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]
    assert sorted(v["name"] for v in spec["volumes"]) == ["cache", "data"]
    assert sorted(s["name"] for s in spec["imagePullSecrets"]) == ["other", "reg"]


def test_smp_replaces_atomic_lists() -> None:
    patch = {"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}}
    assert pod_spec(smp(deployment(), patch))["tolerations"] == [{"key": "b", "operator": "Exists"}]
    args = {"spec": {"template": {"spec": {"containers": [{"name": "app", "args": ["x"]}]}}}}
    live = deployment()
    pod_spec(live)["containers"][0]["args"] = ["a", "b"]
    assert pod_spec(smp(live, args))["containers"][0]["args"] == ["x"]


def test_smp_service_ports_merge_by_port() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]},
    }
    result = smp(svc, {"spec": {"ports": [{"port": 80, "name": "http"}]}}, kind="Service")
    assert result["spec"]["ports"] == [
        {"port": 80, "targetPort": 8080, "name": "http"},
        {"port": 443},
    ]


def test_smp_null_deletes_keys_including_inside_list_items() -> None:
    patch = {
        "metadata": {"labels": {"tier": None}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "ports": None}]}}},
    }
    result = smp(deployment(), patch)
    assert result["metadata"]["labels"] == {"app": "web"}
    assert "ports" not in pod_spec(result)["containers"][0]


def test_smp_patch_delete_directive_in_list_and_map() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "sidecar", "$patch": "delete"}],
                    "volumes": [{"name": "data", "$patch": "delete"}],
                }
            },
            "strategy": {"$patch": "delete"},
        }
    }
    result = smp(deployment(), patch)
    assert [c["name"] for c in pod_spec(result)["containers"]] == ["app"]
    assert pod_spec(result)["volumes"] == []
    assert result["spec"]["strategy"] == {}


def test_smp_patch_replace_directive_in_list_and_map() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "only", "image": "o"}, {"$patch": "replace"}]}
            },
            "strategy": {"$patch": "replace", "type": "Recreate"},
        }
    }
    result = smp(deployment(), patch)
    assert pod_spec(result)["containers"] == [{"name": "only", "image": "o"}]
    assert result["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_retain_keys_drops_other_keys() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert smp(deployment(), patch)["spec"]["strategy"] == {"type": "Recreate"}
    with pytest.raises(PatchError):
        smp(deployment(), {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}})


def test_smp_set_element_order_reorders_merged_list() -> None:
    # The shape kubectl client-side apply sends.
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                    "containers": [{"name": "app", "image": "app:3"}],
                }
            }
        }
    }
    containers = pod_spec(smp(deployment(), patch))["containers"]
    assert [c["name"] for c in containers] == ["sidecar", "app"]
    assert containers[1]["image"] == "app:3"
    # The order alone, without the list, still applies.
    only_order = {
        "spec": {
            "template": {
                "spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}
            }
        }
    }
    assert [c["name"] for c in pod_spec(smp(deployment(), only_order))["containers"]] == [
        "sidecar",
        "app",
    ]


def test_smp_primitive_merge_list_and_delete_from_primitive_list() -> None:
    live = deployment()
    live["metadata"]["finalizers"] = ["a", "b"]
    result = smp(live, {"metadata": {"finalizers": ["c"]}})
    assert sorted(result["metadata"]["finalizers"]) == ["a", "b", "c"]
    result = smp(live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert result["metadata"]["finalizers"] == ["b"]


def test_smp_missing_merge_key_is_malformed() -> None:
    with pytest.raises(MalformedPatch, match="does not contain declared merge key: name"):
        smp(deployment(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})


def test_smp_conditions_merge_by_type() -> None:
    live = deployment()
    live["status"] = {
        "conditions": [
            {"type": "Available", "status": "False"},
            {"type": "Progressing", "status": "True"},
        ]
    }
    result = smp(live, {"status": {"conditions": [{"type": "Available", "status": "True"}]}})
    assert result["status"]["conditions"] == [
        {"type": "Available", "status": "True"},
        {"type": "Progressing", "status": "True"},
    ]


def test_smp_with_custom_schema_and_unknown_kind() -> None:
    # Without a schema every list is replaced, as for a JSON merge patch.
    obj = {"spec": {"items": [{"name": "a"}], "m": {"x": 1}}}
    result = strategic_merge_patch(
        obj, {"spec": {"items": [{"name": "b"}], "m": {"y": 2}}}, api_version="x.io/v1", kind="X"
    )
    assert result == {"spec": {"items": [{"name": "b"}], "m": {"x": 1, "y": 2}}}
    schema = Schema.from_openapi(
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "items": {
                            "type": "array",
                            "x-kubernetes-patch-strategy": "merge",
                            "x-kubernetes-patch-merge-key": "name",
                            "items": {"type": "object"},
                        }
                    },
                }
            },
        }
    )
    result = strategic_merge_patch(
        obj, {"spec": {"items": [{"name": "b"}]}}, api_version="x.io/v1", kind="X", schema=schema
    )
    assert result["spec"]["items"] == [{"name": "b"}, {"name": "a"}]
