"""The log guard on a real event log that may not grow (``PRAGMA max_page_count``: SQLite's
own SQLITE_FULL path, as on a full disk): facts wait in order, writes wait, one line per
state change, and everything is recorded, contiguous, once the log takes appends again."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from events.log import EventLog, LogWriteError
from events.types import ClusterName, Event, GatewayAddressesObserved, Seq
from federationd import config
from federationd.actuators.client import KubeClient, NotLeading
from federationd.clusters import ClusterClient
from federationd.daemon import Daemon
from federationd.logguard import LogGuard
from federationd.metrics import Metrics
from tests.runtime.conftest import wait_for
from tests.runtime.fakeapi import FakeApi


def _fact(i: int) -> Event:
    return GatewayAddressesObserved(
        cluster=ClusterName("master"), key=f"Service/istio-system/gw-{i}", time=float(i),
        namespace="istio-system", name=f"gw-{i}", service_type="LoadBalancer",
        ips=(f"10.0.{i // 250}.{i % 250}",), hostnames=("h" * 3000,),
    )


async def _fill(log: EventLog) -> None:
    (pages,) = next(iter(await log._writer.execute_fetchall("PRAGMA page_count")))
    await log._writer.execute(f"PRAGMA max_page_count = {pages}")


async def _make_room(log: EventLog) -> None:
    await log._writer.execute("PRAGMA max_page_count = 1073741823")


def _value(metrics: Metrics, name: str) -> float:
    v = metrics.registry.get_sample_value(name)
    assert v is not None, name
    return v


async def test_a_full_log_holds_facts_and_writes_then_records_everything_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="federationd")
    metrics = Metrics()
    async with await EventLog.open(tmp_path / "log.db") as log:
        guard = LogGuard(log, metrics=metrics, retry=0.05)
        assert await guard.append([_fact(0)]) == [1]
        await _fill(log)
        # concurrent appenders, each a few facts: none fails, all wait
        appends = [asyncio.create_task(guard.append([_fact(i), _fact(i + 1)])) for i in range(1, 21, 2)]
        await wait_for(lambda: bool(guard.problem), what="the guard to notice")
        assert "the disk is full" in guard.problem and "nothing was recorded" in guard.problem
        assert _value(metrics, "federationd_event_log_writable") == 0
        write = asyncio.create_task(guard.writable())
        await wait_for(lambda: guard.held == 20, what="every fact held")
        # several failed attempts to append what is held, and still one line
        attempts = 0
        real_append = log.append

        async def counted(events: list[Event]) -> list[Seq]:
            nonlocal attempts
            attempts += 1
            return await real_append(events)

        log.append = counted  # type: ignore[assignment,method-assign]
        await wait_for(lambda: attempts >= 5, what="several retries")
        assert not write.done() and not any(a.done() for a in appends)
        assert _value(metrics, "federationd_event_log_held_events") == 20
        assert await log.head() == 1
        await _make_room(log)
        seqs = await asyncio.wait_for(asyncio.gather(*appends), 5)
        await asyncio.wait_for(write, 5)
        # every fact recorded once, in the order asked, with no gap
        assert [s for pair in seqs for s in pair] == list(range(2, 22))
        assert [r.event for r in [r async for r in log.read()]] == [_fact(i) for i in range(21)]
        assert not guard.problem and _value(metrics, "federationd_event_log_writable") == 1
        assert await guard.append([_fact(99)]) == [22]
    lines = [r for r in caplog.records if "event log" in r.getMessage()]
    assert [r.levelname for r in lines] == ["WARNING", "INFO"], [r.getMessage() for r in lines]
    assert "cannot be written" in lines[0].getMessage() and "writable again" in lines[1].getMessage()


async def test_stopping_while_full_fails_the_waiters_and_refuses_writes(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path / "log.db") as log:
        guard = LogGuard(log, metrics=Metrics(), retry=0.05)
        await guard.append([_fact(0)])
        await _fill(log)
        waiting = asyncio.create_task(guard.append([_fact(1)]))
        await wait_for(lambda: guard.held == 1, what="held")
        write = asyncio.create_task(guard.writable())
        await asyncio.sleep(0)
        guard.stop()
        with pytest.raises(LogWriteError, match="stopped"):
            await waiting
        with pytest.raises(LogWriteError, match="no write"):
            await write
        with pytest.raises(LogWriteError, match="stopping"):
            await guard.append([_fact(2)])
        assert [r.seq async for r in log.read()] == [1]


async def test_a_write_held_for_the_log_is_not_sent_by_a_leader_that_stepped_down(
    tmp_path: Path, client: ClusterClient, api: FakeApi
) -> None:
    """A write can wait for a full log longer than a lease lasts, and the standby takes over
    meanwhile. Once the log records again, the write of the leader that stepped down is
    refused (``NotLeading``) and never reaches the cluster; the Lease's writes (which wait
    on ``writable`` alone) go on, and so does a leader's write."""
    def writes() -> int:
        return sum(n for verb, n in api.requests.items() if verb not in ("get", "list", "watch"))

    def cm(mesh: str) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "istio", "namespace": "istio-system"}, "data": {"mesh": mesh}}

    async with await EventLog.open(tmp_path / "log.db") as log:
        d = Daemon(config.Settings())
        guard = d.guard = LogGuard(log, metrics=Metrics(), retry=0.05)
        d.leading = True
        kc = KubeClient(client, before_write=d.may_write)
        await kc.apply(cm("a"))
        sent = writes()
        await guard.append([_fact(0)])
        await _fill(log)
        held = asyncio.create_task(guard.append([_fact(1)]))
        await wait_for(lambda: bool(guard.problem), what="the guard to notice")
        write = asyncio.create_task(kc.apply(cm("b")))
        lease = asyncio.create_task(d.writable())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not write.done() and not lease.done()
        d.leading = False  # what stepping down does first (``Daemon._stop_leading``)
        await _make_room(log)
        assert await asyncio.wait_for(held, 5) == [2]
        await asyncio.wait_for(lease, 5)
        with pytest.raises(NotLeading, match="no longer leads"):
            await asyncio.wait_for(write, 5)
        assert writes() == sent
        assert (await kc.get("v1", "ConfigMap", "istio-system", "istio"))["data"] == {"mesh": "a"}
        d.leading = True
        assert (await kc.apply(cm("c")))["data"] == {"mesh": "c"}
