"""CRD validation rules (``x-kubernetes-validations``): what an API server of each release does with them.

A CRD's schema may carry CEL rules on any node. Upstream, what happens to them depends
on the release, and the emulator follows it release by release:

* **1.13 to 1.22** — ``JSONSchemaProps`` has no such field: the decoder drops it (kubectl
  refuses it client-side against ``/openapi/v2`` first). Nothing here is involved: the
  release's own definitions prune it (:func:`federationd.sim.validate.prune_builtin`).
* **1.23 and 1.24** — the field exists behind the ``CustomResourceValidationExpressions``
  gate, alpha and off by default: ``dropDisabledFields`` removes every rule from a CRD
  on create (:func:`drop_rules`), so custom resources are never checked against them.
* **1.25 on** (beta, on by default; GA in 1.29) — rules are compiled when the CRD is
  written (a rule that does not compile refuses the CRD, :func:`crd_rule_errors`) and
  evaluated on every write of a custom resource (:func:`validate`), after the OpenAPI
  schema checks and only if none of those is "blocking" (a type, required, enum or
  size error: the object then is not the shape the rules were written for). Which
  fields of a rule exist (``messageExpression`` 1.27, ``reason`` and ``fieldPath``
  1.28, ``optionalOldSelf`` 1.29) is the release's decoder's business, as for any field.

Messages follow ``apiextensions-apiserver/pkg/apiserver/schema/cel/validation.go``: a
failed rule is ``<path>: Invalid value: "<type of the node>": <message>`` (``message``,
else ``failed rule: <rule>``; a ``messageExpression`` wins when it evaluates to a
non-empty one-line string), ``reason`` turns it into Forbidden / Required / Duplicate,
``fieldPath`` extends the path, and a rule that errors says ``<error> evaluating rule:
<rule>``. Transition rules (``oldSelf``) run only on an update with an old value, and
from 1.30 on (validation ratcheting) a failed rule on a value the update did not change
is a warning, not an error.

The expressions run on ``common-expression-language`` (a CEL interpreter with Python
bindings), fed values typed by the schema as upstream's ``UnstructuredToVal`` does (an
integer in a ``number`` field is a double). Not reproduced: cel-go's static type check
at CRD creation (only syntax and unknown functions are refused), the cost budget and
its estimates, and the Kubernetes libraries beyond those of 1.25 (cel-go's ``strings``
extension and the ``lists`` and ``regex`` libraries are here; URLs, quantities, IPs and
CIDRs, ``format``, sets are not): a rule using one of those is refused at CRD creation
here, where a real server of the release that has it would accept it; and ``optionalOldSelf`` (such a rule
is skipped on create, as one without it is, instead of seeing an empty ``oldSelf``).
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import cel

from federationd.sim import versions
from federationd.sim.patch import Schema
from federationd.sim.validate import DUPLICATE, FieldError, compiled_schema, validate_custom

__all__ = [
    "BLOCKED",
    "CelOutcome",
    "admit_custom",
    "crd_rule_errors",
    "drop_rules",
    "evaluates_rules",
    "go_duration",
    "has_rules",
    "is_blocking",
    "validate",
]

#: The first release that evaluates the rules (beta, on by default).
RULES_MINOR: Final = 25
#: The release whose ``CustomResourceValidationExpressions`` gate exists but is off.
GATED_MINOR: Final = 23
#: ``CRDValidationRatcheting`` is on by default from this release.
RATCHETING_MINOR: Final = 30

KEY: Final = "x-kubernetes-validations"

#: What ``hasBlockingErr`` appends instead of running the rules.
BLOCKED: Final = FieldError.invalid(
    "<nil>",
    None,
    "some validation rules were not checked because the object was invalid; correct the "
    "existing errors to complete validation",
)
_BLOCKING_REASONS: Final = frozenset(
    {"FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong", "FieldValueTooMany",
     "FieldValueTypeInvalid"}
)


def evaluates_rules(release: str) -> bool:
    """Whether a server of ``release`` evaluates ``x-kubernetes-validations``."""
    return versions.parse(release).minor >= RULES_MINOR


def is_blocking(errors: list[FieldError]) -> bool:
    """``hasBlockingErr``: a schema error that keeps the rules from running."""
    return any(e.reason in _BLOCKING_REASONS for e in errors)


_HAS_RULES: dict[int, tuple[Any, bool]] = {}


def has_rules(schema: Any) -> bool:
    """Whether any node of a schema carries rules (memoised per schema object)."""
    hit = _HAS_RULES.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    found = _has_rules(schema)
    if len(_HAS_RULES) >= 512:
        _HAS_RULES.clear()
    _HAS_RULES[id(schema)] = (schema, found)
    return found


def _has_rules(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        if schema.get(KEY):
            return True
        return any(_has_rules(v) for k, v in schema.items() if k not in ("enum", "default", "example"))
    if isinstance(schema, list):
        return any(_has_rules(v) for v in schema)
    return False


# ------------------------------------------------------------------ the CRD


def _schemas(crd: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = crd.get("spec") or {}
    for i, v in enumerate(spec.get("versions") or []):
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if isinstance(schema, dict):
            yield f"spec.versions[{i}].schema.openAPIV3Schema", schema
    validation = (spec.get("validation") or {}).get("openAPIV3Schema")
    if isinstance(validation, dict):
        yield "spec.validation.openAPIV3Schema", validation


def _drop(schema: dict[str, Any]) -> None:
    # dropXValidationsField: the node, its properties, additionalProperties and items
    schema.pop(KEY, None)
    for child in (schema.get("properties") or {}).values():
        if isinstance(child, dict):
            _drop(child)
    for key in ("additionalProperties", "items"):
        child = schema.get(key)
        if isinstance(child, dict):
            _drop(child)
        elif isinstance(child, list):
            for item in child:
                if isinstance(item, dict):
                    _drop(item)


def drop_rules(crd: dict[str, Any], *, release: str, old: Mapping[str, Any] | None = None) -> None:
    """``dropDisabledFields``: on a release where the gate is off, the rules go.

    Kept when the stored CRD already had some (it cannot on these releases, short of
    an upgrade-then-downgrade), as upstream does.
    """
    minor = versions.parse(release).minor
    if not GATED_MINOR <= minor < RULES_MINOR:
        return
    if old is not None and any(_has_rules(s) for _, s in _schemas(old)):
        return
    for _, schema in _schemas(crd):
        _drop(schema)


def _go_rule(rule: Mapping[str, Any], minor: int) -> str:
    """The rule as Go's ``%#v`` prints an ``apiextensions.ValidationRule`` of that release."""
    parts = [f"Rule:{json.dumps(str(rule.get('rule', '')))}", f"Message:{json.dumps(str(rule.get('message', '')))}"]
    if minor >= 27:
        parts.append(f"MessageExpression:{json.dumps(str(rule.get('messageExpression', '')))}")
    if minor >= 28:
        reason = rule.get("reason")
        parts.append(
            "Reason:(*apiextensions.FieldValueErrorReason)(nil)" if reason is None
            else f"Reason:(*apiextensions.FieldValueErrorReason)({json.dumps(str(reason))})"
        )
        parts.append(f"FieldPath:{json.dumps(str(rule.get('fieldPath', '')))}")
    if minor >= 29:
        parts.append("OptionalOldSelf:(*bool)(nil)" if rule.get("optionalOldSelf") is None
                     else f"OptionalOldSelf:(*bool)({str(bool(rule['optionalOldSelf'])).lower()})")
    return "apiextensions.ValidationRule{" + ", ".join(parts) + "}"


