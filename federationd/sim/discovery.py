"""Discovery documents: legacy (/api, /apis, /apis/g/v) and aggregated v2.

kubectl 1.32 first asks /api and /apis for the aggregated ``APIGroupDiscoveryList``
(``apidiscovery.k8s.io/v2``) and falls back to the legacy documents when the reply's
Content-Type is plain JSON; both are served. The OpenAPI documents are in
:mod:`federationd.sim.openapi`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from federationd.sim.kinds import Kind, Registry

Doc = dict[str, Any]

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


def version_info(git_version: str) -> Doc:
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _resource_entries(kind: Kind) -> list[Doc]:
    out: list[Doc] = [
        {
            "name": kind.plural,
            "singularName": kind.singular_name,
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": list(kind.verbs),
            **({"shortNames": list(kind.short_names)} if kind.short_names else {}),
            **({"categories": list(kind.categories)} if kind.categories else {}),
            "storageVersionHash": hashlib.sha256(f"{kind.group}/{kind.plural}".encode()).hexdigest()[:12],
        }
    ]
    if kind.status:
        out.append(
            {
                "name": f"{kind.plural}/status",
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    if kind.group == "" and kind.plural == "serviceaccounts":
        out.append(
            {
                "name": "serviceaccounts/token",
                "singularName": "",
                "namespaced": True,
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }
        )
    if kind.scale:
        out.append(
            {
                "name": f"{kind.plural}/scale",
                "singularName": "",
                "namespaced": kind.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }
        )
    return out


def api_versions() -> Doc:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


def _group_doc(group: str, versions: list[str]) -> Doc:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(registry: Registry) -> Doc:
    groups = registry.groups()
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_doc(g, vs) for g, vs in sorted(groups.items()) if g],
    }


def api_group(registry: Registry, group: str) -> Doc | None:
    versions = registry.groups().get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, versions)}


def resource_list(registry: Registry, group: str, version: str) -> Doc | None:
    kinds = [k for k in registry if k.group == group and k.version == version]
    if not kinds:
        return None
    resources: list[Doc] = []
    for k in sorted(kinds, key=lambda k: k.plural):
        resources.extend(_resource_entries(k))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _aggregated_resource(kind: Kind) -> Doc:
    doc: Doc = {
        "resource": kind.plural,
        "responseKind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
        "scope": "Namespaced" if kind.namespaced else "Cluster",
        "singularResource": kind.singular_name,
        "verbs": list(kind.verbs),
    }
    if kind.short_names:
        doc["shortNames"] = list(kind.short_names)
    if kind.categories:
        doc["categories"] = list(kind.categories)
    subs = []
    if kind.status:
        subs.append(
            {
                "subresource": "status",
                "responseKind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
                "verbs": ["get", "patch", "update"],
            }
        )
    if kind.group == "" and kind.plural == "serviceaccounts":
        subs.append(
            {
                "subresource": "token",
                "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
                "verbs": ["create"],
            }
        )
    if kind.scale:
        subs.append(
            {
                "subresource": "scale",
                "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                "verbs": ["get", "patch", "update"],
            }
        )
    if subs:
        doc["subresources"] = subs
    return doc


def aggregated(registry: Registry, *, legacy: bool, api_version: str) -> Doc:
    """``APIGroupDiscoveryList`` for /api (legacy=True) or /apis."""
    groups = registry.groups()
    items = []
    for group, versions in sorted(groups.items()):
        if (group == "") != legacy:
            continue
        vdocs = []
        for v in versions:
            kinds = sorted(
                (k for k in registry if k.group == group and k.version == v), key=lambda k: k.plural
            )
            vdocs.append(
                {
                    "version": v,
                    "resources": [_aggregated_resource(k) for k in kinds],
                    "freshness": "Current",
                }
            )
        items.append({"metadata": {"name": group} if group else {}, "versions": vdocs})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    }
