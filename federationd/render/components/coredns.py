"""istiocoredns: answers DNS for the ``.global`` names of multi-mesh service entries.

CoreDNS forwards ``global`` to the Istio plugin, which serves names from ServiceEntries.
Pointing the cluster DNS (kube-dns stub domain) at it is the cluster owner's choice and is
not done here.
"""

from __future__ import annotations

from federationd.render.components import context as c
from federationd.render.components.context import Ctx
from federationd.render.objects import Obj, obj

COMPONENT = "istiocoredns"
NAME = "istiocoredns"
SA = "istiocoredns-service-account"
APP = {"app": "istiocoredns", "istio": "istiocoredns"}

COREFILE = """.:53 {
    errors
    health
    proxy global 127.0.0.1:8053 {
        protocol grpc insecure
    }
    prometheus :9153
    proxy . /etc/resolv.conf
    cache 30
    reload
}
"""


def build(ctx: Ctx) -> list[Obj]:
    dns = ctx.spec.istio_core_dns
    coredns: Obj = {
        "name": "coredns",
        "image": dns.image,
        "imagePullPolicy": ctx.pull_policy,
        "args": ["-conf", "/etc/coredns/Corefile"],
        "volumeMounts": [c.mount("config-volume", "/etc/coredns")],
        "ports": [
            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
            {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
        ],
        "livenessProbe": c.probe_http(
            "/health", 8080, initialDelaySeconds=60, timeoutSeconds=5, successThreshold=1, failureThreshold=5
        ),
        "resources": c.resources(dns.resources),
    }
    plugin: Obj = {
        "name": "istio-coredns-plugin",
        "image": dns.plugin_image,
        "imagePullPolicy": ctx.pull_policy,
        "command": ["/usr/local/bin/plugin"],
        "ports": [{"containerPort": 8053, "name": "dns-grpc", "protocol": "TCP"}],
        "resources": c.resources(dns.resources),
    }
    template = c.pod_template(
        app_labels=APP,
        containers=[coredns, plugin],
        service_account=SA,
        scheduling=c.scheduling_of(dns),
        volumes=[
            c.configmap_volume("config-volume", "coredns", items=[{"key": "Corefile", "path": "Corefile"}])
        ],
        extra={"dnsPolicy": "Default"},
    )
    return [
        c.service_account(SA, ctx=ctx, component=COMPONENT, app_labels=APP),
        *c.cluster_rbac(
            "istiocoredns",
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            service_account_name=SA,
            rules=[c.rule(["networking.istio.io"], ["*"], ["get", "watch", "list"])],
        ),
        obj(
            "v1",
            "ConfigMap",
            "coredns",
            component=COMPONENT,
            namespace=ctx.ns,
            extra_labels=APP,
            data={"Corefile": COREFILE},
        ),
        c.deployment(
            NAME,
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            template=template,
            replicas=max(dns.replica_count, 1),
        ),
        c.service(
            NAME,
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            ports=[c.port("dns", 53, protocol="UDP"), c.port("dns-tcp", 53)],
        ),
        *c.pdb(NAME, ctx=ctx, component=COMPONENT, app_labels=APP),
    ]
