"""Component readiness in the CR status: which workloads count as ready, and what a
Reconciling status names.

A workload is ready only when its readiness fact has caught up with the write that
changed it (the fact's observed generation ≥ the generation our last write produced)
and its ready replicas reach the desired count; a workload nobody has observed is not.
"""

from __future__ import annotations

from events import types as ev
from federationd.projections import derive as d
from federationd.projections.derive import derive

from .helpers import MASTER, SEED_000, Log, applied, istio, workload, workloads_ready

GALLEY = "apps/v1/Deployment/istio-system/istio-galley"
PILOT = "apps/v1/Deployment/istio-system/istio-pilot"


def _status(log: Log) -> dict[str, object]:
    return derive(log.state).statuses["Istio/istio-system/istio"].status


def _apply_all(log: Log, *, generation: int = 1) -> dict[str, d.DesiredObject]:
    """Every desired master object written, each write producing ``generation``."""
    objects = derive(log.state).clusters["master"].objects
    for key, o in objects.items():
        log.add(applied(key, o.content_hash, generation=generation))
    return objects


def _available(log: Log) -> dict[str, d.DesiredObject]:
    log.add(istio(SEED_000))
    objects = _apply_all(log)
    log.add(*workloads_ready(objects))
    assert _status(log)["Status"] == d.AVAILABLE
    return objects


def test_a_workload_nobody_has_observed_is_not_ready() -> None:
    log = Log()
    log.add(istio(SEED_000))
    objects = _apply_all(log)
    facts = [f for f in workloads_ready(objects) if f.name != "istio-galley"]
    log.add(*facts)
    st = _status(log)
    assert st["Status"] == d.RECONCILING
    assert st["ErrorMessage"] == "waiting for: Deployment istio-galley (not observed yet)"
    log.add(workload("Deployment", "istio-galley"))
    assert _status(log)["Status"] == d.AVAILABLE


def test_reconciling_names_what_is_not_ready_sorted_and_short() -> None:
    log = Log()
    _available(log)
    log.add(workload("Deployment", "istio-pilot", ready=False, desired=2))
    log.add(workload("Deployment", "istio-galley", ready=False))
    st = _status(log)
    assert st["Status"] == d.RECONCILING
    message = "waiting for: Deployment istio-galley (0/1 ready), Deployment istio-pilot (0/2 ready)"
    assert st["ErrorMessage"] == message
    assert {c["type"]: c["message"] for c in st["conditions"]}["Available"] == message  # type: ignore[attr-defined]
    # deterministic: derived again from the same state, the same text
    assert _status(log) == st


def test_a_long_list_is_cut_short() -> None:
    log = Log()
    objects = _available(log)
    names = sorted(o.obj["metadata"]["name"] for o in objects.values() if o.obj["kind"] == "Deployment")
    assert len(names) > d.WAITING_NAMED
    log.add(*[workload("Deployment", n, ready=False) for n in names])
    message = str(_status(log)["ErrorMessage"])
    assert message.endswith(f" and {len(names) - d.WAITING_NAMED} more")
    assert message.count("(0/1 ready)") == d.WAITING_NAMED


def test_readiness_older_than_the_write_does_not_count() -> None:
    log = Log()
    objects = _available(log)
    # a spec change rewrote pilot (generation 2); the last fact is the rollout of generation 1
    log.add(applied(PILOT, objects[PILOT].content_hash, generation=2))
    st = _status(log)
    assert st["Status"] == d.RECONCILING
    assert "Deployment istio-pilot (update not observed yet, 1/1 ready)" in str(st["ErrorMessage"])
    # the controller saw generation 2 but the rollout is not done
    log.add(workload("Deployment", "istio-pilot", ready=False, generation=2))
    assert _status(log)["Status"] == d.RECONCILING
    log.add(workload("Deployment", "istio-pilot", generation=2))
    assert _status(log)["Status"] == d.AVAILABLE


def test_a_write_that_kept_the_generation_is_satisfied_by_the_fact_already_there() -> None:
    """Status never sticks in Reconciling: re-applying an unchanged spec (after drift of an
    annotation, or a verify after a restart) keeps the generation, and no new readiness
    fact will come — the one in the state already satisfies it."""
    log = Log()
    objects = _available(log)
    log.add(ev.ObjectDrifted(cluster=MASTER, key=PILOT, time=3000))
    assert _status(log)["Status"] == d.RECONCILING
    log.add(applied(PILOT, objects[PILOT].content_hash, generation=1, t=3001))
    assert _status(log)["Status"] == d.AVAILABLE
    log.add(applied(GALLEY, objects[GALLEY].content_hash, verb="verify", generation=1, t=3002))
    assert _status(log)["Status"] == d.AVAILABLE


def test_a_failed_write_keeps_the_generation_the_last_good_one_produced() -> None:
    log = Log()
    objects = _available(log)
    log.add(applied(PILOT, objects[PILOT].content_hash, generation=2))
    log.add(
        ev.ActuationFailed(
            cluster=MASTER, key=PILOT, time=3000, verb="apply", content_hash="other", latency=0.01,
            error="ApiUnavailable: try again",
        )
    )
    assert log.state.actuations["master"][PILOT].generation == 2
    assert "istio-pilot (update not observed yet" in str(_status(log)["ErrorMessage"])
