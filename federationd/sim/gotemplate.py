"""Go ``text/template``, the subset Istio's sidecar injection templates are written in.

The emulator evaluates the injection template a cluster's sidecar injector would
evaluate (see :mod:`federationd.sim.injection`), so a template that Go would reject must
be rejected here with Go's words, and one Go would run must produce Go's text. No
maintained Python implementation of ``text/template`` exists; this one covers what the
templates use — text and actions with trim markers (``{{-`` / ``-}}``) and comments,
pipelines, parenthesised arguments, ``if`` / ``else if`` / ``else`` / ``end``, ``range``
(with ``$i, $v :=``), ``with``, variables (``:=`` and ``=``), ``.`` and field or method
chains, and the builtins ``and or not eq ne lt le gt ge len index print printf println``
— with the delimiters chosen by the caller (Istio 1.1 uses ``[[ ]]``).

Semantics follow Go 1.12 (what Istio 1.1 and 1.2 were built with): ``and``/``or``
evaluate every argument, ``eq`` compares basic values only, a missing map key reached
by a field is "no value" while ``index`` yields the element type's zero value. Go's
typed values are modelled by the small classes below (:class:`GoStruct`,
:class:`GoMap`, :class:`GoEnum`, :class:`NoValue`); plain ``str``/``int``/``float``/
``bool``/``None``/``list``/``dict`` stand for the values ``encoding/json`` would put in an
``interface{}``. Error messages are Go's (``template: inject:3: function "x" not
defined``, ``... executing "inject" at <.X>: can't evaluate field X in type ...``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


class TemplateError(Exception):
    """A template that does not parse, or fails while executing (Go's message)."""


# ---------------------------------------------------------------------------- values


class _NoValue:
    """An invalid ``reflect.Value``: a missing map key reached through a field."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<no value>"


NoValue = _NoValue()
_MISSING = object()  # no value piped into a command (the first of a pipeline)


@dataclass
class GoStruct:
    """A Go struct value (``pointer``: reached through a pointer, as protobuf messages
    and most Kubernetes sub-objects are). ``fields`` hold every field, set or zero;
    ``methods`` the methods the type has (receiver already bound)."""

    type_name: str
    fields: dict[str, Any]
    methods: dict[str, Callable[..., Any]] = field(default_factory=dict)
    pointer: bool = True
    #: what ``fmt`` prints when the type has a ``String`` method
    text: str | None = None


@dataclass
class GoNil:
    """A typed nil pointer (``*v1alpha1.Tracing(nil)``); its methods may still be
    called, as protobuf getters are on nil receivers."""

    type_name: str
    methods: dict[str, Callable[..., Any]] = field(default_factory=dict)
    field_names: frozenset[str] = frozenset()


@dataclass
class GoMap:
    """A typed map (``map[string]string``): ``index`` of a missing key is ``zero``."""

    items: dict[str, Any]
    type_name: str = "map[string]string"
    zero: Any = ""


@dataclass
class GoSlice:
    """A typed slice (``[]v1.Container``); ``nil`` when ``items`` is None."""

    items: list[Any] | None
    type_name: str


@dataclass(frozen=True)
class GoEnum:
    """A protobuf enum: an ``int32`` whose ``String`` is its name."""

    type_name: str
    number: int
    name: str


@dataclass(frozen=True)
class GoInt:
    """An integer of a named Go type other than ``int`` (``int32``, ``int64``, ``uint32``)."""

    type_name: str
    value: int


def type_of(v: Any) -> str:
    """Go's name for the type of ``v`` (as ``reflect.Type.String`` prints it)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, GoInt):
        return v.type_name
    if isinstance(v, GoEnum):
        return v.type_name
    if isinstance(v, GoStruct):
        return ("*" if v.pointer else "") + v.type_name
    if isinstance(v, GoNil):
        return "*" + v.type_name
    if isinstance(v, GoMap):
        return v.type_name
    if isinstance(v, GoSlice):
        return v.type_name
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return "interface {}"


def truth(v: Any) -> bool:
    """Go's ``template.IsTrue``: false, 0, nil and empty values are false."""
    if v is NoValue or v is None or isinstance(v, GoNil):
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float, str, list, dict)):
        return bool(v)
    if isinstance(v, GoInt):
        return v.value != 0
    if isinstance(v, GoEnum):
        return v.number != 0
    if isinstance(v, GoMap):
        return bool(v.items)
    if isinstance(v, GoSlice):
        return bool(v.items)
    return True  # structs are always true


def format_float(f: float) -> str:
    """``fmt``'s ``%v`` of a float64: ``strconv.FormatFloat(f, 'g', -1, 64)``, the shortest
    digits, in exponent form from 1e+06 on (why a YAML ``1000000`` prints as ``1e+06``)."""
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if math.isnan(f):
        return "NaN"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    digits = repr(f)
    mant, _, exp_s = digits.partition("e")
    sign = "-" if mant.startswith("-") else ""
    mant = mant.lstrip("-")
    int_part, _, frac = mant.partition(".")
    if frac == "0":
        frac = ""
    exp = int(exp_s) if exp_s else 0
    # normalise to d.ddd * 10^x
    all_digits = (int_part + frac).lstrip("0")
    lead_zeros = len(int_part + frac) - len((int_part + frac).lstrip("0"))
    x = len(int_part) - 1 + exp - lead_zeros
    all_digits = all_digits.rstrip("0") or "0"
    if x < -4 or x >= 6:
        m = all_digits[0] + ("." + all_digits[1:] if len(all_digits) > 1 else "")
        return f"{sign}{m}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if x >= 0:
        if len(all_digits) <= x + 1:
            return sign + all_digits + "0" * (x + 1 - len(all_digits))
        return sign + all_digits[: x + 1] + "." + all_digits[x + 1 :]
    return sign + "0." + "0" * (-x - 1) + all_digits


