"""``meta.k8s.io/v1 Table`` rendering, which is what ``kubectl get`` prints.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints
the server's columns verbatim, so the server decides the columns: a CRD's
``additionalPrinterColumns`` (evaluated with simple JSONPath, lists printed like Go's
``fmt`` as the real server does, dates as ages) and, for built-ins, the usual columns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from federationd.sim.kinds import Kind
from federationd.sim.store import parse_rfc3339

Obj = dict[str, Any]


def human_duration(seconds: float) -> str:
    """The real server's ``duration.HumanDuration``."""
    s = int(seconds)
    if s < 0:
        s = 0
    if s < 60 * 2:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 60 * 3:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    y = d // 365
    if d < 365 * 8:
        return f"{y}y{d % 365}d" if d % 365 else f"{y}y"
    return f"{y}y"


def _age(obj: Obj, now: float) -> str:
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    return human_duration(now - parse_rfc3339(ts))


def go_fmt(v: Any) -> str:
    """How Go's ``fmt.Print`` renders a decoded JSON value (what kubectl shows)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + " ".join(go_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_fmt(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _json_path(obj: Obj, path: str) -> tuple[bool, Any]:
    cur: Any = obj
    for part in path.strip().lstrip(".").split("."):
        if not part:
            continue
        idx = None
        if part.endswith("]") and "[" in part:
            part, _, rest = part.partition("[")
            idx = int(rest[:-1])
        if not isinstance(cur, dict) or part not in cur:
            return False, None
        cur = cur[part]
        if idx is not None:
            if not isinstance(cur, list) or idx >= len(cur):
                return False, None
            cur = cur[idx]
    return True, cur


def _cell(column: dict[str, Any], obj: Obj, now: float) -> Any:
    found, value = _json_path(obj, column.get("jsonPath", ""))
    if not found or value is None:
        return None
    typ = column.get("type", "string")
    if typ == "date":
        if isinstance(value, str):
            try:
                return human_duration(now - parse_rfc3339(value))
            except ValueError:
                return "<invalid>"
        return None
    if typ == "string":
        return go_fmt(value)
    if typ == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if typ == "number" and isinstance(value, (int, float)):
        return value
    if typ == "boolean" and isinstance(value, bool):
        return value
    return go_fmt(value)


def _col(name: str, typ: str = "string", fmt: str = "", desc: str = "", priority: int = 0) -> dict[str, Any]:
    return {"name": name, "type": typ, "format": fmt, "description": desc or name, "priority": priority}


_NAME = _col("Name", fmt="name", desc="Name must be unique within a namespace.")
_AGE = _col("Age", desc="CreationTimestamp is a timestamp representing the server time when this object was created.")


def _pod_ready(o: Obj) -> str:
    statuses = (o.get("status") or {}).get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{total}"


def _ports(o: Obj) -> str:
    out = []
    for p in (o.get("spec") or {}).get("ports") or []:
        s = f"{p.get('port')}"
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        out.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _external_ip(o: Obj) -> str:
    spec = o.get("spec") or {}
    if spec.get("type") == "LoadBalancer":
        ing = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        addrs = [i.get("ip") or i.get("hostname") for i in ing if i.get("ip") or i.get("hostname")]
        return ",".join(addrs) if addrs else "<pending>"
    return ",".join(spec.get("externalIPs") or []) or "<none>"


def _st(o: Obj, *path: str) -> Any:
    cur: Any = o
    for p in path:
        cur = cur.get(p) if isinstance(cur, dict) else None
    return cur


def _node_ready(o: Obj) -> str:
    for c in _st(o, "status", "conditions") or []:
        if c.get("type") == "Ready":
            return "Ready" if c.get("status") == "True" else "NotReady"
    return "Unknown"


Column = tuple[dict[str, Any], Callable[[Obj], Any]]

_BUILTIN: dict[tuple[str, str], list[Column]] = {
    ("", "Pod"): [
        (_col("Ready"), _pod_ready),
        (_col("Status"), lambda o: _st(o, "status", "phase") or "Unknown"),
        (_col("Restarts", "string"), lambda o: str(sum(int(s.get("restartCount", 0)) for s in _st(o, "status", "containerStatuses") or []))),
        (_col("IP", priority=1), lambda o: _st(o, "status", "podIP") or "<none>"),
        (_col("Node", priority=1), lambda o: _st(o, "spec", "nodeName") or "<none>"),
    ],
    ("", "Service"): [
        (_col("Type"), lambda o: _st(o, "spec", "type") or "ClusterIP"),
        (_col("Cluster-IP"), lambda o: _st(o, "spec", "clusterIP") or "<none>"),
        (_col("External-IP"), _external_ip),
        (_col("Port(s)"), _ports),
    ],
    ("", "Namespace"): [(_col("Status"), lambda o: _st(o, "status", "phase") or "Active")],
    ("", "ConfigMap"): [(_col("Data", "integer"), lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))],
    ("", "Secret"): [
        (_col("Type"), lambda o: o.get("type") or "Opaque"),
        (_col("Data", "integer"), lambda o: len(o.get("data") or {}) + len(o.get("stringData") or {})),
    ],
    ("", "Node"): [
        (_col("Status"), _node_ready),
        (_col("Roles"), lambda o: ",".join(sorted(k.split("/", 1)[1] for k in (_st(o, "metadata", "labels") or {}) if k.startswith("node-role.kubernetes.io/"))) or "<none>"),
    ],
    ("", "ServiceAccount"): [(_col("Secrets", "integer"), lambda o: len(o.get("secrets") or []))],
    ("apps", "Deployment"): [
        (_col("Ready"), lambda o: f"{_st(o, 'status', 'readyReplicas') or 0}/{_st(o, 'spec', 'replicas') if _st(o, 'spec', 'replicas') is not None else 1}"),
        (_col("Up-to-date", "integer"), lambda o: _st(o, "status", "updatedReplicas") or 0),
        (_col("Available", "integer"), lambda o: _st(o, "status", "availableReplicas") or 0),
    ],
    ("apps", "StatefulSet"): [
        (_col("Ready"), lambda o: f"{_st(o, 'status', 'readyReplicas') or 0}/{_st(o, 'spec', 'replicas') if _st(o, 'spec', 'replicas') is not None else 1}"),
    ],
    ("apps", "DaemonSet"): [
        (_col("Desired", "integer"), lambda o: _st(o, "status", "desiredNumberScheduled") or 0),
        (_col("Current", "integer"), lambda o: _st(o, "status", "currentNumberScheduled") or 0),
        (_col("Ready", "integer"), lambda o: _st(o, "status", "numberReady") or 0),
    ],
    ("apiextensions.k8s.io", "CustomResourceDefinition"): [
        (_col("Created At", "date"), lambda o: _st(o, "metadata", "creationTimestamp")),
    ],
    ("coordination.k8s.io", "Lease"): [
        (_col("Holder"), lambda o: _st(o, "spec", "holderIdentity") or ""),
    ],
}


def table(
    kind: Kind,
    objects: list[Obj],
    *,
    resource_version: str,
    include_object: str = "Metadata",
    continue_token: str = "",
    now: float | None = None,
) -> dict[str, Any]:
    now = time.time() if now is None else now
    if kind.custom:
        columns = [_NAME]
        custom = [c for c in kind.printer_columns]
        for c in custom:
            columns.append(
                _col(
                    c.get("name", ""),
                    c.get("type", "string"),
                    c.get("format", ""),
                    c.get("description", ""),
                    int(c.get("priority", 0)),
                )
            )
        if not custom:
            columns.append(_col("Age", "date", desc=_AGE["description"]))

        def cells(o: Obj) -> list[Any]:
            if not custom:
                return [o["metadata"]["name"], _age(o, now)]
            return [o["metadata"]["name"], *(_cell(c, o, now) for c in custom)]
    else:
        extra = _BUILTIN.get((kind.group, kind.kind), [])
        has_age = any(c[0]["name"] == "Created At" for c in extra)
        columns = [_NAME, *(c[0] for c in extra)] + ([] if has_age else [_AGE])

        def cells(o: Obj) -> list[Any]:
            row = [o["metadata"]["name"], *(f(o) for _, f in extra)]
            if has_age:
                row[-1] = _age(o, now)
            else:
                row.append(_age(o, now))
            return row

    rows = []
    for o in objects:
        row: dict[str, Any] = {"cells": cells(o)}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata", {}),
            }
        rows.append(row)
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    }
