"""The sidecar injector: its webhook, Deployment, and the injection template.

The template is the Go template the injector evaluates per pod (Istio's own language:
``{{ annotation .ObjectMeta ... }}`` lets a pod override the mesh-wide value). The
spec's values are written into it as those defaults: ``includeIPRanges`` /
``excludeIPRanges``, ``rewriteAppHTTPProbe``, the proxy's ``logLevel``,
``componentLogLevel`` and ``dnsRefreshRate`` (1.2), ``privileged``, ``enableCoreDump``
and the init container's resources. With CNI on, traffic is redirected by the node's CNI
plugin, so the template has no privileged ``istio-init`` container.

Mirrors helm ``istio/templates/sidecar-injector-configmap.yaml`` (1.1.14; 1.2.8 with
``files/injection-template.yaml``), ``istio/charts/sidecarInjectorWebhook/templates/*``
and the operator's ``pkg/resources/sidecarinjector`` (release-1.2). Two upstream facts
shape the ConfigMap: the 1.1 injector parses its template with ``[[ ]]`` delimiters
(``pilot/pkg/kube/inject/mesh.go`` 1.1.14), the 1.2 one with the default ``{{ }}`` and
it also reads ``/etc/istio/inject/values`` (``--injectValues``, ``webhook.go``
``loadConfig`` fails without the file), so 1.2 gets a ``values`` key and both keys are
mounted. The template is written once with ``{{ }}`` and converted for 1.1.

The webhook selects namespaces labelled ``istio-injection=enabled``, or, with
``enableNamespacesByDefault``, every namespace except the control plane's and those
labelled ``istio-injection=disabled``. Its CA bundle is left out on purpose: the injector
patches its own webhook with the CA it serves, and applying an empty one would fight it.
"""

from __future__ import annotations

import json

from federationd.render.components import context as c
from federationd.render.components.context import Ctx
from federationd.render.objects import Obj, obj, to_yaml

COMPONENT = "sidecar-injector"
NAME = "istio-sidecar-injector"
SA = "istio-sidecar-injector-service-account"
APP = {"app": "sidecarInjectorWebhook", "istio": "sidecar-injector"}
WEBHOOK = "sidecar-injector.istio.io"


def _q(value: str) -> str:
    """A YAML double-quoted string literal."""
    return json.dumps(value)


def _go(value: str) -> str:
    """A Go raw string literal, for values inside template actions (which are themselves
    inside YAML double quotes)."""
    if "`" in value:
        raise ValueError("a backquote cannot appear in an injection template value")
    return f"`{value}`"


def _yaml_block(value: object, indent: int) -> list[str]:
    pad = " " * indent
    return [pad + line for line in to_yaml(value).rstrip("\n").split("\n")]


def cni_enabled(ctx: Ctx) -> bool:
    return ctx.spec.sidecar_injector.init_cni_configuration.enabled