def sprint(v: Any) -> str:
    """``fmt.Sprint`` of one value, as a template action prints it."""
    if v is NoValue:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, GoInt):
        return str(v.value)
    if isinstance(v, GoEnum):
        return v.name
    if isinstance(v, GoNil):
        return "<nil>"
    if isinstance(v, GoStruct):
        if v.text is not None:
            return v.text
        inner = "{" + " ".join(_sprint_nested(x) for x in v.fields.values()) + "}"
        return ("&" if v.pointer else "") + inner
    if isinstance(v, (GoMap, dict)):
        items = v.items if isinstance(v, GoMap) else v
        return "map[" + " ".join(f"{k}:{_sprint_nested(items[k])}" for k in sorted(items)) + "]"
    if isinstance(v, GoSlice):
        return "[" + " ".join(_sprint_nested(x) for x in v.items or []) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_sprint_nested(x) for x in v) + "]"
    return str(v)


def _sprint_nested(v: Any) -> str:
    if isinstance(v, GoStruct) and v.pointer and v.text is None:
        return "0xc000000000"  # fmt prints nested pointers as addresses
    return sprint(v)


# ---------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class Tok:
    kind: str  # text, left, right, space, pipe, lparen, rparen, decl, assign, char, string,
    #            raw, number, bool, nil, dot, field, variable, identifier, keyword, comment, eof
    val: str
    pos: int
    line: int

    def __str__(self) -> str:
        # Go's item.String()
        if self.kind == "eof":
            return "EOF"
        if self.kind == "keyword":
            return f"<{self.val}>"
        if len(self.val) > 10:
            return _go_quote(self.val[:10]) + "..."
        return _go_quote(self.val)


def _go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


KEYWORDS = frozenset({"block", "define", "else", "end", "if", "range", "nil", "template", "with"})
_SPACE = " \t\r\n"
_ALNUM = re.compile(r"[A-Za-z0-9_\u00c0-\uffff]")


