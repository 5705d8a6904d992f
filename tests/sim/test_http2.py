"""HTTP/2 on the emulated API servers: negotiated by ALPN, every stream served by the
same API as HTTP/1.1, watches multiplexed on one connection, flow control honoured,
partitions drop the connection.

The client here is written with the ``h2`` library on a plain TLS stream, so each test
sees the frames a Go client would (HEADERS, DATA, RST_STREAM, GOAWAY).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest

from federationd.sim import Cluster, h2serve
from tests.sim.conftest import Raw, unique, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Stream:
    id: int
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    got_headers: asyncio.Event = field(default_factory=asyncio.Event)
    body: bytearray = field(default_factory=bytearray)
    data: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reset_code: int | None = None
    #: acknowledge DATA as it arrives (False: the stream's window stays consumed)
    ack: bool = True
    unacked: int = 0

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(ln) for ln in bytes(self.body).splitlines() if ln.strip()]


class H2Client:
    """An HTTP/2 client over one TLS connection to a cluster."""

    def __init__(self, cluster: Cluster, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.cluster = cluster
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.streams: dict[int, Stream] = {}
        self.remote_settings: dict[int, int] = {}
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.closed = asyncio.Event()
        self.window_opened = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, cluster: Cluster, *, connection_window: int = 0) -> H2Client:
        ctx = ssl.create_default_context(cafile=str(cluster.ca_path))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port, ssl=ctx)
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        c = cls(cluster, reader, writer)
        c.conn.initiate_connection()
        if connection_window:
            c.conn.increment_flow_control_window(connection_window)
        c.flush()
        c._pump = asyncio.create_task(c._read())
        return c

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for ev in self.conn.receive_data(data):
                    self._event(ev)
                self.flush()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.closed.set()
            for s in self.streams.values():
                s.ended.set()
                s.data.set()

    def _event(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.ResponseReceived):
            s = self.streams[ev.stream_id]
            hs = dict(ev.headers)
            s.status = int(hs.pop(":status"))
            s.headers = hs
            s.got_headers.set()
        elif isinstance(ev, h2.events.DataReceived):
            s = self.streams[ev.stream_id]
            s.body += ev.data
            s.data.set()
            if s.ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            else:
                s.unacked += ev.flow_controlled_length
        elif isinstance(ev, h2.events.StreamEnded):
            self.streams[ev.stream_id].ended.set()
        elif isinstance(ev, h2.events.StreamReset):
            s = self.streams[ev.stream_id]
            s.reset_code = ev.error_code
            s.ended.set()
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.remote_settings.update({k: v.new_value for k, v in ev.changed_settings.items()})
            self.window_opened.set()
        elif isinstance(ev, h2.events.WindowUpdated):
            self.window_opened.set()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = ev

    def open(
        self, method: str, path: str, *, body: bool = False, headers: dict[str, str] | None = None,
        token: str | None = None, ack: bool = True, content_length: int = 0,
    ) -> Stream:
        """Send a request's headers (and end the stream unless a body follows)."""
        sid = self.conn.get_next_available_stream_id()
        s = self.streams[sid] = Stream(sid, ack=ack)
        hs = [(":method", method), (":path", path), (":scheme", "https"),
              (":authority", f"127.0.0.1:{self.cluster.port}")]
        if token != "":
            hs.append(("authorization", f"Bearer {token or self.cluster.token}"))
        hs += [(k.lower(), v) for k, v in (headers or {}).items()]
        if body:
            hs.append(("content-length", str(content_length)))
        self.conn.send_headers(sid, hs, end_stream=not body)
        self.flush()
        return s

    async def send_body(self, s: Stream, body: bytes) -> None:
        """Send as much as the server's windows admit, then wait for WINDOW_UPDATE."""
        view = memoryview(body)
        while view:
            n = min(self.conn.local_flow_control_window(s.id), self.conn.max_outbound_frame_size, len(view))
            if n == 0:
                self.window_opened.clear()
                async with asyncio.timeout(5):
                    await self.window_opened.wait()
                continue
            self.conn.send_data(s.id, bytes(view[:n]), end_stream=n == len(view))
            view = view[n:]
            self.flush()

    async def request(self, method: str, path: str, *, body: bytes = b"", **kw: Any) -> Stream:
        s = self.open(method, path, body=bool(body), content_length=len(body), **kw)
        async with asyncio.timeout(10):
            if body:
                await self.send_body(s, body)
            await s.ended.wait()
        return s

    def reset(self, s: Stream) -> None:
        self.conn.reset_stream(s.id, error_code=h2.errors.ErrorCodes.CANCEL)
        self.flush()

    def ack(self, s: Stream) -> None:
        self.conn.acknowledge_received_data(s.unacked, s.id)
        s.unacked = 0
        s.ack = True
        self.flush()

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.conn.close_connection()
            self.flush()
            self.writer.close()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def h2client(cluster: Cluster, **kw: Any) -> AsyncIterator[H2Client]:
    c = await H2Client.connect(cluster, **kw)
    try:
        yield c
    finally:
        await c.close()


