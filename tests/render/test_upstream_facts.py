"""Facts of upstream Istio 1.1.14 / 1.2.8 and the source operator that rendering must keep.

Each test names the upstream file and line it protects (istio/istio at the release tag,
banzaicloud/istio-operator on release-1.2). They are the defects a real cluster would
show and the simulated fleet cannot (it does not run Istio): a rendered object that
installs fine but does not carry traffic.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from events import types as ev
from events.types import ClusterName
from federationd.api import v1beta1
from federationd.projections.derive import derive
from federationd.projections.state import EMPTY, ProjectionState, fold
from federationd.render import render_master, render_remote
from federationd.render.objects import Obj, RenderFacts
from tests.projections.helpers import Rec

from .specs import NS, full, full_remote
from .test_golden import KUBERNETES_1_14_APIS, TWO_CLUSTERS

V11, V12 = "1.1.14", "1.2.8"
BOTH = pytest.mark.parametrize("version", [V11, V12])


def _master(raw: dict[str, Any], facts: RenderFacts | None = None) -> list[Obj]:
    return render_master(v1beta1.istio_spec(raw, namespace=NS), namespace=NS, facts=facts or RenderFacts())


def _find(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _spec(version: str, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"version": version}
    raw.update(extra)
    return raw


def _injector_cm(objs: list[Obj]) -> dict[str, str]:
    data: dict[str, str] = _find(objs, "ConfigMap", "istio-sidecar-injector")["data"]
    return data


def _template(objs: list[Obj]) -> str:
    tpl: str = yaml.safe_load(_injector_cm(objs)["config"])["template"]
    return tpl


# --- 1. the 1.2 injector reads a values file ---------------------------------------------------


def test_1_2_injector_configmap_has_values_and_both_keys_are_mounted() -> None:
    """istio 1.2.8 pilot/pkg/kube/inject/webhook.go:90 ``valuesConfig, err :=
    ioutil.ReadFile(valuesFile)`` (loadConfig fails, the injector exits);
    install/kubernetes/helm/istio/templates/sidecar-injector-configmap.yaml:14 ``values:``;
    charts/sidecarInjectorWebhook/templates/deployment.yaml:97-100 mounts ``config`` and
    ``values``; operator sidecarinjector/configmap.go:37 ``"values": r.getValues()``."""
    objs = _master(_spec(V12, multiMesh=True))
    data = _injector_cm(objs)
    assert set(data) == {"config", "values"}
    values = json.loads(data["values"])
    assert values["global"]["proxy"]["image"] == "docker.io/istio/proxyv2:1.2.8"
    assert values["global"]["podDNSSearchNamespaces"][0] == "global"
    pod = _find(objs, "Deployment", "istio-sidecar-injector")["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if v["name"] == "inject-config")
    assert vol["configMap"]["items"] == [{"key": "config", "path": "config"}, {"key": "values", "path": "values"}]
    # 1.1's injector has no values file: its ConfigMap has only config (1.1.14
    # templates/sidecar-injector-configmap.yaml:13 ``data:`` / ``config: |-``).
    assert set(_injector_cm(_master(_spec(V11)))) == {"config"}


# --- 2. 1.1 template delimiters ----------------------------------------------------------------


def test_1_1_template_uses_square_delimiters_and_1_2_curly() -> None:
    """istio 1.1.14 pilot/pkg/kube/inject/mesh.go:18-19 ``sidecarTemplateDelimBegin =
    "[["`` / ``sidecarTemplateDelimEnd = "]]"``; 1.2.8 parses with Go's defaults
    (inject.go ``template.New("inject")`` without Delims)."""
    t11 = _template(_master(_spec(V11)))
    assert "{{" not in t11 and "}}" not in t11
    assert "[[ annotation .ObjectMeta `sidecar.istio.io/proxyImage`" in t11
    t12 = _template(_master(_spec(V12)))
    assert "[[" not in t12 and "{{ annotation .ObjectMeta `sidecar.istio.io/proxyImage`" in t12


# --- 3. mixer's config store under control-plane security ------------------------------------


@BOTH
def test_mixer_dials_galley_over_mcps_with_control_plane_security(version: str) -> None:
    """1.2.8 charts/mixer/templates/deployment.yaml:62 (policy) and :245-248 (telemetry,
    with --certFile/--keyFile/--caCertFile) ``--configStoreURL=mcps://istio-galley...``
    under controlPlaneSecurityEnabled (1.1.14: :41 and :189); operator
    mixer/deployment.go:147."""
    objs = _master(_spec(version, controlPlaneSecurityEnabled=True))
    policy = _find(objs, "Deployment", "istio-policy")["spec"]["template"]["spec"]["containers"][0]["args"]
    telemetry = _find(objs, "Deployment", "istio-telemetry")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--configStoreURL=mcps://istio-galley.{NS}.svc:9901" in policy
    assert f"--configStoreURL=mcps://istio-galley.{NS}.svc:9901" in telemetry
    assert "--certFile=/etc/certs/cert-chain.pem" in telemetry and "--certFile=/etc/certs/cert-chain.pem" not in policy
    plain = _master(_spec(version, controlPlaneSecurityEnabled=False))
    args = _find(plain, "Deployment", "istio-policy")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--configStoreURL=mcp://istio-galley.{NS}.svc:9901" in args


@BOTH
def test_mixer_destination_rules_mtls_on_15004_only_and_exported(version: str) -> None:
    """1.2.8 charts/mixer/templates/config.yaml:1036-1052 ``portLevelSettings: - port:
    number: 15004 tls: mode: ISTIO_MUTUAL`` under controlPlaneSecurityEnabled, and
    ``exportTo: - '*'`` (:1038) with defaultConfigVisibilitySettings; service.yaml:10
    ``networking.istio.io/exportTo: "*"``."""
    objs = _master(_spec(version, controlPlaneSecurityEnabled=True, defaultConfigVisibility="."))
    for name in ("istio-policy", "istio-telemetry"):
        dr = _find(objs, "DestinationRule", name)["spec"]
        assert dr["exportTo"] == ["*"]
        assert "tls" not in dr["trafficPolicy"]
        assert dr["trafficPolicy"]["portLevelSettings"] == [{"port": {"number": 15004}, "tls": {"mode": "ISTIO_MUTUAL"}}]
        svc = _find(objs, "Service", name)
        assert svc["metadata"]["annotations"] == {"networking.istio.io/exportTo": "*"}
    default = _find(_master(_spec(version)), "DestinationRule", "istio-policy")["spec"]
    assert "exportTo" not in default


# --- 4. Kubernetes API versions ---------------------------------------------------------------


@BOTH
def test_api_versions_are_upstream_when_the_cluster_serves_them(version: str) -> None:
    """1.1.14 and 1.2.8 charts/pilot/templates/autoscale.yaml:2 ``autoscaling/v2beta1``
    (:23 ``targetAverageUtilization``), poddisruptionbudget.yaml:2 ``policy/v1beta1``,
    sidecarInjectorWebhook/templates/mutatingwebhook.yaml:1
    ``admissionregistration.k8s.io/v1beta1``, istio-init/files/crd-10.yaml:1
    ``apiextensions.k8s.io/v1beta1`` with ``version:``."""
    raw = _spec(version, pilot={"minReplicas": 1, "maxReplicas": 5}, defaultPodDisruptionBudget={"enabled": True})
    objs = _master(raw, RenderFacts(kubernetes_apis=KUBERNETES_1_14_APIS))
    hpa = _find(objs, "HorizontalPodAutoscaler", "istio-pilot")
    assert hpa["apiVersion"] == "autoscaling/v2beta1"
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 80}}]
    assert _find(objs, "PodDisruptionBudget", "istio-pilot")["apiVersion"] == "policy/v1beta1"
    hook = _find(objs, "MutatingWebhookConfiguration", "istio-sidecar-injector")
    assert hook["apiVersion"] == "admissionregistration.k8s.io/v1beta1"
    assert "sideEffects" not in hook["webhooks"][0] and "caBundle" not in hook["webhooks"][0]["clientConfig"]
    crd = _find(objs, "CustomResourceDefinition", "virtualservices.networking.istio.io")
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1beta1" and crd["spec"]["version"] == "v1alpha3"
    # Served APIs not known (today's emulator serves only the GA versions): GA shapes.
    ga = _master(raw)
    assert _find(ga, "HorizontalPodAutoscaler", "istio-pilot")["apiVersion"] == "autoscaling/v2"
    assert _find(ga, "MutatingWebhookConfiguration", "istio-sidecar-injector")["webhooks"][0]["sideEffects"] == "None"


# --- 5. the cross-network port ---------------------------------------------------------------


def test_mesh_networks_announce_the_port_of_the_local_passthrough_listener() -> None:
    """operator release-1.2 pkg/controller/istio/istio_controller.go:337 and :356
    ``MeshNetworkGateway{Address: address, Port: 443}``; gateways/gateway.go:73 the
    ``cluster-aware-gateway`` ``*.local`` AUTO_PASSTHROUGH server on ``"number": 443``.
    The golden facts derive the port from the rendered gateway Service."""
    objs = _master(full(V12), RenderFacts(network="network-master", mesh_networks=TWO_CLUSTERS))
    mesh_networks = yaml.safe_load(_find(objs, "ConfigMap", "istio")["data"]["meshNetworks"])
    ports = {g["port"] for n in mesh_networks["networks"].values() for g in n["gateways"]}
    cag = _find(objs, "Gateway", "cluster-aware-gateway")["spec"]["servers"][0]
    assert cag["tls"] == {"mode": "AUTO_PASSTHROUGH"} and cag["hosts"] == ["*.local"]
    assert ports == {cag["port"]["number"]} == {443}


# --- 6. pilot and mixer through the mesh-expansion gateway -------------------------------------


@BOTH
def test_mesh_expansion_reaches_pilot_and_mixer_under_control_plane_security(version: str) -> None:
    """1.2.8 charts/pilot/templates/meshexpansion.yaml:70-88 ``meshexpansion-dr-pilot``
    (port 15011 ``tls: mode: DISABLE``) under controlPlaneSecurityEnabled;
    charts/gateways/templates/preconfigured.yaml:108-115 ``name: tls-mixer protocol: TLS
    tls: mode: AUTO_PASSTHROUGH`` on 15004 (1.1.14 :103); the VirtualServices' hosts are
    the service names (meshexpansion.yaml ``hosts: - istio-pilot...``)."""
    objs = _master(_spec(version, meshExpansion=True, controlPlaneSecurityEnabled=True, mtls=True))
    dr = _find(objs, "DestinationRule", "meshexpansion-dr-pilot")["spec"]
    assert dr == {
        "host": f"istio-pilot.{NS}.svc.cluster.local",
        "trafficPolicy": {"portLevelSettings": [{"port": {"number": 15011}, "tls": {"mode": "DISABLE"}}]},
    }
    servers = {s["port"]["number"]: s for s in _find(objs, "Gateway", "meshexpansion-gateway")["spec"]["servers"]}
    assert servers[15004] == {
        "port": {"number": 15004, "protocol": "TLS", "name": "tls-mixer"},
        "tls": {"mode": "AUTO_PASSTHROUGH"},
        "hosts": ["*"],
    }
    assert _find(objs, "VirtualService", "meshexpansion-vs-pilot")["spec"]["hosts"] == [f"istio-pilot.{NS}.svc.cluster.local"]
    assert not [o for o in objs if o["metadata"]["name"] == "meshexpansion-vs-telemetry"]
    no_cps = _master(_spec(version, meshExpansion=True, controlPlaneSecurityEnabled=False))
    assert not [o for o in no_cps if o["metadata"]["name"] == "meshexpansion-dr-pilot"]


# --- 7. the kubeconfig Secret label -----------------------------------------------------------


def _state(*events: ev.Event) -> ProjectionState:
    state = EMPTY
    for i, e in enumerate(events, 1):
        state = fold(state, Rec(i, e))
    return state


def test_the_remote_kubeconfig_secret_is_labelled_for_pilot() -> None:
    """operator release-1.2 pkg/controller/remoteistio/remoteistio_controller.go:48
    ``istioSecretLabel = "istio/multiCluster"`` and :302-305 ``labelSecret(...,
    istioSecretLabel, "true")``: pilot 1.1/1.2 reads remote registries only from Secrets
    with that label."""
    master = ClusterName("master")
    state = _state(
        ev.IstioSpecChanged(cluster=master, key="Istio/istio-system/istio", time=1, namespace=NS, name="istio", spec={"version": V12}, generation=1, uid="u1", creation_timestamp="2026-01-01T00:00:00Z"),
        ev.RemoteIstioSpecChanged(cluster=master, key="RemoteIstio/istio-system/remote-eu", time=2, namespace=NS, name="remote-eu", spec={}, generation=1, uid="u2", creation_timestamp="2026-01-01T00:00:00Z"),
        ev.KubeconfigObserved(cluster=master, key=f"Secret/{NS}/remote-eu", time=3, remote="remote-eu", server="https://203.0.113.5", fingerprint="ab" * 32),
    )
    objs = derive(state).clusters["master"].objects
    patch = objs[f"v1/Secret/{NS}/remote-eu"]
    assert patch.patch is True  # never owned: the user's Secret is not deleted with it
    assert patch.obj["metadata"]["labels"] == {"istio/multiCluster": "true"}
    assert "data" not in patch.obj and "app.kubernetes.io/managed-by" not in patch.obj["metadata"]["labels"]


# --- 8. SDS ------------------------------------------------------------------------------------


@BOTH
def test_node_agent_reads_configmaps_and_proxies_mount_the_sds_directory(version: str) -> None:
    """1.1.14 and 1.2.8 charts/nodeagent/templates/clusterrole.yaml:11-13 ``resources:
    ["configmaps"] verbs: ["get"]``; 1.2.8 files/injection-template.yaml:265 ``mountPath:
    /var/run/sds`` from hostPath ``/var/run/sds`` (1.1.14 sidecar-injector-configmap.yaml:261)."""
    objs = _master(_spec(version, sds={"enabled": True}, nodeAgent={"enabled": True}))
    role = _find(objs, "ClusterRole", f"istio-nodeagent-{NS}")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    tpl = _template(objs)
    assert "mountPath: /var/run/sds" in tpl and "path: /var/run/sds\n" in tpl
    assert "Socket" not in tpl
    # with SDS the workload certificate Secret is not mounted (node agent serves it)
    assert "name: istio-certs" not in tpl


# --- 9. multi-mesh -----------------------------------------------------------------------------


@BOTH
def test_multi_mesh_rewrites_global_and_searches_global(version: str) -> None:
    """1.2.8 charts/gateways/templates/preconfigured.yaml:197-216 EnvoyFilter
    ``istio-multicluster-ingressgateway`` (``tcp_cluster_rewrite`` ``\\.global$`` →
    ``.svc.cluster.local`` on 15443; 1.1.14 :180-184), :232 ``exportTo`` on the
    ``*.global`` DestinationRule; example-values/values-istio-multicluster-gateways.yaml:3
    ``podDNSSearchNamespaces`` (``global``, ``<ns>.global``), operator
    sidecarinjector/configmap.go:43-48."""
    objs = _master(_spec(version, multiMesh=True, defaultConfigVisibility="."))
    ef = _find(objs, "EnvoyFilter", "istio-multicluster-ingressgateway")["spec"]
    (f,) = ef["filters"]
    assert f["listenerMatch"] == {"portNumber": 15443, "listenerType": "GATEWAY"}
    assert f["filterName"] == "envoy.filters.network.tcp_cluster_rewrite"
    assert f["filterConfig"] == {"cluster_pattern": "\\.global$", "cluster_replacement": ".svc.cluster.local"}
    assert _find(objs, "DestinationRule", "istio-multicluster-destinationrule")["spec"]["exportTo"] == ["*"]
    tpl = _template(objs)
    assert "dnsConfig:\n  searches:\n  - global\n" in tpl
    assert "valueOrDefault .DeploymentMeta.Namespace `default` ]].global" in tpl or "}}.global" in tpl


# --- lesser ------------------------------------------------------------------------------------


@BOTH
def test_tproxy_branch_of_the_proxy_security_context(version: str) -> None:
    """1.2.8 files/injection-template.yaml:232-242 (1.1.14 sidecar-injector-configmap.yaml:
    228-238): in TPROXY mode the proxy gets NET_ADMIN and ``runAsGroup: 1337`` instead of
    ``runAsUser: 1337``."""
    tpl = _template(_master(_spec(version, sidecarInjector={"initCNIConfiguration": {"enabled": True}})))
    open_, close = ("[[", "]]") if version == V11 else ("{{", "}}")
    branch = f"{open_} if eq (annotation .ObjectMeta `sidecar.istio.io/interceptionMode` .ProxyConfig.InterceptionMode) `TPROXY` -{close}"
    assert branch + "\n    capabilities:\n      add:\n      - NET_ADMIN\n    runAsGroup: 1337\n" in tpl


def test_cni_daemonset_sets_cni_net_dir() -> None:
    """istio/cni deployments/kubernetes/install/helm/istio-cni/templates/istio-cni.yaml
    ``- name: CNI_NET_DIR value: {{ .Values.cniConfDir }}``: install-cni.sh writes the
    plugin's kubeconfig path under it."""
    objs = _master(_spec(V12, sidecarInjector={"initCNIConfiguration": {"enabled": True, "confDir": "/etc/cni/multus/net.d"}}))
    env = _find(objs, "DaemonSet", "istio-cni-node")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "CNI_NET_DIR", "value": "/etc/cni/multus/net.d"} in env