class _Lexer:
    def __init__(self, name: str, text: str, left: str, right: str) -> None:
        self.name = name
        self.text = text
        self.left = left
        self.right = right
        self.toks: list[Tok] = []
        self.line = 1

    def error(self, msg: str) -> TemplateError:
        return TemplateError(f"template: {self.name}:{self.line}: {msg}")

    def emit(self, kind: str, start: int, end: int, line: int) -> None:
        self.toks.append(Tok(kind, self.text[start:end], start, line))

    def run(self) -> list[Tok]:
        text, i = self.text, 0
        n = len(text)
        while i < n:
            j = text.find(self.left, i)
            if j < 0:
                self._text(i, n)
                i = n
                break
            # a left trim marker removes the spaces before the action
            trim_left = text.startswith(self.left + "-", j) and j + len(self.left) + 1 < n and \
                text[j + len(self.left) + 1] in _SPACE
            end_text = j
            if trim_left:
                while end_text > i and text[end_text - 1] in _SPACE:
                    end_text -= 1
            self._text(i, end_text)
            self.line += text.count("\n", end_text, j)
            i = self._action(j, trim_left)
        self.toks.append(Tok("eof", "", n, self.line))
        return self.toks

    def _text(self, start: int, end: int) -> None:
        if end > start:
            self.emit("text", start, end, self.line)
            self.line += self.text.count("\n", start, end)

    def _right_at(self, i: int) -> tuple[bool, bool]:
        """(a right delimiter starts at i, it carries a trim marker)"""
        t = self.text
        if t.startswith(self.right, i):
            return True, False
        if i > 0 and t[i] == "-" and t[i - 1] in _SPACE and t.startswith(self.right, i + 1):
            return True, True
        return False, False

    def _action(self, j: int, trim_left: bool) -> int:
        t = self.text
        start_line = self.line
        self.toks.append(Tok("left", self.left, j, self.line))
        i = j + len(self.left) + (2 if trim_left else 0)
        # comments: {{/* ... */}}
        if t.startswith("/*", i):
            end = t.find("*/", i + 2)
            if end < 0:
                raise self.error("unclosed comment")
            self.line += t.count("\n", i, end)
            k = end + 2
            at, trim = self._right_at(k)
            if not at and t.startswith(" -" + self.right, k):
                at, trim, k = True, True, k + 1
            if not at:
                raise self.error("comment ends before closing delimiter")
            self.toks.pop()
            k += (1 if trim else 0) + len(self.right)
            return self._after_right(k, trim)
        depth = 0
        n = len(t)
        while True:
            if i >= n:
                self.line = start_line
                raise self.error("unclosed action")
            at, trim = self._right_at(i)
            if at and depth > 0:
                raise self.error("unclosed left paren")
            if at and depth == 0:
                # a trim marker needs the space before it; the space was already lexed
                self.toks.append(Tok("right", self.right, i, self.line))
                k = i + (1 if trim else 0) + len(self.right)
                return self._after_right(k, trim)
            ch = t[i]
            if ch in _SPACE:
                k = i
                while k < n and t[k] in _SPACE and not self._right_at(k)[0]:
                    k += 1
                if "\n" in t[i:k]:
                    # Go 1.12: a newline inside an action is an error
                    self.line += t.count("\n", i, k)
                    raise self.error("unclosed action")
                self.emit("space", i, k, self.line)
                i = k
            elif ch == "|":
                self.emit("pipe", i, i + 1, self.line)
                i += 1
            elif ch == "(":
                depth += 1
                self.emit("lparen", i, i + 1, self.line)
                i += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    raise self.error("unexpected right paren U+0029 ')'")
                self.emit("rparen", i, i + 1, self.line)
                i += 1
            elif ch == ":":
                if t.startswith(":=", i):
                    self.emit("decl", i, i + 2, self.line)
                    i += 2
                else:
                    raise self.error("expected :=")
            elif ch == "=":
                self.emit("assign", i, i + 1, self.line)
                i += 1
            elif ch == ",":
                self.emit("char", i, i + 1, self.line)
                i += 1
            elif ch == '"':
                k = i + 1
                while True:
                    if k >= n or t[k] == "\n":
                        raise self.error("unterminated quoted string")
                    if t[k] == "\\":
                        k += 2
                        continue
                    if t[k] == '"':
                        break
                    k += 1
                self.emit("string", i, k + 1, self.line)
                i = k + 1
            elif ch == "`":
                k = t.find("`", i + 1)
                if k < 0:
                    raise self.error("unterminated raw quoted string")
                self.emit("raw", i, k + 1, self.line)
                self.line += t.count("\n", i, k)
                i = k + 1
            elif ch == "'":
                m = re.compile(r"'(\\.|[^\\'])+'").match(t, i)
                if not m:
                    raise self.error("unterminated character constant")
                self.emit("charconst", i, m.end(), self.line)
                i = m.end()
            elif ch == "$":
                m = re.compile(r"\$[A-Za-z0-9_]*").match(t, i)
                assert m
                self.emit("variable", i, m.end(), self.line)
                i = m.end()
            elif ch == "." and not (i + 1 < n and t[i + 1].isdigit()):
                m = re.compile(r"\.[A-Za-z_][A-Za-z0-9_]*").match(t, i)
                if m:
                    self.emit("field", i, m.end(), self.line)
                    i = m.end()
                else:
                    self.emit("dot", i, i + 1, self.line)
                    i += 1
            elif ch.isdigit() or (ch in "+-." and i + 1 < n and t[i + 1].isdigit()):
                m = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|([0-9_]+\.?[0-9_]*|\.[0-9_]+)([eE][+-]?[0-9]+)?i?)").match(t, i)
                assert m
                end = m.end()
                if end < n and _ALNUM.match(t[end]):
                    raise self.error(f"bad number syntax: {_go_quote(t[i:end + 1])}")
                self.emit("number", i, end, self.line)
                i = end
            elif _ALNUM.match(ch):
                m = re.compile(r"[A-Za-z0-9_\u00c0-\uffff]+").match(t, i)
                assert m
                word = m.group(0)
                kind = "keyword" if word in KEYWORDS else "bool" if word in ("true", "false") else "identifier"
                if word == "nil":
                    kind = "nil"
                self.emit(kind, i, m.end(), self.line)
                i = m.end()
                # a field chain may follow an identifier's result only in parens; Go lexes
                # "x.y" after an identifier as a field of it, which we do too
            else:
                raise self.error(f"unrecognized character in action: {_unicode(ch)}")

    def _after_right(self, k: int, trim: bool) -> int:
        if trim:
            t = self.text
            m = k
            while m < len(t) and t[m] in _SPACE:
                m += 1
            self.line += t.count("\n", k, m)
            return m
        return k


def _unicode(ch: str) -> str:
    return f"U+{ord(ch):04X} {_go_char(ch)}"


def _go_char(ch: str) -> str:
    return "'" + ch + "'" if ch.isprintable() else ""


# ---------------------------------------------------------------------------- parse tree


@dataclass
class Node:
    pos: int
    line: int


@dataclass
class Text(Node):
    text: str


@dataclass
class Arg(Node):
    kind: str  # field, chain, variable, dot, string, number, bool, nil, identifier, pipe
    value: Any = None
    fields: tuple[str, ...] = ()
    sub: Pipeline | None = None
    src: str = ""


@dataclass
class Command(Node):
    args: list[Arg]


@dataclass
class Pipeline(Node):
    decl: list[str]
    is_assign: bool
    cmds: list[Command]
    src: str = ""


@dataclass
class Action(Node):
    pipe: Pipeline


@dataclass
class Branch(Node):
    kind: str  # if, range, with
    pipe: Pipeline
    body: list[Node]
    else_body: list[Node] | None


BUILTINS = frozenset({"and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne",
                      "lt", "le", "gt", "ge", "html", "js", "urlquery", "call"})


