"""The emulator's HTTP surface: TLS, auth, discovery, CRUD verbs and Status errors."""

from __future__ import annotations

import json
import ssl

import aiohttp
import pytest
from kubernetes_asyncio import client

from federationd.sim import Cluster, Fleet
from tests.sim.conftest import Raw, unique

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_kubeconfigs_point_at_tls_servers_with_a_context_per_cluster(fleet: Fleet) -> None:
    import yaml

    merged = yaml.safe_load(fleet.merged_kubeconfig_path.read_text())
    assert [c["name"] for c in merged["contexts"]] == ["master", "remote-eu", "remote-us"]
    for c in fleet:
        kc = yaml.safe_load(c.kubeconfig_path.read_text())
        assert kc == c.kubeconfig
        assert kc["current-context"] == c.name
        assert kc["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
        assert "certificate-authority-data" in kc["clusters"][0]["cluster"]
        assert oct(c.kubeconfig_path.stat().st_mode & 0o777) == "0o600"
    assert len({c.url for c in fleet}) == 3


async def test_tls_is_verified_against_the_fleet_ca(master: Cluster) -> None:
    # a client that trusts only the system CAs must refuse the emulator's certificate
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl.create_default_context())) as s:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await s.get(master.url + "/version")


async def test_requests_without_a_token_get_401_status(raw: Raw) -> None:
    code, body, _ = await raw.request("GET", "/api/v1/namespaces", token="wrong")
    assert code == 401
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


async def test_a_read_only_token_may_read_but_not_write(raw: Raw, master: Cluster) -> None:
    code, _, _ = await raw.request("GET", "/api/v1/namespaces/default/configmaps", token=master.viewer_token)
    assert code == 200
    code, body, _ = await raw.request(
        "POST", "/api/v1/namespaces/default/configmaps", token=master.viewer_token,
        body={"metadata": {"name": "x"}},
    )
    assert code == 403 and body["reason"] == "Forbidden"
    assert "cannot create resource \"configmaps\"" in body["message"]


async def test_version_and_legacy_discovery(raw: Raw) -> None:
    code, v, _ = await raw.request("GET", "/version")
    assert code == 200 and v["major"] == "1" and v["gitVersion"].startswith("v1.32")
    _, apis, _ = await raw.request("GET", "/api")
    assert apis["kind"] == "APIVersions" and apis["versions"] == ["v1"]
    _, v1, _ = await raw.request("GET", "/api/v1")
    names = {r["name"]: r for r in v1["resources"]}
    assert names["namespaces"]["namespaced"] is False
    assert names["configmaps"]["shortNames"] == ["cm"]
    assert "services/status" in names
    _, groups, _ = await raw.request("GET", "/apis")
    gnames = {g["name"]: g for g in groups["groups"]}
    for g in ("apps", "rbac.authorization.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io",
              "coordination.k8s.io", "policy", "autoscaling", "events.k8s.io"):
        assert g in gnames
    assert gnames["autoscaling"]["preferredVersion"]["version"] == "v2"
    _, apps, _ = await raw.request("GET", "/apis/apps/v1")
    scopes = {r["name"]: r["namespaced"] for r in apps["resources"]}
    assert scopes["deployments"] is True and "deployments/status" in scopes
    code, _, _ = await raw.request("GET", "/apis/nope.example.com/v1")
    assert code == 404


async def test_aggregated_discovery_when_asked_for(raw: Raw) -> None:
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
    code, doc, resp = await raw.request("GET", "/apis", headers={"Accept": accept})
    assert code == 200
    assert resp.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    assert doc["kind"] == "APIGroupDiscoveryList"
    apps = next(i for i in doc["items"] if i["metadata"].get("name") == "apps")
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["scope"] == "Namespaced" and deploy["subresources"][0]["subresource"] == "status"
    _, core, _ = await raw.request("GET", "/api", headers={"Accept": accept})
    assert core["items"][0]["versions"][0]["version"] == "v1"


