"""Patch semantics of the Kubernetes API server, and the schema knowledge they rest on.

The emulator accepts the four PATCH content types a real API server accepts; three of
them are implemented here as pure functions over plain JSON-like dicts:

* ``merge_patch`` — RFC 7386 JSON merge patch (``application/merge-patch+json``);
* ``json_patch`` — RFC 6902 JSON patch (``application/json-patch+json``), delegated
  to the ``jsonpatch`` library;
* ``strategic_merge_patch`` — Kubernetes strategic merge patch
  (``application/strategic-merge-patch+json``), the dialect ``kubectl apply``,
  ``kubectl label`` and friends send for built-in kinds.

Server-side apply lives in :mod:`federationd.sim.ssa`; it needs the same knowledge of
which lists are keyed by what. That knowledge is not a hand-written table: the
upstream OpenAPI definitions shipped by ``kubernetes-validate`` carry the
``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key`` extensions (what
strategic merge patch reads) and ``x-kubernetes-list-type`` /
``x-kubernetes-list-map-keys`` / ``x-kubernetes-map-type`` (what server-side apply
reads). :class:`Schema` is the one navigable view of those definitions, and of a
CRD's ``openAPIV3Schema``, used by this module, by :mod:`federationd.sim.ssa` and by
:mod:`federationd.sim.validate`. It lives here because strategic merge patch was its
first user; the other two import it from here.

Nothing in this module performs I/O apart from reading the packaged schema file once,
and nothing mutates its inputs: every function returns a fresh object.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from typing import Any, Final, Literal

import jsonpatch
import jsonpointer

from federationd.sim import versions

__all__ = [
    "KUBERNETES_VERSION",
    "MalformedPatch",
    "PatchError",
    "Schema",
    "builtin_schema",
    "json_patch",
    "merge_patch",
    "strategic_merge_patch",
    "supports_strategic",
]

#: The Kubernetes minor version whose upstream definitions the emulator speaks unless a
#: cluster is another release (:mod:`federationd.sim.versions`). It matches the kubectl
#: on the machine image (v1.32).
KUBERNETES_VERSION: Final = versions.DEFAULT_VERSION

ListType = Literal["atomic", "set", "map"]


class PatchError(Exception):
    """A patch that is well formed but cannot be applied (the server answers 422)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedPatch(PatchError):
    """A patch document the server cannot even interpret (the server answers 400)."""


# --------------------------------------------------------------------------- schema


def _definitions(release: str = KUBERNETES_VERSION) -> dict[str, Any]:
    return versions.definitions(release)


_SCALAR_TYPES: Final = frozenset({"string", "integer", "number", "boolean"})


