"""OpenAPI documents of a simulated cluster: ``/openapi/v2`` and ``/openapi/v3`` with schemas.

kubectl reads them for ``kubectl explain`` (v3 by default, v2 with
``--output plaintext-openapiv2``), to learn whether the server validates fields itself
(a ``fieldValidation`` parameter on each kind's PATCH operation) and, without that,
for client-side validation. The schemas are the upstream definitions of the cluster's
own release (:func:`federationd.sim.versions.definitions`, the same ones admission
validates with), turned back from the JSON-schema form ``kubernetes-validate`` keeps
them in into OpenAPI: references under ``#/definitions/`` (v2) or
``#/components/schemas/`` (v3, wrapped in ``allOf`` when they carry a description, as
upstream publishes them), no ``null`` types, no ``additionalProperties: false``,
int-or-string and quantities as upstream spells them. Custom resources are published
from their CRD's ``openAPIV3Schema`` with ``apiVersion``/``kind``/``metadata`` added,
as the apiextensions server does.

Releases before 1.15 publish no custom resource schemas, before 1.24 serve no v3
documents, and before 1.25 no ``fieldValidation``
parameter (:mod:`federationd.sim.versions`), so kubectl validates on the client side
against the v2 document there, as it does against those servers.

Each document is built on first request and cached until the cluster's kinds change
(a CRD is added or removed); only what a group/version references is included in its
v3 document.

``/openapi/v2`` is served as JSON, or in the protobuf form of gnostic's
``openapi_v2.Document`` (``OpenAPIv2.proto``) that client-go's ``OpenAPISchema()`` asks
for and kubectl validates with when a server has no v3 documents; vendor extensions
travel as YAML text there, as kube-openapi encodes them. Only the parts a client reads
are encoded: definitions, and each kind's PATCH operation with its query parameters.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import yaml

from federationd.sim import errors, versions
from federationd.sim.kinds import Kind, Registry

Doc = dict[str, Any]

_encode = msgspec.json.Encoder().encode

_DEFS_REF = "#/$defs/"
_REF = re.compile(r"^#/\$defs/(.+)$")
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

#: what client-go asks /openapi/v2 for
V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

#: query parameters of the PATCH operation kubectl looks for
_PATCH_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force")


# ------------------------------------------------------------------ schema conversion


def _convert(node: Any, prefix: str, *, v3: bool) -> Any:
    """A JSON-schema node of the definitions as OpenAPI (v2 or v3)."""
    if isinstance(node, list):
        return [_convert(x, prefix, v3=v3) for x in node]
    if not isinstance(node, Mapping):
        return node
    out: Doc = {}
    ref = node.get("$ref")
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) == 1:
                out["type"] = types[0]
            elif types:
                out["type"] = types
            continue
        if key in ("properties", "patternProperties", "definitions", "$defs"):
            out[key] = {k: _convert(v, prefix, v3=v3) for k, v in value.items()}
            continue
        out[key] = _convert(value, prefix, v3=v3)
    if isinstance(ref, str):
        m = _REF.match(ref)
        target = prefix + (m.group(1) if m else ref)
        if v3 and out:
            out["allOf"] = [{"$ref": target}]
        else:
            out["$ref"] = target
    return out


@functools.cache
def _definition(release: str, name: str, v3: bool) -> Doc:
    defs = versions.definitions(release)
    raw = defs[name]
    if name == _INT_OR_STRING:
        return {"description": raw.get("description", ""), "type": "string", "format": "int-or-string"}
    if name == _QUANTITY:
        return {"description": raw.get("description", ""), "type": "string"}
    prefix = "#/components/schemas/" if v3 else "#/definitions/"
    converted: Doc = _convert(raw, prefix, v3=v3)
    return converted


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS_REF):
            out.add(ref[len(_DEFS_REF) :])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


@functools.cache
def _closure(release: str, roots: tuple[str, ...]) -> tuple[str, ...]:
    """The definition names ``roots`` reference, transitively (roots included)."""
    defs = versions.definitions(release)
    seen: set[str] = set()
    todo = [r for r in roots if r in defs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        found: set[str] = set()
        _refs(defs[name], found)
        todo.extend(f for f in found if f not in seen and f in defs)
    return tuple(sorted(seen))


def _custom_name(kind: Kind) -> str:
    """``io.banzaicloud.istio.v1beta1.RemoteIstio``: the name upstream gives a CR's schema."""
    return ".".join([*reversed(kind.group.split(".")), kind.version, kind.kind])


