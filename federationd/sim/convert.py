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
    return kind.group == "events.k8s.io" and kind.kind == "Event"


def to_storage(kind: Kind, obj: Obj) -> Obj:
    """An events.k8s.io/v1 Event as the core/v1 Event it is stored as."""
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
