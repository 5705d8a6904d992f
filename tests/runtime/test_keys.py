"""Keys for the intermediates are made in a worker process (``actuators.keys``)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from federationd.actuators import keys
from federationd.actuators.keys import KeyMaker

ROOT = Path(__file__).resolve().parents[2]


def _worker_pids(maker: KeyMaker) -> set[int]:
    pool = maker._pool
    assert pool is not None
    return {p.pid for p in (pool._processes or {}).values()}  # type: ignore[union-attr]


def test_a_key_is_made_in_a_worker_process_and_the_worker_is_kept() -> None:
    maker = KeyMaker()
    try:
        first = maker(2048)
        assert isinstance(first, rsa.RSAPrivateKey) and first.key_size == 2048
        pids = _worker_pids(maker)
        assert pids and os.getpid() not in pids
        second = maker(2048)
        assert _worker_pids(maker) == pids  # the same worker made the next key
        assert first.private_numbers() != second.private_numbers()
    finally:
        maker.close()
    assert maker._pool is None


def test_a_dead_worker_costs_one_key_made_in_process_and_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    maker = KeyMaker()
    try:
        maker(2048)
        (pid,) = _worker_pids(maker)
        os.kill(pid, signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger=keys.__name__):
            key = maker(2048)  # the broken pool is noticed; this key is made here
            assert key.key_size == 2048
            again = maker(2048)  # a new worker
        assert again.key_size == 2048
        assert pid not in _worker_pids(maker)
        assert [r.getMessage() for r in caplog.records] == [
            "RSA keys are made in the daemon's process (BrokenProcessPool: no key worker)"
        ]
    finally:
        maker.close()


def test_in_process_and_after_close_keys_are_made_here() -> None:
    maker = KeyMaker(in_process=True)
    assert maker(2048).key_size == 2048 and maker._pool is None
    closed = KeyMaker()
    closed.close()
    assert closed(2048).key_size == 2048 and closed._pool is None


def test_the_worker_exits_when_the_daemon_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed daemon leaves no key worker behind (one would hold the daemon's
    stdout and stderr, and whoever waits for them would wait for ever)."""
    script = (
        "import os, sys\n"
        "from federationd.actuators.keys import KeyMaker\n"
        "m = KeyMaker()\n"
        "m(2048)\n"
        "print(*(p.pid for p in m._pool._processes.values()), flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, cwd=ROOT, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (worker,) = (int(p) for p in proc.stdout.split())
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a process that is not ours to wait for, with a deadline
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
