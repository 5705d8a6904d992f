"""The 1.1 and 1.2 profiles: components on and off, knobs, versions, remotes, determinism."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import yaml

from federationd.api import v1beta1
from federationd.render import (
    SUPPORTED_VERSIONS,
    UnsupportedVersion,
    profile_for,
    render_master,
    render_remote,
)
from federationd.render.objects import (
    COMPONENT_LABEL,
    CONFIG_HASH_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MeshNetwork,
    NetworkGateway,
    RenderFacts,
    component_of,
    dump_yaml_stream,
    ref,
)
from federationd.render.profiles import PROFILES

from .specs import MINIMAL, NS, full, full_remote

Obj = dict[str, Any]


def master(raw: dict[str, Any], facts: RenderFacts | None = None) -> list[Obj]:
    return render_master(v1beta1.istio_spec(raw, namespace=NS), namespace=NS, facts=facts or RenderFacts())


def remote(raw: dict[str, Any], rraw: dict[str, Any], facts: RenderFacts | None = None) -> list[Obj]:
    return render_remote(
        v1beta1.istio_spec(raw, namespace=NS),
        v1beta1.remote_istio_spec(rraw, namespace=NS),
        namespace=NS,
        facts=facts or RenderFacts(cluster="remote-eu", role="remote", network="remote-eu"),
    )


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise AssertionError(f"{kind}/{name} not rendered; have {sorted(ref(o) for o in objs)}")


def refs(objs: list[Obj]) -> set[str]:
    return {ref(o) for o in objs}


def containers(objs: list[Obj]) -> Iterator[Obj]:
    for o in objs:
        if o["kind"] in ("Deployment", "DaemonSet"):
            pod = o["spec"]["template"]["spec"]
            yield from pod.get("initContainers", [])
            yield from pod["containers"]


def injector_template(objs: list[Obj]) -> str:
    cm = find(objs, "ConfigMap", "istio-sidecar-injector")
    return str(yaml.safe_load(cm["data"]["config"])["template"])


def env_of(container: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def set_path(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    node = out
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return out


# --- components on and off --------------------------------------------------------------------

# flag → components whose objects disappear, plus single objects of other components that
# exist only because of the disabled one.
DISABLE = [
    ("citadel.enabled", {"citadel"}, set()),
    ("galley.enabled", {"galley"}, set()),
    ("pilot.enabled", {"pilot"}, set()),
    (
        "gateways.ingress.enabled",
        {"ingressgateway", "k8singress", "meshexpansion"},
        {"Gateway/istio-system/istio-multicluster-ingressgateway", "EnvoyFilter/istio-system/istio-multicluster-ingressgateway"},
    ),
    ("gateways.egress.enabled", {"egressgateway"}, {"Gateway/istio-system/istio-multicluster-egressgateway"}),
    (
        "gateways.enabled",
        {"ingressgateway", "egressgateway", "k8singress", "meshexpansion", "multimesh"},
        set(),
    ),
    ("gateways.k8singress.enabled", {"k8singress"}, set()),
    ("meshExpansion", {"meshexpansion"}, set()),
    ("multiMesh", {"multimesh"}, set()),
    ("mixer.enabled", {"mixer"}, set()),
    ("sidecarInjector.enabled", {"sidecar-injector"}, set()),
    ("sidecarInjector.initCNIConfiguration.enabled", {"cni"}, set()),
    ("nodeAgent.enabled", {"nodeagent"}, set()),
    ("istioCoreDNS.enabled", {"istiocoredns"}, set()),
]


@pytest.mark.parametrize("version", ["1.1.14", "1.2.2"])
@pytest.mark.parametrize(("flag", "components", "also"), DISABLE, ids=[d[0] for d in DISABLE])
def test_disabling_a_component_removes_exactly_its_objects(
    version: str, flag: str, components: set[str], also: set[str]
) -> None:
    everything = master(full(version))
    assert components <= {component_of(o) for o in everything}, "component not in the full render"
    without = master(set_path(full(version), flag, False))
    expected_gone = {ref(o) for o in everything if component_of(o) in components} | also
    assert refs(everything) - refs(without) == expected_gone
    assert refs(without) <= refs(everything)  # nothing appears instead


def test_seed_000_installs_the_pods_the_source_shows() -> None:
    objs = master(MINIMAL)
    deployments = {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"}
    assert deployments == {
        "istio-citadel",
        "istio-egressgateway",
        "istio-galley",
        "istio-ingressgateway",
        "istio-pilot",
        "istio-policy",
        "istio-sidecar-injector",
        "istio-telemetry",
    }
    assert not [o for o in objs if o["kind"] == "DaemonSet"]  # CNI and node agent are opt-in


def test_every_object_is_labelled_for_the_inventory() -> None:
    for objs in (master(full()), remote(full(), full_remote()), master(MINIMAL)):
        for o in objs:
            labels = o["metadata"]["labels"]
            assert labels[MANAGED_BY_LABEL] == MANAGED_BY, ref(o)
            assert labels[COMPONENT_LABEL], ref(o)


def test_output_is_sorted_crds_first_and_custom_resources_last() -> None:
    objs = master(full())
    kinds = [o["kind"] for o in objs]
    n_crds = kinds.count("CustomResourceDefinition")
    assert kinds[:n_crds] == ["CustomResourceDefinition"] * n_crds
    first_cr = next(i for i, o in enumerate(objs) if ".istio.io/" in o["apiVersion"])
    assert all(".istio.io/" in o["apiVersion"] for o in objs[first_cr:])
    ns_objs = remote(full(), full_remote())
    assert [o["kind"] for o in ns_objs][:1] == ["CustomResourceDefinition"]
    assert ns_objs[len([o for o in ns_objs if o["kind"] == "CustomResourceDefinition"])]["kind"] == "Namespace"


# --- CNI ----------------------------------------------------------------------------------------


def test_cni_on_renders_the_daemonset_and_drops_istio_init() -> None:
    raw = set_path(MINIMAL, "sidecarInjector.initCNIConfiguration", {"enabled": True, "logLevel": "debug"})
    objs = master(raw)
    ds = find(objs, "DaemonSet", "istio-cni-node")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert {v["hostPath"]["path"] for v in pod["volumes"]} == {"/opt/cni/bin", "/etc/cni/net.d"}
    conf = json.loads(find(objs, "ConfigMap", "istio-cni-config")["data"]["cni_network_config"])
    assert conf["type"] == "istio-cni"
    assert conf["log_level"] == "debug"
    assert conf["kubernetes"]["exclude_namespaces"] == [NS]  # defaults to the control plane's
    assert conf["kubernetes"]["cni_bin_dir"] == "/opt/cni/bin"
    find(objs, "ClusterRole", f"istio-cni-{NS}")
    tpl = injector_template(objs)
    assert "istio-init" not in tpl
    # NET_ADMIN only in istio-proxy's TPROXY branch (helm template, both versions)
    assert tpl.count("NET_ADMIN") == 1 and "`TPROXY` -}}\n    capabilities:" in tpl
    assert "podRedirectAnnot:" in tpl

    off = master(MINIMAL)
    assert "- name: istio-init" in injector_template(off)
    assert not [o for o in off if o["metadata"]["labels"][COMPONENT_LABEL] == "cni"]


def test_cni_custom_dirs_and_excluded_namespaces() -> None:
    raw = set_path(
        MINIMAL,
        "sidecarInjector.initCNIConfiguration",
        {"enabled": True, "binDir": "/home/kubernetes/bin", "confDir": "/etc/cni/conf", "excludeNamespaces": ["istio-system", "kube-system"]},
    )
    objs = master(raw)
    pod = find(objs, "DaemonSet", "istio-cni-node")["spec"]["template"]["spec"]
    assert {v["hostPath"]["path"] for v in pod["volumes"]} == {"/home/kubernetes/bin", "/etc/cni/conf"}
    conf = json.loads(find(objs, "ConfigMap", "istio-cni-config")["data"]["cni_network_config"])
    assert conf["kubernetes"]["exclude_namespaces"] == ["istio-system", "kube-system"]
    assert conf["kubernetes"]["cni_bin_dir"] == "/home/kubernetes/bin"


# --- versions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "tag", "n_crds"), [("1.1.14", "1.1.14", 53), ("1.2.8", "1.2.8", 23)])
def test_images_and_crds_follow_the_version_family(version: str, tag: str, n_crds: int) -> None:
    objs = master(set_path(full(version), "citadel.image", ""))
    images = {c["image"] for c in containers(objs)}
    istio_images = {i for i in images if i.startswith("docker.io/istio/") and "coredns-plugin" not in i}
    assert istio_images and all(i.endswith(f":{tag}") for i in istio_images), istio_images
    assert len([o for o in objs if o["kind"] == "CustomResourceDefinition"]) == n_crds
    tpl = injector_template(objs)
    assert f"docker.io/istio/proxyv2:{tag}" in tpl
    assert f"docker.io/istio/proxy_init:{tag}" in tpl or "istio-init" not in tpl


def test_upgrade_1_1_to_1_2_changes_images_and_drops_what_1_2_no_longer_has() -> None:
    old = master({**MINIMAL, "version": "1.1.11"})
    new = master({**MINIMAL, "version": "1.2.2"})
    old_images = {c["image"] for c in containers(old)}
    new_images = {c["image"] for c in containers(new)}
    assert all(i.endswith(":1.1.14") for i in old_images)
    assert all(i.endswith(":1.2.8") for i in new_images)
    gone = refs(old) - refs(new)
    assert "CustomResourceDefinition/prometheuses.config.istio.io" in gone
    assert {r.split("/")[0] for r in gone} == {"CustomResourceDefinition"}
    assert "CustomResourceDefinition/authorizationpolicies.rbac.istio.io" in refs(new) - refs(old)


def test_1_2_knobs_only_in_1_2() -> None:
    for version, has in (("1.1.14", False), ("1.2.2", True)):
        objs = master(full(version))
        tpl = injector_template(objs)
        assert ("--dnsRefreshRate" in tpl) is has
        assert ('"60s"' in tpl) is has
        assert ("sidecar.istio.io/logLevel` `debug`" in tpl) is has
        assert ("sidecar.istio.io/componentLogLevel` `misc:info`" in tpl) is has
        cfg = yaml.safe_load(find(objs, "ConfigMap", "istio-sidecar-injector")["data"]["config"])
        assert ("alwaysInjectSelector" in cfg) is has
        if has:
            assert cfg["alwaysInjectSelector"] == [{"matchLabels": {"inject": "always"}}]
            assert cfg["neverInjectSelector"][0]["matchExpressions"][0]["key"] == "openshift.io/build.name"
        args = find(objs, "Deployment", "istio-citadel")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert ("--workload-cert-ttl=2160h" in args) is has
        assert ("--max-workload-cert-ttl=8760h" in args) is has
        assert ("--liveness-probe-path=/tmp/ca.liveness" in args) is has
        hook = find(objs, "MutatingWebhookConfiguration", "istio-sidecar-injector")["webhooks"][0]
        if has:
            assert hook["namespaceSelector"] == {
                "matchExpressions": [
                    {"key": "name", "operator": "NotIn", "values": [NS]},
                    {"key": "istio-injection", "operator": "NotIn", "values": ["disabled"]},
                ]
            }
        else:
            assert hook["namespaceSelector"] == {"matchLabels": {"istio-injection": "enabled"}}


@pytest.mark.parametrize("version", ["1.3.0", "1.0.6", "2.0", "latest"])
def test_unsupported_version_is_refused_before_anything_is_built(version: str) -> None:
    raw = {**MINIMAL, "version": version}
    try:
        spec = v1beta1.istio_spec(raw, namespace=NS)
    except v1beta1.SpecError:
        assert version == "latest"  # not even a version: the API refuses it first
        return
    with pytest.raises(UnsupportedVersion) as e:
        render_master(spec, namespace=NS, facts=RenderFacts())
    assert str(e.value) == "intended Istio version is unsupported by this version of the operator"
    assert e.value.version == version
    with pytest.raises(UnsupportedVersion):
        render_remote(spec, v1beta1.remote_istio_spec(full_remote(), namespace=NS), namespace=NS, facts=RenderFacts())


def test_registry_and_description() -> None:
    assert set(PROFILES) == {"1.1", "1.2"}
    assert SUPPORTED_VERSIONS == "1.1.x, 1.2.x"
    assert profile_for("1.2.2").family == "1.2"
    assert profile_for("1.1").family == "1.1"


# --- knobs --------------------------------------------------------------------------------------


def test_scheduling_and_sizing_knobs_reach_every_workload() -> None:
    raw = full()
    objs = master(raw)
    for name in ("istio-pilot", "istio-citadel", "istio-galley", "istio-ingressgateway", "istio-egressgateway",
                 "istio-policy", "istio-telemetry", "istio-sidecar-injector", "istiocoredns"):
        pod = find(objs, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}, name
        assert pod["tolerations"] == raw["pilot"]["tolerations"], name
        assert pod["affinity"] == raw["pilot"]["affinity"], name
    pod = find(objs, "DaemonSet", "istio-nodeagent")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    cni_pod = find(objs, "DaemonSet", "istio-cni-node")["spec"]["template"]["spec"]
    assert cni_pod["affinity"] == raw["sidecarInjector"]["initCNIConfiguration"]["affinity"]
    for c in containers(objs):
        assert c["imagePullPolicy"] == "Always", c["name"]
    discovery = find(objs, "Deployment", "istio-pilot")["spec"]["template"]["spec"]["containers"][0]
    assert discovery["resources"] == {"limits": {"cpu": "1", "memory": "512Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}}
    sidecar = find(objs, "Deployment", "istio-pilot")["spec"]["template"]["spec"]["containers"][1]
    assert sidecar["resources"]["requests"] == {"cpu": "200m", "memory": "256Mi"}  # proxy.resources
    assert find(objs, "Deployment", "istio-citadel")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/istio/citadel:custom"
    )


def test_default_resources_apply_when_a_component_has_none() -> None:
    objs = master({**MINIMAL, "defaultResources": {"requests": {"cpu": "42m"}}})
    galley = find(objs, "Deployment", "istio-galley")["spec"]["template"]["spec"]["containers"][0]
    assert galley["resources"] == {"requests": {"cpu": "42m"}}
    gw = find(objs, "Deployment", "istio-ingressgateway")["spec"]["template"]["spec"]["containers"][0]
    assert gw["resources"] == {"requests": {"cpu": "42m"}}


def test_autoscaling_bounds_and_fixed_replicas() -> None:
    objs = master(full())
    hpa = find(objs, "HorizontalPodAutoscaler", "istio-pilot")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert "replicas" not in find(objs, "Deployment", "istio-pilot")["spec"]  # the HPA decides
    # min == max: no autoscaler, a fixed count.
    assert find(objs, "Deployment", "istio-egressgateway")["spec"]["replicas"] == 1
    assert "HorizontalPodAutoscaler/istio-system/istio-egressgateway" not in refs(objs)
    assert find(objs, "Deployment", "istio-galley")["spec"]["replicas"] == 2
    assert find(objs, "Deployment", "istio-sidecar-injector")["spec"]["replicas"] == 2
    assert find(objs, "Deployment", "istio-citadel")["spec"]["replicas"] == 1  # fixed, as the source


def test_pod_disruption_budgets_follow_the_spec() -> None:
    on = master(full())
    pdbs = {o["metadata"]["name"] for o in on if o["kind"] == "PodDisruptionBudget"}
    assert pdbs == {
        "istio-citadel", "istio-galley", "istio-pilot", "istio-ingressgateway", "istio-egressgateway",
        "istio-policy", "istio-telemetry", "istio-sidecar-injector", "istiocoredns",
    }
    assert all(o["apiVersion"] == "policy/v1" for o in on if o["kind"] == "PodDisruptionBudget")
    off = master(set_path(full(), "defaultPodDisruptionBudget.enabled", False))
    assert not [o for o in off if o["kind"] == "PodDisruptionBudget"]


def test_gateway_services() -> None:
    objs = master(full())
    ing = find(objs, "Service", "istio-ingressgateway")
    assert ing["spec"]["type"] == "LoadBalancer"
    assert ing["spec"]["loadBalancerIP"] == "203.0.113.10"
    assert ing["metadata"]["annotations"] == {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
    assert ing["metadata"]["labels"]["team"] == "mesh"
    ports = {p["name"]: p for p in ing["spec"]["ports"]}
    assert ports["http2"]["nodePort"] == 31380
    assert ports["https"]["nodePort"] == 31390
    assert ports["tls"]["nodePort"] == 31450
    assert ports["status-port"]["nodePort"] == 31460
    assert "tcp-pilot-grpc-tls" in ports  # mesh expansion
    egress = find(objs, "Service", "istio-egressgateway")
    assert egress["spec"]["type"] == "NodePort"
    assert sorted(p["port"] for p in egress["spec"]["ports"]) == [80, 443, 15443]
    minimal = master(MINIMAL)
    assert find(minimal, "Service", "istio-egressgateway")["spec"]["type"] == "ClusterIP"
    assert all("nodePort" not in p for p in find(minimal, "Service", "istio-egressgateway")["spec"]["ports"])
    assert find(minimal, "Service", "istio-ingressgateway")["spec"]["type"] == "LoadBalancer"
    gw = find(objs, "Deployment", "istio-ingressgateway")["spec"]["template"]["spec"]
    assert [c["name"] for c in gw["containers"]] == ["ingress-sds", "istio-proxy"]  # gateway SDS
    env = env_of(gw["containers"][1])
    assert env["ISTIO_META_REQUESTED_NETWORK_VIEW"] == "network1"
    assert env["SDS_ENABLED"] == "true"
    assert "--applicationPorts" in gw["containers"][1]["args"]
    find(objs, "Role", "istio-ingressgateway-sds")


def test_tracing_choices() -> None:
    def args(tracing: dict[str, Any]) -> list[str]:
        objs = master({**MINIMAL, "tracing": tracing})
        return list(find(objs, "Deployment", "istio-ingressgateway")["spec"]["template"]["spec"]["containers"][0]["args"])

    assert args({})[args({}).index("--zipkinAddress") + 1] == f"zipkin.{NS}:9411"
    ls = args({"tracer": "lightstep", "lightstep": {"address": "ls:443", "accessToken": "tok", "secure": True}})
    assert ls[ls.index("--lightstepAddress") + 1] == "ls:443" and "--lightstepSecure" in ls
    dd = args({"tracer": "datadog"})
    assert dd[dd.index("--datadogAgentAddress") + 1] == "$(HOST_IP):8126"
    off = args({"enabled": False})
    assert not [a for a in off if a.startswith(("--zipkin", "--lightstep", "--datadog"))]


def test_injection_template_honours_the_proxy_and_range_knobs() -> None:
    objs = master(set_path(full(), "sidecarInjector.initCNIConfiguration.enabled", False))
    tpl = injector_template(objs)
    assert "includeOutboundIPRanges` `10.0.0.0/8,172.16.0.0/12`" in tpl
    assert "excludeOutboundIPRanges` `10.96.0.1/32`" in tpl
    assert tpl.startswith("rewriteAppHTTPProbe: true")
    assert "- name: enable-core-dump" in tpl
    # core dumps need a writable root: upstream then leaves readOnlyRootFilesystem out
    assert "readOnlyRootFilesystem" not in tpl
    assert "privileged: true" in tpl
    assert "cpu: 15m" in tpl and "memory: 60Mi" in tpl  # init container resources
    assert "cpu: 200m" in tpl  # proxy resources
    # The template, with the Go-template actions neutralised, is still YAML of a pod spec.
    # (as the injector's evaluation would leave it: actions replaced by their values).
    lines = [line for line in tpl.split("\n") if not re.fullmatch(r"\s*\{\{[^}]*\}\}\s*", line)]
    doc = yaml.safe_load(re.sub(r"\{\{[^}]*\}\}", "x", "\n".join(lines)))
    assert [c["name"] for c in doc["initContainers"]] == ["istio-init", "enable-core-dump"]
    assert doc["containers"][0]["name"] == "istio-proxy"
    cfg = yaml.safe_load(find(objs, "ConfigMap", "istio-sidecar-injector")["data"]["config"])
    assert cfg["policy"] == "enabled"
    off = master(set_path(MINIMAL, "sidecarInjector.autoInjectionPolicyEnabled", False))
    assert yaml.safe_load(find(off, "ConfigMap", "istio-sidecar-injector")["data"]["config"])["policy"] == "disabled"
    assert injector_template(master(MINIMAL)).startswith("rewriteAppHTTPProbe: false")


def test_citadel_ca_secret() -> None:
    plugged = find(master(full()), "Deployment", "istio-citadel")["spec"]["template"]["spec"]
    assert "--self-signed-ca=false" in plugged["containers"][0]["args"]
    assert plugged["volumes"] == [{"name": "cacerts", "secret": {"secretName": "cacerts", "optional": False}}]
    selfsigned = find(master(MINIMAL), "Deployment", "istio-citadel")["spec"]["template"]["spec"]
    assert "--self-signed-ca=true" in selfsigned["containers"][0]["args"]
    from_facts = find(master(MINIMAL, RenderFacts(ca_secret_name="root-ca")), "Deployment", "istio-citadel")
    assert from_facts["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "root-ca"


def test_pilot_knobs_and_mesh_networks_hash() -> None:
    objs = master(full())
    discovery = find(objs, "Deployment", "istio-pilot")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(discovery)
    assert env["PILOT_TRACE_SAMPLING"] == "25.0"
    assert env["PILOT_ENABLE_LOCALITY_LOAD_BALANCING"] == "1"
    assert "PILOT_ENABLE_LOCALITY_LOAD_BALANCING" not in env_of(
        find(master(MINIMAL), "Deployment", "istio-pilot")["spec"]["template"]["spec"]["containers"][0]
    )
    assert discovery["args"][discovery["args"].index("-a") + 1] == NS  # watchOneNamespace

    def pilot_hash(facts: RenderFacts) -> str:
        dep = find(master(MINIMAL, facts), "Deployment", "istio-pilot")
        return str(dep["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    # Pilot 1.1/1.2 reads which registry is which network only at start (a remote's
    # registry: clusterregistry/multicluster.go InitNetworkLookup(m.meshNetworks)), and
    # reloads the gateways from the watched file (bootstrap/server.go initMeshNetworks).
    net = MeshNetwork(name="remote-eu", from_registry=("remote-eu",), gateways=(NetworkGateway(address="198.51.100.7"),))
    moved = MeshNetwork(name="remote-eu", from_registry=("remote-eu",), gateways=(NetworkGateway(address="198.51.100.8"),))
    other = MeshNetwork(name="remote-us", from_registry=("remote-us",), gateways=(NetworkGateway(address="198.51.100.9"),))
    assert pilot_hash(RenderFacts()) != pilot_hash(RenderFacts(mesh_networks=(net,)))
    assert pilot_hash(RenderFacts(mesh_networks=(net,))) != pilot_hash(RenderFacts(mesh_networks=(net, other)))
    assert pilot_hash(RenderFacts(mesh_networks=(net,))) == pilot_hash(RenderFacts(mesh_networks=(moved,)))
    # Only pilot restarts: the other workloads do not carry the hash.
    others = [o for o in master(MINIMAL, RenderFacts(mesh_networks=(net,))) if o["kind"] == "Deployment" and o["metadata"]["name"] != "istio-pilot"]
    assert all(CONFIG_HASH_ANNOTATION not in o["spec"]["template"]["metadata"]["annotations"] for o in others)


def test_mixer_configuration_and_multicluster_support() -> None:
    objs = master(full())
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs if o["apiVersion"] == "config.istio.io/v1alpha2"}
    assert {("attributemanifest", "istioproxy"), ("attributemanifest", "kubernetes"), ("handler", "prometheus"),
            ("handler", "kubernetesenv"), ("rule", "promhttp"), ("instance", "requestcount")} <= kinds
    handler = find(objs, "handler", "kubernetesenv")
    assert handler["spec"]["params"]["cluster_registries_namespace"] == NS
    role = find(objs, "ClusterRole", f"istio-mixer-{NS}")
    assert any("secrets" in r["resources"] for r in role["rules"])
    plain = master(MINIMAL)
    assert "cluster_registries_namespace" not in find(plain, "handler", "kubernetesenv")["spec"]["params"]
    args = find(plain, "Deployment", "istio-telemetry")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--configStoreURL=mcp://istio-galley.{NS}.svc:9901" in args
    no_mcp = master({**MINIMAL, "useMCP": False})
    args = find(no_mcp, "Deployment", "istio-telemetry")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--configStoreURL=k8s://" in args
    galley_args = find(no_mcp, "Deployment", "istio-galley")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--enable-server=false" in galley_args


# --- remotes ------------------------------------------------------------------------------------


def test_remote_gets_its_components_at_the_master_images_with_its_network() -> None:
    objs = remote({**MINIMAL, "version": "1.2.2"}, full_remote())
    components = {component_of(o) for o in objs}
    assert components == {"namespace", "crds", "citadel", "ingressgateway", "egressgateway", "sidecar-injector", "cni", "mesh"}
    deployments = {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"}
    assert deployments == {"istio-citadel", "istio-sidecar-injector", "istio-ingressgateway", "istio-egressgateway"}
    master_images = {c["image"] for c in containers(master({**MINIMAL, "version": "1.2.2"}))}
    remote_images = {c["image"] for c in containers(objs)}
    assert remote_images - {"docker.io/istio/install-cni:1.2.8"} <= master_images
    gw = find(objs, "Deployment", "istio-ingressgateway")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(gw)["ISTIO_META_NETWORK"] == "remote-eu"
    tpl = injector_template(objs)
    assert "ISTIO_META_NETWORK" in tpl and "remote-eu" in tpl
    assert "includeOutboundIPRanges` `10.20.0.0/16`" in tpl  # the RemoteIstio's own ranges
    assert "istio-init" not in tpl  # the RemoteIstio turned CNI on
    citadel = find(objs, "Deployment", "istio-citadel")["spec"]["template"]["spec"]
    assert citadel["nodeSelector"] == {"kubernetes.io/os": "linux"}  # RemoteIstio's scheduling
    assert find(objs, "Deployment", "istio-sidecar-injector")["spec"]["replicas"] == 2


def test_remote_follows_a_master_upgrade_and_node_agent() -> None:
    old = remote({**MINIMAL, "version": "1.1.11"}, {"enabledServices": [{"name": "istio-pilot"}]})
    new = remote({**MINIMAL, "version": "1.2.2", "nodeAgent": {"enabled": True}}, {"enabledServices": [{"name": "istio-pilot"}]})
    assert {c["image"].rsplit(":", 1)[1] for c in containers(old)} == {"1.1.14"}
    assert {c["image"].rsplit(":", 1)[1] for c in containers(new)} == {"1.2.8"}
    find(new, "DaemonSet", "istio-nodeagent")
    assert not [o for o in new if component_of(o) in ("pilot", "galley", "mixer")]


def test_remote_with_mesh_expansion_gets_only_the_pass_through_gateway() -> None:
    objs = remote({**MINIMAL, "meshExpansion": True}, {"enabledServices": [{"name": "istio-pilot"}]})
    crs = [o for o in objs if o["apiVersion"].startswith("networking.istio.io/")]
    assert [o["metadata"]["name"] for o in crs] == ["cluster-aware-gateway"]


# --- determinism ---------------------------------------------------------------------------------


def test_rendering_is_deterministic() -> None:
    raw = full()
    a = dump_yaml_stream(master(raw))
    # Same content with every mapping's key order reversed: same bytes.
    def reverse(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: reverse(v[k]) for k in reversed(list(v))}
        if isinstance(v, list):
            return [reverse(x) for x in v]
        return v

    b = dump_yaml_stream(master(reverse(raw)))
    assert a == b
    assert dump_yaml_stream(remote(full(), full_remote())) == dump_yaml_stream(remote(full(), full_remote()))


def test_sds_and_core_dump_reach_the_gateways() -> None:
    objs = master(full())
    pod = find(objs, "Deployment", "istio-ingressgateway")["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    # the socket's directory, not the socket file (helm gateways/templates/deployment.yaml)
    assert vols["sdsudspath"]["hostPath"] == {"path": "/var/run/sds"}
    assert vols["istio-token"]["projected"]["sources"][0]["serviceAccountToken"]["path"] == "istio-token"
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][1]["volumeMounts"]}
    assert mounts["sdsudspath"] == "/var/run/sds"
    assert mounts["istio-token"] == "/var/run/secrets/tokens"
    assert [c["name"] for c in pod["initContainers"]] == ["enable-core-dump"]
    na = find(objs, "DaemonSet", "istio-nodeagent")["spec"]["template"]["spec"]
    assert na["volumes"][0]["hostPath"]["path"] == "/var/run/sds"
    plain = find(master(MINIMAL), "Deployment", "istio-ingressgateway")["spec"]["template"]["spec"]
    assert "initContainers" not in plain
    assert {v["name"] for v in plain["volumes"]} == {"istio-certs", "ingressgateway-certs", "ingressgateway-ca-certs"}


def test_webhooks() -> None:
    objs = master(MINIMAL)
    hook = find(objs, "MutatingWebhookConfiguration", "istio-sidecar-injector")["webhooks"][0]
    assert hook["clientConfig"] == {
        "service": {"name": "istio-sidecar-injector", "namespace": NS, "path": "/inject", "port": 443}
    }
    assert "caBundle" not in hook["clientConfig"]  # the injector patches its own CA in
    assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]
    galley = yaml.safe_load(find(objs, "ConfigMap", "istio-galley-configuration")["data"]["validatingwebhookconfiguration.yaml"])
    assert [w["name"] for w in galley["webhooks"]] == ["pilot.validation.istio.io", "mixer.validation.istio.io"]
    no_mixer = master(set_path(MINIMAL, "mixer.enabled", False))
    galley = yaml.safe_load(find(no_mixer, "ConfigMap", "istio-galley-configuration")["data"]["validatingwebhookconfiguration.yaml"])
    assert [w["name"] for w in galley["webhooks"]] == ["pilot.validation.istio.io"]


def test_remote_citadel_signs_with_the_shared_root_when_the_facts_say_so() -> None:
    rraw = {"enabledServices": [{"name": "istio-pilot"}]}
    shared = remote(MINIMAL, rraw, RenderFacts(cluster="r", role="remote", network="r", ca_secret_name="cacerts"))
    args = find(shared, "Deployment", "istio-citadel")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--self-signed-ca=false" in args
    alone = remote(MINIMAL, rraw)
    args = find(alone, "Deployment", "istio-citadel")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--self-signed-ca=true" in args


def test_a_new_ca_fingerprint_restarts_citadel() -> None:
    rraw = {"enabledServices": [{"name": "istio-pilot"}]}

    def template_annotations(facts: RenderFacts) -> dict[str, str]:
        dep = find(remote(MINIMAL, rraw, facts), "Deployment", "istio-citadel")
        return dict(dep["spec"]["template"]["metadata"]["annotations"])

    base = RenderFacts(cluster="r", role="remote", network="r", ca_secret_name="cacerts")
    one = template_annotations(msgspec.structs.replace(base, ca_fingerprint="sha256:aa"))
    two = template_annotations(msgspec.structs.replace(base, ca_fingerprint="sha256:bb"))
    assert one[CONFIG_HASH_ANNOTATION] != two[CONFIG_HASH_ANNOTATION]
    assert "sha256:aa" not in str(one)  # a hash of it, like every other config hash
    # without a fingerprint (or without the Secret) the template is as before
    assert CONFIG_HASH_ANNOTATION not in template_annotations(base)
    assert CONFIG_HASH_ANNOTATION not in template_annotations(RenderFacts(cluster="r", role="remote", ca_fingerprint="sha256:aa"))
