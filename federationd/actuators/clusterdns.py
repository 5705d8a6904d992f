"""Writing the cluster DNS edits multi-mesh needs (``projections.clusterdns``).

The ConfigMaps edited here (``kube-system/coredns``, ``kube-system/kube-dns``) belong to
the cluster, not to federationd, so they stay out of the converger, which owns what it
applies (server-side apply, content-hash annotation, delete or release when no longer
desired — releasing a Corefile federationd had applied would *remove* it). Here, as in
the source operator, one data key is rewritten in place and nothing else:

* The derived ``DnsEdit`` says what ``global`` should forward to. Each pass reads the
  ConfigMap, applies the same pure edit to the text *just read* and, only if that text
  changes, writes it with a merge patch that carries the read ``resourceVersion`` (a
  conflict with a concurrent writer is a 409 and a retry on fresh text: a user's edit is
  never overwritten with a stale copy). A ConfigMap that does not exist is not created;
  none is ever deleted.
* Leader-only, like every writer. A resync with everything in place sends no write.
* The outcome comes back as a fact: the watched ConfigMap's new text, which ends the
  edit in the next derivation. No ``Actuation*`` event is recorded for these keys: those
  are the converger's inventory of what federationd owns, and these objects are not.
  A failed write is logged (class and status, never a body) and retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from federationd.actuators.client import ApiError, ApiNotFound, KubeClient
from federationd.actuators.passes import PassLoop
from federationd.projections import clusterdns
from federationd.projections.clusterdns import DnsEdit, DnsEditError

log = logging.getLogger(__name__)


class ClusterDnsActuator(PassLoop):
    """See the module docstring. ``start()`` when leading, feed ``set_edits()``."""

    label = "cluster-dns"

    def __init__(
        self,
        *,
        kube: Callable[[str], KubeClient | None],
        max_retry: float = 30.0,
    ) -> None:
        super().__init__(max_retry=max_retry, settled=True)
        self._kube = kube
        self._edits: Mapping[str, tuple[DnsEdit, ...]] = {}
        self.writes = 0

    def set_edits(self, edits: Mapping[str, tuple[DnsEdit, ...]]) -> None:
        if edits != self._edits:
            self._edits = edits
            self._wake.set()

    def idle(self) -> bool:
        return (self._task is None or self._settled) and not self._wake.is_set()

    async def reconcile_once(self) -> bool:
        """One pass over the edits; True when every one is in place or needs nothing."""
        results = await asyncio.gather(*(
            self._one(cluster, e) for cluster, edits in sorted(self._edits.items()) for e in edits
        ))
        return all(results)

    async def _one(self, cluster: str, edit: DnsEdit) -> bool:
        kube = self._kube(cluster)
        if kube is None:
            return False
        try:
            cm = await kube.get("v1", "ConfigMap", edit.namespace, edit.name)
        except ApiNotFound:
            return True  # never created: the operator edits only what exists
        except ApiError as e:
            log.warning("%s: %s/%s: %s (%s)", cluster, edit.namespace, edit.name, type(e).__name__, e.status)
            return False
        data = cm.get("data") or {}
        text = str(data.get(edit.data_key) or "")
        try:
            new = clusterdns.edited(edit.name, text, edit.cluster_ip)
        except DnsEditError as e:
            log.warning("%s: %s/%s not edited: %s", cluster, edit.namespace, edit.name, e)
            return True
        if new == text:
            return True
        rv = str((cm.get("metadata") or {}).get("resourceVersion") or "")
        patch = {"metadata": {"resourceVersion": rv}, "data": {edit.data_key: new}}
        try:
            await kube.patch("v1", "ConfigMap", edit.namespace, edit.name, patch)
        except ApiNotFound:
            return True
        except ApiError as e:
            log.warning("%s: %s/%s: %s (%s)", cluster, edit.namespace, edit.name, type(e).__name__, e.status)
            return False
        self.writes += 1
        log.info("%s: %s/%s: global %s", cluster, edit.namespace, edit.name,
                 f"forwarded to {edit.cluster_ip}" if edit.cluster_ip else "entry removed")
        return True
