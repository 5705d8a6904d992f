"""The Istio CR's ``MeshAnalyzed`` condition: the checks of ``federationd analyze`` on the
derived mesh, reported by the running daemon's status.

The seed workflows analyze clean on the Kubernetes release the simulated fleets run
(1.16); a defect of issue 11 put back into rendering (the 1.2 injector ConfigMap without
its ``values`` key) turns the condition ``False`` with the message and fix
``federationd analyze --log`` prints for the same log, and the condition recovers when
the defect goes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest

from events import types as ev
from events.log import EventLog
from federationd import analyze as a
from federationd.projections import analysis
from federationd.projections import derive as d
from federationd.projections.state import EMPTY, ProjectionState, fold
from federationd.render.components import injector
from tests.projections.helpers import Rec, apis
from tests.render.test_analyze import MASTER, REMOTE, SEEDS, _events, _spec

NS = "istio-system"


def _fleet_events(seed: str) -> list[ev.Event]:
    """The seed's mesh as the daemon records it on a 1.16 fleet (with a remote when the
    seed federates, as ``federationd analyze``'s own tests build it), discovery included."""
    federated = bool(_spec(seed).get("meshExpansion"))
    return [*_events(_spec(seed), remote=federated), apis(MASTER, time=3), *([apis(REMOTE, time=3)] if federated else [])]


def _fleet_state(seed: str) -> ProjectionState:
    state = EMPTY
    for i, e in enumerate(_fleet_events(seed), 1):
        state = fold(state, Rec(i, e))
    return state


def _condition(state: ProjectionState) -> dict[str, str]:
    st = d.derive(state).statuses[d.status_key(d.ISTIO_KIND, NS, "istio")].status
    (cond,) = [c for c in st["conditions"] if c["type"] == "MeshAnalyzed"]
    return dict(cond)


@pytest.fixture(autouse=True)
def cold_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test derives with a memo of its own (a monkeypatched render must not be
    answered from another test's cache, nor leave its objects behind)."""
    monkeypatch.setattr(d, "_memo", d._Memo())


@pytest.mark.parametrize("seed", SEEDS)
def test_the_seed_workflows_analyze_clean_in_the_condition(seed: str) -> None:
    state = _fleet_state(seed)
    cond = _condition(state)
    assert (cond["status"], cond["reason"]) == ("True", "NoFindings"), cond
    # nothing but notes on what the derived state cannot show (multi-mesh: the cluster's DNS)
    spec = _spec(seed)
    clusters = ["master", "remote-eu"] if spec.get("meshExpansion") else ["master"]
    notes = [f"info multimesh-cluster-dns [{c}]" for c in clusters] if spec.get("multiMesh") else []
    assert [m.split(":")[0] for m in cond["message"].splitlines()] == (notes or ["every check passed"])
    # the same verdict the command gives for this state
    assert analysis.condition(a.analyze(a.view_from_state(state))) == (cond["status"], cond["reason"], cond["message"])


def test_a_reintroduced_defect_shows_with_the_message_analyze_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = _fleet_state("everything-1.2")
    assert _condition(state)["status"] == "True"

    # Defect 1 of issue 11: the 1.2 injector's ConfigMap (and its volume) without `values`.
    monkeypatch.setattr(injector, "config_map_keys", lambda ctx: ("config",))
    monkeypatch.setattr(d, "_memo", d._Memo())
    cond = _condition(state)
    assert cond["status"] == "False" and cond["reason"] == "ErrorsFound", cond

    # `federationd analyze --log` on a log holding the same events prints the finding;
    # the condition carries its message and fix word for word.
    events = _fleet_events("everything-1.2")

    async def write() -> None:
        log = await EventLog.open(tmp_path / "log.db")
        try:
            await log.append(events)
        finally:
            await log.close()

    asyncio.run(write())
    assert a.main(["analyze", "--log", str(tmp_path / "log.db"), "--json"]) == 1
    printed = [msgspec.convert(f, a.Finding) for f in json.loads(capsys.readouterr().out)]
    errors = [f for f in printed if f.severity == "error"]
    # on the master and the remote, both running the 1.2 injector
    assert {(f.check, f.clusters) for f in errors} == {
        ("injector-configmap-keys", ("master",)), ("injector-configmap-keys", ("remote-eu",))
    }
    for f in errors:
        assert "values" in f.message
        assert f"error {f.check} [{f.clusters[0]}]: {f.message} (fix: {f.fix})" in cond["message"].splitlines()
    # the condition is exactly what the printed findings make
    assert analysis.condition(printed) == (cond["status"], cond["reason"], cond["message"])
    assert a.main(["analyze", "--log", str(tmp_path / "log.db")]) == 1
    assert errors[0].message in capsys.readouterr().out

    # the defect fixed: the next derivation of the same state is clean again
    monkeypatch.undo()
    monkeypatch.setattr(d, "_memo", d._Memo())
    assert _condition(state)["status"] == "True"


def test_a_change_re_runs_only_the_checks_it_can_affect(monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote's gateway change rewrites every cluster's ``istio`` ConfigMap and nothing
    else (pilot's config hash covers which registry is which network, not gateways):
    the checks across clusters run again, no cluster's own checks do (they do not read
    that ConfigMap)."""
    state = _fleet_state("everything-1.2")
    _condition(state)
    calls: list[str] = []
    per_cluster, across = analysis.cluster_findings, analysis.mesh_findings
    monkeypatch.setattr(analysis, "cluster_findings", lambda view, c: calls.append(c.name) or per_cluster(view, c))
    monkeypatch.setattr(analysis, "mesh_findings", lambda view: calls.append("*") or across(view))
    moved = fold(state, Rec(state.seq + 1, ev.GatewayAddressesObserved(
        cluster=REMOTE, key=f"Service/{NS}/istio-ingressgateway", time=4, namespace=NS, name="istio-ingressgateway",
        service_type="LoadBalancer", ips=("13.48.20.31",), ports={"https": 443},
    )))
    assert _condition(moved)["status"] == "True"
    assert calls == ["*"]


def test_a_long_list_of_findings_is_cut_with_a_count() -> None:
    many = [
        analysis.Finding(severity="warning", check=f"check-{i:03}", clusters=("master",), objects=(), message="m" * 100, fix="f")
        for i in range(100)
    ]
    status, reason, message = analysis.condition(many)
    assert (status, reason) == ("False", "WarningsFound")
    lines = message.splitlines()
    assert len(message) <= analysis.CONDITION_MESSAGE_LIMIT
    shown = len(lines) - 1
    assert lines[-1] == f"and {100 - shown} more (federationd analyze lists them)" and shown > 10
    assert lines[0].startswith("warning check-000 [master]: ")


def test_a_check_across_clusters_shows_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 7 of issue 11 put back: the master no longer labels the remote's kubeconfig
    Secret ``istio/multiCluster``, so pilot would never read the remote's endpoints."""
    state = _fleet_state("seed-002-1.1.11")
    monkeypatch.setattr(d, "_remote_secret_labels", lambda state: [])
    cond = _condition(state)
    (finding,) = [f for f in a.analyze(a.view_from_state(state)) if f.severity == "error"]
    assert finding.check == "remote-registry-secret" and finding.clusters == ("master", "remote-eu")
    assert (cond["status"], cond["reason"]) == ("False", "ErrorsFound")
    assert f"error remote-registry-secret [master,remote-eu]: {finding.message} (fix: {finding.fix})" in cond["message"].splitlines()