class _Parser:
    def __init__(self, name: str, text: str, toks: list[Tok], funcs: dict[str, Callable[..., Any]]) -> None:
        self.name = name
        self.text = text
        self.toks = toks
        self.i = 0
        self.funcs = funcs
        self.vars: list[str] = ["$"]

    def error(self, tok: Tok, msg: str) -> TemplateError:
        return TemplateError(f"template: {self.name}:{tok.line}: {msg}")

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def next_non_space(self) -> Tok:
        t = self.next()
        while t.kind == "space":
            t = self.next()
        return t

    def peek_non_space(self) -> Tok:
        save = self.i
        t = self.next_non_space()
        self.i = save
        return t

    def unexpected(self, tok: Tok, context: str) -> TemplateError:
        return self.error(tok, f"unexpected {tok} in {context}")

    def parse(self) -> list[Node]:
        nodes: list[Node] = []
        while self.peek().kind != "eof":
            n = self.text_or_action()
            if isinstance(n, tuple):
                raise self.error(n[1], f"unexpected {{{{{n[0]}}}}}")
            nodes.append(n)
        return nodes

    def item_list(self) -> tuple[list[Node], str, Tok]:
        """Nodes up to {{end}} or {{else}}; returns (nodes, "end"|"else", the token)."""
        nodes: list[Node] = []
        while True:
            if self.peek_non_space().kind == "eof":
                raise self.error(self.peek(), "unexpected EOF")
            n = self.text_or_action()
            if isinstance(n, tuple):
                return nodes, n[0], n[1]
            nodes.append(n)

    def text_or_action(self) -> Node | tuple[str, Tok]:
        t = self.next_non_space()
        if t.kind == "text":
            return Text(t.pos, t.line, t.val)
        if t.kind == "left":
            return self.action()
        raise self.unexpected(t, "input")

    def action(self) -> Node | tuple[str, Tok]:
        start = self.i
        t = self.next_non_space()
        if t.kind == "keyword":
            if t.val == "end":
                self.expect_right("end")
                return ("end", t)
            if t.val == "else":
                return ("else", t)
            if t.val in ("if", "range", "with"):
                return self.branch(t)
            raise self.error(t, f"{{{{{t.val}}}}} is not supported by this template engine")
        self.i = start
        tok = self.peek_non_space()
        return Action(tok.pos, tok.line, self.pipeline("command"))

    def expect_right(self, context: str) -> Tok:
        t = self.next_non_space()
        if t.kind != "right":
            raise self.unexpected(t, context)
        return t

    def branch(self, key: Tok) -> Branch:
        context = key.val
        depth = len(self.vars)
        pipe = self.pipeline(context)
        body, end, _end_tok = self.item_list()
        else_body: list[Node] | None = None
        if end == "else":
            # {{else if ...}} is {{else}}{{if ...}}{{end}}
            nxt = self.peek_non_space()
            if context == "if" and nxt.kind == "keyword" and nxt.val == "if":
                self.next_non_space()
                inner = self.branch(nxt)
                else_body = [inner]
            else:
                self.expect_right("else")
                else_body, end2, tok2 = self.item_list()
                if end2 != "end":
                    raise self.error(tok2, "expected end; found {{else}}")
        del self.vars[depth:]
        return Branch(key.pos, key.line, context, pipe, body, else_body)

    def pipeline(self, context: str) -> Pipeline:
        start = self.peek_non_space()
        decl: list[str] = []
        is_assign = False
        # declarations: $x := / $x = / $i, $v :=
        save = self.i
        t = self.next_non_space()
        if t.kind == "variable":
            nxt = self.next_non_space()
            if nxt.kind in ("decl", "assign"):
                decl, is_assign = [t.val], nxt.kind == "assign"
            elif nxt.kind == "char" and nxt.val == "," and context == "range":
                t2 = self.next_non_space()
                d2 = self.next_non_space()
                if t2.kind != "variable" or d2.kind not in ("decl", "assign"):
                    raise self.error(t2, "range can only initialize variables")
                decl, is_assign = [t.val, t2.val], d2.kind == "assign"
            else:
                self.i = save
        else:
            self.i = save
        if decl:
            for v in decl:
                if is_assign:
                    if v not in self.vars:
                        raise self.error(start, f"undefined variable {_go_quote(v)}")
                else:
                    self.vars.append(v)
        cmds: list[Command] = []
        end_kind = "rparen" if context == "parenthesized pipeline" else "right"
        while True:
            t = self.next_non_space()
            if t.kind == end_kind:
                if not cmds:
                    raise self.error(t, f"missing value for {context}")
                for k, c in enumerate(cmds[1:], start=1):
                    if c.args[0].kind in ("bool", "dot", "nil", "number", "string"):
                        raise self.error(t, f"non executable command in pipeline stage {k + 1}")
                return Pipeline(start.pos, start.line, decl, is_assign, cmds, self.text[start.pos:t.pos].strip())
            if t.kind in ("bool", "charconst", "dot", "field", "identifier", "number", "nil", "raw", "string",
                          "variable", "lparen"):
                self.i -= 1
                cmds.append(self.command())
            else:
                raise self.unexpected(t, context)

    def command(self) -> Command:
        first = self.peek_non_space()
        args: list[Arg] = []
        while True:
            self.peek_non_space()
            while self.peek().kind == "space":
                self.next()
            op = self.operand()
            if op is not None:
                args.append(op)
            t = self.next()
            if t.kind == "space":
                continue
            if t.kind in ("right", "rparen"):
                self.i -= 1
            elif t.kind != "pipe":
                raise self.error(t, f"unexpected {t} in operand")
            break
        if not args:
            raise self.error(first, "empty command")
        return Command(first.pos, first.line, args)

    def operand(self) -> Arg | None:
        t = self.next()
        a: Arg
        if t.kind == "identifier":
            if t.val not in self.funcs and t.val not in BUILTINS:
                raise self.error(t, f"function {_go_quote(t.val)} not defined")
            a = Arg(t.pos, t.line, "identifier", t.val, src=t.val)
        elif t.kind == "dot":
            a = Arg(t.pos, t.line, "dot", src=".")
        elif t.kind == "nil":
            a = Arg(t.pos, t.line, "nil", src="nil")
        elif t.kind == "variable":
            if t.val not in self.vars:
                raise self.error(t, f"undefined variable {_go_quote(t.val)}")
            a = Arg(t.pos, t.line, "variable", t.val, src=t.val)
        elif t.kind == "field":
            names = [t.val[1:]]
            while self.peek().kind == "field":
                names.append(self.next().val[1:])
            return Arg(t.pos, t.line, "field", fields=tuple(names), src="".join("." + x for x in names))
        elif t.kind == "bool":
            a = Arg(t.pos, t.line, "bool", t.val == "true", src=t.val)
        elif t.kind == "number":
            a = Arg(t.pos, t.line, "number", _number(t, self), src=t.val)
        elif t.kind == "charconst":
            a = Arg(t.pos, t.line, "number", ord(_unquote_char(t.val)), src=t.val)
        elif t.kind in ("string", "raw"):
            a = Arg(t.pos, t.line, "string", _unquote(t, self), src=t.val)
        elif t.kind == "lparen":
            sub = self.pipeline("parenthesized pipeline")
            a = Arg(t.pos, t.line, "pipe", sub=sub, src="(" + sub.src + ")")
        else:
            self.i -= 1
            return None
        if self.peek().kind == "field":
            names = []
            while self.peek().kind == "field":
                names.append(self.next().val[1:])
            if a.kind in ("bool", "string", "number", "nil", "dot"):
                raise self.error(t, f"unexpected . after term {_go_quote(a.src)}")
            return Arg(a.pos, a.line, "chain", fields=tuple(names), sub=None, value=a,
                       src=a.src + "".join("." + x for x in names))
        return a