def _walk_rules(schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any], int]]:
    for i, rule in enumerate(schema.get(KEY) or []):
        if isinstance(rule, Mapping):
            yield f"{path}.{KEY}[{i}]", rule, i
    for name, child in (schema.get("properties") or {}).items():
        if isinstance(child, Mapping):
            yield from _walk_rules(child, f"{path}.properties[{name}]")
    for key in ("additionalProperties", "items"):
        child = schema.get(key)
        if isinstance(child, Mapping):
            yield from _walk_rules(child, f"{path}.{key}")


def crd_rule_errors(crd: Mapping[str, Any], *, release: str) -> list[tuple[str, str, str]]:
    """What the server refuses in a CRD's rules: ``(field, reason, message)`` triples.

    Nothing before 1.25 (the rules are gone or unknown there). A rule must be set and
    must compile; so must a ``messageExpression``.
    """
    minor = versions.parse(release).minor
    if minor < RULES_MINOR:
        return []
    out: list[tuple[str, str, str]] = []
    for root, schema in _schemas(crd):
        for path, rule, _ in _walk_rules(schema, root):
            text = str(rule.get("rule") or "")
            if not text.strip():
                out.append((f"{path}.rule", "FieldValueRequired", "Required value"))
                continue
            problem = _compile_problem(text)
            if problem:
                out.append((f"{path}.rule", "FieldValueInvalid",
                            f"Invalid value: {_go_rule(rule, minor)}: compilation failed: {problem}"))
            expr = str(rule.get("messageExpression") or "")
            if expr:
                problem = _compile_problem(expr)
                if problem:
                    out.append((f"{path}.messageExpression", "FieldValueInvalid",
                                f"Invalid value: {_go_rule(rule, minor)}: messageExpression compilation failed: {problem}"))
    return out


