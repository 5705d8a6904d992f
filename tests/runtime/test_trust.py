"""The shared root of trust: a root CA, per-cluster intermediates, Istio's ``cacerts``
layout, Secret round trips, renewal, a user-provided CA as issuer, and key secrecy."""

from __future__ import annotations

import base64
import copy
import json
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from federationd import trust
from federationd.render.objects import COMPONENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from federationd.trust import (
    ChainError,
    ClusterCA,
    ForeignCacerts,
    MalformedSecret,
    RootCA,
    TrustError,
)

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
YEAR = timedelta(days=365)
NS = "istio-system"


# Key generation is the slow part: share one root and two cluster CAs per module.
@pytest.fixture(scope="module")
def root() -> RootCA:
    return trust.generate_root(common_name="federationd root CA", now=NOW, validity=10 * YEAR)


@pytest.fixture(scope="module")
def eu(root: RootCA) -> ClusterCA:
    return trust.issue_cluster_ca(root, cluster="remote-eu", now=NOW, validity=YEAR)


@pytest.fixture(scope="module")
def us(root: RootCA) -> ClusterCA:
    return trust.issue_cluster_ca(root, cluster="remote-us", now=NOW, validity=YEAR)


def _data(secret: dict[str, Any], key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


def _bc(cert: x509.Certificate) -> x509.BasicConstraints:
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value


def _verify_signed(child: x509.Certificate, parent: x509.Certificate) -> None:
    """An independent check of the signature (not the module's own helper)."""
    pub = parent.public_key()
    assert isinstance(pub, rsa.RSAPublicKey)
    assert child.signature_hash_algorithm is not None
    pub.verify(
        child.signature,
        child.tbs_certificate_bytes,
        padding.PKCS1v15(),
        child.signature_hash_algorithm,
    )


# --- the chain -------------------------------------------------------------------------------------


def test_root_is_a_self_signed_ca(root: RootCA) -> None:
    cert = root.cert
    assert cert.issuer == cert.subject
    _verify_signed(cert, cert)
    bc = _bc(cert)
    assert bc.ca is True and bc.path_length == 1
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).critical
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    assert cert.not_valid_after_utc == NOW + 10 * YEAR
    assert cert.not_valid_before_utc <= NOW


def test_cluster_ca_is_signed_by_the_root(root: RootCA, eu: ClusterCA) -> None:
    _verify_signed(eu.cert, root.cert)
    assert eu.cert.issuer == root.cert.subject
    bc = _bc(eu.cert)
    assert bc.ca is True and bc.path_length == 0  # signs workloads only
    assert eu.cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    aki = eu.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert eu.chain == (eu.cert, root.cert)
    assert eu.root == root.cert
    assert eu.not_after == NOW + YEAR
    assert "remote-eu" in eu.subject


def test_cluster_ca_never_outlives_its_root(root: RootCA) -> None:
    ca = trust.issue_cluster_ca(root, cluster="long", now=NOW, validity=100 * YEAR)
    assert ca.not_after == root.not_after


def test_two_clusters_share_the_root(root: RootCA, eu: ClusterCA, us: ClusterCA) -> None:
    a = trust.cacerts_secret(eu, namespace=NS)
    b = trust.cacerts_secret(us, namespace=NS)
    assert _data(a, trust.ROOT_CERT) == _data(b, trust.ROOT_CERT)
    assert _data(a, trust.CA_CERT) != _data(b, trust.CA_CERT)
    assert _data(a, trust.CA_KEY) != _data(b, trust.CA_KEY)
    assert eu.fingerprint != us.fingerprint


def test_workload_cert_from_one_cluster_verifies_with_the_other_clusters_root(
    eu: ClusterCA, us: ClusterCA
) -> None:
    """What the shared root is for: a leaf signed by remote-eu's citadel chains, through
    its ``cert-chain.pem``, to the ``root-cert.pem`` remote-us trusts."""
    from cryptography.x509.verification import PolicyBuilder, Store

    eu_secret = trust.cacerts_secret(eu, namespace=NS)
    us_secret = trust.cacerts_secret(us, namespace=NS)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = serialization.load_pem_private_key(_data(eu_secret, trust.CA_KEY), password=None)
    assert isinstance(signer, rsa.RSAPrivateKey)
    ca_cert = x509.load_pem_x509_certificate(_data(eu_secret, trust.CA_CERT))
    spiffe = "spiffe://cluster.local/ns/default/sa/sleep"
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe)]), critical=True
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
        .sign(signer, hashes.SHA256())
    )
    # Citadel sends leaf + cert-chain.pem; the peer trusts its own root-cert.pem.
    intermediates = x509.load_pem_x509_certificates(_data(eu_secret, trust.CERT_CHAIN))
    peer_root = x509.load_pem_x509_certificate(_data(us_secret, trust.ROOT_CERT))
    verifier = (
        PolicyBuilder()
        .store(Store([peer_root]))
        .time(NOW)
        .build_client_verifier()
    )
    verified = verifier.verify(leaf, intermediates)
    assert verified.chain[-1] == peer_root


