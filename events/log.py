"""The append-only event log: one SQLite file, one writer, in-order reads and tails.

Everything federationd learns is appended here and everything it decides is derived from
what is here, so the log is shaped around three promises:

* **An acknowledged append is durable and never half-visible.** ``append`` returns only
  after the transaction holding the event committed (WAL journal; ``synchronous=NORMAL``
  survives a crash of the process, ``FULL`` also a crash of the machine). A failed
  commit is rolled back whole, every waiter of that commit gets the error, and the
  sequence numbers it would have used are handed out again, so readers never see a gap.
* **Sequence numbers are dense and ordered.** There is exactly one writer connection and
  it assigns ``seq`` itself (``INTEGER PRIMARY KEY``, i.e. the rowid), one transaction at
  a time, so "``seq`` N is committed" implies "every ``seq`` below N is committed". That
  is what lets :meth:`EventLog.tail` promise no gap and no duplicate while appends race
  with it: it reads up to the committed head it last saw, then waits for an in-process
  notification that the head moved (no polling).
* **Many small appends cost one transaction.** Concurrent ``append`` calls are queued
  (payloads are encoded by the caller, outside any lock) and a single flusher commits
  everything queued (up to ``max_batch_rows``) as one ``executemany`` + ``COMMIT``, run
  as a single job on the writer's thread; whatever arrives meanwhile goes into the next
  transaction. No append waits for a timer, only for at most the commit in progress
  and its own.

Reads go through a second, read-only connection (so a long replay never holds up the
writer) and are paged by ``seq`` (keyset pagination): memory is bounded by one page,
and no read transaction stays open between pages, so the WAL can always be checkpointed.
A tail that is caught up takes what was just committed from the writer's own copy of
the newest rows (``RECENT_ROWS``): the same bytes, decoded the same way, without a trip
to the reader's thread between a fact's commit and its fold.

Snapshots of projection state live in the same file (``save_snapshot``/``load_snapshot``)
so that a snapshot and the events after it can never come from different logs.
Retention drops events older than the oldest of the newest snapshots (one per snapshot
name) minus a configured window, in bounded chunks that queue behind appends like any
other write.

Failures are typed (:class:`LogError` and subclasses) and name the file and the problem,
never a bare sqlite message: a file that is not a log, a corrupt file, a log from a newer
schema, a read-only file or a full disk (:class:`LogUnwritable`: nothing was written,
the same write may succeed once there is space again).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import json
import logging
import os
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar, overload

import aiosqlite
import msgspec

from events import codec
from events.types import SCHEMA_VERSION, ClusterName, Event, Seq

__all__ = [
    "EventDecodeError",
    "EventLog",
    "LogClosed",
    "LogCorrupt",
    "LogError",
    "LogUnwritable",
    "LogVersionError",
    "LogWriteError",
    "Record",
    "Synchronous",
]

logger = logging.getLogger(__name__)

if not callable(getattr(aiosqlite.Connection, "_execute", None)):  # see EventLog._transaction
    raise ImportError(f"aiosqlite {aiosqlite.__version__} lacks Connection._execute")

Synchronous = Literal["NORMAL", "FULL"]

#: ``PRAGMA application_id`` of every log ("FDLG"): tells our files from other SQLite files.
APPLICATION_ID: Final = 0x46444C47
FORMAT: Final = "federationd-event-log"

_MAX_SEQ: Final = 2**63 - 1
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL = 10, 11, 13
_SQLITE_CANTOPEN, _SQLITE_CONSTRAINT, _SQLITE_NOTADB = 14, 19, 26
_SQLITE_IOERR_WRITE, _SQLITE_IOERR_FSYNC, _SQLITE_IOERR_TRUNCATE = 778, 1034, 1546
#: Primary codes of a write that failed for a cause outside the log (space, limits, the
#: disk, permissions, a lock): retrying the same write later is the remedy.
_UNWRITABLE: Final = frozenset(
    {_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN}
)

_SCHEMA = f"""
BEGIN;
CREATE TABLE events (
    seq      INTEGER PRIMARY KEY,
    recorded REAL    NOT NULL,
    cluster  TEXT    NOT NULL,
    type     TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    payload  BLOB    NOT NULL
);
CREATE INDEX events_by_cluster_type ON events (cluster, type, seq);
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE snapshots (
    name     TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    recorded REAL    NOT NULL,
    blob     BLOB    NOT NULL,
    UNIQUE (name, seq)
);
PRAGMA application_id = {APPLICATION_ID};
COMMIT;
"""

_INSERT = (
    "INSERT INTO events (seq, recorded, cluster, type, key, payload) VALUES (?, ?, ?, ?, ?, ?)"
)

#: How many newest snapshots are kept per name (older ones only cost space).
KEEP_SNAPSHOTS: Final = 2

#: How many of the newest committed rows a log keeps in memory for its tails (a burst of
#: a change's facts and acknowledgements at 100 clusters is ~200).
RECENT_ROWS: Final = 1_024


# --- errors -----------------------------------------------------------------------------


class LogError(Exception):
    """Anything that goes wrong with an event log. ``path`` names the file."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"event log {path}: {message}")
        self.path = path
        self.problem = message


