"""The event catalogue: everything federationd can learn or do, as small frozen facts.

Read this module to know everything that can happen. Every event is a frozen, tagged
``msgspec.Struct`` that shares one envelope:

* ``cluster`` — the cluster the fact is about (``ClusterName``);
* the type tag — the *kind of fact* (the class name, stored as ``type``);
* ``key`` — what the fact is about inside that cluster, e.g. ``Service/istio-system/x``;
* ``time`` — seconds since the epoch, **supplied by the caller** so that projections never
  read a clock and replay is deterministic.

Events are facts, not commands: "gateway addresses observed", never "update meshNetworks".

Rules for adding or extending an event (the log is forever):

1. A new event is a new class here; add it to ``CATALOGUE`` and bump nothing else.
2. A new field on an existing event **always** gets a default, so that a log written by
   an older catalogue still decodes (``tests/events/fixtures`` holds a log written by an
   earlier catalogue and a test decodes it).
3. Never rename or remove a field, never change its type, never reuse a tag. Deprecate by
   leaving the field in place and ignoring it.
4. A change that breaks rule 2 or 3 is a new ``SCHEMA_VERSION``; logs written by a newer
   schema are refused by older code with both versions named.
5. No secret ever enters an event: a kubeconfig is recorded as its server URL and a
   sha256 fingerprint; a CA key never.
"""

from __future__ import annotations

from typing import Any, ClassVar, NewType

import msgspec

ClusterName = NewType("ClusterName", str)
Seq = NewType("Seq", int)

#: Version of the on-disk log format and event catalogue. Bumped only on a change that
#: an older reader could not decode (see rule 4 above).
SCHEMA_VERSION = 1


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """The shared envelope. Subclasses are tagged with their class name."""

    #: What kind of thing a *fact* is about (observed and removed facts about the same
    #: thing share a family); "" for events that are not watched facts (actuation,
    #: leadership, deadlines). Facts remembered per ``(cluster, family, key)`` are what
    #: a restarted daemon compares a cluster's first list with (``fact_identity``).
    family: ClassVar[str] = ""
    #: True on the fact that says the thing is gone (``NamespaceRemoved``, …).
    removal: ClassVar[bool] = False

    cluster: ClusterName
    key: str
    time: float


# --- clusters and credentials ---------------------------------------------------------


class ClusterConnected(Event, frozen=True, tag=True):
    """A cluster answered: its API server URL and version. ``fingerprint`` is the sha256
    of the kubeconfig it was reached with (never the kubeconfig itself)."""

    family = "cluster"

    server: str
    fingerprint: str = ""
    version: str = ""


class ClusterUnreachable(Event, frozen=True, tag=True):
    """A cluster could not be reached or refused us; ``reason`` is already redacted."""

    family = "cluster"

    reason: str
    since: float = 0.0


class ClusterRemoved(Event, frozen=True, tag=True):
    """The daemon stopped tracking a cluster (its RemoteIstio is gone). ``left_behind``
    is, when the clean-up was given up at its deadline, what was left on the cluster and
    why (the RemoteIstio's Warning Event says it when its finalizer is released)."""

    family = "cluster"
    removal = True

    left_behind: str = ""


class ClusterIdentityObserved(Event, frozen=True, tag=True):
    """Which cluster a name reaches: the UID of its ``kube-system`` namespace (``key`` is
    ``Namespace//kube-system``), read once when the daemon connects. Two names with one
    identity are one cluster; the membership projection refuses the second."""

    family = "identity"

    uid: str


class KubernetesApisObserved(Event, frozen=True, tag=True):
    """What a cluster's API server is (``key`` is ``Discovery//<cluster>``): its
    ``version`` (``/version`` ``gitVersion``, e.g. ``v1.16.0``) and the built-in
    ``group/version`` strings it serves (``/api`` and ``/apis``, sorted; groups of custom
    resources left out so that installing a CRD does not change the fact). Read when the
    daemon connects to the cluster and again on every reconnect (an upgrade changes it).
    Rendering picks each kind's API version from it; a cluster that cannot run the
    requested Istio is refused by it."""

    family = "kubernetes"

    version: str = ""
    group_versions: tuple[str, ...] = ()


class KubeconfigObserved(Event, frozen=True, tag=True):
    """A Secret holding a kubeconfig for a remote cluster was seen (or changed).

    ``key`` is ``Secret/<namespace>/<name>``; ``remote`` is the cluster it reaches.
    ``problem`` is a sanitisation refusal ("uses exec", "reads a local file", …), empty
    when the kubeconfig is usable."""

    family = "kubeconfig"

    remote: str
    server: str
    fingerprint: str
    problem: str = ""


