"""The ``istio.banzaicloud.io/v1beta1`` API: the ``Istio`` and ``RemoteIstio`` resources.

federationd keeps the source operator's API (release-1.2 era, Istio 1.1 / 1.2) so that
users' existing manifests apply unchanged: every field name, type, enum and pattern here
is the source's, camelCase on the wire. These msgspec Structs are the single source of
truth for the API: :mod:`federationd.api.crds` derives the CRDs' ``openAPIV3Schema`` from
them, and :func:`istio_spec` / :func:`remote_istio_spec` decode a CR's ``spec`` with them.

Shape, and why:

* Structs are frozen: a decoded spec lives in projection state and is shared.
* A Python default is the source's default whenever it is a constant. Defaults that
  depend on something else — the Istio version (images), the CR's namespace (zipkin
  address, CNI ``excludeNamespaces``) or another field (``resources`` falls back to
  ``defaultResources``; proxy resources depend on whether ``defaultResources`` is set) —
  are filled by :func:`istio_spec`, so callers of it never see an unset value except
  where the source itself had "unset" as a meaningful state (``*bool`` without default,
  e.g. ``citadel.healthCheck``, ``localityLB.enabled``).
* Like the source (Go zero values plus ``omitempty``), an empty string or a zero replica
  count in a CR means "use the default".
* Kubernetes sub-types that federationd only passes through (``affinity``, tolerations,
  label selectors) are plain dicts; the rendered objects are validated against the
  upstream Kubernetes schemas downstream. ``ResourceRequirements`` and ``ServicePort`` are
  typed because federationd reads them.
* Unknown fields are ignored, as the API server prunes them with a structural schema.

Deliberate differences from the source, documented in the CRD too:

* ``version`` is optional and defaults to :data:`DEFAULT_VERSION`, the newest supported
  1.2 release: the seed-000 sample CR has no ``version`` and must apply unchanged. Its
  pattern accepts any ``major.minor…`` string so that an unsupported version reaches
  federationd and is reported in status ("intended Istio version is unsupported by this
  version of the operator") instead of being refused by the API server without a trace.
  Which versions are supported is the profiles' concern (``render.UnsupportedVersion``).
* ``mtls`` is optional (default false) rather than required.
* With ``defaultResources`` set, proxy resources default to it (the source used a fixed
  10m CPU request there, which ignored the user's own default).

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import Meta, field
from msgspec.structs import replace

__all__ = [
    "DEFAULT_IMAGE_HUB",
    "DEFAULT_IMAGE_TAGS",
    "DEFAULT_VERSION",
    "CitadelConfiguration",
    "Condition",
    "ConfigState",
    "GalleyConfiguration",
    "GatewayConfiguration",
    "GatewaysConfiguration",
    "IstioCoreDNSConfiguration",
    "IstioService",
    "IstioSpec",
    "IstioStatus",
    "LocalityLBConfiguration",
    "LocalityLBDistribute",
    "LocalityLBFailover",
    "MixerConfiguration",
    "NodeAgentConfiguration",
    "PilotConfiguration",
    "ProxyConfiguration",
    "RemoteIstioSpec",
    "RemoteIstioStatus",
    "ResourceRequirements",
    "ServicePort",
    "SidecarInjectorConfiguration",
    "SpecError",
    "Status",
    "TracingConfiguration",
    "image_tag_for",
    "istio_spec",
    "remote_istio_spec",
    "status",
    "to_builtins",
    "version_family",
]

GROUP: Final = "istio.banzaicloud.io"
VERSION: Final = "v1beta1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

#: The version a CR without ``spec.version`` gets: the newest supported 1.2 release.
DEFAULT_VERSION: Final = "1.2.8"
DEFAULT_IMAGE_HUB: Final = "docker.io/istio"
#: Default image tag per version family ("major.minor"); other families get the newest.
DEFAULT_IMAGE_TAGS: Final[Mapping[str, str]] = {"1.1": "1.1.14", "1.2": "1.2.8"}
_NEWEST_FAMILY: Final = "1.2"

DEFAULT_CORE_DNS_IMAGE: Final = "coredns/coredns:1.1.2"
DEFAULT_CORE_DNS_PLUGIN_IMAGE: Final = f"{DEFAULT_IMAGE_HUB}/coredns-plugin:0.2-istio-1.1"


class SpecError(ValueError):
    """A CR spec that cannot be decoded. ``path`` names the field (``spec.pilot.replicaCount``).
    The message quotes a value only for an enum field; free-form strings (a spec may hold
    a tracer access token) are never echoed, so the message is safe for status and logs."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# --- constrained scalar types ---------------------------------------------------------

