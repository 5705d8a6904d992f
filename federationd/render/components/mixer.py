"""Mixer: the policy and telemetry Deployments and the configuration they run on.

Policy and telemetry are the same binary with different roles, so one table
(:data:`ROLES`) drives both. The configuration resources are what Istio's charts install
by default: the attribute vocabulary (``istioproxy``, ``kubernetes``), the kubernetesenv
attribute generator, Prometheus metrics and stdio access logs. They use the generic
``handler``/``instance`` kinds, which both 1.1 and 1.2 serve (1.2 dropped the
adapter-specific kinds). ``multiClusterSupport`` lets the kubernetesenv adapter read the
remote clusters' kubeconfig Secrets so attributes of remote workloads resolve.

Mirrors helm ``istio/charts/mixer/templates/{deployment,service,config}.yaml`` (1.1.14,
1.2.8) and the operator's ``pkg/resources/mixer`` (release-1.2). With control-plane
security galley serves MCP over TLS only, so mixer dials ``mcps://`` (telemetry with
its workload certificate files, as upstream); the DestinationRules require
``ISTIO_MUTUAL`` on port 15004 only (9091 stays plain for sidecars without control-plane
security) and are exported to every namespace when ``defaultConfigVisibility`` would
otherwise hide them.
"""

from __future__ import annotations

from dataclasses import dataclass

from federationd.render.components import context as c
from federationd.render.components.context import Ctx
from federationd.render.objects import Obj, obj

COMPONENT = "mixer"
SA = "istio-mixer-service-account"
CONFIG = "config.istio.io/v1alpha2"


@dataclass(frozen=True)
class Role:
    name: str  # policy | telemetry

    @property
    def deployment(self) -> str:
        return f"istio-{self.name}"

    @property
    def app(self) -> dict[str, str]:
        return {"app": self.name, "istio": "mixer", "istio-mixer-type": self.name}


POLICY = Role("policy")
TELEMETRY = Role("telemetry")
ROLES = (POLICY, TELEMETRY)


def _mixer_args(ctx: Ctx, role: Role) -> list[str]:
    spec = ctx.spec
    args = [
        "--monitoringPort=15014",
        "--address",
        "unix:///sock/mixer.socket",
        "--log_output_level=default:info",
    ]
    if spec.use_mcp and spec.control_plane_security_enabled:
        args.append(f"--configStoreURL=mcps://istio-galley.{ctx.ns}.svc:9901")
        if role is TELEMETRY:
            args += [
                "--certFile=/etc/certs/cert-chain.pem",
                "--keyFile=/etc/certs/key.pem",
                "--caCertFile=/etc/certs/root-cert.pem",
            ]
    elif spec.use_mcp:
        args.append(f"--configStoreURL=mcp://istio-galley.{ctx.ns}.svc:9901")
    else:
        args.append("--configStoreURL=k8s://")
    args.append(f"--configDefaultNamespace={ctx.ns}")
    if ctx.profile.has("mixer_adapter_crds_flag"):
        args.append(f"--useAdapterCRDs={'true' if spec.watch_adapter_crds else 'false'}")
    if spec.tracing.enabled and spec.tracing.tracer == "zipkin":
        args.append(f"--trace_zipkin_url=http://{spec.tracing.zipkin.address}/api/v1/spans")
    if role is TELEMETRY and ctx.profile.has("mixer_loadshedding"):
        args += ["--averageLatencyThreshold", "100ms", "--loadsheddingMode", "enforce"]
    return args


