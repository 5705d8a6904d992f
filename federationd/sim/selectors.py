"""Label and field selectors with the real server's syntax and error messages.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``,
``!a``, joined by commas (commas inside parentheses belong to the set). Field selectors
support ``metadata.name`` and ``metadata.namespace`` (plus a few per-kind fields) with
``=``, ``==`` and ``!=``; anything else is refused with the real server's 400 message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from federationd.sim.errors import BadRequest

Predicate = Callable[[dict[str, Any]], bool]
LabelCheck = Callable[[dict[str, str]], bool]


def _eq(key: str, val: str, *, negate: bool) -> LabelCheck:
    if negate:
        return lambda lb: lb.get(key) != val
    return lambda lb: lb.get(key) == val


def _in(key: str, vals: frozenset[str], *, negate: bool) -> LabelCheck:
    if negate:
        return lambda lb: lb.get(key) not in vals
    return lambda lb: lb.get(key) in vals


def _exists(key: str, *, negate: bool) -> LabelCheck:
    if negate:
        return lambda lb: key not in lb
    return lambda lb: key in lb


def _field_eq(path: str, val: str, *, negate: bool) -> Predicate:
    if negate:
        return lambda o: _field_value(o, path) != val
    return lambda o: _field_value(o, path) == val

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")
_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _split_terms(s: str) -> list[str]:
    terms: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    terms.append("".join(cur))
    return [t for t in (x.strip() for x in terms) if t]


def parse_label_selector(selector: str) -> Callable[[dict[str, str]], bool]:
    """Compile a label selector into a predicate over a labels dict (400 on bad syntax)."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector):
        m = _EQ_RE.match(term)
        if m:
            key, op, val = m.groups()
            _check_key(key, selector)
            checks.append(_eq(key, val, negate=op == "!="))
            continue
        m = _SET_RE.match(term)
        if not m:
            raise BadRequest(f"unable to parse requirement: found '{term}', expected: in, notin, =, ==, !=, gt, lt")
        neg, key, op, values = m.groups()
        _check_key(key, selector)
        if op:
            if neg:
                raise BadRequest(f"unable to parse requirement: {term}")
            vals = frozenset(v.strip() for v in values.split(",") if v.strip())
            checks.append(_in(key, vals, negate=op == "notin"))
        else:
            checks.append(_exists(key, negate=bool(neg)))
    return lambda labels: all(c(labels) for c in checks)


def _check_key(key: str, selector: str) -> None:
    if not _KEY_RE.match(key) or len(key.split("/")[-1]) > 63:
        raise BadRequest(
            f"unable to parse requirement: values[0][{key}]: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.'"
        )


#: per-kind extra field selectors the real server supports (a useful subset)
_EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "status.phase", "spec.serviceAccountName", "status.podIP"),
    "Secret": ("type",),
    "Event": (
        "involvedObject.kind", "involvedObject.name", "involvedObject.namespace", "involvedObject.uid",
        "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
        "reason", "reportingComponent", "source", "type",
    ),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
}


def _field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(selector: str, *, kind: str) -> Predicate:
    """Compile a field selector into a predicate over an object (400 on unknown fields)."""
    allowed = {"metadata.name", "metadata.namespace", *_EXTRA_FIELDS.get(kind, ())}
    checks: list[Predicate] = []
    for term in _split_terms(selector):
        m = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|!=|=)\s*(.*?)\s*$", term)
        if not m:
            raise BadRequest(f"invalid selector: '{selector}'; can't understand '{term}'")
        field, op, val = m.groups()
        if field not in allowed:
            raise BadRequest(f'field label not supported: {field}')
        checks.append(_field_eq(field, val, negate=op == "!="))
    return lambda obj: all(c(obj) for c in checks)


def object_filter(
    *, label_selector: str, field_selector: str, kind: str
) -> Predicate | None:
    """One predicate for both selectors, or None when there is nothing to filter."""
    lsel = parse_label_selector(label_selector) if label_selector else None
    fsel = parse_field_selector(field_selector, kind=kind) if field_selector else None
    if lsel is None and fsel is None:
        return None

    def match(obj: dict[str, Any]) -> bool:
        if lsel is not None and not lsel((obj.get("metadata") or {}).get("labels") or {}):
            return False
        return fsel is None or fsel(obj)

    return match
