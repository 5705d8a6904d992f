"""Ingress and egress gateways, and the Istio Gateway resources that give them a role.

Both gateways are the same Envoy "router" with different names, default ports and
service types (data in :data:`INGRESS`/:data:`EGRESS`). The network name of the cluster
(``ISTIO_META_NETWORK``) comes from the facts: that is what makes split-horizon EDS send
traffic for another network's endpoints through that network's gateway.

Istio resources rendered here:
* ``k8singress`` — the Gateway that lets the ingress gateway serve Kubernetes Ingresses;
* mesh expansion — the gateway and routes that expose pilot and citadel through the
  ingress gateway, and the SNI pass-through ``cluster-aware-gateway`` that split-horizon
  traffic between clusters enters by (a remote gets only the latter: it has no pilot);
* multi-mesh — the ``*.global`` pass-through gateways, the EnvoyFilter that rewrites
  ``.global`` SNI clusters to ``.svc.cluster.local`` and their mTLS DestinationRule.

Mirrors helm ``istio/charts/gateways/templates/{deployment,service,preconfigured}.yaml``,
``pilot/templates/meshexpansion.yaml`` and ``security/templates/meshexpansion.yaml``
(1.1.14, 1.2.8), and the operator's ``pkg/resources/gateways`` (release-1.2). Remote
proxies reach pilot through the mesh-expansion gateway on 15011 (TCP, with
``meshexpansion-dr-pilot`` turning off the gateway's own TLS origination under
control-plane security: the proxy's mTLS passes through) and mixer on 15004 by SNI
(``tls-mixer``, AUTO_PASSTHROUGH).
"""

from __future__ import annotations

from dataclasses import dataclass

from federationd.api.v1beta1 import GatewayConfiguration, IstioSpec, ServicePort
from federationd.render.components import context as c
from federationd.render.components.context import Ctx
from federationd.render.objects import Obj, obj


@dataclass(frozen=True)
class GatewayKind:
    component: str
    name: str
    istio_label: str
    #: Extra service ports when mesh expansion is on.
    mesh_expansion_ports: tuple[tuple[str, int], ...] = ()

    @property
    def service_account(self) -> str:
        return f"{self.name}-service-account"

    @property
    def app(self) -> dict[str, str]:
        return {"app": self.name, "istio": self.istio_label}


INGRESS = GatewayKind(
    component="ingressgateway",
    name="istio-ingressgateway",
    istio_label="ingressgateway",
    mesh_expansion_ports=(
        ("tcp-pilot-grpc-tls", 15011),
        ("tcp-mixer-grpc-tls", 15004),
        ("tcp-citadel-grpc-tls", 8060),
        ("tcp-dns-tls", 853),
    ),
)
EGRESS = GatewayKind(component="egressgateway", name="istio-egressgateway", istio_label="egressgateway")

NETWORKING = "networking.istio.io/v1alpha3"


def _config(ctx: Ctx, kind: GatewayKind) -> GatewayConfiguration:
    gws = ctx.spec.gateways
    return gws.ingress if kind is INGRESS else gws.egress


def _service_ports(ctx: Ctx, kind: GatewayKind, cfg: GatewayConfiguration) -> list[Obj]:
    node_ports = cfg.service_type in ("NodePort", "LoadBalancer")
    out: list[Obj] = []
    seen: set[int] = set()
    for sp in cfg.ports:
        out.append(_port(sp, node_ports=node_ports))
        seen.add(sp.port)
    if kind is INGRESS and ctx.spec.mesh_expansion:
        for name, number in kind.mesh_expansion_ports:
            if number not in seen:
                out.append(c.port(name, number, target=number))
    return out


def _port(sp: ServicePort, *, node_ports: bool) -> Obj:
    p: Obj = {"port": sp.port, "protocol": sp.protocol or "TCP"}
    if sp.name:
        p["name"] = sp.name
    if sp.target_port is not None:
        p["targetPort"] = sp.target_port
    if node_ports and sp.node_port:
        p["nodePort"] = sp.node_port
    return p


def _container_ports(ports: list[Obj]) -> list[Obj]:
    out: list[Obj] = []
    seen: set[int] = set()
    for p in ports:
        tp = p.get("targetPort", p["port"])
        if isinstance(tp, int) and tp not in seen:
            seen.add(tp)
            out.append({"containerPort": tp, "protocol": p["protocol"]})
    if 15090 not in seen:
        out.append({"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"})
    return out


