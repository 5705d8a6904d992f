"""The inspection commands against a real log file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from events import types as ev
from events.log import EventLog
from federationd import inspect
from federationd.projections.derive import derive, desired_hash

from .helpers import MASTER, SEED_000, Log, applied, istio, namespace

DR = "networking.istio.io/v1alpha3/DestinationRule/istio-system/default"


async def _write(path: Path) -> Log:
    """A small recorded run: spec, namespace, writes, an mTLS toggle, a drift."""
    mem = Log()
    mem.add(istio(SEED_000), namespace("default"))
    for key, o in derive(mem.state).clusters["master"].objects.items():
        mem.add(applied(key, o.content_hash))
    mem.add(istio({**SEED_000, "mtls": True}, generation=2))
    h = derive(mem.state).clusters["master"].objects[DR].content_hash
    mem.add(applied(DR, h))
    mem.add(ev.ObjectDrifted(cluster=MASTER, key=DR, time=5000, deleted=True))
    mem.add(applied(DR, h, t=5001))
    async with await EventLog.open(path) as log:
        await log.append([r.event for r in mem.records])
    return mem


async def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    import asyncio

    code = await asyncio.to_thread(inspect.main, argv)
    out, err = capsys.readouterr()
    return code, out, err


async def test_replay_prints_the_desired_objects_at_a_seq(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.db"
    mem = await _write(path)
    code, out, _ = await _run(["replay", "--log", str(path)], capsys)
    assert code == 0
    docs = [d for d in yaml.safe_load_all(out) if d and "kind" in d]
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert "DestinationRule/default" in kinds and "Namespace/default" in kinds
    code, out, _ = await _run(["replay", "--log", str(path), "--until", "2", "--hash"], capsys)
    head_state = mem.state
    assert code == 0
    from federationd.projections.state import EMPTY, fold

    s = EMPTY
    for r in mem.records[:2]:
        s = fold(s, r)
    assert out.split() == ["2", desired_hash(derive(s))]
    assert desired_hash(derive(head_state)) != desired_hash(derive(s))


async def test_events_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.db"
    await _write(path)
    code, out, _ = await _run(["events", "--log", str(path), "--type", "IstioSpecChanged"], capsys)
    assert code == 0 and len(out.splitlines()) == 2
    assert all("IstioSpecChanged" in line for line in out.splitlines())
    code, out, _ = await _run(["events", "--log", str(path), "--cluster", "nowhere"], capsys)
    assert code == 0 and out == ""
    code, _, err = await _run(["events", "--log", str(path), "--type", "Bogus"], capsys)
    assert code == 2 and "unknown event type" in err


async def test_explain_names_causes_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.db"
    mem = await _write(path)
    code, out, _ = await _run(
        ["explain", "--log", str(path), "master", "DestinationRule/istio-system/default"], capsys
    )
    assert code == 0, out
    spec2 = next(r.seq for r in mem.records if isinstance(r.event, ev.IstioSpecChanged) and r.event.generation == 2)
    assert f"{DR} on cluster master" in out
    derived = out.split("derived from:")[1].split("desired content over time:")[0]
    assert str(spec2) in derived and "IstioSpecChanged" in derived
    writes = out.split("writes and drift:")[1]
    assert writes.count("ActuationApplied") == 2 and "ObjectDrifted" in writes
    code, _, err = await _run(["explain", "--log", str(path), "master", "Service/x/y"], capsys)
    assert code == 1 and "no such object" in err


async def test_diff_and_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.db"
    mem = await _write(path)
    spec2 = next(r.seq for r in mem.records if isinstance(r.event, ev.IstioSpecChanged) and r.event.generation == 2)
    code, out, _ = await _run(["diff", "--log", str(path), "--from", str(spec2 - 1), "--to", str(spec2)], capsys)
    assert code == 0
    assert "+++ master:" + DR in out and "ISTIO_MUTUAL" in out
    code, out, _ = await _run(["state", "--log", str(path)], capsys)
    assert code == 0 and yaml.safe_load(out)["istios"]["istio-system/istio"]["generation"] == 2


async def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await _run(["replay", "--log", str(tmp_path / "missing.db")], capsys)
    assert code == 2 and "no such log file" in err and not (tmp_path / "missing.db").exists()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    code, _, err = await _run(["events", "--log", str(junk)], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


async def test_events_follow_prints_new_events(tmp_path: Path) -> None:
    import asyncio
    import sys

    path = tmp_path / "log.db"
    await _write(path)
    async with await EventLog.open(path) as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "federationd.cli", "events", "--log", str(path), "--follow",
            "--type", "NamespaceObserved", stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            first = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert b"NamespaceObserved" in first and b"default" in first
            await log.append(namespace("brand-new"))
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert b"brand-new" in line
        finally:
            proc.kill()
            await proc.wait()


async def test_a_log_trimmed_by_retention_is_still_replayed_from_its_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from federationd.projections.state import EMPTY, encode_state, fold

    path = tmp_path / "log.db"
    mem = await _write(path)
    cut = len(mem.records) - 3
    state = EMPTY
    for r in mem.records[:cut]:
        state = fold(state, r)
    async with await EventLog.open(path, retention_window=0) as log:
        await log.save_snapshot(inspect.SNAPSHOTS.name, cut, encode_state(state))
        assert log.dropped_through == cut
    code, out, _ = await _run(["replay", "--log", str(path), "--hash"], capsys)
    assert code == 0 and out.split() == [str(len(mem.records)), desired_hash(derive(mem.state))]
    code, out, _ = await _run(["explain", "--log", str(path), "master", "DestinationRule/istio-system/default"], capsys)
    assert code == 0 and "(dropped by retention)" in out
    code, out, err = await _run(["replay", "--log", str(path), "--until", "2", "--no-snapshot"], capsys)
    assert code == 2 and "retention" in err
