"""Paged list of one resource type: follow ``continue`` tokens, keep the collection's
resourceVersion (what a watch resumes from), and give items back their apiVersion/kind
(list responses omit them). Shared by the reflector and the typed client."""

from __future__ import annotations

from typing import Any

from federationd.clusters.connection import ClusterClient, Query
from federationd.clusters.discovery import ResourceInfo


async def list_all(
    cluster: ClusterClient,
    info: ResourceInfo,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    page_size: int = 500,
    what: str = "",
) -> tuple[list[dict[str, Any]], str]:
    """(items, resourceVersion). Raises the typed API errors (``ApiGone`` when a continue
    token expired mid-way; the caller starts over)."""
    items: list[dict[str, Any]] = []
    cont: str | None = None
    rv = ""
    path = info.path(namespace if info.namespaced else None)
    while True:
        query: Query = {"limit": page_size, "continue": cont,
                        "labelSelector": label_selector, "fieldSelector": field_selector}
        page = await cluster.request("GET", path, query=query,
                                     what=what or f"list {info.kind} on {cluster.name}")
        page = page or {}
        for item in page.get("items") or []:
            item.setdefault("apiVersion", info.api_version)
            item.setdefault("kind", info.kind)
            items.append(item)
        meta = page.get("metadata") or {}
        rv = str(meta.get("resourceVersion") or rv)
        cont = meta.get("continue") or None
        if not cont:
            return items, rv
