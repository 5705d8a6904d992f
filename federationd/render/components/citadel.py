"""Citadel: the mesh's certificate authority.

Self-signed by default; with a CA Secret (``citadel.caSecretName`` in the spec, or CA
material the projections placed on the cluster, e.g. a remote's ``cacerts`` from the
master's CA) it signs with the plugged-in certificates so that every cluster of the mesh
shares one root of trust. Replicas are fixed at one, as in the source.
"""

from __future__ import annotations

from federationd.render.components import context as c
from federationd.render.components.context import Ctx
from federationd.render.objects import CONFIG_HASH_ANNOTATION, Obj, content_hash

COMPONENT = "citadel"
NAME = "istio-citadel"
SA = "istio-citadel-service-account"
APP = {"app": "security", "istio": "citadel"}


def ca_secret(ctx: Ctx) -> str:
    return ctx.facts.ca_secret_name or ctx.spec.citadel.ca_secret_name


def _args(ctx: Ctx) -> list[str]:
    cit = ctx.spec.citadel
    args = ["--sds-enabled=true"] if ctx.spec.sds.enabled else []
    args += [
        "--append-dns-names=true",
        "--grpc-port=8060",
        f"--citadel-storage-namespace={ctx.ns}",
        f"--custom-dns-names=istio-pilot-service-account.{ctx.ns}:istio-pilot.{ctx.ns}",
        "--monitoring-port=15014",
    ]
    if ca_secret(ctx):
        args += [
            "--self-signed-ca=false",
            "--signing-cert=/etc/cacerts/ca-cert.pem",
            "--signing-key=/etc/cacerts/ca-key.pem",
            "--root-cert=/etc/cacerts/root-cert.pem",
            "--cert-chain=/etc/cacerts/cert-chain.pem",
        ]
    else:
        args.append("--self-signed-ca=true")
    if ctx.profile.has("citadel_cert_ttl"):
        if cit.workload_cert_ttl:
            args.append(f"--workload-cert-ttl={cit.workload_cert_ttl}")
        if cit.max_workload_cert_ttl:
            args.append(f"--max-workload-cert-ttl={cit.max_workload_cert_ttl}")
    if ctx.profile.has("citadel_health_check") and cit.health_check:
        args += [
            "--liveness-probe-path=/tmp/ca.liveness",
            "--liveness-probe-interval=60s",
            "--probe-check-interval=15s",
        ]
    return args


def build(ctx: Ctx) -> list[Obj]:
    cit = ctx.spec.citadel
    container: Obj = {
        "name": "citadel",
        "image": cit.image,
        "imagePullPolicy": ctx.pull_policy,
        "args": _args(ctx),
        "resources": c.resources(cit.resources),
    }
    volumes: list[Obj] = []
    secret = ca_secret(ctx)
    if secret:
        container["volumeMounts"] = [c.mount("cacerts", "/etc/cacerts", read_only=True)]
        volumes.append(c.secret_volume("cacerts", secret, optional=False))
    if ctx.profile.has("citadel_health_check") and cit.health_check:
        container["livenessProbe"] = c.probe_exec(
            [
                "/usr/local/bin/istio_ca",
                "probe",
                "--probe-path=/tmp/ca.liveness",
                "--interval=125s",
            ],
            initialDelaySeconds=60,
            periodSeconds=60,
            failureThreshold=30,
        )
    template = c.pod_template(
        app_labels=APP,
        containers=[container],
        service_account=SA,
        scheduling=c.scheduling_of(cit),
        volumes=volumes,
        # citadel reads its CA files once, at start: a new CA must restart it
        annotations=(
            {CONFIG_HASH_ANNOTATION: content_hash({"ca": ctx.facts.ca_fingerprint})}
            if ctx.facts.ca_fingerprint and secret
            else None
        ),
    )
    return [
        c.service_account(SA, ctx=ctx, component=COMPONENT, app_labels=APP),
        *c.cluster_rbac(
            "istio-citadel",
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            service_account_name=SA,
            rules=[
                c.rule([""], ["configmaps"], ["create", "get", "update"]),
                c.rule([""], ["secrets"], ["create", "get", "watch", "list", "update", "delete"]),
                c.rule([""], ["serviceaccounts", "services", "namespaces"], ["get", "watch", "list"]),
                c.rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
            ],
        ),
        c.deployment(
            NAME, ctx=ctx, component=COMPONENT, app_labels=APP, template=template, replicas=1
        ),
        c.service(
            NAME,
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            selector={"istio": "citadel"},
            ports=[c.port("grpc-citadel", 8060, target=8060), c.port("http-monitoring", 15014)],
        ),
        *c.pdb(NAME, ctx=ctx, component=COMPONENT, app_labels=APP),
    ]
