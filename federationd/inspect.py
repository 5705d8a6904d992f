"""Offline inspection of an event log: ``events``, ``replay``, ``state``, ``explain``, ``diff``.

The log is the whole truth about a run: what federationd saw, what it decided and what
it did. These commands fold it through the same pure projections the daemon uses, so
``replay --until N`` prints exactly the desired objects the daemon had after event N,
and ``explain`` can name the events an object came from and the writes that applied it.

They never write to the log (a missing file is an error, not a new empty log) and turn
every failure into one line on stderr and a non-zero exit code:
0 ok, 1 nothing matched (``explain`` of an unknown object), 2 usage or log error.

At scale (a daemon that ran for months writes millions of events) none of them reads the
whole log: a state is rebuilt from the newest snapshot at or below the wanted seq and
the events after it; ``explain`` looks the object's writes up through the log's
(cluster, type, seq) index and its reasons by seq, and derives per event only over the
window since that snapshot; ``diff`` folds the second state on from the first. A replay
longer than a second draws a progress bar on stderr when stderr is a terminal.
``--no-snapshot`` folds from the first event (and ``explain`` derives over all of it).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TextIO

import msgspec

from events import codec
from events.log import EventLog, LogError, Record
from events.replay import SnapshotSpec, replay
from events.types import CATALOGUE
from federationd.projections.derive import (
    Desired,
    derive,
    desired_hash,
    rfc3339,
    split_key,
)
from federationd.projections.state import (
    EMPTY,
    SNAPSHOT_NAME,
    ProjectionState,
    decode_state,
    encode_state,
    fold,
    to_builtins,
)
from federationd.render.objects import dump_yaml_stream, to_yaml

#: How often ``events --follow`` looks for new events (seconds).
FOLLOW_POLL = 0.25


class InspectError(Exception):
    """A problem to report in one line (exit code 2)."""


# --- log access ---------------------------------------------------------------------------


async def open_existing(path: str) -> EventLog:
    """Open a log for reading; refuse to create one."""
    if not await asyncio.to_thread(os.path.exists, path):
        raise InspectError(f"{path}: no such log file")
    return await EventLog.open(path)


#: How projection state is kept in the log's snapshots (the daemon writes them).
SNAPSHOTS: SnapshotSpec[ProjectionState] = SnapshotSpec(
    name=SNAPSHOT_NAME, encode=encode_state, decode=decode_state
)


class ProgressBar:
    """``progress(seq, until)`` for ``events.replay``: a bar on ``stream`` once a replay
    has taken longer than ``after`` seconds, only when ``stream`` is a terminal."""

    WIDTH = 30

    def __init__(
        self, what: str, *, stream: TextIO | None = None, after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.after = after
        self.clock = clock
        self.started = clock()
        self.first: int | None = None
        self.shown = False
        self.tty = self.stream.isatty()

    def __call__(self, seq: int, until: int) -> None:
        if self.first is None:
            self.first = seq
        if not self.tty or self.clock() - self.started < self.after:
            return
        span = max(1, until - self.first)
        frac = min(1.0, max(0.0, (seq - self.first) / span))
        done = int(frac * self.WIDTH)
        self.stream.write(
            f"\r{self.what} [{'#' * done}{'.' * (self.WIDTH - done)}] {seq:,}/{until:,} ({frac:.0%})"
        )
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


async def rebuild(
    log: EventLog, *, until: int | None = None, use_snapshot: bool = True,
    resume: tuple[ProjectionState, int] | None = None,
) -> ProjectionState:
    """The projection state after folding every event up to ``until`` (the head if None),
    from the newest usable snapshot at or below ``until`` unless ``use_snapshot`` is off
    (or from ``resume``, a state at an earlier seq, when that is closer)."""
    bar = ProgressBar(f"replaying {log.path}")
    try:
        done = await replay(
            log, fold, EMPTY, until=until, snapshot=SNAPSHOTS if use_snapshot else None,
            progress=bar, resume=resume,
        )
    finally:
        bar.close()
    return done.state


# --- output helpers ----------------------------------------------------------------------------


def event_line(record: Record) -> str:
    e = record.event
    body = codec.to_builtins(e)
    for k in ("type", "cluster", "key", "time"):
        body.pop(k, None)
    detail = json.dumps(body, sort_keys=True, separators=(",", ":")) if body else ""
    return (
        f"{record.seq:>7}  {rfc3339(e.time)}  {e.cluster:<14} {codec.tag_of(e):<26} "
        f"{e.key}  {detail}".rstrip()
    )


def desired_yaml(desired: Desired, *, cluster: str | None = None, statuses: bool = True) -> str:
    out: list[str] = [f"# desired state at seq {desired.seq} (hash {desired_hash(desired)})\n"]
    for name, c in desired.clusters.items():
        if cluster is not None and name != cluster:
            continue
        out.append(f"# cluster: {name} ({len(c.objects)} objects)\n")
        if c.hold:
            out.append(f"# held (nothing is changed on this cluster): {c.hold_reason}\n")
        out.append(dump_yaml_stream(d.obj for d in c.objects.values()))
    if statuses and cluster is None:
        for key, st in sorted(desired.statuses.items()):
            out.append(f"# status of {key} (on cluster {st.cluster})\n---\n")
            out.append(to_yaml({"status": st.status}))
    return "".join(out)


# --- sub-commands --------------------------------------------------------------------------------


def _event_types(names: Sequence[str] | None) -> list[str] | None:
    if not names:
        return None
    known = {cls.__name__ for cls in CATALOGUE}
    for n in names:
        if n not in known:
            raise InspectError(f"unknown event type {n!r} (known: {', '.join(sorted(known))})")
    return list(names)


async def _records(args: argparse.Namespace, log: EventLog) -> AsyncIterator[Record]:
    types = _event_types(args.type)
    if args.follow:
        # The log's own tail is woken by appends in *this* process; the daemon appending
        # is another process, so poll: each read is a fresh snapshot of the file.
        nxt = args.from_seq
        while True:
            async for r in log.read(nxt, None, cluster=args.cluster, types=types):
                nxt = r.seq + 1
                yield r
            await asyncio.sleep(FOLLOW_POLL)
    else:
        async for r in log.read(args.from_seq, args.until, cluster=args.cluster, types=types):
            yield r


async def cmd_events(args: argparse.Namespace) -> int:
    log = await open_existing(args.log)
    try:
        async for r in _records(args, log):
            if args.json:
                line = json.dumps(
                    {"seq": r.seq, "recorded": r.recorded, **codec.to_builtins(r.event)},
                    sort_keys=True,
                )
            else:
                line = event_line(r)
            print(line, flush=args.follow)
    finally:
        await log.close()
    return 0


async def cmd_replay(args: argparse.Namespace) -> int:
    log = await open_existing(args.log)
    try:
        state = await rebuild(log, until=args.until, use_snapshot=not args.no_snapshot)
    finally:
        await log.close()
    desired = derive(state)
    if args.membership:
        body = {"seq": desired.seq, "membership": msgspec.to_builtins(desired.membership)}
        print(json.dumps(body, sort_keys=True))
    elif args.hash:
        print(f"{desired.seq} {desired_hash(desired)}")
    else:
        sys.stdout.write(desired_yaml(desired, cluster=args.cluster))
    return 0


async def cmd_state(args: argparse.Namespace) -> int:
    log = await open_existing(args.log)
    try:
        state = await rebuild(log, until=args.until, use_snapshot=not args.no_snapshot)
    finally:
        await log.close()
    sys.stdout.write(to_yaml(_readable_times(to_builtins(state))))
    return 0


#: Fields of the projection state that hold seconds since the epoch.
_TIME_FIELDS = frozenset({"time", "since"})


def _readable_times(value: object, key: str = "") -> object:
    """The state as a person reads it: epoch seconds as RFC 3339 times (0: never)."""
    if isinstance(value, dict):
        return {k: _readable_times(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_readable_times(v) for v in value]
    if key in _TIME_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
        return rfc3339(float(value)) if value else None
    return value


def _match_key(desired_keys: Sequence[str], seen_keys: Sequence[str], ref: str) -> str:
    """Resolve ``KIND/NAMESPACE/NAME`` (or ``KIND/NAME`` for cluster-scoped objects, or
    a full ``apiVersion/Kind/namespace/name`` key) to one object key."""
    parts = ref.split("/")
    if len(parts) == 2:
        parts = [parts[0], "", parts[1]]
    candidates = sorted(set(desired_keys) | set(seen_keys))
    if ref in candidates:
        return ref
    if len(parts) != 3:
        raise InspectError(f"{ref!r}: expected KIND/NAMESPACE/NAME (or KIND/NAME)")
    kind, ns, name = parts
    found = [
        k
        for k in candidates
        if split_key(k)[1].lower() == kind.lower() and split_key(k)[2:] == (ns, name)
    ]
    if len(found) > 1:
        raise InspectError(f"{ref!r} is ambiguous: {', '.join(found)}")
    return found[0] if found else ""


async def cmd_explain(args: argparse.Namespace) -> int:
    log = await open_existing(args.log)
    try:
        until = await log.head() if args.until is None else args.until
        # Start from the newest snapshot at or below ``until``: the content history is
        # derived per event over the window after it; everything else comes by index.
        state = EMPTY
        start = 1
        snap = None
        if not args.no_snapshot or log.dropped_through > 0:
            snap = await log.load_snapshot(SNAPSHOT_NAME, at_most=until)
        if snap is None and log.dropped_through > 0:
            raise InspectError(
                f"{args.log}: events up to {log.dropped_through} were dropped by retention "
                "and no snapshot covers them"
            )
        if snap is not None:
            state, start = decode_state(snap[1]), snap[0] + 1
        history: list[tuple[int, str]] = []  # (seq, hash or "" when not desired)
        by_seq: dict[int, Record] = {}
        key = ""
        last_hash: str | None = None
        pending_ref = args.object
        if snap is not None:
            # the object as the snapshot has it: the start of the window
            cluster = derive(state).clusters.get(args.cluster)
            key = _match_key(list(cluster.objects) if cluster else [], [], pending_ref)
            if key:
                obj = cluster.objects.get(key) if cluster else None
                last_hash = obj.content_hash if obj else ""
                history.append((snap[0], last_hash))
        bar = ProgressBar(f"explaining from {log.path}")
        try:
            async for page in log.read_pages(start, until):
                for r in page:
                    state = fold(state, r)
                    by_seq[r.seq] = r
                    if codec.tag_of(r.event) in _NON_DERIVING:
                        continue
                    desired = derive(state)
                    cluster = desired.clusters.get(args.cluster)
                    keys = list(cluster.objects) if cluster else []
                    if not key:
                        key = _match_key(keys, [], pending_ref)
                        if not key:
                            continue
                    obj = cluster.objects.get(key) if cluster else None
                    h = obj.content_hash if obj else ""
                    if h != last_hash:
                        history.append((r.seq, h))
                        last_hash = h
                if page:
                    bar(page[-1].seq, until)
        finally:
            bar.close()
        if not key:
            seen = await log.object_keys(cluster=args.cluster, types=_OBJECT_FACTS)
            key = _match_key([], seen, pending_ref)
        if not key:
            print(
                f"{args.object}: no such object was ever desired on cluster {args.cluster}",
                file=sys.stderr,
            )
            return 1
        writes, total = await log.object_events(
            cluster=args.cluster, key=key, types=_OBJECT_FACTS, to_seq=until, last=args.writes or None
        )
        desired = derive(state)
        cluster = desired.clusters.get(args.cluster)
        current = cluster.objects.get(key) if cluster else None
        wanted = set(current.reasons if current else ()) | {seq for seq, _ in history}
        for found in await log.records(wanted - by_seq.keys()):
            by_seq[found.seq] = found
        lines = [f"{key} on cluster {args.cluster}"]
        if current is not None:
            kind = "patch of an object federationd does not own" if current.patch else "owned"
            lines.append(
                f"  desired at seq {state.seq}: content hash {current.content_hash[:16]} ({kind})"
            )
            lines.append("  derived from:")
            for s in current.reasons:
                rec = by_seq.get(s)
                lines.append("    " + (event_line(rec) if rec else f"{s:>7}  (dropped by retention)"))
        else:
            lines.append(f"  not desired at seq {state.seq}")
        lines.append("  desired content over time:")
        if snap is not None and history and history[0][0] == snap[0]:
            lines.append(f"    (derived from snapshot seq {snap[0]} on; --no-snapshot for the whole log)")
        for seq, h in history:
            what = f"content hash {h[:16]}" if h else "not desired"
            rec = by_seq.get(seq)
            cause = f"{codec.tag_of(rec.event)} {rec.event.key}" if rec else ""
            lines.append(f"    {seq:>7}  {what}  <- {cause}")
        lines.append("  writes and drift:")
        if total > len(writes):
            lines.append(f"    ({total - len(writes)} earlier not shown; --writes 0 for all)")
        for w in writes:
            lines.append("    " + event_line(w))
        if not writes:
            lines.append("    (none)")
        print("\n".join(lines))
        return 0
    finally:
        await log.close()


_OBJECT_FACTS = frozenset({"ActuationApplied", "ActuationFailed", "ObjectDrifted"})
#: Events that never change desired *objects* (only status), so explain skips deriving.
_NON_DERIVING = frozenset(
    {
        "ActuationApplied",
        "ActuationFailed",
        "ObjectDrifted",
        "LeadershipAcquired",
        "LeadershipLost",
        "WorkloadReadinessObserved",
        "WorkloadRemoved",
        "ClusterConnected",
        "ClusterUnreachable",
    }
)


async def cmd_diff(args: argparse.Namespace) -> int:
    log = await open_existing(args.log)
    try:
        head = int(await log.head())
        if not 0 <= args.from_seq <= args.to_seq:
            raise InspectError(f"--from {args.from_seq} must be >= 0 and <= --to {args.to_seq}")
        if args.to_seq > head:
            raise InspectError(f"--to {args.to_seq} is past the log's last event ({head})")
        # The first state from the newest snapshot at or below it; the second folded on
        # from the first (or from a snapshot closer to it).
        snapshots = not args.no_snapshot or log.dropped_through > 0
        state_a = await rebuild(log, until=args.from_seq, use_snapshot=snapshots)
        state_b = await rebuild(log, until=args.to_seq, use_snapshot=snapshots, resume=(state_a, state_a.seq))
        a, b = derive(state_a), derive(state_b)
    finally:
        await log.close()
    changed = 0
    for cluster in sorted(set(a.clusters) | set(b.clusters)):
        ca = a.clusters.get(cluster)
        cb = b.clusters.get(cluster)
        oa = {k: v.obj for k, v in (ca.objects.items() if ca else [])}
        ob = {k: v.obj for k, v in (cb.objects.items() if cb else [])}
        for k in sorted(set(oa) | set(ob)):
            if oa.get(k) == ob.get(k):
                continue
            changed += 1
            ya = to_yaml(oa[k]).splitlines(keepends=True) if k in oa else []
            yb = to_yaml(ob[k]).splitlines(keepends=True) if k in ob else []
            sys.stdout.writelines(
                difflib.unified_diff(
                    ya,
                    yb,
                    fromfile=f"{cluster}:{k}@{a.seq}" if k in oa else "/dev/null",
                    tofile=f"{cluster}:{k}@{b.seq}" if k in ob else "/dev/null",
                )
            )
    for k in sorted(set(a.statuses) | set(b.statuses)):
        sa = a.statuses[k].status if k in a.statuses else None
        sb = b.statuses[k].status if k in b.statuses else None
        if sa == sb:
            continue
        changed += 1
        ya = to_yaml(sa).splitlines(keepends=True) if sa is not None else []
        yb = to_yaml(sb).splitlines(keepends=True) if sb is not None else []
        sys.stdout.writelines(
            difflib.unified_diff(ya, yb, fromfile=f"status {k}@{a.seq}", tofile=f"status {k}@{b.seq}")
        )
    if not changed:
        print(f"no difference in the desired state between seq {a.seq} and {b.seq}")
    return 0


# --- argument parsing -------------------------------------------------------------------------------


def _parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"federationd {command}")
    p.add_argument("--log", required=True, help="the event log file (SQLite)")
    if command == "events":
        p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
        p.add_argument("--cluster", help="only events about this cluster")
        p.add_argument("--type", action="append", help="only events of this type (repeatable)")
        p.add_argument("--from", dest="from_seq", type=int, default=1, help="first seq")
        p.add_argument("--until", type=int, default=None, help="last seq")
        p.add_argument("--json", action="store_true", help="one JSON object per line")
    elif command in ("replay", "state"):
        p.add_argument("--until", type=int, default=None, help="fold events up to this seq")
        p.add_argument(
            "--no-snapshot", action="store_true", help="fold from the first event, ignoring snapshots"
        )
        if command == "replay":
            p.add_argument("--cluster", help="only this cluster's objects")
            p.add_argument(
                "--hash", action="store_true", help="print only '<seq> <desired-state hash>'"
            )
            p.add_argument(
                "--membership", action="store_true",
                help="print only the membership decisions (remotes to connect, leaving, "
                "removed, refused, finalizers, trust) as JSON",
            )
    elif command == "explain":
        p.add_argument("cluster", help="the cluster the object lives on")
        p.add_argument("object", help="KIND/NAMESPACE/NAME (KIND/NAME if cluster-scoped)")
        p.add_argument("--until", type=int, default=None, help="explain as of this seq")
        p.add_argument(
            "--no-snapshot", action="store_true",
            help="derive the content history over the whole log, not from the newest snapshot",
        )
        p.add_argument("--writes", type=int, default=50, help="show the newest N writes (0: all)")
    elif command == "diff":
        p.add_argument("--from", dest="from_seq", type=int, required=True)
        p.add_argument("--to", dest="to_seq", type=int, required=True)
        p.add_argument(
            "--no-snapshot", action="store_true", help="fold from the first event, ignoring snapshots"
        )
    return p


_COMMANDS = {
    "events": cmd_events,
    "replay": cmd_replay,
    "state": cmd_state,
    "explain": cmd_explain,
    "diff": cmd_diff,
}


def main(argv: Sequence[str]) -> int:
    """``argv[0]`` is the sub-command (as ``federationd.cli`` dispatches it)."""
    if not argv or argv[0] not in _COMMANDS:
        print(f"federationd: inspect commands are {', '.join(_COMMANDS)}", file=sys.stderr)
        return 2
    command = argv[0]
    args = _parser(command).parse_args(list(argv[1:]))
    try:
        return asyncio.run(_COMMANDS[command](args))
    except (InspectError, LogError) as e:
        print(f"federationd {command}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `federationd events --log x | head`: the reader left, which is fine.
        return 0


__all__ = ["SNAPSHOTS", "InspectError", "ProgressBar", "desired_yaml", "event_line", "main", "rebuild"]
