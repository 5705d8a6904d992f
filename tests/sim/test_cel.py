"""CRD validation rules (``x-kubernetes-validations``) in the emulator, release by release.

The expected texts are the API server's (``apiextensions-apiserver``'s
``schema/cel/validation.go`` and the custom resource strategy's ``hasBlockingErr``).
The end-to-end half drives a fleet of 1.24, 1.29 and 1.32 servers with kubectl.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from federationd.sim import ClusterSpec, Fleet, celrules
from federationd.sim.validate import invalid_message


def _schema(rules: list[dict[str, Any]], **props: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "object",
        "properties": {
            "min": {"type": "integer"},
            "max": {"type": "integer"},
            "ratio": {"type": "number"},
            "ttl": {"type": "string"},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}},
                                                 "x-kubernetes-validations": [
                                                     {"rule": "self.name != 'bad'", "message": "no bad item"}]}},
            **props,
        },
        "x-kubernetes-validations": rules,
    }
    return {"type": "object", "properties": {"metadata": {"type": "object"}, "spec": spec}}


def _obj(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def _messages(obj: dict[str, Any], schema: dict[str, Any], *, release: str = "1.32",
              old: dict[str, Any] | None = None) -> list[str]:
    return [str(e) for e in celrules.admit_custom(obj, schema=schema, release=release, old=old).errors]


MIN_MAX = {"rule": "self.min <= self.max", "message": "min must not exceed max"}


def test_a_failed_rule_names_the_node_and_its_type() -> None:
    assert _messages(_obj(min=5, max=2), _schema([MIN_MAX])) == [
        'spec: Invalid value: "object": min must not exceed max'
    ]
    assert _messages(_obj(min=1, max=2), _schema([MIN_MAX])) == []
    assert _messages(_obj(items=[{"name": "ok"}, {"name": "bad"}]), _schema([])) == [
        'spec.items[1]: Invalid value: "object": no bad item'
    ]


def test_without_a_message_the_rule_is_quoted() -> None:
    assert _messages(_obj(min=5, max=2), _schema([{"rule": "self.min <= self.max"}])) == [
        'spec: Invalid value: "object": failed rule: self.min <= self.max'
    ]


def test_message_expression_wins_when_it_gives_one_line() -> None:
    rule = {**MIN_MAX, "messageExpression": "'min ' + string(self.min) + ' > max ' + string(self.max)"}
    assert _messages(_obj(min=5, max=2), _schema([rule])) == ['spec: Invalid value: "object": min 5 > max 2']
    for broken in ("self.nope + 'x'", "1", "''", "'two\\nlines'"):
        rule = {**MIN_MAX, "messageExpression": broken}
        assert _messages(_obj(min=5, max=2), _schema([rule])) == [
            'spec: Invalid value: "object": min must not exceed max'
        ], broken


def test_reason_and_field_path() -> None:
    forbidden = {**MIN_MAX, "reason": "FieldValueForbidden", "fieldPath": ".min"}
    assert _messages(_obj(min=5, max=2), _schema([forbidden])) == ["spec.min: Forbidden: min must not exceed max"]
    required = {**MIN_MAX, "reason": "FieldValueRequired"}
    assert _messages(_obj(min=5, max=2), _schema([required])) == ["spec: Required value: min must not exceed max"]
    duplicate = {**MIN_MAX, "reason": "FieldValueDuplicate"}
    assert _messages(_obj(min=5, max=2), _schema([duplicate])) == ['spec: Duplicate value: "object"']


def test_a_rule_that_errors_says_so() -> None:
    assert _messages(_obj(min=5), _schema([MIN_MAX])) == [
        'spec: Invalid value: "object": no such key: max evaluating rule: min must not exceed max'
    ]
    assert _messages(_obj(min=5, max=0), _schema([{"rule": "self.min / self.max > 1"}])) == [
        'spec: Invalid value: "object": division by zero evaluating rule: self.min / self.max > 1'
    ]


def test_values_are_typed_by_the_schema() -> None:
    # an integer in a "number" field is a double, so it compares with doubles
    rule = {"rule": "self.ratio == 2.0 && type(self.ratio) == double"}
    assert _messages(_obj(ratio=2), _schema([rule])) == []


def test_duration_parses_as_go_does() -> None:
    rule = {"rule": "duration(self.ttl) <= duration('1h')", "message": "at most an hour"}
    for ok in ("0", "1µs", "1μs", "59m59.5s", "1h"):
        assert _messages(_obj(ttl=ok), _schema([rule])) == [], ok
    assert _messages(_obj(ttl="1h1s"), _schema([rule])) == ['spec: Invalid value: "object": at most an hour']
    assert _messages(_obj(ttl="90d"), _schema([rule])) == [
        'spec: Invalid value: "object": time: unknown unit "d" in duration "90d" evaluating rule: at most an hour'
    ]
    assert celrules.go_duration("1h30m") == datetime.timedelta(minutes=90)
    assert celrules.go_duration("-1.5s") == -datetime.timedelta(seconds=1.5)
    with pytest.raises(ValueError, match='missing unit in duration "5"'):
        celrules.go_duration("5")


def test_a_blocking_schema_error_keeps_the_rules_from_running() -> None:
    obj = _obj(min=5, max=2, mode="c")
    assert _messages(obj, _schema([MIN_MAX])) == [
        'spec.mode: Unsupported value: "c": supported values: "a", "b"',
        '<nil>: Invalid value: "null": some validation rules were not checked because the object was '
        "invalid; correct the existing errors to complete validation",
    ]
    # a pattern error is not blocking: both are reported
    schema = _schema([MIN_MAX], code={"type": "string", "pattern": "^[a-z]+$"})
    assert _messages(_obj(min=5, max=2, code="X"), schema) == [
        "spec.code: Invalid value: \"X\": spec.code in body should match '^[a-z]+$'",
        'spec: Invalid value: "object": min must not exceed max',
    ]


def test_root_rules_see_the_name_only() -> None:
    schema = _schema([])
    schema["x-kubernetes-validations"] = [
        {"rule": "size(self.metadata.name) <= 3 && !has(self.metadata.labels)", "message": "short name"}]
    obj = _obj()
    obj["metadata"]["labels"] = {"a": "b"}
    assert _messages(obj, schema) == []
    obj["metadata"]["name"] = "long"
    assert _messages(obj, schema) == ['<nil>: Invalid value: "object": short name']


def test_transition_rules_need_an_old_value() -> None:
    rule = {"rule": "self.min >= oldSelf.min", "message": "min may only grow"}
    schema = _schema([rule])
    assert _messages(_obj(min=1, max=2), schema) == []
    assert _messages(_obj(min=1, max=2), schema, old=_obj(min=2, max=2)) == [
        'spec: Invalid value: "object": min may only grow'
    ]


def test_ratcheting_from_1_30_lets_an_unchanged_value_through_with_a_warning() -> None:
    schema = _schema([MIN_MAX])
    stored = _obj(min=5, max=2)
    update = copy.deepcopy(stored)
    update["metadata"]["labels"] = {"x": "y"}
    outcome = celrules.admit_custom(update, schema=schema, release="1.30", old=stored)
    assert outcome.errors == []
    assert outcome.warnings == ['spec: Invalid value: "object": min must not exceed max']
    assert _messages(update, schema, release="1.29", old=stored) == [
        'spec: Invalid value: "object": min must not exceed max'
    ]
    changed = _obj(min=6, max=2)
    assert _messages(changed, schema, release="1.30", old=stored) == [
        'spec: Invalid value: "object": min must not exceed max'
    ]


def test_releases_before_1_25_do_not_evaluate_rules() -> None:
    for release in ("1.13", "1.22", "1.24"):
        assert _messages(_obj(min=5, max=2), _schema([MIN_MAX]), release=release) == []
    assert _messages(_obj(min=5, max=2), _schema([MIN_MAX]), release="1.25")


def _crd(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": _schema(rules)}}],
        },
    }


def test_1_23_and_1_24_drop_the_rules_from_a_new_crd() -> None:
    for release, dropped in (("1.22", False), ("1.23", True), ("1.24", True), ("1.25", False)):
        crd = _crd([MIN_MAX])
        celrules.drop_rules(crd, release=release)
        assert celrules.has_rules(crd) != dropped, release
    # an update of a CRD that already had rules keeps them (upstream: "in use")
    crd, old = _crd([MIN_MAX]), _crd([MIN_MAX])
    celrules.drop_rules(crd, release="1.24", old=old)
    assert celrules.has_rules(crd)


def test_a_rule_that_does_not_compile_refuses_the_crd() -> None:
    path = "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    errors = celrules.crd_rule_errors(_crd([{"rule": "self.min <"}]), release="1.25")
    assert [(f, r) for f, r, _ in errors] == [(path, "FieldValueInvalid")]
    assert errors[0][2].startswith(
        'Invalid value: apiextensions.ValidationRule{Rule:"self.min <", Message:""}: compilation failed: '
        "ERROR: <input>:1:11: Syntax error:"
    )
    errors = celrules.crd_rule_errors(_crd([{"rule": "self.min < limit"}]), release="1.32")
    assert errors[0][2].endswith("compilation failed: ERROR: <input>:1:12: undeclared reference to 'limit' (in container '')")
    assert celrules.crd_rule_errors(_crd([{"rule": ""}]), release="1.32") == [(path, "FieldValueRequired", "Required value")]
    assert celrules.crd_rule_errors(_crd([MIN_MAX]), release="1.32") == []
    assert celrules.crd_rule_errors(_crd([{"rule": "self.min <"}]), release="1.24") == []
    items = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[items].items.x-kubernetes-validations[0]"
    crd = _crd([])
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["items"]["items"][
        "x-kubernetes-validations"][0]["messageExpression"] = "'a' +"
    assert [f for f, _, _ in celrules.crd_rule_errors(crd, release="1.32")] == [f"{items}.messageExpression"]


# ------------------------------------------------------------------ on the wire, with kubectl

pytestmark_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")

RELEASES = {"k124": "1.24", "k129": "1.29", "k132": "1.32"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fleet]:
    specs = [ClusterSpec(name=n, kubernetes_version=v) for n, v in RELEASES.items()]
    async with Fleet(specs, directory=tmp_path_factory.mktemp("fleet")) as f:
        yield f


async def _kubectl(fleet: Fleet, home: Path, context: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(fleet.merged_kubeconfig_path), "--context", context, *args,
        env={**os.environ, "HOME": str(home), "KUBECONFIG": ""},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate(stdin.encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode()


@pytestmark_kubectl
@pytest.mark.asyncio(loop_scope="module")
async def test_kubectl_apply_of_a_bad_widget_per_release(fleet: Fleet, tmp_path: Path) -> None:
    crd = yaml.safe_dump(_crd([MIN_MAX]))
    bad = yaml.safe_dump({**_obj(min=5, max=2), "metadata": {"name": "w", "namespace": "default"}})
    for context, release in RELEASES.items():
        rc, _, err = await _kubectl(fleet, tmp_path, context, "apply", "-f", "-", stdin=crd)
        assert rc == 0, err
        rc, out, err = await _kubectl(fleet, tmp_path, context, "apply", "-f", "-", stdin=bad)
        if release == "1.24":
            assert rc == 0 and "widget.example.com/w created" in out, err
        else:
            assert rc != 0
            assert err.strip() == 'The Widget "w" is invalid: spec: Invalid value: "object": min must not exceed max'


@pytestmark_kubectl
@pytest.mark.asyncio(loop_scope="module")
async def test_a_widget_stored_before_its_rule(fleet: Fleet, tmp_path: Path) -> None:
    """Stored before the CRD had the rule: a later status write is refused up to 1.29
    and lets through with a warning from 1.30 (ratcheting), as upstream."""
    bad = yaml.safe_dump({**_obj(min=5, max=2), "metadata": {"name": "stale", "namespace": "default"}})
    status = '{"status": {"seen": true}}'
    for context in ("k129", "k132"):
        rc, _, err = await _kubectl(fleet, tmp_path, context, "apply", "-f", "-", stdin=yaml.safe_dump(_crd([])))
        assert rc == 0, err
        crd_status = _crd([])
        crd_status["spec"]["versions"][0]["subresources"] = {"status": {}}
        crd_status["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"] = {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}
        rc, _, err = await _kubectl(fleet, tmp_path, context, "apply", "-f", "-", stdin=yaml.safe_dump(crd_status))
        assert rc == 0, err
        rc, _, err = await _kubectl(fleet, tmp_path, context, "apply", "-f", "-", stdin=bad)
        assert rc == 0, err
        crd_status["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
            "x-kubernetes-validations"] = [MIN_MAX]
        rc, _, err = await _kubectl(fleet, tmp_path, context, "apply", "-f", "-", stdin=yaml.safe_dump(crd_status))
        assert rc == 0, err
        rc, _, err = await _kubectl(fleet, tmp_path, context, "patch", "widget", "stale", "-n", "default",
                                      "--subresource=status", "--type=merge", "-p", status)
        message = 'spec: Invalid value: "object": min must not exceed max'
        if context == "k129":
            assert rc != 0 and err.strip() == f'The Widget "stale" is invalid: {message}'
        else:
            assert rc == 0 and f"Warning: {message}" in err, err


def test_the_invalid_message_joins_rule_errors_as_the_server_does() -> None:
    errors = celrules.admit_custom(_obj(min=5, max=2, items=[{"name": "bad"}]), schema=_schema([MIN_MAX]),
                                   release="1.32").errors
    assert invalid_message("Widget", "example.com", "w", errors) == (
        'Widget.example.com "w" is invalid: [spec: Invalid value: "object": min must not exceed max, '
        'spec.items[0]: Invalid value: "object": no bad item]'
    )


def test_an_update_keeps_list_uniqueness_only_if_the_stored_object_had_it() -> None:
    schema = _schema([])
    listed = schema["properties"]["spec"]["properties"]["items"]
    listed["x-kubernetes-list-type"] = "map"
    listed["x-kubernetes-list-map-keys"] = ["name"]
    twice = _obj(items=[{"name": "a"}, {"name": "a"}])
    duplicate = ['spec.items[1]: Duplicate value: map[string]interface {}{"name":"a"}']
    assert _messages(twice, schema) == duplicate
    assert _messages(twice, schema, old=_obj(items=[{"name": "a"}])) == duplicate
    assert _messages(twice, schema, old=copy.deepcopy(twice)) == []


def test_the_libraries_of_1_25_are_there() -> None:
    schema = _schema([
        {"rule": "self.ttl.split('/').size() == 2 && self.ttl.lowerAscii().startsWith('a')", "message": "two parts"},
        {"rule": "self.items.map(i, i.name).isSorted()", "message": "sorted names"},
    ])
    assert _messages(_obj(ttl="A/b", items=[{"name": "a"}, {"name": "b"}]), schema) == []
    assert _messages(_obj(ttl="b", items=[{"name": "b"}, {"name": "a"}]), schema) == [
        'spec: Invalid value: "object": two parts',
        'spec: Invalid value: "object": sorted names',
    ]
    assert _messages(_obj(ttl="abc"), _schema([{"rule": "self.ttl.substring(5) == ''"}])) == [
        "spec: Invalid value: \"object\": index out of range: 5 evaluating rule: self.ttl.substring(5) == ''"
    ]
    # a function no release has does not compile
    crd = _crd([{"rule": "frobnicate(self.ttl)"}])
    assert "undeclared reference to 'frobnicate'" in celrules.crd_rule_errors(crd, release="1.32")[0][2]
