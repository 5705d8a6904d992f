"""Admission checks of the simulated API server: schemas, names, defaults and pruning.

Real clients judge the emulator by its refusals as much as by its answers, so this
module reproduces what the API server says, word for word where it matters:

* built-in kinds are checked against the upstream definitions of the cluster's
  Kubernetes release (:mod:`federationd.sim.versions`; by default
  :data:`federationd.sim.patch.KUBERNETES_VERSION`), the same definitions strategic
  merge patch and server-side apply read through the one
  :class:`~federationd.sim.patch.Schema` view. The real server decodes built-ins
  into Go structs, so an unknown field is dropped (``fieldValidation=Ignore``),
  reported as a warning (``Warn``) or refused as a strict decoding error (``Strict``),
  and a mistyped field is a decoding error — :class:`FieldError` carries both the
  422-style message and the Go decoder's wording so the server can answer either way;
* custom resources are checked against their CRD's structural ``openAPIV3Schema``
  with the messages of the apiextensions validator (``spec.replicas in body must be
  of type integer: "string"``), defaulted and pruned like the real server does;
* object names follow the DNS-1123 / DNS-1035 / path-segment rules per kind.

Walking prebuilt, memoised schema nodes instead of running a generic JSON-schema
validator keeps a typical object well under a millisecond, which matters because
every write of every benchmark goes through here.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from federationd.sim.patch import KUBERNETES_VERSION, Schema, builtin_schema

__all__ = [
    "KUBERNETES_VERSION",
    "FieldError",
    "apply_defaults",
    "compiled_schema",
    "decoding_message",
    "invalid_message",
    "name_errors",
    "prune",
    "prune_builtin",
    "strict_decoding_message",
    "unknown_fields",
    "validate_builtin",
    "validate_custom",
    "validate_metadata",
    "validate_name",
]

REQUIRED: Final = "FieldValueRequired"
INVALID: Final = "FieldValueInvalid"
NOT_SUPPORTED: Final = "FieldValueNotSupported"
TYPE_INVALID: Final = "FieldValueTypeInvalid"
UNKNOWN: Final = "FieldValueUnknown"
DUPLICATE: Final = "FieldValueDuplicate"
TOO_LONG: Final = "FieldValueTooLong"
TOO_MANY: Final = "FieldValueTooMany"


# ------------------------------------------------------------------ field errors


@dataclass(frozen=True, slots=True)
class FieldError:
    """One ``field.Error`` of the API server.

    ``message`` is the error body exactly as a Status cause carries it
    (``Invalid value: "x": must be ...``); ``str()`` gives ``<path>: <message>`` as
    the aggregated Status message shows it. ``decoding`` is set for built-in type
    errors: the Go JSON decoder's text, which the real server answers with a 400.
    """

    path: str
    reason: str
    message: str
    decoding: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def cause(self) -> dict[str, str]:
        """The ``details.causes`` entry of a 422 Status."""
        return {"reason": self.reason, "message": self.message, "field": self.path}

    # The constructors mirror k8s.io/apimachinery/pkg/util/validation/field.

    @classmethod
    def required(cls, path: str, detail: str = "") -> FieldError:
        return cls(path, REQUIRED, _body("Required value", None, detail, with_value=False))

    @classmethod
    def invalid(cls, path: str, value: Any, detail: str) -> FieldError:
        return cls(path, INVALID, _body("Invalid value", value, detail))

    @classmethod
    def type_invalid(cls, path: str, value: Any, detail: str, *, decoding: str = "") -> FieldError:
        return cls(path, TYPE_INVALID, _body("Invalid value", value, detail), decoding)

    @classmethod
    def not_supported(cls, path: str, value: Any, supported: Iterable[Any]) -> FieldError:
        quoted = ", ".join(_go_quote(str(v) if not isinstance(v, str) else v) for v in supported)
        return cls(
            path, NOT_SUPPORTED, _body("Unsupported value", value, f"supported values: {quoted}")
        )

    @classmethod
    def duplicate(cls, path: str, value: Any) -> FieldError:
        if isinstance(value, Mapping):
            # a list-type map's key, a map[string]interface{} that Go prints with %#v
            return cls(path, DUPLICATE, f"Duplicate value: {_go_map(value)}")
        return cls(path, DUPLICATE, _body("Duplicate value", value, ""))

    @classmethod
    def too_long(cls, path: str, max_length: int) -> FieldError:
        unit = "byte" if max_length == 1 else "bytes"
        detail = f"may not be more than {max_length} {unit}"
        return cls(path, TOO_LONG, _body("Too long", None, detail, with_value=False))

    @classmethod
    def too_many(cls, path: str, actual: int, maximum: int) -> FieldError:
        return cls(path, TOO_MANY, _body("Too many", actual, f"must have at most {maximum} items"))

    @classmethod
    def unknown(cls, path: str) -> FieldError:
        return cls(path, UNKNOWN, f'unknown field "{path}"')


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _go_map(value: Mapping[str, Any]) -> str:
    """Go's ``%#v`` of a ``map[string]interface{}`` of scalars (keys sorted, as fmt does)."""

    def item(v: Any) -> str:
        if v is None:
            return "interface {}(nil)"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return f"{v}"
        if isinstance(v, float):
            return repr(v)
        if isinstance(v, str):
            return _go_quote(v)
        return json.dumps(v, separators=(",", ":"), sort_keys=True)

    inner = ", ".join(f"{_go_quote(str(k))}:{item(v)}" for k, v in sorted(value.items()))
    return "map[string]interface {}{" + inner + "}"


