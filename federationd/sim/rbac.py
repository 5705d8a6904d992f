"""Authorization as the real API server does it: RBAC over Roles, ClusterRoles and their
bindings, the bootstrap policy, ClusterRole aggregation and escalation prevention.

The chain is kube-apiserver's ``--authorization-mode=Node,RBAC`` with the privileged-group
authorizer in front: a member of ``system:masters`` may do anything without a lookup
(which is also why the fleet's admin tokens cost nothing here), everyone else is
allowed only what a rule bound to them allows. Each request is described by a
``RequestInfo`` parsed from its path exactly like upstream's ``RequestInfoFactory`` (so a
request for a resource that does not exist is still a 403 before it is a 404).

Speed matters because every request of every test and benchmark comes through here:
the bindings are indexed by subject and rebuilt only when an RBAC object changes, and
decisions are memoised per (user, attributes) until the next RBAC change, so a repeated
request costs one dict lookup.

Messages are upstream's, word for word: the forbidden message of
``responsewriters.Forbidden``, the ``RBAC: allowed by …`` reasons of the authorizing
visitor, and ``ConfirmNoEscalation``'s "is attempting to grant RBAC permissions not
currently held" with its compacted missing rules.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from federationd.sim import errors
from federationd.sim.store import Change, Obj, Store, deep_copy

RBAC_GROUP = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
SA_PREFIX = "system:serviceaccount:"

_RBAC_RESOURCES = frozenset({(RBAC_GROUP, p) for p in ("roles", "clusterroles", "rolebindings", "clusterrolebindings")})
_AGGREGATOR = "clusterrole-aggregation-controller"


# ---------------------------------------------------------------------------- identities


@dataclass(frozen=True, slots=True)
class UserInfo:
    """Who a request is from, after authentication (and impersonation)."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def privileged(self) -> bool:
        return MASTERS in self.groups

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra}
        return out