def template(ctx: Ctx) -> str:
    """The injection template (Go template text, evaluated by the injector per pod)."""
    spec = ctx.spec
    si = spec.sidecar_injector
    proxy = spec.proxy
    pull = spec.image_pull_policy
    lines: list[str] = [
        f"rewriteAppHTTPProbe: {'true' if si.rewrite_app_http_probe else 'false'}",
    ]
    cni = cni_enabled(ctx)
    if not cni or proxy.enable_core_dump:
        lines.append("initContainers:")
    if not cni:
        lines += [
            "{{ if ne (annotation .ObjectMeta `sidecar.istio.io/interceptionMode` .ProxyConfig.InterceptionMode) `NONE` }}",
            "- name: istio-init",
            f"  image: {_q(spec.proxy_init.image)}",
            "  args:",
            '  - "-p"',
            '  - "15001"',
            '  - "-u"',
            "  - 1337",
            '  - "-m"',
            '  - "{{ annotation .ObjectMeta `sidecar.istio.io/interceptionMode` .ProxyConfig.InterceptionMode }}"',
            '  - "-i"',
            '  - "{{ annotation .ObjectMeta `traffic.sidecar.istio.io/includeOutboundIPRanges` '
            + _go(spec.include_ip_ranges)
            + ' }}"',
            '  - "-x"',
            '  - "{{ annotation .ObjectMeta `traffic.sidecar.istio.io/excludeOutboundIPRanges` '
            + _go(spec.exclude_ip_ranges)
            + ' }}"',
            '  - "-b"',
            '  - "{{ annotation .ObjectMeta `traffic.sidecar.istio.io/includeInboundPorts` (includeInboundPorts .Spec.Containers) }}"',
            '  - "-d"',
            '  - "{{ excludeInboundPort (annotation .ObjectMeta `status.sidecar.istio.io/port` 15020) (annotation .ObjectMeta `traffic.sidecar.istio.io/excludeInboundPorts` ``) }}"',
            "  {{ if isset .ObjectMeta.Annotations `traffic.sidecar.istio.io/excludeOutboundPorts` -}}",
            '  - "-o"',
            '  - "{{ index .ObjectMeta.Annotations `traffic.sidecar.istio.io/excludeOutboundPorts` }}"',
            "  {{ end -}}",
            f"  imagePullPolicy: {pull}",
            "  resources:",
            *_yaml_block(c.resources(si.init.resources) or {}, 4),
            "  securityContext:",
            "    runAsUser: 0",
            "    runAsNonRoot: false",
            "    capabilities:",
            "      add:",
            "      - NET_ADMIN",
            f"    privileged: {'true' if proxy.privileged else 'false'}",
            "  restartPolicy: Always",
            "{{ end -}}",
        ]
    if proxy.enable_core_dump:
        lines += [
            "- name: enable-core-dump",
            "  args:",
            "  - -c",
            "  - sysctl -w kernel.core_pattern=/var/lib/istio/core.proxy && ulimit -c unlimited",
            "  command:",
            "  - /bin/sh",
            f"  image: {_q(spec.proxy_init.image)}",
            f"  imagePullPolicy: {pull}",
            "  resources: {}",
            "  securityContext:",
            "    runAsUser: 0",
            "    runAsNonRoot: false",
            "    privileged: true",
        ]
    args = [
        "- proxy",
        "- sidecar",
        "- --domain",
        "- $(POD_NAMESPACE).svc.cluster.local",
        "- --configPath",
        '- "{{ .ProxyConfig.ConfigPath }}"',
        "- --binaryPath",
        '- "{{ .ProxyConfig.BinaryPath }}"',
        "- --serviceCluster",
        '{{ if ne "" (index .ObjectMeta.Labels "app") -}}',
        '- "{{ index .ObjectMeta.Labels `app` }}.$(POD_NAMESPACE)"',
        "{{ else -}}",
        '- "{{ valueOrDefault .DeploymentMeta.Name `istio-proxy` }}.{{ valueOrDefault .DeploymentMeta.Namespace `default` }}"',
        "{{ end -}}",
        "- --drainDuration",
        '- "{{ formatDuration .ProxyConfig.DrainDuration }}"',
        "- --parentShutdownDuration",
        '- "{{ formatDuration .ProxyConfig.ParentShutdownDuration }}"',
        "- --discoveryAddress",
        '- "{{ annotation .ObjectMeta `sidecar.istio.io/discoveryAddress` .ProxyConfig.DiscoveryAddress }}"',
        *[f"- {_q(a)}" for a in c.tracing_args(ctx)],
        "- --connectTimeout",
        '- "{{ formatDuration .ProxyConfig.ConnectTimeout }}"',
        "- --proxyAdminPort",
        '- "{{ .ProxyConfig.ProxyAdminPort }}"',
        "- --concurrency",
        '- "{{ .ProxyConfig.Concurrency }}"',
        "- --controlPlaneAuthPolicy",
        '- "{{ annotation .ObjectMeta `sidecar.istio.io/controlPlaneAuthPolicy` .ProxyConfig.ControlPlaneAuthPolicy }}"',
        "- --statusPort",
        '- "{{ annotation .ObjectMeta `status.sidecar.istio.io/port` 15020 }}"',
        "- --applicationPorts",
        '- "{{ annotation .ObjectMeta `readiness.status.sidecar.istio.io/applicationPorts` (applicationPorts .Spec.Containers) }}"',
    ]
    if ctx.profile.has("dns_refresh_rate"):
        args += ["- --dnsRefreshRate", f"- {_q(proxy.dns_refresh_rate)}"]
    if ctx.profile.has("proxy_log_level"):
        args.append(
            '- "--proxyLogLevel={{ annotation .ObjectMeta `sidecar.istio.io/logLevel` '
            + _go(proxy.log_level)
            + ' }}"'
        )
    if ctx.profile.has("proxy_component_log_level"):
        args.append(
            '- "--proxyComponentLogLevel={{ annotation .ObjectMeta `sidecar.istio.io/componentLogLevel` '
            + _go(proxy.component_log_level)
            + ' }}"'
        )
    env = [
        c.env_field("POD_NAME", "metadata.name"),
        c.env_field("POD_NAMESPACE", "metadata.namespace"),
        c.env_field("INSTANCE_IP", "status.podIP"),
        c.env_field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        *c.tracing_env(ctx),
        c.env_field("ISTIO_META_POD_NAME", "metadata.name"),
        c.env_field("ISTIO_META_CONFIG_NAMESPACE", "metadata.namespace"),
        *c.network_env(ctx),
    ]
    if spec.sds.enabled:
        env.append(c.env("SDS_ENABLED", "true"))
    # The TPROXY branch: a TPROXY-mode proxy needs NET_ADMIN and runs as group 1337
    # (the rules match on the group), not as user 1337 (helm template, both versions).
    security = []
    if proxy.privileged:
        security.append("    privileged: true")
    if not proxy.enable_core_dump:
        security.append("    readOnlyRootFilesystem: true")
    security += [
        "    {{ if eq (annotation .ObjectMeta `sidecar.istio.io/interceptionMode` .ProxyConfig.InterceptionMode) `TPROXY` -}}",
        "    capabilities:",
        "      add:",
        "      - NET_ADMIN",
        "    runAsGroup: 1337",
        "    {{ else -}}",
        *(["    runAsGroup: 1337"] if spec.sds.enabled and spec.sds.use_trustworthy_jwt else []),
        "    runAsUser: 1337",
        "    {{- end }}",
    ]
    mounts = [c.mount("istio-envoy", "/etc/istio/proxy")]
    volumes: list[Obj] = [
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
    ]
    # With SDS the node agent serves the certificates; the Secret mount is not rendered.
    mounts += c.sds_mounts(ctx) or [c.mount("istio-certs", "/etc/certs/", read_only=True)]
    volumes += c.sds_volumes(ctx)
    lines += [
        "containers:",
        "- name: istio-proxy",
        "  image: \"{{ annotation .ObjectMeta `sidecar.istio.io/proxyImage` "
        + _go(proxy.image)
        + ' }}"',
        "  ports:",
        "  - containerPort: 15090",
        "    protocol: TCP",
        "    name: http-envoy-prom",
        "  args:",
        *["  " + a for a in args],
        f"  imagePullPolicy: {pull}",
        "  env:",
        *_yaml_block(env, 2),
        '  - name: ISTIO_META_INTERCEPTION_MODE',
        '    value: "{{ or (index .ObjectMeta.Annotations `sidecar.istio.io/interceptionMode`) .ProxyConfig.InterceptionMode.String }}"',
        "  {{ if .ObjectMeta.Annotations }}",
        "  - name: ISTIO_METAJSON_ANNOTATIONS",
        "    value: |",
        "           {{ toJSON .ObjectMeta.Annotations }}",
        "  {{ end }}",
        "  {{ if .ObjectMeta.Labels }}",
        "  - name: ISTIO_METAJSON_LABELS",
        "    value: |",
        "           {{ toJSON .ObjectMeta.Labels }}",
        "  {{ end }}",
        "  {{- if (isset .ObjectMeta.Annotations `sidecar.istio.io/bootstrapOverride`) }}",
        "  - name: ISTIO_BOOTSTRAP_OVERRIDE",
        '    value: "/etc/istio/custom-bootstrap/custom_bootstrap.json"',
        "  {{- end }}",
        "  {{ if ne (annotation .ObjectMeta `status.sidecar.istio.io/port` 15020) `0` }}",
        "  readinessProbe:",
        "    httpGet:",
        "      path: /healthz/ready",
        "      port: {{ annotation .ObjectMeta `status.sidecar.istio.io/port` 15020 }}",
        "    initialDelaySeconds: {{ annotation .ObjectMeta `readiness.status.sidecar.istio.io/initialDelaySeconds` 1 }}",
        "    periodSeconds: {{ annotation .ObjectMeta `readiness.status.sidecar.istio.io/periodSeconds` 2 }}",
        "    failureThreshold: {{ annotation .ObjectMeta `readiness.status.sidecar.istio.io/failureThreshold` 30 }}",
        "  {{ end -}}",
        "  securityContext:",
        *security,
        "  resources:",
        "    {{ if or (isset .ObjectMeta.Annotations `sidecar.istio.io/proxyCPU`) (isset .ObjectMeta.Annotations `sidecar.istio.io/proxyMemory`) -}}",
        "    requests:",
        "      {{ if (isset .ObjectMeta.Annotations `sidecar.istio.io/proxyCPU`) -}}",
        '      cpu: "{{ index .ObjectMeta.Annotations `sidecar.istio.io/proxyCPU` }}"',
        "      {{ end}}",
        "      {{ if (isset .ObjectMeta.Annotations `sidecar.istio.io/proxyMemory`) -}}",
        '      memory: "{{ index .ObjectMeta.Annotations `sidecar.istio.io/proxyMemory` }}"',
        "      {{ end }}",
        # The indentation of an {{ else }} or {{ end -}} line is the indentation of what
        # follows the block (the text before them is kept, the text after trimmed).
        "  {{ else -}}",
        *_yaml_block(c.resources(proxy.resources) or {}, 4),
        "  {{ end -}}",
        "  volumeMounts:",
        *_yaml_block(mounts, 2),
        "volumes:",
        *_yaml_block(volumes, 0),
    ]
    if not spec.sds.enabled:
        lines += [
            "- name: istio-certs",
            "  secret:",
            "    optional: true",
            "    {{ if eq .Spec.ServiceAccountName \"\" -}}",
            "    secretName: istio.default",
            "{{ else -}}",
            "    secretName: {{ printf \"istio.%s\" .Spec.ServiceAccountName }}",
            "{{ end -}}",
        ]
    if spec.multi_mesh:
        # Multi-mesh: NAME.NS.global resolves through the pod's search list
        # (helm values-istio-multicluster-gateways.yaml podDNSSearchNamespaces, the
        # operator's sidecarinjector getValues).
        lines += [
            "dnsConfig:",
            "  searches:",
            "  - global",
            '  - "{{ valueOrDefault .DeploymentMeta.Namespace `default` }}.global"',
        ]
    if cni:
        # Tells the CNI plugin which ports to redirect, as istio-init's flags would have.
        lines += [
            "podRedirectAnnot:",
            "  sidecar.istio.io/interceptionMode: \"{{ annotation .ObjectMeta `sidecar.istio.io/interceptionMode` .ProxyConfig.InterceptionMode }}\"",
            "  traffic.sidecar.istio.io/includeOutboundIPRanges: \"{{ annotation .ObjectMeta `traffic.sidecar.istio.io/includeOutboundIPRanges` "
            + _go(spec.include_ip_ranges)
            + ' }}"',
            "  traffic.sidecar.istio.io/excludeOutboundIPRanges: \"{{ annotation .ObjectMeta `traffic.sidecar.istio.io/excludeOutboundIPRanges` "
            + _go(spec.exclude_ip_ranges)
            + ' }}"',
            "  traffic.sidecar.istio.io/includeInboundPorts: \"{{ annotation .ObjectMeta `traffic.sidecar.istio.io/includeInboundPorts` (includeInboundPorts .Spec.Containers) }}\"",
            "  traffic.sidecar.istio.io/excludeInboundPorts: \"{{ excludeInboundPort (annotation .ObjectMeta `status.sidecar.istio.io/port` 15020) (annotation .ObjectMeta `traffic.sidecar.istio.io/excludeInboundPorts` ``) }}\"",
        ]
    return go_delimiters(ctx, "\n".join(lines))


