"""Nothing a user created is lost when the Istio or a RemoteIstio is deleted and recreated.

A user's VirtualServices, DestinationRules and Gateways live in Istio's CRDs, which
federationd installed; the remote's ``istio-system`` namespace holds the ServiceAccount
of ``deploy/samples/cluster-add/``, the identity federationd's kubeconfig for it
authenticates as. Deleting the CRs must remove federationd's control plane only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from federationd.sim import Fleet

from .conftest import ROOT, DaemonProcess, kubectl
from .test_e2e import SEED_000
from .test_federation import REMOTE, _get, _join, _remote_status
from .waiting import wait_for

NET = "networking.istio.io/v1alpha3"
CRD = "apiextensions.k8s.io/v1"
ISTIO = "istio.banzaicloud.io/v1beta1"


def _user_objects(namespace: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": NET, "kind": "VirtualService", "metadata": {"name": "reviews", "namespace": namespace},
         "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}},
        {"apiVersion": NET, "kind": "DestinationRule", "metadata": {"name": "reviews", "namespace": namespace},
         "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}},
        {"apiVersion": NET, "kind": "Gateway", "metadata": {"name": "public", "namespace": namespace},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}},
    ]


def _present(fleet: Fleet, cluster: str, objs: list[dict[str, Any]]) -> list[str]:
    return [
        f"{o['kind']}/{o['metadata']['name']}" for o in objs
        if _get(fleet, cluster, o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) is not None
    ]


def _crds(fleet: Fleet, cluster: str) -> set[str]:
    return {o["metadata"]["name"] for o in fleet[cluster].store.list(CRD, "CustomResourceDefinition")}


async def test_deleting_and_recreating_the_crs_loses_nothing_of_the_users(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc, rkc = fleet["master"].kubeconfig_path, fleet[REMOTE].kubeconfig_path
        # the seed-001 preparation of the remote, by kubectl as its docs show
        await kubectl(rkc, "apply", "-f", str(ROOT / "deploy" / "samples" / "cluster-add"))
        d = await _join(fleet, daemons, tmp_path)
        await wait_for(d.converged, timeout=60)
        users = _user_objects("default")
        for cluster, path in (("master", kc), (REMOTE, rkc)):
            for o in users:
                await kubectl(path, "apply", "-f", "-", stdin=json.dumps(o))
            assert len(_present(fleet, cluster, users)) == 3
        crds = {"master": _crds(fleet, "master"), REMOTE: _crds(fleet, REMOTE)}
        assert "virtualservices.networking.istio.io" in crds["master"] & crds[REMOTE]

        # the RemoteIstio goes: its components go, the cluster-add identity and the user's objects stay
        await kubectl(kc, "delete", "remoteistio", REMOTE, "-n", "istio-system")
        assert _get(fleet, REMOTE, "apps/v1", "Deployment", "istio-citadel", "istio-system") is None
        assert _get(fleet, REMOTE, "v1", "ServiceAccount", "istio-operator", "istio-system") is not None
        assert _get(fleet, REMOTE, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "istio-operator") is not None
        ns = _get(fleet, REMOTE, "v1", "Namespace", "istio-system") or {}
        assert ns and not ns["metadata"].get("deletionTimestamp")
        assert "app.kubernetes.io/managed-by" not in (ns["metadata"].get("labels") or {})  # released, not ours any more
        assert _crds(fleet, REMOTE) == crds[REMOTE]
        assert _present(fleet, REMOTE, users) == [f"{o['kind']}/{o['metadata']['name']}" for o in users]

        # the Istio goes: the control plane goes, every CRD and the user's objects stay
        await kubectl(kc, "delete", "istio", "istio", "-n", "istio-system")
        await wait_for(lambda: _get(fleet, "master", "apps/v1", "Deployment", "istio-pilot", "istio-system") is None, timeout=60, what="uninstalled")
        await wait_for(d.converged, timeout=60)
        assert _crds(fleet, "master") == crds["master"]
        assert len(_present(fleet, "master", users)) == 3
        crd = _get(fleet, "master", CRD, "CustomResourceDefinition", "virtualservices.networking.istio.io") or {}
        assert crd and not crd["metadata"].get("deletionTimestamp")
        assert "kept CustomResourceDefinition/virtualservices.networking.istio.io" in d.stderr()

        # both recreated: the mesh comes back over the user's objects, which are untouched
        await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
        await kubectl(kc, "apply", "-f", "-", stdin=json.dumps({
            "apiVersion": ISTIO, "kind": "RemoteIstio", "metadata": {"name": REMOTE, "namespace": "istio-system"},
            "spec": {"enabledServices": [{"name": "istio-pilot"}]}}))
        await wait_for(lambda: _remote_status(fleet).get("Status") == "Available", timeout=90, what="remote Available again")
        await wait_for(d.converged, timeout=60)
        assert _get(fleet, "master", "apps/v1", "Deployment", "istio-pilot", "istio-system") is not None
        assert _crds(fleet, "master") == crds["master"]
        for cluster in ("master", REMOTE):
            assert len(_present(fleet, cluster, users)) == 3, cluster
            vs = _get(fleet, cluster, NET, "VirtualService", "reviews", "default") or {}
            assert vs["spec"] == users[0]["spec"]
        assert _get(fleet, REMOTE, "v1", "ServiceAccount", "istio-operator", "istio-system") is not None
        assert await d.terminate() == 0


async def test_a_namespace_federationd_created_alone_is_deleted_with_the_remote(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        assert _get(fleet, REMOTE, "v1", "Namespace", "istio-system") is None
        # a cluster-admin kubeconfig and no cluster-add step: federationd creates the
        # namespace and may read everything in it (a least-privilege identity may not
        # list what a namespace holds, so there federationd keeps it)
        d = await _join(fleet, daemons, tmp_path, admin=True)
        await kubectl(kc, "delete", "remoteistio", REMOTE, "-n", "istio-system")
        ns = _get(fleet, REMOTE, "v1", "Namespace", "istio-system")
        assert ns is None or ns["metadata"].get("deletionTimestamp"), ns
        assert await d.terminate() == 0
