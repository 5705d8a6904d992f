"""A fleet of simulated clusters in one process: ``async with Fleet([...]) as fleet``.

Each cluster is its own HTTPS API server on 127.0.0.1 (an ephemeral port), with its own
store, registry, behaviours and faults, serving a certificate from one CA generated per
fleet; it speaks HTTP/2 or HTTP/1.1 as ALPN decides, as a real one does
(``federationd.sim.h2serve``). Kubeconfigs embed the CA and a bearer token (no file
references, so they can be put in a Secret as the source operator's users do); one file
per cluster with a context named like the cluster, and a merged file with a context per
cluster. Their token is ``kubernetes-admin`` in ``system:masters``;
``identity_kubeconfig`` gives one that authenticates as a ServiceAccount instead, so RBAC
decides what it may do.

Partitions close the listening socket and reset open connections, then listen again on
the same port, so clients see "connection refused" and then recover without new
kubeconfigs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

from events.types import ClusterName
from federationd.sim import versions
from federationd.sim.behaviours import Behaviours
from federationd.sim.faults import Faults
from federationd.sim.h2serve import AlpnSwitch, offer_h2
from federationd.sim.server import ApiServer, RequestCounters
from federationd.sim.store import Store
from federationd.sim.tlscert import ServingCert

_REGIONS = {"eu": "europe-west1", "us": "us-central1", "asia": "asia-east1", "ap": "asia-east1"}


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """How one simulated cluster looks to its clients."""

    name: str
    region: str = ""
    zones: tuple[str, ...] = ()
    #: "ip" (GCP-like) or "hostname" (AWS-like) load-balancer addresses
    lb: str = "ip"
    nodes: int = 3
    #: the Kubernetes release it is (``1.14``): /version, discovery, served versions, schemas
    kubernetes_version: str = versions.FLEET_DEFAULT_VERSION


def _default_region(name: str, index: int) -> str:
    for part in name.lower().replace("_", "-").split("-"):
        if part in _REGIONS:
            return _REGIONS[part]
    return f"region-{index}"


@dataclass(slots=True)
class Cluster:
    """One simulated cluster; see the module docstring of ``federationd.sim.fleet``."""

    name: ClusterName
    index: int
    region: str
    zones: tuple[str, ...]
    store: Store
    server: ApiServer
    faults: Faults
    behaviours: Behaviours
    token: str
    viewer_token: str
    ca_pem: bytes
    ca_path: Path
    kubeconfig_path: Path
    port: int = 0
    _sock_ssl: ssl.SSLContext | None = None
    _runner: web.AppRunner | None = None
    _serving: asyncio.Task[asyncio.AbstractServer] | None = None
    _gc_task: asyncio.Task[None] | None = None
    _gc_wake: asyncio.Event = field(default_factory=asyncio.Event)
    _heal_handle: asyncio.TimerHandle | None = None
    partitioned: bool = False
    #: seconds between a deletion and the background collection it triggers
    gc_delay: float = 0.05

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def requests(self) -> RequestCounters:
        return self.server.requests

    @property
    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [self._cluster_entry()],
            "users": [self._user_entry()],
            "contexts": [self._context_entry()],
            "current-context": self.name,
        }

    def kubeconfig_for(self, *, viewer: bool = False) -> dict[str, Any]:
        """A kubeconfig; with ``viewer`` its token is user ``viewer``, bound to the
        default ``view`` ClusterRole (reads, except Secrets; writes are 403)."""
        kc = self.kubeconfig
        if viewer:
            kc["users"][0]["user"]["token"] = self.viewer_token
        return kc

    def identity_kubeconfig(
        self, namespace: str, name: str, *, expiration_seconds: int = 365 * 24 * 3600
    ) -> dict[str, Any]:
        """A kubeconfig whose token (a bound ServiceAccount token, as ``kubectl create
        token`` issues) authenticates as ServiceAccount ``namespace/name``; the namespace
        and the ServiceAccount are created if missing (with no permissions of their own)."""
        store = self.store
        if store.get("v1", "Namespace", namespace) is None:
            store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        if store.get("v1", "ServiceAccount", name, namespace) is None:
            store.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}})
        token, _ = self.server.auth.issue(namespace, name, expiration_seconds=expiration_seconds)
        user = f"system:serviceaccount:{namespace}:{name}"
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [self._cluster_entry()],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": user, "namespace": namespace}}],
            "current-context": self.name,
        }

    def write_identity_kubeconfig(self, namespace: str, name: str, path: Path | None = None) -> Path:
        """``identity_kubeconfig`` written to ``path`` (default: next to the cluster's own)."""
        path = path or self.kubeconfig_path.with_name(f"{self.name}.{namespace}.{name}.kubeconfig")
        _write_private(path, yaml.safe_dump(self.identity_kubeconfig(namespace, name), sort_keys=False))
        return path

    def _cluster_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
            },
        }

    def _user_entry(self) -> dict[str, Any]:
        return {"name": f"{self.name}-admin", "user": {"token": self.token}}

    def _context_entry(self) -> dict[str, Any]:
        return {"name": self.name, "context": {"cluster": self.name, "user": f"{self.name}-admin"}}

    # ------------------------------------------------------------------ serving

    def _listen(self) -> None:
        """Listen on the cluster's port (the first time: any free port).

        The socket listens before this returns, so connections made right after a
        partition heals wait in the backlog instead of being refused.
        """
        assert self._runner is not None and self._sock_ssl is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(512)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        handlers = self._runner.server
        assert handlers is not None
        transports = self.server.transports

        def protocol() -> AlpnSwitch:
            # HTTP/2 or HTTP/1.1 by ALPN; HTTP/1.1 connections get aiohttp's own handler
            return AlpnSwitch(handlers, transports=transports, max_body=self.server.MAX_BODY)

        self._serving = loop.create_task(
            loop.create_server(protocol, sock=sock, ssl=self._sock_ssl),
            name=f"sim-listen-{self.name}",
        )

    async def _server(self) -> asyncio.AbstractServer | None:
        if self._serving is None:
            return None
        return await self._serving

    def _unlisten(self) -> None:
        task, self._serving = self._serving, None
        if task is None:
            return
        if task.done() and not task.cancelled() and task.exception() is None:
            task.result().close()
        else:
            task.add_done_callback(lambda t: t.cancelled() or t.exception() or t.result().close())

    def _partition(self, seconds: float) -> None:
        if self._heal_handle is not None:
            self._heal_handle.cancel()
        if not self.partitioned:
            self.partitioned = True
            self._unlisten()
            self.server.store.drop_watches()
            self.server.abort_connections()
        loop = asyncio.get_running_loop()
        self._heal_handle = loop.call_later(seconds, self._heal_now)

    def _heal_now(self) -> None:
        if self._heal_handle is not None:
            self._heal_handle.cancel()
            self._heal_handle = None
        if self.partitioned:
            self.partitioned = False
            self._listen()

    async def _gc_loop(self) -> None:
        while True:
            await self._gc_wake.wait()
            # like the real namespace and garbage collectors, act a moment later: a
            # client deleting a namespace and then its contents (kubectl delete -f)
            # finds them still there
            await asyncio.sleep(self.gc_delay)
            self._gc_wake.clear()
            # bounded passes: each pass has a work budget; yield between them
            for _ in range(100):
                if not self.store.collect_garbage():
                    break
                await asyncio.sleep(0)

    async def start(self) -> None:
        self.store.on_pending = self._gc_wake.set
        self._gc_task = asyncio.create_task(self._gc_loop(), name=f"sim-gc-{self.name}")
        # auto_decompress=False: kube-apiserver never undoes a request's Content-Encoding
        # (it only compresses responses), so a compressed body is read as it is, as over h2
        self._runner = web.AppRunner(
            self.server.app(), access_log=None, handle_signals=False, shutdown_timeout=0.1, auto_decompress=False
        )
        await self._runner.setup()
        self._listen()
        await self._server()

    async def stop(self) -> None:
        if self._heal_handle is not None:
            self._heal_handle.cancel()
        self.behaviours.close()
        server = await self._server()
        self._serving = None
        if server is not None:
            server.close()
        await self.server.close_watches()
        self.server.abort_connections()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._gc_task is not None:
            self._gc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc_task