def service_account_user(namespace: str, name: str, uid: str = "") -> UserInfo:
    return UserInfo(
        name=f"{SA_PREFIX}{namespace}:{name}", uid=uid,
        groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


def split_service_account(username: str) -> tuple[str, str] | None:
    if not username.startswith(SA_PREFIX):
        return None
    ns, sep, name = username[len(SA_PREFIX):].partition(":")
    if not sep or not ns or not name or ":" in name:
        return None
    return ns, name


# ---------------------------------------------------------------------------- request attributes


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The authorization attributes of a request (upstream's ``RequestInfo``)."""

    resource_request: bool
    path: str
    verb: str
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_FALSE = frozenset({"false", "f", "0", "no", "n", ""})
_NAME_SEGMENT = re.compile(r"^[^/%]+$")


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """Upstream's ``RequestInfoFactory.NewRequestInfo`` for the /api and /apis prefixes."""
    return _request_info(method, path, query.get("watch", ""), query.get("fieldSelector", ""))


@functools.lru_cache(maxsize=4096)
def _request_info(method: str, path: str, watch: str, fs: str) -> RequestInfo:
    # memoised: clients repeat the same few paths, and parsing one is a tenth of what
    # authorizing a request costs
    verb = method.lower()
    parts = [p for p in path.strip("/").split("/") if p] if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return RequestInfo(False, path, verb)
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return RequestInfo(False, path, verb)
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    if parts[0] in ("watch", "proxy"):
        if len(parts) < 2:
            raise errors.NotFound("the server could not find the requested resource")
        verb, parts = parts[0], parts[1:]
    else:
        verb = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "")
    namespace = ""
    if parts[0] == "namespaces":
        if len(parts) > 1:
            namespace = parts[1]
            if len(parts) > 2 and parts[2] not in ("status", "finalize"):
                parts = parts[2:]
    resource = parts[0] if parts else ""
    name = parts[1] if len(parts) >= 2 else ""
    sub = parts[2] if len(parts) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        verb = "list" if watch.lower() in _FALSE else "watch"
        if fs:
            # a list or watch of one object by name is authorized as that name
            terms = [t.strip() for t in fs.split(",") if t.strip()]
            for t in terms:
                k, op, v = _split_term(t)
                if k == "metadata.name" and op in ("=", "==") and _NAME_SEGMENT.match(v) and v not in (".", ".."):
                    name = v
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestInfo(True, path, verb, group, version, namespace, resource, sub, name)


def _split_term(term: str) -> tuple[str, str, str]:
    for op in ("!=", "==", "="):
        k, sep, v = term.partition(op)
        if sep:
            return k.strip(), op, v.strip()
    return term, "", ""


def forbidden_message(user: UserInfo, info: RequestInfo) -> str:
    """``responsewriters.forbiddenMessage``."""
    if not info.resource_request:
        return f'User "{user.name}" cannot {info.verb} path "{info.path}"'
    res = info.combined_resource
    if info.namespace:
        return f'User "{user.name}" cannot {info.verb} resource "{res}" in API group "{info.api_group}" in the namespace "{info.namespace}"'
    return f'User "{user.name}" cannot {info.verb} resource "{res}" in API group "{info.api_group}" at the cluster scope'


def forbidden(user: UserInfo, info: RequestInfo, reason: str = "") -> errors.Forbidden:
    """The 403 the authorization filter answers (``apierrors.NewForbidden`` of the message)."""
    msg = forbidden_message(user, info)
    if reason:
        msg = f"{msg}: {reason}"
    return forbidden_error(info.api_group, info.resource, info.name, msg)


def forbidden_error(group: str, resource: str, name: str, err: str) -> errors.Forbidden:
    if not resource:
        message = f"forbidden: {err}"
    else:
        qualified = f"{resource}.{group}" if group else resource
        message = f'{qualified} "{name}" is forbidden: {err}' if name else f"{qualified} is forbidden: {err}"
    return errors.Forbidden(message, name=name, group=group, kind=resource)


# ---------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class Rule:
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Rule:
        def t(key: str) -> tuple[str, ...]:
            return tuple(str(x) for x in d.get(key) or ())

        return cls(t("verbs"), t("apiGroups"), t("resources"), t("resourceNames"), t("nonResourceURLs"))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.api_groups or not self.non_resource_urls:
            out["apiGroups"] = list(self.api_groups)
        if self.resources:
            out["resources"] = list(self.resources)
        if self.resource_names:
            out["resourceNames"] = list(self.resource_names)
        if self.non_resource_urls:
            out["nonResourceURLs"] = list(self.non_resource_urls)
        out["verbs"] = list(self.verbs)
        return out

    def allows(self, info: RequestInfo) -> bool:
        """``RuleAllows``."""
        if "*" not in self.verbs and info.verb not in self.verbs:
            return False
        if not info.resource_request:
            for url in self.non_resource_urls:
                if url == "*" or url == info.path or (url.endswith("*") and info.path.startswith(url.rstrip("*"))):
                    return True
            return False
        if "*" not in self.api_groups and info.api_group not in self.api_groups:
            return False
        combined, sub = info.combined_resource, info.subresource
        for r in self.resources:
            if r == "*" or r == combined or (sub and r == f"*/{sub}"):
                break
        else:
            return False
        return not self.resource_names or info.name in self.resource_names

    def compact_string(self) -> str:
        """``rbacv1helpers.CompactString`` (Go's %q of a string slice)."""
        parts = []
        for label, values in (
            ("APIGroups", self.api_groups), ("Resources", self.resources),
            ("NonResourceURLs", self.non_resource_urls), ("ResourceNames", self.resource_names),
            ("Verbs", self.verbs),
        ):
            if values:
                parts.append(f"{label}:{_go_quote_list(values)}")
        return "{" + ", ".join(parts) + "}"


def _go_quote_list(values: Iterable[str]) -> str:
    return "[" + " ".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "]"


def rules_of(obj: Mapping[str, Any]) -> tuple[Rule, ...]:
    return tuple(Rule.of(r) for r in obj.get("rules") or () if isinstance(r, Mapping))


def _has_all(owner: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    return all(w in owner for w in wanted)


def _rule_covers(owner: Rule, sub: Rule) -> bool:
    """``ruleCovers`` of upstream's policy comparator."""
    verbs = "*" in owner.verbs or _has_all(owner.verbs, sub.verbs)
    groups = "*" in owner.api_groups or _has_all(owner.api_groups, sub.api_groups)
    resources = "*" in owner.resources or all(
        r in owner.resources or ("/" in r and f"*/{r.split('/', 1)[1]}" in owner.resources) for r in sub.resources
    )
    urls = "*" in owner.non_resource_urls or all(
        any(o == u or (o.endswith("*") and u.startswith(o.rstrip("*"))) for o in owner.non_resource_urls)
        for u in sub.non_resource_urls
    )
    if not sub.resource_names:
        names = not owner.resource_names
    else:
        names = not owner.resource_names or _has_all(owner.resource_names, sub.resource_names)
    return verbs and groups and resources and names and urls


def _breakdown(rule: Rule) -> list[Rule]:
    out: list[Rule] = []
    for g in rule.api_groups:
        for r in rule.resources:
            for v in rule.verbs:
                if rule.resource_names:
                    out.extend(Rule((v,), (g,), (r,), (n,)) for n in rule.resource_names)
                else:
                    out.append(Rule((v,), (g,), (r,)))
    for u in rule.non_resource_urls:
        out.extend(Rule((v,), non_resource_urls=(u,)) for v in rule.verbs)
    return out


def missing_rules(owner: Iterable[Rule], servant: Iterable[Rule]) -> list[Rule]:
    """``Covers``: the broken-down servant rules no owner rule covers."""
    owned = list(owner)
    return [s for rule in servant for s in _breakdown(rule) if not any(_rule_covers(o, s) for o in owned)]


def compact(rules: Iterable[Rule]) -> list[Rule]:
    """``CompactRules``: simple one-group one-resource rules merged by their verbs."""
    out: list[Rule] = []
    simple: dict[tuple[str, str, str], Rule] = {}
    for r in rules:
        if len(r.resource_names) <= 1 and not r.non_resource_urls and len(r.api_groups) == 1 and len(r.resources) == 1:
            key = (r.api_groups[0], r.resources[0], r.resource_names[0] if r.resource_names else "")
            prev = simple.get(key)
            simple[key] = r if prev is None else Rule(prev.verbs + r.verbs, prev.api_groups, prev.resources, prev.resource_names)
        else:
            out.append(r)
    return out + list(simple.values())


# ---------------------------------------------------------------------------- bootstrap policy

_RW = ("create", "delete", "deletecollection", "patch", "update")
_RO = ("get", "list", "watch")
_ALL_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def _r(groups: Iterable[str], resources: Iterable[str], verbs: Iterable[str], names: Iterable[str] = ()) -> dict[str, Any]:
    d: dict[str, Any] = {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}
    if names:
        d["resourceNames"] = list(names)
    return d


def _urls(urls: Iterable[str], verbs: Iterable[str] = ("get",)) -> dict[str, Any]:
    return {"nonResourceURLs": list(urls), "verbs": list(verbs)}


_AGG = "rbac.authorization.k8s.io/aggregate-to-"

#: (name, extra labels, aggregation label or "", rules): the bootstrap ClusterRoles clients
#: rely on, as plugin/pkg/auth/authorizer/rbac/bootstrappolicy defines them.
BOOTSTRAP_CLUSTER_ROLES: tuple[tuple[str, dict[str, str], str, list[dict[str, Any]]], ...] = (
    ("cluster-admin", {}, "", [_r(["*"], ["*"], ["*"]), _urls(["*"], ["*"])]),
    ("admin", {}, "admin", []),
    ("edit", {_AGG + "admin": "true"}, "edit", []),
    ("view", {_AGG + "edit": "true"}, "view", []),
    ("system:aggregate-to-admin", {_AGG + "admin": "true"}, "", [
        _r(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
        _r([RBAC_GROUP], ["rolebindings", "roles"], _ALL_RW),
    ]),
    ("system:aggregate-to-edit", {_AGG + "edit": "true"}, "", [
        _r([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], _RO),
        _r([""], ["serviceaccounts"], ["impersonate"]),
        _r([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], _RW),
        _r([""], ["pods/eviction"], ["create"]),
        _r([""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                  "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"], _RW),
        _r([""], ["serviceaccounts/token"], ["create"]),
        _r(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                      "replicasets/scale", "statefulsets", "statefulsets/scale"], _RW),
        _r(["autoscaling"], ["horizontalpodautoscalers"], _RW),
        _r(["batch"], ["cronjobs", "jobs"], _RW),
        _r(["extensions"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses",
                            "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"], _RW),
        _r(["policy"], ["poddisruptionbudgets"], _RW),
        _r(["networking.k8s.io"], ["ingresses", "networkpolicies"], _RW),
        _r(["coordination.k8s.io"], ["leases"], _ALL_RW),
    ]),
    ("system:aggregate-to-view", {_AGG + "view": "true"}, "", [
        _r([""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                  "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                  "services/status"], _RO),
        _r([""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                  "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"], _RO),
        _r([""], ["namespaces"], _RO),
        _r(["discovery.k8s.io"], ["endpointslices"], _RO),
        _r(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                      "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
                      "statefulsets/scale", "statefulsets/status"], _RO),
        _r(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], _RO),
        _r(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], _RO),
        _r(["extensions"], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                            "deployments/status", "ingresses", "ingresses/status", "networkpolicies", "replicasets",
                            "replicasets/scale", "replicasets/status", "replicationcontrollers/scale"], _RO),
        _r(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], _RO),
        _r(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], _RO),
    ]),
    ("system:auth-delegator", {}, "", [
        _r(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        _r(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
    ]),
    ("system:basic-user", {}, "", [
        _r(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
        _r(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
    ]),
    ("system:discovery", {}, "", [
        _urls(["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
               "/version", "/version/"]),
    ]),
    ("system:public-info-viewer", {}, "", [_urls(["/healthz", "/livez", "/readyz", "/version", "/version/"])]),
    ("system:monitoring", {}, "", [
        _urls(["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"]),
    ]),
    ("system:service-account-issuer-discovery", {}, "", [_urls(["/.well-known/openid-configuration", "/openid/v1/jwks"])]),
    ("system:heapster", {}, "", [
        _r([""], ["events", "namespaces", "nodes", "pods"], _RO),
        _r(["extensions"], ["deployments"], _RO),
    ]),
    ("system:kube-dns", {}, "", [_r([""], ["endpoints", "services"], ("list", "watch"))]),
)

#: (name, role, [(kind, subject)])
BOOTSTRAP_CLUSTER_ROLE_BINDINGS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("cluster-admin", "cluster-admin", (("Group", MASTERS),)),
    ("system:basic-user", "system:basic-user", (("Group", AUTHENTICATED),)),
    ("system:discovery", "system:discovery", (("Group", AUTHENTICATED),)),
    ("system:public-info-viewer", "system:public-info-viewer", (("Group", AUTHENTICATED), ("Group", UNAUTHENTICATED))),
    ("system:monitoring", "system:monitoring", (("Group", "system:monitoring"),)),
    ("system:service-account-issuer-discovery", "system:service-account-issuer-discovery",
     (("Group", "system:serviceaccounts"),)),
)

_BOOTSTRAP_META = {
    "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
    "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
}


def bootstrap_objects() -> Iterator[Obj]:
    for name, labels, agg, rules in BOOTSTRAP_CLUSTER_ROLES:
        meta = deep_copy(_BOOTSTRAP_META)
        meta["name"] = name
        meta["labels"].update(labels)
        obj: Obj = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": meta}
        if agg:
            obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {_AGG + agg: "true"}}]}
        obj["rules"] = [deep_copy(r) for r in rules]
        yield obj
    for name, role, subjects in BOOTSTRAP_CLUSTER_ROLE_BINDINGS:
        meta = {"name": name, "labels": dict(_BOOTSTRAP_META["labels"]), "annotations": dict(_BOOTSTRAP_META["annotations"])}
        yield {
            "apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": meta,
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": k, "name": n} for k, n in subjects],
        }