def _go_value(value: Any) -> str:
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return _go_quote(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _body(kind: str, value: Any, detail: str, *, with_value: bool = True) -> str:
    text = f"{kind}: {_go_value(value)}" if with_value else kind
    return f"{text}: {detail}" if detail else text


def invalid_message(kind: str, group: str, name: str, errors: Sequence[FieldError]) -> str:
    """The message of a 422 Invalid Status: ``Deployment.apps "x" is invalid: ...``."""
    qualified = f"{kind}.{group}" if group else kind
    head = f"{qualified} {_go_quote(name)} is invalid"
    texts: list[str] = []
    for error in errors:
        text = str(error)
        if text not in texts:
            texts.append(text)
    if not texts:
        return head
    if len(texts) == 1:
        return f"{head}: {texts[0]}"
    return f"{head}: [{', '.join(texts)}]"


def decoding_message(kind: str, version: str, detail: str) -> str:
    """The message of a 400 for a body the server cannot decode into ``kind``."""
    return f'{kind} in version "{version}" cannot be handled as a {kind}: {detail}'


def strict_decoding_message(kind: str, version: str, errors: Sequence[FieldError]) -> str:
    """The 400 of ``fieldValidation=Strict``: ``strict decoding error: unknown field "spec.foo"``."""
    fields = ", ".join(e.message for e in errors)
    return decoding_message(kind, version, f"strict decoding error: {fields}")


# ------------------------------------------------------------------ JSON types


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(actual: str, allowed: frozenset[str], value: Any, *, lenient_floats: bool) -> bool:
    if actual in allowed:
        return True
    if actual == "integer" and "number" in allowed:
        return True
    # go-openapi takes 1.0 for an integer; Go's decoder into int32 does not.
    return (
        lenient_floats and actual == "number" and "integer" in allowed and float(value).is_integer()
    )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ------------------------------------------------------------------ built-ins

#: ``required`` upstream marks fields Go never omits; the server enforces most of them
#: in its validation, but not these (status is the kubelet's and controllers').
_NOT_ENFORCED: Final[Mapping[str, frozenset[str]]] = {
    "io.k8s.api.apps.v1.StatefulSetSpec": frozenset({"serviceName"}),
}

_GO_JSON_TYPES: Final = {
    "string": "string",
    "integer": "number",
    "number": "number",
    "boolean": "bool",
    "array": "array",
    "object": "object",
}


def _go_type(node: Schema) -> str:
    if node.name:
        short = node.name.rsplit(".", 2)
        if node.name.endswith("IntOrString"):
            return "intstr.IntOrString"
        if node.name.endswith("Quantity"):
            return "resource.Quantity"
        return f"{short[-2]}.{short[-1]}" if len(short) == 3 else node.name
    if node.is_array:
        return "[]" + _go_type(node.items())
    if isinstance(node.additional, Mapping):
        return "map[string]" + _go_type(node.values())
    fmt = node.raw.get("format")
    if "integer" in node.types:
        return str(fmt) if fmt in ("int32", "int64") else "int"
    if "number" in node.types:
        return "float64"
    if "boolean" in node.types:
        return "bool"
    if "string" in node.types:
        return "string"
    return "interface {}"


@dataclass(slots=True)
class _BuiltinWalk:
    errors: list[FieldError] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def validate_builtin(
    obj: Mapping[str, Any], *, field_validation: str = "Strict", release: str = KUBERNETES_VERSION
) -> tuple[list[FieldError], list[str]]:
    """Check a built-in object against its upstream schema: ``(errors, warnings)``.

    Unknown fields are errors (``FieldValueUnknown``) under ``Strict``, warning
    texts (``unknown field "spec.foo"``) under ``Warn`` and nothing under ``Ignore``;
    :func:`prune_builtin` drops them. A kind without an upstream schema passes.
    ``release`` (``1.14``) picks the Kubernetes release whose schemas apply.
    """
    schema = builtin_schema(str(obj.get("apiVersion", "")), str(obj.get("kind", "")), release)
    if schema is None:
        return [], []
    walk = _BuiltinWalk()
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        child = schema.properties.get(key)
        if child is None:
            walk.unknown.append(key)
            continue
        _check_builtin(value, schema.field(key) or schema, key, walk, schema.name, key)
    errors = walk.errors
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        errors.extend(validate_metadata(meta))
    warnings: list[str] = []
    if field_validation == "Strict":
        errors = errors + [FieldError.unknown(p) for p in walk.unknown]
    elif field_validation == "Warn":
        warnings = [f'unknown field "{p}"' for p in walk.unknown]
    return errors, warnings


def _check_builtin(
    value: Any, node: Schema, path: str, walk: _BuiltinWalk, struct: str, go_path: str
) -> None:
    if value is None:
        return  # Go decodes null to the zero value
    actual = _json_type(value)
    if node.types and not _type_ok(actual, node.types, value, lenient_floats=False):
        expected = ",".join(sorted(node.types))
        go_value = _GO_JSON_TYPES[actual]
        if actual == "number" or (actual == "integer" and "integer" not in node.types):
            go_value = f"number {value}" if actual == "number" else "number"
        decoding = (
            f"json: cannot unmarshal {go_value} into Go struct field "
            f"{struct.rsplit('.', 1)[-1]}.{go_path} of type {_go_type(node)}"
        )
        walk.errors.append(
            FieldError.type_invalid(
                path,
                actual,
                f"{path} in body must be of type {expected}: {_go_quote(actual)}",
                decoding=decoding,
            )
        )
        return
    if isinstance(value, dict):
        if (
            node.preserve_unknown
            and not node.properties
            and not isinstance(node.additional, Mapping)
        ):
            return  # RawExtension and friends hold anything
        if node.properties:
            for key, item in value.items():
                if key in node.properties:
                    child = node.field(key)
                    assert child is not None
                    _check_builtin(
                        item, child, f"{path}.{key}", walk, node.name, f"{go_path}.{key}"
                    )
                elif isinstance(node.additional, Mapping):
                    _check_builtin(item, node.values(), f"{path}.{key}", walk, struct, go_path)
                else:
                    walk.unknown.append(f"{path}.{key}")
            required = node.raw.get("required")
            if required and path != "status" and not path.startswith("status."):
                exempt = _NOT_ENFORCED.get(node.name, frozenset())
                for key in required:
                    if value.get(key) is None and key not in exempt:
                        walk.errors.append(FieldError.required(f"{path}.{key}"))
        elif isinstance(node.additional, Mapping):
            values = node.values()
            for key, item in value.items():
                _check_builtin(item, values, f"{path}.{key}", walk, struct, go_path)
        return
    if isinstance(value, list):
        items = node.items()
        for index, item in enumerate(value):
            _check_builtin(item, items, f"{path}[{index}]", walk, struct, go_path)
        return
    enum = node.raw.get("enum")
    if enum and value != "" and value not in enum:
        walk.errors.append(FieldError.not_supported(path, value, enum))


def prune_builtin(obj: Mapping[str, Any], *, release: str = KUBERNETES_VERSION) -> dict[str, Any]:
    """``obj`` without the fields its upstream schema does not know.

    The real server decodes built-ins into Go structs, which silently loses unknown
    fields whatever ``fieldValidation`` says.
    """
    schema = builtin_schema(str(obj.get("apiVersion", "")), str(obj.get("kind", "")), release)
    if schema is None:
        return copy.deepcopy(dict(obj))
    result: dict[str, Any] = _prune_value(obj, schema, builtin=True, root=True)
    return result


# ------------------------------------------------------------- custom resources

_COMPILED: dict[int, tuple[Mapping[str, Any], Schema]] = {}
_COMPILED_LIMIT: Final = 512


def compiled_schema(schema: Mapping[str, Any] | Schema) -> Schema:
    """The node view of a CRD schema, memoised per schema object."""
    return _compiled(schema)


def _compiled(schema: Mapping[str, Any] | Schema) -> Schema:
    if isinstance(schema, Schema):
        return schema
    hit = _COMPILED.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    if len(_COMPILED) >= _COMPILED_LIMIT:
        _COMPILED.clear()
    node = Schema.from_openapi(schema)
    _COMPILED[id(schema)] = (schema, node)
    return node


def validate_custom(
    obj: Mapping[str, Any], *, schema: Mapping[str, Any] | Schema
) -> list[FieldError]:
    """Check a custom resource against its CRD version's ``openAPIV3Schema``."""
    node = _compiled(schema)
    errors: list[FieldError] = []
    for key, value in obj.items():
        if key == "metadata" and isinstance(value, Mapping):
            # name and generateName are the metadata a CRD schema may restrict
            meta_node = node.field(key) if key in node.properties else None
            for sub in ("name", "generateName"):
                if meta_node is not None and sub in meta_node.properties and sub in value:
                    child = meta_node.field(sub)
                    assert child is not None
                    _check_custom(value[sub], child, f"metadata.{sub}", errors)
            continue
        if key in ("apiVersion", "kind"):
            continue
        child = node.properties.get(key)
        if child is None:
            continue  # unknown fields are pruned, not refused
        _check_custom(value, node.field(key) or node, key, errors)
    for key in node.raw.get("required") or ():
        if key not in ("apiVersion", "kind", "metadata") and obj.get(key) is None:
            errors.append(FieldError.required(key))
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        errors.extend(validate_metadata(meta))
    return errors


def _check_custom(value: Any, node: Schema, path: str, errors: list[FieldError]) -> None:
    actual = _json_type(value)
    if value is None:
        if node.nullable or (not node.types and node.preserve_unknown):
            return
        if not node.types:
            return
    if node.types and not _type_ok(actual, node.types, value, lenient_floats=True):
        expected = ",".join(_type_order(node.types))
        errors.append(
            FieldError.type_invalid(
                path, actual, f"{path} in body must be of type {expected}: {_go_quote(actual)}"
            )
        )
        return
    if value is None:
        return
    raw = node.raw
    enum = raw.get("enum")
    if enum is not None and not any(_same(value, e) for e in enum):
        errors.append(FieldError.not_supported(path, value, enum))
    if isinstance(value, dict):
        for key, item in value.items():
            if key in node.properties:
                child = node.field(key)
                assert child is not None
                _check_custom(item, child, f"{path}.{key}", errors)
            elif isinstance(node.additional, Mapping):
                _check_custom(item, node.values(), f"{path}.{key}", errors)
        for key in raw.get("required") or ():
            if key not in value:
                errors.append(FieldError.required(f"{path}.{key}"))
        _check_size(len(value), raw, "Properties", path, value, errors)
        return
    if isinstance(value, list):
        _check_list(value, node, path, errors)
        return
    if isinstance(value, str):
        pattern = raw.get("pattern")
        if isinstance(pattern, str) and _regex(pattern).search(value) is None:
            errors.append(
                FieldError.invalid(path, value, f"{path} in body should match '{pattern}'")
            )
        length = len(value)
        min_length = raw.get("minLength")
        if isinstance(min_length, int) and length < min_length:
            errors.append(
                FieldError.invalid(
                    path, value, f"{path} in body should be at least {min_length} chars long"
                )
            )
        max_length = raw.get("maxLength")
        if isinstance(max_length, int) and length > max_length:
            errors.append(FieldError.too_long(path, max_length))
        fmt = raw.get("format")
        check = _FORMATS.get(str(fmt).replace("-", "").replace("_", "").lower()) if fmt else None
        if check is not None and not check(value):
            errors.append(
                FieldError.type_invalid(
                    path, value, f"{path} in body must be of type {fmt}: {_go_quote(value)}"
                )
            )
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_bounds(value, raw, path, errors)


def _type_order(types: frozenset[str]) -> list[str]:
    order = ["integer", "number", "string", "boolean", "array", "object"]
    return [t for t in order if t in types]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _check_bounds(
    value: float, raw: Mapping[str, Any], path: str, errors: list[FieldError]
) -> None:
    minimum = raw.get("minimum")
    if isinstance(minimum, (int, float)):
        if raw.get("exclusiveMinimum") is True and value <= minimum:
            errors.append(
                FieldError.invalid(path, value, f"{path} in body should be greater than {minimum}")
            )
        elif value < minimum:
            errors.append(
                FieldError.invalid(
                    path, value, f"{path} in body should be greater than or equal to {minimum}"
                )
            )
    maximum = raw.get("maximum")
    if isinstance(maximum, (int, float)):
        if raw.get("exclusiveMaximum") is True and value >= maximum:
            errors.append(
                FieldError.invalid(path, value, f"{path} in body should be less than {maximum}")
            )
        elif value > maximum:
            errors.append(
                FieldError.invalid(
                    path, value, f"{path} in body should be less than or equal to {maximum}"
                )
            )


def _check_size(
    size: int, raw: Mapping[str, Any], what: str, path: str, value: Any, errors: list[FieldError]
) -> None:
    minimum = raw.get(f"min{what}")
    if isinstance(minimum, int) and size < minimum:
        noun = "items" if what == "Items" else "properties"
        errors.append(
            FieldError.invalid(path, value, f"{path} in body should have at least {minimum} {noun}")
        )
    maximum = raw.get(f"max{what}")
    if isinstance(maximum, int) and size > maximum:
        if what == "Items":
            errors.append(FieldError.too_many(path, size, maximum))
        else:
            errors.append(
                FieldError.invalid(
                    path, value, f"{path} in body should have at most {maximum} properties"
                )
            )


def _check_list(value: list[Any], node: Schema, path: str, errors: list[FieldError]) -> None:
    _check_size(len(value), node.raw, "Items", path, value, errors)
    items = node.items()
    for index, item in enumerate(value):
        _check_custom(item, items, f"{path}[{index}]", errors)
    list_type = node.raw.get("x-kubernetes-list-type")
    # Each value that repeats is reported once, at its second appearance (upstream's
    # validateListSet); a list-type map's duplicate carries only the key fields present.
    if list_type == "set":
        seen: list[Any] = []
        reported: list[Any] = []
        for index, item in enumerate(value):
            if any(_same(item, s) for s in seen):
                if not any(_same(item, r) for r in reported):
                    errors.append(FieldError.duplicate(f"{path}[{index}]", item))
                    reported.append(item)
            else:
                seen.append(item)
    elif list_type == "map":
        keys = tuple(node.raw.get("x-kubernetes-list-map-keys") or ())
        counts: dict[str, int] = {}
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                continue
            present = {k: item[k] for k in keys if k in item}
            key = json.dumps(present, sort_keys=True)
            counts[key] = counts.get(key, 0) + 1
            if counts[key] == 2:
                errors.append(FieldError.duplicate(f"{path}[{index}]", present))


def _ip(text: str) -> bool:
    # Go's net.ParseIP: no zone, no leading zeros in IPv4 octets (Python agrees on those)
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _cidr(text: str) -> bool:
    # Go's net.ParseCIDR: an address (host bits allowed) and a prefix length
    address, sep, prefix = text.partition("/")
    if not sep or not prefix.isdigit() or (len(prefix) > 1 and prefix[0] == "0"):
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return int(prefix) <= (32 if ip.version == 4 else 128)


def _base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _date(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


_DATETIME: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$"
)
_UUID: Final = {
    "uuid": re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I),
    "uuid3": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-3[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I),
    "uuid4": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I),
    "uuid5": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I),
}
_MAC: Final = re.compile(
    r"^([0-9a-f]{2}([:-])[0-9a-f]{2}(\2[0-9a-f]{2}){4,18}|[0-9a-f]{4}(\.[0-9a-f]{4}){2,9})$", re.I
)

