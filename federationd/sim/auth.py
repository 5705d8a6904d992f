"""Authentication as the real API server does it: who a request is from.

Three kinds of bearer token, as on a kubeadm cluster:

* **static tokens** the fleet writes into its kubeconfigs (the admin token is
  ``kubernetes-admin`` in ``system:masters``, so the fleet's own kubeconfigs stay
  cluster-admin);
* **bound ServiceAccount tokens** (``TokenRequest``, ``kubectl create token``): ES256
  JWTs signed by the cluster's service-account key with upstream's claims, valid while
  they have not expired and their ServiceAccount (same uid) still exists;
* **legacy ServiceAccount token Secrets** (type ``kubernetes.io/service-account-token``):
  the token controller here fills in ``token``, ``ca.crt`` and ``namespace``; the token
  stays valid while the Secret and the ServiceAccount exist.

A request without credentials is ``system:anonymous`` (``--anonymous-auth=true``, the
default); a credential that does not verify is 401, never anonymous. Impersonation
(``Impersonate-User``/``-Group``/``-Uid``/``-Extra-*``) is then checked with the
``impersonate`` verb on users, groups, serviceaccounts, uids and userextras, and the
request goes on as the impersonated user.

Verified tokens are cached (token → identity and expiry), so a request costs a dict
lookup and an existence check of its ServiceAccount, not a signature verification.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from federationd.sim import errors
from federationd.sim.rbac import (
    ANONYMOUS,
    AUTHENTICATED,
    UNAUTHENTICATED,
    RequestInfo,
    UserInfo,
    forbidden,
    service_account_user,
    split_service_account,
)
from federationd.sim.store import Change, Obj, Store, deep_copy, rfc3339

ISSUER = "https://kubernetes.default.svc.cluster.local"
LEGACY_ISSUER = "kubernetes/serviceaccount"
SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"
#: bounds of a TokenRequest's expirationSeconds (upstream validation)
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
DEFAULT_EXPIRATION = 3600

ADMIN = UserInfo(name="kubernetes-admin", groups=("system:masters", AUTHENTICATED))
ANONYMOUS_USER = UserInfo(name=ANONYMOUS, groups=(UNAUTHENTICATED,))
_SA_RESOURCE = ("", "serviceaccounts")
_SECRET_RESOURCE = ("", "secrets")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class _Verified:
    user: UserInfo
    expires: float | None
    namespace: str
    sa_name: str
    sa_uid: str
    secret: str
    audiences: tuple[str, ...]


class _Signer:
    """The cluster's service-account signing key (ES256), made on first use."""

    def __init__(self) -> None:
        self._key: Any = None
        self.kid = ""

    def _ensure(self) -> Any:
        if self._key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            self._key = ec.generate_private_key(ec.SECP256R1())
            der = self._key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            self.kid = _b64url(hashlib.sha256(der).digest())
        return self._key

    def sign(self, claims: Mapping[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        key = self._ensure()
        header = _b64url(json.dumps({"alg": "ES256", "kid": self.kid}, separators=(",", ":")).encode())
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode()
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return f"{header}.{payload}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def verify(self, token: str) -> dict[str, Any] | None:
        if self._key is None:
            return None
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_b64url_decode(parts[0]))
            sig = _b64url_decode(parts[2])
            if header.get("alg") != "ES256" or len(sig) != 64:
                return None
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            self._key.public_key().verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
            claims = json.loads(_b64url_decode(parts[1]))
        except (ValueError, InvalidSignature, TypeError):
            return None
        return claims if isinstance(claims, dict) else None


class Authenticator:
    """Tokens → users for one cluster, the token controller, TokenRequest/TokenReview."""

    CACHE_MAX = 10_000

    def __init__(self, store: Store, *, static: Mapping[str, UserInfo], clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.static = dict(static)
        self.clock = clock or store.clock
        self.signer = _Signer()
        #: PEM of the cluster CA, copied into legacy token Secrets (set by the fleet)
        self.ca_pem = b""
        self._verified: dict[str, _Verified] = {}
        store.listeners.append(self._on_change)

    # ------------------------------------------------------------------ authentication

    def authenticate(self, headers: Mapping[str, str]) -> UserInfo:
        auth = headers.get("Authorization", "")
        if not auth:
            return ANONYMOUS_USER
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.Unauthorized("Unauthorized")
        user = self.user_for(token.strip())
        if user is None:
            raise errors.Unauthorized("Unauthorized")
        return user

    def user_for(self, token: str, audiences: tuple[str, ...] = ()) -> UserInfo | None:
        user = self.static.get(token)
        if user is not None:
            return user
        v = self._verified.get(token)
        if v is None:
            v = self._verify(token)
            if v is None:
                return None
            if len(self._verified) >= self.CACHE_MAX:
                self._verified.clear()
            self._verified[token] = v
        if v.expires is not None and self.clock() >= v.expires:
            return None
        wanted = audiences or (ISSUER,)
        if v.audiences and not set(v.audiences) & set(wanted):
            return None
        sa = self.store.raw(_SA_RESOURCE, v.namespace, v.sa_name)
        if sa is None or (v.sa_uid and sa["metadata"].get("uid") != v.sa_uid):
            return None
        if v.secret:
            s = self.store.raw(_SECRET_RESOURCE, v.namespace, v.secret)
            if s is None or _secret_token(s) != token:
                return None
        return v.user

    def _verify(self, token: str) -> _Verified | None:
        claims = self.signer.verify(token)
        if claims is None:
            return None
        if claims.get("iss") == LEGACY_ISSUER:
            ns = str(claims.get("kubernetes.io/serviceaccount/namespace", ""))
            name = str(claims.get("kubernetes.io/serviceaccount/service-account.name", ""))
            uid = str(claims.get("kubernetes.io/serviceaccount/service-account.uid", ""))
            secret = str(claims.get("kubernetes.io/serviceaccount/secret.name", ""))
            if not ns or not name or not secret:
                return None
            return _Verified(service_account_user(ns, name, uid), None, ns, name, uid, secret, ())
        if claims.get("iss") != ISSUER:
            return None
        k8s = claims.get("kubernetes.io") or {}
        sa = k8s.get("serviceaccount") or {}
        ns, name, uid = str(k8s.get("namespace", "")), str(sa.get("name", "")), str(sa.get("uid", ""))
        if not ns or not name:
            return None
        aud = claims.get("aud") or []
        user = service_account_user(ns, name, uid)
        jti = claims.get("jti")
        if jti:
            user = UserInfo(user.name, user.uid, user.groups, (("authentication.kubernetes.io/credential-id", (f"JTI={jti}",)),))
        exp = claims.get("exp")
        return _Verified(user, float(exp) if exp is not None else None, ns, name, uid, "",
                         tuple(aud) if isinstance(aud, list) else (str(aud),))

    # ------------------------------------------------------------------ impersonation

    def impersonate(self, headers: Mapping[str, str], user: UserInfo, allowed: Callable[[UserInfo, RequestInfo], bool]) -> UserInfo:
        """The impersonation filter: ``user`` acting as the ``Impersonate-*`` identity."""
        getall = getattr(headers, "getall", None)
        name = headers.get("Impersonate-User", "")
        groups: list[str] = list(getall("Impersonate-Group", [])) if getall else ([headers["Impersonate-Group"]] if "Impersonate-Group" in headers else [])
        uid = headers.get("Impersonate-Uid", "")
        extra: dict[str, list[str]] = {}
        for k in headers:
            if k.lower().startswith("impersonate-extra-"):
                vals = list(getall(k, [])) if getall else [headers[k]]
                extra.setdefault(k[len("Impersonate-Extra-"):].lower(), []).extend(vals)
        if not name:
            if groups or uid or extra:
                raise errors.InternalError("requested [" + ", ".join(
                    [f"{{Group  {g}  }}" for g in groups]) + "] without impersonating a user")
            return user
        checks: list[RequestInfo] = []
        sa = split_service_account(name)
        if sa is not None:
            checks.append(RequestInfo(True, "", "impersonate", "", "", sa[0], "serviceaccounts", "", sa[1]))
        else:
            checks.append(RequestInfo(True, "", "impersonate", "", "", "", "users", "", name))
        for g in groups:
            checks.append(RequestInfo(True, "", "impersonate", "", "", "", "groups", "", g))
        if uid:
            checks.append(RequestInfo(True, "", "impersonate", "authentication.k8s.io", "", "", "uids", "", uid))
        for k, vals in extra.items():
            for v in vals:
                checks.append(RequestInfo(True, "", "impersonate", "authentication.k8s.io", "", "", "userextras", k, v))
        for c in checks:
            if not allowed(user, c):
                raise forbidden(user, c)
        if sa is not None and not groups:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa[0]}"]
        if name != ANONYMOUS and AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
        return UserInfo(name=name, uid=uid, groups=tuple(groups), extra=tuple((k, tuple(v)) for k, v in sorted(extra.items())))

    # ------------------------------------------------------------------ issuing tokens

    def issue(
        self, namespace: str, name: str, *, expiration_seconds: int = DEFAULT_EXPIRATION,
        audiences: tuple[str, ...] = (ISSUER,), bound: Mapping[str, Any] | None = None,
    ) -> tuple[str, float]:
        """A bound token for an existing ServiceAccount and its expiry (epoch seconds)."""
        sa = self.store.raw(_SA_RESOURCE, namespace, name)
        if sa is None:
            raise errors.not_found("serviceaccounts", name)
        now = int(self.clock())
        exp = now + expiration_seconds
        k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}}
        if bound:
            k8s[str(bound.get("kind", "")).lower()] = {"name": bound.get("name", ""), "uid": bound.get("uid", "")}
        claims = {
            "aud": list(audiences), "exp": exp, "iat": now, "iss": ISSUER, "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s, "nbf": now, "sub": f"system:serviceaccount:{namespace}:{name}",
        }
        return self.signer.sign(claims), float(exp)

    def token_request(self, namespace: str, name: str, body: Obj) -> Obj:
        """``POST …/serviceaccounts/NAME/token``: the TokenRequest with its status."""
        spec = body.get("spec") or {}
        exp = spec.get("expirationSeconds")
        exp = DEFAULT_EXPIRATION if exp in (None, 0) else exp
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise errors.BadRequest("spec.expirationSeconds: must be an integer")
        causes = []
        if exp < MIN_EXPIRATION:
            causes.append({"reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
                           "message": f"Invalid value: {exp}: may not specify a duration less than 10 minutes"})
        elif exp > MAX_EXPIRATION:
            causes.append({"reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
                           "message": f"Invalid value: {exp}: may not specify a duration larger than 2^32 seconds"})
        if causes:
            raise errors.invalid("TokenRequest", name, group="authentication.k8s.io", causes=causes)
        audiences = tuple(str(a) for a in spec.get("audiences") or ()) or (ISSUER,)
        token, expires = self.issue(namespace, name, expiration_seconds=exp, audiences=audiences,
                                    bound=spec.get("boundObjectRef") or None)
        out = deep_copy(body)
        out["apiVersion"], out["kind"] = "authentication.k8s.io/v1", "TokenRequest"
        meta = out.setdefault("metadata", {})
        meta.update({"name": name, "namespace": namespace, "creationTimestamp": None})
        out["spec"] = {**spec, "audiences": list(audiences), "expirationSeconds": exp,
                       "boundObjectRef": spec.get("boundObjectRef")}
        out["status"] = {"token": token, "expirationTimestamp": rfc3339(expires)}
        return out

    def token_review(self, body: Obj) -> Obj:
        spec = body.get("spec") or {}
        audiences = tuple(str(a) for a in spec.get("audiences") or ())
        user = self.user_for(str(spec.get("token", "")), audiences)
        out = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {**(body.get("metadata") or {}), "creationTimestamp": None}, "spec": spec}
        if user is None:
            out["status"] = {"user": {}, "error": "[invalid bearer token, service account token has been invalidated]"}
        else:
            out["status"] = {"authenticated": True, "user": user.to_json(), "audiences": list(audiences or (ISSUER,))}
        return out

    @staticmethod
    def self_subject_review(user: UserInfo, body: Obj) -> Obj:
        return {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {**(body.get("metadata") or {}), "creationTimestamp": None},
                "status": {"userInfo": user.to_json()}}

    # ------------------------------------------------------------------ the token controller

    def _on_change(self, ch: Change) -> None:
        if ch.resource == _SECRET_RESOURCE and ch.type != "DELETED":
            self._populate(ch.obj)
        elif ch.resource == _SA_RESOURCE:
            if ch.type == "DELETED":
                self._delete_tokens(ch.namespace, ch.name)
            elif ch.type == "ADDED":
                for s in self.store.list_raw(_SECRET_RESOURCE, ch.namespace)[0]:
                    self._populate(s)

    def _populate(self, secret: Obj) -> None:
        if secret.get("type") != SA_TOKEN_TYPE:
            return
        meta = secret["metadata"]
        if meta.get("deletionTimestamp") or _secret_token(secret):
            return
        ns, sa_name = meta.get("namespace", ""), (meta.get("annotations") or {}).get(SA_NAME_ANNOTATION, "")
        sa = self.store.raw(_SA_RESOURCE, ns, sa_name) if sa_name else None
        if sa is None:
            return
        uid = sa["metadata"]["uid"]
        want_uid = (meta.get("annotations") or {}).get(SA_UID_ANNOTATION)
        if want_uid and want_uid != uid:
            return
        self.signer._ensure()
        token = self.signer.sign({
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": ns,
            "kubernetes.io/serviceaccount/secret.name": meta["name"],
            "kubernetes.io/serviceaccount/service-account.name": sa_name,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
            "sub": f"system:serviceaccount:{ns}:{sa_name}",
        })
        new = deep_copy(secret)
        new["metadata"].setdefault("annotations", {})[SA_UID_ANNOTATION] = uid
        new["data"] = {
            **(new.get("data") or {}),
            "ca.crt": base64.b64encode(self.ca_pem).decode(),
            "namespace": base64.b64encode(ns.encode()).decode(),
            "token": base64.b64encode(token.encode()).decode(),
        }
        self.store.update(new, check_version=False, copy_result=False)

    def _delete_tokens(self, namespace: str, sa_name: str) -> None:
        for s in list(self.store.list_raw(_SECRET_RESOURCE, namespace)[0]):
            if s.get("type") == SA_TOKEN_TYPE and (s["metadata"].get("annotations") or {}).get(SA_NAME_ANNOTATION) == sa_name:
                kind = self.store.kind_for("v1", "Secret")
                try:
                    self.store.delete(kind, namespace, s["metadata"]["name"])
                except errors.ApiError:
                    pass


def _secret_token(secret: Obj) -> str:
    raw = (secret.get("data") or {}).get("token")
    if not raw:
        return ""
    try:
        return base64.b64decode(raw).decode()
    except ValueError:
        return ""
