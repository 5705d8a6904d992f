"""Build ``data/k8s-proto.json.gz``, the wire map :mod:`federationd.sim.protobuf` decodes with.

Run it against checkouts (or bare mirrors) of ``k8s.io/api`` and
``k8s.io/apimachinery`` at one release tag::

    python -m federationd.sim.gen_proto --api /path/to/api.git --apimachinery \\
        /path/to/apimachinery.git --tag v0.32.13

Two upstream sources are joined, because neither alone says how a protobuf body
becomes the JSON object a client would have sent:

* each package's ``generated.proto`` gives the message layout: field numbers, scalar
  and message types, repeated fields and maps;
* the Go structs (``types.go`` and friends) the ``.proto`` files are generated from
  give what the JSON form needs and the ``.proto`` does not carry: the JSON name, the
  ``omitempty`` option, whether the Go field is a pointer (a pointer's zero value is
  written on the wire and means something; a plain field's zero value is its default)
  and ``json:",inline"`` embedding (``VolumeSource`` inside ``Volume``). They are
  joined on the protobuf field number in the struct tag.

The output is small (tens of kilobytes compressed) and is committed, so neither the
mirrors nor a protobuf compiler are needed at run time. Regenerate it when moving to a
newer Kubernetes release; the field numbers are stable across releases, so one map
decodes the bodies of every client version.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

_MESSAGE = re.compile(r"^message (\w+) \{$")
_FIELD = re.compile(r"^  (optional|repeated) ([.\w]+) (\w+) = (\d+);")
_MAP = re.compile(r"^  map<(\w+), ([.\w]+)> (\w+) = (\d+);")
_PACKAGE = re.compile(r"^package ([.\w]+);", re.M)
_STRUCT = re.compile(r"^type (\w+) struct \{$")
_SLICE_TYPE = re.compile(r"^type (\w+) \[\]")
_GO_FIELD = re.compile(r"^\t(?:(\w+)\s+)?([*\[\]\w.]+)\s+`([^`]*)`")
_TAG = re.compile(r'(\w+):"([^"]*)"')

SCALARS = frozenset({"string", "int32", "int64", "uint32", "uint64", "bool", "bytes", "double", "float"})


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def _files(repo: Path, tag: str) -> list[str]:
    return _git(repo, "ls-tree", "-r", "--name-only", tag).splitlines()


def _parse_proto(text: str) -> tuple[str, dict[str, dict[int, tuple[str, str, str]]]]:
    """package, {message: {number: (label, type, name)}} (label: optional|repeated|map)."""
    m = _PACKAGE.search(text)
    assert m, "no package"
    package = m.group(1)
    messages: dict[str, dict[int, tuple[str, str, str]]] = {}
    current: dict[int, tuple[str, str, str]] | None = None
    for line in text.splitlines():
        mm = _MESSAGE.match(line)
        if mm:
            current = messages.setdefault(f"{package}.{mm.group(1)}", {})
            continue
        if line == "}":
            current = None
            continue
        if current is None:
            continue
        f = _FIELD.match(line)
        if f:
            label, typ, name, num = f.groups()
            current[int(num)] = (label, _qualify(typ, package), name)
            continue
        mp = _MAP.match(line)
        if mp:
            key, value, name, num = mp.groups()
            current[int(num)] = ("map", f"{key},{_qualify(value, package)}", name)
    return package, messages


def _qualify(typ: str, package: str) -> str:
    if typ in SCALARS:
        return typ
    if typ.startswith("."):
        return typ[1:]
    return f"{package}.{typ}"


def _parse_go(text: str) -> tuple[dict[str, dict[int, dict[str, Any]]], set[str]]:
    """{struct: {proto number: {json, pointer, omitempty, inline}}}, named slice types."""
    structs: dict[str, dict[int, dict[str, Any]]] = {}
    slices: set[str] = set()
    current: dict[int, dict[str, Any]] | None = None
    for line in text.splitlines():
        s = _STRUCT.match(line)
        if s:
            current = structs.setdefault(s.group(1), {})
            continue
        sl = _SLICE_TYPE.match(line)
        if sl:
            slices.add(sl.group(1))
            continue
        if line == "}":
            current = None
            continue
        if current is None:
            continue
        f = _GO_FIELD.match(line)
        if not f:
            continue
        _, gotype, tags = f.groups()
        tag = dict(_TAG.findall(tags))
        pb = tag.get("protobuf")
        if not pb:
            continue
        parts = pb.split(",")
        if len(parts) < 2 or not parts[1].isdigit():
            continue  # protobuf:"-": not on the wire
        number = int(parts[1])
        js = tag.get("json", "")
        jname, _, opts = js.partition(",")
        current[number] = {
            "json": jname,
            "pointer": gotype.startswith("*"),
            "omitempty": "omitempty" in opts.split(","),
            "inline": "inline" in opts.split(","),
        }
    return structs, slices


def _group_name(text: str) -> str | None:
    """The API group a package serves (``+groupName`` in doc.go, or register.go's GroupName)."""
    m = re.search(r"^// \+groupName=(\S*)$", text, re.M) or re.search(
        r'^const GroupName = "([^"]*)"', text, re.M
    )
    return m.group(1) if m else None


def build(api: Path, apimachinery: Path, tag: str) -> dict[str, Any]:
    messages: dict[str, dict[str, list[Any]]] = {}
    slices: list[str] = []
    groups: dict[str, str] = {}
    for repo in (api, apimachinery):
        files = _files(repo, tag)
        dirs = sorted({f.rsplit("/", 1)[0] for f in files if f.endswith("/generated.proto")})
        for d in dirs:
            if "testapigroup" in d:
                continue
            package, protos = _parse_proto(_git(repo, "show", f"{tag}:{d}/generated.proto"))
            go_structs: dict[str, dict[int, dict[str, Any]]] = {}
            go_slices: set[str] = set()
            for f in files:
                if f.rsplit("/", 1)[0] != d or not f.endswith(".go"):
                    continue
                base = f.rsplit("/", 1)[-1]
                if base.endswith("_test.go") or base.startswith("zz_generated") or base == "generated.pb.go":
                    continue
                text = _git(repo, "show", f"{tag}:{f}")
                s, sl = _parse_go(text)
                for k, v in s.items():
                    go_structs.setdefault(k, {}).update(v)
                go_slices |= sl
                if base in ("doc.go", "register.go"):
                    g = _group_name(text)
                    if g is not None:
                        groups[package] = g
            for full, fields in protos.items():
                short = full.rsplit(".", 1)[1]
                go = go_structs.get(short, {})
                if short in go_slices:
                    slices.append(full)
                out: dict[str, list[Any]] = {}
                for number, (label, typ, pname) in sorted(fields.items()):
                    info = go.get(number, {})
                    flags = ""
                    if label == "repeated":
                        flags += "r"
                    if info.get("pointer"):
                        flags += "p"
                    if info.get("omitempty"):
                        flags += "o"
                    if info.get("inline"):
                        flags += "i"
                    jname = info.get("json", pname) if not info.get("inline") else ""
                    if label == "map":
                        key, value = typ.split(",", 1)
                        out[str(number)] = [jname, ["map", key, value], flags]
                    else:
                        out[str(number)] = [jname, typ, flags]
                messages[full] = out
    return {
        "source": f"k8s.io/api and k8s.io/apimachinery {tag}",
        "groups": groups,
        "slices": sorted(slices),
        "messages": messages,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--api", required=True, type=Path, help="git dir of k8s.io/api")
    p.add_argument("--apimachinery", required=True, type=Path, help="git dir of k8s.io/apimachinery")
    p.add_argument("--tag", required=True, help="release tag in both, e.g. v0.32.13")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "k8s-proto.json.gz")
    args = p.parse_args(argv)
    data = build(args.api, args.apimachinery, args.tag)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    # mtime=0: the same sources give the same bytes
    args.out.write_bytes(gzip.compress(raw, mtime=0))
    print(f"{args.out}: {len(data['messages'])} messages, {args.out.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
