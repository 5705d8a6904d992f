"""Fleet benchmark: the real daemon against a simulated fleet of N clusters.

For each size (``--sizes 10,50,100``: N clusters = the master and N-1 remotes, plus one
more remote kept aside) it prints one JSON object:

* ``join``: the N-1 kubeconfig Secrets and RemoteIstios created at once on the master →
  every RemoteIstio ``Available`` (``all_s``; the daemon's CPU seconds meanwhile,
  ``all_cpu_s``, which a loaded machine inflates far less than the wall clock, and the
  derivations it made, ``derivations``); then one more remote added to the
  converged fleet → ``Available`` (``one_s``), next to the emulator's own delays
  (``emulator_delays_s``: load balancer + workload readiness, what no daemon can beat);
* ``gateway_change_ms``: ``--changes`` times, a random remote's ``istio-ingressgateway``
  Service gets a new load-balancer address (its status written as the cloud does) →
  ``master`` when the master's ``istio`` ConfigMap carries it in ``meshNetworks``, and
  ``all`` when every object that must change has been written (the ConfigMap on every
  cluster; pilot reloads the gateways itself, so its Deployment does not change); p50/p99;
* ``cpu_s_per_change``: the daemon's CPU seconds (user + system, from /proc) over the
  changes, divided by their number;
* ``writes_per_change`` against ``changed_per_change``: mutating requests the daemon sent
  per change, and objects whose content (anything but a built-in object's status)
  changed on the clusters per change, the Events federationd created included;
* ``steady_mutating_requests``: mutating requests over ``2 * --resync-period + 1`` s of
  steady state (must be 0);
* ``rss_mb`` / ``peak_rss_mb``: the daemon's resident set after the changes, and its peak;
  ``rss_anon_mb`` / ``rss_file_mb``: its anonymous (heap) and file-backed parts;
  ``daemon_sockets``: its open sockets then (every watch of a cluster shares one HTTP/2
  connection; requests use pooled HTTP/1.1 connections that close when idle);
* ``memory_top`` (with ``--trace-memory``, which runs the daemon with
  ``PYTHONTRACEMALLOC=1`` and so slows it: a run for finding memory, not for timing): the
  daemon's ``/debug/memory`` after the changes, the largest allocation sites;
* ``emulator_gc_pause_max_ms``: the longest garbage collection of the emulator's process
  during the join of one more remote and the changes (its stores are frozen once the
  N-1 remotes joined and again between two changes, the floors' included, as a real API
  server has no stop-the-world collector to stall the daemon's requests), and ``emulator_full_gc_ms``, what one full collection of them
  took before that;
* ``floor_ms``: the floor measured in the same run — a minimal client process that
  watches the same remote Service over HTTPS and writes one ConfigMap on the master
  through the same emulator — and ``ratio_p99`` = gateway change p99 (master) / floor p99;
* ``floor_apply_ms``: the same, writing the ConfigMap federationd writes on the master —
  its whole ``istio`` ConfigMap, both documents, with the new address, server-side
  applied through federationd's HTTP/2 client (``floor_apply_client``) — and
  ``ratio_apply_p50`` / ``ratio_apply_p99``: the master's gateway change latency over it;
* ``floor_log_ms``: the apply floor with federationd's event log between the watch and
  the write (``floor_log_client``): each watch event is appended to an event log and
  committed, and the write is made when the log's tail reads it back. What the design's
  rule, a fact recorded before it is acted on, costs without the derivation, and
  ``ratio_log_p50`` / ``ratio_log_p99``: the master's gateway change latency over it;
* ``floor_same_ms``: the apply floor writing the very ConfigMap federationd writes — the
  master's ``istio`` ConfigMap itself, its labels, annotations and owner references as
  well as its data, applied as federationd's field manager once the daemon has stopped
  — the issue's "writes the same ConfigMap on the master"; the apply floor's object
  carries its data only, which leaves the API server's apply fewer fields to work
  through. ``ratio_same_p50`` / ``ratio_same_p99``: the master's latency over it;
* ``floor_fanout_ms``: the same client writing, all at once, a ConfigMap on every cluster
  with as many bytes as the master's ``meshNetworks`` (what a change costs any
  controller that must reach every cluster), and ``ratio_all_fanout_p99`` = gateway change
  p99 (every ConfigMap written) / that floor's p99;
* ``floor_fanout_apply_ms``: the fan-out with federationd's own write — the master's whole
  ``istio`` ConfigMap, server-side applied on every cluster at once through federationd's
  HTTP/2 client — and ``ratio_all_fanout_apply_p99``: what the emulator's API servers
  need for the writes a change is, without the log and the derivation.

The emulator runs in this process (its store's change feed timestamps every write); the
daemon and the floor client are child processes. Every wait has a deadline; every loop
is bounded in count.

Placement (``placement`` in the output): with two CPUs or more, the emulator (this
process) runs on the first CPU it may use, and the daemon and the floor clients, each in
turn, on the others; ``--no-pin`` leaves them wherever the scheduler puts them. On a
real fleet the API servers are other machines. Sharing a CPU with them, a process that
their write woke can wait for the scheduler's tick (4 ms at ``HZ=250``). Unpinned runs
on a 2-CPU machine showed stalls of that length, and whole runs whose changes were slow
in bulk; pinned runs did not (bench/RESULTS.md, 2026-12-07).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import random
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from federationd.render.objects import MANAGED_BY, MANAGED_BY_LABEL  # noqa: E402
from federationd.sim import Fleet  # noqa: E402
from federationd.sim.store import Change  # noqa: E402

if TYPE_CHECKING:
    from federationd.actuators.client import KubeClient

NS = "istio-system"
GROUP = "istio.banzaicloud.io/v1beta1"
GATEWAY = "istio-ingressgateway"
FLOOR_CM = "istio-floor"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Objects the emulator's controllers create from managed ones, copying their labels.
COPIES = {("", "pods"), ("", "endpoints"), ("apps", "replicasets")}


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def _until(cond: Callable[[], bool], *, timeout: float, what: str, every: float = 0.02) -> float:  # noqa: ASYNC109 - a deadline for a polled condition
    """Wait for ``cond`` (polled); the time it became true."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)
    return time.monotonic()


