"""Decoding of ``application/vnd.kubernetes.protobuf`` request bodies into the JSON form.

kubectl's typed commands (``kubectl create deployment|service|role|rolebinding|
clusterrole|pdb|configmap|secret|namespace|serviceaccount|quota|priorityclass|job|
cronjob``, ``kubectl auth can-i``...) send protobuf and do not fall back to JSON, so the
emulator must read every built-in kind a client may send that way. The real server
decodes them with code generated from the upstream ``generated.proto`` files; here one
generic wire reader is driven by a map generated from those same files, joined with
the Go struct tags for what only they say (JSON names, ``omitempty``, pointers,
``json:",inline"`` embedding) — see :mod:`federationd.sim.gen_proto`, which writes
``data/k8s-proto.json.gz``.

Why not the ``protobuf`` runtime with generated ``_pb2`` modules or a descriptor set:
parsing is the small part. Turning a parsed message into the object a JSON client would
have sent needs exactly the Go-side facts above plus the special types (``Time``,
``MicroTime``, ``Duration``, ``Quantity``, ``IntOrString``, ``RawExtension``,
``FieldsV1``, named slices like ``ExtraValue``), so a protobuf dependency and a
compiler step at build time would still leave this module to write — and the published
Python packages of Kubernetes protos stopped in 2019. One committed, regenerable data
file of about 20 kB keeps the whole mapping upstream-derived and dependency-free.

The JSON form follows ``encoding/json`` on the Go struct: a pointer field is written
when it was set (``replicas: 0`` stays), a plain field with ``omitempty`` is left out
at its zero value (gogo-protobuf writes those on the wire anyway), an inline field's
members are merged into its parent. Responses stay JSON: kubectl's ``Accept`` for these
requests lists ``application/json`` after protobuf.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import struct
from datetime import UTC, datetime
from importlib import resources
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_TIME = _META + "Time"
_MICRO_TIME = _META + "MicroTime"
_DURATION = _META + "Duration"
_FIELDS_V1 = _META + "FieldsV1"
_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_RAW_EXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"

_VARINT_TYPES = frozenset({"int32", "int64", "uint32", "uint64", "bool"})


class ProtobufError(ValueError):
    """A body that is not a protobuf envelope of a known kind, or is malformed."""


Spec = list[Any]  # [json name, type, flags]


@functools.cache
def _data() -> dict[str, Any]:
    ref = resources.files("federationd.sim").joinpath("data/k8s-proto.json.gz")
    with resources.as_file(ref) as path:
        loaded: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    return loaded


@functools.cache
def _packages() -> dict[str, str]:
    """apiVersion -> proto package (``apps/v1`` -> ``k8s.io.api.apps.v1``)."""
    out: dict[str, str] = {}
    for package, group in _data()["groups"].items():
        version = package.rsplit(".", 1)[1]
        out[f"{group}/{version}" if group else version] = package
    return out


def message_name(api_version: str, kind: str) -> str | None:
    """The proto message a (apiVersion, kind) is encoded as, if upstream has one."""
    package = _packages().get(api_version)
    if package is None:
        return None
    name = f"{package}.{kind}"
    return name if name in _data()["messages"] else None


# ------------------------------------------------------------------ wire format


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
    n = len(b)
    while i < n:
        key, i = _varint(b, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
            out.append((number, v))
        elif wire == 2:
            size, i = _varint(b, i)
            if i + size > n:
                raise ProtobufError("truncated field")
            out.append((number, b[i : i + size]))
            i += size
        elif wire == 1:
            if i + 8 > n:
                raise ProtobufError("truncated field")
            out.append((number, b[i : i + 8]))
            i += 8
        elif wire == 5:
            if i + 4 > n:
                raise ProtobufError("truncated field")
            out.append((number, b[i : i + 4]))
            i += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _scalar(typ: str, v: int | bytes) -> Any:
    if typ in ("int32", "int64"):
        if not isinstance(v, int):
            raise ProtobufError(f"expected a varint for {typ}")
        return v - (1 << 64) if v >= 1 << 63 else v
    if typ in ("uint32", "uint64"):
        if not isinstance(v, int):
            raise ProtobufError(f"expected a varint for {typ}")
        return v
    if typ == "bool":
        return bool(v)
    if not isinstance(v, bytes):
        raise ProtobufError(f"expected a length-delimited field for {typ}")
    if typ == "string":
        try:
            return v.decode()
        except UnicodeDecodeError:
            raise ProtobufError("invalid UTF-8 in a string field") from None
    if typ == "bytes":
        return base64.b64encode(v).decode()
    if typ == "double":
        return struct.unpack("<d", v)[0]
    if typ == "float":
        return struct.unpack("<f", v)[0]
    raise ProtobufError(f"unknown scalar type {typ}")


def _zero(typ: str) -> Any:
    if typ == "string" or typ == "bytes":
        return ""
    if typ == "bool":
        return False
    return 0


_SCALARS = frozenset({"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float"})


# ------------------------------------------------------------------ special types


def _go_duration(ns: int) -> str:
    """Go's ``time.Duration.String``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    h, rem = divmod(ns, 3_600_000_000_000)
    m, rem = divmod(rem, 60_000_000_000)
    s = _trim(rem / 1_000_000_000) + "s"
    if h:
        return f"{sign}{h}h{m}m{s}"
    if m:
        return f"{sign}{m}m{s}"
    return sign + s