def _proxy(ctx: Ctx, kind: GatewayKind, cfg: GatewayConfiguration, ports: list[Obj]) -> Obj:
    spec = ctx.spec
    args = [
        "proxy",
        "router",
        "--domain",
        "$(POD_NAMESPACE).svc.cluster.local",
        "--log_output_level=default:info",
        "--drainDuration",
        "45s",
        "--parentShutdownDuration",
        "1m0s",
        "--connectTimeout",
        "10s",
        "--serviceCluster",
        kind.name,
        *c.tracing_args(ctx),
        "--proxyAdminPort",
        "15000",
        "--statusPort",
        "15020",
        "--controlPlaneAuthPolicy",
        ctx.control_plane_auth_policy,
        "--discoveryAddress",
        ctx.discovery_address,
    ]
    if ctx.profile.has("proxy_log_level"):
        args.append(f"--proxyLogLevel={spec.proxy.log_level}")
    if ctx.profile.has("proxy_component_log_level") and spec.proxy.component_log_level:
        # helm 1.2.8 gateways/templates/deployment.yaml --proxyComponentLogLevel
        args.append(f"--proxyComponentLogLevel={spec.proxy.component_log_level}")
    if cfg.application_ports:
        args += ["--applicationPorts", cfg.application_ports]
    env = [
        c.env_field("NODE_NAME", "spec.nodeName"),
        *c.pod_env(),
        c.env_field("INSTANCE_IP", "status.podIP"),
        c.env_field("HOST_IP", "status.hostIP"),
        c.env_field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        c.env_field("ISTIO_META_POD_NAME", "metadata.name"),
        c.env_field("ISTIO_META_CONFIG_NAMESPACE", "metadata.namespace"),
        c.env("ISTIO_META_ROUTER_MODE", "sni-dnat"),
        *c.network_env(ctx),
    ]
    if cfg.requested_network_view:
        env.append(c.env("ISTIO_META_REQUESTED_NETWORK_VIEW", cfg.requested_network_view))
    if spec.sds.enabled:
        env.append(c.env("SDS_ENABLED", "true"))
    if cfg.sds.enabled:
        env.append(c.env("ISTIO_META_USER_SDS", "true"))
    short = kind.istio_label
    mounts = [
        c.mount("istio-certs", "/etc/certs", read_only=True),
        c.mount(f"{short}-certs", f"/etc/istio/{short}-certs", read_only=True),
        c.mount(f"{short}-ca-certs", f"/etc/istio/{short}-ca-certs", read_only=True),
    ]
    mounts += c.sds_mounts(ctx, name="sdsudspath")
    if cfg.sds.enabled:
        mounts.append(c.mount(f"{short}sdsudspath", "/var/run/ingress_gateway"))
    return {
        "name": "istio-proxy",
        "image": spec.proxy.image,
        "imagePullPolicy": ctx.pull_policy,
        "args": args,
        "ports": _container_ports(ports),
        "readinessProbe": c.probe_http(
            "/healthz/ready", 15020, initialDelaySeconds=1, periodSeconds=2, failureThreshold=30
        ),
        "env": env,
        "resources": c.resources(cfg.resources),
        "volumeMounts": mounts,
    }


