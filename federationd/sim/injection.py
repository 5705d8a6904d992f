"""Istio's sidecar injection webhook, as the simulated API server would call it.

A real cluster injects ``istio-proxy`` because the API server calls the mutating
webhook the injector registered, and the injector evaluates the template in its
ConfigMap for the Pod. federationd renders all three (MutatingWebhookConfiguration,
ConfigMap, Deployment); this module runs them as the API server and Istio 1.1/1.2's
injector would (``pilot/pkg/kube/inject/{webhook,inject,concurrency}.go`` at 1.1.14 and
1.2.8), so what a user sees on a simulated cluster (``kubectl get pod -o yaml | grep
image:``) and what would break a real one (a template that does not parse, a ConfigMap
key that version reads and does not find) show up here too:

* the API server's side (``MutatingAdmissionWebhook``): configurations in name order,
  each webhook's ``rules`` (CREATE of core/v1 pods), ``namespaceSelector`` and
  ``objectSelector``; the webhook's Service must have ready endpoints, else the call
  fails and ``failurePolicy`` decides (``Fail``: the Pod is refused with the server's
  ``failed calling webhook`` error; ``Ignore``: it is admitted unchanged); a denial is
  ``admission webhook "…" denied the request: <the injector's error>``.
* the injector's side: which files it reads comes from its Deployment (``--injectConfig``,
  ``--injectValues`` for 1.2, ``--meshConfig`` and the volumes behind those paths) and its
  version from the image tag (1.1 parses ``[[ ]]``, 1.2 ``{{ }}`` and reads ``values``).
  A file that cannot be read, or a config that does not decode, means the injector exits
  at start (``failed to create injection webhook: …``, recorded as a Warning Event on its
  Deployment) and so has no endpoints. ``injectRequired`` (hostNetwork, kube-system and
  kube-public, the ``sidecar.istio.io/inject`` annotation, never/always selectors,
  ``policy``), annotation validation, the template with the version's functions, the
  decode of its output into ``SidecarInjectionSpec`` and the JSON patch
  (``createPatch``: earlier injections removed, containers, volumes, image pull secrets
  appended, ``dnsConfig``, the status annotation, ``--concurrency`` from CPU).

  The HTTP probe rewrite (``rewriteAppHTTPProbe``, 1.2's per-Pod annotation) is part of
  the patch too.

Only webhooks served by an Istio sidecar injector (its Deployment runs a
``sidecar_injector`` image) are evaluated; other webhooks are not called (the emulator
cannot run arbitrary servers).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import posixpath
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

import yaml

from federationd.sim import errors
from federationd.sim.gotemplate import (
    Func,
    GoEnum,
    GoInt,
    GoMap,
    GoNil,
    GoSlice,
    GoStruct,
    NoValue,
    Param,
    Template,
    TemplateError,
    sprint,
    type_of,
)
from federationd.sim.rbac import selector_matches
from federationd.sim.store import Obj, Store, deep_copy, load_yaml, rfc3339

MWC = ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")
IGNORED_NAMESPACES = ("kube-system", "kube-public")
ANNOTATION_POLICY = "sidecar.istio.io/inject"
ANNOTATION_STATUS = "sidecar.istio.io/status"
PROXY_CONTAINER = "istio-proxy"
SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
LEGACY = {"initContainers": ["istio-init", "enable-core-dump"], "containers": ["istio-proxy"],
          "volumes": ["istio-certs", "istio-envoy"], "imagePullSecrets": []}


def _json_or_yaml(text: str) -> Any:
    """YAML that is usually JSON (a values file): the JSON parser first, it is faster."""
    try:
        return json.loads(text)
    except ValueError:
        return load_yaml(text)


class InjectorDown(Exception):
    """The injector could not start: its own error as it would log it, or the kubelet's
    when its volume cannot be mounted (``reason``)."""

    def __init__(self, message: str, *, reason: str = "InjectorCannotStart") -> None:
        super().__init__(message)
        self.reason = reason


class CallFailed(Exception):
    """The API server could not call the webhook (no Service, no endpoints, injector down)."""


class Denied(Exception):
    """The injector answered ``allowed: false`` with this message."""


# ---------------------------------------------------------------------------- Go values


_GO_NAMES = {
    "uid": "UID", "dnsConfig": "DNSConfig", "dnsPolicy": "DNSPolicy", "hostPID": "HostPID",
    "hostIPC": "HostIPC", "tty": "TTY", "podIP": "PodIP", "podIPs": "PodIPs", "hostIP": "HostIP",
    "hostIPs": "HostIPs", "apiVersion": "APIVersion", "tcpSocket": "TCPSocket", "httpGet": "HTTPGet",
    "httpHeaders": "HTTPHeaders", "fsGroup": "FSGroup", "fsGroupChangePolicy": "FSGroupChangePolicy",
    "seLinuxOptions": "SELinuxOptions", "iscsi": "ISCSI", "nfs": "NFS", "rbd": "RBD", "cephfs": "CephFS",
    "fc": "FC", "csi": "CSI", "gcePersistentDisk": "GCEPersistentDisk",
    "awsElasticBlockStore": "AWSElasticBlockStore", "scaleIO": "ScaleIO", "storageos": "StorageOS",
    "grpc": "GRPC", "ip": "IP", "os": "OS", "setHostnameAsFQDN": "SetHostnameAsFQDN",
    "gmsaCredentialSpecName": "GMSACredentialSpecName", "gmsaCredentialSpec": "GMSACredentialSpec",
    "targetWWNs": "TargetWWNs", "wwids": "WWIDs", "lun": "Lun",
}


def go_name(json_name: str) -> str:
    """The Go field name behind a Kubernetes JSON name (initialisms as the API types spell them)."""
    return _GO_NAMES.get(json_name) or json_name[:1].upper() + json_name[1:]


@functools.cache
def _proto() -> dict[str, Any]:
    ref = resources.files("federationd.sim").joinpath("data/k8s-proto.json.gz")
    with resources.as_file(ref) as path:
        loaded: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    return loaded


def _messages() -> dict[str, dict[str, list[Any]]]:
    m: dict[str, dict[str, list[Any]]] = _proto()["messages"]
    return m


CORE = "k8s.io.api.core.v1."
META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_TIME = (META + "Time", META + "MicroTime")
_INTS = {"int32", "int64", "uint32", "uint64"}


def _short(message: str) -> str:
    parts = message.split(".")
    return f"{parts[-2]}.{parts[-1]}"


@functools.cache
def _fields_of(message: str) -> list[tuple[str, Any, str]]:
    """(json name, type, flags) of a message's fields, inline ones expanded."""
    out: list[tuple[str, Any, str]] = []
    for _, (jname, typ, flags) in sorted(_messages().get(message, {}).items(), key=lambda kv: int(kv[0])):
        out.append((jname, typ, flags))
    return out


def k8s_value(message: str, data: Any, *, pointer: bool = True) -> Any:
    """A Kubernetes object (JSON form) as the Go value the template sees."""
    if message == _QUANTITY:
        return GoStruct("resource.Quantity", {}, text=str(data), pointer=False)
    if message == _INT_OR_STRING:
        is_str = isinstance(data, str)
        return GoStruct("intstr.IntOrString", {"Type": GoInt("intstr.Type", 1 if is_str else 0),
                                                "IntVal": GoInt("int32", 0 if is_str else int(data or 0)),
                                                "StrVal": data if is_str else ""}, pointer=False,
                        text=str(data))
    if message in _TIME:
        return GoStruct("v1.Time", {}, text=str(data or "0001-01-01 00:00:00 +0000 UTC"), pointer=False)
    src = data if isinstance(data, dict) else {}
    fields: dict[str, Any] = {}
    for jname, typ, flags in _fields_of(message):
        if "i" in flags and isinstance(typ, str):
            inner = k8s_value(typ, src, pointer=False)
            fields[go_name(typ.rsplit(".", 1)[-1])] = inner
            continue
        fields[go_name(jname)] = _k8s_field(typ, flags, src.get(jname), present=jname in src)
    return GoStruct(_short(message), fields, pointer=pointer)


