"""Inspection through snapshots and the log's index answers what a full replay answers."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from events.log import EventLog
from federationd import inspect
from federationd.projections.derive import derive
from federationd.projections.state import EMPTY, encode_state, fold

from .helpers import SEED_000, Log, applied, istio, namespace

DR = "networking.istio.io/v1alpha3/DestinationRule/istio-system/default"


async def _log_with_snapshot(path: Path) -> tuple[Log, int]:
    """A run with a snapshot in its middle, as the daemon saves them."""
    mem = Log()
    mem.add(istio(SEED_000), namespace("default"))
    for key, o in derive(mem.state).clusters["master"].objects.items():
        mem.add(applied(key, o.content_hash))
    snap_at = len(mem.records)
    mem.add(istio({**SEED_000, "mtls": True}, generation=2))
    for key, o in derive(mem.state).clusters["master"].objects.items():
        mem.add(applied(key, o.content_hash, t=3000))
    mem.add(namespace("default", {"team": "x"}))
    mem.add(istio({**SEED_000, "mtls": False}, generation=3))
    async with await EventLog.open(path) as log:
        await log.append([r.event for r in mem.records])
        s = EMPTY
        for r in mem.records[:snap_at]:
            s = fold(s, r)
        await log.save_snapshot(inspect.SNAPSHOTS.name, snap_at, encode_state(s))
    return mem, snap_at


async def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = await asyncio.to_thread(inspect.main, argv)
    out, _ = capsys.readouterr()
    return code, out


def _section(out: str, title: str) -> list[str]:
    lines = out.splitlines()
    i = lines.index(f"  {title}:")
    rest = lines[i + 1 :]
    end = next((j for j, ln in enumerate(rest) if not ln.startswith("    ")), len(rest))
    return rest[:end]


async def test_explain_from_a_snapshot_answers_as_a_full_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.db"
    _, snap_at = await _log_with_snapshot(path)
    code, fast = await _run(["explain", "--log", str(path), "master", "DestinationRule/istio-system/default"], capsys)
    assert code == 0, fast
    code, full = await _run(["explain", "--log", str(path), "--no-snapshot", "master", "DestinationRule/istio-system/default"], capsys)
    assert code == 0, full
    assert fast.splitlines()[:2] == full.splitlines()[:2]  # the key, the current hash or "not desired"
    assert _section(fast, "writes and drift") == _section(full, "writes and drift")
    assert len(_section(full, "writes and drift")) == 1  # applied once, with mTLS
    # the history after the snapshot is the full history's tail
    fast_hist = [ln for ln in _section(fast, "desired content over time") if not ln.strip().startswith("(")]
    full_hist = _section(full, "desired content over time")
    after = [ln for ln in full_hist if int(ln.split()[0]) > snap_at]
    assert [ln for ln in fast_hist if int(ln.split()[0]) > snap_at] == after
    assert after  # the mTLS toggles are in the window


async def test_explain_reasons_come_by_seq(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.db"
    await _log_with_snapshot(path)
    ref = "Namespace/default"
    code, fast = await _run(["explain", "--log", str(path), "master", ref], capsys)
    code2, full = await _run(["explain", "--log", str(path), "--no-snapshot", "master", ref], capsys)
    assert code == code2 == 0
    assert _section(fast, "derived from") == _section(full, "derived from")
    assert any("NamespaceObserved" in ln for ln in _section(fast, "derived from"))


async def test_diff_and_state_from_snapshots_equal_full_replays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.db"
    mem, snap_at = await _log_with_snapshot(path)
    head = len(mem.records)
    for a, b in ((1, head), (snap_at + 1, head), (snap_at - 1, snap_at + 1)):
        _, fast = await _run(["diff", "--log", str(path), "--from", str(a), "--to", str(b)], capsys)
        _, full = await _run(["diff", "--log", str(path), "--no-snapshot", "--from", str(a), "--to", str(b)], capsys)
        assert fast == full and fast
    for until in (snap_at, snap_at + 3, head):
        _, fast = await _run(["state", "--log", str(path), "--until", str(until)], capsys)
        _, full = await _run(["state", "--log", str(path), "--no-snapshot", "--until", str(until)], capsys)
        assert fast == full


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_only_on_a_terminal_and_after_a_second() -> None:
    now = [0.0]
    tty = _Tty()
    bar = inspect.ProgressBar("replaying", stream=tty, clock=lambda: now[0])
    bar(1, 1000)
    now[0] = 0.5
    bar(400, 1000)
    assert tty.getvalue() == ""  # under a second: nothing
    now[0] = 1.5
    bar(500, 1000)
    assert "replaying [" in tty.getvalue() and "500/1,000" in tty.getvalue()
    bar.close()
    assert tty.getvalue().endswith("\r\033[K")
    pipe = io.StringIO()
    quiet = inspect.ProgressBar("replaying", stream=pipe, clock=lambda: now[0] + 10)
    quiet(1, 10)
    quiet(9, 10)
    quiet.close()
    assert pipe.getvalue() == ""
