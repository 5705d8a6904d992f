"""The Istio CNI plugin (seed 004): traffic redirection done by the node's CNI chain
instead of a privileged ``istio-init`` container in every pod.

``istio-cni-node`` runs on every node and installs the plugin binary into ``binDir`` and
its configuration, chained after the existing plugin, into ``confDir``. The plugin skips
pods in ``excludeNamespaces`` (by default the control plane's own namespace).

Mirrors the istio/cni repository's chart at 1.1.14 and 1.2.8 (the same template at both
tags: ``deployments/kubernetes/install/helm/istio-cni/templates/istio-cni.yaml``: the
DaemonSet, ConfigMap, ServiceAccount and RBAC; Istio's own repository carries no CNI
chart at those tags) and the source operator's ``pkg/resources/cni/{daemonset,
configmap,rbac}.go`` (release-1.2).
"""

from __future__ import annotations

import json

from federationd.render.components import context as c
from federationd.render.components.context import Ctx
from federationd.render.objects import Obj, obj

COMPONENT = "cni"
NAME = "istio-cni-node"
SA = "istio-cni"
CONFIGMAP = "istio-cni-config"
APP = {"k8s-app": "istio-cni-node"}


def network_config(ctx: Ctx) -> str:
    """The chained plugin's configuration (``__KUBECONFIG_FILEPATH__`` is filled in on the
    node by the installer)."""
    cni = ctx.spec.sidecar_injector.init_cni_configuration
    conf = {
        "type": "istio-cni",
        "log_level": cni.log_level,
        "kubernetes": {
            "kubeconfig": "__KUBECONFIG_FILEPATH__",
            "cni_bin_dir": cni.bin_dir,
            "exclude_namespaces": list(cni.exclude_namespaces or []),
        },
    }
    return json.dumps(conf, indent=2, sort_keys=True)


def build(ctx: Ctx) -> list[Obj]:
    cni = ctx.spec.sidecar_injector.init_cni_configuration
    container: Obj = {
        "name": "install-cni",
        "image": cni.image,
        "imagePullPolicy": ctx.pull_policy,
        "command": ["/install-cni.sh"],
        "env": [
            {
                "name": "CNI_NETWORK_CONFIG",
                "valueFrom": {"configMapKeyRef": {"name": CONFIGMAP, "key": "cni_network_config"}},
            },
            # install-cni.sh writes the plugin's kubeconfig path as ${CNI_NET_DIR}/...
            # into the chained config; without it a non-default confDir points the
            # plugin at a file that does not exist (istio/cni helm chart istio-cni.yaml).
            c.env("CNI_NET_DIR", cni.conf_dir),
        ],
        "volumeMounts": [
            c.mount("cni-bin-dir", "/host/opt/cni/bin"),
            c.mount("cni-net-dir", "/host/etc/cni/net.d"),
        ],
    }
    tolerations = [
        {"effect": "NoSchedule", "operator": "Exists"},
        {"effect": "NoExecute", "operator": "Exists"},
        {"key": "CriticalAddonsOnly", "operator": "Exists"},
    ]
    # Linux nodes only, as the chart and the operator's daemonset.go select
    scheduling = c.Scheduling(
        node_selector={"beta.kubernetes.io/os": "linux"}, affinity=cni.affinity, tolerations=tolerations,
    )
    template = c.pod_template(
        app_labels=APP,
        containers=[container],
        service_account=SA,
        scheduling=scheduling,
        volumes=[
            {"name": "cni-bin-dir", "hostPath": {"path": cni.bin_dir}},
            {"name": "cni-net-dir", "hostPath": {"path": cni.conf_dir}},
        ],
        # Runs on the host network: it must work before the pod network does.
        extra={"hostNetwork": True, "terminationGracePeriodSeconds": 5},
    )
    return [
        c.service_account(SA, ctx=ctx, component=COMPONENT, app_labels=APP),
        *c.cluster_rbac(
            "istio-cni",
            ctx=ctx,
            component=COMPONENT,
            app_labels=APP,
            service_account_name=SA,
            rules=[c.rule([""], ["pods", "nodes"], ["get"])],
        ),
        obj(
            "v1",
            "ConfigMap",
            CONFIGMAP,
            component=COMPONENT,
            namespace=ctx.ns,
            extra_labels=APP,
            data={"cni_network_config": network_config(ctx)},
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
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": template,
            },
        ),
    ]
