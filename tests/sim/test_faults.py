"""Fault injection: latency, error rates, throttling, partitions, and the control API."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from federationd.sim import Cluster, Fleet
from federationd.sim.control import start_control
from tests.sim.conftest import Raw, unique, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(autouse=True)
def _clear(master: Cluster) -> None:
    master.faults.clear()


async def test_latency_slows_one_cluster_only(raw: Raw, master: Cluster, fleet: Fleet) -> None:
    master.faults.latency(0.2, verb="list", count=1)
    other = fleet["remote-eu"]
    ctx = __import__("ssl").create_default_context(cafile=str(other.ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        t0 = time.monotonic()
        async with s.get(other.url + "/api/v1/namespaces/default/configmaps",
                         headers={"Authorization": f"Bearer {other.token}"}) as r:
            assert r.status == 200
        assert time.monotonic() - t0 < 0.2  # the other cluster is not slowed
    t0 = time.monotonic()
    await raw.request("GET", "/api/v1/namespaces/default/configmaps")
    assert time.monotonic() - t0 >= 0.2
    assert master.faults.injected["latency"] >= 1
    t0 = time.monotonic()
    await raw.request("GET", "/api/v1/namespaces/default/configmaps")
    assert time.monotonic() - t0 < 0.2  # count=1: used up


async def test_error_rate_per_verb(raw: Raw, master: Cluster) -> None:
    master.faults.error_rate(verb="create", rate=1.0, code=503)
    code, body, _ = await raw.request("POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": unique()}})
    assert code == 503 and body["reason"] == "ServiceUnavailable"
    code, _, _ = await raw.request("GET", "/api/v1/namespaces/default/configmaps")
    assert code == 200
    master.faults.clear()
    master.faults.error_rate(rate=1.0, code=500, count=2)
    codes = [(await raw.request("GET", "/api/v1/namespaces"))[0] for _ in range(3)]
    assert codes == [500, 500, 200]
    master.faults.clear()
    master.faults.error_rate(rate=0.5, verb="get")
    codes = [(await raw.request("GET", "/api/v1/namespaces/default"))[0] for _ in range(40)]
    assert 5 < codes.count(500) < 35 and set(codes) == {200, 500}


async def test_throttle_answers_429_with_retry_after(raw: Raw, master: Cluster) -> None:
    master.faults.throttle(retry_after=3, count=1)
    code, body, resp = await raw.request("GET", "/api/v1/namespaces")
    assert code == 429 and resp.headers["Retry-After"] == "3"
    assert body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 3
    assert (await raw.request("GET", "/api/v1/namespaces"))[0] == 200


async def test_faults_expire_after_their_duration(raw: Raw, master: Cluster) -> None:
    master.faults.error_rate(rate=1.0, duration=0.05)
    assert (await raw.request("GET", "/api/v1/namespaces"))[0] == 500

    async def healed() -> bool:
        return (await raw.request("GET", "/api/v1/namespaces"))[0] == 200

    await wait_for(healed, what="fault expired")


async def test_partition_refuses_connections_then_heals(fleet: Fleet) -> None:
    c = fleet["remote-eu"]
    ctx = __import__("ssl").create_default_context(cafile=str(c.ca_path))
    headers = {"Authorization": f"Bearer {c.token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(c.url + "/api/v1/namespaces", headers=headers) as r:
            assert r.status == 200
        c.faults.partition(0.3)  # takes effect at once; awaiting is optional
        with pytest.raises(aiohttp.ClientConnectionError):
            async with s.get(c.url + "/api/v1/namespaces", headers=headers) as r:
                await r.read()

        async def back() -> bool:
            try:
                async with s.get(c.url + "/api/v1/namespaces", headers=headers) as r:
                    return r.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await wait_for(back, within=5, what="partition healed")
        # heal() ends a partition early
        await c.faults.partition(60)
        await c.faults.heal()
        assert await back()


async def test_partition_resets_open_watches(fleet: Fleet) -> None:
    c = fleet["remote-eu"]
    ctx = __import__("ssl").create_default_context(cafile=str(c.ca_path))
    headers = {"Authorization": f"Bearer {c.token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(c.url + "/api/v1/secrets", params={"watch": "1", "resourceVersion": str(c.store.revision)}, headers=headers) as r:
            await wait_for(lambda: c.store.watcher_count() > 0, what="watching")
            await c.faults.partition(0.2)
            async with asyncio.timeout(5):
                try:
                    await r.read()
                except aiohttp.ClientPayloadError:
                    pass
        assert c.store.watcher_count() == 0
        await c.faults.heal()


async def test_control_api(fleet: Fleet) -> None:
    runner, port = await start_control(fleet, port=0)
    try:
        c = fleet["remote-us"]
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/clusters") as r:
                clusters = await r.json()
            assert [x["name"] for x in clusters] == ["master", "remote-eu", "remote-us"]
            async with s.post(f"http://127.0.0.1:{port}/clusters/remote-us/faults/error-rate", json={"rate": 1.0, "code": 503}) as r:
                assert r.status == 200
            assert len(c.faults._rules) == 1
            async with s.post(f"http://127.0.0.1:{port}/clusters/remote-us/faults/compact") as r:
                assert (await r.json())["result"] == c.store.floor
            async with s.post(f"http://127.0.0.1:{port}/clusters/remote-us/faults/clear") as r:
                assert r.status == 200
            assert c.faults._rules == []
            async with s.post(f"http://127.0.0.1:{port}/clusters/remote-us/faults/latency", json={"bogus": 1}) as r:
                assert r.status == 400
            async with s.post(f"http://127.0.0.1:{port}/clusters/nope/faults/clear") as r:
                assert r.status == 404
    finally:
        await runner.cleanup()