class Schema:
    """A node of a structural schema: upstream definitions or a CRD's openAPIV3Schema.

    Children are resolved lazily and memoised, so recursive definitions (a CRD's own
    ``JSONSchemaProps``) cost nothing until visited, and a hot path such as
    validating the same kind again and again walks prebuilt nodes only.
    """

    __slots__ = (
        "_children",
        "_defs",
        "_items",
        "_values",
        "additional",
        "builtin",
        "embedded",
        "list_keys",
        "list_type",
        "map_type",
        "name",
        "nullable",
        "patch_merge_key",
        "patch_strategies",
        "preserve_unknown",
        "properties",
        "raw",
        "types",
    )

    raw: Mapping[str, Any]
    types: frozenset[str]
    nullable: bool
    properties: Mapping[str, Any]
    additional: Mapping[str, Any] | bool | None
    preserve_unknown: bool
    embedded: bool
    list_type: ListType
    list_keys: tuple[str, ...]
    patch_strategies: frozenset[str]
    patch_merge_key: str
    map_type: Literal["granular", "atomic"]
    builtin: bool
    #: the upstream definition this node refers to (``io.k8s.api.apps.v1.DeploymentSpec``)
    name: str

    def __init__(self, raw: Mapping[str, Any], *, defs: Mapping[str, Any] | None = None) -> None:
        self._defs = defs
        self.builtin = defs is not None
        ref = raw.get("$ref")
        self.name = ""
        if isinstance(ref, str) and defs is not None:
            self.name = ref.rsplit("/", 1)[-1]
            target = defs[self.name]
            raw = {**target, **{k: v for k, v in raw.items() if k != "$ref"}}
        self.raw = raw
        self._children: dict[str, Schema | None] = {}
        self._items: Schema | None = None
        self._values: Schema | None = None

        types: set[str] = set()
        nullable = bool(raw.get("nullable", False))
        declared = raw.get("type")
        for t in [declared] if isinstance(declared, str) else (declared or []):
            if t == "null":
                nullable = True
            else:
                types.add(t)
        for alt in raw.get("oneOf", ()) if not raw.get("properties") else ():
            # The upstream definitions spell int-or-string and Quantity as a oneOf of
            # scalar types; anything richer is not a structural schema.
            alt_types = alt.get("type")
            for t in [alt_types] if isinstance(alt_types, str) else (alt_types or []):
                if t == "null":
                    nullable = True
                else:
                    types.add(t)
        if raw.get("x-kubernetes-int-or-string"):
            types |= {"integer", "string"}
        self.types = frozenset(types)
        self.nullable = nullable
        self.properties = raw.get("properties") or {}
        additional = raw.get("additionalProperties")
        self.additional = additional if isinstance(additional, (dict, bool)) else None
        self.embedded = bool(raw.get("x-kubernetes-embedded-resource", False))
        # An upstream object without properties nor additionalProperties (RawExtension,
        # JSON, FieldsV1) holds arbitrary content; CRDs say so explicitly.
        self.preserve_unknown = bool(raw.get("x-kubernetes-preserve-unknown-fields")) or (
            self.builtin
            and not self.properties
            and self.additional is None
            and (not self.types or "object" in self.types)
            and not (self.types & _SCALAR_TYPES)
            and "array" not in self.types
        )

        strategies = raw.get("x-kubernetes-patch-strategy", "")
        self.patch_strategies = frozenset(s for s in strategies.split(",") if s)
        self.patch_merge_key = str(raw.get("x-kubernetes-patch-merge-key", ""))
        declared_list = raw.get("x-kubernetes-list-type")
        keys = tuple(raw.get("x-kubernetes-list-map-keys") or ())
        if declared_list in ("atomic", "set", "map"):
            self.list_type = declared_list
        elif "merge" in self.patch_strategies:
            # structured-merge-diff derives associativity from the patch strategy
            # when a built-in field predates x-kubernetes-list-type.
            self.list_type = "map" if self.patch_merge_key else "set"
        else:
            self.list_type = "atomic"
        if self.list_type == "map" and not keys and self.patch_merge_key:
            keys = (self.patch_merge_key,)
        self.list_keys = keys
        self.map_type = "atomic" if raw.get("x-kubernetes-map-type") == "atomic" else "granular"

    @classmethod
    def from_openapi(cls, raw: Mapping[str, Any]) -> Schema:
        """A CRD version's ``openAPIV3Schema``."""
        return cls(raw)

    def _make(self, raw: Mapping[str, Any]) -> Schema:
        return Schema(raw, defs=self._defs)

    @property
    def is_object(self) -> bool:
        return "object" in self.types or bool(self.properties)

    @property
    def is_array(self) -> bool:
        return "array" in self.types

    def field(self, name: str) -> Schema | None:
        """The schema of field or map key ``name``; None when the schema does not know it."""
        try:
            return self._children[name]
        except KeyError:
            pass
        child: Schema | None
        prop = self.properties.get(name)
        if prop is not None:
            child = self._make(prop)
        elif isinstance(self.additional, dict):
            child = self.values()
        elif self.preserve_unknown or self.additional is True:
            child = ANY
        else:
            child = None
        self._children[name] = child
        return child

    def values(self) -> Schema:
        """The schema of the values of a map (``additionalProperties``)."""
        if self._values is None:
            self._values = self._make(self.additional) if isinstance(self.additional, dict) else ANY
        return self._values

    def items(self) -> Schema:
        """The schema of the elements of a list."""
        if self._items is None:
            raw_items = self.raw.get("items")
            self._items = self._make(raw_items) if isinstance(raw_items, dict) else ANY
        return self._items

    def knows(self, name: str) -> bool:
        """Whether ``name`` is a declared field or an allowed map key."""
        return self.field(name) is not None


#: The schema that knows nothing: any value, maps granular, lists atomic.
ANY: Final = Schema({"x-kubernetes-preserve-unknown-fields": True})


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


@functools.cache
def builtin_schema(api_version: str, kind: str, release: str = KUBERNETES_VERSION) -> Schema | None:
    """The upstream schema of a built-in kind in a release (``1.14``), or None (CRs)."""
    group, version = _split_api_version(api_version)
    name = versions.gvk_index(release).get((group, version, kind))
    if name is None:
        return None
    return Schema({"$ref": "#/$defs/" + name}, defs=_definitions(release))


def supports_strategic(api_version: str, kind: str) -> bool:
    """Whether the server accepts strategic merge patch for this kind.

    Like the real server, only compiled-in kinds do; custom resources get 415.
    """
    return builtin_schema(api_version, kind) is not None


