"""Specs shared by the render tests: the seed-000 minimal CR and one with every component
and every option switched on (the widest object set render can produce)."""

from __future__ import annotations

import copy
from typing import Any

NS = "istio-system"

_SCHED: dict[str, Any] = {
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "istio", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                ]
            }
        }
    },
    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
}

MINIMAL: dict[str, Any] = {
    "mtls": False,
    "includeIPRanges": "*",
    "excludeIPRanges": "",
    "autoInjectionNamespaces": ["default"],
    "controlPlaneSecurityEnabled": False,
}


def full(version: str = "1.2.2") -> dict[str, Any]:
    """Every component enabled, every knob set to a non-default value."""
    sched = copy.deepcopy(_SCHED)
    return {
        "version": version,
        "mtls": True,
        "includeIPRanges": "10.0.0.0/8,172.16.0.0/12",
        "excludeIPRanges": "10.96.0.1/32",
        "autoInjectionNamespaces": ["default", "bookinfo"],
        "controlPlaneSecurityEnabled": True,
        "defaultResources": {"requests": {"cpu": "20m", "memory": "32Mi"}},
        "sds": {
            "enabled": True,
            "udsPath": "unix:/var/run/sds/uds_path",
            "useTrustworthyJwt": True,
            "useNormalJwt": True,
        },
        "pilot": {"replicaCount": 2, "minReplicas": 2, "maxReplicas": 6, "traceSampling": 25.0, **sched},
        "citadel": {
            "caSecretName": "cacerts",
            "healthCheck": True,
            "workloadCertTTL": "2160h",
            "maxWorkloadCertTTL": "8760h",
            "image": "registry.example.com/istio/citadel:custom",
            **sched,
        },
        "galley": {"replicaCount": 2, **sched},
        "gateways": {
            "enabled": True,
            "ingress": {
                "serviceType": "LoadBalancer",
                "loadBalancerIP": "203.0.113.10",
                "serviceAnnotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
                "serviceLabels": {"team": "mesh"},
                "sds": {"enabled": True, "resources": {"requests": {"cpu": "10m"}}},
                "applicationPorts": "8080,8443",
                "requestedNetworkView": "network1",
                "replicaCount": 2,
                "minReplicas": 2,
                "maxReplicas": 4,
                **sched,
            },
            "egress": {"serviceType": "NodePort", "replicaCount": 1, "minReplicas": 1, "maxReplicas": 1, **sched},
            "k8singress": {"enabled": True},
        },
        "mixer": {"multiClusterSupport": True, "replicaCount": 2, "minReplicas": 2, "maxReplicas": 8, **sched},
        "sidecarInjector": {
            "replicaCount": 2,
            "rewriteAppHTTPProbe": True,
            "autoInjectionPolicyEnabled": True,
            "enableNamespacesByDefault": True,
            "alwaysInjectSelector": [{"matchLabels": {"inject": "always"}}],
            "neverInjectSelector": [{"matchExpressions": [{"key": "openshift.io/build.name", "operator": "Exists"}]}],
            "init": {"resources": {"requests": {"cpu": "15m", "memory": "12Mi"}, "limits": {"cpu": "150m", "memory": "60Mi"}}},
            "initCNIConfiguration": {
                "enabled": True,
                "binDir": "/opt/cni/bin",
                "confDir": "/etc/cni/net.d",
                "excludeNamespaces": ["istio-system", "kube-system"],
                "logLevel": "debug",
                "affinity": copy.deepcopy(_SCHED["affinity"]),
            },
            **sched,
        },
        "nodeAgent": {"enabled": True, **sched},
        "proxy": {
            "privileged": True,
            "enableCoreDump": True,
            "logLevel": "debug",
            "componentLogLevel": "misc:info",
            "dnsRefreshRate": "60s",
            "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        },
        "watchOneNamespace": True,
        "useMCP": True,
        "defaultConfigVisibility": ".",
        "watchAdapterCRDs": True,
        "defaultPodDisruptionBudget": {"enabled": True},
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "tracing": {"enabled": True, "tracer": "zipkin", "zipkin": {"address": "zipkin.tracing:9411"}},
        "imagePullPolicy": "Always",
        "meshExpansion": True,
        "multiMesh": True,
        "istioCoreDNS": {"enabled": True, "replicaCount": 2, **sched},
        "localityLB": {
            "enabled": True,
            "distribute": [{"from": "europe-west2/*", "to": {"europe-west2/*": 90, "eu-north-1/*": 10}}],
        },
    }


def full_remote() -> dict[str, Any]:
    sched = copy.deepcopy(_SCHED)
    return {
        "includeIPRanges": "10.20.0.0/16",
        "excludeIPRanges": "10.20.0.1/32",
        "enabledServices": [
            {"name": "istio-pilot", "labelSelector": "istio=pilot", "ports": [{"name": "grpc-xds", "port": 15010}]}
        ],
        "autoInjectionNamespaces": ["default"],
        "defaultResources": {"requests": {"cpu": "30m"}},
        "citadel": {"caSecretName": "cacerts", "healthCheck": True, **sched},
        "sidecarInjector": {
            "replicaCount": 2,
            "rewriteAppHTTPProbe": True,
            "initCNIConfiguration": {"enabled": True},
            **sched,
        },
        "proxy": {"privileged": False, "logLevel": "info"},
    }
