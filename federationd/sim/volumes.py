"""Persistent volumes of a simulated cluster: the default StorageClass, its provisioner
and the PersistentVolume controller's binding, as on kind.

A kind cluster ships one StorageClass, ``standard`` (the default), whose provisioner,
Rancher's local-path provisioner, makes a ``hostPath`` PersistentVolume on the node a
claim's first Pod is scheduled to (``WaitForFirstConsumer``). The pieces here are those
a user sees doing it:

* the DefaultStorageClass admission plugin (in the store's create defaults): a claim
  without ``storageClassName`` gets the default class's name;
* the scheduler (``workloads``) leaves a Pod Pending while an ``Immediate`` claim of it
  is unbound or missing, keeps it to the node its bound volume is tied to, and for a
  ``WaitForFirstConsumer`` claim writes ``volume.kubernetes.io/selected-node``;
* the provisioner: for a claim of a class it serves, once the binding mode allows, a
  PersistentVolume ``pvc-<claim uid>`` with the claim's size and access modes, tied to
  that node;
* the PersistentVolume controller: binds claims to volumes (a provisioned one, or an
  existing Available one that fits: class, access modes, size), both sides ``Bound``,
  and when a claim goes, deletes its volume (``reclaimPolicy: Delete``) or marks it
  ``Released`` (``Retain``);
* the kubelet starts a Pod only once all its claims are Bound.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from federationd.sim import errors
from federationd.sim.store import Obj, Store, deep_copy

if TYPE_CHECKING:
    from federationd.sim.workloads import Controllers

PVCS = ("", "persistentvolumeclaims")
PVS = ("", "persistentvolumes")
CLASSES = ("storage.k8s.io", "storageclasses")
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
#: the provisioners this cluster runs (kind's and minikube's)
PROVISIONERS = frozenset({"rancher.io/local-path", "k8s.io/minikube-hostpath"})
STANDARD: Obj = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
    "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
}

_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": 0.001}


def quantity(value: Any) -> float:
    """A resource quantity's value (0 when it does not parse; validation refused those)."""
    m = re.fullmatch(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?", str(value).strip())
    if not m:
        return 0.0
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


def default_class(store: Store) -> str | None:
    """The default StorageClass's name (the newest when several say they are)."""
    found = [c for c in store.list_raw(CLASSES, None)[0]
             if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"]
    if not found:
        return None
    found.sort(key=lambda c: (c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"]))
    return str(found[-1]["metadata"]["name"])


def admit_claim(store: Store, claim: Obj) -> None:
    """The DefaultStorageClass admission plugin (on create)."""
    spec = claim.get("spec")
    if isinstance(spec, dict) and "storageClassName" not in spec:
        name = default_class(store)
        if name is not None:
            spec["storageClassName"] = name


def claim_names(pod: Obj) -> list[str]:
    return [str(v["persistentVolumeClaim"].get("claimName", "")) for v in (pod.get("spec") or {}).get("volumes") or []
            if isinstance(v, dict) and isinstance(v.get("persistentVolumeClaim"), dict)]


def bound(claim: Obj | None) -> bool:
    return claim is not None and (claim.get("status") or {}).get("phase") == "Bound"


class Volumes:
    """The provisioner and PersistentVolume controller of one cluster."""

    def __init__(self, ctl: Controllers) -> None:
        self.ctl = ctl
        self.store = ctl.store

    def bootstrap(self) -> None:
        if self.store.raw(CLASSES, "", "standard") is None:
            self.store.create(deep_copy(STANDARD), copy_result=False)

    def _class(self, claim: Obj) -> Obj | None:
        name = (claim.get("spec") or {}).get("storageClassName")
        return self.store.raw(CLASSES, "", str(name)) if name else None

    def waits_for_consumer(self, claim: Obj) -> bool:
        cls = self._class(claim)
        return cls is not None and cls.get("volumeBindingMode") == "WaitForFirstConsumer"

    # ------------------------------------------------------------------ the scheduler's part

    def unschedulable(self, pod: Obj) -> str:
        """Why a Pod cannot be scheduled for its claims ("" when it can)."""
        ns = pod["metadata"]["namespace"]
        for name in claim_names(pod):
            claim = self.store.raw(PVCS, ns, name)
            if claim is None:
                return f'persistentvolumeclaim "{name}" not found'
            if claim["metadata"].get("deletionTimestamp"):
                return f'persistentvolumeclaim "{name}" is being deleted'
            if not bound(claim) and not self.waits_for_consumer(claim):
                return "pod has unbound immediate PersistentVolumeClaims"
        return ""

    def node_allowed(self, pod: Obj, node: Obj) -> bool:
        """A bound volume with node affinity keeps the Pod to its node."""
        from federationd.sim.workloads import _term_matches

        ns = pod["metadata"]["namespace"]
        labels, name = node["metadata"].get("labels") or {}, node["metadata"]["name"]
        for claim_name in claim_names(pod):
            claim = self.store.raw(PVCS, ns, claim_name)
            volume = (claim.get("spec") or {}).get("volumeName") if claim is not None else None
            pv = self.store.raw(PVS, "", str(volume)) if volume else None
            terms = (((pv or {}).get("spec") or {}).get("nodeAffinity") or {}).get("required", {}).get("nodeSelectorTerms")
            if terms and not any(_term_matches(t, labels, name) for t in terms):
                return False
        return True

    def select_node(self, pod: Obj, node: str) -> None:
        """The scheduler's volume binder: unbound late-binding claims learn their node."""
        ns = pod["metadata"]["namespace"]
        for name in claim_names(pod):
            claim = self.store.raw(PVCS, ns, name)
            if claim is None or bound(claim) or not self.waits_for_consumer(claim):
                continue
            if (claim["metadata"].get("annotations") or {}).get(SELECTED_NODE) == node:
                continue
            new = deep_copy(claim)
            new["metadata"].setdefault("annotations", {})[SELECTED_NODE] = node
            self.store.update(new, check_version=False, copy_result=False)

    # ------------------------------------------------------------------ the controllers

    def sync_claim(self, ns: str, name: str) -> None:
        claim = self.store.raw(PVCS, ns, name)
        if claim is None or claim["metadata"].get("deletionTimestamp") or bound(claim):
            return
        spec = claim.get("spec") or {}
        if spec.get("volumeName"):
            pv = self.store.raw(PVS, "", str(spec["volumeName"]))
            if pv is not None:
                self._bind(claim, pv)
            return
        pv = self._matching_volume(claim)
        if pv is not None:
            self._bind(claim, pv)
            return
        cls = self._class(claim)
        if cls is None or cls.get("provisioner") not in PROVISIONERS:
            return
        node = (claim["metadata"].get("annotations") or {}).get(SELECTED_NODE)
        if cls.get("volumeBindingMode") == "WaitForFirstConsumer" and not node:
            return
        self._bind(claim, self._provision(claim, cls, node))

    def _matching_volume(self, claim: Obj) -> Obj | None:
        spec = claim.get("spec") or {}
        want = quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage", 0))
        modes = set(spec.get("accessModes") or [])
        cls = spec.get("storageClassName") or ""
        fits = []
        for pv in self.store.list_raw(PVS, None)[0]:
            ps = pv.get("spec") or {}
            if (pv.get("status") or {}).get("phase") != "Available" or ps.get("claimRef"):
                continue
            if (ps.get("storageClassName") or "") != cls or not modes <= set(ps.get("accessModes") or []):
                continue
            if ps.get("volumeMode", "Filesystem") != spec.get("volumeMode", "Filesystem"):
                continue
            size = quantity((ps.get("capacity") or {}).get("storage", 0))
            if size >= want:
                fits.append((size, pv["metadata"]["name"], pv))
        return min(fits, key=lambda f: (f[0], f[1]))[2] if fits else None

    def _provision(self, claim: Obj, cls: Obj, node: str | None) -> Obj:
        m, spec = claim["metadata"], claim.get("spec") or {}
        name = f"pvc-{m['uid']}"
        existing = self.store.raw(PVS, "", name)
        if existing is not None:
            return existing
        pv_spec: Obj = {
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": m["name"],
                         "namespace": m["namespace"], "uid": m["uid"], "resourceVersion": m.get("resourceVersion", "")},
            "hostPath": {"path": f"/var/local-path-provisioner/{name}_{m['namespace']}_{m['name']}",
                         "type": "DirectoryOrCreate"},
            "persistentVolumeReclaimPolicy": cls.get("reclaimPolicy") or "Delete",
            "storageClassName": cls["metadata"]["name"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
        }
        if node:
            pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
        pv: Obj = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {
            "name": name, "annotations": {"pv.kubernetes.io/provisioned-by": str(cls.get("provisioner"))}},
            "spec": pv_spec}
        created = self.store.create(pv, copy_result=False)
        self.ctl._event(claim, "ProvisioningSucceeded", f"Successfully provisioned volume {name}",
                        component=f"{cls.get('provisioner')}_local-path-provisioner")
        return created

    def _bind(self, claim: Obj, pv: Obj) -> None:
        m = claim["metadata"]
        ref = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": m["name"], "namespace": m["namespace"],
               "uid": m["uid"], "resourceVersion": m.get("resourceVersion", "")}
        other = (pv.get("spec") or {}).get("claimRef")
        if other and other.get("uid") not in (None, m["uid"]):
            return
        new_pv = deep_copy(pv)
        new_pv["spec"]["claimRef"] = ref
        new_pv.setdefault("metadata", {}).setdefault("annotations", {})["pv.kubernetes.io/bound-by-controller"] = "yes"
        new_pv = self.store.update(new_pv, check_version=False, copy_result=False)
        self.ctl._write_status(PVS, new_pv, {"phase": "Bound"})
        pv_spec = new_pv.get("spec") or {}
        new_claim = deep_copy(claim)
        new_claim["spec"]["volumeName"] = new_pv["metadata"]["name"]
        ann = new_claim["metadata"].setdefault("annotations", {})
        ann["pv.kubernetes.io/bind-completed"] = "yes"
        ann["pv.kubernetes.io/bound-by-controller"] = "yes"
        if (new_pv["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by"):
            ann["volume.kubernetes.io/storage-provisioner"] = new_pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"]
            ann["volume.beta.kubernetes.io/storage-provisioner"] = ann["volume.kubernetes.io/storage-provisioner"]
        new_claim = self.store.update(new_claim, check_version=False, copy_result=False)
        self.ctl._write_status(PVCS, new_claim, {
            "phase": "Bound", "accessModes": list(pv_spec.get("accessModes") or []),
            "capacity": dict(pv_spec.get("capacity") or {})})

    def claim_gone(self, claim: Obj) -> None:
        """A deleted claim's volume: deleted, or Released to be reclaimed by hand."""
        volume = (claim.get("spec") or {}).get("volumeName")
        pv = self.store.raw(PVS, "", str(volume)) if volume else None
        if pv is None or ((pv.get("spec") or {}).get("claimRef") or {}).get("uid") != claim["metadata"]["uid"]:
            return
        if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Retain") == "Delete":
            try:
                self.store.delete(self.ctl._kind(PVS), "", pv["metadata"]["name"])
            except errors.NotFound:
                pass
        else:
            self.ctl._write_status(PVS, pv, {"phase": "Released"})