def _k8s_field(typ: Any, flags: str, v: Any, *, present: bool) -> Any:
    if isinstance(typ, list) and typ[0] == "map":
        vt = typ[2]
        items = {str(k): _k8s_scalar_or_msg(vt, x) for k, x in (v or {}).items()}
        zero: Any = "" if vt == "string" else None
        tname = "map[string]string" if vt == "string" else f"map[string]{_type_name(vt)}"
        return GoMap(items, tname, zero)
    if "r" in flags:
        if v is None:
            return GoSlice(None, "[]" + _type_name(typ))
        return GoSlice([_k8s_scalar_or_msg(typ, x) for x in v], "[]" + _type_name(typ))
    if typ in ("string", "bool") or typ in _INTS or typ in ("double", "float", "bytes"):
        if "p" in flags and not present:
            return GoNil(typ)
        return _k8s_scalar_or_msg(typ, v)
    if "p" in flags and not present:
        return GoNil(_short(typ) if "." in typ else typ, field_names=frozenset(
            go_name(j) for j, _, _ in _fields_of(typ)))
    return k8s_value(typ, v, pointer="p" in flags)


def _type_name(typ: Any) -> str:
    if isinstance(typ, str) and "." in typ:
        return _short(typ)
    return str(typ)


def _k8s_scalar_or_msg(typ: str, v: Any) -> Any:
    if typ == "string":
        return "" if v is None else str(v)
    if typ == "bool":
        return bool(v)
    if typ in _INTS:
        return GoInt(typ, int(v or 0))
    if typ in ("double", "float"):
        return float(v or 0)
    return k8s_value(typ, v)


# ------------------------------------------------------------------ mesh config (protobuf)


_AUTH_POLICY = {0: "NONE", 1: "MUTUAL_TLS", 1000: "INHERIT"}
_INTERCEPTION = {0: "REDIRECT", 1: "TPROXY"}
_ACCESS_LOG_ENCODING = {0: "TEXT", 1: "JSON"}
_INGRESS_MODE = {0: "OFF", 1: "DEFAULT", 2: "STRICT"}
_MESH_AUTH = {0: "NONE", 1: "MUTUAL_TLS"}
_OUTBOUND_MODE = {0: "REGISTRY_ONLY", 1: "ALLOW_ANY"}

#: proto field name → (kind, extra). kinds: string, bool, int32, uint32, duration, enum, msg, repeated
PROXY_FIELDS: dict[str, tuple[str, Any]] = {
    "config_path": ("string", None), "binary_path": ("string", None), "service_cluster": ("string", None),
    "drain_duration": ("duration", None), "parent_shutdown_duration": ("duration", None),
    "discovery_address": ("string", None), "discovery_refresh_delay": ("duration", None),
    "zipkin_address": ("string", None), "connect_timeout": ("duration", None),
    "statsd_udp_address": ("string", None), "envoy_metrics_service_address": ("string", None),
    "proxy_admin_port": ("int32", None), "availability_zone": ("string", None),
    "control_plane_auth_policy": ("enum", ("v1alpha1.AuthenticationPolicy", _AUTH_POLICY)),
    "custom_config_file": ("string", None), "stat_name_length": ("int32", None),
    "concurrency": ("int32", None), "proxy_bootstrap_template_path": ("string", None),
    "interception_mode": ("enum", ("v1alpha1.ProxyConfig_InboundInterceptionMode", _INTERCEPTION)),
    "tracing": ("msg", "Tracing"),
}
SDS_FIELDS: dict[str, tuple[str, Any]] = {"enabled": ("bool", None), "k8s_sa_jwt_path": ("string", None)}
MESH_FIELDS: dict[str, tuple[str, Any]] = {
    "mixer_check_server": ("string", None), "mixer_report_server": ("string", None),
    "disable_policy_checks": ("bool", None), "policy_check_fail_open": ("bool", None),
    "sidecar_to_telemetry_session_affinity": ("bool", None), "proxy_listen_port": ("int32", None),
    "proxy_http_port": ("int32", None), "connect_timeout": ("duration", None),
    "tcp_keepalive": ("msg", "TcpKeepalive"), "ingress_class": ("string", None),
    "ingress_service": ("string", None),
    "ingress_controller_mode": ("enum", ("v1alpha1.MeshConfig_IngressControllerMode", _INGRESS_MODE)),
    "auth_policy": ("enum", ("v1alpha1.MeshConfig_AuthPolicy", _MESH_AUTH)),
    "rds_refresh_delay": ("duration", None), "enable_tracing": ("bool", None),
    "access_log_file": ("string", None), "access_log_format": ("string", None),
    "access_log_encoding": ("enum", ("v1alpha1.MeshConfig_AccessLogEncoding", _ACCESS_LOG_ENCODING)),
    "default_config": ("msg", "ProxyConfig"), "mixer_address": ("string", None),
    "outbound_traffic_policy": ("msg", "OutboundTrafficPolicy"),
    "enable_client_side_policy_check": ("bool", None), "sds_uds_path": ("string", None),
    "sds_refresh_delay": ("duration", None), "config_sources": ("repeated", "ConfigSource"),
    "enable_sds_token_mount": ("bool", None), "sds_use_k8s_sa_jwt": ("bool", None),
    "trust_domain": ("string", None), "default_service_export_to": ("strings", None),
    "default_virtual_service_export_to": ("strings", None),
    "default_destination_rule_export_to": ("strings", None), "root_namespace": ("string", None),
    "locality_lb_setting": ("msg", "LocalityLoadBalancerSetting"), "dns_refresh_rate": ("duration", None),
}
_MESSAGES: dict[str, dict[str, tuple[str, Any]]] = {
    "ProxyConfig": PROXY_FIELDS,
    "MeshConfig": MESH_FIELDS,
    "SDS": SDS_FIELDS,
    "Tracing": {"zipkin": ("oneof", "Tracing_Zipkin"), "lightstep": ("oneof", "Tracing_Lightstep"),
                "datadog": ("oneof", "Tracing_Datadog")},
    "Tracing_Zipkin": {"address": ("string", None)},
    "Tracing_Lightstep": {"address": ("string", None), "access_token": ("string", None),
                          "secure": ("bool", None), "cacert_path": ("string", None)},
    "Tracing_Datadog": {"address": ("string", None)},
    "OutboundTrafficPolicy": {"mode": ("enum", ("v1alpha1.MeshConfig_OutboundTrafficPolicy_Mode", _OUTBOUND_MODE))},
    "TcpKeepalive": {"probes": ("uint32", None), "time": ("duration", None), "interval": ("duration", None)},
    "ConfigSource": {"address": ("string", None), "tls_settings": ("any", None)},
    "LocalityLoadBalancerSetting": {"distribute": ("any", None), "failover": ("any", None)},
}


def _camel(proto_name: str) -> str:
    head, *rest = proto_name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _pascal(proto_name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in proto_name.split("_"))