# ------------------------------------------------------------------ the language

#: Functions and macros of the standard CEL environment a 1.25 server offers, plus the
#: operators the interpreter reports as functions. A rule naming anything else does
#: not compile here (see the module docstring for the Kubernetes libraries).
_KNOWN_FUNCTIONS: Final = frozenset({
    "size", "has", "all", "exists", "exists_one", "map", "filter", "matches", "contains",
    "startsWith", "endsWith", "int", "uint", "double", "string", "bytes", "bool", "type",
    "duration", "timestamp", "dyn", "getFullYear", "getMonth", "getDayOfYear",
    "getDayOfMonth", "getDate", "getDayOfWeek", "getHours", "getMinutes", "getSeconds",
    "getMilliseconds", "in", "null_type",
    "charAt", "indexOf", "lastIndexOf", "lowerAscii", "upperAscii", "replace", "split",
    "substring", "trim", "join", "isSorted", "sum", "min", "max", "find", "findAll",
})
_OPERATOR: Final = re.compile(r"^(_.*_|!_|-_|@.*)$")


class _LibraryError(ValueError):
    """A library function refusing its arguments (cel-go's words)."""


def _index_of(target: Any, item: Any, start: int = 0) -> int:
    if isinstance(target, str):
        if not 0 <= start <= len(target):
            raise _LibraryError(f"index out of range: {start}")
        return target.find(item, start)
    return next((i for i, x in enumerate(target) if x == item), -1)


def _last_index_of(target: Any, item: Any, end: int | None = None) -> int:
    if isinstance(target, str):
        return target.rfind(item, 0, None if end is None else end + len(item))
    return next((i for i in range(len(target) - 1, -1, -1) if target[i] == item), -1)


def _split(text: str, sep: str, limit: int = -1) -> list[str]:
    if limit == 0:
        return []
    if sep == "":
        parts = list(text)
        return parts if limit < 0 or limit >= len(parts) else [*parts[:limit - 1], "".join(parts[limit - 1:])]
    return text.split(sep, limit - 1 if limit > 0 else -1)


def _replace(text: str, old: str, new: str, limit: int = -1) -> str:
    return text.replace(old, new, limit)


