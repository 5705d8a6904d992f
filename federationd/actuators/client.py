"""A small typed API for any apiVersion/kind on one cluster: the actuators' only door.

Objects are plain dicts (what render produces), addressed by apiVersion/kind/namespace/
name; paths come from per-cluster discovery, so CRDs installed after start work too:
when the server answers 404 for a whole resource type, the cached discovery for that
group-version is dropped and the call is tried once more with fresh discovery.

Writes are server-side apply (``PATCH application/apply-patch+yaml``, field manager
``federationd``, ``force=True`` by default — federationd owns what it renders and takes
fields back from a hand edit, while fields it never set stay with their managers),
deletes with a propagation policy, status patches, and core/v1 Events on an involved
object. Every write first awaits ``before_write`` when one is given: the daemon holds
writes there while its event log cannot record what they would do, and refuses there
(``NotLeading``) the writes of a leader that stepped down meanwhile. Failures are the
typed ``ApiError`` classes re-exported here; callers branch on them, never on text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from federationd.clusters.connection import ClusterClient, Query
from federationd.clusters.discovery import ResourceInfo, UnknownKind
from federationd.clusters.errors import (
    ApiBadRequest,
    ApiConflict,
    ApiError,
    ApiForbidden,
    ApiGone,
    ApiInvalid,
    ApiNotFound,
    ApiThrottled,
    ApiUnavailable,
    NotLeading,
)
from federationd.clusters.listing import list_all

__all__ = [
    "FIELD_MANAGER",
    "ApiBadRequest",
    "ApiConflict",
    "ApiError",
    "ApiForbidden",
    "ApiGone",
    "ApiInvalid",
    "ApiNotFound",
    "ApiThrottled",
    "ApiUnavailable",
    "KubeClient",
    "ListResult",
    "NotLeading",
    "UnknownKind",
    "object_ref",
]

FIELD_MANAGER = "federationd"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


def object_ref(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name) of an object dict; namespace "" when absent."""
    meta = obj.get("metadata") or {}
    return (str(obj.get("apiVersion", "")), str(obj.get("kind", "")),
            str(meta.get("namespace") or ""), str(meta.get("name", "")))


def _is_object_not_found(err: ApiNotFound) -> bool:
    """A 404 about one object (``details.name`` set) rather than about its resource type."""
    return bool(err.details.get("name")) and not isinstance(err, UnknownKind)


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ListResult:
    """All pages of a list: ``items`` and the collection ``resource_version``."""

    __slots__ = ("items", "resource_version")

    def __init__(self, items: list[dict[str, Any]], resource_version: str) -> None:
        self.items = items
        self.resource_version = resource_version