async def _namespace(raw: Raw) -> str:
    ns = unique("h2")
    code, _, _ = await raw.request("POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    assert code == 201
    return ns


async def test_settings_are_kube_apiservers(master: Cluster) -> None:
    async with h2client(master) as c:
        await c.request("GET", "/version")
        codes = h2.settings.SettingCodes
        assert c.remote_settings[codes.MAX_CONCURRENT_STREAMS] == 100
        assert c.remote_settings[codes.INITIAL_WINDOW_SIZE] == 256 * 1024
        assert c.remote_settings[codes.MAX_FRAME_SIZE] == 256 * 1024


async def test_get_and_list_answer_as_over_http1(master: Cluster, raw: Raw) -> None:
    ns = await _namespace(raw)
    for i in range(3):
        code, _, _ = await raw.request("POST", f"/api/v1/namespaces/{ns}/secrets",
                                       body={"metadata": {"name": f"s{i}"}, "stringData": {"k": str(i)}})
        assert code == 201
    async with h2client(master) as c:
        for path in ("/version", f"/api/v1/namespaces/{ns}/secrets", f"/api/v1/namespaces/{ns}/secrets/s1",
                     "/api/v1/namespaces/nope/secrets/missing"):
            s = await c.request("GET", path)
            code, want, resp = await raw.request("GET", path)
            assert (s.status, json.loads(s.body)) == (code, want), path
            assert s.headers["content-type"] == resp.headers["Content-Type"]
            # hop-by-hop fields of HTTP/1.1 are not sent on a stream
            assert not {"connection", "keep-alive", "transfer-encoding"} & set(s.headers)
        # the same authentication: an unknown token is 401, no token is the anonymous user
        s = await c.request("GET", f"/api/v1/namespaces/{ns}/secrets", token="not-a-token")
        assert s.status == 401 and json.loads(s.body)["reason"] == "Unauthorized"
        s = await c.request("GET", f"/api/v1/namespaces/{ns}/secrets", token="")
        assert s.status == 403 and "system:anonymous" in json.loads(s.body)["message"]
        # a HEAD answer has no body, whatever its length says
        s = await c.request("HEAD", f"/api/v1/namespaces/{ns}/secrets/s1")
        code, _, resp = await raw.request("HEAD", f"/api/v1/namespaces/{ns}/secrets/s1")
        assert s.status == code and s.body == b""
        assert s.headers.get("content-length") == resp.headers.get("Content-Length")


async def test_a_request_http1_could_not_carry_is_refused(master: Cluster, raw: Raw) -> None:
    ns = await _namespace(raw)
    async with h2client(master) as c:
        # a space in the target, a method that is not a token: 400 on the stream alone
        for method, path in (("GET", f"/api/v1/namespaces/{ns}/secrets/a b"), ("GE(T", "/version"),
                             ("GET", "version")):
            s = await c.request(method, path)
            assert s.status == 400, (method, path)
            assert json.loads(s.body)["reason"] == "BadRequest"
        # the query string reaches the API as over HTTP/1.1, and the connection goes on
        path = f"/api/v1/namespaces/{ns}/secrets?limit=1&labelSelector=nothing%3Dhere"
        s = await c.request("GET", path)
        code, want, _ = await raw.request("GET", path)
        assert (s.status, json.loads(s.body)["items"]) == (code, want["items"]) == (200, [])


async def test_a_failing_handler_answers_as_over_http1(master: Cluster, raw: Raw,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(request: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(master.server, "_handle", broken)
    code, text, resp = await raw.request("GET", "/version")
    async with h2client(master) as c:
        s = await c.request("GET", "/version")
        assert (s.status, s.body.decode(), s.headers["content-type"]) == (
            code, text, resp.headers["Content-Type"])
        assert code == 500 and text.startswith("500 Internal Server Error")
        monkeypatch.undo()
        # the stream failed, not the connection
        assert (await c.request("GET", "/version")).status == 200


async def test_create_with_a_body(master: Cluster, raw: Raw) -> None:
    ns = await _namespace(raw)
    before = master.requests.total("create", "configmaps")
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made-over-h2"},
                       "data": {"k": "v" * 1000}}).encode()
    async with h2client(master) as c:
        s = await c.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body=body,
                            headers={"content-type": "application/json"})
        assert s.status == 201, s.body
        assert json.loads(s.body)["metadata"]["name"] == "made-over-h2"
        again = await c.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body=body,
                                headers={"content-type": "application/json"})
        assert again.status == 409 and json.loads(again.body)["reason"] == "AlreadyExists"
    code, got, _ = await raw.request("GET", f"/api/v1/namespaces/{ns}/configmaps/made-over-h2")
    assert code == 200 and got["data"] == {"k": "v" * 1000}
    # counted like any request
    assert master.requests.total("create", "configmaps") == before + 2