def go_delimiters(ctx: Ctx, text: str) -> str:
    """The template in the delimiters the family's injector parses it with."""
    if ctx.profile.has("inject_square_delimiters"):
        return text.replace("{{", "[[").replace("}}", "]]")
    return text


def values(ctx: Ctx) -> str:
    """The 1.2 injector's ``values`` file: the Helm values its template may read, as the
    operator writes them (``sidecarinjector/configmap.go`` ``getValues``, compact JSON
    with sorted keys like Go's ``json.Marshal`` of a map)."""
    spec = ctx.spec
    proxy = spec.proxy
    doc: Obj = {
        "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": spec.sidecar_injector.rewrite_app_http_probe},
        "global": {
            "trustDomain": c.TRUST_DOMAIN,
            "imagePullPolicy": spec.image_pull_policy,
            "network": ctx.facts.network,
            "podDNSSearchNamespaces": (
                ["global", '{{ valueOrDefault .DeploymentMeta.Namespace "default" }}.global']
                if spec.multi_mesh
                else []
            ),
            "proxy_init": {"image": spec.proxy_init.image},
            "tracer": {"lightstep": {"CACertPath": spec.tracing.lightstep.cacert_path}},
            "sds": {
                "customTokenDirectory": spec.sds.custom_token_directory,
                "useTrustworthyJwt": spec.sds.use_trustworthy_jwt,
                "enabled": spec.sds.enabled,
            },
            "proxy": {
                "image": proxy.image,
                "statusPort": 15020,
                "tracer": spec.tracing.tracer,
                "clusterDomain": "cluster.local",
                "logLevel": proxy.log_level,
                "componentLogLevel": proxy.component_log_level,
                "dnsRefreshRate": proxy.dns_refresh_rate,
                "enableCoreDump": proxy.enable_core_dump,
                "includeIPRanges": spec.include_ip_ranges,
                "excludeIPRanges": spec.exclude_ip_ranges,
                "excludeInboundPorts": "",
                "excludeOutboundPorts": "",
                "privileged": proxy.privileged,
                "readinessFailureThreshold": 30,
                "readinessInitialDelaySeconds": 1,
                "readinessPeriodSeconds": 2,
                "resources": c.resources(proxy.resources) or None,
                "envoyMetricsService": {"enabled": False},
                "envoyStatsd": {"enabled": False},
            },
        },
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def config_map_keys(ctx: Ctx) -> tuple[str, ...]:
    """The files the family's injector reads from its ConfigMap."""
    return ("config", "values") if ctx.profile.has("inject_values") else ("config",)