# --- the Secrets -------------------------------------------------------------------------------------


def test_cacerts_secret_has_istios_plugin_layout(root: RootCA, eu: ClusterCA) -> None:
    s = trust.cacerts_secret(eu, namespace=NS)
    assert s["apiVersion"] == "v1" and s["kind"] == "Secret" and s["type"] == "Opaque"
    assert s["metadata"]["name"] == "cacerts" and s["metadata"]["namespace"] == NS
    assert s["metadata"]["labels"][COMPONENT_LABEL] == trust.COMPONENT
    assert s["metadata"]["labels"]["federationd.io/cluster"] == "remote-eu"
    # Not in the converger's managed-by=federationd inventory: it would delete a Secret
    # the derived desired state (which never holds keys) does not list.
    assert s["metadata"]["labels"][MANAGED_BY_LABEL] == trust.TRUST_MANAGER != MANAGED_BY
    assert sorted(s["data"]) == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    chain = x509.load_pem_x509_certificates(_data(s, "cert-chain.pem"))
    # cert-chain.pem: the signing certificate first, then up to and including the root.
    assert chain == [eu.cert, root.cert]
    assert x509.load_pem_x509_certificate(_data(s, "ca-cert.pem")) == eu.cert
    assert x509.load_pem_x509_certificate(_data(s, "root-cert.pem")) == root.cert
    # PKCS#1 RSA: the key form every supported citadel reads.
    assert _data(s, "ca-key.pem").startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert s["metadata"]["annotations"][trust.FINGERPRINT_ANNOTATION] == eu.fingerprint


def test_secrets_validate_against_the_kubernetes_schema(root: RootCA, eu: ClusterCA) -> None:
    import kubernetes_validate

    for s in (trust.root_secret(root, namespace=NS), trust.cacerts_secret(eu, namespace=NS)):
        kubernetes_validate.validate(s, "1.30.0", strict=True)


def test_root_round_trips_through_its_secret(root: RootCA, eu: ClusterCA) -> None:
    s = trust.root_secret(root, namespace=NS)
    assert s["metadata"]["name"] == trust.ROOT_SECRET_NAME
    back = trust.root_from_secret(s)
    assert back.cert == root.cert
    assert back.key_pem() == root.key_pem()
    assert back.root == root.cert
    assert back.fingerprint == root.fingerprint
    # A root read back issues CAs the original's trusters accept.
    ca = trust.issue_cluster_ca(back, cluster="later", now=NOW, validity=YEAR)
    _verify_signed(ca.cert, root.cert)
    assert trust.issued_by(eu, back)


def test_cacerts_round_trip_and_fingerprints_agree(eu: ClusterCA) -> None:
    s = trust.cacerts_secret(eu, namespace=NS)
    back = trust.cluster_ca_from_secret(s, cluster="remote-eu")
    assert back.cert == eu.cert and back.chain == eu.chain and back.root == eu.root
    assert trust.public_fingerprint(s) == trust.public_fingerprint(eu) == back.fingerprint
    assert trust.public_fingerprint(s).startswith("sha256:")


def test_string_data_is_accepted(root: RootCA) -> None:
    s = trust.root_secret(root, namespace=NS)
    s["stringData"] = {k: base64.b64decode(v).decode() for k, v in s.pop("data").items()}
    assert trust.root_from_secret(s).cert == root.cert


# --- a user-provided CA as the issuer -------------------------------------------------------------


def _user_ca(root: RootCA) -> dict[str, Any]:
    """A user's plug-in bundle: an intermediate (path length 1) under the user's own root,
    shaped like Istio's samples/certs."""
    user_root = trust.generate_root(common_name="Corp Root", now=NOW, validity=10 * YEAR)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Corp Mesh CA")]))
        .issuer_name(user_root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + 5 * YEAR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(user_root._private_key(), hashes.SHA256())
    )
    ca = RootCA(cert, key, parents=(user_root.cert,))
    return trust.root_secret(ca, namespace=NS, name="corp-cacerts")


