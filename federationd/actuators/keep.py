"""What federationd may delete: the rule that keeps users' data safe.

federationd deletes an object it applied once that object is no longer desired (an
uninstall, a remote leaving, a component an upgrade dropped). Two kinds of object are
containers of *other people's* data, and deleting them deletes that data with them:

* **CustomResourceDefinitions.** Deleting a CRD deletes every custom resource of it —
  the user's VirtualServices, DestinationRules, Gateways. As Helm never deletes CRDs,
  federationd never does: a CRD no longer desired is left exactly as it is (no request at
  all), and a later install applies over it.
* **Namespaces.** Deleting one deletes everything in it — on a remote, the
  ServiceAccount its kubeconfig authenticates as (``deploy/samples/cluster-add/``). A
  Namespace is deleted only if federationd created it (no other field manager ever wrote
  it) *and* nothing foreign remains in it (every object of the kinds below is labelled
  as federationd's, is owned by another object, or is one the cluster itself creates in
  every namespace). Otherwise federationd releases its fields and leaves it.

Why field managers and not a fact in the log: ``managedFields`` are the cluster's own
record of who wrote an object, they survive a lost or rebuilt log, and a namespace a
user created by any means (``kubectl apply``, ``create``, a GitOps controller) names that
writer there.
"""

from __future__ import annotations

from typing import Any

from federationd.actuators.client import ApiForbidden, ApiNotFound, KubeClient
from federationd.render.objects import MANAGED_BY, MANAGED_BY_LABEL

Obj = dict[str, Any]

#: Kinds never deleted, whoever created them.
NEVER_DELETED = frozenset({"CustomResourceDefinition"})
NEVER_DELETED_REASON = "CustomResourceDefinitions are never deleted (their custom resources would go with them)"

#: Namespaced kinds looked at before a Namespace is deleted: what a user (or the
#: cluster-add step) puts in a namespace. Pods and ReplicaSets follow their owners.
CONTENT_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ServiceAccount"),
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "Pod"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("networking.istio.io/v1alpha3", "VirtualService"),
    ("networking.istio.io/v1alpha3", "DestinationRule"),
    ("networking.istio.io/v1alpha3", "Gateway"),
    ("networking.istio.io/v1alpha3", "ServiceEntry"),
)

#: (kind, name) the cluster creates in every namespace.
_CLUSTER_MADE = frozenset({("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")})
#: Secret types that follow another object (a ServiceAccount; citadel's per-account keys).
_DERIVED_SECRET_TYPES = frozenset({"kubernetes.io/service-account-token", "istio.io/key-and-cert"})


def _meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def is_ours(obj: Obj) -> bool:
    return (_meta(obj).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY


def other_writers(obj: Obj, *, field_manager: str) -> list[str]:
    """The field managers other than ``field_manager`` that wrote ``obj``. An object
    without ``managedFields`` cannot say who created it: it counts as written by
    someone else."""
    entries = _meta(obj).get("managedFields")
    if not isinstance(entries, list) or not entries:
        return ["(unknown)"]
    return sorted({str(e.get("manager") or "(unnamed)") for e in entries if isinstance(e, dict)} - {field_manager})


def _foreign(kind: str, obj: Obj) -> bool:
    meta = _meta(obj)
    if is_ours(obj) or meta.get("ownerReferences") or meta.get("deletionTimestamp"):
        return False
    if (kind, meta.get("name")) in _CLUSTER_MADE:
        return False
    return not (kind == "Secret" and obj.get("type") in _DERIVED_SECRET_TYPES)


async def foreign_content(client: KubeClient, namespace: str, *, limit: int = 3) -> list[str]:
    """Up to ``limit`` objects in ``namespace`` that are not federationd's, as
    ``Kind/name``. A kind the cluster does not serve holds nothing; any other error
    propagates (the caller retries: deciding on a partial answer could delete data); a
    kind federationd may not list counts as foreign content."""
    found: list[str] = []
    for api_version, kind in CONTENT_KINDS:
        try:
            listed = await client.list(api_version, kind, namespace)
        except ApiNotFound:
            continue
        except ApiForbidden:
            # Least privilege: what federationd may not read it cannot vouch for, so the
            # namespace is kept (released), never deleted on a guess.
            found.append(f"{kind}/* (not readable by federationd)")
            break
        found.extend(f"{kind}/{_meta(o).get('name')}" for o in listed.items if _foreign(kind, o))
        if len(found) >= limit:
            break
    return found[:limit]


async def keep_reason(client: KubeClient, obj: Obj) -> str:
    """Why ``obj`` (federationd's, no longer desired) must be kept rather than deleted;
    "" when deleting it loses nothing of anyone else's."""
    kind = str(obj.get("kind") or "")
    if kind in NEVER_DELETED:
        return NEVER_DELETED_REASON
    if kind != "Namespace":
        return ""
    writers = other_writers(obj, field_manager=client.field_manager)
    if writers:
        return f"the namespace was also written by {', '.join(writers)}"
    # the first foreign object decides (and spares lists a least-privilege identity may lack)
    foreign = await foreign_content(client, str(_meta(obj).get("name") or ""), limit=1)
    if foreign:
        return f"the namespace holds objects that are not federationd's: {', '.join(foreign)}"
    return ""
