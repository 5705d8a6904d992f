"""The node agent: a per-node SDS server that hands workload certificates to proxies over
a Unix socket instead of mounting them from Secrets (used with ``sds.enabled``).

Mirrors helm ``istio/charts/nodeagent/templates/{daemonset,clusterrole}.yaml`` (1.1.14,
1.2.8) and the operator's ``pkg/resources/nodeagent`` (release-1.2): the node agent reads
the ``istio-security`` ConfigMap (``configmaps: get``, nothing else) and serves its socket
from the host directory ``/var/run/sds`` that proxies mount.
"""

from __future__ import annotations

from federationd.render.components import context as c
from federationd.render.components.context import Ctx
from federationd.render.objects import Obj, obj

COMPONENT = "nodeagent"
NAME = "istio-nodeagent"
SA = "istio-nodeagent-service-account"
APP = {"app": "nodeagent", "istio": "nodeagent"}


def build(ctx: Ctx) -> list[Obj]:
    na = ctx.spec.node_agent
    sds = ctx.spec.sds
    env = [
        c.env("CA_PROVIDER", "Citadel"),
        c.env("CA_ADDR", f"istio-citadel.{ctx.ns}:8060"),
        c.env("VALID_TOKEN", "true"),
        c.env_field("NAMESPACE", "metadata.namespace"),
    ]
    if sds.use_trustworthy_jwt:
        env.append(c.env("Trustworthy_JWT", "true"))
    if sds.use_normal_jwt:
        env.append(c.env("USE_NORMAL_JWT", "true"))
    container: Obj = {
        "name": "nodeagent",
        "image": na.image,
        "imagePullPolicy": ctx.pull_policy,
        "env": env,
        "resources": c.resources(na.resources),
        "volumeMounts": [c.mount("sdsudspath", c.sds_socket_dir(ctx))],
    }
    template = c.pod_template(
        app_labels=APP,
        containers=[container],
        service_account=SA,
        scheduling=c.scheduling_of(na),
        volumes=[
            {"name": "sdsudspath", "hostPath": {"path": c.sds_socket_dir(ctx)}}
        ],
    )
    return [
        c.service_account(SA, ctx=ctx, component=COMPONENT, app_labels=APP),
        *c.cluster_rbac(
            NAME,
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            service_account_name=SA,
            rules=[c.rule([""], ["configmaps"], ["get"])],
        ),
        obj(
            "apps/v1",
            "DaemonSet",
            NAME,
            component=COMPONENT,
            namespace=ctx.ns,
            extra_labels=APP,
            spec={
                "selector": {"matchLabels": dict(APP)},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": template,
            },
        ),
    ]
