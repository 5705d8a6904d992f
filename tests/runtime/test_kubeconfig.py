"""Kubeconfig sanitising, fingerprints and the two kubeconfig Secret formats."""

from __future__ import annotations

import base64
import copy
import hashlib
from typing import Any

import pytest
import yaml

from federationd.clusters import (
    KubeconfigRejected,
    SecretFormatError,
    fingerprint,
    kubeconfig_from_secret,
    remotes_in_secret,
    sanitise,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.very-secret-token"
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()


def good() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "remote-eu",
        "clusters": [{"name": "eu", "cluster": {"server": "https://10.0.0.1:6443",
                                                "certificate-authority-data": CA}}],
        "users": [{"name": "reader", "user": {"token": TOKEN}}],
        "contexts": [{"name": "remote-eu",
                      "context": {"cluster": "eu", "user": "reader", "namespace": "istio-system"}}],
    }


def test_fingerprint_is_sha256_of_the_bytes() -> None:
    raw = yaml.safe_dump(good()).encode()
    assert fingerprint(raw) == hashlib.sha256(raw).hexdigest()
    assert fingerprint(raw.decode()) == fingerprint(raw)
    assert fingerprint(raw + b"\n") != fingerprint(raw)


def test_good_kubeconfig_is_accepted_and_repr_hides_credentials() -> None:
    raw = yaml.safe_dump(good()).encode()
    cfg = sanitise(raw)
    assert cfg.server == "https://10.0.0.1:6443"
    assert cfg.context == "remote-eu" and cfg.namespace == "istio-system"
    assert cfg.token == TOKEN
    assert cfg.fingerprint == fingerprint(raw)
    assert TOKEN not in repr(cfg) and CA not in repr(cfg)


def test_only_context_is_chosen_without_current_context() -> None:
    doc = good()
    del doc["current-context"]
    assert sanitise(doc).context == "remote-eu"
    doc["contexts"].append({"name": "other", "context": {"cluster": "eu", "user": "reader"}})
    with pytest.raises(KubeconfigRejected, match="several contexts"):
        sanitise(doc)


def _mutate(path: str, value: Any) -> dict[str, Any]:
    doc = good()
    section, field = path.split(".", 1)
    target = doc[section][0][section[:-1]]
    if value is None:
        target.pop(field, None)
    else:
        target[field] = value
    return doc


REJECTIONS = [
    ("users.exec", {"command": "aws", "args": ["eks", "get-token", TOKEN]}, "exec"),
    ("users.tokenFile", "/var/run/secrets/" + TOKEN, "tokenFile"),
    ("users.client-certificate", "/etc/" + TOKEN + ".crt", "local file"),
    ("users.client-key", "/etc/" + TOKEN + ".key", "local file"),
    ("clusters.certificate-authority", "/etc/ca-" + TOKEN, "local file"),
    ("users.auth-provider", {"name": "gcp", "config": {"access-token": TOKEN}}, "auth provider 'gcp'"),
    ("clusters.insecure-skip-tls-verify", True, "insecure-skip-tls-verify"),
    ("clusters.server", "http://10.0.0.1:8080", "https"),
    ("clusters.server", f"https://admin:{TOKEN}@10.0.0.1", "credentials"),
    ("clusters.certificate-authority-data", "!!" + TOKEN, "base64"),
]


@pytest.mark.parametrize(("path", "value", "expected"), REJECTIONS)
def test_unsafe_kubeconfigs_are_rejected_without_the_secret(path: str, value: Any,
                                                            expected: str) -> None:
    doc = _mutate(path, value)
    if path == "clusters.certificate-authority":
        doc["clusters"][0]["cluster"].pop("certificate-authority-data")
    with pytest.raises(KubeconfigRejected) as info:
        sanitise(yaml.safe_dump(doc).encode())
    assert expected in info.value.reason
    assert TOKEN not in str(info.value) and "very-secret" not in info.value.reason


def test_invalid_yaml_reason_does_not_quote_input() -> None:
    with pytest.raises(KubeconfigRejected) as info:
        sanitise(b"users: [token: " + TOKEN.encode() + b"\n  - : : {")
    assert info.value.reason == "kubeconfig is not valid YAML"


def test_oidc_with_id_token_is_accepted() -> None:
    doc = _mutate("users.token", None)
    doc["users"][0]["user"]["auth-provider"] = {"name": "oidc", "config": {"id-token": TOKEN}}
    assert sanitise(doc).token == TOKEN


def test_allowances_let_exec_and_files_through() -> None:
    doc = _mutate("users.exec", {"command": "get-token"})
    assert sanitise(doc, allow_exec=True).exec_config == {"command": "get-token"}
    doc = _mutate("users.tokenFile", "/tmp/token")
    assert sanitise(doc, allow_files=True).token_file == "/tmp/token"


def test_dangling_references_are_rejected() -> None:
    doc = good()
    doc["contexts"][0]["context"]["cluster"] = "nope"
    with pytest.raises(KubeconfigRejected, match="unknown cluster"):
        sanitise(doc)
    doc = good()
    doc["current-context"] = "missing"
    with pytest.raises(KubeconfigRejected, match="not in the kubeconfig"):
        sanitise(doc)


def _secret(name: str, data: dict[str, bytes], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "istio-system", "labels": labels or {}},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def test_source_format_secret() -> None:
    raw = yaml.safe_dump(good()).encode()
    assert kubeconfig_from_secret(_secret("remote-eu", {"remote-eu": raw}), remote_name="remote-eu") == raw
    # --from-file with another key: the first (smallest) key wins.
    s = _secret("remote-eu", {"b": b"other", "a-config": raw})
    assert kubeconfig_from_secret(s, remote_name="remote-eu") == raw
    with pytest.raises(SecretFormatError, match="not named like"):
        kubeconfig_from_secret(s, remote_name="remote-us")
    with pytest.raises(SecretFormatError, match="no data"):
        kubeconfig_from_secret(_secret("remote-eu", {}), remote_name="remote-eu")


def test_istio_format_secret() -> None:
    raw_eu, raw_us = b"eu-config", b"us-config"
    s = _secret("istio-remote-secret-x", {"remote-eu": raw_eu, "remote-us": raw_us},
                labels={"istio/multiCluster": "true"})
    assert kubeconfig_from_secret(s, remote_name="remote-us") == raw_us
    assert remotes_in_secret(s) == {"remote-eu": raw_eu, "remote-us": raw_us}
    with pytest.raises(SecretFormatError, match="no data key 'remote-ap'"):
        kubeconfig_from_secret(s, remote_name="remote-ap")


def test_secret_errors_never_quote_values() -> None:
    s = _secret("r", {"r": b""})
    s["data"]["r"] = "%%" + TOKEN
    with pytest.raises(SecretFormatError) as info:
        kubeconfig_from_secret(s, remote_name="r")
    assert TOKEN not in str(info.value)
    assert copy.deepcopy(s) == s