async def test_crud_round_trip_with_metadata(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    name = unique("cm")
    rev0 = master.store.revision
    cm = await v1.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"a": "1"}})
    assert cm.metadata.uid and cm.metadata.creation_timestamp
    assert int(cm.metadata.resource_version) == rev0 + 1
    got = await v1.read_namespaced_config_map(name, "default")
    assert got.data == {"a": "1"} and got.metadata.uid == cm.metadata.uid
    got.data["b"] = "2"
    upd = await v1.replace_namespaced_config_map(name, "default", got)
    assert int(upd.metadata.resource_version) > int(cm.metadata.resource_version)
    # the stale version loses
    cm.data = {"c": "3"}
    with pytest.raises(client.ApiException) as e:
        await v1.replace_namespaced_config_map(name, "default", cm)
    assert e.value.status == 409
    body = json.loads(e.value.body)
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    with pytest.raises(client.ApiException) as e:
        await v1.create_namespaced_config_map("default", {"metadata": {"name": name}})
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"
    await v1.delete_namespaced_config_map(name, "default")
    with pytest.raises(client.ApiException) as e:
        await v1.read_namespaced_config_map(name, "default")
    body = json.loads(e.value.body)
    assert e.value.status == 404
    assert body["message"] == f'configmaps "{name}" not found'
    assert body["details"] == {"name": name, "kind": "configmaps"}