# ---------------------------------------------------------------------------- label selectors


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """``metav1.LabelSelectorAsSelector`` applied to ``labels`` (empty selects everything)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or ():
        key, op, values = e.get("key", ""), e.get("operator", ""), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# ---------------------------------------------------------------------------- the authorizer


@dataclass(slots=True)
class _Binding:
    kind: str  # "ClusterRoleBinding" | "RoleBinding"
    name: str
    namespace: str
    role_kind: str
    role_name: str
    subjects: tuple[dict[str, Any], ...]


@dataclass(slots=True)
class _Index:
    cluster_roles: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    roles: dict[tuple[str, str], tuple[Rule, ...]] = field(default_factory=dict)
    cluster_bindings: list[_Binding] = field(default_factory=list)
    role_bindings: dict[str, list[_Binding]] = field(default_factory=dict)


Visitor = Callable[[Callable[[], str], Rule | None, str | None], bool]


def _describe_subject(s: Mapping[str, Any], namespace: str) -> str:
    if s.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{s.get("name", "")}/{s.get("namespace") or namespace}"'
    return f'{s.get("kind", "")} "{s.get("name", "")}"'


def _applies(user: UserInfo, s: Mapping[str, Any], namespace: str) -> bool:
    kind = s.get("kind")
    if kind == "User":
        return user.name == s.get("name")
    if kind == "Group":
        return s.get("name") in user.groups
    if kind == "ServiceAccount":
        ns = s.get("namespace") or namespace
        return bool(ns) and user.name == f"{SA_PREFIX}{ns}:{s.get('name', '')}"
    return False


class Authorizer:
    """RBAC for one cluster's store; see the module docstring."""

    #: decisions memoised before the cache starts over
    CACHE_MAX = 50_000

    def __init__(self, store: Store) -> None:
        self.store = store
        self._index: _Index | None = None
        self._decisions: dict[tuple[Any, ...], tuple[bool, str]] = {}
        self._aggregating = False
        self._again = False
        #: (user, verb, group, resource) of denied requests: what a least-privilege test reads
        self.denied: dict[tuple[str, str, str, str], int] = {}
        #: when set, the escalate/bind checks of role and binding writes are counted here
        self.audit: Counter[tuple[str, str, str, str]] | None = None
        store.listeners.append(self._on_change)

    # ------------------------------------------------------------------ bootstrap and controllers

    def bootstrap(self) -> None:
        """The default roles and bindings, as the API server's bootstrap hook creates them."""
        for obj in bootstrap_objects():
            kind = self.store.kind_for(obj["apiVersion"], obj["kind"])
            if self.store.raw(kind.resource, "", obj["metadata"]["name"]) is None:
                self.store.create(obj, kind=kind, copy_result=False)
        self.aggregate()

    def _on_change(self, ch: Change) -> None:
        if ch.resource not in _RBAC_RESOURCES:
            return
        self._index = None
        self._decisions.clear()
        if ch.resource == (RBAC_GROUP, "clusterroles"):
            self.aggregate()

    def aggregate(self) -> None:
        """The ClusterRole aggregation controller: every ClusterRole with an
        ``aggregationRule`` gets the rules of the ClusterRoles its selectors match (by
        name, without duplicates), until nothing changes."""
        if self._aggregating:
            self._again = True
            return
        self._aggregating = True
        try:
            for _ in range(20):
                self._again = False
                roles, _ = self.store.list_raw((RBAC_GROUP, "clusterroles"), None)
                for role in roles:
                    agg = role.get("aggregationRule")
                    if not isinstance(agg, dict):
                        continue
                    wanted: list[Any] = []
                    for sel in agg.get("clusterRoleSelectors") or ():
                        for other in sorted(roles, key=lambda r: r["metadata"]["name"]):
                            if other["metadata"]["name"] == role["metadata"]["name"]:
                                continue
                            if not selector_matches(sel or {}, other["metadata"].get("labels") or {}):
                                continue
                            for rule in other.get("rules") or ():
                                if rule not in wanted:
                                    wanted.append(rule)
                    if wanted != (role.get("rules") or []):
                        new = deep_copy(role)
                        new["rules"] = [deep_copy(r) for r in wanted]
                        self.store.update(new, check_version=False)
                if not self._again:
                    break
        finally:
            self._aggregating = False

    # ------------------------------------------------------------------ index

    def _build(self) -> _Index:
        idx = _Index()
        for o in self.store.list_raw((RBAC_GROUP, "clusterroles"), None)[0]:
            idx.cluster_roles[o["metadata"]["name"]] = rules_of(o)
        for o in self.store.list_raw((RBAC_GROUP, "roles"), None)[0]:
            m = o["metadata"]
            idx.roles[(m.get("namespace", ""), m["name"])] = rules_of(o)
        for kind, resource in (("ClusterRoleBinding", "clusterrolebindings"), ("RoleBinding", "rolebindings")):
            for o in self.store.list_raw((RBAC_GROUP, resource), None)[0]:
                m = o["metadata"]
                ref = o.get("roleRef") or {}
                b = _Binding(kind, m["name"], m.get("namespace", ""), str(ref.get("kind", "")), str(ref.get("name", "")),
                             tuple(s for s in o.get("subjects") or () if isinstance(s, dict)))
                if kind == "ClusterRoleBinding":
                    idx.cluster_bindings.append(b)
                else:
                    idx.role_bindings.setdefault(b.namespace, []).append(b)
        return idx

    @property
    def index(self) -> _Index:
        if self._index is None:
            self._index = self._build()
        return self._index

    def _role_rules(self, idx: _Index, kind: str, name: str, namespace: str) -> tuple[tuple[Rule, ...] | None, str]:
        if kind == "ClusterRole":
            rules = idx.cluster_roles.get(name)
            return rules, "" if rules is not None else f'clusterrole.rbac.authorization.k8s.io "{name}" not found'
        if kind == "Role":
            rules = idx.roles.get((namespace, name))
            return rules, "" if rules is not None else f'role.rbac.authorization.k8s.io "{name}" not found'
        return None, f"unknown role reference kind: {kind!r}"

    def visit(self, user: UserInfo, namespace: str, visitor: Visitor) -> None:
        """``VisitRulesFor``: cluster bindings, then the namespace's role bindings."""
        idx = self.index
        bindings: list[_Binding] = list(idx.cluster_bindings)
        if namespace:
            bindings += idx.role_bindings.get(namespace, [])
        for b in bindings:
            subject = next((s for s in b.subjects if _applies(user, s, b.namespace)), None)
            if subject is None:
                continue
            rules, err = self._role_rules(idx, b.role_kind, b.role_name, b.namespace)
            if rules is None:
                if not visitor(lambda: "", None, err):
                    return
                continue

            def describe(b: _Binding = b, s: Mapping[str, Any] = subject) -> str:
                if b.kind == "ClusterRoleBinding":
                    return f'ClusterRoleBinding "{b.name}" of {b.role_kind} "{b.role_name}" to {_describe_subject(s, "")}'
                return f'RoleBinding "{b.name}/{b.namespace}" of {b.role_kind} "{b.role_name}" to {_describe_subject(s, b.namespace)}'

            for rule in rules:
                if not visitor(describe, rule, None):
                    return

    # ------------------------------------------------------------------ decisions

    def authorize(self, user: UserInfo, info: RequestInfo) -> tuple[bool, str]:
        """(allowed, reason) as the authorizer chain decides it."""
        if user.privileged:
            return True, ""
        # the path decides only non-resource requests; the object name stays in the key
        # because rules with resourceNames decide on it
        key = (user.name, user.groups, info.resource_request, info.verb, info.api_group, info.namespace,
               info.resource, info.subresource, info.name, "" if info.resource_request else info.path)
        hit = self._decisions.get(key)
        if hit is not None:
            return hit
        found: list[str] = []
        errs: list[str] = []

        def visitor(describe: Callable[[], str], rule: Rule | None, err: str | None) -> bool:
            if rule is not None and rule.allows(info):
                found.append(f"RBAC: allowed by {describe()}")
                return False
            if err:
                errs.append(err)
            return True

        self.visit(user, info.namespace, visitor)
        if found:
            out = (True, found[0])
        else:
            out = (False, "RBAC: " + _aggregate(errs) if errs else "")
        if len(self._decisions) >= self.CACHE_MAX:
            self._decisions.clear()
        self._decisions[key] = out
        return out

    def allowed(self, user: UserInfo, info: RequestInfo) -> bool:
        return self.authorize(user, info)[0]

    def require(self, user: UserInfo, info: RequestInfo) -> None:
        """Raise the upstream 403 unless ``user`` may make the request ``info``."""
        ok, reason = self.authorize(user, info)
        if not ok:
            k = (user.name, info.verb, info.api_group, info.combined_resource if info.resource_request else info.path)
            self.denied[k] = self.denied.get(k, 0) + 1
            raise forbidden(user, info, reason)

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Rule], list[str]]:
        """``RulesFor``: every rule that applies to ``user`` in ``namespace`` (privileged
        groups first, as the union of resolvers lists them), and resolution errors."""
        rules: list[Rule] = []
        errs: list[str] = []
        if user.privileged:
            rules += [Rule(("*",), ("*",), ("*",)), Rule(("*",), non_resource_urls=("*",))]

        def visitor(describe: Callable[[], str], rule: Rule | None, err: str | None) -> bool:
            if rule is not None:
                rules.append(rule)
            if err:
                errs.append(err)
            return True

        self.visit(user, namespace, visitor)
        return rules, errs

    # ------------------------------------------------------------------ escalation prevention

    def check_write(self, user: UserInfo, *, resource: str, namespace: str, url_name: str, obj: Obj, old: Obj | None) -> None:
        """The policy-based storage of roles and bindings: a user may write only what
        they could do themselves, unless allowed to ``escalate`` (roles) or ``bind``
        (bindings), or a member of ``system:masters``."""
        if user.privileged:
            return
        name = str((obj.get("metadata") or {}).get("name") or url_name)
        if old is not None and _only_gc_fields(obj, old):
            return
        if resource in ("roles", "clusterroles"):
            attrs = RequestInfo(True, "", "escalate", RBAC_GROUP, "*", namespace, resource, "", url_name)
            self._note(user, attrs)
            if self.allowed(user, attrs):
                return
            if resource == "clusterroles" and (obj.get("aggregationRule") or (old is not None and old.get("aggregationRule"))):
                raise forbidden_error(RBAC_GROUP, resource, name, "must have cluster-admin privileges to use the aggregationRule")
            self._confirm_no_escalation(user, namespace, rules_of(obj), resource=resource, name=name)
            return
        ref = obj.get("roleRef") or {}
        ref_kind, ref_name = str(ref.get("kind", "")), str(ref.get("name", ""))
        if ref_kind in ("ClusterRole", "Role"):
            attrs = RequestInfo(True, "", "bind", str(ref.get("apiGroup", "")), "*", namespace,
                                "clusterroles" if ref_kind == "ClusterRole" else "roles", "", ref_name)
            self._note(user, attrs)
            if self.allowed(user, attrs):
                return
        rules, _ = self._role_rules(self.index, ref_kind, ref_name, namespace)
        if rules is None:
            plural = "clusterroles" if ref_kind == "ClusterRole" else "roles"
            raise errors.not_found(plural, ref_name, group=RBAC_GROUP)
        self._confirm_no_escalation(user, namespace, rules, resource=resource, name=name)

    def _note(self, user: UserInfo, attrs: RequestInfo) -> None:
        if self.audit is not None:
            self.audit[(user.name, attrs.verb, attrs.api_group, attrs.resource)] += 1

    def _confirm_no_escalation(self, user: UserInfo, namespace: str, rules: Iterable[Rule], *, resource: str, name: str) -> None:
        owner, errs = self.rules_for(user, namespace)
        missing = missing_rules(owner, rules)
        if not missing:
            return
        descriptions = sorted({r.compact_string() for r in compact(missing)})
        groups = _go_quote_list(user.groups)
        msg = f'user "{user.name}" (groups={groups}) is attempting to grant RBAC permissions not currently held:\n' + "\n".join(descriptions)
        if errs:
            msg += f"; resolution errors: [{_aggregate(errs)}]"
        raise forbidden_error(RBAC_GROUP, resource, name, msg)


