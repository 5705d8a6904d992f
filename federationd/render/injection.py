"""Sidecar auto-injection labels on namespaces, from ``autoInjectionNamespaces``.

The sidecar injector's webhook selects namespaces labelled ``istio-injection=enabled``.
federationd labels each namespace listed in a CR's ``autoInjectionNamespaces`` (the
``Istio`` on the master, each ``RemoteIstio`` on its remote) and marks the namespaces it
labelled with a second label, :data:`MARKER_LABEL`. The marker is what makes removal safe:

* a listed namespace that exists gets ``istio-injection=enabled`` plus the marker;
* a namespace that carries the marker but is no longer listed loses both labels;
* a namespace with an ``istio-injection`` label and no marker was labelled by hand
  (enabled *or* disabled) and is never touched, listed or not;
* a listed namespace that does not exist yet gets nothing now, and its labels as soon as
  the namespace is observed (this is a function of the observed namespaces).

Namespaces are *not* federationd inventory: the changes carry neither
``app.kubernetes.io/managed-by`` nor the component label, so the actuator's "delete what is
no longer desired" can never reach a namespace. Each change is data the actuator can apply
two ways, both touching only these two labels:

* :meth:`NamespaceLabelChange.apply_config` — a server-side-apply configuration of the
  Namespace holding only the labels federationd owns (field manager ``federationd``).
  Applying it with no labels releases them: SSA removes fields a manager stops applying.
* :meth:`NamespaceLabelChange.merge_patch` — an equivalent JSON merge patch (``null``
  deletes), for labels federationd set before it owned them through SSA.

:func:`desired_injection_labels` is the full desired state (for a render-everything
pipeline); :func:`injection_changes` only what differs, so a resync over converged
namespaces yields nothing.
Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

__all__ = [
    "INJECTION_ENABLED",
    "INJECTION_LABEL",
    "MARKER_LABEL",
    "MARKER_VALUE",
    "NamespaceLabelChange",
    "desired_injection_labels",
    "injection_changes",
    "owned_labels",
]

INJECTION_LABEL: Final = "istio-injection"
INJECTION_ENABLED: Final = "enabled"
#: Marks the namespaces whose injection label federationd set (and may therefore remove).
MARKER_LABEL: Final = "federationd.io/istio-injection"
MARKER_VALUE: Final = "managed"

_OWNED: Final = {INJECTION_LABEL: INJECTION_ENABLED, MARKER_LABEL: MARKER_VALUE}


def owned_labels() -> dict[str, str]:
    """The labels federationd sets on an injection-enabled namespace."""
    return dict(_OWNED)


class NamespaceLabelChange(msgspec.Struct, frozen=True, kw_only=True):
    """What to do to one namespace's labels: after the change, ``labels`` are exactly the
    labels federationd owns there (both injection labels, or none = release them)."""

    namespace: str
    labels: dict[str, str]

    @property
    def enable(self) -> bool:
        return bool(self.labels)

    def apply_config(self) -> dict[str, Any]:
        """The Namespace apply configuration (server-side apply, field manager
        ``federationd``): only the labels federationd owns."""
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": dict(self.labels)},
        }

    def merge_patch(self) -> dict[str, Any]:
        """The same change as a JSON merge patch (``null`` removes a label)."""
        labels: dict[str, str | None] = dict(self.labels) if self.labels else dict.fromkeys(_OWNED)
        return {"metadata": {"labels": labels}}


def _hand_labelled(labels: Mapping[str, str]) -> bool:
    return INJECTION_LABEL in labels and labels.get(MARKER_LABEL) != MARKER_VALUE


def desired_injection_labels(
    auto_injection_namespaces: Iterable[str],
    observed: Mapping[str, Mapping[str, str]],
) -> list[NamespaceLabelChange]:
    """The injection labels federationd should own on each ``observed`` namespace (name →
    labels), sorted by namespace, converged ones included — the desired-state form, for a
    pipeline that renders everything and lets the actuator skip what is already in effect.

    A listed namespace gets both labels; a marked namespace that is no longer listed gets
    ``{}`` (release) until its labels are gone, after which it is no longer mentioned;
    hand-labelled and unrelated namespaces are never mentioned. Callers leave terminating
    namespaces out of ``observed`` (applying to one would fail or re-create it).
    """
    wanted = set(auto_injection_namespaces)
    out: list[NamespaceLabelChange] = []
    for name in sorted(observed):
        labels = observed[name]
        if _hand_labelled(labels):
            continue
        if name in wanted:
            out.append(NamespaceLabelChange(namespace=name, labels=owned_labels()))
        elif MARKER_LABEL in labels:
            out.append(NamespaceLabelChange(namespace=name, labels={}))
    return out


def _in_effect(change: NamespaceLabelChange, labels: Mapping[str, str]) -> bool:
    if change.labels:
        return all(labels.get(k) == v for k, v in change.labels.items())
    return not any(k in labels for k in _OWNED)


def injection_changes(
    auto_injection_namespaces: Iterable[str],
    observed: Mapping[str, Mapping[str, str]],
) -> list[NamespaceLabelChange]:
    """Only the changes of :func:`desired_injection_labels` not yet in effect on the
    ``observed`` namespaces, sorted by namespace; empty when converged."""
    return [
        c
        for c in desired_injection_labels(auto_injection_namespaces, observed)
        if not _in_effect(c, observed[c.namespace])
    ]
