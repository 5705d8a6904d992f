"""The daemon's identities on the simulated fleet, as a cluster would give them.

On the master the daemon runs as the ServiceAccount of ``deploy/rbac.yaml``; on a remote
the kubeconfig in the remote's Secret authenticates as the ServiceAccount that
``deploy/samples/cluster-add/`` prepares. Both manifests are applied as the cluster's
admin (what ``kubectl apply`` by an operator does), then a bound token is issued for the
ServiceAccount; the emulator's RBAC decides what the daemon may do from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from federationd.sim import Cluster

ROOT = Path(__file__).resolve().parents[2]
MASTER_RBAC = ROOT / "deploy" / "rbac.yaml"
CLUSTER_ADD = ROOT / "deploy" / "samples" / "cluster-add"
#: (namespace, name) of the ServiceAccounts the manifests define
MASTER_SA = ("istio-system", "federationd")
REMOTE_SA = ("istio-system", "istio-operator")

Obj = dict[str, Any]
Transform = Callable[[Obj], Obj]


def manifest_docs(paths: Iterable[Path]) -> list[Obj]:
    out: list[Obj] = []
    for p in paths:
        out.extend(d for d in yaml.safe_load_all(p.read_text()) if d)
    return out


def master_docs() -> list[Obj]:
    return manifest_docs([MASTER_RBAC])


def remote_docs() -> list[Obj]:
    return manifest_docs(sorted(CLUSTER_ADD.glob("*.yaml")))


def apply_docs(cluster: Cluster, docs: Iterable[Obj]) -> None:
    """Create (or replace) each object, as the cluster admin."""
    store = cluster.store
    for doc in docs:
        meta = doc["metadata"]
        ns = meta.get("namespace")
        if ns and store.get("v1", "Namespace", ns) is None:
            store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        live = store.get(doc["apiVersion"], doc["kind"], meta["name"], meta.get("namespace", ""))
        if live is None:
            store.create(doc)
        else:
            store.update({**doc, "metadata": {**live["metadata"], **meta}}, check_version=False)


def master_kubeconfig(cluster: Cluster, *, docs: list[Obj] | None = None) -> Path:
    """Apply the master's RBAC (``docs``, default ``deploy/rbac.yaml``) and write a
    kubeconfig that authenticates as its ServiceAccount. Asked again for the shipped
    RBAC, the same kubeconfig is returned: a restarted daemon keeps its credentials."""
    path = cluster.kubeconfig_path.with_name(f"{cluster.name}.{MASTER_SA[0]}.{MASTER_SA[1]}.kubeconfig")
    if docs is None and path.exists():
        return path
    apply_docs(cluster, master_docs() if docs is None else docs)
    return cluster.write_identity_kubeconfig(*MASTER_SA, path=path)


def remote_kubeconfig(cluster: Cluster, *, docs: list[Obj] | None = None) -> bytes:
    """Apply ``deploy/samples/cluster-add/`` (or ``docs``) on a remote; the kubeconfig
    its Secret on the master holds."""
    apply_docs(cluster, remote_docs() if docs is None else docs)
    return yaml.safe_dump(cluster.identity_kubeconfig(*REMOTE_SA), sort_keys=False).encode()