def go_duration(seconds: int, nanos: int) -> str:
    """Go's ``time.Duration.String``."""
    total = seconds * 1_000_000_000 + nanos
    if total == 0:
        return "0s"
    neg = total < 0
    u = abs(total)
    if u < 1_000_000_000:
        for unit, size in (("ns", 1), ("µs", 1_000), ("ms", 1_000_000)):
            if u < size * 1000:
                return ("-" if neg else "") + _trim_frac(u, size) + unit
    h, rem = divmod(u, 3_600_000_000_000)
    m, rem = divmod(rem, 60_000_000_000)
    s = _trim_frac(rem, 1_000_000_000) + "s"
    out = (f"{h}h{m}m" if h else f"{m}m" if m else "") + s
    return ("-" if neg else "") + out


def _trim_frac(v: int, unit: int) -> str:
    whole, frac = divmod(v, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


def _parse_duration(v: Any, where: str) -> tuple[int, int]:
    """``time.ParseDuration`` (what jsonpb decodes a Duration with in these releases)."""
    text = v if isinstance(v, str) else ""
    bad = InjectorDown(f"failed to convert to proto.: time: invalid duration {text}")
    s = text
    neg = s.startswith("-")
    s = s.lstrip("+-") if s[:1] in "+-" else s
    if s == "0":
        return 0, 0
    if not s:
        raise bad
    total = 0.0
    for num, unit in re.findall(r"([0-9]*\.?[0-9]*)([a-zµμ]+)", s):
        if not num or num == "." or unit not in _UNITS:
            raise bad
        total += float(num) * _UNITS[unit]
    if "".join(a + b for a, b in re.findall(r"([0-9]*\.?[0-9]*)([a-zµμ]+)", s)) != s:
        raise bad
    nanos_total = round(total) * (-1 if neg else 1)
    seconds = int(nanos_total / 1_000_000_000)
    _ = where
    return seconds, nanos_total - seconds * 1_000_000_000


def _duration(seconds: int, nanos: int) -> GoStruct:
    """A ``*types.Duration``; ``fmt`` prints it as its proto text."""
    d = GoStruct("types.Duration", {"Seconds": GoInt("int64", seconds), "Nanos": GoInt("int32", nanos)},
                 text=f"seconds:{seconds} " + (f"nanos:{nanos} " if nanos else ""))
    d.methods = {"String": lambda: d.text or "", "GetSeconds": lambda: d.fields["Seconds"],
                 "GetNanos": lambda: d.fields["Nanos"]}
    return d


#: the 1.2 API adds ``sds`` to ProxyConfig
_MESSAGES_1_2: dict[str, dict[str, tuple[str, Any]]] = {
    **_MESSAGES, "ProxyConfig": {**PROXY_FIELDS, "sds": ("msg", "SDS")}}


def proto_message(name: str, data: dict[str, Any], *, where: str,
                  messages: dict[str, dict[str, tuple[str, Any]]] = _MESSAGES) -> GoStruct:
    """A mesh-config protobuf message as the Go struct the template reads (unset fields at
    their zero values, ``Get…`` methods, enums by name); an unknown field fails as
    ``jsonpb`` fails (the injector then cannot start)."""
    spec = messages[name]
    by_json: dict[str, str] = {}
    for f in spec:
        by_json[f] = f
        by_json[_camel(f)] = f
    # unknown fields are ignored: ApplyJSON retries with AllowUnknownFields
    fields: dict[str, Any] = {}
    methods: dict[str, Callable[..., Any]] = {}
    oneof: Any = None
    for f, (kind, extra) in spec.items():
        raw = None
        for key in (f, _camel(f)):
            if key in data:
                raw = data[key]
        present = raw is not None
        value: Any
        if kind == "string":
            value = "" if raw is None else str(raw)
        elif kind == "bool":
            value = bool(raw)
        elif kind in ("int32", "uint32"):
            value = GoInt(kind, int(raw or 0))
        elif kind == "duration":
            value = _duration(*_parse_duration(raw, f)) if present else GoNil("types.Duration")
        elif kind == "enum":
            tname, names = extra
            if isinstance(raw, str):
                number = next((n for n, s in names.items() if s == raw), None)
                if number is None:
                    raise InjectorDown(f"unknown value {json.dumps(raw)} for enum {tname}")
            else:
                number = int(raw or 0)
            value = GoEnum(tname, number, names.get(number, str(number)))
        elif kind == "msg":
            value = proto_message(extra, raw or {}, where=f, messages=messages) if present else GoNil(
                f"v1alpha1.{extra}", methods=_nil_getters(extra, messages),
                field_names=frozenset(_pascal(x) for x in messages[extra]))
        elif kind == "oneof":
            if present:
                oneof = proto_message(extra, raw or {}, where=f, messages=messages)
                value = oneof
            else:
                value = GoNil(f"v1alpha1.{extra}", methods=_nil_getters(extra, messages),
                              field_names=frozenset(_pascal(x) for x in messages[extra]))
            methods["Get" + _pascal(f)] = (lambda v=value: v)
            continue
        elif kind == "strings":
            value = GoSlice(None if raw is None else [str(x) for x in raw], "[]string")
        elif kind == "repeated":
            value = GoSlice(None if raw is None else [proto_message(extra, x, where=f, messages=messages) for x in raw],
                            f"[]*v1alpha1.{extra}")
        else:
            value = raw
        fields[_pascal(f)] = value
        methods["Get" + _pascal(f)] = (lambda v=value: v)
    if name == "Tracing":
        fields["Tracer"] = oneof
    msg = GoStruct(f"v1alpha1.{name}", fields, methods)
    msg.methods["String"] = lambda: sprint(msg)
    return msg


def _nil_getters(name: str, messages: dict[str, dict[str, tuple[str, Any]]]) -> dict[str, Callable[..., Any]]:
    """A nil message's getters return zero values, as generated protobuf getters do."""
    out: dict[str, Callable[..., Any]] = {}
    for f, (kind, extra) in messages[name].items():
        zero: Any
        if kind == "string":
            zero = ""
        elif kind == "bool":
            zero = False
        elif kind in ("int32", "uint32"):
            zero = GoInt(kind, 0)
        elif kind == "enum":
            zero = GoEnum(extra[0], 0, extra[1][0])
        elif kind in ("msg", "oneof"):
            zero = GoNil(f"v1alpha1.{extra}", methods=_nil_getters(extra, messages))
        else:
            zero = None
        out["Get" + _pascal(f)] = (lambda z=zero: z)
    return out


#: ``model.DefaultProxyConfig()`` and ``DefaultMeshConfig()`` (1.1.14 and 1.2.8 alike)
DEFAULT_PROXY: dict[str, Any] = {
    "configPath": "/etc/istio/proxy", "binaryPath": "/usr/local/bin/envoy", "serviceCluster": "istio-proxy",
    "drainDuration": "45s", "parentShutdownDuration": "60s", "discoveryAddress": "istio-pilot:15010",
    "connectTimeout": "1s", "proxyAdminPort": 15000, "controlPlaneAuthPolicy": "NONE", "concurrency": 0,
    "statNameLength": 189,
}
DEFAULT_MESH: dict[str, Any] = {
    "disablePolicyChecks": True, "rootNamespace": "istio-system", "proxyListenPort": 15001,
    "connectTimeout": "1s", "ingressService": "istio-ingressgateway", "enableTracing": True,
    "accessLogFile": "/dev/stdout", "accessLogEncoding": "TEXT",
    "defaultServiceExportTo": ["*"], "defaultVirtualServiceExportTo": ["*"],
    "defaultDestinationRuleExportTo": ["*"], "outboundTrafficPolicy": {"mode": "ALLOW_ANY"},
    "dnsRefreshRate": "5s",
}


def read_mesh_config(text: str, *, with_sds: bool) -> GoStruct:
    """``cmd.ReadMeshConfig``: defaults, the file over them, ``defaultConfig`` over the
    default ProxyConfig."""
    try:
        doc = load_yaml(text) if text.strip() else {}
    except yaml.YAMLError as e:
        raise InjectorDown(f"failed to convert to proto.: {e}") from None
    if not isinstance(doc, dict):
        raise InjectorDown("failed to convert to proto.: mesh config is not a map")
    mesh = {**DEFAULT_MESH, **{k: v for k, v in doc.items() if k not in ("defaultConfig", "default_config")}}
    proxy = dict(DEFAULT_PROXY)
    proxy.update(doc.get("defaultConfig") or doc.get("default_config") or {})
    mesh["defaultConfig"] = proxy
    return proto_message("MeshConfig", mesh, where="mesh", messages=_MESSAGES_1_2 if with_sds else _MESSAGES)


# ---------------------------------------------------------------------------- template functions


def _containers_param() -> Param:
    return Param("[]v1.Container")


def _ports_of(containers: Any, keep: Callable[[Any], bool]) -> str:
    parts: list[str] = []
    for c in containers.items or [] if isinstance(containers, GoSlice) else []:
        if keep(c):
            for p in c.fields["Ports"].items or []:
                parts.append(str(p.fields["ContainerPort"].value))
    return ",".join(parts)


def _annotation(meta: Any, name: str, default: Any) -> str:
    ann = meta.fields["Annotations"].items if isinstance(meta, GoStruct) else {}
    if name in ann:
        return str(ann[name])
    return sprint(default) if default is not None else "<nil>"


def _exclude_inbound_port(port: Any, excluded: str) -> str:
    port_str = sprint(port).strip() if port is not None else "<nil>"
    if not port_str or port_str == "0":
        return excluded
    out: list[str] = []
    for p in excluded.split(","):
        if p == port_str:
            return excluded
        p = p.strip()
        if p:
            out.append(p)
    out.append(port_str)
    return ",".join(out)


def _go_json(v: Any) -> Any:
    """What ``encoding/json`` writes for a template value."""
    if isinstance(v, GoMap):
        return {k: _go_json(x) for k, x in v.items.items()}
    if isinstance(v, GoSlice):
        return None if v.items is None else [_go_json(x) for x in v.items]
    if isinstance(v, GoInt):
        return v.value
    if isinstance(v, GoEnum):
        return v.number
    if isinstance(v, GoStruct):
        return {k: _go_json(x) for k, x in v.fields.items()}
    if isinstance(v, GoNil) or v is NoValue:
        return None
    if isinstance(v, dict):
        return {k: _go_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_go_json(x) for x in v]
    return v


def _to_json(m: Any) -> str:
    """``toJSON``: ``json.Marshal`` of a map[string]string (sorted keys, HTML-escaped), "{}" for nil."""
    if not isinstance(m, GoMap):
        return "{}"
    text = json.dumps(dict(sorted(m.items.items())), separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _from_json(j: str) -> Any:
    try:
        return _floats(json.loads(j))
    except ValueError:
        return "{}"


def _floats(v: Any) -> Any:
    """``encoding/json`` into ``interface{}``: every number is a float64."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list):
        return [_floats(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _floats(x) for k, x in v.items()}
    return v


def _indent(spaces: int, source: str) -> str:
    lines = source.split("\n")
    return "\n".join(line if i == 0 else " " * spaces + line for i, line in enumerate(lines))


def _to_yaml(value: Any) -> str:
    doc = _go_json(value)
    return yaml.safe_dump(doc, default_flow_style=False, sort_keys=True) if doc is not None else "null\n"


def _value_or_default_11(value: str, default: str) -> str:
    return default if value == "" else value


def _value_or_default_12(value: Any, default: Any) -> Any:
    return default if value == "" or value is None else value


def _format_duration(d: Any) -> str:
    if isinstance(d, GoStruct):
        return go_duration(d.fields["Seconds"].value, d.fields["Nanos"].value)
    return "1s"  # types.DurationFromProto(nil) fails; formatDuration answers "1s"


S, INT, ANY = Param("string"), Param("int"), Param("interface {}")
META_P = Param("v1.ObjectMeta")


def functions(minor: int, render: Callable[[str], str] | None = None) -> dict[str, Func]:
    """The FuncMap of the injector of Istio 1.``minor`` (``inject.go`` ``injectionData``)."""
    funcs: dict[str, Func] = {
        "formatDuration": Func([Param("types.Duration")], _format_duration),
        "isset": Func([Param("map[string]string"), S], lambda m, k: m is not None and k in m.items),
        "excludeInboundPort": Func([ANY, S], _exclude_inbound_port),
        "includeInboundPorts": Func([_containers_param()], lambda cs: _ports_of(cs, lambda c: True)),
        "kubevirtInterfaces": Func([S], lambda s: s),
        "applicationPorts": Func([_containers_param()],
                                 lambda cs: _ports_of(cs, lambda c: c.fields["Name"] != PROXY_CONTAINER)),
        "annotation": Func([META_P, S, ANY], _annotation),
        "valueOrDefault": Func([S, S], _value_or_default_11) if minor < 2 else
        Func([ANY, ANY], _value_or_default_12),
        "toJSON": Func([Param("map[string]string")], _to_json),
        "toJson": Func([Param("map[string]string")], _to_json),
        "fromJSON": Func([S], _from_json),
        "toYaml": Func([ANY], _to_yaml),
        "indent": Func([INT, S], _indent),
        "directory": Func([S], lambda p: posixpath.split(p)[0] + "/" if "/" in p else ""),
    }
    if minor >= 2:
        funcs["contains"] = Func([S, S], lambda needle, haystack: needle in haystack)
        funcs["render"] = Func([S], render or (lambda s: ""))
    return funcs


# ---------------------------------------------------------------------------- annotations


def _uint(value: str, bits: int) -> str | None:
    if not re.fullmatch(r"\d+", value) or int(value) >= 1 << bits:
        return f'strconv.ParseUint: parsing {json.dumps(value)}: invalid syntax' if not value.isdigit() \
            else f'strconv.ParseUint: parsing {json.dumps(value)}: value out of range'
    return None


def _ports(value: str, param: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    for p in value.split(","):
        err = _uint(p.strip(), 16)
        if err:
            return f"{param} invalid: failed parsing port '0': failed parsing port '0': {err}"
    return None


def _cidrs(value: str, param: str) -> str | None:
    if not value:
        return None
    for c in value.split(","):
        if not re.fullmatch(r"[0-9.]+/\d{1,2}|[0-9a-fA-F:]+/\d{1,3}", c):
            return f"{param} invalid: failed parsing cidr '{c}': invalid CIDR address: {c}"
    return None


VALIDATORS: dict[str, Callable[[str], str | None]] = {
    "sidecar.istio.io/interceptionMode": lambda v: None if v in ("REDIRECT", "TPROXY", "NONE")
    else f"interceptionMode invalid, use REDIRECT,TPROXY,NONE: {v}",
    "status.sidecar.istio.io/port": lambda v: (f"excludeInboundPorts invalid: failed parsing port '0': "
                                               f"{_uint(v.strip(), 16)}") if _uint(v.strip(), 16) else None,
    "readiness.status.sidecar.istio.io/initialDelaySeconds": lambda v: _uint(v, 32),
    "readiness.status.sidecar.istio.io/periodSeconds": lambda v: _uint(v, 32),
    "readiness.status.sidecar.istio.io/failureThreshold": lambda v: _uint(v, 32),
    "readiness.status.sidecar.istio.io/applicationPorts": lambda v: None if v == "*"
    else _ports(v, "readinessApplicationPorts"),
    "traffic.sidecar.istio.io/includeOutboundIPRanges": lambda v: None if v == "*"
    else _cidrs(v, "includeIPRanges"),
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": lambda v: _cidrs(v, "excludeIPRanges"),
    "traffic.sidecar.istio.io/includeInboundPorts": lambda v: None if v == "*" else _ports(v, "includeInboundPorts"),
    "traffic.sidecar.istio.io/excludeInboundPorts": lambda v: _ports(v, "excludeInboundPorts"),
}


def validate_annotations(annotations: dict[str, str], *, minor: int) -> str | None:
    """``validateAnnotations``: Istio's message for the invalid ones, else None."""
    problems: list[str] = []
    if minor < 2:
        for name, check in VALIDATORS.items():
            if name in annotations:
                err = check(annotations[name])
                if err:
                    problems.append(f"injection failed. Invalid value for annotation {name}: "
                                    f"{annotations[name]}. Error: {err}")
    else:
        validators: dict[str, Callable[[str], str | None]] = {
            **VALIDATORS, "traffic.sidecar.istio.io/excludeOutboundPorts": lambda v: _ports(v, "excludeOutboundPorts")}
        for name, value in annotations.items():
            validator = validators.get(name)
            err = validator(value) if validator is not None else None
            if err:
                problems.append(f"invalid value '{value}' for annotation '{name}': {err}")
    if not problems:
        return None
    # hashicorp/go-multierror's format
    head = "1 error occurred:" if len(problems) == 1 else f"{len(problems)} errors occurred:"
    return head + "\n\t* " + "\n\t* ".join(problems) + "\n\n"


# ---------------------------------------------------------------------------- selectors


def label_selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """``metav1.LabelSelectorAsSelector(sel).Matches(labels)`` (an empty selector matches all)."""
    return not selector or selector_matches(selector, labels)


def _selector_empty(selector: Obj) -> bool:
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def inject_required(config: Obj, pod: Obj) -> bool:
    """``injectRequired`` of 1.1.14/1.2.8."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    if spec.get("hostNetwork"):
        return False
    if meta.get("namespace") in IGNORED_NAMESPACES:
        return False
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    value = str(annotations.get(ANNOTATION_POLICY, "")).lower()
    use_default = value == ""
    inject = value in ("y", "yes", "true", "on")
    if use_default:
        for sel in config.get("neverInjectSelector") or []:
            if isinstance(sel, dict) and not _selector_empty(sel) and label_selector_matches(sel, labels):
                inject, use_default = False, False
                break
    if use_default:
        for sel in config.get("alwaysInjectSelector") or []:
            if isinstance(sel, dict) and not _selector_empty(sel) and label_selector_matches(sel, labels):
                inject, use_default = True, False
                break
    policy = config.get("policy")
    if policy == "disabled":
        return False if use_default else inject
    if policy == "enabled":
        return True if use_default else inject
    return False


# ---------------------------------------------------------------------------- decode (ghodss/yaml)


class DecodeError(Exception):
    pass


_GO_KIND = {"string": "string", "bool": "bool", "int32": "int32", "int64": "int64", "uint32": "uint32",
            "uint64": "uint64", "double": "float64"}


def decode(message: str, v: Any) -> Any:
    """``yaml.Unmarshal`` (ghodss: YAML → JSON guided by the target, then ``encoding/json``)
    into ``message`` and back out as ``json.Marshal`` writes it: scalars become strings
    where the field is a string, unknown fields are dropped, zero-valued ``omitempty``
    fields left out, type mismatches fail with Go's message."""
    if message == _QUANTITY or message == _INT_OR_STRING or message in _TIME:
        return v
    if v is None:
        return None
    if not isinstance(v, dict):
        raise DecodeError(f"json: cannot unmarshal {_json_kind(v)} into Go value of type {_short(message)}")
    out: Obj = {}
    for jname, typ, flags in _fields_of(message):
        if "i" in flags and isinstance(typ, str):
            inner = decode(typ, v)
            if isinstance(inner, dict):
                out.update(inner)
            continue
        if jname not in v:
            continue
        raw = v[jname]
        val = _decode_field(typ, flags, raw, struct=message.rsplit(".", 1)[-1], field=jname)
        if val is None or ("o" in flags and "p" not in flags and _is_zero(val)):
            continue
        out[jname] = val
    return out


def _is_zero(v: Any) -> bool:
    return v is False or (isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0) or v in ("", [], {})


def _decode_field(typ: Any, flags: str, raw: Any, *, struct: str, field: str) -> Any:
    if raw is None:
        return None
    if isinstance(typ, list) and typ[0] == "map":
        if not isinstance(raw, dict):
            raise DecodeError(f"json: cannot unmarshal {_json_kind(raw)} into Go struct field "
                              f"{struct}.{field} of type map[string]{_GO_KIND.get(typ[2], _type_name(typ[2]))}")
        return {str(k): _decode_scalar(typ[2], x, struct=struct, field=field) for k, x in raw.items()}
    if "r" in flags:
        if not isinstance(raw, list):
            raise DecodeError(f"json: cannot unmarshal {_json_kind(raw)} into Go struct field "
                              f"{struct}.{field} of type []{_GO_KIND.get(typ, _type_name(typ))}")
        return [_decode_scalar(typ, x, struct=struct, field=field) for x in raw]
    return _decode_scalar(typ, raw, struct=struct, field=field)


def _decode_scalar(typ: str, raw: Any, *, struct: str, field: str) -> Any:
    if typ == "string":
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, int):
            return str(raw)
        if isinstance(raw, float):
            return sprint(raw)
        if isinstance(raw, str):
            return raw
    elif typ == "bool":
        if isinstance(raw, bool):
            return raw
    elif typ in _INTS:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
    elif typ == "double":
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return raw
    else:
        return decode(typ, raw)
    raise DecodeError(f"json: cannot unmarshal {_json_kind(raw)} into Go struct field {struct}.{field} "
                      f"of type {_GO_KIND.get(typ, typ)}")


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _yaml_to_json_value(v: Any) -> Any:
    """ghodss converts YAML map keys to strings and keeps the scalars the target decides on."""
    if isinstance(v, dict):
        return {("true" if k is True else "false" if k is False else str(k)): _yaml_to_json_value(x)
                for k, x in v.items()}
    if isinstance(v, list):
        return [_yaml_to_json_value(x) for x in v]
    return v


#: Container fields newer than the Kubernetes types the 1.1/1.2 injectors were built with
#: (client-go of Kubernetes 1.14): encoding/json drops them there
_NEWER_CONTAINER_FIELDS = ("startupProbe", "resizePolicy", "restartPolicy")


def decode_injection_spec(text: str) -> Obj:
    """The template's output as ``SidecarInjectionSpec`` (Go field names matched without
    regard to case, as ``encoding/json`` does; other keys ignored)."""
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise DecodeError(f"error converting YAML to JSON: yaml: {line}{getattr(e, 'problem', e)}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise DecodeError(f"error unmarshaling JSON: json: cannot unmarshal {_json_kind(doc)} into Go value "
                          f"of type inject.SidecarInjectionSpec")
    doc = _yaml_to_json_value(doc)
    fields = {"rewriteapphttpprobe": ("rewriteAppHTTPProbe", "bool"),
              "initcontainers": ("initContainers", CORE + "Container"),
              "containers": ("containers", CORE + "Container"),
              "volumes": ("volumes", CORE + "Volume"),
              "dnsconfig": ("dnsConfig", CORE + "PodDNSConfig"),
              "imagepullsecrets": ("imagePullSecrets", CORE + "LocalObjectReference")}
    out: Obj = {}
    for key, value in doc.items():
        f = fields.get(key.lower())
        if f is None or value is None:
            continue
        name, typ = f
        try:
            if typ == "bool":
                if not isinstance(value, bool):
                    raise DecodeError(f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                                      f"SidecarInjectionSpec.{name} of type bool")
                out[name] = value
            elif name == "dnsConfig":
                out[name] = decode(typ, value)
            else:
                if not isinstance(value, list):
                    raise DecodeError(f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                                      f"SidecarInjectionSpec.{name} of type []v1.{typ.rsplit('.', 1)[-1]}")
                out[name] = [decode(typ, x) for x in value]
                if name in ("containers", "initContainers"):
                    for c in out[name]:
                        for newer in _NEWER_CONTAINER_FIELDS:
                            c.pop(newer, None)
        except DecodeError as e:
            raise DecodeError(f"error unmarshaling JSON: {e}") from None
    return out


# ---------------------------------------------------------------------------- the injector


def _cpu_millis(q: Any) -> int:
    s = str(q or "").strip()
    if not s:
        return 0
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G)?", s)
    if not m:
        return 0
    n = float(m.group(1))
    mult = {"m": 0.001, None: 1, "k": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]
    return math.ceil(n * mult * 1000 - 1e-9)


