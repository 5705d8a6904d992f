"""Decoding of the few protobuf request bodies kubectl sends, into the JSON form.

kubectl's generator commands (``kubectl create namespace|configmap|secret|
serviceaccount``) and ``kubectl auth can-i`` use typed clients that send ``application/vnd.kubernetes.protobuf``
and do not fall back to JSON. The real server decodes those with generated code; the
emulator knows the handful of messages those commands produce (field numbers from
the upstream ``generated.proto``) and answers 415 for any other protobuf body. Reading
the wire format is a few lines, so no protobuf library is needed.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


class ProtobufError(ValueError):
    """A body that is not a protobuf envelope of a known kind."""


#: a field: (json name, type) where type is "str" | "int" | "bool" | "bytes" (base64)
#: | "skip" | ("map", "str"|"bytes") | ("list", type) | ("msg", schema)
Field = tuple[str, Any]
Schema = dict[int, Field]

_OWNER_REF: Schema = {
    1: ("kind", "str"),
    2: ("name", "str"),
    3: ("uid", "str"),
    5: ("apiVersion", "str"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_OBJECT_META: Schema = {
    1: ("name", "str"),
    2: ("generateName", "str"),
    3: ("namespace", "str"),
    4: ("selfLink", "skip"),
    5: ("uid", "str"),
    6: ("resourceVersion", "str"),
    7: ("generation", "int"),
    8: ("creationTimestamp", "skip"),
    9: ("deletionTimestamp", "skip"),
    10: ("deletionGracePeriodSeconds", "skip"),
    11: ("labels", ("map", "str")),
    12: ("annotations", ("map", "str")),
    13: ("ownerReferences", ("list", ("msg", _OWNER_REF))),
    14: ("finalizers", ("list", "str")),
    17: ("managedFields", "skip"),
}
_OBJECT_REF: Schema = {
    1: ("kind", "str"),
    2: ("namespace", "str"),
    3: ("name", "str"),
    4: ("uid", "str"),
    5: ("apiVersion", "str"),
    6: ("resourceVersion", "str"),
    7: ("fieldPath", "str"),
}
_META = ("metadata", ("msg", _OBJECT_META))

KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "Namespace"): {
        1: _META,
        2: ("spec", ("msg", {1: ("finalizers", ("list", "str"))})),
        3: ("status", ("msg", {1: ("phase", "str")})),
    },
    ("v1", "ConfigMap"): {
        1: _META,
        2: ("data", ("map", "str")),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool"),
    },
    ("v1", "Secret"): {
        1: _META,
        2: ("data", ("map", "bytes")),
        3: ("type", "str"),
        4: ("stringData", ("map", "str")),
        5: ("immutable", "bool"),
    },
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): {
        1: _META,
        2: (
            "spec",
            (
                "msg",
                {
                    1: (
                        "resourceAttributes",
                        (
                            "msg",
                            {
                                1: ("namespace", "str"),
                                2: ("verb", "str"),
                                3: ("group", "str"),
                                4: ("version", "str"),
                                5: ("resource", "str"),
                                6: ("subresource", "str"),
                                7: ("name", "str"),
                            },
                        ),
                    ),
                    2: ("nonResourceAttributes", ("msg", {1: ("path", "str"), 2: ("verb", "str")})),
                },
            ),
        ),
        3: ("status", "skip"),
    },
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): {
        1: _META,
        2: ("spec", ("msg", {1: ("namespace", "str")})),
        3: ("status", "skip"),
    },
    ("authentication.k8s.io/v1", "TokenRequest"): {
        1: _META,
        2: (
            "spec",
            (
                "msg",
                {
                    1: ("audiences", ("list", "str")),
                    3: ("boundObjectRef", ("msg", {1: ("kind", "str"), 2: ("apiVersion", "str"), 3: ("name", "str"), 4: ("uid", "str")})),
                    4: ("expirationSeconds", "int"),
                },
            ),
        ),
        3: ("status", "skip"),
    },
    ("authentication.k8s.io/v1", "TokenReview"): {
        1: _META,
        2: ("spec", ("msg", {1: ("token", "str"), 2: ("audiences", ("list", "str"))})),
        3: ("status", "skip"),
    },
    ("authentication.k8s.io/v1", "SelfSubjectReview"): {1: _META, 2: ("status", "skip")},
    ("v1", "ServiceAccount"): {
        1: _META,
        2: ("secrets", ("list", ("msg", _OBJECT_REF))),
        3: ("imagePullSecrets", ("list", ("msg", {1: ("name", "str")}))),
        4: ("automountServiceAccountToken", "bool"),
    },
}


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(b):
            raise ProtobufError("truncated varint")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return result, i
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(b: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
            out.append((number, v))
        elif wire == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ProtobufError("truncated field")
            out.append((number, b[i : i + n]))
            i += n
        elif wire == 1:
            out.append((number, b[i : i + 8]))
            i += 8
        elif wire == 5:
            out.append((number, b[i : i + 4]))
            i += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _scalar(typ: str, v: int | bytes) -> Any:
    if typ == "int":
        return v if isinstance(v, int) else 0
    if typ == "bool":
        return bool(v)
    if not isinstance(v, bytes):
        raise ProtobufError("expected a length-delimited field")
    if typ == "bytes":
        return base64.b64encode(v).decode()
    return v.decode()


def _message(b: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, v in _fields(b):
        spec = schema.get(number)
        if spec is None:
            continue  # as protobuf decoders do: fields this schema does not know are skipped
        name, typ = spec
        if typ == "skip":
            continue
        if isinstance(typ, tuple) and typ[0] == "map":
            if not isinstance(v, bytes):
                raise ProtobufError("map entry must be a message")
            entry = dict(_fields(v))
            key = entry.get(1, b"")
            out.setdefault(name, {})[_scalar("str", key)] = _scalar(typ[1], entry.get(2, b""))
        elif isinstance(typ, tuple) and typ[0] == "list":
            item = typ[1]
            value = _message(v, item[1]) if isinstance(item, tuple) else _scalar(item, v)  # type: ignore[arg-type]
            out.setdefault(name, []).append(value)
        elif isinstance(typ, tuple) and typ[0] == "msg":
            if not isinstance(v, bytes):
                raise ProtobufError("expected a message")
            sub = _message(v, typ[1])
            if sub:
                out[name] = sub
        else:
            value = _scalar(typ, v)
            # gogo-protobuf writes zero values of non-pointer fields; JSON omits them
            if value not in ("", 0) or typ == "bool":
                out[name] = value
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON object for a protobuf request body (``ProtobufError`` if unknown)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf envelope")
    envelope = dict(_fields(body[len(MAGIC) :]))
    type_meta = envelope.get(1, b"")
    raw = envelope.get(2, b"")
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes):
        raise ProtobufError("malformed envelope")
    tm = dict(_fields(type_meta))
    api_version = _scalar("str", tm.get(1, b""))
    kind = _scalar("str", tm.get(2, b""))
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise ProtobufError(f"no protobuf decoding for {api_version} {kind}")
    return {"apiVersion": api_version, "kind": kind, **_message(raw, schema)}
