"""Throughput of the event log against its limit and a peer, measured in one run.

Workloads, on realistic events (a mix of gateway, node, workload, pod-address, actuation
and occasional spec events, a few hundred bytes each):

* ``append_batched``: ``append([...1,000 events])`` repeatedly, one transaction each;
* ``append_concurrent``: 100 tasks each appending one event at a time (group commit);
* ``replay``: read + decode + fold every event (``events.replay.replay``).

References, same file system, same pragmas (WAL, ``synchronous`` as chosen):

* **limit**: plain ``sqlite3`` ``executemany`` of pre-encoded rows into the same schema,
  1,000 rows per transaction (replay: a plain cursor + the same decode and fold);
* **peer**: the ``eventsourcing`` library's ``SQLiteApplicationRecorder`` (its own
  schema and transactions; our msgpack payloads as the stored state, encoded inside the
  timed region as ours are). Its one-by-one appends run from 10 threads (its connection
  pool's size), one transaction per event, because it has no group commit.

Each workload runs ``--rounds`` times on fresh files and the median is reported, so the
ratios compare figures taken minutes apart at most. Prints one JSON object.

    .venv/bin/python bench/events_bench.py [--rounds 5] [--synchronous NORMAL|FULL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteConnectionPool, SQLiteDatastore

from events import codec
from events.log import _INSERT, _SCHEMA, EventLog, Record
from events.replay import replay
from events.types import (
    ActuationApplied,
    ClusterName,
    Event,
    GatewayAddressesObserved,
    IstioSpecChanged,
    NodeLocalityObserved,
    PodAddressesObserved,
    Seq,
    WorkloadReadinessObserved,
)

BATCH = 1_000
APPENDERS = 100
PEER_THREADS = 10

CLUSTERS = [ClusterName(c) for c in ("master", "remote-eu-west", "remote-us-east", "remote-ap")]


def make_event(i: int) -> Event:
    """One realistic fact; the mix is roughly what a resync of a mid-size fleet emits."""
    c = CLUSTERS[i % len(CLUSTERS)]
    t = 1_700_000_000.0 + i / 10
    kind = i % 10
    if kind in (0, 1):
        n = i % 13
        return GatewayAddressesObserved(
            cluster=c,
            key=f"Service/istio-system/istio-ingressgateway-{n}",
            time=t,
            namespace="istio-system",
            name=f"istio-ingressgateway-{n}",
            service_type="LoadBalancer",
            ips=(f"34.{i % 200}.{(i >> 8) % 250}.10", f"34.{i % 200}.{(i >> 8) % 250}.11"),
            hostnames=(f"a{i:012x}-1234567890.eu-west-1.elb.amazonaws.com",),
            node_ports={"http2": 31380, "https": 31390, "tls": 31400},
            ports={"http2": 80, "https": 443, "tls": 15443},
        )
    if kind in (2, 3):
        n = i % 97
        return NodeLocalityObserved(
            cluster=c,
            key=f"Node/ip-10-0-{n}-17.eu-west-1.compute.internal",
            time=t,
            node=f"ip-10-0-{n}-17.eu-west-1.compute.internal",
            region="eu-west-1",
            zone=f"eu-west-1{'abc'[n % 3]}",
            addresses=(f"10.0.{n}.17", f"54.{n}.1.2"),
        )
    if kind in (4, 5):
        name = ("istio-pilot", "istio-citadel", "istio-galley", "istio-sidecar-injector")[i % 4]
        return WorkloadReadinessObserved(
            cluster=c,
            key=f"apps/v1/Deployment/istio-system/{name}",
            time=t,
            kind="Deployment",
            namespace="istio-system",
            name=name,
            ready=bool(i % 3),
            desired=2,
            available=1 + i % 2,
            image=f"docker.io/istio/{name.removeprefix('istio-')}:1.2.{i % 6}",
        )
    if kind in (6, 7):
        n = i % 41
        return ActuationApplied(
            cluster=c,
            key=f"networking.istio.io/v1alpha3/DestinationRule/istio-system/svc-{n}",
            time=t,
            verb="apply",
            content_hash=f"sha256:{(i * 2654435761) % 2**64:016x}{n:048x}",
            latency=0.0123 + (i % 17) / 1000,
            cause_seq=i,
        )
    if kind == 8:
        n = i % 29
        return PodAddressesObserved(
            cluster=c,
            key=f"Service/bookinfo/reviews-{n}",
            time=t,
            namespace="bookinfo",
            service=f"reviews-{n}",
            ips=tuple(f"10.{(i >> 4) % 250}.{n}.{k}" for k in range(6)),
            ports={"http": 9080, "grpc": 9090},
        )
    return IstioSpecChanged(
        cluster=c,
        key="Istio/istio-system/mesh",
        time=t,
        namespace="istio-system",
        name="mesh",
        uid="8a6f3c2e-4b1d-4e0f-9a7b-2c5d6e7f8a9b",
        generation=i,
        spec={
            "version": "1.2.5",
            "mtls": bool(i % 2),
            "autoInjectionNamespaces": ["default", "bookinfo"],
            "pilot": {"image": "docker.io/istio/pilot:1.2.5", "replicaCount": 2},
            "localityLB": {"enabled": True},
        },
    )


def fold(state: dict[tuple[str, str], float], record: Record) -> dict[tuple[str, str], float]:
    """A projection-shaped fold: last fact per (cluster, key)."""
    e = record.event
    state[(e.cluster, e.key)] = e.time
    return state


class Meter:
    """Wall-clock rate and CPU time (all threads of the process) of one workload."""

    def __init__(self, out: dict[str, tuple[float, float]], name: str) -> None:
        self.out, self.name = out, name

    def __enter__(self) -> Meter:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def done(self, events: int) -> None:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        self.out[self.name] = (events / wall, cpu / events * 1e6)

    def __exit__(self, *exc: object) -> None:
        pass


Figures = dict[str, tuple[float, float]]  # workload -> (events/s, CPU µs per event)


def fresh(directory: Path, name: str) -> str:
    path = directory / name
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return str(path)


# --- federationd -------------------------------------------------------------------------------


async def ours(path: str, events: list[Event], synchronous: str) -> Figures:
    n = len(events)
    out: Figures = {}
    async with await EventLog.open(path, synchronous=synchronous) as log:  # type: ignore[arg-type]
        with Meter(out, "append_batched") as m:
            for i in range(0, n, BATCH):
                await log.append(events[i : i + BATCH])
            m.done(n)

        per = n // APPENDERS // 2
        concurrent = events[: per * APPENDERS]

        async def appender(k: int) -> None:
            for e in concurrent[k * per : (k + 1) * per]:
                await log.append(e)

        with Meter(out, "append_concurrent") as m:
            await asyncio.gather(*(appender(k) for k in range(APPENDERS)))
            m.done(len(concurrent))

        with Meter(out, "replay") as m:
            initial: dict[tuple[str, str], float] = {}
            done = await replay(log, fold, initial)
            m.done(done.folded)
        assert done.folded == n + len(concurrent)
    return out


# --- the limit: plain sqlite3, pre-encoded ------------------------------------------------------


def limit(path: str, events: list[Event], synchronous: str) -> Figures:
    n = len(events)
    rows = [
        (i + 1, 1.0, e.cluster, codec.tag_of(e), e.key, codec.encode(e))
        for i, e in enumerate(events)
    ]
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA cache_size = -16384")
    out: Figures = {}
    with Meter(out, "append_batched") as m:
        for i in range(0, n, BATCH):
            conn.executemany(_INSERT, rows[i : i + BATCH])
            conn.commit()
        m.done(n)

    with Meter(out, "replay") as m:
        state: dict[tuple[str, str], float] = {}
        count = 0
        for seq, recorded, payload in conn.execute(
            "SELECT seq, recorded, payload FROM events ORDER BY seq"
        ):
            state = fold(state, Record(seq, recorded, codec.decode(payload)))
            count += 1
        m.done(count)
    conn.close()
    return out


# --- the peer: eventsourcing's SQLite application recorder ------------------------------------


class _Pool(SQLiteConnectionPool):
    """The library's pool, with the durability setting of the other two."""

    synchronous = "NORMAL"

    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn._sqlite_conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn


def peer(path: str, events: list[Event], synchronous: str, one_by_one: int) -> Figures:
    _Pool.synchronous = synchronous
    datastore = SQLiteDatastore(path, pool_size=PEER_THREADS)
    datastore.pool = _Pool(db_name=path, pool_size=PEER_THREADS)
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    versions: dict[tuple[str, str], int] = {}
    ids: dict[tuple[str, str], uuid.UUID] = {}
    lock = threading.Lock()

    def stored(e: Event) -> StoredEvent:
        # An aggregate per (cluster, key): the library's unit of optimistic concurrency.
        agg = (e.cluster, e.key)
        with lock:
            version = versions.get(agg, 0) + 1
            versions[agg] = version
            oid = ids.get(agg) or ids.setdefault(agg, uuid.uuid5(uuid.NAMESPACE_URL, repr(agg)))
        return StoredEvent(
            originator_id=oid,
            originator_version=version,
            topic=codec.tag_of(e),
            state=codec.encode(e),
        )

    n = len(events)
    out: Figures = {}
    with Meter(out, "append_batched") as m:
        for i in range(0, n, BATCH):
            recorder.insert_events([stored(e) for e in events[i : i + BATCH]])
        m.done(n)

    singles = events[:one_by_one]
    per = len(singles) // PEER_THREADS

    def worker(k: int) -> None:
        for e in singles[k * per : (k + 1) * per]:
            recorder.insert_events([stored(e)])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(PEER_THREADS)]
    with Meter(out, "append_concurrent") as m:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        m.done(per * PEER_THREADS)

    with Meter(out, "replay") as m:
        state: dict[tuple[str, str], float] = {}
        start, count = 1, 0
        while True:
            page = recorder.select_notifications(start, 4_096)
            if not page:
                break
            for note in page:
                state = fold(state, Record(Seq(note.id), 0.0, codec.decode(note.state)))
            count += len(page)
            start = page[-1].id + 1
        m.done(count)
    datastore.close()
    return out