def _regex_matches(regex: re.Pattern[str]) -> Callable[[str], bool]:
    """A format check that is one regular expression."""
    return lambda value: regex.match(value) is not None


#: The formats a CRD schema's ``format`` is checked against (kube-openapi's ``strfmt``
#: registry, names normalised as it does). The others an API server knows (hostname,
#: email, uri, duration, isbn, creditcard, ssn) are not checked here, nor are unknown
#: formats, which the server ignores too.
_FORMATS: Final[Mapping[str, Callable[[str], bool]]] = {
    # strfmt: an IP Go parses, with a "." (IPv4) or a ":" (IPv6) in it
    "ipv4": lambda v: "." in v and _ip(v),
    "ipv6": lambda v: ":" in v and _ip(v),
    "cidr": _cidr,
    "byte": _base64,
    "date": _date,
    "datetime": lambda v: bool(_DATETIME.match(v)),
    "mac": lambda v: bool(_MAC.match(v)),
    "bsonobjectid": lambda v: bool(re.fullmatch(r"[0-9a-fA-F]{24}", v)),
    "hexcolor": lambda v: bool(re.fullmatch(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})", v)),
    "rgbcolor": lambda v: bool(re.fullmatch(
        r"rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,"
        r"\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)", v)),
    **{name: _regex_matches(regex) for name, regex in _UUID.items()},
}


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        try:
            compiled = re.compile(pattern)
        except re.error:
            # A pattern Python cannot read (RE2 and ECMA dialects differ at the
            # edges) matches everything rather than refusing valid objects.
            compiled = re.compile("")
        _REGEX_CACHE[pattern] = compiled
    return compiled


