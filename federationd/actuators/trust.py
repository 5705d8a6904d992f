"""Placing the mesh's shared root of trust: the root CA Secret and every cluster's ``cacerts``.

Sidecars of different clusters accept each other only if every citadel signs with a CA
chained to one root (``federationd.trust`` builds the certificates and Secrets). This
module is the I/O around it, and it deliberately lives **outside** the derived desired
state: that state is printable, hashed, replayable and explained from the log, and key
material must never be any of those. So:

* **Leader-only writer.** :class:`TrustActuator` runs while the daemon leads. Each pass
  reads the master's root Secret (``federationd-root-ca`` in the master ``Istio``'s
  namespace; generated and created once when absent) — or, when the master ``Istio``
  names ``citadel.caSecretName``, the user's CA in that Secret as the issuer — then,
  for the master (unless it uses its own CA Secret) and every connected remote, reads
  ``cacerts`` in the control-plane namespace and asks ``trust.plan_cacerts`` whether a
  write is needed: create when absent, replace (optimistic lock on its resourceVersion)
  when ours is unreadable, issued by another root or due for renewal, **nothing** when
  in place — a resync costs reads only. Clusters are handled concurrently: one slow or
  unreachable remote does not hold up the others.
* **Refusals, never repairs.** A malformed root Secret or a ``cacerts`` federationd did
  not create is left exactly as it is and reported as ``TrustObserved(problem=…)``,
  which status shows on the ``Istio`` / ``RemoteIstio``. A broken root silently
  replaced would split the mesh's trust; a user's own ``cacerts`` is theirs.
* **Only public facts in the log.** ``TrustObserved`` carries the root's *public*
  fingerprint; :data:`CACERTS` is the fact source turning an observed ``cacerts``
  Secret into ``CaSecretObserved`` with its public fingerprint (``trust.
  public_fingerprint``, certificates only) and whether the trust manager wrote it. That
  fact is what makes derive point citadel at ``cacerts`` and fold the fingerprint into
  citadel's pod-template hash. Log lines name Secrets and fingerprints; errors are
  reported by class and HTTP status, never with a request body.

The fact source lives here and not in ``watchers.facts`` because computing a fingerprint
needs ``federationd.trust``, which the watchers' import contract keeps out of reach.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from events import types as ev
from events.types import ClusterName, Event
from federationd import trust
from federationd.actuators.client import ApiConflict, ApiError, ApiNotFound, KubeClient
from federationd.actuators.keys import KeyMaker
from federationd.actuators.passes import PassLoop
from federationd.projections.membership import TrustPlan, TrustTarget, holds_trust, trust_plan
from federationd.render.objects import MANAGED_BY_LABEL
from federationd.watchers.facts import FactSource

__all__ = [
    "CACERTS",
    "TrustActuator",
    "TrustPlan",
    "TrustTarget",
    "cacerts_fact",
    "cacerts_removed",
    "holds_trust",
    "trust_key",
    "trust_plan",
]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Record = Callable[[Sequence[Event]], Awaitable[object]]


# --- observing cacerts ------------------------------------------------------------------------


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def cacerts_fact(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    """``CaSecretObserved`` with the Secret's public fingerprint: never its data."""
    m = _meta(obj)
    ns, name = str(m.get("namespace") or ""), str(m.get("name") or "")
    managed = (m.get("labels") or {}).get(MANAGED_BY_LABEL) == trust.TRUST_MANAGER
    fingerprint, problem = "", ""
    try:
        fingerprint = trust.public_fingerprint(obj)
    except trust.TrustError as e:  # messages name the field, never the data
        problem = str(e)
    return [
        ev.CaSecretObserved(
            cluster=cluster, key=f"Secret/{ns}/{name}", time=now, namespace=ns, name=name,
            fingerprint=fingerprint, managed=managed, problem=problem,
        )
    ]


def cacerts_removed(cluster: ClusterName, obj: Obj, now: float) -> list[Event]:
    m = _meta(obj)
    ns, name = str(m.get("namespace") or ""), str(m.get("name") or "")
    return [ev.CaSecretRemoved(cluster=cluster, key=f"Secret/{ns}/{name}", time=now, namespace=ns, name=name)]


#: Every ``cacerts`` Secret of a cluster, whatever its namespace (the control-plane
#: namespace is the CR's, which the runtime does not know when it starts watching).
CACERTS = FactSource(
    "v1", "Secret", cacerts_fact, cacerts_removed,
    field_selector=f"metadata.name={trust.CACERTS_SECRET_NAME}", family="cacerts",
)


def trust_key(cluster: str) -> str:
    """The key of a cluster's ``TrustObserved`` fact."""
    return f"Trust//{cluster}"


# --- what to place where -----------------------------------------------------------------------


# ``TrustPlan``, ``trust_plan`` and ``holds_trust`` are decisions, derived with the rest of
# the membership (``projections.membership``); re-exported here for the writer's users.


# --- the writer ------------------------------------------------------------------------------------


class _RootUnusable(Exception):
    """The issuer cannot be used; the message is safe to record."""


