"""The in-memory object store of one simulated cluster: MVCC, lifecycle, watch fan-out.

One revision counter per cluster, bumped by every committed write, is every object's
``resourceVersion`` (as the real server's etcd revision). Stored objects are never
mutated in place: a write stores a new dict, so the history window can keep the previous
version of every change cheaply. That window serves watch resumption, lists at an older
revision and continue tokens; anything older than it answers 410 Expired.

The store also owns what the real server does around storage: uid, timestamps,
generation (bumped only when something other than metadata/status changes),
deletionTimestamp + finalizers, namespace termination and ownerReference garbage
collection. The latter two run in the background (``collect_garbage``), driven by the
cluster, as the real namespace and garbage-collector controllers are.

All methods are synchronous and must be called on the cluster's event loop; watch
subscribers are asyncio queues fed with ``put_nowait`` at commit time, which is what
keeps watch delivery latency at a few hundred microseconds.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import yaml

from federationd.sim import convert, defaults, errors
from federationd.sim.kinds import Kind, Registry, ResourceKey

Obj = dict[str, Any]
# aliases: inside ``Store`` the name ``list`` is the method
ObjList = list[Obj]

#: objects a fresh cluster starts with, like kube-apiserver's bootstrap
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
#: namespaces the NamespaceLifecycle admission plugin never lets go: their UIDs stay the
#: cluster's for its lifetime (kube-system's is what tools take as the cluster's identity)
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def deep_copy(obj: Obj) -> Obj:
    # a JSON round trip is several times faster than copy.deepcopy for these trees
    out: Obj = _json_decode(_json_encode(obj))
    return out


_last_rfc3339: tuple[int | None, str] = (None, "")


#: ``yaml.safe_load``'s loader, with LibYAML when present: the emulator parses YAML per
#: request (every server-side apply body) and per Pod (injection templates' output).
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_JSON_DOC = msgspec.json.Decoder()


def load_yaml(text: str | bytes) -> Any:
    """``yaml.safe_load``, with LibYAML when present (the same safe constructor: plain
    data only). A body that is a JSON object — what clients send as
    ``apply-patch+yaml`` — is decoded as JSON: YAML's flow style reads it the same, as
    the API server's ``sigs.k8s.io/yaml`` (YAML to JSON, then JSON) does, and a JSON
    decoder reads it an order of magnitude faster. Where the two differ, JSON is what the
    server does (``1e3`` is a number to it and to JSON, a string to PyYAML's YAML 1.1).
    Anything that is not valid JSON is read as YAML. (The server's
    ``fieldValidation`` check for a key given twice, ``yaml.UnmarshalStrict`` in
    ``apiserver/pkg/endpoints/handlers/patch.go``, is emulated on neither path: both
    keep the last value.)"""
    if text.lstrip()[:1] in (b"{", "{"):
        try:
            return _JSON_DOC.decode(text)
        except msgspec.DecodeError:
            pass
    return yaml.load(text, Loader=_YAML_LOADER)


def rfc3339(ts: float) -> str:
    # every write stamps one or two times, nearly always of the same second as the
    # previous write: formatting one is a tenth of a create's cost, so the last is kept
    global _last_rfc3339
    second = int(ts)
    last = _last_rfc3339
    if last[0] == second:
        return last[1]
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    _last_rfc3339 = (second, text)
    return text


def parse_rfc3339(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


class Change:
    """One committed write, as watchers see it."""

    __slots__ = ("_encoded", "name", "namespace", "obj", "prev", "resource", "rv", "type")

    def __init__(
        self,
        rv: int,
        type_: str,
        resource: ResourceKey,
        namespace: str,
        name: str,
        obj: Obj,
        prev: Obj | None,
    ) -> None:
        self.rv = rv
        self.type = type_
        self.resource = resource
        self.namespace = namespace
        self.name = name
        self.obj = obj
        self.prev = prev
        self._encoded: dict[str, bytes] = {}

    def encoded(self, api_version: str, type_: str | None = None) -> bytes:
        """The watch line for this change, served as ``api_version``; cached per version."""
        key = f"{type_ or self.type}|{api_version}"
        line = self._encoded.get(key)
        if line is None:
            obj = self.obj
            if obj.get("apiVersion") != api_version:
                obj = {**obj, "apiVersion": api_version}
            line = _json_encode({"type": type_ or self.type, "object": obj}) + b"\n"
            self._encoded[key] = line
        return line


ChangeList = list[Change]
DependentList = list[tuple[ResourceKey, Obj]]
#: where an object lives: (resource, namespace, name)
ObjKey = tuple[ResourceKey, str, str]


class Subscription:
    """A watcher's queue of changes for one resource (optionally one namespace)."""

    __slots__ = ("closed", "namespace", "queue", "resource", "sink", "store")

    #: a watcher that falls this far behind is dropped, as the real server drops slow ones
    MAX_BACKLOG = 50_000

    def __init__(self, store: Store, resource: ResourceKey, namespace: str | None) -> None:
        self.store = store
        self.resource = resource
        self.namespace = namespace
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self.closed = False
        #: when set, changes are handed to it at commit time instead of being queued
        #: (the watch handler writes them to the socket without a task switch)
        self.sink: Callable[[Change], None] | None = None

    def offer(self, change: Change) -> None:
        if self.closed:
            return
        if self.sink is not None:
            self.sink(change)
            return
        if self.queue.qsize() >= self.MAX_BACKLOG:
            self.close()
            return
        self.queue.put_nowait(change)

    def close(self) -> None:
        """End the watch: the reader sees ``None`` after what is already queued."""
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)
            self.store._unsubscribe(self)


