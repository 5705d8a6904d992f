"""Memoised rendering: a component is rebuilt only when what it read has changed.

At fleet scale most of a change's work used to be rendering every component of every
cluster again, although one gateway address changes two things: the ``istio`` ConfigMap
each cluster carries (its ``meshNetworks``) and pilot's pod-template hash on the master.
``RenderCache`` keeps, per cluster and component, the objects last built and the inputs
they were built from: the spec (the same object while the CR is unchanged, compared by
identity first), the namespace, the profile, and **the facts fields the builder actually
read** — recorded while it runs through a read-tracking view of ``RenderFacts``. No
component declares its dependencies, so one cannot be forgotten: a builder that starts
reading ``mesh_networks`` is re-rendered on gateway changes from then on.

A component built for one cluster is another's too when it read the same: the latest
builds of each (role, component) are kept, one per effective spec, and a cluster whose
own entry misses takes the objects of one whose profile, spec (the same object: equal
effective specs of remotes are made one, ``effective_spec``), namespace and every facts
field it read are the same for this cluster. A fleet's remotes mostly differ in facts
no component reads, so a new gateway's ``meshNetworks`` ConfigMap is built once for all
of them, and so are the common components of a hundred remotes joining at once.

Cached objects are shared between successive derivations and between clusters, and must
be treated as immutable (the actuator copies what it sends). Eviction is explicit: the
caller says which clusters still exist (``retain``). Pure, like render: the cache changes how often
a builder runs, never what it returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, cast

from federationd.api.v1beta1 import IstioSpec, RemoteIstioSpec
from federationd.render.objects import Obj, RenderFacts

__all__ = ["RenderCache", "TrackedFacts"]


class TrackedFacts:
    """A read-only view of ``RenderFacts`` that records every field read through it."""

    __slots__ = ("_facts", "read")

    def __init__(self, facts: RenderFacts) -> None:
        self._facts = facts
        self.read: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._facts, name)
        self.read[name] = value
        return value


def _ref(o: Obj) -> tuple[str, str, str, str]:
    meta = o.get("metadata") or {}
    return (str(o.get("apiVersion")), str(o.get("kind")), str(meta.get("namespace", "")), str(meta.get("name")))


def _same(a: Any, b: Any) -> bool:
    return a is b or bool(a == b)


class _Entry:
    __slots__ = ("namespace", "objs", "profile", "reads", "spec")

    def __init__(self, profile: object, spec: IstioSpec, namespace: str, reads: dict[str, Any], objs: list[Obj]) -> None:
        self.profile = profile
        self.spec = spec
        self.namespace = namespace
        self.reads = reads
        self.objs = objs


def _hit(e: _Entry, ctx: Any) -> bool:
    """Whether ``e`` is the build for ``ctx``: the same profile, namespace and spec, and
    the same value of every facts field the builder read."""
    facts = ctx.facts
    return (
        e.profile is ctx.profile
        and e.namespace == ctx.namespace
        and _same(e.spec, ctx.spec)
        and all(_same(getattr(facts, f), v) for f, v in e.reads.items())
    )


class RenderCache:
    """Per (cluster, role, component): the last build and what it read."""

    #: How many distinct effective specs ``effective_spec`` keeps to make equal ones one
    #: object (a fleet's remotes mostly share a few RemoteIstio settings).
    DISTINCT_SPECS = 8
    RECORDED = 2_048

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        #: (role, component) → its latest builds (one per effective spec, the most recent
        #: first), whichever cluster each was for
        self._latest: dict[tuple[str, str], list[_Entry]] = {}
        self._effective: dict[str, tuple[IstioSpec, RemoteIstioSpec, IstioSpec]] = {}
        self._distinct: list[IstioSpec] = []
        #: The latest builds (builder runs): ``(cluster, component, objects)``, what tests
        #: count (bounded: a daemon renders for as long as it runs).
        self.rendered: deque[tuple[str, str, int]] = deque(maxlen=self.RECORDED)
        #: The latest entries filled with another cluster's build of the same inputs.
        self.shared: deque[tuple[str, str]] = deque(maxlen=self.RECORDED)

    def build(
        self,
        name: str,
        builder: Callable[[Any], list[Obj]],
        ctx: Any,
        *,
        make_ctx: Callable[[Any], Any],
    ) -> list[Obj]:
        """``builder(ctx)``, or the objects it returned last time for the same inputs.
        ``make_ctx(facts)`` gives ``ctx`` with ``facts`` swapped (for tracking)."""
        facts: RenderFacts = ctx.facts
        key = (facts.cluster, facts.role, name)
        e = self._entries.get(key)
        if e is not None and _hit(e, ctx):
            if e.spec is not ctx.spec:
                e.spec = ctx.spec  # identity next time
            return e.objs
        latest = self._latest.setdefault((facts.role, name), [])
        other = next(
            (
                o for o in latest
                if o.profile is ctx.profile
                and o.spec is ctx.spec
                and o.namespace == ctx.namespace
                and all(_same(getattr(facts, f), v) for f, v in o.reads.items())
            ),
            None,
        )
        if other is not None:
            objs, reads = other.objs, other.reads
            self.shared.append((facts.cluster, name))
        else:
            tracked = TrackedFacts(facts)
            objs, reads = builder(make_ctx(cast(RenderFacts, tracked))), tracked.read
            self.rendered.append((facts.cluster, name, len(objs)))
        if e is not None:
            # A component is rebuilt as a whole; of its objects, those equal to their
            # previous version stay that very object (hashed once per version).
            before = {_ref(o): o for o in e.objs}
            objs = [o if (p := before.get(_ref(o))) is None or p != o else p for o in objs]
        entry = _Entry(ctx.profile, ctx.spec, ctx.namespace, reads, objs)
        self._entries[key] = entry
        # the latest build per effective spec, the most recent first
        latest[:] = [entry, *(o for o in latest if o.spec is not ctx.spec)][: self.DISTINCT_SPECS]
        return objs

    def hits(self, ctx: Any, names: Iterable[str]) -> bool:
        """Whether each of the components ``names`` would return its last build for
        ``ctx``'s cluster and role: built before, with the same profile, spec and
        namespace, and the same value of every facts field it read. What lets one
        component be built alone when only what it reads changed."""
        facts: RenderFacts = ctx.facts
        for name in names:
            e = self._entries.get((facts.cluster, facts.role, name))
            if e is None or not _hit(e, ctx):
                return False
        return True

    def effective_spec(
        self, cluster: str, spec: IstioSpec, remote: RemoteIstioSpec, fold: Callable[[IstioSpec, RemoteIstioSpec], IstioSpec]
    ) -> IstioSpec:
        """``fold(spec, remote)``, the same object while both inputs are (so component
        entries hit on identity), and the same object as another cluster's equal one (so
        that cluster's builds serve this one)."""
        e = self._effective.get(cluster)
        if e is not None and e[0] is spec and e[1] is remote:
            return e[2]
        out = fold(spec, remote)
        if e is not None and out == e[2]:
            out = e[2]
        else:
            for i, d in enumerate(self._distinct):
                if d == out:
                    out = d
                    del self._distinct[i]
                    break
            self._distinct.append(out)
            del self._distinct[: -self.DISTINCT_SPECS]
        self._effective[cluster] = (spec, remote, out)
        return out

    def retain(self, clusters: Iterable[str]) -> None:
        """Forget every cluster not in ``clusters`` (it left the mesh)."""
        keep = set(clusters)
        for k in [k for k in self._entries if k[0] not in keep]:
            del self._entries[k]
        live = {id(e) for e in self._entries.values()}
        for latest in self._latest.values():
            latest[:] = [e for e in latest if id(e) in live]
        for c in [c for c in self._effective if c not in keep]:
            del self._effective[c]