def build_gateway(ctx: Ctx, kind: GatewayKind) -> list[Obj]:
    cfg = _config(ctx, kind)
    short = kind.istio_label
    ports = _service_ports(ctx, kind, cfg)
    containers = [_proxy(ctx, kind, cfg, ports)]
    volumes = [
        c.certs_volume(kind.service_account),
        c.secret_volume(f"{short}-certs", f"istio-{short}-certs"),
        c.secret_volume(f"{short}-ca-certs", f"istio-{short}-ca-certs"),
    ]
    volumes += c.sds_volumes(ctx, name="sdsudspath")
    objs: list[Obj] = []
    if cfg.sds.enabled:
        volumes.append({"name": f"{short}sdsudspath", "emptyDir": {}})
        containers.insert(
            0,
            {
                "name": "ingress-sds",
                "image": cfg.sds.image,
                "imagePullPolicy": ctx.pull_policy,
                "env": [
                    c.env("ENABLE_WORKLOAD_SDS", "false"),
                    c.env("ENABLE_INGRESS_GATEWAY_SDS", "true"),
                    c.env_field("INGRESS_GATEWAY_NAMESPACE", "metadata.namespace"),
                ],
                "resources": c.resources(cfg.sds.resources),
                "volumeMounts": [c.mount(f"{short}sdsudspath", "/var/run/ingress_gateway")],
            },
        )
        role = f"{kind.name}-sds"
        objs += [
            obj(
                "rbac.authorization.k8s.io/v1",
                "Role",
                role,
                component=kind.component,
                namespace=ctx.ns,
                extra_labels=kind.app,
                rules=[c.rule([""], ["secrets"], ["get", "watch", "list"])],
            ),
            obj(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                role,
                component=kind.component,
                namespace=ctx.ns,
                extra_labels=kind.app,
                roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                subjects=[
                    {"kind": "ServiceAccount", "name": kind.service_account, "namespace": ctx.ns}
                ],
            ),
        ]
    template = c.pod_template(
        app_labels=kind.app,
        containers=containers,
        service_account=kind.service_account,
        scheduling=c.scheduling_of(cfg),
        volumes=volumes,
        init_containers=c.core_dump_init(ctx),
    )
    svc_spec: Obj = {"type": cfg.service_type or "ClusterIP"}
    if cfg.service_type == "LoadBalancer" and cfg.load_balancer_ip:
        svc_spec["loadBalancerIP"] = cfg.load_balancer_ip
    objs += [
        c.service_account(kind.service_account, ctx=ctx, component=kind.component, app_labels=kind.app),
        *c.cluster_rbac(
            kind.name,
            ctx=ctx,
            component=kind.component,
            app_labels=kind.app,
            service_account_name=kind.service_account,
            rules=[
                c.rule(
                    ["networking.istio.io"],
                    ["virtualservices", "destinationrules", "gateways"],
                    ["get", "watch", "list", "update"],
                )
            ],
        ),
        *c.autoscaled(
            kind.name,
            ctx=ctx,
            component=kind.component,
            app_labels=kind.app,
            template=template,
            replica_count=cfg.replica_count,
            min_replicas=cfg.min_replicas,
            max_replicas=cfg.max_replicas,
        ),
        c.service(
            kind.name,
            ctx=ctx,
            component=kind.component,
            app_labels=kind.app,
            selector=kind.app,
            ports=ports,
            extra_spec=svc_spec,
            extra_labels=dict(cfg.service_labels),
            annotations=dict(cfg.service_annotations),
        ),
        *c.pdb(kind.name, ctx=ctx, component=kind.component, app_labels=kind.app),
    ]
    return objs


def build_ingress(ctx: Ctx) -> list[Obj]:
    return build_gateway(ctx, INGRESS)


def build_egress(ctx: Ctx) -> list[Obj]:
    return build_gateway(ctx, EGRESS)


def ingress_enabled(spec: IstioSpec) -> bool:
    return spec.gateways.enabled and spec.gateways.ingress.enabled


def egress_enabled(spec: IstioSpec) -> bool:
    return spec.gateways.enabled and spec.gateways.egress.enabled


# --- Istio resources ---------------------------------------------------------------------------


def _gateway_cr(name: str, *, ctx: Ctx, component: str, selector: str, servers: list[Obj]) -> Obj:
    return obj(
        NETWORKING,
        "Gateway",
        name,
        component=component,
        namespace=ctx.ns,
        spec={"selector": {"istio": selector}, "servers": servers},
    )


def build_k8singress(ctx: Ctx) -> list[Obj]:
    return [
        _gateway_cr(
            "istio-autogenerated-k8s-ingress",
            ctx=ctx,
            component="k8singress",
            selector=INGRESS.istio_label,
            servers=[{"port": {"number": 80, "protocol": "HTTP2", "name": "http"}, "hosts": ["*"]}],
        )
    ]


def _cluster_aware_gateway(ctx: Ctx) -> Obj:
    return _gateway_cr(
        "cluster-aware-gateway",
        ctx=ctx,
        component="meshexpansion",
        selector=INGRESS.istio_label,
        servers=[
            {
                "port": {"number": 443, "name": "tls", "protocol": "TLS"},
                "tls": {"mode": "AUTO_PASSTHROUGH"},
                "hosts": ["*.local"],
            }
        ],
    )


