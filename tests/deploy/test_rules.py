"""``deploy/prometheusrule.yaml`` checked by promtool: the rules load, and the unit tests
in ``rules_test.yaml`` (input series → the alerts that fire, with their rendered
annotations) pass for every alert, including the cases where it must stay silent."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from .prometheus import require, rule_groups, scale_durations, seconds

UNIT_TESTS = Path(__file__).with_name("rules_test.yaml")


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _alerts(groups: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in groups["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    (tmp_path / "federationd.rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    done = _promtool("check", "rules", "federationd.rules.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_alerts(rule_groups()))} rules found" in done.stdout, done.stdout


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    (tmp_path / "federationd.rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    (tmp_path / UNIT_TESTS.name).write_text(UNIT_TESTS.read_text())
    done = _promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout


def test_promtool_unit_tests_fail_when_a_rule_is_wrong(tmp_path: Path) -> None:
    """The unit tests can fail: the no-leader rule as it was (its absent() branch paged
    every single replica run without --leader-elect) and a threshold moved are caught."""
    groups = rule_groups()
    for r in _alerts(groups):
        if r["alert"] == "FederationdNoLeader":
            r["expr"] += ' or absent(leader_election_master_status{job="federationd"})'
        if r["alert"] == "FederationdProjectionLagGrowing":
            r["expr"] = r["expr"].replace("> 1000", "> 2000")
    (tmp_path / "federationd.rules.yaml").write_text(yaml.safe_dump(groups))
    (tmp_path / UNIT_TESTS.name).write_text(UNIT_TESTS.read_text())
    done = _promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0
    report = done.stdout + done.stderr
    assert "name: single replica without leader election" in report, report
    assert "alertname: FederationdProjectionLagGrowing" in report, report


def test_every_alert_has_unit_tests_that_fire_it_and_keep_it_silent() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())
    assert cases["rule_files"] == ["federationd.rules.yaml"]
    fires: set[str] = set()
    silent: set[str] = set()
    for t in cases["tests"]:
        for a in t.get("alert_rule_test", []):
            (fires if a.get("exp_alerts") else silent).add(a["alertname"])
            for exp in a.get("exp_alerts") or []:
                # A firing case states the annotations, so their templates are checked.
                assert set(exp["exp_annotations"]) == {"summary", "description"}, a
    names = {r["alert"] for r in _alerts(rule_groups())}
    assert fires == names, f"alerts never shown firing: {names - fires}"
    assert silent == names, f"alerts never shown silent: {names - silent}"


def test_scaled_rules_keep_their_shape_and_still_load(tmp_path: Path) -> None:
    """The end-to-end copy of the rules: durations divided by 60, nothing else changed."""
    original, scaled = rule_groups(), scale_durations(rule_groups(), 60)
    for a, b in zip(_alerts(original), _alerts(scaled), strict=True):
        assert seconds(b["for"]) * 60 == seconds(a["for"]), a["alert"]
        assert (a["expr"].count("["), a["labels"], a["annotations"]) == (b["expr"].count("["), b["labels"], b["annotations"])
        assert "m]" not in b["expr"], b["expr"]
    (tmp_path / "scaled.yaml").write_text(yaml.safe_dump(scaled))
    done = _promtool("check", "rules", "scaled.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
