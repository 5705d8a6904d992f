"""The CustomResourceDefinitions of ``Istio`` and ``RemoteIstio``, derived from the API types.

The msgspec Structs in :mod:`federationd.api.v1beta1` are the single source of truth: this
module walks them (``msgspec.inspect``) and emits an ``apiextensions.k8s.io/v1`` CRD with
a structural ``openAPIV3Schema`` — types, enums (``Literal``), patterns and bounds
(``msgspec.Meta``), required fields, ``nullable`` for optional sub-objects,
``x-kubernetes-int-or-string`` for quantities and ports, and
``x-kubernetes-preserve-unknown-fields`` for the pass-through Kubernetes objects
(affinity, tolerations, label selectors) — plus what no single field says: a bound on a
RemoteIstio's name, one ``enabledServices`` entry per name and, on request (``cel=True``),
CEL ``x-kubernetes-validations`` between fields (``_RULES``). ``deploy/crds/`` holds this
module's output without the CEL rules; a test keeps the two equal.

Why the rules are not in ``deploy/crds/``: an API server evaluates them from Kubernetes
1.25 on, but Istio 1.1 and 1.2 run only where ``admissionregistration.k8s.io/v1beta1``
is still served (1.21 and older), and there ``kubectl apply`` refuses the CRD outright
(``unknown field "x-kubernetes-validations"`` in its client-side validation). So on every
master that can run the control plane, the projection refuses what the rules say
(:mod:`federationd.api.checks`, in the CR's status); ``--cel`` writes the CRDs for a
master of 1.25 or later, where ``kubectl apply`` refuses it at once.

Defaults are deliberately *not* written into the schema: the API server would persist
them into every stored object, and several defaults (images, zipkin address, CNI
``excludeNamespaces``) depend on the version or namespace, which a schema cannot
express. They are applied in memory by ``v1beta1.istio_spec`` instead — as the source
operator did.

``crd()`` is pure. ``python -m federationd.api.crds --write deploy/crds`` (or
``--check``) is the only place that touches files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import msgspec.inspect as mi
import yaml

from federationd.api import checks, v1beta1

Kind = Literal["Istio", "RemoteIstio"]
KINDS: Final[tuple[Kind, ...]] = ("Istio", "RemoteIstio")

_SPECS: Final[dict[Kind, type[msgspec.Struct]]] = {
    "Istio": v1beta1.IstioSpec,
    "RemoteIstio": v1beta1.RemoteIstioSpec,
}

_PRINTER_COLUMNS: Final = [
    {
        "name": "Status",
        "type": "string",
        "jsonPath": ".status.Status",
        "description": "Status of the resource",
    },
    {
        "name": "Error",
        "type": "string",
        "jsonPath": ".status.ErrorMessage",
        "description": "Error message",
    },
    {
        "name": "Gateways",
        "type": "string",
        "jsonPath": ".status.GatewayAddress",
        "description": "Ingress gateways of the resource",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


#: Rules between fields of one struct, as CEL ``x-kubernetes-validations``, so the API
#: server (1.25 and later) refuses a spec that breaks one at ``kubectl apply``. The
#: projection checks the same in :mod:`federationd.api.checks` (a CR stored before the
#: CRD had the rule, or on an older server, is refused in its status instead). Only
#: ``rule`` and ``message``: ``messageExpression``, ``reason`` and ``fieldPath`` came in
#: 1.27 and 1.28, and a 1.25 server refuses a CRD that carries them (strict decoding).
#: Each rule costs O(1) or one pass over a list of a singleton struct, which keeps the
#: server's cost estimate (per rule and per CRD) far below its limits; rules that would compare strings in unbounded lists (duplicate
#: ports, failover regions) stay in the projection, and so do what CEL before the
#: Kubernetes libraries cannot say (quantities, sums over maps).
_REPLICAS_RULE: Final = {
    "rule": (
        "(has(self.minReplicas) && self.minReplicas != 0 ? self.minReplicas : 1) <= "
        "(has(self.maxReplicas) && self.maxReplicas != 0 ? self.maxReplicas : 5)"
    ),
    "message": "minReplicas must not be greater than maxReplicas (1 and 5 when unset)",
}
_RULES: Final[dict[type, list[dict[str, str]]]] = {
    v1beta1.PilotConfiguration: [_REPLICAS_RULE],
    v1beta1.MixerConfiguration: [_REPLICAS_RULE],
    v1beta1.GatewayConfiguration: [
        _REPLICAS_RULE,
        {
            "rule": "!has(self.ports) || size(self.ports) <= 1 || self.ports.all(p, has(p.name) && size(p.name) > 0)",
            "message": "a Service with more than one port needs a name on each",
        },
    ],
    v1beta1.CitadelConfiguration: [
        {
            "rule": (
                "!has(self.workloadCertTTL) || !has(self.maxWorkloadCertTTL) || self.workloadCertTTL == '' "
                "|| self.maxWorkloadCertTTL == '' || duration(self.workloadCertTTL) <= duration(self.maxWorkloadCertTTL)"
            ),
            "message": "workloadCertTTL must not be longer than maxWorkloadCertTTL",
        }
    ],
    v1beta1.LocalityLBConfiguration: [
        {
            "rule": (
                "!(has(self.distribute) && size(self.distribute) > 0 && has(self.failover) "
                "&& size(self.failover) > 0)"
            ),
            "message": "can not simultaneously specify 'distribute' and 'failover'",
        }
    ],
}


class SchemaError(TypeError):
    """An API type that has no structural-schema form (a bug in the API types)."""


def _description(cls: type) -> str | None:
    doc = cls.__dict__.get("__doc__")
    if not doc:
        return None
    return " ".join(doc.replace("``", "").split())


def _schema(t: mi.Type) -> dict[str, Any]:
    if isinstance(t, mi.BoolType):
        return {"type": "boolean"}
    if isinstance(t, mi.IntType):
        out: dict[str, Any] = {"type": "integer"}
        if t.ge is not None:
            out["minimum"] = t.ge
        if t.le is not None:
            out["maximum"] = t.le
        return out
    if isinstance(t, mi.FloatType):
        out = {"type": "number"}
        if t.ge is not None:
            out["minimum"] = t.ge
        if t.le is not None:
            out["maximum"] = t.le
        return out
    if isinstance(t, mi.StrType):
        out = {"type": "string"}
        if t.pattern is not None:
            out["pattern"] = t.pattern
        if t.min_length is not None:
            out["minLength"] = t.min_length
        if t.max_length is not None:
            out["maxLength"] = t.max_length
        return out
    if isinstance(t, mi.LiteralType):
        if not all(isinstance(v, str) for v in t.values):
            raise SchemaError(f"non-string literal {t.values!r}")
        return {"type": "string", "enum": list(t.values)}
    if isinstance(t, mi.ListType):
        return {"type": "array", "items": _schema(t.item_type)}
    if isinstance(t, mi.DictType):
        if isinstance(t.value_type, mi.AnyType):
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": _schema(t.value_type)}
    if isinstance(t, mi.StructType):
        return _struct(t)
    if isinstance(t, mi.UnionType):
        types = [x for x in t.types if not isinstance(x, mi.NoneType)]
        nullable = len(types) != len(t.types)
        kinds = {type(x) for x in types}
        if kinds == {mi.IntType, mi.StrType}:
            out = {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-int-or-string": True,
            }
            # a pattern applies to the string form only (as resource.Quantity's does)
            pattern = next((x.pattern for x in types if isinstance(x, mi.StrType)), None)
            if pattern is not None:
                out["pattern"] = pattern
        elif len(types) == 1:
            out = _schema(types[0])
        else:
            raise SchemaError(f"union {t!r} has no structural form")
        if nullable:
            out["nullable"] = True
        return out
    raise SchemaError(f"type {t!r} has no structural form")


def _without_rules(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_rules(v) for k, v in schema.items() if k != "x-kubernetes-validations"}
    if isinstance(schema, list):
        return [_without_rules(v) for v in schema]
    return schema


def _struct(t: mi.StructType) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object"}
    desc = _description(t.cls)
    if desc:
        out["description"] = desc
    out["properties"] = {f.encode_name: _schema(f.type) for f in t.fields}
    required = [f.encode_name for f in t.fields if f.required]
    if required:
        out["required"] = required
    rules = _RULES.get(t.cls)
    if rules:
        out["x-kubernetes-validations"] = [dict(r) for r in rules]
    return out


def schema_of(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one API struct."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return _struct(info)


def _metadata(kind: Kind) -> dict[str, Any]:
    # A RemoteIstio's name is its cluster's network name, a label value on the remote's
    # workloads: at most 63 characters (checks.MAX_REMOTE_NAME). name and generateName
    # are the metadata fields a CRD schema may restrict.
    if kind == "RemoteIstio":
        return {"type": "object", "properties": {"name": {"type": "string", "maxLength": checks.MAX_REMOTE_NAME}}}
    return {"type": "object"}


def _spec(kind: Kind) -> dict[str, Any]:
    spec = schema_of(_SPECS[kind])
    if kind == "RemoteIstio":
        # one entry per service name: the server refuses a duplicate at apply time
        services = spec["properties"]["enabledServices"]
        services["x-kubernetes-list-type"] = "map"
        services["x-kubernetes-list-map-keys"] = ["name"]
    return spec


def open_api_schema(kind: Kind) -> dict[str, Any]:
    """The whole object's ``openAPIV3Schema`` for ``kind``."""
    return {
        "type": "object",
        "description": f"{kind} is the Schema for the {kind.lower()}s API",
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object.",
            },
            "kind": {
                "type": "string",
                "description": "Kind is a string value representing the REST resource this object represents.",
            },
            "metadata": _metadata(kind),
            "spec": _spec(kind),
            "status": schema_of(v1beta1.Status),
        },
    }


