"""``meta.k8s.io/v1 Table`` rendering, which is what ``kubectl get`` prints.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints
the server's columns verbatim, so the server decides the columns: a CRD's
``additionalPrinterColumns`` (evaluated with simple JSONPath, lists printed like Go's
``fmt`` as the real server does, dates as ages) and, for built-ins, the columns and
cells of upstream's ``pkg/printers/internalversion/printers.go``, in their wide form
(the server always renders priority-1 columns; ``kubectl get`` shows them with
``-o wide``). Kinds upstream has no printer for get the API server's default table,
``NAME`` and ``CREATED AT`` (a timestamp, not an age), as Roles and CRDs do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
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
_CREATED_AT = _col("Created At", "date", desc=_AGE["description"])


def _st(o: Obj, *path: str) -> Any:
    cur: Any = o
    for p in path:
        cur = cur.get(p) if isinstance(cur, dict) else None
    return cur


def _pod_ready(o: Obj) -> str:
    statuses = (o.get("status") or {}).get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready") and (s.get("state") or {}).get("running") is not None)
    return f"{ready}/{total}"


def _pod_restarts(o: Obj, now: float) -> str:
    """``N``, or ``N (<age> ago)`` after the last container restart, as printPod shows it."""
    statuses = _st(o, "status", "containerStatuses") or []
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    last = max((str(((s.get("lastState") or {}).get("terminated") or {}).get("finishedAt") or "") for s in statuses),
               default="")
    return f"{restarts} ({_ts_since(last, now)} ago)" if restarts and last else str(restarts)


def _terminated_reason(t: dict[str, Any], prefix: str = "") -> str:
    if t.get("reason"):
        return prefix + str(t["reason"])
    if t.get("signal"):
        return f"{prefix}Signal:{t['signal']}"
    return f"{prefix}ExitCode:{t.get('exitCode', 0)}"


def _pod_status(o: Obj) -> str:
    """``printPod``'s STATUS: the phase, or what the containers say they are doing."""
    status = o.get("status") or {}
    reason = str(status.get("reason") or status.get("phase") or "")
    initializing = False
    inits = (o.get("spec") or {}).get("initContainers") or []
    for i, c in enumerate(status.get("initContainerStatuses") or []):
        state = c.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term is not None and term.get("exitCode", 0) == 0:
            continue
        if term is not None:
            reason = _terminated_reason(term, "Init:")
        elif wait is not None and wait.get("reason") and wait.get("reason") != "PodInitializing":
            reason = "Init:" + str(wait["reason"])
        else:
            reason = f"Init:{i}/{len(inits)}"
        initializing = True
        break
    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True" for c in status.get("conditions") or [])
    if not initializing or initialized:
        has_running = False
        for c in reversed(status.get("containerStatuses") or []):
            state = c.get("state") or {}
            wait, term = state.get("waiting"), state.get("terminated")
            if wait is not None and wait.get("reason"):
                reason = str(wait["reason"])
            elif term is not None:
                reason = _terminated_reason(term)
            elif c.get("ready") and state.get("running") is not None:
                has_running = True
        if reason == "Completed" and has_running:
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            reason = "Running" if ready else "NotReady"
    deleting = bool((o.get("metadata") or {}).get("deletionTimestamp"))
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason


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