_CONCURRENCY = re.compile(r"^-{1,2}concurrency(=(?P<threads>\d+))?$")


def apply_concurrency(containers: list[Obj]) -> None:
    """``applyConcurrency``: a proxy without ``--concurrency N`` (N > 0) gets its CPU limit
    (else request) rounded up, when that is positive."""
    for c in containers:
        if c.get("name") != PROXY_CONTAINER:
            continue
        args = c.get("args") or []
        current = 0
        for i, a in enumerate(args):
            m = _CONCURRENCY.match(str(a).strip())
            if not m:
                continue
            val = m.group("threads")
            if val is None:
                val = args[i + 1] if i + 1 < len(args) else "0"
            current = int(val) if re.fullmatch(r"[+-]?\d+", str(val)) else 0
            break
        if current > 0:
            return
        res = c.get("resources") or {}
        for source in ("limits", "requests"):
            cpu = _cpu_millis((res.get(source) or {}).get("cpu"))
            n = math.ceil(cpu / 1000)
            if n > 0:
                c["args"] = [*args, "--concurrency", str(n)]
                return
        return


def injector_minor(image: str) -> int:
    """The Istio minor version of an injector image (``…/sidecar_injector:1.1.14`` → 1)."""
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    m = re.match(r"(\d+)\.(\d+)", tag)
    if m and m.group(1) == "1":
        return int(m.group(2))
    return 2


