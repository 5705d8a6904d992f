"""``federationd analyze`` against live clusters (the simulated fleet): the objects of a
federated mesh as rendered, listed through the same kubeconfig a ``run`` uses and the
RemoteIstio's kubeconfig Secret for the remote."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

import yaml

from federationd import analyze as a
from federationd.api import v1beta1
from federationd.render import render_master, render_remote
from federationd.render.objects import MeshNetwork, NetworkGateway, RenderFacts
from federationd.sim import Fleet

from .test_golden import INPUTS, NS

ROOT = Path(__file__).resolve().parents[2]
REMOTE = "remote-eu"


def _networks() -> tuple[MeshNetwork, ...]:
    return (
        MeshNetwork(name="master", from_registry=("Kubernetes",), gateways=(NetworkGateway(address="35.0.0.1", port=443),)),
        MeshNetwork(name=REMOTE, from_registry=(REMOTE,), gateways=(NetworkGateway(address="35.1.0.1", port=443),)),
    )


def _create_all(store: Any, objs: list[dict[str, Any]]) -> None:
    for o in objs:
        if o["kind"] == "Namespace" and store.get("v1", "Namespace", o["metadata"]["name"]) is not None:
            continue
        store.create(o)


async def test_analyze_lists_live_clusters_and_finds_the_unlabelled_secret(tmp_path: Path) -> None:
    raw = yaml.safe_load((INPUTS / "seed-002-locality-failover.yaml").read_text())["spec"]
    spec = v1beta1.istio_spec(raw, namespace=NS)
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        master, remote = fleet["master"].store, fleet[REMOTE].store
        for path in sorted((ROOT / "deploy" / "crds").glob("*.yaml")):
            master.create(yaml.safe_load(path.read_text()))
        master.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        _create_all(master, render_master(spec, namespace=NS, facts=RenderFacts(network="master", mesh_networks=_networks())))
        _create_all(remote, render_remote(
            spec, v1beta1.remote_istio_spec({"enabledServices": []}, namespace=NS), namespace=NS,
            facts=RenderFacts(cluster=REMOTE, role="remote", network=REMOTE, mesh_networks=_networks()),
        ))
        kubeconfig = fleet[REMOTE].kubeconfig_path.read_bytes()
        master.create({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": REMOTE, "namespace": NS},
            "data": {REMOTE: base64.b64encode(kubeconfig).decode()},
        })
        master.create({
            "apiVersion": "istio.banzaicloud.io/v1beta1", "kind": "RemoteIstio",
            "metadata": {"name": REMOTE, "namespace": NS}, "spec": {"enabledServices": []},
        })
        args = argparse.Namespace(kubeconfig=str(fleet["master"].kubeconfig_path), context=None, namespace=NS, cluster_name="master")
        view = await a._from_live(args)
        assert {c.name for c in view.clusters} == {"master", REMOTE}
        live_master = view.cluster("master")
        assert live_master is not None and live_master.kubernetes_apis and "apps/v1" in live_master.kubernetes_apis
        # A credential never leaves the cluster: Secrets are seen by their data keys only.
        secret = next(o for o in live_master.objects if o["kind"] == "Secret" and o["metadata"]["name"] == REMOTE)
        assert secret["data"] == {REMOTE: ""}
        # A cluster without admissionregistration.k8s.io/v1beta1 (a Kubernetes newer than
        # 1.21, what the emulator serves until it gets per-cluster versions) cannot run
        # Istio 1.1/1.2: reported once per cluster.
        old_k8s = "admissionregistration.k8s.io/v1beta1" in live_master.kubernetes_apis
        cabundle = [] if old_k8s else ["webhook-cabundle", "webhook-cabundle"]
        errors = [f for f in a.analyze(view) if f.severity == "error"]
        # The Secret is not labelled (the daemon does that): pilot would not see the remote.
        assert [f.check for f in errors] == ["remote-registry-secret", *cabundle], a.table(errors)
        stored = master.get("v1", "Secret", REMOTE, NS)
        assert stored is not None
        stored = {**stored, "metadata": {**stored["metadata"], "labels": {"istio/multiCluster": "true"}}}
        master.update(stored)
        view = await a._from_live(args)
        errors = [f for f in a.analyze(view) if f.severity == "error"]
        assert [f.check for f in errors] == cabundle, a.table(errors)
