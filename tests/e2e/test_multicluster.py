"""Seed 002 across two clusters: a master in europe-west2 and a remote in eu-north-1 (the
seed's regions), one fleet and one daemon for the module; the tests run in file order.

* Upgrade propagation: a 1.1 mesh with a joined remote, upgraded by applying the 1.2 CR,
  moves the remote's components to the 1.2 images too and every CR ends Available; a
  version this build does not support is refused and changes nothing on either cluster.
* Locality load balancing: the seed's 90/10 ``distribute`` example and its fail-over
  example land verbatim in the master's mesh config, without a warning, because both
  regions are the clusters' own; a rule naming a region no cluster has is applied as
  written (it is legal) but the ``Istio`` status carries a warning, and nothing else moves.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from federationd.api.v1beta1 import image_tag_for
from federationd.render import UNSUPPORTED_MESSAGE
from federationd.sim import Cluster, ClusterSpec
from tests.daemon.conftest import kubectl
from tests.daemon.identity import remote_kubeconfig
from tests.daemon.test_e2e import _quiet
from tests.daemon.test_federation import REMOTE, _networks, _secret
from tests.daemon.waiting import wait_for

from .conftest import Mesh, open_mesh
from .support import (
    NAMESPACE,
    Obj,
    apply,
    expected,
    inventory,
    same_render,
    settled,
    status,
    versions,
    with_spec,
    workload_images,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

INPUTS = Path(__file__).resolve().parents[1] / "golden" / "inputs"
OLD_CR = (INPUTS / "seed-002-1.1.11.yaml").read_text()
OLD: Obj = yaml.safe_load(OLD_CR)
NEW: Obj = with_spec(OLD, version="1.2.2")
DISTRIBUTE_CR = (INPUTS / "seed-002-locality-distribute.yaml").read_text()
FAILOVER_CR = (INPUTS / "seed-002-locality-failover.yaml").read_text()
NAME = OLD["metadata"]["name"]
MASTER_REGION, REMOTE_REGION = "europe-west2", "eu-north-1"
#: The condition a rule naming an unobserved locality adds to the ``Istio`` status.
WARNING = "LocalitiesObserved"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    clusters = [
        ClusterSpec("master", region=MASTER_REGION, zones=(f"{MASTER_REGION}-a", f"{MASTER_REGION}-b")),
        ClusterSpec(REMOTE, region=REMOTE_REGION, zones=(f"{REMOTE_REGION}-a", f"{REMOTE_REGION}-b")),
    ]
    async with open_mesh(tmp_path_factory.mktemp("multicluster"), clusters) as m:
        yield m


def _remote(mesh: Mesh) -> Cluster:
    return mesh.fleet[REMOTE]


def _remote_status(mesh: Mesh) -> Obj:
    cr = mesh.master.store.get("istio.banzaicloud.io/v1beta1", "RemoteIstio", REMOTE, NAMESPACE) or {}
    return cr.get("status") or {}


def _tags(images: dict[str, list[str]]) -> set[str]:
    return {i.rsplit(":", 1)[1] for imgs in images.values() for i in imgs}


def _mesh_config(cluster: Cluster) -> tuple[str, dict[str, Any]]:
    cm = cluster.store.get("v1", "ConfigMap", "istio", NAMESPACE) or {}
    text = str((cm.get("data") or {}).get("mesh") or "")
    return text, yaml.safe_load(text) or {}


def _warnings(st: Obj) -> list[str]:
    return [str(c.get("message")) for c in st.get("conditions") or [] if c.get("type") == WARNING]


def _analyzed(st: Obj) -> tuple[str, str, str]:
    """(status, reason, message) of the daemon's ``MeshAnalyzed`` condition."""
    (c,) = [c for c in st.get("conditions") or [] if c.get("type") == "MeshAnalyzed"]
    return str(c["status"]), str(c["reason"]), str(c["message"])


async def _everywhere_available(mesh: Mesh, generation: int) -> None:
    """The Istio Available at ``generation`` and the RemoteIstio Available, both derived
    from everything the daemon knows (``settled`` waits for the daemon to be converged).
    The remote's network comes first: it is announced once the remote's gateway has an
    address, and a new network rolls pilot (the Istio is Reconciling meanwhile)."""
    await wait_for(lambda: _remote_status(mesh).get("Status") == "Available", timeout=30, what=f"RemoteIstio Available ({_remote_status(mesh)})")
    await wait_for(lambda: REMOTE in _networks(mesh.fleet), timeout=30, what="the remote's network in meshNetworks")
    await settled(mesh, NAME, generation)
    await wait_for(lambda: _remote_status(mesh).get("Status") == "Available", timeout=30, what=f"RemoteIstio Available ({_remote_status(mesh)})")
    await wait_for(mesh.daemon.converged, timeout=30, what="daemon converged")
    assert _remote_status(mesh).get("Status") == "Available", _remote_status(mesh)
    assert status(mesh.master, NAME).get("Status") == "Available", status(mesh.master, NAME)


#: seed 002's echo app, deployed on both clusters into the injection-enabled ``default``
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


