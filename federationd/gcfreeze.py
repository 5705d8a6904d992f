"""Keep CPython's cyclic garbage collector off a process's long-lived state.

The daemon's projection state, derivation memo and reflector stores, and the emulator's
object stores, are millions of containers that live for hours. Each full collection walks
all of them: at 50 clusters that was most of a derivation's time in the daemon, and at
100 clusters ``federationd sim`` stopped serving for 110-160 ms at a time (a
kube-apiserver's collector runs beside its requests). ``gc.freeze()`` moves what is alive
into the permanent generation, so collections look at new objects only.

Objects freed by their reference count (nearly all: a replaced object, a closed watch) go
at once whether frozen or not; only reference cycles that became garbage after a freeze
wait for a full collection. So every ``full_every`` rounds, and whenever ``full_now()``
changes (the daemon counts the cluster runtimes it stopped: their tasks, reflectors and
stores hold cycles), everything is unfrozen and collected once.

Low in the package on purpose (it imports nothing of federationd): the daemon and the
emulator run the same policy.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

#: seconds between two freezes
FREEZE_PERIOD = 15.0
#: a full collection over everything every this many freezes (10 minutes)
FULL_EVERY = 40


async def freeze_loop(
    full_now: Callable[[], int] = lambda: 0,
    *,
    period: float = FREEZE_PERIOD,
    full_every: int = FULL_EVERY,
) -> None:
    """Freeze what is alive every ``period`` seconds, with a full collection first every
    ``full_every`` rounds and whenever ``full_now()`` returns something new. Runs until
    cancelled."""
    rounds = 0
    seen = full_now()
    while True:
        await asyncio.sleep(period)
        rounds += 1
        now = full_now()
        if rounds % full_every == 0 or now != seen:
            seen = now
            gc.unfreeze()
            gc.collect()
        gc.freeze()
