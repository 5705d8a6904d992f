"""The Grafana dashboard and the PrometheusRule in deploy/ only query series federationd serves.

A panel that queries a metric nobody exports shows "No data", and an alert on it never
fires; nothing else notices. So every PromQL expression in
``deploy/dashboards/federationd.json`` and ``deploy/prometheusrule.yaml`` is lexed, its
selectors are extracted, and each is checked against what a fresh ``Metrics()`` registry
exposes: the series name (``_total``, ``_bucket``/``_sum``/``_count`` included), the labels
its matchers and ``by (...)`` clauses use, that ``rate()`` only ever wraps a counter, and
that ``state`` values are real cluster states. Renaming a metric or a label in
``federationd/metrics.py`` fails here until the queries follow.

Why a small lexer and not one regular expression: in PromQL an identifier is a metric name
unless it is a function or aggregation (followed by ``(``, or by ``by``/``without``), a
keyword, a label name (inside ``{}`` or a ``by``/``without``/``on``/``ignoring``/
``group_left``/``group_right`` list) or part of a duration; strings may contain any of
those characters. Grafana's ``$variables`` are replaced before lexing.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from federationd.metrics import CLUSTER_STATES, Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "dashboards" / "federationd.json"
RULE = DEPLOY / "prometheusrule.yaml"

#: Labels the Prometheus Operator attaches to every series scraped through a ServiceMonitor.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "endpoint", "container"})
#: Variables Grafana defines itself.
GRAFANA_BUILTINS = frozenset({
    "__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms",
    "__dashboard", "__from", "__to", "__org", "__user", "__name",
})
#: Label values federationd defines as constants, so a query may only use those.
KNOWN_VALUES: Mapping[tuple[str, str], frozenset[str]] = {
    ("federationd_cluster_state", "state"): frozenset(CLUSTER_STATES),
}

_AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
})
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"and", "or", "unless", "atan2", "bool", "offset", "inf", "nan"})
#: Functions whose argument must be a counter, and ones whose argument must be a gauge.
_COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase", "resets"})
_GAUGE_FUNCTIONS = frozenset({"deriv", "delta", "idelta", "predict_linear", "holt_winters"})

_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<number>\.?[0-9][0-9A-Za-z_.]*)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^=<>@,(){}\[\]])
    """,
    re.VERBOSE,
)
_END = ("end", "")


class PromQLSyntaxError(ValueError):
    """The expression does not lex or its brackets do not balance."""


@dataclasses.dataclass(frozen=True)
class Selector:
    metric: str
    #: (label, operator, value) with the value's quotes removed (escapes left as written).
    matchers: tuple[tuple[str, str, str], ...]
    #: The innermost function or aggregation the selector is an argument of.
    function: str | None


@dataclasses.dataclass(frozen=True)
class Query:
    selectors: tuple[Selector, ...]
    #: Labels named in by/without/on/ignoring/group_left/group_right lists.
    grouping: frozenset[str]
    #: Grafana variables the expression uses.
    variables: frozenset[str]

    @property
    def metrics(self) -> frozenset[str]:
        return frozenset(s.metric for s in self.selectors)