def _custom_schema(kind: Kind, *, v3: bool) -> Doc:
    gvk = [{"group": kind.group, "kind": kind.kind, "version": kind.version}]
    if kind.schema is None or (not v3 and (kind.schema or {}).get("x-kubernetes-preserve-unknown-fields")):
        # As apiextensions-apiserver's builder (buildKubeNative): without a schema — or,
        # in v2, one that keeps unknown fields — only "type: object" is published, not even
        # apiVersion/kind/metadata, "because kubectl will complain about unknown fields
        # for anything else" (kubectl's v2 validation takes listed properties as closed).
        return {"type": "object", "x-kubernetes-group-version-kind": gvk}
    prefix = "#/components/schemas/" if v3 else "#/definitions/"
    schema: Doc = dict(_convert(kind.schema or {}, prefix, v3=v3))
    props = dict(schema.get("properties") or {})
    props["apiVersion"] = {
        "description": "APIVersion defines the versioned schema of this representation of an object.",
        "type": "string",
    }
    props["kind"] = {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"}
    meta_ref = prefix + _OBJECT_META
    props["metadata"] = {"allOf": [{"$ref": meta_ref}]} if v3 else {"$ref": meta_ref}
    schema.setdefault("type", "object")
    schema["properties"] = props
    schema["x-kubernetes-group-version-kind"] = gvk
    return schema


# ------------------------------------------------------------------ documents


def _patch_paths(kinds: Iterable[Kind], *, v3: bool, field_validation: bool = True) -> Doc:
    paths: Doc = {}
    names = [p for p in _PATCH_PARAMS if field_validation or p != "fieldValidation"]
    for k in kinds:
        prefix = f"/apis/{k.group}/{k.version}" if k.group else f"/api/{k.version}"
        ns = "/namespaces/{namespace}" if k.namespaced else ""
        params = [
            {"name": p, "in": "query", "uniqueItems": True,
             **({"schema": {"type": "string"}} if v3 else {"type": "string"})}
            for p in names
        ]
        paths[f"{prefix}{ns}/{k.plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{k.kind}",
                "parameters": params,
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": k.group, "version": k.version, "kind": k.kind},
            }
        }
    return paths


def _v2_open(node: Any) -> Any:
    """A v2 schema in which a node keeping unknown fields lists none of its known ones.

    kubectl's client-side validation (what reads v2) refuses any field a schema does not
    list; the apiextensions server publishes such nodes without their properties so
    that it does not refuse what the server keeps.
    """
    if isinstance(node, list):
        return [_v2_open(x) for x in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return {k: v for k, v in node.items() if k not in ("properties", "required", "additionalProperties")}
    return {k: (v if k in ("enum", "default", "example") else _v2_open(v)) for k, v in node.items()}


def _schemas(kinds: list[Kind], release: str, *, v3: bool) -> Doc:
    index = versions.gvk_index(release)
    roots = [index[(k.group, k.version, k.kind)] for k in kinds if (k.group, k.version, k.kind) in index]
    if not v3 and versions.parse(release).minor < versions.CRD_OPENAPI_MINOR:
        kinds = [k for k in kinds if not k.custom]
    if any(k.custom for k in kinds):
        roots.append(_OBJECT_META)
    out: Doc = {name: _definition(release, name, v3) for name in _closure(release, tuple(sorted(set(roots))))}
    for k in kinds:
        if k.custom:
            schema = _custom_schema(k, v3=v3)
            if not v3:
                props = schema.get("properties") or {}
                schema["properties"] = {name: (v if name in ("apiVersion", "kind", "metadata") else _v2_open(v))
                                        for name, v in props.items()}
            out[_custom_name(k)] = schema
    return out


def v3_root(registry: Registry, release: versions.KubeVersion) -> Doc:
    paths: Doc = {}
    for group, vs in registry.groups().items():
        for v in vs:
            key = f"apis/{group}/{v}" if group else f"api/{v}"
            h = hashlib.sha256(f"{release.name}:{key}:{registry.generation}".encode()).hexdigest()[:16].upper()
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={h}"}
    return {"paths": paths}


def v3_group(registry: Registry, release: versions.KubeVersion, group: str, version: str) -> Doc | None:
    kinds = sorted((k for k in registry if k.group == group and k.version == version), key=lambda k: k.plural)
    if not kinds:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": release.git_version},
        "paths": _patch_paths(kinds, v3=True),
        "components": {"schemas": _schemas(kinds, release.name, v3=True)},
    }


