"""The finalizer that lets a remote leave the mesh cleanly before its RemoteIstio goes.

Without a finalizer a deleted ``RemoteIstio`` vanishes at once and its clean-up (the
remote components, its network in ``meshNetworks``) happens behind the user's back:
``kubectl delete`` returns before anything was removed, and nothing says so when the
remote could not be reached. With it, the API server keeps the CR (with a
``deletionTimestamp``) until federationd has

1. deleted the remote's components from the remote (when reachable),
2. removed the remote's network and every other reference from the master, and
3. — when the remote stayed unreachable for ``--remote-cleanup-timeout`` — recorded a
   ``Warning`` Event on the CR saying so and what was left behind on it,

and only then removes :data:`FINALIZER`. The source operator put
``istio-operator.finializer.banzaicloud.io`` (sic) on its ``Istio``; federationd's name
says whose it is and what it waits for.

*When* is decided by the membership projection (``projections.membership``: which
finalizers to keep, which to release and with what warning); this module only writes. The
finalizers list is changed with a merge patch that carries the ``resourceVersion`` it
was computed from, so a concurrent change of the list by someone else is a conflict
(retried at the next derivation) rather than a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federationd.actuators.client import KubeClient
from federationd.projections.membership import left_behind_message

__all__ = [
    "FINALIZER",
    "LEFT_BEHIND_REASON",
    "add_finalizer",
    "has_finalizer",
    "left_behind_message",
    "remove_finalizer",
    "warn_left_behind",
]

#: On every RemoteIstio federationd manages, until the remote has left the mesh.
FINALIZER = "federationd.istio.banzaicloud.io/remote-cleanup"

#: Reason of the Warning Event when a remote could not be cleaned up.
LEFT_BEHIND_REASON = "RemoteCleanupIncomplete"

_API_VERSION = "istio.banzaicloud.io/v1beta1"
_KIND = "RemoteIstio"


def _finalizers(cr: Mapping[str, Any]) -> list[str]:
    return [str(f) for f in (cr.get("metadata") or {}).get("finalizers") or []]


def has_finalizer(cr: Mapping[str, Any]) -> bool:
    return FINALIZER in _finalizers(cr)


async def _set_finalizers(kube: KubeClient, cr: Mapping[str, Any], finalizers: list[str]) -> None:
    meta = cr.get("metadata") or {}
    patch = {
        "metadata": {
            "finalizers": finalizers or None,
            "resourceVersion": meta.get("resourceVersion"),
        }
    }
    await kube.patch(_API_VERSION, _KIND, meta.get("namespace"), meta["name"], patch)


async def add_finalizer(kube: KubeClient, cr: Mapping[str, Any]) -> bool:
    """Put :data:`FINALIZER` on a live ``cr``; False when there is nothing to do (it is
    there already, or the CR is being deleted: no finalizer may be added then)."""
    if has_finalizer(cr) or (cr.get("metadata") or {}).get("deletionTimestamp"):
        return False
    await _set_finalizers(kube, cr, [*_finalizers(cr), FINALIZER])
    return True


async def remove_finalizer(kube: KubeClient, cr: Mapping[str, Any]) -> bool:
    """Take :data:`FINALIZER` off ``cr`` (others' finalizers stay)."""
    if not has_finalizer(cr):
        return False
    await _set_finalizers(kube, cr, [f for f in _finalizers(cr) if f != FINALIZER])
    return True


async def warn_left_behind(kube: KubeClient, cr: dict[str, Any], message: str) -> None:
    await kube.create_event(cr, reason=LEFT_BEHIND_REASON, message=message, type="Warning")