# ------------------------------------------------------- defaulting and pruning


def apply_defaults(obj: Mapping[str, Any], *, schema: Mapping[str, Any] | Schema) -> dict[str, Any]:
    """``obj`` with the schema's ``default`` values filled in (structural defaulting).

    Missing fields, and null fields that may not be null, get their default; defaults
    are themselves defaulted further down. ``apiVersion``, ``kind`` and ``metadata``
    are left alone.
    """
    node = _compiled(schema)
    result = copy.deepcopy(dict(obj))
    _default_object(result, node, root=True)
    return result


def _default_object(value: dict[str, Any], node: Schema, *, root: bool = False) -> None:
    for key, raw in node.properties.items():
        if root and key in ("apiVersion", "kind", "metadata"):
            continue
        if "default" not in raw:
            continue
        current = value.get(key, _MISSING)
        child = node.field(key)
        if current is _MISSING or (current is None and child is not None and not child.nullable):
            value[key] = copy.deepcopy(raw["default"])
    for key, item in value.items():
        if root and key in ("apiVersion", "kind", "metadata"):
            continue
        child = node.field(key) if key in node.properties else None
        if child is None and isinstance(node.additional, Mapping):
            child = node.values()
        if child is not None:
            _default_value(item, child)


def _default_value(value: Any, node: Schema) -> None:
    if isinstance(value, dict):
        _default_object(value, node)
    elif isinstance(value, list):
        items = node.items()
        for item in value:
            _default_value(item, items)