def _number(t: Tok, p: _Parser) -> int | float:
    s = t.val.replace("_", "")
    try:
        if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]+", s):
            return int(s, 16)
        if re.fullmatch(r"[+-]?[0-9]+", s):
            return int(s, 10)
        return float(s)
    except ValueError:
        raise p.error(t, f"illegal number syntax: {_go_quote(t.val)}") from None


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", "'": "'", '"': '"'}


def _unquote(t: Tok, p: _Parser) -> str:
    if t.kind == "raw":
        return t.val[1:-1].replace("\r", "")
    body = t.val[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(body):
            raise p.error(t, "invalid syntax")
        e = body[i + 1]
        if e in _ESCAPES and e != "'":
            out.append(_ESCAPES[e])
            i += 2
        elif e == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2:i + 4]):
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2:i + 6]):
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        elif e == "U" and re.fullmatch(r"[0-9a-fA-F]{8}", body[i + 2:i + 10]):
            out.append(chr(int(body[i + 2:i + 10], 16)))
            i += 10
        elif re.fullmatch(r"[0-7]{3}", body[i + 1:i + 4]):
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise p.error(t, "invalid syntax")
    return "".join(out)


def _unquote_char(s: str) -> str:
    body = s[1:-1]
    if body.startswith("\\"):
        return _ESCAPES.get(body[1:2], body[1:2])
    return body


# ---------------------------------------------------------------------------- execution


@dataclass(frozen=True)
class Param:
    """A Go function parameter's type, for the conversions ``text/template`` makes."""

    type_name: str  # "string", "int", "bool", "interface {}", or any Go type name

    def accepts(self, v: Any) -> bool:
        t = self.type_name
        if t == "interface {}":
            return True
        if t == "string":
            return isinstance(v, str)
        if t == "int":
            return isinstance(v, int) and not isinstance(v, bool)
        if t == "bool":
            return isinstance(v, bool)
        if t == "map[string]string":
            return isinstance(v, GoMap) and v.type_name == t
        vt = type_of(v)
        return vt == t or (vt.startswith("*") and vt[1:] == t)

    @property
    def nillable(self) -> bool:
        t = self.type_name
        return t == "interface {}" or t.startswith(("*", "[]", "map["))


@dataclass
class Func:
    """A function of the template's FuncMap: its Go parameter types and what it does."""

    params: Sequence[Param]
    fn: Callable[..., Any]
    variadic: bool = False