# --- the run ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--peer-one-by-one", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default="NORMAL")
    parser.add_argument("--dir", help="where to put the files (default: a temporary dir)")
    args = parser.parse_args()

    events = [make_event(i) for i in range(args.events)]
    sizes = [len(codec.encode(e)) for e in events]
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {
        "federationd": {},
        "limit": {},
        "peer": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="events-bench-", dir=args.dir) as tmp:
        d = Path(tmp)
        for _ in range(args.rounds):
            measured: dict[str, Callable[[], Figures]] = {
                "federationd": lambda: asyncio.run(
                    ours(fresh(d, "ours.db"), events, args.synchronous)
                ),
                "limit": lambda: limit(fresh(d, "limit.db"), events, args.synchronous),
                "peer": lambda: peer(
                    fresh(d, "peer.db"), events, args.synchronous, args.peer_one_by_one
                ),
            }
            for who, run in measured.items():
                for metric, value in run().items():
                    runs[who].setdefault(metric, []).append(value)

    med = {
        who: {m: statistics.median(rate for rate, _ in v) for m, v in r.items()}
        for who, r in runs.items()
    }
    cpu = {
        who: {m: round(statistics.median(us for _, us in v), 2) for m, v in r.items()}
        for who, r in runs.items()
    }
    ours_, limit_, peer_ = med["federationd"], med["limit"], med["peer"]

    def rounded(x: float) -> float:
        return round(x, 3) if x < 100 else round(x)

    result: dict[str, Any] = {
        "benchmark": "events",
        "events": args.events,
        "payload_bytes_mean": round(statistics.mean(sizes)),
        "synchronous": args.synchronous,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "events_per_second": {who: {m: rounded(v) for m, v in r.items()} for who, r in med.items()},
        "ratios": {
            "append_batched_vs_limit": rounded(ours_["append_batched"] / limit_["append_batched"]),
            "append_concurrent_vs_limit": rounded(
                ours_["append_concurrent"] / limit_["append_batched"]
            ),
            "append_batched_vs_peer": rounded(ours_["append_batched"] / peer_["append_batched"]),
            "append_concurrent_vs_peer": rounded(
                ours_["append_concurrent"] / peer_["append_concurrent"]
            ),
            "replay_vs_limit": rounded(ours_["replay"] / limit_["replay"]),
            "replay_vs_peer": rounded(ours_["replay"] / peer_["replay"]),
        },
        "cpu_us_per_event": cpu,
        # The same ratios from CPU time (all threads) per event: on a shared machine the
        # wall-clock ratios swing with the neighbours' load, these barely do.
        "ratios_by_cpu": {
            "append_batched_vs_limit": rounded(
                cpu["limit"]["append_batched"] / cpu["federationd"]["append_batched"]
            ),
            "append_batched_vs_peer": rounded(
                cpu["peer"]["append_batched"] / cpu["federationd"]["append_batched"]
            ),
            "append_concurrent_vs_peer": rounded(
                cpu["peer"]["append_concurrent"] / cpu["federationd"]["append_concurrent"]
            ),
            "replay_vs_limit": rounded(cpu["limit"]["replay"] / cpu["federationd"]["replay"]),
            "replay_vs_peer": rounded(cpu["peer"]["replay"] / cpu["federationd"]["replay"]),
        },
        "spread": {
            who: {m: [rounded(rate) for rate, _ in sorted(v)] for m, v in r.items()}
            for who, r in runs.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    best_append = max(ours_["append_batched"], ours_["append_concurrent"])
    result["targets"] = {
        "append_batched_at_least_100k": ours_["append_batched"] >= 100_000,
        "append_concurrent_at_least_100k": ours_["append_concurrent"] >= 100_000,
        "append_at_least_40pct_of_limit": ours_["append_batched"] >= 0.4 * limit_["append_batched"],
        "append_at_least_3x_peer": best_append >= 3 * peer_["append_batched"]
        and ours_["append_concurrent"] >= 3 * peer_["append_concurrent"],
        "replay_at_least_300k": ours_["replay"] >= 300_000,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
