"""HTTP/2 for the emulated API servers, negotiated by ALPN on the same TLS port.

A real kube-apiserver offers ALPN ``h2`` and ``http/1.1``; Go clients (kubectl,
client-go) pick h2 and multiplex every request and watch of a cluster on one
connection, so a client built for real clusters must be exercised over h2 too. Clients
that do not offer h2 keep getting HTTP/1.1 exactly as before.

The shape keeps one implementation of the API: every HTTP/2 stream is served by the
same aiohttp application that serves HTTP/1.1. Once a stream's request (headers and
body) is complete, an aiohttp ``web.Request`` is built for it directly (the request
line and headers as aiohttp's parser would give them, the body in a payload reader)
and handed to the application's handler, as aiohttp's own ``RequestHandler`` does;
the response is written through a per-stream writer that turns aiohttp's status and
headers into a HEADERS frame and the body into DATA frames. Nothing is re-encoded as
HTTP/1.1 and parsed back: the emulator is a test double, and its cost per request
over h2 should stay close to its cost over HTTP/1.1. Authentication, RBAC, admission,
watches, faults, audit and request counters behave identically on both protocols.

The per-stream transport (``StreamTransport``) is what the watch code in
``federationd.sim.server`` talks to directly: ``write`` sends body bytes as DATA (an
HTTP/1.1 watch frames its own chunks instead), ``get_write_buffer_size()`` is what
the client's flow-control window holds back on that stream (plus the connection's own
socket buffer), ``is_closing()`` turns true when the client resets the stream or the
connection is gone, and ``abort()`` resets only that stream. Flow control honours the
client's windows and frame size; request bodies are acknowledged as they arrive. The
TLS connection itself is registered with the API server so a partition
(``abort_connections``) drops it like an HTTP/1.1 connection. Settings, windows and
the idle timeout are kube-apiserver's. Frames produced in one turn of the event loop
leave in one TLS write, and header blocks are HPACK-encoded without Huffman coding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.tcp_helpers import tcp_nodelay
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from federationd.clusters.hpackplain import StatelessEncoder
from federationd.sim import errors

log = logging.getLogger(__name__)

ALPN_PROTOCOLS = ["h2", "http/1.1"]

# kube-apiserver's HTTP/2 server options (k8s.io/apiserver/pkg/server/secure_serving.go,
# SecureServingInfo.Serve): --http2-max-streams-per-connection defaults to 0, which
# means 100 streams ("match http2.initialMaxConcurrentStreams used by clients"); the
# per-stream receive buffer and the largest frame read are resourceBody99Percentile
# (256 KiB); the connection's receive buffer is that times the stream limit; the
# idle timeout is http.Server.IdleTimeout (90 s); MaxHeaderBytes is 1 MiB, which Go's
# http2 server advertises plus 10 fields of 32 bytes overhead.
MAX_CONCURRENT_STREAMS = 100
_RESOURCE_BODY_99_PERCENTILE = 256 * 1024
STREAM_RECEIVE_WINDOW = _RESOURCE_BODY_99_PERCENTILE
MAX_READ_FRAME_SIZE = _RESOURCE_BODY_99_PERCENTILE
CONNECTION_RECEIVE_WINDOW = _RESOURCE_BODY_99_PERCENTILE * MAX_CONCURRENT_STREAMS
MAX_HEADER_LIST_SIZE = (1 << 20) + 10 * 32
IDLE_TIMEOUT = 90.0

#: The initial window of an HTTP/2 stream and connection before any SETTINGS (RFC 9113).
_DEFAULT_WINDOW = 65_535

# An HTTP/1.1 hop-by-hop header has no meaning on an HTTP/2 stream (RFC 9113 §8.2.2);
# host and content-length are re-derived from :authority and the body.
_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te",
})
_REQUEST_DROPPED = _HOP_BY_HOP | {b"host", b"content-length", b"expect"}
_RESPONSE_DROPPED = frozenset(n.decode() for n in _HOP_BY_HOP)

# what aiohttp's HTTP/1.1 parser accepts as a method and an origin-form target
# (RFC 9110 §5.6.2 token; RFC 9112 §3.2: no controls or spaces)
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")

#: A handler whose stream holds more than this unsent is told to pause (aiohttp then
#: waits in ``drain``), and resumes below the low mark: asyncio's default write limits.
_HIGH_WATER = 64 * 1024
_LOW_WATER = 16 * 1024


def offer_h2(ctx: ssl.SSLContext) -> None:
    """Let TLS clients negotiate HTTP/2, preferring it as the real API server does."""
    ctx.set_alpn_protocols(ALPN_PROTOCOLS)


class AlpnSwitch(asyncio.Protocol):
    """The listening socket's protocol: after the TLS handshake, hands the connection to
    HTTP/2 or to aiohttp's HTTP/1.1 handler, whichever ALPN selected."""

    def __init__(self, server: web.Server, **h2_options: Any) -> None:
        """``h2_options``: ``H2Protocol``'s keyword arguments."""
        self._server = server
        self._h2_options = h2_options

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        proto: asyncio.BaseProtocol
        if alpn == "h2":
            proto = H2Protocol(self._server, **self._h2_options)
        else:
            proto = self._server()
        transport.set_protocol(proto)
        proto.connection_made(transport)