def _lex(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLSyntaxError(f"unexpected {expr[pos:pos + 10]!r} at {pos} in {expr!r}")
        kind = m.lastgroup or ""
        if kind not in ("space", "comment"):
            tokens.append((kind, m.group()))
        pos = m.end()
    return tokens


def _at(tokens: list[tuple[str, str]], i: int) -> tuple[str, str]:
    return tokens[i] if i < len(tokens) else _END


def _label_list(tokens: list[tuple[str, str]], i: int) -> tuple[list[str], int]:
    """``( a, b, )`` starting at ``i``; returns the labels and the index after ``)``."""
    if _at(tokens, i)[1] != "(":
        raise PromQLSyntaxError(f"expected a label list, got {_at(tokens, i)[1]!r}")
    labels: list[str] = []
    i += 1
    while (tok := _at(tokens, i))[1] != ")":
        if tok[0] != "ident":
            raise PromQLSyntaxError(f"expected a label name, got {tok[1]!r}")
        labels.append(tok[1])
        i += 1
        if _at(tokens, i)[1] == ",":
            i += 1
    return labels, i + 1


def _matchers(tokens: list[tuple[str, str]], i: int) -> tuple[list[tuple[str, str, str]], int]:
    """``label op "value", ...}`` starting after ``{``; returns them and the index after ``}``."""
    out: list[tuple[str, str, str]] = []
    while (tok := _at(tokens, i))[1] != "}":
        op, value = _at(tokens, i + 1), _at(tokens, i + 2)
        if tok[0] != "ident" or op[1] not in ("=", "!=", "=~", "!~") or value[0] != "string":
            raise PromQLSyntaxError(f"bad label matcher at {tok[1]!r} {op[1]!r} {value[1]!r}")
        out.append((tok[1], op[1], value[1][1:-1]))
        i += 3
        if _at(tokens, i)[1] == ",":
            i += 1
        elif _at(tokens, i)[1] != "}":
            raise PromQLSyntaxError(f"expected ',' or '}}' after a matcher, got {_at(tokens, i)[1]!r}")
    return out, i + 1


def parse(expr: str) -> Query:
    """The selectors, grouping labels and Grafana variables of one PromQL expression."""
    variables = frozenset(
        name for a, b in _VARIABLE.findall(expr) if not (name := a or b).isdigit())
    # "1" is valid wherever a variable may stand in these queries: in a string, a range, a number.
    tokens = _lex(_VARIABLE.sub("1", expr))
    selectors: list[Selector] = []
    grouping: set[str] = set()
    calls: list[str | None] = []  # one entry per open "(": the function it calls, if any

    def enclosing() -> str | None:
        return next((c for c in reversed(calls) if c is not None), None)

    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = _at(tokens, i + 1)[1]
        word = text.lower() if kind == "ident" else ""
        if word in _AGGREGATIONS and nxt.lower() in ("by", "without"):
            labels, i = _label_list(tokens, i + 2)
            grouping.update(labels)
            if _at(tokens, i)[1] != "(":
                raise PromQLSyntaxError(f"{text} {nxt} (...) must be followed by '('")
            calls.append(text)
            i += 1
        elif word in _GROUPING:
            if nxt == "(":
                labels, i = _label_list(tokens, i + 1)
                grouping.update(labels)
            else:  # group_left/group_right may stand without a label list
                i += 1
        elif word in _KEYWORDS:
            i += 1
        elif kind == "ident" and nxt == "(":
            calls.append(text)
            i += 2
        elif kind == "ident":
            found: list[tuple[str, str, str]] = []
            if nxt == "{":
                found, i = _matchers(tokens, i + 2)
            else:
                i += 1
            selectors.append(Selector(text, tuple(found), enclosing()))
        elif text == "{":
            found, i = _matchers(tokens, i + 1)
            names = [v for label, op, v in found if label == "__name__" and op == "="]
            if len(names) != 1:
                raise PromQLSyntaxError(f"a selector without a metric name in {expr!r}")
            rest = tuple(m for m in found if m[0] != "__name__")
            selectors.append(Selector(names[0], rest, enclosing()))
        elif text == "[":
            # Ranges and subqueries: durations and steps only.
            while _at(tokens, i)[1] != "]":
                if _at(tokens, i) == _END:
                    raise PromQLSyntaxError(f"unclosed '[' in {expr!r}")
                i += 1
            i += 1
        elif text == "(":
            calls.append(None)
            i += 1
        elif text == ")":
            if not calls:
                raise PromQLSyntaxError(f"unbalanced ')' in {expr!r}")
            calls.pop()
            i += 1
        elif text in ("]", "}"):
            raise PromQLSyntaxError(f"unbalanced {text!r} in {expr!r}")
        else:
            i += 1
    if calls:
        raise PromQLSyntaxError(f"unclosed '(' in {expr!r}")
    if not selectors:
        raise PromQLSyntaxError(f"no metric selector in {expr!r}")
    return Query(tuple(selectors), frozenset(grouping), variables)


# --- what the registry exposes ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Series:
    family_type: str
    labels: frozenset[str]


def exposed_series(metrics: Metrics) -> dict[str, Series]:
    """Every series name ``metrics`` serves on /metrics, with its family type and labels.

    A labelled family exposes nothing until it has a child, so each gets one first."""
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, MetricWrapperBase) and wrapper._labelnames:
            wrapper.labels(*("x" for _ in wrapper._labelnames))
    series: dict[str, Series] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        assert family.samples, f"{family.name} exposes no sample: not a Metrics attribute?"
        for sample in family.samples:
            labels = frozenset(sample.labels)
            if sample.name in series:
                labels |= series[sample.name].labels
            series[sample.name] = Series(family.type, labels)
    return series