def _deployment(ctx: Ctx, role: Role) -> list[Obj]:
    m = ctx.spec.mixer
    adapter_secret = f"{role.name}-adapter-secret"
    mixer: Obj = {
        "name": "mixer",
        "image": m.image,
        "imagePullPolicy": ctx.pull_policy,
        "args": _mixer_args(ctx, role),
        "env": [c.env("GODEBUG", "gctrace=1"), c.env("GOMAXPROCS", "6")],
        "ports": [
            {"containerPort": 15014, "protocol": "TCP"},
            {"containerPort": 42422, "protocol": "TCP"},
        ],
        "livenessProbe": c.probe_http("/version", 15014, initialDelaySeconds=5, periodSeconds=5),
        "resources": c.resources(m.resources),
        "volumeMounts": [
            c.mount("istio-certs", "/etc/certs", read_only=True),
            c.mount("uds-socket", "/sock"),
            c.mount(adapter_secret, f"/var/run/secrets/istio.io/{role.name}/adapter", read_only=True),
        ],
    }
    proxy = c.proxy_sidecar(
        ctx,
        service_cluster=role.deployment,
        template_file=f"/etc/istio/proxy/envoy_{role.name}.yaml.tmpl",
        ports=[
            {"containerPort": 9091, "protocol": "TCP"},
            {"containerPort": 15004, "protocol": "TCP"},
            {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"},
        ],
        extra_mounts=[c.mount("uds-socket", "/sock")],
    )
    template = c.pod_template(
        app_labels=role.app,
        containers=[mixer, proxy],
        service_account=SA,
        scheduling=c.scheduling_of(m),
        volumes=[
            *(c.sds_volumes(ctx) if ctx.profile.has("control_plane_sds") else []),
            c.certs_volume(SA),
            {"name": "uds-socket", "emptyDir": {}},
            c.secret_volume(adapter_secret, adapter_secret),
        ],
    )
    ports = [
        c.port("grpc-mixer", 9091),
        c.port("grpc-mixer-mtls", 15004),
        c.port("http-monitoring", 15014),
    ]
    if role is TELEMETRY:
        ports.append(c.port("prometheus", 42422))
    traffic: Obj = {}
    if ctx.spec.control_plane_security_enabled:
        traffic["portLevelSettings"] = [
            {"port": {"number": 15004}, "tls": {"mode": "ISTIO_MUTUAL"}}
        ]
    traffic["connectionPool"] = {
        "http": {"http2MaxRequests": 10000, "maxRequestsPerConnection": 10000}
    }
    dr_spec: Obj = {"host": ctx.svc(role.deployment)}
    if ctx.spec.default_config_visibility:
        dr_spec["exportTo"] = ["*"]
    dr_spec["trafficPolicy"] = traffic
    return [
        *c.autoscaled(
            role.deployment,
            ctx=ctx,
            component=COMPONENT,
            app_labels=role.app,
            template=template,
            replica_count=m.replica_count,
            min_replicas=m.min_replicas,
            max_replicas=m.max_replicas,
        ),
        c.service(
            role.deployment,
            ctx=ctx,
            component=COMPONENT,
            app_labels=role.app,
            selector={"istio": "mixer", "istio-mixer-type": role.name},
            ports=ports,
            # helm mixer/templates/service.yaml: visible from every namespace.
            annotations={"networking.istio.io/exportTo": "*"},
        ),
        *c.pdb(role.deployment, ctx=ctx, component=COMPONENT, app_labels=role.app),
        obj(
            "networking.istio.io/v1alpha3",
            "DestinationRule",
            role.deployment,
            component=COMPONENT,
            namespace=ctx.ns,
            extra_labels=role.app,
            spec=dr_spec,
        ),
    ]


def _rbac(ctx: Ctx) -> list[Obj]:
    app = {"app": "mixer", "istio": "mixer"}
    # helm mixer/templates/clusterrole.yaml and operator mixer/rbac.go: secrets always (the
    # kubernetesenv adapter reads remote registries' kubeconfig Secrets).
    core = ["configmaps", "endpoints", "pods", "services", "namespaces", "secrets", "replicationcontrollers"]
    return [
        c.service_account(SA, ctx=ctx, component=COMPONENT, app_labels=app),
        *c.cluster_rbac(
            "istio-mixer",
            ctx=ctx,
            component=COMPONENT,
            app_labels=app,
            service_account_name=SA,
            rules=[
                c.rule(["config.istio.io"], ["*"], ["create", "get", "list", "watch", "patch"]),
                c.rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"]),
                c.rule([""], sorted(core), ["get", "list", "watch"]),
                c.rule(["extensions", "apps"], ["replicasets"], ["get", "list", "watch"]),
            ],
        ),
    ]


# --- configuration resources ----------------------------------------------------------------


def _cr(ctx: Ctx, kind: str, name: str, spec: Obj) -> Obj:
    return obj(CONFIG, kind, name, component=COMPONENT, namespace=ctx.ns, spec=spec)


_ISTIOPROXY_ATTRIBUTES = {
    "origin.ip": "IP_ADDRESS",
    "origin.uid": "STRING",
    "origin.user": "STRING",
    "request.headers": "STRING_MAP",
    "request.id": "STRING",
    "request.host": "STRING",
    "request.method": "STRING",
    "request.path": "STRING",
    "request.url_path": "STRING",
    "request.query_params": "STRING_MAP",
    "request.reason": "STRING",
    "request.referer": "STRING",
    "request.scheme": "STRING",
    "request.total_size": "INT64",
    "request.size": "INT64",
    "request.time": "TIMESTAMP",
    "request.useragent": "STRING",
    "response.code": "INT64",
    "response.duration": "DURATION",
    "response.headers": "STRING_MAP",
    "response.total_size": "INT64",
    "response.size": "INT64",
    "response.time": "TIMESTAMP",
    "response.grpc_status": "STRING",
    "response.grpc_message": "STRING",
    "source.uid": "STRING",
    "source.user": "STRING",
    "source.principal": "STRING",
    "destination.uid": "STRING",
    "destination.principal": "STRING",
    "destination.port": "INT64",
    "connection.event": "STRING",
    "connection.id": "STRING",
    "connection.received.bytes": "INT64",
    "connection.received.bytes_total": "INT64",
    "connection.sent.bytes": "INT64",
    "connection.sent.bytes_total": "INT64",
    "connection.duration": "DURATION",
    "connection.mtls": "BOOL",
    "connection.requested_server_name": "STRING",
    "context.protocol": "STRING",
    "context.proxy_error_code": "STRING",
    "context.timestamp": "TIMESTAMP",
    "context.time": "TIMESTAMP",
    "context.reporter.local": "BOOL",
    "context.reporter.kind": "STRING",
    "context.reporter.uid": "STRING",
    "api.service": "STRING",
    "api.version": "STRING",
    "api.operation": "STRING",
    "api.protocol": "STRING",
    "request.auth.principal": "STRING",
    "request.auth.audiences": "STRING",
    "request.auth.presenter": "STRING",
    "request.auth.claims": "STRING_MAP",
    "request.auth.raw_claims": "STRING",
    "request.api_key": "STRING",
    "rbac.permissive.response_code": "STRING",
    "rbac.permissive.effective_policy_id": "STRING",
    "check.error_code": "INT64",
    "check.error_message": "STRING",
    "check.cache_hit": "BOOL",
    "quota.cache_hit": "BOOL",
}

_KUBERNETES_ATTRIBUTES = {
    f"{side}.{attr}": vt
    for side in ("source", "destination")
    for attr, vt in {
        "ip": "IP_ADDRESS",
        "labels": "STRING_MAP",
        "metadata": "STRING_MAP",
        "name": "STRING",
        "namespace": "STRING",
        "owner": "STRING",
        "service.uid": "STRING",
        "service.name": "STRING",
        "service.namespace": "STRING",
        "service.host": "STRING",
        "serviceAccount": "STRING",
        "workload.uid": "STRING",
        "workload.name": "STRING",
        "workload.namespace": "STRING",
        "container.name": "STRING",
    }.items()
}


def _manifest(ctx: Ctx, name: str, attrs: dict[str, str]) -> Obj:
    return _cr(
        ctx,
        "attributemanifest",
        name,
        {"attributes": {k: {"valueType": v} for k, v in sorted(attrs.items())}},
    )


_COMMON_DIMENSIONS = {
    "reporter": 'conditional((context.reporter.kind | "inbound") == "outbound", "source", "destination")',
    "source_workload": 'source.workload.name | "unknown"',
    "source_workload_namespace": 'source.workload.namespace | "unknown"',
    "source_principal": 'source.principal | "unknown"',
    "source_app": 'source.labels["app"] | "unknown"',
    "source_version": 'source.labels["version"] | "unknown"',
    "destination_workload": 'destination.workload.name | "unknown"',
    "destination_workload_namespace": 'destination.workload.namespace | "unknown"',
    "destination_principal": 'destination.principal | "unknown"',
    "destination_app": 'destination.labels["app"] | "unknown"',
    "destination_version": 'destination.labels["version"] | "unknown"',
    "destination_service": 'destination.service.host | "unknown"',
    "destination_service_name": 'destination.service.name | "unknown"',
    "destination_service_namespace": 'destination.service.namespace | "unknown"',
    "connection_security_policy": 'conditional((context.reporter.kind | "inbound") == "outbound", "unknown", conditional(connection.mtls | false, "mutual_tls", "none"))',
}
_HTTP_DIMENSIONS = {
    **_COMMON_DIMENSIONS,
    "request_protocol": 'api.protocol | context.protocol | "unknown"',
    "response_code": "response.code | 200",
    "response_flags": 'context.proxy_error_code | "-"',
}
_TCP_DIMENSIONS = {**_COMMON_DIMENSIONS, "response_flags": 'context.proxy_error_code | "-"'}

# name → (metric value expression, kind of traffic, prometheus kind, prometheus name)
_METRICS = {
    "requestcount": ("1", "http", "COUNTER", "requests_total"),
    "requestduration": ("response.duration | \"0ms\"", "http", "DISTRIBUTION", "request_duration_seconds"),
    "requestsize": ("request.size | 0", "http", "DISTRIBUTION", "request_bytes"),
    "responsesize": ("response.size | 0", "http", "DISTRIBUTION", "response_bytes"),
    "tcpbytesent": ("connection.sent.bytes | 0", "tcp", "COUNTER", "tcp_sent_bytes_total"),
    "tcpbytereceived": ("connection.received.bytes | 0", "tcp", "COUNTER", "tcp_received_bytes_total"),
    "tcpconnectionsopened": ("1", "tcp", "COUNTER", "tcp_connections_opened_total"),
    "tcpconnectionsclosed": ("1", "tcp", "COUNTER", "tcp_connections_closed_total"),
}


def _config_resources(ctx: Ctx) -> list[Obj]:
    ns = ctx.ns
    kube_params: Obj = {
        "pod_cache_refresh_interval": "2m",
        "pod_cleanup_interval": "10s",
        "pod_ip_cache_timeout": "5m",
    }
    if ctx.spec.mixer.multi_cluster_support:
        kube_params["cluster_registries_namespace"] = ns
    out = [
        _manifest(ctx, "istioproxy", _ISTIOPROXY_ATTRIBUTES),
        _manifest(ctx, "kubernetes", _KUBERNETES_ATTRIBUTES),
        _cr(ctx, "handler", "kubernetesenv", {"compiledAdapter": "kubernetesenv", "params": kube_params}),
        _cr(
            ctx,
            "instance",
            "attributes",
            {
                "compiledTemplate": "kubernetes",
                "params": {
                    "source_uid": 'source.uid | ""',
                    "source_ip": 'source.ip | ip("0.0.0.0")',
                    "destination_uid": 'destination.uid | ""',
                    "destination_port": "destination.port | 0",
                },
                "attributeBindings": {
                    f"{side}.{a}": f"$out.{side}_{b} | {d}"
                    for side in ("source", "destination")
                    for a, b, d in (
                        ("ip", "pod_ip", 'ip("0.0.0.0")'),
                        ("uid", "pod_uid", '"unknown"'),
                        ("labels", "labels", 'emptyStringMap()'),
                        ("name", "pod_name", '"unknown"'),
                        ("namespace", "namespace", '"default"'),
                        ("owner", "owner", '"unknown"'),
                        ("serviceAccount", "service_account_name", '"unknown"'),
                        ("workload.uid", "workload_uid", '"unknown"'),
                        ("workload.name", "workload_name", '"unknown"'),
                        ("workload.namespace", "workload_namespace", '"unknown"'),
                    )
                },
            },
        ),
        _cr(
            ctx,
            "rule",
            "kubeattrgenrulerule",
            {"actions": [{"handler": "kubernetesenv", "instances": ["attributes"]}]},
        ),
        _cr(
            ctx,
            "rule",
            "tcpkubeattrgenrulerule",
            {
                "match": 'context.protocol == "tcp"',
                "actions": [{"handler": "kubernetesenv", "instances": ["attributes"]}],
            },
        ),
    ]
    # Prometheus metrics.
    prom_metrics = []
    for name, (value, kind, prom_kind, prom_name) in _METRICS.items():
        dims = _HTTP_DIMENSIONS if kind == "http" else _TCP_DIMENSIONS
        out.append(
            _cr(
                ctx,
                "instance",
                name,
                {
                    "compiledTemplate": "metric",
                    "params": {
                        "value": value,
                        "dimensions": dict(sorted(dims.items())),
                        "monitored_resource_type": '"UNSPECIFIED"',
                    },
                },
            )
        )
        metric: Obj = {
            "name": prom_name,
            "instance_name": f"{name}.instance.{ns}",
            "kind": prom_kind,
            "label_names": sorted(dims),
        }
        if prom_kind == "DISTRIBUTION":
            metric["buckets"] = (
                {"explicit_buckets": {"bounds": [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]}}
                if name == "requestduration"
                else {"exponentialBuckets": {"numFiniteBuckets": 8, "scale": 1, "growthFactor": 10}}
            )
        prom_metrics.append(metric)
    out.append(
        _cr(
            ctx,
            "handler",
            "prometheus",
            {"compiledAdapter": "prometheus", "params": {"metricsExpirationPolicy": {"metricsExpiryDuration": "10m"}, "metrics": prom_metrics}},
        )
    )
    http = [n for n, m in _METRICS.items() if m[1] == "http"]
    out += [
        _cr(
            ctx,
            "rule",
            "promhttp",
            {
                "match": '(context.protocol == "http" || context.protocol == "grpc") && (match((request.useragent | "-"), "kube-probe*") == false) && (match((request.useragent | "-"), "Prometheus*") == false)',
                "actions": [{"handler": "prometheus", "instances": http}],
            },
        ),
        _cr(
            ctx,
            "rule",
            "promtcp",
            {
                "match": 'context.protocol == "tcp"',
                "actions": [{"handler": "prometheus", "instances": ["tcpbytereceived", "tcpbytesent"]}],
            },
        ),
        _cr(
            ctx,
            "rule",
            "promtcpconnectionopen",
            {
                "match": '((context.protocol | "") == "tcp") && ((connection.event | "na") == "open")',
                "actions": [{"handler": "prometheus", "instances": ["tcpconnectionsopened"]}],
            },
        ),
        _cr(
            ctx,
            "rule",
            "promtcpconnectionclosed",
            {
                "match": '((context.protocol | "") == "tcp") && ((connection.event | "na") == "close")',
                "actions": [{"handler": "prometheus", "instances": ["tcpconnectionsclosed"]}],
            },
        ),
    ]
    # Access logs on stdout.
    out += [
        _cr(
            ctx,
            "handler",
            "stdio",
            {
                "compiledAdapter": "stdio",
                "params": {"outputAsJson": True, "severity_levels": {"warning": 1}},
            },
        ),
        _cr(
            ctx,
            "instance",
            "accesslog",
            {
                "compiledTemplate": "logentry",
                "params": {
                    "severity": '"Info"',
                    "timestamp": 'request.time',
                    "variables": dict(sorted({**_HTTP_DIMENSIONS, "requestId": 'request.id | ""', "method": 'request.method | ""', "url": 'request.path | ""', "responseTimestamp": 'response.time', "latency": 'response.duration | "0ms"'}.items())),
                    "monitored_resource_type": '"global"',
                },
            },
        ),
        _cr(
            ctx,
            "instance",
            "tcpaccesslog",
            {
                "compiledTemplate": "logentry",
                "params": {
                    "severity": '"Info"',
                    "timestamp": 'context.time | timestamp("2017-01-01T00:00:00Z")',
                    "variables": dict(sorted({**_TCP_DIMENSIONS, "connectionEvent": 'connection.event | ""', "connectionDuration": 'connection.duration | "0ms"'}.items())),
                    "monitored_resource_type": '"global"',
                },
            },
        ),
        _cr(
            ctx,
            "rule",
            "stdio",
            {
                "match": 'context.protocol == "http" || context.protocol == "grpc"',
                "actions": [{"handler": "stdio", "instances": ["accesslog"]}],
            },
        ),
        _cr(
            ctx,
            "rule",
            "stdiotcp",
            {
                "match": 'context.protocol == "tcp"',
                "actions": [{"handler": "stdio", "instances": ["tcpaccesslog"]}],
            },
        ),
    ]
    return out


def build(ctx: Ctx) -> list[Obj]:
    out = _rbac(ctx)
    for role in ROLES:
        out += _deployment(ctx, role)
    out += _config_resources(ctx)
    return out
