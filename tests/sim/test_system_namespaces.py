"""Every simulated cluster has a kube-system namespace whose UID is the cluster's for its
lifetime, as on a real API server (federationd takes it as the cluster's identity):
distinct per cluster, the same at every read, and — like the NamespaceLifecycle
admission plugin does — the namespace may not be deleted."""

from __future__ import annotations

import pytest

from federationd.sim import Fleet

from .conftest import Raw

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_kube_system_has_a_stable_uid_per_cluster(fleet: Fleet, raw: Raw) -> None:
    status, ns, _ = await raw.request("GET", "/api/v1/namespaces/kube-system")
    assert status == 200 and ns["metadata"]["uid"]
    uid = ns["metadata"]["uid"]
    status, again, _ = await raw.request("GET", "/api/v1/namespaces/kube-system")
    assert again["metadata"]["uid"] == uid
    uids = {(c.store.get("v1", "Namespace", "kube-system") or {})["metadata"]["uid"] for c in fleet}
    assert len(uids) == len(fleet) > 1, "one identity per cluster"

    status, body, _ = await raw.request("DELETE", "/api/v1/namespaces/kube-system")
    assert status == 403 and body["reason"] == "Forbidden", body
    assert body["message"] == 'namespaces "kube-system" is forbidden: this namespace may not be deleted'
    status, still, _ = await raw.request("GET", "/api/v1/namespaces/kube-system")
    assert status == 200 and still["metadata"]["uid"] == uid and not still["metadata"].get("deletionTimestamp")
