"""The mesh's shared root of trust: one root CA, one intermediate CA per cluster.

Sidecars in different clusters accept each other's certificates only if every cluster's
citadel signs with a key that chains to the same root. Istio 1.1/1.2 lets citadel run
as a *plug-in CA*: a Secret named ``cacerts`` in the control-plane namespace with

* ``ca-cert.pem``    — the signing (intermediate) certificate citadel issues with,
* ``ca-key.pem``     — its private key,
* ``root-cert.pem``  — the root every workload trusts,
* ``cert-chain.pem`` — the signing certificate followed by every issuer up to and
  including the root; citadel appends it to each workload certificate.

This module builds those Secrets. The root is generated once and kept in a Secret on the
master (:data:`ROOT_SECRET_NAME`, same four keys, so it is itself a valid plug-in
bundle); when the master ``Istio`` names ``citadel.caSecretName`` (a user-provided CA)
that CA is the issuer instead (:func:`root_from_cacerts_secret`). Each cluster, the
master included, then gets its own intermediate (:func:`issue_cluster_ca`), so a leaked
remote key does not hand out the root, and a cluster's CA can be renewed alone. (The
source operator copied the master's one CA key to every remote.)

Keys are RSA 2048, written as PKCS#1 (``RSA PRIVATE KEY``): the form of Istio's own
sample plug-in certificates, which every citadel release reads (EC and PKCS#8 support
varies between releases, so neither is relied on). Certificates carry
``basicConstraints`` CA (critical; path length 1 on the root, 0 on an intermediate,
which only signs workloads) and ``keyCertSign``.

Secrecy: private keys live only inside :class:`RootCA` / :class:`ClusterCA`, whose
``repr``/``str`` name the subject and the public fingerprint and nothing else, which
neither msgspec nor json can encode, and which only :meth:`key_pem` (explicitly) and the
Secret builders reveal. What may enter the event log, a status or an annotation is
:func:`public_fingerprint` (a sha256 over the public certificates) or
:meth:`public` (the PEM certificates). Errors describe the problem, never the data.

The Secrets are labelled ``app.kubernetes.io/managed-by: federationd-trust``
(:data:`TRUST_MANAGER`), not ``federationd``: they must stay out of the derived desired
state (printable, replayable, in the log's terms) and so out of the converger's
inventory, which deletes ``managed-by=federationd`` objects it was not asked for.

No I/O: callers read and write the Secrets, and pass ``now``. Creating a root or a
cluster CA is random by nature (keys, serial numbers); everything else is deterministic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from federationd.render.objects import COMPONENT_LABEL, MANAGED_BY_LABEL

__all__ = [
    "CACERTS_SECRET_NAME",
    "CA_CERT",
    "CA_KEY",
    "CERT_CHAIN",
    "COMPONENT",
    "FINGERPRINT_ANNOTATION",
    "ROOT_CERT",
    "ROOT_SECRET_NAME",
    "TRUST_MANAGER",
    "ChainError",
    "ClusterCA",
    "ForeignCacerts",
    "MalformedSecret",
    "PublicCA",
    "RootCA",
    "TrustError",
    "cacerts_secret",
    "cluster_ca_from_secret",
    "generate_root",
    "issue_cluster_ca",
    "issued_by",
    "needs_renewal",
    "plan_cacerts",
    "public_fingerprint",
    "root_from_cacerts_secret",
    "root_from_secret",
    "root_secret",
]

ROOT_SECRET_NAME: Final = "federationd-root-ca"
CACERTS_SECRET_NAME: Final = "cacerts"
CA_CERT: Final = "ca-cert.pem"
CA_KEY: Final = "ca-key.pem"
ROOT_CERT: Final = "root-cert.pem"
CERT_CHAIN: Final = "cert-chain.pem"
#: Component label of the Secrets built here.
COMPONENT: Final = "trust"
#: ``app.kubernetes.io/managed-by`` value of the Secrets built here. Deliberately not
#: ``federationd``: those Secrets hold keys, so they never pass through the derived
#: desired state (which is printable and replayable), and the converger deletes any
#: ``managed-by=federationd`` object it does not find there.
TRUST_MANAGER: Final = "federationd-trust"
#: Annotation carrying :func:`public_fingerprint` on every Secret built here (safe to
#: log and to fold into a pod-template hash so citadel restarts on a new CA).
FINGERPRINT_ANNOTATION: Final = "federationd.io/ca-fingerprint"

_RSA_BITS: Final = 2048
_ORG: Final = "federationd"
# Issued certificates start slightly in the past: another cluster's clock may lag.
_BACKDATE: Final = timedelta(minutes=5)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --- errors ---------------------------------------------------------------------------------


class TrustError(Exception):
    """Base of this module's refusals. Messages never contain key or certificate data."""


