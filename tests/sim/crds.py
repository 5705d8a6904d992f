"""A test CRD shaped like the source operator's ``remoteistios`` (printer columns, status)."""

from __future__ import annotations

from typing import Any

GROUP = "istio.banzaicloud.io"


def remoteistio_crd(*, group: str = GROUP, plural: str = "remoteistios", kind: str = "RemoteIstio") -> dict[str, Any]:
    columns = [
        {"name": "Status", "type": "string", "description": "Status of the resource", "jsonPath": ".status.Status"},
        {"name": "Error", "type": "string", "description": "Error message", "jsonPath": ".status.ErrorMessage"},
        {"name": "Gateways", "type": "string", "description": "Ingress gateways of the resource", "jsonPath": ".status.GatewayAddress"},
        {"name": "Age", "type": "date", "description": "CreationTimestamp", "jsonPath": ".metadata.creationTimestamp"},
    ]
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["version"],
                "properties": {
                    "version": {"type": "string", "pattern": "^1\\.[12]"},
                    "enabledServices": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                                   "labelSelector": {"type": "string"}}},
                    },
                    "proxy": {"type": "object", "properties": {"image": {"type": "string", "default": "docker.io/istio/proxyv2:1.2.8"}}},
                    "mode": {"type": "string", "enum": ["flat", "gateway"], "default": "flat"},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "Status": {"type": "string"},
                    "ErrorMessage": {"type": "string"},
                    "GatewayAddress": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List", "shortNames": ["ri"] if plural == "remoteistios" else []},
            "versions": [
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def remoteistio(name: str, *, namespace: str = "istio-system", version: str = "1.2.8", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1beta1",
        "kind": "RemoteIstio",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"version": version, **spec},
    }
