"""Namespace injection labels: listed namespaces labelled and marked, unlisted marked ones
released, hand-labelled ones left alone, and only differences returned."""

from __future__ import annotations

from typing import Any

from federationd.render import injection as inj
from federationd.render.objects import COMPONENT_LABEL, MANAGED_BY_LABEL
from federationd.sim import patch, ssa

OURS = {inj.INJECTION_LABEL: "enabled", inj.MARKER_LABEL: inj.MARKER_VALUE}


def changes(listed: list[str], observed: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {c.namespace: c.labels for c in inj.injection_changes(listed, observed)}


def test_listed_existing_namespaces_get_the_label_and_the_marker() -> None:
    got = changes(["default", "shop"], {"default": {}, "shop": {"team": "a"}, "kube-system": {}})
    assert got == {"default": OURS, "shop": OURS}


def test_listed_namespace_that_does_not_exist_yet_is_labelled_when_it_appears() -> None:
    assert changes(["later"], {"default": {}}) == {}
    assert changes(["later"], {"default": {}, "later": {}}) == {"later": OURS}


def test_converged_namespaces_give_no_change() -> None:
    observed = {"default": {**OURS, "team": "a"}, "other": {"team": "b"}}
    assert inj.injection_changes(["default"], observed) == []


def test_namespace_leaving_the_list_loses_both_labels() -> None:
    observed = {"default": dict(OURS), "shop": dict(OURS)}
    assert changes(["shop"], observed) == {"default": {}}
    assert changes([], observed) == {"default": {}, "shop": {}}


def test_hand_labelled_namespaces_are_never_touched() -> None:
    observed = {
        "manual-on": {inj.INJECTION_LABEL: "enabled"},
        "manual-off": {inj.INJECTION_LABEL: "disabled"},
        "foreign-marker": {inj.INJECTION_LABEL: "enabled", inj.MARKER_LABEL: "someone-else"},
    }
    assert changes(["manual-on", "manual-off", "foreign-marker"], observed) == {}
    assert changes([], observed) == {}


def test_drift_on_a_managed_namespace_is_repaired() -> None:
    # The marker says the namespace is ours: a label edited or removed by hand comes back.
    assert changes(["default"], {"default": {inj.MARKER_LABEL: inj.MARKER_VALUE}}) == {
        "default": OURS
    }
    edited = {"default": {inj.MARKER_LABEL: inj.MARKER_VALUE, inj.INJECTION_LABEL: "disabled"}}
    assert changes(["default"], edited) == {"default": OURS}
    # A stray marker on an unlisted namespace is released.
    assert changes([], {"x": {inj.MARKER_LABEL: inj.MARKER_VALUE}}) == {"x": {}}


def test_changes_are_sorted_and_deterministic() -> None:
    observed: dict[str, dict[str, str]] = {n: {} for n in ("c", "a", "b")}
    assert [c.namespace for c in inj.injection_changes(["c", "b", "a", "a"], observed)] == [
        "a",
        "b",
        "c",
    ]


def test_apply_config_holds_only_the_owned_labels_and_no_inventory_label() -> None:
    (enable,) = inj.injection_changes(["default"], {"default": {"team": "a"}})
    assert enable.enable
    cfg = enable.apply_config()
    assert cfg == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "default", "labels": OURS},
    }
    # Never inventory: the actuator must not be able to delete a namespace.
    assert MANAGED_BY_LABEL not in cfg["metadata"]["labels"]
    assert COMPONENT_LABEL not in cfg["metadata"]["labels"]
    (release,) = inj.injection_changes([], {"default": dict(OURS)})
    assert not release.enable
    assert release.apply_config()["metadata"]["labels"] == {}


def _ssa(live: dict[str, Any] | None, cfg: dict[str, Any], manager: str) -> dict[str, Any]:
    return ssa.apply(
        live, cfg, manager=manager, force=False, api_version="v1", now="2026-01-01T00:00:00Z"
    )


def test_server_side_apply_adds_then_releases_only_federationds_labels() -> None:
    ns: dict[str, Any] = _ssa(
        None,
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "default", "labels": {"team": "a"}},
        },
        "kubectl",
    )
    (enable,) = inj.injection_changes(["default"], {"default": ns["metadata"]["labels"]})
    ns = _ssa(ns, enable.apply_config(), "federationd")
    assert ns["metadata"]["labels"] == {"team": "a", **OURS}
    assert inj.injection_changes(["default"], {"default": ns["metadata"]["labels"]}) == []

    (release,) = inj.injection_changes([], {"default": ns["metadata"]["labels"]})
    ns = _ssa(ns, release.apply_config(), "federationd")
    assert ns["metadata"]["labels"] == {"team": "a"}
    assert inj.injection_changes([], {"default": ns["metadata"]["labels"]}) == []


def test_merge_patch_form_adds_and_removes_the_same_labels() -> None:
    live = {"metadata": {"name": "default", "labels": {"team": "a"}}}
    (enable,) = inj.injection_changes(["default"], {"default": {"team": "a"}})
    live = patch.merge_patch(live, enable.merge_patch())
    assert live["metadata"]["labels"] == {"team": "a", **OURS}
    (release,) = inj.injection_changes([], {"default": live["metadata"]["labels"]})
    assert release.merge_patch() == {
        "metadata": {"labels": {inj.INJECTION_LABEL: None, inj.MARKER_LABEL: None}}
    }
    live = patch.merge_patch(live, release.merge_patch())
    assert live["metadata"]["labels"] == {"team": "a"}


def test_desired_state_form_includes_converged_namespaces() -> None:
    observed = {
        "default": dict(OURS),
        "shop": {},
        "old": dict(OURS),
        "manual": {inj.INJECTION_LABEL: "enabled"},
        "other": {"team": "b"},
    }
    desired = {
        c.namespace: c.labels
        for c in inj.desired_injection_labels(["default", "shop", "manual"], observed)
    }
    assert desired == {"default": OURS, "shop": OURS, "old": {}}
    # Once released, a namespace drops out of the desired state: the output is stable.
    observed["old"] = {}
    desired = {
        c.namespace: c.labels for c in inj.desired_injection_labels(["default", "shop"], observed)
    }
    assert desired == {"default": OURS, "shop": OURS}
    assert changes(["default", "shop"], observed) == {"shop": OURS}