class MalformedSecret(TrustError):
    """A Secret that does not hold a usable CA bundle; ``field`` names the data key."""

    def __init__(self, secret: str, field: str, problem: str) -> None:
        super().__init__(f"Secret {secret}: {field}: {problem}")
        self.secret = secret
        self.field = field
        self.problem = problem


class ChainError(TrustError):
    """Certificates that do not form a valid CA chain (or a CA that may not issue CAs)."""


class ForeignCacerts(TrustError):
    """A ``cacerts`` Secret exists that federationd did not create; it is left alone."""


# --- the key-holding types ----------------------------------------------------------------------


class PublicCA(msgspec.Struct, frozen=True, kw_only=True):
    """The public half of a CA bundle: safe to encode, log, or show."""

    subject: str
    ca_cert_pem: str
    cert_chain_pem: str
    root_cert_pem: str
    fingerprint: str
    not_before: str
    not_after: str


class _Authority:
    """A CA certificate, its private key, its issuers up to the root, and the root.

    ``parents`` are the certificates above ``cert``: its issuer first, the root last;
    empty when ``cert`` is the root itself."""

    __slots__ = ("__key", "cert", "parents", "root")

    def __init__(
        self,
        cert: x509.Certificate,
        key: PrivateKey,
        *,
        parents: Sequence[x509.Certificate] = (),
        root: x509.Certificate | None = None,
    ) -> None:
        self.cert = cert
        self.__key = key
        self.parents = tuple(parents)
        self.root = root if root is not None else (self.parents[-1] if self.parents else cert)

    # Name-mangled, so the key is not an attribute anyone stumbles on (debuggers, vars()).
    def _private_key(self) -> PrivateKey:
        return self.__key

    def key_pem(self) -> bytes:
        """The private key, PEM. Only Secret builders should need this."""
        return _key_pem(self.__key)

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """``cert-chain.pem`` order: this certificate, its issuers, the root."""
        return (self.cert, *self.parents)

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.chain, self.root)

    @property
    def not_before(self) -> datetime:
        return self.cert.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.cert.not_valid_after_utc

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    def public(self) -> PublicCA:
        return PublicCA(
            subject=self.subject,
            ca_cert_pem=_pem(self.cert).decode(),
            cert_chain_pem=b"".join(_pem(c) for c in self.chain).decode(),
            root_cert_pem=_pem(self.root).decode(),
            fingerprint=self.fingerprint,
            not_before=self.not_before.isoformat(),
            not_after=self.not_after.isoformat(),
        )

    def _describe(self) -> str:
        return (
            f"subject={self.subject!r}, not_after={self.not_after.isoformat()!r}, "
            f"fingerprint={self.fingerprint!r}, key=<redacted>"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would copy the key somewhere this module does not control.
        raise TypeError(f"{type(self).__name__} cannot be pickled (it holds a private key)")


class RootCA(_Authority):
    """The authority that issues every cluster's intermediate: federationd's generated
    root, or the user's plug-in CA named by ``citadel.caSecretName``."""

    __slots__ = ()


class ClusterCA(_Authority):
    """One cluster's intermediate CA: what its citadel signs workload certificates with."""

    __slots__ = ("cluster",)

    def __init__(
        self,
        cert: x509.Certificate,
        key: PrivateKey,
        *,
        cluster: str,
        parents: Sequence[x509.Certificate],
        root: x509.Certificate | None = None,
    ) -> None:
        super().__init__(cert, key, parents=parents, root=root)
        self.cluster = cluster

    def _describe(self) -> str:
        return f"cluster={self.cluster!r}, {super()._describe()}"


# --- small helpers ----------------------------------------------------------------------------


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _fingerprint(chain: Sequence[x509.Certificate], root: x509.Certificate) -> str:
    certs = list(chain)
    if not certs or certs[-1] != root:
        certs.append(root)
    h = hashlib.sha256()
    for c in certs:
        der = c.public_bytes(serialization.Encoding.DER)
        h.update(len(der).to_bytes(4, "big"))
        h.update(der)
    return "sha256:" + h.hexdigest()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _new_key(bits: int = _RSA_BITS) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


#: Makes an RSA private key of the given size (``actuators.keys.KeyMaker`` makes them in a
#: worker process; the default, in the calling thread).
NewKey = Callable[[int], rsa.RSAPrivateKey]


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _signature_hash(key: PrivateKey) -> hashes.SHA256:
    return hashes.SHA256()


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _check_can_issue_cas(cert: x509.Certificate) -> None:
    """The issuer of an intermediate must be a CA whose path length allows one more CA."""
    bc = _basic_constraints(cert)
    if bc is None or not bc.ca:
        raise ChainError("the issuing certificate is not a CA (basicConstraints CA is not true)")
    if bc.path_length is not None and bc.path_length < 1:
        raise ChainError(
            "the issuing CA has path length 0: it may sign workloads but not a cluster CA"
        )
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise ChainError("the issuing certificate lacks the keyCertSign key usage")


def _same_public_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, fmt) == key.public_key().public_bytes(der, fmt)


# --- building -----------------------------------------------------------------------------------


def generate_root(*, common_name: str, now: datetime, validity: timedelta) -> RootCA:
    """A new self-signed root CA (RSA 2048, valid from ``now`` for ``validity``)."""
    now = _utc(now)
    key = _new_key()
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, _signature_hash(key))
    )
    return RootCA(cert, key)


def issue_cluster_ca(
    root: RootCA, *, cluster: str, now: datetime, validity: timedelta, new_key: NewKey = _new_key
) -> ClusterCA:
    """A new intermediate CA for ``cluster`` signed by ``root``. It never outlives its
    issuer: ``not_after`` is capped at the issuer's."""
    now = _utc(now)
    _check_can_issue_cas(root.cert)
    issuer_key = root._private_key()
    key = new_key(_RSA_BITS)
    not_after = min(now + validity, root.not_after)
    try:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            root.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"federationd intermediate CA {cluster}"))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(issuer_key, _signature_hash(issuer_key))
    )
    return ClusterCA(cert, key, cluster=cluster, parents=root.chain, root=root.root)


# --- Secrets ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _bundle_secret(
    ca: _Authority, *, name: str, namespace: str, extra_labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    labels = dict(extra_labels or {})
    labels[MANAGED_BY_LABEL] = TRUST_MANAGER
    labels[COMPONENT_LABEL] = COMPONENT
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {FINGERPRINT_ANNOTATION: ca.fingerprint},
        },
        "type": "Opaque",
        "data": {
            CA_CERT: _b64(_pem(ca.cert)),
            CA_KEY: _b64(ca.key_pem()),
            ROOT_CERT: _b64(_pem(ca.root)),
            CERT_CHAIN: _b64(b"".join(_pem(c) for c in ca.chain)),
        },
    }


def root_secret(root: RootCA, *, namespace: str, name: str = ROOT_SECRET_NAME) -> dict[str, Any]:
    """The Secret that keeps ``root`` on the master (the plug-in bundle's four keys)."""
    return _bundle_secret(root, name=name, namespace=namespace)


def cacerts_secret(ca: ClusterCA, *, namespace: str) -> dict[str, Any]:
    """Istio's plug-in CA Secret ``cacerts`` for ``ca``'s cluster."""
    return _bundle_secret(
        ca,
        name=CACERTS_SECRET_NAME,
        namespace=namespace,
        extra_labels={"federationd.io/cluster": ca.cluster},
    )


# --- reading Secrets ------------------------------------------------------------------------------


def _secret_name(secret: Mapping[str, Any]) -> str:
    meta = secret.get("metadata") if isinstance(secret, Mapping) else None
    if not isinstance(meta, Mapping):
        return "<unnamed>"
    ns, name = meta.get("namespace"), meta.get("name")
    return f"{ns}/{name}" if ns else str(name or "<unnamed>")


