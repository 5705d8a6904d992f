"""Federation end to end, beyond joining and leaving: the flat network of seed 000
(``enabledServices``), leaving with a finalizer, gateways that move, and Istio's own
remote-secret format."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from federationd.sim import Fleet

from .conftest import DaemonProcess, install_crds, kubectl, start_daemon
from .test_e2e import GATEWAY_FEDERATION, SEED_000
from .test_federation import REMOTE, _get, _join, _networks, _remote_status
from .waiting import wait_for

NS = "istio-system"


def _endpoint_ips(fleet: Fleet, cluster: str, name: str) -> list[str]:
    ep = _get(fleet, cluster, "v1", "Endpoints", name, NS) or {}
    return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])


async def test_flat_network_remote_endpoints_follow_the_masters_pods(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        master = fleet["master"]
        # pilot on the master runs Pods with IPs; the Endpoints controller lists them
        await _join(fleet, daemons, tmp_path, istio=SEED_000)  # its RemoteIstio enables istio-pilot

        await wait_for(lambda: bool(_endpoint_ips(fleet, "master", "istio-pilot")), timeout=30, what="master pilot pods")
        await wait_for(
            lambda: _endpoint_ips(fleet, REMOTE, "istio-pilot") == _endpoint_ips(fleet, "master", "istio-pilot"),
            timeout=30, what="remote Endpoints carry the master's pod IPs",
        )
        svc = _get(fleet, REMOTE, "v1", "Service", "istio-pilot", NS) or {}
        assert "selector" not in svc["spec"] and svc["spec"]["clusterIP"] == "None", svc["spec"]

        # a master pod restarts with a new IP: the remote follows within the convergence time
        old = _endpoint_ips(fleet, "master", "istio-pilot")
        pod = next(
            p["metadata"]["name"] for p in master.store.list("v1", "Pod", NS)
            if p["metadata"]["name"].startswith("istio-pilot-")
        )
        new_ip = master.behaviours.restart_pod(NS, pod)
        assert new_ip not in old
        await wait_for(lambda: new_ip in _endpoint_ips(fleet, REMOTE, "istio-pilot"), timeout=10, what="remote follows the restart")
        assert _endpoint_ips(fleet, REMOTE, "istio-pilot") == _endpoint_ips(fleet, "master", "istio-pilot")

        # an entry named like one of the remote's own Services is refused, in the status
        kc = master.kubeconfig_path
        patch: dict[str, Any] = {"spec": {"enabledServices": [{"name": "istio-pilot"}, {"name": "istio-citadel"}]}}
        await kubectl(kc, "patch", "remoteistio", REMOTE, "-n", NS, "--type", "merge", "-p", json.dumps(patch))
        await wait_for(lambda: "clashes" in str(_remote_status(fleet).get("ErrorMessage")), timeout=15, what="clash reported")
        assert _remote_status(fleet)["Status"] == "ReconcileFailed"
        assert "istio-system/istio-citadel" in _remote_status(fleet)["ErrorMessage"]

        # a podIPs value that is not an address: the CRD schema refuses it at once, with
        # the field named (the projection's own check is in tests/corpus)
        patch = {"spec": {"enabledServices": [{"name": "istio-pilot", "podIPs": ["10.0.0.1", "nope"]}]}}
        before = _remote_cr(fleet)
        out = await kubectl(kc, "patch", "remoteistio", REMOTE, "-n", NS, "--type", "merge", "-p", json.dumps(patch), check=False)
        assert out == "" and _remote_cr(fleet) == before


FINALIZER = "federationd.istio.banzaicloud.io/remote-cleanup"


def _remote_cr(fleet: Fleet) -> dict[str, Any] | None:
    return _get(fleet, "master", "istio.banzaicloud.io/v1beta1", "RemoteIstio", REMOTE, NS)


def _citadel(fleet: Fleet) -> dict[str, Any] | None:
    return _get(fleet, REMOTE, "apps/v1", "Deployment", "istio-citadel", NS)


async def test_deleting_a_reachable_remote_cleans_up_before_the_cr_goes(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path)
        await wait_for(lambda: FINALIZER in ((_remote_cr(fleet) or {}).get("metadata") or {}).get("finalizers", []), timeout=15, what="finalizer")
        # announced once its gateway has an address (which Available does not wait for)
        await wait_for(lambda: REMOTE in _networks(fleet), timeout=15, what="the remote's network")
        # a finalizer taken off by hand is put back (the changed CR is checked again)
        # (the daemon may put it back before kubectl returns: two writes since, ours and its)
        rv = int((_remote_cr(fleet) or {})["metadata"]["resourceVersion"])
        await kubectl(kc, "patch", "remoteistio", REMOTE, "-n", NS, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        await wait_for(
            lambda: FINALIZER in ((_remote_cr(fleet) or {}).get("metadata") or {}).get("finalizers", [])
            and int((_remote_cr(fleet) or {})["metadata"]["resourceVersion"]) >= rv + 2,
            timeout=15, what="finalizer back",
        )
        await kubectl(kc, "delete", "remoteistio", REMOTE, "-n", NS, "--wait=false")
        # the finalizer holds the CR while the remote is cleaned up
        assert (_remote_cr(fleet) or {})["metadata"].get("deletionTimestamp")
        await wait_for(lambda: _remote_cr(fleet) is None, timeout=30, what="RemoteIstio gone")
        # by the time the CR is gone, everything it caused is gone too
        assert _citadel(fleet) is None
        assert not [o for o in fleet[REMOTE].store.list("v1", "Service", NS) if o["metadata"]["name"] == "istio-pilot"]
        assert REMOTE not in _networks(fleet)
        assert not _cleanup_events(fleet)
        assert await d.terminate() == 0


def _cleanup_events(fleet: Fleet) -> list[dict[str, Any]]:
    return [
        e for e in fleet["master"].store.list("v1", "Event", NS)
        if e.get("reason") == "RemoteCleanupIncomplete" and e["involvedObject"]["name"] == REMOTE
    ]


async def test_deleting_an_unreachable_remote_waits_a_bounded_time_then_warns(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path, extra=["--remote-cleanup-timeout", "2"])
        await wait_for(lambda: FINALIZER in ((_remote_cr(fleet) or {}).get("metadata") or {}).get("finalizers", []), timeout=15, what="finalizer")
        await fleet[REMOTE].faults.partition(120)
        await kubectl(kc, "delete", "remoteistio", REMOTE, "-n", NS, "--wait=false")
        await wait_for(lambda: _remote_cr(fleet) is None, timeout=30, what="RemoteIstio gone after the bounded wait")
        events = _cleanup_events(fleet)
        assert len(events) == 1, events
        e = events[0]
        assert e["type"] == "Warning"
        assert "unreachable" in e["message"] and "Deployment (istio-system/istio-citadel" in e["message"], e["message"]
        # the master no longer announces it; the remote keeps what could not be deleted
        await wait_for(lambda: REMOTE not in _networks(fleet), timeout=15, what="network removed")
        assert REMOTE not in _networks(fleet)
        assert _citadel(fleet) is not None
        await fleet[REMOTE].faults.heal()
        assert await d.terminate() == 0


# --- gateways -------------------------------------------------------------------------------------------

GW = "istio-ingressgateway"


def _gateway_addrs(fleet: Fleet, cluster: str) -> list[str]:
    return [g["address"] for g in _networks(fleet).get(cluster, {}).get("gateways") or []]


def _conditions(fleet: Fleet, name: str = REMOTE) -> dict[str, dict[str, Any]]:
    cr = _get(fleet, "master", "istio.banzaicloud.io/v1beta1", "RemoteIstio", name, NS) or {}
    return {c["type"]: c for c in (cr.get("status") or {}).get("conditions") or []}


async def test_a_remote_gateway_ip_change_moves_mesh_networks_and_status(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        d = await _join(fleet, daemons, tmp_path)
        await wait_for(lambda: bool(_gateway_addrs(fleet, REMOTE)), timeout=15, what="remote gateway announced")
        assert _gateway_addrs(fleet, REMOTE) != ["203.0.113.77"]
        fleet[REMOTE].behaviours.set_load_balancer(NS, GW, [{"ip": "203.0.113.77"}])
        await wait_for(lambda: _gateway_addrs(fleet, REMOTE) == ["203.0.113.77"], timeout=10, what="meshNetworks follow")
        await wait_for(lambda: _remote_status(fleet).get("GatewayAddress") == ["203.0.113.77"], timeout=10, what="GATEWAYS follow")
        assert await d.terminate() == 0


async def test_a_nodeport_gateway_is_announced_by_node_addresses_and_node_port(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path)
        patch = {"spec": {"gateways": {"ingress": {"serviceType": "NodePort"}}}}
        await kubectl(kc, "patch", "istio", "istio", "-n", NS, "--type", "merge", "-p", json.dumps(patch))

        def remote_gw() -> dict[str, Any]:
            return _get(fleet, REMOTE, "v1", "Service", GW, NS) or {}

        await wait_for(lambda: remote_gw().get("spec", {}).get("type") == "NodePort", timeout=15, what="NodePort gateway on the remote")
        external = sorted(
            a["address"] for n in fleet[REMOTE].store.list("v1", "Node")
            for a in n["status"]["addresses"] if a["type"] == "ExternalIP"
        )
        # the node port of "https": the *.local AUTO_PASSTHROUGH listener (443) behind it
        https = next(p for p in remote_gw()["spec"]["ports"] if p.get("name") == "https")
        await wait_for(lambda: _gateway_addrs(fleet, REMOTE) == external, timeout=15, what="node addresses announced")
        gateways = _networks(fleet)[REMOTE]["gateways"]
        assert {g["port"] for g in gateways} == {https["nodePort"]}, gateways
        assert https["nodePort"] != https["port"]
        await wait_for(lambda: _remote_status(fleet).get("GatewayAddress") == external, timeout=10, what="GATEWAYS are the nodes")
        assert await d.terminate() == 0


def _kubeconfig_secret(name: str, raw: bytes, *, key: str | None = None, labels: dict[str, str] | None = None) -> str:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if labels:
        meta["labels"] = labels
    return json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": meta,
        "data": {key or name: base64.b64encode(raw).decode()},
    })


def _remote_istio(name: str) -> str:
    return json.dumps({
        "apiVersion": "istio.banzaicloud.io/v1beta1", "kind": "RemoteIstio",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"enabledServices": [{"name": "istio-pilot"}]},
    })


async def test_a_gateway_without_an_address_is_pending_and_stalls_nobody(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    us = "remote-us"
    async with Fleet(["master", REMOTE, us], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        fleet[us].behaviours.lb_enabled = False  # its cloud never hands out an address
        d = await _join(fleet, daemons, tmp_path)
        await kubectl(kc, "apply", "-f", "-", stdin=_kubeconfig_secret(us, fleet[us].kubeconfig_path.read_bytes()))
        await kubectl(kc, "apply", "-f", "-", stdin=_remote_istio(us))
        await wait_for(lambda: "Pending" == _conditions(fleet, us).get("GatewayAddressAssigned", {}).get("reason"), timeout=30, what="pending shown")
        assert "pending" in _conditions(fleet, us)["GatewayAddressAssigned"]["message"]
        # it converges otherwise, and so does everyone else
        await wait_for(lambda: _remote_status(fleet, us).get("Status") == "Available", timeout=30, what="pending remote Available")
        await wait_for(d.converged, timeout=30)
        assert _remote_status(fleet, us).get("GatewayAddress") in (None, [])
        assert _remote_status(fleet).get("Status") == "Available" and _remote_status(fleet).get("GatewayAddress")
        assert "GatewayAddressAssigned" not in _conditions(fleet)
        # no network without a gateway address (the operator's getMeshNetworks skips it)
        await wait_for(lambda: REMOTE in _networks(fleet), timeout=15, what="the other remote's network")
        assert us not in _networks(fleet) and _gateway_addrs(fleet, REMOTE)
        # the address arrives: announced, and no longer pending
        fleet[us].behaviours.set_load_balancer(NS, GW, [{"ip": "198.51.100.9"}])
        await wait_for(lambda: _gateway_addrs(fleet, us) == ["198.51.100.9"], timeout=10, what="announced")
        await wait_for(lambda: "GatewayAddressAssigned" not in _conditions(fleet, us), timeout=10, what="no longer pending")
        assert await d.terminate() == 0


# --- Istio's remote-secret format --------------------------------------------------------------------


async def test_istios_remote_secret_format_joins_a_remote(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """``istioctl x create-remote-secret`` output: the label, a Secret named
    ``istio-remote-secret-<cluster>``, the kubeconfig under the cluster's name."""
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        install_crds(fleet)
        kc = fleet["master"].kubeconfig_path
        await kubectl(kc, "apply", "-n", NS, "-f", "-", stdin=GATEWAY_FEDERATION)
        secret = _kubeconfig_secret(
            f"istio-remote-secret-{REMOTE}", fleet[REMOTE].kubeconfig_path.read_bytes(),
            key=REMOTE, labels={"istio/multiCluster": "true"},
        )
        await kubectl(kc, "apply", "-f", "-", stdin=secret)
        await kubectl(kc, "apply", "-f", "-", stdin=_remote_istio(REMOTE))
        d = await start_daemon(daemons, fleet, tmp_path / "log.db")
        await wait_for(lambda: _remote_status(fleet).get("Status") == "Available" and bool(_remote_status(fleet).get("GatewayAddress")), timeout=60, what="joined through Istio's format")
        assert _citadel(fleet) is not None
        await wait_for(lambda: _gateway_addrs(fleet, REMOTE) == _remote_status(fleet)["GatewayAddress"], timeout=15, what="meshNetworks")
        # and it leaves the same way
        await kubectl(kc, "delete", "remoteistio", REMOTE, "-n", NS, "--wait=false")
        await wait_for(lambda: _remote_cr(fleet) is None, timeout=30, what="left")
        assert _citadel(fleet) is None
        assert await d.terminate() == 0


