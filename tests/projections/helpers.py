"""Small builders for projection tests: records and the events a master emits."""

from __future__ import annotations

from typing import Any, NamedTuple

from events import types as ev
from events.types import ClusterName, Event
from federationd.projections.state import EMPTY, ProjectionState, fold

MASTER = ClusterName("master")


class Rec(NamedTuple):
    seq: int
    event: Event


class Log:
    """An in-memory log: append events, fold them, keep the records."""

    def __init__(self) -> None:
        self.records: list[Rec] = []
        self.state: ProjectionState = EMPTY

    def add(self, *events: Event) -> int:
        for e in events:
            r = Rec(len(self.records) + 1, e)
            self.records.append(r)
            self.state = fold(self.state, r)
        return len(self.records)


def istio(
    spec: dict[str, Any],
    *,
    name: str = "istio",
    namespace: str = "istio-system",
    generation: int = 1,
    created: str = "2026-01-01T00:00:00Z",
    uid: str = "uid-1",
    t: float = 1000.0,
) -> ev.IstioSpecChanged:
    return ev.IstioSpecChanged(
        cluster=MASTER,
        key=f"Istio/{namespace}/{name}",
        time=t,
        namespace=namespace,
        name=name,
        uid=uid,
        generation=generation,
        spec=spec,
        creation_timestamp=created,
    )


def namespace(name: str, labels: dict[str, str] | None = None, *, cluster: str = "master") -> ev.NamespaceObserved:
    return ev.NamespaceObserved(
        cluster=ClusterName(cluster), key=f"Namespace//{name}", time=1.0, name=name, labels=labels or {}
    )


def applied(key: str, content_hash: str, *, verb: str = "apply", t: float = 2000.0) -> ev.ActuationApplied:
    return ev.ActuationApplied(
        cluster=MASTER, key=key, time=t, verb=verb, content_hash=content_hash, latency=0.01
    )


SEED_000 = {
    "mtls": False,
    "includeIPRanges": "*",
    "excludeIPRanges": "",
    "autoInjectionNamespaces": ["default"],
    "controlPlaneSecurityEnabled": False,
}
