"""Benchmark of the simulated fleet: write throughput and watch delivery latency, with
RBAC enforced.

Every target figure is measured as a ServiceAccount bound by a namespaced Role and
RoleBinding (not ``system:masters``), so the authorizer decides each request from rules.
Prints one JSON object:

* ``writes_per_s_http_serviceaccount_rbac``: ConfigMap creates over HTTPS (keep-alive,
  ``--concurrency`` clients) as that ServiceAccount, client and emulator in this one
  process; ``writes_per_s_http_admin`` the same as ``kubernetes-admin``;
* ``writes_per_s_store``: the same creates straight into the store (no HTTP);
* ``watch_latency_ms``: commit-to-receipt latency of watch events (p50/p99) with 1 and
  100 concurrent HTTP watchers, the emulator in a child process and the watchers here
  (CLOCK_MONOTONIC is shared by processes), writes paced so the latency is not queueing
  behind a burst; the 100-watcher figures as the ServiceAccount, as admin, and the
  reference below are run in ``--rounds`` interleaved rounds (medians), so each meets
  the same load, after one uncounted warm-up round per child process;
  ``watch_latency_ms_same_process`` has the watchers inside the
  emulator's process, where they compete with it for the CPU;
* ``reference``, measured in the same run: the round trips of a bare aiohttp handler
  over the same TLS setup (the floor of a write), and the same 100 watch streams fed
  by a bare aiohttp handler writing each line at "commit" time (the floor of delivery
  on this machine at this moment); ``ratios`` relate the figures to them;
* ``load_average_1m`` before and after: the machine's load while it ran.

Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
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
    token = _grant(c, ns)
    await _namespace_defaults(c.store, ns)
    committed: dict[str, float] = {}

    def on_change(ch: Change) -> None:
        if ch.namespace == ns:
            committed[ch.obj["metadata"]["resourceVersion"]] = time.perf_counter()

    c.store.listeners.append(on_change)
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    start_rv = str(c.store.revision)
    ready = 0

    async def watcher() -> None:
        nonlocal ready
        params = {"watch": "1", "resourceVersion": start_rv, "timeoutSeconds": "120"}
        async with session.get(f"{c.url}/api/v1/namespaces/{ns}/configmaps", params=params, headers=headers) as r:
            assert r.status == 200, await r.text()
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
            while c.store.watcher_count(("", "configmaps"), ns) < watchers:  # noqa: ASYNC110 - no event for new watchers
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


def _grant(cluster: Any, namespace: str) -> str:
    """A ServiceAccount token allowed ConfigMaps in ``namespace`` by a Role and its
    RoleBinding (no ``system:masters``): every request it makes is decided by RBAC."""
    store = cluster.store
    if store.get("v1", "Namespace", namespace) is None:
        store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    token = str(cluster.identity_kubeconfig(namespace, "bench")["users"][0]["user"]["token"])
    store.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                  "metadata": {"name": "bench-configmaps", "namespace": namespace},
                  "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                             "verbs": ["create", "get", "list", "watch"]}]})
    store.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                  "metadata": {"name": "bench-configmaps", "namespace": namespace},
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bench-configmaps"},
                  "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": namespace}]})
    return token


def _serve_in_child(conn: Any) -> None:
    """Child process: one cluster; paces watched writes on request, reports commit times."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as d:
            async with Fleet(["master"], directory=d) as fleet:
                c = fleet["master"]
                conn.send((c.url, str(c.ca_path)))
                committed: dict[str, float] = {}
                c.store.listeners.append(
                    lambda ch: committed.__setitem__(ch.obj["metadata"]["resourceVersion"], time.perf_counter())
                )
                while True:
                    cmd = await loop.run_in_executor(None, conn.recv)
                    if cmd[0] == "stop":
                        return
                    if cmd[0] == "watchers":
                        _, ns, n = cmd
                        async with asyncio.timeout(60):
                            while c.store.watcher_count(("", "configmaps"), ns) < n:  # noqa: ASYNC110 - no event for new watchers
                                await asyncio.sleep(0.005)
                        conn.send(c.store.revision)
                    elif cmd[0] == "namespace":
                        # a namespace, its defaults and the identity that watches it
                        _, ns, identity = cmd
                        token = c.token if identity == "admin" else _grant(c, ns)
                        if identity == "admin":
                            c.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                        await _namespace_defaults(c.store, ns)
                        conn.send((c.store.revision, token))
                    elif cmd[0] == "write":
                        _, ns, n, interval = cmd
                        committed.clear()
                        for i in range(n):
                            c.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"e{i}", "namespace": ns}})
                            await asyncio.sleep(interval)
                        conn.send(dict(committed))

    asyncio.run(run())


