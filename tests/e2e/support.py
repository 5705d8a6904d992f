"""What the end-to-end tests look at: the cluster as a user sees it, and what render says.

* ``inventory`` is every object on the master carrying federationd's managed-by label
  (Pods, ReplicaSets, Endpoints and EndpointSlices excepted: the controllers copy our
  labels onto objects they own), keyed by (group, kind, namespace, name) so that the key of an
  object on the cluster and of a rendered one agree whatever version each is read at.
* ``expected`` renders a CR's spec with the same facts the daemon derives for a single
  master (no mesh networks; the nodes' localities; the group/versions the cluster's
  Kubernetes release serves), so a test can say which objects a component owns and which
  objects a spec change must not touch. ``applied`` reads an object back in the API
  version it was rendered in, as a client does (the server converts from its storage
  version on read), so the two compare field for field.
* ``StatusLog`` records every status an ``Istio`` CR is given, from the store's change
  feed rather than by polling, so "never Available while a workload is unready" is an
  exact statement and not a sampling.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from types import TracebackType
from typing import Any

import yaml

from federationd import render
from federationd.api import v1beta1
from federationd.render import objects as robj
from federationd.render.objects import MANAGED_BY, MANAGED_BY_LABEL, RenderFacts
from federationd.sim import Cluster
from federationd.sim import versions as releases
from federationd.sim.store import Change
from tests.daemon.conftest import kubectl
from tests.daemon.waiting import wait_for

from .conftest import Mesh

NAMESPACE = "istio-system"
ISTIO = ("istio.banzaicloud.io/v1beta1", "Istio")
ISTIOS = ("istio.banzaicloud.io", "istios")
#: Objects other controllers create from ours, copying our labels.
NOT_OURS = {("", "pods"), ("", "endpoints"), ("apps", "replicasets"), ("discovery.k8s.io", "endpointslices")}

Key = tuple[str, str, str, str]
Obj = dict[str, Any]


def key_of(o: Obj) -> Key:
    group = str(o["apiVersion"]).rpartition("/")[0]
    meta = o["metadata"]
    return (group, str(o["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))


def show(keys: object) -> str:
    return "\n  ".join(sorted("/".join(k) for k in keys))  # type: ignore[attr-defined]


# --- the cluster -----------------------------------------------------------------------------


def inventory(cluster: Cluster) -> dict[Key, Obj]:
    """Every managed object on ``cluster`` (deep copies)."""
    store = cluster.store
    out: dict[Key, Obj] = {}
    seen: set[tuple[str, str]] = set()
    for kind in store.registry:
        if kind.resource in seen or kind.resource in NOT_OURS:
            continue
        seen.add(kind.resource)
        for o in store.list_raw(kind.resource, None)[0]:
            if (o["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
                meta = o["metadata"]
                out[(kind.group, kind.kind, meta.get("namespace") or "", meta["name"])] = copy.deepcopy(o)
    return out


def versions(inv: dict[Key, Obj]) -> dict[Key, str]:
    return {k: str(o["metadata"]["resourceVersion"]) for k, o in inv.items()}


def cr(cluster: Cluster, name: str) -> Obj:
    return cluster.store.get(*ISTIO, name, NAMESPACE) or {}


def status(cluster: Cluster, name: str) -> Obj:
    return cr(cluster, name).get("status") or {}


def status_text(st: Obj) -> str:
    """Everything a user can read about a status: the ERROR column and the conditions."""
    return " ".join([str(st.get("ErrorMessage") or "")] + [str(c.get("message") or "") for c in st.get("conditions") or []])


def workload_images(inv: dict[Key, Obj]) -> dict[str, list[str]]:
    """Deployment/DaemonSet name → the images of its pod template's containers."""
    out = {}
    for (_, kind, _, name), o in inv.items():
        if kind in ("Deployment", "DaemonSet"):
            spec = o["spec"]["template"]["spec"]
            out[name] = [c["image"] for c in spec.get("initContainers", []) + spec["containers"]]
    return out


# --- what render says ----------------------------------------------------------------------------


def localities(cluster: Cluster) -> tuple[str, ...]:
    out = set()
    for n in cluster.store.list("v1", "Node"):
        labels = n["metadata"].get("labels") or {}
        region = labels.get("topology.kubernetes.io/region", "")
        zone = labels.get("topology.kubernetes.io/zone", "")
        if region:
            out.add(f"{region}/{zone}" if zone else region)
    return tuple(sorted(out))


