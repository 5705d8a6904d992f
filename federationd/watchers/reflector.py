"""A reflector with client-go semantics: keep a local copy of one resource type in sync.

The loop, as in client-go's ``Reflector.ListAndWatch``:

1. **List** (paged) and remember the collection's resourceVersion. The first list emits
   every object; a later list (after 410 Gone or a failed list) emits only the
   *differences* against the store: ``on_delete`` for objects that disappeared,
   ``on_upsert`` for new objects and ones whose resourceVersion moved, nothing for the
   rest. ``synced`` is set after the first successful list.
2. **Watch** from that resourceVersion with ``allowWatchBookmarks=true`` and a jittered
   server-side ``timeoutSeconds``. Every event, bookmarks included, advances the
   resourceVersion, so a watch that ends normally (server timeout, dropped connection)
   resumes where it stopped, without a list.
3. **410 Gone** (an ``ERROR`` event or an HTTP 410) → back to 1.
4. **Inactivity watchdog**: no line (event or bookmark) within ``inactivity_timeout`` →
   the watch is presumed dead (a half-open connection, a partition) and restarted.
5. Failures back off (0.8 s, doubling to 30 s, jittered, reset after a healthy period); a 429
   waits the server's ``Retry-After`` when it gives one.

Every request has a timeout (the client's for lists; connect + per-read timeouts for
watches). Cancelling ``run()`` (or ``stop()``) closes the open response; nothing leaks.

Callbacks may be plain functions or coroutines. An exception from a callback is logged
and does not stop the reflector (the store already reflects the server).

**Memory.** A fleet daemon keeps a few dozen reflectors per cluster, so what each holds
is what the daemon's size is made of. As controller-runtime's cache transforms do, every
object goes through ``transform`` before it is stored and handed to the callbacks; the
default (``default_transform``) drops ``metadata.managedFields`` — server-side apply's
bookkeeping, often the largest part of an object, which nothing here reads — and keeps
of a Node only what the watchers read (labels and addresses), and a Namespace only who
wrote it. A reflector whose store is read only now and then (the converger's inventory of
what federationd applied: its CRDs, RBAC, ConfigMaps, ...; the fact watchers, whose facts
come from each event as it arrives) keeps it ``compact``: each object as its compact JSON
(msgspec), a fifth of the memory of the decoded object, decoded when read; ``summarise``
keeps beside it what its owner scans every object for. A watch waiting for its next
line holds no reference to the last one. (Every watch is also a TLS connection, to which asyncio gives a 256 KiB read
buffer; the daemon shares one per thread instead: ``clusters.tlsbuffers``; over HTTP/2
the watches of a cluster share one connection: ``clusters.http2``.)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import aiohttp
import msgspec

from federationd.clusters.backoff import Backoff, BackoffPolicy
from federationd.clusters.clock import REAL_CLOCK, Clock
from federationd.clusters.connection import ClusterClient, Query
from federationd.clusters.discovery import ResourceInfo
from federationd.clusters.errors import (
    ApiError,
    ApiGone,
    ApiNotFound,
    ApiThrottled,
    ApiUnavailable,
    error_for_status,
)
from federationd.clusters.listing import list_all

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Handler = Callable[[Obj], Awaitable[None] | None]
ObjectKey = tuple[str, str]


Transform = Callable[[Obj], Obj]

def strip_managed_fields(obj: Obj) -> Obj:
    """``obj`` without ``metadata.managedFields`` (a shallow copy when it had them)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    out = dict(obj)
    out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _node(obj: Obj) -> Obj:
    out = strip_managed_fields(obj)
    status = out.get("status")
    if isinstance(status, dict) and set(status) - {"addresses"}:
        # images, conditions, capacity, nodeInfo: kilobytes per node nobody reads
        out = dict(out)
        out["status"] = {"addresses": status["addresses"]} if "addresses" in status else {}
    return out