# The source's kubebuilder patterns, verbatim.
HOST_PORT_PATTERN: Final = r"^[^\:]+:[0-9]{1,5}$"
DNS_REFRESH_RATE_PATTERN: Final = r"^[0-9]{1,5}s$"
# Any "major.minor…" version; support is decided by the profiles, not the schema.
VERSION_PATTERN: Final = r"^[0-9]+\.[0-9]+"

# What a schema can say about a value is said here, so the API server (``kubectl apply``)
# refuses it at once; each pattern accepts "" (unset means the default, as in the source).
_OCTET: Final = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4: Final = rf"{_OCTET}(\.{_OCTET}){{3}}"
_IPV6: Final = r"[0-9a-fA-F.]*:[0-9a-fA-F:.]*"
_CIDR: Final = rf"({_IPV4}(/(3[0-2]|[12][0-9]|[0-9]))?|{_IPV6}(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)"
#: "*", or comma-separated IPv4/IPv6 CIDRs (istio-iptables' -i / -x).
CIDR_LIST_PATTERN: Final = rf"^(\*|{_CIDR}( *, *{_CIDR})*)?$"
IP_PATTERN: Final = rf"^({_IPV4}|{_IPV6})?$"
#: A Go duration (citadel's --workload-cert-ttl / --max-workload-cert-ttl).
DURATION_PATTERN: Final = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)?$"
#: A Kubernetes quantity: the pattern ``resource.Quantity`` carries in every CRD.
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
#: A container image reference (registry host, lowercase path, tag, digest).
_PATH_PART: Final = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
IMAGE_PATTERN: Final = (
    rf"^(([a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*(:[0-9]+)?/)?{_PATH_PART}(/{_PATH_PART})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?)?$"
)
#: An RFC 1123 label (namespace and Service names, port names).
DNS_LABEL_PATTERN: Final = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"
#: An RFC 1123 subdomain (Secret names).
DNS_SUBDOMAIN_PATTERN: Final = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"

#: What each pattern means, for a message a user can act on.
PATTERN_HELP: Final = {
    HOST_PORT_PATTERN: "is not host:port",
    DNS_REFRESH_RATE_PATTERN: "is not a number of seconds such as 300s",
    VERSION_PATTERN: "is not an Istio version such as 1.2.8",
    CIDR_LIST_PATTERN: 'is not "*" or a comma-separated list of CIDRs such as 10.0.0.0/8,172.16.0.0/12',
    IP_PATTERN: "is not an IP address",
    DURATION_PATTERN: "is not a duration such as 2160h, 90m or 1h30m",
    QUANTITY_PATTERN: "is not a Kubernetes quantity such as 100m, 2, 128Mi or 1Gi",
    IMAGE_PATTERN: "is not a container image reference such as docker.io/istio/pilot:1.2.8",
    DNS_LABEL_PATTERN: "is not a lowercase RFC 1123 label (a-z, 0-9 and '-')",
    DNS_SUBDOMAIN_PATTERN: "is not a lowercase RFC 1123 name (a-z, 0-9, '-' and '.')",
}