# --- isolation: a slow remote ----------------------------------------------------------------------


def _remote_mesh(fleet: Fleet, cluster: str) -> str:
    cm = _get(fleet, cluster, "v1", "ConfigMap", "istio", NS) or {}
    return str((cm.get("data") or {}).get("mesh", ""))


async def test_a_slow_remote_does_not_delay_the_others(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """Every request to one remote takes 5 s; a change that concerns every cluster still
    lands on the master and on the healthy remote at their normal pace."""
    slow = "remote-us"
    async with Fleet(["master", REMOTE, slow], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path)
        await kubectl(kc, "apply", "-f", "-", stdin=_kubeconfig_secret(slow, fleet[slow].kubeconfig_path.read_bytes()))
        await kubectl(kc, "apply", "-f", "-", stdin=_remote_istio(slow))
        await wait_for(lambda: _remote_status(fleet, slow).get("Status") == "Available", timeout=60, what="second remote Available")
        assert "controlPlaneAuthPolicy: NONE" in _remote_mesh(fleet, REMOTE)
        assert "controlPlaneAuthPolicy: NONE" in _remote_mesh(fleet, slow)

        fleet[slow].faults.latency(5.0, duration=60)
        started = asyncio.get_running_loop().time()
        await kubectl(kc, "patch", "istio", "istio", "-n", NS, "--type", "merge", "-p", '{"spec": {"controlPlaneSecurityEnabled": true}}')
        await wait_for(lambda: "controlPlaneAuthPolicy: MUTUAL_TLS" in _remote_mesh(fleet, REMOTE), timeout=10, what="healthy remote converged")
        await wait_for(lambda: "controlPlaneAuthPolicy: MUTUAL_TLS" in _remote_mesh(fleet, "master"), timeout=10, what="master converged")
        took = asyncio.get_running_loop().time() - started
        # The healthy clusters did not wait for the slow one: it cannot have been written yet
        # (one request there takes 5 s), and they were done well within that.
        assert "controlPlaneAuthPolicy: NONE" in _remote_mesh(fleet, slow)
        assert took < 5.0, f"healthy clusters took {took:.1f}s while one remote was slow"
        assert await d.ready()

        fleet[slow].faults.clear()
        await wait_for(lambda: "controlPlaneAuthPolicy: MUTUAL_TLS" in _remote_mesh(fleet, slow), timeout=60, what="slow remote caught up")
        assert await d.terminate() == 0
