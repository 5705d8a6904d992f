"""End to end: the Lightstep access token reaches the cluster and nothing else (DESIGN §2
rule 5) — not the event log, replay/state/explain output, /debug, /metrics or log lines."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from federationd import secretref
from federationd.sim import Fleet

from .conftest import DaemonProcess, kubectl, start_daemon
from .test_e2e import _available, _cli, _get, _quiet
from .waiting import wait_for

TOKEN = "tok-SECRET-123"
NEW_TOKEN = "tok-SECRET-456"
CR = {
    "apiVersion": "istio.banzaicloud.io/v1beta1",
    "kind": "Istio",
    "metadata": {"name": "istio"},
    "spec": {
        "mtls": False,
        "autoInjectionNamespaces": ["default"],
        "tracing": {
            "enabled": True,
            "tracer": "lightstep",
            "lightstep": {"address": "lightstep-satellite:8080", "accessToken": TOKEN, "secure": True},
        },
    },
}


def _mesh_token(fleet: Fleet) -> str | None:
    cm = _get(fleet, "v1", "ConfigMap", "istio", "istio-system")
    if cm is None:
        return None
    mesh = yaml.safe_load(cm["data"]["mesh"])
    return str(mesh["defaultConfig"]["tracing"]["lightstep"]["accessToken"])


def _gateway_args(fleet: Fleet) -> list[str]:
    dep = _get(fleet, "apps/v1", "Deployment", "istio-ingressgateway", "istio-system")
    assert dep is not None
    (container,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "istio-proxy"]
    return list(container["args"])


def _log_bytes(log: Path) -> bytes:
    files = sorted(log.parent.glob(log.name + "*"))
    assert files, log
    return b"".join(p.read_bytes() for p in files)


async def _leaks(d: DaemonProcess, log: Path, secret: str) -> list[str]:
    """Every place an operator can look at, that shows ``secret``."""
    found = []
    if secret.encode() in _log_bytes(log):
        found.append("event log files")
    for name in ("state", "converged", "actuators"):
        status, body = await d.get(f"/debug/{name}")
        if status == 200 and secret in body:
            found.append(f"/debug/{name}")
    _, metrics = await d.get("/metrics")
    if secret in metrics:
        found.append("/metrics")
    outputs = {
        "replay": await _cli("replay", "--log", str(log)),
        "state": await _cli("state", "--log", str(log)),
        "events": await _cli("events", "--log", str(log), "--json"),
        "explain": await _cli("explain", "master", "ConfigMap/istio-system/istio", "--log", str(log), check=False),
    }
    found += [f"federationd {n}" for n, out in outputs.items() if secret in out]
    if secret in d.stderr():
        found.append("daemon stderr")
    return found


async def test_lightstep_token_reaches_the_cluster_only(
    fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    master = fleet["master"]
    kc = master.kubeconfig_path
    log = tmp_path / "log.db"
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=json.dumps(CR))
    d = await start_daemon(daemons, fleet, log)
    await _available(fleet, d, generation=1)

    # the cluster gets the real value: the mesh config and the proxies' flags
    assert _mesh_token(fleet) == TOKEN
    args = _gateway_args(fleet)
    assert args[args.index("--lightstepAccessToken") + 1] == TOKEN
    ref = secretref.placeholder(secretref.LIGHTSTEP_ACCESS_TOKEN, TOKEN)
    for name, kind in (("istio", "ConfigMap"), ("istio-sidecar-injector", "ConfigMap")):
        obj = _get(fleet, "v1", kind, name, "istio-system")
        assert obj is not None and "federationd-secret" not in json.dumps(obj), name

    # what is recorded and shown carries the placeholder, never the value
    replay = await _cli("replay", "--log", str(log))
    assert ref in replay
    assert await _leaks(d, log, TOKEN) == []

    # a resync after convergence writes nothing (in effect = the completed body)
    await _quiet(d, resyncs=1)
    before = master.requests.mutating()
    await _quiet(d, resyncs=2)
    assert master.requests.mutating() == before, master.requests.snapshot()

    # a new token is a spec change: re-rendered and applied with the new value
    await kubectl(
        kc, "patch", "istio", "istio", "-n", "istio-system", "--type", "merge",
        "-p", json.dumps({"spec": {"tracing": {"lightstep": {"accessToken": NEW_TOKEN}}}}),
    )
    await wait_for(lambda: _mesh_token(fleet) == NEW_TOKEN, timeout=60, what="new token applied")
    await _available(fleet, d, generation=2)
    args = _gateway_args(fleet)
    assert args[args.index("--lightstepAccessToken") + 1] == NEW_TOKEN
    await _quiet(d, resyncs=1)
    before = master.requests.mutating()
    await _quiet(d, resyncs=1)
    assert master.requests.mutating() == before, master.requests.snapshot()
    assert await _leaks(d, log, TOKEN) == []
    assert await _leaks(d, log, NEW_TOKEN) == []

    assert await d.terminate() == 0
    assert TOKEN.encode() not in _log_bytes(log) and NEW_TOKEN.encode() not in _log_bytes(log)
    spec_events = [
        json.loads(line)
        for line in (await _cli("events", "--log", str(log), "--type", "IstioSpecChanged", "--json")).splitlines()
        if line
    ]
    # both tokens were recorded, each as its fingerprint
    recorded = [e["spec"]["tracing"]["lightstep"]["accessToken"] for e in spec_events]
    assert recorded[0] == ref and recorded[-1] == secretref.placeholder(secretref.LIGHTSTEP_ACCESS_TOKEN, NEW_TOKEN)
