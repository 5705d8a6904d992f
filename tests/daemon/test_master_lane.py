"""The master lane: a fact that moves the mesh's networks hands the master's objects to
its converger from the fold, before the derive task's turn."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from events.log import EventLog
from federationd import config
from federationd.daemon import Daemon
from federationd.projections.derive import ClusterDesired, networks_moved

from ..projections.helpers import applied, fleet, gateway
from .waiting import wait_for

CM = "v1/ConfigMap/istio-system/istio"


class _Converger:
    """What the daemon hands a cluster's converger, recorded."""

    def __init__(self) -> None:
        self.handed: list[tuple[int, ClusterDesired]] = []

    def set_desired(self, cd: ClusterDesired, acts: Any, *, cause_seq: int, cause_time: float, settling: bool) -> bool:
        self.handed.append((cause_seq, cd))
        return True


class _Runtime:
    def __init__(self) -> None:
        self.joined = True
        self.converger = _Converger()


def test_networks_moved_follows_what_the_networks_read() -> None:
    log = fleet(2)
    before = log.state
    log.add(applied(CM, "h"))
    assert not networks_moved(before, log.state)
    before = log.state
    log.add(gateway("remote-1", "35.9.9.9"))
    assert networks_moved(before, log.state)


async def test_a_moved_gateway_reaches_the_masters_converger_from_the_fold(tmp_path: Path) -> None:
    """The derive task is not running here: only the fold's master lane can hand the
    master its new ``meshNetworks``; a fact that moves no network hands nothing."""
    log = fleet(3)
    d = Daemon(config.Settings())
    rt = _Runtime()
    d.runtimes["master"] = rt  # type: ignore[assignment]
    d._synced_head = 0
    d.events_log = await EventLog.open(tmp_path / "events.db")
    task = asyncio.create_task(d._tail(1))
    try:
        await d.events_log.append([r.event for r in log.records])
        await wait_for(lambda: d.state.seq == len(log.records))
        # caught up on a namespace fact (the fleet's last): nothing moved there
        handed = len(rt.converger.handed)
        await d.events_log.append(applied(CM, "h"))
        await wait_for(lambda: d.state.seq == len(log.records) + 1)
        assert len(rt.converger.handed) == handed
        await d.events_log.append(gateway("remote-1", "35.9.9.9"))
        await wait_for(lambda: d.state.seq == len(log.records) + 2)
        seq, cd = rt.converger.handed[-1]
        assert seq == d.state.seq
        assert "35.9.9.9" in cd.objects[CM].obj["data"]["meshNetworks"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await d.events_log.close()
