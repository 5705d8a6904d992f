"""Two clusters: a remote joins through the seed-001 workflow and leaves again."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from federationd.sim import Fleet

from .conftest import DaemonProcess, install_crds, kubectl, start_daemon
from .identity import remote_kubeconfig
from .test_e2e import GATEWAY_FEDERATION
from .waiting import wait_for

REMOTE = "remote-eu"


def _get(fleet: Fleet, cluster: str, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
    return fleet[cluster].store.get(api_version, kind, name, namespace)


def _remote_status(fleet: Fleet, name: str = REMOTE) -> dict[str, Any]:
    cr = _get(fleet, "master", "istio.banzaicloud.io/v1beta1", "RemoteIstio", name, "istio-system") or {}
    return cr.get("status") or {}


def _networks(fleet: Fleet) -> dict[str, Any]:
    cm = _get(fleet, "master", "v1", "ConfigMap", "istio", "istio-system") or {}
    text = (cm.get("data") or {}).get("meshNetworks") or "{}"
    return (yaml.safe_load(text) or {}).get("networks") or {}


def _secret(fleet: Fleet, raw: bytes) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": REMOTE, "namespace": "istio-system"},
        "data": {REMOTE: base64.b64encode(raw).decode()},
    })


async def _join(
    fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path, *, extra: list[str] | None = None, admin: bool = False,
    istio: str = GATEWAY_FEDERATION,
) -> DaemonProcess:
    """Seed 001: the Istio, a Secret named like the RemoteIstio holding the remote's
    kubeconfig, the RemoteIstio; then the daemon, until the remote is Available.
    ``admin``: the Secret holds the remote's cluster-admin kubeconfig, and nothing is
    prepared on the remote (no cluster-add step). ``istio``: the Istio resource (gateway
    federation by default; seed 000's for a flat network)."""
    install_crds(fleet)
    kc = fleet["master"].kubeconfig_path
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=istio)
    # the remote prepared as seed 001's cluster-add step does; its Secret authenticates as that identity
    raw = yaml.safe_dump(fleet[REMOTE].kubeconfig, sort_keys=False).encode() if admin else remote_kubeconfig(fleet[REMOTE])
    await kubectl(kc, "apply", "-f", "-", stdin=_secret(fleet, raw))
    remote_cr = {
        "apiVersion": "istio.banzaicloud.io/v1beta1", "kind": "RemoteIstio",
        "metadata": {"name": REMOTE, "namespace": "istio-system"},
        "spec": {"autoInjectionNamespaces": ["default"], "enabledServices": [{"name": "istio-pilot"}]},
    }
    await kubectl(kc, "apply", "-f", "-", stdin=json.dumps(remote_cr))
    d = await start_daemon(daemons, fleet, tmp_path / "log.db", extra=extra)
    await wait_for(lambda: _get(fleet, REMOTE, "apps/v1", "Deployment", "istio-citadel", "istio-system") is not None, timeout=60, what="remote components")
    await wait_for(lambda: _remote_status(fleet).get("Status") == "Available" and bool(_remote_status(fleet).get("GatewayAddress")), timeout=60, what="RemoteIstio Available")
    return d


async def test_a_remote_joins_and_leaves(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path)
        # Available is not final yet: the master's own gateway address may arrive after it,
        # moving the remote's mesh ConfigMap (Reconciling again) — wait for both gateways
        # in meshNetworks and the fleet settled on them

        async def settled() -> bool:
            nets = _networks(fleet)
            return bool(nets.get(REMOTE, {}).get("gateways") and nets.get("master", {}).get("gateways")) and await d.converged()

        await wait_for(settled, timeout=30, what="both gateways in meshNetworks, converged")
        remote_gw = _remote_status(fleet)["GatewayAddress"]
        nets = _networks(fleet)
        assert [g["address"] for g in nets[REMOTE]["gateways"]] == remote_gw
        assert nets["master"]["gateways"], "the master announces its own gateway"
        out = (await kubectl(kc, "get", "remoteistios", "-n", "istio-system")).splitlines()
        assert out[0].split() == ["NAME", "STATUS", "ERROR", "GATEWAYS", "AGE"]
        assert out[1].split()[:2] == [REMOTE, "Available"]
        ns = _get(fleet, REMOTE, "v1", "Namespace", "default") or {}
        assert ns["metadata"]["labels"].get("istio-injection") == "enabled"

        # leaving: the remote's components go, and so does its network
        await kubectl(kc, "delete", "remoteistio", REMOTE, "-n", "istio-system")
        await wait_for(lambda: _get(fleet, REMOTE, "apps/v1", "Deployment", "istio-citadel", "istio-system") is None, timeout=60, what="remote cleaned up")
        await wait_for(lambda: REMOTE not in _networks(fleet), timeout=30, what="network removed")
        await wait_for(d.converged, timeout=30)
        await wait_for(lambda: "remote remote-eu left" in d.stderr(), timeout=30, what="remote dropped")
        assert await d.terminate() == 0