class Fleet:
    """Many simulated clusters; an async context manager that starts and stops them."""

    def __init__(
        self,
        clusters: Sequence[str | ClusterSpec],
        *,
        directory: str | Path,
        bookmark_interval: float = ApiServer.BOOKMARK_INTERVAL,
        history: int = 20_000,
        lb_delay: float = 0.05,
        ready_delay: float = 0.05,
        gc_delay: float = 0.05,
        seed: int = 0,
    ) -> None:
        specs = [c if isinstance(c, ClusterSpec) else ClusterSpec(name=c) for c in clusters]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("cluster names must be unique")
        self.specs = specs
        self.directory = Path(directory)
        self.bookmark_interval = bookmark_interval
        self.history = history
        self.lb_delay = lb_delay
        self.ready_delay = ready_delay
        self.gc_delay = gc_delay
        self.seed = seed
        self._clusters: dict[str, Cluster] = {}
        self.ca_path = self.directory / "ca.pem"
        self.merged_kubeconfig_path = self.directory / "kubeconfig"

    def __getitem__(self, name: str) -> Cluster:
        return self._clusters[name]

    def __iter__(self) -> Iterator[Cluster]:
        return iter(self._clusters.values())

    def __len__(self) -> int:
        return len(self._clusters)

    @property
    def names(self) -> list[ClusterName]:
        return [c.name for c in self._clusters.values()]

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        cert = ServingCert(organization="federationd sim")
        ca_pem = cert.ca_pem
        self.ca_path.write_bytes(ca_pem)
        try:
            for i, spec in enumerate(self.specs):
                region = spec.region or _default_region(spec.name, i)
                zones = spec.zones or (f"{region}-a", f"{region}-b")
                release = versions.parse(spec.kubernetes_version)
                store = Store(versions.registry_for(release.name), history=self.history)
                token, viewer = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
                c = Cluster(
                    name=ClusterName(spec.name),
                    index=i,
                    region=region,
                    zones=tuple(zones),
                    store=store,
                    server=None,  # type: ignore[arg-type]
                    faults=None,  # type: ignore[arg-type]
                    behaviours=Behaviours(
                        store, index=i, region=region, zones=tuple(zones), lb=spec.lb,
                        lb_delay=self.lb_delay, ready_delay=self.ready_delay, nodes=spec.nodes,
                        kubelet_version=release.git_version,
                        ca_pem=ca_pem,
                    ),
                    token=token,
                    viewer_token=viewer,
                    ca_pem=ca_pem,
                    ca_path=self.ca_path,
                    kubeconfig_path=self.directory / f"{spec.name}.kubeconfig",
                    gc_delay=self.gc_delay,
                )
                c.faults = Faults(
                    seed=self.seed * 1000 + i,
                    drop_watches=store.drop_watches,
                    compact=store.compact,
                    partition=c._partition,
                    heal=c._heal_now,
                )
                c.server = ApiServer(
                    name=spec.name, store=store, tokens={token: "admin", viewer: "viewer"},
                    faults=c.faults, bookmark_interval=self.bookmark_interval,
                    kubernetes_version=release.git_version,
                )
                c.server.auth.ca_pem = ca_pem
                # the viewer token's user may read what the default "view" role allows
                store.create({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": "viewer"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "viewer"}],
                })
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                cert.configure(ctx)
                offer_h2(ctx)
                c._sock_ssl = ctx
                self._clusters[spec.name] = c
                await c.start()
                c.behaviours.set_api_endpoint("127.0.0.1", c.port)
                _write_private(c.kubeconfig_path, yaml.safe_dump(c.kubeconfig, sort_keys=False))
            self._write_merged()
        except BaseException:
            await self.stop()
            raise

    def _write_merged(self) -> None:
        cs = list(self._clusters.values())
        merged = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [c._cluster_entry() for c in cs],
            "users": [c._user_entry() for c in cs],
            "contexts": [c._context_entry() for c in cs],
            "current-context": cs[0].name if cs else "",
        }
        _write_private(self.merged_kubeconfig_path, yaml.safe_dump(merged, sort_keys=False))

    async def stop(self) -> None:
        for c in list(self._clusters.values()):
            await c.stop()


def _write_private(path: Path, text: str) -> None:
    # kubeconfigs hold tokens: readable by the owner only
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)