def build_meshexpansion(ctx: Ctx) -> list[Obj]:
    if ctx.facts.role == "remote":
        return [_cluster_aware_gateway(ctx)]
    comp = "meshexpansion"
    servers: list[Obj] = [
        {"port": {"number": 15011, "protocol": "TCP", "name": "tcp-pilot"}, "hosts": ["*"]},
        {"port": {"number": 8060, "protocol": "TCP", "name": "tcp-citadel"}, "hosts": ["*"]},
        # Mixer is reached by SNI (outbound|15004||istio-policy…): passed through, not
        # terminated, so the sidecar's mTLS with mixer's proxy stays end to end.
        {
            "port": {"number": 15004, "protocol": "TLS", "name": "tls-mixer"},
            "tls": {"mode": "AUTO_PASSTHROUGH"},
            "hosts": ["*"],
        },
    ]

    def vs(name: str, port_: int, host: str) -> Obj:
        return obj(
            NETWORKING,
            "VirtualService",
            name,
            component=comp,
            namespace=ctx.ns,
            spec={
                "hosts": [ctx.svc(host)],
                "gateways": ["meshexpansion-gateway"],
                "tcp": [
                    {
                        "match": [{"port": port_}],
                        "route": [{"destination": {"host": ctx.svc(host), "port": {"number": port_}}}],
                    }
                ],
            },
        )

    out = [
        _gateway_cr("meshexpansion-gateway", ctx=ctx, component=comp, selector=INGRESS.istio_label, servers=servers),
        _cluster_aware_gateway(ctx),
        vs("meshexpansion-vs-pilot", 15011, "istio-pilot"),
        vs("meshexpansion-vs-citadel", 8060, "istio-citadel"),
    ]
    if ctx.spec.control_plane_security_enabled:
        # The proxy already speaks mTLS to pilot on 15011; without this the gateway
        # would wrap it in a second ISTIO_MUTUAL session pilot cannot read.
        out.append(
            obj(
                NETWORKING,
                "DestinationRule",
                "meshexpansion-dr-pilot",
                component=comp,
                namespace=ctx.ns,
                spec={
                    "host": ctx.svc("istio-pilot"),
                    "trafficPolicy": {
                        "portLevelSettings": [
                            {"port": {"number": 15011}, "tls": {"mode": "DISABLE"}}
                        ]
                    },
                },
            )
        )
    return out


def build_multimesh(ctx: Ctx) -> list[Obj]:
    comp = "multimesh"
    server = {
        "hosts": ["*.global"],
        "port": {"name": "tls", "number": 15443, "protocol": "TLS"},
        "tls": {"mode": "AUTO_PASSTHROUGH"},
    }
    out: list[Obj] = []
    if ingress_enabled(ctx.spec):
        out.append(
            _gateway_cr(
                "istio-multicluster-ingressgateway",
                ctx=ctx,
                component=comp,
                selector=INGRESS.istio_label,
                servers=[server],
            )
        )
    if egress_enabled(ctx.spec):
        out.append(
            _gateway_cr(
                "istio-multicluster-egressgateway",
                ctx=ctx,
                component=comp,
                selector=EGRESS.istio_label,
                servers=[server],
            )
        )
    if ingress_enabled(ctx.spec):
        # Remote clusters address this mesh's services as NAME.NS.global; the gateway
        # rewrites the SNI cluster to the local name (helm preconfigured.yaml 1.1.14 and
        # 1.2.8, operator gateways/multimesh.go).
        out.append(
            obj(
                NETWORKING,
                "EnvoyFilter",
                "istio-multicluster-ingressgateway",
                component=comp,
                namespace=ctx.ns,
                spec={
                    "workloadLabels": {"istio": INGRESS.istio_label},
                    "filters": [
                        {
                            "listenerMatch": {"portNumber": 15443, "listenerType": "GATEWAY"},
                            "insertPosition": {
                                "index": "AFTER",
                                "relativeTo": "envoy.filters.network.sni_cluster",
                            },
                            "filterName": "envoy.filters.network.tcp_cluster_rewrite",
                            "filterType": "NETWORK",
                            "filterConfig": {
                                "cluster_pattern": "\\.global$",
                                "cluster_replacement": ".svc.cluster.local",
                            },
                        }
                    ],
                },
            )
        )
    dr: Obj = {"host": "*.global"}
    if ctx.spec.default_config_visibility:
        dr["exportTo"] = ["*"]
    dr["trafficPolicy"] = {"tls": {"mode": "ISTIO_MUTUAL"}}
    out.append(
        obj(
            NETWORKING,
            "DestinationRule",
            "istio-multicluster-destinationrule",
            component=comp,
            namespace=ctx.ns,
            spec=dr,
        )
    )
    return out