def test_user_ca_issues_cluster_cas_under_the_users_root(root: RootCA) -> None:
    secret = _user_ca(root)
    user = trust.root_from_cacerts_secret(secret)
    user_root = x509.load_pem_x509_certificate(_data(secret, trust.ROOT_CERT))
    assert user.root == user_root and user.cert != user_root
    ca = trust.issue_cluster_ca(user, cluster="remote-eu", now=NOW, validity=YEAR)
    s = trust.cacerts_secret(ca, namespace=NS)
    chain = x509.load_pem_x509_certificates(_data(s, trust.CERT_CHAIN))
    assert chain == [ca.cert, user.cert, user_root]
    assert x509.load_pem_x509_certificate(_data(s, trust.ROOT_CERT)) == user_root
    _verify_signed(ca.cert, user.cert)


def test_self_signed_ca_secret_without_root_cert(root: RootCA) -> None:
    """Citadel's own ``istio-ca-secret`` layout: just ca-cert.pem and ca-key.pem."""
    s = trust.root_secret(root, namespace=NS, name="istio-ca-secret")
    del s["data"][trust.ROOT_CERT], s["data"][trust.CERT_CHAIN]
    user = trust.root_from_cacerts_secret(s)
    assert user.root == root.cert and user.parents == ()


def test_a_ca_with_path_length_zero_cannot_be_the_issuer(eu: ClusterCA) -> None:
    s = trust.cacerts_secret(eu, namespace=NS)
    with pytest.raises(ChainError, match="path length 0"):
        trust.root_from_cacerts_secret(s)


# --- malformed input ------------------------------------------------------------------------------


def _broken(root: RootCA, eu: ClusterCA) -> list[tuple[str, dict[str, Any], type[TrustError]]]:
    good = trust.root_secret(root, namespace=NS)
    cases: list[tuple[str, dict[str, Any], type[TrustError]]] = []
    s = copy.deepcopy(good)
    del s["data"][trust.CA_KEY]
    cases.append(("missing key", s, MalformedSecret))
    s = copy.deepcopy(good)
    s["data"][trust.CA_KEY] = "!!not base64!!"
    cases.append(("bad base64", s, MalformedSecret))
    s = copy.deepcopy(good)
    s["data"][trust.CA_KEY] = base64.b64encode(b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n").decode()
    cases.append(("garbage key", s, MalformedSecret))
    s = copy.deepcopy(good)
    s["data"][trust.CA_KEY] = base64.b64encode(eu.key_pem()).decode()
    cases.append(("key of another certificate", s, MalformedSecret))
    s = copy.deepcopy(good)
    s["data"][trust.CA_CERT] = base64.b64encode(b"not a certificate").decode()
    cases.append(("bad certificate", s, MalformedSecret))
    s = trust.cacerts_secret(eu, namespace=NS)
    other = trust.generate_root(common_name="other", now=NOW, validity=YEAR)
    s["data"][trust.ROOT_CERT] = base64.b64encode(
        other.cert.public_bytes(serialization.Encoding.PEM)
    ).decode()
    s["data"][trust.CERT_CHAIN] = s["data"][trust.CA_CERT]
    cases.append(("chain to a different root", s, ChainError))
    return cases


def test_malformed_secrets_fail_clearly_without_echoing_data(root: RootCA, eu: ClusterCA) -> None:
    for what, secret, error in _broken(root, eu):
        with pytest.raises(error) as info:
            trust.cluster_ca_from_secret(secret, cluster="x") if error is ChainError else trust.root_from_secret(secret)
        text = f"{info.value} {info.value!r}"
        assert f"{NS}/" in text, what  # names the Secret
        assert "PRIVATE KEY" not in text and "BEGIN" not in text, what
        for v in secret["data"].values():
            assert v not in text, what
        # Nothing chained either: a library error could carry the input.
        exc = info.value
        assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__), what


def test_not_a_secret_at_all() -> None:
    with pytest.raises(MalformedSecret):
        trust.root_from_secret({"metadata": {"name": "x"}, "data": []})


# --- renewal and planning --------------------------------------------------------------------------


