"""The codec: every catalogue type round-trips; unknown and broken payloads are named."""

from __future__ import annotations

import json
import typing

import msgspec
import pytest
import yaml

from events import codec
from events.types import CATALOGUE, ClusterName, Event, GatewayAddressesObserved


def _sample(cls: type[Event]) -> Event:
    """An instance of ``cls`` with every field set to a non-default value."""
    values: dict[str, typing.Any] = {}
    hints = typing.get_type_hints(cls)
    for name in cls.__struct_fields__:
        hint = hints[name]
        origin = typing.get_origin(hint)
        if name == "cluster":
            values[name] = ClusterName("remote-eu")
        elif hint is str:
            values[name] = f"{name}-value"
        elif hint is float:
            values[name] = 1_700_000_000.25
        elif hint is int:
            values[name] = 7
        elif hint is bool:
            values[name] = True
        elif origin is tuple:
            values[name] = ("a", "b")
        elif origin is dict:
            values[name] = {"x": 1} if typing.get_args(hint)[1] is int else {"x": "y"}
        else:
            values[name] = {"nested": {"list": [1, 2]}}
    return cls(**values)


@pytest.mark.parametrize("cls", CATALOGUE, ids=lambda c: c.__name__)
def test_every_catalogue_type_round_trips(cls: type[Event]) -> None:
    event = _sample(cls)
    assert codec.decode(codec.encode(event)) == event
    assert codec.tag_of(event) == cls.__name__
    out = codec.to_builtins(event)
    assert out["type"] == cls.__name__
    # Printable as JSON and with YAML's safe dumper (no tuples, no custom types).
    assert json.loads(json.dumps(out)) == out
    assert yaml.safe_load(yaml.safe_dump(out)) == out


def test_unknown_tag_is_blamed_on_a_newer_catalogue() -> None:
    blob = msgspec.msgpack.encode(
        {"type": "MeshTeleported", "cluster": "master", "key": "k", "time": 1.0}
    )
    with pytest.raises(codec.UnknownEventType, match="newer catalogue") as info:
        codec.decode(blob)
    assert info.value.tag == "MeshTeleported"


def test_garbage_and_wrong_fields_are_codec_errors() -> None:
    with pytest.raises(codec.CodecError, match="not valid msgpack"):
        codec.decode(b"\xc1\xc1")
    bad = msgspec.msgpack.encode(
        {"type": "NodeRemoved", "cluster": "master", "key": "k", "time": "yesterday", "node": "n"}
    )
    with pytest.raises(codec.CodecError, match="NodeRemoved") as info:
        codec.decode(bad)
    assert not isinstance(info.value, codec.UnknownEventType)


def test_event_outside_the_catalogue_is_refused() -> None:
    class Stray(Event, frozen=True, tag=True):
        pass

    with pytest.raises(codec.CodecError, match="CATALOGUE"):
        codec.tag_of(Stray(cluster=ClusterName("c"), key="k", time=0.0))


def test_defaults_are_omitted_on_disk() -> None:
    """New fields with defaults cost nothing on old events and keep old payloads equal."""
    event = GatewayAddressesObserved(
        cluster=ClusterName("c"), key="k", time=0.0, namespace="n", name="g", service_type="LB"
    )
    assert set(msgspec.msgpack.decode(codec.encode(event))) == {
        "type",
        "cluster",
        "key",
        "time",
        "namespace",
        "name",
        "service_type",
    }
