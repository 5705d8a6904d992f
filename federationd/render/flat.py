"""Flat-network federation: a RemoteIstio's ``enabledServices`` as objects on the remote.

In the flat-network mode of the source documents (seed 000) every pod IP is routable
between clusters, and a remote cluster's sidecars and Istio components reach the
master's control-plane services (pilot, policy, telemetry, …) directly by pod IP. For
each ``enabledServices`` entry the remote gets, in the control-plane namespace:

* a **selector-less headless Service** of the entry's name (``clusterIP: None``, as the
  source operator rendered it), so the name resolves in the remote's DNS and Istio's
  registry sees the service, and
* an **Endpoints** object of the same name carrying the master's ready pod IPs of that
  service. With no selector, Kubernetes leaves the Endpoints to us.

Where the addresses come from, in order:

1. ``podIPs`` written in the entry are used as given (a user pinning addresses wins over
   what is observed; the source appended observed IPs to them, which made a pinned list
   impossible to narrow);
2. in *gateway mode* (the master is reachable only through its ingress gateway, the
   source's ``meshExpansion`` case) the master's gateway addresses;
3. otherwise ``observed[name]``: the ready addresses of the master's service of that name
   (its Endpoints, or pods matching ``labelSelector``, whichever the caller watched).

Ports are the entry's ``ports`` or else the observed named ports. The Endpoints port of
each Service port carries the same name (that is how Kubernetes and Istio pair them) and
the number the traffic must reach: the pod's port in flat mode (the entry's integer
``targetPort``, or the observed port), the gateway's listener — the service port itself —
in gateway mode. The source used a fixed placeholder port 65000 there, which Istio could
not pair with a named service port. (Observed ports are the pods' ports; in gateway mode
they double as service ports, which holds for Istio's control-plane services, whose
service and container ports are equal.)

An entry with no address yet still renders its Service and an Endpoints object **without
subsets**: the service is visible on the remote and resolves to nothing, instead of being
absent (which the source did) or keeping stale IPs of pods that are gone.

Pure: no I/O, clock or randomness. Output is deterministic: IPs sorted numerically,
duplicates removed, objects in the canonical render order.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from federationd.api import v1beta1
from federationd.render.objects import Obj, obj, sorted_objects

__all__ = [
    "COMPONENT",
    "EnabledServiceError",
    "ServiceAddresses",
    "render_enabled_services",
]

#: Component label value of every object rendered here (the actuator's inventory key).
COMPONENT = "enabled-services"

# A Service name must be a DNS-1035 label.
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 63


class EnabledServiceError(ValueError):
    """An ``enabledServices`` entry that cannot become valid objects. ``path`` names the
    field (``spec.enabledServices[1].podIPs[0]``); addresses are never echoed."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class ServiceAddresses(msgspec.Struct, frozen=True, kw_only=True):
    """What was observed of one master service: its ready pod IPs and its named ports
    (name → port; an unnamed port is keyed by its number, as
    ``events.types.PodAddressesObserved`` records it)."""

    ips: tuple[str, ...] = ()
    ports: dict[str, int] = {}


