"""Conversion between the served forms of one stored object.

The real server keeps one storage per resource and converts on the way in and out:

* an Event written through ``events.k8s.io`` (as controllers write them) shows in
  ``kubectl get events`` and ``kubectl describe``, and the other way round. The stored
  form here is core/v1; the field mapping is the upstream conversion's;
* older releases serve a kind in more group/versions (``extensions/v1beta1`` and
  ``apps/v1beta2`` Deployments, ``apiextensions.k8s.io/v1beta1`` CRDs; see
  :mod:`federationd.sim.versions`). The stored form is the GA version; the beta forms
  differ from it by ``apiVersion`` only, except CustomResourceDefinitions, whose
  v1beta1 form keeps version-independent settings at the top of ``spec``, and
  HorizontalPodAutoscalers, whose metrics are spelled differently in ``v1`` (a CPU
  target only) and ``v2beta1``; those are converted field by field as upstream does.
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


def to_storage(kind: Kind, obj: Obj, *, storage_api_version: str = "") -> Obj:
    """An object served as ``kind`` in the form it is stored as (``storage_api_version``)."""
    if not converts(kind):
        if kind.storage is None or not storage_api_version:
            return obj
        if kind.kind == "CustomResourceDefinition" and kind.version == "v1beta1":
            return crd_v1(obj)
        if kind.kind == "HorizontalPodAutoscaler" and storage_api_version == "autoscaling/v2":
            return hpa_v2(obj)
        if kind.api_version in ("extensions/v1beta1", "apps/v1beta1") and kind.kind in _SELECTOR_DEFAULTED:
            return _default_selector({**obj, "apiVersion": storage_api_version})
        return {**obj, "apiVersion": storage_api_version}
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
    """A stored object as ``kind`` serves it."""
    if not converts(kind):
        if kind.storage is None:
            return obj
        if kind.kind == "CustomResourceDefinition" and kind.version == "v1beta1":
            return crd_v1beta1(obj)
        if kind.kind == "HorizontalPodAutoscaler" and obj.get("apiVersion") == "autoscaling/v2":
            return hpa_from_v2(obj, kind.version)
        return {**obj, "apiVersion": kind.api_version}
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


# ------------------------------------------------------------------ workloads of the first betas

#: kinds whose extensions/v1beta1 and apps/v1beta1 forms default the selector to the
#: template's labels (apps/v1 requires it; the stored form must have it)
_SELECTOR_DEFAULTED = frozenset({"Deployment", "DaemonSet", "ReplicaSet", "StatefulSet"})


def _default_selector(obj: Obj) -> Obj:
    spec = obj.get("spec")
    if not isinstance(spec, dict) or spec.get("selector"):
        return obj
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if not labels:
        return obj
    return {**obj, "spec": {**spec, "selector": {"matchLabels": dict(labels)}}}


# ------------------------------------------------------------------ CRDs v1beta1 <-> v1


def _columns(columns: Any, *, to_v1: bool) -> Any:
    if not isinstance(columns, list):
        return columns
    src, dst = ("JSONPath", "jsonPath") if to_v1 else ("jsonPath", "JSONPath")
    out = []
    for c in columns:
        c = dict(c)
        if src in c:
            c[dst] = c.pop(src)
        out.append(c)
    return out


def crd_v1(obj: Obj) -> Obj:
    """An ``apiextensions.k8s.io/v1beta1`` CustomResourceDefinition in its v1 form."""
    out = {**obj, "apiVersion": "apiextensions.k8s.io/v1"}
    spec = dict(obj.get("spec") or {})
    version = spec.pop("version", None)
    validation = spec.pop("validation", None)
    subresources = spec.pop("subresources", None)
    columns = spec.pop("additionalPrinterColumns", None)
    versions = [dict(v) for v in spec.get("versions") or []]
    if not versions and version:
        versions = [{"name": version, "served": True, "storage": True}]
    for v in versions:
        if validation is not None and "schema" not in v:
            v["schema"] = validation
        if subresources is not None and "subresources" not in v:
            v["subresources"] = subresources
        if columns is not None and "additionalPrinterColumns" not in v:
            v["additionalPrinterColumns"] = columns
        if "additionalPrinterColumns" in v:
            v["additionalPrinterColumns"] = _columns(v["additionalPrinterColumns"], to_v1=True)
    if versions:
        spec["versions"] = versions
    conversion = spec.get("conversion")
    if isinstance(conversion, dict) and ("webhookClientConfig" in conversion or "conversionReviewVersions" in conversion):
        conversion = dict(conversion)
        webhook = {}
        if "webhookClientConfig" in conversion:
            webhook["clientConfig"] = conversion.pop("webhookClientConfig")
        if "conversionReviewVersions" in conversion:
            webhook["conversionReviewVersions"] = conversion.pop("conversionReviewVersions")
        conversion["webhook"] = webhook
        spec["conversion"] = conversion
    # v1beta1 defaults it to true; v1 keeps what v1beta1 meant
    spec.setdefault("preserveUnknownFields", True)
    out["spec"] = spec
    return out


def crd_v1beta1(obj: Obj) -> Obj:
    """A stored (v1) CustomResourceDefinition as ``apiextensions.k8s.io/v1beta1`` serves it."""
    out = {**obj, "apiVersion": "apiextensions.k8s.io/v1beta1"}
    spec = dict(obj.get("spec") or {})
    versions = [dict(v) for v in spec.get("versions") or []]
    for v in versions:
        if "additionalPrinterColumns" in v:
            v["additionalPrinterColumns"] = _columns(v["additionalPrinterColumns"], to_v1=False)
    if versions:
        spec["version"] = versions[0].get("name")
        # settings every version shares move to the top, as the upstream conversion does
        for key, top in (("schema", "validation"), ("subresources", "subresources"),
                         ("additionalPrinterColumns", "additionalPrinterColumns")):
            values = [v.get(key) for v in versions]
            if values[0] is not None and all(x == values[0] for x in values):
                spec[top] = values[0]
                for v in versions:
                    v.pop(key, None)
        spec["versions"] = versions
    conversion = spec.get("conversion")
    if isinstance(conversion, dict) and isinstance(conversion.get("webhook"), dict):
        conversion = dict(conversion)
        webhook = conversion.pop("webhook")
        if "clientConfig" in webhook:
            conversion["webhookClientConfig"] = webhook["clientConfig"]
        if "conversionReviewVersions" in webhook:
            conversion["conversionReviewVersions"] = webhook["conversionReviewVersions"]
        spec["conversion"] = conversion
    out["spec"] = spec
    return out


# ------------------------------------------------------------------ HPAs v1 / v2beta1 / v2beta2 <-> v2

_V2BETA1_TARGETS = (("targetAverageUtilization", "Utilization", "averageUtilization"),
                    ("targetAverageValue", "AverageValue", "averageValue"),
                    ("targetValue", "Value", "value"))
_V2BETA1_CURRENT = (("currentAverageUtilization", "averageUtilization"),
                    ("currentAverageValue", "averageValue"), ("currentValue", "value"))


def _metric_v2(m: Obj, *, status: bool) -> Obj:
    """A v2beta1 metric (spec or status) in its v2 form."""
    typ = str(m.get("type", ""))
    key = typ[:1].lower() + typ[1:]
    src = dict(m.get(key) or {})
    out: Obj = {}
    if status:
        value = {new: src.pop(old) for old, new in _V2BETA1_CURRENT if old in src}
    else:
        value = {}
        for old, target_type, new in _V2BETA1_TARGETS:
            if old in src:
                value = {"type": target_type, new: src.pop(old)}
                break
    if typ == "Resource":
        out = {"name": src.get("name"), ("current" if status else "target"): value}
        if "container" in src:
            out["container"] = src["container"]
    else:
        metric = {"name": src.pop("metricName", "")}
        selector = src.pop("selector", None) or src.pop("metricSelector", None)
        if selector is not None:
            metric["selector"] = selector
        out = {"metric": metric, ("current" if status else "target"): value}
        if typ == "Object" and "target" in src:
            out["describedObject"] = src["target"]
    return {"type": typ, key: out}


def _metric_v2beta1(m: Obj, *, status: bool) -> Obj:
    typ = str(m.get("type", ""))
    key = typ[:1].lower() + typ[1:]
    src = m.get(key) or {}
    value = src.get("current" if status else "target") or {}
    out: Obj = {}
    if status:
        for old, new in _V2BETA1_CURRENT:
            if new in value:
                out[old] = value[new]
    else:
        for old, _target_type, new in _V2BETA1_TARGETS:
            if new in value:
                out[old] = value[new]
    if typ == "Resource":
        out["name"] = src.get("name")
    else:
        metric = src.get("metric") or {}
        out["metricName"] = metric.get("name", "")
        if "selector" in metric:
            out["metricSelector" if typ == "External" else "selector"] = metric["selector"]
        if typ == "Object" and "describedObject" in src:
            out["target"] = src["describedObject"]
    return {"type": typ, key: out}


def _cpu_metric(utilization: Any, *, status: bool) -> Obj:
    value = {"averageUtilization": utilization} if status else {"type": "Utilization", "averageUtilization": utilization}
    return {"type": "Resource", "resource": {"name": "cpu", ("current" if status else "target"): value}}


def hpa_v2(obj: Obj) -> Obj:
    """An HPA served as autoscaling/v1, v2beta1 or v2beta2 in its autoscaling/v2 form."""
    version = str(obj.get("apiVersion", "")).rpartition("/")[2]
    out = {**obj, "apiVersion": "autoscaling/v2"}
    spec = dict(obj.get("spec") or {})
    status = dict(obj.get("status") or {}) if obj.get("status") is not None else None
    if version == "v1":
        cpu = spec.pop("targetCPUUtilizationPercentage", None)
        if cpu is not None:
            spec["metrics"] = [_cpu_metric(cpu, status=False)]
        if status is not None:
            current = status.pop("currentCPUUtilizationPercentage", None)
            if current is not None:
                status["currentMetrics"] = [_cpu_metric(current, status=True)]
    elif version == "v2beta1":
        if "metrics" in spec:
            spec["metrics"] = [_metric_v2(m, status=False) for m in spec["metrics"] or []]
        if status is not None and "currentMetrics" in status:
            status["currentMetrics"] = [_metric_v2(m, status=True) for m in status["currentMetrics"] or []]
    out["spec"] = spec
    if status is not None:
        out["status"] = status
    return out


def hpa_from_v2(obj: Obj, version: str) -> Obj:
    """A stored autoscaling/v2 HPA as ``autoscaling/<version>`` serves it."""
    out = {**obj, "apiVersion": f"autoscaling/{version}"}
    spec = dict(obj.get("spec") or {})
    status = dict(obj.get("status") or {}) if obj.get("status") is not None else None
    if version == "v1":
        metrics = spec.pop("metrics", None) or []
        spec.pop("behavior", None)
        for m in metrics:
            r = m.get("resource") or {}
            if m.get("type") == "Resource" and r.get("name") == "cpu" and "averageUtilization" in (r.get("target") or {}):
                spec["targetCPUUtilizationPercentage"] = r["target"]["averageUtilization"]
        if status is not None:
            for m in status.pop("currentMetrics", None) or []:
                r = m.get("resource") or {}
                if m.get("type") == "Resource" and r.get("name") == "cpu" and "averageUtilization" in (r.get("current") or {}):
                    status["currentCPUUtilizationPercentage"] = r["current"]["averageUtilization"]
            status.pop("conditions", None)
    elif version == "v2beta1":
        spec.pop("behavior", None)
        if "metrics" in spec:
            spec["metrics"] = [_metric_v2beta1(m, status=False) for m in spec["metrics"] or []]
        if status is not None and "currentMetrics" in status:
            status["currentMetrics"] = [_metric_v2beta1(m, status=True) for m in status["currentMetrics"] or []]
    out["spec"] = spec
    if status is not None:
        out["status"] = status
    return out
