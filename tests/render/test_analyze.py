"""``federationd analyze``: the seed workflows analyze clean, and each defect of issue 11
(1-9), put back into a mesh, is reported naming the objects and the fix."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from events import types as ev
from events.types import ClusterName, Event
from federationd import analyze as a
from federationd.projections.state import EMPTY, ProjectionState, fold
from federationd.render import render_master
from federationd.render.objects import RenderFacts
from tests.projections.helpers import Rec

from .test_golden import INPUTS, KUBERNETES_1_14_APIS, NS

MASTER, REMOTE = ClusterName("master"), ClusterName("remote-eu")


def _spec(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((INPUTS / f"{name}.yaml").read_text())
    spec: dict[str, Any] = doc["spec"]
    return spec


def _gateway(cluster: ClusterName, ip: str, spec: dict[str, Any]) -> ev.GatewayAddressesObserved:
    from federationd.api import v1beta1

    svc = next(
        o for o in render_master(v1beta1.istio_spec(spec, namespace=NS), namespace=NS, facts=RenderFacts())
        if o["kind"] == "Service" and o["metadata"]["name"] == "istio-ingressgateway"
    )
    return ev.GatewayAddressesObserved(
        cluster=cluster, key=f"Service/{NS}/istio-ingressgateway", time=1, namespace=NS, name="istio-ingressgateway",
        service_type=svc["spec"].get("type", "LoadBalancer"), ips=(ip,),
        ports={p["name"]: p["port"] for p in svc["spec"]["ports"]},
        node_ports={p["name"]: p["nodePort"] for p in svc["spec"]["ports"] if "nodePort" in p},
    )


def _state(spec: dict[str, Any], *, remote: bool = True) -> ProjectionState:
    state = EMPTY
    for i, e in enumerate(_events(spec, remote=remote), 1):
        state = fold(state, Rec(i, e))
    return state


def _events(spec: dict[str, Any], *, remote: bool = True) -> list[Event]:
    events: list[Event] = [
        ev.IstioSpecChanged(cluster=MASTER, key=f"Istio/{NS}/istio", time=1, namespace=NS, name="istio", spec=spec, generation=1, uid="u1", creation_timestamp="2026-01-01T00:00:00Z"),
        _gateway(MASTER, "35.195.10.20", spec),
        ev.NodeLocalityObserved(cluster=MASTER, key="Node//m1", time=1, node="m1", region="europe-west2", zone="europe-west2-a"),
    ]
    if remote:
        events += [
            ev.RemoteIstioSpecChanged(cluster=MASTER, key=f"RemoteIstio/{NS}/{REMOTE}", time=2, namespace=NS, name=REMOTE, spec={"enabledServices": [{"name": "istio-pilot", "labelSelector": "istio=pilot"}]}, generation=1, uid="u2", creation_timestamp="2026-01-01T00:00:00Z"),
            ev.KubeconfigObserved(cluster=MASTER, key=f"Secret/{NS}/{REMOTE}", time=2, remote=REMOTE, server="https://203.0.113.5", fingerprint="ab" * 32),
            # connected and identified: a remote enters meshNetworks only then
            ev.ClusterIdentityObserved(cluster=REMOTE, key="Namespace//kube-system", time=2, uid="uid-remote"),
            _gateway(REMOTE, "13.48.20.30", spec),
            ev.NodeLocalityObserved(cluster=REMOTE, key="Node//r1", time=1, node="r1", region="eu-north-1", zone="eu-north-1a"),
        ]
    return events


SEEDS = ["seed-000-minimal", "seed-002-1.1.11", "seed-002-locality-failover", "seed-002-locality-distribute", "seed-004-cni", "everything-1.2"]


@pytest.mark.parametrize("remote", [False, True], ids=["alone", "with-a-remote"])
@pytest.mark.parametrize("seed", SEEDS)
def test_seed_workflows_analyze_clean(seed: str, remote: bool) -> None:
    """Every seed's resource, alone and federating a remote. Seeds 001/002 federate
    through gateways (their CR has meshExpansion, like the operator's
    docs/federation/gateway/samples/istio-multicluster-cr.yaml); without meshExpansion
    the remote shares the master's flat network (seed 000's federation), and no gateway
    is announced in meshNetworks (the operator's ``istio_controller.go``) — announcing
    one would send cross-cluster traffic to a gateway with no ``*.local`` passthrough."""
    spec = _spec(seed)
    view = a.view_from_state(_state(spec, remote=remote))
    assert {c.name for c in view.clusters} == ({"master", "remote-eu"} if remote else {"master"})
    errors = [f for f in a.analyze(view) if f.severity == "error"]
    assert errors == [], a.table(errors)


def _objects(view: a.MeshView, cluster: str) -> list[dict[str, Any]]:
    c = view.cluster(cluster)
    assert c is not None
    return [copy.deepcopy(o) for o in c.objects]


def _with(view: a.MeshView, cluster: str, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]], **facts: Any) -> a.MeshView:
    clusters = tuple(
        msgspec.structs.replace(c, objects=tuple(change(_objects(view, c.name))), **facts) if c.name == cluster else c
        for c in view.clusters
    )
    return msgspec.structs.replace(view, clusters=clusters)


def _get(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def _errors(view: a.MeshView, check: str) -> list[a.Finding]:
    return [f for f in a.analyze(view) if f.severity == "error" and f.check == check]


def _base(seed: str = "everything-1.2", **extra: Any) -> a.MeshView:
    spec = _spec(seed)
    spec.update(extra)
    view = a.view_from_state(_state(spec))
    assert not [f for f in a.analyze(view) if f.severity == "error"]
    return view


def test_defect_1_injector_without_values() -> None:
    def drop(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        del _get(objs, "ConfigMap", "istio-sidecar-injector")["data"]["values"]
        return objs

    (f,) = _errors(_with(_base(), "master", drop), "injector-configmap-keys")
    assert f.objects == (f"ConfigMap/{NS}/istio-sidecar-injector", f"Deployment/{NS}/istio-sidecar-injector")
    assert "values" in f.message and "`values` key" in f.fix


def test_defect_2_curly_template_on_1_1() -> None:
    def curly(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        cm = _get(objs, "ConfigMap", "istio-sidecar-injector")
        cm["data"]["config"] = cm["data"]["config"].replace("[[", "{{").replace("]]", "}}")
        return objs

    (f,) = _errors(_with(_base("seed-002-1.1.11"), "master", curly), "injection-template-delimiters")
    assert f.objects == (f"ConfigMap/{NS}/istio-sidecar-injector",) and "[[ ... ]]" in f.fix


def test_defect_3_mixer_plain_mcp_with_tls_galley() -> None:
    def plain(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for name in ("istio-policy", "istio-telemetry"):
            c = _get(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
            c["args"] = [x.replace("mcps://", "mcp://") for x in c["args"]]
        return objs

    found = _errors(_with(_base("seed-002-1.1.11"), "master", plain), "mixer-config-store")
    assert {f.objects for f in found} == {
        (f"Deployment/{NS}/istio-policy", f"Deployment/{NS}/istio-galley"),
        (f"Deployment/{NS}/istio-telemetry", f"Deployment/{NS}/istio-galley"),
    }
    assert all("mcps://" in f.fix for f in found)


def test_defect_4_api_versions_and_webhook_ca_bundle() -> None:
    view = _base()
    # What the daemon renders while the served APIs are unknown, on a real 1.14 cluster:
    found = _errors(_with(view, "master", lambda o: o, kubernetes_apis=KUBERNETES_1_14_APIS), "kubernetes-api-versions")
    assert found and f"HorizontalPodAutoscaler/{NS}/istio-pilot" in found[0].objects
    # A Kubernetes 1.22+ cluster: no admissionregistration.k8s.io/v1beta1 at all.
    modern = tuple(v for v in (*KUBERNETES_1_14_APIS, "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1", "autoscaling/v2", "policy/v1") if "v1beta" not in v and "v2beta" not in v)
    (f,) = _errors(_with(view, "master", lambda o: o, kubernetes_apis=modern), "webhook-cabundle")
    assert f.objects == ("MutatingWebhookConfiguration/istio-sidecar-injector",) and "1.21" in f.fix


def test_defect_5_announced_port_without_local_passthrough() -> None:
    def announce_15443(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        cm = _get(objs, "ConfigMap", "istio")
        cm["data"]["meshNetworks"] = cm["data"]["meshNetworks"].replace("port: 443", "port: 15443")
        return objs

    found = _errors(_with(_base(), "master", announce_15443), "cross-network-port")
    assert {f.clusters for f in found} == {("master", "master"), ("master", "remote-eu")}
    assert all(f"Gateway/{NS}/cluster-aware-gateway" in f.objects and "443" in f.fix for f in found)


def test_defect_6_pilot_and_mixer_through_the_gateway() -> None:
    def strip(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        objs = [o for o in objs if o["metadata"]["name"] != "meshexpansion-dr-pilot"]
        gw = _get(objs, "Gateway", "meshexpansion-gateway")
        for s in gw["spec"]["servers"]:
            if s["port"]["number"] == 15004:
                s.pop("tls")
                s["port"].update(protocol="TCP", name="tcp-mixer")
        return objs

    found = {f.check: f for f in a.analyze(_with(_base("seed-002-1.1.11"), "master", strip)) if f.severity == "error"}
    assert f"DestinationRule/{NS}/meshexpansion-dr-pilot" in found["pilot-through-gateway"].objects
    assert found["mixer-through-gateway"].objects == (f"Gateway/{NS}/meshexpansion-gateway",)
    assert "tls-mixer" in found["mixer-through-gateway"].fix


def test_defect_7_unlabelled_kubeconfig_secret() -> None:
    def unlabel(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [o for o in objs if o["kind"] != "Secret"]

    (f,) = _errors(_with(_base(), "master", unlabel), "remote-registry-secret")
    assert f.clusters == ("master", "remote-eu") and "istio/multiCluster=true" in f.fix


def test_defect_8_node_agent_rbac_and_sds_socket_mount() -> None:
    def old(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _get(objs, "ClusterRole", f"istio-nodeagent-{NS}")["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
        cm = _get(objs, "ConfigMap", "istio-sidecar-injector")
        config = yaml.safe_load(cm["data"]["config"])
        assert "path: /var/run/sds\n" in config["template"]
        config["template"] = config["template"].replace("path: /var/run/sds\n", "path: /var/run/sds/uds_path\n    type: Socket\n")
        cm["data"]["config"] = yaml.safe_dump(config)
        return objs

    view = _with(_base(), "master", old)
    (rbac,) = _errors(view, "component-rbac")
    assert rbac.objects == (f"ClusterRole/istio-nodeagent-{NS}",) and "configmaps" in rbac.fix
    (sds,) = _errors(view, "sds-mount")
    assert "/var/run/sds" in sds.fix


def test_defect_9_multi_mesh_rewrite_search_and_dns() -> None:
    def strip(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        objs = [o for o in objs if o["kind"] != "EnvoyFilter"]
        cm = _get(objs, "ConfigMap", "istio-sidecar-injector")
        config = yaml.safe_load(cm["data"]["config"])
        assert "\ndnsConfig:" in config["template"]
        config["template"] = config["template"].split("\ndnsConfig:")[0]
        cm["data"]["config"] = yaml.safe_dump(config)
        objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": ".:53 {\n    kubernetes cluster.local\n}\n"}})
        return objs

    view = _with(_base(multiMesh=True), "master", strip)
    checks = {f.check: f for f in a.analyze(view) if f.severity == "error"}
    assert checks["multimesh-sni-rewrite"].objects == (f"Gateway/{NS}/istio-multicluster-ingressgateway",)
    assert "global" in checks["multimesh-dns-search"].fix
    assert checks["multimesh-cluster-dns"].objects == ("ConfigMap/kube-system/coredns",)


#: the Corefile after the source operator's istiocoredns reconciler (release-1.2,
#: pkg/resources/istiocoredns/coredns.go: a `global:53` server block with `errors`,
#: `cache 30`, `proxy . <istiocoredns ClusterIP>`, written back through caddyfile with
#: tabs turned into two spaces) and its kube-dns counterpart (kubedns.go: stubDomains
#: `{"global": ["<ClusterIP>"]}`, json.Marshal'ed)
OPERATOR_COREFILE = (
    ".:53 {\n  errors\n  health\n  kubernetes cluster.local in-addr.arpa ip6.arpa {\n    pods insecure\n  }\n"
    "  proxy . /etc/resolv.conf\n  cache 30\n}\nglobal:53 {\n  errors\n  cache 30\n  proxy . {ip}\n}\n"
)


@pytest.mark.parametrize(
    ("configmap", "data", "ok"),
    [
        ("coredns", {"Corefile": OPERATOR_COREFILE.replace("{ip}", "10.96.0.53")}, True),
        ("coredns", {"Corefile": OPERATOR_COREFILE.replace("{ip}", "10.96.0.99")}, False),
        ("kube-dns", {"stubDomains": '{"global":["10.96.0.53"]}'}, True),
        ("kube-dns", {"stubDomains": '{"acme.local":["1.2.3.4"]}'}, False),
    ],
)
def test_defect_9_cluster_dns_must_forward_global_to_istiocoredns(configmap: str, data: dict[str, str], ok: bool) -> None:
    def wire(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _get(objs, "Service", "istiocoredns")["spec"]["clusterIP"] = "10.96.0.53"
        objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": configmap, "namespace": "kube-system"},
                     "data": data})
        return objs

    found = _errors(_with(_base(multiMesh=True), "master", wire), "multimesh-cluster-dns")
    if ok:
        assert found == []
        return
    (f,) = found
    assert f.objects[0] == f"ConfigMap/kube-system/{configmap}"
    # the fix is the operator's own entry, with the istiocoredns ClusterIP filled in
    assert ("global:53 { errors; cache 30; proxy . 10.96.0.53 }" in f.fix) or ('{"global": ["10.96.0.53"]}' in f.fix)


def test_locality_rules_naming_no_observed_locality_warn() -> None:
    def rename(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        cm = _get(objs, "ConfigMap", "istio")
        cm["data"]["mesh"] = cm["data"]["mesh"].replace("eu-north-1", "us-central1")
        return objs

    found = [f for f in a.analyze(_with(_base("seed-002-locality-distribute"), "master", rename)) if f.check == "locality-rules"]
    assert found and found[0].severity == "warning" and "us-central1" in found[0].message


def test_cli_on_an_event_log_prints_a_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from events.log import EventLog

    state_events = [
        ev.IstioSpecChanged(cluster=MASTER, key=f"Istio/{NS}/istio", time=1, namespace=NS, name="istio", spec=_spec("seed-002-1.1.11"), generation=1, uid="u1", creation_timestamp="2026-01-01T00:00:00Z"),
        _gateway(MASTER, "35.195.10.20", _spec("seed-002-1.1.11")),
    ]

    async def write() -> None:
        log = await EventLog.open(tmp_path / "log.db")
        try:
            await log.append(state_events)
        finally:
            await log.close()

    asyncio.run(write())
    assert a.main(["analyze", "--log", str(tmp_path / "log.db")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SEVERITY") or out.startswith("no findings")
    assert a.main(["analyze", "--log", str(tmp_path / "log.db"), "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)
    assert all(f["severity"] != "error" for f in findings)