def _substring(text: str, start: int, end: int | None = None) -> str:
    stop = len(text) if end is None else end
    if not 0 <= start <= stop <= len(text):
        raise _LibraryError(f"index out of range: {start if start < 0 or start > len(text) else stop}")
    return text[start:stop]


def _char_at(text: str, index: int) -> str:
    if not 0 <= index <= len(text):
        raise _LibraryError(f"index out of range: {index}")
    return text[index:index + 1]


def _sorted(items: list[Any]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(items))


def _find_all(text: str, pattern: str, limit: int = -1) -> list[str]:
    found = [m.group(0) for m in re.finditer(pattern, text)]
    return found if limit < 0 else found[:limit]


def _find(text: str, pattern: str) -> str:
    m = re.search(pattern, text)
    return m.group(0) if m else ""


def _min(items: list[Any]) -> Any:
    if not items:
        raise _LibraryError("min(list) called on empty list")
    return min(items)


def _max(items: list[Any]) -> Any:
    if not items:
        raise _LibraryError("max(list) called on empty list")
    return max(items)


#: What a 1.25 server adds to standard CEL and the emulator provides: cel-go's
#: ``ext.Strings`` and the Kubernetes ``lists`` and ``regex`` libraries.
_LIBRARY: Final[Mapping[str, Any]] = {
    "charAt": _char_at,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "lowerAscii": lambda text: "".join(c.lower() if c.isascii() else c for c in text),
    "upperAscii": lambda text: "".join(c.upper() if c.isascii() else c for c in text),
    "replace": _replace,
    "split": _split,
    "substring": _substring,
    "trim": lambda text: text.strip(),
    "join": lambda items, sep="": sep.join(items),
    "isSorted": _sorted,
    "sum": lambda items: sum(items) if items else 0,
    "min": _min,
    "max": _max,
    "find": _find,
    "findAll": _find_all,
}
#: Type names a rule may use as values (``type(x) == double``).
_TYPE_NAMES: Final = frozenset(
    {"int", "uint", "double", "string", "bool", "bytes", "list", "map", "null_type", "type", "dyn"}
)
#: The iteration variable of a macro (``l.all(x, ...)``): bound, not a free reference.
_MACRO_VARIABLE: Final = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")


def _source_rewrite(text: str) -> str:
    """``duration(...)`` calls routed to :func:`go_duration` (Go's parser accepts what
    the interpreter's does not: ``"0"``, ``µs``). String literals are left alone."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            quote = text[i:i + 3] if text[i:i + 3] in ("'''", '"""') else ch
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + len(quote)])
            i = j + len(quote)
            continue
        m = re.match(r"duration\s*\(", text[i:])
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_.")):
            out.append("k8s_go_duration(")
            i += m.end()
            continue
        out.append(ch)
        i += 1
    return "".join(out)


_GO_UNITS: Final = {
    "ns": 1e-3, "us": 1.0, "µs": 1.0, "μs": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6,
}
_GO_PART: Final = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")


class _GoDurationError(ValueError):
    pass


def go_duration(text: str) -> datetime.timedelta:
    """Go's ``time.ParseDuration`` (what cel-go's ``duration()`` calls), errors worded as Go's."""
    orig, s = text, text
    neg = False
    if s[:1] in "+-":
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return datetime.timedelta(0)
    if not s:
        raise _GoDurationError(f"time: invalid duration {json.dumps(orig, ensure_ascii=False)}")
    micros = 0.0
    while s:
        m = _GO_PART.match(s)
        assert m is not None
        number, rest = m.group(1), s[len(m.group(1)):]
        if number in ("", "."):
            raise _GoDurationError(f"time: invalid duration {json.dumps(orig, ensure_ascii=False)}")
        unit_match = re.match(r"[^0-9.]*", rest)
        unit = unit_match.group(0) if unit_match else ""
        if not unit:
            raise _GoDurationError(f"time: missing unit in duration {json.dumps(orig, ensure_ascii=False)}")
        if unit not in _GO_UNITS:
            raise _GoDurationError(
                f"time: unknown unit {json.dumps(unit, ensure_ascii=False)} in duration "
                f"{json.dumps(orig, ensure_ascii=False)}"
            )
        micros += float(number) * _GO_UNITS[unit]
        s = rest[len(unit):]
    if micros > 2**63 / 1e3:
        raise _GoDurationError(f"time: invalid duration {json.dumps(orig, ensure_ascii=False)}")
    delta = datetime.timedelta(microseconds=micros)
    return -delta if neg else delta