class _Exec:
    def __init__(self, name: str, text: str, funcs: dict[str, Func]) -> None:
        self.name = name
        self.text = text
        self.funcs = funcs
        self.out: list[str] = []
        self.vars: list[tuple[str, Any]] = []

    def error(self, node: Node, src: str, msg: str) -> TemplateError:
        line_start = self.text.rfind("\n", 0, node.pos) + 1
        col = node.pos - line_start
        return TemplateError(f"template: {self.name}:{node.line}:{col}: executing {_go_quote(self.name)} "
                             f"at <{src}>: {msg}")

    def var(self, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise KeyError(name)

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return

    def walk(self, dot: Any, nodes: list[Node]) -> None:
        for n in nodes:
            if isinstance(n, Text):
                self.out.append(n.text)
            elif isinstance(n, Action):
                v = self.pipeline(dot, n.pipe)
                if not n.pipe.decl:
                    self.out.append(self.print_value(n, n.pipe.src, v))
            elif isinstance(n, Branch):
                self.branch(dot, n)

    def print_value(self, node: Node, src: str, v: Any) -> str:
        return sprint(v)

    def branch(self, dot: Any, n: Branch) -> None:
        mark = len(self.vars)
        try:
            v = self.pipeline(dot, n.pipe)
            if n.kind == "if":
                self.walk(dot, n.body if truth(v) else (n.else_body or []))
            elif n.kind == "with":
                if truth(v):
                    self.walk(v, n.body)
                else:
                    self.walk(dot, n.else_body or [])
            else:
                self.range(dot, n, v)
        finally:
            del self.vars[mark:]

    def range(self, dot: Any, n: Branch, v: Any) -> None:
        items: list[tuple[Any, Any]]
        if isinstance(v, (list, GoSlice)):
            seq = v if isinstance(v, list) else (v.items or [])
            items = list(enumerate(seq))
        elif isinstance(v, (dict, GoMap)):
            m = v if isinstance(v, dict) else v.items
            items = [(k, m[k]) for k in sorted(m)]
        elif v is None or v is NoValue or isinstance(v, GoNil):
            items = []
        else:
            raise self.error(n, n.pipe.src, f"range can't iterate over {sprint(v)}")
        if not items:
            self.walk(dot, n.else_body or [])
            return
        mark = len(self.vars)
        for k, e in items:
            if len(n.pipe.decl) == 1:
                self.vars.append((n.pipe.decl[0], e))
            elif len(n.pipe.decl) == 2:
                self.vars.append((n.pipe.decl[0], k))
                self.vars.append((n.pipe.decl[1], e))
            self.walk(e, n.body)
            del self.vars[mark:]

    def pipeline(self, dot: Any, p: Pipeline) -> Any:
        value: Any = _MISSING
        for cmd in p.cmds:
            value = self.command(dot, cmd, value)
        # a command's result that is an interface holding a value prints as that value
        for v in p.decl:
            if p.is_assign:
                self.set_var(v, value)
            elif len(p.decl) == 1:
                self.vars.append((v, value))
        return value

    def command(self, dot: Any, cmd: Command, final: Any) -> Any:
        head = cmd.args[0]
        args = cmd.args[1:]
        piped = [] if final is _MISSING else [final]
        if head.kind == "identifier":
            return self.call(dot, head, args, piped)
        if head.kind == "field":
            return self.fields(dot, dot, head, head.fields, args, piped)
        if head.kind == "chain":
            assert isinstance(head.value, Arg)
            recv = self.arg_value(dot, head.value)
            return self.fields(dot, recv, head, head.fields, args, piped)
        if args or piped:
            if head.kind in ("string", "number", "bool", "nil", "dot", "variable"):
                raise self.error(head, head.src, f"can't give argument to non-function {head.src}")
        if head.kind == "nil":
            raise self.error(head, head.src, "nil is not a command")
        return self.arg_value(dot, head)

    def arg_value(self, dot: Any, a: Arg) -> Any:
        if a.kind == "dot":
            return dot
        if a.kind == "variable":
            return self.var(a.value)
        if a.kind in ("string", "number", "bool"):
            return a.value
        if a.kind == "nil":
            return None
        if a.kind == "field":
            return self.fields(dot, dot, a, a.fields, [], [])
        if a.kind == "chain":
            assert isinstance(a.value, Arg)
            return self.fields(dot, self.arg_value(dot, a.value), a, a.fields, [], [])
        if a.kind == "pipe":
            assert a.sub is not None
            mark = len(self.vars)
            try:
                return self.pipeline(dot, a.sub)
            finally:
                del self.vars[mark:]
        if a.kind == "identifier":
            return self.call(dot, a, [], [])
        raise self.error(a, a.src, f"can't handle {a.src}")

    def fields(self, dot: Any, recv: Any, node: Arg, names: tuple[str, ...], args: list[Arg],
               piped: list[Any]) -> Any:
        for i, name in enumerate(names):
            last = i == len(names) - 1
            recv = self.field(dot, recv, node, name, args if last else [], piped if last else [])
        return recv

    def field(self, dot: Any, recv: Any, node: Arg, name: str, args: list[Arg], piped: list[Any]) -> Any:
        has_args = bool(args or piped)
        if recv is NoValue:
            return NoValue
        methods = recv.methods if isinstance(recv, (GoStruct, GoNil)) else {}
        if isinstance(recv, GoEnum):
            methods = {"String": lambda: recv.name}
        if name in methods:
            values = [self.arg_value(dot, a) for a in args] + piped
            try:
                return methods[name](*values)
            except TypeError:
                raise self.error(node, node.src, f"wrong number of args for {name}: want 0 got {len(values)}") from None
        if isinstance(recv, GoStruct):
            if name in recv.fields:
                if has_args:
                    raise self.error(node, node.src, f"{name} has arguments but cannot be invoked as function")
                return recv.fields[name]
        elif isinstance(recv, dict) or isinstance(recv, GoMap):
            items = recv if isinstance(recv, dict) else recv.items
            if has_args:
                raise self.error(node, node.src, f"{name} is not a method but has arguments")
            return items.get(name, NoValue)
        elif isinstance(recv, GoNil):
            if name in recv.field_names:
                raise self.error(node, node.src, f"nil pointer evaluating *{recv.type_name}.{name}")
        raise self.error(node, node.src, f"can't evaluate field {name} in type {type_of(recv)}")

    def call(self, dot: Any, head: Arg, args: list[Arg], piped: list[Any]) -> Any:
        name = str(head.value)
        if name in ("and", "or"):
            if not args and not piped:
                raise self.error(head, head.src, f"wrong number of args for {name}: want at least 1 got 0")
            vals = [self.arg_value(dot, a) for a in args] + piped
            for v in vals:
                if truth(v) != (name == "and"):
                    return v
            return vals[-1]
        if name == "not":
            vals = self._values(dot, args, piped, head, name, exact=1)
            return not truth(vals[0])
        if name == "len":
            vals = self._values(dot, args, piped, head, name, exact=1)
            v = vals[0]
            if isinstance(v, (str, list, dict)):
                return len(v)
            if isinstance(v, GoMap):
                return len(v.items)
            if isinstance(v, GoSlice):
                return len(v.items or [])
            raise self.error(head, head.src, f"error calling len: len of type {type_of(v)}")
        if name == "index":
            vals = [self.arg_value(dot, a) for a in args] + piped
            if not vals:
                raise self.error(head, head.src, "wrong number of args for index: want at least 1 got 0")
            return self._index(head, vals[0], vals[1:])
        if name in ("print", "printf", "println"):
            vals = [self.arg_value(dot, a) for a in args] + piped
            if name == "printf":
                if not vals or not isinstance(vals[0], str):
                    raise self.error(head, head.src, "wrong type for value; expected string")
                return sprintf(vals[0], vals[1:])
            if name == "println":
                return " ".join(sprint(v) for v in vals) + "\n"
            out = ""
            for i, v in enumerate(vals):
                if i > 0 and not isinstance(v, str) and not isinstance(vals[i - 1], str):
                    out += " "
                out += sprint(v)
            return out
        if name in ("eq", "ne", "lt", "le", "gt", "ge"):
            vals = [self.arg_value(dot, a) for a in args] + piped
            return self._compare(head, name, vals)
        if name in ("html", "js", "urlquery", "call"):
            raise self.error(head, head.src, f"{name} is not supported by this template engine")
        f = self.funcs[name]
        vals = []
        for i, a in enumerate(args):
            param = f.params[min(i, len(f.params) - 1)] if f.params else Param("interface {}")
            vals.append(self._typed_arg(dot, a, param, head, name))
        for v in piped:
            idx = len(vals)
            param = f.params[min(idx, len(f.params) - 1)] if f.params else Param("interface {}")
            vals.append(self._convert(head, v, param))
        if not f.variadic and len(vals) != len(f.params):
            raise self.error(head, head.src, f"wrong number of args for {name}: want {len(f.params)} got {len(vals)}")
        try:
            return f.fn(*vals)
        except TemplateError:
            raise
        except Exception as e:  # the function's own error
            raise self.error(head, head.src, f"error calling {name}: {e}") from None

    def _values(self, dot: Any, args: list[Arg], piped: list[Any], head: Arg, name: str, *, exact: int) -> list[Any]:
        vals = [self.arg_value(dot, a) for a in args] + piped
        if len(vals) != exact:
            raise self.error(head, head.src, f"wrong number of args for {name}: want {exact} got {len(vals)}")
        return vals

    def _typed_arg(self, dot: Any, a: Arg, param: Param, head: Arg, name: str) -> Any:
        if a.kind in ("string", "number", "bool", "nil"):
            # untyped constants convert to the parameter's type, or fail as Go says
            t = param.type_name
            if a.kind == "nil":
                if param.nillable:
                    return None
                raise self.error(head, head.src, f"cannot assign nil to {t}")
            if t == "interface {}":
                return a.value
            ok = (a.kind == "string" and t == "string") or (a.kind == "bool" and t == "bool") or \
                (a.kind == "number" and t in ("int", "int32", "int64", "float64") and
                 (t == "float64" or isinstance(a.value, int)))
            if not ok:
                raise self.error(head, head.src, f"expected {'integer' if t.startswith('int') else t}; found {a.src}")
            return a.value
        return self._convert(head, self.arg_value(dot, a), param)

    def _convert(self, head: Arg, v: Any, param: Param) -> Any:
        if v is NoValue:
            if param.nillable:
                return None
            raise self.error(head, head.src, f"invalid value; expected {param.type_name}")
        if param.accepts(v):
            return v
        if v is None and param.nillable:
            return None
        raise self.error(head, head.src, f"wrong type for value; expected {param.type_name}; got {type_of(v)}")

    def _index(self, head: Arg, item: Any, keys: list[Any]) -> Any:
        for k in keys:
            if isinstance(item, (dict, GoMap)):
                items = item if isinstance(item, dict) else item.items
                if not isinstance(k, str):
                    raise self.error(head, head.src,
                                     f"error calling index: value has type {type_of(k)}; should be string")
                zero = None if isinstance(item, dict) else item.zero
                item = items.get(k, zero)
            elif isinstance(item, (list, GoSlice, str)):
                seq: Any = item if not isinstance(item, GoSlice) else (item.items or [])
                if not isinstance(k, int) or isinstance(k, bool):
                    raise self.error(head, head.src, f"error calling index: cannot index slice/array with type {type_of(k)}")
                if k < 0 or k >= len(seq):
                    raise self.error(head, head.src, f"error calling index: index out of range: {k}")
                item = seq[k] if not isinstance(seq, str) else ord(seq[k])
            elif item is None or item is NoValue:
                raise self.error(head, head.src, "error calling index: index of untyped nil")
            else:
                raise self.error(head, head.src, f"error calling index: can't index item of type {type_of(item)}")
        return item

    def _compare(self, head: Arg, name: str, vals: list[Any]) -> bool:
        if name == "eq" and len(vals) == 1:
            raise self.error(head, head.src, "error calling eq: missing argument for comparison")
        if len(vals) < 2 or (name != "eq" and len(vals) != 2):
            want = "at least 1" if name == "eq" else "2"
            raise self.error(head, head.src, f"wrong number of args for {name}: want {want} got {len(vals)}")

        def basic(v: Any) -> tuple[str, Any]:
            if isinstance(v, bool):
                return "bool", v
            if isinstance(v, int):
                return "int", v
            if isinstance(v, GoInt):
                return ("uint" if v.type_name.startswith("uint") else "int"), v.value
            if isinstance(v, GoEnum):
                return "int", v.number
            if isinstance(v, float):
                return "float", v
            if isinstance(v, str):
                return "string", v
            raise self.error(head, head.src, f"error calling {name}: invalid type for comparison")

        k1, v1 = basic(vals[0])
        if name in ("eq", "ne"):
            for other in vals[1:]:
                k2, v2 = basic(other)
                if k1 != k2:
                    if {k1, k2} == {"int", "uint"}:
                        pass
                    else:
                        raise self.error(head, head.src, f"error calling {name}: incompatible types for comparison")
                if v1 == v2:
                    return name == "eq"
            return name != "eq"
        k2, v2 = basic(vals[1])
        if k1 != k2 and {k1, k2} != {"int", "uint"}:
            raise self.error(head, head.src, f"error calling {name}: incompatible types for comparison")
        if k1 == "bool":
            raise self.error(head, head.src, f"error calling {name}: invalid type for comparison")
        result: bool = {"lt": v1 < v2, "le": v1 <= v2, "gt": v1 > v2, "ge": v1 >= v2}[name]
        return result


def sprintf(fmt: str, args: list[Any]) -> str:
    """``fmt.Sprintf`` for the verbs templates use (%s %v %d %q %t %%)."""
    out: list[str] = []
    i = 0
    ai = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        m = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([a-zA-Z%])").match(fmt, i)
        if not m:
            out.append("%!(NOVERB)")
            i += 1
            continue
        flags, width, prec, verb = m.groups()
        i = m.end()
        if verb == "%":
            out.append("%")
            continue
        if ai >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        v = args[ai]
        ai += 1
        if verb in ("s", "v"):
            s = sprint(v)
        elif verb == "d" and isinstance(v, (int, GoInt)) and not isinstance(v, bool):
            s = str(v.value if isinstance(v, GoInt) else v)
        elif verb == "q" and isinstance(v, str):
            s = _go_quote(v)
        elif verb == "t" and isinstance(v, bool):
            s = sprint(v)
        else:
            s = f"%!{verb}({type_of(v)}={sprint(v)})"
        if prec and verb == "s":
            s = s[: int(prec)]
        if width:
            s = s.ljust(int(width)) if "-" in flags else s.rjust(int(width), "0" if "0" in flags else " ")
        out.append(s)
    if ai < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{type_of(v)}={sprint(v)}" for v in args[ai:]) + ")")
    return "".join(out)