def v2(registry: Registry, release: versions.KubeVersion) -> Doc:
    kinds = sorted(registry, key=lambda k: (k.group, k.version, k.plural))
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": release.git_version},
        "paths": _patch_paths(kinds, v3=False, field_validation=versions.validates_fields(release.name)),
        "definitions": _schemas(kinds, release.name, v3=False),
    }


# ------------------------------------------------------------------ serving

class Documents:
    """The OpenAPI documents of one cluster, cached until its kinds change."""

    def __init__(self, registry: Registry, release: versions.KubeVersion) -> None:
        self.registry = registry
        self.release = release
        self._cache: dict[str, bytes] = {}
        self._generation = registry.generation

    def serve(self, parts: list[str], *, accept: str = "") -> bytes | None:
        """The body for ``/openapi/<parts...>``, or None when there is no such document.

        JSON, except ``/openapi/v2`` asked for as :data:`V2_PROTOBUF` only (see
        :meth:`content_type`); ``NotAcceptable`` when neither is accepted.
        """
        if parts[:1] == ["v3"] and not versions.serves_openapi_v3(self.release.name):
            return None
        if self._generation != self.registry.generation:
            self._cache.clear()
            self._generation = self.registry.generation
        path = "/".join(parts)
        if parts == ["v2"] and not _accepts_json(accept):
            if V2_PROTOBUF not in accept:
                raise errors.NotAcceptable("the server was unable to respond with a content type that the client supports")
            path = "v2.pb"
        hit = self._cache.get(path)
        if hit is not None:
            return hit
        doc: Doc | None = None
        if path == "v2.pb":
            body = v2_protobuf(v2(self.registry, self.release))
            self._cache[path] = body
            return body
        if parts == ["v2"]:
            doc = v2(self.registry, self.release)
        elif parts == ["v3"]:
            doc = v3_root(self.registry, self.release)
        elif len(parts) == 3 and parts[:2] == ["v3", "api"]:
            doc = v3_group(self.registry, self.release, "", parts[2])
        elif len(parts) == 4 and parts[:2] == ["v3", "apis"]:
            doc = v3_group(self.registry, self.release, parts[2], parts[3])
        if doc is None:
            return None
        body = _encode(doc)
        self._cache[path] = body
        return body

    @staticmethod
    def content_type(parts: list[str], accept: str) -> str:
        """The media type :meth:`serve` answers ``parts`` with."""
        if parts == ["v2"] and not _accepts_json(accept) and V2_PROTOBUF in accept:
            # the requested type is no valid MIME type (the "@"); kube-openapi answers so
            return "application/octet-stream"
        return "application/json"


def _accepts_json(accept: str) -> bool:
    if not accept.strip():
        return True
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("application/json", "*/*", "application/*"):
            return True
    return False


# ------------------------------------------------------------------ v2 as protobuf
# Field numbers from gnostic's openapiv2/OpenAPIv2.proto (proto3: zero values are left out).


def _key(number: int, wire: int) -> bytes:
    return _uvarint(number << 3 | wire)


def _uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _uvarint(len(payload)) + payload


def _str(number: int, value: Any) -> bytes:
    return _ld(number, str(value).encode()) if value not in (None, "") else b""


def _bool(number: int, value: Any) -> bytes:
    return _key(number, 0) + b"\x01" if value is True else b""


def _int(number: int, value: Any) -> bytes:
    return _key(number, 0) + _uvarint(int(value)) if isinstance(value, int) and value > 0 else b""


