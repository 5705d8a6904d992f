"""TLS connections of one thread share one read buffer, and every byte still arrives."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl

from federationd.clusters.tlsbuffers import share_tls_read_buffers
from federationd.sim.tlscert import ServingCert

PAYLOAD = 3 * 1024 * 1024  # larger than a read buffer: many reads per connection


async def test_connections_share_one_read_buffer_and_lose_nothing() -> None:
    assert share_tls_read_buffers()
    assert share_tls_read_buffers()  # idempotent
    cert = ServingCert()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure(server_ctx)
    client_ctx = ssl.create_default_context(cadata=cert.ca_pem.decode())
    blobs = [os.urandom(PAYLOAD) for _ in range(4)]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        i = int((await reader.readline()).decode())
        writer.write(blobs[i])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    protocols = []

    async def fetch(i: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        protocols.append(writer.transport._ssl_protocol)  # type: ignore[attr-defined]
        writer.write(f"{i}\n".encode())
        data = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        return data

    async with server:
        got = await asyncio.gather(*(fetch(i) for i in range(len(blobs))))
    # concurrent connections interleave their reads through the one buffer
    assert [hashlib.sha256(g).digest() for g in got] == [hashlib.sha256(b).digest() for b in blobs]
    views = {id(p._ssl_buffer_view.obj) for p in protocols}
    assert len(views) == 1
    assert all(p._ssl_buffer is None for p in protocols)
