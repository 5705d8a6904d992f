"""The alerts and the dashboard against the real Prometheus scraping the real daemon.

One simulated fleet (a master and the remote ``remote-gke``, joined through the seed-001
workflow with the samples in ``deploy/samples``) and one ``prometheus`` process serve the
whole module; the tests run in file order, each a scenario that ends with the fleet
healthy again:

* healthy — no alert is ever active (not even pending), and every dashboard query except
  the leader-election ones returns series with values;
* the remote partitioned (emulator fault injection) → ``FederationdRemoteClusterUnreachable``;
* a kubeconfig that would run a program → ``FederationdClusterCredentialsRejected``;
* every write to the remote failing → ``FederationdActuationsFailing``;
* every write answered 3 s late while the master's gateway keeps changing address →
  ``FederationdConvergenceSlow``;
* two replicas with ``--leader-elect`` replace the single one: one leads, nothing fires;
* a third replica, a standby whose fold is held back (``--debug-fold-delay``, the fire
  drill), while namespaces are relabelled faster than it folds →
  ``FederationdProjectionLagGrowing`` for that replica, until it catches up;
* the leader killed → ``FederationdNoLeader`` until the standby takes over; then the last
  replica stopped → ``FederationdDown``.

Each alert must fire in its scenario, with the labels that name the culprit, and no other
alert may fire meanwhile; each panel must show its scenario. Prometheus scrapes every
second and evaluates every second, and the rules are ``deploy/prometheusrule.yaml``'s with
every ``for:`` and range selector divided by 60 (``scale_durations``): "unreachable for 5
minutes" fires after 5 seconds, a ``rate(...[5m])`` looks at 5 seconds. Thresholds are
unchanged but FederationdConvergenceSlow's (``CONVERGENCE_SLOW``) and
FederationdProjectionLagGrowing's (``LAG_GROWING``). A daemon folds what it appends
faster than its watches can feed it facts (a burst of 2000 Namespaces, even with a
snapshot saved after every event, sampled 4 times a second never showed a lag above 50), so that
alert's scenario holds one replica's fold back with the flag made for that fire drill:
the lag it shows is real (its projection is that many events behind its log), only its
cause is chosen. Waiting is always for a condition read from Prometheus' HTTP API, with a
deadline; the only fixed windows are the ones an alert must stay silent for.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from federationd.sim import Fleet
from tests.daemon.conftest import DaemonProcess, install_crds, kubectl, start_daemon
from tests.daemon.waiting import wait_for
from tests.e2e.support import inventory

from .prometheus import (
    INSTALL_HINT,
    PrometheusServer,
    binary,
    finite,
    latest,
    panels,
    rule_groups,
    scale_durations,
    substitute,
)

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(binary("prometheus") is None, reason=f"prometheus is not installed: {INSTALL_HINT}"),
]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deploy" / "samples"
NS = "istio-system"
REMOTE = "remote-gke"
BAD = "remote-bad"
#: 1 minute in the rules is 1 second here.
SCALE = 60
#: Grafana's $__rate_interval: 4 scrape intervals (1 s) when that exceeds the step (1 s).
RATE_INTERVAL = "4s"
#: What Grafana puts in for the variables: the job, and "All" clusters.
VARIABLES = {"job": "federationd", "cluster": ".*", "__rate_interval": RATE_INTERVAL}
#: Panels only a daemon run with --leader-elect fills.
LEADER_PANELS = {"Leaders", "Leader by replica"}
#: The longest range selector of the scaled rules, plus a few evaluations: a condition
#: that holds is active (pending) by then.
SILENCE = 10 + 4
#: FederationdConvergenceSlow's threshold here (30 s in the rule): a p99 above 30 s for
#: scaled minutes would need writes held back for longer than a scenario lasts, so the
#: threshold is divided by 6 (a bucket boundary of federationd_convergence_seconds). A
#: healthy installation stays far below it (its p99 is 1-2.5 s here).
CONVERGENCE_SLOW = 5
#: FederationdProjectionLagGrowing's threshold here (1000 events in the rule), divided by
#: 10 for the same reason: with the lagging replica folding at most 1 / FOLD_DELAY events
#: a second, 1000 events behind for scaled minutes would take a minute to pile up and
#: another to fold. A replica that is not held back stays far below it (its lag is 0 at
#: nearly every scrape; at most a few dozen in a burst of thousands of facts).
LAG_GROWING = 100
#: --debug-fold-delay of the lagging replica: each event waits 20 ms before it is folded.
FOLD_DELAY = 0.02
#: Namespaces per cluster the chatty scenario relabels, and its pace (changes a second,
#: all clusters together): well above what the lagging replica folds, well within what
#: one reflector per cluster appends.
CHATTY_NAMESPACES = 10
CHATTY_RATE = 160
ALERTS = {r["alert"] for g in rule_groups()["groups"] for r in g["rules"]}

BAD_KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": BAD,
    "clusters": [{"name": BAD, "cluster": {"server": "https://127.0.0.1:1"}}],
    "contexts": [{"name": BAD, "context": {"cluster": BAD, "user": BAD}}],
    "users": [{"name": BAD, "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws-iam-authenticator",
        "args": ["token", "-i", BAD]}}}],
}


# --- what Prometheus says ----------------------------------------------------------------------


Alert = tuple[str, str, tuple[tuple[str, str], ...]]  # (alertname, state, labels)

#: The alert recorder's sampling period (s): half Prometheus' 1 s rule evaluation, so no
#: evaluated state is missed. A recording cadence, not a wait for anything: every test
#: waits on its own condition with a deadline.
SAMPLE_EVERY = 0.5


@dataclass
class AlertLog:
    """Every active alert Prometheus listed, polled twice a second for the whole module."""

    prom: PrometheusServer
    seen: list[tuple[float, frozenset[Alert]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            try:
                now = time.time()
                alerts = frozenset(
                    (a["labels"]["alertname"], a["state"],
                     tuple(sorted((k, v) for k, v in a["labels"].items() if k != "alertname")))
                    for a in await self.prom.alerts())
                self.seen.append((now, alerts))
            except Exception as e:  # reported by the tests, not lost in a task
                self.errors.append(repr(e))
            await asyncio.sleep(SAMPLE_EVERY)

    def now(self) -> frozenset[Alert]:
        return self.seen[-1][1] if self.seen else frozenset()

    def since(self, t: float) -> set[Alert]:
        return {a for when, alerts in self.seen if when >= t for a in alerts}

    def active(self, alert: str, /, state: str | None = None, **labels: str) -> bool:
        return any(
            a[0] == alert and (state is None or a[1] == state) and set(labels.items()) <= set(a[2])
            for a in self.now())

    async def wait_firing(self, alert: str, /, *, timeout: float = 60, **labels: str) -> None:  # noqa: ASYNC109 - a deadline for a polled condition
        await wait_for(lambda: self.active(alert, "firing", **labels), timeout=timeout,
                       what=f"{alert} {labels} firing (active: {sorted(self.now())})")

    async def wait_inactive(self, alert: str, /, *, timeout: float = 60) -> None:  # noqa: ASYNC109 - a deadline for a polled condition
        await wait_for(lambda: not self.active(alert), timeout=timeout,
                       what=f"{alert} inactive (active: {sorted(self.now())})")

    def assert_only(self, since: float, allowed: Iterable[str], *, firing_only: bool = False) -> None:
        """No alert but ``allowed`` was active since ``since`` (``firing_only``: pending
        ones are tolerated; they page nobody)."""
        assert not self.errors, self.errors
        others = {a for a in self.since(since)
                  if a[0] not in set(allowed) and (a[1] == "firing" or not firing_only)}
        assert not others, f"unexpected alerts: {sorted(others)}"


@dataclass
class Observed:
    fleet: Fleet
    prom: PrometheusServer
    alerts: AlertLog
    directory: Path
    daemons: list[DaemonProcess]
    d0: DaemonProcess
    #: When Prometheus first scraped the daemon (before the seed was applied).
    started: float
    #: The replicas with --leader-elect, once they replaced the single daemon.
    replicas: list[DaemonProcess] = field(default_factory=list)

    def scrape(self, *ds: DaemonProcess) -> None:
        """Prometheus scrapes exactly ``ds``, labelled as the Operator labels Pods."""
        self.prom.set_targets({d.url.removeprefix("http://"): {"namespace": NS, "pod": d.name} for d in ds})

    async def up(self, d: DaemonProcess) -> bool:
        return any(latest(s) == 1 for s in await self.prom.query(f'up{{pod="{d.name}"}}'))

    async def panel(self, title: str, *, since: float) -> dict[str, list[dict[str, Any]]]:
        """refId → the series with values each query of the panel gave since ``since``."""
        (p,) = [p for p in panels() if p.get("title") == title]
        out = {}
        for t in p["targets"]:
            expr = substitute(t["expr"], VARIABLES)
            out[t["refId"]] = finite(await self.prom.query_range(expr, start=since, end=time.time()))
        return out


def _test_rules() -> dict[str, Any]:
    rules = scale_durations(rule_groups(), SCALE)
    (slow,) = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "FederationdConvergenceSlow"]
    assert slow["expr"].rstrip().endswith("> 30"), slow["expr"]
    slow["expr"] = slow["expr"].rstrip().removesuffix("> 30") + f"> {CONVERGENCE_SLOW}"
    (lag,) = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "FederationdProjectionLagGrowing"]
    assert lag["expr"].rstrip().endswith("> 1000"), lag["expr"]
    lag["expr"] = lag["expr"].rstrip().removesuffix("> 1000") + f"> {LAG_GROWING}"
    return rules


async def _connected(o: Observed, cluster: str) -> bool:
    # for a few scrapes: the panels read the last seconds, not only the last sample
    q = f'min_over_time(federationd_cluster_state{{cluster="{cluster}", state="connected"}}[3s]) == 1'
    other = f'max_over_time(federationd_cluster_state{{cluster="{cluster}", state!="connected"}}[3s]) == 1'
    gateway = f'federationd_gateway_addresses{{cluster="{cluster}"}} == 1'
    return bool(await o.prom.query(q)) and not await o.prom.query(other) and bool(await o.prom.query(gateway))


async def _has(series: Awaitable[set[Any]], n: int) -> bool:
    return len(await series) >= n


def _remote_status(fleet: Fleet, name: str = REMOTE) -> dict[str, Any]:
    cr = fleet["master"].store.get("istio.banzaicloud.io/v1beta1", "RemoteIstio", name, NS) or {}
    return cr.get("status") or {}


async def _seed_001(fleet: Fleet) -> None:
    """The seed's workflow with the samples, as their headers say: the Istio, the remote's
    kubeconfig as a Secret named like the RemoteIstio, the RemoteIstio."""
    kc = fleet["master"].kubeconfig_path
    await kubectl(kc, "-n", NS, "create", "-f", str(SAMPLES / "istio-multicluster-cr.yaml"))
    await kubectl(kc, "-n", NS, "create", "secret", "generic", REMOTE,
                  f"--from-file={REMOTE}={fleet[REMOTE].kubeconfig_path}")
    await kubectl(kc, "-n", NS, "create", "-f", str(SAMPLES / "remoteistio-gke-cr.yaml"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def obs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Observed]:
    directory = tmp_path_factory.mktemp("prometheus-e2e")
    daemons: list[DaemonProcess] = []
    async with Fleet(["master", REMOTE], directory=directory / "fleet") as fleet:
        install_crds(fleet)
        prom = PrometheusServer(directory / "prometheus", rules=_test_rules())
        watcher: asyncio.Task[None] | None = None
        try:
            # The daemon first, so that Prometheus never runs without it (that is
            # FederationdDown, the last scenario).
            d0 = await start_daemon(daemons, fleet, directory / "d0.db", name="federationd-0")
            alerts = AlertLog(prom)
            o = Observed(fleet=fleet, prom=prom, alerts=alerts, directory=directory, daemons=daemons,
                         d0=d0, started=0.0)
            o.scrape(d0)
            await prom.start()
            watcher = asyncio.create_task(alerts.run(), name="alert log")
            await wait_for(lambda: o.up(d0), timeout=30, what="Prometheus scraping the daemon")
            # Prometheus evaluated FederationdDown before its first scrape (no target up
            # yet); when that scrape comes late the alert may have gone firing already.
            # The scenarios start from the first evaluation that saw the daemon up.
            await alerts.wait_inactive("FederationdDown", timeout=30)
            o.started = time.time()
            # Applied only now, so every write of the installation is in the scraped counters.
            await _seed_001(fleet)
            await wait_for(lambda: _remote_status(fleet).get("Status") == "Available"
                           and bool(_remote_status(fleet).get("GatewayAddress")), timeout=90, what="RemoteIstio Available")
            # The RemoteIstio may read Available before the remote's runtime connects:
            # settled is the remote connected, with its gateway address, as Prometheus
            # sees it, then converged.
            await wait_for(lambda: _connected(o, REMOTE), timeout=60, what=f"{REMOTE} connected in Prometheus")
            await wait_for(d0.converged, timeout=60, what="daemon converged")
            yield o
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await prom.stop()
            for d in daemons:
                if d.proc is not None and d.proc.returncode is None:
                    with contextlib.suppress(Exception):
                        await d.terminate(signal.SIGKILL, timeout=10)


# --- the scenarios ------------------------------------------------------------------------------


async def test_the_rules_load_and_evaluate(obs: Observed) -> None:
    rules = await obs.prom.rule_states()
    assert {r["name"] for r in rules} == ALERTS
    await wait_for(lambda: _evaluated(obs), timeout=10, what="every rule evaluated")
    bad = [(r["name"], r.get("lastError")) for r in await obs.prom.rule_states() if r["health"] != "ok"]
    assert not bad, bad


async def _evaluated(obs: Observed) -> bool:
    return all(r["health"] != "unknown" for r in await obs.prom.rule_states())


async def test_a_healthy_fleet_fires_nothing_and_fills_every_panel(obs: Observed) -> None:
    # Every panel but the leader-election ones has data from the seed-001 workflow on.
    titles = [p["title"] for p in panels() if p["type"] != "row" and p["title"] not in LEADER_PANELS]
    assert len(titles) == 12, titles

    async def empty() -> dict[str, list[str]]:
        out = {}
        for t in titles:
            missing = sorted(ref for ref, v in (await obs.panel(t, since=obs.started)).items() if not v)
            if missing:
                out[t] = missing
        return out

    async def filled() -> bool:
        return not await empty()

    with contextlib.suppress(AssertionError):
        await wait_for(filled, timeout=30, what="every panel filled")
    assert not await empty(), "panels without data on a healthy fleet"

    # Some values a platform engineer reads off them.
    states = await obs.panel("Cluster state", since=time.time() - 2)
    assert {(s["metric"]["cluster"], s["metric"]["state"]) for s in states["A"]} == {
        ("master", "connected"), (REMOTE, "connected")}
    gateways = (await obs.panel("Gateway addresses per cluster", since=time.time() - 2))["A"]
    assert {s["metric"]["cluster"]: latest(s) for s in gateways} == {"master": 1.0, REMOTE: 1.0}
    async def write_series() -> set[tuple[str, str]]:
        writes = (await obs.panel("Actuations by result", since=obs.started))["A"]
        return {(s["metric"]["cluster"], s["metric"]["result"]) for s in writes}

    # The remote's label sets appear with its runtime; Prometheus may not have scraped
    # them yet when the fleet reads converged.
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: _has(write_series(), 4), timeout=10, what="both clusters' write series")
    writes = (await obs.panel("Actuations by result", since=obs.started))["A"]
    assert {(s["metric"]["cluster"], s["metric"]["result"]) for s in writes} == {
        (c, r) for c in ("master", REMOTE) for r in ("success", "error")}, "label sets exported at 0"
    assert any(float(v) > 0 for s in writes if s["metric"]["result"] == "success" for _, v in s["values"])
    errors = (await obs.panel("Reconcile errors", since=obs.started))["A"]
    assert {s["metric"]["controller"] for s in errors} == {"converge-master", f"converge-{REMOTE}"}
    assert all(float(v) == 0 for s in errors for _, v in s["values"]), "no reconcile error on a healthy fleet"
    # The dashboard's variables offer the job and the clusters.
    assert await obs.prom.api("label/job/values", **{"match[]": "federationd_event_log_head"}) == ["federationd"]
    assert set(await obs.prom.api("label/cluster/values", **{"match[]": "federationd_cluster_state"})) == {"master", REMOTE}
    # Without --leader-elect there is no Lease: its panels stay empty ("off" in Grafana) and
    # nothing says "no leader".
    for t in LEADER_PANELS:
        assert not any((await obs.panel(t, since=obs.started)).values()), t

    # Nothing fired from the first scrape on, through the whole installation. (Pending is
    # allowed there: on a busy machine the installation's first writes may come more than
    # 30 s after their facts, which FederationdConvergenceSlow sees for one rate window,
    # far shorter than its for:.)
    assert obs.alerts.seen[0][0] < obs.started, "the alert log started late"
    obs.alerts.assert_only(obs.started, allowed=(), firing_only=True)
    # Converged, not even pending, for as long as any scaled rule needs to become active.
    await wait_for(lambda: not obs.alerts.now(), timeout=30, what=f"no alert active (active: {sorted(obs.alerts.now())})")
    quiet_from = time.time()
    await wait_for(lambda: time.time() - quiet_from > SILENCE, timeout=SILENCE + 5, what="silence window")
    obs.alerts.assert_only(quiet_from, allowed=())


async def test_a_partitioned_remote_fires_unreachable(obs: Observed) -> None:
    t0 = time.time()
    await obs.fleet[REMOTE].faults.partition(120)
    try:
        await obs.alerts.wait_firing("FederationdRemoteClusterUnreachable", cluster=REMOTE, namespace=NS, timeout=60)
        states = (await obs.panel("Cluster state", since=t0))["A"]
        assert (REMOTE, "unreachable") in {(s["metric"]["cluster"], s["metric"]["state"]) for s in states}
        by_state = (await obs.panel("Clusters by state", since=time.time() - 2))["A"]
        assert {s["metric"]["state"]: latest(s) for s in by_state} == {"connected": 1.0, "unreachable": 1.0}
        # Requests that got no answer at all are counted under code "<error>", as client-go does.
        requests = (await obs.panel("REST client requests by code", since=t0))["A"]
        assert any(float(v) > 0 for s in requests if s["metric"] == {"host": REMOTE, "code": "<error>"} for _, v in s["values"]), requests
    finally:
        await obs.fleet[REMOTE].faults.heal()
    await obs.alerts.wait_inactive("FederationdRemoteClusterUnreachable", timeout=60)
    await wait_for(lambda: _remote_status(obs.fleet).get("Status") == "Available", timeout=60, what="remote Available again")
    obs.alerts.assert_only(t0, allowed={"FederationdRemoteClusterUnreachable"})


async def test_a_rejected_kubeconfig_fires_credentials_rejected(obs: Observed) -> None:
    kc = obs.fleet["master"].kubeconfig_path
    bad = obs.directory / f"{BAD}.kubeconfig"
    bad.write_text(yaml.safe_dump(BAD_KUBECONFIG))
    remote_cr = yaml.safe_load((SAMPLES / "remoteistio-gke-cr.yaml").read_text())
    remote_cr["metadata"]["name"] = BAD
    t0 = time.time()
    await kubectl(kc, "-n", NS, "create", "secret", "generic", BAD, f"--from-file={BAD}={bad}")
    await kubectl(kc, "-n", NS, "create", "-f", "-", stdin=yaml.safe_dump(remote_cr))
    await obs.alerts.wait_firing("FederationdClusterCredentialsRejected", cluster=BAD, namespace=NS, timeout=60)
    assert "kubeconfig rejected" in str(_remote_status(obs.fleet, BAD).get("ErrorMessage"))
    by_state = (await obs.panel("Clusters by state", since=time.time() - 2))["A"]
    assert {s["metric"]["state"]: latest(s) for s in by_state} == {"connected": 2.0, "rejected": 1.0}
    # Gone with its RemoteIstio: no series is left behind to keep the alert firing.
    await kubectl(kc, "-n", NS, "delete", "remoteistio", BAD)
    await kubectl(kc, "-n", NS, "delete", "secret", BAD)
    await obs.alerts.wait_inactive("FederationdClusterCredentialsRejected", timeout=60)

    async def forgotten() -> bool:
        return not await obs.prom.query(f'federationd_cluster_state{{cluster="{BAD}"}}')

    await wait_for(forgotten, timeout=30, what=f"{BAD} gone from federationd_cluster_state")
    obs.alerts.assert_only(t0, allowed={"FederationdClusterCredentialsRejected"})


async def test_failing_writes_fire_actuations_failing(obs: Observed) -> None:
    remote = obs.fleet[REMOTE]
    accounts = sorted(k for k in inventory(remote) if k[1] == "ServiceAccount")
    assert accounts, "the remote has no ServiceAccount of ours"
    _, _, ns, name = accounts[0]
    t0 = time.time()
    # Every write to the remote answers 500 (server-side apply is a PATCH); an object
    # deleted behind federationd's back then cannot be put back.
    remote.faults.error_rate(rate=1.0, verb="patch", duration=120)
    try:
        await kubectl(remote.kubeconfig_path, "-n", ns, "delete", "serviceaccount", name)
        await obs.alerts.wait_firing("FederationdActuationsFailing", cluster=REMOTE, namespace=NS, timeout=60)
        since = t0
        writes = (await obs.panel("Actuations by result", since=since))["A"]
        assert any(float(v) > 0 for s in writes if s["metric"] == {"cluster": REMOTE, "result": "error"} for _, v in s["values"])
        errors = (await obs.panel("Reconcile errors", since=since))["A"]
        assert any(float(v) > 0 for s in errors if s["metric"] == {"controller": f"converge-{REMOTE}"} for _, v in s["values"])
        retries = (await obs.panel("Workqueue retries", since=since))["A"]
        assert any(float(v) > 0 for s in retries if s["metric"] == {"name": f"actuator-{REMOTE}"} for _, v in s["values"])
        requests = (await obs.panel("REST client requests by code", since=since))["A"]
        assert any(float(v) > 0 for s in requests if s["metric"] == {"host": REMOTE, "code": "500"} for _, v in s["values"]), requests
    finally:
        remote.faults.clear()
    await wait_for(lambda: remote.store.get("v1", "ServiceAccount", name, ns) is not None, timeout=30, what="ServiceAccount put back")
    await obs.alerts.wait_inactive("FederationdActuationsFailing", timeout=60)
    obs.alerts.assert_only(t0, allowed={"FederationdActuationsFailing"})


async def test_slow_writes_fire_convergence_slow(obs: Observed) -> None:
    # Both API servers answer every write 4 s late (under the daemon's 5 s request
    # timeout: slow, not failing), and the master's ingress gateway keeps changing
    # address, so every remote's rendered mesh networks change each time: each change
    # queues writes behind the slow ones, and the time from the gateway fact to its write
    # grows past the (scaled) threshold. (The queue folds the changes a key waits for
    # into one write, so a change waits one write in flight and its own: 4 to 8 s, well
    # past the 5 s threshold; at 3 s a write it was 3 to 6 s, and whether p99 crossed
    # 5 s depended on when the changes fell.)
    master = obs.fleet["master"]
    gateway = master.store.get("v1", "Service", "istio-ingressgateway", NS)
    assert gateway is not None, "the master has no ingress gateway"
    original = gateway.get("status") or {}
    t0 = time.time()
    for c in ("master", REMOTE):
        obs.fleet[c].faults.latency(4.0, verb="patch", duration=100)
    try:
        # It fires ~40 s in on a quiet machine (the latency must build up past the
        # threshold, then hold for the rule's scaled ``for``): the deadline leaves room
        # for a loaded one.
        deadline = time.monotonic() + 90
        i = 0
        while not obs.alerts.active("FederationdConvergenceSlow", "firing", namespace=NS):
            assert time.monotonic() < deadline, f"FederationdConvergenceSlow not firing (active: {sorted(obs.alerts.now())})"
            i += 1
            master.store.apply_status("v1", "Service", "istio-ingressgateway", NS,
                                      {"loadBalancer": {"ingress": [{"ip": f"10.9.0.{i}"}]}})
            # one change every 2.5 s: a paced load, bounded by the deadline above
            next_change = t0 + 2.5 * i
            await wait_for(lambda: time.time() > next_change, timeout=5, what="the next address change")  # noqa: B023 - awaited at once
        latency = await obs.panel("Convergence latency", since=t0)
        assert all(latency.values()), latency
        p99 = [float(v) for s in latency["B"] for _, v in s["values"] if math.isfinite(float(v))]
        assert max(p99) > CONVERGENCE_SLOW, p99
    finally:
        for c in ("master", REMOTE):
            obs.fleet[c].faults.clear()
        master.store.apply_status("v1", "Service", "istio-ingressgateway", NS, original)
    await obs.alerts.wait_inactive("FederationdConvergenceSlow", timeout=60)
    await wait_for(obs.d0.converged, timeout=60, what="daemon converged")
    obs.alerts.assert_only(t0, allowed={"FederationdConvergenceSlow"})


#: How the replicas of deploy/deployment.yaml elect their leader, with shorter timings.
ELECT = ["--leader-elect", "--lease-duration", "20", "--renew-deadline", "15", "--retry-period", "2"]


async def _leaders(obs: Observed) -> dict[str, float]:
    return {s["metric"]["pod"]: latest(s) for s in await obs.prom.query("leader_election_master_status")}


async def test_two_replicas_with_leader_election_replace_the_single_one(obs: Observed) -> None:
    # Two replicas as deploy/deployment.yaml runs them, replacing the single one; the
    # first is scraped before the single one stops, so a replica is always up.
    t0 = time.time()
    d1 = await start_daemon(obs.daemons, obs.fleet, obs.directory / "d1.db", name="federationd-1", extra=ELECT)
    obs.scrape(obs.d0, d1)
    await wait_for(lambda: obs.up(d1), timeout=30, what="federationd-1 scraped")
    assert await obs.d0.terminate() == 0, obs.d0.stderr()[-3000:]
    d2 = await start_daemon(obs.daemons, obs.fleet, obs.directory / "d2.db", name="federationd-2", extra=ELECT)
    obs.scrape(d1, d2)
    await wait_for(lambda: obs.up(d2), timeout=30, what="federationd-2 scraped")

    async def one_leader() -> bool:
        return sorted((await _leaders(obs)).values()) == [0.0, 1.0]

    await wait_for(one_leader, timeout=30, what="one leader, one standby")
    board = await obs.panel("Leaders", since=time.time() - 2)
    assert [(s["metric"], latest(s)) for s in board["A"]] == [({"name": "federationd"}, 1.0)]
    by_replica = (await obs.panel("Leader by replica", since=time.time() - 2))["A"]
    assert {s["metric"]["pod"] for s in by_replica} == {"federationd-1", "federationd-2"}
    obs.alerts.assert_only(t0, allowed=(), firing_only=True)
    obs.replicas[:] = [d1, d2]


def _chatter(fleet: Fleet, names: Sequence[tuple[str, str]], *, first: int, n: int) -> None:
    """Changes ``first`` to ``first + n`` (round robin over ``names``, (cluster, namespace)
    pairs): each rewrites a namespace's labels, as a controller that keeps relabelling
    namespaces would, and is a new ``NamespaceObserved`` fact for every replica."""
    for k in range(first, first + n):
        cluster, name = names[k % len(names)]
        store = fleet[cluster].store
        ns = store.get("v1", "Namespace", name)
        assert ns is not None, name
        ns["metadata"].setdefault("labels", {})["chatter"] = str(k)
        store.update(ns, check_version=False)


async def _projection_lag(d: DaemonProcess) -> float:
    """The replica's own gauge, read directly: steering the load must not wait for a scrape."""
    status, text = await d.get("/metrics")
    assert status == 200, text
    (value,) = [line.split()[1] for line in text.splitlines() if line.startswith("federationd_projection_lag_events ")]
    return float(value)