class Injector:
    """One injector Deployment's configuration, read as it would read it at start."""

    def __init__(self, *, minor: int, config: Obj, template_text: str, values: str | None,
                 mesh: GoStruct) -> None:
        self.minor = minor
        self.config = config
        self.template_text = template_text
        self.values = values
        self.mesh = mesh
        #: the template parsed at the first Pod (the real injector parses it per request;
        #: the outcome, a parse error included, is the same every time)
        self._parsed: Template | None = None

    def inject(self, pod: Obj) -> Obj | None:
        """The mutated Pod, None when no injection is required; raises :class:`Denied`."""
        if not inject_required(self.config, pod):
            return None
        meta = pod.setdefault("metadata", {})
        spec = pod.setdefault("spec", {})
        mesh = self.mesh.fields
        if mesh["EnableSdsTokenMount"] and mesh["SdsUdsPath"]:
            spec["securityContext"] = {"fsGroup": 1337}
        problem = validate_annotations(meta.get("annotations") or {}, minor=self.minor)
        if problem:
            raise Denied(problem)
        values: Any = {}
        if self.minor >= 2:
            try:
                loaded = _json_or_yaml(self.values or "")
            except yaml.YAMLError as e:
                raise Denied(f"error converting YAML to JSON: yaml: {e}") from None
            values = _floats(_yaml_to_json_value(loaded)) if loaded is not None else {}
            if not isinstance(values, dict):
                raise Denied("error unmarshaling JSON: json: cannot unmarshal "
                             f"{_json_kind(values)} into Go value of type map[string]interface {{}}")
        meta_v = k8s_value(META + "ObjectMeta", meta)
        data_fields: dict[str, Any] = {
            "DeploymentMeta": meta_v,
            "ObjectMeta": meta_v,
            "Spec": k8s_value(CORE + "PodSpec", spec),
            "ProxyConfig": mesh["DefaultConfig"],
            "MeshConfig": self.mesh,
        }
        if self.minor >= 2:
            data_fields["Values"] = values
        data = GoStruct("inject.SidecarTemplateData", data_fields, pointer=True)
        delims = ("[[", "]]") if self.minor < 2 else ("{{", "}}")

        def render(text: str) -> str:
            try:
                return Template.parse(text, funcs=funcs, delims=delims).execute(data)
            except TemplateError:
                return ""

        funcs = functions(self.minor, render)
        try:
            if self._parsed is None:
                self._parsed = Template.parse(self.template_text, funcs=funcs, delims=delims)
            out = self._parsed.execute(data, funcs=funcs)
        except TemplateError as e:
            raise Denied(str(e)) from None
        try:
            sic = decode_injection_spec(out)
        except DecodeError as e:
            raise Denied(str(e)) from None
        apply_concurrency(sic.get("containers") or [])
        status = {
            "version": hashlib.sha256(self.template_text.encode()).hexdigest(),
            "initContainers": [c.get("name", "") for c in sic.get("initContainers") or []] or None,
            "containers": [c.get("name", "") for c in sic.get("containers") or []] or None,
            "volumes": [v.get("name", "") for v in sic.get("volumes") or []] or None,
            "imagePullSecrets": [s.get("name", "") for s in sic.get("imagePullSecrets") or []] or None,
        }
        previous = _previous_status(meta.get("annotations") or {})
        original: list[Obj] = [deep_copy(c) for c in spec.get("containers") or []]
        rewrite = self._rewrite_probes(meta.get("annotations") or {}, sic)
        sidecar = next((c for c in sic.get("containers") or [] if c.get("name") == PROXY_CONTAINER), None)
        if rewrite and sidecar is not None:
            # addAppProberCmd: the app's HTTP probes, for pilot-agent to run in its place
            prober = dump_app_probers(original)
            if prober:
                sidecar["env"] = [*(sidecar.get("env") or []), {"name": KUBE_APP_PROBERS, "value": prober}]
        for key in ("initContainers", "containers", "volumes", "imagePullSecrets"):
            gone = set(previous.get(key) or [])
            kept = [x for x in spec.get(key) or [] if x.get("name") not in gone]
            added = list(sic.get(key) or [])
            if key == "containers":
                sa_mount = None
                for c in kept:
                    for m in c.get("volumeMounts") or []:
                        if m.get("mountPath") == SA_TOKEN_PATH:
                            sa_mount = dict(m)
                for c in added:
                    if c.get("name") == PROXY_CONTAINER and sa_mount is not None:
                        c["volumeMounts"] = [*(c.get("volumeMounts") or []), sa_mount]
            if kept or added:
                spec[key] = kept + added
            else:
                spec.pop(key, None)
        if sic.get("dnsConfig") is not None:
            spec["dnsConfig"] = sic["dnsConfig"]
        meta.setdefault("annotations", {})[ANNOTATION_STATUS] = json.dumps(status, separators=(",", ":"))
        status_port = status_port_of(sidecar) if sidecar is not None else -1
        if rewrite and status_port != -1:
            # createProbeRewritePatch: "replace" at the original containers' indices
            containers = spec.get("containers") or []
            for i, c in enumerate(original):
                if c.get("name") == PROXY_CONTAINER or i >= len(containers):
                    continue
                for probe, which in (("readinessProbe", "readyz"), ("livenessProbe", "livez")):
                    after = self._convert_prober(c.get(probe), f"/app-health/{c.get('name')}/{which}", status_port)
                    if after is not None and isinstance(containers[i].get(probe), dict):
                        containers[i][probe]["httpGet"] = after
        return pod

    def _rewrite_probes(self, annotations: dict[str, str], sic: Obj) -> bool:
        """``ShouldRewriteAppHTTPProbers``: 1.2 lets the Pod's annotation decide first."""
        if self.minor >= 2 and ANNOTATION_REWRITE in annotations:
            value = annotations[ANNOTATION_REWRITE]
            if value in ("1", "t", "T", "TRUE", "true", "True"):
                return True
            if value in ("0", "f", "F", "FALSE", "false", "False"):
                return False
        return bool(sic.get("rewriteAppHTTPProbe"))

    def _convert_prober(self, probe: Any, url: str, status_port: int) -> Obj | None:
        """``convertAppProber``: the probe's httpGet sent to pilot-agent's status port
        (1.2 also turns HTTPS into HTTP: the agent speaks HTTPS to the app)."""
        if not isinstance(probe, dict) or not isinstance(probe.get("httpGet"), dict):
            return None
        get = deep_copy(probe["httpGet"])
        get["port"] = status_port
        get["path"] = url
        if self.minor >= 2 and get.get("scheme") == "HTTPS":
            get["scheme"] = "HTTP"
        return get


