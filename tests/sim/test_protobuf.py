"""Protobuf request bodies decode to the JSON objects a client would have sent.

``data/kubectl-protobuf.json`` holds the bodies kubectl v1.32 really sent for its
generator commands, next to the same commands' ``--dry-run=client -o json`` output;
decoding each body must give that JSON object (up to the ``null`` and ``{}`` of
zero-valued Go structs, which the real server does not tell from absent).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from federationd.sim import protobuf

CASES = json.loads((Path(__file__).parent / "data" / "kubectl-protobuf.json").read_text())["cases"]


def _ld(n: int, b: bytes) -> bytes:
    return bytes([n << 3 | 2]) + _uvarint(len(b)) + b


def _uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _vi(n: int, v: int) -> bytes:
    return bytes([n << 3]) + _uvarint(v & (1 << 64) - 1)


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    tm = _ld(1, api_version.encode()) + _ld(2, kind.encode())
    return protobuf.MAGIC + _ld(1, tm) + _ld(2, raw) + _ld(3, b"") + _ld(4, b"")


def _without_zero_structs(o: Any) -> Any:
    if isinstance(o, dict):
        out = {k: _without_zero_structs(v) for k, v in o.items()}
        return {k: v for k, v in out.items() if v is not None and v != {}}
    if isinstance(o, list):
        return [_without_zero_structs(x) for x in o]
    return o


@pytest.mark.parametrize("case", CASES, ids=[c["cmd"].split(" --")[0] for c in CASES])
def test_kubectl_bodies_decode_to_the_json_form(case: dict[str, Any]) -> None:
    got = protobuf.decode(base64.b64decode(case["protobuf"]))
    assert got == _without_zero_structs(case["json"])


def test_configmap_with_labels_finalizers_and_data() -> None:
    meta = (_ld(1, b"c") + _ld(2, b"") + _ld(3, b"ns") + bytes([7 << 3, 0]) + _ld(8, b"")
            + _ld(11, _ld(1, b"app") + _ld(2, b"web")) + _ld(14, b"example.com/f"))
    raw = _ld(1, meta) + _ld(2, _ld(1, b"a") + _ld(2, b"b")) + _ld(2, _ld(1, b"x") + _ld(2, b""))
    assert protobuf.decode(_envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "ns", "labels": {"app": "web"}, "finalizers": ["example.com/f"]},
        "data": {"a": "b", "x": ""},
    }


def test_secret_data_is_base64_as_in_json() -> None:
    raw = _ld(1, _ld(1, b"s")) + _ld(2, _ld(1, b"k") + _ld(2, b"\x00\xff")) + _ld(3, b"Opaque")
    assert protobuf.decode(_envelope("v1", "Secret", raw)) == {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "AP8="}, "type": "Opaque"}




def test_pointer_zero_values_stay_plain_zero_values_go() -> None:
    # Deployment spec: replicas (pointer) = 0 is kept; minReadySeconds (plain) = 0 is not
    spec = _vi(1, 0) + _vi(5, 0) + _vi(7, 0)
    got = protobuf.decode(_envelope("apps/v1", "Deployment", _ld(1, _ld(1, b"d")) + _ld(2, spec)))
    assert got["spec"] == {"replicas": 0}


def test_special_types_take_their_json_forms() -> None:
    meta = _ld(1, b"e") + _ld(8, _vi(1, 1_700_000_000))  # creationTimestamp
    micro = _vi(1, 1_700_000_000) + _vi(2, 123_456_000)
    raw = _ld(1, meta) + _ld(2, micro) + _ld(7, b"Pulled") + _ld(11, b"Normal")
    ev = protobuf.decode(_envelope("events.k8s.io/v1", "Event", raw))
    assert ev["metadata"] == {"name": "e", "creationTimestamp": "2023-11-14T22:13:20Z"}
    assert ev["eventTime"] == "2023-11-14T22:13:20.123456Z"
    # RawExtension holds JSON; negative int64 comes back negative
    data = _ld(1, b'{"a": [1, 2]}')
    cr = protobuf.decode(_envelope("apps/v1", "ControllerRevision", _ld(1, _ld(1, b"c")) + _ld(2, data) + _vi(3, -5)))
    assert cr["data"] == {"a": [1, 2]} and cr["revision"] == -5
    # Duration prints as Go does
    lease_spec = _ld(1, b"me") + _vi(2, 15)
    lease = protobuf.decode(_envelope("coordination.k8s.io/v1", "Lease", _ld(2, lease_spec)))
    assert lease["spec"] == {"holderIdentity": "me", "leaseDurationSeconds": 15}


def test_unknown_kinds_and_garbage_are_refused() -> None:
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(_envelope("v1", "Deployment", b""))
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(_envelope("example.com/v1", "Widget", b""))
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(b"not protobuf")
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(protobuf.MAGIC + b"\x0a\x7f")