class KubeconfigRemoved(Event, frozen=True, tag=True):
    family = "kubeconfig"
    removal = True

    remote: str


# --- custom resources -------------------------------------------------------------------


class IstioSpecChanged(Event, frozen=True, tag=True):
    """An ``Istio`` CR was created or its spec/metadata changed. ``spec`` is the raw spec
    as the user wrote it (defaults are applied by projections, so replay with newer code
    applies newer defaults consistently)."""

    family = "istio"

    namespace: str
    name: str
    uid: str
    generation: int
    spec: dict[str, Any]
    creation_timestamp: str = ""
    deleting: bool = False


class IstioRemoved(Event, frozen=True, tag=True):
    family = "istio"
    removal = True

    namespace: str
    name: str


class RemoteIstioSpecChanged(Event, frozen=True, tag=True):
    family = "remoteistio"

    namespace: str
    name: str
    uid: str
    generation: int
    spec: dict[str, Any]
    creation_timestamp: str = ""
    deleting: bool = False


class RemoteIstioRemoved(Event, frozen=True, tag=True):
    family = "remoteistio"
    removal = True

    namespace: str
    name: str


# --- cluster facts ------------------------------------------------------------------------


class NamespaceObserved(Event, frozen=True, tag=True):
    family = "namespace"

    name: str
    labels: dict[str, str] = {}
    terminating: bool = False


class NamespaceRemoved(Event, frozen=True, tag=True):
    family = "namespace"
    removal = True

    name: str


class NodeLocalityObserved(Event, frozen=True, tag=True):
    """A node's locality (region/zone/subzone) and the addresses a NodePort gateway can be
    reached on. Heartbeats and other status churn never produce this event."""

    family = "node"

    node: str
    region: str = ""
    zone: str = ""
    subzone: str = ""
    addresses: tuple[str, ...] = ()


class NodeRemoved(Event, frozen=True, tag=True):
    family = "node"
    removal = True

    node: str


class GatewayAddressesObserved(Event, frozen=True, tag=True):
    """What a gateway Service offers to other networks."""

    family = "gateway"

    namespace: str
    name: str
    service_type: str
    ips: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()
    node_ports: dict[str, int] = {}
    ports: dict[str, int] = {}


class GatewayRemoved(Event, frozen=True, tag=True):
    family = "gateway"
    removal = True

    namespace: str
    name: str


class HostnameResolved(Event, frozen=True, tag=True):
    """A load-balancer hostname resolved (by the daemon's resolver) to these IPs."""

    family = "hostname"

    hostname: str
    ips: tuple[str, ...] = ()
    error: str = ""


class WorkloadReadinessObserved(Event, frozen=True, tag=True):
    """Readiness of a managed Deployment/DaemonSet/StatefulSet."""

    family = "workload"

    kind: str
    namespace: str
    name: str
    ready: bool
    desired: int = 0
    available: int = 0
    image: str = ""
    #: ``metadata.generation`` of the object observed and the ``status.observedGeneration``
    #: its controller reported: readiness says something about a write only once the
    #: controller has observed the generation that write produced.
    generation: int = 0
    observed_generation: int = 0


class WorkloadRemoved(Event, frozen=True, tag=True):
    family = "workload"
    removal = True

    kind: str
    namespace: str
    name: str


class PodAddressesObserved(Event, frozen=True, tag=True):
    """Ready pod IPs behind a Service (flat-network federation of ``enabledServices``)."""

    family = "endpoints"

    namespace: str
    service: str
    ips: tuple[str, ...] = ()
    ports: dict[str, int] = {}


# --- managed objects and actuation --------------------------------------------------------


class ObjectDrifted(Event, frozen=True, tag=True):
    """A managed object no longer has the content federationd applied (edited or deleted
    by hand). ``key`` is ``<apiVersion>/<Kind>/<namespace>/<name>``."""

    observed_hash: str = ""
    deleted: bool = False


class ActuationApplied(Event, frozen=True, tag=True):
    """A write (server-side apply or delete) took effect."""

    verb: str
    content_hash: str
    latency: float
    cause_seq: int = 0
    #: ``metadata.generation`` of the object after the write (0 when unknown, e.g. a
    #: delete): a workload's readiness counts only once observed at this generation.
    generation: int = 0


class ActuationFailed(Event, frozen=True, tag=True):
    verb: str
    content_hash: str
    latency: float
    error: str
    retry_in: float = 0.0
    cause_seq: int = 0


# --- the daemon itself ----------------------------------------------------------------------


class LeadershipAcquired(Event, frozen=True, tag=True):
    identity: str


class LeadershipLost(Event, frozen=True, tag=True):
    identity: str


