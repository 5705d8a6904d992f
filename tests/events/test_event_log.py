"""The event log: ordering, group commit, tails under racing appends, filters, snapshots,
retention, and clear errors for files that are not (good) logs."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from eventlog_helpers import CLUSTERS, gateway, mixed, node, wait_for

from events import codec
from events.log import (
    RECENT_ROWS,
    EventDecodeError,
    EventLog,
    LogClosed,
    LogCorrupt,
    LogError,
    LogVersionError,
    LogWriteError,
    Record,
)
from events.types import GatewayAddressesObserved, NodeLocalityObserved, Seq

# --- appending and reading ----------------------------------------------------------------


async def test_append_returns_dense_seqs_and_read_gives_them_back(log: EventLog) -> None:
    assert await log.head() == 0
    assert await log.append(gateway(0)) == 1
    assert await log.append([gateway(1), node(2)]) == [2, 3]
    assert await log.append([]) == []
    assert await log.head() == 3
    records = [r async for r in log.read()]
    assert [r.seq for r in records] == [1, 2, 3]
    assert [r.event for r in records] == [gateway(0), gateway(1), node(2)]
    assert all(r.recorded > 0 for r in records)
    assert [r.seq async for r in log.read(2, 2)] == [2]
    assert [r.seq async for r in log.read(3)] == [3]
    assert [r.seq async for r in log.read(4)] == []


async def _pragma(log: EventLog, name: str) -> object:
    (value,) = next(iter(await log._writer.execute_fetchall(f"PRAGMA {name}")))
    return value


async def test_reopen_keeps_events_and_continues_the_sequence(log_path: Path) -> None:
    async with await EventLog.open(log_path) as log:
        assert (await _pragma(log, "journal_mode"), await _pragma(log, "synchronous")) == (
            "wal",
            1,  # NORMAL
        )
        await log.append(mixed(10))
    async with await EventLog.open(log_path, synchronous="FULL") as log:
        assert await _pragma(log, "synchronous") == 2  # FULL
        assert await log.head() == 10
        assert await log.append(gateway(99)) == 11
        assert [r.event async for r in log.read(to_seq=10)] == mixed(10)


async def test_reads_stream_in_pages(log_path: Path) -> None:
    async with await EventLog.open(log_path, page_size=64) as log:
        await log.append(mixed(1000))
        sizes = [len(p) async for p in log.read_pages()]
        assert sum(sizes) == 1000 and max(sizes) == 64
        # Stopping half way is fine and leaves nothing running.
        seen = 0
        async for _ in log.read():
            seen += 1
            if seen == 100:
                break
        assert seen == 100


async def test_filters_by_cluster_and_type(log_path: Path) -> None:
    events = mixed(3000)
    async with await EventLog.open(log_path, page_size=100) as log:
        await log.append(events)

        def expect(cluster: str | None, types: set[str] | None) -> list[int]:
            return [
                i + 1
                for i, e in enumerate(events)
                if (cluster is None or e.cluster == cluster)
                and (types is None or codec.tag_of(e) in types)
            ]

        for cluster in (None, *CLUSTERS, "nowhere"):
            for types in (
                None,
                {"NodeLocalityObserved"},
                {"NodeLocalityObserved", "GatewayAddressesObserved"},
            ):
                got = [
                    r.seq
                    async for r in log.read(
                        cluster=cluster, types=None if types is None else sorted(types)
                    )
                ]
                assert got == expect(cluster, types), (cluster, types)
        # Classes work as well as tags, and a range bounds the result.
        got = [
            r.seq async for r in log.read(500, 800, cluster="master", types=[NodeLocalityObserved])
        ]
        assert got == [s for s in expect("master", {"NodeLocalityObserved"}) if 500 <= s <= 800]


async def test_cluster_and_type_reads_use_the_index(log: EventLog) -> None:
    sql, params = log._page_query("master", ["NodeLocalityObserved", "NodeRemoved"])
    with sqlite3.connect(log.path) as raw:
        plan = raw.execute(f"EXPLAIN QUERY PLAN {sql}", [*params, 1, 10, 10]).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "events_by_cluster_type" in details
    assert "SCAN events" not in details.replace("SCAN events USING INDEX", "")


# --- group commit and tails ---------------------------------------------------------------


async def test_concurrent_appenders_and_a_tail_see_every_event_exactly_once(
    log: EventLog,
) -> None:
    """100 appenders x 1,000 events while a tail from 0 runs."""
    appenders, each = 100, 1_000
    total = appenders * each
    seen: list[Record] = []

    async def follow() -> None:
        async for record in log.tail(0):
            seen.append(record)
            if len(seen) == total:
                return

    acked: dict[int, list[Seq]] = {}

    async def append(a: int) -> None:
        mine = acked.setdefault(a, [])
        for i in range(each):
            mine.append(await log.append(gateway(a * each + i, key=f"appender-{a}/{i}")))

    tail = asyncio.create_task(follow())
    await asyncio.wait_for(asyncio.gather(*(append(a) for a in range(appenders))), 60)
    await asyncio.wait_for(tail, 30)

    assert [r.seq for r in seen] == list(range(1, total + 1))
    assert await log.head() == total
    # Each appender's events are in its own order, each acked seq holds its own event.
    by_seq = {r.seq: r.event.key for r in seen}
    for a, seqs in acked.items():
        assert seqs == sorted(seqs)
        assert [by_seq[s] for s in seqs] == [f"appender-{a}/{i}" for i in range(each)]
    # Group commit: many appends share a transaction (one recorded time per commit).
    commits = len({r.recorded for r in seen})
    assert commits < total / 10, commits


async def test_group_commit_transactions_are_bounded(log_path: Path) -> None:
    """No append waits behind an unbounded transaction: at most ``max_batch_rows`` rows
    of queued appends go into one commit (a single larger append still goes whole)."""
    async with await EventLog.open(log_path, max_batch_rows=10) as log:
        await asyncio.gather(*(log.append(gateway(i)) for i in range(100)))
        await log.append(mixed(25))
        sizes: dict[float, int] = {}
        async for r in log.read():
            sizes[r.recorded] = sizes.get(r.recorded, 0) + 1
    assert sorted(sizes.values())[-1] == 25
    assert max(sorted(sizes.values())[:-1]) <= 10 and sum(sizes.values()) == 125


async def test_tail_waits_for_new_events_and_ends_when_the_log_closes(log_path: Path) -> None:
    log = await EventLog.open(log_path)
    await log.append(mixed(5))
    seen: list[int] = []

    async def follow() -> None:
        async for record in log.tail(3):
            seen.append(record.seq)

    task = asyncio.create_task(follow())
    await wait_for(lambda: seen == [3, 4, 5])
    await log.append(gateway(6))
    await log.append([gateway(7), gateway(8)])
    await wait_for(lambda: seen == [3, 4, 5, 6, 7, 8])
    await log.close()
    await asyncio.wait_for(task, 5)
    assert seen == [3, 4, 5, 6, 7, 8]


async def test_a_caught_up_tail_reads_new_commits_from_memory_as_the_reader_would(log: EventLog) -> None:
    """What was just committed reaches a caught-up tail without a query (the writer's
    copy of the newest rows), decoded exactly as a read returns it; a tail that fell
    further behind than that copy reads the rest from the file, with no gap or repeat."""
    queries = 0
    real_query = log._query

    async def counting(sql: str, params: Sequence[Any]) -> list[Any]:
        nonlocal queries
        queries += 1
        return await real_query(sql, params)

    log._query = counting  # type: ignore[method-assign]
    await log.append(mixed(5))
    seen: list[Record] = []
    go_on = asyncio.Event()
    go_on.set()

    async def follow() -> None:
        async for record in log.tail(1):
            seen.append(record)
            await go_on.wait()

    task = asyncio.create_task(follow())
    try:
        await wait_for(lambda: len(seen) == 5)
        before = queries
        for i in range(20):
            await log.append([gateway(100 + i), gateway(200 + i)])
        await wait_for(lambda: len(seen) == 45)
        assert queries == before, "a caught-up tail queried the file"

        # Held back while more than RECENT_ROWS are committed: the oldest come from the file.
        go_on.clear()
        await log.append(gateway(300))
        await wait_for(lambda: len(seen) == 46)
        await log.append(mixed(RECENT_ROWS + 100))
        go_on.set()
        await wait_for(lambda: len(seen) == 47 + RECENT_ROWS + 99)
        assert queries > before
    finally:
        task.cancel()
    assert [r.seq for r in seen] == list(range(1, len(seen) + 1))
    assert seen == [r async for r in log.read(1)]


async def test_filtered_tail(log: EventLog) -> None:
    seen: list[int] = []

    async def follow() -> None:
        async for record in log.tail(0, cluster="remote-us", types=[GatewayAddressesObserved]):
            seen.append(record.seq)

    task = asyncio.create_task(follow())
    try:
        events = mixed(120)
        for i in range(0, 120, 10):
            await log.append(events[i : i + 10])
        want = [
            i + 1
            for i, e in enumerate(events)
            if e.cluster == "remote-us" and isinstance(e, GatewayAddressesObserved)
        ]
        await wait_for(lambda: seen == want)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_closed_log_refuses_appends(log_path: Path) -> None:
    log = await EventLog.open(log_path)
    pending = [asyncio.create_task(log.append(gateway(i))) for i in range(50)]
    await asyncio.sleep(0)  # let them queue (one loop turn, no time passes)
    late = asyncio.create_task(log.append(gateway(99)))
    await log.close()  # commits what was queued first
    with pytest.raises(LogClosed):
        await late
    assert sorted(await asyncio.gather(*pending)) == list(range(1, 51))
    with pytest.raises(LogClosed, match="closed"):
        await log.append(gateway(0))
    with pytest.raises(LogClosed):
        [r async for r in log.read()]
    await log.close()


async def test_failed_commit_fails_every_waiter_and_consumes_no_seq(log: EventLog) -> None:
    """A commit that cannot be written (here: the file may not grow) fails all of its
    appends; nothing of it becomes visible, and the next commit reuses its seqs."""
    await log.append(mixed(10))
    (pages,) = next(iter(await log._writer.execute_fetchall("PRAGMA page_count")))
    await log._writer.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = [gateway(i, key="k" * 2000) for i in range(200)]
    results = await asyncio.gather(
        *(log.append(big[i : i + 20]) for i in range(0, 200, 20)), return_exceptions=True
    )
    assert all(isinstance(r, LogWriteError) for r in results), results
    assert "disk is full" in str(results[0]) and log.path in str(results[0])
    assert len({id(r) for r in results}) == len(results)  # one exception object each
    assert await log.head() == 10
    assert [r.seq async for r in log.read()] == list(range(1, 11))
    await log._writer.execute("PRAGMA max_page_count = 1073741823")
    assert await log.append(gateway(11)) == 11
    assert [r.seq async for r in log.read()] == list(range(1, 12))


async def test_second_writer_is_detected_not_silently_interleaved(log_path: Path) -> None:
    async with await EventLog.open(log_path) as first, await EventLog.open(log_path) as second:
        assert await first.append(gateway(1)) == 1
        with pytest.raises(LogWriteError, match="another process"):
            await second.append(gateway(2))
        # It re-read the head, so it can go on without losing anything.
        assert await second.append(gateway(3)) == 2
        assert [r.event async for r in first.read()] == [gateway(1), gateway(3)]


# --- snapshots and retention --------------------------------------------------------------


async def test_snapshots_keep_the_newest_and_honour_at_most(log: EventLog) -> None:
    assert await log.load_snapshot("mesh") is None
    await log.append(mixed(30))
    for seq in (10, 20, 30):
        await log.save_snapshot("mesh", seq, f"state@{seq}".encode())
    await log.save_snapshot("other", 5, b"x")
    assert await log.load_snapshot("mesh") == (30, b"state@30")
    assert await log.load_snapshot("mesh", at_most=29) == (20, b"state@20")
    assert await log.load_snapshot("mesh", at_most=19) is None  # only the newest 2 kept
    assert await log.load_snapshot("other") == (5, b"x")
    with pytest.raises(ValueError, match="head"):
        await log.save_snapshot("mesh", 31, b"future")


async def test_retention_drops_old_events_and_keeps_the_head(log_path: Path) -> None:
    async with await EventLog.open(log_path, retention_window=100, retention_chunk=250) as log:
        await log.append(mixed(2000))
        await log.save_snapshot("mesh", 1500, b"s")
        assert log.dropped_through == 1400
        assert [r.seq async for r in log.read()] == list(range(1401, 2001))
        # A second snapshot consumer that lags holds retention back.
        await log.save_snapshot("lagging", 1450, b"l")
        await log.save_snapshot("mesh", 1900, b"s2")
        assert log.dropped_through == 1400 + 0  # min(1450, 1900) - 100 = 1350 < 1400
        await log.save_snapshot("lagging", 1950, b"l2")
        assert log.dropped_through == 1800
        assert await log.load_snapshot("mesh") == (1900, b"s2")
    # Everything before the snapshot dropped: the head survives a reopen.
    async with await EventLog.open(log_path, retention_window=0) as log:
        assert log.dropped_through == 1800
        await log.save_snapshot("mesh", 2000, b"s3")
        await log.save_snapshot("lagging", 2000, b"l3")
        assert log.dropped_through == 2000
        assert [r async for r in log.read()] == []
    async with await EventLog.open(log_path) as log:
        assert await log.head() == 2000
        assert await log.append(gateway(1)) == 2001


async def test_retention_runs_in_chunks_that_let_appends_through(log_path: Path) -> None:
    async with await EventLog.open(log_path) as log:
        await log.append(mixed(5000))
        await log.save_snapshot("mesh", 5000, b"s")  # no retention configured... yet
    async with await EventLog.open(log_path, retention_window=0, retention_chunk=100) as log:
        assert log.dropped_through == 0
        retention = asyncio.create_task(log.apply_retention())
        done_during: list[bool] = []
        for i in range(5):
            await log.append(gateway(i))
            done_during.append(retention.done())
        assert await retention == 5000
        # Appends queued behind the first chunk committed long before the 50th chunk.
        assert done_during[0] is False
        assert [r.seq async for r in log.read()] == list(range(5001, 5006))


# --- bad files ----------------------------------------------------------------------------


async def test_a_file_that_is_not_sqlite_is_named_as_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not an event log\n" * 200)
    with pytest.raises(LogCorrupt, match="not a federationd event log") as info:
        await EventLog.open(path)
    assert str(path) in str(info.value)
    assert "Traceback" not in str(info.value)


async def test_a_sqlite_file_of_something_else_is_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE recipes (name TEXT)")
    raw.close()
    with pytest.raises(LogCorrupt, match="not a federationd event log") as info:
        await EventLog.open(path)
    assert str(path) in str(info.value)


async def test_a_corrupt_log_is_reported_as_corrupt(log_path: Path) -> None:
    async with await EventLog.open(log_path) as log:
        await log.append(mixed(3000))
    page = 4096
    assert log_path.stat().st_size > 40 * page  # noqa: ASYNC240
    # Damage a run of pages in the middle of the events table.
    with log_path.open("r+b") as f:
        f.seek(10 * page)
        f.write(b"\xa5" * (20 * page))

    with pytest.raises(LogCorrupt, match=r"corrupt|malformed") as info:
        await EventLog.open(log_path, check=True)
    assert str(log_path) in str(info.value)

    with pytest.raises(LogCorrupt, match="malformed") as info:
        async with await EventLog.open(log_path) as log:
            [r async for r in log.read()]
    assert str(log_path) in str(info.value)


async def test_a_log_from_a_newer_schema_is_refused_with_both_versions(log_path: Path) -> None:
    async with await EventLog.open(log_path) as log:
        await log.append(gateway(1))
    with sqlite3.connect(log_path) as raw:
        raw.execute("UPDATE meta SET value = '7' WHERE name = 'schema_version'")
    raw.close()
    with pytest.raises(LogVersionError) as info:
        await EventLog.open(log_path)
    assert (info.value.found, info.value.supported) == (7, 1)
    assert "schema version 7" in str(info.value) and "schema version 1" in str(info.value)
    assert str(log_path) in str(info.value)


async def test_an_event_from_a_newer_catalogue_names_its_seq(log: EventLog) -> None:
    await log.append(gateway(1))
    import msgspec

    blob = msgspec.msgpack.encode({"type": "Future", "cluster": "c", "key": "k", "time": 1.0})
    with sqlite3.connect(log.path) as raw:
        raw.execute("INSERT INTO events VALUES (2, 0, 'c', 'Future', 'k', ?)", (blob,))
    raw.close()
    with pytest.raises(EventDecodeError, match="event 2: unknown event type 'Future'") as info:
        [r async for r in log.read()]
    assert info.value.seq == 2
    assert isinstance(info.value, LogError)


async def test_a_directory_is_not_a_log(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="directory"):
        await EventLog.open(tmp_path)
    with pytest.raises(LogError, match="cannot be opened"):
        await EventLog.open(tmp_path / "missing" / "events.db")


async def test_an_interrupted_commit_fails_its_waiters_and_the_log_goes_on(log: EventLog) -> None:
    await log.append(mixed(3))
    async with log._write_lock:  # the flusher queues behind this "retention chunk"
        tasks = [asyncio.create_task(log.append(gateway(i))) for i in range(20)]
        await wait_for(lambda: len(log._pending) == 0 and log._flusher is not None)
        assert log._flusher is not None
        log._flusher.cancel()  # what the event loop does to leftover tasks at shutdown
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, LogWriteError) and "interrupted" in str(r) for r in results)
    # Nothing of it was recorded, and the log goes on without a gap.
    assert await log.append(gateway(99)) == 4
    assert [r.seq async for r in log.read()] == [1, 2, 3, 4]

    # Interrupted inside the transaction: it may or may not have committed; the next
    # append finds out instead of colliding or leaving a gap.
    log._head_uncertain = True
    log._head = 2  # as if the interrupted commit's outcome were unknown
    assert await log.append(gateway(100)) == 5
    assert [r.seq async for r in log.read()] == [1, 2, 3, 4, 5]
