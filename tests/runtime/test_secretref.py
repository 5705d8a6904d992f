"""The secret placeholder: recorded facts carry a fingerprint, never the credential."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from events import codec
from events import types as ev
from events.types import ClusterName
from federationd import secretref
from federationd.watchers import facts

TOKEN = "tok-SECRET-123"
C = ClusterName("master")


def _spec(token: str = TOKEN) -> dict[str, Any]:
    return {
        "mtls": False,
        "tracing": {
            "enabled": True,
            "tracer": "lightstep",
            "lightstep": {"address": "lightstep-satellite:8080", "accessToken": token, "secure": True},
        },
    }


def _cr(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "istio.banzaicloud.io/v1beta1", "kind": "Istio",
        "metadata": {"name": "istio", "namespace": "istio-system", "uid": "u1", "generation": 1},
        "spec": spec,
    }


def test_placeholder_carries_only_a_short_fingerprint() -> None:
    ref = secretref.placeholder(secretref.LIGHTSTEP_ACCESS_TOKEN, TOKEN)
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    assert ref == f"$(federationd-secret:lightstep-access-token:sha256:{digest[:16]})"
    assert TOKEN not in ref and digest not in ref
    assert secretref.is_placeholder(ref) and not secretref.is_placeholder(TOKEN)


def test_redact_replaces_the_token_and_leaves_the_input_alone() -> None:
    spec = _spec()
    out = secretref.redact_istio_spec(spec)
    assert spec["tracing"]["lightstep"]["accessToken"] == TOKEN
    ls = out["tracing"]["lightstep"]
    assert ls["accessToken"] == secretref.placeholder(secretref.LIGHTSTEP_ACCESS_TOKEN, TOKEN)
    assert ls["address"] == "lightstep-satellite:8080" and ls["secure"] is True
    assert out["mtls"] is False
    # idempotent, and a spec without a token is returned as is
    assert secretref.redact_istio_spec(out) == out
    plain: dict[str, Any] = {"mtls": True, "tracing": {"lightstep": {"accessToken": ""}}}
    assert secretref.redact_istio_spec(plain) is plain
    assert secretref.redact_istio_spec({}) == {}


def test_resolve_checks_the_fingerprint() -> None:
    ref = secretref.placeholder(secretref.LIGHTSTEP_ACCESS_TOKEN, TOKEN)
    assert secretref.resolve(ref, [{}, _spec()]) == TOKEN
    assert secretref.resolve(ref, [_spec("another")]) is None
    assert secretref.resolve(ref, []) is None
    assert secretref.resolve("not a ref", [_spec()]) is None


def test_substitute_inside_strings_and_structures() -> None:
    ref = secretref.placeholder(secretref.LIGHTSTEP_ACCESS_TOKEN, TOKEN)
    obj: dict[str, Any] = {
        "data": {"mesh": f"tracing:\n  lightstep:\n    accessToken: {ref}\n"},
        "args": ["--lightstepAccessToken", ref, "--x"],
        "n": 1,
    }
    out = secretref.substitute(obj, lambda r: secretref.resolve(r, [_spec()]))
    assert out["data"]["mesh"] == f"tracing:\n  lightstep:\n    accessToken: {TOKEN}\n"
    assert out["args"] == ["--lightstepAccessToken", TOKEN, "--x"]
    assert obj["args"][1] == ref  # the input is not modified
    assert secretref.has_placeholders(obj) and not secretref.has_placeholders(out)
    plain = {"a": ["b", {"c": "$(HOST_IP)"}]}
    assert secretref.substitute(plain, lambda r: None) is plain


def test_substitute_without_the_value_fails_without_revealing_it() -> None:
    ref = secretref.placeholder(secretref.LIGHTSTEP_ACCESS_TOKEN, TOKEN)
    with pytest.raises(secretref.SecretUnavailable) as info:
        secretref.substitute({"args": [ref]}, lambda r: None)
    assert info.value.ref == ref and ref in str(info.value) and TOKEN not in str(info.value)


def test_scrub() -> None:
    assert secretref.scrub(f"invalid value {TOKEN!r}", [TOKEN]) == "invalid value '<redacted>'"
    assert secretref.scrub("nothing", ["", TOKEN]) == "nothing"


def test_istio_fact_never_records_the_token() -> None:
    (a,) = facts.istio_fact(C, _cr(_spec()), 1.0)
    assert isinstance(a, ev.IstioSpecChanged)
    blob = codec.encode(a)
    assert TOKEN.encode() not in blob
    assert secretref.placeholder(secretref.LIGHTSTEP_ACCESS_TOKEN, TOKEN).encode() in blob
    assert a.spec["tracing"]["lightstep"]["address"] == "lightstep-satellite:8080"
    # the same token is the same fact; another token is a spec change
    (same,) = facts.istio_fact(C, _cr(_spec()), 2.0)
    (other,) = facts.istio_fact(C, _cr(_spec("tok-OTHER")), 3.0)
    assert isinstance(same, ev.IstioSpecChanged) and isinstance(other, ev.IstioSpecChanged)
    assert same.spec == a.spec and other.spec != a.spec
    assert b"tok-OTHER" not in codec.encode(other)
