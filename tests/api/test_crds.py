"""The CRDs: generated from the API types, kept in deploy/crds/, structural, and in
agreement with the decoder on what is valid."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from federationd.api import crds
from federationd.api import v1beta1 as v

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).parent / "samples"
NS = "istio-system"


def _samples() -> list[Path]:
    return sorted(SAMPLES.glob("*.yaml"))


def _json_schema(node: Any) -> Any:
    """OpenAPI v3 ``nullable`` → JSON Schema's ``type: [t, "null"]`` (jsonschema ignores
    ``nullable``); everything else is already JSON Schema."""
    if isinstance(node, list):
        return [_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(x) for k, x in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def _validator(kind: crds.Kind) -> jsonschema.Draft7Validator:
    schema = crds.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(_json_schema(schema))


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", crds.KINDS)
def test_deploy_files_are_the_generator_output(kind: crds.Kind) -> None:
    path = ROOT / "deploy" / "crds" / crds.file_name(kind)
    assert path.read_text() == crds.render_yaml(kind), (
        "deploy/crds is stale: run `python -m federationd.api.crds --write deploy/crds`"
    )
    assert yaml.safe_load(path.read_text()) == crds.crd(kind)


def test_check_mode_reports_stale_files(tmp_path: Path) -> None:
    assert crds.main(["--write", str(tmp_path)]) == 0
    assert crds.main(["--check", str(tmp_path)]) == 0
    (tmp_path / crds.file_name("Istio")).write_text("stale\n")
    assert crds.main(["--check", str(tmp_path)]) == 1


@pytest.mark.parametrize("kind", crds.KINDS)
def test_crd_shape(kind: crds.Kind) -> None:
    c = crds.crd(kind)
    plural = kind.lower() + "s"
    assert c["apiVersion"] == "apiextensions.k8s.io/v1"
    assert c["metadata"]["name"] == f"{plural}.istio.banzaicloud.io"
    assert c["spec"]["group"] == "istio.banzaicloud.io"
    assert c["spec"]["scope"] == "Namespaced"
    assert c["spec"]["names"]["kind"] == kind
    assert c["spec"]["names"]["plural"] == plural
    (version,) = c["spec"]["versions"]
    assert version["name"] == "v1beta1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert [
        (col["name"], col["type"], col["jsonPath"]) for col in version["additionalPrinterColumns"]
    ] == [
        ("Status", "string", ".status.Status"),
        ("Error", "string", ".status.ErrorMessage"),
        ("Gateways", "string", ".status.GatewayAddress"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


@pytest.mark.parametrize("kind", crds.KINDS)
def test_crd_is_a_valid_kubernetes_object(kind: crds.Kind) -> None:
    # The apiextensions.k8s.io/v1 schema of a Kubernetes version users still run.
    kubernetes_validate.validate(crds.crd(kind), "1.30.0", strict=True)


@pytest.mark.parametrize("kind", crds.KINDS)
def test_schema_is_structural(kind: crds.Kind) -> None:
    schema = crds.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _nodes(schema):
        where = path or "<root>"
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], where
            assert "type" not in node, where
        else:
            assert node.get("type") in {
                "object",
                "array",
                "string",
                "integer",
                "number",
                "boolean",
            }, where
            assert "anyOf" not in node and "oneOf" not in node, where
        assert "default" not in node, where
        assert "$ref" not in node, where
        assert not ("properties" in node and "additionalProperties" in node), where
        if node.get("type") == "array":
            assert "items" in node, where
    # The metadata is left to the API server, but for what a CRD may restrict: the name.
    meta = schema["properties"]["metadata"]
    assert meta["type"] == "object"
    assert set(meta.get("properties", {})) <= {"name", "generateName"}


@pytest.mark.parametrize("kind", crds.KINDS)
def test_crd_rules_compile_and_use_only_what_1_25_has(kind: crds.Kind) -> None:
    """A rule field newer than 1.25 (messageExpression, reason, fieldPath) would make a
    1.25 server refuse the whole CRD; a rule that does not compile would too."""
    from federationd.sim import celrules

    crd = crds.crd(kind, cel=True)
    rules = [r for _, node in _nodes(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
             for r in node.get("x-kubernetes-validations", [])]
    assert rules
    # deploy/crds/ carries none: kubectl refuses the field on the releases (<= 1.21) that
    # can run Istio 1.1/1.2's control plane (tests/corpus/test_kubectl_corpus.py)
    plain = crds.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert not any("x-kubernetes-validations" in node for _, node in _nodes(plain))
    for rule in rules:
        assert set(rule) <= {"rule", "message"}, rule
    for release in ("1.25", "1.32"):
        assert celrules.crd_rule_errors(crd, release=release) == []


def test_schema_carries_the_sources_constraints() -> None:
    spec = crds.crd("Istio")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    p = spec["properties"]
    assert p["imagePullPolicy"]["enum"] == sorted(["Always", "Never", "IfNotPresent"])
    assert p["outboundTrafficPolicy"]["properties"]["mode"]["enum"] == [
        "ALLOW_ANY",
        "REGISTRY_ONLY",
    ]
    proxy = p["proxy"]["properties"]
    assert proxy["dnsRefreshRate"]["pattern"] == "^[0-9]{1,5}s$"
    assert set(proxy["logLevel"]["enum"]) == {
        "trace",
        "debug",
        "info",
        "warning",
        "error",
        "critical",
        "off",
    }
    tracing = p["tracing"]["properties"]
    assert set(tracing["tracer"]["enum"]) == {"zipkin", "lightstep", "datadog"}
    for tracer in ("zipkin", "lightstep", "datadog"):
        assert tracing[tracer]["properties"]["address"]["pattern"] == r"^[^\:]+:[0-9]{1,5}$"
    ingress = p["gateways"]["properties"]["ingress"]["properties"]
    assert set(ingress["serviceType"]["enum"]) == {"ClusterIP", "NodePort", "LoadBalancer"}
    assert ingress["ports"]["items"]["required"] == ["port"]
    assert ingress["ports"]["items"]["properties"]["targetPort"]["x-kubernetes-int-or-string"]
    assert ingress["affinity"]["x-kubernetes-preserve-unknown-fields"]
    assert p["version"]["pattern"] == v.VERSION_PATTERN
    weights = p["localityLB"]["properties"]["distribute"]["items"]["properties"]["to"]
    assert weights["additionalProperties"]["type"] == "integer"
    remote = crds.crd("RemoteIstio")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rspec = remote["properties"]["spec"]
    assert rspec["required"] == ["enabledServices"]
    assert rspec["properties"]["enabledServices"]["items"]["required"] == ["name"]
    status = remote["properties"]["status"]["properties"]
    assert set(status) == {
        "Status",
        "GatewayAddress",
        "ErrorMessage",
        "conditions",
        "observedGeneration",
    }
    assert set(status["Status"]["enum"]) == {
        "Created",
        "Reconciling",
        "Available",
        "ReconcileFailed",
        "Unmanaged",
    }


@pytest.mark.parametrize("path", _samples(), ids=lambda p: p.name)
def test_every_seed_sample_validates_and_decodes(path: Path) -> None:
    cr = yaml.safe_load(path.read_text())
    kind = cr["kind"]
    assert kind in crds.KINDS
    errors = [f"{_path(e.absolute_path)}: {e.message}" for e in _validator(kind).iter_errors(cr)]
    assert errors == []
    if kind == "Istio":
        spec = v.istio_spec(cr["spec"], namespace=NS)
        assert v.version_family(spec.version) in {"1.1", "1.2"}
    else:
        assert v.remote_istio_spec(cr["spec"], namespace=NS).enabled_services


def test_decoded_wire_form_validates_against_the_schema() -> None:
    """What federationd derives from a spec (with every default applied) is itself a valid
    spec: the schema and the defaults do not contradict each other."""
    for path in _samples():
        cr = yaml.safe_load(path.read_text())
        if cr["kind"] == "Istio":
            cr["spec"] = v.to_builtins(v.istio_spec(cr["spec"], namespace=NS))
        else:
            cr["spec"] = v.to_builtins(v.remote_istio_spec(cr["spec"], namespace=NS))
        assert list(_validator(cr["kind"]).iter_errors(cr)) == [], path.name


def test_unsupported_version_passes_the_schema() -> None:
    """An unsupported version must reach federationd (status: "intended Istio version is
    unsupported…") rather than be refused by the API server without a trace."""
    cr = yaml.safe_load((SAMPLES / "000_istio.yaml").read_text())
    cr["spec"]["version"] = "1.3.0"
    assert list(_validator("Istio").iter_errors(cr)) == []
    assert v.istio_spec(cr["spec"], namespace=NS).version == "1.3.0"


@pytest.mark.parametrize(
    ("kind", "patch", "path"),
    [
        ("Istio", {"pilot": {"replicaCount": "two"}}, "spec.pilot.replicaCount"),
        ("Istio", {"pilot": {"replicaCount": -1}}, "spec.pilot.replicaCount"),
        ("Istio", {"mtls": "yes"}, "spec.mtls"),
        ("Istio", {"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy"),
        ("Istio", {"proxy": {"dnsRefreshRate": "5m"}}, "spec.proxy.dnsRefreshRate"),
        ("Istio", {"proxy": {"logLevel": "loud"}}, "spec.proxy.logLevel"),
        ("Istio", {"tracing": {"zipkin": {"address": "no-port"}}}, "spec.tracing.zipkin.address"),
        ("Istio", {"tracing": {"tracer": "jaeger"}}, "spec.tracing.tracer"),
        ("Istio", {"version": "latest"}, "spec.version"),
        (
            "Istio",
            {"gateways": {"ingress": {"serviceType": "External"}}},
            "spec.gateways.ingress.serviceType",
        ),
        (
            "Istio",
            {"gateways": {"egress": {"ports": [{"name": "x"}]}}},
            "spec.gateways.egress.ports[0]",
        ),
        (
            "Istio",
            {"gateways": {"egress": {"ports": [{"port": 70000}]}}},
            "spec.gateways.egress.ports[0].port",
        ),
        ("Istio", {"autoInjectionNamespaces": "default"}, "spec.autoInjectionNamespaces"),
        ("Istio", {"outboundTrafficPolicy": {"mode": "DENY"}}, "spec.outboundTrafficPolicy.mode"),
        ("RemoteIstio", {"enabledServices": [{"labelSelector": "a=b"}]}, "spec.enabledServices[0]"),
        ("RemoteIstio", {"enabledServices": "istio-pilot"}, "spec.enabledServices"),
    ],
)
def test_invalid_specs_are_rejected_by_schema_and_decoder_at_the_same_path(
    kind: crds.Kind, patch: dict[str, Any], path: str
) -> None:
    base = "001_remoteistio_gke.yaml" if kind == "RemoteIstio" else "000_istio.yaml"
    cr = copy.deepcopy(yaml.safe_load((SAMPLES / base).read_text()))
    cr["spec"].update(patch)
    errors = list(_validator(kind).iter_errors(cr))
    assert errors, "the schema accepted an invalid spec"
    assert {_path(e.absolute_path) for e in errors} == {path}
    decode = v.istio_spec if kind == "Istio" else v.remote_istio_spec
    with pytest.raises(v.SpecError) as info:
        decode(cr["spec"], namespace=NS)
    assert info.value.path == path


def test_remote_istio_without_enabled_services_is_rejected() -> None:
    cr = yaml.safe_load((SAMPLES / "001_remoteistio_eks.yaml").read_text())
    del cr["spec"]["enabledServices"]
    errors = list(_validator("RemoteIstio").iter_errors(cr))
    assert [(_path(e.absolute_path), e.validator) for e in errors] == [("spec", "required")]


def test_status_validates() -> None:
    cr = yaml.safe_load((SAMPLES / "000_istio.yaml").read_text())
    cr["status"] = v.to_builtins(
        v.Status(
            status="ReconcileFailed",
            error_message="intended Istio version is unsupported by this version of the operator",
            conditions=[v.Condition(type="Ready", status="False", reason="UnsupportedVersion")],
            observed_generation=2,
        )
    )
    assert list(_validator("Istio").iter_errors(cr)) == []
    cr["status"]["Status"] = "Stuck"
    assert [_path(e.absolute_path) for e in _validator("Istio").iter_errors(cr)] == [
        "status.Status"
    ]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        crds.crd("MeshGateway")  # type: ignore[arg-type]