class LogCorrupt(LogError):
    """The file is not a federationd event log, or its content is damaged."""


class LogVersionError(LogError):
    """The log was written with a schema version this code cannot read."""

    def __init__(self, path: str, *, found: int, supported: int) -> None:
        super().__init__(
            path,
            f"written with schema version {found}, this federationd reads schema "
            f"version {supported} and older; upgrade federationd to read it",
        )
        self.found = found
        self.supported = supported


class LogWriteError(LogError):
    """An append (or another write) did not happen; nothing of it is visible."""


class LogUnwritable(LogWriteError):
    """The file cannot take writes now — a full disk, a file size limit, an I/O error, a
    read-only filesystem, another process holding the lock. Nothing of the write was
    recorded, and the same write may succeed once the cause is gone."""


class LogClosed(LogError):
    """The log was used after :meth:`EventLog.close`."""


class EventDecodeError(LogError):
    """A stored event cannot be decoded by this catalogue (see ``__cause__``)."""

    def __init__(self, path: str, *, seq: int, error: codec.CodecError) -> None:
        super().__init__(path, f"event {seq}: {error}")
        self.seq = seq


def _describe(error: sqlite3.Error) -> str:
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code == _SQLITE_NOTADB:
        return "not a federationd event log (not a SQLite database at all)"
    if code == _SQLITE_CORRUPT:
        return f"the file is corrupt ({error})"
    if code == _SQLITE_READONLY:
        return "the file is read-only (file or directory permissions, or a read-only filesystem)"
    if code == _SQLITE_FULL:
        return "the disk is full (or the file may not grow any further)"
    if code == _SQLITE_IOERR:
        extended = getattr(error, "sqlite_errorcode", 0)
        if extended in (_SQLITE_IOERR_WRITE, _SQLITE_IOERR_FSYNC, _SQLITE_IOERR_TRUNCATE):
            return "cannot write the file (disk full, a file size limit, or a failing disk)"
        return f"I/O error ({error})"
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return "locked by another process"
    if code == _SQLITE_CANTOPEN:
        return "cannot be opened (missing directory, or no permission)"
    return str(error)


def _translate(path: str, error: sqlite3.Error, *, writing: bool) -> LogError:
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
        return LogCorrupt(path, _describe(error))
    if writing:
        cls = LogUnwritable if code in _UNWRITABLE else LogWriteError
        return cls(path, "append failed, nothing was recorded: " + _describe(error))
    return LogError(path, _describe(error))


# --- records ----------------------------------------------------------------------------


class Record(msgspec.Struct, frozen=True, gc=False):
    """One stored event: its sequence number, when the log recorded it, the event."""

    seq: Seq
    recorded: float
    event: Event


def _tags(types: Iterable[type[Event] | str]) -> list[str]:
    out = []
    for t in types:
        if isinstance(t, str):
            out.append(t)
        else:
            out.append(codec.TAGS.get(t) or t.__name__)
    return sorted(set(out))


# --- the log ----------------------------------------------------------------------------


_Row = tuple[str, str, str, bytes]
_A = TypeVar("_A")
_R = TypeVar("_R")
_Pending = tuple[list[_Row], "asyncio.Future[int]"]