class TrustActuator(PassLoop):
    """Keeps every planned cluster's ``cacerts`` chained to the mesh's root.

    ``kube(cluster)`` gives the cluster's client (None when not connected); ``record``
    appends facts (the daemon's change-filtering emitter). :meth:`set_plan` after every
    derivation, :meth:`resync` on the resync period; :meth:`start` / :meth:`pause` follow
    leadership. :meth:`reconcile_once` is one pass (tests drive it directly)."""

    label = "trust"

    def __init__(
        self,
        *,
        kube: Callable[[str], KubeClient | None],
        record: Record,
        root_validity: timedelta = timedelta(days=3650),
        validity: timedelta = timedelta(days=365),
        renew_before: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wall: Callable[[], float] = time.time,
        max_retry: float = 30.0,
        keys: KeyMaker | None = None,
    ) -> None:
        self._kube = kube
        #: the intermediates' keys, made in a worker process (``actuators.keys``)
        self._keys = keys or KeyMaker()
        self._own_keys = keys is None
        self._record = record
        self._root_validity = root_validity
        self._validity = validity
        self._renew_before = renew_before
        self._clock = clock
        self._wall = wall
        super().__init__(max_retry=max_retry, settled=False)
        self._plan: TrustPlan | None = None
        # (uid, resourceVersion) of the issuer Secret → the parsed issuer: the full key
        # check runs once per version of the Secret, not on every resync.
        self._root: tuple[tuple[str, str], trust.RootCA] | None = None
        self._warned: dict[str, str] = {}
        #: cluster → ((uid, resourceVersion, root fingerprint) of the ``cacerts`` found in
        #: place, when it expires): a resync re-reads the Secret but parses it only when
        #: it changed, the root changed, or its renewal is due
        self._in_place: dict[str, tuple[tuple[Any, Any, str], datetime]] = {}
        self.passes = 0
        self.writes = 0

    async def stop(self) -> None:
        await super().stop()
        if self._own_keys:
            self._keys.close()

    # --- inputs ---------------------------------------------------------------------------

    def set_plan(self, plan: TrustPlan | None) -> None:
        if plan != self._plan:
            self._plan = plan
            self._wake.set()

    def idle(self) -> bool:
        """Nothing pending: the last pass covered the current plan and settled (for
        ``/debug/converged`` and tests)."""
        return self._task is not None and self._settled and not self._wake.is_set()

    # --- one pass ---------------------------------------------------------------------------

    async def reconcile_once(self) -> bool:
        """One pass over the plan. True when nothing is left to retry (every target in
        place or refused with a recorded problem), False when a request failed."""
        plan = self._plan
        self.passes += 1
        if plan is None:
            return True
        released = await asyncio.gather(*(self._release(t) for t in plan.release))
        if not plan.master:
            return all(released)
        master = self._kube(plan.master)
        if master is None:
            return False
        try:
            root = await self._issuer(master, plan)
        except _RootUnusable as e:
            problem = str(e)
            self._say(plan.master, problem)
            clusters = {plan.master, *(t.cluster for t in plan.targets)}
            await self._record([self._fact(c, problem=problem) for c in sorted(clusters)])
            return all(released)
        except ApiError as e:
            self._say(plan.master, f"cannot read the root of trust: {_api_error(e)}")
            return False
        results = await asyncio.gather(*(self._place(root, t) for t in plan.targets))
        facts: list[Event] = [e for e, _ in results if e is not None]
        if plan.master not in {t.cluster for t in plan.targets}:
            # The master keeps its own CA Secret (the issuer): it is in place by definition.
            facts.append(self._fact(plan.master, root=root))
        if facts:
            await self._record(facts)
        return all(ok for _, ok in results) and all(released)

    def _fact(self, cluster: str, *, root: trust.RootCA | None = None, problem: str = "") -> Event:
        return ev.TrustObserved(
            cluster=ClusterName(cluster), key=trust_key(cluster), time=self._wall(),
            root_fingerprint=root.fingerprint if root is not None else "", problem=problem,
        )

    async def _issuer(self, master: KubeClient, plan: TrustPlan) -> trust.RootCA:
        name = plan.issuer_secret or trust.ROOT_SECRET_NAME
        try:
            secret = await master.get("v1", "Secret", plan.namespace, name)
        except ApiNotFound:
            if plan.issuer_secret:
                raise _RootUnusable(
                    f"Secret {plan.namespace}/{name} named in citadel.caSecretName does not exist"
                ) from None
            return await self._create_root(master, plan.namespace)
        meta = _meta(secret)
        version = (str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
        if self._root is not None and self._root[0] == version:
            return self._root[1]
        parse = trust.root_from_cacerts_secret if plan.issuer_secret else trust.root_from_secret
        try:
            root = await asyncio.to_thread(parse, secret)
        except trust.TrustError as e:
            raise _RootUnusable(f"{e}; nothing was replaced, repair or remove the Secret") from None
        self._root = (version, root)
        return root

    async def _create_root(self, master: KubeClient, namespace: str) -> trust.RootCA:
        root = await asyncio.to_thread(
            trust.generate_root, common_name="federationd root CA", now=self._clock(), validity=self._root_validity
        )
        try:
            created = await master.create(trust.root_secret(root, namespace=namespace))
        except ApiConflict:
            # Created meanwhile (a previous leader's last act): use that one.
            secret = await master.get("v1", "Secret", namespace, trust.ROOT_SECRET_NAME)
            try:
                return await asyncio.to_thread(trust.root_from_secret, secret)
            except trust.TrustError as e:
                raise _RootUnusable(str(e)) from None
        self.writes += 1
        meta = _meta(created)
        self._root = ((str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")), root)
        log.info(
            "trust: created the root CA Secret %s/%s on %s (%s)",
            namespace, trust.ROOT_SECRET_NAME, master.name, root.fingerprint,
        )
        return root

    async def _place(self, root: trust.RootCA, target: TrustTarget) -> tuple[Event | None, bool]:
        """Ensure one cluster's ``cacerts``: (fact to record, settled)."""
        c, ns = target.cluster, target.namespace
        kube = self._kube(c)
        if kube is None:
            return None, False
        try:
            try:
                existing: Obj | None = await kube.get("v1", "Secret", ns, trust.CACERTS_SECRET_NAME)
            except ApiNotFound:
                existing = None
            now = self._clock()
            meta = _meta(existing) if existing is not None else {}
            seen = (meta.get("uid"), meta.get("resourceVersion"), root.fingerprint)
            known = self._in_place.get(c)
            if existing is not None and known is not None and known[0] == seen and now + self._renew_before < known[1]:
                # The same Secret version this process found in place under this root,
                # and not due for renewal: nothing to parse or verify again.
                self._warned.pop(c, None)
                return self._fact(c, root=root), True
            try:
                planned, expires = await asyncio.to_thread(
                    _plan, root, existing, cluster=c, namespace=ns, now=now,
                    validity=self._validity, renew_before=self._renew_before, new_key=self._keys,
                )
            except trust.TrustError as e:  # a foreign cacerts, or an issuer that cannot issue
                self._say(c, str(e))
                return self._fact(c, root=root, problem=str(e)), True
            if expires is not None:
                self._in_place[c] = (seen, expires)
            else:
                self._in_place.pop(c, None)
            if planned is not None:
                if existing is None:
                    await kube.create(planned)
                else:
                    planned["metadata"]["resourceVersion"] = _meta(existing).get("resourceVersion")
                    await kube.update(planned)
                self.writes += 1
                log.info(
                    "trust: %s Secret %s/%s on %s (%s)",
                    "created" if existing is None else "replaced", ns, trust.CACERTS_SECRET_NAME, c,
                    planned["metadata"]["annotations"][trust.FINGERPRINT_ANNOTATION],
                )
        except ApiError as e:
            self._say(c, f"cacerts not placed yet: {_api_error(e)}")
            return None, False
        except Exception as e:  # one cluster's surprise must not stop the others' pass
            self._say(c, f"cacerts not placed yet: {type(e).__name__}")
            return None, False
        self._warned.pop(c, None)
        return self._fact(c, root=root), True

    async def _release(self, target: TrustTarget) -> bool:
        """Delete a leaving remote's ``cacerts`` if it is still federationd's."""
        c, ns = target.cluster, target.namespace
        kube = self._kube(c)
        if kube is None:
            return True  # gone already: nothing to reach
        try:
            existing = await kube.get("v1", "Secret", ns, trust.CACERTS_SECRET_NAME)
            meta = _meta(existing)
            if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) != trust.TRUST_MANAGER:
                return True  # replaced by someone else's meanwhile: theirs
            await kube.delete(
                "v1", "Secret", ns, trust.CACERTS_SECRET_NAME,
                uid=str(meta.get("uid") or "") or None,
                resource_version=str(meta.get("resourceVersion") or "") or None,
            )
        except ApiNotFound:
            return True
        except ApiError as e:
            self._say(c, f"cacerts of a leaving cluster not deleted yet: {_api_error(e)}")
            return False
        self.writes += 1
        log.info("trust: deleted Secret %s/%s on %s (the cluster leaves the mesh)", ns, trust.CACERTS_SECRET_NAME, c)
        return True

    def _say(self, cluster: str, message: str) -> None:
        """Log a problem once per change (a resync must not repeat it forever)."""
        if self._warned.get(cluster) != message:
            self._warned[cluster] = message
            log.warning("trust: %s: %s", cluster, message)


def _plan(
    root: trust.RootCA, existing: Obj | None, *, cluster: str, namespace: str, now: datetime,
    validity: timedelta, renew_before: timedelta, new_key: trust.NewKey,
) -> tuple[Obj | None, datetime | None]:
    """``trust.plan_cacerts``, and when the existing ``cacerts`` stays: when it expires."""
    planned = trust.plan_cacerts(
        root, existing, cluster=cluster, namespace=namespace, now=now, validity=validity, renew_before=renew_before,
        new_key=new_key,
    )
    if planned is not None or existing is None:
        return planned, None
    return None, trust.cluster_ca_from_secret(existing, cluster=cluster).not_after


def _api_error(e: ApiError) -> str:
    return f"{type(e).__name__}" + (f" (HTTP {e.status})" if e.status else "")

