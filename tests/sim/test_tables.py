"""Server-side Table cells of built-in kinds, as upstream's printers compute them."""

from __future__ import annotations

from typing import Any

from federationd.sim import tables
from federationd.sim.kinds import BUILTINS, Kind
from federationd.sim.store import parse_rfc3339

NOW = parse_rfc3339("2025-01-01T01:00:00Z")


def _kind(group: str, kind: str) -> Kind:
    return next(k for k in BUILTINS if k.group == group and k.kind == kind)


def _row(group: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    obj.setdefault("metadata", {}).setdefault("name", "x")
    obj["metadata"].setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
    t = tables.table(_kind(group, kind), [obj], resource_version="1", now=NOW)
    return {c["name"]: cell for c, cell in zip(t["columnDefinitions"], t["rows"][0]["cells"], strict=True)}


def _pod(*statuses: dict[str, Any], phase: str = "Running", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", **meta},
            "spec": {"containers": [{"name": f"c{i}", "image": "i"} for i in range(len(statuses))]},
            "status": {"phase": phase, "containerStatuses": list(statuses)}}


def test_pod_status_and_ready_follow_the_containers() -> None:
    running = {"ready": True, "restartCount": 1, "state": {"running": {}},
               "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T00:55:00Z"}}}
    waiting = {"ready": False, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    row = _row("", "Pod", _pod(running, waiting))
    assert (row["Ready"], row["Status"], row["Restarts"], row["Age"]) == ("1/2", "CrashLoopBackOff", "4 (5m ago)", "60m")
    assert _row("", "Pod", _pod({"state": {"waiting": {"reason": "ContainerCreating"}}}, phase="Pending"))["Status"] == "ContainerCreating"
    assert _row("", "Pod", _pod({"state": {"terminated": {"exitCode": 137, "signal": 9}}}, phase="Failed"))["Status"] == "Signal:9"
    assert _row("", "Pod", _pod(running, deletionTimestamp="2025-01-01T00:59:00Z"))["Status"] == "Terminating"
    init = _pod(running, phase="Pending")
    init["spec"]["initContainers"] = [{"name": "i", "image": "i"}]
    init["status"]["initContainerStatuses"] = [{"state": {"running": {}}}]
    assert _row("", "Pod", init)["Status"] == "Init:0/1"


def test_endpoints_show_three_addresses_then_a_count() -> None:
    eps = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]}
    assert _row("", "Endpoints", eps)["Endpoints"] == "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
    assert _row("", "Endpoints", {"subsets": [{"addresses": [{"ip": "fd00::1"}]}]})["Endpoints"] == "fd00::1"
    assert _row("", "Endpoints", {})["Endpoints"] == "<none>"


def test_events_in_either_served_form() -> None:
    core = {"involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "message": "pulled\n", "type": "Normal", "count": 3,
            "source": {"component": "kubelet", "host": "node-0"},
            "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:58:00Z"}
    row = _row("", "Event", core)
    assert list(row) == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen", "Count", "Name"]
    assert list(row.values()) == ["2m", "Normal", "Pulled", "pod/web-1", "spec.containers{app}", "kubelet, node-0",
                                  "pulled", "60m", 3, "x"]
    new = {"apiVersion": "events.k8s.io/v1", "regarding": {"kind": "Node", "name": "n"}, "note": "ok", "reason": "R",
           "type": "Warning", "reportingController": "ctl", "eventTime": "2025-01-01T00:30:00.000000Z",
           "series": {"count": 5, "lastObservedTime": "2025-01-01T00:59:00.000000Z"}}
    events_kind = next(k for k in BUILTINS if k.group == "events.k8s.io")
    new.setdefault("metadata", {"name": "e", "creationTimestamp": "2025-01-01T00:00:00Z"})
    cells = tables.table(events_kind, [new], resource_version="1", now=NOW)["rows"][0]["cells"]
    assert cells == ["60s", "Warning", "R", "node/n", "", "ctl", "ok", "30m", 5, "e"]


def test_nodes_and_the_default_table() -> None:
    node = {"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master"}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "False"}], "nodeInfo": {"kubeletVersion": "v1.14.0"},
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}
    row = _row("", "Node", node)
    assert (row["Status"], row["Roles"], row["Version"]) == ("NotReady,SchedulingDisabled", "control-plane,master", "v1.14.0")
    assert (row["Internal-IP"], row["External-IP"], row["OS-Image"]) == ("10.0.0.1", "<none>", "<unknown>")
    row = _row("rbac.authorization.k8s.io", "ClusterRole", {})
    assert row == {"Name": "x", "Created At": "2025-01-01T00:00:00Z"}
    row = _row("rbac.authorization.k8s.io", "RoleBinding", {
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "a"}, {"kind": "ServiceAccount", "namespace": "ns", "name": "sa"}]})
    assert (row["Role"], row["Users"], row["ServiceAccounts"], row["Groups"]) == ("ClusterRole/view", "a", "ns:sa", "")
