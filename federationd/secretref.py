"""Secret references: how a credential in a CR spec reaches a cluster without being recorded.

The ``Istio`` CR carries one credential, ``spec.tracing.lightstep.accessToken``, and the
source operator passed it on verbatim (proxy flags, mesh config). federationd records
every fact in its event log, and everything derived from the log — desired state, replay
and ``explain`` output, /debug — is shown to operators, so the token must not be a fact.

The watcher therefore records a *placeholder* instead of the value (``redact_istio_spec``)::

    $(federationd-secret:lightstep-access-token:sha256:<first 16 hex of sha256(token)>)

The fingerprint makes a token change a spec change — projections re-render, content
hashes change, the actuator re-applies — while the log holds nothing that reveals the
token. Projections and render handle the placeholder as an ordinary string, so desired
state, content hashes and replay stay deterministic and secret-free.

Only the actuator sees the value: right before a write (and when it compares an observed
object with the desired one) it calls ``substitute(obj, lookup)``, where ``lookup`` maps a
placeholder to the value held in memory by the live CR (``resolve`` does that for a set of
Istio specs). The fingerprint is checked, so the value substituted is exactly the one the
desired state was rendered from; if it is not available (the CR changed or went away) the
object's actuation fails with ``SecretUnavailable``, whose message names only the
reference. Substitution is textual, so a placeholder inside a rendered YAML document (the
mesh config) works too; the token is expected to be a plain token string.

Pure: no I/O, no clock — watchers, projections and actuators may all import it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: The name of the Lightstep access token reference.
LIGHTSTEP_ACCESS_TOKEN = "lightstep-access-token"

PREFIX = "$(federationd-secret:"
PLACEHOLDER = re.compile(r"\$\(federationd-secret:([a-z0-9-]+):sha256:([0-9a-f]{16})\)")

Lookup = Callable[[str], "str | None"]


class SecretUnavailable(Exception):
    """A placeholder whose value is not available (the message names only the reference)."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"secret {ref} is not available from the Istio resource (changed or removed)")
        self.ref = ref


def fingerprint(value: str) -> str:
    """The first 16 hex digits of the value's sha256."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def placeholder(name: str, value: str) -> str:
    """The reference recorded in place of ``value``."""
    return f"{PREFIX}{name}:sha256:{fingerprint(value)})"


def is_placeholder(value: object) -> bool:
    return isinstance(value, str) and PLACEHOLDER.fullmatch(value) is not None


def _lightstep(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    tracing = spec.get("tracing")
    ls = tracing.get("lightstep") if isinstance(tracing, dict) else None
    return ls if isinstance(ls, dict) else None


def istio_secrets(spec: Mapping[str, Any]) -> dict[str, str]:
    """The credentials of a raw Istio spec, by reference name (empty ones left out)."""
    ls = _lightstep(spec)
    token = ls.get("accessToken") if ls is not None else None
    if isinstance(token, str) and token and not is_placeholder(token):
        return {LIGHTSTEP_ACCESS_TOKEN: token}
    return {}


def redact_istio_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec to record: a copy with each credential replaced by its placeholder (the
    spec itself when it holds none, so the common case copies nothing)."""
    secrets = istio_secrets(spec)
    if not secrets:
        return spec
    ls = _lightstep(spec)
    assert ls is not None
    tracing = dict(spec["tracing"])
    tracing["lightstep"] = {**ls, "accessToken": placeholder(LIGHTSTEP_ACCESS_TOKEN, secrets[LIGHTSTEP_ACCESS_TOKEN])}
    return {**spec, "tracing": tracing}


def resolve(ref: str, specs: Iterable[Mapping[str, Any]]) -> str | None:
    """The value behind placeholder ``ref`` among live raw Istio specs, or None."""
    m = PLACEHOLDER.fullmatch(ref)
    if m is None:
        return None
    for spec in specs:
        value = istio_secrets(spec).get(m.group(1))
        if value is not None and fingerprint(value) == m.group(2):
            return value
    return None


def has_placeholders(obj: Any) -> bool:
    if isinstance(obj, str):
        return PREFIX in obj and PLACEHOLDER.search(obj) is not None
    if isinstance(obj, dict):
        return any(has_placeholders(v) for v in obj.values())
    if isinstance(obj, list):
        return any(has_placeholders(v) for v in obj)
    return False


def substitute(obj: Any, lookup: Lookup) -> Any:
    """``obj`` with every placeholder replaced by its value (unchanged parts are shared,
    an object without placeholders is returned as is). Raises ``SecretUnavailable``."""
    if isinstance(obj, str):
        if PREFIX not in obj:
            return obj

        def value(m: re.Match[str]) -> str:
            v = lookup(m.group(0))
            if v is None:
                raise SecretUnavailable(m.group(0))
            return v

        return PLACEHOLDER.sub(value, obj)
    if isinstance(obj, dict):
        out = {k: substitute(v, lookup) for k, v in obj.items()}
        return obj if all(out[k] is v for k, v in obj.items()) else out
    if isinstance(obj, list):
        items = [substitute(v, lookup) for v in obj]
        return obj if all(a is b for a, b in zip(items, obj, strict=True)) else items
    return obj


def scrub(message: str, values: Iterable[str]) -> str:
    """``message`` with each of ``values`` blanked (a server error may echo a body)."""
    for v in values:
        if v:
            message = message.replace(v, "<redacted>")
    return message
