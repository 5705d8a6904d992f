"""Pilot: service discovery and xDS for every proxy of the mesh.

Pilot 1.1/1.2 reloads its ``meshNetworks`` file when it changes (``pilot/pkg/bootstrap/
server.go``, ``initMeshNetworks``: the gateways go to xDS at once), but each remote
cluster's registry keeps the networks pilot started with (``pilot/pkg/config/
clusterregistry/multicluster.go``: ``InitNetworkLookup(m.meshNetworks)``), so which
registry belongs to which network is read only at start. The pod template therefore
carries a hash of that mapping: a network added or removed rolls pilot, a gateway address
that moves does not (the operator hashes the whole meshNetworks and restarts pilot for
every gateway change — a deviation in the README's table). Locality load balancing needs
its feature flag in these versions.

Mirrors helm ``istio/charts/pilot/templates/{deployment,service,clusterrole}.yaml``
(1.1.14, 1.2.8) and the operator's ``pkg/resources/pilot`` (release-1.2).
"""

from __future__ import annotations

import msgspec

from federationd.render.components import context as c
from federationd.render.components.context import Ctx
from federationd.render.objects import CONFIG_HASH_ANNOTATION, Obj, content_hash

COMPONENT = "pilot"
NAME = "istio-pilot"
SA = "istio-pilot-service-account"
APP = {"app": "pilot", "istio": "pilot"}


def mesh_networks_hash(ctx: Ctx) -> str:
    """A hash of what pilot reads of ``meshNetworks`` only at start: each network's
    endpoints (registries and CIDRs), not its gateways (``network_endpoints``: a moved
    gateway does not even rebuild pilot)."""
    return content_hash([msgspec.to_builtins(n) for n in ctx.facts.network_endpoints])


def locality_lb_enabled(ctx: Ctx) -> bool:
    lb = ctx.spec.locality_lb
    return bool(lb is not None and lb.enabled)


def _discovery(ctx: Ctx) -> Obj:
    p = ctx.spec.pilot
    args = [
        "discovery",
        "--monitoringAddr=:15014",
        "--log_output_level=default:info",
        "--domain",
        "cluster.local",
    ]
    if ctx.spec.watch_one_namespace:
        args += ["-a", ctx.ns]
    # helm pilot/templates/deployment.yaml (1.1.14, 1.2.8), operator pilot/deployment.go:
    # with control-plane security pilot serves 15011 itself unless its sidecar does
    # (then no flag at all); without it the secure port is switched off.
    if ctx.spec.control_plane_security_enabled:
        if not p.sidecar:
            args += ["--secureGrpcAddr", ":15011"]
    else:
        args += ["--secureGrpcAddr", ""]
    args += ["--keepaliveMaxServerConnectionAge", "30m"]
    env = [
        *c.pod_env(),
        c.env("GODEBUG", "gctrace=1"),
        c.env("PILOT_PUSH_THROTTLE", "100"),
        c.env("PILOT_TRACE_SAMPLING", _sampling(p.trace_sampling)),
    ]
    env += [c.env(k, v) for k, v in sorted(ctx.profile.pilot_env.items())]
    if locality_lb_enabled(ctx):
        env.append(c.env("PILOT_ENABLE_LOCALITY_LOAD_BALANCING", "1"))
    return {
        "name": "discovery",
        "image": p.image,
        "imagePullPolicy": ctx.pull_policy,
        "args": args,
        "ports": [
            {"containerPort": 8080, "protocol": "TCP"},
            {"containerPort": 15010, "protocol": "TCP"},
            *([] if p.sidecar else [{"containerPort": 15011, "protocol": "TCP"}]),
        ],
        "readinessProbe": c.probe_http(
            "/ready", 8080, initialDelaySeconds=5, periodSeconds=30, timeoutSeconds=5
        ),
        "env": env,
        "resources": c.resources(p.resources),
        "volumeMounts": [
            c.mount("config-volume", "/etc/istio/config"),
            c.mount("istio-certs", "/etc/certs", read_only=True),
        ],
    }


def _sampling(v: float) -> str:
    # "1.0" rather than "1": the chart rendered the float as written.
    return repr(float(v))


def build(ctx: Ctx) -> list[Obj]:
    p = ctx.spec.pilot
    containers = [_discovery(ctx)]
    if p.sidecar:
        containers.append(
            c.proxy_sidecar(
                ctx,
                service_cluster=NAME,
                template_file="/etc/istio/proxy/envoy_pilot.yaml.tmpl",
                ports=[
                    {"containerPort": n, "protocol": "TCP"} for n in (15003, 15005, 15007, 15011)
                ],
            )
        )
    template = c.pod_template(
        app_labels=APP,
        containers=containers,
        service_account=SA,
        scheduling=c.scheduling_of(p),
        volumes=[
            *(c.sds_volumes(ctx) if ctx.profile.has("control_plane_sds") else []),
            c.configmap_volume("config-volume", "istio"),
            c.certs_volume(SA),
        ],
        annotations={CONFIG_HASH_ANNOTATION: mesh_networks_hash(ctx)},
    )
    return [
        c.service_account(SA, ctx=ctx, component=COMPONENT, app_labels=APP),
        *c.cluster_rbac(
            "istio-pilot",
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            service_account_name=SA,
            rules=[
                c.rule(["config.istio.io"], ["*"], ["*"]),
                c.rule(["rbac.istio.io"], ["*"], ["get", "watch", "list"]),
                c.rule(["networking.istio.io"], ["*"], ["*"]),
                c.rule(["authentication.istio.io"], ["*"], ["*"]),
                c.rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["*"]),
                c.rule(["extensions", "networking.k8s.io"], ["ingresses", "ingresses/status"], ["*"]),
                c.rule([""], ["configmaps"], ["create", "get", "list", "watch", "update"]),
                c.rule([""], ["endpoints", "pods", "services", "namespaces", "nodes", "secrets"], ["get", "list", "watch"]),
            ],
        ),
        *c.autoscaled(
            NAME,
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            template=template,
            replica_count=p.replica_count,
            min_replicas=p.min_replicas,
            max_replicas=p.max_replicas,
        ),
        c.service(
            NAME,
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            selector={"istio": "pilot"},
            ports=[
                c.port("grpc-xds", 15010),
                c.port("https-xds", 15011),
                c.port("http-legacy-discovery", 8080),
                c.port("http-monitoring", 15014),
            ],
        ),
        *c.pdb(NAME, ctx=ctx, component=COMPONENT, app_labels=APP),
    ]