async def test_a_standby_folding_slowly_fires_projection_lag(obs: Observed) -> None:
    # A third replica whose fold is held back (--debug-fold-delay, the fire drill): it
    # folds at most 1 / FOLD_DELAY events a second. A standby, so that what it decides
    # late is never written. Then both clusters turn chatty: namespaces relabelled
    # CHATTY_RATE times a second, each change a fact every replica appends at once. The
    # other replicas fold as fast as they append; the held-back one's log grows faster
    # than its projection, and the alert names it. When the chatter stops, it catches up
    # and the alert resolves while it still runs.
    assert len(obs.replicas) == 2, "needs the two replicas with leader election"
    # The replicas' start is over: nothing active (pending included) from here on.
    await wait_for(lambda: not obs.alerts.now(), timeout=30, what=f"no alert active (active: {sorted(obs.alerts.now())})")
    names = [(c, f"chatty-{i}") for c in ("master", REMOTE) for i in range(CHATTY_NAMESPACES)]
    t0 = time.time()
    for c, name in names:
        obs.fleet[c].store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    lagging = await start_daemon(obs.daemons, obs.fleet, obs.directory / "d3.db", name="federationd-3",
                                 extra=[*ELECT, "--debug-fold-delay", str(FOLD_DELAY)], wait_ready=False)
    obs.scrape(*obs.replicas, lagging)
    try:
        # Not waiting for it to be ready: folding its initial lists is slow already.
        async def standby() -> bool:
            return await obs.up(lagging) and (await _leaders(obs)).get(lagging.name) == 0.0

        await wait_for(standby, timeout=30, what=f"{lagging.name} scraped, a standby")
        chatty_from = time.time()
        deadline = time.monotonic() + 40
        i = changes = 0
        while not obs.alerts.active("FederationdProjectionLagGrowing", "firing", pod=lagging.name, namespace=NS):
            assert time.monotonic() < deadline, f"FederationdProjectionLagGrowing not firing (active: {sorted(obs.alerts.now())})"
            # Held at a few times the threshold rather than left to grow: what piles up
            # must be folded before the alert resolves.
            if await _projection_lag(lagging) < 3 * LAG_GROWING:
                _chatter(obs.fleet, names, first=changes, n=CHATTY_RATE // 10)
                changes += CHATTY_RATE // 10
            i += 1
            # a tenth of the rate every 0.1 s: a paced load, bounded by the deadline above
            next_change = chatty_from + 0.1 * i
            await wait_for(lambda: time.time() > next_change, timeout=5, what="the next relabelling")  # noqa: B023 - awaited at once
        lag = (await obs.panel("Projection lag", since=chatty_from))["A"]
        peak = {s["metric"]["pod"]: max(float(v) for _, v in s["values"]) for s in lag}
        assert peak.keys() == {d.name for d in (*obs.replicas, lagging)}, peak
        assert peak.pop(lagging.name) > LAG_GROWING and max(peak.values()) < LAG_GROWING, peak
        # Behind, not stuck: its log took in the chatter like the others'.
        heads = {s["metric"]["pod"]: s["values"] for s in (await obs.panel("Event log head", since=chatty_from))["A"]}
        assert heads.keys() == {d.name for d in (*obs.replicas, lagging)}, heads
        grown = {pod: float(v[-1][1]) - float(v[0][1]) for pod, v in heads.items()}
        assert all(g > LAG_GROWING for g in grown.values()), grown
        # The chatter has stopped (it runs only in the loop above): it catches up, and
        # the alert resolves while the replica still runs.
        await obs.alerts.wait_inactive("FederationdProjectionLagGrowing", timeout=60)
        assert await obs.up(lagging)
    finally:
        obs.scrape(*obs.replicas)
        assert await lagging.terminate() == 0, lagging.stderr()[-3000:]
        for c, name in names:
            obs.fleet[c].store.remove("v1", "Namespace", name)
    obs.alerts.assert_only(t0, allowed={"FederationdProjectionLagGrowing"})


async def test_the_leader_killed_fires_no_leader_and_the_last_replica_stopped_fires_down(obs: Observed) -> None:
    assert len(obs.replicas) == 2, "needs the two replicas with leader election"
    d1, d2 = obs.replicas
    # The leader dies without releasing the Lease: until it expires nobody leads.
    status = await _leaders(obs)
    leader, standby = (d1, d2) if status["federationd-1"] == 1.0 else (d2, d1)
    killed = time.time()
    await leader.terminate(signal.SIGKILL)
    await obs.alerts.wait_firing("FederationdNoLeader", name="federationd", namespace=NS, timeout=30)
    assert (await _leaders(obs)).get(standby.name) == 0.0, "the alert fired after the standby took over"
    await wait_for(lambda: _leads(obs, standby), timeout=60, what=f"{standby.name} leading")
    await obs.alerts.wait_inactive("FederationdNoLeader", timeout=30)
    obs.alerts.assert_only(killed, allowed={"FederationdNoLeader"})

    # The last replica stops: no target is up. That is FederationdDown, and only that.
    stopped = time.time()
    assert await standby.terminate() == 0, standby.stderr()[-3000:]
    await obs.alerts.wait_firing("FederationdDown", timeout=30)
    obs.alerts.assert_only(stopped, allowed={"FederationdDown"}, firing_only=True)
    assert not obs.alerts.active("FederationdNoLeader")


async def _leads(obs: Observed, d: DaemonProcess) -> bool:
    return any(latest(s) == 1 for s in await obs.prom.query(f'leader_election_master_status{{pod="{d.name}"}}'))


