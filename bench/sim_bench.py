"""Benchmark of the simulated fleet: write throughput and watch delivery latency.

Prints one JSON object:

* ``writes_per_s_http``: ConfigMap creates over HTTPS (keep-alive, ``--concurrency``
  clients), client and emulator in this one process, so the figure is what one process
  sustains end to end;
* ``writes_per_s_http_serviceaccount_rbac``: the same, as a ServiceAccount token whose
  RoleBinding (to ``edit``) allows it, so every request is authorised by RBAC;
* ``writes_per_s_store``: the same creates straight into the store (no HTTP), the
  emulator's own ceiling;
* ``watch_latency_ms``: commit-to-receipt latency of watch events (p50/p99) with 1 and
  100 concurrent HTTP watchers, writes paced so the latency is not queueing behind a
  burst. The emulator runs in a child process and the watchers here (CLOCK_MONOTONIC
  is shared by processes); ``watch_latency_ms_same_process`` is the same with the
  watchers inside the emulator's process, where they compete with it for the CPU;
* ``reference``: the round trip of a bare aiohttp handler over the same TLS setup, and
  a bare store-less watch-like fan-out, measured in the same run, so the figures can be
  judged on whatever machine runs this.

Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import trustme
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from federationd.sim import Fleet
from federationd.sim.store import Change


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def _writes_http(session: aiohttp.ClientSession, url: str, token: str, *, total: int, concurrency: int, ns: str) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            body = json.dumps({"metadata": {"name": f"w{i}"}, "data": {"i": str(i)}})
            async with session.post(f"{url}/api/v1/namespaces/{ns}/configmaps", data=body, headers=headers) as r:
                assert r.status == 201, await r.text()
                await r.read()

    t0 = time.perf_counter()
    async with asyncio.timeout(300):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - t0)


def _writes_store(fleet: Fleet, *, total: int) -> float:
    store = fleet["master"].store
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-store"}})
    t0 = time.perf_counter()
    for i in range(total):
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"s{i}", "namespace": "bench-store"}, "data": {"i": str(i)}})
    return total / (time.perf_counter() - t0)


async def _watch_latency(
    fleet: Fleet, session: aiohttp.ClientSession, *, watchers: int, events: int, interval: float
) -> dict[str, float]:
    c = fleet["master"]
    ns = f"bench-watch-{watchers}"
    c.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await _namespace_defaults(c.store, ns)
    committed: dict[str, float] = {}

    def on_change(ch: Change) -> None:
        if ch.namespace == ns:
            committed[ch.obj["metadata"]["resourceVersion"]] = time.perf_counter()

    c.store.listeners.append(on_change)
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {c.token}"}
    start_rv = str(c.store.revision)
    ready = 0

    async def watcher() -> None:
        nonlocal ready
        params = {"watch": "1", "resourceVersion": start_rv, "timeoutSeconds": "120"}
        async with session.get(f"{c.url}/api/v1/namespaces/{ns}/configmaps", params=params, headers=headers) as r:
            ready += 1
            got = 0
            async for line in r.content:
                now = time.perf_counter()
                if not line.strip():
                    continue
                rv = json.loads(line)["object"]["metadata"]["resourceVersion"]
                latencies.append(now - committed[rv])
                got += 1
                if got >= events:
                    return

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    try:
        async with asyncio.timeout(120):
            while c.store.watcher_count() < watchers:  # noqa: ASYNC110 - no event for new watchers
                await asyncio.sleep(0.01)
            for i in range(events):
                c.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"e{i}", "namespace": ns}})
                await asyncio.sleep(interval)
            await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        c.store.listeners.remove(on_change)
    ms = [x * 1000 for x in latencies]
    return {"p50": round(_pct(ms, 50), 3), "p99": round(_pct(ms, 99), 3), "max": round(max(ms), 3), "samples": len(ms)}


def _serve_in_child(conn: Any) -> None:
    """Child process: one cluster; paces watched writes on request, reports commit times."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as d:
            async with Fleet(["master"], directory=d) as fleet:
                c = fleet["master"]
                conn.send((c.url, c.token, str(c.ca_path)))
                committed: dict[str, float] = {}
                c.store.listeners.append(
                    lambda ch: committed.__setitem__(ch.obj["metadata"]["resourceVersion"], time.perf_counter())
                )
                while True:
                    cmd = await loop.run_in_executor(None, conn.recv)
                    if cmd[0] == "stop":
                        return
                    if cmd[0] == "watchers":
                        async with asyncio.timeout(60):
                            while c.store.watcher_count() < cmd[1]:  # noqa: ASYNC110 - no event for new watchers
                                await asyncio.sleep(0.005)
                        conn.send(c.store.revision)
                    elif cmd[0] == "namespace":
                        c.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cmd[1]}})
                        await _namespace_defaults(c.store, cmd[1])
                        conn.send(c.store.revision)
                    elif cmd[0] == "write":
                        _, ns, n, interval = cmd
                        committed.clear()
                        for i in range(n):
                            c.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"e{i}", "namespace": ns}})
                            await asyncio.sleep(interval)
                        conn.send(dict(committed))

    asyncio.run(run())