@dataclass(frozen=True, slots=True)
class DeleteResult:
    obj: Obj
    #: False when finalizers keep the object (deletionTimestamp set)
    deleted: bool


def _meta(obj: Obj) -> dict[str, Any]:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def _without(obj: Obj, *top: str) -> Obj:
    return {k: v for k, v in obj.items() if k not in top}


def _comparable(obj: Obj) -> Obj:
    # a write that changes nothing but managedFields timestamps is not a write
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    mf = meta.get("managedFields")
    if isinstance(mf, list):
        meta["managedFields"] = [
            {k: v for k, v in e.items() if k != "time"} if isinstance(e, dict) else e for e in mf
        ]
    return {**obj, "metadata": meta}


class Store:
    """Objects of one cluster, keyed by resource then (namespace, name)."""

    def __init__(
        self,
        registry: Registry,
        *,
        history: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.revision = 1
        self._objects: dict[ResourceKey, dict[tuple[str, str], Obj]] = {}
        self._history: deque[Change] = deque()
        self._history_max = history
        #: the oldest revision a watch or list can still start from
        self.floor = 1
        self._subs: dict[ResourceKey, set[Subscription]] = {}
        self._gc_owners: deque[tuple[str, str]] = deque()  # (uid, policy)
        self._by_uid: dict[str, ObjKey] = {}
        self._dependents: dict[str, set[ObjKey]] = {}
        self._terminating: set[ObjKey] = set()
        self._next_ip = 1
        self._next_node_port = 30000
        #: called whenever background work (namespace termination, GC) is pending
        self.on_pending: Callable[[], None] = lambda: None
        #: hooks called after every committed change (behaviours, CRD registration)
        self.listeners: list[Callable[[Change], None]] = []
        #: mutating admission of built-in objects on create (group, kind, object,
        #: generated_name=...), after the built-in plugins and before the object is stored:
        #: the webhooks a cluster calls, for writes through the API and by controllers alike
        self.admission: list[Callable[..., None]] = []
        for ns in SYSTEM_NAMESPACES:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # ------------------------------------------------------------------ lookup

    def kind_for(self, api_version: str, kind: str) -> Kind:
        k = self.registry.by_kind(api_version, kind)
        if k is None:
            raise errors.NotFound(
                f'the server could not find the requested resource (kind "{kind}" in "{api_version}")'
            )
        return k

    def _kind_of(self, obj: Obj) -> Kind:
        return self.kind_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))

    def raw(self, resource: ResourceKey, namespace: str, name: str) -> Obj | None:
        """The stored object itself (do not mutate)."""
        bucket = self._objects.get(resource)
        return bucket.get((namespace, name)) if bucket else None

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None:
        """A copy of an object, or None (direct access for tests and behaviours)."""
        k = self.kind_for(api_version, kind)
        o = self.raw(k.resource, namespace if k.namespaced else "", name)
        return None if o is None else self._as_version(deep_copy(o), k)

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> ObjList:
        k = self.kind_for(api_version, kind)
        items, _ = self.list_raw(k.resource, namespace)
        return [self._as_version(deep_copy(o), k) for o in items]

    @staticmethod
    def _as_version(obj: Obj, kind: Kind) -> Obj:
        if kind.storage is not None:
            return convert.from_storage(kind, obj)
        obj["apiVersion"] = kind.api_version
        return obj

    def list_raw(
        self, resource: ResourceKey, namespace: str | None, *, at: int | None = None
    ) -> tuple[ObjList, int]:
        """Objects sorted by (namespace, name), at the current or an older revision."""
        bucket = self._objects.get(resource, {})
        if at is not None and at < self.revision:
            if at < self.floor:
                raise errors.Gone(
                    f"too old resource version: {at} ({self.floor})"
                )
            snap = dict(bucket)
            for ch in reversed(self._history):
                if ch.rv <= at:
                    break
                if ch.resource != resource:
                    continue
                key = (ch.namespace, ch.name)
                if ch.prev is None:
                    snap.pop(key, None)
                else:
                    snap[key] = ch.prev
            bucket, rv = snap, at
        else:
            rv = self.revision
        if namespace is None:
            keys = sorted(bucket)
        else:
            keys = sorted(k for k in bucket if k[0] == namespace)
        return [bucket[k] for k in keys], rv

    def dependents(self, uid: str) -> DependentList:
        """Objects whose ownerReferences name ``uid`` (the garbage collector's index),
        sorted by name."""
        out = [(key[0], o) for key in self._dependents.get(uid, ()) if (o := self.raw(*key)) is not None]
        out.sort(key=lambda ro: str(ro[1]["metadata"]["name"]))
        return out

    def namespaced_objects(self, namespace: str) -> Iterable[tuple[ResourceKey, Obj]]:
        for resource, bucket in list(self._objects.items()):
            for (ns, _), o in list(bucket.items()):
                if ns == namespace:
                    yield resource, o

    # ------------------------------------------------------------------ commit

    def _commit(self, kind: Kind, type_: str, obj: Obj, prev: Obj | None) -> Change:
        self.revision += 1
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        if type_ != "DELETED":
            meta["resourceVersion"] = str(self.revision)
            self._objects.setdefault(kind.resource, {})[(ns, name)] = obj
            self._index(kind.resource, obj, prev)
        else:
            obj = {**obj, "metadata": {**meta, "resourceVersion": str(self.revision)}}
            bucket = self._objects.get(kind.resource)
            if bucket is not None:
                bucket.pop((ns, name), None)
            self._index(kind.resource, None, prev if prev is not None else obj)
        ch = Change(self.revision, type_, kind.resource, ns, name, obj, prev)
        self._history.append(ch)
        if len(self._history) > self._history_max:
            dropped = self._history.popleft()
            self.floor = dropped.rv
        subs = self._subs.get(kind.resource)
        if subs:
            for s in list(subs):
                if s.namespace is None or s.namespace == ns:
                    s.offer(ch)
        for listener in self.listeners:
            listener(ch)
        return ch

    def compact(self) -> int:
        """Forget the whole history window: older watches and continue tokens get 410."""
        self._history.clear()
        self.floor = self.revision
        return self.floor

    def set_history(self, size: int) -> None:
        self._history_max = max(0, size)
        while len(self._history) > self._history_max:
            self.floor = self._history.popleft().rv

    # ------------------------------------------------------------------ watch

    def subscribe(
        self, resource: ResourceKey, namespace: str | None, *, since: int | None
    ) -> tuple[Subscription, ChangeList]:
        """Register a watcher; with ``since``, also the changes after it (410 if compacted)."""
        backlog: ChangeList = []
        if since is not None:
            if since < self.floor and since < self.revision:
                raise errors.Gone(f"too old resource version: {since} ({self.floor})")
            for ch in self._history:
                if ch.rv > since and ch.resource == resource and (
                    namespace is None or ch.namespace == namespace
                ):
                    backlog.append(ch)
        sub = Subscription(self, resource, namespace)
        self._subs.setdefault(resource, set()).add(sub)
        return sub, backlog

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.resource)
        if subs is not None:
            subs.discard(sub)

    def drop_watches(self, resource: ResourceKey | None = None) -> int:
        """End open watches (of one resource, or all); returns how many."""
        n = 0
        for key, subs in list(self._subs.items()):
            if resource is not None and key != resource:
                continue
            for s in list(subs):
                s.close()
                n += 1
        return n

    def watcher_count(self, resource: ResourceKey | None = None, namespace: str | None = None) -> int:
        """Open watches (of one resource, and of those, the ones of one namespace)."""
        if resource is None:
            return sum(len(s) for s in self._subs.values())
        return sum(1 for s in self._subs.get(resource, ()) if namespace is None or s.namespace == namespace)

    # ------------------------------------------------------------------ writes

    def _check_namespace(self, kind: Kind, obj: Obj) -> str:
        meta = _meta(obj)
        if not kind.namespaced:
            meta.pop("namespace", None)
            return ""
        ns = meta.get("namespace") or ""
        if not ns:
            raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on the request")
        nso = self.raw(("", "namespaces"), "", ns)
        if nso is None:
            raise errors.NotFound(f'namespaces "{ns}" not found', name=ns, kind="namespaces")
        if nso["metadata"].get("deletionTimestamp"):
            raise errors.Forbidden(
                f"{kind.plural} \"{meta.get('name', '')}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                name=meta.get("name", ""),
                group=kind.group,
                kind=kind.plural,
            )
        return str(ns)

    def _uses_generation(self, kind: Kind) -> bool:
        return kind.custom or (kind.status and kind.kind not in ("Namespace", "Node", "Pod"))

    def create(
        self, obj: Obj, *, kind: Kind | None = None, dry_run: bool = False, copy_result: bool = True
    ) -> Obj:
        """Store a new object (metadata filled in) and return it.

        The argument is not kept. The result is a copy unless ``copy_result=False``
        (the server, which only serialises it, saves the copy).
        """
        kind = kind or self._kind_of(obj)
        obj = deep_copy(obj)
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        meta = _meta(obj)
        name = meta.get("name") or ""
        generated_name = not name and bool(meta.get("generateName"))
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
            meta["name"] = name
        if not name:
            raise errors.Invalid(
                f"{kind.kind} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                kind=kind.kind,
                group=kind.group,
                causes=[{"reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"}],
            )
        ns = self._check_namespace(kind, obj)
        if self.raw(kind.resource, ns, name) is not None:
            raise errors.AlreadyExists(
                f'{kind.group_kind} "{name}" already exists',
                name=name,
                group=kind.group,
                kind=kind.plural,
            )
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(self.clock())
        if self._uses_generation(kind):
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if kind.status and kind.kind not in ("Node",):
            obj.pop("status", None)
        self._defaults_on_create(kind, obj)
        defaults.apply(kind.group, kind.kind, obj)
        if not kind.custom:
            defaults.on_create(kind.group, kind.kind, obj, now=meta["creationTimestamp"])
            for admit in self.admission:
                admit(kind.group, kind.kind, obj, generated_name=generated_name)
            if self.admission:
                defaults.apply(kind.group, kind.kind, obj)  # what a webhook added is defaulted too
        if dry_run:
            meta["resourceVersion"] = ""
            return obj
        self._commit(kind, "ADDED", obj, None)
        return deep_copy(obj) if copy_result else obj

    def _defaults_on_create(self, kind: Kind, obj: Obj) -> None:
        # the handful of server-side defaults clients rely on (clusterIP, nodePorts, phases)
        if kind.group == "" and kind.kind == "Namespace":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            labels = _meta(obj).setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif kind.group == "" and kind.kind == "Pod":
            obj["status"] = {"phase": "Pending"}
        elif kind.group == "" and kind.kind == "Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
                ip = str(ipaddress.IPv4Address("10.96.0.0") + self._next_ip)
                self._next_ip += 1
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            for p in spec.get("ports") or []:
                p.setdefault("protocol", "TCP")
                if "port" in p:
                    p.setdefault("targetPort", p["port"])
                if spec["type"] in ("NodePort", "LoadBalancer") and not p.get("nodePort"):
                    p["nodePort"] = self._next_node_port
                    self._next_node_port = 30000 + (self._next_node_port - 29999) % 2768
            obj["status"] = {"loadBalancer": {}}

    def update(
        self,
        obj: Obj,
        *,
        kind: Kind | None = None,
        subresource: str = "",
        dry_run: bool = False,
        check_version: bool = True,
        copy_result: bool = True,
    ) -> Obj:
        """Replace an object (or only its status); 409 Conflict on a stale resourceVersion.

        Returns the stored result (a copy unless ``copy_result=False``).
        """
        kind = kind or self._kind_of(obj)
        obj = deep_copy(obj)
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        meta = _meta(obj)
        name = meta.get("name") or ""
        ns = meta.get("namespace", "") if kind.namespaced else ""
        old = self.raw(kind.resource, ns, name)
        if old is None:
            raise errors.not_found(kind.plural, name, group=kind.group)
        rv = meta.get("resourceVersion")
        if check_version and rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.Conflict(
                f'Operation cannot be fulfilled on {kind.group_kind} "{name}": the object has been modified; please apply your changes to the latest version and try again',
                name=name,
                group=kind.group,
                kind=kind.plural,
            )
        old_meta = old["metadata"]
        if subresource == "status":
            new = {**old, "status": obj.get("status")}
            if new["status"] is None:
                new.pop("status")
            new_meta = dict(old_meta)
            if "managedFields" in meta:
                new_meta["managedFields"] = meta["managedFields"]
            new["metadata"] = new_meta
        else:
            new = obj
            if kind.status and "status" in old:
                new["status"] = old["status"]
            elif kind.status:
                new.pop("status", None)
            new_meta = meta
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if k in old_meta:
                    new_meta[k] = old_meta[k]
                else:
                    new_meta.pop(k, None)
            if kind.namespaced:
                new_meta["namespace"] = ns
            if old_meta.get("deletionTimestamp"):
                added = [f for f in new_meta.get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])]
                if added:
                    quoted = ", ".join(f'"{f}"' for f in added)
                    msg = f"Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{quoted}}}"
                    raise errors.invalid(kind.kind, name, group=kind.group, causes=[
                        {"reason": "FieldValueForbidden", "message": msg, "field": "metadata.finalizers"}])
        if subresource != "status":
            defaults.apply(kind.group, kind.kind, new)
        new_meta = new["metadata"]
        new_meta["resourceVersion"] = old_meta["resourceVersion"]
        if self._uses_generation(kind) and subresource != "status":
            skip = ("metadata", "status") if kind.status else ("metadata",)
            if _without(new, *skip) != _without(old, *skip):
                new_meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if _comparable(new) == _comparable(old):
            return deep_copy(old) if copy_result else old
        if dry_run:
            return new
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            ch = self._commit(kind, "DELETED", new, old)
            self._after_delete(kind, new, "Background")
            return deep_copy(ch.obj) if copy_result else ch.obj
        self._commit(kind, "MODIFIED", new, old)
        return deep_copy(new) if copy_result else new

    def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
        dry_run: bool = False,
    ) -> DeleteResult:
        ns = namespace if kind.namespaced else ""
        old = self.raw(kind.resource, ns, name)
        if old is None:
            raise errors.not_found(kind.plural, name, group=kind.group)
        if kind.kind == "Namespace" and not kind.group and name in IMMORTAL_NAMESPACES:
            raise errors.Forbidden(
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                name=name, kind=kind.plural,
            )
        ometa = old["metadata"]
        if (uid and uid != ometa.get("uid")) or (
            resource_version and resource_version != ometa.get("resourceVersion")
        ):
            raise errors.Conflict(
                f'Operation cannot be fulfilled on {kind.group_kind} "{name}": Precondition failed',
                name=name,
                group=kind.group,
                kind=kind.plural,
            )
        policy = propagation or "Background"
        finalizers = list(ometa.get("finalizers") or [])
        is_namespace = kind.group == "" and kind.kind == "Namespace"
        if policy == "Foreground" and "foregroundDeletion" not in finalizers and not ometa.get("deletionTimestamp"):
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers and not ometa.get("deletionTimestamp"):
            finalizers.append("orphan")
        if finalizers or is_namespace:
            if ometa.get("deletionTimestamp") and finalizers == list(ometa.get("finalizers") or []):
                return DeleteResult(deep_copy(old), False)
            new = deep_copy(old)
            meta = new["metadata"]
            if not meta.get("deletionTimestamp") and meta.get("generation"):
                # the real server counts the start of a deletion as a spec change
                meta["generation"] = int(meta["generation"]) + 1
            meta.setdefault("deletionTimestamp", rfc3339(self.clock()))
            meta.setdefault("deletionGracePeriodSeconds", 0)
            if finalizers:
                meta["finalizers"] = finalizers
            if is_namespace:
                new.setdefault("status", {})["phase"] = "Terminating"
            if dry_run:
                return DeleteResult(new, False)
            self._commit(kind, "MODIFIED", new, old)
            self.on_pending()
            return DeleteResult(deep_copy(new), False)
        if dry_run:
            return DeleteResult(deep_copy(old), True)
        ch = self._commit(kind, "DELETED", deep_copy(old), old)
        self._after_delete(kind, ch.obj, policy)
        return DeleteResult(deep_copy(ch.obj), True)

    def _after_delete(self, kind: Kind, obj: Obj, policy: str) -> None:
        uid = obj["metadata"].get("uid")
        if uid:
            self._gc_owners.append((str(uid), policy))
            self.on_pending()

    # ------------------------------------------------------------------ background

    def collect_garbage(self, *, budget: int = 10_000) -> bool:
        """One pass of namespace termination and ownerReference GC; True if work remains.

        Driven by indexes kept at commit time (owner uid -> dependents, objects being
        deleted), so a pass costs what it deletes, not the size of the store.
        """
        work = 0
        while self._gc_owners and work < budget:
            uid, _policy = self._gc_owners.popleft()
            if uid in self._by_uid:
                continue
            for key in list(self._dependents.get(uid, ())):
                o = self.raw(*key)
                kind = self.registry.any_version(*key[0])
                if o is not None and kind is not None:
                    work += 1
                    self._gc_dependent(kind, o, uid)
        for key in list(self._terminating):
            o = self.raw(*key)
            kind = self.registry.any_version(*key[0])
            if o is None or kind is None:
                self._terminating.discard(key)
                continue
            m = o["metadata"]
            uid = str(m.get("uid"))
            fins = m.get("finalizers") or []
            if "foregroundDeletion" in fins or "orphan" in fins:
                deps = [(d, self.raw(*d)) for d in list(self._dependents.get(uid, ()))]
                live = [(d, dep) for d, dep in deps if dep is not None]
                if "orphan" in fins:
                    for d, dep in live:
                        k = self.registry.any_version(*d[0])
                        if k is None:
                            continue
                        nd = deep_copy(dep)
                        nd["metadata"]["ownerReferences"] = [
                            r for r in nd["metadata"].get("ownerReferences", []) if r.get("uid") != uid
                        ]
                        work += 1
                        self.update(nd, kind=k, check_version=False)
                    live = []
                for d, dep in live:
                    k = self.registry.any_version(*d[0])
                    if k is not None and not dep["metadata"].get("deletionTimestamp"):
                        work += 1
                        self._try_delete(k, dep, "Foreground")
                if not live:
                    cur = self.raw(*key)
                    if cur is not None:
                        nd = deep_copy(cur)
                        nd["metadata"]["finalizers"] = [
                            f for f in fins if f not in ("foregroundDeletion", "orphan")
                        ]
                        work += 1
                        self.update(nd, kind=kind, check_version=False)
            if kind.group == "" and kind.kind == "Namespace":
                work += self._terminate_namespace(kind, o)
        return bool(self._gc_owners) or work >= budget

    def _index(self, resource: ResourceKey, new: Obj | None, prev: Obj | None) -> None:
        """Keep the GC indexes (uid, owner -> dependents, being deleted) current."""
        src = new if new is not None else prev
        assert src is not None
        meta = src["metadata"]
        key = (resource, meta.get("namespace", ""), meta["name"])
        if prev is not None:
            pm = prev["metadata"]
            self._by_uid.pop(str(pm.get("uid")), None)
            for ref in pm.get("ownerReferences") or []:
                deps = self._dependents.get(str(ref.get("uid")))
                if deps is not None:
                    deps.discard(key)
                    if not deps:
                        del self._dependents[str(ref.get("uid"))]
            self._terminating.discard(key)
        if new is not None:
            nm = new["metadata"]
            self._by_uid[str(nm.get("uid"))] = key
            for ref in nm.get("ownerReferences") or []:
                self._dependents.setdefault(str(ref.get("uid")), set()).add(key)
            if nm.get("deletionTimestamp"):
                self._terminating.add(key)

    def _gc_dependent(self, kind: Kind, o: Obj, owner_uid: str) -> None:
        m = o["metadata"]
        remaining = [r for r in m.get("ownerReferences") or [] if str(r.get("uid")) in self._by_uid]
        if remaining:
            # other owners still alive: only drop the reference to the deleted one
            nd = deep_copy(o)
            nd["metadata"]["ownerReferences"] = [
                r for r in m.get("ownerReferences") or [] if r.get("uid") != owner_uid
            ]
            self.update(nd, kind=kind, check_version=False)
            return
        self._try_delete(kind, o, "Background")

    def _try_delete(self, kind: Kind, o: Obj, policy: str) -> None:
        m = o["metadata"]
        try:
            self.delete(kind, m.get("namespace", ""), m["name"], propagation=policy)
        except errors.NotFound:
            pass

    def _terminate_namespace(self, kind: Kind, ns_obj: Obj) -> int:
        name = ns_obj["metadata"]["name"]
        work = 0
        remaining = 0
        for resource, o in list(self.namespaced_objects(name)):
            k = self.registry.any_version(*resource)
            if k is None:
                continue
            remaining += 1
            if not o["metadata"].get("deletionTimestamp"):
                work += 1
                self._try_delete(k, o, "Background")
        if remaining and any(True for _ in self.namespaced_objects(name)):
            return work
        cur = self.raw(kind.resource, "", name)
        if cur is None:
            return work
        new = deep_copy(cur)
        new["spec"] = {}
        if new["metadata"].get("finalizers"):
            # someone else's finalizers still hold the namespace object
            self.update(new, kind=kind, check_version=False)
            return work + 1
        self._commit(kind, "DELETED", new, cur)
        self._after_delete(kind, new, "Background")
        return work + 1

    # ------------------------------------------------------------------ convenience

    def apply_status(self, api_version: str, kind: str, name: str, namespace: str, status: Obj) -> Obj:
        """Set an object's status directly (for behaviours and test setup)."""
        k = self.kind_for(api_version, kind)
        cur = self.raw(k.resource, namespace if k.namespaced else "", name)
        if cur is None:
            raise errors.not_found(k.plural, name, group=k.group)
        new = {**cur, "status": copy.deepcopy(status)}
        return self.update(new, kind=k, subresource="status" if k.status else "", check_version=False)

    def remove(self, api_version: str, kind: str, name: str, namespace: str = "", **kw: Any) -> DeleteResult:
        k = self.kind_for(api_version, kind)
        return self.delete(k, namespace, name, **kw)
