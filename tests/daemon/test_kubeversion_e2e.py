"""Each cluster's Kubernetes, end to end: the daemon reads every cluster's server
version and served APIs when it connects, installs Istio 1.2 on a Kubernetes 1.16
master in the API versions upstream renders (``admissionregistration.k8s.io/v1beta1``
webhooks), and refuses a Kubernetes 1.30 remote — which no longer serves the API Istio
1.2's injector patches its ``caBundle`` through — with a status naming its version and
not one write on it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

from federationd.sim import ClusterSpec, Fleet

from .conftest import DaemonProcess, install_crds, kubectl, start_daemon
from .test_e2e import SEED_000
from .waiting import wait_for

REMOTE = "remote-eu"
MESSAGE = (
    "Kubernetes v1.30.0 on remote-eu does not serve admissionregistration.k8s.io/v1beta1, "
    "which Istio 1.2's sidecar injector needs; use a cluster of Kubernetes 1.21 or older"
)


def _status(fleet: Fleet, kind: str, name: str) -> dict[str, Any]:
    cr = fleet["master"].store.get("istio.banzaicloud.io/v1beta1", kind, name, "istio-system") or {}
    return cr.get("status") or {}


async def test_a_1_16_master_installs_v1beta1_webhooks_and_a_1_30_remote_is_refused(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    specs = [ClusterSpec(name="master", kubernetes_version="1.16"), ClusterSpec(name=REMOTE, kubernetes_version="1.30")]
    async with Fleet(specs, directory=tmp_path / "fleet") as fleet:
        install_crds(fleet)
        kc = fleet["master"].kubeconfig_path
        await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
        # the remote's admin kubeconfig: nothing is prepared on it, so any write there is the daemon's
        raw = yaml.safe_dump(fleet[REMOTE].kubeconfig, sort_keys=False).encode()
        secret = {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": REMOTE, "namespace": "istio-system"},
            "data": {REMOTE: base64.b64encode(raw).decode()},
        }
        await kubectl(kc, "apply", "-f", "-", stdin=json.dumps(secret))
        remote_cr = {
            "apiVersion": "istio.banzaicloud.io/v1beta1", "kind": "RemoteIstio",
            "metadata": {"name": REMOTE, "namespace": "istio-system"},
            "spec": {"autoInjectionNamespaces": ["default"], "enabledServices": [{"name": "istio-pilot"}]},
        }
        await kubectl(kc, "apply", "-f", "-", stdin=json.dumps(remote_cr))
        remote_writes = fleet[REMOTE].requests.mutating()
        d = await start_daemon(daemons, fleet, tmp_path / "log.db")

        await wait_for(lambda: _status(fleet, "RemoteIstio", REMOTE).get("ErrorMessage") == MESSAGE, timeout=60, what="the remote refused")
        assert _status(fleet, "RemoteIstio", REMOTE)["Status"] == "ReconcileFailed"
        await wait_for(lambda: _status(fleet, "Istio", "istio").get("Status") == "Available", timeout=90, what="Istio Available")
        hook = fleet["master"].store.get(
            "admissionregistration.k8s.io/v1beta1", "MutatingWebhookConfiguration", "istio-sidecar-injector")
        assert hook is not None and hook["apiVersion"] == "admissionregistration.k8s.io/v1beta1"

        # what the daemon observed is in its log, and the remote got no write at all
        out = await _events(tmp_path / "log.db")
        seen = {e["cluster"]: e for e in out if e["type"] == "KubernetesApisObserved"}
        assert seen["master"]["version"] == "v1.16.0"
        assert "admissionregistration.k8s.io/v1beta1" in seen["master"]["group_versions"]
        assert seen[REMOTE]["version"] == "v1.30.0"
        assert "admissionregistration.k8s.io/v1beta1" not in seen[REMOTE]["group_versions"]
        applied = [e["key"] for e in out if e["type"] == "ActuationApplied" and e["cluster"] == "master"]
        assert any(k.startswith("admissionregistration.k8s.io/v1beta1/MutatingWebhookConfiguration/") for k in applied)
        assert not [e for e in out if e["type"] in ("ActuationApplied", "ActuationFailed") and e["cluster"] == REMOTE]
        assert fleet[REMOTE].requests.mutating() == remote_writes, fleet[REMOTE].requests.snapshot()
        assert await d.terminate() == 0


async def _events(log: Path) -> list[dict[str, Any]]:
    from .test_e2e import _events_all

    return await _events_all(log)