# ------------------------------------------------------------------ merge patch


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Apply an RFC 7386 JSON merge patch; null deletes, objects merge, all else replaces."""
    if not isinstance(patch, Mapping):
        raise MalformedPatch("a merge patch must be a JSON object")
    return _merge_object(target if isinstance(target, Mapping) else {}, patch)


def _merge_object(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(target))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            current = result.get(key)
            result[key] = _merge_object(current if isinstance(current, Mapping) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


# ------------------------------------------------------------------- JSON patch


def json_patch(target: Mapping[str, Any], ops: list[Any]) -> dict[str, Any]:
    """Apply an RFC 6902 JSON patch (a list of operations) to a copy of ``target``."""
    if not isinstance(ops, list):
        raise MalformedPatch("a JSON patch must be a JSON array of operations")
    for op in ops:
        if not isinstance(op, Mapping) or "op" not in op:
            raise MalformedPatch(f"invalid JSON patch operation: {json.dumps(op)}")
    try:
        patch = jsonpatch.JsonPatch(ops)
        result = patch.apply(copy.deepcopy(dict(target)), in_place=True)
    except jsonpatch.InvalidJsonPatch as exc:
        raise MalformedPatch(str(exc)) from exc
    except (
        jsonpatch.JsonPatchException,
        jsonpointer.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
    ) as exc:
        raise PatchError(str(exc) or type(exc).__name__) from exc
    if not isinstance(result, dict):
        raise PatchError("the JSON patch replaced the object with a non-object value")
    return result


# ------------------------------------------------------- strategic merge patch

_DIRECTIVE: Final = "$patch"
_RETAIN_KEYS: Final = "$retainKeys"
_SET_ORDER: Final = "$setElementOrder/"
_DELETE_PRIMITIVES: Final = "$deleteFromPrimitiveList/"


def strategic_merge_patch(
    target: Mapping[str, Any],
    patch: Mapping[str, Any],
    *,
    api_version: str,
    kind: str,
    schema: Schema | None = None,
) -> dict[str, Any]:
    """Apply a Kubernetes strategic merge patch to a copy of ``target``.

    Lists whose upstream field declares ``patchStrategy=merge`` merge element-wise
    by their ``patchMergeKey`` (primitive lists merge as sets); every other list is
    replaced. Understands the directives ``$patch`` (merge/replace/delete, in maps and
    as list elements), ``$retainKeys``, ``$setElementOrder/<field>`` and
    ``$deleteFromPrimitiveList/<field>``; null deletes a key. ``schema`` overrides
    the built-in lookup; without either, only directives and null differ from a
    JSON merge patch.
    """
    if not isinstance(patch, Mapping):
        raise MalformedPatch("a strategic merge patch must be a JSON object")
    node = schema or builtin_schema(api_version, kind) or ANY
    return _smp_map(copy.deepcopy(dict(target)), patch, node)


def _smp_map(original: dict[str, Any], patch: Mapping[str, Any], node: Schema) -> dict[str, Any]:
    """Merge ``patch`` into ``original`` (owned by the caller, mutated and returned)."""
    directive = patch.get(_DIRECTIVE)
    if directive is not None:
        if directive == "replace":
            return _strip(patch, node)
        if directive == "delete":
            return {}
        if directive != "merge":
            raise MalformedPatch(f"unknown patch type: {directive} in map: {json.dumps(patch)}")

    retain = patch.get(_RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list):
            raise MalformedPatch("invalid patch: $retainKeys must be a list")
        allowed = set(retain)
        for key, value in patch.items():
            if key.startswith("$") or value is None:
                continue
            if key not in allowed:
                raise PatchError(
                    f"doesn't match the retainKeys list: field {key} is not in {retain}"
                )
        for key in [k for k in original if k not in allowed]:
            del original[key]

    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith(_SET_ORDER):
            if not isinstance(value, list):
                raise MalformedPatch(f"invalid patch: {key} must be a list")
            orders[key[len(_SET_ORDER) :]] = value
        elif key.startswith(_DELETE_PRIMITIVES):
            if not isinstance(value, list):
                raise MalformedPatch(f"invalid patch: {key} must be a list")
            field = key[len(_DELETE_PRIMITIVES) :]
            current = original.get(field)
            if isinstance(current, list):
                original[field] = [v for v in current if v not in value]

    for key, value in patch.items():
        if key.startswith("$"):
            continue
        child = node.field(key) or ANY
        if value is None:
            original.pop(key, None)
            continue
        current = original.get(key)
        if isinstance(value, Mapping):
            if "replace" in child.patch_strategies:
                original[key] = _strip(value, child)
            else:
                base = current if isinstance(current, dict) else {}
                original[key] = _smp_map(base, value, child)
        elif isinstance(value, list):
            if "merge" in child.patch_strategies:
                base_list = current if isinstance(current, list) else []
                original[key] = _smp_list(base_list, value, child, order=orders.get(key))
            else:
                original[key] = [_strip_value(v, child.items()) for v in value]
        else:
            original[key] = value

    # An order may arrive without its list when only the order changed.
    for key, order in orders.items():
        if key in patch:
            continue
        current = original.get(key)
        child = node.field(key) or ANY
        if isinstance(current, list) and "merge" in child.patch_strategies:
            original[key] = _apply_order(current, order, current, child.patch_merge_key)
    return original


def _strip(patch: Mapping[str, Any], node: Schema) -> dict[str, Any]:
    """A patch value taken whole: drop directives and nulls, as the server does."""
    return _smp_map({}, {k: v for k, v in patch.items() if k != _DIRECTIVE}, node)


def _strip_value(value: Any, node: Schema) -> Any:
    if isinstance(value, Mapping):
        return _strip(value, node)
    return copy.deepcopy(value)


def _smp_list(
    original: list[Any], patch: list[Any], node: Schema, *, order: list[Any] | None
) -> list[Any]:
    key = node.patch_merge_key
    item_node = node.items()
    if not key:
        if any(isinstance(v, (Mapping, list)) for v in patch):
            raise PatchError("cannot merge lists without merge key")
        merged = list(original)
        for value in patch:
            if value not in merged:
                merged.append(value)
        return _apply_order(merged, order if order is not None else patch, original, "")

    plain: list[Mapping[str, Any]] = []
    replace = False
    for item in patch:
        if not isinstance(item, Mapping):
            raise MalformedPatch(
                f"invalid patch: list elements of a keyed list must be objects: {json.dumps(item)}"
            )
        directive = item.get(_DIRECTIVE)
        if directive is None:
            plain.append(item)
        elif directive == "delete":
            if key not in item:
                raise MalformedPatch(
                    f"map: {_go_map(item)} does not contain declared merge key: {key}"
                )
            original = [o for o in original if not _same_key(o, item, key)]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise MalformedPatch("merging lists cannot yet be specified in the patch")
        else:
            raise MalformedPatch(f"unknown patch type: {directive} in map: {_go_map(item)}")
    if replace:
        return [_strip(item, item_node) for item in plain]

    merged = list(original)
    for item in plain:
        if key not in item:
            raise MalformedPatch(f"map: {_go_map(item)} does not contain declared merge key: {key}")
        for index, existing in enumerate(merged):
            if _same_key(existing, item, key):
                merged[index] = _smp_map(dict(existing), item, item_node)
                break
        else:
            merged.append(_strip(item, item_node))
    return _apply_order(merged, order if order is not None else plain, original, key)


def _same_key(existing: Any, item: Mapping[str, Any], key: str) -> bool:
    return isinstance(existing, Mapping) and key in existing and existing[key] == item[key]


def _identity(value: Any, key: str) -> Any:
    if key:
        return json.dumps(value.get(key), sort_keys=True) if isinstance(value, Mapping) else None
    return json.dumps(value, sort_keys=True)


def _apply_order(merged: list[Any], order: list[Any], server: list[Any], key: str) -> list[Any]:
    """Order a merged list the way apimachinery's normalizeElementOrder does.

    Elements named by ``order`` (the patch list, or ``$setElementOrder``) come in
    that order; the others keep their relative order from the live list and are
    interleaved by their live position.
    """
    order_index = {_identity(v, key): i for i, v in enumerate(order)}
    server_index = {_identity(v, key): i for i, v in enumerate(server)}
    in_patch = sorted(
        (v for v in merged if _identity(v, key) in order_index),
        key=lambda v: order_index[_identity(v, key)],
    )
    server_only = sorted(
        (v for v in merged if _identity(v, key) not in order_index),
        key=lambda v: server_index.get(_identity(v, key), len(server)),
    )
    result: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(in_patch):
        if i >= len(server_only):
            result.append(in_patch[j])
            j += 1
        elif j >= len(in_patch):
            result.append(server_only[i])
            i += 1
        else:
            left = server_index.get(_identity(server_only[i], key), -1)
            right = server_index.get(_identity(in_patch[j], key), -1)
            if left >= 0 and right >= 0 and left < right:
                result.append(server_only[i])
                i += 1
            else:
                result.append(in_patch[j])
                j += 1
    return result


def _go_map(value: Mapping[str, Any]) -> str:
    """Render a map the way Go's %v does, as the server's messages show it."""
    return "map[" + " ".join(f"{k}:{_go_value(v)}" for k, v in sorted(value.items())) + "]"


def _go_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return _go_map(value)
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