_MISSING: Final = object()


def prune(obj: Mapping[str, Any], *, schema: Mapping[str, Any] | Schema) -> dict[str, Any]:
    """``obj`` without the fields its structural schema does not specify.

    ``x-kubernetes-preserve-unknown-fields`` keeps a subtree as it is;
    ``apiVersion``, ``kind`` and ``metadata`` are always kept at the root, and in
    ``x-kubernetes-embedded-resource`` objects.
    """
    result: dict[str, Any] = _prune_value(obj, _compiled(schema), builtin=False, root=True)
    return result


def unknown_fields(obj: Mapping[str, Any], *, schema: Mapping[str, Any] | Schema) -> list[str]:
    """The paths :func:`prune` drops, in document order (``spec.foo``, ``spec.l[0].x``).

    What ``fieldValidation=Strict`` refuses and ``Warn`` warns about for a custom
    resource, as ``unknown field "<path>"``.
    """
    dropped: list[str] = []
    _prune_value(obj, _compiled(schema), builtin=False, root=True, dropped=dropped)
    return dropped


def _prune_value(
    value: Any,
    node: Schema,
    *,
    builtin: bool,
    root: bool = False,
    path: str = "",
    dropped: list[str] | None = None,
) -> Any:
    if isinstance(value, dict):
        if (
            node.preserve_unknown
            and not node.properties
            and not isinstance(node.additional, Mapping)
        ):
            return copy.deepcopy(value)
        out: dict[str, Any] = {}
        for key, item in value.items():
            here = _join(path, key)
            if key in node.properties:
                child = node.field(key)
                assert child is not None
                if root and key == "metadata" and not builtin:
                    out[key] = copy.deepcopy(item)
                else:
                    out[key] = _prune_value(
                        item, child, builtin=builtin, path=here, dropped=dropped
                    )
            elif isinstance(node.additional, Mapping):
                out[key] = _prune_value(
                    item, node.values(), builtin=builtin, path=here, dropped=dropped
                )
            elif (
                node.preserve_unknown
                or node.additional is True
                or ((root or node.embedded) and key in ("apiVersion", "kind", "metadata"))
            ):
                out[key] = copy.deepcopy(item)
            elif not builtin and not node.properties and node.additional is None and not node.types:
                # A schema that says nothing about the value keeps it.
                out[key] = copy.deepcopy(item)
            elif dropped is not None:
                dropped.append(here)
        return out
    if isinstance(value, list):
        items = node.items()
        return [
            _prune_value(item, items, builtin=builtin, path=f"{path}[{i}]", dropped=dropped)
            for i, item in enumerate(value)
        ]
    return copy.deepcopy(value)


