"""One TLS read buffer per thread instead of one per connection.

A fleet daemon holds a few dozen HTTPS connections per cluster (HTTP/1.1: one per
watch), and asyncio gives every TLS connection its own 256 KiB read buffer
(``SSLProtocol.max_size``), zero-filled, so resident from the start: at 50 clusters that
was ~320 MB of the daemon's ~420 MB. The buffer only ever holds the bytes of one
``recv_into`` between ``get_buffer`` and ``buffer_updated``, which the selector event
loop calls back to back (``_SelectorSocketTransport._read_ready__get_buffer``), and
``buffer_updated`` copies them into the connection's own TLS input BIO at once. So every
connection of a thread can read into one buffer.

Making the buffer smaller instead (``max_size``) was tried and left connections stalled
after bursts of 429/503 answers (tests/daemon/test_fault_matrix.py); here every read
still gets the full 256 KiB, only the memory behind it is shared.

``share_tls_read_buffers()`` patches ``asyncio.sslproto.SSLProtocol`` for the process
(idempotent); on an asyncio whose ``SSLProtocol`` is not shaped as expected it changes
nothing.
"""

from __future__ import annotations

import threading
from typing import Any

_local = threading.local()
_PATCHED = "_federationd_shared_read_buffer"


def _shared(size: int) -> memoryview:
    view: memoryview | None = getattr(_local, "view", None)
    if view is None or len(view) < size:
        view = memoryview(bytearray(size))
        _local.view = view
    return view


def share_tls_read_buffers() -> bool:
    """Patch asyncio's TLS protocol to read into a per-thread buffer. True when patched
    (now or before)."""
    from asyncio import sslproto

    cls: Any = getattr(sslproto, "SSLProtocol", None)
    if cls is None:
        return False
    if getattr(cls, _PATCHED, False):
        return True
    if not (isinstance(getattr(cls, "max_size", None), int) and callable(getattr(cls, "get_buffer", None))):
        return False
    init = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        # drop the connection's own buffer; reads go to the thread's (get_buffer)
        self._ssl_buffer = None
        self._ssl_buffer_view = _shared(self.max_size)

    def get_buffer(self: Any, n: int) -> memoryview:
        want = n if 0 < n <= self.max_size else self.max_size
        view = _shared(want)
        # buffer_updated reads the bytes back from this attribute
        self._ssl_buffer_view = view
        return view

    cls.__init__ = __init__
    cls.get_buffer = get_buffer
    setattr(cls, _PATCHED, True)
    return True


__all__ = ["share_tls_read_buffers"]
