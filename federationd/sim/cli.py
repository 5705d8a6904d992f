"""``federationd sim``: serve a simulated fleet until SIGINT/SIGTERM.

Writes one kubeconfig per cluster and a merged one (a context per cluster) into
``--dir``, prints where they are, and optionally serves a small fault-control HTTP API
on 127.0.0.1 (``--control-port``; see ``federationd.sim.control``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from federationd.cancellation import cancel_and_wait
from federationd.gcfreeze import freeze_loop
from federationd.sim import versions
from federationd.sim.fleet import ClusterSpec, Fleet
from federationd.sim.server import ApiServer


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="federationd sim", description="Serve a simulated fleet of Kubernetes API servers.")
    p.add_argument("--clusters", default="master,remote-eu,remote-us", help="comma-separated cluster names")
    p.add_argument("--dir", required=True, type=Path, help="directory for kubeconfigs and the CA")
    p.add_argument("--lb", default="", help="comma-separated name=ip|hostname load-balancer styles (default ip)")
    p.add_argument("--region", action="append", default=[], metavar="NAME=REGION",
                   help="a cluster's region, e.g. remote-us=us-east-1 (repeatable; default from the name)")
    p.add_argument("--zones", action="append", default=[], metavar="NAME=Z1,Z2",
                   help="a cluster's zones, e.g. remote-us=a,b (repeatable)")
    p.add_argument("--nodes", action="append", default=[], metavar="NAME=N",
                   help="a cluster's node count (repeatable; default 3)")
    p.add_argument("--kubernetes-version", action="append", default=[], metavar="[NAME=]1.MINOR",
                   help="the Kubernetes release a cluster is, e.g. remote-us=1.14; without NAME= the "
                        f"default for every cluster (repeatable; default {versions.FLEET_DEFAULT_VERSION}, "
                        f"supported 1.{versions.OLDEST_MINOR} to 1.{versions.newest_minor()})")
    p.add_argument("--identity", action="append", default=[], metavar="CLUSTER=NAMESPACE/SERVICEACCOUNT",
                   help="also write a kubeconfig that authenticates as this ServiceAccount (created if "
                        "missing, with no permissions: RBAC decides what it may do; repeatable)")
    p.add_argument("--bookmark-interval", type=float, default=ApiServer.BOOKMARK_INTERVAL,
                   help="seconds between a watch's BOOKMARK events (kube-apiserver: about a minute)")
    p.add_argument("--history", type=int, default=20_000, help="changes kept for watch resume")
    p.add_argument("--control-port", type=int, default=None, help="serve the fault-control API on this port (0: any)")
    return p


class UsageError(Exception):
    """A flag names a cluster that is not in --clusters, or has a malformed value."""


def _per_cluster(values: Sequence[str], *, flag: str, names: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not value:
            raise UsageError(f"{flag} {v!r}: expected NAME=VALUE")
        if name not in names:
            raise UsageError(f"{flag} {v!r}: no cluster {name!r} in --clusters ({', '.join(names)})")
        out[name] = value
    return out


def identities(args: argparse.Namespace, names: Sequence[str]) -> list[tuple[str, str, str]]:
    """``--identity CLUSTER=NAMESPACE/SERVICEACCOUNT`` flags as (cluster, namespace, name)."""
    out = []
    for item in args.identity:
        ((cluster, value),) = _per_cluster([item], flag="--identity", names=names).items()
        ns, sep, name = value.partition("/")
        if not sep or not ns or not name or "/" in name:
            raise UsageError(f"--identity {cluster}={value}: expected NAMESPACE/SERVICEACCOUNT")
        out.append((cluster, ns, name))
    return out


def cluster_specs(args: argparse.Namespace) -> list[ClusterSpec]:
    """The fleet described by the command line (raises ``UsageError``)."""
    names = [n.strip() for n in args.clusters.split(",") if n.strip()]
    if not names:
        raise UsageError("--clusters names no cluster")
    styles = _per_cluster([x for x in args.lb.split(",") if x], flag="--lb", names=names)
    for name, style in styles.items():
        if style not in ("ip", "hostname"):
            raise UsageError(f"--lb {name}={style}: expected ip or hostname")
    regions = _per_cluster(args.region, flag="--region", names=names)
    zones = _per_cluster(args.zones, flag="--zones", names=names)
    nodes = _per_cluster(args.nodes, flag="--nodes", names=names)
    default_version = versions.FLEET_DEFAULT_VERSION
    for v in [v for v in args.kubernetes_version if "=" not in v]:
        default_version = v
    releases = _per_cluster([v for v in args.kubernetes_version if "=" in v], flag="--kubernetes-version", names=names)
    for name in names:
        text = releases.get(name, default_version)
        try:
            releases[name] = versions.parse(text).git_version.lstrip("v")
        except versions.VersionError as e:
            raise UsageError(f"--kubernetes-version {text}: {e}") from None
    specs = []
    for n in names:
        count = nodes.get(n, "3")
        if not count.isdigit() or int(count) < 1:
            raise UsageError(f"--nodes {n}={count}: expected a whole number ≥ 1")
        specs.append(ClusterSpec(
            name=n, lb=styles.get(n, "ip"), region=regions.get(n, ""),
            zones=tuple(z for z in zones.get(n, "").split(",") if z), nodes=int(count),
            kubernetes_version=releases[n]))
    return specs


async def _serve(args: argparse.Namespace, specs: list[ClusterSpec], ids: list[tuple[str, str, str]]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Fleet(specs, directory=args.dir, bookmark_interval=args.bookmark_interval, history=args.history) as fleet:
        for c in fleet:
            where = f"{c.region} ({','.join(c.zones)})" if c.zones else c.region
            print(f"{c.name}: {c.url} region={where} kubernetes={c.server.kube_version.git_version} "
                  f"kubeconfig={c.kubeconfig_path}", flush=True)
        print(f"merged kubeconfig: {fleet.merged_kubeconfig_path}", flush=True)
        for cluster, ns, name in ids:
            path = fleet[cluster].write_identity_kubeconfig(ns, name)
            print(f"{cluster}: serviceaccount {ns}/{name} kubeconfig={path}", flush=True)
        runner = None
        if args.control_port is not None:
            from federationd.sim.control import start_control

            runner, port = await start_control(fleet, port=args.control_port)
            print(f"control: http://127.0.0.1:{port}", flush=True)
        print("serving; stop with Ctrl-C", flush=True)
        # the stores live as long as the fleet: keep the collector off them, as the
        # daemon does (a kube-apiserver's collector never stops it for 100 ms and more)
        freezer = asyncio.create_task(freeze_loop(), name="sim-gc-freeze")
        try:
            await stop.wait()
        finally:
            await cancel_and_wait(freezer)
            if runner is not None:
                await runner.cleanup()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
    print("stopped", flush=True)
    return 0


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv[1:]))
    try:
        specs = cluster_specs(args)
        ids = identities(args, [s.name for s in specs])
    except UsageError as e:
        print(f"federationd sim: {e}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args, specs, ids))
    except OSError as e:
        print(f"federationd sim: {e}", file=sys.stderr)
        return 1