def _namespace(obj: Obj) -> Obj:
    """A Namespace keeps who wrote it (the managers' names, not their field sets): before
    deleting one, the converger checks that nobody but federationd ever did
    (``actuators.keep``)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    managers = sorted({str(e.get("manager") or "") for e in meta["managedFields"] or () if isinstance(e, dict)})
    out = dict(obj)
    out["metadata"] = {**meta, "managedFields": [{"manager": m} for m in managers]}
    return out


def default_transform(kind: str) -> Transform:
    """What a reflector of ``kind`` keeps by default (see the module docstring)."""
    if kind == "Node":
        return _node
    return _namespace if kind == "Namespace" else strip_managed_fields


def object_key(obj: Obj) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name", "")))


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


_ENCODER = msgspec.json.Encoder()


class CompactStore(MutableMapping[ObjectKey, Obj]):
    """Objects kept as compact JSON, decoded on every read (a new dict each time: a
    reader may keep or change it). ``token(key)`` is the stored bytes themselves, the
    same object until the key is written again, so an owner can remember what it
    already checked without decoding; ``summaries()`` gives each key's
    ``summarise(obj)`` as it was stored, for scans that must not decode every object."""

    def __init__(self, summarise: Callable[[Obj], Any] | None = None) -> None:
        self._raw: dict[ObjectKey, bytes] = {}
        self._summarise = summarise
        self._summary: dict[ObjectKey, Any] = {}

    def __getitem__(self, key: ObjectKey) -> Obj:
        obj: Obj = msgspec.json.decode(self._raw[key])
        return obj

    def __setitem__(self, key: ObjectKey, obj: Obj) -> None:
        self._raw[key] = _ENCODER.encode(obj)
        if self._summarise is not None:
            self._summary[key] = self._summarise(obj)

    def __delitem__(self, key: ObjectKey) -> None:
        del self._raw[key]
        self._summary.pop(key, None)

    def __iter__(self) -> Iterator[ObjectKey]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def token(self, key: ObjectKey) -> bytes | None:
        return self._raw.get(key)

    def summary(self, key: ObjectKey) -> Any:
        """``summarise(obj)`` of the stored ``key`` (None: absent or not summarised)."""
        return self._summary.get(key)

    def summaries(self) -> Iterator[tuple[ObjectKey, Any]]:
        return iter(self._summary.items())

    @property
    def summarise(self) -> Callable[[Obj], Any] | None:
        return self._summarise

    def fresh(self) -> CompactStore:
        """An empty store that summarises the same way."""
        return CompactStore(self._summarise)


class WatchExpired(Exception):
    """The inactivity watchdog fired: no event or bookmark in time."""


#: Seconds ``Reflector.stop`` waits before cancelling its task again.
STOP_RECANCEL = 0.5


class Reflector:
    """One (cluster, kind[, namespace, selectors]) kept in sync. ``await run()`` or
    ``start()``/``stop()``."""

    def __init__(
        self,
        client: ClusterClient,
        *,
        api_version: str,
        kind: str,
        on_upsert: Handler | None = None,
        on_delete: Handler | None = None,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        watch_timeout: float = 300.0,
        inactivity_timeout: float = 120.0,
        backoff: BackoffPolicy | None = None,
        clock: Clock = REAL_CLOCK,
        rand: Callable[[], float] = random.random,
        resource: ResourceInfo | None = None,
        transform: Transform | None = None,
        compact: bool = False,
        summarise: Callable[[Obj], Any] | None = None,
    ) -> None:
        self.client = client
        self._transform = transform or default_transform(kind)
        self._listeners: list[tuple[Handler | None, Handler | None]] = []
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.inactivity_timeout = inactivity_timeout
        self._on_upsert = on_upsert
        self._on_delete = on_delete
        self._clock = clock
        self._rand = rand
        self._backoff = Backoff(backoff or BackoffPolicy(), clock=clock.now, rand=rand)
        self._resource = resource
        self.store: MutableMapping[ObjectKey, Obj] = CompactStore(summarise) if compact else {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Counters for tests and /debug: completed lists, watches started, relists after 410, watchdog
        #: restarts, errors, callbacks that raised.
        self.stats = {"lists": 0, "watches": 0, "gone": 0, "watchdog": 0, "errors": 0,
                      "throttled": 0, "bookmarks": 0, "callback_errors": 0}
        #: The last error (redacted message), for status and /debug.
        self.last_error = ""
        self._waiting_for_kind = False
        #: the last error warned about: the same error again is not repeated
        self._last_warning = ""
        self.name = f"{client.name}/{kind}" + (f"/{namespace}" if namespace else "")

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name=f"reflector {self.name}")
        return self._task

    async def stop(self) -> None:
        """Cancel the reflector's task and wait for it to end. Only that task's own
        cancellation is absorbed: if the caller is cancelled meanwhile, the
        ``CancelledError`` propagates (a blanket ``suppress`` would swallow it and
        leave the caller running on as if nothing had happened)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # A cancellation can be lost on the way (a library that catches it; Python
        # 3.11's wait_for returning a result that arrived with it): ask again until the
        # task has ended, rather than wait for it forever.
        while not task.done():
            await asyncio.wait({task}, timeout=STOP_RECANCEL)
            if not task.done():
                task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if (current is not None and current.cancelling()) or not task.cancelled():
                raise

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        need_list = True
        empty_watches = 0
        while True:
            try:
                if need_list:
                    await self._list_and_sync()
                    need_list = False
                started = self._clock.now()
                lines = await self._watch()
                if lines == 0 and self._clock.now() - started < 1.0:
                    # Watches that keep ending at once with nothing in them (a misbehaving
                    # proxy) must not become a hot loop; a single one just resumes.
                    empty_watches += 1
                    if empty_watches > 1:
                        await self._clock.sleep(self._backoff.next())
                else:
                    empty_watches = 0
            except ApiGone:
                # Our resourceVersion is compacted away: relist at once. Gone again right
                # after a relist (a server compacting aggressively, an expired continue
                # token) backs off instead of looping.
                self.stats["gone"] += 1
                if need_list:
                    await self._clock.sleep(self._backoff.next())
                need_list = True
            except WatchExpired:
                self.stats["watchdog"] += 1
                log.info("%s: no watch event for %gs, restarting the watch",
                         self.name, self.inactivity_timeout)
            except ApiThrottled as e:
                self.stats["throttled"] += 1
                self.last_error = e.message
                # The server's Retry-After wins; without one (or "0", which would make a
                # hot loop) the normal backoff applies.
                delay = self._backoff.next()
                if e.retry_after:
                    delay = e.retry_after
                await self._clock.sleep(delay)
            except ApiError as e:
                if isinstance(e, ApiNotFound):
                    # The type is not served (yet, or any more): rediscover next time, so a
                    # CRD installed later is picked up.
                    self._resource = None
                    self.client.discovery.invalidate(self.api_version)
                self.stats["errors"] += 1
                self.last_error = e.message
                delay = self._backoff.next()
                if isinstance(e, ApiNotFound):
                    # Expected while federationd itself is about to install the CRD (Istio's
                    # own kinds on a fresh cluster): say so once, not as a warning per retry.
                    level = logging.DEBUG if self._waiting_for_kind else logging.INFO
                    self._waiting_for_kind = True
                    log.log(level, "%s: %s is not served yet (waiting for its CRD); retrying in %.1fs",
                            self.name, self.api_version, delay)
                elif isinstance(e, ApiUnavailable) or e.status == 401 or e.message == self._last_warning:
                    # The cluster not answering (or refusing the credential) is the
                    # cluster's health to report, once per state change
                    # (``clusters.health``), not every kind's per retry.
                    log.debug("%s: %s; retrying in %.1fs", self.name, e.message, delay)
                else:
                    self._last_warning = e.message
                    log.warning("%s: %s; retrying in %.1fs", self.name, e.message, delay)
                await self._clock.sleep(delay)

    async def _resolve(self) -> ResourceInfo:
        if self._resource is None:
            self._resource = await self.client.discovery.resolve(self.api_version, self.kind)
        return self._resource

    async def _list_and_sync(self) -> None:
        info = await self._resolve()
        items, rv = await list_all(
            self.client, info, namespace=self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, page_size=self.page_size,
            what=f"list {self.kind} on {self.client.name}")
        self.stats["lists"] += 1
        tf = self._transform
        listed = [(object_key(o), tf(o)) for o in items]
        old = self.store
        fresh: MutableMapping[ObjectKey, Obj] = old.fresh() if isinstance(old, CompactStore) else {}
        for key, obj in listed:
            fresh[key] = obj
        self.store = fresh
        self.resource_version = rv
        for key in [k for k in old if k not in fresh]:
            await self._emit(self._on_delete, old[key], delete=True)
        for key, obj in listed:
            prev = old.get(key)
            if prev is None or _rv(prev) != _rv(obj):
                await self._emit(self._on_upsert, obj, delete=False)
        self.last_error = ""
        if self._waiting_for_kind:
            self._waiting_for_kind = False
            log.info("%s: %s is served now; watching", self.name, self.api_version)
        self.synced.set()
        self._last_warning = ""

    async def _watch(self) -> int:
        """Watch until the stream ends; returns how many lines it delivered."""
        info = await self._resolve()
        # client-go spreads watch lifetimes over [timeout, 2*timeout) so watches of many
        # reflectors do not all end together.
        server_timeout = max(1, int(self.watch_timeout * (1.0 + self._rand())))
        query: Query = {
            "watch": True,
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": server_timeout,
            "labelSelector": self.label_selector,
            "fieldSelector": self.field_selector,
        }
        self.stats["watches"] += 1
        lines = 0
        path = info.path(self.namespace if info.namespaced else None)
        async with self.client.stream(
            path, query=query, read_timeout=self.inactivity_timeout + 5.0,
            what=f"watch {self.kind} on {self.client.name}",
        ) as resp:
            while True:
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for returns a
                    # line that arrives as the task is cancelled and drops the
                    # cancellation, and the reflector then never stops
                    async with asyncio.timeout(self.inactivity_timeout):
                        line = await resp.readline()
                except TimeoutError:
                    raise WatchExpired(self.name) from None
                except (OSError, ValueError) as e:
                    # A dropped connection mid-stream: resume from our resourceVersion.
                    log.info("%s: watch stream ended (%s)", self.name, type(e).__name__)
                    return lines
                except aiohttp.ClientError as e:
                    log.info("%s: watch stream ended (%s)", self.name, type(e).__name__)
                    return lines
                if not line:
                    return lines  # the server closed the watch (timeoutSeconds): resume
                line = line.strip()
                if not line:
                    continue
                lines += 1
                await self._handle_line(line)
                # not kept while the watch waits for its next line: a thousand idle
                # watches would each hold their last event's bytes
                line = b""

    async def _handle_line(self, line: bytes) -> None:
        try:
            event = msgspec.json.decode(line)
        except ValueError:
            raise ApiError(f"watch {self.kind} on {self.client.name}: malformed event") from None
        etype = event.get("type")
        obj = event.get("object") or {}
        if etype == "ERROR":
            code = int(obj.get("code") or 500)
            raise error_for_status(code, obj, what=f"watch {self.kind} on {self.client.name}")
        rv = _rv(obj)
        if etype == "BOOKMARK":
            self.stats["bookmarks"] += 1
            if rv:
                self.resource_version = rv
            return
        obj.setdefault("apiVersion", self.api_version)
        obj.setdefault("kind", self.kind)
        obj = self._transform(obj)
        key = object_key(obj)
        if rv:
            self.resource_version = rv
        if etype in ("ADDED", "MODIFIED"):
            self.store[key] = obj
            await self._emit(self._on_upsert, obj, delete=False)
        elif etype == "DELETED":
            self.store.pop(key, None)
            await self._emit(self._on_delete, obj, delete=True)

    def token(self, key: ObjectKey) -> object | None:
        """What stands for the stored version of ``key`` (None: absent), the same object
        until the key is written again: a compact store's bytes, else the object."""
        store = self.store
        return store.token(key) if isinstance(store, CompactStore) else store.get(key)

    def add_listener(self, *, on_upsert: Handler | None = None, on_delete: Handler | None = None) -> None:
        """More callbacks on the same store and watch: another consumer of the same
        (cluster, kind, selectors) shares this reflector instead of opening its own
        connection and keeping its own copy of every object."""
        self._listeners.append((on_upsert, on_delete))

    async def _emit(self, handler: Handler | None, obj: Obj, *, delete: bool) -> None:
        await self._call(handler, obj)
        for up, down in self._listeners:
            await self._call(down if delete else up, obj)

    async def _call(self, handler: Handler | None, obj: Obj) -> None:
        if handler is None:
            return
        try:
            result = handler(obj)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("%s: handler failed for %s/%s", self.name, *object_key(obj))