def _trim(x: float) -> str:
    return (f"{x:.9f}".rstrip("0").rstrip(".")) or "0"


def _special(name: str, raw: bytes) -> tuple[bool, Any]:
    """(handled, value) for the types whose JSON form is not an object of their fields."""
    if name in (_TIME, _MICRO_TIME):
        f = dict(_fields(raw))
        secs = _scalar("int64", f.get(1, 0))
        nanos = _scalar("int32", f.get(2, 0))
        if secs == 0 and nanos == 0:
            return True, None
        t = datetime.fromtimestamp(secs, UTC)
        if name == _MICRO_TIME:
            return True, t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
        return True, t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if name == _DURATION:
        return True, _go_duration(_scalar("int64", dict(_fields(raw)).get(1, 0)))
    if name == _QUANTITY:
        v = dict(_fields(raw)).get(1, b"")
        return True, _scalar("string", v) or None
    if name == _INT_OR_STRING:
        f = dict(_fields(raw))
        if _scalar("int64", f.get(1, 0)) == 1:
            return True, _scalar("string", f.get(3, b""))
        return True, _scalar("int32", f.get(2, 0))
    if name in (_RAW_EXTENSION, _FIELDS_V1):
        v = dict(_fields(raw)).get(1, b"")
        if not isinstance(v, bytes) or not v:
            return True, None
        try:
            return True, json.loads(v)
        except ValueError:
            raise ProtobufError(f"{name.rsplit('.', 1)[1]} holds something other than JSON") from None
    if name in _data()["slices"]:
        return True, [_scalar("string", v) for n, v in _fields(raw) if n == 1]
    return False, None


# ------------------------------------------------------------------ messages


def _value(typ: str, v: int | bytes) -> Any:
    if typ in _SCALARS:
        return _scalar(typ, v)
    if not isinstance(v, bytes):
        raise ProtobufError(f"expected a message for {typ}")
    return _message(v, typ)


def _message(raw: bytes, name: str) -> Any:
    handled, value = _special(name, raw)
    if handled:
        return value
    specs: dict[str, Spec] | None = _data()["messages"].get(name)
    if specs is None:
        raise ProtobufError(f"no protobuf decoding for {name}")
    wire: dict[int, list[int | bytes]] = {}
    for number, v in _fields(raw):
        wire.setdefault(number, []).append(v)
    out: dict[str, Any] = {}
    for key, (jname, typ, flags) in specs.items():
        vals = wire.get(int(key))
        if isinstance(typ, list):  # ["map", key type, value type]
            if vals:
                entries: dict[str, Any] = {}
                for entry in vals:
                    if not isinstance(entry, bytes):
                        raise ProtobufError("a map entry must be a message")
                    ef = dict(_fields(entry))
                    k = _scalar(typ[1], ef.get(1, b"" if typ[1] == "string" else 0))
                    ev = ef.get(2)
                    entries[str(k)] = _value(typ[2], ev) if ev is not None else (
                        _zero(typ[2]) if typ[2] in _SCALARS else None)
                out[jname] = entries
            continue
        if "r" in flags:
            if vals:
                items: list[Any] = []
                for v in vals:
                    if typ in _VARINT_TYPES and isinstance(v, bytes):
                        # a packed repeated scalar
                        j = 0
                        while j < len(v):
                            x, j = _varint(v, j)
                            items.append(_scalar(typ, x))
                    else:
                        items.append(_value(typ, v))
                out[jname] = items
            continue
        pointer, omitempty, inline = "p" in flags, "o" in flags, "i" in flags
        if typ in _SCALARS:
            if vals:
                value = _scalar(typ, vals[-1])
            elif pointer:
                continue
            else:
                value = _zero(typ)
            if not pointer and omitempty and value == _zero(typ):
                continue
            out[jname] = value
            continue
        if not vals:
            continue
        last = vals[-1]
        if not isinstance(last, bytes):
            raise ProtobufError(f"expected a message for {jname or typ}")
        value = _message(last, typ)
        if inline:
            if isinstance(value, dict):
                out.update(value)
            continue
        if value is None:
            continue
        if not pointer and omitempty and value in ({}, 0, ""):
            # a plain (non-pointer) struct at its zero value: Go cannot tell it from unset
            continue
        out[jname] = value
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
    api_version = _scalar("string", tm.get(1, b""))
    kind = _scalar("string", tm.get(2, b""))
    name = message_name(api_version, kind)
    if name is None:
        raise ProtobufError(f"no protobuf decoding for {api_version} {kind}")
    obj = _message(raw, name)
    if not isinstance(obj, dict):
        raise ProtobufError(f"{api_version} {kind} is not an object")
    return {"apiVersion": api_version, "kind": kind, **obj}