@dataclass
class Template:
    """A parsed template: ``Template.parse(text, ...)`` then ``execute(data)``."""

    name: str
    text: str
    nodes: list[Node]
    funcs: dict[str, Func]

    @classmethod
    def parse(cls, text: str, *, name: str = "inject", funcs: dict[str, Func] | None = None,
              delims: tuple[str, str] = ("{{", "}}")) -> Template:
        """Parse as ``template.New(name).Delims(...).Funcs(funcs).Parse(text)``; raises
        :class:`TemplateError` with Go's message."""
        funcs = dict(funcs or {})
        toks = _Lexer(name, text, *delims).run()
        nodes = _Parser(name, text, toks, {k: v.fn for k, v in funcs.items()}).parse()
        return cls(name, text, nodes, funcs)

    def execute(self, data: Any, *, funcs: dict[str, Func] | None = None) -> str:
        """Run the template on ``data``; ``funcs`` replaces the functions' implementations
        (same names as at parse, as Go's ``Funcs`` after ``Parse``)."""
        ex = _Exec(self.name, self.text, {**self.funcs, **(funcs or {})})
        ex.vars.append(("$", data))
        ex.walk(data, self.nodes)
        return "".join(ex.out)


def walk_text(nodes: list[Node]) -> Iterator[Text]:
    """Every text node, for tests that look at how the template was split."""
    for n in nodes:
        if isinstance(n, Text):
            yield n
        elif isinstance(n, Branch):
            yield from walk_text(n.body)
            yield from walk_text(n.else_body or [])