def _against(name: str, floor: list[float], master: list[float]) -> dict[str, Any]:
    """A floor of the master's ConfigMap (``floor_<name>_ms``, p50 / p99) and the
    master's gateway change latency over it (``ratio_<name>_p50`` / ``_p99``)."""
    return {
        f"floor_{name}_ms": {"p50": round(_pct(floor, 50), 2), "p99": round(_pct(floor, 99), 2)},
        f"ratio_{name}_p50": round(_pct(master, 50) / _pct(floor, 50), 2),
        f"ratio_{name}_p99": round(_pct(master, 99) / _pct(floor, 99), 2),
    }


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss_mb(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (peak), and of the resident set the anonymous part (the heap) and the
    file-backed part (mapped files: the event log's read mapping is page cache)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) / 1024
    return out


def _sockets(pid: int) -> int:
    """The daemon's open sockets (its connections to the clusters, and its listeners)."""
    n = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            n += os.readlink(fd).startswith("socket:")
    return n


def _status(fleet: Fleet, kind: str, name: str) -> str:
    cr = fleet["master"].store.get(GROUP, kind, name, NS) or {}
    return str((cr.get("status") or {}).get("Status") or "")


def _mutating(fleet: Fleet) -> int:
    return sum(c.requests.mutating() for c in fleet)


def _writes_by_resource(fleet: Fleet) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in fleet:
        for (verb, resource), n in c.requests.counts.items():
            if verb in ("create", "update", "patch", "delete", "deletecollection", "apply"):
                out[f"{verb} {resource}"] = out.get(f"{verb} {resource}", 0) + n
    return out


def _content(o: dict[str, Any] | None, *, with_status: bool) -> Any:
    if o is None:
        return None
    meta = {k: v for k, v in (o.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields", "generation")}
    body = {k: v for k, v in o.items() if k != "metadata" and (with_status or k != "status")}
    return meta, body


class ChangeFeed:
    """Store listeners on every cluster: what changed, when."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.content_changes = 0
        self.watch_ip = ""
        self.acks: dict[str, float] = {}
        self.floor_ip = ""
        self.floor_name = FLOOR_CM
        self.floor_acks: dict[str, float] = {}
        self._listeners: list[tuple[Any, Callable[[Change], None]]] = []
        for c in fleet:
            fn = self._listener(c.name)
            c.store.listeners.append(fn)
            self._listeners.append((c.store, fn))

    def _listener(self, cluster: str) -> Callable[[Change], None]:
        def on_change(ch: Change) -> None:
            crs = ch.resource[0] == "istio.banzaicloud.io"
            labels = (ch.obj.get("metadata") or {}).get("labels") or {}
            # what federationd writes: its managed objects (not those other controllers
            # create from them, copying the labels) and the CRs' status
            ours = crs or (labels.get(MANAGED_BY_LABEL) == MANAGED_BY and ch.resource not in COPIES)
            ours = ours or (ch.resource == ("", "events") and (ch.obj.get("source") or {}).get("component") == "federationd")
            if ours and ch.type != "DELETED" and _content(ch.obj, with_status=crs) != _content(ch.prev, with_status=crs):
                self.content_changes += 1
            if ch.resource == ("", "configmaps") and ch.namespace == NS:
                data = (ch.obj.get("data") or {}).get("meshNetworks") or ""
                if ch.name == "istio" and self.watch_ip and f"address: {self.watch_ip}" in data:
                    self.acks.setdefault(cluster, time.monotonic())
                if ch.name == self.floor_name and self.floor_ip and self.floor_ip in data:
                    self.floor_acks.setdefault(cluster, time.monotonic())

        return on_change

    def close(self) -> None:
        for store, fn in self._listeners:
            with contextlib.suppress(ValueError):
                store.listeners.remove(fn)


class _GcPauses:
    """The longest garbage collection of this process (the emulator's) while open."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self.longest = max(self.longest, time.perf_counter() - self._started)

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on)


def _install(fleet: Fleet) -> None:
    store = fleet["master"].store
    for path in sorted((ROOT / "deploy" / "crds").glob("*.yaml")):
        store.create(yaml.safe_load(path.read_text()))
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    istio = yaml.safe_load((ROOT / "deploy" / "samples" / "istio_v1beta1_istio.yaml").read_text())
    istio["metadata"]["namespace"] = NS
    istio["spec"]["meshExpansion"] = True  # gateway federation (seed 001): the mode with meshNetworks
    store.create(istio)


def _join(fleet: Fleet, remote: str) -> None:
    """Seed 001 on the master: the kubeconfig Secret and the RemoteIstio named alike."""
    store = fleet["master"].store
    raw = fleet[remote].kubeconfig_path.read_bytes()
    store.create({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": remote, "namespace": NS},
        "data": {remote: base64.b64encode(raw).decode()},
    })
    store.create({
        "apiVersion": GROUP, "kind": "RemoteIstio", "metadata": {"name": remote, "namespace": NS},
        "spec": {"autoInjectionNamespaces": ["default"], "enabledServices": [{"name": "istio-pilot"}]},
    })


#: (the emulator's CPUs, the clients' CPUs) once ``_place`` pinned them; None: not pinned
_PLACEMENT: tuple[frozenset[int], frozenset[int]] | None = None


def _place(pin: bool) -> dict[str, Any]:
    """Pin this process (the emulator) to the first CPU it may use and keep the others
    for the clients (``_as_client``): see the module's docstring. Called before any
    thread exists, so that every thread of this process stays on the emulator's CPU."""
    global _PLACEMENT
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2:
        _PLACEMENT = None
        return {"pinned": False, "cpus": len(cpus) or os.cpu_count()}
    emulator, clients = frozenset(cpus[:1]), frozenset(cpus[1:])
    os.sched_setaffinity(0, emulator)
    _PLACEMENT = (emulator, clients)
    return {"pinned": True, "emulator_cpus": sorted(emulator), "client_cpus": sorted(clients)}


def _as_client(pid: int) -> None:
    """Put a just-started client (the daemon, a floor client) on the clients' CPUs; the
    threads it starts later inherit them."""
    if _PLACEMENT is not None:
        os.sched_setaffinity(pid, _PLACEMENT[1])


class Daemon:
    def __init__(self, *, kubeconfig: Path, log: Path, resync: float, trace_memory: bool = False,
                 http2: bool = True) -> None:
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"PYTHONTRACEMALLOC": "1"} if trace_memory else {})}
        self.args = [
            sys.executable, "-m", "federationd.cli", "run", "--kubeconfig", str(kubeconfig),
            "--log", str(log), "--http-port", "0", "--namespace", NS, "--cluster-name", "master",
            "--resync-period", str(resync), "--log-level", "WARNING",
            "--http2" if http2 else "--no-http2",
        ]
        self.stderr_path = log.with_suffix(".stderr")
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        with self.stderr_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, stdout=asyncio.subprocess.PIPE, stderr=err,
                env=self.env, cwd=ROOT,
            )
        _as_client(self.proc.pid)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError(f"daemon exited: {self.stderr_path.read_text()[-2000:]}")
        self.url = line.decode().strip().rsplit(" ", 1)[-1]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def converged(self, session: aiohttp.ClientSession) -> bool:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with session.get(self.url + "/debug/converged", timeout=aiohttp.ClientTimeout(total=10)) as r:
                d = await r.json()
                return bool(d["leader"] and d["status"] and d.get("derived", True) and all(d["clusters"].values()))
        return False

    async def derived(self, session: aiohttp.ClientSession) -> list[int]:
        """The log seqs the daemon derived at, in order (its ``/debug/desired`` history)."""
        async with session.get(self.url + "/debug/desired", timeout=aiohttp.ClientTimeout(total=60)) as r:
            return [seq for seq, _ in (await r.json())["history"]]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _converged(d: Daemon, session: aiohttp.ClientSession, *, timeout: float) -> None:  # noqa: ASYNC109 - a deadline for a polled condition
    deadline = time.monotonic() + timeout
    while not await d.converged(session):
        if time.monotonic() > deadline:
            raise TimeoutError("daemon not converged")
        await asyncio.sleep(0.1)


