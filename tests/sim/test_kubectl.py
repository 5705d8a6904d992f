"""kubectl against a three-cluster fleet, through the merged kubeconfig and its contexts.

Tested against kubectl v1.32.4 (``/usr/bin/kubectl``, the google-cloud-sdk build, which
reports ``Client Version: v1.32.4-dispatcher``). HOME points at a temporary directory
so kubectl's discovery cache belongs to this module alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from federationd.sim import Fleet
from tests.sim.conftest import unique, wait_for
from tests.sim.crds import remoteistio, remoteistio_crd

KUBECTL = "/usr/bin/kubectl"
KUBECTL_VERSION = "v1.32.4"
ISTIO_CRD = Path(__file__).resolve().parents[2] / "deploy" / "crds" / "istio.banzaicloud.io_istios.yaml"

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(shutil.which(KUBECTL) is None, reason=f"{KUBECTL} is not installed on this machine"),
]


class Kubectl:
    def __init__(self, fleet: Fleet, home: Path) -> None:
        self.fleet = fleet
        self.env = {**os.environ, "HOME": str(home), "KUBECONFIG": ""}
        self.home = home

    def argv(self, context: str, *args: str) -> list[str]:
        return [KUBECTL, "--kubeconfig", str(self.fleet.merged_kubeconfig_path), "--context", context, *args]

    async def run(self, context: str, *args: str, stdin: str | None = None, check: bool = True,
                  limit: float = 30) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(context, *args), env=self.env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(limit):
                out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        rc = proc.returncode if proc.returncode is not None else -1
        if check and rc != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({rc}): {err.decode()}")
        return rc, out.decode(), err.decode()

    def write(self, name: str, *objs: dict[str, Any]) -> str:
        p = self.home / f"{name}.yaml"
        p.write_text(yaml.safe_dump_all(objs, sort_keys=False))
        return str(p)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kubectl(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(fleet, tmp_path_factory.mktemp("kubectl-home"))


async def test_kubectl_version_is_the_one_recorded(kubectl: Kubectl) -> None:
    _, out, _ = await kubectl.run("master", "version", "--client", "-o", "yaml")
    assert yaml.safe_load(out)["clientVersion"]["gitVersion"].startswith(KUBECTL_VERSION)


async def test_every_context_reaches_its_own_cluster(kubectl: Kubectl, fleet: Fleet) -> None:
    for c in fleet:
        _, out, _ = await kubectl.run(c.name, "get", "nodes", "-L", "topology.kubernetes.io/region")
        assert out.splitlines()[0].split()[:2] == ["NAME", "STATUS"]
        assert c.region in out
        assert c.requests.total("list", "nodes") >= 1


def _deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.25",
                                                           "ports": [{"containerPort": 80}],
                                                           "env": [{"name": "A", "value": "1"}]}]}}}}


async def test_client_side_apply_create_and_configure(kubectl: Kubectl, fleet: Fleet) -> None:
    name = unique("csa")
    f = kubectl.write(name, _deployment(name))
    _, out, _ = await kubectl.run("remote-eu", "apply", "-f", f)
    assert out.strip() == f"deployment.apps/{name} created"
    d = _deployment(name, 2)
    d["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"})
    f = kubectl.write(name, d)
    _, out, _ = await kubectl.run("remote-eu", "apply", "-f", f)
    assert out.strip() == f"deployment.apps/{name} configured"
    live = fleet["remote-eu"].store.get("apps/v1", "Deployment", name, "default")
    assert live is not None and live["spec"]["replicas"] == 2
    assert live["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert "kubectl.kubernetes.io/last-applied-configuration" in live["metadata"]["annotations"]
    _, out, _ = await kubectl.run("remote-eu", "apply", "-f", f)
    assert out.strip() == f"deployment.apps/{name} unchanged"


async def test_server_side_apply_and_get_yaml(kubectl: Kubectl, fleet: Fleet) -> None:
    name = unique("ssa")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"k": "v"}}
    f = kubectl.write(name, cm)
    _, out, _ = await kubectl.run("remote-us", "apply", "--server-side", "-f", f)
    assert out.strip() == f"configmap/{name} serverside-applied"
    _, out, _ = await kubectl.run("remote-us", "get", "configmap", name, "-o", "yaml", "--show-managed-fields")
    got = yaml.safe_load(out)
    assert got["data"] == {"k": "v"} and got["metadata"]["managedFields"][0]["manager"] == "kubectl"
    assert got["metadata"]["managedFields"][0]["operation"] == "Apply"
    # another manager owning the field makes kubectl report the conflict
    cm["data"]["k"] = "w"
    f = kubectl.write(name, cm)
    rc, _, err = await kubectl.run("remote-us", "apply", "--server-side", "--field-manager", "other", "-f", f, check=False)
    assert rc != 0 and "conflict" in err.lower() and '"kubectl"' in err and ".data.k" in err
    _, out, _ = await kubectl.run("remote-us", "apply", "--server-side", "--field-manager", "other", "--force-conflicts", "-f", f)
    assert "serverside-applied" in out


async def test_get_watch_sees_a_change(kubectl: Kubectl, fleet: Fleet) -> None:
    name = unique("w")
    c = fleet["master"]
    c.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", "labels": {"step": "one"}}})
    proc = await asyncio.create_subprocess_exec(
        *kubectl.argv("master", "get", "configmaps", name, "-w", "-L", "step"), env=kubectl.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not any(name in ln and "one" in ln for ln in lines):
                lines.append((await proc.stdout.readline()).decode())
            await wait_for(lambda: c.requests.total("watch", "configmaps") > 0, what="kubectl watching")
            await kubectl.run("master", "label", "configmap", name, "step=two", "--overwrite")
            while not any(name in ln and "two" in ln for ln in lines):
                line = (await proc.stdout.readline()).decode()
                assert line, "kubectl get -w ended early"
                lines.append(line)
    finally:
        proc.kill()
        await proc.wait()
    assert lines[0].split()[:3] == ["NAME", "DATA", "AGE"]


async def test_label_and_delete(kubectl: Kubectl, fleet: Fleet) -> None:
    name = unique("l")
    c = fleet["remote-eu"]
    c.store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"}})
    _, out, _ = await kubectl.run("remote-eu", "label", "secret", name, "istio/multiCluster=true")
    assert out.strip() == f"secret/{name} labeled"
    _, out, _ = await kubectl.run("remote-eu", "get", "secrets", "-l", "istio/multiCluster=true", "-o", "name")
    assert f"secret/{name}" in out.split()
    _, out, _ = await kubectl.run("remote-eu", "delete", "secret", name)
    assert out.strip() == f'secret "{name}" deleted'
    assert c.store.get("v1", "Secret", name, "default") is None
    rc, _, err = await kubectl.run("remote-eu", "delete", "secret", name, check=False)
    assert rc != 0 and err.strip() == f'Error from server (NotFound): secrets "{name}" not found'


async def test_crd_discovery_and_printer_columns(kubectl: Kubectl, fleet: Fleet) -> None:
    f = kubectl.write("crd", remoteistio_crd())
    await kubectl.run("master", "apply", "-f", f)
    await kubectl.run("master", "wait", "--for=condition=Established", "crd/remoteistios.istio.banzaicloud.io", "--timeout=10s")
    _, out, _ = await kubectl.run("master", "api-resources", "--api-group=istio.banzaicloud.io")
    assert "remoteistios" in out and "RemoteIstio" in out
    c = fleet["master"]
    # a generator command: kubectl sends this body as protobuf
    _, out, _ = await kubectl.run("master", "create", "namespace", "istio-system")
    assert out.strip() == "namespace/istio-system created"
    f = kubectl.write("ri", remoteistio("remote-eu"), remoteistio("remote-us"))
    _, out, _ = await kubectl.run("master", "apply", "-f", f)
    assert "remoteistio.istio.banzaicloud.io/remote-eu created" in out
    c.store.apply_status("istio.banzaicloud.io/v1beta1", "RemoteIstio", "remote-eu", "istio-system",
                         {"Status": "Available", "GatewayAddress": ["35.204.1.52"]})
    _, out, _ = await kubectl.run("master", "get", "remoteistios", "-n", "istio-system")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ERROR", "GATEWAYS", "AGE"]
    # an absent cell prints as blank, as in the source documents' output
    assert lines[1].split()[:3] == ["remote-eu", "Available", "[35.204.1.52]"]
    assert lines[2].split()[0] == "remote-us"


async def test_wait_for_condition(kubectl: Kubectl) -> None:
    name = unique("wait")
    f = kubectl.write(name, _deployment(name, 2))
    await kubectl.run("remote-us", "apply", "-f", f)
    _, out, _ = await kubectl.run("remote-us", "wait", "--for=condition=Available", f"deployment/{name}", "--timeout=20s")
    assert out.strip() == f"deployment.apps/{name} condition met"
    _, out, _ = await kubectl.run("remote-us", "scale", f"deployment/{name}", "--replicas=3")
    assert out.strip() == f"deployment.apps/{name} scaled"
    _, out, _ = await kubectl.run("remote-us", "rollout", "status", f"deployment/{name}", "--timeout=20s")
    assert out.strip().endswith("successfully rolled out")
    _, out, _ = await kubectl.run("remote-us", "describe", "deployment", name)
    assert "Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable" in out


async def test_error_message_for_an_invalid_object(kubectl: Kubectl) -> None:
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_A_Name", "namespace": "default"}}
    f = kubectl.write("bad", bad)
    rc, _, err = await kubectl.run("master", "apply", "-f", f, check=False)
    assert rc != 0
    assert err.startswith('The ConfigMap "Not_A_Name" is invalid: metadata.name: Invalid value: "Not_A_Name"'), err
    rc, _, err = await kubectl.run("master", "apply", "-f", kubectl.write("nons", {**bad, "metadata": {"name": "ok", "namespace": "nope"}}), check=False)
    assert rc != 0 and 'namespaces "nope" not found' in err


async def test_generator_commands_that_send_protobuf(kubectl: Kubectl, fleet: Fleet) -> None:
    c = fleet["remote-eu"]
    ns = unique("gen")
    await kubectl.run("remote-eu", "create", "namespace", ns)
    _, out, _ = await kubectl.run("remote-eu", "create", "configmap", "cfg", "-n", ns, "--from-literal=a=b")
    assert out.strip() == "configmap/cfg created"
    _, out, _ = await kubectl.run("remote-eu", "create", "secret", "generic", "kc", "-n", ns, "--from-literal=remote-eu=kubeconfig")
    assert out.strip() == "secret/kc created"
    await kubectl.run("remote-eu", "create", "serviceaccount", "sa", "-n", ns)
    assert (c.store.get("v1", "ConfigMap", "cfg", ns) or {})["data"] == {"a": "b"}
    assert (c.store.get("v1", "Secret", "kc", ns) or {})["data"] == {"remote-eu": "a3ViZWNvbmZpZw=="}
    assert c.store.get("v1", "ServiceAccount", "sa", ns) is not None


async def test_auth_can_i_follows_the_token(kubectl: Kubectl, fleet: Fleet, tmp_path: Path) -> None:
    rc, out, _ = await kubectl.run("master", "auth", "can-i", "create", "pods", check=False)
    assert rc == 0 and out.strip() == "yes"
    viewer = tmp_path / "viewer.kubeconfig"
    viewer.write_text(yaml.safe_dump(fleet["master"].kubeconfig_for(viewer=True)))
    argv = [KUBECTL, "--kubeconfig", str(viewer), "auth", "can-i", "create", "pods"]
    proc = await asyncio.create_subprocess_exec(*argv, env=kubectl.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30):
        out_b, _ = await proc.communicate()
    assert proc.returncode == 1 and out_b.decode().strip() == "no"


async def test_generators_of_every_builtin_kind_send_protobuf(kubectl: Kubectl, fleet: Fleet) -> None:
    c = fleet["remote-us"]
    ns = unique("pb")
    await kubectl.run("remote-us", "create", "namespace", ns)
    commands = [
        (["create", "deployment", "web", "--image=nginx:1.27", "--replicas=0", "--port=80"], "deployment.apps/web created"),
        (["create", "service", "clusterip", "web", "--tcp=80:8080"], "service/web created"),
        (["create", "role", "reader", "--verb=get,list", "--resource=pods,deployments.apps"],
         "role.rbac.authorization.k8s.io/reader created"),
        (["create", "rolebinding", "reader", "--role=reader", "--user=alice", f"--serviceaccount={ns}:default"],
         "rolebinding.rbac.authorization.k8s.io/reader created"),
        (["create", "pdb", "web", "--selector=app=web", "--min-available=50%"], "poddisruptionbudget.policy/web created"),
    ]
    for argv, expected in commands:
        _, out, _ = await kubectl.run("remote-us", *argv, "-n", ns)
        assert out.strip() == expected
    cr = unique("cr")
    _, out, _ = await kubectl.run("remote-us", "create", "clusterrole", cr, "--verb=get", "--resource=nodes")
    assert out.strip() == f"clusterrole.rbac.authorization.k8s.io/{cr} created"
    # every one of them went over the wire as protobuf, and is stored as the JSON object
    dep = c.store.get("apps/v1", "Deployment", "web", ns)
    assert dep is not None and dep["spec"]["replicas"] == 0  # a pointer's zero survives
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    svc = c.store.get("v1", "Service", "web", ns)
    assert svc is not None and svc["spec"]["ports"][0]["targetPort"] == 8080  # IntOrString as a number
    pdb = c.store.get("policy/v1", "PodDisruptionBudget", "web", ns)
    assert pdb is not None and pdb["spec"]["minAvailable"] == "50%"  # ... and as a string
    role = c.store.get("rbac.authorization.k8s.io/v1", "Role", "reader", ns)
    assert role is not None and role["rules"][1] == {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}
    rb = c.store.get("rbac.authorization.k8s.io/v1", "RoleBinding", "reader", ns)
    assert rb is not None and [s["kind"] for s in rb["subjects"]] == ["User", "ServiceAccount"]
    assert c.store.get("rbac.authorization.k8s.io/v1", "ClusterRole", cr) is not None


async def test_explain_builtins_and_a_crd(kubectl: Kubectl, fleet: Fleet) -> None:
    _, out, _ = await kubectl.run("remote-eu", "explain", "deployment.spec.template")
    assert "FIELD: template <PodTemplateSpec>" in out
    assert "Template describes the pods that will be created." in out
    assert "spec\t<PodSpec>" in out
    # the v2 document, which kubectl reads in client-go's protobuf form
    _, out, _ = await kubectl.run("remote-eu", "explain", "--output", "plaintext-openapiv2", "service.spec.ports")
    assert "VERSION:  v1" in out and "targetPort\t<string>" in out
    await kubectl.run("remote-eu", "apply", "-f", str(ISTIO_CRD))
    await kubectl.run("remote-eu", "wait", "--for=condition=Established", "crd/istios.istio.banzaicloud.io", "--timeout=10s")
    _, out, _ = await kubectl.run("remote-eu", "explain", "istios.spec")
    assert "GROUP:      istio.banzaicloud.io" in out and "KIND:       Istio" in out
    assert "version\t<string>" in out and "mtls\t<boolean>" in out
    _, out, _ = await kubectl.run("remote-eu", "explain", "istios.metadata.labels")
    assert "map[string]string" in out


async def test_tables_have_the_upstream_columns(kubectl: Kubectl, fleet: Fleet) -> None:
    c = fleet["master"]
    ns = unique("tab")
    c.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    c.store.create({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1", "namespace": ns},
        "involvedObject": {"kind": "Deployment", "name": "web", "namespace": ns},
        "reason": "ScalingReplicaSet", "message": "Scaled up replica set web-1 to 1 ", "type": "Normal",
        "source": {"component": "deployment-controller"}, "count": 2,
        "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z",
    })
    _, out, _ = await kubectl.run("master", "get", "events", "-n", ns)
    head, row = out.splitlines()
    assert head.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert row.split()[1:] == ["Normal", "ScalingReplicaSet", "deployment/web", "Scaled", "up", "replica", "set", "web-1", "to", "1"]
    _, out, _ = await kubectl.run("master", "get", "events", "-n", ns, "-o", "wide")
    assert out.splitlines()[0].split()[-4:] == ["FIRST", "SEEN", "COUNT", "NAME"]
    assert "deployment-controller" in out and out.splitlines()[1].split()[-2:] == ["2", "web.1"]
    _, out, _ = await kubectl.run("master", "get", "nodes")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert lines[1].split()[1] == "Ready" and lines[1].split()[-1] == "v1.32.0"
    c.store.create({
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": ns},
        "subsets": [{"addresses": [{"ip": f"10.1.0.{i}"} for i in range(1, 6)], "ports": [{"port": 8080}]}],
    })
    _, out, _ = await kubectl.run("master", "get", "endpoints", "web", "-n", ns)
    head, row = out.splitlines()
    assert head.split() == ["NAME", "ENDPOINTS", "AGE"]
    assert row.split()[1:5] == ["10.1.0.1:8080,10.1.0.2:8080,10.1.0.3:8080", "+", "2", "more..."]
    cr = unique("cr")
    c.store.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": cr}})
    _, out, _ = await kubectl.run("master", "get", "clusterrole", cr)
    head, row = out.splitlines()
    assert head.split() == ["NAME", "CREATED", "AT"] and row.split()[1].endswith("Z")
