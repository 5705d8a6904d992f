"""Kubeconfig parsing and sanitising: untrusted input in, one usable context out.

Kubeconfigs for remote clusters arrive in Secrets written by users, so they are treated
as untrusted, the way istiod's secret controller treats them: anything that would run a
program (``exec``), read a local file (``tokenFile``, ``client-certificate``,
``client-key``, ``certificate-authority``), use an auth provider other than OIDC, or turn
off TLS verification is refused unless the caller explicitly allows it.

Refusals are ``KubeconfigRejected(reason)``. A reason names the offending *field* and
the context/cluster/user *names*, never a value taken from a credential field, and never
the YAML parser's message (which quotes the input). The server URL is not a secret and is
kept on the result so it can be recorded.

The result, ``Kubeconfig``, hides every credential from ``repr`` so that logging one by
mistake leaks nothing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization


class KubeconfigRejected(ValueError):
    """The kubeconfig cannot be used. ``reason`` is safe to show and to record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fingerprint(kubeconfig: bytes | str) -> str:
    """sha256 (hex) of the kubeconfig exactly as stored: the identity recorded in events,
    compared to tell a real credential rotation from an identical re-write."""
    data = kubeconfig.encode() if isinstance(kubeconfig, str) else kubeconfig
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True)
class Kubeconfig:
    """One sanitised context: where the API server is and how to authenticate to it."""

    context: str
    cluster: str
    user: str
    server: str
    namespace: str = "default"
    tls_server_name: str = ""
    proxy_url: str = dataclasses.field(default="", repr=False)
    ca_data: bytes | None = dataclasses.field(default=None, repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)
    client_cert_data: bytes | None = dataclasses.field(default=None, repr=False)
    client_key_data: bytes | None = dataclasses.field(default=None, repr=False)
    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)
    # Only set when the matching ``allow_*`` was given to ``sanitise``.
    ca_file: str = ""
    client_cert_file: str = ""
    client_key_file: str = ""
    token_file: str = ""
    exec_config: dict[str, Any] | None = dataclasses.field(default=None, repr=False)
    fingerprint: str = ""

    @property
    def host(self) -> str:
        """``host:port`` of the server, for labels and messages."""
        return urlsplit(self.server).netloc


def _named(entries: Any, what: str) -> dict[str, dict[str, Any]]:
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise KubeconfigRejected(f"'{what}' is not a list")
    out: dict[str, dict[str, Any]] = {}
    singular = what[:-1]
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise KubeconfigRejected(f"an entry of '{what}' has no name")
        body = entry.get(singular)
        out[entry["name"]] = body if isinstance(body, dict) else {}
    return out


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise KubeconfigRejected(f"'{field}' is empty or not a string")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigRejected(f"'{field}' is not valid base64") from None


#: ``yaml.safe_load``'s loader, through LibYAML when available (the same constructor and
#: resolver, in C: a fleet's kubeconfig Secrets are parsed as they are watched).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(kubeconfig: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """The kubeconfig as a dict, without echoing any of it in an error."""
    if isinstance(kubeconfig, dict):
        return kubeconfig
    try:
        loaded = yaml.load(kubeconfig, Loader=_LOADER)
    except (yaml.YAMLError, UnicodeDecodeError):
        # The parser's message quotes the input, which may be a credential.
        raise KubeconfigRejected("kubeconfig is not valid YAML") from None
    if not isinstance(loaded, dict):
        raise KubeconfigRejected("kubeconfig is not a mapping")
    return loaded