def _counter_like(name: str, series: Series) -> bool:
    return series.family_type in ("counter", "histogram", "summary") and not name.endswith("_created")


def problems(expr: str, series: Mapping[str, Series]) -> list[str]:
    """What is wrong with ``expr`` against ``series``; empty when every selector resolves."""
    query = parse(expr)
    found: list[str] = []
    known_labels: set[str] = set(TARGET_LABELS)
    for sel in query.selectors:
        s = series.get(sel.metric)
        if s is None:
            found.append(f"{sel.metric}: no such series in federationd.metrics")
            continue
        known_labels |= s.labels
        for label, op, value in sel.matchers:
            if label not in s.labels | TARGET_LABELS:
                found.append(f"{sel.metric}: no label {label!r} (has {sorted(s.labels)})")
            allowed = KNOWN_VALUES.get((sel.metric, label))
            if allowed is not None and op in ("=", "=~"):
                values = value.split("|") if op == "=~" else [value]
                for v in values:
                    if v not in allowed:
                        found.append(f"{sel.metric}: {label}={v!r} is not one of {sorted(allowed)}")
        if sel.function in _COUNTER_FUNCTIONS and not _counter_like(sel.metric, s):
            found.append(f"{sel.function}() over {sel.metric}, a {s.family_type}")
        if sel.function in _GAUGE_FUNCTIONS and s.family_type != "gauge":
            found.append(f"{sel.function}() over {sel.metric}, a {s.family_type}")
    for label in sorted(query.grouping - known_labels):
        found.append(f"grouping by {label!r}, which no selected series carries")
    return found


@pytest.fixture(scope="module")
def series() -> dict[str, Series]:
    return exposed_series(Metrics())


# --- the artefacts -------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, including those inside collapsed rows."""
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def _rule() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(RULE.read_text()) if d]
    assert isinstance(doc, dict)
    return doc


def _rules() -> list[dict[str, Any]]:
    return [r for g in _rule()["spec"]["groups"] for r in g["rules"]]