@dataclass(frozen=True, slots=True)
class _Compiled:
    program: Any
    uses_old_self: bool


_PROGRAMS: dict[str, _Compiled | str] = {}
_PROGRAMS_LIMIT: Final = 4096


def _compile(text: str) -> _Compiled | str:
    """The program of a rule, or why it does not compile (cel-go's words where it can)."""
    hit = _PROGRAMS.get(text)
    if hit is not None:
        return hit
    result: _Compiled | str
    try:
        cel.compile(text)  # syntax errors point into the source as written
        program = cel.compile(_source_rewrite(text))
    except ValueError as e:
        msg = str(e)
        result = msg.split(": ", 1)[1] if msg.startswith("Failed to parse expression") else msg
    else:
        refs = program.references()
        functions = set(refs.get("functions", ())) - {"k8s_go_duration"}
        unknown = sorted(f for f in functions if not _OPERATOR.match(f) and f not in _KNOWN_FUNCTIONS)
        variables = set(refs.get("variables", ()))
        bound = set(_MACRO_VARIABLE.findall(text))
        undeclared = sorted(variables - {"self", "oldSelf"} - _TYPE_NAMES - bound)
        if undeclared or unknown:
            name = (undeclared or unknown)[0]
            at = re.search(rf"(?<![\w.]){re.escape(name)}\b" if undeclared else rf"\b{re.escape(name)}\s*\(", text)
            offset = at.start() if at else 0
            line = text.count("\n", 0, offset) + 1
            column = offset - (text.rfind("\n", 0, offset) + 1) + 1
            result = f"ERROR: <input>:{line}:{column}: undeclared reference to '{name}' (in container '')"
        else:
            result = _Compiled(program, "oldSelf" in variables)
    if len(_PROGRAMS) >= _PROGRAMS_LIMIT:
        _PROGRAMS.clear()
    _PROGRAMS[text] = result
    return result


def _compile_problem(text: str) -> str:
    result = _compile(text)
    return result if isinstance(result, str) else ""


class _EvalError(Exception):
    """A rule that failed to evaluate, with cel-go's wording of why."""


def _go_error(e: Exception) -> str:
    text = str(e)
    if isinstance(e, KeyError):
        return f"no such key: {e.args[0] if e.args else text}"
    if isinstance(e, ZeroDivisionError):
        return "modulus by zero" if "modulo" in text else "division by zero"
    if isinstance(e, OverflowError):
        return "integer overflow"
    if isinstance(e, TypeError) and text.lower().startswith("no such overload"):
        return "no such overload"
    if isinstance(e, IndexError):
        return text
    m = re.search(r"Python function call failed: \w+: (.*?)\. Check function", text, re.S)
    if m:
        return m.group(1)
    return text.split(". Check ")[0]


def _run(compiled: _Compiled, activation: dict[str, Any]) -> Any:
    context = cel.Context(activation)
    context.add_function("k8s_go_duration", go_duration)
    for name, function in _LIBRARY.items():
        context.add_function(name, function)
    try:
        return compiled.program.execute(context)
    except Exception as e:  # the interpreter raises builtins; each is one CEL error
        raise _EvalError(_go_error(e)) from e


# ------------------------------------------------------------------ values