def _double(number: int, value: Any) -> bytes:

    return _key(number, 1) + struct.pack("<d", float(value)) if isinstance(value, (int, float)) and value else b""


def _any(number: int, value: Any) -> bytes:
    """An ``Any`` holding YAML, as kube-openapi encodes defaults, enums and extensions."""
    return _ld(number, _str(2, yaml.safe_dump(value, default_flow_style=False, sort_keys=True)))


def _schema_pb(s: Mapping[str, Any]) -> bytes:
    out = bytearray()
    out += _str(1, s.get("$ref"))
    out += _str(2, s.get("format"))
    out += _str(3, s.get("title"))
    out += _str(4, s.get("description"))
    if "default" in s:
        out += _any(5, s["default"])
    out += _double(6, s.get("multipleOf"))
    out += _double(7, s.get("maximum"))
    out += _bool(8, s.get("exclusiveMaximum"))
    out += _double(9, s.get("minimum"))
    out += _bool(10, s.get("exclusiveMinimum"))
    out += _int(11, s.get("maxLength"))
    out += _int(12, s.get("minLength"))
    out += _str(13, s.get("pattern"))
    out += _int(14, s.get("maxItems"))
    out += _int(15, s.get("minItems"))
    out += _bool(16, s.get("uniqueItems"))
    out += _int(17, s.get("maxProperties"))
    out += _int(18, s.get("minProperties"))
    for r in s.get("required") or []:
        out += _str(19, r)
    for e in s.get("enum") or []:
        out += _any(20, e)
    additional = s.get("additionalProperties")
    if isinstance(additional, Mapping):
        out += _ld(21, _ld(1, _schema_pb(additional)))
    elif isinstance(additional, bool):
        out += _ld(21, _key(2, 0) + (b"\x01" if additional else b"\x00"))
    typ = s.get("type")
    if typ:
        out += _ld(22, b"".join(_str(1, t) for t in ([typ] if isinstance(typ, str) else typ)))
    items = s.get("items")
    if isinstance(items, Mapping):
        out += _ld(23, _ld(1, _schema_pb(items)))
    for sub in s.get("allOf") or []:
        out += _ld(24, _schema_pb(sub))
    props = s.get("properties")
    if isinstance(props, Mapping) and props:
        out += _ld(25, b"".join(_ld(1, _str(1, k) + _ld(2, _schema_pb(v))) for k, v in props.items()))
    out += _bool(27, s.get("readOnly"))
    if "example" in s:
        out += _any(30, s["example"])
    for k, v in s.items():
        if k.startswith("x-"):
            out += _ld(31, _str(1, k) + _any(2, v))
    return bytes(out)


def _operation_pb(op: Mapping[str, Any]) -> bytes:
    out = bytearray(_str(5, op.get("operationId")))
    for p in op.get("parameters") or []:
        query = _bool(1, p.get("required")) + _str(2, p.get("in")) + _str(4, p.get("name")) + _str(6, p.get("type"))
        query += _bool(20, p.get("uniqueItems"))
        out += _ld(8, _ld(1, _ld(2, _ld(3, query))))
    for k, v in op.items():
        if k.startswith("x-"):
            out += _ld(13, _str(1, k) + _any(2, v))
    return bytes(out)


def v2_protobuf(doc: Mapping[str, Any]) -> bytes:
    """``doc`` (a swagger 2.0 document as :func:`v2` builds it) as an ``openapi_v2.Document``."""
    info = doc.get("info") or {}
    out = bytearray(_str(1, doc.get("swagger")))
    out += _ld(2, _str(1, info.get("title")) + _str(2, info.get("version")))
    paths = bytearray()
    for path, item in (doc.get("paths") or {}).items():
        ops = b"".join(_ld(n, _operation_pb(item[m])) for n, m in ((2, "get"), (3, "put"), (4, "post"), (5, "delete"), (8, "patch"))
                       if m in item)
        paths += _ld(2, _str(1, path) + _ld(2, ops))
    out += _ld(8, bytes(paths))
    defs = b"".join(_ld(1, _str(1, name) + _ld(2, _schema_pb(schema))) for name, schema in (doc.get("definitions") or {}).items())
    out += _ld(9, defs)
    return bytes(out)