def config_map_data(ctx: Ctx) -> dict[str, str]:
    data = {"config": config(ctx)}
    if "values" in config_map_keys(ctx):
        data["values"] = values(ctx)
    return data


def config(ctx: Ctx) -> str:
    """The injector's ``config`` file: policy, selectors (1.2) and template."""
    si = ctx.spec.sidecar_injector
    doc: Obj = {"policy": "enabled" if si.auto_injection_policy_enabled else "disabled"}
    if ctx.profile.has("inject_selectors"):
        doc["alwaysInjectSelector"] = list(si.always_inject_selector)
        doc["neverInjectSelector"] = list(si.never_inject_selector)
    doc["template"] = template(ctx)
    return to_yaml(doc)


def namespace_selector(ctx: Ctx) -> Obj:
    if ctx.profile.has("inject_namespaces_by_default") and ctx.spec.sidecar_injector.enable_namespaces_by_default:
        return {
            "matchExpressions": [
                {"key": "name", "operator": "NotIn", "values": [ctx.ns]},
                {"key": "istio-injection", "operator": "NotIn", "values": ["disabled"]},
            ]
        }
    return {"matchLabels": {"istio-injection": "enabled"}}


def build(ctx: Ctx) -> list[Obj]:
    si = ctx.spec.sidecar_injector
    probe = ["/usr/local/bin/sidecar-injector", "probe", "--probe-path=/health", "--interval=4s"]
    container: Obj = {
        "name": "sidecar-injector-webhook",
        "image": si.image,
        "imagePullPolicy": ctx.pull_policy,
        "args": [
            "--caCertFile=/etc/istio/certs/root-cert.pem",
            "--tlsCertFile=/etc/istio/certs/cert-chain.pem",
            "--tlsKeyFile=/etc/istio/certs/key.pem",
            "--injectConfig=/etc/istio/inject/config",
            "--meshConfig=/etc/istio/config/mesh",
            "--healthCheckInterval=2s",
            "--healthCheckFile=/health",
        ],
        "volumeMounts": [
            c.mount("config-volume", "/etc/istio/config", read_only=True),
            c.mount("certs", "/etc/istio/certs", read_only=True),
            c.mount("inject-config", "/etc/istio/inject", read_only=True),
        ],
        "livenessProbe": c.probe_exec(probe, initialDelaySeconds=4, periodSeconds=4),
        "readinessProbe": c.probe_exec(probe, initialDelaySeconds=4, periodSeconds=4),
        "resources": c.resources(si.resources),
    }
    template_ = c.pod_template(
        app_labels=APP,
        containers=[container],
        service_account=SA,
        scheduling=c.scheduling_of(si),
        volumes=[
            c.configmap_volume("config-volume", "istio"),
            c.secret_volume("certs", f"istio.{SA}"),
            c.configmap_volume(
                "inject-config",
                NAME,
                items=[{"key": k, "path": k} for k in config_map_keys(ctx)],
            ),
        ],
    )
    return [
        c.service_account(SA, ctx=ctx, component=COMPONENT, app_labels=APP),
        *c.cluster_rbac(
            "istio-sidecar-injector",
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            service_account_name=SA,
            rules=[
                c.rule([""], ["configmaps"], ["get", "list", "watch"]),
                c.rule(
                    ["admissionregistration.k8s.io"],
                    ["mutatingwebhookconfigurations"],
                    ["get", "list", "watch", "patch"],
                ),
            ],
        ),
        obj(
            "v1",
            "ConfigMap",
            NAME,
            component=COMPONENT,
            namespace=ctx.ns,
            extra_labels=APP,
            data=config_map_data(ctx),
        ),
        c.deployment(
            NAME,
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            template=template_,
            replicas=max(si.replica_count, 1),
        ),
        c.service(
            NAME,
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            selector={"istio": "sidecar-injector"},
            ports=[c.port("https-inject", 443)],
        ),
        *c.pdb(NAME, ctx=ctx, component=COMPONENT, app_labels=APP),
        obj(
            c.api_version(ctx, "MutatingWebhookConfiguration"),
            "MutatingWebhookConfiguration",
            f"{NAME}-{ctx.ns}" if ctx.profile.has("namespaced_webhook_name") else NAME,
            component=COMPONENT,
            extra_labels=APP,
            webhooks=[
                {
                    "name": WEBHOOK,
                    "clientConfig": {
                        "service": {"name": NAME, "namespace": ctx.ns, "path": "/inject", "port": 443}
                    },
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                        }
                    ],
                    "failurePolicy": "Fail",
                    **(
                        {}
                        if c.is_upstream_api(ctx, "MutatingWebhookConfiguration")
                        # admissionregistration.k8s.io/v1 requires both.
                        else {"sideEffects": "None", "admissionReviewVersions": ["v1beta1"]}
                    ),
                    "namespaceSelector": namespace_selector(ctx),
                }
            ],
        ),
    ]