@dataclass(eq=False, slots=True)
class _Stream:
    id: int
    headers: list[tuple[bytes, bytes]]
    body: bytearray = field(default_factory=bytearray)
    too_large: bool = False
    started: bool = False
    transport: StreamTransport | None = None
    #: the response's header block, until the first body bytes or the end send it
    head: list[tuple[bytes, bytes]] | None = None
    head_sent: bool = False
    #: response body bytes the client's flow-control windows do not admit yet
    out: bytearray = field(default_factory=bytearray)
    end_pending: bool = False
    ended: bool = False
    #: reset by either side, or the connection is gone: nothing more is sent
    reset: bool = False
    #: the request's handler has returned (or there was none)
    done: bool = False
    #: the handler is to wait before writing more (``drain``)
    paused: bool = False
    waiter: asyncio.Future[None] | None = None


class _StreamPeer:
    """What an aiohttp request reads from its protocol: the stream's transport and
    the connection's TLS context and addresses."""

    __slots__ = ("peername", "sockname", "ssl_context", "transport")

    def __init__(self, transport: StreamTransport, ssl_context: Any, peername: Any, sockname: Any) -> None:
        self.transport = transport
        self.ssl_context = ssl_context
        self.peername = peername
        self.sockname = sockname


class StreamTransport(asyncio.Transport):
    """What one stream's request sees as its connection. ``write`` sends body bytes
    as DATA frames: a watch writes its events here."""

    def __init__(self, conn: H2Protocol, stream: _Stream) -> None:
        super().__init__()
        self._conn = conn
        self._stream = stream
        self._closing = False

    # what the watch code uses directly

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._stream.reset:
            return
        self._conn._body(self._stream, data, end=False)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return self._closing or self._stream.reset

    def get_write_buffer_size(self) -> int:
        return len(self._stream.out) + self._conn._socket_buffer()

    def abort(self) -> None:
        """Reset this stream only (RST_STREAM CANCEL); the connection and its other
        streams carry on."""
        self._closing = True
        self._conn._reset(self._stream)

    def close(self) -> None:
        """End the response with what has been written."""
        if self._closing:
            return
        self._closing = True
        s = self._stream
        if not s.reset and not s.end_pending:
            self._conn._body(s, b"", end=True)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        # the socket is shared by every stream: a handler must not set options on it
        if name == "socket":
            return default
        return self._conn._extra(name, default)

    # the request was delivered whole: there is no reading to pause

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return not self._closing

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return _LOW_WATER, _HIGH_WATER

    def can_write_eof(self) -> bool:
        return False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        raise NotImplementedError("an HTTP/2 stream cannot change protocol")

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._conn


