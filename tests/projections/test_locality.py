"""Locality load balancing: Istio's validation rules and words, and the fleet check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from federationd.api import v1beta1 as v
from federationd.projections import locality as loc

SAMPLES = Path(__file__).resolve().parents[1] / "api" / "samples"


def lb(raw: dict[str, Any]) -> v.LocalityLBConfiguration:
    spec = v.istio_spec({"localityLB": raw}, namespace="istio-system")
    assert spec.locality_lb is not None
    return spec.locality_lb


def issues(raw: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i.path, i.message) for i in loc.validate(lb(raw))]


def sample_lb(name: str) -> v.LocalityLBConfiguration:
    cr = yaml.safe_load((SAMPLES / name).read_text())
    spec = v.istio_spec(cr["spec"], namespace="istio-system")
    assert spec.locality_lb is not None
    return spec.locality_lb


@pytest.mark.parametrize("name", ["002_locality_distribute.yaml", "002_locality_failover.yaml"])
def test_seed_002_examples_are_valid(name: str) -> None:
    assert loc.validate(sample_lb(name)) == []


def test_nothing_to_validate_without_locality_lb() -> None:
    assert loc.validate(None) == []
    assert loc.unknown_localities(None, [("us", "a")]) == []


def test_valid_failover_and_subzone_distribution() -> None:
    assert issues({"failover": [{"from": "us-east", "to": "us-west"}]}) == []
    assert (
        issues(
            {
                "distribute": [
                    {
                        "from": "us-east/zone1/*",
                        "to": {"us-east/zone1/a": 60, "us-east/zone2/*": 40},
                    },
                    {"from": "us-east/zone2/*", "to": {"*": 100}},
                ]
            }
        )
        == []
    )


def test_distribute_and_failover_together() -> None:
    got = issues(
        {
            "distribute": [{"from": "a/*", "to": {"a/*": 100}}],
            "failover": [{"from": "a", "to": "b"}],
        }
    )
    assert got == [
        ("spec.localityLB", "can not simultaneously specify 'distribute' and 'failover'")
    ]


def test_weights_must_be_in_range_and_sum_to_100() -> None:
    got = issues({"distribute": [{"from": "a/*", "to": {"a/*": 0, "b/*": 90}}]})
    assert got == [
        ("spec.localityLB.distribute[0].to[a/*]", "locality weight must be in range [1, 100]"),
        ("spec.localityLB.distribute[0].to", "total locality weight 90 != 100"),
    ]
    got = issues({"distribute": [{"from": "a/*", "to": {"a/*": 150}}]})
    assert got == [
        ("spec.localityLB.distribute[0].to[a/*]", "locality weight must be in range [1, 100]"),
        ("spec.localityLB.distribute[0].to", "total locality weight 150 != 100"),
    ]
    assert issues({"distribute": [{"from": "a/*", "to": {}}]}) == [
        ("spec.localityLB.distribute[0].to", "total locality weight 0 != 100")
    ]


def test_each_rule_is_checked_and_every_problem_reported() -> None:
    got = issues(
        {
            "distribute": [
                {"from": "europe-west2/*", "to": {"eu-north-1/*": 10, "europe-west2/*": 80}},
                {"from": "eu-north-1/*", "to": {"eu-north-1/*": 95, "europe-west2/*": 10}},
            ]
        }
    )
    assert got == [
        ("spec.localityLB.distribute[0].to", "total locality weight 90 != 100"),
        ("spec.localityLB.distribute[1].to", "total locality weight 105 != 100"),
    ]


@pytest.mark.parametrize("bad", ["a/*/b", "*/*", "a/b*/c", "*a"])
def test_one_trailing_wildcard_at_most(bad: str) -> None:
    assert issues({"distribute": [{"from": bad, "to": {"x/*": 100}}]}) == [
        (
            "spec.localityLB.distribute[0].from",
            f"locality {bad} wildcard '*' number can not exceed 1 and must be in the end",
        )
    ]


@pytest.mark.parametrize("bad", ["a//c", "/a", "a/", ""])
def test_empty_segments(bad: str) -> None:
    assert issues({"distribute": [{"from": "x/*", "to": {bad: 100}}]}) == [
        (
            f"spec.localityLB.distribute[0].to[{bad}]",
            f"locality {bad} must not contain empty region/zone/subzone info",
        )
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("us", "us"),
        ("us", "us/a"),
        ("us/*", "us/a"),
        ("us/a", "us/a/b"),
        ("us/a/*", "us/a/b"),
        ("us/a/b", "us/a/b"),
        ("*", "eu"),
        ("us/a", "us"),
    ],
)
def test_overlapping_localities_are_rejected(first: str, second: str) -> None:
    got = issues(
        {
            "distribute": [
                {"from": first, "to": {"x/*": 100}},
                {"from": second, "to": {"x/*": 100}},
            ]
        }
    )
    assert got == [
        (
            "spec.localityLB.distribute[1].from",
            f"locality {second} overlap with previous specified ones",
        )
    ]


def test_disjoint_localities_do_not_overlap() -> None:
    sources = ["us/a/x", "us/a/y", "us/b", "eu"]
    assert issues({"distribute": [{"from": s, "to": {"x/*": 100}} for s in sources]}) == []


def test_overlap_within_a_rules_destinations() -> None:
    assert issues({"distribute": [{"from": "x/*", "to": {"us/*": 50, "us/a": 50}}]}) == [
        (
            "spec.localityLB.distribute[0].to[us/a]",
            "locality us/a overlap with previous specified ones",
        )
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"from": "us", "to": "us"},
            "locality lb failover settings must specify different regions",
        ),
        ({"from": "us/a", "to": "eu"}, "locality lb failover only specify region"),
        ({"from": "us", "to": "eu/b"}, "locality lb failover only specify region"),
        ({"from": "us", "to": "*"}, "locality lb failover region should not contain '*' wildcard"),
        ({"from": "*", "to": "eu"}, "locality lb failover region should not contain '*' wildcard"),
        ({"from": "us", "to": ""}, "locality lb failover region must not be empty"),
    ],
)
def test_failover_rules(rule: dict[str, str], message: str) -> None:
    assert issues({"failover": [{"from": "eu", "to": "us"}, rule]}) == [
        ("spec.localityLB.failover[1]", message)
    ]


def test_issue_str_carries_path_and_message() -> None:
    (issue,) = loc.validate(lb({"failover": [{"from": "us", "to": "us"}]}))
    assert str(issue) == (
        "spec.localityLB.failover[0]: locality lb failover settings must specify different regions"
    )


# --- against observed localities -----------------------------------------------------------


FLEET = {("europe-west2", "europe-west2-a"), ("eu-north-1", "eu-north-1a")}


def test_seed_002_distribution_names_only_known_regions() -> None:
    assert loc.unknown_localities(sample_lb("002_locality_distribute.yaml"), FLEET) == []
    # "region/zone" strings (as in RenderFacts.localities) work too.
    assert (
        loc.unknown_localities(
            sample_lb("002_locality_distribute.yaml"),
            ["europe-west2/europe-west2-a", "eu-north-1/eu-north-1a"],
        )
        == []
    )


def test_rules_naming_unknown_localities_warn() -> None:
    got = loc.unknown_localities(
        lb(
            {
                "distribute": [
                    {"from": "europe-west2/*", "to": {"europe-west2/*": 90, "us-east1/*": 10}},
                    {"from": "eu-north-1/eu-north-1c", "to": {"*": 100}},
                ]
            }
        ),
        FLEET,
    )
    assert [(i.path, i.message) for i in got] == [
        (
            "spec.localityLB.distribute[0].to[us-east1/*]",
            "locality us-east1/* matches no node locality observed in the mesh",
        ),
        (
            "spec.localityLB.distribute[1].from",
            "locality eu-north-1/eu-north-1c matches no node locality observed in the mesh",
        ),
    ]
    got = loc.unknown_localities(lb({"failover": [{"from": "europe-west2", "to": "asia"}]}), FLEET)
    assert [i.path for i in got] == ["spec.localityLB.failover[0].to"]


def test_subzones_match_their_zone_and_nothing_is_said_before_any_node_is_seen() -> None:
    rule = lb(
        {"distribute": [{"from": "eu-north-1/eu-north-1a/rack1", "to": {"europe-west2": 100}}]}
    )
    assert loc.unknown_localities(rule, FLEET) == []
    assert loc.unknown_localities(lb({"failover": [{"from": "mars", "to": "venus"}]}), []) == []
