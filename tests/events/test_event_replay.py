"""Replay: folding from a snapshot gives what folding from zero gives; snapshots every N
events; progress; retention and broken snapshots handled."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import msgspec
import pytest
from eventlog_helpers import mixed

from events.log import EventLog, Record
from events.replay import LogTruncated, Replayed, SnapshotSpec, Snapshotter, replay
from events.types import Seq


class Tally(msgspec.Struct, frozen=True):
    """A small projection: last seq and count per key, and a running checksum."""

    per_key: dict[str, tuple[int, int]] = {}
    checksum: int = 0


def fold(state: Tally, record: Record) -> Tally:
    key = f"{record.event.cluster}/{record.event.key}"
    _, count = state.per_key.get(key, (0, 0))
    per_key = {**state.per_key, key: (record.seq, count + 1)}
    return Tally(per_key, (state.checksum * 31 + record.seq * 7 + int(record.event.time)) % 2**61)


SPEC = SnapshotSpec("tally", msgspec.msgpack.encode, msgspec.msgpack.Decoder(Tally).decode)


async def _fill(log: EventLog, n: int, *, every: int | None = None) -> None:
    """Append ``n`` events in batches, snapshotting the folded state every ``every``."""
    events = mixed(n)
    state = Tally()
    snapshots = None if every is None else Snapshotter(log, SPEC, every=every)
    for i in range(0, n, 100):
        seqs = await log.append(events[i : i + 100])
        for seq, event in zip(seqs, events[i : i + 100], strict=True):
            state = fold(state, Record(seq, 0.0, event))
            if snapshots is not None:
                await snapshots.observe(seq, state)


async def test_replay_from_snapshot_equals_replay_from_zero(log: EventLog) -> None:
    await _fill(log, 3_000, every=1_000)
    newest = await log.load_snapshot("tally")
    assert newest is not None and newest[0] == 3_000

    full = await replay(log, fold, Tally())
    assert (full.seq, full.snapshot_seq, full.folded) == (3_000, None, 3_000)

    quick = await replay(log, fold, Tally(), snapshot=SPEC)
    assert (quick.seq, quick.snapshot_seq, quick.folded) == (3_000, 3_000, 0)
    assert quick.state == full.state

    # Appends after the snapshot are folded on top of it.
    await log.append(mixed(250))
    full = await replay(log, fold, Tally())
    quick = await replay(log, fold, Tally(), snapshot=SPEC)
    assert (quick.snapshot_seq, quick.folded, quick.seq) == (3_000, 250, 3_250)
    assert quick.state == full.state


async def test_replay_until_uses_the_nearest_snapshot_below(log: EventLog) -> None:
    await _fill(log, 3_000, every=1_000)  # keeps the newest two: 2000 and 3000
    for until in (1, 1_999, 2_000, 2_500, 2_999):
        from_zero = await replay(log, fold, Tally(), until=until)
        from_snap = await replay(log, fold, Tally(), until=until, snapshot=SPEC)
        assert from_snap.state == from_zero.state, until
        assert from_snap.seq == from_zero.seq == until
        assert from_snap.snapshot_seq == (2_000 if until >= 2_000 else None)


async def test_progress_is_reported(log: EventLog) -> None:
    await log.append(mixed(1_000))
    calls: list[tuple[int, int]] = []
    done = await replay(
        log, fold, Tally(), progress=lambda seq, until: calls.append((seq, until)), page_size=128
    )
    assert done.seq == 1_000
    assert len(calls) == 8 and calls[-1] == (1_000, 1_000)
    assert [s for s, _ in calls] == sorted(s for s, _ in calls)
    calls.clear()
    empty = await replay(log, fold, Tally(), until=0, progress=lambda s, u: calls.append((s, u)))
    assert empty == Replayed(Tally(), Seq(0), None, 0) and calls == [(0, 0)]


async def test_a_snapshot_that_no_longer_decodes_is_skipped(log: EventLog) -> None:
    await _fill(log, 2_000, every=1_000)

    def refuse(blob: bytes) -> Tally:
        raise ValueError("a snapshot of an older state format")

    picky = SnapshotSpec("tally", SPEC.encode, refuse)
    result = await replay(log, fold, Tally(), snapshot=picky)
    assert result.snapshot_seq is None and result.folded == 2_000
    assert result.state == (await replay(log, fold, Tally(), snapshot=SPEC)).state


async def test_replay_after_retention_needs_a_snapshot(log_path: Path) -> None:
    async with await EventLog.open(log_path, retention_window=100) as log:
        await _fill(log, 2_000, every=1_000)
        assert log.dropped_through == 1_900
        with pytest.raises(LogTruncated, match="dropped by retention") as info:
            await replay(log, fold, Tally())
        assert log.path in str(info.value)
        from_snap = await replay(log, fold, Tally(), snapshot=SPEC)
        assert from_snap.snapshot_seq == 2_000
        await log.append(mixed(10))
        assert (await replay(log, fold, Tally(), snapshot=SPEC)).folded == 10


async def test_fold_errors_name_the_event(log: EventLog) -> None:
    await log.append(mixed(10))

    def broken(state: Tally, record: Record) -> Tally:
        if record.seq == 7:
            raise KeyError("boom")
        return state

    with pytest.raises(KeyError) as info:
        await replay(log, broken, Tally())
    assert any("event 7" in note for note in info.value.__notes__)


async def test_snapshotter_encodes_on_a_worker_thread_while_the_loop_goes_on(log: EventLog) -> None:
    """``save`` hands the encoding to a thread: the event loop is free meanwhile (the
    daemon folds and derives while a snapshot is made)."""
    await log.append(mixed(10))
    started, release = threading.Event(), threading.Event()
    threads: list[int] = []

    def slow_encode(state: Tally) -> bytes:
        threads.append(threading.get_ident())
        started.set()
        assert release.wait(10.0), "the loop never released the encoder"
        return msgspec.msgpack.encode(state)

    snapshots = Snapshotter(log, SnapshotSpec("slow", slow_encode, SPEC.decode), every=5)
    assert not snapshots.due(4) and snapshots.due(5)
    saving = asyncio.create_task(snapshots.save(10, Tally(checksum=42)))
    # the loop runs while the encoder is blocked on its thread
    assert await asyncio.to_thread(started.wait, 10.0)
    assert not saving.done() and threads != [threading.get_ident()]
    release.set()
    await asyncio.wait_for(saving, 10.0)
    assert snapshots.last == 10 and not snapshots.due(14)
    found = await log.load_snapshot("slow")
    assert found is not None and found[0] == 10 and SPEC.decode(found[1]) == Tally(checksum=42)


def test_snapshotter_rejects_a_silly_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Snapshotter(None, SPEC, every=0)  # type: ignore[arg-type]
