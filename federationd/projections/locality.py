"""Locality load-balancing rules: Istio's own validation, plus a check against the fleet.

``spec.localityLB`` ends up verbatim in the mesh config's ``localityLbSetting``; pilot
rejects a setting it cannot use and the whole mesh config with it. So federationd checks
it first, with Istio's rules and Istio's words (``pkg/config/validation``:
``validateLocalityLbSetting``), and an invalid setting changes nothing already applied —
the caller reports the errors in the CR status instead.

Unlike Istio, which stops at the first problem, every problem is reported, each with the
path of the field at fault, so a user fixes a spec in one round.

:func:`unknown_localities` is federationd's own addition: a rule that names a locality
no cluster of the fleet has (from the nodes' ``topology.kubernetes.io/region|zone``
labels) is legal but probably a typo, so it becomes a status *warning*.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from federationd.api.v1beta1 import LocalityLBConfiguration

__all__ = ["LocalityIssue", "unknown_localities", "validate"]

ROOT: Final = "spec.localityLB"

MSG_BOTH: Final = "can not simultaneously specify 'distribute' and 'failover'"
MSG_WEIGHT: Final = "locality weight must be in range [1, 100]"
MSG_TOTAL: Final = "total locality weight {} != 100"
MSG_WILDCARD: Final = "locality {} wildcard '*' number can not exceed 1 and must be in the end"
MSG_EMPTY: Final = "locality {} must not contain empty region/zone/subzone info"
MSG_OVERLAP: Final = "locality {} overlap with previous specified ones"
MSG_FAILOVER_SAME: Final = "locality lb failover settings must specify different regions"
MSG_FAILOVER_REGION: Final = "locality lb failover only specify region"
MSG_FAILOVER_WILDCARD: Final = "locality lb failover region should not contain '*' wildcard"
# Not one of Istio's checks (an empty region never matches anything), worded like them.
MSG_FAILOVER_EMPTY: Final = "locality lb failover region must not be empty"
MSG_UNKNOWN: Final = "locality {} matches no node locality observed in the mesh"


class LocalityIssue(msgspec.Struct, frozen=True, kw_only=True):
    """One problem: the field path (``spec.localityLB.distribute[0].to``) and the message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# --- Istio's rules -------------------------------------------------------------------------


def _localities(items: list[tuple[str, str]]) -> list[LocalityIssue]:
    """Istio's ``validateLocalities``: wildcard placement, empty segments and overlaps
    within one list. ``items`` are ``(path, locality)``."""
    issues: list[LocalityIssue] = []
    # region -> zone -> subzones; "*" at any level covers everything below it.
    seen: dict[str, dict[str, set[str]]] = {}
    for path, loc in items:
        stars = loc.count("*")
        if stars > 1 or (stars == 1 and not loc.endswith("*")):
            issues.append(LocalityIssue(path=path, message=MSG_WILDCARD.format(loc)))
            continue
        if "*" in seen:
            issues.append(LocalityIssue(path=path, message=MSG_OVERLAP.format(loc)))
            continue
        parts = loc.split("/", 2)
        if any(p == "" for p in parts):
            issues.append(LocalityIssue(path=path, message=MSG_EMPTY.format(loc)))
            continue
        overlap = LocalityIssue(path=path, message=MSG_OVERLAP.format(loc))
        region = parts[0]
        if len(parts) == 1:
            if region in seen:
                issues.append(overlap)
            else:
                seen[region] = {"*": {"*"}}
            continue
        zones = seen.setdefault(region, {})
        zone = parts[1]
        if len(parts) == 2:
            if "*" in zones or zone in zones:
                issues.append(overlap)
            else:
                zones[zone] = {"*"}
            continue
        subzone = parts[2]
        if "*" in zones:
            issues.append(overlap)
            continue
        subzones = zones.setdefault(zone, set())
        if "*" in subzones or subzone in subzones:
            issues.append(overlap)
        else:
            subzones.add(subzone)
    return issues


def validate(lb: LocalityLBConfiguration | None, *, root: str = ROOT) -> list[LocalityIssue]:
    """Every problem Istio would find in this locality setting (empty list: valid)."""
    if lb is None:
        return []
    issues: list[LocalityIssue] = []
    if lb.distribute and lb.failover:
        issues.append(LocalityIssue(path=root, message=MSG_BOTH))
    sources: list[tuple[str, str]] = []
    for i, rule in enumerate(lb.distribute):
        at = f"{root}.distribute[{i}]"
        sources.append((f"{at}.from", rule.from_))
        total = 0
        for loc, weight in sorted(rule.to.items()):
            if not 1 <= weight <= 100:
                issues.append(LocalityIssue(path=f"{at}.to[{loc}]", message=MSG_WEIGHT))
            total += weight
        if total != 100:
            issues.append(LocalityIssue(path=f"{at}.to", message=MSG_TOTAL.format(total)))
        issues += _localities([(f"{at}.to[{loc}]", loc) for loc in sorted(rule.to)])
    issues += _localities(sources)
    for i, fo in enumerate(lb.failover):
        at = f"{root}.failover[{i}]"
        if fo.from_ == "" or fo.to == "":
            issues.append(LocalityIssue(path=at, message=MSG_FAILOVER_EMPTY))
        elif fo.from_ == fo.to:
            issues.append(LocalityIssue(path=at, message=MSG_FAILOVER_SAME))
        if "/" in fo.from_ or "/" in fo.to:
            issues.append(LocalityIssue(path=at, message=MSG_FAILOVER_REGION))
        if "*" in fo.from_ or "*" in fo.to:
            issues.append(LocalityIssue(path=at, message=MSG_FAILOVER_WILDCARD))
    return issues


# --- against the fleet ------------------------------------------------------------------------


def _parse_observed(o: str | tuple[str, str]) -> tuple[str, str]:
    if isinstance(o, tuple):
        return o
    region, _, zone = o.partition("/")
    return region, zone


def _matches(pattern: str, region: str, zone: str) -> bool:
    """Does a rule's locality (``region[/zone[/subzone]]``, trailing ``*``) cover a node
    locality? Subzones are not observed, so a rule naming one matches its zone."""
    parts = pattern.split("/", 2)
    if parts[0] == "*":
        return True
    if parts[0] != region:
        return False
    return len(parts) == 1 or parts[1] in ("*", zone)


def unknown_localities(
    lb: LocalityLBConfiguration | None,
    observed: Iterable[str | tuple[str, str]],
    *,
    root: str = ROOT,
) -> list[LocalityIssue]:
    """Warnings for rule localities that match none of the ``observed`` node localities
    (``(region, zone)`` pairs or ``"region/zone"`` strings). Nothing is reported while
    no locality has been observed at all: that says nothing yet about the rules."""
    if lb is None:
        return []
    nodes = sorted({_parse_observed(o) for o in observed})
    if not nodes:
        return []
    named: list[tuple[str, str]] = []
    for i, rule in enumerate(lb.distribute):
        named.append((f"{root}.distribute[{i}].from", rule.from_))
        named += [(f"{root}.distribute[{i}].to[{loc}]", loc) for loc in sorted(rule.to)]
    for i, fo in enumerate(lb.failover):
        named.append((f"{root}.failover[{i}].from", fo.from_))
        named.append((f"{root}.failover[{i}].to", fo.to))
    return [
        LocalityIssue(path=path, message=MSG_UNKNOWN.format(loc))
        for path, loc in named
        if loc and not any(_matches(loc, r, z) for r, z in nodes)
    ]
