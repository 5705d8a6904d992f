"""The kinds a simulated cluster serves: built-ins, plus whatever its CRDs add.

Every request is routed through a ``Kind`` found by (group, version, plural) and every
object is stored under its *resource* (group, plural) so that all served versions of a
custom resource share one storage, like the real server with the ``None`` conversion
strategy. The registry is per cluster because CRDs are per cluster; discovery documents
are built from it on demand and cached until the next CRD change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)

#: (group, plural): the storage identity of a resource, independent of version.
ResourceKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Kind:
    """One served (group, version, kind) and everything discovery says about it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status: bool = False
    #: serves the ``scale`` subresource (autoscaling/v1 Scale over spec.replicas)
    scale: bool = False
    custom: bool = False
    #: openAPIV3Schema of a custom resource version (None for built-ins)
    schema: dict[str, Any] | None = None
    printer_columns: tuple[dict[str, Any], ...] = ()
    list_kind: str = ""
    #: the CRD that defines this kind, or ""
    crd_name: str = ""
    storage_version: str = ""
    #: the resource this kind is stored under when it is not its own (events.k8s.io
    #: Events share core/v1's storage)
    storage: ResourceKey | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> ResourceKey:
        return self.storage or (self.group, self.plural)

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    @property
    def group_kind(self) -> str:
        """``plural.group`` as the real server writes it in messages (``deployments.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _k(
    group: str,
    version: str,
    kind: str,
    plural: str,
    namespaced: bool,
    *short: str,
    status: bool = False,
    scale: bool = False,
    categories: tuple[str, ...] = (),
) -> Kind:
    return Kind(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        namespaced=namespaced,
        short_names=short,
        status=status,
        scale=scale,
        categories=categories,
    )


_ALL = ("all",)

BUILTINS: tuple[Kind, ...] = (
    _k("", "v1", "Namespace", "namespaces", False, "ns", status=True),
    _k("", "v1", "Node", "nodes", False, "no", status=True),
    _k("", "v1", "Secret", "secrets", True),
    _k("", "v1", "ConfigMap", "configmaps", True, "cm"),
    _k("", "v1", "Service", "services", True, "svc", status=True, categories=_ALL),
    _k("", "v1", "Endpoints", "endpoints", True, "ep"),
    _k("", "v1", "Pod", "pods", True, "po", status=True, categories=_ALL),
    _k("", "v1", "ServiceAccount", "serviceaccounts", True, "sa"),
    _k("", "v1", "Event", "events", True, "ev"),
    Kind(
        group="events.k8s.io",
        version="v1",
        kind="Event",
        plural="events",
        namespaced=True,
        short_names=("ev",),
        storage=("", "events"),
    ),
    _k("apps", "v1", "Deployment", "deployments", True, "deploy", status=True, scale=True, categories=_ALL),
    _k("apps", "v1", "DaemonSet", "daemonsets", True, "ds", status=True, categories=_ALL),
    _k("apps", "v1", "StatefulSet", "statefulsets", True, "sts", status=True, scale=True, categories=_ALL),
    _k("apps", "v1", "ReplicaSet", "replicasets", True, "rs", status=True, scale=True, categories=_ALL),
    _k("apps", "v1", "ControllerRevision", "controllerrevisions", True),
    # workloads, storage, networking, certificates: what `kubectl get all` and
    # `kubectl apply --prune` (its default allowlist) expect every cluster to serve
    _k("", "v1", "ReplicationController", "replicationcontrollers", True, "rc", status=True, scale=True, categories=_ALL),
    _k("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, "pvc", status=True),
    _k("", "v1", "PersistentVolume", "persistentvolumes", False, "pv", status=True),
    _k("batch", "v1", "Job", "jobs", True, status=True, categories=_ALL),
    _k("batch", "v1", "CronJob", "cronjobs", True, "cj", status=True, categories=_ALL),
    _k("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    _k("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, "netpol"),
    _k("networking.k8s.io", "v1", "Ingress", "ingresses", True, "ing", status=True),
    _k("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    _k("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, "sc"),
    _k("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False),
    _k("storage.k8s.io", "v1", "CSINode", "csinodes", False),
    _k("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", False, status=True),
    _k("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", False, "csr", status=True),
    _k("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _k("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _k("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    _k("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _k(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
    ),
    _k(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
    ),
    _k(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        "crd",
        "crds",
        status=True,
    ),
    _k("coordination.k8s.io", "v1", "Lease", "leases", True),
    # not stored: answered from the caller's identity (federationd.sim.rbac, .auth)
    *(
        Kind(group=g, version="v1", kind=k, plural=p, namespaced=ns, verbs=("create",))
        for g, k, p, ns in (
            ("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
            ("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False),
            ("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", False),
            ("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", True),
            ("authentication.k8s.io", "TokenReview", "tokenreviews", False),
            ("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", False),
        )
    ),
    _k("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, "pdb", status=True),
    _k(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        "hpa",
        status=True,
        categories=_ALL,
    ),
)


class CRDError(ValueError):
    """A CRD that cannot be served (missing names, no served version...)."""


def crd_errors(crd: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What the real server refuses in a CRD: ``(field, reason, message)`` triples."""
    out: list[tuple[str, str, str]] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural = spec.get("group") or "", names.get("plural") or ""
    name = (crd.get("metadata") or {}).get("name", "")
    for path, value in (("spec.group", group), ("spec.names.plural", plural), ("spec.names.kind", names.get("kind"))):
        if not value:
            out.append((path, "FieldValueRequired", "Required value"))
    if group and plural and name != f"{plural}.{group}":
        out.append(("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        out.append(("spec.scope", "FieldValueNotSupported", f'Unsupported value: "{spec.get("scope", "")}": supported values: "Cluster", "Namespaced"'))
    versions = spec.get("versions") or []
    if not versions:
        out.append(("spec.versions", "FieldValueInvalid", "Invalid value: null: must have exactly one version marked as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        out.append(("spec.versions", "FieldValueInvalid", "Invalid value: " + str([v.get("name") for v in versions]).replace("'", '"') + ": must have exactly one version marked as storage version"))
    return out


def kinds_from_crd(crd: dict[str, Any]) -> list[Kind]:
    """The served kinds a CustomResourceDefinition object defines."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    kind = names.get("kind") or ""
    if not group or not plural or not kind:
        raise CRDError("spec.group, spec.names.plural and spec.names.kind are required")
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    versions = spec.get("versions") or []
    storage = next((v.get("name", "") for v in versions if v.get("storage")), "")
    out: list[Kind] = []
    for v in versions:
        if not v.get("served", True):
            continue
        subresources = v.get("subresources") or spec.get("subresources") or {}
        schema = ((v.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema"))
        if schema is not None and spec.get("preserveUnknownFields") is True:
            # a v1beta1 CRD's default: validated, never pruned
            schema = _preserving(schema)
        columns = v.get("additionalPrinterColumns") or spec.get("additionalPrinterColumns") or []
        out.append(
            Kind(
                group=group,
                version=v["name"],
                kind=kind,
                plural=plural,
                namespaced=namespaced,
                singular=names.get("singular") or kind.lower(),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in subresources,
                custom=True,
                schema=schema,
                printer_columns=tuple(columns),
                list_kind=names.get("listKind") or f"{kind}List",
                crd_name=(crd.get("metadata") or {}).get("name", ""),
                storage_version=storage,
            )
        )
    return out


def _preserving(schema: Any) -> Any:
    """``schema`` with every object keeping the fields it does not declare."""
    if isinstance(schema, list):
        return [_preserving(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k in ("enum", "default", "example", "required") else _preserving(v)) for k, v in schema.items()}
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: _preserving(v) for k, v in schema["properties"].items()}
    if schema.get("type") == "object" or "properties" in schema:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


@dataclass(slots=True)
class Registry:
    """Kinds of one cluster, indexed for routing and for discovery."""

    _by_path: dict[tuple[str, str, str], Kind] = field(default_factory=dict)
    _by_kind: dict[tuple[str, str], Kind] = field(default_factory=dict)
    #: storage forms the cluster's release does not serve (see federationd.sim.versions)
    _storage_only: dict[tuple[str, str], Kind] = field(default_factory=dict)
    #: bumps on every change; discovery caches key on it
    generation: int = 0

    @classmethod
    def with_builtins(cls) -> Registry:
        r = cls()
        for k in BUILTINS:
            r.add(k)
        return r

    def add(self, kind: Kind) -> None:
        self._by_path[(kind.group, kind.version, kind.plural)] = kind
        self._by_kind[(kind.api_version, kind.kind)] = kind
        self.generation += 1

    def add_storage_only(self, kind: Kind) -> None:
        """A kind the store and behaviours use but clients cannot reach (not served)."""
        self._storage_only[(kind.api_version, kind.kind)] = kind

    def remove_crd(self, crd_name: str) -> list[Kind]:
        gone = [k for k in self._by_path.values() if k.custom and k.crd_name == crd_name]
        for k in gone:
            del self._by_path[(k.group, k.version, k.plural)]
            self._by_kind.pop((k.api_version, k.kind), None)
        if gone:
            self.generation += 1
        return gone

    def set_crd(self, crd_name: str, kinds: Iterable[Kind]) -> None:
        self.remove_crd(crd_name)
        for k in kinds:
            self.add(k)

    def by_path(self, group: str, version: str, plural: str) -> Kind | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Kind | None:
        return self._by_kind.get((api_version, kind)) or self._storage_only.get((api_version, kind))

    def any_version(self, group: str, plural: str) -> Kind | None:
        """The kind objects of (group, plural) are stored as (the storage form first)."""
        found = None
        for k in self._by_path.values():
            if k.group == group and k.plural == plural:
                if k.storage is None:
                    return k
                found = found or k
        for k in self._storage_only.values():
            if k.group == group and k.plural == plural and k.storage is None:
                return k
        return found

    def __iter__(self) -> Iterator[Kind]:
        return iter(list(self._by_path.values()))

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions, preferred (storage, else first) first."""
        out: dict[str, list[str]] = {}
        for k in self._by_path.values():
            versions = out.setdefault(k.group, [])
            if k.version not in versions:
                if k.storage_version == k.version:
                    versions.insert(0, k.version)
                else:
                    versions.append(k.version)
        return out
