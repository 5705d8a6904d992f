"""What the real server checks and normalises in Go beyond the OpenAPI schemas.

The upstream schemas say a container has a ``name`` string and an optional ``image``;
the API server's own validation (``ValidatePodSpec``) says the name is a DNS-1123
label and the image is required, and its decoder refuses a resource quantity it
cannot parse before validation even starts. Decoding into Go structs also drops empty
maps (``omitempty``), so ``annotations: {}`` is never stored. These rules are kept
here, per kind, with the real server's words; ``validate`` keeps the schema walk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

from federationd.sim.cronjobs import schedule_errors
from federationd.sim.validate import FieldError, name_errors

Obj = dict[str, Any]

QUANTITY_FORMAT: Final = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
QUANTITY_SUFFIX: Final = "unable to parse quantity's suffix"

_NUMBER: Final = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)(.*)$")
_SUFFIX_CHARS: Final = frozenset("eEinumkKMGTP-+0123456789")
_SUFFIX: Final = re.compile(r"^(|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)$")

#: where each kind keeps its pod spec
_POD_SPECS: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("", "Pod"): ("spec",),
    ("", "PodTemplate"): ("template", "spec"),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}


def quantity_error(value: Any) -> str:
    """Why ``resource.ParseQuantity`` refuses ``value`` ("" when it parses)."""
    if isinstance(value, bool) or not isinstance(value, str):
        return ""  # numbers decode; other types are the schema's to report
    text = value.strip()
    if not text:
        return QUANTITY_FORMAT
    m = _NUMBER.match(text)
    if m is None or not set(m.group(2)) <= _SUFFIX_CHARS:
        return QUANTITY_FORMAT
    if not _SUFFIX.match(m.group(2)):
        return QUANTITY_SUFFIX
    return ""


def _pod_spec(group: str, kind: str, obj: Obj) -> tuple[str, Obj] | None:
    path = _POD_SPECS.get((group, kind))
    if path is None:
        return None
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return (".".join(path), node) if isinstance(node, dict) else None


def _quantities(group: str, kind: str, obj: Obj) -> Iterator[Any]:
    found = _pod_spec(group, kind, obj)
    if found is not None:
        _, spec = found
        for key in ("containers", "initContainers"):
            for c in spec.get(key) or []:
                res = c.get("resources") if isinstance(c, dict) else None
                if isinstance(res, dict):
                    for part in ("limits", "requests"):
                        if isinstance(res.get(part), dict):
                            yield from res[part].values()
        if isinstance(spec.get("overhead"), dict):
            yield from spec["overhead"].values()
        for v in spec.get("volumes") or []:
            if isinstance(v, dict) and isinstance(v.get("emptyDir"), dict) and "sizeLimit" in v["emptyDir"]:
                yield v["emptyDir"]["sizeLimit"]
    if group == "" and kind == "PersistentVolumeClaim":
        res = (obj.get("spec") or {}).get("resources") or {}
        for part in ("limits", "requests"):
            if isinstance(res.get(part), dict):
                yield from res[part].values()
    if group == "" and kind == "PersistentVolume":
        cap = (obj.get("spec") or {}).get("capacity")
        if isinstance(cap, dict):
            yield from cap.values()
    if group == "" and kind in ("ResourceQuota", "LimitRange"):
        hard = (obj.get("spec") or {}).get("hard")
        if isinstance(hard, dict):
            yield from hard.values()


def decoding_error(group: str, kind: str, obj: Obj) -> str:
    """The decoder's complaint about ``obj`` ("" when it decodes), as in
    ``Deployment in version "v1" cannot be handled as a Deployment: <this>``."""
    for q in _quantities(group, kind, obj):
        err = quantity_error(q)
        if err:
            return err
    return ""


def _go_map(labels: dict[str, Any]) -> str:
    """A label map as Go's ``%#v`` prints it in messages."""
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
    return f"map[string]string{{{inner}}}"


def _selector_errors(group: str, kind: str, obj: Obj) -> list[FieldError]:
    if (group, kind) not in (("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "DaemonSet"), ("apps", "StatefulSet")):
        return []
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict) or not isinstance(labels, dict):
        return []
    match = selector.get("matchLabels") or {}
    if not isinstance(match, dict) or all(labels.get(k) == v for k, v in match.items()):
        return []
    return [FieldError("spec.template.metadata.labels", "FieldValueInvalid",
                       f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`")]


def field_errors(group: str, kind: str, obj: Obj) -> list[FieldError]:
    """Validation of the pod spec a kind carries: container names and images, and a
    workload's selector against its template's labels; a CronJob's schedule."""
    cron: list[FieldError] = []
    if group == "batch" and kind == "CronJob":
        cron = [FieldError(f, r, m) for f, r, m in schedule_errors(obj.get("spec"))]
    found = _pod_spec(group, kind, obj)
    if found is None:
        return cron
    prefix, spec = found
    out: list[FieldError] = cron + _selector_errors(group, kind, obj)
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        containers = spec.get(key)
        if not isinstance(containers, list):
            continue
        for i, c in enumerate(containers):
            if not isinstance(c, dict):
                continue
            path = f"{prefix}.{key}[{i}]"
            name = c.get("name")
            if isinstance(name, str) and name:
                out.extend(FieldError(f"{path}.name", e.reason, e.message) for e in name_errors(name, kind="Namespace"))
                if name in seen:
                    out.append(FieldError.duplicate(f"{path}.name", name))
                seen.add(name)
            if not c.get("image"):
                out.append(FieldError.required(f"{path}.image"))
    return out


def drop_empty_maps(obj: Obj) -> None:
    """Go's ``omitempty``: empty label, annotation and nodeSelector maps are not kept."""
    _drop(obj)


def _drop(node: Any) -> None:
    if isinstance(node, dict):
        for key in ("labels", "annotations", "nodeSelector"):
            if node.get(key) == {}:
                del node[key]
        for v in node.values():
            if isinstance(v, (dict, list)):
                _drop(v)
    elif isinstance(node, list):
        for v in node:
            if isinstance(v, (dict, list)):
                _drop(v)