class KubeClient:
    """Typed operations over a ``ClusterClient``. Cheap; one per cluster connection."""

    def __init__(
        self,
        cluster: ClusterClient,
        *,
        field_manager: str = FIELD_MANAGER,
        clock: Callable[[], float] = time.time,
        before_write: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.cluster = cluster
        self.field_manager = field_manager
        self._clock = clock
        self._before_write = before_write

    @property
    def name(self) -> str:
        return self.cluster.name

    async def resolve(self, api_version: str, kind: str) -> ResourceInfo:
        return await self.cluster.discovery.resolve(api_version, kind)

    async def _call(
        self,
        verb: str,
        method: str,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str | None,
        *,
        subresource: str | None = None,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        what = f"{verb} {kind}/{namespace or ''}/{name or ''} on {self.cluster.name}"
        if method != "GET" and self._before_write is not None:
            await self._before_write()
        for attempt in (1, 2):
            info = await self.resolve(api_version, kind)
            if info.namespaced and name is not None and not namespace:
                raise ApiInvalid(f"{what}: {kind} is namespaced; a namespace is required",
                                 status=422)
            path = info.path(namespace if info.namespaced else None, name, subresource)
            try:
                return await self.cluster.request(
                    method, path, query=query, body=body, content_type=content_type, what=what)
            except ApiNotFound as e:
                if attempt == 2 or _is_object_not_found(e):
                    raise
                # The resource type itself is unknown here: a CRD removed/reinstalled, or a
                # stale cache. Re-discover once.
                self.cluster.discovery.invalidate(api_version)
        raise AssertionError("unreachable")

    # --- reads --------------------------------------------------------------------------

    async def get(self, api_version: str, kind: str, namespace: str | None,
                  name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("get", "GET", api_version, kind, namespace, name)
        return result

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> ListResult:
        """Every item (following ``continue``), with the collection resourceVersion."""
        what = f"list {kind}/{namespace or ''} on {self.cluster.name}"
        for attempt in (1, 2):
            info = await self.resolve(api_version, kind)
            try:
                items, rv = await list_all(
                    self.cluster, info, namespace=namespace, label_selector=label_selector,
                    field_selector=field_selector, page_size=page_size, what=what)
                return ListResult(items, rv)
            except ApiNotFound:
                if attempt == 2:
                    raise
                self.cluster.discovery.invalidate(api_version)
        raise AssertionError("unreachable")

    # --- writes -------------------------------------------------------------------------

    async def apply(
        self,
        obj: dict[str, Any],
        *,
        field_manager: str | None = None,
        force: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply ``obj``; returns the object as the server stored it."""
        api_version, kind, namespace, name = object_ref(obj)
        if not (api_version and kind and name):
            raise ApiInvalid("apply: object needs apiVersion, kind and metadata.name",
                             status=422)
        body = dict(obj)
        meta = dict(body.get("metadata") or {})
        meta.pop("managedFields", None)
        body["metadata"] = meta
        query: Query = {"fieldManager": field_manager or self.field_manager, "force": force,
                        "dryRun": "All" if dry_run else None}
        result: dict[str, Any] = await self._call(
            "apply", "PATCH", api_version, kind, namespace, name, query=query, body=body,
            content_type=APPLY_PATCH)
        return result

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        api_version, kind, namespace, _ = object_ref(obj)
        result: dict[str, Any] = await self._call(
            "create", "POST", api_version, kind, namespace, None,
            query={"fieldManager": self.field_manager}, body=obj)
        return result

    async def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT; carries ``metadata.resourceVersion`` as an optimistic lock (409 if stale)."""
        api_version, kind, namespace, name = object_ref(obj)
        result: dict[str, Any] = await self._call(
            "update", "PUT", api_version, kind, namespace, name,
            query={"fieldManager": self.field_manager}, body=obj)
        return result

    async def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        resource_version: str | None = None,
        uid: str | None = None,
    ) -> dict[str, Any] | None:
        """Delete one object. Preconditions on ``resource_version``/``uid`` make it a
        conditional delete (409 when they no longer match)."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1",
                                "propagationPolicy": propagation}
        pre = {k: v for k, v in (("resourceVersion", resource_version), ("uid", uid)) if v}
        if pre:
            body["preconditions"] = pre
        result: dict[str, Any] | None = await self._call(
            "delete", "DELETE", api_version, kind, namespace, name, body=body)
        return result

    async def patch(self, api_version: str, kind: str, namespace: str | None, name: str,
                    patch: dict[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        """JSON merge patch (RFC 7386)."""
        result: dict[str, Any] = await self._call(
            "patch", "PATCH", api_version, kind, namespace, name, subresource=subresource,
            body=patch, content_type=MERGE_PATCH, query={"fieldManager": self.field_manager})
        return result

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        status: dict[str, Any],
        *,
        apply: bool = False,
    ) -> dict[str, Any]:
        """Write ``status`` on the status subresource: a merge patch by default, or a
        server-side apply (``apply=True``), where fields federationd stops setting are
        removed."""
        if not apply:
            return await self.patch(api_version, kind, namespace, name, {"status": status},
                                    subresource="status")
        meta: dict[str, Any] = {"name": name}
        if namespace:
            meta["namespace"] = namespace
        body = {"apiVersion": api_version, "kind": kind, "metadata": meta, "status": status}
        result: dict[str, Any] = await self._call(
            "apply status", "PATCH", api_version, kind, namespace, name, subresource="status",
            query={"fieldManager": self.field_manager, "force": True}, body=body,
            content_type=APPLY_PATCH)
        return result

    async def create_event(
        self,
        involved: dict[str, Any],
        *,
        reason: str,
        message: str,
        type: str = "Normal",
        action: str = "",
        component: str = "federationd",
        instance: str = "",
    ) -> dict[str, Any]:
        """Record a core/v1 Event about ``involved`` (an object dict as read from the
        server). ``message`` is shown to users: never put a credential in it."""
        api_version, kind, namespace, name = object_ref(involved)
        meta = involved.get("metadata") or {}
        now = _rfc3339(self._clock())
        ref = {"apiVersion": api_version, "kind": kind, "name": name,
               "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", "")}
        if namespace:
            ref["namespace"] = namespace
        event_ns = namespace or "default"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": event_ns},
            "involvedObject": ref,
            "reason": reason,
            "message": message[:1024],
            "type": type,
            "action": action or reason,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": instance or component,
        }
        result: dict[str, Any] = await self._call(
            "create", "POST", "v1", "Event", event_ns, None, body=event)
        return result
