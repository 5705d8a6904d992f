"""RBAC in the emulator, judged by real clients: kubectl v1.32 and kubernetes_asyncio.

Identities are ServiceAccounts with bound tokens (``kubectl create token``) or legacy
token Secrets; the fleet's own kubeconfig is cluster-admin. Every 403 is compared with the
real server's wording (``responsewriters.Forbidden``, ``ConfirmNoEscalation``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio import client, config

from federationd.sim import Cluster, Fleet
from tests.sim.conftest import Raw, unique, wait_for

KUBECTL = "/usr/bin/kubectl"

pytestmark = pytest.mark.asyncio(loop_scope="module")
needs_kubectl = pytest.mark.skipif(shutil.which(KUBECTL) is None, reason=f"{KUBECTL} is not installed on this machine")


class Kc:
    """kubectl with one kubeconfig (HOME private to the module: its own discovery cache)."""

    def __init__(self, home: Path) -> None:
        self.env = {**os.environ, "HOME": str(home), "KUBECONFIG": ""}

    async def __call__(self, kubeconfig: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(kubeconfig), *args, env=self.env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        return proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kc(tmp_path_factory: pytest.TempPathFactory) -> Kc:
    return Kc(tmp_path_factory.mktemp("kubectl-home"))


def _sa(master: Cluster, tmp: Path, ns: str, name: str) -> Path:
    path = tmp / f"{ns}-{name}.kubeconfig"
    path.write_text(yaml.safe_dump(master.identity_kubeconfig(ns, name)))
    return path


def _bind(master: Cluster, ns: str, name: str, *, role: str, sa: str, kind: str = "ClusterRole") -> None:
    master.store.create({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
    })


# --- authentication ------------------------------------------------------------------------------


async def test_requests_without_credentials_are_anonymous(raw: Raw) -> None:
    async with raw.session.get(raw.cluster.url + "/version") as r:
        assert r.status == 200  # system:public-info-viewer
    async with raw.session.get(raw.cluster.url + "/api/v1/namespaces") as r:
        body = await r.json()
    assert r.status == 403
    assert body["message"] == 'namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" in API group "" at the cluster scope'
    async with raw.session.get(raw.cluster.url + "/apis") as r:
        body = await r.json()
    assert r.status == 403 and body["message"] == 'forbidden: User "system:anonymous" cannot get path "/apis"'


@needs_kubectl
async def test_kubectl_create_token_and_whoami(master: Cluster, kc: Kc, tmp_path: Path) -> None:
    ns = unique("tok")
    admin = master.kubeconfig_path
    assert (await kc(admin, "create", "namespace", ns))[0] == 0
    assert (await kc(admin, "create", "serviceaccount", "bot", "-n", ns))[0] == 0
    rc, token, err = await kc(admin, "create", "token", "bot", "-n", ns, "--duration", "1h")
    assert rc == 0, err
    _, claims, _ = token.strip().split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert payload["sub"] == f"system:serviceaccount:{ns}:bot" and payload["exp"] - payload["iat"] == 3600
    kcfg = yaml.safe_load(admin.read_text())
    kcfg["users"][0]["user"]["token"] = token.strip()
    path = tmp_path / "bot.kubeconfig"
    path.write_text(yaml.safe_dump(kcfg))
    rc, out, err = await kc(path, "auth", "whoami", "-o", "json")
    assert rc == 0, err
    info = json.loads(out)["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{ns}:bot"
    assert info["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
    rc, _, err = await kc(admin, "create", "token", "bot", "-n", ns, "--duration", "10s")
    assert rc != 0 and 'TokenRequest.authentication.k8s.io "bot" is invalid: spec.expirationSeconds: Invalid value: 10: may not specify a duration less than 10 minutes' in err
    # a token for another audience is not one for this API server; a deleted account's token is dead
    rc, other, _ = await kc(admin, "create", "token", "bot", "-n", ns, "--audience", "vault")
    assert (await kc(admin, "delete", "serviceaccount", "bot", "-n", ns))[0] == 0
    for t in (other.strip(), token.strip()):
        kcfg["users"][0]["user"]["token"] = t
        path.write_text(yaml.safe_dump(kcfg))
        rc, _, err = await kc(path, "get", "pods")
        assert rc != 0 and "Unauthorized" in err, err


async def test_legacy_token_secrets_are_populated_and_authenticate(master: Cluster, raw: Raw) -> None:
    ns = unique("legacy")
    master.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    master.store.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "old", "namespace": ns}})
    master.store.create({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                         "metadata": {"name": "old-token", "namespace": ns,
                                      "annotations": {"kubernetes.io/service-account.name": "old"}}})
    s = master.store.get("v1", "Secret", "old-token", ns) or {}
    assert set(s.get("data") or {}) == {"ca.crt", "namespace", "token"}
    assert base64.b64decode(s["data"]["ca.crt"]) == master.ca_pem
    token = base64.b64decode(s["data"]["token"]).decode()
    code, body, _ = await raw.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                                      body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
    assert code == 201 and body["status"]["authenticated"] is True
    assert body["status"]["user"]["username"] == f"system:serviceaccount:{ns}:old"
    code, body, _ = await raw.request("GET", f"/api/v1/namespaces/{ns}/pods", token=token)
    assert code == 403 and body["message"] == f'pods is forbidden: User "system:serviceaccount:{ns}:old" cannot list resource "pods" in API group "" in the namespace "{ns}"'
    # deleting the Secret revokes the token
    master.store.remove("v1", "Secret", "old-token", ns)
    code, _, _ = await raw.request("GET", f"/api/v1/namespaces/{ns}/pods", token=token)
    assert code == 401


# --- authorization with kubectl -------------------------------------------------------------------


@needs_kubectl
async def test_auth_can_i_follows_bindings_and_forbidden_messages_are_upstreams(master: Cluster, kc: Kc, tmp_path: Path) -> None:
    ns = unique("cani")
    bot = _sa(master, tmp_path, ns, "bot")
    assert (await kc(bot, "auth", "can-i", "list", "pods", "-n", ns))[:2] == (1, "no\n")
    rc, _, err = await kc(bot, "get", "deployments", "-n", ns)
    assert rc == 1
    assert err.strip() == f'Error from server (Forbidden): deployments.apps is forbidden: User "system:serviceaccount:{ns}:bot" cannot list resource "deployments" in API group "apps" in the namespace "{ns}"'
    rc, _, err = await kc(bot, "get", "deployment", "web", "-n", ns)
    assert f'deployments.apps "web" is forbidden: User "system:serviceaccount:{ns}:bot" cannot get resource "deployments" in API group "apps" in the namespace "{ns}"' in err
    rc, _, err = await kc(bot, "get", "nodes")
    assert 'cannot list resource "nodes" in API group "" at the cluster scope' in err

    _bind(master, ns, "bot-view", role="view", sa="bot")
    assert (await kc(bot, "auth", "can-i", "list", "pods", "-n", ns))[:2] == (0, "yes\n")
    assert (await kc(bot, "auth", "can-i", "watch", "deployments.apps", "-n", ns))[:2] == (0, "yes\n")
    assert (await kc(bot, "auth", "can-i", "get", "secrets", "-n", ns))[:2] == (1, "no\n")
    assert (await kc(bot, "auth", "can-i", "update", "deployments", "--subresource", "scale", "-n", ns))[:2] == (1, "no\n")
    assert (await kc(bot, "auth", "can-i", "get", "deployments", "--subresource", "scale", "-n", ns))[:2] == (0, "yes\n")
    assert (await kc(bot, "auth", "can-i", "list", "pods", "-n", "default"))[:2] == (1, "no\n")
    assert (await kc(bot, "auth", "can-i", "get", "/version"))[:2] == (0, "yes\n")
    assert (await kc(bot, "auth", "can-i", "get", "/metrics"))[:2] == (1, "no\n")
    rc, out, err = await kc(bot, "get", "pods", "-n", ns)
    assert rc == 0, err

    rc, out, err = await kc(bot, "auth", "can-i", "--list", "-n", ns)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    rows = {ln.split()[0]: ln[ln.rindex("["):] for ln in lines[1:] if not ln.startswith(" ")}
    assert rows["pods"] == "[get list watch]" and rows["deployments.apps"] == "[get list watch]"
    assert rows["selfsubjectaccessreviews.authorization.k8s.io"] == "[create]"
    assert "secrets" not in rows
    assert ["[/version]", "[]", "[get]"] in [ln.split() for ln in lines]


@needs_kubectl
async def test_subresources_and_named_watches_are_authorized_as_upstream(master: Cluster, kc: Kc, tmp_path: Path, raw: Raw) -> None:
    ns = unique("sub")
    bot = _sa(master, tmp_path, ns, "bot")
    master.store.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                         "metadata": {"name": "status-writer", "namespace": ns},
                         "rules": [{"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["get", "patch"]},
                                   {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"], "resourceNames": ["one"]}]})
    _bind(master, ns, "bot", role="status-writer", sa="bot", kind="Role")
    assert (await kc(bot, "auth", "can-i", "patch", "deployments", "--subresource", "status", "-n", ns))[0] == 0
    assert (await kc(bot, "auth", "can-i", "patch", "deployments", "-n", ns))[0] == 1
    token = yaml.safe_load(bot.read_text())["users"][0]["user"]["token"]
    # a list or watch of one object by name is authorized as that name (resourceNames)
    code, _, _ = await raw.request("GET", f"/api/v1/namespaces/{ns}/configmaps", token=token,
                                   params={"fieldSelector": "metadata.name=one"})
    assert code == 200
    code, body, _ = await raw.request("GET", f"/api/v1/namespaces/{ns}/configmaps", token=token)
    assert code == 403 and body["details"] == {"kind": "configmaps"}  # Go omits the empty group


@needs_kubectl
async def test_impersonation_needs_the_impersonate_verb(master: Cluster, kc: Kc, tmp_path: Path) -> None:
    ns = unique("imp")
    bot = _sa(master, tmp_path, ns, "bot")
    _sa(master, tmp_path, ns, "target")
    _bind(master, ns, "target-edit", role="edit", sa="target")
    target = f"system:serviceaccount:{ns}:target"
    rc, _, err = await kc(bot, "get", "pods", "-n", ns, "--as", target)
    assert rc == 1
    assert err.strip() == f'Error from server (Forbidden): serviceaccounts "target" is forbidden: User "system:serviceaccount:{ns}:bot" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "{ns}"'
    rc, _, err = await kc(bot, "get", "pods", "-n", ns, "--as", "alice", "--as-group", "devs")
    assert 'users "alice" is forbidden: User' in err and 'cannot impersonate resource "users" in API group "" at the cluster scope' in err
    # edit includes impersonating the namespace's ServiceAccounts
    _bind(master, ns, "bot-edit", role="edit", sa="bot")
    assert (await kc(bot, "auth", "can-i", "create", "deployments", "-n", ns, "--as", target))[:2] == (0, "yes\n")
    assert (await kc(bot, "auth", "can-i", "get", "nodes", "--as", target))[:2] == (1, "no\n")
    # the cluster admin impersonates anyone; what the impersonated user may do decides
    admin = master.kubeconfig_path
    assert (await kc(admin, "auth", "can-i", "list", "secrets", "-n", ns, "--as", target))[:2] == (0, "yes\n")
    assert (await kc(admin, "auth", "can-i", "list", "secrets", "-n", "default", "--as", target))[:2] == (1, "no\n")
    assert (await kc(admin, "auth", "can-i", "delete", "nodes", "--as", "nobody", "--as-group", "system:masters"))[:2] == (0, "yes\n")


# --- aggregation and escalation ----------------------------------------------------------------------


@needs_kubectl
async def test_aggregated_cluster_roles_follow_their_sources(master: Cluster, kc: Kc) -> None:
    admin = master.kubeconfig_path
    name = unique("agg")
    label = f"example.com/aggregate-to-{name}"
    agg = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
           "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}, "rules": []}
    src = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": f"{name}-src", "labels": {label: "true", "rbac.authorization.k8s.io/aggregate-to-view": "true"}},
           "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}]}
    assert (await kc(admin, "apply", "-f", "-", stdin=yaml.safe_dump_all([agg, src])))[0] == 0
    _, out, _ = await kc(admin, "get", "clusterrole", name, "-o", "json")
    assert json.loads(out)["rules"] == src["rules"]
    # the default view (and through edit, admin) aggregate it too
    for role in ("view", "edit", "admin"):
        rules = (master.store.get("rbac.authorization.k8s.io/v1", "ClusterRole", role) or {})["rules"]
        assert src["rules"][0] in rules, role
    view = (master.store.get("rbac.authorization.k8s.io/v1", "ClusterRole", "view") or {})["rules"]
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]} not in view
    assert (await kc(admin, "delete", "clusterrole", f"{name}-src"))[0] == 0
    await wait_for(lambda: (master.store.get("rbac.authorization.k8s.io/v1", "ClusterRole", name) or {}).get("rules") == [],
                   what="aggregated rules removed")


@needs_kubectl
async def test_roles_and_bindings_cannot_escalate(master: Cluster, kc: Kc, tmp_path: Path) -> None:
    ns = unique("esc")
    bot = _sa(master, tmp_path, ns, "bot")
    master.store.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                         "metadata": {"name": "rbac-writer", "namespace": ns},
                         "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "get", "patch"]},
                                   {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]})
    _bind(master, ns, "bot", role="rbac-writer", sa="bot", kind="Role")
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "more", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
                      {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}
    rc, _, err = await kc(bot, "create", "-f", "-", stdin=json.dumps(role))
    assert rc == 1
    assert err.strip() == (
        f'Error from server (Forbidden): error when creating "STDIN": roles.rbac.authorization.k8s.io "more" is forbidden: '
        f'user "system:serviceaccount:{ns}:bot" (groups=["system:serviceaccounts" "system:serviceaccounts:{ns}" "system:authenticated"]) '
        'is attempting to grant RBAC permissions not currently held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}'
    )
    # what it holds it may grant
    role["rules"] = role["rules"][1:]
    assert (await kc(bot, "create", "-f", "-", stdin=json.dumps(role)))[0] == 0
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
               "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": ns}]}
    rc, _, err = await kc(bot, "create", "-f", "-", stdin=json.dumps(binding))
    assert rc == 1 and 'rolebindings.rbac.authorization.k8s.io "b" is forbidden: user' in err and "not currently held" in err
    # the bind verb on the role is what lets it hand out more than it holds
    master.store.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                         "metadata": {"name": "binder", "namespace": ns},
                         "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["edit"]}]})
    _bind(master, ns, "bot-binder", role="binder", sa="bot", kind="Role")
    rc, _, err = await kc(bot, "create", "-f", "-", stdin=json.dumps(binding))
    assert rc == 0, err
    assert (await kc(bot, "auth", "can-i", "create", "deployments", "-n", ns))[:2] == (0, "yes\n")


# --- the review resources with kubernetes_asyncio --------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot_api(master: Cluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, client.ApiClient]]:
    ns = unique("ka")
    path = _sa(master, tmp_path_factory.mktemp("ka"), ns, "bot")
    _bind(master, ns, "bot-edit", role="edit", sa="bot")
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=cfg)
    async with client.ApiClient(cfg) as a:
        yield ns, a


async def test_reviews_with_kubernetes_asyncio(bot_api: tuple[str, client.ApiClient], api: client.ApiClient) -> None:
    ns, a = bot_api
    authz = client.AuthorizationV1Api(a)
    r = await authz.create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"namespace": ns, "verb": "create", "group": "apps", "resource": "deployments"}}})
    assert r.status.allowed is True
    assert r.status.reason == f'RBAC: allowed by RoleBinding "bot-edit/{ns}" of ClusterRole "edit" to ServiceAccount "bot/{ns}"'
    rr = await authz.create_self_subject_rules_review({"spec": {"namespace": ns}})
    assert any("deployments" in (x.resources or []) and "create" in x.verbs for x in rr.status.resource_rules)
    assert rr.status.incomplete is False
    with pytest.raises(client.ApiException) as e:
        await client.CoreV1Api(a).list_namespaced_secret("default")
    assert e.value.status == 403
    assert json.loads(e.value.body)["message"] == f'secrets is forbidden: User "system:serviceaccount:{ns}:bot" cannot list resource "secrets" in API group "" in the namespace "default"'
    # SubjectAccessReview and TokenReview need system:auth-delegator: the admin has it
    with pytest.raises(client.ApiException) as e:
        await authz.create_subject_access_review({"spec": {"user": "x", "resourceAttributes": {"verb": "get", "resource": "pods"}}})
    assert e.value.status == 403
    sar = await client.AuthorizationV1Api(api).create_subject_access_review(
        {"spec": {"user": f"system:serviceaccount:{ns}:bot", "groups": ["system:serviceaccounts"],
                  "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": ns}}})
    assert sar.status.allowed is True


async def test_discovery_serves_the_auth_groups(api: client.ApiClient) -> None:
    groups = {g.name: g for g in (await client.ApisApi(api).get_api_versions()).groups}
    assert {"authentication.k8s.io", "authorization.k8s.io"} <= groups.keys()
    res = await client.AuthorizationV1Api(api).get_api_resources()
    names = {r.name: r for r in res.resources}
    assert names["selfsubjectrulesreviews"].verbs == ["create"]
    assert {"subjectaccessreviews", "localsubjectaccessreviews", "selfsubjectaccessreviews"} <= names.keys()
    core = {r.name: r for r in (await client.CoreV1Api(api).get_api_resources()).resources}
    assert core["serviceaccounts/token"].kind == "TokenRequest"


async def test_fleet_kubeconfigs_are_cluster_admin(fleet: Fleet) -> None:
    for c in fleet:
        assert c.server.auth.user_for(c.token) is not None
        user = c.server.auth.user_for(c.token)
        assert user is not None and "system:masters" in user.groups