ANNOTATION_REWRITE = "sidecar.istio.io/rewriteAppHTTPProbers"
KUBE_APP_PROBERS = "ISTIO_KUBE_APP_PROBERS"
_STATUS_PORT = re.compile(r"^-{1,2}statusPort(=(?P<port>\d+))?$")


def status_port_of(sidecar: Obj) -> int:
    """``extractStatusPort``: the proxy's ``--statusPort``, -1 when it has none."""
    args = [str(a) for a in sidecar.get("args") or []]
    for i, a in enumerate(args):
        m = _STATUS_PORT.match(a.strip())
        if not m:
            continue
        port = m.group("port")
        if port is None:
            if i + 1 >= len(args):
                return -1
            port = args[i + 1]
        return int(port) if re.fullmatch(r"[+-]?\d+", port) else -1
    return -1


def dump_app_probers(containers: list[Obj]) -> str:
    """``DumpAppProbers``: each app container's HTTP probes by their agent URL, named ports
    resolved, as ``json.Marshal`` writes the map (sorted keys, HTTPGetAction's field order)."""
    out: dict[str, Obj] = {}
    for c in containers:
        if c.get("name") == PROXY_CONTAINER:
            continue
        ports = {p["name"]: p.get("containerPort") for p in c.get("ports") or [] if p.get("name")}
        for probe, which in (("readinessProbe", "readyz"), ("livenessProbe", "livez")):
            get = (c.get(probe) or {}).get("httpGet")
            if not isinstance(get, dict):
                continue
            port = get.get("port")
            if isinstance(port, str):
                if port not in ports:
                    continue
                port = ports[port]
            action: Obj = {}
            if get.get("path"):
                action["path"] = get["path"]
            action["port"] = port
            for k in ("host", "scheme", "httpHeaders"):
                if get.get(k):
                    action[k] = get[k]
            out[f"/app-health/{c.get('name')}/{which}"] = action
    return json.dumps(dict(sorted(out.items())), separators=(",", ":"))