class _StreamWriter(AbstractStreamWriter):
    """aiohttp's response writer for one stream: the status and headers become a
    HEADERS frame, the body DATA frames; chunking is HTTP/1.1's and has no place here."""

    def __init__(self, conn: H2Protocol, stream: _Stream) -> None:
        self._conn = conn
        self._stream = stream
        self._eof = False
        self.length: int | None = None

    @property
    def transport(self) -> asyncio.WriteTransport | None:
        return self._stream.transport

    async def write_headers(self, status_line: str, headers: CIMultiDict[str]) -> None:
        # "HTTP/1.1 200 OK": aiohttp has already checked the status
        block = [(b":status", status_line.split(" ", 2)[1].encode())]
        for name, value in headers.items():
            lower = name.lower()
            if lower in _RESPONSE_DROPPED:
                continue
            if "\r" in value or "\n" in value:
                # what aiohttp's HTTP/1.1 writer refuses too
                raise ValueError("Newline or carriage return character detected in HTTP status line or headers")
            block.append((lower.encode(), value.encode()))
        self._stream.head = block

    def send_headers(self) -> None:
        self._conn._send_head(self._stream, end=False)

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self.output_size += len(chunk)
        self._conn._body(self._stream, chunk, end=False)
        if self._stream.paused:
            await self.drain()

    async def write_eof(self, chunk: bytes = b"") -> None:
        if self._eof:
            return
        self._eof = True
        self.output_size += len(chunk)
        self._conn._body(self._stream, chunk, end=True)

    async def drain(self) -> None:
        await self._conn._drain(self._stream)

    def enable_compression(self, encoding: str = "deflate", strategy: int | None = None) -> None:
        raise NotImplementedError("the emulator does not compress responses")

    def enable_chunking(self) -> None:
        pass