def _typed(value: Any, node: Schema) -> Any:
    """The value as CEL sees it through the schema (``UnstructuredToVal``)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value) if node.types == frozenset({"number"}) else value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in node.properties:
                child = node.field(key)
                out[key] = _typed(item, child) if child is not None else item
            elif isinstance(node.additional, Mapping):
                out[key] = _typed(item, node.values())
            else:
                out[key] = item
        return out
    if isinstance(value, list):
        items = node.items()
        return [_typed(item, items) for item in value]
    return value


def _node_type(node: Schema) -> str:
    """``sts.Type``: the schema's declared type, "" for int-or-string and untyped nodes."""
    declared = node.raw.get("type")
    return declared if isinstance(declared, str) else ""


def _root_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``WithTypeAndObjectMeta``: at a resource root, metadata is name and generateName only."""
    out = {k: v for k, v in obj.items()}
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        out["metadata"] = {k: meta[k] for k in ("name", "generateName") if k in meta}
    return out


# ------------------------------------------------------------------ evaluation


@dataclass(slots=True)
class CelOutcome:
    """The rules' verdict on one object: errors refuse the write, warnings ride along."""

    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _failure(path: str, node: Schema, rule: Mapping[str, Any], detail: str) -> FieldError:
    value = _node_type(node)
    reason = rule.get("reason")
    if reason == "FieldValueForbidden":
        return FieldError(path, "FieldValueForbidden", f"Forbidden: {detail}" if detail else "Forbidden")
    if reason == "FieldValueRequired":
        return FieldError.required(path, detail)
    if reason == "FieldValueDuplicate":
        return FieldError.duplicate(path, value)
    return FieldError.invalid(path, value, detail)


def _rule_text(rule: Mapping[str, Any]) -> str:
    message = str(rule.get("message") or "").strip()
    return message or str(rule.get("rule") or "").strip()


def _message(rule: Mapping[str, Any], activation: dict[str, Any]) -> str:
    expr = str(rule.get("messageExpression") or "")
    if expr:
        compiled = _compile(expr)
        if isinstance(compiled, _Compiled):
            try:
                result = _run(compiled, activation)
            except _EvalError:
                result = None
            if isinstance(result, str):
                trimmed = result.strip()
                if trimmed and "\n" not in trimmed and len(trimmed) <= 5 * 1024:
                    return trimmed
    message = str(rule.get("message") or "").strip()
    return message or f"failed rule: {_rule_text(rule)}"


def _field_path(path: str, field_path: str) -> str:
    """``fieldPath`` (``.spec.replicas``, ``.labels['x']``) appended as ``Child`` does."""
    normalized = re.sub(r"\['((?:[^'\\]|\\.)*)'\]", r"[\1]", field_path).lstrip(".")
    if not normalized:
        return path
    return f"{path}.{normalized}" if path else normalized


def _at(path: str) -> str:
    # the validator starts from a nil field.Path, which prints as "<nil>"
    return path or "<nil>"


@dataclass(slots=True)
class _Walk:
    ratchet: bool
    outcome: CelOutcome = field(default_factory=CelOutcome)


