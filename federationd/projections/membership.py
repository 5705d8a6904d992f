"""The fleet's membership, derived: which remotes to connect, which are leaving, which
are refused, which finalizers to release, where each ``cacerts`` goes.

These decisions used to be taken by the daemon from what it held in memory (runtimes,
monotonic timers), so a replay of the log could not say why a remote was dropped or a
finalizer released. Here they are a pure function of the folded state, computed by
``derive`` next to the desired objects and statuses and covered by the same hash:

* **Identity.** Every cluster's identity is a fact (``ClusterIdentityObserved``: the UID
  of its ``kube-system`` namespace, read when the daemon first connects). Of several
  RemoteIstios reaching one cluster the first identified wins; the others are *refused*
  with a status naming the winner, and so is a RemoteIstio that reaches the master. A
  refused remote is connected only for that one read, never written to, and deleting it
  cleans up nothing (the objects on that cluster belong to the winner).
* **Joining.** A live, unrefused RemoteIstio with a usable kubeconfig is connected with
  that kubeconfig's fingerprint (a new fingerprint means reconnect); until its identity
  is known it is connected for the identity read only (``identify_only``).
* **Leaving.** A cluster that is not a member but still holds something of ours (objects
  in the actuation record, a ``cacerts`` we placed) is connected to be emptied. Its leave
  began at a known event (``Departure``); the daemon's timer source appends
  ``CleanupDeadlinePassed`` for that event once ``--remote-cleanup-timeout`` has passed,
  and from then on the remote is removed with what was left behind. Time enters only as
  that fact: the projection never reads a clock.
* **Removal.** A cluster that is neither a member nor dirty but still known (connection
  state, identity, a departure) is *removed* (the daemon stops its runtime and appends
  ``ClusterRemoved``). A RemoteIstio whose cluster never connected has nothing to clean
  up and goes at once, not after the timeout.
* **Finalizers.** Every live RemoteIstio keeps federationd's finalizer; a deleted one is
  released once its cluster is removed and the master has converged without its network
  (every desired master object acknowledged in the log), with the left-behind warning
  when the clean-up was given up.
* **Trust.** ``cacerts`` go to the master and every joined member; leaving remotes lose
  theirs (``trust_plan``).

The module must not import ``derive`` (``derive`` imports it): what it needs of the
desired state comes in as arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import msgspec

from federationd.api import v1beta1
from federationd.projections.state import (
    CONNECTED,
    UNREACHABLE,
    CustomResource,
    Departure,
    ProjectionState,
    secret_of,
)

CACERTS_SECRET_NAME = "cacerts"

#: Listed first in a left-behind warning: what keeps running on the remote.
_WORKLOAD_KINDS = frozenset({"Deployment", "DaemonSet", "StatefulSet"})


# --- the result ---------------------------------------------------------------------------------


class Connect(msgspec.Struct, frozen=True, kw_only=True):
    """Connect this remote with the kubeconfig in ``secret`` (``Secret/<ns>/<name>``)
    whose fingerprint is ``fingerprint``. ``member``: it joins the mesh (False: connected
    only to clean up). ``identify_only``: its identity is not known yet; read it and
    nothing else."""

    secret: str
    fingerprint: str
    member: bool = True
    identify_only: bool = False


class Deadline(msgspec.Struct, frozen=True, kw_only=True):
    """A leave whose clean-up is bounded: it began with event ``since_seq`` at ``since``
    (seconds since the epoch, the event's own time)."""

    since_seq: int
    since: float


class TrustTarget(msgspec.Struct, frozen=True, kw_only=True):
    """A cluster that gets a ``cacerts`` in ``namespace``; ``observed`` is the public
    fingerprint of the one seen there ("" when none), so a deleted or replaced Secret
    changes the plan and wakes the actuator."""

    cluster: str
    namespace: str
    observed: str = ""


class TrustPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The root lives on ``master`` in ``namespace``: federationd's root Secret, or the
    user's CA Secret ``issuer_secret`` (``citadel.caSecretName``) when set. ``release``
    are the ``cacerts`` of leaving remotes, deleted: a cluster that left the mesh must
    not keep a key the mesh trusts."""

    master: str = ""
    namespace: str = ""
    issuer_secret: str = ""
    targets: tuple[TrustTarget, ...] = ()
    release: tuple[TrustTarget, ...] = ()


class Membership(msgspec.Struct, frozen=True, kw_only=True):
    """Every membership decision at one sequence number (see the module docstring)."""

    #: remote → how to connect it (members and remotes being emptied)
    connect: dict[str, Connect] = {}
    #: remotes connected only to be emptied, in name order
    leaving: tuple[str, ...] = ()
    #: remote → bounded clean-up in progress (the timer source appends its deadline)
    deadlines: dict[str, Deadline] = {}
    #: clusters to forget (stop, ``ClusterRemoved``) → what was left behind ("" if clean)
    remove: dict[str, str] = {}
    #: remote → why its RemoteIstio is refused
    refused: dict[str, str] = {}
    #: ``<namespace>/<name>`` of every RemoteIstio that keeps federationd's finalizer
    finalize: tuple[str, ...] = ()
    #: ``<namespace>/<name>`` → warning to record ("" for none) as its finalizer goes
    release: dict[str, str] = {}
    trust: TrustPlan | None = None


class _HasHash(Protocol):
    @property
    def content_hash(self) -> str: ...


class _ClusterObjects(Protocol):
    """What membership reads of a cluster's desired state (``derive.ClusterDesired``)."""

    @property
    def objects(self) -> Mapping[str, _HasHash]: ...

    @property
    def hold(self) -> bool: ...


# --- small pure helpers -----------------------------------------------------------------------------


def managed_istio(state: ProjectionState) -> CustomResource | None:
    """The one ``Istio`` federationd manages: the oldest (creation time, then namespace
    and name) that is not being deleted."""
    live = [cr for cr in state.istios.values() if not cr.deleting]
    if not live:
        return None
    return min(live, key=lambda cr: (cr.creation_timestamp, cr.namespace, cr.name))


def holds_trust(state: ProjectionState, cluster: str) -> bool:
    """Whether a ``cacerts`` federationd placed is still observed on ``cluster`` (a
    leaving remote is dropped only once it is gone, or after the cleanup timeout)."""
    return any(ca.managed for ca in state.ca_secrets.get(cluster, {}).values())


def left_behind_message(remote: str, *, reason: str, waited: float, left: Sequence[str]) -> str:
    """What the Warning Event says: that the remote was unreachable, for how long, and
    which of federationd's objects may still be on it — grouped by kind, so that the
    workloads are not lost behind two dozen CRDs in an Event's 1 KiB (object keys
    ``apiVersion/Kind/namespace/name``, never content)."""
    by_kind: dict[str, list[str]] = {}
    for key in left:
        _, kind, namespace, name = key.rsplit("/", 3)
        by_kind.setdefault(kind, []).append(f"{namespace}/{name}" if namespace else name)
    parts = []
    for kind in sorted(by_kind, key=lambda k: (k not in _WORKLOAD_KINDS, k)):
        names = sorted(by_kind[kind])
        shown = ", ".join(names[:5]) + (f", +{len(names) - 5} more" if len(names) > 5 else "")
        parts.append(f"{len(names)} {kind} ({shown})")
    what = "left behind on it: " + "; ".join(parts) if parts else "nothing of federationd's was known to be on it"
    why = f" ({reason})" if reason else ""
    return (
        f"remote {remote} was unreachable{why} for {waited:g}s while leaving the mesh; "
        f"its network and references were removed from the master; {what}"
    )


def _master_names(state: ProjectionState, istio: CustomResource | None) -> set[str]:
    """The master's cluster name(s): where the CRs are observed."""
    names = {cr.cluster for cr in state.remote_istios.values()}
    if state.master:
        names.add(state.master)
    if istio is not None:
        names.add(istio.cluster)
    return names


#: The last ``refusals`` answer and the maps it was computed from: ``derive`` asks once
#: per rendered remote, and the state is copy-on-write, so unchanged maps are the same
#: objects (compared by identity; they are held here, so an id is never reused).
_last_refusals: list[tuple[tuple[object, object, object], dict[str, str]]] = []


def refusals(state: ProjectionState) -> dict[str, str]:
    """remote → why its RemoteIstio is refused: it reaches the master, or a cluster that
    an earlier-identified RemoteIstio already brings into the mesh. Only remotes whose
    identity is known can be refused."""
    inputs = (state.identities, state.remote_istios, state.istios)
    if _last_refusals and all(a is b for a, b in zip(_last_refusals[0][0], inputs, strict=True)):
        return _last_refusals[0][1]
    out = _refusals(state)
    _last_refusals[:] = [(inputs, out)]
    return out


def _refusals(state: ProjectionState) -> dict[str, str]:
    crs = {cr.name: cr for cr in sorted(state.remote_istios.values(), key=lambda cr: (cr.namespace, cr.name))}
    masters = {cr.cluster for cr in crs.values()} | {cr.cluster for cr in state.istios.values()}
    if state.master:
        masters.add(state.master)
    master_uids = {state.identities[m].uid: m for m in sorted(masters) if m in state.identities}
    out: dict[str, str] = {}
    first: dict[str, str] = {}  # uid → the remote that has it
    # first identified first; a name breaks a tie (there is none in a log: seqs differ)
    named = sorted((state.identities[n].seq, n) for n in crs if n in state.identities and n not in masters)
    for _, name in named:
        uid = state.identities[name].uid
        if uid in master_uids:
            out[name] = f'the cluster is the master cluster "{master_uids[uid]}"; a RemoteIstio must name another cluster'
        elif uid in first:
            out[name] = f'the cluster is already in the mesh as RemoteIstio "{first[uid]}"'
        else:
            first[uid] = name
    return out


def master_converged(state: ProjectionState, cluster: str, desired: _ClusterObjects | None) -> bool:
    """Every object desired on ``cluster`` acknowledged in the log at its current content,
    and nothing applied there that is no longer desired (a held cluster changes nothing,
    so it counts as converged)."""
    acts = state.actuations.get(cluster, {})
    if desired is None:
        return not acts
    if desired.hold:
        return True
    for key, d in desired.objects.items():
        a = acts.get(key)
        if a is None or a.content_hash != d.content_hash or a.drifted:
            return False
    return all(key in desired.objects for key in acts)


# --- trust -------------------------------------------------------------------------------------------


def trust_plan(
    state: ProjectionState, *, remotes: Iterable[str], leaving: Iterable[str] = ()
) -> TrustPlan | None:
    """The plan for the managed ``Istio``, the joined ``remotes`` and the ``leaving``
    ones (None: nothing to do). A cluster whose CR names its own ``citadel.caSecretName``
    keeps its own CA and gets no ``cacerts``; a cluster gets one only once its
    control-plane namespace is observed (before, the write could only fail)."""
    release = tuple(
        TrustTarget(cluster=c, namespace=key.partition("/")[0], observed=ca.fingerprint)
        for c in sorted(set(leaving))
        for key, ca in sorted(state.ca_secrets.get(c, {}).items())
        if ca.managed
    )
    istio = managed_istio(state)
    if istio is None or istio.good_spec is None:
        return TrustPlan(release=release) if release else None
    spec = v1beta1.istio_spec(istio.good_spec, namespace=istio.namespace)
    issuer = spec.citadel.ca_secret_name

    targets: list[TrustTarget] = []

    def add(cluster: str, namespace: str) -> None:
        ns = state.namespaces.get(cluster, {}).get(namespace)
        if ns is None or ns.terminating:
            return
        ca = state.ca_secrets.get(cluster, {}).get(f"{namespace}/{CACERTS_SECRET_NAME}")
        targets.append(TrustTarget(cluster=cluster, namespace=namespace, observed=ca.fingerprint if ca else ""))

    if not issuer:
        add(istio.cluster, istio.namespace)
    crs = {cr.name: cr for cr in state.remote_istios.values() if not cr.deleting}
    for name in sorted(set(remotes)):
        cr = crs.get(name)
        if cr is None or cr.good_spec is None or name == istio.cluster:
            continue
        if v1beta1.remote_istio_spec(cr.good_spec, namespace=cr.namespace).citadel.ca_secret_name:
            continue
        add(name, cr.namespace)
    return TrustPlan(
        master=istio.cluster, namespace=istio.namespace, issuer_secret=issuer,
        targets=tuple(targets), release=release,
    )


# --- membership ---------------------------------------------------------------------------------------


def _leave_started(state: ProjectionState, name: str) -> Departure:
    """When the leave of a dirty non-member began: its departure, or — for a state that
    predates departures — the last write recorded on it."""
    dep = state.departures.get(name)
    if dep is not None:
        return dep
    acts = state.actuations.get(name, {}).values()
    last = max(acts, key=lambda a: a.seq, default=None)
    return Departure(seq=last.seq if last else 0, time=last.time if last else 0.0)


def _give_up_reason(state: ProjectionState, name: str, usable_kubeconfig: bool) -> str:
    c = state.clusters.get(name)
    if not usable_kubeconfig:
        return "no usable kubeconfig"
    if c is not None and c.state == UNREACHABLE:
        return c.reason
    return "" if c is not None and c.state == CONNECTED else "never connected"


def membership(
    state: ProjectionState,
    *,
    istio: CustomResource | None,
    desired: Mapping[str, _ClusterObjects],
) -> Membership:
    """Every membership decision for ``state`` (see the module docstring). ``istio`` is
    the managed Istio; ``desired`` the desired objects per cluster."""
    refused = refusals(state)
    masters = _master_names(state, istio)
    crs: dict[str, CustomResource] = {}
    for _, cr in sorted(state.remote_istios.items()):
        crs.setdefault(cr.name, cr)
    members = {n for n, cr in crs.items() if not cr.deleting and n not in refused and n not in masters}
    kubeconfigs: dict[str, tuple[str, str]] = {}
    for key, kc in sorted(state.kubeconfigs.items()):
        if not kc.problem and kc.remote not in kubeconfigs:
            kind, ns, name = secret_of(key)
            kubeconfigs[kc.remote] = (f"{kind}/{ns}/{name}", kc.fingerprint)

    connect: dict[str, Connect] = {}
    leaving: list[str] = []
    deadlines: dict[str, Deadline] = {}
    remove: dict[str, str] = {}
    known = set(crs) | set(state.actuations) | set(state.clusters) | set(state.identities) | set(state.departures)
    known |= {c for c, cas in state.ca_secrets.items() if cas}
    for name in sorted(known - masters):
        usable = kubeconfigs.get(name)
        if name in members:
            if usable is not None:
                connect[name] = Connect(
                    secret=usable[0], fingerprint=usable[1], identify_only=name not in state.identities
                )
            continue
        live = crs.get(name)
        if name in refused:
            # Refused: never connected beyond the identity read, nothing of ours on it
            # under this name. Forgotten (identity and all) only once its CR is deleted,
            # so that a live duplicate stays refused rather than being probed again.
            if live is None or live.deleting:
                remove[name] = ""
            continue
        dirty = bool(state.actuations.get(name)) or holds_trust(state, name)
        dep = state.departures.get(name)
        if dirty and not (dep is not None and dep.deadline_passed):
            if usable is not None:
                connect[name] = Connect(secret=usable[0], fingerprint=usable[1], member=False)
                leaving.append(name)
            since = _leave_started(state, name)
            deadlines[name] = Deadline(since_seq=since.seq, since=since.time)
            continue
        if dirty:
            assert dep is not None
            remove[name] = left_behind_message(
                name, reason=_give_up_reason(state, name, usable is not None), waited=dep.timeout,
                left=sorted(state.actuations.get(name, {})),
            )
            continue
        if name in state.clusters or name in state.identities or (dep is not None and not dep.removed):
            remove[name] = ""

    finalize: list[str] = []
    release: dict[str, str] = {}
    master = istio.cluster if istio is not None else None
    converged = master is None or master_converged(state, master, desired.get(master))
    for key, cr in sorted(state.remote_istios.items()):
        if not cr.deleting:
            finalize.append(key)
            continue
        n = cr.name
        if n in connect or n in remove or n in deadlines or not converged:
            continue  # still leaving, or the master still announces its network
        dep = state.departures.get(n)
        release[key] = dep.left_behind if dep is not None else ""

    joined = [n for n, c in connect.items() if c.member and not c.identify_only]
    return Membership(
        connect=connect,
        leaving=tuple(leaving),
        deadlines=deadlines,
        remove=remove,
        refused={n: refused[n] for n in sorted(refused)},
        finalize=tuple(finalize),
        release=release,
        trust=trust_plan(state, remotes=joined, leaving=leaving),
    )


__all__ = [
    "Connect",
    "Deadline",
    "Membership",
    "TrustPlan",
    "TrustTarget",
    "holds_trust",
    "left_behind_message",
    "managed_istio",
    "master_converged",
    "membership",
    "refusals",
    "trust_plan",
]
