"""The pure pieces of the emulator's RBAC against upstream's cases: request attributes
(``RequestInfoFactory``), rule matching (``RuleAllows``) and the escalation check's
coverage and compacted message (``Covers``, ``CompactRules``, ``CompactString``)."""

from __future__ import annotations

import pytest

from federationd.sim import rbac


@pytest.mark.parametrize(
    ("method", "path", "query", "want"),
    [
        ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "", "ns", "pods", "", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("watch", "", "ns", "pods", "", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "1", "fieldSelector": "metadata.name=p"}, ("watch", "", "ns", "pods", "", "p")),
        ("GET", "/api/v1/namespaces/ns/pods/p/log", {}, ("get", "", "ns", "pods", "log", "p")),
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d/scale", {}, ("patch", "apps", "ns", "deployments", "scale", "d")),
        ("DELETE", "/apis/apps/v1/namespaces/ns/deployments", {}, ("deletecollection", "apps", "ns", "deployments", "", "")),
        ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "ns", "namespaces", "", "ns")),
        ("PUT", "/api/v1/namespaces/ns/finalize", {}, ("update", "", "ns", "namespaces", "finalize", "ns")),
        ("GET", "/api/v1/watch/namespaces/ns/pods", {}, ("watch", "", "ns", "pods", "", "")),
        ("POST", "/api/v1/namespaces/ns/serviceaccounts/sa/token", {}, ("create", "", "ns", "serviceaccounts", "token", "sa")),
    ],
)
def test_request_info_is_upstreams(method: str, path: str, query: dict[str, str], want: tuple[str, ...]) -> None:
    i = rbac.request_info(method, path, query)
    assert i.resource_request and (i.verb, i.api_group, i.namespace, i.resource, i.subresource, i.name) == want


@pytest.mark.parametrize("path", ["/", "/api", "/apis", "/api/v1", "/apis/apps", "/apis/apps/v1", "/version", "/openapi/v3"])
def test_discovery_paths_are_non_resource_requests(path: str) -> None:
    i = rbac.request_info("GET", path, {})
    assert not i.resource_request and i.verb == "get" and i.path == path


def test_rule_matching_and_escalation_messages_are_upstreams() -> None:
    status = rbac.request_info("PATCH", "/api/v1/namespaces/ns/pods/p/status", {})
    assert rbac.Rule(("patch",), ("",), ("*/status",)).allows(status)
    assert not rbac.Rule(("patch",), ("",), ("pods",)).allows(status)
    assert rbac.Rule(("*",), ("*",), ("*",)).allows(status)
    assert not rbac.Rule(("patch",), ("",), ("pods/status",), ("other",)).allows(status)
    api = rbac.request_info("GET", "/api/v1", {})
    assert rbac.Rule(("get",), non_resource_urls=("/api/*",)).allows(api)
    assert not rbac.Rule(("get",), non_resource_urls=("/api/*",)).allows(rbac.request_info("GET", "/api", {}))
    owner = [rbac.Rule(("get", "list"), ("",), ("pods",))]
    missing = rbac.missing_rules(owner, [rbac.Rule(("get", "delete", "patch"), ("",), ("pods", "secrets"))])
    assert sorted(r.compact_string() for r in rbac.compact(missing)) == [
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete" "patch"]}',
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete" "patch"]}',
    ]
    assert rbac.missing_rules([rbac.Rule(("*",), ("*",), ("*",))], [rbac.Rule(("escalate",), ("x",), ("y/z",))]) == []
