"""The HTTP face of one simulated cluster: routing, verbs, watch streams, Status errors.

One aiohttp application per cluster. Every request goes through the same steps as in
the real API server: authentication (bearer token), fault injection, routing to a
``Kind`` by (group, version, plural), the verb (get, list, watch, create, update,
patch, delete, deletecollection) and the subresource, then admission (names, schema
validation, defaults, pruning, managedFields) and storage. Errors are ``Status``
objects with the real reasons, codes and messages, so kubernetes_asyncio raises its
usual ``ApiException`` and kubectl prints its usual lines.

Patch semantics (merge, JSON, strategic merge, server-side apply) and object validation
live in ``patch``, ``ssa`` and ``validate``; this module only decides which to call.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import yaml
from aiohttp import web

from federationd.sim import (
    auth,
    celrules,
    convert,
    defaults,
    discovery,
    errors,
    h2serve,
    openapi,
    patch,
    protobuf,
    rbac,
    semantics,
    ssa,
    tables,
    validate,
    versions,
    volumes,
)
from federationd.sim.kinds import CRDError, Kind, Registry, crd_errors, kinds_from_crd
from federationd.sim.selectors import object_filter
from federationd.sim.store import Change, Obj, Store, deep_copy, load_yaml, rfc3339

if TYPE_CHECKING:
    from federationd.sim.faults import Faults

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

MUTATING = frozenset({"create", "update", "patch", "delete", "deletecollection"})

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"


class RequestCounters:
    """Requests served, by (verb, resource) — what tests assert "zero writes" against."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def record(self, verb: str, resource: str) -> None:
        self.counts[(verb, resource)] += 1

    def total(self, verb: str | None = None, resource: str | None = None) -> int:
        return sum(
            n
            for (v, r), n in self.counts.items()
            if (verb is None or v == verb) and (resource is None or r == resource)
        )

    def mutating(self, resource: str | None = None) -> int:
        return sum(
            n
            for (v, r), n in self.counts.items()
            if v in MUTATING and (resource is None or r == resource)
        )

    def by_verb(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (v, _), n in self.counts.items():
            out[v] += n
        return dict(out)

    def reset(self) -> None:
        self.counts.clear()

    def snapshot(self) -> dict[str, int]:
        return {f"{v} {r}": n for (v, r), n in sorted(self.counts.items())}


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One request as kube-apiserver's audit log records it at level ``Metadata``
    (``audit.k8s.io/v1`` Event: ``verb``, ``user.username``, ``userAgent``, ``objectRef``,
    ``responseStatus.code``, ``requestReceivedTimestamp`` and the ``ResponseComplete``
    stage's timestamp), with this process's monotonic clock for the two times so a
    test can order requests against its own observations."""

    verb: str
    user: str
    user_agent: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    received: float
    completed: float

    @property
    def mutating(self) -> bool:
        return self.verb in MUTATING


@dataclass(slots=True)
class Target:
    kind: Kind
    #: "" for cluster-scoped objects; None for a list/watch across all namespaces
    namespace: str | None
    name: str
    subresource: str


# ---------------------------------------------------------------------------- server


class ApiServer:
    """Request handling for one cluster; ``app()`` builds the aiohttp application."""

    #: bytes a watcher may have unread in its socket buffer before it is dropped
    WATCH_BUFFER_LIMIT = 16 * 1024 * 1024
    #: the largest request body accepted (over HTTP/1.1 and HTTP/2 alike):
    #: kube-apiserver's ``MaxRequestBodyBytes`` (k8s.io/apiserver pkg/server/config.go,
    #: 3 MiB: twice etcd's recommended 1.5 MB request), answered as ``limitedReadBody``
    #: does (pkg/endpoints/handlers/rest.go): 413 RequestEntityTooLarge
    MAX_BODY = 3 * 1024 * 1024
    #: seconds between checks that an idle watch's client is still connected (aiohttp
    #: does not cancel a handler whose connection is lost)
    WATCH_LIVENESS_CHECK = 1.0
    #: kube-apiserver sends a watch a BOOKMARK about every minute
    #: (``defaultBookmarkFrequency``) and 2 s before the watch's deadline
    #: (``storage/cacher``: ``cacheWatcher.nextBookmarkTime``)
    BOOKMARK_INTERVAL = 60.0
    BOOKMARK_BEFORE_DEADLINE = 2.0

    def __init__(
        self,
        *,
        name: str,
        store: Store,
        tokens: dict[str, str | rbac.UserInfo],
        faults: Faults | None = None,
        bookmark_interval: float = BOOKMARK_INTERVAL,
        watch_timeout_max: float = 1800.0,
        kubernetes_version: str = versions.DEFAULT_VERSION,
    ) -> None:
        self.name = name
        #: the release this cluster is: /version, and the schemas built-ins are checked with
        self.kube_version = versions.parse(kubernetes_version)
        self.openapi = openapi.Documents(store.registry, self.kube_version)
        self.store = store
        self.registry: Registry = store.registry
        #: static token -> user ("admin": kubernetes-admin in system:masters; "viewer": a
        #: user named viewer, who may do what bindings give it)
        self.tokens = {t: _static_user(u) for t, u in tokens.items()}
        self.auth = auth.Authenticator(store, static=self.tokens)
        self.rbac = rbac.Authorizer(store)
        self.rbac.bootstrap()
        self.faults = faults
        self.requests = RequestCounters()
        self._audit: Counter[tuple[str, str, str, str]] | None = None
        #: When a list: every resource request, in the order answered (``AuditEvent``),
        #: as an audit log at level Metadata would have it.
        self.audit_log: list[AuditEvent] | None = None
        self.bookmark_interval = bookmark_interval
        self.watch_timeout_max = watch_timeout_max
        self.transports: weakref.WeakSet[Any] = weakref.WeakSet()
        self._watch_tasks: set[asyncio.Task[Any]] = set()
        store.listeners.append(self._on_change)

    def _next_bookmark(self, now: float, deadline: float) -> float:
        """When a watch's next BOOKMARK goes: ``bookmark_interval`` from now, or just
        before the watch ends if that is sooner."""
        at = now + self.bookmark_interval
        before_end = deadline - self.BOOKMARK_BEFORE_DEADLINE
        return before_end if now < before_end < at else at

    @property
    def audit(self) -> Counter[tuple[str, str, str, str]] | None:
        """When a Counter: every authorization the requests needed, as (user, verb, group,
        resource or path) — what a least-privilege test compares a role with."""
        return self._audit

    @audit.setter
    def audit(self, counter: Counter[tuple[str, str, str, str]] | None) -> None:
        self._audit = counter
        self.rbac.audit = counter

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    # ------------------------------------------------------------------ CRD controller

    def _on_change(self, ch: Change) -> None:
        if ch.resource != ("apiextensions.k8s.io", "customresourcedefinitions"):
            return
        name = ch.name
        if ch.type == "DELETED":
            gone = self.registry.remove_crd(name)
            if gone:
                k = gone[0]
                for o in list(self.store.list_raw(k.resource, None)[0]):
                    m = o["metadata"]
                    try:
                        self.store.delete(k, m.get("namespace", ""), m["name"])
                    except errors.ApiError:
                        pass
                # the resource is gone: its watchers see their streams end
                self.store.drop_watches(k.resource)
            return
        try:
            kinds = kinds_from_crd(ch.obj)
        except CRDError:
            return
        self.registry.set_crd(name, kinds)
        status = ch.obj.get("status") or {}
        if not any(c.get("type") == "Established" for c in status.get("conditions") or []):
            now = rfc3339(self.store.clock())
            names = dict((ch.obj.get("spec") or {}).get("names") or {})
            names.setdefault("singular", names.get("kind", "").lower())
            names.setdefault("listKind", names.get("kind", "") + "List")
            new = deep_copy(ch.obj)
            new["status"] = {
                "acceptedNames": names,
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": now, "reason": r, "message": m}
                    for t, r, m in (
                        ("NamesAccepted", "NoConflicts", "no conflicts found"),
                        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                    )
                ],
                "storedVersions": [v["name"] for v in (new.get("spec") or {}).get("versions") or [] if v.get("storage")],
            }
            crd_kind = self.registry.by_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            assert crd_kind is not None
            self.store.update(new, kind=crd_kind, subresource="status", check_version=False)

    # ------------------------------------------------------------------ entry point

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.audit_log is None:
            return await self._handle(request)
        received = time.monotonic()
        code = 500
        try:
            response = await self._handle(request)
            code = response.status
            return response
        finally:
            self._audited(request, code=code, received=received)

    def _audited(self, request: web.Request, *, code: int, received: float) -> None:
        if self.audit_log is None or not (request.path.startswith("/api/") or request.path.startswith("/apis/")):
            return
        try:
            target = self._route(request.path)
            if target is None:
                return
            verb = self._verb(request, target)
        except errors.ApiError:
            return
        user = request.get(USER)
        self.audit_log.append(AuditEvent(
            verb=verb, user=user.name if user is not None else "", user_agent=request.headers.get("User-Agent", ""),
            resource=target.kind.plural, subresource=target.subresource, namespace=target.namespace or "",
            name=target.name, code=code, received=received, completed=time.monotonic(),
        ))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            self.transports.add(request.transport)
        verb, resource = "", ""
        try:
            user = self._authenticate(request)
            path = request.path
            if path.startswith("/api/") or path.startswith("/apis/"):
                target = self._route(path)
                if target is not None:
                    verb = self._verb(request, target)
                    resource = target.kind.plural
                    if self.faults is not None:
                        await self.faults.before(verb, resource)
                    self.requests.record(verb, resource)
                    if target.kind.group in _AUTH_GROUPS or target.subresource == "token":
                        return await self._auth_api(request, verb, target, user)
                    return await self._dispatch(request, verb, target)
            if self.faults is not None:
                await self.faults.before("get", "")
            return self._non_resource(request, path)
        except errors.ApiError as e:
            headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else None
            return web.Response(body=_encode(e.status()), status=e.code, content_type=JSON, headers=headers)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # a bug must still answer like a server
            log.exception("%s: internal error serving %s %s", self.name, request.method, request.path)
            err = errors.InternalError(f"an error on the server ({type(e).__name__}) has prevented the request from succeeding")
            return web.Response(body=_encode(err.status()), status=500, content_type=JSON)

    def _authenticate(self, request: web.Request) -> rbac.UserInfo:
        """Authentication, impersonation and authorization (``federationd.sim.auth``,
        ``federationd.sim.rbac``); the user is kept on the request for admission."""
        headers = request.headers
        user = self.auth.authenticate(headers)
        if "Impersonate-User" in headers or "Impersonate-Group" in headers or "Impersonate-Uid" in headers:
            user = self.auth.impersonate(headers, user, self.rbac.allowed)
        if not user.privileged or self.audit is not None:
            info = rbac.request_info(request.method, request.path, request.query)
            if self.audit is not None:
                self.audit[(user.name, info.verb, info.api_group, info.combined_resource if info.resource_request else info.path)] += 1
            if not user.privileged:
                self.rbac.require(user, info)
        request[USER] = user
        return user

    async def _auth_api(self, request: web.Request, verb: str, t: Target, user: rbac.UserInfo) -> web.StreamResponse:
        """The create-only review resources and TokenRequest, answered from the caller."""
        if verb != "create" or (t.subresource == "token") != (t.kind.plural == "serviceaccounts"):
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        body = self._decode_body(request, await _read_body(request), t)
        plural = t.kind.plural
        if plural == "serviceaccounts":
            return _json(self.auth.token_request(t.namespace or "", t.name, body), status=201)
        if plural == "tokenreviews":
            return _json(self.auth.token_review(body), status=201)
        if plural == "selfsubjectreviews":
            return _json(self.auth.self_subject_review(user, body), status=201)
        return _json(rbac.review(self.rbac, plural, user, body, namespace=t.namespace or ""), status=201)

    # ------------------------------------------------------------------ routing

    def _route(self, path: str) -> Target | None:
        parts = [p for p in path.split("/") if p]
        if parts[0] == "api":
            if len(parts) < 3:
                return None
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) < 4:
                return None
            group, version, rest = parts[1], parts[2], parts[3:]
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (
            group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
        ):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise errors.NotFound("the server could not find the requested resource")
        plural = rest[0]
        kind = self.registry.by_path(group, version, plural)
        if kind is None:
            raise errors.NotFound("the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and not (
            (sub == "status" and kind.status)
            or (sub == "scale" and kind.scale)
            or (sub == "token" and kind.group == "" and kind.plural == "serviceaccounts")
            or (sub == "finalize" and kind.kind == "Namespace")
        ):
            raise errors.NotFound("the server could not find the requested resource")
        if not kind.namespaced:
            if namespace is not None:
                raise errors.NotFound("the server could not find the requested resource")
            namespace = ""
        return Target(kind, namespace, name, sub)

    @staticmethod
    def _verb(request: web.Request, t: Target) -> str:
        m = request.method
        if m == "GET":
            if t.name:
                return "get"
            w = request.query.get("watch", "")
            return "watch" if w in ("true", "1", "True") else "list"
        if m == "POST":
            return "create"
        if m == "PUT":
            return "update"
        if m == "PATCH":
            return "patch"
        if m == "DELETE":
            return "delete" if t.name else "deletecollection"
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")

    async def _dispatch(self, request: web.Request, verb: str, t: Target) -> web.StreamResponse:
        if t.subresource == "scale":
            return await self._scale(request, verb, t)
        if verb == "watch":
            return await self._watch(request, t)
        if verb == "get":
            return self._get(request, t)
        if verb == "list":
            return self._list(request, t)
        body = await _read_body(request)
        if verb == "create":
            return self._create(request, t, body)
        if verb == "update":
            return self._update(request, t, body)
        if verb == "patch":
            return self._patch(request, t, body)
        if verb == "delete":
            return self._delete(request, t, body)
        return self._delete_collection(request, t, body)

    # ------------------------------------------------------------------ non-resource

    def _non_resource(self, request: web.Request, path: str) -> web.StreamResponse:
        if request.method != "GET":
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        accept = request.headers.get("Accept", "")
        p = path.rstrip("/") or "/"
        if p == "/version":
            return _json(discovery.version_info(self.kube_version.git_version))
        if p in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok", content_type="text/plain")
        if p in ("/api", "/apis"):
            for ctype, av in (
                (discovery.AGGREGATED_V2, "apidiscovery.k8s.io/v2"),
                (discovery.AGGREGATED_V2BETA1, "apidiscovery.k8s.io/v2beta1"),
            ):
                served = versions.aggregated_discovery(self.kube_version.name)
                if av.split("/")[1] in served and _accepts(accept, av.split("/")[1]):
                    agg = discovery.aggregated(self.registry, legacy=p == "/api", api_version=av)
                    return web.Response(body=_encode(agg), headers={"Content-Type": ctype})
            return _json(discovery.api_versions() if p == "/api" else discovery.api_group_list(self.registry))
        parts = [x for x in p.split("/") if x]
        doc: dict[str, Any] | None
        if parts[0] == "api" and len(parts) == 2:
            doc = discovery.resource_list(self.registry, "", parts[1])
            if doc is not None:
                return _json(doc)
        if parts[0] == "apis" and len(parts) == 2:
            g = discovery.api_group(self.registry, parts[1])
            if g is not None:
                return _json(g)
        if parts[0] == "apis" and len(parts) == 3:
            doc = discovery.resource_list(self.registry, parts[1], parts[2])
            if doc is not None:
                return _json(doc)
        if parts[0] == "openapi":
            body = self.openapi.serve(parts[1:], accept=accept)
            if body is not None:
                return web.Response(body=body, headers={"Content-Type": self.openapi.content_type(parts[1:], accept)})
        raise errors.NotFound("the server could not find the requested resource")

    # ------------------------------------------------------------------ reads

    def _get(self, request: web.Request, t: Target) -> web.StreamResponse:
        k = t.kind
        o = self.store.raw(k.resource, t.namespace or "", t.name)
        if o is None:
            raise errors.not_found(k.plural, t.name, group=k.group)
        o = _as_version(o, k)
        if _wants_table(request):
            return _json(
                tables.table(
                    k, [o], resource_version=o["metadata"]["resourceVersion"],
                    include_object=request.query.get("includeObject", "Metadata"),
                    now=self.store.clock(),
                )
            )
        return _json(o)

    def _list(self, request: web.Request, t: Target) -> web.StreamResponse:
        k = t.kind
        q = request.query
        match = object_filter(
            label_selector=q.get("labelSelector", ""),
            field_selector=q.get("fieldSelector", ""),
            kind=k.kind,
        )
        limit = _int_param(q.get("limit", "0"), "limit")
        cont = q.get("continue", "")
        rv_param = q.get("resourceVersion", "")
        rv_match = q.get("resourceVersionMatch", "")
        start = ""
        at: int | None = None
        if cont:
            if rv_param:
                raise errors.BadRequest("specifying resource version is not allowed when using continue")
            at, start = _decode_continue(cont)
            if at < self.store.floor and at < self.store.revision:
                raise errors.Gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
                )
        elif rv_param and rv_param != "0":
            want = _int_param(rv_param, "resourceVersion")
            if want > self.store.revision:
                raise errors.Timeout(f"Too large resource version: {want}, current: {self.store.revision}", retry_after=1)
            if rv_match == "Exact":
                at = want
        items, rv = self.store.list_raw(k.resource, t.namespace, at=at)
        if start:
            items = [o for o in items if _key(o) > start]
        if match is not None:
            items = [o for o in items if match(o)]
        next_token = ""
        remaining = 0
        if limit > 0 and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            next_token = _encode_continue(rv, _key(items[-1]))
        items = [_as_version(o, k) for o in items]
        if _wants_table(request):
            return _json(
                tables.table(
                    k, items, resource_version=str(rv),
                    include_object=q.get("includeObject", "Metadata"),
                    continue_token=next_token, now=self.store.clock(),
                )
            )
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if next_token:
            meta["continue"] = next_token
            meta["remainingItemCount"] = remaining
        return _json({"kind": k.list_kind_name, "apiVersion": k.api_version, "metadata": meta, "items": items})

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        k = t.kind
        q = request.query
        match = object_filter(
            label_selector=q.get("labelSelector", ""),
            field_selector=q.get("fieldSelector", ""),
            kind=k.kind,
        )
        rv_param = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks", "") in ("true", "1")
        timeout = min(_int_param(q.get("timeoutSeconds", "0") or "0", "timeoutSeconds") or self.watch_timeout_max,
                      self.watch_timeout_max)
        as_table = _wants_table(request)
        include_object = q.get("includeObject", "Metadata")
        initial: list[Obj] = []
        expired: errors.Gone | None = None
        since: int | None = None
        # the WatchList protocol: initial state as ADDED events, then a marked BOOKMARK
        initial_events = q.get("sendInitialEvents", "") in ("true", "1")
        if rv_param and rv_param != "0" and not initial_events:
            since = _int_param(rv_param, "resourceVersion")
        try:
            sub, backlog = self.store.subscribe(k.resource, t.namespace, since=since)
        except errors.Gone as e:
            expired = e
            sub, backlog = None, []
        last_rv = self.store.revision if since is None else since
        if since is None and expired is None:
            initial, _ = self.store.list_raw(k.resource, t.namespace)
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._watch_tasks.add(task)
        first_table = [True]

        def line(type_: str, obj: Obj, ch: Change | None = None) -> bytes:
            if as_table and type_ != "ERROR":
                if type_ == "BOOKMARK":
                    tab = tables.table(k, [], resource_version=obj["metadata"]["resourceVersion"], now=self.store.clock())
                    tab["rows"] = []
                else:
                    tab = tables.table(k, [_as_version(obj, k)], resource_version=obj["metadata"].get("resourceVersion", ""),
                                       include_object=include_object, now=self.store.clock())
                if not first_table[0]:
                    tab["columnDefinitions"] = []
                first_table[0] = False
                return _encode({"type": type_, "object": tab}) + b"\n"
            if ch is not None and k.storage is None:
                return ch.encoded(k.api_version) if type_ == ch.type else ch.encoded(k.api_version, type_)
            return _encode({"type": type_, "object": _as_version(obj, k)}) + b"\n"

        try:
            if expired is not None:
                await resp.write(line("ERROR", expired.status()))
                await resp.write_eof()
                return resp
            assert sub is not None
            transport = request.transport
            if transport is None:
                return resp
            put = _body_sink(transport)
            # an empty write sends the buffered status line and headers
            await resp.write(b"")
            buf = bytearray()
            for o in initial:
                if match is None or match(o):
                    buf += line("ADDED", o)
            for ch in backlog:
                buf += self._event_line(ch, match, line)
                last_rv = ch.rv
            # changes committed while the response was being prepared
            while not sub.queue.empty():
                chq = sub.queue.get_nowait()
                if chq is None:
                    break
                buf += self._event_line(chq, match, line)
                last_rv = chq.rv
            state = {"rv": last_rv}

            def send(data: bytes) -> None:
                if transport.is_closing():
                    sub.close()
                    return
                if transport.get_write_buffer_size() > self.WATCH_BUFFER_LIMIT:
                    # a client this far behind is dropped, as the real server does
                    sub.close()
                    transport.abort()
                    return
                put(data)

            def deliver(ch: Change) -> None:
                state["rv"] = ch.rv
                data = self._event_line(ch, match, line)
                if data:
                    send(data)

            if initial_events and bookmarks:
                end = {"kind": k.kind, "apiVersion": k.api_version,
                       "metadata": {"resourceVersion": str(state["rv"]),
                                    "annotations": {"k8s.io/initial-events-end": "true"}}}
                buf += line("BOOKMARK", end)
            if buf:
                send(bytes(buf))
            # from here on changes go straight from the commit to the socket
            sub.sink = deliver
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            next_bookmark = self._next_bookmark(loop.time(), deadline) if bookmarks else float("inf")
            while not sub.closed:
                if transport.is_closing():
                    # the client went away: the real server ends the watch with the
                    # request's context, not at its timeout or next event
                    break
                now = loop.time()
                if now >= deadline:
                    break
                if now >= next_bookmark:
                    bm = {"kind": k.kind, "apiVersion": k.api_version,
                          "metadata": {"resourceVersion": str(max(state["rv"], self.store.revision))}}
                    send(line("BOOKMARK", bm))
                    next_bookmark = self._next_bookmark(now, deadline)
                    continue
                try:
                    async with asyncio.timeout(min(deadline, next_bookmark, now + self.WATCH_LIVENESS_CHECK) - now):
                        if await sub.queue.get() is None:
                            break
                except TimeoutError:
                    continue
        except ConnectionResetError:
            # the client went away: nothing to tell it
            return resp
        finally:
            if sub is not None:
                sub.sink = None
                sub.close()
            if task is not None:
                self._watch_tasks.discard(task)
        try:
            if not transport.is_closing():
                await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp

    @staticmethod
    def _event_line(
        ch: Change,
        match: Callable[[Obj], bool] | None,
        line: Callable[[str, Obj, Change | None], bytes],
    ) -> bytes:
        if match is None:
            return line(ch.type, ch.obj, ch)
        now_in = match(ch.obj)
        was_in = ch.prev is not None and match(ch.prev)
        if ch.type == "ADDED":
            return line("ADDED", ch.obj, ch) if now_in else b""
        if ch.type == "DELETED":
            return line("DELETED", ch.obj, ch) if was_in or now_in else b""
        if now_in and was_in:
            return line("MODIFIED", ch.obj, ch)
        if now_in:
            return line("ADDED", ch.obj, ch)
        if was_in:
            return line("DELETED", ch.obj, ch)
        return b""

    # ------------------------------------------------------------------ writes

    def _decode_body(self, request: web.Request, body: bytes, t: Target) -> Obj:
        ctype = request.content_type
        if ctype == protobuf.CONTENT_TYPE:
            try:
                return protobuf.decode(body)
            except protobuf.ProtobufError:
                # clients of kinds the emulator cannot decode see the usual 415
                pass
        if ctype not in (JSON, "application/yaml", APPLY_PATCH, "", "application/octet-stream", "text/plain"):
            # other encodings (CBOR, protobuf of other kinds): what a server without them says
            raise errors.UnsupportedMediaType(
                'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml'
            )
        try:
            if ctype in ("application/yaml", APPLY_PATCH):
                obj = load_yaml(body)
            else:
                obj = _decode(body)
        except (msgspec.DecodeError, yaml.YAMLError) as e:
            raise errors.BadRequest(f"the object provided is unrecognized: {_short(e)}") from None
        if not isinstance(obj, dict):
            raise errors.BadRequest("the object provided is unrecognized (must be of type map)")
        return obj

    def _check_identity(self, obj: Obj, t: Target, *, url_name: str = "") -> None:
        k = t.kind
        # like the real decoder, a body without apiVersion/kind takes the endpoint's
        av = obj.setdefault("apiVersion", k.api_version)
        kind = obj.setdefault("kind", k.kind)
        if av != k.api_version or kind != k.kind:
            raise errors.BadRequest(
                f"the API version in the data ({av}) does not match the expected API version ({k.api_version})"
                if av != k.api_version
                else f"the kind in the data ({kind}) does not match the expected kind ({k.kind})"
            )
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.BadRequest("metadata must be an object")
        if k.namespaced:
            ns = meta.get("namespace")
            if ns and ns != t.namespace:
                raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = t.namespace
        if url_name and meta.get("name") and meta["name"] != url_name:
            raise errors.BadRequest(f"the name of the object ({meta['name']}) does not match the name on the URL ({url_name})")
        if url_name and not meta.get("name"):
            meta["name"] = url_name

    def _admit(self, obj: Obj, t: Target, request: web.Request, old: Obj | None = None) -> list[str]:
        """Decode checks, names, schema validation, CR defaults and pruning; returns warnings.

        The order is the real server's: what its decoder refuses (mistyped built-in
        fields, unknown fields under ``fieldValidation=Strict``) is a 400 BadRequest
        before validation, which answers 422 Invalid with every field error. A custom
        resource's CEL rules run last, on the releases that evaluate them
        (:mod:`federationd.sim.celrules`); ``old`` is the stored object of an update.
        """
        k = t.kind
        if k.group == rbac.RBAC_GROUP:
            self._check_rbac_write(request, obj, t)
        mode = request.query.get("fieldValidation", "") or "Warn"
        if not versions.validates_fields(self.kube_version.name):
            mode = "Ignore"  # releases before it drop unknown fields without a word
        if mode not in ("Strict", "Warn", "Ignore"):
            raise errors.BadRequest(f"fieldValidation must be one of Ignore, Warn, Strict, got {mode}")
        name = str((obj.get("metadata") or {}).get("name") or "")
        field_errors: list[validate.FieldError] = []
        unknown: list[str] = []
        warnings: list[str] = []
        if k.custom:
            if k.schema is not None:
                defaulted = validate.apply_defaults(obj, schema=k.schema)
                pruned = validate.prune(defaulted, schema=k.schema)
                unknown = [p for p in _unknown_paths(defaulted, pruned) if not p.startswith("metadata.")]
                obj.clear()
                obj.update(pruned)
                outcome = celrules.admit_custom(obj, schema=k.schema, release=self.kube_version.name, old=old)
                field_errors.extend(outcome.errors)
                warnings.extend(outcome.warnings)
        else:
            release = self.kube_version.name
            errs, _ = validate.validate_builtin(obj, field_validation="Strict", release=release)
            decoding = [e for e in errs if e.decoding]
            if decoding:
                raise errors.BadRequest(validate.decoding_message(k.kind, k.version, decoding[0].decoding))
            undecodable = semantics.decoding_error(k.group, k.kind, obj)
            if undecodable:
                raise errors.BadRequest(validate.decoding_message(k.kind, k.version, undecodable))
            field_errors.extend(semantics.field_errors(k.group, k.kind, obj))
            unknown = [e.path for e in errs if e.reason == validate.UNKNOWN]
            field_errors.extend(e for e in errs if e.reason != validate.UNKNOWN)
            if unknown:
                pruned = validate.prune_builtin(obj, release=release)
                obj.clear()
                obj.update(pruned)
        if unknown and mode == "Strict":
            raise errors.BadRequest(
                validate.strict_decoding_message(k.kind, k.version, [validate.FieldError.unknown(p) for p in unknown])
            )
        if unknown and mode == "Warn":
            warnings.extend(f'unknown field "{p}"' for p in unknown)
        semantics.drop_empty_maps(obj if not k.custom else obj.get("metadata") or {})
        if k.group == "apiextensions.k8s.io" and k.kind == "CustomResourceDefinition":
            v1 = convert.crd_v1(obj) if k.version == "v1beta1" else obj
            field_errors.extend(validate.FieldError(f, r, m) for f, r, m in crd_errors(v1))
            celrules.drop_rules(obj, release=self.kube_version.name, old=old)
            field_errors.extend(
                validate.FieldError(f, r, m) for f, r, m in celrules.crd_rule_errors(v1, release=self.kube_version.name)
            )
        if name:
            field_errors[:0] = validate.name_errors(name, kind=k.kind)
        if field_errors:
            raise errors.Invalid(
                validate.invalid_message(k.kind, k.group, name, field_errors),
                name=name,
                group=k.group,
                kind=k.kind,
                causes=[e.cause() for e in field_errors],
            )
        if not k.custom:
            # defaulted before managedFields are computed: an Update owns what the
            # server defaulted, as on a real server (an Apply does not)
            defaults.apply(k.group, k.kind, obj)
        return warnings

    def _check_rbac_write(self, request: web.Request, obj: Obj, t: Target) -> None:
        user = request.get(USER)
        if user is None:
            return
        old = self.store.raw(t.kind.resource, t.namespace or "", t.name) if t.name else None
        self.rbac.check_write(user, resource=t.kind.plural, namespace=t.namespace or "", url_name=t.name, obj=obj, old=old)

    @staticmethod
    def _manager(request: web.Request) -> str:
        """The field manager of a write: the parameter, else the client's program name."""
        fm = request.query.get("fieldManager", "")
        if fm:
            if len(fm) > 128:
                raise errors.BadRequest("fieldManager: Too long: may not be longer than 128")
            return fm
        ua = request.headers.get("User-Agent", "")
        return ua.split("/")[0] or "unknown"

    def _set_managed(
        self, request: web.Request, old: Obj | None, new: Obj, t: Target, *, operation: str = "Update"
    ) -> None:
        if not versions.server_side_apply(self.kube_version.name):
            # releases before server-side apply record no managedFields
            new.get("metadata", {}).pop("managedFields", None)
            return
        now = rfc3339(self.store.clock())
        mf = ssa.update_managed_fields(
            old, new, manager=self._manager(request), operation=operation,
            api_version=t.kind.api_version, now=now, subresource=t.subresource,
            schema=t.kind.schema if t.kind.custom else None,
        )
        if mf:
            new.setdefault("metadata", {})["managedFields"] = mf
        else:
            new.get("metadata", {}).pop("managedFields", None)

    def _create(self, request: web.Request, t: Target, body: bytes) -> web.StreamResponse:
        if t.name and t.kind.kind != "Namespace":
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        obj = self._decode_body(request, body, t)
        self._check_identity(obj, t)
        warnings = self._admit(obj, t, request)
        if t.kind.resource == volumes.PVCS:
            volumes.admit_claim(self.store, obj)
        self._set_managed(request, None, obj, t)
        stored, sk = self._stored(obj, t.kind)
        out = self.store.create(stored, kind=sk, dry_run=_dry_run(request), copy_result=False)
        return _json(_as_version(out, t.kind), status=201, warnings=warnings)

    def _stored(self, obj: Obj, k: Kind) -> tuple[Obj, Kind]:
        """The object in its storage form, and the kind it is stored as."""
        if k.storage is None:
            return obj, k
        stored = self.registry.any_version(*k.storage)
        assert stored is not None
        return convert.to_storage(k, obj, storage_api_version=stored.api_version), stored

    def _current(self, t: Target) -> Obj:
        k = t.kind
        o = self.store.raw(k.resource, t.namespace or "", t.name)
        if o is None:
            raise errors.not_found(k.plural, t.name, group=k.group)
        return o

    def _update(self, request: web.Request, t: Target, body: bytes) -> web.StreamResponse:
        obj = self._decode_body(request, body, t)
        self._check_identity(obj, t, url_name=t.name)
        old = self._current(t)
        if t.subresource != "status":
            warnings = self._admit(obj, t, request, old)
        else:
            warnings = self._admit_status(obj, old, t, request)
        self._set_managed(request, _as_version(old, t.kind), obj, t)
        stored, sk = self._stored(obj, t.kind)
        out = self.store.update(stored, kind=sk, subresource=t.subresource, dry_run=_dry_run(request), copy_result=False)
        return _json(_as_version(out, t.kind), warnings=warnings)

    def _admit_status(self, obj: Obj, old: Obj, t: Target, request: web.Request) -> list[str]:
        # validate the object as it will be stored: the old one with the new status
        merged = {**deep_copy(old), "status": obj.get("status")}
        if merged["status"] is None:
            merged.pop("status")
        w = self._admit(merged, t, request, old)
        if "status" in merged:
            obj["status"] = merged["status"]
        return w

    def _patch(self, request: web.Request, t: Target, body: bytes) -> web.StreamResponse:
        k = t.kind
        ctype = request.content_type
        dry = _dry_run(request)
        if ctype == APPLY_PATCH and versions.server_side_apply(self.kube_version.name):
            return self._apply(request, t, body)
        if ctype not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH):
            types = _patch_types(k, apply=versions.server_side_apply(self.kube_version.name))
            raise errors.UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: {', '.join(types)}"
            )
        if ctype == STRATEGIC_PATCH and k.custom:
            raise errors.UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: {', '.join(_patch_types(k))}"
            )
        old = self._current(t)
        current = _as_version(deep_copy(old), k)
        try:
            doc = _decode(body)
        except msgspec.DecodeError as e:
            raise errors.BadRequest(f"error decoding patch: {_short(e)}") from None
        try:
            if ctype == MERGE_PATCH:
                if not isinstance(doc, dict):
                    raise errors.BadRequest("json: cannot unmarshal array into Go value of type map[string]interface {}")
                new = patch.merge_patch(current, doc)
            elif ctype == JSON_PATCH:
                if not isinstance(doc, list):
                    raise errors.BadRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
                try:
                    new = patch.json_patch(current, doc)
                except patch.PatchError:
                    # the real server answers every failed operation (a ``test`` that
                    # does not hold, a missing path) with this generic 422
                    raise errors.Invalid("the server rejected our request due to an error in our request") from None
            else:
                if not isinstance(doc, dict):
                    raise errors.BadRequest("json: cannot unmarshal array into Go value of type map[string]interface {}")
                new = patch.strategic_merge_patch(
                    current, doc, api_version=k.api_version, kind=k.kind,
                    schema=patch.builtin_schema(k.api_version, k.kind, self.kube_version.name))
        except patch.PatchError as e:
            raise errors.Invalid(str(e), name=t.name, group=k.group, kind=k.kind) from None
        if not isinstance(new, dict):
            raise errors.BadRequest("the patch produced something other than an object")
        if new.get("apiVersion") != k.api_version or new.get("kind") != k.kind:
            raise errors.BadRequest("the patch may not change apiVersion or kind")
        self._check_identity(new, t, url_name=t.name)
        if (new.get("metadata") or {}).get("name") != t.name:
            raise errors.BadRequest(f"the name of the object ({new['metadata'].get('name')}) does not match the name on the URL ({t.name})")
        if t.subresource == "status":
            warnings = self._admit_status(new, old, t, request)
        else:
            warnings = self._admit(new, t, request, old)
        self._set_managed(request, current, new, t)
        stored, sk = self._stored(new, k)
        out = self.store.update(stored, kind=sk, subresource=t.subresource, dry_run=dry, copy_result=False)
        return _json(_as_version(out, k), warnings=warnings)

    def _apply(self, request: web.Request, t: Target, body: bytes) -> web.StreamResponse:
        k = t.kind
        manager = request.query.get("fieldManager", "")
        if not manager:
            raise errors.BadRequest("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
        force = request.query.get("force", "") in ("true", "1")
        applied = self._decode_body(request, body, t)
        self._check_identity(applied, t, url_name=t.name)
        live = self.store.raw(k.resource, t.namespace or "", t.name)
        now = rfc3339(self.store.clock())
        live_v = _as_version(deep_copy(live), k) if live is not None else None
        try:
            new = ssa.apply(
                live_v, applied, manager=manager, force=force, api_version=k.api_version, now=now,
                subresource=t.subresource, schema=k.schema if k.custom else None,
                ignore=("status",) if k.status and not t.subresource else (),
            )
        except ssa.ApplyConflict as e:
            raise errors.Conflict(
                str(e),
                name=t.name,
                group=k.group,
                kind=k.plural,
                # a StatusCause's JSON key is "reason" (Go field Type)
                causes=[
                    {"reason": c.get("reason") or c.get("type", "FieldManagerConflict"),
                     "message": c["message"], "field": c["field"]}
                    for c in e.causes()
                ],
            ) from None
        except ssa.InvalidApply as e:
            raise errors.InternalError(str(e)) from None
        except ssa.FieldManagerError as e:
            raise errors.BadRequest(str(e)) from None
        if live is None:
            if t.subresource:
                raise errors.not_found(k.plural, t.name, group=k.group)
            self._authorize_create(request, t)
            warnings = self._admit(new, t, request)
            if k.resource == volumes.PVCS:
                volumes.admit_claim(self.store, new)
            stored, sk = self._stored(new, k)
            out = self.store.create(stored, kind=sk, dry_run=_dry_run(request), copy_result=False)
            return _json(_as_version(out, k), status=201, warnings=warnings)
        new.setdefault("metadata", {})["resourceVersion"] = live["metadata"]["resourceVersion"]
        if t.subresource == "status":
            warnings = self._admit_status(new, live, t, request)
        else:
            warnings = self._admit(new, t, request, live)
        stored, sk = self._stored(new, k)
        out = self.store.update(stored, kind=sk, subresource=t.subresource, dry_run=_dry_run(request), copy_result=False)
        return _json(_as_version(out, k), warnings=warnings)

    def _authorize_create(self, request: web.Request, t: Target) -> None:
        """A patch that creates its object needs ``create`` as well (upstream's
        ``withAuthorization``); the 403 carries only the authorizer's reason."""
        user = request.get(USER)
        k = t.kind
        if self.audit is not None and user is not None:
            self.audit[(user.name, "create", k.group, f"{k.plural}/{t.subresource}" if t.subresource else k.plural)] += 1
        if user is None or user.privileged:
            return
        info = rbac.RequestInfo(True, request.path, "create", k.group, k.version, t.namespace or "", k.plural, t.subresource, t.name)
        ok, reason = self.rbac.authorize(user, info)
        if not ok:
            raise rbac.forbidden_error(k.group, k.plural, t.name, reason)

    async def _scale(self, request: web.Request, verb: str, t: Target) -> web.StreamResponse:
        """The ``scale`` subresource: an autoscaling/v1 Scale view of spec.replicas."""
        k = t.kind
        cur = self._current(t)
        scale = _scale_of(cur)
        if verb == "get":
            return _json(scale)
        if verb not in ("update", "patch"):
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        body = await _read_body(request)
        if verb == "update":
            new_scale = self._decode_body(request, body, t)
        else:
            try:
                doc = _decode(body)
            except msgspec.DecodeError as e:
                raise errors.BadRequest(f"error decoding patch: {_short(e)}") from None
            try:
                if request.content_type == JSON_PATCH and isinstance(doc, list):
                    new_scale = patch.json_patch(scale, doc)
                elif isinstance(doc, dict) and request.content_type in (MERGE_PATCH, STRATEGIC_PATCH):
                    new_scale = patch.merge_patch(scale, doc)
                else:
                    raise errors.UnsupportedMediaType(
                        f"the body of the request was in an unknown format - accepted media types include: {', '.join(_patch_types(k))}"
                    )
            except patch.PatchError as e:
                raise errors.Invalid(str(e), name=t.name, group=k.group, kind=k.kind) from None
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid("Scale", t.name, group="autoscaling", causes=[
                {"reason": "FieldValueInvalid", "field": "spec.replicas",
                 "message": f"Invalid value: {replicas}: must be greater than or equal to 0"}])
        rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        new = deep_copy(cur)
        new["spec"] = {**(new.get("spec") or {}), "replicas": replicas}
        if rv:
            new["metadata"]["resourceVersion"] = rv
        self._set_managed(request, cur, new, t)
        out = self.store.update(new, kind=k, dry_run=_dry_run(request), copy_result=False)
        return _json(_scale_of(out))

    def _delete_options(self, request: web.Request, body: bytes) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if body.strip():
            try:
                decoded = _decode(body)
            except msgspec.DecodeError:
                raise errors.BadRequest("the body of the request was in an unknown format") from None
            if isinstance(decoded, dict):
                opts = decoded
        q = request.query
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if q.get("orphanDependents") in ("true", "false") and "propagationPolicy" not in opts:
            opts["propagationPolicy"] = "Orphan" if q["orphanDependents"] == "true" else "Background"
        if opts.get("orphanDependents") is True and "propagationPolicy" not in opts:
            opts["propagationPolicy"] = "Orphan"
        pol = opts.get("propagationPolicy")
        if pol is not None and pol not in ("Orphan", "Background", "Foreground"):
            raise errors.BadRequest(f'propagationPolicy: Unsupported value: "{pol}": supported values: "Foreground", "Background", "Orphan"')
        if "dryRun" in q:
            opts["dryRun"] = q.getall("dryRun")
        return opts

    def _delete(self, request: web.Request, t: Target, body: bytes) -> web.StreamResponse:
        k = t.kind
        opts = self._delete_options(request, body)
        pre = opts.get("preconditions") or {}
        dry = "All" in (opts.get("dryRun") or [])
        res = self.store.delete(
            k, t.namespace or "", t.name,
            propagation=opts.get("propagationPolicy"),
            uid=pre.get("uid"), resource_version=pre.get("resourceVersion"),
            dry_run=dry,
        )
        obj = _as_version(res.obj, k)
        if not res.deleted:
            return _json(obj, status=202 if not dry else 200)
        if k.custom or k.kind in ("Pod", "Service", "Namespace", "Node"):
            return _json(obj)
        return _json(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": t.name, "group": k.group, "kind": k.plural, "uid": obj["metadata"].get("uid", "")},
            }
        )

    def _delete_collection(self, request: web.Request, t: Target, body: bytes) -> web.StreamResponse:
        k = t.kind
        opts = self._delete_options(request, body)
        q = request.query
        match = object_filter(
            label_selector=q.get("labelSelector", ""),
            field_selector=q.get("fieldSelector", ""),
            kind=k.kind,
        )
        dry = "All" in (opts.get("dryRun") or [])
        items, _ = self.store.list_raw(k.resource, t.namespace)
        out = []
        for o in items:
            if match is not None and not match(o):
                continue
            m = o["metadata"]
            try:
                res = self.store.delete(k, m.get("namespace", ""), m["name"], propagation=opts.get("propagationPolicy"), dry_run=dry)
            except errors.NotFound:
                continue
            out.append(_as_version(res.obj, k))
        return _json({"kind": k.list_kind_name, "apiVersion": k.api_version, "metadata": {"resourceVersion": str(self.store.revision)}, "items": out})

    # ------------------------------------------------------------------ lifecycle

    async def close_watches(self) -> None:
        self.store.drop_watches()
        tasks = list(self._watch_tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    def abort_connections(self) -> int:
        n = 0
        for tr in list(self.transports):
            try:
                tr.abort()
                n += 1
            except Exception:
                pass
        return n


# ---------------------------------------------------------------------------- helpers


#: the authenticated (or impersonated) user of a request, for admission
USER = web.RequestKey("user", rbac.UserInfo)

_AUTH_GROUPS = frozenset({"authorization.k8s.io", "authentication.k8s.io"})


async def _read_body(request: web.Request) -> bytes:
    """The request body, at most ``client_max_size`` (``ApiServer.MAX_BODY``) bytes: past
    it, the Status kube-apiserver answers, not aiohttp's own error."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.RequestEntityTooLarge(request.client_max_size) from None


def _body_sink(transport: asyncio.Transport) -> Callable[[bytes], None]:
    """How a watch writes its events straight to the connection, past aiohttp's
    writer: as HTTP/1.1 chunks (the response is chunked), or as DATA frames on an
    HTTP/2 stream, whose transport frames what it is given."""
    if isinstance(transport, h2serve.StreamTransport):
        return transport.write

    def chunk(data: bytes) -> None:
        transport.write(b"%x\r\n%b\r\n" % (len(data), data))

    return chunk


def _static_user(u: str | rbac.UserInfo) -> rbac.UserInfo:
    if isinstance(u, rbac.UserInfo):
        return u
    if u == "admin":
        return auth.ADMIN
    return rbac.UserInfo(name=u, groups=(rbac.AUTHENTICATED,))


def _json(obj: Any, *, status: int = 200, warnings: Iterable[str] = ()) -> web.Response:
    headers = None
    w = list(warnings)
    if w:
        # RFC 7234 warn-text: a quoted string, backslash escapes (what client-go parses)
        headers = {"Warning": ", ".join('299 - "' + x.replace("\\", "\\\\").replace('"', '\\"') + '"' for x in w)}
    return web.Response(body=_encode(obj), status=status, content_type=JSON, headers=headers)


def _scale_of(o: Obj) -> Obj:
    meta = o["metadata"]
    spec = o.get("spec") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            "replicas": (o.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        },
    }


def _as_version(o: Obj, k: Kind) -> Obj:
    """A stored object as ``k`` serves it (its apiVersion; converted if stored otherwise)."""
    if k.storage is not None:
        return convert.from_storage(k, o)
    if o.get("apiVersion") == k.api_version:
        return o
    return {**o, "apiVersion": k.api_version}


def _key(o: Obj) -> str:
    m = o["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


def _encode_continue(rv: int, start: str) -> str:
    return base64.urlsafe_b64encode(_encode({"v": "meta.k8s.io/v1", "rv": rv, "start": start})).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        d = _decode(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        return int(d["rv"]), str(d["start"])
    except Exception:
        raise errors.BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)") from None


def _int_param(v: str, name: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise errors.BadRequest(f"{name}: Invalid value: \"{v}\": must be an integer") from None
    if n < 0:
        raise errors.BadRequest(f"{name}: Invalid value: \"{v}\": must be non-negative")
    return n


def _accepts(accept: str, version: str) -> bool:
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "g=apidiscovery.k8s.io" in p and f";v={version};" in p + ";" and "as=APIGroupDiscoveryList" in p:
            return True
    return False


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=Table" in p and "g=meta.k8s.io" in p and (";v=v1;" in p + ";" or ";v=v1beta1;" in p + ";"):
            return True
        if p.startswith("application/json") and "as=" not in p:
            return False
    return False


def _dry_run(request: web.Request) -> bool:
    vals = request.query.getall("dryRun", [])
    for v in vals:
        if v != "All":
            raise errors.BadRequest(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(vals)


def _patch_types(k: Kind, *, apply: bool = True) -> list[str]:
    types = [JSON_PATCH, MERGE_PATCH, *([APPLY_PATCH] if apply else [])]
    if not k.custom:
        types.insert(2, STRATEGIC_PATCH)
    return types


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _unknown_paths(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Fields present before pruning and gone after (what Strict validation reports)."""
    out: list[str] = []
    if isinstance(before, dict) and isinstance(after, dict):
        for key, v in before.items():
            path = f"{prefix}.{key}" if prefix else key
            if key not in after:
                out.append(path)
            else:
                out.extend(_unknown_paths(v, after[key], path))
    elif isinstance(before, list) and isinstance(after, list):
        for i, (a, b) in enumerate(zip(before, after, strict=False)):
            out.extend(_unknown_paths(a, b, f"{prefix}[{i}]"))
    return out