class _Port(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    protocol: str
    port: int
    target_port: int | str | None
    endpoint_port: int


def _ip_key(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(ip)
    return addr.version, int(addr)


def _addresses(ips: Sequence[str], *, path: str) -> list[str]:
    """Unique IPs in numeric order; blanks skipped (as the source did)."""
    out: set[str] = set()
    for i, raw in enumerate(ips):
        ip = raw.strip()
        if not ip:
            continue
        try:
            out.add(str(ipaddress.ip_address(ip)))
        except ValueError:
            raise EnabledServiceError(f"{path}[{i}]", "not an IP address") from None
    return sorted(out, key=_ip_key)


def _port_name(name: str, *, port: int, protocol: str, count: int) -> str:
    """The port's name; an unnamed port gets ``<protocol>-<port>`` when the Service has
    several (Kubernetes requires names then, and Istio 1.1/1.2 reads the protocol from
    the prefix). Observed unnamed ports are keyed by their number."""
    if name and name != str(port):
        return name
    return "" if count == 1 else f"{protocol.lower()}-{port}"


def _spec_ports(
    svc: v1beta1.IstioService, observed: ServiceAddresses, *, via_gateway: bool
) -> list[_Port]:
    out: list[_Port] = []
    for p in svc.ports:
        protocol = p.protocol or "TCP"
        if via_gateway:
            endpoint = p.port
        elif isinstance(p.target_port, int) and p.target_port > 0:
            endpoint = p.target_port
        elif isinstance(p.target_port, str) and p.target_port in observed.ports:
            endpoint = observed.ports[p.target_port]
        elif p.name and p.name in observed.ports:
            endpoint = observed.ports[p.name]
        else:
            endpoint = p.port
        out.append(
            _Port(
                name=_port_name(p.name, port=p.port, protocol=protocol, count=len(svc.ports)),
                protocol=protocol,
                port=p.port,
                target_port=p.target_port,
                endpoint_port=endpoint,
            )
        )
    return out


def _observed_ports(observed: ServiceAddresses) -> list[_Port]:
    items = sorted(observed.ports.items(), key=lambda kv: (kv[1], kv[0]))
    return [
        _Port(
            name=_port_name(name, port=port, protocol="TCP", count=len(items)),
            protocol="TCP",
            port=port,
            target_port=None,
            endpoint_port=port,
        )
        for name, port in items
    ]


def _service(name: str, namespace: str, ports: Sequence[_Port]) -> Obj:
    spec: dict[str, Any] = {"clusterIP": "None"}
    if ports:
        rendered = []
        for p in ports:
            sp: dict[str, Any] = {"port": p.port, "protocol": p.protocol}
            if p.name:
                sp["name"] = p.name
            if p.target_port is not None and p.target_port != 0 and p.target_port != "":
                sp["targetPort"] = p.target_port
            rendered.append(sp)
        spec["ports"] = rendered
    return obj("v1", "Service", name, component=COMPONENT, namespace=namespace, spec=spec)


def _endpoints(name: str, namespace: str, ips: Sequence[str], ports: Sequence[_Port]) -> Obj:
    if not ips:
        return obj("v1", "Endpoints", name, component=COMPONENT, namespace=namespace)
    subset: dict[str, Any] = {"addresses": [{"ip": ip} for ip in ips]}
    if ports:
        eps = []
        for p in ports:
            ep: dict[str, Any] = {"port": p.endpoint_port, "protocol": p.protocol}
            if p.name:
                ep["name"] = p.name
            eps.append(ep)
        subset["ports"] = eps
    return obj("v1", "Endpoints", name, component=COMPONENT, namespace=namespace, subsets=[subset])


def reads_pod_addresses(entry: v1beta1.IstioService, *, gateway_mode: bool) -> bool:
    """Whether an entry's Endpoints carry the observed pod addresses: not when its
    ``podIPs`` are pinned nor in gateway mode, where only the observed ports are read."""
    return not entry.pod_ips and not gateway_mode


def render_enabled_services(
    remote: v1beta1.RemoteIstioSpec,
    *,
    namespace: str,
    observed: Mapping[str, ServiceAddresses],
    gateway_addresses: Sequence[str] = (),
    gateway_mode: bool = False,
) -> list[Obj]:
    """The Service and Endpoints of every ``enabledServices`` entry of ``remote``, for
    the remote cluster's control-plane ``namespace``.

    ``observed`` maps an entry's name to what was observed of the master's service of
    that name; ``gateway_addresses`` are the master's ingress gateway IPs, used instead
    of pod IPs when ``gateway_mode`` is set. Raises :class:`EnabledServiceError` for an
    entry that cannot be rendered (bad name, duplicate name, a ``podIPs`` value that is
    not an IP address)."""
    out: list[Obj] = []
    seen: set[str] = set()
    gateway_ips = _addresses(gateway_addresses, path="gatewayAddresses") if gateway_mode else []
    for i, svc in enumerate(remote.enabled_services):
        path = f"spec.enabledServices[{i}]"
        if len(svc.name) > _MAX_NAME or not _DNS1035.match(svc.name):
            raise EnabledServiceError(f"{path}.name", "must be a DNS-1035 label (a Service name)")
        if svc.name in seen:
            raise EnabledServiceError(f"{path}.name", f"duplicate entry {svc.name!r}")
        seen.add(svc.name)
        seen_obs = observed.get(svc.name, ServiceAddresses())
        explicit = _addresses(svc.pod_ips, path=f"{path}.podIPs")
        # Pinned pod IPs are pods, even in gateway mode: they get the pods' ports.
        via_gateway = gateway_mode and not explicit
        if reads_pod_addresses(svc, gateway_mode=gateway_mode):
            ips = _addresses(seen_obs.ips, path=f"observed[{svc.name}].ips")
        else:
            ips = explicit or gateway_ips
        if svc.ports:
            ports = _spec_ports(svc, seen_obs, via_gateway=via_gateway)
        else:
            ports = _observed_ports(seen_obs)
        out.append(_service(svc.name, namespace, ports))
        out.append(_endpoints(svc.name, namespace, ips, ports))
    return sorted_objects(out)