async def test_a_body_larger_than_the_servers_window(master: Cluster, raw: Raw) -> None:
    # more than the 256 KiB stream window: the client must wait for the server to
    # acknowledge what it received
    ns = await _namespace(raw)
    big = "b" * 600_000
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big-body"},
                       "data": {"k": big}}).encode()
    assert len(body) > h2serve.STREAM_RECEIVE_WINDOW
    async with h2client(master) as c:
        s = await c.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body=body,
                            headers={"content-type": "application/json"})
        assert s.status == 201, s.body
    code, got, _ = await raw.request("GET", f"/api/v1/namespaces/{ns}/configmaps/big-body")
    assert code == 200 and got["data"]["k"] == big


async def test_a_body_over_kube_apiservers_limit_is_refused_on_both_protocols(
        master: Cluster, raw: Raw) -> None:
    # MaxRequestBodyBytes (k8s.io/apiserver): 3 MiB; past it, limitedReadBody's 413
    ns = await _namespace(raw)

    def configmap(name: str, size: int) -> bytes:
        # a small object padded with whitespace to ``size`` bytes: the body's size is
        # what is limited (a ConfigMap's data may not pass 1 MiB anyway)
        doc = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                          "data": {"k": "v"}}).encode()
        return doc + b" " * (size - len(doc))

    limit = 3 * 1024 * 1024
    over, under = configmap("too-big", limit + 1), configmap("just-fits", limit)
    assert len(over) == limit + 1 and len(under) == limit
    code, got, _ = await raw.request("POST", f"/api/v1/namespaces/{ns}/configmaps", data=over)
    assert code == 413 and got["reason"] == "RequestEntityTooLarge", got
    assert got["message"] == f"Request entity too large: limit is {limit}"
    async with h2client(master) as c:
        s = await c.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body=over,
                            headers={"content-type": "application/json"})
        assert s.status == 413 and json.loads(s.body) == got
        s = await c.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body=under,
                            headers={"content-type": "application/json"})
        assert s.status == 201, s.body[:200]
    code, _, _ = await raw.request("GET", f"/api/v1/namespaces/{ns}/configmaps/too-big")
    assert code == 404


