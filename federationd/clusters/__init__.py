"""Connections to clusters: untrusted kubeconfigs in, verified per-cluster clients out.

* ``kubeconfig`` — ``fingerprint``, ``sanitise`` → ``Kubeconfig`` or ``KubeconfigRejected``;
* ``secrets`` — the two Secret formats that carry a remote's kubeconfig;
* ``connection`` — ``connect()`` → ``ClusterClient`` (own TLS context, timeouts, metrics);
* ``discovery`` — apiVersion/kind → resource paths, cached per cluster;
* ``health`` / ``backoff`` — per-cluster state for status and metrics, retry delays;
* ``errors`` — the typed ``ApiError`` hierarchy every caller branches on.
"""

from federationd.clusters.backoff import Backoff, BackoffPolicy
from federationd.clusters.connection import DEFAULT_REQUEST_TIMEOUT, ClusterClient, connect
from federationd.clusters.discovery import Discovery, ResourceInfo, UnknownKind
from federationd.clusters.errors import (
    ApiBadRequest,
    ApiConflict,
    ApiError,
    ApiForbidden,
    ApiGone,
    ApiInvalid,
    ApiNotFound,
    ApiThrottled,
    ApiUnavailable,
    NotLeading,
)
from federationd.clusters.health import ClusterHealth, ClusterState, HealthSnapshot
from federationd.clusters.kubeconfig import Kubeconfig, KubeconfigRejected, fingerprint, sanitise
from federationd.clusters.secrets import (
    SecretFormatError,
    is_istio_remote_secret,
    kubeconfig_from_secret,
    remotes_in_secret,
)

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "ApiBadRequest",
    "ApiConflict",
    "ApiError",
    "ApiForbidden",
    "ApiGone",
    "ApiInvalid",
    "ApiNotFound",
    "ApiThrottled",
    "ApiUnavailable",
    "Backoff",
    "BackoffPolicy",
    "ClusterClient",
    "ClusterHealth",
    "ClusterState",
    "Discovery",
    "HealthSnapshot",
    "Kubeconfig",
    "KubeconfigRejected",
    "NotLeading",
    "ResourceInfo",
    "SecretFormatError",
    "UnknownKind",
    "connect",
    "fingerprint",
    "is_istio_remote_secret",
    "kubeconfig_from_secret",
    "remotes_in_secret",
    "sanitise",
]
