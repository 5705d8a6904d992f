"""Nothing acknowledged is lost and nothing partial becomes visible: a writer killed with
SIGKILL, a read-only file, a file that may not grow (disk full)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eventlog_helpers import mixed

from events.log import EventLog

WORKER = Path(__file__).with_name("log_worker.py")


def _run_worker(mode: str, path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(WORKER), mode, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


async def test_sigkill_loses_no_acknowledged_append_and_tears_no_event(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "crash",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    acks: list[tuple[int, int, str]] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while len(acks) < 15_000:  # spans WAL checkpoints (every ~1,000 pages)
            line = await asyncio.wait_for(proc.stdout.readline(), deadline - time.monotonic())
            assert line, (await proc.stderr.read()).decode() if proc.stderr else "no output"
            seq_text, count_text, ack_key = line.decode().split()
            acks.append((int(seq_text), int(count_text), ack_key))
        proc.send_signal(signal.SIGKILL)
        # Acks written before the kill but not read yet still count.
        rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Each ack is one small write (atomic on a pipe); only a whole line counts.
    for text in rest.decode().split("\n")[:-1]:
        seq_text, count_text, ack_key = text.split()
        acks.append((int(seq_text), int(count_text), ack_key))

    async with await EventLog.open(path) as log:
        head = await log.head()
        stored: dict[int, str] = {r.seq: r.event.key async for r in log.read()}  # decodes all
    assert sorted(stored) == list(range(1, head + 1))  # dense: nothing torn or missing
    assert head >= max(first + count - 1 for first, count, _ in acks)
    for first, count, key in acks:
        if count == 1:
            assert stored[first] == key
        else:
            assert [stored[first + j] for j in range(count)] == [f"{key}/{j}" for j in range(count)]
    # Batches are atomic even when unacknowledged: all ten or none.
    batches: dict[str, list[int]] = {}
    for seq, key in stored.items():
        if key.startswith("batch-"):
            batches.setdefault(key.split("/")[0], []).append(seq)
    for key, seqs in batches.items():
        assert len(seqs) == 10 and seqs == list(range(seqs[0], seqs[0] + 10)), key


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user may enter (pytest's own tmp dirs are private)."""
    path = Path(tempfile.mkdtemp(prefix="federationd-events-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


async def test_read_only_file_reads_but_refuses_appends_clearly(shared_dir: Path) -> None:
    path = shared_dir / "events.db"
    async with await EventLog.open(path) as log:
        await log.append(mixed(25))
    path.chmod(0o444)
    result = await asyncio.to_thread(_run_worker, "readonly", path)
    assert result == {
        "head": 25,
        "read": 25,
        "append": "LogUnwritable",  # a LogWriteError: nothing written, may succeed later
        "message": result.get("message"),
        "head_after": 25,
        "read_after": 25,
    }, result
    message = str(result["message"])
    assert str(path) in message and "read-only" in message and "nothing was recorded" in message
    async with await EventLog.open(path) as log:
        assert [r.seq async for r in log.read()] == list(range(1, 26))


async def test_full_disk_fails_the_append_and_keeps_every_acknowledged_event(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    result = await asyncio.to_thread(_run_worker, "fsize", path)
    assert result["error"] == "LogUnwritable", result  # a LogWriteError: retry later
    assert str(path) in str(result["message"]) and "disk full" in str(result["message"])
    acked = int(str(result["acked"]))
    assert acked > 0 and acked % 50 == 0
    # Inside the failing process: the failed batch is invisible.
    assert result["head"] == acked and result["visible"] == acked
    # After it: the same, and the log goes on from there.
    async with await EventLog.open(path) as log:
        assert [r.seq async for r in log.read()] == list(range(1, acked + 1))
        assert await log.append(mixed(1)) == [acked + 1]