def _labels(m: Any) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` joined by commas, ``<none>`` when empty."""
    if not isinstance(m, dict) or not m:
        return "<none>"
    return ",".join(f"{k}={m[k]}" for k in sorted(m))


def _selector(sel: Any) -> str:
    """``metav1.FormatLabelSelector``."""
    if not isinstance(sel, dict):
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op = str(e.get("operator", ""))
        values = ",".join(e.get("values") or [])
        if op == "In":
            parts.append(f"{e.get('key')} in ({values})")
        elif op == "NotIn":
            parts.append(f"{e.get('key')} notin ({values})")
        elif op == "Exists":
            parts.append(str(e.get("key")))
        elif op == "DoesNotExist":
            parts.append(f"!{e.get('key')}")
    return ",".join(parts) or ("<none>" if not sel else "")


def _containers(template: Any) -> tuple[str, str]:
    cs = _st(template or {}, "spec", "containers") or []
    return ",".join(str(c.get("name", "")) for c in cs), ",".join(str(c.get("image", "")) for c in cs)


def _node_status(o: Obj) -> str:
    status = []
    for c in _st(o, "status", "conditions") or []:
        if c.get("type") == "Ready":
            status.append("Ready" if c.get("status") == "True" else "NotReady")
            break
    if not status:
        status.append("Unknown")
    if _st(o, "spec", "unschedulable"):
        status.append("SchedulingDisabled")
    return ",".join(status)


def _node_roles(o: Obj) -> str:
    roles: set[str] = set()
    for k, v in (_st(o, "metadata", "labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]:
            roles.add(k.split("/", 1)[1])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(roles)) or "<none>"


def _node_address(o: Obj, kind: str) -> str:
    for a in _st(o, "status", "addresses") or []:
        if a.get("type") == kind:
            return str(a.get("address", ""))
    return "<none>"


def _endpoints(o: Obj) -> str:
    """``formatEndpoints``: up to three ``ip:port``, then ``+ N more...``."""
    subsets = o.get("subsets") or []
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    more = False
    for ss in subsets:
        addrs = ss.get("addresses") or []
        ports = ss.get("ports") or []
        if not ports:
            count += len(addrs)
            for a in addrs:
                if len(shown) == 3:
                    more = True
                    break
                shown.append(str(a.get("ip", "")))
            continue
        for p in ports:
            count += len(addrs)
            for a in addrs:
                if len(shown) == 3:
                    more = True
                    break
                ip = str(a.get("ip", ""))
                host = f"[{ip}]" if ":" in ip else ip
                shown.append(f"{host}:{p.get('port')}")
    text = ",".join(shown)
    if more:
        return f"{text} + {count - 3} more..."
    return text or "<none>"


def _ts_since(ts: Any, now: float) -> str:
    """``translateTimestampSince`` for a Time or a MicroTime (fractional seconds)."""
    if not ts:
        return "<unknown>"
    try:
        return human_duration(now - datetime.fromisoformat(str(ts)).timestamp())
    except ValueError:
        return "<unknown>"


def _event_cells(o: Obj, now: float) -> list[Any]:
    """``printEvent`` (wide, as the server renders it), for either served form of an Event."""
    involved = o.get("involvedObject") or o.get("regarding") or {}
    first_ts = o.get("firstTimestamp") or o.get("deprecatedFirstTimestamp")
    first = _ts_since(first_ts or o.get("eventTime"), now)
    last_ts = o.get("lastTimestamp") or o.get("deprecatedLastTimestamp")
    last = _ts_since(last_ts, now) if last_ts else first
    count = o.get("count") or o.get("deprecatedCount") or 0
    series = o.get("series")
    if isinstance(series, dict):
        last = _ts_since(series.get("lastObservedTime"), now)
        count = series.get("count", 0)
    elif not count:
        count = 1
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = o.get("source") or o.get("deprecatedSource") or {}
    component = source.get("component") or o.get("reportingComponent") or o.get("reportingController") or ""
    instance = source.get("host") or o.get("reportingInstance") or ""
    src = "" if not component else (f"{component}, {instance}" if instance else component)
    message = str(o.get("message") or o.get("note") or "").strip()
    return [last, o.get("type", ""), o.get("reason", ""), target, involved.get("fieldPath", ""),
            src, message, first, int(count), o["metadata"]["name"]]


def _subjects(o: Obj, kind: str) -> str:
    out = []
    for s in o.get("subjects") or []:
        if s.get("kind") != kind:
            continue
        out.append(f"{s.get('namespace', '')}:{s.get('name', '')}" if kind == "ServiceAccount" else str(s.get("name", "")))
    return ", ".join(out)


def _int_or_na(v: Any) -> str:
    return "N/A" if v is None else str(v)


Cell = Callable[[Obj, float], Any]
Column = tuple[dict[str, Any], Cell]


def _name(o: Obj, now: float) -> Any:
    return o["metadata"]["name"]


def _age_cell(o: Obj, now: float) -> Any:
    return _age(o, now)


def _created_at(o: Obj, now: float) -> Any:
    return _st(o, "metadata", "creationTimestamp")


def _f(fn: Callable[[Obj], Any]) -> Cell:
    return lambda o, now: fn(o)


def _template_columns(selector: bool = True) -> list[Column]:
    cols: list[Column] = [
        (_col("Containers", priority=1, desc="Names of each container in the template."),
         _f(lambda o: _containers(_st(o, "spec", "template"))[0])),
        (_col("Images", priority=1, desc="Images referenced by each container in the template."),
         _f(lambda o: _containers(_st(o, "spec", "template"))[1])),
    ]
    if selector:
        cols.append((_col("Selector", priority=1), _f(lambda o: _selector(_st(o, "spec", "selector")))))
    return cols


def _replicas(o: Obj) -> Any:
    r = _st(o, "spec", "replicas")
    return 1 if r is None else r


def _hpa_targets(o: Obj) -> str:
    """``formatHPAMetrics``, for the resource-utilization metrics federationd's charts use."""
    spec_metrics = _st(o, "spec", "metrics")
    if spec_metrics is None and _st(o, "spec", "targetCPUUtilizationPercentage") is not None:
        current = _st(o, "status", "currentCPUUtilizationPercentage")
        return f"cpu: {'<unknown>' if current is None else f'{current}%'}/{_st(o, 'spec', 'targetCPUUtilizationPercentage')}%"
    if not spec_metrics:
        return "<none>"
    out = []
    for i, m in enumerate(spec_metrics):
        res = m.get("resource") or {}
        target = res.get("target") or {}
        util = target.get("averageUtilization", res.get("targetAverageUtilization"))
        if m.get("type") == "Resource" and util is not None:
            cur = (_st(o, "status", "currentMetrics") or [{}] * (i + 1))
            cur_res = (cur[i] if i < len(cur) else {}).get("resource") or {}
            current = (cur_res.get("current") or {}).get("averageUtilization", cur_res.get("currentAverageUtilization"))
            out.append(f"{res.get('name')}: {'<unknown>' if current is None else f'{current}%'}/{util}%")
        else:
            out.append("<unknown>")
    return ", ".join(out)


_N: Column = (_NAME, _name)
_A: Column = (_AGE, _age_cell)

#: (group, kind) -> every column, as pkg/printers/internalversion/printers.go defines them
#: (the server renders the wide form; kubectl hides priority-1 columns unless -o wide).
_BUILTIN: dict[tuple[str, str], list[Column]] = {
    ("", "Pod"): [
        _N,
        (_col("Ready"), _f(_pod_ready)),
        (_col("Status"), _f(_pod_status)),
        (_col("Restarts"), _pod_restarts),
        _A,
        (_col("IP", priority=1), _f(lambda o: _st(o, "status", "podIP") or "<none>")),
        (_col("Node", priority=1), _f(lambda o: _st(o, "spec", "nodeName") or "<none>")),
        (_col("Nominated Node", priority=1), _f(lambda o: _st(o, "status", "nominatedNodeName") or "<none>")),
        (_col("Readiness Gates", priority=1), _f(lambda o: "<none>" if not _st(o, "spec", "readinessGates") else
                                                  f"0/{len(_st(o, 'spec', 'readinessGates'))}")),
    ],
    ("", "Service"): [
        _N,
        (_col("Type"), _f(lambda o: _st(o, "spec", "type") or "ClusterIP")),
        (_col("Cluster-IP"), _f(lambda o: _st(o, "spec", "clusterIP") or "<none>")),
        (_col("External-IP"), _f(_external_ip)),
        (_col("Port(s)"), _f(_ports)),
        _A,
        (_col("Selector", priority=1), _f(lambda o: _labels(_st(o, "spec", "selector")))),
    ],
    ("", "Endpoints"): [_N, (_col("Endpoints"), _f(_endpoints)), _A],
    ("", "Event"): [
        (_col("Last Seen"), lambda o, now: _event_cells(o, now)[0]),
        (_col("Type"), lambda o, now: _event_cells(o, now)[1]),
        (_col("Reason"), lambda o, now: _event_cells(o, now)[2]),
        (_col("Object"), lambda o, now: _event_cells(o, now)[3]),
        (_col("Subobject", priority=1), lambda o, now: _event_cells(o, now)[4]),
        (_col("Source", priority=1), lambda o, now: _event_cells(o, now)[5]),
        (_col("Message"), lambda o, now: _event_cells(o, now)[6]),
        (_col("First Seen", priority=1), lambda o, now: _event_cells(o, now)[7]),
        (_col("Count", priority=1), lambda o, now: _event_cells(o, now)[8]),
        (_col("Name", fmt="name", priority=1), lambda o, now: _event_cells(o, now)[9]),
    ],
    ("", "Namespace"): [_N, (_col("Status"), _f(lambda o: _st(o, "status", "phase") or "Active")), _A],
    ("", "ConfigMap"): [_N, (_col("Data"), _f(lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))), _A],
    ("", "Secret"): [
        _N,
        (_col("Type"), _f(lambda o: o.get("type") or "Opaque")),
        (_col("Data"), _f(lambda o: len(set(o.get("data") or {}) | set(o.get("stringData") or {})))),
        _A,
    ],
    ("", "ServiceAccount"): [_N, (_col("Secrets"), _f(lambda o: len(o.get("secrets") or []))), _A],
    ("", "Node"): [
        _N,
        (_col("Status"), _f(_node_status)),
        (_col("Roles"), _f(_node_roles)),
        _A,
        (_col("Version"), _f(lambda o: _st(o, "status", "nodeInfo", "kubeletVersion") or "")),
        (_col("Internal-IP", priority=1), _f(lambda o: _node_address(o, "InternalIP"))),
        (_col("External-IP", priority=1), _f(lambda o: _node_address(o, "ExternalIP"))),
        (_col("OS-Image", priority=1), _f(lambda o: _st(o, "status", "nodeInfo", "osImage") or "<unknown>")),
        (_col("Kernel-Version", priority=1), _f(lambda o: _st(o, "status", "nodeInfo", "kernelVersion") or "<unknown>")),
        (_col("Container-Runtime", priority=1),
         _f(lambda o: _st(o, "status", "nodeInfo", "containerRuntimeVersion") or "<unknown>")),
    ],
    ("", "PersistentVolumeClaim"): [
        _N,
        (_col("Status"), _f(lambda o: _st(o, "status", "phase") or "")),
        (_col("Volume"), _f(lambda o: _st(o, "spec", "volumeName") or "")),
        (_col("Capacity"), _f(lambda o: (_st(o, "status", "capacity") or {}).get("storage", ""))),
        (_col("Access Modes"), _f(lambda o: ",".join({"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                                                      "ReadWriteOncePod": "RWOP"}.get(m, m) for m in _st(o, "status", "accessModes") or []))),
        (_col("StorageClass"), _f(lambda o: _st(o, "spec", "storageClassName") or "<unset>")),
        (_col("VolumeAttributesClass"), _f(lambda o: _st(o, "spec", "volumeAttributesClassName") or "<unset>")),
        _A,
        (_col("VolumeMode", priority=1), _f(lambda o: _st(o, "spec", "volumeMode") or "Filesystem")),
    ],
    ("", "PersistentVolume"): [
        _N,
        (_col("Capacity"), _f(lambda o: (_st(o, "spec", "capacity") or {}).get("storage", ""))),
        (_col("Access Modes"), _f(lambda o: ",".join({"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                                                      "ReadWriteOncePod": "RWOP"}.get(m, m) for m in _st(o, "spec", "accessModes") or []))),
        (_col("Reclaim Policy"), _f(lambda o: _st(o, "spec", "persistentVolumeReclaimPolicy") or "")),
        (_col("Status"), _f(lambda o: _st(o, "status", "phase") or "")),
        (_col("Claim"), _f(lambda o: f"{_st(o, 'spec', 'claimRef', 'namespace')}/{_st(o, 'spec', 'claimRef', 'name')}"
                           if _st(o, "spec", "claimRef") else "")),
        (_col("StorageClass"), _f(lambda o: _st(o, "spec", "storageClassName") or "")),
        (_col("VolumeAttributesClass"), _f(lambda o: _st(o, "spec", "volumeAttributesClassName") or "<unset>")),
        (_col("Reason"), _f(lambda o: _st(o, "status", "reason") or "")),
        _A,
        (_col("VolumeMode", priority=1), _f(lambda o: _st(o, "spec", "volumeMode") or "Filesystem")),
    ],
    ("", "ReplicationController"): [
        _N,
        (_col("Desired", "integer"), _f(_replicas)),
        (_col("Current", "integer"), _f(lambda o: _st(o, "status", "replicas") or 0)),
        (_col("Ready", "integer"), _f(lambda o: _st(o, "status", "readyReplicas") or 0)),
        _A,
        *_template_columns(selector=False),
        (_col("Selector", priority=1), _f(lambda o: _labels(_st(o, "spec", "selector")))),
    ],
    ("apps", "Deployment"): [
        _N,
        (_col("Ready"), _f(lambda o: f"{_st(o, 'status', 'readyReplicas') or 0}/{_replicas(o)}")),
        (_col("Up-to-date"), _f(lambda o: _st(o, "status", "updatedReplicas") or 0)),
        (_col("Available"), _f(lambda o: _st(o, "status", "availableReplicas") or 0)),
        _A,
        *_template_columns(),
    ],
    ("apps", "ReplicaSet"): [
        _N,
        (_col("Desired", "integer"), _f(_replicas)),
        (_col("Current", "integer"), _f(lambda o: _st(o, "status", "replicas") or 0)),
        (_col("Ready", "integer"), _f(lambda o: _st(o, "status", "readyReplicas") or 0)),
        _A,
        *_template_columns(),
    ],
    ("apps", "StatefulSet"): [
        _N,
        (_col("Ready"), _f(lambda o: f"{_st(o, 'status', 'readyReplicas') or 0}/{_replicas(o)}")),
        _A,
        *_template_columns(selector=False),
    ],
    ("apps", "DaemonSet"): [
        _N,
        (_col("Desired", "integer"), _f(lambda o: _st(o, "status", "desiredNumberScheduled") or 0)),
        (_col("Current", "integer"), _f(lambda o: _st(o, "status", "currentNumberScheduled") or 0)),
        (_col("Ready", "integer"), _f(lambda o: _st(o, "status", "numberReady") or 0)),
        (_col("Up-to-date", "integer"), _f(lambda o: _st(o, "status", "updatedNumberScheduled") or 0)),
        (_col("Available", "integer"), _f(lambda o: _st(o, "status", "numberAvailable") or 0)),
        (_col("Node Selector"), _f(lambda o: _labels(_st(o, "spec", "template", "spec", "nodeSelector")))),
        _A,
        *_template_columns(),
    ],
    ("apps", "ControllerRevision"): [
        _N,
        (_col("Controller"), _f(lambda o: next((f"{r.get('kind', '').lower()}.{r.get('apiVersion', '').split('/')[0]}/{r.get('name')}"
                                                for r in _st(o, "metadata", "ownerReferences") or [] if r.get("controller")), "<none>"))),
        (_col("Revision"), _f(lambda o: o.get("revision", 0))),
        _A,
    ],
    ("batch", "Job"): [
        _N,
        (_col("Status"), _f(lambda o: next((c.get("type") for c in reversed(_st(o, "status", "conditions") or [])
                                           if c.get("status") == "True" and c.get("type") in ("Complete", "Failed", "Suspended")),
                                          "Running"))),
        (_col("Completions"), _f(lambda o: f"{_st(o, 'status', 'succeeded') or 0}/{_st(o, 'spec', 'completions') or 1}")),
        (_col("Duration"), lambda o, now: "" if not _st(o, "status", "startTime") else human_duration(
            (parse_rfc3339(_st(o, "status", "completionTime")) if _st(o, "status", "completionTime") else now)
            - parse_rfc3339(_st(o, "status", "startTime")))),
        _A,
        *_template_columns(),
    ],
    ("batch", "CronJob"): [
        _N,
        (_col("Schedule"), _f(lambda o: _st(o, "spec", "schedule") or "")),
        (_col("Timezone"), _f(lambda o: _st(o, "spec", "timeZone") or "<none>")),
        (_col("Suspend", "boolean"), _f(lambda o: bool(_st(o, "spec", "suspend")))),
        (_col("Active", "integer"), _f(lambda o: len(_st(o, "status", "active") or []))),
        (_col("Last Schedule"), lambda o, now: _ts_since(_st(o, "status", "lastScheduleTime"), now)
         if _st(o, "status", "lastScheduleTime") else "<none>"),
        _A,
        (_col("Containers", priority=1), _f(lambda o: _containers(_st(o, "spec", "jobTemplate", "spec", "template"))[0])),
        (_col("Images", priority=1), _f(lambda o: _containers(_st(o, "spec", "jobTemplate", "spec", "template"))[1])),
        (_col("Selector", priority=1), _f(lambda o: _selector(_st(o, "spec", "jobTemplate", "spec", "selector")))),
    ],
    ("policy", "PodDisruptionBudget"): [
        _N,
        (_col("Min Available"), _f(lambda o: _int_or_na(_st(o, "spec", "minAvailable")))),
        (_col("Max Unavailable"), _f(lambda o: _int_or_na(_st(o, "spec", "maxUnavailable")))),
        (_col("Allowed Disruptions", "integer"), _f(lambda o: _st(o, "status", "disruptionsAllowed") or 0)),
        _A,
    ],
    ("autoscaling", "HorizontalPodAutoscaler"): [
        _N,
        (_col("Reference"), _f(lambda o: f"{_st(o, 'spec', 'scaleTargetRef', 'kind')}/{_st(o, 'spec', 'scaleTargetRef', 'name')}")),
        (_col("Targets"), _f(_hpa_targets)),
        (_col("MinPods"), _f(lambda o: "<unset>" if _st(o, "spec", "minReplicas") is None else str(_st(o, "spec", "minReplicas")))),
        (_col("MaxPods"), _f(lambda o: _st(o, "spec", "maxReplicas") or 0)),
        (_col("Replicas"), _f(lambda o: _st(o, "status", "currentReplicas") or 0)),
        _A,
    ],
    ("rbac.authorization.k8s.io", "Role"): [_N, (_CREATED_AT, _created_at)],
    ("rbac.authorization.k8s.io", "ClusterRole"): [_N, (_CREATED_AT, _created_at)],
    **{
        ("rbac.authorization.k8s.io", binding): [
            _N,
            (_col("Role"), _f(lambda o: f"{_st(o, 'roleRef', 'kind')}/{_st(o, 'roleRef', 'name')}")),
            _A,
            (_col("Users", priority=1), _f(lambda o: _subjects(o, "User"))),
            (_col("Groups", priority=1), _f(lambda o: _subjects(o, "Group"))),
            (_col("ServiceAccounts", priority=1), _f(lambda o: _subjects(o, "ServiceAccount"))),
        ]
        for binding in ("RoleBinding", "ClusterRoleBinding")
    },
    **{
        ("admissionregistration.k8s.io", webhook): [
            _N,
            (_col("Webhooks", "integer"), _f(lambda o: len(o.get("webhooks") or []))),
            _A,
        ]
        for webhook in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    },
    ("apiextensions.k8s.io", "CustomResourceDefinition"): [_N, (_CREATED_AT, _created_at)],
    ("coordination.k8s.io", "Lease"): [_N, (_col("Holder"), _f(lambda o: _st(o, "spec", "holderIdentity") or "")), _A],
    ("scheduling.k8s.io", "PriorityClass"): [
        _N,
        (_col("Value", "integer"), _f(lambda o: o.get("value", 0))),
        (_col("Global-Default", "boolean"), _f(lambda o: bool(o.get("globalDefault")))),
        _A,
        (_col("PreemptionPolicy"), _f(lambda o: o.get("preemptionPolicy") or "PreemptLowerPriority")),
    ],
    ("networking.k8s.io", "NetworkPolicy"): [
        _N, (_col("Pod-Selector"), _f(lambda o: _selector(_st(o, "spec", "podSelector")) or "<none>")), _A,
    ],
    ("networking.k8s.io", "IngressClass"): [
        _N,
        (_col("Controller"), _f(lambda o: _st(o, "spec", "controller") or "")),
        (_col("Parameters"), _f(lambda o: "<none>" if not _st(o, "spec", "parameters") else
                                f"{_st(o, 'spec', 'parameters', 'kind')}/{_st(o, 'spec', 'parameters', 'name')}")),
        _A,
    ],
    ("storage.k8s.io", "StorageClass"): [
        # the printer marks the default class in its name
        (_N[0], _f(lambda o: o["metadata"]["name"] + (
            " (default)" if (o["metadata"].get("annotations") or {}).get(
                "storageclass.kubernetes.io/is-default-class") in ("true", "True") else ""))),
        (_col("Provisioner"), _f(lambda o: o.get("provisioner", ""))),
        (_col("ReclaimPolicy"), _f(lambda o: o.get("reclaimPolicy") or "Delete")),
        (_col("VolumeBindingMode"), _f(lambda o: o.get("volumeBindingMode") or "Immediate")),
        (_col("AllowVolumeExpansion"), _f(lambda o: "true" if o.get("allowVolumeExpansion") else "false")),
        _A,
    ],
}


#: kinds served under another group too (``extensions/v1beta1`` Deployments, events.k8s.io)
_ALIASES: dict[tuple[str, str], str] = {
    ("extensions", "DaemonSet"): "apps",
    ("extensions", "Deployment"): "apps",
    ("extensions", "ReplicaSet"): "apps",
    ("extensions", "Ingress"): "networking.k8s.io",
    ("extensions", "NetworkPolicy"): "networking.k8s.io",
    ("events.k8s.io", "Event"): "",
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
        group = _ALIASES.get((kind.group, kind.kind), kind.group)
        spec = _BUILTIN.get((group, kind.kind)) or [_N, (_CREATED_AT, _created_at)]
        columns = [c for c, _ in spec]

        def cells(o: Obj) -> list[Any]:
            if (group, kind.kind) == ("", "Event"):
                return _event_cells(o, now)  # one pass for the ten cells
            return [f(o, now) for _, f in spec]

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