# ------------------------------------------------------------------------ names

_DNS1123_LABEL: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN: Final = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_DNS1035_LABEL: Final = "[a-z]([-a-z0-9]*[a-z0-9])?"
_LABEL_RE: Final = re.compile(f"^{_DNS1123_LABEL}$")
_SUBDOMAIN_RE: Final = re.compile(f"^{_DNS1123_SUBDOMAIN}$")
_DNS1035_RE: Final = re.compile(f"^{_DNS1035_LABEL}$")

_SUBDOMAIN_MESSAGE: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. "
    f"'example.com', regex used for validation is '{_DNS1123_SUBDOMAIN}')"
)
_LABEL_MESSAGE: Final = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
    "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
    f"'123-abc', regex used for validation is '{_DNS1123_LABEL}')"
)
_DNS1035_MESSAGE: Final = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
    "with an alphabetic character, and end with an alphanumeric character (e.g. "
    f"'my-name',  or 'abc-123', regex used for validation is '{_DNS1035_LABEL}')"
)

#: kinds whose names are DNS-1123 labels / DNS-1035 labels / mere path segments.
_LABEL_KINDS: Final = frozenset({"Namespace"})
_DNS1035_KINDS: Final = frozenset({"Service"})
_PATH_SEGMENT_KINDS: Final = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})