async def _echo_proxy_images(cluster: Cluster) -> set[str]:
    """Seed 002's check, ``kubectl get pod -o yaml | grep image:``, on the echo pods: the
    sidecar images the injector put there."""
    out = await kubectl(cluster.kubeconfig_path, "get", "pod", "-n", "default", "-l", "app=echo", "-o", "yaml")
    images = {line.split("image:", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("image:")}
    return {i for i in images if "/istio/" in i}


async def _echo_running(cluster: Cluster) -> str:
    """The echo pods as ``kubectl get pods`` shows them, once each is Running 2/2."""
    out = await kubectl(cluster.kubeconfig_path, "get", "pods", "-n", "default", "-l", "app=echo")
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    return out if rows and all(r[1] == "2/2" and r[2] == "Running" for r in rows) else ""


def _object_writes(cluster: Cluster) -> int:
    """Mutating requests, but for the CRs themselves (their status) and Kubernetes Events."""
    r = cluster.requests
    return r.mutating() - r.mutating("istios") - r.mutating("remoteistios") - r.mutating("events")


# --- upgrade propagation ----------------------------------------------------------------------


async def test_a_1_1_mesh_with_a_remote_upgrades_to_1_2_everywhere(fed: Mesh) -> None:
    old_tag, new_tag = image_tag_for(OLD["spec"]["version"]), image_tag_for(NEW["spec"]["version"])
    assert old_tag.startswith("1.1.") and new_tag.startswith("1.2.")
    kc = fed.kubeconfig
    gen = await apply(fed, OLD_CR)
    # the remote prepared by seed 001's cluster-add step; its Secret authenticates as that identity
    await kubectl(kc, "apply", "-f", "-", stdin=_secret(fed.fleet, remote_kubeconfig(_remote(fed))))
    remote_cr = {
        "apiVersion": "istio.banzaicloud.io/v1beta1", "kind": "RemoteIstio",
        "metadata": {"name": REMOTE, "namespace": NAMESPACE},
        "spec": {"autoInjectionNamespaces": ["default"], "enabledServices": [{"name": "istio-pilot"}]},
    }
    await kubectl(kc, "apply", "-f", "-", stdin=json.dumps(remote_cr))
    await _everywhere_available(fed, gen)
    remote_images = workload_images(inventory(_remote(fed)))
    assert {"istio-citadel", "istio-sidecar-injector", "istio-ingressgateway"} <= remote_images.keys()
    assert _tags(remote_images) == {old_tag}, remote_images
    # the echo app on both clusters runs with the 1.1 sidecar (READY 2/2, as in the seed)
    for cluster in (fed.master, _remote(fed)):
        await kubectl(cluster.kubeconfig_path, "apply", "-f", "-", stdin=ECHO)
    for cluster in (fed.master, _remote(fed)):
        await wait_for(lambda c=cluster: _echo_running(c), timeout=30, what=f"echo 2/2 on {cluster.name}")
        assert await _echo_proxy_images(cluster) == {
            f"docker.io/istio/proxyv2:{old_tag}", f"docker.io/istio/proxy_init:{old_tag}"}

    gen = await apply(fed, NEW)
    await wait_for(lambda: _tags(workload_images(inventory(_remote(fed)))) == {new_tag}, timeout=30, what="remote images on 1.2")
    await _everywhere_available(fed, gen)
    assert _tags(workload_images(inventory(fed.master))) == {new_tag}
    remote_inv = inventory(_remote(fed))
    assert workload_images(remote_inv).keys() == remote_images.keys()
    for (_, kind, _, name), o in remote_inv.items():
        if kind == "Deployment":
            # Available only once every remote rollout of the new images was observed done
            st = o.get("status") or {}
            assert st.get("observedGeneration") == o["metadata"]["generation"], (name, st)
            assert st.get("availableReplicas") == o["spec"].get("replicas", 1), (name, st)
    # the data plane moves only when its pods restart (the seed's last step of the upgrade)
    for cluster in (fed.master, _remote(fed)):
        assert await _echo_proxy_images(cluster) == {
            f"docker.io/istio/proxyv2:{old_tag}", f"docker.io/istio/proxy_init:{old_tag}"}
        await kubectl(cluster.kubeconfig_path, "delete", "pod", "-n", "default", "-l", "app=echo")
    for cluster in (fed.master, _remote(fed)):
        await wait_for(lambda c=cluster: _echo_running(c), timeout=30, what=f"restarted echo 2/2 on {cluster.name}")
        assert await _echo_proxy_images(cluster) == {
            f"docker.io/istio/proxyv2:{new_tag}", f"docker.io/istio/proxy_init:{new_tag}"}


async def test_an_unsupported_version_changes_nothing_anywhere(fed: Mesh) -> None:
    gen = await apply(fed, NEW)
    await _everywhere_available(fed, gen)
    before = {c.name: (versions(inventory(c)), _object_writes(c)) for c in (fed.master, _remote(fed))}
    remote_status = _remote_status(fed)

    gen = await apply(fed, with_spec(NEW, version="1.3.0"))
    await settled(fed, NAME, gen, "ReconcileFailed")
    assert status(fed.master, NAME)["ErrorMessage"] == UNSUPPORTED_MESSAGE
    # a full resync later: not one write on either cluster, nothing moved
    await _quiet(fed.daemon, resyncs=1)
    after = {c.name: (versions(inventory(c)), _object_writes(c)) for c in (fed.master, _remote(fed))}
    assert after == before, (fed.master.requests.snapshot(), _remote(fed).requests.snapshot())
    assert _remote_status(fed) == remote_status
    assert status(fed.master, NAME)["Status"] == "ReconcileFailed"


# --- locality load balancing ------------------------------------------------------------------


async def test_seed_002_weighted_distribution_lands_in_the_master_mesh_config(fed: Mesh) -> None:
    gen = await apply(fed, DISTRIBUTE_CR)
    await _everywhere_available(fed, gen)
    text, mesh = _mesh_config(fed.master)
    assert mesh["localityLbSetting"] == {
        "distribute": [
            {"from": "europe-west2/*", "to": {"eu-north-1/*": 10, "europe-west2/*": 90}},
            {"from": "eu-north-1/*", "to": {"eu-north-1/*": 90, "europe-west2/*": 10}},
        ]
    }
    assert (
        "localityLbSetting:\n"
        "  distribute:\n"
        "  - from: europe-west2/*\n"
        "    to:\n"
        "      eu-north-1/*: 10\n"
        "      europe-west2/*: 90\n"
        "  - from: eu-north-1/*\n"
        "    to:\n"
        "      eu-north-1/*: 90\n"
        "      europe-west2/*: 10\n"
    ) in text
    # both regions are the clusters' own: no warning
    assert _warnings(status(fed.master, NAME)) == []
    # and the daemon's analysis of the two-cluster mesh it installed finds nothing
    assert _analyzed(status(fed.master, NAME)) == ("True", "NoFindings", "every check passed")


async def test_seed_002_fail_over_lands_in_the_master_mesh_config(fed: Mesh) -> None:
    gen = await apply(fed, FAILOVER_CR)
    await _everywhere_available(fed, gen)
    assert _mesh_config(fed.master)[1]["localityLbSetting"] == {}  # Istio's default fail-over
    explicit = with_spec(yaml.safe_load(FAILOVER_CR), localityLB={"failover": [{"from": MASTER_REGION, "to": REMOTE_REGION}]})
    gen = await apply(fed, explicit)
    await _everywhere_available(fed, gen)
    assert _mesh_config(fed.master)[1]["localityLbSetting"] == {"failover": [{"from": MASTER_REGION, "to": REMOTE_REGION}]}
    assert _warnings(status(fed.master, NAME)) == []


async def test_a_rule_naming_a_region_no_cluster_has_is_a_warning(fed: Mesh) -> None:
    good: Obj = yaml.safe_load(DISTRIBUTE_CR)
    gen = await apply(fed, good)
    await _everywhere_available(fed, gen)
    rules = [
        {"from": "europe-west2/*", "to": {"europe-west2/*": 90, "us-east1/*": 10}},
        {"from": "eu-north-1/*", "to": {"eu-north-1/*": 90, "europe-west2/*": 10}},
    ]
    bad = with_spec(good, localityLB={"distribute": rules})
    before = {str(c.name): versions(inventory(c)) for c in (fed.master, _remote(fed))}

    gen = await apply(fed, bad)
    await _everywhere_available(fed, gen)  # a warning, not a failure
    st = status(fed.master, NAME)
    (warning,) = _warnings(st)
    assert "us-east1/*" in warning and "eu-north-1" not in warning, warning
    # … said in the ERROR column too, as a warning (the status stays Available)
    assert st["ErrorMessage"].startswith("warning: ") and "us-east1/*" in st["ErrorMessage"], st["ErrorMessage"]
    # … and by the mesh analysis (its locality check)
    analyzed, reason, findings = _analyzed(st)
    assert (analyzed, reason) == ("False", "WarningsFound") and findings.startswith("warning locality-rules [master]: ")
    assert "us-east1/*" in findings, findings
    # the rule is legal, so it is applied as written …
    assert _mesh_config(fed.master)[1]["localityLbSetting"]["distribute"] == rules
    # … and nothing but what renders differently moved, on either cluster
    changed_master = {k for k, v in versions(inventory(fed.master)).items() if before["master"].get(k) != v}
    rendered_differently = expected(fed.master, good).keys() - same_render(expected(fed.master, good), expected(fed.master, bad))
    assert changed_master == rendered_differently, (changed_master, rendered_differently)
    assert ("", "ConfigMap", NAMESPACE, "istio") in changed_master
    changed_remote = {k for k, v in versions(inventory(_remote(fed))).items() if before[REMOTE].get(k) != v}
    assert changed_remote <= {("", "ConfigMap", NAMESPACE, "istio")}, changed_remote

    # fixed again: the warning goes
    gen = await apply(fed, good)
    await _everywhere_available(fed, gen)
    assert _warnings(status(fed.master, NAME)) == []
    assert _analyzed(status(fed.master, NAME))[0] == "True"
