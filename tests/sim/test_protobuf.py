"""The protobuf bodies of kubectl's generator commands decode to the JSON objects."""

from __future__ import annotations

import pytest

from federationd.sim import protobuf


def _ld(n: int, b: bytes) -> bytes:
    assert len(b) < 128
    return bytes([n << 3 | 2, len(b)]) + b


def _envelope(kind: str, raw: bytes) -> bytes:
    tm = _ld(1, b"v1") + _ld(2, kind.encode())
    return protobuf.MAGIC + _ld(1, tm) + _ld(2, raw) + _ld(3, b"") + _ld(4, b"")


def test_configmap_with_labels_finalizers_and_data() -> None:
    meta = (_ld(1, b"c") + _ld(2, b"") + _ld(3, b"ns") + bytes([7 << 3, 0]) + _ld(8, b"")
            + _ld(11, _ld(1, b"app") + _ld(2, b"web")) + _ld(14, b"example.com/f"))
    raw = _ld(1, meta) + _ld(2, _ld(1, b"a") + _ld(2, b"b")) + _ld(2, _ld(1, b"x") + _ld(2, b""))
    assert protobuf.decode(_envelope("ConfigMap", raw)) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "ns", "labels": {"app": "web"}, "finalizers": ["example.com/f"]},
        "data": {"a": "b", "x": ""},
    }


def test_secret_data_is_base64_as_in_json() -> None:
    raw = _ld(1, _ld(1, b"s")) + _ld(2, _ld(1, b"k") + _ld(2, b"\x00\xff")) + _ld(3, b"Opaque")
    assert protobuf.decode(_envelope("Secret", raw)) == {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "AP8="}, "type": "Opaque"}


def test_unknown_kinds_and_garbage_are_refused() -> None:
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(_envelope("Deployment", b""))
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(b"not protobuf")
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(protobuf.MAGIC + b"\x0a\x7f")