class H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection; see the module docstring."""

    def __init__(
        self,
        server: web.Server,
        *,
        transports: weakref.WeakSet[Any],
        max_body: int,
        idle_timeout: float | None = None,
    ) -> None:
        self._server = server
        self._transports = transports
        self._max_body = max_body
        # read when a connection starts, so a test may shorten it
        self._idle_timeout = IDLE_TIMEOUT if idle_timeout is None else idle_timeout
        # what is sent is built here from aiohttp's already checked, lowercased
        # headers; what is received is checked in full (cookie fields are joined
        # where the request is built)
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None,
            validate_outbound_headers=False, normalize_outbound_headers=False,
            normalize_inbound_headers=False,
        )
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.encoder = StatelessEncoder()
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_RECEIVE_WINDOW,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_READ_FRAME_SIZE,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
        })
        # Settings given as initial values are in force at once (they go out in the first
        # SETTINGS frame, as Go's server sends them), but h2 derives these two only when
        # an acknowledgement changes them
        self._h2.max_inbound_frame_size = MAX_READ_FRAME_SIZE
        self._h2.decoder.max_header_list_size = MAX_HEADER_LIST_SIZE
        self._streams: dict[int, _Stream] = {}
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # request bodies arrive whole: their readers never pause the connection
        self._body_protocol = BaseProtocol(self._loop)
        #: handlers still running (the loop holds tasks only weakly)
        self._tasks: set[asyncio.Task[None]] = set()
        self._ssl_context: Any = None
        self._peername: Any = None
        self._sockname: Any = None
        self._lost = False
        self._closing = False
        self._write_scheduled = False
        self._socket_paused = False
        self._idle: asyncio.TimerHandle | None = None
        #: when the last stream ended (the connection is idle while it has none)
        self._idle_since = 0.0

    # ------------------------------------------------------------------ the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._ssl_context = transport.get_extra_info("sslcontext")
        self._peername = transport.get_extra_info("peername")
        self._sockname = transport.get_extra_info("sockname")
        # a partition aborts every registered transport: this one too
        self._transports.add(transport)
        # a response leaves at once, not when the client acknowledges the last one
        # (Go's servers set TCP_NODELAY, and so does aiohttp for HTTP/1.1)
        tcp_nodelay(transport, True)
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_RECEIVE_WINDOW - _DEFAULT_WINDOW)
        self._write_now()
        self._idle_since = self._loop.time()
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self._lost or self._closing:
            return
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            # h2 has queued the GOAWAY that names the error
            log.debug("HTTP/2 protocol error from %s: %s", self._peername, e)
            self._close()
            return
        for ev in events:
            self._event(ev)
        self._schedule_write()

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self._socket_paused = True
        for s in list(self._streams.values()):
            self._update_pause(s)

    def resume_writing(self) -> None:
        self._socket_paused = False
        for s in list(self._streams.values()):
            self._update_pause(s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        streams, self._streams = list(self._streams.values()), {}
        for s in streams:
            self._gone(s)

    def _close(self) -> None:
        """Close once what is queued (a GOAWAY, if any) has been written."""
        if self._closing or self._lost:
            return
        self._closing = True
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._write_now()
        if self._transport is not None:
            self._transport.close()

    def _arm_idle(self) -> None:
        # one timer per connection, re-armed when it fires: streams come and go far
        # more often than the idle timeout passes
        if self._idle is None and not self._lost and not self._closing:
            self._idle = self._loop.call_at(self._idle_since + self._idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        self._idle = None
        if not self._streams and self._loop.time() >= self._idle_since + self._idle_timeout:
            # Go's http2 server: no stream for IdleTimeout -> GOAWAY(NO_ERROR) and close
            self._h2.close_connection()
            self._close()
            return
        if not self._streams:
            self._arm_idle()

    def _extra(self, name: str, default: Any) -> Any:
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    def _socket_buffer(self) -> int:
        if self._transport is None or self._lost:
            return 0
        return self._transport.get_write_buffer_size()

    def _schedule_write(self) -> None:
        # frames produced during one loop iteration (a change fanned out to several
        # watches of this connection) leave in one TLS write
        if not self._write_scheduled and not self._lost:
            self._write_scheduled = True
            self._loop.call_soon(self._write_now)

    def _write_now(self) -> None:
        self._write_scheduled = False
        if self._lost or self._transport is None:
            return
        data = self._h2.data_to_send()
        if data and not self._transport.is_closing():
            self._transport.write(data)

    # ------------------------------------------------------------------ frames in

    def _event(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            assert ev.stream_id is not None and ev.headers is not None
            s = _Stream(id=ev.stream_id, headers=list(_as_bytes(ev.headers)))
            self._streams[s.id] = s
            if ev.stream_ended is not None:
                self._start(s)
        elif isinstance(ev, h2.events.DataReceived):
            assert ev.stream_id is not None and ev.data is not None
            self._h2.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id)
            d = self._streams.get(ev.stream_id)
            if d is None or d.started:
                return
            if len(d.body) + len(ev.data) > self._max_body:
                d.too_large = True
                d.body = bytearray()
            elif not d.too_large:
                d.body += ev.data
            if ev.stream_ended is not None:
                self._start(d)
        elif isinstance(ev, h2.events.StreamEnded):
            e = self._streams.get(ev.stream_id or 0)
            if e is not None and not e.started:
                self._start(e)
        elif isinstance(ev, h2.events.StreamReset):
            r = self._streams.pop(ev.stream_id or 0, None)
            if r is not None:
                # the client went away from this stream: its handler ends (a watch sees
                # is_closing() and returns)
                self._gone(r)
                self._now_idle()
        elif isinstance(ev, h2.events.WindowUpdated):
            if ev.stream_id:
                w = self._streams.get(ev.stream_id)
                if w is not None:
                    self._flush(w)
            else:
                for w in list(self._streams.values()):
                    self._flush(w)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            # a larger initial window opens every stream's window at once
            for w in list(self._streams.values()):
                self._flush(w)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            # h2 sends nothing after a peer's GOAWAY (Go's server would finish the open
            # streams first): the client, which is leaving, sees the connection close
            self._close()

    # ------------------------------------------------------------------ one stream

    def _start(self, s: _Stream) -> None:
        s.started = True
        if s.too_large:
            too_large = errors.RequestEntityTooLarge(self._max_body)
            self._answer(s, too_large.code, json.dumps(too_large.status()).encode())
            return
        message = self._message(s)
        if message is None:
            err = errors.BadRequest("the request is not a valid HTTP request")
            self._answer(s, 400, json.dumps(err.status()).encode())
            return
        # a Content-Encoding of the body is not undone, as kube-apiserver does not undo
        # it (it compresses responses only); nor does the HTTP/1.1 side (fleet.py)
        payload = EMPTY_PAYLOAD
        if s.body:
            payload = StreamReader(self._body_protocol, max(len(s.body), 1 << 16), loop=self._loop)
            payload.feed_data(bytes(s.body))
            payload.feed_eof()
            s.body = bytearray()
        s.transport = StreamTransport(self, s)
        task = self._loop.create_task(self._serve(s, message, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _message(self, s: _Stream) -> RawRequestMessage | None:
        """The request as aiohttp's HTTP/1.1 parser would have given it (None: not a
        request HTTP/1.1 could carry)."""
        authority: bytes | None = None
        method = target = b""
        headers: CIMultiDict[str] = CIMultiDict()
        raw: list[tuple[bytes, bytes]] = []
        cookies: list[bytes] = []
        for name, value in s.headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    target = value
                elif name == b":authority":
                    authority = value
                continue
            if name in _REQUEST_DROPPED:
                if name == b"host" and authority is None:
                    authority = value
                continue
            if name == b"cookie":
                # HTTP/2 may split cookies into several fields; HTTP/1.1 has one (§8.2.3)
                cookies.append(value)
                continue
            raw.append((name, value))
        if authority is None or not _METHOD.fullmatch(method) or target[:1] != b"/" or _BAD_TARGET.search(target):
            return None
        raw.insert(0, (b"host", authority))
        if cookies:
            raw.append((b"cookie", b"; ".join(cookies)))
        if s.body or method in (b"POST", b"PUT", b"PATCH"):
            raw.append((b"content-length", str(len(s.body)).encode()))
        for name, value in raw:
            headers.add(name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        path = target.decode("utf-8", "surrogateescape")
        path_part, _, fragment = path.partition("#")
        path_part, _, query = path_part.partition("?")
        try:
            url = URL.build(path=path_part, query_string=query, fragment=fragment, encoded=True)
        except ValueError:
            return None
        return RawRequestMessage(
            method.decode("ascii").upper(), path, HttpVersion11, CIMultiDictProxy(headers), tuple(raw),
            False, None, False, False, url,
        )

    async def _serve(self, s: _Stream, message: RawRequestMessage, payload: StreamReader) -> None:
        """Run the application's handler for the stream and send what it answers, as
        aiohttp's ``RequestHandler`` does for an HTTP/1.1 request."""
        assert s.transport is not None
        task = asyncio.current_task()
        assert task is not None
        writer = _StreamWriter(self, s)
        peer = _StreamPeer(s.transport, self._ssl_context, self._peername, self._sockname)
        request = self._server.request_factory(message, payload, cast(RequestHandler, peer), writer, task)
        try:
            resp: web.StreamResponse
            try:
                resp = await self._server.request_handler(request)
            except web.HTTPException as exc:
                resp = exc
            except TimeoutError:
                resp = web.Response(status=504, content_type="text/plain")
            except Exception:
                log.exception("Error handling request from %s", request.remote)
                if s.head_sent:
                    return  # too late for an error response: the stream is reset below
                status = HTTPStatus.INTERNAL_SERVER_ERROR
                resp = web.Response(status=500, content_type="text/plain",
                                    text=f"{status.value} {status.phrase}\n\n{status.description}")
            await resp.prepare(request)
            await resp.write_eof()
        except ConnectionError:
            pass  # the stream or the connection is gone: nobody to answer
        except Exception:
            log.exception("the response to HTTP/2 stream %d failed", s.id)
        finally:
            s.done = True
            if not s.reset and not s.end_pending:
                # the handler gave up mid-response: the client must not take it as whole
                self._reset(s, h2.errors.ErrorCodes.INTERNAL_ERROR)
            if s.transport is not None:
                s.transport._closing = True
            self._forget_if_done(s)

    def _answer(self, s: _Stream, code: int, body: bytes) -> None:
        """A response of this layer's own (the request never reached the API)."""
        s.done = True
        s.head = [
            (b":status", str(code).encode()), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        self._body(s, body, end=True)

    def _send_head(self, s: _Stream, *, end: bool) -> None:
        head, s.head = s.head, None
        if head is None or s.reset or self._lost:
            return
        s.head_sent = True
        self._h2.send_headers(s.id, head, end_stream=end)
        if end:
            s.ended = True
        self._schedule_write()

    def _body(self, s: _Stream, data: bytes | bytearray | memoryview, *, end: bool) -> None:
        """Response body bytes for the stream (``end``: and nothing after them)."""
        if s.reset or self._lost:
            raise ConnectionResetError("Cannot write to closing transport")
        if s.end_pending:
            raise RuntimeError(f"HTTP/2 stream {s.id}: the response has ended")
        if s.head is not None:
            self._send_head(s, end=end and not data)
        if data:
            s.out += data
        if end:
            s.end_pending = True
        self._flush(s)

    async def _drain(self, s: _Stream) -> None:
        while True:
            if s.reset or self._lost:
                raise ConnectionResetError("Connection lost")
            if not s.paused:
                return
            s.waiter = self._loop.create_future()
            await s.waiter

    def _flush(self, s: _Stream) -> None:
        """Send what the client's windows admit; the rest waits for WINDOW_UPDATE."""
        if s.reset or self._lost:
            return
        if not s.out and (s.ended or not s.end_pending):
            # nothing waits (a WINDOW_UPDATE for a stream with nothing to send)
            self._forget_if_done(s)
            return
        h = self._h2
        try:
            while s.out:
                n = min(h.local_flow_control_window(s.id), h.max_outbound_frame_size, len(s.out))
                if n <= 0:
                    break
                if n == len(s.out):
                    chunk = bytes(s.out)
                    s.out.clear()
                else:
                    chunk = bytes(s.out[:n])
                    del s.out[:n]
                last = s.end_pending and not s.out
                h.send_data(s.id, chunk, end_stream=last)
                s.ended = last
            if s.end_pending and not s.out and not s.ended:
                h.end_stream(s.id)
                s.ended = True
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            # the client closed the stream in the meantime
            s.reset = True
            s.out.clear()
        self._schedule_write()
        self._update_pause(s)
        self._forget_if_done(s)

    def _update_pause(self, s: _Stream) -> None:
        if s.done:
            return
        if s.paused:
            want = self._socket_paused or len(s.out) > _LOW_WATER
        else:
            want = self._socket_paused or len(s.out) > _HIGH_WATER
        if want != s.paused:
            s.paused = want
            if not want:
                self._wake(s)

    def _wake(self, s: _Stream) -> None:
        if s.waiter is not None and not s.waiter.done():
            s.waiter.set_result(None)
        s.waiter = None

    def _reset(self, s: _Stream, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        if not s.reset and not s.ended and not self._lost:
            try:
                self._h2.reset_stream(s.id, error_code=code)
            except h2.exceptions.ProtocolError:
                pass  # already closed by the client
            self._schedule_write()
        self._gone(s)
        self._forget_if_done(s)

    def _gone(self, s: _Stream) -> None:
        """Nothing more goes out on the stream: its handler sees its transport closing
        (a watch returns) and any write fails."""
        s.reset = True
        s.out.clear()
        if s.transport is not None:
            s.transport._closing = True
        self._wake(s)

    def _forget_if_done(self, s: _Stream) -> None:
        if not s.done or not (s.ended or s.reset):
            return
        # the transport outlives the stream in ApiServer.transports (weakly): without
        # the cycle, both go when the last reference does, not with a cycle collection
        s.transport = None
        if self._streams.get(s.id) is s:
            del self._streams[s.id]
            self._now_idle()

    def _now_idle(self) -> None:
        if not self._streams:
            self._idle_since = self._loop.time()
            self._arm_idle()


def _as_bytes(headers: Iterable[tuple[Any, Any]]) -> Iterable[tuple[bytes, bytes]]:
    for n, v in headers:
        yield (n if isinstance(n, bytes) else n.encode()), (v if isinstance(v, bytes) else v.encode())