def name_errors(name: str, *, kind: str = "") -> list[FieldError]:
    """Every ``metadata.name`` error the server reports for ``name`` of ``kind``."""
    path = "metadata.name"
    if not name:
        return [FieldError.required(path, "name or generateName is required")]
    messages: list[str] = []
    if kind in _PATH_SEGMENT_KINDS:
        if name in (".", ".."):
            messages.append(f"may not be '{name}'")
        for bad in ("/", "%"):
            if bad in name:
                messages.append(f"may not contain '{bad}'")
    elif kind in _LABEL_KINDS:
        if len(name) > 63:
            messages.append("must be no more than 63 characters")
        if not _LABEL_RE.match(name):
            messages.append(_LABEL_MESSAGE)
    elif kind in _DNS1035_KINDS:
        if len(name) > 63:
            messages.append("must be no more than 63 characters")
        if not _DNS1035_RE.match(name):
            messages.append(_DNS1035_MESSAGE)
    else:
        if len(name) > 253:
            messages.append("must be no more than 253 characters")
        if not _SUBDOMAIN_RE.match(name):
            messages.append(_SUBDOMAIN_MESSAGE)
    return [FieldError.invalid(path, name, message) for message in messages]


_QUALIFIED_PART: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_RE: Final = re.compile(f"^{_QUALIFIED_PART}$")
_LABEL_VALUE: Final = f"({_QUALIFIED_PART})?"
_LABEL_VALUE_RE: Final = re.compile(f"^{_LABEL_VALUE}$")
_QUALIFIED_MESSAGE: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    f"used for validation is '{_QUALIFIED_PART}')"
)
_LABEL_VALUE_MESSAGE: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', "
    "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  "
    f"or 'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
)
_ANNOTATIONS_LIMIT: Final = 256 * 1024