async def test_a_compressed_request_body_is_not_undone_on_either_protocol(master: Cluster, raw: Raw) -> None:
    # kube-apiserver compresses responses only: a gzip body is read as the bytes it is,
    # which are not JSON (aiohttp's HTTP/1.1 parser would have inflated it)
    ns = await _namespace(raw)
    doc = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "zipped"}, "data": {"k": "v"}})
    zipped = gzip.compress(doc.encode())
    code, got, _ = await raw.request("POST", f"/api/v1/namespaces/{ns}/configmaps", data=zipped,
                                     headers={"Content-Encoding": "gzip"})
    assert code == 400 and got["reason"] == "BadRequest", got
    async with h2client(master) as c:
        s = await c.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body=zipped,
                            headers={"content-type": "application/json", "content-encoding": "gzip"})
        assert s.status == 400 and json.loads(s.body)["reason"] == "BadRequest", s.body
    code, _, _ = await raw.request("GET", f"/api/v1/namespaces/{ns}/configmaps/zipped")
    assert code == 404


async def test_watches_multiplexed_on_one_connection(master: Cluster, raw: Raw) -> None:
    namespaces = [await _namespace(raw) for _ in range(3)]
    rv = str(master.store.revision)
    async with h2client(master) as c:
        watches = [c.open("GET", f"/api/v1/namespaces/{ns}/secrets?watch=1&resourceVersion={rv}")
                   for ns in namespaces]
        for w in watches:
            async with asyncio.timeout(5):
                await w.got_headers.wait()
            assert w.status == 200
        for ns in namespaces:
            code, _, _ = await raw.request("POST", f"/api/v1/namespaces/{ns}/secrets",
                                           body={"metadata": {"name": "w"}, "stringData": {"v": "1"}})
            assert code == 201
            code, _, _ = await raw.request("PATCH", f"/api/v1/namespaces/{ns}/secrets/w",
                                           body={"stringData": {"v": "2"}},
                                           content_type="application/merge-patch+json")
            assert code == 200

        for ns, w in zip(namespaces, watches, strict=True):
            def seen(w: Stream = w) -> bool:
                return [e["type"] for e in w.lines()] == ["ADDED", "MODIFIED"]
            await wait_for(seen, what=f"ADDED and MODIFIED on the watch of {ns}")
            assert {e["object"]["metadata"]["namespace"] for e in w.lines()} == {ns}
            assert not w.ended.is_set()
        # one connection carried them all, and it still serves requests alongside
        assert len({w.id for w in watches}) == 3
        assert (await c.request("GET", "/version")).status == 200


async def test_resetting_a_watch_stream_ends_the_server_side_watch(master: Cluster, raw: Raw) -> None:
    ns = await _namespace(raw)
    async with h2client(master) as c:
        # watches of earlier tests may still be winding down: count only these
        before = set(master.server._watch_tasks)

        def serving() -> int:
            return len(master.server._watch_tasks - before)

        keep = c.open("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1")
        gone = c.open("GET", f"/api/v1/namespaces/{ns}/secrets?watch=1")
        await wait_for(lambda: serving() == 2, what="two watches served")
        c.reset(gone)
        await wait_for(lambda: serving() == 1, what="the reset watch ended")
        # the other stream on the connection goes on receiving
        code, _, _ = await raw.request("POST", f"/api/v1/namespaces/{ns}/configmaps",
                                       body={"metadata": {"name": "after-reset"}})
        assert code == 201
        await wait_for(lambda: any(e["object"]["metadata"]["name"] == "after-reset" for e in keep.lines()),
                       what="the event on the remaining watch")
    # closing the connection ends the remaining watch too
    await wait_for(lambda: serving() == 0, what="watches ended with the connection")