def test_cni_daemonset_runs_on_linux_nodes_only() -> None:
    """istio/cni 1.2.8 istio-cni.yaml ``nodeSelector: beta.kubernetes.io/os: linux`` and
    the operator's release-1.2 pkg/resources/cni/daemonset.go ``NodeSelector`` alike: the
    plugin is a Linux binary."""
    objs = _master(_spec(V12, sidecarInjector={"initCNIConfiguration": {"enabled": True}}))
    spec = _find(objs, "DaemonSet", "istio-cni-node")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"beta.kubernetes.io/os": "linux"}


def test_remote_components_are_the_operator_remote_install() -> None:
    """operator release-1.2 pkg/remoteclusters/reconcile_remote_istio.go:33-42: common,
    citadel (no mesh policy), nodeagent, cni, sidecarinjector, gateways (with the
    k8s-ingress, mesh-expansion and multi-mesh resources); istio 1.2.8
    values-istio-remote.yaml: no pilot, galley, mixer."""
    raw = full(V12)
    objs = render_remote(
        v1beta1.istio_spec(raw, namespace=NS),
        v1beta1.remote_istio_spec(full_remote(), namespace=NS),
        namespace=NS,
        facts=RenderFacts(cluster="remote-eu", role="remote", network="remote-eu"),
    )
    names = {o["metadata"]["name"] for o in objs}
    assert "istio-multicluster-ingressgateway" in names and "istio-autogenerated-k8s-ingress" in names
    assert not names & {"istio-pilot", "istio-galley", "istio-policy", "istio-telemetry", "meshexpansion-gateway"}
    assert not [o for o in objs if o["kind"] == "MeshPolicy"]


