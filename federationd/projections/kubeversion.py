"""Whether a cluster's Kubernetes can run the requested Istio, from its discovery fact.

Istio 1.1 and 1.2 do not only *install* objects: at run time their sidecar injector and
galley patch the ``caBundle`` of their webhook configurations through the
``admissionregistration.k8s.io/v1beta1`` client (the 1.1.14 / 1.2.8 sources), an API
Kubernetes removed in 1.22. Installing them on a cluster without it gives a mesh whose injector never becomes
trustworthy and whose pods are denied, so such a cluster is *held* (nothing applied)
and its CR says why in one sentence naming the cluster's version.

A cluster whose discovery has not been observed yet is not held: rendering then uses
the GA API versions, as it did before the fact existed. The daemon observes the fact
when it connects, before a remote joins (it comes before the identity read that a join
waits for) and before the master's initial sync completes, so in practice the first
render already has it; holding on "unknown" instead would stall every cluster whose
discovery cannot be read (a restricted credential, an old log replayed) for a check
that only matters on Kubernetes ≥ 1.22.

Pure: reads the projection state's facts, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from federationd.api import v1beta1
from federationd.projections.state import KubernetesApis

#: Per Istio family: the group/version its binaries need from the API server at run
#: time, which of its components need it (master, remote), and the newest Kubernetes
#: release serving it.
REQUIRED_APIS: Final[Mapping[str, tuple[str, str, str, str]]] = {
    "1.1": ("admissionregistration.k8s.io/v1beta1", "sidecar injector and galley", "sidecar injector", "1.21"),
    "1.2": ("admissionregistration.k8s.io/v1beta1", "sidecar injector and galley", "sidecar injector", "1.21"),
}


def istio_family(spec: v1beta1.IstioSpec) -> str:
    """The Istio family whose images run for this spec (an empty version runs the newest)."""
    return v1beta1.version_family(v1beta1.image_tag_for(spec.version))


def refusal(
    spec: v1beta1.IstioSpec, apis: KubernetesApis | None, *, cluster: str, role: str
) -> str:
    """Why ``cluster`` cannot run the Istio of ``spec`` ("" when it can, or while its
    discovery is unknown). ``role`` is ``master`` or ``remote`` (which components run)."""
    if apis is None:
        return ""
    family = istio_family(spec)
    need = REQUIRED_APIS.get(family)
    if need is None:
        return ""
    api, master_components, remote_components, newest = need
    if api in apis.group_versions:
        return ""
    components = master_components if role == "master" else remote_components
    version = f"Kubernetes {apis.version}" if apis.version else "Kubernetes of an unknown version"
    verb = "need" if " and " in components else "needs"
    return (
        f"{version} on {cluster} does not serve {api}, which Istio {family}'s "
        f"{components} {verb}; use a cluster of Kubernetes {newest} or older"
    )


def served(apis: KubernetesApis | None) -> tuple[str, ...]:
    """The group/versions to render for (empty while unknown: the GA versions)."""
    return apis.group_versions if apis is not None else ()