def _aggregate(errs: list[str]) -> str:
    """``utilerrors.NewAggregate(errs).Error()``."""
    uniq = list(dict.fromkeys(errs))
    return uniq[0] if len(uniq) == 1 else "[" + ", ".join(uniq) + "]"


def _only_gc_fields(obj: Obj, old: Obj) -> bool:
    def strip(o: Obj) -> Obj:
        out = {k: v for k, v in o.items() if k not in ("metadata", "status")}
        m = o.get("metadata") or {}
        out["metadata"] = {k: m.get(k) for k in ("name", "namespace", "labels", "annotations")}
        return out

    return strip(obj) == strip(old)


# ---------------------------------------------------------------------------- review resources


def _attributes(spec: Mapping[str, Any]) -> RequestInfo:
    ra = spec.get("resourceAttributes")
    if isinstance(ra, Mapping):
        return RequestInfo(
            True, "", str(ra.get("verb", "")), str(ra.get("group", "")), str(ra.get("version", "")),
            str(ra.get("namespace", "")), str(ra.get("resource", "")), str(ra.get("subresource", "")),
            str(ra.get("name", "")),
        )
    nra = spec.get("nonResourceAttributes")
    if isinstance(nra, Mapping):
        return RequestInfo(False, str(nra.get("path", "")), str(nra.get("verb", "")))
    raise errors.BadRequest("spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified")


