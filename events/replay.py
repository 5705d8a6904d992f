"""Fold a range of the log through a pure fold function, starting from a snapshot.

``fold(state, record) -> state`` receives each :class:`events.log.Record` (``seq``,
``recorded``, ``event``), so a projection can remember which event caused what.

Replay is how federationd rebuilds its state on start and how an operator debugs it: the
same log folded by the same code gives the same state. A replay starts from the newest
usable snapshot at or below ``until`` (when a :class:`SnapshotSpec` is given) and folds
only the events after it, so a restart costs O(tail), not O(log).

The loop decodes and folds one event at a time from undecoded pages
(:meth:`EventLog.raw_pages`): an event is garbage as soon as the fold is done with it,
which keeps the garbage collector out of the hot path of long replays.

Snapshot blobs are opaque here; the caller supplies their encoding (``SnapshotSpec``).
A blob that no longer decodes (the state type changed) is skipped in favour of an older
snapshot, or of the start of the log; a name that includes the state's version avoids
even trying.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from events.codec import CodecError, decode
from events.log import EventDecodeError, EventLog, LogError, Record
from events.types import Seq

__all__ = ["LogTruncated", "Replayed", "SnapshotSpec", "Snapshotter", "replay"]

logger = logging.getLogger(__name__)

S = TypeVar("S")

#: ``progress(seq_reached, until)``, called after every page (once if nothing was folded).
Progress = Callable[[Seq, Seq], None]


class LogTruncated(LogError):
    """The events a replay needs were dropped by retention and no snapshot covers them."""


@dataclass(frozen=True)
class SnapshotSpec(Generic[S]):
    """How a replay stores and restores its state: a name in the log and a codec."""

    name: str
    encode: Callable[[S], bytes]
    decode: Callable[[bytes], S]


@dataclass(frozen=True)
class Replayed(Generic[S]):
    """The outcome of :func:`replay`.

    ``state`` includes every event up to ``seq``; continue with ``log.tail(seq + 1)``.
    ``snapshot_seq`` is the snapshot it started from (``None``: from the beginning);
    ``folded`` is how many events were folded after it.
    """

    state: S
    seq: Seq
    snapshot_seq: Seq | None
    folded: int


async def _start(
    log: EventLog, initial: S, until: int, snapshot: SnapshotSpec[S] | None
) -> tuple[S, int, Seq | None]:
    at_most = until
    while snapshot is not None:
        found = await log.load_snapshot(snapshot.name, at_most=at_most)
        if found is None:
            break
        seq, blob = found
        try:
            return snapshot.decode(blob), seq, seq
        except Exception:  # the caller's codec: any failure means "unusable", not fatal
            logger.warning(
                "snapshot %r at seq %d of %s does not decode; trying an older one",
                snapshot.name,
                seq,
                log.path,
                exc_info=True,
            )
            at_most = seq - 1
    return initial, 0, None


async def replay(
    log: EventLog,
    fold: Callable[[S, Record], S],
    initial: S,
    *,
    until: int | None = None,
    snapshot: SnapshotSpec[S] | None = None,
    progress: Progress | None = None,
    page_size: int = 1_024,
    resume: tuple[S, int] | None = None,
) -> Replayed[S]:
    """Fold the events up to ``until`` (default: the head now) into ``initial``.

    Starts from the newest usable snapshot ``snapshot.name`` with ``seq <= until`` if a
    spec is given. Raises :class:`LogTruncated` if retention dropped events the fold
    would need, :class:`events.log.EventDecodeError` for an event this catalogue cannot
    decode; an exception from ``fold`` propagates with a note naming the event's seq.

    ``resume=(state, seq)``: a state already folded up to ``seq`` (an earlier replay of
    the same log); the replay continues from it unless a snapshot is closer to ``until``.
    """
    end = await log.head() if until is None else Seq(until)
    state, start, snapshot_seq = await _start(log, initial, end, snapshot)
    if resume is not None and start <= resume[1] <= end:
        state, start = resume
        snapshot_seq = None
    if start < log.dropped_through:
        where = "the beginning" if snapshot_seq is None else f"snapshot seq {snapshot_seq}"
        raise LogTruncated(
            log.path,
            f"cannot replay from {where}: events up to {log.dropped_through} were dropped "
            "by retention and no newer snapshot is usable",
        )
    folded = 0
    seq = Seq(start)
    async for rows in log.raw_pages(start + 1, end, page_size=page_size):
        for seq, recorded, payload in rows:
            try:
                record = Record(seq, recorded, decode(payload))
            except CodecError as e:
                raise EventDecodeError(log.path, seq=seq, error=e) from e
            try:
                state = fold(state, record)
            except Exception as e:
                e.add_note(f"while folding event {seq} of {log.path}")
                raise
        folded += len(rows)
        if progress is not None:
            progress(seq, end)
    if progress is not None and folded == 0:
        progress(seq, end)
    return Replayed(state=state, seq=seq, snapshot_seq=snapshot_seq, folded=folded)


@functools.cache
def _encoder_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread snapshots are encoded on: its allocator keeps one arena for them,
    where the shared default executor's several threads would each keep their own."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="snapshot-encode")


class Snapshotter(Generic[S]):
    """Saves a snapshot every ``every`` events: call :meth:`observe` after each fold, or
    ask :meth:`due` and :meth:`save` when convenient (off a latency-critical path).

    ``last`` starts at the seq the state was restored at (e.g. ``Replayed.seq``), so a
    restart does not immediately snapshot what it just loaded.

    The spec's ``encode`` runs on a worker thread (one for every snapshotter of the
    process), so the state must not change under
    it: a frozen, copy-on-write state (as federationd's projection state is) may be
    folded further while an older one is being encoded. Encoders that release the GIL
    (compression) then cost the event loop nothing.
    """

    def __init__(self, log: EventLog, spec: SnapshotSpec[S], *, every: int, last: int = 0):
        if every < 1:
            raise ValueError("every must be >= 1")
        self._log = log
        self._spec = spec
        self._every = every
        self.last = last

    def due(self, seq: int) -> bool:
        return seq - self.last >= self._every

    async def save(self, seq: int, state: S) -> None:
        """Save ``state``, which includes every event up to ``seq``."""
        blob = await asyncio.get_running_loop().run_in_executor(_encoder_thread(), self._spec.encode, state)
        await self._log.save_snapshot(self._spec.name, seq, blob)
        self.last = max(self.last, seq)

    async def observe(self, seq: int, state: S) -> bool:
        """Save ``state`` (which includes every event up to ``seq``) if one is due."""
        if not self.due(seq):
            return False
        await self.save(seq, state)
        return True
