"""End to end: the daemon as a process, a simulated master, kubectl as the user."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import yaml

from federationd.sim import Fleet

from .conftest import DaemonProcess, kubectl, start_daemon
from .waiting import wait_for

ISTIO = ("istio.banzaicloud.io/v1beta1", "Istio")
SEED_000 = """
apiVersion: istio.banzaicloud.io/v1beta1
kind: Istio
metadata:
  labels:
    controller-tools.k8s.io: "1.0"
  name: istio
spec:
  mtls: false
  includeIPRanges: "*"
  excludeIPRanges: ""
  autoInjectionNamespaces:
  - "default"
  controlPlaneSecurityEnabled: false
"""

#: Gateway federation (seed 001): the mesh-expansion mode, the one with meshNetworks.
GATEWAY_FEDERATION = SEED_000 + "  meshExpansion: true\n"


def _cr(fleet: Fleet, name: str = "istio") -> dict[str, Any]:
    return fleet["master"].store.get(*ISTIO, name, "istio-system") or {}


def _status(fleet: Fleet, name: str = "istio") -> dict[str, Any]:
    return _cr(fleet, name).get("status") or {}


def _get(fleet: Fleet, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
    return fleet["master"].store.get(api_version, kind, name, namespace)


def _labels(o: dict[str, Any] | None) -> dict[str, str]:
    return ((o or {}).get("metadata") or {}).get("labels") or {}


async def _spec(fleet: Fleet, **changes: Any) -> None:
    """Edit the Istio CR's spec the way a user would (kubectl patch)."""
    await kubectl(
        fleet["master"].kubeconfig_path, "patch", "istio", "istio", "-n", "istio-system",
        "--type", "merge", "-p", json.dumps({"spec": changes}),
    )


async def _namespace(kc: Path, name: str) -> None:
    # `kubectl create namespace` sends protobuf, which the emulator does not speak yet
    doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    await kubectl(kc, "apply", "-f", "-", stdin=json.dumps(doc))


async def _available(fleet: Fleet, d: DaemonProcess, generation: int | None = None) -> None:
    def ok() -> bool:
        st = _status(fleet)
        return st.get("Status") == "Available" and (generation is None or st.get("observedGeneration") == generation)

    await wait_for(ok, timeout=60, what="status Available")
    await wait_for(d.converged, timeout=30, what="converged")


async def _quiet(d: DaemonProcess, resyncs: int = 2) -> None:
    """Wait for ``resyncs`` full resyncs to be done, converged."""
    start = (await d.debug("converged"))["resyncs"]

    async def done() -> bool:
        c = await d.debug("converged")
        return bool(c["resyncs"] >= start + resyncs and await d.converged())

    await wait_for(done, timeout=30, what="resyncs")


