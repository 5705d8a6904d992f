"""Sidecar injection on the simulated fleet, as the API server and Istio's injector do it.

The objects are the ones federationd renders (ConfigMaps, injector Deployment and Service,
MutatingWebhookConfiguration) for Istio 1.1.14 and 1.2.8; each expectation is an upstream
fact (``pilot/pkg/kube/inject`` at those tags, the API server's webhook errors):

* a Pod created in a namespace the webhook selects gets ``istio-init`` and ``istio-proxy``
  at the installed version, the volumes, and the ``sidecar.istio.io/status`` annotation;
* ``sidecar.istio.io/inject``, the config's ``policy``, ``hostNetwork`` and kube-system
  decide as ``injectRequired`` does; a namespace outside the selector is never sent;
* a template that does not parse is denied with Go's parse error; a ConfigMap missing a
  key the injector reads keeps the injector from starting, so the call fails
  (``failurePolicy: Fail`` refuses the Pod, ``Ignore`` admits it as it is);
* Pods of Deployments go through the same path: a refused Pod is a ``FailedCreate``
  Warning on its ReplicaSet and is created once the injector works.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from federationd.api import v1beta1
from federationd.render import render_master
from federationd.render.objects import RenderFacts
from federationd.sim import ClusterSpec, Fleet, errors, versions
from federationd.sim.injection import Webhooks, functions
from federationd.sim.store import Store
from tests.daemon.conftest import kubectl
from tests.render.test_golden import KUBERNETES_1_14_APIS
from tests.sim.conftest import wait_for

NS = "istio-system"
INJECTOR = "istio-sidecar-injector"
APP_NS = "default"
TAGS = {"1.1": "1.1.14", "1.2": "1.2.8"}
WEBHOOK = "sidecar-injector.istio.io"


def _objects(version: str, **spec: Any) -> list[dict[str, Any]]:
    """What federationd renders for the injector (and the mesh config it reads)."""
    istio = v1beta1.istio_spec({"version": version, "autoInjectionNamespaces": [APP_NS], **spec}, namespace=NS)
    objs = render_master(istio, namespace=NS, facts=RenderFacts(kubernetes_apis=KUBERNETES_1_14_APIS))
    keep = []
    for o in objs:
        name = o["metadata"]["name"]
        if o["kind"] == "ConfigMap" and name in ("istio", INJECTOR):
            keep.append(o)
        elif o["kind"] in ("Deployment", "Service", "ServiceAccount") and name.startswith(INJECTOR):
            keep.append(o)
        elif o["kind"] == "MutatingWebhookConfiguration":
            keep.append(o)
    return keep


def _store(version: str, *, objs: list[dict[str, Any]] | None = None, endpoints: bool = True,
           label: bool = True) -> Store:
    """A 1.14 cluster's store with the injector installed (its Service with a ready
    endpoint unless ``endpoints=False``) and ``default`` labelled for injection."""
    store = Store(versions.registry_for("1.14"))
    store.admission.append(Webhooks(store).admit)
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    for o in objs if objs is not None else _objects(version):
        store.create(o)
    if endpoints:
        store.create({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": INJECTOR, "namespace": NS},
                      "subsets": [{"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 443}]}]})
    if label:
        ns = store.get("v1", "Namespace", APP_NS)
        assert ns is not None
        ns["metadata"].setdefault("labels", {})["istio-injection"] = "enabled"
        store.update(ns)
    return store


def _pod(name: str = "echo", *, annotations: dict[str, str] | None = None, ns: str = APP_NS, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": {"app": "echo"}}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "echo", "image": "k8s.gcr.io/echoserver:1.10",
                                     "ports": [{"containerPort": 8080}]}], **spec}}


def _names(pod: dict[str, Any], key: str) -> list[str]:
    return [c["name"] for c in pod["spec"].get(key) or []]


def _config(store: Store) -> tuple[dict[str, Any], dict[str, Any]]:
    cm = store.get("v1", "ConfigMap", INJECTOR, NS)
    assert cm is not None
    return cm, yaml.safe_load(cm["data"]["config"])


@pytest.mark.parametrize("minor", ["1.1", "1.2"])
def test_a_pod_in_an_injection_namespace_gets_the_sidecar_of_the_installed_version(minor: str) -> None:
    store = _store(TAGS[minor])
    pod = store.create(_pod())
    tag = TAGS[minor]
    assert _names(pod, "containers") == ["echo", "istio-proxy"]
    assert _names(pod, "initContainers") == ["istio-init"]
    proxy = pod["spec"]["containers"][1]
    assert proxy["image"] == f"docker.io/istio/proxyv2:{tag}"
    assert pod["spec"]["initContainers"][0]["image"] == f"docker.io/istio/proxy_init:{tag}"
    # the template's values: the app's ports, its app label, the mesh defaults (45s / 1m0s)
    args = proxy["args"]
    assert args[args.index("--applicationPorts") + 1] == "8080"
    assert args[args.index("--serviceCluster") + 1] == "echo.$(POD_NAMESPACE)"
    assert args[args.index("--drainDuration") + 1] == "45s"
    assert args[args.index("--parentShutdownDuration") + 1] == "1m0s"
    init_args = pod["spec"]["initContainers"][0]["args"]
    assert init_args[init_args.index("-b") + 1] == "8080" and init_args[init_args.index("-u") + 1] == "1337"
    # injected containers are defaulted by the server like any other
    assert proxy["terminationMessagePath"] == "/dev/termination-log"
    assert proxy["readinessProbe"]["httpGet"]["port"] == 15020
    assert {v["name"] for v in pod["spec"]["volumes"]} >= {"istio-envoy", "istio-certs"}
    # the status annotation names what was injected and the template's sha256
    _, config = _config(store)
    status = json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])
    assert status["version"] == hashlib.sha256(config["template"].encode()).hexdigest()
    assert status["containers"] == ["istio-proxy"] and status["initContainers"] == ["istio-init"]
    assert status["imagePullSecrets"] is None
    # the app container is untouched
    assert pod["spec"]["containers"][0]["image"] == "k8s.gcr.io/echoserver:1.10"


def _variants() -> dict[str, dict[str, Any]]:
    from tests.render.specs import full

    out: dict[str, dict[str, Any]] = {}
    for v in TAGS.values():
        base = full(v)
        out[f"full-{v}"] = base
        out[f"full-{v}-no-cni-no-sds"] = {**base, "sds": {"enabled": False}, "sidecarInjector": {
            **base.get("sidecarInjector", {}), "initCNIConfiguration": {"enabled": False}}}
        out[f"full-{v}-multi-mesh"] = {**base, "multiMesh": True}
        out[f"minimal-{v}"] = {"version": v}
    return out


@pytest.mark.parametrize("variant", sorted(_variants()))
def test_every_template_federationd_renders_is_accepted_by_its_injector(variant: str) -> None:
    """With every knob on, with CNI and SDS off, multi-mesh: the template parses with
    the version's delimiters and functions, runs, and its output decodes, for a plain Pod
    and for one with the annotations the template reads."""
    spec = _variants()[variant]
    version = spec["version"]
    store = _store(version, objs=_objects(version, **{k: v for k, v in spec.items() if k != "version"}))
    annotations = {"sidecar.istio.io/interceptionMode": "TPROXY", "sidecar.istio.io/proxyCPU": "500m",
                   "sidecar.istio.io/proxyMemory": "64Mi", "traffic.sidecar.istio.io/excludeOutboundPorts": "80"}
    for name, ann in (("plain", None), ("annotated", annotations)):
        pod = store.create(_pod(name, annotations=ann))
        proxy = pod["spec"]["containers"][-1]
        assert proxy["name"] == "istio-proxy" and proxy["image"] == f"docker.io/istio/proxyv2:{version}"
    assert proxy["resources"]["requests"] == {"cpu": "500m", "memory": "64Mi"}


def test_1_1_template_is_parsed_with_square_delimiters_and_1_2_with_curly() -> None:
    for minor, delims in (("1.1", "[["), ("1.2", "{{")):
        _, config = _config(_store(TAGS[minor]))
        assert delims in config["template"]
    # the 1.2 template in a 1.1 injector is never evaluated: its output is not YAML
    store = _store(TAGS["1.1"])
    cm, config = _config(store)
    _, config_12 = _config(_store(TAGS["1.2"]))
    config["template"] = config_12["template"].replace("1.2.8", "1.1.14")
    cm["data"]["config"] = yaml.safe_dump(config)
    store.update(cm)
    with pytest.raises(errors.ApiError) as e:
        store.create(_pod())
    assert e.value.code == 400
    assert e.value.message.startswith(f'admission webhook "{WEBHOOK}" denied the request: ')


def test_each_version_has_exactly_its_template_functions() -> None:
    # injectionData's FuncMap at 1.1.14; 1.2.8 adds contains (flippedContains) and render.
    # (toLower, structToJSON, protoToJSON came later: a template using them does not parse.)
    v11 = {"formatDuration", "isset", "excludeInboundPort", "includeInboundPorts", "kubevirtInterfaces",
           "applicationPorts", "annotation", "valueOrDefault", "toJSON", "toJson", "fromJSON", "toYaml", "indent",
           "directory"}
    assert set(functions(1)) == v11
    assert set(functions(2)) == v11 | {"contains", "render"}
    store = _store(TAGS["1.1"])
    cm, config = _config(store)
    config["template"] = "[[ if contains `a` `abc` ]]x: 1[[ end ]]\n" + config["template"]
    cm["data"]["config"] = yaml.safe_dump(config)
    store.update(cm)
    with pytest.raises(errors.ApiError) as e:
        store.create(_pod())
    assert e.value.message.endswith('template: inject:1: function "contains" not defined')


def test_who_is_injected_follows_inject_required() -> None:
    store = _store(TAGS["1.2"])
    assert _names(store.create(_pod("off", annotations={"sidecar.istio.io/inject": "false"})), "containers") == ["echo"]
    assert _names(store.create(_pod("host", hostNetwork=True)), "containers") == ["echo"]
    assert _names(store.create(_pod("system", ns="kube-system")), "containers") == ["echo"]
    # a namespace the webhook does not select is never sent to it
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}})
    assert _names(store.create(_pod("plain", ns="plain")), "containers") == ["echo"]
    # policy disabled: only an explicit "yes" (any of y, yes, true, on) injects
    cm, config = _config(store)
    config["policy"] = "disabled"
    cm["data"]["config"] = yaml.safe_dump(config)
    store.update(cm)
    assert _names(store.create(_pod("default-off")), "containers") == ["echo"]
    assert _names(store.create(_pod("asked", annotations={"sidecar.istio.io/inject": "On"})), "containers") == [
        "echo", "istio-proxy"]


def test_an_invalid_annotation_is_denied_with_istio_s_message() -> None:
    store = _store(TAGS["1.2"])
    with pytest.raises(errors.ApiError) as e:
        store.create(_pod(annotations={"sidecar.istio.io/interceptionMode": "BOGUS"}))
    assert e.value.message == (
        f'admission webhook "{WEBHOOK}" denied the request: 1 error occurred:\n'
        "\t* invalid value 'BOGUS' for annotation 'sidecar.istio.io/interceptionMode': "
        "interceptionMode invalid, use REDIRECT,TPROXY,NONE: BOGUS\n\n")


@pytest.mark.parametrize("minor", ["1.1", "1.2"])
def test_a_template_that_does_not_parse_rejects_the_pod_with_go_s_error(minor: str) -> None:
    store = _store(TAGS[minor])
    cm, config = _config(store)
    open_, close = ("[[", "]]") if minor == "1.1" else ("{{", "}}")
    lines = config["template"].split("\n")
    # an {{ if }} whose {{ end }} is missing: the parser reaches the end of the text
    config["template"] = "\n".join([f"{open_} if .ObjectMeta.Labels {close}", *lines])
    cm["data"]["config"] = yaml.safe_dump(config)
    cm = store.update(cm)
    with pytest.raises(errors.ApiError) as e:
        store.create(_pod())
    assert e.value.code == 400
    assert e.value.message == (
        f'admission webhook "{WEBHOOK}" denied the request: template: inject:{len(lines) + 1}: unexpected EOF')
    # a function this version does not define
    config["template"] = f"{open_} toLower `X` {close}\n" + "\n".join(lines)
    cm["data"]["config"] = yaml.safe_dump(config)
    store.update(cm)
    with pytest.raises(errors.ApiError) as e:
        store.create(_pod())
    assert e.value.message.endswith('denied the request: template: inject:1: function "toLower" not defined')
    # nothing was stored
    assert store.get("v1", "Pod", "echo", APP_NS) is None


def test_a_1_2_configmap_without_values_stops_the_injector_and_refuses_pods() -> None:
    objs = _objects(TAGS["1.2"])
    for o in objs:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == INJECTOR:
            del o["data"]["values"]
    store = _store(TAGS["1.2"], objs=objs)
    with pytest.raises(errors.ApiError) as e:
        store.create(_pod())
    assert (e.value.code, e.value.reason) == (500, "InternalError")
    assert e.value.message == (
        f'Internal error occurred: failed calling webhook "{WEBHOOK}": Post '
        f"https://{INJECTOR}.{NS}.svc:443/inject?timeout=30s: no endpoints available for service \"{INJECTOR}\"")
    # why: the Deployment mounts both keys (as helm's does), so the volume cannot be set up
    events = [ev for ev in store.list("v1", "Event", NS) if ev["involvedObject"]["name"] == INJECTOR]
    assert [(ev["type"], ev["reason"], ev["message"]) for ev in events] == [
        ("Warning", "FailedMount", 'MountVolume.SetUp failed for volume "inject-config" : '
                                   "configmap references non-existent config key: values")]
    # an injector mounting the whole ConfigMap starts, reads --injectValues and exits
    for o in objs:
        if o["kind"] == "Deployment":
            for v in o["spec"]["template"]["spec"]["volumes"]:
                if v["name"] == "inject-config":
                    del v["configMap"]["items"]
    store = _store(TAGS["1.2"], objs=objs)
    with pytest.raises(errors.ApiError) as e:
        store.create(_pod())
    assert "no endpoints available for service" in e.value.message
    events = [ev for ev in store.list("v1", "Event", NS) if ev["involvedObject"]["name"] == INJECTOR]
    assert [ev["message"] for ev in events] == [
        "failed to create injection webhook: open /etc/istio/inject/values: no such file or directory"]
    # a 1.1 injector never reads it: the same ConfigMap without values is fine there
    objs_11 = _objects(TAGS["1.1"])
    assert not any("values" in (o.get("data") or {}) for o in objs_11 if o["metadata"]["name"] == INJECTOR)
    assert _names(_store(TAGS["1.1"], objs=objs_11).create(_pod()), "containers") == ["echo", "istio-proxy"]


def test_failure_policy_decides_when_the_injector_cannot_be_called() -> None:
    objs = _objects(TAGS["1.2"])
    store = _store(TAGS["1.2"], objs=copy.deepcopy(objs), endpoints=False)
    with pytest.raises(errors.ApiError) as e:
        store.create(_pod())
    assert "no endpoints available for service" in e.value.message
    for o in objs:
        if o["kind"] == "MutatingWebhookConfiguration":
            for w in o["webhooks"]:
                w["failurePolicy"] = "Ignore"
    ignoring = _store(TAGS["1.2"], objs=objs, endpoints=False)
    assert _names(ignoring.create(_pod()), "containers") == ["echo"]


@pytest.mark.parametrize("minor", ["1.1", "1.2"])
def test_app_http_probes_are_rewritten_through_the_agent_when_asked(minor: str) -> None:
    store = _store(TAGS[minor], objs=_objects(TAGS[minor], sidecarInjector={"rewriteAppHTTPProbe": True}))
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5}
    pod = _pod("probed")
    pod["spec"]["containers"][0].update(ports=[{"name": "http", "containerPort": 8080}], readinessProbe=probe)
    created = store.create(pod)
    app, proxy = created["spec"]["containers"]
    # createProbeRewritePatch: the kubelet asks pilot-agent's status port, by container
    assert app["readinessProbe"]["httpGet"] == {"path": "/app-health/echo/readyz", "port": 15020}
    assert app["readinessProbe"]["periodSeconds"] == 5
    # addAppProberCmd: the agent learns the app's probe, the named port resolved
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["ISTIO_KUBE_APP_PROBERS"] == '{"/app-health/echo/readyz":{"path":"/health","port":8080}}'
    # 1.2 lets a Pod opt out with sidecar.istio.io/rewriteAppHTTPProbers; 1.1 has no such annotation
    pod["metadata"] = {"name": "opted-out", "namespace": APP_NS,
                       "annotations": {"sidecar.istio.io/rewriteAppHTTPProbers": "false"}}
    kept = store.create(pod)["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert (kept == {"path": "/health", "port": "http"}) == (minor == "1.2")


def test_a_pod_injected_before_is_re_injected_not_doubled() -> None:
    store = _store(TAGS["1.2"])
    first = store.create(_pod("first"))
    again = copy.deepcopy(first)
    again["metadata"] = {"name": "again", "namespace": APP_NS, "labels": {"app": "echo"},
                         "annotations": first["metadata"]["annotations"]}
    again.pop("status", None)
    second = store.create(again)
    assert _names(second, "containers") == ["echo", "istio-proxy"]
    assert _names(second, "initContainers") == ["istio-init"]
    assert [v["name"] for v in second["spec"]["volumes"]] == [v["name"] for v in first["spec"]["volumes"]]


ECHO = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: k8s.gcr.io/echoserver:1.10
        ports: [{containerPort: 8080}]
"""