async def test_a_partitioned_remote_does_not_hold_up_the_master(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path)
        await fleet[REMOTE].faults.partition(120)
        await wait_for(lambda: "unreachable" in str(_remote_status(fleet).get("ErrorMessage")), timeout=60, what="remote reported unreachable")
        assert _remote_status(fleet)["Status"] == "ReconcileFailed"

        async def cluster_state(state: str) -> bool:
            code, text = await d.get("/metrics")
            return code == 200 and f'federationd_cluster_state{{cluster="{REMOTE}",state="{state}"}} 1.0' in text

        await wait_for(lambda: cluster_state("unreachable"), timeout=15, what="federationd_cluster_state says unreachable")
        # the master converges as usual meanwhile, and the daemon stays ready
        await kubectl(kc, "patch", "istio", "istio", "-n", "istio-system", "--type", "merge", "-p", '{"spec": {"mtls": true}}')
        await wait_for(lambda: _get(fleet, "master", "networking.istio.io/v1alpha3", "DestinationRule", "default", "istio-system") is not None, timeout=15, what="master converged")
        await wait_for(lambda: ((_get(fleet, "master", "istio.banzaicloud.io/v1beta1", "Istio", "istio", "istio-system") or {}).get("status") or {}).get("Status") == "Available", timeout=15)
        assert await d.ready()
        # healed: the remote catches up and is Available again
        await fleet[REMOTE].faults.heal()
        await wait_for(lambda: _remote_status(fleet).get("Status") == "Available", timeout=90, what="remote recovered")
        await wait_for(lambda: cluster_state("connected"), timeout=15, what="federationd_cluster_state says connected")
        assert await d.terminate() == 0


async def test_credential_rotation_reconnects_without_rewriting(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path)
        await wait_for(d.converged, timeout=30)
        remote = fleet[REMOTE]
        before = remote.requests.mutating()
        # the same credentials written differently: a new fingerprint, a reconnection
        secret = fleet["master"].store.get("v1", "Secret", REMOTE, "istio-system") or {}
        raw = json.dumps(yaml.safe_load(base64.b64decode(secret["data"][REMOTE]))).encode()
        await kubectl(kc, "apply", "-f", "-", stdin=_secret(fleet, raw))
        await wait_for(lambda: "disconnected for a new kubeconfig" in d.stderr(), timeout=30, what="reconnection")
        await wait_for(lambda: "remote-eu joined" in d.stderr().split("disconnected for a new kubeconfig")[-1], timeout=30)
        await wait_for(d.converged, timeout=30)
        assert remote.requests.mutating() == before, remote.requests.snapshot()
        # an unchanged re-write does nothing at all
        await kubectl(kc, "apply", "-f", "-", stdin=_secret(fleet, raw))
        await wait_for(d.converged, timeout=30)
        assert d.stderr().count("disconnected for a new kubeconfig") == 1
        assert await d.terminate() == 0


async def test_a_remote_removed_while_the_daemon_was_down_is_cleaned_up(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path)
        await wait_for(d.converged, timeout=30)
        assert await d.terminate() == 0
        # its finalizer keeps the CR until a daemon has cleaned up: do not wait for that
        await kubectl(kc, "delete", "remoteistio", REMOTE, "-n", "istio-system", "--wait=false")
        d2 = await start_daemon(daemons, fleet, tmp_path / "log.db", name="d2")
        await wait_for(lambda: _get(fleet, REMOTE, "apps/v1", "Deployment", "istio-citadel", "istio-system") is None, timeout=60, what="remote cleaned up")
        await wait_for(lambda: "remote remote-eu left" in d2.stderr(), timeout=30, what="remote dropped")
        await wait_for(lambda: REMOTE not in _networks(fleet), timeout=30)
        assert await d2.terminate() == 0


