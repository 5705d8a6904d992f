"""Rules on a decoded spec that a CRD schema cannot state.

The schema (generated from :mod:`federationd.api.v1beta1`) refuses what one field alone
gets wrong — a CIDR, a duration, a quantity, an image, a bound — before anything is
stored. What is left needs two fields at once (``minReplicas`` against ``maxReplicas``,
a request against its limit, two ports of one Service) or the CR's name; these rules run
in the fold (``projections.validate``), so a spec that breaks one is refused with one
line in the CR's status and nothing of it is applied. Those a CRD can state (the
replica bounds, the certificate TTLs, unnamed ports, the RemoteIstio name's length) are
in the CRD as well — CEL rules and bounds in :mod:`federationd.api.crds` — so that a
server of 1.25 or later refuses them at ``kubectl apply``; they stay here for a CR stored
before the CRD had them, or on an older server, which ignores CEL rules.

Each problem is ``"<path>: <what is wrong>"``, quoting values that are numbers, names or
quantities — never a free-form string. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation

from federationd.api.v1beta1 import (
    GatewayConfiguration,
    IstioSpec,
    RemoteIstioSpec,
    ResourceRequirements,
    ServicePort,
)

#: A RemoteIstio's name is its cluster's network name, a label value on the remote's
#: workloads (``ISTIO_META_NETWORK``, ``topology.istio.io/network``): at most 63.
MAX_REMOTE_NAME = 63

_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def quantity(value: int | str) -> Decimal | None:
    """A Kubernetes quantity's value (the schema has checked its form)."""
    if isinstance(value, int):
        return Decimal(value)
    m = _QUANTITY.match(value)
    if m is None:
        return None
    try:
        return Decimal(m.group(1)) * _SUFFIX[m.group(2) or ""]
    except InvalidOperation:
        return None


def duration_seconds(value: str) -> float | None:
    """A Go duration in seconds (None for "" or a form the schema would have refused)."""
    if value == "0":
        return 0.0
    parts = _DURATION_PART.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _resources(path: str, r: ResourceRequirements | None) -> Iterator[str]:
    if r is None:
        return
    requests, limits = r.requests or {}, r.limits or {}
    for which, values in (("requests", requests), ("limits", limits)):
        for name, raw in sorted(values.items()):
            q = quantity(raw)
            if q is not None and q < 0:
                yield f"{path}.{which}.{name}: {raw} is negative"
    for name in sorted(set(requests) & set(limits)):
        req, lim = quantity(requests[name]), quantity(limits[name])
        if req is not None and lim is not None and req > lim:
            yield f"{path}: the {name} request {requests[name]} is more than its limit {limits[name]}"


def _scale(path: str, min_replicas: int, max_replicas: int) -> Iterator[str]:
    if min_replicas > max_replicas:
        yield f"{path}: minReplicas {min_replicas} is greater than maxReplicas {max_replicas}"


def _ports(path: str, ports: list[ServicePort]) -> Iterator[str]:
    seen: dict[tuple[int, str], int] = {}
    names: dict[str, int] = {}
    for i, p in enumerate(ports):
        key = (p.port, p.protocol or "TCP")
        if key in seen:
            yield f"{path}[{i}]: port {p.port}/{key[1]} is already ports[{seen[key]}]"
        seen.setdefault(key, i)
        if p.name and p.name in names:
            yield f"{path}[{i}]: port name {p.name} is already ports[{names[p.name]}]'s"
        names.setdefault(p.name, i)
        if len(ports) > 1 and not p.name:
            yield f"{path}[{i}]: a Service with more than one port needs a name on each"


def _gateway(path: str, g: GatewayConfiguration, default: ResourceRequirements | None) -> Iterator[str]:
    yield from _scale(path, g.min_replicas, g.max_replicas)
    if g.resources != default:
        yield from _resources(f"{path}.resources", g.resources)
    yield from _ports(f"{path}.ports", g.ports)


def _cert_ttl(path: str, ttl: str, max_ttl: str) -> Iterator[str]:
    t, m = duration_seconds(ttl), duration_seconds(max_ttl)
    if t is not None and m is not None and t > m:
        yield f"{path}: workloadCertTTL {ttl} is longer than maxWorkloadCertTTL {max_ttl}"


def istio_problems(s: IstioSpec) -> list[str]:
    """Problems of a decoded (defaulted) ``Istio`` spec, most basic first."""
    found = [
        *_resources("spec.defaultResources", s.default_resources),
        *_scale("spec.pilot", s.pilot.min_replicas, s.pilot.max_replicas),
        *_scale("spec.mixer", s.mixer.min_replicas, s.mixer.max_replicas),
        *_gateway("spec.gateways.ingress", s.gateways.ingress, s.default_resources),
        *_gateway("spec.gateways.egress", s.gateways.egress, s.default_resources),
        *_cert_ttl("spec.citadel", s.citadel.workload_cert_ttl, s.citadel.max_workload_cert_ttl),
        *_resources("spec.sidecarInjector.init.resources", s.sidecar_injector.init.resources),
    ]
    if s.proxy.resources != s.default_resources:
        found.extend(_resources("spec.proxy.resources", s.proxy.resources))
    for name, comp in (
        ("pilot", s.pilot), ("citadel", s.citadel), ("galley", s.galley), ("mixer", s.mixer),
        ("sidecarInjector", s.sidecar_injector), ("nodeAgent", s.node_agent),
        ("istioCoreDNS", s.istio_core_dns),
    ):
        if comp.resources != s.default_resources:
            found.extend(_resources(f"spec.{name}.resources", comp.resources))
    return _dedup(found)


def remote_problems(s: RemoteIstioSpec, *, name: str = "") -> list[str]:
    """Problems of a decoded ``RemoteIstio`` spec (and of its name)."""
    found: list[str] = []
    if len(name) > MAX_REMOTE_NAME:
        found.append(
            f"metadata.name: {len(name)} characters; a RemoteIstio's name is its cluster's network "
            f"name, used as a label value, at most {MAX_REMOTE_NAME}"
        )
    found.extend(_resources("spec.defaultResources", s.default_resources))
    found.extend(_cert_ttl("spec.citadel", s.citadel.workload_cert_ttl, s.citadel.max_workload_cert_ttl))
    for comp_name, comp in (("citadel", s.citadel), ("sidecarInjector", s.sidecar_injector)):
        if comp.resources != s.default_resources:
            found.extend(_resources(f"spec.{comp_name}.resources", comp.resources))
    if s.proxy.resources != s.default_resources:
        found.extend(_resources("spec.proxy.resources", s.proxy.resources))
    seen: dict[str, int] = {}
    for i, svc in enumerate(s.enabled_services):
        if svc.name in seen:
            found.append(f"spec.enabledServices[{i}]: service {svc.name} is already enabledServices[{seen[svc.name]}]")
        seen.setdefault(svc.name, i)
        found.extend(_ports(f"spec.enabledServices[{i}].ports", svc.ports))
    return _dedup(found)


def _dedup(found: list[str]) -> list[str]:
    return list(dict.fromkeys(found))
