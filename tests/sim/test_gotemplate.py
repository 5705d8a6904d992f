"""Go text/template as the injectors evaluate it: each expectation is what Go 1.12's
``text/template`` prints for the same template and data (its messages included)."""

from __future__ import annotations

from typing import Any

import pytest

from federationd.sim.gotemplate import (
    Func,
    GoEnum,
    GoInt,
    GoMap,
    GoNil,
    GoSlice,
    GoStruct,
    Param,
    Template,
    TemplateError,
    format_float,
    sprint,
)

DATA: dict[str, Any] = {
    "S": "str", "Empty": "", "N": 3, "Zero": 0, "F": 15020.0, "B": True, "L": ["a", "b"], "M": {"k": "v", "a": 1.5},
    "Nil": None,
}

FUNCS = {
    "upper": Func([Param("string")], str.upper),
    "indent": Func([Param("int"), Param("string")], lambda n, s: s.replace("\n", "\n" + " " * n)),
}


def run(src: str, data: Any = None, *, delims: tuple[str, str] = ("{{", "}}")) -> str:
    return Template.parse(src, funcs=FUNCS, delims=delims).execute(DATA if data is None else data)


def error(src: str, data: Any = None, *, delims: tuple[str, str] = ("{{", "}}")) -> str:
    with pytest.raises(TemplateError) as e:
        run(src, data, delims=delims)
    return str(e.value)


@pytest.mark.parametrize(
    ("src", "out"),
    [
        ("plain text", "plain text"),
        ("{{ .S }}|{{ .N }}|{{ .B }}|{{ .F }}", "str|3|true|15020"),
        ("{{ .M.k }}|{{ .M.missing }}|{{ index .M `missing` }}|{{ .Nil }}", "v|<no value>|<nil>|<nil>"),
        ("{{ .L }} {{ .M }}", "[a b] map[a:1.5 k:v]"),
        ("{{ if .Empty }}a{{ else if .Zero }}b{{ else if .N }}c{{ else }}d{{ end }}", "c"),
        ("{{ if .L }}list{{ end }}{{ if .Nil }}nil{{ end }}{{ if .M.missing }}x{{ end }}", "list"),
        ("{{ range $i, $e := .L }}{{ $i }}={{ $e }};{{ end }}", "0=a;1=b;"),
        ("{{ range .M }}{{ . }},{{ end }}", "1.5,v,"),  # maps range in key order
        ("{{ range .Nil }}x{{ else }}empty{{ end }}", "empty"),
        ("{{ with .S }}<{{ . }}>{{ end }}{{ with .Empty }}no{{ else }}else{{ end }}", "<str>else"),
        ('{{ $x := "a" }}{{ if true }}{{ $x = "b" }}{{ end }}{{ $x }}', "b"),
        ("{{ $ }}", "map[B:true Empty: F:15020 L:[a b] M:map[a:1.5 k:v] N:3 Nil:<nil> S:str Zero:0]"),
        ("a  {{- .S -}}  b", "astrb"),
        ("a\n  {{- /* a comment */ -}}\n  b", "ab"),
        ("{{ .S | upper }} {{ upper .S | printf `%s!` }}", "STR STR!"),
        ('{{ printf "%s-%d-%v-%q" "a" 3 true "q" }}', 'a-3-true-"q"'),
        ("{{ and 1 0 2 }} {{ or 0 `` `x` }} {{ not 0 }} {{ and 1 2 }}", "0 x true 2"),
        ("{{ eq .N 3 }} {{ eq .S `x` `str` }} {{ ne 1 2 }} {{ lt 1 2 }} {{ ge 2.5 2.5 }}", "true true true true true"),
        ("{{ len .L }} {{ len .S }} {{ index .L 1 }}", "2 3 b"),
        ("{{ (index .M `k`) }}{{ (.M).k }}", "vv"),
        ('{{ "a\\tb\\n" }}{{ `raw\\n` }}', "a\tb\nraw\\n"),
        ("{{ print 1 2 `a` 3 }} {{ println `x` }}", "1 2a3 x\n"),
        ("{{ indent 2 `a\nb` }}", "a\n  b"),
    ],
)
def test_evaluation(src: str, out: str) -> None:
    assert run(src) == out