def _bare_fanout_in_child(conn: Any) -> None:
    """Child process: the floor of watch delivery on this machine. A bare aiohttp handler
    over the same kind of TLS holds chunked streams open and writes each paced line, of
    the size of the emulator's ConfigMap event, to every stream at "commit" time, exactly
    as the emulator's watch sink does, with no store, routing or authorization."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(sctx)
        streams: list[asyncio.Transport] = []
        done = asyncio.Event()

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b"")
            assert request.transport is not None
            streams.append(request.transport)  # type: ignore[arg-type]
            await done.wait()
            return resp

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=sctx)
        await site.start()
        with tempfile.TemporaryDirectory() as d:
            ca_path = Path(d) / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_path))
            conn.send((f"https://127.0.0.1:{runner.addresses[0][1]}", str(ca_path)))
            rv = 1000
            try:
                while True:
                    cmd = await loop.run_in_executor(None, conn.recv)
                    if cmd[0] == "stop":
                        return
                    if cmd[0] == "namespace":
                        streams.clear()
                        conn.send((rv, ""))
                    elif cmd[0] == "watchers":
                        async with asyncio.timeout(60):
                            while len(streams) < cmd[2]:  # noqa: ASYNC110 - no event for new streams
                                await asyncio.sleep(0.005)
                        conn.send(rv)
                    elif cmd[0] == "write":
                        _, ns, n, interval = cmd
                        committed: dict[str, float] = {}
                        for i in range(n):
                            rv += 1
                            obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                                "name": f"e{i}", "namespace": ns, "uid": "7c1d3f7e-3b8e-4f5e-9a52-0c6f1e2b9d41",
                                "resourceVersion": str(rv), "creationTimestamp": "2026-01-01T00:00:00Z"}}
                            data = json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n"
                            committed[str(rv)] = time.perf_counter()
                            chunk = b"%x\r\n%b\r\n" % (len(data), data)
                            for t in streams:
                                if not t.is_closing():
                                    t.write(chunk)
                            await asyncio.sleep(interval)
                        conn.send(committed)
            finally:
                done.set()
                await runner.cleanup()

    asyncio.run(run())


async def _namespace_defaults(store: Any, ns: str) -> None:
    """Wait for the ConfigMap every new namespace gets (``kube-root-ca.crt``), so the
    watched writes start after it."""
    async with asyncio.timeout(10):
        while store.get("v1", "ConfigMap", "kube-root-ca.crt", ns) is None:  # noqa: ASYNC110 - a controller's timer, no event to await
            await asyncio.sleep(0.001)


class _Child:
    """A serving child process (the emulator or the bare fan-out) and its command pipe."""

    def __init__(self, target: Callable[[Any], None]) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child,), daemon=True)
        self.url = self.ca = ""

    async def ask(self, *cmd: Any) -> Any:
        """Send ``cmd`` (if any) and wait for the child's answer (callers bound the wait)."""
        loop = asyncio.get_running_loop()
        if cmd:
            self.conn.send(cmd)
        return await loop.run_in_executor(None, self.conn.recv)

    async def __aenter__(self) -> _Child:
        self.proc.start()
        async with asyncio.timeout(60):
            self.url, self.ca = await self.ask()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.proc.is_alive():
                self.conn.send(("stop",))
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()


