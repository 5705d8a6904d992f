"""API discovery: (apiVersion, kind) → URL path pieces, cached per cluster.

Generic writers and watchers need the plural resource name and whether a kind is
namespaced. Both come from the server's discovery documents (``/api/v1``,
``/apis/<group>/<version>``), fetched once per group-version and cached. A kind missing
from a cached document triggers one re-fetch (a CRD may have been installed since), and
the typed client drops a group-version from the cache when the server says the resource
type itself does not exist — so CRDs added later become usable without a restart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from federationd.clusters.errors import ApiNotFound


class UnknownKind(ApiNotFound):
    """The server does not serve this apiVersion/kind (yet)."""


@dataclasses.dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        """The collection or object URL path. ``namespace`` is ignored for cluster-scoped
        kinds; ``None`` namespace on a namespaced kind means all namespaces."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base


def split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


Fetch = Callable[[str], Awaitable[Any]]


class Discovery:
    """Per-cluster cache of discovery documents. ``fetch(path)`` performs a GET and returns
    the parsed JSON, raising the typed API errors."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._cache: dict[str, dict[str, ResourceInfo]] = {}

    def register(self, info: ResourceInfo) -> None:
        """Seed the cache (tests, or kinds known before the server serves them)."""
        self._cache.setdefault(info.api_version, {})[info.kind] = info

    def invalidate(self, api_version: str | None = None) -> None:
        if api_version is None:
            self._cache.clear()
        else:
            self._cache.pop(api_version, None)

    async def _load(self, api_version: str) -> dict[str, ResourceInfo]:
        group, version = split_api_version(api_version)
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            doc = await self._fetch(path)
        except ApiNotFound:
            raise UnknownKind(f"the server does not serve {api_version}", status=404) from None
        kinds: dict[str, ResourceInfo] = {}
        for res in (doc or {}).get("resources", []):
            name = res.get("name", "")
            if not name or "/" in name:
                continue  # subresources such as pods/status
            kind = res.get("kind", "")
            # Keep the first plural served for a kind (e.g. not "componentstatuses" twins).
            kinds.setdefault(kind, ResourceInfo(
                group=group, version=version, kind=kind, plural=name,
                namespaced=bool(res.get("namespaced"))))
        self._cache[api_version] = kinds
        return kinds

    async def resolve(self, api_version: str, kind: str) -> ResourceInfo:
        kinds = self._cache.get(api_version)
        if kinds is None or kind not in kinds:
            kinds = await self._load(api_version)
        info = kinds.get(kind)
        if info is None:
            raise UnknownKind(f"the server does not serve {kind} in {api_version}", status=404)
        return info


def builtin_group(group: str) -> bool:
    """A group Kubernetes itself serves (``apps``, ``*.k8s.io``), not a custom resource's:
    what a cluster's release decides, and what installing a CRD does not change."""
    return "." not in group or group.endswith(".k8s.io")


def served_group_versions(core: Any, groups: Any) -> tuple[str, ...]:
    """The built-in ``group/version`` strings of the ``/api`` and ``/apis`` documents,
    sorted (``v1`` for the core group)."""
    out = {str(v) for v in (core or {}).get("versions") or []}
    for g in (groups or {}).get("groups") or []:
        if not builtin_group(str(g.get("name", ""))):
            continue
        out |= {str(v.get("groupVersion", "")) for v in g.get("versions") or [] if v.get("groupVersion")}
    return tuple(sorted(out))
