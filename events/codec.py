"""Binary and printable forms of events: msgpack on disk, builtins for JSON/YAML output.

One encoder and one decoder are built at import time and reused for every event: msgspec
compiles a decoding plan per type, so building them per call would cost more than the
decoding itself. The decoder accepts exactly the tags in ``events.types.CATALOGUE``; a
payload whose tag is not among them was most likely written by a newer catalogue, and
:class:`UnknownEventType` says so instead of surfacing a bare validation message.

The payload is the whole tagged event (envelope included), so a payload decodes on its
own, without the columns the log keeps beside it for indexing.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import msgspec

from events.types import CATALOGUE, Event

__all__ = [
    "CodecError",
    "UnknownEventType",
    "decode",
    "encode",
    "tag_of",
    "to_builtins",
]


class CodecError(ValueError):
    """A payload could not be turned back into an event (or an event into a payload)."""


class UnknownEventType(CodecError):
    """The payload's type tag is not in this catalogue."""

    def __init__(self, tag: str) -> None:
        super().__init__(
            f"unknown event type {tag!r}: not in this catalogue (written by a newer catalogue?)"
        )
        self.tag = tag


class _TagOnly(msgspec.Struct):
    """Reads nothing but the tag of a payload, to explain a failed decode."""

    type: str = ""


# A Union built from the catalogue tuple, so events added to CATALOGUE need no edit here.
_EventUnion: Any = functools.reduce(operator.or_, CATALOGUE)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Event] = msgspec.msgpack.Decoder(_EventUnion)
_tag_decoder = msgspec.msgpack.Decoder(_TagOnly)
_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(dict[str, Any])

#: tag (the value stored in the ``type`` column) of every catalogue class.
TAGS: dict[type[Event], str] = {cls: str(cls.__struct_config__.tag) for cls in CATALOGUE}
KNOWN_TAGS: frozenset[str] = frozenset(TAGS.values())


def tag_of(event: Event) -> str:
    """The type tag of ``event`` (its class name)."""
    try:
        return TAGS[type(event)]
    except KeyError:
        raise CodecError(
            f"{type(event).__name__} is not in events.types.CATALOGUE; add it there"
        ) from None


def encode(event: Event) -> bytes:
    """msgpack bytes of ``event``, tag included."""
    return _encoder.encode(event)


def _explain(blob: bytes, error: Exception) -> CodecError:
    try:
        tag = _tag_decoder.decode(blob).type
    except msgspec.DecodeError:
        return CodecError(f"event payload is not valid msgpack: {error}")
    if tag and tag not in KNOWN_TAGS:
        return UnknownEventType(tag)
    return CodecError(f"event payload of type {tag or '?'!r} does not decode: {error}")


def decode(blob: bytes) -> Event:
    """The event in ``blob``; :class:`CodecError` if it cannot be decoded."""
    try:
        return _decoder.decode(blob)
    except msgspec.DecodeError as e:
        raise _explain(blob, e) from None


def to_builtins(event: Event) -> dict[str, Any]:
    """``event`` as plain dicts/lists/strings for JSON or YAML output (tag as ``type``).

    Goes through JSON so that tuples come out as lists: YAML's safe dumper refuses
    tuples, and JSON output has no tuples anyway.
    """
    out: dict[str, Any] = _json_decoder.decode(_json_encoder.encode(event))
    return out