def _label_values_query(query: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", query)
    assert m, f"not a label_values(selector, label) query: {query!r}"
    return m.group(1), m.group(2)


def _expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every query in the dashboard and the rules."""
    out: list[tuple[str, str]] = []
    dash = _dashboard()
    for p in _panels(dash["panels"]):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t.get('refId')}", t["expr"]))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            out.append((f"variable {v['name']}", _label_values_query(v["query"]["query"])[0]))
    for r in _rules():
        out.append((f"alert {r['alert']}", r["expr"]))
    return out


# --- the lexer itself ------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "metrics", "grouping"), [
    ('sum by (cluster, le) (rate(foo_bucket{a="b{c}", d=~"$x|y"}[5m] offset 1h)) > bool 0',
     {"foo_bucket"}, {"cluster", "le"}),
    ("a_total / on(pod) group_left(node) b and ignoring(x) c or d unless e_total",
     {"a_total", "b", "c", "d", "e_total"}, {"pod", "node", "x"}),
    ('max without (pod) (m) * on(pod) group_left c', {"m", "c"}, {"pod"}),
    ("sum(rate(x_total[5m:30s])) by (le) + 1e3 - Inf", {"x_total"}, {"le"}),
    ('count_values("state", topk(3, job:http_requests:rate5m))', {"job:http_requests:rate5m"}, set()),
    ('label_replace(up, "dst", "$1", "src", "(.*)") @ start()', {"up"}, set()),
    ('{__name__="named", job="j"} # a comment naming not_a_metric{', {"named"}, set()),
    ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[${__rate_interval}])))", {"h_bucket"}, {"le"}),
    ("absent(x{job=\"a\\\"b\"}) OR absent(y)", {"x", "y"}, set()),
    ("rate(a_total[5m]) and (b) > bool (c)", {"a_total", "b", "c"}, set()),
])
def test_the_lexer_finds_exactly_the_metric_names(expr: str, metrics: set[str], grouping: set[str]) -> None:
    q = parse(expr)
    assert q.metrics == metrics
    assert q.grouping == grouping


def test_the_lexer_reports_grafana_variables_and_keeps_matchers() -> None:
    q = parse('sum(rate(m_total{job=~"$job", host=~"${cluster:regex}"}[$__rate_interval]))')
    assert q.variables == {"job", "cluster", "__rate_interval"}
    (sel,) = q.selectors
    assert sel.function == "rate"
    assert sel.matchers == (("job", "=~", "1"), ("host", "=~", "1"))
    assert [s.function for s in parse("rate(a_total[5m]) and (b)").selectors] == ["rate", None]


@pytest.mark.parametrize("expr", [
    "sum(rate(x[5m])", "rate(x[5m)", "x}", 'x{a="b"', "x{a b}", "sum by (le) x", "1 + 2",
])
def test_the_lexer_rejects_malformed_expressions(expr: str) -> None:
    with pytest.raises(PromQLSyntaxError):
        parse(expr)


# --- every query against the registry --------------------------------------------------


@pytest.mark.parametrize(("where", "expr"), _expressions(), ids=lambda v: str(v)[:60])
def test_every_query_names_series_the_registry_exposes(
    where: str, expr: str, series: dict[str, Series]
) -> None:
    assert problems(expr, series) == [], where


def test_a_renamed_metric_or_label_would_fail_the_check(series: dict[str, Series]) -> None:
    """The check above can fail: rename things on either side and it reports them."""
    exprs = [e for _, e in _expressions()]
    # A metric renamed in metrics.py: every query on it breaks.
    renamed = {("federationd_clusters_state" if k == "federationd_cluster_state" else k): v
               for k, v in series.items()}
    broken = [e for e in exprs if problems(e, renamed)]
    assert broken and all("federationd_cluster_state" in e for e in broken)
    assert len(broken) == sum("federationd_cluster_state" in e for e in exprs)
    # A label renamed in metrics.py.
    relabelled = dict(series)
    relabelled["federationd_actuations_total"] = Series("counter", frozenset({"cluster", "outcome"}))
    assert any(problems(e, relabelled) for e in exprs if "federationd_actuations_total" in e)
    # Mistakes in a query: a missing suffix, an unknown state, rate() over a gauge.
    assert problems("rate(federationd_actuations[5m])", series)
    assert problems('federationd_cluster_state{state="down"}', series)
    assert problems("rate(workqueue_depth[5m])", series)
    assert problems("sum by (namespace, cluster) (federationd_event_log_head)", series)


def test_the_registry_exposes_suffixed_series(series: dict[str, Series]) -> None:
    assert "federationd_actuations_total" in series
    assert "federationd_actuations" not in series
    assert {"federationd_convergence_seconds_bucket", "federationd_convergence_seconds_sum",
            "federationd_convergence_seconds_count"} <= series.keys()
    assert series["federationd_convergence_seconds_bucket"].labels == {"le"}
    assert series["federationd_cluster_state"].labels == {"cluster", "state"}


# --- the dashboard ---------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard_with_its_variables() -> None:
    dash = _dashboard()
    assert dash["schemaVersion"] >= 36
    assert dash["uid"] and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    cluster = variables["cluster"]
    assert cluster["type"] == "query"
    assert cluster["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert _label_values_query(cluster["query"]["query"]) == ("federationd_cluster_state", "cluster")
    assert cluster["definition"] == cluster["query"]["query"]
    assert cluster["multi"] and cluster["includeAll"]


def test_every_panel_has_the_datasource_and_a_target() -> None:
    dash = _dashboard()
    defined = {v["name"] for v in dash["templating"]["list"]} | GRAFANA_BUILTINS
    ids: list[int] = []
    for p in _panels(dash["panels"]):
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
            assert parse(t["expr"]).variables <= defined, title
    assert len(set(ids)) == len(ids), "panel ids must be unique"


def test_the_panels_tile_the_grid_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for p in _panels(_dashboard()["panels"]):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{p['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = p["title"]


def test_the_dashboard_shows_what_a_platform_engineer_needs() -> None:
    used: set[str] = set()
    for p in _panels(_dashboard()["panels"]):
        for t in p.get("targets", []):
            used |= parse(t["expr"]).metrics
    assert used >= {
        "federationd_cluster_state", "federationd_gateway_addresses",
        "federationd_actuations_total", "federationd_convergence_seconds_bucket",
        "controller_runtime_reconcile_errors_total", "workqueue_depth",
        "workqueue_retries_total", "rest_client_requests_total", "federationd_event_log_head",
        "federationd_projection_lag_events", "federationd_events_appended_total",
        "leader_election_master_status",
    }
    quantiles = {m.group(1) for p in _panels(_dashboard()["panels"]) for t in p.get("targets", [])
                 for m in re.finditer(r"histogram_quantile\(\s*([0-9.]+)", t["expr"])}
    assert quantiles >= {"0.5", "0.99"}


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
            # An annotation can only show a label the alert's series keep.
            query = parse(r["expr"])
            kept = query.grouping | {m[0] for s in query.selectors for m in s.matchers if m[1] == "="}
            for text in r["annotations"].values():
                for label in re.findall(r"\$labels\.(\w+)", text):
                    assert label in kept, f"{name}: annotation uses $labels.{label}"
    assert len(set(alerts)) == len(alerts)


def test_the_rules_cover_the_failure_modes() -> None:
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for r in _rules():
        for m in parse(r["expr"]).metrics:
            by_metric.setdefault(m, []).append(r)
    unreachable = [r for r in by_metric["federationd_cluster_state"]
                   if ("state", "=", "unreachable") in parse(r["expr"]).selectors[0].matchers]
    assert [r["for"] for r in unreachable] == ["5m"]
    (failing,) = by_metric["federationd_actuations_total"]
    assert 'result="error"' in failing["expr"] and failing["for"] == "10m"
    (lag,) = by_metric["federationd_projection_lag_events"]
    assert lag["for"] == "5m"
    (leader,) = by_metric["leader_election_master_status"]
    assert "== 0" in leader["expr"] and leader["for"] == "5m"
    assert leader["labels"]["severity"] == "critical"
    (slow,) = by_metric["federationd_convergence_seconds_bucket"]
    assert "histogram_quantile(0.99" in slow["expr"]


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
    jobs = {v for r in _rules() for s in parse(r["expr"]).selectors
            for label, op, v in s.matchers if label == "job"}
    assert jobs == {service["metadata"]["name"]}