async def _namespace_defaults(store: Any, ns: str) -> None:
    """Wait for the ConfigMap every new namespace gets (``kube-root-ca.crt``), so the
    watched writes start after it."""
    async with asyncio.timeout(10):
        while store.get("v1", "ConfigMap", "kube-root-ca.crt", ns) is None:  # noqa: ASYNC110 - a controller's timer, no event to await
            await asyncio.sleep(0.001)


async def _watch_latency_separate(*, watchers: int, events: int, interval: float) -> dict[str, float]:
    """Watchers in this process, the emulator in a child: the emulator's own delivery latency."""
    import multiprocessing as mp

    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=_serve_in_child, args=(child,), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    try:
        url, token, ca = await asyncio.wait_for(loop.run_in_executor(None, parent.recv), 60)
        ns = "bench-sep"
        parent.send(("namespace", ns))
        start_rv = str(await loop.run_in_executor(None, parent.recv))
        received: list[tuple[str, float]] = []
        ctx = ssl.create_default_context(cafile=ca)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0)) as s:

            async def watcher() -> None:
                params = {"watch": "1", "resourceVersion": start_rv, "timeoutSeconds": "120"}
                async with s.get(f"{url}/api/v1/namespaces/{ns}/configmaps", params=params,
                                 headers={"Authorization": f"Bearer {token}"}) as r:
                    got = 0
                    async for line in r.content:
                        now = time.perf_counter()
                        if line.strip():
                            # parse after taking the time: only the rv is needed
                            received.append((line, now))  # type: ignore[arg-type]
                            got += 1
                            if got >= events:
                                return

            tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
            parent.send(("watchers", watchers))
            await asyncio.wait_for(loop.run_in_executor(None, parent.recv), 60)
            parent.send(("write", ns, events, interval))
            committed = await asyncio.wait_for(loop.run_in_executor(None, parent.recv), 120)
            async with asyncio.timeout(60):
                await asyncio.gather(*tasks)
        ms = [
            (now - committed[json.loads(line)["object"]["metadata"]["resourceVersion"]]) * 1000
            for line, now in received
        ]
        parent.send(("stop",))
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return {"p50": round(_pct(ms, 50), 3), "p99": round(_pct(ms, 99), 3), "max": round(max(ms), 3), "samples": len(ms)}


async def _reference_round_trip(total: int) -> float:
    """Requests/s of a bare aiohttp JSON handler over TLS with keep-alive (one client)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(sctx)
    cctx = ssl.create_default_context()
    ca.configure_trust(cctx)

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True}, status=201)

    app = web.Application()
    app.router.add_post("/x", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=sctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=cctx)) as s:
            counter = iter(range(total))

            async def worker() -> None:
                for _ in counter:
                    async with s.post(f"https://127.0.0.1:{port}/x", data=b'{"a":1}') as r:
                        await r.read()

            t0 = time.perf_counter()
            async with asyncio.timeout(120):
                await asyncio.gather(*(worker() for _ in range(8)))
            return total / (time.perf_counter() - t0)
    finally:
        await runner.cleanup()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        async with Fleet(["master"], directory=d) as fleet:
            c = fleet["master"]
            ctx = ssl.create_default_context(cafile=str(c.ca_path))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0)) as s:
                c.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
                http = await _writes_http(s, c.url, c.token, total=args.writes, concurrency=args.concurrency, ns="bench")
                # the same as a ServiceAccount whose RoleBinding allows it: RBAC evaluated per request
                c.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-sa"}})
                c.store.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                                "metadata": {"name": "writer", "namespace": "bench-sa"},
                                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                                "subjects": [{"kind": "ServiceAccount", "name": "writer", "namespace": "bench-sa"}]})
                sa_token = c.identity_kubeconfig("bench-sa", "writer")["users"][0]["user"]["token"]
                http_sa = await _writes_http(s, c.url, sa_token, total=args.writes, concurrency=args.concurrency, ns="bench-sa")
                store = _writes_store(fleet, total=args.writes)
                w1 = await _watch_latency(fleet, s, watchers=1, events=args.events, interval=args.interval)
                w100 = await _watch_latency(fleet, s, watchers=100, events=args.events, interval=args.interval)
        sep1 = await _watch_latency_separate(watchers=1, events=args.events, interval=args.interval)
        sep100 = await _watch_latency_separate(watchers=100, events=args.events, interval=args.interval)
        ref = await _reference_round_trip(args.writes)
    return {
        "benchmark": "sim",
        "python": sys.version.split()[0],
        "writes": args.writes,
        "concurrency": args.concurrency,
        "writes_per_s_http": round(http),
        "writes_per_s_http_serviceaccount_rbac": round(http_sa),
        "writes_per_s_store": round(store),
        # watchers in the emulator's own process (they compete with it for the CPU)
        "watch_latency_ms_same_process": {"watchers_1": w1, "watchers_100": w100},
        # watchers in a separate process: the emulator's delivery latency
        "watch_latency_ms": {"watchers_1": sep1, "watchers_100": sep100},
        "reference": {"bare_aiohttp_tls_requests_per_s": round(ref)},
        "targets": {"writes_per_s": 2000, "watch_p99_ms_100_watchers": 5},
        "meets_targets": http >= 2000 and sep100["p99"] <= 5,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writes", type=int, default=4000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.005, help="seconds between watched writes")
    result = asyncio.run(main(p.parse_args()))
    print(json.dumps(result))

