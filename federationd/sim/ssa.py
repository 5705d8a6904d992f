"""Server-side apply and ``metadata.managedFields``, as the real API server does them.

The real server tracks, for every object, which *field manager* owns which fields
(sigs.k8s.io/structured-merge-diff). This module reproduces that bookkeeping over
plain dicts so that clients see the same ``managedFields``, the same pruning of
fields a manager stops applying, and the same 409 conflict messages:

* a field set is a set of paths; a path is a tuple of encoded path elements exactly
  as ``fieldsV1`` spells them — ``f:<field>``, ``k:<json of the key fields>`` for an
  element of an associative list, ``v:<json value>`` for an element of a set,
  ``i:<index>`` — so encoding to and decoding from ``fieldsV1`` is a trie walk;
* which list is associative (and by which keys), which is a set and which is atomic
  comes from :class:`federationd.sim.patch.Schema` — the same upstream definitions
  strategic merge patch reads, never a second table;
* :func:`apply` follows ``Updater.Apply``: merge the applied configuration into the
  live object, prune what the manager applied last time and no longer applies
  (unless someone else owns it), then compare the live and new objects and give the
  changed fields to the applier — refusing with :class:`ApplyConflict` when another
  manager owns one of them, unless forced;
* :func:`update_managed_fields` follows ``Updater.Update`` for ordinary writes
  (POST/PUT/PATCH): what the write changed becomes the writer's, and is taken from
  everybody else.

Fields the server owns (``metadata.uid``, ``resourceVersion``, ``generation``,
``creationTimestamp``, ``managedFields``, …, plus ``apiVersion`` and ``kind``) are
never owned by anybody, like the server's ``stripMeta``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from federationd.sim.patch import ANY, Schema, builtin_schema

__all__ = [
    "ApplyConflict",
    "FieldManagerError",
    "InvalidApply",
    "apply",
    "decode_fields",
    "encode_fields",
    "field_set",
    "path_string",
    "update_managed_fields",
]

Path = tuple[str, ...]

#: metadata fields the server sets; nobody owns them (structured-merge-diff stripMeta).
SERVER_OWNED_METADATA: Final = frozenset(
    {
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)
#: of those, the ones an applied configuration may not set at all.
_DROPPED_FROM_APPLY: Final = SERVER_OWNED_METADATA - {"name", "namespace"}

#: Key fields that the server defaults before ownership is computed; upstream marks
#: them with an OpenAPI default the packaged definitions do not carry.
_KEY_DEFAULTS: Final[Mapping[str, Any]] = {"protocol": "TCP"}


class FieldManagerError(Exception):
    """Base of the failures of field management."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidApply(FieldManagerError):
    """The applied configuration cannot be typed (duplicate or missing list keys).

    The real server answers these with a 500 whose message starts with
    ``failed to create typed patch object``.
    """