def served(cluster: Cluster) -> tuple[str, ...]:
    """The built-in group/versions the cluster serves (what its discovery lists and the
    daemon's ``KubernetesApisObserved`` carries)."""
    by_group = releases.served_group_versions(cluster.server.kube_version.name)
    return tuple(sorted(f"{g}/{v}" if g else v for g, vs in by_group.items() for v in vs))


def expected(cluster: Cluster, doc: Obj) -> dict[Key, Obj]:
    """The objects render gives the master for the CR ``doc``."""
    spec = v1beta1.istio_spec(doc.get("spec") or {}, namespace=NAMESPACE)
    facts = RenderFacts(
        cluster=cluster.name, role="master", localities=localities(cluster), kubernetes_apis=served(cluster)
    )
    return {key_of(o): o for o in render.render_master(spec, namespace=NAMESPACE, facts=facts)}


def applied(cluster: Cluster, rendered: Obj) -> Obj | None:
    """The cluster's object of ``rendered``, read in ``rendered``'s API version."""
    meta = rendered["metadata"]
    return cluster.store.get(rendered["apiVersion"], rendered["kind"], meta["name"], meta.get("namespace") or "")


def same_render(a: dict[Key, Obj], b: dict[Key, Obj]) -> set[Key]:
    """Keys rendered, byte for byte, the same in both."""
    return {k for k in a.keys() & b.keys() if robj.content_hash(a[k]) == robj.content_hash(b[k])}


# --- the user's side ---------------------------------------------------------------------------


def with_spec(doc: Obj, **changes: Any) -> Obj:
    """``doc`` with its spec deep-merged with ``changes``."""

    def merge(into: Obj, patch: Obj) -> None:
        for k, v in patch.items():
            if isinstance(v, dict) and isinstance(into.get(k), dict):
                merge(into[k], v)
            else:
                into[k] = copy.deepcopy(v)

    out = copy.deepcopy(doc)
    merge(out.setdefault("spec", {}), changes)
    return out


async def apply(mesh: Mesh, manifest: str | Obj) -> int:
    """``kubectl apply -n istio-system -f -`` as the seeds do; the CR's generation after."""
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    await kubectl(mesh.kubeconfig, "apply", "-n", NAMESPACE, "-f", "-", stdin=text)
    name = yaml.safe_load(text)["metadata"]["name"]
    return int(cr(mesh.master, name)["metadata"]["generation"])


async def printer_row(mesh: Mesh, name: str) -> list[str]:
    """``kubectl get istios`` as a user reads it: the header checked, the CR's row split."""
    lines = (await kubectl(mesh.kubeconfig, "get", "istios", "-n", NAMESPACE)).splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ERROR", "GATEWAYS", "AGE"], lines
    rows = [ln.split() for ln in lines[1:] if ln.split()[0] == name]
    assert len(rows) == 1, lines
    return rows[0]


async def settled(mesh: Mesh, name: str, generation: int, want: str = "Available", *, timeout: float = 30) -> None:  # noqa: ASYNC109 - a deadline for a polled condition
    """The CR's status is ``want`` for ``generation`` and the daemon has nothing left to do."""

    def ok() -> bool:
        st = status(mesh.master, name)
        return st.get("Status") == want and st.get("observedGeneration") == generation

    await wait_for(ok, timeout=timeout, what=f"{name} {want} at generation {generation} (now {status(mesh.master, name)})")
    await wait_for(mesh.daemon.converged, timeout=timeout, what="daemon converged")
    # converged covers the writes; the status must still say the same afterwards
    assert ok(), status(mesh.master, name)


class StatusLog:
    """Every (observedGeneration, Status, message) an Istio CR was given, in order."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.seen: list[tuple[int, str, str]] = []
        self._listener: Callable[[Change], None] = self._on_change

    def _on_change(self, ch: Change) -> None:
        if ch.resource != ISTIOS or ch.name != self.name or ch.type == "DELETED":
            return
        st = ch.obj.get("status") or {}
        entry = (int(st.get("observedGeneration") or 0), str(st.get("Status") or ""), status_text(st).strip())
        if not self.seen or self.seen[-1] != entry:
            self.seen.append(entry)

    def statuses(self, generation: int) -> list[str]:
        return [s for g, s, _ in self.seen if g == generation]

    def __enter__(self) -> StatusLog:
        self.cluster.store.listeners.append(self._listener)
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.cluster.store.listeners.remove(self._listener)