class MasterConfigured(Event, frozen=True, tag=True):
    """The daemon runs against ``cluster`` as its master (appended at start when the log
    does not say so yet): the membership projection never takes the master for a remote,
    even before any Istio or RemoteIstio names it."""

    identity: str = ""



# --- the shared root of trust ----------------------------------------------------------------


class CaSecretObserved(Event, frozen=True, tag=True):
    """A plug-in CA Secret (``cacerts``) on a cluster, by its PUBLIC fingerprint only
    (``federationd.trust.public_fingerprint``: sha256 over the certificates, never the
    key). ``key`` is ``Secret/<namespace>/<name>``; ``managed`` says federationd's trust
    manager wrote it; ``problem`` is why its certificates cannot be read (no fingerprint)."""

    family = "cacerts"

    namespace: str
    name: str
    fingerprint: str = ""
    managed: bool = False
    problem: str = ""


class CaSecretRemoved(Event, frozen=True, tag=True):
    family = "cacerts"
    removal = True

    namespace: str
    name: str


class TrustObserved(Event, frozen=True, tag=True):
    """Whether a cluster could be given a ``cacerts`` chained to the mesh's root
    (``key`` is ``Trust//<cluster>``): ``root_fingerprint`` is the root's public
    fingerprint; ``problem`` (empty when in place) why not — a malformed root Secret, a
    ``cacerts`` federationd did not create. Never key or certificate data."""

    family = "trust"

    root_fingerprint: str = ""
    problem: str = ""


# --- cluster DNS (multi-mesh ``.global`` names) ------------------------------------------


class ClusterDnsObserved(Event, frozen=True, tag=True):
    """The part of a cluster DNS ConfigMap federationd edits for multi-mesh: the
    ``Corefile`` of ``kube-system/coredns`` or the ``stubDomains`` of ``kube-system/
    kube-dns`` (``data_key``), as text (``present`` False when the ConfigMap has no such
    key). ``key`` is ``ConfigMap/<namespace>/<name>``."""

    family = "clusterdns"

    namespace: str
    name: str
    data_key: str
    text: str = ""
    present: bool = True


class ClusterDnsRemoved(Event, frozen=True, tag=True):
    family = "clusterdns"
    removal = True

    namespace: str
    name: str


class ServiceAddressObserved(Event, frozen=True, tag=True):
    """A Service's ClusterIP (the istiocoredns Service's: where cluster DNS forwards
    ``global``). ``key`` is ``Service/<namespace>/<name>``."""

    family = "serviceaddress"

    namespace: str
    name: str
    cluster_ip: str = ""


class ServiceAddressRemoved(Event, frozen=True, tag=True):
    family = "serviceaddress"
    removal = True

    namespace: str
    name: str


# --- time ---------------------------------------------------------------------------------------


class CleanupDeadlinePassed(Event, frozen=True, tag=True):
    """The clean-up of a leaving remote (``cluster``) ran out of time: appended by the
    daemon's timer source once ``timeout`` seconds have passed since the leave that began
    at sequence number ``since_seq`` (``key`` is ``Cleanup//<remote>``). Time enters the
    projections only as facts like this one, so a replay reproduces the decision."""

    since_seq: int
    timeout: float = 0.0


#: Every event type, in order of introduction. The decoder accepts exactly these tags.
CATALOGUE: tuple[type[Event], ...] = (
    ClusterConnected,
    ClusterUnreachable,
    ClusterRemoved,
    KubeconfigObserved,
    KubeconfigRemoved,
    IstioSpecChanged,
    IstioRemoved,
    RemoteIstioSpecChanged,
    RemoteIstioRemoved,
    NamespaceObserved,
    NamespaceRemoved,
    NodeLocalityObserved,
    NodeRemoved,
    GatewayAddressesObserved,
    GatewayRemoved,
    HostnameResolved,
    WorkloadReadinessObserved,
    WorkloadRemoved,
    PodAddressesObserved,
    ObjectDrifted,
    ActuationApplied,
    ActuationFailed,
    LeadershipAcquired,
    LeadershipLost,
    CaSecretObserved,
    CaSecretRemoved,
    TrustObserved,
    ClusterIdentityObserved,
    CleanupDeadlinePassed,
    MasterConfigured,
    KubernetesApisObserved,
    ClusterDnsObserved,
    ClusterDnsRemoved,
    ServiceAddressObserved,
    ServiceAddressRemoved,
)


def fact_identity(event: Event) -> tuple[str, str, str, str]:
    """What a fact is *about*: (cluster, family, key, sub-key). Facts with one identity
    replace each other; a kubeconfig Secret in Istio's format holds several remotes,
    told apart by the sub-key."""
    family = event.family or type(event).__name__
    sub = str(getattr(event, "remote", "")) if family == "kubeconfig" else ""
    return (event.cluster, family, event.key, sub)
