"""Inspection at scale: ``state``, ``replay``, ``explain`` and ``diff`` on a long event log.

Builds (once, in a temporary directory) an event log of ``--events`` events (default
1,000,000) as a fleet daemon writes it: a master and ``--remotes`` remotes, then gateway
changes, each followed by the writes of the mesh ConfigMap on every cluster, with a
projection snapshot every 1,000 events (the daemon's default). Then runs each command as
a user does (``federationd <command>`` in a child process) and prints one JSON object:
the seconds each took (target ≤ 2 s) and, as the reference measured in the same run, a
full replay (``replay --no-snapshot --hash``), which is what the commands cost before
they used the index and the snapshots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from events import types as ev  # noqa: E402
from events.log import EventLog  # noqa: E402
from events.types import ClusterName, Event  # noqa: E402
from federationd.projections.state import EMPTY, SNAPSHOT_NAME, encode_state, fold  # noqa: E402

NS = "istio-system"
CM = f"v1/ConfigMap/{NS}/istio"
SPEC = {"mtls": False, "includeIPRanges": "*", "excludeIPRanges": "", "autoInjectionNamespaces": ["default"]}


class _Rec:
    __slots__ = ("event", "seq")

    def __init__(self, seq: int, event: Event) -> None:
        self.seq = seq
        self.event = event


def _setup(remotes: list[str]) -> list[Event]:
    master = ClusterName("master")
    out: list[Event] = [
        ev.IstioSpecChanged(cluster=master, key=f"Istio/{NS}/istio", time=1.0, namespace=NS, name="istio",
                            uid="u", generation=1, spec=SPEC, creation_timestamp="2026-01-01T00:00:00Z"),
    ]
    for r in remotes:
        out += [
            ev.RemoteIstioSpecChanged(cluster=master, key=f"RemoteIstio/{NS}/{r}", time=1.0, namespace=NS, name=r,
                                      uid=r, generation=1, spec={"autoInjectionNamespaces": ["default"], "enabledServices": []}),
            ev.KubeconfigObserved(cluster=master, key=f"Secret/{NS}/{r}", time=1.0, remote=r, server="https://r", fingerprint="f"),
        ]
    return out


def _change(k: int, remotes: list[str]) -> list[Event]:
    r = remotes[k % len(remotes)]
    t = 10.0 + k
    out: list[Event] = [
        ev.GatewayAddressesObserved(cluster=ClusterName(r), key=f"Service/{NS}/istio-ingressgateway", time=t,
                                    namespace=NS, name="istio-ingressgateway", service_type="LoadBalancer",
                                    ips=(f"198.51.{k // 250 % 250}.{k % 250 + 1}",), ports={"tls": 15443}),
    ]
    for c in ["master", *remotes]:
        out.append(ev.ActuationApplied(cluster=ClusterName(c), key=CM, time=t + 0.1, verb="apply",
                                       content_hash=f"{k:064x}", latency=0.01))
    return out


async def build(path: Path, *, events: int, remotes: int) -> int:
    names = [f"remote-{i:03d}" for i in range(1, remotes + 1)]
    state = EMPTY
    seq = 0
    async with await EventLog.open(str(path)) as log:
        batch = _setup(names)
        k = 0
        next_snapshot = 1000
        while seq < events:
            while len(batch) < 5000 and seq + len(batch) < events:
                batch += _change(k, names)
                k += 1
            batch = batch[: events - seq]
            await log.append(batch)
            for e in batch:
                seq += 1
                state = fold(state, _Rec(seq, e))
                if seq >= next_snapshot:
                    await log.save_snapshot(SNAPSHOT_NAME, seq, encode_state(state))
                    next_snapshot += 1000
            batch = []
    return seq


def _time(*argv: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "federationd.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=600, check=False)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"federationd {' '.join(argv)}: exit {p.returncode}: {p.stderr[-500:]}")
    return took, p.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--remotes", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="inspect-bench-") as tmp:
        path = Path(tmp) / "log.db"
        t0 = time.perf_counter()
        head = asyncio.run(build(path, events=args.events, remotes=args.remotes))
        built = time.perf_counter() - t0
        log = str(path)
        results: dict[str, float] = {}
        # the floor of any command: starting Python and importing the CLI, one event read
        results["startup_reference_s"], _ = _time("events", "--log", log, "--from", str(head), "--until", str(head))
        results["state_s"], _ = _time("state", "--log", log)
        results["replay_hash_s"], _ = _time("replay", "--log", log, "--hash")
        results["explain_s"], out = _time("explain", "--log", log, "master", "ConfigMap/istio-system/istio")
        assert "content hash" in out, out[:500]
        results["diff_s"], _ = _time("diff", "--log", log, "--from", str(head - 500), "--to", str(head))
        results["reference_full_replay_s"], _ = _time("replay", "--log", log, "--hash", "--no-snapshot")
        print(json.dumps({
            "events": head, "remotes": args.remotes, "build_s": round(built, 1),
            **{k: round(v, 2) for k, v in results.items()},
            "target_s": 2.0, "load": os.getloadavg(),
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
