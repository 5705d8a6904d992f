"""Every request and watch of a cluster on one HTTP/2 connection.

Over HTTP/1.1 each open watch holds a TLS connection of its own, and a cluster has one
watch per kind the daemon reads or owns (~20), plus the pooled connections of its
concurrent lists and writes: ~64 KB of OpenSSL and Python state per connection, ~120 MB
of a 100-cluster daemon, and a TLS handshake per connection. kube-apiserver speaks
HTTP/2 (ALPN ``h2``) and client-go multiplexes every request of a cluster on one
connection; so does this.

Shape: an ``H2Channel`` per cluster holds at most one live ``_Connection``: a TLS
connection that offered ``["h2", "http/1.1"]``, one reader task that feeds the ``h2``
state machine and hands each frame's bytes to its ``H2Stream``, and a stream per request
or watch. A request body goes out as the server's flow-control windows allow.
The ``h2`` library does the protocol (framing, HPACK, stream states, flow-control
accounting); this module moves bytes and wakes readers. Received data is acknowledged
(its flow-control window given back) only as the watcher consumes it, so a watcher that
falls behind holds at most its stream window (``STREAM_WINDOW``) in memory and the
connection at most ``CONNECTION_WINDOW``.

A server that does not select ``h2`` (an HTTP/1.1-only proxy or load balancer in front of
the API server) makes ``open`` raise ``NoHttp2``, for good: the caller uses HTTP/1.1 as
before. So does a request beyond the server's stream limit (kube-apiserver: 100 per
connection), as Go's client opens another connection then. A lost connection fails every stream on it with
``ConnectionResetError`` (the watcher resumes from its resourceVersion) and the next
``open`` dials again; after a GOAWAY the connection serves the streams it has and new
ones go to a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Mapping

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from federationd.clusters.hpackplain import StatelessEncoder

log = logging.getLogger(__name__)

#: Each watch's receive window: how far the server may run ahead of a watcher.
STREAM_WINDOW = 1 << 20
#: The connection's receive window, shared by its watches.
CONNECTION_WINDOW = 16 << 20
#: The spec's initial connection window, which only WINDOW_UPDATE frames enlarge.
_DEFAULT_WINDOW = 65535
_READ_SIZE = 1 << 16


class NoHttp2(Exception):
    """The server did not agree to HTTP/2, or the connection has no room for a stream."""


class NotProcessed(ConnectionResetError):
    """The request never reached the server's application: the connection was going away
    (a GOAWAY naming a lower stream, RFC 9113 §8.7) or closed before it was sent. Safe to
    send again on a new connection, whatever its method."""


class H2Stream:
    """One request's response: status and headers, then its body a line at a time."""

    def __init__(self, conn: _Connection, stream_id: int, *, max_line: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.status = 0
        self.headers: dict[str, str] = {}
        self._max_line = max_line
        self._buf = bytearray()
        self._pos = 0  # consumed prefix of _buf, dropped in one go when it grows large
        self._ended = False
        self._error: BaseException | None = None
        self._wake = asyncio.Event()
        #: request body bytes not yet sent (waiting for flow-control window)
        self.pending = b""

    # the reader task's side ------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._buf += data
        self._wake.set()

    def _end(self) -> None:
        self._ended = True
        self._wake.set()

    def _fail(self, error: BaseException) -> None:
        if self._error is None and not self._ended:
            self._error = error
        self._wake.set()

    # the watcher's side ----------------------------------------------------------------

    @property
    def open(self) -> bool:
        return not self._ended and self._error is None

    async def response(self) -> None:
        """Wait for the response's headers."""
        while not self.status:
            if self._error is not None:
                raise self._error
            if self._ended:
                raise ConnectionResetError("stream ended without a response")
            self._wake.clear()
            await self._wake.wait()

    def _take(self, end: int) -> bytes:
        data = bytes(self._buf[self._pos:end])
        self._pos = end
        if self._pos == len(self._buf):
            # all read: an idle watch holds no buffer (a stream of a 100-cluster fleet's
            # ~2,000 would otherwise keep its largest burst)
            self._buf = bytearray()
            self._pos = 0
        elif self._pos > 1 << 16 and self._pos * 2 > len(self._buf):
            del self._buf[:self._pos]
            self._pos = 0
        self._conn.consumed(self.stream_id, len(data))
        return data

    async def readline(self) -> bytes:
        """The next line, ``b""`` at the end of the body; ``ConnectionResetError`` when
        the stream or its connection was reset, ``ValueError`` for a line longer than
        ``max_line`` (as aiohttp's ``readline``)."""
        while True:
            nl = self._buf.find(b"\n", self._pos)
            if nl >= 0:
                return self._take(nl + 1)
            if len(self._buf) - self._pos > self._max_line:
                raise ValueError("line too long")
            if self._ended:
                return self._take(len(self._buf))
            if self._error is not None:
                raise self._error
            self._wake.clear()
            await self._wake.wait()

    async def read(self) -> bytes:
        """The rest of the body."""
        while not self._ended:
            if self._error is not None:
                raise self._error
            self._wake.clear()
            await self._wake.wait()
        return self._take(len(self._buf))

    def close(self) -> None:
        """Done with the stream: reset it if the server has not ended it, and give back
        the window of whatever was received and not read."""
        self._conn.forget(self, unread=len(self._buf) - self._pos)
        self._buf = bytearray()
        self._pos = 0


class _Connection:
    """One TLS connection speaking HTTP/2, and its streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 *, name: str) -> None:
        self._reader = reader
        self._writer = writer
        # The request headers are built here, lower-case and well-formed, so h2's
        # per-field checks and rewriting of what it sends (a third of a request's cost
        # in the client) are skipped; what the server sends is still checked.
        config = h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            SettingCodes.ENABLE_PUSH: 0,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
        })
        # HPACK without Huffman or dynamic table: a request's fields encoded once
        self.h2.encoder = StatelessEncoder()
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self.streams: dict[int, H2Stream] = {}
        self.usable = True
        self._loop = asyncio.get_running_loop()
        self._flush_soon: asyncio.Handle | None = None
        self._flush_now()
        self.task = asyncio.get_running_loop().create_task(
            self._read_loop(), name=f"h2-{name}")

    def flush(self) -> None:
        """Send what h2 has queued, at the end of this turn of the event loop: the
        requests and acknowledgements of one turn go out in one TLS write."""
        if self._flush_soon is None:
            self._flush_soon = self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_soon = None
        data = self.h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    def start(self, headers: list[tuple[str, str]], body: bytes | None, *,
              max_line: int) -> H2Stream:
        try:
            stream_id = self.h2.get_next_available_stream_id()
            self.h2.send_headers(stream_id, headers, end_stream=not body)
        except h2.exceptions.TooManyStreamsError:
            raise NoHttp2("the server's stream limit is reached") from None
        except h2.exceptions.NoAvailableStreamIDError:
            self.usable = False
            raise NoHttp2("the connection has used up its stream IDs") from None
        except h2.exceptions.ProtocolError as e:
            # the connection's state machine is closed (a GOAWAY being processed): the
            # next request dials again
            self.usable = False
            raise NotProcessed(f"HTTP/2 connection closed ({type(e).__name__})") from None
        stream = H2Stream(self, stream_id, max_line=max_line)
        self.streams[stream_id] = stream
        if body:
            stream.pending = body
            self._send_pending(stream)
        if self._flush_soon is None:
            # The first request of this turn goes out now, not after every other task
            # that runs in this turn (a change's other writes, to other clusters, are
            # built in the same turn: the first would wait for all of them); any later
            # request and acknowledgement of the turn go together at its end.
            self._flush_now()
        self.flush()
        return stream

    def _send_pending(self, stream: H2Stream) -> None:
        """As much of the stream's request body as the windows allow; the rest goes when
        the server opens them (``WindowUpdated``)."""
        while stream.pending:
            room = min(self.h2.local_flow_control_window(stream.stream_id),
                       self.h2.max_outbound_frame_size)
            if room <= 0:
                return
            chunk, stream.pending = stream.pending[:room], stream.pending[room:]
            self.h2.send_data(stream.stream_id, chunk, end_stream=not stream.pending)

    def consumed(self, stream_id: int, n: int) -> None:
        if n and not self._writer.is_closing():
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.acknowledge_received_data(n, stream_id)
            self.flush()

    def forget(self, stream: H2Stream, *, unread: int) -> None:
        if self.streams.pop(stream.stream_id, None) is None or self._writer.is_closing():
            return
        if stream.open:
            with contextlib.suppress(h2.exceptions.StreamClosedError,
                                     h2.exceptions.ProtocolError):
                self.h2.reset_stream(stream.stream_id, ErrorCodes.CANCEL)
        if unread:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.acknowledge_received_data(unread, stream.stream_id)
        self.flush()
        if not self.usable and not self.streams:
            self.close()

    async def _read_loop(self) -> None:
        error: BaseException = ConnectionResetError("the server closed the connection")
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    break
                for event in self.h2.receive_data(data):
                    self._dispatch(event)
                self.flush()
        except asyncio.CancelledError:
            error = ConnectionResetError("connection closed")
            raise
        except h2.exceptions.ProtocolError as e:
            error = ConnectionResetError(f"HTTP/2 protocol error: {type(e).__name__}")
            log.warning("HTTP/2 protocol error from the server: %s", type(e).__name__)
        except (OSError, ssl.SSLError) as e:
            error = ConnectionResetError(f"connection lost ({type(e).__name__})")
        finally:
            self.usable = False
            for stream in list(self.streams.values()):
                stream._fail(error)
            self.streams.clear()
            self._writer.close()

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                headers = dict(event.headers or ())
                stream.headers = {str(k): str(v) for k, v in headers.items()}
                stream.status = int(stream.headers.get(":status", "0") or 0)
                stream._wake.set()
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id or 0
            size = event.flow_controlled_length or 0
            stream = self.streams.get(sid)
            data = event.data or b""
            # padding, and data for a stream already given up, are acknowledged at once
            done = size - len(data) if stream is not None else size
            if done:
                self.h2.acknowledge_received_data(done, sid)
            if stream is not None:
                stream._feed(data)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream._end()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                code = event.error_code
                name = code.name if isinstance(code, ErrorCodes) else str(code)
                stream._fail(ConnectionResetError(f"stream reset by the server ({name})"))
        elif isinstance(event, h2.events.WindowUpdated):
            for stream in list(self.streams.values()):
                if stream.pending and (not event.stream_id or event.stream_id == stream.stream_id):
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        self._send_pending(stream)
        elif isinstance(event, h2.events.ConnectionTerminated):
            # GOAWAY: streams above its last ID were never processed; the rest go on
            self.usable = False
            last = event.last_stream_id or 0
            for sid, stream in list(self.streams.items()):
                if sid > last:
                    stream._fail(NotProcessed("the server is going away"))

    def close(self) -> None:
        self.usable = False
        if not self._writer.is_closing():
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection()
            self._flush_now()
            self._writer.close()
        self.task.cancel()


class H2Channel:
    """The HTTP/2 connection of one cluster, dialled on first use and again after loss."""

    def __init__(self, *, host: str, port: int, authority: str, ssl_context: ssl.SSLContext,
                 server_hostname: str | None, connect_timeout: float, max_line: int,
                 name: str) -> None:
        self._host = host
        self._port = port
        self._authority = authority
        self._ssl = ssl_context
        self._ssl.set_alpn_protocols(["h2", "http/1.1"])
        self._server_hostname = server_hostname
        self._connect_timeout = connect_timeout
        self._max_line = max_line
        self._name = name
        self._current: _Connection | None = None
        self._dialling = asyncio.Lock()
        self._refused = False
        self._closed = False
        #: TLS connections made so far (``ClusterClient.connection_info``)
        self.dials = 0

    @property
    def refused(self) -> bool:
        """The server answered without HTTP/2; every watch goes over HTTP/1.1."""
        return self._refused

    @property
    def streams(self) -> int:
        c = self._current
        return len(c.streams) if c is not None else 0

    async def _connection(self) -> _Connection:
        async with self._dialling:
            c = self._current
            if c is not None and c.usable:
                return c
            if self._refused:
                raise NoHttp2("the server does not speak HTTP/2")
            if self._closed:
                raise ConnectionResetError("connection closed")
            self.dials += 1
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, ssl=self._ssl,
                    server_hostname=self._server_hostname or self._host)
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                self._refused = True
                writer.close()
                log.info("%s: the API server does not offer HTTP/2; watching over HTTP/1.1",
                         self._name)
                raise NoHttp2("the server does not speak HTTP/2")
            if self._closed:
                writer.close()
                raise ConnectionResetError("connection closed")
            c = _Connection(reader, writer, name=self._name)
            self._current = c
            return c

    async def open(self, method: str, path: str, headers: Mapping[str, str],
                   body: bytes | None = None) -> H2Stream:
        """A request of ``path`` (with its query) as a new stream; returns once the
        response headers are in. Raises ``NoHttp2``, ``OSError``/``ssl.SSLError`` from
        dialling, ``TimeoutError`` past the connect timeout, ``ConnectionResetError`` when
        the connection is lost before the response. The caller closes the stream."""
        conn = await self._connection()
        fields = [(":method", method), (":scheme", "https"), (":authority", self._authority),
                  (":path", path)]
        fields += [(k.lower(), v) for k, v in headers.items() if k.lower() != "host"]
        if body:
            fields.append(("content-length", str(len(body))))
        stream = conn.start(fields, body, max_line=self._max_line)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await stream.response()
        except BaseException:
            stream.close()
            raise
        return stream

    def close(self) -> None:
        self._closed = True
        c, self._current = self._current, None
        if c is not None:
            c.close()


__all__ = ["CONNECTION_WINDOW", "STREAM_WINDOW", "H2Channel", "H2Stream", "NoHttp2", "NotProcessed"]
