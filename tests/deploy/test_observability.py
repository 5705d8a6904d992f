"""The Grafana dashboard and the PrometheusRule in deploy/: their shape, and what the
registry exports from the start.

Whether every query names series federationd really serves, and whether every alert
fires when it should and only then, is decided by the real Prometheus, not here:
``test_rules.py`` runs promtool (``check rules`` and the unit tests in
``rules_test.yaml``) and ``test_prometheus_e2e.py`` runs the server against the daemon on
a simulated fleet. This file checks what needs no Prometheus: that the dashboard is a
well-formed Grafana dashboard whose panels tile the grid and use its variables, that the
PrometheusRule is a well-formed custom resource deployed next to the ServiceMonitor whose
job it selects, and that label sets known in advance are exported at 0 before anything
happens (a series born with its first increment is invisible to ``rate()``).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from federationd.metrics import CLUSTER_STATES, Metrics

from .prometheus import RULE, dashboard, panels, rule_groups, variables

DEPLOY = RULE.parent

#: Variables Grafana defines itself.
GRAFANA_BUILTINS = frozenset({
    "__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms",
    "__dashboard", "__from", "__to", "__org", "__user", "__name",
})


def _rule() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(RULE.read_text()) if d]
    assert isinstance(doc, dict)
    return doc


def _rules() -> list[dict[str, Any]]:
    return [r for g in rule_groups()["groups"] for r in g["rules"]]


def _label_values_query(query: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", query)
    assert m, f"not a label_values(selector, label) query: {query!r}"
    return m.group(1), m.group(2)


def _expressions() -> list[str]:
    """Every PromQL expression of the dashboard and the rules."""
    return [t["expr"] for p in panels() for t in p.get("targets", [])] + [r["expr"] for r in _rules()]


# --- the registry ------------------------------------------------------------------------


def _samples(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(m.exposition().decode()) for s in f.samples}


def test_known_label_sets_are_exported_at_zero_before_anything_happens() -> None:
    m = Metrics()
    m.init_controller("converge-remote-eu")
    m.init_actuations("remote-eu")
    got = _samples(m)
    for result in ("success", "error"):
        assert got[("controller_runtime_reconcile_total",
                    frozenset({("controller", "converge-remote-eu"), ("result", result)}))] == 0
        assert got[("federationd_actuations_total", frozenset({("cluster", "remote-eu"), ("result", result)}))] == 0
    assert got[("controller_runtime_reconcile_errors_total", frozenset({("controller", "converge-remote-eu")}))] == 0
    for t in ("ActuationFailed", "ClusterUnreachable", "ObjectDrifted"):
        assert got[("federationd_events_appended_total", frozenset({("type", t)}))] == 0
    # Without an elector (no --leader-elect) nothing claims there is no leader.
    assert not any(name == "leader_election_master_status" for name, _ in got)


def test_a_refused_kubeconfig_is_a_cluster_state_until_its_remote_goes() -> None:
    m = Metrics()
    m.set_rejected({"remote-bad"}, connected=())
    state = {s: v for (n, labels), v in _samples(m).items() if n == "federationd_cluster_state"
             for k, s in labels if k == "state"}
    assert state == {s: (1.0 if s == "rejected" else 0.0) for s in CLUSTER_STATES}
    m.set_rejected(set(), connected=())  # its RemoteIstio deleted: nothing left behind
    assert not any(n == "federationd_cluster_state" for n, _ in _samples(m))
    # Fixed: the connection reports from then on, and is not forgotten under it.
    m.set_rejected({"remote-bad"}, connected=())
    m.set_cluster_state("remote-bad", "connecting")
    m.set_rejected(set(), connected={"remote-bad"})
    assert _samples(m)[("federationd_cluster_state", frozenset({("cluster", "remote-bad"), ("state", "connecting")}))] == 1


def test_queries_only_use_real_cluster_states() -> None:
    used = {v for e in _expressions() for m in re.finditer(r'\bstate\s*=~?\s*"([^"]*)"', e) for v in m.group(1).split("|")}
    assert used and used <= set(CLUSTER_STATES), used


# --- the dashboard ---------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard_with_its_variables() -> None:
    dash = dashboard()
    assert dash["schemaVersion"] >= 36
    assert dash["uid"] and dash["title"]
    by_name = {v["name"]: v for v in dash["templating"]["list"]}
    ds = by_name["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    cluster = by_name["cluster"]
    assert cluster["type"] == "query"
    assert cluster["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert _label_values_query(cluster["query"]["query"]) == ("federationd_cluster_state", "cluster")
    assert cluster["definition"] == cluster["query"]["query"]
    assert cluster["multi"] and cluster["includeAll"]


def test_every_panel_has_the_datasource_and_a_target() -> None:
    dash = dashboard()
    defined = {v["name"] for v in dash["templating"]["list"]} | GRAFANA_BUILTINS
    ids: list[int] = []
    for p in panels():
        ids.append(p["id"])
        if p["type"] == "row":
            continue
        title = p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert p["targets"], title
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), title
        for t in p["targets"]:
            assert t.get("datasource", p["datasource"]) == p["datasource"], title
            assert t["expr"].strip(), title
            assert variables(t["expr"]) <= defined, title
    assert len(set(ids)) == len(ids), "panel ids must be unique"


def test_the_panels_tile_the_grid_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for p in panels():
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{p['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = p["title"]


def test_the_dashboard_shows_what_a_platform_engineer_needs() -> None:
    exprs = " ".join(t["expr"] for p in panels() for t in p.get("targets", []))
    for metric in (
        "federationd_cluster_state", "federationd_gateway_addresses",
        "federationd_actuations_total", "federationd_convergence_seconds_bucket",
        "controller_runtime_reconcile_errors_total", "workqueue_depth",
        "workqueue_retries_total", "rest_client_requests_total", "federationd_event_log_head",
        "federationd_projection_lag_events", "federationd_events_appended_total",
        "leader_election_master_status",
    ):
        assert re.search(rf"\b{metric}\b", exprs), metric
    quantiles = set(re.findall(r"histogram_quantile\(\s*([0-9.]+)", exprs))
    assert quantiles >= {"0.5", "0.99"}


def test_the_leader_election_panels_say_they_need_leader_election() -> None:
    """Without --leader-elect leader_election_master_status does not exist: the panels
    over it say so instead of "No data"."""
    leader = [p for p in panels() if "leader_election_master_status" in str(p.get("targets"))]
    assert {p["title"] for p in leader} == {"Leaders", "Leader by replica"}
    for p in leader:
        assert "--leader-elect" in p["description"], p["title"]
        assert p["fieldConfig"]["defaults"]["noValue"], p["title"]


# --- the PrometheusRule ------------------------------------------------------------------

_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+")


def test_the_prometheus_rule_is_well_formed() -> None:
    doc = _rule()
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["name"] and doc["metadata"]["namespace"]
    groups = doc["spec"]["groups"]
    assert groups and len({g["name"] for g in groups}) == len(groups)
    alerts: list[str] = []
    for g in groups:
        assert g["rules"], g["name"]
        for r in g["rules"]:
            name = r.get("alert")
            assert isinstance(name, str) and re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), r
            alerts.append(name)
            assert set(r) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, name
            assert isinstance(r["expr"], str) and r["expr"].strip(), name
            assert _DURATION.fullmatch(r["for"]), name
            assert r["labels"]["severity"] in ("critical", "warning", "info"), name
            assert all(isinstance(v, str) for v in r["labels"].values()), name
            assert r["annotations"]["summary"].strip(), name
            assert r["annotations"]["description"].strip(), name
    assert len(set(alerts)) == len(alerts)


def test_the_rules_cover_the_failure_modes() -> None:
    rules = {r["alert"]: r for r in _rules()}
    assert set(rules) == {
        "FederationdRemoteClusterUnreachable", "FederationdClusterCredentialsRejected",
        "FederationdActuationsFailing", "FederationdProjectionLagGrowing", "FederationdDown",
        "FederationdNoLeader", "FederationdConvergenceSlow",
    }
    assert [rules[a]["for"] for a in ("FederationdRemoteClusterUnreachable", "FederationdActuationsFailing",
                                      "FederationdProjectionLagGrowing", "FederationdConvergenceSlow")] == ["5m", "10m", "5m", "15m"]
    # Nothing writes in either case: those page.
    assert rules["FederationdDown"]["labels"]["severity"] == "critical"
    assert rules["FederationdNoLeader"]["labels"]["severity"] == "critical"
    # No Lease series must not read as "no leader": that paged every single replica.
    assert "absent" not in rules["FederationdNoLeader"]["expr"]


def test_the_rule_is_deployed_next_to_the_servicemonitor_and_finds_its_job() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    resources: list[str] = kustomization["resources"]
    assert all((DEPLOY / r).is_file() for r in resources)
    i = resources.index("servicemonitor.yaml")
    assert resources[i + 1] == "prometheusrule.yaml"
    assert not any(r.endswith(".json") for r in resources)
    (monitor,) = [d for d in yaml.safe_load_all((DEPLOY / "servicemonitor.yaml").read_text()) if d]
    (service,) = [d for d in yaml.safe_load_all((DEPLOY / "service.yaml").read_text()) if d]
    rule = _rule()
    assert rule["metadata"]["namespace"] == monitor["metadata"]["namespace"]
    # Without spec.jobLabel the Prometheus Operator names the job after the Service.
    assert "jobLabel" not in monitor["spec"]
    jobs = {m for r in _rules() for m in re.findall(r'\bjob\s*=\s*"([^"]*)"', r["expr"])}
    assert jobs == {service["metadata"]["name"]}