@BOTH
def test_pilot_secure_grpc_and_galley_tls_follow_control_plane_security(version: str) -> None:
    """1.2.8 charts/pilot/templates/deployment.yaml:61-69 (operator pilot/deployment.go:
    50-56): with control-plane security ``--secureGrpcAddr :15011`` unless pilot's sidecar
    serves 15011 (then no flag), else ``--secureGrpcAddr ""``; container port 15011 without
    the sidecar. charts/galley/templates/deployment.yaml ``--insecure=false`` /
    ``--insecure=true``."""

    def discovery(raw: dict[str, Any]) -> tuple[list[str], list[int]]:
        objs = _master(raw)
        ct = _find(objs, "Deployment", "istio-pilot")["spec"]["template"]["spec"]["containers"][0]
        return ct["args"], [p["containerPort"] for p in ct["ports"]]

    args, ports = discovery(_spec(version, controlPlaneSecurityEnabled=True, pilot={"sidecar": False}))
    assert args[args.index("--secureGrpcAddr") + 1] == ":15011" and 15011 in ports
    args, ports = discovery(_spec(version, controlPlaneSecurityEnabled=True, pilot={"sidecar": True}))
    assert "--secureGrpcAddr" not in args and 15011 not in ports
    args, _ = discovery(_spec(version, controlPlaneSecurityEnabled=False))
    assert args[args.index("--secureGrpcAddr") + 1] == ""
    galley = _find(_master(_spec(version, controlPlaneSecurityEnabled=True)), "Deployment", "istio-galley")
    assert "--insecure=false" in galley["spec"]["template"]["spec"]["containers"][0]["args"]