def test_custom_delimiters_leave_the_others_as_text() -> None:
    # the 1.1 injector parses [[ ]]; {{ }} in its template is plain text
    assert run("[[- .S ]] {{ .S }} [[ if .B -]]  yes [[- end ]]", delims=("[[", "]]")) == "str {{ .S }} yes"


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ("{{ nosuch .S }}", 'template: inject:1: function "nosuch" not defined'),
        ("a\n{{ if .B }}\nb", "template: inject:3: unexpected EOF"),
        ("{{ end }}", "template: inject:1: unexpected {{end}}"),
        ("a\n{{ .S ", "template: inject:2: unclosed action"),
        ("{{ .S\n}}", "template: inject:2: unclosed action"),
        ("{{ $y }}", 'template: inject:1: undefined variable "$y"'),
        ("{{ }}", "template: inject:1: missing value for command"),
        ("{{ if }}{{ end }}", "template: inject:1: missing value for if"),
        ("{{ (.S }}", "template: inject:1: unclosed left paren"),
        ("{{ .S) }}", "template: inject:1: unexpected right paren U+0029 ')'"),
        ('{{ "abc }}', "template: inject:1: unterminated quoted string"),
        ("{{ `abc }}", "template: inject:1: unterminated raw quoted string"),
        ("{{ .S | 3 }}", "template: inject:1: non executable command in pipeline stage 2"),
        ("{{ .S # }}", "template: inject:1: unrecognized character in action: U+0023 '#'"),
        ("{{ 3.S }}", 'template: inject:1: bad number syntax: "3.S"'),
        ("{{/* open", "template: inject:1: unclosed comment"),
    ],
)
def test_parse_errors_are_go_s(src: str, message: str) -> None:
    assert error(src) == message


def test_execution_errors_name_the_place_and_the_cause() -> None:
    meta = GoStruct("v1.ObjectMeta", {"Name": "pod", "Annotations": GoMap({})})
    data = {"Meta": meta, "Tracing": GoNil("v1alpha1.Tracing", field_names=frozenset({"Zipkin"}))}
    assert error("x\n  {{ .Meta.Nope }}", data) == (
        'template: inject:2:5: executing "inject" at <.Meta.Nope>: can\'t evaluate field Nope in type *v1.ObjectMeta'
    )
    assert error("{{ .Tracing.Zipkin }}", data).endswith("nil pointer evaluating *v1alpha1.Tracing.Zipkin")
    assert error("{{ upper 3 }}", data).endswith("expected string; found 3")
    assert error("{{ upper .Meta }}", data).endswith("wrong type for value; expected string; got *v1.ObjectMeta")
    assert error("{{ upper }}", data).endswith("wrong number of args for upper: want 1 got 0")
    assert error("{{ eq .Meta 1 }}", data).endswith("error calling eq: invalid type for comparison")
    assert error("{{ eq `a` 1 }}", data).endswith("error calling eq: incompatible types for comparison")
    assert error("{{ index `x` `y` }}", data).endswith("cannot index slice/array with type string")


def test_typed_values_behave_as_their_go_types() -> None:
    enum = GoEnum("v1alpha1.ProxyConfig_InboundInterceptionMode", 1, "TPROXY")
    data = {
        "Port": GoInt("int32", 15020),
        "Mode": enum,
        "Labels": GoMap({"app": "echo"}),
        "Containers": GoSlice(None, "[]v1.Container"),
        "Getter": GoNil("v1alpha1.Tracing", methods={"GetZipkin": lambda: None}),
    }
    assert run("{{ .Port }} {{ .Mode }} {{ .Mode.String }} {{ eq .Mode 1 }}", data) == "15020 TPROXY TPROXY true"
    # index of a missing key in a map[string]string is "", through a field it is no value
    assert run("[{{ index .Labels `x` }}] [{{ .Labels.x }}] {{ .Labels.app }}", data) == "[] [<no value>] echo"
    assert run("{{ if .Containers }}x{{ else }}nil slice{{ end }} {{ len .Containers }}", data) == "nil slice 0"
    # protobuf getters work on nil receivers
    assert run("{{ if .Getter.GetZipkin }}z{{ else }}none{{ end }}", data) == "none"


@pytest.mark.parametrize(
    ("value", "text"),
    [(15020.0, "15020"), (1.5, "1.5"), (1e6, "1e+06"), (1e20, "1e+20"), (123456789.0, "1.23456789e+08"),
     (100000.5, "100000.5"),
     (0.0001, "0.0001"), (0.00001, "1e-05"), (-2.0, "-2")],
)
def test_floats_print_as_fmt_does(value: float, text: str) -> None:
    assert format_float(value) == text
    assert sprint(value) == text
