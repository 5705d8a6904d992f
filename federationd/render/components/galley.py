"""Galley: configuration validation (its own validating webhook) and, with ``useMCP``,
the configuration source pilot and mixer read over MCP.

Galley registers the ValidatingWebhookConfiguration itself from the file in its
ConfigMap (it fills in its own CA bundle), so federationd renders the file, not the
webhook object.

Mirrors helm ``install/kubernetes/helm/istio/charts/galley/templates/`` (1.1.14, 1.2.8:
deployment, configmap, service, clusterrole) and the source operator's
``pkg/resources/galley`` (release-1.2).
"""

from __future__ import annotations

from federationd.render.components import context as c
from federationd.render.components.context import Ctx
from federationd.render.objects import Obj, obj, to_yaml

COMPONENT = "galley"
NAME = "istio-galley"
SA = "istio-galley-service-account"
APP = {"app": "galley", "istio": "galley"}
CONFIGMAP = "istio-galley-configuration"

_PILOT_KINDS = {
    "config.istio.io": ["httpapispecs", "httpapispecbindings", "quotaspecs", "quotaspecbindings"],
    "rbac.istio.io": ["*"],
    "authentication.istio.io": ["*"],
    "networking.istio.io": ["*"],
}
_MIXER_KINDS = {"config.istio.io": ["rules", "attributemanifests", "adapters", "handlers", "instances", "templates"]}


def _webhook(name: str, path: str, ctx: Ctx, kinds: dict[str, list[str]]) -> Obj:
    return {
        "name": name,
        "clientConfig": {"service": {"name": NAME, "namespace": ctx.ns, "path": path}},
        "rules": [
            {
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": [group],
                "apiVersions": ["*"],
                "resources": resources,
            }
            for group, resources in sorted(kinds.items())
        ],
        "failurePolicy": "Fail",
        "sideEffects": "None",
    }


def webhook_config(ctx: Ctx) -> Obj:
    """The ValidatingWebhookConfiguration galley installs and keeps patched itself."""
    hooks = [_webhook("pilot.validation.istio.io", "/admitpilot", ctx, _PILOT_KINDS)]
    if ctx.spec.mixer.enabled:
        hooks.append(_webhook("mixer.validation.istio.io", "/admitmixer", ctx, _MIXER_KINDS))
    return {
        "apiVersion": "admissionregistration.k8s.io/v1beta1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": NAME, "labels": dict(APP)},
        "webhooks": hooks,
    }


def _args(ctx: Ctx) -> list[str]:
    args = [
        "server",
        "--meshConfigFile=/etc/mesh-config/mesh",
        "--livenessProbeInterval=1s",
        "--livenessProbePath=/healthliveness",
        "--readinessProbePath=/healthready",
        "--readinessProbeInterval=1s",
        f"--deployment-namespace={ctx.ns}",
        "--monitoringPort=15014",
        "--validation-webhook-config-file",
        "/etc/config/validatingwebhookconfiguration.yaml",
        "--log_output_level=default:info",
    ]
    # helm galley/templates/deployment.yaml: said either way. Without it galley serves
    # MCP over TLS (the default), which is what mixer's mcps:// expects.
    args.append(f"--insecure={'false' if ctx.spec.control_plane_security_enabled else 'true'}")
    if not ctx.spec.use_mcp:
        args.append("--enable-server=false")
    return args


def build(ctx: Ctx) -> list[Obj]:
    g = ctx.spec.galley
    probe = ["/usr/local/bin/galley", "probe", "--interval=10s"]
    container: Obj = {
        "name": "galley",
        "image": g.image,
        "imagePullPolicy": ctx.pull_policy,
        "command": ["/usr/local/bin/galley"],
        "args": _args(ctx),
        "ports": [
            {"containerPort": 443, "protocol": "TCP"},
            {"containerPort": 15014, "protocol": "TCP"},
            {"containerPort": 9901, "protocol": "TCP"},
        ],
        "resources": c.resources(g.resources),
        "volumeMounts": [
            c.mount("certs", "/etc/certs", read_only=True),
            c.mount("config", "/etc/config", read_only=True),
            c.mount("mesh-config", "/etc/mesh-config", read_only=True),
        ],
        "livenessProbe": c.probe_exec(
            [*probe, "--probe-path=/healthliveness"], initialDelaySeconds=5, periodSeconds=5
        ),
        "readinessProbe": c.probe_exec(
            [*probe, "--probe-path=/healthready"], initialDelaySeconds=5, periodSeconds=5
        ),
    }
    template = c.pod_template(
        app_labels=APP,
        containers=[container],
        service_account=SA,
        scheduling=c.scheduling_of(g),
        volumes=[
            c.secret_volume("certs", f"istio.{SA}"),
            c.configmap_volume("config", CONFIGMAP),
            c.configmap_volume("mesh-config", "istio"),
        ],
    )
    return [
        c.service_account(SA, ctx=ctx, component=COMPONENT, app_labels=APP),
        *c.cluster_rbac(
            "istio-galley",
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            service_account_name=SA,
            rules=[
                c.rule(["admissionregistration.k8s.io"], ["validatingwebhookconfigurations"], ["*"]),
                c.rule(
                    [
                        "config.istio.io",
                        "rbac.istio.io",
                        "security.istio.io",
                        "authentication.istio.io",
                        "networking.istio.io",
                    ],
                    ["*"],
                    ["get", "watch", "list"],
                ),
                c.rule(
                    ["extensions", "apps"],
                    ["deployments"],
                    ["get"],
                    resourceNames=[NAME],
                ),
                c.rule([""], ["pods", "nodes", "services", "endpoints", "namespaces"], ["get", "list", "watch"]),
                c.rule(["extensions", "networking.k8s.io"], ["ingresses"], ["get", "list", "watch"]),
                c.rule(["extensions", "apps"], ["deployments/finalizers"], ["update"], resourceNames=[NAME]),
                c.rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"]),
            ],
        ),
        obj(
            "v1",
            "ConfigMap",
            CONFIGMAP,
            component=COMPONENT,
            namespace=ctx.ns,
            extra_labels=APP,
            data={"validatingwebhookconfiguration.yaml": to_yaml(webhook_config(ctx))},
        ),
        c.deployment(
            NAME,
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            template=template,
            replicas=max(g.replica_count, 1),
        ),
        c.service(
            NAME,
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            selector={"istio": "galley"},
            ports=[
                c.port("https-validation", 443),
                c.port("http-monitoring", 15014),
                c.port("grpc-mcp", 9901),
            ],
        ),
        *c.pdb(NAME, ctx=ctx, component=COMPONENT, app_labels=APP),
    ]
