"""RSA keys made in a worker process, so that making one does not stop the event loop.

cryptography's RSA key generation holds the GIL for its whole run (60 to 120 ms for a
2048-bit key on this project's 2-core machines), so a key made in one of the daemon's
threads stops its event loop for as long: with a hundred remotes joining at once, each
getting its own intermediate CA (``federationd.trust``), every cluster's watches and
writes stalled for seconds in all. ``KeyMaker`` makes the keys in one worker process
instead, started on first use (spawned: a fresh interpreter, not a fork of the daemon
with its threads and sockets) and kept for the next key. The worker watches the daemon
and exits the moment it is gone, however it ended: a SIGKILLed daemon leaves no worker
behind (one holding its stdout and stderr would keep whoever waits on them waiting).

A key comes back as DER (PKCS#1) over the pool's pipe and nowhere else; nothing about it
is logged. When no worker can be started or the worker fails, the key is made in the
calling thread as before, and the reason is logged once.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import select
import threading
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

#: How long a key may take in the worker before it is made in-process instead.
KEY_TIMEOUT = 30.0


def _make_der(bits: int) -> bytes:
    """In the worker: a new RSA key, as unencrypted PKCS#1 DER."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _exit_with(daemon: int) -> None:
    """In the worker: exit as soon as process ``daemon`` is gone."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(daemon)
        except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
            while os.getppid() == daemon:
                time.sleep(0.5)
        else:
            select.select([fd], [], [])
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-daemon", daemon=True).start()


def make_in_process(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


class KeyMaker:
    """``maker(bits)`` → a new RSA private key, made in the worker process. Call it from a
    worker thread (it blocks until the key is there), never from the event loop. ``close()``
    stops the worker."""

    def __init__(self, *, in_process: bool = False) -> None:
        self._in_process = in_process
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._warned = False

    def __call__(self, bits: int) -> rsa.RSAPrivateKey:
        pool = self._ensure()
        if pool is None:
            return make_in_process(bits)
        try:
            der = pool.submit(_make_der, bits).result(timeout=KEY_TIMEOUT)
        except (concurrent.futures.process.BrokenProcessPool, concurrent.futures.TimeoutError, OSError,
                RuntimeError) as e:
            self._fail(pool, e)
            return make_in_process(bits)
        key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def _ensure(self) -> concurrent.futures.ProcessPoolExecutor | None:
        if self._in_process:
            return None
        with self._lock:
            if self._closed:
                return None
            if self._pool is None:
                try:
                    self._pool = concurrent.futures.ProcessPoolExecutor(
                        max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                        initializer=_exit_with, initargs=(os.getpid(),),
                    )
                except (ValueError, OSError) as e:
                    self._in_process = True
                    self._say(e)
                    return None
            return self._pool

    def _fail(self, pool: concurrent.futures.ProcessPoolExecutor, e: BaseException) -> None:
        self._say(e)
        with self._lock:
            if self._pool is pool:
                self._pool = None  # a new worker for the next key
        pool.shutdown(wait=False, cancel_futures=True)

    def _say(self, e: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning("RSA keys are made in the daemon's process (%s: no key worker)", type(e).__name__)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