def _freeze_emulator() -> None:
    """Between two changes (never inside one): what the emulator's stores gained is moved
    out of its collector's sight, as after the join, so that a change's writes do not
    wait on a full collection of the objects the changes before it wrote."""
    gc.collect(1)
    gc.freeze()


async def _quiet(fleet: Fleet, *, quiet_for: float = 0.5, timeout: float = 20.0) -> None:  # noqa: ASYNC109 - a deadline for a polled condition
    """No mutating request for ``quiet_for`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = _mutating(fleet), time.monotonic()
    while time.monotonic() - since < quiet_for and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = _mutating(fleet)
        if now != last:
            last, since = now, time.monotonic()


# --- the floor ---------------------------------------------------------------------------------


async def floor_client(remote_kc: Path, targets: list[Path], *, pad: bool = False) -> None:
    """Watch the remote's ingress gateway Service; write its address into one ConfigMap on
    each target cluster (all at once). What any controller doing this job must at least
    do. ``pad``: each write carries as many bytes as the master's ``istio`` ConfigMap's
    meshNetworks (the fan-out floor writes what federationd writes, not a few bytes)."""

    outs = [_conn(t) for t in targets]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        filler = ""
        if pad:
            m_url, m_auth, m_ssl = outs[0]
            async with s.get(f"{m_url}/api/v1/namespaces/{NS}/configmaps/istio", headers=m_auth, ssl=m_ssl) as r:
                filler = ((await r.json()).get("data") or {}).get("meshNetworks") or ""

        async def write(url: str, auth: dict[str, str], ctx: ssl.SSLContext, text: str, create: bool = False) -> None:
            cm = f"{url}/api/v1/namespaces/{NS}/configmaps"
            if create:
                async with s.post(cm, json={"metadata": {"name": FLOOR_CM}, "data": {"meshNetworks": ""}}, headers=auth, ssl=ctx) as r:
                    await r.read()
                return
            async with s.patch(
                f"{cm}/{FLOOR_CM}", data=json.dumps({"data": {"meshNetworks": text}}),
                headers={**auth, "Content-Type": "application/merge-patch+json"}, ssl=ctx,
            ) as r:
                await r.read()

        await asyncio.gather(*(write(u, a, c, "", create=True) for u, a, c in outs))
        async for text in _gateway_addresses(s, remote_kc):
            await asyncio.gather(*(write(u, a, c, text + filler) for u, a, c in outs))


async def floor_apply_client(remote_kc: Path, targets: list[Path], *, same: bool = False) -> None:
    """The fan-out floor with federationd's own write: the master's ``istio`` ConfigMap as
    it is (both its documents), with the new address, server-side applied on every target
    at once through federationd's HTTP/2 client (``KubeClient.apply``), as the converger
    sends it. What the write itself costs the API servers, without the log and the
    derivation. ``same`` (one target, the master): the very object federationd wrote,
    as its field manager (``_federationds_write``)."""
    from federationd.actuators.client import FIELD_MANAGER, KubeClient
    from federationd.clusters.connection import connect

    manager = FIELD_MANAGER if same else "floor"
    clients = [KubeClient(await connect(t.read_text(), name=t.stem), field_manager=manager) for t in targets]
    try:
        write = await _federationds_write(clients[0], same=same)
        await asyncio.gather(*(write(kc, "") for kc in clients))
        async with aiohttp.ClientSession() as s:
            async for text in _gateway_addresses(s, remote_kc):
                await asyncio.gather(*(write(kc, text) for kc in clients))
    finally:
        for kc in clients:
            await kc.cluster.close()


async def _federationds_write(master: KubeClient, *, same: bool = False) -> Callable[[KubeClient, str], Awaitable[None]]:
    """What the apply floors write: the master's ``istio`` ConfigMap as it is now (both
    its documents), with some addresses before its ``meshNetworks``, server-side applied
    as ``FLOOR_CM`` on a cluster through federationd's HTTP/2 client. ``same``: the
    ``istio`` ConfigMap itself, as federationd applies it (its labels, annotations and
    owner references too: the fields the API server's apply works through), once the
    daemon has stopped."""
    cm = await master.get("v1", "ConfigMap", NS, "istio")
    data = dict(cm.get("data") or {})
    networks = data.get("meshNetworks") or ""
    meta: dict[str, Any] = {"name": FLOOR_CM, "namespace": NS}
    if same:
        stored = cm.get("metadata") or {}
        meta = {k: stored[k] for k in ("name", "namespace", "labels", "annotations", "ownerReferences") if k in stored}

    async def write(kc: KubeClient, text: str) -> None:
        await kc.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                        "data": {**data, "meshNetworks": text + networks}})

    return write


async def floor_log_client(remote_kc: Path, target: Path, log_path: Path) -> None:
    """The apply floor with the event log in its path, as federationd's design has it: a
    watch event is recorded in an event log first (``events.log.EventLog``, committed as
    the daemon commits its facts), and the write is made by the log's tail when it reads
    the event back, not by the watch. What recording a fact before acting on it costs,
    without the derivation, the converger or the daemon's HTTP/2 watch."""
    from events.log import EventLog
    from events.types import ClusterName, GatewayAddressesObserved
    from federationd.actuators.client import KubeClient
    from federationd.clusters.connection import connect

    kc = KubeClient(await connect(await asyncio.to_thread(target.read_text), name=target.stem), field_manager="floor")
    log = await EventLog.open(log_path)
    try:
        write = await _federationds_write(kc)

        async def act() -> None:
            async for record in log.tail(await log.head() + 1):
                assert isinstance(record.event, GatewayAddressesObserved)
                await write(kc, _addresses(record.event.ips))

        await write(kc, "")
        actor = asyncio.create_task(act())
        try:
            async with aiohttp.ClientSession() as s:
                async for ips in _gateway_ips(s, remote_kc):
                    await log.append(GatewayAddressesObserved(
                        cluster=ClusterName(remote_kc.stem), key=f"Service/{NS}/{GATEWAY}", time=time.time(),
                        namespace=NS, name=GATEWAY, service_type="LoadBalancer", ips=ips))
        finally:
            actor.cancel()
    finally:
        await log.close()
        await kc.cluster.close()


async def _gateway_ips(s: aiohttp.ClientSession, remote_kc: Path) -> AsyncIterator[tuple[str, ...]]:
    """The remote's ingress gateway addresses, from its watch: now, then after each
    change (a floor client's input)."""
    url, auth, ctx = _conn(remote_kc)
    svc = f"{url}/api/v1/namespaces/{NS}/services?watch=true&fieldSelector=metadata.name%3D{GATEWAY}"
    print("watching", flush=True)
    async with s.get(svc, headers=auth, ssl=ctx, timeout=aiohttp.ClientTimeout(total=None)) as w:
        async for line in w.content:
            ev = json.loads(line)
            ing = ((ev["object"].get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            yield tuple(i.get("ip", "") for i in ing)


def _addresses(ips: tuple[str, ...]) -> str:
    """The addresses as ``address: <ip>`` lines (what the floors write)."""
    return "".join(f"address: {ip}\n" for ip in ips)


async def _gateway_addresses(s: aiohttp.ClientSession, remote_kc: Path) -> AsyncIterator[str]:
    """``_gateway_ips`` as ``address: <ip>`` lines."""
    async for ips in _gateway_ips(s, remote_kc):
        yield _addresses(ips)


def _conn(path: Path) -> tuple[str, dict[str, str], ssl.SSLContext]:
    """A kubeconfig's server, bearer header and TLS context (the floor clients' own)."""
    kc = yaml.safe_load(path.read_text())
    cl = kc["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(cadata=base64.b64decode(cl["certificate-authority-data"]).decode())
    return cl["server"], {"Authorization": f"Bearer {kc['users'][0]['user']['token']}"}, ctx


async def _floor(fleet: Fleet, feed: ChangeFeed, remote: str, targets: list[str], *, changes: int, pad: bool = False,
                 apply: bool = False, log: Path | None = None, same: bool = False) -> list[float]:
    """Latencies (ms) of the floor client: the remote's gateway moves → every target's
    ConfigMap carries the address. ``log``: the log floor's event log (one target);
    ``same``: the apply floor writing federationd's own ``istio`` ConfigMap (the master)."""
    feed.floor_name = "istio" if same else FLOOR_CM
    if log is not None:
        mode, args, second = "--floor-client-log", [str(log)], 4
    elif same:
        mode, args, second = "--floor-client-same", [], 5
    else:
        mode = "--floor-client-apply" if apply else "--floor-client" + ("-pad" if pad else "")
        args, second = [], (3 if len(targets) == 1 else 2) if apply else 1 if pad else 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, mode, *args, str(fleet[remote].kubeconfig_path),
        *(str(fleet[t].kubeconfig_path) for t in targets),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    _as_client(proc.pid)
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 60)
        b = fleet[remote].behaviours
        out = []
        for k in range(changes + 1):
            ip = f"203.{second}.{k // 250}.{k % 250 + 1}"
            feed.floor_ip = ip
            feed.floor_acks = {}
            t0 = time.monotonic()
            b.set_load_balancer(NS, GATEWAY, [{"ip": ip}])
            await _until(lambda: len(feed.floor_acks) >= len(targets), timeout=60, what="floor writes", every=0.001)
            if k:  # the first one warms the client's connections up
                out.append((max(feed.floor_acks.values()) - t0) * 1000)
            _freeze_emulator()
        return out
    finally:
        proc.terminate()
        await proc.wait()


# --- one size ----------------------------------------------------------------------------------


async def run_size(
    n: int, *, changes: int, resync: float, seed: int, keep: bool = False, trace_memory: bool = False,
    http2: bool = True,
) -> dict[str, Any]:
    remotes = [f"remote-{i:03d}" for i in range(1, n + 1)]  # the last one joins later
    tmp = tempfile.mkdtemp(prefix="fleet-bench-")
    try:
        return await _run_size(
            tmp, n, remotes, changes=changes, resync=resync, seed=seed, keep=keep, trace_memory=trace_memory,
            http2=http2,
        )
    finally:
        gc.unfreeze()  # what the next size's collector may look at again
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


async def _run_size(
    tmp: str, n: int, remotes: list[str], *, changes: int, resync: float, seed: int, keep: bool,
    trace_memory: bool = False, http2: bool = True,
) -> dict[str, Any]:
    if True:
        async with Fleet(["master", *remotes], directory=Path(tmp) / "fleet") as fleet, aiohttp.ClientSession() as session:
            _install(fleet)
            feed = ChangeFeed(fleet)
            d = Daemon(kubeconfig=fleet["master"].kubeconfig_path, log=Path(tmp) / "log.db", resync=resync,
                       trace_memory=trace_memory, http2=http2)
            try:
                await d.start()
                await _until(lambda: _status(fleet, "Istio", "istio") == "Available", timeout=120, what="Istio Available", every=0.05)
                await _converged(d, session, timeout=120)

                derived0 = len(await d.derived(session))
                t0, cpu_join = time.monotonic(), _cpu_s(d.pid)
                for r in remotes[:-1]:
                    _join(fleet, r)
                t_all = await _until(
                    lambda: all(_status(fleet, "RemoteIstio", r) == "Available" for r in remotes[:-1]),
                    timeout=2400, what="all remotes Available", every=0.05,
                )
                join_all = t_all - t0
                cpu_join = _cpu_s(d.pid) - cpu_join
                derived = await d.derived(session)
                if keep:
                    (Path(tmp) / "derived.json").write_text(json.dumps(derived))
                derivations_join = len(derived) - derived0
                await _converged(d, session, timeout=300)
                await _quiet(fleet)
                # The emulator's stores hold every cluster's objects: freeze them, so that a
                # full collection of this process (a pause of the emulator, which a real
                # API server's concurrent collector does not have) does not land in the
                # measured join of one more remote or in a change; the pauses left are reported
                t_gc = time.perf_counter()
                gc.collect()
                full_gc = time.perf_counter() - t_gc
                gc.freeze()
                pauses = _GcPauses()
                print(f"[{n} clusters] {n - 1} joined at once in {join_all:.1f} s; one more joins", file=sys.stderr, flush=True)
                t0 = time.monotonic()
                _join(fleet, remotes[-1])
                join_one = await _until(lambda: _status(fleet, "RemoteIstio", remotes[-1]) == "Available", timeout=300, what="one remote Available", every=0.005) - t0
                print(f"[{n} clusters] join: {n - 1} at once {join_all:.1f} s, one more {join_one:.2f} s", file=sys.stderr, flush=True)
                await _converged(d, session, timeout=300)
                await _quiet(fleet)

                rng = random.Random(seed)
                lat_master: list[float] = []
                lat_all: list[float] = []
                writes, changed = 0, 0
                expected = len(fleet)  # the ConfigMap on every cluster
                cpu0 = _cpu_s(d.pid)
                by0 = _writes_by_resource(fleet)
                for k in range(changes):
                    remote = rng.choice(remotes)
                    ip = f"198.51.{k // 250}.{k % 250 + 1}"
                    feed.acks.clear()
                    feed.watch_ip = ip
                    w0, c0 = _mutating(fleet), feed.content_changes
                    t0 = time.monotonic()
                    fleet[remote].behaviours.set_load_balancer(NS, GATEWAY, [{"ip": ip}])
                    await _until(lambda: len(feed.acks) >= expected, timeout=60, what=f"change {k} acknowledged", every=0.002)
                    lat_master.append((feed.acks["master"] - t0) * 1000)
                    lat_all.append((max(feed.acks.values()) - t0) * 1000)
                    print(f"[{n} clusters] change {k}: master {lat_master[-1]:.0f} ms, all {lat_all[-1]:.0f} ms", file=sys.stderr, flush=True)
                    await _quiet(fleet, quiet_for=0.3)
                    _freeze_emulator()
                    writes += _mutating(fleet) - w0
                    changed += feed.content_changes - c0  # the bench's own write is a Service's status: not counted
                cpu = _cpu_s(d.pid) - cpu0
                pauses.close()
                by1 = _writes_by_resource(fleet)
                by = {k: round((v - by0.get(k, 0)) / changes, 2) for k, v in sorted(by1.items()) if v != by0.get(k, 0)}
                feed.watch_ip = ""
                await _converged(d, session, timeout=300)
                await _quiet(fleet)
                m0 = _mutating(fleet)
                await asyncio.sleep(2 * resync + 1)  # the steady-state window being measured
                steady = _mutating(fleet) - m0
                rss = _rss_mb(d.pid)
                sockets = _sockets(d.pid)
                memory: dict[str, Any] = {}
                if trace_memory:
                    async with session.get(d.url + "/debug/memory", timeout=aiohttp.ClientTimeout(total=120)) as resp:
                        top = await resp.json()
                    memory = {"memory_top": {"traced_mb": round(top["traced_bytes"] / 1e6, 1),
                                             "by_line": top["by_line"][:20], "by_file": top["by_file"][:15]}}
            finally:
                await d.stop()
            floor = await _floor(fleet, feed, remotes[0], ["master"], changes=changes)
            # the same ConfigMap as federationd's on the master (its whole data, applied)
            floor_apply = await _floor(fleet, feed, remotes[0], ["master"], changes=changes, apply=True)
            # the same, with the event log between the watch and the write (federationd's design)
            floor_log = await _floor(fleet, feed, remotes[0], ["master"], changes=changes, log=Path(tmp) / "floor.db")
            # the apply floor writing the very ConfigMap federationd wrote, as federationd
            floor_same = await _floor(fleet, feed, remotes[0], ["master"], changes=changes, same=True)
            # the same, to the ConfigMap on every cluster with as many bytes as federationd's
            fanout = await _floor(fleet, feed, remotes[0], [c.name for c in fleet], changes=changes, pad=True)
            # the same with federationd's own write (server-side apply over HTTP/2)
            fanout_apply = await _floor(fleet, feed, remotes[0], [c.name for c in fleet], changes=changes, apply=True)
            feed.close()
            behaviours = fleet["master"].behaviours
            return {
                "clusters": n,
                "http": "2" if http2 else "1.1",
                "remotes": n,
                "join": {
                    "all_s": round(join_all, 2),
                    "all_cpu_s": round(cpu_join, 2),
                    "derivations": derivations_join,
                    "remotes_at_once": n - 1,
                    "one_s": round(join_one, 3),
                    "emulator_delays_s": round(behaviours.lb_delay + behaviours.ready_delay, 3),
                },
                "gateway_change_ms": {
                    "changes": changes,
                    "master_p50": round(_pct(lat_master, 50), 1),
                    "master_p99": round(_pct(lat_master, 99), 1),
                    "all_p50": round(_pct(lat_all, 50), 1),
                    "all_p99": round(_pct(lat_all, 99), 1),
                },
                "emulator_gc_pause_max_ms": round(pauses.longest * 1000, 1),
                "emulator_full_gc_ms": round(full_gc * 1000, 1),
                "cpu_s_per_change": round(cpu / changes, 4),
                "writes_per_change": round(writes / changes, 2),
                "changed_per_change": round(changed / changes, 2),
                "writes_per_change_by_resource": by,
                "steady_mutating_requests": steady,
                "steady_window_s": 2 * resync + 1,
                "rss_mb": round(rss["VmRSS"], 1),
                "peak_rss_mb": round(rss["VmHWM"], 1),
                "rss_anon_mb": round(rss["RssAnon"], 1),
                "rss_file_mb": round(rss["RssFile"], 1),
                "daemon_sockets": sockets,
                "floor_ms": {"p50": round(_pct(floor, 50), 2), "p99": round(_pct(floor, 99), 2)},
                "ratio_p99": round(_pct(lat_master, 99) / _pct(floor, 99), 2),
                "ratio_all_p99": round(_pct(lat_all, 99) / _pct(floor, 99), 2),
                **_against("apply", floor_apply, lat_master),
                **_against("log", floor_log, lat_master),
                **_against("same", floor_same, lat_master),
                "floor_fanout_ms": {"p50": round(_pct(fanout, 50), 1), "p99": round(_pct(fanout, 99), 1)},
                "ratio_all_fanout_p99": round(_pct(lat_all, 99) / _pct(fanout, 99), 2),
                "floor_fanout_apply_ms": {"p50": round(_pct(fanout_apply, 50), 1), "p99": round(_pct(fanout_apply, 99), 1)},
                "ratio_all_fanout_apply_p99": round(_pct(lat_all, 99) / _pct(fanout_apply, 99), 2),
                "load": os.getloadavg(),
                **memory,
                **({"workdir": tmp} if keep else {}),
            }


async def main(args: argparse.Namespace, placement: dict[str, Any]) -> int:
    # SIGTERM/SIGINT cancel the run, so the daemon child is stopped and the directory
    # removed on the way out (a killed benchmark must not leave a daemon behind)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    for n in [int(x) for x in args.sizes.split(",") if x]:
        result = await run_size(n, changes=args.changes, resync=args.resync_period, seed=args.seed, keep=args.keep,
                                trace_memory=args.trace_memory, http2=not args.http1)
        print(json.dumps({**result, "placement": placement}), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--floor-client-log":
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            asyncio.run(floor_log_client(Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[2])))
        sys.exit(0)
    if len(sys.argv) >= 4 and sys.argv[1] in ("--floor-client", "--floor-client-pad", "--floor-client-apply", "--floor-client-same"):
        remote_kc, target_kcs = Path(sys.argv[2]), [Path(a) for a in sys.argv[3:]]
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            if sys.argv[1] in ("--floor-client-apply", "--floor-client-same"):
                asyncio.run(floor_apply_client(remote_kc, target_kcs, same=sys.argv[1] == "--floor-client-same"))
            else:
                asyncio.run(floor_client(remote_kc, target_kcs, pad=sys.argv[1].endswith("-pad")))
        sys.exit(0)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,50,100", help="comma-separated fleet sizes (clusters)")
    p.add_argument("--changes", type=int, default=50, help="gateway changes per size (≥ 50 for the p99)")
    p.add_argument("--resync-period", type=float, default=5.0, help="the daemon's resync period (s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the working directory (event log, daemon stderr)")
    p.add_argument("--trace-memory", action="store_true",
                   help="run the daemon with PYTHONTRACEMALLOC=1 and report its largest allocation sites (slows it)")
    p.add_argument("--http1", action="store_true",
                   help="run the daemon with --no-http2 (HTTP/1.1: a connection per watch)")
    p.add_argument("--no-pin", action="store_true",
                   help="leave the emulator, the daemon and the floor clients wherever the scheduler puts them")
    parsed = p.parse_args()
    placement = _place(not parsed.no_pin)
    sys.exit(asyncio.run(main(parsed, placement)))