async def test_every_write_bumps_one_cluster_wide_revision(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    a = await v1.create_namespaced_config_map("default", {"metadata": {"name": unique()}})
    b = await v1.create_namespaced_secret("kube-system", {"metadata": {"name": unique()}})
    assert int(b.metadata.resource_version) == int(a.metadata.resource_version) + 1


async def test_a_noop_update_does_not_write(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    cm = await v1.create_namespaced_config_map("default", {"metadata": {"name": unique()}, "data": {"a": "1"}})
    same = await v1.replace_namespaced_config_map(cm.metadata.name, "default", cm)
    assert same.metadata.resource_version == cm.metadata.resource_version


async def test_namespaced_object_needs_its_namespace(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    with pytest.raises(client.ApiException) as e:
        await v1.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})
    assert e.value.status == 404
    assert json.loads(e.value.body)["message"] == 'namespaces "nowhere" not found'


async def test_all_listed_kinds_are_served_with_their_scope(api: client.ApiClient, raw: Raw) -> None:
    ns = "default"
    rbac = client.RbacAuthorizationV1Api(api)
    await rbac.create_cluster_role({"metadata": {"name": unique("cr")}, "rules": []})
    await rbac.create_namespaced_role(ns, {"metadata": {"name": unique("r")}, "rules": []})
    coord = client.CoordinationV1Api(api)
    lease = await coord.create_namespaced_lease(ns, {"metadata": {"name": unique("l")}, "spec": {"holderIdentity": "me"}})
    assert lease.spec.holder_identity == "me"
    pol = client.PolicyV1Api(api)
    await pol.create_namespaced_pod_disruption_budget(ns, {"metadata": {"name": unique("pdb")}, "spec": {"minAvailable": 1}})
    hpa = client.AutoscalingV2Api(api)
    await hpa.create_namespaced_horizontal_pod_autoscaler(ns, {
        "metadata": {"name": unique("hpa")},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x", "apiVersion": "apps/v1"}, "maxReplicas": 2}})
    adm = client.AdmissionregistrationV1Api(api)
    await adm.create_mutating_webhook_configuration({"metadata": {"name": unique("mw")}})
    await adm.create_validating_webhook_configuration({"metadata": {"name": unique("vw")}})
    ev = client.EventsV1Api(api)
    await ev.create_namespaced_event(ns, {"metadata": {"name": unique("ev")}, "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "x", "reportingInstance": "y", "action": "A", "reason": "R", "type": "Normal"})
    core = client.CoreV1Api(api)
    await core.create_namespaced_service_account(ns, {"metadata": {"name": unique("sa")}})
    await core.create_namespaced_endpoints(ns, {"metadata": {"name": unique("ep")}})
    # a cluster-scoped kind has no namespaced path
    code, _, _ = await raw.request("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/clusterroles")
    assert code == 404


async def test_dry_run_validates_but_does_not_store(raw: Raw, master: Cluster) -> None:
    name = unique()
    code, body, _ = await raw.request("POST", "/api/v1/namespaces/default/configmaps", params={"dryRun": "All"},
                                      body={"metadata": {"name": name}, "data": {"a": "b"}})
    assert code == 201 and body["metadata"]["name"] == name and body["metadata"]["uid"]
    assert body["metadata"]["resourceVersion"] == ""
    assert master.store.get("v1", "ConfigMap", name, "default") is None
    code, body, _ = await raw.request("POST", "/api/v1/namespaces/default/configmaps", params={"dryRun": "Bogus"},
                                      body={"metadata": {"name": name}})
    assert code == 400


async def test_delete_returns_status_or_object_like_the_real_server(raw: Raw) -> None:
    name = unique()
    await raw.request("POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": name}})
    code, body, _ = await raw.request("DELETE", f"/api/v1/namespaces/default/configmaps/{name}")
    assert code == 200 and body["kind"] == "Status" and body["status"] == "Success"
    assert body["details"]["name"] == name
    # with a finalizer the object stays, marked for deletion: 202 and the object
    await raw.request("POST", "/api/v1/namespaces/default/configmaps",
                      body={"metadata": {"name": name, "finalizers": ["example.com/hold"]}})
    code, body, _ = await raw.request("DELETE", f"/api/v1/namespaces/default/configmaps/{name}")
    assert code == 202 and body["kind"] == "ConfigMap" and body["metadata"]["deletionTimestamp"]


async def test_requests_are_counted_by_verb_and_resource(api: client.ApiClient, master: Cluster) -> None:
    v1 = client.CoreV1Api(api)
    before = master.requests.mutating()
    before_list = master.requests.total("list", "configmaps")
    await v1.list_namespaced_config_map("default")
    await v1.create_namespaced_config_map("default", {"metadata": {"name": unique()}})
    assert master.requests.total("list", "configmaps") == before_list + 1
    assert master.requests.mutating() == before + 1


async def test_wrong_body_identity_is_a_bad_request(raw: Raw) -> None:
    code, body, _ = await raw.request("POST", "/api/v1/namespaces/default/configmaps",
                                      body={"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert code == 400 and "does not match the expected API version" in body["message"]
    code, body, _ = await raw.request("POST", "/api/v1/namespaces/default/configmaps",
                                      body={"metadata": {"name": "x", "namespace": "kube-system"}})
    assert code == 400 and "does not match the namespace" in body["message"]
    code, body, _ = await raw.request("POST", "/api/v1/namespaces/default/configmaps", data=b"{not json")
    assert code == 400 and body["reason"] == "BadRequest"


async def test_dry_run_patch_update_and_delete_change_nothing(raw: Raw, master: Cluster) -> None:
    name = unique()
    path = f"/api/v1/namespaces/default/configmaps/{name}"
    _, created, _ = await raw.request("POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": name}, "data": {"a": "1"}})
    code, body, _ = await raw.request("PATCH", path, body={"data": {"a": "2"}}, content_type="application/merge-patch+json",
                                      params={"dryRun": "All"})
    assert code == 200 and body["data"] == {"a": "2"}
    code, body, _ = await raw.request("PUT", path, body={"metadata": {"name": name}, "data": {"a": "3"}}, params={"dryRun": "All"})
    assert code == 200 and body["data"] == {"a": "3"}
    code, _, _ = await raw.request("DELETE", path, params={"dryRun": "All"})
    assert code == 200
    live = master.store.get("v1", "ConfigMap", name, "default")
    assert live is not None and live["data"] == {"a": "1"}
    assert live["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_both_event_apis_share_one_storage(api: client.ApiClient, master: Cluster) -> None:
    ev = client.EventsV1Api(api)
    core = client.CoreV1Api(api)
    name = unique("ev")
    await ev.create_namespaced_event("default", {
        "metadata": {"name": name}, "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "federationd",
        "reportingInstance": "federationd-0", "action": "Apply", "reason": "Applied", "type": "Normal",
        "note": "applied 3 objects", "regarding": {"kind": "Istio", "name": "mesh", "namespace": "istio-system"}})
    got = await core.read_namespaced_event(name, "default")
    assert got.message == "applied 3 objects" and got.involved_object.kind == "Istio"
    assert got.reporting_component == "federationd"
    listed = await core.list_namespaced_event("default", field_selector="involvedObject.name=mesh")
    assert [e.metadata.name for e in listed.items] == [name]
    # and back: a core event written the old way reads through events.k8s.io
    old = unique("ev")
    await core.create_namespaced_event("default", {
        "metadata": {"name": old}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started",
        "message": "started", "type": "Normal", "source": {"component": "kubelet", "host": "node-0"}, "count": 2,
        # kubernetes_asyncio's events.k8s.io model refuses a null eventTime (as with a real server)
        "eventTime": "2026-01-01T00:00:00.000000Z"})
    back = await ev.read_namespaced_event(old, "default")
    assert back.note == "started" and back.regarding.name == "p" and back.deprecated_count == 2
    assert back.reporting_controller == "kubelet" and back.reporting_instance == "node-0"
    stored = master.store.get("events.k8s.io/v1", "Event", old, "default")
    assert stored is not None and stored["apiVersion"] == "events.k8s.io/v1" and stored["note"] == "started"
