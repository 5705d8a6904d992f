"""A tiny Kubernetes API stand-in for runtime tests: HTTPS (trustme CA), bearer token,
discovery, MVCC resourceVersions, paged lists, watches with history, bookmarks and 410,
and scripted faults. Only what the runtime code needs; the simulated fleet covers the rest
in its own tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiohttp import web

RESOURCES: dict[str, list[dict[str, Any]]] = {
    "v1": [
        {"name": "configmaps", "kind": "ConfigMap", "namespaced": True},
        {"name": "namespaces", "kind": "Namespace", "namespaced": False},
        {"name": "events", "kind": "Event", "namespaced": True},
        {"name": "secrets", "kind": "Secret", "namespaced": True},
        {"name": "services", "kind": "Service", "namespaced": True},
        {"name": "services/status", "kind": "Service", "namespaced": True},
        {"name": "nodes", "kind": "Node", "namespaced": False},
    ],
    "coordination.k8s.io/v1": [{"name": "leases", "kind": "Lease", "namespaced": True}],
}


@dataclass
class Fault:
    status: int
    count: int
    retry_after: float | None = None
    verb: str | None = None  # "list", "watch", "get", ... or None for any


@dataclass
class FakeApi:
    token: str = "s3cr3t-token-value"
    resources: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: copy.deepcopy(RESOURCES))
    rv: int = 0
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    history: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)
    compacted: int = 0
    faults: list[Fault] = field(default_factory=list)
    hang_watches: bool = False
    hang_verbs: set[str] = field(default_factory=set)
    gone_as_http: bool = False
    requests: dict[str, int] = field(default_factory=dict)
    watch_queries: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._watchers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.ca = trustme.CA()
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> FakeApi:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(ctx)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"https://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        self.drop_watches()
        assert self._runner is not None
        await self._runner.cleanup()

    def kubeconfig(self, *, token: str | None = None, name: str = "fake") -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(
                    self.ca.cert_pem.bytes()).decode()}}],
            "users": [{"name": name, "user": {"token": token or self.token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        }

    # --- direct store access ----------------------------------------------------------

    def put(self, plural: str, obj: dict[str, Any], *, etype: str | None = None) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        key = (plural, meta.get("namespace", ""), meta["name"])
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        meta.setdefault("uid", f"uid-{meta['name']}-{self.rv}")
        existed = key in self.objects
        self.objects[key] = obj
        self._emit(etype or ("MODIFIED" if existed else "ADDED"), plural, obj)
        return obj

    def remove(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects.pop((plural, namespace, name))
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._emit("DELETED", plural, obj)
        return obj

    def _emit(self, etype: str, plural: str, obj: dict[str, Any]) -> None:
        self.history.append((self.rv, etype, plural, copy.deepcopy(obj)))
        for q in list(self._watchers):
            q.put_nowait({"plural": plural, "type": etype, "object": copy.deepcopy(obj)})

    def compact(self) -> None:
        """Forget history: watches resuming before now get 410."""
        self.compacted = self.rv
        self.history.clear()
        for q in list(self._watchers):
            q.put_nowait({"type": "GONE"})

    def bookmark(self) -> None:
        for q in list(self._watchers):
            q.put_nowait({"type": "BOOKMARK"})

    def drop_watches(self) -> None:
        for q in list(self._watchers):
            q.put_nowait(None)

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    # --- HTTP -----------------------------------------------------------------------

    def _count(self, verb: str) -> None:
        self.requests[verb] = self.requests.get(verb, 0) + 1

    def _fault(self, verb: str) -> web.Response | None:
        for f in self.faults:
            if f.count > 0 and (f.verb is None or f.verb == verb):
                f.count -= 1
                headers = {}
                if f.retry_after is not None:
                    headers["Retry-After"] = str(int(f.retry_after))
                return web.json_response(
                    {"kind": "Status", "status": "Failure", "code": f.status,
                     "reason": "Injected", "message": "injected fault"},
                    status=f.status, headers=headers)
        return None

    def _lookup(self, parts: list[str]) -> tuple[str, dict[str, Any], str, str | None, str | None] | None:
        """(apiVersion, resource, namespace, name, subresource) from a path."""
        if parts[:1] == ["api"] and len(parts) >= 2:
            gv, rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return None
        ns = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest:
            return None
        plural = rest[0]
        for r in self.resources.get(gv, []):
            if r["name"] == plural:
                name = rest[1] if len(rest) > 1 else None
                sub = rest[2] if len(rest) > 2 else None
                return gv, r, ns, name, sub
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized",
                                      "message": "Unauthorized"}, status=401)
        parts = [p for p in request.path.split("/") if p]
        # discovery
        if parts == ["api", "v1"] or (parts[:1] == ["apis"] and len(parts) == 3):
            gv = "v1" if parts[0] == "api" else f"{parts[1]}/{parts[2]}"
            self._count("discovery")
            if gv not in self.resources:
                return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound",
                                          "message": "the server could not find the requested resource"},
                                         status=404)
            return web.json_response({"kind": "APIResourceList", "groupVersion": gv,
                                      "resources": self.resources[gv]})
        found = self._lookup(parts)
        if found is None:
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound",
                                      "message": "the server could not find the requested resource"},
                                     status=404)
        gv, res, ns, name, _sub = found
        plural = res["name"]
        q = request.query
        if request.method == "GET" and name is None:
            verb = "watch" if q.get("watch") in ("1", "true") else "list"
        else:
            verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete"}[request.method]
        self._count(verb)
        if verb in self.hang_verbs:
            await self._closing.wait()
        fault = self._fault(verb)
        if fault is not None:
            return fault
        if verb == "list":
            return self._list(plural, gv, res, ns, q)
        if verb == "watch":
            return await self._watch(request, plural, ns, q)
        key = (plural, ns, name or "")
        if verb == "get":
            if key not in self.objects:
                return self._not_found(plural, name or "")
            return web.json_response(self.objects[key])
        body = await request.json() if request.can_read_body else {}
        if verb == "create":
            name = body["metadata"]["name"]
            key = (plural, ns, name)
            if key in self.objects:
                return web.json_response({"kind": "Status", "code": 409, "reason": "AlreadyExists",
                                          "message": f"{plural} \"{name}\" already exists",
                                          "details": {"name": name}}, status=409)
            body["metadata"].setdefault("namespace", ns) if res["namespaced"] else None
            return web.json_response(self.put(plural, body), status=201)
        if verb == "update":
            if key not in self.objects:
                return self._not_found(plural, name or "")
            want = body.get("metadata", {}).get("resourceVersion")
            if want and want != self.objects[key]["metadata"]["resourceVersion"]:
                return web.json_response({"kind": "Status", "code": 409, "reason": "Conflict",
                                          "message": "the object has been modified",
                                          "details": {"name": name}}, status=409)
            body["metadata"]["uid"] = self.objects[key]["metadata"]["uid"]
            return web.json_response(self.put(plural, body))
        if verb == "patch":
            ctype = request.headers.get("Content-Type", "")
            if ctype == "application/apply-patch+yaml":
                if body.get("metadata", {}).get("name") == "invalid":
                    return web.json_response({
                        "kind": "Status", "code": 422, "reason": "Invalid",
                        "message": "spec.x: Invalid value", "details": {
                            "name": "invalid", "causes": [{"field": "spec.x",
                                                           "message": "Invalid value"}]}},
                        status=422)
                obj = copy.deepcopy(self.objects.get(key, {}))
                obj.update({k: v for k, v in body.items() if k != "metadata"})
                meta = obj.setdefault("metadata", {})
                meta.update(body.get("metadata", {}))
                meta["managedFields"] = [{"manager": q.get("fieldManager"),
                                          "operation": "Apply"}]
                if res["namespaced"]:
                    meta["namespace"] = ns
                return web.json_response(self.put(plural, obj))
            if key not in self.objects:
                return self._not_found(plural, name or "")
            obj = copy.deepcopy(self.objects[key])
            for k, v in body.items():
                if isinstance(v, dict) and isinstance(obj.get(k), dict):
                    obj[k].update(v)
                else:
                    obj[k] = v
            return web.json_response(self.put(plural, obj))
        if verb == "delete":
            if key not in self.objects:
                return self._not_found(plural, name or "")
            pre = (body or {}).get("preconditions") or {}
            cur = self.objects[key]["metadata"]
            if pre.get("resourceVersion") and pre["resourceVersion"] != cur["resourceVersion"]:
                return web.json_response({"kind": "Status", "code": 409, "reason": "Conflict",
                                          "message": "precondition failed",
                                          "details": {"name": name}}, status=409)
            self.last_delete_options = body
            return web.json_response(self.remove(plural, ns, name or ""))
        raise AssertionError(verb)

    def _not_found(self, plural: str, name: str) -> web.Response:
        return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound",
                                  "message": f"{plural} \"{name}\" not found",
                                  "details": {"name": name, "kind": plural}}, status=404)

    def _list(self, plural: str, gv: str, res: dict[str, Any], ns: str,
              q: Any) -> web.Response:
        items = [o for (p, n, _), o in sorted(self.objects.items())
                 if p == plural and (not ns or n == ns) and self._match(o, q)]
        start = int(q.get("continue") or 0)
        limit = int(q.get("limit") or 0) or len(items) or 1
        page = items[start:start + limit]
        meta: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        return web.json_response({"kind": res["kind"] + "List", "apiVersion": gv,
                                  "metadata": meta, "items": page})

    @staticmethod
    def _match(obj: dict[str, Any], q: Any) -> bool:
        sel = q.get("labelSelector")
        if not sel:
            return True
        labels = obj.get("metadata", {}).get("labels") or {}
        for term in sel.split(","):
            k, _, v = term.partition("=")
            if labels.get(k) != v:
                return False
        return True

    async def _watch(self, request: web.Request, plural: str, ns: str,
                     q: Any) -> web.StreamResponse:
        self.watch_queries.append(dict(q))
        since = int(q.get("resourceVersion") or 0)
        if since and since < self.compacted and self.gone_as_http:
            return web.json_response({"kind": "Status", "code": 410, "reason": "Expired",
                                      "message": "too old resource version"}, status=410)
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._watchers.add(queue)

        async def send(event: dict[str, Any]) -> None:
            await resp.write(json.dumps(event).encode() + b"\n")

        try:
            if since and since < self.compacted:
                await send({"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                        "reason": "Expired",
                                                        "message": "too old resource version"}})
                return resp
            if self.hang_watches:
                await self._closing.wait()
                return resp
            for rv, etype, p, obj in list(self.history):
                if rv > since and p == plural and (not ns or obj["metadata"].get("namespace") == ns):
                    await send({"type": etype, "object": obj})
            timeout = float(q.get("timeoutSeconds") or 3600)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    return resp
                if item is None:
                    with contextlib.suppress(Exception):
                        request.transport.close()  # type: ignore[union-attr]
                    return resp
                if item["type"] == "GONE":
                    await send({"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                            "reason": "Expired"}})
                    return resp
                if item["type"] == "BOOKMARK":
                    if q.get("allowWatchBookmarks") == "true":
                        await send({"type": "BOOKMARK", "object": {
                            "kind": "X", "metadata": {"resourceVersion": str(self.rv)}}})
                    continue
                if item["plural"] != plural:
                    continue
                if ns and item["object"]["metadata"].get("namespace") != ns:
                    continue
                await send({"type": item["type"], "object": item["object"]})
        finally:
            self._watchers.discard(queue)
