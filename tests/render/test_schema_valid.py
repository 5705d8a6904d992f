"""Every object render can produce validates against the upstream Kubernetes schemas.

Each profile is rendered for a master and a remote with every component and option on
(and a few variants that switch code paths: other tracers, no HPA, SDS off), and each
built-in object is checked with ``kubernetes-validate`` in strict mode (unknown fields
are errors) for Kubernetes 1.30. Istio's own custom resources have no upstream schema;
their CustomResourceDefinitions are validated instead (as apiextensions.k8s.io/v1
objects), and each custom resource is checked to belong to one of those CRDs.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from federationd.api import v1beta1
from federationd.render import render_master, render_remote
from federationd.render.objects import (
    MeshNetwork,
    NetworkGateway,
    RenderFacts,
    content_hash,
    ref,
)

from .specs import MINIMAL, NS, full, full_remote

K8S_VERSION = "1.30.0"

FACTS = RenderFacts(
    cluster="master",
    network="network-master",
    mesh_networks=(
        MeshNetwork(
            name="network-master",
            from_registry=("Kubernetes",),
            gateways=(NetworkGateway(address="203.0.113.10", port=443),),
        ),
        MeshNetwork(
            name="remote-eu",
            from_registry=("remote-eu",),
            gateways=(NetworkGateway(address="198.51.100.7", port=443),),
        ),
    ),
    ca_secret_name="cacerts",
    localities=("eu-north-1/eu-north-1a", "europe-west2/europe-west2-a"),
)


def _variants(version: str) -> list[dict[str, Any]]:
    base = full(version)
    lightstep = copy.deepcopy(base)
    lightstep["tracing"] = {
        "tracer": "lightstep",
        "lightstep": {"address": "lightstep.example:443", "accessToken": "t", "secure": True, "cacertPath": "/c"},
    }
    datadog = copy.deepcopy(base)
    datadog["tracing"] = {"tracer": "datadog"}
    datadog["sidecarInjector"]["initCNIConfiguration"]["enabled"] = False
    datadog["sds"] = {"enabled": False}
    datadog["controlPlaneSecurityEnabled"] = False
    datadog["pilot"]["sidecar"] = False
    return [base, lightstep, datadog, {**MINIMAL, "version": version}]


def _validate_all(objs: list[dict[str, Any]], seen: set[str]) -> tuple[int, int]:
    crds = {
        (o["spec"]["group"], o["spec"]["names"]["kind"])
        for o in objs
        if o["kind"] == "CustomResourceDefinition"
    }
    builtin = custom = 0
    for o in objs:
        group = o["apiVersion"].rsplit("/", 1)[0] if "/" in o["apiVersion"] else ""
        if group.endswith(".istio.io"):
            # No upstream schema exists for Istio's kinds; the CRD that serves them does.
            assert (group, o["kind"]) in crds, f"{ref(o)} has no CRD in the rendered set"
            custom += 1
            continue
        digest = content_hash(o)
        if digest in seen:
            continue  # identical object already validated in another variant
        seen.add(digest)
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{ref(o)}: {e.message} at {list(e.path)}")
        builtin += 1
    return builtin, custom


@pytest.mark.parametrize("version", ["1.1.14", "1.2.2"])
def test_every_object_validates(version: str) -> None:
    checked = 0
    seen: set[str] = set()
    for raw in _variants(version):
        spec = v1beta1.istio_spec(raw, namespace=NS)
        master = render_master(spec, namespace=NS, facts=FACTS)
        remote = v1beta1.remote_istio_spec(full_remote(), namespace=NS)
        remote_objs = render_remote(
            spec,
            remote,
            namespace=NS,
            facts=RenderFacts(cluster="remote-eu", role="remote", network="remote-eu", mesh_networks=FACTS.mesh_networks, ca_secret_name="cacerts"),
        )
        b1, c1 = _validate_all(master, seen)
        b2, _ = _validate_all(remote_objs, seen)
        checked += b1 + b2
        assert c1 > 0
    kinds_seen = {o["kind"] for o in render_master(v1beta1.istio_spec(full(version), namespace=NS), namespace=NS, facts=FACTS)}
    # The widest render really exercises every kind the profiles can produce.
    assert {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Service",
        "Deployment",
        "DaemonSet",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
    } <= kinds_seen
    print(f"{version}: {checked} distinct built-in objects validated against Kubernetes {K8S_VERSION} (strict)")


def test_validator_rejects_a_broken_object() -> None:
    """The check above can fail: an unknown field in a Deployment is an error in strict mode."""
    spec = v1beta1.istio_spec(MINIMAL, namespace=NS)
    dep = next(o for o in render_master(spec, namespace=NS, facts=RenderFacts()) if o["kind"] == "Deployment")
    broken = copy.deepcopy(dep)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
