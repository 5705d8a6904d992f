"""Where a remote cluster's kubeconfig lives in a Secret, in the two formats users have.

* The source operator's: a Secret named like the ``RemoteIstio`` in the same namespace,
  created with ``kubectl create secret generic NAME --from-file=NAME=KUBECONFIG``; the
  kubeconfig is its first data value (the value under ``NAME`` when present).
* Istio's remote secrets: label ``istio/multiCluster: "true"``, one data key per cluster
  name (the registry id ``fromRegistry`` refers to), possibly several in one Secret.

Values in ``data`` are base64 as the API serves them. Errors never quote a value.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

MULTICLUSTER_LABEL = "istio/multiCluster"
CLUSTER_ANNOTATION = "networking.istio.io/cluster"


class SecretFormatError(ValueError):
    """The Secret does not hold a usable kubeconfig for the remote. Safe to record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_istio_remote_secret(secret: dict[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return str(labels.get(MULTICLUSTER_LABEL, "")).lower() == "true"


def _decode(value: Any, key: str) -> bytes:
    if not isinstance(value, str):
        raise SecretFormatError(f"data key '{key}' is not a string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SecretFormatError(f"data key '{key}' is not valid base64") from None
    if not decoded.strip():
        raise SecretFormatError(f"data key '{key}' is empty")
    return decoded


def kubeconfig_from_secret(secret: dict[str, Any], *, remote_name: str) -> bytes:
    """The kubeconfig bytes for ``remote_name`` held by ``secret`` (either format)."""
    meta = secret.get("metadata") or {}
    data = secret.get("data") or {}
    if not isinstance(data, dict) or not data:
        raise SecretFormatError(f"secret '{meta.get('name', '')}' has no data")
    if is_istio_remote_secret(secret):
        if remote_name in data:
            return _decode(data[remote_name], remote_name)
        annotated = (meta.get("annotations") or {}).get(CLUSTER_ANNOTATION)
        if annotated == remote_name and len(data) == 1:
            key = next(iter(data))
            return _decode(data[key], key)
        raise SecretFormatError(
            f"istio remote secret '{meta.get('name', '')}' has no data key '{remote_name}'")
    if meta.get("name") not in (None, remote_name):
        raise SecretFormatError(
            f"secret '{meta.get('name')}' is not named like the remote '{remote_name}'")
    if remote_name in data:
        return _decode(data[remote_name], remote_name)
    # The API serves map keys sorted, so "first" is the smallest key: stable across reads.
    key = min(data)
    return _decode(data[key], key)


def remotes_in_secret(secret: dict[str, Any]) -> dict[str, bytes]:
    """Every (remote name → kubeconfig) an Istio remote secret holds; for the source
    format, the single remote named like the Secret. Undecodable keys are skipped."""
    data = secret.get("data") or {}
    name = str((secret.get("metadata") or {}).get("name", ""))
    out: dict[str, bytes] = {}
    if not isinstance(data, dict):
        return out
    annotated = ((secret.get("metadata") or {}).get("annotations") or {}).get(CLUSTER_ANNOTATION)
    if is_istio_remote_secret(secret) and annotated and len(data) == 1:
        # One kubeconfig named by the annotation (how federationd labels a source-format
        # Secret whose data key is not the remote's name).
        try:
            out[str(annotated)] = kubeconfig_from_secret(secret, remote_name=str(annotated))
        except SecretFormatError:
            pass
        return out
    if is_istio_remote_secret(secret):
        for key, value in sorted(data.items()):
            try:
                out[key] = _decode(value, key)
            except SecretFormatError:
                continue
        return out
    try:
        out[name] = kubeconfig_from_secret(secret, remote_name=name)
    except SecretFormatError:
        pass
    return out