def _check_node(value: Any, old: Any, node: Schema, path: str, walk: _Walk, *, root: bool) -> None:
    if value is None:
        return  # rules only see non-null values
    rules = node.raw.get(KEY) or []
    if rules:
        self_value = _typed(_root_view(value) if root and isinstance(value, Mapping) else value, node)
        activation: dict[str, Any] = {"self": self_value}
        if old is not None:
            activation["oldSelf"] = _typed(_root_view(old) if root and isinstance(old, Mapping) else old, node)
        for rule in rules:
            compiled = _compile(str(rule.get("rule") or ""))
            if isinstance(compiled, str):
                walk.outcome.errors.append(
                    FieldError.invalid(_at(path), _node_type(node), f"rule compile error: {compiled}"))
                continue
            if compiled.uses_old_self and old is None:
                continue  # transition rules need a value to compare with
            try:
                ok = _run(compiled, activation)
            except _EvalError as e:
                text = str(e)
                if text == "no such overload":
                    detail = (f"'{text}': call arguments did not match a supported operator, function or "
                              f"macro signature for rule: {_rule_text(rule)}")
                else:
                    detail = f"{text} evaluating rule: {_rule_text(rule)}"
                walk.outcome.errors.append(FieldError.invalid(_at(path), _node_type(node), detail))
                continue
            if ok is True:
                continue
            error = _failure(_at(_field_path(path, str(rule.get("fieldPath") or ""))), node, rule,
                             _message(rule, activation))
            if walk.ratchet and not compiled.uses_old_self and old is not None and old == value:
                walk.outcome.warnings.append(str(error))
            else:
                walk.outcome.errors.append(error)
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        for key, item in value.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            child: Schema | None = None
            if key in node.properties:
                child = node.field(key)
            elif isinstance(node.additional, Mapping):
                child = node.values()
            if child is not None:
                here = f"{path}.{key}" if path else key
                _check_node(item, old_map.get(key), child, here, walk, root=child.embedded)
    elif isinstance(value, list):
        items = node.items()
        old_items = _correlated(old, node)
        for index, item in enumerate(value):
            _check_node(item, old_items(item), items, f"{path}[{index}]", walk, root=items.embedded)


def _correlated(old: Any, node: Schema) -> Any:
    """Old list items line up with new ones only in a map-type list, by key."""
    keys = tuple(node.raw.get("x-kubernetes-list-map-keys") or ())
    if node.raw.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(old, list):
        return lambda _item: None
    by_key = {
        json.dumps([o.get(k) for k in keys]): o for o in old if isinstance(o, Mapping)
    }
    return lambda item: by_key.get(json.dumps([item.get(k) for k in keys])) if isinstance(item, Mapping) else None


def validate(
    obj: Mapping[str, Any],
    *,
    schema: Mapping[str, Any] | Schema,
    release: str,
    old: Mapping[str, Any] | None = None,
) -> CelOutcome:
    """Evaluate every rule of ``schema`` on ``obj`` as a server of ``release`` does.

    Nothing before 1.25. ``old`` is the stored object on an update (transition rules,
    ratcheting from 1.30).
    """
    if not evaluates_rules(release):
        return CelOutcome()
    node = compiled_schema(schema)
    if not has_rules(node.raw):
        return CelOutcome()
    walk = _Walk(ratchet=versions.parse(release).minor >= RATCHETING_MINOR)
    _check_node(dict(obj), dict(old) if old is not None else None, node, "", walk, root=True)
    return walk.outcome


def admit_custom(
    obj: Mapping[str, Any],
    *,
    schema: Mapping[str, Any] | Schema,
    release: str,
    old: Mapping[str, Any] | None = None,
) -> CelOutcome:
    """Every validation error of a custom resource in the server's order: the OpenAPI
    schema's, then the rules' (or, after a blocking schema error, :data:`BLOCKED`).

    ``old`` is the stored object of an update: transition rules and ratcheting read it,
    and list uniqueness is only enforced if the stored object already had it.
    """
    errors = validate_custom(obj, schema=schema)
    if old is not None and any(e.reason == DUPLICATE for e in validate_custom(old, schema=schema)):
        # an update checks list-type set/map uniqueness only if the stored object
        # already kept it (the custom resource strategy's ValidateUpdate)
        errors = [e for e in errors if e.reason != DUPLICATE]
    outcome = CelOutcome(errors=errors)
    if not evaluates_rules(release) or not has_rules(compiled_schema(schema).raw):
        return outcome
    if is_blocking(outcome.errors):
        outcome.errors.append(BLOCKED)
        return outcome
    rules = validate(obj, schema=schema, release=release, old=old)
    outcome.errors.extend(rules.errors)
    outcome.warnings.extend(rules.warnings)
    return outcome