Replicas = Annotated[int, Meta(ge=0, le=2**31 - 1)]
Port = Annotated[int, Meta(ge=0, le=65535)]
#: A Service's port: 0 is not a port (it is required, so it has no "unset" value).
ServicePortNumber = Annotated[int, Meta(ge=1, le=65535)]
HostPort = Annotated[str, Meta(pattern=HOST_PORT_PATTERN)]
CidrList = Annotated[str, Meta(pattern=CIDR_LIST_PATTERN)]
IP = Annotated[str, Meta(pattern=IP_PATTERN)]
Duration = Annotated[str, Meta(pattern=DURATION_PATTERN)]
Image = Annotated[str, Meta(pattern=IMAGE_PATTERN, max_length=512)]
DnsLabel = Annotated[str, Meta(pattern=DNS_LABEL_PATTERN, max_length=63)]
DnsSubdomain = Annotated[str, Meta(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]
#: A Kubernetes quantity ("100m", "128Mi", 2): int-or-string on the wire.
Quantity = int | Annotated[str, Meta(pattern=QUANTITY_PATTERN)]
#: Plain pass-through Kubernetes objects (Affinity, Toleration, LabelSelector).
KubeObject = dict[str, Any]

ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
PullPolicy = Literal["Always", "Never", "IfNotPresent"]
OutboundMode = Literal["ALLOW_ANY", "REGISTRY_ONLY"]
ProxyLogLevel = Literal["trace", "debug", "info", "warning", "error", "critical", "off"]
TracerType = Literal["zipkin", "lightstep", "datadog"]
Protocol = Literal["TCP", "UDP", "SCTP"]


class _Struct(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Base of every API struct: frozen, keyword-only, camelCase on the wire. Encoding
    omits fields equal to their default, as Go's ``omitempty`` did: an unset ``""``
    never meets a field's pattern, and the wire form stays what a user would write."""


# --- Kubernetes sub-types -------------------------------------------------------------


class ResourceRequirements(_Struct, frozen=True, kw_only=True):
    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class ServicePort(_Struct, frozen=True, kw_only=True):
    name: DnsLabel = ""
    protocol: Protocol | None = None
    port: ServicePortNumber
    target_port: int | str | None = None
    node_port: Port | None = None


def _resources(
    requests: dict[str, Quantity], limits: dict[str, Quantity] | None = None
) -> ResourceRequirements:
    return ResourceRequirements(requests=requests, limits=limits)


DEFAULT_RESOURCES: Final = _resources({"cpu": "10m"})
DEFAULT_PROXY_RESOURCES: Final = _resources(
    {"cpu": "100m", "memory": "128Mi"}, {"cpu": "2000m", "memory": "1024Mi"}
)
DEFAULT_INIT_RESOURCES: Final = _resources(
    {"cpu": "10m", "memory": "10Mi"}, {"cpu": "100m", "memory": "50Mi"}
)
DEFAULT_INGRESS_PORTS: Final = (
    ServicePort(name="status-port", protocol="TCP", port=15020, target_port=15020, node_port=31460),
    ServicePort(name="http2", protocol="TCP", port=80, target_port=80, node_port=31380),
    ServicePort(name="https", protocol="TCP", port=443, target_port=443, node_port=31390),
    ServicePort(name="tls", protocol="TCP", port=15443, target_port=15443, node_port=31450),
)
DEFAULT_EGRESS_PORTS: Final = (
    ServicePort(name="http2", protocol="TCP", port=80, target_port=80),
    ServicePort(name="https", protocol="TCP", port=443, target_port=443),
    ServicePort(name="tls", protocol="TCP", port=15443, target_port=15443),
)


# --- components -------------------------------------------------------------------------


class _Scheduling(_Struct, frozen=True, kw_only=True):
    """The sizing and scheduling knobs every component carries."""

    resources: ResourceRequirements | None = None
    node_selector: dict[str, str] = {}
    affinity: KubeObject | None = None
    tolerations: list[KubeObject] = []


class SDSConfiguration(_Struct, frozen=True, kw_only=True):
    enabled: bool = False
    uds_path: str = ""
    use_trustworthy_jwt: bool = False
    use_normal_jwt: bool = False
    custom_token_directory: str = ""


class PilotConfiguration(_Scheduling, frozen=True, kw_only=True):
    enabled: bool = True
    image: Image = ""
    sidecar: bool = True
    replica_count: Replicas = 1
    min_replicas: Replicas = 1
    max_replicas: Replicas = 5
    trace_sampling: Annotated[float, Meta(ge=0, le=100)] = 1.0


class CitadelConfiguration(_Scheduling, frozen=True, kw_only=True):
    enabled: bool = True
    image: Image = ""
    #: The source's samples (and seed 001's RemoteIstios) set it; citadel keeps one
    #: replica unless told otherwise (it is the mesh's CA).
    replica_count: Replicas = 1
    ca_secret_name: DnsSubdomain = field(default="", name="caSecretName")
    health_check: bool | None = None
    workload_cert_ttl: Duration = field(default="", name="workloadCertTTL")
    max_workload_cert_ttl: Duration = field(default="", name="maxWorkloadCertTTL")


class GalleyConfiguration(_Scheduling, frozen=True, kw_only=True):
    enabled: bool = True
    image: Image = ""
    replica_count: Replicas = 1


class GatewaySDSConfiguration(_Struct, frozen=True, kw_only=True):
    enabled: bool = False
    image: Image = ""
    resources: ResourceRequirements | None = None


class GatewayConfiguration(_Scheduling, frozen=True, kw_only=True):
    enabled: bool = True
    replica_count: Replicas = 1
    min_replicas: Replicas = 1
    max_replicas: Replicas = 5
    #: Unset means the gateway's own default (ingress LoadBalancer, egress ClusterIP).
    service_type: ServiceType | None = None
    load_balancer_ip: IP = field(default="", name="loadBalancerIP")
    service_annotations: dict[str, str] = {}
    service_labels: dict[str, str] = {}
    sds: GatewaySDSConfiguration = GatewaySDSConfiguration()
    #: Empty means the gateway's default ports.
    ports: list[ServicePort] = []
    application_ports: str = ""
    requested_network_view: str = ""


class K8sIngressConfiguration(_Struct, frozen=True, kw_only=True):
    enabled: bool = False


class GatewaysConfiguration(_Struct, frozen=True, kw_only=True):
    enabled: bool = True
    ingress: GatewayConfiguration = GatewayConfiguration()
    egress: GatewayConfiguration = GatewayConfiguration()
    k8singress: K8sIngressConfiguration = K8sIngressConfiguration()


class MixerConfiguration(_Scheduling, frozen=True, kw_only=True):
    enabled: bool = True
    image: Image = ""
    replica_count: Replicas = 1
    min_replicas: Replicas = 1
    max_replicas: Replicas = 5
    multi_cluster_support: bool | None = None


class InitCNIConfiguration(_Struct, frozen=True, kw_only=True):
    enabled: bool = False
    image: Image = ""
    bin_dir: str = "/opt/cni/bin"
    conf_dir: str = "/etc/cni/net.d"
    #: Unset (``None``) means the CR's namespace; an explicit ``[]`` excludes nothing.
    exclude_namespaces: list[str] | None = None
    log_level: str = "info"
    affinity: KubeObject | None = None


class SidecarInjectorInitConfiguration(_Struct, frozen=True, kw_only=True):
    resources: ResourceRequirements | None = None


class SidecarInjectorConfiguration(_Scheduling, frozen=True, kw_only=True):
    enabled: bool = True
    image: Image = ""
    replica_count: Replicas = 1
    init: SidecarInjectorInitConfiguration = SidecarInjectorInitConfiguration()
    init_cni_configuration: InitCNIConfiguration = field(
        default=InitCNIConfiguration(), name="initCNIConfiguration"
    )
    rewrite_app_http_probe: bool = field(default=False, name="rewriteAppHTTPProbe")
    auto_injection_policy_enabled: bool = True
    enable_namespaces_by_default: bool | None = None
    never_inject_selector: list[KubeObject] = []
    always_inject_selector: list[KubeObject] = []


class NodeAgentConfiguration(_Scheduling, frozen=True, kw_only=True):
    enabled: bool = False
    image: Image = ""


class ProxyConfiguration(_Struct, frozen=True, kw_only=True):
    image: Image = ""
    privileged: bool = False
    enable_core_dump: bool = False
    log_level: ProxyLogLevel = "warning"
    component_log_level: str = "misc:error"
    dns_refresh_rate: Annotated[str, Meta(pattern=DNS_REFRESH_RATE_PATTERN)] = field(
        default="300s", name="dnsRefreshRate"
    )
    resources: ResourceRequirements | None = None


class ProxyInitConfiguration(_Struct, frozen=True, kw_only=True):
    image: Image = ""


class PDBConfiguration(_Struct, frozen=True, kw_only=True):
    enabled: bool = False


class OutboundTrafficPolicyConfiguration(_Struct, frozen=True, kw_only=True):
    mode: OutboundMode = "ALLOW_ANY"


class ZipkinConfiguration(_Struct, frozen=True, kw_only=True):
    #: Unset means ``zipkin.<namespace>:9411``.
    address: HostPort = ""


class LightstepConfiguration(_Struct, frozen=True, kw_only=True):
    address: HostPort = ""
    access_token: str = ""
    secure: bool = False
    cacert_path: str = ""


class DatadogConfiguration(_Struct, frozen=True, kw_only=True):
    address: HostPort = "$(HOST_IP):8126"


class TracingConfiguration(_Struct, frozen=True, kw_only=True):
    enabled: bool = True
    tracer: TracerType = "zipkin"
    zipkin: ZipkinConfiguration = ZipkinConfiguration()
    lightstep: LightstepConfiguration = LightstepConfiguration()
    datadog: DatadogConfiguration = DatadogConfiguration()


class IstioCoreDNSConfiguration(_Scheduling, frozen=True, kw_only=True):
    enabled: bool = False
    image: Image = ""
    plugin_image: Image = ""
    replica_count: Replicas = 1


class LocalityLBDistribute(_Struct, frozen=True, kw_only=True):
    """Traffic originating in locality "from" ("region/zone/subzone", a trailing "*"
    allowed) is spread over the "to" localities by weight; one rule's weights sum to 100."""

    from_: str = field(default="", name="from")
    to: dict[str, Annotated[int, Meta(ge=0, le=2**32 - 1)]] = {}


class LocalityLBFailover(_Struct, frozen=True, kw_only=True):
    """When region "from" has no healthy endpoint, traffic fails over to region "to"."""

    from_: str = field(default="", name="from")
    to: str = ""


class LocalityLBConfiguration(_Struct, frozen=True, kw_only=True):
    enabled: bool | None = None
    distribute: list[LocalityLBDistribute] = []
    failover: list[LocalityLBFailover] = []


# --- Istio --------------------------------------------------------------------------------


class IstioSpec(_Struct, frozen=True, kw_only=True):
    """The desired Istio control plane (versions 1.1 and 1.2) of the mesh."""

    version: Annotated[str, Meta(pattern=VERSION_PATTERN)] = ""
    mtls: bool = False
    include_ip_ranges: CidrList = field(default="*", name="includeIPRanges")
    exclude_ip_ranges: CidrList = field(default="", name="excludeIPRanges")
    auto_injection_namespaces: list[DnsLabel] = []
    control_plane_security_enabled: bool = False
    default_resources: ResourceRequirements | None = None
    sds: SDSConfiguration = SDSConfiguration()
    pilot: PilotConfiguration = PilotConfiguration()
    citadel: CitadelConfiguration = CitadelConfiguration()
    galley: GalleyConfiguration = GalleyConfiguration()
    gateways: GatewaysConfiguration = GatewaysConfiguration()
    mixer: MixerConfiguration = MixerConfiguration()
    sidecar_injector: SidecarInjectorConfiguration = SidecarInjectorConfiguration()
    node_agent: NodeAgentConfiguration = NodeAgentConfiguration()
    proxy: ProxyConfiguration = ProxyConfiguration()
    proxy_init: ProxyInitConfiguration = ProxyInitConfiguration()
    watch_one_namespace: bool = False
    use_mcp: bool = field(default=True, name="useMCP")
    #: "" or "." are kept, anything else means "*" (normalised by :func:`istio_spec`).
    default_config_visibility: str = ""
    watch_adapter_crds: bool = field(default=False, name="watchAdapterCRDs")
    default_pod_disruption_budget: PDBConfiguration = PDBConfiguration()
    outbound_traffic_policy: OutboundTrafficPolicyConfiguration = (
        OutboundTrafficPolicyConfiguration()
    )
    tracing: TracingConfiguration = TracingConfiguration()
    image_pull_policy: PullPolicy = "IfNotPresent"
    mesh_expansion: bool = False
    multi_mesh: bool = False
    istio_core_dns: IstioCoreDNSConfiguration = field(
        default=IstioCoreDNSConfiguration(), name="istioCoreDNS"
    )
    locality_lb: LocalityLBConfiguration | None = field(default=None, name="localityLB")


# --- RemoteIstio ----------------------------------------------------------------------------


class IstioService(_Struct, frozen=True, kw_only=True):
    """A master service made reachable from the remote (flat-network federation)."""

    name: DnsLabel
    label_selector: str = ""
    pod_ips: list[IP] = field(default=[], name="podIPs")
    ports: list[ServicePort] = []


class RemoteIstioSpec(_Struct, frozen=True, kw_only=True):
    """A remote cluster joining the mesh, named like the Secret holding its kubeconfig.
    Its components run the master Istio's version and images."""

    include_ip_ranges: CidrList = field(default="*", name="includeIPRanges")
    exclude_ip_ranges: CidrList = field(default="", name="excludeIPRanges")
    enabled_services: list[IstioService]
    auto_injection_namespaces: list[DnsLabel] = []
    default_resources: ResourceRequirements | None = None
    citadel: CitadelConfiguration = CitadelConfiguration()
    sidecar_injector: SidecarInjectorConfiguration = SidecarInjectorConfiguration()
    proxy: ProxyConfiguration = ProxyConfiguration()
    proxy_init: ProxyInitConfiguration = ProxyInitConfiguration()


# --- status ------------------------------------------------------------------------------------

ConfigState = Literal["Created", "Reconciling", "Available", "ReconcileFailed", "Unmanaged"]


class Condition(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A standard Kubernetes condition (``metav1.Condition``)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int | None = None


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """The observed state. Status, GatewayAddress and ErrorMessage keep the capitalised keys
    of the original istio.banzaicloud.io API, so existing tooling (and the printer columns)
    keep working; conditions and observedGeneration are the standard ones."""

    status: ConfigState | None = field(default=None, name="Status")
    gateway_address: list[str] = field(default=[], name="GatewayAddress")
    error_message: str = field(default="", name="ErrorMessage")
    conditions: list[Condition] = []
    observed_generation: int | None = field(default=None, name="observedGeneration")


IstioStatus = Status
RemoteIstioStatus = Status


# --- version and images ------------------------------------------------------------------------

_FAMILY = re.compile(r"^([0-9]+)\.([0-9]+)")


def version_family(version: str) -> str:
    """``"1.2.8"`` → ``"1.2"``; an unparseable version → ``""``."""
    m = _FAMILY.match(version)
    return f"{int(m.group(1))}.{int(m.group(2))}" if m else ""


def image_tag_for(version: str) -> str:
    """The default image tag for a spec version (its family's, or the newest family's)."""
    return DEFAULT_IMAGE_TAGS.get(version_family(version), DEFAULT_IMAGE_TAGS[_NEWEST_FAMILY])


def _image(tag: str, name: str) -> str:
    return f"{DEFAULT_IMAGE_HUB}/{name}:{tag}"


# --- decoding ------------------------------------------------------------------------------------

_S = TypeVar("_S", bound=msgspec.Struct)
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def _decode(raw: object, typ: type[_S], *, root: str) -> _S:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError(root, "expected an object")
    try:
        return msgspec.convert(dict(raw), typ)
    except msgspec.ValidationError as e:
        m = _AT.match(str(e))
        assert m is not None  # the pattern matches any string
        path, msg = m.group("path") or "", m.group("msg")
        pattern = _pattern_of(msg)
        if path.endswith("[...]") and pattern:
            # a map value: msgspec does not say which key, find it
            parent = _at(raw, path[: -len("[...]")])
            bad = [k for k, v in (parent.items() if isinstance(parent, Mapping) else ())
                   if isinstance(v, str) and re.search(pattern, v) is None]
            if bad:
                path = f"{path[: -len('[...]')]}.{bad[0]}"
        raise SpecError(root + path, _readable(msg, _at(raw, path))) from None


_REGEX_MSG = re.compile(r"^Expected `str` matching regex '(?P<pattern>.*)'$", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _at(raw: object, path: str) -> object:
    """The value at a msgspec error path (``.a.b[2].c``), or None."""
    for key, index in _STEP.findall(path):
        if key and isinstance(raw, Mapping):
            raw = raw.get(key)
        elif index and isinstance(raw, list) and int(index) < len(raw):
            raw = raw[int(index)]
        else:
            return None
    return raw


def _pattern_of(message: str) -> str:
    m = _REGEX_MSG.match(message)
    return m.group("pattern").replace("\\\\", "\\") if m else ""


def _readable(message: str, value: object) -> str:
    """msgspec's message for a pattern mismatch names the regex; say what it means, with
    the value where it is something public (a CIDR, an image, a duration)."""
    pattern = _pattern_of(message)
    if pattern not in PATTERN_HELP:
        return message
    if not isinstance(value, str) or len(value) > 80 or pattern in (HOST_PORT_PATTERN, IP_PATTERN):
        # a tracer address may hold a pasted access token by mistake; addresses stay private
        return f"the value {PATTERN_HELP[pattern]}"
    return f"{msgspec.json.encode(value).decode()} {PATTERN_HELP[pattern]}"


_Sc = TypeVar("_Sc", bound=_Scheduling)


def _sched(c: _Sc, default: ResourceRequirements) -> _Sc:
    return c if c.resources is not None else replace(c, resources=default)


def _gateway(
    g: GatewayConfiguration,
    *,
    service_type: ServiceType,
    ports: tuple[ServicePort, ...],
    sds_image: str,
    resources: ResourceRequirements,
) -> GatewayConfiguration:
    return replace(
        g,
        replica_count=g.replica_count or 1,
        min_replicas=g.min_replicas or 1,
        max_replicas=g.max_replicas or 5,
        service_type=g.service_type or service_type,
        ports=g.ports or list(ports),
        sds=replace(g.sds, image=g.sds.image or sds_image),
        resources=g.resources if g.resources is not None else resources,
    )


def _sidecar_injector(
    s: SidecarInjectorConfiguration, *, tag: str, namespace: str, resources: ResourceRequirements
) -> SidecarInjectorConfiguration:
    cni = s.init_cni_configuration
    return replace(
        _sched(s, resources),
        image=s.image or (_image(tag, "sidecar_injector") if tag else ""),
        replica_count=s.replica_count or 1,
        init=replace(s.init, resources=s.init.resources or DEFAULT_INIT_RESOURCES),
        init_cni_configuration=replace(
            cni,
            image=cni.image or (_image(tag, "install-cni") if tag else ""),
            bin_dir=cni.bin_dir or "/opt/cni/bin",
            conf_dir=cni.conf_dir or "/etc/cni/net.d",
            exclude_namespaces=(
                [namespace] if cni.exclude_namespaces is None else cni.exclude_namespaces
            ),
            log_level=cni.log_level or "info",
        ),
    )


def _proxy(
    p: ProxyConfiguration, *, tag: str, default_resources: ResourceRequirements | None
) -> ProxyConfiguration:
    if p.resources is not None:
        resources = p.resources
    elif default_resources is None:
        resources = DEFAULT_PROXY_RESOURCES
    else:
        resources = default_resources
    return replace(
        p,
        image=p.image or (_image(tag, "proxyv2") if tag else ""),
        component_log_level=p.component_log_level or "misc:error",
        dns_refresh_rate=p.dns_refresh_rate or "300s",
        resources=resources,
    )


def _visibility(v: str) -> str:
    return v if v in ("", ".") else "*"


def istio_spec(raw: Mapping[str, Any] | None, *, namespace: str) -> IstioSpec:
    """Decode an ``Istio`` CR's ``spec`` and apply the source's defaults.

    ``namespace`` is the CR's namespace (the control plane's). Raises :class:`SpecError`
    with the field path on input that does not fit the schema.
    """
    s = _decode(raw, IstioSpec, root="spec")
    version = s.version or DEFAULT_VERSION
    tag = image_tag_for(version)
    res = s.default_resources if s.default_resources is not None else DEFAULT_RESOURCES
    gw = s.gateways
    tr = s.tracing
    dns = s.istio_core_dns
    return replace(
        s,
        version=version,
        include_ip_ranges=s.include_ip_ranges or "*",
        default_resources=res,
        pilot=replace(
            _sched(s.pilot, res),
            image=s.pilot.image or _image(tag, "pilot"),
            replica_count=s.pilot.replica_count or 1,
            min_replicas=s.pilot.min_replicas or 1,
            max_replicas=s.pilot.max_replicas or 5,
            trace_sampling=s.pilot.trace_sampling or 1.0,
        ),
        citadel=replace(
            _sched(s.citadel, res),
            image=s.citadel.image or _image(tag, "citadel"),
            replica_count=s.citadel.replica_count or 1,
        ),
        galley=replace(
            _sched(s.galley, res),
            image=s.galley.image or _image(tag, "galley"),
            replica_count=s.galley.replica_count or 1,
        ),
        gateways=replace(
            gw,
            ingress=_gateway(
                gw.ingress,
                service_type="LoadBalancer",
                ports=DEFAULT_INGRESS_PORTS,
                sds_image=_image(tag, "node-agent-k8s"),
                resources=res,
            ),
            egress=_gateway(
                gw.egress,
                service_type="ClusterIP",
                ports=DEFAULT_EGRESS_PORTS,
                sds_image=_image(tag, "node-agent-k8s"),
                resources=res,
            ),
        ),
        mixer=replace(
            _sched(s.mixer, res),
            image=s.mixer.image or _image(tag, "mixer"),
            replica_count=s.mixer.replica_count or 1,
            min_replicas=s.mixer.min_replicas or 1,
            max_replicas=s.mixer.max_replicas or 5,
        ),
        sidecar_injector=_sidecar_injector(
            s.sidecar_injector, tag=tag, namespace=namespace, resources=res
        ),
        node_agent=replace(
            _sched(s.node_agent, res), image=s.node_agent.image or _image(tag, "node-agent-k8s")
        ),
        proxy=_proxy(s.proxy, tag=tag, default_resources=s.default_resources),
        proxy_init=replace(s.proxy_init, image=s.proxy_init.image or _image(tag, "proxy_init")),
        default_config_visibility=_visibility(s.default_config_visibility),
        tracing=replace(
            tr,
            zipkin=replace(tr.zipkin, address=tr.zipkin.address or f"zipkin.{namespace}:9411"),
            datadog=replace(tr.datadog, address=tr.datadog.address or "$(HOST_IP):8126"),
        ),
        istio_core_dns=replace(
            _sched(dns, res),
            image=dns.image or DEFAULT_CORE_DNS_IMAGE,
            plugin_image=dns.plugin_image or DEFAULT_CORE_DNS_PLUGIN_IMAGE,
            replica_count=dns.replica_count or 1,
        ),
    )


def remote_istio_spec(raw: Mapping[str, Any] | None, *, namespace: str) -> RemoteIstioSpec:
    """Decode a ``RemoteIstio`` CR's ``spec`` and apply the defaults that do not depend on
    the master: images stay empty ("the master's images", filled at render time from the
    master ``Istio``), everything else is concrete. ``namespace`` is the CR's namespace
    (the remote control plane's), used for the CNI ``excludeNamespaces`` default.
    """
    s = _decode(raw, RemoteIstioSpec, root="spec")
    res = s.default_resources if s.default_resources is not None else DEFAULT_RESOURCES
    return replace(
        s,
        include_ip_ranges=s.include_ip_ranges or "*",
        default_resources=res,
        citadel=replace(_sched(s.citadel, res), replica_count=s.citadel.replica_count or 1),
        sidecar_injector=_sidecar_injector(
            s.sidecar_injector, tag="", namespace=namespace, resources=res
        ),
        proxy=_proxy(s.proxy, tag="", default_resources=s.default_resources),
    )


def status(raw: Mapping[str, Any] | None) -> Status:
    """Decode a CR's ``status`` (tolerantly: a status nobody can parse is an empty one)."""
    try:
        return _decode(raw, Status, root="status")
    except SpecError:
        return Status()


def to_builtins(value: msgspec.Struct) -> Any:
    """The wire form (camelCase keys) of any struct of this module."""
    return msgspec.to_builtins(value)