@pytest.mark.asyncio
async def test_kubectl_shows_the_sidecar_and_deployments_retry_refused_pods(tmp_path: Path) -> None:
    async with Fleet([ClusterSpec("master", kubernetes_version="1.14")], directory=tmp_path / "fleet",
                     ready_delay=0.02) as fleet:
        c = fleet["master"]
        objs = _objects(TAGS["1.2"])
        broken = copy.deepcopy(objs)
        for o in broken:
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == INJECTOR:
                del o["data"]["values"]
        c.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        for o in broken:
            c.store.create(o)
        kc = c.kubeconfig_path
        await kubectl(kc, "label", "namespace", APP_NS, "istio-injection=enabled")
        await wait_for(lambda: any(s.get("addresses") for s in (c.store.get("v1", "Endpoints", INJECTOR, NS) or {})
                                   .get("subsets") or []), what="injector endpoints")
        await kubectl(kc, "apply", "-f", "-", stdin=ECHO)

        def failed_creates() -> list[str]:
            return [e["message"] for e in c.store.list("v1", "Event", APP_NS)
                    if e["reason"] == "FailedCreate" and e["type"] == "Warning"]

        await wait_for(failed_creates, what="FailedCreate on the ReplicaSet")
        assert failed_creates()[0].startswith(f'Error creating: Internal error occurred: failed calling webhook "{WEBHOOK}"')
        assert not c.store.list("v1", "Pod", APP_NS)
        # the ConfigMap fixed, the ReplicaSet's retry creates the Pod with its sidecar
        fixed = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == INJECTOR)
        await kubectl(kc, "patch", "configmap", INJECTOR, "-n", NS, "--type", "merge",
                      "-p", json.dumps({"data": {"values": fixed["data"]["values"]}}))
        await wait_for(lambda: c.store.list("v1", "Pod", APP_NS), within=10, what="echo pod")
        out = await kubectl(kc, "get", "pod", "-n", APP_NS, "-o", "yaml")
        images = sorted({line.strip() for line in out.splitlines() if line.strip().startswith("image:")})
        assert images == ["image: docker.io/istio/proxy_init:1.2.8", "image: docker.io/istio/proxyv2:1.2.8",
                          "image: k8s.gcr.io/echoserver:1.10"]
        # a denial reaches kubectl as the API server words it
        bad = _pod("bad", annotations={"sidecar.istio.io/interceptionMode": "BOGUS"})
        with pytest.raises(AssertionError) as e:
            await kubectl(kc, "apply", "-f", "-", stdin=json.dumps(bad))
        assert f'Error from server: error when creating "STDIN": admission webhook "{WEBHOOK}" denied the request' in str(e.value)
