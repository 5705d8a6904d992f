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

from federationd.sim.fleet import ClusterSpec, Fleet


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="federationd sim", description="Serve a simulated fleet of Kubernetes API servers.")
    p.add_argument("--clusters", default="master,remote-eu,remote-us", help="comma-separated cluster names")
    p.add_argument("--dir", required=True, type=Path, help="directory for kubeconfigs and the CA")
    p.add_argument("--lb", default="", help="comma-separated name=ip|hostname load-balancer styles (default ip)")
    p.add_argument("--bookmark-interval", type=float, default=5.0)
    p.add_argument("--history", type=int, default=20_000, help="changes kept for watch resume")
    p.add_argument("--control-port", type=int, default=None, help="serve the fault-control API on this port (0: any)")
    return p


async def _serve(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.clusters.split(",") if n.strip()]
    styles = dict(x.split("=", 1) for x in args.lb.split(",") if "=" in x)
    specs = [ClusterSpec(name=n, lb=styles.get(n, "ip")) for n in names]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Fleet(specs, directory=args.dir, bookmark_interval=args.bookmark_interval, history=args.history) as fleet:
        for c in fleet:
            print(f"{c.name}: {c.url} kubeconfig={c.kubeconfig_path}", flush=True)
        print(f"merged kubeconfig: {fleet.merged_kubeconfig_path}", flush=True)
        runner = None
        if args.control_port is not None:
            from federationd.sim.control import start_control

            runner, port = await start_control(fleet, port=args.control_port)
            print(f"control: http://127.0.0.1:{port}", flush=True)
        print("serving; stop with Ctrl-C", flush=True)
        try:
            await stop.wait()
        finally:
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
        return asyncio.run(_serve(args))
    except OSError as e:
        print(f"federationd sim: {e}", file=sys.stderr)
        return 1
