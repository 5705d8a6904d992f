"""Spec validation for the fold: is this ``Istio`` / ``RemoteIstio`` spec usable?

The fold keeps the last valid spec next to the one the user wrote (see ``state``), so it
needs one yes/no-with-a-reason answer per spec. That answer combines three owners'
rules — the CR types' own decoding (``federationd.api.v1beta1``), the versions the
render profiles support (``federationd.render``) and Istio's locality load-balancing
rules (``projections.locality``) — and this module is the one place that combines them.
Returns "" when the spec is valid, else the message shown in the CR status.
"""

from __future__ import annotations

from typing import Any

from federationd import render
from federationd.api import checks, v1beta1
from federationd.projections import locality

#: The message of the source operator (that of ``render.UnsupportedVersion``).
UNSUPPORTED_VERSION = render.UNSUPPORTED_MESSAGE


def supported_version(version: str) -> bool:
    try:
        render.profile_for(version)
    except render.UnsupportedVersion:
        return False
    return True


def _first(problems: list[str]) -> str:
    """One line for the status: the first problem, and how many more there are."""
    if not problems:
        return ""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def validate_istio(spec: dict[str, Any], *, namespace: str, name: str = "") -> str:
    try:
        decoded = v1beta1.istio_spec(spec, namespace=namespace)
    except v1beta1.SpecError as e:
        return str(e)
    if not supported_version(decoded.version):
        return UNSUPPORTED_VERSION
    issues = locality.validate(decoded.locality_lb)
    if issues:
        return "; ".join(str(i) for i in issues)
    return _first(checks.istio_problems(decoded))


def validate_remote_istio(spec: dict[str, Any], *, namespace: str, name: str = "") -> str:
    try:
        decoded = v1beta1.remote_istio_spec(spec, namespace=namespace)
    except v1beta1.SpecError as e:
        return str(e)
    return _first(checks.remote_problems(decoded, name=name))