# Each join now waits for the cluster's identity read (one request and one derivation
# more than before): on a loaded 2-core machine 100 cycles outgrow the default timeout.
@pytest.mark.timeout(600)
async def test_join_leave_cycles_leave_no_tasks_or_connections_behind(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """100 join/leave cycles. Each waits for the remote's joined and left states only
    (not for its components to be ready) and writes the CR through the fleet's store,
    not kubectl, so the cycles stay fast; the daemon's own /debug/runtime counts its
    tasks, open files and memory."""
    cycles = 100
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        store = fleet["master"].store
        d = await _join(fleet, daemons, tmp_path)
        remote_cr = {
            "apiVersion": "istio.banzaicloud.io/v1beta1", "kind": "RemoteIstio",
            "metadata": {"name": REMOTE, "namespace": "istio-system"},
            "spec": {"enabledServices": [{"name": "istio-pilot"}]},
        }

        def cr() -> dict[str, Any] | None:
            return _get(fleet, "master", "istio.banzaicloud.io/v1beta1", "RemoteIstio", REMOTE, "istio-system")

        async def leave(n: int) -> None:
            store.remove("istio.banzaicloud.io/v1beta1", "RemoteIstio", REMOTE, "istio-system")
            await wait_for(lambda: d.stderr().count("remote remote-eu left") == n, timeout=60, what=f"leave {n}")
            await wait_for(lambda: cr() is None, timeout=30, what=f"finalizer released {n}")

        async def join(n: int) -> None:
            store.create(remote_cr)
            await wait_for(lambda: d.stderr().count("remote remote-eu joined") == n, timeout=60, what=f"join {n}")

        await kubectl(kc, "delete", "remoteistio", REMOTE, "-n", "istio-system")
        await wait_for(lambda: d.stderr().count("remote remote-eu left") == 1, timeout=60, what="leave 1")
        await wait_for(d.converged, timeout=30)
        baseline = await d.debug("runtime")
        assert baseline["clusters"] == ["master"]
        # the master's requests and watches on one HTTP/2 connection
        master_conn = baseline["connections"]["master"]
        assert master_conn["protocol"] == "h2" and master_conn["streams"] >= 3, master_conn
        # /debug/tasks says where each task waits: the derivation, idle, on its wake-up
        tasks = {t["name"]: t["waiting_at"] for t in await d.debug("tasks")}
        assert any("_derive_loop" in frame for frame in tasks["derive"]), tasks["derive"]
        for i in range(cycles):
            await join(i + 2)
            await leave(i + 2)
        # the last leave fully settled: nothing of the remote anywhere
        await wait_for(d.converged, timeout=30)
        assert _get(fleet, REMOTE, "apps/v1", "Deployment", "istio-citadel", "istio-system") is None
        assert REMOTE not in _networks(fleet)
        assert "connected to clean up" not in d.stderr()
        after: dict[str, Any] = {}

        async def at_baseline() -> bool:
            # a leak stays; a request or event write in flight at one instant does not
            after.update(await d.debug("runtime"))
            return bool(after["tasks"] <= baseline["tasks"] and after["open_files"] <= baseline["open_files"] + 1)

        try:
            await wait_for(at_baseline, timeout=10, what="tasks and open files back at baseline")
        except AssertionError as e:
            raise AssertionError(f"{e}: before {baseline}, after {after}") from None
        assert after["clusters"] == ["master"]
        # the master's connection carried all of it: never dialled again
        assert after["connections"]["master"]["dials"] == master_conn["dials"], (master_conn, after)
        assert after["tasks"] <= baseline["tasks"], (baseline["task_kinds"], after["task_kinds"])
        assert after["open_files"] <= baseline["open_files"] + 1, (baseline, after)
        assert after["rss_bytes"] < baseline["rss_bytes"] + 32 * 2**20, (baseline, after)
        print(f"\n{cycles} join/leave cycles: runtime before {baseline}, after {after}")
        assert await d.terminate() == 0