def _previous_status(annotations: dict[str, str]) -> dict[str, list[str]]:
    """``injectionStatus``: what an earlier injection added, else the legacy names."""
    try:
        status = json.loads(annotations.get(ANNOTATION_STATUS, ""))
    except ValueError:
        status = None
    if isinstance(status, dict) and any(status.get(k) for k in LEGACY):
        return {k: list(status.get(k) or []) for k in LEGACY}
    return LEGACY


# ---------------------------------------------------------------------------- the webhook plugin


def _flag(args: list[str], name: str, default: str) -> str:
    for i, a in enumerate(args):
        if a.startswith(f"--{name}=") or a.startswith(f"-{name}="):
            return a.split("=", 1)[1]
        if a in (f"--{name}", f"-{name}") and i + 1 < len(args):
            return args[i + 1]
    return default


class Webhooks:
    """``MutatingAdmissionWebhook`` for Pods, with Istio's injector behind the Services
    that run it. ``admit`` is installed as a store admission hook."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: injector Deployments whose start failure was already reported (uid → message)
        self._reported: dict[str, str] = {}
        #: each injector's configuration as last read (uid → (versions read, injector))
        self._loaded: dict[str, tuple[Any, Injector]] = {}

    def admit(self, group: str, kind: str, pod: Obj, *, generated_name: bool) -> None:
        if group != "" or kind != "Pod":
            return
        configs = self.store.list_raw(MWC, None)[0]
        if not configs:
            return
        ns = str((pod.get("metadata") or {}).get("namespace") or "")
        ns_obj = self.store.raw(("", "namespaces"), "", ns)
        ns_labels = ((ns_obj or {}).get("metadata") or {}).get("labels") or {}
        for cfg in sorted(configs, key=lambda c: str(c["metadata"]["name"])):
            for hook in cfg.get("webhooks") or []:
                if not self._matches(hook, ns_labels, pod):
                    continue
                self._call(cfg, hook, pod, generated_name=generated_name)

    @staticmethod
    def _matches(hook: Obj, ns_labels: dict[str, str], pod: Obj) -> bool:
        rules = hook.get("rules") or []
        hit = False
        for r in rules:
            ops = r.get("operations") or []
            if not ("CREATE" in ops or "*" in ops):
                continue
            if not ({"", "*"} & set(r.get("apiGroups") or [])):
                continue
            if not ({"v1", "*"} & set(r.get("apiVersions") or [])):
                continue
            if not ({"pods", "*", "*/*"} & set(r.get("resources") or [])):
                continue
            hit = True
        if not hit:
            return False
        if not label_selector_matches(hook.get("namespaceSelector"), ns_labels):
            return False
        labels = (pod.get("metadata") or {}).get("labels") or {}
        return label_selector_matches(hook.get("objectSelector"), labels)

    def _call(self, cfg: Obj, hook: Obj, pod: Obj, *, generated_name: bool) -> None:
        name = str(hook.get("name", ""))
        v1 = str(cfg.get("apiVersion", "")).endswith("/v1")
        policy = hook.get("failurePolicy") or ("Fail" if v1 else "Ignore")
        try:
            injector = self._injector(hook, default_timeout=10 if v1 else 30)
            if injector is None:
                return  # not an Istio injector: not emulated
            review = deep_copy(pod)
            meta = review.setdefault("metadata", {})
            if generated_name:
                meta["name"] = ""  # names are generated after mutating admission
            for k in ("uid", "creationTimestamp", "resourceVersion", "generation"):
                meta.pop(k, None)
            review.pop("status", None)
            try:
                mutated = injector.inject(review)
            except Denied as e:
                raise errors.ApiError(f"admission webhook {json.dumps(name)} denied the request: {e}",
                                      code=400, reason="") from None
            if mutated is None:
                return
            m_meta = mutated["metadata"]
            meta_live = pod["metadata"]
            meta_live["annotations"] = m_meta.get("annotations") or {}
            pod["spec"] = mutated["spec"]
        except CallFailed as e:
            if policy == "Ignore":
                return
            message = f"failed calling webhook {json.dumps(name)}: {e}"
            raise errors.InternalError(f"Internal error occurred: {message}",
                                       causes=[{"message": message}]) from None

    def _injector(self, hook: Obj, *, default_timeout: int) -> Injector | None:
        cc = hook.get("clientConfig") or {}
        svc_ref = cc.get("service")
        if not isinstance(svc_ref, dict):
            return None
        ns, svc_name = str(svc_ref.get("namespace", "")), str(svc_ref.get("name", ""))
        port = svc_ref.get("port", 443)
        path = svc_ref.get("path", "") or ""
        timeout = hook.get("timeoutSeconds") or default_timeout
        url = f"https://{svc_name}.{ns}.svc:{port}{path}?timeout={timeout}s"
        svc = self.store.raw(("", "services"), ns, svc_name)
        if svc is None:
            raise CallFailed(f'service "{svc_name}" not found')
        selector = (svc.get("spec") or {}).get("selector") or {}
        deployment = None
        for d in self.store.list_raw(("apps", "deployments"), ns)[0]:
            labels = (((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                deployment = d
                break
        container = None
        if deployment is not None:
            for c in deployment["spec"]["template"]["spec"].get("containers") or []:
                if "sidecar_injector" in str(c.get("image", "")):
                    container = c
        if deployment is None or container is None:
            return None
        no_endpoints = CallFailed(f'Post {url}: no endpoints available for service "{svc_name}"')
        try:
            injector = self._cached_load(deployment, container, ns)
        except InjectorDown as e:
            message = str(e) if e.reason == "FailedMount" else f"failed to create injection webhook: {e}"
            self._report(deployment, message, reason=e.reason)
            raise no_endpoints from None
        self._reported.pop(deployment["metadata"]["uid"], None)
        if not self._ready_endpoints(ns, svc_name):
            raise no_endpoints
        return injector

    def _ready_endpoints(self, ns: str, name: str) -> bool:
        ep = self.store.raw(("", "endpoints"), ns, name)
        return any(s.get("addresses") for s in (ep or {}).get("subsets") or [])

    def _cached_load(self, deployment: Obj, container: Obj, ns: str) -> Injector:
        """``_load``, once per version of the Deployment and of the namespace's ConfigMaps
        (what an injector re-reads when its files change)."""
        names = {str(v["configMap"].get("name")) for v in deployment["spec"]["template"]["spec"].get("volumes") or []
                 if isinstance(v.get("configMap"), dict)}
        key = (str(deployment["metadata"].get("resourceVersion")), tuple(sorted(
            (n, str(((self.store.raw(("", "configmaps"), ns, n) or {}).get("metadata") or {}).get("resourceVersion")))
            for n in names)))
        uid = str(deployment["metadata"]["uid"])
        hit = self._loaded.get(uid)
        if hit is not None and hit[0] == key:
            return hit[1]
        injector = self._load(deployment, container, ns)
        self._loaded[uid] = (key, injector)
        return injector

    def _load(self, deployment: Obj, container: Obj, ns: str) -> Injector:
        """Read the files the injector reads at start (``loadConfig``)."""
        minor = injector_minor(str(container.get("image", "")))
        args = [str(a) for a in container.get("args") or []]
        config_path = _flag(args, "injectConfig", "/etc/istio/inject/config")
        mesh_path = _flag(args, "meshConfig", "/etc/istio/config/mesh")
        values_path = _flag(args, "injectValues", "/etc/istio/inject/values")
        config_text = self._file(deployment, container, ns, config_path)
        try:
            config = load_yaml(config_text) or {}
        except yaml.YAMLError as e:
            raise InjectorDown(f"error converting YAML to JSON: yaml: {e}") from None
        if not isinstance(config, dict):
            raise InjectorDown("error unmarshaling JSON: json: cannot unmarshal "
                               f"{_json_kind(config)} into Go value of type inject.Config")
        values = self._file(deployment, container, ns, values_path) if minor >= 2 else None
        mesh = read_mesh_config(self._file(deployment, container, ns, mesh_path), with_sds=minor >= 2)
        return Injector(minor=minor, config=config, template_text=str(config.get("template") or ""),
                        values=values, mesh=mesh)

    def _file(self, deployment: Obj, container: Obj, ns: str, path: str) -> str:
        """The content of ``path`` in the injector's container: the ConfigMap volume
        mounted at its directory, the key named like the file (or listed in ``items``)."""
        missing = InjectorDown(f"open {path}: no such file or directory")
        directory, filename = posixpath.split(path)
        mount = next((m for m in container.get("volumeMounts") or []
                      if posixpath.normpath(m.get("mountPath", "")) == posixpath.normpath(directory)), None)
        if mount is None:
            raise missing
        volumes = deployment["spec"]["template"]["spec"].get("volumes") or []
        vol = next((v for v in volumes if v.get("name") == mount.get("name")), None)
        if vol is None or "configMap" not in vol:
            raise missing
        cm_name = str(vol["configMap"].get("name", ""))
        cm = self.store.raw(("", "configmaps"), ns, cm_name)
        data = (cm or {}).get("data") or {}
        optional = bool(vol["configMap"].get("optional"))
        if cm is None and not optional:
            raise InjectorDown(f'MountVolume.SetUp failed for volume "{vol["name"]}" : '
                               f'configmap "{cm_name}" not found', reason="FailedMount")
        items = vol["configMap"].get("items")
        if items:
            key = next((i.get("key") for i in items if i.get("path") == filename), None)
            # a listed key the ConfigMap lacks keeps the volume from mounting at all: the
            # injector's container never starts (the kubelet's FailedMount)
            absent = next((i.get("key") for i in items if i.get("key") not in data), None)
            if absent is not None and not optional:
                raise InjectorDown(f'MountVolume.SetUp failed for volume "{vol["name"]}" : '
                                   f"configmap references non-existent config key: {absent}", reason="FailedMount")
        else:
            key = filename
        if cm is None or key is None or key not in data:
            raise missing
        return str(data[key])

    def _report(self, deployment: Obj, message: str, *, reason: str) -> None:
        """A Warning Event on the injector's Deployment saying why it cannot start (once
        per cause): what its crash-looping Pods' log, or the kubelet, would say."""
        uid = deployment["metadata"]["uid"]
        if self._reported.get(uid) == message:
            return
        self._reported[uid] = message
        m = deployment["metadata"]
        now = rfc3339(self.store.clock())
        event: Obj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{m['name']}.{hashlib.sha256(message.encode()).hexdigest()[:16]}",
                         "namespace": m["namespace"]},
            "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": m["name"],
                               "namespace": m["namespace"], "uid": uid},
            "reason": reason, "message": message, "type": "Warning",
            "source": {"component": "kubelet" if reason == "FailedMount" else "sidecar-injector"}, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
        }
        try:
            self.store.create(event, copy_result=False)
        except errors.ApiError:
            pass


__all__ = ["Injector", "Webhooks", "functions", "type_of"]