def _check_key_pair(cert: bytes, key: bytes) -> None:
    """Refuse a client certificate and key that cannot work together — here, where the
    refusal becomes the kubeconfig's recorded problem, not at each connection attempt.
    Errors name the field only: parser messages may quote key material."""
    try:
        certificate = x509.load_pem_x509_certificate(cert)
    except ValueError:
        raise KubeconfigRejected("client-certificate-data is not a PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise KubeconfigRejected("client-key-data is not an unencrypted PEM private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(serialization.Encoding.DER, public) != certificate.public_key().public_bytes(
            serialization.Encoding.DER, public):
        raise KubeconfigRejected("client-key-data is not the key of client-certificate-data")


def sanitise(
    kubeconfig: bytes | str | dict[str, Any],
    *,
    context: str | None = None,
    allow_exec: bool = False,
    allow_files: bool = False,
) -> Kubeconfig:
    """Choose one context (``context``, else ``current-context``, else the only one) and
    check it is safe to use. Raises ``KubeconfigRejected``."""
    fp = fingerprint(kubeconfig) if isinstance(kubeconfig, bytes | str) else ""
    doc = parse(kubeconfig)
    contexts = _named(doc.get("contexts"), "contexts")
    clusters = _named(doc.get("clusters"), "clusters")
    users = _named(doc.get("users"), "users")

    if context is None:
        current = doc.get("current-context")
        if isinstance(current, str) and current:
            context = current
        elif len(contexts) == 1:
            context = next(iter(contexts))
        elif not contexts:
            raise KubeconfigRejected("kubeconfig has no contexts")
        else:
            raise KubeconfigRejected("kubeconfig has several contexts and no current-context")
    if context not in contexts:
        raise KubeconfigRejected(f"context '{context}' is not in the kubeconfig")
    ctx = contexts[context]
    cluster_name = ctx.get("cluster")
    user_name = ctx.get("user") or ""
    if not isinstance(cluster_name, str) or cluster_name not in clusters:
        raise KubeconfigRejected(f"context '{context}' refers to an unknown cluster")
    if user_name and (not isinstance(user_name, str) or user_name not in users):
        raise KubeconfigRejected(f"context '{context}' refers to an unknown user")
    cluster = clusters[cluster_name]
    user = users.get(user_name, {}) if isinstance(user_name, str) else {}

    # --- the server and how it is verified ---------------------------------------------
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise KubeconfigRejected(f"cluster '{cluster_name}' has no server")
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise KubeconfigRejected(f"cluster '{cluster_name}' server must be an https:// URL")
    if parts.username or parts.password:
        raise KubeconfigRejected(f"cluster '{cluster_name}' server URL must not carry credentials")
    if cluster.get("insecure-skip-tls-verify") is True:
        raise KubeconfigRejected(
            f"cluster '{cluster_name}' disables TLS verification (insecure-skip-tls-verify)")
    ca_data: bytes | None = None
    ca_file = ""
    if cluster.get("certificate-authority-data"):
        ca_data = _b64(cluster["certificate-authority-data"], "certificate-authority-data")
    elif cluster.get("certificate-authority"):
        if not allow_files:
            raise KubeconfigRejected(
                f"cluster '{cluster_name}' reads its certificate authority from a local file")
        ca_file = str(cluster["certificate-authority"])

    # --- the credential -------------------------------------------------------------------
    token: str | None = None
    token_file = ""
    cert_data: bytes | None = None
    key_data: bytes | None = None
    cert_file = key_file = ""
    exec_config: dict[str, Any] | None = None
    if "exec" in user and user["exec"] is not None:
        if not allow_exec:
            raise KubeconfigRejected(f"user '{user_name}' runs an exec credential plugin")
        if not isinstance(user["exec"], dict) or not user["exec"].get("command"):
            raise KubeconfigRejected(f"user '{user_name}' has an exec plugin without a command")
        exec_config = dict(user["exec"])
    if user.get("tokenFile"):
        if not allow_files:
            raise KubeconfigRejected(f"user '{user_name}' reads its token from a local file (tokenFile)")
        token_file = str(user["tokenFile"])
    for field in ("client-certificate", "client-key"):
        if user.get(field):
            if not allow_files:
                raise KubeconfigRejected(f"user '{user_name}' reads '{field}' from a local file")
    if allow_files:
        cert_file = str(user.get("client-certificate") or "")
        key_file = str(user.get("client-key") or "")
    provider = user.get("auth-provider")
    if provider is not None:
        pname = provider.get("name") if isinstance(provider, dict) else None
        if pname != "oidc":
            shown = pname if isinstance(pname, str) and pname.isidentifier() else "unknown"
            raise KubeconfigRejected(f"user '{user_name}' uses unsupported auth provider '{shown}'")
        config = provider.get("config") if isinstance(provider, dict) else None
        id_token = config.get("id-token") if isinstance(config, dict) else None
        if not isinstance(id_token, str) or not id_token:
            raise KubeconfigRejected(f"user '{user_name}' uses oidc without an id-token")
        token = id_token
    if user.get("token"):
        if not isinstance(user["token"], str):
            raise KubeconfigRejected(f"user '{user_name}' has a token that is not a string")
        token = user["token"].strip()
    if user.get("client-certificate-data") or user.get("client-key-data"):
        cert_data = _b64(user.get("client-certificate-data"), "client-certificate-data")
        key_data = _b64(user.get("client-key-data"), "client-key-data")
        _check_key_pair(cert_data, key_data)
    username = user.get("username")
    password = user.get("password")

    namespace = ctx.get("namespace")
    return Kubeconfig(
        context=context,
        cluster=cluster_name,
        user=user_name if isinstance(user_name, str) else "",
        server=server.rstrip("/"),
        namespace=namespace if isinstance(namespace, str) and namespace else "default",
        tls_server_name=str(cluster.get("tls-server-name") or ""),
        proxy_url=str(cluster.get("proxy-url") or ""),
        ca_data=ca_data,
        token=token,
        client_cert_data=cert_data,
        client_key_data=key_data,
        username=username if isinstance(username, str) else None,
        password=password if isinstance(password, str) else None,
        ca_file=ca_file,
        client_cert_file=cert_file,
        client_key_file=key_file,
        token_file=token_file,
        exec_config=exec_config,
        fingerprint=fp,
    )