def _qualified_name_messages(key: str) -> list[str]:
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        out = []
        if len(prefix) > 253:
            out.append("prefix part must be no more than 253 characters")
        if not _SUBDOMAIN_RE.match(prefix):
            out.append("prefix part " + _SUBDOMAIN_MESSAGE)
        if out:
            return out
    else:
        return [
            f"a qualified name {_QUALIFIED_MESSAGE} with an optional DNS subdomain prefix "
            "and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    out = []
    if len(name) > 63:
        out.append("name part must be no more than 63 characters")
    if not _QUALIFIED_RE.match(name):
        out.append(f"name part {_QUALIFIED_MESSAGE}")
    return out


def validate_metadata(meta: Mapping[str, Any]) -> list[FieldError]:
    """Label and annotation rules every object's metadata obeys."""
    errors: list[FieldError] = []
    labels = meta.get("labels")
    if isinstance(labels, Mapping):
        for key, value in labels.items():
            for message in _qualified_name_messages(str(key)):
                errors.append(FieldError.invalid("metadata.labels", key, message))
            if not isinstance(value, str):
                continue
            if len(value) > 63:
                errors.append(
                    FieldError.invalid(
                        "metadata.labels", value, "must be no more than 63 characters"
                    )
                )
            if not _LABEL_VALUE_RE.match(value):
                errors.append(FieldError.invalid("metadata.labels", value, _LABEL_VALUE_MESSAGE))
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping):
        size = 0
        for key, value in annotations.items():
            for message in _qualified_name_messages(str(key).lower()):
                errors.append(FieldError.invalid("metadata.annotations", key, message))
            size += len(str(key)) + (len(value.encode()) if isinstance(value, str) else 0)
        if size > _ANNOTATIONS_LIMIT:
            errors.append(
                FieldError(
                    "metadata.annotations",
                    TOO_LONG,
                    f"Too long: must have at most {_ANNOTATIONS_LIMIT} bytes",
                )
            )
    return errors


def validate_name(name: str, *, kind: str = "") -> FieldError | None:
    """The first ``metadata.name`` error for ``name`` of ``kind``, or None when valid.

    Most kinds need a DNS-1123 subdomain, Namespaces a DNS-1123 label, Services a
    DNS-1035 label and RBAC objects only a valid path segment (``system:auth-delegator``).
    """
    errors = name_errors(name, kind=kind)
    return errors[0] if errors else None
