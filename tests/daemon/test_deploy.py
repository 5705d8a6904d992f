"""deploy/: valid manifests, flags the daemon accepts, RBAC that covers what it writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from federationd import config
from federationd.api import v1beta1
from federationd.render import render_master, render_remote
from federationd.render.objects import RenderFacts
from federationd.sim.kinds import Registry, kinds_from_crd

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def test_builtin_manifests_validate() -> None:
    for name in ("rbac.yaml", "deployment.yaml", "service.yaml"):
        for doc in _docs(name):
            kubernetes_validate.validate(doc, "1.32", strict=True)


def test_the_deployment_runs_two_leader_elected_replicas_with_valid_flags() -> None:
    (dep,) = _docs("deployment.yaml")
    assert dep["spec"]["replicas"] == 2
    container = dep["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "run"
    s = config.load(args[1:], env={})
    assert s.leader_elect and s.http_host == "0.0.0.0"
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http-metrics")
    assert s.http_port == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (mon,) = _docs("servicemonitor.yaml")
    (svc,) = _docs("service.yaml")
    assert mon["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}


def _allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"]
        and (resource in r["resources"] or "*" in r["resources"])
        and verb in r["verbs"]
        for r in rules
    )


def test_the_cluster_roles_cover_every_rendered_kind() -> None:
    """The master's role covers what the master and a remote get (the same kinds but
    for the remote's Namespace); cluster-add's role covers what a remote gets."""
    role = next(d for d in _docs("rbac.yaml") if d["kind"] == "ClusterRole")
    remote_role = next(d for d in _docs("samples/cluster-add/istio-operator.yaml") if d["kind"] == "ClusterRole")
    spec = v1beta1.istio_spec({"mtls": True, "gateways": {"k8singress": {"enabled": True}}, "sidecarInjector": {"initCNIConfiguration": {"enabled": True}}, "nodeAgent": {"enabled": True}, "istioCoreDNS": {"enabled": True}, "defaultPodDisruptionBudget": {"enabled": True}}, namespace="istio-system")
    master_objs = render_master(spec, namespace="istio-system", facts=RenderFacts())
    remote_objs = render_remote(spec, v1beta1.remote_istio_spec({"enabledServices": []}, namespace="istio-system"), namespace="istio-system", facts=RenderFacts(role="remote"))
    registry = Registry.with_builtins()
    for o in master_objs + remote_objs:
        if o["kind"] == "CustomResourceDefinition":
            for k in kinds_from_crd(o):
                registry.add(k)
    for objs, rules in ((master_objs, role["rules"]), (remote_objs, remote_role["rules"])):
        for o in objs:
            kind = registry.by_kind(o["apiVersion"], o["kind"])
            assert kind is not None, o["kind"]
            # server-side apply creates or patches; the control-plane Namespace (made by
            # cluster-add) is only patched, and released rather than deleted
            verbs = ("list", "watch", "patch") if kind.kind == "Namespace" else ("list", "watch", "create", "patch", "delete")
            for verb in verbs:
                assert _allowed(rules, kind.group, kind.plural, verb), (kind.group, kind.plural, verb)
    for verb in ("get", "create", "update"):
        assert _allowed(role["rules"], "coordination.k8s.io", "leases", verb)
    assert _allowed(role["rules"], "istio.banzaicloud.io", "istios/status", "patch")