def review(authorizer: Authorizer, plural: str, user: UserInfo, body: Obj, *, namespace: str = "") -> Obj:
    """The authorization.k8s.io review resources: SelfSubjectAccessReview (``kubectl auth
    can-i``), SelfSubjectRulesReview (``--list``), SubjectAccessReview and
    LocalSubjectAccessReview, answered like the real server (nothing is stored)."""
    spec = body.get("spec") or {}
    kind = {"selfsubjectaccessreviews": "SelfSubjectAccessReview", "selfsubjectrulesreviews": "SelfSubjectRulesReview",
            "subjectaccessreviews": "SubjectAccessReview", "localsubjectaccessreviews": "LocalSubjectAccessReview"}[plural]
    out: Obj = {"kind": kind, "apiVersion": "authorization.k8s.io/v1",
                "metadata": {**(body.get("metadata") or {}), "creationTimestamp": None}, "spec": spec}
    if plural == "selfsubjectrulesreviews":
        rules, errs = authorizer.rules_for(user, str(spec.get("namespace", "")))
        status: Obj = {
            "resourceRules": [
                {"verbs": list(r.verbs), "apiGroups": list(r.api_groups), "resources": list(r.resources),
                 **({"resourceNames": list(r.resource_names)} if r.resource_names else {})}
                for r in rules if r.resources
            ],
            "nonResourceRules": [
                {"verbs": list(r.verbs), "nonResourceURLs": list(r.non_resource_urls)} for r in rules if r.non_resource_urls
            ],
            "incomplete": False,
        }
        if errs:
            status["evaluationError"] = _aggregate(errs)
        out["status"] = status
        return out
    if plural in ("subjectaccessreviews", "localsubjectaccessreviews"):
        if not spec.get("user") and not spec.get("groups"):
            raise errors.invalid(kind, "", group="authorization.k8s.io", causes=[
                {"reason": "FieldValueRequired", "field": "spec.user",
                 "message": "Invalid value: \"\": at least one of user or group must be specified"}])
        extra = spec.get("extra") or {}
        user = UserInfo(name=str(spec.get("user", "")), uid=str(spec.get("uid", "")),
                        groups=tuple(str(g) for g in spec.get("groups") or ()),
                        extra=tuple((str(k), tuple(str(x) for x in v or ())) for k, v in sorted(extra.items())))
    attrs = _attributes(spec)
    if plural == "localsubjectaccessreviews" and attrs.namespace != namespace:
        raise errors.BadRequest(f"spec.resourceAttributes.namespace must match namespace: {namespace}")
    allowed, reason = authorizer.authorize(user, attrs)
    st: Obj = {"allowed": allowed}
    if reason:
        st["reason"] = reason
    out["status"] = st
    return out
