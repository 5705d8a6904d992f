"""Conversion between the two served forms of an Event (core/v1 and events.k8s.io/v1).

The real server keeps one storage for both APIs and converts on the way in and out, so
an Event written through ``events.k8s.io/v1`` (as controllers write them) shows in
``kubectl get events`` and ``kubectl describe``, and the other way round. The stored
form here is core/v1; the field mapping is the upstream conversion's.
"""

from __future__ import annotations

from typing import Any

from federationd.sim.kinds import Kind

Obj = dict[str, Any]

#: events.k8s.io/v1 field -> core/v1 field
_RENAMED = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "reportingInstance": "reportingInstance",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_SAME = ("metadata", "related", "reason", "type", "action", "eventTime", "series")


def converts(kind: Kind) -> bool:
    """Whether objects of ``kind`` are stored in another form than they are served."""
    return (kind.group == "events.k8s.io" and kind.kind == "Event") or _is_hpa_v1(kind)


def to_storage(kind: Kind, obj: Obj) -> Obj:
    """An events.k8s.io/v1 Event as the core/v1 Event it is stored as (an
    autoscaling/v1 HorizontalPodAutoscaler as autoscaling/v2)."""
    if _is_hpa_v1(kind):
        return hpa_v1_to_v2(obj)
    if not converts(kind):
        return obj
    out: Obj = {"apiVersion": "v1", "kind": "Event"}
    for key in _SAME:
        if obj.get(key) is not None:
            out[key] = obj[key]
    for new, old in _RENAMED.items():
        if obj.get(new) is not None:
            out[old] = obj[new]
    out.setdefault("involvedObject", {})
    return out


def from_storage(kind: Kind, obj: Obj) -> Obj:
    """A stored core/v1 Event as ``kind`` (events.k8s.io/v1) serves it."""
    if _is_hpa_v1(kind):
        return hpa_v2_to_v1(obj)
    if not converts(kind):
        return obj
    out: Obj = {"apiVersion": kind.api_version, "kind": "Event"}
    for key in _SAME:
        if obj.get(key) is not None:
            out[key] = obj[key]
    for new, old in _RENAMED.items():
        value = obj.get(old)
        if value is not None and value != {}:
            out[new] = value
    if "reportingController" not in out and (obj.get("source") or {}).get("component"):
        out["reportingController"] = obj["source"]["component"]
    if "reportingInstance" not in out and (obj.get("source") or {}).get("host"):
        out["reportingInstance"] = obj["source"]["host"]
    return out


# ---------------------------------------------------------------------------- HPA


def _is_hpa_v1(kind: Kind) -> bool:
    return kind.group == "autoscaling" and kind.version == "v1" and kind.kind == "HorizontalPodAutoscaler"


def _cpu_utilization(metrics: Any, key: str) -> int | None:
    for m in metrics or []:
        res = (m or {}).get("resource") or {}
        if m.get("type") == "Resource" and res.get("name") == "cpu":
            value = (res.get(key) or {}).get("averageUtilization")
            if value is not None:
                return int(value)
    return None


def hpa_v1_to_v2(obj: Obj) -> Obj:
    """autoscaling/v1 → v2: the CPU target becomes a Resource metric (upstream conversion)."""
    out: Obj = {**obj, "apiVersion": "autoscaling/v2"}
    spec = dict(obj.get("spec") or {})
    target = spec.pop("targetCPUUtilizationPercentage", None)
    if target is not None:
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": target}}}]
    out["spec"] = spec
    if "status" in obj:
        status = dict(obj.get("status") or {})
        current = status.pop("currentCPUUtilizationPercentage", None)
        if current is not None:
            status["currentMetrics"] = [{"type": "Resource", "resource": {"name": "cpu", "current": {
                "averageUtilization": current}}}]
        out["status"] = status
    return out


def hpa_v2_to_v1(obj: Obj) -> Obj:
    """autoscaling/v2 → v1: only the CPU utilisation metric has a v1 field."""
    out: Obj = {**obj, "apiVersion": "autoscaling/v1"}
    spec = {k: v for k, v in (obj.get("spec") or {}).items() if k not in ("metrics", "behavior")}
    target = _cpu_utilization((obj.get("spec") or {}).get("metrics"), "target")
    if target is not None:
        spec["targetCPUUtilizationPercentage"] = target
    out["spec"] = spec
    if "status" in obj:
        st = obj.get("status") or {}
        status = {k: v for k, v in st.items() if k not in ("currentMetrics", "conditions")}
        current = _cpu_utilization(st.get("currentMetrics"), "current")
        if current is not None:
            status["currentCPUUtilizationPercentage"] = current
        out["status"] = status
    return out
