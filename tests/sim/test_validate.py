"""Admission checks: built-in schemas, CRD schemas, defaulting, pruning, names."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from federationd.sim.validate import (
    KUBERNETES_VERSION,
    FieldError,
    apply_defaults,
    decoding_message,
    invalid_message,
    name_errors,
    prune,
    prune_builtin,
    strict_decoding_message,
    unknown_fields,
    validate_builtin,
    validate_custom,
    validate_name,
)


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "prod"}],
                            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                            "volumeMounts": [{"name": "conf", "mountPath": "/etc/web"}],
                        }
                    ],
                    "volumes": [{"name": "conf", "configMap": {"name": "web"}}],
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                },
            },
        },
    }


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


# ------------------------------------------------------------------- built-ins


def test_schema_version_is_pinned() -> None:
    assert KUBERNETES_VERSION == "1.32"


def test_valid_builtins_pass() -> None:
    assert validate_builtin(deployment()) == ([], [])
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": "http"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}},
    }
    assert validate_builtin(svc) == ([], [])
    crd_kind = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.x.io"},
        "spec": {
            "group": "x.io",
            "names": {"plural": "things", "kind": "Thing"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    assert validate_builtin(crd_kind) == ([], [])
    # Kinds without an upstream schema are not this function's business.
    assert validate_builtin({"apiVersion": "x.io/v1", "kind": "Thing", "spec": 1}) == ([], [])


def test_unknown_fields_follow_field_validation() -> None:
    obj = deployment()
    obj["spec"]["foo"] = 1
    containers(obj)[0]["bogus"] = True
    # Reported in document order, like Go's strict decoder.
    expected = ["spec.template.spec.containers[0].bogus", "spec.foo"]
    errors, warnings = validate_builtin(obj, field_validation="Strict")
    assert [(e.reason, e.path) for e in errors] == [("FieldValueUnknown", p) for p in expected]
    assert warnings == []
    assert strict_decoding_message("Deployment", "v1", errors) == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.template.spec.containers[0].bogus", unknown field "spec.foo"'
    )
    errors, warnings = validate_builtin(obj, field_validation="Warn")
    assert errors == []
    assert warnings == [f'unknown field "{p}"' for p in expected]
    assert validate_builtin(obj, field_validation="Ignore") == ([], [])
    obj["metadata"]["bogus"] = "x"
    pruned = prune_builtin(obj)
    assert "foo" not in pruned["spec"] and "bogus" not in containers(pruned)[0]
    assert pruned["metadata"] == deployment()["metadata"]
    assert pruned["spec"]["template"]["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert validate_builtin(pruned) == ([], [])


def test_type_errors_carry_path_and_both_messages() -> None:
    obj = deployment()
    obj["spec"]["replicas"] = "three"
    containers(obj)[0]["image"] = 5
    obj["metadata"]["labels"]["n"] = 1
    errors, _ = validate_builtin(obj)
    by_path = {e.path: e for e in errors}
    assert set(by_path) == {
        "spec.replicas",
        "spec.template.spec.containers[0].image",
        "metadata.labels.n",
    }
    replicas = by_path["spec.replicas"]
    assert replicas.reason == "FieldValueTypeInvalid"
    assert str(replicas) == (
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type '
        'integer: "string"'
    )
    assert replicas.decoding == (
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas "
        "of type int32"
    )
    assert by_path["spec.template.spec.containers[0].image"].decoding == (
        "json: cannot unmarshal number into Go struct field "
        "Container.spec.template.spec.containers.image of type string"
    )
    assert decoding_message("Deployment", "v1", replicas.decoding).startswith(
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal'
    )
    # int-or-string and quantities accept both spellings.
    ok = deployment()
    ok["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = 1
    containers(ok)[0]["resources"]["limits"]["cpu"] = 2
    assert validate_builtin(ok) == ([], [])


def test_required_fields_of_builtins() -> None:
    obj = deployment()
    del containers(obj)[0]["name"]
    del obj["spec"]["selector"]
    errors, _ = validate_builtin(obj)
    assert sorted((e.path, e.message) for e in errors) == [
        ("spec.selector", "Required value"),
        ("spec.template.spec.containers[0].name", "Required value"),
    ]
    # Status is written by controllers; its upstream "required" is not enforced.
    status = deployment()
    status["status"] = {"conditions": [{"type": "Available"}]}
    assert validate_builtin(status) == ([], [])


def test_invalid_message_format() -> None:
    one = [FieldError.invalid("spec.replicas", -1, "must be greater than or equal to 0")]
    assert invalid_message("Deployment", "apps", "x", one) == (
        'Deployment.apps "x" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0"
    )
    two = [*one, FieldError.required("spec.selector")]
    assert invalid_message("Deployment", "apps", "x", two) == (
        'Deployment.apps "x" is invalid: [spec.replicas: Invalid value: -1: must be greater '
        "than or equal to 0, spec.selector: Required value]"
    )
    assert invalid_message("ConfigMap", "", "c", []) == 'ConfigMap "c" is invalid'
    assert FieldError.required("spec.x").cause() == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.x",
    }
    assert FieldError.not_supported("spec.m", "x", ["a", "b"]).message == (
        'Unsupported value: "x": supported values: "a", "b"'
    )
    assert FieldError.too_long("spec.n", 5).message == "Too long: may not be more than 5 bytes"
    assert FieldError.duplicate("spec.l[1]", "a").message == 'Duplicate value: "a"'


def test_builtin_validation_is_fast() -> None:
    obj = deployment()
    validate_builtin(obj)  # warm the schema nodes
    rounds = 500
    started = time.perf_counter()
    for _ in range(rounds):
        validate_builtin(obj)
    per_object = (time.perf_counter() - started) / rounds
    print(f"validate_builtin: {per_object * 1e6:.1f} us per Deployment")
    assert per_object < 0.001


# ----------------------------------------------------------- custom resources

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["version"],
            "properties": {
                "version": {"type": "string", "pattern": "^1\\.[0-9]+\\.[0-9]+$"},
                "mode": {"type": "string", "enum": ["STRICT", "PERMISSIVE"], "default": "STRICT"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "name": {"type": "string", "minLength": 2, "maxLength": 5},
                "port": {"x-kubernetes-int-or-string": True},
                "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                "note": {"type": "string", "nullable": True},
                "tags": {
                    "type": "array",
                    "maxItems": 2,
                    "items": {"type": "string"},
                    "x-kubernetes-list-type": "set",
                },
                "gateways": {
                    "type": "array",
                    "minItems": 1,
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "enabled": {"type": "boolean", "default": True},
                        },
                    },
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "sidecar": {
                    "type": "object",
                    "default": {},
                    "properties": {"image": {"type": "string", "default": "proxy:1"}},
                },
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def istio(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "istio.banzaicloud.io/v1beta1",
        "kind": "Istio",
        "metadata": {"name": "mesh", "namespace": "istio-system"},
        "spec": {"version": "1.2.0", **spec},
    }


def messages(errors: list[FieldError]) -> list[str]:
    return [str(e) for e in errors]


def test_custom_valid_object_passes() -> None:
    obj = istio(
        mode="PERMISSIVE",
        replicas=3,
        name="ab",
        port="http",
        ratio=0.5,
        note=None,
        tags=["a", "b"],
        gateways=[{"name": "in"}, {"name": "out", "enabled": False}],
        labels={"a": "b"},
        extra={"anything": [1, {"x": None}]},
    )
    assert validate_custom(obj, schema=SCHEMA) == []
    assert validate_custom(istio(replicas=2.0), schema=SCHEMA) == []  # JSON 2.0 is an integer


def test_custom_type_errors_read_like_the_server() -> None:
    errors = validate_custom(istio(replicas="3", port=True, labels={"a": 1}), schema=SCHEMA)
    assert messages(errors) == [
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type '
        'integer: "string"',
        'spec.port: Invalid value: "boolean": spec.port in body must be of type '
        'integer,string: "boolean"',
        'spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type '
        'string: "integer"',
    ]
    assert {e.reason for e in errors} == {"FieldValueTypeInvalid"}
    null = validate_custom(istio(mode=None), schema=SCHEMA)
    assert messages(null) == [
        'spec.mode: Invalid value: "null": spec.mode in body must be of type string: "null"'
    ]


def test_custom_value_constraints() -> None:
    errors = validate_custom(
        istio(
            version="2.0",
            mode="LOOSE",
            replicas=0,
            name="abcdef",
            ratio=0,
            tags=["a", "a", "b"],
            gateways=[{"name": "g"}, {"name": "g"}, {"enabled": True}],
        ),
        schema=SCHEMA,
    )
    assert messages(errors) == [
        'spec.version: Invalid value: "2.0": spec.version in body should match '
        "'^1\\.[0-9]+\\.[0-9]+$'",
        'spec.mode: Unsupported value: "LOOSE": supported values: "STRICT", "PERMISSIVE"',
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or "
        "equal to 1",
        "spec.name: Too long: may not be more than 5 bytes",
        "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0",
        "spec.tags: Too many: 3: must have at most 2 items",
        'spec.tags[1]: Duplicate value: "a"',
        "spec.gateways[2].name: Required value",
        'spec.gateways[1]: Duplicate value: map[string]interface {}{"name":"g"}',
    ]
    reasons = {e.path: e.reason for e in errors}
    assert reasons["spec.mode"] == "FieldValueNotSupported"
    assert reasons["spec.name"] == "FieldValueTooLong"
    assert reasons["spec.gateways[1]"] == "FieldValueDuplicate"
    short = validate_custom(istio(name="a", replicas=11, gateways=[]), schema=SCHEMA)
    assert messages(short) == [
        'spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long',
        "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or "
        "equal to 10",
        "spec.gateways: Invalid value: []: spec.gateways in body should have at least 1 items",
    ]


def test_custom_required_fields() -> None:
    obj = istio()
    del obj["spec"]["version"]
    assert messages(validate_custom(obj, schema=SCHEMA)) == ["spec.version: Required value"]
    root_required = {
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": {"type": "object"}},
    }
    assert messages(validate_custom({"kind": "X"}, schema=root_required)) == [
        "spec: Required value"
    ]


def test_defaults_are_applied_structurally() -> None:
    obj = istio(gateways=[{"name": "in"}], replicas=None)
    before = copy.deepcopy(obj)
    defaulted = apply_defaults(obj, schema=SCHEMA)
    assert obj == before  # input untouched
    spec = defaulted["spec"]
    assert spec["mode"] == "STRICT"
    assert spec["replicas"] == 1  # null on a non-nullable field takes the default
    assert spec["gateways"] == [{"name": "in", "enabled": True}]
    assert spec["sidecar"] == {"image": "proxy:1"}  # defaults inside a default
    assert defaulted["metadata"] == before["metadata"]
    kept = apply_defaults(istio(mode="PERMISSIVE"), schema=SCHEMA)
    assert kept["spec"]["mode"] == "PERMISSIVE"


def test_prune_drops_unknown_fields_but_keeps_preserved_ones() -> None:
    obj = istio(
        unknown=1,
        gateways=[{"name": "in", "color": "red"}],
        extra={"free": {"form": True}},
        labels={"a": "b"},
    )
    obj["status"] = {"anything": "goes"}
    obj["metadata"]["annotations"] = {"a": "b"}
    obj["top"] = 1
    pruned = prune(obj, schema=SCHEMA)
    assert "unknown" not in pruned["spec"]
    assert "top" not in pruned
    assert pruned["spec"]["gateways"] == [{"name": "in"}]
    assert pruned["spec"]["extra"] == {"free": {"form": True}}
    assert pruned["spec"]["labels"] == {"a": "b"}
    assert pruned["status"] == {"anything": "goes"}
    assert pruned["metadata"] == obj["metadata"]
    assert pruned["apiVersion"] == obj["apiVersion"]
    assert unknown_fields(obj, schema=SCHEMA) == ["spec.unknown", "spec.gateways[0].color", "top"]
    embedded = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "template": {
                        "type": "object",
                        "x-kubernetes-embedded-resource": True,
                        "properties": {"data": {"type": "string"}},
                    }
                },
            }
        },
    }
    doc = {"spec": {"template": {"apiVersion": "v1", "kind": "ConfigMap", "data": "x", "z": 1}}}
    assert prune(doc, schema=embedded) == {
        "spec": {"template": {"apiVersion": "v1", "kind": "ConfigMap", "data": "x"}}
    }


# ------------------------------------------------------------------------ names


def test_names_follow_the_rules_of_their_kind() -> None:
    assert validate_name("web-1.example") is None
    error = validate_name("Web_1")
    assert error is not None
    assert str(error) == (
        'metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of '
        "lower case alphanumeric characters, '-' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
    assert error.reason == "FieldValueInvalid"
    namespace = validate_name("a.b", kind="Namespace")
    assert namespace is not None and "RFC 1123 label" in namespace.message
    service = validate_name("1web", kind="Service")
    assert service is not None and "DNS-1035 label" in service.message
    assert validate_name("web", kind="Service") is None
    assert validate_name("system:auth-delegator", kind="ClusterRole") is None
    role = validate_name("a/b", kind="Role")
    assert role is not None and role.message == "Invalid value: \"a/b\": may not contain '/'"
    long_label = name_errors("a" * 64, kind="Namespace")
    assert [e.message for e in long_label] == [
        'Invalid value: "' + "a" * 64 + '": must be no more than 63 characters'
    ]
    assert validate_name("") == FieldError.required(
        "metadata.name", "name or generateName is required"
    )


@pytest.mark.parametrize("name", ["a", "a-b", "a.b.c", "0abc", "x" * 253])
def test_valid_subdomain_names(name: str) -> None:
    assert validate_name(name, kind="ConfigMap") is None


@pytest.mark.parametrize("name", ["-a", "a-", "A", "a..b", "a_b", "x" * 254])
def test_invalid_subdomain_names(name: str) -> None:
    assert validate_name(name, kind="ConfigMap") is not None


def test_labels_and_annotations_follow_the_metadata_rules() -> None:
    obj = deployment()
    obj["metadata"]["labels"] = {
        "good.example.com/name": "v-1.2_3",
        "bad key": "x",
        "app": "not valid!",
        "empty": "",
    }
    obj["metadata"]["annotations"] = {"a/b/c": "x"}
    errors, _ = validate_builtin(obj)
    assert messages(errors) == [
        'metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character "
        "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        'metadata.labels: Invalid value: "not valid!": a valid label must be an empty string '
        "or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
        "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        'metadata.annotations: Invalid value: "a/b/c": a qualified name must consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and "
        "'/' (e.g. 'example.com/MyName')",
    ]
    long_value = istio()
    long_value["metadata"]["labels"] = {"a": "x" * 64}
    assert messages(validate_custom(long_value, schema=SCHEMA)) == [
        'metadata.labels: Invalid value: "' + "x" * 64 + '": must be no more than 63 characters'
    ]
    huge = deployment()
    huge["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    assert messages(validate_builtin(huge)[0]) == [
        "metadata.annotations: Too long: must have at most 262144 bytes"
    ]


def test_custom_formats_are_checked_as_the_server_does() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "ip": {"type": "string", "format": "ipv4"},
        "net": {"type": "string", "format": "cidr"},
        "when": {"type": "string", "format": "date-time"},
        "blob": {"type": "string", "format": "byte"},
        "free": {"type": "string", "format": "no-such-format"},
    }}}}
    good = {"spec": {"ip": "10.0.0.1", "net": "10.0.0.0/8", "when": "2024-01-01T00:00:00Z", "blob": "aGk=",
                     "free": "anything"}}
    assert validate_custom(good, schema=schema) == []
    bad = {"spec": {"ip": "300.1.2.3", "net": "10.0.0.0/33", "when": "yesterday", "blob": "a!", "free": "x"}}
    errors = validate_custom(bad, schema=schema)
    assert messages(errors) == [
        'spec.ip: Invalid value: "300.1.2.3": spec.ip in body must be of type ipv4: "300.1.2.3"',
        'spec.net: Invalid value: "10.0.0.0/33": spec.net in body must be of type cidr: "10.0.0.0/33"',
        'spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"',
        'spec.blob: Invalid value: "a!": spec.blob in body must be of type byte: "a!"',
    ]
    assert {e.reason for e in errors} == {"FieldValueTypeInvalid"}  # blocking for CEL rules