def _field(secret: Mapping[str, Any], key: str, *, required: bool) -> bytes | None:
    """A data value, decoded (``data`` is base64 as the API serves it; ``stringData`` is
    accepted for objects built locally)."""
    data = secret.get("data") or {}
    string_data = secret.get("stringData") or {}
    if not isinstance(data, Mapping) or not isinstance(string_data, Mapping):
        raise MalformedSecret(_secret_name(secret), "data", "is not a map")
    if key in data and data[key] not in (None, ""):
        try:
            return base64.b64decode(str(data[key]), validate=True)
        except (binascii.Error, ValueError):
            raise MalformedSecret(_secret_name(secret), key, "is not valid base64") from None
    if key in string_data and string_data[key] not in (None, ""):
        return str(string_data[key]).encode()
    if required:
        raise MalformedSecret(_secret_name(secret), key, "is missing")
    return None


def _certs(secret: Mapping[str, Any], key: str, raw: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError:
        raise MalformedSecret(_secret_name(secret), key, "holds no readable PEM certificate") from None
    if not certs:
        raise MalformedSecret(_secret_name(secret), key, "holds no certificate")
    return certs


def _private_key(secret: Mapping[str, Any], raw: bytes, *, thorough: bool) -> PrivateKey:
    # The full RSA consistency check costs ~50 ms; a cluster's own cacerts is re-read on
    # every resync, so there it is skipped (the public half is still matched against the
    # certificate). An issuer's key, read once, gets the full check.
    try:
        key = serialization.load_pem_private_key(
            raw, password=None, unsafe_skip_rsa_key_validation=not thorough
        )
    except (ValueError, TypeError):
        raise MalformedSecret(
            _secret_name(secret), CA_KEY, "holds no readable unencrypted PEM private key"
        ) from None
    except Exception:  # a backend error on hostile input must not echo it either
        raise MalformedSecret(_secret_name(secret), CA_KEY, "could not be read") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise MalformedSecret(_secret_name(secret), CA_KEY, "is neither an RSA nor an EC key")
    return key


def _parse_bundle(
    secret: Mapping[str, Any], *, require_root: bool, thorough: bool = True
) -> tuple[x509.Certificate, PrivateKey, tuple[x509.Certificate, ...], x509.Certificate]:
    """``(cert, key, parents, root)`` of a plug-in bundle, verified: the key matches the
    certificate, each certificate is signed by the next, the chain ends at the root, and
    the certificate is a CA."""
    name = _secret_name(secret)
    if not isinstance(secret, Mapping):
        raise MalformedSecret(name, "data", "is not a Secret")
    cert = _certs(secret, CA_CERT, _field(secret, CA_CERT, required=True) or b"")[0]
    key = _private_key(secret, _field(secret, CA_KEY, required=True) or b"", thorough=thorough)
    if not _same_public_key(cert, key):
        raise MalformedSecret(name, CA_KEY, f"does not belong to the certificate in {CA_CERT}")
    bc = _basic_constraints(cert)
    if bc is None or not bc.ca:
        raise ChainError(f"Secret {name}: {CA_CERT} is not a CA certificate")
    raw_root = _field(secret, ROOT_CERT, required=require_root)
    if raw_root is None:
        if not _issued_by(cert, cert):
            raise MalformedSecret(name, ROOT_CERT, f"is missing and {CA_CERT} is not self-signed")
        root = cert
    else:
        root = _certs(secret, ROOT_CERT, raw_root)[0]
    raw_chain = _field(secret, CERT_CHAIN, required=False)
    chain = _certs(secret, CERT_CHAIN, raw_chain) if raw_chain is not None else []
    if chain and chain[0] == cert:
        chain = chain[1:]
    parents: list[x509.Certificate] = [c for c in chain if c != cert]
    if cert != root and (not parents or parents[-1] != root):
        parents.append(root)
    links = [cert, *parents]
    for child, parent in itertools.pairwise(links):
        if not _issued_by(child, parent):
            raise ChainError(
                f"Secret {name}: {child.subject.rfc4514_string()!r} is not signed by "
                f"{parent.subject.rfc4514_string()!r}"
            )
    if not _issued_by(root, root):
        raise ChainError(f"Secret {name}: {ROOT_CERT} is not a self-signed root")
    return cert, key, tuple(parents), root


def root_from_secret(secret: Mapping[str, Any]) -> RootCA:
    """The root kept in :data:`ROOT_SECRET_NAME` (as written by :func:`root_secret`).
    Raises :class:`MalformedSecret` / :class:`ChainError`: a broken root must be
    repaired by a person, never silently replaced (that would split the mesh's trust)."""
    cert, key, parents, root = _parse_bundle(secret, require_root=False)
    return RootCA(cert, key, parents=parents, root=root)


def root_from_cacerts_secret(secret: Mapping[str, Any]) -> RootCA:
    """A user's plug-in CA (the Secret ``citadel.caSecretName`` names) as the issuer of
    every cluster CA. ``root-cert.pem`` and ``cert-chain.pem`` may be absent when
    ``ca-cert.pem`` is self-signed (citadel's own ``istio-ca-secret`` layout). The CA must
    be allowed to sign CA certificates (path length ≥ 1 or unlimited)."""
    cert, key, parents, root = _parse_bundle(secret, require_root=False)
    _check_can_issue_cas(cert)
    return RootCA(cert, key, parents=parents, root=root)


def cluster_ca_from_secret(secret: Mapping[str, Any], *, cluster: str) -> ClusterCA:
    """A ``cacerts`` Secret read back (to decide whether it needs renewal)."""
    cert, key, parents, root = _parse_bundle(secret, require_root=True, thorough=False)
    return ClusterCA(cert, key, cluster=cluster, parents=parents, root=root)


def public_fingerprint(secret_or_ca: Mapping[str, Any] | _Authority) -> str:
    """``sha256:<hex>`` over the public certificates of a bundle (signing certificate,
    its chain, the root) — never the key. Equal for a CA and the Secret built from it."""
    if isinstance(secret_or_ca, _Authority):
        return secret_or_ca.fingerprint
    secret = secret_or_ca
    cert = _certs(secret, CA_CERT, _field(secret, CA_CERT, required=True) or b"")[0]
    raw_root = _field(secret, ROOT_CERT, required=False)
    root = _certs(secret, ROOT_CERT, raw_root)[0] if raw_root is not None else cert
    raw_chain = _field(secret, CERT_CHAIN, required=False)
    chain = _certs(secret, CERT_CHAIN, raw_chain) if raw_chain is not None else []
    if not chain or chain[0] != cert:
        chain = [cert, *chain]
    return _fingerprint(chain, root)


# --- lifecycle ----------------------------------------------------------------------------------------


def issued_by(ca: _Authority, root: RootCA) -> bool:
    """Whether ``ca`` was signed by ``root``'s certificate and trusts the same root."""
    return ca.root == root.root and _issued_by(ca.cert, root.cert)


def needs_renewal(
    ca: _Authority, *, now: datetime, before: timedelta, root: RootCA | None = None
) -> bool:
    """True when ``ca`` expires within ``before`` of ``now`` (or has expired, or is not
    valid yet), or — given ``root`` — was not issued by it (the root changed)."""
    now = _utc(now)
    if now + before >= ca.not_after or now < ca.not_before:
        return True
    return root is not None and not issued_by(ca, root)


def plan_cacerts(
    root: RootCA,
    existing: Mapping[str, Any] | None,
    *,
    cluster: str,
    namespace: str,
    now: datetime,
    validity: timedelta,
    renew_before: timedelta,
    new_key: NewKey = _new_key,
) -> dict[str, Any] | None:
    """The ``cacerts`` Secret to write on ``cluster``, or ``None`` when the ``existing``
    one (as read from the cluster, ``None`` if absent) is federationd's, readable, issued
    by ``root`` and not due for renewal. An existing ``cacerts`` federationd did not
    create raises :class:`ForeignCacerts` (a user's own CA is not overwritten)."""
    if existing is not None:
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != TRUST_MANAGER:
            raise ForeignCacerts(
                f"Secret {namespace}/{CACERTS_SECRET_NAME} on {cluster} was not created by "
                "federationd; remove it (or name it in citadel.caSecretName) to join the "
                "shared root of trust"
            )
        try:
            current = cluster_ca_from_secret(existing, cluster=cluster)
        except TrustError:
            current = None  # ours but unreadable: replace it
        if current is not None and not needs_renewal(current, now=now, before=renew_before, root=root):
            return None
    ca = issue_cluster_ca(root, cluster=cluster, now=now, validity=validity, new_key=new_key)
    return cacerts_secret(ca, namespace=namespace)