class ApplyConflict(FieldManagerError):
    """Another manager owns fields the apply would change (the server answers 409).

    ``conflicts`` lists ``(manager, field path)`` pairs such as
    ``("kubectl-client-side-apply", ".spec.replicas")``; :meth:`causes` gives the
    Status ``details.causes`` with the server's wording
    (``conflict with "kubectl-client-side-apply" using apps/v1``).
    """

    def __init__(
        self,
        message: str,
        conflicts: list[tuple[str, str]],
        *,
        descriptions: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.conflicts = conflicts
        self._descriptions = descriptions or [f'"{m}"' for m, _ in conflicts]

    def causes(self) -> list[dict[str, str]]:
        """The ``details.causes`` of the real server's Status."""
        return [
            {"type": "FieldManagerConflict", "message": f"conflict with {who}", "field": path}
            for who, (_, path) in zip(self._descriptions, self.conflicts, strict=True)
        ]


# ----------------------------------------------------------------- path elements


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _key_element(item: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    fields: dict[str, Any] = {}
    for key in keys:
        if key in item:
            fields[key] = item[key]
        elif key in _KEY_DEFAULTS:
            fields[key] = _KEY_DEFAULTS[key]
        else:
            return None
    return "k:" + _json(fields)


def _value_rank(value: Any) -> tuple[int, Any]:
    # structured-merge-diff's total order: numbers < strings < bools < lists < maps < null.
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, list):
        return (3, _json(value))
    if isinstance(value, dict):
        return (4, _json(value))
    return (5, 0)


def _element_order(element: str) -> tuple[Any, ...]:
    prefix, _, rest = element.partition(":")
    if prefix == "f":
        return (0, rest)
    if prefix == "k":
        fields = json.loads(rest)
        return (1, tuple((name, _value_rank(fields[name])) for name in sorted(fields)))
    if prefix == "v":
        return (2, _value_rank(json.loads(rest)))
    if prefix == "i":
        return (3, int(rest))
    return (4, element)


def _path_order(path: Path) -> tuple[tuple[Any, ...], ...]:
    # structured-merge-diff iterates a set level by level, the members of a level
    # before its children: ".status.conditions" before ".status.acceptedNames.kind".
    last = len(path) - 1
    return tuple((int(i != last), *_element_order(e)) for i, e in enumerate(path))


def _go_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return _json(value)


def path_string(path: Path) -> str:
    """A path as the server prints it in conflicts: ``.spec.containers[name="app"].image``."""
    out: list[str] = []
    for element in path:
        prefix, _, rest = element.partition(":")
        if prefix == "f":
            out.append("." + rest)
        elif prefix == "k":
            fields = json.loads(rest)
            out.append("[" + ",".join(f"{k}={_go_value(fields[k])}" for k in sorted(fields)) + "]")
        elif prefix == "v":
            out.append(f"[={_go_value(json.loads(rest))}]")
        else:
            out.append(f"[{rest}]")
    return "".join(out)


# ---------------------------------------------------------------- field sets


def encode_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """A set of paths as ``fieldsV1`` (members as ``{}``, ``"."`` for a member with children)."""
    root: dict[str, Any] = {}
    members: set[Path] = set()
    for path in paths:
        members.add(path)
        node = root
        for element in path:
            node = node.setdefault(element, {})
    return _emit(root, (), members)


def _emit(node: Mapping[str, Any], prefix: Path, members: set[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if prefix and node and prefix in members:
        out["."] = {}
    for element in sorted(node, key=_element_order):
        out[element] = _emit(node[element], (*prefix, element), members)
    return out


def decode_fields(fields: Mapping[str, Any]) -> set[Path]:
    """The set of paths a ``fieldsV1`` value names."""
    out: set[Path] = set()
    _decode(fields, (), out)
    return out


def _decode(fields: Mapping[str, Any], prefix: Path, out: set[Path]) -> None:
    for element, child in fields.items():
        if element == ".":
            out.add(prefix)
        elif isinstance(child, Mapping) and child:
            _decode(child, (*prefix, element), out)
        else:
            out.add((*prefix, element))


@dataclass(slots=True)
class _Node:
    """One path of a value: a leaf (scalar, null or atomic) or a container."""

    leaf: bool
    value: Any
    member: bool


def _collect(
    obj: Mapping[str, Any], schema: Schema, *, strict: bool, ignore: Collection[str] = ()
) -> dict[Path, _Node]:
    out: dict[Path, _Node] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or key in ignore:
            continue
        child = schema.field(key) or ANY
        if key == "metadata" and isinstance(value, Mapping):
            # metadata itself, and what the server sets in it, are nobody's.
            for mkey, mvalue in value.items():
                if mkey in SERVER_OWNED_METADATA:
                    continue
                mchild = child.field(mkey) or ANY
                _visit(
                    mvalue,
                    mchild,
                    ("f:metadata", "f:" + mkey),
                    out,
                    mkey in child.properties,
                    strict,
                )
            continue
        _visit(value, child, ("f:" + key,), out, key in schema.properties, strict)
    return out


def _visit(
    value: Any, schema: Schema, path: Path, out: dict[Path, _Node], declared: bool, strict: bool
) -> None:
    if isinstance(value, dict) and schema.map_type != "atomic":
        # A map entry that is not a declared struct field, or an empty map, is itself a
        # member of the field set (structured-merge-diff's visitMapItems).
        out[path] = _Node(leaf=False, value=None, member=not value or not declared)
        for key, child_value in value.items():
            child = schema.field(key) or ANY
            _visit(child_value, child, (*path, "f:" + key), out, key in schema.properties, strict)
        return
    if isinstance(value, list) and schema.list_type != "atomic":
        elements = _list_elements(value, schema, strict=strict, path=path)
        if elements is not None:
            out[path] = _Node(leaf=False, value=None, member=not declared)
            item_schema = schema.items()
            for element, item in elements:
                _visit(item, item_schema, (*path, element), out, False, strict)
            return
    out[path] = _Node(leaf=True, value=value, member=True)


def _list_elements(
    value: list[Any], schema: Schema, *, strict: bool, path: Path
) -> list[tuple[str, Any]] | None:
    """Path elements of a keyed list or set, or None to treat the list as atomic."""
    if schema.list_type == "map" and not schema.list_keys:
        return None  # a map list that names no keys cannot be merged by element
    elements: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for item in value:
        element: str | None
        if schema.list_type == "map":
            element = _key_element(item, schema.list_keys) if isinstance(item, Mapping) else None
            if element is None:
                if strict:
                    missing = [
                        k
                        for k in schema.list_keys
                        if not isinstance(item, Mapping) or k not in item
                    ]
                    raise InvalidApply(
                        f"{path_string(path)}: element {len(elements)}: associative list with keys "
                        f'has an element that omits key field "{missing[0] if missing else "?"}" '
                        "(and doesn't have default value)"
                    )
                return None
        else:
            if isinstance(item, (Mapping, list)):
                if strict:
                    raise InvalidApply(f"{path_string(path)}: sets may only contain scalars")
                return None
            element = "v:" + _json(item)
        if element in seen:
            if strict:
                raise InvalidApply(
                    f"{path_string(path)}: duplicate entries for key {path_string((element,))}"
                )
            continue
        seen.add(element)
        elements.append((element, item))
    return elements


def field_set(
    obj: Mapping[str, Any],
    *,
    api_version: str = "",
    schema: Schema | Mapping[str, Any] | None = None,
    ignore: Collection[str] = (),
) -> set[Path]:
    """The fields an applied configuration sets (structured-merge-diff ``ToFieldSet``)."""
    node = _schema(obj, api_version, schema)
    return {p for p, n in _collect(obj, node, strict=True, ignore=ignore).items() if n.member}


def _schema(
    obj: Mapping[str, Any] | None, api_version: str, schema: Schema | Mapping[str, Any] | None
) -> Schema:
    if isinstance(schema, Schema):
        return schema
    if schema is not None:
        return Schema.from_openapi(schema)
    kind = str((obj or {}).get("kind", ""))
    return builtin_schema(api_version or str((obj or {}).get("apiVersion", "")), kind) or ANY


# --------------------------------------------------------------- comparisons


def _equal(a: Any, b: Any) -> bool:
    # JSON equality: true is not 1, unlike Python's ==.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return bool(a == b) and (a is None) == (b is None)


@dataclass(slots=True)
class _Comparison:
    added: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)


def _compare(old: Mapping[Path, _Node], new: Mapping[Path, _Node]) -> _Comparison:
    result = _Comparison()
    for path, node in new.items():
        before = old.get(path)
        if before is None:
            result.added.add(path)
        elif node.leaf and before.leaf:
            if not _equal(node.value, before.value):
                result.modified.add(path)
        elif (node.leaf and node.value is not None) or (before.leaf and before.value is not None):
            # A container turned scalar or back; null next to a container is only
            # an absent container, whose elements are what changed.
            result.modified.add(path)
    result.removed = {p for p in old if p not in new}
    return result


# -------------------------------------------------------------- managed fields


@dataclass(slots=True)
class _Manager:
    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str
    fields: set[Path]

    @property
    def identity(self) -> tuple[str, str, str, str]:
        # Appliers keep one entry across versions; updaters get one per version.
        version = self.api_version if self.operation != "Apply" else ""
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """How the server names a manager in a conflict message."""
        text = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def encode(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time is not None:
            entry["time"] = self.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = encode_fields(self.fields)
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def _decode_managers(entries: Any) -> dict[tuple[str, str, str, str], _Manager]:
    managers: dict[tuple[str, str, str, str], _Manager] = {}
    if not isinstance(entries, list):
        return managers
    for entry in entries:
        if not isinstance(entry, Mapping) or (
            not entry.get("manager") and not entry.get("fieldsV1")
        ):
            continue
        fields = entry.get("fieldsV1")
        manager = _Manager(
            manager=str(entry.get("manager", "")),
            operation=str(entry.get("operation", "Update")),
            api_version=str(entry.get("apiVersion", "")),
            time=entry.get("time"),
            subresource=str(entry.get("subresource", "")),
            fields=decode_fields(fields) if isinstance(fields, Mapping) else set(),
        )
        previous = managers.get(manager.identity)
        if previous is not None:
            manager.fields |= previous.fields
        managers[manager.identity] = manager
    return managers


def _encode_managers(managers: Iterable[_Manager]) -> list[dict[str, Any]]:
    # The server sorts entries by operation, time, manager, apiVersion, subresource.
    ordered = sorted(
        (m for m in managers if m.fields),
        key=lambda m: (m.operation, m.time or "", m.manager, m.api_version, m.subresource),
    )
    return [m.encode() for m in ordered]


def _managed_entries(obj: Mapping[str, Any] | None) -> Any:
    meta = (obj or {}).get("metadata")
    return meta.get("managedFields") if isinstance(meta, Mapping) else None


def _without_managed_fields(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    """A deep copy of ``obj`` minus its managedFields (which are not copied at all)."""
    result = dict(obj or {})
    meta = result.get("metadata")
    if isinstance(meta, Mapping):
        result["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return copy.deepcopy(result)


def _is_reset(entries: Any) -> bool:
    # ``managedFields: [{}]`` is how a client asks the server to drop them all; an
    # empty list is ignored so that clients unaware of the field cannot wipe it.
    return isinstance(entries, list) and len(entries) == 1 and entries[0] == {}


def update_managed_fields(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    *,
    manager: str,
    operation: str = "Update",
    api_version: str,
    now: str,
    subresource: str = "",
    schema: Schema | Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The ``managedFields`` after an ordinary write of ``new`` over ``old``.

    The fields the write added or changed become ``manager``'s and are taken from
    every other manager; removed fields leave everybody's set. A write that changes
    nothing leaves the entries (and their times) as they were. ``new`` may carry
    ``managedFields`` of its own: a non-empty list replaces the stored ones (that is
    how a client edits them), ``[{}]`` clears them.
    """
    requested = _managed_entries(new)
    if _is_reset(requested):
        return []
    node = _schema(new, api_version, schema)
    base = requested if isinstance(requested, list) and requested and not subresource else None
    managers = _decode_managers(base if base is not None else _managed_entries(old))

    # Field collection skips metadata.managedFields, so no copies are needed here.
    before = old if old is not None else _zero_value(new, node, top=True)
    comparison = _compare(
        _collect(before, node, strict=False),
        _collect(new, node, strict=False),
    )
    taken = comparison.added | comparison.modified

    me = _Manager(manager, operation, api_version, now, subresource, set())
    for ident, entry in managers.items():
        entry.fields -= comparison.removed
        if ident != me.identity:
            entry.fields -= taken
    if taken:
        previous = managers.get(me.identity)
        me.fields = taken | (previous.fields if previous else set())
        managers[me.identity] = me
    return _encode_managers(managers.values())


#: Struct fields Go never omits (non-pointer structs), so they exist in a zero value.
_ALWAYS_PRESENT: Final = frozenset({"metadata", "spec", "status", "template"})


def _zero_value(new: Mapping[str, Any], schema: Schema, *, top: bool = False) -> dict[str, Any]:
    """An approximation of the zero value of ``new``'s type, which a create is diffed against.

    The real server compares a create with the Go zero value: non-pointer structs and
    fields without ``omitempty`` (upstream lists them as required) are already there,
    so they are not "added" and carry no ``"."`` in the creator's fieldsV1.
    """
    required = set(schema.raw.get("required") or ())
    zero: dict[str, Any] = {}
    for key, value in new.items():
        child = schema.field(key) or ANY
        if (
            isinstance(value, Mapping)
            and child.properties
            and (top or key in required or key in _ALWAYS_PRESENT)
        ):
            zero[key] = _zero_value(value, child)
        elif key in required and not top:
            zero[key] = None
    return zero


# --------------------------------------------------------------------- apply


def apply(
    live: Mapping[str, Any] | None,
    applied: Mapping[str, Any],
    *,
    manager: str,
    force: bool,
    api_version: str,
    now: str,
    subresource: str = "",
    schema: Schema | Mapping[str, Any] | None = None,
    ignore: Collection[str] = (),
) -> dict[str, Any]:
    """Server-side apply ``applied`` over ``live`` (None to create); returns the new object.

    The result carries the new ``metadata.managedFields``; everything else the server
    stamps (resourceVersion, generation, …) is left to the caller. ``schema`` is a
    custom resource's ``openAPIV3Schema`` (built-in kinds are looked up); without one
    a custom resource is treated like ``x-kubernetes-preserve-unknown-fields``:
    maps merge, lists are atomic. ``ignore`` names top-level fields this request may
    not set — ``("status",)`` for the main resource of a kind with a status
    subresource; with ``subresource="status"`` only ``status`` is applied.
    """
    node = _schema(applied if applied.get("kind") else live, api_version, schema)
    config = _clean_applied(applied)
    if subresource == "status":
        # Through the status subresource only status is written.
        meta = config.get("metadata")
        config = {k: v for k, v in config.items() if k in ("apiVersion", "kind", "status")}
        if isinstance(meta, dict):
            config["metadata"] = {k: v for k, v in meta.items() if k in ("name", "namespace")}
    else:
        config = {k: v for k, v in config.items() if k not in ignore}
    applied_set = {
        p for p, n in _collect(config, node, strict=True, ignore=ignore).items() if n.member
    }

    current = _without_managed_fields(live)
    managers = _decode_managers(_managed_entries(live))
    me_key = _Manager(manager, "Apply", api_version, None, subresource, set()).identity
    previous = managers.get(me_key)
    last = previous.fields if previous else set()

    merged = _merge(current, config, node) if live is not None else copy.deepcopy(config)
    others = [m for ident, m in managers.items() if ident != me_key]
    owned = set(applied_set)
    for other in others:
        owned |= other.fields
    _prune(merged, last - owned, owned, node)

    comparison = _compare(
        _collect(current, node, strict=False, ignore=ignore),
        _collect(merged, node, strict=False, ignore=ignore),
    )
    changed = comparison.added | comparison.modified
    conflicts: list[tuple[_Manager, Path]] = []
    for other in others:
        conflicts.extend((other, p) for p in other.fields & changed)
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for other in others:
        other.fields -= changed
        other.fields -= comparison.removed

    unchanged = live is not None and _equal(current, merged)
    time = previous.time if (unchanged and previous and previous.time) else now
    managers[me_key] = _Manager(manager, "Apply", api_version, time, subresource, applied_set)

    meta = merged.setdefault("metadata", {})
    entries = _encode_managers(managers.values())
    if entries:
        meta["managedFields"] = entries
    return merged


def _clean_applied(applied: Mapping[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(dict(applied))
    meta = config.get("metadata")
    if isinstance(meta, dict):
        config["metadata"] = {k: v for k, v in meta.items() if k not in _DROPPED_FROM_APPLY}
    return config


def _conflict_error(conflicts: list[tuple[_Manager, Path]]) -> ApplyConflict:
    ordered = sorted(conflicts, key=lambda c: (c[0].describe(), _path_order(c[1])))
    described = [(m.describe(), path_string(p)) for m, p in ordered]
    pairs = [(m.manager, path_string(p)) for m, p in ordered]
    descriptions = [who for who, _ in described]
    if len(described) == 1:
        who, where = described[0]
        message = f"Apply failed with 1 conflict: conflict with {who}: {where}"
        return ApplyConflict(message, pairs, descriptions=descriptions)
    lines: list[str] = []
    current = None
    for who, where in described:
        if who != current:
            lines.append(f"conflicts with {who}:")
            current = who
        lines.append(f"- {where}")
    message = f"Apply failed with {len(described)} conflicts: " + "\n".join(lines)
    return ApplyConflict(message, pairs, descriptions=descriptions)


# -------------------------------------------------------------------- merging


def _merge(lhs: Any, rhs: Any, schema: Schema) -> Any:
    """Merge an applied value into a live one (structured-merge-diff ``Merge``)."""
    if isinstance(lhs, dict) and isinstance(rhs, dict) and schema.map_type != "atomic":
        out = dict(lhs)
        for key, value in rhs.items():
            if value is None:
                # A typed object cannot hold null: the field ends up unset.
                out.pop(key, None)
            elif key in lhs:
                out[key] = _merge(lhs[key], value, schema.field(key) or ANY)
            else:
                out[key] = value
        return out
    if isinstance(lhs, list) and isinstance(rhs, list) and schema.list_type != "atomic":
        merged = _merge_list(lhs, rhs, schema)
        if merged is not None:
            return merged
    return rhs


def _merge_list(lhs: list[Any], rhs: list[Any], schema: Schema) -> list[Any] | None:
    left = _list_elements(lhs, schema, strict=False, path=())
    right = _list_elements(rhs, schema, strict=True, path=())
    if left is None or right is None:
        return None
    item_schema = schema.items()
    left_items = dict(left)
    right_items = dict(right)
    shared = [e for e, _ in right if e in left_items]
    shared_index = 0
    out: list[Any] = []
    done: set[str] = set()
    li = ri = 0
    # The applied order wins for the elements it names; live-only elements keep their
    # place relative to them (structured-merge-diff visitListItems).
    while li < len(left) or ri < len(right):
        if li < len(left) and ri < len(right):
            element = left[li][0]
            if element == right[ri][0]:
                out.append(_merge(left_items[element], right_items[element], item_schema))
                done.add(element)
                li += 1
                ri += 1
                if shared_index < len(shared) and shared[shared_index] == element:
                    shared_index += 1
                continue
            if (
                element in right_items
                and shared_index < len(shared)
                and shared[shared_index] != element
            ):
                li += 1
                continue
        if li < len(left):
            element = left[li][0]
            if element not in right_items:
                out.append(left[li][1])
                li += 1
                continue
            if element in done:
                li += 1
                continue
        if ri < len(right):
            element = right[ri][0]
            done.add(element)
            if element in left_items:
                out.append(_merge(left_items[element], right_items[element], item_schema))
            else:
                out.append(right_items[element])
            ri += 1
            if shared_index < len(shared) and shared[shared_index] == element:
                shared_index += 1
    return out


# -------------------------------------------------------------------- pruning


def _prefixes(paths: Iterable[Path]) -> set[Path]:
    out: set[Path] = set()
    for path in paths:
        for i in range(1, len(path)):
            out.add(path[:i])
    return out


def _prune(obj: dict[str, Any], paths: set[Path], owned: set[Path], schema: Schema) -> None:
    """Remove ``paths`` from ``obj`` in place, keeping anything somebody still owns."""
    if not paths:
        return
    keep = _prefixes(owned)
    for path in sorted(paths, key=len, reverse=True):
        if path in keep:
            continue
        _remove(obj, path, schema, owned)


def _steps(obj: Any, path: Path, schema: Schema) -> Iterator[tuple[Any, Any, Schema, str]]:
    """Walk ``path``: yields (container, key or index, schema of the container, element)."""
    current: Any = obj
    node = schema
    for element in path:
        prefix, _, rest = element.partition(":")
        if prefix == "f" and isinstance(current, dict) and rest in current:
            yield current, rest, node, element
            current, node = current[rest], node.field(rest) or ANY
        elif prefix in ("k", "v", "i") and isinstance(current, list):
            index = _find(current, prefix, rest, node)
            if index is None:
                return
            yield current, index, node, element
            current, node = current[index], node.items()
        else:
            return


def _find(items: list[Any], prefix: str, rest: str, schema: Schema) -> int | None:
    if prefix == "i":
        index = int(rest)
        return index if 0 <= index < len(items) else None
    wanted = json.loads(rest)
    for index, item in enumerate(items):
        if prefix == "v" and _equal(item, wanted):
            return index
        if prefix == "k" and isinstance(item, Mapping):
            if _key_element(item, schema.list_keys) == "k:" + _json(wanted):
                return index
    return None


def _remove(obj: dict[str, Any], path: Path, schema: Schema, owned: set[Path]) -> None:
    steps = list(_steps(obj, path, schema))
    if len(steps) != len(path):
        return
    container, key, _node, _ = steps[-1]
    if len(steps) >= 2 and isinstance(container, dict):
        parent_node = steps[-2][2]
        if steps[-2][3][0] == "k" and key in parent_node.list_keys:
            return  # the key of an element that stays
    del container[key]
    # A map or list emptied by the prune goes too (the server would not serialise
    # it), unless somebody owns it as such; top-level fields stay.
    for depth in range(len(steps) - 1, 1, -1):
        parent, parent_key, _, _ = steps[depth - 1]
        if parent[parent_key] or path[:depth] in owned:
            break
        del parent[parent_key]