class EventLog:
    """An open event log. Create with ``await EventLog.open(path)``."""

    def __init__(
        self,
        *,
        path: str,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        head: int,
        dropped_through: int,
        catalogue: Sequence[str],
        retention_window: int | None,
        retention_chunk: int,
        max_batch_rows: int,
        page_size: int,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._head = head
        self._dropped_through = dropped_through
        self._catalogue = tuple(catalogue)
        self._retention_window = retention_window
        self._retention_chunk = retention_chunk
        self._max_batch_rows = max_batch_rows
        self._page_size = page_size
        self._pending: collections.deque[_Pending] = collections.deque()
        self._flusher: asyncio.Task[None] | None = None
        # Every write transaction (append batches, retention chunks, snapshots) holds
        # this lock; asyncio.Lock is FIFO, so a long retention yields to queued appends
        # between its chunks.
        self._write_lock = asyncio.Lock()
        # Set and replaced whenever the committed head moves or the log closes: tails
        # wait on it instead of polling.
        self._advanced = asyncio.Event()
        self._closed = False
        # Set when a commit was interrupted half way: re-read the head before the next.
        self._head_uncertain = False
        # The newest committed rows (seq, recorded, payload), consecutive: a tail that
        # is caught up reads what was just committed from here, as the reader
        # connection would return it, without a trip to the reader's thread.
        self._recent: collections.deque[tuple[int, float, bytes]] = collections.deque(maxlen=RECENT_ROWS)

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        retention_window: int | None = None,
        retention_chunk: int = 5_000,
        max_batch_rows: int = 8_192,
        page_size: int = 2_048,
        check: bool = False,
    ) -> EventLog:
        """Open (creating if absent) the log at ``path``.

        ``synchronous``: ``NORMAL`` (default) makes an acknowledged append survive a crash
        of the process; ``FULL`` also a power loss, at one fsync per commit.
        ``retention_window``: if set, events more than this many before the newest
        snapshot are dropped (see :meth:`apply_retention`); ``None`` keeps everything.
        ``check`` runs ``PRAGMA quick_check`` first (reads the whole file).
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        if retention_window is not None and retention_window < 0:
            raise ValueError("retention_window must be >= 0")
        if min(retention_chunk, max_batch_rows, page_size) < 1:
            raise ValueError("retention_chunk, max_batch_rows and page_size must be >= 1")
        spath = os.fspath(path)
        if await asyncio.to_thread(os.path.isdir, spath):
            raise LogError(spath, "is a directory, not a file")
        absolute = await asyncio.to_thread(os.path.abspath, spath)
        try:
            writer = await aiosqlite.connect(spath, cached_statements=32)
        except sqlite3.Error as e:
            raise LogError(spath, _describe(e)) from None
        reader: aiosqlite.Connection | None = None
        try:
            head, dropped, catalogue = await _prepare(
                writer, spath, synchronous=synchronous, check=check
            )
            uri = "file:" + urllib.parse.quote(absolute) + "?mode=ro"
            reader = await aiosqlite.connect(uri, uri=True)
            await reader.execute("PRAGMA query_only = 1")
            await reader.execute("PRAGMA mmap_size = 268435456")
        except sqlite3.Error as e:
            await _close_quietly(writer, reader)
            raise LogError(spath, _describe(e)) from None
        except BaseException:
            await _close_quietly(writer, reader)
            raise
        return cls(
            path=spath,
            writer=writer,
            reader=reader,
            head=head,
            dropped_through=dropped,
            catalogue=catalogue,
            retention_window=retention_window,
            retention_chunk=retention_chunk,
            max_batch_rows=max_batch_rows,
            page_size=page_size,
        )

    async def close(self) -> None:
        """Commit what is queued, wake and end every tail, close the file."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            # Its failures went to the appenders; close() only waits for it to finish.
            await asyncio.wait([self._flusher])
        self._wake()
        async with self._write_lock:
            await _close_quietly(self._writer, self._reader)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def catalogue(self) -> tuple[str, ...]:
        """Every event type any writer of this log knew (stored in the log's meta)."""
        return self._catalogue

    @property
    def dropped_through(self) -> Seq:
        """Events up to and including this seq were dropped by retention (0: none)."""
        return Seq(self._dropped_through)

    # -- appending -----------------------------------------------------------------------

    @overload
    async def append(self, events: Event) -> Seq: ...

    @overload
    async def append(self, events: Sequence[Event]) -> list[Seq]: ...

    async def append(self, events: Event | Sequence[Event]) -> Seq | list[Seq]:
        """Record one event (→ its seq) or several atomically (→ their seqs, in order).

        Returns once the transaction holding them committed. On :class:`LogWriteError`
        none of them was recorded. If the caller is cancelled while waiting, the events
        may or may not have been recorded.
        """
        if self._closed:
            raise LogClosed(self.path, "closed")
        single = isinstance(events, Event)
        batch: Sequence[Event] = (events,) if single else events  # type: ignore[assignment]
        if not batch:
            return []
        tags = codec.TAGS
        enc = codec.encode
        try:
            rows: list[_Row] = [(e.cluster, tags[type(e)], e.key, enc(e)) for e in batch]
        except KeyError as e:
            raise codec.CodecError(
                f"{e.args[0].__name__} is not in events.types.CATALOGUE; add it there"
            ) from None
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, fut))
        if self._flusher is None or self._flusher.done():  # done: cancelled before it ran
            self._flusher = asyncio.create_task(self._flush(), name="event-log-flusher")
        first = await fut
        if single:
            return Seq(first)
        return [Seq(first + i) for i in range(len(rows))]

    async def _flush(self) -> None:
        try:
            while self._pending:
                take = [self._pending.popleft()]
                n = len(take[0][0])
                while self._pending and n + len(self._pending[0][0]) <= self._max_batch_rows:
                    item = self._pending.popleft()
                    take.append(item)
                    n += len(item[0])
                try:
                    await self._commit(take)
                except BaseException:
                    for _, fut in take:
                        if not fut.done():
                            fut.set_exception(self._interrupted())
                    raise
        except BaseException:
            # Cancelled (the event loop is shutting down) or a bug: nobody is left to
            # commit what is queued, so nobody may wait for it.
            while self._pending:
                _, fut = self._pending.popleft()
                if not fut.done():
                    fut.set_exception(self._interrupted())
            raise
        finally:
            self._flusher = None

    def _interrupted(self) -> LogWriteError:
        return LogWriteError(
            self.path, "append interrupted; the events may or may not have been recorded"
        )

    async def _commit(self, take: list[_Pending]) -> None:
        async with self._write_lock:
            if self._head_uncertain:
                await self._resync_head()
                self._head_uncertain = False
            first = self._head + 1
            now = time.time()
            params: list[tuple[int, float, str, str, str, bytes]] = []
            seq = first
            for rows, _ in take:
                for c, t, k, p in rows:
                    params.append((seq, now, c, t, k, p))
                    seq += 1
            try:
                await self._transaction(_insert_rows, params)
            except (sqlite3.Error, LogClosed) as e:
                make = await self._failure(e)
                for _, fut in take:
                    if not fut.done():
                        fut.set_exception(make())
                return
            except BaseException:
                # The transaction may still have committed on the writer's thread.
                self._head_uncertain = True
                raise
            self._head = seq - 1
            recent = self._recent
            if recent and recent[-1][0] != first - 1:
                recent.clear()  # not consecutive (the head was re-read): start again
            recent.extend((row[0], row[1], row[5]) for row in params)
        for rows, fut in take:
            if not fut.done():
                fut.set_result(first)
            first += len(rows)
        self._wake()

    async def _transaction(self, job: Callable[[sqlite3.Connection, _A], _R], arg: _A) -> _R:
        """Run ``job(connection, arg)`` as one whole transaction on the writer's thread.

        One hop to the thread per transaction (not one per statement) halves the
        latency of a group commit, and commit or rollback happen inside the same job, so
        no other write can ever run inside a transaction that failed half way.
        aiosqlite has no public "run this on the connection's thread"; ``_execute`` is
        what its own methods use (the version range is pinned in pyproject.toml).
        """
        writer = self._writer
        try:
            raw = writer._conn
            result: _R = await writer._execute(_in_transaction, raw, job, arg)  # type: ignore[no-untyped-call]
        except ValueError:  # aiosqlite: "no active connection" / "Connection closed"
            raise LogClosed(self.path, "closed") from None
        return result

    async def _failure(self, error: sqlite3.Error | LogClosed) -> Callable[[], LogError]:
        """What every waiter of a failed commit gets (each its own exception object)."""
        if isinstance(error, LogClosed):
            return functools.partial(LogClosed, self.path, "closed")
        if (getattr(error, "sqlite_errorcode", 0) & 0xFF) == _SQLITE_CONSTRAINT:
            # Our idea of the head is stale: someone else wrote. Re-read it so that the
            # next append does not collide again.
            await self._resync_head()
            return functools.partial(
                LogWriteError,
                self.path,
                "append failed, nothing was recorded: another process appended to this "
                "log (only one writer may have it open)",
            )
        return functools.partial(_translate, self.path, error, writing=True)

    async def _resync_head(self) -> None:
        try:
            rows = list(await self._writer.execute_fetchall("SELECT max(seq) FROM events"))
            self._head = max(self._head, rows[0][0] or 0)
        except sqlite3.Error:
            logger.debug("cannot re-read head", exc_info=True)

    def _wake(self) -> None:
        advanced = self._advanced
        self._advanced = asyncio.Event()
        advanced.set()

    # -- reading -------------------------------------------------------------------------

    async def head(self) -> Seq:
        """The seq of the newest committed event (0 when nothing was ever appended)."""
        return Seq(self._head)

    async def read(
        self,
        from_seq: int = 1,
        to_seq: int | None = None,
        *,
        cluster: ClusterName | str | None = None,
        types: Iterable[type[Event] | str] | None = None,
    ) -> AsyncIterator[Record]:
        """Committed events with ``from_seq <= seq <= to_seq``, in order, page by page.

        ``cluster`` and ``types`` (classes or tags) filter. Events dropped by retention
        are simply absent (see :attr:`dropped_through`).
        """
        async for page in self.read_pages(from_seq, to_seq, cluster=cluster, types=types):
            for record in page:
                yield record

    async def read_pages(
        self,
        from_seq: int = 1,
        to_seq: int | None = None,
        *,
        cluster: ClusterName | str | None = None,
        types: Iterable[type[Event] | str] | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[list[Record]]:
        """:meth:`read`, a page (list) at a time: cheaper per event for long replays."""
        async for rows in self.raw_pages(
            from_seq, to_seq, cluster=cluster, types=types, page_size=page_size
        ):
            yield self._decode(rows)

    async def raw_pages(
        self,
        from_seq: int = 1,
        to_seq: int | None = None,
        *,
        cluster: ClusterName | str | None = None,
        types: Iterable[type[Event] | str] | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[list[tuple[Seq, float, bytes]]]:
        """Pages of undecoded ``(seq, recorded, payload)`` rows, for replay.

        The next page is fetched (on the reader's thread) while the caller works on the
        current one. Decode a payload with :func:`events.codec.decode`; a replay that
        decodes and folds one event at a time, instead of decoding a whole page first,
        keeps few objects alive and spends far less time in the garbage collector.
        """
        size = page_size or self._page_size
        lo = max(from_seq, 1)
        hi = _MAX_SEQ if to_seq is None else to_seq
        if lo > hi:
            return
        sql, fixed = self._page_query(cluster, types)
        pending = asyncio.ensure_future(self._query(sql, [*fixed, lo, hi, size]))
        try:
            while True:
                rows = await pending
                if len(rows) < size or rows[-1][0] >= hi:
                    if rows:
                        yield rows
                    return
                lo = rows[-1][0] + 1
                pending = asyncio.ensure_future(self._query(sql, [*fixed, lo, hi, size]))
                yield rows
        finally:
            if not pending.done():
                pending.cancel()
            elif not pending.cancelled():
                pending.exception()  # consumed: an abandoned prefetch's error is moot

    async def records(self, seqs: Iterable[int]) -> list[Record]:
        """The events with these seqs (those still in the log), in seq order: a lookup
        by primary key each, whatever the size of the log."""
        wanted = sorted(set(seqs))
        out: list[Record] = []
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            rows = await self._query(
                f"SELECT seq, recorded, payload FROM events WHERE seq IN ({marks}) ORDER BY seq", chunk
            )
            out += self._decode(rows)
        return out

    async def object_events(
        self,
        *,
        cluster: str,
        key: str,
        types: Iterable[type[Event] | str],
        to_seq: int | None = None,
        last: int | None = None,
    ) -> tuple[list[Record], int]:
        """The events of these types about the object ``key`` on ``cluster`` (the newest
        ``last`` of them when given), in order, and how many there are in all — through
        the (cluster, type, seq) index: what ``explain`` lists as writes and drift without
        reading the rest of the log."""
        tags = _tags(types)
        marks = ", ".join("?" * len(tags))
        where = (
            "FROM events INDEXED BY events_by_cluster_type"
            f" WHERE cluster = ? AND type IN ({marks}) AND seq <= ? AND key = ?"
        )
        params = [cluster, *tags, _MAX_SEQ if to_seq is None else to_seq, key]
        rows = await self._query(
            f"SELECT seq, recorded, payload {where} ORDER BY seq DESC LIMIT ?", [*params, -1 if last is None else last]
        )
        total = len(rows)
        if last is not None and total >= last:
            total = int((await self._query(f"SELECT COUNT(*) {where}", params))[0][0])
        return self._decode(list(reversed(rows))), total

    async def object_keys(self, *, cluster: str, types: Iterable[type[Event] | str]) -> list[str]:
        """The distinct object keys of events of these types on ``cluster`` (index only)."""
        tags = _tags(types)
        marks = ", ".join("?" * len(tags))
        rows = await self._query(
            "SELECT DISTINCT key FROM events INDEXED BY events_by_cluster_type"
            f" WHERE cluster = ? AND type IN ({marks})",
            [cluster, *tags],
        )
        return sorted(str(r[0]) for r in rows)

    async def tail(
        self,
        from_seq: int = 0,
        *,
        cluster: ClusterName | str | None = None,
        types: Iterable[type[Event] | str] | None = None,
    ) -> AsyncIterator[Record]:
        """Every event with ``seq >= from_seq``, in order, then each new one as it commits.

        Never skips or repeats an event, however appends race with it. Ends when the log
        is closed.
        """
        wanted = None if types is None else _tags(types)
        nxt = max(from_seq, 1)
        while not self._closed:
            # Read exactly up to the head committed now: everything up to it is visible
            # to the reader connection, nothing above it will be read twice.
            target = self._head
            if nxt <= target and wanted is None and cluster is None:
                recent = self._recent
                if recent and recent[0][0] <= nxt and recent[-1][0] >= target:
                    # Copied out first: the deque moves on while the caller awaits.
                    begin = nxt - recent[0][0]
                    rows = list(itertools.islice(recent, begin, begin + target - nxt + 1))
                    for record in self._decode(rows):
                        yield record
                    nxt = target + 1
                    continue
            if nxt <= target:
                pages = self.read_pages(nxt, target, cluster=cluster, types=wanted)
                try:
                    async for page in pages:
                        for record in page:
                            yield record
                except LogClosed:
                    if self._closed:
                        return
                    raise
                nxt = target + 1
                continue
            advanced = self._advanced
            if self._head < nxt and not self._closed:
                await advanced.wait()

    async def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        if self._closed:
            raise LogClosed(self.path, "closed")
        try:
            rows = await self._reader.execute_fetchall(sql, params)
        except sqlite3.Error as e:
            raise _translate(self.path, e, writing=False) from None
        except ValueError:  # aiosqlite: the connection was closed under us
            raise LogClosed(self.path, "closed") from None
        return rows if isinstance(rows, list) else list(rows)

    def _decode(self, rows: list[Any]) -> list[Record]:
        dec = codec.decode
        try:
            return [Record(seq, rec, dec(p)) for seq, rec, p in rows]
        except codec.CodecError:
            for seq, _, p in rows:
                try:
                    dec(p)
                except codec.CodecError as e:
                    raise EventDecodeError(self.path, seq=seq, error=e) from e
            raise

    def _page_query(
        self,
        cluster: str | None,
        types: Iterable[type[Event] | str] | None,
    ) -> tuple[str, list[Any]]:
        """SQL for one page (params: fixed ones, then from, to, limit)."""
        cols = "seq, recorded, payload"
        tags = None if types is None else _tags(types)
        if cluster is not None:
            # The (cluster, type, seq) index gives one ordered range per type; merging
            # at most ``limit`` rows from each keeps a page's cost bounded by the page
            # and independent of how much of the log belongs to other clusters.
            if tags is None:
                tags = sorted(set(self._catalogue) | codec.KNOWN_TAGS)
            if not tags:
                return f"SELECT {cols} FROM events WHERE 0 AND ?+?+?", []
            part = (
                f"SELECT * FROM (SELECT {cols} FROM events INDEXED BY events_by_cluster_type"
                " WHERE cluster = ?1 AND type = ?{i} AND seq >= ?{lo} AND seq <= ?{hi}"
                " ORDER BY seq LIMIT ?{lim})"
            )
            n = len(tags)
            lo, hi, lim = n + 2, n + 3, n + 4
            union = " UNION ALL ".join(
                part.format(i=i + 2, lo=lo, hi=hi, lim=lim) for i in range(n)
            )
            return f"SELECT {cols} FROM ({union}) ORDER BY seq LIMIT ?{lim}", [cluster, *tags]
        if tags is not None:
            marks = ", ".join("?" * len(tags))
            return (
                f"SELECT {cols} FROM events NOT INDEXED WHERE type IN ({marks})"
                " AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
                list(tags),
            )
        return f"SELECT {cols} FROM events WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?", []

    # -- snapshots and retention -------------------------------------------------------

    async def save_snapshot(self, name: str, seq: int, blob: bytes) -> None:
        """Store ``blob``: the state named ``name`` after folding every event up to ``seq``.

        Keeps the newest few per name, then applies retention if a window is configured.
        """
        if self._closed:
            raise LogClosed(self.path, "closed")
        if not 0 <= seq <= self._head:
            raise ValueError(f"snapshot seq {seq} is not in 0..{self._head} (the head)")
        async with self._write_lock:
            try:
                await self._transaction(_store_snapshot, (name, seq, time.time(), blob))
            except sqlite3.Error as e:
                raise _translate(self.path, e, writing=True) from None
        if self._retention_window is not None:
            await self.apply_retention()

    async def load_snapshot(
        self, name: str, *, at_most: int | None = None
    ) -> tuple[Seq, bytes] | None:
        """The newest usable snapshot ``name`` (with ``seq <= at_most``), or ``None``."""
        rows = await self._query(
            "SELECT seq, blob FROM snapshots WHERE name = ? AND seq >= ? AND seq <= ?"
            " ORDER BY seq DESC LIMIT 1",
            [name, self._dropped_through, _MAX_SEQ if at_most is None else at_most],
        )
        if not rows:
            return None
        seq, blob = rows[0]
        return Seq(seq), bytes(blob)

    async def apply_retention(self) -> int:
        """Drop events older than the newest snapshot minus the retention window.

        With several snapshot names, the oldest of their newest snapshots counts, so no
        snapshot consumer loses events it still needs. Deletes in chunks of
        ``retention_chunk`` events, each its own short transaction. Returns how many
        events were dropped.
        """
        if self._retention_window is None or self._closed:
            return 0
        rows = await self._query(
            "SELECT min(newest) FROM (SELECT max(seq) AS newest FROM snapshots GROUP BY name)",
            [],
        )
        newest = rows[0][0] if rows else None
        if newest is None:
            return 0
        target = min(newest - self._retention_window, self._head)
        dropped = 0
        while self._dropped_through < target and not self._closed:
            hi = min(self._dropped_through + self._retention_chunk, target)
            async with self._write_lock:
                if self._closed:
                    break
                try:
                    await self._transaction(_drop_through, hi)
                except sqlite3.Error as e:
                    raise _translate(self.path, e, writing=True) from None
                dropped += hi - self._dropped_through
                self._dropped_through = hi
        return dropped


# --- jobs run on the writer's thread, each inside one transaction (see _transaction) ----


def _in_transaction(
    conn: sqlite3.Connection, job: Callable[[sqlite3.Connection, _A], _R], arg: _A
) -> _R:
    try:
        result = job(conn, arg)
        conn.commit()
    except BaseException:
        try:
            conn.rollback()
        except sqlite3.Error:
            logger.debug("rollback failed", exc_info=True)
        raise
    return result


def _insert_rows(conn: sqlite3.Connection, params: list[tuple[Any, ...]]) -> None:
    conn.executemany(_INSERT, params)


def _store_snapshot(conn: sqlite3.Connection, row: tuple[str, int, float, bytes]) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO snapshots (name, seq, recorded, blob) VALUES (?, ?, ?, ?)", row
    )
    conn.execute(
        "DELETE FROM snapshots WHERE name = ?1 AND seq NOT IN"
        " (SELECT seq FROM snapshots WHERE name = ?1 ORDER BY seq DESC LIMIT ?2)",
        (row[0], KEEP_SNAPSHOTS),
    )


def _drop_through(conn: sqlite3.Connection, hi: int) -> None:
    conn.execute("DELETE FROM events WHERE seq <= ?", (hi,))
    conn.execute(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('dropped_through', ?)", (str(hi),)
    )
    # A snapshot older than the dropped events can no longer be replayed from.
    conn.execute("DELETE FROM snapshots WHERE seq < ?", (hi,))


# --- opening helpers ----------------------------------------------------------------------


async def _close_quietly(*conns: aiosqlite.Connection | None) -> None:
    for conn in conns:
        if conn is None:
            continue
        try:
            await conn.close()
        except (sqlite3.Error, ValueError):
            logger.debug("closing the event log failed", exc_info=True)


async def _one(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    rows = list(await conn.execute_fetchall(sql, params))
    return rows[0][0] if rows else None


async def _prepare(
    conn: aiosqlite.Connection, path: str, *, synchronous: Synchronous, check: bool
) -> tuple[int, int, list[str]]:
    """Create or validate the schema; returns (head, dropped_through, catalogue)."""
    try:
        await conn.execute("PRAGMA busy_timeout = 5000")
        # The first read of the header: a file that is not SQLite fails right here.
        app_id = await _one(conn, "PRAGMA application_id")
        tables = {
            r[0]
            for r in await conn.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        if check:
            verdict = [r[0] for r in await conn.execute_fetchall("PRAGMA quick_check")]
            if verdict != ["ok"]:
                raise LogCorrupt(path, "integrity check failed: " + "; ".join(verdict[:5]))
        if not tables and app_id == 0:
            await _create(conn, path)
        elif app_id != APPLICATION_ID or not {"events", "meta", "snapshots"} <= tables:
            raise LogCorrupt(
                path,
                "not a federationd event log (a SQLite database of something else: "
                f"application_id {app_id:#x}, tables {sorted(tables)})",
            )
        meta = {
            name: value
            for name, value in await conn.execute_fetchall("SELECT name, value FROM meta")
        }
        if meta.get("format") != FORMAT:
            raise LogCorrupt(path, "not a federationd event log (its meta table is not ours)")
        try:
            version = int(meta["schema_version"])
            dropped = int(meta.get("dropped_through", "0"))
            catalogue = list(json.loads(meta.get("catalogue", "[]")))
        except (KeyError, ValueError) as e:
            raise LogCorrupt(path, f"its meta table is damaged ({e!r})") from None
        if version > SCHEMA_VERSION:
            raise LogVersionError(path, found=version, supported=SCHEMA_VERSION)
        if version < 1:
            raise LogCorrupt(path, f"unknown schema version {version}")
        mode = await _one(conn, "PRAGMA journal_mode = WAL")
        if str(mode).lower() != "wal":
            raise LogError(path, f"cannot use the WAL journal (journal_mode is {mode})")
        await conn.execute(f"PRAGMA synchronous = {synchronous}")
        await conn.execute("PRAGMA cache_size = -16384")
        await conn.execute("PRAGMA temp_store = MEMORY")
        head = await _one(conn, "SELECT max(seq) FROM events") or 0
        known = sorted(set(catalogue) | codec.KNOWN_TAGS)
        if known != sorted(catalogue):
            await _record_catalogue(conn, path, known)
        return max(head, dropped), dropped, known
    except sqlite3.Error as e:
        try:
            await conn.rollback()
        except sqlite3.Error:
            logger.debug("rollback failed", exc_info=True)
        raise _translate(path, e, writing=False) from None


async def _create(conn: aiosqlite.Connection, path: str) -> None:
    await conn.executescript(_SCHEMA)
    await conn.executemany(
        "INSERT INTO meta (name, value) VALUES (?, ?)",
        [
            ("format", FORMAT),
            ("schema_version", str(SCHEMA_VERSION)),
            ("catalogue", json.dumps(sorted(codec.KNOWN_TAGS))),
            ("created", repr(time.time())),
            ("dropped_through", "0"),
        ],
    )
    await conn.commit()
    logger.info("created event log %s (schema version %d)", path, SCHEMA_VERSION)


async def _record_catalogue(conn: aiosqlite.Connection, path: str, known: list[str]) -> None:
    try:
        await conn.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('catalogue', ?)",
            (json.dumps(known),),
        )
        await conn.commit()
    except sqlite3.Error as e:
        await conn.rollback()
        if (getattr(e, "sqlite_errorcode", 0) & 0xFF) != _SQLITE_READONLY:
            raise
        # A read-only log is still readable; it just keeps its old catalogue list.
