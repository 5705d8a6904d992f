"""Keys for the intermediates are made in a worker process (``actuators.keys``)."""

from __future__ import annotations

import logging
import os
import signal

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from federationd.actuators import keys
from federationd.actuators.keys import KeyMaker


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