async def test_seed_000_mtls_injection_and_a_quiet_resync(
    fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    kc = fleet["master"].kubeconfig_path
    master = fleet["master"]
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    d = await start_daemon(daemons, fleet, tmp_path / "log.db")
    await _available(fleet, d, generation=1)
    # Available does not wait for the load balancer's address (a pending gateway stalls
    # nobody): the GATEWAYS column is read once the address is in the status
    await wait_for(lambda: bool(_status(fleet).get("GatewayAddress")), timeout=30, what="the gateway's address in the status")

    # what the seed shows: kubectl get with the printer columns
    out = (await kubectl(kc, "get", "istios", "-n", "istio-system")).splitlines()
    assert out[0].split() == ["NAME", "STATUS", "ERROR", "GATEWAYS", "AGE"]
    assert out[1].split()[:3] == ["istio", "Available", _status(fleet)["GatewayAddress"][0].join("[]")]
    cm = _get(fleet, "v1", "ConfigMap", "istio", "istio-system")
    assert cm is not None and "mesh" in cm["data"]
    assert _get(fleet, "apps/v1", "Deployment", "istio-pilot", "istio-system") is not None
    assert _labels(_get(fleet, "v1", "Namespace", "default"))["istio-injection"] == "enabled"
    mp = _get(fleet, "authentication.istio.io/v1alpha1", "MeshPolicy", "default")
    assert mp is not None and mp["spec"]["peers"] == [{"mtls": {"mode": "PERMISSIVE"}}]
    assert _get(fleet, "networking.istio.io/v1alpha3", "DestinationRule", "default", "istio-system") is None
    conds = {c["type"]: c for c in _status(fleet)["conditions"]}
    assert {t: c["status"] for t, c in conds.items()} == {"Reconciled": "True", "Available": "True", "MeshAnalyzed": "True"}
    # the running daemon's analysis of the mesh it installed: nothing to report
    assert (conds["MeshAnalyzed"]["reason"], conds["MeshAnalyzed"]["message"]) == ("NoFindings", "every check passed")

    # metrics: controller-runtime names and federationd's own
    status, text = await d.get("/metrics")
    assert status == 200
    for name in (
        "workqueue_depth", "rest_client_requests_total", "federationd_event_log_head",
        "federationd_projection_lag_events", "federationd_convergence_seconds_bucket",
        'federationd_actuations_total{cluster="master",result="success"}',
        'federationd_cluster_state{cluster="master",state="connected"} 1.0',
        "federationd_events_appended_total",
        'federationd_gateway_addresses{cluster="master"} 1.0',
    ):
        assert name in text, name

    # steady state: full resyncs send zero mutating requests
    await _quiet(d, resyncs=1)
    before = master.requests.mutating()
    await _quiet(d, resyncs=2)
    assert master.requests.mutating() == before, master.requests.snapshot()

    # one changed fact, one write: a new namespace to inject is one namespace patch
    def object_writes() -> int:
        r = master.requests
        return r.mutating() - r.mutating("istios") - r.mutating("events")

    await _namespace(kc, "extra")
    await wait_for(lambda: _get(fleet, "v1", "Namespace", "extra") is not None)
    before = object_writes()
    await _spec(fleet, autoInjectionNamespaces=["default", "extra"])
    await wait_for(lambda: _labels(_get(fleet, "v1", "Namespace", "extra")).get("istio-injection") == "enabled", what="extra labelled")
    await _available(fleet, d, generation=2)
    await _quiet(d, resyncs=1)
    assert object_writes() == before + 1, master.requests.snapshot()
    await _spec(fleet, autoInjectionNamespaces=["default"])
    await _available(fleet, d, generation=3)
    await wait_for(lambda: "istio-injection" not in _labels(_get(fleet, "v1", "Namespace", "extra")), what="extra released")

    # mTLS on: MeshPolicy STRICT, both DestinationRules
    await _spec(fleet, mtls=True)
    await _available(fleet, d, generation=4)
    mp = _get(fleet, "authentication.istio.io/v1alpha1", "MeshPolicy", "default")
    assert mp is not None and mp["spec"]["peers"] == [{"mtls": {}}]
    assert _get(fleet, "networking.istio.io/v1alpha3", "DestinationRule", "default", "istio-system") is not None
    assert _get(fleet, "networking.istio.io/v1alpha3", "DestinationRule", "api-server", "istio-system") is not None
    # and off again
    await _spec(fleet, mtls=False)
    await _available(fleet, d, generation=5)
    await wait_for(lambda: _get(fleet, "networking.istio.io/v1alpha3", "DestinationRule", "default", "istio-system") is None)
    assert _get(fleet, "networking.istio.io/v1alpha3", "DestinationRule", "api-server", "istio-system") is None

    # injection: a hand-labelled namespace is never touched; one that does not exist
    # yet is labelled when it appears; one taken off the list loses both labels
    await _namespace(kc, "handmade")
    await kubectl(kc, "label", "namespace", "handmade", "istio-injection=disabled")
    await _spec(fleet, autoInjectionNamespaces=["default", "later", "handmade"])
    await _available(fleet, d, generation=6)
    assert _labels(_get(fleet, "v1", "Namespace", "handmade"))["istio-injection"] == "disabled"
    await _namespace(kc, "later")
    await wait_for(lambda: _labels(_get(fleet, "v1", "Namespace", "later")).get("istio-injection") == "enabled", what="later labelled")
    await _spec(fleet, autoInjectionNamespaces=["later", "handmade"])
    await wait_for(lambda: "istio-injection" not in _labels(_get(fleet, "v1", "Namespace", "default")), what="default unlabelled")
    assert not any(k.startswith("federationd.io") for k in _labels(_get(fleet, "v1", "Namespace", "default")))
    assert _get(fleet, "v1", "Namespace", "default") is not None
    await _available(fleet, d, generation=7)
    assert _labels(_get(fleet, "v1", "Namespace", "handmade"))["istio-injection"] == "disabled"
    assert await d.terminate() == 0


async def test_drift_is_repaired(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    kc = fleet["master"].kubeconfig_path
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    # a kubeconfig with several contexts: --context picks the master
    d = DaemonProcess(kubeconfig=fleet.merged_kubeconfig_path, log=tmp_path / "log.db", extra=["--context", "master"])
    daemons.append(d)
    await d.start()
    await wait_for(d.ready, timeout=30, what="ready")
    await _available(fleet, d)
    cm = _get(fleet, "v1", "ConfigMap", "istio", "istio-system")
    assert cm is not None
    mesh = cm["data"]["mesh"]
    # hand-edit a managed object, adding a label of one's own
    await kubectl(kc, "patch", "configmap", "istio", "-n", "istio-system", "--type", "merge",
                  "-p", json.dumps({"data": {"mesh": "broken: true"}, "metadata": {"labels": {"team": "mesh"}}}))
    await wait_for(lambda: (_get(fleet, "v1", "ConfigMap", "istio", "istio-system") or {})["data"]["mesh"] == mesh, what="edit repaired")
    assert _labels(_get(fleet, "v1", "ConfigMap", "istio", "istio-system"))["team"] == "mesh"
    # hand-delete one
    await kubectl(kc, "delete", "deployment", "istio-pilot", "-n", "istio-system")
    await wait_for(lambda: _get(fleet, "apps/v1", "Deployment", "istio-pilot", "istio-system") is not None, what="deletion repaired")
    await _available(fleet, d)
    events = await _events(tmp_path / "log.db", "ObjectDrifted")
    keys = {e["key"] for e in events}
    assert "v1/ConfigMap/istio-system/istio" in keys and "apps/v1/Deployment/istio-system/istio-pilot" in keys
    assert await d.terminate() == 0


async def _events(log: Path, type_: str) -> list[dict[str, Any]]:
    out = await _cli("events", "--log", str(log), "--type", type_, "--json")
    return [json.loads(line) for line in out.splitlines() if line]


async def _events_all(log: Path) -> list[dict[str, Any]]:
    out = await _cli("events", "--log", str(log), "--json")
    return [json.loads(line) for line in out.splitlines() if line]


async def _cli(*args: str, check: bool = True) -> str:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "federationd.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if check and proc.returncode != 0:
        raise AssertionError(f"federationd {' '.join(args)}: {err.decode()}")
    return out.decode()


async def test_refused_specs_change_nothing(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    kc = fleet["master"].kubeconfig_path
    master = fleet["master"]
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    d = await start_daemon(daemons, fleet, tmp_path / "log.db")
    await _available(fleet, d)
    def object_writes() -> int:
        # everything but the CR itself (status) and Kubernetes Events
        r = master.requests
        return r.mutating() - r.mutating("istios") - r.mutating("events")

    before = object_writes()

    await _spec(fleet, version="1.0.6", mtls=True)
    await wait_for(lambda: _status(fleet).get("Status") == "ReconcileFailed", what="ReconcileFailed")
    st = _status(fleet)
    assert st["ErrorMessage"] == "intended Istio version is unsupported by this version of the operator"
    assert st["observedGeneration"] == 2

    await _spec(fleet, version="1.2.8", mtls=True, localityLB={"enabled": True, "distribute": [{"from": "region-0/*", "to": {"region-0/*": 90, "region-1/*": 20}}]})
    await wait_for(lambda: "total locality weight 110 != 100" in str(_status(fleet).get("ErrorMessage")), what="locality error")
    assert _status(fleet)["Status"] == "ReconcileFailed"
    await _quiet(d, resyncs=1)
    # nothing but the CR status (and its Events) was written meanwhile
    assert object_writes() == before, master.requests.snapshot()
    assert _get(fleet, "networking.istio.io/v1alpha3", "DestinationRule", "default", "istio-system") is None
    out = await kubectl(kc, "get", "events", "-n", "istio-system", "-o", "json")
    reasons = {e["reason"] for e in json.loads(out)["items"] if e["involvedObject"]["kind"] == "Istio"}
    assert {"Available", "ReconcileFailed"} <= reasons

    # fixed: applied, Available again
    await _spec(fleet, localityLB={"enabled": True, "distribute": [{"from": "region-0/*", "to": {"region-0/*": 90, "region-1/*": 10}}]})
    await _available(fleet, d, generation=4)
    assert _get(fleet, "networking.istio.io/v1alpha3", "DestinationRule", "default", "istio-system") is not None
    mesh = yaml.safe_load(_get(fleet, "v1", "ConfigMap", "istio", "istio-system")["data"]["mesh"])  # type: ignore[index]
    assert mesh["localityLbSetting"]["distribute"][0]["to"] == {"region-0/*": 90, "region-1/*": 10}

    # deleting the Istio uninstalls: managed objects go, injection labels are released
    await kubectl(kc, "delete", "istio", "istio", "-n", "istio-system")
    await wait_for(lambda: _get(fleet, "v1", "ConfigMap", "istio", "istio-system") is None, timeout=30, what="uninstalled")
    await wait_for(lambda: "istio-injection" not in _labels(_get(fleet, "v1", "Namespace", "default")), what="labels released")
    await wait_for(d.converged, timeout=30)
    assert _get(fleet, "apps/v1", "Deployment", "istio-pilot", "istio-system") is None
    assert _get(fleet, "v1", "Namespace", "istio-system") is not None  # not ours to delete
    assert await d.terminate() == 0


async def test_sigkill_restart_repeats_no_write_and_replay_matches(
    fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    kc = fleet["master"].kubeconfig_path
    master = fleet["master"]
    log = tmp_path / "log.db"
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    d = await start_daemon(daemons, fleet, log, extra=["--snapshot-every", "50"])
    await _available(fleet, d)
    await _spec(fleet, mtls=True)
    await _available(fleet, d, generation=2)
    history = (await d.debug("desired"))["history"]
    assert await d.terminate(signal.SIGKILL) == -signal.SIGKILL

    before, counts = master.requests.mutating(), master.requests.snapshot()
    head = len(await _events_all(log))
    d2 = await start_daemon(daemons, fleet, log, name="d2", extra=["--snapshot-every", "50"])
    await _quiet(d2, resyncs=1)
    after = master.requests.snapshot()
    assert master.requests.mutating() == before, sorted((k, n - counts.get(k, 0)) for k, n in after.items() if n != counts.get(k, 0) and k.split()[0] not in ("get", "list", "watch"))
    # re-listing an unchanged cluster appends nothing: only the new leadership
    assert [e["type"] for e in (await _events_all(log))[head:]] == ["LeadershipAcquired"]
    assert "restored seq" in d2.stderr() and "snapshot None" not in d2.stderr().split("restored seq")[-1].splitlines()[0]

    # replaying the log reproduces the desired state the first daemon had at each seq
    for seq, h in history[:: max(1, len(history) // 6)] + history[-1:]:
        out = await _cli("replay", "--log", str(log), "--until", str(seq), "--hash", "--no-snapshot")
        assert out.split() == [str(seq), h], (seq, out)
    # and explain names the spec change that produced a DestinationRule and its write
    out = await _cli("explain", "--log", str(log), "master", "DestinationRule/istio-system/default")
    assert "IstioSpecChanged" in out.split("derived from:")[1].split("desired content over time:")[0]
    assert "ActuationApplied" in out.split("writes and drift:")[1]
    assert await d2.terminate() == 0
    # a clean stop leaves a snapshot of everything: the next start folds nothing
    d3 = await start_daemon(daemons, fleet, log, name="d3")
    restored = d3.stderr().split("restored seq ")[-1].splitlines()[0]
    seq = restored.split()[0]
    assert restored.startswith(f"{seq} (snapshot {seq}, 0 events folded)"), restored
    assert await d3.terminate() == 0


async def test_two_daemons_one_leader_and_failover(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    kc = fleet["master"].kubeconfig_path
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    lease = ["--leader-elect", "--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.5"]
    a = await start_daemon(daemons, fleet, tmp_path / "a.db", name="a", extra=lease)
    b = await start_daemon(daemons, fleet, tmp_path / "b.db", name="b", extra=lease)

    async def leaders() -> list[str]:
        out = []
        for d in (a, b):
            if d.proc is not None and d.proc.returncode is None and (await d.debug("converged"))["leader"]:
                out.append(d.name)
        return out

    await wait_for(lambda: _status(fleet).get("Status") == "Available", timeout=60)
    await wait_for(lambda: _one(leaders), timeout=30, what="one leader")
    first = (await leaders())[0]
    leader, standby = (a, b) if first == "a" else (b, a)
    lease_obj = _get(fleet, "coordination.k8s.io/v1", "Lease", "federationd", "istio-system")
    assert lease_obj is not None and lease_obj["spec"]["holderIdentity"] == first
    await wait_for(leader.converged, timeout=30)
    # only the leader writes: the standby's log holds facts, no actuation
    assert not [e for e in await _events_all(standby.log) if e["type"].startswith("Actuation")]
    assert await leader.terminate(signal.SIGKILL) == -signal.SIGKILL
    await wait_for(lambda: _is_leader(standby), timeout=30, what="failover")
    # the new leader actuates: a hand deletion is repaired
    await kubectl(kc, "delete", "configmap", "istio", "-n", "istio-system")
    await wait_for(lambda: _get(fleet, "v1", "ConfigMap", "istio", "istio-system") is not None, timeout=30)
    assert await standby.terminate() == 0
    # released on a clean stop
    lease_obj = _get(fleet, "coordination.k8s.io/v1", "Lease", "federationd", "istio-system")
    assert lease_obj is not None and not lease_obj["spec"].get("holderIdentity")


async def _one(leaders: Any) -> bool:
    return len(await leaders()) == 1


async def _is_leader(d: DaemonProcess) -> bool:
    return bool((await d.debug("converged"))["leader"])


async def test_hostname_load_balancers_are_resolved(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    from federationd.sim import ClusterSpec

    from .conftest import install_crds

    hosts = tmp_path / "hosts"
    async with Fleet([ClusterSpec(name="master", lb="hostname")], directory=tmp_path / "fleet") as fleet:
        install_crds(fleet)
        kc = fleet["master"].kubeconfig_path
        await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
        d = await start_daemon(daemons, fleet, tmp_path / "log.db", extra=["--hosts-file", str(hosts), "--resolve-period", "0.3"])

        def lb_hostname() -> str | None:
            return fleet["master"].behaviours.load_balancer_address("istio-system", "istio-ingressgateway")

        await wait_for(lambda: lb_hostname() is not None, timeout=30, what="a load-balancer hostname")
        host = lb_hostname()
        assert host is not None and not host[0].isdigit()
        await asyncio.to_thread(hosts.write_text, f"203.0.113.7 {host}\n")
        await wait_for(lambda: _status(fleet).get("GatewayAddress") == ["203.0.113.7"], timeout=30, what="resolved gateway address")
        # the load balancer's IP moves: the status follows at the next re-resolution
        await asyncio.to_thread(hosts.write_text, f"203.0.113.8 {host}\n")
        await wait_for(lambda: _status(fleet).get("GatewayAddress") == ["203.0.113.8"], timeout=30, what="re-resolved")
        assert await d.terminate() == 0
