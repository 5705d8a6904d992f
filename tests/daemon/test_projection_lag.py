"""``federationd_projection_lag_events`` says how far the projection is behind the log,
also when the fold does not move at all (the case its alert exists for): the gauge follows
every append, not only every fold."""

from __future__ import annotations

import re
from pathlib import Path

from federationd.sim import Fleet

from .conftest import DaemonProcess, start_daemon
from .waiting import wait_for


async def _head_and_lag(d: DaemonProcess) -> tuple[float, float]:
    status, text = await d.get("/metrics")
    assert status == 200, text

    def value(name: str) -> float:
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        assert m is not None, f"{name} not exported"
        return float(m.group(1))

    return value("federationd_event_log_head"), value("federationd_projection_lag_events")


async def test_the_lag_follows_the_log_while_the_fold_is_held(
    fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    # A fold delay far beyond the test: the first event is never folded (the projection
    # stays at seq 0), while the watchers keep appending the master's initial lists.
    d = await start_daemon(daemons, fleet, tmp_path / "log.db", extra=["--debug-fold-delay", "3600"], wait_ready=False)

    async def lag_is_head(at_least: float) -> bool:
        head, lag = await _head_and_lag(d)
        return head >= at_least and lag == head

    await wait_for(lambda: lag_is_head(2), timeout=30, what="the initial lists appended and counted as lag")
    assert not await d.ready(), "nothing is folded, so the initial lists are not"
    before, _ = await _head_and_lag(d)
    # One more fact: one more event behind.
    fleet["master"].store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lag-probe"}})
    await wait_for(lambda: lag_is_head(before + 1), timeout=30, what="the new namespace's fact counted as lag")
    # Stopping folds everything left (without the delay) and exits cleanly.
    assert await d.terminate() == 0, d.stderr()[-3000:]