async def _watch_latency_separate(
    child: _Child, *, ns: str, identity: str, watchers: int, events: int, interval: float
) -> dict[str, float]:
    """Watchers in this process, the server in ``child``: its own delivery latency."""
    async with asyncio.timeout(60):
        start_rv, token = await child.ask("namespace", ns, identity)
    received: list[tuple[bytes, float]] = []
    ctx = ssl.create_default_context(cafile=child.ca)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0)) as s:

        async def watcher() -> None:
            params = {"watch": "1", "resourceVersion": str(start_rv), "timeoutSeconds": "120"}
            async with s.get(f"{child.url}/api/v1/namespaces/{ns}/configmaps", params=params,
                             headers={"Authorization": f"Bearer {token}"} if token else {}) as r:
                assert r.status == 200, await r.text()
                got = 0
                async for line in r.content:
                    now = time.perf_counter()
                    if line.strip():
                        # parse after taking the time: only the rv is needed
                        received.append((line, now))
                        got += 1
                        if got >= events:
                            return

        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        try:
            async with asyncio.timeout(60):
                await child.ask("watchers", ns, watchers)
            async with asyncio.timeout(120):
                committed = await child.ask("write", ns, events, interval)
            async with asyncio.timeout(60):
                await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
    ms = [
        (now - committed[json.loads(line)["object"]["metadata"]["resourceVersion"]]) * 1000
        for line, now in received
    ]
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
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        async with Fleet(["master"], directory=d) as fleet:
            c = fleet["master"]
            ctx = ssl.create_default_context(cafile=str(c.ca_path))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0)) as s:
                c.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
                http = await _writes_http(s, c.url, c.token, total=args.writes, concurrency=args.concurrency, ns="bench")
                # the same as a ServiceAccount whose Role allows it: every request decided by RBAC
                sa_token = _grant(c, "bench-sa")
                http_sa = await _writes_http(s, c.url, sa_token, total=args.writes, concurrency=args.concurrency, ns="bench-sa")
                store = _writes_store(fleet, total=args.writes)
                w1 = await _watch_latency(fleet, s, watchers=1, events=args.events, interval=args.interval)
                w100 = await _watch_latency(fleet, s, watchers=100, events=args.events, interval=args.interval)
        ref = await _reference_round_trip(args.writes)
        watch: dict[str, Any] = {}
        async with _Child(_serve_in_child) as emu, _Child(_bare_fanout_in_child) as bare:
            # a first round in a fresh process is slower whoever watches (measured: the
            # first of admin or ServiceAccount rounds is the worst, in either order), so
            # each child serves one round that is not counted
            for child, identity in ((emu, "sa"), (bare, "")):
                await _watch_latency_separate(child, ns=f"w-warm-{identity or 'bare'}", identity=identity,
                                              watchers=100, events=args.events, interval=args.interval)
            # the three 100-watcher figures interleaved, so each meets the same load
            for rnd in range(args.rounds):
                for label, child, identity in (("rbac", emu, "sa"), ("admin", emu, "admin"), ("bare", bare, "")):
                    r = await _watch_latency_separate(child, ns=f"w-{label}-{rnd}", identity=identity, watchers=100,
                                                      events=args.events, interval=args.interval)
                    watch.setdefault(label, []).append(r)
            sep1 = await _watch_latency_separate(emu, ns="w-one", identity="sa", watchers=1,
                                                 events=args.events, interval=args.interval)
    load_after = os.getloadavg()

    def med(rs: list[dict[str, float]]) -> dict[str, Any]:
        return {"p50": statistics.median(r["p50"] for r in rs), "p99": statistics.median(r["p99"] for r in rs),
                "max": max(r["max"] for r in rs), "samples": sum(r["samples"] for r in rs),
                "p99_rounds": [r["p99"] for r in rs]}

    sa100, admin100, bare100 = med(watch["rbac"]), med(watch["admin"]), med(watch["bare"])
    return {
        "benchmark": "sim",
        "python": sys.version.split()[0],
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "writes": args.writes,
        "concurrency": args.concurrency,
        # as a ServiceAccount bound by a Role: the target figure
        "writes_per_s_http_serviceaccount_rbac": round(http_sa),
        # as kubernetes-admin (system:masters, no rule lookup)
        "writes_per_s_http_admin": round(http),
        "writes_per_s_store": round(store),
        # watchers in a separate process: the emulator's delivery latency (median of rounds)
        "watch_latency_ms": {"watchers_1_serviceaccount": sep1, "watchers_100_serviceaccount": sa100,
                             "watchers_100_admin": admin100},
        # watchers in the emulator's own process (they compete with it for the CPU)
        "watch_latency_ms_same_process": {"watchers_1_serviceaccount": w1, "watchers_100_serviceaccount": w100},
        "reference": {
            "bare_aiohttp_tls_requests_per_s": round(ref),
            # the same 100 streams fed by a bare aiohttp handler: the floor on this machine now
            "bare_fanout_watch_latency_ms_100": bare100,
        },
        "ratios": {
            "writes_serviceaccount_per_reference": round(http_sa / ref, 3),
            "writes_serviceaccount_per_admin": round(http_sa / http, 3),
            "watch_p99_100_serviceaccount_per_bare": round(sa100["p99"] / bare100["p99"], 2) if bare100["p99"] else None,
        },
        "targets": {"writes_per_s": 2000, "watch_p99_ms_100_watchers": 5},
        "meets_targets": http_sa >= 2000 and sa100["p99"] <= 5,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writes", type=int, default=4000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.005, help="seconds between watched writes")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the 100-watcher figures")
    result = asyncio.run(main(p.parse_args()))
    print(json.dumps(result))

