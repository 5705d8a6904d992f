"""Small builders for projection tests: records and the events a master emits."""

from __future__ import annotations

from typing import Any, NamedTuple

from events import types as ev
from events.types import ClusterName, Event
from federationd.projections.state import EMPTY, ProjectionState, fold
from federationd.sim import versions

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


def applied(
    key: str, content_hash: str, *, verb: str = "apply", t: float = 2000.0, generation: int = 0,
    cluster: str = "master",
) -> ev.ActuationApplied:
    return ev.ActuationApplied(
        cluster=ClusterName(cluster), key=key, time=t, verb=verb, content_hash=content_hash, latency=0.01,
        generation=generation,
    )


def workload(
    kind: str, name: str, *, ready: bool = True, desired: int = 1, generation: int = 1,
    observed_generation: int | None = None, namespace: str = "istio-system", cluster: str = "master",
    t: float = 2500.0,
) -> ev.WorkloadReadinessObserved:
    """A workload's readiness fact as the watcher reports it (by default: rolled out)."""
    return ev.WorkloadReadinessObserved(
        cluster=ClusterName(cluster), key=f"{kind}/{namespace}/{name}", time=t, kind=kind,
        namespace=namespace, name=name, ready=ready, desired=desired,
        available=desired if ready else 0, generation=generation,
        observed_generation=generation if observed_generation is None else observed_generation,
    )


def workloads_ready(objects: Any, *, cluster: str = "master", generation: int = 1) -> list[ev.WorkloadReadinessObserved]:
    """Ready facts for every Deployment/DaemonSet among desired ``objects`` (a dict of
    ``DesiredObject``): what the watchers report once a rollout completed."""
    return [
        workload(d.obj["kind"], d.obj["metadata"]["name"], namespace=d.obj["metadata"].get("namespace", ""),
                 cluster=cluster, generation=generation)
        for d in objects.values()
        if d.obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet")
    ]


SEED_000 = {
    "mtls": False,
    "includeIPRanges": "*",
    "excludeIPRanges": "",
    "autoInjectionNamespaces": ["default"],
    "controlPlaneSecurityEnabled": False,
}

#: Gateway federation (seed 001) is the mesh-expansion mode: meshNetworks only with it.
GATEWAY_FEDERATION = {**SEED_000, "meshExpansion": True}


def apis(cluster: str, release: str = "1.16", *, time: float = 1) -> ev.KubernetesApisObserved:
    """The discovery fact a cluster of Kubernetes ``release`` gives (the emulator's table
    of served versions)."""
    gvs = sorted(f"{g}/{v}" if g else v for g, vs in versions.served_group_versions(release).items() for v in vs)
    return ev.KubernetesApisObserved(
        cluster=ClusterName(cluster), key=f"Discovery//{cluster}", time=time,
        version=versions.parse(release).git_version, group_versions=tuple(gvs),
    )


def gateway(cluster: str, ip: str, *, namespace: str = "istio-system") -> ev.GatewayAddressesObserved:
    """A LoadBalancer ingress gateway of ``cluster`` at ``ip``."""
    return ev.GatewayAddressesObserved(
        cluster=ClusterName(cluster), key=f"Service/{namespace}/istio-ingressgateway", time=2, namespace=namespace,
        name="istio-ingressgateway", service_type="LoadBalancer", ips=(ip,), ports={"tls": 15443},
    )


def fleet(remotes: int) -> Log:
    """A gateway-federated master and ``remotes`` identified remotes, each with a gateway
    (``remote-i`` at 35.1.i.1) and an injected ``default`` namespace."""
    ns = "istio-system"
    log = Log()
    log.add(istio(GATEWAY_FEDERATION), namespace("default"), gateway("master", "35.0.0.1"))
    for i in range(remotes):
        r = f"remote-{i}"
        log.add(
            ev.RemoteIstioSpecChanged(
                cluster=MASTER, key=f"RemoteIstio/{ns}/{r}", time=1, namespace=ns, name=r, uid=r,
                generation=1, spec={"autoInjectionNamespaces": ["default"], "enabledServices": [{"name": "istio-pilot"}]},
            ),
            ev.KubeconfigObserved(cluster=MASTER, key=f"Secret/{ns}/{r}", time=1, remote=r, server="https://r", fingerprint="f"),
            ev.ClusterIdentityObserved(cluster=ClusterName(r), key="Namespace//kube-system", time=1, uid=f"uid-{r}"),
            gateway(r, f"35.1.{i}.1"),
            namespace("default", cluster=r),
        )
    return log
