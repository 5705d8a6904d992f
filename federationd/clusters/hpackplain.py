"""HPACK for the header blocks an HTTP/2 endpoint of this project sends.

Both ends written here in Python — the daemon's client (``clusters.http2``) and the
emulator's server (``federationd.sim.h2serve``) — spend more CPU per request on HPACK
in pure Python (Huffman coding, dynamic-table upkeep) than on the rest of the framing.
``StatelessEncoder`` encodes every field on its own, so a field's bytes are computed once
and reused; receivers decode it as any HPACK (RFC 7541), the h2 library and Go alike.
"""

from __future__ import annotations

from typing import Any

import hpack
import hpack.table
from hpack.hpack import encode_integer


class StatelessEncoder(hpack.Encoder):
    """HPACK without Huffman coding and without the dynamic table: each field is an
    index into the static table or a literal "without indexing" (RFC 7541 §6.1,
    §6.2.2), so a field's encoding never depends on what came before and is kept for
    the next block that has it. The blocks are a little larger, and as valid. A change
    of the peer's table size is still signalled first (§4.2)."""

    #: fields kept encoded; values that change per block (a path, a Date, a
    #: Content-Length) make it churn, so it is simply emptied when full
    CACHE = 512

    def __init__(self) -> None:
        super().__init__()
        self._fields: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        block = super().encode((), huffman=False) if self.header_table.resized else b""
        fields = self._fields
        out = [block]
        for name, value in headers:
            key = (name, value)
            encoded = fields.get(key)
            if encoded is None:
                if len(fields) >= self.CACHE:
                    fields.clear()
                encoded = fields[key] = _field(name, value)
            out.append(encoded)
        return b"".join(out)


def _field(name: bytes, value: bytes) -> bytes:
    static = hpack.table.HeaderTable.STATIC_TABLE_MAPPING.get(name)
    if static is not None:
        index, values = static
        full = values.get(value)
        if full is not None:
            # indexed field: 1 bit pattern, 7-bit index
            first = encode_integer(full, 7)
            first[0] |= 0x80
            return bytes(first)
        # literal without indexing, name from the static table: 0000 + 4-bit index
        return bytes(encode_integer(index, 4)) + _string(value)
    # literal without indexing, new name
    return b"\x00" + _string(name) + _string(value)


def _string(octets: bytes) -> bytes:
    # H bit 0 (no Huffman), 7-bit length prefix
    return bytes(encode_integer(len(octets), 7)) + octets


__all__ = ["StatelessEncoder"]