async def test_a_response_larger_than_the_window_is_delivered_whole(master: Cluster, raw: Raw) -> None:
    ns = await _namespace(raw)
    big = "x" * 300_000
    code, _, _ = await raw.request("POST", f"/api/v1/namespaces/{ns}/configmaps",
                                   body={"metadata": {"name": "big"}, "data": {"big": big}})
    assert code == 201
    # a large connection window, so the stream's own 65,535-byte window is what holds
    async with h2client(master, connection_window=10_000_000) as c:
        held = c.open("GET", f"/api/v1/namespaces/{ns}/configmaps/big", ack=False)
        await wait_for(lambda: len(held.body) == 65_535, what="the stream's window filled")
        # the server waits for the window: nothing more, and the stream is not over
        other = await c.request("GET", "/version")
        assert other.status == 200
        assert len(held.body) == 65_535 and not held.ended.is_set()
        c.ack(held)
        async with asyncio.timeout(10):
            await held.ended.wait()
        assert held.reset_code is None
        assert json.loads(held.body)["data"]["big"] == big


async def test_partition_drops_the_connection(fleet: Any) -> None:
    c = fleet["remote-eu"]
    async with h2client(c) as client:
        assert (await client.request("GET", "/version")).status == 200
        # no stream open: the connection itself is what the partition must drop
        await c.faults.partition(0.2)
        async with asyncio.timeout(5):
            await client.closed.wait()

    async def back() -> bool:
        try:
            async with h2client(c) as again:
                return (await again.request("GET", "/version")).status == 200
        except OSError:
            return False

    await wait_for(back, within=5, what="h2 served after the partition healed")


async def test_idle_connection_gets_goaway(master: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h2serve, "IDLE_TIMEOUT", 0.2)
    async with h2client(master) as c:
        rv = master.store.revision
        watch = c.open("GET", f"/api/v1/namespaces/default/secrets?watch=1&allowWatchBookmarks=true&resourceVersion={rv}")
        # an open stream is not idle: bookmarks (every 0.2 s here) keep arriving for
        # longer than the idle timeout
        await wait_for(lambda: sum(e["type"] == "BOOKMARK" for e in watch.lines()) >= 3, what="bookmarks")
        assert c.terminated is None and not c.closed.is_set()
        c.reset(watch)
        async with asyncio.timeout(5):
            await c.closed.wait()
        assert c.terminated is not None and c.terminated.error_code == h2.errors.ErrorCodes.NO_ERROR


async def test_http1_only_clients_still_get_http1(master: Cluster) -> None:
    for offer in (["http/1.1"], None):
        ctx = ssl.create_default_context(cafile=str(master.ca_path))
        if offer is not None:
            ctx.set_alpn_protocols(offer)
        reader, writer = await asyncio.open_connection("127.0.0.1", master.port, ssl=ctx)
        try:
            assert writer.get_extra_info("ssl_object").selected_alpn_protocol() in (None, "http/1.1")
            writer.write(f"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {master.token}\r\n"
                         "Connection: close\r\n\r\n".encode())
            async with asyncio.timeout(5):
                response = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert "gitVersion" in json.loads(body)


async def test_concurrent_requests_on_one_connection(master: Cluster, raw: Raw) -> None:
    ns = await _namespace(raw)
    for i in range(20):
        code, _, _ = await raw.request("POST", f"/api/v1/namespaces/{ns}/configmaps",
                                       body={"metadata": {"name": f"c{i}"}, "data": {"i": str(i) * 5000}})
        assert code == 201
    async with h2client(master) as c:
        # every request is in flight before any answer is read
        streams = [c.open("GET", f"/api/v1/namespaces/{ns}/configmaps/c{i % 20}") for i in range(60)]
        async with asyncio.timeout(10):
            for s in streams:
                await s.ended.wait()
        for i, s in enumerate(streams):
            assert s.status == 200 and json.loads(s.body)["data"]["i"] == str(i % 20) * 5000