def crd(kind: Kind, *, cel: bool = False) -> dict[str, Any]:
    """The ``apiextensions.k8s.io/v1`` CustomResourceDefinition of ``kind``; with ``cel``,
    the CEL rules between fields too (for API servers of 1.25 and later only)."""
    if kind not in _SPECS:
        raise ValueError(f"unknown kind {kind!r}")
    plural = kind.lower() + "s"
    schema = open_api_schema(kind)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{v1beta1.GROUP}",
            "labels": {"controller-tools.k8s.io": "1.0"},
        },
        "spec": {
            "group": v1beta1.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": v1beta1.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": schema if cel else _without_rules(schema)},
                }
            ],
        },
    }


def file_name(kind: Kind) -> str:
    return f"{v1beta1.GROUP}_{kind.lower()}s.yaml"


def render_yaml(kind: Kind, *, cel: bool = False) -> str:
    """The CRD as the YAML text kept in ``deploy/crds/`` (``cel``: with the CEL rules)."""
    flag = " --cel" if cel else ""
    where = "DIR" if cel else "deploy/crds"
    header = f"# Generated from federationd/api/v1beta1.py: python -m federationd.api.crds{flag} --write {where}\n"
    return header + yaml.safe_dump(crd(kind, cel=cel), sort_keys=True, default_flow_style=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m federationd.api.crds", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="DIR", type=Path, help="write the CRD files into DIR")
    group.add_argument("--check", metavar="DIR", type=Path, help="fail if DIR's CRD files differ")
    parser.add_argument("--cel", action="store_true",
                        help="with the CEL validation rules (only for a master of Kubernetes 1.25 or later)")
    args = parser.parse_args(argv)
    stale = []
    for kind in KINDS:
        text = render_yaml(kind, cel=args.cel)
        if args.write is not None:
            args.write.mkdir(parents=True, exist_ok=True)
            (args.write / file_name(kind)).write_text(text)
        else:
            path: Path = args.check / file_name(kind)
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
    if stale:
        print("out of date (run --write): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