def test_needs_renewal(root: RootCA, eu: ClusterCA) -> None:
    month = timedelta(days=30)
    assert not trust.needs_renewal(eu, now=NOW, before=month)
    assert not trust.needs_renewal(eu, now=NOW + YEAR - 2 * month, before=month)
    assert trust.needs_renewal(eu, now=NOW + YEAR - month, before=month)
    assert trust.needs_renewal(eu, now=NOW + 2 * YEAR, before=month)
    assert trust.needs_renewal(eu, now=NOW - timedelta(days=1), before=month)  # not valid yet
    assert not trust.needs_renewal(eu, now=NOW, before=month, root=root)
    other = trust.generate_root(common_name="rotated", now=NOW, validity=YEAR)
    assert trust.needs_renewal(eu, now=NOW, before=month, root=other)


def test_plan_cacerts(root: RootCA, eu: ClusterCA) -> None:
    kw: dict[str, Any] = {
        "cluster": "remote-eu",
        "namespace": NS,
        "validity": YEAR,
        "renew_before": timedelta(days=30),
    }
    first = trust.plan_cacerts(root, None, now=NOW, **kw)
    assert first is not None
    assert trust.cluster_ca_from_secret(first, cluster="remote-eu").root == root.cert
    # Unchanged: nothing to write (a resync sends no write).
    assert trust.plan_cacerts(root, first, now=NOW + timedelta(days=100), **kw) is None
    # Near expiry: a new intermediate under the same root.
    renewed = trust.plan_cacerts(root, first, now=NOW + YEAR - timedelta(days=10), **kw)
    assert renewed is not None
    assert _data(renewed, trust.CA_CERT) != _data(first, trust.CA_CERT)
    assert _data(renewed, trust.ROOT_CERT) == _data(first, trust.ROOT_CERT)
    # Ours but unreadable: replaced.
    broken = copy.deepcopy(first)
    broken["data"][trust.CA_KEY] = ""
    assert trust.plan_cacerts(root, broken, now=NOW, **kw) is not None
    # Somebody else's: refused, not overwritten.
    foreign = copy.deepcopy(first)
    foreign["metadata"]["labels"] = {}
    with pytest.raises(ForeignCacerts):
        trust.plan_cacerts(root, foreign, now=NOW, **kw)


# --- secrecy -------------------------------------------------------------------------------------------


def test_private_keys_are_redacted(root: RootCA, eu: ClusterCA) -> None:
    for ca in (root, eu):
        key_body = ca.key_pem().decode().splitlines()[1]
        for text in (repr(ca), str(ca), f"{ca}", f"{ca!r}", repr([ca]), repr({"ca": ca})):
            assert "PRIVATE KEY" not in text
            assert key_body not in text
            assert "<redacted>" in text
        assert ca.fingerprint in repr(ca)
    assert "remote-eu" in repr(eu)
    # The key is not reachable as a plain attribute either.
    assert not any("key" in name and not name.startswith("_") for name in dir(eu) if name != "key_pem")


def test_key_holders_refuse_encoding_and_pickling(eu: ClusterCA) -> None:
    with pytest.raises(TypeError) as info:
        msgspec.json.encode(eu)
    assert "PRIVATE" not in str(info.value)
    with pytest.raises(TypeError):
        json.dumps(eu)
    with pytest.raises(TypeError, match="private key"):
        pickle.dumps(eu)


def test_public_parts_encode_without_any_key(root: RootCA, eu: ClusterCA) -> None:
    pub = eu.public()
    encoded = msgspec.json.encode(pub)
    assert b"PRIVATE KEY" not in encoded
    assert b"BEGIN CERTIFICATE" in encoded
    assert pub.fingerprint == eu.fingerprint
    decoded = msgspec.json.decode(encoded, type=trust.PublicCA)
    assert x509.load_pem_x509_certificates(decoded.cert_chain_pem.encode()) == [eu.cert, root.cert]
    assert json.dumps({"fp": trust.public_fingerprint(trust.cacerts_secret(eu, namespace=NS))}).count("sha256:") == 1


def test_fingerprint_covers_public_certificates_only(eu: ClusterCA) -> None:
    s = trust.cacerts_secret(eu, namespace=NS)
    rekeyed = copy.deepcopy(s)
    rekeyed["data"][trust.CA_KEY] = base64.b64encode(b"anything").decode()
    assert trust.public_fingerprint(rekeyed) == trust.public_fingerprint(s)
    other = trust.issue_cluster_ca(
        trust.root_from_secret(trust.root_secret(trust.generate_root(common_name="r", now=NOW, validity=YEAR), namespace=NS)),
        cluster="remote-eu",
        now=NOW,
        validity=YEAR,
    )
    assert trust.public_fingerprint(trust.cacerts_secret(other, namespace=NS)) != trust.public_fingerprint(s)
