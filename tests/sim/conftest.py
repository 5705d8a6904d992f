"""Fixtures for the simulated-fleet suite: one fleet per module, clients, a wait helper.

Each test module gets its own fleet (module-scoped, on a module-scoped event loop) so
tests stay fast; tests inside a module isolate themselves with unique names.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kubernetes_asyncio import client, config

from federationd.sim import Cluster, ClusterSpec, Fleet
from federationd.sim.versions import DEFAULT_VERSION

#: The emulator's own tests run the release of the machine's kubectl (1.32), not the
#: older fleet default the meshes need: they exercise what a current server does.
CLUSTERS = [
    ClusterSpec(name="master", region="europe-west1", zones=("europe-west1-b", "europe-west1-c"),
                kubernetes_version=DEFAULT_VERSION),
    ClusterSpec(name="remote-eu", region="europe-west4", kubernetes_version=DEFAULT_VERSION),
    ClusterSpec(name="remote-us", region="us-east-1", lb="hostname", kubernetes_version=DEFAULT_VERSION),
]


async def wait_for(
    cond: Callable[[], Any] | Callable[[], Awaitable[Any]],
    within: float = 5.0,
    interval: float = 0.01,
    what: str = "condition",
) -> Any:
    """Poll ``cond`` (sync or async) until it returns something truthy, or fail."""
    deadline = time.monotonic() + within
    while True:
        r = cond()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fleet]:
    d: Path = tmp_path_factory.mktemp("fleet")
    async with Fleet(CLUSTERS, directory=d, bookmark_interval=0.2, lb_delay=0.02, ready_delay=0.02) as f:
        yield f


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def master(fleet: Fleet) -> Cluster:
    return fleet["master"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(master: Cluster) -> AsyncIterator[client.ApiClient]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(master.kubeconfig_path), client_configuration=cfg)
    async with client.ApiClient(cfg) as a:
        yield a


class Raw:
    """A plain HTTPS client for checking the wire format itself."""

    def __init__(self, cluster: Cluster, session: aiohttp.ClientSession, token: str) -> None:
        self.cluster = cluster
        self.session = session
        self.token = token

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        token: str | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        h = {"Authorization": f"Bearer {token if token is not None else self.token}", **(headers or {})}
        if body is not None or data is not None:
            h["Content-Type"] = content_type
        kw: dict[str, Any] = {"headers": h, "params": params}
        if body is not None:
            kw["json"] = body
        elif data is not None:
            kw["data"] = data
        async with self.session.request(method, self.cluster.url + path, **kw) as resp:
            text = await resp.text()
            try:
                parsed: Any = await resp.json(content_type=None) if text else None
            except ValueError:
                parsed = text
            return resp.status, parsed, resp


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def raw(master: Cluster) -> AsyncIterator[Raw]:
    ctx = ssl.create_default_context(cafile=str(master.ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        yield Raw(master, s, master.token)
