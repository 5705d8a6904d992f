"""A separate process that uses an event log, for tests that need one to die or to lack
rights: ``python log_worker.py MODE PATH``.

* ``crash``: appends forever from many tasks (single events and atomic batches) and
  reports every acknowledged append on stdout as ``<first seq> <count> <key>`` — the
  parent kills it with SIGKILL at some point and checks the log afterwards.
* ``readonly``: opens a log it may not write (dropping root first), reads it, tries to append; prints JSON.
* ``fsize``: the file may grow only to a small size (RLIMIT_FSIZE); appends until that
  fails; prints JSON with the last acknowledged seq and the error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401  (needed after dropping root, see readonly)
import json
import os
import resource
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from eventlog_helpers import gateway

from events.log import EventLog, LogError


async def crash(path: str) -> None:
    out = sys.stdout

    async def single(a: int) -> None:
        for i in range(10**9):
            key = f"single-{a}-{i}"
            seq = await log.append(gateway(i, key=key))
            out.write(f"{seq} 1 {key}\n")
            out.flush()

    async def batches(a: int) -> None:
        for i in range(10**9):
            key = f"batch-{a}-{i}"
            seqs = await log.append([gateway(j, key=f"{key}/{j}") for j in range(10)])
            out.write(f"{seqs[0]} 10 {key}\n")
            out.flush()

    log = await EventLog.open(path)
    await asyncio.gather(*(single(a) for a in range(20)), *(batches(a) for a in range(5)))


async def readonly(path: str) -> None:
    if os.geteuid() == 0:
        # root writes through file modes: become an unprivileged user (after every
        # import, since the interpreter's own files may be private to root).
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    result: dict[str, object] = {}
    try:
        async with await EventLog.open(path) as log:
            result["head"] = await log.head()
            result["read"] = len([r async for r in log.read()])
            try:
                await log.append(gateway(1))
                result["append"] = "succeeded"
            except LogError as e:
                result["append"] = type(e).__name__
                result["message"] = str(e)
            result["head_after"] = await log.head()
            result["read_after"] = len([r async for r in log.read()])
    except LogError as e:
        result["open"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result))


async def fsize(path: str) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    limit = 256 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    result: dict[str, object] = {"acked": 0}
    async with await EventLog.open(path) as log:
        for i in range(10_000):
            try:
                seqs = await log.append([gateway(i * 50 + j) for j in range(50)])
            except LogError as e:
                result["error"] = type(e).__name__
                result["message"] = str(e)
                break
            result["acked"] = seqs[-1]
        result["head"] = await log.head()
        result["visible"] = len([r async for r in log.read()])
    print(json.dumps(result))


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    asyncio.run({"crash": crash, "readonly": readonly, "fsize": fsize}[mode](target))
