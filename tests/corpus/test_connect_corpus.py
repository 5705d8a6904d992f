"""The connection half of the bad-input corpus: kubeconfigs that parse but do not get
federationd in — a wrong CA, nothing listening, a host DNS cannot resolve, a refused
token (401), a token without the permission (403). Each needs a live server, so each
runs against one simulated cluster; each ends with the one line the RemoteIstio's
status shows (through the same ``ClusterUnreachable`` fact the daemon records), and no
token in it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from events import types as ev
from events.types import ClusterName
from federationd.clusters.connection import connect
from federationd.clusters.errors import ApiError
from federationd.clusters.health import ClusterHealth
from federationd.metrics import Metrics
from federationd.projections.derive import derive
from federationd.sim import Fleet

from ..projections.helpers import MASTER, SEED_000, Log, istio

REMOTE = "remote-eu"


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with Fleet([REMOTE], directory=tmp_path / "fleet") as f:
        yield f


def _kubeconfig(fleet: Fleet, **change: Any) -> dict[str, Any]:
    kc: dict[str, Any] = yaml.safe_load(fleet[REMOTE].kubeconfig_path.read_text())
    cluster, user = kc["clusters"][0]["cluster"], kc["users"][0]["user"]
    if "server" in change:
        cluster["server"] = change["server"]
    if "ca" in change:
        cluster["certificate-authority-data"] = change["ca"]
    if "token" in change:
        user["token"] = change["token"]
    return kc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _reason(kc: dict[str, Any], *, write: bool = False) -> str:
    """What one read (and a write) through federationd's client leaves in its health,
    or the error of the write when the cluster answered."""
    health = ClusterHealth(ClusterName(REMOTE), metrics=Metrics(), failure_threshold=1)
    client = await connect(kc, name=REMOTE, health=health, request_timeout=5.0)
    try:
        try:
            await client.request("GET", "/api/v1/namespaces")
            if write:
                await client.request("POST", "/api/v1/namespaces", body={
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, what="create Namespace/x")
        except ApiError as e:
            if health.snapshot().reason:
                return health.snapshot().reason
            return e.message
        return health.snapshot().reason
    finally:
        await client.close()


def _status(reason: str) -> str:
    log = Log()
    log.add(
        istio(SEED_000),
        ev.RemoteIstioSpecChanged(cluster=MASTER, key=f"RemoteIstio/istio-system/{REMOTE}", time=1, namespace="istio-system",
                                  name=REMOTE, uid="r", generation=1, spec={"enabledServices": [{"name": "istio-pilot"}]}),
        ev.KubeconfigObserved(cluster=MASTER, key=f"Secret/istio-system/{REMOTE}", time=1, remote=REMOTE, server="https://r", fingerprint="f"),
        ev.ClusterUnreachable(cluster=ClusterName(REMOTE), key=f"Cluster//{REMOTE}", time=2, reason=reason),
    )
    msg = derive(log.state).statuses[f"RemoteIstio/istio-system/{REMOTE}"].status["ErrorMessage"]
    assert isinstance(msg, str) and "\n" not in msg
    return msg


async def test_wrong_ca(fleet: Fleet) -> None:
    other = trustme.CA().cert_pem.bytes()
    import base64
    reason = await _reason(_kubeconfig(fleet, ca=base64.b64encode(other).decode()))
    assert _status(reason) == "cluster unreachable: TLS certificate verification failed"


async def test_nothing_listening(fleet: Fleet) -> None:
    port = _free_port()
    reason = await _reason(_kubeconfig(fleet, server=f"https://127.0.0.1:{port}"))
    assert _status(reason) == f"cluster unreachable: connection refused by 127.0.0.1:{port}"


async def test_unresolvable_host(fleet: Fleet) -> None:
    reason = await _reason(_kubeconfig(fleet, server="https://no-such-cluster.invalid:6443"))
    assert _status(reason) == "cluster unreachable: could not resolve host no-such-cluster.invalid"


async def test_refused_token_401(fleet: Fleet) -> None:
    token = "tok-SECRET-5f2a9c-refused"
    reason = await _reason(_kubeconfig(fleet, token=token))
    msg = _status(reason)
    assert msg == "cluster refused the kubeconfig's credential (HTTP 401 Unauthorized)"
    assert token not in msg


async def test_token_without_permission_403(fleet: Fleet) -> None:
    viewer = fleet[REMOTE].viewer_token
    reason = await _reason(_kubeconfig(fleet, token=viewer), write=True)
    assert reason.startswith("create Namespace/x: HTTP 403 Forbidden: ")
    assert "cannot create resource \"namespaces\"" in reason
    assert viewer not in reason
