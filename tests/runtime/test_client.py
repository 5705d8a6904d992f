"""Connections and the typed client against the fake API server: TLS, timeouts, typed
errors, discovery of kinds added later, metrics without secrets, clean close."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
import trustme

from federationd.actuators.client import (
    ApiConflict,
    ApiForbidden,
    ApiInvalid,
    ApiNotFound,
    ApiThrottled,
    ApiUnavailable,
    KubeClient,
)
from federationd.clusters import (
    ClusterClient,
    ClusterState,
    HealthSnapshot,
    KubeconfigRejected,
    connect,
)
from federationd.metrics import Metrics
from tests.runtime.conftest import wait_for
from tests.runtime.fakeapi import FakeApi, Fault


def cm(name: str, **data: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "istio-system"}, "data": data}


async def test_apply_get_list_delete(client: ClusterClient, api: FakeApi) -> None:
    kc = KubeClient(client)
    out = await kc.apply(cm("istio", mesh="a"))
    assert out["data"] == {"mesh": "a"}
    assert out["metadata"]["managedFields"][0]["manager"] == "federationd"
    got = await kc.get("v1", "ConfigMap", "istio-system", "istio")
    assert got["metadata"]["resourceVersion"] == out["metadata"]["resourceVersion"]
    for i in range(5):
        await kc.apply(cm(f"c{i}"))
    listed = await kc.list("v1", "ConfigMap", "istio-system", page_size=2)
    assert len(listed.items) == 6 and listed.resource_version == str(api.rv)
    assert all(i["kind"] == "ConfigMap" for i in listed.items)
    assert api.requests["list"] == 3  # paged
    await kc.delete("v1", "ConfigMap", "istio-system", "istio", propagation="Foreground")
    assert api.last_delete_options["propagationPolicy"] == "Foreground"
    with pytest.raises(ApiNotFound):
        await kc.get("v1", "ConfigMap", "istio-system", "istio")


async def test_typed_errors(client: ClusterClient, api: FakeApi) -> None:
    kc = KubeClient(client)
    created = await kc.create(cm("x"))
    with pytest.raises(ApiConflict):
        await kc.create(cm("x"))
    stale = dict(created, metadata=dict(created["metadata"], resourceVersion="1"))
    await kc.apply(cm("x", k="v"))
    with pytest.raises(ApiConflict):
        await kc.update(stale)
    with pytest.raises(ApiInvalid) as invalid:
        await kc.apply(cm("invalid"))
    assert invalid.value.causes == [{"field": "spec.x", "message": "Invalid value"}]
    api.faults.append(Fault(429, 1, retry_after=7))
    with pytest.raises(ApiThrottled) as throttled:
        await kc.get("v1", "ConfigMap", "istio-system", "x")
    assert throttled.value.retry_after == 7
    api.faults.append(Fault(503, 1))
    with pytest.raises(ApiUnavailable):
        await kc.get("v1", "ConfigMap", "istio-system", "x")
    api.faults.append(Fault(403, 1))
    with pytest.raises(ApiForbidden):
        await kc.get("v1", "ConfigMap", "istio-system", "x")


async def test_status_and_events(client: ClusterClient, api: FakeApi) -> None:
    kc = KubeClient(client, clock=lambda: 0.0)
    svc = await kc.apply({"apiVersion": "v1", "kind": "Service",
                          "metadata": {"name": "gw", "namespace": "istio-system"}})
    out = await kc.patch_status("v1", "Service", "istio-system", "gw",
                                {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})
    assert out["status"]["loadBalancer"]["ingress"][0]["ip"] == "1.2.3.4"
    ev = await kc.create_event(svc, reason="Applied", message="gateway ready")
    assert ev["involvedObject"]["name"] == "gw" and ev["involvedObject"]["uid"]
    assert ev["metadata"]["namespace"] == "istio-system"
    assert ev["firstTimestamp"] == "1970-01-01T00:00:00Z"


async def test_kind_added_later_becomes_usable(client: ClusterClient, api: FakeApi) -> None:
    kc = KubeClient(client)
    widget = {"apiVersion": "example.com/v1", "kind": "Widget",
              "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 1}}
    with pytest.raises(ApiNotFound):
        await kc.apply(widget)
    api.resources["example.com/v1"] = [{"name": "widgets", "kind": "Widget", "namespaced": True}]
    assert (await kc.apply(widget))["spec"] == {"size": 1}
    # The type disappears and comes back under another plural: the 404 for the type
    # drops the cached discovery and the retry finds the new path.
    api.resources["example.com/v1"] = [{"name": "gadgets", "kind": "Widget", "namespaced": True}]
    assert (await kc.apply(widget))["metadata"]["name"] == "w"
    # A missing *object* does not cost a rediscovery.
    before = api.requests["discovery"]
    with pytest.raises(ApiNotFound):
        await kc.get("example.com/v1", "Widget", "default", "nope")
    assert api.requests["discovery"] == before


async def test_metrics_count_requests_by_cluster_name_and_never_hold_the_token(
        client: ClusterClient, api: FakeApi, metrics: Metrics) -> None:
    kc = KubeClient(client)
    await kc.apply(cm("a"))
    with pytest.raises(ApiNotFound):
        await kc.get("v1", "ConfigMap", "istio-system", "zzz")
    text = metrics.exposition().decode()
    assert 'rest_client_requests_total{code="200",host="fake",method="PATCH"} 1.0' in text
    assert 'rest_client_requests_total{code="404",host="fake",method="GET"} 1.0' in text
    assert api.token not in text
    assert client.health.state is ClusterState.CONNECTED


async def test_wrong_token_marks_cluster_unauthorized(api: FakeApi, metrics: Metrics) -> None:
    c = await connect(api.kubeconfig(token="wrong"), name="bad", metrics=metrics)
    try:
        with pytest.raises(ApiForbidden) as info:
            await KubeClient(c).get("v1", "ConfigMap", "ns", "x")
        assert "wrong" not in str(info.value)
        assert c.health.state is ClusterState.UNAUTHORIZED
    finally:
        await c.close()


async def test_untrusted_ca_fails_verification(api: FakeApi, metrics: Metrics) -> None:
    other = trustme.CA()
    kc = api.kubeconfig()
    kc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
        other.cert_pem.bytes()).decode()
    c = await connect(kc, name="mitm", metrics=metrics)
    seen: list[HealthSnapshot] = []
    c.health.subscribe(seen.append)
    try:
        with pytest.raises(ApiUnavailable, match="TLS certificate verification failed"):
            await c.request("GET", "/api/v1")
        assert c.health.state is ClusterState.UNREACHABLE
        assert seen[-1].reason == "TLS certificate verification failed"
        assert 'federationd_cluster_state{cluster="mitm",state="unreachable"} 1.0' in (
            metrics.exposition().decode())
    finally:
        await c.close()


async def test_refused_connection_and_timeouts(api: FakeApi, metrics: Metrics) -> None:
    kc = api.kubeconfig()
    kc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    c = await connect(kc, name="gone", metrics=metrics, request_timeout=2.0)
    try:
        with pytest.raises(ApiUnavailable, match="connection refused"):
            await c.request("GET", "/api/v1")
    finally:
        await c.close()
    api.hang_watches = True
    c = await connect(api.kubeconfig(), name="slow", metrics=metrics, request_timeout=0.3)
    try:
        with pytest.raises(ApiUnavailable, match="timed out"):
            await c.request("GET", "/api/v1/configmaps", query={"watch": True})
    finally:
        await c.close()


async def test_kubernetes_asyncio_api_client_shares_the_connection(
        client: ClusterClient, api: FakeApi, metrics: Metrics) -> None:
    from kubernetes_asyncio.client import CoreV1Api

    api.put("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}})
    result = await CoreV1Api(client.api).list_namespace()
    assert [n.metadata.name for n in result.items] == ["ns1"]
    assert 'rest_client_requests_total{code="200",host="fake",method="GET"}' in (
        metrics.exposition().decode())


async def test_close_releases_the_session(api: FakeApi, metrics: Metrics) -> None:
    c = await connect(api.kubeconfig(), name="x", metrics=metrics)
    await c.request("GET", "/api/v1")
    connector = c.session.connector
    await c.close()
    assert c.session.closed and connector is not None and connector.closed
    with pytest.raises(ApiUnavailable, match="closed"):
        await c.request("GET", "/api/v1")
    await asyncio.sleep(0)


async def test_client_certificate_is_loaded_without_leaving_files(api: FakeApi, metrics: Metrics) -> None:
    import os
    import tempfile

    leaf = api.ca.issue_cert("federationd@example")
    kc = api.kubeconfig()
    kc["users"][0]["user"] = {
        "client-certificate-data": base64.b64encode(leaf.cert_chain_pems[0].bytes()).decode(),
        "client-key-data": base64.b64encode(leaf.private_key_pem.bytes()).decode(),
        "token": api.token,
    }
    before = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("federationd-")}
    c = await connect(kc, name="cert", metrics=metrics)
    try:
        after = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("federationd-")}
        assert after == before
        assert await c.request("GET", "/api/v1") is not None
    finally:
        await c.close()


async def test_allowed_exec_plugin_and_token_file(api: FakeApi, metrics: Metrics, tmp_path: Path) -> None:
    import json
    import stat

    plugin = tmp_path / "get-token"
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": api.token}}
    plugin.write_text(f"#!/bin/sh\necho '{json.dumps(credential)}'\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    kc = api.kubeconfig()
    kc["users"][0]["user"] = {"exec": {"command": str(plugin),
                                       "apiVersion": "client.authentication.k8s.io/v1"}}
    with pytest.raises(KubeconfigRejected, match="exec"):
        await connect(kc, name="exec", metrics=metrics)
    c = await connect(kc, name="exec", metrics=metrics, allow_exec=True)
    try:
        assert await c.request("GET", "/api/v1") is not None
    finally:
        await c.close()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(api.ca.cert_pem.bytes())
    kc["clusters"][0]["cluster"] = {"server": api.url, "certificate-authority": str(ca_file)}
    token_file = tmp_path / "token"
    token_file.write_text(api.token + "\n")
    kc["users"][0]["user"] = {"tokenFile": str(token_file)}
    c = await connect(kc, name="file", metrics=metrics, allow_files=True)
    try:
        assert await c.request("GET", "/api/v1") is not None
    finally:
        await c.close()


async def test_connect_close_cycles_leave_no_connections_behind(api: FakeApi, metrics: Metrics) -> None:
    import gc
    import os

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def cycle(i: int) -> None:
        c = await connect(api.kubeconfig(), name=f"r{i % 3}", metrics=metrics)
        kc = KubeClient(c)
        await kc.apply(cm(f"c{i % 5}"))
        await c.close()

    await cycle(0)  # warm-up: lazily created resources of the server side
    gc.collect()
    baseline = fds()
    for i in range(100):
        await cycle(i)
    gc.collect()
    await wait_for(lambda: fds() <= baseline + 2, what=f"fds back to {baseline}")


@pytest.mark.parametrize(("status", "cls"), [
    (400, "ApiBadRequest"), (401, "ApiForbidden"), (403, "ApiForbidden"), (404, "ApiNotFound"),
    (409, "ApiConflict"), (410, "ApiGone"), (422, "ApiInvalid"), (429, "ApiThrottled"),
    (500, "ApiUnavailable"), (503, "ApiUnavailable"), (418, "ApiError"),
])
def test_status_codes_map_to_typed_errors(status: int, cls: str) -> None:
    from federationd.clusters.errors import error_for_status, parse_retry_after

    err = error_for_status(status, b'{"kind":"Status","reason":"R","message":"m"}',
                           retry_after=parse_retry_after("2"), what="get x")
    assert type(err).__name__ == cls and err.status == status
    assert str(err) == f"get x: HTTP {status} R: m"
    assert parse_retry_after("soon") is None and parse_retry_after("-3") == 0.0


async def test_writes_wait_for_before_write_and_reads_do_not(client: ClusterClient, api: FakeApi) -> None:
    """The daemon holds writes there while its event log cannot record them."""
    gate = asyncio.Event()

    async def before_write() -> None:
        await gate.wait()

    kc = KubeClient(client, before_write=before_write)
    await KubeClient(client).apply(cm("istio", mesh="a"))
    writes = sum(n for verb, n in api.requests.items() if verb not in ("get", "list", "watch"))
    assert (await kc.get("v1", "ConfigMap", "istio-system", "istio"))["data"] == {"mesh": "a"}
    held = [
        asyncio.create_task(kc.apply(cm("istio", mesh="b"))),
        asyncio.create_task(kc.delete("v1", "ConfigMap", "istio-system", "istio")),
        asyncio.create_task(kc.patch_status("v1", "ConfigMap", "istio-system", "istio", {}, apply=True)),
    ]
    for _ in range(20):
        await asyncio.sleep(0)
    assert not any(t.done() for t in held)
    assert sum(n for verb, n in api.requests.items() if verb not in ("get", "list", "watch")) == writes
    for t in held:
        t.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    gate.set()
    assert (await kc.apply(cm("istio", mesh="c")))["data"] == {"mesh": "c"}


def test_the_daemon_does_not_import_the_generated_kubernetes_client() -> None:
    """``kubernetes_asyncio.client`` imports every generated API and model class (~65 MB
    resident); the daemon speaks JSON and loads it only if ``ClusterClient.api`` is used."""
    import subprocess
    import sys

    probe = "import sys, federationd.cli, federationd.daemon; print(sorted(m for m in sys.modules if m.startswith('kubernetes_asyncio')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout
