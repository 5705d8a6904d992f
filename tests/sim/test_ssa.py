"""Server-side apply and managedFields bookkeeping."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from federationd.sim.ssa import (
    ApplyConflict,
    InvalidApply,
    apply,
    decode_fields,
    encode_fields,
    field_set,
    path_string,
    update_managed_fields,
)

T0, T1, T2, T3 = (f"2026-01-01T00:00:0{i}Z" for i in range(4))


def deployment(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]},
        },
    }
    body.update(spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": body,
    }


def do_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    *,
    force: bool = False,
    now: str = T1,
    **kwargs: Any,
) -> dict[str, Any]:
    return apply(
        live,
        applied,
        manager=manager,
        force=force,
        api_version=applied.get("apiVersion", "v1"),
        now=now,
        **kwargs,
    )


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def owned(obj: dict[str, Any], manager: str, operation: str = "Apply") -> set[str]:
    entry = entries(obj).get((manager, operation))
    if entry is None:
        return set()
    return {path_string(p) for p in decode_fields(entry["fieldsV1"])}


def created_by_update(obj: dict[str, Any], manager: str, now: str = T0) -> dict[str, Any]:
    """An object as a POST by ``manager`` leaves it."""
    out = copy.deepcopy(obj)
    out["metadata"]["managedFields"] = update_managed_fields(
        None, out, manager=manager, api_version=out["apiVersion"], now=now
    )
    return out


# ------------------------------------------------------------------ fieldsV1


def test_fields_v1_format_matches_the_server() -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    obj["metadata"]["finalizers"] = ["example.com/a"]
    obj["spec"]["template"]["spec"]["containers"][0]["args"] = ["-v"]
    result = do_apply(None, obj, "fm", now=T0)
    (entry,) = result["metadata"]["managedFields"]
    assert entry == {
        "manager": "fm",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:finalizers": {'v:"example.com/a"': {}}, "f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},  # LabelSelector is an atomic map
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:containers": {
                            'k:{"name":"nginx"}': {
                                ".": {},
                                "f:args": {},  # atomic list, owned whole
                                "f:image": {},
                                "f:name": {},
                                "f:ports": {
                                    'k:{"containerPort":80,"protocol":"TCP"}': {
                                        ".": {},
                                        "f:containerPort": {},
                                    }
                                },
                            }
                        }
                    },
                },
            },
        },
    }
    # name/namespace/uid and friends are the server's: nobody owns them.
    assert "f:name" not in entry["fieldsV1"]["f:metadata"]


def test_encode_decode_round_trip_and_path_strings() -> None:
    paths = {
        ("f:spec", "f:replicas"),
        ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}'),
        ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:name"),
        ("f:metadata", "f:finalizers", 'v:"a"'),
    }
    encoded = encode_fields(paths)
    assert decode_fields(encoded) == paths
    assert list(encoded) == ["f:metadata", "f:spec"]
    assert list(encoded["f:spec"]) == ["f:ports", "f:replicas"]
    assert path_string(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:name")) == (
        '.spec.ports[port=80,protocol="TCP"].name'
    )
    assert path_string(("f:metadata", "f:finalizers", 'v:"a"')) == '.metadata.finalizers[="a"]'


def test_field_set_for_custom_resources_follows_their_schema() -> None:
    cr = {
        "apiVersion": "x.io/v1",
        "kind": "Thing",
        "metadata": {"name": "t"},
        "spec": {"items": [{"name": "a", "v": 1}], "tags": ["x"], "m": {"k": "v"}},
    }
    # No schema: maps are granular, lists atomic, every map entry is a member.
    assert field_set(cr) == {
        ("f:spec",),
        ("f:spec", "f:items"),
        ("f:spec", "f:tags"),
        ("f:spec", "f:m"),
        ("f:spec", "f:m", "f:k"),
    }
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "v": {"type": "integer"}},
                        },
                    },
                    "tags": {
                        "type": "array",
                        "x-kubernetes-list-type": "set",
                        "items": {"type": "string"},
                    },
                    "m": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            }
        },
    }
    assert field_set(cr, schema=schema) == {
        ("f:spec", "f:items", 'k:{"name":"a"}'),
        ("f:spec", "f:items", 'k:{"name":"a"}', "f:name"),
        ("f:spec", "f:items", 'k:{"name":"a"}', "f:v"),
        ("f:spec", "f:tags", 'v:"x"'),
        ("f:spec", "f:m", "f:k"),
    }


# ---------------------------------------------------------------------- apply


def test_apply_creates_and_merges_into_live() -> None:
    live = do_apply(None, deployment(), "a", now=T0)
    live["status"] = {"replicas": 2}
    live["metadata"]["uid"] = "u-1"
    second = deployment()
    second["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "X", "value": "1"}]
    result = do_apply(live, second, "a")
    assert result["metadata"]["uid"] == "u-1"
    assert result["status"] == {"replicas": 2}
    assert result["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "X", "value": "1"}
    ]
    assert '.spec.template.spec.containers[name="nginx"].env[name="X"].value' in owned(result, "a")


def test_apply_removes_fields_the_manager_stops_applying() -> None:
    first = deployment()
    first["metadata"]["labels"]["tier"] = "front"
    first["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "s:1"})
    live = do_apply(None, first, "a", now=T0)
    second = deployment()  # no tier label, no sidecar
    result = do_apply(live, second, "a")
    assert result["metadata"]["labels"] == {"app": "web"}
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["nginx"]
    assert ".metadata.labels.tier" not in owned(result, "a")
    # Dropping the last label removes the emptied map too.
    third = deployment()
    del third["metadata"]["labels"]
    assert "labels" not in do_apply(result, third, "a")["metadata"]


def test_apply_keeps_fields_another_manager_still_owns() -> None:
    live = do_apply(None, deployment(), "a", now=T0)
    live = do_apply(live, deployment(), "b")  # same values: shared ownership
    assert ".spec.replicas" in owned(live, "a") and ".spec.replicas" in owned(live, "b")
    without = deployment()
    del without["spec"]["replicas"]
    result = do_apply(live, without, "a", now=T2)
    assert result["spec"]["replicas"] == 2  # "b" still owns it
    assert ".spec.replicas" not in owned(result, "a")
    assert ".spec.replicas" in owned(result, "b")
    result = do_apply(result, without, "b", now=T3)
    assert "replicas" not in result["spec"]  # nobody owns it any more


def test_apply_conflict_with_update_manager_message() -> None:
    live = created_by_update(deployment(), "kubectl-client-side-apply")
    with pytest.raises(ApplyConflict) as info:
        do_apply(live, deployment(replicas=3), "fm")
    assert str(info.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" '
        "using apps/v1: .spec.replicas"
    )
    assert info.value.conflicts == [("kubectl-client-side-apply", ".spec.replicas")]
    assert info.value.causes() == [
        {
            "type": "FieldManagerConflict",
            "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
            "field": ".spec.replicas",
        }
    ]
    # Same values do not conflict: ownership is shared.
    shared = do_apply(live, deployment(), "fm")
    assert ".spec.replicas" in owned(shared, "fm")
    assert ".spec.replicas" in owned(shared, "kubectl-client-side-apply", "Update")


def test_apply_conflicts_plural_form_across_managers() -> None:
    live = do_apply(None, deployment(), "alpha", now=T0)
    changed = copy.deepcopy(live)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    changed["metadata"]["managedFields"] = update_managed_fields(
        live, changed, manager="kubectl-edit", api_version="apps/v1", now=T1
    )
    mine = deployment(replicas=5)
    mine["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:3"
    with pytest.raises(ApplyConflict) as info:
        do_apply(changed, mine, "fm", now=T2)
    assert str(info.value) == (
        "Apply failed with 2 conflicts: "
        'conflicts with "alpha":\n'
        "- .spec.replicas\n"
        'conflicts with "kubectl-edit" using apps/v1:\n'
        '- .spec.template.spec.containers[name="nginx"].image'
    )
    assert sorted(info.value.conflicts) == [
        ("alpha", ".spec.replicas"),
        ("kubectl-edit", '.spec.template.spec.containers[name="nginx"].image'),
    ]


def test_conflicts_are_listed_members_before_children() -> None:
    # structured-merge-diff walks a level's own fields before descending.
    first: dict[str, Any] = {
        "apiVersion": "x.io/v1",
        "kind": "Thing",
        "metadata": {"name": "t"},
        "spec": {"a": {"x": 1}, "b": 2},
    }
    live = do_apply(None, first, "owner", now=T0)
    second = copy.deepcopy(first)
    second["spec"] = {"a": {"x": 2}, "b": 3}
    with pytest.raises(ApplyConflict) as info:
        do_apply(live, second, "other")
    assert str(info.value) == (
        'Apply failed with 2 conflicts: conflicts with "owner":\n- .spec.b\n- .spec.a.x'
    )


def test_force_takes_ownership_from_the_others() -> None:
    live = created_by_update(deployment(), "creator")
    result = do_apply(live, deployment(replicas=7), "fm", force=True)
    assert result["spec"]["replicas"] == 7
    assert ".spec.replicas" in owned(result, "fm")
    assert ".spec.replicas" not in owned(result, "creator", "Update")
    assert '.spec.template.spec.containers[name="nginx"].image' in owned(
        result, "creator", "Update"
    )
    # A manager left with nothing disappears from managedFields.
    only: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a": "1"},
    }
    live = do_apply(None, only, "one", now=T0)
    changed = copy.deepcopy(only)
    changed["data"]["a"] = "2"
    result = do_apply(live, changed, "two", force=True)
    assert set(entries(result)) == {("two", "Apply")}


def test_apply_conflicts_on_keyed_list_element_fields() -> None:
    live = do_apply(None, deployment(), "a", now=T0)
    other = deployment()
    other["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9"
    with pytest.raises(ApplyConflict) as info:
        do_apply(live, other, "b")
    assert info.value.conflicts == [("a", '.spec.template.spec.containers[name="nginx"].image')]
    # Adding a different element of the same list is no conflict.
    added = deployment()
    added["spec"]["template"]["spec"]["containers"] = [{"name": "extra", "image": "e:1"}]
    del added["spec"]["replicas"]
    result = do_apply(live, added, "b")
    names = [c["name"] for c in result["spec"]["template"]["spec"]["containers"]]
    assert names == ["nginx", "extra"]
    assert '.spec.template.spec.containers[name="extra"].image' in owned(result, "b")


def test_apply_replaces_atomic_lists_whole() -> None:
    first = deployment()
    first["spec"]["template"]["spec"]["tolerations"] = [{"key": "a", "operator": "Exists"}]
    live = do_apply(None, first, "a", now=T0)
    second = copy.deepcopy(first)
    second["spec"]["template"]["spec"]["tolerations"] = [{"key": "b", "operator": "Exists"}]
    result = do_apply(live, second, "a")
    assert result["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert ".spec.template.spec.tolerations" in owned(result, "a")


def test_apply_without_change_keeps_the_time_and_orders_entries() -> None:
    live = created_by_update(deployment(), "creator", now=T0)
    live = do_apply(live, deployment(), "fm", now=T1)
    again = do_apply(live, deployment(), "fm", now=T2)
    assert entries(again)[("fm", "Apply")]["time"] == T1
    # Apply entries come before Update ones, like the server sorts them.
    assert [e["operation"] for e in again["metadata"]["managedFields"]] == ["Apply", "Update"]


def test_apply_ignores_server_owned_metadata_and_status_when_told() -> None:
    live = do_apply(None, deployment(), "a", now=T0)
    live["metadata"].update(uid="u-1", resourceVersion="5", generation=1)
    applied = deployment()
    applied["metadata"].update(uid="forged", resourceVersion="1", generation=9)
    applied["status"] = {"replicas": 100}
    result = do_apply(live, applied, "a", ignore=("status",))
    assert result["metadata"]["uid"] == "u-1"
    assert result["metadata"]["resourceVersion"] == "5"
    assert "status" not in result
    assert not any(p.startswith(".status") or p == ".metadata.uid" for p in owned(result, "a"))


def test_apply_through_status_subresource() -> None:
    live = do_apply(None, deployment(), "a", now=T0)
    status = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 99},
        "status": {"conditions": [{"type": "Available", "status": "True"}]},
    }
    result = do_apply(live, status, "kubelet", subresource="status")
    assert result["spec"]["replicas"] == 2
    assert result["status"]["conditions"] == [{"type": "Available", "status": "True"}]
    entry = entries(result)[("kubelet", "Apply")]
    assert entry["subresource"] == "status"
    assert decode_fields(entry["fieldsV1"]) >= {
        ("f:status", "f:conditions", 'k:{"type":"Available"}', "f:status")
    }


def test_apply_rejects_untypeable_lists() -> None:
    missing_key = deployment()
    missing_key["spec"]["template"]["spec"]["containers"] = [{"image": "x"}]
    with pytest.raises(InvalidApply, match='omits key field "name"'):
        do_apply(None, missing_key, "a")
    duplicate = deployment()
    duplicate["spec"]["template"]["spec"]["containers"] *= 2
    with pytest.raises(InvalidApply, match="duplicate entries"):
        do_apply(None, duplicate, "a")


def test_apply_custom_resource_without_schema_replaces_lists() -> None:
    cr: dict[str, Any] = {
        "apiVersion": "x.io/v1",
        "kind": "Thing",
        "metadata": {"name": "t"},
        "spec": {"l": [1, 2]},
    }
    live = do_apply(None, cr, "a", now=T0)
    changed = copy.deepcopy(cr)
    changed["spec"]["l"] = [3]
    with pytest.raises(ApplyConflict):
        do_apply(live, changed, "b")
    assert do_apply(live, changed, "a")["spec"]["l"] == [3]


# --------------------------------------------------------------------- update


def test_update_on_create_owns_everything_like_the_server() -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"a": "1"}, "uid": "u"},
        "data": {"k": "v"},
    }
    (entry,) = update_managed_fields(None, cm, manager="kubectl-create", api_version="v1", now=T0)
    assert entry == {
        "manager": "kubectl-create",
        "operation": "Update",
        "apiVersion": "v1",
        "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:data": {".": {}, "f:k": {}},
            "f:metadata": {"f:labels": {".": {}, "f:a": {}}},
        },
    }
    # Structs that exist in the zero value are not "added" by a create.
    (dep,) = update_managed_fields(None, deployment(), manager="m", api_version="apps/v1", now=T0)
    assert "." not in dep["fieldsV1"]["f:spec"]["f:template"]
    assert "." in dep["fieldsV1"]["f:metadata"]["f:labels"]


def test_update_moves_changed_fields_to_the_writer() -> None:
    live = do_apply(None, deployment(), "fm", now=T0)
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 4
    new["metadata"]["annotations"] = {"note": "x"}
    del new["metadata"]["labels"]
    new["metadata"]["managedFields"] = update_managed_fields(
        live, new, manager="kubectl-edit", api_version="apps/v1", now=T1
    )
    assert owned(new, "kubectl-edit", "Update") == {
        ".spec.replicas",
        ".metadata.annotations",
        ".metadata.annotations.note",
    }
    fm = owned(new, "fm")
    assert ".spec.replicas" not in fm  # taken away
    assert ".metadata.labels.app" not in fm  # removed from the object
    assert '.spec.template.spec.containers[name="nginx"].image' in fm
    assert entries(new)[("fm", "Apply")]["time"] == T0  # untouched entries keep their time


def test_update_that_changes_nothing_adds_no_entry() -> None:
    live = do_apply(None, deployment(), "fm", now=T0)
    same = copy.deepcopy(live)
    result = update_managed_fields(live, same, manager="noop", api_version="apps/v1", now=T1)
    assert [e["manager"] for e in result] == ["fm"]
    assert result[0]["time"] == T0


def test_update_respects_client_supplied_managed_fields() -> None:
    live = do_apply(None, deployment(), "fm", now=T0)
    cleared = copy.deepcopy(live)
    cleared["metadata"]["managedFields"] = [{}]
    assert update_managed_fields(live, cleared, manager="x", api_version="apps/v1", now=T1) == []
    # An empty list does not wipe them (clients unaware of the field send it).
    empty = copy.deepcopy(live)
    empty["metadata"]["managedFields"] = []
    kept = update_managed_fields(live, empty, manager="x", api_version="apps/v1", now=T1)
    assert [e["manager"] for e in kept] == ["fm"]
    # A rewritten list replaces the stored one.
    renamed = copy.deepcopy(live)
    renamed["metadata"]["managedFields"][0]["manager"] = "renamed"
    result = update_managed_fields(live, renamed, manager="x", api_version="apps/v1", now=T1)
    assert [e["manager"] for e in result] == ["renamed"]


def test_update_entries_are_per_api_version_and_subresource() -> None:
    live = created_by_update(deployment(), "ctrl", now=T0)
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 2}
    result = update_managed_fields(
        live, new, manager="ctrl", api_version="apps/v1", now=T1, subresource="status"
    )
    keyed = {(e["manager"], e.get("subresource", "")): e for e in result}
    assert set(keyed) == {("ctrl", ""), ("ctrl", "status")}
    assert decode_fields(keyed[("ctrl", "status")]["fieldsV1"]) == {
        ("f:status",),
        ("f:status", "f:replicas"),
    }
